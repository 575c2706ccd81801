//! Multi-node test lab for corosync-eip.
//!
//! One lab = one Linux bridge (no IP address, no default route anywhere) + N node namespaces
//! (network namespace + persistent mount namespace with their own /etc/corosync,
//! /var/lib/corosync, /var/log/corosync, /etc/corosync-eip, /var/lib/corosync-eip, tmpfs /run
//! and /dev/shm; the node's only interface is `eth0`) + one emulator network namespace running
//! moto (patched, see `ec2_emulator.py`) on `10.213.<subnet>.250:5000`. Every node runs its own
//! corosync (knet) and an IMDSv2 responder on 127.0.0.1:1338. See /work/shared/design/lab.md for
//! the measured facts behind this.
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
//! Needs root, the packages of `scripts/setup.sh` and the venv at `<repo>/.venv`.
//! Only std + crates of Cargo.toml: used from tests/*.rs (`mod lab;`) and from examples via
//! `#[path = "../tests/lab/mod.rs"] mod lab;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;
use serde::Deserialize;

pub use nix::sys::signal::Signal;

pub mod machine;

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

/// Root of the repository (the crate's manifest dir).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python (created by scripts/setup.sh).
pub fn venv_python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// The daemon binary built by cargo for integration tests, else `<repo>/target/debug/corosync-eip`.
pub fn default_daemon_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_corosync-eip") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/debug/corosync-eip"),
    }
}

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
}

impl LabSpec {
    /// Defaults: 1 EIP, no route table, source/dest check off everywhere, token 1000 ms,
    /// daemon = cargo's corosync-eip binary, work_dir = `<repo>/.lab/<name>`.
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
        }
    }
}

/// One EIP as DescribeAddresses reports it (empty strings normalised to None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EipState {
    pub allocation_id: String,
    pub public_ip: Option<String>,
    pub association_id: Option<String>,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub private_ip: Option<String>,
}

/// One line of the emulator's request log.
#[derive(Clone, Debug, Deserialize)]
pub struct Ec2Request {
    /// Arrival time, unix seconds.
    pub t: f64,
    /// Client IP (a node's IP for the daemons).
    pub source: String,
    pub action: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub status: Option<u16>,
    #[serde(default)]
    pub duration_ms: Option<f64>,
}

impl Ec2Request {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(|v| v.as_str())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct SeededInstance {
    pub instance_id: String,
    pub eni: String,
    pub private_ip: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub az: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SeededAllocation {
    pub allocation_id: String,
    pub public_ip: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Seed {
    pub vpc_id: String,
    pub subnet_id: String,
    pub instances: Vec<SeededInstance>,
    pub allocations: Vec<SeededAllocation>,
    #[serde(default)]
    pub route_tables: Vec<String>,
}

/// One route of a lab route table as DescribeRouteTables reports it (empty strings → None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub route_table_id: String,
    /// DestinationCidrBlock (or the IPv6 block / prefix list id when that is what it has).
    pub destination: String,
    pub network_interface_id: Option<String>,
    pub instance_id: Option<String>,
    /// GatewayId ("local" for the VPC's own route), NAT gateway, transit gateway, ...
    pub other_target: Option<String>,
    /// "active" or "blackhole".
    pub state: Option<String>,
}

impl RouteState {
    /// The ENI, else the instance, else whatever other target the route has.
    pub fn target(&self) -> Option<&str> {
        self.network_interface_id
            .as_deref()
            .or(self.instance_id.as_deref())
            .or(self.other_target.as_deref())
    }
}

/// "172.31.255.10" → "172.31.255.10/32"; a CIDR is returned unchanged.
fn as_cidr(dest: &str) -> String {
    if dest.contains('/') {
        dest.to_string()
    } else {
        format!("{dest}/32")
    }
}

struct Node {
    name: String,
    netns: String,
    host_veth: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    mnt: PathBuf,
    corosync: Option<Child>,
    imds: Option<Child>,
    daemon: Option<Child>,
    daemon_exit: Option<ExitStatus>,
}

type Ec2Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &aws_sdk_ec2::Client) + Send>;

struct Ec2Worker {
    tx: Option<mpsc::Sender<Ec2Job>>,
    handle: Option<thread::JoinHandle<()>>,
}

pub struct Lab {
    spec: LabSpec,
    prefix: String,
    bridge: String,
    emu_netns: String,
    emu_veth: String,
    ns_dir: PathBuf,
    nodes: Vec<Node>,
    emulator: Option<Child>,
    seed: Option<Seed>,
    ec2: Option<Ec2Worker>,
    forward_rule: bool,
    /// Extra environment for one node's daemon (e.g. other credentials), set by tests.
    daemon_env: BTreeMap<usize, Vec<(String, String)>>,
    /// Held for the lab's lifetime; dropped last (after teardown).
    _lock: nix::fcntl::Flock<File>,
}

// ---------------------------------------------------------------------------------------------
// small process helpers

fn cmd_str(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command, fails with its stderr unless it exits 0.
fn run(cmd: &mut Command) -> Result<Output> {
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

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// Runs a command, ignoring failure (cleanup).
fn quiet(prog: &str, args: &[&str]) {
    let _ = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn append_log(path: &Path) -> Result<(Stdio, Stdio)> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let g = f.try_clone()?;
    Ok((Stdio::from(f), Stdio::from(g)))
}

fn send_signal(child: &Child, sig: Signal) -> Result<()> {
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), sig)
        .with_context(|| format!("kill({}, {sig})", child.id()))
}

fn kill_and_reap(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        if let Ok(None) = c.try_wait() {
            let _ = send_signal(&c, Signal::SIGKILL);
        }
        let _ = c.wait();
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
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

fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let d = dir.to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == d || mp.starts_with(&format!("{d}/")))
        .map(PathBuf::from)
        .collect();
    // deepest first
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v
}

fn links_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return vec![];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return vec![];
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Removes everything a lab with this prefix may have left behind: processes in its
/// namespaces, mount namespaces under `ns_dir`, namespaces, links. Waits for the links to go.
fn teardown(prefix: &str, bridge: &str, ns_dir: &Path) {
    for ns in netns_with_prefix(prefix) {
        // processes still living in the namespace (leftovers of a crashed run)
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
    for mp in mount_points_under(ns_dir) {
        let s = mp.to_string_lossy().into_owned();
        quiet("umount", &[&s]);
        if mount_points_under(&mp).contains(&mp) {
            quiet("umount", &["-l", &s]);
        }
    }
    for ns in netns_with_prefix(prefix) {
        quiet("ip", &["netns", "del", &ns]);
    }
    quiet("ip", &["link", "del", bridge]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let links = links_with_prefix(prefix);
        if links.is_empty() || Instant::now() >= deadline {
            if !links.is_empty() {
                eprintln!("lab teardown: links {links:?} still there after 15 s, deleting them");
            }
            for l in links {
                quiet("ip", &["link", "del", &l]);
            }
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    // a netns that refused deletion (busy) would leave a file behind
    for ns in netns_with_prefix(prefix) {
        quiet("ip", &["netns", "del", &ns]);
    }
}

/// Takes the exclusive per-name lab lock, waiting up to `LOCK_WAIT` while another process (a
/// test in another checkout, a CI run) holds it.
fn lock_lab(name: &str) -> Result<nix::fcntl::Flock<File>> {
    use nix::fcntl::{Flock, FlockArg};
    fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    let path = Path::new(LOCK_DIR).join(format!("{name}.lock"));
    let start = Instant::now();
    let mut announced = false;
    loop {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                // informative only: who holds it
                let _ = lock.set_len(0);
                let _ = writeln!(
                    *lock,
                    "pid {} {}",
                    std::process::id(),
                    std::env::current_exe().unwrap_or_default().display()
                );
                return Ok(lock);
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if start.elapsed() >= LOCK_WAIT {
                    bail!(
                        "lab {name} is still in use by another process after {LOCK_WAIT:?} ({}: {})",
                        path.display(),
                        fs::read_to_string(&path).unwrap_or_default().trim()
                    );
                }
                if !announced {
                    eprintln!(
                        "lab {name}: in use by another process ({}), waiting",
                        fs::read_to_string(&path).unwrap_or_default().trim()
                    );
                    announced = true;
                }
                thread::sleep(Duration::from_millis(200));
            }
            Err((_, e)) => return Err(anyhow!("flock {}: {e}", path.display())),
        }
    }
}

// ---------------------------------------------------------------------------------------------

impl Lab {
    pub fn start(spec: LabSpec) -> Result<Lab> {
        if spec.name.is_empty()
            || spec.name.len() > 5
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            bail!("lab name {:?} must be 1-5 chars of [a-z0-9]", spec.name);
        }
        if spec.nodes == 0 || spec.nodes > 200 {
            bail!("lab needs 1..=200 nodes, got {}", spec.nodes);
        }
        if let Some(&i) = spec.source_dest_check_on.iter().find(|&&i| i >= spec.nodes) {
            bail!(
                "source_dest_check_on lists node {i} but the lab has {} nodes",
                spec.nodes
            );
        }
        if !nix::unistd::Uid::effective().is_root() {
            bail!("the lab needs root (network and mount namespaces)");
        }
        let py = venv_python();
        if !py.exists() {
            bail!("{} is missing: run scripts/setup.sh first", py.display());
        }
        let lock = lock_lab(&spec.name)?;
        let prefix = format!("ce{}-", spec.name);
        let bridge = format!("{prefix}br");
        let ns_dir = spec.work_dir.join("ns");
        let nodes = (0..spec.nodes)
            .map(|i| {
                let name = format!("node{i}");
                let netns = format!("{prefix}n{i}");
                Node {
                    host_veth: format!("{prefix}v{i}"),
                    ip: Ipv4Addr::new(10, 213, spec.subnet, (i + 1) as u8),
                    dir: spec.work_dir.join(&name),
                    mnt: ns_dir.join(format!("{netns}.mnt")),
                    name,
                    netns,
                    corosync: None,
                    imds: None,
                    daemon: None,
                    daemon_exit: None,
                }
            })
            .collect();
        let mut lab = Lab {
            emu_netns: format!("{prefix}emu"),
            emu_veth: format!("{prefix}ve"),
            prefix,
            bridge,
            ns_dir,
            nodes,
            emulator: None,
            seed: None,
            ec2: None,
            forward_rule: false,
            daemon_env: BTreeMap::new(),
            _lock: lock,
            spec,
        };
        let t0 = Instant::now();
        // On error `lab` is dropped here, which tears down whatever was built.
        lab.setup().with_context(|| {
            format!(
                "starting lab {} (logs in {})",
                lab.spec.name,
                lab.spec.work_dir.display()
            )
        })?;
        eprintln!(
            "lab {}: {} nodes quorate, emulator {} ready in {:.2?}",
            lab.spec.name,
            lab.spec.nodes,
            lab.emulator_url(),
            t0.elapsed()
        );
        Ok(lab)
    }

    fn setup(&mut self) -> Result<()> {
        teardown(&self.prefix, &self.bridge, &self.ns_dir);
        if self.spec.work_dir.exists() {
            fs::remove_dir_all(&self.spec.work_dir)
                .with_context(|| format!("removing {}", self.spec.work_dir.display()))?;
        }
        fs::create_dir_all(&self.ns_dir)?;
        self.setup_network()?;
        self.start_emulator()?;
        self.setup_nodes()?;
        for i in 0..self.nodes.len() {
            self.start_corosync(i)?;
        }
        self.seed()?;
        self.start_ec2_worker()?;
        // warm-up: moto's first call is slow, and our own client's first connection too
        self.describe_addresses()
            .context("warming up the emulator")?;
        for i in 0..self.nodes.len() {
            if !self.spec.source_dest_check_on.contains(&i) {
                self.set_source_dest_check(i, false)
                    .with_context(|| format!("turning source/dest check off on node {i}"))?;
            }
        }
        for i in 0..self.nodes.len() {
            self.start_imds(i)?;
        }
        for i in 0..self.nodes.len() {
            self.wait_imds(i)?;
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_quorate(&all, all.len(), Duration::from_secs(30))?;
        Ok(())
    }

    fn setup_network(&mut self) -> Result<()> {
        let br = self.bridge.clone();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["link", "set", &br, "up"])?;
        // bridged traffic may traverse the host's FORWARD chain (br_netfilter): let ours through
        if let Ok(out) = Command::new("iptables").args(["-S", "FORWARD"]).output() {
            let s = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && !s.contains("-P FORWARD ACCEPT") {
                run(Command::new("iptables")
                    .args(["-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"]))?;
                self.forward_rule = true;
            }
        }
        let mut ends: Vec<(String, String, Ipv4Addr)> = self
            .nodes
            .iter()
            .map(|n| (n.netns.clone(), n.host_veth.clone(), n.ip))
            .collect();
        ends.push((
            self.emu_netns.clone(),
            self.emu_veth.clone(),
            self.emulator_ip(),
        ));
        for (ns, veth, addr) in ends {
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &br, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn setup_nodes(&mut self) -> Result<()> {
        // the ns dir must be a private mount for `unshare --mount=FILE`
        let d = self.ns_dir.to_string_lossy().into_owned();
        run(Command::new("mount").args(["--bind", &d, &d]))?;
        run(Command::new("mount").args(["--make-private", &d]))?;
        // mount points inside the nodes (the host's dirs are only covered, never written)
        for p in [
            "/etc/corosync",
            "/var/lib/corosync",
            "/var/log/corosync",
            "/etc/corosync-eip",
            STATE_DIR,
        ] {
            fs::create_dir_all(p).with_context(|| format!("creating mount point {p}"))?;
        }
        let conf = self.corosync_conf();
        for n in &self.nodes {
            let sub = |s: &str| n.dir.join(s);
            for s in [
                "etc-corosync",
                "var-lib-corosync",
                "var-log-corosync",
                "etc-corosync-eip",
                "var-lib-corosync-eip",
            ] {
                fs::create_dir_all(sub(s))?;
            }
            fs::write(sub("etc-corosync").join("corosync.conf"), &conf)?;
            File::create(&n.mnt)?;
            let script = format!(
                "set -e; mount -t sysfs sysfs /sys; \
                 mount --bind {ec} /etc/corosync; mount --bind {vl} /var/lib/corosync; \
                 mount --bind {lg} /var/log/corosync; mount --bind {ee} /etc/corosync-eip; \
                 mount --bind {st} {STATE_DIR}; \
                 mount -t tmpfs -o mode=0755 tmpfs /run; mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
                ec = sub("etc-corosync").display(),
                vl = sub("var-lib-corosync").display(),
                lg = sub("var-log-corosync").display(),
                ee = sub("etc-corosync-eip").display(),
                st = sub("var-lib-corosync-eip").display(),
            );
            run(Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", n.netns))
                .arg("--")
                .arg("unshare")
                .arg(format!("--mount={}", n.mnt.display()))
                .args(["--propagation", "private", "--", "sh", "-c", &script]))?;
        }
        Ok(())
    }

    fn corosync_conf(&self) -> String {
        let mut s = String::new();
        s += "# generated by tests/lab/mod.rs\n";
        s += "totem {\n    version: 2\n";
        s += &format!("    cluster_name: ce{}\n", self.spec.name);
        s += "    transport: knet\n    crypto_cipher: none\n    crypto_hash: none\n";
        s += &format!(
            "    token: {}\n    token_coefficient: 0\n}}\n\n",
            self.spec.token_ms
        );
        s += "nodelist {\n";
        for (i, n) in self.nodes.iter().enumerate() {
            s += &format!(
                "    node {{\n        ring0_addr: {}\n        name: {}\n        nodeid: {}\n    }}\n",
                n.ip,
                n.name,
                i + 1
            );
        }
        s += "}\n\nquorum {\n    provider: corosync_votequorum\n";
        if self.nodes.len() == 2 {
            s += "    two_node: 1\n";
        }
        s += "}\n\nlogging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n";
        s += "    to_stderr: no\n    to_syslog: no\n    timestamp: hires\n}\n";
        s
    }

    fn start_emulator(&mut self) -> Result<()> {
        let dir = &self.spec.work_dir;
        let (o, e) = append_log(&dir.join("emulator.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.emu_netns))
            .arg("--")
            .arg(venv_python())
            .arg(repo_root().join("tests/lab/ec2_emulator.py"))
            .args(["--host", &self.emulator_ip().to_string()])
            .args(["--port", &EMULATOR_PORT.to_string()])
            .arg("--request-log")
            .arg(self.request_log_path())
            .arg("--ready-file")
            .arg(dir.join("emulator.ready"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .context("spawning the EC2 emulator")?;
        self.emulator = Some(child);
        Ok(())
    }

    fn wait_emulator(&mut self) -> Result<()> {
        let ready = self.spec.work_dir.join("emulator.ready");
        let log = self.spec.work_dir.join("emulator.log");
        let start = Instant::now();
        while !ready.exists() {
            if let Some(st) = self.emulator.as_mut().unwrap().try_wait()? {
                bail!(
                    "EC2 emulator exited ({st}): {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("EC2 emulator not ready after 60 s, see {}", log.display());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn seed(&mut self) -> Result<()> {
        self.wait_emulator()?;
        let out = run(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.emu_netns))
            .arg("--")
            .arg(venv_python())
            .arg(repo_root().join("tests/lab/seed_ec2.py"))
            .args(["--endpoint", &self.emulator_url()])
            .args(["--nodes", &self.nodes.len().to_string()])
            .args(["--eips", &self.spec.eips.to_string()])
            .args(["--route-tables", &self.spec.route_tables.to_string()]))
        .context("seeding the EC2 emulator")?;
        fs::write(self.spec.work_dir.join("seed.json"), &out.stdout)?;
        let seed: Seed =
            serde_json::from_slice(&out.stdout).context("parsing seed_ec2.py output")?;
        if seed.instances.len() != self.nodes.len()
            || seed.allocations.len() != self.spec.eips
            || seed.route_tables.len() != self.spec.route_tables
        {
            bail!(
                "seed_ec2.py returned {} instances / {} EIPs / {} route tables",
                seed.instances.len(),
                seed.allocations.len(),
                seed.route_tables.len()
            );
        }
        self.seed = Some(seed);
        Ok(())
    }

    fn start_imds(&mut self, i: usize) -> Result<()> {
        let inst = self.seed.as_ref().unwrap().instances[i].clone();
        let n = &self.nodes[i];
        let (o, e) = append_log(&n.dir.join("imds.log"))?;
        let mut cmd = self.node_command(i, &[]);
        cmd.arg(venv_python())
            .arg(repo_root().join("tests/lab/imds.py"))
            .args(["--host", "127.0.0.1", "--port", &IMDS_PORT.to_string()])
            .args(["--instance-id", &inst.instance_id, "--eni", &inst.eni])
            .args(["--region", "us-east-1"])
            .args([
                "--az",
                if inst.az.is_empty() {
                    "us-east-1a"
                } else {
                    &inst.az
                },
            ])
            .args(["--private-ip", &inst.private_ip]);
        if !inst.mac.is_empty() {
            cmd.args(["--mac", &inst.mac]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .context("spawning imds.py")?;
        self.nodes[i].imds = Some(child);
        Ok(())
    }

    fn wait_imds(&mut self, i: usize) -> Result<()> {
        let log = self.nodes[i].dir.join("imds.log");
        let start = Instant::now();
        loop {
            if fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("imds: serving")
            {
                return Ok(());
            }
            if let Some(st) = self.nodes[i].imds.as_mut().unwrap().try_wait()? {
                bail!(
                    "imds.py of node {i} exited ({st}): {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "imds.py of node {i} not ready after 20 s, see {}",
                    log.display()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_ec2_worker(&mut self) -> Result<()> {
        // tokio's IO driver (with the crate's "signal"/"process" features) lazily creates a
        // process-global unix socketpair the first time any runtime is built. If that happened
        // on our worker thread, the socket would live in the emulator's netns and pin it (and
        // its veth) until the process exits. Make sure it is created here, in the caller's
        // netns, on a plain thread (dropping a runtime inside an async context would panic).
        thread::spawn(|| {
            let _ = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build();
        })
        .join()
        .map_err(|_| anyhow!("tokio warm-up thread panicked"))?;
        let (tx, rx) = mpsc::channel::<Ec2Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let netns = format!("/run/netns/{}", self.emu_netns);
        let url = self.emulator_url();
        let handle = thread::Builder::new()
            .name("lab-ec2".into())
            .spawn(move || {
                let init = (|| -> Result<(tokio::runtime::Runtime, aws_sdk_ec2::Client)> {
                    let f = File::open(&netns).with_context(|| format!("opening {netns}"))?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("setns({netns})"))?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build()?;
                    let conf = aws_sdk_ec2::Config::builder()
                        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
                        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                            "testing", "testing", None, None, "lab",
                        ))
                        .endpoint_url(url)
                        .timeout_config(
                            aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
                                .operation_timeout(Duration::from_secs(10))
                                .build(),
                        )
                        .build();
                    Ok((rt, aws_sdk_ec2::Client::from_conf(conf)))
                })();
                let (rt, client) = match init {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&rt, &client);
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("lab-ec2 thread died"))?
            .context("starting the lab's EC2 client thread")?;
        self.ec2 = Some(Ec2Worker {
            tx: Some(tx),
            handle: Some(handle),
        });
        Ok(())
    }

    /// Runs `f` with the lab's EC2 client (on a thread inside the emulator's netns) and returns
    /// its result. Use `rt.block_on(client.some_call().send())`.
    pub fn with_ec2<T: Send + 'static>(
        &self,
        f: impl FnOnce(&tokio::runtime::Runtime, &aws_sdk_ec2::Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let w = self
            .ec2
            .as_ref()
            .ok_or_else(|| anyhow!("EC2 client not started"))?;
        let (tx, rx) = mpsc::channel();
        let job: Ec2Job = Box::new(move |rt, c| {
            let _ = tx.send(f(rt, c));
        });
        w.tx.as_ref()
            .unwrap()
            .send(job)
            .map_err(|_| anyhow!("lab-ec2 thread is gone"))?;
        rx.recv()
            .map_err(|_| anyhow!("lab-ec2 thread dropped the job"))?
    }

    // -----------------------------------------------------------------------------------------
    // accessors

    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    /// corosync nodeid of node i (= i + 1).
    pub fn node_id(&self, i: usize) -> u32 {
        (i + 1) as u32
    }
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.nodes[i].ip
    }
    /// Index of the node with this IP (e.g. a request log's source).
    pub fn node_by_ip(&self, ip: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.ip.to_string() == ip)
    }
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }
    pub fn netns(&self, i: usize) -> &str {
        &self.nodes[i].netns
    }
    /// Host-side directory of node i (logs, bind-mounted config dirs).
    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }
    pub fn instance_id(&self, i: usize) -> &str {
        &self.seed.as_ref().unwrap().instances[i].instance_id
    }
    pub fn eni(&self, i: usize) -> &str {
        &self.seed.as_ref().unwrap().instances[i].eni
    }
    pub fn private_ip(&self, i: usize) -> &str {
        &self.seed.as_ref().unwrap().instances[i].private_ip
    }
    /// Index of the node owning this instance id or ENI id.
    pub fn node_of(&self, instance_or_eni: &str) -> Option<usize> {
        self.seed
            .as_ref()?
            .instances
            .iter()
            .position(|s| s.instance_id == instance_or_eni || s.eni == instance_or_eni)
    }
    pub fn seed_info(&self) -> &Seed {
        self.seed.as_ref().unwrap()
    }
    pub fn allocation_ids(&self) -> Vec<String> {
        self.seed
            .as_ref()
            .unwrap()
            .allocations
            .iter()
            .map(|a| a.allocation_id.clone())
            .collect()
    }
    /// The lab's route tables, in seed order (`lab-rtb-0`, `lab-rtb-1`, ...).
    pub fn route_table_ids(&self) -> Vec<String> {
        self.seed.as_ref().unwrap().route_tables.clone()
    }
    /// Host-side directory bind-mounted on `/var/lib/corosync-eip` inside node i.
    pub fn state_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("var-lib-corosync-eip")
    }
    /// Host path of node i's /etc/corosync: a test may put another corosync.conf, an authkey
    /// or uidgid.d snippets there, then `kill_corosync` + `start_corosync`.
    pub fn etc_corosync_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("etc-corosync")
    }
    /// The emulator's network namespace (address `emulator_ip`): room for another lab-wide
    /// service such as corosync-qnetd.
    pub fn emulator_netns(&self) -> &str {
        &self.emu_netns
    }
    pub fn emulator_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.spec.subnet, 250)
    }
    pub fn emulator_url(&self) -> String {
        format!("http://{}:{}", self.emulator_ip(), EMULATOR_PORT)
    }
    pub fn request_log_path(&self) -> PathBuf {
        self.spec.work_dir.join("requests.jsonl")
    }

    /// Environment of the daemon (and of `node_exec`) inside a node.
    pub fn node_env(&self) -> Vec<(String, String)> {
        [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOME", "/root".to_string()),
            ("LANG", "C.UTF-8".to_string()),
            ("AWS_ENDPOINT_URL", self.emulator_url()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://127.0.0.1:{IMDS_PORT}"),
            ),
            ("RUST_LOG", "info,corosync_eip=debug".to_string()),
            ("RUST_BACKTRACE", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `nsenter --net=... --mount=... -- argv`, with a clean environment (`node_env`).
    /// nsenter execs in place (no fork), so the child's pid is the command's pid (call
    /// `wait_exec(pid)` after spawning before signalling it: until then the pid is nsenter).
    pub fn node_command(&self, i: usize, argv: &[&str]) -> Command {
        let n = &self.nodes[i];
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", n.netns))
            .arg(format!("--mount={}", n.mnt.display()))
            .arg("--")
            .args(argv)
            .env_clear()
            .envs(self.node_env());
        cmd
    }

    /// Runs argv (absolute paths: nsenter --mount resets the cwd to /) inside node i and returns
    /// its output whatever its exit status.
    pub fn node_exec(&self, i: usize, argv: &[&str]) -> Result<Output> {
        let mut cmd = self.node_command(i, argv);
        cmd.stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in node {i}"))
    }

    /// IPv4 addresses with prefix length (`10.213.41.1/24`) on `dev` inside node i, from
    /// `ip -o -4 addr show dev DEV`. Fails if the device does not exist.
    pub fn node_addresses(&self, i: usize, dev: &str) -> Result<Vec<String>> {
        let out = self.node_exec(i, &["/usr/sbin/ip", "-o", "-4", "addr", "show", "dev", dev])?;
        if !out.status.success() {
            bail!(
                "`ip -o -4 addr show dev {dev}` in node {i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.find(|&t| t == "inet")?;
                w.next().map(str::to_string)
            })
            .collect())
    }

    /// Whether node i has `address` (bare, or with a prefix length that must then match) on
    /// `dev`.
    pub fn node_has_address(&self, i: usize, dev: &str, address: &str) -> Result<bool> {
        Ok(self.node_addresses(i, dev)?.iter().any(|a| {
            if address.contains('/') {
                a == address
            } else {
                a.split('/').next() == Some(address)
            }
        }))
    }

    /// `ip addr add CIDR dev DEV` inside node i (e.g. a stale VIP left by a crashed daemon).
    pub fn add_node_address(&self, i: usize, dev: &str, cidr: &str) -> Result<()> {
        self.node_ip_addr(i, "add", dev, cidr)
    }

    /// `ip addr del CIDR dev DEV` inside node i.
    pub fn del_node_address(&self, i: usize, dev: &str, cidr: &str) -> Result<()> {
        self.node_ip_addr(i, "del", dev, cidr)
    }

    fn node_ip_addr(&self, i: usize, verb: &str, dev: &str, cidr: &str) -> Result<()> {
        let out = self.node_exec(i, &["/usr/sbin/ip", "addr", verb, cidr, "dev", dev])?;
        if !out.status.success() {
            bail!(
                "`ip addr {verb} {cidr} dev {dev}` in node {i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // daemon

    pub fn default_daemon_config(&self) -> String {
        let mut s = String::from(
            "[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"2s\"\nreattach_grace = \"5s\"\n",
        );
        for (k, a) in self.allocation_ids().iter().enumerate() {
            s += &format!(
                "\n[[eip]]\nname = \"eip{}\"\nallocation_id = \"{a}\"\n",
                k + 1
            );
        }
        s
    }

    /// A `[[vip]]` block (leading blank line, so it can be appended to `default_daemon_config`)
    /// routing `address` through every lab route table, on `eth0`.
    pub fn vip_config(&self, name: &str, address: &str) -> String {
        let tables: Vec<String> = self
            .route_table_ids()
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect();
        format!(
            "\n[[vip]]\nname = \"{name}\"\naddress = \"{address}\"\nroute_tables = [{}]\ninterface = \"{NODE_INTERFACE}\"\n",
            tables.join(", ")
        )
    }

    /// Writes node i's /etc/corosync-eip/corosync-eip.toml.
    pub fn write_daemon_config(&self, i: usize, toml: &str) -> Result<()> {
        let p = self.nodes[i].dir.join("etc-corosync-eip/corosync-eip.toml");
        let tmp = p.with_extension("toml.tmp");
        fs::write(&tmp, toml)?;
        fs::rename(&tmp, &p)?;
        Ok(())
    }

    pub fn daemon_log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("daemon.log")
    }

    /// Spawns `daemon_bin run --config /etc/corosync-eip/corosync-eip.toml` in node i
    /// (writes the default config first if the node has none).
    pub fn start_daemon(&mut self, i: usize) -> Result<()> {
        if let Some(c) = self.nodes[i].daemon.as_mut() {
            if c.try_wait()?.is_none() {
                bail!("daemon of node {i} is already running (pid {})", c.id());
            }
        }
        self.nodes[i].daemon = None;
        self.nodes[i].daemon_exit = None;
        if !self.nodes[i]
            .dir
            .join("etc-corosync-eip/corosync-eip.toml")
            .exists()
        {
            self.write_daemon_config(i, &self.default_daemon_config())?;
        }
        let log = self.daemon_log_path(i);
        let mut f = OpenOptions::new().create(true).append(true).open(&log)?;
        writeln!(
            f,
            "==== lab: starting daemon on node {i} at {:.3}",
            unix_now()
        )?;
        let (o, e) = append_log(&log)?;
        let bin = self.spec.daemon_bin.to_string_lossy().into_owned();
        let child = self
            .node_command(i, &[&bin, "run", "--config", DAEMON_CONFIG])
            .envs(self.daemon_env.get(&i).cloned().unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .with_context(|| format!("spawning {bin} in node {i}"))?;
        wait_exec(child.id());
        self.nodes[i].daemon = Some(child);
        Ok(())
    }

    /// Environment added to node i's daemon from its next start on (overrides the lab's).
    pub fn set_daemon_env(&mut self, i: usize, key: &str, value: &str) {
        let env = self.daemon_env.entry(i).or_default();
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }

    /// Pid of node i's daemon while it runs (None once it has exited, even before reaping).
    pub fn daemon_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i]
            .daemon
            .as_ref()
            .map(|c| c.id())
            .filter(|&p| pid_alive(p))
    }

    /// Pid of node i's daemon as last spawned (may have exited).
    pub fn daemon_pid_spawned(&self, i: usize) -> Option<u32> {
        self.nodes[i].daemon.as_ref().map(|c| c.id())
    }

    pub fn daemon_running(&self, i: usize) -> bool {
        self.daemon_pid(i).is_some()
    }

    fn poll_daemon(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(c) = n.daemon.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                n.daemon_exit = Some(st);
                n.daemon = None;
            }
        }
    }

    /// How the last daemon of node i ended (None while running or never started).
    pub fn daemon_exit_status(&mut self, i: usize) -> Option<ExitStatus> {
        self.poll_daemon(i);
        self.nodes[i].daemon_exit
    }

    pub fn signal_daemon(&mut self, i: usize, sig: Signal) -> Result<()> {
        self.poll_daemon(i);
        let c = self.nodes[i]
            .daemon
            .as_ref()
            .ok_or_else(|| anyhow!("daemon of node {i} is not running"))?;
        send_signal(c, sig)
    }

    /// Waits for node i's daemon to exit. Ok(Some(code)) on exit, Ok(None) if a signal killed
    /// it (see `daemon_exit_status`), Err on timeout or if no daemon was started.
    pub fn wait_daemon_exit(&mut self, i: usize, timeout: Duration) -> Result<Option<i32>> {
        if let Some(st) = self.nodes[i]
            .daemon_exit
            .filter(|_| self.nodes[i].daemon.is_none())
        {
            return Ok(st.code());
        }
        let c = self.nodes[i]
            .daemon
            .as_mut()
            .ok_or_else(|| anyhow!("no daemon was started on node {i}"))?;
        match wait_child(c, timeout)? {
            Some(st) => {
                self.nodes[i].daemon_exit = Some(st);
                self.nodes[i].daemon = None;
                Ok(st.code())
            }
            None => bail!("daemon of node {i} still running after {timeout:?}"),
        }
    }

    /// SIGKILLs node i's daemon (if running) and reaps it.
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].daemon.take() {
            let _ = send_signal(&c, Signal::SIGKILL);
            if let Ok(st) = c.wait() {
                self.nodes[i].daemon_exit = Some(st);
            }
        }
    }

    /// `daemon_bin status --json` inside node i, stdout parsed as JSON.
    pub fn daemon_status(&self, i: usize) -> Result<serde_json::Value> {
        let bin = self.spec.daemon_bin.to_string_lossy().into_owned();
        let out = self.node_exec(i, &[&bin, "status", "--json"])?;
        if !out.status.success() {
            bail!(
                "`corosync-eip status --json` on node {i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "parsing status of node {i}: {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn daemon_log(&self, i: usize) -> String {
        fs::read_to_string(self.daemon_log_path(i)).unwrap_or_default()
    }

    // -----------------------------------------------------------------------------------------
    // corosync

    pub fn corosync_log(&self, i: usize) -> String {
        fs::read_to_string(self.nodes[i].dir.join("var-log-corosync/corosync.log"))
            .unwrap_or_default()
    }

    pub fn corosync_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i]
            .corosync
            .as_ref()
            .map(|c| c.id())
            .filter(|&p| pid_alive(p))
    }

    pub fn start_corosync(&mut self, i: usize) -> Result<()> {
        if let Some(c) = self.nodes[i].corosync.as_mut() {
            if c.try_wait()?.is_none() {
                bail!("corosync of node {i} is already running (pid {})", c.id());
            }
        }
        self.nodes[i].corosync = None;
        let (o, e) = append_log(&self.nodes[i].dir.join("corosync.out"))?;
        let child = self
            .node_command(i, &["/usr/sbin/corosync", "-f"])
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .with_context(|| format!("spawning corosync in node {i}"))?;
        wait_exec(child.id());
        self.nodes[i].corosync = Some(child);
        Ok(())
    }

    /// Sends `sig` to node i's corosync; for terminating signals waits (≤ 10 s) and reaps it.
    pub fn kill_corosync(&mut self, i: usize, sig: Signal) {
        let Some(c) = self.nodes[i].corosync.as_mut() else {
            return;
        };
        let _ = send_signal(c, sig);
        if matches!(
            sig,
            Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT
        ) {
            match wait_child(c, Duration::from_secs(10)) {
                Ok(Some(_)) => self.nodes[i].corosync = None,
                _ => {
                    let _ = send_signal(c, Signal::SIGKILL);
                    let _ = c.wait();
                    self.nodes[i].corosync = None;
                }
            }
        }
    }

    /// (quorate, member count) from `corosync-quorumtool -s` in node i.
    pub fn quorum_state(&self, i: usize) -> Result<(bool, usize)> {
        let out = self.node_exec(i, &["/usr/sbin/corosync-quorumtool", "-s"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let quorate = field("Quorate").ok_or_else(|| {
            anyhow!(
                "node {i}: corosync-quorumtool -s gave no quorum information ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        let members: usize = field("Nodes")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("node {i}: no `Nodes:` in corosync-quorumtool output"))?;
        Ok((quorate.starts_with("Yes"), members))
    }

    /// Waits until every node in `nodes` is quorate and sees exactly `members` members.
    pub fn wait_quorate(&self, nodes: &[usize], members: usize, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let res = self.wait_for(
            &format!("nodes {nodes:?} quorate with {members} members"),
            timeout,
            || {
                let mut ok = true;
                last.clear();
                for &i in nodes {
                    let (q, m) = self.quorum_state(i)?;
                    last += &format!("node{i}: quorate={q} members={m}; ");
                    ok &= q && m == members;
                }
                Ok(ok.then_some(()))
            },
        );
        res.with_context(|| format!("last quorum state: {last}"))
    }

    /// Waits until node i reports not quorate.
    pub fn wait_not_quorate(&self, i: usize, timeout: Duration) -> Result<()> {
        self.wait_for(&format!("node {i} to lose quorum"), timeout, || {
            let (q, _) = self.quorum_state(i)?;
            Ok((!q).then_some(()))
        })
    }

    // -----------------------------------------------------------------------------------------
    // partitions

    /// Drops all traffic between node i and the other nodes (iptables in node i's netns); node i
    /// still reaches the emulator and its own IMDS.
    pub fn isolate(&self, i: usize) -> Result<()> {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&j| j != i).collect();
        self.block(i, &others)
    }

    /// Runs iptables in node i's netns; a failure is an error naming the rule.
    fn iptables(&self, i: usize, args: &[&str]) -> Result<Output> {
        let mut v = vec!["/usr/sbin/iptables", "-w"];
        v.extend_from_slice(args);
        let out = self.node_exec(i, &v)?;
        if !out.status.success() {
            bail!(
                "iptables {args:?} in node {i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Drops traffic between node i and the given nodes (both directions, rules in node i).
    pub fn block(&self, i: usize, peers: &[usize]) -> Result<()> {
        let ipt = |args: &[&str]| self.iptables(i, args);
        for chain in ["LABIN", "LABOUT"] {
            if ipt(&["-n", "-L", chain]).is_err() {
                ipt(&["-N", chain])?;
                let hook = if chain == "LABIN" { "INPUT" } else { "OUTPUT" };
                ipt(&["-I", hook, "-j", chain])?;
            }
        }
        for &j in peers {
            let ip = self.nodes[j].ip.to_string();
            ipt(&["-A", "LABIN", "-s", &ip, "-j", "DROP"])?;
            ipt(&["-A", "LABOUT", "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Undoes `isolate`/`block` for node i.
    pub fn heal(&self, i: usize) -> Result<()> {
        for chain in ["LABIN", "LABOUT"] {
            let out = self.node_exec(i, &["/usr/sbin/iptables", "-w", "-F", chain])?;
            let _ = out; // chain may not exist: nothing to heal
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // EC2 view

    /// DescribeAddresses for the lab's EIPs, in allocation order.
    pub fn describe_addresses(&self) -> Result<Vec<EipState>> {
        let ids = self.allocation_ids();
        let mut states = self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(c.describe_addresses().set_allocation_ids(Some(ids)).send())
                .map_err(|e| {
                    anyhow!(
                        "DescribeAddresses: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })?;
            let s = |o: Option<&str>| o.filter(|v| !v.is_empty()).map(str::to_string);
            Ok(out
                .addresses()
                .iter()
                .map(|a| EipState {
                    allocation_id: a.allocation_id().unwrap_or_default().to_string(),
                    public_ip: s(a.public_ip()),
                    association_id: s(a.association_id()),
                    instance_id: s(a.instance_id()),
                    network_interface_id: s(a.network_interface_id()),
                    private_ip: s(a.private_ip_address()),
                })
                .collect::<Vec<_>>())
        })?;
        let order = self.allocation_ids();
        states.sort_by_key(|s| order.iter().position(|a| *a == s.allocation_id));
        Ok(states)
    }

    /// State of one EIP by allocation id.
    pub fn eip(&self, allocation_id: &str) -> Result<EipState> {
        self.describe_addresses()?
            .into_iter()
            .find(|s| s.allocation_id == allocation_id)
            .ok_or_else(|| anyhow!("{allocation_id} not in DescribeAddresses"))
    }

    /// The node whose instance holds this EIP, if any.
    pub fn eip_holder(&self, allocation_id: &str) -> Result<Option<usize>> {
        let s = self.eip(allocation_id)?;
        Ok(s.instance_id
            .as_deref()
            .or(s.network_interface_id.as_deref())
            .and_then(|id| self.node_of(id)))
    }

    /// Every route of the given tables (one DescribeRouteTables call), tables in the given
    /// order, routes as the emulator lists them, including the VPC's local route.
    pub fn describe_routes(&self, route_table_ids: &[String]) -> Result<Vec<RouteState>> {
        if route_table_ids.is_empty() {
            // DescribeRouteTables without ids would list every table (the VPC's main one too)
            return Ok(vec![]);
        }
        let ids = route_table_ids.to_vec();
        let mut routes = self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(
                    c.describe_route_tables()
                        .set_route_table_ids(Some(ids))
                        .send(),
                )
                .map_err(|e| {
                    anyhow!(
                        "DescribeRouteTables: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })?;
            let s = |o: Option<&str>| o.filter(|v| !v.is_empty()).map(str::to_string);
            let mut v = Vec::new();
            for t in out.route_tables() {
                let table = t.route_table_id().unwrap_or_default().to_string();
                for r in t.routes() {
                    v.push(RouteState {
                        route_table_id: table.clone(),
                        destination: s(r.destination_cidr_block())
                            .or(s(r.destination_ipv6_cidr_block()))
                            .or(s(r.destination_prefix_list_id()))
                            .unwrap_or_default(),
                        network_interface_id: s(r.network_interface_id()),
                        instance_id: s(r.instance_id()),
                        other_target: s(r.gateway_id())
                            .or(s(r.nat_gateway_id()))
                            .or(s(r.transit_gateway_id()))
                            .or(s(r.vpc_peering_connection_id()))
                            .or(s(r.egress_only_internet_gateway_id()))
                            .or(s(r.local_gateway_id()))
                            .or(s(r.carrier_gateway_id())),
                        state: r.state().map(|st| st.as_str().to_string()),
                    });
                }
            }
            Ok(v)
        })?;
        routes.sort_by_key(|r| route_table_ids.iter().position(|t| *t == r.route_table_id));
        Ok(routes)
    }

    /// (route table, destination, target) of every route in the lab's route tables except the
    /// VPC's local route, in one DescribeRouteTables call. The target is the route's
    /// NetworkInterfaceId, else its InstanceId, else its other target (gateway ...).
    pub fn routes(&self) -> Result<Vec<(String, String, Option<String>)>> {
        Ok(self
            .describe_routes(&self.route_table_ids())?
            .into_iter()
            .filter(|r| r.other_target.as_deref() != Some("local"))
            .map(|r| {
                let target = r.target().map(str::to_string);
                (r.route_table_id, r.destination, target)
            })
            .collect())
    }

    /// Target (NetworkInterfaceId, else InstanceId, else other target) of the route for
    /// `destination_cidr` (a bare address means /32) in `route_table_id`; None if the table has
    /// no such route.
    pub fn route_target(
        &self,
        route_table_id: &str,
        destination_cidr: &str,
    ) -> Result<Option<String>> {
        let dest = as_cidr(destination_cidr);
        Ok(self
            .describe_routes(&[route_table_id.to_string()])?
            .into_iter()
            .find(|r| r.destination == dest)
            .and_then(|r| r.target().map(str::to_string)))
    }

    /// The node whose ENI (or instance) the route for `destination_cidr` points at, if any.
    pub fn route_holder(
        &self,
        route_table_id: &str,
        destination_cidr: &str,
    ) -> Result<Option<usize>> {
        Ok(self
            .route_target(route_table_id, destination_cidr)?
            .and_then(|t| self.node_of(&t)))
    }

    /// Points `destination_cidr` in `route_table_id` at ENI `eni` from the test harness:
    /// ReplaceRoute, or CreateRoute when the table has no such route. The request log records
    /// these calls with the emulator's own address as source, not a node's.
    pub fn set_route(&self, route_table_id: &str, destination_cidr: &str, eni: &str) -> Result<()> {
        let exists = self
            .route_target(route_table_id, destination_cidr)?
            .is_some();
        let (t, d, e) = (
            route_table_id.to_string(),
            as_cidr(destination_cidr),
            eni.to_string(),
        );
        self.with_ec2(move |rt, c| {
            if exists {
                rt.block_on(
                    c.replace_route()
                        .route_table_id(&t)
                        .destination_cidr_block(&d)
                        .network_interface_id(&e)
                        .send(),
                )
                .map(|_| ())
                .map_err(|err| {
                    anyhow!(
                        "ReplaceRoute {t} {d} -> {e}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(err)
                    )
                })
            } else {
                rt.block_on(
                    c.create_route()
                        .route_table_id(&t)
                        .destination_cidr_block(&d)
                        .network_interface_id(&e)
                        .send(),
                )
                .map(|_| ())
                .map_err(|err| {
                    anyhow!(
                        "CreateRoute {t} {d} -> {e}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(err)
                    )
                })
            }
        })
    }

    /// DeleteRoute from the test harness (fails if there is no such route).
    pub fn delete_route(&self, route_table_id: &str, destination_cidr: &str) -> Result<()> {
        let (t, d) = (route_table_id.to_string(), as_cidr(destination_cidr));
        self.with_ec2(move |rt, c| {
            rt.block_on(
                c.delete_route()
                    .route_table_id(&t)
                    .destination_cidr_block(&d)
                    .send(),
            )
            .map(|_| ())
            .map_err(|err| {
                anyhow!(
                    "DeleteRoute {t} {d}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(err)
                )
            })
        })
    }

    /// Turns source/destination check of node i's ENI on or off
    /// (ModifyNetworkInterfaceAttribute; the instance's SourceDestCheck follows, see
    /// ec2_emulator.py patch (f)).
    pub fn set_source_dest_check(&self, i: usize, on: bool) -> Result<()> {
        let eni = self.eni(i).to_string();
        self.with_ec2(move |rt, c| {
            rt.block_on(
                c.modify_network_interface_attribute()
                    .network_interface_id(&eni)
                    .source_dest_check(
                        aws_sdk_ec2::types::AttributeBooleanValue::builder()
                            .value(on)
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| {
                anyhow!(
                    "ModifyNetworkInterfaceAttribute {eni} SourceDestCheck={on}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(e)
                )
            })
        })
    }

    /// SourceDestCheck of node i's ENI (DescribeNetworkInterfaces).
    pub fn source_dest_check(&self, i: usize) -> Result<bool> {
        let eni = self.eni(i).to_string();
        self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(
                    c.describe_network_interfaces()
                        .network_interface_ids(&eni)
                        .send(),
                )
                .map_err(|e| {
                    anyhow!(
                        "DescribeNetworkInterfaces {eni}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })?;
            out.network_interfaces()
                .first()
                .and_then(|n| n.source_dest_check())
                .ok_or_else(|| anyhow!("DescribeNetworkInterfaces {eni}: no SourceDestCheck"))
        })
    }

    // -----------------------------------------------------------------------------------------
    // IMDS and IAM (pre-flight check tests)

    /// Kills node i's IMDS responder (as if IMDS were disabled or out of hops).
    pub fn stop_imds(&mut self, i: usize) {
        kill_and_reap(&mut self.nodes[i].imds);
    }

    /// Starts node i's IMDS responder again after `stop_imds`.
    pub fn restart_imds(&mut self, i: usize) -> Result<()> {
        kill_and_reap(&mut self.nodes[i].imds);
        fs::write(self.nodes[i].dir.join("imds.log"), "")?;
        self.start_imds(i)?;
        self.wait_imds(i)
    }

    fn iam_script(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.emu_netns))
            .arg("--")
            .arg(venv_python())
            .arg(repo_root().join("tests/lab/iam.py"))
            .args(["--endpoint", &self.emulator_url()])
            .args(args))
    }

    /// Creates an IAM user in the emulator with `policy` (an IAM policy document) as its only
    /// inline policy; returns its (access key id, secret access key). Give them to a node's
    /// command with `.env("AWS_ACCESS_KEY_ID", ..)` after `node_command`.
    pub fn create_iam_user(&self, name: &str, policy: &serde_json::Value) -> Result<(String, String)> {
        let out = self
            .iam_script(&["user", name, &policy.to_string()])
            .with_context(|| format!("creating IAM user {name}"))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("iam.py gave no {k}"))
        };
        Ok((field("access_key_id")?, field("secret_access_key")?))
    }

    /// Turns IAM enforcement in the emulator on or off. While on, every request must be signed
    /// by an IAM user's key and allowed by its policies (denied EC2 calls fail with
    /// UnauthorizedOperation); the lab's own keys ("testing") act as the account root and are
    /// always allowed, so the lab's helpers and daemons keep working.
    pub fn enforce_iam(&self, on: bool) -> Result<()> {
        self.iam_script(&["enforce", if on { "on" } else { "off" }])
            .context("switching IAM enforcement")?;
        Ok(())
    }

    /// Every EC2 API request the emulator received so far.
    pub fn ec2_requests(&self) -> Result<Vec<Ec2Request>> {
        let text = match fs::read_to_string(self.request_log_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        // a line may be half-written: only complete lines count
        let complete = match text.rfind('\n') {
            Some(p) => &text[..=p],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("request log line {l:?}")))
            .collect()
    }

    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        wait_for(what, timeout, f)
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

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// IAM policy of a healthy node: everything an EIP holder calls.
pub fn full_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["ec2:Describe*", "ec2:AssociateAddress", "ec2:DisassociateAddress", "ec2:CreateTags", "ec2:DeleteTags"],
            "Resource": "*"
        }]
    })
}

/// IAM policy of a drifted role: it can look, but cannot associate nor tag.
pub fn no_associate_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["ec2:Describe*", "ec2:DisassociateAddress", "ec2:DeleteTags"],
            "Resource": "*"
        }]
    })
}

// ---------------------------------------------------------------------------------------------
// Shared assertions of the multi-node tests

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Lab {
    /// The last 60 lines of every node's daemon log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.node_count())
            .map(|i| format!("---- node {i} daemon log ----\n{}", tail(&self.daemon_log(i), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// No daemon log contains a panic.
    pub fn assert_no_panics(&self) {
        for i in 0..self.node_count() {
            let log = self.daemon_log(i);
            assert!(!log.contains("panicked"), "daemon on node {i} panicked:\n{}", tail(&log, 80));
        }
    }

    /// Waits (≤ `timeout`) until every node of `nodes` says in `status --json`: synced,
    /// quorate, `members` members, the first resource "held" by one and the same node, and EC2
    /// shows the first EIP on that node. Returns the holder's index; nodes that disagree are an
    /// error at once.
    pub fn settled_holder(&self, nodes: &[usize], members: usize, timeout: Duration) -> Result<usize> {
        let alloc = self.allocation_ids().first().cloned().ok_or_else(|| anyhow!("the lab has no EIP"))?;
        self.wait_for("one agreed, verified holder", timeout, || {
            let mut holder = None;
            for &i in nodes {
                let s = self.daemon_status(i)?;
                let r = &s["resources"][0];
                let ok = s["synced"] == true
                    && s["quorate"] == true
                    && s["members"].as_array().map(|m| m.len()) == Some(members)
                    && r["state"] == "held";
                if !ok {
                    return Ok(None);
                }
                let h = r["holder"]["node_id"].as_u64().and_then(|id| self.index_of_node_id(id));
                if holder.is_some() && holder != h {
                    bail!("nodes disagree on the holder: {holder:?} vs {h:?} (node {i})");
                }
                holder = h;
            }
            let Some(index) = holder else { return Ok(None) };
            let ec2 = self.eip(&alloc)?;
            let on_holder = ec2.instance_id.as_deref() == Some(self.instance_id(index))
                && ec2.network_interface_id.as_deref() == Some(self.eni(index));
            Ok(on_holder.then_some(index))
        })
    }

    /// The index of the node with this corosync node id.
    pub fn index_of_node_id(&self, node_id: u64) -> Option<usize> {
        (0..self.node_count()).find(|i| u64::from(self.node_id(*i)) == node_id)
    }
}

// ---------------------------------------------------------------------------------------------
// EC2 endpoint outage of one node

/// iptables chains (in a node's netns) that drop traffic to/from the emulator; separate from
/// `block`'s LABIN/LABOUT so `heal` leaves them alone.
const EC2_BLOCK_CHAINS: [(&str, &str, &str); 2] = [("LABEC2IN", "INPUT", "-s"), ("LABEC2OUT", "OUTPUT", "-d")];

impl Lab {
    /// Drops all traffic between node i and the EC2 emulator (both directions, DROP so the
    /// daemon's calls time out like an unreachable endpoint); corosync traffic between nodes and
    /// the node's IMDS (127.0.0.1) are untouched. Undo with `unblock_ec2`.
    pub fn block_ec2(&self, i: usize) -> Result<()> {
        let ipt = |args: &[&str]| self.iptables(i, args);
        let emu = self.emulator_ip().to_string();
        for (chain, hook, side) in EC2_BLOCK_CHAINS {
            if ipt(&["-n", "-L", chain]).is_err() {
                ipt(&["-N", chain])?;
                ipt(&["-I", hook, "-j", chain])?;
            }
            ipt(&["-F", chain])?;
            ipt(&["-A", chain, side, &emu, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Undoes `block_ec2` for node i (no-op if it was never blocked).
    pub fn unblock_ec2(&self, i: usize) -> Result<()> {
        for (chain, _, _) in EC2_BLOCK_CHAINS {
            let _ = self.node_exec(i, &["/usr/sbin/iptables", "-w", "-F", chain])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let t0 = Instant::now();
        for n in self.nodes.iter_mut() {
            kill_and_reap(&mut n.daemon);
        }
        for n in self.nodes.iter_mut() {
            kill_and_reap(&mut n.corosync);
            kill_and_reap(&mut n.imds);
        }
        // Stop our EC2 client before the emulator: a pooled connection left open towards a
        // killed server keeps the emulator's netns (and its veth) alive for many seconds.
        if let Some(mut w) = self.ec2.take() {
            w.tx.take();
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        kill_and_reap(&mut self.emulator);
        if self.forward_rule {
            quiet(
                "iptables",
                &[
                    "-D",
                    "FORWARD",
                    "-i",
                    &self.bridge,
                    "-o",
                    &self.bridge,
                    "-j",
                    "ACCEPT",
                ],
            );
        }
        teardown(&self.prefix, &self.bridge, &self.ns_dir);
        eprintln!("lab {}: torn down in {:.2?}", self.spec.name, t0.elapsed());
    }
}
