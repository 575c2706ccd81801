//! Fencing of a departed holder (`[fencing] stop_instance`): before it moves anything, the
//! successor of a holder whose node left the corosync membership stops that node's instance
//! and waits until EC2 shows it stopping or stopped, as Pacemaker's `fence_aws` does.
//!
//! The pure core decides *whether* a takeover fences (`core::view::Fence`, from agreed inputs:
//! a node loss, or a reattach grace that ended because the node left, never a planned release
//! or a daemon that died on a live node). This module only carries it out:
//!
//! 1. the target already stopping, stopped or gone: nothing to stop (a later retry or another
//!    address of the same departure never stops it twice);
//! 2. the higher node id of a lone survivor waits `[fencing] delay` (see `Fence::delayed`);
//! 3. the race check: our own instance must be `running`, or the other side is fencing us and
//!    we fence nobody;
//! 4. `StopInstances` with `Force` and `SkipOsShutdown`, through the write gate like every
//!    mutating call;
//! 5. DescribeInstances with backoff until the target is `stopping`/`stopped` (or
//!    `shutting-down`/`terminated`), at most `[fencing] timeout`.
//!
//! Any failure leaves every address where it is: the acquisition fails with a class that never
//! hands the unit over (`kinds::AcquireError::Fence`), and the holder retries with backoff.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use crate::config::FencingConfig;
use crate::core::reconcile::backoff;
use crate::core::view::Fence;
use crate::ec2::{Ec2, Ec2Error, ErrorClass, SharedGate};

/// States in which an instance runs nothing any more, or is about to: the fence is done.
const DOWN: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// Budget of one read or one StopInstances (their retries of transient errors included).
const CALL_BUDGET: Duration = Duration::from_secs(10);

/// Why a fence failed. None of these moves an address.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FenceError {
    /// No member ever learnt the departed node's instance.
    #[error("cannot fence node {node}: no member of the partition knows its instance")]
    UnknownInstance {
        /// The departed corosync node.
        node: u32,
    },
    /// The target is this node's own instance (two nodes configured with one instance id).
    #[error("refusing to fence {instance} of node {node}: it is this node's own instance")]
    OwnInstance {
        /// The departed corosync node.
        node: u32,
        /// Our instance, named by the departed node too.
        instance: String,
    },
    /// The race check failed: our own instance is not `running`.
    #[error("not fencing {target}: this node's own instance {own} is {state}, not running (the other node may be fencing it)")]
    NotRunning {
        /// The instance we would have stopped.
        target: String,
        /// Our instance.
        own: String,
        /// What EC2 said about it.
        state: String,
    },
    /// An EC2 call failed (denied, unreachable, refused, or the write gate closed).
    #[error("fencing {instance}: EC2 {} failed: {}", .source.api, .source.summary())]
    Ec2 {
        /// The instance being fenced.
        instance: String,
        /// The failed call.
        #[source]
        source: Ec2Error,
    },
    /// EC2 accepted the stop but never showed the instance stopping within the timeout.
    #[error("fencing {instance}: EC2 still shows it {state} {waited_ms} ms after StopInstances ([fencing] timeout)")]
    Timeout {
        /// The instance being fenced.
        instance: String,
        /// Its last state seen.
        state: String,
        /// How long we waited.
        waited_ms: u64,
    },
}

impl FenceError {
    /// The write gate closed before StopInstances: we are no longer the holder, nothing failed.
    pub fn cancelled(&self) -> bool {
        matches!(self, FenceError::Ec2 { source, .. } if source.class == ErrorClass::Cancelled)
    }
}

/// A fence that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced {
    /// This call sent StopInstances (false: the instance was already down).
    pub stop_sent: bool,
    /// When EC2 first showed the instance down.
    pub done: Instant,
}

/// The last fence this node carried out, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceRecord {
    /// The departed corosync node.
    pub node_id: u32,
    /// Its instance, when known.
    pub instance_id: Option<String>,
    /// `stopped` (we stopped it), `already_down` (EC2 showed it down before we asked) or
    /// `failed`.
    pub result: &'static str,
    /// The error of a failed fence.
    pub error: Option<String>,
    /// Milliseconds from the start of the fence to its end (the delay included).
    pub ms: u64,
    /// When it ended.
    pub at: SystemTime,
}

/// Carries out fences for this node; shared by all acquisitions, so that the addresses of one
/// departed node are fenced by one StopInstances.
pub struct Fencer {
    ec2: Ec2,
    own_instance: String,
    config: FencingConfig,
    /// One lock per target instance: concurrent acquisitions for one departure take turns,
    /// and the ones after the first find the instance down.
    locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    last: Mutex<Option<FenceRecord>>,
}

impl Fencer {
    /// A fencer acting with `ec2` for this node's instance `own_instance`.
    pub fn new(ec2: Ec2, own_instance: String, config: FencingConfig) -> Fencer {
        Fencer {
            ec2,
            own_instance,
            config,
            locks: Mutex::new(BTreeMap::new()),
            last: Mutex::new(None),
        }
    }

    /// The last fence carried out on this node, for status.
    pub fn last(&self) -> Option<FenceRecord> {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops the departed holder named by `fence` and waits until EC2 shows it down. `gate` is
    /// the acquisition's write gate: StopInstances is sent only while it is open.
    pub async fn fence(&self, fence: &Fence, gate: &SharedGate) -> Result<Fenced, FenceError> {
        let started = Instant::now();
        let node = fence.target.member.node;
        let outcome = self.run(fence, gate, started).await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let record = |result: &'static str, error: Option<String>| FenceRecord {
            node_id: node,
            instance_id: fence.target.instance_id.clone(),
            result,
            error,
            ms,
            at: SystemTime::now(),
        };
        let instance = fence.target.instance_id.as_deref().unwrap_or("?");
        match &outcome {
            Ok(f) if f.stop_sent => {
                info!(node, instance, fence_ms = ms, delayed = fence.delayed, "fenced the departed holder: EC2 shows its instance stopping");
                self.remember(record("stopped", None));
            }
            Ok(_) => {
                info!(node, instance, fence_ms = ms, "departed holder's instance already down; no StopInstances needed");
                if self.last().is_none_or(|l| l.instance_id != fence.target.instance_id || l.result == "failed") {
                    self.remember(record("already_down", None));
                }
            }
            Err(e) if e.cancelled() => {}
            Err(e) => {
                error!(node, instance, fence_ms = ms, error = %e, "fence failed: the addresses stay where they are");
                self.remember(record("failed", Some(e.to_string())));
            }
        }
        outcome
    }

    fn remember(&self, record: FenceRecord) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(record);
        }
    }

    async fn run(&self, fence: &Fence, gate: &SharedGate, started: Instant) -> Result<Fenced, FenceError> {
        let node = fence.target.member.node;
        let Some(target) = fence.target.instance_id.clone() else {
            return Err(FenceError::UnknownInstance { node });
        };
        if target == self.own_instance {
            return Err(FenceError::OwnInstance { node, instance: target });
        }
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(target.clone()).or_default().clone()
        };
        let _turn = lock.lock().await;
        let ec2_err = |source: Ec2Error| FenceError::Ec2 {
            instance: target.clone(),
            source,
        };
        let already_down = || Fenced {
            stop_sent: false,
            done: Instant::now(),
        };
        if is_down(self.ec2.instance_state(&target, CALL_BUDGET).await.map_err(ec2_err)?.as_deref()) {
            return Ok(already_down());
        }
        if fence.delayed && !self.config.delay.is_zero() {
            info!(node, instance = %target, delay_ms = self.config.delay.as_millis() as u64, "two_node, alone, with the higher node id: waiting before fencing, so a split two-node cluster does not fence both ways");
            tokio::time::sleep(self.config.delay).await;
            // The other side may have fenced it meanwhile (it cannot have: it would have
            // fenced us), or the node may have been stopped by an admin.
            if is_down(self.ec2.instance_state(&target, CALL_BUDGET).await.map_err(ec2_err)?.as_deref()) {
                return Ok(already_down());
            }
        }
        let own = self.ec2.instance_state(&self.own_instance, CALL_BUDGET).await.map_err(ec2_err)?;
        if own.as_deref() != Some("running") {
            return Err(FenceError::NotRunning {
                target,
                own: self.own_instance.clone(),
                state: own.unwrap_or_else(|| "unknown to EC2".into()),
            });
        }
        info!(node, instance = %target, "fencing the departed holder: StopInstances (force, skip OS shutdown)");
        self.ec2.stop_instance(&target, CALL_BUDGET, gate.as_ref()).await.map_err(ec2_err)?;
        let stop_sent = Instant::now();
        let mut attempt = 0;
        loop {
            let state = match self.ec2.instance_state(&target, CALL_BUDGET).await {
                Ok(state) => state,
                // A read that fails is not a stop that failed: keep asking within the timeout.
                Err(e) if e.class == ErrorClass::Transient => Some(format!("unknown ({})", e.summary())),
                Err(e) => return Err(ec2_err(e)),
            };
            if is_down(state.as_deref()) {
                return Ok(Fenced {
                    stop_sent: true,
                    done: Instant::now(),
                });
            }
            let waited = stop_sent.elapsed();
            if waited >= self.config.timeout {
                return Err(FenceError::Timeout {
                    instance: target,
                    state: state.unwrap_or_default(),
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
            }
            let wait = backoff(attempt, Duration::from_millis(50), Duration::from_secs(1), rand::random::<f64>())
                .min(self.config.timeout.saturating_sub(waited));
            if attempt == 10 {
                warn!(node, instance = %target, waited_ms = waited.as_millis() as u64, state = ?state, since_start_ms = started.elapsed().as_millis() as u64, "departed holder's instance not stopping yet");
            }
            tokio::time::sleep(wait).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

/// EC2 shows the instance stopping, stopped or gone (None: EC2 no longer knows it).
fn is_down(state: Option<&str>) -> bool {
    state.is_none_or(|s| DOWN.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_or_pending_instances_are_up() {
        for down in ["stopping", "stopped", "shutting-down", "terminated"] {
            assert!(is_down(Some(down)), "{down}");
        }
        assert!(is_down(None), "an instance EC2 no longer knows runs nothing");
        for up in ["running", "pending", "unknown", "unknown (timeout)"] {
            assert!(!is_down(Some(up)), "{up}");
        }
    }
}
