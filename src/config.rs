//! The daemon's configuration file (`/etc/corosync-eip/corosync-eip.toml`).
//!
//! Parsing is strict: unknown keys, malformed values and inconsistent resources are refused
//! with an error that names the key, so a typo never silently disables a resource.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/corosync-eip/corosync-eip.toml";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/corosync-eip/control.sock";
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub group: String,
    pub monitor_interval: Duration,
    pub reattach_grace: Duration,
    /// Node ids in order of preference for every resource that has no `prefer` of its own.
    pub prefer: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    pub call_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub control_socket: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EipConfig {
    pub name: String,
    pub allocation_id: String,
    pub private_ip: Option<Ipv4Addr>,
    pub prefer: Vec<u32>,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    monitor_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    reattach_grace: Option<Duration>,
    #[serde(default)]
    prefer: Vec<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    call_timeout: Option<Duration>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEip {
    name: String,
    allocation_id: String,
    private_ip: Option<String>,
    #[serde(default)]
    prefer: Vec<u32>,
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
        if monitor_interval < Duration::from_secs(1) {
            return Err(invalid(
                "cluster.monitor_interval",
                "must be at least 1s (each holder calls DescribeAddresses this often)".into(),
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
        let call_timeout = raw.aws.call_timeout.unwrap_or(Duration::from_secs(5));
        if call_timeout < Duration::from_millis(100) {
            return Err(invalid("aws.call_timeout", "must be at least 100ms".into()));
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

        if raw.eip.is_empty() {
            return Err(invalid("eip", "no [[eip]] resource is configured: nothing to manage".into()));
        }
        let mut names = BTreeSet::new();
        let mut allocations = BTreeSet::new();
        let mut eips = Vec::with_capacity(raw.eip.len());
        for (index, e) in raw.eip.into_iter().enumerate() {
            let key = |field: &str| format!("eip[{index}].{field}");
            if e.name.is_empty()
                || e.name.len() > 64
                || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(invalid(
                    &key("name"),
                    format!("`{}` must be 1-64 characters of letters, digits, '-', '_' or '.'", e.name),
                ));
            }
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
            eips.push(EipConfig {
                name: e.name,
                allocation_id: e.allocation_id,
                private_ip,
                prefer: e.prefer,
            });
        }

        Ok(Config {
            cluster: ClusterConfig {
                group,
                monitor_interval,
                reattach_grace,
                prefer: raw.cluster.prefer,
            },
            aws: AwsConfig {
                region: raw.aws.region,
                endpoint_url: raw.aws.endpoint_url,
                profile: raw.aws.profile,
                call_timeout,
            },
            node: NodeConfig {
                instance_id: raw.node.instance_id,
                network_interface_id: raw.node.network_interface_id,
            },
            daemon: DaemonConfig { control_socket },
            eips,
        })
    }

    /// Preference order for one resource: its own list, else the cluster-wide one.
    pub fn preference_for<'a>(&'a self, eip: &'a EipConfig) -> &'a [u32] {
        if eip.prefer.is_empty() {
            &self.cluster.prefer
        } else {
            &eip.prefer
        }
    }
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
        assert_eq!(c.preference_for(&c.eips[0]), &[3]);
        assert_eq!(c.preference_for(&c.eips[1]), &[2, 1]);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
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
    }
}
