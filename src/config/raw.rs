//! The file as written, before any check: every section and key the daemon accepts.
//!
//! `deny_unknown_fields` everywhere turns a misspelt key into an error instead of a silently
//! ignored setting (a typo in `allocation_id` must not leave an address unmanaged).
//! Values stay as loose as TOML allows here; `validate` decides what they mean.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub aws: RawAws,
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub eip: Vec<RawEip>,
    #[serde(default)]
    pub vip: Vec<RawVip>,
    #[serde(default)]
    pub health: Vec<RawHealth>,
    #[serde(default)]
    pub notify: Vec<RawNotify>,
    #[serde(default)]
    pub metrics: RawMetrics,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub name: String,
    pub command: String,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    pub events: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub group: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub monitor_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub reattach_grace: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub startup_wait: Option<Duration>,
    #[serde(default)]
    pub prefer: Vec<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub sync_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub call_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub permission_check_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub acquire_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub control_socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEip {
    pub name: String,
    pub allocation_id: String,
    pub private_ip: Option<String>,
    #[serde(default)]
    pub prefer: Vec<u32>,
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub route_tables: Vec<String>,
    pub route_table_tag: Option<String>,
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub create_route: bool,
    pub interface: Option<String>,
    pub label: Option<String>,
    #[serde(default)]
    pub prefer: Vec<u32>,
    pub group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub name: String,
    pub command: Option<String>,
    pub systemd_unit: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    pub rise: Option<u32>,
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
