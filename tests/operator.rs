//! Operator experience on the lab: the human status table, the JSON schema, the Prometheus
//! endpoint and notify hooks.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use lab::{Lab, LabSpec};

const SETTLE: Duration = Duration::from_secs(40);

fn holder(lab: &Lab) -> usize {
    lab.wait_for("a verified holder agreed by all", SETTLE, || {
        let mut holder = None;
        for i in 0..lab.node_count() {
            let s = lab.daemon_status(i)?;
            let Some(r) = s.resources.first() else { return Ok(None) };
            if !s.synced || r.state != "held" {
                return Ok(None);
            }
            let h = r.holder.as_ref().ok_or_else(|| anyhow!("no holder"))?.node_id as usize - 1;
            if holder.is_some_and(|x| x != h) {
                return Ok(None);
            }
            holder = Some(h);
        }
        Ok(holder)
    })
    .unwrap()
}

/// Prometheus text → (name with labels) → value.
fn scrape(lab: &Lab, node: usize) -> Result<BTreeMap<String, f64>> {
    let out = lab.node_exec(
        node,
        &[
            lab::venv_python().to_str().unwrap(),
            "-c",
            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9464/metrics',timeout=5).read().decode())",
        ],
    )?;
    if !out.status.success() {
        return Err(anyhow!("scrape failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8(out.stdout)?;
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (name, value) = line.rsplit_once(' ').ok_or_else(|| anyhow!("bad line {line:?}"))?;
        samples.insert(name.to_owned(), value.parse::<f64>().map_err(|e| anyhow!("{line:?}: {e}"))?);
    }
    Ok(samples)
}

fn hook_events(lab: &Lab, node: usize) -> Vec<BTreeMap<String, String>> {
    lab.hook_log(node, "/run/hook.log").unwrap()
}

#[test]
fn status_metrics_and_notify_hooks() {
    let mut lab = Lab::start(LabSpec::new("oper", 31, 3)).expect("lab starts");
    let config = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n\n[[notify]]\nname = \"record\"\ncommand = \"env | grep ^COROSYNC_EIP_ | sort >> /run/hook.log; echo --- >> /run/hook.log\"\ntimeout = \"5s\"\n",
        lab.default_daemon_config()
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let h = holder(&lab);
    let alloc = lab.allocation_ids()[0].clone();
    let public_ip = lab.seed_info().allocations[0].public_ip.clone();

    // Human status: readable, with every member, the holder, EC2's answer and the timeline.
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let out = lab.node_exec((h + 1) % 3, &[&bin, "status"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("quorate yes (3 of 3 votes, 2 needed)"), "{text}");
    for i in 0..3 {
        assert!(text.contains(lab.instance_id(i)), "member {i} missing:\n{text}");
    }
    assert!(text.contains(&lab.seed_info().instances[0].az), "availability zone shown:\n{text}");
    assert!(text.contains("cluster group corosync-eip"), "{text}");
    assert!(text.contains(&alloc) && text.contains("held"), "{text}");
    assert!(text.contains(&format!("holder {} (node {})", lab.node_name(h), lab.node_id(h))), "{text}");
    assert!(!text.contains('\u{1b}'), "no colours when not a terminal");
    let out = lab.node_exec(h, &[&bin, "status"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("last failover"));

    // JSON: validated against the published schema on every node.
    let schema = lab::repo_root().join("docs/status.schema.json");
    for i in 0..3 {
        // the daemon's own bytes, not a re-serialised report: extra or missing fields count
        let status = lab.daemon_status_json(i).unwrap().to_string();
        let check = format!(
            "import json,sys,jsonschema; jsonschema.validate(json.loads(sys.argv[1]), json.load(open('{}')))",
            schema.display()
        );
        let out = std::process::Command::new(lab::venv_python()).args(["-c", &check, &status]).output().unwrap();
        assert!(out.status.success(), "node {i} status violates the schema: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Metrics on the holder: quorum, membership, the holder, EC2 calls and latency.
    let m = lab.wait_for("metrics endpoint", SETTLE, || scrape(&lab, h).map(Some)).unwrap();
    assert_eq!(m.get("corosync_eip_quorate"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("corosync_eip_members"), Some(&3.0));
    assert_eq!(m.get(r#"corosync_eip_holder_node{resource="eip1",kind="eip"}"#), Some(&(lab.node_id(h) as f64)));
    assert!(m.get(r#"corosync_eip_ec2_calls_total{api="AssociateAddress",outcome="ok"}"#).is_some_and(|v| *v >= 1.0), "{m:?}");
    assert!(m.keys().any(|k| k.starts_with("corosync_eip_ec2_call_duration_seconds_bucket")));
    assert!(m.get(r#"corosync_eip_verification_age_seconds{resource="eip1",kind="eip"}"#).is_some());

    // Notify hook on acquire, with the documented environment.
    let events = lab
        .wait_for("acquire hook ran", SETTLE, || {
            let e = hook_events(&lab, h);
            Ok((!e.is_empty()).then_some(e))
        })
        .unwrap();
    let acquire = &events[0];
    assert_eq!(acquire["COROSYNC_EIP_EVENT"], "acquire");
    assert_eq!(acquire["COROSYNC_EIP_RESOURCE"], "eip1");
    assert_eq!(acquire["COROSYNC_EIP_ROLE"], "holder");
    assert_eq!(acquire["COROSYNC_EIP_KIND"], "eip");
    assert_eq!(acquire["COROSYNC_EIP_ADDRESS"], public_ip);
    assert_eq!(acquire["COROSYNC_EIP_INSTANCE_ID"], lab.instance_id(h));

    // Members carry corosync.conf's node names, and a node is named as admins name it.
    let s = lab.daemon_status(h).unwrap();
    for i in 0..3 {
        let m = s.members.iter().find(|m| m.node_id == lab.node_id(i)).expect("member");
        assert_eq!(m.name.as_deref(), Some(lab.node_name(i)), "{m:?}");
    }
    let out = lab.node_exec(h, &[&bin, "move", "eip1", "--to", "no-such-node"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown node name is refused");
    assert!(err.contains("no-such-node") && err.contains(&format!("{} (node {})", lab.node_name(h), lab.node_id(h))), "{err}");
    assert!(hook_events(&lab, h).iter().all(|e| e["COROSYNC_EIP_EVENT"] != "release"), "a refused move releases nothing");

    // A planned move, by node name: release on the old holder, acquire on the new one.
    let to = (h + 1) % 3;
    let out = lab.node_exec(h, &[&bin, "move", "eip1", "--to", lab.node_name(to)]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lab.wait_for("release and acquire hooks", SETTLE, || {
        let old = hook_events(&lab, h);
        let new = hook_events(&lab, to);
        Ok((old.iter().any(|e| e["COROSYNC_EIP_EVENT"] == "release") && new.iter().any(|e| e["COROSYNC_EIP_EVENT"] == "acquire")).then_some(()))
    })
    .unwrap();
    let m = scrape(&lab, to).unwrap();
    assert_eq!(m.get(r#"corosync_eip_failovers_total{resource="eip1",kind="eip"}"#), Some(&1.0), "{m:?}");
}

#[test]
fn a_standby_node_without_permission_shows_it_before_any_failover() {
    let mut lab = Lab::start(LabSpec::new("perm", 34, 3)).expect("lab starts");
    let everything = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]
    });
    let no_associate = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["ec2:DescribeAddresses", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces", "ec2:CreateTags"],
            "Resource": "*"
        }]
    });
    let (key, secret) = lab.create_iam_user("role", &everything).unwrap();
    let (bad_key, bad_secret) = lab.create_iam_user("drifted", &no_associate).unwrap();
    lab.enforce_iam(true).unwrap();
    // Nodes 1 and 2 are preferred, node 3's role lost ec2:AssociateAddress.
    let config = lab
        .default_daemon_config()
        .replace("[cluster]\n", "[cluster]\nprefer = [1, 2]\n")
        + "\n[aws]\npermission_check_interval = \"1s\"\n";
    for i in 0..3 {
        let (k, s) = if i == 2 { (&bad_key, &bad_secret) } else { (&key, &secret) };
        lab.set_daemon_env(i, "AWS_ACCESS_KEY_ID", k);
        lab.set_daemon_env(i, "AWS_SECRET_ACCESS_KEY", s);
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    assert_eq!(holder(&lab), 0);
    let s = lab
        .wait_for("the drifted node reports its missing permission", SETTLE, || {
            let s = lab.daemon_status(2)?;
            let warned = s.warnings.iter().any(|w| w.contains("ec2:AssociateAddress") && w.contains("denied"));
            Ok(warned.then_some(s))
        })
        .unwrap();
    assert_eq!(s.resources.first().map(|r| r.local_role.as_str()), Some("standby"));
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let out = lab.node_exec(2, &[&bin, "status"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning: permission ec2:AssociateAddress"));
    // The well-configured idle node has nothing to report.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.daemon_status(1).unwrap().warnings.len(), 0);
    lab.enforce_iam(false).unwrap();
}

#[test]
fn systemd_notify_ready_status_watchdog_reloading_stopping() {
    let mut lab = Lab::start(LabSpec::new("sdn", 36, 3)).expect("lab starts");
    // A stand-in for systemd's notify socket inside node 0, recording every datagram.
    let listener = "import socket\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind('/run/notify.sock')\nf=open('/run/notify.log','a')\nwhile True:\n    f.write(s.recv(4096).decode()+'\\n---\\n'); f.flush()\n";
    let python = lab::venv_python().to_string_lossy().into_owned();
    let mut recorder = lab.node_command(0, &[&python, "-c", listener]).spawn().expect("recorder starts");
    lab.wait_for("notify socket bound", SETTLE, || {
        Ok(lab.node_exec(0, &["/usr/bin/test", "-S", "/run/notify.sock"])?.status.success().then_some(()))
    })
    .unwrap();
    lab.set_daemon_env(0, "NOTIFY_SOCKET", "/run/notify.sock");
    lab.set_daemon_env(0, "WATCHDOG_USEC", "1000000");
    for i in 0..3 {
        lab.start_daemon(i).unwrap();
    }
    let messages = |lab: &Lab| -> Vec<String> {
        let out = lab.node_exec(0, &["/bin/cat", "/run/notify.log"]).unwrap();
        String::from_utf8_lossy(&out.stdout).split("\n---\n").map(str::to_owned).collect()
    };
    holder(&lab);
    let sent = lab
        .wait_for("READY=1 with a status line, then watchdog pings", SETTLE, || {
            let m = messages(&lab);
            let ready = m.iter().position(|x| x.contains("READY=1"));
            let pings = m.iter().filter(|x| x.contains("WATCHDOG=1")).count();
            Ok((ready.is_some() && pings >= 3).then_some(m))
        })
        .unwrap();
    let ready = sent.iter().find(|x| x.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=quorate;"), "{ready}");
    assert!(sent.iter().any(|x| x.contains("STATUS=quorate; 3 member(s)")), "status follows the cluster: {sent:?}");
    // READY=1 only once the daemon knows the holders: the log shows the sync came first.
    assert!(lab.daemon_log(0).contains("CPG membership changed"));

    lab.signal_daemon(0, lab::Signal::SIGHUP).unwrap();
    lab.wait_for("RELOADING=1 then READY=1 again", SETTLE, || {
        let m = messages(&lab);
        let reloading = m.iter().position(|x| x.contains("RELOADING=1"));
        Ok(reloading.is_some_and(|r| m[r..].iter().any(|x| x.contains("READY=1"))).then_some(()))
    })
    .unwrap();
    lab.signal_daemon(0, lab::Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(0, Duration::from_secs(10)).unwrap(), Some(0));
    assert!(messages(&lab).iter().any(|x| x.contains("STOPPING=1")));
    let _ = recorder.kill();
    let _ = recorder.wait();
}
