//! The daemon's configuration file (`/etc/corosync-eip/corosync-eip.toml`).
//!
//! Parsing is strict: unknown keys, malformed values and inconsistent resources are refused
//! with an error that names the key, so a typo never silently disables a resource.
//!
//! `raw` holds the file as written, `validate` turns each section into the types below; what
//! leaves this module has been checked once and is trusted everywhere else.

mod raw;
mod validate;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use raw::RawConfig;
use validate::Invalid;

/// Where packages install the file and where the daemon looks without `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/corosync-eip/corosync-eip.toml";
/// Where the daemon listens for `status`/`move`/`standby` when `[daemon] control_socket` is unset.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/corosync-eip/control.sock";
/// Where node-local state survives restarts when `[daemon] state_dir` is unset.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corosync-eip";

/// Why a file was refused; the message names the file and, when it is a value, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all (missing, permissions).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not TOML, has an unknown key, or a value of the wrong type.
    #[error("{path}: {message}")]
    Syntax {
        /// The file, for the operator.
        path: PathBuf,
        /// The TOML parser's explanation, on one line for the journal.
        message: String,
    },
    /// Someone other than root could have written the file, and its health checks and hooks
    /// run as root.
    #[error("{path}: {message}; its [[health]] and [[notify]] commands run as root, so only root may be able to write it (chown root: and chmod go-w)")]
    Unsafe {
        /// The file, for the operator.
        path: PathBuf,
        /// Who else can write it.
        message: String,
    },
    /// A value is well-formed TOML but not something the daemon can act on.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The file, for the operator.
        path: PathBuf,
        /// The key as written, with the entry index for arrays (`vip[1].address`).
        key: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

/// Everything the daemon needs from the file, validated: a value of this type can be acted on
/// without further checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How this node takes part in the cluster (`[cluster]`).
    pub cluster: ClusterConfig,
    /// How EC2 is reached (`[aws]`).
    pub aws: AwsConfig,
    /// This node's EC2 identity, when it is not read from instance metadata (`[node]`).
    pub node: NodeConfig,
    /// Local paths of the daemon (`[daemon]`).
    pub daemon: DaemonConfig,
    /// Elastic IPs to keep on a live node (`[[eip]]`).
    pub eips: Vec<EipConfig>,
    /// Route-table VIPs to keep on a live node (`[[vip]]`).
    pub vips: Vec<VipConfig>,
    /// Secondary private IPs to keep on a live node's ENI (`[[secondary_ip]]`).
    pub secondary_ips: Vec<SecondaryIpConfig>,
    /// Route 53 records to keep pointed at a live node (`[[dns]]`).
    pub dns: Vec<DnsConfig>,
    /// Local checks that must pass for this node to hold anything (`[[health]]`).
    pub health: Vec<HealthConfig>,
    /// Hooks run when this node acquires, releases or fails a resource (`[[notify]]`).
    pub notify: Vec<NotifyConfig>,
    /// Where the Prometheus endpoint listens; None: no endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Draining before AWS's announced events (`[aws_events]`).
    pub aws_events: AwsEventsConfig,
    /// Stopping a departed holder's instance before a takeover (`[fencing]`).
    pub fencing: FencingConfig,
    /// Computed once from `eips`/`vips` while validating, so callers never meet an invalid
    /// grouping at run time.
    units: Vec<Unit>,
}

/// Draining before the outages EC2 announces in instance metadata (`[aws_events]`).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsEventsConfig {
    /// Off by default: an admin opts in.
    pub enabled: bool,
    /// How often IMDS is read for events.
    pub poll_interval: Duration,
    /// How long before an event may start the node drains (its addresses move by planned
    /// moves).
    pub drain_before: Duration,
    /// How long after its start an event with no announced end keeps the node drained.
    pub window: Duration,
    /// The kinds acted on.
    pub events: std::collections::BTreeSet<crate::core::events::EventKind>,
}

/// Fencing of a departed holder (`[fencing]`): its successor stops its instance before it
/// moves any address, as Pacemaker's `fence_aws` does.
#[derive(Debug, Clone, PartialEq)]
pub struct FencingConfig {
    /// Off by default: an admin opts in (the role then needs `ec2:StopInstances`).
    pub stop_instance: bool,
    /// How long the successor waits for EC2 to show the instance stopping or stopped; past
    /// it the fence failed and nothing moves.
    pub timeout: Duration,
    /// How long the higher node id waits before fencing when it is alone in its partition, so
    /// the two halves of a split two-node cluster do not stop each other.
    pub delay: Duration,
}

/// A command run on acquire/release/fault of a resource on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Names the hook in logs.
    pub name: String,
    /// Run through `/bin/sh -c` with the event in its environment.
    pub command: String,
    /// The hook is killed after this, so a stuck hook never blocks a failover.
    pub timeout: Duration,
    /// Subset of "acquire", "release", "fault".
    pub events: Vec<String>,
}

/// How this node takes part in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The CPG group; all daemons of one cluster must use the same so they hear each other.
    pub group: String,
    /// How often a holder re-verifies in EC2 what it holds.
    pub monitor_interval: Duration,
    /// How long a crashed daemon's addresses are kept for it, so a quick restart moves nothing.
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

/// How EC2 is reached; unset values fall back to the AWS SDK's standard chain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsConfig {
    /// Else AWS_REGION / profile / instance metadata.
    pub region: Option<String>,
    /// For EC2-compatible endpoints (tests, private endpoints); else the real EC2 endpoint.
    pub endpoint_url: Option<String>,
    /// Else AWS_PROFILE / the instance role.
    pub profile: Option<String>,
    /// Per EC2 call attempt, so one hung connection cannot stall a failover.
    pub call_timeout: Duration,
    /// How often a node that holds nothing (or announced it cannot serve something) proves its
    /// EC2 permissions with DryRun calls (zero: never).
    pub permission_check_interval: Duration,
    /// How long an elected holder keeps retrying transient EC2 failures before it hands the
    /// unit to the next candidate (a permission error hands it over at once).
    pub acquire_timeout: Duration,
    /// The role VIPs' route-table calls assume unless a VIP names its own (shared VPCs).
    pub route_table_role: Option<String>,
}

/// This node's EC2 identity when instance metadata is unavailable or should not be trusted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    /// Else read from instance metadata (IMDSv2).
    pub instance_id: Option<String>,
    /// Else the instance's device-index-0 ENI.
    pub network_interface_id: Option<String>,
}

/// Local paths of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Where `status`, `move` and `standby` reach the running daemon.
    pub control_socket: PathBuf,
    /// Where node-local state survives restarts (the standby flag).
    pub state_dir: PathBuf,
}

/// An Elastic IP associated with the holder's ENI.
#[derive(Debug, Clone, PartialEq)]
pub struct EipConfig {
    /// Names the resource in commands, status and logs; unique among all resources.
    pub name: String,
    /// The EIP to move (`eipalloc-...`).
    pub allocation_id: String,
    /// Which private IP of the holder's ENI to associate to; None: the primary.
    pub private_ip: Option<Ipv4Addr>,
    /// Node ids in order of preference; empty: `[cluster] prefer`.
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

/// A private address routed to the holder's ENI through VPC route tables.
#[derive(Debug, Clone, PartialEq)]
pub struct VipConfig {
    /// Names the resource in commands, status and logs; unique among all resources.
    pub name: String,
    /// The floating address, routed as a /32 (IPv4) or a /128 (IPv6).
    pub address: IpAddr,
    /// Every table whose route must point at the holder.
    pub route_tables: Vec<String>,
    /// Route tables found at start by tag (and VPC), added to `route_tables`.
    pub discover: Option<RouteTableQuery>,
    /// Create the route when it is missing instead of reporting an error.
    pub create_route: bool,
    /// The IAM role assumed for this VIP's route-table calls (its own, else `[aws]`'s); None:
    /// the node's own credentials.
    pub route_table_role: Option<String>,
    /// Where the holder configures the address so it answers for it.
    pub interface: String,
    /// Linux address label, so operators' tools can tell the VIP apart.
    pub label: Option<String>,
    /// Node ids in order of preference; empty: `[cluster] prefer`.
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

/// A private address of the nodes' subnet, assigned to the holder's ENI as a secondary IP
/// (`AssignPrivateIpAddresses` with reassignment: one call moves it, never unassigned first).
#[derive(Debug, Clone, PartialEq)]
pub struct SecondaryIpConfig {
    /// Names the resource in commands, status and logs; unique among all resources.
    pub name: String,
    /// The floating address (IPv4 or IPv6); it must lie in the subnet of every node's ENI.
    pub address: IpAddr,
    /// Where the holder configures the address (as a /32) so it answers for it.
    pub interface: String,
    /// Linux address label, so operators' tools can tell the floating address apart.
    pub label: Option<String>,
    /// Node ids in order of preference; empty: `[cluster] prefer`.
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

/// A Route 53 record kept pointed at the holder (`ChangeResourceRecordSets` UPSERT, verified
/// INSYNC and read back).
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Names the resource in commands, status and logs; unique among all resources.
    pub name: String,
    /// The hosted zone that holds the record.
    pub hosted_zone_id: String,
    /// The record's name, lower case, with its trailing dot.
    pub record: String,
    /// A or AAAA.
    pub record_type: RecordType,
    /// Seconds resolvers may cache the answer.
    pub ttl: u32,
    /// What the record points at.
    pub value: DnsValue,
    /// On a planned stop of the holder with no other member able to take the record, delete
    /// it (if it still points at us) rather than leave it pointing at a stopped node.
    pub delete_on_release: bool,
    /// Node ids in order of preference; empty: `[cluster] prefer`.
    pub prefer: Vec<u32>,
    /// Resources of one group always share one holder.
    pub group: Option<String>,
}

impl DnsConfig {
    /// Whether the record's name lies in the zone named `zone` (`example.com.`): Route 53
    /// changes a record only in the zone that holds its name.
    pub fn in_zone(&self, zone: &str) -> bool {
        self.record == zone || self.record.ends_with(&format!(".{zone}"))
    }
}

/// The record types a floating address can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// An IPv4 address.
    A,
    /// An IPv6 address.
    Aaaa,
}

impl RecordType {
    /// As Route 53 writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
        }
    }
}

/// What a `[[dns]]` record points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsValue {
    /// The holder's primary private IPv4 address.
    Private,
    /// The holder's public IPv4 address.
    Public,
    /// The public IP of an `[[eip]]` of the same group.
    Eip(String),
    /// The address of a `[[vip]]` of the same group.
    Vip(String),
    /// The address of a `[[secondary_ip]]` of the same group.
    SecondaryIp(String),
}

impl std::fmt::Display for DnsValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsValue::Private => write!(f, "private"),
            DnsValue::Public => write!(f, "public"),
            DnsValue::Eip(n) => write!(f, "eip:{n}"),
            DnsValue::Vip(n) => write!(f, "vip:{n}"),
            DnsValue::SecondaryIp(n) => write!(f, "secondary_ip:{n}"),
        }
    }
}

/// Finds a VIP's route tables by tag, so operators need not list every table id.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTableQuery {
    /// Tag key the tables carry.
    pub tag_key: String,
    /// Tag value the tables carry.
    pub tag_value: String,
    /// Limits the search to one VPC when the same tag is used elsewhere.
    pub vpc_id: Option<String>,
}

impl VipConfig {
    /// The route destination, as EC2 writes it: a /32, or a /128 for IPv6.
    pub fn destination(&self) -> String {
        match self.address {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        }
    }
}

/// A local check that decides whether this node may hold addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Names the check in status and logs.
    pub name: String,
    /// A command or a systemd unit; its failure makes this node ineligible after `fall` runs.
    pub check: HealthCheck,
    /// How often it runs: with `fall`, how quickly a failing node gives up its addresses.
    pub interval: Duration,
    /// A run that takes longer counts as a failure.
    pub timeout: Duration,
    /// Consecutive successes needed to become healthy again.
    pub rise: u32,
    /// Consecutive failures needed to become unhealthy.
    pub fall: u32,
}

/// The two ways a health check is expressed.
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
    /// The group name, or the resource's own name when it is ungrouped.
    pub name: String,
    /// Node ids in order of preference (the members' shared `prefer`, else the cluster's).
    pub prefer: Vec<u32>,
    /// Names of the resources that move together, in file order.
    pub resources: Vec<String>,
}

/// Who besides root may write a file with this owner and mode; None when nobody.
fn other_writers(uid: u32, mode: u32) -> Option<String> {
    if uid != 0 {
        return Some(format!("owned by uid {uid}"));
    }
    (mode & 0o022 != 0).then(|| format!("writable by {} (mode {:04o})", if mode & 0o002 != 0 { "everyone" } else { "its group" }, mode & 0o7777))
}

impl Config {
    /// Reads and validates the file at `path`; as root, refuses a file anyone else could have
    /// written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        if nix::unistd::geteuid().is_root() {
            let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            use std::os::unix::fs::MetadataExt as _;
            if let Some(message) = other_writers(meta.uid(), meta.mode()) {
                return Err(ConfigError::Unsafe {
                    path: path.to_owned(),
                    message,
                });
            }
        }
        Config::parse(&text, path)
    }

    /// Validates `text`; `origin` only names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        Config::validate(raw).map_err(|Invalid { key, message }| ConfigError::Invalid {
            path: origin.to_owned(),
            key,
            message,
        })
    }

    fn validate(raw: RawConfig) -> Result<Config, Invalid> {
        let cluster = validate::cluster(raw.cluster)?;
        let aws = validate::aws(raw.aws)?;
        let node = validate::node(raw.node)?;
        let daemon = validate::daemon(raw.daemon)?;
        validate::some_resource(&raw.eip, &raw.vip, &raw.secondary_ip, &raw.dns)?;
        let mut names = BTreeSet::new();
        let eips = validate::eips(raw.eip, &mut names)?;
        let vips = validate::vips(raw.vip, &mut names, aws.route_table_role.as_deref())?;
        let secondary_ips = validate::secondary_ips(raw.secondary_ip, &mut names, &vips)?;
        let dns = validate::dns(raw.dns, &mut names, &eips, &vips, &secondary_ips)?;
        let health = validate::health(raw.health)?;
        let notify = validate::notify(raw.notify)?;
        let metrics_listen = validate::metrics(raw.metrics)?;
        let aws_events = validate::aws_events(raw.aws_events)?;
        let fencing = validate::fencing(raw.fencing)?;
        let units = validate::units(&cluster.prefer, &eips, &vips, &secondary_ips, &dns)?;
        Ok(Config {
            cluster,
            aws,
            node,
            daemon,
            eips,
            vips,
            secondary_ips,
            dns,
            health,
            notify,
            metrics_listen,
            aws_events,
            fencing,
            units,
        })
    }

    /// Resources grouped into placement units, ordered by unit name.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// Every resource name, EIPs first, then VIPs, then secondary IPs, in file order.
    pub fn resource_names(&self) -> Vec<String> {
        self.eips
            .iter()
            .map(|e| e.name.clone())
            .chain(self.vips.iter().map(|v| v.name.clone()))
            .chain(self.secondary_ips.iter().map(|s| s.name.clone()))
            .chain(self.dns.iter().map(|d| d.name.clone()))
            .collect()
    }

    /// Why the metrics endpoint is exposed beyond this host, if it is: anyone who reaches the
    /// port reads this node's holders and EC2 error counts, and every connection costs the
    /// daemon a file descriptor.
    pub fn metrics_exposure(&self) -> Option<String> {
        let addr = self.metrics_listen?;
        (!addr.ip().is_loopback()).then(|| {
            format!("[metrics] listen = \"{addr}\" is not a loopback address: anyone who can reach that port reads this node's holders and EC2 error counts")
        })
    }

    /// The unit (group or the resource itself) a resource is placed with.
    pub fn unit_of(&self, resource: &str) -> Option<String> {
        let group = |g: &Option<String>, n: &String| g.clone().unwrap_or_else(|| n.clone());
        self.eips
            .iter()
            .find(|e| e.name == resource)
            .map(|e| group(&e.group, &e.name))
            .or_else(|| self.vips.iter().find(|v| v.name == resource).map(|v| group(&v.group, &v.name)))
            .or_else(|| {
                self.secondary_ips
                    .iter()
                    .find(|s| s.name == resource)
                    .map(|s| group(&s.group, &s.name))
            })
            .or_else(|| self.dns.iter().find(|d| d.name == resource).map(|d| group(&d.group, &d.name)))
    }

    /// Every unit with everything that decides its placement and action, as this node announces
    /// it to the others so that members whose files differ notice.
    pub fn unit_specs(&self) -> Vec<crate::core::spec::UnitSpec> {
        use crate::core::spec::UnitSpec;
        self.units
            .iter()
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
                        // Discovered tables are included: members that found different tables
                        // would route the VIP differently.
                        let mut tables = v.route_tables.clone();
                        tables.sort();
                        spec = spec
                            .with_key(&key("kind"), "vip")
                            .with_key(&key("address"), &v.address.to_string())
                            .with_key(&key("route_tables"), &tables.join(","))
                            .with_key(&key("interface"), &v.interface)
                            .with_key(&key("create_route"), if v.create_route { "true" } else { "false" })
                            .with_key(&key("route_table_role"), v.route_table_role.as_deref().unwrap_or_default());
                    } else if let Some(s) = self.secondary_ips.iter().find(|s| &s.name == name) {
                        spec = spec
                            .with_key(&key("kind"), "secondary_ip")
                            .with_key(&key("address"), &s.address.to_string())
                            .with_key(&key("interface"), &s.interface);
                    } else if let Some(d) = self.dns.iter().find(|d| &d.name == name) {
                        spec = spec
                            .with_key(&key("kind"), "dns")
                            .with_key(&key("hosted_zone_id"), &d.hosted_zone_id)
                            .with_key(&key("record"), &d.record)
                            .with_key(&key("type"), d.record_type.as_str())
                            .with_key(&key("ttl"), &d.ttl.to_string())
                            .with_key(&key("value"), &d.value.to_string())
                            .with_key(&key("delete_on_release"), if d.delete_on_release { "true" } else { "false" });
                    }
                }
                spec
            })
            .collect()
    }
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
        let units = c.units();
        assert_eq!(units.iter().find(|u| u.name == "web").unwrap().prefer, vec![3]);
        assert_eq!(units.iter().find(|u| u.name == "api").unwrap().prefer, vec![2, 1]);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_metrics_endpoint_beyond_loopback_is_named_as_exposed() {
        let exposure = |listen: &str| parse(&format!("{MINIMAL}[metrics]\nlisten = \"{listen}\"\n")).unwrap().metrics_exposure();
        assert_eq!(exposure("127.0.0.1:9464"), None);
        assert_eq!(exposure("[::1]:9464"), None);
        let exposed = exposure("0.0.0.0:9464").expect("all interfaces are exposed");
        assert!(exposed.contains("0.0.0.0:9464") && exposed.contains("not a loopback"), "{exposed}");
        assert!(exposure("10.0.0.5:9464").is_some());
        assert_eq!(parse(MINIMAL).unwrap().metrics_exposure(), None, "no endpoint, nothing exposed");
    }

    /// Every duration key, the file around it, and its documented upper bound (as the README
    /// writes it): the bound is accepted, one step above it is refused naming key and bound.
    #[test]
    fn every_duration_key_has_an_upper_bound() {
        let health = |field: &str, v: &str| {
            // A long interval, so the timeout is held by its own bound and not by "10 intervals".
            let interval = if field == "timeout" { "interval = \"1h\"\n" } else { "" };
            format!("{MINIMAL}[[health]]\nname = \"h\"\ncommand = \"true\"\n{interval}{field} = \"{v}\"\n")
        };
        // The file with the key set to a given value.
        type FileWith = Box<dyn Fn(&str) -> String>;
        let cases: Vec<(&str, &str, &str, FileWith)> = vec![
            ("cluster.monitor_interval", "1h", "3601s", Box::new(|v| format!("[cluster]\nmonitor_interval = \"{v}\"\n{MINIMAL}"))),
            ("cluster.reattach_grace", "600s", "601s", Box::new(|v| format!("[cluster]\nreattach_grace = \"{v}\"\n{MINIMAL}"))),
            ("cluster.startup_wait", "600s", "601s", Box::new(|v| format!("[cluster]\nstartup_wait = \"{v}\"\n{MINIMAL}"))),
            ("cluster.sync_timeout", "120s", "121s", Box::new(|v| format!("[cluster]\nsync_timeout = \"{v}\"\n{MINIMAL}"))),
            ("aws.call_timeout", "120s", "121s", Box::new(|v| format!("[aws]\ncall_timeout = \"{v}\"\n{MINIMAL}"))),
            ("aws.permission_check_interval", "24h", "86401s", Box::new(|v| format!("[aws]\npermission_check_interval = \"{v}\"\n{MINIMAL}"))),
            ("aws.acquire_timeout", "600s", "601s", Box::new(|v| format!("[aws]\nacquire_timeout = \"{v}\"\n{MINIMAL}"))),
            ("health[0].interval", "1h", "3601s", Box::new(move |v| health("interval", v))),
            ("health[0].timeout", "600s", "601s", Box::new(move |v| health("timeout", v))),
            ("notify[0].timeout", "600s", "601s", Box::new(|v| format!("{MINIMAL}[[notify]]\nname = \"n\"\ncommand = \"true\"\ntimeout = \"{v}\"\n"))),
            ("aws_events.poll_interval", "600s", "601s", Box::new(|v| format!("[aws_events]\npoll_interval = \"{v}\"\n{MINIMAL}"))),
            ("aws_events.drain_before", "168h", "604801s", Box::new(|v| format!("[aws_events]\ndrain_before = \"{v}\"\n{MINIMAL}"))),
            ("aws_events.window", "24h", "86401s", Box::new(|v| format!("[aws_events]\nwindow = \"{v}\"\n{MINIMAL}"))),
            ("fencing.timeout", "600s", "601s", Box::new(|v| format!("[fencing]\ntimeout = \"{v}\"\n{MINIMAL}"))),
            ("fencing.delay", "120s", "121s", Box::new(|v| format!("[fencing]\ndelay = \"{v}\"\n{MINIMAL}"))),
        ];
        for (key, max, over, file) in &cases {
            if let Err(e) = parse(&file(max)) {
                panic!("{key} = {max} should be accepted: {e}");
            }
            for too_long in [*over, "100000years", "18446744073709551615s"] {
                let err = error_of(&file(too_long));
                assert!(err.contains(&format!("`{key}`")), "{key} = {too_long}: {err}");
                assert!(err.contains(max), "{key} = {too_long}: the message should give the bound {max}: {err}");
            }
        }
    }

    #[test]
    fn units_are_computed_once_when_the_file_is_read() {
        let c = parse(&format!(
            "{MINIMAL}group = \"front\"\n[[vip]]\nname = \"db\"\naddress = \"172.31.255.10\"\nroute_tables = [\"rtb-1\"]\ngroup = \"front\"\n[[vip]]\nname = \"cache\"\naddress = \"172.31.255.11\"\nroute_tables = [\"rtb-1\"]\n"
        ))
        .unwrap();
        let units: Vec<(&str, Vec<&str>)> =
            c.units().iter().map(|u| (u.name.as_str(), u.resources.iter().map(String::as_str).collect())).collect();
        assert_eq!(units, vec![("cache", vec!["cache"]), ("front", vec!["web", "db"])]);
        assert_eq!(c.unit_specs().len(), 2);
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
            Just("\"172.31.255.10\"".to_string()), Just("\"10.0.1.50\"".to_string()), "\"[^\"\\\\]{0,12}\"".prop_map(|s| s),
        ];
        let section = prop_oneof![
            Just("[cluster]"), Just("[aws]"), Just("[node]"), Just("[daemon]"), Just("[metrics]"),
            Just("[[eip]]"), Just("[[vip]]"), Just("[[secondary_ip]]"), Just("[[dns]]"), Just("[[health]]"), Just("[[notify]]"),
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
    fn only_root_may_be_able_to_write_the_file() {
        assert_eq!(other_writers(0, 0o100600), None);
        assert_eq!(other_writers(0, 0o100644), None);
        assert_eq!(other_writers(1000, 0o100600).as_deref(), Some("owned by uid 1000"));
        assert_eq!(other_writers(0, 0o100664).as_deref(), Some("writable by its group (mode 0664)"));
        assert_eq!(other_writers(0, 0o100666).as_deref(), Some("writable by everyone (mode 0666)"));
    }

    #[test]
    fn fencing_is_off_by_default_and_bad_values_name_the_key() {
        let c = parse(MINIMAL).unwrap();
        assert!(!c.fencing.stop_instance);
        assert_eq!(c.fencing.timeout, Duration::from_secs(60));
        assert_eq!(c.fencing.delay, Duration::from_secs(5));
        let c = parse(&format!("[fencing]\nstop_instance = true\ntimeout = \"30s\"\ndelay = \"0s\"\n{MINIMAL}")).unwrap();
        assert!(c.fencing.stop_instance);
        assert_eq!(c.fencing.timeout, Duration::from_secs(30));
        assert_eq!(c.fencing.delay, Duration::ZERO);
        assert!(error_of(&format!("[fencing]\ntimeout = \"500ms\"\n{MINIMAL}")).contains("`fencing.timeout`"));
        assert!(error_of(&format!("[fencing]\nstop_instance = \"yes\"\n{MINIMAL}")).contains("stop_instance"));
        assert!(error_of(&format!("[fencing]\nstop = true\n{MINIMAL}")).contains("stop"));
    }

    #[test]
    fn aws_events_are_off_by_default_and_name_unknown_kinds() {
        use crate::core::events::EventKind;
        let c = parse(MINIMAL).unwrap();
        assert!(!c.aws_events.enabled);
        assert_eq!(c.aws_events.events.len(), EventKind::ALL.len());
        let c = parse(&format!("[aws_events]\nenabled = true\nevents = [\"instance-stop\", \"spot-interruption\"]\n{MINIMAL}")).unwrap();
        assert!(c.aws_events.enabled);
        assert_eq!(c.aws_events.events.iter().copied().collect::<Vec<_>>(), vec![EventKind::InstanceStop, EventKind::SpotInterruption]);
        let err = error_of(&format!("[aws_events]\nevents = [\"instance-stop\", \"reboot\"]\n{MINIMAL}"));
        assert!(err.contains("aws_events.events[1]") && err.contains("`reboot`") && err.contains("system-reboot"), "{err}");
        assert!(error_of(&format!("[aws_events]\nevents = []\n{MINIMAL}")).contains("aws_events.events"));
        assert!(error_of(&format!("[aws_events]\ndrain_before = \"0s\"\n{MINIMAL}")).contains("aws_events.drain_before"));
        assert!(error_of(&format!("[aws_events]\nenable = true\n{MINIMAL}")).contains("enable"));
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

    #[test]
    fn ipv6_vips_route_a_128_and_refuse_what_cannot_float() {
        let vip = |address: &str| format!("[[vip]]\nname = \"db\"\naddress = \"{address}\"\nroute_tables = [\"rtb-1\"]\n");
        let c = parse(&vip("fd00:ec2::10")).unwrap();
        assert_eq!(c.vips[0].destination(), "fd00:ec2::10/128");
        assert_eq!(parse(&vip("172.31.255.10")).unwrap().vips[0].destination(), "172.31.255.10/32");
        for bad in ["fe80::1", "::1", "::", "ff02::1", "::ffff:10.0.0.1"] {
            assert!(error_of(&vip(bad)).contains("vip[0].address"), "{bad}");
        }
        assert!(error_of(&format!("{}label = \"eth0:db\"\n", vip("fd00:ec2::10"))).contains("vip[0].label"));
    }

    #[test]
    fn dns_records_parse_and_refuse_mismatches_naming_the_key() {
        let dns = "[[dns]]\nname = \"db\"\nhosted_zone_id = \"Z0ABC\"\nrecord = \"DB.Example.com\"\nttl = 30\n";
        let c = parse(dns).unwrap();
        let d = &c.dns[0];
        assert_eq!((d.record.as_str(), d.record_type, d.ttl, &d.value), ("db.example.com.", RecordType::A, 30, &DnsValue::Private));
        assert_eq!(parse(&dns.replace("Z0ABC", "/hostedzone/Z0ABC")).unwrap().dns[0].hosted_zone_id, "Z0ABC");
        let err = |text: &str| error_of(text);
        assert!(err(&dns.replace("Z0ABC", "zone-1")).contains("dns[0].hosted_zone_id"));
        assert!(err(&dns.replace("Z0ABC", "example.com")).contains("dns[0].hosted_zone_id"));
        assert!(err(&dns.replace("DB.Example.com", "db")).contains("dns[0].record"));
        assert!(err(&dns.replace("DB.Example.com", "d b.example.com")).contains("dns[0].record"));
        assert!(err(&dns.replace("ttl = 30", "ttl = -1")).contains("dns[0].ttl"));
        assert!(err(&format!("{dns}type = \"CNAME\"\n")).contains("dns[0].type"));
        assert!(err(&format!("{dns}type = \"AAAA\"\n")).contains("dns[0].type"), "private is IPv4");
        assert!(err(&format!("{dns}value = \"eip:nope\"\n")).contains("dns[0].value"));
        assert!(err(&format!("{dns}value = \"somewhere\"\n")).contains("dns[0].value"));
        assert!(err(&format!("{dns}{dns}")).contains("dns[1].name"));
        // an address of another group would not move with the record
        let with_eip = format!("{MINIMAL}{dns}value = \"eip:web\"\n");
        assert!(err(&with_eip).contains("not in this record's group"));
        let c = parse(&format!("{MINIMAL}group = \"svc\"\n{dns}value = \"eip:web\"\ngroup = \"svc\"\n")).unwrap();
        assert_eq!(c.dns[0].value, DnsValue::Eip("web".into()));
        assert_eq!(c.unit_of("db").as_deref(), Some("svc"));
        let v6 = "[[vip]]\nname = \"v6\"\naddress = \"fd00::10\"\nroute_tables = [\"rtb-1\"]\ngroup = \"g\"\n";
        assert!(parse(&format!("{v6}{dns}value = \"vip:v6\"\ntype = \"AAAA\"\ngroup = \"g\"\n")).is_ok());
        assert!(err(&format!("{v6}{dns}value = \"vip:v6\"\ngroup = \"g\"\n")).contains("must be AAAA"));
    }

    #[test]
    fn route_table_roles_are_arns_and_a_vip_inherits_the_global_one() {
        let role = "arn:aws:iam::123456789012:role/network-account-routes";
        let vip = "[[vip]]\nname = \"db\"\naddress = \"172.31.255.10\"\nroute_tables = [\"rtb-1\"]\n";
        let c = parse(&format!("[aws]\nroute_table_role = \"{role}\"\n{vip}")).unwrap();
        assert_eq!(c.vips[0].route_table_role.as_deref(), Some(role));
        let own = "arn:aws:iam::210987654321:role/other";
        let c = parse(&format!("[aws]\nroute_table_role = \"{role}\"\n{vip}route_table_role = \"{own}\"\n")).unwrap();
        assert_eq!(c.vips[0].route_table_role.as_deref(), Some(own));
        assert_eq!(parse(vip).unwrap().vips[0].route_table_role, None);
        assert!(error_of(&format!("[aws]\nroute_table_role = \"network\"\n{vip}")).contains("aws.route_table_role"));
        assert!(error_of(&format!("{vip}route_table_role = \"arn:aws:iam::12:role/x\"\n")).contains("vip[0].route_table_role"));
    }

    const SECONDARY: &str = "[[secondary_ip]]\nname = \"db\"\naddress = \"10.0.1.50\"\n";

    #[test]
    fn secondary_ips_parse_group_and_are_announced() {
        let c = parse(&format!("{MINIMAL}group = \"svc\"\n{SECONDARY}group = \"svc\"\nlabel = \"eth0:db\"\n")).unwrap();
        assert_eq!(c.secondary_ips[0].address, IpAddr::V4(Ipv4Addr::new(10, 0, 1, 50)));
        assert_eq!(c.secondary_ips[0].interface, "eth0");
        assert_eq!(c.resource_names(), vec!["web".to_string(), "db".to_string()]);
        assert_eq!(c.unit_of("db").as_deref(), Some("svc"));
        let units: Vec<(&str, Vec<&str>)> =
            c.units().iter().map(|u| (u.name.as_str(), u.resources.iter().map(String::as_str).collect())).collect();
        assert_eq!(units, vec![("svc", vec!["web", "db"])]);
        let spec = &c.unit_specs()[0];
        assert!(spec.keys.contains_key("db.kind") && spec.keys.contains_key("db.address"), "{spec:?}");
        // a file with only a secondary IP is a complete file
        assert!(parse(SECONDARY).is_ok());
    }

    #[test]
    fn bad_secondary_ips_are_refused_naming_the_key() {
        let bad = |from: &str, to: &str| error_of(&SECONDARY.replace(from, to));
        assert!(bad("10.0.1.50", "10.0.1").contains("secondary_ip[0].address"));
        assert!(bad("10.0.1.50", "8.8.8.8").contains("not a private address"));
        assert_eq!(parse(&SECONDARY.replace("10.0.1.50", "2600:1f18::50")).unwrap().secondary_ips[0].address.to_string(), "2600:1f18::50");
        assert!(bad("10.0.1.50", "fe80::5").contains("secondary_ip[0].address"));
        assert!(error_of(&format!("{}label = \"eth0:db\"\n", SECONDARY.replace("10.0.1.50", "2600:1f18::50"))).contains("secondary_ip[0].label"));
        assert!(error_of(&format!("{SECONDARY}label = \"eth1:db\"\n")).contains("secondary_ip[0].label"));
        assert!(error_of(&format!("{SECONDARY}interface = \"eth 0\"\n")).contains("secondary_ip[0].interface"));
        assert!(error_of(&format!("{SECONDARY}{}", SECONDARY.replace("db", "db2"))).contains("secondary_ip[1].address"));
        assert!(error_of(&format!("{SECONDARY}{SECONDARY}")).contains("secondary_ip[1].name"));
        assert!(error_of(&format!("{SECONDARY}prefer = [0]\n")).contains("secondary_ip[0].prefer"));
        let clash = "[[vip]]\nname = \"v\"\naddress = \"10.0.1.50\"\nroute_tables = [\"rtb-1\"]\n";
        assert!(error_of(&format!("{clash}{SECONDARY}")).contains("already managed"));
        assert!(error_of(&format!("{SECONDARY}addres = \"10.0.1.51\"\n")).contains("addres"));
    }
}
