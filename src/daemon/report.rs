//! What this node tells the people and programs watching it: the `status` snapshot, metrics,
//! systemd's STATUS= and READY=1, and log lines for conflicts and undecodable messages.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::Daemon;
use crate::core::view::View;
use crate::core::wire;
use crate::core::MemberId;
use crate::metrics::Metrics;
use crate::status::{self, ConflictStatus, HealthStatus, LocalAddress, MemberRef, ResourceStatus};
use crate::systemd;

/// At most one log line per this period for undecodable messages from one sender.
const UNDECODABLE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Undecodable CPG messages (another wire version, a foreign process in the group) are logged
/// at a bounded rate per sender.
#[derive(Default)]
pub(super) struct Undecodable {
    senders: BTreeMap<MemberId, (Instant, u64)>,
}

impl Undecodable {
    pub(super) fn record(&mut self, from: MemberId, error: &wire::DecodeError) {
        let now = Instant::now();
        let entry = self.senders.entry(from).or_insert((now, 0));
        if entry.1 == 0 || now.saturating_duration_since(entry.0) >= UNDECODABLE_LOG_EVERY {
            warn!(from = %from, error = %error, suppressed = entry.1.saturating_sub(1), "dropping undecodable CPG message");
            *entry = (now, 1);
        } else {
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

impl Daemon {
    /// Says loudly, once per change, which units' configuration differs between members.
    pub(super) fn log_conflicts(&mut self, view: &View) {
        if !view.is_synced() {
            return;
        }
        let now = view.conflicts();
        if now == self.conflicts {
            return;
        }
        for c in now.iter().filter(|c| !self.conflicts.contains(c)) {
            let variants: Vec<String> = c.variants.iter().map(|v| format!("{v:?}")).collect();
            error!(unit = %c.unit, keys = ?c.keys, variants = %variants.join(" vs "), "{c}");
        }
        for c in self.conflicts.iter().filter(|old| !now.iter().any(|n| n.unit == old.unit)) {
            info!(unit = %c.unit, "the members' configuration of this unit agrees again; placement resumes");
        }
        self.conflicts = now;
    }

    /// Metrics from the same snapshot as `status`.
    fn export(&self, view: &View, resources: &[ResourceStatus]) {
        self.metrics.quorate.set(i64::from(view.partition_quorate()));
        self.metrics.members.set(i64::try_from(view.members().len()).unwrap_or(i64::MAX));
        for r in resources {
            let label = Metrics::resource(&r.name, &r.kind);
            self.metrics.holder_node.get_or_create(&label).set(r.holder.as_ref().map_or(0, |h| i64::from(h.node_id)));
            if let Some(age) = r.verified_age_ms {
                self.metrics.verification_age.get_or_create(&label).set(age as f64 / 1000.0);
            }
        }
    }

    /// READY=1 once this process first knows the cluster's holders; STATUS= when it changes.
    pub(super) fn notify_systemd(&mut self, view: &View) {
        let ours: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, l)| l.holding.held().is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let status = format!(
            "{}; {} member(s); holding {} of {}{}{}",
            if view.partition_quorate() { "quorate" } else { "NOT quorate" },
            view.members().len(),
            ours.len(),
            self.resources.len(),
            if ours.is_empty() { "" } else { ": " },
            ours.join(", ")
        );
        if view.is_synced() && !self.ready_sent {
            info!(members = view.members().len(), "synced with the cluster; ready");
            systemd::ready(&status);
            self.ready_sent = true;
            self.systemd_status = status;
        } else if status != self.systemd_status {
            systemd::status(&status);
            self.systemd_status = status;
        }
    }

    /// Publishes the status snapshot (and metrics) of the view and our own holdings.
    pub(super) fn publish(&self, view: &View, local_quorate: bool) {
        let now = SystemTime::now();
        let may_act = view.may_act() && local_quorate;
        let resources: Vec<ResourceStatus> = self
            .resources
            .iter()
            .map(|(name, local)| {
                let address = LocalAddress {
                    name,
                    kind: &local.kind,
                    unit: &local.unit,
                    holding: &local.holding,
                    observed: local.observed.as_ref(),
                    verified_at: local.verified_at,
                    last_failover: local.last_failover.as_ref(),
                };
                status::resource(view, &address, may_act, now)
            })
            .collect();
        let health = self
            .config
            .health
            .iter()
            .zip(&self.health)
            .map(|(c, h)| HealthStatus {
                name: c.name.clone(),
                healthy: h.tracker.healthy(),
                last_error: h.last_error.clone(),
            })
            .collect();
        self.export(view, &resources);
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.node_id = Some(view.local().node);
        s.group = self.config.cluster.group.clone();
        s.instance_id = Some(self.identity.instance_id.clone());
        s.network_interface_id = self.identity.network_interface_id.clone();
        s.corosync = "connected".into();
        s.synced = view.is_synced();
        s.quorate = view.partition_quorate();
        s.local_quorate = local_quorate;
        s.votes = self.votes;
        s.members = status::members(view);
        s.reattaching = view.vanished().iter().map(|m| MemberRef { node_id: m.node, pid: m.pid }).collect();
        s.resources = resources;
        s.eligible = view.local_info().eligible && !view.local_info().standby;
        s.standby = view.local_info().standby;
        s.health = health;
        let conflicts = view.conflicts();
        s.warnings = self
            .warnings
            .iter()
            .chain(&self.permission_warnings)
            .cloned()
            .chain(conflicts.iter().map(|c| c.to_string()))
            .collect();
        s.warnings.extend(self.drain.problems.iter().cloned());
        // Fencing is a per-node setting, but a takeover fences only if its successor's file
        // says so: members that disagree make fencing depend on who is elected.
        let ours = self.config.fencing.stop_instance;
        let differ: Vec<String> = view
            .members()
            .iter()
            .filter(|m| view.info(m).and_then(|i| i.fencing).is_some_and(|f| f != ours))
            .map(|m| m.node.to_string())
            .collect();
        if !differ.is_empty() {
            s.warnings.push(format!(
                "[fencing] stop_instance is {ours} here but {} on node(s) {}: whether a lost holder is fenced depends on which node takes over; set it alike on every node",
                !ours,
                differ.join(", ")
            ));
        }
        if view.is_synced() && view.unconfirmed() {
            s.warnings.push(format!(
                "this daemon kept its table across a reload or a lost corosync connection, and no other daemon has confirmed it yet: nobody moves an address until the daemons of every corosync node are back (at most startup_wait, {} ms)",
                self.config.cluster.startup_wait.as_millis()
            ));
        }
        s.aws_event = self.drain.current.as_ref().map(|d| crate::status::AwsEventStatus {
            kind: d.event.kind.as_str().to_owned(),
            id: d.event.id.clone(),
            not_before: d.event.not_before,
            drained_until: d.until,
        });
        s.fencing = Some(crate::status::FencingStatus {
            stop_instance: self.config.fencing.stop_instance,
            timeout_ms: u64::try_from(self.config.fencing.timeout.as_millis()).unwrap_or(u64::MAX),
            delay_ms: u64::try_from(self.config.fencing.delay.as_millis()).unwrap_or(u64::MAX),
            last: self.fencer.last().map(|l| crate::status::LastFence {
                node_id: l.node_id,
                instance_id: l.instance_id,
                result: l.result.to_owned(),
                error: l.error,
                ms: l.ms,
                at: humantime::format_rfc3339_millis(l.at).to_string(),
            }),
        });
        s.binary_replaced = super::lifecycle::binary_replaced(&self.exe);
        if s.binary_replaced {
            s.warnings.push(format!(
                "{} was replaced since this daemon started (a package upgrade?): `systemctl reload corosync-eip` runs it in place, keeping every address",
                self.exe.display()
            ));
        }
        s.conflicts = conflicts.iter().map(ConflictStatus::from).collect();
        s.muted = view.muted().iter().map(|m| MemberRef { node_id: m.node, pid: m.pid }).collect();
    }
}
