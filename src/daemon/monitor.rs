//! While we hold: read EC2 (one batched call per kind) and our interface, and hand each
//! verdict to the holder. While we hold nothing: prove with DryRun calls that we could take
//! over. Always: the health checks that decide whether we may hold at all.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tracing::{info, warn};

use super::{Daemon, TaskResult};
use crate::core::health::HealthTracker;
use crate::core::holder::Verdict;
use crate::core::view::View;
use crate::corosync::{Corosync, CorosyncError};
use crate::kinds::{self, Batch, Observation};

/// One configured health check's state.
pub(super) struct HealthState {
    pub tracker: HealthTracker,
    pub last_error: Option<String>,
}

impl Daemon {
    /// One DescribeAddresses for all our EIPs and one DescribeRouteTables for all tables of our
    /// VIPs, whatever the number of resources.
    pub(super) fn start_monitor(&mut self, view: &View) {
        if self.monitor_running || !view.may_act() {
            return;
        }
        let mut batch = Batch::default();
        for (name, local) in self.ours(view) {
            if local.holding.held().is_some() {
                batch.add(name, &local.kind);
            }
        }
        if batch.is_empty() {
            return;
        }
        self.monitor_running = true;
        let ctx = self.kinds.clone();
        let tx = self.results_tx.clone();
        let budget = self.config.cluster.monitor_interval;
        tokio::spawn(async move {
            let seen = batch.observe(&ctx, budget).await;
            let _ = tx.send(TaskResult::Monitored(seen));
        });
    }

    /// Verify: what the monitor saw, judged per resource we hold, and handed to the holder.
    pub(super) fn check_drift(&mut self, view: &View, seen: &Observation) {
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        let now = SystemTime::now();
        let names: Vec<String> = self.resources.keys().cloned().collect();
        for name in names {
            let Some(local) = self.resources.get_mut(&name) else { continue };
            let wanted = ours.get(&local.unit).copied();
            if wanted.is_none() || local.holding.held() != wanted {
                continue;
            }
            let Some(judged) = kinds::judge(&name, &local.kind, seen, &self.identity, local.holding.epoch()) else {
                continue;
            };
            if let Some(observed) = judged.observed {
                local.observed = Some(observed);
            }
            match &judged.verdict {
                Verdict::Ours => local.verified_at = Some(now),
                Verdict::Unknown(e) => warn!(resource = %name, error = %e, "monitor could not verify"),
                _ => {}
            }
            let effects = local.holding.monitored(wanted, judged.verdict, judged.address_present);
            self.apply_effects(&name, effects);
        }
    }

    /// On a node that holds nothing, prove with DryRun calls that it could take over: IAM drift
    /// is found before a failover needs the permissions, not during it.
    pub(super) fn start_permission_check(&mut self, view: &View) {
        let incapable = self.resources.values().any(|l| l.holding.incapacity().is_some());
        if self.permission_check_running || (!view.held_by_local().is_empty() && !incapable) {
            return;
        }
        self.permission_check_running = true;
        let config = self.config.clone();
        let client = self.ec2.client().clone();
        let route53 = self.kinds.route53.client().clone();
        let route_clients: std::collections::BTreeMap<String, aws_sdk_ec2::Client> =
            self.kinds.route_clients.iter().map(|(r, c)| (r.clone(), c.client().clone())).collect();
        let instance = Some(self.identity.instance_id.clone());
        let eni = self.identity.network_interface_id.clone();
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            let probes = crate::permissions::probe(&config, &client, &route53, &route_clients, instance, eni).await;
            let failing = probes.into_iter().filter(|p| p.needs_attention()).map(|p| p.to_string()).collect();
            let _ = tx.send(TaskResult::Permissions(failing));
        });
    }

    /// The permission probe's result: warn about what is missing, and announce units we can
    /// serve again once everything passes (nothing moves back).
    pub(super) async fn on_permissions(&mut self, cs: &Corosync, view: &mut View, failing: Vec<String>) -> Result<(), CorosyncError> {
        self.permission_check_running = false;
        if failing != self.permission_warnings {
            for f in &failing {
                warn!(problem = %f, "EC2 permission check failed on this standby node: a failover to it would fail");
            }
            if failing.is_empty() && !self.permission_warnings.is_empty() {
                info!("EC2 permission checks pass again");
            }
        }
        if failing.is_empty() {
            let mut recovered = Vec::new();
            for (name, local) in self.resources.iter_mut() {
                if local.holding.recovered() {
                    recovered.push(name.clone());
                }
            }
            if !recovered.is_empty() {
                info!(resources = ?recovered, "EC2 permission checks pass: this node can serve these addresses again (nothing moves back)");
                self.announce_capability(cs, view).await?;
            }
        }
        self.permission_warnings = failing;
        Ok(())
    }

    /// Whether this node's health checks all pass.
    pub(super) fn eligible_locally(&self) -> bool {
        self.health.iter().all(|h| h.tracker.healthy())
    }

    /// Records one health check result; returns the node's new eligibility when it changed.
    pub(super) fn record_health(&mut self, index: usize, result: Result<(), String>) -> Option<bool> {
        let before = self.eligible_locally();
        let name = self.config.health.get(index).map(|h| h.name.clone()).unwrap_or_default();
        let state = self.health.get_mut(index)?;
        let flipped = state.tracker.record(result.is_ok());
        state.last_error = result.err();
        if let Some(healthy) = flipped {
            if healthy {
                info!(check = %name, "health check passing again");
            } else {
                warn!(check = %name, error = ?state.last_error, "health check failing: this node gives up its addresses");
            }
        }
        let after = self.eligible_locally();
        (before != after).then_some(after)
    }
}
