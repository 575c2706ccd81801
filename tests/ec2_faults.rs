//! EC2 misbehaving under a failover: throttling, 5xx, latency, dropped connections and a call
//! that times out after EC2 applied it. A fault-injecting proxy (tests/lab/fault_proxy.py) sits
//! between the daemons and the emulator. Every scenario must converge on the elected holder,
//! with no duplicate move and a bounded number of calls. A Route 53 record whose value EC2
//! refused to tell at start is read again when the record is taken.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use lab::{Lab, LabSpec, Signal};
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(40);
const PROXY_PORT: u16 = 5001;

struct Proxy {
    child: Child,
    netns: String,
    ip: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(lab: &Lab) -> Proxy {
        let netns = format!("ce{}-emu", lab.spec().name);
        let ip = lab.emulator_ip().to_string();
        let script = lab::repo_root().join("tests/lab/fault_proxy.py");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg(lab::venv_python())
            .arg(script)
            .args(["--host", &ip, "--port", &PROXY_PORT.to_string(), "--upstream", &format!("{ip}:5000")])
            .stdin(Stdio::null())
            .spawn()
            .expect("proxy starts");
        let proxy = Proxy { child, netns, ip };
        lab.wait_for("fault proxy answers", Duration::from_secs(10), || Ok(proxy.http("GET", "/_calls", "").ok()))
            .unwrap();
        proxy
    }

    /// One HTTP request to the proxy, from a thread inside the emulator's network namespace.
    fn http(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let netns = self.netns.clone();
        let addr = format!("{}:{PROXY_PORT}", self.ip);
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || -> Result<String> {
            let ns = std::fs::File::open(format!("/run/netns/{netns}"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut stream = std::net::TcpStream::connect(&addr).with_context(|| format!("connect {addr}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            let (_, body) = reply.split_once("\r\n\r\n").ok_or_else(|| anyhow!("bad reply {reply:?}"))?;
            Ok(body.to_owned())
        })
        .join()
        .map_err(|_| anyhow!("proxy client thread panicked"))?
    }

    fn faults(&self, rules: Value) {
        self.http("POST", "/_faults", &rules.to_string()).expect("set faults");
    }

    /// (node index, action, fault) of every call since `since`.
    fn calls_since(&self, lab: &Lab, since: f64) -> Vec<(Option<usize>, String, Option<String>)> {
        let calls: Vec<Value> = serde_json::from_str(&self.http("GET", "/_calls", "").expect("calls")).expect("json");
        calls
            .into_iter()
            .filter(|c| c["t"].as_f64().unwrap_or(0.0) >= since)
            .map(|c| {
                (
                    lab.node_by_ip(c["source"].as_str().unwrap_or_default()),
                    c["action"].as_str().unwrap_or_default().to_owned(),
                    c["fault"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

fn holder(lab: &Lab, nodes: &[usize]) -> usize {
    let alloc = lab.allocation_ids()[0].clone();
    lab.wait_for("converged on one verified holder", SETTLE, || {
        let mut agreed = None;
        for &i in nodes {
            let s = lab.daemon_status(i)?;
            let Some(r) = s.resources.first() else { return Ok(None) };
            if !s.synced || r.state != "held" {
                return Ok(None);
            }
            let h = r.holder.as_ref().ok_or_else(|| anyhow!("no holder"))?.node_id as usize - 1;
            if agreed.is_some_and(|a| a != h) {
                return Ok(None);
            }
            agreed = Some(h);
        }
        // The holder must be one of `nodes`: right after a failure the survivors still name
        // the dead holder until corosync reports it gone.
        let Some(h) = agreed.filter(|h| nodes.contains(h)) else { return Ok(None) };
        Ok((lab.eip(&alloc)?.network_interface_id.as_deref() == Some(lab.eni(h))).then_some(h))
    })
    .unwrap_or_else(|e| {
        let logs: Vec<String> = (0..lab.node_count()).map(|i| lab.daemon_log(i)).collect();
        panic!("{e:#}\n{}", logs.join("\n-----\n"))
    })
}

fn associates(calls: &[(Option<usize>, String, Option<String>)]) -> Vec<(Option<usize>, Option<String>)> {
    calls.iter().filter(|c| c.1 == "AssociateAddress").map(|c| (c.0, c.2.clone())).collect()
}

#[test]
fn failovers_converge_through_ec2_faults_without_duplicate_moves() {
    let mut lab = Lab::start(LabSpec::new("fault", 32, 3)).expect("lab starts");
    let proxy = Proxy::start(&lab);
    let config = format!(
        "{}\n[aws]\nendpoint_url = \"http://{}:{PROXY_PORT}\"\ncall_timeout = \"1s\"\n",
        lab.default_daemon_config(),
        lab.emulator_ip()
    );
    lab.start_daemons_with(&config).unwrap();
    let first = holder(&lab, &[0, 1, 2]);

    // Throttling and a 5xx on the takeover's AssociateAddress: retried with backoff.
    proxy.faults(json!([
        {"action": "AssociateAddress", "mode": "throttle", "count": 2},
        {"action": "AssociateAddress", "mode": "error500", "count": 1}
    ]));
    let t0 = lab::unix_now();
    lab.kill_corosync(first, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let second = holder(&lab, &rest);
    let calls = proxy.calls_since(&lab, t0);
    let assoc = associates(&calls);
    assert_eq!(
        assoc,
        vec![
            (Some(second), Some("throttle".into())),
            (Some(second), Some("throttle".into())),
            (Some(second), Some("error500".into())),
            (Some(second), None)
        ],
        "three refused attempts, one success, all from the new holder"
    );
    assert!(calls.len() <= 20, "bounded calls: {calls:?}");

    // A call that times out after EC2 applied it: the holder looks before sending it again.
    let third = rest.iter().copied().find(|i| *i != second).unwrap();
    proxy.faults(json!([{"action": "AssociateAddress", "mode": "apply_then_hang", "count": 1}]));
    let t1 = lab::unix_now();
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let out = lab.node_exec(second, &[&bin, "move", "eip1", "--to", &lab.node_id(third).to_string()]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(holder(&lab, &rest), third);
    let assoc = associates(&proxy.calls_since(&lab, t1));
    assert_eq!(assoc, vec![(Some(third), Some("apply_then_hang".into()))], "no second AssociateAddress");

    // Slow EC2 and dropped connections on reads during a planned handover.
    proxy.faults(json!([
        {"action": "DescribeAddresses", "mode": "drop", "count": 2},
        {"action": "*", "mode": "latency", "latency_ms": 300}
    ]));
    let t2 = lab::unix_now();
    lab.signal_daemon(third, Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(third, Duration::from_secs(10)).unwrap(), Some(0));
    assert_eq!(holder(&lab, &[second]), second);
    let calls = proxy.calls_since(&lab, t2);
    assert_eq!(associates(&calls).len(), 1, "{calls:?}");
    assert!(calls.iter().all(|c| c.0 == Some(second)), "only the new holder calls EC2: {calls:?}");
    assert!(calls.len() <= 12, "bounded calls: {calls:?}");
    proxy.faults(json!([]));
    for i in 0..3 {
        assert!(!lab.daemon_log(i).contains("panicked"));
    }
}

/// A record that points at the node's own private IP: EC2 refuses the start-up read of that
/// address once (a role that lacked the permission for a while). The node starts anyway, stays
/// a candidate, reads the address again when it is elected, and points the record at itself.
/// Its role allows the record's own name only (a policy from before the ownership record): the
/// batch with the ownership record is refused, and the record moves without it, with a warning.
#[test]
fn a_record_value_refused_at_start_is_read_again_when_the_record_is_taken() {
    const RECORD: &str = "app.lab.internal.";
    let mut lab = Lab::start(LabSpec::new("rer", 77, 3)).expect("lab starts");
    let proxy = Proxy::start(&lab);
    let config = format!(
        "{}{}prefer = [{}]\n\n[aws]\nendpoint_url = \"http://{}:{PROXY_PORT}\"\n",
        lab.default_daemon_config(),
        lab.dns_config("www", RECORD, "private"),
        lab.node_id(0),
        lab.emulator_ip()
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
    }
    proxy.faults(json!([
        {"action": "DescribeNetworkInterfaces", "mode": "denied", "count": 1},
        {"action": "ChangeResourceRecordSets", "mode": "denied", "body_contains": "_corosync-eip."}
    ]));
    let t0 = lab::unix_now();
    lab.start_daemon(0).unwrap();
    lab.wait_for("node 0 reports the refused start-up read", SETTLE, || {
        Ok(lab.daemon_log(0).contains("cannot point the record at itself yet").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_log(0)));
    let refused: Vec<_> = proxy
        .calls_since(&lab, t0)
        .into_iter()
        .filter(|c| c.1 == "DescribeNetworkInterfaces" && c.2.as_deref() == Some("denied"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, Some(0), "the refused read was node 0's");

    for i in 1..3 {
        lab.start_daemon(i).unwrap();
    }
    let want = (vec![lab.private_ip(0).to_string()], Some(10));
    lab.wait_for("Route 53 points the record at node 0", SETTLE, || {
        Ok((lab.dns_record(RECORD, "A")?.as_ref() == Some(&want)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    lab.wait_for("every node says node 0 holds the record", SETTLE, || {
        for i in 0..3 {
            let s = lab.daemon_status(i)?;
            let Some(r) = s.resources.iter().find(|r| r.name == "www") else { return Ok(None) };
            if r.state != "held" || r.holder.as_ref().map(|h| h.node_id) != Some(lab.node_id(0)) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let reads: Vec<_> = proxy
        .calls_since(&lab, t0)
        .into_iter()
        .filter(|c| c.0 == Some(0) && c.1 == "DescribeNetworkInterfaces" && c.2.is_none())
        .collect();
    assert!(!reads.is_empty(), "node 0 read its interface again after the refusal");
    let changes: Vec<_> = proxy
        .calls_since(&lab, t0)
        .into_iter()
        .filter(|c| c.1 == "ChangeResourceRecordSets")
        .map(|c| (c.0, c.2))
        .collect();
    // Refused once with the ownership record, then the record alone. Under load a call may
    // time out or be throttled and go out again: the same UPSERT of the same value, which is
    // why the count of changes is not asserted, only that none carried the record again.
    let denied = Some("denied".to_string());
    assert_eq!(changes.first(), Some(&(Some(0), denied.clone())), "refused with the ownership record first: {changes:?}");
    assert_eq!(changes.iter().filter(|c| c.1 == denied).count(), 1, "refused once: {changes:?}");
    assert!(changes.iter().all(|c| c.0 == Some(0)), "only node 0 changed the record: {changes:?}");
    // The emulator sees the proxy, not the node.
    let applied = lab
        .ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.t >= t0 && r.action == "ChangeResourceRecordSets" && r.status == Some(200))
        .count();
    assert!(applied >= 1, "accepted without it\n{}", lab.daemon_log(0));
    assert_eq!(lab.dns_record(&format!("_corosync-eip.{RECORD}"), "TXT").unwrap(), None, "no ownership record was written");
    assert!(lab.daemon_log(0).contains("split-brain protection is off for this record"), "{}", lab.daemon_log(0));
    proxy.faults(json!([]));
    assert!(!lab.daemon_log(0).contains("panicked"));
}

/// Each resource's elected holder as node `i` sees it.
fn holders(lab: &Lab, i: usize) -> Vec<(String, Option<u32>)> {
    let s = lab.daemon_status(i).unwrap();
    s.resources.iter().map(|r| (r.name.clone(), r.holder.as_ref().map(|h| h.node_id))).collect()
}

/// A reload (the RPM upgrade's `systemctl reload`) while every EC2 call takes 3 s: the new
/// process rejoins CPG with what the old one handed over, before any EC2 call or health
/// check, so the peers' reattach grace (5 s on the lab) never runs out and nothing moves.
#[test]
fn a_reload_under_slow_ec2_rejoins_before_any_call_and_moves_nothing() {
    let mut spec = LabSpec::new("frl", 92, 3);
    spec.route_tables = 1;
    let mut lab = Lab::start(spec).expect("lab starts");
    let proxy = Proxy::start(&lab);
    // A VIP and a health check too: every start-up step that asks EC2 or runs a check.
    let config = format!(
        "{}group = \"svc\"\n{}create_route = true\ngroup = \"svc\"\n\n[[health]]\nname = \"app\"\ncommand = \"true\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\n[aws]\nendpoint_url = \"http://{}:{PROXY_PORT}\"\n",
        lab.default_daemon_config(),
        lab.vip_config("db", "172.31.255.40"),
        lab.emulator_ip()
    )
    // Shorter than the route-table lookup below, so a rejoin that waits for it shows.
    .replace("reattach_grace = \"5s\"", "reattach_grace = \"3s\"");
    lab.start_daemons_with(&config).unwrap();
    let first = holder(&lab, &[0, 1, 2]);
    let pid = lab.daemon_pid(first).unwrap();
    let before = lab
        .wait_for("both addresses held", SETTLE, || {
            let h = holders(&lab, first);
            Ok((h.len() == 2 && h.iter().all(|(_, n)| n.is_some())).then_some(h))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    proxy.faults(json!([{"action": "*", "mode": "latency", "latency_ms": 3000}]));
    let t0 = lab::unix_now();
    lab.signal_daemon(first, Signal::SIGHUP).unwrap();
    let rejoined = lab
        .wait_for("the reloaded daemon rejoined", SETTLE, || {
            Ok(lab::bench::daemon_log_time(&lab, first, t0, &["joined CPG group"], &[]))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_log(first)));
    let reloading = lab::bench::daemon_log_time(&lab, first, t0, &["reloading"], &[]).expect("reload logged");
    eprintln!("exec to rejoin with 3 s EC2 latency: {:.0} ms", (rejoined - reloading) * 1000.0);
    // Longer than a reattach grace, with the slow EC2 still in place.
    std::thread::sleep(Duration::from_secs(8));
    proxy.faults(json!([]));
    assert_eq!(holder(&lab, &[0, 1, 2]), first, "the reloaded holder kept its addresses");
    assert_eq!(lab.daemon_pid(first), Some(pid), "reloaded in place");
    // Every mutating call but CreateTags: ownership records, which move no address.
    let moves_since = |lab: &Lab, since| -> Vec<_> {
        lab.mutating_calls_since(since).unwrap().into_iter().filter(|c| c.action != "CreateTags").map(|c| (c.node, c.action)).collect()
    };
    let writes = moves_since(&lab, t0);
    assert!(writes.is_empty(), "nothing moved: {writes:?}");
    for i in 0..3 {
        assert_eq!(holders(&lab, i), before, "node {i} sees the same holders");
    }
    // The handed-over identity is the node's own.
    let s = lab.daemon_status(first).unwrap();
    assert_eq!(s.resources[0].holder.as_ref().and_then(|h| h.instance_id.as_deref()), Some(lab.instance_id(first)));

    // A reload whose file finds the VIP's route table by tag instead (a changed `discover`
    // query), while looking route tables up takes 4 s, longer than the peers' reattach grace:
    // the old process asks EC2, still a member, and the new one rejoins at once.
    let table = lab.route_table_ids()[0].clone();
    let by_tag = config.replace(&format!("route_tables = [\"{table}\"]"), "route_table_tag = \"Name=lab-rtb-0\"");
    assert_ne!(by_tag, config, "the VIP names its table in the first file");
    lab.write_daemon_config(first, &by_tag).unwrap();
    proxy.faults(json!([
        {"action": "DescribeRouteTables", "mode": "latency", "latency_ms": 4000},
        {"action": "*", "mode": "latency", "latency_ms": 3000}
    ]));
    let t1 = lab::unix_now();
    lab.signal_daemon(first, Signal::SIGHUP).unwrap();
    lab.wait_for("the reloaded daemon rejoined", SETTLE, || {
        Ok(lab::bench::daemon_log_time(&lab, first, t1, &["joined CPG group"], &[]))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_log(first)));
    std::thread::sleep(Duration::from_secs(8));
    proxy.faults(json!([]));
    assert!(lab.daemon_log(first).contains("route tables found by tag for the reload"), "{}", lab.daemon_log(first));
    assert_eq!(holder(&lab, &[0, 1, 2]), first, "the reloaded holder kept its addresses");
    assert_eq!(lab.daemon_pid(first), Some(pid), "reloaded in place");
    let writes = moves_since(&lab, t1);
    assert!(writes.is_empty(), "nothing moved: {writes:?}\n{}", lab.logs());
    for i in 0..3 {
        assert_eq!(holders(&lab, i), before, "node {i} sees the same holders");
    }

    // The query changes again (a VPC is added) while EC2 never answers the lookup: the reload
    // is refused whole, the running process and its configuration stay, nothing moves.
    let joins = |lab: &Lab| lab.daemon_log(first).matches("joined CPG group").count();
    let joined_before = joins(&lab);
    let with_vpc = by_tag.replace("route_table_tag = \"Name=lab-rtb-0\"", &format!("route_table_tag = \"Name=lab-rtb-0\"\nvpc_id = \"{}\"", lab.seed_info().vpc_id));
    assert_ne!(with_vpc, by_tag);
    lab.write_daemon_config(first, &with_vpc).unwrap();
    proxy.faults(json!([{"action": "DescribeRouteTables", "mode": "latency", "latency_ms": 30000}]));
    let t2 = lab::unix_now();
    lab.signal_daemon(first, Signal::SIGHUP).unwrap();
    lab.wait_for("the reload refused", Duration::from_secs(40), || {
        Ok(lab::bench::daemon_log_time(&lab, first, t2, &["reload refused: cannot look up the route tables"], &[]))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_log(first)));
    proxy.faults(json!([]));
    assert_eq!(joins(&lab), joined_before, "no re-exec: {}", lab.daemon_log(first));
    assert_eq!(lab.daemon_pid(first), Some(pid));
    assert_eq!(holder(&lab, &[0, 1, 2]), first);
    let writes = moves_since(&lab, t2);
    assert!(writes.is_empty(), "nothing moved: {writes:?}");
    let _ = &mut lab;
    lab.assert_no_panics();
}
