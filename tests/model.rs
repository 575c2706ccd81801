//! Model check of election and handover with stateright, driving the daemon's own pure core
//! (`core::view::View`). The model has N nodes, each with corosync and one daemon; CPG is a
//! per-partition agreed-order queue; quorum is a majority of the N votes. Actions: deliver the
//! next message, a daemon crash, a daemon (re)start, a planned release, a node split off into
//! its own partition, a heal of all partitions, and a reattach grace expiring.
//!
//! Checked for every reachable state (bounded depth):
//! - never two members acting as holder of one unit in one quorate partition;
//! - synced members of a partition agree on every holder;
//! - the number of holder changes stays bounded by the number of disruptions (no ping-pong);
//! - when a quorate partition is quiet (no message in flight, no startup timer pending) and has
//!   a member that can serve, every unit has a live (or reattaching) holder.
//!
//! `MODEL_NODES=4 MODEL_DEPTH=14 cargo test --release --test model -- --nocapture` for a
//! longer run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use corosync_eip::core::view::{Event, LeaveReason, Output, ResourceSpec, View};
use corosync_eip::core::wire::{Body, MemberInfo};
use corosync_eip::core::MemberId;
use stateright::{Checker, Model, Property};

const UNITS: [&str; 2] = ["web", "db"];

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
}

struct ElectionModel {
    nodes: u32,
    max_disruptions: u8,
}

fn info(quorate: bool, nodes: &[u32]) -> MemberInfo {
    MemberInfo {
        instance_id: "i-model".into(),
        network_interface_id: None,
        version: "model".into(),
        resources: UNITS.iter().map(|u| u.to_string()).collect(),
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

    fn quorate(&self, part: u8) -> bool {
        self.nodes_in(part).len() * 2 > self.partition.len()
    }

    fn absorb(&mut self, part: u8, from: MemberId, outputs: Vec<Output>, elected: &mut bool) {
        for o in outputs {
            match o {
                Output::Send(body) => self.queues.entry(part).or_default().push_back((from, body)),
                Output::Elected { .. } => *elected = true,
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

    /// Corosync syncs quorum before CPG: every daemon of the partition learns it first.
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

    fn confchg(&mut self, part: u8, left: Vec<(MemberId, LeaveReason)>, joined: Vec<MemberId>) {
        let members = self.members_in(part);
        self.broadcast(part, &Event::Confchg { members, left, joined });
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
        };
        // All daemons start together and settle.
        for node in 1..=self.nodes {
            start(&mut c, node);
        }
        c.flush(0);
        vec![c]
    }

    fn actions(&self, c: &Cluster, actions: &mut Vec<Action>) {
        for (part, q) in &c.queues {
            if !q.is_empty() {
                actions.push(Action::Deliver(*part));
            }
        }
        let disrupt = c.disruptions < self.max_disruptions;
        for node in 1..=self.nodes {
            let running = c.daemons[node as usize - 1].is_some();
            if running && disrupt {
                actions.push(Action::Crash(node));
                actions.push(Action::Release(node));
            }
            if !running {
                actions.push(Action::Start(node));
            }
            let part = c.partition[node as usize - 1];
            if disrupt && c.nodes_in(part).len() > 1 {
                actions.push(Action::Split(node));
            }
        }
        if disrupt && c.partition.iter().collect::<BTreeSet<_>>().len() > 1 {
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
            Action::Crash(node) => {
                let part = c.partition[node as usize - 1];
                c.flush(part);
                let view = c.daemons[node as usize - 1].take()?;
                c.vanished.insert(view.local());
                c.disruptions += 1;
                c.confchg(part, vec![(view.local(), LeaveReason::ProcessGone)], vec![]);
            }
            Action::Release(node) => {
                let part = c.partition[node as usize - 1];
                let me = c.daemons[node as usize - 1].as_ref()?.local();
                c.queues.entry(part).or_default().push_back((me, Body::Release));
                c.flush(part);
                c.daemons[node as usize - 1] = None;
                c.disruptions += 1;
                c.confchg(part, vec![(me, LeaveReason::ProcessGone)], vec![]);
            }
            Action::Start(node) => {
                start(&mut c, node);
            }
            Action::Split(node) => {
                let old = c.partition[node as usize - 1];
                c.flush(old);
                let new = (0..=c.partition.len() as u8).find(|p| !c.partition.contains(p))?;
                c.partition[node as usize - 1] = new;
                c.disruptions += 1;
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
            Action::Heal => {
                let parts: BTreeSet<u8> = c.partition.iter().copied().collect();
                for p in &parts {
                    c.flush(*p);
                }
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
                c.update_quorum(0);
                // Each side sees the other side join.
                let members = c.members_in(0);
                let mut elected = false;
                for (p, side) in &before {
                    let joined: Vec<MemberId> = members.iter().copied().filter(|m| !side.contains(m)).collect();
                    let _ = p;
                    for m in side {
                        let idx = m.node as usize - 1;
                        if let Some(mut view) = c.daemons[idx].take() {
                            let out = view.handle(Event::Confchg { members: members.clone(), left: vec![], joined: joined.clone() });
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
            }
            Action::StartupTimer(node) => {
                let part = c.partition[node as usize - 1];
                let me = c.daemons[node as usize - 1].as_ref()?.local();
                c.queues.entry(part).or_default().push_back((me, Body::PlaceNow));
            }
            Action::GraceExpire(member) => {
                c.vanished.remove(&member);
                // Any daemon of a partition that still keeps the reservation announces it.
                let parts: BTreeSet<u8> = c.partition.iter().copied().collect();
                for p in parts {
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
            Property::always("one acting holder per unit per quorate partition", |_, c: &Cluster| {
                let parts: BTreeSet<u8> = c.partition.iter().copied().collect();
                parts.iter().filter(|p| c.quorate(**p)).all(|p| {
                    UNITS.iter().all(|unit| {
                        c.nodes_in(*p)
                            .iter()
                            .filter_map(|n| c.daemons[*n as usize - 1].as_ref())
                            .filter(|v| v.may_act() && v.held_by_local().iter().any(|(u, _)| u == unit))
                            .count()
                            <= 1
                    })
                })
            }),
            Property::always("synced members of a partition agree", |_, c: &Cluster| {
                let parts: BTreeSet<u8> = c.partition.iter().copied().collect();
                parts.iter().all(|p| {
                    let tables: Vec<Vec<(String, Option<MemberId>)>> = c
                        .nodes_in(*p)
                        .iter()
                        .filter_map(|n| c.daemons[*n as usize - 1].as_ref())
                        .filter(|v| v.is_synced())
                        .map(|v| v.assignments().iter().map(|(u, a)| (u.clone(), a.holder)).collect())
                        .collect();
                    tables.windows(2).all(|w| w[0] == w[1])
                })
            }),
            Property::always("holder changes bounded by disruptions (no ping-pong)", |_, c: &Cluster| {
                // Initial placement plus at most one election round per disruption or restart.
                u16::from(c.disruptions) * 2 + 2 + u16::try_from(c.next_pid - 100).unwrap_or(u16::MAX) >= c.elections
            }),
            Property::always("a quiet quorate partition with a member has every unit held", |_, c: &Cluster| {
                let parts: BTreeSet<u8> = c.partition.iter().copied().collect();
                parts.iter().all(|p| {
                    let quiet = c.queues.get(p).is_none_or(|q| q.is_empty());
                    let views: Vec<&View> = c.nodes_in(*p).iter().filter_map(|n| c.daemons[*n as usize - 1].as_ref()).collect();
                    // A member still inside its startup wait has a timer pending: not quiet yet.
                    let waiting = views.iter().any(|v| v.awaiting_startup());
                    if !quiet || waiting || !c.quorate(*p) || views.is_empty() || !views.iter().all(|v| v.is_synced()) {
                        return true;
                    }
                    let v = views[0];
                    UNITS.iter().all(|u| {
                        v.assignments()
                            .get(*u)
                            .and_then(|a| a.holder)
                            .is_some_and(|h| v.members().contains(&h) || v.vanished().contains(&h))
                    })
                })
            }),
            Property::sometimes("a failover happens", |_, c: &Cluster| c.elections >= 2),
        ]
    }
}

fn start(c: &mut Cluster, node: u32) {
    let part = c.partition[node as usize - 1];
    c.next_pid += 1;
    let me = MemberId { node, pid: c.next_pid };
    let nodes = c.nodes_in(part);
    let specs = UNITS.iter().map(|u| ResourceSpec { name: u.to_string(), prefer: vec![] }).collect();
    c.daemons[node as usize - 1] = Some(View::new(me, info(c.quorate(part), &nodes), specs));
    c.confchg(part, vec![], vec![me]);
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn check(nodes: u32, depth: usize, disruptions: u8) {
    let checker = ElectionModel { nodes, max_disruptions: disruptions }
        .checker()
        .target_max_depth(depth)
        .spawn_bfs()
        .join();
    println!("{nodes} nodes, depth {depth}: {} unique states", checker.unique_state_count());
    checker.assert_properties();
}

#[test]
fn election_and_handover_are_safe_for_three_nodes() {
    check(env("MODEL_NODES", 3) as u32, env("MODEL_DEPTH", 9), env("MODEL_DISRUPTIONS", 3) as u8);
}

#[test]
fn two_nodes_without_two_node_quorum_never_act_alone() {
    // With two nodes and majority quorum a lone node is never quorate: it must never act.
    check(2, 10, 3);
}

#[test]
fn election_and_handover_are_safe_for_four_nodes() {
    check(4, env("MODEL_DEPTH_4", 8), 3);
}
