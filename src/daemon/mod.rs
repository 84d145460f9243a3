//! `staging-refresh daemon`: refreshes on `schedule.cron` (and once at start when a run was
//! missed), on demand through the control socket, one at a time; tells systemd how it is
//! doing (`Type=notify`); reloads its config on SIGHUP; on SIGTERM cancels a run that has not
//! reached cutover, lets a cutover finish, and exits.
//!
//! This file is the event loop; the refreshes it starts are supervised in [`runs`], the
//! control socket's protocol is [`control`].

pub mod control;
mod runs;
pub mod schedule;
mod systemd;
mod watcher;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::lock::{LockError, RunLock};
use crate::metrics::{self, Metrics, Sources};
use crate::recovery;
use crate::shutdown::CancellationToken;
use crate::state::{CurrentRun, StateFile};
use runs::ActiveRun;
pub use runs::Started;
use schedule::Schedule;
use watcher::Watch;

/// However far away the next run is, the scheduler looks at the wall clock again after this
/// long: tokio's timers follow the monotonic clock, which stops while a VM is paused.
const LONGEST_SLEEP: Duration = Duration::from_secs(3600);
/// How long stopping waits for `trigger --wait` clients to receive the final report.
const CLIENT_GRACE: Duration = Duration::from_secs(5);

/// What `status` shows of the daemon (over the control socket).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub config: PathBuf,
    pub schedule: String,
    pub time_zone: String,
    pub catch_up: bool,
    pub next_run: Option<DateTime<Utc>>,
    /// `next_run` in the schedule's time zone.
    pub next_run_local: Option<String>,
    /// The run in progress, with live progress.
    pub running: Option<CurrentRun>,
}

pub struct Daemon {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    started_at: DateTime<Utc>,
    /// The daemon's run: finished once its task is.
    active: tokio::sync::Mutex<Option<ActiveRun>>,
    /// The next scheduled run, for `status`, the state file and systemd's STATUS.
    next_run: watch::Sender<Option<DateTime<Utc>>>,
    /// New snapshots' columns against the rules.
    snapshots: Watch,
    stop_runs: CancellationToken,
    stopping: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another daemon is listening on the control socket {0}")]
    SocketInUse(String),
    #[error(transparent)]
    Metrics(#[from] metrics::ListenError),
    #[error("the daemon is stopping")]
    Stopping,
    #[error("the refresh task panicked")]
    Panicked,
    #[error(transparent)]
    Lock(#[from] LockError),
}

fn io_error(what: impl Fn() -> String) -> impl Fn(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io {
        what: what(),
        source,
    }
}

/// `staging-refresh daemon`: binds the control socket and runs until SIGTERM/SIGINT;
/// `config` was loaded from `config_path`.
pub async fn serve(config_path: &Path, config: Config) -> Result<(), DaemonError> {
    let signal_error = io_error(|| "installing the signal handlers".into());
    let mut terminate = signal(SignalKind::terminate()).map_err(&signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(&signal_error)?;
    let control = bind(&config.daemon.control_socket)?;
    let signalled = async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    run(config_path, config, control, signalled).await
}

/// Runs the daemon on the `control` socket until `shutdown` completes: the schedule, the
/// control connections, the metrics endpoint, config reloads on SIGHUP.
pub async fn run(
    config_path: &Path,
    config: Config,
    control: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut hangup = signal(SignalKind::hangup())
        .map_err(io_error(|| "installing the SIGHUP handler".into()))?;
    std::fs::create_dir_all(&config.daemon.state_dir).map_err(io_error(|| {
        format!(
            "creating daemon.state_dir {}",
            config.daemon.state_dir.display()
        )
    }))?;
    let recorded = state_file(&config).read().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring an unreadable state file");
        Default::default()
    });
    let socket = config.daemon.control_socket.clone();
    recover_at_start(&config).await;
    // The endpoint reads the state file and the flag at every scrape: it needs no updates.
    let stop_metrics = CancellationToken::new();
    let endpoint = metrics::serve(
        config.metrics.listen,
        Arc::new(Metrics::new()),
        Sources::of(&config),
        stop_metrics.clone(),
    )
    .await?;
    tracing::info!(listen = %endpoint.addr, "metrics endpoint up");

    let stop_runs = CancellationToken::new();
    let stopping = stop_runs.clone();
    let daemon = Arc::new(Daemon {
        config_path: config_path.to_owned(),
        config: RwLock::new(Arc::new(config)),
        started_at: Utc::now(),
        active: Default::default(),
        next_run: watch::Sender::new(None),
        snapshots: Watch::default(),
        stop_runs,
        stopping,
    });
    let mut schedule = Schedule::new(&daemon.config().schedule);
    let mut next = daemon.plan_next(&schedule, Utc::now());
    let catch_up = daemon.config().schedule.catch_up
        && schedule.missed(
            recorded.last_success.and_then(|r| r.finished_at),
            recorded.last.is_some(),
            Utc::now(),
        );

    systemd::spawn_watchdog();
    tracing::info!(
        socket = %socket.display(),
        next_run = next.map(|t| schedule.local(t)),
        "daemon ready"
    );
    systemd::ready(&daemon.describe(&schedule).await);
    if catch_up {
        tracing::info!("a scheduled run was missed while the daemon was down: refreshing now");
        daemon.start_scheduled();
    }
    // The rules may have changed while the daemon was down: the newest snapshot is
    // classified again.
    let mut watch_ticks = watcher::ticks(&daemon.config());
    daemon.look_for_drift(true);

    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let sleep = match next {
            Some(at) => (at - Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(LONGEST_SLEEP),
            None => LONGEST_SLEEP,
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {
                if let Some(at) = next && Utc::now() >= at {
                    daemon.start_scheduled();
                    next = daemon.plan_next(&schedule, at);
                }
            }
            accepted = control.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(control::serve(stream, daemon.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accepting a control connection"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = watcher::tick(&mut watch_ticks) => daemon.look_for_drift(false),
            _ = hangup.recv() => {
                systemd::reloading();
                daemon.reload();
                schedule = Schedule::new(&daemon.config().schedule);
                next = daemon.plan_next(&schedule, Utc::now());
                watch_ticks = watcher::ticks(&daemon.config());
                daemon.look_for_drift(true);
                systemd::ready(&daemon.describe(&schedule).await);
            }
            () = &mut shutdown => break,
        }
    }
    drop(control);
    let _ = std::fs::remove_file(&socket);
    daemon.stop(connections).await;
    stop_metrics.cancel();
    endpoint.stopped().await;
    Ok(())
}

/// The state file where the current config puts it. Looked up at each use rather than held:
/// a SIGHUP reload may move `daemon.state_dir`, and the daemon's records follow it as its
/// runs do.
fn state_file(config: &Config) -> StateFile {
    StateFile::in_dir(&config.daemon.state_dir)
}

/// Repairs what a run that died left (a reboot mid-cutover leaves staging down until someone
/// does), unless a run by hand holds the lock: that one recovers by itself. A failure is
/// logged; the next run tries again, and fails saying why.
async fn recover_at_start(config: &Config) {
    let lock = match RunLock::acquire(&config.lock_file(), "daemon-start") {
        Ok(lock) => lock,
        Err(LockError::Locked(_)) => return,
        Err(e) => {
            tracing::error!(error = %e, "cannot check for a run that died");
            return;
        }
    };
    match recovery::recover(config, &lock).await {
        Ok(Some(recovery)) => state_file(config).record_recovery(&recovery),
        Ok(None) => {}
        Err(e) => tracing::error!("{e}"),
    }
}

/// Listens on the control socket, mode 0660 (the service's group may trigger). A socket left
/// by a daemon that died is replaced; one a live daemon answers on is an error.
pub fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    let error = io_error(|| format!("control socket {}", path.display()));
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(DaemonError::SocketInUse(path.display().to_string()));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(&error)?;
    }
    let listener = UnixListener::bind(path).map_err(&error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(&error)?;
    Ok(listener)
}

impl Daemon {
    /// No new runs; the one in progress is cancelled before cutover or finishes its cutover;
    /// `trigger --wait` clients get its report.
    async fn stop(&self, mut connections: JoinSet<()>) {
        // Triggered before looking: `start` checks it under the same lock, so no run slips in.
        self.stop_runs.cancel();
        self.snapshots.stop();
        let running = self.active.lock().await.take();
        let running = running.filter(|run| !run.task.is_finished());
        systemd::stopping(if running.is_some() {
            "stopping: cancelling the refresh (a cutover in progress finishes first)"
        } else {
            "stopping"
        });
        tracing::info!("stopping");
        if let Some(run) = running {
            let _ = run.task.await;
        }
        let _ = tokio::time::timeout(CLIENT_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        state_file(&self.config()).update(|s| s.next_run = None);
        tracing::info!("stopped");
    }

    fn config(&self) -> Arc<Config> {
        self.config.read().expect("config").clone()
    }

    /// Classifies the newest snapshot's columns if it is new, or `again` under new rules
    /// (see [`watcher`]); nothing when `schedule.watch` is off.
    fn look_for_drift(&self, again: bool) {
        let config = self.config();
        if config.schedule.watch.is_some() {
            self.snapshots.look(config, again);
        }
    }

    async fn running(&self) -> Option<CurrentRun> {
        self.active.lock().await.as_ref()?.current()
    }

    /// Re-reads the config file; an invalid one is logged and the running config kept.
    /// The control socket stays where it is until a restart.
    fn reload(&self) {
        let path = &self.config_path;
        match Config::load(path) {
            Ok(new) => {
                let old = self.config();
                if new.daemon.control_socket != old.daemon.control_socket {
                    tracing::warn!(
                        "daemon.control_socket changes take effect at the next restart; \
                         still listening on {}",
                        old.daemon.control_socket.display()
                    );
                }
                *self.config.write().expect("config") = Arc::new(new);
                tracing::info!(config = %path.display(), "configuration reloaded");
            }
            Err(e) => tracing::error!(
                config = %path.display(),
                "reloading the configuration failed, keeping the previous one: {e}"
            ),
        }
    }

    /// Computes and publishes the first occurrence after `after`.
    fn plan_next(&self, schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = schedule.next_after(after);
        self.next_run.send_replace(next);
        state_file(&self.config()).update(|s| s.next_run = next);
        next
    }

    /// systemd's STATUS line: the run in progress, or when the next one is.
    async fn describe(&self, schedule: &Schedule) -> String {
        match self.running().await {
            Some(current) => current.describe(),
            None => self.idle_status(schedule),
        }
    }

    fn idle_status(&self, schedule: &Schedule) -> String {
        match *self.next_run.borrow() {
            Some(at) => format!("idle; next refresh {}", schedule.local(at)),
            None => "idle; the schedule has no next run".into(),
        }
    }

    pub fn status(&self) -> DaemonStatus {
        let config = self.config();
        let schedule = Schedule::new(&config.schedule);
        // `try_lock`: a run being started right now is not worth waiting for.
        let running = (self.active.try_lock().ok())
            .and_then(|active| active.as_ref().and_then(ActiveRun::current));
        DaemonStatus {
            pid: std::process::id(),
            started_at: self.started_at,
            config: self.config_path.clone(),
            schedule: config.schedule.cron.clone(),
            time_zone: config.schedule.time_zone.to_string(),
            catch_up: config.schedule.catch_up,
            next_run: *self.next_run.borrow(),
            next_run_local: self.next_run.borrow().map(|t| schedule.local(t)),
            running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn runs_in_process_until_its_shutdown_future_completes() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                r#"[snapshot]
endpoint = "http://127.0.0.1:9"
bucket = "prod"
access_key_id = "key"
secret_access_key = "secret"

[database]
url = "postgres://refresh@127.0.0.1:9/postgres"

[anonymize]
admin_email = "admin@staging.example.com"
admin_password = "staging-admin-password"

[anonymize.accounts]
table = "public.users"
id = "id"
email = "email"
password = "encrypted_password"

[media]
enabled = false

[maintenance]
flag_file = "{0}/maintenance.json"

[daemon]
state_dir = "{0}"
control_socket = "{0}/control.sock"

[metrics]
listen = "127.0.0.1:0"
"#,
                state.display()
            ),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let socket = config.daemon.control_socket.clone();
        let control = bind(&socket).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let daemon = tokio::spawn(async move {
            run(&path, config, control, async {
                let _ = stopped.await;
            })
            .await
        });

        let status = control::Client::connect(&socket)
            .await
            .unwrap()
            .status()
            .await
            .unwrap();
        assert_eq!(status.pid, std::process::id());
        assert!(status.running.is_none(), "{status:?}");
        assert!(status.next_run.is_some(), "{status:?}");

        stop.send(()).unwrap();
        daemon.await.unwrap().unwrap();
        assert!(!socket.exists(), "the control socket is removed at stop");
    }
}
