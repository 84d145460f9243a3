//! The run report: everything a refresh did, as one serializable value. `run --json`,
//! `status`, the state file, metrics and the summary email are all built from it; people read
//! it through its [`outline`].

mod cause;
pub mod outline;
pub mod redact;

pub use cause::Cause;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use indicatif::HumanBytes;
use serde::{Deserialize, Serialize};

pub use crate::config::Severity;
use crate::error::Exit;
use crate::journal::Recovery;
use crate::media::MediaReport;
use crate::snapshot::Snapshot;
use crate::table::TableName;
use crate::util::counted;
use crate::verify::{Finding, Verification};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Something failed; staging serves its previous data.
    Failed,
    /// A guard refused before anything changed.
    Refused,
    /// SIGTERM/SIGINT before cutover; staging serves its previous data.
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Refused,
        Outcome::Cancelled,
    ];

    pub fn exit(self) -> Exit {
        match self {
            Outcome::Ok => Exit::Success,
            Outcome::Refused => Exit::Refused,
            Outcome::Failed | Outcome::Cancelled => Exit::Failed,
        }
    }
}

/// What a run did: a refresh, or a rollback to the kept previous database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    #[default]
    Refresh,
    Rollback,
}

impl RunKind {
    pub const ALL: [RunKind; 2] = [RunKind::Refresh, RunKind::Rollback];
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunKind::Refresh => "refresh",
            RunKind::Rollback => "rollback",
        })
    }
}

/// A rollback's swap: staging served `from`, and serves `to` (the kept previous database)
/// after it; `None` where the state file does not know which snapshot a database holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RollbackReport {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The steps of a refresh, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Guards, lock, snapshot selection.
    Prepare,
    /// Streaming the dump into the scratch database.
    Restore,
    /// Rules, verification and PII scan, in one transaction.
    Anonymize,
    /// The maintenance window: stop, swap, flush, start.
    Cutover,
    /// After cutover: the media delete pass, dropping the replaced database.
    Cleanup,
    /// The media mirror: its copy pass runs alongside restore and anonymize, its delete
    /// pass in cleanup; a failure of either is reported as this phase.
    Media,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Prepare => "prepare",
            Phase::Restore => "restore",
            Phase::Anonymize => "anonymize",
            Phase::Cutover => "cutover",
            Phase::Cleanup => "cleanup",
            Phase::Media => "media",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotReport {
    pub name: String,
    pub key: String,
    pub taken_at: DateTime<Utc>,
    /// Compressed size in the bucket.
    pub size: u64,
    /// True when an `.md5` or `.sha1` sidecar existed and matched the downloaded bytes.
    pub checksum_verified: bool,
}

impl SnapshotReport {
    /// One line: name, when it was taken, size, whether its checksum was verified.
    pub fn describe(&self) -> String {
        format!(
            "snapshot {} taken {} ({}, checksum {})",
            self.name,
            self.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
            HumanBytes(self.size),
            if self.checksum_verified {
                "verified"
            } else {
                "not verified: no checksum sidecar"
            }
        )
    }
}

impl From<&Snapshot> for SnapshotReport {
    fn from(s: &Snapshot) -> Self {
        SnapshotReport {
            name: s.name.clone(),
            key: s.key.clone(),
            taken_at: s.taken_at,
            size: s.size,
            checksum_verified: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub phase: Phase,
    pub seconds: f64,
}

/// The parts of the database phases an operator asks about when a refresh is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The restore up to its post-data section: the schema and every table's rows.
    Data,
    /// The post-data section: keys, indexes, constraints, built in parallel.
    PostData,
    /// The PII scan of the rows as they streamed past, on the decode thread (CPU time, beside
    /// the restore's other work, not after it).
    StreamScan,
    /// The anonymize phase's checks.
    Verification,
    /// The anonymize phase's PII scan of what the stream did not see.
    Scan,
}

impl Step {
    /// The phase the step is part of.
    pub fn phase(self) -> Phase {
        match self {
            Step::Data | Step::PostData | Step::StreamScan => Phase::Restore,
            Step::Verification | Step::Scan => Phase::Anonymize,
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Data => "data section",
            Step::PostData => "post-data",
            Step::StreamScan => "PII scan in the stream",
            Step::Verification => "verification",
            Step::Scan => "PII scan in the database",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: Step,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    #[serde(default)]
    pub kind: RunKind,
    /// A rollback's snapshots, from and to.
    #[serde(default)]
    pub rollback: Option<RollbackReport>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    /// The phase that failed (or was cancelled or refused).
    pub failed_phase: Option<Phase>,
    /// The error, with its causes; never a secret.
    pub error: Option<String>,
    /// The error without the parts that can quote production rows (for email and chat; see
    /// [`outline::Reader`]).
    #[serde(default)]
    pub error_without_values: Option<String>,
    /// Why it failed, when what to do about it is particular to the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    pub snapshot: Option<SnapshotReport>,
    pub phases: Vec<PhaseTiming>,
    /// Where the database phases' time went ([`Step`]).
    #[serde(default)]
    pub steps: Vec<StepTiming>,
    pub bytes_downloaded: u64,
    /// Decompressed SQL bytes restored.
    pub bytes_restored: u64,
    pub rows_restored: BTreeMap<String, u64>,
    /// Dump statements dropped or rewritten by the filter, by reason.
    pub statements_filtered: BTreeMap<String, u64>,
    pub rows_anonymized: BTreeMap<String, u64>,
    /// Values masked in the restore stream, per table and column.
    #[serde(default)]
    pub masked_values: BTreeMap<String, BTreeMap<String, u64>>,
    /// Tables restored without rows (`anonymize.table` mode "empty"), with the rows dropped.
    #[serde(default)]
    pub tables_emptied: BTreeMap<String, u64>,
    /// Columns that could hold personal data, kept as they were: a `keep` rule classified
    /// them as not personal.
    #[serde(default)]
    pub columns_kept: Vec<String>,
    /// Every column no rule classified, `schema.table.column (type)`, when that refused the
    /// run (its error shows a screenful).
    #[serde(default)]
    pub unclassified_columns: Vec<String>,
    pub verification: Vec<Verification>,
    pub pii_findings: Vec<Finding>,
    /// Materialized views production never populated (`WITH NO DATA`): restored unpopulated,
    /// as psql leaves them, and skipped by the PII scan.
    #[serde(default)]
    pub unpopulated_views: Vec<String>,
    /// `SECURITY DEFINER` functions the dump created: they run as `database.owner` for
    /// whoever calls them.
    #[serde(default)]
    pub security_definer_functions: Vec<String>,
    /// What the dump had changed in the scratch database's own settings, undone before cutover.
    #[serde(default)]
    pub database_settings_reset: Vec<String>,
    /// What the restore role carried that it must not (what the dump's code did to it:
    /// a password, settings), put back.
    #[serde(default)]
    pub restore_role_reset: Vec<String>,
    /// What could not be put back on the restore role once the new data was live, each with
    /// what to do.
    #[serde(default)]
    pub restore_role_left: Vec<String>,
    /// How long staging was in maintenance (backend stopped), when it was.
    pub maintenance_seconds: Option<f64>,
    /// Whether the replaced database is kept as `<name>__previous`.
    pub previous_kept: bool,
    pub redis_flushed: bool,
    /// The media mirror's figures, when it ran.
    pub media: Option<MediaReport>,
    /// Whether staging serves this run's snapshot: after a successful cutover, including a
    /// run that failed later (backend start, health, cleanup).
    #[serde(default)]
    pub snapshot_live: bool,
    /// What was repaired at the start of this run after an earlier one died.
    #[serde(default)]
    pub recovered: Option<Recovery>,
}

impl RunReport {
    pub fn new(run_id: String) -> RunReport {
        RunReport {
            run_id,
            kind: RunKind::Refresh,
            rollback: None,
            started_at: Utc::now(),
            finished_at: None,
            outcome: Outcome::Ok,
            failed_phase: None,
            error: None,
            error_without_values: None,
            cause: None,
            snapshot: None,
            phases: Vec::new(),
            steps: Vec::new(),
            bytes_downloaded: 0,
            bytes_restored: 0,
            rows_restored: BTreeMap::new(),
            statements_filtered: BTreeMap::new(),
            security_definer_functions: Vec::new(),
            database_settings_reset: Vec::new(),
            restore_role_reset: Vec::new(),
            restore_role_left: Vec::new(),
            rows_anonymized: BTreeMap::new(),
            masked_values: BTreeMap::new(),
            tables_emptied: BTreeMap::new(),
            columns_kept: Vec::new(),
            unclassified_columns: Vec::new(),
            verification: Vec::new(),
            pii_findings: Vec::new(),
            unpopulated_views: Vec::new(),
            maintenance_seconds: None,
            previous_kept: false,
            redis_flushed: false,
            media: None,
            snapshot_live: false,
            recovered: None,
        }
    }

    pub fn seconds(&self, phase: Phase) -> Option<f64> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.seconds)
    }

    /// Records how long `step` took.
    pub fn step(&mut self, step: Step, seconds: f64) {
        self.steps.push(StepTiming { step, seconds });
    }

    /// What went wrong in a run that still did its job, in words without values: PII scan
    /// findings let through (`on_unmasked_pii = "warn"`), media objects that failed to copy,
    /// an earlier run that had died and was recovered.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        // Under `on_unmasked_pii = "fail"` the findings fail the anonymize phase: the error.
        if !self.pii_findings.is_empty() && self.failed_phase != Some(Phase::Anonymize) {
            warnings.push(format!(
                "the PII scan found {} possibly unmasked (on_unmasked_pii = \"warn\" let them \
                 through)",
                counted(self.pii_columns(), "column")
            ));
        }
        if let Some(media) = self.media.as_ref().filter(|m| m.failed > 0) {
            warnings.push(format!("{} media objects failed to copy", media.failed));
        }
        if !self.restore_role_reset.is_empty() {
            warnings.push(format!(
                "the restore role was changed (by code in a dump) and is put back: {}",
                self.restore_role_reset.join("; ")
            ));
        }
        warnings.extend(self.restore_role_left.iter().map(|left| {
            format!("the restore role could not be put back, staging's data is live: {left}")
        }));
        if self.recovered.is_some() {
            warnings
                .push("an earlier run had died; this one first put staging back in order".into());
        }
        warnings
    }

    /// How many columns the PII scan found something in, however many ways.
    pub fn pii_columns(&self) -> usize {
        let columns: BTreeSet<_> = self
            .pii_findings
            .iter()
            .map(|f| (&f.table, &f.column))
            .collect();
        columns.len()
    }

    /// `failed` for every outcome but `ok`; `warning` for an `ok` run with [`Self::warnings`].
    pub fn severity(&self) -> Severity {
        match self.outcome {
            Outcome::Ok if self.warnings().is_empty() => Severity::Ok,
            Outcome::Ok => Severity::Warning,
            _ => Severity::Failed,
        }
    }
}

/// Per-table values keyed by the table's name as `name` renders it: the report's maps are
/// keyed by text, as the state file keeps them and every reader shows them.
pub fn keyed<V: Clone>(
    map: &BTreeMap<TableName, V>,
    name: fn(&TableName) -> String,
) -> BTreeMap<String, V> {
    map.iter()
        .map(|(table, v)| (name(table), v.clone()))
        .collect()
}
