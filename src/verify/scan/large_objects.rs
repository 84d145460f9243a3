//! The dump's large objects, when `anonymize.large_objects = "keep"` restores them: no column
//! rule can name their bytes, so the scan reads every one, whole, in the windows it reads long
//! values in (one query streams each object's first window; the few longer ones are read on
//! window by window).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use tokio_postgres::Transaction;

use super::Finding;
use super::rows::WINDOWS;
use crate::config::AnonymizeConfig;
use crate::verify::{AnonymizeError, sql_error};

/// What a finding in a large object names, as a table and column are named.
const WHERE: (&str, &str) = ("large objects", "data");

/// The large objects holding each kind of personal value, counted.
pub(super) async fn scan(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
) -> Result<Vec<Finding>, AnonymizeError> {
    let what = sql_error("scanning large objects");
    let (_, length) = WINDOWS.bounds(0);
    let first = tx
        .query_raw(
            "SELECT oid, lo_get(oid, 0, $1) FROM pg_largeobject_metadata ORDER BY oid",
            [&(length as i32)],
        )
        .await
        .map_err(&what)?;
    let mut first = std::pin::pin!(first);
    let mut found: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut long = Vec::new();
    while let Some(row) = first.try_next().await.map_err(&what)? {
        let (kinds, more) = WINDOWS.kinds(row.get(1), 0, cfg);
        if more {
            long.push((row.get::<_, u32>(0), kinds));
        } else {
            for kind in kinds {
                *found.entry(kind).or_default() += 1;
            }
        }
    }
    for (oid, mut kinds) in long {
        let mut start = WINDOWS.width;
        loop {
            let (from, length) = WINDOWS.bounds(start);
            let window: Vec<u8> = tx
                .query_one(
                    "SELECT lo_get($1, $2, $3)",
                    &[&oid, &(from as i64 - 1), &(length as i32)],
                )
                .await
                .map_err(&what)?
                .get(0);
            let (more_kinds, more) = WINDOWS.kinds(&window, start, cfg);
            kinds.extend(more_kinds);
            if !more {
                break;
            }
            start += WINDOWS.width;
        }
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            *found.entry(kind).or_default() += 1;
        }
    }
    Ok(found
        .into_iter()
        .map(|(kind, count)| Finding {
            table: WHERE.0.to_owned(),
            column: WHERE.1.to_owned(),
            kind: kind.to_owned(),
            by: "values".to_owned(),
            count,
        })
        .collect())
}
