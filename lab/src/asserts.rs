//! The waits and checks the multi-node scenarios share, so that "settled" and "who wrote to
//! EC2" mean the same thing in every test.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use corosync_eip::status::ResourceStatus;

use crate::Lab;

/// Which resources of a node's status a settle check looks at.
#[derive(Clone, Copy, Debug)]
pub enum Units<'a> {
    /// The first resource (the scenarios with one EIP).
    First,
    /// These resources by name, each required.
    Named(&'a [&'a str]),
    /// Whatever resources the status lists.
    All,
}

/// How EC2 must confirm a settled holder.
#[derive(Clone, Copy, Debug)]
pub enum Ec2Proof {
    /// Not at all (e.g. VIPs, whose routes are checked separately).
    Nothing,
    /// DescribeAddresses shows the address on the holder's ENI.
    Eni,
    /// DescribeAddresses shows the address on the holder's instance and ENI.
    InstanceAndEni,
}

/// What "settled" means for one wait; see `Lab::settle`.
#[derive(Clone, Copy, Debug)]
pub struct Settle<'a> {
    pub nodes: &'a [usize],
    pub members: usize,
    pub units: Units<'a>,
    pub ec2: Ec2Proof,
    /// Nodes naming different holders fail the wait at once (true) or are waited out.
    pub disagreement_fails: bool,
    pub timeout: Duration,
}

/// One mutating EC2 request of the emulator's log.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Arrival, unix seconds.
    pub t: f64,
    /// The node it came from (None: not from a node, e.g. the test harness).
    pub node: Option<usize>,
    pub action: String,
    /// HTTP status of the answer.
    pub status: Option<u16>,
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Lab {
    /// The last 60 lines of every node's daemon log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.node_count())
            .map(|i| format!("---- node {i} daemon log ----\n{}", tail(&self.daemon_log(i), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// No daemon log contains a panic.
    pub fn assert_no_panics(&self) {
        for i in 0..self.node_count() {
            let log = self.daemon_log(i);
            assert!(!log.contains("panicked"), "daemon on node {i} panicked:\n{}", tail(&log, 80));
        }
    }

    /// Waits (≤ `timeout`) until every resource is held with the same holder on all of
    /// `nodes`, as their `status --json` says (EC2 not consulted: the caller asserts what EC2
    /// shows for its kind). Panics with every node's log tail when it does not happen.
    pub fn settled_units(&self, nodes: &[usize], members: usize, timeout: Duration) -> BTreeMap<String, usize> {
        let rules = Settle {
            nodes,
            members,
            units: Units::All,
            ec2: Ec2Proof::Nothing,
            disagreement_fails: false,
            timeout,
        };
        self.settle(&rules).unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()))
    }

    /// Resource `name` in a node's status (panics when the status has no such resource).
    pub fn resource_of(status: &crate::StatusReport, name: &str) -> ResourceStatus {
        status.resources.iter().find(|r| r.name == name).cloned().unwrap_or_else(|| panic!("no {name} in status"))
    }

    /// Runs the daemon's command line (`corosync-eip ARGS`) inside node i, as an admin would.
    pub fn cli(&self, i: usize, args: &[&str]) -> std::process::Output {
        let bin = self.daemon_command_path();
        let mut argv = vec![bin.as_str()];
        argv.extend_from_slice(args);
        self.node_exec(i, &argv).unwrap_or_else(|e| panic!("corosync-eip {args:?} in node {i}: {e:#}"))
    }

    /// The verified holder of the first resource: `settle` with `Units::First`, EC2 showing
    /// the lab's first EIP on the holder's instance and ENI, and nodes that disagree an error
    /// at once. Returns the holder's index.
    pub fn settled_holder(&self, nodes: &[usize], members: usize, timeout: Duration) -> Result<usize> {
        let held = self.settle(&Settle {
            nodes,
            members,
            units: Units::First,
            ec2: Ec2Proof::InstanceAndEni,
            disagreement_fails: true,
            timeout,
        })?;
        held.into_values().next().ok_or_else(|| anyhow!("no resource settled"))
    }

    /// Waits (≤ `rules.timeout`) until every node of `rules.nodes` says in `status --json`:
    /// synced, quorate, `rules.members` members, every unit of `rules.units` "held" by a node
    /// of this lab, every node naming the same holders; and EC2 confirms each holder as
    /// `rules.ec2` asks. Returns unit name → holder's node index. A held unit without a
    /// holder is an error at once.
    pub fn settle(&self, rules: &Settle<'_>) -> Result<BTreeMap<String, usize>> {
        let what = match rules.units {
            Units::First => "one agreed, verified holder".to_string(),
            Units::Named(units) => format!("agreed, verified holders of {units:?} on nodes {:?}", rules.nodes),
            Units::All => "all resources held and agreed".to_string(),
        };
        self.wait_for(&what, rules.timeout, || {
            let mut agreed: Option<BTreeMap<String, usize>> = None;
            let mut allocs: BTreeMap<String, Option<String>> = BTreeMap::new();
            for &i in rules.nodes {
                let s = self.daemon_status(i)?;
                if !(s.synced && s.quorate && s.members.len() == rules.members) {
                    return Ok(None);
                }
                let picked: Vec<&ResourceStatus> = match rules.units {
                    Units::First => match s.resources.first() {
                        Some(r) => vec![r],
                        None => return Ok(None),
                    },
                    Units::Named(names) => {
                        let mut v = Vec::new();
                        for name in names {
                            match s.resources.iter().find(|r| r.name == *name) {
                                Some(r) => v.push(r),
                                None => return Ok(None),
                            }
                        }
                        v
                    }
                    Units::All => s.resources.iter().collect(),
                };
                let mut view = BTreeMap::new();
                for r in picked {
                    if r.state != "held" {
                        return Ok(None);
                    }
                    let index = r
                        .holder
                        .as_ref()
                        .and_then(|h| self.index_of_node_id(h.node_id.into()))
                        .ok_or_else(|| anyhow!("node {i}: {} is held but names no holder of this lab", r.name))?;
                    view.insert(r.name.clone(), index);
                    allocs.insert(r.name.clone(), r.allocation_id.clone());
                }
                if let Some(a) = &agreed {
                    if *a != view {
                        if rules.disagreement_fails {
                            bail!("nodes disagree on the holders: {a:?} vs {view:?} (node {i})");
                        }
                        return Ok(None);
                    }
                }
                agreed = Some(view);
            }
            let Some(view) = agreed else { return Ok(None) };
            if matches!(rules.ec2, Ec2Proof::Nothing) {
                return Ok(Some(view));
            }
            for (name, &index) in &view {
                let alloc = match rules.units {
                    // the lab's first EIP is the first resource of every config the tests use
                    Units::First => self.allocation_ids().first().cloned(),
                    _ => allocs.get(name).cloned().flatten(),
                }
                .ok_or_else(|| anyhow!("{name} has no allocation id for EC2 to confirm"))?;
                let ec2 = self.eip(&alloc)?;
                let on_eni = ec2.network_interface_id.as_deref() == Some(self.eni(index));
                let on_instance = ec2.instance_id.as_deref() == Some(self.instance_id(index));
                let confirmed = match rules.ec2 {
                    Ec2Proof::Nothing => true,
                    Ec2Proof::Eni => on_eni,
                    Ec2Proof::InstanceAndEni => on_eni && on_instance,
                };
                if !confirmed {
                    return Ok(None);
                }
            }
            Ok(Some(view))
        })
    }

    /// Mutating EC2 calls (anything but Describe*, DryRun probes excluded) the emulator
    /// received at or after `since` (unix time), whatever their outcome, with the node that
    /// sent them: "who wrote to EC2, and when" is what most scenarios assert.
    pub fn mutating_calls_since(&self, since: f64) -> Result<Vec<Call>> {
        Ok(self
            .ec2_requests()?
            .into_iter()
            .filter(|r| r.t >= since && !r.action.starts_with("Describe") && r.param("DryRun") != Some("true"))
            .map(|r| Call {
                t: r.t,
                node: self.node_by_ip(&r.source),
                status: r.status,
                action: r.action,
            })
            .collect())
    }

    /// The actions (EC2 and Route 53) node `i` sent at or after `since`, in arrival order.
    pub fn actions_of(&self, i: usize, since: f64) -> Result<Vec<String>> {
        Ok(self
            .ec2_requests()?
            .into_iter()
            .filter(|r| r.t >= since && self.node_by_ip(&r.source) == Some(i))
            .map(|r| r.action)
            .collect())
    }

    /// The actions node `i` sent at or after `since` before its first `change` (panics when it
    /// sent none): what a taker read before it moved an address.
    pub fn actions_before(&self, i: usize, since: f64, change: &str) -> Result<Vec<String>> {
        let mut actions = self.actions_of(i, since)?;
        let Some(at) = actions.iter().position(|a| a == change) else {
            bail!("node {i} sent no {change} since {since}: {actions:?}");
        };
        actions.truncate(at);
        Ok(actions)
    }

    /// The index of the node with this corosync node id.
    pub fn index_of_node_id(&self, node_id: u64) -> Option<usize> {
        (0..self.node_count()).find(|i| u64::from(self.node_id(*i)) == node_id)
    }
}
