//! `status --json`: the schema tests and tools read. Version it; only add fields.
//!
//! Schema `corosync-eip/status/v1` (documented in the README):
//! - `schema`, `version`, `node_id`, `pid`, `instance_id`, `network_interface_id`
//! - `corosync`: "connected" | "disconnected"; `synced`: this member knows the cluster's holders
//! - `quorate`: the partition is quorate (every member says so); `local_quorate`: corosync says so here
//! - `members[]`: `node_id`, `name`, `hostname`, `pid`, `instance_id`, `network_interface_id`, `version`, `quorate`
//! - `reattaching[]`: `node_id`, `pid` of vanished daemons whose addresses are kept during the grace
//! - `members[].cannot_serve[]`: `unit`, `class` ("permission" | "unreachable" | "identity"),
//!   `reason`: units a member failed to take and handed to the next candidate
//! - `conflicts[]`: `unit`, `keys`, `variants[].nodes`: units whose members' files differ
//! - `muted[]`: `node_id`, `pid` of members that said nothing for the sync timeout
//! - `binary_replaced`: the installed binary is newer than the running one (reload pending)
//! - `aws_event`: `kind`, `id`, `not_before`, `drained_until` of the AWS event this node drained for
//! - `fencing`: `stop_instance`, `timeout_ms`, `delay_ms`, and `last` (`node_id`, `instance_id`,
//!   `result` "stopped" | "already_down" | "failed", `error`, `ms`, `at`): the last fence this
//!   node carried out
//! - `resources[]`: see the README (the schema's reference).
//!
//! Also the human-readable rendering of the report, and the terminal colours every report a
//! person reads shares (status and check).

use serde::{Deserialize, Serialize};

use crate::core::reconcile::{ObservedEip, ObservedRouteTable};

/// Schema id in every report's `schema`: a reader that finds another id must not assume the v1
/// fields.
pub const SCHEMA: &str = "corosync-eip/status/v1";

/// What `corosync-eip status --json` prints: this node, the cluster as this node sees it, and
/// every configured address. Fields are only ever added within v1.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StatusReport {
    /// Always [`SCHEMA`]: tells a reader which fields to expect.
    pub schema: String,
    /// The daemon's version; compare with `members[].version` to follow a roll-out.
    pub version: String,
    /// The CPG group (cluster.group).
    pub group: String,
    /// This node's corosync node id; null until the daemon first connected to corosync.
    pub node_id: Option<u32>,
    /// The daemon's process id: with `node_id`, how `members[]` and `holder` name this daemon.
    pub pid: u32,
    /// The EC2 instance this node points addresses at when it holds them; null until connected.
    pub instance_id: Option<String>,
    /// The network interface this node points addresses at; null when it points them at the
    /// instance.
    pub network_interface_id: Option<String>,
    /// `"connected"` or `"disconnected"`: while disconnected this node holds and changes nothing.
    pub corosync: String,
    /// This member has merged the cluster's state and knows the holders; until then holders shown
    /// here may be stale.
    pub synced: bool,
    /// Every member of the partition announced quorum for the same ring in this membership:
    /// holders are elected only while this is true.
    pub quorate: bool,
    /// Corosync reports quorum on this node; it may differ from `quorate` briefly after a change.
    pub local_quorate: bool,
    /// votequorum's count on this node: expected, present, needed; null when votequorum is
    /// unavailable.
    pub votes: Option<crate::corosync::Votes>,
    /// Every daemon in the CPG group (this one included) with what it announced about itself.
    pub members: Vec<MemberStatus>,
    /// Daemons that vanished while their node stayed up: their addresses stay put during the
    /// reattach grace, so a restart moves nothing.
    pub reattaching: Vec<MemberRef>,
    /// One entry per configured address: its holder, its state and what EC2 last said.
    pub resources: Vec<ResourceStatus>,
    /// This node may hold addresses: health checks pass and it is not in standby.
    pub eligible: bool,
    /// An admin put this node in standby: it is elected for nothing until taken out of it.
    pub standby: bool,
    /// Each configured health check with its rise/fall-damped result; one failing makes the node
    /// ineligible.
    pub health: Vec<HealthStatus>,
    /// Problems an admin should fix that do not stop the daemon.
    pub warnings: Vec<String>,
    /// Units whose members' configuration files differ: not placed or moved while it lasts.
    #[serde(default)]
    pub conflicts: Vec<ConflictStatus>,
    /// Members that said nothing for the sync timeout after a membership change: they hold up
    /// nothing and serve nothing until they speak.
    #[serde(default)]
    pub muted: Vec<MemberRef>,
    /// The daemon's binary on disk is no longer the program running (a package upgrade
    /// replaced it): `systemctl reload corosync-eip` runs the new one in place.
    #[serde(default)]
    pub binary_replaced: bool,
    /// The AWS event this node drained itself for (`[aws_events]`); null when none.
    #[serde(default)]
    pub aws_event: Option<AwsEventStatus>,
    /// `[fencing]` on this node and the last fence it carried out; null from a daemon that
    /// predates fencing.
    #[serde(default)]
    pub fencing: Option<FencingStatus>,
}

/// Fencing of departed holders (`[fencing]`) as this node does it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FencingStatus {
    /// A takeover from a holder whose node left stops its instance first.
    pub stop_instance: bool,
    /// How long the successor waits for the instance to be stopping or stopped.
    pub timeout_ms: u64,
    /// How long the higher node id of a lone survivor waits before fencing.
    pub delay_ms: u64,
    /// The last fence this node carried out; null when none since it started.
    pub last: Option<LastFence>,
}

/// One fence carried out by this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastFence {
    /// The departed corosync node.
    pub node_id: u32,
    /// Its instance (null: nobody knew it, and the fence failed).
    pub instance_id: Option<String>,
    /// "stopped", "already_down" (EC2 showed it down before we asked) or "failed".
    pub result: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Milliseconds the fence took (the two-node delay included).
    pub ms: u64,
    /// When it ended (RFC 3339).
    pub at: String,
}

/// An event EC2 announced for this instance, and the drain it caused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AwsEventStatus {
    /// `system-reboot`, `instance-stop`, `spot-interruption`, ...
    pub kind: String,
    /// EC2's event id (or the notice it came from).
    pub id: String,
    /// When it may start (seconds since the epoch).
    pub not_before: u64,
    /// When the drain ends by itself (seconds since the epoch).
    pub drained_until: u64,
}

/// A unit whose members' configuration files differ: neither placed nor moved until they agree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConflictStatus {
    /// The unit (group or ungrouped resource) whose settings differ.
    pub unit: String,
    /// The settings that differ.
    pub keys: Vec<String>,
    /// The nodes sharing each variant of the unit's spec, largest group first.
    pub variants: Vec<VariantStatus>,
}

/// One version of the unit's settings and the nodes whose files have it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariantStatus {
    /// Corosync node ids of the nodes whose files share this variant.
    pub nodes: Vec<u32>,
}

impl From<&crate::core::spec::Conflict> for ConflictStatus {
    fn from(c: &crate::core::spec::Conflict) -> ConflictStatus {
        ConflictStatus {
            unit: c.unit.clone(),
            keys: c.keys.clone(),
            variants: c.variants.iter().map(|nodes| VariantStatus { nodes: nodes.clone() }).collect(),
        }
    }
}

/// One configured health check as this node last ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthStatus {
    /// The check's name in the configuration.
    pub name: String,
    /// The check passes after rise/fall damping: one slow run does not flip it.
    pub healthy: bool,
    /// Why the check last failed; null when its last run passed.
    pub last_error: Option<String>,
}

/// Names one daemon process: after a restart the same node shows up with a new pid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberRef {
    /// Corosync node id of the daemon's node.
    pub node_id: u32,
    /// The daemon's process id on that node.
    pub pid: u32,
}

/// One daemon in the CPG group as it announced itself; its fields are null until its first
/// State arrived (the member is still joining).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Corosync node id of the member's node.
    pub node_id: u32,
    /// The member daemon's pid; a new pid on the same node means the daemon restarted.
    pub pid: u32,
    /// The EC2 instance the member points addresses at when it holds them.
    pub instance_id: Option<String>,
    /// The network interface the member points addresses at; null when it uses the instance.
    pub network_interface_id: Option<String>,
    /// The member's daemon version: mixed versions mean a roll-out is under way.
    pub version: Option<String>,
    /// Corosync quorum as the member announced it for the current ring.
    pub quorate: Option<bool>,
    /// The member's health checks pass (standby is shown on its own).
    pub eligible: Option<bool>,
    /// An admin put the member's node in standby: it is elected for nothing.
    pub standby: Option<bool>,
    /// The member's availability zone, when its node could tell.
    pub availability_zone: Option<String>,
    /// Units this member failed to take (it keeps proving its permissions and announces when
    /// it can serve them again).
    #[serde(default)]
    pub cannot_serve: Vec<crate::core::wire::Unable>,
    /// The node's `name` in corosync.conf's nodelist; null when it has none (or the member's
    /// version predates it).
    #[serde(default)]
    pub name: Option<String>,
    /// The member's hostname; null when unknown.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// The daemon the cluster elected to hold an address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HolderStatus {
    /// Corosync node id of the holder's node.
    pub node_id: u32,
    /// The holder daemon's pid.
    pub pid: u32,
    /// The instance the holder points the address at; null until the holder announced itself.
    pub instance_id: Option<String>,
}

/// One configured address: who holds it in the cluster, and what this node knows of it in EC2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// The resource's name in the configuration.
    pub name: String,
    /// `"eip"` (Elastic IP association), `"vip"` (route-table VIP) or `"secondary_ip"`.
    pub kind: String,
    /// The placement unit: the group name, or the resource's own name. Kept under this name
    /// because schema v1 only adds fields; `unit` says the same.
    pub group: String,
    /// The placement unit (the same value as `group`, named as everywhere else).
    #[serde(default)]
    pub unit: String,
    /// EIP: the allocation id of the address; null for a VIP (see `address`).
    pub allocation_id: Option<String>,
    /// VIP and secondary IP: the private address; null for an EIP.
    pub address: Option<String>,
    /// The daemon elected to hold the address; null while no eligible member could be found.
    pub holder: Option<HolderStatus>,
    /// Increments on every change of holder: a higher number than before means the address moved.
    pub generation: u64,
    /// `"holder"` when this node is the elected holder, else `"standby"`.
    pub local_role: String,
    /// `"held"` (verified in EC2), `"acquiring"`, `"reattaching"`, `"syncing"`,
    /// `"waiting_quorum"`, `"yielded"` or `"unassigned"`: where the address stands now.
    pub state: String,
    /// EIP: what EC2 last said about the address; on standby nodes, as the holder announced it.
    pub ec2: Option<ObservedEip>,
    /// VIP: the route of each configured table as last verified.
    pub routes: Option<Vec<RouteStatus>>,
    /// VIP and secondary IP: whether this node has the address on its interface.
    pub local_address: Option<bool>,
    /// Secondary IP: the network interfaces EC2 shows the address on (only the holder's, when
    /// held); on standby nodes, as the holder announced it. Null for the other kinds.
    #[serde(default)]
    pub interfaces: Option<Vec<String>>,
    /// DNS: the Route 53 record and, on the holder, its values as last verified.
    #[serde(default)]
    pub record: Option<RecordStatus>,
    /// When this node, as holder, last verified in EC2 that the address points at it (RFC 3339).
    pub verified_at: Option<String>,
    /// Milliseconds since `verified_at` when the report was made (holder only).
    pub verified_age_ms: Option<u64>,
    /// The last error this node met for the address; cleared when it next succeeds.
    pub last_error: Option<String>,
    /// How often this node put the address back after someone moved it outside the cluster.
    pub drift_repairs: u64,
    /// Timings of this node's last takeover of the address; null if it never took it over.
    pub last_failover: Option<FailoverTimeline>,
}

/// Milliseconds from the event that made us holder to each step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailoverTimeline {
    /// The daemon that held the address before; null when it had no holder.
    pub previous: Option<MemberRef>,
    /// When the event that made this node holder arrived (RFC 3339); the steps count from here.
    pub detected_at: String,
    /// Milliseconds until this node was elected holder.
    pub elected_ms: u64,
    /// Milliseconds until the departed holder's instance was stopped (`[fencing]`); null when
    /// this takeover fenced nobody.
    #[serde(default)]
    pub fenced_ms: Option<u64>,
    /// Milliseconds until the association or route change was sent; null when EC2 already
    /// pointed at this node.
    pub associate_sent_ms: Option<u64>,
    /// Milliseconds until EC2 was verified to point at this node: the takeover's total.
    pub verified_ms: u64,
}

/// A `[[dns]]` record as status shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordStatus {
    /// The hosted zone.
    pub hosted_zone_id: String,
    /// The record's name, with its trailing dot.
    pub name: String,
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The configured TTL in seconds.
    pub ttl: u32,
    /// The values Route 53 listed when the holder last verified the record; null elsewhere.
    pub values: Option<Vec<String>>,
}

/// One route table of a VIP and where its route for the address points.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    /// The VPC route table that carries the VIP's route.
    pub route_table_id: String,
    /// The network interface the route targets; null when the route is missing.
    pub network_interface_id: Option<String>,
    /// The instance the route targets, as EC2 reports it.
    pub instance_id: Option<String>,
}

impl RouteStatus {
    /// The entry for `destination` in one observed table (targets null when the route is missing).
    pub fn of(table: &ObservedRouteTable, destination: &str) -> RouteStatus {
        let route = table.routes.iter().find(|r| r.destination == destination);
        RouteStatus {
            route_table_id: table.route_table_id.clone(),
            network_interface_id: route.and_then(|r| r.network_interface_id.clone()),
            instance_id: route.and_then(|r| r.instance_id.clone()),
        }
    }
}

/// What this node keeps about one of its configured addresses, as the status projection reads
/// it (the daemon owns the data; the projection only looks).
pub struct LocalAddress<'a> {
    /// The resource's name in the configuration.
    pub name: &'a str,
    /// The address's kind and its configured settings.
    pub kind: &'a crate::kinds::Kind,
    /// The placement unit: the group, or the resource itself.
    pub unit: &'a str,
    /// This node's own progress with the address: held, acquiring, yielded, errors, repairs.
    pub holding: &'a crate::core::holder::Holding,
    /// What EC2 last said (set while we hold).
    pub observed: Option<&'a crate::kinds::Observed>,
    /// When this node last verified in EC2 that the address points at it.
    pub verified_at: Option<std::time::SystemTime>,
    /// Timings of this node's last takeover of the address.
    pub last_failover: Option<&'a FailoverTimeline>,
}

/// Every member of the view as status shows it.
pub fn members(view: &crate::core::view::View) -> Vec<MemberStatus> {
    view.members()
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
                name: info.and_then(|i| i.name.clone()),
                hostname: info.and_then(|i| i.hostname.clone()),
            }
        })
        .collect()
}

/// One address as status shows it: the cluster's holder from the view, and, on the holder,
/// what this node verified in EC2; elsewhere what the holder announced.
pub fn resource(
    view: &crate::core::view::View,
    local: &LocalAddress<'_>,
    may_act: bool,
    now: std::time::SystemTime,
) -> ResourceStatus {
    use crate::kinds::{Kind, Observed};
    let name = local.name;
    let holding = local.holding;
    let assignment = view.assignments().get(local.unit);
    let holder = assignment.and_then(|a| a.holder);
    let is_local = holder == Some(view.local());
    let announced = assignment.and_then(|a| a.verified.iter().find(|h| h.resource == name));
    let state = match holder {
        None => "unassigned",
        Some(h) if view.vanished().contains(&h) => "reattaching",
        Some(_) if !view.is_synced() => "syncing",
        Some(_) if is_local && holding.yielded().is_some() => "yielded",
        Some(_) if is_local && !may_act => "waiting_quorum",
        Some(_) if is_local && holding.held().is_some() => "held",
        Some(_) if is_local => "acquiring",
        Some(_) if announced.is_some() => "held",
        Some(_) => "acquiring",
    };
    let (allocation_id, address, destination) = match local.kind {
        Kind::Eip(e) => (Some(e.allocation_id.clone()), None, None),
        Kind::Vip(v) => (None, Some(v.address.to_string()), Some(v.destination())),
        Kind::Secondary(s) => (None, Some(s.address.to_string()), None),
        Kind::Dns(_) => (None, None, None),
    };
    let record = match local.kind {
        Kind::Dns(d) => Some(RecordStatus {
            hosted_zone_id: d.config.hosted_zone_id.clone(),
            name: d.config.record.clone(),
            record_type: d.config.record_type.as_str().to_owned(),
            ttl: d.config.ttl,
            values: match (local.observed, is_local) {
                (Some(Observed::Dns(r)), true) => Some(r.values.clone()),
                _ => None,
            },
        }),
        _ => None,
    };
    let interfaces = match (local.kind, local.observed, is_local) {
        (Kind::Secondary(_), Some(Observed::Secondary(seen)), true) => {
            Some(seen.iter().map(|i| i.network_interface_id.clone()).collect())
        }
        (Kind::Secondary(_), _, _) => announced.map(|h| h.network_interface_id.iter().cloned().collect()),
        _ => None,
    };
    let (ec2, routes) = match (local.observed, is_local) {
        (Some(Observed::Eip(o)), true) => (Some(o.clone()), None),
        (Some(Observed::Vip(tables)), true) => (
            None,
            Some(tables.iter().map(|t| RouteStatus::of(t, destination.as_deref().unwrap_or_default())).collect()),
        ),
        _ => match (local.kind, announced) {
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
        name: name.to_owned(),
        kind: local.kind.label().into(),
        group: local.unit.to_owned(),
        unit: local.unit.to_owned(),
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
        local_address: if local.kind.has_local_address() { holding.local_address() } else { None },
        interfaces,
        record,
        verified_at: verified_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        verified_age_ms: verified_at
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        last_error: holding.last_error().map(str::to_owned),
        drift_repairs: holding.drift_repairs(),
        last_failover: local.last_failover.cloned(),
    }
}

/// The colours of text a person reads, kept in one place so `status` and `check` mean the
/// same thing by the same colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// All is well.
    Green,
    /// Attention: in progress, or a warning.
    Yellow,
    /// Failed.
    Red,
    /// Must be acted on now (bold red).
    Alarm,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Colour::Green => "32",
            Colour::Yellow => "33",
            Colour::Red => "31",
            Colour::Alarm => "1;31",
        }
    }
}

/// `text` in `colour` when `on`, else unchanged (pipes and files get plain text).
pub fn paint(text: &str, colour: Colour, on: bool) -> String {
    if on {
        format!("\x1b[{}m{text}\x1b[0m", colour.code())
    } else {
        text.to_owned()
    }
}

/// Whether to colour what goes to stdout: only when a person is watching a terminal.
pub fn color_stdout() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

/// The text `corosync-eip status` prints: one line for the cluster, then problems, members and
/// resources. `color`: ANSI colours for the yes/NO and state words (only on a terminal).
pub fn render(r: &StatusReport, color: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let paint = |text: &str, colour: Colour| paint(text, colour, color);
    let yes_no = |b: bool| if b { paint("yes", Colour::Green) } else { paint("NO", Colour::Alarm) };
    let _ = writeln!(
        out,
        "cluster group {}: node {} (pid {}), instance {}, corosync {}, synced {}, quorate {}{}{}",
        r.group,
        r.node_id.map_or("?".into(), |n| n.to_string()),
        r.pid,
        r.instance_id.as_deref().unwrap_or("?"),
        r.corosync,
        yes_no(r.synced),
        yes_no(r.quorate),
        r.votes.map_or(String::new(), |v| format!(" ({} of {} votes, {} needed)", v.present, v.expected, v.needed)),
        if r.standby { ", STANDBY" } else if !r.eligible { ", NOT ELIGIBLE (health)" } else { "" },
    );
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for h in r.health.iter().filter(|h| !h.healthy) {
        let _ = writeln!(out, "health check {} failing: {}", h.name, h.last_error.as_deref().unwrap_or(""));
    }
    for c in &r.conflicts {
        let groups: Vec<String> = c
            .variants
            .iter()
            .map(|v| format!("nodes {}", v.nodes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        let _ = writeln!(
            out,
            "{}: configuration of {} differs ({}; settings: {}); not placed or moved until the files agree",
            paint("CONFLICT", Colour::Alarm),
            c.unit,
            groups.join(" vs "),
            c.keys.join(", ")
        );
    }
    if let Some(e) = &r.aws_event {
        let _ = writeln!(
            out,
            "draining: AWS announced {} ({}) from {} (unix time); serving again after {}",
            e.kind, e.id, e.not_before, e.drained_until
        );
    }
    if let Some(f) = r.fencing.as_ref().filter(|f| f.stop_instance) {
        let last = match &f.last {
            None => "no fence yet".to_string(),
            Some(l) => format!(
                "last: {} {} of node {} in {} ms at {}{}",
                l.result,
                l.instance_id.as_deref().unwrap_or("(instance unknown)"),
                l.node_id,
                l.ms,
                l.at,
                l.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        };
        let line = format!("fencing: stop_instance (timeout {} ms, two-node delay {} ms); {last}", f.timeout_ms, f.delay_ms);
        let failed = f.last.as_ref().is_some_and(|l| l.result == "failed");
        let _ = writeln!(out, "{}", if failed { paint(&line, Colour::Alarm) } else { line });
    }
    let _ = writeln!(out, "members:");
    for m in &r.members {
        let flags = match (m.standby, m.eligible) {
            (Some(true), _) => " standby",
            (_, Some(false)) => " ineligible",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  node {:<4} {:<16} pid {:<8} {:<22} {:<22} {:<16}{}",
            m.node_id,
            m.name.as_deref().or(m.hostname.as_deref()).unwrap_or("-"),
            m.pid,
            m.instance_id.as_deref().unwrap_or("(joining)"),
            m.network_interface_id.as_deref().unwrap_or(""),
            m.availability_zone.as_deref().unwrap_or(""),
            flags
        );
        for u in &m.cannot_serve {
            let _ = writeln!(out, "    cannot serve {} ({}): {}", u.unit, u.class.as_str(), u.reason);
        }
    }
    for m in &r.muted {
        let _ = writeln!(out, "  node {:<4} pid {:<8} (silent since the last membership change; serves nothing until it speaks)", m.node_id, m.pid);
    }
    for m in &r.reattaching {
        let _ = writeln!(out, "  node {:<4} pid {:<8} (daemon gone; addresses kept during reattach grace)", m.node_id, m.pid);
    }
    let _ = writeln!(out, "resources:");
    for res in &r.resources {
        let holder = res.holder.as_ref().map_or("-".to_string(), |h| {
            let member = r.members.iter().find(|m| m.node_id == h.node_id);
            let name = member.and_then(|m| m.name.as_deref().or(m.hostname.as_deref()));
            let node = crate::core::names::label(h.node_id, name, None);
            format!("{node} {}", h.instance_id.as_deref().unwrap_or(""))
        });
        let ec2 = match (&res.ec2, &res.routes, &res.record) {
            (None, None, Some(r)) => match &r.values {
                Some(v) => format!("{} {} → {}", r.name, r.record_type, v.join(",")),
                None => format!("{} {}", r.name, r.record_type),
            },
            (None, None, _) if res.interfaces.is_some() => {
                let on = res.interfaces.clone().unwrap_or_default();
                if on.is_empty() { "on no interface".to_string() } else { format!("on {}", on.join(" ")) }
            }
            (Some(e), _, _) => format!(
                "{} {}",
                e.instance_id.as_deref().unwrap_or("-"),
                e.network_interface_id.as_deref().unwrap_or("")
            ),
            (None, Some(routes), _) => routes
                .iter()
                .map(|r| format!("{}→{}", r.route_table_id, r.network_interface_id.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(" "),
            (None, None, _) => "-".to_string(),
        };
        let what = res.allocation_id.clone().or_else(|| res.address.clone()).unwrap_or_default();
        let state = match res.state.as_str() {
            "held" => paint(&format!("{:<12}", res.state), Colour::Green),
            "acquiring" | "syncing" | "reattaching" => paint(&format!("{:<12}", res.state), Colour::Yellow),
            _ => paint(&format!("{:<12}", res.state), Colour::Alarm),
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<26} {} holder {:<28} EC2 {}{}",
            res.name,
            what,
            state,
            holder,
            ec2,
            res.verified_age_ms.map_or(String::new(), |a| format!(" (verified {}s ago)", a / 1000)),
        );
        if let Some(t) = &res.last_failover {
            let _ = writeln!(
                out,
                "    last failover {}: elected +{}ms, associate sent {}, verified +{}ms",
                t.detected_at,
                t.elected_ms,
                t.associate_sent_ms.map_or("(not needed)".into(), |m| format!("+{m}ms")),
                t.verified_ms
            );
        }
        if let Some(e) = &res.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_when_asked() {
        let r = StatusReport { synced: true, ..Default::default() };
        assert!(!render(&r, false).contains('\u{1b}'));
        assert!(render(&r, false).contains("synced yes, quorate NO"));
        assert!(render(&r, true).contains("synced \x1b[32myes\x1b[0m, quorate \x1b[1;31mNO\x1b[0m"));
        assert_eq!(paint("✖", Colour::Red, true), "\x1b[31m✖\x1b[0m");
    }

    #[test]
    fn fencing_is_shown_only_when_on_and_a_failed_fence_in_alarm_colour() {
        let mut r = StatusReport::default();
        assert!(!render(&r, false).contains("fencing"), "a daemon without the field");
        r.fencing = Some(FencingStatus { stop_instance: false, timeout_ms: 60_000, delay_ms: 5_000, last: None });
        assert!(!render(&r, false).contains("fencing"), "off: nothing to say");
        r.fencing = Some(FencingStatus { stop_instance: true, timeout_ms: 60_000, delay_ms: 5_000, last: None });
        assert!(render(&r, false).contains("fencing: stop_instance (timeout 60000 ms, two-node delay 5000 ms); no fence yet"));
        r.fencing = Some(FencingStatus {
            stop_instance: true,
            timeout_ms: 60_000,
            delay_ms: 5_000,
            last: Some(LastFence {
                node_id: 2,
                instance_id: Some("i-2".into()),
                result: "failed".into(),
                error: Some("denied".into()),
                ms: 12,
                at: "2026-12-03T00:00:00.000Z".into(),
            }),
        });
        let text = render(&r, false);
        assert!(text.contains("last: failed i-2 of node 2 in 12 ms at 2026-12-03T00:00:00.000Z: denied"), "{text}");
        assert!(render(&r, true).contains("\x1b[1;31mfencing:"), "a failed fence is an alarm");
    }
}
