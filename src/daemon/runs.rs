//! The daemon's run supervisor: one refresh at a time, started by the schedule or a
//! `trigger`, and the observer that follows it (the state file, systemd's STATUS, the
//! journal fields, the `trigger --wait` clients). The summary goes out after the lock is
//! released, so a waiting trigger may start the next refresh meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use super::control::Reply;
use super::schedule::Schedule;
use super::{Daemon, DaemonError, state_file, systemd};
use crate::journal::Recovery;
use crate::lock::LockError;
use crate::logging::RunFields;
use crate::media::MediaProgress;
use crate::notify;
use crate::progress::Progress;
use crate::refresh::{self, Observer, Options};
use crate::report::{Phase, RunReport};
use crate::snapshot::Selection;
use crate::state::{CurrentRun, Recorder};

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

/// The daemon's run: finished once its task is.
pub(super) struct ActiveRun {
    recorder: Recorder,
    /// The refresh ended and released the lock (its email may still be going out).
    ended: Arc<AtomicBool>,
    pub(super) task: JoinHandle<Result<RunReport, LockError>>,
}

impl ActiveRun {
    /// Still refreshing: not yet ended, or ended but for its email.
    fn running(&self) -> bool {
        !self.task.is_finished() && !self.ended.load(Ordering::SeqCst)
    }

    /// The run as `status` shows it, while it is still refreshing.
    pub(super) fn current(&self) -> Option<CurrentRun> {
        self.running().then(|| self.recorder.current()).flatten()
    }
}

impl Daemon {
    /// The scheduler's request: the newest snapshot, unless a refresh is running.
    pub(super) fn start_scheduled(self: &Arc<Self>) {
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
        let recorder = Recorder::start(state_file(&config));
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
