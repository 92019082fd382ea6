//! Directory handles and listings: opendir, readdir and releasedir, and the listing of a
//! directory (every page of a delimited LIST). A handle reads a snapshot of the listing, so its
//! offsets stay stable while it is open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::error::{ForKey, FsError};
use super::handles::DirHandle;
use super::paths::{child, listable, split, synthetic_ino};
use super::state::Inner;
use super::table::Entry;
use super::types::{DirEntry, Fh, FileKind, Ino, ROOT_INO};
use crate::errno::Errno;
use crate::store::ObjectStore;

impl<S: ObjectStore> Inner<S> {
    /// Every entry of directory `path` (all pages), and whether its marker exists.
    async fn list_dir(
        self: &Arc<Self>,
        path: &str,
    ) -> Result<(BTreeMap<String, Entry>, bool), FsError> {
        let dkey = self.dir_key(path);
        let mut entries = BTreeMap::new();
        let mut has_marker = false;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ctx
                .store
                .list(&dkey, Some("/"), token.as_deref(), None)
                .await
                .for_key(&dkey)?;
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

    pub(crate) fn opendir(&self, ino: Ino) -> Result<Fh, Errno> {
        self.dir_path(ino)?;
        let fh = {
            let mut h = self.handles();
            let fh = h.next_fh();
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
    ) -> Result<Vec<DirEntry>, FsError> {
        let h = self.handles().dirs.get(&fh).cloned().ok_or(Errno::EBADF)?;
        if h.ino != ino {
            return Err(Errno::EBADF.into());
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
    async fn snapshot_dir(self: &Arc<Self>, ino: Ino) -> Result<Vec<DirEntry>, FsError> {
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
                let until = Instant::now() + self.ctx.cfg.list_ttl;
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
