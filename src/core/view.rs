//! The replicated cluster view: members, who holds what, and when a member may act.
//!
//! Every member feeds the same CPG events in the same agreed order into a [`View`] and so
//! computes the same assignments. Membership changes that bring in new members start a *sync
//! round*: every member multicasts a State (its info and its table); when the State of every
//! member of the round has been delivered, all members merge the same States the same way.
//! Departures alone need no round: members that were in sync apply them directly.

use std::collections::{BTreeMap, BTreeSet};

use super::placement;
use super::wire::{Body, Departure, HeldMsg, MemberInfo, StateMsg, WireAssignment, WireDeparture};
use super::{MemberId, NodeId};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// None while the previous holder is gone and no eligible member was found yet.
    pub holder: Option<MemberId>,
    /// Who held it before the current holder (for the failover timeline).
    pub previous: Option<MemberId>,
    pub generation: u64,
    /// The holder's announcements that EC2 points a resource of the unit at it (this
    /// generation), one per resource.
    pub verified: Vec<HeldMsg>,
}

/// Why a member left the CPG group, as corosync reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// `cpg_leave` or the process went away while its node stayed in the membership.
    ProcessGone,
    /// The node itself left the corosync membership.
    NodeDown,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// A CPG configuration change: the full new member list and who left.
    Confchg {
        members: Vec<MemberId>,
        left: Vec<(MemberId, LeaveReason)>,
        joined: Vec<MemberId>,
    },
    /// A message delivered by CPG (already decoded).
    Message { from: MemberId, body: Body },
    /// The totem (node-level) membership changed.
    Totem { nodes: Vec<NodeId> },
}

/// What the adapter must do after feeding an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    Send(Body),
    /// A member vanished holding addresses: start its reattach grace timer.
    StartGrace(MemberId),
    /// A resource got a (new) holder.
    Elected {
        resource: String,
        holder: MemberId,
        generation: u64,
        previous: Option<MemberId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Phase {
    /// We know nothing about the cluster yet.
    Joining,
    /// Waiting for States of `round` (the member list when the round started).
    Syncing {
        round: Vec<MemberId>,
        pending: BTreeSet<MemberId>,
        states: BTreeMap<MemberId, StateMsg>,
    },
    Synced,
}

/// A placement unit: an ungrouped resource or a group, placed as one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceSpec {
    pub name: String,
    pub prefer: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct View {
    local: MemberId,
    local_info: MemberInfo,
    resources: Vec<ResourceSpec>,
    members: BTreeSet<MemberId>,
    infos: BTreeMap<MemberId, MemberInfo>,
    phase: Phase,
    assignments: BTreeMap<String, Assignment>,
    /// Absent members whose addresses are kept during the reattach grace.
    vanished: BTreeSet<MemberId>,
    /// Members that announced Release; they are never candidates again.
    released: BTreeSet<MemberId>,
    /// Departures seen while not in sync, applied to the merged table when the round completes.
    departed: BTreeMap<MemberId, Departure>,
    totem: Option<BTreeSet<NodeId>>,
    /// Our table is a real cluster view: we completed a round, or inherited the table from a
    /// previous incarnation of this daemon (re-exec). Offered as such in our States.
    knows_cluster: bool,
    /// The startup wait is over: units that never had a holder may be placed even though
    /// some corosync nodes have no daemon in the group.
    placed: bool,
}

impl View {
    pub fn new(local: MemberId, local_info: MemberInfo, resources: Vec<ResourceSpec>) -> View {
        View {
            local,
            local_info,
            resources,
            members: BTreeSet::new(),
            infos: BTreeMap::new(),
            phase: Phase::Joining,
            assignments: BTreeMap::new(),
            vanished: BTreeSet::new(),
            released: BTreeSet::new(),
            departed: BTreeMap::new(),
            totem: None,
            knows_cluster: false,
            placed: false,
        }
    }

    /// Seeds the table with what a previous incarnation of this daemon knew (re-exec on
    /// reload), so that even a cluster where every daemon reloads at once keeps its holders.
    pub fn seed(&mut self, assignments: Vec<WireAssignment>) {
        for a in assignments {
            self.assignments.insert(
                a.resource,
                Assignment {
                    holder: a.holder,
                    previous: None,
                    generation: a.generation,
                    verified: a.verified,
                },
            );
        }
        self.knows_cluster = true;
        self.placed = true;
    }

    pub fn local(&self) -> MemberId {
        self.local
    }

    pub fn is_synced(&self) -> bool {
        self.phase == Phase::Synced
    }

    pub fn members(&self) -> &BTreeSet<MemberId> {
        &self.members
    }

    pub fn info(&self, member: &MemberId) -> Option<&MemberInfo> {
        self.infos.get(member)
    }

    pub fn assignments(&self) -> &BTreeMap<String, Assignment> {
        &self.assignments
    }

    pub fn vanished(&self) -> &BTreeSet<MemberId> {
        &self.vanished
    }

    /// The partition is quorate when every member says corosync told it so.
    pub fn partition_quorate(&self) -> bool {
        !self.members.is_empty()
            && self
                .members
                .iter()
                .all(|m| self.infos.get(m).is_some_and(|i| i.quorate))
    }

    /// Whether this member may call mutating EC2 APIs for what it holds right now.
    pub fn may_act(&self) -> bool {
        self.is_synced() && self.partition_quorate() && !self.released.contains(&self.local)
    }

    /// Resources this member is elected to hold (whether or not it may act right now).
    pub fn held_by_local(&self) -> Vec<(String, u64)> {
        self.assignments
            .iter()
            .filter(|(_, a)| a.holder == Some(self.local))
            .map(|(r, a)| (r.clone(), a.generation))
            .collect()
    }

    pub fn set_local_quorate(&mut self, quorate: bool, nodes: Vec<NodeId>) -> Vec<Output> {
        if self.local_info.quorate == quorate && self.local_info.nodes == nodes {
            return Vec::new();
        }
        self.local_info.quorate = quorate;
        self.local_info.nodes = nodes.clone();
        vec![Output::Send(Body::Quorum { quorate, nodes })]
    }

    pub fn set_local_eligible(&mut self, eligible: bool) -> Vec<Output> {
        if self.local_info.eligible == eligible {
            return Vec::new();
        }
        self.local_info.eligible = eligible;
        vec![Output::Send(Body::Eligibility { eligible })]
    }

    pub fn local_info(&self) -> &MemberInfo {
        &self.local_info
    }

    /// Whether units that never had a holder wait for missing daemons: the adapter then arms
    /// the startup timer that ends in a PlaceNow.
    pub fn awaiting_startup(&self) -> bool {
        self.is_synced()
            && !self.placed
            && !self.all_nodes_present()
            && self.resources.iter().any(|r| !self.assignments.contains_key(&r.name))
    }

    /// Every corosync node any member sees has a daemon in the group.
    fn all_nodes_present(&self) -> bool {
        let present: BTreeSet<NodeId> = self.members.iter().map(|m| m.node).collect();
        self.infos.values().flat_map(|i| i.nodes.iter()).all(|n| present.contains(n))
    }

    /// May this member hold units: healthy and not in standby.
    fn serves(&self, member: &MemberId) -> bool {
        !self.released.contains(member)
            && self.infos.get(member).is_some_and(|i| i.eligible && !i.standby)
    }

    /// The State this member sends for the current round.
    pub fn state_message(&self) -> StateMsg {
        StateMsg {
            info: self.local_info.clone(),
            round: self.members.iter().copied().collect(),
            synced: self.knows_cluster,
            placed: self.placed,
            assignments: self
                .assignments
                .iter()
                .map(|(r, a)| WireAssignment {
                    resource: r.clone(),
                    holder: a.holder,
                    generation: a.generation,
                    verified: a.verified.clone(),
                })
                .collect(),
            vanished: self.vanished.iter().copied().collect(),
            // Released members may still be in the group: a joiner must learn they are out.
            departed: self
                .departed
                .iter()
                .map(|(m, k)| (*m, *k))
                .chain(self.released.iter().map(|m| (*m, Departure::Released)))
                .map(|(member, kind)| WireDeparture { member, kind })
                .collect(),
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Output> {
        match event {
            Event::Confchg {
                members,
                left,
                joined,
            } => self.on_confchg(members, left, joined),
            Event::Message { from, body } => self.on_message(from, body),
            Event::Totem { nodes } => self.on_totem(nodes),
        }
    }

    fn on_confchg(
        &mut self,
        members: Vec<MemberId>,
        left: Vec<(MemberId, LeaveReason)>,
        joined: Vec<MemberId>,
    ) -> Vec<Output> {
        self.members = members.into_iter().collect();
        let mut out = Vec::new();
        for (member, reason) in &left {
            self.infos.remove(member);
            let kind = if self.released.contains(member) {
                Departure::Released
            } else {
                match reason {
                    LeaveReason::NodeDown => Departure::NodeDown,
                    LeaveReason::ProcessGone if self.node_gone(member.node) => Departure::NodeDown,
                    LeaveReason::ProcessGone => Departure::Vanished,
                }
            };
            match &mut self.phase {
                Phase::Synced => self.apply_departure(*member, kind, &mut out),
                Phase::Joining => {
                    self.departed.insert(*member, kind);
                }
                Phase::Syncing { pending, .. } => {
                    pending.remove(member);
                    self.departed.insert(*member, kind);
                }
            }
        }
        let members = &self.members;
        self.released.retain(|m| members.contains(m));
        if !joined.is_empty() || self.phase == Phase::Joining {
            let round: Vec<MemberId> = self.members.iter().copied().collect();
            self.phase = Phase::Syncing {
                pending: round.iter().copied().collect(),
                round,
                states: BTreeMap::new(),
            };
            out.push(Output::Send(Body::State(self.state_message())));
        } else {
            self.try_complete_round(&mut out);
        }
        if self.is_synced() {
            self.elect(&mut out);
        }
        out
    }

    fn on_message(&mut self, from: MemberId, body: Body) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.members.contains(&from) {
            // Delivered after its sender left (can happen around a leave): stale.
            return out;
        }
        match body {
            Body::State(state) => {
                if let Phase::Syncing {
                    round,
                    pending,
                    states,
                } = &mut self.phase
                {
                    if state.round == *round && pending.remove(&from) {
                        self.infos.insert(from, state.info.clone());
                        states.insert(from, state);
                    }
                }
                self.try_complete_round(&mut out);
            }
            Body::Quorum { quorate, nodes } => {
                if let Some(info) = self.infos.get_mut(&from) {
                    info.quorate = quorate;
                    info.nodes = nodes;
                }
            }
            Body::Eligibility { eligible } => {
                if let Some(info) = self.infos.get_mut(&from) {
                    info.eligible = eligible;
                }
            }
            Body::Standby { node, standby } => {
                for (m, info) in self.infos.iter_mut() {
                    if m.node == node {
                        info.standby = standby;
                    }
                }
                if node == self.local.node {
                    self.local_info.standby = standby;
                }
            }
            Body::Move { unit, to } => {
                if self.is_synced() && self.partition_quorate() {
                    self.planned_move(&unit, to, &mut out);
                }
            }
            Body::PlaceNow => {
                self.placed = true;
            }
            Body::Release => {
                self.released.insert(from);
                if self.is_synced() {
                    self.apply_departure(from, Departure::Released, &mut out);
                } else {
                    self.departed.insert(from, Departure::Released);
                }
            }
            Body::Held(held) => {
                if let Some(a) = self.assignments.get_mut(&held.unit) {
                    if a.holder == Some(from) && a.generation == held.generation {
                        a.verified.retain(|h| h.resource != held.resource);
                        a.verified.push(held);
                    }
                }
            }
            Body::GraceExpired { member } => {
                if self.is_synced() && !self.members.contains(&member) && self.vanished.remove(&member) {
                    self.unassign_holder(member);
                } else if !self.is_synced() {
                    self.departed.insert(member, Departure::NodeDown);
                }
            }
        }
        if self.is_synced() {
            self.elect(&mut out);
        }
        out
    }

    fn on_totem(&mut self, nodes: Vec<NodeId>) -> Vec<Output> {
        self.totem = Some(nodes.into_iter().collect());
        let mut out = Vec::new();
        if self.is_synced() {
            let gone: Vec<MemberId> = self
                .vanished
                .iter()
                .copied()
                .filter(|m| self.node_gone(m.node))
                .collect();
            for member in gone {
                self.vanished.remove(&member);
                self.unassign_holder(member);
            }
            self.elect(&mut out);
        }
        out
    }

    fn node_gone(&self, node: NodeId) -> bool {
        self.totem.as_ref().is_some_and(|t| !t.contains(&node))
    }

    fn apply_departure(&mut self, member: MemberId, kind: Departure, out: &mut Vec<Output>) {
        if self.members.contains(&member) && kind != Departure::Released {
            // Same (node, pid) is back already (re-exec): nothing was lost.
            return;
        }
        let holds_something = self.holds_anything(member);
        match kind {
            Departure::Vanished if holds_something => {
                if self.vanished.insert(member) {
                    out.push(Output::StartGrace(member));
                }
            }
            Departure::Vanished => {}
            Departure::Released | Departure::NodeDown => {
                self.vanished.remove(&member);
                self.unassign_holder(member);
            }
        }
    }

    fn holds_anything(&self, member: MemberId) -> bool {
        self.assignments.values().any(|a| a.holder == Some(member))
    }

    fn unassign_holder(&mut self, member: MemberId) {
        // Keep the generation so the next holder's generation is higher.
        for a in self.assignments.values_mut() {
            if a.holder == Some(member) {
                a.verified.clear();
                a.holder = None;
                a.previous = Some(member);
            }
        }
    }

    fn try_complete_round(&mut self, out: &mut Vec<Output>) {
        let states = match &mut self.phase {
            Phase::Syncing { pending, states, .. } if pending.is_empty() => std::mem::take(states),
            _ => return,
        };
        self.merge(states, out);
        self.phase = Phase::Synced;
        self.knows_cluster = true;
    }

    /// Builds the table every member of the round agrees on, from the round's States only.
    fn merge(&mut self, states: BTreeMap<MemberId, StateMsg>, out: &mut Vec<Output>) {
        let mut table: BTreeMap<String, Assignment> = BTreeMap::new();
        let mut vanished = BTreeSet::new();
        let mut departed: BTreeMap<MemberId, Departure> = std::mem::take(&mut self.departed);
        for state in states.values() {
            for d in &state.departed {
                merge_departure(&mut departed, d.member, d.kind);
            }
            self.placed |= state.placed;
            if !state.synced {
                continue;
            }
            vanished.extend(state.vanished.iter().copied());
            for a in &state.assignments {
                let candidate = Assignment {
                    holder: a.holder,
                    previous: None,
                    generation: a.generation,
                    verified: a.verified.clone(),
                };
                match table.get_mut(&a.resource) {
                    Some(existing) if !newer(&candidate, existing) => {
                        // Same claim seen by another member, maybe with the holder's Held.
                        if existing.holder == candidate.holder
                            && existing.generation == candidate.generation
                            && existing.verified.len() < candidate.verified.len()
                        {
                            existing.verified = candidate.verified;
                        }
                    }
                    _ => {
                        table.insert(a.resource.clone(), candidate);
                    }
                }
            }
        }
        self.assignments = table;
        self.vanished = vanished
            .into_iter()
            .filter(|m| !self.members.contains(m) && self.holds_anything(*m))
            .collect();
        for (member, kind) in departed {
            if kind == Departure::Released {
                self.released.insert(member);
            }
            self.apply_departure(member, kind, out);
        }
        // A node whose daemon came back takes its addresses again: same node, no move.
        for gone in self.vanished.clone() {
            if let Some(back) = self.members.iter().find(|m| m.node == gone.node).copied() {
                self.vanished.remove(&gone);
                for a in self.assignments.values_mut() {
                    if a.holder == Some(gone) {
                        a.holder = Some(back);
                        a.verified.clear();
                    }
                }
            }
        }
        for gone in self.vanished.clone() {
            if self.node_gone(gone.node) {
                self.vanished.remove(&gone);
                self.unassign_holder(gone);
            }
        }
        // Anyone else absent is unknown to us: free its resources.
        let absent: Vec<MemberId> = self
            .assignments
            .values()
            .filter_map(|a| a.holder)
            .filter(|h| !self.members.contains(h) && !self.vanished.contains(h))
            .collect();
        for h in absent {
            self.unassign_holder(h);
        }
        for v in &self.vanished {
            out.push(Output::StartGrace(*v));
        }
    }

    /// Nodes that may take `unit`: one serving member per node (with several, a restart racing
    /// the old process, the lowest pid stands for the node).
    fn candidates(&self, unit: &str) -> Vec<NodeId> {
        let mut nodes: BTreeSet<NodeId> = BTreeSet::new();
        for m in &self.members {
            if self.serves(m) && self.infos.get(m).is_some_and(|i| i.resources.iter().any(|r| r == unit)) {
                nodes.insert(m.node);
            }
        }
        nodes.into_iter().collect()
    }

    fn member_on(&self, node: NodeId) -> Option<MemberId> {
        self.members.iter().find(|m| m.node == node && self.serves(m)).copied()
    }

    /// Units held per node, to spread new placements.
    fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for a in self.assignments.values() {
            if let Some(h) = a.holder {
                *load.entry(h.node).or_insert(0) += 1;
            }
        }
        load
    }

    fn assign(&mut self, unit: &str, holder: MemberId, out: &mut Vec<Output>) {
        let current = self.assignments.get(unit);
        let previous = current.and_then(|a| a.holder.or(a.previous));
        let generation = current.map_or(0, |a| a.generation) + 1;
        self.assignments.insert(
            unit.to_owned(),
            Assignment {
                holder: Some(holder),
                previous,
                generation,
                verified: Vec::new(),
            },
        );
        out.push(Output::Elected {
            resource: unit.to_owned(),
            holder,
            generation,
            previous,
        });
    }

    fn planned_move(&mut self, unit: &str, to: NodeId, out: &mut Vec<Output>) {
        if !self.resources.iter().any(|r| r.name == unit) || !self.candidates(unit).contains(&to) {
            return;
        }
        let Some(target) = self.member_on(to) else { return };
        if self.assignments.get(unit).and_then(|a| a.holder) == Some(target) {
            return;
        }
        self.assign(unit, target, out);
    }

    /// Gives every unit without a live, serving (or reattaching) holder a new one. Only a
    /// quorate partition elects: a minority keeps its stale table, so it can never outvote the
    /// majority with a newer generation after the partition heals.
    fn elect(&mut self, out: &mut Vec<Output>) {
        if !self.partition_quorate() {
            return;
        }
        let startup_hold = !self.placed && !self.all_nodes_present();
        let specs = self.resources.clone();
        for spec in &specs {
            let current = self.assignments.get(&spec.name);
            if current.is_none() && startup_hold {
                continue;
            }
            let holder = current.and_then(|a| a.holder);
            let candidates = self.candidates(&spec.name);
            let keep = holder.is_some_and(|h| {
                let present = self.members.contains(&h) && !self.released.contains(&h);
                // An unhealthy or standby holder keeps its unit only while nobody else can take it.
                let serving = self.serves(&h) || candidates.iter().all(|n| *n == h.node);
                (present && serving) || self.vanished.contains(&h)
            });
            if keep {
                continue;
            }
            let load = self.load();
            let Some(node) = placement::choose(&spec.name, &spec.prefer, &candidates, &load) else {
                continue;
            };
            let Some(member) = self.member_on(node) else {
                continue;
            };
            self.assign(&spec.name, member, out);
        }
    }
}

/// Which of two claims on one resource the merged table keeps: the higher generation (the most
/// recent takeover), ties to the lower member id.
fn newer(candidate: &Assignment, existing: &Assignment) -> bool {
    (candidate.generation, std::cmp::Reverse(candidate.holder))
        > (existing.generation, std::cmp::Reverse(existing.holder))
}

/// The strongest departure wins: NodeDown and Released both free at once.
fn merge_departure(departed: &mut BTreeMap<MemberId, Departure>, member: MemberId, kind: Departure) {
    let rank = |k: Departure| match k {
        Departure::Vanished => 0,
        Departure::NodeDown => 1,
        Departure::Released => 2,
    };
    let entry = departed.entry(member).or_insert(kind);
    if rank(kind) > rank(*entry) {
        *entry = kind;
    }
}
