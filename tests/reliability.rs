//! CTS-style randomized reliability run on the lab: a seeded random sequence of cluster events
//! (Pacemaker CTS analogues: ComponentFail, Restart, Flip, SplitBrain, Reattach, Standby), each
//! followed by an audit: EC2 shows every address on the holder elected by the quorate
//! partition, all members agree, only members of that partition called mutating EC2 APIs, a
//! bounded number of moves, no panic in any daemon log.
//!
//! Default: a short run in the test suite. `RELIABILITY_STEPS=100` for a long run;
//! `RELIABILITY_SEED=<n>` replays a sequence (the seed is printed on failure).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, Result};
use lab::{Lab, LabSpec, Signal};
use rand::{Rng, SeedableRng};

const SETTLE: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy)]
enum Step {
    KillCorosync(usize),
    RestartCorosync(usize),
    KillDaemonAndRestart(usize),
    StopDaemonAndStart(usize),
    Reload(usize),
    Isolate(usize),
    HealAll,
    Standby(usize),
    Unstandby(usize),
}

struct Run {
    lab: Lab,
    corosync_down: BTreeSet<usize>,
    isolated: BTreeSet<usize>,
    standby: BTreeSet<usize>,
}

impl Run {
    /// Nodes whose daemon takes part in the quorate partition, if there is one.
    fn quorate_partition(&self) -> Option<Vec<usize>> {
        let n = self.lab.node_count();
        let connected: Vec<usize> = (0..n).filter(|i| !self.corosync_down.contains(i) && !self.isolated.contains(i)).collect();
        (connected.len() * 2 > n).then_some(connected)
    }

    fn apply(&mut self, step: Step) -> Result<()> {
        let part = self.quorate_partition();
        let lab = &mut self.lab;
        match step {
            Step::KillCorosync(i) => {
                lab.kill_corosync(i, Signal::SIGKILL);
                self.corosync_down.insert(i);
            }
            Step::RestartCorosync(i) => {
                lab.start_corosync(i)?;
                self.corosync_down.remove(&i);
            }
            Step::KillDaemonAndRestart(i) => {
                lab.kill_daemon(i);
                std::thread::sleep(Duration::from_millis(500));
                lab.start_daemon(i)?;
            }
            Step::StopDaemonAndStart(i) => {
                lab.signal_daemon(i, Signal::SIGTERM)?;
                let code = lab.wait_daemon_exit(i, Duration::from_secs(10))?;
                if code != Some(0) {
                    return Err(anyhow!("SIGTERM exit code {code:?} on node {i}"));
                }
                lab.start_daemon(i)?;
            }
            Step::Reload(i) => lab.signal_daemon(i, Signal::SIGHUP)?,
            Step::Isolate(i) => {
                lab.isolate(i)?;
                self.isolated.insert(i);
            }
            Step::HealAll => {
                for i in std::mem::take(&mut self.isolated) {
                    lab.heal(i)?;
                }
            }
            Step::Standby(i) | Step::Unstandby(i) => {
                let on = matches!(step, Step::Standby(_));
                let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
                let node = lab.node_id(i).to_string();
                let verb = if on { "standby" } else { "unstandby" };
                // Issued on a member of the quorate partition, about node i.
                let Some(part) = part else { return Ok(()) };
                let Some(via) = part.first().copied() else { return Ok(()) };
                if !part.contains(&i) {
                    return Ok(());
                }
                let out = lab.node_exec(via, &[&bin, verb, &node])?;
                if !out.status.success() {
                    return Err(anyhow!("{verb} {node} via node {via}: {}", String::from_utf8_lossy(&out.stderr)));
                }
                if on {
                    self.standby.insert(i);
                } else {
                    self.standby.remove(&i);
                }
            }
        }
        Ok(())
    }

    /// The audit after every step.
    fn audit(&self, since: f64) -> Result<()> {
        let lab = &self.lab;
        let allocs = lab.allocation_ids();
        let Some(part) = self.quorate_partition() else {
            // No quorum anywhere: nobody may write.
            std::thread::sleep(Duration::from_secs(3));
            let writes = mutating_since(lab, since);
            return if writes.is_empty() { Ok(()) } else { Err(anyhow!("writes without quorum: {writes:?}")) };
        };
        let serving: Vec<usize> = part.iter().copied().filter(|i| !self.standby.contains(i)).collect();
        let holders = lab.wait_for("audit: agreed holders verified in EC2", SETTLE, || {
            let mut agreed: Option<Vec<u32>> = None;
            for &i in &part {
                let s = lab.daemon_status(i)?;
                if !s.synced || !s.quorate || s.members.len() != part.len() {
                    return Ok(None);
                }
                let mut holders = Vec::new();
                for r in &s.resources {
                    if r.state != "held" {
                        return Ok(None);
                    }
                    holders.push(r.holder.as_ref().map_or(0, |h| h.node_id));
                }
                if agreed.as_ref().is_some_and(|a| a != &holders) {
                    return Ok(None);
                }
                agreed = Some(holders);
            }
            let Some(holders) = agreed else { return Ok(None) };
            for (alloc, node_id) in allocs.iter().zip(&holders) {
                let index = *node_id as usize - 1;
                if !part.contains(&index) || lab.eip(alloc)?.network_interface_id.as_deref() != Some(lab.eni(index)) {
                    return Ok(None);
                }
            }
            Ok(Some(holders))
        });
        // On a timeout, what each node and EC2 said last: which condition never held.
        let holders = holders.map_err(|e| {
            let mut seen = Vec::new();
            for &i in &part {
                match lab.daemon_status(i) {
                    Ok(s) => {
                        let units: Vec<String> = s
                            .resources
                            .iter()
                            .map(|r| format!("{}={}@{}/{}", r.name, r.state, r.holder.as_ref().map_or(0, |h| h.node_id), r.generation))
                            .collect();
                        seen.push(format!("node {i}: synced={} quorate={} members={} [{}]", s.synced, s.quorate, s.members.len(), units.join(" ")));
                    }
                    Err(e) => seen.push(format!("node {i}: {e:#}")),
                }
            }
            for alloc in &allocs {
                let on = lab.eip(alloc).ok().and_then(|a| a.network_interface_id).and_then(|eni| lab.node_of(&eni));
                seen.push(format!("EC2 {alloc} on node {on:?}"));
            }
            anyhow!("{e:#}; last seen: {}", seen.join("; "))
        })?;
        if !serving.is_empty() {
            for h in &holders {
                if !serving.contains(&(*h as usize - 1)) {
                    return Err(anyhow!("node {h} holds an address while in standby"));
                }
            }
        }
        let writes = mutating_since(lab, since);
        if let Some(w) = writes.iter().find(|(n, _)| n.is_none_or(|n| !part.contains(&n))) {
            return Err(anyhow!("mutating call from outside the quorate partition: {w:?}"));
        }
        let moves = writes.iter().filter(|(_, a)| a == "AssociateAddress").count();
        if moves > 2 * allocs.len() {
            return Err(anyhow!("{moves} moves in one step: {writes:?}"));
        }
        for i in 0..lab.node_count() {
            if lab.daemon_log(i).contains("panicked") {
                return Err(anyhow!("daemon on node {i} panicked"));
            }
        }
        Ok(())
    }
}

/// Mutating EC2 calls since `since` (see `Lab::mutating_calls_since`) as (node, action); an
/// unreadable request log counts as no call, as the audit always treated it.
fn mutating_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String)> {
    lab.mutating_calls_since(since).unwrap_or_default().into_iter().map(|c| (c.node, c.action)).collect()
}

fn pick(run: &Run, rng: &mut rand::rngs::StdRng) -> Step {
    let n = run.lab.node_count();
    loop {
        let i = rng.gen_range(0..n);
        let step = match rng.gen_range(0..9) {
            0 => Step::KillCorosync(i),
            1 => Step::RestartCorosync(i),
            2 => Step::KillDaemonAndRestart(i),
            3 => Step::StopDaemonAndStart(i),
            4 => Step::Reload(i),
            5 => Step::Isolate(i),
            6 => Step::HealAll,
            7 => Step::Standby(i),
            _ => Step::Unstandby(i),
        };
        let down = run.corosync_down.contains(&i);
        let ok = match step {
            // Keep at most one node away at a time so the run mostly stays quorate, and no
            // daemon operation on a node without corosync.
            Step::KillCorosync(_) | Step::Isolate(_) => !down && run.corosync_down.len() + run.isolated.len() == 0,
            Step::RestartCorosync(_) => down,
            Step::KillDaemonAndRestart(_) | Step::StopDaemonAndStart(_) | Step::Reload(_) => !down,
            Step::HealAll => !run.isolated.is_empty(),
            Step::Standby(_) => !down && run.standby.is_empty() && !run.isolated.contains(&i),
            Step::Unstandby(_) => run.standby.contains(&i) && !run.isolated.contains(&i) && !down,
        };
        if ok {
            return step;
        }
    }
}

/// A 3-node lab with 2 EIPs and a daemon on every node; also when the daemons started, since
/// seeding the emulator wrote too and the audit counts the daemons' writes only.
fn start_run(name: &str, subnet: u8) -> (Run, f64) {
    let mut spec = LabSpec::new(name, subnet, 3);
    spec.eips = 2;
    let mut lab = Lab::start(spec).expect("lab starts");
    let started = lab::unix_now();
    for i in 0..3 {
        lab.start_daemon(i).unwrap();
    }
    (Run { lab, corosync_down: BTreeSet::new(), isolated: BTreeSet::new(), standby: BTreeSet::new() }, started)
}

#[test]
fn seeded_random_cluster_events_pass_every_audit() {
    let steps: usize = std::env::var("RELIABILITY_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let seed: u64 = std::env::var("RELIABILITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("reliability run: seed {seed}, {steps} steps (replay with RELIABILITY_SEED={seed})");
    let (mut run, started) = start_run("cts", 33);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    run.audit(started).unwrap_or_else(|e| panic!("seed {seed}: initial audit: {e:#}"));
    for n in 0..steps {
        let step = pick(&run, &mut rng);
        eprintln!("step {n}: {step:?}");
        let since = lab::unix_now();
        run.apply(step).unwrap_or_else(|e| panic!("seed {seed}, step {n} {step:?}: {e:#}"));
        run.audit(since).unwrap_or_else(|e| {
            let logs: Vec<String> = (0..3).map(|i| run.lab.daemon_log(i)).collect();
            panic!("seed {seed}, step {n} {step:?}: audit failed: {e:#}\n{}", logs.join("\n-----\n"))
        });
    }
}

/// The deterministic CTS analogues: StopOnebyOne, StartOnebyOne, SimulStop, SimulStart,
/// RestartOnebyOne (rolling restart), PartialStart (killed right after joining) and
/// NearQuorumPoint (corosync stopped and started on several nodes at once), each audited.
#[test]
fn cts_lifecycle_scenarios_pass_every_audit() {
    let (mut run, started) = start_run("ctsl", 35);
    run.audit(started).unwrap_or_else(|e| panic!("initial audit: {e:#}"));
    let eip_targets = |run: &Run| -> Vec<Option<String>> {
        run.lab.describe_addresses().unwrap().into_iter().map(|e| e.network_interface_id).collect()
    };

    // StopOnebyOne: planned stops hand over each time; after the last one EC2 is untouched.
    for i in 0..3 {
        let since = lab::unix_now();
        run.lab.signal_daemon(i, Signal::SIGTERM).unwrap();
        assert_eq!(run.lab.wait_daemon_exit(i, Duration::from_secs(10)).unwrap(), Some(0));
        if i < 2 {
            let up: Vec<usize> = (i + 1..3).collect();
            run.lab
                .wait_for("handover after a planned stop", SETTLE, || {
                    let targets = eip_targets(&run);
                    Ok(targets.iter().all(|t| up.iter().any(|n| t.as_deref() == Some(run.lab.eni(*n)))).then_some(()))
                })
                .unwrap();
            assert!(mutating_since(&run.lab, since).iter().all(|(n, _)| n.is_some_and(|n| up.contains(&n))));
        }
    }
    let before = eip_targets(&run);
    assert!(before.iter().all(Option::is_some), "addresses stay associated with nobody running");

    // StartOnebyOne: daemons join one after another into an empty group; placement waits for
    // all of them (startup wait), then every address is verified or moved once.
    let since = lab::unix_now();
    for i in 0..3 {
        run.lab.start_daemon(i).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    run.audit(since).unwrap_or_else(|e| panic!("StartOnebyOne: {e:#}"));

    // SimulStop then SimulStart.
    for i in 0..3 {
        run.lab.signal_daemon(i, Signal::SIGTERM).unwrap();
    }
    for i in 0..3 {
        assert_eq!(run.lab.wait_daemon_exit(i, Duration::from_secs(10)).unwrap(), Some(0), "SimulStop exit of node {i}");
    }
    let since = lab::unix_now();
    for i in 0..3 {
        run.lab.start_daemon(i).unwrap();
    }
    run.audit(since).unwrap_or_else(|e| panic!("SimulStart: {e:#}"));

    // RestartOnebyOne: a rolling restart; the addresses are associated all along.
    for i in 0..3 {
        let since = lab::unix_now();
        run.apply(Step::StopDaemonAndStart(i)).unwrap();
        run.audit(since).unwrap_or_else(|e| panic!("RestartOnebyOne node {i}: {e:#}"));
        assert!(eip_targets(&run).iter().all(Option::is_some));
    }

    // PartialStart: a daemon killed right after it joined leaves no trace.
    let since = lab::unix_now();
    run.lab.kill_daemon(1);
    run.lab.start_daemon(1).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    run.lab.kill_daemon(1);
    run.lab.start_daemon(1).unwrap();
    run.audit(since).unwrap_or_else(|e| panic!("PartialStart: {e:#}"));

    // NearQuorumPoint: two corosyncs stop at once (quorum lost: nobody may act), then return.
    let since = lab::unix_now();
    run.apply(Step::KillCorosync(0)).unwrap();
    run.lab.kill_corosync(1, Signal::SIGKILL);
    run.corosync_down.insert(1);
    run.audit(since).unwrap_or_else(|e| panic!("NearQuorumPoint down: {e:#}"));
    let since = lab::unix_now();
    run.apply(Step::RestartCorosync(0)).unwrap();
    run.apply(Step::RestartCorosync(1)).unwrap();
    run.lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    run.audit(since).unwrap_or_else(|e| panic!("NearQuorumPoint up: {e:#}"));
}
