//! The state the operations share: the content I/O context, the inode table and its caches, the
//! open handles, the namespace lock and the kernel invalidator, with the helpers every operation
//! uses (keys, attributes, invalidation). The operations themselves are `fs/namespace.rs`'s and
//! `fs/files.rs`'s; this module must not call the store.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::context::Context;
use super::handles::Handles;
use super::table::{Meta, Table};
use super::types::{Attr, FileKind, Ino, Invalidation, Invalidator};
use super::write::WriteFile;
use crate::config::FsConfig;
use crate::store::ObjectStore;

/// State shared by the operations and the tasks they spawn.
pub(crate) struct Inner<S> {
    pub(crate) ctx: Arc<Context<S>>,
    table: Mutex<Table>,
    handles: Mutex<Handles>,
    /// Serialises namespace changes (create, mkdir, unlink, rmdir, rename) of this mount.
    pub(crate) ns: tokio::sync::Mutex<()>,
    invalidator: Mutex<Option<Invalidator>>,
    pub(crate) mount_time: SystemTime,
}

impl<S: ObjectStore> Inner<S> {
    /// The state of a mount over `store` with `cfg` (already validated): only the root, or with
    /// `resume` the inode table of `cfg.inode_journal` (see [`Table::start`]).
    pub(crate) fn new(store: S, cfg: FsConfig, resume: bool) -> Self {
        let now = SystemTime::now();
        let root = Meta {
            kind: FileKind::Dir,
            size: 0,
            mtime: now,
            etag: None,
        };
        let (table, generation) = Table::start(
            root,
            cfg.list_cache_max_entries,
            cfg.inode_journal.as_deref(),
            resume,
        );
        Inner {
            table: Mutex::new(table),
            handles: Mutex::new(Handles::new(generation, resume)),
            ns: tokio::sync::Mutex::new(()),
            invalidator: Mutex::new(None),
            mount_time: now,
            ctx: Arc::new(Context::new(store, cfg)),
        }
    }

    pub(crate) fn set_invalidator(&self, f: Invalidator) {
        *self.invalidator.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        // Table updates are single statements that cannot leave it half-changed.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object key of file `path`.
    pub(crate) fn key(&self, path: &str) -> String {
        format!("{}{path}", self.ctx.cfg.prefix)
    }

    /// The key prefix of directory `path` (its marker's key).
    pub(crate) fn dir_key(&self, path: &str) -> String {
        if path.is_empty() {
            self.ctx.cfg.prefix.clone()
        } else {
            format!("{}{path}/", self.ctx.cfg.prefix)
        }
    }

    pub(crate) fn attr(&self, ino: Ino, meta: &Meta, write: Option<&WriteFile>) -> Attr {
        let cfg = &self.ctx.cfg;
        let (size, mtime) = match (meta.kind, write) {
            (FileKind::File, Some(w)) => w.size_and_mtime(),
            _ => (meta.size, meta.mtime),
        };
        let (perm, nlink) = match meta.kind {
            FileKind::File => (cfg.file_mode, 1),
            FileKind::Dir => (cfg.dir_mode, 2),
        };
        Attr {
            ino,
            kind: meta.kind,
            size,
            mtime,
            perm,
            uid: cfg.uid,
            gid: cfg.gid,
            nlink,
        }
    }

    /// Tells the kernel to forget something, on a blocking thread. With `wait`, the reply to
    /// the current request waits for it (at most 2 s), so the caller's next request finds the
    /// kernel's cache updated; never wait in requests the kernel serves with a directory locked
    /// (rename, create, unlink...): the invalidation needs that lock.
    pub(crate) async fn invalidate(&self, what: Invalidation, wait: bool) {
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

    pub(crate) fn attr_deadline(&self) -> Instant {
        Instant::now() + self.ctx.cfg.attr_ttl
    }
}
