//! How the host is set up: the settings `cos-fuse host` parses from its flags. Plain data, read by
//! the other parts of the server; it does nothing itself.

use std::collections::BTreeMap;
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
    /// The only programs the host runs, by kind.
    pub programs: BTreeMap<String, PathBuf>,
    /// How long a new daemon has to bring its mount up.
    pub ready_timeout: Duration,
    /// How long an unmounted daemon has to finish its uploads and exit before it is killed
    /// (GooseFS-Lite's `goosefs.fuse.umount.timeout` default is 120 s).
    pub exit_timeout: Duration,
    pub metrics: Arc<Metrics>,
}
