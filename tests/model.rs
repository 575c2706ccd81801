//! Model check of election and handover with stateright, driving the daemon's own pure core
//! (`core::view::View`). The model has N nodes, each with corosync and one daemon; CPG is a
//! per-partition agreed-order queue; quorum is a majority of the N votes. Actions: deliver the
//! next message, a daemon crash, a daemon (re)start, a planned release, a node split off into
//! its own partition, a heal of all partitions, and a reattach grace expiring.
//!
//! Two ways to model a network split or heal:
//! - `atomic_quorum` (the original, orderly model): every daemon learns its new corosync quorum
//!   right before the CPG configuration change, which is delivered in the same step as the split,
//!   after everything sent in the old configuration was delivered; totem comes last.
//! - otherwise, as Corosync really behaves: totem membership reaches the daemons first (ahead of
//!   CPG); the CPG configuration change of each new partition is a separate step (`Confchg`);
//!   each node's quorum notification is its own pending step (`QuorumNotify`), explored before or
//!   after the configuration change and before or after any message delivery; and what was
//!   queued in the old configuration is carried into the new one (delivered after the change,
//!   to the members of the new configuration) unless delivered before the split. The next split
//!   or heal waits until the CPG changes and quorum notifications of the last one are delivered.
//!
//! Checked for every reachable state (bounded depth):
//! - never two members acting (the View allows it and their corosync says quorate, as the
//!   daemon checks) as holder of one unit in one quorate partition;
//! - synced members of one CPG configuration agree on every holder;
//! - the number of holder changes stays bounded by the number of disruptions (no ping-pong);
//! - when a quorate partition is quiet (no message in flight, no startup timer pending) and has
//!   a member that can serve, every unit has a live (or reattaching) holder;
//! - no generation is created (no `Output::Elected`) in a partition holding a minority of the
//!   nodes;
//! - nothing moves on heal: after a heal and until the next disruption, every election and every
//!   synced member's table names, for each unit, the node the quorate side had at heal time.
//!
//! The atomic-model tests check the first four; the per-node tests check all and are ignored
//! until the View passes them. A violation prints a shortest path, one action per line.
//!
//! `MODEL_NODES=4 MODEL_DEPTH=14 cargo test --release --test model -- --nocapture` for a
//! longer run (`MODEL_PER_NODE_DEPTH`, `MODEL_PER_NODE_DEPTH_4` for the per-node model).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

use corosync_eip::core::view::{Event, LeaveReason, Output, ResourceSpec, View};
use corosync_eip::core::wire::{Body, MemberInfo};
use corosync_eip::core::MemberId;
use stateright::{Checker, Expectation, Model, Property};

const UNITS: &[&str] = &["web", "db"];

const ONE_HOLDER: &str = "one acting holder per unit per quorate partition";
const AGREE: &str = "synced members of a partition agree";
const BOUNDED: &str = "holder changes bounded by disruptions (no ping-pong)";
const HELD: &str = "a quiet quorate partition with a member has every unit held";
const NO_MINORITY_ELECTION: &str = "no generation is created in a non-quorate partition";
const NOTHING_MOVES_ON_HEAL: &str = "nothing moves on heal";
const FAILOVER: &str = "a failover happens";

/// The properties the original model checked.
const ORIGINAL: &[&str] = &[ONE_HOLDER, AGREE, BOUNDED, HELD];
/// The properties about quorum added with the non-atomic quorum model.
const QUORUM: &[&str] = &[NO_MINORITY_ELECTION, NOTHING_MOVES_ON_HEAL];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cluster {
    /// Partition label of each node (index = node id - 1).
    partition: Vec<u8>,
    /// The running daemon of each node, if any.
    daemons: Vec<Option<View>>,
    next_pid: u32,
    queues: BTreeMap<u8, VecDeque<(MemberId, Body)>>,
    /// Disruptions so far (crash, split, heal, release), to bound the search and holder changes.
    disruptions: u8,
    /// Holder changes seen so far (Elected outputs, counted once per partition).
    elections: u16,
    /// Members that vanished without release, for grace expiry.
    vanished: BTreeSet<MemberId>,
    /// The quorum notifications corosync still owes each node's daemon, oldest first (index =
    /// node id - 1): quorate, and the nodes in its quorum membership.
    quorum_pending: Vec<VecDeque<(bool, Vec<u32>)>>,
    /// CPG configuration changes not delivered yet, per partition: each member's event (the
    /// sides of a heal see different `joined` lists). No other CPG message is delivered in a
    /// partition before its pending change.
    confchg_pending: BTreeMap<u8, Vec<(MemberId, Event)>>,
    /// The first election seen in a minority partition.
    minority_election: Option<Elected>,
    /// The holder node of each unit on the quorate side at the last heal, until the next
    /// disruption.
    heal_holders: Option<BTreeMap<String, u32>>,
    /// The first election after a heal naming another node than `heal_holders`.
    moved_on_heal: Option<Elected>,
}

/// Holder of each unit, as one member sees it.
type Table = Vec<(String, Option<MemberId>)>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Elected {
    /// The nodes of the partition it happened in.
    nodes: Vec<u32>,
    unit: String,
    holder: MemberId,
    generation: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Deliver(u8),
    Crash(u32),
    Start(u32),
    Release(u32),
    Split(u32),
    Heal,
    GraceExpire(MemberId),
    /// A daemon's startup wait runs out.
    StartupTimer(u32),
    /// The pending CPG configuration change of a partition is delivered (non-atomic model).
    Confchg(u8),
    /// Corosync's quorum service notifies a node's daemon (non-atomic model).
    QuorumNotify(u32),
}

struct ElectionModel {
    nodes: u32,
    max_disruptions: u8,
    units: &'static [&'static str],
    /// The original model: quorum, CPG and totem change in one step with each split or heal.
    atomic_quorum: bool,
    /// Explore daemon crashes and planned releases (off to focus on partitions).
    process_faults: bool,
}

fn info(quorate: bool, nodes: &[u32], units: &[&str]) -> MemberInfo {
    MemberInfo {
        instance_id: "i-model".into(),
        network_interface_id: None,
        version: "model".into(),
        resources: units.iter().map(|u| u.to_string()).collect(),
        quorate,
        eligible: true,
        standby: false,
        nodes: nodes.to_vec(),
        availability_zone: None,
    }
}

impl Cluster {
    fn nodes_in(&self, part: u8) -> Vec<u32> {
        (0..self.partition.len() as u32).filter(|n| self.partition[*n as usize] == part).map(|n| n + 1).collect()
    }

    fn members_in(&self, part: u8) -> Vec<MemberId> {
        self.nodes_in(part)
            .into_iter()
            .filter_map(|n| self.daemons[n as usize - 1].as_ref().map(|v| v.local()))
            .collect()
    }

    fn parts(&self) -> BTreeSet<u8> {
        self.partition.iter().copied().collect()
    }

    fn quorate(&self, part: u8) -> bool {
        self.nodes_in(part).len() * 2 > self.partition.len()
    }

    fn absorb(&mut self, part: u8, from: MemberId, outputs: Vec<Output>, elected: &mut bool) {
        for o in outputs {
            match o {
                Output::Send(body) => self.queues.entry(part).or_default().push_back((from, body)),
                Output::Elected {
                    resource,
                    holder,
                    generation,
                    ..
                } => {
                    *elected = true;
                    let record = Elected {
                        nodes: self.nodes_in(part),
                        unit: resource.clone(),
                        holder,
                        generation,
                    };
                    if !self.quorate(part) && self.minority_election.is_none() {
                        self.minority_election = Some(record.clone());
                    }
                    let kept = self.heal_holders.as_ref().and_then(|h| h.get(&resource)).copied();
                    if kept.is_some_and(|node| node != holder.node) && self.moved_on_heal.is_none() {
                        self.moved_on_heal = Some(record);
                    }
                }
                Output::StartGrace(_) => {}
            }
        }
    }

    /// Feeds `event` to every daemon of the partition, in one agreed step.
    fn broadcast(&mut self, part: u8, event: &Event) {
        let mut elected = false;
        for n in self.nodes_in(part) {
            if let Some(mut view) = self.daemons[n as usize - 1].take() {
                let out = view.handle(event.clone());
                let me = view.local();
                self.daemons[n as usize - 1] = Some(view);
                self.absorb(part, me, out, &mut elected);
            }
        }
        if elected {
            self.elections += 1;
        }
    }

    /// Virtual synchrony: what was sent in the old configuration is delivered in it.
    fn flush(&mut self, part: u8) {
        let mut guard = 0;
        while let Some((from, body)) = self.queues.get_mut(&part).and_then(|q| q.pop_front()) {
            self.broadcast(part, &Event::Message { from, body });
            guard += 1;
            if guard > 200 {
                break;
            }
        }
    }

    /// The atomic model: every daemon of the partition learns its quorum right before CPG.
    fn update_quorum(&mut self, part: u8) {
        let q = self.quorate(part);
        let nodes = self.nodes_in(part);
        let mut elected = false;
        for n in nodes.clone() {
            if let Some(mut view) = self.daemons[n as usize - 1].take() {
                let out = view.set_local_quorate(q, nodes.clone());
                let me = view.local();
                self.daemons[n as usize - 1] = Some(view);
                self.absorb(part, me, out, &mut elected);
            }
        }
    }

    /// The non-atomic model: corosync owes every daemon of the partition a quorum notification.
    fn owe_quorum(&mut self, part: u8) {
        let q = self.quorate(part);
        let nodes = self.nodes_in(part);
        for n in &nodes {
            if self.daemons[*n as usize - 1].is_some() {
                self.quorum_pending[*n as usize - 1].push_back((q, nodes.clone()));
            }
        }
    }

    fn confchg(&mut self, part: u8, left: Vec<(MemberId, LeaveReason)>, joined: Vec<MemberId>) {
        let members = self.members_in(part);
        self.broadcast(part, &Event::Confchg { members, left, joined });
    }

    /// Records who the quorate side holds each unit with, as a heal starts.
    fn record_heal_holders(&mut self) {
        self.heal_holders = None;
        let Some(q) = self.parts().into_iter().find(|p| self.quorate(*p)) else {
            return;
        };
        let members = self.members_in(q);
        let views: Vec<&View> = self
            .nodes_in(q)
            .iter()
            .filter_map(|n| self.daemons[*n as usize - 1].as_ref())
            .filter(|v| v.is_synced())
            .collect();
        let units: BTreeSet<&String> = views.iter().flat_map(|v| v.assignments().keys()).collect();
        let mut kept = BTreeMap::new();
        for unit in units {
            let holders: BTreeSet<Option<MemberId>> =
                views.iter().map(|v| v.assignments().get(unit).and_then(|a| a.holder)).collect();
            if let [Some(h)] = holders.into_iter().collect::<Vec<_>>()[..] {
                if members.contains(&h) {
                    kept.insert(unit.clone(), h.node);
                }
            }
        }
        if !kept.is_empty() {
            self.heal_holders = Some(kept);
        }
    }

    /// A crash, release, split or heal: the heal record no longer applies.
    fn disrupt(&mut self) {
        self.disruptions += 1;
        self.heal_holders = None;
    }
}

impl Model for ElectionModel {
    type State = Cluster;
    type Action = Action;

    fn init_states(&self) -> Vec<Cluster> {
        let n = self.nodes as usize;
        let mut c = Cluster {
            partition: vec![0; n],
            daemons: vec![None; n],
            next_pid: 100,
            queues: BTreeMap::new(),
            disruptions: 0,
            elections: 0,
            vanished: BTreeSet::new(),
            quorum_pending: vec![VecDeque::new(); n],
            confchg_pending: BTreeMap::new(),
            minority_election: None,
            heal_holders: None,
            moved_on_heal: None,
        };
        // All daemons start together and settle.
        for node in 1..=self.nodes {
            start(&mut c, node, self.units);
        }
        c.flush(0);
        vec![c]
    }

    fn actions(&self, c: &Cluster, actions: &mut Vec<Action>) {
        for (part, q) in &c.queues {
            if !q.is_empty() && !c.confchg_pending.contains_key(part) {
                actions.push(Action::Deliver(*part));
            }
        }
        for part in c.confchg_pending.keys() {
            actions.push(Action::Confchg(*part));
        }
        for (i, q) in c.quorum_pending.iter().enumerate() {
            if !q.is_empty() {
                actions.push(Action::QuorumNotify(i as u32 + 1));
            }
        }
        // Membership changes one at a time: the next one waits until CPG and the quorum service
        // delivered the last (their notifications lag it by milliseconds, not by a partition).
        let settled = c.confchg_pending.is_empty() && c.quorum_pending.iter().all(|q| q.is_empty());
        let disrupt = settled && c.disruptions < self.max_disruptions;
        for node in 1..=self.nodes {
            let running = c.daemons[node as usize - 1].is_some();
            if running && disrupt && self.process_faults {
                actions.push(Action::Crash(node));
                actions.push(Action::Release(node));
            }
            if !running && settled {
                actions.push(Action::Start(node));
            }
            let part = c.partition[node as usize - 1];
            if disrupt && c.nodes_in(part).len() > 1 {
                actions.push(Action::Split(node));
            }
        }
        if disrupt && c.parts().len() > 1 {
            actions.push(Action::Heal);
        }
        for m in &c.vanished {
            actions.push(Action::GraceExpire(*m));
        }
        for (i, d) in c.daemons.iter().enumerate() {
            if d.as_ref().is_some_and(|v| v.awaiting_startup()) {
                actions.push(Action::StartupTimer(i as u32 + 1));
            }
        }
    }

    fn next_state(&self, last: &Cluster, action: Action) -> Option<Cluster> {
        let mut c = last.clone();
        match action {
            Action::Deliver(part) => {
                let (from, body) = c.queues.get_mut(&part)?.pop_front()?;
                c.broadcast(part, &Event::Message { from, body });
            }
            Action::Confchg(part) => {
                let events = c.confchg_pending.remove(&part)?;
                let mut elected = false;
                for (m, event) in events {
                    let idx = m.node as usize - 1;
                    if let Some(mut view) = c.daemons[idx].take() {
                        let out = view.handle(event);
                        c.daemons[idx] = Some(view);
                        c.absorb(part, m, out, &mut elected);
                    }
                }
                if elected {
                    c.elections += 1;
                }
            }
            Action::QuorumNotify(node) => {
                let idx = node as usize - 1;
                let (quorate, nodes) = c.quorum_pending[idx].pop_front()?;
                let part = c.partition[idx];
                let mut view = c.daemons[idx].take()?;
                let out = view.set_local_quorate(quorate, nodes);
                let me = view.local();
                c.daemons[idx] = Some(view);
                let mut elected = false;
                c.absorb(part, me, out, &mut elected);
                if elected {
                    c.elections += 1;
                }
            }
            Action::Crash(node) => {
                let part = c.partition[node as usize - 1];
                c.flush(part);
                c.disrupt();
                let view = c.daemons[node as usize - 1].take()?;
                c.quorum_pending[node as usize - 1].clear();
                c.vanished.insert(view.local());
                c.confchg(part, vec![(view.local(), LeaveReason::ProcessGone)], vec![]);
            }
            Action::Release(node) => {
                let part = c.partition[node as usize - 1];
                let me = c.daemons[node as usize - 1].as_ref()?.local();
                // The release moves what it held: the heal record ends here.
                c.disrupt();
                c.queues.entry(part).or_default().push_back((me, Body::Release));
                c.flush(part);
                c.daemons[node as usize - 1] = None;
                c.quorum_pending[node as usize - 1].clear();
                c.confchg(part, vec![(me, LeaveReason::ProcessGone)], vec![]);
            }
            Action::Start(node) => {
                start(&mut c, node, self.units);
            }
            Action::Split(node) if self.atomic_quorum => {
                let old = c.partition[node as usize - 1];
                c.flush(old);
                let new = (0..=c.partition.len() as u8).find(|p| !c.partition.contains(p))?;
                c.partition[node as usize - 1] = new;
                c.disrupt();
                let me = c.daemons[node as usize - 1].as_ref().map(|v| v.local());
                let others = c.members_in(old);
                c.update_quorum(old);
                c.update_quorum(new);
                c.confchg(old, me.into_iter().map(|m| (m, LeaveReason::NodeDown)).collect(), vec![]);
                c.confchg(new, others.into_iter().map(|m| (m, LeaveReason::NodeDown)).collect(), vec![]);
                let totem_old = c.nodes_in(old);
                let totem_new = c.nodes_in(new);
                c.broadcast(old, &Event::Totem { nodes: totem_old });
                c.broadcast(new, &Event::Totem { nodes: totem_new });
            }
            Action::Split(node) => {
                let old = c.partition[node as usize - 1];
                let new = (0..=c.partition.len() as u8).find(|p| !c.partition.contains(p))?;
                c.partition[node as usize - 1] = new;
                c.disrupt();
                // What was queued in the old configuration is delivered on both sides, after
                // their configuration change (a member drops what comes from a non-member).
                if let Some(q) = c.queues.get(&old).filter(|q| !q.is_empty()).cloned() {
                    c.queues.insert(new, q);
                }
                let me = c.daemons[node as usize - 1].as_ref().map(|v| v.local());
                let others = c.members_in(old);
                c.owe_quorum(old);
                c.owe_quorum(new);
                // Totem runs ahead of CPG.
                let totem_old = c.nodes_in(old);
                let totem_new = c.nodes_in(new);
                c.broadcast(old, &Event::Totem { nodes: totem_old });
                c.broadcast(new, &Event::Totem { nodes: totem_new });
                // CPG tells a partition only when its group lost a member.
                for (part, gone) in [(old, me.into_iter().collect::<Vec<_>>()), (new, others)] {
                    let members = c.members_in(part);
                    if gone.is_empty() || members.is_empty() {
                        continue;
                    }
                    let left: Vec<(MemberId, LeaveReason)> = gone.iter().map(|m| (*m, LeaveReason::NodeDown)).collect();
                    let event = Event::Confchg {
                        members: members.clone(),
                        left,
                        joined: vec![],
                    };
                    c.confchg_pending.insert(part, members.iter().map(|m| (*m, event.clone())).collect());
                }
            }
            Action::Heal => {
                let parts = c.parts();
                if self.atomic_quorum {
                    for p in &parts {
                        c.flush(*p);
                    }
                }
                c.record_heal_holders();
                let before: BTreeMap<u8, Vec<MemberId>> = parts.iter().map(|p| (*p, c.members_in(*p))).collect();
                for p in c.partition.iter_mut() {
                    *p = 0;
                }
                for p in parts.iter().filter(|p| **p != 0) {
                    if let Some(q) = c.queues.remove(p) {
                        c.queues.entry(0).or_default().extend(q);
                    }
                }
                c.disruptions += 1;
                let members = c.members_in(0);
                if self.atomic_quorum {
                    c.update_quorum(0);
                    // Each side sees the other side join.
                    let mut elected = false;
                    for side in before.values() {
                        let joined: Vec<MemberId> = members.iter().copied().filter(|m| !side.contains(m)).collect();
                        for m in side {
                            let idx = m.node as usize - 1;
                            if let Some(mut view) = c.daemons[idx].take() {
                                let out = view.handle(Event::Confchg {
                                    members: members.clone(),
                                    left: vec![],
                                    joined: joined.clone(),
                                });
                                c.daemons[idx] = Some(view);
                                c.absorb(0, *m, out, &mut elected);
                            }
                        }
                    }
                    if elected {
                        c.elections += 1;
                    }
                    let totem = c.nodes_in(0);
                    c.broadcast(0, &Event::Totem { nodes: totem });
                } else {
                    c.owe_quorum(0);
                    let totem = c.nodes_in(0);
                    c.broadcast(0, &Event::Totem { nodes: totem });
                    // Each side sees the other side join (CPG tells a side only if someone did).
                    let mut events = Vec::new();
                    for side in before.values() {
                        let joined: Vec<MemberId> = members.iter().copied().filter(|m| !side.contains(m)).collect();
                        if joined.is_empty() {
                            continue;
                        }
                        for m in side {
                            events.push((
                                *m,
                                Event::Confchg {
                                    members: members.clone(),
                                    left: vec![],
                                    joined: joined.clone(),
                                },
                            ));
                        }
                    }
                    if !events.is_empty() {
                        c.confchg_pending.insert(0, events);
                    }
                }
            }
            Action::StartupTimer(node) => {
                let part = c.partition[node as usize - 1];
                let me = c.daemons[node as usize - 1].as_ref()?.local();
                c.queues.entry(part).or_default().push_back((me, Body::PlaceNow));
            }
            Action::GraceExpire(member) => {
                c.vanished.remove(&member);
                // Any daemon of a partition that still keeps the reservation announces it.
                for p in c.parts() {
                    let sender = c
                        .nodes_in(p)
                        .into_iter()
                        .filter_map(|n| c.daemons[n as usize - 1].as_ref())
                        .find(|v| v.vanished().contains(&member))
                        .map(|v| v.local());
                    if let Some(from) = sender {
                        c.queues.entry(p).or_default().push_back((from, Body::GraceExpired { member }));
                    }
                }
            }
        }
        Some(c)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(ONE_HOLDER, |m: &ElectionModel, c: &Cluster| {
                c.parts().iter().filter(|p| c.quorate(**p)).all(|p| {
                    m.units.iter().all(|unit| {
                        // The daemon's own gate: the view allows it and its corosync says quorate.
                        c.nodes_in(*p)
                            .iter()
                            .filter_map(|n| c.daemons[*n as usize - 1].as_ref())
                            .filter(|v| v.may_act() && v.local_info().quorate)
                            .filter(|v| v.held_by_local().iter().any(|(u, _)| u == unit))
                            .count()
                            <= 1
                    })
                })
            }),
            Property::always(AGREE, |_, c: &Cluster| {
                // Members compare within one CPG configuration: while a partition's change is
                // pending, its members still see the configurations they came from.
                c.parts().iter().all(|p| {
                    let mut tables: BTreeMap<&BTreeSet<MemberId>, Vec<Table>> = BTreeMap::new();
                    for v in c.nodes_in(*p).iter().filter_map(|n| c.daemons[*n as usize - 1].as_ref()) {
                        if v.is_synced() {
                            let table = v.assignments().iter().map(|(u, a)| (u.clone(), a.holder)).collect();
                            tables.entry(v.members()).or_default().push(table);
                        }
                    }
                    tables.values().all(|t| t.windows(2).all(|w| w[0] == w[1]))
                })
            }),
            Property::always(BOUNDED, |_, c: &Cluster| {
                // Initial placement plus at most one election round per disruption or restart.
                u16::from(c.disruptions) * 2 + 2 + u16::try_from(c.next_pid - 100).unwrap_or(u16::MAX) >= c.elections
            }),
            Property::always(HELD, |m: &ElectionModel, c: &Cluster| {
                c.parts().iter().all(|p| {
                    let quiet = c.queues.get(p).is_none_or(|q| q.is_empty())
                        && !c.confchg_pending.contains_key(p)
                        && c.nodes_in(*p).iter().all(|n| c.quorum_pending[*n as usize - 1].is_empty());
                    let views: Vec<&View> = c.nodes_in(*p).iter().filter_map(|n| c.daemons[*n as usize - 1].as_ref()).collect();
                    // A member still inside its startup wait has a timer pending: not quiet yet.
                    let waiting = views.iter().any(|v| v.awaiting_startup());
                    if !quiet || waiting || !c.quorate(*p) || views.is_empty() || !views.iter().all(|v| v.is_synced()) {
                        return true;
                    }
                    let v = views[0];
                    m.units.iter().all(|u| {
                        v.assignments()
                            .get(*u)
                            .and_then(|a| a.holder)
                            .is_some_and(|h| v.members().contains(&h) || v.vanished().contains(&h))
                    })
                })
            }),
            Property::always(NO_MINORITY_ELECTION, |_, c: &Cluster| c.minority_election.is_none()),
            Property::always(NOTHING_MOVES_ON_HEAL, |_, c: &Cluster| {
                if c.moved_on_heal.is_some() {
                    return false;
                }
                let Some(kept) = &c.heal_holders else {
                    return true;
                };
                // Until the heal's configuration change is delivered, members show their old side.
                if c.confchg_pending.contains_key(&0) {
                    return true;
                }
                c.daemons.iter().flatten().filter(|v| v.is_synced()).all(|v| {
                    kept.iter().all(|(unit, node)| {
                        !matches!(v.assignments().get(unit).and_then(|a| a.holder), Some(h) if h.node != *node)
                    })
                })
            }),
            Property::sometimes(FAILOVER, |_, c: &Cluster| c.elections >= 2),
        ]
    }
}

fn start(c: &mut Cluster, node: u32, units: &[&str]) {
    let part = c.partition[node as usize - 1];
    c.next_pid += 1;
    let me = MemberId { node, pid: c.next_pid };
    let nodes = c.nodes_in(part);
    let specs = units.iter().map(|u| ResourceSpec { name: u.to_string(), prefer: vec![] }).collect();
    c.daemons[node as usize - 1] = Some(View::new(me, info(c.quorate(part), &nodes, units), specs));
    c.confchg(part, vec![], vec![me]);
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nodes_text(nodes: &[u32]) -> String {
    let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    format!("{{{}}}", list.join(","))
}

fn body_text(body: &Body) -> String {
    match body {
        Body::State(s) => {
            let table: Vec<String> = s
                .assignments
                .iter()
                .map(|a| format!("{}={} gen {}", a.resource, a.holder.map_or("-".into(), |h| h.to_string()), a.generation))
                .collect();
            format!("State(quorate={}, synced={}, [{}])", s.info.quorate, s.synced, table.join(", "))
        }
        Body::Quorum { quorate, nodes } => format!("Quorum(quorate={quorate}, nodes={})", nodes_text(nodes)),
        other => format!("{other:?}"),
    }
}

fn table_text(v: &View) -> String {
    let table: Vec<String> = v
        .assignments()
        .iter()
        .map(|(u, a)| format!("{u}={} gen {}", a.holder.map_or("-".into(), |h| h.to_string()), a.generation))
        .collect();
    table.join(", ")
}

/// What one step of a path did, in words.
fn step_text(model: &ElectionModel, before: &Cluster, action: &Action, after: &Cluster) -> String {
    let what = match action {
        Action::Deliver(p) => match before.queues.get(p).and_then(|q| q.front()) {
            Some((from, body)) => format!("CPG delivers {} from {from} in {}", body_text(body), nodes_text(&before.nodes_in(*p))),
            None => format!("{action:?}"),
        },
        Action::Confchg(p) => {
            let events = before.confchg_pending.get(p).map_or(&[][..], |e| &e[..]);
            let list = |ms: &mut dyn Iterator<Item = &MemberId>| ms.map(|m| m.to_string()).collect::<Vec<_>>().join(" ");
            let mut text = format!("CPG configuration change in {}", nodes_text(&before.nodes_in(*p)));
            if let Some((_, Event::Confchg { members, left, .. })) = events.first() {
                let _ = write!(text, ": members [{}]", list(&mut members.iter()));
                if !left.is_empty() {
                    let _ = write!(text, ", left [{}]", list(&mut left.iter().map(|(m, _)| m)));
                }
            }
            // The sides of a heal each see the other join.
            let mut sides: BTreeMap<Vec<MemberId>, Vec<MemberId>> = BTreeMap::new();
            for (m, e) in events {
                if let Event::Confchg { joined, .. } = e {
                    if !joined.is_empty() {
                        sides.entry(joined.clone()).or_default().push(*m);
                    }
                }
            }
            for (joined, seen_by) in sides {
                let _ = write!(text, ", joined [{}] (seen by {})", list(&mut joined.iter()), list(&mut seen_by.iter()));
            }
            text
        }
        Action::QuorumNotify(n) => match before.quorum_pending[*n as usize - 1].front() {
            Some((q, nodes)) => format!("corosync quorum tells node {n}: quorate={q}, nodes={} (its daemon multicasts Quorum)", nodes_text(nodes)),
            None => format!("{action:?}"),
        },
        Action::Split(n) => {
            let parts: Vec<String> = after.parts().iter().map(|p| nodes_text(&after.nodes_in(*p))).collect();
            let how = if model.atomic_quorum {
                "quorum set, CPG configuration change and totem delivered at once"
            } else {
                "totem delivered to both sides, CPG and quorum pending"
            };
            format!("network cuts node {n} off: partitions {} ({how})", parts.join(" "))
        }
        Action::Heal => {
            let how = if model.atomic_quorum {
                "quorum set, CPG configuration change and totem delivered at once"
            } else {
                "totem delivered, CPG and quorum pending"
            };
            format!("network heals: one partition of all nodes ({how})")
        }
        other => format!("{other:?}"),
    };
    let mut text = format!("{action:?}: {what}");
    for (i, (b, a)) in before.daemons.iter().zip(&after.daemons).enumerate() {
        let (Some(b), Some(a)) = (b, a) else { continue };
        if b.assignments() != a.assignments() {
            let _ = write!(text, "\n      node {} table now: {}", i + 1, table_text(a));
        }
        if b.is_synced() != a.is_synced() {
            let _ = write!(text, "\n      node {} {}", i + 1, if a.is_synced() { "synced" } else { "syncing" });
        }
    }
    if matches!(action, Action::Heal) {
        if let Some(kept) = &after.heal_holders {
            let kept: Vec<String> = kept.iter().map(|(u, n)| format!("{u} on node {n}")).collect();
            let _ = write!(text, "\n      the quorate side holds {} (must not move)", kept.join(", "));
        }
    }
    if after.minority_election != before.minority_election {
        if let Some(e) = &after.minority_election {
            let _ = write!(text, "\n      => an election in the minority partition {} ({} -> {}, gen {})", nodes_text(&e.nodes), e.unit, e.holder, e.generation);
        }
    }
    for p in model.properties() {
        if p.expectation == Expectation::Always && (p.condition)(model, before) && !(p.condition)(model, after) {
            let _ = write!(text, "\n      !! violates \"{}\"", p.name);
        }
    }
    text
}

/// A counterexample path as text: the property, the initial holders, one action per line.
fn path_text(model: &ElectionModel, title: &str, path: Vec<(Cluster, Option<Action>)>) -> String {
    let mut text = format!(
        "{title} ({} nodes, units {:?}, {} quorum model)\n",
        model.nodes,
        model.units,
        if model.atomic_quorum { "atomic" } else { "per-node" }
    );
    if let Some((init, _)) = path.first() {
        let _ = writeln!(text, "Initial state (all nodes started and synced):");
        for (i, v) in init.daemons.iter().enumerate() {
            if let Some(v) = v {
                let _ = writeln!(text, "      node {} ({}): {}", i + 1, v.local(), table_text(v));
            }
        }
    }
    for (i, w) in path.windows(2).enumerate() {
        if let (before, Some(action)) = &w[0] {
            let _ = writeln!(text, "{:2}. {}", i + 1, step_text(model, before, action, &w[1].0));
        }
    }
    if let Some((last, _)) = path.last() {
        let _ = writeln!(text, "Final tables:");
        for (i, v) in last.daemons.iter().enumerate() {
            if let Some(v) = v {
                let _ = writeln!(text, "      node {} ({}, partition {}): {}", i + 1, v.local(), last.partition[i], table_text(v));
            }
        }
    }
    text
}

/// Runs the model, prints the state count and returns the counterexamples found for
/// `properties`, as text.
fn run(model: ElectionModel, depth: usize, properties: &[&'static str]) -> Vec<String> {
    let checker = model.checker().target_max_depth(depth).spawn_bfs().join();
    let m = checker.model();
    println!(
        "{} nodes, {} quorum model, depth {depth}, {} disruptions{}: {} unique states",
        m.nodes,
        if m.atomic_quorum { "atomic" } else { "per-node" },
        m.max_disruptions,
        if m.process_faults { "" } else { " (partitions only)" },
        checker.unique_state_count()
    );
    assert!(checker.discovery(FAILOVER).is_some(), "no failover explored: the model is too shallow");
    // Stateright keeps the last violating state it visited; show the shortest path instead.
    properties
        .iter()
        .filter_map(|p| {
            let path = checker.discovery(p)?.into_vec();
            let title = format!("Property violated: \"{p}\"");
            Some(path_text(m, &title, shortest(m, p, path.len()).unwrap_or(path)))
        })
        .collect()
}

/// A shortest path (breadth first) from the initial state to a state violating `property`,
/// within `depth` states.
fn shortest(model: &ElectionModel, property: &str, depth: usize) -> Option<Vec<(Cluster, Option<Action>)>> {
    let holds = model.properties().into_iter().find(|p| p.name == property)?.condition;
    shortest_to(model, depth, |c| !holds(model, c))
}

/// A shortest path (breadth first) from the initial state to a `bad` state, within `depth`
/// states.
fn shortest_to(model: &ElectionModel, depth: usize, bad: impl Fn(&Cluster) -> bool) -> Option<Vec<(Cluster, Option<Action>)>> {
    // Every state seen, with the state and action that led to it.
    let mut seen: Vec<(Cluster, Option<(usize, Action)>)> = Vec::new();
    let mut index: HashMap<Cluster, usize> = HashMap::new();
    let mut level: Vec<usize> = Vec::new();
    for s in model.init_states() {
        index.insert(s.clone(), seen.len());
        level.push(seen.len());
        seen.push((s, None));
    }
    for _ in 0..depth {
        if let Some(&bad) = level.iter().find(|i| bad(&seen[**i].0)) {
            let mut path = vec![(seen[bad].0.clone(), None)];
            let mut at = bad;
            while let Some((parent, action)) = seen[at].1.clone() {
                path.push((seen[parent].0.clone(), Some(action)));
                at = parent;
            }
            path.reverse();
            return Some(path);
        }
        let mut next = Vec::new();
        for i in level {
            let mut actions = Vec::new();
            model.actions(&seen[i].0, &mut actions);
            for a in actions {
                let Some(s) = model.next_state(&seen[i].0, a.clone()) else { continue };
                if !index.contains_key(&s) {
                    index.insert(s.clone(), seen.len());
                    next.push(seen.len());
                    seen.push((s, Some((i, a))));
                }
            }
        }
        level = next;
    }
    None
}

fn check(model: ElectionModel, depth: usize, properties: &[&'static str]) {
    report(run(model, depth, properties));
}

fn atomic(nodes: u32, disruptions: u8) -> ElectionModel {
    ElectionModel {
        nodes,
        max_disruptions: disruptions,
        units: UNITS,
        atomic_quorum: true,
        process_faults: true,
    }
}

// The atomic model checks the properties it always checked. With the quorum properties it fails
// on the current View too:
// the atomic split sets the quorum right before the configuration change, but the View judges
// by the flags delivered over CPG, and the lone node's Quorum(false) is still in flight
// (`atomic_model_keeps_the_quorum_properties`).
#[test]
fn election_and_handover_are_safe_for_three_nodes() {
    check(atomic(env("MODEL_NODES", 3) as u32, env("MODEL_DISRUPTIONS", 3) as u8), env("MODEL_DEPTH", 9), ORIGINAL);
}

#[test]
fn two_nodes_without_two_node_quorum_never_act_alone() {
    // With two nodes and majority quorum a lone node is never quorate: it must never act.
    check(atomic(2, 3), 10, ORIGINAL);
}

#[test]
fn election_and_handover_are_safe_for_four_nodes() {
    check(atomic(4, 3), env("MODEL_DEPTH_4", 8), ORIGINAL);
}

/// Plays a scripted run: `step` takes one action, `settle` then lets every pending CPG change,
/// quorum notification and message happen (in the order `actions` lists them).
struct Play<'a> {
    model: &'a ElectionModel,
    path: Vec<(Cluster, Option<Action>)>,
    state: Cluster,
}

impl<'a> Play<'a> {
    fn new(model: &'a ElectionModel) -> Play<'a> {
        let state = model.init_states().remove(0);
        Play { model, path: Vec::new(), state }
    }

    fn step(mut self, action: Action) -> Self {
        let next = self.model.next_state(&self.state, action.clone()).unwrap_or_else(|| panic!("{action:?} is not possible"));
        self.path.push((std::mem::replace(&mut self.state, next), Some(action)));
        self
    }

    fn settle(mut self) -> Self {
        for _ in 0..100 {
            let mut actions = Vec::new();
            self.model.actions(&self.state, &mut actions);
            let Some(next) = actions
                .into_iter()
                .find(|a| matches!(a, Action::Deliver(_) | Action::Confchg(_) | Action::QuorumNotify(_)))
            else {
                break;
            };
            self = self.step(next);
        }
        self
    }

    /// The first node holding nothing at the start.
    fn non_holder(&self) -> u32 {
        let v = self.state.daemons[0].as_ref().expect("node 1 runs");
        (1..=self.model.nodes).find(|n| v.assignments().values().all(|a| a.holder.map(|h| h.node) != Some(*n))).expect("a node holds nothing")
    }

    /// The path as text, and whether any property was violated along it.
    fn finish(mut self, title: &str) -> (String, bool) {
        self.path.push((self.state.clone(), None));
        let properties = self.model.properties();
        let violated = self.path.iter().any(|(c, _)| {
            properties.iter().any(|p| p.expectation == Expectation::Always && !(p.condition)(self.model, c))
        });
        (path_text(self.model, title, self.path), violated)
    }
}

fn per_node(nodes: u32, disruptions: u8, units: &'static [&'static str], process_faults: bool) -> ElectionModel {
    ElectionModel {
        nodes,
        max_disruptions: disruptions,
        units,
        atomic_quorum: false,
        process_faults,
    }
}

/// Splits and heals as Corosync delivers them: each node's quorum notification on its own
/// schedule, totem ahead of CPG, messages carried across configuration changes.
///
/// On the current View this fails: a node cut off alone judges its partition by the quorum
/// flags delivered over CPG, where its own is still true at the configuration change, so it
/// elects itself for the units of the nodes it lost; on heal that newer generation wins the
/// merge and the address moves. The atomic model finds the same with these properties (the
/// View never waits for its own Quorum message); this one also rules out fixes that only look
/// at the local quorum flag, which may come after the configuration change (with such a fix
/// the atomic model passes and this one does not).
///
/// It also finds, without any minority election, an isolated holder that still acts after the
/// heal: its Quorum(false) was carried into the healed configuration undelivered, its quorum
/// service says quorate again before the CPG change of the heal, and its stale table (itself,
/// older generation) makes it act beside the majority's new holder until that change arrives.
#[test]
#[ignore = "fails on the current View (a minority elects, the address moves on heal); enable once the View is fixed"]
fn partitions_with_per_node_quorum_notifications_are_safe() {
    let mut all = ORIGINAL.to_vec();
    all.extend(QUORUM);
    let mut found = run(per_node(3, 3, &["web"], false), env("MODEL_PER_NODE_DEPTH", 16), &all);
    found.extend(run(per_node(4, 2, UNITS, false), env("MODEL_PER_NODE_DEPTH_4", 14), &all));
    report(found);
}

#[test]
#[ignore = "fails on the current View (a minority elects); enable once the View is fixed"]
fn per_node_quorum_with_crashes_and_releases_is_safe() {
    let mut all = ORIGINAL.to_vec();
    all.extend(QUORUM);
    report(run(per_node(3, 2, UNITS, true), 12, &all));
}

#[test]
#[ignore = "fails on the current View (a minority elects, the address moves on heal); enable once the View is fixed"]
fn atomic_model_keeps_the_quorum_properties() {
    report(run(atomic(3, 3), 9, QUORUM));
}

fn report(found: Vec<String>) {
    for f in &found {
        println!("{f}");
    }
    assert!(found.is_empty(), "{} properties violated (paths above)", found.len());
}

/// The lab case, scripted: cut off a node that holds nothing, its quorum notification coming
/// just before or just after the CPG configuration change, then heal.
#[test]
#[ignore = "fails on the current View (a minority elects, the address moves on heal); enable once the View is fixed"]
fn isolated_non_holder_elects_nothing_and_nothing_moves_on_heal() {
    let model = per_node(3, 2, UNITS, false);
    let n = Play::new(&model).non_holder();
    let before = Play::new(&model)
        .step(Action::Split(n))
        .step(Action::QuorumNotify(n))
        .step(Action::Confchg(1))
        .settle()
        .step(Action::Heal)
        .settle()
        .finish(&format!("Node {n} (holding nothing) cut off, quorum notification before the CPG change, then heal"));
    let after = Play::new(&model)
        .step(Action::Split(n))
        .step(Action::Confchg(1))
        .step(Action::QuorumNotify(n))
        .settle()
        .step(Action::Heal)
        .settle()
        .finish(&format!("Node {n} (holding nothing) cut off, quorum notification after the CPG change, then heal"));
    let model = atomic(3, 2);
    let old = Play::new(&model)
        .step(Action::Split(n))
        .settle()
        .step(Action::Heal)
        .settle()
        .finish(&format!("Node {n} (holding nothing) cut off, then heal"));
    let mut failed = 0;
    for (text, violated) in [before, after, old] {
        println!("{text}");
        failed += usize::from(violated);
    }
    assert_eq!(failed, 0, "{failed} runs violate a property (paths above)");
}
