//! Adapter for corosync's CPG and quorum services (through rust-corosync).
//!
//! rust-corosync takes plain `fn` callbacks, so they push into a process-wide buffer that
//! [`Corosync::next_events`] drains right after dispatching; dispatch runs on the caller's task,
//! so events come out in exactly the order corosync delivered them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use rust_corosync::{cmap, cpg, quorum, votequorum, CsError, DispatchFlags, NodeId, TrackFlags};
use tokio::io::unix::AsyncFd;

use crate::core::view::LeaveReason;
use crate::core::{MemberId, Ring};

/// Why the daemon's corosync connection failed or died: it then stops acting, drops its
/// local addresses and reconnects with backoff.
#[derive(Debug, thiserror::Error)]
pub enum CorosyncError {
    /// Corosync refused a library call (not running, not ready, or it evicted us).
    #[error("corosync {call} failed: {error}")]
    Call {
        /// The library function, e.g. `cpg_join`, so the log names what failed.
        call: &'static str,
        /// What corosync answered.
        error: CsError,
    },
    /// The connection's descriptor could not be watched, so nothing more would be heard.
    #[error("cannot watch the corosync connection: {0}")]
    Poll(std::io::Error),
}

fn call_err(call: &'static str) -> impl Fn(CsError) -> CorosyncError {
    move |error| CorosyncError::Call { call, error }
}

/// One piece of news from corosync, handed to the daemon in the order corosync delivered it.
#[derive(Debug, Clone)]
pub enum CorosyncEvent {
    /// The CPG group's membership changed: daemons joined, left or vanished.
    Confchg {
        /// Every daemon in the group after the change.
        members: Vec<MemberId>,
        /// Daemons gone, and whether their node left too (take over at once) or only the process.
        left: Vec<(MemberId, LeaveReason)>,
        /// Daemons new in the group; their arrival starts a sync round.
        joined: Vec<MemberId>,
    },
    /// A message a member multicast to the group, still encoded.
    Deliver {
        /// The sending daemon.
        from: MemberId,
        /// The wire message as sent, decoded by the daemon.
        bytes: Vec<u8>,
    },
    /// The node-level (totem) membership changed; reported apart from the CPG change.
    Totem {
        /// The new ring, which quorum facts are matched against.
        ring: Ring,
        /// Corosync node ids in the new ring.
        nodes: Vec<u32>,
    },
    /// Corosync's quorum service reported, on its own schedule, for some ring.
    Quorum {
        /// Whether this node's partition has quorum by corosync's count.
        quorate: bool,
        /// The ring this report belongs to; a report for an older ring is not trusted.
        ring: Ring,
        /// Corosync node ids the quorum service counts in that ring.
        nodes: Vec<u32>,
    },
}

static PENDING: Mutex<Vec<CorosyncEvent>> = Mutex::new(Vec::new());

/// Votequorum's arithmetic on this node, shown in `status` so an operator sees how close the
/// partition is to losing quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Votes {
    /// Votes the cluster expects in total.
    pub expected: u32,
    /// Votes present in this partition, qdevice included.
    pub present: u32,
    /// Votes needed for quorum.
    pub needed: u32,
    /// corosync's `quorum.two_node` is on: a split leaves both halves quorate.
    #[serde(default)]
    pub two_node: bool,
}

fn push(event: CorosyncEvent) {
    // A poisoned lock only means a previous callback panicked; the Vec is still usable.
    PENDING.lock().unwrap_or_else(|p| p.into_inner()).push(event);
}

fn member(a: &cpg::Address) -> MemberId {
    MemberId {
        node: u32::from(a.nodeid),
        pid: a.pid,
    }
}

fn on_deliver(_h: &cpg::Handle, _group: String, nodeid: NodeId, pid: u32, msg: &[u8], _len: usize) {
    push(CorosyncEvent::Deliver {
        from: MemberId {
            node: u32::from(nodeid),
            pid,
        },
        bytes: msg.to_vec(),
    });
}

fn on_confchg(
    _h: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    push(CorosyncEvent::Confchg {
        members: members.iter().map(member).collect(),
        left: left
            .iter()
            .map(|a| {
                let reason = match a.reason {
                    cpg::Reason::NodeDown => LeaveReason::NodeDown,
                    _ => LeaveReason::ProcessGone,
                };
                (member(a), reason)
            })
            .collect(),
        joined: joined.iter().map(member).collect(),
    });
}

fn on_totem(_h: &cpg::Handle, ring: cpg::RingId, nodes: Vec<NodeId>) {
    push(CorosyncEvent::Totem {
        ring: Ring {
            rep: u32::from(ring.nodeid),
            seq: ring.seq,
        },
        nodes: nodes.into_iter().map(u32::from).collect(),
    });
}

fn on_quorum(_h: &quorum::Handle, quorate: bool, ring: quorum::RingId, members: Vec<NodeId>) {
    push(CorosyncEvent::Quorum {
        quorate,
        ring: Ring {
            rep: u32::from(ring.nodeid),
            seq: ring.seq,
        },
        nodes: members.into_iter().map(u32::from).collect(),
    });
}

/// A quorum connection of its own, for the synchronous "still quorate?" question asked right
/// before every mutating EC2 call, from whichever task makes the call. Kept apart from the
/// tracking connection, whose notifications the main loop dispatches.
pub struct QuorumProbe {
    handle: Mutex<quorum::Handle>,
}

impl QuorumProbe {
    fn connect() -> Result<QuorumProbe, CorosyncError> {
        let model = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: None,
            nodelist_notification_fn: None,
        });
        let (handle, _) = quorum::initialize(&model, 0).map_err(call_err("quorum_initialize"))?;
        Ok(QuorumProbe {
            handle: Mutex::new(handle),
        })
    }

    /// Corosync's quorum at this instant; an error (corosync gone) counts as not quorate, and
    /// so does a question already waiting for corosync's answer on another thread. Called from
    /// tasks on the daemon's single runtime thread: waiting for that other thread's lock would
    /// freeze the whole daemon for as long as corosync does not answer it.
    pub fn quorate(&self) -> bool {
        self.try_quorate() == Some(true)
    }

    /// `quorate`, or None at once while another caller is still waiting for corosync (so a
    /// corosync that stopped answering does not collect a queue of blocked threads).
    fn try_quorate(&self) -> Option<bool> {
        let handle = match self.handle.try_lock() {
            Ok(h) => h,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(quorum::getquorate(&handle).unwrap_or(false))
    }
}

/// How long the event loop waits for an answer to a synchronous corosync call. Corosync answers
/// library calls late while its main process is starved or its ring re-forms (seen for 20 s on
/// a 16-node lab); the loop must keep delivering messages and pinging the watchdog meanwhile,
/// and corosync's notification brings the same fact later.
pub const CALL_BUDGET: Duration = Duration::from_millis(500);

/// How long a multicast waits out corosync's TryAgain before the connection counts as lost
/// (well inside the watchdog's half period, so a waiting send never trips it).
pub const SEND_PATIENCE: Duration = Duration::from_secs(10);

/// Votes from votequorum's per-node info (one call per node: a blocking thread's work).
fn votes_of(handle: &votequorum::Handle, local: u32, nodes: &[u32]) -> Option<Votes> {
    let me = votequorum::get_info(handle, NodeId::from(local)).ok()?;
    let present = nodes
        .iter()
        .filter_map(|n| votequorum::get_info(handle, NodeId::from(*n)).ok())
        .map(|i| i.node_votes)
        .sum::<u32>()
        + me.qdevice_votes;
    Some(Votes {
        expected: me.highest_expected.max(me.node_expected_votes),
        present,
        needed: me.quorum,
        two_node: me.flags.contains(votequorum::NodeInfoFlags::VOTEQUORUM_INFO_TWONODE),
    })
}

struct Fd(RawFd);
impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A live connection: joined to the group and tracking quorum.
pub struct Corosync {
    // Declared first so the fds are deregistered before the handles (which own them) finalize.
    cpg_fd: AsyncFd<Fd>,
    quorum_fd: AsyncFd<Fd>,
    cpg: cpg::Handle,
    quorum: quorum::Handle,
    /// For vote counts in status only; the daemon works without it. Shared with the blocking
    /// thread that asks it (see `votes_within`); the lock keeps one call in flight.
    votequorum: Option<std::sync::Arc<Mutex<votequorum::Handle>>>,
    group: String,
    local: MemberId,
    initially_quorate: bool,
    initial_ring: Option<Ring>,
    initial_nodes: Vec<u32>,
    probe: std::sync::Arc<QuorumProbe>,
    node_name: Option<String>,
}

impl Corosync {
    /// Connects to CPG and quorum, reads the current quorum and node list, and joins `group`
    /// (the `[cluster] group` every node's daemon shares).
    pub fn connect(group: &str) -> Result<Corosync, CorosyncError> {
        PENDING.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_confchg),
            totem_confchg_fn: Some(on_totem),
        });
        let cpg = cpg::initialize(&model, 0).map_err(call_err("cpg_initialize"))?;
        let node = cpg::local_get(&cpg).map_err(call_err("cpg_local_get"))?;
        let qmodel = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(on_quorum),
            nodelist_notification_fn: None,
        });
        let (quorum, _) = quorum::initialize(&qmodel, 0).map_err(call_err("quorum_initialize"))?;
        // Read quorum and the corosync node list before joining: our first State carries them.
        quorum::trackstart(&quorum, TrackFlags::Current).map_err(call_err("quorum_trackstart"))?;
        quorum::dispatch(&quorum, DispatchFlags::One).map_err(call_err("quorum_dispatch"))?;
        let mut initial_nodes = Vec::new();
        let mut initial_ring = None;
        for event in std::mem::take(&mut *PENDING.lock().unwrap_or_else(|p| p.into_inner())) {
            if let CorosyncEvent::Quorum { nodes, ring, .. } = event {
                initial_nodes = nodes;
                initial_ring = Some(ring);
            }
        }
        let probe = std::sync::Arc::new(QuorumProbe::connect()?);
        quorum::trackstart(&quorum, TrackFlags::Changes).map_err(call_err("quorum_trackstart"))?;
        let initially_quorate = quorum::getquorate(&quorum).map_err(call_err("quorum_getquorate"))?;
        let cpg_fd = cpg::fd_get(&cpg).map_err(call_err("cpg_fd_get"))?;
        let quorum_fd = quorum::fd_get(&quorum).map_err(call_err("quorum_fd_get"))?;
        cpg::join(&cpg, group).map_err(call_err("cpg_join"))?;
        let readable = tokio::io::Interest::READABLE;
        // SAFETY: both fds belong to the handles stored beside them, which outlive the AsyncFds
        // (field order drops the AsyncFds first) and never swap their descriptor.
        let (cpg_fd, quorum_fd) = unsafe {
            (
                AsyncFd::register_with_interest(Fd(cpg_fd), readable).map_err(|e| CorosyncError::Poll(e.into()))?,
                AsyncFd::register_with_interest(Fd(quorum_fd), readable).map_err(|e| CorosyncError::Poll(e.into()))?,
            )
        };
        let votequorum = votequorum::initialize(&votequorum::Callbacks {
            quorum_notification_fn: None,
            nodelist_notification_fn: None,
            expectedvotes_notification_fn: None,
        })
        .ok()
        .map(|h| std::sync::Arc::new(Mutex::new(h)));
        Ok(Corosync {
            cpg_fd,
            quorum_fd,
            cpg,
            quorum,
            votequorum,
            group: group.to_owned(),
            local: MemberId {
                node: u32::from(node),
                pid: std::process::id(),
            },
            initially_quorate,
            initial_ring,
            initial_nodes,
            probe,
            node_name: nodelist_name(u32::from(node)),
        })
    }

    /// This node's `name` in corosync.conf's nodelist, read at connect.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// The ring of the quorum state read at connect.
    pub fn initial_ring(&self) -> Option<Ring> {
        self.initial_ring
    }

    /// The synchronous quorum check, shareable with the tasks that write to EC2.
    pub fn probe(&self) -> std::sync::Arc<QuorumProbe> {
        self.probe.clone()
    }

    /// This daemon as the group knows it: corosync node id and our pid.
    pub fn local(&self) -> MemberId {
        self.local
    }

    /// Corosync's quorum when we connected: the fact our first announcement carries.
    pub fn initially_quorate(&self) -> bool {
        self.initially_quorate
    }

    /// Corosync nodes in the quorum membership when we connected.
    pub fn initial_nodes(&self) -> &[u32] {
        &self.initial_nodes
    }

    /// Votes as votequorum counts them: expected, present (of `nodes`), needed for quorum.
    /// Asked off the event loop and bounded by `budget` (see [`CALL_BUDGET`]); None when
    /// votequorum is not there, did not answer in time, or a previous ask is still waiting.
    pub async fn votes_within(&self, nodes: &[u32], budget: Duration) -> Option<Votes> {
        let handle = self.votequorum.clone()?;
        let local = self.local.node;
        let nodes = nodes.to_vec();
        let ask = tokio::task::spawn_blocking(move || {
            let handle = handle.try_lock().ok()?;
            votes_of(&handle, local, &nodes)
        });
        tokio::time::timeout(budget, ask).await.ok()?.ok()?
    }

    /// Quorum as corosync sees it now, asked off the event loop and bounded by `budget`; None
    /// when corosync did not answer in time or a previous ask is still waiting for it.
    pub async fn quorate_within(&self, budget: Duration) -> Option<bool> {
        let probe = self.probe.clone();
        let ask = tokio::task::spawn_blocking(move || probe.try_quorate());
        tokio::time::timeout(budget, ask).await.ok()?.ok()?
    }

    /// Waits for corosync to have something for us and returns it in delivery order. An error
    /// means the connection is dead (corosync stopped or we were evicted).
    pub async fn next_events(&mut self) -> Result<Vec<CorosyncEvent>, CorosyncError> {
        loop {
            tokio::select! {
                biased;
                // Quorum first: when both are ready, our State/decisions should see fresh quorum.
                guard = self.quorum_fd.readable() => {
                    let mut guard = guard.map_err(CorosyncError::Poll)?;
                    quorum::dispatch(&self.quorum, DispatchFlags::All).map_err(call_err("quorum_dispatch"))?;
                    guard.clear_ready();
                }
                guard = self.cpg_fd.readable() => {
                    let mut guard = guard.map_err(CorosyncError::Poll)?;
                    cpg::dispatch(&self.cpg, DispatchFlags::All).map_err(call_err("cpg_dispatch"))?;
                    guard.clear_ready();
                }
            }
            let events = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|p| p.into_inner()));
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Multicasts in agreed order. TryAgain (flow control, or corosync re-forming its ring,
    /// which on a loaded 3-node lab took 0.7 s) is waited out for up to [`SEND_PATIENCE`]:
    /// giving up sooner drops the connection in the middle of every slow membership change.
    pub async fn send(&self, bytes: &[u8]) -> Result<(), CorosyncError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match cpg::mcast_joined(&self.cpg, cpg::Guarantee::TypeAgreed, bytes) {
                Ok(()) => return Ok(()),
                Err(CsError::CsErrTryAgain) if started.elapsed() < SEND_PATIENCE => {
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2).min(Duration::from_millis(100));
                }
                Err(error) => return Err(CorosyncError::Call { call: "cpg_mcast_joined", error }),
            }
        }
    }

    /// Planned leave: peers see a Leave, not a crash.
    pub fn leave(self) {
        if let Err(error) = cpg::leave(&self.cpg, &self.group) {
            tracing::debug!(%error, "cpg_leave failed; finalizing anyway");
        }
    }
}

/// A corosync library call that failed while gathering [`CorosyncFacts`], named the way
/// corosync's own tools name it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {error}")]
pub struct CallFailed {
    /// The library function, e.g. `cpg_initialize`.
    pub call: &'static str,
    /// What corosync answered.
    pub error: CsError,
}

/// What corosync says about its own health and tuning, read once: the pre-flight check judges
/// these facts without talking to corosync itself.
#[derive(Debug, Clone)]
pub struct CorosyncFacts {
    /// The local node id, proving corosync runs and its CPG answers.
    pub cpg: Result<u32, CallFailed>,
    /// Not read when CPG is unreachable.
    pub quorate: Option<Result<bool, CallFailed>>,
    /// `runtime.config.totem.token` (ms).
    pub token: Option<u64>,
    /// `runtime.config.totem.consensus` (ms).
    pub consensus: Option<u64>,
    /// nodelist: node id → name (else ring0 address)
    pub nodelist: BTreeMap<u32, String>,
    /// runtime.members.<id>.status == joined
    pub members: BTreeSet<u32>,
    /// Why some of the cmap values above are missing.
    pub cmap_error: Option<CallFailed>,
}

/// Why [`facts_within`] has no facts.
#[derive(Debug, thiserror::Error)]
pub enum FactsUnavailable {
    /// The reading thread could not be started (resource limits).
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// corosync did not answer within the budget: hung or overloaded.
    #[error("no answer from corosync's IPC within {0:?}")]
    Timeout(Duration),
}

fn data_u64(d: &cmap::Data) -> Option<u64> {
    use cmap::Data;
    match d {
        Data::UInt8(v) => Some(u64::from(*v)),
        Data::UInt16(v) => Some(u64::from(*v)),
        Data::UInt32(v) => Some(u64::from(*v)),
        Data::UInt64(v) => Some(*v),
        Data::Int8(v) => u64::try_from(*v).ok(),
        Data::Int16(v) => u64::try_from(*v).ok(),
        Data::Int32(v) => u64::try_from(*v).ok(),
        Data::Int64(v) => u64::try_from(*v).ok(),
        Data::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn data_string(d: &cmap::Data) -> Option<String> {
    match d {
        cmap::Data::String(s) => Some(s.trim_end_matches('\0').to_string()),
        other => data_u64(other).map(|v| v.to_string()),
    }
}

/// `(index, field)` of each key under `prefix` in cmap, with its value; bounded so a broken
/// cmap cannot keep us iterating.
fn cmap_fields(
    handle: &cmap::Handle,
    prefix: &str,
    mut each: impl FnMut(&str, &str, &cmap::Data),
) -> Result<(), CsError> {
    for e in cmap::CmapIterStart::new(handle, prefix)?.into_iter().take(4096) {
        let key = e.key_name();
        let Some((index, field)) = key.strip_prefix(prefix).and_then(|rest| rest.split_once('.')) else {
            continue;
        };
        each(index, field, e.data());
    }
    Ok(())
}

/// The nodelist `name` of node `id`, through a short-lived cmap connection; None when the
/// nodelist gives it no name (or cmap does not answer).
fn nodelist_name(id: u32) -> Option<String> {
    let h = cmap::initialize(cmap::Map::Icmap).ok()?;
    let nodes = nodelist(&h);
    let _ = cmap::finalize(&h);
    nodes
        .ok()?
        .into_iter()
        .find(|n| n.nodeid == Some(id))
        .and_then(|n| n.name)
        .filter(|n| !n.is_empty() && n.len() <= 255)
}

/// One `nodelist.node.N` entry of cmap.
struct NodelistEntry {
    nodeid: Option<u32>,
    name: Option<String>,
    ring0_addr: Option<String>,
}

/// Every nodelist entry of cmap, in index order.
fn nodelist(h: &cmap::Handle) -> Result<Vec<NodelistEntry>, CsError> {
    let mut nodes: BTreeMap<String, NodelistEntry> = BTreeMap::new();
    cmap_fields(h, "nodelist.node.", |index, field, data| {
        let entry = nodes.entry(index.to_string()).or_insert(NodelistEntry {
            nodeid: None,
            name: None,
            ring0_addr: None,
        });
        match field {
            "nodeid" => entry.nodeid = data_u64(data).and_then(|v| u32::try_from(v).ok()),
            "name" => entry.name = data_string(data),
            "ring0_addr" => entry.ring0_addr = data_string(data),
            _ => {}
        }
    })?;
    Ok(nodes.into_values().collect())
}

/// Reads [`CorosyncFacts`] through short-lived connections. Blocks (the library calls do), and
/// stops at the first missing service: without CPG nothing else is worth asking.
pub fn read_facts() -> CorosyncFacts {
    let mut facts = CorosyncFacts {
        cpg: Ok(0),
        quorate: None,
        token: None,
        consensus: None,
        nodelist: BTreeMap::new(),
        members: BTreeSet::new(),
        cmap_error: None,
    };
    let failed = |call: &'static str| move |error| CallFailed { call, error };
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: None,
        confchg_fn: None,
        totem_confchg_fn: None,
    });
    facts.cpg = match cpg::initialize(&model, 0) {
        Ok(h) => {
            let r = cpg::local_get(&h).map(u32::from).map_err(failed("cpg_local_get"));
            let _ = cpg::finalize(&h);
            r
        }
        Err(e) => Err(failed("cpg_initialize")(e)),
    };
    if facts.cpg.is_err() {
        return facts;
    }
    let qmodel = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: None,
        nodelist_notification_fn: None,
    });
    facts.quorate = Some(match quorum::initialize(&qmodel, 0) {
        Ok((h, _)) => {
            let r = quorum::getquorate(&h).map_err(failed("quorum_getquorate"));
            let _ = quorum::finalize(&h);
            r
        }
        Err(e) => Err(failed("quorum_initialize")(e)),
    });
    let h = match cmap::initialize(cmap::Map::Icmap) {
        Ok(h) => h,
        Err(e) => {
            facts.cmap_error = Some(failed("cmap_initialize")(e));
            return facts;
        }
    };
    let value = |key: &str| cmap::get(&h, key).ok().as_ref().and_then(data_u64);
    facts.token = value("runtime.config.totem.token");
    facts.consensus = value("runtime.config.totem.consensus");
    match nodelist(&h) {
        Ok(nodes) => {
            for n in nodes {
                if let Some(id) = n.nodeid {
                    let label = n.name.or(n.ring0_addr).unwrap_or_else(|| format!("node {id}"));
                    facts.nodelist.insert(id, label);
                }
            }
        }
        Err(e) => facts.cmap_error = Some(failed("cmap nodelist")(e)),
    }
    let mut members = BTreeSet::new();
    let joined = cmap_fields(&h, "runtime.members.", |id, field, data| {
        if field == "status" && data_string(data).as_deref() == Some("joined") {
            if let Ok(id) = id.parse() {
                members.insert(id);
            }
        }
    });
    facts.members = members;
    if let Err(e) = joined {
        facts.cmap_error = Some(failed("cmap runtime.members")(e));
    }
    let _ = cmap::finalize(&h);
    facts
}

/// [`read_facts`] bounded in time: a hung corosync blocks its IPC calls forever.
pub async fn facts_within(budget: Duration) -> Result<CorosyncFacts, FactsUnavailable> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread, not spawn_blocking: a hung corosync must not keep the runtime from
    // shutting down.
    std::thread::Builder::new()
        .name("check-corosync".into())
        .spawn(move || {
            let _ = tx.send(read_facts());
        })
        .map_err(FactsUnavailable::Thread)?;
    match tokio::time::timeout(budget, rx).await {
        Ok(Ok(facts)) => Ok(facts),
        _ => Err(FactsUnavailable::Timeout(budget)),
    }
}
