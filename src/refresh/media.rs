//! The media mirror within a refresh: its guards before any change, the copy pass beside
//! phase 1 (it only adds and updates staging objects, so a refresh stopped there leaves
//! staging whole), the delete pass after the cutover, and `run --skip-db`'s two passes back
//! to back. Each pass is recorded in the journal, for the recovery of a run that dies.

use super::{Options, Run, RunError};
use crate::journal::{Journal, MediaPass};
use crate::media::{CopyOutcome, MediaProgress, Mirror};
use crate::report::Phase;
use crate::shutdown::CancellationToken;

impl Run<'_> {
    /// The media mirror, unless disabled or skipped; refuses a target that is production's
    /// bucket or lacks the opt-in marker.
    pub(super) async fn media_mirror(&self, options: &Options) -> Result<Option<Mirror>, RunError> {
        if !self.config.media.enabled || options.skip_media {
            return Ok(None);
        }
        let mirror = Mirror::new(&self.config.media)?;
        mirror.guard().await?;
        Ok(Some(mirror))
    }

    /// `run --skip-db`: both media passes, back to back, and no database work.
    pub(super) async fn mirror_only(&mut self, mirror: &Mirror) -> Result<(), RunError> {
        self.begin(Phase::Media, None);
        let progress = MediaProgress::new();
        self.observer.media(&progress);
        self.journal.record(|e| e.media = Some(MediaPass::Copy))?;
        let copied = mirror.copy_pass(&progress, &self.shutdown).await?;
        self.delete_pass(mirror, &copied, &progress).await
    }

    /// The delete pass (keys gone from production at listing time), then the mirror's
    /// report; objects that failed fail the run (the others are done).
    pub(super) async fn delete_pass(
        &mut self,
        mirror: &Mirror,
        copied: &CopyOutcome,
        progress: &MediaProgress,
    ) -> Result<(), RunError> {
        record_media(self.journal, Some(MediaPass::Delete));
        let media = mirror.delete_pass(copied, progress, &self.shutdown).await;
        tracing::info!(summary = %media.summary(), "media mirror finished");
        let failed = media.failed;
        self.report.media = Some(media);
        if failed > 0 {
            return Err(RunError::MediaIncomplete { failed });
        }
        Ok(())
    }
}

/// The copy pass beside phase 1, when there is a mirror; it starts recorded in the journal
/// (see [`Run::execute`]) and ends with no pass in progress.
pub(super) async fn copy_pass(
    mirror: Option<&Mirror>,
    progress: &MediaProgress,
    shutdown: &CancellationToken,
    journal: &Journal,
) -> Result<Option<CopyOutcome>, RunError> {
    let Some(mirror) = mirror else {
        return Ok(None);
    };
    let copied = mirror.copy_pass(progress, shutdown).await?;
    record_media(journal, None);
    Ok(Some(copied))
}

/// Records the media pass in progress; the pass goes on if that fails (it only adds or
/// removes whole objects, which the next run would finish anyway).
fn record_media(journal: &Journal, pass: Option<MediaPass>) {
    if let Err(e) = journal.record(|e| e.media = pass) {
        tracing::warn!(error = %e, "the media pass goes on unrecorded");
    }
}
