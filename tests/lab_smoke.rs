//! Smoke test of the multi-node lab itself (tests/lab/mod.rs), with /bin/true as the daemon.
//! Needs root and scripts/setup.sh. Run: cargo test --test lab_smoke -- --nocapture
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, LabSpec, Signal};

fn spec(name: &str, subnet: u8, nodes: usize) -> LabSpec {
    let mut s = LabSpec::new(name, subnet, nodes);
    s.daemon_bin = PathBuf::from("/bin/true");
    s
}

fn netns_left(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn links_left(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

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

#[test]
fn lab_smoke() {
    let t0 = Instant::now();
    let py = lab::venv_python();
    let py = py.to_str().unwrap();
    {
        let t = Instant::now();
        let mut lab = Lab::start(spec("lsm", 42, 3)).expect("lab start");
        eprintln!("3-node lab up in {:.2?}", t.elapsed());
        for i in 0..3 {
            assert_eq!(lab.quorum_state(i).unwrap(), (true, 3), "node {i}");
        }
        assert_eq!(lab.node_id(2), 3);
        assert_eq!(lab.node_ip(1).to_string(), "10.213.42.2");

        // EIP seeded, unassociated
        let ids = lab.allocation_ids();
        assert_eq!(ids.len(), 1);
        let t = Instant::now();
        let eips = lab.describe_addresses().unwrap();
        eprintln!("describe_addresses took {:.2?}", t.elapsed());
        assert_eq!(eips.len(), 1);
        assert_eq!(eips[0].allocation_id, ids[0]);
        assert_eq!(eips[0].instance_id, None);
        assert_eq!(eips[0].network_interface_id, None);
        let t = Instant::now();
        for _ in 0..20 {
            lab.describe_addresses().unwrap();
        }
        eprintln!("describe_addresses x20: {:.2?}", t.elapsed());

        // defaults: no route table, source/dest check off, per-node state dir mounted
        assert!(lab.route_table_ids().is_empty());
        assert!(!lab.source_dest_check(1).unwrap());
        assert_eq!(
            lab.node_addresses(1, "eth0").unwrap(),
            vec!["10.213.42.2/24".to_string()]
        );
        ok(
            lab.node_exec(0, &["/usr/bin/touch", "/var/lib/corosync-eip/probe"])
                .unwrap(),
            "touch in state dir",
        );
        assert!(lab.state_dir(0).join("probe").exists());
        assert!(!lab.state_dir(1).join("probe").exists());

        // default daemon config names the EIP
        let conf = lab.default_daemon_config();
        assert!(
            conf.contains(&format!("allocation_id = \"{}\"", ids[0])),
            "{conf}"
        );
        lab.write_daemon_config(0, &conf).unwrap();
        let inside = ok(
            lab.node_exec(0, &["/bin/cat", "/etc/corosync-eip/corosync-eip.toml"])
                .unwrap(),
            "cat",
        );
        assert_eq!(inside, conf);

        // associate from node 0 by ENI, twice, AllowReassociation omitted (patched moto)
        let script = format!(
            r#"
import boto3, os, json
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
ec2.associate_address(AllocationId="{a}", NetworkInterfaceId="{e0}")
a1 = ec2.describe_addresses(AllocationIds=["{a}"])["Addresses"][0]
ec2.associate_address(AllocationId="{a}", NetworkInterfaceId="{e1}")
a2 = ec2.describe_addresses(AllocationIds=["{a}"])["Addresses"][0]
try:
    ec2.associate_address(AllocationId="{a}", NetworkInterfaceId="{e0}", AllowReassociation=False)
    err = None
except Exception as e:
    err = e.response["Error"]["Code"]
print(json.dumps({{"first": a1.get("InstanceId"), "second": a2.get("InstanceId"), "err": err}}))
"#,
            a = ids[0],
            e0 = lab.eni(0),
            e1 = lab.eni(1)
        );
        let out = ok(
            lab.node_exec(0, &[py, "-c", &script]).unwrap(),
            "boto3 in node 0",
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["first"], lab.instance_id(0), "{v}");
        assert_eq!(v["second"], lab.instance_id(1), "{v}");
        assert_eq!(v["err"], "Resource.AlreadyAssociated", "{v}");
        let e = lab.eip(&ids[0]).unwrap();
        assert_eq!(e.instance_id.as_deref(), Some(lab.instance_id(1)));
        assert_eq!(e.network_interface_id.as_deref(), Some(lab.eni(1)));
        assert_eq!(lab.eip_holder(&ids[0]).unwrap(), Some(1));

        // request log: source = node 0
        let reqs = lab.ec2_requests().unwrap();
        let assoc: Vec<_> = reqs
            .iter()
            .filter(|r| r.action == "AssociateAddress")
            .collect();
        assert_eq!(assoc.len(), 3, "{reqs:?}");
        assert!(
            assoc.iter().all(|r| r.source == lab.node_ip(0).to_string()),
            "{assoc:?}"
        );
        assert_eq!(assoc[0].param("NetworkInterfaceId"), Some(lab.eni(0)));
        assert_eq!(assoc[0].status, Some(200));
        assert_eq!(assoc[2].status, Some(400));

        // IMDSv2 inside node 0
        let imds = r#"
import urllib.request as u, json
b = "http://127.0.0.1:1338"
try:
    u.urlopen(b + "/latest/meta-data/instance-id"); noauth = 200
except Exception as e:
    noauth = e.code
t = u.urlopen(u.Request(b + "/latest/api/token", method="PUT",
    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
g = lambda p: u.urlopen(u.Request(b + p, headers={"X-aws-ec2-metadata-token": t})).read().decode()
mac = g("/latest/meta-data/mac")
print(json.dumps({"noauth": noauth, "id": g("/latest/meta-data/instance-id"),
    "eni": g("/latest/meta-data/network/interfaces/macs/" + mac + "/interface-id"),
    "region": g("/latest/meta-data/placement/region"),
    "doc": json.loads(g("/latest/dynamic/instance-identity/document"))}))
"#;
        let out = ok(lab.node_exec(0, &[py, "-c", imds]).unwrap(), "imds query");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["noauth"], 401);
        assert_eq!(v["id"], lab.instance_id(0));
        assert_eq!(v["eni"], lab.eni(0));
        assert_eq!(v["region"], "us-east-1");
        assert_eq!(v["doc"]["instanceId"], lab.instance_id(0));

        // a process started in a node is the command itself (nsenter execs, no fork),
        // in the node's network namespace
        let mut sleeper = lab.node_command(0, &["/bin/sleep", "30"]).spawn().unwrap();
        let pid = sleeper.id();
        lab::wait_exec(pid);
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            PathBuf::from("/usr/bin/sleep")
        );
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
            std::fs::read_link(format!("/proc/{}/ns/net", lab.corosync_pid(0).unwrap())).unwrap()
        );
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();

        // the daemon hook: /bin/true runs and exits 0, pid recorded
        lab.start_daemon(2).unwrap();
        assert!(lab.daemon_pid_spawned(2).is_some());
        assert_eq!(
            lab.wait_daemon_exit(2, Duration::from_secs(5)).unwrap(),
            Some(0)
        );
        assert_eq!(lab.daemon_pid(2), None);

        // kill corosync on node 0: 1 and 2 keep quorum with 2 members
        let t = Instant::now();
        lab.kill_corosync(0, Signal::SIGKILL);
        lab.wait_quorate(&[1, 2], 2, Duration::from_secs(15))
            .unwrap();
        eprintln!(
            "corosync SIGKILL on node 0 -> survivors quorate with 2 in {:.2?}",
            t.elapsed()
        );
        // and it comes back
        let t = Instant::now();
        lab.start_corosync(0).unwrap();
        lab.wait_quorate(&[0, 1, 2], 3, Duration::from_secs(15))
            .unwrap();
        eprintln!(
            "corosync restart on node 0 -> 3 members in {:.2?}",
            t.elapsed()
        );
    }
    assert!(
        netns_left("celsm-").is_empty(),
        "{:?}",
        netns_left("celsm-")
    );
    assert!(
        links_left("celsm-").is_empty(),
        "{:?}",
        links_left("celsm-")
    );

    // isolation on a fresh lab
    {
        let t = Instant::now();
        let lab = Lab::start(spec("lsm", 42, 3)).expect("second lab start");
        eprintln!("fresh 3-node lab up in {:.2?}", t.elapsed());
        let t = Instant::now();
        lab.isolate(1).unwrap();
        lab.wait_not_quorate(1, Duration::from_secs(15)).unwrap();
        lab.wait_quorate(&[0, 2], 2, Duration::from_secs(15))
            .unwrap();
        eprintln!(
            "isolate(1) -> node 1 not quorate, 0+2 quorate in {:.2?}",
            t.elapsed()
        );
        let (q, m) = lab.quorum_state(1).unwrap();
        assert!(!q && m == 1, "node 1: quorate={q} members={m}");
        // node 1 still reaches the emulator
        let out = lab
            .node_exec(1, &[py, "-c", "import boto3,os; print(len(boto3.client('ec2', endpoint_url=os.environ['AWS_ENDPOINT_URL']).describe_addresses()['Addresses']))"])
            .unwrap();
        assert_eq!(ok(out, "describe from isolated node").trim(), "1");
        let t = Instant::now();
        lab.heal(1).unwrap();
        lab.wait_quorate(&[0, 1, 2], 3, Duration::from_secs(20))
            .unwrap();
        eprintln!("heal(1) -> 3 members in {:.2?}", t.elapsed());
    }
    assert!(
        netns_left("celsm-").is_empty(),
        "{:?}",
        netns_left("celsm-")
    );
    assert!(
        links_left("celsm-").is_empty(),
        "{:?}",
        links_left("celsm-")
    );
    eprintln!("lab_smoke total {:.2?}", t0.elapsed());
}

#[test]
fn lab_two_nodes() {
    let t = Instant::now();
    {
        let mut lab = Lab::start(spec("lsm2", 43, 2)).expect("2-node lab start");
        assert_eq!(lab.quorum_state(0).unwrap(), (true, 2));
        assert_eq!(lab.quorum_state(1).unwrap(), (true, 2));
        // two_node: the survivor keeps quorum
        lab.kill_corosync(1, Signal::SIGKILL);
        lab.wait_quorate(&[0], 1, Duration::from_secs(15)).unwrap();
    }
    assert!(
        netns_left("celsm2-").is_empty(),
        "{:?}",
        netns_left("celsm2-")
    );
    eprintln!("lab_two_nodes total {:.2?}", t.elapsed());
}
