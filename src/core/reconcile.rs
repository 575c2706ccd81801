//! What the elected holder does about one Elastic IP, given what EC2 says right now.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Where this node wants its addresses to point.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// This node's instance: the target when no interface is known, and the name in ownership tags.
    pub instance_id: String,
    /// Associating by ENI is exact even on multi-ENI instances; without it we use the instance.
    pub network_interface_id: Option<String>,
}

/// One address as DescribeAddresses reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ObservedEip {
    /// The address's allocation id, as configured.
    pub allocation_id: String,
    /// The public IP the allocation stands for.
    pub public_ip: Option<String>,
    /// Set while the address is associated with anything.
    pub association_id: Option<String>,
    /// The instance the address is associated with now.
    pub instance_id: Option<String>,
    /// The network interface the address is associated with now.
    pub network_interface_id: Option<String>,
    /// The private IP on that interface the address maps to.
    pub private_ip: Option<String>,
    /// The ownership record the last holder wrote on the address (tags).
    #[serde(default)]
    pub owner: Option<Ownership>,
}

/// Who took the address last, and with which epoch. Written as tags on the address by every
/// holder after it took it, so that a holder in another partition (a split two-node cluster,
/// where both halves keep quorum) can see it lost the address deliberately and must not take
/// it back: one move, no ping-pong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ownership {
    /// The instance of the holder that took the address.
    pub instance_id: String,
    /// Grows by one with every deliberate take-over; a higher epoch wins.
    pub epoch: u64,
}

/// Tag on the address naming the instance of the holder that took it last.
pub const OWNER_TAG: &str = "corosync-eip:holder";
/// Tag on the address carrying that holder's ownership epoch.
pub const EPOCH_TAG: &str = "corosync-eip:epoch";

impl Ownership {
    /// From the address's tags; None when absent or malformed (then nobody yields to it).
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Ownership> {
        let mut holder = None;
        let mut epoch = None;
        for (k, v) in tags {
            match k {
                OWNER_TAG if v.starts_with("i-") => holder = Some(v.to_owned()),
                EPOCH_TAG => epoch = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        Some(Ownership {
            instance_id: holder?,
            epoch: epoch?,
        })
    }
}

/// The epoch a new holder writes: one above whatever the address carries.
pub fn next_epoch(observed: &ObservedEip) -> u64 {
    observed.owner.as_ref().map_or(0, |o| o.epoch).saturating_add(1)
}

/// What the holder makes of an EIP its monitor read: keep, repair or leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftVerdict {
    /// The address points at us.
    Ours,
    /// Someone moved it without a newer ownership record (an operator, a script): put it back.
    Repair,
    /// A holder elected elsewhere took it after us: leave it there.
    Yield {
        /// The instance that took the address, as its ownership tag names it.
        to: String,
        /// The epoch it wrote: newer than ours, or the same with a lower instance id.
        epoch: u64,
    },
}

/// Whether a record of `their_epoch` by `them` outbids ours (`our_epoch` by `us`): a higher
/// epoch, or the same with a lower id. Two holders that read the same record write the same
/// epoch; the lower id keeps the address, so exactly one of them yields.
fn outbids(their_epoch: u64, them: &str, our_epoch: u64, us: &str) -> bool {
    them != us && (their_epoch > our_epoch || (their_epoch == our_epoch && them < us))
}

/// Tag key prefix of a VIP's ownership record on each of its route tables; the key ends with
/// the route's destination, e.g. `corosync-eip:route:172.31.255.10/32`.
pub const ROUTE_RECORD_PREFIX: &str = "corosync-eip:route:";
/// Tag key prefix of a secondary IP's ownership record on its holder's ENI; the key ends with
/// the address, e.g. `corosync-eip:ip:10.0.1.50`.
pub const ADDRESS_RECORD_PREFIX: &str = "corosync-eip:ip:";

/// The ownership record of an address that lives on resources other addresses share (a VIP's
/// route tables, the ENI a secondary IP is assigned to): one tag per address, valued
/// `<holder's ENI>/<epoch>`. It does for these kinds what `Ownership` does for an EIP: a holder
/// elected in another partition (a split two-node cluster) sees that it lost the address to a
/// newer holder and yields instead of taking it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterfaceOwnership {
    /// The ENI of the holder that took the address.
    pub network_interface_id: String,
    /// Grows by one with every deliberate take-over; a higher epoch wins.
    pub epoch: u64,
}

impl InterfaceOwnership {
    /// The tag value, `eni-…/7`.
    pub fn tag_value(&self) -> String {
        format!("{}/{}", self.network_interface_id, self.epoch)
    }

    /// From a tag value; None when malformed (then nobody yields to it).
    pub fn from_tag_value(value: &str) -> Option<InterfaceOwnership> {
        let (eni, epoch) = value.rsplit_once('/')?;
        if !eni.starts_with("eni-") {
            return None;
        }
        Some(InterfaceOwnership {
            network_interface_id: eni.to_owned(),
            epoch: epoch.parse().ok()?,
        })
    }
}

/// The tag key of a VIP's record (`destination` as the VIP's route spells it).
pub fn route_record_key(destination: &str) -> String {
    format!("{ROUTE_RECORD_PREFIX}{}", canonical_destination(destination))
}

/// The tag key of a secondary IP's record.
pub fn address_record_key(address: std::net::IpAddr) -> String {
    format!("{ADDRESS_RECORD_PREFIX}{address}")
}

/// The ownership records among a resource's tags, by their key. Malformed values are left out.
pub fn records_from_tags<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> std::collections::BTreeMap<String, InterfaceOwnership> {
    tags.into_iter()
        .filter(|(k, _)| k.starts_with(ROUTE_RECORD_PREFIX) || k.starts_with(ADDRESS_RECORD_PREFIX))
        .filter_map(|(k, v)| Some((k.to_owned(), InterfaceOwnership::from_tag_value(v)?)))
        .collect()
}

/// The newest of `records` (highest epoch; the lower ENI id on a tie).
fn newest<'a>(records: impl IntoIterator<Item = &'a InterfaceOwnership>) -> Option<&'a InterfaceOwnership> {
    records.into_iter().max_by(|a, b| a.epoch.cmp(&b.epoch).then_with(|| b.network_interface_id.cmp(&a.network_interface_id)))
}

/// The newest ownership record of `destination` in the VIP's tables.
pub fn route_record<'a>(tables: &'a [ObservedRouteTable], route_table_ids: &[String], destination: &str) -> Option<&'a InterfaceOwnership> {
    let key = route_record_key(destination);
    newest(
        tables
            .iter()
            .filter(|t| route_table_ids.contains(&t.route_table_id))
            .filter_map(|t| t.records.get(&key)),
    )
}

/// The epoch a new holder of a VIP writes: one above the newest record in its tables.
pub fn next_route_epoch(tables: &[ObservedRouteTable], route_table_ids: &[String], destination: &str) -> u64 {
    route_record(tables, route_table_ids, destination).map_or(0, |r| r.epoch).saturating_add(1)
}

/// What the holder of a VIP makes of its tables: ours when every table routes the address to
/// `eni`; a yield when a table routes it to the ENI of a newer record; otherwise a repair.
pub fn judge_route(
    tables: &[ObservedRouteTable],
    route_table_ids: &[String],
    destination: &str,
    eni: &str,
    our_epoch: Option<u64>,
) -> DriftVerdict {
    if all_routes_point_at(tables, route_table_ids, destination, eni) {
        return DriftVerdict::Ours;
    }
    match (route_record(tables, route_table_ids, destination), our_epoch) {
        (Some(r), Some(ours))
            if outbids(r.epoch, &r.network_interface_id, ours, eni)
                && tables
                    .iter()
                    .filter(|t| route_table_ids.contains(&t.route_table_id))
                    .any(|t| route_points_at(t, destination, &r.network_interface_id)) =>
        {
            DriftVerdict::Yield {
                to: r.network_interface_id.clone(),
                epoch: r.epoch,
            }
        }
        _ => DriftVerdict::Repair,
    }
}

/// The newest ownership record of `address` on an ENI that carries it and that the record
/// names (a record left on an ENI the address has since left does not count).
pub fn address_record(interfaces: &[ObservedInterface], address: std::net::IpAddr) -> Option<&InterfaceOwnership> {
    let key = address_record_key(address);
    let carriers = interfaces_with(interfaces, address);
    newest(
        interfaces
            .iter()
            .filter(|i| carriers.contains(&i.network_interface_id))
            .filter_map(|i| i.records.get(&key).filter(|r| r.network_interface_id == i.network_interface_id)),
    )
}

/// The epoch a new holder of a secondary IP writes: one above the record of the ENI that
/// carries the address.
pub fn next_address_epoch(interfaces: &[ObservedInterface], address: std::net::IpAddr) -> u64 {
    address_record(interfaces, address).map_or(0, |r| r.epoch).saturating_add(1)
}

/// What the holder of a secondary IP makes of the ENIs that carry it: ours when only `eni`
/// does; a yield when the ENI that carries it holds a newer record for it; otherwise a repair.
pub fn judge_address(interfaces: &[ObservedInterface], address: std::net::IpAddr, eni: &str, our_epoch: Option<u64>) -> DriftVerdict {
    if secondary_points_at(interfaces, address, eni) {
        return DriftVerdict::Ours;
    }
    match (address_record(interfaces, address), our_epoch) {
        (Some(r), Some(ours)) if outbids(r.epoch, &r.network_interface_id, ours, eni) => DriftVerdict::Yield {
            to: r.network_interface_id.clone(),
            epoch: r.epoch,
        },
        _ => DriftVerdict::Repair,
    }
}

/// What the holder does when its monitor reads the address. `our_epoch` is the epoch we wrote.
pub fn judge_eip(observed: &ObservedEip, me: &Identity, private_ip: Option<Ipv4Addr>, our_epoch: Option<u64>) -> DriftVerdict {
    if points_at(observed, me, private_ip) {
        return DriftVerdict::Ours;
    }
    match (&observed.owner, our_epoch) {
        // Two holders that read the same record write the same epoch: the lower instance id
        // keeps the address, so exactly one of them yields.
        (Some(owner), Some(ours))
            if outbids(owner.epoch, &owner.instance_id, ours, &me.instance_id)
                && observed.instance_id.as_deref() == Some(owner.instance_id.as_str()) =>
        {
            DriftVerdict::Yield {
                to: owner.instance_id.clone(),
                epoch: owner.epoch,
            }
        }
        _ => DriftVerdict::Repair,
    }
}

/// What the elected holder does to make an EIP point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EipAction {
    /// EC2 already points the address at us: nothing to call.
    AlreadyOurs,
    /// Reassociate atomically (AllowReassociation=true). `drift` is set when the address was
    /// attached to someone else, as opposed to attached to nothing.
    Associate {
        /// It was taken from another target, not from nothing: logged as such.
        drift: bool,
    },
}

/// One route table as DescribeRouteTables reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ObservedRouteTable {
    /// The table's id, as configured or discovered.
    pub route_table_id: String,
    /// Every route of the table, as EC2 returned it.
    pub routes: Vec<ObservedRoute>,
    /// The VIPs' ownership records on the table, by tag key (see `route_record_key`).
    #[serde(default)]
    pub records: std::collections::BTreeMap<String, InterfaceOwnership>,
}

/// One route of a table, with the target EC2 reports for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ObservedRoute {
    /// The destination CIDR (a VIP's is its address as a /32).
    pub destination: String,
    /// The network interface the route sends traffic to.
    pub network_interface_id: Option<String>,
    /// The instance the route sends traffic to, as EC2 reports it.
    pub instance_id: Option<String>,
    /// The target is gone (e.g. the ENI was deleted): traffic is dropped.
    pub blackhole: bool,
}

/// What the holder of a VIP does to one route table to make it route the address to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// The route already sends the address to our interface: nothing to call.
    AlreadyOurs,
    /// ReplaceRoute; `drift` when it pointed at another live target.
    Replace {
        /// The route pointed at another live target, not at a dead one.
        drift: bool,
    },
    /// The route does not exist: CreateRoute (only when allowed).
    Create,
    /// The route does not exist and creating it is not allowed.
    Missing,
    /// The route table itself was not returned.
    NoTable,
}

/// A route destination in one spelling, so that an IPv6 destination EC2 writes differently
/// (leading zeros, upper case) still compares equal to ours: the address as Rust prints it
/// (RFC 5952 for IPv6) and the prefix length. Anything unparsable stays as it is.
pub fn canonical_destination(destination: &str) -> String {
    let Some((address, len)) = destination.split_once('/') else { return destination.to_owned() };
    match (address.parse::<std::net::IpAddr>(), len.parse::<u8>()) {
        (Ok(address), Ok(len)) => format!("{address}/{len}"),
        _ => destination.to_owned(),
    }
}

/// `table` routes `destination` to `eni` (a blackholed route does not count).
pub fn route_points_at(table: &ObservedRouteTable, destination: &str, eni: &str) -> bool {
    table
        .routes
        .iter()
        .any(|r| r.destination == destination && !r.blackhole && r.network_interface_id.as_deref() == Some(eni))
}

/// Every one of `route_table_ids` was returned and routes `destination` to `eni`: what the
/// holder of a VIP verifies after its change and at every monitor interval.
pub fn all_routes_point_at(tables: &[ObservedRouteTable], route_table_ids: &[String], destination: &str, eni: &str) -> bool {
    route_table_ids
        .iter()
        .all(|id| tables.iter().any(|t| &t.route_table_id == id && route_points_at(t, destination, eni)))
}

/// Which call, if any, makes `table` route `destination` to `eni`.
pub fn decide_route(table: Option<&ObservedRouteTable>, destination: &str, eni: &str, create_route: bool) -> RouteAction {
    let Some(table) = table else { return RouteAction::NoTable };
    match table.routes.iter().find(|r| r.destination == destination) {
        Some(_) if route_points_at(table, destination, eni) => RouteAction::AlreadyOurs,
        Some(r) => RouteAction::Replace {
            drift: !r.blackhole && (r.network_interface_id.is_some() || r.instance_id.is_some()),
        },
        None if create_route => RouteAction::Create,
        None => RouteAction::Missing,
    }
}

/// EC2 points the address at us: our interface (or instance when we have none), and the
/// configured private IP if there is one.
pub fn points_at(observed: &ObservedEip, me: &Identity, private_ip: Option<Ipv4Addr>) -> bool {
    let target_ok = match &me.network_interface_id {
        Some(eni) => observed.network_interface_id.as_deref() == Some(eni.as_str()),
        None => observed.instance_id.as_deref() == Some(me.instance_id.as_str()),
    };
    let ip_ok = match private_ip {
        None => true,
        Some(want) => observed.private_ip.as_deref().and_then(|p| p.parse::<Ipv4Addr>().ok()) == Some(want),
    };
    target_ok && ip_ok
}

/// Which call, if any, makes the address point at us.
pub fn decide_eip(observed: &ObservedEip, me: &Identity, private_ip: Option<Ipv4Addr>) -> EipAction {
    if points_at(observed, me, private_ip) {
        EipAction::AlreadyOurs
    } else {
        EipAction::Associate {
            drift: observed.association_id.is_some()
                || observed.instance_id.is_some()
                || observed.network_interface_id.is_some(),
        }
    }
}

/// One network interface as DescribeNetworkInterfaces reported it: what a secondary IP's
/// holder needs to know where the address is.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ObservedInterface {
    /// The ENI's id.
    pub network_interface_id: String,
    /// The subnet the ENI sits in: a secondary IP can only move between ENIs of one subnet.
    pub subnet_id: Option<String>,
    /// The instance the ENI is attached to.
    pub instance_id: Option<String>,
    /// The ENI's primary private IPv4 address.
    pub primary_ip: Option<String>,
    /// Every secondary private IPv4 address assigned to the ENI.
    pub secondary_ips: Vec<String>,
    /// Every IPv6 address assigned to the ENI.
    #[serde(default)]
    pub ipv6: Vec<String>,
    /// The secondary IPs' ownership records on the ENI, by tag key (see `address_record_key`).
    #[serde(default)]
    pub records: std::collections::BTreeMap<String, InterfaceOwnership>,
}

/// The ENIs that carry `address` as a secondary IPv4 address or as an IPv6 address (exact
/// comparison of parsed addresses).
pub fn interfaces_with(interfaces: &[ObservedInterface], address: std::net::IpAddr) -> Vec<String> {
    let listed = |i: &ObservedInterface| if address.is_ipv4() { i.secondary_ips.clone() } else { i.ipv6.clone() };
    let mut found: Vec<String> = interfaces
        .iter()
        .filter(|i| listed(i).iter().any(|ip| ip.parse::<std::net::IpAddr>().ok() == Some(address)))
        .map(|i| i.network_interface_id.clone())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The ENI whose *primary* address is `address`: EC2 never moves a primary address, so a
/// secondary IP configured with one is a configuration error every node would meet.
pub fn primary_owner(interfaces: &[ObservedInterface], address: std::net::IpAddr) -> Option<String> {
    interfaces
        .iter()
        .find(|i| i.primary_ip.as_deref().and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) == Some(address))
        .map(|i| i.network_interface_id.clone())
}

/// What the holder of a secondary IP does to get the address onto its ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondaryAction {
    /// The address is on our ENI and on no other: nothing to call.
    AlreadyOurs,
    /// AssignPrivateIpAddresses with AllowReassignment; `from` names the ENIs it leaves.
    Assign {
        /// The ENIs that carried the address before (empty: it was unassigned).
        from: Vec<String>,
    },
    /// The address is another ENI's primary address: it can never move.
    Primary {
        /// The ENI whose primary address it is.
        of: String,
    },
}

/// The address is on `eni`, and only there: what the holder verifies after assigning and at
/// every monitor interval.
pub fn secondary_points_at(interfaces: &[ObservedInterface], address: std::net::IpAddr, eni: &str) -> bool {
    interfaces_with(interfaces, address) == [eni.to_owned()]
}

/// Which call, if any, puts `address` on `eni` alone.
pub fn decide_secondary(interfaces: &[ObservedInterface], address: std::net::IpAddr, eni: &str) -> SecondaryAction {
    if let Some(of) = primary_owner(interfaces, address) {
        return SecondaryAction::Primary { of };
    }
    if secondary_points_at(interfaces, address, eni) {
        return SecondaryAction::AlreadyOurs;
    }
    SecondaryAction::Assign {
        from: interfaces_with(interfaces, address).into_iter().filter(|i| i != eni).collect(),
    }
}

/// One Route 53 record set as ListResourceRecordSets reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ObservedRecord {
    /// The record's name, lower case, with its trailing dot.
    pub name: String,
    /// `A` or `AAAA`.
    pub record_type: String,
    /// Seconds resolvers may cache it.
    pub ttl: Option<i64>,
    /// Every value of the record, as Route 53 returned it.
    pub values: Vec<String>,
}

/// The record `name`/`record_type` among those read (names compared case-insensitively, with
/// or without the trailing dot).
pub fn find_record<'a>(records: &'a [ObservedRecord], name: &str, record_type: &str) -> Option<&'a ObservedRecord> {
    let bare = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    records
        .iter()
        .find(|r| bare(&r.name) == bare(name) && r.record_type.eq_ignore_ascii_case(record_type))
}

/// The record exists with exactly one value, `value` (compared as parsed addresses, never as
/// substrings), and the configured TTL: what the holder verifies after its UPSERT and at every
/// monitor interval.
pub fn record_points_at(record: Option<&ObservedRecord>, value: std::net::IpAddr, ttl: u32) -> bool {
    record.is_some_and(|r| {
        r.ttl == Some(i64::from(ttl))
            && r.values.len() == 1
            && r.values.iter().all(|v| v.parse::<std::net::IpAddr>().ok() == Some(value))
    })
}

/// First label of the TXT record that carries a Route 53 record's ownership record: the owner
/// of `db.example.com.` is `_corosync-eip.db.example.com.`. A child name, never the record's
/// own name, so a TXT record users keep at the service name is never touched; and Route 53
/// lists it right after the record, so one read finds both.
pub const RECORD_OWNER_LABEL: &str = "_corosync-eip";

/// The ownership record of a Route 53 record: the instance of the holder that pointed it,
/// the epoch it did so with, and the value it wrote. It does for records what the tags do for
/// the EC2 kinds: a holder elected in another partition (a split two-node cluster, where both
/// halves keep quorum) sees that a newer holder took the record and leaves it, where it would
/// otherwise take it back at every monitor interval. Written in the same change batch as the
/// record, so Route 53 applies both or neither.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordOwnership {
    /// The instance of the holder that pointed the record.
    pub instance_id: String,
    /// Grows by one with every deliberate take-over; a higher epoch wins.
    pub epoch: u64,
    /// The value that holder pointed the record at.
    pub value: std::net::IpAddr,
}

impl RecordOwnership {
    /// The TXT value as Route 53 takes it (a quoted string): `"i-…/7/10.0.1.5"`.
    pub fn txt_value(&self) -> String {
        format!("\"{}/{}/{}\"", self.instance_id, self.epoch, self.value)
    }

    /// From a TXT value as Route 53 lists it; None when malformed (then nobody yields to it).
    pub fn from_txt_value(text: &str) -> Option<RecordOwnership> {
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        let mut parts = inner.splitn(3, '/');
        let instance_id = parts.next().filter(|i| i.starts_with("i-") && i.len() > 2)?;
        let epoch = parts.next()?.parse().ok()?;
        let value = parts.next()?.parse().ok()?;
        Some(RecordOwnership {
            instance_id: instance_id.to_owned(),
            epoch,
            value,
        })
    }
}

/// The name of the TXT record that carries the ownership record of `record`, with a trailing
/// dot.
pub fn owner_record_name(record: &str) -> String {
    format!("{RECORD_OWNER_LABEL}.{}.", record.trim_end_matches('.'))
}

/// The ownership record of `record` among those read: None when absent, when it is not
/// exactly one value, or when that value is malformed.
pub fn record_owner(records: &[ObservedRecord], record: &str) -> Option<RecordOwnership> {
    match find_record(records, &owner_record_name(record), "TXT")?.values.as_slice() {
        [one] => RecordOwnership::from_txt_value(one),
        _ => None,
    }
}

/// The epoch a new holder of a record writes: one above the ownership record read.
pub fn next_record_epoch(records: &[ObservedRecord], record: &str) -> u64 {
    record_owner(records, record).map_or(0, |o| o.epoch).saturating_add(1)
}

/// What the holder of a record makes of a monitor read: ours when the record has exactly our
/// value and TTL; a yield when a newer ownership record (by another instance) names the value
/// the record now has; otherwise a repair.
pub fn judge_record(
    records: &[ObservedRecord],
    record: &str,
    record_type: &str,
    value: std::net::IpAddr,
    ttl: u32,
    instance_id: &str,
    our_epoch: Option<u64>,
) -> DriftVerdict {
    let current = find_record(records, record, record_type);
    if record_points_at(current, value, ttl) {
        return DriftVerdict::Ours;
    }
    match (record_owner(records, record), our_epoch) {
        (Some(owner), Some(ours))
            if outbids(owner.epoch, &owner.instance_id, ours, instance_id)
                && current.is_some_and(|r| r.values.len() == 1 && r.values.iter().all(|v| v.parse().ok() == Some(owner.value))) =>
        {
            DriftVerdict::Yield {
                to: owner.instance_id,
                epoch: owner.epoch,
            }
        }
        _ => DriftVerdict::Repair,
    }
}

/// Exponential backoff: `attempt` 0 is the first retry. `jitter` in [0, 1) spreads retries of
/// several nodes apart ("full jitter" over the upper half of the window).
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let window = exp.min(cap);
    let jitter = jitter.clamp(0.0, 1.0);
    window.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eni(id: &str, primary: &str, secondary: &[&str]) -> ObservedInterface {
        let (v6, v4): (Vec<&str>, Vec<&str>) = secondary.iter().partition(|s| s.contains(':'));
        ObservedInterface {
            network_interface_id: id.into(),
            subnet_id: Some("subnet-1".into()),
            instance_id: None,
            primary_ip: Some(primary.into()),
            secondary_ips: v4.iter().map(|s| s.to_string()).collect(),
            ipv6: v6.iter().map(|s| s.to_string()).collect(),
            records: Default::default(),
        }
    }

    fn record(eni: &str, epoch: u64) -> InterfaceOwnership {
        InterfaceOwnership {
            network_interface_id: eni.into(),
            epoch,
        }
    }

    #[test]
    fn a_record_tag_reads_back_and_malformed_ones_count_for_nothing() {
        let r = record("eni-2", 7);
        assert_eq!(r.tag_value(), "eni-2/7");
        assert_eq!(InterfaceOwnership::from_tag_value(&r.tag_value()), Some(r));
        for bad in ["eni-2", "eni-2/x", "i-2/7", "/7", "eni-2/-1"] {
            assert_eq!(InterfaceOwnership::from_tag_value(bad), None, "{bad}");
        }
        let tags = [("corosync-eip:ip:10.0.1.50", "eni-2/7"), ("corosync-eip:ip:10.0.1.51", "junk"), ("Name", "eni-9/1")];
        let records = records_from_tags(tags);
        assert_eq!(records.len(), 1);
        assert_eq!(records["corosync-eip:ip:10.0.1.50"].epoch, 7);
    }

    #[test]
    fn a_secondary_ip_holder_yields_only_to_a_newer_record_on_the_eni_that_has_the_address() {
        let a: std::net::IpAddr = "10.0.1.50".parse().unwrap();
        let key = address_record_key(a);
        let mut theirs = eni("eni-2", "10.0.1.12", &["10.0.1.50"]);
        let ours = eni("eni-1", "10.0.1.11", &[]);
        // Moved by hand, no record: repair.
        assert_eq!(judge_address(&[theirs.clone(), ours.clone()], a, "eni-1", Some(3)), DriftVerdict::Repair);
        // A newer holder's record on the ENI that has it: yield.
        theirs.records.insert(key.clone(), record("eni-2", 4));
        assert_eq!(
            judge_address(&[theirs.clone(), ours.clone()], a, "eni-1", Some(3)),
            DriftVerdict::Yield { to: "eni-2".into(), epoch: 4 }
        );
        assert_eq!(next_address_epoch(&[theirs.clone()], a), 5);
        // An older record, or none of ours to compare with: repair.
        assert_eq!(judge_address(&[theirs.clone()], a, "eni-1", Some(4)), DriftVerdict::Repair, "same epoch, higher id keeps it");
        assert_eq!(judge_address(&[theirs.clone()], a, "eni-3", Some(4)), DriftVerdict::Yield { to: "eni-2".into(), epoch: 4 }, "same epoch, lower id wins");
        assert_eq!(judge_address(&[theirs.clone()], a, "eni-1", Some(9)), DriftVerdict::Repair);
        assert_eq!(judge_address(&[theirs.clone()], a, "eni-1", None), DriftVerdict::Repair);
        // A record naming another ENI than the one it sits on is a copy: it counts for nothing.
        theirs.records.insert(key, record("eni-7", 99));
        assert_eq!(address_record(&[theirs.clone()], a), None);
        assert_eq!(judge_address(&[theirs], a, "eni-1", Some(3)), DriftVerdict::Repair);
    }

    #[test]
    fn a_vip_holder_yields_only_to_a_newer_record_whose_eni_the_route_points_at() {
        let ids = vec!["rtb-1".to_string()];
        let dest = "172.31.255.10/32";
        let mut t = table(&[(dest, Some("eni-2"), false)]);
        assert_eq!(judge_route(&[t.clone()], &ids, dest, "eni-1", Some(3)), DriftVerdict::Repair, "no record: repair");
        t.records.insert(route_record_key(dest), record("eni-2", 4));
        assert_eq!(judge_route(&[t.clone()], &ids, dest, "eni-1", Some(3)), DriftVerdict::Yield { to: "eni-2".into(), epoch: 4 });
        assert_eq!(next_route_epoch(&[t.clone()], &ids, dest), 5);
        assert_eq!(judge_route(&[t.clone()], &ids, dest, "eni-1", Some(5)), DriftVerdict::Repair, "ours is newer");
        assert_eq!(judge_route(&[t.clone()], &ids, dest, "eni-2", Some(4)), DriftVerdict::Ours);
        // The newer record's holder is not where the route points (moved by hand since): repair.
        t.routes[0].network_interface_id = Some("eni-9".into());
        assert_eq!(judge_route(&[t.clone()], &ids, dest, "eni-1", Some(3)), DriftVerdict::Repair);
        // A record in a table that is not the VIP's does not count.
        assert_eq!(next_route_epoch(&[t], &["rtb-other".to_string()], dest), 1);
    }

    #[test]
    fn destinations_compare_in_one_spelling() {
        assert_eq!(canonical_destination("FD00:0EC2:0:0::10/128"), "fd00:ec2::10/128");
        assert_eq!(canonical_destination("172.31.255.10/32"), "172.31.255.10/32");
        assert_eq!(canonical_destination("pl-123"), "pl-123");
    }

    #[test]
    fn records_match_exact_values_and_ttl() {
        let r = |values: &[&str], ttl| ObservedRecord {
            name: "db.lab.internal.".into(),
            record_type: "A".into(),
            ttl: Some(ttl),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let ip: std::net::IpAddr = "10.0.1.5".parse().unwrap();
        assert!(record_points_at(Some(&r(&["10.0.1.5"], 10)), ip, 10));
        assert!(!record_points_at(Some(&r(&["10.0.1.5"], 60)), ip, 10), "TTL differs");
        assert!(!record_points_at(Some(&r(&["10.0.1.50"], 10)), ip, 10), "never a substring match");
        assert!(!record_points_at(Some(&r(&["10.0.1.5", "10.0.1.6"], 10)), ip, 10), "only our value");
        assert!(!record_points_at(None, ip, 10));
        let list = [r(&["10.0.1.5"], 10)];
        assert!(find_record(&list, "DB.lab.internal", "a").is_some());
        assert!(find_record(&list, "db.lab.internal.", "AAAA").is_none());
        assert!(find_record(&list, "b.lab.internal.", "A").is_none());
    }

    #[test]
    fn record_ownership_is_read_defensively() {
        let owner = RecordOwnership {
            instance_id: "i-0b".into(),
            epoch: 7,
            value: "2600:1f18::50".parse().unwrap(),
        };
        assert_eq!(RecordOwnership::from_txt_value(&owner.txt_value()), Some(owner));
        for bad in ["i-0b/7/10.0.1.5", "\"i-0b/7\"", "\"eni-0b/7/10.0.1.5\"", "\"i-/7/10.0.1.5\"", "\"i-0b/x/10.0.1.5\"", "\"i-0b/7/10.0.1.500\"", "\"i-0b/-1/10.0.1.5\"", "\"\""] {
            assert_eq!(RecordOwnership::from_txt_value(bad), None, "{bad}");
        }
        assert_eq!(owner_record_name("DB.lab.internal"), "_corosync-eip.DB.lab.internal.");
        assert_eq!(owner_record_name("db.lab.internal."), "_corosync-eip.db.lab.internal.");
    }

    #[test]
    fn record_drift_yields_only_to_a_newer_owner_whose_value_is_in_place() {
        let set = |name: &str, t: &str, values: &[&str]| ObservedRecord {
            name: name.into(),
            record_type: t.into(),
            ttl: Some(10),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let me: std::net::IpAddr = "10.0.1.4".parse().unwrap();
        let a = |v: &str| set("db.lab.internal.", "A", &[v]);
        let owner = |text: &str| set("_corosync-eip.db.lab.internal.", "TXT", &[text]);
        let judge = |records: &[ObservedRecord], ours| judge_record(records, "db.lab.internal", "A", me, 10, "i-0c", ours);
        assert_eq!(judge(&[a("10.0.1.4"), owner("\"i-0b/9/10.0.1.5\"")], Some(3)), DriftVerdict::Ours);
        // a newer holder elsewhere pointed it at its own value
        let newer = [a("10.0.1.5"), owner("\"i-0b/9/10.0.1.5\"")];
        assert_eq!(judge(&newer, Some(3)), DriftVerdict::Yield { to: "i-0b".into(), epoch: 9 });
        assert_eq!(next_record_epoch(&newer, "db.lab.internal."), 10);
        // the same epoch: the lower instance id keeps it, so exactly one of two yields
        assert_eq!(judge(&newer, Some(9)), DriftVerdict::Yield { to: "i-0b".into(), epoch: 9 });
        assert_eq!(judge_record(&newer, "db.lab.internal", "A", me, 10, "i-0a", Some(9)), DriftVerdict::Repair);
        // an older record, a record without its owner's value, no record, or no epoch of ours
        assert_eq!(judge(&newer, Some(10)), DriftVerdict::Repair);
        assert_eq!(judge(&[a("10.0.1.9"), owner("\"i-0b/9/10.0.1.5\"")], Some(3)), DriftVerdict::Repair, "changed by hand after");
        assert_eq!(judge(&[a("10.0.1.5")], Some(3)), DriftVerdict::Repair);
        assert_eq!(judge(&newer, None), DriftVerdict::Repair);
        assert_eq!(judge(&[a("10.0.1.5"), owner("\"i-0c/9/10.0.1.5\"")], Some(3)), DriftVerdict::Repair, "our own old record");
        assert_eq!(judge(&[a("10.0.1.5"), set("_corosync-eip.db.lab.internal.", "TXT", &["\"i-0b/9/10.0.1.5\"", "\"x\""])], Some(3)), DriftVerdict::Repair);
        assert_eq!(next_record_epoch(&[a("10.0.1.5")], "db.lab.internal"), 1);
        // a record with two values, one of them the owner's, is not the owner's doing
        assert_eq!(judge(&[set("db.lab.internal.", "A", &["10.0.1.5", "10.0.1.6"]), owner("\"i-0b/9/10.0.1.5\"")], Some(3)), DriftVerdict::Repair);
    }

    #[test]
    fn secondary_ip_decisions() {
        let a: std::net::IpAddr = "10.0.1.50".parse().unwrap();
        let v6: std::net::IpAddr = "2600:1f18::50".parse().unwrap();
        let moved = [eni("eni-me", "10.0.1.4", &[]), eni("eni-b", "10.0.1.5", &["2600:1f18:0::50"])];
        assert_eq!(decide_secondary(&moved, v6, "eni-me"), SecondaryAction::Assign { from: vec!["eni-b".into()] });
        assert!(interfaces_with(&moved, a).is_empty(), "families never mix");
        let ours = [eni("eni-me", "10.0.1.4", &["10.0.1.50"]), eni("eni-b", "10.0.1.5", &[])];
        assert_eq!(decide_secondary(&ours, a, "eni-me"), SecondaryAction::AlreadyOurs);
        assert!(secondary_points_at(&ours, a, "eni-me"));
        let theirs = [eni("eni-me", "10.0.1.4", &[]), eni("eni-b", "10.0.1.5", &["10.0.1.50"])];
        assert_eq!(decide_secondary(&theirs, a, "eni-me"), SecondaryAction::Assign { from: vec!["eni-b".into()] });
        assert!(!secondary_points_at(&theirs, a, "eni-me"));
        assert_eq!(decide_secondary(&[], a, "eni-me"), SecondaryAction::Assign { from: vec![] });
        // on ours and (impossible in AWS, but read defensively) also elsewhere: not only ours
        let both = [eni("eni-me", "10.0.1.4", &["10.0.1.50"]), eni("eni-b", "10.0.1.5", &["10.0.1.50"])];
        assert!(!secondary_points_at(&both, a, "eni-me"));
        assert_eq!(decide_secondary(&both, a, "eni-me"), SecondaryAction::Assign { from: vec!["eni-b".into()] });
        // exact addresses, never substrings: 10.0.1.5 is not 10.0.1.50
        let near = [eni("eni-me", "10.0.1.4", &["10.0.1.5", "10.0.1.500"])];
        assert!(interfaces_with(&near, a).is_empty());
        let primary = [eni("eni-b", "10.0.1.50", &[])];
        assert_eq!(decide_secondary(&primary, a, "eni-me"), SecondaryAction::Primary { of: "eni-b".into() });
    }

    fn me(eni: Option<&str>) -> Identity {
        Identity {
            instance_id: "i-me".into(),
            network_interface_id: eni.map(String::from),
        }
    }

    fn eip(instance: Option<&str>, eni: Option<&str>, ip: Option<&str>) -> ObservedEip {
        ObservedEip {
            allocation_id: "eipalloc-1".into(),
            association_id: instance.or(eni).map(|_| "eipassoc-1".to_string()),
            instance_id: instance.map(String::from),
            network_interface_id: eni.map(String::from),
            private_ip: ip.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn unassociated_address_is_associated_without_drift() {
        assert_eq!(decide_eip(&eip(None, None, None), &me(None), None), EipAction::Associate { drift: false });
    }

    #[test]
    fn ours_by_eni_or_instance() {
        assert_eq!(decide_eip(&eip(Some("i-me"), Some("eni-me"), None), &me(Some("eni-me")), None), EipAction::AlreadyOurs);
        // Associated by ENI, instance not filled in: the ENI decides.
        assert_eq!(decide_eip(&eip(None, Some("eni-me"), None), &me(Some("eni-me")), None), EipAction::AlreadyOurs);
        assert_eq!(decide_eip(&eip(Some("i-me"), None, None), &me(None), None), EipAction::AlreadyOurs);
    }

    #[test]
    fn someone_else_or_wrong_private_ip_is_drift() {
        assert_eq!(
            decide_eip(&eip(Some("i-other"), Some("eni-other"), None), &me(Some("eni-me")), None),
            EipAction::Associate { drift: true }
        );
        assert_eq!(
            decide_eip(&eip(Some("i-me"), Some("eni-me"), Some("10.0.0.5")), &me(Some("eni-me")), Some("10.0.0.6".parse().unwrap())),
            EipAction::Associate { drift: true }
        );
    }

    fn table(routes: &[(&str, Option<&str>, bool)]) -> ObservedRouteTable {
        ObservedRouteTable {
            route_table_id: "rtb-1".into(),
            routes: routes
                .iter()
                .map(|(d, eni, blackhole)| ObservedRoute {
                    destination: d.to_string(),
                    network_interface_id: eni.map(String::from),
                    instance_id: None,
                    blackhole: *blackhole,
                })
                .collect(),
            records: Default::default(),
        }
    }

    #[test]
    fn route_decisions() {
        let dest = "172.31.255.10/32";
        let t = table(&[("10.0.0.0/16", None, false), (dest, Some("eni-me"), false)]);
        assert_eq!(decide_route(Some(&t), dest, "eni-me", false), RouteAction::AlreadyOurs);
        assert_eq!(decide_route(Some(&t), dest, "eni-other", false), RouteAction::Replace { drift: true });
        let dead = table(&[(dest, Some("eni-me"), true)]);
        assert_eq!(decide_route(Some(&dead), dest, "eni-me", false), RouteAction::Replace { drift: false });
        let empty = table(&[("10.0.0.0/16", None, false)]);
        assert_eq!(decide_route(Some(&empty), dest, "eni-me", true), RouteAction::Create);
        assert_eq!(decide_route(Some(&empty), dest, "eni-me", false), RouteAction::Missing);
        assert_eq!(decide_route(None, dest, "eni-me", true), RouteAction::NoTable);
        let ids = ["rtb-1".to_string()];
        assert!(all_routes_point_at(std::slice::from_ref(&t), &ids, dest, "eni-me"));
        assert!(!all_routes_point_at(std::slice::from_ref(&t), &ids, dest, "eni-other"));
        assert!(!all_routes_point_at(&[], &ids, dest, "eni-me"), "a table EC2 did not return is not verified");
    }

    fn owned(instance: &str, epoch: u64) -> ObservedEip {
        ObservedEip {
            owner: Some(Ownership { instance_id: instance.into(), epoch }),
            ..eip(Some(instance), Some("eni-x"), None)
        }
    }

    #[test]
    fn ownership_tags_parse() {
        let o = Ownership::from_tags([(OWNER_TAG, "i-1"), (EPOCH_TAG, "7"), ("Name", "web")]).unwrap();
        assert_eq!(o, Ownership { instance_id: "i-1".into(), epoch: 7 });
        assert_eq!(Ownership::from_tags([(OWNER_TAG, "i-1"), (EPOCH_TAG, "seven")]), None);
        assert_eq!(Ownership::from_tags([(EPOCH_TAG, "7")]), None);
        assert_eq!(next_epoch(&owned("i-1", 7)), 8);
        assert_eq!(next_epoch(&eip(None, None, None)), 1);
    }

    #[test]
    fn a_newer_holder_elsewhere_is_yielded_to_anything_else_repaired() {
        let me = me(Some("eni-me"));
        assert_eq!(judge_eip(&owned("i-other", 6), &me, None, Some(5)), DriftVerdict::Yield { to: "i-other".into(), epoch: 6 });
        assert_eq!(judge_eip(&owned("i-zzz", 5), &me, None, Some(5)), DriftVerdict::Repair, "same epoch, higher id: ours");
        assert_eq!(
            judge_eip(&owned("i-abc", 5), &me, None, Some(5)),
            DriftVerdict::Yield { to: "i-abc".into(), epoch: 5 },
            "same epoch, lower id: theirs"
        );
        assert_eq!(judge_eip(&owned("i-other", 4), &me, None, Some(5)), DriftVerdict::Repair, "older");
        assert_eq!(judge_eip(&owned("i-other", 9), &me, None, None), DriftVerdict::Repair, "we never wrote one");
        // Tag says i-other but the address sits on a third instance: an out-of-band move.
        let mut stray = owned("i-other", 9);
        stray.instance_id = Some("i-third".into());
        assert_eq!(judge_eip(&stray, &me, None, Some(5)), DriftVerdict::Repair);
        assert_eq!(judge_eip(&eip(Some("i-me"), Some("eni-me"), None), &me, None, Some(5)), DriftVerdict::Ours);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(10);
        let cap = Duration::from_secs(1);
        assert_eq!(backoff(0, base, cap, 1.0), Duration::from_millis(10));
        assert_eq!(backoff(0, base, cap, 0.0), Duration::from_millis(5));
        assert_eq!(backoff(3, base, cap, 1.0), Duration::from_millis(80));
        assert_eq!(backoff(30, base, cap, 1.0), cap);
    }
}
