//! How a run fails, as a type: the report's outcome and failed phase come from its kind.

use std::error::Error;
use std::fmt;

use crate::error::Refused;
use crate::media::MediaError;
use crate::report::{Cause, Outcome, Phase};

type BoxError = Box<dyn Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A guard said no before anything changed.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// SIGTERM/SIGINT before cutover.
    #[error("cancelled by a signal before cutover; staging keeps its previous data")]
    Cancelled,
    /// The media mirror could not start or finish a pass.
    #[error(transparent)]
    Media(MediaError),
    /// Some media objects could not be copied or deleted; everything else of the run is done.
    #[error(
        "media mirror incomplete: {failed} objects failed (the report lists them); the rest \
         of the refresh is done and live; `staging-refresh run --skip-db` retries the mirror \
         alone"
    )]
    MediaIncomplete { failed: u64 },
    /// A step of the work failed.
    #[error(transparent)]
    Failed(#[from] StepFailed),
}

impl RunError {
    pub fn outcome(&self) -> Outcome {
        match self {
            RunError::Refused(_) | RunError::Media(MediaError::Refused(_)) => Outcome::Refused,
            RunError::Cancelled => Outcome::Cancelled,
            _ => Outcome::Failed,
        }
    }

    /// Why it failed, when what to do about it is particular to the cause.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            RunError::Refused(refused) => Cause::of(refused),
            RunError::Media(err) => Cause::of(err),
            RunError::Failed(step) => Cause::of(&*step.source),
            RunError::Cancelled | RunError::MediaIncomplete { .. } => None,
        }
    }

    /// The phase to blame: the media mirror's own failures are the media phase's, whatever
    /// the database work was doing beside it; everything else is `current`'s.
    pub fn phase(&self, current: Phase) -> Phase {
        match self {
            RunError::Media(_) | RunError::MediaIncomplete { .. } => Phase::Media,
            _ => current,
        }
    }
}

/// The media mirror's errors, as the run's: a cancelled pass is the run cancelled.
impl From<MediaError> for RunError {
    fn from(err: MediaError) -> RunError {
        match err {
            MediaError::Cancelled => RunError::Cancelled,
            other => RunError::Media(other),
        }
    }
}

/// A failed step: what was being done (when the error alone does not say) and why.
#[derive(Debug)]
pub struct StepFailed {
    doing: Option<String>,
    source: BoxError,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.doing {
            Some(doing) => f.write_str(doing),
            None => self.source.fmt(f),
        }
    }
}

impl Error for StepFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.doing {
            Some(_) => Some(&*self.source),
            None => self.source.source(),
        }
    }
}

/// `result.doing("restoring X")`: names the step in the error, as `anyhow`'s `context` would.
pub trait Doing<T> {
    fn doing(self, what: impl Into<String>) -> Result<T, RunError>;
}

impl<T, E: Into<BoxError>> Doing<T> for Result<T, E> {
    fn doing(self, what: impl Into<String>) -> Result<T, RunError> {
        self.map_err(|e| {
            RunError::Failed(StepFailed {
                doing: Some(what.into()),
                source: e.into(),
            })
        })
    }
}

/// The errors a step can fail with, each carrying its own message.
macro_rules! step_errors {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for RunError {
            fn from(err: $error) -> RunError {
                RunError::Failed(StepFailed { doing: None, source: Box::new(err) })
            }
        }
    )*};
}

step_errors!(
    crate::database::DbError,
    crate::journal::JournalError,
    crate::recovery::RecoveryError,
    crate::refresh::cutover::CutoverError,
    crate::snapshot::CatalogError,
    crate::restore::RestoreError,
    crate::verify::AnonymizeError,
);

/// A failure of our own making, with nothing underneath.
pub fn failed(message: impl Into<String>) -> RunError {
    RunError::Failed(StepFailed {
        doing: None,
        source: message.into().into(),
    })
}
