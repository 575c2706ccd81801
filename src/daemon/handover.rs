//! What a reloading daemon hands to the process it re-executes: the cluster table, and all it
//! learnt from EC2 and its health checks, so the new process rejoins CPG at once, before any
//! slow call, while the peers' reattach grace is running.
//!
//! It travels in a memfd the new image inherits, not in the environment: an environment
//! string is limited to 128 KiB, and a variable can leak into another process (a unit's
//! `Environment=`, a shell an admin started from a hook). The new process accepts it only when
//! both marks of a real re-exec are there: the inherited descriptor is our memfd, and the pid
//! recorded beside it is its own (an exec keeps the pid).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use serde::{Deserialize, Serialize};

use crate::core::reconcile::Identity;
use crate::core::wire::WireAssignment;

/// Names the inherited descriptor that holds the handover.
pub const FD_ENV: &str = "COROSYNC_EIP_HANDOVER_FD";
/// The pid of the process that wrote it (an exec keeps the pid).
pub const PID_ENV: &str = "COROSYNC_EIP_HANDOVER_PID";
/// The memfd's name, as `/proc/self/fd` shows it (`/memfd:NAME (deleted)`).
const MEMFD_NAME: &str = "corosync-eip-handover";

/// Route tables found by a VIP's `discover` query, with the query they answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// The query as configured (its debug text): a changed query is discovered afresh.
    pub query: String,
    /// The route table ids found.
    pub tables: Vec<String>,
}

impl Discovered {
    /// The text a query is kept under: what `query` holds.
    pub fn query_text(query: &crate::config::RouteTableQuery) -> String {
        format!("{query:?}")
    }

    /// Whether these tables answer `query` as it is configured now.
    pub fn answers(&self, query: &crate::config::RouteTableQuery) -> bool {
        self.query == Self::query_text(query)
    }
}

/// Everything handed over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    /// The cluster table we knew (None: not learnt yet).
    pub table: Option<Vec<WireAssignment>>,
    /// This node's instance and interface.
    pub identity: Option<Identity>,
    /// Its availability zone, as EC2 said it.
    pub availability_zone: Option<String>,
    /// Discovered route tables, by VIP name.
    pub route_tables: BTreeMap<String, Discovered>,
    /// Each health check's state, by check name: healthy or not.
    pub health: BTreeMap<String, bool>,
}

/// Why an inherited handover was refused; the daemon then starts as a fresh process would.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// The variables name another process: not a re-exec of this one.
    #[error("{PID_ENV}={0} is not this process ({1}): not re-executed by a running daemon")]
    NotOurs(String, u32),
    /// The descriptor is missing or is not our memfd.
    #[error("{FD_ENV}={fd} is not the handover memfd ({found})")]
    NotMemfd {
        /// The descriptor named.
        fd: String,
        /// What it is instead.
        found: String,
    },
    /// Reading it failed.
    #[error("cannot read the handover: {0}")]
    Read(#[from] std::io::Error),
    /// It is not a handover of this version.
    #[error("unreadable handover: {0}")]
    Parse(#[from] serde_json::Error),
}

/// Writes the handover into a memfd that stays open across exec; the caller sets [`FD_ENV`]
/// to its number and [`PID_ENV`] to our pid, and keeps it open until the exec.
pub fn write(handover: &Handover) -> std::io::Result<OwnedFd> {
    let name = CString::new(MEMFD_NAME).map_err(std::io::Error::other)?;
    // Without MFD_CLOEXEC: the point is that the new image inherits it.
    let fd = memfd_create(&name, MemFdCreateFlag::empty()).map_err(std::io::Error::from)?;
    let mut file = File::from(fd);
    file.write_all(&serde_json::to_vec(handover).map_err(std::io::Error::other)?)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// In a starting process: the handover its predecessor left, if this is a re-exec. Removes the
/// variables and closes the descriptor either way, so nothing started later inherits them.
pub fn take() -> Result<Option<Handover>, HandoverError> {
    let fd = std::env::var(FD_ENV).ok();
    let pid = std::env::var(PID_ENV).ok();
    std::env::remove_var(FD_ENV);
    std::env::remove_var(PID_ENV);
    let (Some(fd), Some(pid)) = (fd, pid) else { return Ok(None) };
    let me = std::process::id();
    if pid.parse::<u32>().ok() != Some(me) {
        return Err(HandoverError::NotOurs(pid, me));
    }
    let not_memfd = |found: String| HandoverError::NotMemfd { fd: fd.clone(), found };
    let number: i32 = fd.parse().map_err(|_| not_memfd("not a descriptor number".into()))?;
    if number <= 2 {
        return Err(not_memfd("a standard stream".into()));
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{number}")).map_err(|e| not_memfd(e.to_string()))?;
    let link = link.to_string_lossy().into_owned();
    if !link.starts_with(&format!("/memfd:{MEMFD_NAME}")) {
        return Err(not_memfd(link));
    }
    // SAFETY: the descriptor is open (its /proc link resolved), is the handover memfd, and
    // nothing else in this process owns it: it was inherited across exec and only this
    // function, which runs once at start, looks it up.
    let mut file = unsafe { File::from_raw_fd(number) };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Some(serde_json::from_str(&text)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn sample() -> Handover {
        Handover {
            table: Some(Vec::new()),
            identity: Some(Identity { instance_id: "i-1".into(), network_interface_id: Some("eni-1".into()) }),
            availability_zone: Some("us-east-1a".into()),
            route_tables: BTreeMap::from([("vip1".into(), Discovered { query: "q".into(), tables: vec!["rtb-1".into()] })]),
            // Far beyond the 128 KiB an environment string may hold.
            health: (0..20_000).map(|i| (format!("check-{i:06}"), i % 2 == 0)).collect(),
        }
    }

    /// One test, because the variables are process-wide: each case in turn.
    #[test]
    fn only_our_own_memfd_with_our_pid_is_accepted_whatever_its_size() {
        assert!(take().unwrap().is_none(), "a fresh start has no handover");

        let h = sample();
        let fd = write(&h).unwrap();
        assert!(serde_json::to_vec(&h).unwrap().len() > 128 * 1024);
        std::env::set_var(FD_ENV, fd.as_raw_fd().to_string());
        std::env::set_var(PID_ENV, std::process::id().to_string());
        let taken = take().unwrap().expect("handed over");
        std::mem::forget(fd); // `take` owned and closed it
        assert_eq!(taken, h);
        assert!(std::env::var_os(FD_ENV).is_none() && std::env::var_os(PID_ENV).is_none(), "variables removed");

        // A leaked pair of variables in another process.
        std::env::set_var(FD_ENV, "7");
        std::env::set_var(PID_ENV, "1");
        assert!(matches!(take(), Err(HandoverError::NotOurs(..))));

        // Our pid, but the descriptor is something else (a plain file).
        let other = File::open("/proc/self/status").unwrap();
        std::env::set_var(FD_ENV, other.as_raw_fd().to_string());
        std::env::set_var(PID_ENV, std::process::id().to_string());
        let e = take().unwrap_err();
        assert!(matches!(e, HandoverError::NotMemfd { .. }), "{e}");
        drop(other);

        // Our pid, a descriptor that is not open.
        std::env::set_var(FD_ENV, "99999");
        std::env::set_var(PID_ENV, std::process::id().to_string());
        assert!(matches!(take(), Err(HandoverError::NotMemfd { .. })));
    }
}
