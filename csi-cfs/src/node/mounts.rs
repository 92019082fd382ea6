//! The node-wide mounts of file systems and the binds of volumes from them.
//!
//! Each file system is mounted once per node and option set (its key) under the mounts
//! directory. Making or collecting that mount happens under the key's own lock, so a file system
//! whose server is gone holds up only its own volumes. No lock is held across a call that reaches
//! a server: stats of mounts are bounded ([`csi_common::mount::bounded`]), the walk to a volume's
//! directory runs bounded and outside the lock, and a stage between its check of the node-wide
//! mount and its bind counts as a user ([`Slot::users`]) so a concurrent collection leaves it be.
//!
//! A node-wide mount's users are read from the mount table: the binds of it under the node's own
//! paths (the kubelet directory). Any other mount of the same file system (the controller's, in
//! `--mode all`) is not a user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use csi_common::mount::beneath::{CheckedDir, open_beneath};
use csi_common::mount::bounded::{self, STAT_LIMIT};
use csi_common::mount::ops::{healthy_mount, prepare_mount_point};
use csi_common::mount::{MountError, MountInfo, Mounter};

use super::config::NodeConfig;
use crate::error::{Error, Result, io};
use crate::nfs::NfsSource;

/// One node-wide mount's lock and the stages using it.
#[derive(Debug, Default)]
struct Slot {
    lock: Mutex<()>,
    users: AtomicUsize,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stage between its check of the node-wide mount and its bind.
struct User(Arc<Slot>);

impl Drop for User {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The node's slots, by key; one per file system and option set ever staged here.
#[derive(Debug, Default)]
pub(super) struct NodeMounts {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl NodeMounts {
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(key.to_owned()).or_default())
    }
}

/// The root a bind of `sub` inside the mount `base` shows in mountinfo.
fn bind_root(base: &MountInfo, sub: &str) -> String {
    let sub = sub.trim_matches('/');
    match (base.root.as_str(), sub) {
        (root, "") => root.to_owned(),
        ("/", sub) => format!("/{sub}"),
        (root, sub) => format!("{root}/{sub}"),
    }
}

/// True when `mount` shows (part of) the filesystem of `base`.
pub(super) fn within(mount: &MountInfo, base: &MountInfo) -> bool {
    mount.major_minor == base.major_minor
        && (base.root == "/"
            || mount.root == base.root
            || mount.root.starts_with(&format!("{}/", base.root)))
}

/// The volume's directory inside the node-wide mount `global`, opened without following links;
/// bounded, as its lookups reach the server.
fn open_volume_dir(global: &Path, source: &NfsSource) -> Result<CheckedDir> {
    let (base, sub) = (global.to_path_buf(), source.path.clone());
    bounded::call(global, STAT_LIMIT, move || open_beneath(&base, &sub)).map_err(|e| match e {
        MountError::Io { source: err, .. } if err.kind() == std::io::ErrorKind::NotFound => {
            Error::NotFound(format!(
                "the volume's directory {} does not exist on {}",
                source.path, source.host
            ))
        }
        MountError::Io { path, what, .. } => Error::FailedPrecondition(format!(
            "{} is not a directory inside the file system: {path}: {what}",
            source.path
        )),
        other => Error::from(other),
    })
}

/// NodeStage's work: the node-wide mount of the file system, then the bind of the volume's
/// directory at the staging path.
pub(super) fn stage<M: Mounter>(
    mounts: &NodeMounts,
    mounter: &M,
    config: &NodeConfig,
    source: &NfsSource,
    staging: &Path,
    flags: &[String],
) -> Result<()> {
    let key = source.mount_key(flags);
    let global = config.mounts_dir.join(&key);
    let slot = mounts.slot(&key);
    let (base, _user) = {
        let _held = slot.lock();
        std::fs::create_dir_all(&global)
            .map_err(io(&global, "cannot create the node-wide mount point"))?;
        let base = match healthy_mount(mounter, &global)? {
            Some(info) => info,
            None => {
                if let Some(missing) = config.nfs.client_missing(source) {
                    return Err(Error::FailedPrecondition(missing));
                }
                config.nfs.mount(&source.root(), &global, flags, false)?;
                mounter.mount_at(&global)?.ok_or_else(|| {
                    Error::Internal(format!(
                        "{} is not mounted after mounting it",
                        global.display()
                    ))
                })?
            }
        };
        slot.users.fetch_add(1, Ordering::SeqCst);
        (base, User(Arc::clone(&slot)))
    };
    let dir = open_volume_dir(&global, source)?;
    if let Some(existing) = prepare_mount_point(mounter, staging)? {
        if within(&existing, &base) && existing.root == bind_root(&base, &source.path) {
            return Ok(());
        }
        return Err(Error::FailedPrecondition(format!(
            "{} already has {} mounted, not {}",
            staging.display(),
            existing.source,
            source.device()
        )));
    }
    mounter.bind(&dir.source(), staging, false, &[])?;
    Ok(())
}

/// Unmounts node-wide mounts that none of the node's own binds (staging and publish paths under
/// the kubelet directory) refers to any more. A mount whose slot is busy is left for the next
/// collection.
pub(super) fn collect_unused<M: Mounter>(
    mounts: &NodeMounts,
    mounter: &M,
    config: &NodeConfig,
) -> Result<()> {
    let prefix = format!("{}/", config.mounts_dir.display());
    let bases: Vec<PathBuf> = mounter
        .mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&prefix))
        .map(|m| PathBuf::from(m.mount_point))
        .collect();
    for path in bases {
        let Some(key) = path.file_name().map(|k| k.to_string_lossy().into_owned()) else {
            continue;
        };
        let slot = mounts.slot(&key);
        let Ok(_held) = slot.lock.try_lock() else {
            continue;
        };
        if slot.users.load(Ordering::SeqCst) > 0 {
            continue;
        }
        // Read again under the lock: a stage may have bound from it meanwhile.
        let table = mounter.mounts()?;
        let Some(base) = table
            .iter()
            .rev()
            .find(|m| Path::new(&m.mount_point) == path)
        else {
            continue;
        };
        let used = table
            .iter()
            .any(|m| config.is_node_path(Path::new(&m.mount_point)) && within(m, base));
        if !used {
            tracing::info!(mount = %path.display(), "no volume uses this file system any more: unmounting it");
            config.nfs.unmount_all(mounter, &path)?;
            let _ = std::fs::remove_dir(&path);
        }
    }
    Ok(())
}
