//! The daemon: observe (corosync events, EC2 reads, health checks) → decide (core::view) →
//! act (EC2 writes, local addresses) → verify (EC2 reads) → announce (CPG).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Config, EipConfig, VipConfig};
use crate::control::{self, Command, Request, SharedStatus};
use crate::core::health::HealthTracker;
use crate::core::holder::{self, Effect, Failure, Holding, Verdict};
use crate::core::reconcile::{
    all_routes_point_at, backoff, decide_eip, decide_route, judge_eip, next_epoch, points_at, DriftVerdict, EipAction,
    Identity, ObservedEip, ObservedRouteTable, Ownership, RouteAction,
};
use crate::core::spec::Conflict;
use crate::core::view::{Event, Output, View};
use crate::core::wire::{self, Body, HeldMsg, MemberInfo, Unable, WireAssignment, PROTOCOL};
use crate::core::MemberId;
use crate::corosync::{Corosync, CorosyncError, CorosyncEvent, QuorumProbe};
use crate::ec2::{self, Ec2, Ec2Error, ErrorClass};
use crate::localaddr::LocalAddresses;
use crate::metrics::Metrics;
use crate::notify::{self, HookContext, HookEvent};
use crate::status::{
    self, ConflictStatus, FailoverTimeline, HealthStatus, HolderStatus, MemberRef, MemberStatus, ResourceStatus,
    RouteStatus, StatusReport,
};
use crate::{health, identity, systemd};

/// Environment variable carrying the cluster view across a reload re-exec.
const REEXEC_STATE_ENV: &str = "COROSYNC_EIP_REEXEC_STATE";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Time budget for one acquisition (retries of transient errors included); never more than
/// `acquire_timeout`.
const ACQUIRE_BUDGET: Duration = Duration::from_secs(10);
/// At most one log line per this period for undecodable messages from one sender.
const UNDECODABLE_LOG_EVERY: Duration = Duration::from_secs(10);
/// The main loop marks itself alive this often.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// A write gate stays shut while the main loop has not run for this long: after a stop
/// (SIGSTOP, a frozen VM) the loop must first read what corosync delivered meanwhile, or an
/// acquisition task could write with the permit it had before the stop.
const LOOP_STALE: Duration = Duration::from_secs(2);

/// When the main loop last ran with nothing from corosync left unread.
struct Liveness {
    base: Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Liveness {
    fn new() -> Liveness {
        Liveness {
            base: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn beat(&self) {
        self.last_ms.store(self.elapsed_ms(), std::sync::atomic::Ordering::Release);
    }

    /// The loop ran within `max`.
    fn fresh(&self, max: Duration) -> bool {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Acquire);
        let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms().saturating_sub(last) <= max_ms
    }
}
/// How long a stopping holder waits for its Release to come back through CPG.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// How long an admin command may take to show its result in the cluster.
const COMMAND_WAIT: Duration = Duration::from_secs(20);
const STANDBY_FILE: &str = "standby";

/// What the process does when `run` returns.
pub enum Exit {
    Stopped,
}

/// What EC2 (and the local interface) said about one resource.
#[derive(Debug, Clone)]
enum Observed {
    Eip(ObservedEip),
    Vip(Vec<ObservedRouteTable>),
}

/// What the main loop hears from its background tasks.
enum TaskResult {
    Acquired {
        resource: String,
        generation: u64,
        observed: Observed,
        associate_sent: Option<Instant>,
        verified: Instant,
        /// EIP: the ownership epoch we hold the address with (None: the record could not be
        /// written).
        epoch: Option<u64>,
    },
    AcquireFailed {
        resource: String,
        generation: u64,
        failure: Failure,
        error: String,
    },
    /// Acquisition stopped because we lost the right to act before the mutating call.
    AcquireCancelled { resource: String, generation: u64 },
    Monitored {
        eips: Option<Result<Vec<ObservedEip>, Ec2Error>>,
        routes: Option<Result<Vec<ObservedRouteTable>, Ec2Error>>,
        local: Vec<(String, bool)>,
    },
    LocalAddressRemoved { resource: String, result: Result<bool, String> },
    Retry,
    /// The sync timeout after the configuration change to this member list ran out.
    SyncTimeout(Vec<MemberId>),
    GraceExpired(MemberId),
    StartupWaitOver,
    Health { index: usize, result: Result<(), String> },
    /// DryRun permission checks of an idle node: the failing ones.
    Permissions(Vec<String>),
}

#[derive(Clone)]
enum Kind {
    Eip(EipConfig),
    Vip(VipConfig),
}

/// One configured resource on this node: the holder's decisions (pure, `Holding`) and what the
/// adapter keeps for them (the running task, what EC2 said, the failover timeline).
struct LocalResource {
    kind: Kind,
    unit: String,
    holding: Holding,
    /// The running acquisition.
    task: Option<JoinHandle<()>>,
    observed: Option<Observed>,
    verified_at: Option<SystemTime>,
    /// Set when the view elected us; consumed when the acquisition is verified.
    pending_timeline: Option<PendingTimeline>,
    last_failover: Option<FailoverTimeline>,
}

impl LocalResource {
    fn new(kind: Kind, unit: String) -> LocalResource {
        let vip = matches!(kind, Kind::Vip(_));
        LocalResource {
            kind,
            unit,
            holding: Holding::new(vip),
            task: None,
            observed: None,
            verified_at: None,
            pending_timeline: None,
            last_failover: None,
        }
    }

    fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Undecodable CPG messages (another wire version, a foreign process in the group) are logged
/// at a bounded rate per sender.
#[derive(Default)]
struct Undecodable {
    senders: BTreeMap<MemberId, (Instant, u64)>,
}

impl Undecodable {
    fn record(&mut self, from: MemberId, error: &wire::DecodeError) {
        let now = Instant::now();
        let entry = self.senders.entry(from).or_insert((now, 0));
        if entry.1 == 0 || now.saturating_duration_since(entry.0) >= UNDECODABLE_LOG_EVERY {
            warn!(from = %from, error = %error, suppressed = entry.1.saturating_sub(1), "dropping undecodable CPG message");
            *entry = (now, 1);
        } else {
            entry.1 = entry.1.saturating_add(1);
        }
    }
}

struct PendingTimeline {
    previous: Option<MemberId>,
    detected: Instant,
    detected_wall: SystemTime,
    elected: Instant,
}

struct HealthState {
    tracker: HealthTracker,
    last_error: Option<String>,
}

/// An admin command waiting for the cluster to show its effect.
struct PendingCommand {
    command: Command,
    node: u32,
    started: Instant,
    reply: oneshot::Sender<Result<String, String>>,
}

enum SessionEnd {
    Lost(CorosyncError),
    Shutdown,
    Reload(Vec<WireAssignment>),
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

pub struct Daemon {
    config: Config,
    config_path: PathBuf,
    identity: Identity,
    availability_zone: Option<String>,
    ec2: Ec2,
    addresses: Option<Arc<LocalAddresses>>,
    status: SharedStatus,
    resources: BTreeMap<String, LocalResource>,
    results_tx: mpsc::UnboundedSender<TaskResult>,
    results_rx: mpsc::UnboundedReceiver<TaskResult>,
    requests: mpsc::Receiver<Request>,
    pending_commands: Vec<PendingCommand>,
    /// Units (with generation) we may call mutating EC2 APIs for right now.
    permit: watch::Sender<BTreeSet<(String, u64)>>,
    monitor_running: bool,
    health: Vec<HealthState>,
    standby_persisted: bool,
    startup_timer_armed: bool,
    warnings: Vec<String>,
    /// Permissions the last DryRun check on this (idle) node found missing.
    permission_warnings: Vec<String>,
    permission_check_running: bool,
    metrics: Arc<Metrics>,
    votes: Option<crate::corosync::Votes>,
    /// The synchronous quorum check of the current corosync connection.
    probe: Option<Arc<QuorumProbe>>,
    undecodable: Undecodable,
    /// Conflicts last logged, to log each change once.
    conflicts: Vec<Conflict>,
    /// When the last CPG membership change arrived: the "detected" of a failover timeline.
    changed_at: Option<(Instant, SystemTime)>,
    liveness: Arc<Liveness>,
    /// Last STATUS= line sent to systemd, and whether READY=1 went out in this process.
    systemd_status: String,
    ready_sent: bool,
    exe: PathBuf,
    args: Vec<OsString>,
}

pub async fn run(mut config: Config, config_path: PathBuf) -> anyhow::Result<Exit> {
    let exe = std::env::current_exe()?;
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut signals = Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
    };
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
    let sdk = ec2::sdk_config(&config.aws).await;
    let ec2 = Ec2::new(&sdk, metrics.clone());
    let mut attempt = 0;
    let (identity, availability_zone) = loop {
        match identity::resolve(&config.node, &ec2).await {
            Ok(found) => break found,
            Err(e) => {
                let wait = backoff(attempt, Duration::from_millis(500), Duration::from_secs(30), rand::random());
                error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot determine this node's EC2 identity");
                attempt += 1;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = signals.term.recv() => return Ok(Exit::Stopped),
                    _ = signals.int.recv() => return Ok(Exit::Stopped),
                }
            }
        }
    };
    info!(instance = %identity.instance_id, eni = ?identity.network_interface_id, az = ?availability_zone, "node identity");

    let mut warnings = Vec::new();
    for vip in config.vips.iter_mut() {
        let Some(query) = vip.discover.clone() else { continue };
        match ec2.find_route_tables(&query, Duration::from_secs(10)).await {
            Ok(found) if !found.is_empty() => {
                info!(resource = %vip.name, tables = ?found, "route tables found by tag");
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
    let addresses = if config.vips.is_empty() {
        None
    } else {
        if let Some(eni) = &identity.network_interface_id {
            match ec2.source_dest_check(eni, Duration::from_secs(5)).await {
                Ok(Some(true)) => {
                    let w = format!(
                        "source/destination check is ON for {eni}: traffic to route-table VIPs will be dropped; \
                         turn it off (aws ec2 modify-instance-attribute --instance-id {} --no-source-dest-check)",
                        identity.instance_id
                    );
                    warn!("{w}");
                    warnings.push(w);
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot read the source/destination check of our interface"),
            }
        }
        Some(Arc::new(LocalAddresses::new()?))
    };

    // Health checks run once before we join, so our first announcement is already right.
    let mut health = Vec::new();
    for check in &config.health {
        let result = health::run_check(&check.check, check.timeout).await;
        if let Err(e) = &result {
            warn!(check = %check.name, error = %e, "health check failing at start");
        }
        health.push(HealthState {
            tracker: HealthTracker::new(check.rise, check.fall, result.is_ok()),
            last_error: result.err(),
        });
    }
    let standby_persisted = config.daemon.state_dir.join(STANDBY_FILE).exists();

    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (permit, _) = watch::channel(BTreeSet::new());
    let mut resources = BTreeMap::new();
    for e in &config.eips {
        let unit = config.unit_of(&e.name).unwrap_or_else(|| e.name.clone());
        resources.insert(e.name.clone(), LocalResource::new(Kind::Eip(e.clone()), unit));
    }
    for v in &config.vips {
        let unit = config.unit_of(&v.name).unwrap_or_else(|| v.name.clone());
        resources.insert(v.name.clone(), LocalResource::new(Kind::Vip(v.clone()), unit));
    }
    let mut daemon = Daemon {
        config,
        config_path,
        identity,
        availability_zone,
        ec2,
        addresses,
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
    let mut seed = inherited_state();
    let mut attempt = 0;
    loop {
        match Corosync::connect(&daemon.config.cluster.group) {
            Ok(mut cs) => {
                attempt = 0;
                info!(node = cs.local().node, group = %daemon.config.cluster.group, "joined CPG group");
                match daemon.session(&mut cs, seed.take(), &mut signals).await {
                    SessionEnd::Shutdown => {
                        cs.leave();
                        info!("released everything and left the group; exiting");
                        return Ok(Exit::Stopped);
                    }
                    SessionEnd::Reload(table) => {
                        drop(cs);
                        daemon.reexec(table);
                    }
                    SessionEnd::Lost(e) => {
                        warn!(error = %e, "lost the corosync connection; not acting until it is back");
                    }
                }
            }
            Err(e) => {
                if attempt == 0 {
                    warn!(error = %e, "cannot connect to corosync; retrying");
                } else {
                    debug!(error = %e, "corosync still unavailable");
                }
            }
        }
        daemon.stand_down(true);
        let wait = backoff(attempt, Duration::from_millis(200), Duration::from_secs(5), rand::random());
        attempt += 1;
        let deadline = tokio::time::Instant::now() + wait;
        systemd::watchdog();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = signals.term.recv() => return Ok(Exit::Stopped),
                _ = signals.int.recv() => return Ok(Exit::Stopped),
                Some(request) = daemon.requests.recv() => {
                    let _ = request.reply.send(Err("not connected to corosync".into()));
                }
                Some(result) = daemon.results_rx.recv() => daemon.on_offline_result(result),
            }
        }
    }
}

fn inherited_state() -> Option<Vec<WireAssignment>> {
    let text = std::env::var(REEXEC_STATE_ENV).ok()?;
    std::env::remove_var(REEXEC_STATE_ENV);
    match serde_json::from_str(&text) {
        Ok(table) => Some(table),
        Err(e) => {
            warn!(error = %e, "ignoring unreadable state from the previous process");
            None
        }
    }
}

impl Daemon {
    fn eligible_locally(&self) -> bool {
        self.health.iter().all(|h| h.tracker.healthy())
    }

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

    async fn session(&mut self, cs: &mut Corosync, seed: Option<Vec<WireAssignment>>, signals: &mut Signals) -> SessionEnd {
        let info = MemberInfo {
            instance_id: self.identity.instance_id.clone(),
            network_interface_id: self.identity.network_interface_id.clone(),
            version: VERSION.into(),
            resources: Vec::new(),
            quorate: cs.initially_quorate(),
            eligible: self.eligible_locally(),
            standby: self.standby_persisted,
            nodes: cs.initial_nodes().to_vec(),
            availability_zone: self.availability_zone.clone(),
            protocol: PROTOCOL,
            ring: cs.initial_ring(),
            units: BTreeMap::new(),
            cannot_serve: self.cannot_serve_list(),
        };
        let mut view = View::new(cs.local(), info, self.config.unit_specs());
        if let Some(table) = seed {
            view.seed(table);
        }
        self.probe = Some(cs.probe());
        self.startup_timer_armed = false;
        let mut monitor = tokio::time::interval(self.config.cluster.monitor_interval);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut local_quorate = cs.initially_quorate();
        self.votes = cs.votes(cs.initial_nodes());
        let mut watchdog = tokio::time::interval(systemd::watchdog_interval().unwrap_or(Duration::from_secs(3600)));
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let permission_every = self.config.aws.permission_check_interval;
        // The first check one period after start: a starting node has nothing yet anyway.
        let period = if permission_every.is_zero() { Duration::from_secs(86400 * 365) } else { permission_every };
        let mut permission_check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        permission_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish(&view, local_quorate);
        loop {
            let step: Result<(), CorosyncError> = tokio::select! {
                // Corosync first: whatever it delivered is read before anything else runs, so
                // the loop is only marked alive with nothing from corosync left unread.
                biased;
                events = cs.next_events() => match events {
                    Ok(events) => self.on_events(cs, &mut view, events, &mut local_quorate).await,
                    Err(e) => Err(e),
                },
                _ = watchdog.tick() => {
                    // Pinged from the main loop: a wedged loop stops the pings.
                    systemd::watchdog();
                    Ok(())
                }
                _ = heartbeat.tick() => Ok(()),
                Some(result) = self.results_rx.recv() => self.on_result(cs, &mut view, result).await,
                Some(request) = self.requests.recv() => self.on_request(cs, &view, request).await,
                _ = monitor.tick() => {
                    self.start_monitor(&view);
                    Ok(())
                }
                _ = permission_check.tick(), if !permission_every.is_zero() => {
                    self.start_permission_check(&view);
                    Ok(())
                }
                _ = signals.term.recv() => return self.release(cs, &view).await,
                _ = signals.int.recv() => return self.release(cs, &view).await,
                _ = signals.hup.recv() => {
                    match Config::load(&self.config_path) {
                        Ok(_) => {
                            info!(config = %self.config_path.display(), "reloading: re-executing with the new configuration, keeping every address");
                            systemd::reloading();
                            return SessionEnd::Reload(view.state_message().assignments);
                        }
                        Err(e) => error!(error = %e, "reload refused: the new configuration is invalid; keeping the running one"),
                    }
                    Ok(())
                }
            };
            if let Err(e) = step {
                return SessionEnd::Lost(e);
            }
            self.liveness.beat();
            self.persist_standby(&view);
            self.log_conflicts(&view);
            self.reconcile(&view, local_quorate);
            self.arm_startup_timer(&view);
            self.finish_commands(&view);
            self.publish(&view, local_quorate);
            self.notify_systemd(&view);
        }
    }

    async fn on_events(
        &mut self,
        cs: &Corosync,
        view: &mut View,
        events: Vec<CorosyncEvent>,
        local_quorate: &mut bool,
    ) -> Result<(), CorosyncError> {
        let batch = (Instant::now(), SystemTime::now());
        for event in events {
            let outputs = match event {
                CorosyncEvent::Quorum { quorate, ring, nodes } => {
                    info!(quorate, ring = %ring, nodes = ?nodes, "corosync quorum changed");
                    *local_quorate = quorate;
                    self.votes = cs.votes(&nodes);
                    view.set_local_quorum(quorate, Some(ring), nodes)
                }
                CorosyncEvent::Confchg { members, left, joined } => {
                    info!(members = ?members, left = ?left, joined = ?joined, "CPG membership changed");
                    self.changed_at = Some(batch);
                    // Corosync applies a loss of members to quorum before it delivers the CPG
                    // change, though its notification may reach us later: read it now, so the
                    // fact we announce in the new configuration is not the old one.
                    let now_quorate = cs.quorate_now();
                    if !now_quorate {
                        *local_quorate = false;
                    }
                    let mut outputs = view.note_quorate_now(now_quorate);
                    outputs.extend(view.handle(Event::Confchg { members, left, joined }));
                    self.after(self.config.cluster.sync_timeout, TaskResult::SyncTimeout(view.config()));
                    outputs
                }
                CorosyncEvent::Totem { ring, nodes } => {
                    debug!(ring = %ring, nodes = ?nodes, "totem membership changed");
                    let mut outputs = view.handle(Event::Totem { ring, nodes });
                    for member in view.vanished_on_gone_nodes() {
                        info!(member = %member, "the node of a vanished daemon left the membership; peers take over");
                        outputs.push(Output::Send(Body::GraceExpired { member }));
                    }
                    outputs
                }
                CorosyncEvent::Deliver { from, bytes } => match wire::decode(&bytes) {
                    Ok(body) => view.handle(Event::Message { from, body }),
                    Err(e) => {
                        self.undecodable.record(from, &e);
                        Vec::new()
                    }
                },
            };
            // An election that completes the round of quorum facts after a membership change
            // was detected at the change; anything else (a planned move) when it arrived.
            let window = self.config.cluster.sync_timeout.saturating_mul(2);
            let detected = match self.changed_at {
                Some(at) if batch.0.saturating_duration_since(at.0) < window => at,
                _ => batch,
            };
            self.apply_outputs(cs, view, outputs, detected).await?;
            if view.is_synced() && view.partition_quorate() {
                // The round after the change is over: later elections have causes of their own.
                self.changed_at = None;
            }
        }
        Ok(())
    }

    async fn apply_outputs(
        &mut self,
        cs: &Corosync,
        view: &View,
        outputs: Vec<Output>,
        detected: (Instant, SystemTime),
    ) -> Result<(), CorosyncError> {
        for output in outputs {
            match output {
                Output::Send(body) => cs.send(&wire::encode(&body)).await?,
                Output::StartGrace(member) => {
                    let grace = self.config.cluster.reattach_grace;
                    info!(member = %member, grace_ms = grace.as_millis() as u64, "daemon vanished while holding addresses; keeping them for the reattach grace");
                    self.after(grace, TaskResult::GraceExpired(member));
                }
                Output::Elected {
                    resource: unit,
                    holder,
                    generation,
                    previous,
                } => {
                    let instance = view.info(&holder).map(|i| i.instance_id.clone()).unwrap_or_default();
                    info!(resource = %unit, node = holder.node, instance = %instance, generation, previous = ?previous.map(|p| p.to_string()), "holder elected");
                    if holder == view.local() {
                        for local in self.resources.values_mut().filter(|r| r.unit == unit) {
                            local.pending_timeline = Some(PendingTimeline {
                                previous,
                                detected: detected.0,
                                detected_wall: detected.1,
                                elected: Instant::now(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn after(&self, wait: Duration, result: TaskResult) {
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(result);
        });
    }

    /// Starts or stops work so that we act exactly on what the view says is ours.
    fn reconcile(&mut self, view: &View, local_quorate: bool) {
        let may_act = view.may_act() && local_quorate;
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        let permitted: BTreeSet<(String, u64)> = if may_act {
            ours.iter().map(|(u, g)| (u.clone(), *g)).collect()
        } else {
            BTreeSet::new()
        };
        self.permit.send_replace(permitted);
        let quorate = view.partition_quorate() && local_quorate;
        let now = Instant::now();
        let names: Vec<String> = self.resources.keys().cloned().collect();
        for name in names {
            let Some(local) = self.resources.get_mut(&name) else { continue };
            let facts = holder::Facts {
                wanted: ours.get(&local.unit).copied(),
                may_act,
                quorate,
                synced: view.is_synced(),
            };
            if facts.wanted.is_none() {
                local.pending_timeline = None;
            }
            let effects = local.holding.reconcile(facts, now);
            self.apply_effects(view, &name, effects);
        }
    }

    /// Carries out what the holder decided for one resource (the CPG announcements are sent by
    /// `announce_capability`).
    fn apply_effects(&mut self, view: &View, name: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Abort => {
                    if let Some(local) = self.resources.get_mut(name) {
                        local.abort();
                    }
                }
                Effect::Acquire { generation } => self.spawn_acquire(name, generation),
                Effect::RemoveAddress => self.spawn_remove_address(name),
                Effect::Released => self.hook(view.local().node, name, HookEvent::Release, "standby", String::new()),
                Effect::RetryAt(at) => self.after(at.saturating_duration_since(Instant::now()), TaskResult::Retry),
                Effect::CannotServe { class, reason } => {
                    error!(resource = %name, class = class.as_str(), reason = %reason, "this node cannot serve the address; handing it to the next candidate");
                }
                Effect::Drift => {
                    let repairs = self.resources.get(name).map_or(0, |l| l.holding.drift_repairs());
                    self.metrics.drift_repairs.get_or_create(&Metrics::resource(name)).inc();
                    warn!(resource = %name, drift_repairs = repairs, "drift: EC2 or the local interface no longer matches this holder; repairing");
                }
            }
        }
    }

    /// Says loudly, once per change, which units' configuration differs between members.
    fn log_conflicts(&mut self, view: &View) {
        if !view.is_synced() {
            return;
        }
        let now = view.conflicts();
        if now == self.conflicts {
            return;
        }
        for c in now.iter().filter(|c| !self.conflicts.contains(c)) {
            let variants: Vec<String> = c.variants.iter().map(|v| format!("{v:?}")).collect();
            error!(unit = %c.unit, keys = ?c.keys, variants = %variants.join(" vs "), "{c}");
        }
        for c in self.conflicts.iter().filter(|old| !now.iter().any(|n| n.unit == old.unit)) {
            info!(unit = %c.unit, "the members' configuration of this unit agrees again; placement resumes");
        }
        self.conflicts = now;
    }

    /// Units this node cannot serve now, as announced to the others.
    fn cannot_serve_list(&self) -> Vec<Unable> {
        let mut list: Vec<Unable> = Vec::new();
        for local in self.resources.values() {
            if let Some((class, reason)) = local.holding.incapacity() {
                if !list.iter().any(|u| u.unit == local.unit) {
                    list.push(Unable {
                        unit: local.unit.clone(),
                        class: *class,
                        reason: reason.clone(),
                    });
                }
            }
        }
        list
    }

    /// Tells the others which units we cannot serve, when that changed.
    async fn announce_capability(&mut self, cs: &Corosync, view: &mut View) -> Result<(), CorosyncError> {
        for output in view.set_local_cannot_serve(self.cannot_serve_list()) {
            if let Output::Send(body) = output {
                cs.send(&wire::encode(&body)).await?;
            }
        }
        Ok(())
    }

    fn hook(&self, node_id: u32, resource: &str, event: HookEvent, role: &'static str, detail: String) {
        if self.config.notify.is_empty() {
            return;
        }
        let Some(local) = self.resources.get(resource) else { return };
        let (kind, address) = match &local.kind {
            Kind::Eip(e) => {
                let public = match &local.observed {
                    Some(Observed::Eip(o)) => o.public_ip.clone(),
                    _ => None,
                };
                ("eip", public.unwrap_or_else(|| e.allocation_id.clone()))
            }
            Kind::Vip(v) => ("vip", v.address.to_string()),
        };
        notify::fire(
            &self.config.notify,
            HookContext {
                event,
                resource: resource.to_owned(),
                group: local.unit.clone(),
                kind,
                role,
                address,
                node_id,
                instance_id: self.identity.instance_id.clone(),
                detail,
            },
        );
    }

    /// The question every mutating call asks right before it is sent: are we still the
    /// elected holder of `unit` at `generation` in a quorate partition, and does corosync still
    /// count us quorate at this instant?
    fn write_gate(&self, unit: &str, generation: u64) -> Gate {
        let permit = self.permit.subscribe();
        let probe = self.probe.clone();
        let liveness = self.liveness.clone();
        let key = (unit.to_owned(), generation);
        Arc::new(move || {
            liveness.fresh(LOOP_STALE) && permit.borrow().contains(&key) && probe.as_ref().is_some_and(|p| p.quorate())
        })
    }

    fn spawn_acquire(&mut self, name: &str, generation: u64) {
        let Some(local) = self.resources.get(name) else { return };
        let kind = local.kind.clone();
        let ec2 = self.ec2.clone();
        let me = self.identity.clone();
        let gate = self.write_gate(&local.unit, generation);
        let tx = self.results_tx.clone();
        let addresses = self.addresses.clone();
        let resource = name.to_owned();
        let budget = ACQUIRE_BUDGET.min(self.config.aws.acquire_timeout);
        let task = tokio::spawn(async move {
            let result = match kind {
                Kind::Eip(eip) => acquire_eip(&ec2, &eip, generation, &me, gate, budget).await,
                Kind::Vip(vip) => acquire_vip(&ec2, addresses.as_deref(), &vip, generation, &me, gate, budget).await,
            };
            let _ = tx.send(result);
        });
        if let Some(local) = self.resources.get_mut(name) {
            local.task = Some(task);
        }
        debug!(resource = %resource, generation, "acquisition started");
    }

    fn spawn_remove_address(&mut self, name: &str) {
        let Some(local) = self.resources.get_mut(name) else { return };
        let Kind::Vip(vip) = local.kind.clone() else { return };
        let Some(addresses) = self.addresses.clone() else { return };
        let tx = self.results_tx.clone();
        let resource = name.to_owned();
        tokio::spawn(async move {
            let result = addresses
                .ensure_absent(&vip.interface, vip.address)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(TaskResult::LocalAddressRemoved { resource, result });
        });
    }

    /// Results that arrive while we are disconnected from corosync.
    fn on_offline_result(&mut self, result: TaskResult) {
        match result {
            TaskResult::LocalAddressRemoved { resource, result } => self.address_removed(&resource, result),
            TaskResult::Health { index, result } => {
                self.record_health(index, result);
            }
            _ => {}
        }
    }

    fn address_removed(&mut self, resource: &str, result: Result<bool, String>) {
        let Some(local) = self.resources.get_mut(resource) else { return };
        match &result {
            Ok(true) => info!(resource = %resource, "address removed from the local interface"),
            Ok(false) => {}
            Err(e) => error!(resource = %resource, error = %e, "cannot remove the address from the local interface"),
        }
        local.holding.address_removed(result.map(|_| ()));
    }

    /// Returns the node's new eligibility when it changed.
    fn record_health(&mut self, index: usize, result: Result<(), String>) -> Option<bool> {
        let before = self.eligible_locally();
        let name = self.config.health.get(index).map(|h| h.name.clone()).unwrap_or_default();
        let state = self.health.get_mut(index)?;
        let flipped = state.tracker.record(result.is_ok());
        state.last_error = result.err();
        if let Some(healthy) = flipped {
            if healthy {
                info!(check = %name, "health check passing again");
            } else {
                warn!(check = %name, error = ?state.last_error, "health check failing: this node gives up its addresses");
            }
        }
        let after = self.eligible_locally();
        (before != after).then_some(after)
    }

    async fn on_result(&mut self, cs: &Corosync, view: &mut View, result: TaskResult) -> Result<(), CorosyncError> {
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        match result {
            TaskResult::Acquired {
                resource,
                generation,
                observed,
                associate_sent,
                verified,
                epoch,
            } => {
                let Some(local) = self.resources.get_mut(&resource) else { return Ok(()) };
                let wanted = ours.get(&local.unit).copied();
                let recovered = local.holding.incapacity().is_some();
                if !local.holding.acquired(generation, wanted, epoch, true) {
                    return Ok(());
                }
                local.task = None;
                local.observed = Some(observed.clone());
                local.verified_at = Some(SystemTime::now());
                let unit = local.unit.clone();
                if recovered {
                    self.announce_capability(cs, view).await?;
                }
                let Some(local) = self.resources.get_mut(&resource) else { return Ok(()) };
                if let Some(t) = local.pending_timeline.take() {
                    let ms = |i: Instant| i.saturating_duration_since(t.detected).as_millis() as u64;
                    let timeline = FailoverTimeline {
                        previous: t.previous.map(|p| MemberRef { node_id: p.node, pid: p.pid }),
                        detected_at: humantime::format_rfc3339_millis(t.detected_wall).to_string(),
                        elected_ms: ms(t.elected),
                        associate_sent_ms: associate_sent.map(ms),
                        verified_ms: ms(verified),
                    };
                    info!(
                        resource = %resource,
                        node = view.local().node,
                        instance = %self.identity.instance_id,
                        previous = ?t.previous.map(|p| p.to_string()),
                        elected_ms = timeline.elected_ms,
                        associate_sent_ms = ?timeline.associate_sent_ms,
                        verified_ms = timeline.verified_ms,
                        elapsed_ms = timeline.verified_ms,
                        "failover timeline: detected → elected +{}ms → associate sent {} → verified +{}ms",
                        timeline.elected_ms,
                        timeline.associate_sent_ms.map_or("(not needed, already ours)".to_string(), |m| format!("+{m}ms")),
                        timeline.verified_ms,
                    );
                    local.last_failover = Some(timeline);
                    if associate_sent.is_some() {
                        self.metrics.failovers.get_or_create(&Metrics::resource(&resource)).inc();
                    }
                } else {
                    info!(resource = %resource, instance = %self.identity.instance_id, generation, "address verified on this node");
                }
                self.hook(view.local().node, &resource, HookEvent::Acquire, "holder", String::new());
                let (instance_id, network_interface_id) = match &observed {
                    Observed::Eip(o) => (o.instance_id.clone(), o.network_interface_id.clone()),
                    Observed::Vip(_) => (Some(self.identity.instance_id.clone()), self.identity.network_interface_id.clone()),
                };
                cs.send(&wire::encode(&Body::Held(HeldMsg {
                    unit,
                    resource,
                    generation,
                    instance_id,
                    network_interface_id,
                })))
                .await?;
            }
            TaskResult::AcquireFailed {
                resource,
                generation,
                failure,
                error,
            } => {
                let policy = holder::Policy {
                    acquire_timeout: self.config.aws.acquire_timeout,
                    retry_cap: self.config.cluster.monitor_interval,
                };
                let Some(local) = self.resources.get_mut(&resource) else { return Ok(()) };
                if local.holding.acquiring() == Some(generation) {
                    local.task = None;
                }
                let now = Instant::now();
                let effects = local.holding.acquire_failed(generation, failure, error.clone(), now, policy, rand::random());
                let retry_in_ms = effects
                    .iter()
                    .find_map(|e| match e {
                        Effect::RetryAt(at) => Some(at.saturating_duration_since(now).as_millis() as u64),
                        _ => None,
                    })
                    .unwrap_or_default();
                error!(resource = %resource, generation, failure = ?failure, error = %error, retry_in_ms, "could not take the address");
                self.apply_effects(view, &resource, effects);
                self.hook(view.local().node, &resource, HookEvent::Fault, "holder", error);
                self.announce_capability(cs, view).await?;
            }
            TaskResult::AcquireCancelled { resource, generation } => {
                if let Some(local) = self.resources.get_mut(&resource) {
                    if local.holding.acquiring() == Some(generation) {
                        local.task = None;
                    }
                    local.holding.acquire_cancelled(generation);
                }
            }
            TaskResult::SyncTimeout(config) => {
                if view.config() == config {
                    for member in view.silent_members() {
                        warn!(member = %member, timeout_ms = self.config.cluster.sync_timeout.as_millis() as u64, "member sent nothing since the membership change; going on without it until it speaks");
                        cs.send(&wire::encode(&Body::Unresponsive { member, config: config.clone() })).await?;
                    }
                }
            }
            // Reconcile runs after every result and starts what is due.
            TaskResult::Retry => {}
            TaskResult::LocalAddressRemoved { resource, result } => self.address_removed(&resource, result),
            TaskResult::GraceExpired(member) => {
                if view.vanished().contains(&member) {
                    info!(member = %member, "reattach grace expired; peers take over");
                    cs.send(&wire::encode(&Body::GraceExpired { member })).await?;
                }
            }
            TaskResult::StartupWaitOver => {
                if view.awaiting_startup() {
                    info!("startup wait over: placing addresses although some nodes have no daemon yet");
                    cs.send(&wire::encode(&Body::PlaceNow)).await?;
                }
            }
            TaskResult::Health { index, result } => {
                if let Some(eligible) = self.record_health(index, result) {
                    for body in view.set_local_eligible(eligible) {
                        if let Output::Send(body) = body {
                            cs.send(&wire::encode(&body)).await?;
                        }
                    }
                }
            }
            TaskResult::Permissions(failing) => {
                self.permission_check_running = false;
                if failing != self.permission_warnings {
                    for f in &failing {
                        warn!(problem = %f, "EC2 permission check failed on this standby node: a failover to it would fail");
                    }
                    if failing.is_empty() && !self.permission_warnings.is_empty() {
                        info!("EC2 permission checks pass again");
                    }
                }
                if failing.is_empty() {
                    let mut recovered = Vec::new();
                    for (name, local) in self.resources.iter_mut() {
                        if local.holding.recovered() {
                            recovered.push(name.clone());
                        }
                    }
                    if !recovered.is_empty() {
                        info!(resources = ?recovered, "EC2 permission checks pass: this node can serve these addresses again (nothing moves back)");
                        self.announce_capability(cs, view).await?;
                    }
                }
                self.permission_warnings = failing;
            }
            TaskResult::Monitored { eips, routes, local } => {
                self.monitor_running = false;
                self.check_drift(view, eips, routes, local);
            }
        }
        Ok(())
    }

    fn check_drift(
        &mut self,
        view: &View,
        eips: Option<Result<Vec<ObservedEip>, Ec2Error>>,
        routes: Option<Result<Vec<ObservedRouteTable>, Ec2Error>>,
        local_addresses: Vec<(String, bool)>,
    ) {
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        let now = SystemTime::now();
        let me = self.identity.clone();
        let names: Vec<String> = self.resources.keys().cloned().collect();
        for name in names {
            let Some(local) = self.resources.get_mut(&name) else { continue };
            let wanted = ours.get(&local.unit).copied();
            if wanted.is_none() || local.holding.held() != wanted {
                continue;
            }
            let mut address_present = None;
            let verdict = match &local.kind {
                Kind::Eip(eip) => match &eips {
                    None => continue,
                    Some(Err(e)) => Verdict::Unknown(e.to_string()),
                    Some(Ok(list)) => match list.iter().find(|o| o.allocation_id == eip.allocation_id) {
                        Some(o) => {
                            local.observed = Some(Observed::Eip(o.clone()));
                            match judge_eip(o, &me, eip.private_ip, local.holding.epoch()) {
                                DriftVerdict::Ours => Verdict::Ours,
                                DriftVerdict::Repair => Verdict::Repair,
                                DriftVerdict::Yield { to, epoch } => {
                                    warn!(resource = %name, to = %to, epoch, "a holder elected in another partition took the address after us; not taking it back");
                                    Verdict::Yield { to, epoch }
                                }
                            }
                        }
                        None => Verdict::Unknown(format!("allocation {} is missing from DescribeAddresses", eip.allocation_id)),
                    },
                },
                Kind::Vip(vip) => match &routes {
                    None => continue,
                    Some(Err(e)) => Verdict::Unknown(e.to_string()),
                    Some(Ok(tables)) => {
                        let mine: Vec<ObservedRouteTable> = tables
                            .iter()
                            .filter(|t| vip.route_tables.contains(&t.route_table_id))
                            .cloned()
                            .collect();
                        let eni = me.network_interface_id.clone().unwrap_or_default();
                        let routes_ok = all_routes_point_at(&mine, &vip.route_tables, &vip.destination(), &eni);
                        local.observed = Some(Observed::Vip(mine));
                        let present = local_addresses.iter().find(|(r, _)| *r == name).map_or(true, |(_, p)| *p);
                        address_present = Some(present);
                        if routes_ok && present {
                            Verdict::Ours
                        } else {
                            Verdict::Repair
                        }
                    }
                },
            };
            match &verdict {
                Verdict::Ours => local.verified_at = Some(now),
                Verdict::Unknown(e) => warn!(resource = %name, error = %e, "monitor could not verify"),
                _ => {}
            }
            let effects = local.holding.monitored(wanted, verdict, address_present);
            self.apply_effects(view, &name, effects);
        }
    }

    /// One DescribeAddresses for all our EIPs and one DescribeRouteTables for all tables of our
    /// VIPs, whatever the number of resources.
    fn start_monitor(&mut self, view: &View) {
        if self.monitor_running || !view.may_act() {
            return;
        }
        let ours: BTreeSet<String> = view.held_by_local().into_iter().map(|(u, _)| u).collect();
        let mut allocations = Vec::new();
        let mut tables = BTreeSet::new();
        let mut vips = Vec::new();
        for (name, local) in &self.resources {
            if !ours.contains(&local.unit) || local.holding.held().is_none() {
                continue;
            }
            match &local.kind {
                Kind::Eip(e) => allocations.push(e.allocation_id.clone()),
                Kind::Vip(v) => {
                    tables.extend(v.route_tables.iter().cloned());
                    vips.push((name.clone(), v.interface.clone(), v.address));
                }
            }
        }
        if allocations.is_empty() && tables.is_empty() {
            return;
        }
        self.monitor_running = true;
        let ec2 = self.ec2.clone();
        let tx = self.results_tx.clone();
        let budget = self.config.cluster.monitor_interval;
        let addresses = self.addresses.clone();
        tokio::spawn(async move {
            let tables: Vec<String> = tables.into_iter().collect();
            let eips = async {
                if allocations.is_empty() {
                    None
                } else {
                    Some(ec2.describe_addresses(&allocations, budget).await)
                }
            };
            let routes = async {
                if tables.is_empty() {
                    None
                } else {
                    Some(ec2.describe_route_tables(&tables, budget).await)
                }
            };
            let (eips, routes) = tokio::join!(eips, routes);
            let mut local = Vec::new();
            if let Some(addresses) = addresses {
                for (name, interface, address) in vips {
                    if let Ok(present) = addresses.is_present(&interface, address).await {
                        local.push((name, present));
                    }
                }
            }
            let _ = tx.send(TaskResult::Monitored { eips, routes, local });
        });
    }

    /// On a node that holds nothing, prove with DryRun calls that it could take over: IAM drift
    /// is found before a failover needs the permissions, not during it.
    fn start_permission_check(&mut self, view: &View) {
        let incapable = self.resources.values().any(|l| l.holding.incapacity().is_some());
        if self.permission_check_running || (!view.held_by_local().is_empty() && !incapable) {
            return;
        }
        self.permission_check_running = true;
        let config = self.config.clone();
        let client = self.ec2.client().clone();
        let instance = Some(self.identity.instance_id.clone());
        let eni = self.identity.network_interface_id.clone();
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            let items = crate::check::permissions(&config, &client, instance, eni).await;
            let failing = items
                .into_iter()
                .filter(|i| i.status != crate::check::CheckStatus::Pass)
                .map(|i| format!("{}: {}", i.name, i.detail))
                .collect();
            let _ = tx.send(TaskResult::Permissions(failing));
        });
    }

    fn arm_startup_timer(&mut self, view: &View) {
        if !self.startup_timer_armed && view.awaiting_startup() {
            self.startup_timer_armed = true;
            info!(wait_ms = self.config.cluster.startup_wait.as_millis() as u64, "waiting for the daemons of all corosync nodes before the first placement");
            self.after(self.config.cluster.startup_wait, TaskResult::StartupWaitOver);
        }
    }

    fn persist_standby(&mut self, view: &View) {
        let want = view.local_info().standby;
        if want == self.standby_persisted {
            return;
        }
        let dir = &self.config.daemon.state_dir;
        let path = dir.join(STANDBY_FILE);
        let result = if want {
            std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, b"standby\n"))
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        match result {
            Ok(()) => {
                info!(standby = want, "standby state changed");
                self.standby_persisted = want;
            }
            Err(e) => error!(path = %path.display(), error = %e, "cannot persist the standby state"),
        }
    }

    fn resolve_node(&self, view: &View, text: &str) -> Result<u32, String> {
        if let Ok(id) = text.parse::<u32>() {
            if view.members().iter().any(|m| m.node == id) {
                return Ok(id);
            }
            return Err(format!("node {id} has no corosync-eip daemon in the group"));
        }
        view.members()
            .iter()
            .find(|m| view.info(m).is_some_and(|i| i.instance_id == text))
            .map(|m| m.node)
            .ok_or_else(|| format!("`{text}` is neither a node id nor the instance id of a member"))
    }

    async fn on_request(&mut self, cs: &Corosync, view: &View, request: Request) -> Result<(), CorosyncError> {
        if !view.is_synced() {
            let _ = request.reply.send(Err("this node has not synced with the cluster yet".into()));
            return Ok(());
        }
        let checked: Result<(Body, u32), String> = match &request.command {
            Command::Standby { node, standby } => match node {
                None => Ok(view.local().node),
                Some(text) => self.resolve_node(view, text),
            }
            .map(|node| (Body::Standby { node, standby: *standby }, node)),
            Command::Move { unit, to } => self.check_move(view, unit, to),
        };
        match checked {
            Err(e) => {
                let _ = request.reply.send(Err(e));
            }
            Ok((body, node)) => {
                let command = match (&request.command, &body) {
                    (Command::Move { .. }, Body::Move { unit, to }) => Command::Move { unit: unit.clone(), to: to.to_string() },
                    (c, _) => c.clone(),
                };
                info!(command = ?command, "admin command");
                cs.send(&wire::encode(&body)).await?;
                self.pending_commands.push(PendingCommand {
                    command,
                    node,
                    started: Instant::now(),
                    reply: request.reply,
                });
            }
        }
        Ok(())
    }

    fn check_move(&self, view: &View, target: &str, to: &str) -> Result<(Body, u32), String> {
        // A group name, or a resource (which moves with its group).
        let unit = self
            .config
            .units()
            .iter()
            .find(|u| u.name == target)
            .map(|u| u.name.clone())
            .or_else(|| self.config.unit_of(target))
            .ok_or_else(|| format!("`{target}` is neither a resource nor a group"))?;
        if !view.partition_quorate() {
            return Err("the partition is not quorate: nothing can move".into());
        }
        if let Some(c) = view.conflicts().into_iter().find(|c| c.unit == unit) {
            return Err(format!("`{unit}` cannot move: {c}"));
        }
        let node = self.resolve_node(view, to)?;
        let member = view
            .members()
            .iter()
            .find(|m| m.node == node)
            .and_then(|m| view.info(m).map(|i| (m, i)))
            .ok_or_else(|| format!("node {node} has not announced itself yet"))?;
        if member.1.standby {
            return Err(format!("node {node} is in standby"));
        }
        if !member.1.eligible {
            return Err(format!("node {node} fails its health checks"));
        }
        if !member.1.resources.contains(&unit) {
            return Err(format!("node {node} does not have `{unit}` in its configuration"));
        }
        if view.assignments().get(&unit).and_then(|a| a.holder).is_some_and(|h| h.node == node) {
            return Err(format!("`{unit}` is already on node {node}"));
        }
        Ok((Body::Move { unit, to: node }, node))
    }

    /// Answers admin commands once the cluster shows their effect (or they time out).
    fn finish_commands(&mut self, view: &View) {
        let pending = std::mem::take(&mut self.pending_commands);
        for p in pending {
            let done = match &p.command {
                Command::Standby { standby, .. } => {
                    let flag = view.members().iter().filter(|m| m.node == p.node).all(|m| view.info(m).is_some_and(|i| i.standby == *standby));
                    let drained = !*standby
                        || view.assignments().values().all(|a| a.holder.is_none_or(|h| h.node != p.node))
                        || view.members().iter().all(|m| m.node == p.node);
                    (flag && drained).then(|| {
                        format!("node {} is {}", p.node, if *standby { "in standby" } else { "active again" })
                    })
                }
                Command::Move { unit, .. } => {
                    let resources = self.config.units().iter().find(|u| &u.name == unit).map(|u| u.resources.clone()).unwrap_or_default();
                    view.assignments().get(unit).filter(|a| a.holder.is_some_and(|h| h.node == p.node)).and_then(|a| {
                        resources
                            .iter()
                            .all(|r| a.verified.iter().any(|h| &h.resource == r))
                            .then(|| format!("`{unit}` moved to node {} and verified in EC2 in {} ms", p.node, p.started.elapsed().as_millis()))
                    })
                }
            };
            match done {
                Some(message) => {
                    info!(command = ?p.command, elapsed_ms = p.started.elapsed().as_millis() as u64, "admin command completed");
                    let _ = p.reply.send(Ok(message));
                }
                None if p.started.elapsed() > COMMAND_WAIT => {
                    let _ = p.reply.send(Err(format!("not completed within {}s; see `corosync-eip status`", COMMAND_WAIT.as_secs())));
                }
                None => self.pending_commands.push(p),
            }
        }
    }

    /// Planned stop: take VIPs off our interface, tell every member we release, wait until CPG
    /// delivered it back to us (so every member has it in agreed order), then leave.
    async fn release(&mut self, cs: &mut Corosync, view: &View) -> SessionEnd {
        info!("stopping: releasing all addresses to peers");
        systemd::stopping();
        self.stand_down(true);
        self.remove_local_addresses().await;
        if let Err(e) = cs.send(&wire::encode(&Body::Release)).await {
            warn!(error = %e, "could not announce the release; peers will see us leave");
            return SessionEnd::Shutdown;
        }
        let local = view.local();
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        loop {
            let events = tokio::select! {
                e = cs.next_events() => e,
                _ = tokio::time::sleep_until(deadline) => return SessionEnd::Shutdown,
            };
            let Ok(events) = events else { return SessionEnd::Shutdown };
            for event in events {
                if let CorosyncEvent::Deliver { from, bytes } = event {
                    if from == local && matches!(wire::decode(&bytes), Ok(Body::Release)) {
                        return SessionEnd::Shutdown;
                    }
                }
            }
        }
    }

    async fn remove_local_addresses(&mut self) {
        let Some(addresses) = self.addresses.clone() else { return };
        for (name, local) in self.resources.iter_mut() {
            if let Kind::Vip(vip) = &local.kind {
                match addresses.ensure_absent(&vip.interface, vip.address).await {
                    Ok(true) => info!(resource = %name, "address removed from the local interface"),
                    Ok(false) => {}
                    Err(e) => error!(resource = %name, error = %e, "cannot remove the address from the local interface"),
                }
                local.holding.address_gone();
            }
        }
    }

    /// Stop every background action: we may no longer act. Without corosync we cannot be the
    /// holder of anything, so VIPs leave our interface too (unless we are re-executing).
    fn stand_down(&mut self, drop_addresses: bool) {
        self.permit.send_replace(BTreeSet::new());
        for p in std::mem::take(&mut self.pending_commands) {
            let _ = p.reply.send(Err("lost the corosync connection".into()));
        }
        let names: Vec<String> = self.resources.keys().cloned().collect();
        for name in names {
            let Some(local) = self.resources.get_mut(&name) else { continue };
            for effect in local.holding.stand_down(drop_addresses) {
                match effect {
                    Effect::Abort => local.abort(),
                    Effect::RemoveAddress => {
                        self.spawn_remove_address(&name);
                        break;
                    }
                    _ => {}
                }
            }
        }
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.corosync = "disconnected".into();
        s.synced = false;
        s.quorate = false;
    }

    fn reexec(&self, table: Vec<WireAssignment>) -> ! {
        use std::os::unix::process::CommandExt;
        let state = serde_json::to_string(&table).unwrap_or_default();
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(self.args.iter().skip(1)).env(REEXEC_STATE_ENV, state);
        let err = cmd.exec();
        error!(error = %err, exe = %self.exe.display(), "re-exec failed; exiting so systemd restarts us");
        std::process::exit(1);
    }

    /// Metrics and the systemd STATUS= line from the same snapshot as `status`.
    fn export(&self, view: &View, resources: &[ResourceStatus]) {
        self.metrics.quorate.set(i64::from(view.partition_quorate()));
        self.metrics.members.set(view.members().len() as i64);
        for r in resources {
            let label = Metrics::resource(&r.name);
            self.metrics.holder_node.get_or_create(&label).set(r.holder.as_ref().map_or(0, |h| i64::from(h.node_id)));
            if let Some(age) = r.verified_age_ms {
                self.metrics.verification_age.get_or_create(&label).set(age as f64 / 1000.0);
            }
        }
    }

    /// READY=1 once this process first knows the cluster's holders; STATUS= when it changes.
    fn notify_systemd(&mut self, view: &View) {
        let ours: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, l)| l.holding.held().is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let status = format!(
            "{}; {} member(s); holding {} of {}{}{}",
            if view.partition_quorate() { "quorate" } else { "NOT quorate" },
            view.members().len(),
            ours.len(),
            self.resources.len(),
            if ours.is_empty() { "" } else { ": " },
            ours.join(", ")
        );
        if view.is_synced() && !self.ready_sent {
            systemd::ready(&status);
            self.ready_sent = true;
            self.systemd_status = status;
        } else if status != self.systemd_status {
            systemd::status(&status);
            self.systemd_status = status;
        }
    }

    fn publish(&self, view: &View, local_quorate: bool) {
        let now = SystemTime::now();
        let members = view
            .members()
            .iter()
            .map(|m| {
                let info = view.info(m);
                MemberStatus {
                    node_id: m.node,
                    pid: m.pid,
                    instance_id: info.map(|i| i.instance_id.clone()),
                    network_interface_id: info.and_then(|i| i.network_interface_id.clone()),
                    version: info.map(|i| i.version.clone()),
                    quorate: info.map(|i| i.quorate),
                    eligible: info.map(|i| i.eligible),
                    standby: info.map(|i| i.standby),
                    availability_zone: info.and_then(|i| i.availability_zone.clone()),
                    cannot_serve: info.map(|i| i.cannot_serve.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let may_act = view.may_act() && local_quorate;
        let resources: Vec<ResourceStatus> = self
            .resources
            .iter()
            .map(|(name, local)| {
                let assignment = view.assignments().get(&local.unit);
                let holder = assignment.and_then(|a| a.holder);
                let is_local = holder == Some(view.local());
                let announced = assignment.and_then(|a| a.verified.iter().find(|h| &h.resource == name));
                let state = match holder {
                    None => "unassigned",
                    Some(h) if view.vanished().contains(&h) => "reattaching",
                    Some(_) if !view.is_synced() => "syncing",
                    Some(_) if is_local && local.holding.yielded().is_some() => "yielded",
                    Some(_) if is_local && !may_act => "waiting_quorum",
                    Some(_) if is_local && local.holding.held().is_some() => "held",
                    Some(_) if is_local => "acquiring",
                    Some(_) if announced.is_some() => "held",
                    Some(_) => "acquiring",
                };
                let (allocation_id, address, destination) = match &local.kind {
                    Kind::Eip(e) => (Some(e.allocation_id.clone()), None, None),
                    Kind::Vip(v) => (None, Some(v.address.to_string()), Some(v.destination())),
                };
                let (ec2, routes) = match (&local.observed, is_local) {
                    (Some(Observed::Eip(o)), true) => (Some(o.clone()), None),
                    (Some(Observed::Vip(tables)), true) => (
                        None,
                        Some(tables.iter().map(|t| RouteStatus::of(t, destination.as_deref().unwrap_or_default())).collect()),
                    ),
                    _ => match (&local.kind, announced) {
                        (Kind::Eip(e), Some(h)) => (
                            Some(ObservedEip {
                                allocation_id: e.allocation_id.clone(),
                                instance_id: h.instance_id.clone(),
                                network_interface_id: h.network_interface_id.clone(),
                                ..Default::default()
                            }),
                            None,
                        ),
                        (Kind::Vip(v), Some(h)) => (
                            None,
                            Some(
                                v.route_tables
                                    .iter()
                                    .map(|t| RouteStatus {
                                        route_table_id: t.clone(),
                                        network_interface_id: h.network_interface_id.clone(),
                                        instance_id: h.instance_id.clone(),
                                    })
                                    .collect(),
                            ),
                        ),
                        _ => (None, None),
                    },
                };
                let verified_at = if is_local { local.verified_at } else { None };
                ResourceStatus {
                    name: name.clone(),
                    kind: match local.kind {
                        Kind::Eip(_) => "eip",
                        Kind::Vip(_) => "vip",
                    }
                    .into(),
                    group: local.unit.clone(),
                    allocation_id,
                    address,
                    holder: holder.map(|h| HolderStatus {
                        node_id: h.node,
                        pid: h.pid,
                        instance_id: view.info(&h).map(|i| i.instance_id.clone()),
                    }),
                    generation: assignment.map_or(0, |a| a.generation),
                    local_role: if is_local { "holder" } else { "standby" }.into(),
                    state: state.into(),
                    ec2,
                    routes,
                    local_address: match local.kind {
                        Kind::Vip(_) => local.holding.local_address(),
                        Kind::Eip(_) => None,
                    },
                    verified_at: verified_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    verified_age_ms: verified_at
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_millis() as u64),
                    last_error: local.holding.last_error().map(str::to_owned),
                    drift_repairs: local.holding.drift_repairs(),
                    last_failover: local.last_failover.clone(),
                }
            })
            .collect();
        let health = self
            .config
            .health
            .iter()
            .zip(&self.health)
            .map(|(c, h)| HealthStatus {
                name: c.name.clone(),
                healthy: h.tracker.healthy(),
                last_error: h.last_error.clone(),
            })
            .collect();
        self.export(view, &resources);
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.node_id = Some(view.local().node);
        s.group = self.config.cluster.group.clone();
        s.instance_id = Some(self.identity.instance_id.clone());
        s.network_interface_id = self.identity.network_interface_id.clone();
        s.corosync = "connected".into();
        s.synced = view.is_synced();
        s.quorate = view.partition_quorate();
        s.local_quorate = local_quorate;
        s.votes = self.votes;
        s.members = members;
        s.reattaching = view.vanished().iter().map(|m| MemberRef { node_id: m.node, pid: m.pid }).collect();
        s.resources = resources;
        s.eligible = view.local_info().eligible && !view.local_info().standby;
        s.standby = view.local_info().standby;
        s.health = health;
        let conflicts = view.conflicts();
        s.warnings = self
            .warnings
            .iter()
            .chain(&self.permission_warnings)
            .cloned()
            .chain(conflicts.iter().map(|c| c.to_string()))
            .collect();
        s.conflicts = conflicts.iter().map(ConflictStatus::from).collect();
        s.muted = view.muted().iter().map(|m| MemberRef { node_id: m.node, pid: m.pid }).collect();
    }
}

fn not_found(api: &'static str, message: String) -> Ec2Error {
    Ec2Error {
        api,
        class: ErrorClass::NotFound,
        code: None,
        message,
    }
}

/// The write gate handed to an acquisition task (see `Daemon::write_gate`).
type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a failed EC2 call means for the hand-over decision.
fn failure_of(error: &Ec2Error) -> Failure {
    let own = |c: &str| c.starts_with("InvalidInstanceID") || c.starts_with("InvalidNetworkInterfaceID");
    match error.class {
        ErrorClass::Permission => Failure::Permission,
        ErrorClass::Transient => Failure::Transient,
        ErrorClass::NotFound if error.code.as_deref().is_some_and(own) => Failure::Identity,
        _ => Failure::Other,
    }
}

/// The end of an acquisition that did not succeed.
fn not_acquired(resource: &str, generation: u64, error: Ec2Error) -> TaskResult {
    if error.class == ErrorClass::Cancelled {
        return TaskResult::AcquireCancelled {
            resource: resource.to_owned(),
            generation,
        };
    }
    TaskResult::AcquireFailed {
        resource: resource.to_owned(),
        generation,
        failure: failure_of(&error),
        error: error.to_string(),
    }
}

/// Describe → (associate → verify)*: makes EC2 point the address at us, and proves it.
async fn acquire_eip(ec2: &Ec2, eip: &EipConfig, generation: u64, me: &Identity, gate: Gate, budget: Duration) -> TaskResult {
    let resource = eip.name.clone();
    let failed = |error: Ec2Error| not_acquired(&resource, generation, error);
    let describe = |budget| ec2.describe_addresses(std::slice::from_ref(&eip.allocation_id), budget);
    let find = |list: Vec<ObservedEip>| {
        list.into_iter()
            .find(|o| o.allocation_id == eip.allocation_id)
            .ok_or_else(|| not_found("DescribeAddresses", format!("allocation {} not found in this region/account", eip.allocation_id)))
    };
    // The ownership record is read here, right before the association it decides.
    let observed = match describe(budget).await.and_then(find) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let drift = match decide_eip(&observed, me, eip.private_ip) {
        EipAction::AlreadyOurs => {
            // Our own record stands (a restart or reload); anything else is rewritten.
            let epoch = match &observed.owner {
                Some(o) if o.instance_id == me.instance_id => Some(o.epoch),
                _ => match record_owner(ec2, &eip.allocation_id, me, next_epoch(&observed), gate.as_ref()).await {
                    Err(e) if e.class == ErrorClass::Cancelled => return failed(e),
                    result => result.ok(),
                },
            };
            return TaskResult::Acquired {
                resource,
                generation,
                observed: Observed::Eip(observed),
                associate_sent: None,
                verified: Instant::now(),
                epoch,
            };
        }
        EipAction::Associate { drift } => drift,
    };
    let epoch = next_epoch(&observed);
    info!(resource = %resource, allocation = %eip.allocation_id, from_instance = ?observed.instance_id, drift, "associating address (AllowReassociation)");
    let sent = Instant::now();
    // A transient failure may come after EC2 applied the call (a timeout): look before sending
    // it again, so one failover never becomes two moves.
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    loop {
        let error = match ec2.associate_address(&eip.allocation_id, me, eip.private_ip, Duration::ZERO, gate.as_ref()).await {
            Ok(_) => break,
            Err(e) if e.class != ErrorClass::Transient || Instant::now() >= deadline => return failed(e),
            Err(e) => e,
        };
        warn!(resource = %resource, error = %error, "AssociateAddress failed transiently; checking EC2 before retrying");
        tokio::time::sleep(backoff(attempt, Duration::from_millis(40), Duration::from_secs(2), rand::random())).await;
        attempt += 1;
        match describe(budget).await.and_then(find) {
            Ok(o) if points_at(&o, me, eip.private_ip) => break,
            Ok(_) => {}
            Err(e) => return failed(e),
        }
    }
    // EC2 is eventually consistent: read back until it shows us.
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    loop {
        match describe(budget).await.and_then(find) {
            Ok(o) if points_at(&o, me, eip.private_ip) => {
                let verified = Instant::now();
                let epoch = match record_owner(ec2, &eip.allocation_id, me, epoch, gate.as_ref()).await {
                    Err(e) if e.class == ErrorClass::Cancelled => return failed(e),
                    result => result.ok(),
                };
                return TaskResult::Acquired {
                    resource,
                    generation,
                    observed: Observed::Eip(o),
                    associate_sent: Some(sent),
                    verified,
                    epoch,
                };
            }
            Ok(o) if Instant::now() >= deadline => {
                return failed(Ec2Error {
                    api: "DescribeAddresses",
                    class: ErrorClass::Refused,
                    code: None,
                    message: format!(
                        "after AssociateAddress EC2 still shows instance {:?} / interface {:?}",
                        o.instance_id, o.network_interface_id
                    ),
                })
            }
            Ok(_) => {}
            Err(e) => return failed(e),
        }
        tokio::time::sleep(backoff(attempt, Duration::from_millis(10), Duration::from_millis(500), rand::random())).await;
        attempt += 1;
    }
}

/// DescribeRouteTables → ReplaceRoute/CreateRoute in every table at once → verify → put the
/// address on our interface.
async fn acquire_vip(
    ec2: &Ec2,
    addresses: Option<&LocalAddresses>,
    vip: &VipConfig,
    generation: u64,
    me: &Identity,
    gate: Gate,
    budget: Duration,
) -> TaskResult {
    let resource = vip.name.clone();
    let failed = |error: Ec2Error| not_acquired(&resource, generation, error);
    let other = |message: String| TaskResult::AcquireFailed {
        resource: resource.clone(),
        generation,
        failure: Failure::Other,
        error: message,
    };
    let Some(eni) = me.network_interface_id.clone() else {
        return TaskResult::AcquireFailed {
            resource: resource.clone(),
            generation,
            failure: Failure::Identity,
            error: "no network interface id for this node; set [node] network_interface_id".into(),
        };
    };
    let Some(addresses) = addresses else {
        return other("local address management is not available".into());
    };
    let destination = vip.destination();
    if vip.route_tables.is_empty() {
        return other("no route table to point at this node (see the route_table_tag warning)".into());
    }
    let tables = match ec2.describe_route_tables(&vip.route_tables, budget).await {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let mut changes = Vec::new();
    for id in &vip.route_tables {
        let table = tables.iter().find(|t| &t.route_table_id == id);
        match decide_route(table, &destination, &eni, vip.create_route) {
            RouteAction::AlreadyOurs => {}
            RouteAction::Replace { drift } => changes.push((id.clone(), false, drift)),
            RouteAction::Create => changes.push((id.clone(), true, false)),
            RouteAction::Missing => {
                return other(format!("route table {id} has no route for {destination}; create it or set create_route = true"))
            }
            RouteAction::NoTable => return other(format!("route table {id} not found in this region/account")),
        }
    }
    let mut sent = None;
    if !changes.is_empty() {
        info!(resource = %resource, destination = %destination, tables = ?changes.iter().map(|c| &c.0).collect::<Vec<_>>(), "pointing routes at this node");
        sent = Some(Instant::now());
        let calls = changes
            .iter()
            .map(|(id, create, _)| ec2.set_route(id, &destination, &eni, *create, budget, gate.as_ref()));
        for result in futures_util::future::join_all(calls).await {
            if let Err(e) = result {
                return failed(e);
            }
        }
    }
    let mut attempt = 0;
    let deadline = Instant::now() + budget;
    let verified_tables = loop {
        let tables = match ec2.describe_route_tables(&vip.route_tables, budget).await {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        if all_routes_point_at(&tables, &vip.route_tables, &destination, &eni) {
            break tables;
        }
        if Instant::now() >= deadline {
            return other(format!("after ReplaceRoute EC2 still does not route {destination} to {eni} in every table"));
        }
        tokio::time::sleep(backoff(attempt, Duration::from_millis(10), Duration::from_millis(500), rand::random())).await;
        attempt += 1;
    };
    if let Err(e) = addresses.ensure_present(&vip.interface, vip.address, 32, vip.label.as_deref()).await {
        return other(e.to_string());
    }
    TaskResult::Acquired {
        resource,
        generation,
        observed: Observed::Vip(verified_tables),
        associate_sent: sent,
        verified: Instant::now(),
        epoch: None,
    }
}

/// Writes our ownership record. A refusal (e.g. no ec2:CreateTags permission) only costs the
/// split-brain protection, so it is logged and the address stays held; a closed gate means we
/// are no longer the holder.
async fn record_owner(ec2: &Ec2, allocation_id: &str, me: &Identity, epoch: u64, gate: ec2::WriteGate<'_>) -> Result<u64, Ec2Error> {
    let owner = Ownership {
        instance_id: me.instance_id.clone(),
        epoch,
    };
    match ec2.tag_owner(allocation_id, &owner, Duration::from_secs(2), gate).await {
        Ok(()) => Ok(epoch),
        Err(e) => {
            if e.class != ErrorClass::Cancelled {
                warn!(allocation = %allocation_id, error = %e, "cannot write the ownership tags; split-brain protection is off for this address");
            }
            Err(e)
        }
    }
}
