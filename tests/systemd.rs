//! The unit as users run it: every node of a 3-node lab is a container booting systemd, with
//! corosync.service and corosync-eip.service installed as the RPM installs them (binary in
//! /usr/sbin, config in /etc/corosync-eip, sysconfig, every hardening directive of
//! `contrib/corosync-eip.service` left on). The scenarios drive it only as an admin would:
//! `systemctl`, signals, `journalctl` and `corosync-eip status` inside the node; they assert on
//! EC2's view, the emulator's request log and what systemd says about the unit.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use anyhow::Result;
use lab::systemd::UNIT;
use lab::{unix_now, Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(60);
const NODES: [usize; 3] = [0, 1, 2];

fn systemd_lab(name: &str, subnet: u8, eips: usize) -> Lab {
    let mut spec = LabSpec::new(name, subnet, 3);
    spec.systemd = true;
    spec.eips = eips;
    Lab::start(spec).unwrap_or_else(|e| panic!("{e:#}"))
}

fn prop(lab: &Lab, i: usize, name: &str) -> String {
    lab.unit_property(i, UNIT, name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Starts the unit on every node (`--no-block`, as a boot does) and checks that each unit
/// became active only once its daemon had joined and synced: `status` right after the unit
/// turned active must already say synced. Returns the verified holder of the first EIP.
fn start_everywhere(lab: &Lab) -> usize {
    for i in NODES {
        lab.systemctl(i, &["start", "--no-block", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let mut active = BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while active.len() < NODES.len() {
        for i in NODES {
            if active.contains(&i) || prop(lab, i, "ActiveState") != "active" {
                continue;
            }
            let st = lab.daemon_status(i).unwrap_or_else(|e| panic!("{e:#}"));
            // Synced now, or already re-syncing because a later daemon joined; either way the
            // journal must show this process synced before systemd counted the unit started.
            let journal = lab
                .wait_for(&format!("node {i}'s journal shows the unit started"), SETTLE, || {
                    let journal = lab.journal(i, UNIT, "cat");
                    Ok(journal.contains("Started ").then_some(journal))
                })
                .unwrap_or_else(|e| panic!("{e:#}"));
            let ready = journal.find("synced with the cluster; ready");
            let started = journal.find("Started ");
            assert!(
                ready.is_some() && ready < started,
                "node {i}: the unit is active but the daemon was not synced first: {st:?}\n{journal}"
            );
            active.insert(i);
        }
        assert!(Instant::now() < deadline, "units not active after {SETTLE:?}: {active:?} active\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.settled_holder(&NODES, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()))
}

/// AssociateAddress and DisassociateAddress calls since `t`, as (node index, action).
fn moves_since(lab: &Lab, t: f64) -> Vec<(Option<usize>, String)> {
    lab.mutating_calls_since(t)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .into_iter()
        .filter(|c| c.action == "AssociateAddress" || c.action == "DisassociateAddress")
        .map(|c| (c.node, c.action))
        .collect()
}

fn wait_restarted(lab: &Lab, i: usize, restarts_before: u32, timeout: Duration) -> Result<()> {
    lab.wait_for(&format!("node {i}'s unit restarted and active"), timeout, || {
        let restarts: u32 = lab.unit_property(i, UNIT, "NRestarts")?.parse()?;
        let active = lab.unit_property(i, UNIT, "ActiveState")? == "active";
        Ok((restarts > restarts_before && active).then_some(()))
    })
}

fn others(holder: usize) -> Vec<usize> {
    NODES.iter().copied().filter(|&i| i != holder).collect()
}

#[test]
fn units_start_once_synced_and_stopping_the_holder_hands_over_once() {
    let lab = systemd_lab("sda", 79, 1);
    let holder = start_everywhere(&lab);
    assert!(prop(&lab, holder, "StatusText").contains("holding 1 of 1: eip1"), "holder's systemctl status line: {}", prop(&lab, holder, "StatusText"));
    for i in others(holder) {
        assert!(prop(&lab, i, "StatusText").contains("holding 0 of 1"), "node {i}: {}", prop(&lab, i, "StatusText"));
    }
    // The unit's resource settings are in force on the running daemon, which works under them.
    let pid = lab.unit_main_pid_host(holder, UNIT).unwrap_or_else(|e| panic!("{e:#}")).expect("a main pid");
    // This machine's root lacks CAP_SYS_RESOURCE, so systemd cannot lower the kernel's score
    // here: the unit must start regardless, with the setting as written.
    assert_eq!(prop(&lab, holder, "OOMScoreAdjust"), "-500");
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    // LimitNOFILE=65536, or as much of it as the host's hard limit allows without
    // CAP_SYS_RESOURCE (this machine caps it at 20000; RHEL allows 524288).
    let own = fs::read_to_string("/proc/self/limits").unwrap();
    let hard = |text: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
        line.split_whitespace().nth(4).and_then(|w| w.parse().ok()).unwrap_or(0)
    };
    let soft: u64 = nofile.split_whitespace().nth(3).and_then(|w| w.parse().ok()).unwrap_or(0);
    assert_eq!(soft, hard(&own).min(65536), "{nofile}");
    assert_eq!(prop(&lab, holder, "MemoryMax"), (512u64 << 20).to_string());
    // What the bounds leave room for (this machine's cgroups do not account memory).
    let proc_status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| proc_status.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    println!("holder's daemon: {}, {}", field("VmRSS:"), field("Threads:"));

    let t = unix_now();
    lab.systemctl(holder, &["stop", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(prop(&lab, holder, "ActiveState"), "inactive");
    assert_eq!(prop(&lab, holder, "Result"), "success");
    assert_eq!(prop(&lab, holder, "ExecMainStatus"), "0");
    let rest = others(holder);
    let taker = lab.settled_holder(&rest, 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_ne!(taker, holder);
    // one move, by the new holder, and the address was never unassociated
    assert_eq!(moves_since(&lab, t), vec![(Some(taker), "AssociateAddress".to_string())]);

    // the journal carries the structured fields the README promises
    let journal = lab.journal(taker, UNIT, "json");
    let timeline = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["MESSAGE"].as_str().is_some_and(|m| m.contains("failover timeline")))
        .unwrap_or_else(|| panic!("no failover timeline in node {taker}'s journal:\n{journal}"));
    assert_eq!(timeline["RESOURCE"], "eip1", "{timeline}");
    let status = lab.daemon_status(taker).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(timeline["NODE"].as_str(), status.node_id.map(|n| n.to_string()).as_deref(), "{timeline}");
    assert_eq!(timeline["INSTANCE"].as_str(), status.instance_id.as_deref(), "{timeline}");
    assert!(timeline["ELAPSED_MS"].as_str().is_some_and(|v| v.parse::<u64>().is_ok()), "{timeline}");
    assert_eq!(timeline["_SYSTEMD_UNIT"], UNIT, "{timeline}");
    lab.assert_no_panics();
}

#[test]
fn a_killed_holder_is_restarted_within_the_grace_and_without_restart_a_peer_takes_over() {
    let lab = systemd_lab("sdb", 80, 1);
    let holder = start_everywhere(&lab);
    let pid = prop(&lab, holder, "MainPID");
    let restarts: u32 = prop(&lab, holder, "NRestarts").parse().unwrap_or_else(|e| panic!("{e}"));

    let t = unix_now();
    lab.systemctl(holder, &["kill", "--signal=KILL", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    wait_restarted(&lab, holder, restarts, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    eprintln!("crash: SIGKILL → restarted and active again in {:.2} s", unix_now() - t);
    assert_ne!(prop(&lab, holder, "MainPID"), pid);
    assert_eq!(lab.settled_holder(&NODES, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs())), holder);
    assert_eq!(moves_since(&lab, t), vec![], "a crash restart within the grace moved the address");

    // The same crash with restarts turned off by a drop-in: a peer takes over after the grace.
    let dropin = lab.node_etc(holder).join("systemd/system/corosync-eip.service.d");
    fs::create_dir_all(&dropin).unwrap_or_else(|e| panic!("{e}"));
    fs::write(dropin.join("50-no-restart.conf"), "[Service]\nRestart=no\n").unwrap_or_else(|e| panic!("{e}"));
    lab.systemctl(holder, &["daemon-reload"]).unwrap_or_else(|e| panic!("{e:#}"));
    let t = unix_now();
    lab.systemctl(holder, &["kill", "--signal=KILL", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    let rest = others(holder);
    let taker = lab.settled_holder(&rest, 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_ne!(taker, holder);
    assert_eq!(prop(&lab, holder, "ActiveState"), "failed");
    assert_eq!(moves_since(&lab, t), vec![(Some(taker), "AssociateAddress".to_string())]);
    lab.assert_no_panics();
}

#[test]
fn a_hung_holder_is_aborted_by_the_watchdog_and_restarted_without_a_move() {
    let lab = systemd_lab("sdc", 81, 1);
    let holder = start_everywhere(&lab);
    let restarts: u32 = prop(&lab, holder, "NRestarts").parse().unwrap_or_else(|e| panic!("{e}"));
    let watchdog = prop(&lab, holder, "WatchdogUSec");
    let pid = lab
        .unit_main_pid_host(holder, UNIT)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .unwrap_or_else(|| panic!("node {holder}'s unit has no main process"));

    let t = unix_now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap_or_else(|e| panic!("SIGSTOP: {e}"));
    wait_restarted(&lab, holder, restarts, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let restarted = unix_now() - t;
    assert_eq!(lab.settled_holder(&NODES, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs())), holder);
    eprintln!(
        "hang: SIGSTOP → watchdog ({watchdog}) abort → restarted and active in {restarted:.2} s; moves: {:?}",
        moves_since(&lab, t)
    );
    assert_eq!(moves_since(&lab, t), vec![], "the watchdog restart of a hung holder moved the address");
    let journal = lab.in_container(holder, &["journalctl", "--no-pager", "-u", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    let journal = String::from_utf8_lossy(&journal.stdout);
    assert!(journal.contains("Watchdog timeout"), "no watchdog timeout in node {holder}'s journal:\n{journal}");
}

#[test]
fn reload_applies_a_valid_file_in_place_and_refuses_an_invalid_one_visibly() {
    let lab = systemd_lab("sdd", 82, 2);
    let allocations = lab.allocation_ids();
    let one = format!(
        "[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"2s\"\nreattach_grace = \"5s\"\n\n[[eip]]\nname = \"eip1\"\nallocation_id = \"{}\"\n",
        allocations[0]
    );
    for i in NODES {
        lab.write_daemon_config(i, &one).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let holder = start_everywhere(&lab);
    let pids: Vec<String> = NODES.iter().map(|&i| prop(&lab, i, "MainPID")).collect();

    // A valid change: a second address, on every node. Same processes, nothing moves, and the
    // new address is held.
    let t = unix_now();
    let two = lab.default_daemon_config();
    for i in NODES {
        lab.write_daemon_config(i, &two).unwrap_or_else(|e| panic!("{e:#}"));
        lab.systemctl(i, &["reload", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let held = lab.settled_units(&NODES, 3, SETTLE);
    assert_eq!(held.get("eip1"), Some(&holder), "{held:?}");
    assert!(held.contains_key("eip2"), "{held:?}");
    let eip2 = lab.eip_holder(&allocations[1]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(eip2, held.get("eip2").copied(), "EC2 and the daemons disagree on eip2");
    for (k, &i) in NODES.iter().enumerate() {
        assert_eq!(prop(&lab, i, "MainPID"), pids[k], "node {i}: reload replaced the process");
    }
    let moved: Vec<_> = lab
        .mutating_calls_since(t)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .into_iter()
        .filter(|c| c.action == "DisassociateAddress")
        .collect();
    assert!(moved.is_empty(), "a reload disassociated an address: {moved:?}");
    assert_eq!(lab.eip_holder(&allocations[0]).unwrap_or_else(|e| panic!("{e:#}")), Some(holder));

    // An invalid file: `systemctl reload` fails, the daemon keeps running as it was, and the
    // refusal names the key in the journal and in `systemctl status`.
    let bad = two.replace("monitor_interval = \"2s\"", "monitor_interval = \"soon\"");
    lab.write_daemon_config(holder, &bad).unwrap_or_else(|e| panic!("{e:#}"));
    let refused = lab.in_container(holder, &["systemctl", "reload", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!refused.status.success(), "systemctl reload of an invalid file reported success");
    assert_eq!(prop(&lab, holder, "ActiveState"), "active");
    assert_eq!(prop(&lab, holder, "MainPID"), pids[holder]);
    let status = lab.in_container(holder, &["systemctl", "status", "--no-pager", "-l", "-n", "20", UNIT]).unwrap_or_else(|e| panic!("{e:#}"));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("monitor_interval"), "systemctl status does not show the refused key:\n{status}");
    let journal = lab.journal(holder, UNIT, "cat");
    assert!(journal.contains("monitor_interval"), "the journal does not name the refused key:\n{journal}");
    let st = lab.daemon_status(holder).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(st.synced, "{st:?}");
    assert_eq!(lab.eip_holder(&allocations[0]).unwrap_or_else(|e| panic!("{e:#}")), Some(holder));
    lab.assert_no_panics();
}

#[test]
fn restarting_corosync_on_a_non_holder_restarts_its_daemon_and_moves_nothing() {
    let lab = systemd_lab("sde", 83, 1);
    let holder = start_everywhere(&lab);
    let node = others(holder)[0];
    let pid = prop(&lab, node, "MainPID");
    let t = unix_now();
    // Requires=corosync.service: systemd stops the daemon before corosync and starts it again
    // after, as an admin's `systemctl restart corosync` expects.
    lab.systemctl(node, &["restart", "corosync.service"]).unwrap_or_else(|e| panic!("{e:#}"));
    lab.wait_for(&format!("node {node}'s daemon back after corosync's restart"), SETTLE, || {
        let active = lab.unit_property(node, UNIT, "ActiveState")? == "active";
        let new_pid = lab.unit_property(node, UNIT, "MainPID")?;
        Ok((active && new_pid != pid && new_pid != "0").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    lab.wait_quorate(&NODES, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(lab.settled_holder(&NODES, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs())), holder);
    assert_eq!(moves_since(&lab, t), vec![], "restarting corosync on a non-holder moved the address");
    lab.assert_no_panics();
}

/// The main package's `%posttrans` scriptlet, as rpm runs it after an upgrade.
fn posttrans_scriptlet() -> String {
    let spec = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rpm/corosync-eip.spec")).unwrap();
    let body: Vec<&str> = spec
        .lines()
        .skip_while(|l| l.trim() != "%posttrans")
        .skip(1)
        .take_while(|l| !l.starts_with('%'))
        .collect();
    body.join("\n")
}

fn sh(lab: &Lab, i: usize, script: &str) {
    let out = lab.in_container(i, &["sh", "-ec", script]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.status.success(),
        "node {i}: `{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A rolling package upgrade, node by node and the holder last, as an admin runs `dnf upgrade`:
/// the new binary is renamed over the old one (as rpm does), then the spec's own `%posttrans`
/// runs. The "new" binary is the same build in a new file, so what this proves is the mechanism:
/// status says the binary was replaced until the reload, the reload re-executes the new file in
/// the same process, and nothing moves.
#[test]
fn an_upgrade_reloads_the_new_binary_in_place_and_moves_nothing() {
    let lab = systemd_lab("sdf", 86, 2);
    let holder = start_everywhere(&lab);
    let script = posttrans_scriptlet();
    assert!(script.contains("systemctl reload corosync-eip.service"), "%posttrans: {script}");
    let t = unix_now();
    let mut order = others(holder);
    order.push(holder);
    for i in order {
        let pid = prop(&lab, i, "MainPID");
        assert!(!lab.daemon_status(i).unwrap_or_else(|e| panic!("{e:#}")).binary_replaced, "node {i} before the upgrade");
        sh(&lab, i, "install -m 0755 /usr/sbin/corosync-eip '/usr/sbin/corosync-eip;upgrade' && mv -f '/usr/sbin/corosync-eip;upgrade' /usr/sbin/corosync-eip");
        let st = lab
            .wait_for(&format!("node {i} reports its binary replaced"), SETTLE, || {
                let st = lab.daemon_status(i)?;
                Ok(st.binary_replaced.then_some(st))
            })
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(st.warnings.iter().any(|w| w.contains("systemctl reload corosync-eip")), "node {i}: {:?}", st.warnings);
        sh(&lab, i, &script);
        lab.wait_for(&format!("node {i} runs the new binary, synced"), SETTLE, || {
            let st = lab.daemon_status(i)?;
            Ok((!st.binary_replaced && st.synced && st.quorate).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
        assert_eq!(prop(&lab, i, "MainPID"), pid, "node {i}: the reload re-executed in place");
        assert_eq!(prop(&lab, i, "ActiveState"), "active");
        assert_eq!(prop(&lab, i, "NRestarts"), "0");
    }
    assert_eq!(lab.settled_holder(&NODES, 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}")), holder);
    assert!(moves_since(&lab, t).is_empty(), "the upgrade moved addresses: {:?}", moves_since(&lab, t));
    let journal = lab.journal(holder, UNIT, "cat");
    assert!(journal.contains("reloading: re-executing"), "{journal}");
    lab.assert_no_panics();
}
