//! Listing both buckets in parallel key ranges.
//!
//! A range `(after, until]` is listed one page (500 keys) per bucket. What both pages cover
//! becomes a [`Chunk`] for the merge-join; the rest of the range is split into smaller
//! ranges at keys guessed from the page (`StartAfter` boundaries), which are listed in
//! parallel in turn. So listing is never one page after another, both buckets are cut at
//! the same keys (each chunk is a complete merge-join on its own), and memory holds only the
//! pages of the ranges in flight, whatever the bucket's size.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::retry::Backoff;
use crate::shutdown::CancellationToken;
use crate::store::{ErrorKind, ListPage, ObjectInfo, SourceBucket, StoreError, TargetBucket};

/// Keys per listing request: half of S3's maximum, so more ranges list at once in the same
/// memory.
const PAGE: i32 = 500;

/// Keys after `after` up to and including `until` (`None`: no bound).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyRange {
    pub after: Option<String>,
    pub until: Option<String>,
}

/// Every object of one key range, from both buckets, in key order.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub source: Vec<ObjectInfo>,
    pub target: Vec<ObjectInfo>,
}

/// Lists both buckets and hands every chunk to `handle`, with at most `in_flight` ranges
/// being listed or handled at once. Stops starting new ranges at the first listing error
/// or on shutdown, lets the chunks being handled finish, and returns that error.
pub(super) async fn for_each_chunk<'a, F, Fut>(
    source: &'a SourceBucket,
    target: &'a TargetBucket,
    backoff: &'a Backoff,
    in_flight: usize,
    shutdown: &CancellationToken,
    mut handle: F,
) -> Result<(), StoreError>
where
    F: FnMut(Chunk) -> Fut,
    Fut: Future<Output = ()> + Send + 'a,
{
    enum Done {
        Listed(Result<(Chunk, Vec<KeyRange>), StoreError>),
        Handled,
    }
    let mut queue = VecDeque::from([KeyRange::default()]);
    let mut running: FuturesUnordered<BoxFuture<'a, Done>> = FuturesUnordered::new();
    let mut failure = None;
    loop {
        while failure.is_none() && !shutdown.is_cancelled() && running.len() < in_flight {
            let Some(range) = queue.pop_front() else {
                break;
            };
            running.push(Box::pin(
                list_range(source, target, backoff, range).map(Done::Listed),
            ));
        }
        match running.next().await {
            None => break,
            Some(Done::Listed(Ok((chunk, rest)))) if failure.is_none() => {
                queue.extend(rest);
                running.push(Box::pin(handle(chunk).map(|()| Done::Handled)));
            }
            Some(Done::Listed(Err(e))) => {
                failure.get_or_insert(e);
            }
            Some(_) => {}
        }
    }
    failure.map_or(Ok(()), Err)
}

/// One page of `range` from each bucket: the chunk both cover, and the rest of the range.
async fn list_range(
    source: &SourceBucket,
    target: &TargetBucket,
    backoff: &Backoff,
    range: KeyRange,
) -> Result<(Chunk, Vec<KeyRange>), StoreError> {
    let after = range.after.as_deref();
    let (source_page, target_page) = futures::try_join!(
        backoff.run(|| source.list_page(after, PAGE)),
        backoff.run(|| target.list_page(after, PAGE)),
    )?;
    let source_page = within(source_page, &range, source.name(), source.endpoint())?;
    let target_page = within(target_page, &range, target.name(), target.endpoint())?;

    // Where the first page that stops short of the range's end stops: both buckets are
    // complete up to there.
    let cut = [&source_page, &target_page]
        .into_iter()
        .filter(|p| p.truncated)
        .min_by(|a, b| last_key(a).cmp(last_key(b)));
    let Some(cut_page) = cut else {
        return Ok((
            Chunk {
                source: source_page.objects,
                target: target_page.objects,
            },
            Vec::new(),
        ));
    };
    let cut = last_key(cut_page).to_owned();
    let rest = split(&cut_page.objects, range.until.as_deref());
    let upto = |page: ListPage| -> Vec<ObjectInfo> {
        let mut objects = page.objects;
        objects.retain(|o| o.key <= cut);
        objects
    };
    let chunk = Chunk {
        source: upto(source_page),
        target: upto(target_page),
    };
    Ok((chunk, rest))
}

/// The page without keys past the range's end; it is complete when it reached past it.
fn within(
    mut page: ListPage,
    range: &KeyRange,
    bucket: &str,
    endpoint: &str,
) -> Result<ListPage, StoreError> {
    if page.truncated && page.objects.is_empty() {
        return Err(StoreError {
            kind: ErrorKind::Permanent,
            what: format!("listing after {:?}", range.after),
            bucket: bucket.to_owned(),
            endpoint: endpoint.to_owned(),
            message: "an empty page said more objects follow".into(),
        });
    }
    if let Some(until) = &range.until
        && page.objects.last().is_some_and(|o| &o.key > until)
    {
        page.objects.retain(|o| &o.key <= until);
        page.truncated = false;
    }
    Ok(page)
}

fn last_key(page: &ListPage) -> &str {
    page.objects.last().map_or("", |o| o.key.as_str())
}

/// Character sets keys are commonly made of, smallest first.
const ALPHABETS: [&str; 4] = [
    "0123456789",
    "0123456789abcdef",
    "0123456789ABCDEF",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
];
const PRINTABLE: &str = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// Key positions are read as numbers of this many characters of the alphabet.
const DIGITS: u32 = 4;
/// At most this many ranges from one split; each splits again if it is still too big.
const MOST_PIECES: usize = 64;

/// Splits what follows a full `page` up to `until` into ranges of about a page each,
/// guessing where keys are from how densely the page covered the key space.
///
/// Past the prefix the page's first and last keys share (`media/0` for `media/00a…` to
/// `media/05c…`; one level up, `media/`, when that level is of the same alphabet), keys are
/// read as numbers in the alphabet seen there (hex digits here). The page covered a known
/// share of that number space; the rest of it, cut into pieces expected to hold a page
/// each, gives the split points. Wrong guesses cost a small or empty listing, and a range
/// that holds more than a page splits again; every key still falls in exactly one range.
fn split(page: &[ObjectInfo], until: Option<&str>) -> Vec<KeyRange> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Vec::new();
    };
    let first_chars: Vec<char> = first.key.chars().collect();
    let last_chars: Vec<char> = last.key.chars().collect();
    let depth = first_chars
        .iter()
        .zip(&last_chars)
        .take_while(|(a, b)| a == b)
        .count();
    let seen: BTreeSet<char> = page
        .iter()
        .flat_map(|o| o.key.chars().skip(depth).take(DIGITS as usize))
        .collect();
    let alphabet: Vec<char> = ALPHABETS
        .into_iter()
        .find(|a| seen.iter().all(|c| a.contains(*c)))
        .unwrap_or(PRINTABLE)
        .chars()
        .collect();
    // One level up when that level looks like the same kind of key.
    let base = match depth.checked_sub(1) {
        Some(up) if alphabet.contains(&last_chars[up]) => up,
        _ => depth,
    };
    let prefix: String = last_chars[..base].iter().collect();
    let radix = alphabet.len() as u64;
    let space = radix.pow(DIGITS);
    let position = |chars: &[char]| -> u64 {
        (0..DIGITS as usize).fold(0, |n, i| {
            let digit = chars.get(base + i).map_or(0, |c| {
                alphabet.partition_point(|a| a < c).min(alphabet.len() - 1)
            });
            n * radix + digit as u64
        })
    };
    let (from, to) = (position(&first_chars), position(&last_chars));
    let covered = (to - from).max(1) as f64;
    let pieces = ((space - to) as f64 / covered)
        .ceil()
        .clamp(1.0, MOST_PIECES as f64) as u64;
    let points: BTreeSet<String> = (1..pieces)
        .map(|i| {
            let mut n = to + (space - to) * i / pieces;
            let mut digits = vec!['\0'; DIGITS as usize];
            for d in digits.iter_mut().rev() {
                *d = alphabet[(n % radix) as usize];
                n /= radix;
            }
            format!("{prefix}{}", digits.iter().collect::<String>())
        })
        .filter(|p| p.as_str() > last.key.as_str() && until.is_none_or(|u| p.as_str() < u))
        .collect();

    let mut ranges = Vec::new();
    let mut after = last.key.clone();
    for point in points {
        ranges.push(KeyRange {
            after: Some(std::mem::replace(&mut after, point.clone())),
            until: Some(point),
        });
    }
    ranges.push(KeyRange {
        after: Some(after),
        until: until.map(str::to_owned),
    });
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str]) -> Vec<ObjectInfo> {
        keys.iter()
            .map(|k| ObjectInfo {
                key: k.to_string(),
                size: 0,
                etag: String::new(),
                last_modified: None,
            })
            .collect()
    }

    fn bounds(ranges: &[KeyRange]) -> Vec<String> {
        ranges.iter().filter_map(|r| r.until.clone()).collect()
    }

    /// `n` keys spread evenly over `media/<4 hex digits>`, in order.
    fn hex_keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("media/{:04x}/f", i * 0x10000 / n))
            .collect()
    }

    #[test]
    fn splits_the_rest_into_pieces_of_about_a_page() {
        // The first 1000 of 10,000 keys: nine more pages' worth remain.
        let keys = hex_keys(10_000);
        let refs: Vec<&str> = keys[..1000].iter().map(String::as_str).collect();
        let ranges = split(&page(&refs), None);
        assert!((9..=10).contains(&ranges.len()), "{ranges:?}");
        assert_eq!(ranges[0].after.as_deref(), Some(keys[999].as_str()));
        assert_eq!(ranges.last().unwrap().until, None);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].until, pair[1].after);
        }
        // Each piece holds about a page, rather less than more.
        for r in &ranges {
            let inside = keys
                .iter()
                .filter(|k| Some(k.as_str()) > r.after.as_deref())
                .filter(|k| r.until.as_deref().is_none_or(|u| k.as_str() <= u))
                .count();
            assert!((800..=1000).contains(&inside), "{inside} keys in {r:?}");
        }
    }

    #[test]
    fn splits_one_level_up_only_in_the_same_alphabet() {
        // Keys part after `media/0`, and `0` is a hex digit: the split is over `media/`.
        let b = bounds(&split(
            &page(&["media/00a1", "media/0b3f", "media/0c5c"]),
            None,
        ));
        assert!(
            b.iter().all(|p| p.starts_with("media/") && p.len() == 10),
            "{b:?}"
        );
        assert!(b.last().unwrap().as_str() > "media/e", "{b:?}");
        // After `media/` comes a digit; `/` is no digit, so the split stays below it.
        let b = bounds(&split(&page(&["media/0a", "media/3f"]), None));
        assert!(b.iter().all(|p| p.starts_with("media/")), "{b:?}");
    }

    #[test]
    fn stays_inside_the_range_and_always_makes_progress() {
        let ranges = split(&page(&["a/1", "a/5"]), Some("a/7"));
        assert!(
            bounds(&ranges)
                .iter()
                .all(|p| p.as_str() > "a/5" && p.as_str() <= "a/7")
        );
        assert_eq!(ranges.last().unwrap().until.as_deref(), Some("a/7"));
        // Nothing to guess: the rest is one range.
        let ranges = split(&page(&["x", "x"]), Some("x0"));
        assert_eq!(
            ranges,
            [KeyRange {
                after: Some("x".into()),
                until: Some("x0".into())
            }]
        );
    }
}
