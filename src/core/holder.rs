//! The holder's own decisions about one resource: when to take it, what to do with the outcome
//! of an acquisition, when to give up and hand the unit to the next candidate, what a monitor
//! verdict means, and when to drop the address because quorum is gone.
//!
//! Pure: the daemon passes in the facts of the cluster view, the time and the randomness, and
//! carries out the returned effects (EC2 calls, netlink, CPG announcements).

use std::time::{Duration, Instant};

use super::reconcile::backoff;
use super::wire::Incapacity;

/// What the cluster view says about the unit this resource belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The generation we are elected holder for, if we are.
    pub wanted: Option<u64>,
    /// We may call mutating EC2 APIs now (synced, agreed quorum, corosync quorate here).
    pub may_act: bool,
    /// The partition is quorate (agreed) and so is corosync here.
    pub quorate: bool,
    /// The partition's quorum is still being agreed after a membership change, and corosync
    /// here counts us quorate: what we hold is kept (no release, the local address stays)
    /// while writes stay blocked; known loss of quorum still stops at once.
    pub quorum_pending: bool,
    /// We completed a sync round: our table is the cluster's.
    pub synced: bool,
}

/// How long an acquisition may keep failing, and how often it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Transient failures for longer than this hand the unit to the next candidate.
    pub acquire_timeout: Duration,
    /// Retries back off up to this.
    pub retry_cap: Duration,
}

/// Why an acquisition failed, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// EC2 denied a mutating call: this node's role cannot do it.
    Permission,
    /// EC2 does not know this node's instance or interface.
    Identity,
    /// Throttling, 5xx, timeouts, no connection: may pass.
    Transient,
    /// Anything else (a missing route, a bad parameter, the local interface): every node
    /// would fail the same way, so handing over would not help.
    Other,
}

/// What the monitor found for a resource we hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// EC2 points the address at us: nothing to do.
    Ours,
    /// Moved by someone without a newer ownership record: take it back.
    Repair,
    /// A holder elected in another partition took it after us: leave it.
    Yield {
        /// The instance that took the address, as its ownership tag names it.
        to: String,
        /// The epoch it wrote: newer than ours, or the same with a lower instance id.
        epoch: u64,
    },
    /// The monitor could not tell (EC2 error). Never a reason to move.
    Unknown(String),
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Stop a running acquisition.
    Abort,
    /// Start acquiring for this generation.
    Acquire {
        /// The generation we are elected for; its outcome counts only while it is still wanted.
        generation: u64,
    },
    /// Take the (VIP) address off our interface.
    RemoveAddress,
    /// A holding ended (given up, lost, yielded, drifted away, stood down): tell the hooks.
    /// Exactly one per holding.
    Released,
    /// Try again at this time (the daemon wakes its loop then).
    RetryAt(Instant),
    /// We cannot serve the unit: announce it so the others elect the next candidate.
    CannotServe {
        /// What kind of failure it is (shown to admins as `cannot_serve[].class`).
        class: Incapacity,
        /// The error that decided it, for the admin.
        reason: String,
    },
    /// The monitor found drift that we repair.
    Drift,
}

/// One resource on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// A VIP lives on our interface too; an EIP only in EC2.
    local_address_managed: bool,
    acquiring: Option<u64>,
    held: Option<u64>,
    yielded: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
    /// When the first failed acquisition of the wanted generation started.
    failing_since: Option<Instant>,
    /// When the running acquisition started.
    started: Option<Instant>,
    /// EIP: the ownership epoch we wrote when we took it.
    epoch: Option<u64>,
    /// VIP: whether the address is on our interface (None: not known yet).
    local_address: Option<bool>,
    removing: bool,
    drift_repairs: u64,
    last_error: Option<String>,
    incapacity: Option<(Incapacity, String)>,
}

impl Holding {
    /// A resource this node has done nothing about yet; `local_address_managed` for a VIP, whose
    /// address also lives on our interface.
    pub fn new(local_address_managed: bool) -> Holding {
        Holding {
            local_address_managed,
            acquiring: None,
            held: None,
            yielded: None,
            failures: 0,
            retry_at: None,
            failing_since: None,
            started: None,
            epoch: None,
            local_address: None,
            removing: false,
            drift_repairs: 0,
            last_error: None,
            incapacity: None,
        }
    }

    /// The generation EC2 was verified to point at us for.
    pub fn held(&self) -> Option<u64> {
        self.held
    }

    /// The generation an acquisition is running for (at most one at a time).
    pub fn acquiring(&self) -> Option<u64> {
        self.acquiring
    }

    /// The generation we left to a holder elected in another partition: not acquired again.
    pub fn yielded(&self) -> Option<u64> {
        self.yielded
    }

    /// EIP: the ownership epoch we wrote, against which the monitor judges a newer owner.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// VIP: whether the address is on our interface (None: not known yet).
    pub fn local_address(&self) -> Option<bool> {
        self.local_address
    }

    /// How often the monitor found the address moved outside the cluster and we took it back.
    pub fn drift_repairs(&self) -> u64 {
        self.drift_repairs
    }

    /// The last error met for this resource (acquire, monitor, address removal); cleared on
    /// the next success.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Why we cannot serve this resource's unit, if we announced that.
    pub fn incapacity(&self) -> Option<&(Incapacity, String)> {
        self.incapacity.as_ref()
    }

    /// Starts or stops work so that we act exactly on what the view says is ours.
    pub fn reconcile(&mut self, facts: Facts, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(generation) = facts.wanted.filter(|_| facts.quorate || facts.quorum_pending) else {
            // Not ours, or no quorum: stop, and take a VIP off our interface so no two nodes of
            // a quorate partition ever have it.
            if self.held.is_some() {
                effects.push(Effect::Released);
            }
            if self.acquiring.take().is_some() {
                effects.push(Effect::Abort);
            }
            self.held = None;
            if facts.wanted.is_none() {
                self.yielded = None;
                self.failures = 0;
                self.retry_at = None;
                self.failing_since = None;
            }
            let known_stale = facts.synced || !facts.quorate;
            if self.local_address_managed && self.local_address != Some(false) && !self.removing && known_stale {
                self.removing = true;
                effects.push(Effect::RemoveAddress);
            }
            return effects;
        };
        if !facts.may_act {
            // A sync round: reads in flight may finish; the write gate blocks writes.
            return effects;
        }
        if self.held == Some(generation) || self.yielded == Some(generation) || self.acquiring == Some(generation) {
            return effects;
        }
        if self.retry_at.is_some_and(|at| at > now) {
            return effects;
        }
        if self.acquiring.take().is_some() {
            effects.push(Effect::Abort);
        }
        self.acquiring = Some(generation);
        self.started = Some(now);
        effects.push(Effect::Acquire { generation });
        effects
    }

    /// EC2 was verified to point at us for `generation`. False when that is no longer wanted
    /// (the view moved on while the acquisition ran).
    pub fn acquired(&mut self, generation: u64, wanted: Option<u64>, epoch: Option<u64>, address_present: bool) -> bool {
        if wanted != Some(generation) {
            return false;
        }
        self.acquiring = None;
        self.held = Some(generation);
        self.yielded = None;
        self.epoch = epoch;
        self.last_error = None;
        self.failures = 0;
        self.retry_at = None;
        self.failing_since = None;
        self.incapacity = None;
        if self.local_address_managed && address_present {
            self.local_address = Some(true);
        }
        true
    }

    /// The acquisition of `generation` failed. Decides the retry and whether to hand over.
    pub fn acquire_failed(
        &mut self,
        generation: u64,
        failure: Failure,
        error: String,
        now: Instant,
        policy: Policy,
        jitter: f64,
    ) -> Vec<Effect> {
        if self.acquiring == Some(generation) {
            self.acquiring = None;
        }
        let since = *self.failing_since.get_or_insert(self.started.unwrap_or(now));
        let wait = backoff(self.failures.min(16), Duration::from_millis(500), policy.retry_cap, jitter);
        self.failures = self.failures.saturating_add(1);
        let at = now.checked_add(wait).unwrap_or(now);
        self.retry_at = Some(at);
        self.last_error = Some(error.clone());
        let mut effects = vec![Effect::RetryAt(at)];
        let class = match failure {
            Failure::Permission => Some(Incapacity::Permission),
            Failure::Identity => Some(Incapacity::Identity),
            Failure::Transient if now.saturating_duration_since(since) >= policy.acquire_timeout => {
                Some(Incapacity::Unreachable)
            }
            Failure::Transient | Failure::Other => None,
        };
        if let Some(class) = class {
            if self.incapacity.as_ref().is_none_or(|(c, _)| *c != class) {
                self.incapacity = Some((class, error.clone()));
                effects.push(Effect::CannotServe { class, reason: error });
            }
        }
        effects
    }

    /// The acquisition stopped before writing because we lost the right to act.
    pub fn acquire_cancelled(&mut self, generation: u64) {
        if self.acquiring == Some(generation) {
            self.acquiring = None;
        }
    }

    /// This node proved again that it can act (its permission checks pass): it may be elected
    /// again. Nothing moves back by itself.
    pub fn recovered(&mut self) -> bool {
        self.incapacity.take().is_some()
    }

    /// What the monitor found for `generation` (the generation we are elected for).
    pub fn monitored(&mut self, wanted: Option<u64>, verdict: Verdict, address_present: Option<bool>) -> Vec<Effect> {
        if wanted.is_none() || self.held != wanted {
            return Vec::new();
        }
        if self.local_address_managed && address_present == Some(false) {
            self.local_address = Some(false);
        }
        match verdict {
            Verdict::Ours => {
                self.last_error = None;
                Vec::new()
            }
            Verdict::Repair => {
                self.drift_repairs = self.drift_repairs.saturating_add(1);
                self.held = None;
                // The address was ours and no longer is: that holding ended, and the repair is
                // a new acquisition (with its own acquire).
                vec![Effect::Released, Effect::Drift]
            }
            Verdict::Yield { to, epoch } => {
                self.last_error = Some(format!(
                    "{to} took the address with ownership epoch {epoch} (ours {}): a holder elected in another partition; not taking it back",
                    self.epoch.unwrap_or_default()
                ));
                self.yielded = wanted;
                self.held = None;
                let mut effects = vec![Effect::Released];
                // The newer holder answers for the address now; a copy on our interface would
                // only answer our own traffic, wrongly.
                if self.local_address_managed && self.local_address != Some(false) && !self.removing {
                    self.removing = true;
                    effects.push(Effect::RemoveAddress);
                }
                effects
            }
            Verdict::Unknown(error) => {
                self.last_error = Some(error);
                Vec::new()
            }
        }
    }

    /// The local address was removed (or removing failed).
    pub fn address_removed(&mut self, result: Result<(), String>) {
        self.removing = false;
        match result {
            Ok(()) => self.local_address = Some(false),
            Err(e) => self.last_error = Some(e),
        }
    }

    /// We lost the corosync connection (or stop): nothing is ours any more.
    pub fn stand_down(&mut self, drop_address: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.held.take().is_some() {
            effects.push(Effect::Released);
        }
        if self.acquiring.take().is_some() {
            effects.push(Effect::Abort);
        }
        if drop_address && self.local_address_managed && self.local_address != Some(false) && !self.removing {
            self.removing = true;
            effects.push(Effect::RemoveAddress);
        }
        effects
    }

    /// The address was taken off our interface synchronously (planned stop).
    pub fn address_gone(&mut self) {
        if self.local_address_managed {
            self.local_address = Some(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(wanted: Option<u64>) -> Facts {
        Facts {
            wanted,
            may_act: true,
            quorate: true,
            quorum_pending: false,
            synced: true,
        }
    }

    fn policy() -> Policy {
        Policy {
            acquire_timeout: Duration::from_secs(20),
            retry_cap: Duration::from_secs(2),
        }
    }

    #[test]
    fn elected_holder_acquires_once_and_holds() {
        let now = Instant::now();
        let mut h = Holding::new(false);
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![Effect::Acquire { generation: 1 }]);
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![], "one acquisition at a time");
        assert!(h.acquired(1, Some(1), Some(4), false));
        assert_eq!(h.held(), Some(1));
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![]);
    }

    #[test]
    fn a_stale_acquisition_result_is_ignored() {
        let now = Instant::now();
        let mut h = Holding::new(false);
        h.reconcile(facts(Some(1)), now);
        assert!(!h.acquired(1, Some(2), None, false));
        assert_eq!(h.held(), None);
    }

    #[test]
    fn losing_quorum_stops_and_drops_the_vip() {
        let now = Instant::now();
        let mut h = Holding::new(true);
        h.reconcile(facts(Some(1)), now);
        h.acquired(1, Some(1), None, true);
        let lost = Facts {
            quorate: false,
            may_act: false,
            ..facts(Some(1))
        };
        assert_eq!(h.reconcile(lost, now), vec![Effect::Released, Effect::RemoveAddress]);
        assert_eq!(h.reconcile(lost, now), vec![], "removal already under way");
        h.address_removed(Ok(()));
        assert_eq!(h.local_address(), Some(false));
    }

    #[test]
    fn a_quorum_round_after_a_membership_change_keeps_what_is_held() {
        let now = Instant::now();
        let mut h = Holding::new(true);
        h.reconcile(facts(Some(1)), now);
        h.acquired(1, Some(1), None, true);
        let pending = Facts {
            quorate: false,
            may_act: false,
            quorum_pending: true,
            ..facts(Some(1))
        };
        assert_eq!(h.reconcile(pending, now), vec![], "no release, the address stays");
        assert_eq!(h.held(), Some(1));
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![], "nothing to acquire again");
        let lost = Facts {
            quorate: false,
            may_act: false,
            ..facts(Some(1))
        };
        assert_eq!(h.reconcile(lost, now), vec![Effect::Released, Effect::RemoveAddress]);
    }

    #[test]
    fn no_write_during_a_sync_round() {
        let mut h = Holding::new(false);
        let syncing = Facts {
            may_act: false,
            ..facts(Some(3))
        };
        assert_eq!(h.reconcile(syncing, Instant::now()), vec![]);
    }

    #[test]
    fn permission_denied_hands_over_at_once_and_retries_later() {
        let now = Instant::now();
        let mut h = Holding::new(false);
        h.reconcile(facts(Some(2)), now);
        let effects = h.acquire_failed(2, Failure::Permission, "UnauthorizedOperation".into(), now, policy(), 0.5);
        assert!(matches!(effects[0], Effect::RetryAt(_)));
        assert_eq!(
            effects[1],
            Effect::CannotServe {
                class: Incapacity::Permission,
                reason: "UnauthorizedOperation".into()
            }
        );
        // Announced once, not at every retry.
        h.reconcile(facts(Some(2)), now + Duration::from_secs(5));
        let again = h.acquire_failed(2, Failure::Permission, "x".into(), now + Duration::from_secs(5), policy(), 0.5);
        assert_eq!(again.len(), 1);
        assert!(h.recovered());
        assert!(!h.recovered());
    }

    #[test]
    fn transient_failures_hand_over_only_after_the_acquire_timeout() {
        let t0 = Instant::now();
        let mut h = Holding::new(false);
        h.reconcile(facts(Some(1)), t0);
        let e = h.acquire_failed(1, Failure::Transient, "timeout".into(), t0 + Duration::from_secs(10), policy(), 0.0);
        assert_eq!(e.len(), 1, "10 s of failures: keep trying");
        let Effect::RetryAt(at) = e[0] else { panic!("{e:?}") };
        assert_eq!(h.reconcile(facts(Some(1)), at - Duration::from_millis(1)), vec![], "not before the retry time");
        assert_eq!(h.reconcile(facts(Some(1)), at), vec![Effect::Acquire { generation: 1 }]);
        let e = h.acquire_failed(1, Failure::Transient, "timeout".into(), t0 + Duration::from_secs(20), policy(), 0.0);
        assert!(
            e.contains(&Effect::CannotServe {
                class: Incapacity::Unreachable,
                reason: "timeout".into()
            }),
            "{e:?}"
        );
    }

    #[test]
    fn other_failures_never_hand_over() {
        let t0 = Instant::now();
        let mut h = Holding::new(false);
        h.reconcile(facts(Some(1)), t0);
        let e = h.acquire_failed(1, Failure::Other, "route missing".into(), t0 + Duration::from_secs(60), policy(), 0.0);
        assert_eq!(e.len(), 1);
        assert_eq!(h.last_error(), Some("route missing"));
    }

    #[test]
    fn losing_the_unit_resets_failures_but_not_the_incapacity() {
        let t0 = Instant::now();
        let mut h = Holding::new(false);
        h.reconcile(facts(Some(1)), t0);
        h.acquire_failed(1, Failure::Permission, "denied".into(), t0, policy(), 0.0);
        h.reconcile(facts(None), t0);
        assert!(h.incapacity().is_some(), "stays until the permission checks pass");
        // Elected again later: tries at once.
        assert_eq!(h.reconcile(facts(Some(3)), t0), vec![Effect::Acquire { generation: 3 }]);
    }

    #[test]
    fn monitor_verdicts() {
        let now = Instant::now();
        let mut h = Holding::new(false);
        h.reconcile(facts(Some(1)), now);
        h.acquired(1, Some(1), Some(5), false);
        assert_eq!(h.monitored(Some(1), Verdict::Unknown("throttled".into()), None), vec![]);
        assert_eq!(h.held(), Some(1), "an EC2 error in monitoring never moves anything");
        assert_eq!(h.monitored(Some(1), Verdict::Repair, None), vec![Effect::Released, Effect::Drift]);
        assert_eq!(h.drift_repairs(), 1);
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![Effect::Acquire { generation: 1 }]);
        h.acquired(1, Some(1), Some(5), false);
        h.monitored(Some(1), Verdict::Yield { to: "i-2".into(), epoch: 6 }, None);
        assert_eq!(h.yielded(), Some(1));
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![], "never takes a yielded address back");
        assert_eq!(h.reconcile(facts(Some(2)), now), vec![Effect::Acquire { generation: 2 }], "a new election does");
    }

    #[test]
    fn a_holder_that_yields_takes_the_address_off_its_interface() {
        let now = Instant::now();
        let mut h = Holding::new(true);
        h.reconcile(facts(Some(1)), now);
        h.acquired(1, Some(1), Some(5), true);
        assert_eq!(
            h.monitored(Some(1), Verdict::Yield { to: "eni-2".into(), epoch: 6 }, Some(true)),
            vec![Effect::Released, Effect::RemoveAddress]
        );
        assert_eq!(h.yielded(), Some(1));
        assert_eq!(h.reconcile(facts(Some(1)), now), vec![], "never takes a yielded address back");
    }

    #[test]
    fn a_vip_missing_from_our_interface_is_drift() {
        let now = Instant::now();
        let mut h = Holding::new(true);
        h.reconcile(facts(Some(1)), now);
        h.acquired(1, Some(1), None, true);
        assert_eq!(h.monitored(Some(1), Verdict::Repair, Some(false)), vec![Effect::Released, Effect::Drift]);
        assert_eq!(h.local_address(), Some(false));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            Reconcile { wanted: Option<u64>, may_act: bool, quorate: bool, synced: bool },
            Acquired(u64),
            Failed(u64, u8),
            Cancelled(u64),
            Monitored(u8),
            Recovered,
            Removed,
            StandDown(bool),
            Wait(u16),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => (proptest::option::of(1u64..4), any::<bool>(), any::<bool>(), any::<bool>())
                    .prop_map(|(wanted, may_act, quorate, synced)| Step::Reconcile { wanted, may_act, quorate, synced }),
                1 => (1u64..4).prop_map(Step::Acquired),
                1 => (1u64..4, 0u8..4).prop_map(|(g, f)| Step::Failed(g, f)),
                1 => (1u64..4).prop_map(Step::Cancelled),
                1 => (0u8..4).prop_map(Step::Monitored),
                1 => Just(Step::Recovered),
                1 => Just(Step::Removed),
                1 => any::<bool>().prop_map(Step::StandDown),
                1 => (0u16..30_000).prop_map(Step::Wait),
            ]
        }

        proptest! {
            /// Whatever the order of facts and outcomes: an acquisition starts only for the
            /// generation we are elected for while we may act; never two at once; a yielded
            /// generation is never taken back; without quorum or election a VIP is removed; every
            /// holding that ends tells the hooks exactly once.
            #[test]
            fn holder_decisions_stay_safe(vip in any::<bool>(), steps in proptest::collection::vec(step(), 1..80)) {
                let mut h = Holding::new(vip);
                let mut now = Instant::now();
                let mut wanted = None;
                let mut running: Option<u64> = None;
                for s in steps {
                    let held_before = h.held();
                    let effects: Vec<Effect> = match s {
                        Step::Reconcile { wanted: w, may_act, quorate, synced } => {
                            wanted = w;
                            let facts = Facts { wanted: w, may_act: may_act && quorate, quorate, quorum_pending: false, synced };
                            let yielded = h.yielded();
                            let effects = h.reconcile(facts, now);
                            for e in &effects {
                                match e {
                                    Effect::Acquire { generation } => {
                                        prop_assert!(facts.may_act && facts.quorate);
                                        prop_assert_eq!(Some(*generation), w);
                                        prop_assert_ne!(Some(*generation), yielded);
                                        prop_assert!(running.is_none() || effects.contains(&Effect::Abort), "two acquisitions at once");
                                        running = Some(*generation);
                                    }
                                    Effect::Abort => running = None,
                                    Effect::RemoveAddress => prop_assert!(vip && (w.is_none() || !quorate)),
                                    _ => {}
                                }
                            }
                            if w.is_none() || !quorate {
                                prop_assert_eq!(h.held(), None, "held without election or quorum");
                                prop_assert!(running.is_none());
                            }
                            prop_assert_eq!(running, h.acquiring());
                            effects
                        }
                        Step::Acquired(g) => {
                            if running == Some(g) && h.acquired(g, wanted, Some(1), true) {
                                running = None;
                                prop_assert_eq!(h.held(), Some(g));
                            }
                            Vec::new()
                        }
                        Step::Failed(g, f) => {
                            if running == Some(g) {
                                let failure = [Failure::Permission, Failure::Identity, Failure::Transient, Failure::Other][f as usize];
                                let effects = h.acquire_failed(g, failure, "x".into(), now, Policy { acquire_timeout: Duration::from_secs(20), retry_cap: Duration::from_secs(10) }, 0.5);
                                running = None;
                                prop_assert!(matches!(effects.first(), Some(Effect::RetryAt(at)) if *at > now));
                                if matches!(failure, Failure::Permission | Failure::Identity) {
                                    prop_assert!(h.incapacity().is_some());
                                }
                                effects
                            } else {
                                Vec::new()
                            }
                        }
                        Step::Cancelled(g) => {
                            if running == Some(g) {
                                h.acquire_cancelled(g);
                                running = None;
                            }
                            Vec::new()
                        }
                        Step::Monitored(v) => {
                            let verdict = match v {
                                0 => Verdict::Ours,
                                1 => Verdict::Repair,
                                2 => Verdict::Yield { to: "i-2".into(), epoch: 9 },
                                _ => Verdict::Unknown("throttled".into()),
                            };
                            let effects = h.monitored(wanted, verdict.clone(), None);
                            if matches!(verdict, Verdict::Unknown(_) | Verdict::Ours) {
                                prop_assert_eq!(h.held(), held_before, "monitoring errors never move anything");
                            }
                            effects
                        }
                        Step::Recovered => {
                            h.recovered();
                            Vec::new()
                        }
                        Step::Removed => {
                            h.address_removed(Ok(()));
                            Vec::new()
                        }
                        Step::StandDown(drop_address) => {
                            let effects = h.stand_down(drop_address);
                            if effects.contains(&Effect::Abort) {
                                running = None;
                            }
                            prop_assert_eq!(h.held(), None);
                            prop_assert_eq!(h.acquiring(), None);
                            effects
                        }
                        Step::Wait(ms) => {
                            now += Duration::from_millis(u64::from(ms));
                            Vec::new()
                        }
                    };
                    let released = effects.iter().filter(|e| **e == Effect::Released).count();
                    let ended = held_before.is_some() && h.held().is_none();
                    prop_assert_eq!(released, usize::from(ended), "one release per ended holding: {:?} -> {:?}, {:?}", held_before, h.held(), effects);
                }
            }
        }
    }
}
