//! `corosync-eip check`: the pre-flight checklist an HA admin runs on a node before trusting
//! it with addresses.
//!
//! Each item answers one of the usual support questions (IMDS reachable? credentials from the
//! instance role? region set? can the node reach EC2? does the role allow every call the
//! daemon will make? do the configured resources exist? is source/dest check off? is corosync
//! healthy and tuned for AWS?) with ✔ / ✖ / ! and, for anything not ✔, the remedy.
//!
//! Every network step is bounded: the whole check finishes in well under 15 s even when
//! nothing answers. Permissions are proven with `DryRun` calls: EC2 answers `DryRunOperation`
//! when the call would be allowed and `UnauthorizedOperation` when not, without changing
//! anything.

mod aws;
mod corosync;
mod ec2;

use crate::config::Config;
use crate::status::{paint, Colour};

use aws::SDK_BUDGET;

/// The verdict of one item; any `Fail` makes the command exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Nothing to do.
    Pass,
    /// The daemon will not work (or not fail over) until this is fixed.
    Fail,
    /// Works, but not as it should on AWS, or could not be proven.
    Warn,
}

impl CheckStatus {
    /// The mark the admin scans the list for.
    pub fn symbol(self) -> &'static str {
        match self {
            CheckStatus::Pass => "✔",
            CheckStatus::Fail => "✖",
            CheckStatus::Warn => "!",
        }
    }
    fn colour(self) -> Colour {
        match self {
            CheckStatus::Pass => Colour::Green,
            CheckStatus::Fail => Colour::Red,
            CheckStatus::Warn => Colour::Yellow,
        }
    }
}

/// One answered question of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    /// The question, e.g. `region` or `permission ec2:AssociateAddress (web eipalloc-…)`.
    pub name: String,
    /// ✔, ✖ (the check exits 1) or ! (works, but worth a look).
    pub status: CheckStatus,
    /// What was found, on the item's line.
    pub detail: String,
    /// What the admin should do; shown under a ✖ or a !.
    pub remedy: Option<String>,
}

impl CheckItem {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> CheckItem {
        CheckItem {
            name: name.into(),
            status: CheckStatus::Pass,
            detail: detail.into(),
            remedy: None,
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, remedy: impl Into<String>) -> CheckItem {
        CheckItem::pass(name, detail).needs(CheckStatus::Fail, remedy)
    }
    fn warn(name: impl Into<String>, detail: impl Into<String>, remedy: impl Into<String>) -> CheckItem {
        CheckItem::pass(name, detail).needs(CheckStatus::Warn, remedy)
    }
    /// An item that is not a pass always says what to do about it.
    fn needs(self, status: CheckStatus, remedy: impl Into<String>) -> CheckItem {
        CheckItem {
            status,
            remedy: Some(remedy.into()),
            ..self
        }
    }
}

/// The whole checklist, in the order the questions are asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// In the order they are printed.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Whether any item is ✖ (the command then exits 1).
    pub fn failed(&self) -> bool {
        self.items.iter().any(|i| i.status == CheckStatus::Fail)
    }

    /// One line per item (`✔ name: detail`), the remedy indented under it, and a summary line.
    /// `color`: ANSI colours for the symbols (only on a terminal).
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for item in &self.items {
            let sym = paint(item.status.symbol(), item.status.colour(), color);
            out += &format!("{sym} {}: {}\n", item.name, item.detail);
            if item.status != CheckStatus::Pass {
                if let Some(remedy) = &item.remedy {
                    for (k, line) in remedy.lines().enumerate() {
                        out += if k == 0 { "    → " } else { "      " };
                        out += line;
                        out += "\n";
                    }
                }
            }
        }
        let count = |s| self.items.iter().filter(|i| i.status == s).count();
        out += &format!(
            "{} passed, {} warning(s), {} failed\n",
            count(CheckStatus::Pass),
            count(CheckStatus::Warn),
            count(CheckStatus::Fail)
        );
        out
    }
}

/// Runs every check against this node's configuration; never panics on network or file input.
pub async fn run_checks(config: &Config) -> CheckReport {
    let mut items = Vec::new();
    // corosync is independent of AWS: run it beside the whole AWS part.
    let corosync = tokio::spawn(corosync::corosync_checks());

    // 1. IMDS and 2. SDK config (region, credentials) in parallel.
    let (imds, sdk) = tokio::join!(
        aws::imds_info(),
        tokio::time::timeout(SDK_BUDGET, crate::ec2::sdk_config(&config.aws))
    );
    items.push(aws::imds_item(config, &imds));
    let sdk = sdk.ok();
    let creds_ok = match &sdk {
        Some(sdk) => {
            let (item, ok) = aws::credentials_item(sdk, imds.is_ok()).await;
            items.push(item);
            ok
        }
        None => {
            items.push(CheckItem::fail(
                "credentials",
                format!("loading the AWS configuration took more than {SDK_BUDGET:?}"),
                "check ~/.aws/config and the profile named by [aws] profile / AWS_PROFILE",
            ));
            false
        }
    };
    let region = sdk.as_ref().and_then(|s| s.region()).map(|r| r.to_string());
    items.push(aws::region_item(config, region.as_deref(), imds.as_ref().ok()));

    // 3. endpoint
    let endpoint = aws::endpoint_of(config, sdk.as_ref(), region.as_deref());
    let endpoint_ok = match &endpoint {
        Some(ep) => {
            let (item, ok) = aws::endpoint_item(ep, region.as_deref().unwrap_or("REGION")).await;
            items.push(item);
            ok
        }
        None => {
            items.push(CheckItem::fail(
                "EC2 endpoint",
                "unknown: no region and no endpoint_url",
                "set [aws] region (see the region item)",
            ));
            false
        }
    };

    let trust_ok = match crate::ec2::trust_store() {
        Ok(n) => {
            items.push(CheckItem::pass("CA certificates", format!("{n} in the trust store")));
            true
        }
        Err(e) => {
            items.push(CheckItem::fail("CA certificates", e.to_string(), "install the ca-certificates package"));
            false
        }
    };

    // 4.-6. EC2 calls
    match sdk {
        Some(sdk) if endpoint_ok && creds_ok && trust_ok => {
            let client = aws_sdk_ec2::Client::new(&sdk);
            let route53 = aws_sdk_route53::Client::new(&sdk);
            let mut route_clients = std::collections::BTreeMap::new();
            for role in config.vips.iter().filter_map(|v| v.route_table_role.as_ref()) {
                if !route_clients.contains_key(role) {
                    route_clients.insert(role.clone(), crate::ec2::assumed_client(&sdk, role, "corosync-eip-check").await);
                }
            }
            items.extend(ec2::ec2_checks(config, &client, &route53, &route_clients, imds.as_ref().ok()).await);
        }
        _ => {
            let why = if !trust_ok {
                "no CA certificate to verify EC2 with"
            } else if !endpoint_ok {
                "the EC2 endpoint is unreachable"
            } else {
                "no credentials"
            };
            items.push(CheckItem::warn(
                "permissions and resources",
                format!("not checked: {why}"),
                "fix the items above, then run `corosync-eip check` again",
            ));
        }
    }

    if let Some(exposed) = config.metrics_exposure() {
        items.push(CheckItem::warn(
            "metrics endpoint",
            exposed,
            "listen on 127.0.0.1 or ::1, or allow the port only from your Prometheus server",
        ));
    }

    // 7. corosync
    match corosync.await {
        Ok(list) => items.extend(list),
        Err(e) => items.push(CheckItem::fail(
            "corosync",
            format!("check task failed: {e}"),
            "report a bug",
        )),
    }

    // 8. what the running daemon learned from its peers
    let daemon = crate::control::request_status(&config.daemon.control_socket).await;
    items.push(corosync::agreement_item(daemon.as_ref().ok()));
    CheckReport { items }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_remedy_under_failures() {
        let r = CheckReport {
            items: vec![
                CheckItem::pass("a", "fine"),
                CheckItem::fail("b", "broken", "fix it\nreally"),
            ],
        };
        assert!(r.failed());
        let s = r.render(false);
        assert!(s.contains("✔ a: fine\n"));
        assert!(s.contains("✖ b: broken\n    → fix it\n      really\n"));
        assert!(s.contains("1 passed, 0 warning(s), 1 failed"));
        assert!(r.render(true).contains("\x1b[31m✖\x1b[0m"));
    }
}
