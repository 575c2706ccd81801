//! Failover benchmark for the address kinds besides Elastic IPs: a secondary private IP
//! (corosync-eip `[[secondary_ip]]` against a Pacemaker group `ocf:heartbeat:awsvip` +
//! `ocf:heartbeat:IPaddr2`) and a Route 53 record (corosync-eip `[[dns]]` with the holder's
//! private IP against `ocf:heartbeat:aws-vpc-route53`), side by side on the namespace lab
//! (tests/lab: real corosync, moto as EC2 and Route 53 with a request log, per-node IMDSv2).
//! Run it through `bench/run.sh --kinds` or `--kinds-only` (see docs/benchmark-kinds.md); it
//! needs root, `scripts/setup.sh` and `bench/setup.sh`.
//!
//!   bench_kinds [--trials N] [--quick] [--kinds secondary-ip,dns] [--systems ours,pacemaker]
//!               [--render-only]
//!
//! Raw results go to `bench/results/kinds.json` (merged per kind and system, so a partial run
//! keeps the others); `docs/benchmark-kinds.md` is rendered from it.
//!
//! Measurement: the event (kill, move command, SIGTERM) is time zero. From then on the harness
//! polls every 10 ms from the emulator's own namespace: DescribeNetworkInterfaces (every ENI)
//! for the secondary IP, ListResourceRecordSets for the record (through a poller marked as the
//! lab's observer: the emulator neither rate-limits nor logs it, see ec2_emulator.py). The
//! first answer showing the address on the other node only ends the trial.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use lab::bench::{
    daemon_bin_or, daemon_log_time, daemons_agree, med_opt, ours_cause, ours_restore, ours_steady, stats, Event,
    Machine, PacemakerCluster, PacemakerSpec, Polls, Scenario, Stretch,
};
use lab::machine::{sh, Facts, PacemakerStack};
use lab::timing::{corosync_membership_after, fmt_ms, median, ms, parse_rfc3339};
use lab::{unix_now, Lab, LabSpec, NODE_INTERFACE};
use serde::{Deserialize, Serialize};

/// Poll period of the observer.
const POLL: Duration = Duration::from_millis(10);
/// The secondary private IP: in the lab subnet (10.0.1.0/24), never a node's primary address.
const ADDRESS: &str = "10.0.1.200";
/// The Route 53 record, in the lab zone `lab.internal.`.
const RECORD: &str = "db.lab.internal.";
/// TTL of the record, both systems.
const TTL: u32 = 10;

// ---------------------------------------------------------------------------------------------
// arguments

#[derive(Parser, Debug)]
#[command(
    about = "Failover benchmark for secondary private IPs and Route 53 records: corosync-eip against Pacemaker + awsvip/IPaddr2 and aws-vpc-route53",
    long_about = "Failover benchmark for secondary private IPs and Route 53 records: corosync-eip \
                  against Pacemaker + ocf:heartbeat:awsvip + IPaddr2 and ocf:heartbeat:aws-vpc-route53, \
                  on the namespace lab. Writes bench/results/kinds.json and regenerates \
                  docs/benchmark-kinds.md. Needs root, scripts/setup.sh and bench/setup.sh; run \
                  it through ./bench/run.sh --kinds-only."
)]
struct Args {
    /// Trials per scenario, kind and system [default: 10, 3 with --quick].
    #[arg(long, value_name = "N")]
    trials: Option<usize>,
    /// Short run: 3 trials per scenario unless --trials is given.
    #[arg(long)]
    quick: bool,
    /// Address kinds to run, comma-separated [default: secondary-ip,dns].
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["secondary-ip", "dns"], hide_default_value = true)]
    kinds: Vec<Kind>,
    /// Systems to run, comma-separated [default: ours,pacemaker].
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["ours", "pacemaker"], hide_default_value = true)]
    systems: Vec<SystemKind>,
    /// Measure nothing: regenerate docs/benchmark-kinds.md from bench/results/kinds.json.
    #[arg(long)]
    render_only: bool,
}

/// An address kind, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// A secondary private IP on the holder's primary ENI.
    SecondaryIp,
    /// A Route 53 A record holding the holder's private IP.
    Dns,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::SecondaryIp => "secondary_ip",
            Kind::Dns => "dns",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::SecondaryIp => "Secondary private IP",
            Kind::Dns => "Route 53 record",
        }
    }

    /// (lab name, subnet) of each system's lab for this kind.
    fn lab(self, system: SystemKind) -> (&'static str, u8) {
        match (self, system) {
            (Kind::SecondaryIp, SystemKind::Ours) => ("bks", 233),
            (Kind::SecondaryIp, SystemKind::Pacemaker) => ("bkp", 234),
            (Kind::Dns, SystemKind::Ours) => ("bkd", 235),
            (Kind::Dns, SystemKind::Pacemaker) => ("bkq", 236),
        }
    }

    /// What "unusable" means for this kind, in the tables.
    fn unusable_rule(self) -> &'static str {
        match self {
            Kind::SecondaryIp => "polls that saw the address on no ENI",
            Kind::Dns => "polls that saw the record missing or pointing at no live node (a killed holder is not live)",
        }
    }

    /// The AWS calls that change something, for "first mutating call".
    fn mutating(self, action: &str) -> bool {
        match self {
            Kind::SecondaryIp => action == "AssignPrivateIpAddresses" || action == "UnassignPrivateIpAddresses",
            Kind::Dns => action == "ChangeResourceRecordSets",
        }
    }
}

/// A system under test, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SystemKind {
    /// corosync-eip.
    Ours,
    /// Pacemaker + the resource agents.
    Pacemaker,
}

impl SystemKind {
    fn key(self) -> &'static str {
        match self {
            SystemKind::Ours => "corosync-eip",
            SystemKind::Pacemaker => "pacemaker",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scenarios

/// A scenario (`lab::bench::Scenario`) in the tables.
fn title(sc: Scenario) -> &'static str {
    match sc {
        Scenario::HardFailure => "hard failure of the holder",
        Scenario::Switchover => "planned move",
        Scenario::ProcessStop => "holder stops its HA service",
    }
}

// ---------------------------------------------------------------------------------------------
// results

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Trial {
    scenario: String,
    trial: usize,
    from_node: u32,
    to_node: u32,
    /// event → first answer (DescribeNetworkInterfaces / ListResourceRecordSets) showing the
    /// new holder alone
    visible_ms: f64,
    /// how long the polls saw the address unusable (see `Kind::unusable_rule`)
    unusable_ms: f64,
    /// how long the polls saw it nowhere at all (no ENI / no record)
    absent_ms: f64,
    polls: u32,
    max_poll_gap_ms: f64,
    /// event → the system was idle again on the new holder (ours: held and synced; Pacemaker:
    /// `crm_resource --wait` returned): the end of the window the calls are counted in
    settled_ms: f64,
    /// AWS calls (EC2 and Route 53) from the cluster's nodes in [event, settled], by action; a
    /// throttled Route 53 call counts under "<action> (throttled)"
    calls: BTreeMap<String, u32>,
    /// event → first mutating call arriving at AWS, and which
    first_mutation_ms: Option<f64>,
    first_mutation: Option<String>,
    /// event → survivor's corosync "A new membership ... Members left" (hard failure)
    corosync_membership_ms: Option<f64>,
    /// ours: event → detection (failover timeline of the new holder's status)
    detected_ms: Option<f64>,
    /// ours: detection → verified
    verified_ms: Option<f64>,
    /// ours: event → the move command returned
    command_returned_ms: Option<f64>,
    /// Pacemaker: event → the DC logged "Initiating start operation <first primitive>_start_0"
    pcmk_start_initiated_ms: Option<f64>,
    /// Pacemaker: the holder was the DC
    holder_was_dc: Option<bool>,
}

impl Trial {
    fn total_calls(&self) -> u32 {
        self.calls.values().sum()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Section {
    kind: String,
    system: String,
    machine: Machine,
    /// one line saying how the system was configured
    setup: String,
    /// the configuration as given to the system (TOML / CIB XML)
    config: String,
    trials: Vec<Trial>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Results {
    sections: Vec<Section>,
}

fn results_path() -> PathBuf {
    lab::repo_root().join("bench/results/kinds.json")
}

fn load_results() -> Results {
    fs::read_to_string(results_path()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Replaces (or adds) the section of the same kind and system and writes the file.
fn save_section(sec: Section) -> Result<()> {
    let mut r = load_results();
    r.sections.retain(|s| !(s.kind == sec.kind && s.system == sec.system));
    r.sections.push(sec);
    let p = results_path();
    fs::create_dir_all(p.parent().unwrap())?;
    fs::write(&p, serde_json::to_string_pretty(&r)? + "\n")?;
    eprintln!("bench: wrote {}", p.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// helpers

/// A node coming back from a failure comes back as after a reboot: without the address on its
/// interface (a killed holder left it there; IPaddr2's probe would otherwise find it).
fn clean_interface(lab: &Lab, i: usize) -> Result<()> {
    for a in lab.node_addresses(i, NODE_INTERFACE)? {
        if a.split('/').next() == Some(ADDRESS) {
            lab.del_node_address(i, NODE_INTERFACE, &a)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// observing AWS

/// The Route 53 poller: a boto3 client in the emulator's namespace that answers one
/// ListResourceRecordSets per line it reads, marked with X-Lab-Observer.
const ROUTE53_OBSERVER: &str = r#"
import json, sys, boto3
from botocore.config import Config
url, zone, name = sys.argv[1], sys.argv[2], sys.argv[3]
r53 = boto3.client('route53', endpoint_url=url, region_name='us-east-1', aws_access_key_id='testing',
                   aws_secret_access_key='testing', config=Config(retries={'max_attempts': 1}))
def mark(request, **kwargs):
    request.headers['X-Lab-Observer'] = '1'
r53.meta.events.register('before-send.route53.*', mark)
print(json.dumps({'ready': True}), flush=True)
for _ in sys.stdin:
    try:
        out = r53.list_resource_record_sets(HostedZoneId=zone, StartRecordName=name, StartRecordType='A', MaxItems='1')
        rs = [r for r in out['ResourceRecordSets'] if r['Name'].lower() == name.lower() and r['Type'] == 'A']
        print(json.dumps({'values': [v['Value'] for v in rs[0].get('ResourceRecords', [])] if rs else None}), flush=True)
    except Exception as e:
        print(json.dumps({'error': str(e)}), flush=True)
"#;

struct Route53Observer {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Route53Observer {
    fn start(lab: &Lab) -> Result<Route53Observer> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", lab.emulator_netns()])
            .arg(lab::venv_python())
            .args(["-c", ROUTE53_OBSERVER, &lab.emulator_url(), &lab.seed_info().hosted_zone_id, RECORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the Route 53 observer")?;
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)?;
        if !line.contains("ready") {
            bail!("the Route 53 observer did not start: {line:?}");
        }
        Ok(Route53Observer { child, stdin, out })
    }

    /// The record's values; None when it does not exist.
    fn values(&mut self) -> Result<Option<Vec<String>>> {
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.out.read_line(&mut line)? == 0 {
            bail!("the Route 53 observer exited");
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(e) = v.get("error") {
            bail!("ListResourceRecordSets: {e}");
        }
        Ok(v["values"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()))
    }
}

impl Drop for Route53Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer of AWS about the address.
struct Sample {
    /// nodes the address is on (ENIs carrying it / nodes whose private IP the record holds)
    holders: Vec<usize>,
    /// no ENI carries it / no record
    absent: bool,
    /// ENIs or values that are no lab node's
    foreign: usize,
}

/// What a lab's AWS says about the address of `kind`.
struct Observer {
    kind: Kind,
    route53: RefCell<Option<Route53Observer>>,
}

impl Observer {
    fn new(lab: &Lab, kind: Kind) -> Result<Observer> {
        let route53 = match kind {
            Kind::Dns => Some(Route53Observer::start(lab)?),
            Kind::SecondaryIp => None,
        };
        Ok(Observer { kind, route53: RefCell::new(route53) })
    }

    fn sample(&self, lab: &Lab) -> Result<Sample> {
        match self.kind {
            Kind::SecondaryIp => {
                let enis = lab.secondary_ip_enis(ADDRESS)?;
                let holders: Vec<usize> = enis.iter().filter_map(|e| lab.node_of(e)).collect();
                Ok(Sample { absent: enis.is_empty(), foreign: enis.len() - holders.len(), holders })
            }
            Kind::Dns => {
                let values = self.route53.borrow_mut().as_mut().unwrap().values()?;
                let Some(values) = values else { return Ok(Sample { holders: vec![], absent: true, foreign: 0 }) };
                let holders: Vec<usize> =
                    (0..lab.node_count()).filter(|&i| values.iter().any(|v| v == lab.private_ip(i))).collect();
                Ok(Sample { absent: values.is_empty(), foreign: values.len() - holders.len(), holders })
            }
        }
    }

    /// The single node AWS shows the address on, if exactly one and nothing else.
    fn holder(&self, lab: &Lab) -> Result<Option<usize>> {
        let s = self.sample(lab)?;
        Ok((s.holders.len() == 1 && s.foreign == 0).then(|| s.holders[0]))
    }

    fn unusable(&self, s: &Sample, dead: Option<usize>) -> bool {
        match self.kind {
            Kind::SecondaryIp => s.absent,
            Kind::Dns => s.absent || s.holders.iter().all(|h| Some(*h) == dead),
        }
    }
}

/// Observation of one trial.
struct Obs {
    t_visible: f64,
    to: usize,
    unusable_ms: f64,
    absent_ms: f64,
    polls: u32,
    max_gap_ms: f64,
}

fn observe(lab: &Lab, o: &Observer, old: usize, dead: Option<usize>, t0: f64, timeout: Duration) -> Result<Obs> {
    let mut polls = Polls::new(POLL, t0);
    let (mut unusable, mut absent) = (Stretch::default(), Stretch::default());
    let deadline = Instant::now() + timeout;
    loop {
        polls.begin();
        let s = o.sample(lab)?;
        let now = polls.answered();
        unusable.update(o.unusable(&s, dead), now);
        absent.update(s.absent, now);
        if s.holders.len() == 1 && s.foreign == 0 && s.holders[0] != old {
            return Ok(Obs {
                t_visible: now,
                to: s.holders[0],
                unusable_ms: unusable.ms(),
                absent_ms: absent.ms(),
                polls: polls.count(),
                max_gap_ms: polls.max_gap_ms(),
            });
        }
        if Instant::now() >= deadline {
            bail!("the address did not move off node {old} within {timeout:?} (last: {:?})", s.holders);
        }
        polls.pace();
    }
}

/// AWS calls from the cluster's nodes in [t0, t_end], and the first mutating one.
fn fill_calls(lab: &Lab, kind: Kind, t: &mut Trial, t0: f64, t_end: f64) -> Result<()> {
    for r in lab.ec2_requests()? {
        if r.t < t0 || r.t > t_end || lab.node_by_ip(&r.source).is_none() {
            continue;
        }
        let throttled = r.status == Some(400) && r.param("Path").is_some();
        let key = if throttled { format!("{} (throttled)", r.action) } else { r.action.clone() };
        *t.calls.entry(key).or_default() += 1;
        if kind.mutating(&r.action) && !throttled && t.first_mutation_ms.is_none() {
            t.first_mutation_ms = Some(ms(t0, r.t));
            t.first_mutation = Some(r.action.clone());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the trial, common to both systems

trait System: Sized {
    const SYSTEM: SystemKind;
    /// How long the address may take to move before a trial fails.
    const MOVE_TIMEOUT: Duration;

    fn start(kind: Kind) -> Result<Self>;
    fn lab(&self) -> &Lab;
    fn observer(&self) -> &Observer;
    /// Waits until the cluster is steady and one node holds the address; returns that node.
    fn steady(&self) -> Result<usize>;
    fn before_event(&self, _holder: usize, _t: &mut Trial) -> Result<()> {
        Ok(())
    }
    fn cause(&mut self, sc: Scenario, holder: usize, other: usize) -> Result<Event>;
    /// Waits until the system is idle again with the address on `new` (the old holder may
    /// still be down).
    fn settled(&self, new: usize) -> Result<()>;
    fn explain(&self, t0: f64, new: usize, t: &mut Trial) -> Result<()>;
    fn restore(&mut self, sc: Scenario, holder: usize, new: usize) -> Result<()>;
    fn setup(&self) -> String;
    fn config(&self) -> String;
}

fn trial<S: System>(sys: &mut S, kind: Kind, sc: Scenario, k: usize) -> Result<Trial> {
    let h = sys.steady()?;
    thread::sleep(Duration::from_millis(500));
    let lab = sys.lab();
    let other = (0..lab.node_count()).find(|&j| j != h).ok_or_else(|| anyhow!("no node besides the holder"))?;
    let mut t = Trial { scenario: sc.key().into(), trial: k, from_node: lab.node_id(h), ..Default::default() };
    sys.before_event(h, &mut t)?;
    let event = sys.cause(sc, h, other)?;
    let t0 = event.t0;
    let dead = (sc == Scenario::HardFailure).then_some(h);
    let obs = observe(sys.lab(), sys.observer(), h, dead, t0, S::MOVE_TIMEOUT)?;
    t.to_node = sys.lab().node_id(obs.to);
    t.visible_ms = ms(t0, obs.t_visible);
    t.unusable_ms = obs.unusable_ms;
    t.absent_ms = obs.absent_ms;
    t.polls = obs.polls;
    t.max_poll_gap_ms = obs.max_gap_ms;
    t.command_returned_ms = event.command_returned()?;
    sys.settled(obs.to)?;
    let t_settled = unix_now();
    t.settled_ms = ms(t0, t_settled);
    sys.explain(t0, obs.to, &mut t)?;
    if sc == Scenario::HardFailure {
        t.corosync_membership_ms = corosync_membership_after(sys.lab(), obs.to, t0).map(|x| ms(t0, x));
    }
    fill_calls(sys.lab(), kind, &mut t, t0, t_settled)?;
    sys.restore(sc, h, obs.to)?;
    Ok(t)
}

fn run_section<S: System>(kind: Kind, trials: usize, machine: &Machine) -> Result<Section> {
    eprintln!("== {} / {}: {trials} trials per scenario", kind.title(), S::SYSTEM.key());
    let started = Instant::now();
    let mut sys = S::start(kind)?;
    let m = machine.with_totem(sys.lab());
    let mut out = Vec::new();
    for sc in Scenario::ALL {
        for k in 0..trials {
            let t = trial(&mut sys, kind, sc, k)
                .with_context(|| format!("{} {} {} trial {k}", kind.key(), S::SYSTEM.key(), sc.key()))?;
            eprintln!(
                "  {:<12} {:<12} {:<13} #{k}: {:>8.1} ms (unusable {:.0} ms, {} calls) node {} → {}{}",
                kind.key(),
                S::SYSTEM.key(),
                sc.key(),
                t.visible_ms,
                t.unusable_ms,
                t.total_calls(),
                t.from_node,
                t.to_node,
                if t.holder_was_dc == Some(true) { " (holder was DC)" } else { "" }
            );
            out.push(t);
        }
    }
    let m = Machine { load_at_end: Some(lab::machine::load_average()), ..m };
    eprintln!("   ({:.0} s)", started.elapsed().as_secs_f64());
    Ok(Section {
        kind: kind.key().into(),
        system: S::SYSTEM.key().into(),
        machine: m,
        setup: sys.setup(),
        config: sys.config(),
        trials: out,
    })
}

// ---------------------------------------------------------------------------------------------
// corosync-eip

/// Name of the resource in our config.
fn ours_resource(kind: Kind) -> &'static str {
    match kind {
        Kind::SecondaryIp => "sip1",
        Kind::Dns => "dns1",
    }
}

fn ours_config(lab: &Lab, kind: Kind) -> String {
    // as the baseline: monitor every 10 s; everything else the defaults
    let mut s = String::from("[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"10s\"\n");
    s += &match kind {
        Kind::SecondaryIp => lab.secondary_ip_config(ours_resource(kind), ADDRESS),
        Kind::Dns => lab.dns_config(ours_resource(kind), RECORD, "private"),
    };
    s
}

struct CorosyncEip {
    kind: Kind,
    observer: Observer,
    lab: Lab,
}

impl System for CorosyncEip {
    const SYSTEM: SystemKind = SystemKind::Ours;
    const MOVE_TIMEOUT: Duration = Duration::from_secs(60);

    fn start(kind: Kind) -> Result<Self> {
        let (name, subnet) = kind.lab(SystemKind::Ours);
        let mut spec = LabSpec::new(name, subnet, 2);
        spec.daemon_bin = daemon_bin_or(lab::default_daemon_bin);
        if !spec.daemon_bin.exists() {
            bail!("{} is missing: cargo build --bin corosync-eip", spec.daemon_bin.display());
        }
        let mut lab = Lab::start(spec)?;
        if kind == Kind::Dns {
            // as for Pacemaker: the record exists, on node 1
            lab.set_dns_record(RECORD, lab.private_ip(0), TTL as i64)?;
        }
        let conf = ours_config(&lab, kind);
        for i in 0..lab.node_count() {
            lab.write_daemon_config(i, &conf)?;
            lab.start_daemon(i)?;
        }
        let observer = Observer::new(&lab, kind)?;
        let me = CorosyncEip { kind, observer, lab };
        me.steady()?;
        Ok(me)
    }

    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn observer(&self) -> &Observer {
        &self.observer
    }

    fn steady(&self) -> Result<usize> {
        ours_steady(&self.lab, Duration::from_secs(90), |lab| self.observer.holder(lab))
    }

    fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        ours_cause(&mut self.lab, sc, h, other, ours_resource(self.kind))
    }

    fn settled(&self, new: usize) -> Result<()> {
        self.lab.wait_for("corosync-eip held on the new holder", Duration::from_secs(60), || {
            Ok(daemons_agree(&self.lab, new)?.then_some(()))
        })
    }

    fn explain(&self, t0: f64, new: usize, t: &mut Trial) -> Result<()> {
        if let Ok(st) = self.lab.daemon_status(new) {
            if let Some(lf) = st.resources.first().and_then(|r| r.last_failover.clone()) {
                if let Some(d) = parse_rfc3339(&lf.detected_at).filter(|&d| d >= t0 - 0.001) {
                    t.detected_ms = Some(ms(t0, d));
                    t.verified_ms = Some(lf.verified_ms as f64);
                }
            }
        }
        if t.detected_ms.is_none() {
            // the log's "failover timeline" line, when status has none for this trial
            t.detected_ms = daemon_log_time(&self.lab, new, t0, &["CPG membership changed"], &["left=[]"])
                .map(|x| ms(t0, x));
        }
        Ok(())
    }

    fn restore(&mut self, sc: Scenario, h: usize, _new: usize) -> Result<()> {
        if sc == Scenario::HardFailure {
            clean_interface(&self.lab, h)?;
        }
        ours_restore(&mut self.lab, sc, h)
    }

    fn setup(&self) -> String {
        format!(
            "2 nodes, two_node: 1, one `[[{}]]`, debug build, monitor_interval 10s, defaults otherwise; daemon: {}",
            self.kind.key(),
            self.lab.spec().daemon_bin.display()
        )
    }

    fn config(&self) -> String {
        ours_config(&self.lab, self.kind)
    }
}

// ---------------------------------------------------------------------------------------------
// Pacemaker

/// Pacemaker with the kind's resource agents, pacemakerd started in each node namespace.
struct Pacemaker {
    kind: Kind,
    cib: String,
    // dropped before the cluster: it polls the lab's emulator
    observer: Observer,
    pm: PacemakerCluster,
}

impl Pacemaker {
    /// How Pacemaker runs `kind`: the resource `crm_resource --move/--clear` act on (the group
    /// for the secondary IP) and its primitives in start order.
    fn spec(kind: Kind) -> PacemakerSpec {
        let (resource, primitives): (&'static str, &'static [&'static str]) = match kind {
            Kind::SecondaryIp => ("sip", &["sip_aws", "sip_ip"]),
            Kind::Dns => ("dns", &["dns"]),
        };
        PacemakerSpec {
            // aws-vpc-route53 parses text output
            aws_output: "text",
            resource,
            primitives,
            steady_timeout: Duration::from_secs(150),
            cleanup_failed: true,
            stop_timeout: Duration::from_secs(90),
        }
    }

    fn cib_resources(&self) -> String {
        let w = self.pm.wrapper().display();
        match self.kind {
            Kind::SecondaryIp => format!(
                "<group id=\"sip\">\
                 <primitive id=\"sip_aws\" class=\"ocf\" provider=\"heartbeat\" type=\"awsvip\">\
                 <instance_attributes id=\"sip_aws-ia\">\
                 <nvpair id=\"sip_aws-ia-secondary_private_ip\" name=\"secondary_private_ip\" value=\"{ADDRESS}\"/>\
                 <nvpair id=\"sip_aws-ia-awscli\" name=\"awscli\" value=\"{w}\"/>\
                 </instance_attributes><operations>\
                 <op id=\"sip_aws-monitor-10s\" name=\"monitor\" interval=\"10s\" timeout=\"30s\"/>\
                 <op id=\"sip_aws-start-0\" name=\"start\" interval=\"0s\" timeout=\"60s\"/>\
                 <op id=\"sip_aws-stop-0\" name=\"stop\" interval=\"0s\" timeout=\"60s\"/>\
                 </operations></primitive>\
                 <primitive id=\"sip_ip\" class=\"ocf\" provider=\"heartbeat\" type=\"IPaddr2\">\
                 <instance_attributes id=\"sip_ip-ia\">\
                 <nvpair id=\"sip_ip-ia-ip\" name=\"ip\" value=\"{ADDRESS}\"/>\
                 <nvpair id=\"sip_ip-ia-cidr_netmask\" name=\"cidr_netmask\" value=\"24\"/>\
                 <nvpair id=\"sip_ip-ia-nic\" name=\"nic\" value=\"{NODE_INTERFACE}\"/>\
                 </instance_attributes><operations>\
                 <op id=\"sip_ip-monitor-10s\" name=\"monitor\" interval=\"10s\" timeout=\"20s\"/>\
                 <op id=\"sip_ip-start-0\" name=\"start\" interval=\"0s\" timeout=\"20s\"/>\
                 <op id=\"sip_ip-stop-0\" name=\"stop\" interval=\"0s\" timeout=\"20s\"/>\
                 </operations></primitive></group>"
            ),
            Kind::Dns => format!(
                "<primitive id=\"dns\" class=\"ocf\" provider=\"heartbeat\" type=\"aws-vpc-route53\">\
                 <instance_attributes id=\"dns-ia\">\
                 <nvpair id=\"dns-ia-hostedzoneid\" name=\"hostedzoneid\" value=\"{zone}\"/>\
                 <nvpair id=\"dns-ia-fullname\" name=\"fullname\" value=\"{RECORD}\"/>\
                 <nvpair id=\"dns-ia-ip\" name=\"ip\" value=\"local\"/>\
                 <nvpair id=\"dns-ia-ttl\" name=\"ttl\" value=\"{TTL}\"/>\
                 <nvpair id=\"dns-ia-profile\" name=\"profile\" value=\"default\"/>\
                 <nvpair id=\"dns-ia-awscli\" name=\"awscli\" value=\"{w}\"/>\
                 </instance_attributes><operations>\
                 <op id=\"dns-monitor-10s\" name=\"monitor\" interval=\"10s\" timeout=\"180s\"/>\
                 <op id=\"dns-start-0\" name=\"start\" interval=\"0s\" timeout=\"180s\"/>\
                 <op id=\"dns-stop-0\" name=\"stop\" interval=\"0s\" timeout=\"180s\"/>\
                 </operations></primitive>",
                zone = self.pm.lab().seed_info().hosted_zone_id
            ),
        }
    }
}

impl System for Pacemaker {
    const SYSTEM: SystemKind = SystemKind::Pacemaker;
    // awsvip sleeps api_delay (3 s) after each change; aws-vpc-route53 sleeps 20 s after its
    // UPSERT before the first GetChange
    const MOVE_TIMEOUT: Duration = Duration::from_secs(120);

    fn start(kind: Kind) -> Result<Self> {
        let (name, subnet) = kind.lab(SystemKind::Pacemaker);
        let mut spec = LabSpec::new(name, subnet, 2);
        spec.daemon_bin = daemon_bin_or(lab::default_daemon_bin);
        let lab = Lab::start(spec)?;
        if kind == Kind::Dns {
            // the record exists, on node 1: without it both nodes' first probes would UPSERT
            // it (aws-vpc-route53 writes a missing record even in a probe)
            lab.set_dns_record(RECORD, lab.private_ip(0), TTL as i64)?;
        }
        let pm = PacemakerCluster::start(lab, Pacemaker::spec(kind))?;
        let observer = Observer::new(pm.lab(), kind)?;
        let mut me = Pacemaker { kind, cib: String::new(), observer, pm };
        let xml = me.cib_resources();
        me.pm.create_resources(&xml)?;
        me.cib = xml;
        me.steady().context("pacemaker: initial start")?;
        Ok(me)
    }

    fn lab(&self) -> &Lab {
        self.pm.lab()
    }

    fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Both nodes online, the primitives started on one node, AWS agrees, the cluster idle.
    fn steady(&self) -> Result<usize> {
        self.pm.steady(|lab| self.observer.holder(lab))
    }

    fn before_event(&self, h: usize, t: &mut Trial) -> Result<()> {
        t.holder_was_dc = Some(self.pm.is_dc(h)?);
        Ok(())
    }

    fn cause(&mut self, sc: Scenario, h: usize, other: usize) -> Result<Event> {
        self.pm.cause(sc, h, other)
    }

    fn settled(&self, new: usize) -> Result<()> {
        self.pm.wait_idle(new)
    }

    fn explain(&self, t0: f64, _new: usize, t: &mut Trial) -> Result<()> {
        t.pcmk_start_initiated_ms = self.pm.start_initiated(t0).map(|x| ms(t0, x));
        Ok(())
    }

    fn restore(&mut self, sc: Scenario, h: usize, new: usize) -> Result<()> {
        if sc == Scenario::HardFailure {
            clean_interface(self.pm.lab(), h)?;
        }
        let observer = &self.observer;
        self.pm.restore(sc, h, new, |lab| observer.holder(lab))
    }

    fn setup(&self) -> String {
        match self.kind {
            Kind::SecondaryIp => "2 nodes, two_node: 1; stonith-enabled=false, resource-stickiness=INFINITY; \
                 group sip = ocf:heartbeat:awsvip (secondary_private_ip, awscli=wrapper) then \
                 ocf:heartbeat:IPaddr2 (ip, cidr_netmask=24, nic=eth0), each op monitor interval=10s; \
                 api_delay default (3 s)"
                .into(),
            Kind::Dns => "2 nodes, two_node: 1; stonith-enabled=false, resource-stickiness=INFINITY; \
                 primitive dns ocf:heartbeat:aws-vpc-route53 (hostedzoneid, fullname, ip=local, ttl=10, \
                 profile=default with text output, awscli=wrapper), op monitor interval=10s timeout=180s, \
                 start/stop timeout 180s"
                .into(),
        }
    }

    fn config(&self) -> String {
        // one element per line, for the document
        self.cib.replace("><", ">\n<")
    }
}

// ---------------------------------------------------------------------------------------------
// report

/// Calls per move by action, as "median × action" over the trials (an action missing from a
/// trial counts 0 there).
fn calls_breakdown(v: &[&Trial]) -> String {
    let mut actions: Vec<String> = v.iter().flat_map(|t| t.calls.keys().cloned()).collect();
    actions.sort();
    actions.dedup();
    let mut parts = Vec::new();
    for a in actions {
        let mut n: Vec<f64> = v.iter().map(|t| *t.calls.get(&a).unwrap_or(&0) as f64).collect();
        let m = median(&mut n);
        if m > 0.0 {
            parts.push(format!("{m} {a}"));
        }
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

/// The trials of one scenario in a section (none when the section was not run).
fn of_scenario(sec: Option<&Section>, sc: Scenario) -> Vec<&Trial> {
    sec.map(|x| x.trials.iter().filter(|t| t.scenario == sc.key()).collect()).unwrap_or_default()
}

fn render(r: &Results) -> (String, String) {
    let mut s = String::new();
    let mut console = String::new();
    s += "# Benchmark: secondary private IPs and Route 53 records, corosync-eip vs Pacemaker\n\n";
    s += "Generated by `./bench/run.sh --kinds-only` (driver: `examples/bench_kinds.rs`; raw data in \
          `bench/results/kinds.json`). Do not edit by hand: re-run the command. The Elastic IP \
          comparison is in [benchmark.md](benchmark.md).\n\n";
    s += "Both systems run on the same lab (`tests/lab`): one network + mount namespace per node, \
          real corosync (knet), moto as EC2 and Route 53 (patched like AWS, see \
          `tests/lab/ec2_emulator.py`) with a request log, a per-node IMDSv2 responder. Each \
          kind and system gets a fresh 2-node lab. The event (kill, move command, SIGTERM) is \
          time zero; the harness then polls every 10 ms from the emulator's namespace — \
          DescribeNetworkInterfaces (every ENI) for the secondary IP, ListResourceRecordSets for \
          the record — and a trial ends at the first answer showing the address on the other \
          node alone. The record poller is marked as the lab's observer: the emulator enforces \
          Route 53's 5 requests/s account limit on the systems under test but not on it, and \
          does not log it.\n\n";
    if let Some(m) = r.sections.first().map(|x| &x.machine) {
        s += "## Machine\n\n";
        s += &format!(
            "| | |\n|---|---|\n| date | {} |\n| CPUs (`nproc`) | {} |\n| CPU | {} |\n| kernel | {} |\n\
             | corosync | {} |\n| pacemaker | {} |\n| resource-agents | {} |\n| AWS CLI | {} |\n\
             | moto | {} |\n| corosync-eip commit | {} |\n| corosync runtime token / consensus (cmap) | {} ms / {} ms |\n\n",
            m.date, m.nproc, m.cpu, m.kernel, m.corosync, m.pacemaker.as_deref().unwrap_or(""),
            m.resource_agents.as_deref().unwrap_or(""), m.awscli.as_deref().unwrap_or(""), m.moto, m.commit,
            m.token_ms, m.consensus_ms
        );
        s += "Load average (1, 5, 15 min) at the start and end of each section, since a busy \
              2-CPU machine stretches every timing:\n\n| kind | system | measured | load at start | load at end |\n|---|---|---|---|---|\n";
        for sec in &r.sections {
            s += &format!(
                "| {} | {} | {} | {} | {} |\n",
                sec.kind,
                sec.system,
                sec.machine.date,
                sec.machine.load_at_start,
                sec.machine.load_at_end.as_deref().unwrap_or("")
            );
        }
        s += "\n";
    }
    for kind in [Kind::SecondaryIp, Kind::Dns] {
        let ours = r.sections.iter().find(|x| x.kind == kind.key() && x.system == SystemKind::Ours.key());
        let base = r.sections.iter().find(|x| x.kind == kind.key() && x.system == SystemKind::Pacemaker.key());
        if ours.is_none() && base.is_none() {
            continue;
        }
        s += &format!("## {}\n\n", kind.title());
        for sec in [ours, base].into_iter().flatten() {
            s += &format!("- {}: {}\n", sec.system, sec.setup);
        }
        s += &format!(
            "\nTime from the event until {} shows the new holder, min / **median** / max (trials); \
             unusable = {} (median, max); AWS calls per move = EC2 and Route 53 requests from the \
             nodes between the event and the system being idle again on the new holder (ours: \
             held and synced; Pacemaker: `crm_resource --wait` returned), median:\n\n",
            match kind {
                Kind::SecondaryIp => "EC2 (DescribeNetworkInterfaces)",
                Kind::Dns => "Route 53 (ListResourceRecordSets)",
            },
            kind.unusable_rule()
        );
        s += "| scenario | corosync-eip | Pacemaker | ratio of medians | unusable: corosync-eip / Pacemaker | AWS calls per move: corosync-eip / Pacemaker |\n|---|---|---|---|---|---|\n";
        console += &format!("\n{}\n", kind.title());
        console += &format!(
            "{:<14} {:>30} {:>30} {:>16} {:>18} {:>10}\n",
            "scenario", "corosync-eip min/med/max", "pacemaker min/med/max", "ratio", "unusable o/p", "calls o/p"
        );
        for sc in Scenario::ALL {
            let pick = |sec: Option<&Section>| -> Vec<Trial> {
                sec.map(|x| x.trials.iter().filter(|t| t.scenario == sc.key()).cloned().collect()).unwrap_or_default()
            };
            let (o, b) = (pick(ours), pick(base));
            let cell = |v: &[Trial]| -> (String, String, f64) {
                if v.is_empty() {
                    return ("–".into(), "–".into(), f64::NAN);
                }
                let (lo, med, hi) = stats(&v.iter().map(|t| t.visible_ms).collect::<Vec<_>>());
                (
                    format!("{} / **{}** / {} ({})", fmt_ms(lo), fmt_ms(med), fmt_ms(hi), v.len()),
                    format!("{}/{}/{}", fmt_ms(lo), fmt_ms(med), fmt_ms(hi)),
                    med,
                )
            };
            let (oc, ocon, om) = cell(&o);
            let (bc, bcon, bm) = cell(&b);
            let ratio = if om.is_nan() || bm.is_nan() || om <= 0.0 {
                "–".into()
            } else {
                format!("{:.2} (×{:.1} faster)", om / bm, bm / om)
            };
            let un = |v: &[Trial]| -> String {
                if v.is_empty() {
                    return "–".into();
                }
                let (_, med, hi) = stats(&v.iter().map(|t| t.unusable_ms).collect::<Vec<_>>());
                format!("{}, {}", fmt_ms(med), fmt_ms(hi))
            };
            let calls = |v: &[Trial]| -> String {
                if v.is_empty() {
                    return "–".into();
                }
                let mut c: Vec<f64> = v.iter().map(|t| t.total_calls() as f64).collect();
                format!("{}", median(&mut c))
            };
            s += &format!(
                "| {} | {oc} | {bc} | {ratio} | {} / {} | {} / {} |\n",
                title(sc),
                un(&o),
                un(&b),
                calls(&o),
                calls(&b)
            );
            console += &format!(
                "{:<14} {:>30} {:>30} {:>16} {:>18} {:>10}\n",
                sc.key(),
                ocon,
                bcon,
                if om.is_nan() || bm.is_nan() { "–".to_string() } else { format!("{:.2}", om / bm) },
                format!(
                    "{}/{}",
                    o.first().map(|_| un(&o).split(',').next().unwrap_or("").to_string()).unwrap_or("–".into()),
                    b.first().map(|_| un(&b).split(',').next().unwrap_or("").to_string()).unwrap_or("–".into())
                ),
                format!("{}/{}", calls(&o), calls(&b))
            );
        }
        s += match kind {
            Kind::SecondaryIp => {
                "\nIn a hard failure the address stays assigned to the dead holder's ENI until the \
                 survivor reassigns it, so neither system shows it on no ENI there; it is \
                 unreachable all the same until it is visible on the survivor.\n"
            }
            Kind::Dns => {
                "\nOn a planned move or a stop the old holder is still up, so a record still \
                 pointing at it counts as usable; in a hard failure it points at a dead node until \
                 it is rewritten.\n"
            }
        };
        s += "\nAWS calls per move by action (median per trial). \"(throttled)\" is a Route 53 \
              call answered with Throttling under the account's 5 requests/s limit (the nodes \
              share it; the caller retries):\n\n| scenario | corosync-eip | Pacemaker |\n|---|---|---|\n";
        for sc in Scenario::ALL {
            s += &format!(
                "| {} | {} | {} |\n",
                sc.key(),
                calls_breakdown(&of_scenario(ours, sc)),
                calls_breakdown(&of_scenario(base, sc))
            );
        }
        s += "\nWhere the time goes (medians, from the event): corosync membership = the survivor's \
              corosync log (\"A new membership ... Members left\", hard failure only); detected and \
              verified = corosync-eip's failover timeline (`status --json`, verified counted from \
              detection); start initiated = the Pacemaker DC's \"Initiating start operation\" of \
              the first primitive; first mutating call = arrival in the request log; settled = the \
              end of the call-counting window.\n\n";
        s += "| scenario | system | corosync membership | detected / start initiated | + verified | first mutating call | visible | command returned | settled | holder was DC |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for sc in Scenario::ALL {
            for sec in [ours, base].into_iter().flatten() {
                let v: Vec<&Trial> = sec.trials.iter().filter(|t| t.scenario == sc.key()).collect();
                if v.is_empty() {
                    continue;
                }
                let first = v.iter().filter_map(|t| t.first_mutation.clone()).next().unwrap_or_default();
                let dc = if sec.system == SystemKind::Pacemaker.key() {
                    format!("{}/{}", v.iter().filter(|t| t.holder_was_dc == Some(true)).count(), v.len())
                } else {
                    "–".into()
                };
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} {} | {} | {} | {} | {dc} |\n",
                    sc.key(),
                    sec.system,
                    med_opt(&v, |t| t.corosync_membership_ms),
                    med_opt(&v, |t| t.detected_ms.or(t.pcmk_start_initiated_ms)),
                    med_opt(&v, |t| t.verified_ms),
                    med_opt(&v, |t| t.first_mutation_ms),
                    if first.is_empty() { String::new() } else { format!("({first})") },
                    med_opt(&v, |t| Some(t.visible_ms)),
                    med_opt(&v, |t| t.command_returned_ms),
                    med_opt(&v, |t| Some(t.settled_ms)),
                );
            }
        }
        let gaps: Vec<f64> = [ours, base].into_iter().flatten().flat_map(|x| x.trials.iter().map(|t| t.max_poll_gap_ms)).collect();
        if !gaps.is_empty() {
            let mut g = gaps.clone();
            s += &format!(
                "\nResolution: the largest gap between two consecutive poll answers within a trial \
                 was {} (median over trials), {} at worst; a trial's time is at most that much late.\n",
                fmt_ms(median(&mut g)),
                fmt_ms(gaps.iter().cloned().fold(0.0, f64::max))
            );
        }
        s += "\n### Configuration as measured\n\n";
        for sec in [ours, base].into_iter().flatten() {
            let lang = if sec.system == SystemKind::Ours.key() { "toml" } else { "xml" };
            let title = if sec.system == SystemKind::Ours.key() {
                "corosync-eip (`/etc/corosync-eip/corosync-eip.toml`, the same on both nodes)"
            } else {
                "Pacemaker (the resources section of the CIB, loaded with `cibadmin --create -o resources`)"
            };
            s += &format!("{title}:\n\n```{lang}\n{}\n```\n\n", sec.config.trim_end());
        }
    }
    s += "## How each system is run\n\n";
    s += "- **Same lab, same timing.** Both use the lab's corosync.conf (knet, `token: 1000`, \
          `token_coefficient: 0`, `two_node: 1`). Labs `bks`/`bkp` (secondary IP, ours/Pacemaker) \
          and `bkd`/`bkq` (record).\n\
- **corosync-eip**: the debug build on both nodes, `monitor_interval = \"10s\"`, other keys \
          default. The secondary IP is `10.0.1.200` on `eth0`; the record is `db.lab.internal.` \
          A, TTL 10, `value = \"private\"` (the holder's private IP). Hard failure = SIGKILL to \
          corosync then to the daemon on the holder; planned move = `corosync-eip move <resource> \
          --to <other node id>` run on the holder; stop = SIGTERM to the daemon on the holder.\n\
- **Pacemaker 2.1** (Debian packages), `pacemakerd` in the same node namespaces with per-node \
          bind mounts on `/var/lib/pacemaker` and `/var/log/pacemaker`; CIB \
          `stonith-enabled=false`, `rsc_defaults resource-stickiness=INFINITY`, resources as \
          shown above. The agents' `awscli` is a wrapper that execs Debian's `/usr/bin/aws` \
          with `--endpoint-url` and a config/credentials file holding the `[default]` profile \
          (`output = text`, which aws-vpc-route53 requires); the agents read IMDSv2 at \
          `169.254.169.254`, served in each node by a second instance of the lab's responder \
          (awsvip: `instance-id`, `mac`, `network/interfaces/macs/<mac>/interface-id`; \
          aws-vpc-route53: `local-ipv4`). Hard failure = SIGKILL to corosync, pacemakerd and all \
          its children on the holder (STONITH off, nothing fenced); planned move = `crm_resource \
          --move --force -r <sip|dns> -N <other>` then, once settled, `crm_resource --clear`; stop = \
          SIGTERM to pacemakerd on the holder (what `systemctl stop pacemaker` does: resources \
          stopped there, then started on the peer).\n\
- **Between trials** the old holder is brought back (a killed node as after a reboot: corosync \
          and the HA stack restarted, the secondary IP no longer on its interface) and the next \
          trial starts once the cluster is steady, so successive trials alternate nodes. \
          Before the first trial the record exists and points at node 1, for both systems: \
          aws-vpc-route53 writes a missing record even from a probe, so without it both nodes' \
          first probes would write it.\n\
- **What the agents do.** awsvip: start = DescribeInstances (is it already here?), \
          AssignPrivateIpAddresses with AllowReassignment, sleep `api_delay` (3 s); stop = \
          DescribeInstances, UnassignPrivateIpAddresses, sleep 3 s; monitor = DescribeInstances. \
          IPaddr2 then adds the address to `eth0` (and removes it first on stop). On a planned \
          move or a stop the group is stopped on the holder before it starts on the peer, so \
          EC2 shows the address on no ENI between the Unassign and the peer's Assign. \
          aws-vpc-route53: start = ListResourceRecordSets, ChangeResourceRecordSets (UPSERT), \
          sleep 20 s, GetChange until INSYNC; stop does nothing (the record keeps pointing at \
          the old holder until the peer's start); monitor = `dig` (no resolver in the lab, so \
          it falls back to ListResourceRecordSets). Every call is one AWS CLI process. \
          corosync-eip moves a secondary IP with one AssignPrivateIpAddresses \
          (AllowReassignment) from the new holder, and a record with one UPSERT followed by \
          GetChange until INSYNC and a read-back.\n";
    s += "\n## Reproduce\n\n```sh\n./scripts/setup.sh && ./bench/setup.sh   # once\n\
          ./bench/run.sh --kinds-only            # 10 trials per scenario, kind and system\n\
          ./bench/run.sh --kinds-only --quick    # 3 trials\n\
          ./bench/run.sh --kinds                 # the Elastic IP benchmark, then this one\n```\n";
    (s, console)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.render_only {
        let trials = args.trials.unwrap_or(if args.quick { 3 } else { 10 });
        let facts = Facts::collect(&lab::repo_root(), &lab::venv_python());
        let machine = Machine::from_facts(&facts, Some(&PacemakerStack::collect()));
        let t = Instant::now();
        for kind in [Kind::SecondaryIp, Kind::Dns] {
            if !args.kinds.contains(&kind) {
                continue;
            }
            for system in [SystemKind::Ours, SystemKind::Pacemaker] {
                if !args.systems.contains(&system) {
                    continue;
                }
                let m = Machine { load_at_start: lab::machine::load_average(), date: sh("date -u '+%Y-%m-%d %H:%M UTC'"), ..machine.clone() };
                let sec = match system {
                    SystemKind::Ours => run_section::<CorosyncEip>(kind, trials, &m)?,
                    SystemKind::Pacemaker => run_section::<Pacemaker>(kind, trials, &m)?,
                };
                save_section(sec)?;
            }
        }
        eprintln!("== total {:.0} s", t.elapsed().as_secs_f64());
    }
    let (md, console) = render(&load_results());
    let out = lab::repo_root().join("docs/benchmark-kinds.md");
    fs::write(&out, &md)?;
    print!("{console}");
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}
