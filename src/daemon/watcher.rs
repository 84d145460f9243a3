//! The watch: every `schedule.watch` the daemon lists the snapshot bucket (nothing more), and
//! classifies a snapshot it has not seen against the rules ([`crate::drift`]). What it finds
//! goes in the state file (`status`, the gauge `staging_refresh_unclassified_columns`), and a
//! snapshot with unclassified columns, or rules naming what it does not have, is warned about
//! on every channel once: when it is first seen. A reload classifies the newest snapshot
//! again under the new rules, which is how adding them clears the warning.

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::config::Config;
use crate::drift;
use crate::notify;
use crate::state::StateFile;
use crate::store::SourceBucket;

/// The look in progress, if any: one at a time.
#[derive(Default)]
pub struct Watch(Mutex<Option<JoinHandle<()>>>);

impl Watch {
    /// Looks at the bucket in the background, unless a look is under way; `again`: the rules
    /// changed, so the newest snapshot is classified even if it was, and a look under way
    /// (with the old rules) is replaced.
    pub fn look(&self, config: Arc<Config>, again: bool) {
        let mut task = self.0.lock().expect("watch");
        match task.as_ref() {
            Some(running) if !running.is_finished() && !again => return,
            Some(running) => running.abort(),
            None => {}
        }
        *task = Some(tokio::spawn(look(config, again)));
    }

    pub fn stop(&self) {
        if let Some(task) = self.0.lock().expect("watch").take() {
            task.abort();
        }
    }
}

/// The ticks of `schedule.watch`, the first one period from now; `None` when it is off.
pub fn ticks(config: &Config) -> Option<Interval> {
    let every = config.schedule.watch?;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Some(ticks)
}

/// The next tick of `ticks`; never, when the watch is off.
pub async fn tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn look(config: Arc<Config>, again: bool) {
    let state = StateFile::in_dir(&config.daemon.state_dir);
    let bucket = SourceBucket::new(config.snapshot.bucket_config());
    let newest = match drift::newest(&config, &bucket).await {
        Ok(Some(newest)) => newest,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "watching for new snapshots");
            return;
        }
    };
    let recorded = state.read().ok().unwrap_or_default();
    let seen = (recorded.drift.as_ref()).is_some_and(|d| d.snapshot == newest.name);
    if seen && !again {
        return;
    }
    let found = match drift::classify(&config, &bucket, &newest).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(snapshot = %newest.name, error = %e, "classifying a new snapshot's columns");
            return;
        }
    };
    state.update(|s| s.drift = Some(found.clone()));
    if found.is_clean() {
        tracing::info!(snapshot = %found.snapshot, "every column of the newest snapshot is classified");
        return;
    }
    tracing::warn!(
        snapshot = %found.snapshot,
        unclassified = found.unclassified.len(),
        rules_for_nothing = found.rules_for_nothing.len(),
        "the newest snapshot needs masking rules: {}",
        found.by_table().join("; ")
    );
    if !seen {
        notify::drift(&config, &found, recorded.next_run).await;
    }
}
