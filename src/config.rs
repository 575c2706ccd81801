//! The daemon's configuration file (`/etc/corosync-eip/corosync-eip.toml`).
//!
//! Parsing is strict: unknown keys, malformed values and inconsistent resources are refused
//! with an error that names the key, so a typo never silently disables a resource.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/corosync-eip/corosync-eip.toml";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/corosync-eip/control.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corosync-eip";
/// CPG group names are limited to 128 bytes including the terminating NUL.
const CPG_GROUP_MAX: usize = 127;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub aws: AwsConfig,
    pub node: NodeConfig,
    pub daemon: DaemonConfig,
    pub eips: Vec<EipConfig>,
    pub vips: Vec<VipConfig>,
    pub health: Vec<HealthConfig>,
    pub notify: Vec<NotifyConfig>,
    /// Where the Prometheus endpoint listens; None: no endpoint.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A command run on acquire/release/fault of a resource on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub name: String,
    pub command: String,
    pub timeout: Duration,
    /// Subset of "acquire", "release", "fault".
    pub events: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub group: String,
    pub monitor_interval: Duration,
    pub reattach_grace: Duration,
    /// How long a starting cluster waits for every corosync node's daemon before placing
    /// addresses that never had a holder (so they spread instead of piling on the first node).
    pub startup_wait: Duration,
    /// Node ids in order of preference for every resource that has no `prefer` of its own.
    pub prefer: Vec<u32>,
    /// How long members wait for a member that says nothing after a configuration change
    /// (no State, no quorum fact) before they go on without it.
    pub sync_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    pub call_timeout: Duration,
    /// How often a node that holds nothing (or announced it cannot serve something) proves its
    /// EC2 permissions with DryRun calls (zero: never).
    pub permission_check_interval: Duration,
    /// How long an elected holder keeps retrying transient EC2 failures before it hands the
    /// unit to the next candidate (a permission error hands it over at once).
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub control_socket: PathBuf,
    /// Where node-local state survives restarts (the standby flag).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EipConfig {
    pub name: String,
    pub allocation_id: String,
    pub private_ip: Option<Ipv4Addr>,
    pub prefer: Vec<u32>,
    pub group: Option<String>,
}

/// A private address routed to the holder's ENI through VPC route tables.
#[derive(Debug, Clone, PartialEq)]
pub struct VipConfig {
    pub name: String,
    pub address: Ipv4Addr,
    pub route_tables: Vec<String>,
    /// Route tables found at start by tag (and VPC), added to `route_tables`.
    pub discover: Option<RouteTableQuery>,
    pub create_route: bool,
    pub interface: String,
    pub label: Option<String>,
    pub prefer: Vec<u32>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteTableQuery {
    pub tag_key: String,
    pub tag_value: String,
    pub vpc_id: Option<String>,
}

impl VipConfig {
    pub fn destination(&self) -> String {
        format!("{}/32", self.address)
    }
}

/// A local check that decides whether this node may hold addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub name: String,
    pub check: HealthCheck,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes needed to become healthy again.
    pub rise: u32,
    /// Consecutive failures needed to become unhealthy.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheck {
    /// Run through `/bin/sh -c`; exit 0 is healthy.
    Command(String),
    /// `systemctl is-active --quiet UNIT`.
    SystemdUnit(String),
}

/// What the cluster places as one: a group of resources, or a single ungrouped resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub name: String,
    pub prefer: Vec<u32>,
    pub resources: Vec<String>,
}

// Raw shapes as written in the file; `deny_unknown_fields` turns typos into errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    aws: RawAws,
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    eip: Vec<RawEip>,
    #[serde(default)]
    vip: Vec<RawVip>,
    #[serde(default)]
    health: Vec<RawHealth>,
    #[serde(default)]
    notify: Vec<RawNotify>,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    name: String,
    command: String,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    events: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    monitor_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    reattach_grace: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    startup_wait: Option<Duration>,
    #[serde(default)]
    prefer: Vec<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    sync_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    call_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    permission_check_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    acquire_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    instance_id: Option<String>,
    network_interface_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    control_socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEip {
    name: String,
    allocation_id: String,
    private_ip: Option<String>,
    #[serde(default)]
    prefer: Vec<u32>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    name: String,
    address: String,
    #[serde(default)]
    route_tables: Vec<String>,
    route_table_tag: Option<String>,
    vpc_id: Option<String>,
    #[serde(default)]
    create_route: bool,
    interface: Option<String>,
    label: Option<String>,
    #[serde(default)]
    prefer: Vec<u32>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    name: String,
    command: Option<String>,
    systemd_unit: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration like \"10s\" or \"500ms\": {e}")))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// `origin` only names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            message,
        };

        let group = raw.cluster.group.unwrap_or_else(|| "corosync-eip".to_owned());
        if group.is_empty() || group.len() > CPG_GROUP_MAX {
            return Err(invalid(
                "cluster.group",
                format!("must be 1 to {CPG_GROUP_MAX} bytes long"),
            ));
        }
        let monitor_interval = raw.cluster.monitor_interval.unwrap_or(Duration::from_secs(10));
        if monitor_interval < Duration::from_secs(1) || monitor_interval > Duration::from_secs(3600) {
            return Err(invalid(
                "cluster.monitor_interval",
                "must be between 1s (each holder calls DescribeAddresses this often) and 1h".into(),
            ));
        }
        let sync_timeout = raw.cluster.sync_timeout.unwrap_or(Duration::from_secs(5));
        if sync_timeout < Duration::from_secs(1) || sync_timeout > Duration::from_secs(120) {
            return Err(invalid(
                "cluster.sync_timeout",
                "must be between 1s and 120s (a hung member holds up failovers this long)".into(),
            ));
        }
        let reattach_grace = raw.cluster.reattach_grace.unwrap_or(Duration::from_secs(10));
        if reattach_grace > Duration::from_secs(600) {
            return Err(invalid(
                "cluster.reattach_grace",
                "must be at most 600s: a crashed daemon keeps its addresses unmonitored this long".into(),
            ));
        }
        check_prefer("cluster.prefer", &raw.cluster.prefer).map_err(|m| invalid("cluster.prefer", m))?;

        if let Some(region) = &raw.aws.region {
            if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(invalid("aws.region", format!("`{region}` is not a region name like \"eu-west-1\"")));
            }
        }
        if let Some(url) = &raw.aws.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("aws.endpoint_url", format!("`{url}` must start with https:// (or http://)")));
            }
        }
        let permission_check_interval = raw.aws.permission_check_interval.unwrap_or(Duration::from_secs(300));
        if !permission_check_interval.is_zero()
            && (permission_check_interval < Duration::from_secs(1) || permission_check_interval > Duration::from_secs(86400))
        {
            return Err(invalid("aws.permission_check_interval", "must be 0 (off) or between 1s and 24h".into()));
        }
        let call_timeout = raw.aws.call_timeout.unwrap_or(Duration::from_secs(5));
        if call_timeout < Duration::from_millis(100) || call_timeout > Duration::from_secs(120) {
            return Err(invalid("aws.call_timeout", "must be between 100ms and 120s".into()));
        }
        let acquire_timeout = raw.aws.acquire_timeout.unwrap_or(Duration::from_secs(20));
        if acquire_timeout < Duration::from_secs(1) || acquire_timeout > Duration::from_secs(600) {
            return Err(invalid(
                "aws.acquire_timeout",
                "must be between 1s and 600s (an unreachable successor keeps the address away this long)".into(),
            ));
        }

        if let Some(id) = &raw.node.instance_id {
            if !looks_like_aws_id(id, "i-") {
                return Err(invalid("node.instance_id", format!("`{id}` is not an instance id like \"i-0123456789abcdef0\"")));
            }
        }
        if let Some(id) = &raw.node.network_interface_id {
            if !looks_like_aws_id(id, "eni-") {
                return Err(invalid(
                    "node.network_interface_id",
                    format!("`{id}` is not a network interface id like \"eni-0123456789abcdef0\""),
                ));
            }
        }

        let control_socket = raw
            .daemon
            .control_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
        if !control_socket.is_absolute() {
            return Err(invalid("daemon.control_socket", "must be an absolute path".into()));
        }

        let state_dir = raw
            .daemon
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(invalid("daemon.state_dir", "must be an absolute path".into()));
        }
        let startup_wait = raw.cluster.startup_wait.unwrap_or(Duration::from_secs(10));
        if startup_wait > Duration::from_secs(600) {
            return Err(invalid("cluster.startup_wait", "must be at most 600s".into()));
        }

        if raw.eip.is_empty() && raw.vip.is_empty() {
            return Err(invalid(
                "eip",
                "no [[eip]] or [[vip]] resource is configured: nothing to manage".into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut allocations = BTreeSet::new();
        let mut eips = Vec::with_capacity(raw.eip.len());
        for (index, e) in raw.eip.into_iter().enumerate() {
            let key = |field: &str| format!("eip[{index}].{field}");
            check_name(&e.name).map_err(|m| invalid(&key("name"), m))?;
            if !names.insert(e.name.clone()) {
                return Err(invalid(&key("name"), format!("resource name `{}` is used twice", e.name)));
            }
            if !looks_like_aws_id(&e.allocation_id, "eipalloc-") {
                return Err(invalid(
                    &key("allocation_id"),
                    format!("`{}` is not an allocation id like \"eipalloc-0123456789abcdef0\"", e.allocation_id),
                ));
            }
            if !allocations.insert(e.allocation_id.clone()) {
                return Err(invalid(
                    &key("allocation_id"),
                    format!("`{}` is already managed by another [[eip]]", e.allocation_id),
                ));
            }
            let private_ip = match e.private_ip {
                None => None,
                Some(text) => Some(text.parse::<Ipv4Addr>().map_err(|_| {
                    invalid(&key("private_ip"), format!("`{text}` is not an IPv4 address"))
                })?),
            };
            check_prefer(&key("prefer"), &e.prefer).map_err(|m| invalid(&key("prefer"), m))?;
            if let Some(g) = &e.group {
                check_name(g).map_err(|m| invalid(&key("group"), m))?;
            }
            eips.push(EipConfig {
                name: e.name,
                allocation_id: e.allocation_id,
                private_ip,
                prefer: e.prefer,
                group: e.group,
            });
        }

        let mut addresses = BTreeSet::new();
        let mut vips = Vec::with_capacity(raw.vip.len());
        for (index, v) in raw.vip.into_iter().enumerate() {
            let key = |field: &str| format!("vip[{index}].{field}");
            check_name(&v.name).map_err(|m| invalid(&key("name"), m))?;
            if !names.insert(v.name.clone()) {
                return Err(invalid(&key("name"), format!("resource name `{}` is used twice", v.name)));
            }
            let address: Ipv4Addr = v
                .address
                .parse()
                .map_err(|_| invalid(&key("address"), format!("`{}` is not an IPv4 address", v.address)))?;
            if address.is_unspecified() || address.is_loopback() || address.is_multicast() || address.is_broadcast() {
                return Err(invalid(&key("address"), format!("{address} cannot be a floating address")));
            }
            if !addresses.insert(address) {
                return Err(invalid(&key("address"), format!("{address} is already managed by another [[vip]]")));
            }
            let discover = match v.route_table_tag {
                None => None,
                Some(tag) => {
                    let (k, val) = tag
                        .split_once('=')
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| invalid(&key("route_table_tag"), format!("`{tag}` is not Key=Value")))?;
                    if let Some(vpc) = &v.vpc_id {
                        if !looks_like_aws_id(vpc, "vpc-") {
                            return Err(invalid(&key("vpc_id"), format!("`{vpc}` is not a VPC id like \"vpc-0123456789abcdef0\"")));
                        }
                    }
                    Some(RouteTableQuery {
                        tag_key: k.to_owned(),
                        tag_value: val.to_owned(),
                        vpc_id: v.vpc_id.clone(),
                    })
                }
            };
            if discover.is_none() && v.vpc_id.is_some() {
                return Err(invalid(&key("vpc_id"), "only used with route_table_tag".into()));
            }
            if v.route_tables.is_empty() && discover.is_none() {
                return Err(invalid(
                    &key("route_tables"),
                    "list at least one route table id, or set route_table_tag (Key=Value) to find them".into(),
                ));
            }
            let mut tables = BTreeSet::new();
            for t in &v.route_tables {
                if !looks_like_aws_id(t, "rtb-") {
                    return Err(invalid(
                        &key("route_tables"),
                        format!("`{t}` is not a route table id like \"rtb-0123456789abcdef0\""),
                    ));
                }
                if !tables.insert(t.clone()) {
                    return Err(invalid(&key("route_tables"), format!("`{t}` is listed twice")));
                }
            }
            let interface = v.interface.unwrap_or_else(|| "eth0".to_owned());
            // Linux interface names: at most 15 bytes, no '/' or whitespace.
            if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ', ':']) {
                return Err(invalid(&key("interface"), format!("`{interface}` is not a network interface name")));
            }
            if let Some(label) = &v.label {
                if !label.starts_with(&interface) || label.len() > 15 {
                    return Err(invalid(
                        &key("label"),
                        format!("`{label}` must start with the interface name `{interface}` and be at most 15 characters"),
                    ));
                }
            }
            check_prefer(&key("prefer"), &v.prefer).map_err(|m| invalid(&key("prefer"), m))?;
            if let Some(g) = &v.group {
                check_name(g).map_err(|m| invalid(&key("group"), m))?;
            }
            vips.push(VipConfig {
                name: v.name,
                address,
                route_tables: v.route_tables,
                discover,
                create_route: v.create_route,
                interface,
                label: v.label,
                prefer: v.prefer,
                group: v.group,
            });
        }

        let mut checks = Vec::with_capacity(raw.health.len());
        let mut check_names = BTreeSet::new();
        for (index, h) in raw.health.into_iter().enumerate() {
            let key = |field: &str| format!("health[{index}].{field}");
            check_name(&h.name).map_err(|m| invalid(&key("name"), m))?;
            if !check_names.insert(h.name.clone()) {
                return Err(invalid(&key("name"), format!("health check `{}` is defined twice", h.name)));
            }
            let check = match (h.command, h.systemd_unit) {
                (Some(c), None) if !c.trim().is_empty() => HealthCheck::Command(c),
                (None, Some(u)) if !u.trim().is_empty() && !u.contains(char::is_whitespace) => HealthCheck::SystemdUnit(u),
                (Some(_), Some(_)) => {
                    return Err(invalid(&key("command"), "set either `command` or `systemd_unit`, not both".into()))
                }
                _ => {
                    return Err(invalid(
                        &key("command"),
                        "set `command` (run by /bin/sh, exit 0 = healthy) or `systemd_unit` (must be active)".into(),
                    ))
                }
            };
            let interval = h.interval.unwrap_or(Duration::from_secs(5));
            let timeout = h.timeout.unwrap_or(Duration::from_secs(3));
            if interval < Duration::from_millis(100) {
                return Err(invalid(&key("interval"), "must be at least 100ms".into()));
            }
            if timeout.is_zero() || timeout > interval.max(Duration::from_secs(1)) * 10 {
                return Err(invalid(&key("timeout"), "must be more than 0 and at most 10 intervals".into()));
            }
            let rise = h.rise.unwrap_or(2);
            let fall = h.fall.unwrap_or(2);
            if rise == 0 || rise > 100 {
                return Err(invalid(&key("rise"), "must be 1 to 100".into()));
            }
            if fall == 0 || fall > 100 {
                return Err(invalid(&key("fall"), "must be 1 to 100".into()));
            }
            checks.push(HealthConfig {
                name: h.name,
                check,
                interval,
                timeout,
                rise,
                fall,
            });
        }

        let mut notify = Vec::with_capacity(raw.notify.len());
        for (index, n) in raw.notify.into_iter().enumerate() {
            let key = |field: &str| format!("notify[{index}].{field}");
            check_name(&n.name).map_err(|m| invalid(&key("name"), m))?;
            if n.command.trim().is_empty() {
                return Err(invalid(&key("command"), "must not be empty".into()));
            }
            let timeout = n.timeout.unwrap_or(Duration::from_secs(10));
            if timeout.is_zero() || timeout > Duration::from_secs(600) {
                return Err(invalid(&key("timeout"), "must be more than 0 and at most 600s".into()));
            }
            let events = n.events.unwrap_or_else(|| vec!["acquire".into(), "release".into(), "fault".into()]);
            if let Some(bad) = events.iter().find(|e| !matches!(e.as_str(), "acquire" | "release" | "fault")) {
                return Err(invalid(&key("events"), format!("`{bad}` is not one of acquire, release, fault")));
            }
            notify.push(NotifyConfig {
                name: n.name,
                command: n.command,
                timeout,
                events,
            });
        }
        let metrics_listen = match raw.metrics.listen {
            None => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid("metrics.listen", format!("`{text}` is not an address:port like \"127.0.0.1:9464\""))
            })?),
        };

        let config = Config {
            cluster: ClusterConfig {
                group,
                monitor_interval,
                reattach_grace,
                startup_wait,
                prefer: raw.cluster.prefer,
                sync_timeout,
            },
            aws: AwsConfig {
                region: raw.aws.region,
                endpoint_url: raw.aws.endpoint_url,
                profile: raw.aws.profile,
                call_timeout,
                permission_check_interval,
                acquire_timeout,
            },
            node: NodeConfig {
                instance_id: raw.node.instance_id,
                network_interface_id: raw.node.network_interface_id,
            },
            daemon: DaemonConfig { control_socket, state_dir },
            eips,
            vips,
            health: checks,
            notify,
            metrics_listen,
        };
        config.units().map_err(|(k, m)| invalid(&k, m))?;
        Ok(config)
    }

    /// Resources grouped into placement units, in a stable order. A group's members must agree
    /// on `prefer`, and a group may not share its name with a resource outside it.
    pub fn units(&self) -> Result<Vec<Unit>, (String, String)> {
        let mut units: BTreeMap<String, Unit> = BTreeMap::new();
        let entries = self
            .eips
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("eip[{i}]"), &e.name, &e.group, self.preference(&e.prefer)))
            .chain(
                self.vips
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("vip[{i}]"), &v.name, &v.group, self.preference(&v.prefer))),
            );
        for (key, name, group, prefer) in entries {
            let unit_name = group.clone().unwrap_or_else(|| name.clone());
            let unit = units.entry(unit_name.clone()).or_insert_with(|| Unit {
                name: unit_name.clone(),
                prefer: prefer.to_vec(),
                resources: Vec::new(),
            });
            if unit.prefer != prefer {
                return Err((
                    format!("{key}.prefer"),
                    format!("resources of group `{unit_name}` must have the same preference order"),
                ));
            }
            if group.is_none() && !unit.resources.is_empty() || group.is_some() && units_has_ungrouped(&self.eips, &self.vips, &unit_name) {
                return Err((
                    format!("{key}.group"),
                    format!("`{unit_name}` names both a group and an ungrouped resource"),
                ));
            }
            unit.resources.push(name.clone());
        }
        Ok(units.into_values().collect())
    }

    fn preference<'a>(&'a self, own: &'a [u32]) -> &'a [u32] {
        if own.is_empty() {
            &self.cluster.prefer
        } else {
            own
        }
    }

    pub fn resource_names(&self) -> Vec<String> {
        self.eips.iter().map(|e| e.name.clone()).chain(self.vips.iter().map(|v| v.name.clone())).collect()
    }

    /// The unit (group or the resource itself) a resource is placed with.
    pub fn unit_of(&self, resource: &str) -> Option<String> {
        let group = |g: &Option<String>, n: &String| g.clone().unwrap_or_else(|| n.clone());
        self.eips
            .iter()
            .find(|e| e.name == resource)
            .map(|e| group(&e.group, &e.name))
            .or_else(|| self.vips.iter().find(|v| v.name == resource).map(|v| group(&v.group, &v.name)))
    }

    /// Every unit with everything that decides its placement and action, as this node announces
    /// it to the others so that members whose files differ notice.
    pub fn unit_specs(&self) -> Vec<crate::core::spec::UnitSpec> {
        use crate::core::spec::UnitSpec;
        // Validated when the file was parsed.
        let units = self.units().unwrap_or_default();
        units
            .into_iter()
            .map(|unit| {
                let mut names = unit.resources.clone();
                names.sort();
                let mut spec = UnitSpec::new(&unit.name, unit.prefer.clone()).with_key("resources", &names.join(","));
                for name in &unit.resources {
                    let key = |k: &str| format!("{name}.{k}");
                    if let Some(e) = self.eips.iter().find(|e| &e.name == name) {
                        spec = spec
                            .with_key(&key("kind"), "eip")
                            .with_key(&key("allocation_id"), &e.allocation_id)
                            .with_key(&key("private_ip"), &e.private_ip.map(|ip| ip.to_string()).unwrap_or_default());
                    } else if let Some(v) = self.vips.iter().find(|v| &v.name == name) {
                        let mut tables = v.route_tables.clone();
                        tables.sort();
                        spec = spec
                            .with_key(&key("kind"), "vip")
                            .with_key(&key("address"), &v.address.to_string())
                            .with_key(&key("route_tables"), &tables.join(","))
                            .with_key(&key("interface"), &v.interface)
                            .with_key(&key("create_route"), if v.create_route { "true" } else { "false" });
                    }
                }
                spec
            })
            .collect()
    }

}

fn units_has_ungrouped(eips: &[EipConfig], vips: &[VipConfig], name: &str) -> bool {
    eips.iter().any(|e| e.group.is_none() && e.name == name) || vips.iter().any(|v| v.group.is_none() && v.name == name)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!("`{name}` must be 1-64 characters of letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

fn check_prefer(_key: &str, prefer: &[u32]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for id in prefer {
        if *id == 0 {
            return Err("node id 0 is not a valid corosync node id".into());
        }
        if !seen.insert(*id) {
            return Err(format!("node id {id} is listed twice"));
        }
    }
    Ok(())
}

fn looks_like_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    const MINIMAL: &str = "[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-0abc\"\n";

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.cluster.group, "corosync-eip");
        assert_eq!(c.cluster.monitor_interval, Duration::from_secs(10));
        assert_eq!(c.cluster.reattach_grace, Duration::from_secs(10));
        assert_eq!(c.daemon.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(c.eips[0].allocation_id, "eipalloc-0abc");
        assert_eq!(c.aws.region, None);
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"
[cluster]
group = "web-ha"
monitor_interval = "2s"
reattach_grace = "500ms"
prefer = [2, 1]
[aws]
region = "ap-northeast-1"
endpoint_url = "http://10.0.0.1:5000"
[node]
instance_id = "i-0123"
network_interface_id = "eni-0a"
[[eip]]
name = "web"
allocation_id = "eipalloc-1"
private_ip = "10.0.0.20"
prefer = [3]
[[eip]]
name = "api"
allocation_id = "eipalloc-2"
"#,
        )
        .unwrap();
        assert_eq!(c.cluster.monitor_interval, Duration::from_secs(2));
        assert_eq!(c.cluster.reattach_grace, Duration::from_millis(500));
        assert_eq!(c.eips[0].private_ip, Some(Ipv4Addr::new(10, 0, 0, 20)));
        let units = c.units().unwrap();
        assert_eq!(units.iter().find(|u| u.name == "web").unwrap().prefer, vec![3]);
        assert_eq!(units.iter().find(|u| u.name == "api").unwrap().prefer, vec![2, 1]);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("group"), Just("monitor_interval"), Just("reattach_grace"), Just("startup_wait"),
            Just("prefer"), Just("name"), Just("allocation_id"), Just("address"), Just("route_tables"),
            Just("interface"), Just("label"), Just("command"), Just("systemd_unit"), Just("rise"),
            Just("fall"), Just("listen"), Just("events"), Just("private_ip"), Just("group"),
        ];
        let value = prop_oneof![
            Just("\"10s\"".to_string()), Just("\"0ms\"".to_string()), Just("[1, 2]".to_string()),
            Just("[0]".to_string()), Just("\"eipalloc-1\"".to_string()), Just("\"rtb-1\"".to_string()),
            Just("[\"rtb-1\", \"rtb-1\"]".to_string()), Just("4294967295".to_string()), Just("-1".to_string()),
            Just("\"172.31.255.10\"".to_string()), "\"[^\"\\\\]{0,12}\"".prop_map(|s| s),
        ];
        let section = prop_oneof![
            Just("[cluster]"), Just("[aws]"), Just("[node]"), Just("[daemon]"), Just("[metrics]"),
            Just("[[eip]]"), Just("[[vip]]"), Just("[[health]]"), Just("[[notify]]"),
        ];
        prop_oneof![
            section.prop_map(String::from),
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        ]
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn parser_never_panics_on_near_valid_files(lines in proptest::collection::vec(line(), 0..30)) {
            let _ = parse(&lines.join("\n"));
        }
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error_of("[cluster]\nmonitor_interval = \"soon\"\n").contains("monitor_interval"));
        assert!(error_of(&format!("[cluster]\nmonitor_intervall = \"1s\"\n{MINIMAL}")).contains("monitor_intervall"));
        assert!(error_of("[[eip]]\nname = \"web\"\nallocation_id = \"alloc-1\"\n").contains("eip[0].allocation_id"));
        assert!(error_of("[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-1\"\nprivate_ip = \"10.0.0\"\n")
            .contains("eip[0].private_ip"));
        assert!(error_of(&format!("{MINIMAL}{MINIMAL}")).contains("eip[1].name"));
        assert!(error_of("").contains("`eip`"));
        assert!(error_of(&format!("[cluster]\nmonitor_interval = \"100ms\"\n{MINIMAL}")).contains("cluster.monitor_interval"));
        assert!(error_of(&format!("[cluster]\nprefer = [1, 1]\n{MINIMAL}")).contains("cluster.prefer"));
        assert!(error_of(&format!("[node]\ninstance_id = \"web1\"\n{MINIMAL}")).contains("node.instance_id"));
        assert!(error_of(&format!("[aws]\nendpoint_url = \"ec2.local\"\n{MINIMAL}")).contains("aws.endpoint_url"));
        assert!(error_of("[[eip]\n").contains("test.toml"));
        let vip = "[[vip]]\nname = \"db\"\naddress = \"172.31.255.10\"\nroute_tables = [\"rtb-1\"]\n";
        assert!(parse(vip).is_ok());
        assert!(error_of(&vip.replace("172.31.255.10", "172.31.255")).contains("vip[0].address"));
        assert!(error_of(&vip.replace("[\"rtb-1\"]", "[]")).contains("vip[0].route_tables"));
        assert!(error_of(&vip.replace("rtb-1", "subnet-1")).contains("vip[0].route_tables"));
        assert!(error_of(&format!("{vip}label = \"eth1:db\"\n")).contains("vip[0].label"));
        assert!(error_of(&format!("{vip}{vip}")).contains("vip[1].name"));
        assert!(error_of(&format!("{MINIMAL}group = \"db\"\n{vip}")).contains("names both a group and an ungrouped resource"));
        assert!(error_of(&format!("{MINIMAL}prefer = [1]\ngroup = \"g\"\n{vip}group = \"g\"\n")).contains("same preference order"));
        assert!(error_of(&format!("{MINIMAL}[[health]]\nname = \"h\"\n")).contains("health[0].command"));
        assert!(error_of(&format!("{MINIMAL}[[health]]\nname = \"h\"\ncommand = \"true\"\nrise = 0\n")).contains("health[0].rise"));
        assert!(error_of(&format!("{MINIMAL}[[notify]]\nname = \"n\"\ncommand = \"true\"\nevents = [\"boot\"]\n")).contains("notify[0].events"));
        assert!(error_of(&format!("[metrics]\nlisten = \"localhost\"\n{MINIMAL}")).contains("metrics.listen"));
    }
}
