//! Elastic IPs: `AssociateAddress` with reassociation allowed moves the address in one call, so
//! it is never unassociated during a move. An ownership record (tags with an epoch) written
//! before each move lets a holder tell a repair from a newer holder elected elsewhere.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{AcquireError, Acquired, Gate, Judgement, Observed, Start, TOGETHER};
use crate::config::EipConfig;
use crate::core::holder::Verdict;
use crate::core::reconcile::{
    backoff, decide_eip, judge_eip, next_epoch, points_at, DriftVerdict, EipAction, Identity, ObservedEip, Ownership,
};
use crate::ec2::{Ec2, Ec2Error, ErrorClass};

/// How long writing the ownership record may take.
const RECORD_BUDGET: Duration = Duration::from_secs(2);

/// Describe → record → associate → verify: makes EC2 point the address at us, and proves it.
/// The first read carries the ownership record the new one must outbid; it is skipped only
/// after a failover in a cluster where one partition alone can be quorate, whose agreed view
/// names that record's epoch (`Start::epoch_elsewhere`). Both reads are shared with the
/// acquisitions started with this one, and so is the record's CreateTags.
pub async fn acquire(
    ec2: &Ec2,
    eip: &EipConfig,
    me: &Identity,
    gate: Gate,
    budget: Duration,
    start: Start,
) -> Result<Acquired, AcquireError> {
    let outbid = start.outbid();
    let mut together = start.cohort;
    let describe = |budget| ec2.describe_addresses(std::slice::from_ref(&eip.allocation_id), budget);
    let find = |list: Vec<ObservedEip>| {
        list.into_iter().find(|o| o.allocation_id == eip.allocation_id).ok_or_else(|| Ec2Error {
            api: "DescribeAddresses",
            class: ErrorClass::NotFound,
            code: None,
            message: format!("allocation {} not found in this region/account", eip.allocation_id),
        })
    };
    // The record goes first. A holder elected in another partition that reads the address from
    // now on sees a newer owner and yields; written after the association, it would leave a
    // moment in which that holder sees the address moved under its own record, takes it for
    // drift and takes it back.
    let (epoch, from_instance, drift) = match outbid {
        // A failover where only one partition can be quorate: the agreed view says the
        // address is on the departed holder, under the record it announced. Outbidding that
        // record needs no read; the read-back proves where the address went.
        Some(next) => (record(ec2, &eip.allocation_id, me, next, &gate).await?, None, false),
        None => {
            let observed = describe(budget).await.and_then(find)?;
            let drift = match decide_eip(&observed, me, eip.private_ip) {
                EipAction::AlreadyOurs => {
                    // Our own record stands (a restart or reload); anything else is rewritten.
                    let epoch = match &observed.owner {
                        Some(o) if o.instance_id == me.instance_id => Some(o.epoch),
                        _ => record(ec2, &eip.allocation_id, me, next_epoch(&observed), &gate).await?,
                    };
                    return Ok(Acquired {
                        observed: Observed::Eip(observed),
                        sent: None,
                        verified: Instant::now(),
                        epoch,
                    });
                }
                EipAction::Associate { drift } => drift,
            };
            let epoch = record(ec2, &eip.allocation_id, me, next_epoch(&observed), &gate).await?;
            (epoch, observed.instance_id, drift)
        }
    };
    info!(resource = %eip.name, allocation = %eip.allocation_id, from_instance = ?from_instance, drift, epoch, read_first = outbid.is_none(), "associating address (AllowReassociation)");
    let sent = Instant::now();
    // A transient failure may come after EC2 applied the call (a timeout): look before sending
    // it again, so one failover never becomes two moves.
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    loop {
        let error = match ec2.associate_address(&eip.allocation_id, me, eip.private_ip, Duration::ZERO, gate.as_ref()).await {
            Ok(_) => break,
            Err(e) if e.class != ErrorClass::Transient || Instant::now() >= deadline => return Err(e.into()),
            Err(e) => e,
        };
        warn!(resource = %eip.name, error = %error, "AssociateAddress failed transiently; checking EC2 before retrying");
        tokio::time::sleep(backoff(attempt, Duration::from_millis(40), Duration::from_secs(2), rand::random())).await;
        attempt += 1;
        if points_at(&describe(budget).await.and_then(find)?, me, eip.private_ip) {
            break;
        }
    }
    together.sent_and_wait(TOGETHER).await;
    // EC2 is eventually consistent: read back until it shows us.
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    loop {
        let o = describe(budget).await.and_then(find)?;
        if points_at(&o, me, eip.private_ip) {
            return Ok(Acquired {
                observed: Observed::Eip(o),
                sent: Some(sent),
                verified: Instant::now(),
                epoch,
            });
        }
        if Instant::now() >= deadline {
            return Err(Ec2Error {
                api: "DescribeAddresses",
                class: ErrorClass::Refused,
                code: None,
                message: format!(
                    "after AssociateAddress EC2 still shows instance {:?} / interface {:?}",
                    o.instance_id, o.network_interface_id
                ),
            }
            .into());
        }
        tokio::time::sleep(backoff(attempt, Duration::from_millis(10), Duration::from_millis(500), rand::random())).await;
        attempt += 1;
    }
}

/// Writes our ownership record with at least `epoch` (concurrent acquisitions share one
/// CreateTags, and its epoch), and returns the epoch written. A refusal (e.g. no
/// ec2:CreateTags permission) only costs the split-brain protection, so it is logged and the
/// address stays held (`Ok(None)`); a closed gate means we are no longer the holder (`Err`).
async fn record(ec2: &Ec2, allocation_id: &str, me: &Identity, epoch: u64, gate: &Gate) -> Result<Option<u64>, AcquireError> {
    let owner = Ownership {
        instance_id: me.instance_id.clone(),
        epoch,
    };
    match ec2.claim(allocation_id, &owner, RECORD_BUDGET, gate.clone()).await {
        Ok(written) => Ok(Some(written)),
        Err(e) if e.class == ErrorClass::Cancelled => Err(e.into()),
        Err(e) => {
            warn!(allocation = %allocation_id, error = %e, "cannot write the ownership tags; split-brain protection is off for this address");
            Ok(None)
        }
    }
}

/// Reads a monitor round's DescribeAddresses for one EIP we hold.
pub fn judge(eip: &EipConfig, seen: &Result<Vec<ObservedEip>, Ec2Error>, me: &Identity, epoch: Option<u64>) -> Option<Judgement> {
    let list = match seen {
        Err(e) => return Some(unknown(e.to_string())),
        Ok(list) => list,
    };
    let Some(o) = list.iter().find(|o| o.allocation_id == eip.allocation_id) else {
        return Some(unknown(format!("allocation {} is missing from DescribeAddresses", eip.allocation_id)));
    };
    let verdict = match judge_eip(o, me, eip.private_ip, epoch) {
        DriftVerdict::Ours => Verdict::Ours,
        DriftVerdict::Repair => Verdict::Repair,
        DriftVerdict::Yield { to, epoch } => {
            warn!(resource = %eip.name, to = %to, epoch, "a holder elected in another partition took the address after us; not taking it back");
            Verdict::Yield { to, epoch }
        }
    };
    Some(Judgement {
        verdict,
        observed: Some(Observed::Eip(o.clone())),
        address_present: None,
    })
}

fn unknown(reason: String) -> Judgement {
    Judgement {
        verdict: Verdict::Unknown(reason),
        observed: None,
        address_present: None,
    }
}
