//! Configuration drift between members and hand-off of a unit an elected member cannot serve,
//! on the lab (real corosync in namespaces, moto as EC2, IAM enforcement where needed).
//!
//! Contract under test:
//! - Members announce a digest of every unit's placement-relevant spec. While members' specs for
//!   a unit differ, the unit is never placed or moved; every node's `status --json` has a
//!   top-level `conflicts` array (`{"unit", "keys", "variants": [{"nodes": [...]}]}`) and a
//!   `warnings` line naming the unit and saying the configuration differs. Once the files agree
//!   (fix + SIGHUP) `conflicts` is empty and placement resumes.
//! - An elected member that cannot acquire a unit (permission denied: at once; EC2 unreachable:
//!   after `[aws] acquire_timeout`, default 20 s) announces it; the next candidate is elected.
//!   `members[].cannot_serve` lists `{"unit", "class", "reason"}`; it clears once the member's
//!   periodic DryRun checks (`[aws] permission_check_interval`) pass again. Nothing moves back.
//!
//! Lab names/subnets: `dr`/53 (drift and roll-out: the per-name lock serialises them), `ho`/54
//! (successor denied), `hu`/55 (successor unreachable). Run one at a time:
//! `cargo test --test drift_handoff -- --test-threads=1 --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::Duration;

use anyhow::anyhow;
use corosync_eip::core::wire::{Incapacity, Unable};
use corosync_eip::status::{ConflictStatus, ResourceStatus};
use lab::{unix_now, Ec2Proof, Ec2Request, Lab, LabSpec, Settle, Signal, StatusReport, Units};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// shared helpers

/// Generous bound for convergence waits (not a product target).
const SETTLE: Duration = Duration::from_secs(40);
/// The lab configs' monitor interval.
const MONITOR: Duration = Duration::from_secs(2);
/// `[aws] permission_check_interval` of the hand-off tests.
const PERMISSION_CHECK: Duration = Duration::from_secs(2);

/// Panics with `msg` and the tail of every node's daemon log.
macro_rules! fail {
    ($lab:expr, $($arg:tt)*) => {
        panic!("{}\n{}", format!($($arg)*), $lab.logs())
    };
}

/// `assert!` that appends every node's daemon log tail to the failure message.
macro_rules! check {
    ($lab:expr, $cond:expr, $($arg:tt)*) => {
        if !$cond {
            fail!($lab, $($arg)*);
        }
    };
}

/// A daemon config: `[cluster]` (lab defaults + `cluster_extra` lines), an `[aws]` table when
/// `aws` is not empty, then one `[[eip]]` per `(k, extra)`: name `eip{k+1}`, the lab's k-th
/// allocation, plus `extra` lines inside that block.
fn config_text(lab: &Lab, cluster_extra: &str, aws: &str, eips: &[(usize, &str)]) -> String {
    let mut s = format!(
        "[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"{}s\"\nreattach_grace = \"5s\"\n{cluster_extra}",
        MONITOR.as_secs()
    );
    if !aws.is_empty() {
        s += &format!("\n[aws]\n{aws}");
    }
    let allocs = lab.allocation_ids();
    for &(k, extra) in eips {
        s += &format!("\n[[eip]]\nname = \"eip{}\"\nallocation_id = \"{}\"\n{extra}", k + 1, allocs[k]);
    }
    s
}




/// The resource called `name` in a status.
fn resource<'a>(status: &'a StatusReport, name: &str) -> Option<&'a ResourceStatus> {
    status.resources.iter().find(|r| r.name == name)
}

/// Waits until each of `nodes` says: synced, quorate, `members` members, and for every unit in
/// `units`: state "held", the same holder on every node, and EC2 (DescribeAddresses) shows the
/// address on that holder's instance and ENI. Returns the holders' node indices, in `units`
/// order.
fn settled(lab: &Lab, nodes: &[usize], members: usize, units: &[&str]) -> Vec<usize> {
    let rules = Settle {
        nodes,
        members,
        units: Units::Named(units),
        ec2: Ec2Proof::InstanceAndEni,
        disagreement_fails: false,
        timeout: SETTLE,
    };
    let held = lab.settle(&rules).unwrap_or_else(|e| fail!(lab, "{e:#}"));
    units.iter().map(|u| held[*u]).collect()
}

/// Waits until node i's status is answered by a synced, quorate process seeing `members`
/// members whose configuration has every resource in `names` (i.e. a reload has taken effect
/// and the re-exec'd daemon has rejoined the group).
fn wait_reloaded(lab: &Lab, i: usize, members: usize, names: &[&str]) {
    lab.wait_for(&format!("node {i} reloaded with {names:?} and synced"), SETTLE, || {
        let s = lab.daemon_status(i)?;
        Ok((s.synced
            && s.quorate
            && s.members.len() == members
            && names.iter().all(|n| resource(&s, n).is_some()))
        .then_some(()))
    })
    .unwrap_or_else(|e| fail!(lab, "{e:#}"));
}

fn is_dry_run(r: &Ec2Request) -> bool {
    r.param("DryRun") == Some("true")
}

fn is_mutating(r: &Ec2Request) -> bool {
    !r.action.starts_with("Describe") && !is_dry_run(r)
}

fn ok(r: &Ec2Request) -> bool {
    r.status.is_some_and(|s| (200..300).contains(&s))
}

fn requests(lab: &Lab) -> Vec<Ec2Request> {
    lab.ec2_requests().expect("request log")
}

/// Non-DryRun AssociateAddress requests for `alloc` at or after `since` (any outcome).
fn associates(lab: &Lab, alloc: &str, since: f64) -> Vec<Ec2Request> {
    requests(lab)
        .into_iter()
        .filter(|r| r.t >= since && r.action == "AssociateAddress" && !is_dry_run(r) && r.param("AllocationId") == Some(alloc))
        .collect()
}

/// (caller node, action, http status) of a request, for messages.
fn brief(lab: &Lab, r: &Ec2Request) -> (Option<usize>, String, Option<u16>) {
    (lab.node_by_ip(&r.source), r.action.clone(), r.status)
}

/// Mutating calls (not Describe*, not DryRun) at or after `since`, as (node, action, status).
fn mutating_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String, Option<u16>)> {
    lab.mutating_calls_since(since).expect("request log").into_iter().map(|c| (c.node, c.action, c.status)).collect()
}

/// Calls as given by `brief`, counted per (node, action, status): compact failure messages.
fn summary(calls: &[(Option<usize>, String, Option<u16>)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (node, action, status) in calls {
        let node = node.map(|n| format!("node {n}")).unwrap_or_else(|| "harness".into());
        *m.entry(format!("{node} {action} {}", status.map(|s| s.to_string()).unwrap_or_default())).or_insert(0) += 1;
    }
    m
}

/// The `conflicts` item for `unit` in a status, if any.
fn conflict_for<'a>(status: &'a StatusReport, unit: &str) -> Option<&'a ConflictStatus> {
    status.conflicts.iter().find(|c| c.unit == unit)
}

/// A conflict's variants as sets of node ids, sorted (variant order is not part of the contract).
fn variant_sets(conflict: &ConflictStatus) -> Vec<BTreeSet<u32>> {
    let mut v: Vec<BTreeSet<u32>> = conflict.variants.iter().map(|v| v.nodes.iter().copied().collect()).collect();
    v.sort();
    v
}

/// Whether a status's `warnings` has a line naming `unit` and saying the configuration differs.
fn has_differs_warning(status: &StatusReport, unit: &str) -> bool {
    status.warnings.iter().any(|l| l.contains(unit) && l.to_lowercase().contains("differ"))
}

/// `cannot_serve` of member `node_id` in a status: None when the member is missing.
fn cannot_serve(status: &StatusReport, node_id: u32) -> Option<Vec<Unable>> {
    status.members.iter().find(|m| m.node_id == node_id).map(|m| m.cannot_serve.clone())
}

/// Waits until `viewer`'s status shows member `node_id` unable to serve `unit`; returns that
/// `cannot_serve` entry.
fn wait_cannot_serve(lab: &Lab, viewer: usize, node_id: u32, unit: &str) -> Unable {
    lab.wait_for(&format!("node {viewer}'s status: member {node_id} cannot serve {unit}"), SETTLE, || {
        let s = lab.daemon_status(viewer)?;
        Ok(cannot_serve(&s, node_id).and_then(|v| v.into_iter().find(|e| e.unit == unit)))
    })
    .unwrap_or_else(|e| {
        let s = lab.daemon_status(viewer).map(|s| format!("{:?}", s.members)).unwrap_or_else(|e| e.to_string());
        fail!(lab, "{e:#}\nmembers on node {viewer}: {s}")
    })
}

/// A 3-node lab with IAM enforcement on, node i's daemon signed by an IAM user with
/// `policies[i]`, `[cluster] prefer = [1, 2, 3]` (node 0 holds, node 1 is the elected successor)
/// and `[aws] permission_check_interval = "2s"`. Waits until node 0 holds eip1.
fn start_handoff_lab(name: &str, subnet: u8, policies: [Value; 3]) -> Lab {
    let mut lab = Lab::start(LabSpec::new(name, subnet, 3)).expect("lab starts");
    let prefer: Vec<String> = (0..3).map(|i| lab.node_id(i).to_string()).collect();
    let config = config_text(
        &lab,
        &format!("prefer = [{}]\n", prefer.join(", ")),
        &format!("permission_check_interval = \"{}s\"\n", PERMISSION_CHECK.as_secs()),
        &[(0, "")],
    );
    let keys: Vec<(String, String)> =
        policies.iter().enumerate().map(|(i, p)| lab.create_iam_user(&format!("node{i}"), p).expect("IAM user")).collect();
    lab.enforce_iam(true).expect("IAM enforcement on");
    for (i, (key, secret)) in keys.iter().enumerate() {
        lab.set_daemon_env(i, "AWS_ACCESS_KEY_ID", key);
        lab.set_daemon_env(i, "AWS_SECRET_ACCESS_KEY", secret);
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let h = settled(&lab, &[0, 1, 2], 3, &["eip1"]);
    check!(&lab, h == vec![0], "node 0 (prefer first) holds eip1 before the failure, got {h:?}");
    lab
}

// ---------------------------------------------------------------------------------------------
// 1. drift

#[test]
fn drifted_prefer_blocks_placement_until_the_files_agree() {
    let mut lab = Lab::start(LabSpec::new("dr", 53, 3)).expect("lab starts");
    let alloc = lab.allocation_ids()[0].clone();
    let agreed = config_text(&lab, "", "", &[(0, "prefer = [1]\n")]);
    let drifted = config_text(&lab, "", "", &[(0, "prefer = [3]\n")]);
    let t_start = unix_now();
    for i in 0..3 {
        lab.write_daemon_config(i, if i == 2 { &drifted } else { &agreed }).unwrap();
        lab.start_daemon(i).unwrap();
    }
    // Observe ~20 s from the start: no tug of war (expected: no association at all).
    thread::sleep(Duration::from_secs_f64((t_start + 20.0 - unix_now()).max(0.0)));
    let during: Vec<_> = associates(&lab, &alloc, 0.0).iter().map(|r| brief(&lab, r)).collect();
    check!(&lab, during.len() <= 1, "at most one AssociateAddress while the configs differ, got {}: {during:?}", during.len());

    // Every node reports the conflict: key `prefer`, variants {1,2} / {3}, and a warning.
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let want: Vec<BTreeSet<u32>> = vec![[lab.node_id(0), lab.node_id(1)].into(), [lab.node_id(2)].into()];
    for i in 0..3 {
        let s = lab
            .wait_for(&format!("node {i} reports a conflict for eip1"), SETTLE, || {
                let s = lab.daemon_status(i)?;
                Ok(conflict_for(&s, "eip1").is_some().then_some(s))
            })
            .unwrap_or_else(|e| {
                let s = lab.daemon_status(i).map(|s| format!("{s:?}")).unwrap_or_else(|e| e.to_string());
                fail!(&lab, "{e:#}\nstatus of node {i}: {s}")
            });
        let c = conflict_for(&s, "eip1").unwrap();
        assert_eq!(c.keys, vec!["prefer"], "node {i}: only `prefer` differs: {c:?}");
        assert_eq!(variant_sets(c), want, "node {i}: variants {{1,2}} / {{3}}: {c:?}");
        assert!(has_differs_warning(&s, "eip1"), "node {i}: a warning names eip1 and says the configuration differs: {:?}", s.warnings);
        let out = lab.node_exec(i, &[&bin, "status"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines().any(|l| l.contains("eip1") && l.to_lowercase().contains("differ")),
            "node {i}: human status shows the conflict:\n{text}"
        );
    }

    // Fix node 3's file and reload it: the conflict clears everywhere, eip1 goes to node 1.
    lab.write_daemon_config(2, &agreed).unwrap();
    lab.signal_daemon(2, Signal::SIGHUP).unwrap();
    lab.wait_for("the conflict clears on every node", SETTLE, || {
        for i in 0..3 {
            let s = lab.daemon_status(i)?;
            if !s.synced || !s.conflicts.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .unwrap_or_else(|e| {
        let s: Vec<String> = (0..3).map(|i| lab.daemon_status(i).map(|s| format!("{:?}", s.conflicts)).unwrap_or_else(|e| e.to_string())).collect();
        fail!(&lab, "{e:#}\nconflicts per node: {s:?}")
    });
    let h = settled(&lab, &[0, 1, 2], 3, &["eip1"]);
    assert_eq!(h, vec![0], "eip1 goes to the preferred node (node id 1)");
    let t_settled = unix_now();
    let all: Vec<_> = associates(&lab, &alloc, 0.0).iter().map(|r| brief(&lab, r)).collect();
    assert_eq!(all, vec![(Some(0), "AssociateAddress".to_string(), Some(200))], "exactly one association in the whole test, by node 0");
    thread::sleep(3 * MONITOR);
    let later = mutating_since(&lab, t_settled);
    assert!(later.is_empty(), "nothing mutates once settled: {later:?}");
    lab.assert_no_panics();
}

// ---------------------------------------------------------------------------------------------
// 2. roll-out of a new address, node by node

#[test]
fn adding_an_address_node_by_node_associates_it_once_and_moves_nothing_else() {
    let mut spec = LabSpec::new("dr", 53, 3);
    spec.eips = 2;
    let mut lab = Lab::start(spec).expect("lab starts");
    let allocs = lab.allocation_ids();
    let (alloc1, alloc2) = (allocs[0].clone(), allocs[1].clone());
    let old = config_text(&lab, "", "", &[(0, "")]);
    let new = config_text(&lab, "", "", &[(0, ""), (1, "")]);
    for i in 0..3 {
        lab.write_daemon_config(i, &old).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let h1 = settled(&lab, &[0, 1, 2], 3, &["eip1"])[0];
    let t0 = unix_now();
    // Everything that names eip1 in a mutating call: its allocation or its association.
    let mut eip1_ids = vec![alloc1.clone()];
    eip1_ids.extend(lab.eip(&alloc1).unwrap().association_id);

    for i in 0..3 {
        lab.write_daemon_config(i, &new).unwrap();
        lab.signal_daemon(i, Signal::SIGHUP).unwrap();
        wait_reloaded(&lab, i, 3, &["eip1", "eip2"]);
        // A roll-out is not instantaneous: let the mixed configuration stand for a while
        // (monitor rounds, any placement decision) before the next node.
        thread::sleep(2 * MONITOR);
        let views: Vec<String> =
            (0..3).map(|j| lab.daemon_status(j).map(|s| format!("{:?}", s.conflicts)).unwrap_or_else(|e| e.to_string())).collect();
        eprintln!("roll-out: node {i} runs eip1+eip2 ({:.1} s after t0); conflicts per node: {views:?}", unix_now() - t0);
    }
    let holders = settled(&lab, &[0, 1, 2], 3, &["eip1", "eip2"]);
    let t_settled = unix_now();
    eprintln!("roll-out: holders eip1 → node {}, eip2 → node {}", holders[0], holders[1]);
    thread::sleep(3 * MONITOR);

    let eip2_assoc: Vec<_> = associates(&lab, &alloc2, 0.0).iter().map(|r| brief(&lab, r)).collect();
    assert_eq!(eip2_assoc.len(), 1, "eip2 associated exactly once: {eip2_assoc:?}");
    assert!(eip2_assoc[0].2.is_some_and(|s| (200..300).contains(&s)), "that association succeeded: {eip2_assoc:?}");
    assert_eq!(eip2_assoc[0].0, Some(holders[1]), "by eip2's holder: {eip2_assoc:?}");
    let eip1_calls: Vec<_> = requests(&lab)
        .iter()
        .filter(|r| r.t >= t0 && is_mutating(r) && r.params.values().any(|v| v.as_str().is_some_and(|v| eip1_ids.iter().any(|id| id == v))))
        .map(|r| brief(&lab, r))
        .collect();
    assert!(eip1_calls.is_empty(), "no mutating call for eip1 during the roll-out: {eip1_calls:?}");
    assert_eq!(holders[0], h1, "eip1 stays where it was");
    assert_eq!(lab.eip_holder(&alloc1).unwrap(), Some(h1), "EC2 agrees eip1 never moved");
    let later = mutating_since(&lab, t_settled);
    assert!(later.is_empty(), "nothing mutates once settled: {later:?}");
    for i in 0..3 {
        let s = lab.daemon_status(i).unwrap();
        assert!(s.conflicts.is_empty(), "node {i}: no conflicts at the end: {:?}", s.conflicts);
    }
    lab.assert_no_panics();
}

// ---------------------------------------------------------------------------------------------
// 3. the elected successor is denied

#[test]
fn a_denied_successor_hands_the_address_to_the_next_candidate() {
    let mut lab = start_handoff_lab("ho", 54, [lab::full_policy(), lab::no_associate_policy(), lab::full_policy()]);
    let alloc = lab.allocation_ids()[0].clone();
    let t_kill = unix_now();
    lab.kill_corosync(0, Signal::SIGKILL);

    // Node 1 is elected first and EC2 refuses its AssociateAddress.
    let t_denied = lab
        .wait_for("node 1's denied AssociateAddress", SETTLE, || {
            Ok(associates(&lab, &alloc, t_kill)
                .iter()
                .find(|r| lab.node_by_ip(&r.source) == Some(1) && r.status.is_some_and(|s| (400..500).contains(&s)))
                .map(|r| r.t))
        })
        .unwrap_or_else(|e| {
            fail!(&lab, "{e:#}\nEC2 holder {:?}; mutating calls since the kill: {:?}", lab.eip_holder(&alloc).ok().flatten(), summary(&mutating_since(&lab, t_kill)))
        });
    eprintln!("hand-off: node 1 denied {:.2} s after the kill", t_denied - t_kill);

    // Bound (product target): EC2 shows node 2 within 30 s of that first denied call.
    let bound = 30.0;
    let t_seen = lab
        .wait_for("EC2 shows eip1 on node 2", Duration::from_secs_f64((t_denied + bound - unix_now()).max(0.0)), || {
            Ok((lab.eip_holder(&alloc)? == Some(2)).then(unix_now))
        })
        .unwrap_or_else(|e| {
            let calls = summary(&mutating_since(&lab, t_kill));
            fail!(&lab, "{e:#}: not handed off within {bound} s of node 1's denied call; EC2 holder {:?}; mutating calls since the kill: {calls:?}", lab.eip_holder(&alloc).ok().flatten())
        });
    let successes: Vec<Ec2Request> = associates(&lab, &alloc, t_kill).into_iter().filter(ok).collect();
    eprintln!(
        "hand-off time (first denied call → EC2 shows node 2): {:.2} s (request log: node 2's AssociateAddress {:.2} s after the denied call)",
        t_seen - t_denied,
        successes.first().map(|r| r.t - t_denied).unwrap_or(f64::NAN)
    );
    let who: Vec<_> = successes.iter().map(|r| brief(&lab, r)).collect();
    assert_eq!(who.len(), 1, "exactly one successful AssociateAddress after the kill: {who:?}");
    assert_eq!(who[0].0, Some(2), "by node 2: {who:?}");
    let node1_ok: Vec<_> = requests(&lab).iter().filter(|r| lab.node_by_ip(&r.source) == Some(1) && is_mutating(r) && ok(r)).map(|r| brief(&lab, r)).collect();
    assert!(node1_ok.is_empty(), "node 1 never succeeded at a mutating call: {node1_ok:?}");

    // Both survivors show node 1's cannot_serve for eip1, class permission.
    for viewer in [1, 2] {
        let e = wait_cannot_serve(&lab, viewer, lab.node_id(1), "eip1");
        assert_eq!(e.class, Incapacity::Permission, "node {viewer}'s view of node 1: {e:?}");
        assert!(!e.reason.is_empty(), "a reason is given: {e:?}");
    }
    assert_eq!(settled(&lab, &[1, 2], 2, &["eip1"]), vec![2], "the survivors agree node 2 holds eip1");
    lab.assert_no_panics();
}

// ---------------------------------------------------------------------------------------------
// 4. the elected successor cannot reach EC2

#[test]
fn an_unreachable_successor_hands_the_address_on_and_nothing_moves_back() {
    let mut lab = start_handoff_lab("hu", 55, [lab::full_policy(), lab::full_policy(), lab::full_policy()]);
    let alloc = lab.allocation_ids()[0].clone();
    lab.block_ec2(1).unwrap();
    // The hand-off clock starts at the kill (an upper bound of node 1's election, which needs
    // corosync's token timeout first); node 1's own status is sampled too, for information.
    let t_kill = unix_now();
    lab.kill_corosync(0, Signal::SIGKILL);

    // Bound (product target): EC2 shows node 2 within 45 s of node 1's election (here: the kill).
    let bound = 45.0;
    let mut t_elected: Option<f64> = None;
    let t_seen = lab
        .wait_for("EC2 shows eip1 on node 2", Duration::from_secs_f64(bound), || {
            if t_elected.is_none() {
                if let Ok(s) = lab.daemon_status(1) {
                    if resource(&s, "eip1").and_then(|r| r.holder.as_ref()).map(|h| h.node_id) == Some(lab.node_id(1)) {
                        t_elected = Some(unix_now());
                    }
                }
            }
            Ok((lab.eip_holder(&alloc)? == Some(2)).then(unix_now))
        })
        .unwrap_or_else(|e| {
            fail!(&lab, "{e:#}: not handed off within {bound} s of the kill; EC2 holder {:?}; node 1 seen elected at {:?} s after the kill; mutating calls since the kill: {:?}",
                lab.eip_holder(&alloc).ok().flatten(), t_elected.map(|t| t - t_kill), summary(&mutating_since(&lab, t_kill)))
        });
    eprintln!(
        "hand-off time (kill → EC2 shows node 2): {:.2} s; node 1 seen elected {} after the kill",
        t_seen - t_kill,
        t_elected.map(|t| format!("{:.2} s", t - t_kill)).unwrap_or_else(|| "never (not sampled)".into())
    );
    let who: Vec<_> = associates(&lab, &alloc, t_kill).iter().filter(|r| ok(r)).map(|r| brief(&lab, r)).collect();
    assert_eq!(who.len(), 1, "exactly one successful AssociateAddress after the kill: {who:?}");
    assert_eq!(who[0].0, Some(2), "by node 2: {who:?}");

    // Node 2 (and node 1 itself) show node 1's cannot_serve for eip1, class unreachable.
    for viewer in [2, 1] {
        let e = wait_cannot_serve(&lab, viewer, lab.node_id(1), "eip1");
        assert_eq!(e.class, Incapacity::Unreachable, "node {viewer}'s view of node 1: {e:?}");
        assert!(!e.reason.is_empty(), "a reason is given: {e:?}");
    }

    // Node 1 reaches EC2 again: its DryRun checks pass, cannot_serve clears, nothing moves back.
    let t_unblock = unix_now();
    lab.unblock_ec2(1).unwrap();
    let clear_within = 10 * PERMISSION_CHECK; // "a few intervals", generously
    lab.wait_for("node 1's cannot_serve clears on nodes 1 and 2", clear_within, || {
        for viewer in [1, 2] {
            let s = lab.daemon_status(viewer)?;
            let cs = cannot_serve(&s, lab.node_id(1)).ok_or_else(|| anyhow!("node {viewer}: no cannot_serve array for member 2: {:?}", s.members))?;
            if cs.iter().any(|e| e.unit == "eip1") {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .unwrap_or_else(|e| fail!(&lab, "{e:#}"));
    eprintln!("cannot_serve cleared {:.2} s after the unblock", unix_now() - t_unblock);
    thread::sleep(3 * MONITOR);
    assert_eq!(settled(&lab, &[1, 2], 2, &["eip1"]), vec![2], "node 2 keeps eip1");
    let after: Vec<_> = mutating_since(&lab, t_unblock);
    assert!(after.is_empty(), "nothing moves back once node 1 can serve again: {after:?}");
    lab.assert_no_panics();
}
