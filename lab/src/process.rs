//! Commands, child processes and polling: what every other module builds on.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;

use crate::{Lab, Signal};

// ---------------------------------------------------------------------------------------------
// small process helpers

pub(crate) fn cmd_str(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command, fails with its stderr unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning `{}`", cmd_str(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}{}",
            cmd_str(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// Runs a command, ignoring failure (cleanup).
pub(crate) fn quiet(prog: &str, args: &[&str]) {
    let _ = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(crate) fn append_log(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let g = f.try_clone()?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

pub(crate) fn send_signal(child: &Child, sig: Signal) -> Result<()> {
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), sig)
        .with_context(|| format!("kill({}, {sig})", child.id()))
}

pub(crate) fn kill_and_reap(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        if let Ok(None) = c.try_wait() {
            let _ = send_signal(&c, Signal::SIGKILL);
        }
        let _ = c.wait();
    }
}

pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `f` every 50 ms until it yields `Some`, or fails after `timeout` naming `what` and the
/// last error `f` returned.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last_err: Option<anyhow::Error> = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() >= timeout {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` exists and is not a zombie (works without reaping, so from `&self`).
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the first field after the parenthesised comm
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(|st| st != "Z" && st != "X")
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits (≤ 2 s) until `pid` is no longer nsenter, i.e. it has exec'd the command (or exited),
/// so that signals sent to it reach the command itself.
pub fn wait_exec(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(p) if p.file_name().is_some_and(|n| n == "nsenter") => {}
            _ => return,
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Wall-clock time as unix seconds: the request log's and the daemons' time base.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Lab {
    /// `wait_for` as a method, so scenarios read `lab.wait_for(...)`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        wait_for(what, timeout, f)
    }
}
