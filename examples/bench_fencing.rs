//! What `[fencing] stop_instance` adds to a hard failover, measured side by side in one run on
//! the namespace lab (3 nodes, real corosync, moto as EC2): trials alternate between fencing
//! off and on (switched by `systemctl reload`-style SIGHUP, which moves nothing), and each
//! trial loses the holder's node (corosync and daemon killed).
//!
//!   cargo run --example bench_fencing -- [--trials N]
//!
//! Per trial: the kill is time zero; the harness polls DescribeAddresses every 10 ms until EC2
//! shows the address on another node (`to EC2`), and reads the successor's failover timeline
//! (`detected → verified`, which leaves out corosync's detection, the same in both modes, and
//! `fenced`). Needs root and `scripts/setup.sh`. Lab `fen`, subnet 94.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use lab::timing::median;
use lab::{unix_now, Lab, LabSpec, Signal};

const SETTLE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

struct Trial {
    fencing: bool,
    to_ec2_ms: f64,
    verified_ms: f64,
    fenced_ms: Option<f64>,
}

fn config(lab: &Lab, fencing: bool) -> String {
    format!(
        "[cluster]\ngroup = \"corosync-eip\"\nmonitor_interval = \"2s\"\nreattach_grace = \"5s\"\n\n\
         [fencing]\nstop_instance = {fencing}\n\n\
         [[eip]]\nname = \"eip1\"\nallocation_id = \"{}\"\n",
        lab.allocation_ids()[0]
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let trials: usize = match args.iter().position(|a| a == "--trials") {
        Some(i) => args.get(i + 1).ok_or_else(|| anyhow!("--trials needs a number"))?.parse().context("--trials")?,
        None => 3,
    };
    let mut lab = Lab::start(LabSpec::new("fen", 94, 3))?;
    let alloc = lab.allocation_ids()[0].clone();
    for i in 0..3 {
        lab.write_daemon_config(i, &config(&lab, false))?;
        lab.start_daemon(i)?;
    }
    lab.settled_holder(&[0, 1, 2], 3, SETTLE)?;
    let mut results = Vec::new();
    let mut fencing = true;
    for _ in 0..trials * 2 {
        // Switch the mode on every node in place (re-exec keeps every address).
        for i in 0..3 {
            lab.write_daemon_config(i, &config(&lab, fencing))?;
            lab.signal_daemon(i, Signal::SIGHUP)?;
        }
        std::thread::sleep(Duration::from_secs(2));
        let holder = lab.settled_holder(&[0, 1, 2], 3, SETTLE)?;
        let t0 = unix_now();
        lab.kill_corosync(holder, Signal::SIGKILL);
        lab.kill_daemon(holder);
        let (successor, to_ec2_ms) = loop {
            if let Some(n) = lab.eip_holder(&alloc)?.filter(|n| *n != holder) {
                break (n, (unix_now() - t0) * 1000.0);
            }
            if unix_now() - t0 > SETTLE.as_secs_f64() {
                return Err(anyhow!("no failover within {SETTLE:?}\n{}", lab.logs()));
            }
            std::thread::sleep(POLL);
        };
        let timeline = lab
            .wait_for("the successor's failover timeline", SETTLE, || {
                let s = lab.daemon_status_json(successor)?;
                let t = s["resources"][0]["last_failover"].clone();
                Ok(t["verified_ms"].as_f64().is_some().then_some(t))
            })
            .map_err(|e| anyhow!("{e:#}\n{}", lab.logs()))?;
        let trial = Trial {
            fencing,
            to_ec2_ms,
            verified_ms: timeline["verified_ms"].as_f64().unwrap_or_default(),
            fenced_ms: timeline["fenced_ms"].as_f64(),
        };
        eprintln!(
            "fencing {}: kill → EC2 {:.0} ms, detected → verified {:.0} ms, fenced {:?}",
            if fencing { "on " } else { "off" },
            trial.to_ec2_ms,
            trial.verified_ms,
            trial.fenced_ms
        );
        results.push(trial);
        // Bring the lost node back (its instance started again if it was fenced).
        if lab.instance_state(holder)? != "running" {
            lab.start_instance(holder)?;
        }
        lab.start_corosync(holder)?;
        lab.start_daemon(holder)?;
        lab.settled_holder(&[0, 1, 2], 3, SETTLE)?;
        fencing = !fencing;
    }
    let med = |on: bool, f: &dyn Fn(&Trial) -> Option<f64>| {
        let mut v: Vec<f64> = results.iter().filter(|t| t.fencing == on).filter_map(f).collect();
        if v.is_empty() {
            "–".to_string()
        } else {
            format!("{:.0} ms", median(&mut v))
        }
    };
    println!("| fencing | trials | kill → EC2 shows the successor | detected → verified | of which: detected → fenced |");
    println!("|---|---|---|---|---|");
    for on in [false, true] {
        println!(
            "| {} | {} | {} | {} | {} |",
            if on { "on" } else { "off" },
            results.iter().filter(|t| t.fencing == on).count(),
            med(on, &|t| Some(t.to_ec2_ms)),
            med(on, &|t| Some(t.verified_ms)),
            med(on, &|t| t.fenced_ms),
        );
    }
    Ok(())
}
