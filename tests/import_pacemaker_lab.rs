//! `corosync-eip import-pacemaker --check` on the real lab: a CIB naming the lab's own Elastic IP
//! and route table is imported on a node, written where the daemon reads its configuration, and
//! checked there by the same pre-flight check as `corosync-eip check`, against moto's EC2.
//!
//! Needs root and `scripts/setup.sh`. Lab: `imp` (subnet 93).

use std::io::Write as _;
use std::process::Stdio;

use lab::{Lab, LabSpec, DAEMON_CONFIG, NODE_INTERFACE};

const VIP: &str = "172.31.255.93";

/// A CIB as `crm configure` writes it (see tests/data/pacemaker/regenerate.sh), with the lab's
/// own resources: the group of an Elastic IP and a route-table VIP, preferred on node 2.
fn cib(allocation_id: &str, table: &str) -> String {
    format!(
        r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="5" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config/>
    <nodes>
      <node id="1" uname="node1"/>
      <node id="2" uname="node2"/>
    </nodes>
    <resources>
      <group id="front">
        <primitive id="front-eip" class="ocf" provider="heartbeat" type="awseip">
          <instance_attributes id="front-eip-instance_attributes">
            <nvpair name="elastic_ip" value="203.0.113.93" id="front-eip-instance_attributes-elastic_ip"/>
            <nvpair name="allocation_id" value="{allocation_id}" id="front-eip-instance_attributes-allocation_id"/>
          </instance_attributes>
          <operations>
            <op name="monitor" interval="5s" timeout="30s" id="front-eip-monitor-5s"/>
          </operations>
        </primitive>
        <primitive id="front-vip" class="ocf" provider="heartbeat" type="aws-vpc-move-ip">
          <instance_attributes id="front-vip-instance_attributes">
            <nvpair name="ip" value="{VIP}" id="front-vip-instance_attributes-ip"/>
            <nvpair name="routing_table" value="{table}" id="front-vip-instance_attributes-routing_table"/>
            <nvpair name="interface" value="{NODE_INTERFACE}" id="front-vip-instance_attributes-interface"/>
          </instance_attributes>
        </primitive>
      </group>
    </resources>
    <constraints>
      <rsc_location id="front-on-node2" rsc="front" score="100" node="node2"/>
    </constraints>
  </configuration>
  <status/>
</cib>
"#
    )
}

#[test]
fn import_with_check_checks_the_written_file_on_the_node() {
    let mut spec = LabSpec::new("imp", 93, 2);
    spec.route_tables = 1;
    let lab = Lab::start(spec).expect("lab starts");
    let alloc = lab.allocation_ids()[0].clone();
    let table = lab.route_table_ids()[0].clone();
    lab.set_route(&table, &format!("{VIP}/32"), lab.eni(0)).expect("route");

    let bin = lab.spec().daemon_bin.display().to_string();
    let mut child = lab
        .node_command(0, &[&bin, "import-pacemaker", "--cib", "-", "--output", DAEMON_CONFIG, "--force", "--check"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs import-pacemaker");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cib(&alloc, &table).as_bytes())
        .expect("CIB on standard input");
    let out = child.wait_with_output().expect("import-pacemaker ends");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- import-pacemaker --check: exit {:?}\n{stdout}\n{stderr}", out.status.code());

    // The file the daemon would read, on the node, is the imported one.
    let written = lab.node_exec(0, &["/bin/cat", DAEMON_CONFIG]).expect("cat");
    let written = String::from_utf8_lossy(&written.stdout).into_owned();
    let config = corosync_eip::config::Config::parse(&written, std::path::Path::new(DAEMON_CONFIG)).expect("valid");
    assert_eq!(config.eips[0].allocation_id, alloc);
    assert_eq!(config.vips[0].route_tables, vec![table.clone()]);
    assert_eq!(config.vips[0].prefer, [2]);
    assert!(stderr.contains("Mapped:"), "the report goes to standard error:\n{stderr}");

    // The check ran against that file: its resources, its permissions, this node.
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.get(2..).is_some_and(|rest| rest.starts_with(name)) || l.get(4..).is_some_and(|rest| rest.starts_with(name)))
            .unwrap_or_else(|| panic!("no item {name} in:\n{stdout}"))
    };
    for (name, words) in [
        ("EIP front-eip", vec![alloc.as_str()]),
        ("permission ec2:AssociateAddress", vec![alloc.as_str(), "allowed"]),
        ("permission ec2:ReplaceRoute", vec![table.as_str(), "allowed"]),
        ("route table", vec![table.as_str(), "exists"]),
        ("VIP front-vip route", vec![lab.eni(0), "this node"]),
        ("corosync:", vec!["running"]),
    ] {
        let l = line(name);
        for w in words {
            assert!(l.contains(w), "{name}: {w:?} missing in {l:?}\n{stdout}");
        }
    }
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✖')).collect();
    assert_eq!(failed, Vec::<&str>::new(), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}
