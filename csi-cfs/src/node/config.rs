//! What the CFS node service is configured with.

use std::path::{Path, PathBuf};

use csi_common::csi::request::NodePaths;

use crate::nfs::NfsMounter;
use crate::params::Flavor;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    /// Where each file system is mounted once for the whole node.
    pub mounts_dir: PathBuf,
    pub nfs: NfsMounter,
    /// The kubelet's directory: staging and target paths lie under it, and the binds under it are
    /// the only users of a node-wide mount.
    pub kubelet_dir: PathBuf,
    /// CFS or CFS Turbo: how volume attributes read.
    pub flavor: Flavor,
}

impl NodeConfig {
    /// Where requests may name staging and target paths.
    pub fn paths(&self) -> NodePaths {
        NodePaths::new([self.kubelet_dir.clone()])
    }

    /// A mount point of the node's own binds: under the kubelet directory, not a node-wide mount.
    pub(super) fn is_node_path(&self, path: &Path) -> bool {
        path.starts_with(&self.kubelet_dir) && !path.starts_with(&self.mounts_dir)
    }
}
