//! Runs one configured health check: a shell command or a systemd unit that must be active.

use std::time::Duration;

use crate::child::{self, Outcome};
use crate::config::HealthCheck;

/// Ok when healthy; Err with what failed (exit status, timeout, spawn error). A check that
/// overstays its timeout is killed with everything it started.
pub async fn run_check(check: &HealthCheck, timeout: Duration) -> Result<(), String> {
    let cmd = match check {
        HealthCheck::Command(c) => {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        HealthCheck::SystemdUnit(u) => {
            let mut cmd = tokio::process::Command::new("systemctl");
            cmd.args(["is-active", "--quiet", u]);
            cmd
        }
    };
    match child::run(cmd, timeout).await {
        Outcome::Success => Ok(()),
        other => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_results() {
        let t = Duration::from_secs(5);
        assert!(run_check(&HealthCheck::Command("true".into()), t).await.is_ok());
        let e = run_check(&HealthCheck::Command("exit 3".into()), t).await.unwrap_err();
        assert!(e.contains("3"), "{e}");
        let e = run_check(&HealthCheck::Command("sleep 5".into()), Duration::from_millis(100)).await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }
}
