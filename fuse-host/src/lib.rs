//! `fuse-host`: a long-lived process that starts, watches and stops FUSE daemons (`cos-fuse`,
//! a GooseFS client) on behalf of a node plugin.
//!
//! Kubernetes kills every process of a container when the container restarts or is upgraded, so a
//! FUSE daemon started by the node plugin would take its mount down with it. The node plugin
//! therefore asks the host, over a local unix socket, with one structured JSON request per
//! connection; the socket's permissions (and the peer's uid) are the authentication. The host runs
//! only programs it was configured with (`--allow-program KIND=PATH`), as an argument vector with a
//! clean environment; credentials travel in the request and reach the daemon in a private file or
//! on its standard input, never on a command line, in an environment or in a log. Every mount is
//! recorded in a state directory, so a restarted host re-adopts the daemons that outlived it. For
//! programs that keep their kernel connection apart ([`control`]), the host holds a copy of each
//! mount's connection: a daemon that dies is restarted onto it, and a newer program takes a mount
//! over from an older daemon, without the mount ever breaking.

mod client;
pub mod control;
mod protocol;
mod server;

pub use client::{HostClient, HostError};
pub use protocol::{
    AuthFailureStatus, ErrorCode, MAX_ERROR_CHARS, MountDetails, MountRequest, MountStatus,
    Request, Response, WarmupStatus,
};
pub use server::cgroup::roots as cgroup_roots;
pub use server::{HostConfig, STAGING_AREA_ENV, STAGING_MAX_BYTES_ENV, STATS_ENV, serve};

use csi_common::csi::{CsiError, error_chain};

/// What a node plugin answers when the FUSE host fails it: one exhaustive map, here beside the
/// error, so `csi-common` need not know the host.
impl From<HostError> for CsiError {
    fn from(error: HostError) -> CsiError {
        let message = error_chain(&error);
        match error {
            HostError::Unreachable { .. } => CsiError::Unavailable(message),
            HostError::Timeout { .. } => CsiError::DeadlineExceeded(message),
            HostError::BadAnswer(_) => CsiError::Internal(message),
            HostError::Refused { code, .. } => match code {
                ErrorCode::Invalid => CsiError::InvalidArgument(message),
                ErrorCode::NotConfigured | ErrorCode::Conflict => {
                    CsiError::FailedPrecondition(message)
                }
                ErrorCode::Failed => CsiError::Internal(message),
                ErrorCode::Timeout => CsiError::DeadlineExceeded(message),
            },
        }
    }
}
