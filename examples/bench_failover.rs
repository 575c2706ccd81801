//! Failover benchmark: corosync-eip against Pacemaker + `ocf:heartbeat:awseip` + the AWS CLI,
//! side by side on the same namespace lab (tests/lab: real corosync, moto as EC2 with a request
//! log, per-node IMDSv2). Run it through `bench/run.sh` (see docs/benchmark.md); it needs root,
//! `scripts/setup.sh`, `bench/setup.sh` and a release build of the daemon.
//!
//!   bench_failover [--trials N] [--quick] [--systems ours,pacemaker] [--no-idle] [--idle-secs S]
//!                  [--render-only]
//!
//! Every section's raw results go to `bench/results/<section>.json`; `docs/benchmark.md` is
//! rendered from whatever sections exist there, so a partial run keeps the others. The scale
//! run (every address kind, 16 nodes) is `examples/bench_scale.rs`.
//!
//! Measurement: the event (kill, move command, SIGTERM) is time zero; from then on the harness
//! polls DescribeAddresses from the emulator's own namespace every 10 ms (one call takes a few
//! ms), and the first answer that shows the address on another node ends the trial. Time the
//! address was associated with nothing is measured by the same polls.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use lab::timing::{corosync_log_time, corosync_membership_after, fmt_ms, median, ms, parse_rfc3339};
use lab::machine::{sh, Facts, PacemakerStack, Totem};
use lab::{unix_now, Lab, LabSpec, Signal};
use serde::{Deserialize, Serialize};

/// DescribeAddresses poll period.
const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// arguments

#[derive(Parser, Debug)]
#[command(
    about = "Failover benchmark: corosync-eip against Pacemaker + ocf:heartbeat:awseip on the namespace lab",
    long_about = "Failover benchmark: corosync-eip against Pacemaker + ocf:heartbeat:awseip on the \
                  namespace lab. Writes bench/results/<section>.json and regenerates \
                  docs/benchmark.md from whatever sections exist there. Needs root, \
                  scripts/setup.sh, bench/setup.sh and a release build of the daemon; run it \
                  through ./bench/run.sh."
)]
struct Args {
    /// Trials per scenario and system [default: 10, 3 with --quick].
    #[arg(long, value_name = "N")]
    trials: Option<usize>,
    /// Short run: 3 trials per scenario and a 15 s idle window, unless given explicitly.
    #[arg(long)]
    quick: bool,
    /// Systems to run the failover trials and idle window on, comma-separated
    /// [default: ours,pacemaker].
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["ours", "pacemaker"], hide_default_value = true)]
    systems: Vec<SystemKind>,
    /// Skip the idle-cost window after the trials.
    #[arg(long)]
    no_idle: bool,
    /// Length of the idle-cost window in seconds [default: 60, 15 with --quick].
    #[arg(long, value_name = "S")]
    idle_secs: Option<u64>,
    /// Measure nothing: regenerate docs/benchmark.md from bench/results/.
    #[arg(long)]
    render_only: bool,
}

/// A system under test, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SystemKind {
    /// corosync-eip.
    Ours,
    /// Pacemaker + ocf:heartbeat:awseip.
    Pacemaker,
}

/// What a run does, resolved from the arguments.
struct Plan {
    trials: usize,
    systems: Vec<SystemKind>,
    idle: bool,
    idle_secs: u64,
    render_only: bool,
}

impl Args {
    fn plan(self) -> Plan {
        let mut systems = Vec::new();
        // the order of the sections, whatever the order on the command line
        for kind in [SystemKind::Ours, SystemKind::Pacemaker] {
            if self.systems.contains(&kind) {
                systems.push(kind);
            }
        }
        Plan {
            trials: self.trials.unwrap_or(if self.quick { 3 } else { 10 }),
            systems,
            idle: !self.no_idle,
            idle_secs: self.idle_secs.unwrap_or(if self.quick { 15 } else { 60 }),
            render_only: self.render_only,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scenarios

/// The events each system is put through, in the order they run and are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// kill -9 corosync and the cluster daemons on the holder (a node failure).
    HardFailure,
    /// The operator moves the address to the other node.
    Switchover,
    /// The holder's HA service is stopped (SIGTERM, what `systemctl stop` sends).
    ProcessStop,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::HardFailure, Scenario::Switchover, Scenario::ProcessStop];

    /// The name in the results (`Trial::scenario`) and in the tables.
    fn key(self) -> &'static str {
        match self {
            Scenario::HardFailure => "hard_failure",
            Scenario::Switchover => "switchover",
            Scenario::ProcessStop => "process_stop",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::HardFailure => "hard failure of the holder (kill -9 corosync + cluster daemons)",
            Scenario::Switchover => "planned switchover (`crm_resource --move` / `corosync-eip move`)",
            Scenario::ProcessStop => "holder stops its HA service (SIGTERM corosync-eip / stop pacemaker)",
        }
    }

    /// The median of the earlier measurement (/work/shared/design) shown when the baseline was
    /// not run side by side.
    fn reference_baseline_ms(self) -> Option<f64> {
        match self {
            Scenario::HardFailure => Some(3500.0),
            Scenario::Switchover => Some(6430.0),
            Scenario::ProcessStop => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// results

/// The machine record of every section; its fields are part of the results' format.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Machine {
    date: String,
    nproc: String,
    cpu: String,
    kernel: String,
    corosync: String,
    pacemaker: String,
    resource_agents: String,
    awscli: String,
    moto: String,
    commit: String,
    load_at_start: String,
    token_ms: String,
    consensus_ms: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Trial {
    system: String,
    scenario: String,
    trial: usize,
    from_node: u32,
    to_node: u32,
    /// event → first DescribeAddresses answer showing the new holder
    visible_ms: f64,
    /// how long the polls saw the address associated with nothing
    unassociated_ms: f64,
    polls: u32,
    max_poll_gap_ms: f64,
    /// event → survivor's corosync log "A new membership ... Members left"
    corosync_membership_ms: Option<f64>,
    /// event → the survivor's daemon logged "CPG membership changed" with a departure (ours)
    cpg_confchg_ms: Option<f64>,
    /// ours: from the failover timeline (relative to detection)
    elected_ms: Option<f64>,
    associate_sent_ms: Option<f64>,
    verified_ms: Option<f64>,
    /// ours: event → detected_at of the timeline
    detected_ms: Option<f64>,
    /// event → the move command returned (switchover)
    command_returned_ms: Option<f64>,
    /// baseline: event → the DC logged "Initiating start operation"
    pcmk_start_initiated_ms: Option<f64>,
    /// event → first mutating call (Associate/Disassociate) arriving at EC2, and which
    first_mutation_ms: Option<f64>,
    first_mutation: Option<String>,
    /// event → AssociateAddress from the new holder arriving at EC2
    associate_at_ec2_ms: Option<f64>,
    /// EC2 calls from cluster nodes in [event, visible], by action
    calls: BTreeMap<String, u32>,
    /// baseline: the killed/stopped/moved-from node was the DC
    holder_was_dc: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct FailoverSection {
    system: String,
    machine: Machine,
    setup: String,
    trials: Vec<Trial>,
    notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct IdleCost {
    system: String,
    window_s: f64,
    /// per process: name, rss kB at end, cpu seconds in the window
    processes: Vec<(String, u64, f64)>,
    calls_in_window: BTreeMap<String, u32>,
    calls_per_hour: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CostSection {
    machine: Machine,
    idle: Vec<IdleCost>,
}

fn results_dir() -> PathBuf {
    lab::repo_root().join("bench/results")
}

fn save<T: Serialize>(name: &str, v: &T) -> Result<()> {
    fs::create_dir_all(results_dir())?;
    let p = results_dir().join(format!("{name}.json"));
    fs::write(&p, serde_json::to_string_pretty(v)? + "\n")?;
    eprintln!("bench: wrote {}", p.display());
    Ok(())
}

fn load<T: for<'a> Deserialize<'a>>(name: &str) -> Option<T> {
    let p = results_dir().join(format!("{name}.json"));
    let text = fs::read_to_string(p).ok()?;
    serde_json::from_str(&text).ok()
}

// ---------------------------------------------------------------------------------------------
// helpers

impl Machine {
    /// The sections' machine record; token and consensus are read later, in each lab.
    fn from_facts(f: &Facts, pm: &PacemakerStack) -> Machine {
        Machine {
            date: f.date.clone(),
            nproc: f.nproc.clone(),
            cpu: f.cpu.clone(),
            kernel: f.kernel.clone(),
            corosync: f.corosync.clone(),
            pacemaker: pm.pacemaker.clone(),
            resource_agents: pm.resource_agents.clone(),
            awscli: pm.awscli.clone(),
            moto: f.moto.clone(),
            commit: f.commit.clone(),
            load_at_start: f.load_at_start.clone(),
            token_ms: String::new(),
            consensus_ms: String::new(),
        }
    }

    /// This record with the runtime totem timing of `lab` (each section has its own lab).
    fn with_totem(&self, lab: &Lab) -> Machine {
        let totem = Totem::read(|argv| lab.node_exec(0, argv));
        Machine { token_ms: totem.token_ms, consensus_ms: totem.consensus_ms, ..self.clone() }
    }
}

/// All /proc pids whose ancestry includes `root` (root included).
fn process_tree(root: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((_, rest)) = stat.rsplit_once(')') else { continue };
            let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
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

/// (comm, rss kB, utime+stime+cutime+cstime in clock ticks) of a pid.
fn proc_usage(pid: u32) -> Option<(String, u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let comm = stat.split_once('(')?.1.rsplit_once(')')?.0.to_string();
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // after ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = n(11) + n(12) + n(13) + n(14);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((comm, rss, ticks))
}

fn kill_pid(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Observation of one trial from outside (DescribeAddresses polls).
struct Obs {
    t_visible: f64,
    to: usize,
    unassociated_ms: f64,
    polls: u32,
    max_gap_ms: f64,
}

fn observe(lab: &Lab, alloc: &str, old: usize, t0: f64, timeout: Duration) -> Result<Obs> {
    let mut unassoc_since: Option<f64> = None;
    let mut unassoc = 0.0;
    let mut last = t0;
    let mut polls = 0;
    let mut max_gap: f64 = 0.0;
    let deadline = Instant::now() + timeout;
    loop {
        let started = Instant::now();
        let st = lab.eip(alloc)?;
        let now = unix_now();
        polls += 1;
        max_gap = max_gap.max(now - last);
        last = now;
        if st.association_id.is_none() {
            unassoc_since.get_or_insert(now);
        } else if let Some(s) = unassoc_since.take() {
            unassoc += now - s;
        }
        let holder = st
            .instance_id
            .as_deref()
            .or(st.network_interface_id.as_deref())
            .and_then(|id| lab.node_of(id));
        if let Some(h) = holder {
            if h != old {
                return Ok(Obs {
                    t_visible: now,
                    to: h,
                    unassociated_ms: (unassoc * 10000.0).round() / 10.0,
                    polls,
                    max_gap_ms: (max_gap * 10000.0).round() / 10.0,
                });
            }
        }
        if Instant::now() >= deadline {
            bail!("the address did not move off node {old} within {timeout:?} (last: {st:?})");
        }
        if let Some(rest) = POLL.checked_sub(started.elapsed()) {
            thread::sleep(rest);
        }
    }
}

/// Fills the EC2-side fields of a trial from the request log (calls from cluster nodes).
fn fill_calls(lab: &Lab, t: &mut Trial, t0: f64, t_end: f64, new_holder: usize) -> Result<()> {
    for r in lab.ec2_requests()? {
        if r.t < t0 || r.t > t_end || lab.node_by_ip(&r.source).is_none() {
            continue;
        }
        *t.calls.entry(r.action.clone()).or_default() += 1;
        let mutating = r.action == "AssociateAddress" || r.action == "DisassociateAddress";
        if mutating && t.first_mutation_ms.is_none() {
            t.first_mutation_ms = Some(ms(t0, r.t));
            t.first_mutation = Some(r.action.clone());
        }
        if r.action == "AssociateAddress"
            && t.associate_at_ec2_ms.is_none()
            && lab.node_by_ip(&r.source) == Some(new_holder)
        {
            t.associate_at_ec2_ms = Some(ms(t0, r.t));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the trial, common to both systems

/// The event of a trial: its time zero and, for a switchover, the command that causes it (still
/// running: its return is a measurement of its own).
struct Event {
    t0: f64,
    command: Option<Child>,
}

/// A system under test, running on its own 2-node lab with one EIP. What both systems share
/// (the DescribeAddresses polls, EC2's request log, corosync's membership) is in `trial`; the
/// methods are what differs: how the event is caused, what the system logs about it and how
/// the old holder is brought back.
trait System: Sized {
    /// `Trial::system`, `FailoverSection::system` and `IdleCost::system` in the results.
    const NAME: &'static str;
    /// The system in progress lines and error messages.
    const LABEL: &'static str;
    /// The section's headline on stderr.
    const TITLE: &'static str;
    /// The section's results file, bench/results/<RESULTS>.json.
    const RESULTS: &'static str;
    /// How long the address may take to move before a trial fails.
    const MOVE_TIMEOUT: Duration;

    /// Starts the lab and the system on it; returns once the address is held.
    fn start() -> Result<Self>;

    /// The lab the system runs on.
    fn lab(&self) -> &Lab;

    /// Waits until the cluster is steady and one node holds `alloc`; returns that node.
    fn steady(&self, alloc: &str) -> Result<usize>;

    /// Records what the trial needs to know about the cluster before the event.
    fn before_event(&self, _holder: usize, _t: &mut Trial) -> Result<()> {
        Ok(())
    }

    /// Causes the scenario's event on the holder; `other` is the node the address should go to.
    fn cause(&mut self, sc: Scenario, holder: usize, other: usize) -> Result<Event>;

    /// Waits for the event's command, after the address moved.
    fn command_done(&mut self, command: Child, t0: f64, t: &mut Trial) -> Result<()>;

    /// Fills the timings only this system reports (its logs, its status) once the address is
    /// on `new`.
    fn explain(&self, t0: f64, new: usize, t: &mut Trial) -> Result<()>;

    /// Brings the old holder back, so that the next trial starts with two working nodes.
    fn restore(&mut self, sc: Scenario, holder: usize, new: usize, alloc: &str) -> Result<()>;

    /// The processes whose cost the idle window measures, with the names they are reported by.
    fn idle_processes(&self) -> Vec<(String, u32)>;

    /// The section's `setup` line.
    fn setup(&self) -> String;
}

fn trial<S: System>(sys: &mut S, sc: Scenario, k: usize, alloc: &str) -> Result<Trial> {
    let h = sys.steady(alloc)?;
    thread::sleep(Duration::from_millis(500));
    let lab = sys.lab();
    let other = (0..lab.node_count()).find(|&j| j != h).ok_or_else(|| anyhow!("no node besides the holder"))?;
    let mut t = Trial {
        system: S::NAME.into(),
        scenario: sc.key().into(),
        trial: k,
        from_node: lab.node_id(h),
        ..Default::default()
    };
    sys.before_event(h, &mut t)?;
    let Event { t0, command } = sys.cause(sc, h, other)?;
    let obs = observe(sys.lab(), alloc, h, t0, S::MOVE_TIMEOUT)?;
    t.to_node = sys.lab().node_id(obs.to);
    t.visible_ms = ms(t0, obs.t_visible);
    t.unassociated_ms = obs.unassociated_ms;
    t.polls = obs.polls;
    t.max_poll_gap_ms = obs.max_gap_ms;
    if let Some(c) = command {
        sys.command_done(c, t0, &mut t)?;
    }
    let new = obs.to;
    sys.explain(t0, new, &mut t)?;
    if sc == Scenario::HardFailure {
        t.corosync_membership_ms = corosync_membership_after(sys.lab(), new, t0).map(|x| ms(t0, x));
    }
    fill_calls(sys.lab(), &mut t, t0, obs.t_visible, new)?;
    sys.restore(sc, h, new, alloc)?;
    Ok(t)
}

/// One system's section: every scenario `plan.trials` times, then its idle costs.
fn run_system<S: System>(plan: &Plan, machine: &Machine) -> Result<(FailoverSection, Option<IdleCost>)> {
    let mut sys = S::start()?;
    let m = machine.with_totem(sys.lab());
    let alloc = sys.lab().allocation_ids().first().cloned().ok_or_else(|| anyhow!("the lab has no EIP"))?;
    let mut trials = Vec::new();
    for sc in Scenario::ALL {
        for k in 0..plan.trials {
            let t = trial(&mut sys, sc, k, &alloc).with_context(|| format!("{} {} trial {k}", S::LABEL, sc.key()))?;
            eprintln!(
                "  {:<12} {:<13} #{k}: {:>8.1} ms (unassociated {:.0} ms) node {} → {}{}",
                S::LABEL,
                sc.key(),
                t.visible_ms,
                t.unassociated_ms,
                t.from_node,
                t.to_node,
                if t.holder_was_dc == Some(true) { " (holder was DC)" } else { "" }
            );
            trials.push(t);
        }
    }
    let idle = if plan.idle {
        sys.steady(&alloc)?;
        Some(idle_window(sys.lab(), S::NAME, &sys.idle_processes(), plan.idle_secs)?)
    } else {
        None
    };
    let sec = FailoverSection { system: S::NAME.into(), machine: m, setup: sys.setup(), trials, notes: vec![] };
    Ok((sec, idle))
}

/// Samples RSS and CPU of the given processes (and their children) and the EC2 calls of the
/// cluster over an idle window.
fn idle_window(lab: &Lab, system: &str, pids: &[(String, u32)], secs: u64) -> Result<IdleCost> {
    eprintln!("  {system}: idle window of {secs} s");
    let tick = sh("getconf CLK_TCK").parse::<f64>().unwrap_or(100.0);
    let before: Vec<Option<(String, u64, u64)>> = pids.iter().map(|(_, p)| proc_usage(*p)).collect();
    let t0 = unix_now();
    thread::sleep(Duration::from_secs(secs));
    let t1 = unix_now();
    let mut processes = Vec::new();
    for ((name, p), b) in pids.iter().zip(before) {
        if let (Some(b), Some(a)) = (b, proc_usage(*p)) {
            processes.push((name.clone(), a.1, (a.2.saturating_sub(b.2)) as f64 / tick));
        }
    }
    let mut calls = BTreeMap::new();
    let mut n = 0u32;
    for r in lab.ec2_requests()? {
        if r.t >= t0 && r.t <= t1 && lab.node_by_ip(&r.source).is_some() {
            *calls.entry(r.action).or_default() += 1;
            n += 1;
        }
    }
    Ok(IdleCost {
        system: system.into(),
        window_s: ((t1 - t0) * 10.0).round() / 10.0,
        processes,
        calls_in_window: calls,
        calls_per_hour: n as f64 * 3600.0 / (t1 - t0),
    })
}

// ---------------------------------------------------------------------------------------------
// corosync-eip

fn release_bin() -> PathBuf {
    std::env::var_os("BENCH_DAEMON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| lab::repo_root().join("target/release/corosync-eip"))
}

fn ours_config(lab: &Lab) -> String {
    // as the baseline: monitor every 10 s; everything else the defaults
    let mut s = String::from("[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"10s\"\n");
    for (k, a) in lab.allocation_ids().iter().enumerate() {
        s += &format!("\n[[eip]]\nname = \"eip{}\"\nallocation_id = \"{a}\"\n", k + 1);
    }
    s
}

/// Waits until EC2 shows the EIP on a node whose daemon says "held" and every running daemon is
/// synced and agrees on the holder. Returns the holder.
fn ours_steady(lab: &Lab, alloc: &str) -> Result<usize> {
    lab.wait_for("corosync-eip steady (held, all synced)", Duration::from_secs(60), || {
        let Some(h) = lab.eip_holder(alloc)? else { return Ok(None) };
        for i in 0..lab.node_count() {
            if !lab.daemon_running(i) {
                continue;
            }
            let st = lab.daemon_status_json(i)?;
            if st["synced"] != serde_json::Value::Bool(true) {
                return Ok(None);
            }
            let r = &st["resources"][0];
            if r["holder"]["node_id"].as_u64() != Some(lab.node_id(h) as u64) {
                return Ok(None);
            }
            if i == h && r["state"].as_str() != Some("held") {
                return Ok(None);
            }
        }
        Ok(Some(h))
    })
}

fn log_time_prefix(line: &str) -> Option<f64> {
    parse_rfc3339(line.split_whitespace().next()?)
}

/// corosync-eip, the release binary, on lab `bch`.
struct CorosyncEip {
    lab: Lab,
}

impl System for CorosyncEip {
    const NAME: &'static str = "corosync-eip";
    const LABEL: &'static str = "corosync-eip";
    const TITLE: &'static str = "corosync-eip";
    const RESULTS: &'static str = "failover-ours";
    const MOVE_TIMEOUT: Duration = Duration::from_secs(60);

    fn start() -> Result<Self> {
        let mut spec = LabSpec::new("bch", 230, 2);
        spec.daemon_bin = release_bin();
        if !spec.daemon_bin.exists() {
            bail!("{} is missing: cargo build --release --bin corosync-eip", spec.daemon_bin.display());
        }
        let mut lab = Lab::start(spec)?;
        let conf = ours_config(&lab);
        for i in 0..lab.node_count() {
            lab.write_daemon_config(i, &conf)?;
            lab.start_daemon(i)?;
        }
        let alloc = lab.allocation_ids().first().cloned().ok_or_else(|| anyhow!("the lab has no EIP"))?;
        ours_steady(&lab, &alloc)?;
        Ok(CorosyncEip { lab })
    }

    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn steady(&self, alloc: &str) -> Result<usize> {
        ours_steady(&self.lab, alloc)
    }

    fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        let lab = &mut self.lab;
        Ok(match sc {
            Scenario::HardFailure => {
                let t0 = unix_now();
                lab.kill_corosync(h, Signal::SIGKILL);
                lab.kill_daemon(h);
                Event { t0, command: None }
            }
            Scenario::Switchover => {
                let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
                let to = lab.node_id(other).to_string();
                let mut cmd = lab.node_command(h, &[&bin, "move", "eip1", "--to", &to]);
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
                let t0 = unix_now();
                Event { t0, command: Some(cmd.spawn()?) }
            }
            Scenario::ProcessStop => {
                let t0 = unix_now();
                lab.signal_daemon(h, Signal::SIGTERM)?;
                Event { t0, command: None }
            }
        })
    }

    fn command_done(&mut self, mut c: Child, t0: f64, t: &mut Trial) -> Result<()> {
        let st = c.wait()?;
        t.command_returned_ms = Some(ms(t0, unix_now()));
        if !st.success() {
            let mut e = String::new();
            use std::io::Read as _;
            let _ = c.stderr.take().map(|mut s| s.read_to_string(&mut e));
            bail!("corosync-eip move failed ({st}): {e}");
        }
        Ok(())
    }

    fn explain(&self, t0: f64, new: usize, t: &mut Trial) -> Result<()> {
        let lab = &self.lab;
        // the new holder's timeline; a trial without it still counts (its fields stay empty)
        let timeline = lab.wait_for("the new holder's timeline", Duration::from_secs(10), || {
            let st = lab.daemon_status(new)?;
            let lf = st.resources.first().and_then(|r| r.last_failover.clone());
            Ok(lf.filter(|lf| parse_rfc3339(&lf.detected_at).is_some_and(|d| d >= t0 - 0.001)))
        });
        if let Ok(lf) = timeline {
            t.detected_ms = parse_rfc3339(&lf.detected_at).map(|d| ms(t0, d));
            t.elected_ms = Some(lf.elected_ms as f64);
            t.associate_sent_ms = lf.associate_sent_ms.map(|m| m as f64);
            t.verified_ms = Some(lf.verified_ms as f64);
        }
        t.cpg_confchg_ms = lab
            .daemon_log(new)
            .lines()
            .filter(|l| l.contains("CPG membership changed") && !l.contains("left=[]"))
            .filter_map(log_time_prefix)
            .find(|&x| x >= t0)
            .map(|x| ms(t0, x));
        Ok(())
    }

    fn restore(&mut self, sc: Scenario, h: usize, _new: usize, _alloc: &str) -> Result<()> {
        let lab = &mut self.lab;
        match sc {
            Scenario::HardFailure => {
                lab.start_corosync(h)?;
                lab.wait_quorate(&[0, 1], 2, Duration::from_secs(30))?;
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

    fn idle_processes(&self) -> Vec<(String, u32)> {
        (0..self.lab.node_count())
            .filter_map(|i| self.lab.daemon_pid(i).map(|p| (format!("corosync-eip node{}", i + 1), p)))
            .collect()
    }

    fn setup(&self) -> String {
        format!(
            "2 nodes, two_node: 1, 1 EIP, release build, monitor_interval 10s, defaults otherwise; \
             daemon: {}",
            self.lab.spec().daemon_bin.display()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Pacemaker + awseip

/// Pacemaker + ocf:heartbeat:awseip on lab `bpm`, pacemakerd started in each node namespace.
struct Pacemaker {
    pacemakerd: Vec<Option<Child>>,
    imds80: Vec<Option<Child>>,
    wrapper: PathBuf,
    // dropped last: the lab's teardown after our processes are gone
    lab: Lab,
}

impl Drop for Pacemaker {
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

impl Pacemaker {
    fn kill_pacemaker(&mut self, i: usize, sig: Signal) {
        if let Some(mut c) = self.pacemakerd[i].take() {
            for p in process_tree(c.id()) {
                kill_pid(p, sig);
            }
            let _ = c.wait();
        }
    }

    fn exec(&self, i: usize, argv: &[&str]) -> Result<String> {
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

    fn prepare_node(&mut self, i: usize) -> Result<()> {
        let dir = self.lab.node_dir(i).to_path_buf();
        let lib = dir.join("var-lib-pacemaker");
        let logd = dir.join("var-log-pacemaker");
        for s in ["cib", "pengine", "blackbox", "cores", "bundles"] {
            fs::create_dir_all(lib.join(s))?;
        }
        fs::create_dir_all(&logd)?;
        let chown = |p: &Path| sh(&format!("chown -R hacluster:haclient {} && chmod 0750 {}", p.display(), p.display()));
        chown(&lib);
        chown(&logd);
        sh(&format!("chmod 0770 {}", lib.join("cores").display()));
        self.exec(i, &["/bin/mount", "--bind", &lib.to_string_lossy(), "/var/lib/pacemaker"])?;
        self.exec(i, &["/bin/mount", "--bind", &logd.to_string_lossy(), "/var/log/pacemaker"])?;
        // the agent asks IMDS at 169.254.169.254:80: a second responder of the lab's kind there
        self.exec(i, &["/usr/sbin/ip", "addr", "add", "169.254.169.254/32", "dev", "lo"])?;
        let inst = self.lab.seed_info().instances[i].clone();
        let mut cmd = self.lab.node_command(i, &[]);
        cmd.arg(lab::venv_python())
            .arg(lab::repo_root().join("tests/lab/imds.py"))
            .args(["--host", "169.254.169.254", "--port", "80"])
            .args(["--instance-id", &inst.instance_id, "--eni", &inst.eni])
            .args(["--region", "us-east-1"])
            .args(["--az", if inst.az.is_empty() { "us-east-1a" } else { &inst.az }])
            .args(["--private-ip", &inst.private_ip]);
        if !inst.mac.is_empty() {
            cmd.args(["--mac", &inst.mac]);
        }
        let log = fs::File::create(dir.join("imds80.log"))?;
        let child = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
        self.imds80[i] = Some(child);
        Ok(())
    }

    fn start_pacemaker(&mut self, i: usize) -> Result<()> {
        let dir = self.lab.node_dir(i).to_path_buf();
        let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("pacemakerd.out"))?;
        let child = self
            .lab
            .node_command(i, &["/usr/sbin/pacemakerd"])
            .env("PCMK_logfile", "/var/log/pacemaker/pacemaker.log")
            .env("PCMK_logfacility", "none")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        lab::wait_exec(child.id());
        self.pacemakerd[i] = Some(child);
        Ok(())
    }

    fn pacemaker_log(&self, i: usize) -> String {
        fs::read_to_string(self.lab.node_dir(i).join("var-log-pacemaker/pacemaker.log")).unwrap_or_default()
    }

    /// (online node names, resource's nodes, DC name) from crm_mon XML on node i.
    fn mon(&self, i: usize) -> Result<(Vec<String>, Vec<String>, Option<String>, bool)> {
        let xml = self.exec(i, &["/usr/sbin/crm_mon", "-1", "--output-as=xml"])?;
        let attr = |tag: &str, name: &str| -> Option<String> {
            let k = format!("{name}=\"");
            let s = tag.find(&k)? + k.len();
            Some(tag[s..].split('"').next()?.to_string())
        };
        let mut online = Vec::new();
        let mut running = Vec::new();
        let mut dc = None;
        let mut in_nodes = false;
        let mut in_res = false;
        let mut failed = false;
        for raw in xml.split('<').skip(1) {
            let tag = raw.split('>').next().unwrap_or("");
            if tag.starts_with("nodes") {
                in_nodes = true;
            } else if tag.starts_with("/nodes") {
                in_nodes = false;
            } else if tag.starts_with("resource ") && attr(tag, "id").as_deref() == Some("eip") {
                in_res = true;
                failed = attr(tag, "failed").as_deref() == Some("true");
            } else if tag.starts_with("/resource") {
                in_res = false;
            } else if tag.starts_with("node ") && in_nodes {
                if attr(tag, "online").as_deref() == Some("true") {
                    online.push(attr(tag, "name").unwrap_or_default());
                }
            } else if tag.starts_with("node ") && in_res {
                running.push(attr(tag, "name").unwrap_or_default());
            } else if tag.starts_with("current_dc") && attr(tag, "present").as_deref() == Some("true") {
                dc = attr(tag, "name");
            }
        }
        Ok((online, running, dc, failed))
    }
}

impl System for Pacemaker {
    const NAME: &'static str = "pacemaker+awseip";
    const LABEL: &'static str = "pacemaker";
    const TITLE: &'static str = "Pacemaker + awseip";
    const RESULTS: &'static str = "failover-pacemaker";
    // the agent's stop and start each sleep api_delay (3 s) after several AWS CLI processes
    const MOVE_TIMEOUT: Duration = Duration::from_secs(120);

    fn start() -> Result<Self> {
        let mut spec = LabSpec::new("bpm", 231, 2);
        spec.daemon_bin = release_bin();
        let lab = Lab::start(spec)?;
        let work = lab.spec().work_dir.clone();
        // the AWS CLI: the agent passes --profile default; v2 ignores AWS_ENDPOINT_URL
        let aws = work.join("aws");
        fs::create_dir_all(&aws)?;
        fs::write(aws.join("config"), "[default]\nregion = us-east-1\noutput = json\n")?;
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
        let mut pm = Pacemaker {
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
        pm.lab.wait_for("pacemaker: both nodes online with a DC", Duration::from_secs(120), || {
            let (online, _, dc, _) = match pm.mon(0) {
                Ok(v) => v,
                Err(_) => return Ok(None),
            };
            Ok((online.len() == n && dc.is_some()).then_some(()))
        })?;
        let alloc = pm.lab.allocation_ids().first().cloned().ok_or_else(|| anyhow!("the lab has no EIP"))?;
        let public_ip = pm
            .lab
            .seed_info()
            .allocations
            .first()
            .map(|a| a.public_ip.clone())
            .ok_or_else(|| anyhow!("the lab's seed has no EIP"))?;
        pm.exec(0, &["/usr/sbin/crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", "false"])?;
        pm.exec(0, &["/usr/sbin/crm_attribute", "--type", "rsc_defaults", "--name", "resource-stickiness", "--update", "INFINITY"])?;
        let prim = format!(
            "<primitive id=\"eip\" class=\"ocf\" provider=\"heartbeat\" type=\"awseip\">\
             <instance_attributes id=\"eip-ia\">\
             <nvpair id=\"eip-ia-elastic_ip\" name=\"elastic_ip\" value=\"{public_ip}\"/>\
             <nvpair id=\"eip-ia-allocation_id\" name=\"allocation_id\" value=\"{alloc}\"/>\
             <nvpair id=\"eip-ia-awscli\" name=\"awscli\" value=\"{}\"/>\
             </instance_attributes><operations>\
             <op id=\"eip-monitor-10s\" name=\"monitor\" interval=\"10s\" timeout=\"30s\"/>\
             <op id=\"eip-start-0\" name=\"start\" interval=\"0s\" timeout=\"60s\"/>\
             <op id=\"eip-stop-0\" name=\"stop\" interval=\"0s\" timeout=\"60s\"/>\
             </operations></primitive>",
            pm.wrapper.display()
        );
        pm.exec(0, &["/usr/sbin/cibadmin", "--create", "-o", "resources", "--xml-text", &prim])?;
        pm.steady(&alloc).context("pacemaker: initial start of the EIP")?;
        Ok(pm)
    }

    fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Both nodes online, the resource started on exactly one node, EC2 agrees, the cluster idle.
    fn steady(&self, alloc: &str) -> Result<usize> {
        let n = self.lab.node_count();
        let h = self.lab.wait_for("pacemaker steady", Duration::from_secs(120), || {
            let (online, running, dc, failed) = self.mon(0)?;
            if online.len() != n || running.len() != 1 || dc.is_none() || failed {
                return Ok(None);
            }
            let Some(h) = self.lab.eip_holder(alloc)? else { return Ok(None) };
            Ok((running[0] == self.lab.node_name(h)).then_some(h))
        })?;
        // no transition in flight
        self.exec(h, &["/usr/sbin/crm_resource", "--wait", "--timeout", "120s"])?;
        Ok(h)
    }

    /// Whether the holder is the DC: losing the DC adds an election before anything starts.
    fn before_event(&self, h: usize, t: &mut Trial) -> Result<()> {
        let (_, _, dc, _) = self.mon(h)?;
        t.holder_was_dc = Some(dc.as_deref() == Some(self.lab.node_name(h)));
        Ok(())
    }

    fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        Ok(match sc {
            Scenario::HardFailure => {
                let tree = self.pacemakerd[h].as_ref().map(|c| process_tree(c.id())).unwrap_or_default();
                let t0 = unix_now();
                if let Some(p) = self.lab.corosync_pid(h) {
                    kill_pid(p, Signal::SIGKILL);
                }
                for p in tree {
                    kill_pid(p, Signal::SIGKILL);
                }
                self.lab.kill_corosync(h, Signal::SIGKILL); // reaps
                self.kill_pacemaker(h, Signal::SIGKILL);
                Event { t0, command: None }
            }
            Scenario::Switchover => {
                let to = self.lab.node_name(other).to_string();
                let mut cmd =
                    self.lab.node_command(h, &["/usr/sbin/crm_resource", "--move", "--force", "-r", "eip", "-N", &to]);
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                let t0 = unix_now();
                Event { t0, command: Some(cmd.spawn()?) }
            }
            Scenario::ProcessStop => {
                let t0 = unix_now();
                let c = self.pacemakerd[h].as_ref().ok_or_else(|| anyhow!("no pacemakerd on node {h}"))?;
                kill_pid(c.id(), Signal::SIGTERM);
                Event { t0, command: None }
            }
        })
    }

    /// Not recorded: `crm_resource --move` returns once its constraints are in the CIB, before
    /// anything moves, so its return time says nothing about the failover.
    fn command_done(&mut self, mut c: Child, _t0: f64, _t: &mut Trial) -> Result<()> {
        c.wait()?;
        Ok(())
    }

    fn explain(&self, t0: f64, _new: usize, t: &mut Trial) -> Result<()> {
        // the DC's "Initiating start operation eip_start_0" (DC = a node still running pacemaker)
        let mut init: Option<f64> = None;
        for i in 0..self.lab.node_count() {
            for l in self.pacemaker_log(i).lines() {
                if l.contains("Initiating start operation eip_start_0") {
                    if let Some(x) = corosync_log_time(l).filter(|&x| x >= t0.floor()) {
                        init = Some(init.map_or(x, |y: f64| y.min(x)));
                    }
                }
            }
        }
        t.pcmk_start_initiated_ms = init.map(|x| ms(t0, x));
        Ok(())
    }

    fn restore(&mut self, sc: Scenario, h: usize, new: usize, alloc: &str) -> Result<()> {
        match sc {
            Scenario::HardFailure => {
                self.lab.start_corosync(h)?;
                self.lab.wait_quorate(&[0, 1], 2, Duration::from_secs(30))?;
                self.start_pacemaker(h)?;
            }
            Scenario::Switchover => {
                self.steady(alloc)?;
                // the move left a ban on the old holder: lift it or the next move has nowhere to go
                self.exec(new, &["/usr/sbin/crm_resource", "--clear", "-r", "eip"])?;
            }
            Scenario::ProcessStop => {
                if let Some(mut c) = self.pacemakerd[h].take() {
                    let deadline = Instant::now() + Duration::from_secs(60);
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

    /// Every process of each node's pacemakerd tree (the agent and AWS CLI runs are reaped
    /// children: their CPU shows in cutime/cstime).
    fn idle_processes(&self) -> Vec<(String, u32)> {
        let mut pids = Vec::new();
        for (i, c) in self.pacemakerd.iter().enumerate() {
            if let Some(c) = c {
                for p in process_tree(c.id()) {
                    if let Some((comm, _, _)) = proc_usage(p) {
                        pids.push((format!("{comm} node{}", i + 1), p));
                    }
                }
            }
        }
        pids
    }

    fn setup(&self) -> String {
        "2 nodes, two_node: 1, 1 EIP; stonith-enabled=false, resource-stickiness=INFINITY; \
         primitive eip ocf:heartbeat:awseip (elastic_ip, allocation_id, awscli=wrapper adding \
         --endpoint-url to /usr/bin/aws), op monitor interval=10s, start/stop timeout 60s, \
         api_delay default (3 s)"
            .into()
    }
}

// ---------------------------------------------------------------------------------------------
// report

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    let med = median(&mut s);
    (s.first().copied().unwrap_or(f64::NAN), med, s.last().copied().unwrap_or(f64::NAN))
}

fn med_opt(trials: &[&Trial], f: impl Fn(&Trial) -> Option<f64>) -> String {
    let mut v: Vec<f64> = trials.iter().filter_map(|t| f(t)).collect();
    if v.is_empty() {
        return "–".into();
    }
    fmt_ms(median(&mut v))
}

fn render() -> Result<String> {
    let ours: Option<FailoverSection> = load("failover-ours");
    let base: Option<FailoverSection> = load("failover-pacemaker");
    let costs: Option<CostSection> = load("costs");
    let mut s = String::new();
    s += "# Benchmark: corosync-eip vs Pacemaker + awseip\n\n";
    s += "Generated by `./bench/run.sh` (driver: `examples/bench_failover.rs`; raw data in \
          `bench/results/*.json`). Do not edit by hand: re-run the command.\n\n";
    s += "Both systems run on the same lab (`tests/lab`): one network + mount namespace per node, \
          real corosync (knet), moto as EC2 (patched like AWS: reassociation of an associated \
          address) with a request log, a per-node IMDSv2 responder. The harness polls \
          DescribeAddresses every 10 ms from the emulator's namespace; the event is time zero \
          and a trial ends at the first answer showing the address on the other node. \
          \"Unassociated\" is how long those polls saw the address attached to nothing.\n\n";
    let any_machine = ours.as_ref().map(|o| &o.machine).or(base.as_ref().map(|b| &b.machine));
    if let Some(m) = any_machine {
        s += "## Machine\n\n";
        s += &format!(
            "| | |\n|---|---|\n| date | {} |\n| CPUs (`nproc`) | {} |\n| CPU | {} |\n| kernel | {} |\n\
             | corosync | {} |\n| pacemaker | {} |\n| resource-agents | {} |\n| AWS CLI | {} |\n\
             | moto | {} |\n| corosync-eip commit | {} |\n| load average at start | {} |\n\
             | corosync runtime token / consensus (cmap) | {} ms / {} ms |\n\n",
            m.date, m.nproc, m.cpu, m.kernel, m.corosync, m.pacemaker, m.resource_agents, m.awscli,
            m.moto, m.commit, m.load_at_start, m.token_ms, m.consensus_ms
        );
    }
    s += "## Failover (2 nodes, 1 Elastic IP)\n\n";
    if let Some(o) = &ours {
        s += &format!("- corosync-eip: {}\n", o.setup);
    }
    if let Some(b) = &base {
        s += &format!("- Pacemaker: {}\n", b.setup);
        if b.machine.date != ours.as_ref().map(|o| o.machine.date.clone()).unwrap_or_default() {
            s += &format!("- baseline measured {} (same lab, same machine, same run of the command unless the dates differ)\n", b.machine.date);
        }
    } else {
        s += "- Pacemaker: **not measured in this run**; the reference column is the earlier \
              measurement of /work/shared/design (same lab kind and machine kind, not side by side).\n";
    }
    s += "\nTime from the event until EC2 (DescribeAddresses) shows the new holder, min / median / max:\n\n";
    s += "| scenario | corosync-eip (n) | Pacemaker + awseip (n) | ratio ours / baseline (median) | unassociated: ours / baseline (median, max) |\n|---|---|---|---|---|\n";
    let mut console = String::new();
    for scenario in Scenario::ALL {
        let sc = scenario.key();
        let pick = |sec: &Option<FailoverSection>| -> Vec<Trial> {
            sec.as_ref().map(|x| x.trials.iter().filter(|t| t.scenario == sc).cloned().collect()).unwrap_or_default()
        };
        let (o, b) = (pick(&ours), pick(&base));
        let cell = |v: &[Trial]| -> (String, f64) {
            if v.is_empty() {
                return ("–".into(), f64::NAN);
            }
            let (lo, med, hi) = stats(&v.iter().map(|t| t.visible_ms).collect::<Vec<_>>());
            (format!("{} / **{}** / {} ({})", fmt_ms(lo), fmt_ms(med), fmt_ms(hi), v.len()), med)
        };
        let (oc, om) = cell(&o);
        let (mut bc, mut bm) = cell(&b);
        if b.is_empty() {
            if let Some(r) = scenario.reference_baseline_ms() {
                bc = format!("{} median (reference, measured earlier, not side by side)", fmt_ms(r));
                bm = r;
            }
        }
        let ratio = if om.is_nan() || bm.is_nan() { "–".into() } else { format!("{:.3} (×{:.0} faster)", om / bm, bm / om) };
        let un = |v: &[Trial]| -> String {
            if v.is_empty() {
                return "–".into();
            }
            let (_, med, hi) = stats(&v.iter().map(|t| t.unassociated_ms).collect::<Vec<_>>());
            format!("{}, {}", fmt_ms(med), fmt_ms(hi))
        };
        s += &format!("| {} | {oc} | {bc} | {ratio} | {} / {} |\n", scenario.title(), un(&o), un(&b));
        console += &format!("{:<14} ours {:>10}  baseline {:>10}  ratio {}\n", sc, fmt_ms(om), fmt_ms(bm), ratio);
    }
    let gaps = |sec: &Option<FailoverSection>| -> String {
        let mut v: Vec<f64> = sec.as_ref().map(|x| x.trials.iter().map(|t| t.max_poll_gap_ms).collect()).unwrap_or_default();
        if v.is_empty() {
            return "–".into();
        }
        let hi = v.iter().cloned().fold(0.0, f64::max);
        format!("median {} / worst {}", fmt_ms(median(&mut v)), fmt_ms(hi))
    };
    s += &format!(
        "\nResolution: the largest gap between two consecutive poll answers within a trial was {} \
         (corosync-eip trials) and {} (Pacemaker trials); a trial's time is at most that much late.\n",
        gaps(&ours),
        gaps(&base)
    );
    s += "\n### Where the time goes (medians, from the event)\n\n";
    s += "corosync-eip: corosync membership = the survivor's corosync log (\"A new membership ... \
          Members left\"); CPG confchg = the daemon's \"CPG membership changed\" log line; \
          detected/elected/associate sent/verified = the daemon's failover timeline \
          (`status --json` `resources[].last_failover`, relative to detection); AssociateAddress \
          at EC2 = arrival in the emulator's request log.\n\n";
    s += "| scenario | corosync membership | CPG confchg | detected | + elected | + associate sent | + verified | AssociateAddress at EC2 | visible to the poller | move command returned | EC2 calls per failover (median) |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    for sc in Scenario::ALL.map(Scenario::key) {
        let v: Vec<&Trial> = ours.as_ref().map(|x| x.trials.iter().filter(|t| t.scenario == sc).collect()).unwrap_or_default();
        if v.is_empty() {
            continue;
        }
        let calls = {
            let mut c: Vec<f64> = v.iter().map(|t| t.calls.values().sum::<u32>() as f64).collect();
            median(&mut c)
        };
        s += &format!(
            "| {sc} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {calls} |\n",
            med_opt(&v, |t| t.corosync_membership_ms),
            med_opt(&v, |t| t.cpg_confchg_ms),
            med_opt(&v, |t| t.detected_ms),
            med_opt(&v, |t| t.elected_ms),
            med_opt(&v, |t| t.associate_sent_ms),
            med_opt(&v, |t| t.verified_ms),
            med_opt(&v, |t| t.associate_at_ec2_ms),
            med_opt(&v, |t| Some(t.visible_ms)),
            med_opt(&v, |t| t.command_returned_ms),
        );
    }
    if let Some(b) = &base {
        s += "\nPacemaker + awseip: corosync membership as above; start initiated = the DC's \
              \"Initiating start operation eip_start_0\" (pacemaker log); first mutating call and \
              AssociateAddress = arrival in the emulator's request log (each call is one AWS CLI \
              process).\n\n";
        s += "| scenario | corosync membership | start initiated | first mutating call at EC2 | AssociateAddress at EC2 | visible to the poller | EC2 calls per failover (median) | trials where the holder was the DC |\n|---|---|---|---|---|---|---|---|\n";
        for sc in Scenario::ALL.map(Scenario::key) {
            let v: Vec<&Trial> = b.trials.iter().filter(|t| t.scenario == sc).collect();
            if v.is_empty() {
                continue;
            }
            let calls = {
                let mut c: Vec<f64> = v.iter().map(|t| t.calls.values().sum::<u32>() as f64).collect();
                median(&mut c)
            };
            let first = v.iter().filter_map(|t| t.first_mutation.clone()).next().unwrap_or_default();
            s += &format!(
                "| {sc} | {} | {} | {} ({first}) | {} | {} | {calls} | {}/{} |\n",
                med_opt(&v, |t| t.corosync_membership_ms),
                med_opt(&v, |t| t.pcmk_start_initiated_ms),
                med_opt(&v, |t| t.first_mutation_ms),
                med_opt(&v, |t| t.associate_at_ec2_ms),
                med_opt(&v, |t| Some(t.visible_ms)),
                v.iter().filter(|t| t.holder_was_dc == Some(true)).count(),
                v.len()
            );
        }
    }
    if let Some(c) = &costs {
        s += "\n## Idle costs\n\n";
        s += &format!("Measured {} on the 2-node labs above after the trials, holder steady.\n\n", c.machine.date);
        s += "| system | process | RSS | CPU in the window | window |\n|---|---|---|---|---|\n";
        for ic in &c.idle {
            let mut total_rss = 0;
            let mut total_cpu = 0.0;
            for (name, rss, cpu) in &ic.processes {
                s += &format!("| {} | {name} | {:.1} MiB | {:.2} s | {:.0} s |\n", ic.system, *rss as f64 / 1024.0, cpu, ic.window_s);
                total_rss += rss;
                total_cpu += cpu;
            }
            s += &format!(
                "| {} | **total** | **{:.1} MiB** | **{:.2} s ({:.2} % of one CPU)** | {:.0} s |\n",
                ic.system,
                total_rss as f64 / 1024.0,
                total_cpu,
                total_cpu * 100.0 / ic.window_s.max(1.0),
                ic.window_s
            );
        }
        s += "\nEC2 calls while idle (whole cluster, from the request log, extrapolated):\n\n| system | calls in the window | per hour |\n|---|---|---|\n";
        for ic in &c.idle {
            let detail: Vec<String> = ic.calls_in_window.iter().map(|(a, n)| format!("{n} {a}")).collect();
            s += &format!("| {} | {} | {:.0} |\n", ic.system, if detail.is_empty() { "0".into() } else { detail.join(", ") }, ic.calls_per_hour);
        }
        s += "\nCPU includes reaped children (cutime/cstime): for Pacemaker, the agent's shell and AWS CLI processes run by pacemaker-execd.\n";
    }
    s += "\nThe scale run (every address kind on a 16-node cluster, losing the busiest node) is in \
          [benchmark-scale.md](benchmark-scale.md).\n";
    s += "\n## How each system is run\n\n";
    s += "- **Same lab, same timing.** Both use the lab's corosync.conf (knet, `token: 1000`, \
          `token_coefficient: 0`, `two_node: 1`); the runtime token/consensus above are read with \
          `corosync-cmapctl -g runtime.config.totem.token|consensus` inside a node. Each system \
          gets a fresh lab (`bch`, `bpm`).\n\
- **corosync-eip**: the release binary on both nodes, `monitor_interval = \"10s\"`, other keys \
          default. Hard failure = SIGKILL to corosync then to the daemon on the holder; \
          switchover = `corosync-eip move eip1 --to <other node id>` run on the holder; process \
          stop = SIGTERM to the daemon on the holder (what `systemctl stop` sends). After each \
          trial the node is restored (corosync + daemon restarted) and the next trial starts once \
          every daemon is synced and the holder verified, so successive trials alternate nodes.\n\
- **Pacemaker 2.1 + `ocf:heartbeat:awseip`** (Debian packages), started as `pacemakerd` in the \
          same node namespaces, with per-node bind mounts on `/var/lib/pacemaker` and \
          `/var/log/pacemaker`. CIB: `stonith-enabled=false`, \
          `rsc_defaults resource-stickiness=INFINITY`, and the equivalent of `crm configure \
          primitive eip ocf:heartbeat:awseip params elastic_ip=<ip> allocation_id=<eipalloc> \
          awscli=<wrapper> op monitor interval=10s timeout=30s op start timeout=60s op stop \
          timeout=60s` (loaded with `cibadmin`). The agent's `awscli` is a wrapper that execs \
          Debian's `/usr/bin/aws` (v2, which ignores `AWS_ENDPOINT_URL`) with `--endpoint-url` \
          and a config/credentials file holding the `[default]` profile the agent passes; the \
          agent reads the instance id from `169.254.169.254`, served in each node by a second \
          instance of the lab's IMDSv2 responder. Hard failure = SIGKILL to corosync, then to \
          pacemakerd and all its children on the holder (a node failure; STONITH is off so \
          nothing is fenced); switchover = `crm_resource --move --force -r eip -N <other>` (what \
          `crm resource move eip <other> force` runs: with stickiness INFINITY a plain move only \
          adds an INFINITY preference that ties with stickiness and nothing moves; `--force` also \
          bans the current node), then `crm_resource --clear`; process stop = SIGTERM to \
          pacemakerd on the holder (`systemctl stop pacemaker`: the resource is stopped there, \
          then started on the peer). Between trials: `crm_resource --wait` and both nodes online.\n\
- **Why Pacemaker leaves the address unassociated** on planned moves: awseip's stop runs \
          DescribeInstances (monitor), DescribeAddresses, DisassociateAddress, then sleeps \
          `api_delay` (3 s); only then does the peer's start run (DescribeInstances, \
          AssociateAddress, another 3 s sleep). Each call is one AWS CLI process (≈ 0.6 s here \
          when the machine is idle). corosync-eip issues one AssociateAddress with \
          AllowReassociation=true from the new holder, so EC2 never shows the address free.\n";
    s += "\n## Reproduce\n\n```sh\n./scripts/setup.sh && ./bench/setup.sh   # once\n./bench/run.sh            # 10 trials per scenario and system, idle costs, then the scale run\n./bench/run.sh --no-scale # without the scale run (docs/benchmark-scale.md)\n./bench/run.sh --quick    # 3 trials, 15 s idle window\n```\n";
    print!("\n{console}");
    Ok(s)
}

/// Runs one system's section and writes its results; returns its idle costs.
fn section<S: System>(plan: &Plan, machine: &Machine) -> Result<Option<IdleCost>> {
    eprintln!("== {}: {} trials per scenario", S::TITLE, plan.trials);
    let t = Instant::now();
    let (sec, idle) = run_system::<S>(plan, machine)?;
    save(S::RESULTS, &sec)?;
    eprintln!("   ({:.0} s)", t.elapsed().as_secs_f64());
    Ok(idle)
}

fn main() -> Result<()> {
    let plan = Args::parse().plan();
    if !plan.render_only {
        let facts = Facts::collect(&lab::repo_root(), &lab::venv_python());
        let machine = Machine::from_facts(&facts, &PacemakerStack::collect());
        let mut idle = Vec::new();
        let t = Instant::now();
        for &kind in &plan.systems {
            idle.extend(match kind {
                SystemKind::Ours => section::<CorosyncEip>(&plan, &machine)?,
                SystemKind::Pacemaker => section::<Pacemaker>(&plan, &machine)?,
            });
        }
        if !idle.is_empty() {
            save("costs", &CostSection { machine: machine.clone(), idle })?;
        }
        eprintln!("== total {:.0} s", t.elapsed().as_secs_f64());
    }
    let md = render()?;
    let out = lab::repo_root().join("docs/benchmark.md");
    fs::write(&out, &md)?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}
