//! A simulated CPG for the pure election core: one agreed-order stream delivered to every
//! member of a partition, quorum news from corosync's quorum service, and the outputs members
//! produce (messages, grace timers, elections) captured for the assertions. The scenario tests
//! (tests/election.rs) drive `View`s through `Partition` without corosync or threads; the model
//! check (tests/model.rs) keeps its own per-node delivery (backlogs, stopped daemons) but
//! queues messages and configuration changes in the same agreed-order `Item` stream.

use std::collections::{BTreeMap, VecDeque};

use corosync_eip::core::spec::UnitSpec;
use corosync_eip::core::view::{Event, Fence, LeaveReason, Output, View};
use corosync_eip::core::wire::{Body, MemberInfo, PROTOCOL};
use corosync_eip::core::MemberId;

/// A CPG member: corosync node id and daemon pid.
pub fn member(node: u32, pid: u32) -> MemberId {
    MemberId { node, pid }
}

/// What a simulated member announces about itself: eligible, not in standby, no ring yet.
pub fn member_info(id: MemberId, quorate: bool, nodes: &[u32]) -> MemberInfo {
    MemberInfo {
        instance_id: format!("i-{}", id.node),
        network_interface_id: Some(format!("eni-{}", id.node)),
        version: "test".into(),
        resources: vec![],
        quorate,
        eligible: true,
        standby: false,
        nodes: nodes.to_vec(),
        availability_zone: None,
        protocol: PROTOCOL,
        ring: None,
        units: BTreeMap::new(),
        cannot_serve: vec![],
        name: None,
        hostname: None,
        fencing: None,
    }
}

/// One partition's CPG: a member list and one agreed-order queue, every member a `View`.
/// Fields are public so scenarios can reach into a member or stage a split by hand.
pub struct Partition {
    pub views: BTreeMap<MemberId, View>,
    pub queue: VecDeque<(MemberId, Body)>,
    pub resources: Vec<String>,
    pub prefer: Vec<u32>,
    pub grace_started: Vec<MemberId>,
    /// Corosync nodes every member reports (empty: nobody waits at startup).
    pub nodes: Vec<u32>,
    /// Every election any member announced: (member, unit, holder).
    pub elections: Vec<(MemberId, String, MemberId)>,
    /// With every election: (member, unit, the resources the previous holder had verified).
    pub verified_before: Vec<(MemberId, String, Vec<String>)>,
    /// With every election: (member, unit, the fences it says the takeover needs).
    pub fences: Vec<(MemberId, String, Vec<Fence>)>,
    /// Members whose daemon is stopped (SIGSTOP): what they send is held back.
    pub stopped: Vec<MemberId>,
    pub held_back: Vec<(MemberId, Body)>,
    /// What corosync's quorum service says on every node of the partition.
    pub corosync_quorate: bool,
}

impl Partition {
    /// An empty partition whose members will all be configured for `resources`.
    pub fn new(resources: &[&str]) -> Partition {
        Partition {
            views: BTreeMap::new(),
            queue: VecDeque::new(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            prefer: Vec::new(),
            grace_started: Vec::new(),
            nodes: Vec::new(),
            elections: Vec::new(),
            verified_before: Vec::new(),
            fences: Vec::new(),
            stopped: Vec::new(),
            held_back: Vec::new(),
            corosync_quorate: true,
        }
    }

    /// The partition's members, in CPG order (by id).
    pub fn members(&self) -> Vec<MemberId> {
        self.views.keys().copied().collect()
    }

    /// Routes one member's outputs: messages into the agreed stream (held back while the
    /// member is stopped), grace timers and elections into the records.
    pub fn absorb(&mut self, from: MemberId, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send(body) if self.stopped.contains(&from) => self.held_back.push((from, body)),
                Output::Send(body) => self.queue.push_back((from, body)),
                Output::StartGrace(v) => self.grace_started.push(v),
                Output::Elected {
                    unit,
                    holder,
                    verified_before,
                    fences,
                    ..
                } => {
                    self.fences.push((from, unit.clone(), fences));
                    self.verified_before.push((from, unit.clone(), verified_before.into_iter().map(|h| h.resource).collect()));
                    self.elections.push((from, unit, holder));
                }
            }
        }
    }

    /// Delivers one event to every member, as the CPG does.
    pub fn broadcast(&mut self, event: Event) {
        let ids = self.members();
        for id in ids {
            let out = self.views.get_mut(&id).unwrap().handle(event.clone());
            self.absorb(id, out);
        }
    }

    /// A daemon joins with the partition's resources and prefer list.
    pub fn join(&mut self, id: MemberId, quorate: bool) {
        let specs = self.resources.iter().map(|r| UnitSpec::new(r, self.prefer.clone())).collect();
        self.join_with(id, quorate, specs);
    }

    /// A daemon joins with its own unit specs (configuration drift).
    pub fn join_with(&mut self, id: MemberId, quorate: bool, specs: Vec<UnitSpec>) {
        self.views.insert(id, View::new(id, member_info(id, quorate, &self.nodes), specs));
        let members = self.members();
        self.broadcast(Event::Confchg { members, left: vec![], joined: vec![id] });
    }

    /// A member leaves; a node going down also shrinks the quorum service's node list.
    pub fn leave(&mut self, id: MemberId, reason: LeaveReason) {
        self.views.remove(&id);
        let members = self.members();
        self.broadcast(Event::Confchg { members, left: vec![(id, reason)], joined: vec![] });
        if reason == LeaveReason::NodeDown {
            // The quorum service reports the smaller membership (after the CPG change, as
            // corosync often delivers it).
            let nodes: Vec<u32> = self.nodes.iter().copied().filter(|n| *n != id.node).collect();
            for member in self.members() {
                let out = self.views.get_mut(&member).unwrap().set_local_quorum(self.corosync_quorate, None, nodes.clone());
                self.absorb(member, out);
            }
        }
    }

    /// Queues a message as if `from` had multicast it.
    pub fn send(&mut self, from: MemberId, body: Body) {
        self.queue.push_back((from, body));
    }

    /// Corosync's quorum service reports `quorate` on every node of the partition.
    pub fn set_quorate(&mut self, quorate: bool) {
        self.corosync_quorate = quorate;
        for id in self.members() {
            let out = self.views.get_mut(&id).unwrap().set_local_quorum(quorate, None, self.nodes.clone());
            self.absorb(id, out);
        }
    }

    /// Delivers everything queued (and what that causes) in agreed order.
    pub fn settle(&mut self) {
        while let Some((from, body)) = self.queue.pop_front() {
            self.broadcast(Event::Message { from, body });
        }
    }

    /// The holder synced members name for `resource`; panics if they disagree.
    pub fn holder(&self, resource: &str) -> Option<MemberId> {
        let mut answers = self
            .views
            .values()
            .filter(|v| v.is_synced())
            .map(|v| v.assignments().get(resource).and_then(|a| a.holder));
        let first = answers.next().flatten();
        for a in answers {
            assert_eq!(a, first, "members disagree on the holder of {resource}");
        }
        first
    }

    /// Whether every member has a cluster view.
    pub fn all_synced(&self) -> bool {
        self.views.values().all(|v| v.is_synced())
    }

    /// Panics unless every synced member has the same table (holders and generations).
    pub fn assert_agree(&self) {
        let tables: Vec<_> = self
            .views
            .values()
            .filter(|v| v.is_synced())
            .map(|v| {
                v.assignments()
                    .iter()
                    .map(|(r, a)| (r.clone(), a.holder, a.generation))
                    .collect::<Vec<_>>()
            })
            .collect();
        for t in &tables {
            assert_eq!(t, &tables[0], "synced members hold different tables");
        }
    }
}

/// One entry of a partition's agreed-order CPG stream when configuration changes are queued
/// with the messages (the model check explores where a change lands among them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    Msg(MemberId, Body),
    /// A configuration change: each member's event (the sides of a heal see different
    /// `joined` lists). `ring`: it comes with a totem ring change.
    Change { events: Vec<(MemberId, Event)>, ring: bool },
}

/// The index of the first configuration change in a stream, if it may be delivered next: a
/// change that comes with a ring change may overtake the old ring's messages queued before it
/// (they are carried into the new configuration); any other change only once it is first.
pub fn next_change(stream: &VecDeque<Item>) -> Option<usize> {
    let at = stream.iter().position(|i| matches!(i, Item::Change { .. }))?;
    match &stream[at] {
        Item::Change { ring, .. } if *ring || at == 0 => Some(at),
        _ => None,
    }
}
