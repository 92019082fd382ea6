//! The file system over an [`ObjectStore`], independent of fuser: operations take inode numbers
//! and file handles and return `Result<_, Errno>`, as FUSE does. The adapter in [`crate::fuse`]
//! only translates. This module owns the public API and the shared state; the namespace
//! operations live in `fs/namespace.rs`, open files in `fs/files.rs`.
//!
//! # Objects as files
//!
//! The mount root is the bucket or the `prefix` option (`a/b/`). A file `x/y` is the object
//! `<prefix>x/y`. A directory `x` exists when an object `<prefix>x/` (a *marker*, what `mkdir`
//! creates) or any key under `<prefix>x/` (an *implicit* directory) exists. When a key `x` and
//! keys under `x/` both exist, the directory wins: `x` is a directory and the object `x` is
//! hidden. Keys whose names cannot be file names (empty components as in `a//b`, `.`, `..`,
//! longer than 255 bytes) are not listed. Names must be UTF-8.
//!
//! # POSIX semantics
//!
//! | operation | status | notes |
//! |---|---|---|
//! | lookup, stat, readdir | supported | readdir offsets are stable for an open directory handle: the listing is read whole (every ListObjectsV2 page) when the handle reads offset 0 |
//! | mkdir | supported | creates the `dir/` marker object |
//! | rmdir | supported | ENOTEMPTY when any key is under the directory; removes the marker |
//! | an implicit directory emptied by unlink, rmdir or rename | supported | gets a marker, so it stays as POSIX wants (one extra LIST per removal in a directory without a known marker) |
//! | create, sequential write from offset 0, close | supported | streamed as a multipart upload with concurrent parts (a single PutObject when smaller than a part); visible to other clients at close, to this mount at once, with its current size |
//! | random write, overwrite, append, truncate (to any size, up or down) | supported | staged in a local file and uploaded at flush/fsync/close; an existing object is downloaded first (so appending to a large object costs a download). `staging_max_bytes` bounds all staging files together: past it a write is ENOSPC, a single file larger than it EFBIG |
//! | rewriting bytes a stream already uploaded (before the last part boundary of a new file written `O_WRONLY`) | not supported | EINVAL; writes from that boundary on (including holes) move the file to staging. `O_RDWR` files are staged from the start and have no such limit |
//! | reading a file while another handle streams it | partly | bytes not yet uploaded are served; bytes already uploaded are EINVAL until the close |
//! | fsync, flush, close | supported | commit the object; on failure EIO, the multipart upload is aborted and nothing partial is visible (an old object stays as it was, a new file disappears) |
//! | unlink of an open file | partly | the name and object go at once; further writes through open handles are discarded, reads return EOF (write handles) or ESTALE (read handles; bytes already prefetched may still be served) |
//! | rename of a file | not atomic | CopyObject then DeleteObject; replaces an existing file; pending writes are committed first; open handles follow the object |
//! | rename of a directory | not atomic | every key under the prefix is copied (in parallel), then the sources are deleted; a failure while copying deletes the copies and leaves the source whole, a failure while deleting leaves both (EIO). `RENAME_NOREPLACE` is honoured, `RENAME_EXCHANGE` is EINVAL |
//! | concurrent writers of one file | in one mount: supported | handles of one mount share one content; across mounts the last close wins |
//! | chmod, chown | restricted | accepted only when the value is the mount-wide one (`file_mode`/`dir_mode`, `uid`, `gid`); anything else is EPERM |
//! | utimes, touch of an existing file | accepted, not stored | mtime is the object's Last-Modified |
//! | hard links, symlinks, special files, xattrs, file locks | not supported | EPERM / ENOSYS (the kernel keeps locks local to the node) |
//! | statfs | made up | 4 PiB total and free in 4 KiB blocks, 2^32 files: an object store has no size to report |
//! | namespace changes of one mount | serialised | create, mkdir, unlink, rmdir and rename of one mount run one at a time |
//!
//! # Caches and consistency
//!
//! Attributes of looked-up files (`attr_ttl`, also the kernel's TTL), "no such file"
//! (`negative_ttl`) and whole directory listings (`list_ttl`, at most `list_cache_max_entries`
//! entries together) are kept 15 s by default, the GooseFS-Lite defaults. Changes made by this
//! mount update the caches at once (read-your-writes); changes by other clients show after the
//! TTLs. An open file reads the object version (ETag, `If-Match`) it was opened with or this
//! mount last wrote; if another client replaces the object, reads fail with ESTALE instead of
//! mixing versions.
//!
//! # Memory
//!
//! Read-ahead blocks, write buffers and the parts of staged uploads are counted against
//! `memory_budget`. Prefetch and write buffering only take what leaves a quarter of the budget
//! free, and never wait: without memory, reads fetch only what is asked and a streamed file
//! continues in a staging file. What must wait (the bytes a read asks for, the part being
//! uploaded) waits for memory, which the reserve guarantees.

mod files;
mod namespace;
mod read;
mod staging;
mod table;
#[cfg(test)]
mod tests;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::budget::Budget;
use crate::config::{ConfigError, FsConfig};
use crate::errno::Errno;
use crate::store::ObjectStore;
use files::{DirHandle, FileHandle};
use staging::StagingPool;
use table::{Meta, Table};

/// An inode number; the root is [`ROOT_INO`].
pub type Ino = u64;
/// A file or directory handle.
pub type Fh = u64;
/// The root's inode number (FUSE's).
pub const ROOT_INO: Ino = 1;

/// What the kernel should forget, when the core changes something without a kernel request
/// having asked (a new file whose upload failed vanishes; a failed rewrite leaves the old size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// The cached entry `name` in directory `parent`.
    Entry { parent: Ino, name: String },
    /// The cached attributes and pages of `ino`.
    Inode(Ino),
}

/// Delivers [`Invalidation`]s to the kernel; the FUSE adapter sets it. Called on a blocking
/// thread, never on a request's path.
pub type Invalidator = Arc<dyn Fn(Invalidation) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
}

/// Attributes of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Permission bits (no file type bits).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
}

/// What a `setattr` asks to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Mode bits as the kernel passes them (type bits are ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// atime or mtime given: accepted, not stored.
    pub times: bool,
}

/// What an `fallocate(2)` asks of a byte range of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocate {
    /// Reserve the range: the file grows to cover it unless `keep_size`. An object has no
    /// space to reserve, so nothing else changes.
    Reserve { keep_size: bool },
    /// Zero the part of the range inside the file; the size stays.
    PunchHole,
    /// Zero the range; the file grows to cover it unless `keep_size`.
    ZeroRange { keep_size: bool },
}

/// One directory entry; `offset` is what the next `readdir` passes to continue after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub offset: u64,
    pub kind: FileKind,
    pub name: String,
}

/// `statfs` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub memory_budget: u64,
    pub memory_in_use: u64,
    /// The most budget bytes held at once since the mount.
    pub memory_peak: u64,
    pub staging_bytes: u64,
    pub inodes: usize,
    pub open_handles: usize,
}

/// How a file is opened: the `O_ACCMODE` part of the flags and `O_TRUNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(pub i32);

impl OpenFlags {
    pub fn readable(self) -> bool {
        matches!(self.0 & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
    }

    pub fn writable(self) -> bool {
        matches!(self.0 & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
    }

    pub fn read_write(self) -> bool {
        self.0 & libc::O_ACCMODE == libc::O_RDWR
    }

    pub fn truncate(self) -> bool {
        self.0 & libc::O_TRUNC != 0
    }
}

/// The file system. Cheap to clone; clones share everything.
pub struct Fs<S: ObjectStore> {
    inner: Arc<Inner<S>>,
}

impl<S: ObjectStore> Clone for Fs<S> {
    fn clone(&self) -> Self {
        Fs {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: ObjectStore> fmt::Debug for Fs<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fs")
            .field("prefix", &self.inner.cfg.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

/// State shared by the operations and the tasks they spawn.
pub(crate) struct Inner<S> {
    pub(crate) store: S,
    pub(crate) cfg: FsConfig,
    pub(crate) budget: Arc<Budget>,
    pub(crate) upload_slots: Arc<Semaphore>,
    pub(crate) staging: Arc<StagingPool>,
    table: Mutex<Table>,
    handles: Mutex<Handles>,
    /// Serialises namespace changes (create, mkdir, unlink, rmdir, rename) of this mount.
    ns: tokio::sync::Mutex<()>,
    invalidator: Mutex<Option<Invalidator>>,
    mount_time: SystemTime,
}

#[derive(Debug, Default)]
struct Handles {
    files: HashMap<Fh, Arc<FileHandle>>,
    dirs: HashMap<Fh, Arc<DirHandle>>,
    next: Fh,
}

impl<S: ObjectStore> Fs<S> {
    /// A file system over `store` with `config` (validated here).
    pub fn new(store: S, config: FsConfig) -> Result<Self, ConfigError> {
        let cfg = config.validate()?;
        let now = SystemTime::now();
        let root = Meta {
            kind: FileKind::Dir,
            size: 0,
            mtime: now,
            etag: None,
        };
        let inner = Inner {
            budget: Budget::new(cfg.memory_budget),
            upload_slots: Arc::new(Semaphore::new(cfg.upload_concurrency)),
            staging: StagingPool::new(cfg.staging_dir.clone(), cfg.staging_max_bytes),
            table: Mutex::new(Table::new(root, cfg.list_cache_max_entries)),
            handles: Mutex::new(Handles {
                next: 1,
                ..Handles::default()
            }),
            ns: tokio::sync::Mutex::new(()),
            invalidator: Mutex::new(None),
            mount_time: now,
            store,
            cfg,
        };
        Ok(Fs {
            inner: Arc::new(inner),
        })
    }

    /// Sets how the kernel is told to drop a cached entry.
    pub fn set_invalidator(&self, f: Invalidator) {
        *self
            .inner
            .invalidator
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    pub fn config(&self) -> &FsConfig {
        &self.inner.cfg
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// Looks `name` up in directory `parent`; counts one kernel reference to the result.
    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, Errno> {
        self.inner.lookup(parent, name).await
    }

    /// Drops `n` kernel references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.inner.table().forget(ino, n);
    }

    pub async fn getattr(&self, ino: Ino) -> Result<Attr, Errno> {
        self.inner.getattr(ino).await
    }

    /// Changes size (truncate or extend; committed at once without a handle, at close with
    /// one), and accepts mode/uid/gid only when they equal the mount-wide values.
    pub async fn setattr(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Attr, Errno> {
        self.inner.setattr(ino, fh, set).await
    }

    pub async fn mkdir(&self, parent: Ino, name: &str) -> Result<Attr, Errno> {
        self.inner.mkdir(parent, name).await
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> Result<(), Errno> {
        self.inner.rmdir(parent, name).await
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> Result<(), Errno> {
        self.inner.unlink(parent, name).await
    }

    /// Renames a file or directory (not atomic: copy, then delete). With `noreplace`, an
    /// existing target is EEXIST.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), Errno> {
        self.inner
            .rename(parent, name, new_parent, new_name, noreplace)
            .await
    }

    pub async fn opendir(&self, ino: Ino) -> Result<Fh, Errno> {
        self.inner.opendir(ino)
    }

    /// Entries after `offset` (0: from the start, re-reading the listing).
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>, Errno> {
        self.inner.readdir(ino, fh, offset).await
    }

    pub fn releasedir(&self, fh: Fh) {
        self.inner.releasedir(fh);
    }

    /// Creates and opens a file; counts one kernel reference to it.
    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh), Errno> {
        self.inner.create(parent, name, flags).await
    }

    pub async fn open(&self, ino: Ino, flags: OpenFlags) -> Result<Fh, Errno> {
        self.inner.open(ino, flags).await
    }

    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Bytes, Errno> {
        self.inner.read(ino, fh, offset, size).await
    }

    /// Returns the bytes written (all of them, or an error).
    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        self.inner.write(ino, fh, offset, data).await
    }

    /// `fallocate(2)` through a handle opened for writing: the content changes as for writes,
    /// committed at close.
    pub async fn fallocate(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        len: u64,
        how: Allocate,
    ) -> Result<(), Errno> {
        self.inner.allocate(ino, fh, offset, len, how).await
    }

    /// Commits the file (called on every close of a descriptor).
    pub async fn flush(&self, ino: Ino, fh: Fh) -> Result<(), Errno> {
        self.inner.commit_handle(ino, fh).await
    }

    pub async fn fsync(&self, ino: Ino, fh: Fh) -> Result<(), Errno> {
        self.inner.commit_handle(ino, fh).await
    }

    /// Closes the handle, committing what is still pending.
    pub async fn release(&self, ino: Ino, fh: Fh) -> Result<(), Errno> {
        self.inner.release(ino, fh).await
    }

    /// Made-up capacity: object stores have no limit to report.
    pub fn statfs(&self) -> StatFs {
        StatFs {
            blocks: 1 << 40,
            bfree: 1 << 40,
            bavail: 1 << 40,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
        }
    }

    pub fn stats(&self) -> FsStats {
        let (inodes, open_handles) = {
            let t = self.inner.table();
            let h = self.inner.handles();
            (t.inode_count(), h.files.len() + h.dirs.len())
        };
        FsStats {
            memory_budget: self.inner.budget.total(),
            memory_in_use: self.inner.budget.in_use(),
            memory_peak: self.inner.budget.peak(),
            staging_bytes: self.inner.staging.used(),
            inodes,
            open_handles,
        }
    }
}

impl<S: ObjectStore> Inner<S> {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Table updates are single statements that cannot leave it half-changed.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object key of file `path`.
    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.prefix)
    }

    /// The key prefix of directory `path` (its marker's key).
    fn dir_key(&self, path: &str) -> String {
        if path.is_empty() {
            self.cfg.prefix.clone()
        } else {
            format!("{}{path}/", self.cfg.prefix)
        }
    }

    fn attr(&self, ino: Ino, meta: &Meta, write: Option<&write::WriteFile>) -> Attr {
        let (size, mtime) = match (meta.kind, write) {
            (FileKind::File, Some(w)) => w.size_and_mtime(),
            _ => (meta.size, meta.mtime),
        };
        let (perm, nlink) = match meta.kind {
            FileKind::File => (self.cfg.file_mode, 1),
            FileKind::Dir => (self.cfg.dir_mode, 2),
        };
        Attr {
            ino,
            kind: meta.kind,
            size,
            mtime,
            perm,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            nlink,
        }
    }

    /// Tells the kernel to forget something, on a blocking thread. With `wait`, the reply to
    /// the current request waits for it (at most 2 s), so the caller's next request finds the
    /// kernel's cache updated; never wait in requests the kernel serves with a directory locked
    /// (rename, create, unlink...): the invalidation needs that lock.
    async fn invalidate(&self, what: Invalidation, wait: bool) {
        let f = self
            .invalidator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(f) = f else {
            return;
        };
        let task = tokio::task::spawn_blocking(move || f(what));
        if wait {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
    }

    fn attr_deadline(&self) -> Instant {
        Instant::now() + self.cfg.attr_ttl
    }
}
