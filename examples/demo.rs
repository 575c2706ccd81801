//! The README's first command: a local 3-node Corosync cluster (network + mount namespaces) with
//! moto as EC2, corosync-eip on every node; then the holder's node fails hard and the address
//! moves. Prints who holds the EIP before and after, and the failover timeline.
//!
//! Run as root after `scripts/setup.sh` (scripts/demo.sh does both).

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use lab::{Lab, LabSpec, Signal};

fn main() -> Result<()> {
    let nodes = 3;
    let mut spec = LabSpec::new("demo", 200, nodes);
    spec.daemon_bin = lab::repo_root().join("target/debug/corosync-eip");
    if !spec.daemon_bin.exists() {
        bail!("{} is missing: run `cargo build` first", spec.daemon_bin.display());
    }
    println!("== starting a {nodes}-node corosync cluster and the EC2 emulator (moto)");
    let mut lab = Lab::start(spec)?;
    let alloc = lab.allocation_ids()[0].clone();
    println!("   Elastic IP {} ({})", alloc, lab.seed_info().allocations[0].public_ip);
    for i in 0..nodes {
        println!("   node {} = {} / {} / {}", lab.node_id(i), lab.node_ip(i), lab.instance_id(i), lab.eni(i));
        lab.start_daemon(i)?;
    }
    let holder = wait_holder(&lab, &alloc, None)?;
    println!("\n== corosync-eip status on node {} (every node agrees):", lab.node_id(holder));
    print_status(&lab, holder)?;

    println!("\n== kill -9 corosync on node {} (the holder): a hard node failure", lab.node_id(holder));
    let t0 = Instant::now();
    lab.kill_corosync(holder, Signal::SIGKILL);
    let new = wait_holder(&lab, &alloc, Some(holder))?;
    println!(
        "   EC2 now shows {} on node {} ({}) — {:.2}s after the kill, including corosync's failure detection",
        alloc,
        lab.node_id(new),
        lab.instance_id(new),
        t0.elapsed().as_secs_f64()
    );
    let log = lab.daemon_log(new);
    if let Some(line) = log.lines().rev().find(|l| l.contains("failover timeline")) {
        println!("   timeline on the new holder: {}", line.trim());
    }
    println!("\n== corosync-eip status on node {}:", lab.node_id(new));
    print_status(&lab, new)?;
    Ok(())
}

/// Waits until EC2 shows the address on a node other than `not` and that node's status says held.
fn wait_holder(lab: &Lab, alloc: &str, not: Option<usize>) -> Result<usize> {
    lab.wait_for("the EIP to be held and verified", Duration::from_secs(60), || {
        let Some(node) = lab.eip_holder(alloc)? else { return Ok(None) };
        if Some(node) == not {
            return Ok(None);
        }
        let status = lab.daemon_status(node)?;
        let state = status["resources"][0]["state"].as_str().unwrap_or_default().to_owned();
        Ok((state == "held").then_some(node))
    })
    .with_context(|| anyhow!("daemon log of node 1:\n{}", lab.daemon_log(0)))
}

fn print_status(lab: &Lab, node: usize) -> Result<()> {
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let out = lab.node_exec(node, &[&bin, "status"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
