//! The lab's route-table VIP support (tests/lab/mod.rs): seeded route tables, routes moved from
//! inside a node with boto3 the way the daemon will (CreateRoute / ReplaceRoute by ENI), the
//! patched emulator's AWS behaviour, source/destination check, the per-node state directory and
//! the node's addresses on eth0. No daemon runs here.
//! Needs root and scripts/setup.sh. Run: cargo test --test lab_routes -- --nocapture
use std::time::Instant;

use lab::{Lab, LabSpec, NODE_INTERFACE, STATE_DIR};
use serde_json::Value;

const VIP: &str = "172.31.255.10";
const VIP_CIDR: &str = "172.31.255.10/32";

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `body` with boto3's `ec2` client (from the node's AWS_* environment) inside node i and
/// parses the JSON it prints last.
fn boto(lab: &Lab, i: usize, body: &str) -> Value {
    let script = format!(
        "import boto3, json, os\n\
         from botocore.exceptions import ClientError\n\
         ec2 = boto3.client('ec2', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n\
         def code(f):\n    \
             try:\n        f()\n        return None\n    \
             except ClientError as e:\n        return e.response['Error']['Code']\n\
         {body}\n"
    );
    let py = lab::venv_python();
    let out = ok(
        lab.node_exec(i, &[py.to_str().unwrap(), "-c", &script])
            .unwrap(),
        &format!("boto3 in node {i}"),
    );
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn lab_route_tables() {
    let t0 = Instant::now();
    let mut spec = LabSpec::new("rtb", 41, 3);
    spec.route_tables = 2;
    spec.source_dest_check_on = vec![2];
    let lab = Lab::start(spec).expect("lab start");
    eprintln!("3-node lab with 2 route tables up in {:.2?}", t0.elapsed());

    // ---- seeded route tables: in the lab VPC, tagged, nothing but the local route
    let rtbs = lab.route_table_ids();
    assert_eq!(rtbs.len(), 2);
    assert!(rtbs.iter().all(|t| t.starts_with("rtb-")), "{rtbs:?}");
    assert_ne!(rtbs[0], rtbs[1]);
    assert_eq!(lab.routes().unwrap(), vec![]);
    assert_eq!(lab.route_target(&rtbs[0], VIP_CIDR).unwrap(), None);
    let v = boto(
        &lab,
        0,
        r#"
t = ec2.describe_route_tables(Filters=[{"Name": "tag:Name", "Values": ["lab-rtb-0", "lab-rtb-1"]}])
print(json.dumps({t["RouteTableId"]: {"vpc": t["VpcId"], "name": [g["Value"] for g in t["Tags"] if g["Key"] == "Name"][0]}
                  for t in t["RouteTables"]}))
"#,
    );
    for (k, t) in rtbs.iter().enumerate() {
        assert_eq!(v[t]["vpc"], lab.seed_info().vpc_id.as_str(), "{v}");
        assert_eq!(v[t]["name"], format!("lab-rtb-{k}"), "{v}");
    }
    // The lab VPC is dual-stack, as AWS makes it with an Amazon-provided /56: each table has a
    // local route for each of the VPC's ranges, and nothing else.
    let all = lab.describe_routes(&rtbs).unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|r| r.target() == Some("local")), "{all:?}");
    for t in &rtbs {
        let mut local: Vec<&str> = all.iter().filter(|r| &r.route_table_id == t).map(|r| r.destination.as_str()).collect();
        local.sort();
        assert_eq!(local.len(), 2, "{all:?}");
        assert_eq!(local[0], "10.0.0.0/16");
        assert!(local[1].ends_with("::/56"), "{all:?}");
    }

    // ---- CreateRoute by ENI from node 0, in both tables
    let ids = serde_json::to_string(&rtbs).unwrap();
    let t = Instant::now();
    boto(
        &lab,
        0,
        &format!(
            r#"
for t in {ids}:
    ec2.create_route(RouteTableId=t, DestinationCidrBlock="{VIP_CIDR}", NetworkInterfaceId="{e0}")
print("{{}}")
"#,
            e0 = lab.eni(0)
        ),
    );
    eprintln!(
        "boto3 CreateRoute x2 from node 0 (incl. python start) {:.2?}",
        t.elapsed()
    );
    let t = Instant::now();
    for r in &rtbs {
        assert_eq!(
            lab.route_target(r, VIP_CIDR).unwrap().as_deref(),
            Some(lab.eni(0))
        );
        assert_eq!(lab.route_holder(r, VIP).unwrap(), Some(0));
    }
    eprintln!("route_target x2 {:.2?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(
        lab.routes().unwrap(),
        rtbs.iter()
            .map(|r| (
                r.clone(),
                VIP_CIDR.to_string(),
                Some(lab.eni(0).to_string())
            ))
            .collect::<Vec<_>>()
    );
    eprintln!("routes() {:.2?}", t.elapsed());

    // ---- ReplaceRoute to node 1's ENI; DescribeRouteTables with both ids shows what AWS shows
    let v = boto(
        &lab,
        0,
        &format!(
            r#"
for t in {ids}:
    ec2.replace_route(RouteTableId=t, DestinationCidrBlock="{VIP_CIDR}", NetworkInterfaceId="{e1}")
rs = ec2.describe_route_tables(RouteTableIds={ids})["RouteTables"]
print(json.dumps([r for t in rs for r in t["Routes"] if r.get("DestinationCidrBlock") == "{VIP_CIDR}"]))
"#,
            e1 = lab.eni(1)
        ),
    );
    let routes = v.as_array().unwrap();
    assert_eq!(routes.len(), 2, "{v}");
    for r in routes {
        assert_eq!(r["NetworkInterfaceId"], lab.eni(1), "{v}");
        // patched emulator: an attached ENI's route also names the instance, as AWS does
        assert_eq!(r["InstanceId"], lab.instance_id(1), "{v}");
        assert_eq!(r["State"], "active", "{v}");
        assert_eq!(r["Origin"], "CreateRoute", "{v}");
    }
    for r in &rtbs {
        assert_eq!(
            lab.route_target(r, VIP_CIDR).unwrap().as_deref(),
            Some(lab.eni(1))
        );
        assert_eq!(lab.route_holder(r, VIP).unwrap(), Some(1));
    }
    let full = lab.describe_routes(&rtbs).unwrap();
    let vip: Vec<_> = full.iter().filter(|r| r.destination == VIP_CIDR).collect();
    assert_eq!(vip.len(), 2);
    assert!(vip
        .iter()
        .all(|r| r.instance_id.as_deref() == Some(lab.instance_id(1))
            && r.state.as_deref() == Some("active")));

    // ---- errors as AWS gives them
    let v = boto(
        &lab,
        0,
        &format!(
            r#"
t = {ids}[0]
print(json.dumps({{
  "replace_missing": code(lambda: ec2.replace_route(RouteTableId=t, DestinationCidrBlock="172.31.255.99/32", NetworkInterfaceId="{e0}")),
  "create_existing": code(lambda: ec2.create_route(RouteTableId=t, DestinationCidrBlock="{VIP_CIDR}", NetworkInterfaceId="{e0}")),
  "replace_bad_table": code(lambda: ec2.replace_route(RouteTableId="rtb-00000000000000000", DestinationCidrBlock="{VIP_CIDR}", NetworkInterfaceId="{e0}")),
  "replace_bad_eni": code(lambda: ec2.replace_route(RouteTableId=t, DestinationCidrBlock="{VIP_CIDR}", NetworkInterfaceId="eni-00000000000000000")),
  "delete_missing": code(lambda: ec2.delete_route(RouteTableId=t, DestinationCidrBlock="172.31.255.99/32")),
}}))
"#,
            e0 = lab.eni(0)
        ),
    );
    assert_eq!(v["replace_missing"], "InvalidParameterValue", "{v}");
    assert_eq!(v["create_existing"], "RouteAlreadyExists", "{v}");
    assert_eq!(
        v["replace_bad_table"], "InvalidRouteTableID.NotFound",
        "{v}"
    );
    assert_eq!(
        v["replace_bad_eni"], "InvalidNetworkInterfaceID.NotFound",
        "{v}"
    );
    assert_eq!(v["delete_missing"], "InvalidRoute.NotFound", "{v}");
    // the failed calls changed nothing
    for r in &rtbs {
        assert_eq!(lab.route_holder(r, VIP_CIDR).unwrap(), Some(1));
        assert_eq!(lab.route_target(r, "172.31.255.99/32").unwrap(), None);
    }

    // ---- the request log saw node 0's calls with the ENI parameter
    let reqs = lab.ec2_requests().unwrap();
    let node0 = lab.node_ip(0).to_string();
    let creates: Vec<_> = reqs
        .iter()
        .filter(|r| r.action == "CreateRoute" && r.source == node0)
        .collect();
    let replaces: Vec<_> = reqs
        .iter()
        .filter(|r| r.action == "ReplaceRoute" && r.source == node0)
        .collect();
    assert_eq!(creates.len(), 3, "{creates:?}");
    assert_eq!(replaces.len(), 5, "{replaces:?}");
    assert_eq!(creates[0].param("NetworkInterfaceId"), Some(lab.eni(0)));
    assert_eq!(creates[0].param("DestinationCidrBlock"), Some(VIP_CIDR));
    assert_eq!(replaces[0].param("NetworkInterfaceId"), Some(lab.eni(1)));
    assert_eq!(replaces[0].status, Some(200));
    assert_eq!(replaces[2].status, Some(400));

    // ---- harness-side route helpers
    lab.set_route(&rtbs[1], VIP, lab.eni(2)).unwrap();
    assert_eq!(lab.route_holder(&rtbs[1], VIP).unwrap(), Some(2));
    assert_eq!(lab.route_holder(&rtbs[0], VIP).unwrap(), Some(1));
    lab.set_route(&rtbs[1], "172.31.255.11", lab.eni(0))
        .unwrap();
    assert_eq!(
        lab.route_target(&rtbs[1], "172.31.255.11/32")
            .unwrap()
            .as_deref(),
        Some(lab.eni(0))
    );
    lab.delete_route(&rtbs[1], "172.31.255.11").unwrap();
    assert_eq!(lab.route_target(&rtbs[1], "172.31.255.11").unwrap(), None);
    assert!(lab.delete_route(&rtbs[1], "172.31.255.11").is_err());

    // ---- source/destination check: off unless listed, both views agree, flips
    let sdc_view = |lab: &Lab| -> Vec<(bool, bool)> {
        let v = boto(
            lab,
            0,
            &format!(
                r#"
enis = {{n["NetworkInterfaceId"]: n["SourceDestCheck"] for n in ec2.describe_network_interfaces(NetworkInterfaceIds={enis})["NetworkInterfaces"]}}
insts = {{i["InstanceId"]: i["SourceDestCheck"] for r in ec2.describe_instances(InstanceIds={insts})["Reservations"] for i in r["Instances"]}}
print(json.dumps([[enis[e], insts[i]] for e, i in zip({enis}, {insts})]))
"#,
                enis =
                    serde_json::to_string(&(0..3).map(|i| lab.eni(i)).collect::<Vec<_>>()).unwrap(),
                insts =
                    serde_json::to_string(&(0..3).map(|i| lab.instance_id(i)).collect::<Vec<_>>())
                        .unwrap(),
            ),
        );
        serde_json::from_value(v).unwrap()
    };
    assert_eq!(
        (0..3)
            .map(|i| lab.source_dest_check(i).unwrap())
            .collect::<Vec<_>>(),
        vec![false, false, true]
    );
    assert_eq!(
        sdc_view(&lab),
        vec![(false, false), (false, false), (true, true)]
    );
    let t = Instant::now();
    lab.set_source_dest_check(0, true).unwrap();
    lab.set_source_dest_check(2, false).unwrap();
    eprintln!("set_source_dest_check x2 {:.2?}", t.elapsed());
    assert_eq!(
        sdc_view(&lab),
        vec![(true, true), (false, false), (false, false)]
    );
    // ModifyInstanceAttribute (the other way admins do it) changes the ENI too
    boto(
        &lab,
        1,
        &format!(
            r#"
ec2.modify_instance_attribute(InstanceId="{i0}", SourceDestCheck={{"Value": False}})
ec2.modify_instance_attribute(InstanceId="{i1}", SourceDestCheck={{"Value": True}})
print("{{}}")
"#,
            i0 = lab.instance_id(0),
            i1 = lab.instance_id(1)
        ),
    );
    assert!(!lab.source_dest_check(0).unwrap());
    assert!(lab.source_dest_check(1).unwrap());
    assert_eq!(
        sdc_view(&lab),
        vec![(false, false), (true, true), (false, false)]
    );

    // ---- per-node /var/lib/corosync-eip
    let sh = |i: usize, cmd: &str| lab.node_exec(i, &["/bin/sh", "-c", cmd]).unwrap();
    ok(
        sh(
            0,
            &format!("echo node0 > {STATE_DIR}/standby && cat {STATE_DIR}/standby"),
        ),
        "write state in node 0",
    );
    assert!(!sh(1, &format!("test -e {STATE_DIR}/standby"))
        .status
        .success());
    ok(
        sh(1, &format!("echo node1 > {STATE_DIR}/other")),
        "write state in node 1",
    );
    assert!(!sh(0, &format!("test -e {STATE_DIR}/other"))
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(lab.state_dir(0).join("standby")).unwrap(),
        "node0\n"
    );
    assert!(!lab.state_dir(1).join("standby").exists());
    assert!(lab.state_dir(1).join("other").exists());
    assert!(
        !std::path::Path::new(STATE_DIR).join("standby").exists(),
        "the host's {STATE_DIR} must stay untouched"
    );

    // ---- eth0 inside every node, its address, adding/removing a VIP address
    for i in 0..3 {
        let links = ok(
            lab.node_exec(i, &["/usr/sbin/ip", "-o", "link", "show"])
                .unwrap(),
            "ip link",
        );
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap())
            .collect();
        assert_eq!(names, vec!["lo", NODE_INTERFACE], "node {i}: {links}");
        assert_eq!(
            lab.node_addresses(i, NODE_INTERFACE).unwrap(),
            vec![format!("{}/24", lab.node_ip(i))]
        );
    }
    assert!(lab.node_addresses(0, "eth9").is_err());
    assert!(!lab.node_has_address(1, NODE_INTERFACE, VIP).unwrap());
    ok(
        lab.node_exec(1, &["/usr/sbin/ip", "addr", "add", VIP_CIDR, "dev", "eth0"])
            .unwrap(),
        "ip addr add",
    );
    assert!(lab.node_has_address(1, NODE_INTERFACE, VIP).unwrap());
    assert!(lab.node_has_address(1, NODE_INTERFACE, VIP_CIDR).unwrap());
    assert!(!lab
        .node_has_address(1, NODE_INTERFACE, "172.31.255.10/24")
        .unwrap());
    assert!(!lab.node_has_address(0, NODE_INTERFACE, VIP).unwrap());
    assert_eq!(lab.node_addresses(1, NODE_INTERFACE).unwrap().len(), 2);
    ok(
        lab.node_exec(1, &["/usr/sbin/ip", "addr", "del", VIP_CIDR, "dev", "eth0"])
            .unwrap(),
        "ip addr del",
    );
    assert!(!lab.node_has_address(1, NODE_INTERFACE, VIP).unwrap());
    lab.add_node_address(2, NODE_INTERFACE, VIP_CIDR).unwrap();
    assert!(lab.node_has_address(2, NODE_INTERFACE, VIP).unwrap());
    assert!(lab.add_node_address(2, NODE_INTERFACE, VIP_CIDR).is_err());
    lab.del_node_address(2, NODE_INTERFACE, VIP_CIDR).unwrap();
    assert!(!lab.node_has_address(2, NODE_INTERFACE, VIP).unwrap());

    // ---- the [[vip]] block: all lab route tables, eth0, accepted by the daemon
    let block = lab.vip_config("vip1", VIP);
    let parsed: toml::Value = toml::from_str(&block).unwrap();
    let vip = &parsed["vip"][0];
    assert_eq!(vip["name"].as_str(), Some("vip1"));
    assert_eq!(vip["address"].as_str(), Some(VIP));
    assert_eq!(vip["interface"].as_str(), Some("eth0"));
    assert_eq!(
        vip["route_tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        rtbs
    );
    let conf = lab.default_daemon_config() + &block;
    lab.write_daemon_config(0, &conf).unwrap();
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let out = lab
        .node_exec(
            0,
            &[
                &bin,
                "run",
                "--config",
                lab::DAEMON_CONFIG,
                "--check-config",
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "daemon rejects the lab's config ({}):\n{conf}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let t = Instant::now();
    drop(lab);
    eprintln!("teardown {:.2?}", t.elapsed());
    eprintln!("lab_route_tables total {:.2?}", t0.elapsed());
}

/// Default spec: no route tables, source/dest check off on every node, an empty state dir.
#[test]
fn lab_route_defaults() {
    let t0 = Instant::now();
    let mut spec = LabSpec::new("rtb2", 44, 2);
    spec.daemon_bin = "/bin/true".into();
    let lab = Lab::start(spec).expect("lab start");
    assert!(lab.route_table_ids().is_empty());
    assert_eq!(lab.routes().unwrap(), vec![]);
    assert!(!lab.source_dest_check(0).unwrap());
    assert!(!lab.source_dest_check(1).unwrap());
    assert_eq!(std::fs::read_dir(lab.state_dir(0)).unwrap().count(), 0);
    let block = lab.vip_config("v", VIP);
    assert!(block.contains("route_tables = []"), "{block}");
    drop(lab);
    eprintln!("lab_route_defaults total {:.2?}", t0.elapsed());
}
