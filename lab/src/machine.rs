//! Facts about the machine and the software a benchmark ran on, collected once per run and
//! written next to its results: timings only mean something together with the CPU, the load
//! and the versions they were measured with.
//!
//! Every fact is best-effort: a command that is missing or fails yields an empty string, so a
//! benchmark never fails for want of a version string. The record the benchmarks write beside
//! their results (`bench::Machine`) copies the facts it reports from here.
//!
//! Self-contained (std, serde_json, anyhow): nothing here knows the lab; what must run inside a
//! node is passed in as a closure.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Facts every benchmark reports.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// When the facts were collected, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// `nproc`: a 2-CPU machine shares them with corosync, the emulator and the poller.
    pub nproc: String,
    /// The first `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// `uname -sr`.
    pub kernel: String,
    /// The first line of `corosync -v`.
    pub corosync: String,
    /// The moto version of the lab's venv (the EC2 emulator).
    pub moto: String,
    /// Short hash of the repository's HEAD.
    pub commit: String,
    /// src/, Cargo.toml or Cargo.lock differ from HEAD: the measured daemon is not `commit`.
    pub sources_modified: bool,
    /// /proc/loadavg (1, 5, 15 min) when the facts were collected.
    pub load_at_start: String,
}

impl Facts {
    /// Collects the facts; `repo` is the corosync-eip checkout, `python` the venv's
    /// interpreter that runs the emulator.
    pub fn collect(repo: &Path, python: &Path) -> Facts {
        let git = |args: &str| sh(&format!("git -C '{}' {args}", repo.display()));
        Facts {
            date: sh("date -u '+%Y-%m-%d %H:%M UTC'"),
            nproc: sh("nproc"),
            cpu: sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"),
            kernel: sh("uname -sr"),
            corosync: sh("corosync -v | head -1"),
            moto: sh(&format!("'{}' -c 'import moto; print(moto.__version__)'", python.display())),
            commit: git("rev-parse --short HEAD"),
            sources_modified: !git("status --porcelain -- src Cargo.toml Cargo.lock").is_empty(),
            load_at_start: load_average(),
        }
    }

    /// `commit`, marked when the sources differ from it.
    pub fn commit_marked(&self) -> String {
        if self.sources_modified {
            format!("{} (src modified)", self.commit)
        } else {
            self.commit.clone()
        }
    }
}

/// Versions of the Pacemaker stack a comparison runs against (Debian packages).
#[derive(Clone, Debug, Default)]
pub struct PacemakerStack {
    /// The `pacemaker` package version.
    pub pacemaker: String,
    /// The `resource-agents` package version (it ships `ocf:heartbeat:awseip`).
    pub resource_agents: String,
    /// `aws --version` of /usr/bin/aws, which the agent runs for every EC2 call.
    pub awscli: String,
}

impl PacemakerStack {
    /// Collects the versions; empty strings where a package is not installed.
    pub fn collect() -> PacemakerStack {
        PacemakerStack {
            pacemaker: sh("dpkg-query -W -f='${Version}' pacemaker"),
            resource_agents: sh("dpkg-query -W -f='${Version}' resource-agents"),
            awscli: sh("/usr/bin/aws --version 2>&1 | cut -d' ' -f1"),
        }
    }
}

/// The totem timing corosync actually runs with (after token_coefficient and friends), which
/// can differ from corosync.conf; it bounds every failure detection a benchmark measures.
#[derive(Clone, Debug, Default)]
pub struct Totem {
    /// `runtime.config.totem.token`, ms.
    pub token_ms: String,
    /// `runtime.config.totem.consensus`, ms.
    pub consensus_ms: String,
}

impl Totem {
    /// Reads the runtime values with `corosync-cmapctl -g`; `exec` runs an argv where corosync
    /// runs (e.g. inside a lab node). A key that cannot be read stays empty.
    pub fn read(exec: impl Fn(&[&str]) -> anyhow::Result<Output>) -> Totem {
        let get = |key: &str| -> String {
            exec(&["/usr/sbin/corosync-cmapctl", "-g", key])
                .ok()
                .filter(|o| o.status.success())
                .map(|o| cmap_value(&String::from_utf8_lossy(&o.stdout)))
                .unwrap_or_default()
        };
        Totem {
            token_ms: get("runtime.config.totem.token"),
            consensus_ms: get("runtime.config.totem.consensus"),
        }
    }
}

/// The value of a `corosync-cmapctl -g` answer (`key (u32) = 1000`).
fn cmap_value(answer: &str) -> String {
    answer.rsplit('=').next().unwrap_or("").trim().to_string()
}

/// /proc/loadavg's 1, 5 and 15 minute averages: benchmarks record it before and after, since
/// a busy 2-CPU machine stretches every timing.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Trimmed stdout of `sh -c cmd`; empty when the command cannot run or prints nothing. For
/// best-effort commands whose failure a benchmark tolerates (facts, chown of lab files).
pub fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

