//! The daemon: observe (corosync events, EC2 reads) → decide (core::view) → act (EC2 writes)
//! → verify (EC2 reads) → announce (CPG).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Config, EipConfig};
use crate::control::{self, SharedStatus};
use crate::core::reconcile::{backoff, decide_eip, points_at, EipAction, Identity, ObservedEip};
use crate::core::view::{Event, Output, ResourceSpec, View};
use crate::core::wire::{self, Body, HeldMsg, MemberInfo, WireAssignment};
use crate::core::MemberId;
use crate::corosync::{Corosync, CorosyncError, CorosyncEvent};
use crate::ec2::{self, Ec2, Ec2Error};
use crate::identity;
use crate::status::{self, FailoverTimeline, HolderStatus, MemberRef, MemberStatus, ResourceStatus, StatusReport};

/// Environment variable carrying the cluster view across a reload re-exec.
const REEXEC_STATE_ENV: &str = "COROSYNC_EIP_REEXEC_STATE";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Time budget for one acquisition (retries of transient errors included).
const ACQUIRE_BUDGET: Duration = Duration::from_secs(10);
/// How long a stopping holder waits for its Release to come back through CPG.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// What the process does when `run` returns.
pub enum Exit {
    Stopped,
}

/// What the main loop hears from its background tasks.
enum TaskResult {
    Acquired {
        resource: String,
        generation: u64,
        observed: ObservedEip,
        associate_sent: Option<Instant>,
        verified: Instant,
    },
    AcquireFailed {
        resource: String,
        generation: u64,
        error: Ec2Error,
    },
    /// Acquisition stopped because we lost the right to act before the mutating call.
    AcquireCancelled { resource: String, generation: u64 },
    Monitored(Result<Vec<ObservedEip>, Ec2Error>),
    Retry,
    GraceExpired(MemberId),
}

#[derive(Default)]
struct LocalResource {
    /// Generation whose acquisition is running.
    acquiring: Option<(u64, JoinHandle<()>)>,
    /// Generation EC2 was verified to point at us for.
    held: Option<u64>,
    observed: Option<ObservedEip>,
    verified_at: Option<SystemTime>,
    last_error: Option<String>,
    /// Failed acquisitions of the wanted generation so far, and when the next try is due.
    failures: u32,
    retry_at: Option<Instant>,
    drift_repairs: u64,
    /// Set when the view elected us; consumed when the acquisition is verified.
    pending_timeline: Option<PendingTimeline>,
    last_failover: Option<FailoverTimeline>,
}

struct PendingTimeline {
    previous: Option<MemberId>,
    detected: Instant,
    detected_wall: SystemTime,
    elected: Instant,
}

enum SessionEnd {
    Lost(CorosyncError),
    Shutdown,
    Reload(Box<Config>, Vec<WireAssignment>),
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
    ec2: Ec2,
    status: SharedStatus,
    resources: BTreeMap<String, LocalResource>,
    results_tx: mpsc::UnboundedSender<TaskResult>,
    results_rx: mpsc::UnboundedReceiver<TaskResult>,
    permit: watch::Sender<BTreeSet<(String, u64)>>,
    monitor_running: bool,
    exe: PathBuf,
    args: Vec<OsString>,
}

pub async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<Exit> {
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
    let listener = control::bind(&config.daemon.control_socket)?;
    tokio::spawn(control::serve(listener, status.clone()));

    let sdk = ec2::sdk_config(&config.aws).await;
    let ec2 = Ec2::new(&sdk);
    let mut attempt = 0;
    let identity = loop {
        match identity::resolve(&config.node, &ec2).await {
            Ok(id) => break id,
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
    info!(instance = %identity.instance_id, eni = ?identity.network_interface_id, "node identity");
    {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.instance_id = Some(identity.instance_id.clone());
        s.network_interface_id = identity.network_interface_id.clone();
    }

    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (permit, _) = watch::channel(BTreeSet::new());
    let resources = config.eips.iter().map(|e| (e.name.clone(), LocalResource::default())).collect();
    let mut daemon = Daemon {
        config,
        config_path,
        identity,
        ec2,
        status,
        resources,
        results_tx,
        results_rx,
        permit,
        monitor_running: false,
        exe,
        args,
    };
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
                    SessionEnd::Reload(config, table) => {
                        drop(cs);
                        daemon.reexec(*config, table);
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
        daemon.stand_down();
        let wait = backoff(attempt, Duration::from_millis(200), Duration::from_secs(5), rand::random());
        attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = signals.term.recv() => return Ok(Exit::Stopped),
            _ = signals.int.recv() => return Ok(Exit::Stopped),
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
    fn resource_specs(&self) -> Vec<ResourceSpec> {
        self.config
            .eips
            .iter()
            .map(|e| ResourceSpec {
                name: e.name.clone(),
                prefer: self.config.preference_for(e).to_vec(),
            })
            .collect()
    }

    fn eip(&self, name: &str) -> Option<&EipConfig> {
        self.config.eips.iter().find(|e| e.name == name)
    }

    async fn session(&mut self, cs: &mut Corosync, seed: Option<Vec<WireAssignment>>, signals: &mut Signals) -> SessionEnd {
        let info = MemberInfo {
            instance_id: self.identity.instance_id.clone(),
            network_interface_id: self.identity.network_interface_id.clone(),
            version: VERSION.into(),
            resources: self.config.eips.iter().map(|e| e.name.clone()).collect(),
            quorate: cs.initially_quorate(),
        };
        let mut view = View::new(cs.local(), info, self.resource_specs());
        if let Some(table) = seed {
            view.seed(table);
        }
        let mut monitor = tokio::time::interval(self.config.cluster.monitor_interval);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish(&view, true, cs.initially_quorate());
        let mut local_quorate = cs.initially_quorate();
        loop {
            tokio::select! {
                events = cs.next_events() => {
                    let events = match events {
                        Ok(e) => e,
                        Err(e) => return SessionEnd::Lost(e),
                    };
                    let detected = (Instant::now(), SystemTime::now());
                    for event in events {
                        let outputs = match event {
                            CorosyncEvent::Quorum { quorate } => {
                                info!(quorate, "corosync quorum changed");
                                local_quorate = quorate;
                                view.set_local_quorate(quorate)
                            }
                            CorosyncEvent::Confchg { members, left, joined } => {
                                info!(members = ?members, left = ?left, joined = ?joined, "CPG membership changed");
                                view.handle(Event::Confchg { members, left, joined })
                            }
                            CorosyncEvent::Totem { nodes } => view.handle(Event::Totem { nodes }),
                            CorosyncEvent::Deliver { from, bytes } => match wire::decode(&bytes) {
                                Ok(body) => view.handle(Event::Message { from, body }),
                                Err(e) => {
                                    warn!(from = %from, error = %e, "dropping undecodable CPG message");
                                    Vec::new()
                                }
                            },
                        };
                        if let Err(e) = self.apply_outputs(cs, &view, outputs, detected).await {
                            return SessionEnd::Lost(e);
                        }
                    }
                    self.reconcile(&view, local_quorate);
                    self.publish(&view, true, local_quorate);
                }
                Some(result) = self.results_rx.recv() => {
                    if let Err(e) = self.on_result(cs, &view, result).await {
                        return SessionEnd::Lost(e);
                    }
                    self.reconcile(&view, local_quorate);
                    self.publish(&view, true, local_quorate);
                }
                _ = monitor.tick() => {
                    self.start_monitor(&view);
                    self.publish(&view, true, local_quorate);
                }
                _ = signals.term.recv() => return self.release(cs, &mut view).await,
                _ = signals.int.recv() => return self.release(cs, &mut view).await,
                _ = signals.hup.recv() => {
                    match Config::load(&self.config_path) {
                        Ok(config) => {
                            info!(config = %self.config_path.display(), "reloading: re-executing with the new configuration, keeping every address");
                            return SessionEnd::Reload(Box::new(config), table_of(&view));
                        }
                        Err(e) => error!(error = %e, "reload refused: the new configuration is invalid; keeping the running one"),
                    }
                }
            }
        }
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
                    let tx = self.results_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        let _ = tx.send(TaskResult::GraceExpired(member));
                    });
                }
                Output::Elected {
                    resource,
                    holder,
                    generation,
                    previous,
                } => {
                    let instance = view.info(&holder).map(|i| i.instance_id.clone()).unwrap_or_default();
                    info!(resource = %resource, node = holder.node, instance = %instance, generation, previous = ?previous.map(|p| p.to_string()), "holder elected");
                    if holder == view.local() {
                        if let Some(local) = self.resources.get_mut(&resource) {
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

    /// Starts or stops work so that we act exactly on what the view says is ours.
    fn reconcile(&mut self, view: &View, local_quorate: bool) {
        let may_act = view.may_act() && local_quorate;
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        let permitted: BTreeSet<(String, u64)> = if may_act {
            ours.iter().map(|(r, g)| (r.clone(), *g)).collect()
        } else {
            BTreeSet::new()
        };
        self.permit.send_replace(permitted);
        let names: Vec<String> = self.resources.keys().cloned().collect();
        let quorate = view.partition_quorate() && local_quorate;
        for name in names {
            let want = ours.get(&name).copied();
            let Some(local) = self.resources.get_mut(&name) else { continue };
            let Some(generation) = want else {
                if let Some((_, task)) = local.acquiring.take() {
                    task.abort();
                }
                local.held = None;
                local.pending_timeline = None;
                local.failures = 0;
                local.retry_at = None;
                continue;
            };
            if !quorate {
                if let Some((_, task)) = local.acquiring.take() {
                    task.abort();
                }
                continue;
            }
            if !may_act {
                // A sync round: let reads in flight finish; the permit blocks any write until
                // the round is over, and nothing new starts.
                continue;
            }
            if local.held == Some(generation) || local.acquiring.as_ref().is_some_and(|(g, _)| *g == generation) {
                continue;
            }
            if local.retry_at.is_some_and(|at| at > Instant::now()) {
                continue; // a retry is scheduled
            }
            if let Some((_, task)) = local.acquiring.take() {
                task.abort();
            }
            self.spawn_acquire(&name, generation);
        }
    }

    fn spawn_acquire(&mut self, name: &str, generation: u64) {
        let Some(eip) = self.eip(name).cloned() else { return };
        let ec2 = self.ec2.clone();
        let me = self.identity.clone();
        let permit = self.permit.subscribe();
        let tx = self.results_tx.clone();
        let resource = name.to_owned();
        let task = tokio::spawn(async move {
            let result = acquire(&ec2, &eip, generation, &me, permit).await;
            let _ = tx.send(result);
        });
        if let Some(local) = self.resources.get_mut(name) {
            local.acquiring = Some((generation, task));
        }
        debug!(resource = %resource, generation, "acquisition started");
    }

    async fn on_result(&mut self, cs: &Corosync, view: &View, result: TaskResult) -> Result<(), CorosyncError> {
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        match result {
            TaskResult::Acquired {
                resource,
                generation,
                observed,
                associate_sent,
                verified,
            } => {
                if ours.get(&resource) != Some(&generation) {
                    return Ok(());
                }
                let Some(local) = self.resources.get_mut(&resource) else { return Ok(()) };
                local.acquiring = None;
                local.held = Some(generation);
                local.observed = Some(observed.clone());
                local.verified_at = Some(SystemTime::now());
                local.last_error = None;
                local.failures = 0;
                local.retry_at = None;
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
                } else {
                    info!(resource = %resource, instance = %self.identity.instance_id, generation, "address verified on this node");
                }
                cs.send(&wire::encode(&Body::Held(HeldMsg {
                    resource,
                    generation,
                    instance_id: observed.instance_id.clone(),
                    network_interface_id: observed.network_interface_id.clone(),
                })))
                .await?;
            }
            TaskResult::AcquireFailed {
                resource,
                generation,
                error,
            } => {
                let Some(local) = self.resources.get_mut(&resource) else { return Ok(()) };
                local.acquiring = None;
                let wait = backoff(local.failures, Duration::from_millis(500), self.config.cluster.monitor_interval, rand::random());
                local.failures += 1;
                local.retry_at = Some(Instant::now() + wait);
                local.last_error = Some(error.to_string());
                error!(resource = %resource, generation, error = %error, retry_in_ms = wait.as_millis() as u64, "could not take the address");
                let tx = self.results_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(TaskResult::Retry);
                });
            }
            TaskResult::AcquireCancelled { resource, generation } => {
                if let Some(local) = self.resources.get_mut(&resource) {
                    if local.acquiring.as_ref().is_some_and(|(g, _)| *g == generation) {
                        local.acquiring = None;
                    }
                }
            }
            // Reconcile runs after every result and starts what is due.
            TaskResult::Retry => {}
            TaskResult::GraceExpired(member) => {
                if view.vanished().contains(&member) {
                    info!(member = %member, "reattach grace expired; peers take over");
                    cs.send(&wire::encode(&Body::GraceExpired { member })).await?;
                }
            }
            TaskResult::Monitored(result) => {
                self.monitor_running = false;
                match result {
                    Ok(observed) => self.check_drift(view, observed),
                    Err(e) => {
                        warn!(error = %e, "monitor could not read EC2");
                        for (name, _) in ours {
                            if let Some(local) = self.resources.get_mut(&name) {
                                local.last_error = Some(e.to_string());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_drift(&mut self, view: &View, observed: Vec<ObservedEip>) {
        let ours: BTreeMap<String, u64> = view.held_by_local().into_iter().collect();
        let now = SystemTime::now();
        for eip in self.config.eips.clone() {
            let Some(generation) = ours.get(&eip.name) else { continue };
            let Some(local) = self.resources.get_mut(&eip.name) else { continue };
            if local.held != Some(*generation) {
                continue;
            }
            match observed.iter().find(|o| o.allocation_id == eip.allocation_id) {
                Some(o) if points_at(o, &self.identity, eip.private_ip) => {
                    local.observed = Some(o.clone());
                    local.verified_at = Some(now);
                    local.last_error = None;
                }
                Some(o) => {
                    local.drift_repairs += 1;
                    warn!(resource = %eip.name, instance = ?o.instance_id, eni = ?o.network_interface_id, drift_repairs = local.drift_repairs, "drift: EC2 points the address elsewhere; repairing");
                    local.observed = Some(o.clone());
                    local.held = None;
                }
                None => {
                    local.last_error = Some(format!("allocation {} is missing from DescribeAddresses", eip.allocation_id));
                    warn!(resource = %eip.name, allocation = %eip.allocation_id, "address not found in EC2 during monitor");
                }
            }
        }
    }

    fn start_monitor(&mut self, view: &View) {
        if self.monitor_running || !view.may_act() {
            return;
        }
        let ours: BTreeSet<String> = view.held_by_local().into_iter().map(|(r, _)| r).collect();
        let allocations: Vec<String> = self
            .config
            .eips
            .iter()
            .filter(|e| ours.contains(&e.name) && self.resources.get(&e.name).is_some_and(|l| l.held.is_some()))
            .map(|e| e.allocation_id.clone())
            .collect();
        if allocations.is_empty() {
            return;
        }
        self.monitor_running = true;
        let ec2 = self.ec2.clone();
        let tx = self.results_tx.clone();
        let budget = self.config.cluster.monitor_interval;
        tokio::spawn(async move {
            let result = ec2.describe_addresses(&allocations, budget).await;
            let _ = tx.send(TaskResult::Monitored(result));
        });
    }

    /// Planned stop: tell every member we release, wait until CPG delivered it back to us (so
    /// every member has it in agreed order), then leave.
    async fn release(&mut self, cs: &mut Corosync, view: &mut View) -> SessionEnd {
        info!("stopping: releasing all addresses to peers");
        self.permit.send_replace(BTreeSet::new());
        self.stand_down();
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

    /// Stop every background action: we may no longer act.
    fn stand_down(&mut self) {
        self.permit.send_replace(BTreeSet::new());
        for local in self.resources.values_mut() {
            if let Some((_, task)) = local.acquiring.take() {
                task.abort();
            }
        }
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.corosync = "disconnected".into();
        s.synced = false;
        s.quorate = false;
    }

    fn reexec(&self, config: Config, table: Vec<WireAssignment>) -> ! {
        use std::os::unix::process::CommandExt;
        let _ = config; // validated; the new process reads the file itself
        let state = serde_json::to_string(&table).unwrap_or_default();
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(self.args.iter().skip(1)).env(REEXEC_STATE_ENV, state);
        let err = cmd.exec();
        error!(error = %err, exe = %self.exe.display(), "re-exec failed; exiting so systemd restarts us");
        std::process::exit(1);
    }

    fn publish(&self, view: &View, connected: bool, local_quorate: bool) {
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
                }
            })
            .collect();
        let may_act = view.may_act() && local_quorate;
        let resources = self
            .config
            .eips
            .iter()
            .map(|eip| {
                let assignment = view.assignments().get(&eip.name);
                let holder = assignment.and_then(|a| a.holder);
                let local = self.resources.get(&eip.name);
                let is_local = holder == Some(view.local());
                let state = match holder {
                    None => "unassigned",
                    Some(h) if view.vanished().contains(&h) => "reattaching",
                    Some(_) if !view.is_synced() => "syncing",
                    Some(_) if is_local && !may_act => "waiting_quorum",
                    Some(_) if is_local && local.is_some_and(|l| l.held.is_some()) => "held",
                    Some(_) if is_local => "acquiring",
                    Some(_) if assignment.is_some_and(|a| a.verified.is_some()) => "held",
                    Some(_) => "acquiring",
                };
                let (ec2, verified_at) = if is_local {
                    (local.and_then(|l| l.observed.clone()), local.and_then(|l| l.verified_at))
                } else {
                    let held = assignment.and_then(|a| a.verified.as_ref());
                    (
                        held.map(|h| ObservedEip {
                            allocation_id: eip.allocation_id.clone(),
                            instance_id: h.instance_id.clone(),
                            network_interface_id: h.network_interface_id.clone(),
                            ..Default::default()
                        }),
                        None,
                    )
                };
                ResourceStatus {
                    name: eip.name.clone(),
                    kind: "eip".into(),
                    allocation_id: eip.allocation_id.clone(),
                    holder: holder.map(|h| HolderStatus {
                        node_id: h.node,
                        pid: h.pid,
                        instance_id: view.info(&h).map(|i| i.instance_id.clone()),
                    }),
                    generation: assignment.map_or(0, |a| a.generation),
                    local_role: if is_local { "holder" } else { "standby" }.into(),
                    state: state.into(),
                    ec2,
                    verified_at: verified_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    verified_age_ms: verified_at
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_millis() as u64),
                    last_error: local.and_then(|l| l.last_error.clone()),
                    drift_repairs: local.map_or(0, |l| l.drift_repairs),
                    last_failover: local.and_then(|l| l.last_failover.clone()),
                }
            })
            .collect();
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.node_id = Some(view.local().node);
        s.corosync = if connected { "connected" } else { "disconnected" }.into();
        s.synced = view.is_synced();
        s.quorate = view.partition_quorate();
        s.local_quorate = local_quorate;
        s.members = members;
        s.reattaching = view.vanished().iter().map(|m| MemberRef { node_id: m.node, pid: m.pid }).collect();
        s.resources = resources;
    }
}

fn table_of(view: &View) -> Vec<WireAssignment> {
    view.state_message().assignments
}

/// Describe → (associate → verify)*: makes EC2 point the address at us, and proves it.
async fn acquire(
    ec2: &Ec2,
    eip: &EipConfig,
    generation: u64,
    me: &Identity,
    permit: watch::Receiver<BTreeSet<(String, u64)>>,
) -> TaskResult {
    let resource = eip.name.clone();
    let failed = |error: Ec2Error| TaskResult::AcquireFailed {
        resource: resource.clone(),
        generation,
        error,
    };
    let describe = |budget| ec2.describe_addresses(std::slice::from_ref(&eip.allocation_id), budget);
    let find = |list: Vec<ObservedEip>| {
        list.into_iter().find(|o| o.allocation_id == eip.allocation_id).ok_or_else(|| Ec2Error {
            api: "DescribeAddresses",
            class: ec2::ErrorClass::NotFound,
            code: None,
            message: format!("allocation {} not found in this region/account", eip.allocation_id),
        })
    };
    let observed = match describe(ACQUIRE_BUDGET).await.and_then(find) {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let drift = match decide_eip(&observed, me, eip.private_ip) {
        EipAction::AlreadyOurs => {
            return TaskResult::Acquired {
                resource,
                generation,
                observed,
                associate_sent: None,
                verified: Instant::now(),
            }
        }
        EipAction::Associate { drift } => drift,
    };
    // Last gate before mutating EC2: still elected and still quorate?
    if !permit.borrow().contains(&(resource.clone(), generation)) {
        return TaskResult::AcquireCancelled { resource, generation };
    }
    info!(resource = %resource, allocation = %eip.allocation_id, from_instance = ?observed.instance_id, drift, "associating address (AllowReassociation)");
    let sent = Instant::now();
    if let Err(e) = ec2.associate_address(&eip.allocation_id, me, eip.private_ip, ACQUIRE_BUDGET).await {
        return failed(e);
    }
    // EC2 is eventually consistent: read back until it shows us.
    let mut attempt = 0;
    let deadline = Instant::now() + ACQUIRE_BUDGET;
    loop {
        match describe(ACQUIRE_BUDGET).await.and_then(find) {
            Ok(o) if points_at(&o, me, eip.private_ip) => {
                return TaskResult::Acquired {
                    resource,
                    generation,
                    observed: o,
                    associate_sent: Some(sent),
                    verified: Instant::now(),
                }
            }
            Ok(o) if Instant::now() >= deadline => {
                return failed(Ec2Error {
                    api: "DescribeAddresses",
                    class: ec2::ErrorClass::Refused,
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
