//! Renames: of a file (copy, then delete) and of a directory (every key under it copied in
//! parallel, then deleted), with what they change in the table, the listings and the open
//! handles. Not atomic; a failed copy leaves the source whole. The checks renames share with
//! other operations are `fs/namespace.rs`'s.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::error::{ForKey, FsError};
use super::paths::split;
use super::state::Inner;
use super::table::Meta;
use super::types::{FileKind, Ino};
use crate::errno::Errno;
use crate::store::{ObjectStore, StoreError};

impl<S: ObjectStore> Inner<S> {
    /// Every key at or under directory `path`.
    async fn keys_under(self: &Arc<Self>, path: &str) -> Result<Vec<(String, String)>, FsError> {
        let dkey = self.dir_key(path);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ctx
                .store
                .list(&dkey, None, token.as_deref(), None)
                .await
                .for_key(&dkey)?;
            keys.extend(page.objects.into_iter().map(|o| (o.key, o.etag)));
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    pub(crate) async fn rename(
        self: &Arc<Self>,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), FsError> {
        if self.ctx.cfg.read_only {
            return Err(Errno::EROFS.into());
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
            return Err(Errno::EEXIST.into());
        }
        match (src.meta.kind, dst.as_ref().map(|d| d.meta.kind)) {
            (FileKind::File, Some(FileKind::Dir)) => return Err(Errno::EISDIR.into()),
            (FileKind::Dir, Some(FileKind::File)) => return Err(Errno::ENOTDIR.into()),
            (FileKind::Dir, _) if to.starts_with(&format!("{from}/")) => {
                return Err(Errno::EINVAL.into());
            }
            (FileKind::Dir, Some(FileKind::Dir)) if !self.dir_is_empty(&to).await? => {
                return Err(Errno::ENOTEMPTY.into());
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
                Some(meta) => t.listings.upsert(&to_dir, to_name, meta.entry()),
                None => t.listings.invalidate(&to_dir),
            }
            t.set_negative(&from, Instant::now() + self.ctx.cfg.negative_ttl);
        }
        self.keep_dir(&from_dir).await;
        Ok(())
    }

    async fn rename_file(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        meta: Meta,
    ) -> Result<(), FsError> {
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
        let etag = self
            .ctx
            .store
            .copy(&from_key, &to_key)
            .await
            .for_key(&from_key)
            .map_err(|e| e.context(format!("copy to {to_key}")))?;
        self.ctx.store.delete(&from_key).await.for_key(&from_key)?;
        if let Some(w) = &dst_write {
            let mut st = w.lock().await;
            st.discard(&self.ctx).await;
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

    async fn rename_dir(self: &Arc<Self>, from: &str, to: &str) -> Result<(), FsError> {
        // Pending writes under the directory go first.
        let writes = self.table().writes_under(from);
        for (ino, w) in &writes {
            drop(self.commit_locked(*ino, w, false).await?);
        }
        let (from_key, to_key) = (self.dir_key(from), self.dir_key(to));
        let keys = self.keys_under(from).await?;
        let limit = self.ctx.cfg.upload_concurrency;
        // Copy everything; on failure remove the copies made.
        let mut copies: Vec<(String, String, String, String)> = Vec::with_capacity(keys.len());
        let mut failed: Option<FsError> = None;
        let mut tasks: JoinSet<(String, String, String, Result<String, StoreError>)> =
            JoinSet::new();
        let mut pending = keys.iter();
        loop {
            while failed.is_none() && tasks.len() < limit {
                let Some((key, etag)) = pending.next() else {
                    break;
                };
                let new = format!("{to_key}{}", key.get(from_key.len()..).unwrap_or_default());
                let this = Arc::clone(&self.ctx);
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
                Ok((old, _, new, Err(e))) => {
                    let e = FsError::store(&old, e).context(format!("copy to {new}"));
                    failed = failed.or(Some(e));
                }
                Err(e) => {
                    let e = FsError::new(Errno::EIO, "copy").caused_by(e);
                    failed = failed.or(Some(e));
                }
            }
        }
        if let Some(e) = failed {
            for (_, _, new, _) in &copies {
                let _ = self.ctx.store.delete(new).await;
            }
            return Err(e);
        }
        if keys.is_empty() {
            self.ctx
                .store
                .put(&to_key, Bytes::new())
                .await
                .for_key(&to_key)?;
        }
        let mut deletes: JoinSet<Result<(), FsError>> = JoinSet::new();
        let mut failed = None;
        for (key, _) in keys.iter() {
            if deletes.len() >= limit
                && let Some(Ok(Err(e))) = deletes.join_next().await
            {
                failed = failed.or(Some(e));
            }
            let (this, key) = (Arc::clone(&self.ctx), key.clone());
            deletes.spawn(async move { this.store.delete(&key).await.for_key(&key) });
        }
        while let Some(r) = deletes.join_next().await {
            if let Ok(Err(e)) = r {
                failed = failed.or(Some(e));
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
}
