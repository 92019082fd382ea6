//! The inode table and the metadata caches: inode numbers by path, attributes with their expiry,
//! negative entries and directory listings. Synchronous, behind one mutex; it must never call
//! the store (the file-system operations do, and record what they learn here). With an inode
//! journal (`fs/inode_journal.rs`), every change of which inode a path is goes to it, and a table
//! can start from one ([`Table::start`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::inode_journal::{self, Event, InodeJournal, Mapping};
use super::paths::{subtree, under};
use super::types::{FileKind, Ino, ROOT_INO};
use super::write::WriteFile;

/// What is known of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) kind: FileKind,
    pub(crate) size: u64,
    pub(crate) mtime: SystemTime,
    pub(crate) etag: Option<String>,
}

impl Meta {
    /// The listing entry of what `self` describes.
    pub(crate) fn entry(&self) -> Entry {
        Entry {
            kind: self.kind,
            size: self.size,
            mtime: self.mtime,
            etag: self.etag.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inode {
    pub(crate) path: String,
    pub(crate) meta: Meta,
    pub(crate) valid_until: Instant,
    /// Kernel references (lookups not yet forgotten).
    pub(crate) lookups: u64,
    /// Open handles.
    pub(crate) open: u32,
    pub(crate) write: Option<Arc<WriteFile>>,
    /// Directories: whether a `dir/` marker object is known to exist.
    pub(crate) has_marker: Option<bool>,
}

/// The most negative entries kept; beyond it they are all dropped.
const MAX_NEGATIVE: usize = 100_000;
/// The most inodes the kernel forgot that are kept for their still valid attributes.
const MAX_IDLE: usize = 100_000;
/// The lookup count of an inode a resumed table loaded from its journal: the kernel's count is
/// unknown, and no run of FORGETs can bring this one to 0, so such an inode stays until unmount.
pub(crate) const RESUMED_LOOKUPS: u64 = 1 << 62;

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) inodes: HashMap<Ino, Inode>,
    paths: BTreeMap<String, Ino>,
    next_ino: Ino,
    negative: HashMap<String, Instant>,
    /// Clean inodes the kernel forgot while their attributes were still valid, oldest first:
    /// kept until then, so a lookup after the kernel dropped its dentries (memory pressure,
    /// `drop_caches`) costs no round trip. Entries may be stale; [`Table::sweep`] checks.
    idle: VecDeque<(Instant, Ino)>,
    pub(crate) listings: Listings,
    /// Files created in this mount and not yet committed.
    pub(crate) pending_new: BTreeSet<String>,
    /// Where changes of the mapping are recorded, if anywhere.
    journal: Option<InodeJournal>,
}

impl Table {
    pub(crate) fn new(root: Meta, max_list_entries: usize) -> Self {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT_INO,
            Inode {
                path: String::new(),
                meta: root,
                valid_until: Instant::now(),
                lookups: 1,
                open: 0,
                write: None,
                has_marker: Some(true),
            },
        );
        let mut paths = BTreeMap::new();
        paths.insert(String::new(), ROOT_INO);
        Table {
            inodes,
            paths,
            next_ino: ROOT_INO + 1,
            negative: HashMap::new(),
            idle: VecDeque::new(),
            listings: Listings::new(max_list_entries),
            pending_new: BTreeSet::new(),
            journal: None,
        }
    }

    /// The table of a mount, and the generation of its handle numbers (`fs/handles.rs`). With
    /// `journal`, changes are recorded there; with `resume`, the table starts from what that
    /// journal holds (only the root without one, or with one that cannot be read: logged) and the
    /// generation is the next one after the journal's. Without `resume`, the generation is 0 and
    /// whatever the journal held is replaced.
    pub(crate) fn start(
        root: Meta,
        max_list_entries: usize,
        journal: Option<&Path>,
        resume: bool,
    ) -> (Self, u32) {
        let mut t = Table::new(root, max_list_entries);
        let generation = if !resume {
            0
        } else {
            match journal.map(|p| (p, inode_journal::load(p))) {
                Some((path, Ok(loaded))) => {
                    if loaded.skipped > 0 {
                        tracing::warn!(
                            journal = %path.display(),
                            bytes = loaded.skipped,
                            "the inode journal ends with a cut or damaged record; resuming from \
                             the records before it"
                        );
                    }
                    let generation = inode_journal::next_generation(loaded.mapping.generation);
                    t.load(loaded.mapping);
                    tracing::info!(
                        inodes = t.inodes.len() - 1,
                        next_ino = t.next_ino,
                        generation,
                        "resumed the inode table from its journal"
                    );
                    generation
                }
                Some((path, Err(e))) => {
                    tracing::warn!(
                        journal = %path.display(),
                        error = %e,
                        "cannot read the inode journal; resuming with an empty inode table"
                    );
                    inode_journal::unknown_generation()
                }
                None => {
                    tracing::warn!(
                        "resuming without an inode journal (no inode_journal configured): the \
                         kernel's inode numbers are unknown"
                    );
                    inode_journal::unknown_generation()
                }
            }
        };
        if let Some(path) = journal {
            match InodeJournal::create(path, generation, t.next_ino, t.live_paths()) {
                Ok(j) => t.journal = Some(j),
                Err(e) => tracing::warn!(
                    journal = %path.display(),
                    error = %e,
                    "cannot write the inode journal; a restarted daemon will not resume this \
                     mount's inode numbers"
                ),
            }
        }
        (t, generation)
    }

    /// Maps every path of `m` to its inode, with unknown attributes and [`RESUMED_LOOKUPS`].
    fn load(&mut self, m: Mapping) {
        let now = Instant::now();
        for (path, (ino, kind)) in m.paths {
            if self.inodes.contains_key(&ino) {
                continue;
            }
            let meta = Meta {
                kind,
                size: 0,
                mtime: SystemTime::UNIX_EPOCH,
                etag: None,
            };
            self.inodes.insert(
                ino,
                Inode {
                    path: path.clone(),
                    meta,
                    valid_until: now,
                    lookups: RESUMED_LOOKUPS,
                    open: 0,
                    write: None,
                    has_marker: None,
                },
            );
            self.next_ino = self.next_ino.max(ino.saturating_add(1));
            self.paths.insert(path, ino);
        }
        self.next_ino = self.next_ino.max(m.next_ino);
    }

    /// Every mapped path but the root's, with its inode and kind: what a journal snapshot holds.
    fn live_paths(&self) -> impl Iterator<Item = (&str, Ino, FileKind)> {
        self.paths.iter().filter_map(|(p, ino)| {
            let kind = self.inodes.get(ino)?.meta.kind;
            (*ino != ROOT_INO).then_some((p.as_str(), *ino, kind))
        })
    }

    /// Records `event` in the journal, compacting it when it has grown enough: call it once the
    /// change is made, so a compaction's snapshot holds it.
    fn journal(&mut self, event: Event<'_>) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        j.append(event);
        if j.wants_compaction(self.paths.len()) {
            let next_ino = self.next_ino;
            let Some(mut j) = self.journal.take() else {
                return;
            };
            j.compact(next_ino, self.live_paths());
            self.journal = Some(j);
        }
    }

    pub(crate) fn ino_of(&self, path: &str) -> Option<Ino> {
        self.paths.get(path).copied()
    }

    pub(crate) fn inode_at(&self, path: &str) -> Option<&Inode> {
        self.ino_of(path).and_then(|i| self.inodes.get(&i))
    }

    /// Whether `ino` is still reachable by its path.
    pub(crate) fn is_linked(&self, ino: Ino) -> bool {
        self.inodes
            .get(&ino)
            .is_some_and(|i| self.paths.get(&i.path) == Some(&ino))
    }

    /// Records `meta` for `path`, reusing its inode when the kind matches; returns the inode.
    pub(crate) fn upsert(&mut self, path: &str, meta: Meta, valid_until: Instant) -> Ino {
        self.negative.remove(path);
        if let Some(ino) = self.ino_of(path) {
            if let Some(inode) = self.inodes.get_mut(&ino)
                && inode.meta.kind == meta.kind
            {
                // Keep the pending marker knowledge of directories.
                inode.meta = meta;
                inode.valid_until = valid_until;
                return ino;
            }
            self.unmap(path);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let kind = meta.kind;
        self.inodes.insert(
            ino,
            Inode {
                path: path.to_string(),
                meta,
                valid_until,
                lookups: 0,
                open: 0,
                write: None,
                has_marker: None,
            },
        );
        self.paths.insert(path.to_string(), ino);
        self.journal(Event::Map { ino, kind, path });
        ino
    }

    /// Removes `path` from the namespace; its inode lives on while referenced.
    pub(crate) fn unmap(&mut self, path: &str) -> Option<Ino> {
        let ino = self.paths.remove(path)?;
        self.journal(Event::Unmap { path });
        self.pending_new.remove(path);
        self.maybe_drop(ino);
        Some(ino)
    }

    pub(crate) fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookups = inode.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    /// Drops an inode nothing refers to any more, or keeps it idle while its attributes are
    /// valid.
    pub(crate) fn maybe_drop(&mut self, ino: Ino) {
        if ino == ROOT_INO {
            return;
        }
        let Some(inode) = self.inodes.get(&ino) else {
            return;
        };
        if inode.lookups > 0 || inode.open > 0 {
            return;
        }
        if let Some(w) = &inode.write {
            // Pending content keeps the inode (its handles are gone, it is being committed).
            if Arc::strong_count(w) > 1 {
                return;
            }
        }
        let now = Instant::now();
        if inode.write.is_none()
            && inode.valid_until > now
            && self.paths.get(&inode.path) == Some(&ino)
        {
            self.idle.push_back((inode.valid_until, ino));
        } else {
            self.remove_unused(ino);
        }
        self.sweep(now);
    }

    /// Drops idle inodes whose attributes expired (and the oldest beyond [`MAX_IDLE`]), unless
    /// they were looked up again meanwhile.
    fn sweep(&mut self, now: Instant) {
        while let Some(&(until, ino)) = self.idle.front() {
            if until > now && self.idle.len() <= MAX_IDLE {
                break;
            }
            self.idle.pop_front();
            let unused = self
                .inodes
                .get(&ino)
                .is_some_and(|i| i.lookups == 0 && i.open == 0 && i.write.is_none());
            if unused {
                self.remove_unused(ino);
            }
        }
    }

    fn remove_unused(&mut self, ino: Ino) {
        let Some(inode) = self.inodes.remove(&ino) else {
            return;
        };
        if self.paths.get(&inode.path) == Some(&ino) {
            self.paths.remove(&inode.path);
            self.pending_new.remove(&inode.path);
            self.journal(Event::Drop {
                ino,
                path: &inode.path,
            });
        }
    }

    /// Moves `from` and everything under it to `to`; returns the inodes moved with their new
    /// paths.
    pub(crate) fn rename_subtree(&mut self, from: &str, to: &str) -> Vec<(Ino, String)> {
        let mut moved = Vec::new();
        let mut replaced = Vec::new();
        for old in subtree(&self.paths, from) {
            let Some(ino) = self.paths.remove(&old) else {
                continue;
            };
            let new = format!("{to}{}", &old[from.len()..]);
            if let Some(previous) = self.paths.insert(new.clone(), ino) {
                replaced.push(previous);
            }
            if self.pending_new.remove(&old) {
                self.pending_new.insert(new.clone());
            }
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.path = new.clone();
            }
            self.negative.remove(&new);
            moved.push((ino, new));
        }
        self.journal(Event::Rename { from, to });
        for previous in replaced {
            self.maybe_drop(previous);
        }
        moved
    }

    /// Inodes at or under `dir` that have a write state.
    pub(crate) fn writes_under(&self, dir: &str) -> Vec<(Ino, Arc<WriteFile>)> {
        let below = under(dir);
        self.paths
            .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&below))
            .filter_map(|(_, ino)| {
                let w = self.inodes.get(ino)?.write.clone()?;
                Some((*ino, w))
            })
            .collect()
    }

    /// Names of uncommitted new files directly in `dir`.
    pub(crate) fn pending_in(&self, dir: &str) -> Vec<String> {
        let below = under(dir);
        self.pending_new
            .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
            .take_while(|p| p.starts_with(&below))
            .filter_map(|p| {
                let name = &p[below.len()..];
                (!name.contains('/')).then(|| name.to_string())
            })
            .collect()
    }

    /// Whether any uncommitted new file is under `dir`.
    pub(crate) fn pending_under(&self, dir: &str) -> bool {
        let below = under(dir);
        self.pending_new
            .range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|p| p.starts_with(&below))
    }

    pub(crate) fn set_negative(&mut self, path: &str, until: Instant) {
        if self.negative.len() >= MAX_NEGATIVE {
            self.negative.clear();
        }
        self.negative.insert(path.to_string(), until);
    }

    pub(crate) fn is_negative(&self, path: &str, now: Instant) -> bool {
        self.negative.get(path).is_some_and(|t| *t > now)
    }

    pub(crate) fn clear_negative(&mut self, path: &str) {
        self.negative.remove(path);
    }

    /// Forgets negative entries at or under `dir`.
    pub(crate) fn clear_negative_under(&mut self, dir: &str) {
        let below = under(dir);
        self.negative
            .retain(|p, _| p != dir && !p.starts_with(&below));
    }

    pub(crate) fn inode_count(&self) -> usize {
        self.inodes.len()
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: FileKind,
    pub(crate) size: u64,
    pub(crate) mtime: SystemTime,
    pub(crate) etag: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) entries: Arc<BTreeMap<String, Entry>>,
    pub(crate) until: Instant,
    /// Whether the directory's own `dir/` marker exists.
    pub(crate) has_marker: bool,
    generation: u64,
    /// Whether every page is in: a listing being filled page by page ([`Listings::begin`]) is
    /// never [`Listings::fresh`].
    complete: bool,
    /// Only the first pages, fetched for lookups (`fs/hints.rs`): it answers which names
    /// exist ([`Listings::known`]), never which do not, and is never [`Listings::fresh`].
    hint: bool,
}

/// Complete listings of directories, with a cap on their entries together (oldest evicted).
/// A directory handle fills one page by page as it reads ([`Listings::begin`],
/// [`Listings::extend`], [`Listings::finish`]); the entries it holds count against the same
/// cap, so a listing larger than the cap is given up, never held whole.
#[derive(Debug)]
pub(crate) struct Listings {
    map: HashMap<String, Listing>,
    order: VecDeque<(String, u64)>,
    total: usize,
    max: usize,
    generation: u64,
    /// When a lookup in each directory last went to the store ([`Listings::missed`]).
    misses: HashMap<String, Instant>,
}

/// The most directories whose last lookup miss is remembered.
const MISSES_KEPT: usize = 4096;

impl Listings {
    fn new(max: usize) -> Self {
        Listings {
            map: HashMap::new(),
            order: VecDeque::new(),
            total: 0,
            max,
            generation: 0,
            misses: HashMap::new(),
        }
    }

    /// `dir`'s whole listing while it is fresh.
    pub(crate) fn fresh(&self, dir: &str, now: Instant) -> Option<&Listing> {
        self.map
            .get(dir)
            .filter(|l| l.complete && !l.hint && l.until > now)
    }

    /// What a fresh listing or hint of `dir` says `name` is; `None` when none holds it.
    pub(crate) fn known(&self, dir: &str, name: &str, now: Instant) -> Option<&Entry> {
        self.map
            .get(dir)
            .filter(|l| l.complete && l.until > now)
            .and_then(|l| l.entries.get(name))
    }

    /// When `dir` holds a whole listing that expired and had at most `max_entries` entries,
    /// begins its refresh (`Inner::refresh_listing`) and returns the new listing's generation.
    pub(crate) fn refresh(&mut self, dir: &str, now: Instant, max_entries: usize) -> Option<u64> {
        let l = self.map.get(dir)?;
        let expired = l.complete && !l.hint && l.until <= now;
        (expired && l.entries.len() <= max_entries).then(|| self.begin(dir))
    }

    /// A lookup in `dir` had to ask the store. On the second within `window`, while `dir` has
    /// no listing, begins a hint of it and returns its generation for `Inner::fetch_hint`.
    pub(crate) fn missed(&mut self, dir: &str, now: Instant, window: Duration) -> Option<u64> {
        if self.map.contains_key(dir) {
            return None;
        }
        if self.misses.len() >= MISSES_KEPT {
            self.misses.retain(|_, at| now.duration_since(*at) < window);
            if self.misses.len() >= MISSES_KEPT {
                self.misses.clear();
            }
        }
        match self.misses.insert(dir.to_owned(), now) {
            Some(at) if now.duration_since(at) < window => {
                self.misses.remove(dir);
                Some(self.begin(dir))
            }
            _ => None,
        }
    }

    pub(crate) fn insert(
        &mut self,
        dir: &str,
        entries: Arc<BTreeMap<String, Entry>>,
        has_marker: bool,
        until: Instant,
    ) {
        self.invalidate(dir);
        let n = entries.len();
        if n > self.max {
            return;
        }
        while self.total + n > self.max {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .map
                .get(&old)
                .is_some_and(|l| l.generation == generation)
            {
                self.invalidate(&old);
            }
        }
        self.generation += 1;
        self.order.push_back((dir.to_string(), self.generation));
        self.total += n;
        self.map.insert(
            dir.to_string(),
            Listing {
                entries,
                until,
                has_marker,
                generation: self.generation,
                complete: true,
                hint: false,
            },
        );
    }

    /// Starts filling `dir`'s listing page by page (replacing what was cached); returns the
    /// generation [`Listings::extend`] and [`Listings::finish`] name it by.
    pub(crate) fn begin(&mut self, dir: &str) -> u64 {
        self.invalidate(dir);
        self.generation += 1;
        self.order.push_back((dir.to_string(), self.generation));
        self.map.insert(
            dir.to_string(),
            Listing {
                entries: Arc::new(BTreeMap::new()),
                until: Instant::now(),
                has_marker: false,
                generation: self.generation,
                complete: false,
                hint: false,
            },
        );
        self.generation
    }

    /// Whether `dir` holds the incomplete listing `generation`.
    fn filling(&self, dir: &str, generation: u64) -> bool {
        self.map
            .get(dir)
            .is_some_and(|l| l.generation == generation && !l.complete)
    }

    /// Adds a page of entries to the listing `generation` of `dir`, evicting older listings to
    /// stay under the cap. `false` when that listing is gone (changed, evicted, replaced) or
    /// would pass the cap by itself: then it is dropped and nothing more need be added.
    pub(crate) fn extend<'a>(
        &mut self,
        dir: &str,
        generation: u64,
        entries: impl ExactSizeIterator<Item = (&'a String, &'a Entry)>,
    ) -> bool {
        let n = entries.len();
        let Some(own) = self
            .map
            .get(dir)
            .filter(|l| l.generation == generation && !l.complete)
            .map(|l| l.entries.len())
        else {
            return false;
        };
        if own + n > self.max {
            self.invalidate(dir);
            return false;
        }
        // Each listing in the order is looked at once at most; this one goes to the back.
        let mut rounds = self.order.len();
        while self.total + n > self.max && rounds > 0 {
            rounds -= 1;
            let Some((old, old_generation)) = self.order.pop_front() else {
                break;
            };
            if old_generation == generation && old == dir {
                self.order.push_back((old, old_generation));
                continue;
            }
            if self
                .map
                .get(&old)
                .is_some_and(|l| l.generation == old_generation)
            {
                self.invalidate(&old);
            }
        }
        if self.total + n > self.max {
            self.invalidate(dir);
            return false;
        }
        let Some(l) = self.map.get_mut(dir) else {
            return false;
        };
        let map = Arc::make_mut(&mut l.entries);
        for (name, entry) in entries {
            if map.insert(name.clone(), entry.clone()).is_none() {
                self.total += 1;
            }
        }
        true
    }

    /// Completes the listing `generation` of `dir`: fresh until `until`.
    pub(crate) fn finish(&mut self, dir: &str, generation: u64, has_marker: bool, until: Instant) {
        if !self.filling(dir, generation) {
            return;
        }
        if let Some(l) = self.map.get_mut(dir) {
            l.complete = true;
            l.has_marker = has_marker;
            l.until = until;
        }
    }

    /// Completes the hint `generation` of `dir` (first pages only): it answers lookups of the
    /// names it holds until `until`.
    pub(crate) fn finish_hint(
        &mut self,
        dir: &str,
        generation: u64,
        has_marker: bool,
        until: Instant,
    ) {
        self.finish(dir, generation, has_marker, until);
        if let Some(l) = self.map.get_mut(dir).filter(|l| l.generation == generation) {
            l.hint = true;
        }
    }

    /// Drops the incomplete listing `generation` of `dir` (its reader stopped).
    pub(crate) fn abandon(&mut self, dir: &str, generation: u64) {
        if self.filling(dir, generation) {
            self.invalidate(dir);
        }
    }

    pub(crate) fn invalidate(&mut self, dir: &str) {
        if let Some(l) = self.map.remove(dir) {
            self.total = self.total.saturating_sub(l.entries.len());
        }
    }

    /// Drops the listings of `dir` and of every directory under it.
    pub(crate) fn invalidate_under(&mut self, dir: &str) {
        let below = under(dir);
        let gone: Vec<String> = self
            .map
            .keys()
            .filter(|d| {
                d.as_str() == dir || (!dir.is_empty() && d.starts_with(&below)) || dir.is_empty()
            })
            .cloned()
            .collect();
        for d in gone {
            self.invalidate(&d);
        }
    }

    /// Records an entry created or changed by this mount in `dir`'s listing, if cached. A
    /// listing still being filled is dropped instead: a page listed before the change could
    /// undo it.
    pub(crate) fn upsert(&mut self, dir: &str, name: &str, entry: Entry) {
        if self.map.get(dir).is_some_and(|l| !l.complete) {
            self.invalidate(dir);
            return;
        }
        if let Some(l) = self.map.get_mut(dir) {
            let entries = Arc::make_mut(&mut l.entries);
            if entries.insert(name.to_string(), entry).is_none() {
                self.total += 1;
            }
        }
    }

    /// Removes an entry this mount deleted from `dir`'s listing, if cached (a listing still
    /// being filled is dropped, as for [`Listings::upsert`]).
    pub(crate) fn remove(&mut self, dir: &str, name: &str) {
        if self.map.get(dir).is_some_and(|l| !l.complete) {
            self.invalidate(dir);
            return;
        }
        if let Some(l) = self.map.get_mut(dir)
            && Arc::make_mut(&mut l.entries).remove(name).is_some()
        {
            self.total -= 1;
        }
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta(kind: FileKind) -> Meta {
        Meta {
            kind,
            size: 0,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
        }
    }

    fn entries(n: usize) -> Arc<BTreeMap<String, Entry>> {
        Arc::new(
            (0..n)
                .map(|i| {
                    (
                        format!("f{i}"),
                        Entry {
                            kind: FileKind::File,
                            size: 0,
                            mtime: SystemTime::UNIX_EPOCH,
                            etag: None,
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn listings_stay_under_the_entry_cap() {
        let mut l = Listings::new(10);
        let later = Instant::now() + Duration::from_secs(60);
        l.insert("a", entries(4), false, later);
        l.insert("b", entries(4), false, later);
        l.insert("c", entries(4), false, later);
        assert!(l.fresh("a", Instant::now()).is_none(), "oldest evicted");
        assert!(l.fresh("c", Instant::now()).is_some());
        assert_eq!(l.total(), 8);
        l.insert("big", entries(11), false, later);
        assert!(l.fresh("big", Instant::now()).is_none());
        l.remove("b", "f0");
        assert_eq!(l.total(), 7);
        l.invalidate_under("");
        assert_eq!(l.total(), 0);
    }

    #[test]
    fn renaming_a_subtree_moves_every_inode_under_it() {
        let mut t = Table::new(meta(FileKind::Dir), 100);
        let now = Instant::now();
        let d = t.upsert("d", meta(FileKind::Dir), now);
        let f = t.upsert("d/x/f", meta(FileKind::File), now);
        let other = t.upsert("dd", meta(FileKind::File), now);
        for i in [d, f, other] {
            t.inodes.get_mut(&i).unwrap().lookups = 1;
        }
        let moved = t.rename_subtree("d", "e/d");
        assert_eq!(moved.len(), 2);
        assert_eq!(t.ino_of("e/d/x/f"), Some(f));
        assert_eq!(t.ino_of("e/d"), Some(d));
        assert_eq!(t.ino_of("dd"), Some(other));
        assert_eq!(t.ino_of("d"), None);
        t.forget(f, 1);
        t.unmap("e/d/x/f");
        assert!(!t.inodes.contains_key(&f));
    }
}
