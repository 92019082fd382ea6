//! The journal of a mount's multipart uploads in flight, so a daemon killed mid-upload does not
//! leave its upload open (and billed) for good. It is written ahead: an *intent* (the key, the
//! time, a random token) before CreateMultipartUpload is sent, so there is no moment when the
//! server may hold an upload the journal does not know of; the same entry gets the upload ID
//! when the server answers, and goes when the upload is completed or aborted. An upload whose
//! intent cannot be written is not started (`fs/upload.rs` fails it with EIO).
//!
//! A restarted daemon of the same mount ([`abort_stale_uploads`]) aborts the uploads the entries
//! left by its previous incarnation name; an intent that never got its ID (the daemon died
//! waiting for the answer, or could not record it) is resolved by listing the uploads of its
//! key and aborting those of exactly that key the server started between [`CLOCK_SLACK`] before
//! the intent and the store's [`call_time_limit`](ObjectStore::call_time_limit) after it (every
//! attempt of the create, and the backoffs between them; 170 s with cos-client's defaults).
//! Nothing else goes: not another key's uploads, not uploads of the same key started outside
//! that window.
//!
//! The residual risk: another client (another mount of the bucket, another tool) that starts an
//! upload of the very same key within that window has it aborted too. Its write would race ours
//! for the object anyway; it fails, never publishes something partial.
//!
//! It lives in the mount's directory of the node's staging area (`staging_area.rs`); a daemon
//! without one keeps no journal. It knows nothing of files.
//!
//! An entry is `uploads/upload.<random>`, written to a temporary name and renamed, so it is
//! whole or absent: `v2 <token> <unix ms>` on the first line, the upload ID (empty in an intent)
//! on the second, the key after it. Entries of older daemons hold the upload ID on the first
//! line and the key after it. 0600 in a 0700 directory: keys are file names of the user's.

use std::hash::BuildHasher;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{MultipartUpload, ObjectStore, StoreError};

/// The journal's directory in a mount's directory.
pub const JOURNAL_DIR: &str = "uploads";
const ENTRY_PREFIX: &str = "upload.";
/// The first word of an entry in the current format.
const FORMAT: &str = "v2";
/// How much earlier than its intent the server may have stamped an upload: its clock may be a
/// little behind the node's, and COS stamps uploads to the second.
pub const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// A mount's journal.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: PathBuf,
}

/// The entry of one upload: an intent, then (after [`JournalEntry::created`]) the upload.
/// [`JournalEntry::remove`] when it is completed or aborted (or was never started). Dropped
/// without that (the upload abandoned, or perhaps started), it stays for the next start.
#[derive(Debug)]
pub(crate) struct JournalEntry {
    path: PathBuf,
    dir: PathBuf,
    key: String,
    token: u64,
    millis: u64,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A CreateMultipartUpload of `key` may have been sent from `time` on; no answer recorded.
    Intent { key: String, time: SystemTime },
    /// The upload `upload_id` of `key`.
    Upload { key: String, upload_id: String },
}

impl Journal {
    /// The journal in the mount's directory `mount_dir`.
    pub(crate) fn new(mount_dir: &Path) -> Self {
        Journal {
            dir: mount_dir.join(JOURNAL_DIR),
        }
    }

    /// Records the intent to start an upload of `key`, now. The upload must not start when this
    /// fails: nobody would know of it after a crash.
    pub(crate) fn intend(&self, key: &str) -> std::io::Result<JournalEntry> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let now = SystemTime::now();
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let token =
            std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now));
        let (_, path) = tempfile::Builder::new()
            .prefix(ENTRY_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(&self.dir)?
            .keep()
            .map_err(|e| e.error)?;
        let entry = JournalEntry {
            path,
            dir: self.dir.clone(),
            key: key.to_owned(),
            token,
            millis,
        };
        if let Err(e) = entry.write(None) {
            // An empty entry names nothing; the next start would remove it anyway.
            let _ = std::fs::remove_file(&entry.path);
            return Err(e);
        }
        Ok(entry)
    }
}

impl JournalEntry {
    /// The server answered: the upload is `upload_id`. On failure the intent stays, and stands
    /// for the upload at the next start.
    pub(crate) fn created(&mut self, upload_id: &str) -> std::io::Result<()> {
        self.write(Some(upload_id))
    }

    /// Writes the entry whole: a temporary file renamed over it.
    fn write(&self, upload_id: Option<&str>) -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(&self.dir)?;
        write!(
            tmp,
            "{FORMAT} {:016x} {}\n{}\n{}",
            self.token,
            self.millis,
            upload_id.unwrap_or_default(),
            self.key
        )?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The upload is over (completed or aborted) or was never started: forgets it.
    pub(crate) fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(entry = %self.path.display(), error = %e, "cannot remove a journal entry");
        }
    }
}

/// What the text of an entry says; `None` for an entry reserved but never written.
fn parse(text: &str) -> Option<Entry> {
    let (first, rest) = text.split_once('\n')?;
    let mut words = first.split(' ');
    if words.next() != Some(FORMAT) {
        // An older daemon's entry: the upload ID, then the key.
        return (!first.is_empty()).then(|| Entry::Upload {
            key: rest.to_owned(),
            upload_id: first.to_owned(),
        });
    }
    let millis: u64 = words.nth(1)?.parse().ok()?;
    let (upload_id, key) = rest.split_once('\n')?;
    Some(if upload_id.is_empty() {
        Entry::Intent {
            key: key.to_owned(),
            time: UNIX_EPOCH + Duration::from_millis(millis),
        }
    } else {
        Entry::Upload {
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
        }
    })
}

/// Whether `upload` may be the one an intent of `key` at `time` started, when a call lasts at
/// most `limit`: the same key, started from [`CLOCK_SLACK`] before the intent to `limit` after.
fn started_by(upload: &MultipartUpload, key: &str, time: SystemTime, limit: Duration) -> bool {
    let from = time.checked_sub(CLOCK_SLACK).unwrap_or(UNIX_EPOCH);
    let to = time.checked_add(limit);
    upload.key == key && upload.initiated >= from && to.is_none_or(|to| upload.initiated <= to)
}

/// What [`abort_stale_uploads`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleUploads {
    /// `(key, upload ID)` of each upload aborted (or found already gone).
    pub aborted: Vec<(String, String)>,
    /// Aborts and listings that failed; their entries stay for the next start.
    pub failed: usize,
}

/// Aborts the multipart uploads the journal in `mount_dir` names or (for an intent) may have
/// started: a previous daemon of this mount started them and died before completing or
/// aborting them. Entries go once they are resolved; unreadable ones and temporary leftovers
/// go too. Run before the mount serves: an intent of the running daemon would be resolved too.
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
        let resolved = match parse(&text) {
            // Reserved but never written when the daemon died: nothing was sent.
            None => true,
            Some(Entry::Upload { key, upload_id }) => {
                abort(store, &key, &upload_id, &mut report).await
            }
            Some(Entry::Intent { key, time }) => resolve(store, &key, time, &mut report).await,
        };
        if resolved {
            let _ = std::fs::remove_file(&path);
        }
    }
    report
}

/// How many entries the journal in `mount_dir` holds: uploads (or intents) a daemon of the
/// mount left unresolved. 0 when there is no journal.
pub fn pending(mount_dir: &Path) -> usize {
    std::fs::read_dir(mount_dir.join(JOURNAL_DIR)).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(ENTRY_PREFIX))
            .count()
    })
}

/// Aborts the uploads an intent of `key` at `time` may have started; true when none is left.
async fn resolve<S: ObjectStore>(
    store: &S,
    key: &str,
    time: SystemTime,
    report: &mut StaleUploads,
) -> bool {
    let uploads = match store.list_multipart_uploads(key).await {
        Ok(uploads) => uploads,
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot list the multipart uploads a previous daemon may have left; will retry at the next start");
            report.failed += 1;
            return false;
        }
    };
    let limit = store.call_time_limit();
    let mut resolved = true;
    for upload in uploads.iter().filter(|u| started_by(u, key, time, limit)) {
        resolved &= abort(store, key, &upload.upload_id, report).await;
    }
    resolved
}

/// Aborts the upload `upload_id` of `key`; true when it is gone.
async fn abort<S: ObjectStore>(
    store: &S,
    key: &str,
    upload_id: &str,
    report: &mut StaleUploads,
) -> bool {
    match store.abort_multipart(key, upload_id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {
            tracing::info!(
                key,
                upload_id,
                "aborted a multipart upload a previous daemon left"
            );
            report.aborted.push((key.to_owned(), upload_id.to_owned()));
            true
        }
        Err(e) => {
            tracing::warn!(key, upload_id, error = %e, "cannot abort a multipart upload a previous daemon left; will retry at the next start");
            report.failed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_as_written_and_old_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path());
        let before = SystemTime::now() - Duration::from_millis(1);
        let mut entry = journal.intend("a b\nc").unwrap();
        let read = || parse(&std::fs::read_to_string(&entry.path).unwrap());
        let Some(Entry::Intent { key, time }) = read() else {
            panic!("{:?}", read());
        };
        assert_eq!(key, "a b\nc");
        assert!(time >= before && time <= SystemTime::now(), "{time:?}");
        entry.created("id/1=").unwrap();
        assert_eq!(
            parse(&std::fs::read_to_string(&entry.path).unwrap()),
            Some(Entry::Upload {
                key: "a b\nc".into(),
                upload_id: "id/1=".into()
            })
        );
        let dir_mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(JOURNAL_DIR))
                .unwrap()
                .permissions(),
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&entry.path).unwrap().permissions(),
        );
        assert_eq!((dir_mode & 0o777, mode & 0o777), (0o700, 0o600));
        let other = journal.intend("k").unwrap();
        assert_ne!(other.token, entry.token);
        entry.remove();
        other.remove();
        assert_eq!(
            std::fs::read_dir(dir.path().join(JOURNAL_DIR))
                .unwrap()
                .count(),
            0
        );

        // text => what it says
        let table = [
            ("", None),
            ("v2 00ab 1500\n", None),
            ("v2 00ab soon\n\nk", None),
            (
                "v2 00ab 1500\n\nk\nl",
                Some(Entry::Intent {
                    key: "k\nl".into(),
                    time: UNIX_EPOCH + Duration::from_millis(1500),
                }),
            ),
            (
                "v2 00ab 1500\nid\nk",
                Some(Entry::Upload {
                    key: "k".into(),
                    upload_id: "id".into(),
                }),
            ),
            (
                "id\nk\nl",
                Some(Entry::Upload {
                    key: "k\nl".into(),
                    upload_id: "id".into(),
                }),
            ),
            ("\nk", None),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn an_intent_claims_uploads_of_its_key_started_within_its_window() {
        let intent = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let limit = Duration::from_secs(30);
        let upload = |key: &str, offset: i64| MultipartUpload {
            key: key.into(),
            upload_id: "u".into(),
            initiated: if offset < 0 {
                intent - Duration::from_secs(offset.unsigned_abs())
            } else {
                intent + Duration::from_secs(offset.unsigned_abs())
            },
        };
        // key, seconds after the intent => claimed
        let table = [
            ("k", 0, true),
            ("k", -5, true),
            ("k", -6, false),
            ("k", 30, true),
            ("k", 31, false),
            ("k", -3600, false),
            ("k2", 1, false),
            ("", 1, false),
        ];
        for (key, offset, want) in table {
            assert_eq!(
                started_by(&upload(key, offset), "k", intent, limit),
                want,
                "{key} at {offset:+} s"
            );
        }
        let early = MultipartUpload {
            key: "k".into(),
            upload_id: "u".into(),
            initiated: UNIX_EPOCH,
        };
        let just_after_the_epoch = UNIX_EPOCH + Duration::from_secs(1);
        assert!(
            started_by(&early, "k", just_after_the_epoch, limit),
            "the window starts at the epoch at the earliest"
        );
    }
}
