//! `staging-refresh daemon`: refreshes on `schedule.cron` (and once at start when a run was
//! missed), on demand through the control socket, one at a time; tells systemd how it is
//! doing (`Type=notify`); reloads its config on SIGHUP; on SIGTERM cancels a run that has not
//! reached cutover, lets a cutover finish, and exits.

pub mod control;
pub mod schedule;
mod systemd;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::Config;
use crate::journal::Recovery;
use crate::lock::{LockError, RunLock};
use crate::logging::RunFields;
use crate::media::MediaProgress;
use crate::metrics::{self, Metrics, Sources};
use crate::notify;
use crate::progress::Progress;
use crate::recovery;
use crate::refresh::{self, Observer, Options};
use crate::report::{Phase, RunReport};
use crate::shutdown::CancellationToken;
use crate::snapshot::Selection;
use crate::state::{CurrentRun, Recorder, StateFile};
use control::Reply;
use schedule::Schedule;

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

/// The answer to a request for a refresh.
pub enum Started {
    /// Started; `events` follows it to its report.
    Run {
        run_id: String,
        events: broadcast::Receiver<Reply>,
    },
    /// A refresh is running already (this daemon's, or another process's holding the lock).
    Busy { run_id: String, pid: Option<u32> },
}

pub struct Daemon {
    config_path: PathBuf,
    config: RwLock<Arc<Config>>,
    started_at: DateTime<Utc>,
    /// The daemon's run: finished once its task is.
    active: tokio::sync::Mutex<Option<ActiveRun>>,
    /// The next scheduled run, for `status`, the state file and systemd's STATUS.
    next_run: watch::Sender<Option<DateTime<Utc>>>,
    stop_runs: CancellationToken,
    stopping: CancellationToken,
}

struct ActiveRun {
    recorder: Recorder,
    /// The refresh ended and released the lock (its email may still be going out).
    ended: Arc<AtomicBool>,
    task: JoinHandle<Result<RunReport, LockError>>,
}

impl ActiveRun {
    /// Still refreshing: not yet ended, or ended but for its email.
    fn running(&self) -> bool {
        !self.task.is_finished() && !self.ended.load(Ordering::SeqCst)
    }
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
    let state = StateFile::in_dir(&config.daemon.state_dir);
    std::fs::create_dir_all(&config.daemon.state_dir).map_err(io_error(|| {
        format!(
            "creating daemon.state_dir {}",
            config.daemon.state_dir.display()
        )
    }))?;
    let recorded = state.read().unwrap_or_else(|e| {
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
            _ = hangup.recv() => {
                systemd::reloading();
                daemon.reload();
                schedule = Schedule::new(&daemon.config().schedule);
                next = daemon.plan_next(&schedule, Utc::now());
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
        Ok(Some(recovery)) => {
            StateFile::in_dir(&config.daemon.state_dir).record_recovery(&recovery)
        }
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
        StateFile::in_dir(&self.config().daemon.state_dir).update(|s| s.next_run = None);
        tracing::info!("stopped");
    }

    fn config(&self) -> Arc<Config> {
        self.config.read().expect("config").clone()
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
        StateFile::in_dir(&self.config().daemon.state_dir).update(|s| s.next_run = next);
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

    async fn running(&self) -> Option<CurrentRun> {
        let active = self.active.lock().await;
        let run = active.as_ref().filter(|run| run.running())?;
        run.recorder.current()
    }

    pub fn status(&self) -> DaemonStatus {
        let config = self.config();
        let schedule = Schedule::new(&config.schedule);
        // `try_lock`: a run being started right now is not worth waiting for.
        let running = self.active.try_lock().ok().and_then(|active| {
            let run = active.as_ref().filter(|run| run.running())?;
            run.recorder.current()
        });
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

    /// The scheduler's request: the newest snapshot, unless a refresh is running.
    fn start_scheduled(self: &Arc<Self>) {
        let daemon = self.clone();
        tokio::spawn(async move {
            match daemon.start(Selection::Latest).await {
                Ok(Started::Run { run_id, .. }) => {
                    tracing::info!(run_id, "scheduled refresh started")
                }
                Ok(Started::Busy { run_id, pid }) => tracing::warn!(
                    "scheduled refresh skipped: run {run_id} (pid {}) is still going",
                    crate::util::shown_pid(pid)
                ),
                Err(e) => tracing::error!("scheduled refresh not started: {e:#}"),
            }
        });
    }

    /// Starts a refresh unless one is running. Returns once the run holds the lock and has
    /// an id (or found the lock held).
    pub async fn start(self: &Arc<Self>, selection: Selection) -> Result<Started, DaemonError> {
        let mut active = self.active.lock().await;
        if self.stopping.is_cancelled() {
            return Err(DaemonError::Stopping);
        }
        if let Some(run) = active.as_ref().filter(|run| run.running()) {
            return Ok(Started::Busy {
                run_id: run.recorder.current().map(|c| c.run_id).unwrap_or_default(),
                pid: Some(std::process::id()),
            });
        }
        let config = self.config();
        let (events, receiver) = broadcast::channel(32);
        let (started, on_start) = oneshot::channel();
        let recorder = Recorder::start(StateFile::in_dir(&config.daemon.state_dir));
        let ended = Arc::new(AtomicBool::new(false));
        let observer = DaemonObserver {
            recorder: recorder.clone(),
            ended: ended.clone(),
            events,
            started: Mutex::new(Some(started)),
            fields: RunFields::default(),
        };
        let daemon = self.clone();
        let shutdown = self.stopping.clone();
        let mut task = tokio::spawn(async move {
            let options = Options::default();
            let run = refresh::run(&config, &selection, &options, shutdown, &observer);
            let result = observer.fields.scope(run).await;
            if let Ok(report) = &result {
                // The lock is free: waiters learn the outcome, and a trigger may start the
                // next refresh, while the email goes out.
                observer.ended(report);
                notify::after_run(&config, report).await;
            }
            if !daemon.stopping.is_cancelled() {
                let schedule = Schedule::new(&daemon.config().schedule);
                systemd::status(&daemon.idle_status(&schedule));
            }
            result
        });
        tokio::select! {
            Ok(run_id) = on_start => {
                *active = Some(ActiveRun { recorder, ended, task });
                Ok(Started::Run { run_id, events: receiver })
            }
            ended = &mut task => match ended.map_err(|_| DaemonError::Panicked)? {
                Err(LockError::Locked(held)) => Ok(Started::Busy {
                    run_id: held.run_id,
                    pid: held.pid,
                }),
                Err(other) => Err(other.into()),
                // Finished without starting a phase; the receiver holds its report.
                Ok(report) => Ok(Started::Run { run_id: report.run_id, events: receiver }),
            },
        }
    }
}

/// Follows the daemon's run: the state file, systemd's STATUS, the journal fields, `status`,
/// and the `trigger --wait` clients.
struct DaemonObserver {
    recorder: Recorder,
    ended: Arc<AtomicBool>,
    events: broadcast::Sender<Reply>,
    /// Told the run id once the run holds the lock.
    started: Mutex<Option<oneshot::Sender<String>>>,
    fields: RunFields,
}

impl Observer for DaemonObserver {
    fn phase(&self, report: &RunReport, phase: Phase, progress: Option<Arc<Progress>>) {
        self.recorder.phase(report, phase, progress);
        let snapshot = report.snapshot.as_ref().map(|s| s.name.clone());
        self.fields.set(&report.run_id, phase, snapshot.as_deref());
        if let Some(current) = self.recorder.current() {
            systemd::status(&current.describe());
        }
        if let Some(started) = self.started.lock().expect("started").take() {
            let _ = started.send(report.run_id.clone());
        }
        let _ = self.events.send(Reply::Phase {
            run_id: report.run_id.clone(),
            phase,
            snapshot,
        });
    }

    fn recovered(&self, recovery: &Recovery) {
        self.recorder.recovered(recovery);
    }

    fn media(&self, progress: &MediaProgress) {
        self.recorder.media(progress);
    }

    fn finished(&self, report: &RunReport) {
        self.recorder.finished(report);
    }
}

impl DaemonObserver {
    fn ended(&self, report: &RunReport) {
        self.ended.store(true, Ordering::SeqCst);
        let _ = self.events.send(Reply::Finished {
            report: Box::new(report.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
