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
use crate::core::reconcile::{backoff, decide_secondary, secondary_points_at, Identity, ObservedInterface, SecondaryAction};
use crate::ec2::{Ec2, Ec2Error, ErrorClass};
use crate::localaddr::LocalAddresses;

/// (DescribeNetworkInterfaces →) AssignPrivateIpAddresses (AllowReassignment) → verify that
/// the address is on our ENI and only there → put it on our interface. When the agreed view says
/// another node held the address until now (`start.held_elsewhere`), an IPv4 address is
/// assigned without a read first (reassignment takes it from wherever it is); a refusal gets
/// the careful path, which says why (e.g. the address is another ENI's primary). The read-back
/// is shared with the acquisitions started with this one.
pub async fn acquire(
    ec2: &Ec2,
    addresses: Option<&LocalAddresses>,
    secondary: &SecondaryIpConfig,
    me: &Identity,
    gate: Gate,
    budget: Duration,
    start: Start,
) -> Result<Acquired, AcquireError> {
    let Start {
        held_elsewhere,
        cohort: mut together,
    } = start;
    let eni = me.network_interface_id.clone().ok_or(AcquireError::NoInterface)?;
    let addresses = addresses.ok_or_else(|| AcquireError::Setup("local address management is not available".into()))?;
    let address = secondary.address;
    let sent = match address {
        IpAddr::V4(v4) if held_elsewhere => {
            info!(resource = %secondary.name, %address, "assigning the address to this node's interface (AllowReassignment)");
            let sent = Instant::now();
            match ec2.assign_private_ip(&eni, v4, budget, gate.clone()).await {
                Ok(()) => Some(sent),
                Err(e) if matches!(e.class, ErrorClass::Cancelled | ErrorClass::Transient | ErrorClass::Permission) => return Err(e.into()),
                Err(e) => {
                    warn!(resource = %secondary.name, %address, error = %e, "AssignPrivateIpAddresses refused; reading where the address is");
                    place(ec2, secondary, &eni, &gate, budget).await?.or(Some(sent))
                }
            }
        }
        _ => place(ec2, secondary, &eni, &gate, budget).await?,
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
        epoch: None,
    })
}

/// Reads where the address is and moves it to `eni` if it is not there yet: when the change
/// was sent, None when nothing needed to change.
async fn place(ec2: &Ec2, secondary: &SecondaryIpConfig, eni: &str, gate: &Gate, budget: Duration) -> Result<Option<Instant>, AcquireError> {
    let address = secondary.address;
    let seen = ec2.describe_interfaces_with(&[address], budget).await?;
    let mut sent = None;
    match decide_secondary(&seen, address, eni) {
        SecondaryAction::AlreadyOurs => {}
        SecondaryAction::Primary { of } => {
            return Err(AcquireError::Setup(format!(
                "{address} is the primary address of {of}; EC2 never moves a primary address"
            )))
        }
        SecondaryAction::Assign { from } => match address {
            IpAddr::V4(v4) => {
                info!(resource = %secondary.name, %address, from = ?from, "assigning the address to this node's interface (AllowReassignment)");
                sent = Some(Instant::now());
                ec2.assign_private_ip(eni, v4, budget, gate.clone()).await?;
            }
            IpAddr::V6(v6) => {
                // EC2 has no reassignment for IPv6: the address is on no ENI between the two
                // calls (the gap is measured by the lab's tests and the README says so).
                sent = Some(Instant::now());
                for other in &from {
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
        },
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
    let ours = secondary_points_at(seen, secondary.address, &eni);
    Some(Judgement {
        verdict: if ours && present { Verdict::Ours } else { Verdict::Repair },
        observed: Some(Observed::Secondary(mine(seen, secondary))),
        address_present: Some(present),
    })
}
