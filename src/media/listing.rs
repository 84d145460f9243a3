//! Listing both buckets in parallel key ranges.
//!
//! A range `(after, until]` is listed one page (1000 keys) per bucket. What both pages cover
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
use crate::shutdown::Shutdown;
use crate::store::{ErrorKind, ListPage, ObjectInfo, SourceBucket, StoreError, TargetBucket};

const PAGE: i32 = 1000;

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
    shutdown: &Shutdown,
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
        while failure.is_none() && !shutdown.is_requested() && running.len() < in_flight {
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

/// Splits what follows a full `page` up to `until` into ranges, guessing where keys are.
///
/// Where the page's first and last keys part (`media/00…` to `media/05…`: after
/// `media/0`), keys likely go on in the same alphabet: the split points are that prefix
/// followed by each later character of the alphabet seen there (`media/06`, …, `media/0f`),
/// and, one level up, the shorter prefix followed by each later character (`media/1`, …,
/// `media/f`). Wrong guesses only cost an empty listing; every key still falls in
/// exactly one range.
fn split(page: &[ObjectInfo], until: Option<&str>) -> Vec<KeyRange> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Vec::new();
    };
    let last_chars: Vec<char> = last.key.chars().collect();
    let depth = first
        .key
        .chars()
        .zip(&last_chars)
        .take_while(|(a, b)| a == *b)
        .count();
    let seen: BTreeSet<char> = page
        .iter()
        .filter_map(|o| o.key.chars().nth(depth))
        .collect();
    let alphabet = ALPHABETS
        .into_iter()
        .find(|a| seen.iter().all(|c| a.contains(*c)))
        .unwrap_or(PRINTABLE);

    let mut points = BTreeSet::new();
    for level in [depth.checked_sub(1), Some(depth)].into_iter().flatten() {
        let here = last_chars.get(level).copied();
        // One level up only when that level looks like the same kind of key.
        if level < depth && !here.is_some_and(|c| alphabet.contains(c)) {
            continue;
        }
        let prefix: String = last_chars[..level].iter().collect();
        for c in alphabet.chars().filter(|c| here.is_none_or(|h| *c > h)) {
            points.insert(format!("{prefix}{c}"));
        }
    }
    let points = points
        .into_iter()
        .filter(|p| p.as_str() > last.key.as_str() && until.is_none_or(|u| p.as_str() < u));

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

    #[test]
    fn splits_hex_keys_at_the_level_they_vary_and_one_up() {
        let ranges = split(&page(&["media/00a1", "media/0b3f", "media/0c5c"]), None);
        let b = bounds(&ranges);
        assert_eq!(b.first().unwrap(), "media/0d");
        assert!(b.contains(&"media/0f".to_string()));
        assert!(b.contains(&"media/1".to_string()));
        assert_eq!(b.last().unwrap(), "media/f");
        assert_eq!(ranges.len(), b.len() + 1);
        assert_eq!(ranges[0].after.as_deref(), Some("media/0c5c"));
        assert_eq!(ranges.last().unwrap().until, None);
        // Consecutive: each range starts where the previous ends.
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].until, pair[1].after);
        }
    }

    #[test]
    fn does_not_split_one_level_up_when_it_is_a_separator() {
        // Digits seen where the keys part: the guess is digits, the level up is '/'.
        let b = bounds(&split(&page(&["media/0a", "media/3f"]), None));
        assert_eq!(
            b,
            [
                "media/4", "media/5", "media/6", "media/7", "media/8", "media/9"
            ]
        );
    }

    #[test]
    fn stays_inside_the_range_and_always_makes_progress() {
        let ranges = split(&page(&["a/1", "a/5"]), Some("a/7"));
        assert_eq!(bounds(&ranges), ["a/6", "a/7"]);
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
