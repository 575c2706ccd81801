//! The pure heart of corosync-eip: election, placement and reconcile decisions.
//!
//! Nothing here performs I/O or reads a clock. The corosync adapter feeds membership changes and
//! delivered messages in CPG's agreed order; because every member sees the same sequence, every
//! member computes the same holders.

pub mod events;
pub mod health;
pub mod holder;
pub mod names;
pub mod placement;
pub mod reconcile;
pub mod spec;
pub mod view;
pub mod wire;

/// A corosync node id (`nodelist.node.nodeid`): how members, placement and status name a node.
pub type NodeId = u32;

/// One daemon process in the CPG group. A node may host a new process (restart) or, after a
/// re-exec, the same pid again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct MemberId {
    /// The corosync node the daemon runs on.
    pub node: NodeId,
    /// The daemon's process id: tells a restarted daemon apart from the one it replaced.
    pub pid: u32,
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node, self.pid)
    }
}

/// A totem ring: corosync's membership epoch. The CPG totem callback and the quorum service
/// both name the ring they speak of, so a quorum fact can be matched to the membership it
/// belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Ring {
    /// Node id of the ring's representative.
    pub rep: NodeId,
    /// The ring's sequence number: with `rep`, tells one membership epoch from the next.
    pub seq: u64,
}

impl std::fmt::Display for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.rep, self.seq)
    }
}
