//! Runs one configured health check: a shell command or a systemd unit that must be active.

use std::process::Stdio;
use std::time::Duration;

use crate::config::HealthCheck;

/// Ok when healthy; Err with what failed (exit status, timeout, spawn error).
pub async fn run_check(check: &HealthCheck, timeout: Duration) -> Result<(), String> {
    let mut cmd = match check {
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
    // A hung check must not outlive its timeout.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
        Ok(Err(e)) => Err(format!("wait failed: {e}")),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("failed ({status})")),
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
