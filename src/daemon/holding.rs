//! What this node holds: per resource, the holder's pure decisions (`core::holder::Holding`)
//! and what carrying them out needs (the running acquisition, what EC2 said, the failover
//! timeline); the write gate every mutating call passes; and the announcements of what we
//! cannot serve.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::{Daemon, TaskResult};
use crate::batch::{Cohort, Member};
use crate::core::holder::{self, Effect, Holding};
use crate::core::view::{Output, View};
use crate::core::wire::{self, Body, HeldMsg, Unable};
use crate::core::MemberId;
use crate::corosync::{Corosync, CorosyncError};
use crate::kinds::{self, AcquireError, Gate, Kind, Observed};
use crate::metrics::Metrics;
use crate::notify::{HookContext, HookEvent};
use crate::status::{FailoverTimeline, MemberRef};

/// Time budget for one acquisition (retries of transient errors included); never more than
/// `acquire_timeout`.
const ACQUIRE_BUDGET: Duration = Duration::from_secs(10);
/// A write gate stays shut while the main loop has not run for this long: after a stop
/// (SIGSTOP, a frozen VM) the loop must first read what corosync delivered meanwhile, or an
/// acquisition task could write with the permit it had before the stop.
const LOOP_STALE: Duration = Duration::from_secs(2);

/// When the main loop last ran with nothing from corosync left unread.
pub(super) struct Liveness {
    base: Instant,
    last_ms: AtomicU64,
}

impl Liveness {
    pub(super) fn new() -> Liveness {
        Liveness {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn beat(&self) {
        self.last_ms.store(self.elapsed_ms(), Ordering::Release);
    }

    /// The loop ran within `max`.
    fn fresh(&self, max: Duration) -> bool {
        let last = self.last_ms.load(Ordering::Acquire);
        let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms().saturating_sub(last) <= max_ms
    }
}

/// When the view elected us, kept until the acquisition is verified: the failover timeline.
pub(super) struct PendingTimeline {
    pub previous: Option<MemberId>,
    /// Another node had verified the address as its own: it is not ours yet.
    pub held_elsewhere: bool,
    /// The ownership epoch that node announced with its Held, if any: outside two_node the
    /// acquisition outbids it without its first read (`kinds::Start::outbid`).
    pub epoch_elsewhere: Option<u64>,
    pub detected: Instant,
    pub detected_wall: SystemTime,
    pub elected: Instant,
}

/// One configured resource on this node: the holder's decisions (pure, `Holding`) and what the
/// adapter keeps for them (the running task, what EC2 said, the failover timeline).
pub(super) struct LocalResource {
    pub kind: Kind,
    /// The placement unit: the group, or the resource itself.
    pub unit: String,
    pub holding: Holding,
    /// The running acquisition.
    pub task: Option<JoinHandle<()>>,
    /// An acquisition decided in this step of the loop, started with the others at its end
    /// (`start_acquisitions`): the generation it is for.
    pub queued: Option<u64>,
    pub observed: Option<Observed>,
    pub verified_at: Option<SystemTime>,
    /// Set when the view elected us; consumed when the acquisition is verified.
    pub pending_timeline: Option<PendingTimeline>,
    /// The departed holders to stop before anything moves (`[fencing]` on): what the agreed
    /// table still owes for the unit (`View::fences`), read at every reconcile, so a retry, a
    /// re-exec or a second loss fences every holder that may still write.
    pub fences: Vec<crate::core::view::Fence>,
    pub last_failover: Option<FailoverTimeline>,
}

impl LocalResource {
    pub(super) fn new(kind: Kind, unit: String) -> LocalResource {
        let local_address = kind.has_local_address();
        LocalResource {
            kind,
            unit,
            holding: Holding::new(local_address),
            task: None,
            queued: None,
            observed: None,
            verified_at: None,
            pending_timeline: None,
            fences: Vec::new(),
            last_failover: None,
        }
    }

    pub(super) fn abort(&mut self) {
        self.queued = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Daemon {
    /// Carries out what the holder decided for one resource (the CPG announcements are sent by
    /// `announce_capability`).
    pub(super) fn apply_effects(&mut self, name: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Abort => {
                    if let Some(local) = self.resources.get_mut(name) {
                        local.abort();
                    }
                }
                Effect::Acquire { generation } => {
                    if let Some(local) = self.resources.get_mut(name) {
                        local.queued = Some(generation);
                    }
                }
                Effect::RemoveAddress => self.spawn_remove_address(name),
                Effect::Released => self.hook(name, HookEvent::Release, "standby", String::new()),
                Effect::RetryAt(at) => self.after(at.saturating_duration_since(Instant::now()), TaskResult::Retry),
                Effect::CannotServe { class, reason } => {
                    error!(resource = %name, class = class.as_str(), reason = %reason, "this node cannot serve the address; handing it to the next candidate");
                }
                Effect::Drift => {
                    let (repairs, kind) =
                        self.resources.get(name).map_or((0, ""), |l| (l.holding.drift_repairs(), l.kind.label()));
                    self.metrics.drift_repairs.get_or_create(&Metrics::resource(name, kind)).inc();
                    warn!(resource = %name, drift_repairs = repairs, "drift: EC2 or the local interface no longer matches this holder; repairing");
                }
            }
        }
    }

    /// The question every mutating call asks right before it is sent: are we still the
    /// elected holder of `unit` at `generation` in a quorate partition, and does corosync still
    /// count us quorate at this instant?
    pub(super) fn write_gate(&self, unit: &str, generation: u64) -> Gate {
        let permit = self.permit.subscribe();
        let probe = self.probe.clone();
        let liveness = self.liveness.clone();
        let key = (unit.to_owned(), generation);
        Arc::new(move || {
            liveness.fresh(LOOP_STALE) && permit.borrow().contains(&key) && probe.as_ref().is_some_and(|p| p.quorate())
        })
    }

    /// Starts every acquisition decided in this step of the loop, as one cohort: they send
    /// their changes at once and share their read-backs (`batch::Cohort`).
    pub(super) fn start_acquisitions(&mut self) {
        let queued: Vec<(String, u64)> = self
            .resources
            .iter_mut()
            .filter_map(|(name, local)| local.queued.take().map(|g| (name.clone(), g)))
            .collect();
        if queued.is_empty() {
            return;
        }
        let cohort = Cohort::new(queued.len());
        for (name, generation) in queued {
            self.spawn_acquire(&name, generation, cohort.member());
        }
    }

    fn spawn_acquire(&mut self, name: &str, generation: u64, cohort: Member) {
        let Some(local) = self.resources.get(name) else { return };
        let held_elsewhere = local.pending_timeline.as_ref().is_some_and(|t| t.held_elsewhere);
        // The epoch to outbid is known from agreed messages only where no other partition can
        // be quorate and write a newer one meanwhile: not with two_node (nor unknown votes).
        let single_writer = self.votes.is_some_and(|v| !v.two_node);
        let epoch_elsewhere = local.pending_timeline.as_ref().and_then(|t| t.epoch_elsewhere).filter(|_| single_writer);
        let fences = local.fences.clone();
        let fencer = self.fencer.clone();
        let kind = local.kind.clone();
        let ctx = self.kinds.clone();
        let gate = self.write_gate(&local.unit, generation);
        let tx = self.results_tx.clone();
        let resource = name.to_owned();
        let budget = ACQUIRE_BUDGET.min(self.config.aws.acquire_timeout);
        let start = kinds::Start {
            held_elsewhere,
            epoch_elsewhere,
            cohort,
        };
        let task = tokio::spawn(async move {
            // A failed fence is never a move: the acquisition ends before any address call.
            let mut fenced = None;
            for f in &fences {
                match fencer.fence(f, &gate).await {
                    Ok(done) => fenced = Some(done.done),
                    Err(e) => {
                        let _ = tx.send(TaskResult::NotAcquired {
                            resource,
                            generation,
                            error: AcquireError::Fence(e),
                        });
                        return;
                    }
                }
            }
            let result = match kinds::acquire(&kind, &ctx, gate, budget, start).await {
                Ok(acquired) => TaskResult::Acquired {
                    resource,
                    generation,
                    acquired,
                    fenced,
                },
                Err(error) => TaskResult::NotAcquired {
                    resource,
                    generation,
                    error,
                },
            };
            let _ = tx.send(result);
        });
        if let Some(local) = self.resources.get_mut(name) {
            local.task = Some(task);
        }
        debug!(resource = %name, generation, held_elsewhere, epoch_elsewhere, "acquisition started");
    }

    pub(super) fn spawn_remove_address(&mut self, name: &str) {
        let Some(local) = self.resources.get_mut(name) else { return };
        if !local.kind.has_local_address() {
            return;
        }
        let kind = local.kind.clone();
        let Some(addresses) = self.kinds.addresses.clone() else { return };
        let tx = self.results_tx.clone();
        let resource = name.to_owned();
        tokio::spawn(async move {
            let result = kinds::remove_local(&addresses, &kind).await.map_err(|e| e.to_string());
            let _ = tx.send(TaskResult::LocalAddressRemoved { resource, result });
        });
    }

    pub(super) fn address_removed(&mut self, resource: &str, result: Result<bool, String>) {
        let Some(local) = self.resources.get_mut(resource) else { return };
        match &result {
            Ok(true) => info!(resource = %resource, "address removed from the local interface"),
            Ok(false) => {}
            Err(e) => error!(resource = %resource, error = %e, "cannot remove the address from the local interface"),
        }
        local.holding.address_removed(result.map(|_| ()));
    }

    /// An acquisition verified the address on this node: record the timeline, tell the hooks,
    /// and announce it to the cluster.
    pub(super) async fn on_acquired(
        &mut self,
        cs: &Corosync,
        view: &mut View,
        resource: &str,
        generation: u64,
        acquired: kinds::Acquired,
        fenced: Option<Instant>,
    ) -> Result<(), CorosyncError> {
        self.fence_hook();
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        let Some(local) = self.resources.get_mut(resource) else { return Ok(()) };
        let wanted = ours.get(&local.unit).copied();
        let recovered = local.holding.incapacity().is_some();
        if !local.holding.acquired(generation, wanted, acquired.epoch, true) {
            return Ok(());
        }
        local.task = None;
        local.observed = Some(acquired.observed.clone());
        local.verified_at = Some(SystemTime::now());
        let unit = local.unit.clone();
        if recovered {
            self.announce_capability(cs, view).await?;
        }
        let Some(local) = self.resources.get_mut(resource) else { return Ok(()) };
        if let Some(t) = local.pending_timeline.take() {
            let ms = |i: Instant| u64::try_from(i.saturating_duration_since(t.detected).as_millis()).unwrap_or(u64::MAX);
            let timeline = FailoverTimeline {
                previous: t.previous.map(|p| MemberRef { node_id: p.node, pid: p.pid }),
                detected_at: humantime::format_rfc3339_millis(t.detected_wall).to_string(),
                elected_ms: ms(t.elected),
                fenced_ms: fenced.map(ms),
                associate_sent_ms: acquired.sent.map(ms),
                verified_ms: ms(acquired.verified),
            };
            info!(
                resource = %resource,
                node = view.local().node,
                instance = %self.identity.instance_id,
                previous = ?t.previous.map(|p| p.to_string()),
                elected_ms = timeline.elected_ms,
                fenced_ms = ?timeline.fenced_ms,
                associate_sent_ms = ?timeline.associate_sent_ms,
                verified_ms = timeline.verified_ms,
                elapsed_ms = timeline.verified_ms,
                "failover timeline: detected → elected +{}ms{} → associate sent {} → verified +{}ms",
                timeline.elected_ms,
                timeline.fenced_ms.map_or(String::new(), |m| format!(" → fenced +{m}ms")),
                timeline.associate_sent_ms.map_or("(not needed, already ours)".to_string(), |m| format!("+{m}ms")),
                timeline.verified_ms,
            );
            local.last_failover = Some(timeline);
            if acquired.sent.is_some() {
                self.metrics.failovers.get_or_create(&Metrics::resource(resource, local.kind.label())).inc();
            }
        } else {
            info!(resource = %resource, instance = %self.identity.instance_id, generation, "address verified on this node");
        }
        self.hook(resource, HookEvent::Acquire, "holder", String::new());
        let (instance_id, network_interface_id) = match &acquired.observed {
            Observed::Eip(o) => (o.instance_id.clone(), o.network_interface_id.clone()),
            Observed::Vip(_) | Observed::Secondary(_) | Observed::Dns(_) => (Some(self.identity.instance_id.clone()), self.identity.network_interface_id.clone()),
        };
        cs.send(&wire::encode(&Body::Held(HeldMsg {
            unit,
            resource: resource.to_owned(),
            generation,
            instance_id,
            network_interface_id,
            epoch: acquired.epoch,
        })))
        .await
    }

    /// An acquisition ended without the address: a cancellation just ends it; a failure goes to
    /// the holder's error policy (retry, or hand the unit to the next candidate).
    pub(super) async fn on_not_acquired(
        &mut self,
        cs: &Corosync,
        view: &mut View,
        resource: &str,
        generation: u64,
        error: AcquireError,
    ) -> Result<(), CorosyncError> {
        self.fence_hook();
        let Some(local) = self.resources.get_mut(resource) else { return Ok(()) };
        if local.holding.acquiring() == Some(generation) {
            local.task = None;
        }
        if error.cancelled() {
            local.holding.acquire_cancelled(generation);
            return Ok(());
        }
        let policy = holder::Policy {
            acquire_timeout: self.config.aws.acquire_timeout,
            retry_cap: self.config.cluster.monitor_interval,
        };
        let failure = error.failure();
        let message = error.to_string();
        let now = Instant::now();
        let effects = local.holding.acquire_failed(generation, failure, message.clone(), now, policy, rand::random());
        let retry_in_ms = effects
            .iter()
            .find_map(|e| match e {
                Effect::RetryAt(at) => Some(u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)),
                _ => None,
            })
            .unwrap_or_default();
        error!(resource = %resource, generation, failure = ?failure, error = %message, retry_in_ms, "could not take the address");
        self.apply_effects(resource, effects);
        self.hook(resource, HookEvent::Fault, "holder", message);
        self.announce_capability(cs, view).await
    }

    /// Tells the `fence` hooks of a fence this node carried out (or failed), once per fence:
    /// the addresses of one departure share it, an instance already down is no news, and the
    /// retries of a fence that keeps failing tell once.
    fn fence_hook(&mut self) {
        let Some(last) = self.fencer.last() else { return };
        let seen = self.fence_hooked.replace((last.at, last.result));
        if seen.is_some_and(|(at, result)| at == last.at || (result == "failed" && last.result == "failed"))
            || last.result == "already_down"
        {
            return;
        }
        let (Some(node_id), false) = (self.node_id, self.config.notify.is_empty()) else { return };
        let instance = last.instance_id.clone().unwrap_or_else(|| "(unknown instance)".into());
        let detail = match &last.error {
            None => format!("stopped {instance} of node {} in {} ms", last.node_id, last.ms),
            Some(e) => format!("failed to stop {instance} of node {}: {e}", last.node_id),
        };
        self.notifier.fire(HookContext {
            event: HookEvent::Fence,
            resource: String::new(),
            group: String::new(),
            kind: "node",
            role: "holder",
            address: String::new(),
            node_id,
            instance_id: self.identity.instance_id.clone(),
            detail,
        });
    }

    /// Units this node cannot serve now, as announced to the others.
    pub(super) fn cannot_serve_list(&self) -> Vec<Unable> {
        let mut list: Vec<Unable> = Vec::new();
        for local in self.resources.values() {
            if let Some((class, reason)) = local.holding.incapacity() {
                if !list.iter().any(|u| u.unit == local.unit) {
                    list.push(Unable {
                        unit: local.unit.clone(),
                        class: *class,
                        reason: reason.clone(),
                    });
                }
            }
        }
        list
    }

    /// Tells the others which units we cannot serve, when that changed.
    pub(super) async fn announce_capability(&mut self, cs: &Corosync, view: &mut View) -> Result<(), CorosyncError> {
        for output in view.set_local_cannot_serve(self.cannot_serve_list()) {
            if let Output::Send(body) = output {
                cs.send(&wire::encode(&body)).await?;
            }
        }
        Ok(())
    }

    /// Runs the configured notify hooks for one resource's event (once a session told us our
    /// node id: nothing is held before).
    pub(super) fn hook(&self, resource: &str, event: HookEvent, role: &'static str, detail: String) {
        if self.config.notify.is_empty() {
            return;
        }
        let (Some(node_id), Some(local)) = (self.node_id, self.resources.get(resource)) else { return };
        let address = local.kind.address(local.observed.as_ref());
        self.notifier.fire(HookContext {
            event,
            resource: resource.to_owned(),
            group: local.unit.clone(),
            kind: local.kind.label(),
            role,
            address,
            node_id,
            instance_id: self.identity.instance_id.clone(),
            detail,
        });
    }

    /// Resources of units the view says are ours, with their kinds.
    pub(super) fn ours<'a>(&'a self, view: &View) -> impl Iterator<Item = (&'a String, &'a LocalResource)> + 'a {
        let units: BTreeSet<String> = view.held_by_local().into_iter().map(|(u, _)| u).collect();
        self.resources.iter().filter(move |(_, l)| units.contains(&l.unit))
    }
}
