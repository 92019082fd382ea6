//! The state directory: one JSON record per mount under `mounts/`, kept in memory too, and the
//! per-mount files the daemons write under `logs/` (with `.log.1`, the rotated log) and `stats/`. A restarted host reads the
//! records back to re-adopt the daemons that outlived it. It only keeps and names files: it never
//! looks at processes or mounts.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use csi_common::csi::server::ServeError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the state directory keeps per mount. The start time tells a recorded process from a later
/// one that reused its PID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) target: PathBuf,
    pub(super) kind: String,
    pub(super) fingerprint: String,
    pub(super) pid: u32,
    pub(super) start_ticks: u64,
}

/// The name of everything the host keeps for the mount at `target`: a hash, so any path makes a
/// safe file name.
pub(super) fn key_of(target: &Path) -> String {
    let digest = Sha256::digest(target.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..12])
}

/// Writes `body` to `path` whole, private to root: a 0600 temporary file beside it, synced, then
/// renamed over it, so a reader sees the old file or the new one, never a part.
pub(super) fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut file, body)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Record {
    /// The record of the daemon `pid` (started at `start_ticks`) serving `request`.
    pub(super) fn of(
        request: &crate::protocol::MountRequest,
        pid: u32,
        start_ticks: u64,
    ) -> Record {
        Record {
            target: request.target.clone(),
            kind: request.kind.clone(),
            fingerprint: request.fingerprint.clone(),
            pid,
            start_ticks,
        }
    }
}

/// The records of every mount, on disk and in memory.
#[derive(Debug)]
pub(super) struct Records {
    state_dir: PathBuf,
    records: Mutex<BTreeMap<PathBuf, Record>>,
}

impl Records {
    /// Creates the state directory's parts (private to root) and reads the records left there.
    pub(super) fn open(state_dir: &Path) -> Result<Records, ServeError> {
        for dir in ["mounts", "logs", "stats", "inodes", "control"].map(|d| state_dir.join(d)) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| ServeError::SocketDir {
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(Records {
            records: Mutex::new(load_records(state_dir)),
            state_dir: state_dir.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of the mount at `target`, if there is one.
    pub(super) fn get(&self, target: &Path) -> Option<Record> {
        self.lock().get(target).cloned()
    }

    /// The targets of every recorded mount.
    pub(super) fn targets(&self) -> Vec<PathBuf> {
        self.lock().keys().cloned().collect()
    }

    /// Every record.
    pub(super) fn all(&self) -> Vec<Record> {
        self.lock().values().cloned().collect()
    }

    /// The file of `target` in the state directory's `dir`, named by a hash of the target.
    pub(super) fn file_for(&self, target: &Path, dir: &str, extension: &str) -> PathBuf {
        self.state_dir
            .join(dir)
            .join(format!("{}.{extension}", key_of(target)))
    }

    /// Writes `record` (atomically: a temporary file, synced, renamed) and remembers it.
    pub(super) fn save(&self, record: &Record) -> std::io::Result<()> {
        let path = self.file_for(&record.target, "mounts", "json");
        let body = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        write_private(&path, &body)?;
        self.lock().insert(record.target.clone(), record.clone());
        Ok(())
    }

    /// Forgets the mount at `target`: its record, its daemon's log (and the rotated one) and its
    /// figures.
    pub(super) fn forget(&self, target: &Path) {
        self.forget_files(
            target,
            &[
                ("mounts", "json"),
                ("logs", "log"),
                ("logs", "log.1"),
                ("stats", "json"),
                ("inodes", "journal"),
                ("control", "sock"),
            ],
        );
    }

    /// Forgets the mount at `target` but keeps its daemon's log, for the next daemon to append to.
    pub(super) fn forget_keeping_log(&self, target: &Path) {
        self.forget_files(
            target,
            &[
                ("mounts", "json"),
                ("stats", "json"),
                ("inodes", "journal"),
                ("control", "sock"),
            ],
        );
    }

    fn forget_files(&self, target: &Path, files: &[(&str, &str)]) {
        self.lock().remove(target);
        for (dir, extension) in files {
            let path = self.file_for(target, dir, extension);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove");
            }
        }
    }
}

fn load_records(state_dir: &Path) -> BTreeMap<PathBuf, Record> {
    let mut records = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(state_dir.join("mounts")) else {
        return records;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
        {
            Ok(record) => {
                records.insert(record.target.clone(), record);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable mount record")
            }
        }
    }
    records
}
