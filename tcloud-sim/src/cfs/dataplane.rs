//! The CFS data plane: every file system is a directory, and the export table a node plugin reads
//! instead of an NFS server names each available mount target. Every function here blocks:
//! callers run them with `spawn_blocking`.
//!
//! Layout under the state directory:
//! ```text
//! cfs/fs/<FileSystemId>/            the file system's root, created with the file system
//! cfs/fs/<FileSystemId>/cfs/        a Turbo file system's root directory (TB, TP), created with it
//! cfs/exports/<IpAddress>           -> <state-dir>/cfs/fs/<FileSystemId> (absolute), while the
//!                                      file system is available and its mount target exists
//! cfs/exports/<IpAddress>.fsid      its FSID (8 lowercase alphanumerics, no newline)
//! ```
//! This machine's kernel has no NFS client: a node plugin pointed at `cfs/exports` bind-mounts
//! `exports/<ip>/<path>` where it would run `mount -t nfs <ip>:<path>` (NFSv4) or
//! `<ip>:/<fsid><path>` (NFSv3, checked against `<ip>.fsid`).
//!
//! A Turbo file system is laid out the same way (its mount target is the `host`, its FSID the
//! `fsid` of a CFS Turbo PV), and its directory holds `cfs/` ([`TURBO_ROOT_DIR`]): a Turbo file
//! system exports only under its root directory `/cfs`, so a driver mounts
//! `<host>:/<fsid>/cfs` (`<host>@tcp0:/<fsid>/cfs` with the lustre client), which resolves to
//! `exports/<host>/cfs`.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The root directory inside a Turbo file system, the only place it exports from (TKE's CFS Turbo
/// add-on: `rootdir`, default `/cfs`).
pub const TURBO_ROOT_DIR: &str = "cfs";

/// Most entries one usage walk visits; beyond it the totals are a lower bound.
const MAX_WALK_ENTRIES: u64 = 1_000_000;

/// Where the CFS directories and the export table live.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates `cfs/fs` and `cfs/exports` under `state_dir`, anchored at its canonical path so the
    /// export links are absolute and stable.
    pub fn new(state_dir: &Path) -> io::Result<Layout> {
        std::fs::create_dir_all(state_dir)?;
        let root = state_dir.canonicalize()?.join("cfs");
        let layout = Layout { root };
        std::fs::create_dir_all(layout.fs_root())?;
        std::fs::create_dir_all(layout.exports_dir())?;
        Ok(layout)
    }

    /// `cfs/fs`: one directory per file system.
    pub fn fs_root(&self) -> PathBuf {
        self.root.join("fs")
    }

    pub fn fs_dir(&self, file_system_id: &str) -> PathBuf {
        self.fs_root().join(file_system_id)
    }

    /// `cfs/exports`: the directory a node plugin is pointed at.
    pub fn exports_dir(&self) -> PathBuf {
        self.root.join("exports")
    }

    pub fn export_link(&self, ip: &str) -> PathBuf {
        self.exports_dir().join(ip)
    }

    pub fn fsid_file(&self, ip: &str) -> PathBuf {
        self.exports_dir().join(format!("{ip}.fsid"))
    }

    /// `cfs/fs/<FileSystemId>/cfs`: a Turbo file system's root directory.
    pub fn turbo_root(&self, file_system_id: &str) -> PathBuf {
        self.fs_dir(file_system_id).join(TURBO_ROOT_DIR)
    }

    /// Creates the root directory of a new file system and, for a Turbo one (`turbo`), the
    /// [`TURBO_ROOT_DIR`] inside it (mode 0755, like a fresh file system's root); existing ones
    /// are kept.
    pub fn create_fs_dir(&self, file_system_id: &str, turbo: bool) -> io::Result<()> {
        create_dir_0755(&self.fs_dir(file_system_id))?;
        if turbo {
            create_dir_0755(&self.turbo_root(file_system_id))?;
        }
        Ok(())
    }

    /// Removes a file system's directory and everything in it; a missing one is fine.
    pub fn remove_fs_dir(&self, file_system_id: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.fs_dir(file_system_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Names `ip` in the export table: the link to the file system's directory and the FSID
    /// file, each replaced atomically (temporary name, then rename).
    pub fn publish(&self, ip: &str, file_system_id: &str, fsid: &str) -> io::Result<()> {
        let exports = self.exports_dir();
        std::fs::create_dir_all(&exports)?;
        let tmp = exports.join(format!(".{ip}.link.tmp{}", std::process::id()));
        remove_if_present(&tmp)?;
        std::os::unix::fs::symlink(self.fs_dir(file_system_id), &tmp)?;
        std::fs::rename(&tmp, self.export_link(ip))?;
        let tmp = exports.join(format!(".{ip}.fsid.tmp{}", std::process::id()));
        std::fs::write(&tmp, fsid)?;
        std::fs::rename(&tmp, self.fsid_file(ip))
    }

    /// Removes `ip` from the export table; missing entries are fine.
    pub fn unpublish(&self, ip: &str) -> io::Result<()> {
        remove_if_present(&self.export_link(ip))?;
        remove_if_present(&self.fsid_file(ip))
    }

    /// Whether the export table names `ip` exactly as [`Layout::publish`] would.
    pub fn is_published(&self, ip: &str, file_system_id: &str, fsid: &str) -> bool {
        std::fs::read_link(self.export_link(ip)).ok() == Some(self.fs_dir(file_system_id))
            && std::fs::read_to_string(self.fsid_file(ip)).ok().as_deref() == Some(fsid)
    }

    /// Names in the export table (links, `.fsid` files, leftovers), for the reconciler.
    pub fn export_entries(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.exports_dir())? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// Removes one entry of the export table by name.
    pub fn remove_export_entry(&self, name: &str) -> io::Result<()> {
        remove_if_present(&self.exports_dir().join(name))
    }

    /// Names of the directories under `cfs/fs`.
    pub fn fs_dirs(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.fs_root())? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }
}

/// Creates one directory with mode 0755; an existing one is fine.
fn create_dir_0755(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Space and inodes used under a file system's root (the root itself not counted), in total and
/// per owner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes (`st_blocks * 512`), as `du` counts them.
    pub bytes: u64,
    pub files: u64,
    /// UID → (bytes, files).
    pub by_uid: HashMap<u32, (u64, u64)>,
    /// GID → (bytes, files).
    pub by_gid: HashMap<u32, (u64, u64)>,
}

/// Walks `dir` without following symbolic links. Entries that vanish or cannot be read during the
/// walk are skipped (the directory is live); a missing `dir` is empty.
pub fn usage(dir: &Path) -> Usage {
    let mut usage = Usage::default();
    let mut pending = vec![dir.to_path_buf()];
    let mut visited = 0u64;
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_WALK_ENTRIES {
                return usage;
            }
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let bytes = meta.blocks().saturating_mul(512);
            usage.bytes = usage.bytes.saturating_add(bytes);
            usage.files += 1;
            let by_uid = usage.by_uid.entry(meta.uid()).or_default();
            by_uid.0 = by_uid.0.saturating_add(bytes);
            by_uid.1 += 1;
            let by_gid = usage.by_gid.entry(meta.gid()).or_default();
            by_gid.0 = by_gid.0.saturating_add(bytes);
            by_gid.1 += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_and_unpublish_removes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        layout.create_fs_dir("cfs-a", false).unwrap();
        layout.create_fs_dir("cfs-a", false).unwrap();
        layout.create_fs_dir("cfs-b", false).unwrap();
        assert!(!layout.turbo_root("cfs-a").exists());
        layout.publish("10.1.2.3", "cfs-a", "abcd1234").unwrap();
        assert!(layout.is_published("10.1.2.3", "cfs-a", "abcd1234"));
        let link = layout.export_link("10.1.2.3");
        assert!(std::fs::read_link(&link).unwrap().is_absolute());
        std::fs::write(link.join("through-the-link"), b"x").unwrap();
        assert!(layout.fs_dir("cfs-a").join("through-the-link").exists());

        layout.publish("10.1.2.3", "cfs-b", "efgh5678").unwrap();
        assert!(layout.is_published("10.1.2.3", "cfs-b", "efgh5678"));
        assert!(!layout.is_published("10.1.2.3", "cfs-a", "abcd1234"));
        let mut entries = layout.export_entries().unwrap();
        entries.sort();
        assert_eq!(
            entries,
            ["10.1.2.3", "10.1.2.3.fsid"],
            "no temporaries left"
        );

        layout.unpublish("10.1.2.3").unwrap();
        layout.unpublish("10.1.2.3").unwrap();
        assert!(layout.export_entries().unwrap().is_empty());
        layout.remove_fs_dir("cfs-a").unwrap();
        layout.remove_fs_dir("cfs-a").unwrap();
        assert_eq!(layout.fs_dirs().unwrap(), ["cfs-b"]);
    }

    #[test]
    fn a_turbo_file_system_is_exported_with_its_root_directory() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        layout.create_fs_dir("cfs-t", true).unwrap();
        std::fs::write(layout.turbo_root("cfs-t").join("kept"), b"x").unwrap();
        layout.create_fs_dir("cfs-t", true).unwrap();
        layout.publish("10.4.5.6", "cfs-t", "turbo001").unwrap();
        let root = layout.export_link("10.4.5.6").join(TURBO_ROOT_DIR);
        assert!(root.is_dir());
        assert_eq!(std::fs::read(root.join("kept")).unwrap(), b"x", "kept");
        let mode = std::fs::metadata(&root).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn usage_counts_files_and_blocks_per_owner_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fs");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/data"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::write(root.join("small"), b"x").unwrap();
        std::os::unix::fs::symlink("/", root.join("a/escape")).unwrap();
        let usage = usage(&root);
        assert_eq!(usage.files, 5, "a, a/b, a/b/data, a/escape, small");
        assert!(usage.bytes >= 64 * 1024, "{usage:?}");
        let uid = std::fs::metadata(&root).unwrap().uid();
        assert_eq!(usage.by_uid.get(&uid).map(|u| u.1), Some(5));
        assert_eq!(usage.by_uid.values().map(|u| u.0).sum::<u64>(), usage.bytes);
        assert_eq!(super::usage(&dir.path().join("missing")), Usage::default());
    }
}
