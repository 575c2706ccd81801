//! The items EC2 answers: this instance, the permissions (DryRun) and the configured
//! resources.

use std::collections::BTreeMap;

use super::{CheckItem, CheckStatus};
use crate::config::Config;
use crate::ec2::{attempt_within, primary_interface_of, ErrorClass};
use crate::permissions::{self, Outcome, Probe, CALL_BUDGET};
use super::aws::ImdsInfo;

/// Who we are in EC2, as far as it can be found.
struct Me {
    instance_id: Option<String>,
    eni: Option<String>,
}

/// This instance, every permission and every configured resource, as EC2 sees them.
pub(super) async fn ec2_checks(
    config: &Config,
    client: &aws_sdk_ec2::Client,
    route53: &aws_sdk_route53::Client,
    route_clients: &BTreeMap<String, aws_sdk_ec2::Client>,
    imds: Option<&ImdsInfo>,
) -> Vec<CheckItem> {
    let mut items = Vec::new();

    // this instance and its ENI
    let instance_id = config
        .node
        .instance_id
        .clone()
        .or_else(|| imds.map(|i| i.instance_id.clone()));
    let mut me = Me {
        instance_id: instance_id.clone(),
        eni: config.node.network_interface_id.clone(),
    };
    match &instance_id {
        Some(id) => {
            let r = attempt_within("DescribeInstances", CALL_BUDGET, client.describe_instances().instance_ids(id).send()).await;
            match r {
                Ok(out) => {
                    let inst = out.reservations().iter().flat_map(|r| r.instances()).next();
                    let primary = inst.and_then(primary_interface_of).map(str::to_string);
                    if me.eni.is_none() {
                        me.eni = primary
                            .clone()
                            .or_else(|| imds.and_then(|i| i.primary_eni()).map(str::to_string));
                    }
                    match (inst, &me.eni) {
                        (Some(i), Some(eni)) => items.push(CheckItem::pass(
                            "this instance",
                            format!(
                                "{id} ({}), ENI {eni}{}",
                                i.state()
                                    .and_then(|s| s.name())
                                    .map(|n| n.as_str())
                                    .unwrap_or("state unknown"),
                                if config.node.network_interface_id.is_some() {
                                    " (from [node])"
                                } else {
                                    ""
                                }
                            ),
                        )),
                        (Some(_), None) => items.push(CheckItem::fail(
                            "this instance",
                            format!("{id} has no network interface at device index 0"),
                            "set [node] network_interface_id",
                        )),
                        (None, _) => items.push(CheckItem::fail(
                            "this instance",
                            format!("{id} not found in this region"),
                            "check [aws] region and [node] instance_id",
                        )),
                    }
                }
                Err(e) if e.class == ErrorClass::NotFound => items.push(CheckItem::fail(
                    "this instance",
                    format!("{id} not found: {}", e.summary()),
                    "the region is probably wrong: check [aws] region; or fix [node] instance_id",
                )),
                Err(e) => {
                    if me.eni.is_none() {
                        me.eni = imds.and_then(|i| i.primary_eni()).map(str::to_string);
                    }
                    items.push(CheckItem::warn(
                        "this instance",
                        format!("DescribeInstances {id}: {}", e.summary()),
                        "see the ec2:DescribeInstances permission item",
                    ));
                }
            }
        }
        None => items.push(CheckItem::fail(
            "this instance",
            "unknown: IMDS did not answer and [node] instance_id is not set",
            "fix IMDS (see above) or set [node] instance_id and network_interface_id",
        )),
    }

    // 4. permissions, beside 5. resources and 6. source/dest check
    let (perm_items, res_items, dns_items) = tokio::join!(
        permission_items(config, client, route53, route_clients, &me),
        resource_checks(config, client, route_clients, &me),
        dns_checks(config, route53)
    );
    items.extend(perm_items);
    items.extend(res_items);
    items.extend(dns_items);
    items
}

/// Each `[[dns]]` zone exists and holds its record's name; says where the record points now.
async fn dns_checks(config: &Config, route53: &aws_sdk_route53::Client) -> Vec<CheckItem> {
    let mut items = Vec::new();
    for d in &config.dns {
        let name = format!("DNS {} ({} {} in {})", d.name, d.record, d.record_type.as_str(), d.hosted_zone_id);
        let zone = match attempt_within("GetHostedZone", CALL_BUDGET, route53.get_hosted_zone().id(&d.hosted_zone_id).send()).await {
            Ok(out) => out.hosted_zone().map(|z| z.name().to_ascii_lowercase()).unwrap_or_default(),
            Err(e) if e.class == ErrorClass::NotFound => {
                items.push(CheckItem::fail(
                    name,
                    format!("hosted zone not found: {}", e.summary()),
                    "check hosted_zone_id against `aws route53 list-hosted-zones` (a zone of another account is not visible)",
                ));
                continue;
            }
            Err(e) => {
                items.push(CheckItem::warn(name, format!("not checked: {}", e.summary()), "see the permission items"));
                continue;
            }
        };
        if !d.in_zone(&zone) {
            items.push(CheckItem::fail(
                name,
                format!("{} is not in the zone {zone}", d.record),
                "a record can only be changed in the zone that holds its name: fix `record` or `hosted_zone_id`",
            ));
            continue;
        }
        let listed = attempt_within(
            "ListResourceRecordSets",
            CALL_BUDGET,
            route53
                .list_resource_record_sets()
                .hosted_zone_id(&d.hosted_zone_id)
                .start_record_name(&d.record)
                .start_record_type(aws_sdk_route53::types::RrType::from(d.record_type.as_str()))
                .max_items(1)
                .send(),
        )
        .await;
        let now = match listed {
            Ok(out) => {
                let found = out
                    .resource_record_sets()
                    .iter()
                    .find(|r| r.name().eq_ignore_ascii_case(&d.record) && r.r#type().as_str() == d.record_type.as_str());
                match found {
                    Some(r) => format!(
                        "exists → {} (TTL {})",
                        r.resource_records().iter().map(|v| v.value()).collect::<Vec<_>>().join(","),
                        r.ttl().map_or("-".to_string(), |t| t.to_string())
                    ),
                    None => "does not exist yet; the holder will create it".to_string(),
                }
            }
            Err(e) => format!("not read: {}", e.summary()),
        };
        items.push(CheckItem::pass(name, format!("zone {zone}; {now}; value {}", d.value)));
    }
    items
}

/// The permission probes as items: each non-allowed outcome with the remedy that fixes it.
async fn permission_items(
    config: &Config,
    client: &aws_sdk_ec2::Client,
    route53: &aws_sdk_route53::Client,
    route_clients: &BTreeMap<String, aws_sdk_ec2::Client>,
    me: &Me,
) -> Vec<CheckItem> {
    permissions::probe(config, client, route53, route_clients, me.instance_id.clone(), me.eni.clone())
        .await
        .into_iter()
        .map(|p| permission_item(&p))
        .collect()
}

fn permission_item(p: &Probe) -> CheckItem {
    let (name, detail) = (p.name(), p.detail());
    let item = match &p.outcome {
        Outcome::Allowed | Outcome::AllowedIgnoringDryRun => CheckItem::pass(name, detail),
        Outcome::CredentialsRejected(_) => CheckItem::fail(
            name,
            detail,
            "EC2 does not accept these credentials (unknown, deleted or expired keys, or a clock off by minutes): \
             use the instance role instead of static keys, or fix the keys; check the clock (chronyc tracking)",
        ),
        Outcome::Denied(_) => CheckItem::fail(
            name,
            detail,
            format!(
                "{};\nan SCP or permission boundary can deny it too (aws sts decode-authorization-message tells which)",
                grant_advice(&p.iam_action())
            ),
        ),
        Outcome::PerformedDespiteDryRun => CheckItem::warn(
            name,
            detail,
            "this endpoint does not behave like EC2; check [aws] endpoint_url",
        ),
        Outcome::NotProven(_) => CheckItem::warn(
            name,
            detail,
            "the DryRun call failed for another reason than permissions; see the resource items",
        ),
        Outcome::NotChecked(_) => CheckItem::warn(name, detail, "see the item `this instance`"),
        Outcome::Unprovable => CheckItem::warn(
            name,
            detail,
            format!(
                "make sure the instance role allows {action} (contrib/iam-policy.json); \
                 the first move proves it, and a denied node hands the address on",
                action = p.iam_action()
            ),
        ),
    };
    if p.optional && item.status == CheckStatus::Fail {
        // the daemon still works without it, only without its ownership record
        return CheckItem { status: CheckStatus::Warn, ..item };
    }
    item
}

/// The policy shipped with the package (`contrib/iam-policy.json`, installed with the docs):
/// the one place that says how each action is scoped, so advice never drifts from it.
const SHIPPED_POLICY: &str = include_str!("../../contrib/iam-policy.json");
/// Where the package installs it.
const SHIPPED_POLICY_PATH: &str = "/usr/share/doc/corosync-eip/iam-policy.json";

/// How to grant `action`: the shipped policy's scoped statement for it, never a bare
/// `"Resource": "*"` (Describe calls, which AWS cannot scope, are named instead).
pub(crate) fn grant_advice(action: &str) -> String {
    let policy: serde_json::Value = serde_json::from_str(SHIPPED_POLICY).unwrap_or_default();
    let statements: Vec<&serde_json::Value> = policy["Statement"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|s| s["Effect"] == "Allow")
                .filter(|s| match &s["Action"] {
                    serde_json::Value::String(a) => a == action,
                    serde_json::Value::Array(list) => list.iter().any(|a| a == action),
                    _ => false,
                })
                .collect()
        })
        .unwrap_or_default();
    let unscopable = statements.iter().any(|s| s["Resource"] == "*");
    match statements.first() {
        None => format!("allow {action} in the policy of the instance role (every node's); see {SHIPPED_POLICY_PATH}"),
        Some(s) if unscopable => format!(
            "allow {action} in the policy of the instance role (every node's): AWS cannot scope it to resources, as statement {} of {SHIPPED_POLICY_PATH} says",
            s["Sid"].as_str().unwrap_or("?")
        ),
        Some(_) => {
            let shown: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
            format!(
                "allow {action} in the policy of the instance role (every node's), scoped as {SHIPPED_POLICY_PATH} does \
                 (replace the REPLACE_WITH_ placeholders): {}",
                shown.join(" ")
            )
        }
    }
}

/// Whether each configured EIP, route table, route and our ENI's source/dest check are as
/// the daemon needs them.
async fn resource_checks(
    config: &Config,
    client: &aws_sdk_ec2::Client,
    route_clients: &BTreeMap<String, aws_sdk_ec2::Client>,
    me: &Me,
) -> Vec<CheckItem> {
    let eips = futures_util::future::join_all(config.eips.iter().map(|eip| async move {
        let name = format!("EIP {} ({})", eip.name, eip.allocation_id);
        match attempt_within("DescribeAddresses", CALL_BUDGET, client.describe_addresses().allocation_ids(&eip.allocation_id).send()).await {
            Ok(out) => match out.addresses().iter().find(|a| a.allocation_id() == Some(eip.allocation_id.as_str())) {
                Some(a) => {
                    let ip = a.public_ip().unwrap_or("?");
                    let holder = a
                        .network_interface_id()
                        .filter(|s| !s.is_empty())
                        .or(a.instance_id().filter(|s| !s.is_empty()));
                    let at = match holder {
                        Some(h) if Some(h) == me.eni.as_deref() || Some(h) == me.instance_id.as_deref() => {
                            "associated with this node".to_string()
                        }
                        Some(h) => format!("associated with {h}"),
                        None => "not associated".to_string(),
                    };
                    let mut item = CheckItem::pass(name, format!("{ip}, {at}"));
                    if let (Some(want), Some(have)) = (eip.private_ip, a.private_ip_address()) {
                        if holder.is_some() && Some(holder) == Some(me.eni.as_deref()) && want.to_string() != have {
                            item.detail += &format!(" (private IP {have}, configured {want})");
                        }
                    }
                    item
                }
                None => CheckItem::fail(
                    name,
                    format!("{} not found in this region", eip.allocation_id),
                    "check the allocation id (aws ec2 describe-addresses) and [aws] region",
                ),
            },
            Err(e) if e.class == ErrorClass::NotFound || e.code.as_deref().is_some_and(|c| c.starts_with("InvalidAllocationID")) => {
                CheckItem::fail(
                    name,
                    format!("does not exist: {}", e.summary()),
                    "check the allocation_id in the configuration against `aws ec2 describe-addresses` in this region (an EIP in another region or account is not visible)",
                )
            }
            Err(e) => CheckItem::warn(name, format!("not checked: {}", e.summary()), "see the permission items"),
        }
    }));

    // every route table once, with the VIPs routed through it
    let mut by_table: BTreeMap<(&str, Option<&str>), Vec<&crate::config::VipConfig>> = BTreeMap::new();
    for vip in &config.vips {
        for t in &vip.route_tables {
            by_table.entry((t.as_str(), vip.route_table_role.as_deref())).or_default().push(vip);
        }
    }
    let tables = futures_util::future::join_all(by_table.into_iter().map(|((table, role), vips)| async move {
        let mut items = Vec::new();
        let name = match role {
            Some(r) => format!("route table {table} (as {r})"),
            None => format!("route table {table}"),
        };
        let client = role.and_then(|r| route_clients.get(r)).unwrap_or(client);
        match attempt_within("DescribeRouteTables", CALL_BUDGET, client.describe_route_tables().route_table_ids(table).send()).await {
            Ok(out) => match out.route_tables().iter().find(|t| t.route_table_id() == Some(table)) {
                Some(t) => {
                    items.push(CheckItem::pass(
                        name,
                        format!("exists (VPC {})", t.vpc_id().unwrap_or("?")),
                    ));
                    for vip in vips {
                        let dest = vip.destination();
                        let rname = format!("VIP {} route {dest} in {table}", vip.name);
                        let destination_of = |r: &aws_sdk_ec2::types::Route| {
                            r.destination_cidr_block()
                                .or(r.destination_ipv6_cidr_block())
                                .map(crate::core::reconcile::canonical_destination)
                        };
                        match t.routes().iter().find(|r| destination_of(r).as_deref() == Some(dest.as_str())) {
                            Some(r) => {
                                let target = r
                                    .network_interface_id()
                                    .filter(|s| !s.is_empty())
                                    .or(r.instance_id().filter(|s| !s.is_empty()))
                                    .or(r.gateway_id())
                                    .unwrap_or("?");
                                let mine = Some(target) == me.eni.as_deref() || Some(target) == me.instance_id.as_deref();
                                let state = r.state().map(|s| s.as_str().to_string()).unwrap_or_default();
                                items.push(CheckItem::pass(
                                    rname,
                                    format!(
                                        "exists → {target}{}{}",
                                        if mine { " (this node)" } else { "" },
                                        if state == "blackhole" { ", blackhole (its target is gone)" } else { "" }
                                    ),
                                ));
                            }
                            None if vip.create_route => items.push(CheckItem::pass(
                                rname,
                                "missing; the holder will create it (create_route = true)",
                            )),
                            None => items.push(CheckItem::warn(
                                rname,
                                "missing, and create_route is false: the holder will fail to take the VIP",
                                format!(
                                    "create it (aws ec2 create-route --route-table-id {table} --destination-{}cidr-block {dest} --network-interface-id ENI) or set create_route = true for VIP {}",
                                    if vip.address.is_ipv6() { "ipv6-" } else { "" },
                                    vip.name
                                ),
                            )),
                        }
                    }
                }
                None => items.push(CheckItem::fail(
                    name,
                    "not found in this region",
                    "check route_tables in the configuration against `aws ec2 describe-route-tables` and [aws] region",
                )),
            },
            Err(e) if e.class == ErrorClass::NotFound || e.code.as_deref().is_some_and(|c| c.starts_with("InvalidRouteTableID")) => {
                items.push(CheckItem::fail(
                    name,
                    format!("does not exist: {}", e.summary()),
                    "check route_tables in the configuration against `aws ec2 describe-route-tables` in this region/VPC",
                ))
            }
            Err(e) => items.push(CheckItem::warn(name, format!("not checked: {}", e.summary()), "see the permission items")),
        }
        items
    }));

    let sdc = async {
        if config.vips.is_empty() {
            return None;
        }
        let Some(eni) = me.eni.as_deref() else {
            return Some(CheckItem::warn(
                "source/dest check",
                "not checked: our ENI is unknown",
                "see the item `this instance`",
            ));
        };
        let name = format!("source/dest check ({eni})");
        Some(match attempt_within("DescribeNetworkInterfaces", CALL_BUDGET, client.describe_network_interfaces().network_interface_ids(eni).send()).await {
            Ok(out) => match out.network_interfaces().first().and_then(|n| n.source_dest_check()) {
                Some(false) => CheckItem::pass(name, "off, as VIPs need"),
                Some(true) => CheckItem::fail(
                    name,
                    "on: EC2 drops packets for a VIP (not the ENI's own address) delivered to this ENI",
                    format!("aws ec2 modify-network-interface-attribute --network-interface-id {eni} --no-source-dest-check (on every node)"),
                ),
                None => CheckItem::warn(name, "EC2 did not report it", "check the ENI in the EC2 console"),
            },
            Err(e) if e.class == ErrorClass::NotFound => CheckItem::fail(
                name,
                format!("ENI not found: {}", e.summary()),
                "check [node] network_interface_id and [aws] region",
            ),
            Err(e) => CheckItem::warn(name, format!("not checked: {}", e.summary()), "see the permission items"),
        })
    };

    let (eips, tables, sdc, secondary) = tokio::join!(eips, tables, sdc, secondary_checks(config, client, me));
    let mut items = eips;
    items.extend(tables.into_iter().flatten());
    items.extend(sdc);
    items.extend(secondary);
    items
}

/// Each secondary IP must lie in the subnet of this node's ENI (every node's, run on each) and
/// must not be some ENI's primary address; says where EC2 has it now.
async fn secondary_checks(config: &Config, client: &aws_sdk_ec2::Client, me: &Me) -> Vec<CheckItem> {
    if config.secondary_ips.is_empty() {
        return Vec::new();
    }
    let Some(eni) = me.eni.as_deref() else {
        return vec![CheckItem::warn(
            "secondary IPs",
            "not checked: our ENI is unknown",
            "see the item `this instance`",
        )];
    };
    let subnet = async {
        let out = attempt_within(
            "DescribeNetworkInterfaces",
            CALL_BUDGET,
            client.describe_network_interfaces().network_interface_ids(eni).send(),
        )
        .await?;
        let Some(subnet_id) = out.network_interfaces().first().and_then(|n| n.subnet_id()).map(str::to_owned) else {
            return Ok(None);
        };
        let out = attempt_within("DescribeSubnets", CALL_BUDGET, client.describe_subnets().subnet_ids(&subnet_id).send()).await?;
        let found = out.subnets().first();
        Ok::<_, crate::ec2::Ec2Error>(found.and_then(|s| s.cidr_block()).map(|cidr| crate::ec2::Subnet {
            subnet_id,
            cidr: cidr.to_owned(),
            ipv6_cidrs: found.map(crate::ec2::subnet_ipv6_ranges).unwrap_or_default(),
        }))
    };
    // One filter per family: EC2 ANDs filters.
    let holders = async {
        let mut seen = Vec::new();
        for (name, v6) in [("addresses.private-ip-address", false), ("ipv6-addresses.ipv6-address", true)] {
            let values: Vec<String> = config
                .secondary_ips
                .iter()
                .filter(|s| s.address.is_ipv6() == v6)
                .map(|s| s.address.to_string())
                .collect();
            if values.is_empty() {
                continue;
            }
            let filter = aws_sdk_ec2::types::Filter::builder().name(name).set_values(Some(values)).build();
            let out = attempt_within("DescribeNetworkInterfaces", CALL_BUDGET, client.describe_network_interfaces().filters(filter).send()).await?;
            seen.extend(out.network_interfaces().iter().map(crate::ec2::observed_interface));
        }
        Ok::<_, crate::ec2::Ec2Error>(seen)
    };
    let (subnet, holders) = tokio::join!(subnet, holders);
    let interfaces: Option<Vec<crate::core::reconcile::ObservedInterface>> = holders.ok();
    config
        .secondary_ips
        .iter()
        .map(|s| {
            let name = format!("secondary IP {} ({})", s.name, s.address);
            let subnet = match &subnet {
                Ok(Some(subnet)) => subnet,
                Ok(None) => return CheckItem::warn(name, format!("not checked: EC2 reports no subnet for {eni}"), "check [node] network_interface_id"),
                Err(e) => return CheckItem::warn(name, format!("not checked: {}", e.summary()), "see the permission items"),
            };
            if !subnet.contains(s.address) {
                return CheckItem::fail(
                    name,
                    format!(
                        "outside {} ({}), the subnet of this node's ENI {eni}: EC2 refuses to assign it here, and the daemon refuses to start",
                        subnet.subnet_id,
                        subnet.ranges_for(s.address)
                    ),
                    "a secondary IP moves only between ENIs of one subnet: put every node's ENI in the address's subnet, or pick an address of this subnet (a [[vip]] or a Route 53 record spans subnets)",
                );
            }
            let Some(seen) = &interfaces else {
                return CheckItem::pass(name, format!("in {} ({}) of this node's ENI", subnet.subnet_id, subnet.ranges_for(s.address)));
            };
            if let Some(of) = crate::core::reconcile::primary_owner(seen, s.address) {
                return CheckItem::fail(
                    name,
                    format!("it is the primary address of {of}, which EC2 never moves"),
                    "choose a free address of the subnet; a primary address belongs to its ENI for life",
                );
            }
            let on = crate::core::reconcile::interfaces_with(seen, s.address);
            let at = match on.as_slice() {
                [] => "assigned to no ENI".to_string(),
                [one] if one == eni => "assigned to this node's ENI".to_string(),
                list => format!("assigned to {}", list.join(", ")),
            };
            CheckItem::pass(name, format!("in {} ({}) of this node's ENI; {at}", subnet.subnet_id, subnet.ranges_for(s.address)))
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Every action `check` probes, by its IAM name.
    const PROBED: &[&str] = &[
        "ec2:AssociateAddress",
        "ec2:CreateTags",
        "ec2:ReplaceRoute",
        "ec2:CreateRoute",
        "ec2:AssignPrivateIpAddresses",
        "ec2:StopInstances",
        "ec2:DescribeAddresses",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSubnets",
        "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces",
        "route53:ListResourceRecordSets",
    ];

    #[test]
    fn advice_never_grants_every_resource() {
        for action in PROBED {
            let advice = grant_advice(action);
            let compact: String = advice.chars().filter(|c| !c.is_whitespace()).collect();
            assert!(!compact.contains(r#""Resource":"*""#), "{action}: {advice}");
            assert!(advice.contains(SHIPPED_POLICY_PATH), "{action}: {advice}");
            assert!(!advice.contains("see /usr"), "{action} has no statement in the shipped policy: {advice}");
        }
    }

    #[test]
    fn route_advice_carries_every_condition_the_policy_sets() {
        let advice = grant_advice("ec2:ReplaceRoute");
        for key in ["aws:ResourceTag/corosync-eip-cluster", "ec2:Vpc", "ec2:Region", ":route-table/*"] {
            assert!(advice.contains(key), "{key} missing: {advice}");
        }
        assert!(grant_advice("ec2:DescribeRouteTables").contains("cannot scope"));
    }
}
