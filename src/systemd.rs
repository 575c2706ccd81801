//! systemd integration for Type=notify: READY, RELOADING, STATUS and the watchdog. Every call
//! is a no-op when the daemon does not run under systemd (no NOTIFY_SOCKET).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// READY=1 once joined and the holders are known, so `systemctl start` returns then.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STATUS=: the holder summary `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Before the SIGHUP re-exec: systemd waits for READY=1 from the new process image.
pub fn reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// STOPPING=1 at the start of the planned release on stop.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// WATCHDOG=1 from the main loop: a wedged loop stops pinging and systemd restarts it.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often the main loop must ping, if systemd armed a watchdog (half its period).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Logs go to journald (structured fields) when stderr is connected to the journal.
pub fn logging_to_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}
