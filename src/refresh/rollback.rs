//! `rollback`: swaps the kept previous database back in, in the same maintenance window a
//! refresh cuts over in. The replaced data becomes the previous database, so a second
//! rollback undoes the first.

use std::time::Instant;

use chrono::Utc;

use crate::config::Config;
use crate::database::sql::chain_without_values;
use crate::database::{DbError, Server};
use crate::journal::Journal;
use crate::lock::{LockError, RunLock};
use crate::recovery::{self, RecoveryError};
use crate::refresh::Observer;
use crate::refresh::cutover::{self, CutoverDone, CutoverError};
use crate::refresh::new_run_id;
use crate::report::{
    Outcome, Phase, PhaseTiming, RollbackReport, RunKind, RunReport, SnapshotReport,
};

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("there is no {0} to roll back to")]
    NoPrevious(String),
    #[error(transparent)]
    Cutover(#[from] CutoverError),
}

/// Rolls back, holding the lock, as a run of its own kind: `observer` sees it start (as the
/// cutover phase), any recovery of a dead run first, and its report at the end. `from` and
/// `to` are the snapshots staging serves now and the previous database holds, as far as the
/// state file knows. Only a held lock fails before the run has a report.
pub async fn rollback(
    config: &Config,
    from: Option<SnapshotReport>,
    to: Option<SnapshotReport>,
    observer: &dyn Observer,
) -> Result<RunReport, LockError> {
    let run_id = new_run_id();
    let lock = RunLock::acquire(&config.lock_file(), &run_id)?;
    let mut report = RunReport::new(run_id);
    report.kind = RunKind::Rollback;
    report.rollback = Some(RollbackReport {
        from: from.map(|s| s.name),
        to: to.as_ref().map(|s| s.name.clone()),
    });
    report.snapshot = to;
    observer.phase(&report, Phase::Cutover, None);
    let started = Instant::now();
    match swap_back(config, &lock, &mut report, observer).await {
        Ok(window) => {
            report.snapshot_live = true;
            report.previous_kept = true;
            report.maintenance_seconds = Some(window.maintenance_seconds);
            report.redis_flushed = window.redis_flushed;
        }
        Err(err) => {
            report.outcome = Outcome::Failed;
            report.failed_phase = Some(Phase::Cutover);
            report.error = Some(crate::error::chain(&err));
            report.error_without_values = Some(chain_without_values(&err));
        }
    }
    report.phases.push(PhaseTiming {
        phase: Phase::Cutover,
        seconds: started.elapsed().as_secs_f64(),
    });
    report.finished_at = Some(Utc::now());
    observer.finished(&report);
    drop(lock);
    Ok(report)
}

/// The swap itself: a dead run's leftovers put in order first, then the renames in one
/// maintenance window.
async fn swap_back(
    config: &Config,
    lock: &RunLock,
    report: &mut RunReport,
    observer: &dyn Observer,
) -> Result<CutoverDone, RollbackError> {
    if let Some(recovery) = recovery::recover(config, lock).await? {
        observer.recovered(&recovery);
        report.recovered = Some(recovery);
    }
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await?;
    let live = config.database.name.as_str();
    let previous = config.previous_db();
    if !server.exists(&client, &previous).await? {
        return Err(RollbackError::NoPrevious(previous));
    }
    let parked = config.parked_db();
    let renames: Vec<(&str, &str)> = if server.exists(&client, live).await? {
        vec![(live, &parked), (&previous, live), (&parked, &previous)]
    } else {
        vec![(&previous, live)]
    };
    let journal = Journal::new(&config.daemon.state_dir, &report.run_id);
    let swap = cutover::Swap {
        label: "rollback",
        renames: &renames,
        scratch: None,
    };
    let window = cutover::run(config, &server, &client, &journal, &swap).await;
    journal.finish();
    Ok(window?)
}
