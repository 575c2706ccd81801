//! Route-table VIPs: a private address outside the VPC's subnets, routed to the holder's
//! interface by a /32 route in every listed route table (`ReplaceRoute`, or `CreateRoute` where
//! allowed), and put on the holder's interface over netlink so it answers for it.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{AcquireError, Acquired, Gate, Judgement, Observed, Start, TOGETHER};
use crate::config::VipConfig;
use crate::core::holder::Verdict;
use crate::core::reconcile::{
    all_routes_point_at, backoff, decide_route, judge_route, next_route_epoch, route_record, route_record_key, DriftVerdict, Identity,
    InterfaceOwnership, ObservedRouteTable, RouteAction,
};
use crate::ec2::{Ec2, Ec2Error, ErrorClass};
use crate::localaddr::LocalAddresses;

/// How long writing the ownership record may take.
const RECORD_BUDGET: Duration = Duration::from_secs(2);

/// DescribeRouteTables → ownership record → ReplaceRoute/CreateRoute in every table at once →
/// verify → put the address on our interface. The first read carries the ownership record the
/// new one must outbid, which goes on every table before the routes move (as an EIP's does),
/// and says which tables need CreateRoute. It is skipped where an EIP's is
/// (`Start::epoch_elsewhere`): the departed holder had verified a route in every table, so
/// each gets ReplaceRoute; a table that refuses it sends the acquisition back to the read.
/// Both reads and the record's CreateTags are shared with the acquisitions started with this
/// one.
pub async fn acquire(
    ec2: &Ec2,
    addresses: Option<&LocalAddresses>,
    vip: &VipConfig,
    me: &Identity,
    gate: Gate,
    budget: Duration,
    start: Start,
) -> Result<Acquired, AcquireError> {
    let outbid = start.outbid();
    let mut together = start.cohort;
    let eni = me.network_interface_id.clone().ok_or(AcquireError::NoInterface)?;
    let addresses = addresses.ok_or_else(|| AcquireError::Setup("local address management is not available".into()))?;
    let destination = vip.destination();
    if vip.route_tables.is_empty() {
        return Err(AcquireError::Setup("no route table to point at this node (see the route_table_tag warning)".into()));
    }
    let unread = match outbid {
        Some(next) => {
            let epoch = record(ec2, vip, &eni, next, &gate).await?;
            let every: Vec<(String, bool)> = vip.route_tables.iter().map(|id| (id.clone(), false)).collect();
            match change_routes(ec2, vip, &every, &eni, &destination, &gate, budget).await {
                Ok(sent) => Some((epoch, sent)),
                // Permission, throttling and a closed gate mean the same after a read.
                Err(AcquireError::Ec2(e)) if matches!(e.class, ErrorClass::Permission | ErrorClass::Transient | ErrorClass::Cancelled) => {
                    return Err(e.into())
                }
                // A route deleted or a table changed by hand since the old holder verified:
                // read, and plan as a first start does (CreateRoute, or the setup error).
                Err(e) => {
                    warn!(resource = %vip.name, error = %e, "ReplaceRoute in every table failed; reading the tables and planning again");
                    None
                }
            }
        }
        None => None,
    };
    let (epoch, sent) = match unread {
        Some(done) => done,
        None => {
            let tables = ec2.describe_route_tables(&vip.route_tables, budget).await?;
            let changes = plan_routes(vip, &tables, &eni, &destination)?;
            let epoch = match route_record(&tables, &vip.route_tables, &destination) {
                // Our own record stands where the routes are ours already (a restart, a reload,
                // or the record just written before a refused ReplaceRoute).
                Some(r) if r.network_interface_id == eni && (changes.is_empty() || outbid == Some(r.epoch)) => Some(r.epoch),
                _ => record(ec2, vip, &eni, next_route_epoch(&tables, &vip.route_tables, &destination), &gate).await?,
            };
            (epoch, change_routes(ec2, vip, &changes, &eni, &destination, &gate, budget).await?)
        }
    };
    together.sent_and_wait(TOGETHER).await;
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    let verified_tables = loop {
        let tables = ec2.describe_route_tables(&vip.route_tables, budget).await?;
        if all_routes_point_at(&tables, &vip.route_tables, &destination, &eni) {
            // The read may be shared with other addresses' tables.
            break tables.into_iter().filter(|t| vip.route_tables.contains(&t.route_table_id)).collect::<Vec<_>>();
        }
        if Instant::now() >= deadline {
            return Err(AcquireError::NotVerified(format!(
                "after ReplaceRoute EC2 still does not route {destination} to {eni} in every table"
            )));
        }
        tokio::time::sleep(backoff(attempt, Duration::from_millis(10), Duration::from_millis(500), rand::random())).await;
        attempt += 1;
    };
    addresses
        .ensure_present(&vip.interface, vip.address, if vip.address.is_ipv4() { 32 } else { 128 }, vip.label.as_deref())
        .await
        .map_err(|e| AcquireError::Local(e.to_string()))?;
    Ok(Acquired {
        observed: Observed::Vip(verified_tables),
        sent,
        verified: Instant::now(),
        epoch,
    })
}

/// Writes our ownership record on every table of the VIP. A refusal (e.g. no ec2:CreateTags
/// on route tables) only costs the split-brain protection, so it is logged and the address is
/// still taken (`Ok(None)`); a closed gate means we are no longer the holder (`Err`).
async fn record(ec2: &Ec2, vip: &VipConfig, eni: &str, epoch: u64, gate: &Gate) -> Result<Option<u64>, AcquireError> {
    let record = InterfaceOwnership {
        network_interface_id: eni.to_owned(),
        epoch,
    };
    let key = route_record_key(&vip.destination());
    match ec2.write_record(&vip.route_tables, &key, &record.tag_value(), RECORD_BUDGET, gate.clone()).await {
        Ok(()) => Ok(Some(epoch)),
        Err(e) if e.class == ErrorClass::Cancelled => Err(e.into()),
        Err(e) => {
            warn!(resource = %vip.name, tables = ?vip.route_tables, error = %e, "cannot write the ownership tag on the route tables; split-brain protection is off for this address");
            Ok(None)
        }
    }
}

/// The tables (as just read) that do not route `destination` to `eni` yet, and whether each
/// needs CreateRoute rather than ReplaceRoute. A missing route or table is a setup error every
/// node would meet.
fn plan_routes(vip: &VipConfig, tables: &[ObservedRouteTable], eni: &str, destination: &str) -> Result<Vec<(String, bool)>, AcquireError> {
    let mut changes = Vec::new();
    for id in &vip.route_tables {
        let table = tables.iter().find(|t| &t.route_table_id == id);
        match decide_route(table, destination, eni, vip.create_route) {
            RouteAction::AlreadyOurs => {}
            RouteAction::Replace { .. } => changes.push((id.clone(), false)),
            RouteAction::Create => changes.push((id.clone(), true)),
            RouteAction::Missing => {
                return Err(AcquireError::Setup(format!(
                    "route table {id} has no route for {destination}; create it or set create_route = true"
                )))
            }
            RouteAction::NoTable => return Err(AcquireError::Setup(format!("route table {id} not found in this region/account"))),
        }
    }
    Ok(changes)
}

/// Sends the planned changes, all tables at once: when they were sent, None when nothing
/// needed to change.
async fn change_routes(
    ec2: &Ec2,
    vip: &VipConfig,
    changes: &[(String, bool)],
    eni: &str,
    destination: &str,
    gate: &Gate,
    budget: Duration,
) -> Result<Option<Instant>, AcquireError> {
    if changes.is_empty() {
        return Ok(None);
    }
    info!(resource = %vip.name, destination = %destination, tables = ?changes.iter().map(|c| &c.0).collect::<Vec<_>>(), "pointing routes at this node");
    let sent = Instant::now();
    let calls = changes
        .iter()
        .map(|(id, create)| ec2.set_route(id, destination, eni, *create, budget, gate.as_ref()));
    for result in futures_util::future::join_all(calls).await {
        result?;
    }
    Ok(Some(sent))
}

/// Reads a monitor round's DescribeRouteTables (and our interface) for one VIP we hold;
/// `epoch` is the ownership record we wrote.
pub fn judge(vip: &VipConfig, seen: &Result<Vec<ObservedRouteTable>, Ec2Error>, me: &Identity, present: bool, epoch: Option<u64>) -> Option<Judgement> {
    let tables = match seen {
        Err(e) => {
            return Some(Judgement {
                verdict: Verdict::Unknown(e.to_string()),
                observed: None,
                address_present: None,
            })
        }
        Ok(tables) => tables,
    };
    let mine: Vec<ObservedRouteTable> = tables
        .iter()
        .filter(|t| vip.route_tables.contains(&t.route_table_id))
        .cloned()
        .collect();
    let eni = me.network_interface_id.clone().unwrap_or_default();
    let verdict = match judge_route(&mine, &vip.route_tables, &vip.destination(), &eni, epoch) {
        DriftVerdict::Ours if present => Verdict::Ours,
        DriftVerdict::Ours | DriftVerdict::Repair => Verdict::Repair,
        DriftVerdict::Yield { to, epoch } => {
            warn!(resource = %vip.name, to = %to, epoch, "a holder elected in another partition took the routes after us; not taking them back");
            Verdict::Yield { to, epoch }
        }
    };
    Some(Judgement {
        verdict,
        observed: Some(Observed::Vip(mine)),
        address_present: Some(present),
    })
}
