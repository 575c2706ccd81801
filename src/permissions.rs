//! Proves with `DryRun` calls that this node's IAM role allows every EC2 call a takeover
//! needs. The daemon runs it on idle nodes, so IAM drift shows before a failover needs the
//! permissions; `corosync-eip check` shows the same probes with remedies.
//!
//! EC2 answers `DryRunOperation` when a call would be allowed and `UnauthorizedOperation` when
//! not, without changing anything.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{Config, VipConfig};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::ec2::{attempt_within, Ec2Error, ErrorClass};

/// Bound of one DryRun call (they all run at once).
pub const CALL_BUDGET: Duration = Duration::from_secs(3);

/// Codes by which EC2 rejects the credentials themselves, whatever the policy says.
const CREDENTIAL_CODES: [&str; 5] = [
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
];

/// What one DryRun call proved.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `DryRunOperation`: the call would be allowed.
    Allowed,
    /// A read answered normally: the endpoint does not honour DryRun, but the call is allowed.
    AllowedIgnoringDryRun,
    /// A mutating call was performed despite DryRun: allowed, but the endpoint is not EC2-like.
    PerformedDespiteDryRun,
    /// EC2 does not accept these credentials at all.
    CredentialsRejected(Ec2Error),
    /// The role (or an SCP / permission boundary) denies the call.
    Denied(Ec2Error),
    /// The call failed for another reason: nothing proven either way.
    NotProven(Ec2Error),
    /// Not sent: what the call needs is unknown.
    NotChecked(Unknown),
    /// EC2 offers no DryRun for this action (AssignPrivateIpAddresses): only a real change
    /// would prove it, and a probe must never change anything.
    Unprovable,
}

/// What a probe could not be sent without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Neither our instance nor our interface is known.
    Instance,
    /// Our interface is unknown (routes point at an interface).
    Interface,
    /// No client could be made for the route-table role.
    Role,
}

/// One permission probe: an EC2 action on some resource, and what it proved.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The EC2 action, e.g. `AssociateAddress`.
    pub action: &'static str,
    /// The resource probed, as shown to people (e.g. `web eipalloc-…`); none for reads.
    pub target: Option<String>,
    /// The daemon works without this permission, only with less (CreateTags: no ownership
    /// record), so a denial is a warning rather than a failure.
    pub optional: bool,
    /// What EC2 answered.
    pub outcome: Outcome,
}

impl Probe {
    /// `permission ec2:Action (target)`: the name under which check and status show it.
    pub fn name(&self) -> String {
        match &self.target {
            Some(t) => format!("permission {} ({t})", self.iam_action()),
            None => format!("permission {}", self.iam_action()),
        }
    }

    /// The action as IAM names it: `ec2:Action`, or the action as given when it names its
    /// service (`route53:ChangeResourceRecordSets`).
    pub fn iam_action(&self) -> String {
        if self.action.contains(':') {
            self.action.to_owned()
        } else {
            format!("ec2:{}", self.action)
        }
    }

    /// Whether the probe proved the call allowed (nothing for an admin to do).
    pub fn allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allowed | Outcome::AllowedIgnoringDryRun)
    }

    /// Whether an admin should look at this probe: neither proven allowed nor impossible to
    /// prove without a change.
    pub fn needs_attention(&self) -> bool {
        !self.allowed() && !matches!(self.outcome, Outcome::Unprovable)
    }

    /// Whether the probe proved the call impossible: credentials rejected or action denied.
    pub fn refused(&self) -> bool {
        matches!(self.outcome, Outcome::CredentialsRejected(_) | Outcome::Denied(_))
    }

    /// What the probe found, in one sentence.
    pub fn detail(&self) -> String {
        let mut detail = match &self.outcome {
            Outcome::Allowed => "allowed (DryRunOperation)".to_string(),
            Outcome::AllowedIgnoringDryRun => "allowed (the endpoint answered without honouring DryRun)".to_string(),
            Outcome::PerformedDespiteDryRun => "allowed, but the endpoint ignored DryRun and performed the call".to_string(),
            Outcome::CredentialsRejected(e) => format!("credentials rejected: {}", e.summary()),
            Outcome::Denied(e) => format!("denied: {}", e.summary()),
            Outcome::NotProven(e) => format!("not proven: {}", e.summary()),
            Outcome::NotChecked(Unknown::Instance) => "not checked: this instance is unknown".to_string(),
            Outcome::NotChecked(Unknown::Interface) => "not checked: our ENI is unknown".to_string(),
            Outcome::NotChecked(Unknown::Role) => "not checked: no client for the route-table role".to_string(),
            Outcome::Unprovable => {
                "cannot be proven: the API has no DryRun for this action, and only a real change would prove it".to_string()
            }
        };
        if self.optional && self.refused() {
            detail += " (the daemon then runs without its split-brain ownership record)";
        }
        detail
    }
}

/// `name: detail`, the line the daemon reports in status warnings.
impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name(), self.detail())
    }
}

fn outcome<T>(mutating: bool, result: Result<T, Ec2Error>) -> Outcome {
    match result {
        Err(e) if e.code.as_deref() == Some("DryRunOperation") => Outcome::Allowed,
        Err(e) if e.code.as_deref().is_some_and(|c| CREDENTIAL_CODES.contains(&c)) => Outcome::CredentialsRejected(e),
        Err(e) if e.class == ErrorClass::Permission => Outcome::Denied(e),
        Ok(_) if !mutating => Outcome::AllowedIgnoringDryRun,
        Ok(_) => Outcome::PerformedDespiteDryRun,
        Err(e) => Outcome::NotProven(e),
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = Probe> + Send + 'a>>;

fn settled<'a>(action: &'static str, target: Option<String>, outcome: Outcome) -> Pending<'a> {
    Box::pin(async move {
        Probe {
            action,
            target,
            optional: false,
            outcome,
        }
    })
}

/// One DryRun call as a pending probe: what it proves is in `action` and `target`.
fn dry_run<'a, T, E>(
    action: &'static str,
    target: Option<String>,
    optional: bool,
    mutating: bool,
    call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>> + Send + 'a,
) -> Pending<'a>
where
    T: Send + 'a,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move {
        let result = attempt_within(action, CALL_BUDGET, call).await;
        Probe {
            action,
            target,
            optional,
            outcome: outcome(mutating, result),
        }
    })
}

/// Every permission the configuration needs, proven with DryRun calls all at once, in a
/// stable order: per EIP AssociateAddress and CreateTags, per route table ReplaceRoute,
/// CreateTags (and CreateRoute), CreateTags on this node's ENI for secondary IPs, then the
/// reads. `instance_id` and `eni` are who would take the addresses.
pub async fn probe(
    config: &Config,
    client: &aws_sdk_ec2::Client,
    route53: &aws_sdk_route53::Client,
    route_clients: &BTreeMap<String, aws_sdk_ec2::Client>,
    instance_id: Option<String>,
    eni: Option<String>,
) -> Vec<Probe> {
    let mut probes: Vec<Pending<'_>> = Vec::new();
    for eip in &config.eips {
        let target = Some(format!("{} {}", eip.name, eip.allocation_id));
        let mut req = client
            .associate_address()
            .dry_run(true)
            .allocation_id(&eip.allocation_id)
            .allow_reassociation(true);
        req = match (&eni, &instance_id) {
            (Some(eni), _) => req.network_interface_id(eni),
            (None, Some(id)) => req.instance_id(id),
            (None, None) => {
                probes.push(settled("AssociateAddress", target, Outcome::NotChecked(Unknown::Instance)));
                continue;
            }
        };
        if let Some(ip) = eip.private_ip {
            req = req.private_ip_address(ip.to_string());
        }
        probes.push(dry_run("AssociateAddress", target.clone(), false, true, req.send()));
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(crate::core::reconcile::OWNER_TAG)
            .value(instance_id.clone().unwrap_or_default())
            .build();
        let req = client
            .create_tags()
            .dry_run(true)
            .resources(&eip.allocation_id)
            .tags(tag);
        probes.push(dry_run("CreateTags", target, true, true, req.send()));
    }
    // one ReplaceRoute (and CreateRoute) per route table, for the first VIP routed through it
    let mut tables: BTreeMap<(&str, Option<&str>), (&VipConfig, bool)> = BTreeMap::new();
    for vip in &config.vips {
        for t in &vip.route_tables {
            let e = tables.entry((t.as_str(), vip.route_table_role.as_deref())).or_insert((vip, false));
            e.1 |= vip.create_route;
        }
    }
    for ((table, role), (vip, create)) in tables {
        // Through the role's credentials when the tables live in another account.
        let client = match role {
            Some(r) => match route_clients.get(r) {
                Some(c) => c,
                None => {
                    probes.push(settled("ReplaceRoute", Some(format!("{table} as {r}")), Outcome::NotChecked(Unknown::Role)));
                    continue;
                }
            },
            None => client,
        };
        let Some(eni) = eni.clone() else {
            probes.push(settled("ReplaceRoute", Some(table.to_string()), Outcome::NotChecked(Unknown::Interface)));
            continue;
        };
        let dest = vip.destination();
        let target = Some(format!("{table} {dest}"));
        let ipv6 = vip.address.is_ipv6();
        let req = client.replace_route().dry_run(true).route_table_id(table).network_interface_id(&eni);
        let req = if ipv6 { req.destination_ipv6_cidr_block(&dest) } else { req.destination_cidr_block(&dest) };
        probes.push(dry_run("ReplaceRoute", target.clone(), false, true, req.send()));
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(crate::core::reconcile::route_record_key(&dest))
            .value(format!("{eni}/0"))
            .build();
        let req = client.create_tags().dry_run(true).resources(table).tags(tag);
        probes.push(dry_run("CreateTags", target.clone(), true, true, req.send()));
        if create {
            let req = client.create_route().dry_run(true).route_table_id(table).network_interface_id(&eni);
            let req = if ipv6 { req.destination_ipv6_cidr_block(&dest) } else { req.destination_cidr_block(&dest) };
            probes.push(dry_run("CreateRoute", target, false, true, req.send()));
        }
    }
    // The secondary IPs' ownership records go on this node's ENI: one DryRun CreateTags.
    if let (Some(first), Some(eni)) = (config.secondary_ips.first(), &eni) {
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(crate::core::reconcile::address_record_key(first.address))
            .value(format!("{eni}/0"))
            .build();
        let req = client.create_tags().dry_run(true).resources(eni).tags(tag);
        probes.push(dry_run("CreateTags", Some(eni.clone()), true, true, req.send()));
    }
    // AssignPrivateIpAddresses has no DryRun: listed, so the report names what is unproven.
    // Nor do the IPv6 pair that moves an IPv6 address.
    for secondary in &config.secondary_ips {
        let target = Some(format!("{} {}", secondary.name, secondary.address));
        if secondary.address.is_ipv6() {
            probes.push(settled("UnassignIpv6Addresses", target.clone(), Outcome::Unprovable));
            probes.push(settled("AssignIpv6Addresses", target, Outcome::Unprovable));
        } else {
            probes.push(settled("AssignPrivateIpAddresses", target, Outcome::Unprovable));
        }
    }
    // Fencing stops a peer's instance. DryRun never stops anything, so our own instance serves
    // as the target: the policy scopes StopInstances by the cluster tag, which every node's
    // instance carries alike.
    if config.fencing.stop_instance {
        match &instance_id {
            Some(id) => {
                let req = client.stop_instances().dry_run(true).instance_ids(id).force(true);
                probes.push(dry_run("StopInstances", Some(format!("{id} (fencing)")), false, true, req.send()));
            }
            None => probes.push(settled("StopInstances", Some("fencing".into()), Outcome::NotChecked(Unknown::Instance))),
        }
    }
    // Read permissions: one DryRun Describe each.
    if !config.eips.is_empty() {
        probes.push(dry_run("DescribeAddresses", None, false, false, client.describe_addresses().dry_run(true).send()));
    }
    if !config.vips.is_empty() {
        probes.push(dry_run("DescribeRouteTables", None, false, false, client.describe_route_tables().dry_run(true).send()));
    }
    // Route 53 has no DryRun at all: reading each zone proves read access, and the change is
    // listed as unproven.
    let mut zones = std::collections::BTreeSet::new();
    for d in &config.dns {
        probes.push(settled(
            "route53:ChangeResourceRecordSets",
            Some(format!("{} {} {}", d.name, d.record, d.record_type.as_str())),
            Outcome::Unprovable,
        ));
        if zones.insert(d.hosted_zone_id.clone()) {
            let req = route53
                .list_resource_record_sets()
                .hosted_zone_id(&d.hosted_zone_id)
                .max_items(1);
            probes.push(dry_run("route53:ListResourceRecordSets", Some(d.hosted_zone_id.clone()), false, false, req.send()));
        }
    }
    if !config.secondary_ips.is_empty() {
        probes.push(dry_run("DescribeSubnets", None, false, false, client.describe_subnets().dry_run(true).send()));
    }
    probes.push(dry_run("DescribeInstances", None, false, false, client.describe_instances().dry_run(true).send()));
    probes.push(dry_run("DescribeNetworkInterfaces", None, false, false, client.describe_network_interfaces().dry_run(true).send()));

    futures_util::future::join_all(probes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, class: ErrorClass) -> Ec2Error {
        Ec2Error {
            api: "AssociateAddress",
            class,
            code: Some(code.into()),
            message: "no. Encoded authorization failure message: xyz".into(),
        }
    }

    #[test]
    fn outcomes_and_their_lines() {
        let p = |optional, result: Result<(), Ec2Error>| Probe {
            action: "CreateTags",
            target: Some("web eipalloc-1".into()),
            optional,
            outcome: outcome(true, result),
        };
        let allowed = p(false, Err(err("DryRunOperation", ErrorClass::Refused)));
        assert!(allowed.allowed());
        assert_eq!(allowed.to_string(), "permission ec2:CreateTags (web eipalloc-1): allowed (DryRunOperation)");
        let denied = p(true, Err(err("UnauthorizedOperation", ErrorClass::Permission)));
        assert!(!denied.allowed() && denied.refused());
        assert_eq!(
            denied.detail(),
            "denied: UnauthorizedOperation: no. (the daemon then runs without its split-brain ownership record)"
        );
        let rejected = p(false, Err(err("AuthFailure", ErrorClass::Permission)));
        assert!(matches!(rejected.outcome, Outcome::CredentialsRejected(_)));
        assert!(matches!(p(false, Ok(())).outcome, Outcome::PerformedDespiteDryRun));
        assert!(matches!(outcome(false, Ok(())), Outcome::AllowedIgnoringDryRun));
        assert!(matches!(
            p(false, Err(err("InvalidParameterValue", ErrorClass::Refused))).outcome,
            Outcome::NotProven(_)
        ));
    }
}
