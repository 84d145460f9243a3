//! What a partial mask keeps, read like a kept column: a `json` mask rewrites the strings
//! and numbers under its paths (and with `rest` all the others), never the keys. Each
//! document (each element, in an array) is walked as the mask walked it, and what it kept
//! is classified; findings count the values holding each kind, never show one.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use serde_json::Value;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::Finding;
use super::classify::kinds_in_value;
use crate::config::AnonymizeConfig;
use crate::config::masking::JsonMask;
use crate::database::sql::quote_ident;
use crate::mask::array::{self, ArrayError};
use crate::mask::json::{Node, leaf_text, walk};
use crate::mask::shape::ColumnShape;
use crate::table::TableName;
use crate::verify::{AnonymizeError, sql_error};

/// Findings in what `json` kept of `column` of `table`, in every row.
pub(super) async fn scan(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    table: &TableName,
    column: &ColumnShape,
    json: &JsonMask,
) -> Result<Vec<Finding>, AnonymizeError> {
    let what = format!("scanning what the json mask kept of {table}");
    let name = quote_ident(&column.name);
    let sql = format!(
        "SELECT {name}::text FROM {} WHERE {name} IS NOT NULL",
        table.sql()
    );
    let rows = tx
        .query_raw(&sql, std::iter::empty::<&(dyn ToSql + Sync)>())
        .await
        .map_err(sql_error(&what))?;
    let mut rows = std::pin::pin!(rows);
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    while let Some(row) = rows.try_next().await.map_err(sql_error(&what))? {
        let value: &str = row.get(0);
        let mut kinds = BTreeSet::new();
        let mut read = |doc: &[u8]| {
            if let Ok(mut doc) = serde_json::from_slice::<Value>(doc) {
                kept(&mut doc, json, |text| {
                    kinds.extend(kinds_in_value(text, cfg))
                });
            }
        };
        if column.array {
            // The mask read the same literal: it parses.
            let _ = array::map(value.as_bytes(), |doc| {
                read(doc);
                Ok::<_, ArrayError>(None)
            });
        } else {
            read(value.as_bytes());
        }
        for kind in kinds {
            *counts.entry(kind).or_default() += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|(kind, count)| Finding {
            table: table.to_string(),
            column: column.name.clone(),
            kind: kind.to_owned(),
            by: "values".into(),
            count,
        })
        .collect())
}

/// Hands `read` each text `json` kept of `doc`: every key, and without `rest` every string
/// and number under no listed path.
fn kept(doc: &mut Value, json: &JsonMask, mut read: impl FnMut(&str)) {
    let _ = walk(doc, json, &mut |node| {
        match node {
            Node::Key(key) => read(key),
            Node::Leaf(None, leaf) if json.rest.is_none() => read(&leaf_text(leaf)),
            Node::Leaf(..) => {}
        }
        Ok::<_, ()>(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::masking::Mask;

    #[test]
    fn what_a_json_mask_kept_is_read_and_what_it_masked_is_not() {
        let mut json = JsonMask {
            paths: vec![(vec!["contact".into(), "email".into()], Mask::Email)],
            rest: None,
        };
        let doc = r#"{"contact": {"email": "+44 20 7946 0958", "note": "jane@example.org"},
                      "jo@example.org": 1}"#;
        let read = |json: &JsonMask| {
            let mut texts = Vec::new();
            let mut doc: Value = serde_json::from_str(doc).unwrap();
            kept(&mut doc, json, |t| texts.push(t.to_owned()));
            texts
        };
        assert_eq!(
            read(&json),
            [
                "contact",
                "email",
                "note",
                "jane@example.org",
                "jo@example.org",
                "1"
            ]
        );
        json.rest = Some(Box::new(Mask::Text));
        assert_eq!(read(&json), ["contact", "email", "note", "jo@example.org"]);
    }
}
