//! Secondary private IPs: an address of the nodes' subnet, assigned to the holder's ENI with
//! `AssignPrivateIpAddresses` and reassignment allowed, so one call takes it from the old
//! holder's ENI and the address is never unassigned during a move. The holder also puts the
//! address on its interface (as a /32, so no second route to the subnet appears).
//!
//! IPv6 addresses move with `UnassignIpv6Addresses` on the old ENI, then `AssignIpv6Addresses`
//! on ours: EC2 offers no reassignment for them, so such a move leaves a short gap.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{AcquireError, Acquired, Gate, Judgement, Observed, Start, TOGETHER};
use crate::config::SecondaryIpConfig;
use crate::core::holder::Verdict;
use crate::core::reconcile::{
    address_record, address_record_key, backoff, decide_secondary, judge_address, next_address_epoch, secondary_points_at, DriftVerdict,
    Identity, InterfaceOwnership, ObservedInterface, SecondaryAction,
};
use crate::ec2::{Ec2, Ec2Error, ErrorClass};
use crate::localaddr::LocalAddresses;

/// How long writing the ownership record may take.
const RECORD_BUDGET: Duration = Duration::from_secs(2);

/// DescribeNetworkInterfaces → ownership record on our ENI → AssignPrivateIpAddresses
/// (AllowReassignment) → verify that the address is on our ENI and only there → put it on our
/// interface. The first read says where the address is and carries the ownership record the
/// new one must outbid, which is written before the address moves (as an EIP's is); an IPv4
/// move skips it where an EIP's would (`Start::epoch_elsewhere`). Both reads, the record's
/// CreateTags and the assignment are shared with the acquisitions started with this one.
pub async fn acquire(
    ec2: &Ec2,
    addresses: Option<&LocalAddresses>,
    secondary: &SecondaryIpConfig,
    me: &Identity,
    gate: Gate,
    budget: Duration,
    start: Start,
) -> Result<Acquired, AcquireError> {
    let outbid = start.outbid();
    let mut together = start.cohort;
    let eni = me.network_interface_id.clone().ok_or(AcquireError::NoInterface)?;
    let addresses = addresses.ok_or_else(|| AcquireError::Setup("local address management is not available".into()))?;
    let address = secondary.address;
    // After a failover where one partition alone can be quorate, the agreed view says the
    // address is on the departed holder's ENI, under the record it announced: outbidding that
    // record needs no read. Reassignment takes the address from wherever it is; an IPv6 move
    // must name the ENI it leaves, so it always reads first.
    let outbid = outbid.filter(|_| address.is_ipv4());
    // The ENIs the address leaves (None: it is ours already; empty: not read).
    let (epoch, from) = match outbid {
        Some(next) => (record(ec2, secondary, &eni, next, &gate).await?, Some(Vec::new())),
        None => {
            let seen = ec2.describe_interfaces_with(&[address], budget).await?;
            let from = match decide_secondary(&seen, address, &eni) {
                SecondaryAction::AlreadyOurs => None,
                SecondaryAction::Assign { from } => Some(from),
                SecondaryAction::Primary { of } => {
                    return Err(AcquireError::Setup(format!(
                        "{address} is the primary address of {of}; EC2 never moves a primary address"
                    )))
                }
            };
            let epoch = match address_record(&seen, address) {
                // Our own record stands where the address is ours already (a restart or reload).
                Some(r) if r.network_interface_id == eni && from.is_none() => Some(r.epoch),
                _ => record(ec2, secondary, &eni, next_address_epoch(&seen, address), &gate).await?,
            };
            (epoch, from)
        }
    };
    let sent = match from {
        Some(from) => Some(assign(ec2, secondary, &from, &eni, &gate, budget).await?),
        None => None,
    };
    together.sent_and_wait(TOGETHER).await;
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    let verified = loop {
        let seen = ec2.describe_interfaces_with(&[address], budget).await?;
        if secondary_points_at(&seen, address, &eni) {
            break seen;
        }
        if Instant::now() >= deadline {
            return Err(AcquireError::NotVerified(format!(
                "after AssignPrivateIpAddresses EC2 shows {address} on {:?}, not on {eni} alone",
                crate::core::reconcile::interfaces_with(&seen, address)
            )));
        }
        tokio::time::sleep(backoff(attempt, Duration::from_millis(10), Duration::from_millis(500), rand::random())).await;
        attempt += 1;
    };
    addresses
        .ensure_present(&secondary.interface, address, if address.is_ipv4() { 32 } else { 128 }, secondary.label.as_deref())
        .await
        .map_err(|e| AcquireError::Local(e.to_string()))?;
    Ok(Acquired {
        observed: Observed::Secondary(mine(&verified, secondary)),
        sent,
        verified: Instant::now(),
        epoch,
    })
}

/// Writes our ownership record for the address on our ENI. A refusal (e.g. no ec2:CreateTags
/// on network interfaces) only costs the split-brain protection, so it is logged and the
/// address is still taken (`Ok(None)`); a closed gate means we are no longer the holder (`Err`).
async fn record(ec2: &Ec2, secondary: &SecondaryIpConfig, eni: &str, epoch: u64, gate: &Gate) -> Result<Option<u64>, AcquireError> {
    let record = InterfaceOwnership {
        network_interface_id: eni.to_owned(),
        epoch,
    };
    let key = address_record_key(secondary.address);
    match ec2.write_record(&[eni.to_owned()], &key, &record.tag_value(), RECORD_BUDGET, gate.clone()).await {
        Ok(()) => Ok(Some(epoch)),
        Err(e) if e.class == ErrorClass::Cancelled => Err(e.into()),
        Err(e) => {
            warn!(resource = %secondary.name, eni = %eni, error = %e, "cannot write the ownership tag on this node's interface; split-brain protection is off for this address");
            Ok(None)
        }
    }
}

/// Moves the address to `eni` from the ENIs that carry it: when the change was sent.
async fn assign(ec2: &Ec2, secondary: &SecondaryIpConfig, from: &[String], eni: &str, gate: &Gate, budget: Duration) -> Result<Instant, AcquireError> {
    let address = secondary.address;
    let sent = Instant::now();
    match address {
        IpAddr::V4(v4) => {
            info!(resource = %secondary.name, %address, from = ?from, "assigning the address to this node's interface (AllowReassignment)");
            ec2.assign_private_ip(eni, v4, budget, gate.clone()).await?;
        }
        IpAddr::V6(v6) => {
            // EC2 has no reassignment for IPv6: the address is on no ENI between the two
            // calls (the gap is measured by the lab's tests and the README says so).
            for other in from {
                warn!(resource = %secondary.name, %address, from = %other, "moving an IPv6 address is not atomic: unassigning it from the old interface first");
                match ec2.unassign_ipv6(other, &[v6], budget, gate.as_ref()).await {
                    Ok(()) => {}
                    // Gone from there meanwhile: nothing left to take away.
                    Err(e) if e.class == ErrorClass::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
            info!(resource = %secondary.name, %address, "assigning the IPv6 address to this node's interface");
            ec2.assign_ipv6(eni, &[v6], budget, gate.as_ref()).await?;
        }
    }
    Ok(sent)
}

/// The interfaces that carry this address (a monitor round reads them for every address).
fn mine(seen: &[ObservedInterface], secondary: &SecondaryIpConfig) -> Vec<ObservedInterface> {
    let holders = crate::core::reconcile::interfaces_with(seen, secondary.address);
    seen.iter().filter(|i| holders.contains(&i.network_interface_id)).cloned().collect()
}

/// Reads a monitor round's DescribeNetworkInterfaces (and our interface) for one secondary IP
/// we hold.
pub fn judge(
    secondary: &SecondaryIpConfig,
    seen: &Result<Vec<ObservedInterface>, Ec2Error>,
    me: &Identity,
    present: bool,
    epoch: Option<u64>,
) -> Option<Judgement> {
    let seen = match seen {
        Err(e) => {
            return Some(Judgement {
                verdict: Verdict::Unknown(e.to_string()),
                observed: None,
                address_present: None,
            })
        }
        Ok(seen) => seen,
    };
    let eni = me.network_interface_id.clone().unwrap_or_default();
    let verdict = match judge_address(seen, secondary.address, &eni, epoch) {
        DriftVerdict::Ours if present => Verdict::Ours,
        DriftVerdict::Ours | DriftVerdict::Repair => Verdict::Repair,
        DriftVerdict::Yield { to, epoch } => {
            warn!(resource = %secondary.name, to = %to, epoch, "a holder elected in another partition took the address after us; not taking it back");
            Verdict::Yield { to, epoch }
        }
    };
    Some(Judgement {
        verdict,
        observed: Some(Observed::Secondary(mine(seen, secondary))),
        address_present: Some(present),
    })
}
