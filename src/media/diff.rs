//! The merge-join of two key-ordered listings: what to copy, what is unchanged, and what
//! exists only on the target. Pure, so the rules are tested without a server.

use std::cmp::Ordering;

use crate::store::ObjectInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action<'a> {
    /// Missing on the target, or different there.
    Copy(&'a ObjectInfo),
    Unchanged,
    /// On the target only.
    Delete(&'a ObjectInfo),
}

/// Walks `source` and `target` (each sorted by key, as S3 lists them) side by side.
pub(super) fn diff<'a>(source: &'a [ObjectInfo], target: &'a [ObjectInfo]) -> Vec<Action<'a>> {
    let mut actions = Vec::with_capacity(source.len().max(target.len()));
    let (mut s, mut t) = (0, 0);
    while s < source.len() || t < target.len() {
        let order = match (source.get(s), target.get(t)) {
            (Some(src), Some(tgt)) => src.key.as_bytes().cmp(tgt.key.as_bytes()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        actions.push(match order {
            Ordering::Less => {
                s += 1;
                Action::Copy(&source[s - 1])
            }
            Ordering::Greater => {
                t += 1;
                Action::Delete(&target[t - 1])
            }
            Ordering::Equal => {
                let (src, tgt) = (&source[s], &target[t]);
                s += 1;
                t += 1;
                if unchanged(src, tgt) {
                    Action::Unchanged
                } else {
                    Action::Copy(src)
                }
            }
        });
    }
    actions
}

/// Equal size and ETag. A multipart ETag (`<hash>-<parts>`) depends on how the object was
/// cut into parts, so when one side has one and the ETags differ, equal size and a source
/// older than the target's copy count as unchanged.
pub(super) fn unchanged(source: &ObjectInfo, target: &ObjectInfo) -> bool {
    if source.size != target.size {
        return false;
    }
    if source.etag == target.etag {
        return true;
    }
    let multipart = |etag: &str| etag.contains('-');
    if !(multipart(&source.etag) || multipart(&target.etag)) {
        return false;
    }
    match (source.last_modified, target.last_modified) {
        (Some(s), Some(t)) => s < t,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn obj(key: &str, size: u64, etag: &str, modified: i64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: DateTime::<Utc>::from_timestamp(modified, 0),
        }
    }

    #[test]
    fn merge_join_sorts_keys_into_actions() {
        let source = [
            obj("a", 1, "x", 0),
            obj("b", 1, "x", 0),
            obj("d", 2, "y", 0),
            obj("e", 1, "x", 0),
        ];
        let target = [
            obj("b", 1, "x", 9),
            obj("c", 1, "x", 9),
            obj("d", 2, "z", 9),
            obj("f", 1, "x", 9),
        ];
        let keys: Vec<(char, &str)> = diff(&source, &target)
            .into_iter()
            .map(|a| match a {
                Action::Copy(o) => ('c', o.key.as_str()),
                Action::Delete(o) => ('d', o.key.as_str()),
                Action::Unchanged => ('u', ""),
            })
            .collect();
        assert_eq!(
            keys,
            [
                ('c', "a"),
                ('u', ""),
                ('d', "c"),
                ('c', "d"),
                ('c', "e"),
                ('d', "f")
            ]
        );
    }

    #[test]
    fn multipart_etags_fall_back_to_size_and_age() {
        let target = obj("k", 10, "aaa-3", 100);
        assert!(unchanged(&obj("k", 10, "bbb-2", 50), &target));
        assert!(unchanged(&obj("k", 10, "ccc", 50), &target));
        // The source changed after the target's copy was made.
        assert!(!unchanged(&obj("k", 10, "bbb-2", 150), &target));
        assert!(!unchanged(&obj("k", 11, "bbb-2", 50), &target));
        // Two plain MD5 ETags that differ mean different bytes, whatever the dates.
        assert!(!unchanged(
            &obj("k", 10, "aaa", 50),
            &obj("k", 10, "bbb", 100)
        ));
        assert!(unchanged(
            &obj("k", 10, "aaa", 500),
            &obj("k", 10, "aaa", 100)
        ));
    }
}
