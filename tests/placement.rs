//! Multi-resource scenarios on the lab cluster: route-table VIPs, groups, balanced placement,
//! health checks, standby and planned moves. Assertions read EC2 (the emulator) and each
//! node's `status --json` and interface addresses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Result};
use corosync_eip::status::ResourceStatus;
use lab::{Ec2Proof, Lab, LabSpec, Settle, Signal, StatusReport, Units};

const SETTLE: Duration = Duration::from_secs(40);
const VIP: &str = "172.31.255.10";

fn logs(lab: &Lab) -> String {
    (0..lab.node_count())
        .map(|i| {
            let log = lab.daemon_log(i);
            let lines: Vec<&str> = log.lines().collect();
            format!("---- node {i} ----\n{}", lines[lines.len().saturating_sub(50)..].join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn resources(status: &StatusReport) -> BTreeMap<String, ResourceStatus> {
    status.resources.iter().map(|r| (r.name.clone(), r.clone())).collect()
}

/// Waits until every node in `nodes` is synced and quorate with `members` members, and
/// every resource is "held" with the same holder on all of them. Returns resource → node index.
fn settled(lab: &Lab, nodes: &[usize], members: usize) -> BTreeMap<String, usize> {
    let rules = Settle {
        nodes,
        members,
        units: Units::All,
        ec2: Ec2Proof::Nothing,
        disagreement_fails: false,
        timeout: SETTLE,
    };
    lab.settle(&rules).unwrap_or_else(|e| panic!("{e:#}\n{}", logs(lab)))
}

fn eip_config(lab: &Lab, extra: &str) -> String {
    let mut c = String::from("[cluster]\nmonitor_interval = \"2s\"\nreattach_grace = \"5s\"\n");
    for (k, a) in lab.allocation_ids().iter().enumerate() {
        c.push_str(&format!("\n[[eip]]\nname = \"eip{:02}\"\nallocation_id = \"{a}\"\n", k + 1));
    }
    c.push_str(extra);
    c
}

fn start(lab: &mut Lab, config: &str) {
    for i in 0..lab.node_count() {
        lab.write_daemon_config(i, config).unwrap();
        lab.start_daemon(i).unwrap();
    }
}

/// Where EC2 has each allocation (node index), from the emulator.
fn ec2_holders(lab: &Lab) -> BTreeMap<String, Option<usize>> {
    lab.describe_addresses()
        .unwrap()
        .into_iter()
        .map(|e| {
            let node = e.network_interface_id.as_deref().and_then(|id| lab.node_of(id));
            (e.allocation_id, node)
        })
        .collect()
}

fn cli(lab: &Lab, node: usize, args: &[&str]) -> std::process::Output {
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let mut argv = vec![bin.as_str()];
    argv.extend_from_slice(args);
    lab.node_exec(node, &argv).unwrap()
}

/// Mutating EC2 calls since `since` (see `Lab::mutating_calls_since`) as (node, action).
fn mutating_calls_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String)> {
    lab.mutating_calls_since(since).unwrap().into_iter().map(|c| (c.node, c.action)).collect()
}

#[test]
fn vip_and_eip_of_a_group_follow_one_holder_across_two_route_tables() {
    let mut spec = LabSpec::new("vip", 21, 3);
    spec.route_tables = 2;
    let mut lab = Lab::start(spec).expect("lab starts");
    let tables = lab.route_table_ids();
    let config = format!(
        "{}\ngroup = \"svc\"\n{}group = \"svc\"\ncreate_route = true\n",
        eip_config(&lab, ""),
        lab.vip_config("db", VIP)
    );
    start(&mut lab, &config);
    let held = settled(&lab, &[0, 1, 2], 3);
    let holder = held["db"];
    assert_eq!(held["eip01"], holder, "a group has one holder");
    let dest = format!("{VIP}/32");
    for t in &tables {
        assert_eq!(lab.route_target(t, &dest).unwrap().as_deref(), Some(lab.eni(holder)), "route in {t}");
    }
    for i in 0..3 {
        assert_eq!(lab.node_has_address(i, "eth0", VIP).unwrap(), i == holder, "VIP configured on node {i}?");
    }
    let s = lab.daemon_status(holder).unwrap();
    let db = &resources(&s)["db"];
    assert_eq!(db.local_address, Some(true));
    assert_eq!(db.routes.as_ref().map(|r| r.len()), Some(2), "{db:?}");

    // Hard failure of the holder: routes, EIP and local address all move to one survivor.
    lab.kill_corosync(holder, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let held = settled(&lab, &rest, 2);
    let new = held["db"];
    assert_ne!(new, holder);
    assert_eq!(held["eip01"], new);
    for t in &tables {
        assert_eq!(lab.route_target(t, &dest).unwrap().as_deref(), Some(lab.eni(new)));
    }
    lab.wait_for("VIP only on the new holder", SETTLE, || {
        let on: Vec<bool> = (0..3).map(|i| lab.node_has_address(i, "eth0", VIP)).collect::<Result<_>>()?;
        Ok((on.iter().enumerate().all(|(i, p)| *p == (i == new))).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&lab)));
    assert_eq!(ec2_holders(&lab)[&lab.allocation_ids()[0]], Some(new));
}

#[test]
fn twelve_addresses_spread_evenly_and_only_the_lost_nodes_move() {
    let mut spec = LabSpec::new("sprd", 22, 3);
    spec.eips = 12;
    let mut lab = Lab::start(spec).expect("lab starts");
    let config = eip_config(&lab, "");
    start(&mut lab, &config);
    let before = settled(&lab, &[0, 1, 2], 3);
    let ec2 = ec2_holders(&lab);
    let mut per_node = [0usize; 3];
    for node in ec2.values() {
        per_node[node.expect("every EIP associated")] += 1;
    }
    assert_eq!(per_node, [4, 4, 4], "spread evenly: {ec2:?}");

    let lost = 1;
    let t0 = lab::unix_now();
    lab.kill_corosync(lost, Signal::SIGKILL);
    let after = settled(&lab, &[0, 2], 2);
    let mut moved_to = [0usize; 3];
    for (name, node) in &after {
        if before[name] == lost {
            moved_to[*node] += 1;
        } else {
            assert_eq!(before[name], *node, "{name} moved although its node stayed");
        }
    }
    assert_eq!(moved_to, [2, 0, 2], "the lost node's 4 addresses split evenly");
    let calls = mutating_calls_since(&lab, t0);
    let moves = calls.iter().filter(|(_, a)| a == "AssociateAddress").count();
    assert_eq!(moves, 4, "one AssociateAddress per moved address: {calls:?}");

    // The node comes back: nothing moves back.
    let t1 = lab::unix_now();
    lab.start_corosync(lost).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), after);
    std::thread::sleep(Duration::from_secs(3));
    assert!(mutating_calls_since(&lab, t1).is_empty(), "no failback");
}

#[test]
fn failing_health_check_moves_away_and_planned_move_is_never_unassociated() {
    let mut lab = Lab::start(LabSpec::new("hlth", 23, 3)).expect("lab starts");
    let config = eip_config(
        &lab,
        "\n[[health]]\nname = \"app\"\ncommand = \"test ! -e /run/app-down\"\ninterval = \"200ms\"\ntimeout = \"1s\"\nrise = 2\nfall = 2\n",
    );
    start(&mut lab, &config);
    let holder = settled(&lab, &[0, 1, 2], 3)["eip01"];

    // The application on the holder fails: the address goes to a healthy node.
    lab.node_exec(holder, &["/usr/bin/touch", "/run/app-down"]).unwrap();
    let held = lab
        .wait_for("the address leaves the unhealthy node", SETTLE, || {
            let h = settled(&lab, &[0, 1, 2], 3)["eip01"];
            Ok((h != holder).then_some(h))
        })
        .unwrap();
    let s = lab.daemon_status(holder).unwrap();
    assert!(!s.eligible, "{s:?}");
    assert_eq!(ec2_holders(&lab)[&lab.allocation_ids()[0]], Some(held));

    // Recovery moves nothing back.
    lab.node_exec(holder, &["/bin/rm", "/run/app-down"]).unwrap();
    lab.wait_for("node healthy again", SETTLE, || Ok(lab.daemon_status(holder)?.eligible.then_some(())))
        .unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3)["eip01"], held);

    // Planned move back to the first node, while an outside observer polls EC2 as fast as it can.
    let alloc = lab.allocation_ids()[0].clone();
    let stop = AtomicBool::new(false);
    let (out, samples) = std::thread::scope(|scope| {
        let observer = scope.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(e) = lab.eip(&alloc) {
                    samples.push(e.network_interface_id.clone());
                }
            }
            samples
        });
        std::thread::sleep(Duration::from_millis(200));
        let to = lab.node_id(holder).to_string();
        let out = cli(&lab, (holder + 2) % 3, &["move", "eip01", "--to", &to]);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        (out, observer.join().unwrap())
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "move failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(samples.len() > 20, "observer polled {} times", samples.len());
    assert!(samples.iter().all(Option::is_some), "EC2 showed the EIP unassociated during the move");
    assert_eq!(samples.last().unwrap().as_deref(), Some(lab.eni(holder)));
    assert_eq!(settled(&lab, &[0, 1, 2], 3)["eip01"], holder);

    // A move to a node that cannot take it is refused with a reason.
    let out = cli(&lab, 0, &["move", "eip01", "--to", "99"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("node 99"));
}

#[test]
fn standby_drains_a_node_persists_across_restart_and_unstandby_moves_nothing_back() {
    let mut spec = LabSpec::new("stby", 24, 3);
    spec.eips = 3;
    let mut lab = Lab::start(spec).expect("lab starts");
    let config = eip_config(&lab, "");
    start(&mut lab, &config);
    let before = settled(&lab, &[0, 1, 2], 3);
    let node = before["eip01"];
    let out = cli(&lab, node, &["standby"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let drained = settled(&lab, &[0, 1, 2], 3);
    assert!(drained.values().all(|n| *n != node), "nothing left on the standby node: {drained:?}");
    assert!(ec2_holders(&lab).values().all(|n| *n != Some(node)));

    // The flag survives a restart of the node's daemon.
    lab.signal_daemon(node, Signal::SIGTERM).unwrap();
    lab.wait_daemon_exit(node, Duration::from_secs(10)).unwrap();
    lab.start_daemon(node).unwrap();
    let s = lab
        .wait_for("restarted daemon still in standby", SETTLE, || {
            let s = lab.daemon_status(node)?;
            Ok(s.synced.then_some(s))
        })
        .unwrap();
    assert!(s.standby);
    assert_eq!(settled(&lab, &[0, 1, 2], 3), drained);

    // Unstandby from another node: nothing moves back.
    let t0 = lab::unix_now();
    let out = cli(&lab, (node + 1) % 3, &["unstandby", &lab.node_id(node).to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!lab.daemon_status(node).unwrap().standby);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(settled(&lab, &[0, 1, 2], 3), drained);
    assert!(mutating_calls_since(&lab, t0).is_empty());
}

#[test]
fn vip_route_tables_are_found_by_tag() {
    let mut spec = LabSpec::new("vtag", 25, 2);
    spec.route_tables = 2;
    let mut lab = Lab::start(spec).expect("lab starts");
    let tables = lab.route_table_ids();
    let tagged = tables[0].clone();
    lab.with_ec2(move |rt, c| {
        let tag = aws_sdk_ec2::types::Tag::builder().key("ha-vip").value("db").build();
        rt.block_on(c.create_tags().resources(tagged).tags(tag).send())
            .map_err(|e| anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        Ok(())
    })
    .unwrap();
    let config = format!(
        "[cluster]\nmonitor_interval = \"2s\"\n\n[[vip]]\nname = \"db\"\naddress = \"{VIP}\"\nroute_table_tag = \"ha-vip=db\"\nvpc_id = \"{}\"\ncreate_route = true\n",
        lab.seed_info().vpc_id
    );
    start(&mut lab, &config);
    let holder = settled(&lab, &[0, 1], 2)["db"];
    let dest = format!("{VIP}/32");
    assert_eq!(lab.route_target(&tables[0], &dest).unwrap().as_deref(), Some(lab.eni(holder)));
    assert_eq!(lab.route_target(&tables[1], &dest).unwrap(), None, "untagged table left alone");
    assert!(lab.node_has_address(holder, "eth0", VIP).unwrap());
}
