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

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::ProvideCredentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::config::Config;
use crate::ec2::{class_of, ErrorClass};

/// Bound of the IMDS step (token + every GET).
const IMDS_BUDGET: Duration = Duration::from_millis(2500);
/// Bound of loading the SDK configuration (region chain) and of resolving credentials.
const SDK_BUDGET: Duration = Duration::from_secs(3);
/// Bound of resolving + connecting to the EC2 endpoint.
const ENDPOINT_BUDGET: Duration = Duration::from_secs(3);
/// Bound of one EC2 call (they run concurrently).
const CALL_BUDGET: Duration = Duration::from_secs(3);
/// Bound of the whole corosync part (it runs beside the AWS part).
const COROSYNC_BUDGET: Duration = Duration::from_secs(3);
/// Below this runtime token (ms), warn: AWS networks have hiccups of a few seconds.
const AWS_MIN_TOKEN_MS: u64 = 3000;
/// What vendors recommend on AWS (ms).
const AWS_RECOMMENDED_TOKEN_MS: u64 = 30000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Pass,
    Fail,
    Warn,
}

impl CheckStatus {
    pub fn symbol(self) -> &'static str {
        match self {
            CheckStatus::Pass => "✔",
            CheckStatus::Fail => "✖",
            CheckStatus::Warn => "!",
        }
    }
    fn color(self) -> &'static str {
        match self {
            CheckStatus::Pass => "\x1b[32m",
            CheckStatus::Fail => "\x1b[31m",
            CheckStatus::Warn => "\x1b[33m",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckItem {
    pub name: String,
    pub status: CheckStatus,
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
    fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> CheckItem {
        CheckItem {
            name: name.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
            remedy: Some(remedy.into()),
        }
    }
    fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> CheckItem {
        CheckItem {
            name: name.into(),
            status: CheckStatus::Warn,
            detail: detail.into(),
            remedy: Some(remedy.into()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
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
            let sym = item.status.symbol();
            if color {
                out += &format!(
                    "{}{sym}\x1b[0m {}: {}\n",
                    item.status.color(),
                    item.name,
                    item.detail
                );
            } else {
                out += &format!("{sym} {}: {}\n", item.name, item.detail);
            }
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
    let corosync = tokio::spawn(corosync_checks());

    // 1. IMDS and 2. SDK config (region, credentials) in parallel.
    let (imds, sdk) = tokio::join!(
        imds_info(),
        tokio::time::timeout(SDK_BUDGET, crate::ec2::sdk_config(&config.aws))
    );
    items.push(imds_item(config, &imds));
    let sdk = sdk.ok();
    let creds_ok = match &sdk {
        Some(sdk) => {
            let (item, ok) = credentials_item(sdk, imds.is_ok()).await;
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
    items.push(region_item(config, region.as_deref(), imds.as_ref().ok()));

    // 3. endpoint
    let endpoint = endpoint_of(config, sdk.as_ref(), region.as_deref());
    let endpoint_ok = match &endpoint {
        Some(ep) => {
            let (item, ok) = endpoint_item(ep, region.as_deref().unwrap_or("REGION")).await;
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

    // 4.-6. EC2 calls
    match sdk {
        Some(sdk) if endpoint_ok && creds_ok => {
            let client = aws_sdk_ec2::Client::new(&sdk);
            items.extend(ec2_checks(config, &client, imds.as_ref().ok()).await);
        }
        _ => {
            let why = if !endpoint_ok {
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
    items.push(agreement_item(daemon.as_ref().ok()));
    CheckReport { items }
}

/// Whether every member's file agrees with ours, as the running daemon sees it, and which
/// members said they cannot serve a unit. Without a running daemon there is nothing to compare.
fn agreement_item(status: Option<&crate::status::StatusReport>) -> CheckItem {
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

/// An error and its sources, joined with ": " (without the Debug dump DisplayErrorContext adds).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

// ---------------------------------------------------------------------------------------------
// 1. IMDSv2

#[derive(Debug, Clone, Default)]
struct ImdsInfo {
    instance_id: String,
    az: Option<String>,
    /// (mac, interface id, device number)
    interfaces: Vec<(String, Option<String>, Option<u32>)>,
}

impl ImdsInfo {
    fn primary_eni(&self) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|(_, _, dev)| *dev == Some(0))
            .or(self.interfaces.first())
            .and_then(|(_, eni, _)| eni.as_deref())
    }
}

fn imds_endpoint() -> String {
    std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|_| "http://169.254.169.254".to_string())
}

async fn imds_info() -> Result<ImdsInfo, String> {
    let client = aws_config::imds::Client::builder()
        .max_attempts(1)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .build();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .await
                .map(|s| s.as_ref().trim().to_string())
                .map_err(|e| format!("GET {path}: {}", chain(&e)))
        }
    };
    let work = async {
        let instance_id = get("/latest/meta-data/instance-id").await?;
        if !instance_id.starts_with("i-") {
            return Err(format!("unexpected instance id `{instance_id}`"));
        }
        let az = get("/latest/meta-data/placement/availability-zone")
            .await
            .ok();
        let mut interfaces = Vec::new();
        if let Ok(macs) = get("/latest/meta-data/network/interfaces/macs/").await {
            for mac in macs
                .lines()
                .map(|l| l.trim().trim_end_matches('/'))
                .filter(|l| !l.is_empty())
                .take(16)
            {
                let base = format!("/latest/meta-data/network/interfaces/macs/{mac}");
                let eni = client
                    .get(&format!("{base}/interface-id"))
                    .await
                    .ok()
                    .map(|s| s.as_ref().trim().to_string());
                let dev = client
                    .get(&format!("{base}/device-number"))
                    .await
                    .ok()
                    .and_then(|s| s.as_ref().trim().parse().ok());
                interfaces.push((mac.to_string(), eni, dev));
            }
        }
        Ok(ImdsInfo {
            instance_id,
            az,
            interfaces,
        })
    };
    match tokio::time::timeout(IMDS_BUDGET, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {IMDS_BUDGET:?}")),
    }
}

fn imds_item(config: &Config, imds: &Result<ImdsInfo, String>) -> CheckItem {
    let name = "IMDSv2";
    match imds {
        Ok(info) => {
            let ifs: Vec<String> = info
                .interfaces
                .iter()
                .map(|(mac, eni, dev)| {
                    format!(
                        "{} (mac {mac}{})",
                        eni.as_deref().unwrap_or("?"),
                        dev.map(|d| format!(", device {d}")).unwrap_or_default()
                    )
                })
                .collect();
            CheckItem::pass(
                name,
                format!(
                    "instance {} in {}; interfaces: {}",
                    info.instance_id,
                    info.az.as_deref().unwrap_or("unknown AZ"),
                    if ifs.is_empty() {
                        "none listed".to_string()
                    } else {
                        ifs.join(", ")
                    }
                ),
            )
        }
        Err(e) => {
            let detail = format!("no instance metadata from {}: {e}", imds_endpoint());
            let remedy = "IMDSv2 must answer a token PUT: check the instance's metadata options (HttpEndpoint=enabled);\n\
                 in a container the PUT response needs 2 hops: aws ec2 modify-instance-metadata-options --instance-id ID --http-put-response-hop-limit 2;\n\
                 or set [node] instance_id and network_interface_id (credentials and region must then come from elsewhere)";
            if config.node.instance_id.is_some() {
                CheckItem::warn(
                    name,
                    format!("{detail} ([node] instance_id is set, so the daemon does not need it)"),
                    remedy,
                )
            } else {
                CheckItem::fail(name, detail, remedy)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. credentials and region

/// The provider name of resolved credentials. `Credentials` has no public getter for it, but
/// its Debug output (secrets redacted) starts with `provider_name: "..."`.
fn provider_name(creds: &aws_sdk_ec2::config::Credentials) -> String {
    let dbg = format!("{creds:?}");
    dbg.split_once("provider_name: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

async fn credentials_item(sdk: &aws_config::SdkConfig, on_ec2: bool) -> (CheckItem, bool) {
    let name = "credentials";
    let Some(provider) = sdk.credentials_provider() else {
        return (
            CheckItem::fail(
                name,
                "no credentials provider configured",
                "attach an IAM role to the instance",
            ),
            false,
        );
    };
    let creds = match tokio::time::timeout(SDK_BUDGET, provider.provide_credentials()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return (
                CheckItem::fail(
                    name,
                    format!("none found: {}", chain(&e)),
                    "attach an IAM role (instance profile) to the instance: EC2 console → Actions → Security → Modify IAM role;\n\
                     the SDK chain looks at AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws (AWS_PROFILE / [aws] profile), then the instance role",
                ),
                false,
            )
        }
        Err(_) => {
            return (
                CheckItem::fail(
                    name,
                    format!("resolving credentials took more than {SDK_BUDGET:?}"),
                    "attach an IAM role to the instance and check that IMDSv2 answers (see the IMDSv2 item)",
                ),
                false,
            )
        }
    };
    let source = provider_name(&creds);
    let (label, is_static) = match source.as_str() {
        "EnvironmentVariable" => ("environment variables (AWS_ACCESS_KEY_ID)", true),
        "ProfileFile" => ("a profile in ~/.aws", true),
        "IMDSv2" | "IMDS" => ("the instance role (IMDS)", false),
        "WebIdentityToken" => ("a web identity token", false),
        "EcsContainer" => ("the container credentials endpoint", false),
        "SSO" => ("AWS SSO", false),
        "CredentialProcess" => ("a credential_process", false),
        _ => ("", false),
    };
    let label = if label.is_empty() {
        source.clone()
    } else {
        label.to_string()
    };
    let key = creds.access_key_id();
    let shown = format!("{}…", key.chars().take(4).collect::<String>());
    let detail = format!("from {label} (access key {shown})");
    let item = if is_static && on_ec2 {
        CheckItem::warn(
            name,
            format!("{detail}: instance role expected on EC2"),
            "static keys on a cluster node leak and expire unnoticed: attach an IAM role to every node and remove the keys \
             (AWS_ACCESS_KEY_ID in the unit's environment, ~/.aws/credentials)",
        )
    } else {
        CheckItem::pass(name, detail)
    };
    (item, true)
}

/// "us-east-1a" → "us-east-1"; local zones ("us-west-2-lax-1a") keep their parent region.
fn region_of_az(az: &str) -> Option<String> {
    let trimmed = az.trim_end_matches(|c: char| c.is_ascii_lowercase());
    let parts: Vec<&str> = trimmed.split('-').collect();
    if parts.len() >= 3 && parts[2].chars().all(|c| c.is_ascii_digit()) {
        Some(parts[..3].join("-"))
    } else {
        None
    }
}

fn region_item(config: &Config, region: Option<&str>, imds: Option<&ImdsInfo>) -> CheckItem {
    let name = "region";
    let Some(region) = region else {
        return CheckItem::fail(
            name,
            "not set (no [aws] region, AWS_REGION, profile region, and IMDS did not give one)",
            "set `region = \"...\"` under [aws] in the configuration file (or AWS_REGION in the unit's environment)",
        );
    };
    let source = if config.aws.region.is_some() {
        "[aws] region"
    } else if std::env::var_os("AWS_REGION").is_some() {
        "AWS_REGION"
    } else if std::env::var_os("AWS_DEFAULT_REGION").is_some() {
        "AWS_DEFAULT_REGION"
    } else {
        "profile or instance metadata"
    };
    if let Some(az_region) = imds.and_then(|i| i.az.as_deref()).and_then(region_of_az) {
        if az_region != region {
            return CheckItem::warn(
                name,
                format!("{region} (from {source}) but this instance runs in {az_region}"),
                format!("EIPs and route tables live in one region: set [aws] region = \"{az_region}\" unless the resources really are in {region}"),
            );
        }
    }
    CheckItem::pass(name, format!("{region} (from {source})"))
}

// ---------------------------------------------------------------------------------------------
// 3. endpoint

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    host: String,
    port: u16,
    /// Set by config or environment (else the public regional endpoint).
    custom: bool,
}

fn parse_url(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_string(), default_port)),
        None => None,
    }
}

fn endpoint_of(
    config: &Config,
    sdk: Option<&aws_config::SdkConfig>,
    region: Option<&str>,
) -> Option<Endpoint> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let custom = config
        .aws
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_EC2"))
        .or_else(|| sdk.and_then(|s| s.endpoint_url()).map(str::to_string))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    let (url, is_custom) = match custom {
        Some(u) => (u, true),
        None => (format!("https://ec2.{}.amazonaws.com", region?), false),
    };
    let (host, port) = parse_url(&url).unwrap_or_else(|| (url.clone(), 443));
    Some(Endpoint {
        url,
        host,
        port,
        custom: is_custom,
    })
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

async fn endpoint_item(ep: &Endpoint, region: &str) -> (CheckItem, bool) {
    let name = "EC2 endpoint";
    let started = Instant::now();
    let no_route_remedy = format!(
        "nothing answered: usually the subnet has no route to the internet (no NAT gateway / internet gateway) and no VPC endpoint;\n\
         create an interface VPC endpoint for com.amazonaws.{region}.ec2 with private DNS, or a NAT gateway route, or set [aws] endpoint_url;\n\
         also check security groups / NACLs / a proxy (HTTPS_PROXY) on the way to port {}",
        ep.port
    );
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(ENDPOINT_BUDGET, tokio::net::lookup_host((ep.host.as_str(), ep.port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return (
                    CheckItem::fail(
                        name,
                        format!("cannot resolve {}: {e}", ep.host),
                        format!("check DNS (the VPC resolver, enableDnsSupport) and the endpoint name; {no_route_remedy}"),
                    ),
                    false,
                )
            }
            Err(_) => {
                return (
                    CheckItem::fail(
                        name,
                        format!("resolving {} took more than {ENDPOINT_BUDGET:?}", ep.host),
                        format!("check DNS (the VPC resolver); {no_route_remedy}"),
                    ),
                    false,
                )
            }
        };
    if addrs.is_empty() {
        return (
            CheckItem::fail(
                name,
                format!("{} resolves to no address", ep.host),
                no_route_remedy,
            ),
            false,
        );
    }
    let mut last_err = String::new();
    for addr in &addrs {
        let left = ENDPOINT_BUDGET.saturating_sub(started.elapsed());
        if left.is_zero() {
            last_err = format!("no answer within {ENDPOINT_BUDGET:?}");
            break;
        }
        match tokio::time::timeout(left, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                let kind = if ep.custom {
                    if ep.host.contains("vpce") {
                        "VPC endpoint (configured)"
                    } else {
                        "custom endpoint (configured)"
                    }
                } else if is_private(addr.ip()) {
                    "VPC interface endpoint (private DNS)"
                } else {
                    "public endpoint"
                };
                return (
                    CheckItem::pass(
                        name,
                        format!(
                            "{kind} {} ({addr}) answered in {} ms",
                            ep.url,
                            started.elapsed().as_millis()
                        ),
                    ),
                    true,
                );
            }
            Ok(Err(e)) => last_err = format!("{addr}: {e}"),
            Err(_) => last_err = format!("{addr}: no answer within {ENDPOINT_BUDGET:?}"),
        }
    }
    let refused = last_err.contains("refused");
    let remedy = if refused {
        format!(
            "{}:{} refused the connection: the host is reachable but nothing listens on that port; check [aws] endpoint_url / AWS_ENDPOINT_URL",
            ep.host, ep.port
        )
    } else {
        no_route_remedy
    };
    (
        CheckItem::fail(name, format!("{} unreachable ({last_err})", ep.url), remedy),
        false,
    )
}

// ---------------------------------------------------------------------------------------------
// 4.-6. permissions (DryRun), resources, source/dest check

/// An EC2 call bounded in time; a timeout is reported as a transient error.
async fn bounded<T, E>(
    fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T, CallError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(CALL_BUDGET, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::from_sdk(e)),
        Err(_) => Err(CallError {
            code: None,
            message: format!("no answer within {CALL_BUDGET:?}"),
            class: ErrorClass::Transient,
        }),
    }
}

#[derive(Debug, Clone)]
struct CallError {
    code: Option<String>,
    message: String,
    class: ErrorClass,
}

impl CallError {
    fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> CallError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(s) => {
                let code = s.err().code().map(str::to_string);
                let status = s.raw().status().as_u16();
                CallError {
                    class: class_of(code.as_deref(), status),
                    message: s
                        .err()
                        .message()
                        .map(str::to_string)
                        .unwrap_or_else(|| chain(&err)),
                    code,
                }
            }
            _ => CallError {
                code: None,
                message: chain(&err),
                class: ErrorClass::Transient,
            },
        }
    }

    fn describe(&self) -> String {
        // AWS appends a long encoded authorization message; keep the readable part.
        let msg = self
            .message
            .split(" Encoded authorization failure message")
            .next()
            .unwrap_or(&self.message)
            .trim();
        match &self.code {
            Some(c) => format!("{c}: {msg}"),
            None => msg.to_string(),
        }
    }
}

/// The outcome of a DryRun call: `DryRunOperation` means allowed.
fn dry_run_item<T>(
    name: String,
    action: &str,
    mutating: bool,
    result: Result<T, CallError>,
) -> CheckItem {
    match result {
        Err(e) if e.code.as_deref() == Some("DryRunOperation") => {
            CheckItem::pass(name, "allowed (DryRunOperation)".to_string())
        }
        Err(e)
            if matches!(
                e.code.as_deref(),
                Some("AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "RequestExpired")
            ) =>
        {
            CheckItem::fail(
                name,
                format!("credentials rejected: {}", e.describe()),
                "EC2 does not accept these credentials (unknown, deleted or expired keys, or a clock off by minutes): \
                 use the instance role instead of static keys, or fix the keys; check the clock (chronyc tracking)",
            )
        }
        Err(e) if e.class == ErrorClass::Permission => CheckItem::fail(
            name,
            format!("denied: {}", e.describe()),
            format!(
                "allow ec2:{action} in the policy of the instance role (every node's), e.g. \
                 {{\"Effect\": \"Allow\", \"Action\": \"ec2:{action}\", \"Resource\": \"*\"}};\n\
                 an SCP or permission boundary can deny it too (aws sts decode-authorization-message tells which)"
            ),
        ),
        Ok(_) if !mutating => CheckItem::pass(name, "allowed (the endpoint answered without honouring DryRun)"),
        Ok(_) => CheckItem::warn(
            name,
            "allowed, but the endpoint ignored DryRun and performed the call",
            "this endpoint does not behave like EC2; check [aws] endpoint_url",
        ),
        Err(e) => CheckItem::warn(
            name,
            format!("not proven: {}", e.describe()),
            "the DryRun call failed for another reason than permissions; see the resource items",
        ),
    }
}

/// Who we are in EC2, as far as it can be found.
struct Me {
    instance_id: Option<String>,
    eni: Option<String>,
}

async fn ec2_checks(
    config: &Config,
    client: &aws_sdk_ec2::Client,
    imds: Option<&ImdsInfo>,
) -> Vec<CheckItem> {
    let mut items = Vec::new();

    // this instance and its ENI
    let instance_id = config
        .node
        .instance_id
        .clone()
        .or_else(|| imds.map(|i| i.instance_id.clone()));
    let mut me = Me {
        instance_id: instance_id.clone(),
        eni: config.node.network_interface_id.clone(),
    };
    match &instance_id {
        Some(id) => {
            let r = bounded(client.describe_instances().instance_ids(id).send()).await;
            match r {
                Ok(out) => {
                    let inst = out.reservations().iter().flat_map(|r| r.instances()).next();
                    let primary = inst
                        .into_iter()
                        .flat_map(|i| i.network_interfaces())
                        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
                        .and_then(|n| n.network_interface_id())
                        .map(str::to_string);
                    if me.eni.is_none() {
                        me.eni = primary
                            .clone()
                            .or_else(|| imds.and_then(|i| i.primary_eni()).map(str::to_string));
                    }
                    match (inst, &me.eni) {
                        (Some(i), Some(eni)) => items.push(CheckItem::pass(
                            "this instance",
                            format!(
                                "{id} ({}), ENI {eni}{}",
                                i.state()
                                    .and_then(|s| s.name())
                                    .map(|n| n.as_str())
                                    .unwrap_or("state unknown"),
                                if config.node.network_interface_id.is_some() {
                                    " (from [node])"
                                } else {
                                    ""
                                }
                            ),
                        )),
                        (Some(_), None) => items.push(CheckItem::fail(
                            "this instance",
                            format!("{id} has no network interface at device index 0"),
                            "set [node] network_interface_id",
                        )),
                        (None, _) => items.push(CheckItem::fail(
                            "this instance",
                            format!("{id} not found in this region"),
                            "check [aws] region and [node] instance_id",
                        )),
                    }
                }
                Err(e) if e.class == ErrorClass::NotFound => items.push(CheckItem::fail(
                    "this instance",
                    format!("{id} not found: {}", e.describe()),
                    "the region is probably wrong: check [aws] region; or fix [node] instance_id",
                )),
                Err(e) => {
                    if me.eni.is_none() {
                        me.eni = imds.and_then(|i| i.primary_eni()).map(str::to_string);
                    }
                    items.push(CheckItem::warn(
                        "this instance",
                        format!("DescribeInstances {id}: {}", e.describe()),
                        "see the ec2:DescribeInstances permission item",
                    ));
                }
            }
        }
        None => items.push(CheckItem::fail(
            "this instance",
            "unknown: IMDS did not answer and [node] instance_id is not set",
            "fix IMDS (see above) or set [node] instance_id and network_interface_id",
        )),
    }

    // 4. permissions, beside 5. resources and 6. source/dest check
    let (perm_items, res_items) = tokio::join!(permission_items(config, client, &me), resource_checks(config, client, &me));
    items.extend(perm_items);
    items.extend(res_items);
    items
}

/// Every permission the configuration needs, proven with DryRun calls (all at once). Also run
/// periodically by the daemon on nodes that hold nothing, so IAM drift shows before a failover.
pub async fn permissions(config: &Config, client: &aws_sdk_ec2::Client, instance_id: Option<String>, eni: Option<String>) -> Vec<CheckItem> {
    permission_items(config, client, &Me { instance_id, eni }).await
}

async fn permission_items(config: &Config, client: &aws_sdk_ec2::Client, me: &Me) -> Vec<CheckItem> {
    let mut perms: Vec<std::pin::Pin<Box<dyn Future<Output = CheckItem> + Send + '_>>> = Vec::new();
    for eip in &config.eips {
        let name = format!(
            "permission ec2:AssociateAddress ({} {})",
            eip.name, eip.allocation_id
        );
        let mut req = client
            .associate_address()
            .dry_run(true)
            .allocation_id(&eip.allocation_id)
            .allow_reassociation(true);
        req = match (&me.eni, &me.instance_id) {
            (Some(eni), _) => req.network_interface_id(eni),
            (None, Some(id)) => req.instance_id(id),
            (None, None) => {
                perms.push(Box::pin(async move {
                    CheckItem::warn(
                        name,
                        "not checked: this instance is unknown",
                        "see the item `this instance`",
                    )
                }));
                continue;
            }
        };
        if let Some(ip) = eip.private_ip {
            req = req.private_ip_address(ip.to_string());
        }
        perms.push(Box::pin(async move {
            dry_run_item(name, "AssociateAddress", true, bounded(req.send()).await)
        }));
        let name = format!(
            "permission ec2:CreateTags ({} {})",
            eip.name, eip.allocation_id
        );
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key(crate::core::reconcile::OWNER_TAG)
            .value(me.instance_id.clone().unwrap_or_default())
            .build();
        let req = client
            .create_tags()
            .dry_run(true)
            .resources(&eip.allocation_id)
            .tags(tag);
        perms.push(Box::pin(async move {
            let mut item = dry_run_item(name, "CreateTags", true, bounded(req.send()).await);
            if item.status == CheckStatus::Fail {
                // the daemon still works without it, only without its ownership record
                item.status = CheckStatus::Warn;
                item.detail += " (the daemon then runs without its split-brain ownership record)";
            }
            item
        }));
    }
    // one ReplaceRoute (and CreateRoute) per route table, for the first VIP routed through it
    let mut tables: BTreeMap<&str, (&crate::config::VipConfig, bool)> = BTreeMap::new();
    for vip in &config.vips {
        for t in &vip.route_tables {
            let e = tables.entry(t.as_str()).or_insert((vip, false));
            e.1 |= vip.create_route;
        }
    }
    for (table, (vip, create)) in &tables {
        let Some(eni) = me.eni.clone() else {
            let name = format!("permission ec2:ReplaceRoute ({table})");
            perms.push(Box::pin(async move {
                CheckItem::warn(
                    name,
                    "not checked: our ENI is unknown",
                    "see the item `this instance`",
                )
            }));
            continue;
        };
        let dest = vip.destination();
        let name = format!("permission ec2:ReplaceRoute ({table} {dest})");
        let req = client
            .replace_route()
            .dry_run(true)
            .route_table_id(*table)
            .destination_cidr_block(&dest)
            .network_interface_id(&eni);
        perms.push(Box::pin(async move {
            dry_run_item(name, "ReplaceRoute", true, bounded(req.send()).await)
        }));
        if *create {
            let name = format!("permission ec2:CreateRoute ({table} {dest})");
            let req = client
                .create_route()
                .dry_run(true)
                .route_table_id(*table)
                .destination_cidr_block(&dest)
                .network_interface_id(&eni);
            perms.push(Box::pin(async move {
                dry_run_item(name, "CreateRoute", true, bounded(req.send()).await)
            }));
        }
    }
    // Read permissions: one DryRun Describe each. The request types differ, hence a macro.
    macro_rules! read_permission {
        ($req:expr, $action:literal) => {{
            let req = $req;
            perms.push(Box::pin(async move {
                dry_run_item(concat!("permission ec2:", $action).into(), $action, false, bounded(req.send()).await)
            }));
        }};
    }
    if !config.eips.is_empty() {
        read_permission!(client.describe_addresses().dry_run(true), "DescribeAddresses");
    }
    if !config.vips.is_empty() {
        read_permission!(client.describe_route_tables().dry_run(true), "DescribeRouteTables");
    }
    read_permission!(client.describe_instances().dry_run(true), "DescribeInstances");
    read_permission!(client.describe_network_interfaces().dry_run(true), "DescribeNetworkInterfaces");

    futures_util::future::join_all(perms).await
}

async fn resource_checks(config: &Config, client: &aws_sdk_ec2::Client, me: &Me) -> Vec<CheckItem> {
    let eips = futures_util::future::join_all(config.eips.iter().map(|eip| async move {
        let name = format!("EIP {} ({})", eip.name, eip.allocation_id);
        match bounded(client.describe_addresses().allocation_ids(&eip.allocation_id).send()).await {
            Ok(out) => match out.addresses().iter().find(|a| a.allocation_id() == Some(eip.allocation_id.as_str())) {
                Some(a) => {
                    let ip = a.public_ip().unwrap_or("?");
                    let holder = a
                        .network_interface_id()
                        .filter(|s| !s.is_empty())
                        .or(a.instance_id().filter(|s| !s.is_empty()));
                    let at = match holder {
                        Some(h) if Some(h) == me.eni.as_deref() || Some(h) == me.instance_id.as_deref() => {
                            "associated with this node".to_string()
                        }
                        Some(h) => format!("associated with {h}"),
                        None => "not associated".to_string(),
                    };
                    let mut item = CheckItem::pass(name, format!("{ip}, {at}"));
                    if let (Some(want), Some(have)) = (eip.private_ip, a.private_ip_address()) {
                        if holder.is_some() && Some(holder) == Some(me.eni.as_deref()) && want.to_string() != have {
                            item.detail += &format!(" (private IP {have}, configured {want})");
                        }
                    }
                    item
                }
                None => CheckItem::fail(
                    name,
                    format!("{} not found in this region", eip.allocation_id),
                    "check the allocation id (aws ec2 describe-addresses) and [aws] region",
                ),
            },
            Err(e) if e.class == ErrorClass::NotFound || e.code.as_deref().is_some_and(|c| c.starts_with("InvalidAllocationID")) => {
                CheckItem::fail(
                    name,
                    format!("does not exist: {}", e.describe()),
                    "check the allocation_id in the configuration against `aws ec2 describe-addresses` in this region (an EIP in another region or account is not visible)",
                )
            }
            Err(e) => CheckItem::warn(name, format!("not checked: {}", e.describe()), "see the permission items"),
        }
    }));

    // every route table once, with the VIPs routed through it
    let mut by_table: BTreeMap<&str, Vec<&crate::config::VipConfig>> = BTreeMap::new();
    for vip in &config.vips {
        for t in &vip.route_tables {
            by_table.entry(t.as_str()).or_default().push(vip);
        }
    }
    let tables = futures_util::future::join_all(by_table.into_iter().map(|(table, vips)| async move {
        let mut items = Vec::new();
        let name = format!("route table {table}");
        match bounded(client.describe_route_tables().route_table_ids(table).send()).await {
            Ok(out) => match out.route_tables().iter().find(|t| t.route_table_id() == Some(table)) {
                Some(t) => {
                    items.push(CheckItem::pass(
                        name,
                        format!("exists (VPC {})", t.vpc_id().unwrap_or("?")),
                    ));
                    for vip in vips {
                        let dest = vip.destination();
                        let rname = format!("VIP {} route {dest} in {table}", vip.name);
                        match t.routes().iter().find(|r| r.destination_cidr_block() == Some(dest.as_str())) {
                            Some(r) => {
                                let target = r
                                    .network_interface_id()
                                    .filter(|s| !s.is_empty())
                                    .or(r.instance_id().filter(|s| !s.is_empty()))
                                    .or(r.gateway_id())
                                    .unwrap_or("?");
                                let mine = Some(target) == me.eni.as_deref() || Some(target) == me.instance_id.as_deref();
                                let state = r.state().map(|s| s.as_str().to_string()).unwrap_or_default();
                                items.push(CheckItem::pass(
                                    rname,
                                    format!(
                                        "exists → {target}{}{}",
                                        if mine { " (this node)" } else { "" },
                                        if state == "blackhole" { ", blackhole (its target is gone)" } else { "" }
                                    ),
                                ));
                            }
                            None if vip.create_route => items.push(CheckItem::pass(
                                rname,
                                "missing; the holder will create it (create_route = true)",
                            )),
                            None => items.push(CheckItem::warn(
                                rname,
                                "missing, and create_route is false: the holder will fail to take the VIP",
                                format!(
                                    "create it (aws ec2 create-route --route-table-id {table} --destination-cidr-block {dest} --network-interface-id ENI) or set create_route = true for VIP {}",
                                    vip.name
                                ),
                            )),
                        }
                    }
                }
                None => items.push(CheckItem::fail(
                    name,
                    "not found in this region",
                    "check route_tables in the configuration against `aws ec2 describe-route-tables` and [aws] region",
                )),
            },
            Err(e) if e.class == ErrorClass::NotFound || e.code.as_deref().is_some_and(|c| c.starts_with("InvalidRouteTableID")) => {
                items.push(CheckItem::fail(
                    name,
                    format!("does not exist: {}", e.describe()),
                    "check route_tables in the configuration against `aws ec2 describe-route-tables` in this region/VPC",
                ))
            }
            Err(e) => items.push(CheckItem::warn(name, format!("not checked: {}", e.describe()), "see the permission items")),
        }
        items
    }));

    let sdc = async {
        if config.vips.is_empty() {
            return None;
        }
        let Some(eni) = me.eni.as_deref() else {
            return Some(CheckItem::warn(
                "source/dest check",
                "not checked: our ENI is unknown",
                "see the item `this instance`",
            ));
        };
        let name = format!("source/dest check ({eni})");
        Some(match bounded(client.describe_network_interfaces().network_interface_ids(eni).send()).await {
            Ok(out) => match out.network_interfaces().first().and_then(|n| n.source_dest_check()) {
                Some(false) => CheckItem::pass(name, "off, as VIPs need"),
                Some(true) => CheckItem::fail(
                    name,
                    "on: EC2 drops packets for a VIP (not the ENI's own address) delivered to this ENI",
                    format!("aws ec2 modify-network-interface-attribute --network-interface-id {eni} --no-source-dest-check (on every node)"),
                ),
                None => CheckItem::warn(name, "EC2 did not report it", "check the ENI in the EC2 console"),
            },
            Err(e) if e.class == ErrorClass::NotFound => CheckItem::fail(
                name,
                format!("ENI not found: {}", e.describe()),
                "check [node] network_interface_id and [aws] region",
            ),
            Err(e) => CheckItem::warn(name, format!("not checked: {}", e.describe()), "see the permission items"),
        })
    };

    let (eips, tables, sdc) = tokio::join!(eips, tables, sdc);
    let mut items = eips;
    items.extend(tables.into_iter().flatten());
    items.extend(sdc);
    items
}

// ---------------------------------------------------------------------------------------------
// 7. corosync

/// What corosync told us; gathered on a plain thread (the library calls block).
#[derive(Debug)]
struct CorosyncFacts {
    cpg: Result<u32, String>,
    quorate: Option<Result<bool, String>>,
    token: Option<u64>,
    consensus: Option<u64>,
    /// nodelist: node id → name
    nodelist: BTreeMap<u32, String>,
    /// runtime.members.<id>.status == joined
    members: BTreeSet<u32>,
    cmap_error: Option<String>,
}

fn data_u64(d: &rust_corosync::cmap::Data) -> Option<u64> {
    use rust_corosync::cmap::Data;
    match d {
        Data::UInt8(v) => Some(u64::from(*v)),
        Data::UInt16(v) => Some(u64::from(*v)),
        Data::UInt32(v) => Some(u64::from(*v)),
        Data::UInt64(v) => Some(*v),
        Data::Int8(v) => u64::try_from(*v).ok(),
        Data::Int16(v) => u64::try_from(*v).ok(),
        Data::Int32(v) => u64::try_from(*v).ok(),
        Data::Int64(v) => u64::try_from(*v).ok(),
        Data::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn data_string(d: &rust_corosync::cmap::Data) -> Option<String> {
    match d {
        rust_corosync::cmap::Data::String(s) => Some(s.trim_end_matches('\0').to_string()),
        other => data_u64(other).map(|v| v.to_string()),
    }
}

fn gather_corosync() -> CorosyncFacts {
    use rust_corosync::{cmap, cpg, quorum};
    let mut facts = CorosyncFacts {
        cpg: Err(String::new()),
        quorate: None,
        token: None,
        consensus: None,
        nodelist: BTreeMap::new(),
        members: BTreeSet::new(),
        cmap_error: None,
    };
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: None,
        confchg_fn: None,
        totem_confchg_fn: None,
    });
    facts.cpg = match cpg::initialize(&model, 0) {
        Ok(h) => {
            let r = cpg::local_get(&h)
                .map(u32::from)
                .map_err(|e| format!("cpg_local_get: {e}"));
            let _ = cpg::finalize(&h);
            r
        }
        Err(e) => Err(format!("cpg_initialize: {e}")),
    };
    if facts.cpg.is_err() {
        return facts;
    }
    let qmodel = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: None,
        nodelist_notification_fn: None,
    });
    facts.quorate = Some(match quorum::initialize(&qmodel, 0) {
        Ok((h, _)) => {
            let r = quorum::getquorate(&h).map_err(|e| format!("quorum_getquorate: {e}"));
            let _ = quorum::finalize(&h);
            r
        }
        Err(e) => Err(format!("quorum_initialize: {e}")),
    });
    match cmap::initialize(cmap::Map::Icmap) {
        Ok(h) => {
            facts.token = cmap::get(&h, "runtime.config.totem.token")
                .ok()
                .as_ref()
                .and_then(data_u64);
            facts.consensus = cmap::get(&h, "runtime.config.totem.consensus")
                .ok()
                .as_ref()
                .and_then(data_u64);
            let mut nodes: BTreeMap<String, (Option<u32>, Option<String>, Option<String>)> =
                BTreeMap::new();
            match cmap::CmapIterStart::new(&h, "nodelist.node.") {
                Ok(it) => {
                    for e in it.into_iter().take(4096) {
                        let key = e.key_name();
                        let Some(rest) = key.strip_prefix("nodelist.node.") else {
                            continue;
                        };
                        let Some((idx, field)) = rest.split_once('.') else {
                            continue;
                        };
                        let entry = nodes.entry(idx.to_string()).or_default();
                        match field {
                            "nodeid" => {
                                entry.0 = data_u64(e.data()).and_then(|v| u32::try_from(v).ok())
                            }
                            "name" => entry.1 = data_string(e.data()),
                            "ring0_addr" => entry.2 = data_string(e.data()),
                            _ => {}
                        }
                    }
                }
                Err(e) => facts.cmap_error = Some(format!("cmap nodelist: {e}")),
            }
            for (_, (id, name, addr)) in nodes {
                if let Some(id) = id {
                    let label = name.or(addr).unwrap_or_else(|| format!("node {id}"));
                    facts.nodelist.insert(id, label);
                }
            }
            match cmap::CmapIterStart::new(&h, "runtime.members.") {
                Ok(it) => {
                    for e in it.into_iter().take(4096) {
                        let key = e.key_name();
                        let Some(rest) = key.strip_prefix("runtime.members.") else {
                            continue;
                        };
                        let Some((id, field)) = rest.split_once('.') else {
                            continue;
                        };
                        if field == "status" && data_string(e.data()).as_deref() == Some("joined") {
                            if let Ok(id) = id.parse() {
                                facts.members.insert(id);
                            }
                        }
                    }
                }
                Err(e) => facts.cmap_error = Some(format!("cmap runtime.members: {e}")),
            }
            let _ = cmap::finalize(&h);
        }
        Err(e) => facts.cmap_error = Some(format!("cmap_initialize: {e}")),
    }
    facts
}

async fn corosync_checks() -> Vec<CheckItem> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread, not spawn_blocking: a hung corosync must not keep the runtime from
    // shutting down.
    let spawned = std::thread::Builder::new()
        .name("check-corosync".into())
        .spawn(move || {
            let _ = tx.send(gather_corosync());
        });
    if let Err(e) = spawned {
        return vec![CheckItem::fail(
            "corosync",
            format!("cannot start a thread: {e}"),
            "retry",
        )];
    }
    let facts = match tokio::time::timeout(COROSYNC_BUDGET, rx).await {
        Ok(Ok(f)) => f,
        _ => {
            return vec![CheckItem::fail(
                "corosync",
                format!("no answer from corosync's IPC within {COROSYNC_BUDGET:?}"),
                "corosync is hung or overloaded: see `journalctl -u corosync` and `corosync-cfgtool -s`",
            )]
        }
    };
    corosync_items(&facts)
}

fn corosync_items(f: &CorosyncFacts) -> Vec<CheckItem> {
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
                    .as_deref()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        assert_eq!(
            parse_url("https://ec2.us-east-1.amazonaws.com"),
            Some(("ec2.us-east-1.amazonaws.com".into(), 443))
        );
        assert_eq!(
            parse_url("http://10.0.0.1:5000/"),
            Some(("10.0.0.1".into(), 5000))
        );
        assert_eq!(parse_url("http://[::1]:8080"), Some(("::1".into(), 8080)));
        assert_eq!(parse_url("ftp://x"), None);
    }

    #[test]
    fn az_to_region() {
        assert_eq!(region_of_az("us-east-1a").as_deref(), Some("us-east-1"));
        assert_eq!(
            region_of_az("ap-northeast-1c").as_deref(),
            Some("ap-northeast-1")
        );
        assert_eq!(
            region_of_az("us-west-2-lax-1a").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(region_of_az("weird"), None);
    }

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
        });
        let item = agreement_item(Some(&s));
        assert_eq!(item.status, CheckStatus::Fail);
        assert!(item.detail.contains("web differs (nodes 1,2 vs nodes 3; settings: prefer)"), "{}", item.detail);
        assert!(item.detail.contains("node 2 cannot serve db (permission)"), "{}", item.detail);
    }
}
