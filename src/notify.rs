//! `[[notify]]` hooks, like keepalived's notify scripts: a command run when this node acquires,
//! releases or fails to take a resource. A hook never delays or blocks a failover: it runs in
//! the background with a timeout, and its failure is only logged.

use std::process::Stdio;

use tracing::{info, warn};

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

/// Starts every hook subscribed to the event in the background and returns at once, so a
/// slow or failing hook never delays a failover.
pub fn fire(hooks: &[NotifyConfig], context: HookContext) {
    for hook in hooks.iter().filter(|h| h.events.contains(&context.event.as_str().to_owned())) {
        let hook = hook.clone();
        let context = context.clone();
        tokio::spawn(async move {
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
                .env("COROSYNC_EIP_DETAIL", &context.detail)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let result = match cmd.spawn() {
                Err(e) => Err(format!("cannot start: {e}")),
                Ok(mut child) => match tokio::time::timeout(hook.timeout, child.wait()).await {
                    Err(_) => Err(format!("killed after {}ms", hook.timeout.as_millis())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(s)) if s.success() => Ok(()),
                    Ok(Ok(s)) => Err(format!("exited {s}")),
                },
            };
            match result {
                Ok(()) => info!(hook = %hook.name, event = context.event.as_str(), resource = %context.resource, "notify hook ran"),
                Err(e) => warn!(hook = %hook.name, event = context.event.as_str(), resource = %context.resource, error = %e, "notify hook failed"),
            }
        });
    }
}
