//! The file system over an [`ObjectStore`], independent of fuser: operations take inode numbers
//! and file handles and return `Result<_, FsError>`: the errno FUSE wants, with the operation,
//! the inode, the key and the cause of a failure. The adapter in [`crate::fuse`] only
//! translates. This module owns the public API ([`Fs`]); its parts, each depending only on those
//! listed before it:
//!
//! - `fs/types.rs`: the values operations take and return; `fs/paths.rs`: path arithmetic;
//!   `fs/error.rs`: [`FsError`];
//! - `fs/staging.rs`: local staging files; `fs/context.rs`: what content I/O draws on;
//! - `fs/read.rs`: reading an object version with read-ahead; `fs/upload.rs`: multipart uploads
//!   and commits; `fs/write.rs`: the content of a file open for writing;
//! - `fs/inode_journal.rs`: the file that records inode numbers for a resume;
//! - `fs/table.rs`: the inode table and caches; `fs/handles.rs`: open handles;
//!   `fs/state.rs`: the state the operations share;
//! - `fs/namespace.rs`: lookup, attributes, mkdir, rmdir, unlink; `fs/rename.rs`: renames;
//!   `fs/readdir.rs`: directory handles and listings; `fs/hints.rs`: listings fetched for
//!   lookups; `fs/files.rs`: open files.
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
//! | lookup, stat, readdir | supported | a directory handle reads the ListObjectsV2 pages as the kernel reads it, holding one page (1000 keys) at a time; its offsets are stable and monotonic, offset 0 starts the listing again |
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
//! entries together; a directory with more is not cached) are kept 15 s by default, the
//! GooseFS-Lite defaults. A listing comes from `readdir`, or from `mkdir` (a new directory is
//! empty); once it expires, the next lookup there that the caches cannot answer lists the
//! directory again (up to 2000 names) rather than asking for the one name. A directory with no
//! listing gets a hint after two lookups there asked the store (`fs/hints.rs`): its first pages,
//! which answer lookups of the names they hold but never that a name is absent. Changes made by
//! this mount update the caches at once (read-your-writes); changes by other clients show after
//! the TTLs. An open file reads the object version (ETag, `If-Match`) it was opened with or this
//! mount last wrote; if another client replaces the object, reads fail with ESTALE instead of
//! mixing versions.
//!
//! # Resuming after the daemon died
//!
//! A supervisor may keep a mount's `/dev/fuse` connection open when its daemon dies (SIGKILL,
//! OOM) and start a new one on it; the kernel goes on sending the inode numbers and file handles
//! the dead process gave it. With `inode_journal` set, [`Fs::new`] starts a journal of which
//! number names which path (replacing any left by an earlier mount) and [`Fs::resume`] starts
//! from the journal the dead process left:
//!
//! - every inode that still had a path resolves to it, with its kind; its attributes are
//!   unknown, so the next getattr or lookup asks the store. Its kernel lookup count is unknown
//!   too: it is kept until unmount, whatever FORGETs come. New inodes are numbered after every
//!   number in the journal. An unlinked inode, or one the journal does not hold, is ENOENT.
//! - handle numbers carry a generation that the journal keeps and each resume advances, so the
//!   new process never reuses a number the kernel holds, and tells inherited ones from its own.
//!   A read through an inherited handle opens a read handle of that number on demand (the
//!   file's current version); flush, fsync and release of one succeed (what it had staged is
//!   gone); a write, fallocate or ftruncate through one is EIO: its unflushed data died with the
//!   old process. A readdir through an inherited directory handle opens one of that number and
//!   reads the listing again up to the offset asked (offsets count entries from the start, as
//!   in the old process), so it continues where it was unless the directory changed.
//! - the journal is only appended to, never synced: the page cache outlives a killed process;
//!   after a node's power loss there is no connection to resume. A record cut short at the end
//!   is skipped. Without a journal, or with one that cannot be read, the resumed table holds only
//!   the root (logged): unknown inode numbers are ENOENT, and inherited handles of them ESTALE.
//!
//! # Memory
//!
//! Read-ahead blocks, write buffers and the parts of staged uploads are counted against
//! `memory_budget`. Prefetch and write buffering only take what leaves a quarter of the budget
//! free, and never wait: without memory, reads fetch only what is asked and a streamed file
//! continues in a staging file. What must wait (the bytes a read asks for, the part being
//! uploaded) waits for memory, which the reserve guarantees. Listings are not in the budget:
//! an open directory handle holds at most one LIST page of entries, a constant
//! (`fs/readdir.rs`), and cached listings are capped by `list_cache_max_entries`.

mod context;
mod error;
mod files;
mod handles;
mod hints;
mod inode_journal;
mod namespace;
mod paths;
mod read;
/// The ranged GETs a sequential read keeps in flight once its window is full.
pub use read::PARALLEL as READ_AHEAD_GETS;
mod readdir;
mod rename;
mod staging;
mod state;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_readdir;
#[cfg(test)]
mod tests_resume;
mod types;
mod upload;
mod write;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{ConfigError, FsConfig};
use crate::store::ObjectStore;
use state::Inner;

pub use error::FsError;
pub use types::{
    Allocate, Attr, DirEntry, Fh, FileKind, FsStats, Ino, Invalidation, Invalidator, OpenFlags,
    ROOT_INO, SetAttr, StatFs,
};

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
            .field("prefix", &self.inner.ctx.cfg.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<S: ObjectStore> Fs<S> {
    /// A file system over `store` with `config` (validated here).
    pub fn new(store: S, config: FsConfig) -> Result<Self, ConfigError> {
        let cfg = config.validate()?;
        Ok(Fs {
            inner: Arc::new(Inner::new(store, cfg, false)),
        })
    }

    /// A file system taking over a mount whose previous daemon process died, on the kernel
    /// connection it served: the inode table is rebuilt from `config.inode_journal` and handle
    /// numbers the dead process gave out are understood (see "Resuming after the daemon died"
    /// in this module's documentation). Never fails for the journal: without one, or with one
    /// that cannot be read, it starts with only the root and logs why.
    pub fn resume(store: S, config: FsConfig) -> Result<Self, ConfigError> {
        let cfg = config.validate()?;
        Ok(Fs {
            inner: Arc::new(Inner::new(store, cfg, true)),
        })
    }

    /// Sets how the kernel is told to drop a cached entry.
    pub fn set_invalidator(&self, f: Invalidator) {
        self.inner.set_invalidator(f);
    }

    pub fn config(&self) -> &FsConfig {
        &self.inner.ctx.cfg
    }

    pub fn store(&self) -> &S {
        &self.inner.ctx.store
    }

    /// Looks `name` up in directory `parent`; counts one kernel reference to the result.
    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        self.inner
            .lookup(parent, name)
            .await
            .map_err(|e| e.during("lookup", parent))
    }

    /// Drops `n` kernel references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.inner.table().forget(ino, n);
    }

    pub async fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.inner
            .getattr(ino)
            .await
            .map_err(|e| e.during("getattr", ino))
    }

    /// Changes size (truncate or extend; committed at once without a handle, at close with
    /// one), and accepts mode/uid/gid only when they equal the mount-wide values.
    pub async fn setattr(&self, ino: Ino, fh: Option<Fh>, set: SetAttr) -> Result<Attr, FsError> {
        self.inner
            .setattr(ino, fh, set)
            .await
            .map_err(|e| e.during("setattr", ino))
    }

    pub async fn mkdir(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        self.inner
            .mkdir(parent, name)
            .await
            .map_err(|e| e.during("mkdir", parent))
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> Result<(), FsError> {
        self.inner
            .rmdir(parent, name)
            .await
            .map_err(|e| e.during("rmdir", parent))
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> Result<(), FsError> {
        self.inner
            .unlink(parent, name)
            .await
            .map_err(|e| e.during("unlink", parent))
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
    ) -> Result<(), FsError> {
        self.inner
            .rename(parent, name, new_parent, new_name, noreplace)
            .await
            .map_err(|e| e.during("rename", parent))
    }

    pub async fn opendir(&self, ino: Ino) -> Result<Fh, FsError> {
        self.inner
            .opendir(ino)
            .map_err(|e| FsError::from(e).during("opendir", ino))
    }

    /// Entries after `offset` (0: from the start, re-reading the listing).
    pub async fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> Result<Vec<DirEntry>, FsError> {
        self.inner
            .readdir(ino, fh, offset)
            .await
            .map_err(|e| e.during("readdir", ino))
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
    ) -> Result<(Attr, Fh), FsError> {
        self.inner
            .create(parent, name, flags)
            .await
            .map_err(|e| e.during("create", parent))
    }

    pub async fn open(&self, ino: Ino, flags: OpenFlags) -> Result<Fh, FsError> {
        self.inner
            .open(ino, flags)
            .await
            .map_err(|e| e.during("open", ino))
    }

    pub async fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Bytes, FsError> {
        self.inner
            .read(ino, fh, offset, size)
            .await
            .map_err(|e| e.during("read", ino))
    }

    /// Returns the bytes written (all of them, or an error).
    pub async fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        self.inner
            .write(ino, fh, offset, data)
            .await
            .map_err(|e| e.during("write", ino))
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
    ) -> Result<(), FsError> {
        self.inner
            .allocate(ino, fh, offset, len, how)
            .await
            .map_err(|e| e.during("fallocate", ino))
    }

    /// Commits the file (called on every close of a descriptor).
    pub async fn flush(&self, ino: Ino, fh: Fh) -> Result<(), FsError> {
        self.inner
            .commit_handle(ino, fh)
            .await
            .map_err(|e| e.during("flush", ino))
    }

    pub async fn fsync(&self, ino: Ino, fh: Fh) -> Result<(), FsError> {
        self.inner
            .commit_handle(ino, fh)
            .await
            .map_err(|e| e.during("fsync", ino))
    }

    /// Closes the handle, committing what is still pending.
    pub async fn release(&self, ino: Ino, fh: Fh) -> Result<(), FsError> {
        self.inner
            .release(ino, fh)
            .await
            .map_err(|e| e.during("release", ino))
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
            memory_budget: self.inner.ctx.budget.total(),
            memory_in_use: self.inner.ctx.budget.in_use(),
            memory_peak: self.inner.ctx.budget.peak(),
            staging_bytes: self.inner.ctx.staging.used(),
            inodes,
            open_handles,
        }
    }
}
