//! The items about reaching AWS at all: IMDS, credentials, region and the EC2 endpoint.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::ProvideCredentials;

use super::CheckItem;
use crate::config::Config;
use crate::ec2::error_chain;
use crate::imds::{self, Imds, ImdsError};

/// Bound of the IMDS step (token + every GET).
const IMDS_BUDGET: Duration = Duration::from_millis(2500);
/// Bound of loading the SDK configuration (region chain) and of resolving credentials.
pub(super) const SDK_BUDGET: Duration = Duration::from_secs(3);
/// Bound of resolving + connecting to the EC2 endpoint.
const ENDPOINT_BUDGET: Duration = Duration::from_secs(3);

// 1. IMDSv2

/// What IMDS tells about this instance; the later items use it to find this instance and its
/// region when the configuration does not say.
#[derive(Debug, Clone, Default)]
pub(super) struct ImdsInfo {
    pub(super) instance_id: String,
    pub(super) az: Option<String>,
    pub(super) interfaces: Vec<imds::Interface>,
}

impl ImdsInfo {
    pub(super) fn primary_eni(&self) -> Option<&str> {
        imds::primary(&self.interfaces)
    }
}

/// Everything the check wants from IMDS, within `IMDS_BUDGET`; only the instance id is
/// required (the rest only improves the report).
pub(super) async fn imds_info() -> Result<ImdsInfo, ImdsError> {
    let client = Imds::single_attempt();
    imds::within(IMDS_BUDGET, async {
        let instance_id = client.instance_id().await?;
        let az = client.availability_zone().await.ok();
        let interfaces = client.interfaces().await.unwrap_or_default();
        Ok(ImdsInfo {
            instance_id,
            az,
            interfaces,
        })
    })
    .await
}

pub(super) fn imds_item(config: &Config, imds: &Result<ImdsInfo, ImdsError>) -> CheckItem {
    let name = "IMDSv2";
    match imds {
        Ok(info) => {
            let ifs: Vec<String> = info
                .interfaces
                .iter()
                .map(|i| {
                    format!(
                        "{} (mac {}{})",
                        i.id.as_deref().unwrap_or("?"),
                        i.mac,
                        i.device.map(|d| format!(", device {d}")).unwrap_or_default()
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
            let detail = format!("no instance metadata from {}: {e}", imds::endpoint());
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

/// Where the credentials come from; static keys on an instance are a warning. The bool: any
/// credentials at all (the EC2 items need them).
pub(super) async fn credentials_item(sdk: &aws_config::SdkConfig, on_ec2: bool) -> (CheckItem, bool) {
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
                    format!("none found: {}", error_chain(&e)),
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

/// The region and where it came from; warns when the instance runs in another one.
pub(super) fn region_item(config: &Config, region: Option<&str>, imds: Option<&ImdsInfo>) -> CheckItem {
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

// 3. endpoint

/// The EC2 endpoint the SDK will call, and whether an admin chose it.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
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

/// The endpoint in the SDK's order: config, `AWS_ENDPOINT_URL_EC2`, profile, `AWS_ENDPOINT_URL`,
/// else the public regional one.
pub(super) fn endpoint_of(
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

/// Whether the endpoint resolves and accepts a TCP connection, and what kind it is. The bool:
/// reachable (else the EC2 items are not tried).
pub(super) async fn endpoint_item(ep: &Endpoint, region: &str) -> (CheckItem, bool) {
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
}
