//! Node-side steps every driver's node service shares, built on [`Mounter`]: peel off stacked
//! mounts, check a mount answers (and clear it when broken), remove a target the driver made.

use std::path::Path;

use super::{MountError, MountInfo, Mounter};

/// How many stacked mounts [`unmount_all`] peels off before giving up.
const MAX_STACKED: usize = 16;

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> MountError {
    let path = path.display().to_string();
    move |source| MountError::Io { path, what, source }
}

/// Unmounts every mount stacked at `path`; nothing mounted is fine.
pub fn unmount_all<M: Mounter + ?Sized>(mounter: &M, path: &Path) -> Result<(), MountError> {
    for _ in 0..MAX_STACKED {
        if !mounter.unmount(path)? {
            return Ok(());
        }
    }
    Err(MountError::TooManyMounts {
        path: path.display().to_string(),
    })
}

/// The mount at `path` if it answers. A broken one (ENOTCONN, EIO, ESTALE) is unmounted so the
/// caller mounts it again, and reads as `None`.
pub fn healthy_mount<M: Mounter + ?Sized>(
    mounter: &M,
    path: &Path,
) -> Result<Option<MountInfo>, MountError> {
    let Some(info) = mounter.mount_at(path)? else {
        return Ok(None);
    };
    match mounter.stats(path) {
        Ok(_) => Ok(Some(info)),
        Err(e) if e.is_broken_mount() => {
            tracing::warn!(path = %path.display(), error = %e, "broken mount: unmounting to mount again");
            unmount_all(mounter, path)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Makes `path` ready to be mounted on and returns the healthy mount already there, if any. A
/// broken mount is cleared first: every stat of it fails, so its directory could not be made.
pub fn prepare_mount_point<M: Mounter + ?Sized>(
    mounter: &M,
    path: &Path,
) -> Result<Option<MountInfo>, MountError> {
    let existing = healthy_mount(mounter, path)?;
    std::fs::create_dir_all(path).map_err(io(path, "cannot create the mount point"))?;
    Ok(existing)
}

/// Removes a target the driver made: an empty directory or a file, never anything else and never
/// recursively. A missing target is fine.
pub fn remove_target(path: &Path) -> Result<(), MountError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, "cannot inspect the target")(e)),
        Ok(meta) if meta.is_dir() => match std::fs::remove_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(
                path,
                "cannot remove the target directory (is it empty?)",
            )(e)),
        },
        Ok(_) => std::fs::remove_file(path).map_err(io(path, "cannot remove the target file")),
    }
}
