//! How a command ends: the exit codes of the operator contract, and the error types that
//! choose them.

use crate::config::ConfigError;

/// Exit codes of the operator contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// The refresh failed; staging is left serving its previous data.
    Failed = 1,
    /// Bad command line or configuration.
    Usage = 2,
    /// A guard refused to act (no opt-in marker, target equals source, ...).
    Refused = 3,
    /// Another refresh holds the lock.
    Locked = 4,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// A guard said no. Nothing has been changed.
#[derive(Debug, thiserror::Error)]
#[error("refused: {message}")]
pub struct Refused {
    pub guard: Guard,
    pub message: String,
}

impl Refused {
    pub fn new(guard: Guard, message: impl Into<String>) -> Refused {
        Refused {
            guard,
            message: message.into(),
        }
    }
}

/// Which guard refused: what to do about it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// A target (the staging database or media bucket) without its opt-in marker.
    NotOptedIn,
    /// The restore cannot log in as the restore role; `sql` is what a superuser runs, either
    /// statement fixing it.
    RestoreRoleLogin { sql: Vec<String> },
    /// A target that is the source itself.
    TargetIsSource,
}

/// Another refresh is running.
#[derive(Debug, thiserror::Error)]
#[error(
    "another refresh holds the lock {path} (pid {}, run {run_id}): wait for it to finish; \
     `staging-refresh status` shows what it is doing",
    crate::util::shown_pid(*.pid)
)]
pub struct Locked {
    pub path: String,
    pub pid: Option<u32>,
    pub run_id: String,
}

/// `err` and its causes joined by ": ", as `anyhow` prints them with `{:#}`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    chain_with(err, |e| e.to_string())
}

/// [`chain`], each cause shown by `show`.
pub fn chain_with(
    err: &(dyn std::error::Error + 'static),
    show: impl Fn(&(dyn std::error::Error + 'static)) -> String,
) -> String {
    let mut parts = vec![show(err)];
    let mut cause = err.source();
    while let Some(err) = cause {
        parts.push(show(err));
        cause = err.source();
    }
    parts.join(": ")
}

/// The exit code for an error, from the first error in its chain that decides one.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.is::<ConfigError>() {
            return Exit::Usage;
        }
        if cause.is::<Refused>() {
            return Exit::Refused;
        }
        if cause.is::<Locked>() {
            return Exit::Locked;
        }
    }
    Exit::Failed
}
