//! `[[notify]]` hooks on the lab: every holding that ends fires exactly one `release`, whatever
//! ended it (drift, losing corosync, a planned stop, yielding to a newer holder), and hooks
//! never overlap. Each node's hook appends its environment to a file; the assertions are on
//! those files, EC2 and every node's status.
//!
//! Lab names/subnets: `hk`/88, `hks`/89, `hkr`/90.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use lab::{Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(40);

/// A hook that records its environment and fails loudly if another hook is running.
const HOOK: &str = "\n[[notify]]\nname = \"record\"\ncommand = \"if ! mkdir /run/hook.lock 2>/dev/null; then echo OVERLAP >> /run/hook.log; fi; env | grep ^COROSYNC_EIP_ | sort >> /run/hook.log; sleep 0.2; echo --- >> /run/hook.log; rmdir /run/hook.lock\"\ntimeout = \"5s\"\nevents = [\"acquire\", \"release\"]\n";

type Record = BTreeMap<String, String>;

fn records(lab: &Lab, node: usize) -> Vec<Record> {
    let records = lab.hook_log(node, "/run/hook.log").unwrap_or_default();
    let raw = lab.node_exec(node, &["/bin/cat", "/run/hook.log"]).map(|o| o.stdout).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&raw).contains("OVERLAP"), "two hooks ran at once on node {node}");
    records
}

fn count(records: &[Record], event: &str) -> usize {
    records.iter().filter(|r| r.get("COROSYNC_EIP_EVENT").map(String::as_str) == Some(event)).count()
}

/// Waits until node `i` has logged `acquires` acquire and `releases` release hooks.
fn wait_hooks(lab: &Lab, i: usize, acquires: usize, releases: usize, what: &str) -> Vec<Record> {
    lab.wait_for(what, SETTLE, || {
        let r = records(lab, i);
        Ok((count(&r, "acquire") >= acquires && count(&r, "release") >= releases).then_some(r))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}\n{}", records(lab, i), lab.logs()))
}

/// Every node's hooks balance: one release for every acquire, except on the node holding now.
/// Waited for: hooks run in the background, and a member that rejoins with a stale "not
/// quorate" fact makes the holder stand down and verify again, a release and an acquire that
/// arrive together (one more of each, still balanced).
fn assert_balanced(lab: &Lab, nodes: &[usize], holder: Option<usize>) {
    let unbalanced = |i: usize| {
        let r = records(lab, i);
        let open = usize::from(holder == Some(i));
        (count(&r, "acquire") != count(&r, "release") + open).then_some(r)
    };
    let waited = lab.wait_for("every node's acquires and releases pair up", SETTLE, || {
        Ok(nodes.iter().all(|&i| unbalanced(i).is_none()).then_some(()))
    });
    if waited.is_err() {
        let bad: Vec<_> = nodes.iter().filter_map(|&i| unbalanced(i).map(|r| (i, r))).collect();
        panic!("acquires and releases do not pair up: {bad:?}");
    }
}

#[test]
fn every_end_of_a_holding_fires_exactly_one_release() {
    let mut lab = Lab::start(LabSpec::new("hk", 88, 3)).expect("lab starts");
    let config = format!("{}{HOOK}", lab.default_daemon_config());
    lab.start_daemons_with(&config).unwrap();
    let all = [0, 1, 2];
    let first = lab.settled_holder(&all, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    wait_hooks(&lab, first, 1, 0, "the first holder's acquire hook");
    assert_balanced(&lab, &all, Some(first));

    // Drift: the address is moved out of band; the holder's holding ended (release) and its
    // repair is a new one (acquire).
    let alloc = lab.allocation_ids()[0].clone();
    let stray_eni = lab.eni((first + 1) % 3).to_string();
    lab.with_ec2(move |rt, c| {
        rt.block_on(c.associate_address().allocation_id(alloc).network_interface_id(stray_eni).allow_reassociation(true).send())
            .map_err(|e| anyhow!("{}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
        Ok(())
    })
    .unwrap();
    let r = wait_hooks(&lab, first, 2, 1, "release and acquire around the drift repair");
    let events: Vec<&str> = r.iter().map(|r| r["COROSYNC_EIP_EVENT"].as_str()).collect();
    assert_eq!(events, ["acquire", "release", "acquire"], "in the order they happened");
    assert_eq!(lab.settled_holder(&all, 3, SETTLE).unwrap(), first);
    assert_balanced(&lab, &all, Some(first));

    // Losing corosync: the holder may no longer act; its release says why.
    lab.kill_corosync(first, Signal::SIGTERM);
    let r = wait_hooks(&lab, first, 2, 2, "release when corosync is lost");
    let last = r.last().unwrap();
    assert_eq!(last["COROSYNC_EIP_EVENT"], "release");
    assert!(last["COROSYNC_EIP_DETAIL"].contains("corosync"), "{last:?}");
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != first).collect();
    let second = lab.settled_holder(&rest, 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    wait_hooks(&lab, second, 1, 0, "the new holder's acquire hook");
    lab.start_corosync(first).unwrap();
    lab.wait_quorate(&all, 3, SETTLE).unwrap();
    assert_eq!(lab.settled_holder(&all, 3, SETTLE).unwrap(), second, "nothing moves back");
    assert_balanced(&lab, &all, Some(second));

    // A planned stop: the release hook runs before the daemon exits.
    let released = count(&records(&lab, second), "release");
    lab.signal_daemon(second, Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(second, Duration::from_secs(20)).unwrap(), Some(0));
    let r = records(&lab, second);
    assert_eq!(count(&r, "release"), released + 1, "the stopped holder's release ran before it exited: {r:?}");
    assert_eq!(r.last().unwrap()["COROSYNC_EIP_DETAIL"], "stopping");
    let live: Vec<usize> = all.iter().copied().filter(|&i| i != second).collect();
    let third = lab.settled_holder(&live, 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let acquires_before = count(&records(&lab, third), "release");
    wait_hooks(&lab, third, acquires_before + 1, 0, "the third holder's acquire hook");
    assert_balanced(&lab, &all, Some(third));
    let _ = &mut lab;
    lab.assert_no_panics();
}

#[test]
fn the_old_holder_of_a_two_node_split_releases_when_it_yields() {
    let mut lab = Lab::start(LabSpec::new("hks", 89, 2)).expect("lab starts");
    let config = format!("{}{HOOK}", lab.default_daemon_config());
    lab.start_daemons_with(&config).unwrap();
    let holder = lab.settled_holder(&[0, 1], 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let other = 1 - holder;
    wait_hooks(&lab, holder, 1, 0, "the holder's acquire hook");
    lab.isolate(holder).unwrap();
    assert_eq!(lab.settled_holder(&[other], 1, SETTLE).unwrap(), other, "the other half takes the address");
    wait_hooks(&lab, other, 1, 0, "the taker's acquire hook");
    // Both halves keep quorum (two_node): the old holder learns of the newer owner from EC2's
    // ownership record, yields, and that ends its holding.
    let r = wait_hooks(&lab, holder, 1, 1, "the yielding holder's release hook");
    assert_eq!(r.last().unwrap()["COROSYNC_EIP_EVENT"], "release");
    std::thread::sleep(Duration::from_secs(4)); // two monitor intervals: no second release
    let r = records(&lab, holder);
    assert_eq!(count(&r, "release"), count(&r, "acquire"), "one release for its one holding: {r:?}");
    lab.heal(holder).unwrap();
    lab.wait_quorate(&[0, 1], 2, SETTLE).unwrap();
    assert_eq!(lab.settled_holder(&[0, 1], 2, SETTLE).unwrap(), other);
    assert_balanced(&lab, &[0, 1], Some(other));
    let _ = &mut lab;
    lab.assert_no_panics();
}

/// Pids of processes whose command line is exactly `argv` (joined by NULs in /proc).
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// The process's children that exited and were never waited for.
fn zombie_children(pid: u32) -> Vec<u32> {
    let mut zombies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            if stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
                zombies.push(child);
            }
        }
    }
    zombies
}

#[test]
fn a_reload_ends_the_health_check_it_was_running_and_leaves_no_zombie() {
    let mut lab = Lab::start(LabSpec::new("hkr", 90, 2)).expect("lab starts");
    // A check that hangs (far inside its timeout) while /run/slow exists on the node.
    let config = format!(
        "{}\n[[health]]\nname = \"app\"\ncommand = \"if [ -e /run/slow ]; then exec sleep 47.3; fi\"\ninterval = \"5s\"\ntimeout = \"50s\"\n",
        lab.default_daemon_config()
    );
    lab.start_daemons_with(&config).unwrap();
    let holder = lab.settled_holder(&[0, 1], 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    lab.node_exec(holder, &["/usr/bin/touch", "/run/slow"]).unwrap();
    let hung = lab
        .wait_for("the health check hangs", SETTLE, || {
            let pids = pids_running(&["sleep", "47.3"]);
            Ok((!pids.is_empty()).then_some(pids))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let daemon = lab.daemon_pid(holder).unwrap();
    lab.node_exec(holder, &["/bin/rm", "-f", "/run/slow"]).unwrap();
    lab.signal_daemon(holder, Signal::SIGHUP).unwrap();
    lab.wait_for("re-exec logged", SETTLE, || Ok(lab.daemon_log(holder).contains("reloading").then_some(())))
        .unwrap();
    // The hung check was killed at the re-exec, not left to run for its 47 s.
    lab.wait_for("the hung check is gone", Duration::from_secs(15), || {
        Ok(hung.iter().all(|&p| !lab::pid_alive(p)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {hung:?} still running\n{}", lab.logs()));
    assert_eq!(lab.settled_holder(&[0, 1], 2, SETTLE).unwrap(), holder, "the reload kept the address");
    assert_eq!(lab.daemon_pid(holder), Some(daemon), "the reload keeps the process");
    let zombies = zombie_children(daemon);
    assert!(zombies.is_empty(), "children left unreaped across the re-exec: {zombies:?}");

    // A reload that adds a check which would hang for 20 s: the reloaded daemon rejoins first
    // and runs the new check afterwards, so the peers' 5 s reattach grace never runs out and
    // nothing moves. (Run first, it held the rejoin up for the whole 20 s.)
    let added = format!(
        "{config}\n[[health]]\nname = \"added\"\ncommand = \"if [ -e /run/slow ]; then exec sleep 20.7; fi\"\ninterval = \"5s\"\ntimeout = \"30s\"\n"
    );
    lab.write_daemon_config(holder, &added).unwrap();
    lab.node_exec(holder, &["/usr/bin/touch", "/run/slow"]).unwrap();
    let since = lab::unix_now();
    let reloads = lab.daemon_log(holder).matches("reloading").count();
    lab.signal_daemon(holder, Signal::SIGHUP).unwrap();
    lab.wait_for("second re-exec logged", SETTLE, || {
        Ok((lab.daemon_log(holder).matches("reloading").count() > reloads).then_some(()))
    })
    .unwrap();
    lab.wait_for("the added check runs after the rejoin", SETTLE, || Ok((!pids_running(&["sleep", "20.7"]).is_empty()).then_some(())))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    // Longer than the reattach grace: a rejoin held up by the check would have moved it by now.
    std::thread::sleep(Duration::from_secs(7));
    let status = lab.daemon_status(holder).unwrap();
    assert!(status.synced, "the reloaded daemon rejoined while its new check still runs");
    assert_eq!(lab.settled_holder(&[0, 1], 2, SETTLE).unwrap(), holder, "the reload kept the address");
    let moved = lab.mutating_calls_since(since).unwrap();
    assert!(moved.is_empty(), "the reload with a new check moved something: {moved:?}");
    lab.node_exec(holder, &["/bin/rm", "-f", "/run/slow"]).unwrap();
    let _ = &mut lab;
    lab.assert_no_panics();
}

