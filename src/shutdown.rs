//! Cooperative shutdown: a [`CancellationToken`] (tokio-util) cloned to whatever may stop.
//! Long work checks `is_cancelled` between steps or `select!`s on `cancelled()`, so SIGTERM
//! cancels cleanly wherever it is safe to stop.

pub use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGTERM or SIGINT.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM received: stopping"),
            _ = int.recv() => tracing::warn!("SIGINT received: stopping"),
        }
        cancel.cancel();
    });
    token
}
