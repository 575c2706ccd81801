//! A node that takes many addresses at once shares its AWS calls: after its peer dies, the new
//! holder of a service (6 Elastic IPs, 2 secondary IPs, a VIP) sends one AssociateAddress per
//! EIP, one ReplaceRoute, and shares everything else: the reads, the ownership records (one
//! CreateTags with one epoch for the EIPs, one on the route table for the VIP, one on its ENI
//! for both secondary IPs) and the secondary IPs (one AssignPrivateIpAddresses). The same on a
//! planned move. Assertions read the emulator's request log, EC2 and each node's status.
//! Needs root and scripts/setup.sh. Run: cargo test --test batching -- --nocapture

use std::collections::BTreeMap;
use std::time::Duration;

use corosync_eip::core::reconcile::{EPOCH_TAG, OWNER_TAG};
use lab::{Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(40);
const SECONDARY: [&str; 2] = ["10.0.1.201", "10.0.1.202"];
const VIP: &str = "172.31.255.20";

/// Calls by action from node `i` since `since`.
fn calls_from(lab: &Lab, i: usize, since: f64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in lab.ec2_requests().unwrap() {
        if r.t >= since && lab.node_by_ip(&r.source) == Some(i) {
            *out.entry(r.action).or_default() += 1;
        }
    }
    out
}

fn count(calls: &BTreeMap<String, usize>, action: &str) -> usize {
    calls.get(action).copied().unwrap_or(0)
}

/// Every address of the service is on node `i` in EC2, and the EIPs' ownership records name
/// it with one epoch; returns that epoch.
fn all_on(lab: &Lab, i: usize) -> u64 {
    for a in lab.allocation_ids() {
        assert_eq!(lab.eip_holder(&a).unwrap(), Some(i), "EIP {a}");
    }
    for s in SECONDARY {
        assert_eq!(lab.secondary_ip_holders(s).unwrap(), vec![i], "secondary IP {s}");
    }
    for t in lab.route_table_ids() {
        assert_eq!(lab.route_holder(&t, VIP).unwrap(), Some(i), "route for {VIP} in {t}");
    }
    // The ownership records, as EC2 holds them in the addresses' tags.
    let records = lab
        .with_ec2(|rt, c| {
            let out = rt
                .block_on(c.describe_addresses().send())
                .map_err(|e| anyhow::anyhow!("DescribeAddresses: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            Ok(out
                .addresses()
                .iter()
                .map(|a| {
                    let tag = |k: &str| a.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
                    (tag(OWNER_TAG), tag(EPOCH_TAG).and_then(|e| e.parse::<u64>().ok()))
                })
                .collect::<Vec<_>>())
        })
        .unwrap();
    assert_eq!(records.len(), 6);
    let instance = lab.instance_id(i).to_string();
    assert!(records.iter().all(|(owner, _)| owner.as_deref() == Some(instance.as_str())), "owner {instance}: {records:?}");
    let first = records[0].1.expect("an epoch");
    assert!(records.iter().all(|(_, e)| *e == Some(first)), "one epoch for the addresses taken together: {records:?}");
    // The secondary IPs' records on the holder's ENI, the VIP's on the route table: each names
    // the holder's ENI.
    let eni = lab.eni(i).to_string();
    let tags = |id: String| {
        lab.with_ec2(move |rt, c| {
            let out = rt
                .block_on(c.describe_tags().filters(aws_sdk_ec2::types::Filter::builder().name("resource-id").values(id).build()).send())
                .map_err(|e| anyhow::anyhow!("DescribeTags: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            Ok(out
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect::<BTreeMap<String, String>>())
        })
        .unwrap()
    };
    let on_eni = tags(eni.clone());
    for s in SECONDARY {
        let record = on_eni.get(&format!("corosync-eip:ip:{s}")).unwrap_or_else(|| panic!("no record for {s} on {eni}: {on_eni:?}"));
        assert!(record.starts_with(&format!("{eni}/")), "{s}: {record}");
    }
    for t in lab.route_table_ids() {
        let on_table = tags(t.clone());
        let record = on_table.get(&format!("corosync-eip:route:{VIP}/32")).unwrap_or_else(|| panic!("no record in {t}: {on_table:?}"));
        assert!(record.starts_with(&format!("{eni}/")), "{VIP}: {record}");
    }
    first
}

/// What the new holder sent to take the whole service: one mutating call per EIP and per
/// route table, everything else shared.
fn assert_shared(calls: &BTreeMap<String, usize>, what: &str) {
    assert_eq!(count(calls, "AssociateAddress"), 6, "{what}: {calls:?}");
    assert_eq!(count(calls, "ReplaceRoute"), 1, "{what}: {calls:?}");
    assert_eq!(count(calls, "AssignPrivateIpAddresses"), 1, "{what}: one call for both secondary IPs: {calls:?}");
    assert_eq!(
        count(calls, "CreateTags"),
        3,
        "{what}: one ownership write for all EIPs, one on the route table, one on the ENI: {calls:?}"
    );
    // No read before (outside two_node the old holder's Held named the epochs to outbid), one
    // read-back round each, a second only if EC2 had not caught up yet.
    for read in ["DescribeAddresses", "DescribeRouteTables", "DescribeNetworkInterfaces"] {
        assert!((1..=2).contains(&count(calls, read)), "{what}: {read}: {calls:?}");
    }
    assert_eq!(count(calls, "DisassociateAddress") + count(calls, "UnassignPrivateIpAddresses"), 0, "{what}: {calls:?}");
}

#[test]
fn a_service_taken_at_once_shares_its_reads_records_and_assignments() {
    let mut spec = LabSpec::new("bat", 76, 3);
    spec.eips = 6;
    spec.route_tables = 1;
    let mut lab = Lab::start(spec).expect("lab starts");
    // Every resource in one service; a long monitor interval, so the calls counted below are
    // the acquisitions' own.
    let mut config = String::from("[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"60s\"\nreattach_grace = \"5s\"\n");
    for (k, a) in lab.allocation_ids().iter().enumerate() {
        config += &format!("\n[[eip]]\nname = \"eip{}\"\nallocation_id = \"{a}\"\ngroup = \"svc\"\n", k + 1);
    }
    for (k, s) in SECONDARY.iter().enumerate() {
        config += &lab.secondary_ip_config(&format!("ip{}", k + 1), s);
        config += "group = \"svc\"\n";
    }
    config += &lab.vip_config("vip", VIP);
    config += "create_route = true\ngroup = \"svc\"\n";
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let held = lab.settled_units(&[0, 1, 2], 3, SETTLE);
    let holder = held["eip1"];
    assert!(held.values().all(|h| *h == holder), "one holder for the service: {held:?}");
    let first_epoch = all_on(&lab, holder);

    // ---- hard failure: the survivor elected takes all nine addresses in shared rounds
    let t0 = lab::unix_now();
    lab.kill_corosync(holder, Signal::SIGKILL);
    lab.kill_daemon(holder);
    let rest: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let held = lab.settled_units(&rest, 2, SETTLE);
    let new = held["eip1"];
    assert!(held.values().all(|h| *h == new), "{held:?}");
    let epoch = all_on(&lab, new);
    assert!(epoch > first_epoch, "a take-over writes a newer epoch: {epoch} after {first_epoch}");
    assert_shared(&calls_from(&lab, new, t0), "failover");
    let other = rest.iter().copied().find(|i| *i != new).expect("a third node");
    assert!(calls_from(&lab, other, t0).keys().all(|a| a.starts_with("Describe")), "the standby writes nothing");

    // ---- planned move of the service: the same shared rounds on the target
    let t1 = lab::unix_now();
    let out = lab.cli(new, &["move", "svc", "--to", &lab.node_id(other).to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let held = lab.settled_units(&rest, 2, SETTLE);
    assert!(held.values().all(|h| *h == other), "{held:?}");
    let moved_epoch = all_on(&lab, other);
    assert!(moved_epoch > epoch);
    assert_shared(&calls_from(&lab, other, t1), "planned move");
    for i in 0..3 {
        assert!(!lab.daemon_log(i).contains("panicked"), "{}", lab.daemon_log(i));
    }
}
