//! Who should take a resource that has no live holder.
//!
//! Every member runs this with the same inputs and gets the same answer. Preference lists win;
//! otherwise the least loaded node, so units spread evenly; among equally loaded nodes,
//! rendezvous (highest-random-weight) hashing. Only units without a live holder are placed, so
//! a membership change moves only the units of the node that went away.

use std::collections::BTreeMap;

use super::NodeId;

/// A stable 64-bit mix (FNV-1a over the bytes, then a splitmix finaliser). Must never change
/// between releases: members running different versions must agree on placements.
fn weight(resource: &str, node: NodeId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in resource.bytes().chain(node.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Picks one node out of `candidates` for `unit`. Nodes earlier in `prefer` win; otherwise the
/// node holding the fewest units (`load`), then the highest rendezvous weight, then (practically
/// never needed) the lower node id.
pub fn choose(unit: &str, prefer: &[NodeId], candidates: &[NodeId], load: &BTreeMap<NodeId, usize>) -> Option<NodeId> {
    if let Some(preferred) = prefer.iter().find(|p| candidates.contains(p)) {
        return Some(*preferred);
    }
    let load_of = |n: &NodeId| load.get(n).copied().unwrap_or(0);
    candidates.iter().copied().max_by(|a, b| {
        load_of(b)
            .cmp(&load_of(a))
            .then(weight(unit, *a).cmp(&weight(unit, *b)))
            .then(b.cmp(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn none() -> BTreeMap<NodeId, usize> {
        BTreeMap::new()
    }

    #[test]
    fn preference_order_wins() {
        let busy: BTreeMap<NodeId, usize> = [(3, 10)].into();
        assert_eq!(choose("web", &[3, 1], &[1, 2, 3], &busy), Some(3));
        assert_eq!(choose("web", &[4, 1], &[1, 2, 3], &none()), Some(1));
        assert_eq!(choose("web", &[], &[], &none()), None);
    }

    #[test]
    fn least_loaded_node_wins() {
        let load: BTreeMap<NodeId, usize> = [(1, 2), (2, 1), (3, 2)].into();
        for unit in ["a", "b", "c", "d"] {
            assert_eq!(choose(unit, &[], &[1, 2, 3], &load), Some(2));
        }
    }

    #[test]
    fn placing_units_one_by_one_spreads_them_evenly() {
        let mut load = BTreeMap::new();
        for i in 0..12 {
            let n = choose(&format!("res{i}"), &[], &[1, 2, 3], &load).unwrap();
            *load.entry(n).or_insert(0) += 1;
        }
        assert_eq!(load.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    }

    #[test]
    fn weights_are_stable_across_releases() {
        // Pinned values: a change here would make mixed-version clusters disagree.
        assert_eq!(weight("web", 1), 0x5623de52b81c99dd);
        assert_eq!(weight("web", 2), 0x2f4076b8199f85d8);
    }

    #[test]
    fn many_resources_spread_over_members() {
        let nodes = [1, 2, 3];
        let mut count = [0usize; 3];
        for i in 0..300 {
            let n = choose(&format!("res{i}"), &[], &nodes, &none()).unwrap();
            count[(n - 1) as usize] += 1;
        }
        for c in count {
            assert!((70..=130).contains(&c), "uneven spread {count:?}");
        }
    }

    proptest! {
        #[test]
        fn order_of_candidates_does_not_matter(res in "[a-z]{1,8}", mut nodes in proptest::collection::btree_set(1u32..50, 1..8)) {
            let forward: Vec<_> = nodes.iter().copied().collect();
            let mut backward = forward.clone();
            backward.reverse();
            prop_assert_eq!(choose(&res, &[], &forward, &none()), choose(&res, &[], &backward, &none()));
            nodes.clear();
        }

        #[test]
        fn losing_a_node_moves_only_its_resources(gone in 1u32..6) {
            let all: Vec<u32> = (1..6).collect();
            let rest: Vec<u32> = all.iter().copied().filter(|n| *n != gone).collect();
            for i in 0..50 {
                let r = format!("r{i}");
                let before = choose(&r, &[], &all, &none()).unwrap();
                let after = choose(&r, &[], &rest, &none()).unwrap();
                if before != gone {
                    prop_assert_eq!(before, after);
                }
            }
        }
    }
}
