//! Route tables of a shared VPC: a VIP with `route_table_role` makes its route-table calls with
//! the credentials of that role, assumed once through STS and cached, while the node's own
//! calls keep the node's credentials. Assertions read the routes and the request log (which
//! records the access key that signed each call).
//! Needs root and scripts/setup.sh. Run: cargo test --test shared_vpc -- --nocapture

use std::collections::BTreeSet;
use std::time::Duration;

use lab::{Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(40);
const VIP: &str = "172.31.255.20";
const ROLE: &str = "arn:aws:iam::123456789012:role/network-account-routes";

#[test]
fn route_table_calls_use_the_assumed_role_assumed_once_per_node() {
    let mut spec = LabSpec::new("svpc", 74, 3);
    spec.route_tables = 1;
    let mut lab = Lab::start(spec).expect("lab starts");
    let t0 = lab::unix_now();
    let config = format!(
        "{}group = \"svc\"\n{}create_route = true\ngroup = \"svc\"\nroute_table_role = \"{ROLE}\"\n",
        lab.default_daemon_config(),
        lab.vip_config("db", VIP)
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let holder = lab.settled_units(&[0, 1, 2], 3, SETTLE)["db"];
    let table = lab.route_table_ids()[0].clone();
    let dest = format!("{VIP}/32");
    assert_eq!(lab.route_target(&table, &dest).unwrap().as_deref(), Some(lab.eni(holder)));
    std::thread::sleep(Duration::from_secs(7)); // a few monitor rounds of route-table reads

    let requests: Vec<_> = lab.ec2_requests().unwrap().into_iter().filter(|r| r.t >= t0).collect();
    let by_node = |i: usize, action: &str| -> Vec<_> {
        requests
            .iter()
            .filter(|r| lab.node_by_ip(&r.source) == Some(i) && r.action == action && r.param("DryRun") != Some("true"))
            .collect()
    };
    let assumes = by_node(holder, "AssumeRole");
    assert_eq!(assumes.len(), 1, "the holder assumed the role once and kept the credentials: {assumes:?}");
    assert_eq!(assumes[0].param("RoleArn"), Some(ROLE));
    assert!(assumes[0].param("RoleSessionName").is_some_and(|s| s.contains(lab.instance_id(holder))), "{assumes:?}");
    let own_keys: BTreeSet<_> = by_node(holder, "DescribeAddresses").iter().filter_map(|r| r.access_key.clone()).collect();
    let route_calls: Vec<_> = ["CreateRoute", "ReplaceRoute", "DescribeRouteTables"]
        .iter()
        .flat_map(|a| by_node(holder, a))
        .collect();
    assert!(route_calls.len() >= 3, "monitor rounds read the route table: {route_calls:?}");
    let route_keys: BTreeSet<_> = route_calls.iter().filter_map(|r| r.access_key.clone()).collect();
    assert_eq!(route_keys.len(), 1, "every route-table call signed with one assumed key: {route_keys:?}");
    assert!(own_keys.is_disjoint(&route_keys), "route-table calls are not signed with the node's own key");
    assert!(!own_keys.is_empty(), "the EIP's calls keep the node's own credentials");
    // The VIP's ownership record goes on the route table, so it is a route-table call too.
    let table_tags: Vec<_> = by_node(holder, "CreateTags")
        .into_iter()
        .filter(|r| r.param("ResourceId.1").is_some_and(|id| id.starts_with("rtb-")))
        .collect();
    assert!(!table_tags.is_empty(), "the holder wrote the VIP's ownership record on the table");
    assert!(
        table_tags.iter().all(|r| r.access_key.as_ref().is_some_and(|k| route_keys.contains(k))),
        "the record is signed with the assumed key: {table_tags:?}"
    );

    // A failover: the survivor assumes the role (once) and moves the route with it.
    let t1 = lab::unix_now();
    lab.kill_corosync(holder, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let new = lab.settled_units(&rest, 2, SETTLE)["db"];
    assert_eq!(lab.route_target(&table, &dest).unwrap().as_deref(), Some(lab.eni(new)));
    let requests: Vec<_> = lab.ec2_requests().unwrap().into_iter().filter(|r| r.t >= t1).collect();
    let replaces: Vec<_> = requests
        .iter()
        .filter(|r| r.action == "ReplaceRoute" && r.param("DryRun") != Some("true"))
        .collect();
    assert_eq!(replaces.len(), 1, "one move: {replaces:?}");
    assert_eq!(lab.node_by_ip(&replaces[0].source), Some(new));
    assert!(replaces[0].access_key.as_deref().is_some_and(|k| !own_keys.contains(k)), "{replaces:?}");
    lab.assert_no_panics();
}
