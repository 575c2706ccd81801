//! `[[notify]]` hooks, like keepalived's notify scripts: a command run when this node acquires,
//! releases or fails to take a resource. A hook never delays or blocks a failover: hooks run in
//! the background, one at a time in event order, each with a timeout that kills everything it
//! started, and a failure is only logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::child::{self, Outcome};
use crate::config::NotifyConfig;

/// What happened to a resource on this node; hooks choose theirs with `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    /// This node took the resource and EC2 confirmed it.
    Acquire,
    /// This node gave the resource up.
    Release,
    /// This node was to hold the resource but could not; `COROSYNC_EIP_DETAIL` says why.
    Fault,
    /// This node drained itself before an event AWS announced (`[aws_events]`); the
    /// resource is empty and `COROSYNC_EIP_DETAIL` names the event.
    Drain,
    /// The event's window is over and this node serves again.
    Undrain,
    /// This node fenced a departed holder (`[fencing]`), or failed to; the resource is empty,
    /// `COROSYNC_EIP_DETAIL` says `stopped INSTANCE of node N in MS ms` or `failed ...: why`.
    Fence,
}

impl HookEvent {
    /// The name used in `events` and in `COROSYNC_EIP_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Acquire => "acquire",
            HookEvent::Release => "release",
            HookEvent::Fault => "fault",
            HookEvent::Drain => "drain",
            HookEvent::Undrain => "undrain",
            HookEvent::Fence => "fence",
        }
    }
}

/// What a hook learns, as COROSYNC_EIP_* environment variables.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// `COROSYNC_EIP_EVENT`: what happened.
    pub event: HookEvent,
    /// `COROSYNC_EIP_RESOURCE`: the resource's configured name.
    pub resource: String,
    /// `COROSYNC_EIP_GROUP`: its unit, the group name or its own name when ungrouped.
    pub group: String,
    /// `COROSYNC_EIP_KIND`: the resource's kind (`eip`, `vip`, ...), `node` for a drain.
    pub kind: &'static str,
    /// "holder" after acquire, "standby" after release, the intended role on fault.
    pub role: &'static str,
    /// EIP: the public IP if known, else the allocation id; VIP: the address.
    pub address: String,
    /// `COROSYNC_EIP_NODE_ID`: this node's corosync node id.
    pub node_id: u32,
    /// `COROSYNC_EIP_INSTANCE_ID`: this node's EC2 instance.
    pub instance_id: String,
    /// `COROSYNC_EIP_DETAIL`: the error on fault, else empty.
    pub detail: String,
}

/// How many events may wait for their hooks; past this, events are dropped and logged.
pub const QUEUE: usize = 64;

/// Runs the hooks of this node one at a time, in the order the events happened, on a bounded
/// queue: two hooks never run at once, so a hook that appends to a file or restarts a service
/// never interleaves with the next one. A slow hook delays only later hooks, never a failover.
#[derive(Debug)]
pub struct Notifier {
    queue: Option<mpsc::Sender<HookContext>>,
    worker: Option<tokio::task::JoinHandle<()>>,
    subscribed: Vec<String>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// Starts the worker for these hooks (none: every event is ignored at once).
    pub fn start(hooks: Vec<NotifyConfig>) -> Notifier {
        let subscribed: Vec<String> = hooks.iter().flat_map(|h| h.events.iter().cloned()).collect();
        let (tx, mut rx) = mpsc::channel::<HookContext>(QUEUE);
        let worker = tokio::spawn(async move {
            while let Some(context) = rx.recv().await {
                for hook in hooks.iter().filter(|h| h.events.iter().any(|e| e == context.event.as_str())) {
                    run_hook(hook, &context).await;
                }
            }
        });
        Notifier { queue: Some(tx), worker: Some(worker), subscribed, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queues the event for its hooks and returns at once. A full queue drops it, loudly.
    pub fn fire(&self, context: HookContext) {
        if !self.subscribed.iter().any(|e| e == context.event.as_str()) {
            return;
        }
        let Some(queue) = &self.queue else { return };
        if let Err(e) = queue.try_send(context) {
            let (mpsc::error::TrySendError::Full(context) | mpsc::error::TrySendError::Closed(context)) = e;
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            warn!(
                event = context.event.as_str(),
                resource = %context.resource,
                queue = QUEUE,
                dropped,
                "notify hooks are behind: {QUEUE} events already wait, so this event's hooks will not run"
            );
        }
    }

    /// Events dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Before exit or re-exec: lets the queued hooks run for at most `limit`, then kills what
    /// still runs. Later events are ignored.
    pub async fn finish(&mut self, limit: Duration) {
        self.queue = None;
        let Some(mut worker) = self.worker.take() else { return };
        if tokio::time::timeout(limit, &mut worker).await.is_err() {
            warn!(limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX), "notify hooks still running at exit: killed");
            worker.abort();
            let _ = worker.await;
        }
    }
}

async fn run_hook(hook: &NotifyConfig, context: &HookContext) {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&hook.command)
        .env("COROSYNC_EIP_EVENT", context.event.as_str())
        .env("COROSYNC_EIP_RESOURCE", &context.resource)
        .env("COROSYNC_EIP_GROUP", &context.group)
        .env("COROSYNC_EIP_KIND", context.kind)
        .env("COROSYNC_EIP_ROLE", context.role)
        .env("COROSYNC_EIP_ADDRESS", &context.address)
        .env("COROSYNC_EIP_NODE_ID", context.node_id.to_string())
        .env("COROSYNC_EIP_INSTANCE_ID", &context.instance_id)
        .env("COROSYNC_EIP_DETAIL", &context.detail);
    match child::run(cmd, hook.timeout).await {
        Outcome::Success => info!(hook = %hook.name, event = context.event.as_str(), resource = %context.resource, "notify hook ran"),
        other => warn!(hook = %hook.name, event = context.event.as_str(), resource = %context.resource, error = %other, "notify hook failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(event: HookEvent, resource: &str) -> HookContext {
        HookContext {
            event,
            resource: resource.into(),
            group: resource.into(),
            kind: "eip",
            role: "holder",
            address: String::new(),
            node_id: 1,
            instance_id: "i-1".into(),
            detail: String::new(),
        }
    }

    fn hook(command: String, timeout: Duration, events: &[&str]) -> NotifyConfig {
        NotifyConfig { name: "t".into(), command, timeout, events: events.iter().map(|e| e.to_string()).collect() }
    }

    #[tokio::test]
    async fn hooks_run_one_at_a_time_in_event_order() {
        let log = std::env::temp_dir().join(format!("corosync-eip-notify-{}-order", std::process::id()));
        let _ = std::fs::remove_file(&log);
        // Each hook writes a start and an end line around a pause: two at once would interleave.
        let command = format!(
            "echo start $COROSYNC_EIP_EVENT $COROSYNC_EIP_RESOURCE >> {l}; sleep 0.05; echo end $COROSYNC_EIP_EVENT $COROSYNC_EIP_RESOURCE >> {l}",
            l = log.display()
        );
        let mut n = Notifier::start(vec![hook(command, Duration::from_secs(5), &["acquire", "release", "drain"])]);
        let events = [(HookEvent::Acquire, "a"), (HookEvent::Drain, ""), (HookEvent::Release, "a"), (HookEvent::Fault, "a"), (HookEvent::Acquire, "b")];
        for (event, resource) in events {
            n.fire(context(event, resource));
        }
        n.finish(Duration::from_secs(10)).await;
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        let expected: Vec<String> = ["acquire a", "drain ", "release a", "acquire b"]
            .iter()
            .flat_map(|e| [format!("start {e}").trim_end().to_owned(), format!("end {e}").trim_end().to_owned()])
            .collect();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines, expected, "fault has no hook; the rest ran in order, never overlapping");
        assert_eq!(n.dropped(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_growing() {
        let pid_file = std::env::temp_dir().join(format!("corosync-eip-notify-{}-full", std::process::id()));
        let command = format!("echo $$ > {}; sleep 30", pid_file.display());
        let mut n = Notifier::start(vec![hook(command, Duration::from_secs(60), &["acquire"])]);
        for _ in 0..QUEUE + 10 {
            n.fire(context(HookEvent::Acquire, "a"));
        }
        // One may already be with the worker; at least the overflow beyond that was dropped.
        assert!((9..=10).contains(&n.dropped()), "{}", n.dropped());
        let mut pid = None;
        for _ in 0..500 {
            pid = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<u32>().ok());
            if pid.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_file(&pid_file);
        let pid = pid.expect("the first hook started");
        n.finish(Duration::from_millis(200)).await;
        // The hook still running when the limit passed was killed, not left behind.
        let mut gone = false;
        for _ in 0..200 {
            if !lab::pid_alive(pid) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "hook {pid} survived finish");
        let before = n.dropped();
        n.fire(context(HookEvent::Acquire, "a"));
        assert_eq!(n.dropped(), before, "an event after finish is ignored, not counted as dropped");
    }
}
