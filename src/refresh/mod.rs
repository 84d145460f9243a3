//! The orchestrator: one refresh, phase by phase, as the design describes.
//!
//! Phase 1 (staging keeps serving): guards, snapshot selection, restore into
//! `<name>__refresh`, anonymize + verify + scan. SIGTERM here cancels cleanly.
//! Phase 2 (the maintenance window, [`cutover`]): runs to the end once started.
//! Phase 3: drop the replaced database unless `keep_previous`.
//!
//! Any failure before the swap leaves staging as it was and drops the scratch database.
//! The media mirror plugs in here: its copy pass runs concurrently with phase 1 (joined with
//! the database's preparation in `Run::prepare`), its delete pass in phase 3.
//!
//! This file holds the phases; the steps have rooms of their own: the database's [`guards`],
//! its preparation ([`database`]: scratch database, restore, anonymize), the [`media`]
//! passes, the [`cutover`].

pub mod cutover;
mod database;
mod error;
mod guards;
mod media;
mod observer;
pub mod plan;
pub mod rollback;

pub use error::{Doing, RunError};
pub use observer::Observer;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio_postgres::Client;

use crate::config::Config;
use crate::database::Server;
use crate::database::sql::chain_without_values;
use crate::fault;
use crate::journal::{Journal, MediaPass, Step};
use crate::lock::{LockError, RunLock};
use crate::media::{CopyOutcome, MediaProgress, Mirror};
use crate::progress::Progress;
use crate::recovery;
use crate::report::{Cause, Phase, PhaseTiming, RunReport};
use crate::restore::filter::Filter;
use crate::shutdown::CancellationToken;
use crate::snapshot::{Catalog, Selection, Snapshot};
use crate::store::SourceBucket;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Refresh the database only; leave the media bucket alone.
    pub skip_media: bool,
    /// Mirror the media bucket only; leave the database alone.
    pub skip_db: bool,
}

/// A run id: UTC start time plus a random suffix, sortable and unique.
pub fn new_run_id() -> String {
    let mut suffix = [0u8; 3];
    getrandom::fill(&mut suffix).expect("the OS random source works");
    format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        hex::encode(suffix)
    )
}

/// One refresh, holding the lock. Only a held lock is an error; everything else that goes
/// wrong is in the report (outcome, failed phase, error).
pub async fn run(
    config: &Config,
    selection: &Selection,
    options: &Options,
    shutdown: CancellationToken,
    observer: &dyn Observer,
) -> Result<RunReport, LockError> {
    let run_id = new_run_id();
    let lock = RunLock::acquire(&config.lock_file(), &run_id)?;
    let journal = Journal::new(&config.daemon.state_dir, &run_id);
    let mut run = Run {
        config,
        server: Server::new(&config.database.url),
        observer,
        shutdown,
        journal: &journal,
        left_behind: false,
        restore_role: None,
        report: RunReport::new(run_id),
        phase: Phase::Prepare,
        phase_started: Instant::now(),
    };
    tracing::info!(run_id = %run.report.run_id, "refresh started");
    let result = run.execute(&lock, selection, options).await;
    run.end_phase();
    // What the run could not clean up itself stays in the journal for the next start.
    if !run.left_behind {
        run.journal.finish();
    }
    let mut report = run.report;
    if let Err(err) = result {
        report.outcome = err.outcome();
        report.failed_phase = Some(err.phase(run.phase));
        report.error = Some(crate::error::chain(&err));
        report.error_without_values = Some(chain_without_values(&err));
        report.cause = match err.cause() {
            Some(Cause::BadSnapshot { snapshot, .. }) => Some(Cause::BadSnapshot {
                previous: snapshot_before(config, &snapshot).await,
                snapshot,
            }),
            cause => cause,
        };
        tracing::error!(
            run_id = %report.run_id,
            phase = %run.phase,
            "refresh failed: {}",
            crate::report::redact::capped(&crate::error::chain(&err))
        );
    } else {
        tracing::info!(run_id = %report.run_id, "refresh finished");
    }
    report.finished_at = Some(Utc::now());
    observer.finished(&report);
    drop(lock);
    Ok(report)
}

/// The snapshot taken before `name`, for a run to choose instead of it; `None` when there
/// is none, or the bucket cannot be listed.
async fn snapshot_before(config: &Config, name: &str) -> Option<String> {
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
    let catalog = Catalog::list(&bucket, &config.snapshot, config.source_database())
        .await
        .ok()?;
    let mut older = catalog.snapshots.into_iter().skip_while(|s| s.name != name);
    older.nth(1).map(|s| s.name)
}

/// The snapshot `selection` picks, and the bucket it is in.
pub(crate) async fn select_snapshot(
    config: &Config,
    selection: &Selection,
) -> Result<(SourceBucket, Snapshot), RunError> {
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
    let catalog = Catalog::list(&bucket, &config.snapshot, config.source_database())
        .await
        .doing("listing snapshots")?;
    let snapshot = catalog.select(selection, Utc::now())?.clone();
    Ok((bucket, snapshot))
}

/// The restore filter for `snapshot` on this staging server (its version and roles).
pub(crate) async fn restore_filter(
    server: &Server,
    maintenance: &Client,
    snapshot: &Snapshot,
) -> Result<Filter, RunError> {
    let (server_version, roles) = server.facts(maintenance).await?;
    Ok(Filter::new(
        server_version,
        roles,
        snapshot.database.clone(),
    ))
}

struct Run<'a> {
    config: &'a Config,
    server: Server,
    observer: &'a dyn Observer,
    shutdown: CancellationToken,
    journal: &'a Journal,
    /// Something the run changed could not be undone (the journal keeps it for recovery).
    left_behind: bool,
    /// The restore role, once the run prepared it: what the run puts back at its end.
    restore_role: Option<database::RestoreRole>,
    report: RunReport,
    phase: Phase,
    phase_started: Instant,
}

impl Run<'_> {
    fn begin(&mut self, phase: Phase, progress: Option<Arc<Progress>>) {
        self.end_phase();
        self.phase = phase;
        self.phase_started = Instant::now();
        tracing::info!(run_id = %self.report.run_id, %phase, "phase started");
        self.observer.phase(&self.report, phase, progress);
        fault::point(&format!("phase.{phase}"));
    }

    fn end_phase(&mut self) {
        if !self.report.phases.iter().any(|p| p.phase == self.phase) {
            self.report.phases.push(PhaseTiming {
                phase: self.phase,
                seconds: self.phase_started.elapsed().as_secs_f64(),
            });
        }
    }

    async fn execute(
        &mut self,
        lock: &RunLock,
        selection: &Selection,
        options: &Options,
    ) -> Result<(), RunError> {
        self.observer.phase(&self.report, Phase::Prepare, None);
        self.report.recovered = recovery::recover(self.config, lock).await?;
        if let Some(recovery) = &self.report.recovered {
            self.observer.recovered(recovery);
        }
        self.journal.step(Step::Started)?;
        // Both guards of the media target (not production, opted in) refuse before any change.
        let mirror = self.media_mirror(options).await?;
        if options.skip_db {
            let mirror = mirror.ok_or_else(|| {
                error::failed("--skip-db with the media mirror disabled or skipped: nothing to do")
            })?;
            return self.mirror_only(&mirror).await;
        }
        let maintenance = self.maintenance_session().await?;
        let snapshot = self.guards_and_snapshot(&maintenance, selection).await?;

        let media_progress = MediaProgress::new();
        self.observer.media(&media_progress);
        // Before the swap, or after the cutover undid it, the scratch database is ours to drop.
        let copied = match self
            .prepare(&maintenance, &snapshot, mirror.as_ref(), &media_progress)
            .await
        {
            Ok(copied) => copied,
            Err(err) => return Err(self.dropping_scratch(err).await),
        };
        let had_live = match self.cut_over(&maintenance, &snapshot).await {
            Ok(had_live) => had_live,
            Err(err) => return Err(self.dropping_scratch(err).await),
        };

        self.begin(Phase::Cleanup, None);
        if had_live && !self.config.database.keep_previous {
            self.server
                .drop(&maintenance, &self.config.previous_db())
                .await?;
        }
        self.report.previous_kept = had_live && self.config.database.keep_previous;
        self.prove_restore_role().await;
        if let (Some(mirror), Some(copied)) = (&mirror, copied) {
            return self.delete_pass(mirror, &copied, &media_progress).await;
        }
        Ok(())
    }

    /// Phase 1, cancellable: a signal drops the work in flight. The media copy pass runs
    /// alongside the database's preparation; it only adds and updates staging objects, so
    /// the data staging serves now stays whole if the refresh stops here. Returns what the
    /// copy pass copied, for the delete pass.
    async fn prepare(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
        mirror: Option<&Mirror>,
        media_progress: &MediaProgress,
    ) -> Result<Option<CopyOutcome>, RunError> {
        let shutdown = self.shutdown.clone();
        if mirror.is_some() {
            self.journal.record(|e| e.media = Some(MediaPass::Copy))?;
        }
        let copy_pass = media::copy_pass(mirror, media_progress, &shutdown, self.journal);
        let database = async {
            self.prepare_database(maintenance, snapshot).await?;
            // What is left is the copy pass: the phase says so, and times the wait.
            if mirror.is_some() {
                self.begin(Phase::Media, None);
            }
            Ok::<(), RunError>(())
        };
        let prepared = tokio::select! {
            result = async { tokio::try_join!(database, copy_pass) } => result,
            () = shutdown.cancelled() => Err(RunError::Cancelled),
        };
        // However phase 1 ended (a signal drops it wherever it was), the restore role is put
        // back; if it cannot be, the run fails, and the next start's recovery tries again.
        let released = self.put_back_restore_role().await;
        self.left_behind = released.is_err();
        match (prepared, released) {
            (Ok(_), Err(e)) => Err(e),
            (Err(err), Err(e)) => {
                tracing::error!(
                    error = %e,
                    "the restore role could not be put back; the next start tries again"
                );
                Err(err)
            }
            // A signal that came as the last step finished still counts as before cutover.
            (Ok(_), Ok(())) if self.shutdown.is_cancelled() => Err(RunError::Cancelled),
            (prepared, Ok(())) => prepared.map(|((), copied)| copied),
        }
    }

    /// Drops the previous refresh's kept database (before the window, not during it), then
    /// runs the maintenance window swapping the scratch database in, and records it in the
    /// report. Returns whether there was a live database to replace.
    async fn cut_over(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
    ) -> Result<bool, RunError> {
        let (scratch, previous) = (self.config.scratch_db(), self.config.previous_db());
        self.server.drop(maintenance, &previous).await?;
        self.begin(Phase::Cutover, None);
        let name = self.config.database.name.as_str();
        let had_live = self.server.exists(maintenance, name).await?;
        let mut renames = vec![(scratch.as_str(), name)];
        if had_live {
            renames.insert(0, (name, previous.as_str()));
        }
        let swap = cutover::Swap {
            label: &snapshot.name,
            renames: &renames,
            scratch: Some(&scratch),
        };
        let done = cutover::run(self.config, &self.server, maintenance, self.journal, &swap)
            .await
            .inspect_err(|e| self.report.snapshot_live = e.is_after_swap())?;
        if let Err(e) = self.journal.step(Step::Cleanup) {
            tracing::warn!(error = %e, "the cutover is done; cleaning up unrecorded");
        }
        self.report.snapshot_live = true;
        self.report.maintenance_seconds = Some(done.maintenance_seconds);
        self.report.redis_flushed = done.redis_flushed;
        tracing::info!(seconds = done.maintenance_seconds, "cutover done");
        Ok(had_live)
    }

    /// `err`, after dropping the scratch database (what the run cannot drop stays in the
    /// journal for the next start).
    async fn dropping_scratch(&mut self, err: RunError) -> RunError {
        self.left_behind |= !self.drop_scratch().await;
        err
    }
}
