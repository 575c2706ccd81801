//! Prometheus metrics (opt-in endpoint on localhost): failovers, EC2 calls by API and outcome,
//! EC2 latency, verification age, holder per resource, quorum and membership size.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::listener::{Gate, Limits};

/// The `{resource,kind}` labels: one series per configured address, with its kind so a
/// dashboard can sum EIPs, VIPs and secondary IPs apart.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    /// The resource's configured `name`.
    pub resource: String,
    /// `eip`, `vip` or `secondary_ip`.
    pub kind: String,
}

/// The `{api,outcome}` labels of EC2 call counts, to tell throttling from denied permissions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The EC2 action, e.g. `AssociateAddress`.
    pub api: String,
    /// The error class: ok, transient, permission, not_found or refused.
    pub outcome: String,
}

/// The `{api}` label of the EC2 latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// The EC2 action, e.g. `DescribeAddresses`.
    pub api: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~4 s: in-process SDK calls take milliseconds; the tail shows throttling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13))
}

/// Every series this node exports under `corosync_eip_`, shared by the daemon's tasks.
pub struct Metrics {
    registry: Registry,
    /// `failovers_total`: takeovers by this node, so alerting sees addresses moving.
    pub failovers: Family<ResourceLabel, Counter>,
    /// `drift_repairs_total`: someone else changed EC2 or the interface and the holder fixed it.
    pub drift_repairs: Family<ResourceLabel, Counter>,
    /// `ec2_calls_total`: EC2 calls by API and outcome class.
    pub ec2_calls: Family<CallLabels, Counter>,
    /// `ec2_call_duration_seconds`: EC2 latency; its tail shows throttling.
    pub ec2_latency: Family<ApiLabel, Histogram, fn() -> Histogram>,
    /// `verification_age_seconds`: how stale the holder's proof from EC2 is.
    pub verification_age: Family<ResourceLabel, Gauge<f64, AtomicU64>>,
    /// `holder_node`: corosync node id of the elected holder, 0 when there is none.
    pub holder_node: Family<ResourceLabel, Gauge>,
    /// `quorate`: 1 when the partition agreed on quorum and may elect holders.
    pub quorate: Gauge,
    /// `members`: daemons in the CPG group.
    pub members: Gauge,
}

impl Metrics {
    /// Registers every family up front, so a scrape shows them before the first event.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("corosync_eip");
        let failovers = Family::<ResourceLabel, Counter>::default();
        let drift_repairs = Family::<ResourceLabel, Counter>::default();
        let ec2_calls = Family::<CallLabels, Counter>::default();
        let ec2_latency = Family::<ApiLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let verification_age = Family::<ResourceLabel, Gauge<f64, AtomicU64>>::default();
        let holder_node = Family::<ResourceLabel, Gauge>::default();
        let quorate = Gauge::default();
        let members = Gauge::default();
        registry.register("failovers", "Times this node took over a resource", failovers.clone());
        registry.register("drift_repairs", "Times the holder found EC2 or its interface changed and repaired it", drift_repairs.clone());
        registry.register("ec2_calls", "EC2 API calls by API and outcome class", ec2_calls.clone());
        registry.register("ec2_call_duration_seconds", "EC2 API call latency", ec2_latency.clone());
        registry.register("verification_age_seconds", "Seconds since the holder last verified the resource in EC2", verification_age.clone());
        registry.register("holder_node", "Corosync node id of the resource's elected holder (0: none)", holder_node.clone());
        registry.register("quorate", "1 when the partition is quorate", quorate.clone());
        registry.register("members", "Daemons in the CPG group", members.clone());
        Arc::new(Metrics {
            registry,
            failovers,
            drift_repairs,
            ec2_calls,
            ec2_latency,
            verification_age,
            holder_node,
            quorate,
            members,
        })
    }

    /// Counts one EC2 call attempt and records its latency.
    pub fn ec2_call(&self, api: &str, outcome: &str, elapsed: Duration) {
        self.ec2_calls
            .get_or_create(&CallLabels {
                api: api.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.ec2_latency
            .get_or_create(&ApiLabel { api: api.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// The labels of a resource's series.
    pub fn resource(name: &str, kind: &str) -> ResourceLabel {
        ResourceLabel {
            resource: name.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// The scrape body, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The metrics endpoint's limits: a scraper connects every few seconds and reads a few
/// kilobytes.
pub const LIMITS: Limits = Limits {
    connections: 16,
    read: Duration::from_secs(5),
    write: Duration::from_secs(5),
};

/// Serves `GET /metrics` in the OpenMetrics text format; anything else is a 404.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let mut gate = Gate::new("metrics", LIMITS);
    let listener = &listener;
    loop {
        let (mut stream, permit) = gate.next(|| async move { listener.accept().await.map(|(s, _)| s) }).await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = match tokio::time::timeout(LIMITS.read, stream.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let response = if request.starts_with("GET ") && (path == "/metrics" || path == "/") {
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            };
            let send = async {
                stream.write_all(response.as_bytes()).await?;
                stream.shutdown().await
            };
            let _ = tokio::time::timeout(LIMITS.write, send).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_families() {
        let m = Metrics::new();
        m.ec2_call("AssociateAddress", "ok", Duration::from_millis(4));
        m.failovers.get_or_create(&Metrics::resource("web", "eip")).inc();
        m.quorate.set(1);
        let text = m.render();
        assert!(text.contains(r#"corosync_eip_ec2_calls_total{api="AssociateAddress",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"corosync_eip_failovers_total{resource="web",kind="eip"} 1"#), "{text}");
        assert!(text.contains("corosync_eip_quorate 1"), "{text}");
        assert!(text.contains("corosync_eip_ec2_call_duration_seconds_bucket"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
