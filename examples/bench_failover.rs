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
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use lab::bench::{
    daemon_log_time, eip_node, med_opt, ours_cause, ours_restore, ours_steady, process_tree, release_bin, stats,
    Event, Machine, PacemakerCluster, PacemakerSpec, Polls, Scenario, Stretch,
};
use lab::machine::{sh, Facts, PacemakerStack};
use lab::timing::{corosync_membership_after, fmt_ms, median, ms, parse_rfc3339};
use lab::{unix_now, Lab, LabSpec};
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

/// A scenario (`lab::bench::Scenario`: the events each system is put through) in the tables.
fn title(sc: Scenario) -> &'static str {
    match sc {
        Scenario::HardFailure => "hard failure of the holder (kill -9 corosync + cluster daemons)",
        Scenario::Switchover => "planned switchover (`crm_resource --move` / `corosync-eip move`)",
        Scenario::ProcessStop => "holder stops its HA service (SIGTERM corosync-eip / stop pacemaker)",
    }
}

/// The median of the earlier measurement (/work/shared/design) shown when the baseline was not
/// run side by side.
fn reference_baseline_ms(sc: Scenario) -> Option<f64> {
    match sc {
        Scenario::HardFailure => Some(3500.0),
        Scenario::Switchover => Some(6430.0),
        Scenario::ProcessStop => None,
    }
}

// ---------------------------------------------------------------------------------------------
// results

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

/// Observation of one trial from outside (DescribeAddresses polls).
struct Obs {
    t_visible: f64,
    to: usize,
    unassociated_ms: f64,
    polls: u32,
    max_gap_ms: f64,
}

fn observe(lab: &Lab, alloc: &str, old: usize, t0: f64, timeout: Duration) -> Result<Obs> {
    let mut polls = Polls::new(POLL, t0);
    let mut unassociated = Stretch::default();
    let deadline = Instant::now() + timeout;
    loop {
        polls.begin();
        let st = lab.eip(alloc)?;
        let now = polls.answered();
        unassociated.update(st.association_id.is_none(), now);
        if let Some(h) = eip_node(lab, &st) {
            if h != old {
                return Ok(Obs {
                    t_visible: now,
                    to: h,
                    unassociated_ms: unassociated.ms(),
                    polls: polls.count(),
                    max_gap_ms: polls.max_gap_ms(),
                });
            }
        }
        if Instant::now() >= deadline {
            bail!("the address did not move off node {old} within {timeout:?} (last: {st:?})");
        }
        polls.pace();
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
    let event = sys.cause(sc, h, other)?;
    let t0 = event.t0;
    let obs = observe(sys.lab(), alloc, h, t0, S::MOVE_TIMEOUT)?;
    t.to_node = sys.lab().node_id(obs.to);
    t.visible_ms = ms(t0, obs.t_visible);
    t.unassociated_ms = obs.unassociated_ms;
    t.polls = obs.polls;
    t.max_poll_gap_ms = obs.max_gap_ms;
    t.command_returned_ms = event.command_returned()?;
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

fn ours_config(lab: &Lab) -> String {
    // as the baseline: monitor every 10 s; everything else the defaults
    let mut s = String::from("[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"10s\"\n");
    for (k, a) in lab.allocation_ids().iter().enumerate() {
        s += &format!("\n[[eip]]\nname = \"eip{}\"\nallocation_id = \"{a}\"\n", k + 1);
    }
    s
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
        let me = CorosyncEip { lab };
        me.steady(&alloc)?;
        Ok(me)
    }

    fn lab(&self) -> &Lab {
        &self.lab
    }

    /// EC2 shows the EIP on a node whose daemon says "held", every running daemon synced and
    /// agreeing on it.
    fn steady(&self, alloc: &str) -> Result<usize> {
        ours_steady(&self.lab, Duration::from_secs(60), |lab| lab.eip_holder(alloc))
    }

    fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        ours_cause(&mut self.lab, sc, h, other, "eip1")
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
        t.cpg_confchg_ms =
            daemon_log_time(lab, new, t0, &["CPG membership changed"], &["left=[]"]).map(|x| ms(t0, x));
        Ok(())
    }

    fn restore(&mut self, sc: Scenario, h: usize, _new: usize, _alloc: &str) -> Result<()> {
        ours_restore(&mut self.lab, sc, h)
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
    pm: PacemakerCluster,
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
        let pm = PacemakerCluster::start(
            Lab::start(spec)?,
            PacemakerSpec {
                aws_output: "json",
                resource: "eip",
                primitives: &["eip"],
                steady_timeout: Duration::from_secs(120),
                cleanup_failed: false,
                stop_timeout: Duration::from_secs(60),
            },
        )?;
        let alloc = pm.lab().allocation_ids().first().cloned().ok_or_else(|| anyhow!("the lab has no EIP"))?;
        let public_ip = pm
            .lab()
            .seed_info()
            .allocations
            .first()
            .map(|a| a.public_ip.clone())
            .ok_or_else(|| anyhow!("the lab's seed has no EIP"))?;
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
            pm.wrapper().display()
        );
        pm.create_resources(&prim)?;
        let me = Pacemaker { pm };
        me.steady(&alloc).context("pacemaker: initial start of the EIP")?;
        Ok(me)
    }

    fn lab(&self) -> &Lab {
        self.pm.lab()
    }

    /// Both nodes online, the resource started on exactly one node, EC2 agrees, the cluster idle.
    fn steady(&self, alloc: &str) -> Result<usize> {
        self.pm.steady(|lab| lab.eip_holder(alloc))
    }

    fn before_event(&self, h: usize, t: &mut Trial) -> Result<()> {
        t.holder_was_dc = Some(self.pm.is_dc(h)?);
        Ok(())
    }

    fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        self.pm.cause(sc, h, other)
    }

    fn explain(&self, t0: f64, _new: usize, t: &mut Trial) -> Result<()> {
        t.pcmk_start_initiated_ms = self.pm.start_initiated(t0).map(|x| ms(t0, x));
        Ok(())
    }

    fn restore(&mut self, sc: Scenario, h: usize, new: usize, alloc: &str) -> Result<()> {
        self.pm.restore(sc, h, new, |lab| lab.eip_holder(alloc))
    }

    /// Every process of each node's pacemakerd tree (the agent and AWS CLI runs are reaped
    /// children: their CPU shows in cutime/cstime).
    fn idle_processes(&self) -> Vec<(String, u32)> {
        let mut pids = Vec::new();
        for i in 0..self.pm.lab().node_count() {
            if let Some(root) = self.pm.pacemakerd_pid(i) {
                for p in process_tree(root) {
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
            m.date, m.nproc, m.cpu, m.kernel, m.corosync,
            m.pacemaker.as_deref().unwrap_or(""), m.resource_agents.as_deref().unwrap_or(""),
            m.awscli.as_deref().unwrap_or(""), m.moto, m.commit, m.load_at_start, m.token_ms, m.consensus_ms
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
            if let Some(r) = reference_baseline_ms(scenario) {
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
        s += &format!("| {} | {oc} | {bc} | {ratio} | {} / {} |\n", title(scenario), un(&o), un(&b));
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
        // this benchmark's results have always recorded the bare commit
        let machine =
            Machine { commit: facts.commit.clone(), ..Machine::from_facts(&facts, Some(&PacemakerStack::collect())) };
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
