//! Before the first join: who we are in EC2, which route tables our VIPs use, whether our
//! interface can carry them, and how our health checks stand, so the first announcement to the
//! cluster is already right.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::holding::{Liveness, LocalResource};
use super::monitor::HealthState;
use super::report::Undecodable;
use super::{Daemon, Signals, TaskResult, VERSION};
use crate::config::{Config, ConfigError, DnsValue, SecondaryIpConfig, VipConfig};
use crate::control::{self, SharedStatus};
use crate::core::health::HealthTracker;
use crate::core::reconcile::{backoff, Identity};
use crate::ec2::{self, Ec2};
use crate::kinds::{self, Kind};
use crate::localaddr::LocalAddresses;
use crate::metrics::Metrics;
use crate::status::{self, StatusReport};
use crate::notify::Notifier;
use super::handover::{Discovered, Handover};
use crate::{health, identity};

impl Daemon {
    /// Serves status and metrics, finds our identity (retrying until EC2 answers), discovers
    /// route tables and runs the first health checks. None: stopped while waiting for EC2.
    /// With a `handover` (a reload), what the previous process learnt is taken instead of
    /// asked again, and the checks that only warn run after rejoining, so the new process
    /// rejoins within the peers' reattach grace whatever EC2's latency.
    pub(super) async fn start(
        mut config: Config,
        config_path: PathBuf,
        signals: &mut Signals,
        handover: Option<&Handover>,
    ) -> anyhow::Result<Option<Daemon>> {
        let exe = std::env::current_exe()?;
        let args: Vec<OsString> = std::env::args_os().collect();
        let status: SharedStatus = Arc::new(Mutex::new(StatusReport {
            schema: status::SCHEMA.into(),
            version: VERSION.into(),
            pid: std::process::id(),
            corosync: "disconnected".into(),
            ..Default::default()
        }));
        let (requests_tx, requests) = mpsc::channel(16);
        let listener = control::bind(&config.daemon.control_socket)?;
        tokio::spawn(control::serve(listener, status.clone(), requests_tx));

        let metrics = Metrics::new();
        if let Some(addr) = config.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
            info!(listen = %addr, "serving Prometheus metrics");
            tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
        }
        ec2::trust_store()?;
        let sdk = ec2::sdk_config(&config.aws).await;
        let ec2 = Ec2::new(&sdk, metrics.clone());
        let handed_identity = handover.and_then(|h| Some((h.identity.clone()?, h.availability_zone.clone())));
        let (identity, availability_zone) = match handed_identity {
            Some(known) => known,
            None => match resolve_identity(&config, &ec2, signals).await {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        info!(instance = %identity.instance_id, eni = ?identity.network_interface_id, az = ?availability_zone, "node identity");

        let route_clients = route_clients(&sdk, &config, &identity, &metrics).await;
        let (mut warnings, discovered) =
            discover_route_tables(&ec2, &route_clients, &mut config.vips, handover.map(|h| &h.route_tables)).await;
        if let Some(exposed) = config.metrics_exposure() {
            let w = format!("{exposed}; keep it on 127.0.0.1 or ::1, or firewall the port");
            warn!("{w}");
            warnings.push(w);
        }
        let route53 = crate::route53::Route53::new(&sdk, metrics.clone());
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        if handover.is_some() {
            // A reload must never end the daemon that holds addresses, nor hold up its rejoin:
            // these checks only warn, after it rejoined.
            let (ec2, route53, identity, config, path, tx) =
                (ec2.clone(), route53.clone(), identity.clone(), config.clone(), config_path.clone(), results_tx.clone());
            tokio::spawn(async move {
                let warnings = fit_warnings(&ec2, &route53, &identity, &config, &path, true).await.unwrap_or_default();
                let _ = tx.send(TaskResult::Warnings(warnings));
            });
        } else {
            warnings.extend(fit_warnings(&ec2, &route53, &identity, &config, &config_path, false).await?);
        }
        let targets = dns_targets(&ec2, &identity, &config, handover.is_none()).await;
        let addresses = if config.vips.is_empty() && config.secondary_ips.is_empty() {
            None
        } else {
            Some(Arc::new(LocalAddresses::new()?))
        };
        let health = first_health_checks(&config, handover.map(|h| &h.health)).await;
        let standby_persisted = config.daemon.state_dir.join(super::commands::STANDBY_FILE).exists();

        let (permit, _) = watch::channel(BTreeSet::new());
        let mut resources = BTreeMap::new();
        let kinds = config
            .eips
            .iter()
            .map(|e| (e.name.clone(), Kind::Eip(e.clone())))
            .chain(config.vips.iter().map(|v| (v.name.clone(), Kind::Vip(v.clone()))))
            .chain(config.secondary_ips.iter().map(|s| (s.name.clone(), Kind::Secondary(s.clone()))))
            .chain(targets.into_iter().map(|t| (t.config.name.clone(), Kind::Dns(t))));
        for (name, kind) in kinds {
            let unit = config.unit_of(&name).unwrap_or_else(|| name.clone());
            resources.insert(name, LocalResource::new(kind, unit));
        }
        let notifier = Notifier::start(config.notify.clone());
        let fencer = Arc::new(crate::fence::Fencer::new(ec2.clone(), identity.instance_id.clone(), config.fencing.clone()));
        let daemon = Daemon {
            fencer,
            fence_hooked: None,
            kinds: kinds::Context {
                ec2: ec2.clone(),
                route53,
                route_clients,
                me: identity.clone(),
                addresses,
            },
            config,
            config_path,
            identity,
            availability_zone,
            ec2,
            status,
            resources,
            results_tx,
            results_rx,
            requests,
            pending_commands: Vec::new(),
            permit,
            monitor_running: false,
            health,
            standby_persisted,
            startup_timer_armed: false,
            warnings,
            permission_warnings: Vec::new(),
            permission_check_running: false,
            drain: Default::default(),
            notifier,
            node_id: None,
            discovered,
            reload_lookup_running: false,
            reload_due: false,
            reload_announced: false,
            metrics,
            votes: None,
            probe: None,
            undecodable: Undecodable::default(),
            conflicts: Vec::new(),
            changed_at: None,
            liveness: Arc::new(Liveness::new()),
            systemd_status: String::new(),
            ready_sent: false,
            exe,
            args,
        };
        daemon.spawn_health_checks();
        Ok(Some(daemon))
    }

    /// Runs every health check at its interval for the life of the process.
    fn spawn_health_checks(&self) {
        for (index, check) in self.config.health.iter().enumerate() {
            let check = check.clone();
            let tx = self.results_tx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(check.interval).await;
                    let result = health::run_check(&check.check, check.timeout).await;
                    if tx.send(TaskResult::Health { index, result }).is_err() {
                        return;
                    }
                }
            });
        }
    }
}

/// Our instance (and interface, and zone), retried with backoff until EC2 or IMDS answers: a
/// node that does not know itself can neither announce nor act. None: stopped meanwhile.
async fn resolve_identity(config: &Config, ec2: &Ec2, signals: &mut Signals) -> Option<(Identity, Option<String>)> {
    let mut attempt = 0;
    loop {
        match identity::resolve(&config.node, ec2).await {
            Ok(found) => return Some(found),
            Err(e) => {
                let wait = backoff(attempt, Duration::from_millis(500), Duration::from_secs(30), rand::random());
                error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot determine this node's EC2 identity");
                attempt += 1;
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = signals.stopped() => return None,
                    }
                }
            }
        }
    }
}

/// One EC2 client per distinct `route_table_role`, each assuming its role with this node's
/// credentials (session name `corosync-eip-INSTANCE`, so CloudTrail names the node).
async fn route_clients(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    identity: &Identity,
    metrics: &Arc<Metrics>,
) -> BTreeMap<String, Ec2> {
    let roles: BTreeSet<&String> = config.vips.iter().filter_map(|v| v.route_table_role.as_ref()).collect();
    let session = format!("corosync-eip-{}", identity.instance_id);
    let mut clients = BTreeMap::new();
    for role in roles {
        info!(role = %role, session = %session, "route-table calls of some VIPs assume this role");
        clients.insert(role.clone(), Ec2::assuming(sdk, role, &session, metrics.clone()).await);
    }
    clients
}

/// Adds the route tables found by tag to each VIP that asks for discovery; returns the
/// warnings for status when none or no answer was found.
/// Fills in the route tables of VIPs that `discover` them: handed over by the process a reload
/// replaced when its query is unchanged, else looked up in EC2. Returns the warnings and what
/// was found, by VIP, for the next reload.
async fn discover_route_tables(
    ec2: &Ec2,
    route_clients: &BTreeMap<String, Ec2>,
    vips: &mut [VipConfig],
    handed: Option<&BTreeMap<String, Discovered>>,
) -> (Vec<String>, BTreeMap<String, Discovered>) {
    let mut warnings = Vec::new();
    let mut discovered = BTreeMap::new();
    for vip in vips.iter_mut() {
        let Some(query) = vip.discover.clone() else { continue };
        let known = handed.and_then(|h| h.get(&vip.name)).filter(|d| d.answers(&query)).map(|d| d.tables.clone());
        let client = match &vip.route_table_role {
            Some(role) => route_clients.get(role).unwrap_or(ec2),
            None => ec2,
        };
        let result = match known {
            Some(tables) => Ok(tables),
            None => client.find_route_tables(&query, super::DISCOVER_BUDGET).await,
        };
        match result {
            Ok(found) if !found.is_empty() => {
                info!(resource = %vip.name, tables = ?found, "route tables found by tag");
                discovered.insert(vip.name.clone(), Discovered { query: Discovered::query_text(&query), tables: found.clone() });
                for id in found {
                    if !vip.route_tables.contains(&id) {
                        vip.route_tables.push(id);
                    }
                }
            }
            Ok(_) => {
                let w = format!("{}: no route table tagged {}={}{}", vip.name, query.tag_key, query.tag_value, query.vpc_id.as_deref().map(|v| format!(" in {v}")).unwrap_or_default());
                error!("{w}");
                warnings.push(w);
            }
            Err(e) => {
                let w = format!("{}: cannot look up route tables by tag: {e}", vip.name);
                error!("{w}");
                warnings.push(w);
            }
        }
    }
    (warnings, discovered)
}

/// Route-table VIPs need the source/destination check off on our interface; say so at start
/// rather than at the first failover.
async fn source_dest_check(ec2: &Ec2, identity: &Identity) -> Option<String> {
    let eni = identity.network_interface_id.as_ref()?;
    match ec2.source_dest_check(eni, Duration::from_secs(5)).await {
        Ok(Some(true)) => {
            let w = format!(
                "source/destination check is ON for {eni}: traffic to route-table VIPs will be dropped; \
                 turn it off (aws ec2 modify-instance-attribute --instance-id {} --no-source-dest-check)",
                identity.instance_id
            );
            warn!("{w}");
            Some(w)
        }
        Ok(_) => None,
        Err(e) => {
            warn!(error = %e, "cannot read the source/destination check of our interface");
            None
        }
    }
}

/// Secondary IPs move between ENIs of one subnet only: an address outside our ENI's subnet is
/// a configuration error on this node (typically a node in another subnet or zone), refused at
/// start with the key named. Warnings when it cannot be told.
async fn same_subnet(
    ec2: &Ec2,
    identity: &Identity,
    secondary: &[SecondaryIpConfig],
    config_path: &std::path::Path,
) -> Result<Vec<String>, ConfigError> {
    if secondary.is_empty() {
        return Ok(Vec::new());
    }
    let Some(eni) = identity.network_interface_id.as_ref() else {
        return Ok(vec!["secondary IPs need this node's network interface id; set [node] network_interface_id".into()]);
    };
    let subnet = match ec2.subnet_of(eni, Duration::from_secs(10)).await {
        Ok(subnet) => subnet,
        Err(e) => {
            let w = format!("cannot read the subnet of {eni}, so the secondary IPs' subnet is not checked: {e}");
            warn!("{w}");
            return Ok(vec![w]);
        }
    };
    info!(eni = %eni, subnet = %subnet.subnet_id, cidr = %subnet.cidr, "subnet of this node's interface");
    for (index, s) in secondary.iter().enumerate() {
        if !subnet.contains(s.address) {
            return Err(ConfigError::Invalid {
                path: config_path.to_owned(),
                key: format!("secondary_ip[{index}].address"),
                message: format!(
                    "{} is outside {} ({}), the subnet of this node's interface {eni}: a secondary IP moves \
                     only between interfaces of one subnet, so every node's interface must be in its subnet",
                    s.address,
                    subnet.subnet_id,
                    subnet.ranges_for(s.address)
                ),
            });
        }
    }
    Ok(Vec::new())
}

/// Every `[[dns]]` zone must exist and hold its record's name: a missing zone or a record
/// outside it is a configuration error every node meets, refused at start with the key named.
/// Warnings when Route 53 cannot be asked.
async fn zones_hold_records(route53: &crate::route53::Route53, config: &Config, config_path: &std::path::Path) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    let mut zones: BTreeMap<&str, Result<String, crate::ec2::Ec2Error>> = BTreeMap::new();
    for (index, d) in config.dns.iter().enumerate() {
        if !zones.contains_key(d.hosted_zone_id.as_str()) {
            let name = route53.zone_name(&d.hosted_zone_id, Duration::from_secs(10)).await;
            zones.insert(&d.hosted_zone_id, name);
        }
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: config_path.to_owned(),
            key: format!("dns[{index}].{key}"),
            message,
        };
        match zones.get(d.hosted_zone_id.as_str()) {
            Some(Ok(zone)) => {
                if !d.in_zone(zone) {
                    return Err(invalid("record", format!("{} is not in hosted zone {} ({zone})", d.record, d.hosted_zone_id)));
                }
            }
            Some(Err(e)) if e.class == crate::ec2::ErrorClass::NotFound => {
                let code = e.code.as_deref().unwrap_or("not found");
                return Err(invalid("hosted_zone_id", format!("Route 53 has no hosted zone {} ({code})", d.hosted_zone_id)));
            }
            Some(Err(e)) => {
                let w = format!(
                    "{}: cannot read hosted zone {} ({}), so the record's zone is not checked",
                    d.name,
                    d.hosted_zone_id,
                    e.code.as_deref().unwrap_or(e.class.as_str())
                );
                warn!("{w}");
                warnings.push(w);
            }
            None => {}
        }
    }
    Ok(warnings)
}

/// What each `[[dns]]` record points at on this node: our own private or public address
/// (read from our ENI), an EIP's public IP, or a VIP's or secondary IP's address.
/// Each record's target. `read_now`: read this node's values at once (a first start); after a
/// reload they are read when a record is to be taken, so the rejoin waits for nothing.
async fn dns_targets(ec2: &Ec2, identity: &Identity, config: &Config, read_now: bool) -> Vec<kinds::dns::DnsTarget> {
    use kinds::dns::{DnsTarget, Source};
    if config.dns.is_empty() {
        return Vec::new();
    }
    let budget = Duration::from_secs(10);
    let eni = identity.network_interface_id.as_deref();
    // This node's ENI is read once for every private/public record.
    let own = match eni {
        Some(eni) if read_now && config.dns.iter().any(|d| matches!(d.value, DnsValue::Private | DnsValue::Public)) => {
            Some(ec2.interface_addresses(eni, budget).await)
        }
        _ => None,
    };
    let mut targets = Vec::new();
    for d in &config.dns {
        let source = match &d.value {
            DnsValue::Private => Source::Private,
            DnsValue::Public => Source::Public,
            DnsValue::Vip(n) => config.vips.iter().find(|v| &v.name == n).map_or_else(|| Source::Absent(format!("no [[vip]] {n}")), |v| Source::Fixed(v.address)),
            DnsValue::SecondaryIp(n) => config
                .secondary_ips
                .iter()
                .find(|s| &s.name == n)
                .map_or_else(|| Source::Absent(format!("no [[secondary_ip]] {n}")), |s| Source::Fixed(s.address)),
            DnsValue::Eip(n) => config
                .eips
                .iter()
                .find(|e| &e.name == n)
                .map_or_else(|| Source::Absent(format!("no [[eip]] {n}")), |e| Source::Eip(e.allocation_id.clone())),
        };
        let target = DnsTarget::new(d.clone(), source);
        if !read_now {
            targets.push(target);
            continue;
        }
        match target.resolve_with(ec2, eni, budget, own.as_ref()).await {
            // `resolve_with` logs what it read; a fixed value was known without a read.
            Ok(v) if matches!(target.source, Source::Fixed(_)) => {
                info!(resource = %d.name, record = %d.record, value = %v, "this node's value for the record")
            }
            Ok(_) => {}
            Err(e) => error!(resource = %d.name, record = %d.record, error = %e, "this node cannot point the record at itself yet; reading again when it is to take the record"),
        }
        targets.push(target);
    }
    targets
}

/// Health checks run once before we join, so our first announcement is already right. After a
/// reload, a check the previous process ran keeps its state instead, and a check the reload
/// added starts as passing: running it first would hold up the rejoin (for up to its timeout)
/// while the peers' reattach grace runs. The periodic run after the rejoin judges both, and
/// `fall` failures make the node ineligible as for any check.
async fn first_health_checks(config: &Config, handed: Option<&BTreeMap<String, bool>>) -> Vec<HealthState> {
    let mut health = Vec::new();
    for check in &config.health {
        if let Some(handed) = handed {
            let healthy = handed.get(&check.name).copied().unwrap_or_else(|| {
                info!(check = %check.name, "health check added by the reload: judged by its periodic runs after the rejoin");
                true
            });
            health.push(HealthState {
                tracker: HealthTracker::new(check.rise, check.fall, healthy),
                last_error: None,
            });
            continue;
        }
        let result = health::run_check(&check.check, check.timeout).await;
        if let Err(e) = &result {
            warn!(check = %check.name, error = %e, "health check failing at start");
        }
        health.push(HealthState {
            tracker: HealthTracker::new(check.rise, check.fall, result.is_ok()),
            last_error: result.err(),
        });
    }
    health
}

/// What does not fit this node in the configuration: the source/destination check for VIPs,
/// secondary IPs outside our subnet, records outside their zones. On a first start a misfit is
/// an error; after a reload it is a warning (`reloaded`).
async fn fit_warnings(
    ec2: &Ec2,
    route53: &crate::route53::Route53,
    identity: &Identity,
    config: &Config,
    config_path: &std::path::Path,
    reloaded: bool,
) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    if !config.vips.is_empty() {
        warnings.extend(source_dest_check(ec2, identity).await);
    }
    match same_subnet(ec2, identity, &config.secondary_ips, config_path).await {
        Ok(w) => warnings.extend(w),
        Err(e) if reloaded => {
            error!(error = %e, "the reloaded configuration does not fit this node");
            warnings.push(e.to_string());
        }
        Err(e) => return Err(e),
    }
    match zones_hold_records(route53, config, config_path).await {
        Ok(w) => warnings.extend(w),
        Err(e) if reloaded => {
            error!(error = %e, "the reloaded configuration does not fit Route 53");
            warnings.push(e.to_string());
        }
        Err(e) => return Err(e),
    }
    Ok(warnings)
}
