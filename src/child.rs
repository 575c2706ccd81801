//! Commands an admin configured (`[[health]]` checks and `[[notify]]` hooks), run so that a
//! timeout ends all of them: each runs in its own process group, and the whole group is killed
//! when it overstays, not only `/bin/sh` (a pipeline or a grandchild would outlive the shell).
//!
//! Every group still running is registered, so a re-exec can end and reap them first: the new
//! image would never wait for children it does not know, and they would stay zombies.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// Process groups of commands still running, by leader pid (= group id).
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Environment variables of this daemon that an admin's command must not inherit.
const PRIVATE_ENV: &[&str] = &[
    crate::daemon::handover::FD_ENV,
    crate::daemon::handover::PID_ENV,
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
];

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// Any other exit, or killed by a signal not ours.
    Failed(String),
    /// It overstayed its timeout; its whole process group was killed.
    TimedOut(Duration),
    /// It could not be started, or waited for.
    Error(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Success => write!(f, "succeeded"),
            Outcome::Failed(s) => write!(f, "failed ({s})"),
            Outcome::TimedOut(t) => write!(f, "timed out after {}ms; its process group was killed", t.as_millis()),
            Outcome::Error(e) => write!(f, "{e}"),
        }
    }
}

/// A started command: its group is killed if this is dropped before it exited (a cancelled
/// task, a timeout).
struct Group {
    child: tokio::process::Child,
    pgid: Option<i32>,
}

impl Group {
    fn exited(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            forget(pgid);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            forget(pgid);
            // tokio reaps the leader (kill_on_drop); the rest of the group are our
            // grandchildren, which init reaps.
        }
    }
}

fn forget(pgid: i32) {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner()).remove(&pgid);
}

/// Runs `cmd` in a new process group with stdio closed and this daemon's private environment
/// removed, and waits at most `timeout` for it.
pub async fn run(mut cmd: tokio::process::Command, timeout: Duration) -> Outcome {
    for var in PRIVATE_ENV {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Error(format!("cannot start: {e}")),
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    if let Some(pgid) = pgid {
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid);
    }
    let mut group = Group { child, pgid };
    let waited = tokio::time::timeout(timeout, group.child.wait()).await;
    match waited {
        // Dropping `group` kills the whole group.
        Err(_) => Outcome::TimedOut(timeout),
        Ok(Err(e)) => Outcome::Error(format!("wait failed: {e}")),
        Ok(Ok(status)) => {
            group.exited();
            if status.success() {
                Outcome::Success
            } else {
                Outcome::Failed(status.to_string())
            }
        }
    }
}

/// Before a re-exec: kills every group still running and reaps its leader, so no child of ours
/// becomes a zombie the new image never waits for. Returns how many were ended.
pub fn end_all() -> usize {
    let groups: Vec<i32> = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
    for &pgid in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    for &pgid in &groups {
        // The leader is our child; after SIGKILL it exits at once. ECHILD: tokio reaped it.
        for _ in 0..100 {
            match waitpid(Pid::from_raw(pgid), Some(WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
    }
    groups.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(command: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        cmd
    }

    /// A file path of this test's own (no two tests share one).
    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("corosync-eip-child-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn outcomes() {
        let t = Duration::from_secs(5);
        assert_eq!(run(sh("true"), t).await, Outcome::Success);
        assert!(matches!(run(sh("exit 3"), t).await, Outcome::Failed(s) if s.contains('3')));
        assert!(matches!(run(tokio::process::Command::new("/nonexistent/x"), t).await, Outcome::Error(e) if e.contains("cannot start")));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_pipeline_not_only_the_shell() {
        let pids = scratch("pids");
        // A grandchild in the background and a pipeline: both outlive a killed shell.
        let command = format!("sleep 300 & echo $! > {p}; sleep 301 | cat; wait", p = pids.display());
        let outcome = run(sh(&command), Duration::from_millis(300)).await;
        assert_eq!(outcome, Outcome::TimedOut(Duration::from_millis(300)));
        let grandchild: u32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
        let _ = std::fs::remove_file(&pids);
        let mut gone = false;
        for _ in 0..200 {
            if !lab::pid_alive(grandchild) {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(gone, "the background grandchild {grandchild} survived the timeout");
        assert!(!RUNNING.lock().unwrap().contains(&i32::try_from(grandchild).unwrap()));
    }

    #[tokio::test]
    async fn private_environment_is_not_inherited() {
        let out = scratch("env");
        // systemd's notify socket: a hook must not send READY or STOPPING on our behalf.
        std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify");
        let outcome = run(sh(&format!("env > {}", out.display())), Duration::from_secs(5)).await;
        std::env::remove_var("NOTIFY_SOCKET");
        assert_eq!(outcome, Outcome::Success);
        let env = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert!(!env.contains("NOTIFY_SOCKET"), "{env}");
        assert!(env.contains("PATH="), "the rest of the environment stays: {env}");
    }
}
