//! The corosync-eip daemon on each node: configuration, process control, status and log.

use std::os::unix::fs::PermissionsExt as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::process::{append_log, send_signal, wait_child};
use crate::{pid_alive, unix_now, wait_exec, Lab, Signal, StatusReport, DAEMON_CONFIG, NODE_INTERFACE};

impl Lab {
    // -----------------------------------------------------------------------------------------
    // daemon

    /// A config holding every lab EIP with the lab's short intervals, so failovers are quick.
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

    /// A `[[secondary_ip]]` block (leading blank line, so it can be appended to
    /// `default_daemon_config`) for `address` of the lab subnet, on `eth0`.
    pub fn secondary_ip_config(&self, name: &str, address: &str) -> String {
        format!("\n[[secondary_ip]]\nname = \"{name}\"\naddress = \"{address}\"\ninterface = \"{NODE_INTERFACE}\"\n")
    }

    /// A `[[dns]]` block (leading blank line) for record `record` of the lab zone, with `value`
    /// (`private`, `public`, `eip:NAME`, ...) and a 10 s TTL.
    pub fn dns_config(&self, name: &str, record: &str, value: &str) -> String {
        format!(
            "\n[[dns]]\nname = \"{name}\"\nhosted_zone_id = \"{}\"\nrecord = \"{record}\"\nvalue = \"{value}\"\nttl = 10\n",
            self.seed_info().hosted_zone_id
        )
    }

    /// Writes node i's /etc/corosync-eip/corosync-eip.toml.
    pub fn write_daemon_config(&self, i: usize, toml: &str) -> Result<()> {
        let p = if self.spec.systemd {
            self.node_etc(i).join("corosync-eip/corosync-eip.toml")
        } else {
            self.nodes[i].dir.join("etc-corosync-eip/corosync-eip.toml")
        };
        let tmp = p.with_extension("toml.tmp");
        fs::write(&tmp, toml)?;
        // root-only, as the RPM installs it (the file names commands run as root)
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, &p)?;
        Ok(())
    }

    /// Host path of node i's daemon log (stdout and stderr of every start, appended).
    pub fn daemon_log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("daemon.log")
    }

    /// Writes `config` on every node and starts every daemon.
    pub fn start_daemons_with(&mut self, config: &str) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.write_daemon_config(i, config)?;
            self.start_daemon(i)?;
        }
        Ok(())
    }

    /// Spawns `daemon_bin run --config /etc/corosync-eip/corosync-eip.toml` in node i
    /// (writes the default config first if the node has none).
    /// In a systemd lab: `systemctl start --no-block corosync-eip` with the node's sysconfig
    /// rewritten first.
    pub fn start_daemon(&mut self, i: usize) -> Result<()> {
        if self.spec.systemd {
            self.write_sysconfig(i)?;
            self.systemctl(i, &["start", "--no-block", crate::systemd::UNIT])?;
            return Ok(());
        }
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

    /// Whether node i's daemon is alive (not exited, not a zombie).
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

    /// Sends `sig` to node i's daemon (SIGTERM for a planned stop, SIGHUP for a reload, ...).
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

    /// `daemon_bin status --json` inside node i, typed: the schema the README documents is
    /// what the scenarios assert on, so a field the daemon renames fails to parse here instead
    /// of reading as null.
    pub fn daemon_status(&self, i: usize) -> Result<StatusReport> {
        let out = self.daemon_status_output(i)?;
        serde_json::from_slice(&out).with_context(|| {
            format!(
                "status --json of node {i} does not match the status schema: {:?}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    /// `daemon_bin status --json` inside node i as raw JSON, for tools that record the report
    /// (or a part of it) verbatim.
    pub fn daemon_status_json(&self, i: usize) -> Result<serde_json::Value> {
        let out = self.daemon_status_output(i)?;
        serde_json::from_slice(&out).with_context(|| {
            format!("parsing status of node {i}: {:?}", String::from_utf8_lossy(&out))
        })
    }

    /// The daemon binary as a command inside a node: the lab's build, or in a systemd lab the
    /// installed `/usr/sbin/corosync-eip`.
    pub fn daemon_command_path(&self) -> String {
        if self.spec.systemd {
            crate::systemd::INSTALLED_BIN.to_string()
        } else {
            self.spec.daemon_bin.to_string_lossy().into_owned()
        }
    }

    fn daemon_status_output(&self, i: usize) -> Result<Vec<u8>> {
        let bin = self.daemon_command_path();
        let out = self.node_exec(i, &[&bin, "status", "--json"])?;
        if !out.status.success() {
            bail!(
                "`corosync-eip status --json` on node {i} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }

    /// Node i's daemon log so far (empty if none), for assertions and failure messages.
    /// In a systemd lab: the unit's journal, messages only.
    pub fn daemon_log(&self, i: usize) -> String {
        if self.spec.systemd {
            return self.journal(i, crate::systemd::UNIT, "cat");
        }
        fs::read_to_string(self.daemon_log_path(i)).unwrap_or_default()
    }

}
