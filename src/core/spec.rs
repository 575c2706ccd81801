//! What each member announces about the units it is configured for, and how members find out
//! that their files differ.
//!
//! Per-node configuration files differ for a while in every roll-out, and whenever
//! configuration management misses a node. Members that placed a unit by different rules would
//! each elect a different holder and fight over the address, so a unit whose specs differ
//! between members is neither placed nor moved until the files agree again.

use std::collections::{BTreeMap, BTreeSet};

use super::wire::UnitDigest;
use super::NodeId;

/// One unit (an ungrouped resource or a group) as this node's file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitSpec {
    /// The unit's name: the group name, or the resource's own name.
    pub name: String,
    /// Node ids in the order the file prefers them as holder.
    pub prefer: Vec<NodeId>,
    /// Setting name → fingerprint of its value, for every setting that decides placement or
    /// action (kind, allocation or address, route tables, interface, group members, prefer).
    pub keys: BTreeMap<String, String>,
}

impl UnitSpec {
    /// A unit whose only setting is its preference list.
    pub fn new(name: &str, prefer: Vec<NodeId>) -> UnitSpec {
        let listed: Vec<String> = prefer.iter().map(u32::to_string).collect();
        let mut keys = BTreeMap::new();
        keys.insert("prefer".to_owned(), fingerprint(&listed.join(",")));
        UnitSpec {
            name: name.to_owned(),
            prefer,
            keys,
        }
    }

    /// Adds a setting (its value is fingerprinted).
    pub fn with_key(mut self, key: &str, value: &str) -> UnitSpec {
        self.keys.insert(key.to_owned(), fingerprint(value));
        self
    }

    /// What this member announces about the unit, so members can compare their files.
    pub fn digest(&self) -> UnitDigest {
        UnitDigest {
            prefer: self.prefer.clone(),
            keys: self.keys.clone(),
        }
    }
}

/// A stable 64-bit FNV-1a of the value, as 16 hex digits. Must never change between releases:
/// members running different versions compare these.
pub fn fingerprint(value: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Members' specs of one unit that differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Conflict {
    /// The unit (group or ungrouped resource) whose files differ.
    pub unit: String,
    /// Settings whose values are not the same on every member.
    pub keys: Vec<String>,
    /// The nodes that share each variant of the spec, largest group first.
    pub variants: Vec<Vec<NodeId>>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups: Vec<String> = self
            .variants
            .iter()
            .map(|nodes| {
                let ids: Vec<String> = nodes.iter().map(u32::to_string).collect();
                format!("nodes {}", ids.join(","))
            })
            .collect();
        write!(
            f,
            "{}: the configuration differs between members ({}; settings: {}); not placed or moved until the files agree",
            self.unit,
            groups.join(" vs "),
            self.keys.join(", ")
        )
    }
}

/// Compares what members announced for `unit` (members not configured for it do not count).
pub fn conflict(unit: &str, announced: &[(NodeId, &UnitDigest)]) -> Option<Conflict> {
    let mut variants: Vec<(&BTreeMap<String, String>, Vec<NodeId>)> = Vec::new();
    for (node, digest) in announced {
        let spec = &digest.keys;
        match variants.iter_mut().find(|(keys, _)| *keys == spec) {
            Some((_, nodes)) => {
                if !nodes.contains(node) {
                    nodes.push(*node);
                }
            }
            None => variants.push((spec, vec![*node])),
        }
    }
    if variants.len() < 2 {
        return None;
    }
    let names: BTreeSet<&String> = variants.iter().flat_map(|(keys, _)| keys.keys()).collect();
    let keys = names
        .into_iter()
        .filter(|k| {
            let first = variants[0].0.get(*k);
            variants.iter().any(|(keys, _)| keys.get(*k) != first)
        })
        .cloned()
        .collect();
    let mut variants: Vec<Vec<NodeId>> = variants
        .into_iter()
        .map(|(_, mut nodes)| {
            nodes.sort_unstable();
            nodes
        })
        .collect();
    variants.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    Some(Conflict {
        unit: unit.to_owned(),
        keys,
        variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable() {
        // Pinned: a change would make members of different versions see a conflict.
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(fingerprint("1,2"), fingerprint("1,2"));
        assert_ne!(fingerprint("1,2"), fingerprint("2,1"));
    }

    #[test]
    fn equal_specs_agree_and_different_ones_name_the_setting_and_the_nodes() {
        let a = UnitSpec::new("web", vec![1]).with_key("eip1.allocation_id", "eipalloc-1").digest();
        let b = UnitSpec::new("web", vec![3]).with_key("eip1.allocation_id", "eipalloc-1").digest();
        assert_eq!(conflict("web", &[(1, &a), (2, &a)]), None);
        let c = conflict("web", &[(1, &a), (3, &b), (2, &a)]).unwrap();
        assert_eq!(c.keys, vec!["prefer".to_string()]);
        assert_eq!(c.variants, vec![vec![1, 2], vec![3]]);
        assert!(c.to_string().contains("nodes 1,2 vs nodes 3"), "{c}");
    }

    #[test]
    fn a_setting_present_on_one_side_only_differs() {
        let a = UnitSpec::new("web", vec![]).digest();
        let b = UnitSpec::new("web", vec![]).with_key("vip.interface", "eth1").digest();
        let c = conflict("web", &[(1, &a), (2, &b)]).unwrap();
        assert_eq!(c.keys, vec!["vip.interface".to_string()]);
    }
}
