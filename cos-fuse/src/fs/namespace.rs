//! Namespace operations: lookup, attributes, mkdir, rmdir and unlink, and the existence checks
//! that renames and listings share (`fs/rename.rs`, `fs/readdir.rs`). They record what they
//! learn in the table; file content is `fs/files.rs`'s business.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::error::{ForKey, FsError};
use super::hints::REFRESH_MAX_ENTRIES;
use super::paths::{MAX_KEY, check_name, child, split};
use super::state::Inner;
use super::table::{Entry, Meta};
use super::types::{Attr, Fh, FileKind, Ino, ROOT_INO, SetAttr};
use crate::errno::Errno;
use crate::store::{ObjectStore, StoreError};

/// What a path is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) meta: Meta,
    pub(crate) has_marker: Option<bool>,
}

impl Found {
    /// What a listing's entry says.
    fn listed(e: &Entry) -> Found {
        Found {
            meta: Meta {
                kind: e.kind,
                size: e.size,
                mtime: e.mtime,
                etag: e.etag.clone(),
            },
            has_marker: None,
        }
    }
}

impl<S: ObjectStore> Inner<S> {
    /// The path of directory inode `ino`.
    pub(crate) fn dir_path(&self, ino: Ino) -> Result<String, Errno> {
        let t = self.table();
        let inode = t.inodes.get(&ino).ok_or(Errno::ENOENT)?;
        if inode.meta.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(inode.path.clone())
    }

    /// The path of `name` in directory `parent`, checked.
    pub(crate) fn child_path(&self, parent: Ino, name: &str) -> Result<(String, String), Errno> {
        let name = check_name(name)?;
        let dir = self.dir_path(parent)?;
        let path = child(&dir, name);
        if self.dir_key(&path).len() > MAX_KEY {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok((dir, path))
    }

    /// What `path` is, from this mount's state and caches when they are fresh, else the store.
    pub(crate) async fn resolve(self: &Arc<Self>, path: &str) -> Result<Option<Found>, FsError> {
        let now = Instant::now();
        {
            let t = self.table();
            if let Some(inode) = t.inode_at(path)
                && (path.is_empty() || inode.write.is_some())
            {
                return Ok(Some(Found {
                    meta: inode.meta.clone(),
                    has_marker: inode.has_marker,
                }));
            }
            let (dir, name) = split(path);
            if let Some(l) = t.listings.fresh(dir, now) {
                return Ok(l.entries.get(name).map(Found::listed));
            }
            if let Some(e) = t.listings.known(dir, name, now) {
                return Ok(Some(Found::listed(e)));
            }
            if t.is_negative(path, now) {
                return Ok(None);
            }
            if let Some(inode) = t.inode_at(path)
                && inode.valid_until > now
            {
                return Ok(Some(Found {
                    meta: inode.meta.clone(),
                    has_marker: inode.has_marker,
                }));
            }
        }
        if let Some(found) = self.from_refreshed_listing(path, now).await {
            return Ok(found);
        }
        self.note_miss(path, now);
        let found = self.remote_stat(path).await?;
        let mut t = self.table();
        match &found {
            Some(f) => {
                if let Some(ino) = t.ino_of(path)
                    && let Some(inode) = t.inodes.get_mut(&ino)
                    && inode.meta.kind == f.meta.kind
                    && inode.write.is_none()
                {
                    inode.meta = f.meta.clone();
                    inode.valid_until = self.attr_deadline();
                    if f.has_marker.is_some() {
                        inode.has_marker = f.has_marker;
                    }
                }
            }
            None => {
                if t.inode_at(path).is_none_or(|i| i.write.is_none()) {
                    t.set_negative(path, Instant::now() + self.ctx.cfg.negative_ttl);
                }
            }
        }
        Ok(found)
    }

    /// A lookup in a directory this mount listed or made, whose listing expired: that directory
    /// is listed again (one LIST for up to 1000 names), and the fresh listing answers, as it
    /// will the lookups after it (say, creating many files one after another). `None` when the
    /// directory has no such listing or it could not be refreshed.
    async fn from_refreshed_listing(
        self: &Arc<Self>,
        path: &str,
        now: Instant,
    ) -> Option<Option<Found>> {
        let (dir, name) = split(path);
        let generation = self
            .table()
            .listings
            .refresh(dir, now, REFRESH_MAX_ENTRIES)?;
        if !self.refresh_listing(dir, generation).await {
            return None;
        }
        let t = self.table();
        let l = t.listings.fresh(dir, Instant::now())?;
        Some(l.entries.get(name).map(Found::listed))
    }

    /// A lookup of `path` asks the store: on the second in its directory within the listing
    /// freshness, that directory's first pages are fetched for the lookups to come.
    fn note_miss(self: &Arc<Self>, path: &str, now: Instant) {
        let (dir, _) = split(path);
        let begun = self
            .table()
            .listings
            .missed(dir, now, self.ctx.cfg.list_ttl);
        if let Some(generation) = begun {
            tokio::spawn(Arc::clone(self).fetch_hint(dir.to_owned(), generation));
        }
    }

    /// Asks the store what `path` is: a directory if anything is under `path/`, else a file if
    /// the object exists.
    async fn remote_stat(self: &Arc<Self>, path: &str) -> Result<Option<Found>, FsError> {
        let key = self.key(path);
        let dkey = self.dir_key(path);
        let (head, list) = tokio::join!(
            self.ctx.store.head(&key),
            self.ctx.store.list(&dkey, Some("/"), None, Some(1))
        );
        let list = list.for_key(&dkey)?;
        if !list.objects.is_empty() || !list.common_prefixes.is_empty() {
            // A marker sorts before every other key under it.
            let marker = list.objects.first().filter(|o| o.key == dkey);
            return Ok(Some(Found {
                meta: Meta {
                    kind: FileKind::Dir,
                    size: 0,
                    mtime: marker.map_or(self.mount_time, |m| m.last_modified),
                    etag: None,
                },
                has_marker: Some(marker.is_some()),
            }));
        }
        Ok(head.for_key(&key)?.map(|m| Found {
            meta: Meta {
                kind: FileKind::File,
                size: m.size,
                mtime: m.last_modified,
                etag: Some(m.etag),
            },
            has_marker: None,
        }))
    }

    /// Whether directory `path` has anything under it (in the store or pending here).
    pub(crate) async fn dir_is_empty(self: &Arc<Self>, path: &str) -> Result<bool, FsError> {
        if self.table().pending_under(path) {
            return Ok(false);
        }
        let dkey = self.dir_key(path);
        let page = self
            .ctx
            .store
            .list(&dkey, None, None, Some(2))
            .await
            .for_key(&dkey)?;
        Ok(page.objects.iter().all(|o| o.key == dkey) && page.common_prefixes.is_empty())
    }

    /// After something was removed from directory `path`: if that left it with no key at all
    /// (it was implicit), creates its marker so it stays, as POSIX wants. Best effort.
    pub(crate) async fn keep_dir(self: &Arc<Self>, path: &str) {
        if path.is_empty() {
            return;
        }
        {
            let t = self.table();
            let marked = t.inode_at(path).is_some_and(|i| i.has_marker == Some(true))
                || t.listings
                    .fresh(path, Instant::now())
                    .is_some_and(|l| l.has_marker);
            if marked {
                return;
            }
        }
        let dkey = self.dir_key(path);
        let result = async {
            let page = self.ctx.store.list(&dkey, None, None, Some(1)).await?;
            if !page.objects.is_empty() {
                return Ok(false);
            }
            self.ctx.store.put(&dkey, Bytes::new()).await?;
            Ok::<_, StoreError>(true)
        }
        .await;
        match result {
            Ok(false) => {}
            Ok(true) => {
                let mut t = self.table();
                if let Some(ino) = t.ino_of(path)
                    && let Some(inode) = t.inodes.get_mut(&ino)
                {
                    inode.has_marker = Some(true);
                }
            }
            Err(e) => tracing::debug!(dir = %dkey, error = %e, "could not keep directory"),
        }
    }

    pub(crate) async fn lookup(self: &Arc<Self>, parent: Ino, name: &str) -> Result<Attr, FsError> {
        let (_, path) = self.child_path(parent, name)?;
        let found = self.resolve(&path).await?.ok_or(Errno::ENOENT)?;
        let mut t = self.table();
        let ino = match t.ino_of(&path) {
            Some(ino)
                if t.inodes
                    .get(&ino)
                    .is_some_and(|i| i.meta.kind == found.meta.kind) =>
            {
                ino
            }
            _ => t.upsert(&path, found.meta.clone(), self.attr_deadline()),
        };
        let inode = t.inodes.get_mut(&ino).ok_or(Errno::EIO)?;
        inode.lookups += 1;
        if found.has_marker.is_some() {
            inode.has_marker = found.has_marker;
        }
        let inode = t.inodes.get(&ino).ok_or(Errno::EIO)?;
        Ok(self.attr(ino, &inode.meta, inode.write.as_deref()))
    }

    pub(crate) async fn getattr(self: &Arc<Self>, ino: Ino) -> Result<Attr, FsError> {
        let path = {
            let t = self.table();
            let inode = t.inodes.get(&ino).ok_or(Errno::ENOENT)?;
            let fresh = inode.valid_until > Instant::now();
            if ino == ROOT_INO || inode.write.is_some() || fresh || !t.is_linked(ino) {
                return Ok(self.attr(ino, &inode.meta, inode.write.as_deref()));
            }
            inode.path.clone()
        };
        match self.resolve(&path).await? {
            Some(found) => {
                let mut t = self.table();
                let inode = t.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
                if inode.meta.kind != found.meta.kind {
                    return Err(Errno::ESTALE.into());
                }
                if inode.write.is_none() {
                    inode.meta = found.meta;
                    inode.valid_until = self.attr_deadline();
                }
                Ok(self.attr(ino, &inode.meta, inode.write.as_deref()))
            }
            None => {
                let mut t = self.table();
                if t.ino_of(&path) == Some(ino) {
                    t.unmap(&path);
                }
                Err(Errno::ENOENT.into())
            }
        }
    }

    pub(crate) async fn setattr(
        self: &Arc<Self>,
        ino: Ino,
        fh: Option<Fh>,
        set: SetAttr,
    ) -> Result<Attr, FsError> {
        let kind = {
            let t = self.table();
            t.inodes.get(&ino).ok_or(Errno::ENOENT)?.meta.kind
        };
        let changes =
            set.size.is_some() || set.mode.is_some() || set.uid.is_some() || set.gid.is_some();
        if self.ctx.cfg.read_only && changes {
            return Err(Errno::EROFS.into());
        }
        if let Some(mode) = set.mode {
            let want = match kind {
                FileKind::File => self.ctx.cfg.file_mode,
                FileKind::Dir => self.ctx.cfg.dir_mode,
            };
            if mode & 0o7777 != u32::from(want) {
                return Err(Errno::EPERM.into());
            }
        }
        if set.uid.is_some_and(|u| u != self.ctx.cfg.uid)
            || set.gid.is_some_and(|g| g != self.ctx.cfg.gid)
        {
            return Err(Errno::EPERM.into());
        }
        if let Some(size) = set.size {
            if kind == FileKind::Dir {
                return Err(Errno::EISDIR.into());
            }
            self.truncate(ino, fh, size).await?;
        }
        self.getattr(ino).await
    }

    pub(crate) async fn mkdir(self: &Arc<Self>, parent: Ino, name: &str) -> Result<Attr, FsError> {
        if self.ctx.cfg.read_only {
            return Err(Errno::EROFS.into());
        }
        let (dir, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        if self.resolve(&path).await?.is_some() {
            return Err(Errno::EEXIST.into());
        }
        let dkey = self.dir_key(&path);
        self.ctx
            .store
            .put(&dkey, Bytes::new())
            .await
            .for_key(&dkey)?;
        let meta = Meta {
            kind: FileKind::Dir,
            size: 0,
            mtime: SystemTime::now(),
            etag: None,
        };
        let mut t = self.table();
        let ino = t.upsert(&path, meta.clone(), self.attr_deadline());
        if let Some(inode) = t.inodes.get_mut(&ino) {
            inode.lookups += 1;
            inode.has_marker = Some(true);
        }
        t.listings.upsert(&dir, name, meta.entry());
        // A new directory is known to be empty.
        let until = Instant::now() + self.ctx.cfg.list_ttl;
        t.listings
            .insert(&path, Arc::new(BTreeMap::new()), true, until);
        t.clear_negative_under(&path);
        Ok(self.attr(ino, &meta, None))
    }

    pub(crate) async fn rmdir(self: &Arc<Self>, parent: Ino, name: &str) -> Result<(), FsError> {
        if self.ctx.cfg.read_only {
            return Err(Errno::EROFS.into());
        }
        let (dir, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        let found = self.resolve(&path).await?.ok_or(Errno::ENOENT)?;
        if found.meta.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR.into());
        }
        if !self.dir_is_empty(&path).await? {
            return Err(Errno::ENOTEMPTY.into());
        }
        let dkey = self.dir_key(&path);
        self.ctx.store.delete(&dkey).await.for_key(&dkey)?;
        {
            let mut t = self.table();
            t.unmap(&path);
            t.listings.remove(&dir, name);
            t.listings.invalidate(&path);
            t.set_negative(&path, Instant::now() + self.ctx.cfg.negative_ttl);
        }
        self.keep_dir(&dir).await;
        Ok(())
    }

    pub(crate) async fn unlink(self: &Arc<Self>, parent: Ino, name: &str) -> Result<(), FsError> {
        if self.ctx.cfg.read_only {
            return Err(Errno::EROFS.into());
        }
        let (dir, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        let found = self.resolve(&path).await?.ok_or(Errno::ENOENT)?;
        if found.meta.kind == FileKind::Dir {
            return Err(Errno::EISDIR.into());
        }
        let write = self.table().inode_at(&path).and_then(|i| i.write.clone());
        match &write {
            Some(w) => {
                let mut st = w.lock().await;
                if !st.is_new {
                    self.ctx.store.delete(&st.key).await.for_key(&st.key)?;
                }
                st.discard(&self.ctx).await;
                w.publish(&st, false);
            }
            None => {
                let key = self.key(&path);
                self.ctx.store.delete(&key).await.for_key(&key)?;
            }
        }
        {
            let mut t = self.table();
            if let Some(ino) = t.ino_of(&path)
                && let Some(inode) = t.inodes.get_mut(&ino)
            {
                inode.write = None;
            }
            t.unmap(&path);
            t.listings.remove(&dir, name);
            t.set_negative(&path, Instant::now() + self.ctx.cfg.negative_ttl);
        }
        self.keep_dir(&dir).await;
        Ok(())
    }
}
