//! Progress of long work: a live bar when stderr is a terminal, a structured log line every
//! few seconds otherwise, and a snapshot any caller (`status`, metrics) can read.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Bytes,
    Objects,
}

/// What a progress counter says at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    pub phase: String,
    pub unit: Unit,
    pub done: u64,
    pub total: Option<u64>,
    pub per_second: f64,
    pub message: String,
    pub elapsed_seconds: f64,
}

pub struct Progress {
    phase: String,
    unit: Unit,
    total: Option<u64>,
    done: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
    message: Mutex<String>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts counting `phase`; `total` is known for downloads, unknown for listings.
    pub fn new(phase: &str, unit: Unit, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::new_spinner(),
            };
            let counter = match unit {
                Unit::Bytes => "{bytes}/{total_bytes} {bytes_per_sec}",
                Unit::Objects => "{human_pos}/{human_len} {per_sec}",
            };
            let template =
                format!("{{prefix:>10}} [{{elapsed_precise}}] {{wide_bar}} {counter} {{msg}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_prefix(phase.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Progress {
            phase: phase.to_owned(),
            unit,
            total,
            done: AtomicU64::new(0),
            started: now,
            last_log: Mutex::new(now),
            message: Mutex::new(String::new()),
            bar,
        }
    }

    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => self.log_if_due(),
        }
    }

    /// What is being worked on now, e.g. the table being loaded.
    pub fn set_message(&self, message: &str) {
        *self.message.lock().expect("progress lock") = message.to_owned();
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_owned());
        }
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let done = self.done.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        ProgressSnapshot {
            phase: self.phase.clone(),
            unit: self.unit,
            done,
            total: self.total,
            per_second: if elapsed > 0.0 {
                done as f64 / elapsed
            } else {
                0.0
            },
            message: self.message.lock().expect("progress lock").clone(),
            elapsed_seconds: elapsed,
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn log_if_due(&self) {
        let mut last = self.last_log.lock().expect("progress lock");
        if last.elapsed() < LOG_EVERY {
            return;
        }
        *last = Instant::now();
        drop(last);
        let s = self.snapshot();
        let rate = match self.unit {
            Unit::Bytes => format!("{}/s", HumanBytes(s.per_second as u64)),
            Unit::Objects => format!("{:.0}/s", s.per_second),
        };
        let percent = s
            .total
            .filter(|t| *t > 0)
            .map(|t| format!("{:.1}%", s.done as f64 * 100.0 / t as f64))
            .unwrap_or_default();
        tracing::info!(
            phase = %s.phase,
            done = s.done,
            total = s.total,
            rate = %rate,
            percent = %percent,
            current = %s.message,
            "progress"
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
