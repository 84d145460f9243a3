//! Cooperative shutdown: one trigger, any number of cloned listeners (a watch channel).
//! Long work checks [`Shutdown::is_requested`] between steps or `select!`s on
//! [`Shutdown::requested`], so SIGTERM cancels cleanly wherever it is safe to stop.

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A listener that is never triggered.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive so `requested` pends forever instead of returning.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown is requested (at once if it already was).
    pub async fn requested(&mut self) {
        // An error means the trigger was dropped without firing: wait forever.
        if self.0.wait_for(|requested| *requested).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Triggers on the first SIGTERM or SIGINT.
pub fn on_signals() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM received: stopping"),
            _ = int.recv() => tracing::warn!("SIGINT received: stopping"),
        }
        trigger.trigger();
    });
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_see_the_trigger() {
        let (trigger, shutdown) = channel();
        let mut waiting = shutdown.clone();
        let waiter = tokio::spawn(async move { waiting.requested().await });
        assert!(!shutdown.is_requested());
        trigger.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_requested());
    }
}
