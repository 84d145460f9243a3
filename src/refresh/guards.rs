//! The database's guards, which refuse a run before anything changes: a staging database
//! that has not opted in, a restore role that could not log in, a target that is the
//! snapshot's own server and database. (The media target's guards are [`Mirror::guard`]'s.)
//!
//! [`Mirror::guard`]: crate::media::Mirror::guard

use tokio_postgres::Client;

use super::{Run, RunError, select_snapshot};
use crate::database::{markers, restore_role};
use crate::error::{Guard, Refused};
use crate::report::SnapshotReport;
use crate::snapshot::{Selection, Snapshot};

impl Run<'_> {
    /// Refuses (before any change) a target that has not opted in or is the snapshot's own
    /// database; selects the snapshot.
    pub(super) async fn guards_and_snapshot(
        &mut self,
        maintenance: &Client,
        selection: &Selection,
    ) -> Result<Snapshot, RunError> {
        let name = &self.config.database.name;
        if markers::marked_at(&self.server, maintenance, name)
            .await?
            .is_none()
        {
            return Err(Refused::new(
                Guard::NotOptedIn,
                format!(
                    "database {name:?} on {} is not marked as a refresh target; \
                     run `staging-refresh init-target` once to opt in",
                    self.server.redacted()
                ),
            )
            .into());
        }
        let role = restore_role::name(name);
        let configured = self.config.database.restore_password.is_some();
        if let Some(refused) =
            restore_role::cannot_log_in(&self.server, maintenance, &role, configured).await?
        {
            return Err(refused.into());
        }
        let (_, snapshot) = select_snapshot(self.config, selection).await?;
        self.report.snapshot = Some(SnapshotReport::from(&snapshot));
        if snapshot.host == self.server.host() && &snapshot.database == name {
            return Err(Refused::new(
                Guard::TargetIsSource,
                format!(
                    "database.url points at the snapshot's own server and database ({}/{name}): \
                     staging must not be production",
                    snapshot.host
                ),
            )
            .into());
        }
        Ok(snapshot)
    }
}
