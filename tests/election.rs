//! The election core driven by a simulated CPG: one agreed-order stream delivered to every
//! member. Checks that members agree, that holders are sticky, that quorum gates elections
//! and that reattach/release/node-down behave as documented.

use std::collections::BTreeMap;

use corosync_eip::core::spec::UnitSpec;
use corosync_eip::core::view::{Event, LeaveReason, View};
use corosync_eip::core::wire::{Body, HeldMsg, Incapacity, Unable, WireAssignment};
use corosync_eip::core::{MemberId, Ring};
use lab::cpgsim::{member as m, member_info as info, Partition};
use proptest::prelude::*;

#[test]
fn three_nodes_elect_exactly_one_holder_and_agree() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=3 {
        p.join(m(n, 100 + n), true);
        p.settle();
    }
    assert!(p.all_synced());
    let holder = p.holder("web").expect("a holder");
    assert!(p.members().contains(&holder));
    // Every member's view says the same, and only the holder considers itself holder.
    let claiming: Vec<_> = p
        .views
        .values()
        .filter(|v| !v.held_by_local().is_empty())
        .map(|v| v.local())
        .collect();
    assert_eq!(claiming, vec![holder]);
}

#[test]
fn holder_is_sticky_when_members_join() {
    let mut p = Partition::new(&["web", "api", "db"]);
    p.join(m(3, 1), true);
    p.settle();
    let first: Vec<_> = ["web", "api", "db"].iter().map(|r| p.holder(r)).collect();
    assert!(first.iter().all(|h| *h == Some(m(3, 1))));
    p.join(m(1, 1), true);
    p.join(m(2, 1), true);
    p.settle();
    let after: Vec<_> = ["web", "api", "db"].iter().map(|r| p.holder(r)).collect();
    assert_eq!(first, after, "no failback to newly joined nodes");
}

#[test]
fn node_down_moves_at_once_to_a_survivor() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=3 {
        p.join(m(n, n), true);
    }
    p.settle();
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::NodeDown);
    assert_eq!(p.holder("web"), None, "survivors first agree that they are still quorate");
    // One round of quorum facts (no State round) and the survivor is elected.
    p.settle();
    let new = p.holder("web").expect("survivor elected");
    assert_ne!(new.node, old.node);
    p.settle();
    assert_eq!(p.holder("web"), Some(new));
}

#[test]
fn a_successor_learns_which_addresses_the_departed_holder_had_verified() {
    let mut p = Partition::new(&["web", "ghost"]);
    for n in 1..=3 {
        p.join(m(n, n), true);
    }
    p.settle();
    let (web, ghost) = (p.holder("web").unwrap(), p.holder("ghost").unwrap());
    assert_ne!(web.node, ghost.node, "two units spread over two nodes");
    // Only web's holder verifies its address (ghost's allocation does not exist in EC2).
    let generation = p.views[&web].held_by_local().into_iter().find(|(u, _)| u == "web").map(|(_, g)| g).unwrap();
    let held = HeldMsg {
        unit: "web".into(),
        resource: "web".into(),
        generation,
        instance_id: None,
        network_interface_id: None,
        epoch: None,
    };
    p.send(web, Body::Held(held));
    p.settle();
    for (gone, unit, expected) in [(web, "web", vec!["web".to_string()]), (ghost, "ghost", vec![])] {
        p.verified_before.clear();
        p.leave(gone, LeaveReason::NodeDown);
        p.settle();
        let new = p.holder(unit).expect("a successor");
        assert_ne!(new.node, gone.node);
        let told: Vec<&Vec<String>> = p.verified_before.iter().filter(|(_, u, _)| u == unit).map(|(_, _, v)| v).collect();
        assert!(!told.is_empty(), "{unit}: an election was announced");
        // Every member says the same: the successor may skip its first read only for web.
        assert!(told.iter().all(|v| **v == expected), "{unit}: {told:?}");
        p.join(m(gone.node, gone.pid + 10), true);
        p.settle();
    }
}

#[test]
fn release_hands_over_before_the_leave() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=2 {
        p.join(m(n, n), true);
    }
    p.settle();
    let old = p.holder("web").unwrap();
    p.send(old, Body::Release);
    p.settle();
    let new = p.holder("web").unwrap();
    assert_ne!(new, old);
    p.leave(old, LeaveReason::ProcessGone);
    p.settle();
    assert_eq!(p.holder("web"), Some(new), "the leave after a release changes nothing");
}

#[test]
fn vanished_daemon_keeps_its_address_and_reclaims_it_on_return() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=3 {
        p.join(m(n, 10), true);
    }
    p.settle();
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::ProcessGone);
    assert!(p.grace_started.contains(&old));
    assert_eq!(p.holder("web"), Some(old), "kept during the grace");
    // The daemon comes back on the same node with a new pid.
    let back = m(old.node, 99);
    p.join(back, true);
    p.settle();
    assert_eq!(p.holder("web"), Some(back), "same node takes it back: no move");
}

#[test]
fn vanished_daemon_loses_its_address_when_grace_expires() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=3 {
        p.join(m(n, 10), true);
    }
    p.settle();
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::ProcessGone);
    let someone = p.members()[0];
    p.send(someone, Body::GraceExpired { member: old, node_down: false });
    p.send(someone, Body::GraceExpired { member: old, node_down: false });
    p.settle();
    let new = p.holder("web").unwrap();
    assert_ne!(new.node, old.node);
}

#[test]
fn vanished_daemon_on_a_node_that_then_leaves_the_ring_is_taken_over() {
    let mut p = Partition::new(&["web"]);
    p.nodes = vec![1, 2, 3];
    for n in 1..=3 {
        p.join(m(n, 10), true);
    }
    p.settle();
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::ProcessGone);
    p.settle();
    let nodes: Vec<u32> = p.members().iter().map(|x| x.node).collect();
    let ring = Ring { rep: nodes[0], seq: 9 };
    p.broadcast(Event::Totem { ring, nodes: nodes.clone() });
    // The quorum service reports the new ring too; until then the old fact is stale.
    for id in p.members() {
        let out = p.views.get_mut(&id).unwrap().set_local_quorum(true, Some(ring), nodes.clone());
        p.absorb(id, out);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(old), "totem news alone changes nothing agreed");
    // The adapter of a member that saw the node go announces the grace over.
    let gone = p.views[&p.members()[0]].vanished_on_gone_nodes();
    assert_eq!(gone, vec![old]);
    let from = p.members()[0];
    p.send(from, Body::GraceExpired { member: old, node_down: true });
    p.settle();
    assert_ne!(p.holder("web").map(|h| h.node), Some(old.node));
}

#[test]
fn non_quorate_partition_never_elects() {
    let mut p = Partition::new(&["web"]);
    p.join(m(1, 1), false);
    p.join(m(2, 1), false);
    p.settle();
    assert!(p.all_synced());
    assert_eq!(p.holder("web"), None);
    for v in p.views.values() {
        assert!(!v.may_act());
    }
    p.set_quorate(true);
    p.settle();
    assert!(p.holder("web").is_some());
}

#[test]
fn minority_keeps_stale_table_and_majority_wins_after_heal() {
    // Start with 3 members, all quorate.
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    // Split: node 1 alone (minority), nodes 2+3 (majority).
    let mut minority = Partition::new(&["web"]);
    minority.prefer = p.prefer.clone();
    minority.views.insert(m(1, 1), p.views.remove(&m(1, 1)).unwrap());
    let mut majority = p;
    // Quorum notifications arrive first (corosync syncs votequorum before CPG).
    minority.set_quorate(false);
    majority.broadcast(Event::Confchg { members: majority.members(), left: vec![(m(1, 1), LeaveReason::NodeDown)], joined: vec![] });
    minority.broadcast(Event::Confchg {
        members: vec![m(1, 1)],
        left: vec![(m(2, 1), LeaveReason::NodeDown), (m(3, 1), LeaveReason::NodeDown)],
        joined: vec![],
    });
    majority.settle();
    minority.settle();
    let new = majority.holder("web").unwrap();
    assert_ne!(new, m(1, 1));
    assert!(!minority.views[&m(1, 1)].may_act(), "minority may not act");
    // Heal: everyone sees the others join.
    let mut healed = majority;
    healed.views.insert(m(1, 1), minority.views.remove(&m(1, 1)).unwrap());
    let _ = healed.views.get_mut(&m(1, 1)).unwrap().set_local_quorum(true, None, vec![]);
    let all = healed.members();
    for id in all.clone() {
        let joined: Vec<_> = if id == m(1, 1) { vec![m(2, 1), m(3, 1)] } else { vec![m(1, 1)] };
        let out = healed.views.get_mut(&id).unwrap().handle(Event::Confchg { members: all.clone(), left: vec![], joined });
        healed.absorb(id, out);
    }
    healed.settle();
    assert!(healed.all_synced());
    assert_eq!(healed.holder("web"), Some(new), "no failback after heal, even to a preferred node");
}

#[test]
fn preference_picks_the_first_live_preferred_node() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![2, 3];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    // All join before any State is delivered: one round.
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 1)));
    p.leave(m(2, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(3, 1)));
}

fn holders_per_node(p: &Partition, units: &[String]) -> BTreeMap<u32, usize> {
    let mut count = BTreeMap::new();
    for u in units {
        if let Some(h) = p.holder(u) {
            *count.entry(h.node).or_insert(0) += 1;
        }
    }
    count
}

#[test]
fn twelve_units_spread_evenly_and_only_the_lost_nodes_units_move() {
    let units: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    let names: Vec<&str> = units.iter().map(String::as_str).collect();
    let mut p = Partition::new(&names);
    p.nodes = vec![1, 2, 3];
    // Daemons start one after another: nothing is placed until all three are in.
    p.join(m(1, 1), true);
    p.settle();
    assert!(units.iter().all(|u| p.holder(u).is_none()), "waits for the other nodes' daemons");
    p.join(m(2, 1), true);
    p.join(m(3, 1), true);
    p.settle();
    let before: BTreeMap<u32, usize> = holders_per_node(&p, &units);
    assert_eq!(before.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    let placement: Vec<_> = units.iter().map(|u| p.holder(u)).collect();
    p.leave(m(2, 1), LeaveReason::NodeDown);
    p.settle();
    let after = holders_per_node(&p, &units);
    assert_eq!(after.values().copied().collect::<Vec<_>>(), vec![6, 6]);
    for (u, old) in units.iter().zip(&placement) {
        if old.unwrap().node != 2 {
            assert_eq!(p.holder(u), *old, "{u} moved although its node stayed");
        }
    }
    // Node 2 comes back: nothing moves back.
    p.join(m(2, 2), true);
    p.settle();
    assert_eq!(holders_per_node(&p, &units), after);
}

#[test]
fn startup_wait_ends_with_place_now() {
    let mut p = Partition::new(&["web"]);
    p.nodes = vec![1, 2];
    p.join(m(1, 1), true);
    p.settle();
    assert_eq!(p.holder("web"), None);
    assert!(p.views[&m(1, 1)].awaiting_startup());
    p.send(m(1, 1), Body::PlaceNow);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    assert!(!p.views[&m(1, 1)].awaiting_startup());
}

#[test]
fn standby_drains_a_node_and_unstandby_moves_nothing_back() {
    let mut p = Partition::new(&["a", "b", "c", "d"]);
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    let units = ["a", "b", "c", "d"].map(String::from);
    assert!(units.iter().any(|u| p.holder(u).unwrap().node == 1));
    p.send(m(3, 1), Body::Standby { node: 1, standby: true });
    p.settle();
    assert!(units.iter().all(|u| p.holder(u).unwrap().node != 1), "standby node drained");
    assert!(p.views[&m(1, 1)].local_info().standby, "the node itself knows (and persists) it");
    let drained: Vec<_> = units.iter().map(|u| p.holder(u)).collect();
    // A daemon joining while node 1 is in standby learns it from the others' States? It learns
    // it from node 1's own State: the flag lives with the node.
    p.send(m(2, 1), Body::Standby { node: 1, standby: false });
    p.settle();
    assert_eq!(units.iter().map(|u| p.holder(u)).collect::<Vec<_>>(), drained, "sticky after unstandby");
}

#[test]
fn unhealthy_holder_hands_over_unless_nobody_else_can_take_it() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1];
    p.join(m(1, 1), true);
    p.join(m(2, 1), true);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    let out = p.views.get_mut(&m(1, 1)).unwrap().set_local_eligible(false);
    p.absorb(m(1, 1), out);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 1)));
    // Node 2 fails too: it keeps the address (better a degraded holder than none).
    let out = p.views.get_mut(&m(2, 1)).unwrap().set_local_eligible(false);
    p.absorb(m(2, 1), out);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 1)));
}

#[test]
fn planned_move_goes_to_the_named_node_only_if_it_can_serve() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    let before = p.views[&m(1, 1)].assignments()["web"].generation;
    p.send(m(2, 1), Body::Move { unit: "web".into(), to: 3 });
    p.settle();
    assert_eq!(p.holder("web"), Some(m(3, 1)));
    assert_eq!(p.views[&m(1, 1)].assignments()["web"].generation, before + 1);
    p.send(m(2, 1), Body::Standby { node: 2, standby: true });
    p.send(m(2, 1), Body::Move { unit: "web".into(), to: 2 });
    p.send(m(2, 1), Body::Move { unit: "nosuch".into(), to: 1 });
    p.settle();
    assert_eq!(p.holder("web"), Some(m(3, 1)), "no move to a standby node or of an unknown unit");
}

#[derive(Debug, Clone)]
enum Step {
    Join(u32),
    Crash(usize),
    NodeDown(usize),
    Release(usize),
    GraceExpire(usize),
    Deliver(usize),
    Quorum(bool),
    Standby(u32, bool),
    Eligible(usize, bool),
    Move(usize, u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u32..6).prop_map(Step::Join),
        (0usize..8).prop_map(Step::Crash),
        (0usize..8).prop_map(Step::NodeDown),
        (0usize..8).prop_map(Step::Release),
        (0usize..8).prop_map(Step::GraceExpire),
        (0usize..4).prop_map(Step::Deliver),
        (0usize..4).prop_map(Step::Deliver),
        any::<bool>().prop_map(Step::Quorum),
        (1u32..6, any::<bool>()).prop_map(|(n, s)| Step::Standby(n, s)),
        (0usize..8, any::<bool>()).prop_map(|(i, e)| Step::Eligible(i, e)),
        (0usize..3, 1u32..6).prop_map(|(u, n)| Step::Move(u, n)),
    ]
}

proptest! {
    // PROPTEST_CASES=20000 for a long randomized run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400)
    ))]

    /// Whatever happens, members that are in sync agree on every holder, and a holder is a
    /// member (or a vanished member inside its grace).
    #[test]
    fn members_always_agree(steps in proptest::collection::vec(step(), 1..60)) {
        let mut p = Partition::new(&["a", "b", "c"]);
        let mut pid = 1000;
        let mut vanished_seen: Vec<MemberId> = Vec::new();
        let mut released: Vec<MemberId> = Vec::new();
        for s in steps {
            match s {
                Step::Join(node) => {
                    pid += 1;
                    if !p.members().iter().any(|x| x.node == node) {
                        p.join(m(node, pid), true);
                    }
                }
                Step::Crash(i) => if let Some(id) = p.members().get(i).copied() {
                    vanished_seen.push(id);
                    p.leave(id, LeaveReason::ProcessGone);
                },
                Step::NodeDown(i) => if let Some(id) = p.members().get(i).copied() {
                    p.leave(id, LeaveReason::NodeDown);
                },
                Step::Release(i) => if let Some(id) = p.members().get(i).copied() {
                    if !released.contains(&id) {
                        released.push(id);
                        p.send(id, Body::Release);
                    }
                },
                Step::GraceExpire(i) => {
                    if let (Some(v), Some(from)) = (vanished_seen.get(i).copied(), p.members().first().copied()) {
                        p.send(from, Body::GraceExpired { member: v, node_down: false });
                    }
                }
                Step::Deliver(n) => for _ in 0..=n {
                    if let Some((from, body)) = p.queue.pop_front() {
                        p.broadcast(Event::Message { from, body });
                    }
                },
                Step::Quorum(q) => p.set_quorate(q),
                Step::Standby(node, on) => if let Some(from) = p.members().first().copied() {
                    p.send(from, Body::Standby { node, standby: on });
                },
                Step::Eligible(i, e) => if let Some(id) = p.members().get(i).copied() {
                    let out = p.views.get_mut(&id).unwrap().set_local_eligible(e);
                    p.absorb(id, out);
                },
                Step::Move(u, to) => if let Some(from) = p.members().first().copied() {
                    p.send(from, Body::Move { unit: ["a", "b", "c"][u].into(), to });
                },
            }
            p.assert_agree();
            for v in p.views.values().filter(|v| v.is_synced()) {
                for a in v.assignments().values() {
                    if let Some(h) = a.holder {
                        prop_assert!(v.members().contains(&h) || v.vanished().contains(&h), "holder {h} is neither member nor reattaching");
                    }
                }
            }
        }
        // Once everything is delivered, released daemons have exited, quorum is there and
        // some node may serve, every resource has a live holder.
        p.set_quorate(true);
        for id in p.members() {
            let out = p.views.get_mut(&id).unwrap().set_local_eligible(true);
            p.absorb(id, out);
            p.send(id, Body::Standby { node: id.node, standby: false });
        }
        p.settle();
        for id in released {
            if p.views.contains_key(&id) {
                p.leave(id, LeaveReason::ProcessGone);
            }
        }
        p.settle();
        if !p.members().is_empty() {
            prop_assert!(p.all_synced());
            p.assert_agree();
            for r in ["a", "b", "c"] {
                let h = p.holder(r);
                let v = p.views.values().next().unwrap();
                prop_assert!(h.is_some(), "{r} has no holder with {:?} members", p.members());
                let h = h.unwrap();
                prop_assert!(v.members().contains(&h) || v.vanished().contains(&h));
            }
        }
    }
}

/// Feeds one event to one member (corosync reports to each node on its own schedule).
fn to_one(p: &mut Partition, id: MemberId, event: Event) {
    let out = p.views.get_mut(&id).unwrap().handle(event);
    p.absorb(id, out);
}

fn quorum_to_one(p: &mut Partition, id: MemberId, quorate: bool, ring: Ring, nodes: &[u32]) {
    let out = p.views.get_mut(&id).unwrap().set_local_quorum(quorate, Some(ring), nodes.to_vec());
    p.absorb(id, out);
}

/// Three members on ring 1, all quorate, `web` held by node 1.
fn three_on_a_ring() -> Partition {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1];
    let r1 = Ring { rep: 1, seq: 1 };
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    for n in 1..=3 {
        to_one(&mut p, m(n, 1), Event::Totem { ring: r1, nodes: vec![1, 2, 3] });
        quorum_to_one(&mut p, m(n, 1), true, r1, &[1, 2, 3]);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    p.elections.clear();
    p
}

/// Splits `alone` off `p` into a partition of its own.
fn split_off(p: &mut Partition, alone: MemberId) -> Partition {
    let mut minority = Partition::new(&["web"]);
    minority.prefer = p.prefer.clone();
    minority.views.insert(alone, p.views.remove(&alone).unwrap());
    minority
}

/// Both sides see each other join, then the new ring's quorum (true) at every node.
fn heal(mut a: Partition, mut b: Partition, ring: Ring) -> Partition {
    let side_a = a.members();
    let side_b = b.members();
    a.views.append(&mut b.views);
    a.elections.append(&mut b.elections);
    let all = a.members();
    let nodes: Vec<u32> = all.iter().map(|x| x.node).collect();
    for id in all.clone() {
        to_one(&mut a, id, Event::Totem { ring, nodes: nodes.clone() });
        let joined = if side_a.contains(&id) { side_b.clone() } else { side_a.clone() };
        to_one(&mut a, id, Event::Confchg { members: all.clone(), left: vec![], joined });
    }
    a.settle();
    for id in all {
        quorum_to_one(&mut a, id, true, ring, &nodes);
    }
    a.settle();
    a
}

/// Case 1 of the safety issue, on the pure core: a non-holder is cut off; its quorum service
/// says "not quorate" only after the CPG configuration change, so at the change its last flag
/// is still "quorate". It must not elect itself, and the heal must move nothing.
#[test]
fn isolated_non_holder_never_elects_even_when_its_quorum_news_comes_late() {
    let mut majority = three_on_a_ring();
    let generation = majority.views[&m(1, 1)].assignments()["web"].generation;
    let mut minority = split_off(&mut majority, m(3, 1));
    let (r2, r3) = (Ring { rep: 1, seq: 2 }, Ring { rep: 3, seq: 2 });
    // Totem runs ahead of CPG; the minority's quorum news comes after its confchg.
    to_one(&mut minority, m(3, 1), Event::Totem { ring: r3, nodes: vec![3] });
    to_one(
        &mut minority,
        m(3, 1),
        Event::Confchg { members: vec![m(3, 1)], left: vec![(m(1, 1), LeaveReason::NodeDown), (m(2, 1), LeaveReason::NodeDown)], joined: vec![] },
    );
    minority.settle();
    assert!(!minority.views[&m(3, 1)].partition_quorate(), "a fact of the old ring is stale");
    quorum_to_one(&mut minority, m(3, 1), false, r3, &[3]);
    minority.settle();
    // The majority hears its quorum news first.
    for n in [1, 2] {
        to_one(&mut majority, m(n, 1), Event::Totem { ring: r2, nodes: vec![1, 2] });
        quorum_to_one(&mut majority, m(n, 1), true, r2, &[1, 2]);
    }
    majority.broadcast(Event::Confchg { members: vec![m(1, 1), m(2, 1)], left: vec![(m(3, 1), LeaveReason::NodeDown)], joined: vec![] });
    majority.settle();
    assert!(majority.views[&m(1, 1)].may_act());
    assert!(!minority.views[&m(3, 1)].may_act());
    assert!(minority.elections.is_empty(), "the minority elected: {:?}", minority.elections);
    let healed = heal(majority, minority, Ring { rep: 1, seq: 3 });
    assert!(healed.all_synced());
    assert_eq!(healed.holder("web"), Some(m(1, 1)), "nothing moves on heal");
    assert_eq!(healed.views[&m(3, 1)].assignments()["web"].generation, generation);
    assert!(healed.elections.is_empty(), "elections: {:?}", healed.elections);
}

/// Same, with no totem news before the confchg at all: the adapter's synchronous quorum read
/// (corosync applies a loss of members before it delivers the CPG change) is the defence.
#[test]
fn isolated_node_with_no_news_at_all_is_held_back_by_the_synchronous_quorum_read() {
    let mut majority = three_on_a_ring();
    let mut minority = split_off(&mut majority, m(3, 1));
    let out = minority.views.get_mut(&m(3, 1)).unwrap().note_quorate_now(false);
    minority.absorb(m(3, 1), out);
    to_one(
        &mut minority,
        m(3, 1),
        Event::Confchg { members: vec![m(3, 1)], left: vec![(m(1, 1), LeaveReason::NodeDown), (m(2, 1), LeaveReason::NodeDown)], joined: vec![] },
    );
    minority.settle();
    assert!(minority.elections.is_empty(), "{:?}", minority.elections);
}

/// A member whose quorum report predates the configuration announces "not known yet", and
/// holders wait for it; when a synchronous read then finds it not quorate, with no new report
/// at all, the clearing is announced too, or its partition would wait for it forever.
#[test]
fn a_quorum_fact_not_known_yet_is_cleared_by_the_synchronous_read() {
    let mut majority = three_on_a_ring();
    let mut minority = split_off(&mut majority, m(3, 1));
    to_one(
        &mut minority,
        m(3, 1),
        Event::Confchg { members: vec![m(3, 1)], left: vec![(m(1, 1), LeaveReason::NodeDown), (m(2, 1), LeaveReason::NodeDown)], joined: vec![] },
    );
    minority.settle();
    assert!(minority.views[&m(3, 1)].quorum_pending(), "its report predates the change");
    assert!(!minority.views[&m(3, 1)].may_act());
    let out = minority.views.get_mut(&m(3, 1)).unwrap().note_quorate_now(false);
    assert!(!out.is_empty(), "the cleared fact must be announced");
    minority.absorb(m(3, 1), out);
    minority.settle();
    assert!(!minority.views[&m(3, 1)].quorum_pending(), "known now: not quorate");
    assert!(minority.elections.is_empty(), "{:?}", minority.elections);
}

#[test]
fn a_quorum_fact_from_an_earlier_configuration_is_ignored() {
    let mut p = three_on_a_ring();
    let r1 = Ring { rep: 1, seq: 1 };
    let old_config = p.members();
    // Node 3 goes; a fact node 2 sent in the old configuration is delivered after the change.
    p.views.remove(&m(3, 1));
    p.broadcast(Event::Confchg { members: p.members(), left: vec![(m(3, 1), LeaveReason::NodeDown)], joined: vec![] });
    let r2 = Ring { rep: 1, seq: 2 };
    for n in [1, 2] {
        to_one(&mut p, m(n, 1), Event::Totem { ring: r2, nodes: vec![1, 2] });
    }
    p.queue.clear();
    for n in [1, 2] {
        quorum_to_one(&mut p, m(n, 1), true, r2, &[1, 2]);
    }
    let stale = Body::Quorum { quorate: true, nodes: vec![1, 2, 3], ring: Some(r1), config: Some(old_config), pending: false };
    p.broadcast(Event::Message { from: m(2, 1), body: stale });
    // Only node 1's fresh fact is in; node 2's stale one does not count.
    let (from, body) = p.queue.pop_front().unwrap();
    assert_eq!(from, m(1, 1));
    p.broadcast(Event::Message { from, body });
    assert!(!p.views[&m(1, 1)].partition_quorate());
    p.settle();
    assert!(p.views[&m(1, 1)].partition_quorate());
}

#[test]
fn members_with_different_specs_neither_place_nor_move_the_unit() {
    let mut p = Partition::new(&["web"]);
    let spec = |prefer: Vec<u32>| vec![UnitSpec::new("web", prefer).with_key("web.allocation_id", "eipalloc-1")];
    p.join_with(m(1, 1), true, spec(vec![1]));
    p.join_with(m(2, 1), true, spec(vec![1]));
    p.join_with(m(3, 1), true, spec(vec![3]));
    p.settle();
    assert!(p.all_synced());
    assert_eq!(p.holder("web"), None, "not placed while the files differ");
    for v in p.views.values() {
        let c = v.conflicts();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].keys, vec!["prefer".to_string()]);
        assert_eq!(c[0].variants, vec![vec![1, 2], vec![3]]);
    }
    assert!(p.elections.is_empty());
    // Node 3's file is fixed and it reloads (re-exec: same pid, leaves and joins again).
    p.views.remove(&m(3, 1));
    p.broadcast(Event::Confchg { members: p.members(), left: vec![(m(3, 1), LeaveReason::ProcessGone)], joined: vec![] });
    p.join_with(m(3, 1), true, spec(vec![1]));
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    assert!(p.views.values().all(|v| v.conflicts().is_empty()));
    let placed = p.elections.iter().map(|(_, u, h)| (u.clone(), *h)).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(placed.len(), 1, "placed once: {:?}", p.elections);
    // Drift while held: the holder keeps it, and even a holder loss moves nothing until the
    // survivors' files agree.
    p.elections.clear();
    p.views.remove(&m(3, 1));
    p.broadcast(Event::Confchg { members: p.members(), left: vec![(m(3, 1), LeaveReason::ProcessGone)], joined: vec![] });
    p.join_with(m(3, 1), true, spec(vec![3]));
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)), "the holder keeps it");
    p.leave(m(1, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), None);
    assert!(p.elections.is_empty(), "{:?}", p.elections);
    p.views.remove(&m(3, 1));
    p.broadcast(Event::Confchg { members: p.members(), left: vec![(m(3, 1), LeaveReason::ProcessGone)], joined: vec![] });
    p.join_with(m(3, 1), true, spec(vec![1]));
    p.settle();
    assert!(p.holder("web").is_some(), "placed once the survivors agree");
}

#[test]
fn a_unit_only_some_members_are_configured_for_is_placed_on_them_and_all_agree() {
    let mut p = Partition::new(&["web"]);
    p.join_with(m(1, 1), true, vec![UnitSpec::new("web", vec![]), UnitSpec::new("new", vec![])]);
    p.join_with(m(2, 1), true, vec![UnitSpec::new("web", vec![])]);
    p.join_with(m(3, 1), true, vec![UnitSpec::new("web", vec![])]);
    p.settle();
    assert_eq!(p.holder("new"), Some(m(1, 1)), "a roll-out: the only configured node takes it");
    assert!(p.views.values().all(|v| v.conflicts().is_empty()), "absent is not different");
    p.assert_agree();
}

fn cannot(p: &mut Partition, id: MemberId, units: &[&str]) {
    let list = units
        .iter()
        .map(|u| Unable { unit: u.to_string(), class: Incapacity::Permission, reason: "UnauthorizedOperation".into() })
        .collect();
    let out = p.views.get_mut(&id).unwrap().set_local_cannot_serve(list);
    p.absorb(id, out);
    p.settle();
}

#[test]
fn a_successor_that_cannot_serve_hands_over_and_nothing_moves_back() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1, 2, 3];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    p.leave(m(1, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 1)));
    cannot(&mut p, m(2, 1), &["web"]);
    assert_eq!(p.holder("web"), Some(m(3, 1)), "the next candidate");
    assert!(p.views[&m(3, 1)].cannot_serve(&m(2, 1), "web").is_some());
    // Node 2 can serve again: nothing moves back.
    cannot(&mut p, m(2, 1), &[]);
    assert_eq!(p.holder("web"), Some(m(3, 1)));
    // Nobody can: it stays where it is.
    cannot(&mut p, m(3, 1), &["web"]);
    assert_eq!(p.holder("web"), Some(m(2, 1)));
    cannot(&mut p, m(2, 1), &["web"]);
    assert_eq!(p.holder("web"), Some(m(2, 1)), "no capable member: stays");
    p.assert_agree();
}

#[test]
fn a_silent_member_does_not_block_a_round_or_a_failover() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1, 2, 3];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    // Node 2's daemon is stopped; node 1's node goes down.
    p.stopped.push(m(2, 1));
    p.leave(m(1, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), None, "waiting for node 2's quorum fact");
    assert_eq!(p.views[&m(3, 1)].silent_members(), vec![m(2, 1)]);
    let config = p.views[&m(3, 1)].config();
    p.send(m(3, 1), Body::Unresponsive { member: m(2, 1), config });
    p.settle();
    assert_eq!(p.holder("web"), Some(m(3, 1)), "the others go on without the silent member");
    assert!(p.views[&m(3, 1)].muted().contains(&m(2, 1)));
    // A new member joins while node 2 is still stopped: the round completes without it.
    p.join(m(4, 1), true);
    p.settle();
    assert!(!p.views[&m(3, 1)].is_synced());
    let config = p.views[&m(3, 1)].config();
    p.send(m(3, 1), Body::Unresponsive { member: m(2, 1), config });
    p.settle();
    assert!(p.views[&m(3, 1)].is_synced() && p.views[&m(4, 1)].is_synced());
    // Node 2 resumes: what it held back is delivered; it is counted and agrees again.
    p.stopped.clear();
    let back: Vec<_> = std::mem::take(&mut p.held_back);
    for (from, body) in back {
        p.send(from, body);
    }
    p.settle();
    assert!(p.views.values().all(|v| v.muted().is_empty()));
    assert!(p.all_synced());
    p.assert_agree();
    assert_eq!(p.holder("web"), Some(m(3, 1)), "nothing moved when it came back");
}

#[test]
fn a_peer_generation_near_the_limit_is_refused_not_overflowed() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=2 {
        p.join(m(n, 1), true);
    }
    p.settle();
    let holder = p.holder("web").unwrap();
    let mut bad = View::new(m(9, 1), info(m(9, 1), true, &[]), vec![UnitSpec::new("web", vec![])]);
    bad.seed(vec![WireAssignment { resource: "web".into(), holder: Some(m(9, 1)), generation: u64::MAX, verified: vec![], fence: None, fences: vec![] }]);
    assert!(bad.assignments().is_empty(), "seed refuses it");
    // A State carrying it (as a broken or hostile peer would send) is ignored in the merge.
    p.join(m(3, 1), true);
    for (from, body) in p.queue.iter_mut() {
        if let (true, Body::State(state)) = (*from == m(3, 1), body) {
            state.synced = true;
            state.assignments = vec![WireAssignment { resource: "web".into(), holder: Some(m(3, 1)), generation: u64::MAX, verified: vec![], fence: None, fences: vec![] }];
        }
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(holder));
}

#[test]
fn only_a_member_that_learnt_the_table_keeps_it_for_its_next_connection() {
    let mut p = Partition::new(&["web"]);
    for n in 1..=3 {
        p.join(m(n, 100 + n), true);
    }
    // Before any round completes, nobody has a table to hand over.
    for v in p.views.values() {
        assert!(v.table_to_keep().is_none(), "{} offered a table it never learnt", v.local());
    }
    p.settle();
    let holder = p.holder("web").expect("a holder");
    for v in p.views.values() {
        let kept = v.table_to_keep().expect("a synced member keeps its table");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].holder, Some(holder));
    }
}

/// A holder multicasts its State when a round starts and its Held once EC2 confirms; when the
/// Held is delivered before the round's last State, the merged table must still carry it, or
/// every member shows the address as unverified until the holder acquires it again (CI saw
/// exactly that after two corosyncs rejoined).
#[test]
fn a_held_delivered_during_a_round_survives_the_merge() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1];
    p.join(m(1, 1), true);
    p.join(m(2, 1), true);
    p.settle();
    let holder = p.holder("web").unwrap();
    let generation = p.views[&holder].assignments()["web"].generation;
    // A third daemon joins: every member multicasts its State, none of them verified yet.
    p.join(m(3, 1), true);
    let at = p.queue.iter().position(|(from, body)| *from == holder && matches!(body, Body::State(_))).unwrap();
    let held = HeldMsg { unit: "web".into(), resource: "web".into(), generation, instance_id: None, network_interface_id: None, epoch: None };
    p.queue.insert(at + 1, (holder, Body::Held(held)));
    assert!(p.queue.len() > at + 2, "the Held lands before the round's last State");
    p.settle();
    assert!(p.all_synced());
    for v in p.views.values() {
        let a = &v.assignments()["web"];
        assert_eq!(a.holder, Some(holder));
        assert!(a.verified.iter().any(|h| h.resource == "web"), "{} lost the holder's Held", v.local());
    }
}

/// A daemon that lost its corosync connection comes back alone with the table it kept, while
/// the holder that table names has not rejoined yet (its corosync restarted as well). It keeps
/// that holder for the reattach grace: when the holder comes back in time, nothing moves.
#[test]
fn a_member_back_alone_with_its_kept_table_gives_the_absent_holder_the_grace() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    let kept: BTreeMap<MemberId, Vec<WireAssignment>> =
        p.views.iter().map(|(id, v)| (*id, v.table_to_keep().expect("synced"))).collect();
    let rejoin = |q: &mut Partition, id: MemberId| rejoin_with_kept_table(q, id, &kept[&id], &[]);
    let mut q = Partition::new(&["web"]);
    rejoin(&mut q, m(2, 1));
    assert!(q.all_synced());
    assert_eq!(q.holder("web"), Some(m(1, 1)), "the absent holder keeps its unit for the grace");
    assert!(q.grace_started.contains(&m(1, 1)));
    assert!(q.elections.is_empty(), "elected at once: {:?}", q.elections);
    rejoin(&mut q, m(1, 1));
    rejoin(&mut q, m(3, 1));
    assert_eq!(q.holder("web"), Some(m(1, 1)));
    assert!(q.elections.is_empty(), "something moved: {:?}", q.elections);

    // When the holder does not come back, its grace runs out and a member takes over.
    let mut alone = Partition::new(&["web"]);
    rejoin(&mut alone, m(3, 1));
    assert_eq!(alone.holder("web"), Some(m(1, 1)));
    alone.send(m(3, 1), Body::GraceExpired { member: m(1, 1), node_down: false });
    alone.settle();
    assert_eq!(alone.holder("web"), Some(m(3, 1)));
}

/// Corosync restarted on every node: the rings re-form one by one, so the first quorate ring
/// may lack the node of the holder the kept tables name. That node was never seen leaving, it
/// is not back yet: its holder keeps the grace rather than losing its addresses at once. A node
/// seen in the membership and then gone is taken over at once, as before.
#[test]
fn a_holder_whose_node_is_not_back_yet_after_corosync_restarted_everywhere_keeps_the_grace() {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![3];
    for n in 1..=3 {
        p.join(m(n, 1), true);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(m(3, 1)));
    let kept: BTreeMap<MemberId, Vec<WireAssignment>> =
        p.views.iter().map(|(id, v)| (*id, v.table_to_keep().expect("synced"))).collect();
    let mut q = Partition::new(&["web"]);
    q.nodes = vec![1, 2];
    // Each corosync first forms a ring of its own, then nodes 1 and 2 meet; node 3's corosync
    // is still starting.
    rejoin_with_kept_table(&mut q, m(1, 1), &kept[&m(1, 1)], &[1]);
    rejoin_with_kept_table(&mut q, m(2, 1), &kept[&m(2, 1)], &[2]);
    let ring = Ring { rep: 1, seq: 30 };
    q.broadcast(Event::Totem { ring, nodes: vec![1, 2] });
    for id in q.members() {
        let out = q.views.get_mut(&id).unwrap().set_local_quorum(true, Some(ring), vec![1, 2]);
        q.absorb(id, out);
    }
    q.settle();
    assert!(q.grace_started.contains(&m(3, 1)));
    for id in q.members() {
        assert_eq!(q.views[&id].vanished_on_gone_nodes(), vec![], "{id}: node 3 never left, it is not back yet");
        assert!(q.views[&id].outside_membership(3), "a grace that runs out still fences node 3");
    }
    assert_eq!(q.holder("web"), Some(m(3, 1)));
    assert!(q.elections.is_empty(), "moved at once: {:?}", q.elections);

    // Node 3 joins the ring, then leaves it before its daemon is back: now it is gone.
    let ring = Ring { rep: 1, seq: 34 };
    q.broadcast(Event::Totem { ring, nodes: vec![1, 2, 3] });
    let ring = Ring { rep: 1, seq: 38 };
    q.broadcast(Event::Totem { ring, nodes: vec![1, 2] });
    q.settle();
    for id in q.members() {
        assert_eq!(q.views[&id].vanished_on_gone_nodes(), vec![m(3, 1)], "{id}");
    }
}

/// A member that rejoins announces the quorum fact its corosync gave it before the new ring
/// formed ("not quorate", on an older ring). That is news not yet arrived, not a verdict on the
/// configuration: the holder keeps its address (no release, the local address stays) and may
/// write again once the fact for the current ring arrives.
#[test]
fn a_rejoining_members_fact_about_an_older_ring_keeps_the_holder_in_place() {
    let mut p = three_on_a_ring();
    let r2 = Ring { rep: 1, seq: 2 };
    p.views.remove(&m(3, 1));
    p.broadcast(Event::Confchg { members: p.members(), left: vec![(m(3, 1), LeaveReason::NodeDown)], joined: vec![] });
    for n in [1, 2] {
        to_one(&mut p, m(n, 1), Event::Totem { ring: r2, nodes: vec![1, 2] });
        quorum_to_one(&mut p, m(n, 1), true, r2, &[1, 2]);
    }
    p.settle();
    let v = &p.views[&m(1, 1)];
    assert!(v.may_act(), "synced {} quorate {} pending {}", v.is_synced(), v.partition_quorate(), v.quorum_pending());
    // Node 3 comes back; its corosync last reported its own lonely ring, older than r3.
    let r3 = Ring { rep: 1, seq: 3 };
    for n in [1, 2] {
        to_one(&mut p, m(n, 1), Event::Totem { ring: r3, nodes: vec![1, 2, 3] });
        quorum_to_one(&mut p, m(n, 1), true, r3, &[1, 2, 3]);
    }
    let mut back = info(m(3, 2), false, &[3]);
    back.ring = Some(Ring { rep: 3, seq: 2 });
    p.views.insert(m(3, 2), View::new(m(3, 2), back, vec![UnitSpec::new("web", vec![1])]));
    let members = p.members();
    p.broadcast(Event::Confchg { members, left: vec![], joined: vec![m(3, 2)] });
    p.settle();
    let holder = &p.views[&m(1, 1)];
    assert!(holder.is_synced());
    assert!(!holder.partition_quorate(), "node 3 has not reported the current ring");
    assert!(holder.quorum_pending(), "an older ring's fact is still arriving, not a veto");
    assert!(!holder.may_act());
    to_one(&mut p, m(3, 2), Event::Totem { ring: r3, nodes: vec![1, 2, 3] });
    quorum_to_one(&mut p, m(3, 2), true, r3, &[1, 2, 3]);
    p.settle();
    let v = &p.views[&m(1, 1)];
    assert!(v.may_act(), "quorate {} pending {}", v.partition_quorate(), v.quorum_pending());
    assert_eq!(p.holder("web"), Some(m(1, 1)));
}

/// Both daemons of a pair lost their corosync connection (corosync restarted on each). The one
/// back first may have missed a newer generation the other still knows: with its peer's node
/// in the membership but its daemon not back yet, it neither elects nor writes, even once the
/// peer's grace runs out; the other's table then decides. The startup wait bounds the pause.
#[test]
fn a_kept_table_waits_for_the_daemons_of_every_node_before_anyone_acts() {
    let mut p = Partition::new(&["web"]);
    p.nodes = vec![1, 2];
    p.prefer = vec![1];
    for n in 1..=2 {
        p.join(m(n, 1), true);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    let stale = p.views[&m(1, 1)].table_to_keep().unwrap();
    // Node 1's daemon is gone from the group: node 2 takes web (generation 2), then loses its
    // own connection.
    p.leave(m(1, 1), LeaveReason::ProcessGone);
    p.send(m(2, 1), Body::GraceExpired { member: m(1, 1), node_down: false });
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 1)));
    let newer = p.views[&m(2, 1)].table_to_keep().unwrap();
    assert!(newer[0].generation > stale[0].generation);

    let rejoin = |q: &mut Partition, id: MemberId, table: &Vec<WireAssignment>| rejoin_with_kept_table(q, id, table, &[1, 2]);
    let mut q = Partition::new(&["web"]);
    q.nodes = vec![1, 2];
    rejoin(&mut q, m(1, 1), &stale);
    let v = &q.views[&m(1, 1)];
    assert!(v.unconfirmed() && v.awaiting_startup(), "waits for node 2's daemon");
    assert!(!v.may_act(), "a table kept from before generation 2 must not write");
    q.send(m(1, 1), Body::GraceExpired { member: m(2, 1), node_down: false });
    q.settle();
    assert!(q.elections.is_empty(), "{:?}", q.elections);
    rejoin(&mut q, m(2, 1), &newer);
    assert_eq!(q.holder("web"), Some(m(2, 1)), "the newer table decides");
    assert!(!q.views[&m(1, 1)].unconfirmed());
    assert!(q.elections.is_empty(), "nothing moved: {:?}", q.elections);

    // Node 2's daemon never comes back: the startup wait ends the pause.
    let mut alone = Partition::new(&["web"]);
    alone.nodes = vec![1, 2];
    rejoin(&mut alone, m(1, 1), &stale);
    assert!(!alone.views[&m(1, 1)].may_act());
    alone.send(m(1, 1), Body::PlaceNow);
    alone.settle();
    assert!(alone.views[&m(1, 1)].may_act());
    assert_eq!(alone.holder("web"), Some(m(1, 1)));
}

/// A daemon reconnects to `q` with the table it kept (seeded as the daemon does), corosync
/// listing `nodes`, and the partition delivers what follows.
fn rejoin_with_kept_table(q: &mut Partition, id: MemberId, table: &[WireAssignment], nodes: &[u32]) {
    let mut v = View::new(id, info(id, true, nodes), vec![UnitSpec::new("web", vec![1])]);
    v.seed(table.to_vec());
    q.views.insert(id, v);
    let members = q.members();
    q.broadcast(Event::Confchg { members, left: vec![], joined: vec![id] });
    q.settle();
}

// ---- Fencing: whether a takeover must stop the departed holder's instance first ----

use corosync_eip::core::view::Fence;

/// The fences every member announced with the last election of `unit`; panics unless they
/// agree.
fn fences_of(p: &Partition, unit: &str) -> Vec<Fence> {
    let last = p.elections.iter().rev().find(|(_, u, _)| u == unit).map(|(_, _, h)| *h);
    // Both are pushed with every election, and `fences` may have been cleared since.
    let elections = &p.elections[p.elections.len() - p.fences.len()..];
    let said: Vec<&Vec<Fence>> = p
        .fences
        .iter()
        .zip(elections)
        .filter(|((_, u, _), (_, _, h))| u == unit && Some(*h) == last)
        .map(|((_, _, f), _)| f)
        .collect();
    assert!(!said.is_empty(), "{unit}: no election announced");
    for f in &said {
        assert_eq!(*f, said[0], "members disagree on the fences of {unit}");
    }
    said[0].clone()
}

/// The one fence (if any) the last election of `unit` announced.
fn fence_of(p: &Partition, unit: &str) -> Option<Fence> {
    let fences = fences_of(p, unit);
    assert!(fences.len() <= 1, "{unit}: more than one fence: {fences:?}");
    fences.into_iter().next()
}

fn three_nodes(units: &[&str]) -> Partition {
    let mut p = Partition::new(units);
    for n in 1..=3 {
        p.join(m(n, n), true);
    }
    p.settle();
    p.fences.clear();
    p
}

#[test]
fn a_holder_whose_node_left_is_fenced_by_its_successor() {
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::NodeDown);
    p.settle();
    let new = p.holder("web").expect("a successor");
    let fence = fence_of(&p, "web").expect("a node loss is fenced");
    assert_eq!(fence.target.member, old);
    assert_eq!(fence.target.instance_id.as_deref(), Some(format!("i-{}", old.node).as_str()), "its info was dropped, its instance kept");
    assert!(!fence.delayed, "two survivors: no split two-node cluster, no delay");
    // Owed until the successor verifies the unit (a re-exec or a failed fence keeps it).
    assert_eq!(p.views[&new].fences("web"), vec![fence.clone()]);
    assert_eq!(p.views[&new].assignments()["web"].fences, vec![fence.target.clone()]);
    let generation = p.views[&new].assignments()["web"].generation;
    p.send(new, Body::Held(HeldMsg { unit: "web".into(), resource: "web".into(), generation, instance_id: Some(format!("i-{}", new.node)), network_interface_id: None, epoch: None }));
    p.settle();
    for (id, v) in &p.views {
        assert!(v.assignments()["web"].fences.is_empty(), "{id}: verified, nothing owed");
    }
    assert!(p.views[&new].fences("web").is_empty());
}

#[test]
fn a_release_a_planned_move_and_a_daemon_death_on_a_live_node_are_never_fenced() {
    // Planned release (systemctl stop).
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    p.send(old, Body::Release);
    p.settle();
    p.leave(old, LeaveReason::ProcessGone);
    p.settle();
    assert_eq!(fence_of(&p, "web"), None, "release");

    // Planned move.
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    let to = p.members().into_iter().find(|x| x.node != old.node).unwrap();
    p.send(old, Body::Move { unit: "web".into(), to: to.node });
    p.settle();
    assert_eq!(p.holder("web"), Some(to));
    assert_eq!(fence_of(&p, "web"), None, "planned move");

    // The daemon died, its node stayed, and the grace ran out on the clock.
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::ProcessGone);
    p.settle();
    let someone = p.members()[0];
    p.send(someone, Body::GraceExpired { member: old, node_down: false });
    p.settle();
    assert_ne!(p.holder("web").map(|h| h.node), Some(old.node));
    assert_eq!(fence_of(&p, "web"), None, "daemon-only death");

    // Back within the grace: no election at all.
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::ProcessGone);
    p.join(m(old.node, 77), true);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(old.node, 77)));
    assert!(p.fences.is_empty(), "{:?}", p.fences);
}

#[test]
fn a_vanished_holder_whose_node_then_left_is_fenced() {
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::ProcessGone);
    p.settle();
    let someone = p.members()[0];
    p.send(someone, Body::GraceExpired { member: old, node_down: true });
    p.settle();
    let fence = fence_of(&p, "web").expect("the node left during the grace");
    assert_eq!(fence.target.member, old);
}

#[test]
fn a_grace_that_ends_during_a_sync_round_fences_only_when_the_node_left() {
    for node_down in [false, true] {
        let mut p = three_nodes(&["web"]);
        let old = p.holder("web").unwrap();
        p.leave(old, LeaveReason::ProcessGone);
        p.settle();
        // A fourth node joins; the grace ends while its round is still collecting States.
        p.join(m(4, 4), true);
        let someone = p.members()[0];
        p.queue.push_front((someone, Body::GraceExpired { member: old, node_down }));
        p.settle();
        assert!(p.all_synced());
        let fence = fence_of(&p, "web");
        assert_eq!(fence.is_some(), node_down, "node_down = {node_down}: {fence:?}");
    }
}

#[test]
fn in_a_split_two_node_cluster_only_the_higher_node_id_waits() {
    // Node 1 is left alone (node 2 lost): it fences at once.
    for (lost, survivor, delayed) in [(2u32, 1u32, false), (1, 2, true)] {
        let mut p = Partition::new(&["web", "api"]);
        p.prefer = vec![lost];
        p.join(m(1, 1), true);
        p.join(m(2, 2), true);
        p.settle();
        assert_eq!(p.holder("web").map(|h| h.node), Some(lost));
        p.fences.clear();
        p.leave(m(lost, lost), LeaveReason::NodeDown);
        p.settle();
        assert_eq!(p.holder("web"), Some(m(survivor, survivor)));
        let fence = fence_of(&p, "web").expect("fenced");
        assert_eq!(fence.delayed, delayed, "survivor {survivor}");
    }
    // With three nodes a lone survivor cannot be quorate; two survivors never wait.
    let mut p = three_nodes(&["web"]);
    p.prefer = vec![1];
    let old = p.holder("web").unwrap();
    p.leave(old, LeaveReason::NodeDown);
    p.settle();
    assert!(!fence_of(&p, "web").unwrap().delayed);
}

#[test]
fn a_member_that_never_saw_the_departed_holder_learns_its_instance_from_the_table() {
    // web's holder leaves while no member can take web (every other is in standby); a new
    // node joins later and is elected: it must still fence the right instance.
    let mut p = three_nodes(&["web"]);
    let old = p.holder("web").unwrap();
    for other in p.members().into_iter().filter(|x| *x != old) {
        p.send(other, Body::Standby { node: other.node, standby: true });
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(old), "the holder keeps it");
    p.leave(old, LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), None, "nobody can take it");
    p.join(m(9, 9), true);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(9, 9)));
    let fence = fence_of(&p, "web").expect("still fenced");
    assert_eq!(fence.target.member, old);
    assert_eq!(fence.target.instance_id.as_deref(), Some(format!("i-{}", old.node).as_str()));
}

/// Four nodes, `web` on node 1 (preferred), settled.
fn four_nodes() -> Partition {
    let mut p = Partition::new(&["web"]);
    p.prefer = vec![1, 2, 3, 4];
    for n in 1..=4 {
        p.join(m(n, n), true);
    }
    p.settle();
    assert_eq!(p.holder("web"), Some(m(1, 1)));
    p.fences.clear();
    p
}

#[test]
fn a_successor_lost_before_it_fenced_leaves_both_fences_to_the_next() {
    let mut p = four_nodes();
    p.leave(m(1, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 2)));
    assert_eq!(fences_of(&p, "web").iter().map(|f| f.target.member).collect::<Vec<_>>(), vec![m(1, 1)]);
    // Node 2 goes down too before it verified anything: node 1 may still be writing, and so
    // may node 2 (it may have sent its AssociateAddress).
    p.leave(m(2, 2), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(3, 3)));
    let fences = fences_of(&p, "web");
    assert_eq!(fences.iter().map(|f| f.target.member).collect::<Vec<_>>(), vec![m(1, 1), m(2, 2)]);
    assert_eq!(
        fences.iter().map(|f| f.target.instance_id.clone()).collect::<Vec<_>>(),
        vec![Some("i-1".to_string()), Some("i-2".to_string())]
    );
    p.assert_agree();
}

#[test]
fn a_successor_re_executed_before_it_fenced_still_fences() {
    let mut p = four_nodes();
    p.leave(m(1, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 2)));
    // Node 2's daemon re-executes (reload, upgrade) before its fence succeeded: its new
    // incarnation starts from the table the old one kept.
    let kept = p.views[&m(2, 2)].state_message().assignments;
    p.leave(m(2, 2), LeaveReason::ProcessGone);
    p.settle();
    let mut v = View::new(m(2, 2), info(m(2, 2), true, &[]), vec![UnitSpec::new("web", vec![1, 2, 3, 4])]);
    v.seed(kept);
    p.views.insert(m(2, 2), v);
    let members = p.members();
    p.broadcast(Event::Confchg { members, left: vec![], joined: vec![m(2, 2)] });
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 2)), "back within the grace: it keeps the unit");
    let owed = p.views[&m(2, 2)].fences("web");
    assert_eq!(owed.iter().map(|f| f.target.member).collect::<Vec<_>>(), vec![m(1, 1)], "the fence is still owed");
    p.assert_agree();
}

#[test]
fn a_departed_holder_back_in_the_group_is_no_longer_fenced() {
    let mut p = four_nodes();
    p.leave(m(1, 1), LeaveReason::NodeDown);
    p.settle();
    assert_eq!(p.views[&m(2, 2)].fences("web").len(), 1);
    // Node 1 rebooted and its daemon is back before node 2's fence went out: stopping it now
    // would stop a live member that holds nothing.
    p.join(m(1, 11), true);
    p.settle();
    assert_eq!(p.holder("web"), Some(m(2, 2)), "no move back");
    for (id, v) in &p.views {
        assert!(v.assignments()["web"].fences.is_empty(), "{id} still owes a fence: {:?}", v.assignments()["web"].fences);
    }
    assert!(p.views[&m(2, 2)].fences("web").is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300)
    ))]

    /// Whatever happens, a takeover fences only a member that left with its node (a node loss,
    /// or a grace that ended because the node left) and never released first; never a member
    /// still present, never the new holder's own node; members announcing the same election
    /// announce the same fence; and the instance named is the departed node's.
    #[test]
    fn fences_name_only_holders_lost_with_their_node(steps in proptest::collection::vec(step(), 1..60)) {
        let mut p = Partition::new(&["a", "b", "c"]);
        let mut pid = 1000;
        let mut vanished_seen: Vec<MemberId> = Vec::new();
        let mut released: Vec<MemberId> = Vec::new();
        // A Release counts once CPG delivered it while its sender was a member: one still
        // queued when the node went down was never agreed on.
        let mut delivered_release: Vec<MemberId> = Vec::new();
        let mut lost: Vec<MemberId> = Vec::new();
        for s in steps {
            let (fences_before, elections_before) = (p.fences.len(), p.elections.len());
            match s {
                Step::Join(node) => {
                    pid += 1;
                    if !p.members().iter().any(|x| x.node == node) {
                        p.join(m(node, pid), true);
                    }
                }
                Step::Crash(i) => if let Some(id) = p.members().get(i).copied() {
                    vanished_seen.push(id);
                    p.leave(id, LeaveReason::ProcessGone);
                },
                Step::NodeDown(i) => if let Some(id) = p.members().get(i).copied() {
                    if !delivered_release.contains(&id) {
                        lost.push(id);
                    }
                    p.leave(id, LeaveReason::NodeDown);
                },
                Step::Release(i) => if let Some(id) = p.members().get(i).copied() {
                    if !released.contains(&id) {
                        released.push(id);
                        p.send(id, Body::Release);
                    }
                },
                Step::GraceExpire(i) => {
                    if let (Some(v), Some(from)) = (vanished_seen.get(i).copied(), p.members().first().copied()) {
                        // Odd indices: the node left the membership meanwhile.
                        let node_down = i % 2 == 1;
                        if node_down && !delivered_release.contains(&v) {
                            lost.push(v);
                        }
                        p.send(from, Body::GraceExpired { member: v, node_down });
                    }
                }
                Step::Deliver(n) => for _ in 0..=n {
                    if let Some((from, body)) = p.queue.pop_front() {
                        if body == Body::Release && p.members().contains(&from) {
                            delivered_release.push(from);
                        }
                        p.broadcast(Event::Message { from, body });
                    }
                },
                Step::Quorum(q) => p.set_quorate(q),
                Step::Standby(node, on) => if let Some(from) = p.members().first().copied() {
                    p.send(from, Body::Standby { node, standby: on });
                },
                Step::Eligible(i, e) => if let Some(id) = p.members().get(i).copied() {
                    let out = p.views.get_mut(&id).unwrap().set_local_eligible(e);
                    p.absorb(id, out);
                },
                Step::Move(u, to) => if let Some(from) = p.members().first().copied() {
                    p.send(from, Body::Move { unit: ["a", "b", "c"][u].into(), to });
                },
            }
            prop_assert_eq!(p.fences.len() - fences_before, p.elections.len() - elections_before);
            let mut said: BTreeMap<(String, MemberId), Vec<Fence>> = BTreeMap::new();
            for ((_, unit, fence), (_, _, holder)) in p.fences[fences_before..].iter().zip(&p.elections[elections_before..]) {
                for f in fence {
                    let target = f.target.member;
                    prop_assert!(lost.contains(&target), "{target} fenced but never lost with its node (releases delivered: {delivered_release:?})");
                    prop_assert!(!p.members().contains(&target), "{target} fenced while a member");
                    prop_assert_ne!(target.node, holder.node, "a node never fences itself");
                    let expected = format!("i-{}", target.node);
                    prop_assert!(f.target.instance_id.as_deref().is_none_or(|i| i == expected), "{:?}", f.target);
                }
                let key = (unit.clone(), *holder);
                if let Some(first) = said.get(&key) {
                    prop_assert_eq!(first, fence, "members disagree on the fence of {}", unit);
                } else {
                    said.insert(key, fence.clone());
                }
            }
        }
    }
}
