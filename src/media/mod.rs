//! The media mirror: makes the staging bucket equal to production's, in two passes.
//!
//! ```text
//! let mirror = Mirror::new(&config.media)?;              // refuses target == source
//! mirror.guard().await?;                                 // refuses a target without marker
//! let progress = MediaProgress::new();                   // progress.snapshot() any time
//! let copied = mirror.copy_pass(&progress, &shutdown).await?;   // phase 1: copy, no deletes
//! // ... cutover ...
//! let report = mirror.delete_pass(&copied, &progress, &shutdown).await;  // phase 3
//! ```
//!
//! The copy pass lists both buckets in parallel key ranges ([`listing`]), merge-joins each
//! range ([`diff`]: equal size and ETag, or for multipart ETags size and age, mean
//! unchanged; no per-object HEAD), copies what is new or changed ([`copy`]) with at most
//! `media.concurrency` objects at once, and remembers the staging-only keys. The delete pass
//! removes those ([`delete`]) unless a guard refuses. Memory holds the pages of the ranges
//! in flight and the remembered keys, not the listings. Every request retries temporary
//! errors with a shared, adaptive back-off ([`retry`]). [`MediaPlan`] previews a run.

mod copy;
mod delete;
mod diff;
mod listing;
mod marker;
mod report;
mod retry;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use marker::{MARKER_KEY, has_marker, write_marker};
pub use report::{CopyMode, Failure, MediaPlan, MediaProgress, MediaProgressSnapshot, MediaReport};

use crate::config::{BucketConfig, ConfigError, MaxDelete, MediaConfig};
use crate::error::{Guard, Refused};
use crate::shutdown::CancellationToken;
use crate::store::{SourceBucket, StoreError, TargetBucket};
use copy::Copier;
use delete::Candidates;
use diff::Action;
use listing::Chunk;
use retry::Backoff;

/// Key ranges listed or being handled at once, each holding a page from each bucket.
const RANGES_IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media mirror")]
    Config(#[from] ConfigError),
    #[error("media mirror")]
    Refused(#[from] Refused),
    /// A bucket could not be listed to the end: nothing can be known about the rest.
    #[error("listing the media buckets")]
    Listing(#[source] StoreError),
    /// The marker could not be read.
    #[error("checking the media target's opt-in marker")]
    Marker(#[source] StoreError),
    #[error("media mirror cancelled")]
    Cancelled,
}

/// Mirrors `media.source` onto `media.target`.
pub struct Mirror {
    copier: Arc<Copier>,
    concurrency: usize,
    max_delete: MaxDelete,
}

/// What the copy pass found and did; the delete pass works from it.
#[derive(Debug)]
pub struct CopyOutcome {
    /// Complete but for the delete pass's figures.
    pub report: MediaReport,
    candidates: Candidates,
}

impl Mirror {
    /// Refuses a target that is the source itself.
    pub fn new(config: &MediaConfig) -> Result<Mirror, MediaError> {
        let missing = |key: &str| ConfigError::Key {
            key: key.into(),
            message: "missing; the media mirror needs both buckets".into(),
        };
        let source = config
            .source
            .as_ref()
            .ok_or_else(|| missing("media.source"))?;
        let target = config
            .target
            .as_ref()
            .ok_or_else(|| missing("media.target"))?;
        if same_bucket(source, target) {
            return Err(Refused::new(
                Guard::TargetIsSource,
                format!(
                    "media.target is media.source (s3://{} at {}): the mirror would overwrite \
                     production",
                    target.bucket,
                    target.endpoint.as_deref().unwrap_or("AWS")
                ),
            )
            .into());
        }
        let mode = if same_endpoint(source, target) {
            CopyMode::ServerSide
        } else {
            CopyMode::Streamed
        };
        Ok(Mirror {
            copier: Arc::new(Copier {
                source: SourceBucket::new(source).without_retries(),
                target: TargetBucket::new(target).without_retries(),
                mode,
                multipart_threshold: config.multipart_threshold,
                part_size: config.part_size,
            }),
            concurrency: config.concurrency.max(1),
            max_delete: config.max_delete,
        })
    }

    pub fn source(&self) -> &SourceBucket {
        &self.copier.source
    }

    pub fn target(&self) -> &TargetBucket {
        &self.copier.target
    }

    pub fn mode(&self) -> CopyMode {
        self.copier.mode
    }

    /// Refuses a target bucket without the opt-in marker. The copy pass checks it too; call
    /// it first to refuse before anything else of a run changes.
    pub async fn guard(&self) -> Result<(), MediaError> {
        self.check_marker(&Backoff::new(
            MediaProgress::new(),
            CancellationToken::new(),
        ))
        .await
    }

    async fn check_marker(&self, backoff: &Backoff) -> Result<(), MediaError> {
        let target = self.target();
        if backoff
            .run(|| has_marker(target))
            .await
            .map_err(MediaError::Marker)?
        {
            Ok(())
        } else {
            Err(Refused::new(
                Guard::NotOptedIn,
                format!(
                    "the media target s3://{} at {} has no opt-in marker object {MARKER_KEY}; \
                     run `staging-refresh init-target` once if this bucket is staging's",
                    target.name(),
                    target.endpoint()
                ),
            )
            .into())
        }
    }

    /// Phase 1: copies every new or changed object; deletes nothing. Objects that fail are
    /// in the report (the others go on); a listing that fails or a shutdown is an error.
    pub async fn copy_pass(
        &self,
        progress: &MediaProgress,
        shutdown: &CancellationToken,
    ) -> Result<CopyOutcome, MediaError> {
        let _log = progress.log_periodically("media copy");
        self.walk(true, progress, shutdown).await
    }

    /// Lists and compares like the copy pass and says what it would do; changes nothing.
    pub async fn plan(
        &self,
        progress: &MediaProgress,
        shutdown: &CancellationToken,
    ) -> Result<MediaPlan, MediaError> {
        let _log = progress.log_periodically("media plan");
        let outcome = self.walk(false, progress, shutdown).await?;
        let report = outcome.report;
        let s = progress.snapshot();
        Ok(MediaPlan {
            source: report.source,
            target: report.target,
            mode: report.mode,
            listed_source: report.listed_source,
            listed_target: report.listed_target,
            copy: s.to_copy,
            copy_bytes: s.to_copy_bytes,
            unchanged: report.skipped,
            delete: report.delete_candidates,
            deletes_refused: delete::refusal(
                self.max_delete,
                report.listed_source,
                report.listed_target,
                report.delete_candidates,
            ),
            seconds: report.copy_seconds,
        })
    }

    /// Phase 3, after the cutover: deletes the staging-only objects the copy pass found,
    /// unless a guard refuses (the reason is in the report). Returns the whole report.
    pub async fn delete_pass(
        &self,
        copied: &CopyOutcome,
        progress: &MediaProgress,
        shutdown: &CancellationToken,
    ) -> MediaReport {
        let started = Instant::now();
        let mut report = copied.report.clone();
        report.deletes_refused = delete::refusal(
            self.max_delete,
            report.listed_source,
            report.listed_target,
            report.delete_candidates,
        );
        if report.deletes_refused.is_none() && shutdown.is_cancelled() {
            report.deletes_refused = Some("shutdown requested before the delete pass".into());
        }
        if let Some(reason) = &report.deletes_refused {
            tracing::warn!(reason = %reason, "media deletes refused");
        } else {
            let _log = progress.log_periodically("media delete");
            let backoff = Backoff::new(progress.clone(), shutdown.clone());
            let keys = copied.candidates.keys();
            delete::delete(self.target(), keys, self.concurrency, &backoff, progress).await;
            report.deletes_deferred = copied.candidates.count() - keys.len() as u64;
        }
        let s = progress.snapshot();
        report.deleted = s.deleted;
        report.failed = s.failed;
        report.failures = progress.failures();
        report.retries = s.retries;
        report.delete_seconds = started.elapsed().as_secs_f64();
        report
    }

    /// The copy pass (`execute`) or its preview.
    async fn walk(
        &self,
        execute: bool,
        progress: &MediaProgress,
        shutdown: &CancellationToken,
    ) -> Result<CopyOutcome, MediaError> {
        let started = Instant::now();
        progress.restart_clock();
        let backoff = Arc::new(Backoff::new(progress.clone(), shutdown.clone()));
        if execute {
            self.check_marker(&backoff).await?;
        }
        let candidates = Mutex::new(Candidates::new(self.max_delete));
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let handle = |chunk: Chunk| {
            let (backoff, slots, candidates) = (backoff.clone(), slots.clone(), &candidates);
            async move {
                let Chunk {
                    mut source,
                    mut target,
                } = chunk;
                source.retain(|o| o.key != MARKER_KEY);
                target.retain(|o| o.key != MARKER_KEY);
                progress.listed(source.len(), target.len());
                let mut copies = JoinSet::new();
                for action in diff::diff(&source, &target) {
                    match action {
                        Action::Unchanged => progress.unchanged(),
                        Action::Delete(object) => {
                            progress.delete_candidate();
                            candidates.lock().expect("candidates lock").add(&object.key);
                        }
                        Action::Copy(object) => {
                            progress.to_copy(object);
                            if !execute || shutdown.is_cancelled() {
                                continue;
                            }
                            let slot = slots.clone().acquire_owned().await.expect("never closed");
                            let (copier, backoff, progress) =
                                (self.copier.clone(), backoff.clone(), progress.clone());
                            let object = object.clone();
                            copies.spawn(async move {
                                let result = copier.copy(&object, &backoff).await;
                                progress.copy_finished(&object, result);
                                crate::fault::point("media.copied-object");
                                drop(slot);
                            });
                            // A finished task keeps its memory until joined: join as we go.
                            while let Some(done) = copies.try_join_next() {
                                propagate_panic(done);
                            }
                        }
                    }
                }
                while let Some(done) = copies.join_next().await {
                    propagate_panic(done);
                }
            }
        };
        let listed = listing::for_each_chunk(
            self.source(),
            self.target(),
            &backoff,
            RANGES_IN_FLIGHT,
            shutdown,
            handle,
        )
        .await;
        if shutdown.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        listed.map_err(MediaError::Listing)?;
        let candidates = candidates.into_inner().expect("candidates lock");
        let s = progress.snapshot();
        let report = MediaReport {
            source: describe(self.source().name(), self.source().endpoint()),
            target: describe(self.target().name(), self.target().endpoint()),
            mode: self.mode(),
            listed_source: s.listed_source,
            listed_target: s.listed_target,
            copied: s.copied,
            copied_bytes: s.copied_bytes,
            skipped: s.unchanged,
            vanished: progress.vanished(),
            delete_candidates: candidates.count(),
            deleted: 0,
            deletes_refused: None,
            deletes_deferred: 0,
            failed: s.failed,
            failures: progress.failures(),
            retries: s.retries,
            copy_seconds: started.elapsed().as_secs_f64(),
            delete_seconds: 0.0,
        };
        Ok(CopyOutcome { report, candidates })
    }
}

fn propagate_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn describe(bucket: &str, endpoint: &str) -> String {
    format!("s3://{bucket} at {endpoint}")
}

/// Endpoints compared without case and trailing slashes; no endpoint means AWS in a region.
fn same_endpoint(a: &BucketConfig, b: &BucketConfig) -> bool {
    let norm = |c: &BucketConfig| match &c.endpoint {
        Some(e) => e.trim_end_matches('/').to_ascii_lowercase(),
        None => format!("aws:{}", c.region),
    };
    norm(a) == norm(b)
}

/// The same bucket on the same endpoint: a target that is its own source.
pub fn same_bucket(a: &BucketConfig, b: &BucketConfig) -> bool {
    a.bucket == b.bucket && (same_endpoint(a, b) || (a.endpoint.is_none() && b.endpoint.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(endpoint: Option<&str>, region: &str, name: &str) -> BucketConfig {
        BucketConfig {
            endpoint: endpoint.map(str::to_owned),
            region: region.into(),
            bucket: name.into(),
            access_key_id: None,
            secret_access_key: None,
        }
    }

    #[test]
    fn a_target_equal_to_its_source_is_recognised() {
        let r2 = Some("https://acct.r2.cloudflarestorage.com");
        let src = bucket(r2, "auto", "media");
        assert!(same_bucket(
            &src,
            &bucket(
                Some("https://ACCT.r2.cloudflarestorage.com/"),
                "auto",
                "media"
            )
        ));
        assert!(!same_bucket(&src, &bucket(r2, "auto", "media-staging")));
        assert!(!same_bucket(
            &src,
            &bucket(
                Some("https://other.r2.cloudflarestorage.com"),
                "auto",
                "media"
            )
        ));
        // AWS bucket names are global: the region does not tell them apart.
        assert!(same_bucket(
            &bucket(None, "eu-west-1", "m"),
            &bucket(None, "us-east-1", "m")
        ));
        assert!(same_endpoint(&src, &bucket(r2, "auto", "other")));
    }
}
