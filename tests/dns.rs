//! Route 53 records on the lab cluster: the record follows its group's holder (one UPSERT,
//! followed until INSYNC, read back), drift is repaired once, throttled monitor reads move
//! nothing, a planned move and a node loss each rewrite the record once, and an unknown zone
//! stops a node at start naming the key. Assertions read Route 53 (the emulator), the request
//! log and each node's `status --json`.
//! Needs root and scripts/setup.sh. Run: cargo test --test dns -- --nocapture

use std::time::{Duration, Instant};

use lab::{Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(60);
const RECORD: &str = "db.lab.internal.";

/// Waits until Route 53 lists the record with node `i`'s private IP alone, TTL 10. Reads at
/// most twice a second: the test shares the account's 5 requests/s with the daemons.
fn wait_record_on(lab: &Lab, i: usize, what: &str) {
    wait_record_with(lab, i, 10, what);
}

/// As `wait_record_on`, with TTL `ttl`.
fn wait_record_with(lab: &Lab, i: usize, ttl: i64, what: &str) {
    let want = (vec![lab.private_ip(i).to_string()], Some(ttl));
    let deadline = Instant::now() + SETTLE;
    let mut last = None;
    while Instant::now() < deadline {
        last = lab.dns_record(RECORD, "A").ok().flatten();
        if last.as_ref() == Some(&want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what}: Route 53 still lists {last:?}, not {want:?}\n{}", lab.logs());
}

/// Route 53 calls the nodes made since `since`: (node, action, HTTP status).
fn route53_calls(lab: &Lab, since: f64) -> Vec<(Option<usize>, String, Option<u16>)> {
    lab.ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.t >= since && r.param("Path").is_some())
        .map(|r| (lab.node_by_ip(&r.source), r.action, r.status))
        .filter(|(node, _, _)| node.is_some())
        .collect()
}

/// The UPSERTs Route 53 accepted (a throttled attempt changed nothing and is retried).
fn upserts(calls: &[(Option<usize>, String, Option<u16>)]) -> Vec<(Option<usize>, Option<u16>)> {
    calls
        .iter()
        .filter(|(_, a, s)| a == "ChangeResourceRecordSets" && *s != Some(400))
        .map(|(n, _, s)| (*n, *s))
        .collect()
}

#[test]
fn a_record_follows_its_group_and_failed_reads_never_move_it() {
    let mut lab = Lab::start(LabSpec::new("dns", 73, 3)).expect("lab starts");

    // ---- a zone Route 53 does not have stops a node at start, naming the key
    let bad = format!("{}{}", lab.default_daemon_config(), lab.dns_config("www", RECORD, "private"))
        .replace(&lab.seed_info().hosted_zone_id, "Z0000000000000NOPE");
    lab.write_daemon_config(0, &bad).unwrap();
    lab.start_daemon(0).unwrap();
    assert_eq!(lab.wait_daemon_exit(0, SETTLE).unwrap(), Some(64), "{}", lab.daemon_log(0));
    assert!(lab.daemon_log(0).contains("dns[0].hosted_zone_id"), "{}", lab.daemon_log(0));
    let out = lab.cli(0, &["check", "--config", "/etc/corosync-eip/corosync-eip.toml"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && report.contains("hosted zone not found"), "{report}");
    assert_eq!(lab.dns_record(RECORD, "A").unwrap(), None, "nothing was written");

    // ---- start: the record points at the group's holder, after INSYNC
    let t0 = lab::unix_now();
    let config = format!(
        "{}group = \"svc\"\n{}group = \"svc\"\ndelete_on_release = true\n",
        lab.default_daemon_config(),
        lab.dns_config("www", RECORD, "private")
    );
    for i in 0..3 {
        lab.write_daemon_config(i, &config).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let held = lab.settled_units(&[0, 1, 2], 3, SETTLE);
    let holder = held["www"];
    assert_eq!(held["eip1"], holder, "a group has one holder");
    wait_record_on(&lab, holder, "record on the holder");
    let calls = route53_calls(&lab, t0);
    assert_eq!(upserts(&calls), vec![(Some(holder), Some(200))], "one UPSERT: {calls:?}");
    let follows = calls.iter().filter(|(n, a, _)| *n == Some(holder) && a == "GetChange").count();
    assert!(follows >= 2, "the holder waited for INSYNC past PENDING: {calls:?}");
    let www = Lab::resource_of(&lab.daemon_status(holder).unwrap(), "www");
    assert_eq!(www.kind, "dns");
    let record = www.record.expect("record in status");
    assert_eq!((record.name.as_str(), record.record_type.as_str(), record.ttl), (RECORD, "A", 10));
    assert_eq!(record.values, Some(vec![lab.private_ip(holder).to_string()]));
    let check = lab.cli((holder + 1) % 3, &["check", "--config", "/etc/corosync-eip/corosync-eip.toml"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("permission route53:ChangeResourceRecordSets") && report.contains("cannot be proven"), "{report}");
    assert!(report.contains("permission route53:ListResourceRecordSets"), "{report}");

    // ---- drift: someone else rewrites the record; the holder puts it back once
    let t = lab::unix_now();
    lab.set_dns_record(RECORD, "10.0.1.99", 10).unwrap();
    wait_record_on(&lab, holder, "drift repaired");
    std::thread::sleep(Duration::from_secs(5));
    let calls = route53_calls(&lab, t);
    assert_eq!(upserts(&calls), vec![(Some(holder), Some(200))], "one repair: {calls:?}");

    // ---- throttled reads: the monitor cannot read for several intervals, nothing moves
    let t = lab::unix_now();
    let flood = lab
        .route53_script(&format!(
            "import time, threading\nfrom botocore.config import Config\n\
             c = boto3.client('route53', endpoint_url=r53.meta.endpoint_url, region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing', config=Config(retries={{'max_attempts': 1}}))\n\
             end = time.time() + 7\nn = [0]\n\
             def flood():\n    while time.time() < end:\n        \
             try:\n            c.get_hosted_zone(Id='{}')\n        except Exception:\n            pass\n        n[0] += 1\n\
             ts = [threading.Thread(target=flood) for _ in range(12)]\n\
             [t.start() for t in ts]\n[t.join() for t in ts]\n\
             print(json.dumps(n[0]))",
            lab.seed_info().hosted_zone_id
        ))
        .unwrap();
    let calls = route53_calls(&lab, t);
    let throttled = calls.iter().filter(|(_, _, s)| *s == Some(400)).count();
    assert!(throttled >= 1, "the holder's reads met Throttling ({flood} flood requests): {calls:?}");
    let writes: Vec<_> = calls.iter().filter(|(_, a, _)| a == "ChangeResourceRecordSets").collect();
    assert!(writes.is_empty(), "a failed read never writes, not even an attempt: {calls:?}");
    assert_eq!(lab.settled_units(&[0, 1, 2], 3, SETTLE)["www"], holder, "and never moves");
    wait_record_on(&lab, holder, "record unchanged");

    // ---- reload of the holder: the new process reads its value again when it re-verifies,
    // and writes nothing
    let t = lab::unix_now();
    lab.signal_daemon(holder, Signal::SIGHUP).unwrap();
    lab.wait_for("re-exec logged", SETTLE, || Ok(lab.daemon_log(holder).contains("reloading").then_some(())))
        .unwrap();
    assert_eq!(lab.settled_units(&[0, 1, 2], 3, SETTLE)["www"], holder);
    std::thread::sleep(Duration::from_secs(5)); // two monitor rounds of the new process
    let writes: Vec<_> = route53_calls(&lab, t).into_iter().filter(|(_, a, _)| a == "ChangeResourceRecordSets").collect();
    assert!(writes.is_empty(), "a reload writes no record: {writes:?}");
    wait_record_on(&lab, holder, "record unchanged after the reload");

    // ---- planned move: one UPSERT by the new holder
    let to = (holder + 1) % 3;
    let t = lab::unix_now();
    let started = Instant::now();
    let out = lab.cli((holder + 2) % 3, &["move", "svc", "--to", &lab.node_id(to).to_string()]);
    let took = started.elapsed();
    assert!(out.status.success(), "move failed: {}", String::from_utf8_lossy(&out.stderr));
    wait_record_on(&lab, to, "record on the move's target");
    assert_eq!(upserts(&route53_calls(&lab, t)), vec![(Some(to), Some(200))]);
    eprintln!("planned move of a Route 53 record: {took:.2?} for the command (UPSERT and INSYNC included)");
    let holder = to;

    // ---- hard failure: one UPSERT by the survivor that takes the group
    let t = lab::unix_now();
    lab.kill_corosync(holder, Signal::SIGKILL);
    let rest: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    let after = lab.settled_units(&rest, 2, SETTLE);
    let survivor = after["www"];
    assert_ne!(survivor, holder);
    assert_eq!(after["eip1"], survivor, "the group moved as one");
    wait_record_on(&lab, survivor, "record on the survivor");
    let calls = route53_calls(&lab, t);
    assert_eq!(upserts(&calls), vec![(Some(survivor), Some(200))], "one move");
    // Outside two_node the survivor outbids the epoch the lost holder announced: no read of
    // the record before its UPSERT (INSYNC and the read-back after it prove the move).
    let before = lab.actions_before(survivor, t, "ChangeResourceRecordSets").unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!before.iter().any(|a| a == "ListResourceRecordSets"), "the survivor read before the move: {before:?}");
    let timeline = Lab::resource_of(&lab.daemon_status(survivor).unwrap(), "www").last_failover.expect("a failover timeline");
    eprintln!(
        "failover of a Route 53 record: elected +{}ms, UPSERT sent {:?}ms, INSYNC and verified +{}ms",
        timeline.elected_ms, timeline.associate_sent_ms, timeline.verified_ms
    );

    // ---- planned stops with delete_on_release: the record moves while a member can take it,
    // and is deleted only when the last one stops
    let other = rest.iter().copied().find(|i| *i != survivor).expect("a second survivor");
    let t = lab::unix_now();
    lab.signal_daemon(survivor, Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(survivor, SETTLE).unwrap(), Some(0));
    wait_record_on(&lab, other, "record on the last member after a planned stop");
    let calls = route53_calls(&lab, t);
    assert_eq!(upserts(&calls), vec![(Some(other), Some(200))], "moved, not deleted, while a member could take it");
    let t = lab::unix_now();
    lab.signal_daemon(other, Signal::SIGTERM).unwrap();
    assert_eq!(lab.wait_daemon_exit(other, SETTLE).unwrap(), Some(0));
    assert_eq!(lab.dns_record(RECORD, "A").unwrap(), None, "the last member deleted the record\n{}", lab.logs());
    let deletes: Vec<_> = lab
        .ec2_requests()
        .unwrap()
        .into_iter()
        .filter(|r| r.t >= t && r.action == "ChangeResourceRecordSets" && r.param("Body").is_some_and(|b| b.contains("DELETE")))
        .map(|r| (lab.node_by_ip(&r.source), r.status))
        .collect();
    assert_eq!(deletes, vec![(Some(other), Some(200))], "one DELETE, by the last holder");
    lab.assert_no_panics();
}

/// A record's TTL rolled out node by node, as configuration management does it. While the
/// files differ every node reports the conflict, naming the key, and nobody moves the record;
/// the new TTL is written once, in place, by the holder; nothing moves.
#[test]
fn a_record_ttl_rolled_out_node_by_node_is_rewritten_once_in_place_and_never_fought_over() {
    let mut lab = Lab::start(LabSpec::new("dnsro", 96, 3)).expect("lab starts");
    let config = |ttl: u32| {
        let record = lab.dns_config("www", RECORD, "private").replace("ttl = 10", &format!("ttl = {ttl}"));
        format!("{}{record}", lab.default_daemon_config())
    };
    let (old, new) = (config(10), config(60));
    for i in 0..3 {
        lab.write_daemon_config(i, &old).unwrap();
        lab.start_daemon(i).unwrap();
    }
    let holder = lab.settled_units(&[0, 1, 2], 3, SETTLE)["www"];
    wait_record_on(&lab, holder, "record on the holder");
    let t = lab::unix_now();
    let others: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    fn reload(lab: &mut Lab, i: usize, config: &str) {
        lab.write_daemon_config(i, config).unwrap();
        lab.signal_daemon(i, Signal::SIGHUP).unwrap();
    }
    fn conflicts_everywhere(lab: &Lab, what: &str, present: bool) {
        lab.wait_for(what, SETTLE, || {
            for i in 0..3 {
                let s = lab.daemon_status(i)?;
                let conflict = s.conflicts.iter().find(|c| c.unit == "www");
                if !s.synced || conflict.is_some() != present || conflict.is_some_and(|c| c.keys != vec!["www.ttl".to_string()]) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    }

    // A non-holder first: the conflict is reported everywhere, naming the key; nothing changes.
    reload(&mut lab, others[0], &new);
    conflicts_everywhere(&lab, "every node reports the TTL conflict", true);
    std::thread::sleep(Duration::from_secs(4)); // two monitor intervals
    assert!(upserts(&route53_calls(&lab, t)).is_empty(), "nobody rewrote the record while only a non-holder changed");
    assert_eq!(lab.dns_record(RECORD, "A").unwrap(), Some((vec![lab.private_ip(holder).to_string()], Some(10))));

    // Then the holder and the last node: the files agree again, the record gets the new TTL.
    reload(&mut lab, holder, &new);
    reload(&mut lab, others[1], &new);
    conflicts_everywhere(&lab, "the conflict clears on every node", false);
    wait_record_with(&lab, holder, 60, "the record carries the new TTL, on the same node");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(upserts(&route53_calls(&lab, t)), vec![(Some(holder), Some(200))], "one rewrite, by the holder");
    for i in 0..3 {
        let s = lab.daemon_status(i).unwrap();
        let www = s.resources.iter().find(|r| r.name == "www").expect("www in status");
        assert_eq!(www.holder.as_ref().map(|h| h.node_id), Some(lab.node_id(holder)), "node {i}: the holder stayed");
    }
    lab.assert_no_panics();
}
