//! How a session ends: a planned release (every address handed to the peers in agreed order),
//! a reload (re-executing in place with the table handed over, keeping every address), or a
//! lost corosync connection (stand down: we may no longer act).

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{error, info, warn};

use super::handover::{self, Handover};
use super::{Daemon, Signals, TaskResult};
use crate::config::Config;
use crate::core::view::View;
use crate::core::wire::{self, Body, WireAssignment};
use crate::core::holder::Effect;
use crate::corosync::{Corosync, CorosyncError, CorosyncEvent};
use crate::kinds;
use crate::notify::HookEvent;
use crate::systemd;

/// How long a stopping holder waits for its Release to come back through CPG.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Why a session ended.
pub(super) enum SessionEnd {
    /// The connection failed; the next session starts from this table, if we knew one.
    Lost(CorosyncError, Option<Vec<WireAssignment>>),
    Shutdown,
    /// Re-execute, handing this table (if we knew one) to the new process.
    Reload(Option<Vec<WireAssignment>>),
}

/// Whether the file this daemon runs from is no longer the program running: a package upgrade
/// replaced (or removed) it, and no reload has re-executed it yet.
pub(super) fn binary_replaced(exe: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // The magic link resolves to the inode that is executing, even once it is unlinked.
    let Ok(running) = std::fs::metadata("/proc/self/exe") else { return false };
    match std::fs::metadata(exe) {
        Ok(installed) => (installed.dev(), installed.ino()) != (running.dev(), running.ino()),
        Err(_) => true,
    }
}

impl Daemon {
    /// Planned stop: take VIPs off our interface, tell every member we release, wait until CPG
    /// delivered it back to us (so every member has it in agreed order), then leave.
    pub(super) async fn release(&mut self, cs: &mut Corosync, view: &View) -> SessionEnd {
        info!("stopping: releasing all addresses to peers");
        systemd::stopping();
        if !view.others_serve() {
            self.delete_records_nobody_takes(view).await;
        }
        self.stand_down(true, "stopping");
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

    /// The last member able to hold them stops: records with `delete_on_release` that we hold
    /// are deleted (if they still point at us) while our permit is still valid, instead of
    /// pointing at a stopped node. Bounded, so a stop never hangs on Route 53.
    async fn delete_records_nobody_takes(&mut self, view: &View) {
        // Every record of a unit elected to us, verified or still being acquired: the record
        // may already point at us while the acquisition waits for INSYNC, and delete_if_ours
        // reads it before deleting anything.
        let held: Vec<(String, kinds::dns::DnsTarget, String)> = self
            .ours(view)
            .filter_map(|(name, l)| match &l.kind {
                kinds::Kind::Dns(d) if d.config.delete_on_release => Some((name.clone(), d.clone(), l.unit.clone())),
                _ => None,
            })
            .collect();
        for (name, target, unit) in held {
            let Some(generation) = view.assignments().get(&unit).map(|a| a.generation) else { continue };
            let gate = self.write_gate(&unit, generation);
            match kinds::dns::delete_if_ours(&self.kinds.route53, &target, &self.identity, gate, Duration::from_secs(5)).await {
                Ok(true) => info!(resource = %name, record = %target.config.record, "no other member can take the record: deleted it (delete_on_release)"),
                Ok(false) => info!(resource = %name, record = %target.config.record, "the record no longer points at this node: left alone"),
                Err(e) => warn!(resource = %name, record = %target.config.record, error = %e, "could not delete the record; it still points at this node"),
            }
        }
    }

    /// SIGHUP: a valid file re-executes us with it, keeping every address; an invalid one is
    /// refused and the running configuration stays.
    /// A VIP whose `discover` query the file changed is looked up first, by this process,
    /// which stays in the group and keeps serving meanwhile: the new image gets the answer
    /// with the hand-over and rejoins at once, instead of asking EC2 while the peers' reattach
    /// grace runs down.
    pub(super) fn reload(&mut self, view: &View) -> Option<SessionEnd> {
        match Config::load(&self.config_path) {
            Ok(config) => {
                if self.reload_lookup_running {
                    info!("reload asked again while route tables are still being looked up for the first; it follows");
                    return None;
                }
                if !self.reload_announced {
                    systemd::reloading();
                    self.reload_announced = true;
                }
                let changed: Vec<(String, String, crate::config::RouteTableQuery, crate::ec2::Ec2)> = config
                    .vips
                    .iter()
                    .filter_map(|vip| {
                        let query = vip.discover.clone()?;
                        let known = self.discovered.get(&vip.name).is_some_and(|d| d.answers(&query));
                        // A role this process has no client for is left to the new image.
                        let client = match &vip.route_table_role {
                            Some(role) => self.kinds.route_clients.get(role)?.clone(),
                            None => self.ec2.clone(),
                        };
                        (!known).then(|| (vip.name.clone(), handover::Discovered::query_text(&query), query, client))
                    })
                    .collect();
                if changed.is_empty() {
                    info!(config = %self.config_path.display(), "reloading: re-executing with the new configuration, keeping every address");
                    return Some(SessionEnd::Reload(view.table_to_keep()));
                }
                info!(vips = ?changed.iter().map(|c| c.0.clone()).collect::<Vec<_>>(), "reloading: looking up the route tables of changed discover queries first, still serving");
                self.reload_lookup_running = true;
                let tx = self.results_tx.clone();
                tokio::spawn(async move {
                    let mut looked_up = Vec::new();
                    for (name, text, query, client) in changed {
                        let found = client.find_route_tables(&query, super::DISCOVER_BUDGET).await.map_err(|e| e.to_string());
                        let failed = found.is_err();
                        looked_up.push((name, text, found));
                        if failed {
                            break;
                        }
                    }
                    let _ = tx.send(TaskResult::ReloadLookedUp(looked_up));
                });
                None
            }
            Err(e) => {
                error!(error = %e, "reload refused: the new configuration is invalid; keeping the running one");
                // The file went bad while a reload looked up its route tables: systemd was
                // told the reload began, and must hear that it ended.
                if std::mem::take(&mut self.reload_announced) {
                    systemd::ready("reload refused: the configuration file became invalid");
                }
                None
            }
        }
    }

    /// The reload's lookups are done. Found: the tables go to the new image, and the reload
    /// goes on (reading the file again, which may have changed meanwhile). A lookup that
    /// failed refuses the reload, as an invalid file does: the running configuration stays
    /// whole, rather than a new image that would ask EC2 again before it rejoins.
    pub(super) fn reload_looked_up(&mut self, looked_up: Vec<(String, String, Result<Vec<String>, String>)>) {
        self.reload_lookup_running = false;
        let mut found = Vec::new();
        for (name, query, result) in looked_up {
            match result {
                Ok(tables) => found.push((name, handover::Discovered { query, tables })),
                Err(e) => {
                    error!(resource = %name, error = %e, "reload refused: cannot look up the route tables of the VIP's new route_table_tag; keeping the running configuration (reload again once EC2 answers)");
                    if std::mem::take(&mut self.reload_announced) {
                        systemd::ready(&format!("reload refused: {name}: cannot look up route tables by tag"));
                    }
                    return;
                }
            }
        }
        for (name, discovered) in found {
            info!(resource = %name, tables = ?discovered.tables, "route tables found by tag for the reload");
            self.discovered.insert(name, discovered);
        }
        self.reload_due = true;
    }

    async fn remove_local_addresses(&mut self) {
        let Some(addresses) = self.kinds.addresses.clone() else { return };
        for (name, local) in self.resources.iter_mut() {
            if local.kind.has_local_address() {
                match kinds::remove_local(&addresses, &local.kind).await {
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
    pub(super) fn stand_down(&mut self, drop_addresses: bool, reason: &str) {
        self.permit.send_replace(BTreeSet::new());
        for p in std::mem::take(&mut self.pending_commands) {
            let _ = p.reply.send(Err("lost the corosync connection".into()));
        }
        let names: Vec<String> = self.resources.keys().cloned().collect();
        for name in names {
            let Some(local) = self.resources.get_mut(&name) else { continue };
            let effects = local.holding.stand_down(drop_addresses);
            for effect in effects {
                match effect {
                    Effect::Abort => {
                        if let Some(local) = self.resources.get_mut(&name) {
                            local.abort();
                        }
                    }
                    Effect::RemoveAddress => self.spawn_remove_address(&name),
                    Effect::Released => self.hook(&name, HookEvent::Release, "standby", reason.to_owned()),
                    _ => {}
                }
            }
        }
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.corosync = "disconnected".into();
        s.synced = false;
        s.quorate = false;
    }

    /// Between corosync connections: answer requests with an error, keep hearing results
    /// (address removals, health checks), until `wait` is over. True: stopped meanwhile.
    pub(super) async fn offline(&mut self, wait: Duration, signals: &mut Signals) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        systemd::watchdog();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = signals.stopped() => return true,
                Some(request) = self.requests.recv() => {
                    let _ = request.reply.send(Err("not connected to corosync".into()));
                }
                Some(result) = self.results_rx.recv() => match result {
                    super::TaskResult::LocalAddressRemoved { resource, result } => self.address_removed(&resource, result),
                    super::TaskResult::Health { index, result } => {
                        self.record_health(index, result);
                    }
                    // Carried out once a session runs again.
                    super::TaskResult::ReloadLookedUp(looked_up) => self.reload_looked_up(looked_up),
                    _ => {}
                },
            }
        }
    }

    /// Replaces this process with a new one of the same executable, handing over the table and
    /// all this process learnt, so the new one rejoins before any slow call.
    pub(super) fn reexec(&self, table: Option<Vec<WireAssignment>>) -> ! {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let handover = Handover {
            table,
            identity: Some(self.identity.clone()),
            availability_zone: self.availability_zone.clone(),
            route_tables: self.discovered.clone(),
            health: self.config.health.iter().zip(&self.health).map(|(c, h)| (c.name.clone(), h.tracker.healthy())).collect(),
        };
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(self.args.iter().skip(1));
        // Kept open until the exec (it fails: dropped with it); the new image inherits it.
        let memfd = match handover::write(&handover) {
            Ok(fd) => {
                cmd.env(handover::FD_ENV, fd.as_raw_fd().to_string()).env(handover::PID_ENV, std::process::id().to_string());
                Some(fd)
            }
            Err(e) => {
                // The new process starts as a fresh one would: it re-learns the table from its
                // peers, and a holder that is re-elected keeps its address.
                error!(error = %e, "cannot write the handover; re-executing without it");
                None
            }
        };
        let err = cmd.exec();
        drop(memfd);
        error!(error = %err, exe = %self.exe.display(), "re-exec failed; exiting so systemd restarts us");
        std::process::exit(1);
    }
}
