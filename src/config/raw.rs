//! The file as written, before any check: every section and key the daemon accepts.
//!
//! `deny_unknown_fields` everywhere turns a misspelt key into an error instead of a silently
//! ignored setting (a typo in `allocation_id` must not leave an address unmanaged).
//! Values stay as loose as TOML allows here; `validate` decides what they mean.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole file; every section may be left out except at least one address
/// (`[[eip]]`, `[[vip]]` or `[[secondary_ip]]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// `[cluster]`: settings every node must share.
    #[serde(default)]
    pub cluster: RawCluster,
    /// `[aws]`: overrides of the SDK's standard chain.
    #[serde(default)]
    pub aws: RawAws,
    /// `[node]`: this node's identity, when IMDS and DescribeInstances should not decide it.
    #[serde(default)]
    pub node: RawNode,
    /// `[daemon]`: local paths.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `[[eip]]`: Elastic IPs to keep on a live member.
    #[serde(default)]
    pub eip: Vec<RawEip>,
    /// `[[vip]]`: private addresses routed to the holder through route tables.
    #[serde(default)]
    pub vip: Vec<RawVip>,
    /// `[[secondary_ip]]`: private addresses of the nodes' subnet, assigned to the holder's ENI.
    #[serde(default)]
    pub secondary_ip: Vec<RawSecondaryIp>,
    /// `[[dns]]`: Route 53 records pointed at the holder.
    #[serde(default)]
    pub dns: Vec<RawDns>,
    /// `[[health]]`: checks a node must pass to be eligible.
    #[serde(default)]
    pub health: Vec<RawHealth>,
    /// `[[notify]]`: hooks run on acquire, release and fault.
    #[serde(default)]
    pub notify: Vec<RawNotify>,
    /// `[metrics]`: the optional Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[aws_events]`: draining before AWS's announced events (off by default).
    #[serde(default)]
    pub aws_events: RawAwsEvents,
    /// `[fencing]`: stopping a departed holder's instance before a takeover (off by default).
    #[serde(default)]
    pub fencing: RawFencing,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[fencing]` as written.
pub(super) struct RawFencing {
    /// `stop_instance`: stop the instance of a holder whose node left before taking over.
    pub stop_instance: Option<bool>,
    /// `timeout`: how long the successor waits for the instance to be stopping or stopped.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// `delay`: how long the higher node id of a split two-node cluster waits before fencing.
    #[serde(default, deserialize_with = "opt_duration")]
    pub delay: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[aws_events]` as written.
pub(super) struct RawAwsEvents {
    /// `enabled`: watch IMDS for events and drain before them.
    pub enabled: Option<bool>,
    /// `poll_interval`: how often IMDS is read.
    #[serde(default, deserialize_with = "opt_duration")]
    pub poll_interval: Option<Duration>,
    /// `drain_before`: how long before an event the node drains.
    #[serde(default, deserialize_with = "opt_duration")]
    pub drain_before: Option<Duration>,
    /// `window`: how long after its start an event without an end keeps the node drained.
    #[serde(default, deserialize_with = "opt_duration")]
    pub window: Option<Duration>,
    /// `events`: the kinds acted on; absent means all.
    pub events: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[metrics]` as written.
pub(super) struct RawMetrics {
    /// `listen`: address:port of the endpoint; absent means no endpoint.
    pub listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[notify]]` hook as written.
pub(super) struct RawNotify {
    /// Names the hook in logs.
    pub name: String,
    /// Shell command run by `/bin/sh -c`.
    pub command: String,
    /// How long the hook may run before it is killed.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Which of acquire, release, fault run it; absent means all three.
    pub events: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[cluster]` as written.
pub(super) struct RawCluster {
    /// The CPG group the daemons meet in; nodes with different names never see each other.
    pub group: Option<String>,
    /// How often the holder re-verifies what it holds in EC2.
    #[serde(default, deserialize_with = "opt_duration")]
    pub monitor_interval: Option<Duration>,
    /// How long a vanished daemon's addresses are kept for it to come back.
    #[serde(default, deserialize_with = "opt_duration")]
    pub reattach_grace: Option<Duration>,
    /// On a cluster's first start, how long placement waits for every node's daemon.
    #[serde(default, deserialize_with = "opt_duration")]
    pub startup_wait: Option<Duration>,
    /// Corosync node ids in order of preference for a unit without a holder.
    #[serde(default)]
    pub prefer: Vec<u32>,
    /// How long a silent member may hold up the others after a membership change.
    #[serde(default, deserialize_with = "opt_duration")]
    pub sync_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[aws]` as written.
pub(super) struct RawAws {
    /// Overrides `AWS_REGION`, the profile's region and IMDS.
    pub region: Option<String>,
    /// Another EC2 endpoint, e.g. a VPC endpoint or a test emulator.
    pub endpoint_url: Option<String>,
    /// A shared-config profile instead of the instance role.
    pub profile: Option<String>,
    /// Limit on one EC2 call attempt, so a stuck call is retried instead of waited for.
    #[serde(default, deserialize_with = "opt_duration")]
    pub call_timeout: Option<Duration>,
    /// How often an idle or refused node re-proves its permissions with DryRun calls.
    #[serde(default, deserialize_with = "opt_duration")]
    pub permission_check_interval: Option<Duration>,
    /// How long an elected holder's transient EC2 failures may last before it hands over.
    #[serde(default, deserialize_with = "opt_duration")]
    pub acquire_timeout: Option<Duration>,
    /// An IAM role assumed for every VIP's route-table calls (route tables of a shared VPC in
    /// another account).
    pub route_table_role: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[node]` as written.
pub(super) struct RawNode {
    /// This node's instance, instead of asking IMDS.
    pub instance_id: Option<String>,
    /// The ENI addresses are pointed at, instead of the device-index-0 one.
    pub network_interface_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `[daemon]` as written.
pub(super) struct RawDaemon {
    /// Where `status`, `move` and `standby` reach the daemon.
    pub control_socket: Option<PathBuf>,
    /// Where node-local state (the standby flag) survives restarts.
    pub state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[eip]]` as written.
pub(super) struct RawEip {
    /// How status, commands, metrics and hooks refer to the address.
    pub name: String,
    /// The Elastic IP to move.
    pub allocation_id: String,
    /// A private IP of the holder's ENI to associate with, instead of its primary one.
    pub private_ip: Option<String>,
    /// Overrides `[cluster] prefer` for this address.
    #[serde(default)]
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[vip]]` as written.
pub(super) struct RawVip {
    /// How status, commands, metrics and hooks refer to the address.
    pub name: String,
    /// The private IPv4 address routed as a /32 to the holder.
    pub address: String,
    /// Every route table that must send the address to the holder.
    #[serde(default)]
    pub route_tables: Vec<String>,
    /// `Key=Value`: find the route tables by tag at start, instead of or besides listing them.
    pub route_table_tag: Option<String>,
    /// Limits the tag search to one VPC.
    pub vpc_id: Option<String>,
    /// Create the route when a table lacks it, instead of reporting an error.
    #[serde(default)]
    pub create_route: bool,
    /// An IAM role assumed for this VIP's route-table calls, instead of `[aws] route_table_role`.
    pub route_table_role: Option<String>,
    /// Where the holder configures the address (default eth0).
    pub interface: Option<String>,
    /// Linux address label, so `ip addr` shows which address is the VIP.
    pub label: Option<String>,
    /// Overrides `[cluster] prefer` for this address.
    #[serde(default)]
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[secondary_ip]]` as written.
pub(super) struct RawSecondaryIp {
    /// How status, commands, metrics and hooks refer to the address.
    pub name: String,
    /// The private IPv4 address of the nodes' subnet that follows the holder.
    pub address: String,
    /// Where the holder configures the address (default eth0).
    pub interface: Option<String>,
    /// Linux address label, so `ip addr` shows which address floats.
    pub label: Option<String>,
    /// Overrides `[cluster] prefer` for this address.
    #[serde(default)]
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[dns]]` record as written.
pub(super) struct RawDns {
    /// How status, commands, metrics and hooks refer to the record.
    pub name: String,
    /// The Route 53 hosted zone (`Z...`).
    pub hosted_zone_id: String,
    /// The record's name (a trailing dot is added when missing).
    pub record: String,
    /// `A` (default) or `AAAA`.
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    /// Seconds resolvers may cache the answer.
    pub ttl: Option<i64>,
    /// `private`, `public`, or `eip:NAME` / `vip:NAME` / `secondary_ip:NAME` of the same group.
    pub value: Option<String>,
    /// Delete the record when the last member able to hold it stops.
    #[serde(default)]
    pub delete_on_release: bool,
    /// Overrides `[cluster] prefer` for this record.
    #[serde(default)]
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// One `[[health]]` check as written.
pub(super) struct RawHealth {
    /// Names the check in status and logs.
    pub name: String,
    /// Shell command; exit 0 means healthy.
    pub command: Option<String>,
    /// A systemd unit that must be active; the alternative to `command`.
    pub systemd_unit: Option<String>,
    /// How often the check runs.
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    /// How long one run may take before it counts as a failure.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Consecutive successes before the node is eligible again.
    pub rise: Option<u32>,
    /// Consecutive failures before the node stops being eligible.
    pub fall: Option<u32>,
}

/// Durations are written the way operators say them ("10s", "500ms", "5m") rather than as
/// bare numbers whose unit a reader would have to guess.
fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration like \"10s\" or \"500ms\": {e}")))
}
