//! `rollback`: swaps the kept previous database back in, in the same maintenance window a
//! refresh cuts over in. The replaced data becomes the previous database, so a second
//! rollback undoes the first.

use crate::config::Config;
use crate::database::{DbError, Server};
use crate::journal::{Journal, Recovery};
use crate::lock::{LockError, RunLock};
use crate::recovery::{self, RecoveryError};
use crate::refresh::cutover::{self, CutoverDone, CutoverError};
use crate::refresh::new_run_id;

#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("there is no {0} to roll back to")]
    NoPrevious(String),
    #[error(transparent)]
    Cutover(#[from] CutoverError),
}

/// A finished rollback: `live` serves the previous data again, `previous` keeps what it
/// replaced.
#[derive(Debug)]
pub struct RollbackDone {
    pub live: String,
    pub previous: String,
    pub window: CutoverDone,
}

/// Rolls back, holding the lock. A dead run's leftovers are put in order first and handed to
/// `recovered` before the swap (the caller keeps the record, as after every recovery).
pub async fn rollback(
    config: &Config,
    recovered: impl FnOnce(&Recovery),
) -> Result<RollbackDone, RollbackError> {
    let run_id = new_run_id();
    let lock = RunLock::acquire(&config.lock_file(), &run_id)?;
    if let Some(recovery) = recovery::recover(config, &lock).await? {
        recovered(&recovery);
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
    let journal = Journal::new(&config.daemon.state_dir, &run_id);
    let swap = cutover::Swap {
        label: "rollback",
        renames: &renames,
        scratch: None,
    };
    let window = cutover::run(config, &server, &client, &journal, &swap).await;
    journal.finish();
    Ok(RollbackDone {
        live: live.to_owned(),
        previous,
        window: window?,
    })
}
