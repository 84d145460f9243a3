//! The state file under `daemon.state_dir`: the current run (phase, progress) and the last
//! finished run's report. Written atomically on every phase change and every few seconds of
//! progress, so `status` and the metrics endpoint can read it at any time. It also keeps the
//! last successful run, running totals (so metrics survive restarts and reboots) and the
//! daemon's next scheduled run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::drift::Drift;
use crate::journal::Recovery;
use crate::media::{MediaProgress, MediaProgressSnapshot, MediaReport};
use crate::progress::{Progress, ProgressSnapshot};
use crate::refresh::Observer;
use crate::report::{Outcome, Phase, RunKind, RunReport, SnapshotReport};
use crate::util;

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub current: Option<CurrentRun>,
    pub last: Option<RunReport>,
    /// The last run that succeeded ([`State::serving`] says what staging serves).
    #[serde(default)]
    pub last_success: Option<RunReport>,
    #[serde(default)]
    pub totals: Totals,
    /// The daemon's next scheduled run; absent while no daemon is running.
    #[serde(default)]
    pub next_run: Option<DateTime<Utc>>,
    /// The last recovery from a run that died.
    #[serde(default)]
    pub recovered: Option<Recovery>,
    /// The snapshot the kept previous database holds, when known: what a rollback goes to.
    #[serde(default)]
    pub previous: Option<SnapshotReport>,
    /// The snapshot the live database holds: the last run that swapped data in (a refresh,
    /// even one that failed after its swap, or a rollback). A `run --skip-db` leaves it.
    #[serde(default)]
    pub live_snapshot: Option<SnapshotReport>,
    /// The newest snapshot's columns against the rules, as the daemon's watch last found them.
    #[serde(default)]
    pub drift: Option<Drift>,
}

impl State {
    /// The snapshot staging serves, when known (from a state file older than
    /// `live_snapshot`: the last success's).
    pub fn serving(&self) -> Option<&SnapshotReport> {
        self.live_snapshot
            .as_ref()
            .or_else(|| self.last_success.as_ref()?.snapshot.as_ref())
    }
}

/// Counts over every run recorded here: what the metrics' counters restart from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Finished refreshes by outcome.
    pub runs: BTreeMap<Outcome, u64>,
    /// Finished rollbacks by outcome.
    #[serde(default)]
    pub rollbacks: BTreeMap<Outcome, u64>,
    /// Summary emails that could not be sent (also in `notifications`, as `email`/`failed`).
    pub email_failures: u64,
    /// Notifications by channel (`email`, or a webhook's kind) and result (`sent`, `failed`).
    #[serde(default)]
    pub notifications: BTreeMap<String, BTreeMap<String, u64>>,
    /// Media objects by action (`copied`, `skipped`, `deleted`, `failed`).
    #[serde(default)]
    pub media_objects: BTreeMap<String, u64>,
    #[serde(default)]
    pub media_copied_bytes: u64,
    #[serde(default)]
    pub media_retries: u64,
    /// Recoveries from runs that died.
    #[serde(default)]
    pub recoveries: u64,
    /// Values masked in the restore stream, per table and column.
    #[serde(default)]
    pub masked_values: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Totals {
    pub fn runs(&self, kind: RunKind, outcome: Outcome) -> u64 {
        let runs = match kind {
            RunKind::Refresh => &self.runs,
            RunKind::Rollback => &self.rollbacks,
        };
        runs.get(&outcome).copied().unwrap_or(0)
    }

    pub fn notifications(&self, channel: &str, result: &str) -> u64 {
        let counted = self.notifications.get(channel).and_then(|r| r.get(result));
        counted.copied().unwrap_or(0)
    }

    /// Counts one notification; an email failure in the old counter too.
    pub fn add_notification(&mut self, channel: &str, result: &str) {
        let results = self.notifications.entry(channel.to_owned()).or_default();
        *results.entry(result.to_owned()).or_default() += 1;
        if (channel, result) == ("email", "failed") {
            self.email_failures += 1;
        }
    }

    pub fn media_objects(&self, action: &str) -> u64 {
        self.media_objects.get(action).copied().unwrap_or(0)
    }

    /// Adds what one run's media mirror did.
    fn add_media(&mut self, media: &MediaReport) {
        for (action, n) in media.actions() {
            *self.media_objects.entry(action.to_owned()).or_default() += n;
        }
        self.media_copied_bytes += media.copied_bytes;
        self.media_retries += media.retries;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurrentRun {
    pub run_id: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub phase: Phase,
    /// The snapshot being restored, once selected.
    pub snapshot: Option<String>,
    pub progress: Option<ProgressSnapshot>,
    /// The media mirror's counters, while it runs beside the database phases.
    pub media: Option<MediaProgressSnapshot>,
}

#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {message}")]
pub struct StateError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(state_dir: &Path) -> StateFile {
        StateFile {
            path: state_dir.join("state.json"),
        }
    }

    /// The state; empty when no run has been recorded yet.
    pub fn read(&self) -> Result<State, StateError> {
        let error = |message: String| StateError {
            path: self.path.display().to_string(),
            message,
        };
        util::read_json(&self.path)
            .map(Option::unwrap_or_default)
            .map_err(error)
    }

    pub fn write(&self, state: &State) -> Result<(), StateError> {
        util::write_json(&self.path, state, util::Readers::Owner).map_err(|e| StateError {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Keeps what a recovery from a dead run did; its run is no longer current.
    pub fn record_recovery(&self, recovery: &Recovery) {
        self.update(|s| {
            s.current = None;
            s.recovered = Some(recovery.clone());
            s.totals.recoveries += 1;
        });
    }

    /// Reads, changes and writes back under an exclusive lock (the daemon and a `run` started
    /// by hand may both write); a failure is logged, never fatal to a refresh.
    pub fn update(&self, change: impl FnOnce(&mut State)) {
        let result = self.locked(|| {
            let mut state = self.read().unwrap_or_default();
            change(&mut state);
            self.write(&state)
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record the run state");
        }
    }

    /// An flock on a file of its own: between processes, and between threads of this one
    /// (each call opens the file anew, and flock locks belong to the open file).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, StateError>) -> Result<T, StateError> {
        let lock_path = self.path.with_extension("lock");
        let error = |e: std::io::Error| StateError {
            path: lock_path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = lock_path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(error)?;
        fs4::FileExt::lock(&lock).map_err(error)?;
        f()
    }
}

/// Records a run into the state file as it goes, and holds it live for the daemon's
/// `status`: an [`Observer`] for [`crate::refresh::run`].
#[derive(Clone)]
pub struct Recorder {
    file: StateFile,
    live: Arc<Mutex<Live>>,
}

/// The run in progress as the observer last saw it, with its live progress counters.
#[derive(Default)]
struct Live {
    current: Option<CurrentRun>,
    progress: Option<Arc<Progress>>,
    media: Option<MediaProgress>,
}

impl Live {
    /// The current run with its progress as of now.
    fn now(&self) -> Option<CurrentRun> {
        let mut current = self.current.clone()?;
        current.progress = self.progress.as_ref().map(|p| p.snapshot());
        current.media = self.media.as_ref().map(|m| m.snapshot());
        Some(current)
    }
}

impl CurrentRun {
    /// One line: phase, snapshot, run id (systemd's STATUS).
    pub fn describe(&self) -> String {
        match &self.snapshot {
            Some(snapshot) => format!("{}: {snapshot} (run {})", self.phase, self.run_id),
            None => format!("{} (run {})", self.phase, self.run_id),
        }
    }
}

impl Recorder {
    /// Starts recording; progress is written every few seconds until the run finishes.
    pub fn start(file: StateFile) -> Recorder {
        let recorder = Recorder {
            file,
            live: Default::default(),
        };
        let file = recorder.file.clone();
        let live = Arc::downgrade(&recorder.live);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let Some(live) = live.upgrade() else { return };
                let now = live.lock().expect("live run").now();
                if let Some(now) = now.filter(|c| c.progress.is_some() || c.media.is_some()) {
                    file.update(|s| {
                        if let Some(current) = &mut s.current {
                            current.progress = now.progress.or(current.progress.take());
                            current.media = now.media.or(current.media.take());
                        }
                    });
                }
            }
        });
        recorder
    }

    /// The run in progress with its progress as of now; `None` before its first phase and
    /// once it finished.
    pub fn current(&self) -> Option<CurrentRun> {
        self.live.lock().expect("live run").now()
    }
}

impl Observer for Recorder {
    fn phase(&self, report: &RunReport, phase: Phase, progress: Option<Arc<Progress>>) {
        let current = {
            let mut live = self.live.lock().expect("live run");
            live.progress = progress;
            live.current = Some(CurrentRun {
                run_id: report.run_id.clone(),
                pid: std::process::id(),
                started_at: report.started_at,
                phase,
                snapshot: report.snapshot.as_ref().map(|s| s.name.clone()),
                progress: None,
                media: None,
            });
            live.now()
        };
        self.file.update(|s| s.current = current);
    }

    fn recovered(&self, recovery: &Recovery) {
        self.file.record_recovery(recovery);
    }

    fn media(&self, progress: &MediaProgress) {
        self.live.lock().expect("live run").media = Some(progress.clone());
    }

    fn finished(&self, report: &RunReport) {
        *self.live.lock().expect("live run") = Live::default();
        let report = report.clone();
        self.file.update(|s| {
            s.current = None;
            let runs = match report.kind {
                RunKind::Refresh => &mut s.totals.runs,
                RunKind::Rollback => &mut s.totals.rollbacks,
            };
            *runs.entry(report.outcome).or_default() += 1;
            if let Some(media) = &report.media {
                s.totals.add_media(media);
            }
            for (table, columns) in &report.masked_values {
                let total = s.totals.masked_values.entry(table.clone()).or_default();
                for (column, n) in columns {
                    *total.entry(column.clone()).or_default() += n;
                }
            }
            if report.snapshot_live {
                // The data that was live is now the previous database, or dropped (or, after
                // a failure past the swap, not known to be kept).
                let replaced = s.serving().cloned();
                s.previous = replaced.filter(|_| report.previous_kept);
                s.live_snapshot = report.snapshot.clone();
            }
            if report.outcome == Outcome::Ok {
                s.last_success = Some(report.clone());
            }
            s.last = Some(report);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Recorder, StateFile};
    use crate::refresh::Observer;
    use crate::report::{RunKind, RunReport, SnapshotReport};

    fn snapshot(name: &str) -> SnapshotReport {
        SnapshotReport {
            name: name.into(),
            key: name.into(),
            taken_at: chrono::Utc::now(),
            size: 1,
            checksum_verified: true,
        }
    }

    /// A run that swapped snapshot `name` in, keeping the data it replaced.
    fn swapped(kind: RunKind, name: &str) -> RunReport {
        let mut report = RunReport::new(name.into());
        report.kind = kind;
        report.snapshot = Some(snapshot(name));
        report.snapshot_live = true;
        report.previous_kept = true;
        report
    }

    #[tokio::test]
    async fn the_live_and_previous_snapshots_follow_swaps_and_rollbacks_not_media_only_runs() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        let recorder = Recorder::start(file.clone());
        let names = |file: &StateFile| {
            let state = file.read().unwrap();
            let name = |s: Option<&SnapshotReport>| s.map(|s| s.name.clone());
            (name(state.serving()), name(state.previous.as_ref()))
        };
        recorder.finished(&swapped(RunKind::Refresh, "a"));
        // `run --skip-db`: a success that swapped nothing in.
        recorder.finished(&RunReport::new("media only".into()));
        assert_eq!(names(&file), (Some("a".into()), None));
        recorder.finished(&swapped(RunKind::Refresh, "b"));
        assert_eq!(names(&file), (Some("b".into()), Some("a".into())));
        recorder.finished(&swapped(RunKind::Rollback, "a"));
        assert_eq!(names(&file), (Some("a".into()), Some("b".into())));
    }
}
