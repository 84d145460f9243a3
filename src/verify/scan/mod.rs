//! The scan for PII the rules missed, inside the anonymizing transaction. It reads every row
//! ([`rows`]) of every text-like column (text, varchar, char, json, jsonb, xml, citext,
//! domains and arrays of them) of every user table and populated materialized view (not an
//! extension's own: they are the template's, and the restore role may not read them), except
//! the columns the masking rules rewrote (`keep` columns are scanned: that is where a wrong
//! classification shows), what a partial mask [`kept`] (a `json` mask's keys, and the
//! strings and numbers under no listed path when it has no `rest`), and the schema's own
//! [`literals`] (view and function definitions, defaults, checks,
//! comments, enum labels, names). A column is reported when its name says PII (email, phone,
//! token, ...) and it holds values the rules did not mask, and any column or literal when
//! its values look like emails, phone numbers, API tokens, IBANs or card numbers
//! ([`classify`]). With `anonymize.large_objects = "keep"` it reads every large object too
//! ([`large_objects`]). Findings name the object, column or field, kind and count, never a
//! value.

mod classify;
mod column_names;
mod kept;
mod large_objects;
mod literals;
mod names;
mod rows;
pub mod stream;

pub(crate) use classify::{TOKEN, kinds_in_value, value_is};
pub(crate) use column_names::kind_by_name;
pub(crate) use column_names::{
    ADDRESS, CARD, EMAIL, IBAN, IDENTITY, IP, NAME, PASSWORD, PHONE, POSTCODE, SECRET, USERNAME,
};

use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;

use super::{AnonymizeError, sql_error};
use crate::config::masking::Mask;
use crate::config::{AnonymizeConfig, LargeObjects};
use crate::mask::Masked;
use crate::table::TableName;
pub use stream::StreamScan;

/// The schemas the dump's objects live in: not the system's.
const USER_SCHEMA: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'";

/// The relation `c` is not an extension's own.
const NOT_EXTENSION: &str = "NOT EXISTS (SELECT FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The table, or for a schema literal the object holding it ("view public.v").
    pub table: String,
    /// The column, or for a schema literal which of the object's texts ("definition").
    pub column: String,
    /// email, phone, token, iban, card, or for names: secret, password.
    pub kind: String,
    /// How it was found: "column name" (count = unmasked non-null values), "values" (count
    /// = values holding that kind) or "schema literal" (count = literals holding it).
    pub by: String,
    pub count: u64,
}

/// One line naming every finding, for logs and errors.
pub fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{}.{}: {} {} ({})",
                f.table, f.column, f.count, f.kind, f.by
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The findings of the scan in the stream (`stream`) and of the scan of what it did not see:
/// the columns it did not read, and in those it read the rows the transaction `own` (the
/// anonymization's, when it wrote rows) rewrote since.
pub async fn run(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
    stream: &StreamScan,
    own: Option<&str>,
) -> Result<Vec<Finding>, AnonymizeError> {
    let mut findings = stream.findings.clone();
    let copied = stream::copied_tables(masked, stream);
    for scanned in scanned_columns(tx, masked).await? {
        // What the stream read of the table, and what it did not.
        let read = stream
            .covered
            .get(&scanned.table)
            .filter(|_| copied.contains(&scanned.table));
        let (read, unread): (Vec<String>, Vec<String>) = scanned
            .columns
            .iter()
            .cloned()
            .partition(|c| read.is_some_and(|read| read.contains(c)));
        let part = |columns| Scanned {
            columns,
            ..scanned.clone()
        };
        if !unread.is_empty() {
            findings.extend(rows::scan(tx, cfg, &part(unread), None).await?);
        }
        if let Some(own) = own.filter(|_| !read.is_empty()) {
            findings.extend(rows::scan(tx, cfg, &part(read), Some(own)).await?);
        }
    }
    for (table, shape, mask) in &masked.applied {
        if let Mask::Json(json) = mask {
            findings.extend(kept::scan(tx, cfg, table, shape, json).await?);
        }
    }
    findings.extend(literals::scan(tx, cfg).await?);
    if cfg.large_objects == LargeObjects::Keep {
        findings.extend(large_objects::scan(tx, cfg).await?);
    }
    Ok(findings)
}

/// The materialized views production never populated (`WITH NO DATA`, never refreshed): they
/// are restored unpopulated, as psql leaves them, and hold no rows to scan.
pub async fn unpopulated_views(tx: &Transaction<'_>) -> Result<Vec<String>, AnonymizeError> {
    let rows = tx
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'm' AND NOT c.relispopulated AND {NOT_EXTENSION}
                 ORDER BY 1"
            ),
            &[],
        )
        .await
        .map_err(sql_error("listing unpopulated materialized views"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A table's text-like columns: those the scan reads, and all of them (what a column's name
/// says may depend on the others: `city` beside `street`).
#[derive(Clone)]
pub(super) struct Scanned {
    pub table: TableName,
    pub columns: Vec<String>,
    pub text_columns: Vec<String>,
}

/// The text-like columns (xml included) the rules did not rewrite, per table.
async fn scanned_columns(
    tx: &Transaction<'_>,
    masked: &Masked,
) -> Result<Vec<Scanned>, AnonymizeError> {
    let rows = tx
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, a.attname::text
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_type t ON t.oid = a.atttypid
                 LEFT JOIN pg_type base ON base.oid = t.typbasetype
                 LEFT JOIN pg_type elem ON elem.oid = coalesce(base.typelem, t.typelem)
                      AND coalesce(base.typcategory, t.typcategory) = 'A'
                 WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated))
                   AND a.attnum > 0 AND NOT a.attisdropped
                   AND {USER_SCHEMA} AND {NOT_EXTENSION}
                   AND (coalesce(base.typcategory, t.typcategory) = 'S'
                        OR coalesce(base.typname, t.typname) IN ('json', 'jsonb', 'xml')
                        OR elem.typcategory = 'S' OR elem.typname IN ('json', 'jsonb', 'xml'))
                 ORDER BY 1, 2, a.attnum"
            ),
            &[],
        )
        .await
        .map_err(sql_error("listing text columns"))?;
    let mut tables: Vec<Scanned> = Vec::new();
    for row in rows {
        let name = TableName::new(row.get(0), row.get(1));
        let column: String = row.get(2);
        if tables.last().is_none_or(|t| t.table != name) {
            tables.push(Scanned {
                table: name.clone(),
                columns: Vec::new(),
                text_columns: Vec::new(),
            });
        }
        let table = tables.last_mut().expect("pushed");
        table.text_columns.push(column.clone());
        if !masked
            .applied
            .iter()
            .any(|(t, c, _)| *t == name && c.name == column)
        {
            table.columns.push(column);
        }
    }
    tables.retain(|t| !t.columns.is_empty());
    Ok(tables)
}
