//! The orchestrator: one refresh, phase by phase, as the design describes.
//!
//! Phase 1 (staging keeps serving): guards, snapshot selection, restore into
//! `<name>__refresh`, anonymize + verify + scan. SIGTERM here cancels cleanly.
//! Phase 2 (the maintenance window, [`cutover`]): runs to the end once started.
//! Phase 3: drop the replaced database unless `keep_previous`.
//!
//! Any failure before the swap leaves staging as it was and drops the scratch database.
//! The media mirror plugs in here: its copy pass runs concurrently with phase 1
//! ([`prepare_database`] is joined with it), its delete pass in phase 3.

pub mod cutover;
mod error;
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
use crate::database::restore_role::{self, Reach};
use crate::database::sql::chain_without_values;
use crate::database::{Server, markers, settings};
use crate::error::Refused;
use crate::fault;
use crate::journal::{Journal, MediaPass, Step};
use crate::lock::{LockError, RunLock};
use crate::mask::Masker;
use crate::media::{MediaProgress, MediaReport, Mirror};
use crate::progress::{Progress, Unit};
use crate::recovery;
use crate::report::{self, Phase, PhaseTiming, RunReport, SnapshotReport};
use crate::restore::session::Sessions;
use crate::restore::{self, RestoreError, filter::Filter};
use crate::shutdown::CancellationToken;
use crate::snapshot::{Catalog, Selection, Snapshot};
use crate::store::SourceBucket;
use crate::table::TableName;
use crate::verify::{self, AnonymizeError};

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
        tracing::error!(
            run_id = %report.run_id,
            phase = %run.phase,
            "refresh failed: {}",
            crate::error::chain(&err)
        );
    } else {
        tracing::info!(run_id = %report.run_id, "refresh finished");
    }
    report.finished_at = Some(Utc::now());
    observer.finished(&report);
    drop(lock);
    Ok(report)
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
        let maintenance = self.server.connect(None).await?;
        // The refresh's own statements (creating, dropping and renaming databases) are
        // bounded too: a lock held elsewhere fails the run instead of holding it.
        let limits = &self.config.restore;
        self.server
            .execute(
                &maintenance,
                "limiting the refresh's own statements",
                &format!(
                    "SET statement_timeout = {}; SET lock_timeout = {}",
                    limits.statement_timeout.as_millis(),
                    limits.lock_timeout.as_millis()
                ),
            )
            .await?;
        let snapshot = self.guards_and_snapshot(&maintenance, selection).await?;

        // Phase 1, cancellable: a signal drops the work in flight, then the scratch database.
        // The media copy pass runs alongside; it only adds and updates staging objects, so the
        // data staging serves now stays whole if the refresh stops here.
        let media_progress = MediaProgress::new();
        self.observer.media(&media_progress);
        let shutdown = self.shutdown.clone();
        let copy_shutdown = self.shutdown.clone();
        if mirror.is_some() {
            self.journal.record(|e| e.media = Some(MediaPass::Copy))?;
        }
        let journal = self.journal;
        let copy_pass = async {
            match &mirror {
                Some(mirror) => {
                    let copied = mirror.copy_pass(&media_progress, &copy_shutdown).await;
                    if copied.is_ok() {
                        record_media(journal, None);
                    }
                    copied.map(Some).map_err(RunError::from)
                }
                None => Ok(None),
            }
        };
        let database = async {
            self.prepare_database(&maintenance, &snapshot).await?;
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
        // However phase 1 ended (a signal drops it wherever it was), the restore role's
        // login for this run is taken back; if it cannot be, the next start's recovery does.
        let released = self.release_restore_login().await;
        self.left_behind = released.is_err();
        let prepared = match (prepared, released) {
            (Ok(_), Err(e)) => Err(e),
            (Err(err), Err(e)) => {
                tracing::error!(error = %e, "the next start takes back the restore role's login");
                Err(err)
            }
            (prepared, Ok(())) => prepared,
        };
        // A signal that came as the last step finished still counts as before cutover.
        let swapped = match prepared {
            Ok(_) if self.shutdown.is_cancelled() => Err(RunError::Cancelled),
            Ok((_, copied)) => self
                .cut_over(&maintenance, &snapshot)
                .await
                .map(|done| (done, copied)),
            Err(err) => Err(err),
        };
        // Before the swap, or after the cutover undid it, the scratch database is ours to drop.
        let ((done, had_live), copied) = match swapped {
            Ok(swapped) => swapped,
            Err(err) => {
                self.left_behind |= !self.drop_scratch().await;
                return Err(err);
            }
        };
        if let Err(e) = self.journal.step(Step::Cleanup) {
            tracing::warn!(error = %e, "the cutover is done; cleaning up unrecorded");
        }
        self.report.snapshot_live = true;
        self.report.maintenance_seconds = Some(done.maintenance_seconds);
        self.report.redis_flushed = done.redis_flushed;
        tracing::info!(seconds = done.maintenance_seconds, "cutover done");

        self.begin(Phase::Cleanup, None);
        if had_live && !self.config.database.keep_previous {
            self.server
                .drop(&maintenance, &self.config.previous_db())
                .await?;
        }
        self.report.previous_kept = had_live && self.config.database.keep_previous;
        if let (Some(mirror), Some(copied)) = (&mirror, copied) {
            record_media(self.journal, Some(MediaPass::Delete));
            let media = mirror
                .delete_pass(&copied, &media_progress, &self.shutdown)
                .await;
            return self.media_finished(media);
        }
        Ok(())
    }

    /// The media mirror, unless disabled or skipped; refuses a target that is production's
    /// bucket or lacks the opt-in marker.
    async fn media_mirror(&self, options: &Options) -> Result<Option<Mirror>, RunError> {
        if !self.config.media.enabled || options.skip_media {
            return Ok(None);
        }
        let mirror = Mirror::new(&self.config.media)?;
        mirror.guard().await?;
        Ok(Some(mirror))
    }

    /// `run --skip-db`: both media passes, back to back, and no database work.
    async fn mirror_only(&mut self, mirror: &Mirror) -> Result<(), RunError> {
        self.begin(Phase::Media, None);
        let progress = MediaProgress::new();
        self.observer.media(&progress);
        self.journal.record(|e| e.media = Some(MediaPass::Copy))?;
        let copied = mirror.copy_pass(&progress, &self.shutdown).await?;
        record_media(self.journal, Some(MediaPass::Delete));
        let media = mirror.delete_pass(&copied, &progress, &self.shutdown).await;
        self.media_finished(media)
    }

    /// Records the mirror's report; objects that failed fail the run (the others are done).
    fn media_finished(&mut self, media: MediaReport) -> Result<(), RunError> {
        tracing::info!(summary = %media.summary(), "media mirror finished");
        let failed = media.failed;
        self.report.media = Some(media);
        if failed > 0 {
            return Err(RunError::MediaIncomplete { failed });
        }
        Ok(())
    }

    /// Drops the previous refresh's kept database (before the window, not during it), then
    /// runs the maintenance window swapping the scratch database in. Returns whether there
    /// was a live database to replace.
    async fn cut_over(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
    ) -> Result<(cutover::CutoverDone, bool), RunError> {
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
        Ok((done, had_live))
    }

    /// Refuses (before any change) a target that has not opted in or is the snapshot's own
    /// database; selects the snapshot.
    async fn guards_and_snapshot(
        &mut self,
        maintenance: &Client,
        selection: &Selection,
    ) -> Result<Snapshot, RunError> {
        let name = &self.config.database.name;
        if markers::marked_at(&self.server, maintenance, name)
            .await?
            .is_none()
        {
            return Err(Refused(format!(
                "database {name:?} on {} is not marked as a refresh target; \
                 run `staging-refresh init-target` once to opt in",
                self.server.redacted()
            ))
            .into());
        }
        let role = restore_role::name(name);
        let configured = self.config.database.restore_password.is_some();
        if let Some(why) =
            restore_role::cannot_log_in(&self.server, maintenance, &role, configured).await?
        {
            return Err(Refused(why).into());
        }
        let (_, snapshot) = select_snapshot(self.config, selection).await?;
        self.report.snapshot = Some(SnapshotReport::from(&snapshot));
        if snapshot.host == self.server.host() && &snapshot.database == name {
            return Err(Refused(format!(
                "database.url points at the snapshot's own server and database ({}/{name}): \
                 staging must not be production",
                snapshot.host
            ))
            .into());
        }
        Ok(snapshot)
    }

    /// Restores into a fresh scratch database as the restore role and anonymizes it, then
    /// hands it to `database.owner` (the connected role when none is set).
    async fn prepare_database(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
    ) -> Result<(), RunError> {
        let scratch = self.config.scratch_db();
        let filter = restore_filter(&self.server, maintenance, snapshot).await?;
        let role = restore_role::name(&self.config.database.name);
        self.journal.step(Step::Restore {
            scratch: scratch.clone(),
        })?;
        // A scratch database left by a crashed run is ours by name.
        self.server.drop(maintenance, &scratch).await?;
        let reach = restore_role::ensure(
            &self.server,
            maintenance,
            &role,
            self.config.database.restore_password.as_ref(),
        )
        .await?;
        self.restore_and_anonymize(maintenance, snapshot, filter, (&role, &reach))
            .await
    }

    /// Takes back the restore role's login for this run, over a connection of its own (the
    /// run's may be what failed); a configured password is the operator's and stays.
    async fn release_restore_login(&self) -> Result<(), RunError> {
        if self.config.database.restore_password.is_some() {
            return Ok(());
        }
        let role = restore_role::name(&self.config.database.name);
        let client = self.server.connect(None).await?;
        restore_role::release(&self.server, &client, &role).await?;
        Ok(())
    }

    async fn restore_and_anonymize(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
        filter: Filter,
        (role, reach): (&str, &Reach),
    ) -> Result<(), RunError> {
        let scratch = self.config.scratch_db();
        let owner = match &self.config.database.owner {
            Some(owner) => owner.clone(),
            None => self.server.current_role(maintenance).await?,
        };
        // The mask key is read (or made) before anything is created: a bad key file changes
        // nothing.
        let (anonymize, state_dir) = (
            self.config.anonymize.clone(),
            self.config.daemon.state_dir.clone(),
        );
        let masker =
            tokio::task::spawn_blocking(move || Masker::from_config(&anonymize, &state_dir))
                .await
                .expect("preparing the masker does not panic")
                .doing("preparing the masking")?;
        let sessions = Sessions::new(
            &self.server,
            maintenance,
            &scratch,
            (role, reach),
            &self.config.restore,
        )
        .await?;
        self.server
            .create(maintenance, &scratch, Some(role))
            .await?;
        fault::point("restore.scratch-created");

        let progress = Arc::new(Progress::new("restore", Unit::Bytes, Some(snapshot.size)));
        self.begin(Phase::Restore, Some(progress.clone()));
        let bucket = SourceBucket::new(self.config.snapshot.bucket_config());
        let source = restore::Source {
            bucket: &bucket,
            decrypt: self.config.snapshot.decrypt.as_ref(),
        };
        let restoring = || format!("restoring {} into {scratch}", snapshot.name);
        let limit = self.config.restore.timeout;
        let restored = restore::restore(
            source,
            snapshot,
            filter,
            masker,
            &sessions,
            progress.clone(),
        );
        let (streamed, masker) = match tokio::time::timeout(limit, restored).await {
            Ok(streamed) => streamed,
            Err(_) => Err(RestoreError::TimedOut(
                humantime::format_duration(limit).to_string(),
            )),
        }
        .doing(restoring())?;
        let masked = masker.finish().doing(restoring())?;
        progress.finish();
        self.report.bytes_downloaded = streamed.bytes_downloaded;
        self.report.bytes_restored = streamed.bytes_sql;
        self.report.rows_restored = report::keyed(&streamed.rows, TableName::as_dumped);
        self.report.statements_filtered = streamed.filtered;
        self.report.masked_values = report::keyed(&masked.values, TableName::to_string);
        self.report.tables_emptied = report::keyed(&masked.emptied, TableName::as_dumped);
        self.report.columns_kept = masked
            .kept
            .iter()
            .map(|(table, column)| format!("{table}.{}", crate::table::display_ident(column)))
            .collect();
        if let Some(s) = &mut self.report.snapshot {
            s.checksum_verified = streamed.checksum_verified;
        }

        self.begin(Phase::Anonymize, None);
        self.journal.step(Step::Anonymize {
            scratch: scratch.clone(),
        })?;
        // What the dump's code did to the database itself (as its owner) is undone before
        // any session of ours reads its settings.
        self.report.database_settings_reset =
            settings::reset(&self.server, maintenance, &scratch, (role, &owner)).await?;
        // The anonymization gets a session of its own (the restore's are closed): nothing
        // they were left with (temp objects, pending trigger events, settings) reaches it.
        let mut client = restore_role::connect(&self.server, &scratch, role, reach).await?;
        match verify::run(
            &mut client,
            &self.config.anonymize,
            &masked,
            &streamed.xids,
            &self.config.restore,
        )
        .await
        {
            Ok(done) => {
                self.report.rows_anonymized = report::keyed(&done.rows, TableName::as_dumped);
                self.report.verification = done.verification;
                self.report.pii_findings = done.findings;
            }
            Err(err) => {
                let (verification, findings) = AnonymizeError::results(&err);
                self.report.verification = verification;
                self.report.pii_findings = findings;
                return Err(err).doing(format!("anonymizing {scratch}"));
            }
        }
        drop(client);
        // Handing over takes the refresh role's own rights on both roles.
        let client = self.server.connect(Some(&scratch)).await?;
        restore_role::hand_over(&self.server, &client, role, &owner).await?;
        self.report.security_definer_functions =
            restore_role::security_definers(&self.server, &client).await?;
        if !self.report.security_definer_functions.is_empty() {
            tracing::warn!(
                functions = %self.report.security_definer_functions.join(", "),
                "the dump holds SECURITY DEFINER functions: they run as {owner:?} for any caller"
            );
        }
        self.journal.step(Step::Anonymized { scratch })?;
        fault::point("anonymize.committed");
        Ok(())
    }

    /// Drops the scratch database over a connection of its own (the run's may be what
    /// failed); false when it could not.
    async fn drop_scratch(&self) -> bool {
        let scratch = self.config.scratch_db();
        let dropped = match self.server.connect(None).await {
            Ok(client) => self.server.drop(&client, &scratch).await,
            Err(e) => Err(e),
        };
        match &dropped {
            Ok(()) => tracing::info!(database = %scratch, "scratch database dropped"),
            Err(e) => tracing::error!(
                error = %e,
                "dropping the scratch database failed: the next start drops it"
            ),
        }
        dropped.is_ok()
    }
}

/// Records the media pass in progress; the pass goes on if that fails (it only adds or
/// removes whole objects, which the next run would finish anyway).
fn record_media(journal: &Journal, pass: Option<MediaPass>) {
    if let Err(e) = journal.record(|e| e.media = pass) {
        tracing::warn!(error = %e, "the media pass goes on unrecorded");
    }
}
