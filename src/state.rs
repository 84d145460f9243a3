//! The state file under `daemon.state_dir`: the current run (phase, progress) and the last
//! finished run's report. Written atomically on every phase change and every few seconds of
//! progress, so `status` (and metrics after a restart) can read it at any time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::media::{MediaProgress, MediaProgressSnapshot};
use crate::progress::{Progress, ProgressSnapshot};
use crate::refresh::Observer;
use crate::refresh::maintenance::write_atomic;
use crate::report::{Phase, RunReport};

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub current: Option<CurrentRun>,
    pub last: Option<RunReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurrentRun {
    pub run_id: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub phase: Phase,
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state; empty when no run has been recorded yet.
    pub fn read(&self) -> Result<State, StateError> {
        let error = |message: String| StateError {
            path: self.path.display().to_string(),
            message,
        };
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(error(e.to_string())),
        }
    }

    pub fn write(&self, state: &State) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(state).expect("serializable");
        write_atomic(&self.path, &json).map_err(|e| StateError {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Reads, changes and writes back; a failure is logged, never fatal to a refresh.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.read().unwrap_or_default();
        change(&mut state);
        if let Err(e) = self.write(&state) {
            tracing::warn!(error = %e, "cannot record the run state");
        }
    }
}

/// Records a run into the state file as it goes: an [`Observer`] for [`crate::refresh::run`].
#[derive(Clone)]
pub struct Recorder {
    file: StateFile,
    progress: Arc<Mutex<Sampled>>,
}

/// What the recorder samples every few seconds.
#[derive(Default)]
struct Sampled {
    phase: Option<Arc<Progress>>,
    media: Option<MediaProgress>,
}

impl Recorder {
    /// Starts recording; progress is written every few seconds until the run finishes.
    pub fn start(file: StateFile) -> Recorder {
        let recorder = Recorder {
            file,
            progress: Default::default(),
        };
        let ticking = recorder.clone();
        tokio::spawn(async move {
            let weak = Arc::downgrade(&ticking.progress);
            drop(ticking.progress);
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let Some(slot) = weak.upgrade() else { return };
                let (phase, media) = {
                    let slot = slot.lock().expect("progress slot");
                    (
                        slot.phase.as_ref().map(|p| p.snapshot()),
                        slot.media.as_ref().map(|m| m.snapshot()),
                    )
                };
                if phase.is_some() || media.is_some() {
                    ticking.file.update(|s| {
                        if let Some(current) = &mut s.current {
                            current.progress = phase.or(current.progress.take());
                            current.media = media.or(current.media.take());
                        }
                    });
                }
            }
        });
        recorder
    }
}

impl Observer for Recorder {
    fn phase(&self, report: &RunReport, phase: Phase, progress: Option<Arc<Progress>>) {
        let media = {
            let mut slot = self.progress.lock().expect("progress slot");
            slot.phase = progress.clone();
            slot.media.as_ref().map(|m| m.snapshot())
        };
        let current = CurrentRun {
            run_id: report.run_id.clone(),
            pid: std::process::id(),
            started_at: report.started_at,
            phase,
            progress: progress.map(|p| p.snapshot()),
            media,
        };
        self.file.update(|s| s.current = Some(current));
    }

    fn media(&self, progress: &MediaProgress) {
        self.progress.lock().expect("progress slot").media = Some(progress.clone());
    }

    fn finished(&self, report: &RunReport) {
        *self.progress.lock().expect("progress slot") = Sampled::default();
        let report = report.clone();
        self.file.update(|s| {
            s.current = None;
            s.last = Some(report);
        });
    }
}
