//! Subdirectory volumes on a mounted root, with their owner records: what CFS shared instances
//! and CFS Turbo file systems have in common. A directory is only created or deleted after its
//! owner record says it belongs to the volume asked for; the data goes first and the record
//! after, so a retry after a crash finishes the job.
//!
//! Everything here is blocking file I/O on a network mount: callers run it off the async runtime.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result, io};
use crate::owners::{self, Owner, Records};
use crate::params::{OnDelete, owner_digest};

/// Archived subdirectories start with this; they are not volumes any more.
pub const ARCHIVE_PREFIX: &str = "archived-";

/// Gives `leaf` under `root` to `owner`: ALREADY_EXISTS when another live volume holds it (or
/// the same one with another size), else made if missing and recorded. With a `gid`, the
/// directory is group-owned by it with setgid (`2777`), so files keep the group a quota counts;
/// without one it is `0777`.
pub fn claim(root: &Path, leaf: &str, owner: &Owner, gid: Option<u32>) -> Result<()> {
    let records = Records::new(root);
    owners::claim(
        leaf,
        records.read(leaf)?.as_ref(),
        &owner.volume,
        owner.capacity_bytes,
    )?;
    let dir = root.join(leaf);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::AlreadyExists(format!(
                "{} exists and is not a directory",
                dir.display()
            )));
        }
        Err(_) => std::fs::create_dir(&dir)
            .map_err(io(&dir, "cannot create the volume's subdirectory"))?,
    }
    let mode = match gid {
        Some(gid) => {
            nix::unistd::chown(&dir, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
                io(&dir, "cannot set the subdirectory's group")(std::io::Error::from(e))
            })?;
            0o2777
        }
        None => 0o777,
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
        .map_err(io(&dir, "cannot set the subdirectory's mode"))?;
    records.write(leaf, owner)
}

/// Deletes the volume `owner` (a digest of its name; `None` for IDs older than owners) of `leaf`
/// under `root` as `on_delete` says; archived directories get `archive_suffix` (a time).
pub fn release(
    root: &Path,
    leaf: &str,
    owner: Option<&str>,
    on_delete: OnDelete,
    archive_suffix: i64,
) -> Result<()> {
    let records = Records::new(root);
    // The directory went to another volume after this one was deleted (a late retry of this
    // delete): this volume is gone already, and the other's data is not ours.
    if let (Some(owner), Some(record)) = (owner, records.read(leaf)?)
        && owner_digest(&record.volume) != owner
    {
        tracing::info!(subdir = %leaf, holder = %record.volume, "the directory belongs to another volume now: nothing to delete");
        return Ok(());
    }
    let dir = root.join(leaf);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return records.remove(leaf),
        Err(e) => return Err(io(&dir, "cannot inspect the subdirectory")(e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::FailedPrecondition(format!(
                "{} is not a directory; refusing to touch it",
                dir.display()
            )));
        }
        Ok(_) => {}
    }
    match on_delete {
        OnDelete::Archive => {
            let archived = root.join(format!("{ARCHIVE_PREFIX}{leaf}-{archive_suffix}"));
            std::fs::rename(&dir, &archived)
                .map_err(io(&dir, "cannot archive the subdirectory"))?;
            records.remove(leaf)
        }
        // Exactly this leaf; remove_dir_all never follows symlinks out of it.
        OnDelete::Delete => {
            std::fs::remove_dir_all(&dir).map_err(io(&dir, "cannot delete the subdirectory"))?;
            records.remove(leaf)
        }
        // The data stays; the record says no volume holds it any more.
        OnDelete::Retain => match records.read(leaf)? {
            Some(owner) if !owner.released => records.write(
                leaf,
                &Owner {
                    released: true,
                    ..owner
                },
            ),
            _ => Ok(()),
        },
    }
}

/// The live record of `leaf`, or NOT_FOUND naming the volume.
pub fn live(root: &Path, leaf: &str, volume_id: &str) -> Result<Owner> {
    match Records::new(root).read(leaf)? {
        Some(owner) if !owner.released => Ok(owner),
        _ => Err(Error::NotFound(format!(
            "volume {volume_id} does not exist"
        ))),
    }
}

/// Records a larger size for `leaf`'s live volume; a smaller one changes nothing. Returns the
/// size recorded.
pub fn record_size(root: &Path, leaf: &str, volume_id: &str, capacity: u64) -> Result<u64> {
    let owner = live(root, leaf, volume_id)?;
    if capacity <= owner.capacity_bytes {
        return Ok(owner.capacity_bytes);
    }
    Records::new(root).write(
        leaf,
        &Owner {
            capacity_bytes: capacity,
            ..owner
        },
    )?;
    Ok(capacity)
}
