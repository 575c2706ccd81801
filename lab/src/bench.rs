//! What the benchmark drivers (`examples/bench_*.rs`) share beyond the lab itself: the daemon
//! binary they measure, the machine record beside their results, the bookkeeping of their
//! polls, the scenarios of the side-by-side comparisons together with the corosync-eip and
//! Pacemaker runners that cause and undo them, and the summaries of their tables.
//!
//! Each driver keeps what is its own: what it polls, its trial record and its report.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::machine::{sh, Facts, PacemakerStack, Totem};
use crate::timing::{corosync_log_time, fmt_ms, median, ms, parse_rfc3339};
use crate::{repo_root, unix_now, wait_exec, EipState, Lab};

// ---------------------------------------------------------------------------------------------
// the daemon under test

/// Runtime override of the daemon binary a benchmark measures: `bench/run.sh` points it at
/// the build it made.
pub const BENCH_BIN_ENV: &str = "BENCH_DAEMON_BIN";

/// `$BENCH_DAEMON_BIN` if set, else `default()`.
pub fn daemon_bin_or(default: impl FnOnce() -> PathBuf) -> PathBuf {
    std::env::var_os(BENCH_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default)
}

/// `$BENCH_DAEMON_BIN` if set, else `<repo>/target/release/corosync-eip`: the comparisons and
/// the scale run measure the build a user would install.
pub fn release_bin() -> PathBuf {
    daemon_bin_or(|| repo_root().join("target/release/corosync-eip"))
}

// ---------------------------------------------------------------------------------------------
// the machine record

/// The machine record a benchmark writes beside its results: timings only mean something
/// together with the CPU, the load and the versions they were measured with. Its fields are
/// part of the results' format; the optional ones are absent from the results of a benchmark
/// that does not record them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    /// When the run (or the section) started, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// `nproc`.
    pub nproc: String,
    /// The CPU model.
    pub cpu: String,
    /// `uname -sr`.
    pub kernel: String,
    /// The corosync version.
    pub corosync: String,
    /// The `pacemaker` package version (comparisons with Pacemaker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacemaker: Option<String>,
    /// The `resource-agents` package version (comparisons with Pacemaker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_agents: Option<String>,
    /// `aws --version`, which the agents run for every call (comparisons with Pacemaker only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awscli: Option<String>,
    /// The moto version of the emulator.
    pub moto: String,
    /// The corosync-eip commit measured.
    pub commit: String,
    /// /proc/loadavg (1, 5, 15 min) when the run (or the section) started.
    pub load_at_start: String,
    /// /proc/loadavg when it ended, for the benchmarks that record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_at_end: Option<String>,
    /// corosync's runtime totem token (ms), read in a lab.
    pub token_ms: String,
    /// corosync's runtime consensus timeout (ms), read in a lab.
    pub consensus_ms: String,
}

impl Machine {
    /// The record of `f` (its commit marked when the sources differ from it), with the versions
    /// of the Pacemaker stack for a comparison with it. The totem timing comes later, from a
    /// lab (`with_totem`).
    pub fn from_facts(f: &Facts, pacemaker: Option<&PacemakerStack>) -> Machine {
        Machine {
            date: f.date.clone(),
            nproc: f.nproc.clone(),
            cpu: f.cpu.clone(),
            kernel: f.kernel.clone(),
            corosync: f.corosync.clone(),
            pacemaker: pacemaker.map(|p| p.pacemaker.clone()),
            resource_agents: pacemaker.map(|p| p.resource_agents.clone()),
            awscli: pacemaker.map(|p| p.awscli.clone()),
            moto: f.moto.clone(),
            commit: f.commit_marked(),
            load_at_start: f.load_at_start.clone(),
            ..Default::default()
        }
    }

    /// This record with the runtime totem timing of `lab` (node 0's corosync): each lab reads
    /// its own, since the timing bounds every failure detection measured on it.
    pub fn with_totem(&self, lab: &Lab) -> Machine {
        let totem = Totem::read(|argv| lab.node_exec(0, argv));
        Machine {
            token_ms: totem.token_ms,
            consensus_ms: totem.consensus_ms,
            ..self.clone()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// polls

/// The bookkeeping of a benchmark's polls from its event on: the pace, the number of answers
/// and the largest gap between two of them, which bounds how late any time the polls measure
/// can be.
#[derive(Clone, Debug)]
pub struct Polls {
    period: Duration,
    started: Instant,
    last: f64,
    count: u32,
    max_gap: f64,
}

impl Polls {
    /// Polls every `period`; the first gap is counted from the event at `t0` (unix seconds).
    pub fn new(period: Duration, t0: f64) -> Polls {
        Polls {
            period,
            started: Instant::now(),
            last: t0,
            count: 0,
            max_gap: 0.0,
        }
    }

    /// Marks the start of a poll: the period runs from here, however long the answer takes.
    pub fn begin(&mut self) {
        self.started = Instant::now();
    }

    /// Records an answer that arrived just now; returns its time (unix seconds).
    pub fn answered(&mut self) -> f64 {
        let now = unix_now();
        self.count += 1;
        self.max_gap = self.max_gap.max(now - self.last);
        self.last = now;
        now
    }

    /// Sleeps out what is left of the period begun at `begin`.
    pub fn pace(&self) {
        if let Some(rest) = self.period.checked_sub(self.started.elapsed()) {
            thread::sleep(rest);
        }
    }

    /// The answers so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The largest gap between two answers (the first counted from the event), in ms.
    pub fn max_gap_ms(&self) -> f64 {
        ms(0.0, self.max_gap)
    }
}

/// How long a condition held across polls. Each stretch runs from the first answer that
/// showed it to the first that did not, so one still open at the last answer adds nothing.
#[derive(Clone, Debug, Default)]
pub struct Stretch {
    since: Option<f64>,
    total: f64,
}

impl Stretch {
    /// Records whether the answer at `now` (unix seconds) showed the condition.
    pub fn update(&mut self, holds: bool, now: f64) {
        if holds {
            self.since.get_or_insert(now);
        } else if let Some(s) = self.since.take() {
            self.total += now - s;
        }
    }

    /// The closed stretches' total, in ms.
    pub fn ms(&self) -> f64 {
        ms(0.0, self.total)
    }
}

/// The node whose instance or ENI an answer of DescribeAddresses shows the EIP on.
pub fn eip_node(lab: &Lab, st: &EipState) -> Option<usize> {
    st.instance_id
        .as_deref()
        .or(st.network_interface_id.as_deref())
        .and_then(|id| lab.node_of(id))
}

/// When node i's daemon first logged, at or after `t0`, a line that contains every one of
/// `needles` and none of `unless` (unix seconds, from the line's RFC 3339 prefix).
pub fn daemon_log_time(
    lab: &Lab,
    i: usize,
    t0: f64,
    needles: &[&str],
    unless: &[&str],
) -> Option<f64> {
    lab.daemon_log(i)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)) && !unless.iter().any(|n| l.contains(n)))
        .filter_map(|l| parse_rfc3339(l.split_whitespace().next()?))
        .find(|&t| t >= t0)
}

// ---------------------------------------------------------------------------------------------
// scenarios of the side-by-side comparisons

/// The events the comparisons put each system through, in the order they run and are
/// reported. Each driver gives them its own titles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// kill -9 corosync and the HA daemons on the holder (a node failure).
    HardFailure,
    /// The operator moves the address to the other node.
    Switchover,
    /// The holder's HA service is stopped (SIGTERM, what `systemctl stop` sends).
    ProcessStop,
}

impl Scenario {
    /// Every scenario, in run and report order.
    pub const ALL: [Scenario; 3] = [
        Scenario::HardFailure,
        Scenario::Switchover,
        Scenario::ProcessStop,
    ];

    /// The name in the results (a trial's `scenario`) and in the tables.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::HardFailure => "hard_failure",
            Scenario::Switchover => "switchover",
            Scenario::ProcessStop => "process_stop",
        }
    }
}

/// The event of a trial: its time zero and, for a switchover, the command that causes it
/// (still running: whether its return is a measurement of its own depends on the command).
pub struct Event {
    /// Time zero, unix seconds.
    pub t0: f64,
    command: Option<MoveCommand>,
}

/// The command of a switchover.
enum MoveCommand {
    /// `corosync-eip move`: it returns once the move is done, so its return is timed and its
    /// failure fails the trial.
    Timed(Child),
    /// `crm_resource --move`: it returns once its constraints are in the CIB, before anything
    /// moves, so its return says nothing about the failover.
    Untimed(Child),
}

impl Event {
    fn at(t0: f64) -> Event {
        Event { t0, command: None }
    }

    /// Starts the move command of a switchover, time zero as it starts; a timed command's
    /// stderr is kept for its failure message.
    fn spawn(mut cmd: Command, timed: bool) -> Result<Event> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if timed { Stdio::piped() } else { Stdio::null() });
        let t0 = unix_now();
        let child = cmd.spawn()?;
        let command = if timed {
            MoveCommand::Timed(child)
        } else {
            MoveCommand::Untimed(child)
        };
        Ok(Event {
            t0,
            command: Some(command),
        })
    }

    /// Waits for the event's command, once the address moved: the ms from `t0` until a timed
    /// command returned (or its failure, with what it wrote on stderr); None for no command or
    /// an untimed one.
    pub fn command_returned(self) -> Result<Option<f64>> {
        match self.command {
            None => Ok(None),
            Some(MoveCommand::Untimed(mut c)) => {
                c.wait()?;
                Ok(None)
            }
            Some(MoveCommand::Timed(mut c)) => {
                let st = c.wait()?;
                let returned = ms(self.t0, unix_now());
                if !st.success() {
                    let mut e = String::new();
                    use std::io::Read as _;
                    let _ = c.stderr.take().map(|mut s| s.read_to_string(&mut e));
                    bail!("corosync-eip move failed ({st}): {e}");
                }
                Ok(Some(returned))
            }
        }
    }
}

/// Restarts node h's corosync and waits until every node is quorate with every member, so
/// that the next trial starts with a whole cluster.
fn restart_corosync(lab: &mut Lab, h: usize) -> Result<()> {
    lab.start_corosync(h)?;
    let all: Vec<usize> = (0..lab.node_count()).collect();
    lab.wait_quorate(&all, all.len(), Duration::from_secs(30))
}

// ---------------------------------------------------------------------------------------------
// corosync-eip in a comparison (one resource per lab)

/// Whether every running daemon is synced and names node `h` the holder of the first resource,
/// and `h`'s own daemon says "held".
pub fn daemons_agree(lab: &Lab, h: usize) -> Result<bool> {
    for i in 0..lab.node_count() {
        if !lab.daemon_running(i) {
            continue;
        }
        let st = lab.daemon_status_json(i)?;
        if st["synced"] != serde_json::Value::Bool(true) {
            return Ok(false);
        }
        let r = &st["resources"][0];
        if r["holder"]["node_id"].as_u64() != Some(lab.node_id(h) as u64) {
            return Ok(false);
        }
        if i == h && r["state"].as_str() != Some("held") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Waits (≤ `timeout`) until `holder` (what AWS shows) names a node the daemons agree on
/// (`daemons_agree`); returns that node.
pub fn ours_steady(
    lab: &Lab,
    timeout: Duration,
    mut holder: impl FnMut(&Lab) -> Result<Option<usize>>,
) -> Result<usize> {
    lab.wait_for("corosync-eip steady (held, all synced)", timeout, || {
        let Some(h) = holder(lab)? else {
            return Ok(None);
        };
        Ok(daemons_agree(lab, h)?.then_some(h))
    })
}

/// Causes `sc` on corosync-eip's holder `h`: SIGKILL to corosync then to the daemon;
/// `corosync-eip move <resource> --to <other>` run on `h`; SIGTERM to the daemon.
pub fn ours_cause(
    lab: &mut Lab,
    sc: Scenario,
    h: usize,
    other: usize,
    resource: &str,
) -> Result<Event> {
    Ok(match sc {
        Scenario::HardFailure => {
            let t0 = unix_now();
            lab.kill_corosync(h, Signal::SIGKILL);
            lab.kill_daemon(h);
            Event::at(t0)
        }
        Scenario::Switchover => {
            let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
            let to = lab.node_id(other).to_string();
            let cmd = lab.node_command(h, &[&bin, "move", resource, "--to", &to]);
            Event::spawn(cmd, true)?
        }
        Scenario::ProcessStop => {
            let t0 = unix_now();
            lab.signal_daemon(h, Signal::SIGTERM)?;
            Event::at(t0)
        }
    })
}

/// Brings corosync-eip's old holder `h` back after `sc`: corosync and the daemon restarted
/// after a hard failure, the daemon after a stop; a switchover left it running.
pub fn ours_restore(lab: &mut Lab, sc: Scenario, h: usize) -> Result<()> {
    match sc {
        Scenario::HardFailure => {
            restart_corosync(lab, h)?;
            lab.start_daemon(h)?;
        }
        Scenario::ProcessStop => {
            lab.wait_daemon_exit(h, Duration::from_secs(15))?;
            lab.start_daemon(h)?;
        }
        Scenario::Switchover => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pacemaker in a comparison

/// How a comparison runs Pacemaker: what it manages and the bounds of its waits.
#[derive(Clone, Debug)]
pub struct PacemakerSpec {
    /// `output` of the AWS CLI profile the agents use (aws-vpc-route53 parses `text`).
    pub aws_output: &'static str,
    /// The resource `crm_resource --move/--clear/--cleanup` act on: a group or a primitive.
    pub resource: &'static str,
    /// The primitives, in start order: where they run is where the resource runs, and the
    /// first one's start is when Pacemaker began to move it.
    pub primitives: &'static [&'static str],
    /// Bound of the wait for a steady cluster, and of each `crm_resource --wait`.
    pub steady_timeout: Duration,
    /// Whether a failed operation is cleaned up (once per wait) while waiting for a steady
    /// cluster, as an operator would: on a loaded machine a timed-out monitor blocks the
    /// resource for good.
    pub cleanup_failed: bool,
    /// How long pacemakerd may take to stop its resources after SIGTERM before it is killed.
    pub stop_timeout: Duration,
}

/// Pacemaker on a lab: pacemakerd in each node namespace (with per-node bind mounts on
/// /var/lib/pacemaker and /var/log/pacemaker), the agents' AWS CLI pointed at the emulator,
/// and a second IMDS responder where the agents look for IMDS. It owns the lab so that
/// dropping it kills Pacemaker before the lab is torn down.
pub struct PacemakerCluster {
    spec: PacemakerSpec,
    pacemakerd: Vec<Option<Child>>,
    imds80: Vec<Option<Child>>,
    wrapper: PathBuf,
    // dropped last: the lab's teardown after our processes are gone
    lab: Lab,
}

/// What crm_mon says: online nodes, the nodes each of our primitives runs on, the DC, whether
/// any of our primitives failed.
struct CrmMon {
    online: Vec<String>,
    running: std::collections::BTreeMap<String, Vec<String>>,
    dc: Option<String>,
    failed: bool,
}

impl Drop for PacemakerCluster {
    fn drop(&mut self) {
        for i in 0..self.pacemakerd.len() {
            self.kill_pacemaker(i, Signal::SIGKILL);
            if let Some(mut c) = self.imds80[i].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl PacemakerCluster {
    /// Starts Pacemaker on every node of `lab` with STONITH off and resource stickiness
    /// INFINITY; returns once every node is online with a DC, before any resource exists
    /// (`create_resources`).
    pub fn start(lab: Lab, spec: PacemakerSpec) -> Result<PacemakerCluster> {
        let work = lab.spec().work_dir.clone();
        // the agents pass --profile default, and the AWS CLI v2 ignores AWS_ENDPOINT_URL: a
        // profile of the lab's own and a wrapper adding --endpoint-url
        let aws = work.join("aws");
        fs::create_dir_all(&aws)?;
        fs::write(
            aws.join("config"),
            format!(
                "[default]\nregion = us-east-1\noutput = {}\n",
                spec.aws_output
            ),
        )?;
        fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )?;
        let wrapper = work.join("aws-lab");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# the lab's AWS CLI: Debian's /usr/bin/aws (v2) pointed at the emulator\n\
                 export AWS_CONFIG_FILE={c} AWS_SHARED_CREDENTIALS_FILE={k} AWS_PAGER=''\n\
                 exec /usr/bin/aws --endpoint-url {url} \"$@\"\n",
                c = aws.join("config").display(),
                k = aws.join("credentials").display(),
                url = lab.emulator_url()
            ),
        )?;
        sh(&format!("chmod 0755 {}", wrapper.display()));
        let n = lab.node_count();
        // built before anything starts, so that a failure below still kills what did start
        let mut pm = PacemakerCluster {
            spec,
            pacemakerd: (0..n).map(|_| None).collect(),
            imds80: (0..n).map(|_| None).collect(),
            wrapper,
            lab,
        };
        for i in 0..n {
            pm.prepare_node(i)?;
        }
        for i in 0..n {
            pm.start_pacemaker(i)?;
        }
        pm.lab.wait_for(
            "pacemaker: both nodes online with a DC",
            Duration::from_secs(120),
            || {
                let Ok(m) = pm.mon(0) else {
                    return Ok(None);
                };
                Ok((m.online.len() == n && m.dc.is_some()).then_some(()))
            },
        )?;
        pm.exec(
            0,
            &[
                "/usr/sbin/crm_attribute",
                "--type",
                "crm_config",
                "--name",
                "stonith-enabled",
                "--update",
                "false",
            ],
        )?;
        pm.exec(
            0,
            &[
                "/usr/sbin/crm_attribute",
                "--type",
                "rsc_defaults",
                "--name",
                "resource-stickiness",
                "--update",
                "INFINITY",
            ],
        )?;
        Ok(pm)
    }

    /// The lab Pacemaker runs on.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The AWS CLI wrapper to give the agents as their `awscli` parameter.
    pub fn wrapper(&self) -> &Path {
        &self.wrapper
    }

    /// The pid of node i's pacemakerd, while it runs.
    pub fn pacemakerd_pid(&self, i: usize) -> Option<u32> {
        self.pacemakerd[i].as_ref().map(Child::id)
    }

    /// Runs `argv` inside node i; its stdout, or an error with what it printed if it failed.
    pub fn exec(&self, i: usize, argv: &[&str]) -> Result<String> {
        let out = self.lab.node_exec(i, argv)?;
        if !out.status.success() {
            bail!(
                "{argv:?} on node {i} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Loads the resources section of the CIB (`cibadmin --create -o resources`).
    pub fn create_resources(&self, xml: &str) -> Result<()> {
        self.exec(
            0,
            &[
                "/usr/sbin/cibadmin",
                "--create",
                "-o",
                "resources",
                "--xml-text",
                xml,
            ],
        )?;
        Ok(())
    }

    /// Waits until every node is online, the primitives run on one node and `holder` (what
    /// AWS shows) names that node, then until no transition is in flight; returns the node.
    pub fn steady(&self, mut holder: impl FnMut(&Lab) -> Result<Option<usize>>) -> Result<usize> {
        let n = self.lab.node_count();
        let mut cleaned = false;
        let h = self
            .lab
            .wait_for("pacemaker steady", self.spec.steady_timeout, || {
                let m = self.mon(0)?;
                if m.failed && self.spec.cleanup_failed && !cleaned {
                    let _ = self.exec(
                        0,
                        &[
                            "/usr/sbin/crm_resource",
                            "--cleanup",
                            "-r",
                            self.spec.resource,
                        ],
                    );
                    cleaned = true;
                }
                if m.online.len() != n || m.dc.is_none() || m.failed {
                    return Ok(None);
                }
                let Some(node) = self.running_on(&m) else {
                    return Ok(None);
                };
                let Some(h) = holder(&self.lab)? else {
                    return Ok(None);
                };
                Ok((node == self.lab.node_name(h)).then_some(h))
            })?;
        self.wait_idle(h)?;
        Ok(h)
    }

    /// `crm_resource --wait` on node i: returns once no transition is in flight.
    pub fn wait_idle(&self, i: usize) -> Result<()> {
        let timeout = format!("{}s", self.spec.steady_timeout.as_secs());
        self.exec(
            i,
            &["/usr/sbin/crm_resource", "--wait", "--timeout", &timeout],
        )?;
        Ok(())
    }

    /// Whether node h is the DC: losing the DC adds an election before anything starts.
    pub fn is_dc(&self, h: usize) -> Result<bool> {
        let m = self.mon(h)?;
        Ok(m.dc.as_deref() == Some(self.lab.node_name(h)))
    }

    /// Causes `sc` on the holder `h`: SIGKILL to corosync, pacemakerd and all its children (a
    /// node failure; STONITH is off, so nothing is fenced); `crm_resource --move --force` of
    /// the resource to `other` run on `h` (with stickiness INFINITY a plain move only ties, and
    /// `--force` also bans `h`); SIGTERM to pacemakerd (what `systemctl stop pacemaker` sends).
    pub fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        Ok(match sc {
            Scenario::HardFailure => {
                let tree = self.pacemakerd_pid(h).map(process_tree).unwrap_or_default();
                let t0 = unix_now();
                if let Some(p) = self.lab.corosync_pid(h) {
                    kill_pid(p, Signal::SIGKILL);
                }
                for p in tree {
                    kill_pid(p, Signal::SIGKILL);
                }
                self.lab.kill_corosync(h, Signal::SIGKILL); // reaps
                self.kill_pacemaker(h, Signal::SIGKILL);
                Event::at(t0)
            }
            Scenario::Switchover => {
                let to = self.lab.node_name(other).to_string();
                let cmd = self.lab.node_command(
                    h,
                    &[
                        "/usr/sbin/crm_resource",
                        "--move",
                        "--force",
                        "-r",
                        self.spec.resource,
                        "-N",
                        &to,
                    ],
                );
                Event::spawn(cmd, false)?
            }
            Scenario::ProcessStop => {
                let t0 = unix_now();
                let pid = self
                    .pacemakerd_pid(h)
                    .ok_or_else(|| anyhow!("no pacemakerd on node {h}"))?;
                kill_pid(pid, Signal::SIGTERM);
                Event::at(t0)
            }
        })
    }

    /// Brings the old holder `h` back after `sc`, the address now on `new`: corosync and
    /// Pacemaker restarted after a hard failure; once steady again (`holder` as for `steady`),
    /// the ban a switchover left on `h` lifted, or the next move would have nowhere to go;
    /// Pacemaker restarted after a stop (killed if it has not stopped within `stop_timeout`).
    pub fn restore(
        &mut self,
        sc: Scenario,
        h: usize,
        new: usize,
        holder: impl FnMut(&Lab) -> Result<Option<usize>>,
    ) -> Result<()> {
        match sc {
            Scenario::HardFailure => {
                restart_corosync(&mut self.lab, h)?;
                self.start_pacemaker(h)?;
            }
            Scenario::Switchover => {
                self.steady(holder)?;
                self.exec(
                    new,
                    &[
                        "/usr/sbin/crm_resource",
                        "--clear",
                        "-r",
                        self.spec.resource,
                    ],
                )?;
            }
            Scenario::ProcessStop => {
                if let Some(mut c) = self.pacemakerd[h].take() {
                    let deadline = Instant::now() + self.spec.stop_timeout;
                    while Instant::now() < deadline && c.try_wait()?.is_none() {
                        thread::sleep(Duration::from_millis(50));
                    }
                    if c.try_wait()?.is_none() {
                        self.pacemakerd[h] = Some(c);
                        self.kill_pacemaker(h, Signal::SIGKILL);
                    }
                }
                self.start_pacemaker(h)?;
            }
        }
        Ok(())
    }

    /// When the DC logged "Initiating start operation <first primitive>_start_0" at or after
    /// `t0` (the DC is any node still running Pacemaker; its log has whole seconds).
    pub fn start_initiated(&self, t0: f64) -> Option<f64> {
        let needle = format!(
            "Initiating start operation {}_start_0",
            self.spec.primitives[0]
        );
        let mut init: Option<f64> = None;
        for i in 0..self.lab.node_count() {
            for l in self.pacemaker_log(i).lines() {
                if l.contains(&needle) {
                    if let Some(x) = corosync_log_time(l).filter(|&x| x >= t0.floor()) {
                        init = Some(init.map_or(x, |y: f64| y.min(x)));
                    }
                }
            }
        }
        init
    }

    fn kill_pacemaker(&mut self, i: usize, sig: Signal) {
        if let Some(mut c) = self.pacemakerd[i].take() {
            for p in process_tree(c.id()) {
                kill_pid(p, sig);
            }
            let _ = c.wait();
        }
    }

    /// Pacemaker's directories and the second IMDS responder of node i.
    fn prepare_node(&mut self, i: usize) -> Result<()> {
        let dir = self.lab.node_dir(i).to_path_buf();
        let lib = dir.join("var-lib-pacemaker");
        let logd = dir.join("var-log-pacemaker");
        for s in ["cib", "pengine", "blackbox", "cores", "bundles"] {
            fs::create_dir_all(lib.join(s))?;
        }
        fs::create_dir_all(&logd)?;
        let chown = |p: &Path| {
            sh(&format!(
                "chown -R hacluster:haclient {} && chmod 0750 {}",
                p.display(),
                p.display()
            ))
        };
        chown(&lib);
        chown(&logd);
        sh(&format!("chmod 0770 {}", lib.join("cores").display()));
        self.exec(
            i,
            &[
                "/bin/mount",
                "--bind",
                &lib.to_string_lossy(),
                "/var/lib/pacemaker",
            ],
        )?;
        self.exec(
            i,
            &[
                "/bin/mount",
                "--bind",
                &logd.to_string_lossy(),
                "/var/log/pacemaker",
            ],
        )?;
        // the agents ask IMDS at 169.254.169.254:80: a second responder of the lab's kind there
        self.exec(
            i,
            &[
                "/usr/sbin/ip",
                "addr",
                "add",
                "169.254.169.254/32",
                "dev",
                "lo",
            ],
        )?;
        let mut cmd = self.lab.imds_command(i, "169.254.169.254", 80);
        let log = fs::File::create(dir.join("imds80.log"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.imds80[i] = Some(child);
        Ok(())
    }

    fn start_pacemaker(&mut self, i: usize) -> Result<()> {
        let dir = self.lab.node_dir(i).to_path_buf();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("pacemakerd.out"))?;
        let child = self
            .lab
            .node_command(i, &["/usr/sbin/pacemakerd"])
            .env("PCMK_logfile", "/var/log/pacemaker/pacemaker.log")
            .env("PCMK_logfacility", "none")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        wait_exec(child.id());
        self.pacemakerd[i] = Some(child);
        Ok(())
    }

    fn pacemaker_log(&self, i: usize) -> String {
        fs::read_to_string(self.lab.node_dir(i).join("var-log-pacemaker/pacemaker.log"))
            .unwrap_or_default()
    }

    /// crm_mon's view from node i, from its XML (the few tags read need no XML parser).
    fn mon(&self, i: usize) -> Result<CrmMon> {
        let xml = self.exec(i, &["/usr/sbin/crm_mon", "-1", "--output-as=xml"])?;
        let attr = |tag: &str, name: &str| -> Option<String> {
            let k = format!(" {name}=\"");
            let s = tag.find(&k)? + k.len();
            Some(tag[s..].split('"').next()?.to_string())
        };
        let mut m = CrmMon {
            online: vec![],
            running: Default::default(),
            dc: None,
            failed: false,
        };
        let mut in_nodes = false;
        let mut res: Option<String> = None;
        for raw in xml.split('<').skip(1) {
            let tag = raw.split('>').next().unwrap_or("");
            if tag.starts_with("nodes") {
                in_nodes = true;
            } else if tag.starts_with("/nodes") {
                in_nodes = false;
            } else if tag.starts_with("resource ") {
                let id = attr(tag, "id").unwrap_or_default();
                if self.spec.primitives.contains(&id.as_str()) {
                    if attr(tag, "failed").as_deref() == Some("true") {
                        m.failed = true;
                    }
                    m.running.entry(id.clone()).or_default();
                    // a stopped primitive is one self-closing tag: no nodes follow
                    res = (!tag.ends_with('/')).then_some(id);
                }
            } else if tag.starts_with("/resource") {
                res = None;
            } else if tag.starts_with("node ") && in_nodes {
                if attr(tag, "online").as_deref() == Some("true") {
                    m.online.push(attr(tag, "name").unwrap_or_default());
                }
            } else if tag.starts_with("node ") {
                if let Some(r) = &res {
                    m.running
                        .entry(r.clone())
                        .or_default()
                        .push(attr(tag, "name").unwrap_or_default());
                }
            } else if tag.starts_with("current_dc")
                && attr(tag, "present").as_deref() == Some("true")
            {
                m.dc = attr(tag, "name");
            }
        }
        Ok(m)
    }

    /// The node every primitive runs on, when they all run on exactly that one node.
    fn running_on(&self, m: &CrmMon) -> Option<String> {
        let first = m.running.get(self.spec.primitives[0])?;
        if first.len() != 1 {
            return None;
        }
        self.spec
            .primitives
            .iter()
            .all(|p| m.running.get(*p) == Some(first))
            .then(|| first[0].clone())
    }
}

// ---------------------------------------------------------------------------------------------
// processes

/// Every /proc pid whose ancestry includes `root` (root included): what a node failure kills,
/// and what an idle window's cost counts.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut k = 0;
    while k < out.len() {
        let p = out[k];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        k += 1;
    }
    out
}

/// Best effort: the process may be gone already.
fn kill_pid(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

// ---------------------------------------------------------------------------------------------
// summaries

/// (min, median, max) of `v`; NaN for each when `v` is empty.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    let med = median(&mut s);
    (
        s.first().copied().unwrap_or(f64::NAN),
        med,
        s.last().copied().unwrap_or(f64::NAN),
    )
}

/// The median of what `f` gives for `items` (those it gives nothing for left out), for a
/// table: "–" when none gives anything.
pub fn med_opt<T>(items: &[&T], f: impl Fn(&T) -> Option<f64>) -> String {
    let mut v: Vec<f64> = items.iter().filter_map(|t| f(t)).collect();
    if v.is_empty() {
        return "–".into();
    }
    fmt_ms(median(&mut v))
}
