//! Moving before AWS takes the node away (`[aws_events]`), on the lab: each node's IMDS
//! responder serves the event documents EC2 serves, and the assertions are on EC2's request
//! log, every node's status and the notify hooks.

use std::collections::BTreeMap;
use std::time::Duration;

use lab::{unix_now, Lab, LabSpec};

const SETTLE: Duration = Duration::from_secs(40);

fn hook_events(lab: &Lab, node: usize) -> Vec<BTreeMap<String, String>> {
    lab.hook_log(node, "/run/hook.log").unwrap()
}

/// IMDS's time format for scheduled events, e.g. `21 Jan 2019 09:00:43 GMT`.
fn imds_time(unix: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// AssociateAddress and DisassociateAddress calls since `t`, as (node, action): the moves
/// (the ownership record's CreateTags goes with each move).
fn moves_since(lab: &Lab, t: f64) -> Vec<(Option<usize>, String)> {
    lab.mutating_calls_since(t)
        .unwrap()
        .into_iter()
        .filter(|c| c.action == "AssociateAddress" || c.action == "DisassociateAddress")
        .map(|c| (c.node, c.action))
        .collect()
}

#[test]
fn a_scheduled_event_drains_the_holder_by_a_planned_move_and_its_withdrawal_moves_nothing_back() {
    let mut lab = Lab::start(LabSpec::new("evt", 87, 3)).expect("lab starts");
    let config = format!(
        "{}\n[aws_events]\nenabled = true\npoll_interval = \"1s\"\ndrain_before = \"10m\"\n\n[[notify]]\nname = \"record\"\ncommand = \"env | grep ^COROSYNC_EIP_ | sort >> /run/hook.log; echo --- >> /run/hook.log\"\ntimeout = \"5s\"\nevents = [\"acquire\", \"release\", \"drain\", \"undrain\"]\n",
        lab.default_daemon_config()
    );
    lab.start_daemons_with(&config).unwrap();
    let holder = lab.settled_holder(&[0, 1, 2], 3, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let other = (holder + 1) % 3;

    // A malformed notice is logged, shown, and ignored: nothing drains, nothing moves.
    let t0 = unix_now();
    lab.set_imds_event(other, "spot.json", Some("{\"action\": \"terminate\", \"time\": \"soon\"}")).unwrap();
    let s = lab
        .wait_for("the malformed notice shows in status", SETTLE, || {
            let s = lab.daemon_status(other)?;
            Ok(s.warnings.iter().any(|w| w.contains("spot/instance-action") && w.contains("soon")).then_some(s))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert!(s.aws_event.is_none() && !s.standby, "{s:?}");
    lab.set_imds_event(other, "spot.json", None).unwrap();
    assert!(moves_since(&lab, t0).is_empty(), "{:?}", moves_since(&lab, t0));

    // A reboot scheduled in five minutes: within drain_before, so the holder drains now and
    // the address leaves it by a planned move.
    let now = unix_now() as u64;
    let scheduled = format!(
        r#"[{{"NotBefore":"{}","Code":"system-reboot","Description":"scheduled reboot","EventId":"instance-event-0lab","NotAfter":"{}","State":"active"}}]"#,
        imds_time(now + 300),
        imds_time(now + 900)
    );
    let t1 = unix_now();
    lab.set_imds_event(holder, "scheduled.json", Some(&scheduled)).unwrap();
    let s = lab
        .wait_for("the holder drains for the event", SETTLE, || {
            let s = lab.daemon_status(holder)?;
            Ok((s.aws_event.is_some() && s.standby).then_some(s))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let event = s.aws_event.unwrap();
    assert_eq!((event.kind.as_str(), event.id.as_str()), ("system-reboot", "instance-event-0lab"));
    assert_eq!(event.not_before, now + 300);
    assert_eq!(event.drained_until, now + 900);
    let taker = lab
        .wait_for("a survivor holds the address, verified", SETTLE, || {
            let h = lab.settled_holder(&[0, 1, 2], 3, SETTLE)?;
            Ok((h != holder).then_some(h))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    // A planned move: one AssociateAddress by the taker, never unassociated, nothing from the
    // drained node.
    assert_eq!(moves_since(&lab, t1), vec![(Some(taker), "AssociateAddress".to_string())]);
    // Hooks run in the background, one at a time in event order: the drain, then the release
    // of the address it moved away.
    let drained = lab
        .wait_for("the drain and release hooks ran on the drained node", SETTLE, || {
            let events = hook_events(&lab, holder);
            let names: Vec<&str> = events.iter().map(|e| e["COROSYNC_EIP_EVENT"].as_str()).collect();
            Ok(names.ends_with(&["drain", "release"]).then_some(events))
        })
        .unwrap_or_else(|e| panic!("{e:#}: {:?}", hook_events(&lab, holder)));
    let drain = drained.iter().find(|e| e["COROSYNC_EIP_EVENT"] == "drain").unwrap_or_else(|| panic!("{drained:?}"));
    assert!(drain["COROSYNC_EIP_DETAIL"].contains("system-reboot instance-event-0lab"), "{drain:?}");

    // EC2 withdraws the event: the node serves again, and nothing moves back.
    let t2 = unix_now();
    lab.set_imds_event(holder, "scheduled.json", Some("[]")).unwrap();
    lab.wait_for("the node serves again", SETTLE, || {
        let s = lab.daemon_status(holder)?;
        Ok((s.aws_event.is_none() && !s.standby && s.eligible).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    lab.wait_for("the undrain hook ran", SETTLE, || {
        Ok(hook_events(&lab, holder).iter().any(|e| e["COROSYNC_EIP_EVENT"] == "undrain").then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", hook_events(&lab, holder)));
    std::thread::sleep(Duration::from_secs(3)); // several polls and monitor rounds
    assert_eq!(lab.settled_holder(&[0, 1, 2], 3, SETTLE).unwrap(), taker, "nothing moves back");
    let since = lab.mutating_calls_since(t2).unwrap();
    assert!(since.is_empty(), "nothing written after the withdrawal: {since:?}");
    // The drain was never written as the admin's standby: a restart comes back serving.
    assert!(!lab.state_dir(holder).join("standby").exists());
    let _ = &mut lab;
    lab.assert_no_panics();
}
