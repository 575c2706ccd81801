//! Route 53 records: the holder points the record at its address with one UPSERT (the name
//! never stops resolving), waits until Route 53 reports the change INSYNC on every
//! authoritative server, and reads the record back, comparing exact values and the TTL.
//!
//! The same change batch writes the record's ownership record, a TXT record at
//! `_corosync-eip.<record>` naming the holder's instance, an epoch and the value: a holder
//! elected in another partition that finds the record pointed by a newer holder leaves it,
//! where it would otherwise take it back at every monitor interval (a tug of war over DNS).
//!
//! A failed read in a monitor round is "unknown", never a reason to move: a Pacemaker agent's
//! monitor that failed on throttling once caused false failovers (resource-agents PR #1360).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{AcquireError, Acquired, Gate, Judgement, Observed};
use crate::config::DnsConfig;
use crate::core::holder::Verdict;
use crate::core::reconcile::{
    backoff, find_record, judge_record, next_record_epoch, owner_record_name, record_owner, record_points_at, DriftVerdict, Identity, ObservedRecord,
    RecordOwnership,
};
use crate::ec2::{Ec2, Ec2Error, ErrorClass};
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

/// ListResourceRecordSets → UPSERT of the record and its ownership record → GetChange until
/// INSYNC → read back. The read first finds the epoch to outbid; it is also what spares the
/// write when the record and its ownership record already name us (a restart, a reload).
/// The read is skipped where an EIP's is (`Start::epoch_elsewhere`): after a failover where one
/// partition alone can be quorate, the new ownership record outbids the one the departed
/// holder announced.
pub async fn acquire(ctx: &super::Context, target: &DnsTarget, gate: Gate, budget: Duration, start: &super::Start) -> Result<Acquired, AcquireError> {
    let route53 = &ctx.route53;
    let dns = &target.config;
    let me = &ctx.me.instance_id;
    let held_elsewhere = start.held_elsewhere;
    let value = target.resolve(&ctx.ec2, ctx.me.network_interface_id.as_deref(), budget).await?;
    let kind = dns.record_type.as_str();
    let read = || async { route53.record(&dns.hosted_zone_id, &dns.record, kind, budget).await };
    let outbid = start.outbid();
    // Our epoch if the record and its owner already name us; the epoch a new claim takes; the
    // values the record leaves (empty: not read); what the read found.
    let (mut epoch, next, from, before) = match outbid {
        Some(next) => (None, next, Vec::new(), None),
        None => {
            let before = read().await?;
            let current = find_record(&before, &dns.record, kind);
            let in_place = record_points_at(current, value, dns.ttl);
            let ours = match record_owner(&before, &dns.record) {
                Some(o) if in_place && &o.instance_id == me && o.value == value => Some(o.epoch),
                _ => None,
            };
            let from = current.map(|r| r.values.clone()).unwrap_or_default();
            (ours, next_record_epoch(&before, &dns.record), from, Some(before))
        }
    };
    let mut sent = None;
    if epoch.is_none() {
        let claim = RecordOwnership {
            instance_id: me.clone(),
            epoch: next,
            value,
        };
        info!(resource = %dns.name, record = %dns.record, r#type = kind, %value, from = ?from, epoch = claim.epoch, held_elsewhere, read_first = outbid.is_none(), "pointing the record at this node (UPSERT, with its ownership record)");
        sent = Some(Instant::now());
        let change = match route53
            .upsert(&dns.hosted_zone_id, &dns.record, kind, dns.ttl, value, Some(&claim), budget, gate.as_ref())
            .await
        {
            Ok(change) => {
                epoch = Some(claim.epoch);
                change
            }
            // The role may allow the record's name only (a policy older than the ownership
            // record): the record still moves, without the split-brain protection, as a
            // refused CreateTags costs the EC2 kinds.
            Err(e) if matches!(e.class, ErrorClass::Permission) => {
                warn!(resource = %dns.name, record = %dns.record, error = %e, owner = %owner_record_name(&dns.record), "cannot write the ownership record; split-brain protection is off for this record (allow TXT and its name in the role's policy)");
                route53
                    .upsert(&dns.hosted_zone_id, &dns.record, kind, dns.ttl, value, None, budget, gate.as_ref())
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
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
    let after = match before {
        Some(before) if sent.is_none() => before,
        _ => read().await?,
    };
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
        epoch,
    })
}

/// Reads a monitor round's ListResourceRecordSets of the record's zone for one record we hold.
/// `epoch`: the ownership epoch we wrote (None: we could not write it, so we never yield).
pub fn judge(target: &DnsTarget, seen: &Result<Vec<ObservedRecord>, Ec2Error>, me: &Identity, epoch: Option<u64>) -> Option<Judgement> {
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
    // A value never read (EC2 unreachable since start-up) cannot be ours: repair, which
    // reads it again.
    let verdict = match target.value() {
        None => Verdict::Repair,
        Some(value) => match judge_record(records, &dns.record, dns.record_type.as_str(), value, dns.ttl, &me.instance_id, epoch) {
            DriftVerdict::Ours => Verdict::Ours,
            DriftVerdict::Repair => Verdict::Repair,
            DriftVerdict::Yield { to, epoch } => {
                warn!(resource = %dns.name, record = %dns.record, to = %to, epoch, "a holder elected in another partition pointed the record after us; not taking it back");
                Verdict::Yield { to, epoch }
            }
        },
    };
    Some(Judgement {
        verdict,
        observed: Some(Observed::Dns(record.unwrap_or_default())),
        address_present: None,
    })
}

/// Deletes the record if it still points at this node's value, with its ownership record if
/// that names this node: what a holder with `delete_on_release` does when it stops and no
/// other member can take the record. `Ok(false)`: the record points elsewhere (or is gone), so
/// it is left alone.
pub async fn delete_if_ours(route53: &Route53, target: &DnsTarget, me: &Identity, gate: Gate, budget: Duration) -> Result<bool, AcquireError> {
    let dns = &target.config;
    // Never read: never written by us.
    let Some(value) = target.value() else { return Ok(false) };
    let kind = dns.record_type.as_str();
    let records = route53.record(&dns.hosted_zone_id, &dns.record, kind, budget).await?;
    if !record_points_at(find_record(&records, &dns.record, kind), value, dns.ttl) {
        return Ok(false);
    }
    let owner = record_owner(&records, &dns.record)
        .filter(|o| o.instance_id == me.instance_id)
        .and_then(|_| find_record(&records, &owner_record_name(&dns.record), "TXT"));
    match route53.delete(&dns.hosted_zone_id, &dns.record, kind, dns.ttl, value, owner, budget, gate.as_ref()).await {
        Ok(_) => {}
        // As for the UPSERT: a role allowed the record's name only still deletes the record.
        Err(e) if owner.is_some() && matches!(e.class, ErrorClass::Permission) => {
            warn!(resource = %dns.name, record = %dns.record, error = %e, "cannot delete the ownership record; deleting the record alone");
            route53
                .delete(&dns.hosted_zone_id, &dns.record, kind, dns.ttl, value, None, budget, gate.as_ref())
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(true)
}
