//! systemd's notify protocol (`Type=notify`): READY, STATUS, RELOADING, STOPPING and the
//! watchdog. Without `NOTIFY_SOCKET` (not under systemd) every call does nothing, so the
//! daemon runs unchanged in a terminal or a container.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Config, state and control socket are up (again, after a reload).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// What `systemctl status` shows under the unit's name.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A SIGHUP reload begins; [`ready`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Sends WATCHDOG=1 at half of `WATCHDOG_USEC` from a task on the runtime, so a runtime that
/// stops scheduling tasks stops the pings and systemd restarts the service. The only
/// periodic wakeup of an idle daemon.
pub fn spawn_watchdog() {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    tracing::debug!(?timeout, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut every = tokio::time::interval(timeout / 2);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}
