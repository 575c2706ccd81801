//! Multi-node test lab for corosync-eip.
//!
//! One lab = one Linux bridge (no IP address, no default route anywhere) + N node namespaces
//! (network namespace + persistent mount namespace with their own /etc/corosync,
//! /var/lib/corosync, /var/log/corosync, /etc/corosync-eip, /var/lib/corosync-eip, tmpfs /run
//! and /dev/shm; the node's only interface is `eth0`) + one emulator network namespace running
//! moto (patched, see `tests/lab/ec2_emulator.py`) on `10.213.<subnet>.250:5000`. Every node
//! runs its own corosync (knet) and an IMDSv2 responder on 127.0.0.1:1338. See
//! /work/shared/design/lab.md for the measured facts behind this.
//!
//! EC2 seed: one VPC (10.0.0.0/16), one instance per node (primary ENI), `eips` EIPs and
//! `route_tables` route tables (no routes but the local one). Source/destination check is turned
//! off on every node's ENI after seeding (as admins do for route-table VIPs) except on the
//! nodes listed in `LabSpec::source_dest_check_on`.
//!
//! Every kernel object is named `ce<name>-...` so labs with different names and subnets can run
//! in parallel. A lab holds an exclusive lock on `/run/corosync-eip-lab/<name>.lock` while it
//! lives: a second lab with the same name (another test, another checkout) waits for it instead
//! of tearing it down. `Lab::start` then removes leftovers of a crashed lab with the same name;
//! `Drop` kills every process the lab started and tears everything down.
//!
//! Needs root, the packages of `scripts/setup.sh` and the venv at `<repo>/.venv`. A crate of
//! its own (a dev-dependency of corosync-eip) so that the integration tests and the examples
//! share one compiled copy and one set of waits and assertions. It knows the daemon only from
//! the outside (its binary, its `status --json` schema), except for [`cpgsim`], which drives
//! the daemon's pure core.
//!
//! Modules: [`process`] (commands, waits), [`setup`] (namespaces, bridge, lock, teardown),
//! [`node`] (per-node access, IMDS), [`daemon`], [`corosync`], [`net`] (partitions, EC2
//! outages), [`ec2`] (moto, seed, EC2 view, request log, IAM), [`asserts`] (the waits and
//! checks the scenarios share), [`cpgsim`] (a simulated CPG for the pure-core tests), [`bench`]
//! (what the benchmark drivers share: records, polls, the corosync-eip and Pacemaker runners).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

/// Waits and checks the scenarios share.
pub mod asserts;
/// What the benchmark drivers share: records, polls, the corosync-eip and Pacemaker runners.
pub mod bench;
/// Each node's corosync.
pub mod corosync;
/// A simulated CPG for the pure-core tests.
pub mod cpgsim;
/// The daemon on each node.
pub mod daemon;
/// The EC2 emulator and the lab's view of EC2.
pub mod ec2;
/// Facts about the machine a benchmark ran on.
pub mod machine;
/// Partitions and EC2 outages.
pub mod net;
/// Per-node access and IMDS.
pub mod node;
/// Commands, child processes, polling.
pub mod process;
/// Building and tearing down a lab.
pub mod setup;
/// Nodes that boot systemd (`LabSpec::systemd`).
pub mod systemd;
/// Times and summaries for the benchmarks.
pub mod timing;

pub use asserts::{tail, Call, Ec2Proof, Settle, Units};
pub use corosync_eip::status::StatusReport;
pub use ec2::{
    full_policy, no_associate_policy, Ec2Request, EipState, RouteState, Seed, SeededAllocation,
    SeededInstance,
};
pub use nix::sys::signal::Signal;
pub use process::{pid_alive, unix_now, wait_exec, wait_for};

/// Port of the per-node IMDS responder (inside each node's netns, on 127.0.0.1).
pub const IMDS_PORT: u16 = 1338;
/// Port of the EC2 emulator (on 10.213.<subnet>.250).
pub const EMULATOR_PORT: u16 = 5000;
/// Path of the daemon's config file inside a node.
pub const DAEMON_CONFIG: &str = "/etc/corosync-eip/corosync-eip.toml";
/// The daemon's state directory inside a node (a per-node dir, see `Lab::state_dir`).
pub const STATE_DIR: &str = "/var/lib/corosync-eip";
/// The network interface of every node (inside its namespace).
pub const NODE_INTERFACE: &str = "eth0";
/// Where labs take their per-name lock (host side).
pub const LOCK_DIR: &str = "/run/corosync-eip-lab";
/// How long `Lab::start` waits for another lab of the same name to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
/// Runtime override of the daemon binary every `LabSpec::new` uses (same name as the
/// compile-time variable cargo gives integration tests, so a wrapper can pin a build).
pub const DAEMON_BIN_ENV: &str = "CARGO_BIN_EXE_corosync-eip";

/// Root of the repository: the lab's scripts, the venv and the `.lab` work dirs live there.
pub fn repo_root() -> PathBuf {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab.parent().unwrap_or(lab).to_path_buf()
}

/// The venv's python (created by scripts/setup.sh): moto, the IMDS responder and the seed
/// script need packages the system python does not have.
pub fn venv_python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// The lab's helper scripts (emulator, IMDS, seed, IAM, fault proxy), kept beside the tests
/// that document them.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("tests/lab").join(name)
}

/// The daemon binary of the build running this code: `$CARGO_BIN_EXE_corosync-eip` if set at
/// run time, else the `corosync-eip` beside the running test or example (cargo puts those in
/// `<target>/<profile>/deps` and `<target>/<profile>/examples`, the daemon in
/// `<target>/<profile>`), else `<repo>/target/debug/corosync-eip`. Looking beside the running
/// executable keeps a shared or custom `CARGO_TARGET_DIR` and `--release` builds right.
pub fn default_daemon_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(DAEMON_BIN_ENV) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| daemon_beside(&exe))
        .unwrap_or_else(|| repo_root().join("target/debug/corosync-eip"))
}

/// `<target>/<profile>/corosync-eip` for an executable in `<target>/<profile>/deps` or
/// `<target>/<profile>/examples`; None for any other layout.
fn daemon_beside(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let kind = dir.file_name()?;
    if kind != "deps" && kind != "examples" {
        return None;
    }
    Some(dir.parent()?.join("corosync-eip"))
}

/// What a lab is made of; `LabSpec::new` gives the defaults most scenarios want.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// ≤ 5 chars, [a-z0-9]: prefix of every netns/link (`ce<name>-...`).
    pub name: String,
    /// The lab uses 10.213.<subnet>.0/24: nodes .1.., emulator .250.
    pub subnet: u8,
    pub nodes: usize,
    pub eips: usize,
    /// Route tables created in the lab VPC (tag `Name=lab-rtb-<k>`, k from 0). Default 0.
    pub route_tables: usize,
    /// Nodes whose ENI keeps source/destination check ON (AWS's default); it is turned off on
    /// every other node's ENI after seeding. Default empty.
    pub source_dest_check_on: Vec<usize>,
    /// corosync totem token (ms); token_coefficient is 0 so this is the runtime token.
    pub token_ms: u32,
    pub daemon_bin: PathBuf,
    /// Logs, configs, per-node dirs. Wiped at start.
    pub work_dir: PathBuf,
    /// Every node is a container booting systemd, with corosync and corosync-eip as its
    /// services (see [`systemd`]); the daemon is then started with `systemctl`, not
    /// `Lab::start_daemon`. Default false.
    pub systemd: bool,
}

impl LabSpec {
    /// Defaults: 1 EIP, no route table, source/dest check off everywhere, token 1000 ms,
    /// daemon = `default_daemon_bin()`, work_dir = `<repo>/.lab/<name>`.
    pub fn new(name: &str, subnet: u8, nodes: usize) -> LabSpec {
        LabSpec {
            name: name.to_string(),
            subnet,
            nodes,
            eips: 1,
            route_tables: 0,
            source_dest_check_on: Vec::new(),
            token_ms: 1000,
            daemon_bin: default_daemon_bin(),
            work_dir: repo_root().join(".lab").join(name),
            systemd: false,
        }
    }
}

/// One node's kernel objects, directories and the processes the lab runs in it.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) host_veth: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) dir: PathBuf,
    pub(crate) mnt: PathBuf,
    pub(crate) corosync: Option<Child>,
    pub(crate) imds: Option<Child>,
    pub(crate) daemon: Option<Child>,
    pub(crate) daemon_exit: Option<ExitStatus>,
    /// The node's systemd container, in a `LabSpec::systemd` lab.
    pub(crate) container: Option<systemd::Container>,
}

/// A running lab: owns every process and kernel object it created and removes them on drop,
/// so a failing test cannot leave a cluster behind.
pub struct Lab {
    pub(crate) spec: LabSpec,
    pub(crate) prefix: String,
    pub(crate) bridge: String,
    pub(crate) emu_netns: String,
    pub(crate) emu_veth: String,
    pub(crate) ns_dir: PathBuf,
    pub(crate) nodes: Vec<Node>,
    pub(crate) emulator: Option<Child>,
    pub(crate) seed: Option<Seed>,
    pub(crate) ec2: Option<ec2::Ec2Worker>,
    pub(crate) forward_rule: bool,
    /// Extra environment for one node's daemon (e.g. other credentials), set by tests.
    pub(crate) daemon_env: BTreeMap<usize, Vec<(String, String)>>,
    /// Held for the lab's lifetime; dropped last (after teardown).
    pub(crate) _lock: nix::fcntl::Flock<File>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_is_found_beside_tests_and_examples() {
        assert_eq!(
            daemon_beside(Path::new("/t/debug/deps/cluster-0123")),
            Some(PathBuf::from("/t/debug/corosync-eip"))
        );
        assert_eq!(
            daemon_beside(Path::new("/t/x86_64-unknown-linux-gnu/release/examples/demo")),
            Some(PathBuf::from("/t/x86_64-unknown-linux-gnu/release/corosync-eip"))
        );
        assert_eq!(daemon_beside(Path::new("/usr/bin/demo")), None);
    }
}
