//! Who this node is in EC2: its instance id (config, else IMDSv2) and primary ENI (config,
//! else DescribeInstances).

use std::time::Duration;

use crate::config::NodeConfig;
use crate::core::reconcile::Identity;
use crate::ec2::{Ec2, Ec2Error};

/// Why this node cannot say who it is in EC2 (the daemon cannot start without it).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// IMDSv2 gave no instance id and the configuration names none.
    #[error("instance metadata (IMDSv2) did not give an instance id: {0} (set [node] instance_id, or check that IMDS is enabled and the hop limit allows it)")]
    Imds(String),
    /// DescribeInstances failed, so the primary ENI that addresses should point at is unknown.
    #[error("cannot find the network interface of {instance}: {source}")]
    Interface {
        /// The instance whose ENI was looked up.
        instance: String,
        /// Why EC2 did not answer (permission, not found, unreachable).
        source: Ec2Error,
    },
    /// EC2 knows the instance but it has no device-index-0 ENI to point addresses at.
    #[error("instance {0} has no network interface at device index 0; set [node] network_interface_id")]
    NoInterface(String),
}

/// The instance id from IMDSv2, for nodes whose configuration does not name it.
pub async fn instance_id_from_imds() -> Result<String, IdentityError> {
    crate::imds::Imds::patient()
        .instance_id()
        .await
        .map_err(|e| IdentityError::Imds(e.full_context()))
}

/// This node's identity, and its availability zone when EC2 says it (shown in status).
pub async fn resolve(node: &NodeConfig, ec2: &Ec2) -> Result<(Identity, Option<String>), IdentityError> {
    let instance_id = match &node.instance_id {
        Some(id) => id.clone(),
        None => instance_id_from_imds().await?,
    };
    let placement = ec2.instance_placement(&instance_id, Duration::from_secs(10)).await;
    let (network_interface_id, availability_zone) = match (&node.network_interface_id, placement) {
        // A configured ENI does not depend on DescribeInstances; the zone is only for display.
        (Some(eni), placement) => (eni.clone(), placement.ok().and_then(|p| p.availability_zone)),
        (None, Ok(p)) => (
            p.primary_interface.ok_or_else(|| IdentityError::NoInterface(instance_id.clone()))?,
            p.availability_zone,
        ),
        (None, Err(source)) => {
            return Err(IdentityError::Interface {
                instance: instance_id.clone(),
                source,
            })
        }
    };
    Ok((
        Identity {
            instance_id,
            network_interface_id: Some(network_interface_id),
        },
        availability_zone,
    ))
}
