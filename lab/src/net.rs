//! Network faults: partitions between nodes and a node cut off from the EC2 endpoint.

use std::process::Output;

use anyhow::{bail, Result};

use crate::Lab;

impl Lab {
    // -----------------------------------------------------------------------------------------
    // partitions

    /// Drops all traffic between node i and the other nodes (iptables in node i's netns); node i
    /// still reaches the emulator and its own IMDS.
    pub fn isolate(&self, i: usize) -> Result<()> {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&j| j != i).collect();
        self.block(i, &others)
    }

    /// Runs iptables in node i's netns; a failure is an error naming the rule.
    fn iptables(&self, i: usize, args: &[&str]) -> Result<Output> {
        let mut v = vec!["/usr/sbin/iptables", "-w"];
        v.extend_from_slice(args);
        let out = self.node_exec(i, &v)?;
        if !out.status.success() {
            bail!(
                "iptables {args:?} in node {i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// Drops traffic between node i and the given nodes (both directions, rules in node i).
    pub fn block(&self, i: usize, peers: &[usize]) -> Result<()> {
        let ipt = |args: &[&str]| self.iptables(i, args);
        for chain in ["LABIN", "LABOUT"] {
            if ipt(&["-n", "-L", chain]).is_err() {
                ipt(&["-N", chain])?;
                let hook = if chain == "LABIN" { "INPUT" } else { "OUTPUT" };
                ipt(&["-I", hook, "-j", chain])?;
            }
        }
        for &j in peers {
            let ip = self.nodes[j].ip.to_string();
            ipt(&["-A", "LABIN", "-s", &ip, "-j", "DROP"])?;
            ipt(&["-A", "LABOUT", "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Undoes `isolate`/`block` for node i.
    pub fn heal(&self, i: usize) -> Result<()> {
        for chain in ["LABIN", "LABOUT"] {
            let out = self.node_exec(i, &["/usr/sbin/iptables", "-w", "-F", chain])?;
            let _ = out; // chain may not exist: nothing to heal
        }
        Ok(())
    }

}

// ---------------------------------------------------------------------------------------------
// EC2 endpoint outage of one node

/// iptables chains (in a node's netns) that drop traffic to/from the emulator; separate from
/// `block`'s LABIN/LABOUT so `heal` leaves them alone.
const EC2_BLOCK_CHAINS: [(&str, &str, &str); 2] = [("LABEC2IN", "INPUT", "-s"), ("LABEC2OUT", "OUTPUT", "-d")];

impl Lab {
    /// Drops all traffic between node i and the EC2 emulator (both directions, DROP so the
    /// daemon's calls time out like an unreachable endpoint); corosync traffic between nodes and
    /// the node's IMDS (127.0.0.1) are untouched. Undo with `unblock_ec2`.
    pub fn block_ec2(&self, i: usize) -> Result<()> {
        let ipt = |args: &[&str]| self.iptables(i, args);
        let emu = self.emulator_ip().to_string();
        for (chain, hook, side) in EC2_BLOCK_CHAINS {
            if ipt(&["-n", "-L", chain]).is_err() {
                ipt(&["-N", chain])?;
                ipt(&["-I", hook, "-j", chain])?;
            }
            ipt(&["-F", chain])?;
            ipt(&["-A", chain, side, &emu, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Undoes `block_ec2` for node i (no-op if it was never blocked).
    pub fn unblock_ec2(&self, i: usize) -> Result<()> {
        for (chain, _, _) in EC2_BLOCK_CHAINS {
            let _ = self.node_exec(i, &["/usr/sbin/iptables", "-w", "-F", chain])?;
        }
        Ok(())
    }
}
