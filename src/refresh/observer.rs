//! What a run tells the outside world as it goes: the state file, systemd's status, the
//! daemon's `trigger --wait` clients.

use std::sync::Arc;

use crate::journal::Recovery;
use crate::media::MediaProgress;
use crate::progress::Progress;
use crate::report::{Phase, RunReport};

/// Told about a run as it goes.
pub trait Observer: Send + Sync {
    /// A phase starts; `progress` counts its work when it has a measurable amount.
    fn phase(&self, report: &RunReport, phase: Phase, progress: Option<Arc<Progress>>);
    /// The run found what a dead run left and put it in order (before anything else).
    fn recovered(&self, recovery: &Recovery);
    /// The media mirror starts; it runs beside the database phases.
    fn media(&self, _progress: &MediaProgress) {}
    fn finished(&self, report: &RunReport);
}
