//! The run's journal: a small file under `daemon.state_dir`, written durably before each step
//! that changes something, so that after a crash (SIGKILL, OOM, a reboot) the next start
//! knows what the dead run was doing and [`crate::recovery`] can finish or undo it. A run that
//! ends, however it ends, removes it; one that is there at start belongs to a run that died.
//!
//! Before the maintenance window a step that cannot be recorded stops the run (a crash after
//! it could not be recovered); inside the window, which must finish once begun, it is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::util;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: String,
    pub pid: u32,
    /// When the step was recorded.
    pub at: DateTime<Utc>,
    pub step: Step,
    /// The media pass in progress: the mirror runs beside the database steps.
    #[serde(default)]
    pub media: Option<MediaPass>,
}

/// What the run was doing, from the first change on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Guards passed; nothing changed yet.
    Started,
    /// Creating the scratch database and restoring into it.
    Restore { scratch: String },
    /// The anonymization transaction on the scratch database.
    Anonymize { scratch: String },
    /// Anonymization committed: the scratch database is ready to go live.
    Anonymized { scratch: String },
    /// The maintenance window (a refresh's cutover or a rollback).
    Cutover(Window),
    /// After the cutover: dropping the replaced database, the media delete pass.
    Cleanup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaPass {
    Copy,
    Delete,
}

/// The maintenance window: what it swaps and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The scratch database a refresh swaps in; none for a rollback.
    pub scratch: Option<String>,
    /// The renames of the swap, in order, committed together or not at all.
    pub renames: Vec<(String, String)>,
    /// The oid of each database the swap renames, by its name before the swap: where each
    /// is now tells whether the swap committed.
    pub oids: BTreeMap<String, u32>,
    pub stage: Stage,
    /// Redis was flushed after the swap.
    #[serde(default)]
    pub redis_flushed: bool,
}

/// The window's steps, in order: the last one begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    RaiseFlag,
    StopBackend,
    Swap,
    FlushRedis,
    /// Redis could not be flushed: the swap is being undone.
    UndoSwap,
    StartBackend,
    LowerFlag,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Started => f.write_str("started, nothing changed yet"),
            Step::Restore { scratch } => write!(f, "restoring into {scratch}"),
            Step::Anonymize { scratch } => write!(f, "anonymizing {scratch}"),
            Step::Anonymized { scratch } => write!(f, "{scratch} anonymized, before cutover"),
            Step::Cutover(w) => write!(f, "cutover, {}", w.stage),
            Step::Cleanup => f.write_str("cleaning up after the cutover"),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::RaiseFlag => "raising the maintenance flag",
            Stage::StopBackend => "stopping the backend",
            Stage::Swap => "swapping the databases",
            Stage::FlushRedis => "flushing redis",
            Stage::UndoSwap => "undoing the swap",
            Stage::StartBackend => "starting the backend",
            Stage::LowerFlag => "lowering the maintenance flag",
        })
    }
}

/// What a recovery found and did: the dead run's journal, settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    pub at: DateTime<Utc>,
    /// The run that died, when known.
    pub run_id: Option<String>,
    pub pid: Option<u32>,
    /// What it was doing when it died.
    pub step: Option<String>,
    /// One line per thing found or done.
    pub actions: Vec<String>,
}

impl Recovery {
    /// One line for people: when, whose run, what was done.
    pub fn summary(&self) -> String {
        let run = match (&self.run_id, &self.pid, &self.step) {
            (Some(run), Some(pid), Some(step)) => format!("run {run} (pid {pid}) died {step}"),
            (Some(run), Some(pid), None) => format!("run {run} (pid {pid}) died"),
            _ => "a run died".to_owned(),
        };
        format!(
            "recovered {}: {run}; {}",
            self.at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.actions.join("; ")
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot record the run's progress in {path}: {source}; stopping before the next change, \
     which a crash could leave unrecoverable"
)]
pub struct JournalError {
    pub path: String,
    pub source: std::io::Error,
}

/// One run's journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    entry: Mutex<Written>,
}

#[derive(Debug)]
struct Written {
    entry: Entry,
    /// Whether this run wrote the file (else it is not this run's to remove).
    written: bool,
}

pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.json")
}

/// The journal a run left, if one did.
pub fn read(state_dir: &Path) -> Result<Option<Entry>, JournalError> {
    let path = path_in(state_dir);
    let error = |source| JournalError {
        path: path.display().to_string(),
        source,
    };
    util::read_json(&path)
        .map_err(|e| error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Removes a journal (after a recovery, or at the end of a run).
pub fn remove(state_dir: &Path) -> Result<(), JournalError> {
    let path = path_in(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JournalError {
            path: path.display().to_string(),
            source,
        }),
    }
}

impl Journal {
    /// A journal for `run_id`; nothing is written until the first [`Journal::record`].
    pub fn new(state_dir: &Path, run_id: &str) -> Journal {
        Journal {
            path: path_in(state_dir),
            entry: Mutex::new(Written {
                entry: Entry {
                    run_id: run_id.to_owned(),
                    pid: std::process::id(),
                    at: Utc::now(),
                    step: Step::Started,
                    media: None,
                },
                written: false,
            }),
        }
    }

    pub fn run_id(&self) -> String {
        self.entry.lock().expect("journal").entry.run_id.clone()
    }

    /// Changes the entry and writes it durably.
    pub fn record(&self, change: impl FnOnce(&mut Entry)) -> Result<(), JournalError> {
        let mut written = self.entry.lock().expect("journal");
        change(&mut written.entry);
        written.entry.at = Utc::now();
        written.written = true;
        util::write_json(&self.path, &written.entry, util::Readers::Owner).map_err(|source| {
            JournalError {
                path: self.path.display().to_string(),
                source,
            }
        })
    }

    pub fn step(&self, step: Step) -> Result<(), JournalError> {
        self.record(|e| e.step = step)
    }

    /// Inside the maintenance window, which goes on whatever: a failure is logged.
    pub fn window(&self, change: impl FnOnce(&mut Window)) {
        let result = self.record(|e| {
            if let Step::Cutover(window) = &mut e.step {
                change(window);
            }
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "the maintenance window goes on unrecorded");
        }
    }

    /// The run ended: nothing is left for a recovery. A journal this run never wrote is not
    /// its own (a recovery that failed leaves the dead run's for the next try).
    pub fn finish(&self) {
        if !self.entry.lock().expect("journal").written {
            return;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Err(e) = remove(dir) {
            tracing::warn!(error = %e, "the next start will find this run's journal");
        }
    }
}
