//! The shipped corosync.conf samples (corosync-conf/) on real corosync in the lab: each is
//! instantiated with the lab's addresses and a fresh `corosync-keygen` key, checked by
//! `corosync -t` inside a node (corosync must find the node's own address in the nodelist),
//! run until quorate, and the daemon elects and verifies one holder on it.
//!
//! Needs root and `scripts/setup.sh`. Lab names and subnets are this file's own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Result};
use lab::{Ec2Proof, Lab, LabSpec, Settle, Signal, Units};

/// The samples' token is 30 s; membership forms on start-up without waiting for it, but
/// leave room for a slow machine.
const QUORUM_WAIT: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(60);

/// The private IPs the samples are written with, in node order.
const SAMPLE_NODE_IPS: [&str; 3] = ["10.0.1.10", "10.0.2.10", "10.0.3.10"];
const SAMPLE_QNETD_IP: &str = "10.0.3.20";

fn sample(name: &str) -> String {
    let p = lab::repo_root().join("corosync-conf").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The sample with the lab's addresses, and logging kept inside the node (the lab mounts its
/// own /var/log/corosync; the host's syslog is no place for test clusters).
fn instantiate(text: &str, lab: &Lab) -> String {
    let mut out = text.to_string();
    for (i, ip) in SAMPLE_NODE_IPS.iter().enumerate().take(lab.node_count()) {
        assert!(out.contains(&format!("ring0_addr: {ip}\n")), "sample has no node address {ip}");
        out = out.replace(&format!("ring0_addr: {ip}\n"), &format!("ring0_addr: {}\n", lab.node_ip(i)));
    }
    assert!(
        !SAMPLE_NODE_IPS.iter().any(|ip| out.contains(&format!("ring0_addr: {ip}\n"))),
        "sample has more nodes than the lab"
    );
    for (from, to) in [
        ("logfile: /var/log/cluster/corosync.log", "logfile: /var/log/corosync/corosync.log"),
        ("to_syslog: yes", "to_syslog: no"),
    ] {
        assert!(out.contains(from), "sample has no `{from}`");
        out = out.replace(from, to);
    }
    out
}

fn authkey(lab: &Lab) -> PathBuf {
    let key = lab.spec().work_dir.join("authkey");
    let _ = fs::remove_file(&key);
    let out = Command::new("corosync-keygen").arg("-k").arg(&key).output().expect("corosync-keygen runs");
    assert!(out.status.success(), "corosync-keygen: {}", String::from_utf8_lossy(&out.stderr));
    key
}

/// Stops corosync on every node, installs `conf` and the key, and has `corosync -t` check it
/// inside each node.
fn install(lab: &mut Lab, conf: &str, key: &Path) {
    for i in 0..lab.node_count() {
        lab.kill_corosync(i, Signal::SIGTERM);
    }
    for i in 0..lab.node_count() {
        let dir = lab.etc_corosync_dir(i);
        fs::write(dir.join("corosync.conf"), conf).unwrap();
        let dest = dir.join("authkey");
        fs::copy(key, &dest).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o400)).unwrap();
        let out = lab.node_exec(i, &["/usr/sbin/corosync", "-t"]).unwrap();
        assert!(
            out.status.success(),
            "corosync -t in node {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn start_corosync_everywhere(lab: &mut Lab) {
    for i in 0..lab.node_count() {
        lab.start_corosync(i).unwrap();
    }
}

fn cmap(lab: &Lab, i: usize, key: &str) -> String {
    let out = lab.node_exec(i, &["/usr/sbin/corosync-cmapctl", "-g", key]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit_once(" = ").map(|(_, v)| v.trim().to_string()).unwrap_or_else(|| panic!("cmap {key}: {text}"))
}

fn quorumtool(lab: &Lab, i: usize) -> String {
    let out = lab.node_exec(i, &["/usr/sbin/corosync-quorumtool", "-s"]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}:");
    text.lines().find(|l| l.trim_start().starts_with(&prefix)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim())
}

/// Every node: synced, quorate, all members, state "held" with one agreed holder (nodes that
/// disagree fail at once), which EC2 confirms on the holder's ENI.
fn settled_holder(lab: &Lab) -> usize {
    let n = lab.node_count();
    let all: Vec<usize> = (0..n).collect();
    let rules = Settle {
        nodes: &all,
        members: n,
        units: Units::First,
        ec2: Ec2Proof::Eni,
        disagreement_fails: true,
        timeout: SETTLE,
    };
    let held = lab.settle(&rules).unwrap_or_else(|e| {
        let logs: Vec<String> = (0..n).map(|i| format!("---- node {i}\n{}", lab.daemon_log(i))).collect();
        panic!("{e:#}\n{}", logs.join("\n"))
    });
    held.into_values().next().expect("one resource settled")
}

#[test]
fn three_node_sample_forms_an_encrypted_quorate_cluster_and_the_daemon_holds() -> Result<()> {
    let mut lab = Lab::start(LabSpec::new("ccf3", 61, 3))?;
    let raw = sample("corosync.conf.3node-aws");

    // Uninstantiated, no node finds its own address in the nodelist: `corosync -t` refuses it,
    // which is what makes the check below meaningful.
    fs::write(lab.etc_corosync_dir(0).join("corosync.conf.raw"), &raw)?;
    let out = lab.node_exec(0, &["/usr/sbin/corosync", "-t", "-c", "/etc/corosync/corosync.conf.raw"])?;
    assert!(!out.status.success(), "corosync -t accepted a nodelist without this node");

    let conf = instantiate(&raw, &lab);
    let key = authkey(&lab);
    install(&mut lab, &conf, &key);
    // The uidgid snippet must parse too (with a user that exists here).
    let snippet = fs::read_to_string(lab::repo_root().join("corosync-conf/uidgid.d/corosync-eip"))?
        .replace("uid: corosync-eip", "uid: nobody")
        .replace("gid: corosync-eip", "gid: nogroup");
    for i in 0..3 {
        let d = lab.etc_corosync_dir(i).join("uidgid.d");
        fs::create_dir_all(&d)?;
        fs::write(d.join("corosync-eip"), &snippet)?;
        let out = lab.node_exec(i, &["/usr/sbin/corosync", "-t"])?;
        assert!(out.status.success(), "corosync -t with uidgid.d: {}", String::from_utf8_lossy(&out.stderr));
    }
    start_corosync_everywhere(&mut lab);
    lab.wait_quorate(&[0, 1, 2], 3, QUORUM_WAIT)?;

    assert_eq!(cmap(&lab, 0, "totem.crypto_cipher"), "aes256");
    assert_eq!(cmap(&lab, 0, "totem.crypto_hash"), "sha256");
    // 30000 + 650 ms token_coefficient for the third node: the number the sample's comment gives.
    assert_eq!(cmap(&lab, 1, "runtime.config.totem.token"), "30650");
    assert_eq!(cmap(&lab, 1, "runtime.config.totem.consensus"), "36000");
    let q = quorumtool(&lab, 2);
    assert_eq!(field(&q, "Total votes"), Some("3"), "{q}");
    assert_eq!(field(&q, "Quorum"), Some("2"), "{q}");

    for i in 0..3 {
        lab.start_daemon(i)?;
    }
    let holder = settled_holder(&lab);
    eprintln!("3-node sample: node {holder} holds the address");
    Ok(())
}

struct Qnetd(Child);

impl Drop for Qnetd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

#[test]
fn two_node_qdevice_sample_gets_the_third_vote_from_qnetd_and_the_daemon_holds() -> Result<()> {
    let mut lab = Lab::start(LabSpec::new("ccf2", 62, 2))?;
    let raw = sample("corosync.conf.2node-qdevice-aws");
    assert!(!raw.lines().any(|l| l.trim_start().starts_with("two_node:")), "the qdevice sample must not use two_node");
    assert!(raw.contains(&format!("host: {SAMPLE_QNETD_IP}\n")));
    // The lab's qnetd runs without TLS certificates; everything else is the sample's.
    assert!(raw.contains("tls: on\n"));
    let conf = instantiate(&raw, &lab)
        .replace(&format!("host: {SAMPLE_QNETD_IP}\n"), &format!("host: {}\n", lab.emulator_ip()))
        .replace("tls: on\n", "tls: off\n");
    let key = authkey(&lab);
    install(&mut lab, &conf, &key);

    let qnetd_bin = Path::new("/usr/bin/corosync-qnetd");
    if !qnetd_bin.exists() || !Path::new("/usr/sbin/corosync-qdevice").exists() {
        eprintln!("corosync-qnetd/corosync-qdevice not installed: only `corosync -t` was checked");
        return Ok(());
    }
    let log = fs::File::create(lab.spec().work_dir.join("qnetd.log"))?;
    let _qnetd = Qnetd(
        Command::new("ip")
            .args(["netns", "exec", lab.emulator_netns()])
            .arg(qnetd_bin)
            .args(["-f", "-d", "-s", "off", "-l"])
            .arg(lab.emulator_ip().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    start_corosync_everywhere(&mut lab);
    // Two of the three expected votes are already a majority; qdevice needs corosync's IPC up.
    lab.wait_quorate(&[0, 1], 2, QUORUM_WAIT)?;
    let mut qdevices = Vec::new();
    for i in 0..2 {
        let out = lab.node_exec(i, &["/bin/mkdir", "-p", "/run/corosync-qdevice"])?;
        assert!(out.status.success());
        let log = fs::File::create(lab.spec().work_dir.join(format!("qdevice{i}.log")))?;
        let child = lab
            .node_command(i, &["/usr/sbin/corosync-qdevice", "-f", "-d"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        qdevices.push(Qnetd(child));
    }
    // Quorate with two nodes could be votequorum alone; the device's vote must be counted.
    lab.wait_for("qnetd's vote counted on both nodes", QUORUM_WAIT, || {
        Ok((0..2)
            .all(|i| {
                let q = quorumtool(&lab, i);
                field(&q, "Total votes") == Some("3") && field(&q, "Flags").is_some_and(|f| f.contains("Qdevice"))
            })
            .then_some(()))
    })
    .map_err(|e| anyhow!("{e:#}\n{}", quorumtool(&lab, 0)))?;

    for i in 0..2 {
        lab.start_daemon(i)?;
    }
    let holder = settled_holder(&lab);
    eprintln!("2-node + qdevice sample: node {holder} holds the address");
    // The daemons exit before qdevice and corosync (the lab's Drop), qdevice before qnetd.
    for i in 0..2 {
        lab.kill_daemon(i);
    }
    drop(qdevices);
    Ok(())
}
