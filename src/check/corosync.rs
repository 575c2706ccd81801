//! The corosync items: is corosync running, quorate and tuned for AWS, and do the members'
//! configuration files agree. They judge plain facts; reading them is the corosync adapter's.

use std::time::Duration;

use super::CheckItem;
use crate::corosync::{CorosyncFacts, FactsUnavailable};

/// Bound of the whole corosync part (it runs beside the AWS part).
const COROSYNC_BUDGET: Duration = Duration::from_secs(3);
/// Below this runtime token (ms), warn: AWS networks have hiccups of a few seconds.
const AWS_MIN_TOKEN_MS: u64 = 3000;
/// What vendors recommend on AWS (ms).
const AWS_RECOMMENDED_TOKEN_MS: u64 = 30000;

/// The corosync items, within `COROSYNC_BUDGET` (corosync's IPC can hang).
pub(super) async fn corosync_checks() -> Vec<CheckItem> {
    match crate::corosync::facts_within(COROSYNC_BUDGET).await {
        Ok(facts) => corosync_items(&facts),
        Err(e @ FactsUnavailable::Thread(_)) => vec![CheckItem::fail("corosync", e.to_string(), "retry")],
        Err(e @ FactsUnavailable::Timeout(_)) => vec![CheckItem::fail(
            "corosync",
            e.to_string(),
            "corosync is hung or overloaded: see `journalctl -u corosync` and `corosync-cfgtool -s`",
        )],
    }
}

/// The corosync items from what corosync said: running, quorate, tuned for AWS, every node of
/// the nodelist a member.
pub(super) fn corosync_items(f: &CorosyncFacts) -> Vec<CheckItem> {
    let mut items = Vec::new();
    match &f.cpg {
        Ok(node) => items.push(CheckItem::pass(
            "corosync",
            format!("running, CPG reachable, local node id {node}"),
        )),
        Err(e) => {
            items.push(CheckItem::fail(
                "corosync",
                format!("cannot reach corosync's CPG: {e}"),
                "start corosync (systemctl start corosync) and check `corosync-cfgtool -s`; \
                 the check must run as root (or a user allowed by uidgid in corosync.conf)",
            ));
            return items;
        }
    }
    match &f.quorate {
        Some(Ok(true)) => items.push(CheckItem::pass(
            "quorum",
            format!("quorate, {} member(s) in the membership", f.members.len()),
        )),
        Some(Ok(false)) => items.push(CheckItem::fail(
            "quorum",
            format!("not quorate ({} member(s) in the membership)", f.members.len()),
            "no address moves without quorum: start the other nodes, check the ring (`corosync-cfgtool -s`) and `corosync-quorumtool -s`",
        )),
        Some(Err(e)) => items.push(CheckItem::fail(
            "quorum",
            format!("cannot read quorum: {e}"),
            "configure a quorum provider (quorum { provider: corosync_votequorum }) in corosync.conf",
        )),
        None => {}
    }
    match (f.token, f.consensus) {
        (Some(token), consensus) => {
            let consensus_ok = consensus.is_none_or(|c| c * 10 >= token * 12);
            let cons = consensus
                .map(|c| format!(", consensus {c} ms"))
                .unwrap_or_default();
            if !consensus_ok {
                items.push(CheckItem::fail(
                    "totem timing",
                    format!("token {token} ms{cons}: consensus is below 1.2 × token"),
                    format!(
                        "set totem.consensus to at least {} ms (or remove it: corosync then uses 1.2 × token) and reload corosync",
                        token * 12 / 10
                    ),
                ));
            } else if token < AWS_MIN_TOKEN_MS {
                items.push(CheckItem::warn(
                    "totem timing",
                    format!("token {token} ms{cons}: short for AWS, where network stalls of seconds happen"),
                    format!(
                        "vendors recommend token {AWS_RECOMMENDED_TOKEN_MS} ms on AWS; the trade-off is failure detection time: \
                         a failed holder is detected after token + consensus (now ≈ {} ms), but a short token turns every hiccup into a membership change",
                        token + consensus.unwrap_or(token * 12 / 10)
                    ),
                ));
            } else {
                items.push(CheckItem::pass(
                    "totem timing",
                    format!("token {token} ms{cons} (failure detection ≈ token + consensus)"),
                ));
            }
        }
        (None, _) => items.push(CheckItem::warn(
            "totem timing",
            format!(
                "cannot read runtime.config.totem.token{}",
                f.cmap_error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            "check `corosync-cmapctl runtime.config.totem`",
        )),
    }
    if !f.nodelist.is_empty() {
        let missing: Vec<String> = f
            .nodelist
            .iter()
            .filter(|(id, _)| !f.members.contains(id))
            .map(|(id, name)| format!("{name} (id {id})"))
            .collect();
        let unknown: Vec<String> = f
            .members
            .iter()
            .filter(|id| !f.nodelist.contains_key(id))
            .map(|id| format!("id {id}"))
            .collect();
        if missing.is_empty() && unknown.is_empty() {
            items.push(CheckItem::pass(
                "corosync nodes",
                format!("all {} nodes of the nodelist are members", f.nodelist.len()),
            ));
        } else {
            let mut detail = Vec::new();
            if !missing.is_empty() {
                detail.push(format!(
                    "in the nodelist but not members: {}",
                    missing.join(", ")
                ));
            }
            if !unknown.is_empty() {
                detail.push(format!(
                    "members not in the nodelist: {}",
                    unknown.join(", ")
                ));
            }
            items.push(CheckItem::warn(
                "corosync nodes",
                detail.join("; "),
                "start corosync on the missing nodes and check the ring between them (security groups must allow the knet port, UDP 5405)",
            ));
        }
    }
    items
}


/// Whether every member's file agrees with ours, as the running daemon sees it, and which
/// members said they cannot serve a unit. Without a running daemon there is nothing to compare.
pub(super) fn agreement_item(status: Option<&crate::status::StatusReport>) -> CheckItem {
    let name = "cluster configuration";
    let Some(status) = status else {
        return CheckItem::warn(
            name,
            "not compared: the daemon is not running here, so the other members' files are unknown",
            "start corosync-eip and run `corosync-eip check` again to compare the members' files",
        );
    };
    if !status.synced {
        return CheckItem::warn(name, "not compared yet: the daemon has not synced with the cluster", "wait a moment and run the check again");
    }
    let mut problems: Vec<String> = status
        .conflicts
        .iter()
        .map(|c| {
            let groups: Vec<String> = c
                .variants
                .iter()
                .map(|v| format!("nodes {}", v.nodes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")))
                .collect();
            format!("{} differs ({}; settings: {})", c.unit, groups.join(" vs "), c.keys.join(", "))
        })
        .collect();
    for m in &status.members {
        for u in &m.cannot_serve {
            problems.push(format!("node {} cannot serve {} ({}): {}", m.node_id, u.unit, u.class.as_str(), u.reason));
        }
    }
    if problems.is_empty() {
        CheckItem::pass(name, format!("all {} members' files agree on every unit", status.members.len()))
    } else {
        CheckItem::fail(
            name,
            problems.join("; "),
            "make the files agree on every node and `systemctl reload corosync-eip` there; fix the IAM role or network of a node that cannot serve",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckStatus;

    #[test]
    fn totem_rules() {
        let facts = |token, consensus| CorosyncFacts {
            cpg: Ok(1),
            quorate: Some(Ok(true)),
            token: Some(token),
            consensus: Some(consensus),
            nodelist: [(1, "a".to_string()), (2, "b".to_string())].into(),
            members: [1].into(),
            cmap_error: None,
        };
        let items = corosync_items(&facts(1000, 1200));
        let t = items.iter().find(|i| i.name == "totem timing").unwrap();
        assert_eq!(t.status, CheckStatus::Warn);
        let items = corosync_items(&facts(30000, 30000));
        let t = items.iter().find(|i| i.name == "totem timing").unwrap();
        assert_eq!(t.status, CheckStatus::Fail);
        let items = corosync_items(&facts(30000, 36000));
        assert_eq!(
            items
                .iter()
                .find(|i| i.name == "totem timing")
                .unwrap()
                .status,
            CheckStatus::Pass
        );
        let n = items.iter().find(|i| i.name == "corosync nodes").unwrap();
        assert_eq!(n.status, CheckStatus::Warn);
        assert!(n.detail.contains("b (id 2)"), "{}", n.detail);
    }

    #[test]
    fn agreement_names_the_unit_the_nodes_and_the_settings() {
        use crate::status::{ConflictStatus, MemberStatus, StatusReport, VariantStatus};
        assert_eq!(agreement_item(None).status, CheckStatus::Warn);
        let mut s = StatusReport { synced: true, ..Default::default() };
        assert_eq!(agreement_item(Some(&s)).status, CheckStatus::Pass);
        s.conflicts.push(ConflictStatus {
            unit: "web".into(),
            keys: vec!["prefer".into()],
            variants: vec![VariantStatus { nodes: vec![1, 2] }, VariantStatus { nodes: vec![3] }],
        });
        s.members.push(MemberStatus {
            node_id: 2,
            pid: 1,
            instance_id: None,
            network_interface_id: None,
            version: None,
            quorate: None,
            eligible: None,
            standby: None,
            availability_zone: None,
            cannot_serve: vec![crate::core::wire::Unable {
                unit: "db".into(),
                class: crate::core::wire::Incapacity::Permission,
                reason: "UnauthorizedOperation".into(),
            }],
            name: None,
            hostname: None,
        });
        let item = agreement_item(Some(&s));
        assert_eq!(item.status, CheckStatus::Fail);
        assert!(item.detail.contains("web differs (nodes 1,2 vs nodes 3; settings: prefer)"), "{}", item.detail);
        assert!(item.detail.contains("node 2 cannot serve db (permission)"), "{}", item.detail);
    }
}
