//! Naming a node on the command line. Admins name nodes the way `pcs` and corosync.conf do, so
//! `move`, `standby` and `unstandby` accept, for a node: its corosync nodelist `name`, its
//! hostname (the full name, or its first label when that is unique), its node id, or the
//! instance id of its daemon. The answer is a node id, or an error that lists the members.

use std::fmt::Write as _;

/// One member as a name may refer to it: what its daemon announced about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named<'a> {
    /// Corosync node id.
    pub node: u32,
    /// The node's `name` in corosync.conf's nodelist, when it has one.
    pub name: Option<&'a str>,
    /// The node's hostname, as its daemon announced it.
    pub hostname: Option<&'a str>,
    /// The instance the daemon points addresses at.
    pub instance_id: &'a str,
}

/// Why a text names no single member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing matched.
    #[error("`{text}` is not the name, hostname, node id or instance id of a member. Members: {members}")]
    Unknown {
        /// What the admin typed.
        text: String,
        /// Every member as name, id and instance.
        members: String,
    },
    /// A node id with no daemon in the group (the node may be down, or not run the daemon).
    #[error("node {node} has no corosync-eip daemon in the group. Members: {members}")]
    NoDaemon {
        /// The node id typed.
        node: u32,
        /// Every member as name, id and instance.
        members: String,
    },
    /// Several nodes matched: a name must never pick one of them silently.
    #[error("`{text}` names more than one node (nodes {nodes}); use the node id. Members: {members}")]
    Ambiguous {
        /// What the admin typed.
        text: String,
        /// The node ids it matched, comma-separated.
        nodes: String,
        /// Every member as name, id and instance.
        members: String,
    },
}

/// The node `text` names among `members` (several members may share a node: a restart racing
/// its predecessor).
pub fn resolve(members: &[Named<'_>], text: &str) -> Result<u32, NameError> {
    let text = text.trim();
    if let Ok(id) = text.parse::<u32>() {
        if members.iter().any(|m| m.node == id) {
            return Ok(id);
        }
    }
    let exact = matching(members, |m| {
        m.name == Some(text) || m.hostname == Some(text) || m.instance_id == text
    });
    let found = if exact.is_empty() {
        // `acc-n1` for `acc-n1.eu-west-1.compute.internal`, and the other way round.
        let short = first_label(text);
        matching(members, |m| {
            [m.name, m.hostname].into_iter().flatten().any(|n| first_label(n) == short)
        })
    } else {
        exact
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(match text.parse::<u32>() {
            Ok(node) => NameError::NoDaemon {
                node,
                members: listing(members),
            },
            Err(_) => NameError::Unknown {
                text: text.to_owned(),
                members: listing(members),
            },
        }),
        many => Err(NameError::Ambiguous {
            text: text.to_owned(),
            nodes: many.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            members: listing(members),
        }),
    }
}

/// How status and errors name a node: `acc-n1 (node 1)`, or `node 1` without a name.
pub fn label(node: u32, name: Option<&str>, hostname: Option<&str>) -> String {
    match name.or(hostname) {
        Some(n) => format!("{n} (node {node})"),
        None => format!("node {node}"),
    }
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

fn matching(members: &[Named<'_>], pred: impl Fn(&Named<'_>) -> bool) -> Vec<u32> {
    let mut nodes: Vec<u32> = members.iter().filter(|m| pred(m)).map(|m| m.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

fn listing(members: &[Named<'_>]) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    for m in members {
        if seen.contains(&m.node) {
            continue;
        }
        seen.push(m.node);
        if !out.is_empty() {
            out.push_str("; ");
        }
        let _ = write!(out, "{} {}", label(m.node, m.name, m.hostname), m.instance_id);
        if let (Some(name), Some(host)) = (m.name, m.hostname) {
            if name != host {
                let _ = write!(out, " host {host}");
            }
        }
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<Named<'static>> {
        vec![
            Named { node: 1, name: Some("acc-n1"), hostname: Some("ip-10-0-1-10.ec2.internal"), instance_id: "i-01" },
            Named { node: 2, name: Some("acc-n2"), hostname: Some("ip-10-0-2-10.ec2.internal"), instance_id: "i-02" },
            Named { node: 3, name: None, hostname: Some("web3.example.com"), instance_id: "i-03" },
        ]
    }

    #[test]
    fn every_kind_of_name_finds_its_node() {
        let m = three();
        assert_eq!(resolve(&m, "acc-n1"), Ok(1));
        assert_eq!(resolve(&m, "ip-10-0-2-10.ec2.internal"), Ok(2));
        assert_eq!(resolve(&m, "ip-10-0-2-10"), Ok(2));
        assert_eq!(resolve(&m, "web3"), Ok(3));
        assert_eq!(resolve(&m, "web3.example.com"), Ok(3));
        assert_eq!(resolve(&m, "3"), Ok(3));
        assert_eq!(resolve(&m, "i-02"), Ok(2));
        assert_eq!(resolve(&m, " acc-n2 "), Ok(2));
    }

    #[test]
    fn an_unknown_name_lists_the_members() {
        let err = resolve(&three(), "acc-n9").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NameError::Unknown { .. }));
        for part in ["acc-n9", "acc-n1 (node 1) i-01", "acc-n2 (node 2) i-02", "web3.example.com (node 3) i-03"] {
            assert!(text.contains(part), "{part} missing in: {text}");
        }
        // A node id with no member is refused too, saying so.
        let err = resolve(&three(), "7").unwrap_err();
        assert!(matches!(err, NameError::NoDaemon { node: 7, .. }), "{err:?}");
        assert!(err.to_string().starts_with("node 7 has no corosync-eip daemon"), "{err}");
    }

    #[test]
    fn a_name_two_nodes_share_is_refused() {
        let m = vec![
            Named { node: 1, name: Some("db"), hostname: Some("db.a.example"), instance_id: "i-1" },
            Named { node: 2, name: Some("db2"), hostname: Some("db.b.example"), instance_id: "i-2" },
        ];
        // Exact names win over first labels: `db` is node 1's nodelist name.
        assert_eq!(resolve(&m, "db"), Ok(1));
        let m = vec![
            Named { node: 1, name: None, hostname: Some("db.a.example"), instance_id: "i-1" },
            Named { node: 2, name: None, hostname: Some("db.b.example"), instance_id: "i-2" },
        ];
        match resolve(&m, "db") {
            Err(NameError::Ambiguous { nodes, .. }) => assert_eq!(nodes, "1, 2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_daemons_on_one_node_are_one_node() {
        let m = vec![
            Named { node: 4, name: Some("n4"), hostname: None, instance_id: "i-4" },
            Named { node: 4, name: Some("n4"), hostname: None, instance_id: "i-4" },
        ];
        assert_eq!(resolve(&m, "n4"), Ok(4));
        assert_eq!(resolve(&[], "n4").unwrap_err().to_string().contains("Members: none"), true);
    }
}
