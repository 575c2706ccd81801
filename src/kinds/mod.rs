//! One module per kind of floating address. Each kind owns its EC2 sequence (batched read,
//! acquire, verify) and its local side (the address on our interface), so a new kind is one
//! new file here plus its config section, its check items and its docs.
//!
//! Everything here is I/O on behalf of decisions taken elsewhere: `core::holder` decides when to
//! acquire and what a verdict means; the kinds only carry out and report, with typed errors
//! whose class decides what happens next (`AcquireError::failure`).

pub mod dns;
pub mod eip;
pub mod secondary;
pub mod vip;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{EipConfig, SecondaryIpConfig, VipConfig};
use crate::core::holder::{Failure, Verdict};
use crate::core::reconcile::{Identity, ObservedEip, ObservedInterface, ObservedRecord, ObservedRouteTable};
use crate::batch::Member;
use crate::ec2::{Ec2, Ec2Error, ErrorClass};
use crate::localaddr::{LocalAddrError, LocalAddresses};

/// A configured address and everything needed to move it.
#[derive(Debug, Clone)]
pub enum Kind {
    /// An Elastic IP, moved with one atomic AssociateAddress.
    Eip(EipConfig),
    /// A private address routed to the holder's ENI through VPC route tables.
    Vip(VipConfig),
    /// A private address of the nodes' subnet, assigned to the holder's ENI.
    Secondary(SecondaryIpConfig),
    /// A Route 53 record pointed at the holder's address.
    Dns(dns::DnsTarget),
}

/// Where the holder of an address with a local side configures it.
#[derive(Debug, Clone, Copy)]
pub struct LocalSide<'a> {
    /// The Linux interface.
    pub interface: &'a str,
    /// The address, configured as a /32 (or /128).
    pub address: std::net::IpAddr,
    /// The Linux address label, if configured.
    pub label: Option<&'a str>,
}

impl Kind {
    /// The name used in status, metrics and hooks.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Eip(_) => "eip",
            Kind::Vip(_) => "vip",
            Kind::Secondary(_) => "secondary_ip",
            Kind::Dns(_) => "dns",
        }
    }

    /// Where the holder puts the address on its own interface; None for kinds without a local
    /// side (an EIP is translated by AWS to the ENI's private address).
    pub fn local_side(&self) -> Option<LocalSide<'_>> {
        match self {
            Kind::Eip(_) | Kind::Dns(_) => None,
            Kind::Vip(v) => Some(LocalSide {
                interface: &v.interface,
                address: v.address,
                label: v.label.as_deref(),
            }),
            Kind::Secondary(s) => Some(LocalSide {
                interface: &s.interface,
                address: s.address,
                label: s.label.as_deref(),
            }),
        }
    }

    /// Whether holding this address also means having it on our interface (only then does the
    /// holder have a local side to add, monitor and remove).
    pub fn has_local_address(&self) -> bool {
        self.local_side().is_some()
    }

    /// The address as people name it: the EIP's public IP when known, else its allocation id;
    /// the private address of the other kinds.
    pub fn address(&self, observed: Option<&Observed>) -> String {
        match (self, observed) {
            (Kind::Eip(e), Some(Observed::Eip(o))) => o.public_ip.clone().unwrap_or_else(|| e.allocation_id.clone()),
            (Kind::Eip(e), _) => e.allocation_id.clone(),
            (Kind::Vip(v), _) => v.address.to_string(),
            (Kind::Secondary(s), _) => s.address.to_string(),
            (Kind::Dns(d), _) => d.value().map_or_else(|| d.config.record.clone(), |v| v.to_string()),
        }
    }
}

/// Takes a kind's address off our interface; `Ok(true)` when it was there, `Ok(false)` also
/// for kinds without a local side.
pub async fn remove_local(addresses: &LocalAddresses, kind: &Kind) -> Result<bool, LocalAddrError> {
    match kind.local_side() {
        Some(side) => addresses.ensure_absent(side.interface, side.address).await,
        None => Ok(false),
    }
}

/// What EC2 (and the local interface) last said about one address.
#[derive(Debug, Clone)]
pub enum Observed {
    /// The address's association as DescribeAddresses showed it.
    Eip(ObservedEip),
    /// The VIP's route in every listed table, as DescribeRouteTables showed it.
    Vip(Vec<ObservedRouteTable>),
    /// Every ENI that carries the secondary IP, as DescribeNetworkInterfaces showed them.
    Secondary(Vec<ObservedInterface>),
    /// The record as ListResourceRecordSets showed it (empty values: it does not exist).
    Dns(ObservedRecord),
}

/// Asked right before every mutating call of an acquisition (see the daemon's write gate).
pub type Gate = crate::ec2::SharedGate;

/// What an acquisition needs besides the address itself.
#[derive(Clone)]
pub struct Context {
    /// The EC2 client all calls go through (retries, metrics).
    pub ec2: Ec2,
    /// The Route 53 client of `[[dns]]` records.
    pub route53: crate::route53::Route53,
    /// Role ARN → an EC2 client assuming it, for VIPs whose route tables live in another
    /// account (`route_table_role`).
    pub route_clients: std::collections::BTreeMap<String, Ec2>,
    /// This node's instance and ENI: where the address must point.
    pub me: Identity,
    /// Present when some address of this node has a local side.
    pub addresses: Option<Arc<LocalAddresses>>,
}

/// A verified acquisition: EC2 points the address at us and said so when read back.
#[derive(Debug, Clone)]
pub struct Acquired {
    /// EC2's read-back that proved it, kept for status and peers.
    pub observed: Observed,
    /// When the mutating call went out (None: EC2 already pointed at us).
    pub sent: Option<Instant>,
    /// When the read-back showed us: the end of the failover timeline.
    pub verified: Instant,
    /// The ownership epoch we hold the address with (None: the record could not be written,
    /// which only costs the split-brain protection).
    pub epoch: Option<u64>,
}

/// Why an acquisition did not end with the address verified on this node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    /// An EC2 call failed; its class says what to do.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// This node has no network interface id to point routes at.
    #[error("no network interface id for this node; set [node] network_interface_id")]
    NoInterface,
    /// The configuration does not match what exists in EC2 (every node would fail alike).
    #[error("{0}")]
    Setup(String),
    /// EC2 accepted the change but never showed it when read back within the budget.
    #[error("{0}")]
    NotVerified(String),
    /// The local interface refused the address.
    #[error("{0}")]
    Local(String),
    /// The departed holder could not be fenced: nothing was moved.
    #[error(transparent)]
    Fence(#[from] crate::fence::FenceError),
}

impl AcquireError {
    /// The error policy: what this failure means for the hand-over decision. Only failures
    /// particular to this node (its permissions, its identity, its path to EC2) are worth
    /// handing the unit to another node for; anything every node would meet is not.
    pub fn failure(&self) -> Failure {
        match self {
            AcquireError::Ec2(e) => match e.class {
                ErrorClass::Permission => Failure::Permission,
                ErrorClass::Transient => Failure::Transient,
                ErrorClass::NotFound if e.code.as_deref().is_some_and(names_this_node) => Failure::Identity,
                _ => Failure::Other,
            },
            AcquireError::NoInterface => Failure::Identity,
            // A fence that failed is not this node's incapacity: handing the unit over would
            // let the next node move the address without the fence, or fence in turn while
            // the race check here said not to. The holder retries with backoff.
            AcquireError::Setup(_) | AcquireError::NotVerified(_) | AcquireError::Local(_) | AcquireError::Fence(_) => Failure::Other,
        }
    }

    /// The write gate closed before a mutating call: we are no longer the holder. Not a
    /// failure at all.
    pub fn cancelled(&self) -> bool {
        match self {
            AcquireError::Ec2(e) => e.class == ErrorClass::Cancelled,
            AcquireError::Fence(e) => e.cancelled(),
            _ => false,
        }
    }
}

/// EC2 codes that say this node's own instance or interface is unknown to EC2.
fn names_this_node(code: &str) -> bool {
    code.starts_with("InvalidInstanceID") || code.starts_with("InvalidNetworkInterfaceID")
}

impl Context {
    /// The client for route-table calls with `role` (None: this node's own credentials).
    pub fn routes_client(&self, role: Option<&str>) -> Result<&Ec2, AcquireError> {
        match role {
            None => Ok(&self.ec2),
            Some(r) => self
                .route_clients
                .get(r)
                .ok_or_else(|| AcquireError::Setup(format!("no EC2 client for route_table_role {r}"))),
        }
    }
}

/// How long an acquisition that sent its change waits for the others started with it, before
/// reading back alone (see `batch::Cohort`).
pub const TOGETHER: Duration = Duration::from_millis(500);

/// How one acquisition is started.
pub struct Start {
    /// The agreed view says another node held the address until now (a failover or a move):
    /// the address is not ours yet. Logged with the change; with `epoch_elsewhere` it lets the
    /// first read be skipped (`Start::outbid`).
    pub held_elsewhere: bool,
    /// The ownership epoch the node that held the address announced, given only where no
    /// other partition can be quorate (not two_node): a new record outbids it without the
    /// read, since no one else can have written a newer one. The read-back still proves the
    /// move.
    pub epoch_elsewhere: Option<u64>,
    /// The acquisitions started with this one, which share its read-back.
    pub cohort: Member,
}

impl Start {
    /// The epoch to write without reading first: one above the epoch the node that held the
    /// address announced, when the daemon gave one (see `epoch_elsewhere`). None: read first.
    pub fn outbid(&self) -> Option<u64> {
        self.epoch_elsewhere.filter(|_| self.held_elsewhere).and_then(|e| e.checked_add(1))
    }
}

/// Makes EC2 point `kind` at this node and proves it by reading it back.
pub async fn acquire(kind: &Kind, ctx: &Context, gate: Gate, budget: Duration, start: Start) -> Result<Acquired, AcquireError> {
    match kind {
        Kind::Eip(eip) => eip::acquire(&ctx.ec2, eip, &ctx.me, gate, budget, start).await,
        Kind::Vip(vip) => {
            let routes = ctx.routes_client(vip.route_table_role.as_deref())?;
            vip::acquire(routes, ctx.addresses.as_deref(), vip, &ctx.me, gate, budget, start).await
        }
        Kind::Secondary(s) => secondary::acquire(&ctx.ec2, ctx.addresses.as_deref(), s, &ctx.me, gate, budget, start).await,
        // Record reads are not shared: nobody waits for a record's UPSERT.
        Kind::Dns(d) => dns::acquire(ctx, d, gate, budget, &start).await,
    }
}

/// What one monitor round reads: all our addresses of every kind, one batched call per kind,
/// whatever the number of addresses.
#[derive(Debug, Default)]
pub struct Batch {
    allocations: Vec<String>,
    /// Route tables by the role their calls assume (None: our own credentials).
    tables: std::collections::BTreeMap<Option<String>, BTreeSet<String>>,
    secondary: BTreeSet<std::net::IpAddr>,
    /// Hosted zone → name and type of every held record in it.
    zones: std::collections::BTreeMap<String, Vec<(String, String)>>,
    /// Resource name, interface and address of every address whose local side is checked.
    local: Vec<(String, String, std::net::IpAddr)>,
}

impl Batch {
    /// Adds one held address to the round.
    pub fn add(&mut self, name: &str, kind: &Kind) {
        match kind {
            Kind::Eip(e) => self.allocations.push(e.allocation_id.clone()),
            Kind::Vip(v) => self
                .tables
                .entry(v.route_table_role.clone())
                .or_default()
                .extend(v.route_tables.iter().cloned()),
            Kind::Secondary(s) => {
                self.secondary.insert(s.address);
            }
            Kind::Dns(d) => self
                .zones
                .entry(d.config.hosted_zone_id.clone())
                .or_default()
                .push((d.config.record.clone(), d.config.record_type.as_str().to_owned())),
        }
        if let Some(side) = kind.local_side() {
            self.local.push((name.to_owned(), side.interface.to_owned(), side.address));
        }
    }

    /// Nothing to read in EC2: the monitor round can be skipped.
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty() && self.tables.is_empty() && self.secondary.is_empty() && self.zones.is_empty()
    }

    /// Reads everything in the batch. EC2 errors are kept per kind: a failed read is never a
    /// reason to move, only to say the monitor could not tell.
    pub async fn observe(self, ctx: &Context, budget: Duration) -> Observation {

        let eips = async {
            if self.allocations.is_empty() {
                None
            } else {
                Some(ctx.ec2.describe_addresses(&self.allocations, budget).await)
            }
        };
        // One DescribeRouteTables per set of credentials (usually one).
        let routes = async {
            let mut read = std::collections::BTreeMap::new();
            for (role, tables) in &self.tables {
                let tables: Vec<String> = tables.iter().cloned().collect();
                let result = match ctx.routes_client(role.as_deref()) {
                    Ok(client) => client.describe_route_tables(&tables, budget).await,
                    Err(e) => Err(Ec2Error {
                        api: "DescribeRouteTables",
                        class: ErrorClass::Refused,
                        code: None,
                        message: e.to_string(),
                    }),
                };
                read.insert(role.clone(), result);
            }
            read
        };
        let secondary: Vec<std::net::IpAddr> = self.secondary.into_iter().collect();
        let interfaces = async {
            if secondary.is_empty() {
                None
            } else {
                Some(ctx.ec2.describe_interfaces_with(&secondary, budget).await)
            }
        };
        // One zone after the other: Route 53 allows 5 requests per second per account.
        let zones = async {
            let mut read = std::collections::BTreeMap::new();
            for (zone, names) in &self.zones {
                read.insert(zone.clone(), ctx.route53.zone_records(zone, names, budget).await);
            }
            read
        };
        let (eips, routes, interfaces, records) = tokio::join!(eips, routes, interfaces, zones);
        let mut local = Vec::new();
        if let Some(addresses) = &ctx.addresses {
            for (name, interface, address) in self.local {
                if let Ok(present) = addresses.is_present(&interface, address).await {
                    local.push((name, present));
                }
            }
        }
        Observation {
            eips,
            routes,
            interfaces,
            records,
            local,
        }
    }
}

/// What a monitor round saw.
#[derive(Debug)]
pub struct Observation {
    /// DescribeAddresses for every held EIP (None: no EIP in the round; Err: read failed).
    pub eips: Option<Result<Vec<ObservedEip>, Ec2Error>>,
    /// DescribeRouteTables for every table of every held VIP, per role assumed (None: our own
    /// credentials).
    pub routes: std::collections::BTreeMap<Option<String>, Result<Vec<ObservedRouteTable>, Ec2Error>>,
    /// DescribeNetworkInterfaces for every held secondary IP (None: none in the round).
    pub interfaces: Option<Result<Vec<ObservedInterface>, Ec2Error>>,
    /// ListResourceRecordSets per hosted zone of the held records.
    pub records: std::collections::BTreeMap<String, Result<Vec<ObservedRecord>, Ec2Error>>,
    /// Resource name and whether its address is on our interface.
    pub local: Vec<(String, bool)>,
}

/// The monitor's reading of one held address.
#[derive(Debug)]
pub struct Judgement {
    /// Ours, drifted (repair), taken by a newer owner (yield), or unknown (EC2 did not answer).
    pub verdict: Verdict,
    /// What EC2 showed, to keep for status.
    pub observed: Option<Observed>,
    /// Whether the address is on our interface (kinds with a local side).
    pub address_present: Option<bool>,
}

/// Judges one held address from a monitor round; None when the round did not read its kind.
pub fn judge(name: &str, kind: &Kind, seen: &Observation, me: &Identity, epoch: Option<u64>) -> Option<Judgement> {
    // An interface that could not be read counts as present: only EC2 decides a move.
    let present = || seen.local.iter().find(|(r, _)| r == name).is_none_or(|(_, p)| *p);
    match kind {
        Kind::Eip(eip) => eip::judge(eip, seen.eips.as_ref()?, me, epoch),
        Kind::Vip(vip) => vip::judge(vip, seen.routes.get(&vip.route_table_role)?, me, present(), epoch),
        Kind::Secondary(s) => secondary::judge(s, seen.interfaces.as_ref()?, me, present(), epoch),
        Kind::Dns(d) => dns::judge(d, seen.records.get(&d.config.hosted_zone_id)?, me, epoch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec2(class: ErrorClass, code: Option<&str>) -> AcquireError {
        AcquireError::Ec2(Ec2Error {
            api: "AssociateAddress",
            class,
            code: code.map(str::to_owned),
            message: String::new(),
        })
    }

    #[test]
    fn only_failures_of_this_node_hand_the_unit_over() {
        assert_eq!(ec2(ErrorClass::Permission, Some("UnauthorizedOperation")).failure(), Failure::Permission);
        assert_eq!(ec2(ErrorClass::Transient, None).failure(), Failure::Transient);
        assert_eq!(ec2(ErrorClass::NotFound, Some("InvalidInstanceID.NotFound")).failure(), Failure::Identity);
        assert_eq!(ec2(ErrorClass::NotFound, Some("InvalidNetworkInterfaceID.NotFound")).failure(), Failure::Identity);
        assert_eq!(AcquireError::NoInterface.failure(), Failure::Identity);
        // A missing allocation or route table is missing for every node.
        assert_eq!(ec2(ErrorClass::NotFound, Some("InvalidAllocationID.NotFound")).failure(), Failure::Other);
        assert_eq!(ec2(ErrorClass::Refused, Some("InvalidParameterValue")).failure(), Failure::Other);
        assert_eq!(AcquireError::Setup("x".into()).failure(), Failure::Other);
        assert_eq!(AcquireError::NotVerified("x".into()).failure(), Failure::Other);
        assert_eq!(AcquireError::Local("x".into()).failure(), Failure::Other);
    }

    #[test]
    fn a_closed_gate_is_a_cancellation_not_a_failure() {
        assert!(ec2(ErrorClass::Cancelled, None).cancelled());
        assert!(!ec2(ErrorClass::Permission, None).cancelled());
        assert!(!AcquireError::NoInterface.cancelled());
    }
}
