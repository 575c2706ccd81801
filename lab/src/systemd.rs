//! Nodes that boot systemd: in a lab built with `LabSpec::systemd`, every node is a
//! `systemd-nspawn` container booting the host's systemd as PID 1, in the node's own network
//! namespace, with corosync and corosync-eip as the services users run.
//!
//! What the container sees:
//! - `/`: a fresh tmpfs (`--volatile=yes`) with the host's `/usr` as the lower layer of an
//!   overlay whose upper layer is the node's `usr` directory, so `/usr/sbin/corosync-eip` and
//!   `/usr/lib/systemd/system/corosync-eip.service` are where the RPM puts them (the unit file
//!   is `contrib/corosync-eip.service`, unchanged) and an upgrade inside the node writes there,
//!   while the host's `/usr` stays untouched;
//! - `/etc` and `/var`: the node's `etc` and `var` directories on the host, built here from
//!   scratch (users, NSS, the linker cache, a machine id so systemd never runs its first-boot
//!   wizard, corosync.conf, the daemon's config and sysconfig), so the harness reads logs and
//!   journals and writes configs from outside;
//! - `/run`, `/tmp`, `/dev/shm`: private, so corosync's IPC is the node's own.
//!
//! The harness drives it the way an admin does: `systemctl`, `journalctl` and `corosync-eip
//! status` run inside through `nsenter` into the container's PID 1 (`--register=no`: no
//! machined on these machines, so no `machinectl`). Two things the defaults do not give: the
//! container keeps `CAP_NET_ADMIN` (nspawn drops it when it does not set up the network
//! itself, and the daemon needs it for VIP addresses), and each container starts in a cgroup
//! of its own (this machine's PID 1 is not systemd; from the root cgroup every container would
//! share nspawn's `payload`/`supervisor` groups). See /work/shared/design/lab.md.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;

use crate::process::{append_log, cmd_str, send_signal, wait_child};
use crate::{repo_root, Lab, Signal};

/// Where the unit file and the binary go inside a container, as the RPM installs them.
pub const UNIT_PATH: &str = "/usr/lib/systemd/system/corosync-eip.service";
/// The daemon binary inside a container.
pub const INSTALLED_BIN: &str = "/usr/sbin/corosync-eip";
/// The daemon's unit.
pub const UNIT: &str = "corosync-eip.service";
/// The PATH of commands run inside a container.
const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Units of the host's `/usr` that would only get in the way inside a node.
const MASKED: [&str; 5] = [
    "systemd-firstboot.service",
    "getty.target",
    "console-getty.service",
    "systemd-logind.service",
    "systemd-user-sessions.service",
];

/// One node's running container.
pub(crate) struct Container {
    /// The `systemd-nspawn` process (our child, so its exit is reaped at once).
    pub(crate) nspawn: Child,
    /// The container's systemd, as a host pid.
    pub(crate) init: u32,
    /// The cgroup directories made for it, removed after it stops.
    pub(crate) cgroups: Vec<PathBuf>,
}

/// The cgroup hierarchies a container must be moved into before nspawn starts: the unified
/// one alone on a pure cgroup v2 host, `systemd` and `unified` on a hybrid one.
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    ["systemd", "unified"]
        .iter()
        .map(|h| base.join(h))
        .filter(|p| p.is_dir())
        .collect()
}

/// Kills whatever still runs in the cgroups of containers whose machine name starts with
/// `prefix` and removes those cgroups (leftovers of a crashed lab).
pub(crate) fn remove_cgroups(prefix: &str) {
    for root in cgroup_roots() {
        let Ok(entries) = fs::read_dir(&root) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    for round in 0..50 {
        let mut dirs = Vec::new();
        collect_dirs(dir, &mut dirs);
        let mut busy = false;
        for d in &dirs {
            for pid in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    busy = true;
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        // deepest first
        dirs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for d in &dirs {
            let _ = fs::remove_dir(d);
        }
        if !dir.exists() || (!busy && round > 0) {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// The container's PID 1 as a host pid: the child of nspawn that is pid 1 in its own pid
/// namespace (nspawn's short-lived intermediate child is not).
fn find_init(nspawn: u32) -> Option<u32> {
    let procs = fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(status) = fs::read_to_string(p.path().join("status")) else { continue };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
        };
        let parent = field("PPid:").and_then(|v| v.first().and_then(|x| x.parse::<u32>().ok()));
        let nspid = field("NSpid:").unwrap_or_default();
        if parent == Some(nspawn) && nspid.len() >= 2 && nspid.last() == Some(&"1") {
            return Some(pid);
        }
    }
    None
}

impl Lab {
    /// Whether node i runs as a systemd container.
    pub fn is_systemd(&self) -> bool {
        self.spec.systemd
    }

    /// Host path of the directory the container of node i sees as `/etc`.
    pub fn node_etc(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("etc")
    }

    /// Host path of the directory the container of node i sees as `/var`.
    pub fn node_var(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("var")
    }

    /// The upper layer of node i's `/usr`: the binary and unit as the RPM installs them, and
    /// whatever the node writes to `/usr` later (an upgrade), kept per node like a real disk.
    pub fn usr_extra(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("usr")
    }

    /// Writes node i's `/usr` additions: the daemon (the lab's `daemon_bin`) as
    /// `/usr/sbin/corosync-eip`, and the unit file from `contrib/`, unchanged.
    pub(crate) fn write_usr_extra(&self, i: usize) -> Result<()> {
        let dir = self.usr_extra(i).join("sbin");
        fs::create_dir_all(&dir)?;
        let dest = dir.join("corosync-eip");
        let _ = fs::remove_file(&dest);
        let bin = &self.spec.daemon_bin;
        // A hard link costs no space; a debug build is about a hundred megabytes and every node
        // would otherwise keep its own copy. A copy is the fallback across file systems. The
        // node never writes into the file: an upgrade renames a new one over it, as rpm does.
        if fs::hard_link(bin, &dest).is_err() {
            fs::copy(bin, &dest).with_context(|| format!("copying {} into node {i}'s /usr", bin.display()))?;
        }
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))?;
        let unit = self.usr_extra(i).join("lib/systemd/system/corosync-eip.service");
        fs::create_dir_all(unit.parent().ok_or_else(|| anyhow!("unit path"))?)?;
        fs::copy(repo_root().join("contrib/corosync-eip.service"), &unit)
            .context("installing contrib/corosync-eip.service")?;
        Ok(())
    }

    /// The environment the daemon gets from `/etc/sysconfig/corosync-eip`: the lab's EC2
    /// endpoint and credentials, its IMDS responder, and the log level.
    fn sysconfig(&self, i: usize) -> String {
        let mut s = String::from("# written by the corosync-eip lab\n");
        for (k, v) in self.node_env() {
            if k.starts_with("AWS_") || k == "RUST_LOG" {
                s += &format!("{k}={v}\n");
            }
        }
        for (k, v) in self.daemon_env.get(&i).cloned().unwrap_or_default() {
            s += &format!("{k}={v}\n");
        }
        s
    }

    /// Rewrites node i's `/etc/sysconfig/corosync-eip` (after `set_daemon_env`); the daemon
    /// reads it at its next start.
    pub fn write_sysconfig(&self, i: usize) -> Result<()> {
        let p = self.node_etc(i).join("sysconfig/corosync-eip");
        fs::write(&p, self.sysconfig(i)).with_context(|| format!("writing {}", p.display()))
    }

    /// Builds node i's `/etc` and `/var` from scratch.
    pub(crate) fn write_node_root(&self, i: usize) -> Result<()> {
        let etc = self.node_etc(i);
        let var = self.node_var(i);
        for d in ["systemd/system", "corosync", "corosync-eip", "sysconfig"] {
            fs::create_dir_all(etc.join(d))?;
        }
        for d in ["log/journal", "log/corosync", "lib/corosync"] {
            fs::create_dir_all(var.join(d))?;
        }
        // the minimum the host's /usr needs from /etc: users, NSS, the dynamic linker
        for f in ["passwd", "group", "shadow", "gshadow", "ld.so.cache", "ld.so.conf"] {
            let src = Path::new("/etc").join(f);
            if src.exists() {
                fs::copy(&src, etc.join(f)).with_context(|| format!("copying {}", src.display()))?;
            }
        }
        // the CA bundle: the SDK's HTTPS client refuses to start without one
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if bundle.exists() {
            fs::create_dir_all(etc.join("ssl/certs"))?;
            fs::copy(bundle, etc.join("ssl/certs/ca-certificates.crt"))?;
        }
        fs::write(etc.join("nsswitch.conf"), "passwd: files\ngroup: files\nshadow: files\ngshadow: files\nhosts: files\n")?;
        // a machine id: not a first boot, so no first-boot wizard and no preset of every unit
        fs::write(etc.join("machine-id"), format!("{}\n", machine_id()?))?;
        fs::write(etc.join("hostname"), format!("{}\n", self.nodes[i].name))?;
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for n in &self.nodes {
            hosts += &format!("{} {}\n", n.ip, n.name);
        }
        fs::write(etc.join("hosts"), hosts)?;
        let _ = fs::remove_file(etc.join("os-release"));
        std::os::unix::fs::symlink("../usr/lib/os-release", etc.join("os-release"))?;
        for u in MASKED {
            let link = etc.join("systemd/system").join(u);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink("/dev/null", &link)?;
        }
        fs::write(etc.join("corosync/corosync.conf"), self.corosync_conf())?;
        self.write_sysconfig(i)?;
        Ok(())
    }

    /// Boots node i's container and waits until its systemd reports the system running.
    pub(crate) fn boot(&mut self, i: usize) -> Result<()> {
        let machine = format!("{}n{i}", self.prefix);
        let mut cgroups = Vec::new();
        for root in cgroup_roots() {
            let d = root.join(&machine);
            fs::create_dir_all(&d).with_context(|| format!("creating cgroup {}", d.display()))?;
            cgroups.push(d);
        }
        let moves: String = cgroups
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
            .collect();
        let (o, e) = append_log(&self.nodes[i].dir.join("console.log"))?;
        // `sh` moves itself into the cgroups, then execs nsenter, which execs nspawn: the
        // child's pid is nspawn's. `nsenter --net`, not `ip netns exec`, which remounts /sys and
        // hides the cgroup hierarchy from nspawn.
        let script = format!(
            "set -e; {moves}exec nsenter --net=/run/netns/{netns} -- systemd-nspawn --quiet --register=no \
             --keep-unit --directory=/ --volatile=yes --machine={machine} --bind={etc}:/etc --bind={var}:/var \
             --overlay=/usr:{extra}:/usr --link-journal=no --resolv-conf=off --timezone=off --console=pipe \
             --boot --capability=CAP_NET_ADMIN,CAP_IPC_LOCK",
            netns = self.nodes[i].netns,
            etc = self.node_etc(i).display(),
            var = self.node_var(i).display(),
            extra = self.usr_extra(i).display(),
        );
        let nspawn = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .with_context(|| format!("starting the container of node {i}"))?;
        let started = Instant::now();
        let pid = nspawn.id();
        self.nodes[i].container = Some(Container { nspawn, init: 0, cgroups });
        let init = loop {
            if let Some(p) = find_init(pid) {
                break p;
            }
            if let Some(c) = self.nodes[i].container.as_mut() {
                if let Some(st) = c.nspawn.try_wait()? {
                    bail!("the container of node {i} exited ({st}): {}", self.console_log(i));
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("no systemd in the container of node {i} after 20 s: {}", self.console_log(i));
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(c) = self.nodes[i].container.as_mut() {
            c.init = init;
        }
        // systemctl needs PID 1's private socket, which appears a little after PID 1
        self.wait_for(&format!("systemd of node {i} to listen"), Duration::from_secs(30), || {
            let out = self.in_container(i, &["test", "-S", "/run/systemd/private"])?;
            Ok(out.status.success().then_some(()))
        })?;
        let out = self.in_container(i, &["systemctl", "is-system-running", "--wait"])?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state != "running" {
            let failed = self.in_container(i, &["systemctl", "--failed", "--no-legend"])?;
            bail!(
                "node {i}'s systemd reports {state:?} after boot; failed units: {}",
                String::from_utf8_lossy(&failed.stdout).trim()
            );
        }
        Ok(())
    }

    fn console_log(&self, i: usize) -> String {
        fs::read_to_string(self.nodes[i].dir.join("console.log")).unwrap_or_default()
    }

    /// Stops node i's container the way a host shuts down (nspawn turns SIGTERM into an
    /// orderly poweroff of the container), killing it after `timeout`; removes its cgroups.
    pub fn shutdown_container(&mut self, i: usize, timeout: Duration) {
        let Some(mut c) = self.nodes[i].container.take() else { return };
        let _ = send_signal(&c.nspawn, Signal::SIGTERM);
        if !matches!(wait_child(&mut c.nspawn, timeout), Ok(Some(_))) {
            let _ = send_signal(&c.nspawn, Signal::SIGKILL);
            let _ = c.nspawn.wait();
        }
        for d in &c.cgroups {
            remove_cgroup_tree(d);
        }
        let machine = format!("{}n{i}", self.prefix);
        let _ = fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(machine));
    }

    /// A command run inside node i's container (all its namespaces, a clean environment).
    /// Falls back to the node's namespaces when the node has no container.
    pub(crate) fn container_command(&self, i: usize, argv: &[&str]) -> Option<Command> {
        let c = self.nodes[i].container.as_ref()?;
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &c.init.to_string(), "-a", "--"])
            .args(argv)
            .env_clear()
            .envs([("PATH", NODE_PATH), ("LANG", "C.UTF-8"), ("HOME", "/root")]);
        Some(cmd)
    }

    /// Runs argv inside node i's container and returns its output whatever its status.
    pub fn in_container(&self, i: usize, argv: &[&str]) -> Result<Output> {
        let mut cmd = self
            .container_command(i, argv)
            .ok_or_else(|| anyhow!("node {i} has no container (LabSpec::systemd is off)"))?;
        cmd.stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {argv:?} in the container of node {i}"))
    }

    /// `systemctl ARGS` inside node i; fails with its output unless it exits 0.
    pub fn systemctl(&self, i: usize, args: &[&str]) -> Result<Output> {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        let out = self.in_container(i, &argv)?;
        if !out.status.success() {
            bail!(
                "`{}` on node {i} failed ({}): {}{}",
                argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// One property of a unit on node i (`systemctl show -p NAME --value`).
    pub fn unit_property(&self, i: usize, unit: &str, name: &str) -> Result<String> {
        let out = self.systemctl(i, &["show", unit, "-p", name, "--value"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The daemon's main pid on node i as a host pid (for signals from outside), None while
    /// the unit has no main process.
    pub fn unit_main_pid_host(&self, i: usize, unit: &str) -> Result<Option<u32>> {
        let inner: u32 = self.unit_property(i, unit, "MainPID")?.parse().context("MainPID")?;
        if inner == 0 {
            return Ok(None);
        }
        let c = self.nodes[i].container.as_ref().ok_or_else(|| anyhow!("node {i} has no container"))?;
        // the host pid whose NSpid ends in `inner`, under the container's pid namespace
        let ns = fs::read_link(format!("/proc/{}/ns/pid", c.init))?;
        for p in fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else { continue };
            if fs::read_link(p.path().join("ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            let status = fs::read_to_string(p.path().join("status")).unwrap_or_default();
            let last = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(str::to_string));
            if last.as_deref() == Some(&inner.to_string()) {
                return Ok(Some(pid));
            }
        }
        Ok(None)
    }

    /// Node i's journal for `unit` (all boots), read on the host from the node's `/var`, so it
    /// is there after the container stopped. `format` is journalctl's `-o`.
    pub fn journal(&self, i: usize, unit: &str, format: &str) -> String {
        let dir = self.node_var(i).join("log/journal");
        let mut cmd = Command::new("journalctl");
        cmd.arg("-D").arg(&dir).args(["--no-pager", "-u", unit, "-o", format]);
        match cmd.output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("({}: {e})", cmd_str(&cmd)),
        }
    }
}

/// A new machine id: 128 random bits from the kernel, in hex.
fn machine_id() -> Result<String> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
