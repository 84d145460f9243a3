//! The delete pass: staging-only keys found by the copy pass, removed with DeleteObjects in
//! batches of 1000, unless a guard refuses. The guards catch a source that lists empty
//! (a wrong bucket name or credentials would otherwise wipe staging) and more deletes than
//! `media.max_delete` allows.

use futures::StreamExt;

use super::report::MediaProgress;
use super::retry::Backoff;
use crate::config::MaxDelete;
use crate::store::TargetBucket;

const BATCH: usize = 1000;
/// Keys kept in memory for the delete pass, whatever `max_delete` allows (about 10 MB).
const KEPT_AT_MOST: usize = 100_000;

/// Staging-only keys, kept only as far as the delete pass could ever use them.
#[derive(Debug, Default)]
pub(super) struct Candidates {
    keys: Vec<String>,
    count: u64,
    keep: usize,
}

impl Candidates {
    pub(super) fn new(max_delete: MaxDelete) -> Candidates {
        // Past a count limit the pass is refused, so one more key than allowed is enough
        // to know. A percentage depends on the target's size, known only at the end.
        let keep = match max_delete {
            MaxDelete::Count(n) => usize::try_from(n.saturating_add(1)).unwrap_or(usize::MAX),
            MaxDelete::Percent(_) => KEPT_AT_MOST,
        };
        Candidates {
            keys: Vec::new(),
            count: 0,
            keep: keep.min(KEPT_AT_MOST),
        }
    }

    pub(super) fn add(&mut self, key: &str) {
        self.count += 1;
        if self.keys.len() < self.keep {
            self.keys.push(key.to_owned());
        }
    }

    pub(super) fn count(&self) -> u64 {
        self.count
    }

    pub(super) fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// Why deleting `candidates` staging-only objects must not happen, if it must not.
pub(super) fn refusal(
    max_delete: MaxDelete,
    listed_source: u64,
    listed_target: u64,
    candidates: u64,
) -> Option<String> {
    if candidates == 0 {
        return None;
    }
    if listed_source == 0 {
        return Some(format!(
            "the source bucket listed no objects; deleting all {candidates} staging objects \
             would follow a misconfigured or emptied production bucket, so nothing was deleted"
        ));
    }
    let limit = max_delete.limit(listed_target);
    if candidates > limit {
        let allowed = match max_delete {
            MaxDelete::Count(n) => format!("{n}"),
            MaxDelete::Percent(p) => format!("{p}% of {listed_target} target objects = {limit}"),
        };
        return Some(format!(
            "{candidates} staging-only objects would be deleted, more than media.max_delete \
             allows ({allowed}); nothing was deleted. Check the source bucket, or raise \
             media.max_delete"
        ));
    }
    None
}

/// Deletes `keys` in batches, `concurrency` batches at once; counts and records failures.
pub(super) async fn delete(
    target: &TargetBucket,
    keys: &[String],
    concurrency: usize,
    backoff: &Backoff,
    progress: &MediaProgress,
) {
    futures::stream::iter(keys.chunks(BATCH))
        .for_each_concurrent(concurrency, |batch| async move {
            crate::fault::point("media.deleting-batch");
            match backoff.run(|| target.delete_objects(batch)).await {
                Ok(not_deleted) => {
                    progress.deleted((batch.len() - not_deleted.len()) as u64);
                    for (key, reason) in not_deleted {
                        progress.failed(&key, "delete", &reason);
                    }
                }
                Err(e) => {
                    for key in batch {
                        progress.failed(key, "delete", &e.to_string());
                    }
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_refuse_an_empty_source_and_too_many_deletes() {
        let ten = MaxDelete::Percent(10.0);
        assert_eq!(refusal(ten, 0, 100, 0), None);
        let empty = refusal(ten, 0, 100, 100).unwrap();
        assert!(empty.contains("listed no objects"), "{empty}");
        assert_eq!(refusal(ten, 95, 100, 10), None);
        let many = refusal(ten, 89, 100, 11).unwrap();
        assert!(
            many.contains("media.max_delete") && many.contains("= 10"),
            "{many}"
        );
        assert!(refusal(MaxDelete::Count(2), 5, 8, 3).is_some());
        assert_eq!(refusal(MaxDelete::Count(3), 5, 8, 3), None);
    }

    #[test]
    fn candidates_keep_only_what_a_delete_pass_could_use() {
        let mut c = Candidates::new(MaxDelete::Count(2));
        for key in ["a", "b", "c", "d"] {
            c.add(key);
        }
        assert_eq!(c.count(), 4);
        assert_eq!(c.keys(), ["a", "b", "c"]);
    }
}
