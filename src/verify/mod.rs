//! The anonymize phase: what follows the masked restore, in one transaction. First what
//! [`changes`] rows (`extra_sql` with production's triggers off, bcrypt hashes when
//! configured, materialized views refreshed when either changed rows), then the [`checks`]
//! and the PII [`scan`] inside the same transaction. Anything wrong rolls everything back,
//! and the scratch database is dropped by the caller: nothing un-anonymized is ever
//! committed.
//!
//! The transaction is the refresh's own, on a fresh session (nothing the restore left, no
//! temp objects, no pending trigger events), run as the restore role (code of the dump's
//! that an UPDATE fires has no more rights than during the restore), with
//! `search_path = pg_catalog, pg_temp` (no function or operator of the dump's stands in for
//! pg_catalog's in our SQL) and row-level security and rules set aside ([`guard`]).

pub mod changes;
pub mod checks;
mod guard;
pub mod scan;

use std::collections::BTreeMap;
use std::time::Instant;

use tokio_postgres::{Client, Transaction};

use crate::config::{AnonymizeConfig, OnUnmaskedPii, RestoreConfig};
use crate::database::sql::{ServerMessage, quote_ident};
use crate::mask::Masked;
use crate::table::TableName;
pub use checks::Verification;
pub use scan::{Finding, StreamScan};

#[derive(Debug, Clone, Default)]
pub struct Anonymized {
    /// Rows masked per table.
    pub rows: BTreeMap<TableName, u64>,
    pub verification: Vec<Verification>,
    pub findings: Vec<Finding>,
    /// How long the checks took (the row-version check, before and after what changed
    /// rows, and the others), and the PII scan.
    pub verification_seconds: f64,
    pub scan_seconds: f64,
    /// Materialized views production never populated, restored so and not scanned.
    pub unpopulated_views: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnonymizeError {
    #[error("{what}")]
    Sql {
        what: String,
        #[source]
        message: ServerMessage,
    },
    #[error("anonymize.extra_sql {path}")]
    ExtraSql {
        path: String,
        #[source]
        message: ServerMessage,
    },
    #[error("verification failed: {}", failed(.0))]
    Verification(Vec<Verification>),
    #[error(
        "unmasked PII found and anonymize.on_unmasked_pii = \"fail\": {}",
        scan::describe(.0)
    )]
    Pii(Vec<Finding>),
}

fn failed(checks: &[Verification]) -> String {
    checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

impl AnonymizeError {
    /// What the error carries for the run report.
    pub fn results(&self) -> (Vec<Verification>, Vec<Finding>) {
        match self {
            AnonymizeError::Verification(v) => (v.clone(), Vec::new()),
            AnonymizeError::Pii(f) => (Vec::new(), f.clone()),
            _ => (Vec::new(), Vec::new()),
        }
    }
}

pub(crate) fn sql_error(what: &str) -> impl Fn(tokio_postgres::Error) -> AnonymizeError + '_ {
    move |e| AnonymizeError::Sql {
        what: what.to_owned(),
        message: e.into(),
    }
}

/// Finishes, verifies and scans the database `client` (a fresh session, logged in as the
/// restore role) restored (`masked` says what the restore masked, `stream` what it scanned,
/// `xids` the restore's COPY transactions per table), in one transaction committed only
/// when all of it passes.
pub async fn run(
    client: &mut Client,
    cfg: &AnonymizeConfig,
    (masked, stream): (&Masked, &StreamScan),
    xids: &BTreeMap<TableName, Vec<String>>,
    limits: &RestoreConfig,
) -> Result<Anonymized, AnonymizeError> {
    // No RESET ALL: the session starts from known settings (`restore_role::connect`), and
    // RESET ALL would bring back the role's and the database's defaults, the dump's to set.
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("starting the transaction"))?;
    let settings = transaction_settings(limits);
    tx.batch_execute(&settings)
        .await
        .map_err(sql_error("configuring the transaction"))?;
    let set_aside = guard::set_aside(&tx).await?;
    let copied = scan::stream::copied_tables(masked, stream);
    let check = checks::RowVersions {
        tables: &copied,
        parents: &masked.parents,
        xids,
    };
    // The checks' time, without what changes rows between them.
    let started = Instant::now();
    // Before anything of ours writes rows: afterwards every row it touches is ours.
    let mut written_after = check.written_after_copies(&tx, None).await?;
    let mut verifying = started.elapsed();
    let mut own = None;
    if changes::changes_data(cfg) {
        change_data(&tx, cfg, masked, &settings).await?;
        own = Some(checks::own_xid(&tx).await?);
    }
    let started = Instant::now();
    // The materialized views' refresh ran the dump's code, each in a subtransaction: what
    // that code wrote carries the subtransaction's xid, what we wrote our own.
    if own.is_some() && written_after.is_empty() {
        written_after = check.written_after_copies(&tx, own.as_deref()).await?;
    }
    let mut verification = vec![checks::only_copied_rows(written_after, copied.len())];
    verification.extend(checks::run(&tx, cfg, masked).await?);
    if verification.iter().any(|c| !c.ok) {
        return Err(AnonymizeError::Verification(verification));
    }
    verifying += started.elapsed();
    let started = Instant::now();
    let findings = scan::run(&tx, cfg, masked, stream, own.as_deref()).await?;
    let unpopulated_views = scan::unpopulated_views(&tx).await?;
    let scan_seconds = started.elapsed().as_secs_f64();
    if !unpopulated_views.is_empty() {
        tracing::info!(
            views = %unpopulated_views.join(", "),
            "materialized views production never populated are restored unpopulated, unscanned"
        );
    }
    if !findings.is_empty() {
        match cfg.on_unmasked_pii {
            OnUnmaskedPii::Fail => return Err(AnonymizeError::Pii(findings)),
            OnUnmaskedPii::Warn => tracing::warn!(
                findings = %scan::describe(&findings),
                "unmasked PII found (anonymize.on_unmasked_pii = \"warn\")"
            ),
        }
    }
    set_aside.put_back(&tx).await?;
    crate::fault::point("anonymize.before-commit");
    tx.commit()
        .await
        .map_err(sql_error("committing the anonymization"))?;
    Ok(Anonymized {
        rows: masked.rows.clone(),
        verification,
        findings,
        verification_seconds: verifying.as_secs_f64(),
        scan_seconds,
        unpopulated_views,
    })
}

/// The anonymization transaction's own settings. The restore ran with synchronous_commit
/// off; this commit flushes all of it, so a crash after cutover can never bring back
/// un-anonymized rows. The dump's code (a materialized view's query, a trigger `extra_sql`
/// fires) can change them for the statements after it (`set_config('statement_timeout',
/// '0', true)`), not for its own: they are set again after each statement that runs it.
fn transaction_settings(limits: &RestoreConfig) -> String {
    format!(
        "SET LOCAL synchronous_commit = on;
         SET LOCAL search_path = pg_catalog, pg_temp;
         SET LOCAL statement_timeout = {};
         SET LOCAL lock_timeout = {}",
        limits.statement_timeout.as_millis(),
        limits.lock_timeout.as_millis(),
    )
}

/// What changes rows after the masked restore, with production's triggers off: real bcrypt
/// hashes and `extra_sql`; then the materialized views are refreshed to show it. `settings`
/// are the transaction's, set again after each statement that can run the dump's code.
async fn change_data(
    tx: &Transaction<'_>,
    cfg: &AnonymizeConfig,
    masked: &Masked,
    settings: &str,
) -> Result<(), AnonymizeError> {
    changes::apply(tx, cfg, masked).await?;
    for path in &cfg.extra_sql {
        let shown = path.display().to_string();
        let sql = std::fs::read_to_string(path).map_err(|e| AnonymizeError::ExtraSql {
            path: shown.clone(),
            message: ServerMessage::plain(e.to_string()),
        })?;
        // The operator's SQL names tables in the schemas the operator named: never in
        // "$user", which the dump can create (a schema named like the restore role, holding
        // tables named like the application's).
        let sql = format!(
            "SET LOCAL search_path = {};\n{sql}\n;{settings}",
            cfg.extra_sql_search_path
                .iter()
                .map(|schema| quote_ident(schema))
                .collect::<Vec<_>>()
                .join(", "),
        );
        tx.batch_execute(&sql)
            .await
            .map_err(|e| AnonymizeError::ExtraSql {
                path: shown,
                message: e.into(),
            })?;
    }
    changes::finish(tx, cfg, masked, settings).await?;
    tx.batch_execute(settings)
        .await
        .map_err(sql_error("configuring the transaction again"))
}
