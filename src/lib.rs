//! corosync-eip: keeps AWS addresses on a live, quorate member of a Corosync cluster.
//!
//! `core` is pure decision logic; the other modules are thin adapters around it.

pub mod config;
pub mod core;
pub mod corosync;
pub mod ec2;
pub mod identity;
pub mod control;
pub mod status;
pub mod daemon;
