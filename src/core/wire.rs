//! Messages members exchange over CPG: versioned JSON.
//!
//! Version 1. A receiver drops (and logs) anything it cannot decode or whose major version it
//! does not speak; it never trusts a peer's bytes enough to panic on them. Fields added since
//! the first release carry serde defaults, and [`MemberInfo::protocol`] tells which rules a
//! peer follows, so a rolling upgrade keeps one group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MemberId, Ring};

/// The major wire version this build speaks: a message with another `v` is logged and dropped.
pub const WIRE_VERSION: u32 = 1;
/// The rules this build follows: 2 = quorum facts bound to a configuration and a ring, unit
/// digests, cannot-serve announcements.
pub const PROTOCOL: u32 = 2;
/// Larger messages are refused before parsing: a State for hundreds of resources is a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// One CPG message as sent: the version every receiver checks first, then the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's wire version ([`WIRE_VERSION`]).
    pub v: u32,
    /// What the sender announces; its `type` names the kind.
    #[serde(flatten)]
    pub body: Body,
}

/// What a member announces to the group; every member applies it in the same agreed order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// Sent by every member after each membership change that brings in new members.
    State(StateMsg),
    /// The sender's corosync quorum fact: sent after every configuration change and whenever
    /// its quorum service reports something new. Counts only in the configuration it names.
    Quorum {
        /// Corosync counts the sender's partition quorate.
        quorate: bool,
        /// Corosync nodes in the sender's quorum membership.
        #[serde(default)]
        nodes: Vec<u32>,
        /// The ring the fact belongs to (None from protocol 1 peers).
        #[serde(default)]
        ring: Option<Ring>,
        /// The CPG configuration the sender was in when it sent this (None from protocol 1).
        #[serde(default)]
        config: Option<Vec<MemberId>>,
        /// With `quorate: false`: corosync counted the sender quorate, but its report predates
        /// this configuration, so the sender does not know yet (never sent when false, so older
        /// peers read the fact exactly as before: "not quorate").
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pending: bool,
    },
    /// The units the sender cannot serve now (replaces its previous list): it failed to take
    /// them, so the others elect the next candidate.
    Capability {
        /// Every unit the sender cannot serve now, and why.
        cannot_serve: Vec<Unable>,
    },
    /// `member` sent nothing in `config` for the sync timeout (hung, another wire version, or
    /// not corosync-eip): it no longer holds up rounds or quorum, and serves nothing until it
    /// speaks.
    Unresponsive {
        /// The silent member.
        member: MemberId,
        /// The configuration it was silent in: ignored in any other.
        config: Vec<MemberId>,
    },
    /// The sender's health checks changed its eligibility.
    Eligibility {
        /// The sender's health checks pass: it may be elected.
        eligible: bool,
    },
    /// An admin put a node in standby (or back): its members hold nothing while it lasts.
    Standby {
        /// The corosync node put in (or out of) standby.
        node: u32,
        /// True: its members give up and take nothing until it is lifted.
        standby: bool,
    },
    /// An admin asked for a planned move of a unit (resource or group) to a node.
    Move {
        /// The unit to move.
        unit: String,
        /// The corosync node that should hold it.
        to: u32,
    },
    /// The startup wait ran out on the sender's clock: place units although some corosync
    /// nodes have no daemon in the group yet.
    PlaceNow,
    /// Planned stop: the sender gives up everything it holds and leaves.
    Release,
    /// The holder verified in EC2 that the address points at it.
    Held(HeldMsg),
    /// The reattach grace of a vanished member ran out on the sender's clock.
    GraceExpired {
        /// The vanished member whose addresses are now handed to another member.
        member: MemberId,
        /// The grace ended because the member's node left the totem membership (not only its
        /// daemon): its instance may still run and must be fenced before a takeover when
        /// fencing is on. Never sent when false, so older peers read the message as before.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        node_down: bool,
    },
}

/// What a member announces about itself in its States: where it points addresses, what it is
/// configured for, and whether it may be elected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The EC2 instance the member points addresses at when it holds them.
    pub instance_id: String,
    /// The network interface it points addresses at; None when it uses the instance.
    #[serde(default)]
    pub network_interface_id: Option<String>,
    /// Its daemon version, shown in status to follow a roll-out.
    pub version: String,
    /// Names of the resources this member is configured for.
    pub resources: Vec<String>,
    /// Corosync counts the member's partition quorate (for `ring`).
    pub quorate: bool,
    /// Its health checks pass (standby is separate): it may be elected.
    #[serde(default = "yes")]
    pub eligible: bool,
    /// An admin put the member's node in standby: it is elected for nothing.
    #[serde(default)]
    pub standby: bool,
    /// Corosync nodes in the sender's quorum membership.
    #[serde(default)]
    pub nodes: Vec<u32>,
    /// The member's availability zone, when its node could tell (shown in status).
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
    /// The node's `name` in corosync.conf's nodelist, when it has one: how admins name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The node's hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The member's `[fencing] stop_instance`, so that members whose files disagree on it are
    /// named (None from peers that predate fencing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing: Option<bool>,
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
    /// Node ids in the order the member's file prefers them as holder.
    pub prefer: Vec<u32>,
    /// Setting name → fingerprint of its value: equal maps mean the files agree.
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
    /// The name status and logs show for the class.
    pub fn as_str(self) -> &'static str {
        match self {
            Incapacity::Permission => "permission",
            Incapacity::Unreachable => "unreachable",
            Incapacity::Identity => "identity",
        }
    }
}

/// One unit a member failed to take, and why: the others elect the next candidate for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unable {
    /// The unit (group or ungrouped resource).
    pub unit: String,
    /// What kind of failure: decides how an admin fixes it.
    pub class: Incapacity,
    /// The error EC2 or the node gave, for the admin.
    pub reason: String,
}

/// A member's State in a sync round: its own info and the table it knows, which every member
/// of the round merges the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateMsg {
    /// What the sender announces about itself.
    pub info: MemberInfo,
    /// The membership the sender saw when it sent this; a State from an older round is ignored.
    pub round: Vec<MemberId>,
    /// Whether `assignments` is a real cluster view (false for a member that is still joining).
    pub synced: bool,
    /// The holder of every unit the sender knows.
    pub assignments: Vec<WireAssignment>,
    /// Vanished members whose addresses the sender keeps during the reattach grace.
    pub vanished: Vec<MemberId>,
    /// Members the sender saw leave (or release), so a joiner frees their units the same way.
    pub departed: Vec<WireDeparture>,
    /// The sender saw a PlaceNow (startup wait over).
    #[serde(default)]
    pub placed: bool,
    /// `assignments` is a table the sender kept across a lost corosync connection or a
    /// re-exec, and no round has confirmed it yet (see `View::unconfirmed`).
    #[serde(default)]
    pub kept: bool,
    /// The last instance each corosync node's daemon announced, as the sender knows them: a
    /// joiner elected for a departed holder's units must fence the same instance the others
    /// would have. Pairs, not a map: a JSON object's keys are strings, which serde cannot
    /// read back as node ids inside the tagged, flattened envelope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<(u32, String)>,
}

/// Who holds one unit, as the sender's table says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireAssignment {
    /// The unit (group or ungrouped resource); named `resource` since the first release.
    pub resource: String,
    /// The holder; None while no eligible member was found.
    pub holder: Option<MemberId>,
    /// Counts changes of holder: the merge keeps the higher generation.
    pub generation: u64,
    /// The holder's Held messages for this generation (one per verified resource), so
    /// joiners see them verified too.
    #[serde(default)]
    pub verified: Vec<HeldMsg>,
    /// While the unit has no holder: the holder that left without releasing it, whose
    /// instance the successor stops first when fencing is on (see [`FenceTarget`]). Sent for
    /// peers of the first fencing release, which read only this; `fences` says it all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<FenceTarget>,
    /// Every holder that left without releasing the unit since a holder last verified it:
    /// the fences still owed before the unit may be taken (see `Assignment::fences`). Empty
    /// from older peers, which send `fence` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fences: Vec<FenceTarget>,
}

/// Most fences one unit may owe: one per departed node; more is a corrupt or hostile State.
pub const MAX_FENCES: usize = 64;

impl WireAssignment {
    /// The fences this assignment says are owed, from either field, bounded.
    pub fn owed_fences(&self) -> Vec<FenceTarget> {
        if self.fences.is_empty() {
            // An older peer names the departed holder of a vacancy only.
            return self.fence.iter().filter(|_| self.holder.is_none()).cloned().collect();
        }
        self.fences.iter().take(MAX_FENCES).cloned().collect()
    }
}

/// A holder that left the cluster without releasing its units (its node left the corosync
/// membership): with `[fencing] stop_instance`, its successor stops its instance before it
/// moves anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FenceTarget {
    /// The daemon that held the unit.
    pub member: MemberId,
    /// Its EC2 instance, as its own States (or its Held announcements) named it; None when no
    /// member of the partition ever learnt it, which makes the fence fail rather than guess.
    pub instance_id: Option<String>,
}

/// How a member left the group, which decides when its units are taken over.
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

/// A member that left, and how, as a State carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireDeparture {
    /// The daemon that left.
    pub member: MemberId,
    /// How it left: whether its units move at once or after the reattach grace.
    pub kind: Departure,
}

/// The holder's announcement that EC2 points one resource of its unit at it, so status on
/// every node shows the address as held.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldMsg {
    /// The unit (group or ungrouped resource) whose holder verified.
    pub unit: String,
    /// The resource of the unit that now points at the holder.
    pub resource: String,
    /// The generation it was verified for; a Held for another generation is ignored.
    pub generation: u64,
    /// The instance EC2 points the address at (shown in status on standby nodes).
    pub instance_id: Option<String>,
    /// The network interface EC2 points the address at.
    pub network_interface_id: Option<String>,
    /// The epoch of the ownership record the holder wrote (or found its own) for the address;
    /// None when it could not write one, and from older peers. A successor in a cluster where
    /// only one partition can be quorate outbids it without reading the address first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// Largest ownership epoch taken from a peer's Held (as generations are bounded): a larger one
/// is a corrupt or hostile message, and its successor reads the address instead.
pub const MAX_EPOCH: u64 = 1 << 53;

/// Why a received message was dropped (it is logged, never trusted).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_MESSAGE_BYTES`]: refused before parsing.
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON of a known message type (another program in the group, or a newer message).
    #[error("not a corosync-eip message: {0}")]
    Malformed(String),
    /// Another major wire version than [`WIRE_VERSION`].
    #[error("wire version {0} is not supported (this build speaks {WIRE_VERSION})")]
    Version(u32),
}

/// The bytes to multicast for `body`, tagged with this build's wire version.
pub fn encode(body: &Body) -> Vec<u8> {
    let envelope = Envelope {
        v: WIRE_VERSION,
        body: body.clone(),
    };
    // Serialising our own plain structs cannot fail: no maps with non-string keys, no floats.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// A received message, or why it must be dropped; never panics on a peer's bytes.
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
            epoch: Some(7),
        });
        assert_eq!(decode(&encode(&body)).unwrap(), body);
        assert_eq!(decode(&encode(&Body::Release)).unwrap(), Body::Release);
    }

    #[test]
    fn a_held_epoch_is_optional_both_ways() {
        // An older peer's Held has no epoch: its successor reads the address first.
        let old = br#"{"v":1,"type":"held","unit":"web","resource":"web","generation":3,"instance_id":"i-1","network_interface_id":null}"#;
        match decode(old).unwrap() {
            Body::Held(h) => assert_eq!(h.epoch, None),
            other => panic!("{other:?}"),
        }
        // Without an epoch the message is the one older peers send.
        let plain = Body::Held(HeldMsg {
            unit: "web".into(),
            resource: "web".into(),
            generation: 3,
            instance_id: Some("i-1".into()),
            network_interface_id: None,
            epoch: None,
        });
        assert!(!String::from_utf8(encode(&plain)).unwrap().contains("epoch"));
    }

    #[test]
    fn wire_format_is_stable() {
        let ring = Ring { rep: 1, seq: 8 };
        let config = vec![MemberId { node: 1, pid: 10 }];
        assert_eq!(
            String::from_utf8(encode(&Body::Quorum { quorate: true, nodes: vec![1, 2], ring: Some(ring), config: Some(config), pending: false })).unwrap(),
            r#"{"v":1,"type":"quorum","quorate":true,"nodes":[1,2],"ring":{"rep":1,"seq":8},"config":[{"node":1,"pid":10}]}"#
        );
        // A protocol 1 peer's fact still decodes: no ring, no configuration.
        assert_eq!(
            decode(br#"{"v":1,"type":"quorum","quorate":true,"nodes":[1,2]}"#).unwrap(),
            Body::Quorum { quorate: true, nodes: vec![1, 2], ring: None, config: None, pending: false }
        );
    }

    #[test]
    fn fencing_fields_survive_the_envelope_and_older_peers_read_them_as_before() {
        let member = MemberId { node: 3, pid: 30 };
        let grace = Body::GraceExpired { member, node_down: true };
        assert_eq!(decode(&encode(&grace)).unwrap(), grace);
        // Never sent when false: an older peer's message is the same.
        let quiet = encode(&Body::GraceExpired { member, node_down: false });
        assert!(!String::from_utf8(quiet.clone()).unwrap().contains("node_down"));
        assert_eq!(
            decode(br#"{"v":1,"type":"grace_expired","member":{"node":3,"pid":30}}"#).unwrap(),
            Body::GraceExpired { member, node_down: false }
        );
        let state = Body::State(StateMsg {
            info: MemberInfo {
                instance_id: "i-1".into(),
                network_interface_id: None,
                version: "t".into(),
                resources: vec![],
                quorate: true,
                eligible: true,
                standby: false,
                nodes: vec![],
                availability_zone: None,
                protocol: PROTOCOL,
                ring: None,
                units: BTreeMap::new(),
                cannot_serve: vec![],
                name: None,
                hostname: None,
                fencing: Some(true),
            },
            round: vec![member],
            synced: true,
            assignments: vec![WireAssignment {
                resource: "web".into(),
                holder: None,
                generation: 2,
                verified: vec![],
                fence: Some(FenceTarget { member, instance_id: Some("i-3".into()) }),
                fences: vec![FenceTarget { member, instance_id: Some("i-3".into()) }],
            }],
            vanished: vec![],
            departed: vec![],
            placed: true,
            kept: false,
            instances: vec![(1, "i-1".into()), (3, "i-3".into())],
        });
        assert_eq!(decode(&encode(&state)).unwrap(), state);
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
