//! Namespace operations: lookup, attributes, directories, unlink and rename, and the listing
//! and existence checks they share. They record what they learn in the table; file content is
//! `fs/files.rs`'s business.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::task::JoinSet;

use super::files::DirHandle;
use super::table::{Entry, Meta};
use super::{Attr, DirEntry, Fh, FileKind, Inner, Ino, ROOT_INO, SetAttr};
use crate::errno::Errno;
use crate::store::{ObjectStore, StoreError};

const MAX_NAME: usize = 255;
/// S3 and COS keys are at most 1024 bytes.
const MAX_KEY: usize = 1024;

/// Checks a name the kernel passed.
pub(crate) fn check_name(name: &str) -> Result<&str, Errno> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Errno::EINVAL);
    }
    if name.len() > MAX_NAME {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(name)
}

/// Whether a name found in a listing can be shown.
fn listable(name: &str) -> bool {
    check_name(name).is_ok()
}

pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// `(parent, name)` of a non-root path.
pub(crate) fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// A made-up `d_ino` for entries without an inode: the top bit keeps it apart from real ones.
fn synthetic_ino(path: &str) -> Ino {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | (1 << 63)
}

/// What a path is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) meta: Meta,
    pub(crate) has_marker: Option<bool>,
}

fn entry_of(meta: &Meta) -> Entry {
    Entry {
        kind: meta.kind,
        size: meta.size,
        mtime: meta.mtime,
        etag: meta.etag.clone(),
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
    pub(crate) async fn resolve(self: &Arc<Self>, path: &str) -> Result<Option<Found>, Errno> {
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
                return Ok(l.entries.get(name).map(|e| Found {
                    meta: Meta {
                        kind: e.kind,
                        size: e.size,
                        mtime: e.mtime,
                        etag: e.etag.clone(),
                    },
                    has_marker: None,
                }));
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
                    t.set_negative(path, Instant::now() + self.cfg.negative_ttl);
                }
            }
        }
        Ok(found)
    }

    /// Asks the store what `path` is: a directory if anything is under `path/`, else a file if
    /// the object exists.
    async fn remote_stat(self: &Arc<Self>, path: &str) -> Result<Option<Found>, Errno> {
        let key = self.key(path);
        let dkey = self.dir_key(path);
        let (head, list) = tokio::join!(
            self.store.head(&key),
            self.store.list(&dkey, Some("/"), None, Some(1))
        );
        let list = list?;
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
        Ok(head?.map(|m| Found {
            meta: Meta {
                kind: FileKind::File,
                size: m.size,
                mtime: m.last_modified,
                etag: Some(m.etag),
            },
            has_marker: None,
        }))
    }

    /// Every entry of directory `path` (all pages), and whether its marker exists.
    async fn list_dir(
        self: &Arc<Self>,
        path: &str,
    ) -> Result<(BTreeMap<String, Entry>, bool), Errno> {
        let dkey = self.dir_key(path);
        let mut entries = BTreeMap::new();
        let mut has_marker = false;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&dkey, Some("/"), token.as_deref(), None)
                .await?;
            for o in page.objects {
                let Some(name) = o.key.strip_prefix(dkey.as_str()) else {
                    continue;
                };
                if name.is_empty() {
                    has_marker = true;
                    continue;
                }
                if !listable(name) {
                    continue;
                }
                // A directory of the same name wins.
                entries.entry(name.to_string()).or_insert(Entry {
                    kind: FileKind::File,
                    size: o.size,
                    mtime: o.last_modified,
                    etag: Some(o.etag),
                });
            }
            for cp in page.common_prefixes {
                let Some(name) = cp
                    .strip_prefix(dkey.as_str())
                    .and_then(|n| n.strip_suffix('/'))
                else {
                    continue;
                };
                if !listable(name) {
                    continue;
                }
                entries.insert(
                    name.to_string(),
                    Entry {
                        kind: FileKind::Dir,
                        size: 0,
                        mtime: self.mount_time,
                        etag: None,
                    },
                );
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok((entries, has_marker)),
            }
        }
    }

    /// Every key at or under directory `path`.
    async fn keys_under(self: &Arc<Self>, path: &str) -> Result<Vec<(String, String)>, Errno> {
        let dkey = self.dir_key(path);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.store.list(&dkey, None, token.as_deref(), None).await?;
            keys.extend(page.objects.into_iter().map(|o| (o.key, o.etag)));
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    /// Whether directory `path` has anything under it (in the store or pending here).
    async fn dir_is_empty(self: &Arc<Self>, path: &str) -> Result<bool, Errno> {
        if self.table().pending_under(path) {
            return Ok(false);
        }
        let dkey = self.dir_key(path);
        let page = self.store.list(&dkey, None, None, Some(2)).await?;
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
            let page = self.store.list(&dkey, None, None, Some(1)).await?;
            if !page.objects.is_empty() {
                return Ok(false);
            }
            self.store.put(&dkey, Bytes::new()).await?;
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

    pub(crate) async fn lookup(self: &Arc<Self>, parent: Ino, name: &str) -> Result<Attr, Errno> {
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

    pub(crate) async fn getattr(self: &Arc<Self>, ino: Ino) -> Result<Attr, Errno> {
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
                    return Err(Errno::ESTALE);
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
                Err(Errno::ENOENT)
            }
        }
    }

    pub(crate) async fn setattr(
        self: &Arc<Self>,
        ino: Ino,
        fh: Option<Fh>,
        set: SetAttr,
    ) -> Result<Attr, Errno> {
        let kind = {
            let t = self.table();
            t.inodes.get(&ino).ok_or(Errno::ENOENT)?.meta.kind
        };
        let changes =
            set.size.is_some() || set.mode.is_some() || set.uid.is_some() || set.gid.is_some();
        if self.cfg.read_only && changes {
            return Err(Errno::EROFS);
        }
        if let Some(mode) = set.mode {
            let want = match kind {
                FileKind::File => self.cfg.file_mode,
                FileKind::Dir => self.cfg.dir_mode,
            };
            if mode & 0o7777 != u32::from(want) {
                return Err(Errno::EPERM);
            }
        }
        if set.uid.is_some_and(|u| u != self.cfg.uid) || set.gid.is_some_and(|g| g != self.cfg.gid)
        {
            return Err(Errno::EPERM);
        }
        if let Some(size) = set.size {
            if kind == FileKind::Dir {
                return Err(Errno::EISDIR);
            }
            self.truncate(ino, fh, size).await?;
        }
        self.getattr(ino).await
    }

    pub(crate) async fn mkdir(self: &Arc<Self>, parent: Ino, name: &str) -> Result<Attr, Errno> {
        if self.cfg.read_only {
            return Err(Errno::EROFS);
        }
        let (dir, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        if self.resolve(&path).await?.is_some() {
            return Err(Errno::EEXIST);
        }
        self.store.put(&self.dir_key(&path), Bytes::new()).await?;
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
        t.listings.upsert(&dir, name, entry_of(&meta));
        // A new directory is known to be empty.
        let until = Instant::now() + self.cfg.list_ttl;
        t.listings
            .insert(&path, Arc::new(BTreeMap::new()), true, until);
        t.clear_negative_under(&path);
        Ok(self.attr(ino, &meta, None))
    }

    pub(crate) async fn rmdir(self: &Arc<Self>, parent: Ino, name: &str) -> Result<(), Errno> {
        if self.cfg.read_only {
            return Err(Errno::EROFS);
        }
        let (dir, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        let found = self.resolve(&path).await?.ok_or(Errno::ENOENT)?;
        if found.meta.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        if !self.dir_is_empty(&path).await? {
            return Err(Errno::ENOTEMPTY);
        }
        self.store.delete(&self.dir_key(&path)).await?;
        {
            let mut t = self.table();
            t.unmap(&path);
            t.listings.remove(&dir, name);
            t.listings.invalidate(&path);
            t.set_negative(&path, Instant::now() + self.cfg.negative_ttl);
        }
        self.keep_dir(&dir).await;
        Ok(())
    }

    pub(crate) async fn unlink(self: &Arc<Self>, parent: Ino, name: &str) -> Result<(), Errno> {
        if self.cfg.read_only {
            return Err(Errno::EROFS);
        }
        let (dir, path) = self.child_path(parent, name)?;
        let _ns = self.ns.lock().await;
        let found = self.resolve(&path).await?.ok_or(Errno::ENOENT)?;
        if found.meta.kind == FileKind::Dir {
            return Err(Errno::EISDIR);
        }
        let write = self.table().inode_at(&path).and_then(|i| i.write.clone());
        match &write {
            Some(w) => {
                let mut st = w.lock().await;
                if !st.is_new {
                    self.store.delete(&st.key).await?;
                }
                st.discard(self).await;
                w.publish(&st, false);
            }
            None => self.store.delete(&self.key(&path)).await?,
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
            t.set_negative(&path, Instant::now() + self.cfg.negative_ttl);
        }
        self.keep_dir(&dir).await;
        Ok(())
    }

    pub(crate) async fn rename(
        self: &Arc<Self>,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), Errno> {
        if self.cfg.read_only {
            return Err(Errno::EROFS);
        }
        let (from_dir, from) = self.child_path(parent, name)?;
        let (to_dir, to) = self.child_path(new_parent, new_name)?;
        let _ns = self.ns.lock().await;
        let src = self.resolve(&from).await?.ok_or(Errno::ENOENT)?;
        if from == to {
            return Ok(());
        }
        let dst = self.resolve(&to).await?;
        if noreplace && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        match (src.meta.kind, dst.as_ref().map(|d| d.meta.kind)) {
            (FileKind::File, Some(FileKind::Dir)) => return Err(Errno::EISDIR),
            (FileKind::Dir, Some(FileKind::File)) => return Err(Errno::ENOTDIR),
            (FileKind::Dir, _) if to.starts_with(&format!("{from}/")) => {
                return Err(Errno::EINVAL);
            }
            (FileKind::Dir, Some(FileKind::Dir)) if !self.dir_is_empty(&to).await? => {
                return Err(Errno::ENOTEMPTY);
            }
            _ => {}
        }
        match src.meta.kind {
            FileKind::File => self.rename_file(&from, &to, src.meta).await?,
            FileKind::Dir => self.rename_dir(&from, &to).await?,
        }
        let (_, from_name) = split(&from);
        let (_, to_name) = split(&to);
        {
            let mut t = self.table();
            t.listings.remove(&from_dir, from_name);
            let meta = t.inode_at(&to).map(|i| i.meta.clone());
            match meta {
                Some(meta) => t.listings.upsert(&to_dir, to_name, entry_of(&meta)),
                None => t.listings.invalidate(&to_dir),
            }
            t.set_negative(&from, Instant::now() + self.cfg.negative_ttl);
        }
        self.keep_dir(&from_dir).await;
        Ok(())
    }

    async fn rename_file(self: &Arc<Self>, from: &str, to: &str, meta: Meta) -> Result<(), Errno> {
        let (from_key, to_key) = (self.key(from), self.key(to));
        let (src_write, dst_write) = {
            let t = self.table();
            (
                t.inode_at(from).and_then(|i| i.write.clone()),
                t.inode_at(to).and_then(|i| i.write.clone()),
            )
        };
        // Pending writes go first, under the old name; the state stays locked until it moved.
        let mut src_state = match &src_write {
            Some(w) => {
                let ino = self.table().ino_of(from).ok_or(Errno::ENOENT)?;
                Some(self.commit_locked(ino, w, false).await?)
            }
            None => None,
        };
        let size = src_state.as_ref().map_or(meta.size, |st| st.size);
        let old_etag = src_state
            .as_ref()
            .map_or(meta.etag.clone(), |st| st.base_etag.clone());
        let etag = self.store.copy(&from_key, &to_key).await?;
        self.store.delete(&from_key).await?;
        if let Some(w) = &dst_write {
            let mut st = w.lock().await;
            st.discard(self).await;
            w.publish(&st, false);
        }
        if let Some(st) = &mut src_state {
            st.key = to_key.clone();
            st.base_etag = Some(etag.clone());
        }
        {
            let mut t = self.table();
            if let Some(ino) = t.ino_of(to)
                && let Some(inode) = t.inodes.get_mut(&ino)
            {
                inode.write = None;
            }
            for (ino, _) in t.rename_subtree(from, to) {
                if let Some(inode) = t.inodes.get_mut(&ino) {
                    inode.meta.size = size;
                    inode.meta.etag = Some(etag.clone());
                    inode.valid_until = self.attr_deadline();
                }
            }
        }
        let moved = old_etag.map(|old| (from_key, old, to_key, etag));
        self.move_handles(moved.into_iter().collect());
        Ok(())
    }

    async fn rename_dir(self: &Arc<Self>, from: &str, to: &str) -> Result<(), Errno> {
        // Pending writes under the directory go first.
        let writes = self.table().writes_under(from);
        for (ino, w) in &writes {
            drop(self.commit_locked(*ino, w, false).await?);
        }
        let (from_key, to_key) = (self.dir_key(from), self.dir_key(to));
        let keys = self.keys_under(from).await?;
        let limit = self.cfg.upload_concurrency;
        // Copy everything; on failure remove the copies made.
        let mut copies: Vec<(String, String, String, String)> = Vec::with_capacity(keys.len());
        let mut failed: Option<Errno> = None;
        let mut tasks: JoinSet<(String, String, String, Result<String, StoreError>)> =
            JoinSet::new();
        let mut pending = keys.iter();
        loop {
            while failed.is_none() && tasks.len() < limit {
                let Some((key, etag)) = pending.next() else {
                    break;
                };
                let new = format!("{to_key}{}", key.get(from_key.len()..).unwrap_or_default());
                let this = Arc::clone(self);
                let (key, etag) = (key.clone(), etag.clone());
                tasks.spawn(async move {
                    // A `dir/` marker holds nothing: write a new one rather than copy it (some S3
                    // servers, SeaweedFS among them, answer NoSuchKey to copying a marker).
                    let r = if key.ends_with('/') {
                        this.store.put(&new, Bytes::new()).await
                    } else {
                        this.store.copy(&key, &new).await
                    };
                    (key, etag, new, r)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok((old, old_etag, new, Ok(etag))) => copies.push((old, old_etag, new, etag)),
                Ok((_, _, _, Err(e))) => failed = failed.or(Some(Errno::from(e))),
                Err(_) => failed = failed.or(Some(Errno::EIO)),
            }
        }
        if let Some(e) = failed {
            for (_, _, new, _) in &copies {
                let _ = self.store.delete(new).await;
            }
            return Err(e);
        }
        if keys.is_empty() {
            self.store.put(&to_key, Bytes::new()).await?;
        }
        let mut deletes: JoinSet<Result<(), StoreError>> = JoinSet::new();
        let mut failed = None;
        for (key, _) in keys.iter() {
            if deletes.len() >= limit
                && let Some(Ok(Err(e))) = deletes.join_next().await
            {
                failed = failed.or(Some(Errno::from(e)));
            }
            let (this, key) = (Arc::clone(self), key.clone());
            deletes.spawn(async move { this.store.delete(&key).await });
        }
        while let Some(r) = deletes.join_next().await {
            if let Ok(Err(e)) = r {
                failed = failed.or(Some(Errno::from(e)));
            }
        }
        if let Some(e) = failed {
            // Both trees exist now; forget what this mount knew of them.
            let mut t = self.table();
            t.listings.invalidate_under(from);
            t.listings.invalidate_under(to);
            return Err(e);
        }
        // Move the inodes, their write states and the open handles.
        let moved = {
            let mut t = self.table();
            let moved = t.rename_subtree(from, to);
            for (ino, path) in &moved {
                let new_key = self.key(path);
                let etag = copies.iter().find(|(_, _, k, _)| *k == new_key);
                if let Some(inode) = t.inodes.get_mut(ino) {
                    match etag {
                        Some((_, _, _, etag)) => inode.meta.etag = Some(etag.clone()),
                        None => inode.valid_until = Instant::now(),
                    }
                }
            }
            t.listings.invalidate_under(from);
            t.listings.invalidate_under(to);
            t.clear_negative_under(to);
            moved
        };
        for (ino, w) in writes {
            let path = moved
                .iter()
                .find(|(i, _)| *i == ino)
                .map(|(_, p)| p.clone());
            if let Some(path) = path {
                let mut st = w.lock().await;
                let new_key = self.key(&path);
                if let Some((_, _, _, etag)) = copies.iter().find(|(old, ..)| *old == st.key) {
                    st.base_etag = Some(etag.clone());
                }
                st.key = new_key;
            }
        }
        self.move_handles(copies.into_iter().collect());
        Ok(())
    }

    pub(crate) fn opendir(&self, ino: Ino) -> Result<Fh, Errno> {
        self.dir_path(ino)?;
        let fh = {
            let mut h = self.handles();
            let fh = h.next;
            h.next += 1;
            h.dirs.insert(fh, Arc::new(DirHandle::new(ino)));
            fh
        };
        if let Some(inode) = self.table().inodes.get_mut(&ino) {
            inode.open += 1;
        }
        Ok(fh)
    }

    pub(crate) fn releasedir(&self, fh: Fh) {
        let Some(h) = self.handles().dirs.remove(&fh) else {
            return;
        };
        let mut t = self.table();
        if let Some(inode) = t.inodes.get_mut(&h.ino) {
            inode.open = inode.open.saturating_sub(1);
        }
        t.maybe_drop(h.ino);
    }

    pub(crate) async fn readdir(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        offset: u64,
    ) -> Result<Vec<DirEntry>, Errno> {
        let h = self.handles().dirs.get(&fh).cloned().ok_or(Errno::EBADF)?;
        if h.ino != ino {
            return Err(Errno::EBADF);
        }
        let snapshot = match h.snapshot() {
            Some(s) if offset > 0 => s,
            _ => {
                let s = Arc::new(self.snapshot_dir(ino).await?);
                h.set_snapshot(Arc::clone(&s));
                s
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(snapshot
            .get(start..)
            .map(<[DirEntry]>::to_vec)
            .unwrap_or_default())
    }

    /// The entries of a directory as `readdir` shows them, offsets from 1.
    async fn snapshot_dir(self: &Arc<Self>, ino: Ino) -> Result<Vec<DirEntry>, Errno> {
        let path = self.dir_path(ino)?;
        let cached = self
            .table()
            .listings
            .fresh(&path, Instant::now())
            .map(|l| Arc::clone(&l.entries));
        let entries = match cached {
            Some(e) => e,
            None => {
                let (entries, has_marker) = self.list_dir(&path).await?;
                let entries = Arc::new(entries);
                let mut t = self.table();
                let until = Instant::now() + self.cfg.list_ttl;
                t.listings
                    .insert(&path, Arc::clone(&entries), has_marker, until);
                if let Some(inode) = t.inodes.get_mut(&ino)
                    && ino != ROOT_INO
                {
                    inode.has_marker = Some(has_marker);
                }
                entries
            }
        };
        let t = self.table();
        let mut names: BTreeMap<String, FileKind> =
            entries.iter().map(|(n, e)| (n.clone(), e.kind)).collect();
        for name in t.pending_in(&path) {
            names.entry(name).or_insert(FileKind::File);
        }
        let parent_ino = if path.is_empty() {
            ROOT_INO
        } else {
            t.ino_of(split(&path).0).unwrap_or(ROOT_INO)
        };
        let mut out = Vec::with_capacity(names.len() + 2);
        out.push(DirEntry {
            ino,
            offset: 1,
            kind: FileKind::Dir,
            name: ".".into(),
        });
        out.push(DirEntry {
            ino: parent_ino,
            offset: 2,
            kind: FileKind::Dir,
            name: "..".into(),
        });
        for (name, kind) in names {
            let p = child(&path, &name);
            let ino = t.ino_of(&p).unwrap_or_else(|| synthetic_ino(&p));
            let offset = out.len() as u64 + 1;
            out.push(DirEntry {
                ino,
                offset,
                kind,
                name,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("a b").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(check_name(&"x".repeat(256)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn paths_split_and_join() {
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("a"), ("", "a"));
        assert_eq!(child("", "a"), "a");
        assert_eq!(child("a/b", "c"), "a/b/c");
        assert!(synthetic_ino("x") > (1 << 62));
    }
}
