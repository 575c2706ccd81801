//! Secondary private IPs on the lab cluster: the address follows the holder's ENI in EC2 and
//! its interface, moves with its group, is repaired once after drift, moves without a gap on a
//! planned move, fails over once on a node loss, leaves a node that loses quorum, and a node
//! whose subnet does not contain it refuses to start. Assertions read EC2 (the emulator, every
//! ENI), each node's `status --json` and each node's interface addresses.
//! Needs root and scripts/setup.sh. Run: cargo test --test secondary_ip -- --nocapture

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lab::{Lab, LabSpec, Signal, NODE_INTERFACE};

const SETTLE: Duration = Duration::from_secs(40);
/// In the lab's EC2 subnet (10.0.1.0/24), never a node's primary address (those are
/// assigned from the bottom of the range).
const ADDRESS: &str = "10.0.1.200";
/// Outside the lab's EC2 subnet.
const FOREIGN: &str = "10.0.2.200";

/// AssignPrivateIpAddresses calls since `since`: (node, HTTP status).
fn assigns_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, Option<u16>)> {
    lab.mutating_calls_since(since)
        .unwrap()
        .into_iter()
        .filter(|c| c.action == "AssignPrivateIpAddresses")
        .map(|c| (c.node, c.status))
        .collect()
}

#[test]
fn secondary_ip_follows_its_holder_and_is_never_on_two_interfaces() {
    let mut lab = Lab::start(LabSpec::new("sip", 71, 3)).expect("lab starts");

    // ---- a node whose subnet does not hold the address refuses to start, naming the key
    let bad = format!("{}{}", lab.default_daemon_config(), lab.secondary_ip_config("db", FOREIGN));
    lab.write_daemon_config(0, &bad).unwrap();
    lab.start_daemon(0).unwrap();
    let code = lab.wait_daemon_exit(0, SETTLE).unwrap();
    assert_eq!(code, Some(64), "{}", lab.daemon_log(0));
    let log = lab.daemon_log(0);
    assert!(log.contains("secondary_ip[0].address") && log.contains("10.0.1.0/24"), "{log}");
    let check = lab.cli(0, &["check", "--config", "/etc/corosync-eip/corosync-eip.toml"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{report}");
    assert!(report.contains(&format!("secondary IP db ({FOREIGN})")) && report.contains("outside"), "{report}");
    assert!(lab.secondary_ip_enis(FOREIGN).unwrap().is_empty(), "nothing was assigned");

    // ---- start: one holder for the group, verified in EC2 and on its interface only
    let config = format!(
        "{}group = \"svc\"\n{}group = \"svc\"\n",
        lab.default_daemon_config(),
        lab.secondary_ip_config("db", ADDRESS)
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let held = lab.settled_units(&[0, 1, 2], 3, SETTLE);
    let holder = held["db"];
    assert_eq!(held["eip1"], holder, "a group has one holder");
    on_holder_only(&lab, ADDRESS, holder, "address on the holder only");
    assert_eq!(lab.eip_holder(&lab.allocation_ids()[0]).unwrap(), Some(holder), "the group's EIP is there too");
    let mine = Lab::resource_of(&lab.daemon_status(holder).unwrap(), "db");
    assert_eq!(mine.kind, "secondary_ip");
    assert_eq!(mine.address.as_deref(), Some(ADDRESS));
    assert_eq!(mine.interfaces, Some(vec![lab.eni(holder).to_string()]));
    assert_eq!(mine.local_address, Some(true));
    let other = (holder + 1) % 3;
    let theirs = Lab::resource_of(&lab.daemon_status(other).unwrap(), "db");
    assert_eq!(theirs.interfaces, Some(vec![lab.eni(holder).to_string()]), "standby shows the holder's announcement");
    let check = lab.cli(other, &["check", "--config", "/etc/corosync-eip/corosync-eip.toml"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("permission ec2:AssignPrivateIpAddresses") && report.contains("cannot be proven"), "{report}");

    // ---- drift: an operator moves the address to another node's ENI; repaired once
    let t = lab::unix_now();
    lab.assign_secondary_ip(other, ADDRESS).unwrap();
    assert_eq!(lab.secondary_ip_holders(ADDRESS).unwrap(), vec![other], "the emulator moved it (AllowReassignment)");
    on_holder_only(&lab, ADDRESS, holder, "drift repaired");
    std::thread::sleep(Duration::from_secs(5)); // two more monitor rounds
    let assigns = assigns_since(&lab, t);
    let repairs: Vec<_> = assigns.iter().filter(|(n, _)| n.is_some()).collect();
    assert_eq!(repairs, vec![&(Some(holder), Some(200))], "one repair, by the holder: {assigns:?}");
    assert_eq!(Lab::resource_of(&lab.daemon_status(holder).unwrap(), "db").drift_repairs, 1);

    // ---- planned move: EC2 never shows the address on no ENI, nor on two
    let to = (holder + 1) % 3;
    let stop = AtomicBool::new(false);
    let (out, samples, took) = std::thread::scope(|s| {
        let observer = s.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(enis) = lab.secondary_ip_enis(ADDRESS) {
                    samples.push(enis);
                }
            }
            samples
        });
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let out = lab.cli((holder + 2) % 3, &["move", "svc", "--to", &lab.node_id(to).to_string()]);
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (out, observer.join().unwrap(), took)
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "move failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(samples.len() > 10, "observer polled {} times", samples.len());
    assert!(samples.iter().all(|s| s.len() == 1), "EC2 showed the address on no ENI or on two during the move: {samples:?}");
    assert_eq!(samples.last().unwrap(), &vec![lab.eni(to).to_string()]);
    eprintln!("planned move of a secondary IP: {took:.2?} for the command, {} EC2 samples, never unassigned", samples.len());
    on_holder_only(&lab, ADDRESS, to, "address on the move's target only");
    assert_eq!(lab.settled_units(&[0, 1, 2], 3, SETTLE)["db"], to);
    let holder = to;

    // ---- quorum loss: the isolated holder drops the address; the majority takes it once
    let t = lab::unix_now();
    lab.isolate(holder).unwrap();
    let rest: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let new = lab.settled_units(&rest, 2, SETTLE)["db"];
    assert_ne!(new, holder);
    on_holder_only(&lab, ADDRESS, new, "the isolated node dropped the address, the new holder has it");
    let assigns = assigns_since(&lab, t);
    assert_eq!(assigns, vec![(Some(new), Some(200))], "one move, by the majority's holder: {assigns:?}");
    let t = lab::unix_now();
    lab.heal(holder).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(lab.settled_units(&[0, 1, 2], 3, SETTLE)["db"], new, "nothing moves back after the heal");
    std::thread::sleep(Duration::from_secs(3));
    assert!(assigns_since(&lab, t).is_empty(), "healing moves nothing");

    // ---- hard failure: corosync of the holder's node is killed; one move to a survivor
    let t = lab::unix_now();
    lab.kill_corosync(new, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != new).collect();
    let after = lab.settled_units(&rest, 2, SETTLE);
    let survivor = after["db"];
    assert_ne!(survivor, new);
    assert_eq!(after["eip1"], survivor, "the group moved as one");
    on_holder_only(&lab, ADDRESS, survivor, "address on the survivor only");
    let assigns = assigns_since(&lab, t);
    assert_eq!(assigns, vec![(Some(survivor), Some(200))], "one move: {assigns:?}");
    // Outside two_node the survivor outbids the epochs the lost holder announced: it reads
    // neither address before moving them (only the read-back after).
    let before = lab.actions_before(survivor, t, "AssignPrivateIpAddresses").unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!before.iter().any(|a| a.starts_with("Describe")), "the survivor read before the move: {before:?}");
    let timeline = Lab::resource_of(&lab.daemon_status(survivor).unwrap(), "db").last_failover.expect("a failover timeline");
    eprintln!(
        "failover of a secondary IP: elected +{}ms, sent {:?}ms, verified +{}ms",
        timeline.elected_ms, timeline.associate_sent_ms, timeline.verified_ms
    );
    lab.assert_no_panics();
}

/// An IPv6 address of the subnet: EC2 has no reassignment for IPv6, so a move is
/// UnassignIpv6Addresses on the old ENI, then AssignIpv6Addresses on the new one. The gap between
/// the two is measured here, from the request log and from EC2 itself.
#[test]
fn secondary_ipv6_moves_by_unassign_then_assign_and_the_gap_is_measured() {
    let mut lab = Lab::start(LabSpec::new("sip6", 75, 3)).expect("lab starts");
    let subnet6 = lab.seed_info().subnet_ipv6_cidr.clone();
    let prefix = subnet6.split("::/").next().expect("an IPv6 /64");
    let address = format!("{prefix}::c0:1");
    let config = format!("{}{}", lab.default_daemon_config(), lab.secondary_ip_config("db6", &address));
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let holder = lab.settled_units(&[0, 1, 2], 3, SETTLE)["db6"];
    on_holder_only(&lab, &address, holder, "IPv6 address on the holder only");
    let first = assigns6_since(&lab, 0.0);
    assert_eq!(first, vec![(Some(holder), "AssignIpv6Addresses".to_string(), Some(200))], "{first:?}");

    // planned move, observed from EC2: the address is on no ENI for a moment, never on two
    let to = (holder + 1) % 3;
    let t = lab::unix_now();
    let stop = AtomicBool::new(false);
    let (out, samples) = std::thread::scope(|s| {
        let observer = s.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(enis) = lab.secondary_ip_enis(&address) {
                    samples.push(enis.len());
                }
            }
            samples
        });
        std::thread::sleep(Duration::from_millis(200));
        let out = lab.cli((holder + 2) % 3, &["move", "db6", "--to", &lab.node_id(to).to_string()]);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (out, observer.join().unwrap())
    });
    assert!(out.status.success(), "move failed: {}", String::from_utf8_lossy(&out.stderr));
    on_holder_only(&lab, &address, to, "IPv6 address on the move's target only");
    assert!(samples.iter().all(|n| *n <= 1), "never on two ENIs: {samples:?}");
    let calls = assigns6_since(&lab, t);
    assert_eq!(
        calls.iter().map(|(n, a, _)| (*n, a.as_str())).collect::<Vec<_>>(),
        vec![(Some(to), "UnassignIpv6Addresses"), (Some(to), "AssignIpv6Addresses")],
        "the new holder unassigns, then assigns: {calls:?}"
    );
    let gap = gap_ms(&lab, t);
    let unassigned = samples.iter().filter(|n| **n == 0).count();
    eprintln!(
        "planned IPv6 move: {gap:.1} ms from UnassignIpv6Addresses to AssignIpv6Addresses answered; \
         EC2 showed the address on no ENI in {unassigned} of {} samples",
        samples.len()
    );

    // hard failure: the survivor takes the address from the dead node's ENI the same way
    let t = lab::unix_now();
    lab.kill_corosync(to, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != to).collect();
    let survivor = lab.settled_units(&rest, 2, SETTLE)["db6"];
    on_holder_only(&lab, &address, survivor, "IPv6 address on the survivor only");
    let calls = assigns6_since(&lab, t);
    assert_eq!(
        calls.iter().map(|(n, a, _)| (*n, a.as_str())).collect::<Vec<_>>(),
        vec![(Some(survivor), "UnassignIpv6Addresses"), (Some(survivor), "AssignIpv6Addresses")],
        "{calls:?}"
    );
    eprintln!("IPv6 failover: {:.1} ms between unassign and assign", gap_ms(&lab, t));
    lab.assert_no_panics();
}

/// Waits until EC2 has `address` on node `holder`'s ENI alone and, of the nodes whose daemon
/// runs, only `holder` has it on its interface.
fn on_holder_only(lab: &Lab, address: &str, holder: usize, what: &str) {
    lab.wait_for(what, SETTLE, || {
        if lab.secondary_ip_holders(address)? != [holder] {
            return Ok(None);
        }
        for i in 0..lab.node_count() {
            if lab.daemon_running(i) && lab.node_has_address(i, NODE_INTERFACE, address)? != (i == holder) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
}

/// IPv6 assign/unassign calls of the nodes since `since`: (node, action, status).
fn assigns6_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String, Option<u16>)> {
    lab.mutating_calls_since(since)
        .unwrap()
        .into_iter()
        .filter(|c| c.node.is_some() && c.action.ends_with("Ipv6Addresses"))
        .map(|c| (c.node, c.action, c.status))
        .collect()
}

/// Milliseconds from the arrival of the first UnassignIpv6Addresses since `since` to the end of
/// the AssignIpv6Addresses that followed it: how long the address was on no ENI.
fn gap_ms(lab: &Lab, since: f64) -> f64 {
    let requests: Vec<_> = lab.ec2_requests().unwrap().into_iter().filter(|r| r.t >= since).collect();
    let unassign = requests.iter().find(|r| r.action == "UnassignIpv6Addresses").expect("an unassign");
    let assign = requests
        .iter()
        .find(|r| r.action == "AssignIpv6Addresses" && r.t >= unassign.t)
        .expect("an assign after it");
    (assign.t - unassign.t) * 1000.0 + assign.duration_ms.unwrap_or(0.0)
}
