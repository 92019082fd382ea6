//! How the host is set up: the settings `cos-fuse host` parses from its flags. Plain data, read by
//! the other parts of the server; it does nothing itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use csi_common::metrics::Metrics;

/// How the host is set up (the `cos-fuse host` flags).
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub socket: PathBuf,
    /// Records and daemon logs; private to root.
    pub state_dir: PathBuf,
    /// The only programs the host runs, by kind; each only as `PROGRAM mount ARGS... TARGET`.
    pub programs: BTreeMap<String, PathBuf>,
    /// Mount targets must lie under this directory (the kubelet's, where the node plugins keep
    /// their mounts directories).
    pub target_dir: PathBuf,
    /// How long a new daemon has to bring its mount up.
    pub ready_timeout: Duration,
    /// How long an unmounted daemon has to finish its uploads and exit before it is killed
    /// (GooseFS-Lite's `goosefs.fuse.umount.timeout` default is 120 s).
    pub exit_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// The node's staging area: every daemon stages in a directory of its own under it, and
    /// all of them together at most `staging_max_bytes` (handed to each daemon through
    /// [`STAGING_AREA_ENV`] and [`STAGING_MAX_BYTES_ENV`]). `None`: each daemon stages where its
    /// own options say.
    pub staging_area: Option<PathBuf>,
    pub staging_max_bytes: u64,
    /// The kinds whose program keeps its kernel connection apart (`cos-fuse`): the host holds a
    /// copy of each such mount's connection, restarts a daemon that dies onto it (the mount
    /// never breaks), and has a newer program take a mount over from an older daemon.
    pub keeping_kinds: BTreeSet<String>,
    /// Each daemon runs in a cgroup of its own under each of these directories (one per
    /// hierarchy of the node's cgroup file system: one on cgroup v2, one per controller on v1),
    /// out of the host's: the container runtime, stopping the host's container, kills the
    /// processes of the container's cgroup only. Empty: daemons stay in the host's cgroup.
    pub daemon_cgroups: Vec<PathBuf>,
    /// The memory limit of each daemon's cgroup, in bytes: one daemon's OOM kill is its own
    /// (and the host restarts it). `None`: no limit of its own.
    pub daemon_memory_max: Option<u64>,
    /// The pause after a failed restart of a dead daemon, doubled at each further failure
    /// (until the mount's budget of restarts, 5 a minute, is spent).
    pub restart_backoff: Duration,
}

/// The environment variable that hands a daemon the node's staging area.
pub const STAGING_AREA_ENV: &str = "CSI_FUSE_STAGING_AREA";
/// The environment variable that hands a daemon the area's cap, in bytes.
pub const STAGING_MAX_BYTES_ENV: &str = "CSI_FUSE_STAGING_AREA_MAX_BYTES";
