//! `rollback`: the previous database live again, recorded and notified like a refresh.

use crate::cli::lock_error;
use crate::config::Config;
use crate::error::Exit;
use crate::notify;
use crate::refresh::rollback;
use crate::report::Outcome;
use crate::state::{Recorder, StateFile};

pub async fn run(config: &Config) -> anyhow::Result<Exit> {
    let state = StateFile::in_dir(&config.daemon.state_dir);
    // Which snapshots the swap exchanges, as far as the state file knows.
    let known = state.read().unwrap_or_default();
    let from = known.serving().cloned();
    let recorder = Recorder::start(state);
    let report = rollback::rollback(config, from, known.previous, &recorder)
        .await
        .map_err(lock_error)?;
    if let Some(recovered) = &report.recovered {
        say!("{}", recovered.summary());
    }
    if let Some(error) = &report.error {
        eprintln!("error: {}", crate::logging::one_line(error));
    } else {
        say!(
            "rolled back: the previous data is live as {} again, the replaced data is kept as \
             {} (maintenance {:.1}s, redis {})",
            config.database.name,
            config.previous_db(),
            report.maintenance_seconds.unwrap_or_default(),
            if report.redis_flushed {
                "flushed"
            } else {
                "not flushed"
            }
        );
    }
    notify::after_run(config, &report).await;
    Ok(match report.outcome {
        Outcome::Ok => Exit::Success,
        _ => Exit::Failed,
    })
}
