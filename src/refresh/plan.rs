//! `plan` (and `run --dry-run`): what a refresh would do, found by streaming the selected
//! dump through checksum, decoding and the filter without loading anything, and by listing
//! and comparing the media buckets without copying. Reads only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::database::extensions::{Extensions, Template};
use crate::database::{Server, markers, restore_role};
use crate::media::{MediaPlan, MediaProgress, Mirror};
use crate::progress::{Progress, Unit};
use crate::refresh::{Doing, Options, RunError, restore_filter, select_snapshot};
use crate::report::{self, SnapshotReport};
use crate::restore::filter::Filter;
use crate::restore::privileges::Privileges;
use crate::restore::{self, Streamed};
use crate::shutdown::CancellationToken;
use crate::snapshot::{Selection, Snapshot};
use crate::store::SourceBucket;
use crate::survey::{Columns, Survey};
use crate::table::TableName;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Absent with `--skip-db`.
    #[serde(flatten)]
    pub database: Option<DatabasePlan>,
    /// Absent when the mirror is disabled or skipped.
    pub media: Option<MediaPlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabasePlan {
    pub snapshot: SnapshotReport,
    pub bytes_sql: u64,
    pub rows: BTreeMap<String, u64>,
    pub statements_filtered: BTreeMap<String, u64>,
    /// Accounts that would be anonymized (all but the admin).
    pub users_to_anonymize: u64,
    /// Every column that could hold personal data, with its mask; the emptied tables; the
    /// unclassified columns a run would stop at.
    pub masking: Columns,
    /// The statements the restore role may not run, each naming its dump line and why: a
    /// run would stop at the first.
    pub forbidden: Vec<String>,
    /// Database operations, in order.
    pub databases: Vec<String>,
    /// Whether `init-target` has marked the database (a run refuses without it).
    pub target_marked: bool,
}

pub async fn plan(
    config: &Config,
    selection: &Selection,
    options: &Options,
) -> Result<Plan, RunError> {
    let media = if config.media.enabled && !options.skip_media {
        let mirror = Mirror::new(&config.media)?;
        let plan = mirror
            .plan(&MediaProgress::new(), &CancellationToken::new())
            .await?;
        Some(plan)
    } else {
        None
    };
    let database = if options.skip_db {
        None
    } else {
        Some(database_plan(config, selection).await?)
    };
    Ok(Plan { database, media })
}

async fn database_plan(config: &Config, selection: &Selection) -> Result<DatabasePlan, RunError> {
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await?;
    let name = &config.database.name;
    let target_marked = markers::marked_at(&server, &client, name).await?.is_some();
    let (bucket, snapshot) = select_snapshot(config, selection).await?;
    let filter = restore_filter(&server, &client, &snapshot).await?;
    let template = Template::new(config.database.template.as_deref(), name);
    let source = template.source().to_owned();
    let role = restore_role::name(name);
    let extensions = Extensions::of_template(&server, &client, template, &role).await?;
    let judges = (filter, Some(Privileges::listing(extensions)));
    let (streamed, masking) = survey(config, (&bucket, &snapshot), judges, "plan").await?;

    let (scratch, previous) = (config.scratch_db(), config.previous_db());
    let mut databases = Vec::new();
    if server.exists(&client, &scratch).await? {
        databases.push(format!("drop {scratch} (left by an earlier run)"));
    }
    databases.push(format!(
        "create {scratch} from {source} and restore into it"
    ));
    if server.exists(&client, &previous).await? {
        databases.push(format!("drop {previous} (the previous refresh's)"));
    }
    if server.exists(&client, name).await? {
        databases.push(format!("rename {name} to {previous}"));
        databases.push(format!("rename {scratch} to {name}"));
        if !config.database.keep_previous {
            databases.push(format!("drop {previous} (keep_previous = false)"));
        }
    } else {
        databases.push(format!("rename {scratch} to {name}"));
    }
    let accounts = streamed
        .rows
        .get(&config.anonymize.accounts.table)
        .copied()
        .unwrap_or(0);
    let admins = u64::from(config.anonymize.prod_admin_email.is_some());
    let mut snapshot_report = SnapshotReport::from(&snapshot);
    snapshot_report.checksum_verified = streamed.checksum_verified;
    Ok(DatabasePlan {
        snapshot: snapshot_report,
        bytes_sql: streamed.bytes_sql,
        users_to_anonymize: accounts.saturating_sub(admins),
        masking,
        forbidden: streamed.forbidden.iter().map(ToString::to_string).collect(),
        rows: report::keyed(&streamed.rows, TableName::as_dumped),
        statements_filtered: streamed.filtered,
        databases,
        target_marked,
    })
}

/// `rules`: the columns of the selected snapshot, classified; streamed like a plan, without
/// the staging server.
pub async fn columns(
    config: &Config,
    selection: &Selection,
) -> Result<(SnapshotReport, Columns), RunError> {
    let (bucket, snapshot) = select_snapshot(config, selection).await?;
    // Without the server's version and roles, the filter drops every GRANT and any
    // `SET transaction_timeout`, and what the restore role may run is not known: none of
    // that says anything about columns.
    let filter = Filter::new(0, Default::default(), snapshot.database.clone());
    let (streamed, columns) = survey(config, (&bucket, &snapshot), (filter, None), "rules").await?;
    let mut report = SnapshotReport::from(&snapshot);
    report.checksum_verified = streamed.checksum_verified;
    Ok((report, columns))
}

/// Streams `snapshot` through the filter, what the restore role may run (when known) and a
/// [`Survey`], loading nothing.
async fn survey(
    config: &Config,
    (bucket, snapshot): (&SourceBucket, &Snapshot),
    judges: (Filter, Option<Privileges>),
    progress: &str,
) -> Result<(Streamed, Columns), RunError> {
    let survey = Survey::new(config.anonymize.rules.clone(), &config.anonymize);
    let progress = Arc::new(Progress::new(progress, Unit::Bytes, Some(snapshot.size)));
    let source = restore::Source {
        bucket,
        decrypt: config.snapshot.decrypt.as_ref(),
    };
    let (streamed, survey) = restore::inspect(source, snapshot, judges, survey, progress.clone())
        .await
        .doing(format!("reading {}", snapshot.name))?;
    progress.finish();
    Ok((streamed, survey.finish()))
}
