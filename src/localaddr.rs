//! Local configuration of floating addresses (route-table VIPs, secondary IPs), IPv4 and IPv6.
//!
//! A route-table VIP only works on the node the VPC route points at if that node also owns the
//! address: the kernel must accept packets for it and answer from it. The holder therefore puts
//! the VIP on a local interface, and a node that loses the role takes it off again, so two
//! nodes never both answer for it once the route has moved.
//!
//! Everything goes through a netlink route socket (the `ip addr` machinery, without spawning
//! `ip`). Every operation is idempotent and reports whether it changed anything, because the
//! reconcile loop calls them on every pass and after restarts, when the kernel may already be
//! in the wanted state.

use std::io;
use std::net::IpAddr;

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;

/// Longest interface name or address label the kernel stores (IFNAMSIZ minus the NUL).
const MAX_NAME_LEN: usize = 15;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

/// Why a VIP could not be put on or taken off this node's interface; shown as the
/// resource's error, since a VIP routed to us but not configured carries no traffic.
#[derive(Debug, thiserror::Error)]
pub enum LocalAddrError {
    /// No netlink socket (no tokio runtime, or the kernel refused one).
    #[error("cannot open a netlink route socket: {source}")]
    Socket {
        /// The underlying error.
        source: io::Error,
    },
    /// The VIP's configured `interface` does not exist on this node.
    #[error("interface {interface} not found")]
    InterfaceNotFound {
        /// The configured interface name.
        interface: String,
    },
    /// The kernel would not say whether the interface exists.
    #[error("cannot look up interface {interface}: {source}")]
    Interface {
        /// The configured interface name.
        interface: String,
        /// The netlink error, with the kernel's errno.
        source: io::Error,
    },
    /// The interface's addresses could not be read, so presence is unknown.
    #[error("cannot list the addresses of {interface}: {source}")]
    List {
        /// The configured interface name.
        interface: String,
        /// The netlink error, with the kernel's errno.
        source: io::Error,
    },
    /// The request itself is wrong (prefix, non-unicast address, bad label); nothing was sent.
    #[error("cannot add {address}/{prefix_len} to {interface}: {reason}")]
    Invalid {
        /// The configured interface name.
        interface: String,
        /// The floating address.
        address: IpAddr,
        /// The prefix length asked for.
        prefix_len: u8,
        /// What is wrong with the request.
        reason: String,
    },
    /// The kernel refused to add the VIP.
    #[error("cannot add {address}/{prefix_len} to {interface}: {source}")]
    Add {
        /// The configured interface name.
        interface: String,
        /// The floating address.
        address: IpAddr,
        /// The prefix length asked for.
        prefix_len: u8,
        /// The netlink error, with the kernel's errno.
        source: io::Error,
    },
    /// The kernel refused to remove the VIP, so this node may still answer for it.
    #[error("cannot remove {address}/{prefix_len} from {interface}: {source}")]
    Remove {
        /// The configured interface name.
        interface: String,
        /// The floating address.
        address: IpAddr,
        /// The prefix length found on the interface.
        prefix_len: u8,
        /// The netlink error, with the kernel's errno.
        source: io::Error,
    },
}

/// Keeps the kernel's errno visible (callers and messages want "File exists (os error 17)",
/// not rtnetlink's wrapper text), and everything else still readable.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// An address of an interface as the kernel reported it.
struct Found {
    prefix_len: u8,
    /// IFA_ADDRESS: differs from the local address on point-to-point links, and deletion must
    /// repeat it or the kernel matches nothing.
    peer: Option<IpAddr>,
    label: Option<String>,
}

/// Handle on the address configuration of one network namespace: how the holder puts a VIP
/// on its interface and every other node takes it off.
#[derive(Debug)]
pub struct LocalAddresses {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
    /// Held while a dump (an address or link listing) runs: the kernel runs one dump at a
    /// time per netlink socket and answers a second with EBUSY, and the acquisitions of one
    /// failover put their addresses on the interface together.
    dumps: tokio::sync::Mutex<()>,
}

impl Drop for LocalAddresses {
    fn drop(&mut self) {
        // The connection task does not end when the handle goes away (it keeps waiting for
        // unsolicited messages), and its socket would pin the network namespace it was opened
        // in.
        self.connection.abort();
    }
}

impl LocalAddresses {
    /// Opens a netlink route socket in the calling thread's network namespace; spawns the
    /// connection task on the current tokio runtime (an error, not a panic, without one).
    pub fn new() -> Result<LocalAddresses, LocalAddrError> {
        // Both opening the socket (registration with the IO driver) and spawning would panic
        // outside a runtime; a daemon wiring mistake should be an error instead.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| LocalAddrError::Socket {
                source: io::Error::other(e.to_string()),
            })?;
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| LocalAddrError::Socket { source })?;
        let connection = runtime.spawn(connection);
        Ok(LocalAddresses {
            handle,
            connection,
            dumps: tokio::sync::Mutex::new(()),
        })
    }

    /// Adds address/prefix to the interface unless already there (then `Ok(false)`).
    ///
    /// `label` is an optional Linux address label ("eth0:vip"); it must start with the
    /// interface name and be at most 15 characters.
    ///
    /// The address counts as already there whatever its prefix length and label: it is then
    /// left alone (with a warning when they differ), because changing them would briefly take
    /// away an address that may be serving traffic.
    pub async fn ensure_present(
        &self,
        interface: &str,
        address: impl Into<IpAddr>,
        prefix_len: u8,
        label: Option<&str>,
    ) -> Result<bool, LocalAddrError> {
        let address = address.into();
        let invalid = |reason: String| LocalAddrError::Invalid {
            interface: interface.to_owned(),
            address,
            prefix_len,
            reason,
        };
        let max_prefix = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > max_prefix {
            return Err(invalid(format!("the prefix length must be at most {max_prefix}")));
        }
        let broadcast = matches!(address, IpAddr::V4(a) if a.is_broadcast());
        if address.is_unspecified() || address.is_multicast() || broadcast {
            return Err(invalid("not a unicast address".into()));
        }
        if let Some(label) = label {
            if address.is_ipv6() {
                return Err(invalid("Linux keeps address labels for IPv4 only".into()));
            }
            validate_label(interface, label).map_err(invalid)?;
        }

        let index = self.link_index(interface).await?;
        let found = self.find(interface, index, address).await?;
        if let Some(existing) = found.first() {
            if existing.prefix_len != prefix_len
                || (label.is_some() && existing.label.as_deref() != label)
            {
                tracing::warn!(
                    interface,
                    %address,
                    existing_prefix_len = existing.prefix_len,
                    existing_label = existing.label.as_deref().unwrap_or(""),
                    wanted_prefix_len = prefix_len,
                    wanted_label = label.unwrap_or(""),
                    "address already configured with another prefix length or label; leaving it as it is"
                );
            }
            return Ok(false);
        }

        let mut request = self.handle.address().add(index, address, prefix_len);
        if address.is_ipv6() {
            // Only the holder has the address, and it must answer at once: duplicate address
            // detection would hold it "tentative" for a second or more after every move.
            request.message_mut().header.flags |= rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
        }
        if let Some(label) = label {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Label(label.to_owned()));
        }
        match request.execute().await {
            Ok(()) => Ok(true),
            // Someone else (an operator, a previous instance of ours) got there between the
            // lookup and the add; the wanted state holds either way.
            Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
            Err(e) => Err(LocalAddrError::Add {
                interface: interface.to_owned(),
                address,
                prefix_len,
                source: to_io(e),
            }),
        }
    }

    /// Removes the address (any prefix) from the interface if present: `Ok(true)` when
    /// removed, `Ok(false)` when it was not there. A missing interface is an error.
    pub async fn ensure_absent(
        &self,
        interface: &str,
        address: impl Into<IpAddr>,
    ) -> Result<bool, LocalAddrError> {
        let address = address.into();
        let index = self.link_index(interface).await?;
        let found = self.find(interface, index, address).await?;
        let mut removed = false;
        for f in found {
            let mut message = AddressMessage::default();
            message.header.family = family(address);
            message.header.index = index;
            message.header.prefix_len = f.prefix_len;
            message.attributes.push(AddressAttribute::Local(address));
            message
                .attributes
                .push(AddressAttribute::Address(f.peer.unwrap_or(address)));
            match self.handle.address().del(message).execute().await {
                Ok(()) => removed = true,
                // Gone meanwhile, e.g. removed together with the primary address of its
                // subnet, or by someone else.
                Err(e) if errno(&e) == Some(EADDRNOTAVAIL) => {}
                Err(e) => {
                    return Err(LocalAddrError::Remove {
                        interface: interface.to_owned(),
                        address,
                        prefix_len: f.prefix_len,
                        source: to_io(e),
                    })
                }
            }
        }
        Ok(removed)
    }

    /// Whether the address (with any prefix length) is configured on the interface.
    pub async fn is_present(
        &self,
        interface: &str,
        address: impl Into<IpAddr>,
    ) -> Result<bool, LocalAddrError> {
        let address = address.into();
        let index = self.link_index(interface).await?;
        Ok(!self.find(interface, index, address).await?.is_empty())
    }

    async fn link_index(&self, interface: &str) -> Result<u32, LocalAddrError> {
        let not_found = || LocalAddrError::InterfaceNotFound {
            interface: interface.to_owned(),
        };
        // The kernel rejects such names with EINVAL/ERANGE; no interface can carry them, so say
        // so plainly.
        if interface.is_empty() || interface.len() > MAX_NAME_LEN || interface.contains('\0') {
            return Err(not_found());
        }
        let _dump = self.dumps.lock().await;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(interface.to_owned())
            .execute();
        // Read to the end, whatever the kernel sends: a dump left half read would still hold
        // the socket when the next one starts.
        let mut first = None;
        let end = loop {
            match links.try_next().await {
                Ok(Some(link)) => {
                    first.get_or_insert(link.header.index);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        match end.map(|()| first) {
            Ok(Some(index)) => Ok(index),
            Ok(None) => Err(not_found()),
            Err(e) if errno(&e) == Some(ENODEV) => Err(not_found()),
            Err(e) => Err(LocalAddrError::Interface {
                interface: interface.to_owned(),
                source: to_io(e),
            }),
        }
    }

    async fn find(
        &self,
        interface: &str,
        index: u32,
        address: IpAddr,
    ) -> Result<Vec<Found>, LocalAddrError> {
        let _dump = self.dumps.lock().await;
        let mut request = self.handle.address().get().set_link_index_filter(index);
        // The kernel honours the family of a dump request, which spares us the other family.
        request.message_mut().header.family = family(address);
        let mut stream = request.execute();
        let mut found = Vec::new();
        loop {
            let message = match stream.try_next().await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    return Err(LocalAddrError::List {
                        interface: interface.to_owned(),
                        source: to_io(e),
                    })
                }
            };
            if message.header.family != family(address) {
                continue;
            }
            let mut local = None;
            let mut peer = None;
            let mut label = None;
            for attribute in &message.attributes {
                match attribute {
                    AddressAttribute::Local(a) => local = Some(*a),
                    AddressAttribute::Address(a) => peer = Some(*a),
                    AddressAttribute::Label(l) => label = Some(l.clone()),
                    _ => {}
                }
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is only the same thing on
            // broadcast links (on point-to-point links it is the peer, which we must not match).
            if local.or(peer) == Some(address) {
                found.push(Found {
                    prefix_len: message.header.prefix_len,
                    peer,
                    label,
                });
            }
        }
        Ok(found)
    }
}

fn family(address: IpAddr) -> AddressFamily {
    if address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn validate_label(interface: &str, label: &str) -> Result<(), String> {
    // The same rule as iproute2: labels are how tools like ifconfig tell aliases of an
    // interface apart, so one that does not name its interface would be misleading.
    if !label.starts_with(interface) {
        return Err(format!(
            "label {label:?} must start with the interface name"
        ));
    }
    if label.len() > MAX_NAME_LEN {
        return Err(format!(
            "label {label:?} is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if label.contains('\0') {
        return Err(format!("label {label:?} contains a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_label;

    #[test]
    fn labels() {
        assert!(validate_label("eth0", "eth0").is_ok());
        assert!(validate_label("eth0", "eth0:vip").is_ok());
        assert!(validate_label("eth0", "eth1:vip").is_err());
        assert!(validate_label("eth0", "eth0:0123456789a").is_err());
    }
}
