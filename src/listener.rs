//! What the local listeners (the control socket, the metrics endpoint) share so that no client
//! can hurt the daemon behind them: a failing `accept` (EMFILE, ENFILE, ENOMEM) backs off
//! instead of spinning, connections beyond a cap are closed at once, and each connection has a
//! deadline, so idle or slow clients cannot pile up and use the descriptors the holder needs
//! for its EC2 calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause after failed accepts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(64);

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed without an answer.
    pub connections: usize,
    /// How long a client may take to send its request.
    pub read: Duration,
    /// How long a client may take to read the answer.
    pub write: Duration,
}

/// The pause after `failures` accept errors in a row (1 s, 2 s, 4 s, … 64 s).
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    FIRST_BACKOFF.saturating_mul(1u32 << exponent).min(MAX_BACKOFF)
}

/// The accept-side state of one listener.
#[derive(Debug)]
pub struct Gate {
    name: &'static str,
    limits: Limits,
    permits: Arc<Semaphore>,
    failures: u32,
    refused: u64,
}

impl Gate {
    /// A gate for the listener `name` (used in logs).
    pub fn new(name: &'static str, limits: Limits) -> Gate {
        Gate { name, limits, permits: Arc::new(Semaphore::new(limits.connections)), failures: 0, refused: 0 }
    }

    /// The next connection to serve, with its slot (held until the connection is done):
    /// failed accepts back off, connections over the cap are closed at once.
    pub async fn next<S, A, F>(&mut self, mut accept: A) -> (S, OwnedSemaphorePermit)
    where
        A: FnMut() -> F,
        F: Future<Output = std::io::Result<S>>,
    {
        loop {
            match accept().await {
                Err(e) => self.failed(&e).await,
                Ok(stream) => {
                    if let Some(permit) = self.admit() {
                        return (stream, permit);
                    }
                }
            }
        }
    }

    /// `accept` failed: logs it and waits out the backoff, so a listener out of descriptors
    /// does not spin.
    async fn failed(&mut self, error: &std::io::Error) {
        self.failures = self.failures.saturating_add(1);
        let pause = backoff(self.failures);
        warn!(listener = self.name, error = %error, failures = self.failures, pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "cannot accept a connection; pausing this listener");
        tokio::time::sleep(pause).await;
    }

    /// A connection was accepted: its permit while under the cap, None (close it) when over.
    fn admit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.failures = 0;
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.refused = self.refused.saturating_add(1);
                // The first refusal and then every 100th: a flood must not flood the journal.
                if self.refused % 100 == 1 {
                    warn!(listener = self.name, cap = self.limits.connections, refused = self.refused, "too many connections at once; closing new ones");
                }
                None
            }
        }
    }

    /// Connections closed because the cap was reached, since start.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_sixty_four() {
        let pauses: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn connections_over_the_cap_are_refused_until_one_ends() {
        let mut gate = Gate::new("t", Limits { connections: 2, read: Duration::from_secs(1), write: Duration::from_secs(1) });
        let a = gate.admit().expect("first");
        let _b = gate.admit().expect("second");
        assert!(gate.admit().is_none());
        assert_eq!(gate.refused(), 1);
        drop(a);
        assert!(gate.admit().is_some(), "a slot frees when a connection ends");
    }
}
