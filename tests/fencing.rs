//! `[fencing] stop_instance` on the lab (3 nodes, real corosync, moto as EC2): a successor
//! stops the departed holder's instance before it moves the address, only when the holder's
//! node left; a planned stop and a daemon restart within the grace never stop anything; a
//! fence that fails leaves the address where it is. Assertions are on what EC2 says and on the
//! emulator's request log, never on timings.
//!
//! Needs root and `scripts/setup.sh`. Lab name `fen`, subnet 94.

use std::time::Duration;

use lab::{Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(40);

fn config(lab: &Lab, prefer: &[usize]) -> String {
    let prefer: Vec<String> = prefer.iter().map(|i| lab.node_id(*i).to_string()).collect();
    format!(
        "[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"2s\"\nreattach_grace = \"5s\"\nprefer = [{}]\n\n\
         [aws]\nacquire_timeout = \"5s\"\n\n\
         [fencing]\nstop_instance = true\ntimeout = \"20s\"\n\n\
         [[eip]]\nname = \"eip1\"\nallocation_id = \"{}\"\n\n\
         [[notify]]\nname = \"fence\"\ncommand = \"env | grep ^COROSYNC_EIP_ | sort >> /run/fence-hook.log; echo --- >> /run/fence-hook.log\"\n\
         events = [\"fence\"]\n",
        prefer.join(", "),
        lab.allocation_ids()[0]
    )
}

/// `status --json` of node `i`, the daemon's own bytes, valid against the published schema.
fn status_valid(lab: &Lab, i: usize) -> serde_json::Value {
    let status = lab.daemon_status_json(i).unwrap();
    let schema = lab::repo_root().join("docs/status.schema.json");
    let check = format!(
        "import json,sys,jsonschema; jsonschema.validate(json.loads(sys.argv[1]), json.load(open('{}')))",
        schema.display()
    );
    let out = std::process::Command::new(lab::venv_python()).args(["-c", &check, &status.to_string()]).output().unwrap();
    assert!(out.status.success(), "node {i} status violates the schema: {}", String::from_utf8_lossy(&out.stderr));
    status
}

/// The `fence` hook's runs on node `i`: (COROSYNC_EIP_EVENT, COROSYNC_EIP_DETAIL).
fn fence_hooks(lab: &Lab, i: usize) -> Vec<(String, String)> {
    lab.hook_log(i, "/run/fence-hook.log")
        .unwrap_or_default()
        .into_iter()
        .map(|b| (b.get("COROSYNC_EIP_EVENT").cloned().unwrap_or_default(), b.get("COROSYNC_EIP_DETAIL").cloned().unwrap_or_default()))
        .collect()
}

fn settled(lab: &Lab, nodes: &[usize], members: usize) -> usize {
    lab.settled_holder(nodes, members, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()))
}

/// StopInstances calls (DryRun probes excluded) since `since`: (node, instance).
fn stops_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String)> {
    stop_requests_since(lab, since, |_| true)
}

/// The StopInstances EC2 carried out since `since`: a call refused while the role was still
/// being fixed is an attempt, not a fence.
fn applied_stops_since(lab: &Lab, since: f64) -> Vec<(Option<usize>, String)> {
    stop_requests_since(lab, since, |r| r.status.is_some_and(|s| (200..300).contains(&s)))
}

fn stop_requests_since(lab: &Lab, since: f64, keep: impl Fn(&lab::Ec2Request) -> bool) -> Vec<(Option<usize>, String)> {
    lab.ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.t >= since && r.action == "StopInstances" && r.param("DryRun") != Some("true") && keep(r))
        .map(|r| (lab.node_by_ip(&r.source), r.param("InstanceId.1").unwrap_or_default().to_string()))
        .collect()
}

fn associates_since(lab: &Lab, since: f64) -> Vec<lab::Ec2Request> {
    lab.ec2_requests().unwrap().into_iter().filter(|r| r.t >= since && r.action == "AssociateAddress").collect()
}

/// Corosync and the daemon of node `i` die: the node leaves the membership.
fn lose_node(lab: &mut Lab, i: usize) {
    lab.kill_corosync(i, Signal::SIGKILL);
    lab.kill_daemon(i);
}

#[test]
fn fencing_stops_a_lost_holder_first_and_only_then() {
    let mut lab = Lab::start(LabSpec::new("fen", 94, 3)).expect("lab starts");
    // Node 2's role may do everything but StopInstances: its fences fail (scenario 4). The
    // others sign with the lab's keys, which act as the account root.
    let (key, secret) = lab.create_iam_user("node2", &lab::full_policy()).expect("IAM user");
    lab.enforce_iam(true).expect("IAM enforcement on");
    lab.set_daemon_env(2, "AWS_ACCESS_KEY_ID", &key);
    lab.set_daemon_env(2, "AWS_SECRET_ACCESS_KEY", &secret);
    let text = config(&lab, &[0, 2, 1]);
    // Node 1 (never the successor here) has fencing off: every node names the difference.
    let off = text.replace("stop_instance = true", "stop_instance = false");
    for i in 0..3 {
        lab.write_daemon_config(i, if i == 1 { &off } else { &text }).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let alloc = lab.allocation_ids()[0].clone();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), 0, "prefer puts eip1 on node 0");
    let warnings = lab.daemon_status(0).unwrap().warnings;
    let want = format!("[fencing] stop_instance is true here but false on node(s) {}", lab.node_id(1));
    assert!(warnings.iter().any(|w| w.starts_with(&want)), "{warnings:?}");

    // `check` proves StopInstances with DryRun (the emulator honours DryRun there: nothing is
    // stopped), and names it when the role lacks it.
    let check = |i: usize, env: &[(&str, &str)]| {
        let bin = lab.spec().daemon_bin.display().to_string();
        let mut cmd = lab.node_command(i, &[&bin, "check", "--config", lab::DAEMON_CONFIG]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(std::process::Stdio::null()).output().expect("runs check");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let allowed = check(0, &[]);
    let line = allowed.lines().find(|l| l.contains("StopInstances")).unwrap_or_else(|| panic!("no StopInstances item:\n{allowed}"));
    assert!(line.contains("allowed") && line.contains("fencing"), "{line}");
    let denied = check(2, &[("AWS_ACCESS_KEY_ID", &key), ("AWS_SECRET_ACCESS_KEY", &secret)]);
    let line = denied.lines().find(|l| l.contains("StopInstances")).unwrap_or_else(|| panic!("no StopInstances item:\n{denied}"));
    assert!(!line.contains("allowed"), "{line}");
    assert!(denied.contains("FenceClusterInstances"), "the remedy quotes the scoped statement:\n{denied}");
    assert!((0..3).all(|i| lab.instance_state(i).unwrap() == "running"), "DryRun stopped nothing");

    // (2) A planned stop of the holder is a release: node 2 takes over, nobody is stopped.
    let t = lab::unix_now();
    lab.signal_daemon(0, Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(0, Duration::from_secs(10)).unwrap(), Some(0));
    assert_eq!(settled(&lab, &[1, 2], 2), 2);
    assert_eq!(stops_since(&lab, t), vec![], "a release is never fenced");
    lab.start_daemon(0).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), 2, "sticky: nothing moves back");

    // (3) The holder's daemon dies and is back within the reattach grace: nothing moves,
    // nobody is stopped.
    let t = lab::unix_now();
    lab.kill_daemon(2);
    std::thread::sleep(Duration::from_secs(1));
    lab.start_daemon(2).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), 2);
    assert_eq!(stops_since(&lab, t), vec![], "a daemon restart within the grace is never fenced");
    assert!(lab.mutating_calls_since(t).unwrap().is_empty(), "nothing written");

    // (1) The holder's node is lost: node 0 (prefer) stops node 2's instance, sees it down,
    // and only then moves the address, once.
    let t = lab::unix_now();
    lose_node(&mut lab, 2);
    assert_eq!(settled(&lab, &[0, 1], 2), 0);
    let stops = stops_since(&lab, t);
    assert_eq!(stops, vec![(Some(0), lab.instance_id(2).to_string())], "one fence, by the successor");
    let log = lab.ec2_requests().unwrap();
    let stop_at = log.iter().position(|r| r.t >= t && r.action == "StopInstances" && r.param("DryRun") != Some("true")).unwrap();
    let assoc_at = log.iter().position(|r| r.t >= t && r.action == "AssociateAddress").expect("the address moved");
    assert!(stop_at < assoc_at, "StopInstances before AssociateAddress");
    assert!(
        log[stop_at..assoc_at].iter().any(|r| r.action == "DescribeInstances" && lab.node_by_ip(&r.source) == Some(0)),
        "the successor saw the instance down before it moved the address"
    );
    assert_eq!(log[stop_at].param("Force"), Some("true"), "force stop");
    assert_eq!(associates_since(&lab, t).len(), 1, "the address moved once");
    assert_eq!(lab.instance_state(2).unwrap(), "stopped");
    assert_eq!(lab.eip_holder(&alloc).unwrap(), Some(0));
    let s = status_valid(&lab, 0);
    let failover = &s["resources"][0]["last_failover"];
    assert!(failover["fenced_ms"].is_u64(), "the timeline shows the fence: {failover}");
    assert_eq!(s["fencing"]["last"]["result"], "stopped", "{}", s["fencing"]);
    assert!(lab.daemon_log(0).contains("→ fenced +"), "the timeline line shows the fence step");
    let hooks = lab.wait_for("the fence hook ran", SETTLE, || Ok(Some(fence_hooks(&lab, 0)).filter(|h| !h.is_empty()))).unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0].0 == "fence" && hooks[0].1.starts_with(&format!("stopped {}", lab.instance_id(2))), "{hooks:?}");

    // Node 2 comes back (its instance started again): a member again, holding nothing.
    lab.start_instance(2).unwrap();
    lab.start_corosync(2).unwrap();
    lab.start_daemon(2).unwrap();
    assert_eq!(settled(&lab, &[0, 1, 2], 3), 0);

    // (4) The holder's node is lost and the successor (node 2, by prefer) may not call
    // StopInstances: the fence fails, the address stays on node 0's instance, no move, and
    // node 2 keeps the unit (a failed fence never hands it over) and says why.
    let t = lab::unix_now();
    lose_node(&mut lab, 0);
    let status = lab
        .wait_for("node 2 reports the failed fence", SETTLE, || {
            let s = lab.daemon_status_json(2)?;
            let failed = s["fencing"]["last"]["result"] == "failed";
            Ok(failed.then_some(s))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let error = status["fencing"]["last"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("StopInstances") && error.contains("UnauthorizedOperation"), "{error}");
    let last_error = status["resources"][0]["last_error"].as_str().unwrap_or_default().to_string();
    assert!(last_error.contains("StopInstances"), "status names the failed fence: {last_error}");
    // A few retries later, still nothing has moved.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(associates_since(&lab, t).len(), 0, "a failed fence is never a move");
    assert_eq!(lab.eip_holder(&alloc).unwrap(), Some(0), "the address stays where it is");
    assert_eq!(lab.instance_state(0).unwrap(), "running");
    let s = lab.daemon_status_json(1).unwrap();
    assert_eq!(s["resources"][0]["holder"]["node_id"], lab.node_id(2), "not handed to node 1: {}", s["resources"][0]);
    assert!(lab.daemon_log(2).contains("fence failed"), "logged");
    status_valid(&lab, 2);
    let hooks = fence_hooks(&lab, 2);
    assert_eq!(hooks.len(), 1, "a fence that keeps failing tells the hook once: {hooks:?}");
    assert!(hooks[0].1.starts_with("failed to stop"), "{hooks:?}");

    // (5) Node 2's daemon is reloaded (a re-exec, same process) while its fence is still
    // owed: the new incarnation must still fence first, not take the address unfenced (its
    // role may associate).
    let pid = lab.daemon_pid(2);
    lab.signal_daemon(2, Signal::SIGHUP).unwrap();
    lab.wait_for("node 2 reloaded and failed its fence again", SETTLE, || {
        let s = lab.daemon_status_json(2)?;
        Ok((s["fencing"]["last"]["result"] == "failed" && lab.daemon_log(2).contains("reloading")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_eq!(lab.daemon_pid(2), pid, "a reload keeps the process");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(associates_since(&lab, t).len(), 0, "the reloaded successor still owes the fence: {}", lab.daemon_log(2));
    assert_eq!(lab.eip_holder(&alloc).unwrap(), Some(0));

    // The admin fixes the role: the owed fence goes out, then the address moves, once.
    let fixed = lab::unix_now();
    lab.enforce_iam(false).unwrap();
    lab.wait_for("the address moved to node 2", SETTLE, || Ok((lab.eip_holder(&alloc)? == Some(2)).then_some(())))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_eq!(applied_stops_since(&lab, fixed), vec![(Some(2), lab.instance_id(0).to_string())], "the owed fence, once\n{}", lab.daemon_log(2));
    let log = lab.ec2_requests().unwrap();
    let stop_at = log
        .iter()
        .position(|r| r.t >= fixed && r.action == "StopInstances" && r.param("DryRun") != Some("true") && r.status == Some(200))
        .unwrap();
    let assoc_at = log.iter().position(|r| r.t >= fixed && r.action == "AssociateAddress").expect("the address moved");
    assert!(stop_at < assoc_at, "StopInstances before AssociateAddress");
    assert_eq!(associates_since(&lab, t).len(), 1, "the address moved once");
    assert_eq!(lab.instance_state(0).unwrap(), "stopped");
    lab.assert_no_panics();
}
