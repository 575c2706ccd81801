//! Route-table VIPs: a private address outside the VPC's subnets, routed to the holder's
//! interface by a /32 route in every listed route table (`ReplaceRoute`, or `CreateRoute` where
//! allowed), and put on the holder's interface over netlink so it answers for it.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{AcquireError, Acquired, Gate, Judgement, Observed, Start, TOGETHER};
use crate::config::VipConfig;
use crate::core::holder::Verdict;
use crate::core::reconcile::{all_routes_point_at, backoff, decide_route, Identity, ObservedRouteTable, RouteAction};
use crate::ec2::{Ec2, Ec2Error, ErrorClass};
use crate::localaddr::LocalAddresses;

/// (DescribeRouteTables →) ReplaceRoute/CreateRoute in every table at once → verify → put the
/// address on our interface. When the agreed view says another node held the address until now
/// (`start.held_elsewhere`), every route points elsewhere and ReplaceRoute goes out without a
/// read first; a table that refuses it (no such route yet) gets the careful path. The read-back
/// is shared with the acquisitions started with this one.
pub async fn acquire(
    ec2: &Ec2,
    addresses: Option<&LocalAddresses>,
    vip: &VipConfig,
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
    let destination = vip.destination();
    if vip.route_tables.is_empty() {
        return Err(AcquireError::Setup("no route table to point at this node (see the route_table_tag warning)".into()));
    }
    let sent = if held_elsewhere {
        info!(resource = %vip.name, destination = %destination, tables = ?vip.route_tables, "pointing routes at this node");
        let sent = Instant::now();
        let calls = vip.route_tables.iter().map(|id| ec2.set_route(id, &destination, &eni, false, budget, gate.as_ref()));
        match futures_util::future::join_all(calls).await.into_iter().find_map(Result::err) {
            None => Some(sent),
            Some(e) if matches!(e.class, ErrorClass::Cancelled | ErrorClass::Transient | ErrorClass::Permission) => return Err(e.into()),
            Some(e) => {
                warn!(resource = %vip.name, error = %e, "ReplaceRoute refused; reading the route tables to decide per table");
                point_routes(ec2, vip, &eni, &destination, &gate, budget).await?.or(Some(sent))
            }
        }
    } else {
        point_routes(ec2, vip, &eni, &destination, &gate, budget).await?
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
        epoch: None,
    })
}

/// Reads every table and changes those that do not route `destination` to `eni` yet: when
/// the change was sent, None when nothing needed to change.
async fn point_routes(
    ec2: &Ec2,
    vip: &VipConfig,
    eni: &str,
    destination: &str,
    gate: &Gate,
    budget: Duration,
) -> Result<Option<Instant>, AcquireError> {
    let tables = ec2.describe_route_tables(&vip.route_tables, budget).await?;
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

/// Reads a monitor round's DescribeRouteTables (and our interface) for one VIP we hold.
pub fn judge(vip: &VipConfig, seen: &Result<Vec<ObservedRouteTable>, Ec2Error>, me: &Identity, present: bool) -> Option<Judgement> {
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
    let routes_ok = all_routes_point_at(&mine, &vip.route_tables, &vip.destination(), &eni);
    Some(Judgement {
        verdict: if routes_ok && present { Verdict::Ours } else { Verdict::Repair },
        observed: Some(Observed::Vip(mine)),
        address_present: Some(present),
    })
}
