//! The database side of phase 1: a fresh scratch database, the dump restored into it as the
//! unprivileged restore role (masked in the stream), anonymized and verified in one
//! transaction, then handed to `database.owner`; and what a run that stops takes back (the
//! restore role as it was, the scratch database).

use std::sync::Arc;

use tokio_postgres::Client;
use tokio_util::task::AbortOnDropHandle;

use super::{Doing, Run, RunError, restore_filter};
use crate::database::extensions::{self, Extensions, Template};
use crate::database::restore_role::{self, Reach};
use crate::database::settings;
use crate::fault;
use crate::journal::Step;
use crate::mask::{Admin, MaskError, Masked, Masker};
use crate::progress::{Progress, Unit};
use crate::report::{self, Phase};
use crate::restore::privileges::Privileges;
use crate::restore::session::Sessions;
use crate::restore::{self, RestoreError, Streamed, filter::Filter};
use crate::snapshot::Snapshot;
use crate::store::SourceBucket;
use crate::table::TableName;
use crate::verify::scan::stream::Scanning;
use crate::verify::{self, AnonymizeError, StreamScan};

/// The role the dump runs as, and how it reaches the scratch database.
#[derive(Clone)]
pub(super) struct RestoreRole {
    name: String,
    reach: Reach,
}

impl Run<'_> {
    /// The maintenance session the refresh's own statements (creating, dropping and renaming
    /// databases) run on, bounded too: a lock held elsewhere fails the run instead of holding
    /// it.
    pub(super) async fn maintenance_session(&self) -> Result<Client, RunError> {
        let maintenance = self.server.connect(None).await?;
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
        Ok(maintenance)
    }

    /// Restores into a fresh scratch database as the restore role and anonymizes it, then
    /// hands it to `database.owner` (the connected role when none is set).
    pub(super) async fn prepare_database(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
    ) -> Result<(), RunError> {
        let scratch = self.config.scratch_db();
        // The admin's bcrypt hash takes a core for a quarter of a second: it is computed
        // while the steps before the restore wait on the server.
        let anonymize = self.config.anonymize.clone();
        let hashing = AbortOnDropHandle::new(tokio::task::spawn_blocking(move || {
            Admin::from_config(&anonymize)
        }));
        let filter = restore_filter(&self.server, maintenance, snapshot).await?;
        let name = restore_role::name(&self.config.database.name);
        self.journal.step(Step::Restore {
            scratch: scratch.clone(),
        })?;
        // A scratch database left by a crashed run is ours by name.
        self.server.drop(maintenance, &scratch).await?;
        let reach = restore_role::ensure(
            &self.server,
            maintenance,
            &name,
            self.config.database.restore_password.as_ref(),
        )
        .await?;
        // Before the dump's first statement, nothing of an earlier dump's may be left on it.
        let found = restore_role::put_back(&self.server, &name, reach.during_run(), None).await?;
        self.report
            .restore_role_reset
            .extend(found.into_iter().map(|f| format!("before this run, {f}")));
        let role = RestoreRole { name, reach };
        self.restore_role = Some(role.clone());
        let owner = match &self.config.database.owner {
            Some(owner) => owner.clone(),
            None => self.server.current_role(maintenance).await?,
        };
        let admin = hashing
            .await
            .expect("hashing the admin's password does not panic")
            .doing("preparing the masking")?;
        let (streamed, masked, scan) = self
            .restore(maintenance, snapshot, filter, &role, admin)
            .await?;
        self.anonymize(maintenance, &role, &owner, &streamed, (&masked, &scan))
            .await
    }

    /// Streams `snapshot` into a new scratch database owned by the restore role (a copy of
    /// `database.template`, or of template0), masking and scanning it on the way; the
    /// restore's figures go in the report.
    async fn restore(
        &mut self,
        maintenance: &Client,
        snapshot: &Snapshot,
        filter: Filter,
        role: &RestoreRole,
        admin: Option<Admin>,
    ) -> Result<(Streamed, Masked, StreamScan), RunError> {
        let scratch = self.config.scratch_db();
        // The mask key is read (or made) before anything is created: a bad key file changes
        // nothing.
        let masker =
            Masker::from_config(&self.config.anonymize, &self.config.daemon.state_dir, admin)
                .doing("preparing the masking")?;
        let sessions = Sessions::new(
            &self.server,
            maintenance,
            &scratch,
            (&role.name, &role.reach),
            &self.config.restore,
        )
        .await?;
        let database = &self.config.database;
        let template = Template::new(database.template.as_deref(), &database.name);
        self.server
            .create(maintenance, &scratch, template.source(), Some(&role.name))
            .await?;
        fault::point("restore.scratch-created");
        // What the restore role may run depends on what the scratch database holds.
        let privileges = {
            let client = self.server.connect(Some(&scratch)).await?;
            extensions::adopt_schemas(&self.server, &client, &role.name).await?;
            let extensions =
                Extensions::read(&self.server, &client, template, true, &role.name).await?;
            Privileges::enforcing(extensions)
        };

        let progress = Arc::new(Progress::new("restore", Unit::Bytes, Some(snapshot.size)));
        self.begin(Phase::Restore, Some(progress.clone()));
        let bucket = SourceBucket::new(self.config.snapshot.bucket_config());
        let source = restore::Source {
            bucket: &bucket,
            decrypt: self.config.snapshot.decrypt.as_ref(),
        };
        let restoring = || format!("restoring {} into {scratch}", snapshot.name);
        let limit = self.config.restore.timeout;
        // On the heap: the stream's future is big, and the daemon polls it on a worker
        // thread's stack (2 MiB), which a debug build's copies of it overflowed.
        let restored = Box::pin(restore::restore(
            source,
            snapshot,
            (filter, privileges),
            Scanning::new(masker, &self.config.anonymize),
            &sessions,
            progress.clone(),
        ));
        let (streamed, scanning) = match tokio::time::timeout(limit, restored).await {
            Ok(streamed) => streamed,
            Err(_) => Err(RestoreError::TimedOut(
                humantime::format_duration(limit).to_string(),
            )),
        }
        .map_err(|mut e| {
            if let RestoreError::Stage(stage) = &mut e {
                self.note_unclassified(stage.downcast_mut(), snapshot);
            }
            e
        })
        .doing(restoring())?;
        let (masker, scan) = scanning.finish();
        let masked = masker
            .finish()
            .map_err(|mut e| {
                self.note_unclassified(Some(&mut e), snapshot);
                e
            })
            .doing(restoring())?;
        progress.finish();
        let restoring = self.phase_started.elapsed().as_secs_f64();
        self.report
            .step(report::Step::Data, restoring - streamed.post_data_seconds);
        self.report
            .step(report::Step::PostData, streamed.post_data_seconds);
        self.report.step(report::Step::StreamScan, scan.seconds);
        self.report.bytes_downloaded = streamed.bytes_downloaded;
        self.report.bytes_restored = streamed.bytes_sql;
        self.report.rows_restored = report::keyed(&streamed.rows, TableName::as_dumped);
        self.report.statements_filtered = streamed.filtered.clone();
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
        Ok((streamed, masked, scan))
    }

    /// A refusal of unclassified columns names the snapshot to ask for rules, and leaves
    /// every column in the report (the refusal shows a screenful).
    fn note_unclassified(&mut self, err: Option<&mut MaskError>, snapshot: &Snapshot) {
        if let Some(MaskError::Unclassified(unclassified)) = err {
            unclassified.snapshot = Some(snapshot.name.clone());
            self.report.unclassified_columns = unclassified.columns();
        }
    }

    /// The anonymize phase: the dump's own changes to the database's settings undone, then
    /// `extra_sql`, verification and the PII scan in one transaction; the database handed
    /// to `owner`.
    async fn anonymize(
        &mut self,
        maintenance: &Client,
        role: &RestoreRole,
        owner: &str,
        streamed: &Streamed,
        (masked, scan): (&Masked, &StreamScan),
    ) -> Result<(), RunError> {
        let scratch = self.config.scratch_db();
        self.begin(Phase::Anonymize, None);
        self.journal.step(Step::Anonymize {
            scratch: scratch.clone(),
        })?;
        // What the dump's code did to the database itself (as its owner) is undone before
        // any session of ours reads its settings.
        self.report.database_settings_reset =
            settings::reset(&self.server, maintenance, &scratch, (&role.name, owner)).await?;
        // The anonymization gets a session of its own (the restore's are closed): nothing
        // they were left with (temp objects, pending trigger events, settings) reaches it.
        let mut client =
            restore_role::connect(&self.server, &scratch, &role.name, &role.reach).await?;
        match verify::run(
            &mut client,
            &self.config.anonymize,
            (masked, scan),
            &streamed.xids,
            &self.config.restore,
        )
        .await
        {
            Ok(done) => {
                self.report.rows_anonymized = report::keyed(&done.rows, TableName::as_dumped);
                self.report.verification = done.verification;
                self.report.pii_findings = done.findings;
                self.report
                    .step(report::Step::Verification, done.verification_seconds);
                self.report.step(report::Step::Scan, done.scan_seconds);
                self.report.unpopulated_views = done.unpopulated_views;
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
        restore_role::hand_over(&self.server, &client, &role.name, owner).await?;
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

    /// Puts the restore role back as the run found it, however phase 1 ended (the dump's
    /// code may have changed its password and settings): the operator's password, or the
    /// run's login taken back; what it found is reported.
    pub(super) async fn put_back_restore_role(&mut self) -> Result<(), RunError> {
        let Some(role) = &self.restore_role else {
            // The run stopped before it prepared the role: it changed nothing there.
            return Ok(());
        };
        let scratch = self.config.scratch_db();
        let found = restore_role::put_back(
            &self.server,
            &role.name,
            role.reach.after_run(),
            Some(&scratch),
        )
        .await?;
        if !found.is_empty() {
            tracing::warn!(
                role = %role.name,
                found = %found.join("; "),
                "the restore role was changed (by code in the dump); it is put back"
            );
        }
        self.report.restore_role_reset.extend(found);
        Ok(())
    }

    /// Once the new data is live, proves again from outside that the restore role is as a
    /// run leaves it; anything that is not is a warning on every channel, with what to do.
    pub(super) async fn prove_restore_role(&mut self) {
        let Some(role) = &self.restore_role else {
            return;
        };
        let login = role.reach.after_run();
        let left = match self.server.connect(None).await {
            Ok(client) => {
                restore_role::prove(&self.server, &client, &role.name, &login, None).await
            }
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| {
            vec![format!(
                "it could not be checked ({e}): check it with `staging-refresh check`"
            )]
        });
        for problem in &left {
            tracing::error!(role = %role.name, "the restore role is not put back: {problem}");
        }
        self.report.restore_role_left = left;
    }

    /// Drops the scratch database over a connection of its own (the run's may be what
    /// failed); false when it could not.
    pub(super) async fn drop_scratch(&self) -> bool {
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
