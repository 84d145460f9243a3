//! The maintenance window, shared by the refresh and `rollback`: raise the flag, stop the
//! backend, swap databases by renaming, flush Redis, start the backend, wait for health,
//! lower the flag. Its length does not depend on the data: renames are instant.
//!
//! A failure before the backend starts again undoes the swap, so staging comes back on the
//! data it had. A failure to start or to turn healthy (the backend's health URL, and the
//! backend's role able to connect and write, [`writable`]) leaves the new data in place
//! (the error says so, and `rollback` swaps back).

use std::time::Instant;

use chrono::Utc;

use crate::config::Config;
use crate::database::{Server, swap, writable};
use crate::fault;
use crate::journal::{Journal, Stage, Step, Window};
use crate::staging::backend;
use crate::staging::maintenance::{Flag, FlagContents, FlagError};
use crate::staging::redis;

#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("{0}; staging keeps its previous data")]
    Undone(String),
    #[error("{0}; the new data is in place: `staging-refresh rollback` brings the previous back")]
    AfterSwap(String),
}

impl CutoverError {
    /// Whether the new data stayed in place (the backend did not come back healthy on it).
    pub fn is_after_swap(&self) -> bool {
        matches!(self, CutoverError::AfterSwap(_))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CutoverDone {
    pub maintenance_seconds: f64,
    pub redis_flushed: bool,
}

/// What the window puts in place: a snapshot name or "rollback", and the renames doing it
/// (see [`swap::rename_all`]).
pub struct Swap<'a> {
    pub label: &'a str,
    pub renames: &'a [(&'a str, &'a str)],
    /// The scratch database a refresh swaps in; none for a rollback.
    pub scratch: Option<&'a str>,
}

/// Runs the maintenance window around `swap`, each step recorded in `journal` first.
pub async fn run(
    config: &Config,
    server: &Server,
    client: &tokio_postgres::Client,
    journal: &Journal,
    swap: &Swap<'_>,
) -> Result<CutoverDone, CutoverError> {
    let started = Instant::now();
    let renames = swap.renames;
    let oids = server
        .oids(client, &swap::moves(renames))
        .await
        .map_err(|e| CutoverError::Undone(e.to_string()))?;
    journal
        .step(Step::Cutover(Window {
            scratch: swap.scratch.map(str::to_owned),
            renames: renames
                .iter()
                .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
                .collect(),
            oids,
            stage: Stage::RaiseFlag,
            redis_flushed: false,
        }))
        .map_err(|e| CutoverError::Undone(e.to_string()))?;
    let flag = Flag::raise(
        &config.flag_file(),
        &FlagContents {
            run_id: journal.run_id(),
            since: Utc::now(),
            snapshot: swap.label.to_owned(),
        },
    )?;
    fault::point("cutover.flag-raised");
    let backend = &config.backend;
    let start = || async {
        journal.window(|w| w.stage = Stage::StartBackend);
        backend::run_command("start", &backend.start, backend.command_timeout).await
    };
    // Before the swap, or after undoing it: bring staging back on what it had.
    let back_out = |flag: Flag, cause: String| async move {
        if let Err(e) = start().await {
            tracing::error!(error = %e, "starting the backend again after a failed cutover");
        }
        journal.window(|w| w.stage = Stage::LowerFlag);
        let _ = flag.lower();
        CutoverError::Undone(cause)
    };

    journal.window(|w| w.stage = Stage::StopBackend);
    if let Err(e) = backend::run_command("stop", &backend.stop, backend.command_timeout).await {
        return Err(back_out(flag, e.to_string()).await);
    }
    fault::point("cutover.backend-stopped");
    journal.window(|w| w.stage = Stage::Swap);
    if let Err(e) = swap::rename_all(server, client, renames).await {
        return Err(back_out(flag, e.to_string()).await);
    }
    fault::point("cutover.swapped");
    let mut redis_flushed = false;
    if let Some(url) = &config.redis.url {
        journal.window(|w| w.stage = Stage::FlushRedis);
        if let Err(e) = redis::flush(url).await {
            journal.window(|w| w.stage = Stage::UndoSwap);
            let undo = swap::undo(renames);
            let cause = match swap::rename_all(server, client, &undo).await {
                Ok(()) => e.to_string(),
                Err(undo_error) => format!("{e}; undoing the swap failed too: {undo_error}"),
            };
            return Err(back_out(flag, cause).await);
        }
        journal.window(|w| w.redis_flushed = true);
        redis_flushed = true;
        fault::point("cutover.redis-flushed");
    }
    let started_up: Result<(), String> = async {
        start().await.map_err(|e| e.to_string())?;
        fault::point("cutover.backend-started");
        // Healthy means the backend's role can use the live database too.
        let live = &config.database.name;
        let owner = config.database.owner.as_deref();
        writable::verify(server, client, live, owner)
            .await
            .map_err(|e| crate::error::chain(&e))?;
        match &backend.health_url {
            Some(url) => backend::wait_healthy(url, backend.health_timeout).await,
            None => Ok(()),
        }
        .map_err(|e| e.to_string())
    }
    .await;
    journal.window(|w| w.stage = Stage::LowerFlag);
    let lowered = flag.lower();
    fault::point("cutover.flag-lowered");
    started_up.map_err(CutoverError::AfterSwap)?;
    lowered?;
    Ok(CutoverDone {
        maintenance_seconds: started.elapsed().as_secs_f64(),
        redis_flushed,
    })
}
