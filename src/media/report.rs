//! What the mirror did: live counters ([`MediaProgress`], readable at any time for `status`
//! and metrics, logged every few seconds), and the [`MediaReport`] and [`MediaPlan`] built
//! from them for the run report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectInfo, StoreError};

/// Failures listed by key in a report; more are only counted.
const FAILURES_LISTED: usize = 1000;
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How objects travel from source to target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMode {
    /// CopyObject / UploadPartCopy: the bytes never leave the store.
    ServerSide,
    /// GET from the source streamed into a PUT on the target (different endpoints).
    Streamed,
}

/// One object the mirror could not copy or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub key: String,
    /// "copy" or "delete".
    pub action: String,
    pub error: String,
}

/// Live counters of a copy pass, plan or delete pass. Clones share the same counters.
#[derive(Debug, Clone)]
pub struct MediaProgress(Arc<Counters>);

#[derive(Debug)]
struct Counters {
    started: Mutex<Instant>,
    listed_source: AtomicU64,
    listed_target: AtomicU64,
    to_copy: AtomicU64,
    to_copy_bytes: AtomicU64,
    unchanged: AtomicU64,
    delete_candidates: AtomicU64,
    copied: AtomicU64,
    copied_bytes: AtomicU64,
    vanished: AtomicU64,
    deleted: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    failures: Mutex<Vec<Failure>>,
}

/// The counters at one moment, for `status` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaProgressSnapshot {
    pub listed_source: u64,
    pub listed_target: u64,
    /// New or changed objects found so far (copied, being copied or failed).
    pub to_copy: u64,
    pub to_copy_bytes: u64,
    pub unchanged: u64,
    pub delete_candidates: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    pub deleted: u64,
    pub failed: u64,
    pub retries: u64,
    pub elapsed_seconds: f64,
    /// Source objects listed and compared per second.
    pub objects_per_second: f64,
}

impl Default for MediaProgress {
    fn default() -> Self {
        MediaProgress::new()
    }
}

impl MediaProgress {
    pub fn new() -> MediaProgress {
        let zero = || AtomicU64::new(0);
        MediaProgress(Arc::new(Counters {
            started: Mutex::new(Instant::now()),
            listed_source: zero(),
            listed_target: zero(),
            to_copy: zero(),
            to_copy_bytes: zero(),
            unchanged: zero(),
            delete_candidates: zero(),
            copied: zero(),
            copied_bytes: zero(),
            vanished: zero(),
            deleted: zero(),
            failed: zero(),
            retries: zero(),
            failures: Mutex::new(Vec::new()),
        }))
    }

    pub fn snapshot(&self) -> MediaProgressSnapshot {
        let c = &self.0;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let elapsed = c
            .started
            .lock()
            .expect("progress lock")
            .elapsed()
            .as_secs_f64();
        let listed = get(&c.listed_source);
        MediaProgressSnapshot {
            listed_source: listed,
            listed_target: get(&c.listed_target),
            to_copy: get(&c.to_copy),
            to_copy_bytes: get(&c.to_copy_bytes),
            unchanged: get(&c.unchanged),
            delete_candidates: get(&c.delete_candidates),
            copied: get(&c.copied),
            copied_bytes: get(&c.copied_bytes),
            deleted: get(&c.deleted),
            failed: get(&c.failed),
            retries: get(&c.retries),
            elapsed_seconds: elapsed,
            objects_per_second: if elapsed > 0.0 {
                listed as f64 / elapsed
            } else {
                0.0
            },
        }
    }

    pub(super) fn restart_clock(&self) {
        *self.0.started.lock().expect("progress lock") = Instant::now();
    }

    pub(super) fn listed(&self, source: usize, target: usize) {
        self.0
            .listed_source
            .fetch_add(source as u64, Ordering::Relaxed);
        self.0
            .listed_target
            .fetch_add(target as u64, Ordering::Relaxed);
    }

    pub(super) fn unchanged(&self) {
        self.0.unchanged.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn to_copy(&self, object: &ObjectInfo) {
        self.0.to_copy.fetch_add(1, Ordering::Relaxed);
        self.0
            .to_copy_bytes
            .fetch_add(object.size, Ordering::Relaxed);
    }

    pub(super) fn delete_candidate(&self) {
        self.0.delete_candidates.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn retried(&self) {
        self.0.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts how copying `object` ended. A source object deleted since it was listed is
    /// not a failure: production removed it, and the next run will not see it.
    pub(super) fn copy_finished(&self, object: &ObjectInfo, result: Result<(), StoreError>) {
        match result {
            Ok(()) => {
                self.0.copied.fetch_add(1, Ordering::Relaxed);
                self.0
                    .copied_bytes
                    .fetch_add(object.size, Ordering::Relaxed);
            }
            Err(e) if e.is_missing_object() => {
                self.0.vanished.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed(&object.key, "copy", &e.to_string()),
        }
    }

    pub(super) fn deleted(&self, n: u64) {
        self.0.deleted.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, key: &str, action: &'static str, error: &str) {
        tracing::warn!(key, action, error, "media object failed");
        self.0.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.0.failures.lock().expect("progress lock");
        if failures.len() < FAILURES_LISTED {
            failures.push(Failure {
                key: key.to_owned(),
                action: action.to_owned(),
                error: error.to_owned(),
            });
        }
    }

    pub(super) fn vanished(&self) -> u64 {
        self.0.vanished.load(Ordering::Relaxed)
    }

    pub(super) fn failures(&self) -> Vec<Failure> {
        self.0.failures.lock().expect("progress lock").clone()
    }

    /// Logs a progress line every few seconds until the returned guard is dropped.
    pub(super) fn log_periodically(&self, phase: &'static str) -> LogGuard {
        let progress = self.clone();
        LogGuard(tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOG_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = progress.snapshot();
                tracing::info!(
                    phase,
                    listed_source = s.listed_source,
                    listed_target = s.listed_target,
                    copied = s.copied,
                    unchanged = s.unchanged,
                    deleted = s.deleted,
                    failed = s.failed,
                    retries = s.retries,
                    bytes = %HumanBytes(s.copied_bytes),
                    objects_per_second = format!("{:.0}", s.objects_per_second),
                    "media progress"
                );
            }
        }))
    }
}

pub(super) struct LogGuard(tokio::task::JoinHandle<()>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a mirror run did, for the run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaReport {
    /// `s3://bucket at endpoint`.
    pub source: String,
    pub target: String,
    pub mode: CopyMode,
    pub listed_source: u64,
    /// Not counting the target's opt-in marker.
    pub listed_target: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    /// Unchanged objects left as they were.
    pub skipped: u64,
    /// Listed on the source, deleted there before they could be copied.
    pub vanished: u64,
    /// Objects on the target only, as the copy pass listed them.
    pub delete_candidates: u64,
    pub deleted: u64,
    /// Why the delete pass deleted nothing, when a guard stopped it.
    pub deletes_refused: Option<String>,
    /// Staging-only objects left for the next run: more than one run keeps in memory.
    pub deletes_deferred: u64,
    /// Objects that failed to copy or delete (any failure fails the media step).
    pub failed: u64,
    /// The first failures, by key.
    pub failures: Vec<Failure>,
    /// Requests retried after a temporary error.
    pub retries: u64,
    pub copy_seconds: f64,
    pub delete_seconds: f64,
}

impl MediaReport {
    /// What the mirror does with an object: the state file's totals and the metrics' `action`
    /// label use these names.
    pub const ACTIONS: [&'static str; 4] = ["copied", "skipped", "deleted", "failed"];

    /// How many objects each of [`MediaReport::ACTIONS`] concerned.
    pub fn actions(&self) -> [(&'static str, u64); 4] {
        let counts = [self.copied, self.skipped, self.deleted, self.failed];
        std::array::from_fn(|i| (Self::ACTIONS[i], counts[i]))
    }

    /// No object failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// One line for logs, the email and text output.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "copied {} objects ({}), {} unchanged, deleted {}, {} failed, {} retries; listed {} source / {} target objects in {:.1} s",
            self.copied,
            HumanBytes(self.copied_bytes),
            self.skipped,
            self.deleted,
            self.failed,
            self.retries,
            self.listed_source,
            self.listed_target,
            self.copy_seconds + self.delete_seconds,
        );
        if let Some(reason) = &self.deletes_refused {
            line.push_str(&format!("; deletes refused: {reason}"));
        }
        line
    }
}

/// What a mirror run would do, changing nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaPlan {
    pub source: String,
    pub target: String,
    pub mode: CopyMode,
    pub listed_source: u64,
    pub listed_target: u64,
    /// New or changed objects that would be copied, and their bytes.
    pub copy: u64,
    pub copy_bytes: u64,
    pub unchanged: u64,
    /// Staging-only objects the delete pass would remove.
    pub delete: u64,
    /// Why the delete pass would refuse, if it would.
    pub deletes_refused: Option<String>,
    pub seconds: f64,
}

impl MediaPlan {
    pub fn summary(&self) -> String {
        let mut line = format!(
            "would copy {} objects ({}), leave {} unchanged, delete {} (listed {} source / {} target objects)",
            self.copy,
            HumanBytes(self.copy_bytes),
            self.unchanged,
            self.delete,
            self.listed_source,
            self.listed_target,
        );
        if let Some(reason) = &self.deletes_refused {
            line.push_str(&format!("; deletes would be refused: {reason}"));
        }
        line
    }
}
