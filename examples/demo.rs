//! The README's first command: a local 3-node Corosync cluster (network + mount namespaces) with
//! moto as EC2, corosync-eip on every node; then the holder's node fails hard and the address
//! moves. Prints who holds the EIP before and after, and the failover timeline.
//!
//! Run as root after `scripts/setup.sh` (scripts/demo.sh does both).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use lab::{Lab, LabSpec, Signal};

/// How long the demo waits for a holder, failure detection included.
const SETTLE: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    let nodes = 3;
    // the daemon of this build (beside the example in the target dir)
    let spec = LabSpec::new("demo", 200, nodes);
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
    let all: Vec<usize> = (0..nodes).collect();
    let holder = settled(&lab, &all)?;
    println!("\n== corosync-eip status on node {} (every node agrees):", lab.node_id(holder));
    print_status(&lab, holder)?;

    println!("\n== kill -9 corosync on node {} (the holder): a hard node failure", lab.node_id(holder));
    let t0 = Instant::now();
    lab.kill_corosync(holder, Signal::SIGKILL);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != holder).collect();
    let new = settled(&lab, &survivors)?;
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

/// The holder every node of `nodes` agrees on and EC2 confirms (see `Lab::settled_holder`).
fn settled(lab: &Lab, nodes: &[usize]) -> Result<usize> {
    lab.settled_holder(nodes, nodes.len(), SETTLE).with_context(|| anyhow!("{}", lab.logs()))
}

fn print_status(lab: &Lab, node: usize) -> Result<()> {
    let bin = lab.spec().daemon_bin.to_string_lossy().into_owned();
    let out = lab.node_exec(node, &[&bin, "status"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}
