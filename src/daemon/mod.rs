//! The daemon's event loop: observe → decide → act → verify, then announce.
//!
//! - **observe**: corosync events (membership, quorum, messages in agreed order), results of
//!   background tasks (EC2 reads, health checks, timers) and admin requests;
//! - **decide**: `core::view` turns them into the cluster's table of holders, and
//!   `core::holder` turns "what the table says is ours" into effects, per resource;
//! - **act**: `holding` starts acquisitions (`kinds`) and local address changes;
//! - **verify**: every acquisition reads EC2 back before it reports, and `monitor` keeps
//!   reading while we hold;
//! - **announce**: results go back over CPG (`Held`, `CannotServe`), and into status, metrics
//!   and systemd (`report`).
//!
//! Around the loop: `bootstrap` (identity, discovery, first health checks), `commands`
//! (move, standby), `lifecycle` (release, re-exec, stand-down).

mod bootstrap;
mod commands;
mod drain;
pub(crate) mod handover;
mod holding;
mod lifecycle;
mod monitor;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::control::{Request, SharedStatus};
use crate::core::holder;
use crate::core::reconcile::{backoff, Identity};
use crate::core::view::{Event, Output, View};
use crate::core::wire::{self, Body, MemberInfo, WireAssignment, PROTOCOL};
use crate::core::MemberId;
use crate::corosync::{Corosync, CorosyncError, CorosyncEvent, QuorumProbe, Votes};
use crate::ec2::Ec2;
use crate::kinds::{self, AcquireError};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::systemd;

use self::commands::PendingCommand;
use self::holding::{Liveness, LocalResource, PendingTimeline};
use self::lifecycle::SessionEnd;
use self::monitor::HealthState;
use self::report::Undecodable;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The main loop marks itself alive this often.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long queued `[[notify]]` hooks (the release hooks of a stop among them) may still run
/// before the process exits or re-executes; well inside the unit's TimeoutStopSec.
const HOOKS_AT_EXIT: Duration = Duration::from_secs(10);

/// What the process does when `run` returns.
pub enum Exit {
    /// Stopped on request after releasing to peers: exit 0, nothing for systemd to restart.
    Stopped,
}

/// The signals that end or reload the daemon, taken as a parameter so whoever starts the loop
/// decides where they come from.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    /// A reload asked for while there was no session to reload (identity not known yet, or
    /// corosync away): carried out as soon as a session runs, as systemd's `reload` expects.
    reload_pending: bool,
}

impl Signals {
    /// SIGTERM and SIGINT stop (releasing every address), SIGHUP reloads.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            reload_pending: false,
        })
    }

    /// Resolves with the next request from outside, a kept reload first.
    async fn recv(&mut self) -> Asked {
        if std::mem::take(&mut self.reload_pending) {
            return Asked::Reload;
        }
        self.next().await
    }

    /// The next signal as it arrives.
    async fn next(&mut self) -> Asked {
        tokio::select! {
            _ = self.term.recv() => Asked::Stop,
            _ = self.int.recv() => Asked::Stop,
            _ = self.hup.recv() => Asked::Reload,
        }
    }

    /// Resolves when the daemon is asked to stop; a reload asked meanwhile is kept for the
    /// next session.
    async fn stopped(&mut self) {
        loop {
            match self.next().await {
                Asked::Stop => return,
                Asked::Reload => self.reload_pending = true,
            }
        }
    }
}

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Release every address to the peers and exit.
    Stop,
    /// Re-execute with the configuration file as it is now, keeping every address.
    Reload,
}

/// How long one `discover` lookup of route tables by tag may take.
const DISCOVER_BUDGET: Duration = Duration::from_secs(10);

/// Most task results taken in one step of the loop: enough for a failover's addresses, few
/// enough that corosync's deliveries never wait long behind them.
const RESULTS_PER_STEP: usize = 64;

/// What the main loop hears from its background tasks.
enum TaskResult {
    /// An acquisition ended with the address verified on this node.
    Acquired {
        resource: String,
        generation: u64,
        acquired: kinds::Acquired,
        /// When the departed holder was fenced, if this takeover fenced it.
        fenced: Option<Instant>,
    },
    /// An acquisition ended without the address (a cancellation is one too).
    NotAcquired {
        resource: String,
        generation: u64,
        error: AcquireError,
    },
    Monitored(kinds::Observation),
    LocalAddressRemoved { resource: String, result: Result<bool, String> },
    Retry,
    /// The sync timeout after the configuration change to this member list ran out.
    SyncTimeout(Vec<MemberId>),
    GraceExpired(MemberId),
    StartupWaitOver,
    Health { index: usize, result: Result<(), String> },
    /// DryRun permission checks of an idle node: the failing ones.
    Permissions(Vec<String>),
    /// Problems found by the start-up checks a reload runs after rejoining.
    Warnings(Vec<String>),
    /// A reload's lookups of changed `discover` queries: (VIP, query, tables found or the
    /// error), stopping at the first error.
    ReloadLookedUp(Vec<(String, String, Result<Vec<String>, String>)>),
    /// One poll of IMDS for announced AWS events.
    AwsEvents(drain::EventsSeen),
}

/// The adapter state around the pure view: what this process knows and runs.
pub struct Daemon {
    /// The configuration this process started with (a reload re-executes).
    config: Config,
    /// Where the configuration came from, re-read on reload.
    config_path: PathBuf,
    /// This node's instance and interface, as EC2 knows them.
    identity: Identity,
    availability_zone: Option<String>,
    ec2: Ec2,
    /// What an acquisition or a monitor round needs: EC2, identity, local addresses.
    kinds: kinds::Context,
    /// Stops a departed holder's instance before a takeover (`[fencing]`).
    fencer: Arc<crate::fence::Fencer>,
    /// When the fence the `fence` hook last told of ended, and its result.
    fence_hooked: Option<(SystemTime, &'static str)>,
    /// The snapshot the control socket serves as `status`.
    status: SharedStatus,
    /// Every configured address, by resource name.
    resources: BTreeMap<String, LocalResource>,
    results_tx: mpsc::UnboundedSender<TaskResult>,
    results_rx: mpsc::UnboundedReceiver<TaskResult>,
    /// Admin requests from the control socket.
    requests: mpsc::Receiver<Request>,
    /// Admin commands waiting for the cluster to show their effect.
    pending_commands: Vec<PendingCommand>,
    /// Units (with generation) we may call mutating EC2 APIs for right now.
    permit: watch::Sender<BTreeSet<(String, u64)>>,
    /// A monitor round is running (one at a time).
    monitor_running: bool,
    /// One per configured health check, in configuration order.
    health: Vec<HealthState>,
    /// Whether the state directory says we are in standby (survives restarts).
    standby_persisted: bool,
    /// The startup-wait timer was started in this session.
    startup_timer_armed: bool,
    /// Problems found at start that an admin should fix (shown in status).
    warnings: Vec<String>,
    /// Permissions the last DryRun check on this (idle) node found missing.
    permission_warnings: Vec<String>,
    permission_check_running: bool,
    /// Draining before AWS's announced events.
    drain: drain::DrainState,
    /// Runs the `[[notify]]` hooks, one at a time in event order.
    notifier: Notifier,
    /// Our corosync node id, once a session knew it (hooks name it).
    node_id: Option<u32>,
    /// Route tables found by VIPs' `discover` queries, handed to a reload.
    discovered: BTreeMap<String, handover::Discovered>,
    /// A reload is looking up changed `discover` queries before it re-executes.
    reload_lookup_running: bool,
    /// The reload's lookups ended: re-execute at the end of this step.
    reload_due: bool,
    /// systemd was told RELOADING=1 for the reload under way.
    reload_announced: bool,
    metrics: Arc<Metrics>,
    /// votequorum's count, for status.
    votes: Option<Votes>,
    /// The synchronous quorum check of the current corosync connection.
    probe: Option<Arc<QuorumProbe>>,
    undecodable: Undecodable,
    /// Conflicts last logged, to log each change once.
    conflicts: Vec<crate::core::spec::Conflict>,
    /// When the last CPG membership change arrived: the "detected" of a failover timeline.
    changed_at: Option<(Instant, SystemTime)>,
    /// When the main loop last ran; write gates stay shut while it is stale.
    liveness: Arc<Liveness>,
    /// Last STATUS= line sent to systemd.
    systemd_status: String,
    /// READY=1 went out in this process.
    ready_sent: bool,
    /// Our own executable and arguments, for the reload re-exec.
    exe: PathBuf,
    args: Vec<OsString>,
}

/// Runs the daemon until it is stopped: connects to corosync (again and again, if it goes
/// away) and runs one session per connection.
pub async fn run(config: Config, config_path: PathBuf, mut signals: Signals) -> anyhow::Result<Exit> {
    // Taken first: a re-executed daemon knows who it is and what EC2 said, and rejoins before
    // any slow call.
    let handover = handover::take().unwrap_or_else(|e| {
        warn!(error = %e, "ignoring the handover; starting as a fresh process");
        None
    });
    let Some(mut daemon) = Daemon::start(config, config_path, &mut signals, handover.as_ref()).await? else {
        return Ok(Exit::Stopped);
    };
    let mut seed = handover.and_then(|h| h.table);
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
                        daemon.notifier.finish(HOOKS_AT_EXIT).await;
                        return Ok(Exit::Stopped);
                    }
                    SessionEnd::Reload(table) => {
                        drop(cs);
                        // A reload keeps every address: no hook of ours is due, and what still
                        // runs must not be left to an image that never waits for it.
                        daemon.notifier.finish(HOOKS_AT_EXIT).await;
                        let ended = crate::child::end_all();
                        if ended > 0 {
                            warn!(ended, "health checks or hooks still running at the reload were killed");
                        }
                        daemon.reexec(table);
                    }
                    SessionEnd::Lost(e, table) => {
                        warn!(error = %e, "lost the corosync connection; not acting until it is back");
                        // Every member may lose its connection at once (corosync refuses calls
                        // while it re-forms the ring): each keeps the table it knew, so the
                        // members that meet again keep their holders instead of placing afresh.
                        seed = table;
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
        daemon.stand_down(true, "lost the corosync connection");
        let wait = backoff(attempt, Duration::from_millis(200), Duration::from_secs(5), rand::random());
        attempt += 1;
        if daemon.offline(wait, &mut signals).await {
            daemon.notifier.finish(HOOKS_AT_EXIT).await;
            return Ok(Exit::Stopped);
        }
    }
}

impl Daemon {
    /// One corosync connection: join, sync, and act on what the view decides until the
    /// connection is lost, or we are stopped or reloaded.
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
            name: cs.node_name().map(str::to_owned),
            hostname: local_hostname(),
            fencing: Some(self.config.fencing.stop_instance),
        };
        self.node_id = Some(cs.local().node);
        let mut view = View::new(cs.local(), info, self.config.unit_specs());
        if let Some(table) = seed {
            view.seed(table);
        }
        self.probe = Some(cs.probe());
        self.startup_timer_armed = false;
        let mut monitor = tokio::time::interval(self.config.cluster.monitor_interval);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut local_quorate = cs.initially_quorate();
        self.votes = cs.votes_within(cs.initial_nodes(), crate::corosync::CALL_BUDGET).await;
        let mut watchdog = tokio::time::interval(systemd::watchdog_interval().unwrap_or(Duration::from_secs(3600)));
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let permission_every = self.config.aws.permission_check_interval;
        // The first check one period after start: a starting node has nothing yet anyway.
        let period = if permission_every.is_zero() { Duration::from_secs(86400 * 365) } else { permission_every };
        let mut permission_check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        permission_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut event_poll = tokio::time::interval(self.config.aws_events.poll_interval);
        event_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish(&view, local_quorate);
        loop {
            // Observe: one input at a time.
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
                Some(result) = self.results_rx.recv() => self.on_results(cs, &mut view, result).await,
                Some(request) = self.requests.recv() => self.on_request(cs, &view, request).await,
                _ = monitor.tick() => {
                    self.start_monitor(&view);
                    Ok(())
                }
                _ = permission_check.tick(), if !permission_every.is_zero() => {
                    self.start_permission_check(&view);
                    Ok(())
                }
                _ = event_poll.tick(), if self.config.aws_events.enabled => {
                    self.start_event_poll();
                    Ok(())
                }
                asked = signals.recv() => match asked {
                    Asked::Stop => return self.release(cs, &view).await,
                    Asked::Reload => match self.reload(&view) {
                        Some(end) => return end,
                        None => Ok(()),
                    },
                },
            };
            if let Err(e) = step {
                return SessionEnd::Lost(e, view.table_to_keep());
            }
            if std::mem::take(&mut self.reload_due) {
                if let Some(end) = self.reload(&view) {
                    return end;
                }
            }
            self.liveness.beat();
            self.persist_standby(&view);
            self.log_conflicts(&view);
            // Decide and act: start or stop work so we act exactly on what the view says.
            self.reconcile(&view, local_quorate);
            self.start_acquisitions();
            self.arm_startup_timer(&view);
            self.finish_commands(&view);
            // Announce locally.
            self.publish(&view, local_quorate);
            self.notify_systemd(&view);
        }
    }

    /// Feeds corosync's events to the view in the order corosync delivered them.
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
                    if let Some(votes) = cs.votes_within(&nodes, crate::corosync::CALL_BUDGET).await {
                        self.votes = Some(votes);
                    }
                    view.set_local_quorum(quorate, Some(ring), nodes)
                }
                CorosyncEvent::Confchg { members, left, joined } => {
                    info!(members = ?members, left = ?left, joined = ?joined, "CPG membership changed");
                    self.changed_at = Some(batch);
                    // Corosync applies a loss of members to quorum before it delivers the CPG
                    // change, though its notification may reach us later: read it now, so the
                    // fact we announce in the new configuration is not the old one.
                    // Unanswered in time: the fact stays "not known yet" until the notification.
                    let mut outputs = match cs.quorate_within(crate::corosync::CALL_BUDGET).await {
                        Some(now_quorate) => {
                            if !now_quorate {
                                *local_quorate = false;
                            }
                            view.note_quorate_now(now_quorate)
                        }
                        None => {
                            warn!("corosync did not say within {:?} whether it is quorate; waiting for its notification", crate::corosync::CALL_BUDGET);
                            Vec::new()
                        }
                    };
                    outputs.extend(view.handle(Event::Confchg { members, left, joined }));
                    self.after(self.config.cluster.sync_timeout, TaskResult::SyncTimeout(view.config()));
                    outputs
                }
                CorosyncEvent::Totem { ring, nodes } => {
                    debug!(ring = %ring, nodes = ?nodes, "totem membership changed");
                    let mut outputs = view.handle(Event::Totem { ring, nodes });
                    for member in view.vanished_on_gone_nodes() {
                        info!(member = %member, "the node of a vanished daemon left the membership; peers take over");
                        outputs.push(Output::Send(Body::GraceExpired { member, node_down: true }));
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

    /// Carries out what the view decided: messages to send, graces to time, elections to time.
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
                    unit,
                    holder,
                    generation,
                    previous,
                    verified_before,
                    fences,
                } => {
                    let instance = view.info(&holder).map(|i| i.instance_id.clone()).unwrap_or_default();
                    // Every member logs the same: whether this takeover fences is agreed.
                    let fence: Vec<String> = fences
                        .iter()
                        .filter(|_| self.config.fencing.stop_instance)
                        .map(|f| f.target.instance_id.clone().unwrap_or_else(|| f.target.member.to_string()))
                        .collect();
                    info!(resource = %unit, node = holder.node, instance = %instance, generation, previous = ?previous.map(|p| p.to_string()), fence = ?fence, "holder elected");
                    if holder == view.local() {
                        let elsewhere = previous.is_some_and(|p| p.node != holder.node);
                        for (name, local) in self.resources.iter_mut().filter(|(_, r)| r.unit == unit) {
                            let before = verified_before.iter().find(|h| h.resource == *name).filter(|_| elsewhere);
                            local.pending_timeline = Some(PendingTimeline {
                                held_elsewhere: before.is_some(),
                                epoch_elsewhere: before.and_then(|h| h.epoch).filter(|e| *e <= wire::MAX_EPOCH),
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

    /// Results of background tasks and timers: `first`, then whatever else is ready, up to
    /// `RESULTS_PER_STEP`. The acquisitions of one failover end together; taking their results
    /// in one step announces them at once and runs the step's reconcile and status once,
    /// rather than once per address while the others wait.
    async fn on_results(&mut self, cs: &Corosync, view: &mut View, first: TaskResult) -> Result<(), CorosyncError> {
        self.on_result(cs, view, first).await?;
        for _ in 1..RESULTS_PER_STEP {
            match self.results_rx.try_recv() {
                Ok(next) => self.on_result(cs, view, next).await?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Results of background tasks and timers.
    async fn on_result(&mut self, cs: &Corosync, view: &mut View, result: TaskResult) -> Result<(), CorosyncError> {
        match result {
            TaskResult::Acquired {
                resource,
                generation,
                acquired,
                fenced,
            } => self.on_acquired(cs, view, &resource, generation, acquired, fenced).await?,
            TaskResult::NotAcquired {
                resource,
                generation,
                error,
            } => self.on_not_acquired(cs, view, &resource, generation, error).await?,
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
                    // Its node may have left meanwhile: then the takeover fences it.
                    let node_down = view.outside_membership(member.node);
                    info!(member = %member, node_down, "reattach grace expired; peers take over");
                    cs.send(&wire::encode(&Body::GraceExpired { member, node_down })).await?;
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
            TaskResult::Permissions(failing) => self.on_permissions(cs, view, failing).await?,
            TaskResult::Warnings(found) => {
                for w in found {
                    if !self.warnings.contains(&w) {
                        self.warnings.push(w);
                    }
                }
            }
            TaskResult::AwsEvents(seen) => self.on_aws_events(cs, view, seen).await?,
            TaskResult::ReloadLookedUp(looked_up) => self.reload_looked_up(looked_up),
            TaskResult::Monitored(seen) => {
                self.monitor_running = false;
                self.check_drift(view, &seen);
            }
        }
        Ok(())
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
        let quorum_pending = view.quorum_pending() && local_quorate;
        let fencing = self.config.fencing.stop_instance;
        // Only corosync's two_node makes both halves of a split quorate, each able to fence
        // the other; elsewhere a lone survivor with the higher id need not wait. Unknown
        // (votequorum did not answer): wait, as the agreed table suggests.
        let two_node = self.votes.is_none_or(|v| v.two_node);
        let now = Instant::now();
        let names: Vec<String> = self.resources.keys().cloned().collect();
        for name in names {
            let Some(local) = self.resources.get_mut(&name) else { continue };
            let facts = holder::Facts {
                wanted: ours.get(&local.unit).copied(),
                may_act,
                quorate,
                quorum_pending,
                synced: view.is_synced(),
            };
            if facts.wanted.is_none() {
                local.pending_timeline = None;
            }
            local.fences = if fencing && facts.wanted.is_some() {
                let mut fences = view.fences(&local.unit);
                for f in &mut fences {
                    f.delayed &= two_node;
                }
                fences
            } else {
                Vec::new()
            };
            let effects = local.holding.reconcile(facts, now);
            self.apply_effects(&name, effects);
        }
    }

    /// Sends `result` to the loop after `wait`.
    fn after(&self, wait: Duration, result: TaskResult) {
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(result);
        });
    }

    /// On a cluster's first start, placement waits for every node's daemon (at most
    /// `startup_wait`).
    fn arm_startup_timer(&mut self, view: &View) {
        if !self.startup_timer_armed && view.awaiting_startup() {
            self.startup_timer_armed = true;
            let wait_ms = self.config.cluster.startup_wait.as_millis() as u64;
            if view.unconfirmed() {
                info!(wait_ms, "table kept across a reload or a lost corosync connection: waiting for the daemons of all corosync nodes before anyone moves an address (one of them may know newer holders)");
            } else {
                info!(wait_ms, "waiting for the daemons of all corosync nodes before the first placement");
            }
            self.after(self.config.cluster.startup_wait, TaskResult::StartupWaitOver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{raise, Signal as Sig};

    #[tokio::test]
    async fn a_reload_asked_while_there_is_no_session_is_kept_for_the_next_one() {
        let mut signals = Signals::install().expect("signal handlers");
        raise(Sig::SIGHUP).expect("raise SIGHUP");
        // Waiting for a stop does not end on a reload, and does not drop it either.
        assert!(tokio::time::timeout(Duration::from_millis(300), signals.stopped()).await.is_err());
        assert_eq!(signals.recv().await, Asked::Reload);
        raise(Sig::SIGTERM).expect("raise SIGTERM");
        let asked = tokio::time::timeout(Duration::from_secs(5), signals.recv()).await;
        assert_eq!(asked, Ok(Asked::Stop));
    }
}

/// This machine's hostname, as admins see it in their prompt (None when unreadable).
fn local_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name.len() <= 255).then(|| name.to_owned())
}
