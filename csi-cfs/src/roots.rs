//! The roots a controller mounts to manage subdirectory volumes (a CFS shared instance's, a CFS
//! Turbo root directory), under its work directory, through the same NFS layer as the node. Each
//! stays mounted, reused while healthy, until the plugin stops ([`unmount_all`]). Each root is
//! mounted one caller at a time, under a lock of its own: a file system whose server is gone
//! holds up only its own volumes, and the health check of a mount is bounded
//! ([`csi_common::mount::bounded`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use csi_common::mount::Mounter;
use csi_common::mount::ops::healthy_mount;

use crate::error::{Error, Result, io};
use crate::nfs::{NfsMounter, NfsSource};

#[derive(Debug)]
pub struct Roots {
    work_dir: PathBuf,
    nfs: NfsMounter,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Roots {
    pub fn new(work_dir: PathBuf, nfs: NfsMounter) -> Roots {
        Roots {
            work_dir,
            nfs,
            locks: Mutex::default(),
        }
    }

    /// The root of `source`, mounted at `<work dir>/<key>` (`key` one path segment).
    pub async fn mounted<M: Mounter + 'static>(
        &self,
        mounter: &Arc<M>,
        key: &str,
        source: NfsSource,
    ) -> Result<PathBuf> {
        if let Some(missing) = self.nfs.client_missing(&source) {
            return Err(Error::FailedPrecondition(missing));
        }
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.to_owned())
                .or_default(),
        );
        let _one_at_a_time = lock.lock().await;
        let root = self.work_dir.join(key);
        let (mounter, nfs, path) = (Arc::clone(mounter), self.nfs.clone(), root.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            std::fs::create_dir_all(&path)
                .map_err(io(&path, "cannot create the controller's mount point"))?;
            if healthy_mount(mounter.as_ref(), &path)?.is_none() {
                nfs.mount(&source, &path, &[], false)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("mount task failed: {e}")))??;
        Ok(root)
    }
}

/// Unmounts the controller's roots (at shutdown).
pub fn unmount_all<M: Mounter>(mounter: &M, nfs: &NfsMounter, work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(e) = nfs.unmount_all(mounter, &path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot unmount a controller mount");
        }
        let _ = std::fs::remove_dir(&path);
    }
}
