//! `corosync-eip import-pacemaker`: a Pacemaker CIB's address resources as a corosync-eip
//! configuration, and a report of what was mapped, what has no equivalent and what behaves
//! differently.
//!
//! The import is pure: CIB text in, TOML text and a report out (`cib` reads the XML into a
//! plain model, `map` decides). Anything that cannot be carried over with the same meaning is
//! refused with the resource or constraint it concerns, never guessed; every refusal of one CIB
//! is listed at once, so an admin fixes them in one pass. The generated file is validated with
//! the daemon's own configuration loader before it is handed back.

pub mod cib;
mod map;

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use map::import_cib;

/// What the admin adds to the CIB's own information.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Corosync node id by node name, for nodes the CIB's `<nodes>` section lacks or names by
    /// a UUID (`--node NAME=ID`); these take precedence over the CIB.
    pub node_ids: BTreeMap<String, u32>,
}

/// A successful import.
#[derive(Debug, Clone)]
pub struct Import {
    /// The configuration file, already validated by `Config::parse`.
    pub toml: String,
    /// What the admin should read before installing it.
    pub report: Report,
}

/// Why nothing was generated.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not well-formed XML.
    #[error("the CIB is not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed XML, but not a CIB.
    #[error("not a Pacemaker CIB: {0}")]
    NotACib(String),
    /// The CIB has no address resource to import.
    #[error("the CIB has no awseip, awsvip, aws-vpc-move-ip or aws-vpc-route53 primitive to import")]
    NothingToImport,
    /// Resources or constraints that cannot be carried over with the same meaning.
    #[error("{}", render_refusals(.0))]
    Refused(Vec<Refusal>),
    /// The mapped file does not pass the daemon's own validation (a value Pacemaker accepted
    /// that corosync-eip cannot act on).
    #[error("the generated configuration is invalid: {0}")]
    Invalid(String),
}

/// One thing the import will not carry over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The primitive, group, clone or constraint id.
    pub subject: String,
    /// Why, and what the admin can do.
    pub reason: String,
}

fn render_refusals(refusals: &[Refusal]) -> String {
    let mut text = format!("refused to import this CIB ({} problem(s)); nothing was written:", refusals.len());
    for r in refusals {
        let _ = write!(text, "\n  {}: {}", r.subject, r.reason);
    }
    text
}

/// One line of the report, about one CIB item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The primitive, group, constraint or setting the line is about.
    pub subject: String,
    /// What happened to it.
    pub text: String,
}

/// The report printed beside the generated file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Where the CIB came from and who wrote it (schema, feature set, nodes).
    pub source: Vec<String>,
    /// Settings carried over, and where they went.
    pub mapped: Vec<Note>,
    /// Settings with no equivalent, and why none is needed or possible.
    pub unmapped: Vec<Note>,
    /// What works differently under corosync-eip.
    pub behaviour: Vec<Note>,
    /// CIB resources that are not addresses and stay out of the file.
    pub not_imported: Vec<Note>,
}

impl Report {
    /// The report as text, one section per kind of line.
    pub fn render(&self) -> String {
        let mut out = String::from("corosync-eip import-pacemaker report\n");
        for line in &self.source {
            let _ = writeln!(out, "  {line}");
        }
        for (title, notes) in [
            ("Mapped", &self.mapped),
            ("No equivalent (not carried over)", &self.unmapped),
            ("Changes in behaviour", &self.behaviour),
            ("Not imported (not addresses)", &self.not_imported),
        ] {
            let _ = writeln!(out, "\n{title}:");
            if notes.is_empty() {
                out.push_str("  (none)\n");
            }
            for n in notes {
                let _ = writeln!(out, "  {}: {}", n.subject, n.text);
            }
        }
        out
    }
}

/// Reads `--node NAME=ID`.
pub fn parse_node_option(text: &str) -> Result<(String, u32), String> {
    let (name, id) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=ID (a node name and its corosync node id)"))?;
    let id: u32 = id
        .trim()
        .parse()
        .ok()
        .filter(|id| *id != 0)
        .ok_or_else(|| format!("`{id}` in `{text}` is not a corosync node id (1 or more)"))?;
    if name.trim().is_empty() {
        return Err(format!("`{text}` names no node"));
    }
    Ok((name.trim().to_owned(), id))
}
