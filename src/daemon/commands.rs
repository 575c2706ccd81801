//! Admin requests from the control socket: `move` and `standby`/`unstandby`. Each is checked
//! against the view, sent over CPG so every member applies it in agreed order, and answered
//! only when the cluster shows its effect (or after `COMMAND_WAIT`).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{error, info};

use super::Daemon;
use crate::control::{Command, Request};
use crate::core::names::{self, Named};
use crate::core::view::View;
use crate::core::wire::{self, Body};
use crate::corosync::{Corosync, CorosyncError};

/// How long an admin command may take to show its result in the cluster.
const COMMAND_WAIT: Duration = Duration::from_secs(20);
/// The file in the state directory whose presence means "this node is in standby".
pub(super) const STANDBY_FILE: &str = "standby";

/// An admin command waiting for the cluster to show its effect.
pub(super) struct PendingCommand {
    pub command: Command,
    /// The node the command is about.
    pub node: u32,
    pub started: Instant,
    pub reply: oneshot::Sender<Result<String, String>>,
}

impl Daemon {
    /// Checks a request against the view and, when it can be done, sends it over CPG.
    pub(super) async fn on_request(&mut self, cs: &Corosync, view: &View, request: Request) -> Result<(), CorosyncError> {
        if !view.is_synced() {
            let _ = request.reply.send(Err("this node has not synced with the cluster yet".into()));
            return Ok(());
        }
        let checked: Result<(Body, u32), String> = match &request.command {
            Command::Standby { node, standby } => match node {
                None => Ok(view.local().node),
                Some(text) => resolve_node(view, text),
            }
            .map(|node| (Body::Standby { node, standby: *standby }, node)),
            Command::Move { unit, to } => self.check_move(view, unit, to),
        };
        match checked {
            Err(e) => {
                let _ = request.reply.send(Err(e));
            }
            Ok((body, node)) => {
                if matches!(body, Body::Standby { .. }) && node == view.local().node {
                    self.admin_took_standby();
                }
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

    /// A move is possible when the partition is quorate, the unit's files agree, and the
    /// target is an eligible member that has the unit and does not hold it yet.
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
        if view.unconfirmed() {
            return Err("the cluster's table was kept across a reload or a lost corosync connection and is not confirmed yet (the daemons of every node are not back): nothing can move until it is; see `corosync-eip status`".into());
        }
        if let Some(c) = view.conflicts().into_iter().find(|c| c.unit == unit) {
            return Err(format!("`{unit}` cannot move: {c}"));
        }
        let node = resolve_node(view, to)?;
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
    pub(super) fn finish_commands(&mut self, view: &View) {
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

    /// Keeps the standby flag in the state directory in line with the view, so a restarted
    /// daemon comes back in standby.
    pub(super) fn persist_standby(&mut self, view: &View) {
        // A drain before an AWS event is not the admin's: a node that reboots for the event
        // comes back serving.
        let want = view.local_info().standby && self.drain.current.is_none();
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
}

/// A node named by its nodelist name, hostname, id or instance id (see [`crate::core::names`]).
fn resolve_node(view: &View, text: &str) -> Result<u32, String> {
    let members: Vec<Named<'_>> = view
        .members()
        .iter()
        .filter_map(|m| {
            view.info(m).map(|i| Named {
                node: m.node,
                name: i.name.as_deref(),
                hostname: i.hostname.as_deref(),
                instance_id: &i.instance_id,
            })
        })
        .collect();
    names::resolve(&members, text).map_err(|e| e.to_string())
}
