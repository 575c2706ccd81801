//! The one IMDSv2 client of the program: the daemon asks it who this node is, the pre-flight
//! check asks it what this instance looks like.
//!
//! It wraps the SDK's client, which does the token PUT before every GET and honours
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` (and its companions), so the lab's IMDS responders and
//! real instances are reached the same way.

use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::error::DisplayErrorContext;

/// The variable that points every IMDS request elsewhere (the lab's responders use it).
pub const ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// Where IMDS answers on an EC2 instance.
const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// Why IMDS gave no usable answer; callers word it for their reader.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// The token PUT or the GET failed.
    #[error("GET {path}: {}", crate::ec2::error_chain(.source))]
    Get {
        /// The metadata path asked for, so the reader knows which step failed.
        path: String,
        /// The SDK's error: unreachable endpoint, refused token, HTTP status.
        source: aws_config::imds::client::error::ImdsError,
    },
    /// IMDS answered something that is not an instance id (e.g. a captive web page).
    #[error("unexpected instance id `{0}`")]
    UnexpectedInstanceId(String),
    /// The time budget ran out before IMDS finished answering.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl ImdsError {
    /// The SDK's full account of a failed request (kept for the daemon's start-up error, which
    /// has always shown it); other failures as displayed.
    pub fn full_context(&self) -> String {
        match self {
            ImdsError::Get { source, .. } => DisplayErrorContext(source).to_string(),
            other => other.to_string(),
        }
    }
}

/// The IMDS endpoint requests go to, for messages that must say where nobody answered.
pub fn endpoint() -> String {
    std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string())
}

/// One network interface as IMDS lists it; the device number tells the primary one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// How IMDS keys the interface.
    pub mac: String,
    /// The ENI id, what EC2 calls take.
    pub id: Option<String>,
    /// 0 is the primary interface.
    pub device: Option<u32>,
}

/// The primary interface (device 0, else the first listed) among those IMDS lists: where
/// addresses go when the configuration names no interface.
pub fn primary(interfaces: &[Interface]) -> Option<&str> {
    interfaces
        .iter()
        .find(|i| i.device == Some(0))
        .or(interfaces.first())
        .and_then(|i| i.id.as_deref())
}

/// Answers a bounded future, or `Timeout(budget)`: callers must finish even when nothing
/// answers (a container without a hop limit of 2 just drops the PUT).
pub async fn within<T>(budget: Duration, work: impl Future<Output = Result<T, ImdsError>>) -> Result<T, ImdsError> {
    tokio::time::timeout(budget, work).await.unwrap_or(Err(ImdsError::Timeout(budget)))
}

/// The IMDSv2 client, built either patient (daemon start-up) or quick (pre-flight check).
#[derive(Debug, Clone)]
pub struct Imds {
    client: aws_config::imds::Client,
}

impl Imds {
    /// For the daemon's start-up: the SDK's default attempts, so a slow IMDS right after boot
    /// does not stop the daemon.
    pub fn patient() -> Imds {
        Imds {
            client: aws_config::imds::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(2))
                .build(),
        }
    }

    /// For the pre-flight check: one attempt per request, so a missing IMDS is reported quickly.
    pub fn single_attempt() -> Imds {
        Imds {
            client: aws_config::imds::Client::builder()
                .max_attempts(1)
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(1))
                .build(),
        }
    }

    /// One metadata value, trimmed.
    pub async fn get(&self, path: &str) -> Result<String, ImdsError> {
        self.client
            .get(path)
            .await
            .map(|s| s.as_ref().trim().to_string())
            .map_err(|source| ImdsError::Get {
                path: path.to_string(),
                source,
            })
    }

    /// A metadata document that may be absent: None when IMDS answers 404 (EC2 serves the
    /// event documents only while there is an event).
    pub async fn get_optional(&self, path: &str) -> Result<Option<String>, ImdsError> {
        use aws_config::imds::client::error::ImdsError as SdkError;
        match self.client.get(path).await {
            Ok(s) => Ok(Some(s.as_ref().trim().to_string())),
            Err(SdkError::ErrorResponse(e)) if e.response().status().as_u16() == 404 => Ok(None),
            Err(source) => Err(ImdsError::Get {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// This instance's id, checked to look like one.
    pub async fn instance_id(&self) -> Result<String, ImdsError> {
        let id = self.get("/latest/meta-data/instance-id").await?;
        if id.starts_with("i-") {
            Ok(id)
        } else {
            Err(ImdsError::UnexpectedInstanceId(id))
        }
    }

    /// The availability zone, which also tells the region the instance runs in.
    pub async fn availability_zone(&self) -> Result<String, ImdsError> {
        self.get("/latest/meta-data/placement/availability-zone").await
    }

    /// The attached interfaces (at most 16: more means a confused responder). A value missing
    /// for one interface leaves that field empty rather than failing the list.
    pub async fn interfaces(&self) -> Result<Vec<Interface>, ImdsError> {
        let macs = self.get("/latest/meta-data/network/interfaces/macs/").await?;
        let mut interfaces = Vec::new();
        for mac in macs
            .lines()
            .map(|l| l.trim().trim_end_matches('/'))
            .filter(|l| !l.is_empty())
            .take(16)
        {
            let base = format!("/latest/meta-data/network/interfaces/macs/{mac}");
            let id = self.get(&format!("{base}/interface-id")).await.ok();
            let device = self
                .get(&format!("{base}/device-number"))
                .await
                .ok()
                .and_then(|s| s.parse().ok());
            interfaces.push(Interface {
                mac: mac.to_string(),
                id,
                device,
            });
        }
        Ok(interfaces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_is_device_zero_else_the_first() {
        let i = |id: &str, device| Interface {
            mac: String::new(),
            id: Some(id.to_string()),
            device,
        };
        assert_eq!(primary(&[i("eni-b", Some(1)), i("eni-a", Some(0))]), Some("eni-a"));
        assert_eq!(primary(&[i("eni-b", None), i("eni-a", None)]), Some("eni-b"));
        assert_eq!(primary(&[]), None);
    }
}
