//! Adapter for the EC2 API: the few calls corosync-eip makes, with error classes and retries.
//!
//! The SDK's own retries are off: failover latency matters, so retries here start fast
//! (tens of milliseconds) and are jittered so members never retry in lockstep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures_util::future::BoxFuture;

use crate::batch::{self, Batcher};

use crate::config::AwsConfig;
use crate::metrics::Metrics;
use crate::core::reconcile::{
    backoff, Identity, ObservedEip, ObservedInterface, ObservedRoute, ObservedRouteTable, Ownership, EPOCH_TAG, OWNER_TAG,
};

/// How an EC2 failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection failures: retry with backoff.
    Transient,
    /// Credentials missing or the role lacks a permission: an admin must fix IAM.
    Permission,
    /// The allocation, instance or interface does not exist in this region/account.
    NotFound,
    /// Anything else EC2 refused (bad parameter, wrong state).
    Refused,
    /// Not sent: right before the call, this node was no longer the quorate partition's
    /// elected holder.
    Cancelled,
}

/// Asked right before every attempt of a mutating call: may this node still write? (Still the
/// elected holder of the unit, and corosync still quorate at this instant.)
pub type WriteGate<'a> = &'a (dyn Fn() -> bool + Send + Sync);

/// A failed EC2 call, classified so callers decide between retrying, alerting an admin and
/// giving up without parsing SDK errors themselves.
#[derive(Debug, Clone, thiserror::Error)]
#[error("EC2 {api} failed ({class:?}{code}): {message}", code = code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
pub struct Ec2Error {
    /// The EC2 action, e.g. `AssociateAddress`, as in the IAM policy and the metrics.
    pub api: &'static str,
    /// What to do about it: retry, tell the admin, or stop.
    pub class: ErrorClass,
    /// EC2's error code, e.g. `UnauthorizedOperation`, when it sent one.
    pub code: Option<String>,
    /// EC2's or the SDK's explanation, shown in logs and `last_error`.
    pub message: String,
}

impl Ec2Error {
    /// EC2's code and sentence without the long encoded authorization blob AWS appends: what
    /// a person needs to see, e.g. `UnauthorizedOperation: You are not authorized ...`.
    pub fn summary(&self) -> String {
        let msg = self
            .message
            .split(" Encoded authorization failure message")
            .next()
            .unwrap_or(&self.message)
            .trim();
        match &self.code {
            Some(c) => format!("{c}: {msg}"),
            None => msg.to_string(),
        }
    }
}

/// An error and its sources joined with ": ": readable in one line, without the Debug dump
/// `DisplayErrorContext` adds (the SDK's own Display stops at the outermost, vaguest layer).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

pub(crate) fn classify<E>(api: &'static str, err: SdkError<E, HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(&err).to_string();
    let (class, code) = class_and_code(&err);
    Ec2Error {
        api,
        class,
        code,
        message,
    }
}

/// Like the daemon's classification, but the message is EC2's own sentence (else the error
/// chain): for reports a person reads, where the SDK's Debug dump is noise.
pub fn classify_for_report<E>(api: &'static str, err: SdkError<E, HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (class, code) = class_and_code(&err);
    let message = match &err {
        SdkError::ServiceError(s) => s.err().message().map(str::to_string),
        _ => None,
    }
    .unwrap_or_else(|| error_chain(&err));
    Ec2Error {
        api,
        class,
        code,
        message,
    }
}

/// One attempt of a call, bounded in time; a timeout counts as transient. For probes that
/// report what they found instead of retrying (the pre-flight check, the idle node's
/// permission probe): they must finish in seconds even when EC2 is unreachable.
pub async fn attempt_within<T, E>(
    api: &'static str,
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T, Ec2Error>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify_for_report(api, e)),
        Err(_) => Err(Ec2Error {
            api,
            class: ErrorClass::Transient,
            code: None,
            message: format!("no answer within {limit:?}"),
        }),
    }
}

/// The primary (device index 0) interface of an instance: where its addresses go when the
/// configuration names no interface.
pub fn primary_interface_of(instance: &aws_sdk_ec2::types::Instance) -> Option<&str> {
    instance
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
        .and_then(|n| n.network_interface_id())
}

fn class_and_code<E>(err: &SdkError<E, HttpResponse>) -> (ErrorClass, Option<String>)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorClass::Transient, None)
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_owned);
            let status = service.raw().status().as_u16();
            (class_of(code.as_deref(), status), code)
        }
        _ => (ErrorClass::Refused, None),
    }
}

/// The class of an EC2 error code (and HTTP status when the code is unknown).
pub fn class_of(code: Option<&str>, http_status: u16) -> ErrorClass {
    match code {
        Some(c) if c.ends_with(".NotFound") || c.ends_with(".Malformed") && c.starts_with("InvalidAllocationID") => {
            ErrorClass::NotFound
        }
        // Route 53's names for the same things.
        Some("NoSuchHostedZone" | "NoSuchChange") => ErrorClass::NotFound,
        Some(
            "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "InternalError" | "InternalFailure"
            | "ServiceUnavailable" | "Unavailable" | "RequestTimeout" | "PriorRequestNotComplete",
        ) => ErrorClass::Transient,
        Some(
            "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "AccessDeniedException" | "Blocked"
            | "OptInRequired" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken",
        ) => ErrorClass::Permission,
        _ if http_status >= 500 || http_status == 429 => ErrorClass::Transient,
        _ if http_status == 401 || http_status == 403 => ErrorClass::Permission,
        _ => ErrorClass::Refused,
    }
}

impl ErrorClass {
    /// The stable name used in metrics labels and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permission => "permission",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Refused => "refused",
            ErrorClass::Cancelled => "cancelled",
        }
    }
}

/// Where an instance sits: its primary interface and zone (identity and status need both).
#[derive(Debug, Clone, Default)]
pub struct InstancePlacement {
    /// The device-index-0 ENI, where this node's addresses are pointed by default.
    pub primary_interface: Option<String>,
    /// The instance's zone, shown per member in `status`.
    pub availability_zone: Option<String>,
}

/// A subnet as EC2 describes it: where a secondary IP may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// The subnet's id.
    pub subnet_id: String,
    /// Its IPv4 range, e.g. `10.0.1.0/24`.
    pub cidr: String,
    /// Its IPv6 ranges (usually one /64), if it has any.
    pub ipv6_cidrs: Vec<String>,
}

/// Whether `address` lies inside `cidr` (false when the range is unreadable or of the other
/// family).
pub fn cidr_contains(cidr: &str, address: std::net::IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else { return false };
    match (net, address) {
        (std::net::IpAddr::V4(net), std::net::IpAddr::V4(a)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(net) & mask
        }
        (std::net::IpAddr::V6(net), std::net::IpAddr::V6(a)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

impl Subnet {
    /// Whether `address` lies inside one of the subnet's ranges of its family.
    pub fn contains(&self, address: impl Into<std::net::IpAddr>) -> bool {
        let address = address.into();
        if address.is_ipv4() {
            cidr_contains(&self.cidr, address)
        } else {
            self.ipv6_cidrs.iter().any(|c| cidr_contains(c, address))
        }
    }

    /// The ranges of the family of `address`, for messages.
    pub fn ranges_for(&self, address: std::net::IpAddr) -> String {
        if address.is_ipv4() {
            self.cidr.clone()
        } else if self.ipv6_cidrs.is_empty() {
            "no IPv6 range".to_owned()
        } else {
            self.ipv6_cidrs.join(", ")
        }
    }
}

/// A subnet's associated IPv6 ranges.
pub fn subnet_ipv6_ranges(s: &aws_sdk_ec2::types::Subnet) -> Vec<String> {
    s.ipv6_cidr_block_association_set()
        .iter()
        .filter(|a| a.ipv6_cidr_block_state().and_then(|st| st.state()).is_none_or(|st| st.as_str() == "associated"))
        .filter_map(|a| a.ipv6_cidr_block().map(str::to_owned))
        .collect()
}

/// One ENI as the daemon reads it (interfaces carry secondary IPs).
pub fn observed_interface(n: &aws_sdk_ec2::types::NetworkInterface) -> ObservedInterface {
    ObservedInterface {
        network_interface_id: n.network_interface_id().unwrap_or_default().to_owned(),
        subnet_id: n.subnet_id().map(str::to_owned),
        instance_id: n.attachment().and_then(|a| a.instance_id()).filter(|s| !s.is_empty()).map(str::to_owned),
        primary_ip: n.private_ip_address().map(str::to_owned),
        secondary_ips: n
            .private_ip_addresses()
            .iter()
            .filter(|a| a.primary() != Some(true))
            .filter_map(|a| a.private_ip_address().map(str::to_owned))
            .collect(),
        ipv6: n.ipv6_addresses().iter().filter_map(|a| a.ipv6_address().map(str::to_owned)).collect(),
        records: crate::core::reconcile::records_from_tags(n.tag_set().iter().filter_map(|t| Some((t.key()?, t.value()?)))),
    }
}

/// An SDK client whose credentials come from assuming `role_arn` (see `Ec2::assuming`).
pub async fn assumed_client(sdk: &aws_config::SdkConfig, role_arn: &str, session_name: &str) -> aws_sdk_ec2::Client {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name(session_name)
        .configure(sdk)
        .build()
        .await;
    let conf = sdk
        .to_builder()
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(provider))
        .build();
    aws_sdk_ec2::Client::new(&conf)
}

/// The daemon's EC2 calls, each retried on transient errors and counted in the metrics.
/// Concurrent reads, ownership records and secondary-IP assignments are merged into rounds
/// (`crate::batch`): the acquisitions one membership change starts share their calls.
#[derive(Clone)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    metrics: Arc<Metrics>,
    batches: Arc<Batches>,
}

/// A `WriteGate` that can travel with a request into a shared round.
pub type SharedGate = Arc<dyn Fn() -> bool + Send + Sync>;

/// What one caller asks of a shared read, and how long it may take.
struct Read<K> {
    keys: Vec<K>,
    budget: Duration,
}

type ReadBatcher<K, T> = Batcher<Read<K>, Result<Vec<T>, Ec2Error>>;

/// One ownership record to write (see `Ec2::claim`).
struct Claim {
    allocation_id: String,
    owner: Ownership,
    gate: SharedGate,
    budget: Duration,
}

/// One VIP's or secondary IP's ownership record to write (see `Ec2::write_record`).
struct RecordWrite {
    /// The resources that carry it: a VIP's route tables, or the holder's ENI.
    resources: Vec<String>,
    /// The same resources, as one string: records on the same resources share a CreateTags.
    group: String,
    key: String,
    value: String,
    gate: SharedGate,
    budget: Duration,
}

/// One secondary IPv4 address to assign to an ENI (see `Ec2::assign_private_ip`).
struct Assignment {
    network_interface_id: String,
    address: std::net::Ipv4Addr,
    gate: SharedGate,
    budget: Duration,
}

/// The rounds of one client (one set of credentials).
struct Batches {
    addresses: ReadBatcher<String, ObservedEip>,
    route_tables: ReadBatcher<String, ObservedRouteTable>,
    interfaces: ReadBatcher<std::net::IpAddr, ObservedInterface>,
    claims: Batcher<Claim, Result<u64, Ec2Error>>,
    records: Batcher<RecordWrite, Result<(), Ec2Error>>,
    assignments: Batcher<Assignment, Result<(), Ec2Error>>,
}

impl Batches {
    fn new(client: &aws_sdk_ec2::Client, metrics: &Arc<Metrics>) -> Batches {
        let (c, m) = (client.clone(), metrics.clone());
        let addresses = move |keys: Vec<String>, budget: Duration| -> BoxFuture<'static, _> {
            let (c, m) = (c.clone(), m.clone());
            Box::pin(async move { fetch_addresses(&c, &m, &keys, budget).await })
        };
        let (c, m) = (client.clone(), metrics.clone());
        let route_tables = move |keys: Vec<String>, budget: Duration| -> BoxFuture<'static, _> {
            let (c, m) = (c.clone(), m.clone());
            Box::pin(async move { fetch_route_tables(&c, &m, &keys, budget).await })
        };
        let (c, m) = (client.clone(), metrics.clone());
        let interfaces = move |keys: Vec<std::net::IpAddr>, budget: Duration| -> BoxFuture<'static, _> {
            let (c, m) = (c.clone(), m.clone());
            Box::pin(async move { fetch_interfaces(&c, &m, &keys, budget).await })
        };
        let (c, m) = (client.clone(), metrics.clone());
        let claims: crate::batch::Round<Claim, Result<u64, Ec2Error>> = Arc::new(move |round| {
            let (c, m) = (c.clone(), m.clone());
            Box::pin(async move { claim_round(&c, &m, round).await })
        });
        let (c, m) = (client.clone(), metrics.clone());
        let records: crate::batch::Round<RecordWrite, Result<(), Ec2Error>> = Arc::new(move |round| {
            let (c, m) = (c.clone(), m.clone());
            Box::pin(async move { record_round(&c, &m, round).await })
        });
        let (c, m) = (client.clone(), metrics.clone());
        let assignments: crate::batch::Round<Assignment, Result<(), Ec2Error>> = Arc::new(move |round| {
            let (c, m) = (c.clone(), m.clone());
            Box::pin(async move { assignment_round(&c, &m, round).await })
        });
        Batches {
            addresses: read_batcher(addresses),
            route_tables: read_batcher(route_tables),
            interfaces: read_batcher(interfaces),
            claims: Batcher::new(batch::WINDOW, claims),
            records: Batcher::new(batch::WINDOW, records),
            assignments: Batcher::new(batch::WINDOW, assignments),
        }
    }
}

/// A shared read: one call for the union of every caller's keys, each caller getting the
/// whole answer (callers pick their own items from it). EC2 refuses a whole call for one
/// unknown id, so a NotFound is asked again per caller: only the caller that named the
/// unknown id sees the error.
fn read_batcher<K, T, F>(fetch: F) -> ReadBatcher<K, T>
where
    K: Ord + Clone + Send + Sync + 'static,
    T: Clone + Send + 'static,
    F: Fn(Vec<K>, Duration) -> BoxFuture<'static, Result<Vec<T>, Ec2Error>> + Send + Sync + 'static,
{
    let fetch = Arc::new(fetch);
    Batcher::new(
        batch::WINDOW,
        Arc::new(move |round: Vec<Read<K>>| {
            let fetch = fetch.clone();
            Box::pin(async move {
                let keys: std::collections::BTreeSet<K> = round.iter().flat_map(|r| r.keys.iter().cloned()).collect();
                let budget = round.iter().map(|r| r.budget).max().unwrap_or_default();
                match fetch(keys.into_iter().collect(), budget).await {
                    Err(e) if e.class == ErrorClass::NotFound && round.len() > 1 => {
                        futures_util::future::join_all(round.iter().map(|r| fetch(r.keys.clone(), r.budget))).await
                    }
                    all => round.iter().map(|_| all.clone()).collect(),
                }
            })
        }),
    )
}

/// The error a request gets when its round lost it (never expected).
fn lost(api: &'static str) -> Ec2Error {
    Ec2Error {
        api,
        class: ErrorClass::Transient,
        code: None,
        message: "the request was dropped before it was answered".into(),
    }
}

fn cancelled(api: &'static str) -> Ec2Error {
    Ec2Error {
        api,
        class: ErrorClass::Cancelled,
        code: None,
        message: "not sent: this node is no longer the quorate partition's elected holder".into(),
    }
}

/// One DescribeAddresses for all of `allocation_ids`.
async fn fetch_addresses(
    client: &aws_sdk_ec2::Client,
    metrics: &Metrics,
    allocation_ids: &[String],
    budget: Duration,
) -> Result<Vec<ObservedEip>, Ec2Error> {
    retrying(metrics, "DescribeAddresses", budget, &|| true, || async {
        let out = client
            .describe_addresses()
            .set_allocation_ids(Some(allocation_ids.to_vec()))
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(out
            .addresses()
            .iter()
            .map(|a| ObservedEip {
                allocation_id: a.allocation_id().unwrap_or_default().to_owned(),
                public_ip: a.public_ip().map(str::to_owned),
                association_id: a.association_id().map(str::to_owned),
                instance_id: a.instance_id().filter(|s| !s.is_empty()).map(str::to_owned),
                network_interface_id: a.network_interface_id().filter(|s| !s.is_empty()).map(str::to_owned),
                private_ip: a.private_ip_address().map(str::to_owned),
                owner: Ownership::from_tags(a.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)))),
            })
            .collect())
    })
    .await
}

/// A request of a shared write round: requests of one group share one call, sent only while
/// every one of their gates is open.
trait GatedWrite {
    /// Requests with the same group share a call (the owner of a record, the ENI assigned to).
    fn group(&self) -> &str;
    fn gate(&self) -> &SharedGate;
    fn budget(&self) -> Duration;
}

impl GatedWrite for Claim {
    fn group(&self) -> &str {
        &self.owner.instance_id
    }
    fn gate(&self) -> &SharedGate {
        &self.gate
    }
    fn budget(&self) -> Duration {
        self.budget
    }
}

impl GatedWrite for RecordWrite {
    fn group(&self) -> &str {
        &self.group
    }
    fn gate(&self) -> &SharedGate {
        &self.gate
    }
    fn budget(&self) -> Duration {
        self.budget
    }
}

impl GatedWrite for Assignment {
    fn group(&self) -> &str {
        &self.network_interface_id
    }
    fn gate(&self) -> &SharedGate {
        &self.gate
    }
    fn budget(&self) -> Duration {
        self.budget
    }
}

/// Runs one shared write round: a request whose gate is closed is cancelled; the others are
/// sent with one `write` per group, behind a gate that is open only while all of theirs are.
/// A non-transient failure of a shared call (one gate closed meanwhile, one item refused) is
/// retried per request, so one bad request never fails the others.
async fn write_round<R, T, F>(api: &'static str, round: &[R], write: F) -> Vec<Result<T, Ec2Error>>
where
    R: GatedWrite + Sync,
    T: Clone,
    F: for<'a> Fn(&'a [&'a R], Duration, WriteGate<'a>) -> BoxFuture<'a, Result<T, Ec2Error>>,
{
    let mut outcomes: Vec<Option<Result<T, Ec2Error>>> = round.iter().map(|_| None).collect();
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, r) in round.iter().enumerate() {
        if (r.gate())() {
            groups.entry(r.group()).or_default().push(i);
        } else {
            outcomes[i] = Some(Err(cancelled(api)));
        }
    }
    for indices in groups.into_values() {
        let members: Vec<&R> = indices.iter().map(|&i| &round[i]).collect();
        let budget = members.iter().map(|r| r.budget()).max().unwrap_or_default();
        let all_open = || members.iter().all(|r| (r.gate())());
        match write(&members, budget, &all_open).await {
            Ok(v) => indices.iter().for_each(|&i| outcomes[i] = Some(Ok(v.clone()))),
            Err(e) if members.len() > 1 && e.class != ErrorClass::Transient => {
                for &i in &indices {
                    let r = &round[i];
                    outcomes[i] = Some(write(&[r], r.budget(), r.gate().as_ref()).await);
                }
            }
            Err(e) => indices.iter().for_each(|&i| outcomes[i] = Some(Err(e.clone()))),
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(lost(api)))).collect()
}

/// Writes the ownership records of a round: one CreateTags per owner (in practice one: this
/// node) for all its addresses, with the highest epoch any of them asked for. A higher epoch
/// than an address needed is still above whatever it carried, which is all the record asks
/// of an epoch.
async fn claim_round(client: &aws_sdk_ec2::Client, metrics: &Arc<Metrics>, round: Vec<Claim>) -> Vec<Result<u64, Ec2Error>> {
    write_round("CreateTags", &round, |claims, budget, gate| {
        // Owned handles: the call may borrow only the round itself.
        let (client, metrics) = (client.clone(), metrics.clone());
        Box::pin(async move {
            let epoch = claims.iter().map(|c| c.owner.epoch).max().unwrap_or(0);
            let ids: Vec<String> = claims.iter().map(|c| c.allocation_id.clone()).collect();
            let owner = Ownership {
                instance_id: claims.first().map(|c| c.owner.instance_id.clone()).unwrap_or_default(),
                epoch,
            };
            create_tags(&client, &metrics, &ids, &owner, budget, gate).await.map(|()| epoch)
        })
    })
    .await
}

/// Writes the VIP and secondary IP records of a round: one CreateTags per set of resources (a
/// VIP's route tables, or this node's ENI) with every record meant for it.
async fn record_round(client: &aws_sdk_ec2::Client, metrics: &Arc<Metrics>, round: Vec<RecordWrite>) -> Vec<Result<(), Ec2Error>> {
    write_round("CreateTags", &round, |writes, budget, gate| {
        let (client, metrics) = (client.clone(), metrics.clone());
        Box::pin(async move {
            let resources = writes.first().map(|w| w.resources.clone()).unwrap_or_default();
            let tags: Vec<(String, String)> = writes.iter().map(|w| (w.key.clone(), w.value.clone())).collect();
            retrying(&metrics, "CreateTags", budget, gate, || async {
                let mut call = client.create_tags().set_resources(Some(resources.clone()));
                for (k, v) in &tags {
                    call = call.tags(aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
                }
                call.send().await.map_err(|e| classify("CreateTags", e))?;
                Ok(())
            })
            .await
        })
    })
    .await
}

/// One CreateTags writing `owner` on every address of `allocation_ids`.
async fn create_tags(
    client: &aws_sdk_ec2::Client,
    metrics: &Metrics,
    allocation_ids: &[String],
    owner: &Ownership,
    budget: Duration,
    gate: WriteGate<'_>,
) -> Result<(), Ec2Error> {
    retrying(metrics, "CreateTags", budget, gate, || async {
        let tag = |k: &str, v: String| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        client
            .create_tags()
            .set_resources(Some(allocation_ids.to_vec()))
            .tags(tag(OWNER_TAG, owner.instance_id.clone()))
            .tags(tag(EPOCH_TAG, owner.epoch.to_string()))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(())
    })
    .await
}

/// Assigns the requests of a round: one AssignPrivateIpAddresses per ENI (in practice one:
/// ours) for all its addresses.
async fn assignment_round(client: &aws_sdk_ec2::Client, metrics: &Arc<Metrics>, round: Vec<Assignment>) -> Vec<Result<(), Ec2Error>> {
    write_round("AssignPrivateIpAddresses", &round, |assignments, budget, gate| {
        let (client, metrics) = (client.clone(), metrics.clone());
        Box::pin(async move {
            let mut addresses: Vec<std::net::Ipv4Addr> = assignments.iter().map(|a| a.address).collect();
            addresses.sort();
            addresses.dedup();
            let eni = assignments.first().map(|a| a.network_interface_id.as_str()).unwrap_or_default();
            assign_private_ips(&client, &metrics, eni, &addresses, budget, gate).await
        })
    })
    .await
}

/// Assigns `addresses` to an ENI in one call, taking them from wherever they are
/// (AllowReassignment): never unassigned first, so the address is never nowhere. Assigning
/// again to the same ENI changes nothing, so a retry after a timeout EC2 did apply is harmless.
async fn assign_private_ips(
    client: &aws_sdk_ec2::Client,
    metrics: &Metrics,
    network_interface_id: &str,
    addresses: &[std::net::Ipv4Addr],
    budget: Duration,
    gate: WriteGate<'_>,
) -> Result<(), Ec2Error> {
    let values: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    retrying(metrics, "AssignPrivateIpAddresses", budget, gate, || async {
        client
            .assign_private_ip_addresses()
            .network_interface_id(network_interface_id)
            .set_private_ip_addresses(Some(values.clone()))
            .allow_reassignment(true)
            .send()
            .await
            .map_err(|e| classify("AssignPrivateIpAddresses", e))?;
        Ok(())
    })
    .await
}

/// The node has no CA certificate the SDK's HTTPS client could load.
#[derive(Debug, thiserror::Error)]
#[error(
    "no CA certificate found in this node's trust store ({detail}): HTTPS to EC2 could not be verified; \
     install the ca-certificates package, or point SSL_CERT_FILE at a CA bundle"
)]
pub struct NoTrustStore {
    /// What the loader reported.
    pub detail: String,
}

/// Counts the CA certificates the SDK's HTTPS client will trust. The SDK panics when there
/// are none, which would crash-loop the daemon without a word on why.
pub fn trust_store() -> Result<usize, NoTrustStore> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        let detail = if loaded.errors.is_empty() {
            "the system's certificate locations are empty".to_string()
        } else {
            loaded.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        };
        return Err(NoTrustStore { detail });
    }
    Ok(loaded.certs.len())
}

/// Builds the SDK configuration: the standard chain (env, profile, IMDS) with the config
/// file's overrides on top.
pub async fn sdk_config(aws: &AwsConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2).min(aws.call_timeout))
                .operation_attempt_timeout(aws.call_timeout)
                .build(),
        );
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile.clone());
    }
    loader.load().await
}

/// Runs `call` until it succeeds, fails for a non-transient reason, or `budget` is spent,
/// asking `gate` before every attempt (retries included) and counting every attempt in the
/// metrics by API and outcome. Shared by every AWS adapter (EC2, Route 53).
pub(crate) async fn retrying<T, F, Fut>(
    metrics: &Metrics,
    api: &'static str,
    budget: Duration,
    gate: WriteGate<'_>,
    mut call: F,
) -> Result<T, Ec2Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Ec2Error>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        if !gate() {
            return Err(cancelled(api));
        }
        let sent = Instant::now();
        let result = call().await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.class.as_str(),
        };
        metrics.ec2_call(api, outcome, sent.elapsed());
        match result {
            Ok(v) => return Ok(v),
            Err(e) if e.class == ErrorClass::Transient && started.elapsed() < budget => {
                let wait = backoff(attempt, RETRY_BASE, RETRY_CAP, rand::random::<f64>());
                tracing::warn!(api = e.api, error = %e.message, retry_in_ms = wait.as_millis() as u64, "transient AWS error, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

const RETRY_BASE: Duration = Duration::from_millis(40);
const RETRY_CAP: Duration = Duration::from_secs(2);

/// One DescribeRouteTables for all of `route_table_ids`.
async fn fetch_route_tables(
client: &aws_sdk_ec2::Client,
metrics: &Metrics,
    route_table_ids: &[String],
    budget: Duration,
) -> Result<Vec<ObservedRouteTable>, Ec2Error> {
    retrying(metrics, "DescribeRouteTables", budget, &|| true, || async {
        let out = client
            .describe_route_tables()
            .set_route_table_ids(Some(route_table_ids.to_vec()))
            .send()
            .await
            .map_err(|e| classify("DescribeRouteTables", e))?;
        Ok(out
            .route_tables()
            .iter()
            .map(|t| ObservedRouteTable {
                route_table_id: t.route_table_id().unwrap_or_default().to_owned(),
                routes: t
                    .routes()
                    .iter()
                    .filter_map(|r| {
                        let destination = r.destination_cidr_block().or(r.destination_ipv6_cidr_block())?;
                        Some(ObservedRoute {
                            destination: crate::core::reconcile::canonical_destination(destination),
                            network_interface_id: r.network_interface_id().filter(|s| !s.is_empty()).map(str::to_owned),
                            instance_id: r.instance_id().filter(|s| !s.is_empty()).map(str::to_owned),
                            blackhole: r.state().is_some_and(|s| s.as_str() == "blackhole"),
                        })
                    })
                    .collect(),
                records: crate::core::reconcile::records_from_tags(t.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)))),
            })
            .collect())
    })
    .await
}

/// One DescribeNetworkInterfaces for every ENI that carries any of `addresses` (as its
/// primary or a secondary IP): where all our secondary IPs are, whatever their number.
/// IPv4 and IPv6 addresses need a filter each, and EC2 ANDs filters: two calls when both
/// families are held.
async fn fetch_interfaces(
client: &aws_sdk_ec2::Client,
metrics: &Metrics,
    addresses: &[std::net::IpAddr],
    budget: Duration,
) -> Result<Vec<ObservedInterface>, Ec2Error> {
    let (v4, v6): (Vec<String>, Vec<String>) = {
        let (a, b): (Vec<&std::net::IpAddr>, Vec<&std::net::IpAddr>) = addresses.iter().partition(|a| a.is_ipv4());
        (a.iter().map(|a| a.to_string()).collect(), b.iter().map(|a| a.to_string()).collect())
    };
    let mut found: Vec<ObservedInterface> = Vec::new();
    for (name, values) in [("addresses.private-ip-address", v4), ("ipv6-addresses.ipv6-address", v6)] {
        if values.is_empty() {
            continue;
        }
        let enis = retrying(metrics, "DescribeNetworkInterfaces", budget, &|| true, || async {
                let filter = aws_sdk_ec2::types::Filter::builder().name(name).set_values(Some(values.clone())).build();
                let out = client
                    .describe_network_interfaces()
                    .filters(filter)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeNetworkInterfaces", e))?;
                Ok(out.network_interfaces().iter().map(observed_interface).collect::<Vec<_>>())
            })
            .await?;
        for eni in enis {
            if !found.iter().any(|f| f.network_interface_id == eni.network_interface_id) {
                found.push(eni);
            }
        }
    }
    Ok(found)
}

impl Ec2 {
    fn from_client(client: aws_sdk_ec2::Client, metrics: Arc<Metrics>) -> Ec2 {
        let batches = Arc::new(Batches::new(&client, &metrics));
        Ec2 { client, metrics, batches }
    }

    /// A client on the given SDK configuration, counting its calls in `metrics`.
    pub fn new(sdk: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Ec2 {
        Ec2::from_client(aws_sdk_ec2::Client::new(sdk), metrics)
    }

    /// A client whose credentials come from assuming `role_arn` with this node's own
    /// credentials, for route tables of a shared VPC in another account. STS is asked once;
    /// the SDK caches the credentials and renews them shortly before they expire, instead of
    /// an `sts assume-role` before every call.
    pub async fn assuming(sdk: &aws_config::SdkConfig, role_arn: &str, session_name: &str, metrics: Arc<Metrics>) -> Ec2 {
        Ec2::from_client(assumed_client(sdk, role_arn, session_name).await, metrics)
    }

    /// The SDK client, for calls outside the daemon's own set (the pre-flight DryRun checks).
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    /// Runs `call` until it succeeds, fails for a non-transient reason, or `budget` is spent.
    /// Every attempt is counted in the metrics by API and outcome.
    async fn with_retry<T, F, Fut>(&self, api: &'static str, budget: Duration, call: F) -> Result<T, Ec2Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Ec2Error>>,
    {
        self.gated(api, budget, &|| true, call).await
    }

    /// `with_retry` for mutating calls: `gate` is asked before every attempt, retries included.
    async fn gated<T, F, Fut>(&self, api: &'static str, budget: Duration, gate: WriteGate<'_>, call: F) -> Result<T, Ec2Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Ec2Error>>,
    {
        retrying(&self.metrics, api, budget, gate, call).await
    }

    /// DescribeAddresses for all of `allocation_ids`, shared with every concurrent read of
    /// this client: the answer may hold more addresses than asked for.
    pub async fn describe_addresses(&self, allocation_ids: &[String], budget: Duration) -> Result<Vec<ObservedEip>, Ec2Error> {
        let read = Read {
            keys: allocation_ids.to_vec(),
            budget,
        };
        self.batches.addresses.submit(read).await.unwrap_or_else(|| Err(lost("DescribeAddresses")))
    }

    /// Points the address at `me` in one atomic call: never disassociate first.
    pub async fn associate_address(
        &self,
        allocation_id: &str,
        me: &Identity,
        private_ip: Option<std::net::Ipv4Addr>,
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<Option<String>, Ec2Error> {
        self.gated("AssociateAddress", budget, gate, || async {
            let mut req = self
                .client
                .associate_address()
                .allocation_id(allocation_id)
                .allow_reassociation(true);
            req = match &me.network_interface_id {
                Some(eni) => req.network_interface_id(eni),
                None => req.instance_id(&me.instance_id),
            };
            if let Some(ip) = private_ip {
                req = req.private_ip_address(ip.to_string());
            }
            let out = req.send().await.map_err(|e| classify("AssociateAddress", e))?;
            Ok(out.association_id().map(str::to_owned))
        })
        .await
    }

    /// Writes the ownership record (holder instance, epoch) on an address, and returns the
    /// epoch written: concurrent claims share one CreateTags with the highest epoch among them
    /// (never lower than `owner.epoch`).
    pub async fn claim(&self, allocation_id: &str, owner: &Ownership, budget: Duration, gate: SharedGate) -> Result<u64, Ec2Error> {
        let claim = Claim {
            allocation_id: allocation_id.to_owned(),
            owner: owner.clone(),
            gate,
            budget,
        };
        self.batches.claims.submit(claim).await.unwrap_or_else(|| Err(lost("CreateTags")))
    }

    /// Writes a VIP's or secondary IP's ownership record (`key` = `value`) on `resources`:
    /// records meant for the same resources at the same moment share one CreateTags.
    pub async fn write_record(&self, resources: &[String], key: &str, value: &str, budget: Duration, gate: SharedGate) -> Result<(), Ec2Error> {
        let write = RecordWrite {
            resources: resources.to_vec(),
            group: resources.join(" "),
            key: key.to_owned(),
            value: value.to_owned(),
            gate,
            budget,
        };
        self.batches.records.submit(write).await.unwrap_or_else(|| Err(lost("CreateTags")))
    }

    /// DescribeRouteTables for all of `route_table_ids`, shared with every concurrent read of
    /// this client: the answer may hold more tables than asked for.
    pub async fn describe_route_tables(&self, route_table_ids: &[String], budget: Duration) -> Result<Vec<ObservedRouteTable>, Ec2Error> {
        let read = Read {
            keys: route_table_ids.to_vec(),
            budget,
        };
        self.batches.route_tables.submit(read).await.unwrap_or_else(|| Err(lost("DescribeRouteTables")))
    }

    /// Route tables carrying a tag (in a VPC, when given): the optional auto-discovery of VIPs.
    pub async fn find_route_tables(&self, query: &crate::config::RouteTableQuery, budget: Duration) -> Result<Vec<String>, Ec2Error> {
        self.with_retry("DescribeRouteTables", budget, || async {
            let filter = |name: String, value: &str| aws_sdk_ec2::types::Filter::builder().name(name).values(value).build();
            let mut req = self
                .client
                .describe_route_tables()
                .filters(filter(format!("tag:{}", query.tag_key), &query.tag_value));
            if let Some(vpc) = &query.vpc_id {
                req = req.filters(filter("vpc-id".into(), vpc));
            }
            let out = req.send().await.map_err(|e| classify("DescribeRouteTables", e))?;
            let mut ids: Vec<String> = out.route_tables().iter().filter_map(|t| t.route_table_id().map(str::to_owned)).collect();
            ids.sort();
            Ok(ids)
        })
        .await
    }

    /// Points `destination` in one route table at our ENI: ReplaceRoute is atomic, the route
    /// never disappears; CreateRoute only when the route does not exist yet.
    pub async fn set_route(
        &self,
        route_table_id: &str,
        destination: &str,
        network_interface_id: &str,
        create: bool,
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<(), Ec2Error> {
        self.gated(if create { "CreateRoute" } else { "ReplaceRoute" }, budget, gate, || async {
            // IPv6 destinations go in their own parameter (DestinationIpv6CidrBlock).
            let ipv6 = destination.contains(':');
            if create {
                let req = self.client.create_route().route_table_id(route_table_id).network_interface_id(network_interface_id);
                let req = if ipv6 { req.destination_ipv6_cidr_block(destination) } else { req.destination_cidr_block(destination) };
                req.send().await.map_err(|e| classify("CreateRoute", e))?;
            } else {
                let req = self.client.replace_route().route_table_id(route_table_id).network_interface_id(network_interface_id);
                let req = if ipv6 { req.destination_ipv6_cidr_block(destination) } else { req.destination_cidr_block(destination) };
                req.send().await.map_err(|e| classify("ReplaceRoute", e))?;
            }
            Ok(())
        })
        .await
    }

    /// Whether EC2 still checks source/destination addresses on this ENI: when it does, packets
    /// for a route-table VIP (not the ENI's own address) are dropped.
    pub async fn source_dest_check(&self, network_interface_id: &str, budget: Duration) -> Result<Option<bool>, Ec2Error> {
        Ok(self.interface(network_interface_id, budget).await?.and_then(|n| n.source_dest_check()))
    }

    /// One ENI as DescribeNetworkInterfaces shows it (None: EC2 returned none).
    async fn interface(&self, network_interface_id: &str, budget: Duration) -> Result<Option<aws_sdk_ec2::types::NetworkInterface>, Ec2Error> {
        self.with_retry("DescribeNetworkInterfaces", budget, || async {
            let out = self
                .client
                .describe_network_interfaces()
                .network_interface_ids(network_interface_id)
                .send()
                .await
                .map_err(|e| classify("DescribeNetworkInterfaces", e))?;
            Ok(out.network_interfaces().first().cloned())
        })
        .await
    }

    /// DescribeNetworkInterfaces for every ENI that carries any of `addresses` (as its
    /// primary or a secondary IP), shared with every concurrent read of this client: the
    /// answer may hold more interfaces than asked for.
    pub async fn describe_interfaces_with(&self, addresses: &[std::net::IpAddr], budget: Duration) -> Result<Vec<ObservedInterface>, Ec2Error> {
        let read = Read {
            keys: addresses.to_vec(),
            budget,
        };
        self.batches.interfaces.submit(read).await.unwrap_or_else(|| Err(lost("DescribeNetworkInterfaces")))
    }

    /// Assigns IPv6 `addresses` to our ENI. EC2 has no reassignment for IPv6: an address still
    /// on another ENI must be unassigned there first (`unassign_ipv6`).
    pub async fn assign_ipv6(
        &self,
        network_interface_id: &str,
        addresses: &[std::net::Ipv6Addr],
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<(), Ec2Error> {
        let values: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        self.gated("AssignIpv6Addresses", budget, gate, || async {
            self.client
                .assign_ipv6_addresses()
                .network_interface_id(network_interface_id)
                .set_ipv6_addresses(Some(values.clone()))
                .send()
                .await
                .map_err(|e| classify("AssignIpv6Addresses", e))?;
            Ok(())
        })
        .await
    }

    /// Takes IPv6 `addresses` off another ENI, the first half of an IPv6 move.
    pub async fn unassign_ipv6(
        &self,
        network_interface_id: &str,
        addresses: &[std::net::Ipv6Addr],
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<(), Ec2Error> {
        let values: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        self.gated("UnassignIpv6Addresses", budget, gate, || async {
            self.client
                .unassign_ipv6_addresses()
                .network_interface_id(network_interface_id)
                .set_ipv6_addresses(Some(values.clone()))
                .send()
                .await
                .map_err(|e| classify("UnassignIpv6Addresses", e))?;
            Ok(())
        })
        .await
    }

    /// Assigns `address` to our ENI, taking it from wherever it is (AllowReassignment): never
    /// unassigned first, so the address is never nowhere. Concurrent assignments to one ENI
    /// share one call.
    pub async fn assign_private_ip(
        &self,
        network_interface_id: &str,
        address: std::net::Ipv4Addr,
        budget: Duration,
        gate: SharedGate,
    ) -> Result<(), Ec2Error> {
        let assignment = Assignment {
            network_interface_id: network_interface_id.to_owned(),
            address,
            gate,
            budget,
        };
        self.batches.assignments.submit(assignment).await.unwrap_or_else(|| Err(lost("AssignPrivateIpAddresses")))
    }

    /// An ENI's primary private IPv4 address and its public IPv4 address (an EIP or the
    /// auto-assigned one), if any: the values of `private`/`public` DNS records.
    pub async fn interface_addresses(
        &self,
        network_interface_id: &str,
        budget: Duration,
    ) -> Result<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv4Addr>), Ec2Error> {
        let eni = self.interface(network_interface_id, budget).await?;
        let private = eni.as_ref().and_then(|n| n.private_ip_address()).and_then(|a| a.parse().ok());
        let public = eni
            .as_ref()
            .and_then(|n| n.association())
            .and_then(|a| a.public_ip())
            .and_then(|a| a.parse().ok());
        Ok((private, public))
    }

    /// The subnet of one ENI, with its range: secondary IPs must lie inside it.
    pub async fn subnet_of(&self, network_interface_id: &str, budget: Duration) -> Result<Subnet, Ec2Error> {
        let subnet_id = self
            .interface(network_interface_id, budget)
            .await?
            .and_then(|n| n.subnet_id().map(str::to_owned))
            .ok_or_else(|| Ec2Error {
                api: "DescribeNetworkInterfaces",
                class: ErrorClass::NotFound,
                code: None,
                message: format!("interface {network_interface_id} has no subnet"),
            })?;
        self.with_retry("DescribeSubnets", budget, || async {
            let out = self
                .client
                .describe_subnets()
                .subnet_ids(&subnet_id)
                .send()
                .await
                .map_err(|e| classify("DescribeSubnets", e))?;
            let subnet = out.subnets().first();
            let cidr = subnet.and_then(|s| s.cidr_block()).map(str::to_owned).ok_or_else(|| Ec2Error {
                api: "DescribeSubnets",
                class: ErrorClass::NotFound,
                code: None,
                message: format!("subnet {subnet_id} has no IPv4 range"),
            })?;
            Ok(Subnet {
                subnet_id: subnet_id.clone(),
                cidr,
                ipv6_cidrs: subnet.map(subnet_ipv6_ranges).unwrap_or_default(),
            })
        })
        .await
    }

    /// One instance as EC2 describes it; None when EC2 returns no such instance.
    async fn describe_instance(&self, instance_id: &str, budget: Duration) -> Result<Option<aws_sdk_ec2::types::Instance>, Ec2Error> {
        self.with_retry("DescribeInstances", budget, || async {
            let out = self
                .client
                .describe_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .map_err(|e| classify("DescribeInstances", e))?;
            Ok(out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(instance_id)).cloned())
        })
        .await
    }

    /// An instance's state name (`running`, `stopping`, `stopped`, ...); None when EC2 no
    /// longer knows the instance (terminated long ago): it runs nothing.
    pub async fn instance_state(&self, instance_id: &str, budget: Duration) -> Result<Option<String>, Ec2Error> {
        match self.describe_instance(instance_id, budget).await {
            Ok(found) => Ok(found.map(|i| i.state().and_then(|s| s.name()).map_or_else(|| "unknown".to_owned(), |n| n.as_str().to_owned()))),
            Err(e) if e.class == ErrorClass::NotFound && e.code.as_deref().is_some_and(|c| c.starts_with("InvalidInstanceID")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stops an instance at once: `Force` (no chance to flush caches) and `SkipOsShutdown` (no
    /// graceful OS shutdown), because a fenced node must stop writing now, not after its
    /// shutdown scripts. A region or endpoint that does not know `SkipOsShutdown` gets the call
    /// again with `Force` alone. Mutating: `gate` is asked before every attempt.
    pub async fn stop_instance(&self, instance_id: &str, budget: Duration, gate: WriteGate<'_>) -> Result<(), Ec2Error> {
        let stop = |skip_os_shutdown: bool| {
            self.gated("StopInstances", budget, gate, move || async move {
                let mut req = self.client.stop_instances().instance_ids(instance_id).force(true);
                if skip_os_shutdown {
                    req = req.skip_os_shutdown(true);
                }
                req.send().await.map_err(|e| classify("StopInstances", e))?;
                Ok(())
            })
        };
        match stop(true).await {
            Err(e) if e.class == ErrorClass::Refused
                && e.code.as_deref().is_some_and(|c| matches!(c, "InvalidParameterCombination" | "UnknownParameter" | "InvalidParameter")) =>
            {
                tracing::warn!(instance = instance_id, error = %e.summary(), "StopInstances refused SkipOsShutdown; stopping with Force alone");
                stop(false).await
            }
            other => other,
        }
    }

    /// The primary (device index 0) network interface of an instance and its availability zone.
    pub async fn instance_placement(&self, instance_id: &str, budget: Duration) -> Result<InstancePlacement, Ec2Error> {
        let instance = self.describe_instance(instance_id, budget).await?;
        Ok(InstancePlacement {
            primary_interface: instance.as_ref().and_then(primary_interface_of).map(str::to_owned),
            availability_zone: instance
                .as_ref()
                .and_then(|i| i.placement())
                .and_then(|p| p.availability_zone())
                .map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shared_read_asks_once_and_an_unknown_id_fails_only_its_caller() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let reads = Arc::new(read_batcher(move |keys: Vec<String>, _budget| -> BoxFuture<'static, _> {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if keys.iter().any(|k| k.starts_with("bad")) {
                    return Err(Ec2Error {
                        api: "DescribeAddresses",
                        class: ErrorClass::NotFound,
                        code: Some("InvalidAllocationID.NotFound".into()),
                        message: "unknown".into(),
                    });
                }
                Ok(keys)
            })
        }));
        let ask = |keys: &[&str]| {
            let reads = reads.clone();
            let read = Read {
                keys: keys.iter().map(|k| k.to_string()).collect(),
                budget: Duration::from_secs(1),
            };
            tokio::spawn(async move { reads.submit(read).await })
        };
        let (a, b) = (ask(&["a"]), ask(&["b", "a"]));
        assert_eq!(a.await.ok().flatten().and_then(Result::ok), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(b.await.ok().flatten().and_then(Result::ok), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for both");

        let (good, bad) = (ask(&["c"]), ask(&["bad1"]));
        assert_eq!(good.await.ok().flatten().and_then(Result::ok), Some(vec!["c".to_string()]));
        let bad = bad.await.ok().flatten().and_then(Result::err).map(|e| e.class);
        assert_eq!(bad, Some(ErrorClass::NotFound));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "the failed shared call, then one per caller");
    }

    #[test]
    fn error_classes() {
        assert_eq!(class_of(Some("RequestLimitExceeded"), 503), ErrorClass::Transient);
        assert_eq!(class_of(None, 500), ErrorClass::Transient);
        assert_eq!(class_of(Some("UnauthorizedOperation"), 403), ErrorClass::Permission);
        assert_eq!(class_of(None, 403), ErrorClass::Permission);
        assert_eq!(class_of(Some("InvalidAllocationID.NotFound"), 400), ErrorClass::NotFound);
        assert_eq!(class_of(Some("InvalidInstanceID.NotFound"), 400), ErrorClass::NotFound);
        assert_eq!(class_of(Some("InvalidParameterValue"), 400), ErrorClass::Refused);
    }

    #[test]
    fn subnet_ranges() {
        let s = |cidr: &str| Subnet {
            subnet_id: "subnet-1".into(),
            cidr: cidr.into(),
            ipv6_cidrs: vec!["2600:1f18:1::/64".into()],
        };
        let v6 = |t: &str| t.parse::<std::net::Ipv6Addr>().unwrap();
        assert!(s("10.0.1.0/24").contains(v6("2600:1f18:1::50")));
        assert!(!s("10.0.1.0/24").contains(v6("2600:1f18:2::50")));
        let a = |t: &str| t.parse::<std::net::Ipv4Addr>().unwrap();
        assert!(s("10.0.1.0/24").contains(a("10.0.1.50")));
        assert!(!s("10.0.1.0/24").contains(a("10.0.2.50")));
        assert!(s("10.0.0.0/16").contains(a("10.0.255.1")));
        assert!(s("0.0.0.0/0").contains(a("192.168.1.1")));
        assert!(!s("10.0.1.0/33").contains(a("10.0.1.1")));
        assert!(!s("garbage").contains(a("10.0.1.1")));
    }
}
