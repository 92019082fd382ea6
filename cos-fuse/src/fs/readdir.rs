//! Directory handles and listings: opendir, readdir and releasedir, and reading a directory's
//! delimited LIST one page at a time as the kernel reads the handle.
//!
//! A handle numbers the entries it shows from 1 (`.` and `..` are 1 and 2) in the order it
//! shows them, and holds only a *window* of them: `.`/`..` and the first page, then each later
//! page in turn. A readdir at an offset inside the window is served from it; one at its end
//! fetches the next page (`max-keys` 1000), which replaces the window. So offsets are stable and
//! monotonic for one handle; offset 0 (`rewinddir`) starts the listing again, and an offset
//! before the window (a `seekdir` back) starts it again and reads forward to that offset, which
//! gives the same entries unless the directory changed meanwhile.
//!
//! # Memory
//!
//! What a handle holds is bounded by a constant, not charged to `memory_budget` (a handle can
//! stay open and idle for as long as its process likes, which a budget's waiting users cannot
//! afford): one page's entries (at most 1000), the files of earlier pages held back to see
//! whether a directory of the same name follows (each a prefix of the last key listed, so at
//! most 1024), the continuation token, and a reply's copy of at most [`MAX_REPLY`] entries. A
//! handle reading a fresh cached listing shares the cache's map instead of copying it. The pages
//! read are also added to the listing cache, which keeps its own cap
//! (`list_cache_max_entries`, all listings together): a directory larger than that is not
//! cached, and lookups after its readdir go to the store.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry as Slot;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use super::error::{ForKey, FsError};
use super::handles::{DirCursor, DirHandle, DirSource, StorePos};
use super::hints::{page_entries, page_last};
use super::paths::{child, split, synthetic_ino};
use super::state::Inner;
use super::table::Entry;
use super::types::{DirEntry, Fh, FileKind, Ino, ROOT_INO};
use crate::errno::Errno;
use crate::store::{ListPage, ObjectStore};

/// Keys asked of each LIST page (the S3 maximum).
const PAGE_KEYS: u32 = 1000;
/// The most entries one readdir returns: more than a kernel reply buffer (a page) holds.
pub(crate) const MAX_REPLY: usize = 256;

impl<S: ObjectStore> Inner<S> {
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

    /// The directory handle `fh`: this process's, or for a number the previous process of a
    /// resumed mount gave out, a handle of `ino` opened now under that number (which reads the
    /// listing again up to the offset asked). ESTALE when this process does not know `ino`.
    fn dir_handle(&self, ino: Ino, fh: Fh) -> Result<Arc<DirHandle>, Errno> {
        {
            let hs = self.handles();
            if let Some(h) = hs.dirs.get(&fh) {
                return Ok(Arc::clone(h));
            }
            if !hs.inherited(fh) {
                return Err(Errno::EBADF);
            }
        }
        self.dir_path(ino).map_err(|e| match e {
            Errno::ENOENT => Errno::ESTALE,
            e => e,
        })?;
        let (h, opened) = match self.handles().dirs.entry(fh) {
            Slot::Occupied(e) => (Arc::clone(e.get()), false),
            Slot::Vacant(e) => (Arc::clone(e.insert(Arc::new(DirHandle::new(ino)))), true),
        };
        if opened && let Some(inode) = self.table().inodes.get_mut(&ino) {
            inode.open += 1;
        }
        Ok(h)
    }

    pub(crate) fn releasedir(&self, fh: Fh) {
        let Some(h) = self.handles().dirs.remove(&fh) else {
            return;
        };
        let mut t = self.table();
        // A listing it was filling will not be finished (a readdir still running finds it
        // gone, or gives it up itself).
        if let Ok(c) = h.cursor.try_lock()
            && let DirSource::Store(StorePos {
                cache: Some(generation),
                ..
            }) = &c.source
        {
            t.listings.abandon(&c.path, *generation);
        }
        if let Some(inode) = t.inodes.get_mut(&h.ino) {
            inode.open = inode.open.saturating_sub(1);
        }
        t.maybe_drop(h.ino);
    }

    /// The entries after `offset` that the handle holds or the next page brings (at most
    /// [`MAX_REPLY`]); none at the end of the directory.
    pub(crate) async fn readdir(
        self: &Arc<Self>,
        ino: Ino,
        fh: Fh,
        offset: u64,
    ) -> Result<Vec<DirEntry>, FsError> {
        let h = self.dir_handle(ino, fh)?;
        if h.ino != ino {
            return Err(Errno::EBADF.into());
        }
        let mut c = h.cursor.lock().await;
        let wanted = offset.saturating_add(1);
        if offset == 0 || c.first == 0 || wanted < c.first {
            self.restart(ino, &mut c)?;
            let more = self.next_entries(&mut c, 3).await?;
            c.window.extend(more);
        }
        loop {
            let end = c.first + c.window.len() as u64;
            if wanted < end {
                let start = usize::try_from(wanted - c.first).unwrap_or(usize::MAX);
                return Ok(c
                    .window
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .take(MAX_REPLY)
                    .cloned()
                    .collect());
            }
            if matches!(c.source, DirSource::Done) {
                return Ok(Vec::new());
            }
            let more = self.next_entries(&mut c, end).await?;
            c.first = end;
            c.window = more;
        }
    }

    /// Starts the handle's listing again: `.` and `..`, read from a fresh cached listing if
    /// there is one, else from the store (filling the cache as it goes).
    fn restart(&self, ino: Ino, c: &mut DirCursor) -> Result<(), Errno> {
        let path = self.dir_path(ino)?;
        let mut t = self.table();
        if let DirSource::Store(StorePos {
            cache: Some(generation),
            ..
        }) = &c.source
        {
            t.listings.abandon(&c.path, *generation);
        }
        let source = match t.listings.fresh(&path, Instant::now()) {
            Some(l) => DirSource::Cached {
                entries: Arc::clone(&l.entries),
                after: None,
            },
            None => DirSource::Store(StorePos {
                cache: Some(t.listings.begin(&path)),
                ..StorePos::default()
            }),
        };
        let parent_ino = if path.is_empty() {
            ROOT_INO
        } else {
            t.ino_of(split(&path).0).unwrap_or(ROOT_INO)
        };
        c.window = vec![
            DirEntry {
                ino,
                offset: 1,
                kind: FileKind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: parent_ino,
                offset: 2,
                kind: FileKind::Dir,
                name: "..".into(),
            },
        ];
        c.first = 1;
        c.path = path;
        c.source = source;
        Ok(())
    }

    /// The next entries of the listing, numbered from `offset`; advances the cursor's source
    /// only once they are in hand (a failed LIST can be retried).
    async fn next_entries(
        self: &Arc<Self>,
        c: &mut DirCursor,
        offset: u64,
    ) -> Result<Vec<DirEntry>, FsError> {
        let DirCursor { path, source, .. } = c;
        let names = match source {
            DirSource::Done => return Ok(Vec::new()),
            DirSource::Cached { entries, after } => {
                let lower = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut range = entries.range::<str, _>((lower, Bound::Unbounded));
                let mut names: BTreeMap<String, FileKind> = range
                    .by_ref()
                    .take(PAGE_KEYS as usize)
                    .map(|(n, e)| (n.clone(), e.kind))
                    .collect();
                let last = names.keys().next_back().cloned();
                let exhausted = range.next().is_none();
                let upper = if exhausted { None } else { last.as_deref() };
                self.add_pending(path, &mut names, after.as_deref(), upper, &[]);
                if exhausted {
                    *source = DirSource::Done;
                } else {
                    *after = last;
                }
                names
            }
            DirSource::Store(pos) => {
                let dkey = self.dir_key(path);
                let page = self
                    .ctx
                    .store
                    .list(&dkey, Some("/"), pos.token.as_deref(), Some(PAGE_KEYS))
                    .await
                    .for_key(&dkey)?;
                let next_token = page.next_token.clone();
                let names = self.take_page(path, &dkey, pos, page);
                match next_token {
                    Some(t) => pos.token = Some(t),
                    None => *source = DirSource::Done,
                }
                names
            }
        };
        let t = self.table();
        Ok(names
            .into_iter()
            .zip(offset..)
            .map(|((name, kind), offset)| {
                let p = child(path, &name);
                let ino = t.ino_of(&p).unwrap_or_else(|| synthetic_ino(&p));
                DirEntry {
                    ino,
                    offset,
                    kind,
                    name,
                }
            })
            .collect())
    }

    /// The names to show of one LIST page of directory `path` (key prefix `dkey`), with the
    /// files held back from earlier pages that are now known to be files; records the page in
    /// the listing cache this listing fills and holds back the files a later page may turn
    /// into directories. Does not move `pos.token`.
    fn take_page(
        &self,
        path: &str,
        dkey: &str,
        pos: &mut StorePos,
        page: ListPage,
    ) -> BTreeMap<String, FileKind> {
        let first_page = pos.token.is_none();
        let page_last = page_last(&page);
        let more = page.next_token.is_some();
        let mut listed: BTreeMap<String, Entry> = pos.held.drain(..).collect();
        let (entries, has_marker) = page_entries(&page, dkey, self.mount_time);
        pos.has_marker |= has_marker;
        // The held files are files unless this page has their directories: those win.
        listed.extend(entries);
        if more {
            // `name/` sorts after the page's last key: it may be on a later page.
            let undecided = |name: &str| {
                page_last
                    .as_deref()
                    .is_none_or(|last| format!("{dkey}{name}/").as_str() > last)
            };
            let held: Vec<String> = listed
                .iter()
                .filter(|(n, e)| e.kind == FileKind::File && undecided(n))
                .map(|(n, _)| n.clone())
                .collect();
            for name in held {
                if let Some(e) = listed.remove(&name) {
                    pos.held.push((name, e));
                }
            }
        }
        let previous_last = pos.last_key.take();
        let mut t = self.table();
        if first_page
            && let Some(ino) = t.ino_of(path)
            && ino != ROOT_INO
            && let Some(inode) = t.inodes.get_mut(&ino)
        {
            inode.has_marker = Some(pos.has_marker);
        }
        if let Some(generation) = pos.cache {
            if !t.listings.extend(path, generation, listed.iter()) {
                pos.cache = None;
            } else if !more {
                let until = Instant::now() + self.ctx.cfg.list_ttl;
                t.listings.finish(path, generation, pos.has_marker, until);
            }
        }
        drop(t);
        let mut names: BTreeMap<String, FileKind> =
            listed.into_iter().map(|(n, e)| (n, e.kind)).collect();
        let rel = |k: Option<&str>| k.map(|k| k.strip_prefix(dkey).unwrap_or(k).to_string());
        let lower = rel(previous_last.as_deref());
        let upper = if more {
            rel(page_last.as_deref())
        } else {
            None
        };
        self.add_pending(
            path,
            &mut names,
            lower.as_deref(),
            upper.as_deref(),
            &pos.held,
        );
        pos.last_key = page_last.or(previous_last);
        names
    }

    /// Adds the uncommitted new files of directory `path` named after `lower` and up to
    /// `upper` (unbounded when `None`) to `names`, except those `held` for later.
    fn add_pending(
        &self,
        path: &str,
        names: &mut BTreeMap<String, FileKind>,
        lower: Option<&str>,
        upper: Option<&str>,
        held: &[(String, Entry)],
    ) {
        for name in self.table().pending_in(path) {
            let in_range =
                lower.is_none_or(|l| name.as_str() > l) && upper.is_none_or(|u| name.as_str() <= u);
            if in_range && !held.iter().any(|(h, _)| *h == name) {
                names.entry(name).or_insert(FileKind::File);
            }
        }
    }
}
