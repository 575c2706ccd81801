//! Messages members exchange over CPG: versioned JSON.
//!
//! Version 1. A receiver drops (and logs) anything it cannot decode or whose major version it
//! does not speak; it never trusts a peer's bytes enough to panic on them. Fields added since
//! the first release carry serde defaults, and [`MemberInfo::protocol`] tells which rules a
//! peer follows, so a rolling upgrade keeps one group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MemberId, Ring};

pub const WIRE_VERSION: u32 = 1;
/// The rules this build follows: 2 = quorum facts bound to a configuration and a ring, unit
/// digests, cannot-serve announcements.
pub const PROTOCOL: u32 = 2;
/// Larger messages are refused before parsing: a State for hundreds of resources is a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// Sent by every member after each membership change that brings in new members.
    State(StateMsg),
    /// The sender's corosync quorum fact: sent after every configuration change and whenever
    /// its quorum service reports something new. Counts only in the configuration it names.
    Quorum {
        quorate: bool,
        #[serde(default)]
        nodes: Vec<u32>,
        /// The ring the fact belongs to (None from protocol 1 peers).
        #[serde(default)]
        ring: Option<Ring>,
        /// The CPG configuration the sender was in when it sent this (None from protocol 1).
        #[serde(default)]
        config: Option<Vec<MemberId>>,
    },
    /// The units the sender cannot serve now (replaces its previous list): it failed to take
    /// them, so the others elect the next candidate.
    Capability { cannot_serve: Vec<Unable> },
    /// `member` sent nothing in `config` for the sync timeout (hung, another wire version, or
    /// not corosync-eip): it no longer holds up rounds or quorum, and serves nothing until it
    /// speaks.
    Unresponsive { member: MemberId, config: Vec<MemberId> },
    /// The sender's health checks changed its eligibility.
    Eligibility { eligible: bool },
    /// An admin put a node in standby (or back): its members hold nothing while it lasts.
    Standby { node: u32, standby: bool },
    /// An admin asked for a planned move of a unit (resource or group) to a node.
    Move { unit: String, to: u32 },
    /// The startup wait ran out on the sender's clock: place units although some corosync
    /// nodes have no daemon in the group yet.
    PlaceNow,
    /// Planned stop: the sender gives up everything it holds and leaves.
    Release,
    /// The holder verified in EC2 that the address points at it.
    Held(HeldMsg),
    /// The reattach grace of a vanished member ran out on the sender's clock.
    GraceExpired { member: MemberId },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberInfo {
    pub instance_id: String,
    #[serde(default)]
    pub network_interface_id: Option<String>,
    pub version: String,
    /// Names of the resources this member is configured for.
    pub resources: Vec<String>,
    pub quorate: bool,
    /// Health checks pass.
    #[serde(default = "yes")]
    pub eligible: bool,
    #[serde(default)]
    pub standby: bool,
    /// Corosync nodes in the sender's quorum membership.
    #[serde(default)]
    pub nodes: Vec<u32>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// The rules the sender follows (see [`PROTOCOL`]); 1 for peers that predate the field.
    #[serde(default = "one")]
    pub protocol: u32,
    /// The ring `quorate` belongs to.
    #[serde(default)]
    pub ring: Option<Ring>,
    /// Per configured unit, what decides its placement and action, so members can see that
    /// their files differ.
    #[serde(default)]
    pub units: BTreeMap<String, UnitDigest>,
    /// Units the sender failed to take and cannot serve until it proves otherwise.
    #[serde(default)]
    pub cannot_serve: Vec<Unable>,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

/// One member's spec of one unit: the preference list (which placement needs) and a
/// fingerprint per setting (which is enough to name what differs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct UnitDigest {
    pub prefer: Vec<u32>,
    pub keys: BTreeMap<String, String>,
}

/// Why a member cannot serve a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Incapacity {
    /// EC2 denied a mutating call (the role lacks a permission, or credentials are bad).
    Permission,
    /// EC2 could not be reached or kept failing for longer than `acquire_timeout`.
    Unreachable,
    /// EC2 does not know this node's instance or network interface.
    Identity,
}

impl Incapacity {
    pub fn as_str(self) -> &'static str {
        match self {
            Incapacity::Permission => "permission",
            Incapacity::Unreachable => "unreachable",
            Incapacity::Identity => "identity",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unable {
    pub unit: String,
    pub class: Incapacity,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateMsg {
    pub info: MemberInfo,
    /// The membership the sender saw when it sent this; a State from an older round is ignored.
    pub round: Vec<MemberId>,
    /// Whether `assignments` is a real cluster view (false for a member that is still joining).
    pub synced: bool,
    pub assignments: Vec<WireAssignment>,
    pub vanished: Vec<MemberId>,
    pub departed: Vec<WireDeparture>,
    /// The sender saw a PlaceNow (startup wait over).
    #[serde(default)]
    pub placed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireAssignment {
    pub resource: String,
    pub holder: Option<MemberId>,
    pub generation: u64,
    /// The holder's Held messages for this generation (one per verified resource), so
    /// joiners see them verified too.
    #[serde(default)]
    pub verified: Vec<HeldMsg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Departure {
    /// Announced Release: take over at once.
    Released,
    /// The process went away but its node is still in the corosync membership: keep its
    /// addresses for the reattach grace period.
    Vanished,
    /// The node left the corosync membership: take over at once.
    NodeDown,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireDeparture {
    pub member: MemberId,
    pub kind: Departure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldMsg {
    /// The unit (group or ungrouped resource) whose holder verified.
    pub unit: String,
    pub resource: String,
    pub generation: u64,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not a corosync-eip message: {0}")]
    Malformed(String),
    #[error("wire version {0} is not supported (this build speaks {WIRE_VERSION})")]
    Version(u32),
}

pub fn encode(body: &Body) -> Vec<u8> {
    let envelope = Envelope {
        v: WIRE_VERSION,
        body: body.clone(),
    };
    // Serialising our own plain structs cannot fail: no maps with non-string keys, no floats.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<Body, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let version: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if version.v != WIRE_VERSION {
        return Err(DecodeError::Version(version.v));
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let body = Body::Held(HeldMsg {
            unit: "web".into(),
            resource: "web".into(),
            generation: 3,
            instance_id: Some("i-1".into()),
            network_interface_id: None,
        });
        assert_eq!(decode(&encode(&body)).unwrap(), body);
        assert_eq!(decode(&encode(&Body::Release)).unwrap(), Body::Release);
    }

    #[test]
    fn wire_format_is_stable() {
        let ring = Ring { rep: 1, seq: 8 };
        let config = vec![MemberId { node: 1, pid: 10 }];
        assert_eq!(
            String::from_utf8(encode(&Body::Quorum { quorate: true, nodes: vec![1, 2], ring: Some(ring), config: Some(config) })).unwrap(),
            r#"{"v":1,"type":"quorum","quorate":true,"nodes":[1,2],"ring":{"rep":1,"seq":8},"config":[{"node":1,"pid":10}]}"#
        );
        // A protocol 1 peer's fact still decodes: no ring, no configuration.
        assert_eq!(
            decode(br#"{"v":1,"type":"quorum","quorate":true,"nodes":[1,2]}"#).unwrap(),
            Body::Quorum { quorate: true, nodes: vec![1, 2], ring: None, config: None }
        );
    }

    #[test]
    fn garbage_and_future_versions_are_refused() {
        assert!(matches!(decode(b"hello"), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode(br#"{"v":2,"type":"release"}"#), Err(DecodeError::Version(2))));
        assert!(matches!(decode(br#"{"v":1,"type":"launch"}"#), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode(&vec![b' '; MAX_MESSAGE_BYTES + 1]), Err(DecodeError::TooLarge(_))));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoder_never_panics_on_json_like_input(s in r#"\{"v":1,"type":"(state|held|quorum|release|grace_expired|capability|unresponsive)"[,:"a-z0-9\[\]\{\} ]{0,80}\}"#) {
            let _ = decode(s.as_bytes());
        }
    }
}
