//! Open files: create/open/read/write/flush/release through file handles (`fs/handles.rs`),
//! truncation, and what a commit changes in the table. The content itself is `fs/write.rs`'s,
//! the read-ahead `fs/read.rs`'s. After a resume, handles a previous process gave out are read
//! through a handle opened on demand, and refuse writes (see `fs.rs`).

use std::collections::hash_map::Entry as Slot;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::MutexGuard;

use super::error::{ForKey, FsError};
use super::handles::FileHandle;
use super::paths::split;
use super::read::Version;
use super::state::Inner;
use super::table::{Entry, Meta};
use super::types::{Allocate, Attr, Fh, FileKind, Ino, Invalidation, OpenFlags};
use super::write::{WriteFile, WriteState};
use crate::errno::Errno;
use crate::store::ObjectStore;

impl<S: ObjectStore> Inner<S> {
    fn register(&self, h: FileHandle) -> Fh {
        let ino = h.ino;
        let fh = {
            let mut hs = self.handles();
            let fh = hs.next_fh();
            hs.files.insert(fh, Arc::new(h));
            fh
        };
        if let Some(inode) = self.table().inodes.get_mut(&ino) {
            inode.open += 1;
        }
        fh
    }

    fn handle(&self, fh: Fh) -> Result<Arc<FileHandle>, Errno> {
        self.handles().files.get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// The handle `fh` of file `ino` to read through: this process's, or for a number the
    /// previous process of a resumed mount gave out, a read handle of `ino` opened now under
    /// that number (ESTALE when this process does not know `ino`).
    fn read_handle(&self, ino: Ino, fh: Fh) -> Result<Arc<FileHandle>, Errno> {
        {
            let hs = self.handles();
            if let Some(h) = hs.files.get(&fh) {
                return Ok(Arc::clone(h));
            }
            if !hs.inherited(fh) {
                return Err(Errno::EBADF);
            }
        }
        match self.table().inodes.get(&ino).map(|i| i.meta.kind) {
            None => return Err(Errno::ESTALE),
            Some(FileKind::Dir) => return Err(Errno::EISDIR),
            Some(FileKind::File) => {}
        }
        let mut h = self.new_handle(ino, None, false, None);
        h.inherited = true;
        let (h, opened) = match self.handles().files.entry(fh) {
            Slot::Occupied(e) => (Arc::clone(e.get()), false),
            Slot::Vacant(e) => (Arc::clone(e.insert(Arc::new(h))), true),
        };
        if opened && let Some(inode) = self.table().inodes.get_mut(&ino) {
            inode.open += 1;
        }
        Ok(h)
    }

    /// Whether `fh` is a handle the previous process of a resumed mount gave out (opened again
    /// here for reading, or not at all): what was written through it is lost.
    fn lost_writes(&self, fh: Fh) -> bool {
        let hs = self.handles();
        match hs.files.get(&fh) {
            Some(h) => h.inherited,
            None => hs.inherited(fh),
        }
    }

    fn new_handle(
        &self,
        ino: Ino,
        write: Option<Arc<WriteFile>>,
        rdwr: bool,
        version: Option<Version>,
    ) -> FileHandle {
        FileHandle::new(ino, write, rdwr, version, self.ctx.cfg.read_ahead_initial)
    }

    /// The object version of file `ino`, from fresh attributes or the store.
    async fn current_version(self: &Arc<Self>, ino: Ino) -> Result<(Version, SystemTime), FsError> {
        let path = {
            let t = self.table();
            let inode = t.inodes.get(&ino).ok_or(Errno::ENOENT)?;
            if inode.meta.kind == FileKind::Dir {
                return Err(Errno::EISDIR.into());
            }
            if (inode.valid_until > std::time::Instant::now() || !t.is_linked(ino))
                && let Some(etag) = &inode.meta.etag
            {
                return Ok((
                    Version {
                        key: self.key(&inode.path),
                        etag: etag.clone(),
                        size: inode.meta.size,
                    },
                    inode.meta.mtime,
                ));
            }
            inode.path.clone()
        };
        let found = self.resolve(&path).await?.ok_or(Errno::ENOENT)?;
        if found.meta.kind == FileKind::Dir {
            return Err(Errno::EISDIR.into());
        }
        let meta = match found.meta.etag {
            Some(_) => found.meta,
            // Listings always carry ETags; this is a file without one (pending elsewhere).
            None => {
                let key = self.key(&path);
                let m = self
                    .ctx
                    .store
                    .head(&key)
                    .await
                    .for_key(&key)?
                    .ok_or(Errno::ENOENT)?;
                Meta {
                    kind: FileKind::File,
                    size: m.size,
                    mtime: m.last_modified,
                    etag: Some(m.etag),
                }
            }
        };
        let mut t = self.table();
        if let Some(inode) = t.inodes.get_mut(&ino)
            && inode.write.is_none()
        {
            inode.meta = meta.clone();
            inode.valid_until = self.attr_deadline();
        }
        Ok((
            Version {
                key: self.key(&path),
                etag: meta.etag.unwrap_or_default(),
                size: meta.size,
            },
            meta.mtime,
        ))
    }

    pub(crate) async fn create(
        self: &Arc<Self>,
        parent: Ino,
        name: &str,
        flags: OpenFlags,
    ) -> Result<(Attr, Fh), FsError> {
        if self.ctx.cfg.read_only {
            return Err(Errno::EROFS.into());
        }
        let (_, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        if self.resolve(&path).await?.is_some() {
            return Err(Errno::EEXIST.into());
        }
        let ws = Arc::new(WriteFile::created(self.key(&path)));
        let meta = Meta {
            kind: FileKind::File,
            size: 0,
            mtime: SystemTime::now(),
            etag: None,
        };
        let ino = {
            let mut t = self.table();
            let ino = t.upsert(&path, meta.clone(), self.attr_deadline());
            if let Some(inode) = t.inodes.get_mut(&ino) {
                inode.lookups += 1;
                inode.write = Some(Arc::clone(&ws));
            }
            t.pending_new.insert(path.clone());
            ino
        };
        let attr = self.attr(ino, &meta, Some(&ws));
        let fh = self.register(self.new_handle(ino, Some(ws), flags.read_write(), None));
        Ok((attr, fh))
    }

    pub(crate) async fn open(self: &Arc<Self>, ino: Ino, flags: OpenFlags) -> Result<Fh, FsError> {
        let existing = {
            let t = self.table();
            let inode = t.inodes.get(&ino).ok_or(Errno::ENOENT)?;
            if inode.meta.kind == FileKind::Dir {
                return Err(Errno::EISDIR.into());
            }
            inode.write.clone()
        };
        if !flags.writable() {
            let version = match existing {
                Some(_) => None,
                None => Some(self.current_version(ino).await?.0),
            };
            return Ok(self.register(self.new_handle(ino, None, false, version)));
        }
        if self.ctx.cfg.read_only {
            return Err(Errno::EROFS.into());
        }
        let ws = match existing {
            Some(w) => w,
            None => {
                let (v, mtime) = self.current_version(ino).await?;
                let fresh = Arc::new(WriteFile::existing(v.key, v.size, Some(v.etag), mtime));
                let mut t = self.table();
                let inode = t.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
                // Another open may have attached one meanwhile.
                Arc::clone(inode.write.get_or_insert(fresh))
            }
        };
        if flags.truncate() {
            let mut st = ws.lock().await;
            let r = st.truncate(&self.ctx, 0).await;
            ws.publish(&st, true);
            r?;
        }
        Ok(self.register(self.new_handle(ino, Some(ws), flags.read_write(), None)))
    }

    pub(crate) async fn read(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        off: u64,
        size: u32,
    ) -> Result<Bytes, FsError> {
        let h = self.read_handle(ino, fh)?;
        let shared = match &h.write {
            Some(w) => Some(Arc::clone(w)),
            None => self.table().inodes.get(&ino).and_then(|i| i.write.clone()),
        };
        let version = match shared {
            Some(ws) => {
                let st = ws.lock().await;
                if st.failed && h.write.is_some() {
                    return Err(st.failed_before());
                }
                if let Some(data) = st.read_local(off, u64::from(size)).await? {
                    return Ok(data);
                }
                st.version()
            }
            None => None,
        };
        let version = match version.or_else(|| h.version()) {
            Some(v) => v,
            None => {
                let (v, _) = self.current_version(ino).await?;
                h.set_version(v.clone());
                v
            }
        };
        let mut ra = h.ra.lock().await;
        ra.read(&self.ctx, &version, off, u64::from(size)).await
    }

    pub(crate) async fn write(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        off: u64,
        data: &[u8],
    ) -> Result<u32, FsError> {
        if self.lost_writes(fh) {
            return Err(lost_handle());
        }
        let h = self.handle(fh)?;
        let ws = h.write.clone().ok_or(Errno::EBADF)?;
        let len = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let mut st = ws.lock().await;
        let r = st.write(&self.ctx, off, data, h.rdwr).await;
        self.settle(ino, &ws, st, r.is_ok()).await;
        r.map(|()| len)
    }

    /// `fallocate` of `len` bytes at `off` through handle `fh`.
    pub(crate) async fn allocate(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        off: u64,
        len: u64,
        how: Allocate,
    ) -> Result<(), FsError> {
        if self.lost_writes(fh) {
            return Err(lost_handle());
        }
        let h = self.handle(fh)?;
        let ws = h.write.clone().ok_or(Errno::EBADF)?;
        if len == 0 {
            return Err(Errno::EINVAL.into());
        }
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        let mut st = ws.lock().await;
        let r = st.allocate(&self.ctx, off, end, how).await;
        self.settle(ino, &ws, st, true).await;
        r
    }

    /// After a change to the content of `ws`: the new size for `getattr` (and the mtime if
    /// `touched`), and the clean-up if an upload failed.
    async fn settle(
        &self,
        ino: Ino,
        ws: &Arc<WriteFile>,
        st: MutexGuard<'_, WriteState>,
        touched: bool,
    ) {
        ws.publish(&st, touched);
        if st.failed {
            let is_new = st.is_new;
            drop(st);
            self.after_failure(ino, ws, is_new, true).await;
        }
    }

    pub(crate) async fn commit_handle(self: &Arc<Self>, ino: Ino, fh: Fh) -> Result<(), FsError> {
        let h = match self.handle(fh) {
            Ok(h) => h,
            // Whatever it had staged is gone; there is nothing to commit.
            Err(_) if self.handles().inherited(fh) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match &h.write {
            Some(ws) => self.commit_locked(ino, ws, true).await.map(drop),
            None => Ok(()),
        }
    }

    /// Commits `ws` (of inode `ino`) and records the result; returns the state still locked.
    /// `wait`: see [`Inner::invalidate`].
    pub(crate) async fn commit_locked<'a>(
        self: &Arc<Self>,
        ino: Ino,
        ws: &'a Arc<WriteFile>,
        wait: bool,
    ) -> Result<MutexGuard<'a, WriteState>, FsError> {
        let mut st = ws.lock().await;
        match st.commit(&self.ctx).await {
            Ok(Some(etag)) => {
                ws.publish(&st, false);
                self.committed(ino, &st, etag.clone());
                // Readers of this file in this mount read what was just written.
                self.point_handles(
                    ino,
                    &Version {
                        key: st.key.clone(),
                        etag,
                        size: st.size,
                    },
                );
                Ok(st)
            }
            Ok(None) => Ok(st),
            Err(e) => {
                let is_new = st.is_new;
                drop(st);
                self.after_failure(ino, ws, is_new, wait).await;
                Err(e)
            }
        }
    }

    /// Records a committed object in the table and the parent's listing.
    fn committed(&self, ino: Ino, st: &WriteState, etag: String) {
        let meta = Meta {
            kind: FileKind::File,
            size: st.size,
            mtime: SystemTime::now(),
            etag: Some(etag),
        };
        let mut t = self.table();
        let linked = t.is_linked(ino);
        let Some(inode) = t.inodes.get_mut(&ino) else {
            return;
        };
        inode.meta = meta.clone();
        inode.valid_until = self.attr_deadline();
        let path = inode.path.clone();
        if linked {
            t.pending_new.remove(&path);
            let (dir, name) = split(&path);
            t.listings.upsert(
                dir,
                name,
                Entry {
                    kind: FileKind::File,
                    size: meta.size,
                    mtime: meta.mtime,
                    etag: meta.etag,
                },
            );
            t.clear_negative(&path);
        }
    }

    /// After a failed upload: new opens start from the store again, and a file that was never
    /// committed disappears.
    async fn after_failure(&self, ino: Ino, ws: &Arc<WriteFile>, is_new: bool, wait: bool) {
        let what = {
            let mut t = self.table();
            let Some(inode) = t.inodes.get_mut(&ino) else {
                return;
            };
            if inode.write.as_ref().is_some_and(|w| Arc::ptr_eq(w, ws)) {
                inode.write = None;
                inode.valid_until = std::time::Instant::now();
            }
            let path = inode.path.clone();
            if !is_new {
                Some(Invalidation::Inode(ino))
            } else if t.is_linked(ino) {
                t.unmap(&path);
                let (dir, name) = split(&path);
                t.ino_of(dir).map(|parent| Invalidation::Entry {
                    parent,
                    name: name.to_string(),
                })
            } else {
                None
            }
        };
        if let Some(what) = what {
            self.invalidate(what, wait).await;
        }
    }

    pub(crate) async fn release(self: &Arc<Self>, ino: Ino, fh: Fh) -> Result<(), FsError> {
        let removed = self.handles().files.remove(&fh);
        let Some(h) = removed else {
            // An inherited handle never read through here: nothing to close.
            let inherited = self.handles().inherited(fh);
            return if inherited {
                Ok(())
            } else {
                Err(Errno::EBADF.into())
            };
        };
        let result = match &h.write {
            Some(ws) => {
                let r = self.commit_locked(ino, ws, true).await.map(drop);
                let mut t = self.table();
                if let Some(inode) = t.inodes.get_mut(&ino) {
                    // The inode's reference and this handle's: no other writer is left.
                    let last = Arc::strong_count(ws) <= 2;
                    if last && r.is_ok() && inode.write.as_ref().is_some_and(|w| Arc::ptr_eq(w, ws))
                    {
                        inode.write = None;
                    }
                }
                r
            }
            None => Ok(()),
        };
        let mut t = self.table();
        if let Some(inode) = t.inodes.get_mut(&ino) {
            inode.open = inode.open.saturating_sub(1);
        }
        drop(h);
        t.maybe_drop(ino);
        result
    }

    /// Sets the size of file `ino`: through the handle's content (committed at its close), or
    /// committed at once.
    pub(crate) async fn truncate(
        self: &Arc<Self>,
        ino: Ino,
        fh: Option<Fh>,
        size: u64,
    ) -> Result<(), FsError> {
        if fh.is_some_and(|fh| self.lost_writes(fh)) {
            return Err(lost_handle());
        }
        let own = fh
            .and_then(|fh| self.handle(fh).ok())
            .and_then(|h| h.write.clone());
        if let Some(ws) = own {
            let mut st = ws.lock().await;
            let r = st.truncate(&self.ctx, size).await;
            self.settle(ino, &ws, st, true).await;
            return r;
        }
        let shared = self.table().inodes.get(&ino).and_then(|i| i.write.clone());
        let ws = match shared {
            Some(ws) => ws,
            None => {
                let (v, mtime) = self.current_version(ino).await?;
                Arc::new(WriteFile::existing(v.key, v.size, Some(v.etag), mtime))
            }
        };
        {
            let mut st = ws.lock().await;
            let r = st.truncate(&self.ctx, size).await;
            ws.publish(&st, true);
            r?;
        }
        self.commit_locked(ino, &ws, true).await.map(drop)
    }

    /// Points the open handles of `ino` at `version`.
    fn point_handles(&self, ino: Ino, version: &Version) {
        let handles: Vec<Arc<FileHandle>> = self
            .handles()
            .files
            .values()
            .filter(|h| h.ino == ino)
            .cloned()
            .collect();
        for h in handles {
            h.set_version(version.clone());
        }
    }

    /// Points open handles that read a moved object at its new key and ETag.
    /// `moves`: (old key, old ETag, new key, new ETag).
    pub(crate) fn move_handles(&self, moves: Vec<(String, String, String, String)>) {
        if moves.is_empty() {
            return;
        }
        let handles: Vec<Arc<FileHandle>> = self.handles().files.values().cloned().collect();
        for h in handles {
            let mut v = h.version.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(ver) = v.as_mut()
                && let Some((_, _, key, etag)) = moves
                    .iter()
                    .find(|(k, e, _, _)| *k == ver.key && *e == ver.etag)
            {
                ver.key = key.clone();
                ver.etag = etag.clone();
            }
        }
    }
}

/// The error of a change through a handle the previous process of a resumed mount gave out.
fn lost_handle() -> FsError {
    FsError::new(
        Errno::EIO,
        "a handle of the daemon process this one replaced: what was written through it is lost",
    )
}
