//! corosync-eip: keeps AWS addresses on a live, quorate member of a Corosync cluster.
//!
//! `core` is pure decision logic; the other modules are thin adapters around it.

// Every public item says why it exists.
#![warn(missing_docs)]

pub mod batch;
pub mod check;
pub mod child;
pub mod config;
pub mod control;
pub mod core;
pub mod corosync;
pub mod daemon;
pub mod ec2;
pub mod fence;
pub mod health;
pub mod identity;
pub mod imds;
pub mod kinds;
pub mod listener;
pub mod localaddr;
pub mod metrics;
pub mod notify;
pub mod pacemaker;
pub mod permissions;
pub mod route53;
pub mod status;
pub mod systemd;
