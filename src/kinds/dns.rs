//! Route 53 records: the holder points the record at its address with one UPSERT (the name
//! never stops resolving), waits until Route 53 reports the change INSYNC on every
//! authoritative server, and reads the record back, comparing exact values and the TTL.
//!
//! A failed read in a monitor round is "unknown", never a reason to move: a Pacemaker agent's
//! monitor that failed on throttling once caused false failovers (resource-agents PR #1360).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::info;

use super::{AcquireError, Acquired, Gate, Judgement, Observed};
use crate::config::DnsConfig;
use crate::core::holder::Verdict;
use crate::core::reconcile::{backoff, find_record, record_points_at, ObservedRecord};
use crate::ec2::{Ec2, Ec2Error};
use crate::route53::{Propagation, Route53};

/// How long a change may stay PENDING before the acquisition gives up (Route 53 documents
/// propagation to all its servers within 60 seconds, usually far less).
const PROPAGATION_BUDGET: Duration = Duration::from_secs(180);

/// Where this node's value for a record comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Known from the configuration: a VIP or secondary IP of the record's group.
    Fixed(IpAddr),
    /// This node's ENI's primary private IPv4 address.
    Private,
    /// This node's ENI's public IPv4 address (an EIP or the auto-assigned one).
    Public,
    /// The public IP of this Elastic IP allocation.
    Eip(String),
    /// None, and why (e.g. the configuration names a resource this node lacks).
    Absent(String),
}

/// A `[[dns]]` record with the address it must point at on this node: this node's private or
/// public IP, or the address of another resource of its group.
#[derive(Debug, Clone)]
pub struct DnsTarget {
    /// The record as configured.
    pub config: DnsConfig,
    /// Where the value comes from.
    pub source: Source,
    /// The value once read, shared by every clone: a start-up read that failed (EC2 briefly
    /// unreachable) is read again when the record is to be taken, instead of leaving this node
    /// unable to serve the record until a restart.
    value: std::sync::Arc<std::sync::OnceLock<IpAddr>>,
}

impl DnsTarget {
    /// A record whose value is not read yet (a fixed value is known at once).
    pub fn new(config: DnsConfig, source: Source) -> DnsTarget {
        let value = std::sync::OnceLock::new();
        if let Source::Fixed(v) = source {
            let _ = value.set(v);
        }
        DnsTarget {
            config,
            source,
            value: std::sync::Arc::new(value),
        }
    }

    /// The value, once known.
    pub fn value(&self) -> Option<IpAddr> {
        self.value.get().copied()
    }

    /// The value, read from EC2 if it is not known yet. A failed read keeps its EC2 error
    /// class, so the error policy decides (a denied or unreachable EC2 hands the record to
    /// another node); a value this node does not have is a setup error.
    pub async fn resolve(&self, ec2: &Ec2, eni: Option<&str>, budget: Duration) -> Result<IpAddr, AcquireError> {
        self.resolve_with(ec2, eni, budget, None).await
    }

    /// As `resolve`, with this node's ENI addresses (private, public) already read, or the
    /// error of that read: start-up reads the ENI once for all records, and a failed read is
    /// not repeated per record.
    pub async fn resolve_with(
        &self,
        ec2: &Ec2,
        eni: Option<&str>,
        budget: Duration,
        interface: Option<&InterfaceRead>,
    ) -> Result<IpAddr, AcquireError> {
        if let Some(v) = self.value() {
            return Ok(v);
        }
        let value = match &self.source {
            Source::Fixed(v) => *v,
            Source::Absent(why) => return Err(AcquireError::Setup(why.clone())),
            Source::Private | Source::Public => {
                let (private, public) = match interface {
                    Some(read) => read.clone()?,
                    None => ec2.interface_addresses(eni.ok_or(AcquireError::NoInterface)?, budget).await?,
                };
                match (&self.source, private, public) {
                    (Source::Private, Some(p), _) => p.into(),
                    (Source::Public, _, Some(p)) => p.into(),
                    (Source::Private, ..) => return Err(AcquireError::Setup("this node's interface has no private IPv4 address".into())),
                    _ => return Err(AcquireError::Setup("this node's interface has no public IPv4 address".into())),
                }
            }
            Source::Eip(allocation_id) => {
                let found = ec2.describe_addresses(std::slice::from_ref(allocation_id), budget).await?;
                found
                    .iter()
                    .find(|o| &o.allocation_id == allocation_id)
                    .and_then(|o| o.public_ip.as_deref())
                    .and_then(|ip| ip.parse().ok())
                    .ok_or_else(|| AcquireError::Setup(format!("EC2 shows no public IP for {allocation_id}")))?
            }
        };
        let _ = self.value.set(value);
        info!(resource = %self.config.name, record = %self.config.record, %value, "this node's value for the record");
        Ok(value)
    }
}

/// One read of this node's ENI: its primary private and its public IPv4 address.
pub type InterfaceRead = Result<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv4Addr>), crate::ec2::Ec2Error>;

/// (ListResourceRecordSets →) UPSERT → GetChange until INSYNC → read back.
/// `held_elsewhere`: the agreed view says another node held the record until now, so it
/// points elsewhere and the UPSERT goes out without a read first.
pub async fn acquire(ctx: &super::Context, target: &DnsTarget, gate: Gate, budget: Duration, held_elsewhere: bool) -> Result<Acquired, AcquireError> {
    let route53 = &ctx.route53;
    let dns = &target.config;
    let value = target.resolve(&ctx.ec2, ctx.me.network_interface_id.as_deref(), budget).await?;
    let kind = dns.record_type.as_str();
    let read = || async { route53.record(&dns.hosted_zone_id, &dns.record, kind, budget).await };
    let from = if held_elsewhere {
        Some(Vec::new())
    } else {
        let before = read().await?;
        let current = find_record(&before, &dns.record, kind);
        (!record_points_at(current, value, dns.ttl)).then(|| current.map(|r| r.values.clone()).unwrap_or_default())
    };
    let mut sent = None;
    if let Some(from) = from {
        info!(resource = %dns.name, record = %dns.record, r#type = kind, %value, from = ?from, "pointing the record at this node (UPSERT)");
        sent = Some(Instant::now());
        let change = route53
            .upsert(&dns.hosted_zone_id, &dns.record, kind, dns.ttl, value, budget, gate.as_ref())
            .await?;
        let mut attempt = 0;
        let deadline = Instant::now() + PROPAGATION_BUDGET;
        loop {
            // A change is never in sync the moment Route 53 accepts it, so even the first look
            // waits; GetChange counts against the account's 5 requests/s like every other call.
            tokio::time::sleep(backoff(attempt, Duration::from_millis(200), Duration::from_secs(5), rand::random())).await;
            attempt += 1;
            if route53.propagation(&change, budget).await? == Propagation::InSync {
                break;
            }
            if Instant::now() >= deadline {
                return Err(AcquireError::NotVerified(format!(
                    "Route 53 change {change} for {} still PENDING after {PROPAGATION_BUDGET:?}",
                    dns.record
                )));
            }
        }
    }
    let after = read().await?;
    let record = find_record(&after, &dns.record, kind).cloned();
    if !record_points_at(record.as_ref(), value, dns.ttl) {
        return Err(AcquireError::NotVerified(format!(
            "after the UPSERT Route 53 lists {} {kind} as {:?}, not {value} with TTL {}",
            dns.record,
            record.map(|r| r.values),
            dns.ttl
        )));
    }
    Ok(Acquired {
        observed: Observed::Dns(record.unwrap_or_default()),
        sent,
        verified: Instant::now(),
        epoch: None,
    })
}

/// Reads a monitor round's ListResourceRecordSets of the record's zone for one record we hold.
pub fn judge(target: &DnsTarget, seen: &Result<Vec<ObservedRecord>, Ec2Error>) -> Option<Judgement> {
    let dns = &target.config;
    let records = match seen {
        Err(e) => {
            return Some(Judgement {
                verdict: Verdict::Unknown(e.to_string()),
                observed: None,
                address_present: None,
            })
        }
        Ok(records) => records,
    };
    let record = find_record(records, &dns.record, dns.record_type.as_str()).cloned();
    let ours = target.value().is_some_and(|value| record_points_at(record.as_ref(), value, dns.ttl));
    Some(Judgement {
        verdict: if ours { Verdict::Ours } else { Verdict::Repair },
        observed: Some(Observed::Dns(record.unwrap_or_default())),
        address_present: None,
    })
}

/// Deletes the record if it still points at this node's value: what a holder with
/// `delete_on_release` does when it stops and no other member can take the record.
/// `Ok(false)`: the record points elsewhere (or is gone), so it is left alone.
pub async fn delete_if_ours(route53: &Route53, target: &DnsTarget, gate: Gate, budget: Duration) -> Result<bool, AcquireError> {
    let dns = &target.config;
    // Never read: never written by us.
    let Some(value) = target.value() else { return Ok(false) };
    let kind = dns.record_type.as_str();
    let records = route53.record(&dns.hosted_zone_id, &dns.record, kind, budget).await?;
    if !record_points_at(find_record(&records, &dns.record, kind), value, dns.ttl) {
        return Ok(false);
    }
    route53
        .delete(&dns.hosted_zone_id, &dns.record, kind, dns.ttl, value, budget, gate.as_ref())
        .await?;
    Ok(true)
}
