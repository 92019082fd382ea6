//! Open handles: a file handle (the write state it shares, the object version it reads, its
//! read-ahead), a directory handle (the window of its listing it holds and where the listing
//! continues), and the table of both by handle number. Data only: opening, reading and closing
//! are `fs/files.rs`'s, `fs/namespace.rs`'s and `fs/readdir.rs`'s.
//!
//! A handle number is `generation << 40 | n`: `n` counts this process's handles from 1, and the
//! generation is 0 for a fresh mount and changes at every resume (`fs/inode_journal.rs` keeps
//! it), so a resumed process never gives out a number the kernel still holds from its
//! predecessor, and tells those inherited numbers from its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::Mutex;

use super::read::{ReadAhead, Version};
use super::table::Entry;
use super::types::{DirEntry, Fh, Ino};
use super::write::WriteFile;

/// An open file.
#[derive(Debug)]
pub(crate) struct FileHandle {
    pub(crate) ino: Ino,
    /// The inode's write state, for handles opened for writing (and files this handle created).
    pub(crate) write: Option<Arc<WriteFile>>,
    pub(crate) rdwr: bool,
    /// Opened by this process for a number its predecessor gave out (`fs/files.rs`): it reads,
    /// and a write through it fails (what was written through it died with that process).
    pub(crate) inherited: bool,
    /// The object version this handle reads when the inode has no write state.
    pub(crate) version: StdMutex<Option<Version>>,
    pub(crate) ra: Mutex<ReadAhead>,
}

/// An open directory: the part of its listing it holds (`fs/readdir.rs` reads it).
#[derive(Debug)]
pub(crate) struct DirHandle {
    pub(crate) ino: Ino,
    /// Held while a readdir reads it, across the LIST of the next page.
    pub(crate) cursor: Mutex<DirCursor>,
}

/// Where a directory handle's listing stands: the window of entries it holds (offsets
/// `first..first + window.len()`) and where the rest comes from.
#[derive(Debug, Default)]
pub(crate) struct DirCursor {
    /// The directory's path when the listing started.
    pub(crate) path: String,
    /// The offset of `window[0]`; 0 before the first readdir.
    pub(crate) first: u64,
    pub(crate) window: Vec<DirEntry>,
    pub(crate) source: DirSource,
}

/// Where the entries after a directory handle's window come from.
#[derive(Debug, Default)]
pub(crate) enum DirSource {
    /// A fresh cached listing (shared with the cache, not copied), after the name `after`.
    Cached {
        entries: Arc<BTreeMap<String, Entry>>,
        after: Option<String>,
    },
    /// The store's delimited LIST.
    Store(StorePos),
    /// Nothing after the window (also before the first readdir).
    #[default]
    Done,
}

/// How far a directory handle has read the store's LIST.
#[derive(Debug, Default)]
pub(crate) struct StorePos {
    /// The continuation token of the next page; `None` before the first.
    pub(crate) token: Option<String>,
    /// The greatest key or common prefix listed so far.
    pub(crate) last_key: Option<String>,
    /// Files listed but not shown yet: a directory of the same name (`name/`, which sorts
    /// after `name` and anything `name` followed by a byte below `/`) may still come, and wins.
    /// Each is a prefix of `last_key`, so there are at most as many as its length.
    pub(crate) held: Vec<(String, Entry)>,
    /// Whether the directory's marker was listed (it sorts first).
    pub(crate) has_marker: bool,
    /// The generation of the listing cache entry this listing fills, while it may.
    pub(crate) cache: Option<u64>,
}

/// The open handles of a mount, by number (files and directories share the numbers).
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) files: HashMap<Fh, Arc<FileHandle>>,
    pub(crate) dirs: HashMap<Fh, Arc<DirHandle>>,
    next: Fh,
    generation: u64,
    /// Whether this process took over a mount from a previous one.
    resumed: bool,
}

/// The bits of a handle number that count one process's handles.
const COUNTER_BITS: u32 = 40;

impl Handles {
    /// The handles of a process whose numbers carry `generation`; `resumed` when it took over
    /// a mount whose previous process gave out numbers the kernel may still hold.
    pub(crate) fn new(generation: u32, resumed: bool) -> Self {
        let generation = u64::from(generation);
        Handles {
            files: HashMap::new(),
            dirs: HashMap::new(),
            next: (generation << COUNTER_BITS) | 1,
            generation,
            resumed,
        }
    }

    /// A handle number never given out before.
    pub(crate) fn next_fh(&mut self) -> Fh {
        let fh = self.next;
        self.next += 1;
        fh
    }

    /// Whether `fh`, which this process does not have open, is one a previous process of a
    /// resumed mount gave out (not one this process gave out and closed).
    pub(crate) fn inherited(&self, fh: Fh) -> bool {
        self.resumed && fh >> COUNTER_BITS != self.generation
    }
}

impl DirHandle {
    pub(crate) fn new(ino: Ino) -> Self {
        DirHandle {
            ino,
            cursor: Mutex::new(DirCursor::default()),
        }
    }
}

impl DirCursor {
    /// Entries this handle holds itself (a cached listing it reads is the cache's).
    #[cfg(test)]
    pub(crate) fn held_entries(&self) -> usize {
        let held = match &self.source {
            DirSource::Store(pos) => pos.held.len(),
            DirSource::Cached { .. } | DirSource::Done => 0,
        };
        self.window.len() + held
    }
}

impl FileHandle {
    /// A handle of file `ino`: with the inode's write state `write` (for writing), reading
    /// `version` (when there is no write state), with a read-ahead window of `initial_window`.
    pub(crate) fn new(
        ino: Ino,
        write: Option<Arc<WriteFile>>,
        rdwr: bool,
        version: Option<Version>,
        initial_window: u64,
    ) -> Self {
        FileHandle {
            ino,
            write,
            rdwr,
            inherited: false,
            version: StdMutex::new(version),
            ra: Mutex::new(ReadAhead::new(initial_window)),
        }
    }

    pub(crate) fn version(&self) -> Option<Version> {
        self.version
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_version(&self, v: Version) {
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }
}
