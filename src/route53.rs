//! Adapter for the Route 53 API: the record reads and writes of `[[dns]]` resources, with the
//! same error classes, retries, write gate and metrics as the EC2 calls.
//!
//! Route 53 allows 5 requests per second per account, shared with everything else the account
//! runs, so the monitor reads each zone once per interval for all its records, and throttling
//! is retried with the jittered backoff every AWS call gets.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType};

use crate::core::reconcile::{find_record, owner_record_name, ObservedRecord, RecordOwnership};
use crate::ec2::{classify, retrying, Ec2Error, ErrorClass, WriteGate};
use crate::metrics::Metrics;

/// Most records one ListResourceRecordSets page returns (Route 53's own limit).
const PAGE: i32 = 300;
/// Pages read per zone in one monitor round: 3,000 records, far more than a cluster manages;
/// a bigger zone is read from each record's own name instead.
const MAX_PAGES: usize = 10;
/// Record sets one read of a single record takes from its place on: the record's other types
/// and its ownership record follow it.
const RECORD_WINDOW: i32 = 8;

/// The daemon's Route 53 calls, each retried on transient errors and counted in the metrics.
#[derive(Clone)]
pub struct Route53 {
    client: aws_sdk_route53::Client,
    metrics: Arc<Metrics>,
}

/// Whether a change has reached every Route 53 authoritative server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Accepted, not yet everywhere.
    Pending,
    /// Every authoritative server answers with the change.
    InSync,
}

fn refused(api: &'static str, message: String) -> Ec2Error {
    Ec2Error {
        api,
        class: ErrorClass::Refused,
        code: None,
        message,
    }
}

fn observed(r: &ResourceRecordSet) -> ObservedRecord {
    ObservedRecord {
        name: r.name().to_ascii_lowercase(),
        record_type: r.r#type().as_str().to_owned(),
        ttl: r.ttl(),
        values: r.resource_records().iter().map(|v| v.value().to_owned()).collect(),
    }
}

impl Route53 {
    /// A client on the given SDK configuration, counting its calls in `metrics`.
    pub fn new(sdk: &aws_config::SdkConfig, metrics: Arc<Metrics>) -> Route53 {
        Route53 {
            client: aws_sdk_route53::Client::new(sdk),
            metrics,
        }
    }

    /// The SDK client, for the pre-flight checks.
    pub fn client(&self) -> &aws_sdk_route53::Client {
        &self.client
    }

    /// One record set (name and type) and its ownership record, read from the record's own
    /// place in the zone: one call, as Route 53 lists the owner's name right after the
    /// record's; a second only when other records stand between them.
    pub async fn record(&self, zone: &str, name: &str, record_type: &str, budget: Duration) -> Result<Vec<ObservedRecord>, Ec2Error> {
        let owner = owner_record_name(name);
        let (mut records, truncated) = self.list_from(zone, name, record_type, RECORD_WINDOW, budget).await?;
        if truncated && find_record(&records, &owner, "TXT").is_none() {
            records.extend(self.list_from(zone, &owner, "TXT", 1, budget).await?.0);
        }
        Ok(records)
    }

    /// Up to `items` record sets from (name, type) on, and whether more follow.
    async fn list_from(&self, zone: &str, name: &str, record_type: &str, items: i32, budget: Duration) -> Result<(Vec<ObservedRecord>, bool), Ec2Error> {
        retrying(&self.metrics, "ListResourceRecordSets", budget, &|| true, || async {
            let out = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone)
                .start_record_name(name)
                .start_record_type(RrType::from(record_type))
                .max_items(items)
                .send()
                .await
                .map_err(|e| classify("ListResourceRecordSets", e))?;
            Ok((out.resource_record_sets().iter().map(observed).collect(), out.is_truncated()))
        })
        .await
    }

    /// Every record of a zone (at most `MAX_PAGES` pages), or only `names` read one by one
    /// when the zone is bigger: what a monitor round needs for all the records it holds.
    pub async fn zone_records(&self, zone: &str, names: &[(String, String)], budget: Duration) -> Result<Vec<ObservedRecord>, Ec2Error> {
        if let [(name, record_type)] = names {
            return self.record(zone, name, record_type, budget).await;
        }
        let mut records = Vec::new();
        let mut next: Option<(String, RrType)> = None;
        for _ in 0..MAX_PAGES {
            let start = next.clone();
            let out = retrying(&self.metrics, "ListResourceRecordSets", budget, &|| true, || async {
                let mut req = self.client.list_resource_record_sets().hosted_zone_id(zone).max_items(PAGE);
                if let Some((name, t)) = &start {
                    req = req.start_record_name(name).start_record_type(t.clone());
                }
                req.send().await.map_err(|e| classify("ListResourceRecordSets", e))
            })
            .await?;
            records.extend(out.resource_record_sets().iter().map(observed));
            if !out.is_truncated() {
                return Ok(records);
            }
            match (out.next_record_name(), out.next_record_type()) {
                (Some(n), Some(t)) => next = Some((n.to_owned(), t.clone())),
                _ => return Ok(records),
            }
        }
        // A huge zone: read each of our records from its own place instead.
        let mut mine = Vec::new();
        for (name, record_type) in names {
            mine.extend(self.record(zone, name, record_type, budget).await?);
        }
        Ok(mine)
    }

    /// Deletes the record as we wrote it (name, type, TTL and value must all match, so a
    /// record someone else changed meanwhile is left alone: Route 53 refuses the change), and
    /// in the same batch its ownership record `owner` as read.
    #[allow(clippy::too_many_arguments)]
    pub async fn delete(
        &self,
        zone: &str,
        name: &str,
        record_type: &str,
        ttl: u32,
        value: std::net::IpAddr,
        owner: Option<&ObservedRecord>,
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<String, Ec2Error> {
        let mut sets = vec![(name.to_owned(), record_type.to_owned(), Some(i64::from(ttl)), vec![value.to_string()])];
        if let Some(o) = owner {
            sets.push((o.name.clone(), o.record_type.clone(), o.ttl, o.values.clone()));
        }
        self.change(ChangeAction::Delete, zone, sets, "corosync-eip: the holder releases the record", budget, gate).await
    }

    /// Points the record at `value` with one UPSERT (never a DELETE first, so the name always
    /// resolves), with its ownership record `owner` in the same batch, so Route 53 applies both
    /// or neither; returns the change id to follow with `propagation`.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert(
        &self,
        zone: &str,
        name: &str,
        record_type: &str,
        ttl: u32,
        value: std::net::IpAddr,
        owner: Option<&RecordOwnership>,
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<String, Ec2Error> {
        let mut sets = vec![(name.to_owned(), record_type.to_owned(), Some(i64::from(ttl)), vec![value.to_string()])];
        if let Some(o) = owner {
            sets.push((owner_record_name(name), "TXT".to_owned(), Some(i64::from(ttl)), vec![o.txt_value()]));
        }
        self.change(ChangeAction::Upsert, zone, sets, "corosync-eip: the elected holder takes the record", budget, gate).await
    }

    /// One atomic change of record sets, each (name, type, TTL, values).
    async fn change(
        &self,
        action: ChangeAction,
        zone: &str,
        sets: Vec<(String, String, Option<i64>, Vec<String>)>,
        comment: &str,
        budget: Duration,
        gate: WriteGate<'_>,
    ) -> Result<String, Ec2Error> {
        let api = "ChangeResourceRecordSets";
        let bad = |e: aws_sdk_route53::error::BuildError| refused(api, e.to_string());
        let mut changes = Vec::new();
        for (name, record_type, ttl, values) in sets {
            let mut set = ResourceRecordSet::builder().name(name).r#type(RrType::from(record_type.as_str())).set_ttl(ttl);
            for value in values {
                set = set.resource_records(ResourceRecord::builder().value(value).build().map_err(bad)?);
            }
            changes.push(Change::builder().action(action.clone()).resource_record_set(set.build().map_err(bad)?).build().map_err(bad)?);
        }
        let batch = ChangeBatch::builder().comment(comment).set_changes(Some(changes)).build().map_err(bad)?;
        retrying(&self.metrics, api, budget, gate, || async {
            let out = self
                .client
                .change_resource_record_sets()
                .hosted_zone_id(zone)
                .change_batch(batch.clone())
                .send()
                .await
                .map_err(|e| classify(api, e))?;
            Ok(out.change_info().map(|c| c.id().to_owned()).unwrap_or_default())
        })
        .await
    }

    /// Where a change stands.
    pub async fn propagation(&self, change_id: &str, budget: Duration) -> Result<Propagation, Ec2Error> {
        retrying(&self.metrics, "GetChange", budget, &|| true, || async {
            let out = self.client.get_change().id(change_id).send().await.map_err(|e| classify("GetChange", e))?;
            Ok(match out.change_info().map(|c| c.status()) {
                Some(ChangeStatus::Insync) => Propagation::InSync,
                _ => Propagation::Pending,
            })
        })
        .await
    }

    /// The zone's name (`example.com.`), which proves it exists and is readable.
    pub async fn zone_name(&self, zone: &str, budget: Duration) -> Result<String, Ec2Error> {
        retrying(&self.metrics, "GetHostedZone", budget, &|| true, || async {
            let out = self.client.get_hosted_zone().id(zone).send().await.map_err(|e| classify("GetHostedZone", e))?;
            Ok(out.hosted_zone().map(|z| z.name().to_ascii_lowercase()).unwrap_or_default())
        })
        .await
    }
}
