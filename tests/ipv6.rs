//! IPv6 route-table VIPs on the lab cluster: a /128 route (DestinationIpv6CidrBlock) in every
//! listed table points at the holder's ENI and the holder has the address on its interface; a
//! node loss moves the routes once per table and the address with them. Assertions read EC2
//! (the emulator), each node's `status --json` and each node's interface addresses.
//! Needs root and scripts/setup.sh. Run: cargo test --test ipv6 -- --nocapture

use std::time::Duration;

use lab::{Lab, LabSpec, Signal, NODE_INTERFACE};

const SETTLE: Duration = Duration::from_secs(40);
const VIP6: &str = "fd00:ec2::10";
const DEST6: &str = "fd00:ec2::10/128";

/// Waits until every table routes the /128 to node `holder` and only `holder` (of `nodes`)
/// has the address on its interface.
fn wait_routed_to(lab: &Lab, holder: usize, nodes: &[usize], what: &str) {
    lab.wait_for(what, SETTLE, || {
        for t in lab.route_table_ids() {
            if lab.route_target(&t, DEST6)?.as_deref() != Some(lab.eni(holder)) {
                return Ok(None);
            }
        }
        for &i in nodes {
            if lab.node_has_address(i, NODE_INTERFACE, VIP6)? != (i == holder) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
}

#[test]
fn ipv6_vip_routes_a_128_to_the_holder_and_fails_over_once() {
    let mut spec = LabSpec::new("v6", 72, 3);
    spec.route_tables = 2;
    let mut lab = Lab::start(spec).expect("lab starts");
    let config = format!(
        "[cluster]\nmonitor_interval = \"2s\"\nreattach_grace = \"5s\"\n{}create_route = true\n",
        lab.vip_config("db6", VIP6)
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let holder = lab.settled_units(&[0, 1, 2], 3, SETTLE)["db6"];
    wait_routed_to(&lab, holder, &[0, 1, 2], "the /128 routed to the holder, address on it only");
    let s = lab.daemon_status(holder).unwrap();
    let db = s.resources.iter().find(|r| r.name == "db6").unwrap();
    assert_eq!(db.address.as_deref(), Some(VIP6));
    assert_eq!(db.local_address, Some(true));
    let routes = db.routes.clone().unwrap_or_default();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert!(routes.iter().all(|r| r.network_interface_id.as_deref() == Some(lab.eni(holder))), "{routes:?}");
    // the routes went in as IPv6 destinations, never as IPv4 ones
    let creates: Vec<_> = lab
        .ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "CreateRoute" && r.param("DryRun") != Some("true"))
        .collect();
    assert_eq!(creates.len(), 2, "one CreateRoute per table: {creates:?}");
    assert!(creates.iter().all(|r| r.param("DestinationIpv6CidrBlock") == Some(DEST6) && r.param("DestinationCidrBlock").is_none()));

    // Hard failure of the holder: one ReplaceRoute per table, by the survivor that takes over.
    let t = lab::unix_now();
    lab.kill_corosync(holder, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let new = lab.settled_units(&rest, 2, SETTLE)["db6"];
    assert_ne!(new, holder);
    wait_routed_to(&lab, new, &[0, 1, 2], "routes and address moved to the survivor; the lost node dropped it");
    let calls: Vec<(Option<usize>, String)> =
        lab.mutating_calls_since(t).unwrap().into_iter().map(|c| (c.node, c.action)).collect();
    assert_eq!(
        calls,
        vec![
            (Some(new), "CreateTags".to_string()),
            (Some(new), "ReplaceRoute".to_string()),
            (Some(new), "ReplaceRoute".to_string())
        ],
        "the ownership record on both tables first, then one ReplaceRoute per table"
    );
    // The record is keyed by the /128 as the route spells it, and names the new holder's ENI.
    let key = format!("corosync-eip:route:{DEST6}");
    let tagged = lab
        .ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.t >= t && r.action == "CreateTags")
        .any(|r| r.param("Tag.1.Key") == Some(key.as_str()) && r.param("Tag.1.Value").is_some_and(|v| v.starts_with(&format!("{}/", lab.eni(new)))));
    assert!(tagged, "no ownership record {key} for {}", lab.eni(new));
    // Outside two_node the survivor outbid the epoch the lost holder announced: it did not read
    // the tables before it moved the routes.
    let before = lab.actions_before(new, t, "DescribeRouteTables").unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(before, ["CreateTags", "ReplaceRoute", "ReplaceRoute"], "the read-back comes after the moves");

    // A route deleted by hand in one table, then the holder lost: the survivor's ReplaceRoute
    // there is refused, so it reads the tables and creates that route (create_route = true).
    lab.start_corosync(holder).unwrap();
    lab.wait_quorate(&[0, 1, 2], 3, SETTLE).unwrap();
    assert_eq!(lab.settled_units(&[0, 1, 2], 3, SETTLE)["db6"], new, "nothing fails back");
    let tables = lab.route_table_ids();
    let t = lab::unix_now();
    lab.delete_route(&tables[1], DEST6).unwrap();
    lab.kill_corosync(new, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != new).collect();
    let last = lab.settled_units(&rest, 2, SETTLE)["db6"];
    assert_ne!(last, new);
    wait_routed_to(&lab, last, &[0, 1, 2], "routes in both tables, one of them created again, point at the last survivor");
    let done: Vec<(Option<usize>, String, String, Option<u16>)> = lab
        .ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.t >= t && matches!(r.action.as_str(), "ReplaceRoute" | "CreateRoute"))
        .map(|r| (lab.node_by_ip(&r.source), r.action.clone(), r.param("RouteTableId").unwrap_or_default().to_string(), r.status))
        .collect();
    let applied: Vec<(Option<usize>, String, String)> =
        done.iter().filter(|c| c.3 == Some(200)).map(|c| (c.0, c.1.clone(), c.2.clone())).collect();
    assert_eq!(
        applied,
        vec![(Some(last), "ReplaceRoute".to_string(), tables[0].clone()), (Some(last), "CreateRoute".to_string(), tables[1].clone())],
        "the survivor replaced the route that was there and created the deleted one: {done:?}"
    );
    assert!(lab.daemon_log(last).contains("planning again"), "{}", lab.daemon_log(last));
    lab.assert_no_panics();
}

