//! Serving an [`Fs`](crate::fs::Fs) through the kernel with fuser. This module only names its
//! parts, each with one job:
//!
//! - `fuse/mount.rs`: the mount options, mounting and the handle that unmounts;
//! - `fuse/adapter.rs`: kernel requests to `Fs` calls and back, one task per request;
//! - `fuse/connection.rs`: a connection kept apart from its daemon: mounting it, serving it
//!   fresh or already running;
//! - `fuse/handover.rs`: stopping to read a connection and finishing what was read, for a
//!   successor;
//! - `fuse/counters.rs`: requests and failures per operation, bytes moved;
//! - `fuse/failures.rs`: the log of failed requests, one line each, rate-limited;
//! - `fuse/read_ahead.rs`: the mount's kernel read-ahead (sysfs `read_ahead_kb`).

mod adapter;
mod connection;
mod counters;
mod failures;
mod handover;
mod mount;
mod read_ahead;

pub use connection::{Served, open_and_mount, serve};
pub use counters::{FuseCounters, FuseCountersSnapshot};
pub use handover::{hand_over, prepare_hand_over};
pub use mount::{MountHandle, MountOptions, mount, mount_blocking};
