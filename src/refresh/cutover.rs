//! The maintenance window, shared by the refresh and `rollback`: raise the flag, stop the
//! backend, swap databases by renaming, flush Redis, start the backend, wait for health,
//! lower the flag. Its length does not depend on the data: renames are instant.
//!
//! A failure before the backend starts again undoes the swap, so staging comes back on the
//! data it had. A failure to start or to turn healthy leaves the new data in place (the
//! error says so, and `rollback` swaps back).

use std::time::Instant;

use chrono::Utc;

use super::backend::{self, BackendError};
use super::maintenance::{Flag, FlagContents, FlagError};
use super::redis;
use crate::config::Config;
use crate::database::{Server, swap};

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

/// Runs the maintenance window around `renames` (see [`swap::rename_all`]).
pub async fn run(
    config: &Config,
    server: &Server,
    client: &tokio_postgres::Client,
    run_id: &str,
    label: &str,
    renames: &[(&str, &str)],
) -> Result<CutoverDone, CutoverError> {
    let started = Instant::now();
    let flag = Flag::raise(
        &config.flag_file(),
        &FlagContents {
            run_id: run_id.to_owned(),
            since: Utc::now(),
            snapshot: label.to_owned(),
        },
    )?;
    let backend = &config.backend;
    let start = || backend::run_command("start", &backend.start, backend.command_timeout);
    // Before the swap, or after undoing it: bring staging back on what it had.
    let back_out = |flag: Flag, cause: String| async move {
        if let Err(e) = start().await {
            tracing::error!(error = %e, "starting the backend again after a failed cutover");
        }
        let _ = flag.lower();
        CutoverError::Undone(cause)
    };

    if let Err(e) = backend::run_command("stop", &backend.stop, backend.command_timeout).await {
        return Err(back_out(flag, e.to_string()).await);
    }
    if let Err(e) = swap::rename_all(server, client, renames).await {
        return Err(back_out(flag, e.to_string()).await);
    }
    let mut redis_flushed = false;
    if let Some(url) = &config.redis.url {
        if let Err(e) = redis::flush(url).await {
            let undo: Vec<(&str, &str)> = renames.iter().rev().map(|(f, t)| (*t, *f)).collect();
            let cause = match swap::rename_all(server, client, &undo).await {
                Ok(()) => e.to_string(),
                Err(undo_error) => format!("{e}; undoing the swap failed too: {undo_error}"),
            };
            return Err(back_out(flag, cause).await);
        }
        redis_flushed = true;
    }
    let started_up: Result<(), BackendError> = async {
        start().await?;
        match &backend.health_url {
            Some(url) => backend::wait_healthy(url, backend.health_timeout).await,
            None => Ok(()),
        }
    }
    .await;
    let lowered = flag.lower();
    started_up.map_err(|e| CutoverError::AfterSwap(e.to_string()))?;
    lowered?;
    Ok(CutoverDone {
        maintenance_seconds: started.elapsed().as_secs_f64(),
        redis_flushed,
    })
}
