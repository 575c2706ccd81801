//! From the CIB model to a corosync-eip file: which primitive becomes which address, which
//! Pacemaker placement rules survive as `group` and `prefer`, and what is refused.
//!
//! The rule throughout: a setting is carried over only when corosync-eip would act the same
//! way; a setting that has no equivalent is reported with the reason; anything whose loss
//! would change where or whether an address runs, without the admin being told, is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::cib::{self, Cib, Constraint, NvPair, Primitive, Resource};
use super::{Import, ImportError, Note, Options, Refusal, Report};

/// The resource agents the import reads; IPaddr2 only as the local half of an awsvip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    Eip,
    SecondaryIp,
    MoveIp,
    Route53,
    IpAddr2,
}

impl Agent {
    fn of(p: &Primitive) -> Result<Option<Agent>, String> {
        if p.class != "ocf" {
            return Ok(None);
        }
        let agent = match p.agent.as_str() {
            "awseip" => Agent::Eip,
            "awsvip" => Agent::SecondaryIp,
            "aws-vpc-move-ip" => Agent::MoveIp,
            "aws-vpc-route53" => Agent::Route53,
            "IPaddr2" => Agent::IpAddr2,
            _ => return Ok(None),
        };
        // A copy of an agent under another provider may behave differently: its parameters
        // cannot be trusted to mean what resource-agents' do.
        match p.provider.as_deref() {
            Some("heartbeat") => Ok(Some(agent)),
            other => Err(format!(
                "{} is not resource-agents' agent (provider `{}`, expected `heartbeat`): the import knows what heartbeat's parameters mean, not this copy's",
                p.agent_spec(),
                other.unwrap_or("")
            )),
        }
    }
}

/// A Pacemaker score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Score {
    NegInf,
    Num(i64),
    Inf,
}

/// Pacemaker clamps scores at ±1,000,000, which it treats as INFINITY.
const PCMK_INFINITY: i64 = 1_000_000;

fn parse_score(text: &str) -> Option<Score> {
    let t = text.trim();
    match t.to_ascii_uppercase().as_str() {
        "INFINITY" | "+INFINITY" | "INF" | "+INF" => return Some(Score::Inf),
        "-INFINITY" | "-INF" => return Some(Score::NegInf),
        _ => {}
    }
    let n: i64 = t.strip_prefix('+').unwrap_or(t).parse().ok()?;
    Some(if n >= PCMK_INFINITY {
        Score::Inf
    } else if n <= -PCMK_INFINITY {
        Score::NegInf
    } else {
        Score::Num(n)
    })
}

fn add_scores(a: Score, b: Score) -> Score {
    match (a, b) {
        // Pacemaker: -INFINITY wins over everything.
        (Score::NegInf, _) | (_, Score::NegInf) => Score::NegInf,
        (Score::Inf, _) | (_, Score::Inf) => Score::Inf,
        (Score::Num(x), Score::Num(y)) => parse_score(&(x.saturating_add(y)).to_string()).unwrap_or(Score::Inf),
    }
}

fn score_text(s: Score) -> String {
    match s {
        Score::Inf => "INFINITY".into(),
        Score::NegInf => "-INFINITY".into(),
        Score::Num(n) => n.to_string(),
    }
}

/// Pacemaker's intervals: a number with an optional unit (ms, msec, s, sec, m, min, h, hr;
/// none means seconds) or an ISO 8601 duration (`PT20S`).
fn parse_interval(text: &str) -> Option<Duration> {
    let t = text.trim();
    if let Some(iso) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
        let time = iso.strip_prefix('T').or_else(|| iso.strip_prefix('t'))?;
        let mut total = 0u64;
        let mut number = String::new();
        for c in time.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u64 = number.parse().ok()?;
            number.clear();
            total += n * match c.to_ascii_uppercase() {
                'H' => 3600,
                'M' => 60,
                'S' => 1,
                _ => return None,
            };
        }
        return number.is_empty().then_some(Duration::from_secs(total));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => n.checked_mul(1000)?,
        "ms" | "msec" => n,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" | "hr" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

fn duration_text(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The names corosync-eip accepts for resources and groups.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// What a DNS record points at, as aws-vpc-route53's `ip` says.
#[derive(Debug, Clone)]
enum DnsIp {
    Local,
    Public,
    Literal(IpAddr),
}

/// One resource of the generated file, before its unit is known.
#[derive(Debug, Clone)]
enum Kind {
    Eip {
        allocation_id: String,
        elastic_ip: Option<String>,
        private_ip: Option<String>,
    },
    Vip {
        address: IpAddr,
        route_tables: Vec<String>,
        role: Option<String>,
        interface: Option<String>,
        label: Option<String>,
    },
    Secondary {
        address: IpAddr,
        interface: Option<String>,
        label: Option<String>,
    },
    Dns {
        zone: String,
        record: String,
        ttl: Option<i64>,
        ip: DnsIp,
    },
}

#[derive(Debug, Clone)]
struct Out {
    name: String,
    agent: String,
    kind: Kind,
}

/// An address primitive with the group it sits in.
struct Addr<'a> {
    p: &'a Primitive,
    agent: Agent,
    group: Option<&'a cib::Group>,
}

/// What a resource id in a constraint stands for.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// An address primitive (its own id).
    Address(String),
    /// A group of address primitives (its first member's id).
    AddressGroup(String),
    /// A resource the import does not manage.
    Other,
}

/// Union-find over primitive ids: which address primitives must share a holder.
#[derive(Default)]
struct Units {
    parent: BTreeMap<String, String>,
}

impl Units {
    fn add(&mut self, id: &str) {
        self.parent.entry(id.to_owned()).or_insert_with(|| id.to_owned());
    }
    fn find(&self, id: &str) -> String {
        let mut cur = id.to_owned();
        while let Some(next) = self.parent.get(&cur).filter(|n| **n != cur) {
            cur = next.clone();
        }
        cur
    }
    fn join(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(rb, ra);
        }
    }
}

struct Ctx {
    report: Report,
    refusals: Vec<Refusal>,
}

impl Ctx {
    fn refuse(&mut self, subject: &str, reason: impl Into<String>) {
        self.refusals.push(Refusal {
            subject: subject.to_owned(),
            reason: reason.into(),
        });
    }
    fn mapped(&mut self, subject: &str, text: impl Into<String>) {
        note(&mut self.report.mapped, subject, text);
    }
    fn unmapped(&mut self, subject: &str, text: impl Into<String>) {
        note(&mut self.report.unmapped, subject, text);
    }
    fn behaviour(&mut self, subject: &str, text: impl Into<String>) {
        note(&mut self.report.behaviour, subject, text);
    }
    fn not_imported(&mut self, subject: &str, text: impl Into<String>) {
        note(&mut self.report.not_imported, subject, text);
    }
}

const NOT_AN_ADDRESS: &str = "not an address resource: corosync-eip does not start or stop services; it stays with Pacemaker or moves to systemd (a [[health]] check can make a node without it ineligible)";

/// Imports a CIB: the generated file (validated by the daemon's own loader) and its report,
/// or every reason it cannot be imported faithfully.
pub fn import_cib(xml: &str, options: &Options) -> Result<Import, ImportError> {
    let cib = cib::parse(xml)?;
    let mut ctx = Ctx {
        report: Report::default(),
        refusals: Vec::new(),
    };
    ctx.report.source.push(format!(
        "CIB written with schema {} (crm_feature_set {})",
        cib.validate_with.as_deref().unwrap_or("unknown"),
        cib.feature_set.as_deref().unwrap_or("unknown")
    ));

    let (addrs, targets) = classify(&cib, &mut ctx);
    if !addrs.iter().any(|a| a.agent != Agent::IpAddr2) {
        return Err(if ctx.refusals.is_empty() {
            ImportError::NothingToImport
        } else {
            ImportError::Refused(ctx.refusals)
        });
    }
    cluster_properties(&cib, &mut ctx);

    let mut units = Units::default();
    for a in &addrs {
        units.add(&a.p.id);
        if let Some(g) = a.group {
            if let Some(first) = g.members.first() {
                units.add(&first.id);
                units.join(&first.id, &a.p.id);
            }
        }
    }
    let colocation_names = colocations(&cib, &targets, &mut units, &mut ctx);
    let node_ids = node_ids(&cib, options, &mut ctx);
    let prefer = locations(&cib, &targets, &units, &node_ids, &mut ctx);

    let mut credentials = Credentials::default();
    let mut outs = Vec::new();
    let mut paired: BTreeMap<String, &Primitive> = BTreeMap::new();
    for a in addrs.iter().filter(|a| a.agent == Agent::IpAddr2) {
        pair_ipaddr2(a, &addrs, &units, &mut paired, &mut ctx);
    }
    for a in &addrs {
        meta(a, &mut ctx);
    }
    for a in addrs.iter().filter(|a| a.agent != Agent::IpAddr2) {
        if let Some(out) = resource(a, paired.get(&a.p.id).copied(), &mut credentials, &mut ctx) {
            outs.push((out, units.find(&a.p.id)));
        }
    }
    let monitor = monitor_interval(&addrs, &mut ctx);
    let aws = credentials.settle(&mut ctx);

    // Unit names: a Pacemaker group keeps its name; resources joined only by colocation take
    // the constraint's id; a lone resource needs none.
    let mut unit_members: BTreeMap<String, usize> = BTreeMap::new();
    for (_, root) in &outs {
        *unit_members.entry(root.clone()).or_default() += 1;
    }
    let mut unit_groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &addrs {
        if let Some(g) = a.group {
            unit_groups.entry(units.find(&a.p.id)).or_default().insert(g.id.clone());
        }
    }
    let mut group_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (root, count) in &unit_members {
        let groups = unit_groups.get(root).cloned().unwrap_or_default();
        let name = match groups.len() {
            0 if *count > 1 => colocation_names.get(root).cloned(),
            0 => None,
            1 => groups.into_iter().next(),
            _ => {
                let list: Vec<String> = groups.into_iter().collect();
                ctx.refuse(
                    &list.join(", "),
                    "colocation constraints tie these groups together; a corosync-eip resource belongs to one group: merge them into one Pacemaker group first",
                );
                None
            }
        };
        if let Some(n) = &name {
            if !valid_name(n) {
                ctx.refuse(n, "a corosync-eip group name is 1-64 of letters, digits, '-', '_' and '.': rename the group (or constraint) first");
            }
        }
        group_of.insert(root.clone(), name);
    }
    dns_values(&outs, &units_of_outs(&outs), &mut ctx);
    // The report names a unit as the admin will: its group, or its one resource.
    let display: BTreeMap<String, String> = unit_members
        .keys()
        .map(|root| {
            let name = match group_of.get(root) {
                Some(Some(g)) => format!("group {g}"),
                _ => outs.iter().filter(|(_, r)| r == root).map(|(o, _)| o.name.clone()).collect::<Vec<_>>().join(", "),
            };
            (root.clone(), name)
        })
        .collect();
    stickiness(&cib, &addrs, &units, &prefer, &display, &mut ctx);

    if !ctx.refusals.is_empty() {
        return Err(ImportError::Refused(ctx.refusals));
    }
    let toml = render(&cib, &outs, &group_of, &prefer, monitor, &aws);
    crate::config::Config::parse(&toml, Path::new("the generated file")).map_err(|e| ImportError::Invalid(e.to_string()))?;
    Ok(Import { toml, report: ctx.report })
}

fn units_of_outs(outs: &[(Out, String)]) -> BTreeMap<String, String> {
    outs.iter().map(|(o, root)| (o.name.clone(), root.clone())).collect()
}

/// Sorts the CIB's resources into address primitives (with their groups) and the rest, and
/// refuses what mixes the two or multiplies an address.
fn classify<'a>(cib: &'a Cib, ctx: &mut Ctx) -> (Vec<Addr<'a>>, BTreeMap<String, Target>) {
    let mut addrs = Vec::new();
    let mut targets = BTreeMap::new();
    let agent_of = |p: &Primitive, ctx: &mut Ctx| match Agent::of(p) {
        Ok(a) => a,
        Err(reason) => {
            ctx.refuse(&p.id, reason);
            None
        }
    };
    for r in &cib.resources {
        match r {
            Resource::Primitive(p) => match agent_of(p, ctx) {
                Some(agent) => {
                    targets.insert(p.id.clone(), Target::Address(p.id.clone()));
                    addrs.push(Addr { p, agent, group: None });
                }
                None => {
                    targets.insert(p.id.clone(), Target::Other);
                    if p.class == "stonith" {
                        ctx.not_imported(&p.id, format!("fencing device ({}): not translated; `[fencing] stop_instance = true` makes the node that takes over a lost holder's addresses stop its EC2 instance first (what fence_aws does), and the ownership record on each address and quorum keep two partitions from fighting over it", p.agent_spec()));
                    } else {
                        ctx.not_imported(&p.id, format!("{}: {NOT_AN_ADDRESS}", p.agent_spec()));
                    }
                }
            },
            Resource::Group(g) => {
                let agents: Vec<Option<Agent>> = g.members.iter().map(|p| agent_of(p, ctx)).collect();
                let services: Vec<&str> = g
                    .members
                    .iter()
                    .zip(&agents)
                    .filter(|(_, a)| a.is_none())
                    .map(|(p, _)| p.id.as_str())
                    .collect();
                if services.len() == g.members.len() {
                    targets.insert(g.id.clone(), Target::Other);
                    for p in &g.members {
                        targets.insert(p.id.clone(), Target::Other);
                    }
                    ctx.not_imported(&g.id, format!("group of {}: {NOT_AN_ADDRESS}", services.join(", ")));
                    continue;
                }
                if !services.is_empty() {
                    ctx.refuse(
                        &g.id,
                        format!(
                            "group mixes addresses with {} (not an address resource): Pacemaker starts them together on one node, corosync-eip would move only the addresses. Take the service out of the group (run it on every node, with a [[health]] check on it) and import again",
                            services.join(", ")
                        ),
                    );
                }
                for reason in &g.unreadable {
                    ctx.refuse(&g.id, format!("{reason}: the import cannot read it as one value"));
                }
                if let Some(first) = g.members.first() {
                    targets.insert(g.id.clone(), Target::AddressGroup(first.id.clone()));
                }
                for (p, agent) in g.members.iter().zip(agents) {
                    match agent {
                        Some(agent) => {
                            targets.insert(p.id.clone(), Target::Address(p.id.clone()));
                            addrs.push(Addr { p, agent, group: Some(g) });
                        }
                        None => {
                            targets.insert(p.id.clone(), Target::Other);
                        }
                    }
                }
            }
            Resource::Multi(m) => {
                let cloned: Vec<&str> = m
                    .primitives
                    .iter()
                    .filter(|p| matches!(Agent::of(p), Ok(Some(_)) | Err(_)))
                    .map(|p| p.id.as_str())
                    .collect();
                targets.insert(m.id.clone(), Target::Other);
                for p in &m.primitives {
                    targets.insert(p.id.clone(), Target::Other);
                }
                if cloned.is_empty() {
                    ctx.not_imported(&m.id, format!("{} of {}: {NOT_AN_ADDRESS}", m.tag, ids(&m.primitives)));
                } else {
                    ctx.refuse(
                        &m.id,
                        format!(
                            "{} of the address resource(s) {}: a floating address has one holder at a time, and corosync-eip has no clones; make it a plain primitive first",
                            m.tag,
                            cloned.join(", ")
                        ),
                    );
                }
            }
        }
    }
    (addrs, targets)
}

fn ids(ps: &[Primitive]) -> String {
    ps.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
}

/// Cluster properties that decide where addresses may run.
fn cluster_properties(cib: &Cib, ctx: &mut Ctx) {
    for p in &cib.properties {
        match p.name.as_str() {
            "symmetric-cluster" if cib::is_false(&p.value) => ctx.refuse(
                "symmetric-cluster",
                "false (an opt-in cluster): Pacemaker runs each resource only where a location constraint allows it, corosync-eip on any member that has it in its file. Keep an address to some nodes by configuring it only on those nodes, with symmetric-cluster=true in the CIB you import",
            ),
            "no-quorum-policy" => {
                if p.value == "stop" {
                    ctx.unmapped("no-quorum-policy", "stop: corosync-eip changes EC2 only in a quorate partition, and a member without quorum takes its VIPs and secondary IPs off its interface (nothing to configure)");
                } else {
                    ctx.behaviour(
                        "no-quorum-policy",
                        format!("{}: corosync-eip never changes EC2 without quorum; a partition without quorum keeps what EC2 shows and takes VIPs and secondary IPs off its interfaces", p.value),
                    );
                }
            }
            "maintenance-mode" if cib::is_true(&p.value) => ctx.refuse(
                "maintenance-mode",
                "the cluster is in maintenance mode: Pacemaker is not managing the addresses now, corosync-eip would start managing them at once; end maintenance mode (or import a CIB from outside it) first",
            ),
            _ => {}
        }
    }
}

/// Node name → corosync node id, from `--node` first, then the CIB's `<nodes>`.
fn node_ids(cib: &Cib, options: &Options, ctx: &mut Ctx) -> BTreeMap<String, Result<u32, String>> {
    let mut ids: BTreeMap<String, Result<u32, String>> = BTreeMap::new();
    for n in &cib.nodes {
        // Standby is the state of a node, not of the file: the admin carries it over by hand.
        for a in n.attributes.iter().filter(|a| (a.name == "standby" || a.name == "maintenance") && cib::is_true(&a.value)) {
            ctx.behaviour(
                &n.uname,
                format!("{}={} on this node in Pacemaker: not part of the file; once the daemons run, `corosync-eip standby {}` keeps addresses off it", a.name, a.value, n.uname),
            );
        }
        let id = n.id.parse::<u32>().ok().filter(|i| *i != 0).ok_or_else(|| {
            format!("node `{}` has the Pacemaker id `{}`, which is not a corosync node id: pass --node {}=ID", n.uname, n.id, n.uname)
        });
        ids.insert(n.uname.clone(), id);
    }
    for (name, id) in &options.node_ids {
        ids.insert(name.clone(), Ok(*id));
    }
    let known: Vec<String> = ids
        .iter()
        .map(|(n, id)| match id {
            Ok(id) => format!("{n} = {id}"),
            Err(_) => format!("{n} = ?"),
        })
        .collect();
    if !known.is_empty() {
        ctx.report.source.push(format!("nodes (name = corosync node id): {}", known.join(", ")));
    }
    ids
}

fn resolve(targets: &BTreeMap<String, Target>, id: &str) -> Option<Target> {
    targets.get(id).cloned()
}

/// Colocations between addresses become shared units; anything tying an address to a service,
/// or weaker than INFINITY, is refused. Returns, per unit root, the id of the constraint that
/// joined it (its group name when no Pacemaker group has one).
fn colocations(cib: &Cib, targets: &BTreeMap<String, Target>, units: &mut Units, ctx: &mut Ctx) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for c in &cib.constraints {
        let Constraint::Colocation {
            id,
            rsc,
            with_rsc,
            score,
            set_members,
            unreadable,
        } = c
        else {
            continue;
        };
        let named: Vec<&String> = rsc.iter().chain(with_rsc.iter()).chain(set_members.iter()).collect();
        let resolved: Vec<Option<Target>> = named.iter().map(|n| resolve(targets, n)).collect();
        let touches_address = resolved.iter().any(|t| matches!(t, Some(Target::Address(_) | Target::AddressGroup(_))));
        if !touches_address {
            if resolved.iter().all(Option::is_some) {
                ctx.not_imported(id, "colocation between resources that are not addresses");
            } else {
                ctx.refuse(id, "colocation names a resource that is not in the CIB");
            }
            continue;
        }
        if let Some(reason) = unreadable.first() {
            ctx.refuse(id, format!("colocation of an address that corosync-eip cannot express: {reason}"));
            continue;
        }
        if let Some(pos) = resolved.iter().position(|t| !matches!(t, Some(Target::Address(_) | Target::AddressGroup(_)))) {
            ctx.refuse(
                id,
                format!(
                    "colocation ties an address to `{}`, which is not an address resource: corosync-eip cannot make an address follow a service. Run the service on every node with a [[health]] check on it, or keep this address in Pacemaker",
                    named[pos]
                ),
            );
            continue;
        }
        let (Some(a), Some(b)) = (rsc, with_rsc) else {
            ctx.refuse(id, "colocation without rsc and with-rsc");
            continue;
        };
        match score.as_deref().map(parse_score) {
            Some(Some(Score::Inf)) => {
                let first = |t: Option<Target>| match t {
                    Some(Target::Address(i) | Target::AddressGroup(i)) => Some(i),
                    _ => None,
                };
                if let (Some(x), Some(y)) = (first(resolve(targets, a)), first(resolve(targets, b))) {
                    units.join(&x, &y);
                    let root = units.find(&x);
                    names.entry(root).or_insert_with(|| id.clone());
                    ctx.mapped(id, format!("colocation {a} with {b} (INFINITY) → one group: they always share a holder"));
                }
            }
            other => {
                let shown = match other {
                    Some(Some(s)) => score_text(s),
                    _ => score.clone().unwrap_or_else(|| "(none)".into()),
                };
                ctx.refuse(
                    id,
                    format!("colocation score {shown}: corosync-eip can only keep addresses together always (a group, like INFINITY) or not at all; Pacemaker may place these apart"),
                );
            }
        }
    }
    // Order constraints: between addresses they are not needed, with a service they are a
    // dependency corosync-eip cannot keep.
    for c in &cib.constraints {
        let Constraint::Order {
            id,
            first,
            then,
            set_members,
            unreadable,
        } = c
        else {
            continue;
        };
        let named: Vec<&String> = first.iter().chain(then.iter()).chain(set_members.iter()).collect();
        let resolved: Vec<Option<Target>> = named.iter().map(|n| resolve(targets, n)).collect();
        let is_address = |t: &Option<Target>| matches!(t, Some(Target::Address(_) | Target::AddressGroup(_)));
        if !resolved.iter().any(is_address) {
            if resolved.iter().all(Option::is_some) {
                ctx.not_imported(id, "order between resources that are not addresses");
            } else {
                ctx.refuse(id, "order names a resource that is not in the CIB");
            }
        } else if let Some(pos) = resolved.iter().position(|t| !is_address(t)) {
            ctx.refuse(
                id,
                format!(
                    "order ties an address to `{}`, which is not an address resource: corosync-eip takes addresses without waiting for any service. Make the service independent of the address (e.g. bind to 0.0.0.0 or set net.ipv4.ip_nonlocal_bind=1), or keep this address in Pacemaker",
                    named[pos]
                ),
            );
        } else if let Some(reason) = unreadable.first() {
            ctx.refuse(id, format!("order of addresses that corosync-eip cannot express: {reason}"));
        } else {
            ctx.unmapped(id, "order between addresses: not needed; corosync-eip takes the addresses of one group together and configures each one's local side after EC2 shows it");
        }
    }
    for c in &cib.constraints {
        if let Constraint::Other { id, tag } = c {
            ctx.refuse(id, format!("{tag}: corosync-eip has no equivalent (booth tickets and other constraint kinds decide where resources may run)"));
        }
    }
    names
}

/// Location constraints on addresses become `prefer`: per unit, node ids by falling score.
fn locations(
    cib: &Cib,
    targets: &BTreeMap<String, Target>,
    units: &Units,
    node_ids: &BTreeMap<String, Result<u32, String>>,
    ctx: &mut Ctx,
) -> BTreeMap<String, Vec<(u32, Score)>> {
    let mut scores: BTreeMap<String, BTreeMap<u32, Score>> = BTreeMap::new();
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    for c in &cib.constraints {
        let Constraint::Location {
            id,
            rsc,
            node,
            score,
            unreadable,
        } = c
        else {
            continue;
        };
        let target = rsc.as_deref().and_then(|r| resolve(targets, r));
        let first = match &target {
            Some(Target::Address(i) | Target::AddressGroup(i)) => i.clone(),
            Some(Target::Other) => {
                ctx.not_imported(id, format!("location of {}, which is not an address", rsc.as_deref().unwrap_or("?")));
                continue;
            }
            None if rsc.is_none() && !unreadable.is_empty() => {
                ctx.refuse(id, format!("location constraint the import cannot read: {}", unreadable.join("; ")));
                continue;
            }
            None => {
                ctx.refuse(id, format!("location of `{}`, which is not in the CIB", rsc.as_deref().unwrap_or("")));
                continue;
            }
        };
        let rsc = rsc.as_deref().unwrap_or_default();
        if let Some(reason) = unreadable.first() {
            ctx.refuse(
                id,
                format!("location of {rsc} that `prefer` cannot express: {reason}. Write it as `location ID {rsc} SCORE: NODE` (a positive score on one node) or drop it"),
            );
            continue;
        }
        let Some(node) = node else {
            ctx.refuse(id, format!("location of {rsc} without a node"));
            continue;
        };
        let score = match score.as_deref().map(parse_score) {
            Some(Some(s)) => s,
            _ => {
                ctx.refuse(id, format!("location of {rsc} on {node}: the score `{}` is not a number or INFINITY", score.as_deref().unwrap_or("")));
                continue;
            }
        };
        match score {
            Score::NegInf | Score::Num(i64::MIN..=-1) => {
                ctx.refuse(
                    id,
                    format!(
                        "location of {rsc} on {node} with score {}: corosync-eip has no way to keep an address away from a node in the shared file. Configure the address only in the files of the nodes that may hold it, and import a CIB without this constraint",
                        score_text(score)
                    ),
                );
                continue;
            }
            Score::Num(0) => {
                ctx.unmapped(id, format!("location of {rsc} on {node} with score 0: no preference, nothing to carry over"));
                continue;
            }
            _ => {}
        }
        let node_id = match node_ids.get(node) {
            Some(Ok(n)) => *n,
            Some(Err(reason)) => {
                ctx.refuse(id, reason.clone());
                continue;
            }
            None => {
                ctx.refuse(
                    id,
                    format!("location of {rsc} on `{node}`, a node the CIB's <nodes> does not list: pass --node {node}=ID with its corosync node id"),
                );
                continue;
            }
        };
        if matches!(targets.get(rsc), Some(Target::Address(_))) && first != rsc {
            ctx.behaviour(id, format!("location of {rsc}, a member of a group, applies to its whole group: corosync-eip places groups, not their members"));
        }
        let unit = units.find(&first);
        named.entry(unit.clone()).or_insert_with(|| rsc.to_owned());
        let entry = scores.entry(unit).or_default().entry(node_id).or_insert(Score::Num(0));
        *entry = add_scores(*entry, score);
        ctx.mapped(id, format!("location of {rsc} on {node} (node id {node_id}), score {} → prefer", score_text(score)));
    }
    scores
        .into_iter()
        .map(|(unit, by_node)| {
            let mut list: Vec<(u32, Score)> = by_node.into_iter().collect();
            list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            if list.windows(2).any(|w| w[0].1 == w[1].1) {
                ctx.behaviour(
                    named.get(&unit).unwrap_or(&unit),
                    "several nodes have the same location score: Pacemaker chose among them by load, corosync-eip tries them in node id order",
                );
            }
            (unit, list)
        })
        .collect()
}

/// An IPaddr2 is the local half of the awsvip that moves the same address in EC2.
fn pair_ipaddr2<'a>(a: &Addr<'a>, addrs: &[Addr<'a>], units: &Units, paired: &mut BTreeMap<String, &'a Primitive>, ctx: &mut Ctx) {
    let ip = a.p.param("ip").and_then(|t| t.trim().parse::<IpAddr>().ok());
    let Some(ip) = ip else {
        ctx.refuse(&a.p.id, "IPaddr2 without a valid `ip`");
        return;
    };
    let partner = addrs.iter().find(|b| {
        b.agent == Agent::SecondaryIp && b.p.param("secondary_private_ip").and_then(|t| t.trim().parse::<IpAddr>().ok()) == Some(ip)
    });
    let Some(partner) = partner else {
        ctx.refuse(
            &a.p.id,
            format!("IPaddr2 configures {ip}, which no awsvip in the CIB moves in EC2: on its own it only adds an address to one node's interface. corosync-eip configures addresses as part of a [[secondary_ip]] (awsvip) or [[vip]] (aws-vpc-move-ip)"),
        );
        return;
    };
    if units.find(&a.p.id) != units.find(&partner.p.id) {
        ctx.refuse(
            &a.p.id,
            format!(
                "IPaddr2 configures {ip}, the address of awsvip {}, but Pacemaker may run them on different nodes (they share no group and no INFINITY colocation): put both in one group",
                partner.p.id
            ),
        );
        return;
    }
    if let Some(other) = paired.insert(partner.p.id.clone(), a.p) {
        ctx.refuse(&a.p.id, format!("awsvip {} has two IPaddr2 resources ({} and {})", partner.p.id, other.id, a.p.id));
    }
}

/// Meta attributes of an address primitive and its group.
fn meta(a: &Addr, ctx: &mut Ctx) {
    let mut pairs: Vec<&NvPair> = a.group.map(|g| g.meta.iter().collect()).unwrap_or_default();
    pairs.extend(a.p.meta.iter());
    for m in pairs {
        let v = m.value.as_str();
        let subject = &a.p.id;
        match m.name.as_str() {
            "target-role" => match v.to_ascii_lowercase().as_str() {
                "started" => ctx.unmapped(subject, "target-role=Started: corosync-eip keeps every configured address on a live member"),
                _ => ctx.refuse(
                    subject,
                    format!("target-role={v}: the address is not meant to run now, and corosync-eip would take it at once; start it (or remove it) in Pacemaker and import again"),
                ),
            },
            "is-managed" if cib::is_false(v) => ctx.refuse(
                subject,
                "is-managed=false: Pacemaker leaves this address alone, corosync-eip would start managing it at once; manage it again (or remove it) and import again",
            ),
            "maintenance" if cib::is_true(v) => ctx.refuse(subject, "maintenance=true: Pacemaker leaves this address alone now; end maintenance and import again"),
            "is-managed" | "maintenance" => {}
            "resource-stickiness" | "resource_stickiness" => {}
            "migration-threshold" => ctx.unmapped(
                subject,
                format!("{}={v}: an elected node that cannot take an address hands it to the next candidate (at once on a permission error, after [aws] acquire_timeout otherwise)", m.name),
            ),
            "failure-timeout" => ctx.unmapped(
                subject,
                format!("{}={v}: there is no failure count to expire; a node that could not serve an address announces when it can again", m.name),
            ),
            "priority" => ctx.unmapped(subject, format!("priority={v}: corosync-eip never stops one address to make room for another")),
            _ => ctx.unmapped(subject, format!("meta {}={v}: a Pacemaker scheduling setting with no corosync-eip equivalent", m.name)),
        }
    }
}

/// `profile` and `region` are per primitive in Pacemaker and per daemon in corosync-eip.
#[derive(Default)]
struct Credentials {
    profiles: BTreeMap<String, Vec<String>>,
    regions: BTreeMap<String, Vec<String>>,
}

/// `[aws]` keys of the generated file.
#[derive(Default)]
struct AwsOut {
    region: Option<String>,
    profile: Option<String>,
}

impl Credentials {
    fn settle(self, ctx: &mut Ctx) -> AwsOut {
        let mut out = AwsOut::default();
        for (key, map, slot) in [("profile", &self.profiles, &mut out.profile), ("region", &self.regions, &mut out.region)] {
            match map.len() {
                0 => {}
                1 => {
                    if let Some((value, users)) = map.iter().next() {
                        ctx.mapped(&users.join(", "), format!("{key}={value} → [aws] {key}"));
                        *slot = Some(value.clone());
                    }
                }
                _ => {
                    let list: Vec<String> = map.iter().map(|(v, users)| format!("{v} ({})", users.join(", "))).collect();
                    ctx.refuse(
                        key,
                        format!("the primitives use different values ({}): one corosync-eip daemon uses one AWS {key} for every address", list.join(", ")),
                    );
                }
            }
        }
        if out.profile.is_some() {
            ctx.behaviour("[aws] profile", "credentials come from that profile as the AWS CLI read them; the instance role (no profile) is what corosync-eip recommends, and `corosync-eip check` shows which source is used");
        }
        out
    }
}

/// Parameters shared by the AWS agents.
fn common(p: &Primitive, known: &[&str], credentials: &mut Credentials, ctx: &mut Ctx) {
    let role_auth = p.param("auth_type").is_some_and(|t| t.trim() == "role");
    for pair in &p.params {
        let (name, v) = (pair.name.as_str(), pair.value.trim());
        let subject = &p.id;
        match name {
            "awscli" => ctx.unmapped(subject, format!("awscli={v}: no CLI is run; the AWS SDK is built into the daemon")),
            "api_delay" => ctx.unmapped(
                subject,
                format!("api_delay={v}: not needed; corosync-eip never sleeps between calls, it reads EC2 back until EC2 shows the change"),
            ),
            "curl_retries" | "curl_sleep" => ctx.unmapped(subject, format!("{name}={v}: instance metadata reads are retried by the daemon itself")),
            "auth_type" => ctx.unmapped(
                subject,
                format!("auth_type={v}: corosync-eip takes credentials from the SDK's standard chain (environment, profile, then the instance role)"),
            ),
            "profile" if role_auth => ctx.unmapped(subject, format!("profile={v}: ignored by the agent with auth_type=role")),
            "profile" if v == "default" || v.is_empty() => ctx.unmapped(
                subject,
                "profile=default: the SDK's standard chain reads the same default profile, then the instance role",
            ),
            "profile" => credentials.profiles.entry(v.to_owned()).or_default().push(p.id.clone()),
            "region" if v.is_empty() => {}
            "region" => credentials.regions.entry(v.to_owned()).or_default().push(p.id.clone()),
            _ if known.contains(&name) => {}
            _ => ctx.refuse(
                subject,
                format!("parameter `{name}` is not one {} has in resource-agents (4.x): the import cannot tell what it does", p.agent),
            ),
        }
    }
}

fn ip_param(p: &Primitive, name: &str, ctx: &mut Ctx) -> Option<IpAddr> {
    let text = p.param(name).map(str::trim).unwrap_or_default();
    if text.is_empty() {
        ctx.refuse(&p.id, format!("`{name}` is not set"));
        return None;
    }
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            ctx.refuse(&p.id, format!("{name}={text} is not an IP address"));
            None
        }
    }
}

/// A Linux address label `IFACE:LABEL` as the agents build it, at most 15 bytes.
fn label(p: &Primitive, interface: &str, ctx: &mut Ctx) -> Option<String> {
    let iflabel = p.param("iflabel").map(str::trim).filter(|l| !l.is_empty())?;
    let full = format!("{interface}:{iflabel}");
    if full.len() > 15 {
        ctx.refuse(&p.id, format!("iflabel={iflabel}: the label `{full}` is longer than Linux's 15 bytes"));
        return None;
    }
    ctx.mapped(&p.id, format!("iflabel={iflabel} → label = \"{full}\""));
    Some(full)
}

/// One address primitive's parameters.
fn resource(a: &Addr, ipaddr2: Option<&Primitive>, credentials: &mut Credentials, ctx: &mut Ctx) -> Option<Out> {
    let p = a.p;
    for reason in &p.unreadable {
        ctx.refuse(&p.id, format!("{reason}: the import reads parameters written as plain values only"));
    }
    if !valid_name(&p.id) {
        ctx.refuse(&p.id, "a corosync-eip resource name is 1-64 of letters, digits, '-', '_' and '.': rename the primitive first");
    }
    let spec = p.agent_spec();
    let kind = match a.agent {
        Agent::Eip => {
            common(p, &["elastic_ip", "allocation_id", "private_ip_address"], credentials, ctx);
            let elastic_ip = p.param("elastic_ip").map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
            let Some(allocation_id) = p.param("allocation_id").map(str::trim).filter(|v| !v.is_empty()) else {
                let hint = elastic_ip
                    .as_deref()
                    .map(|ip| format!(" (`aws ec2 describe-addresses --public-ips {ip}` shows it)"))
                    .unwrap_or_default();
                ctx.refuse(&p.id, format!("awseip without allocation_id: corosync-eip moves an Elastic IP by its allocation id; set allocation_id{hint} and import again"));
                return None;
            };
            ctx.mapped(&p.id, format!("allocation_id={allocation_id} → [[eip]] allocation_id"));
            if let Some(ip) = &elastic_ip {
                ctx.unmapped(&p.id, format!("elastic_ip={ip}: corosync-eip finds the address by its allocation id (kept as a comment)"));
            }
            let private_ip = p.param("private_ip_address").map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
            if let Some(ip) = &private_ip {
                ctx.mapped(&p.id, format!("private_ip_address={ip} → private_ip"));
                ctx.behaviour(&p.id, format!("associated with {ip} on the ENI the daemon uses (device index 0, or [node] network_interface_id); the agent looked for the ENI that carries {ip}"));
            }
            ctx.behaviour(&p.id, "stop no longer disassociates the Elastic IP: it stays where it is until the next holder takes it with one AssociateAddress (never unassociated during a move)");
            Kind::Eip {
                allocation_id: allocation_id.to_owned(),
                elastic_ip,
                private_ip,
            }
        }
        Agent::SecondaryIp => {
            common(p, &["secondary_private_ip"], credentials, ctx);
            let address = ip_param(p, "secondary_private_ip", ctx)?;
            ctx.mapped(&p.id, format!("secondary_private_ip={address} → [[secondary_ip]] address"));
            ctx.behaviour(&p.id, "stop no longer unassigns the address from the ENI: the next holder reassigns it in one call (AllowReassignment), so it is never on no ENI during a move");
            let (interface, label) = match ipaddr2 {
                Some(ip2) => local_half(ip2, ctx),
                None => {
                    ctx.behaviour(
                        &p.id,
                        "no IPaddr2 configures this address in the CIB: the agent only moved it between ENIs, corosync-eip also adds it as a /32 to eth0 on the holder (set `interface` if it belongs elsewhere)",
                    );
                    (None, None)
                }
            };
            Kind::Secondary { address, interface, label }
        }
        Agent::MoveIp => {
            common(
                p,
                &["ip", "address", "routing_table", "routing_table_role", "interface", "iflabel", "monapi", "lookup_type"],
                credentials,
                ctx,
            );
            let ip = p.param("ip").map(str::trim).filter(|v| !v.is_empty());
            let old = p.param("address").map(str::trim).filter(|v| !v.is_empty());
            let name = match (ip, old) {
                (Some(a), Some(b)) if a != b => {
                    ctx.refuse(&p.id, format!("ip={a} and the deprecated address={b} differ; the agent uses ip, remove address"));
                    return None;
                }
                (Some(_), _) | (None, None) => "ip",
                (None, Some(_)) => "address",
            };
            let address = ip_param(p, name, ctx)?;
            ctx.mapped(&p.id, format!("{name}={address} → [[vip]] address"));
            let tables: Vec<String> = p
                .param("routing_table")
                .unwrap_or_default()
                .split([',', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if tables.is_empty() {
                ctx.refuse(&p.id, "routing_table is not set");
                return None;
            }
            ctx.mapped(&p.id, format!("routing_table={} → route_tables", tables.join(",")));
            let role = p.param("routing_table_role").map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
            if let Some(r) = &role {
                ctx.mapped(&p.id, format!("routing_table_role={r} → route_table_role (assumed once and renewed by the SDK, not before every call)"));
            }
            let interface = p.param("interface").map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
            if let Some(i) = &interface {
                ctx.mapped(&p.id, format!("interface={i} → interface"));
            }
            let label = label(p, interface.as_deref().unwrap_or("eth0"), ctx);
            if let Some(v) = p.param("monapi") {
                ctx.unmapped(&p.id, format!("monapi={v}: the holder always reads the route tables back in EC2, every monitor interval"));
            }
            if let Some(v) = p.param("lookup_type") {
                ctx.unmapped(&p.id, format!("lookup_type={v}: routes are always checked against the holder's ENI"));
            }
            ctx.behaviour(
                &p.id,
                "the route points at the node's ENI of device index 0 (or [node] network_interface_id), where the agent used the ENI behind `interface`: set [node] network_interface_id on nodes where they differ",
            );
            Kind::Vip {
                address,
                route_tables: tables,
                role,
                interface,
                label,
            }
        }
        Agent::Route53 => {
            common(p, &["hostedzoneid", "fullname", "ip", "ttl"], credentials, ctx);
            let zone = p.param("hostedzoneid").map(str::trim).unwrap_or_default().to_owned();
            let record = p.param("fullname").map(str::trim).unwrap_or_default().to_owned();
            if zone.is_empty() || record.is_empty() {
                ctx.refuse(&p.id, "aws-vpc-route53 needs hostedzoneid and fullname");
                return None;
            }
            ctx.mapped(&p.id, format!("hostedzoneid={zone} → [[dns]] hosted_zone_id"));
            ctx.mapped(&p.id, format!("fullname={record} → record (type A, as the agent wrote)"));
            let ttl = match p.param("ttl").map(str::trim) {
                None | Some("") => None,
                Some(t) => match t.parse::<i64>() {
                    Ok(n) => {
                        ctx.mapped(&p.id, format!("ttl={n} → ttl"));
                        Some(n)
                    }
                    Err(_) => {
                        ctx.refuse(&p.id, format!("ttl={t} is not a number of seconds"));
                        return None;
                    }
                },
            };
            let ip = match p.param("ip").map(str::trim).unwrap_or("local") {
                "" | "local" => DnsIp::Local,
                "public" => DnsIp::Public,
                other => match other.parse() {
                    Ok(ip) => DnsIp::Literal(ip),
                    Err(_) => {
                        ctx.refuse(&p.id, format!("ip={other} is not local, public or an IPv4 address"));
                        return None;
                    }
                },
            };
            ctx.unmapped(&p.id, "stop never deleted the record, nor does corosync-eip (delete_on_release = false, the default)");
            Kind::Dns { zone, record, ttl, ip }
        }
        Agent::IpAddr2 => return None,
    };
    Some(Out {
        name: p.id.clone(),
        agent: spec,
        kind,
    })
}

/// IPaddr2's parameters, as the local side of a secondary IP.
fn local_half(ip2: &Primitive, ctx: &mut Ctx) -> (Option<String>, Option<String>) {
    for reason in &ip2.unreadable {
        ctx.refuse(&ip2.id, format!("{reason}: the import reads parameters written as plain values only"));
    }
    let subject = &ip2.id;
    let mut interface = None;
    for pair in &ip2.params {
        let v = pair.value.trim();
        match pair.name.as_str() {
            "ip" => ctx.mapped(subject, format!("IPaddr2 ip={v}: the local side of the same [[secondary_ip]]")),
            "nic" => {
                ctx.mapped(subject, format!("nic={v} → interface"));
                interface = Some(v.to_owned());
            }
            "iflabel" => {}
            "cidr_netmask" if v == "32" => ctx.mapped(subject, "cidr_netmask=32: corosync-eip adds the address as a /32 too"),
            "cidr_netmask" => ctx.behaviour(subject, format!("cidr_netmask={v}: corosync-eip adds the address as a /32, so no second route to the subnet appears")),
            name @ ("broadcast" | "arp_interval" | "arp_count" | "arp_count_refresh" | "arp_bg" | "arp_sender" | "send_arp_opts" | "run_arping" | "arp_mac") => {
                ctx.unmapped(subject, format!("{name}={v}: no ARP announcements; a VPC does not learn addresses from ARP"))
            }
            name @ ("flush_routes" | "noprefixroute" | "preferred_lft" | "lvs_support" | "nodad") => {
                ctx.unmapped(subject, format!("{name}={v}: corosync-eip adds a plain /32 and removes it when another member holds the address"))
            }
            name => ctx.refuse(
                subject,
                format!("IPaddr2 parameter `{name}`={v} changes how the address is configured in a way corosync-eip does not (clones, MAC, namespaces, ...)"),
            ),
        }
    }
    if interface.is_none() {
        ctx.behaviour(
            subject,
            "IPaddr2 without nic found the interface from the routing table; corosync-eip adds the address to eth0 (set `interface` where it belongs elsewhere, e.g. ens5)",
        );
    }
    let label = label(ip2, interface.as_deref().unwrap_or("eth0"), ctx);
    (interface, label)
}

/// The monitor interval: one for the whole daemon, the shortest the CIB asks for.
fn monitor_interval(addrs: &[Addr], ctx: &mut Ctx) -> Option<Duration> {
    let mut intervals: BTreeMap<Duration, Vec<String>> = BTreeMap::new();
    for a in addrs {
        let mut monitored = false;
        let mut timeouts = Vec::new();
        for op in &a.p.ops {
            if let Some(t) = &op.timeout {
                timeouts.push(format!("{} timeout={t}", op.name));
            }
            if op.name != "monitor" {
                continue;
            }
            let Some(d) = parse_interval(&op.interval) else {
                ctx.refuse(&a.p.id, format!("monitor interval `{}` is not a Pacemaker interval", op.interval));
                continue;
            };
            if d.is_zero() {
                continue;
            }
            if !op.enabled {
                ctx.behaviour(&a.p.id, "its monitor was disabled; corosync-eip always verifies every address it holds");
                continue;
            }
            monitored = true;
            intervals.entry(d).or_default().push(a.p.id.clone());
        }
        if !timeouts.is_empty() {
            ctx.unmapped(
                &a.p.id,
                format!("op {}: each EC2 call is bounded by [aws] call_timeout (5s) and an elected node that cannot act hands over after [aws] acquire_timeout (20s)", timeouts.join(", ")),
            );
        }
        if !monitored {
            ctx.behaviour(&a.p.id, "Pacemaker did not monitor it; corosync-eip verifies it in EC2 every monitor interval");
        }
    }
    let shortest = *intervals.keys().next()?;
    if shortest < Duration::from_secs(1) || shortest > Duration::from_secs(3600) {
        ctx.refuse(
            &intervals[&shortest].join(", "),
            format!("monitor interval {}: corosync-eip's monitor_interval is 1s to 1h", duration_text(shortest)),
        );
        return None;
    }
    for (d, users) in &intervals {
        ctx.mapped(&users.join(", "), format!("op monitor interval={} → [cluster] monitor_interval = \"{}\"", duration_text(*d), duration_text(shortest)));
        if *d != shortest {
            ctx.behaviour(
                &users.join(", "),
                format!("verified every {} instead of {}: one interval serves all addresses (one read per kind for all of them)", duration_text(shortest), duration_text(*d)),
            );
        }
    }
    Some(shortest)
}

/// `resource-stickiness`: corosync-eip always behaves as INFINITY.
fn stickiness(
    cib: &Cib,
    addrs: &[Addr],
    units: &Units,
    prefer: &BTreeMap<String, Vec<(u32, Score)>>,
    display: &BTreeMap<String, String>,
    ctx: &mut Ctx,
) {
    let find = |pairs: &[NvPair]| {
        pairs
            .iter()
            .rev()
            .find(|p| p.name == "resource-stickiness" || p.name == "resource_stickiness")
            .map(|p| p.value.clone())
    };
    // Pacemaker 1.0 and older kept the default as a cluster property.
    let legacy = cib.properties.iter().rev().find(|p| p.name == "default-resource-stickiness").map(|p| p.value.clone());
    let default = find(&cib.rsc_defaults).or(legacy.clone());
    let default_score = default.as_deref().and_then(parse_score).unwrap_or(Score::Num(0));
    match &default {
        Some(v) if default_score == Score::Inf => ctx.mapped("resource-stickiness", format!("{v} → corosync-eip is always sticky: a live holder keeps its addresses (no key)")),
        Some(v) => ctx.behaviour(
            "resource-stickiness",
            format!("{v}: corosync-eip is always sticky, like INFINITY: a live holder keeps its addresses, a returning node gets nothing back (use `corosync-eip move`)"),
        ),
        None => ctx.behaviour(
            "resource-stickiness",
            "not set (0): Pacemaker could move addresses when nodes joined; corosync-eip is always sticky, like INFINITY: a live holder keeps its addresses",
        ),
    }
    for d in cib.rsc_defaults.iter().filter(|d| d.name != "resource-stickiness" && d.name != "resource_stickiness") {
        ctx.unmapped(
            "rsc_defaults",
            format!("{}={}: a Pacemaker scheduling default with no corosync-eip equivalent (an elected node that cannot act hands over by itself)", d.name, d.value),
        );
    }
    if legacy.is_some() {
        ctx.mapped("default-resource-stickiness", "read as the default resource-stickiness (Pacemaker 1.0's cluster property)");
    }
    let mut per_unit: BTreeMap<String, Score> = BTreeMap::new();
    for a in addrs {
        let own = find(&a.p.meta)
            .or_else(|| a.group.and_then(|g| find(&g.meta)))
            .and_then(|v| parse_score(&v))
            .unwrap_or(default_score);
        let unit = units.find(&a.p.id);
        let sum = per_unit.entry(unit).or_insert(Score::Num(0));
        // A group's stickiness is the sum of its members'.
        *sum = add_scores(*sum, own);
    }
    for (unit, list) in prefer {
        let Some((node, top)) = list.first() else { continue };
        let stick = per_unit.get(unit).copied().unwrap_or(Score::Num(0));
        let fails_back = match (stick, *top) {
            (Score::Inf, _) => false,
            (_, Score::Inf) => true,
            (s, t) => s < t,
        };
        if fails_back {
            ctx.behaviour(
                display.get(unit).unwrap_or(unit),
                format!(
                    "no failback: Pacemaker moved it back to node id {node} when that node returned (location score {} above stickiness {}); corosync-eip leaves it on the live holder (`corosync-eip move` it back when convenient)",
                    score_text(*top),
                    score_text(stick)
                ),
            );
        }
    }
}

/// aws-vpc-route53's `ip` as a `[[dns]] value`: a literal address must be one the file moves,
/// in the record's group.
fn dns_values(outs: &[(Out, String)], unit_of: &BTreeMap<String, String>, ctx: &mut Ctx) {
    for (o, root) in outs {
        let Kind::Dns { ip: DnsIp::Literal(ip), .. } = &o.kind else { continue };
        let owner = outs.iter().find(|(other, _)| match &other.kind {
            Kind::Secondary { address, .. } | Kind::Vip { address, .. } => address == ip,
            _ => false,
        });
        match owner {
            None => ctx.refuse(
                &o.name,
                format!("ip={ip}: a fixed address that no awsvip or aws-vpc-move-ip in the CIB moves; corosync-eip points a record at its holder's own address or at an address it moves"),
            ),
            Some((other, _)) if unit_of.get(&other.name) != Some(root) => ctx.refuse(
                &o.name,
                format!("ip={ip} is the address of {}, but Pacemaker may run the two on different nodes: put them in one group", other.name),
            ),
            Some(_) => {}
        }
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn render(
    cib: &Cib,
    outs: &[(Out, String)],
    group_of: &BTreeMap<String, Option<String>>,
    prefer: &BTreeMap<String, Vec<(u32, Score)>>,
    monitor: Option<Duration>,
    aws: &AwsOut,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# corosync-eip configuration imported from a Pacemaker CIB by `corosync-eip import-pacemaker`");
    let _ = writeln!(
        t,
        "# (schema {}, crm_feature_set {}). The same file goes on every node.",
        cib.validate_with.as_deref().unwrap_or("unknown"),
        cib.feature_set.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(t, "# Read the import's report, then run `corosync-eip check --config FILE` on each node.");
    if let Some(m) = monitor {
        let _ = writeln!(t, "\n[cluster]\nmonitor_interval = {}", toml_string(&duration_text(m)));
    }
    if aws.region.is_some() || aws.profile.is_some() {
        t.push_str("\n[aws]\n");
        if let Some(r) = &aws.region {
            let _ = writeln!(t, "region = {}", toml_string(r));
        }
        if let Some(p) = &aws.profile {
            let _ = writeln!(t, "profile = {}", toml_string(p));
        }
    }
    let placement = |t: &mut String, root: &String| {
        if let Some(Some(g)) = group_of.get(root) {
            let _ = writeln!(t, "group = {}", toml_string(g));
        }
        if let Some(list) = prefer.get(root) {
            let ids: Vec<String> = list.iter().map(|(id, _)| id.to_string()).collect();
            let _ = writeln!(t, "prefer = [{}]", ids.join(", "));
        }
    };
    let lan = |t: &mut String, interface: &Option<String>, label: &Option<String>| {
        if let Some(i) = interface {
            let _ = writeln!(t, "interface = {}", toml_string(i));
        }
        if let Some(l) = label {
            let _ = writeln!(t, "label = {}", toml_string(l));
        }
    };
    for (o, root) in outs {
        if let Kind::Eip { allocation_id, elastic_ip, private_ip } = &o.kind {
            let _ = writeln!(t, "\n[[eip]]\n# from {} ({}){}", o.name, o.agent, elastic_ip.as_deref().map(|ip| format!(", elastic_ip {ip}")).unwrap_or_default());
            let _ = writeln!(t, "name = {}\nallocation_id = {}", toml_string(&o.name), toml_string(allocation_id));
            if let Some(ip) = private_ip {
                let _ = writeln!(t, "private_ip = {}", toml_string(ip));
            }
            placement(&mut t, root);
        }
    }
    for (o, root) in outs {
        if let Kind::Vip { address, route_tables, role, interface, label } = &o.kind {
            let tables: Vec<String> = route_tables.iter().map(|r| toml_string(r)).collect();
            let _ = writeln!(t, "\n[[vip]]\n# from {} ({})", o.name, o.agent);
            let _ = writeln!(t, "name = {}\naddress = {}\nroute_tables = [{}]", toml_string(&o.name), toml_string(&address.to_string()), tables.join(", "));
            if let Some(r) = role {
                let _ = writeln!(t, "route_table_role = {}", toml_string(r));
            }
            lan(&mut t, interface, label);
            placement(&mut t, root);
        }
    }
    for (o, root) in outs {
        if let Kind::Secondary { address, interface, label } = &o.kind {
            let _ = writeln!(t, "\n[[secondary_ip]]\n# from {} ({})", o.name, o.agent);
            let _ = writeln!(t, "name = {}\naddress = {}", toml_string(&o.name), toml_string(&address.to_string()));
            lan(&mut t, interface, label);
            placement(&mut t, root);
        }
    }
    for (o, root) in outs {
        if let Kind::Dns { zone, record, ttl, ip } = &o.kind {
            let value = match ip {
                DnsIp::Local => "private".to_owned(),
                DnsIp::Public => "public".to_owned(),
                DnsIp::Literal(addr) => outs
                    .iter()
                    .find_map(|(other, _)| match &other.kind {
                        Kind::Secondary { address, .. } if address == addr => Some(format!("secondary_ip:{}", other.name)),
                        Kind::Vip { address, .. } if address == addr => Some(format!("vip:{}", other.name)),
                        _ => None,
                    })
                    .unwrap_or_default(),
            };
            let _ = writeln!(t, "\n[[dns]]\n# from {} ({})", o.name, o.agent);
            let _ = writeln!(t, "name = {}\nhosted_zone_id = {}\nrecord = {}\ntype = \"A\"", toml_string(&o.name), toml_string(zone), toml_string(record));
            if let Some(ttl) = ttl {
                let _ = writeln!(t, "ttl = {ttl}");
            }
            let _ = writeln!(t, "value = {}", toml_string(&value));
            placement(&mut t, root);
        }
    }
    t
}

/// Adds a line of the report about `subject`.
fn note(list: &mut Vec<Note>, subject: &str, text: impl Into<String>) {
    list.push(Note {
        subject: subject.to_owned(),
        text: text.into(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cib(resources: &str, constraints: &str) -> String {
        format!(
            r#"<cib validate-with="pacemaker-3.9" crm_feature_set="3.16.1"><configuration><crm_config/>
            <nodes><node id="1" uname="node1"/><node id="2" uname="node2"/></nodes>
            <resources>{resources}</resources><constraints>{constraints}</constraints>
            <rsc_defaults><meta_attributes id="d"><nvpair id="d1" name="resource-stickiness" value="INFINITY"/></meta_attributes></rsc_defaults>
            </configuration><status/></cib>"#
        )
    }

    fn primitive(id: &str, agent: &str, params: &[(&str, &str)]) -> String {
        let pairs: String = params.iter().map(|(n, v)| format!(r#"<nvpair id="{id}-{n}" name="{n}" value="{v}"/>"#)).collect();
        format!(r#"<primitive id="{id}" class="ocf" provider="heartbeat" type="{agent}"><instance_attributes id="{id}-ia">{pairs}</instance_attributes></primitive>"#)
    }

    fn eip(id: &str) -> String {
        primitive(id, "awseip", &[("elastic_ip", "203.0.113.1"), ("allocation_id", "eipalloc-0123456789abcdef0")])
    }

    fn refusals(xml: &str) -> Vec<Refusal> {
        match import_cib(xml, &Options::default()) {
            Err(ImportError::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn scores_and_intervals_read_as_pacemaker_writes_them() {
        assert_eq!(parse_score("INFINITY"), Some(Score::Inf));
        assert_eq!(parse_score("-INFINITY"), Some(Score::NegInf));
        assert_eq!(parse_score("+100"), Some(Score::Num(100)));
        assert_eq!(parse_score("2000000"), Some(Score::Inf));
        assert_eq!(parse_score("lots"), None);
        assert_eq!(parse_interval("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_interval("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_interval("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_interval("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_interval("PT1M30S"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("soon"), None);
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn an_eip_becomes_an_eip_section_that_validates() {
        let import = import_cib(&cib(&eip("web"), ""), &Options::default()).expect("imports");
        assert!(import.toml.contains("[[eip]]"), "{}", import.toml);
        assert!(import.toml.contains("allocation_id = \"eipalloc-0123456789abcdef0\""));
        let config = crate::config::Config::parse(&import.toml, Path::new("t")).expect("valid");
        assert_eq!(config.eips[0].name, "web");
    }

    #[test]
    fn a_group_with_locations_becomes_group_and_prefer_in_score_order() {
        let resources = format!(
            r#"<group id="front">{}{}</group>"#,
            eip("front-eip"),
            primitive("front-vip", "aws-vpc-move-ip", &[("ip", "172.31.255.9"), ("routing_table", "rtb-0a, rtb-0b"), ("interface", "eth0")])
        );
        let constraints = r#"<rsc_location id="l1" rsc="front" node="node1" score="50"/><rsc_location id="l2" rsc="front" node="node2" score="100"/>"#;
        let import = import_cib(&cib(&resources, constraints), &Options::default()).expect("imports");
        let config = crate::config::Config::parse(&import.toml, Path::new("t")).expect("valid");
        assert_eq!(config.eips[0].group.as_deref(), Some("front"));
        assert_eq!(config.eips[0].prefer, vec![2, 1]);
        assert_eq!(config.vips[0].prefer, vec![2, 1]);
        assert_eq!(config.vips[0].route_tables, vec!["rtb-0a".to_owned(), "rtb-0b".to_owned()]);
    }

    #[test]
    fn colocated_addresses_share_a_group_named_after_the_constraint() {
        let resources = format!("{}{}", eip("a"), primitive("b", "awsvip", &[("secondary_private_ip", "10.0.0.9")]));
        let import = import_cib(&cib(&resources, r#"<rsc_colocation id="a-with-b" rsc="a" with-rsc="b" score="INFINITY"/>"#), &Options::default())
            .expect("imports");
        let config = crate::config::Config::parse(&import.toml, Path::new("t")).expect("valid");
        assert_eq!(config.eips[0].group.as_deref(), Some("a-with-b"));
        assert_eq!(config.secondary_ips[0].group.as_deref(), Some("a-with-b"));
    }

    #[test]
    fn refusals_name_what_they_refuse() {
        let with_service = format!(r#"<group id="g">{}<primitive id="httpd" class="systemd" type="httpd"/></group>"#, eip("e"));
        let r = refusals(&cib(&with_service, ""));
        assert!(r.iter().any(|r| r.subject == "g" && r.reason.contains("httpd")), "{r:?}");

        let finite = format!("{}{}", eip("a"), primitive("b", "awsvip", &[("secondary_private_ip", "10.0.0.9")]));
        let r = refusals(&cib(&finite, r#"<rsc_colocation id="c" rsc="a" with-rsc="b" score="100"/>"#));
        assert!(r.iter().any(|r| r.subject == "c" && r.reason.contains("score 100")), "{r:?}");

        let r = refusals(&cib(&eip("a"), r#"<rsc_location id="ban" rsc="a" node="node2" score="-INFINITY"/>"#));
        assert!(r.iter().any(|r| r.subject == "ban"), "{r:?}");

        let r = refusals(&cib(&eip("a"), r#"<rsc_location id="far" rsc="a" node="node9" score="10"/>"#));
        assert!(r.iter().any(|r| r.subject == "far" && r.reason.contains("--node node9=ID")), "{r:?}");

        let unknown = primitive("x", "awseip", &[("allocation_id", "eipalloc-1"), ("shiny", "1")]);
        let r = refusals(&cib(&unknown, ""));
        assert!(r.iter().any(|r| r.subject == "x" && r.reason.contains("shiny")), "{r:?}");

        let lone_ipaddr2 = format!("{}{}", eip("a"), primitive("ip", "IPaddr2", &[("ip", "10.0.0.5")]));
        let r = refusals(&cib(&lone_ipaddr2, ""));
        assert!(r.iter().any(|r| r.subject == "ip" && r.reason.contains("no awsvip")), "{r:?}");
    }

    #[test]
    fn a_node_in_standby_is_reported_with_the_command_that_carries_it_over() {
        let xml = cib(&eip("a"), "").replace(
            r#"<node id="2" uname="node2"/>"#,
            r#"<node id="2" uname="node2"><instance_attributes id="n2"><nvpair id="n2-s" name="standby" value="on"/></instance_attributes></node>"#,
        );
        let import = import_cib(&xml, &Options::default()).expect("imports");
        assert!(
            import.report.behaviour.iter().any(|n| n.subject == "node2" && n.text.contains("corosync-eip standby node2")),
            "{:?}",
            import.report.behaviour
        );
    }

    #[test]
    fn node_option_supplies_ids_the_cib_lacks() {
        let xml = cib(&eip("a"), r#"<rsc_location id="far" rsc="a" node="node9" score="10"/>"#);
        let options = Options {
            node_ids: [("node9".to_owned(), 9)].into_iter().collect(),
        };
        let import = import_cib(&xml, &options).expect("imports");
        assert!(import.toml.contains("prefer = [9]"), "{}", import.toml);
    }

    #[test]
    fn the_report_says_what_has_no_equivalent() {
        let p = primitive("a", "awseip", &[("allocation_id", "eipalloc-1"), ("api_delay", "3"), ("awscli", "/usr/bin/aws")]);
        let import = import_cib(&cib(&p, ""), &Options::default()).expect("imports");
        let names: Vec<&str> = import.report.unmapped.iter().map(|n| n.text.as_str()).collect();
        assert!(names.iter().any(|t| t.starts_with("api_delay=3")), "{names:?}");
        assert!(names.iter().any(|t| t.starts_with("awscli=")), "{names:?}");
        assert!(import.report.behaviour.iter().any(|n| n.text.contains("no longer disassociates")));
        let text = import.report.render();
        assert!(text.contains("No equivalent"), "{text}");
    }
}
