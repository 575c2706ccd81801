//! Turns each raw section into its validated form.
//!
//! Every check names the key (and for `[[eip]]`/`[[vip]]`/`[[health]]`/`[[notify]]` the
//! entry's index) so an operator can go straight to the line that is wrong. Durations get
//! both a lower and an upper bound: too small floods EC2 or corosync, too large either keeps
//! an address unserved for an absurd time or overflows the daemon's clock arithmetic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawAws, RawAwsEvents, RawFencing, RawCluster, RawDaemon, RawEip, RawHealth, RawMetrics, RawNode, RawNotify, RawSecondaryIp, RawVip, RawDns};
use super::{
    AwsConfig, AwsEventsConfig, FencingConfig, ClusterConfig, DaemonConfig, DnsConfig, DnsValue, EipConfig, RecordType, HealthCheck, HealthConfig, NodeConfig, NotifyConfig,
    RouteTableQuery, SecondaryIpConfig, Unit, VipConfig, DEFAULT_CONTROL_SOCKET, DEFAULT_STATE_DIR,
};

/// CPG group names are limited to 128 bytes including the terminating NUL.
const CPG_GROUP_MAX: usize = 127;

/// A value the daemon refuses; `Config::parse` adds the file name.
#[derive(Debug, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub(super) struct Invalid {
    /// The offending key, with the entry's index for arrays, e.g. `vip[1].address`.
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The smallest value a duration key accepts.
#[derive(Clone, Copy)]
enum Low {
    /// Zero is a meaningful value (no wait, no grace).
    Zero,
    /// Zero would make the action impossible (a command with no time to run).
    Positive,
    At(Duration),
    /// Zero switches the feature off; otherwise at least this much.
    OffOr(Duration),
}

/// Reads `value` (or `default` when the key is absent) and refuses anything outside
/// `low..=high`; `why` tells the operator what the bound protects.
fn duration(key: &str, value: Option<Duration>, default: Duration, low: Low, high: Duration, why: &str) -> Result<Duration, Invalid> {
    let d = value.unwrap_or(default);
    let ok = match low {
        Low::Zero => true,
        Low::Positive => !d.is_zero(),
        Low::At(min) => d >= min,
        Low::OffOr(min) => d.is_zero() || d >= min,
    } && d <= high;
    if ok {
        return Ok(d);
    }
    let high = short(high);
    let range = match low {
        Low::Zero => format!("must be at most {high}"),
        Low::Positive => format!("must be more than 0 and at most {high}"),
        Low::At(min) => format!("must be between {} and {high}", short(min)),
        Low::OffOr(min) => format!("must be 0 (off) or between {} and {high}", short(min)),
    };
    let why = if why.is_empty() { String::new() } else { format!(" ({why})") };
    Err(invalid(key, format!("{range}{why}")))
}

/// Bounds as the README writes them ("600s", "24h", "100ms"), so the message and the
/// documentation read the same.
fn short(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs >= 3600 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// `[cluster]`: the group name's length and every timer's bounds, with the defaults.
pub(super) fn cluster(raw: RawCluster) -> Result<ClusterConfig, Invalid> {
    let group = raw.group.unwrap_or_else(|| "corosync-eip".to_owned());
    if group.is_empty() || group.len() > CPG_GROUP_MAX {
        return Err(invalid("cluster.group", format!("must be 1 to {CPG_GROUP_MAX} bytes long")));
    }
    let monitor_interval = duration(
        "cluster.monitor_interval",
        raw.monitor_interval,
        Duration::from_secs(10),
        Low::At(Duration::from_secs(1)),
        Duration::from_secs(3600),
        "each holder calls DescribeAddresses this often",
    )?;
    let sync_timeout = duration(
        "cluster.sync_timeout",
        raw.sync_timeout,
        Duration::from_secs(5),
        Low::At(Duration::from_secs(1)),
        Duration::from_secs(120),
        "a hung member holds up failovers this long",
    )?;
    let reattach_grace = duration(
        "cluster.reattach_grace",
        raw.reattach_grace,
        Duration::from_secs(10),
        Low::Zero,
        Duration::from_secs(600),
        "a crashed daemon keeps its addresses unmonitored this long",
    )?;
    let startup_wait = duration(
        "cluster.startup_wait",
        raw.startup_wait,
        Duration::from_secs(10),
        Low::Zero,
        Duration::from_secs(600),
        "a first start leaves the addresses unplaced this long",
    )?;
    check_prefer(&raw.prefer).map_err(|m| invalid("cluster.prefer", m))?;
    Ok(ClusterConfig {
        group,
        monitor_interval,
        reattach_grace,
        startup_wait,
        prefer: raw.prefer,
        sync_timeout,
    })
}

/// `[aws]`: a plausible region and endpoint scheme, and bounded timers.
pub(super) fn aws(raw: RawAws) -> Result<AwsConfig, Invalid> {
    if let Some(region) = &raw.region {
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid("aws.region", format!("`{region}` is not a region name like \"eu-west-1\"")));
        }
    }
    if let Some(url) = &raw.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("aws.endpoint_url", format!("`{url}` must start with https:// (or http://)")));
        }
    }
    let permission_check_interval = duration(
        "aws.permission_check_interval",
        raw.permission_check_interval,
        Duration::from_secs(300),
        Low::OffOr(Duration::from_secs(1)),
        Duration::from_secs(86400),
        "",
    )?;
    let call_timeout = duration(
        "aws.call_timeout",
        raw.call_timeout,
        Duration::from_secs(5),
        Low::At(Duration::from_millis(100)),
        Duration::from_secs(120),
        "",
    )?;
    let acquire_timeout = duration(
        "aws.acquire_timeout",
        raw.acquire_timeout,
        Duration::from_secs(20),
        Low::At(Duration::from_secs(1)),
        Duration::from_secs(600),
        "an unreachable successor keeps the address away this long",
    )?;
    if let Some(role) = &raw.route_table_role {
        check_role_arn(role).map_err(|m| invalid("aws.route_table_role", m))?;
    }
    Ok(AwsConfig {
        route_table_role: raw.route_table_role,
        region: raw.region,
        endpoint_url: raw.endpoint_url,
        profile: raw.profile,
        call_timeout,
        permission_check_interval,
        acquire_timeout,
    })
}

/// `[node]`: ids that look like EC2's, so a typo fails here rather than at the first failover.
pub(super) fn node(raw: RawNode) -> Result<NodeConfig, Invalid> {
    if let Some(id) = &raw.instance_id {
        if !looks_like_aws_id(id, "i-") {
            return Err(invalid("node.instance_id", format!("`{id}` is not an instance id like \"i-0123456789abcdef0\"")));
        }
    }
    if let Some(id) = &raw.network_interface_id {
        if !looks_like_aws_id(id, "eni-") {
            return Err(invalid(
                "node.network_interface_id",
                format!("`{id}` is not a network interface id like \"eni-0123456789abcdef0\""),
            ));
        }
    }
    Ok(NodeConfig {
        instance_id: raw.instance_id,
        network_interface_id: raw.network_interface_id,
    })
}

/// `[daemon]`: absolute paths (the daemon's working directory is not the operator's).
pub(super) fn daemon(raw: RawDaemon) -> Result<DaemonConfig, Invalid> {
    let control_socket = raw.control_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
    if !control_socket.is_absolute() {
        return Err(invalid("daemon.control_socket", "must be an absolute path"));
    }
    let state_dir = raw.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if !state_dir.is_absolute() {
        return Err(invalid("daemon.state_dir", "must be an absolute path"));
    }
    Ok(DaemonConfig { control_socket, state_dir })
}

/// A file without resources is almost certainly a mistake (a section header misspelt as
/// `[eip]`), and a daemon with nothing to manage would still take part in elections.
pub(super) fn some_resource(eips: &[RawEip], vips: &[RawVip], secondary: &[RawSecondaryIp], dns: &[RawDns]) -> Result<(), Invalid> {
    if eips.is_empty() && vips.is_empty() && secondary.is_empty() && dns.is_empty() {
        return Err(invalid(
            "eip",
            "no [[eip]], [[vip]], [[secondary_ip]] or [[dns]] resource is configured: nothing to manage",
        ));
    }
    Ok(())
}

/// `names` collects resource names across `[[eip]]` and `[[vip]]`, which share one namespace.
pub(super) fn eips(raw: Vec<RawEip>, names: &mut BTreeSet<String>) -> Result<Vec<EipConfig>, Invalid> {
    let mut allocations = BTreeSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(index, e)| eip(index, e, names, &mut allocations))
        .collect()
}

fn eip(index: usize, e: RawEip, names: &mut BTreeSet<String>, allocations: &mut BTreeSet<String>) -> Result<EipConfig, Invalid> {
    let key = |field: &str| format!("eip[{index}].{field}");
    check_name(&e.name).map_err(|m| invalid(key("name"), m))?;
    if !names.insert(e.name.clone()) {
        return Err(invalid(key("name"), format!("resource name `{}` is used twice", e.name)));
    }
    if !looks_like_aws_id(&e.allocation_id, "eipalloc-") {
        return Err(invalid(
            key("allocation_id"),
            format!("`{}` is not an allocation id like \"eipalloc-0123456789abcdef0\"", e.allocation_id),
        ));
    }
    if !allocations.insert(e.allocation_id.clone()) {
        return Err(invalid(
            key("allocation_id"),
            format!("`{}` is already managed by another [[eip]]", e.allocation_id),
        ));
    }
    let private_ip = match e.private_ip {
        None => None,
        Some(text) => Some(
            text.parse::<Ipv4Addr>()
                .map_err(|_| invalid(key("private_ip"), format!("`{text}` is not an IPv4 address")))?,
        ),
    };
    check_prefer(&e.prefer).map_err(|m| invalid(key("prefer"), m))?;
    if let Some(g) = &e.group {
        check_name(g).map_err(|m| invalid(key("group"), m))?;
    }
    Ok(EipConfig {
        name: e.name,
        allocation_id: e.allocation_id,
        private_ip,
        prefer: e.prefer,
        group: e.group,
    })
}

/// `names` already holds the `[[eip]]` names.
pub(super) fn vips(raw: Vec<RawVip>, names: &mut BTreeSet<String>, role: Option<&str>) -> Result<Vec<VipConfig>, Invalid> {
    let mut addresses = BTreeSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(index, v)| vip(index, v, names, &mut addresses, role))
        .collect()
}

/// An IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/NAME`: a typo here would only show at
/// the first failover, as a refused AssumeRole.
fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(format!("`{arn}` is not an IAM role ARN like \"arn:aws:iam::123456789012:role/route-tables\""))
    }
}

fn vip(
    index: usize,
    v: RawVip,
    names: &mut BTreeSet<String>,
    addresses: &mut BTreeSet<IpAddr>,
    role: Option<&str>,
) -> Result<VipConfig, Invalid> {
    let key = |field: &str| format!("vip[{index}].{field}");
    check_name(&v.name).map_err(|m| invalid(key("name"), m))?;
    if !names.insert(v.name.clone()) {
        return Err(invalid(key("name"), format!("resource name `{}` is used twice", v.name)));
    }
    let address: IpAddr = v
        .address
        .parse()
        .map_err(|_| invalid(key("address"), format!("`{}` is not an IPv4 or IPv6 address", v.address)))?;
    let unroutable = match address {
        IpAddr::V4(a) => a.is_broadcast(),
        // Link-local addresses never leave their link, and a mapped IPv4 address is an IPv4
        // address written another way.
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80 || a.to_ipv4_mapped().is_some(),
    };
    if address.is_unspecified() || address.is_loopback() || address.is_multicast() || unroutable {
        return Err(invalid(key("address"), format!("{address} cannot be a floating address")));
    }
    if address.is_ipv6() && v.label.is_some() {
        return Err(invalid(key("label"), "Linux keeps address labels for IPv4 addresses only; remove it for an IPv6 VIP"));
    }
    if !addresses.insert(address) {
        return Err(invalid(key("address"), format!("{address} is already managed by another [[vip]]")));
    }
    let discover = match v.route_table_tag {
        None => None,
        Some(tag) => {
            let (k, val) = tag
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| invalid(key("route_table_tag"), format!("`{tag}` is not Key=Value")))?;
            if let Some(vpc) = &v.vpc_id {
                if !looks_like_aws_id(vpc, "vpc-") {
                    return Err(invalid(key("vpc_id"), format!("`{vpc}` is not a VPC id like \"vpc-0123456789abcdef0\"")));
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
        return Err(invalid(key("vpc_id"), "only used with route_table_tag"));
    }
    if v.route_tables.is_empty() && discover.is_none() {
        return Err(invalid(
            key("route_tables"),
            "list at least one route table id, or set route_table_tag (Key=Value) to find them",
        ));
    }
    let mut tables = BTreeSet::new();
    for t in &v.route_tables {
        if !looks_like_aws_id(t, "rtb-") {
            return Err(invalid(
                key("route_tables"),
                format!("`{t}` is not a route table id like \"rtb-0123456789abcdef0\""),
            ));
        }
        if !tables.insert(t.clone()) {
            return Err(invalid(key("route_tables"), format!("`{t}` is listed twice")));
        }
    }
    let interface = local_side(v.interface, v.label.as_deref(), &key)?;
    check_prefer(&v.prefer).map_err(|m| invalid(key("prefer"), m))?;
    if let Some(g) = &v.group {
        check_name(g).map_err(|m| invalid(key("group"), m))?;
    }
    if let Some(own) = &v.route_table_role {
        check_role_arn(own).map_err(|m| invalid(key("route_table_role"), m))?;
    }
    Ok(VipConfig {
        name: v.name,
        address,
        route_tables: v.route_tables,
        discover,
        create_route: v.create_route,
        route_table_role: v.route_table_role.or_else(|| role.map(str::to_owned)),
        interface,
        label: v.label,
        prefer: v.prefer,
        group: v.group,
    })
}

/// Where the holder puts a floating address: a Linux interface name, and a label that Linux
/// accepts for it (it must start with the interface's name).
fn local_side(interface: Option<String>, label: Option<&str>, key: &dyn Fn(&str) -> String) -> Result<String, Invalid> {
    let interface = interface.unwrap_or_else(|| "eth0".to_owned());
    // Linux interface names: at most 15 bytes, no '/' or whitespace.
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ', ':']) {
        return Err(invalid(key("interface"), format!("`{interface}` is not a network interface name")));
    }
    if let Some(label) = label {
        if !label.starts_with(&interface) || label.len() > 15 {
            return Err(invalid(
                key("label"),
                format!("`{label}` must start with the interface name `{interface}` and be at most 15 characters"),
            ));
        }
    }
    Ok(interface)
}

/// `names` already holds the `[[eip]]` and `[[vip]]` names; `vips` are the VIPs, whose
/// addresses a secondary IP may not repeat.
pub(super) fn secondary_ips(
    raw: Vec<RawSecondaryIp>,
    names: &mut BTreeSet<String>,
    vips: &[VipConfig],
) -> Result<Vec<SecondaryIpConfig>, Invalid> {
    let mut addresses: BTreeSet<IpAddr> = vips.iter().map(|v| v.address).collect();
    raw.into_iter()
        .enumerate()
        .map(|(index, s)| secondary_ip(index, s, names, &mut addresses))
        .collect()
}

fn secondary_ip(
    index: usize,
    s: RawSecondaryIp,
    names: &mut BTreeSet<String>,
    addresses: &mut BTreeSet<IpAddr>,
) -> Result<SecondaryIpConfig, Invalid> {
    let key = |field: &str| format!("secondary_ip[{index}].{field}");
    check_name(&s.name).map_err(|m| invalid(key("name"), m))?;
    if !names.insert(s.name.clone()) {
        return Err(invalid(key("name"), format!("resource name `{}` is used twice", s.name)));
    }
    let address: IpAddr = s
        .address
        .parse()
        .map_err(|_| invalid(key("address"), format!("`{}` is not an IPv4 or IPv6 address", s.address)))?;
    match address {
        // EC2 assigns private IPv4 addresses only: anything else can never be on an ENI.
        IpAddr::V4(a) if !a.is_private() => {
            return Err(invalid(
                key("address"),
                format!("{a} is not a private address (10/8, 172.16/12 or 192.168/16), so EC2 cannot assign it"),
            ))
        }
        IpAddr::V6(a)
            if a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some() =>
        {
            return Err(invalid(key("address"), format!("{a} is not an address of a subnet's IPv6 range")))
        }
        IpAddr::V6(_) if s.label.is_some() => {
            return Err(invalid(key("label"), "Linux keeps address labels for IPv4 addresses only; remove it for an IPv6 address"))
        }
        _ => {}
    }
    if !addresses.insert(address) {
        return Err(invalid(key("address"), format!("{address} is already managed by another [[vip]] or [[secondary_ip]]")));
    }
    let interface = local_side(s.interface, s.label.as_deref(), &key)?;
    check_prefer(&s.prefer).map_err(|m| invalid(key("prefer"), m))?;
    if let Some(g) = &s.group {
        check_name(g).map_err(|m| invalid(key("group"), m))?;
    }
    Ok(SecondaryIpConfig {
        name: s.name,
        address,
        interface,
        label: s.label,
        prefer: s.prefer,
        group: s.group,
    })
}

/// `names` already holds every other resource's name; a record's `value` may name an address
/// of those kinds, which must then be in the record's group (so they move together) and of
/// the record's family.
pub(super) fn dns(
    raw: Vec<RawDns>,
    names: &mut BTreeSet<String>,
    eips: &[EipConfig],
    vips: &[VipConfig],
    secondary: &[SecondaryIpConfig],
) -> Result<Vec<DnsConfig>, Invalid> {
    let mut records = BTreeSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(index, d)| dns_record(index, d, names, &mut records, eips, vips, secondary))
        .collect()
}

/// Route 53 TTLs: up to 2147483647 seconds; anything over a day is surely a typo for a
/// floating address, whose clients must follow a move quickly.
const DNS_TTL_MAX: i64 = 86_400;

fn dns_record(
    index: usize,
    d: RawDns,
    names: &mut BTreeSet<String>,
    records: &mut BTreeSet<(String, String, &'static str)>,
    eips: &[EipConfig],
    vips: &[VipConfig],
    secondary: &[SecondaryIpConfig],
) -> Result<DnsConfig, Invalid> {
    let key = |field: &str| format!("dns[{index}].{field}");
    check_name(&d.name).map_err(|m| invalid(key("name"), m))?;
    if !names.insert(d.name.clone()) {
        return Err(invalid(key("name"), format!("resource name `{}` is used twice", d.name)));
    }
    let zone = d.hosted_zone_id.trim_start_matches("/hostedzone/").to_owned();
    // Route 53's ids are upper-case letters and digits ("Z0123..."); a lower-case or dotted
    // value is a zone name pasted into the wrong key.
    if !(zone.len() >= 2 && zone.len() <= 32 && zone.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())) {
        return Err(invalid(
            key("hosted_zone_id"),
            format!("`{}` is not a hosted zone id like \"Z0123456789ABCDEFGHIJ\"", d.hosted_zone_id),
        ));
    }
    let record = check_record_name(&d.record).map_err(|m| invalid(key("record"), m))?;
    let record_type = match d.record_type.as_deref().unwrap_or("A") {
        "A" | "a" => RecordType::A,
        "AAAA" | "aaaa" => RecordType::Aaaa,
        other => return Err(invalid(key("type"), format!("`{other}` is not A or AAAA"))),
    };
    let ttl = d.ttl.unwrap_or(10);
    if !(0..=DNS_TTL_MAX).contains(&ttl) {
        return Err(invalid(key("ttl"), format!("must be 0 to {DNS_TTL_MAX} seconds (clients cache the old holder this long)")));
    }
    let ttl = u32::try_from(ttl).map_err(|_| invalid(key("ttl"), "out of range"))?;
    if !records.insert((zone.clone(), record.clone(), record_type.as_str())) {
        return Err(invalid(key("record"), format!("{record} {} is already managed by another [[dns]]", record_type.as_str())));
    }
    let text = d.value.unwrap_or_else(|| "private".to_owned());
    let group_of = |g: &Option<String>, n: &str| g.clone().unwrap_or_else(|| n.to_owned());
    let own_unit = group_of(&d.group, &d.name);
    let same_unit = |kind: &str, other: &str, unit: String| {
        if unit == own_unit {
            Ok(())
        } else {
            Err(invalid(
                key("value"),
                format!("{kind} `{other}` is not in this record's group: set the same `group` on both, so they move together"),
            ))
        }
    };
    let (value, family_v6) = match text.split_once(':') {
        None if text == "private" => (DnsValue::Private, false),
        None if text == "public" => (DnsValue::Public, false),
        Some(("eip", n)) => {
            let e = eips.iter().find(|e| e.name == n).ok_or_else(|| invalid(key("value"), format!("no [[eip]] named `{n}`")))?;
            same_unit("[[eip]]", n, group_of(&e.group, &e.name))?;
            (DnsValue::Eip(n.to_owned()), false)
        }
        Some(("vip", n)) => {
            let v = vips.iter().find(|v| v.name == n).ok_or_else(|| invalid(key("value"), format!("no [[vip]] named `{n}`")))?;
            same_unit("[[vip]]", n, group_of(&v.group, &v.name))?;
            (DnsValue::Vip(n.to_owned()), v.address.is_ipv6())
        }
        Some(("secondary_ip", n)) => {
            let s = secondary
                .iter()
                .find(|s| s.name == n)
                .ok_or_else(|| invalid(key("value"), format!("no [[secondary_ip]] named `{n}`")))?;
            same_unit("[[secondary_ip]]", n, group_of(&s.group, &s.name))?;
            (DnsValue::SecondaryIp(n.to_owned()), false)
        }
        _ => {
            return Err(invalid(
                key("value"),
                format!("`{text}` is not private, public, eip:NAME, vip:NAME or secondary_ip:NAME"),
            ))
        }
    };
    match (record_type, family_v6) {
        (RecordType::A, true) => {
            return Err(invalid(key("type"), format!("`{value}` is an IPv6 address: the record must be AAAA")))
        }
        (RecordType::Aaaa, false) => {
            return Err(invalid(key("type"), format!("`{value}` is an IPv4 address: the record must be A")))
        }
        _ => {}
    }
    check_prefer(&d.prefer).map_err(|m| invalid(key("prefer"), m))?;
    if let Some(g) = &d.group {
        check_name(g).map_err(|m| invalid(key("group"), m))?;
    }
    Ok(DnsConfig {
        name: d.name,
        hosted_zone_id: zone,
        record,
        record_type,
        ttl,
        value,
        delete_on_release: d.delete_on_release,
        prefer: d.prefer,
        group: d.group,
    })
}

/// A DNS name Route 53 accepts for a record: labels of letters, digits, '-' and '_' (a leading
/// `*.` for a wildcard), at most 63 bytes each and 255 in all; returned in lower case with its
/// trailing dot, the way Route 53 lists it.
fn check_record_name(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_suffix('.').unwrap_or(&lower);
    if bare.is_empty() || bare.len() > 253 {
        return Err(format!("`{name}` is not a DNS name like \"db.example.com.\""));
    }
    for (i, label) in bare.split('.').enumerate() {
        let wildcard = i == 0 && label == "*";
        if !wildcard
            && (label.is_empty()
                || label.len() > 63
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!("`{name}`: `{label}` is not a DNS label (letters, digits, '-', '_', at most 63)"));
        }
    }
    if !bare.contains('.') {
        return Err(format!("`{name}` has no zone part; write the full name, e.g. \"db.example.com.\""));
    }
    Ok(format!("{bare}."))
}

/// `[[health]]`: unique names, exactly one of `command`/`systemd_unit`, bounded timing.
pub(super) fn health(raw: Vec<RawHealth>) -> Result<Vec<HealthConfig>, Invalid> {
    let mut seen = BTreeSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(index, h)| health_check(index, h, &mut seen))
        .collect()
}

fn health_check(index: usize, h: RawHealth, seen: &mut BTreeSet<String>) -> Result<HealthConfig, Invalid> {
    let key = |field: &str| format!("health[{index}].{field}");
    check_name(&h.name).map_err(|m| invalid(key("name"), m))?;
    if !seen.insert(h.name.clone()) {
        return Err(invalid(key("name"), format!("health check `{}` is defined twice", h.name)));
    }
    let check = match (h.command, h.systemd_unit) {
        (Some(c), None) if !c.trim().is_empty() => HealthCheck::Command(c),
        (None, Some(u)) if !u.trim().is_empty() && !u.contains(char::is_whitespace) => HealthCheck::SystemdUnit(u),
        (Some(_), Some(_)) => return Err(invalid(key("command"), "set either `command` or `systemd_unit`, not both")),
        _ => {
            return Err(invalid(
                key("command"),
                "set `command` (run by /bin/sh, exit 0 = healthy) or `systemd_unit` (must be active)",
            ))
        }
    };
    let interval = duration(
        &key("interval"),
        h.interval,
        Duration::from_secs(5),
        Low::At(Duration::from_millis(100)),
        Duration::from_secs(3600),
        "a node that turned unhealthy keeps its addresses up to this long",
    )?;
    let timeout = duration(
        &key("timeout"),
        h.timeout,
        Duration::from_secs(3),
        Low::Positive,
        Duration::from_secs(600),
        "a hung check delays the verdict this long",
    )?;
    // A timeout far beyond the interval means checks pile up behind a hung one.
    if timeout > interval.max(Duration::from_secs(1)) * 10 {
        return Err(invalid(key("timeout"), "must be more than 0 and at most 10 intervals"));
    }
    let rise = h.rise.unwrap_or(2);
    let fall = h.fall.unwrap_or(2);
    if rise == 0 || rise > 100 {
        return Err(invalid(key("rise"), "must be 1 to 100"));
    }
    if fall == 0 || fall > 100 {
        return Err(invalid(key("fall"), "must be 1 to 100"));
    }
    Ok(HealthConfig {
        name: h.name,
        check,
        interval,
        timeout,
        rise,
        fall,
    })
}

/// `[[notify]]`: a command, a bounded timeout and known event names.
pub(super) fn notify(raw: Vec<RawNotify>) -> Result<Vec<NotifyConfig>, Invalid> {
    raw.into_iter().enumerate().map(|(index, n)| hook(index, n)).collect()
}

fn hook(index: usize, n: RawNotify) -> Result<NotifyConfig, Invalid> {
    let key = |field: &str| format!("notify[{index}].{field}");
    check_name(&n.name).map_err(|m| invalid(key("name"), m))?;
    if n.command.trim().is_empty() {
        return Err(invalid(key("command"), "must not be empty"));
    }
    let timeout = duration(
        &key("timeout"),
        n.timeout,
        Duration::from_secs(10),
        Low::Positive,
        Duration::from_secs(600),
        "",
    )?;
    let events = n.events.unwrap_or_else(|| vec!["acquire".into(), "release".into(), "fault".into()]);
    if let Some(bad) = events.iter().find(|e| !matches!(e.as_str(), "acquire" | "release" | "fault" | "drain" | "undrain" | "fence")) {
        return Err(invalid(key("events"), format!("`{bad}` is not one of acquire, release, fault, drain, undrain, fence")));
    }
    Ok(NotifyConfig {
        name: n.name,
        command: n.command,
        timeout,
        events,
    })
}

/// `[metrics]`: the listen address, if any.
pub(super) fn metrics(raw: RawMetrics) -> Result<Option<SocketAddr>, Invalid> {
    raw.listen
        .map(|text| {
            text.parse::<SocketAddr>()
                .map_err(|_| invalid("metrics.listen", format!("`{text}` is not an address:port like \"127.0.0.1:9464\"")))
        })
        .transpose()
}

/// `[fencing]`: off unless enabled; bounded waits.
pub(super) fn fencing(raw: RawFencing) -> Result<FencingConfig, Invalid> {
    let timeout = duration(
        "fencing.timeout",
        raw.timeout,
        Duration::from_secs(60),
        Low::At(Duration::from_secs(1)),
        Duration::from_secs(600),
        "the address stays where it is while the successor waits for the old instance to stop",
    )?;
    let delay = duration(
        "fencing.delay",
        raw.delay,
        Duration::from_secs(5),
        Low::Zero,
        Duration::from_secs(120),
        "a two-node failover on the higher node id waits this long",
    )?;
    Ok(FencingConfig {
        stop_instance: raw.stop_instance.unwrap_or(false),
        timeout,
        delay,
    })
}

/// `[aws_events]`: off unless enabled; bounded timers; only event kinds this program knows.
pub(super) fn aws_events(raw: RawAwsEvents) -> Result<AwsEventsConfig, Invalid> {
    use crate::core::events::EventKind;
    let poll_interval = duration(
        "aws_events.poll_interval",
        raw.poll_interval,
        Duration::from_secs(30),
        Low::At(Duration::from_secs(1)),
        Duration::from_secs(600),
        "a Spot notice comes two minutes ahead",
    )?;
    let drain_before = duration(
        "aws_events.drain_before",
        raw.drain_before,
        Duration::from_secs(600),
        Low::Positive,
        Duration::from_secs(7 * 24 * 3600),
        "EC2 schedules events up to weeks ahead; the node serves nothing while drained",
    )?;
    let window = duration(
        "aws_events.window",
        raw.window,
        Duration::from_secs(1800),
        Low::Positive,
        Duration::from_secs(24 * 3600),
        "an event without an announced end keeps the node drained this long",
    )?;
    let events = match raw.events {
        None => EventKind::ALL.into_iter().collect(),
        Some(names) => {
            let mut kinds = BTreeSet::new();
            for (i, name) in names.iter().enumerate() {
                let kind = EventKind::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    invalid(format!("aws_events.events[{i}]"), format!("`{name}` is not one of {}", known.join(", ")))
                })?;
                kinds.insert(kind);
            }
            if kinds.is_empty() {
                return Err(invalid("aws_events.events", "lists no event; leave it out for all, or set enabled = false"));
            }
            kinds
        }
    };
    Ok(AwsEventsConfig {
        enabled: raw.enabled.unwrap_or(false),
        poll_interval,
        drain_before,
        window,
        events,
    })
}

/// Groups resources into placement units, in a stable order (by unit name). A group's
/// members must agree on `prefer`, and a group may not share its name with a resource
/// outside it: either would leave the cluster unable to say where the unit belongs.
pub(super) fn units(
    cluster_prefer: &[u32],
    eips: &[EipConfig],
    vips: &[VipConfig],
    secondary: &[SecondaryIpConfig],
    dns: &[DnsConfig],
) -> Result<Vec<Unit>, Invalid> {
    let preference = |own: &[u32]| if own.is_empty() { cluster_prefer.to_vec() } else { own.to_vec() };
    let entries: Vec<(String, &String, &Option<String>, Vec<u32>)> = eips
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("eip[{i}]"), &e.name, &e.group, preference(&e.prefer)))
        .chain(
            vips.iter()
                .enumerate()
                .map(|(i, v)| (format!("vip[{i}]"), &v.name, &v.group, preference(&v.prefer))),
        )
        .chain(
            secondary
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("secondary_ip[{i}]"), &s.name, &s.group, preference(&s.prefer))),
        )
        .chain(
            dns.iter()
                .enumerate()
                .map(|(i, d)| (format!("dns[{i}]"), &d.name, &d.group, preference(&d.prefer))),
        )
        .collect();
    let ungrouped = |name: &str| entries.iter().any(|(_, n, g, _)| g.is_none() && n.as_str() == name);
    let mut units: BTreeMap<String, Unit> = BTreeMap::new();
    for (key, name, group, prefer) in entries.iter().cloned() {
        let unit_name = group.clone().unwrap_or_else(|| name.clone());
        let unit = units.entry(unit_name.clone()).or_insert_with(|| Unit {
            name: unit_name.clone(),
            prefer: prefer.clone(),
            resources: Vec::new(),
        });
        if unit.prefer != prefer {
            return Err(invalid(
                format!("{key}.prefer"),
                format!("resources of group `{unit_name}` must have the same preference order"),
            ));
        }
        if group.is_none() && !unit.resources.is_empty() || group.is_some() && ungrouped(&unit_name) {
            return Err(invalid(
                format!("{key}.group"),
                format!("`{unit_name}` names both a group and an ungrouped resource"),
            ));
        }
        unit.resources.push(name.clone());
    }
    Ok(units.into_values().collect())
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

/// Node ids are corosync's; 0 is reserved there and a repeated id would be a typo.
fn check_prefer(prefer: &[u32]) -> Result<(), String> {
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

/// Catches values pasted into the wrong key (an IP where an allocation id belongs) before
/// the first EC2 call fails with a less helpful message.
fn looks_like_aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}
