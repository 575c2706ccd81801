//! Building and tearing down a lab: the per-name lock, the bridge, the namespaces and their
//! mounts, and the removal of whatever a crashed lab left behind.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;

use crate::process::{ip, kill_and_reap, quiet, run};
use crate::{venv_python, Lab, LabSpec, Node, Signal, LOCK_DIR, LOCK_WAIT, STATE_DIR};

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
    crate::systemd::remove_cgroups(prefix);
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

impl Lab {
    /// Builds the lab `spec` describes (waiting for another lab of the same name to end) and
    /// returns once every node is quorate and EC2, IMDS and the seed are ready; daemons are
    /// not started. Fails, tearing down what was built, if any step fails.
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
                    container: None,
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
        if self.spec.systemd {
            for i in 0..self.nodes.len() {
                self.write_usr_extra(i)?;
                self.write_node_root(i)?;
                self.boot(i)?;
            }
            for i in 0..self.nodes.len() {
                self.systemctl(i, &["start", "corosync.service"])?;
            }
        } else {
            for i in 0..self.nodes.len() {
                self.start_corosync(i)?;
            }
        }
        self.seed()?;
        if self.spec.systemd {
            // the default config names the seeded EIPs
            for i in 0..self.nodes.len() {
                self.write_daemon_config(i, &self.default_daemon_config())?;
            }
        }
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        let t0 = Instant::now();
        for n in self.nodes.iter_mut() {
            kill_and_reap(&mut n.daemon);
        }
        for i in 0..self.nodes.len() {
            self.shutdown_container(i, Duration::from_secs(10));
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
