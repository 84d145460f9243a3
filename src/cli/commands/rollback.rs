//! `rollback`: the previous database live again.

use crate::cli::lock_error;
use crate::config::Config;
use crate::error::Exit;
use crate::refresh::rollback::{self, RollbackError};
use crate::state::StateFile;

pub async fn run(config: &Config) -> anyhow::Result<Exit> {
    let state = StateFile::in_dir(&config.daemon.state_dir);
    let recovered = |recovery: &_| {
        state.record_recovery(recovery);
        println!("{}", recovery.summary());
    };
    let done = rollback::rollback(config, recovered)
        .await
        .map_err(|e| match e {
            RollbackError::Lock(e) => lock_error(e),
            other => other.into(),
        })?;
    println!(
        "rolled back: the previous data is live as {} again, the replaced data is kept as \
         {} (maintenance {:.1}s, redis {})",
        done.live,
        done.previous,
        done.window.maintenance_seconds,
        if done.window.redis_flushed {
            "flushed"
        } else {
            "not flushed"
        }
    );
    Ok(Exit::Success)
}
