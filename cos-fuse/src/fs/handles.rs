//! Open handles: a file handle (the write state it shares, the object version it reads, its
//! read-ahead), a directory handle (the snapshot its offsets index), and the table of both by
//! handle number. Data only: opening, reading and closing are `fs/files.rs`'s and
//! `fs/namespace.rs`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::Mutex;

use super::read::{ReadAhead, Version};
use super::types::{DirEntry, Fh, Ino};
use super::write::WriteFile;

/// An open file.
#[derive(Debug)]
pub(crate) struct FileHandle {
    pub(crate) ino: Ino,
    /// The inode's write state, for handles opened for writing (and files this handle created).
    pub(crate) write: Option<Arc<WriteFile>>,
    pub(crate) rdwr: bool,
    /// The object version this handle reads when the inode has no write state.
    pub(crate) version: StdMutex<Option<Version>>,
    pub(crate) ra: Mutex<ReadAhead>,
}

/// An open directory: the snapshot its offsets index.
#[derive(Debug)]
pub(crate) struct DirHandle {
    pub(crate) ino: Ino,
    snapshot: StdMutex<Option<Arc<Vec<DirEntry>>>>,
}

/// The open handles of a mount, by number (files and directories share the numbers).
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) files: HashMap<Fh, Arc<FileHandle>>,
    pub(crate) dirs: HashMap<Fh, Arc<DirHandle>>,
    next: Fh,
}

impl Handles {
    pub(crate) fn new() -> Self {
        Handles {
            files: HashMap::new(),
            dirs: HashMap::new(),
            next: 1,
        }
    }

    /// A handle number never given out before.
    pub(crate) fn next_fh(&mut self) -> Fh {
        let fh = self.next;
        self.next += 1;
        fh
    }
}

impl DirHandle {
    pub(crate) fn new(ino: Ino) -> Self {
        DirHandle {
            ino,
            snapshot: StdMutex::new(None),
        }
    }

    pub(crate) fn snapshot(&self) -> Option<Arc<Vec<DirEntry>>> {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_snapshot(&self, s: Arc<Vec<DirEntry>>) {
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
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
