//! Schema drift, caught when a snapshot lands rather than by the nightly run: the newest
//! snapshot's columns classified against the rules ([`classify`]), reading only as much of
//! the dump as that needs. pg_dump writes every table's definition before the first COPY:
//! when no column is unclassified there, reading stops at that COPY. Otherwise the COPY data
//! of the tables with unclassified columns is sampled for the suggested rules (their first
//! [`SAMPLE_PER_COPY`] bytes, read as `rules` reads them: counts, never a value), until
//! each such table's COPY was seen or [`READ_FOR`] has passed.

use std::collections::BTreeSet;
use std::io::Read;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufRead;
use tokio_util::io::SyncIoBridge;

use crate::config::Config;
use crate::restore::StreamStage;
use crate::restore::decode::{self, DecodeError, Secrets};
use crate::restore::lexer::{Item, Lexer};
use crate::snapshot::{Catalog, CatalogError, Snapshot};
use crate::store::{SourceBucket, StoreError};
use crate::survey::Survey;
use crate::table::TableName;

/// The COPY data of one table read for evidence.
const SAMPLE_PER_COPY: usize = 1 << 20;
/// How long sampling may go on; the pre-data is read whatever the time.
const READ_FOR: Duration = Duration::from_secs(120);

/// What a snapshot's columns say against the rules: what the state file keeps, `status`
/// shows, the gauge counts and the warning tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub snapshot: String,
    pub taken_at: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
    /// Columns no rule classifies, table by table.
    pub unclassified: Vec<DriftColumn>,
    /// Rules naming a table, or a table's column, the snapshot does not have.
    pub rules_for_nothing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftColumn {
    pub table: String,
    pub column: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// The `[[anonymize.column]]` rule `rules --toml` suggests, with its evidence.
    pub rule: String,
}

impl Drift {
    /// Nothing to tell: every column classified, every rule naming something.
    pub fn is_clean(&self) -> bool {
        self.unclassified.is_empty() && self.rules_for_nothing.is_empty()
    }

    /// The unclassified columns grouped by table: `public.member: phone (text), nick (text)`.
    pub fn by_table(&self) -> Vec<String> {
        let mut lines: Vec<(String, Vec<String>)> = Vec::new();
        for c in &self.unclassified {
            let column = format!("{} ({})", c.column, c.ty);
            match lines.last_mut() {
                Some((table, columns)) if *table == c.table => columns.push(column),
                _ => lines.push((c.table.clone(), vec![column])),
            }
        }
        lines
            .into_iter()
            .map(|(table, columns)| format!("{table}: {}", columns.join(", ")))
            .collect()
    }

    /// The suggested rules, to review and paste under `[anonymize]`.
    pub fn rules_toml(&self) -> String {
        let rules: Vec<&str> = self.unclassified.iter().map(|c| c.rule.as_str()).collect();
        rules.join("\n")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("listing the snapshots: {0}")]
    List(#[from] CatalogError),
    #[error("reading the snapshot {name}: {source}")]
    Download {
        name: String,
        source: Box<StoreError>,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Syntax(String),
}

/// The newest snapshot in the bucket, however old.
pub async fn newest(
    config: &Config,
    bucket: &SourceBucket,
) -> Result<Option<Snapshot>, DriftError> {
    let catalog = Catalog::list(bucket, &config.snapshot, config.source_database()).await?;
    Ok(catalog.snapshots.into_iter().next())
}

/// `snapshot`'s columns against `config`'s rules, reading as little of it as that needs.
pub async fn classify(
    config: &Config,
    bucket: &SourceBucket,
    snapshot: &Snapshot,
) -> Result<Drift, DriftError> {
    let secrets = match &config.snapshot.decrypt {
        Some(cfg) if snapshot.encrypted => Some(Secrets::load(cfg)?),
        _ => None,
    };
    let body = bucket
        .get(&snapshot.key)
        .await
        .map_err(|source| DriftError::Download {
            name: snapshot.name.clone(),
            source: Box::new(source),
        })?;
    let body = Body(SyncIoBridge::new(Box::pin(body.into_async_read())));
    let survey = Survey::new(config.anonymize.rules.clone(), &config.anonymize);
    let named = snapshot.clone();
    let (columns, rules_for_nothing) = tokio::task::spawn_blocking(move || {
        let mut survey = survey;
        read(body, &named, secrets.as_ref(), &mut survey)?;
        let gone = survey.rules_for_nothing();
        Ok::<_, DriftError>((survey.finish(), gone))
    })
    .await
    .expect("classifying a snapshot does not panic")?;
    let unclassified = columns
        .unclassified()
        .map(|c| DriftColumn {
            table: c.table.clone(),
            column: c.column.clone(),
            ty: c.ty.clone(),
            rule: c
                .rule_toml()
                .expect("an unclassified column has a suggestion"),
        })
        .collect();
    Ok(Drift {
        snapshot: snapshot.name.clone(),
        taken_at: snapshot.taken_at,
        checked_at: Utc::now(),
        unclassified,
        rules_for_nothing,
    })
}

/// Feeds `survey` the pre-data of `body`, the snapshot's bytes, then samples the COPYs it
/// needs (see the module's doc).
fn read<R: Read + std::fmt::Debug + Send + 'static>(
    body: R,
    snapshot: &Snapshot,
    secrets: Option<&Secrets>,
    survey: &mut Survey,
) -> Result<(), DriftError> {
    let mut lexer = Lexer::new(decode::sql(body, snapshot, secrets)?.sql);
    let stop_sampling = Instant::now() + READ_FOR;
    // The tables whose COPY is still to be sampled, known at the first COPY.
    let mut to_sample: Option<BTreeSet<TableName>> = None;
    let mut sampled = 0;
    let syntax = |e: crate::restore::lexer::LexError| DriftError::Syntax(e.to_string());
    while let Some(item) = lexer.next_item().map_err(syntax)? {
        // A survey only reads: none of its steps fails.
        let read = match item {
            Item::Statement(s) if s.is_copy_from_stdin() => {
                let to_sample = to_sample.get_or_insert_with(|| survey.tables_unclassified());
                if !to_sample.remove(&s.copy_table()) && to_sample.is_empty() {
                    break;
                }
                sampled = 0;
                survey.statement(&s, None).map(drop)
            }
            Item::Statement(s) => survey.statement(&s, None).map(drop),
            _ if Instant::now() > stop_sampling => break,
            Item::CopyData(data) if sampled < SAMPLE_PER_COPY && survey.reading_copy() => {
                sampled += data.len();
                survey.copy_data(data).map(drop)
            }
            Item::CopyEnd { .. } => survey.copy_end().map(drop),
            Item::CopyData(_) | Item::Meta { .. } => Ok(()),
        };
        read.expect("a survey never fails");
    }
    Ok(())
}

/// The snapshot's body as the blocking decoder reads it.
struct Body(SyncIoBridge<Pin<Box<dyn AsyncBufRead + Send>>>);

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the snapshot's body")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnonymizeConfig;
    use crate::snapshot::{Compression, Content};

    fn snapshot() -> Snapshot {
        Snapshot {
            name: "pgsql_app_db_20260101-030000.sql".into(),
            key: "pgsql_app_db_20260101-030000.sql".into(),
            content: Content::Database,
            database: "app".into(),
            host: "db".into(),
            taken_at: Utc::now(),
            size: 0,
            compression: Compression::None,
            encrypted: false,
            checksum: None,
        }
    }

    /// Three tables' COPYs, then a statement the lexer refuses (its string never closes):
    /// reading past where it should stop fails.
    const DUMP: &str = "CREATE TABLE public.member (id integer, login text, digest text);
CREATE TABLE public.u (id integer);
CREATE TABLE public.t (id integer, note text);
CREATE TABLE public.v (id integer);
COPY public.u (id) FROM stdin;
1
\\.
COPY public.t (id, note) FROM stdin;
1\tjane@example.org
2\tomar@example.org
\\.
COPY public.v (id) FROM stdin;
1
\\.
SELECT 'never closed
";

    fn survey(column_rules: serde_json::Value) -> Survey {
        let cfg: AnonymizeConfig = serde_json::from_value(serde_json::json!({
            "admin_email": "admin@staging.example.com",
            "admin_password": "staging-admin-password",
            "accounts": {"table": "member", "id": "id", "email": "login", "password": "digest"},
            "column": column_rules,
        }))
        .unwrap();
        Survey::new(cfg.parse_rules().unwrap(), &cfg)
    }

    #[test]
    fn with_every_column_classified_reading_stops_at_the_first_copy() {
        let mut survey = survey(serde_json::json!([
            {"table": "t", "column": "note", "mask": "email"}
        ]));
        read(std::io::Cursor::new(DUMP), &snapshot(), None, &mut survey).unwrap();
        assert!(survey.rules_for_nothing().is_empty());
        assert_eq!(survey.finish().unclassified().count(), 0);
    }

    #[test]
    fn an_unclassified_column_is_sampled_and_reading_stops_after_its_table() {
        let mut survey = survey(serde_json::json!([
            {"table": "t", "column": "gone", "mask": "keep"}
        ]));
        read(std::io::Cursor::new(DUMP), &snapshot(), None, &mut survey).unwrap();
        assert_eq!(survey.rules_for_nothing(), ["public.t.gone"]);
        let columns = survey.finish();
        let note: Vec<_> = columns.unclassified().collect();
        assert_eq!(note.len(), 1);
        let evidence = note[0].evidence.as_ref().unwrap();
        assert_eq!((evidence.values, evidence.kinds["email"]), (2, 2));
        let rule = note[0].rule_toml().unwrap();
        assert!(
            rule.contains("column = \"note\"\nmask = \"email\""),
            "{rule}"
        );
        assert!(!rule.contains("jane"), "{rule}");
    }
}
