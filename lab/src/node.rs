//! Access to one node: its identity, its namespaces, commands run inside it, its addresses
//! and its IMDS responder.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{append_log, kill_and_reap};
use crate::{script, venv_python, Lab, LabSpec, Seed, EMULATOR_PORT, IMDS_PORT};

impl Lab {
    pub(crate) fn start_imds(&mut self, i: usize) -> Result<()> {
        let (o, e) = append_log(&self.nodes[i].dir.join("imds.log"))?;
        let child = self
            .imds_command(i, "127.0.0.1", IMDS_PORT)
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .context("spawning imds.py")?;
        self.nodes[i].imds = Some(child);
        Ok(())
    }

    /// The command of an IMDS responder for node i listening on `host:port` inside the node:
    /// the lab's own on 127.0.0.1, or a second one where a tool expects IMDS.
    pub(crate) fn imds_command(&self, i: usize, host: &str, port: u16) -> Command {
        let inst = &self.seed_info().instances[i];
        let mut cmd = self.node_ns_command(i, &[]);
        cmd.arg(venv_python())
            .arg(script("imds.py"))
            .args(["--host", host, "--port", &port.to_string()])
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
            .args(["--private-ip", &inst.private_ip])
            .arg("--events-dir")
            .arg(self.imds_events_dir(i));
        if !inst.mac.is_empty() {
            cmd.args(["--mac", &inst.mac]);
        }
        cmd
    }

    /// The blocks a test's notify hook appended to `file` inside node i (`env | grep
    /// ^COROSYNC_EIP_ | sort`, then a `---` line), each as variable → value.
    pub fn hook_log(&self, i: usize, file: &str) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
        let out = self.node_exec(i, &["/bin/cat", file])?.stdout;
        Ok(String::from_utf8_lossy(&out)
            .split("---\n")
            .filter(|b| !b.trim().is_empty())
            .map(|block| block.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
            .collect())
    }

    /// Where node i's IMDS responder reads the event documents EC2 serves only while there is
    /// an event.
    pub fn imds_events_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("imds-events")
    }

    /// Makes node i's IMDS serve `body` as one of the event documents (`scheduled.json`,
    /// `spot.json`, `rebalance.json`), or stop serving it (None: 404, as EC2 without an event).
    pub fn set_imds_event(&self, i: usize, file: &str, body: Option<&str>) -> Result<()> {
        let dir = self.imds_events_dir(i);
        fs::create_dir_all(&dir)?;
        let path = dir.join(file);
        match body {
            Some(body) => {
                let tmp = dir.join(format!(".{file}.tmp"));
                fs::write(&tmp, body)?;
                fs::rename(&tmp, &path)?;
            }
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        Ok(())
    }

    pub(crate) fn wait_imds(&mut self, i: usize) -> Result<()> {
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

    // -----------------------------------------------------------------------------------------
    // accessors

    /// What the lab was started with (daemon binary, subnet, work dir, ...).
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }
    /// Number of nodes; node indices run from 0.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    /// corosync nodeid of node i (= i + 1).
    pub fn node_id(&self, i: usize) -> u32 {
        (i + 1) as u32
    }
    /// Node i's address on the lab bridge (its corosync ring address).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.nodes[i].ip
    }
    /// Index of the node with this IP (e.g. a request log's source).
    pub fn node_by_ip(&self, ip: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.ip.to_string() == ip)
    }
    /// Node i's corosync node name (`node<i>`).
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }
    /// Node i's network namespace, for `ip netns exec` and nsenter.
    pub fn netns(&self, i: usize) -> &str {
        &self.nodes[i].netns
    }
    /// Host-side directory of node i (logs, bind-mounted config dirs).
    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }
    /// The EC2 instance the seed gave node i.
    pub fn instance_id(&self, i: usize) -> &str {
        &self.seed.as_ref().unwrap().instances[i].instance_id
    }
    /// The primary ENI of node i's instance.
    pub fn eni(&self, i: usize) -> &str {
        &self.seed.as_ref().unwrap().instances[i].eni
    }
    /// The private IP of node i's ENI in the lab VPC.
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
    /// Everything the seed created (VPC, subnet, instances, EIPs, route tables).
    pub fn seed_info(&self) -> &Seed {
        self.seed.as_ref().unwrap()
    }
    /// The lab's EIP allocation ids, in seed order (`eip1` of the default config first).
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
    /// The EC2 emulator's address (10.213.<subnet>.250).
    pub fn emulator_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.spec.subnet, 250)
    }
    /// The EC2 endpoint the daemons use (`AWS_ENDPOINT_URL`).
    pub fn emulator_url(&self) -> String {
        format!("http://{}:{}", self.emulator_ip(), EMULATOR_PORT)
    }
    /// Host path of the emulator's request log (one JSON object per request).
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
    /// In a `LabSpec::systemd` lab, once node i's container runs, the command runs inside the
    /// container instead (its mounts, its /run and /dev/shm, its corosync).
    pub fn node_command(&self, i: usize, argv: &[&str]) -> Command {
        match self.container_command(i, argv) {
            Some(mut cmd) => {
                cmd.envs(self.node_env());
                cmd
            }
            None => self.node_ns_command(i, argv),
        }
    }

    /// `node_command` in the node's own network and mount namespaces, also in a systemd lab
    /// (the IMDS responder runs there, beside the container, with the lab's python).
    pub(crate) fn node_ns_command(&self, i: usize, argv: &[&str]) -> Command {
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
        self.listed_addresses(i, dev, "-4", "inet", &[])
    }

    /// Global IPv6 addresses with prefix length on `dev` inside node i, from
    /// `ip -o -6 addr show dev DEV scope global` (link-local ones are left out).
    pub fn node_ipv6_addresses(&self, i: usize, dev: &str) -> Result<Vec<String>> {
        self.listed_addresses(i, dev, "-6", "inet6", &["scope", "global"])
    }

    /// `ip -o FAMILY addr show dev DEV EXTRA...` inside node i: the address after each `word`.
    fn listed_addresses(&self, i: usize, dev: &str, family: &str, word: &str, extra: &[&str]) -> Result<Vec<String>> {
        let mut argv = vec!["/usr/sbin/ip", "-o", family, "addr", "show", "dev", dev];
        argv.extend_from_slice(extra);
        let out = self.node_exec(i, &argv)?;
        if !out.status.success() {
            bail!(
                "`ip -o {family} addr show dev {dev}` in node {i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.find(|&t| t == word)?;
                w.next().map(str::to_string)
            })
            .collect())
    }

    /// Whether node i has `address` (IPv4 or IPv6; bare, or with a prefix length that must
    /// then match) on `dev`.
    pub fn node_has_address(&self, i: usize, dev: &str, address: &str) -> Result<bool> {
        let listed = if address.contains(':') {
            self.node_ipv6_addresses(i, dev)?
        } else {
            self.node_addresses(i, dev)?
        };
        Ok(listed.iter().any(|a| {
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
}
