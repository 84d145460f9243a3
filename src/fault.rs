//! Fault injection for the crash tests: `STAGING_REFRESH_FAULT=<point>:<kill|pause>[,...]`
//! makes the process SIGKILL itself (a power cut, exactly there) or SIGSTOP itself (the test
//! then kills it, or does something to the world and lets it go on with SIGCONT) when it
//! reaches a named [`point`].
//!
//! It exists only in builds with debug assertions, which is what `cargo test` builds and runs:
//! in a release build (the package) [`point`] is an empty function and the variable is never
//! read, so no environment can change what a shipped binary does. A cargo feature would do the
//! same, but every test run would have to remember to enable it.

/// The environment variable naming the faults.
pub const VAR: &str = "STAGING_REFRESH_FAULT";

/// A place a crash test may stop the process at.
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    let Ok(spec) = std::env::var(VAR) else {
        return;
    };
    for fault in spec.split(',') {
        let Some((at, action)) = fault.split_once(':') else {
            continue;
        };
        if at != name {
            continue;
        }
        eprintln!("fault injection: {action} at {name}");
        let signal = match action {
            "kill" => libc::SIGKILL,
            "pause" => libc::SIGSTOP,
            _ => continue,
        };
        // SAFETY: raising a signal at ourselves has no memory-safety preconditions.
        unsafe { libc::raise(signal) };
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
