//! What `status` shows, gathered from its four sources: the state file, the daemon's control
//! socket, the maintenance flag and the staging server (is a previous database kept?).
//! A source that cannot be asked is reported as such; only an unreadable state file fails.

use serde::Serialize;

use crate::config::Config;
use crate::daemon::{DaemonStatus, control};
use crate::database::Server;
use crate::drift::Drift;
use crate::error;
use crate::journal::Recovery;
use crate::lock::RunLock;
use crate::report::RunReport;
use crate::staging::maintenance;
use crate::state::{CurrentRun, StateError, StateFile};

/// The `status --json` document.
#[derive(Debug, Serialize)]
pub struct Status {
    pub running: Option<CurrentRun>,
    /// The daemon's own view, when one answers on the control socket.
    pub daemon: Option<DaemonStatus>,
    /// Why the daemon could not be asked (not: because none is running).
    pub daemon_error: Option<String>,
    pub last: Option<RunReport>,
    pub maintenance_flag: Option<serde_json::Value>,
    pub previous_database: String,
    pub previous_kept: Option<bool>,
    pub previous_error: Option<String>,
    /// The last recovery from a run that died.
    pub recovered: Option<Recovery>,
    /// The newest snapshot's columns against the rules, as the daemon's watch last found them.
    pub drift: Option<Drift>,
}

pub async fn gather(config: &Config) -> Result<Status, StateError> {
    let state = StateFile::in_dir(&config.daemon.state_dir).read()?;
    // A current run recorded by a process that no longer holds the lock ended abruptly.
    let running = state
        .current
        .filter(|_| RunLock::is_held(&config.lock_file()));
    let (daemon, daemon_error) = match ask_daemon(config).await {
        Ok(daemon) => (daemon, None),
        Err(e) => (None, Some(e)),
    };
    // The daemon's view of its own run has live progress.
    let running = daemon.as_ref().and_then(|d| d.running.clone()).or(running);
    let maintenance_flag = maintenance::read(&config.flag_file()).map(|f| match f {
        Ok(contents) => serde_json::to_value(contents).expect("serializable"),
        Err(e) => serde_json::json!({ "unreadable": e }),
    });
    let previous_database = config.previous_db();
    let kept = previous_kept(config, &previous_database).await;
    Ok(Status {
        running,
        daemon,
        daemon_error,
        last: state.last,
        maintenance_flag,
        previous_database,
        previous_kept: kept.as_ref().ok().copied(),
        previous_error: kept.err(),
        recovered: state.recovered,
        drift: state.drift,
    })
}

/// The daemon's view; `None` when no daemon listens, an error when one cannot be asked.
async fn ask_daemon(config: &Config) -> Result<Option<DaemonStatus>, String> {
    let socket = &config.daemon.control_socket;
    let daemon = match control::Client::connect(socket).await {
        Ok(client) => client
            .status()
            .await
            .map(Some)
            .map_err(|e| error::chain(&e)),
        Err(e) if control::nobody_listening(&e) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    daemon.map_err(|e| format!("{}: {e}", socket.display()))
}

async fn previous_kept(config: &Config, previous: &str) -> Result<bool, String> {
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await.map_err(|e| e.to_string())?;
    server
        .exists(&client, previous)
        .await
        .map_err(|e| e.to_string())
}
