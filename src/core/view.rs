//! The replicated cluster view: members, who holds what, and when a member may act.
//!
//! Every member feeds the same CPG events in the same agreed order into a [`View`] and so
//! computes the same assignments. Membership changes that bring in new members start a *sync
//! round*: every member multicasts a State (its info and its table); when the State of every
//! member of the round has been delivered, all members merge the same States the same way.
//! Departures alone need no round: members that were in sync apply them directly.
//!
//! Whether a partition may elect is itself an agreed fact. Corosync's quorum service reports to
//! each node on its own schedule, before or after the CPG configuration change it belongs to
//! (on the lab, the CPG change of a node loss often comes first, then the totem ring, then the
//! quorum news), so a node's quorum flag is never used as it stands: after every configuration
//! change each member announces its quorum fact over CPG, bound to that configuration and to
//! the totem ring it belongs to, and the partition is quorate only once every speaking member
//! of the configuration has announced "quorate" for one and the same ring. A fact that is stale
//! (its ring is not the ring totem reported last, or it still counts a node the configuration
//! change reported down) is announced as "not quorate" until the quorum service reports again. A member that says
//! nothing for the sync timeout is declared unresponsive (in agreed order) and stops holding up
//! rounds and quorum; it serves nothing until it speaks again.

use std::collections::{BTreeMap, BTreeSet};

use super::placement;
use super::spec::{self, Conflict, UnitSpec};
use super::wire::{
    Body, Departure, FenceTarget, HeldMsg, MemberInfo, StateMsg, Unable, UnitDigest, WireAssignment, WireDeparture,
    MAX_FENCES, PROTOCOL,
};
use super::{MemberId, NodeId, Ring};

/// Generations above this from a peer are refused: a holder changes a few times a day, so only
/// a broken or hostile peer gets anywhere near it, and `generation + 1` must never overflow.
pub const MAX_GENERATION: u64 = 1 << 53;

/// Who holds one unit, as every synced member of the partition agrees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// None while the previous holder is gone and no eligible member was found yet.
    pub holder: Option<MemberId>,
    /// Who held it before the current holder (for the failover timeline).
    pub previous: Option<MemberId>,
    /// Increments on every change of holder; the higher generation wins when partitions merge.
    pub generation: u64,
    /// The holder's announcements that EC2 points a resource of the unit at it (this
    /// generation), one per resource.
    pub verified: Vec<HeldMsg>,
    /// The Held messages of the holder that went away, one per resource it had verified: its
    /// successor knows those addresses point elsewhere, and at which ownership epoch (it may
    /// skip its first read); the others may point anywhere.
    pub verified_before: Vec<HeldMsg>,
    /// The holders that left without releasing the unit (their node left the corosync
    /// membership) since a holder last verified it: with fencing on, the holder stops each of
    /// their instances before it touches the unit. They stay owed until the holder verifies
    /// the unit, so a successor that is re-executed, or lost in turn before it fenced, leaves
    /// them to the next one, who fences every holder that may still write. A node that comes
    /// back into the group is forgiven: it no longer runs what it ran. Nothing is owed after a
    /// planned release or a daemon that died on a live node.
    pub fences: Vec<FenceTarget>,
}

/// A takeover that must stop the departed holder's instance first (when `[fencing]
/// stop_instance` is on). Every member computes the same, from agreed inputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The departed holder and its instance.
    pub target: FenceTarget,
    /// The new holder is alone in its partition and has the higher node id: in a split
    /// two-node cluster both halves stay quorate and each would fence the other, so this side
    /// waits `[fencing] delay` and lets the lower node id fence first (its own race check
    /// then finds itself stopping and fences nobody).
    pub delayed: bool,
}

/// Why a member left the CPG group, as corosync reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// `cpg_leave` or the process went away while its node stayed in the membership.
    ProcessGone,
    /// The node itself left the corosync membership.
    NodeDown,
}

/// What the corosync adapter feeds into the view, in the order CPG delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// A CPG configuration change: the full new member list and who left.
    Confchg {
        /// Every member of the group after the change.
        members: Vec<MemberId>,
        /// Members that left, and whether their node went with them.
        left: Vec<(MemberId, LeaveReason)>,
        /// Members that joined: a non-empty list starts a sync round.
        joined: Vec<MemberId>,
    },
    /// A message delivered by CPG (already decoded).
    Message {
        /// The member that sent it.
        from: MemberId,
        /// What it announced.
        body: Body,
    },
    /// The totem (node-level) membership changed: corosync reports it ahead of the CPG
    /// configuration change.
    Totem {
        /// The new ring: our quorum fact for any other ring is stale from now on.
        ring: Ring,
        /// The corosync nodes in the new ring.
        nodes: Vec<NodeId>,
    },
}

/// What the adapter must do after feeding an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// Multicast this message to the group.
    Send(Body),
    /// A member vanished holding addresses: start its reattach grace timer.
    StartGrace(MemberId),
    /// A unit got a (new) holder.
    Elected {
        /// The unit (group or ungrouped resource).
        unit: String,
        /// The member elected to hold it.
        holder: MemberId,
        /// The unit's new generation, which the holder's outcome and Held messages carry.
        generation: u64,
        /// The holder before, if any (`previous` in the failover timeline).
        previous: Option<MemberId>,
        /// The Held messages of `previous` for the resources of the unit it had verified in
        /// EC2 as its own.
        verified_before: Vec<HeldMsg>,
        /// The departed holders to fence before the takeover (see `Assignment::fences`);
        /// empty for a planned move, a release, or a daemon that died on a live node.
        fences: Vec<Fence>,
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
        /// Held announcements delivered during the round. A holder's State may predate its
        /// verification, so they are applied to the merged table rather than lost with the
        /// table they arrived on.
        held: Vec<(MemberId, HeldMsg)>,
    },
    Synced,
}

/// A member's quorum fact as accepted in the current configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Fact {
    quorate: bool,
    ring: Option<Ring>,
    /// Not quorate as far as the sender knows yet: its quorum report predates this
    /// configuration (see `Body::Quorum`).
    pending: bool,
}

/// What this node's corosync quorum service reported last.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LocalQuorum {
    quorate: bool,
    ring: Option<Ring>,
    nodes: Vec<NodeId>,
    /// A CPG configuration change reported that a node of `nodes` went down: this report
    /// predates the change (corosync may deliver the change first) and says nothing of it.
    stale: bool,
}

/// This member's copy of the cluster's state: members, holders, quorum and conflicts. Every
/// member feeds it the same events and so reaches the same holders.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct View {
    local: MemberId,
    local_info: MemberInfo,
    local_quorum: LocalQuorum,
    /// The ring totem reported last (None until it reports one).
    totem_ring: Option<Ring>,
    members: BTreeSet<MemberId>,
    infos: BTreeMap<MemberId, MemberInfo>,
    /// Quorum facts announced in the current configuration.
    facts: BTreeMap<MemberId, Fact>,
    /// Members declared unresponsive in the current configuration.
    muted: BTreeSet<MemberId>,
    phase: Phase,
    assignments: BTreeMap<String, Assignment>,
    /// Absent members whose addresses are kept during the reattach grace.
    vanished: BTreeSet<MemberId>,
    /// Members that announced Release; they are never candidates again.
    released: BTreeSet<MemberId>,
    /// Departures seen while not in sync, applied to the merged table when the round completes.
    departed: BTreeMap<MemberId, Departure>,
    /// The last instance each corosync node's daemon announced: a departed holder's info is
    /// dropped when it leaves, but its successor must still know which instance to fence.
    instances: BTreeMap<NodeId, String>,
    /// Vanished members whose grace ended (while not in sync) on a node that is still in the
    /// membership: taken over at once, as a node loss is, but without a fence.
    spared: BTreeSet<MemberId>,
    totem: Option<BTreeSet<NodeId>>,
    /// Corosync nodes seen in a membership since this view began (the quorum state read at
    /// connect, quorum and totem reports). A node never seen has not left: after corosync
    /// restarted everywhere, the nodes' rings re-form one by one, and the holder a kept table
    /// names may simply not be back yet.
    seen_nodes: BTreeSet<NodeId>,
    /// Our table is a real cluster view: we completed a round, or inherited the table from a
    /// previous incarnation of this daemon (re-exec). Offered as such in our States.
    knows_cluster: bool,
    /// The startup wait is over: units that never had a holder may be placed even though
    /// some corosync nodes have no daemon in the group.
    placed: bool,
    /// The `pending` flag of our last quorum fact, so that its clearing is announced too.
    announced_pending: bool,
    /// Our table was kept across a lost corosync connection or a re-exec, and no round has
    /// confirmed it: no member brought a table it kept up to date, not every corosync node's
    /// daemon is here, and the startup wait has not ended. A daemon that was away may have
    /// missed newer generations that a daemon still reconnecting knows, so until then nobody
    /// elects and nobody writes; holders keep what they hold.
    unconfirmed: bool,
}

impl View {
    /// `units` is this node's configuration; `local_info.units`, `resources` and `protocol`
    /// are filled in from it.
    pub fn new(local: MemberId, mut local_info: MemberInfo, units: Vec<UnitSpec>) -> View {
        local_info.protocol = PROTOCOL;
        local_info.resources = units.iter().map(|u| u.name.clone()).collect();
        local_info.units = units.iter().map(|u| (u.name.clone(), u.digest())).collect();
        let local_quorum = LocalQuorum {
            quorate: local_info.quorate,
            ring: local_info.ring,
            nodes: local_info.nodes.clone(),
            stale: false,
        };
        let instances = BTreeMap::from([(local.node, local_info.instance_id.clone())]);
        let seen_nodes = local_info.nodes.iter().copied().chain([local.node]).collect();
        View {
            seen_nodes,
            local,
            local_info,
            instances,
            spared: BTreeSet::new(),
            // The ring of the quorum state read at connect is the current one until totem reports.
            totem_ring: local_quorum.ring,
            local_quorum,
            members: BTreeSet::new(),
            infos: BTreeMap::new(),
            facts: BTreeMap::new(),
            muted: BTreeSet::new(),
            phase: Phase::Joining,
            assignments: BTreeMap::new(),
            vanished: BTreeSet::new(),
            released: BTreeSet::new(),
            departed: BTreeMap::new(),
            totem: None,
            knows_cluster: false,
            placed: false,
            announced_pending: false,
            unconfirmed: false,
        }
    }

    /// Seeds the table with what a previous incarnation of this daemon knew (re-exec on
    /// reload), so that even a cluster where every daemon reloads at once keeps its holders.
    pub fn seed(&mut self, assignments: Vec<WireAssignment>) {
        for a in assignments.into_iter().filter(|a| a.generation <= MAX_GENERATION) {
            let fences = a.owed_fences();
            self.assignments.insert(
                a.resource,
                Assignment {
                    holder: a.holder,
                    previous: None,
                    generation: a.generation,
                    verified: a.verified,
                    verified_before: Vec::new(),
                    fences,
                },
            );
        }
        self.knows_cluster = true;
        self.placed = true;
        self.unconfirmed = true;
    }

    /// Our table is one kept across a lost connection or a re-exec that no round has confirmed
    /// yet: nobody elects or writes until one does (see the field).
    pub fn unconfirmed(&self) -> bool {
        self.unconfirmed
    }

    /// The table a next incarnation of this member (re-exec, or a new corosync connection)
    /// starts from; None while this member never learnt the cluster's table, so that a member
    /// that knows nothing never offers an empty table as the cluster's.
    pub fn table_to_keep(&self) -> Option<Vec<WireAssignment>> {
        self.knows_cluster.then(|| self.state_message().assignments)
    }

    /// This daemon, as the others name it.
    pub fn local(&self) -> MemberId {
        self.local
    }

    /// The last sync round completed: our table is the cluster's, so the holders we show and act
    /// on are current.
    pub fn is_synced(&self) -> bool {
        self.phase == Phase::Synced
    }

    /// The daemons in the CPG group now, this one included.
    pub fn members(&self) -> &BTreeSet<MemberId> {
        &self.members
    }

    /// What `member` announced about itself; None until its State arrived.
    pub fn info(&self, member: &MemberId) -> Option<&MemberInfo> {
        self.infos.get(member)
    }

    /// The holder of every unit, by unit name.
    pub fn assignments(&self) -> &BTreeMap<String, Assignment> {
        &self.assignments
    }

    /// Vanished holders whose addresses are kept during the reattach grace.
    pub fn vanished(&self) -> &BTreeSet<MemberId> {
        &self.vanished
    }

    /// The partition is quorate when every speaking member of the configuration announced, in
    /// this configuration, that corosync counts it quorate, all for the same ring. Every member
    /// computes this from the same delivered messages, so all agree.
    pub fn partition_quorate(&self) -> bool {
        let mut ring: Option<Ring> = None;
        let mut speaking = 0usize;
        for m in self.members.iter().filter(|m| !self.muted.contains(m)) {
            let Some(fact) = self.facts.get(m) else { return false };
            if !fact.quorate {
                return false;
            }
            if let Some(r) = fact.ring {
                if ring.is_some_and(|seen| seen != r) {
                    return false;
                }
                ring = Some(r);
            }
            speaking += 1;
        }
        speaking > 0
    }

    /// The partition's quorum facts are still arriving after a membership change: some
    /// speaking member has not announced yet, announced that its corosync has not reported
    /// this configuration yet, or announced a fact about an older ring; none announced "not
    /// quorate" or a different ring as current.
    /// A round of one CPG message per member, so milliseconds: holders keep what they hold
    /// through it (writes stay blocked, `may_act` is false) rather than drop their local
    /// addresses at every membership change.
    pub fn quorum_pending(&self) -> bool {
        let speaking = || self.members.iter().filter(|m| !self.muted.contains(m));
        // Totem ring sequence numbers only grow, and every member of a configuration is on
        // its ring: a fact about an older ring is the sender's corosync not having reported
        // the current one yet (a member that rejoins speaks before its quorum news), not a
        // verdict on this configuration.
        let newest = speaking().filter_map(|m| self.facts.get(m)?.ring.map(|r| r.seq)).max();
        let mut ring: Option<Ring> = None;
        let mut pending = false;
        for m in speaking() {
            match self.facts.get(m) {
                None => pending = true,
                Some(fact) if fact.pending => pending = true,
                Some(fact) if fact.ring.is_some_and(|r| Some(r.seq) < newest) => pending = true,
                Some(fact) if !fact.quorate => return false,
                Some(fact) => {
                    if let Some(r) = fact.ring {
                        if ring.is_some_and(|seen| seen != r) {
                            return false;
                        }
                        ring = Some(r);
                    }
                }
            }
        }
        pending
    }

    /// Whether this member may call mutating EC2 APIs for what it holds right now.
    pub fn may_act(&self) -> bool {
        self.is_synced()
            && !self.unconfirmed
            && self.partition_quorate()
            && !self.released.contains(&self.local)
            && !self.muted.contains(&self.local)
    }

    /// Members of the configuration that have not spoken since it began: no State in the
    /// running round, or no quorum fact. The adapter declares them unresponsive when the sync
    /// timeout runs out.
    pub fn silent_members(&self) -> Vec<MemberId> {
        self.silent().into_iter().filter(|m| *m != self.local).collect()
    }

    /// Silent members, this one included: a member may be silent in its own view too (the
    /// others declared it unresponsive while it was stopped), and must agree with them.
    fn silent(&self) -> Vec<MemberId> {
        let pending: Option<&BTreeSet<MemberId>> = match &self.phase {
            Phase::Joining => return Vec::new(),
            Phase::Syncing { pending, .. } => Some(pending),
            Phase::Synced => None,
        };
        self.members
            .iter()
            .filter(|m| !self.muted.contains(m))
            .filter(|m| pending.map_or(!self.facts.contains_key(m), |p| p.contains(m)))
            .copied()
            .collect()
    }

    /// Members declared unresponsive in this configuration.
    pub fn muted(&self) -> &BTreeSet<MemberId> {
        &self.muted
    }

    /// The configuration as a list, as quorum facts and Unresponsive messages name it.
    pub fn config(&self) -> Vec<MemberId> {
        self.members.iter().copied().collect()
    }

    /// Units whose members' specs differ: never placed or moved while it lasts.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.units()
            .into_iter()
            .filter_map(|unit| self.conflict(&unit))
            .collect()
    }

    fn conflict(&self, unit: &str) -> Option<Conflict> {
        let announced: Vec<(NodeId, &UnitDigest)> = self
            .members
            .iter()
            .filter(|m| !self.muted.contains(m))
            .filter_map(|m| self.infos.get(m).and_then(|i| i.units.get(unit)).map(|d| (m.node, d)))
            .collect();
        spec::conflict(unit, &announced)
    }

    /// Every unit some speaking member is configured for: the units every member places.
    pub fn units(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|m| !self.muted.contains(m))
            .filter_map(|m| self.infos.get(m))
            .flat_map(|i| i.resources.iter().chain(i.units.keys()))
            .cloned()
            .collect()
    }

    /// The preference list of `unit` as its members announced it (they agree unless the unit
    /// is in conflict, and then it is not placed).
    fn prefer_of(&self, unit: &str) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| !self.muted.contains(m))
            .filter_map(|m| self.infos.get(m).and_then(|i| i.units.get(unit)))
            .map(|d| d.prefer.clone())
            .next()
            .unwrap_or_default()
    }

    /// Whether `member` announced it cannot serve `unit`.
    pub fn cannot_serve(&self, member: &MemberId, unit: &str) -> Option<&Unable> {
        self.infos.get(member).and_then(|i| i.cannot_serve.iter().find(|u| u.unit == unit))
    }

    /// Resources this member is elected to hold (whether or not it may act right now).
    pub fn held_by_local(&self) -> Vec<(String, u64)> {
        self.assignments
            .iter()
            .filter(|(_, a)| a.holder == Some(self.local))
            .map(|(r, a)| (r.clone(), a.generation))
            .collect()
    }

    /// This node's quorum service reported: quorate or not, for `ring`, with these nodes.
    pub fn set_local_quorum(&mut self, quorate: bool, ring: Option<Ring>, nodes: Vec<NodeId>) -> Vec<Output> {
        self.seen_nodes.extend(nodes.iter().copied());
        self.local_quorum = LocalQuorum {
            quorate,
            ring,
            nodes,
            stale: false,
        };
        self.announce_if_changed()
    }

    /// Corosync's quorum as read synchronously right now (no ring comes with it). It can only
    /// lower what we announce: losing members is applied by corosync before it delivers the
    /// CPG configuration change, while a notification may still be on its way to us.
    pub fn note_quorate_now(&mut self, quorate: bool) -> Vec<Output> {
        if quorate || !self.local_quorum.quorate {
            return Vec::new();
        }
        self.local_quorum.quorate = false;
        self.announce_if_changed()
    }

    /// The quorum fact we announce: corosync's flag, if it belongs to the ring totem reported
    /// last and no later configuration change contradicts it. A stale fact is announced as not
    /// quorate until the quorum service reports again.
    fn announced_quorum(&self) -> (bool, Option<Ring>) {
        let fresh = match (self.local_quorum.ring, self.totem_ring) {
            (_, None) => true,
            (Some(q), Some(t)) => q == t,
            (None, Some(_)) => false,
        };
        (self.local_quorum.quorate && fresh && !self.local_quorum.stale, self.local_quorum.ring)
    }

    fn quorum_body(&self) -> Body {
        let (quorate, ring) = self.announced_quorum();
        Body::Quorum {
            quorate,
            nodes: self.local_quorum.nodes.clone(),
            ring,
            config: Some(self.config()),
            pending: self.quorum_not_known_yet(),
        }
    }

    /// Corosync counted us quorate, but by a report that predates this configuration: we do
    /// not know yet whether we still are.
    fn quorum_not_known_yet(&self) -> bool {
        let (quorate, _) = self.announced_quorum();
        !quorate && self.local_quorum.quorate
    }

    /// Updates our info from the local quorum; sends a fact when what we announce changed and
    /// we are in a configuration (a joining member's first State carries it instead).
    fn announce_if_changed(&mut self) -> Vec<Output> {
        let changed = self.refresh_local_info();
        if changed && self.phase != Phase::Joining {
            vec![Output::Send(self.quorum_body())]
        } else {
            Vec::new()
        }
    }

    /// Copies what we announce about quorum into our info; true when it changed.
    fn refresh_local_info(&mut self) -> bool {
        let (quorate, ring) = self.announced_quorum();
        let pending = self.quorum_not_known_yet();
        // A pending fact that clears without any other change (a synchronous read found us
        // not quorate) must still reach the peers, or they wait for us forever.
        let changed = self.local_info.quorate != quorate
            || self.local_info.ring != ring
            || self.local_info.nodes != self.local_quorum.nodes
            || self.announced_pending != pending;
        self.announced_pending = pending;
        self.local_info.quorate = quorate;
        self.local_info.ring = ring;
        self.local_info.nodes = self.local_quorum.nodes.clone();
        changed
    }

    /// The units this node cannot serve now (replaces the previous list).
    pub fn set_local_cannot_serve(&mut self, mut cannot_serve: Vec<Unable>) -> Vec<Output> {
        cannot_serve.sort();
        if self.local_info.cannot_serve == cannot_serve {
            return Vec::new();
        }
        self.local_info.cannot_serve = cannot_serve.clone();
        if self.phase == Phase::Joining {
            return Vec::new();
        }
        vec![Output::Send(Body::Capability { cannot_serve })]
    }

    /// The health checks changed this node's eligibility: announce it if it differs.
    pub fn set_local_eligible(&mut self, eligible: bool) -> Vec<Output> {
        if self.local_info.eligible == eligible {
            return Vec::new();
        }
        self.local_info.eligible = eligible;
        vec![Output::Send(Body::Eligibility { eligible })]
    }

    /// What this member announces about itself in its States.
    pub fn local_info(&self) -> &MemberInfo {
        &self.local_info
    }

    /// Whether units that never had a holder wait for missing daemons: the adapter then arms
    /// the startup timer that ends in a PlaceNow.
    pub fn awaiting_startup(&self) -> bool {
        self.is_synced()
            && (self.unconfirmed
                || (!self.placed
                    && !self.all_nodes_present()
                    && self.units().iter().any(|u| !self.assignments.contains_key(u))))
    }

    /// Every corosync node any member sees has a daemon in the group.
    fn all_nodes_present(&self) -> bool {
        let present: BTreeSet<NodeId> = self.members.iter().map(|m| m.node).collect();
        self.infos.values().flat_map(|i| i.nodes.iter()).all(|n| present.contains(n))
    }

    /// Whether a member other than this one could hold units now: what a stopping holder asks
    /// before it deletes a record nobody would take over.
    pub fn others_serve(&self) -> bool {
        self.members.iter().any(|m| *m != self.local && self.serves(m))
    }

    /// May this member hold units: healthy, not in standby, and speaking.
    fn serves(&self, member: &MemberId) -> bool {
        !self.released.contains(member)
            && !self.muted.contains(member)
            && self.infos.get(member).is_some_and(|i| i.eligible && !i.standby)
    }

    /// The State this member sends for the current round.
    pub fn state_message(&self) -> StateMsg {
        StateMsg {
            info: self.local_info.clone(),
            round: self.members.iter().copied().collect(),
            synced: self.knows_cluster,
            placed: self.placed,
            kept: self.unconfirmed,
            instances: self.instances.iter().map(|(n, i)| (*n, i.clone())).collect(),
            assignments: self
                .assignments
                .iter()
                .map(|(r, a)| WireAssignment {
                    resource: r.clone(),
                    holder: a.holder,
                    generation: a.generation,
                    verified: a.verified.clone(),
                    fence: a.fences.first().cloned().filter(|_| a.holder.is_none()),
                    fences: a.fences.clone(),
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

    /// Applies one event; returns what the adapter must send or start.
    pub fn handle(&mut self, event: Event) -> Vec<Output> {
        match event {
            Event::Confchg {
                members,
                left,
                joined,
            } => self.on_confchg(members, left, joined),
            Event::Message { from, body } => self.on_message(from, body),
            Event::Totem { ring, nodes } => self.on_totem(ring, nodes),
        }
    }

    fn on_confchg(
        &mut self,
        members: Vec<MemberId>,
        left: Vec<(MemberId, LeaveReason)>,
        joined: Vec<MemberId>,
    ) -> Vec<Output> {
        self.members = members.into_iter().collect();
        // Facts and silences belong to a configuration. Protocol 1 peers never re-announce,
        // so theirs are kept as that protocol did.
        let members = &self.members;
        let infos = &self.infos;
        self.facts
            .retain(|m, _| members.contains(m) && infos.get(m).is_some_and(|i| i.protocol < PROTOCOL));
        self.muted.clear();
        if left
            .iter()
            .any(|(m, reason)| *reason == LeaveReason::NodeDown && self.local_quorum.nodes.contains(&m.node))
        {
            self.local_quorum.stale = true;
        }
        self.refresh_local_info();
        let mut out = Vec::new();
        for (member, reason) in &left {
            self.infos.remove(member);
            let kind = if self.released.contains(member) {
                Departure::Released
            } else {
                match reason {
                    LeaveReason::NodeDown => Departure::NodeDown,
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
        self.forgive_returned();
        if !joined.is_empty() || self.phase == Phase::Joining {
            let round: Vec<MemberId> = self.members.iter().copied().collect();
            self.phase = Phase::Syncing {
                pending: round.iter().copied().collect(),
                round,
                states: BTreeMap::new(),
                held: Vec::new(),
            };
            out.push(Output::Send(Body::State(self.state_message())));
        } else {
            out.push(Output::Send(self.quorum_body()));
            self.try_complete_round(&mut out);
        }
        if self.is_synced() {
            self.elect(&mut out);
        }
        out
    }

    /// Records a quorum fact from `from` (a member of the current configuration).
    fn accept_fact(&mut self, from: MemberId, quorate: bool, ring: Option<Ring>, pending: bool) {
        self.muted.remove(&from);
        self.facts.insert(
            from,
            Fact {
                quorate,
                ring,
                pending: pending && !quorate,
            },
        );
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
                    ..
                } = &mut self.phase
                {
                    if state.round == *round && pending.remove(&from) {
                        let (quorate, ring) = (state.info.quorate, state.info.ring);
                        self.instances.insert(from.node, state.info.instance_id.clone());
                        self.infos.insert(from, state.info.clone());
                        states.insert(from, state);
                        self.accept_fact(from, quorate, ring, false);
                    }
                } else if self.phase == Phase::Synced
                    && state.round.iter().copied().eq(self.members.iter().copied())
                    && (self.muted.contains(&from) || !self.facts.contains_key(&from))
                {
                    // A member declared unresponsive speaks again: its table is not merged (the
                    // round is over) but it is known and counted again.
                    let (quorate, ring) = (state.info.quorate, state.info.ring);
                    self.instances.insert(from.node, state.info.instance_id.clone());
                    self.infos.insert(from, state.info);
                    self.accept_fact(from, quorate, ring, false);
                }
                self.try_complete_round(&mut out);
            }
            Body::Quorum {
                quorate,
                nodes,
                ring,
                config,
                pending,
            } => {
                let current = config
                    .as_ref()
                    .is_none_or(|c| c.iter().copied().eq(self.members.iter().copied()));
                // A fact from an earlier configuration (sent before a change, delivered after
                // it) says nothing about this one.
                if current && self.phase != Phase::Joining {
                    if let Some(info) = self.infos.get_mut(&from) {
                        info.quorate = quorate;
                        info.nodes = nodes;
                        info.ring = ring;
                    }
                    self.accept_fact(from, quorate, ring, pending);
                }
            }
            Body::Capability { cannot_serve } => {
                if let Some(info) = self.infos.get_mut(&from) {
                    info.cannot_serve = cannot_serve;
                }
            }
            Body::Unresponsive { member, config } => {
                let current = config.iter().copied().eq(self.members.iter().copied());
                if current && self.silent().contains(&member) {
                    self.muted.insert(member);
                    if let Phase::Syncing { pending, .. } = &mut self.phase {
                        pending.remove(&member);
                    }
                    self.try_complete_round(&mut out);
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
                if self.is_synced() && self.partition_quorate() && !self.unconfirmed {
                    self.planned_move(&unit, to, &mut out);
                }
            }
            Body::PlaceNow => {
                self.placed = true;
                self.unconfirmed = false;
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
                if let Phase::Syncing { held: during_round, .. } = &mut self.phase {
                    during_round.push((from, held.clone()));
                }
                self.note_held(from, held);
            }
            Body::GraceExpired { member, node_down } => {
                if self.is_synced() && !self.members.contains(&member) && self.vanished.remove(&member) {
                    self.unassign_holder(member, node_down);
                } else if !self.is_synced() {
                    self.departed.insert(member, Departure::NodeDown);
                    if !node_down {
                        self.spared.insert(member);
                    }
                }
            }
        }
        if self.is_synced() {
            self.elect(&mut out);
        }
        out
    }

    /// Totem reports reach each node on its own schedule, so they change nothing the members
    /// must agree on: they only make our own quorum fact stale (and announced as such), and
    /// tell the adapter which vanished holders' nodes are gone (it announces their grace over).
    fn on_totem(&mut self, ring: Ring, nodes: Vec<NodeId>) -> Vec<Output> {
        self.seen_nodes.extend(nodes.iter().copied());
        self.totem = Some(nodes.into_iter().collect());
        self.totem_ring = Some(ring);
        self.announce_if_changed()
    }

    /// Vanished holders whose node we saw in the membership and then leave it: no process will
    /// come back there within the grace, so the adapter announces their grace over at once.
    /// A node never seen since this view began is not counted: its corosync may still be
    /// starting (every corosync restarted), and the grace is what lets it rejoin.
    pub fn vanished_on_gone_nodes(&self) -> Vec<MemberId> {
        self.vanished
            .iter()
            .copied()
            .filter(|m| self.seen_nodes.contains(&m.node) && self.outside_membership(m.node))
            .collect()
    }

    /// Whether `node` is missing from the totem membership reported last: when a grace runs
    /// out, its takeover then fences the node (whether or not we ever saw it).
    pub fn outside_membership(&self, node: NodeId) -> bool {
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
            Departure::Released => {
                self.vanished.remove(&member);
                self.spared.remove(&member);
                self.unassign_holder(member, false);
            }
            Departure::NodeDown => {
                self.vanished.remove(&member);
                let fence = !self.spared.remove(&member);
                self.unassign_holder(member, fence);
            }
        }
    }

    fn holds_anything(&self, member: MemberId) -> bool {
        self.assignments.values().any(|a| a.holder == Some(member))
    }

    /// Frees the units of a departed holder. `fence`: it left without releasing them and its
    /// node left the membership, so its instance may still run and write (a hung kernel, a cut
    /// network): the successor must stop it first when fencing is on.
    fn unassign_holder(&mut self, member: MemberId, fence: bool) {
        let known = self.instances.get(&member.node).cloned();
        // Keep the generation so the next holder's generation is higher.
        for a in self.assignments.values_mut() {
            if a.holder == Some(member) {
                if fence && a.fences.len() < MAX_FENCES && !a.fences.iter().any(|t| t.member == member) {
                    a.fences.push(FenceTarget {
                        member,
                        // A member that joined after the holder's last State still saw its Held.
                        instance_id: known.clone().or_else(|| a.verified.iter().find_map(|h| h.instance_id.clone())),
                    });
                }
                a.verified_before = a.verified.drain(..).collect();
                a.holder = None;
                a.previous = Some(member);
            }
        }
    }

    /// Records that `from` verified `held` in EC2, if it holds that generation of the unit.
    fn note_held(&mut self, from: MemberId, held: HeldMsg) {
        if let Some(a) = self.assignments.get_mut(&held.unit) {
            if a.holder == Some(from) && a.generation == held.generation {
                a.verified.retain(|h| h.resource != held.resource);
                a.verified.push(held);
                // The holder fences before it writes: a verified address means it did.
                a.fences.clear();
            }
        }
    }

    fn try_complete_round(&mut self, out: &mut Vec<Output>) {
        let (states, held) = match &mut self.phase {
            Phase::Syncing {
                pending, states, held, ..
            } if pending.is_empty() => (std::mem::take(states), std::mem::take(held)),
            _ => return,
        };
        self.merge(states, out);
        for (from, h) in held {
            self.note_held(from, h);
        }
        self.phase = Phase::Synced;
        self.knows_cluster = true;
    }

    /// Builds the table every member of the round agrees on, from the round's States only.
    fn merge(&mut self, states: BTreeMap<MemberId, StateMsg>, out: &mut Vec<Output>) {
        let mut table: BTreeMap<String, Assignment> = BTreeMap::new();
        let mut vanished = BTreeSet::new();
        let mut departed: BTreeMap<MemberId, Departure> = std::mem::take(&mut self.departed);
        // A member whose table stayed current (it never lost the group, or a round already
        // confirmed its kept one) confirms the merge; otherwise every table here was kept.
        self.unconfirmed = states.values().any(|s| s.synced) && !states.values().any(|s| s.synced && !s.kept);
        // Every member of the round ends with the same instances, from the round's States only
        // (each carries what its sender knew before): what each node announced of itself
        // first, then, for departed nodes, what the lowest member id knew.
        let mut instances: BTreeMap<NodeId, String> =
            states.iter().map(|(from, state)| (from.node, state.info.instance_id.clone())).collect();
        for state in states.values() {
            for (node, instance) in &state.instances {
                instances.entry(*node).or_insert_with(|| instance.clone());
            }
        }
        self.instances = instances;
        for state in states.values() {
            for d in &state.departed {
                merge_departure(&mut departed, d.member, d.kind);
            }
            self.placed |= state.placed;
            if !state.synced {
                continue;
            }
            vanished.extend(state.vanished.iter().copied());
            for a in state.assignments.iter().filter(|a| a.generation <= MAX_GENERATION) {
                let candidate = Assignment {
                    holder: a.holder,
                    previous: None,
                    generation: a.generation,
                    verified: a.verified.clone(),
                    verified_before: Vec::new(),
                    // Owed until verified: a verified claim owes nothing.
                    fences: if a.verified.is_empty() { a.owed_fences() } else { Vec::new() },
                };
                match table.get_mut(&a.resource) {
                    Some(existing) if !newer(&candidate, existing, &self.members) => {
                        // The same claim or vacancy: one member may have missed a departed
                        // holder (or its instance); every member takes the longest list, the
                        // first of equals in member order.
                        if existing.holder == candidate.holder
                            && existing.generation == candidate.generation
                            && existing.verified.is_empty()
                            && candidate.verified.is_empty()
                            && existing.fences.len() < candidate.fences.len()
                        {
                            existing.fences = candidate.fences.clone();
                        }
                        // Same claim seen by another member, maybe with the holder's Held.
                        if existing.holder == candidate.holder
                            && existing.generation == candidate.generation
                            && existing.verified.len() < candidate.verified.len()
                        {
                            existing.verified = candidate.verified;
                            existing.fences.clear();
                        }
                    }
                    _ => {
                        table.insert(a.resource.clone(), candidate);
                    }
                }
            }
        }
        self.assignments = table;
        self.forgive_returned();
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
        self.spared.clear();
        // Holders nobody in the round saw leave: a table kept across a lost corosync
        // connection or a re-exec names them, and their daemon may be reconnecting as well.
        // They get the reattach grace, as a daemon seen to vanish does, rather than an
        // immediate successor and a move nobody needed.
        let absent: Vec<MemberId> = self
            .assignments
            .values()
            .filter_map(|a| a.holder)
            .filter(|h| !self.members.contains(h))
            .collect();
        self.vanished.extend(absent);
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
        for v in &self.vanished {
            out.push(Output::StartGrace(*v));
        }
    }

    /// Nodes that may take `unit`: one serving member per node (with several, a restart racing
    /// the old process, the lowest pid stands for the node) that is configured for the unit
    /// and did not announce it cannot serve it.
    fn candidates(&self, unit: &str) -> Vec<NodeId> {
        let mut nodes: BTreeSet<NodeId> = BTreeSet::new();
        for m in &self.members {
            if self.capable(m, unit) {
                nodes.insert(m.node);
            }
        }
        nodes.into_iter().collect()
    }

    fn capable(&self, member: &MemberId, unit: &str) -> bool {
        self.serves(member)
            && self.cannot_serve(member, unit).is_none()
            && self
                .infos
                .get(member)
                .is_some_and(|i| i.resources.iter().any(|r| r == unit) || i.units.contains_key(unit))
    }

    fn member_on(&self, node: NodeId, unit: &str) -> Option<MemberId> {
        self.members.iter().find(|m| m.node == node && self.capable(m, unit)).copied()
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
        let verified_before = match current {
            Some(a) if a.holder.is_some() => a.verified.clone(),
            Some(a) => a.verified_before.clone(),
            None => Vec::new(),
        };
        // Fences still owed pass to the new holder (a planned move away from a holder that
        // never verified hands them on too).
        let owed = current.map(|a| a.fences.clone()).unwrap_or_default();
        let fences = self.fences_for(&owed, holder);
        // Generations are bounded on the way in; this never fails, and if it did, the unit
        // would simply keep its holder.
        let Some(generation) = current.map_or(Some(1), |a| a.generation.checked_add(1)) else {
            return;
        };
        self.assignments.insert(
            unit.to_owned(),
            Assignment {
                holder: Some(holder),
                previous,
                generation,
                verified: Vec::new(),
                verified_before: Vec::new(),
                fences: owed,
            },
        );
        out.push(Output::Elected {
            unit: unit.to_owned(),
            holder,
            generation,
            previous,
            verified_before,
            fences,
        });
    }

    /// The fences `holder` owes before it takes a unit that owes `owed`: never its own node,
    /// nor a node that is back in the group (see `Assignment::fences`).
    fn fences_for(&self, owed: &[FenceTarget], holder: MemberId) -> Vec<Fence> {
        let alone = self.members.iter().all(|m| m.node == holder.node);
        owed.iter()
            .filter(|t| t.member.node != holder.node && !self.members.iter().any(|m| m.node == t.member.node))
            .map(|target| Fence {
                delayed: alone && holder.node > target.member.node,
                target: target.clone(),
            })
            .collect()
    }

    /// The fences this member owes before it takes `unit`, which it holds in the table: what
    /// its election announced, or, after a re-exec or a fence that failed, what is still owed.
    pub fn fences(&self, unit: &str) -> Vec<Fence> {
        match self.assignments.get(unit) {
            Some(a) if a.holder == Some(self.local) => self.fences_for(&a.fences, self.local),
            _ => Vec::new(),
        }
    }

    /// Forgets the fences owed for nodes that are back in the group: what ran there before is
    /// gone, and what runs there now answers to the group.
    fn forgive_returned(&mut self) {
        let members = &self.members;
        for a in self.assignments.values_mut() {
            a.fences.retain(|t| !members.iter().any(|m| m.node == t.member.node));
        }
    }

    fn planned_move(&mut self, unit: &str, to: NodeId, out: &mut Vec<Output>) {
        if !self.units().contains(unit) || self.conflict(unit).is_some() || !self.candidates(unit).contains(&to) {
            return;
        }
        let Some(target) = self.member_on(to, unit) else { return };
        if self.assignments.get(unit).and_then(|a| a.holder) == Some(target) {
            return;
        }
        self.assign(unit, target, out);
    }

    /// Gives every unit without a live, capable (or reattaching) holder a new one. Only a
    /// quorate partition elects: a minority keeps its stale table, so it can never outvote the
    /// majority with a newer generation after the partition heals. A unit whose members'
    /// specs differ is left as it is.
    fn elect(&mut self, out: &mut Vec<Output>) {
        // Every node of a quorate membership has its daemon here: every table that exists is
        // in the merge. (Quorate, so the node list is not that of a ring corosync formed alone
        // while it restarted.)
        if self.unconfirmed && self.all_nodes_present() && self.partition_quorate() {
            self.unconfirmed = false;
        }
        if !self.partition_quorate() || self.unconfirmed {
            return;
        }
        let startup_hold = !self.placed && !self.all_nodes_present();
        for unit in self.units() {
            if self.conflict(&unit).is_some() {
                continue;
            }
            let current = self.assignments.get(&unit);
            if current.is_none() && startup_hold {
                continue;
            }
            let holder = current.and_then(|a| a.holder);
            let candidates = self.candidates(&unit);
            let keep = holder.is_some_and(|h| {
                let present = self.members.contains(&h) && !self.released.contains(&h);
                // A holder that is unhealthy, in standby, silent or unable to take the unit
                // keeps it only while nobody else can take it.
                let usable = self.capable(&h, &unit) || candidates.iter().all(|n| *n == h.node);
                (present && usable) || self.vanished.contains(&h)
            });
            if keep {
                continue;
            }
            let load = self.load();
            let prefer = self.prefer_of(&unit);
            let Some(node) = placement::choose(&unit, &prefer, &candidates, &load) else {
                continue;
            };
            let Some(member) = self.member_on(node, &unit) else {
                continue;
            };
            self.assign(&unit, member, out);
        }
    }
}

/// Which of two claims on one unit the merged table keeps: the higher generation (only a
/// quorate partition creates one); at the same generation a claim with a holder beats one
/// without (a minority that saw the holder leave unassigned it without quorum: that must not
/// undo the majority's table), then a holder that is a member of the round beats an absent
/// one (a table kept across a restart may name the previous process of a node), then the
/// lower member id.
fn newer(candidate: &Assignment, existing: &Assignment, members: &BTreeSet<MemberId>) -> bool {
    let key = |a: &Assignment| {
        (a.generation, a.holder.is_some(), a.holder.is_some_and(|h| members.contains(&h)), std::cmp::Reverse(a.holder))
    };
    key(candidate) > key(existing)
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
