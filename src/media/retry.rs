//! Every S3 request of the mirror goes through [`Backoff::run`]: temporary errors
//! (throttling, 5xx, timeouts, connection resets) are retried with exponential back-off and
//! full jitter, and each one also pauses every other request for a while. The shared pause
//! grows while errors keep coming and shrinks as requests succeed, so a rate-limited store
//! (R2's 429s) sees the whole mirror slow down instead of 32 workers hammering it.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::report::MediaProgress;
use crate::shutdown::CancellationToken;
use crate::store::{ErrorKind, StoreError};

/// Tries per step; the last error is reported after this many.
const ATTEMPTS: u32 = 10;
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(20);

pub(super) struct Backoff {
    pause: Mutex<Pause>,
    progress: MediaProgress,
    shutdown: CancellationToken,
}

/// The shared slow-down: nothing is sent before `until`.
struct Pause {
    delay: Duration,
    until: Instant,
}

impl Backoff {
    pub(super) fn new(progress: MediaProgress, shutdown: CancellationToken) -> Backoff {
        Backoff {
            pause: Mutex::new(Pause {
                delay: Duration::ZERO,
                until: Instant::now(),
            }),
            progress,
            shutdown,
        }
    }

    /// Runs `step` (one request, or a GET streamed into a PUT) until it succeeds, fails for
    /// good, or runs out of tries. A shutdown cuts waiting short with the last error.
    pub(super) async fn run<T, F, Fut>(&self, mut step: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            let until = self.pause.lock().expect("pause lock").until;
            tokio::time::sleep_until(until).await;
            match step().await {
                Ok(value) => {
                    self.succeeded();
                    return Ok(value);
                }
                Err(e) if e.kind == ErrorKind::Temporary && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    self.progress.retried();
                    self.failed();
                    let ceiling = FIRST_DELAY
                        .saturating_mul(1 << attempt.min(16))
                        .min(MAX_DELAY);
                    let shutdown = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(ceiling.mul_f64(fastrand::f64())) => {}
                        _ = shutdown.cancelled() => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn failed(&self) {
        let mut pause = self.pause.lock().expect("pause lock");
        pause.delay = (pause.delay * 2).clamp(FIRST_DELAY, MAX_DELAY);
        let until = Instant::now() + pause.delay.mul_f64(0.5 + fastrand::f64() / 2.0);
        pause.until = pause.until.max(until);
    }

    fn succeeded(&self) {
        let mut pause = self.pause.lock().expect("pause lock");
        if !pause.delay.is_zero() {
            pause.delay /= 2;
            if pause.delay < FIRST_DELAY {
                pause.delay = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn error(kind: ErrorKind) -> StoreError {
        StoreError {
            kind,
            what: "test".into(),
            bucket: "b".into(),
            endpoint: "e".into(),
            message: "m".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_temporary_errors_only_and_counts_them() {
        let progress = MediaProgress::new();
        let backoff = Backoff::new(progress.clone(), CancellationToken::new());
        let calls = AtomicU32::new(0);
        let out = backoff
            .run(|| async {
                match calls.fetch_add(1, Ordering::Relaxed) {
                    0 | 1 => Err(error(ErrorKind::Temporary)),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(progress.snapshot().retries, 2);

        calls.store(0, Ordering::Relaxed);
        let out: Result<(), _> = backoff
            .run(|| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(error(ErrorKind::Permanent))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);

        let out: Result<(), _> = backoff
            .run(|| async { Err(error(ErrorKind::Temporary)) })
            .await;
        assert!(out.is_err());
        assert_eq!(progress.snapshot().retries, 2 + u64::from(ATTEMPTS - 1));
    }
}
