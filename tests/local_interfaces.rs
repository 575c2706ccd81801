//! The local listeners cannot be turned against the holder: a local user flooding the metrics
//! port of a node with few file descriptors must not starve the EC2 calls of its failover, nor
//! the control socket. Asserted on EC2 and on `status`.
//!
//! Lab name/subnet: `lim`/91.

use std::process::Stdio;
use std::time::Duration;

use lab::{Lab, LabSpec};

const SETTLE: Duration = Duration::from_secs(40);

/// Keeps `count` connections to the metrics port open, never sending a byte, opening new ones
/// as the daemon closes them, for `seconds`.
const FLOOD: &str = r#"
import socket, sys, time
count, seconds = int(sys.argv[1]), float(sys.argv[2])
held, opened, end = [], 0, time.time() + seconds
while time.time() < end:
    alive = []
    for s in held:
        try:
            s.setblocking(False)
            if s.recv(1) == b"":
                s.close()
                continue
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        alive.append(s)
    held = alive
    while len(held) < count:
        try:
            held.append(socket.create_connection(("127.0.0.1", 9464), timeout=1))
            opened += 1
        except OSError:
            break
    time.sleep(0.05)
print(opened)
"#;

#[test]
fn a_flood_on_the_metrics_port_starves_neither_a_failover_nor_the_control_socket() {
    let mut lab = Lab::start(LabSpec::new("lim", 91, 2)).expect("lab starts");
    let config = format!("{}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n", lab.default_daemon_config());
    lab.start_daemons_with(&config).unwrap();
    let holder = lab.settled_holder(&[0, 1], 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    let target = 1 - holder;
    // The node that is to take over gets few descriptors, as a daemon does under a low
    // LimitNOFILE or after a descriptor leak elsewhere.
    let pid = lab.daemon_pid(target).unwrap().to_string();
    let out = std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile=96:96"]).output().unwrap();
    assert!(out.status.success(), "prlimit: {}", String::from_utf8_lossy(&out.stderr));

    let python = lab::venv_python();
    let flood = lab
        .node_command(target, &[python.to_str().unwrap(), "-c", FLOOD, "300", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2)); // the flood is at its peak

    // The control socket still answers on the flooded node.
    let s = lab.daemon_status(target).unwrap_or_else(|e| panic!("status during the flood: {e:#}\n{}", lab.logs()));
    assert!(s.synced, "{s:?}");
    // And the flooded node can still take the address: its EC2 calls get descriptors.
    let t0 = lab::unix_now();
    let out = lab.cli(holder, &["move", "eip1", "--to", &lab.node_id(target).to_string()]);
    assert!(out.status.success(), "move during the flood: {}\n{}", String::from_utf8_lossy(&out.stderr), lab.logs());
    let now = lab.settled_holder(&[0, 1], 2, SETTLE).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.logs()));
    assert_eq!(now, target);
    let calls = lab.mutating_calls_since(t0).unwrap();
    assert!(calls.iter().any(|c| c.node == Some(target) && c.action == "AssociateAddress"), "{calls:?}");
    let opened: u64 = String::from_utf8_lossy(&flood.wait_with_output().unwrap().stdout).trim().parse().unwrap_or(0);
    assert!(opened > 96, "the flood opened more connections than the daemon has descriptors ({opened})");
    let log = lab.daemon_log(target);
    assert!(log.contains("too many connections at once"), "the refusal is logged");
    // The cap kept the daemon inside its descriptors: no call of its own ever met EMFILE.
    assert!(!log.contains("Too many open files"), "the daemon ran out of descriptors:\n{log}");
    let _ = &mut lab;
    lab.assert_no_panics();
}
