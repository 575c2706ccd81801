//! End-to-end scenarios on a real multi-node Corosync cluster (network + mount namespaces),
//! real daemons, and moto as EC2. Each test asserts what EC2 says (DescribeAddresses on the
//! emulator, its request log) and what every node's `status --json` says.
//!
//! Needs root and `scripts/setup.sh`. Each test owns its lab name and subnet.

use std::time::Duration;

use anyhow::{anyhow, Result};
use corosync_eip::status::ResourceStatus;
use lab::{Lab, LabSpec, Signal, StatusReport, NODE_INTERFACE};

const SETTLE: Duration = Duration::from_secs(40);

fn start_lab(name: &str, subnet: u8, nodes: usize) -> Lab {
    let mut lab = Lab::start(LabSpec::new(name, subnet, nodes)).expect("lab starts");
    for i in 0..nodes {
        lab.start_daemon(i).expect("daemon starts");
    }
    lab
}

fn resource(status: &StatusReport) -> Result<&ResourceStatus> {
    status.resources.first().ok_or_else(|| anyhow!("no resource in status: {status:?}"))
}

fn holder_node_id(status: &StatusReport) -> Option<u32> {
    Some(resource(status).ok()?.holder.as_ref()?.node_id)
}

/// The verified holder every node of `nodes` agrees on (see `Lab::settled_holder`).
fn settled(lab: &Lab, nodes: &[usize], members: usize) -> usize {
    lab.settled_holder(nodes, members, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()))
}

/// Mutating EC2 calls since `since` (see `Lab::mutating_calls_since`) as (node, action).
fn mutating_calls_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String)> {
    lab.mutating_calls_since(since).expect("request log").into_iter().map(|c| (c.node, c.action)).collect()
}

#[test]
fn elects_one_holder_then_hands_over_on_stop_and_fails_over_on_node_loss() {
    let mut lab = start_lab("elect", 11, 3);
    let t0 = lab::unix_now();
    let first = settled(&lab, &[0, 1, 2], 3);
    // Exactly one AssociateAddress, from the holder, with AllowReassociation.
    let calls: Vec<_> = lab.ec2_requests().unwrap().into_iter().filter(|r| r.action == "AssociateAddress").collect();
    assert_eq!(calls.len(), 1, "one association at start-up: {calls:?}");
    assert_eq!(lab.node_by_ip(&calls[0].source), Some(first));
    assert_eq!(calls[0].param("AllowReassociation"), Some("true"));
    assert!(mutating_calls_since(&lab, t0).iter().all(|(n, _)| *n == Some(first)));

    // Planned stop of the holder's daemon: exit 0, a peer takes over without waiting for
    // corosync's token (the old node stays a cluster member).
    let stopped = lab::unix_now();
    lab.signal_daemon(first, Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(first, Duration::from_secs(10)).unwrap(), Some(0));
    let rest: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let second = settled(&lab, &rest, 2);
    assert_ne!(second, first);
    let s = lab.daemon_status(second).unwrap();
    let failover = resource(&s).unwrap().last_failover.as_ref();
    assert_eq!(failover.and_then(|f| f.previous.as_ref()).map(|p| p.node_id), Some(lab.node_id(first)), "{s:?}");
    assert!(failover.is_some(), "timeline recorded (verified_ms): {s:?}");
    assert!(lab.daemon_log(second).contains("failover timeline"), "timeline logged");
    // Outside two_node, the successor outbids the ownership epoch the old holder announced:
    // no read before it moves the address (the read-back still proves the move).
    assert_eq!(reads_before_move(&lab, second, stopped), 0, "the successor read before the move");

    // Hard failure: kill -9 corosync under the new holder. The last daemon takes over.
    lab.kill_corosync(second, Signal::SIGKILL);
    let third = rest.iter().copied().find(|i| *i != second).unwrap();
    let t1 = lab::unix_now();
    let holder = settled(&lab, &[third], 1);
    assert_eq!(holder, third);
    let moved: Vec<_> = mutating_calls_since(&lab, t1);
    assert!(moved.iter().all(|(n, _)| *n == Some(third)), "only the new holder writes: {moved:?}");
    assert_eq!(moved.iter().filter(|(_, a)| a == "AssociateAddress").count(), 1, "one move: {moved:?}");
    assert_eq!(reads_before_move(&lab, third, t1), 0, "the successor read before the move");
    lab.assert_no_panics();
}

/// DescribeAddresses calls `node` made after `since` and before its first AssociateAddress.
fn reads_before_move(lab: &Lab, node: usize, since: f64) -> usize {
    let before = lab.actions_before(node, since, "AssociateAddress").unwrap_or_else(|e| panic!("{e:#}"));
    before.iter().filter(|a| *a == "DescribeAddresses").count()
}

#[test]
fn daemon_crash_restart_and_reload_never_move_the_address() {
    let mut lab = start_lab("reatt", 12, 3);
    let holder = settled(&lab, &[0, 1, 2], 3);
    let t0 = lab::unix_now();

    // SIGKILL the holder's daemon and start it again within the reattach grace.
    lab.kill_daemon(holder);
    let s = lab
        .wait_for("peers see the vanished holder as reattaching", SETTLE, || {
            let peer = (holder + 1) % 3;
            let s = lab.daemon_status(peer)?;
            Ok((resource(&s)?.state == "reattaching").then_some(s))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_eq!(holder_node_id(&s), Some(lab.node_id(holder)));
    lab.start_daemon(holder).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder);

    // SIGHUP: re-exec in place, same pid, nothing released.
    let pid = lab.daemon_pid(holder).unwrap();
    lab.signal_daemon(holder, Signal::SIGHUP).unwrap();
    lab.wait_for("re-exec logged", SETTLE, || Ok(lab.daemon_log(holder).contains("reloading").then_some(())))
        .unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder);
    assert_eq!(lab.daemon_pid(holder), Some(pid), "reload keeps the process");
    let s = lab.daemon_status(holder).unwrap();
    assert_eq!(s.pid, pid);

    // A bad configuration on reload is refused; the daemon keeps running with the old one.
    lab.write_daemon_config(holder, "[cluster]\nmonitor_interval = \"often\"\n").unwrap();
    lab.signal_daemon(holder, Signal::SIGHUP).unwrap();
    lab.wait_for("reload refusal logged", SETTLE, || {
        Ok(lab.daemon_log(holder).contains("reload refused").then_some(()))
    })
    .unwrap();
    assert!(lab.daemon_log(holder).contains("monitor_interval"), "the refusal names the key");
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder);
    assert_eq!(lab.daemon_pid(holder), Some(pid));

    let moved = mutating_calls_since(&lab, t0);
    assert!(moved.is_empty(), "no mutating EC2 call during crash/restart/reload: {moved:?}");
    lab.assert_no_panics();
}

#[test]
fn isolated_node_never_acts_and_nothing_fails_back_after_heal() {
    let mut lab = start_lab("isol", 13, 3);
    let holder = settled(&lab, &[0, 1, 2], 3);
    let others: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let t0 = lab::unix_now();
    lab.isolate(holder).unwrap();
    let new = settled(&lab, &others, 2);
    assert_ne!(new, holder);
    // The isolated node says it is not quorate and does not act.
    let s = lab
        .wait_for("isolated node reports no quorum", SETTLE, || {
            let s = lab.daemon_status(holder)?;
            Ok((!s.quorate).then_some(s))
        })
        .unwrap();
    assert!(!s.local_quorate);
    std::thread::sleep(Duration::from_secs(3)); // several monitor intervals
    let calls = mutating_calls_since(&lab, t0);
    assert!(calls.iter().all(|(n, _)| *n == Some(new)), "only the majority's holder mutates: {calls:?}");
    assert_eq!(calls.iter().filter(|(_, a)| a == "AssociateAddress").count(), 1, "one move: {calls:?}");

    let t1 = lab::unix_now();
    lab.heal(holder).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), new, "no failback after heal");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(settled(&lab, &[0, 1, 2], 3), new);
    let calls = mutating_calls_since(&lab, t1);
    assert!(calls.is_empty(), "healing moves nothing: {calls:?}");
    let _ = &mut lab;
    lab.assert_no_panics();
}

#[test]
fn corosync_restart_under_a_standby_changes_nothing_and_drift_is_repaired_once() {
    let mut lab = Lab::start(LabSpec::new("crst", 14, 3)).expect("lab starts");
    // A second resource whose allocation does not exist: reported, never fatal.
    let config = format!(
        "{}\n[[eip]]\nname = \"ghost\"\nallocation_id = \"eipalloc-0000000000000dead\"\n",
        lab.default_daemon_config()
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let holder = settled(&lab, &[0, 1, 2], 3);
    let standby = (holder + 1) % 3;
    let t0 = lab::unix_now();
    lab.kill_corosync(standby, Signal::SIGTERM);
    lab.wait_for("standby daemon notices corosync is gone", SETTLE, || {
        let s = lab.daemon_status(standby)?;
        Ok((s.corosync == "disconnected").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert!(lab.daemon_running(standby), "the daemon survives corosync going away");
    lab.start_corosync(standby).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder);
    let calls = mutating_calls_since(&lab, t0);
    assert!(calls.is_empty(), "the address never moved: {calls:?}");

    // The missing allocation is reported by whoever was elected for it.
    let ghost_holder = lab
        .wait_for("the missing allocation reported in status", SETTLE, || {
            for i in 0..3 {
                let s = lab.daemon_status(i)?;
                let Some(ghost) = s.resources.get(1) else { continue };
                if ghost.local_role == "holder" && ghost.last_error.as_deref().is_some_and(|e| e.contains("NotFound")) {
                    return Ok(Some(i));
                }
            }
            Ok(None)
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert!(lab.daemon_running(ghost_holder));

    // Drift: someone moves the address out of band; the holder puts it back, exactly once.
    let alloc = lab.allocation_ids()[0].clone();
    let stray_eni = lab.eni(standby).to_string();
    let t1 = lab::unix_now();
    lab.with_ec2(move |rt, c| {
        rt.block_on(c.associate_address().allocation_id(alloc).network_interface_id(stray_eni).allow_reassociation(true).send())
            .map_err(|e| anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        Ok(())
    })
    .unwrap();
    lab.wait_for("drift repaired", SETTLE, || {
        let s = lab.daemon_status(holder)?;
        Ok((resource(&s)?.drift_repairs == 1).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder);
    std::thread::sleep(Duration::from_secs(3));
    let repairs: Vec<_> = mutating_calls_since(&lab, t1)
        .into_iter()
        .filter(|(n, a)| n.is_some() && a == "AssociateAddress")
        .collect();
    assert_eq!(repairs, vec![(Some(holder), "AssociateAddress".to_string())], "one repair, by the holder");
    lab.assert_no_panics();
}

#[test]
fn two_node_split_moves_once_and_never_ping_pongs() {
    // two_node: 1 — both halves of a split keep quorum, the classic split brain. The ownership
    // record on the address makes the old holder yield instead of fighting back.
    let lab = start_lab("split", 15, 2);
    let holder = settled(&lab, &[0, 1], 2);
    let other = 1 - holder;
    let t0 = lab::unix_now();
    lab.isolate(holder).unwrap();
    assert_eq!(settled(&lab, &[other], 1), other, "the other half takes it over");
    let s = lab
        .wait_for("the old holder yields", SETTLE, || {
            let s = lab.daemon_status(holder)?;
            Ok((resource(&s)?.state == "yielded").then_some(s))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert!(resource(&s).unwrap().last_error.as_deref().unwrap_or_default().contains("not taking it back"));
    std::thread::sleep(Duration::from_secs(6)); // three monitor intervals on both sides
    let moves = |since| mutating_calls_since(&lab, since).into_iter().filter(|(_, a)| a == "AssociateAddress").collect::<Vec<_>>();
    assert_eq!(moves(t0), vec![(Some(other), "AssociateAddress".to_string())], "exactly one move, no ping-pong");
    assert_eq!(lab.eip_holder(&lab.allocation_ids()[0]).unwrap(), Some(other));

    // Heal: the merged cluster keeps the newer holder.
    lab.heal(holder).unwrap();
    lab.wait_quorate(&[0, 1], 2, SETTLE).unwrap();
    assert_eq!(settled(&lab, &[0, 1], 2), other);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(moves(t0).len(), 1, "healing moves nothing");
    lab.assert_no_panics();
}

/// The same split with a VIP, a secondary IP and a Route 53 record in the holder's group: their
/// ownership records (a tag on the route table, a tag on the holder's ENI, a TXT record beside
/// the record) make the old holder yield them too, and take the addresses off its interface,
/// instead of taking them back every monitor interval.
#[test]
fn two_node_split_moves_vips_secondary_ips_and_records_once_and_never_ping_pongs() {
    const VIP: &str = "172.31.255.30";
    const ADDRESS: &str = "10.0.1.203";
    const RECORD: &str = "split.lab.internal.";
    let mut spec = LabSpec::new("splk", 78, 2);
    spec.route_tables = 1;
    let mut lab = Lab::start(spec).expect("lab starts");
    let config = format!(
        "{}group = \"svc\"\n{}create_route = true\ngroup = \"svc\"\n{}group = \"svc\"\n{}group = \"svc\"\n",
        lab.default_daemon_config(),
        lab.vip_config("db", VIP),
        lab.secondary_ip_config("app", ADDRESS),
        lab.dns_config("www", RECORD, "private")
    );
    for i in 0..2 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let held = lab.settled_units(&[0, 1], 2, SETTLE);
    let holder = held["db"];
    assert!(held.values().all(|h| *h == holder), "one holder for the group: {held:?}");
    let other = 1 - holder;
    let table = lab.route_table_ids()[0].clone();
    let t0 = lab::unix_now();
    lab.isolate(holder).unwrap();
    let on = |i: usize| Some((vec![lab.private_ip(i).to_string()], Some(10)));
    lab.wait_for("the other half takes the VIP, the secondary IP and the record", SETTLE, || {
        let route = lab.route_holder(&table, VIP)?;
        let assigned = lab.secondary_ip_holders(ADDRESS)?;
        let record = lab.dns_record(RECORD, "A")?;
        Ok((route == Some(other) && assigned == vec![other] && record == on(other)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    lab.wait_for("the old holder yields all three and drops the addresses from its interface", SETTLE, || {
        let s = lab.daemon_status(holder)?;
        let yielded = ["db", "app", "www"]
            .iter()
            .all(|n| s.resources.iter().any(|r| r.name == *n && r.state == "yielded"));
        let local = lab.node_has_address(holder, NODE_INTERFACE, VIP)? || lab.node_has_address(holder, NODE_INTERFACE, ADDRESS)?;
        Ok((yielded && !local).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    std::thread::sleep(Duration::from_secs(6)); // three monitor intervals on both sides
    // The changes AWS applied. Under load Route 53 may throttle an UPSERT (nothing changed) or
    // a timed-out UPSERT may go out again: the same change of the same value. Those count once;
    // the ownership record below (epoch 2) proves the record was claimed once.
    let moves = |since| {
        let mut applied: Vec<(Option<usize>, String)> = lab
            .mutating_calls_since(since)
            .expect("request log")
            .into_iter()
            .filter(|c| matches!(c.action.as_str(), "ReplaceRoute" | "CreateRoute" | "AssignPrivateIpAddresses" | "ChangeResourceRecordSets"))
            .filter(|c| c.status.is_some_and(|s| (200..300).contains(&s)))
            .map(|c| (c.node, c.action))
            .collect();
        applied.sort();
        applied.dedup_by(|a, b| a == b && a.1 == "ChangeResourceRecordSets");
        applied
    };
    let mut expected = vec![
        (Some(other), "AssignPrivateIpAddresses".to_string()),
        (Some(other), "ChangeResourceRecordSets".to_string()),
        (Some(other), "ReplaceRoute".to_string()),
    ];
    expected.sort();
    let all: Vec<_> = lab.mutating_calls_since(t0).expect("request log").into_iter().map(|c| (c.node, c.action, c.status)).collect();
    assert_eq!(moves(t0), expected, "exactly one move of each, no ping-pong: {all:?}\n{}", lab.logs());
    assert_eq!(lab.route_holder(&table, VIP).unwrap(), Some(other));
    assert_eq!(lab.secondary_ip_holders(ADDRESS).unwrap(), vec![other]);
    assert_eq!(lab.dns_record(RECORD, "A").unwrap(), on(other));
    // The record's ownership record names the new holder, one epoch above the old one's.
    let owner = lab.dns_record(&format!("_corosync-eip.{RECORD}"), "TXT").unwrap().expect("an ownership record");
    let owner = owner.0.first().map(|v| v.trim_matches('"').split('/').map(str::to_owned).collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(owner, vec![lab.instance_id(other).to_string(), "2".to_string(), lab.private_ip(other).to_string()]);
    assert!(lab.node_has_address(other, NODE_INTERFACE, VIP).unwrap() && lab.node_has_address(other, NODE_INTERFACE, ADDRESS).unwrap());

    // Heal: the merged cluster keeps the newer holder, and nothing moves.
    lab.heal(holder).unwrap();
    lab.wait_quorate(&[0, 1], 2, SETTLE).unwrap();
    let held = lab.settled_units(&[0, 1], 2, SETTLE);
    assert!(held.values().all(|h| *h == other), "the newer holder keeps the group: {held:?}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(moves(t0).len(), 3, "healing moves nothing");
    assert_eq!(lab.dns_record(RECORD, "A").unwrap(), on(other));
    lab.assert_no_panics();
}

/// Corosync refuses library calls (TryAgain) while it re-forms its ring, for most of a second
/// on a loaded machine. A heal during which one member's corosync is starved must
/// keep the majority's holder and its generation on every node: no member may give up its
/// connection and come back with an empty table, which placed the address afresh.
#[test]
#[ignore = "stress: corosync stopped and resumed for 3 s per round; run with --ignored on an otherwise idle machine"]
fn heal_while_corosync_is_starved_keeps_the_holder_and_its_generation() {
    let mut lab = start_lab("starv", 84, 3);
    for round in 0..3u64 {
        let holder = settled(&lab, &[0, 1, 2], 3);
        let others: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
        lab.isolate(holder).unwrap();
        let new = settled(&lab, &others, 2);
        let generation = lab.daemon_status(new).unwrap().resources[0].generation;
        let t1 = lab::unix_now();
        lab.heal(holder).unwrap();
        // Starve it through the whole re-forming of the ring: stopped 0.6 s at a time (less
        // than the token), run 50 ms, for 3 s.
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            lab.kill_corosync(new, Signal::SIGSTOP);
            std::thread::sleep(Duration::from_millis(600));
            lab.kill_corosync(new, Signal::SIGCONT);
            std::thread::sleep(Duration::from_millis(50));
        }
        lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
        assert_eq!(settled(&lab, &[0, 1, 2], 3), new, "no failback after heal, round {round}\n{}", lab.logs());
        for i in 0..3 {
            let s = lab.daemon_status(i).unwrap();
            assert_eq!(s.resources[0].generation, generation, "node {i} kept generation {generation} (round {round})\n{}", lab.logs());
        }
        let calls = mutating_calls_since(&lab, t1);
        assert!(calls.is_empty(), "healing moves nothing (round {round}): {calls:?}");
    }
    lab.assert_no_panics();
}

/// Every member's corosync restarted at once (a cluster-wide `systemctl restart corosync`, or
/// every connection lost while the ring re-forms): each daemon reconnects with the table it
/// knew, so the holder after a failover keeps the address and its generation. Placing afresh
/// would hand the address back to the node placement picks first.
#[test]
fn corosync_restarted_everywhere_keeps_the_holder_and_its_generation() {
    let mut lab = start_lab("crall", 85, 3);
    let first = settled(&lab, &[0, 1, 2], 3);
    let others: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    lab.isolate(first).unwrap();
    let holder = settled(&lab, &others, 2);
    lab.heal(first).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder);
    let generation = lab.daemon_status(holder).unwrap().resources[0].generation;
    assert!(generation >= 2, "the failover made a new generation: {generation}");

    let t0 = lab::unix_now();
    for i in 0..3 {
        lab.kill_corosync(i, Signal::SIGKILL);
    }
    for i in 0..3 {
        lab.wait_for("the daemon notices corosync is gone", SETTLE, || {
            let s = lab.daemon_status(i)?;
            Ok((s.corosync == "disconnected").then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    }
    // The rings re-form one by one: the holder's corosync comes back last, after the others
    // formed a quorate ring whose daemons reconnected. Its node was never seen leaving that
    // ring, so its holder keeps the reattach grace instead of losing the address at once.
    let others: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    for &i in &others {
        lab.start_corosync(i).unwrap();
    }
    lab.wait_quorate(&others, 2, SETTLE).unwrap();
    for &i in &others {
        lab.wait_for("the daemon is back in the group", SETTLE, || {
            let s = lab.daemon_status(i)?;
            Ok((s.corosync != "disconnected" && s.synced).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    }
    lab.start_corosync(holder).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), holder, "the holder stays\n{}", lab.logs());
    for i in 0..3 {
        let s = lab.daemon_status(i).unwrap();
        assert_eq!(s.resources[0].generation, generation, "node {i} kept the generation\n{}", lab.logs());
    }
    let calls = mutating_calls_since(&lab, t0);
    assert!(calls.is_empty(), "nothing moved: {calls:?}");
    for i in 0..3 {
        assert!(lab.daemon_running(i));
    }
    lab.assert_no_panics();
}
