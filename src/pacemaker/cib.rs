//! The CIB as a plain model: only what the import reads, with every construct it cannot read
//! kept as a note so that the mapping can refuse it by name instead of skipping it.
//!
//! Pacemaker releases from 1.0 to 2.1 wrote the same elements for what matters here
//! (`primitive`, `group`, `clone`/`master`, `rsc_location`, `rsc_colocation`, `rsc_order`,
//! `nvpair`s in `instance_attributes`/`meta_attributes`); what changed between them are ids,
//! schema names and a few deprecated spellings, which this parser accepts alike.

use roxmltree::{Document, Node};

use super::ImportError;

/// What the import needs from one CIB.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cib {
    /// `validate-with` of the root element (the schema the writer used), for the report.
    pub validate_with: Option<String>,
    /// `crm_feature_set` of the root element, for the report.
    pub feature_set: Option<String>,
    /// `<nodes>`: Pacemaker's node ids (corosync node ids in a corosync 2+ cluster) by name.
    pub nodes: Vec<CibNode>,
    /// Top-level resources in CIB order.
    pub resources: Vec<Resource>,
    /// Constraints in CIB order.
    pub constraints: Vec<Constraint>,
    /// `<rsc_defaults>` meta attributes.
    pub rsc_defaults: Vec<NvPair>,
    /// `<crm_config>` cluster properties.
    pub properties: Vec<NvPair>,
}

/// One `<node>` of `<nodes>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CibNode {
    /// `id`: numeric with corosync 2 and later, a UUID in heartbeat-era clusters.
    pub id: String,
    /// `uname`: the name location constraints use.
    pub uname: String,
    /// Node attributes (`standby`, `maintenance`, ...) as written, without rules.
    pub attributes: Vec<NvPair>,
}

/// One name/value pair, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct NvPair {
    /// Attribute name.
    pub name: String,
    /// Attribute value.
    pub value: String,
}

/// A top-level entry of `<resources>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A primitive outside any group.
    Primitive(Primitive),
    /// A group and its primitives, in start order.
    Group(Group),
    /// A `clone`, `master` (promotable before Pacemaker 2) or `bundle`: the ids of what it
    /// contains, so a cloned address agent can be named in the refusal.
    Multi(Multi),
}

/// A group of primitives that Pacemaker keeps on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The group's id.
    pub id: String,
    /// Its primitives in start order.
    pub members: Vec<Primitive>,
    /// Its meta attributes (they apply to every member).
    pub meta: Vec<NvPair>,
    /// Constructs in the group's own attribute sets the import cannot read.
    pub unreadable: Vec<String>,
}

/// A resource that runs in several instances (clone, promotable clone, bundle).
#[derive(Debug, Clone, PartialEq)]
pub struct Multi {
    /// Its id.
    pub id: String,
    /// `clone`, `master` or `bundle`.
    pub tag: String,
    /// The primitives inside (also those inside a cloned group).
    pub primitives: Vec<Primitive>,
}

/// One `<primitive>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Primitive {
    /// Its id, which becomes the resource's name.
    pub id: String,
    /// `class` (`ocf`, `systemd`, `stonith`, ...).
    pub class: String,
    /// `provider` (`heartbeat` for the agents of resource-agents).
    pub provider: Option<String>,
    /// `type`: the agent's name.
    pub agent: String,
    /// Instance attributes (the agent's parameters).
    pub params: Vec<NvPair>,
    /// Meta attributes (target-role, resource-stickiness, ...).
    pub meta: Vec<NvPair>,
    /// Operations.
    pub ops: Vec<Op>,
    /// Constructs the import cannot read faithfully (rules, references, templates), each
    /// described for the refusal.
    pub unreadable: Vec<String>,
}

impl Primitive {
    /// `class:provider:type`, as crm shows it.
    pub fn agent_spec(&self) -> String {
        match &self.provider {
            Some(p) => format!("{}:{p}:{}", self.class, self.agent),
            None => format!("{}:{}", self.class, self.agent),
        }
    }

    /// The value of an instance attribute.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().rev().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

/// One `<op>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// `name`: monitor, start, stop, ...
    pub name: String,
    /// `interval` as written ("20s", "20", "PT20S", ...).
    pub interval: String,
    /// `timeout` as written, if any.
    pub timeout: Option<String>,
    /// `enabled="false"` turns a recurring monitor off.
    pub enabled: bool,
    /// `role`: a monitor of one role of a promotable resource.
    pub role: Option<String>,
}

/// One constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// `rsc_location`.
    Location {
        /// Constraint id.
        id: String,
        /// `rsc` (absent with resource sets or `rsc-pattern`).
        rsc: Option<String>,
        /// `node`.
        node: Option<String>,
        /// `score` as written.
        score: Option<String>,
        /// What the import cannot express: rules, patterns, roles, sets, discovery modes.
        unreadable: Vec<String>,
    },
    /// `rsc_colocation`.
    Colocation {
        /// Constraint id.
        id: String,
        /// `rsc`: the dependent resource.
        rsc: Option<String>,
        /// `with-rsc`: the resource it follows.
        with_rsc: Option<String>,
        /// `score` as written.
        score: Option<String>,
        /// Resource ids of resource sets (the constraint is refused, but names them).
        set_members: Vec<String>,
        /// What the import cannot express: roles, sets, node attributes.
        unreadable: Vec<String>,
    },
    /// `rsc_order`.
    Order {
        /// Constraint id.
        id: String,
        /// `first`.
        first: Option<String>,
        /// `then`.
        then: Option<String>,
        /// Resource ids of resource sets.
        set_members: Vec<String>,
        /// What the import cannot express: actions other than start, sets.
        unreadable: Vec<String>,
    },
    /// `rsc_ticket` or anything newer.
    Other {
        /// Constraint id.
        id: String,
        /// The element's name.
        tag: String,
    },
}

fn attr(node: Node, name: &str) -> Option<String> {
    node.attribute(name).map(str::to_owned)
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    elements(node).find(|n| n.has_tag_name(name))
}

/// Reads a CIB: the whole `cibadmin -Q` output, or only its `<configuration>` (as `cibadmin
/// -Q -o configuration` and some backups have it).
pub fn parse(xml: &str) -> Result<Cib, ImportError> {
    let doc = Document::parse(xml).map_err(|e| ImportError::Xml(e.to_string()))?;
    let root = doc.root_element();
    let configuration = if root.has_tag_name("cib") {
        child(root, "configuration").ok_or_else(|| ImportError::NotACib("<cib> has no <configuration>".into()))?
    } else if root.has_tag_name("configuration") {
        root
    } else {
        return Err(ImportError::NotACib(format!(
            "the document's root is <{}>, not <cib> (is this the output of `cibadmin -Q`?)",
            root.tag_name().name()
        )));
    };
    let mut cib = Cib {
        validate_with: attr(root, "validate-with"),
        feature_set: attr(root, "crm_feature_set"),
        ..Cib::default()
    };
    if let Some(nodes) = child(configuration, "nodes") {
        for n in elements(nodes).filter(|n| n.has_tag_name("node")) {
            if let (Some(id), Some(uname)) = (attr(n, "id"), attr(n, "uname")) {
                let mut ignored = Vec::new();
                let attributes = elements(n)
                    .filter(|set| set.has_tag_name("instance_attributes"))
                    .flat_map(|set| nvpairs(set, "node attribute set", &mut ignored))
                    .collect();
                cib.nodes.push(CibNode { id, uname, attributes });
            }
        }
    }
    if let Some(config) = child(configuration, "crm_config") {
        let mut ignored = Vec::new();
        for set in elements(config).filter(|n| n.has_tag_name("cluster_property_set")) {
            cib.properties.extend(nvpairs(set, "cluster property set", &mut ignored));
        }
    }
    if let Some(defaults) = child(configuration, "rsc_defaults") {
        let mut ignored = Vec::new();
        for set in elements(defaults).filter(|n| n.has_tag_name("meta_attributes")) {
            cib.rsc_defaults.extend(nvpairs(set, "rsc_defaults", &mut ignored));
        }
    }
    if let Some(resources) = child(configuration, "resources") {
        for r in elements(resources) {
            match r.tag_name().name() {
                "primitive" => cib.resources.push(Resource::Primitive(primitive(r))),
                "group" => cib.resources.push(Resource::Group(group(r))),
                tag @ ("clone" | "master" | "bundle") => {
                    let primitives = r
                        .descendants()
                        .filter(|n| n.is_element() && n.has_tag_name("primitive"))
                        .map(primitive)
                        .collect();
                    cib.resources.push(Resource::Multi(Multi {
                        id: attr(r, "id").unwrap_or_default(),
                        tag: tag.to_owned(),
                        primitives,
                    }));
                }
                // Templates are read where a primitive uses one; nothing runs from a template
                // alone.
                _ => {}
            }
        }
    }
    if let Some(constraints) = child(configuration, "constraints") {
        cib.constraints = elements(constraints).map(constraint).collect();
    }
    Ok(cib)
}

/// The pairs of one attribute set. A set or pair written as a reference, or with rules (values
/// that depend on the node or the time), cannot be read as one value: it is noted instead.
fn nvpairs(set: Node, what: &str, unreadable: &mut Vec<String>) -> Vec<NvPair> {
    let set_id = set.attribute("id").unwrap_or("?");
    if set.attribute("id-ref").is_some() {
        unreadable.push(format!("{what} refers to another attribute set (id-ref)"));
        return Vec::new();
    }
    if child(set, "rule").is_some() {
        unreadable.push(format!("{what} `{set_id}` has a rule (values that depend on the node or the time)"));
        return Vec::new();
    }
    let mut pairs = Vec::new();
    for pair in elements(set).filter(|n| n.has_tag_name("nvpair")) {
        match (pair.attribute("name"), pair.attribute("value")) {
            (Some(name), Some(value)) => pairs.push(NvPair {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
            (Some(name), None) => pairs.push(NvPair {
                name: name.to_owned(),
                value: String::new(),
            }),
            _ => unreadable.push(format!("{what} `{set_id}` has a pair written as a reference (id-ref)")),
        }
    }
    pairs
}

fn primitive(p: Node) -> Primitive {
    let id = attr(p, "id").unwrap_or_default();
    let mut unreadable = Vec::new();
    if let Some(template) = p.attribute("template") {
        unreadable.push(format!("its parameters come from the resource template `{template}`"));
    }
    let mut params = Vec::new();
    let mut meta = Vec::new();
    for set in elements(p) {
        match set.tag_name().name() {
            "instance_attributes" => params.extend(nvpairs(set, "instance attribute set", &mut unreadable)),
            "meta_attributes" => meta.extend(nvpairs(set, "meta attribute set", &mut unreadable)),
            "utilization" => unreadable.push("it has utilization attributes (placement by capacity)".into()),
            _ => {}
        }
    }
    let ops = child(p, "operations")
        .map(|ops| {
            elements(ops)
                .filter(|o| o.has_tag_name("op"))
                .map(|o| Op {
                    name: attr(o, "name").unwrap_or_default(),
                    interval: attr(o, "interval").unwrap_or_else(|| "0".into()),
                    timeout: attr(o, "timeout"),
                    enabled: o.attribute("enabled").is_none_or(|v| !is_false(v)),
                    role: attr(o, "role"),
                })
                .collect()
        })
        .unwrap_or_default();
    Primitive {
        id,
        class: attr(p, "class").unwrap_or_default(),
        provider: attr(p, "provider"),
        agent: attr(p, "type").unwrap_or_default(),
        params,
        meta,
        ops,
        unreadable,
    }
}

fn group(g: Node) -> Group {
    let mut unreadable = Vec::new();
    let mut meta = Vec::new();
    for set in elements(g).filter(|n| n.has_tag_name("meta_attributes")) {
        meta.extend(nvpairs(set, "meta attribute set", &mut unreadable));
    }
    Group {
        id: attr(g, "id").unwrap_or_default(),
        members: elements(g).filter(|n| n.has_tag_name("primitive")).map(primitive).collect(),
        meta,
        unreadable,
    }
}

/// The resource ids named by `<resource_set>`s inside a constraint.
fn set_members(c: Node) -> Vec<String> {
    c.descendants()
        .filter(|n| n.is_element() && n.has_tag_name("resource_ref"))
        .filter_map(|n| attr(n, "id"))
        .collect()
}

fn constraint(c: Node) -> Constraint {
    let id = attr(c, "id").unwrap_or_default();
    let mut unreadable = Vec::new();
    let has_sets = child(c, "resource_set").is_some();
    if has_sets {
        unreadable.push("it uses resource sets".to_owned());
    }
    match c.tag_name().name() {
        "rsc_location" => {
            if child(c, "rule").is_some() {
                unreadable.push("it is written as a rule".to_owned());
            }
            if let Some(pattern) = c.attribute("rsc-pattern") {
                unreadable.push(format!("it applies to a pattern of resource ids (`{pattern}`)"));
            }
            // "Started" is what a constraint without a role means (crm resource move wrote it).
            if let Some(role) = c.attribute("role").filter(|r| *r != "Started") {
                unreadable.push(format!("it applies to the role `{role}` only"));
            }
            if let Some(discovery) = c.attribute("resource-discovery").filter(|d| *d != "always") {
                unreadable.push(format!("it sets resource-discovery={discovery}"));
            }
            if c.attribute("score-attribute").is_some() {
                unreadable.push("its score comes from a node attribute (score-attribute)".to_owned());
            }
            Constraint::Location {
                id,
                rsc: attr(c, "rsc"),
                node: attr(c, "node"),
                score: attr(c, "score"),
                unreadable,
            }
        }
        "rsc_colocation" => {
            for role_attr in ["rsc-role", "with-rsc-role"] {
                if let Some(role) = c.attribute(role_attr).filter(|r| *r != "Started") {
                    unreadable.push(format!("it follows the role `{role}` ({role_attr})"));
                }
            }
            if let Some(node_attr) = c.attribute("node-attribute").filter(|a| *a != "#uname") {
                unreadable.push(format!("it colocates by the node attribute `{node_attr}`"));
            }
            Constraint::Colocation {
                id,
                rsc: attr(c, "rsc"),
                with_rsc: attr(c, "with-rsc"),
                score: attr(c, "score"),
                set_members: set_members(c),
                unreadable,
            }
        }
        "rsc_order" => {
            for action_attr in ["first-action", "then-action"] {
                if let Some(action) = c.attribute(action_attr).filter(|a| *a != "start") {
                    unreadable.push(format!("it orders the action `{action}` ({action_attr})"));
                }
            }
            Constraint::Order {
                id,
                first: attr(c, "first"),
                then: attr(c, "then"),
                set_members: set_members(c),
                unreadable,
            }
        }
        tag => Constraint::Other { id, tag: tag.to_owned() },
    }
}

/// Pacemaker's booleans: "false", "no", "off", "n", "0" (any case) are false.
pub fn is_false(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "false" | "no" | "off" | "n" | "0")
}

/// Pacemaker's booleans: "true", "yes", "on", "y", "1" (any case) are true.
pub fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "y" | "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_primitive_its_params_meta_and_ops() {
        let cib = parse(
            r#"<cib validate-with="pacemaker-3.9" crm_feature_set="3.16.1"><configuration>
            <crm_config/><nodes><node id="1" uname="a"/></nodes>
            <resources><primitive id="e" class="ocf" provider="heartbeat" type="awseip">
              <instance_attributes id="e-ia"><nvpair id="e-ia-1" name="allocation_id" value="eipalloc-1"/></instance_attributes>
              <meta_attributes id="e-ma"><nvpair id="e-ma-1" name="target-role" value="Started"/></meta_attributes>
              <operations><op id="e-m" name="monitor" interval="20s" enabled="false"/></operations>
            </primitive></resources><constraints/></configuration><status/></cib>"#,
        )
        .expect("parses");
        assert_eq!(cib.validate_with.as_deref(), Some("pacemaker-3.9"));
        assert_eq!(
            cib.nodes,
            vec![CibNode {
                id: "1".into(),
                uname: "a".into(),
                attributes: Vec::new()
            }]
        );
        let Resource::Primitive(p) = &cib.resources[0] else { panic!("a primitive") };
        assert_eq!(p.agent_spec(), "ocf:heartbeat:awseip");
        assert_eq!(p.param("allocation_id"), Some("eipalloc-1"));
        assert_eq!(p.meta[0].name, "target-role");
        assert!(!p.ops[0].enabled);
        assert!(p.unreadable.is_empty());
    }

    #[test]
    fn rules_and_references_are_noted_not_read() {
        let cib = parse(
            r#"<configuration><resources><primitive id="v" class="ocf" provider="heartbeat" type="awsvip" template="t">
              <instance_attributes id="v-ia"><rule id="r" score="0"/><nvpair id="x" name="secondary_private_ip" value="10.0.0.1"/></instance_attributes>
            </primitive></resources><constraints>
              <rsc_location id="l" rsc="v"><rule id="l-r" score="10"/></rsc_location>
              <rsc_colocation id="c" rsc="v" with-rsc="db" score="INFINITY" with-rsc-role="Promoted"/>
              <rsc_ticket id="t" rsc="v" ticket="x"/>
            </constraints></configuration>"#,
        )
        .expect("parses");
        let Resource::Primitive(p) = &cib.resources[0] else { panic!("a primitive") };
        assert_eq!(p.unreadable.len(), 2, "{:?}", p.unreadable);
        assert!(p.params.is_empty());
        let Constraint::Location { unreadable, .. } = &cib.constraints[0] else { panic!("a location") };
        assert!(unreadable[0].contains("rule"));
        let Constraint::Colocation { unreadable, .. } = &cib.constraints[1] else { panic!("a colocation") };
        assert!(unreadable[0].contains("Promoted"));
        assert!(matches!(&cib.constraints[2], Constraint::Other { tag, .. } if tag == "rsc_ticket"));
    }

    #[test]
    fn other_documents_are_refused() {
        assert!(matches!(parse("<resource-agent name=\"x\"/>"), Err(ImportError::NotACib(_))));
        assert!(matches!(parse("<cib"), Err(ImportError::Xml(_))));
        assert!(matches!(parse("<cib/>"), Err(ImportError::NotACib(_))));
    }
}
