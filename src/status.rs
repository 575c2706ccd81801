//! `status --json`: the schema tests and tools read. Version it; only add fields.
//!
//! Schema `corosync-eip/status/v1` (documented in the README):
//! - `schema`, `version`, `node_id`, `pid`, `instance_id`, `network_interface_id`
//! - `corosync`: "connected" | "disconnected"; `synced`: this member knows the cluster's holders
//! - `quorate`: the partition is quorate (every member says so); `local_quorate`: corosync says so here
//! - `members[]`: `node_id`, `pid`, `instance_id`, `network_interface_id`, `version`, `quorate`
//! - `reattaching[]`: `node_id`, `pid` of vanished daemons whose addresses are kept during the grace
//! - `resources[]`: `name`, `kind` ("eip"), `allocation_id`, `holder` {`node_id`, `pid`,
//!   `instance_id`} or null, `generation`, `local_role` ("holder" | "standby"), `state`
//!   ("held" | "acquiring" | "reattaching" | "unassigned" | "waiting_quorum" | "standby"),
//!   `ec2` (what EC2 last said, from the holder's verification) or null, `verified_at` (RFC 3339)
//!   or null, `verified_age_ms`, `last_error` or null, `drift_repairs`, `last_failover` or null.

use serde::{Deserialize, Serialize};

use crate::core::reconcile::ObservedEip;

pub const SCHEMA: &str = "corosync-eip/status/v1";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StatusReport {
    pub schema: String,
    pub version: String,
    pub node_id: Option<u32>,
    pub pid: u32,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub corosync: String,
    pub synced: bool,
    pub quorate: bool,
    pub local_quorate: bool,
    pub members: Vec<MemberStatus>,
    pub reattaching: Vec<MemberRef>,
    pub resources: Vec<ResourceStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberRef {
    pub node_id: u32,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: u32,
    pub pid: u32,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub version: Option<String>,
    pub quorate: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HolderStatus {
    pub node_id: u32,
    pub pid: u32,
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    pub kind: String,
    pub allocation_id: String,
    pub holder: Option<HolderStatus>,
    pub generation: u64,
    pub local_role: String,
    pub state: String,
    pub ec2: Option<ObservedEip>,
    pub verified_at: Option<String>,
    pub verified_age_ms: Option<u64>,
    pub last_error: Option<String>,
    pub drift_repairs: u64,
    pub last_failover: Option<FailoverTimeline>,
}

/// Milliseconds from the event that made us holder to each step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailoverTimeline {
    pub previous: Option<MemberRef>,
    pub detected_at: String,
    pub elected_ms: u64,
    pub associate_sent_ms: Option<u64>,
    pub verified_ms: u64,
}
