//! The journal of a mount's multipart uploads in flight, so a daemon killed mid-upload does not
//! leave its upload open (and billed) for good: an entry is written when an upload is created,
//! before its first part, and removed when the upload is completed or aborted; a restarted
//! daemon of the same mount aborts what the entries left by its previous incarnation name
//! ([`abort_stale_uploads`]), and nothing else: not another mount's uploads, not another
//! client's on the same bucket. It lives in the mount's directory of the node's staging area
//! (`staging_area.rs`); a daemon without one keeps no journal. It knows nothing of files.
//!
//! An entry is `uploads/upload.<random>`: the upload ID on the first line, the key after it
//! (written to a temporary name and renamed, so an entry is whole or absent). 0600 in a 0700
//! directory: keys are file names of the user's.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::store::{ObjectStore, StoreError};

/// The journal's directory in a mount's directory.
pub const JOURNAL_DIR: &str = "uploads";
const ENTRY_PREFIX: &str = "upload.";

/// A mount's journal.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: PathBuf,
}

/// The entry of one upload in flight; [`JournalEntry::remove`] when it is completed or aborted.
/// Dropped without that (the upload abandoned), it stays for the next start to abort.
#[derive(Debug)]
pub(crate) struct JournalEntry {
    path: PathBuf,
}

impl Journal {
    /// The journal in the mount's directory `mount_dir`.
    pub(crate) fn new(mount_dir: &Path) -> Self {
        Journal {
            dir: mount_dir.join(JOURNAL_DIR),
        }
    }

    /// Records the upload `upload_id` of `key`. A failure is logged and the upload goes on
    /// unrecorded: a journal must not fail a write.
    pub(crate) fn record(&self, key: &str, upload_id: &str) -> Option<JournalEntry> {
        match self.try_record(key, upload_id) {
            Ok(path) => Some(JournalEntry { path }),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), key, upload_id, error = %e, "cannot journal a multipart upload; a crash would leave it open");
                None
            }
        }
    }

    fn try_record(&self, key: &str, upload_id: &str) -> std::io::Result<PathBuf> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(&self.dir)?;
        write!(tmp, "{upload_id}\n{key}")?;
        let (_, path) = tempfile::Builder::new()
            .prefix(ENTRY_PREFIX)
            .tempfile_in(&self.dir)?
            .keep()
            .map_err(|e| e.error)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

impl JournalEntry {
    /// The upload is over (completed or aborted): forgets it.
    pub(crate) fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(entry = %self.path.display(), error = %e, "cannot remove a journal entry");
        }
    }
}

/// What [`abort_stale_uploads`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleUploads {
    /// `(key, upload ID)` of each upload aborted (or found already gone).
    pub aborted: Vec<(String, String)>,
    /// Uploads whose abort failed; their entries stay for the next start.
    pub failed: usize,
}

/// Aborts the multipart uploads the journal in `mount_dir` names: a previous daemon of this
/// mount started them and died before completing or aborting them. Entries go once their upload
/// is aborted or gone; unreadable ones and temporary leftovers go too.
pub async fn abort_stale_uploads<S: ObjectStore>(store: &S, mount_dir: &Path) -> StaleUploads {
    let dir = mount_dir.join(JOURNAL_DIR);
    let mut report = StaleUploads::default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return report;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if !name.starts_with(ENTRY_PREFIX) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let Some((upload_id, key)) = text.split_once('\n').filter(|(id, _)| !id.is_empty()) else {
            // Created but not yet renamed over when the daemon died: no upload to name.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        match store.abort_multipart(key, upload_id).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {
                tracing::info!(
                    key,
                    upload_id,
                    "aborted a multipart upload a previous daemon left"
                );
                let _ = std::fs::remove_file(&path);
                report.aborted.push((key.to_owned(), upload_id.to_owned()));
            }
            Err(e) => {
                tracing::warn!(key, upload_id, error = %e, "cannot abort a multipart upload a previous daemon left; will retry at the next start");
                report.failed += 1;
            }
        }
    }
    report
}
