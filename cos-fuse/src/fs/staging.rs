//! Staging files: unlinked local files that hold the content of a file being rewritten, appended
//! or written out of order until it is uploaded. Owns the cap on their total size; it knows
//! nothing of objects.
//!
//! A pool whose directory is a mount's directory of the node's staging area
//! ([`crate::staging_area`]) also holds a lease on the area's cap, shared with every other
//! daemon on the node, and grows it before its files grow: past the area's cap a write is ENOSPC
//! even when this mount stages little. Such a pool also has the mount's upload journal
//! ([`crate::upload_journal`]). Anywhere else the pool is private: its own cap, no journal.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::error::FsError;
use crate::errno::Errno;
use crate::staging_area::{self, AreaError, Lease};
use crate::upload_journal::Journal;

#[derive(Debug)]
pub(crate) struct StagingPool {
    dir: PathBuf,
    cap: u64,
    used: AtomicU64,
    quota: Quota,
}

/// Who else counts against the cap.
#[derive(Debug)]
enum Quota {
    /// Nobody: the pool's own cap only.
    Private,
    /// The node's area: this daemon's lease, and the mount's journal.
    Area {
        lease: Mutex<Lease>,
        journal: Journal,
    },
    /// The area could not be joined: every staging file fails, with this reason.
    Unusable(String),
}

/// One staging file; its logical length is counted against the pool until it is dropped.
#[derive(Debug)]
pub(crate) struct StagingFile {
    file: Arc<File>,
    len: u64,
    pool: Arc<StagingPool>,
}

impl StagingPool {
    /// A pool in `dir` of at most `cap` bytes, shared with the node's other daemons when `dir`
    /// is a mount's directory of the node's staging area.
    pub(crate) fn new(dir: PathBuf, cap: u64) -> Arc<Self> {
        let quota = if staging_area::is_mount_dir(&dir) {
            match Lease::open(&dir, cap) {
                Ok(lease) => Quota::Area {
                    lease: Mutex::new(lease),
                    journal: Journal::new(&dir),
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot join the node's staging area: staging fails");
                    Quota::Unusable(e.to_string())
                }
            }
        } else {
            Quota::Private
        };
        Arc::new(StagingPool {
            dir,
            cap,
            used: AtomicU64::new(0),
            quota,
        })
    }

    /// The mount's journal of multipart uploads, when it stages in the node's area.
    pub(crate) fn journal(&self) -> Option<&Journal> {
        match &self.quota {
            Quota::Area { journal, .. } => Some(journal),
            Quota::Private | Quota::Unusable(_) => None,
        }
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    pub(crate) async fn create(self: &Arc<Self>) -> Result<StagingFile, FsError> {
        if let Quota::Unusable(why) = &self.quota {
            return Err(FsError::new(
                Errno::EIO,
                format!("the node's staging area is unusable: {why}"),
            ));
        }
        let dir = self.dir.clone();
        let what = format!("creating a staging file in {}", dir.display());
        let file = blocking(what, move || tempfile::tempfile_in(dir)).await?;
        Ok(StagingFile {
            file: Arc::new(file),
            len: 0,
            pool: Arc::clone(self),
        })
    }

    /// Counts `delta` more bytes for a file that grows to `new_len`.
    fn grow(&self, new_len: u64, delta: u64) -> Result<(), FsError> {
        if new_len > self.cap {
            return Err(FsError::new(
                Errno::EFBIG,
                format!("a staging file of {new_len} bytes is over staging_max_bytes"),
            ));
        }
        let Quota::Area { lease, .. } = &self.quota else {
            return self
                .used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                    used.checked_add(delta).filter(|n| *n <= self.cap)
                })
                .map(|_| ())
                .map_err(|_| {
                    FsError::new(
                        Errno::ENOSPC,
                        format!("staging files hold staging_max_bytes ({})", self.cap),
                    )
                });
        };
        // The lease changes with `used` under its lock, so it always covers what is counted.
        let mut lease = lease.lock().unwrap_or_else(|p| p.into_inner());
        let used = self.used.load(Ordering::SeqCst);
        let wanted = used.saturating_add(delta);
        if wanted > self.cap {
            return Err(FsError::new(
                Errno::ENOSPC,
                format!("staging files hold staging_max_bytes ({})", self.cap),
            ));
        }
        match lease.cover(wanted) {
            Ok(()) => {
                self.used.store(wanted, Ordering::SeqCst);
                Ok(())
            }
            Err(e @ AreaError::Full { .. }) => {
                Err(FsError::new(Errno::ENOSPC, "staging").caused_by(e))
            }
            Err(e) => Err(FsError::new(Errno::EIO, "staging").caused_by(e)),
        }
    }

    fn shrink(&self, delta: u64) {
        let Quota::Area { lease, .. } = &self.quota else {
            let _ = self
                .used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                    Some(used.saturating_sub(delta))
                });
            return;
        };
        let mut lease = lease.lock().unwrap_or_else(|p| p.into_inner());
        let used = self.used.load(Ordering::SeqCst).saturating_sub(delta);
        self.used.store(used, Ordering::SeqCst);
        if let Err(e) = lease.trim(used) {
            tracing::warn!(error = %e, "cannot give staging space back to the node's area");
        }
    }
}

/// Runs staging file I/O `f` on a blocking thread; `what` it does names a failure.
async fn blocking<T: Send + 'static>(
    what: impl Into<Cow<'static, str>>,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, FsError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| FsError::io(what, e)),
        Err(e) => Err(FsError::new(Errno::EIO, what).caused_by(e)),
    }
}

impl StagingFile {
    fn account(&mut self, new_len: u64) -> Result<(), FsError> {
        if new_len > self.len {
            self.pool.grow(new_len, new_len - self.len)?;
        } else {
            self.pool.shrink(self.len - new_len);
        }
        self.len = new_len;
        Ok(())
    }

    pub(crate) async fn write_at(&mut self, off: u64, data: Bytes) -> Result<(), FsError> {
        let end = off.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        let old = self.len;
        self.account(end.max(old))?;
        let file = Arc::clone(&self.file);
        let r = blocking("writing a staging file", move || {
            file.write_all_at(&data, off)
        })
        .await;
        if r.is_err() {
            // The bytes may be partly written; the length stays what it was.
            let _ = self.account(old);
        }
        r
    }

    pub(crate) async fn set_len(&mut self, n: u64) -> Result<(), FsError> {
        let old = self.len;
        self.account(n)?;
        let file = Arc::clone(&self.file);
        let r = blocking("resizing a staging file", move || file.set_len(n)).await;
        if r.is_err() {
            let _ = self.account(old);
        }
        r
    }

    /// Bytes `[off, off+len)`, shorter at the end of the file.
    pub(crate) async fn read_at(&self, off: u64, len: u64) -> Result<Bytes, FsError> {
        let end = off.saturating_add(len).min(self.len);
        if off >= end {
            return Ok(Bytes::new());
        }
        let n = usize::try_from(end - off).map_err(|_| Errno::EINVAL)?;
        let file = Arc::clone(&self.file);
        blocking("reading a staging file", move || {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, off)?;
            Ok(Bytes::from(buf))
        })
        .await
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        self.pool.shrink(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_are_enforced_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let pool = StagingPool::new(dir.path().to_path_buf(), 10);
        let mut a = pool.create().await.unwrap();
        a.write_at(0, Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(a.read_at(1, 3).await.unwrap(), "ell");
        assert_eq!(
            a.write_at(0, Bytes::from(vec![0; 11]))
                .await
                .map_err(Errno::from),
            Err(Errno::EFBIG)
        );
        let mut b = pool.create().await.unwrap();
        assert_eq!(b.set_len(6).await.map_err(Errno::from), Err(Errno::ENOSPC));
        b.set_len(5).await.unwrap();
        assert_eq!(pool.used(), 10);
        a.set_len(2).await.unwrap();
        assert_eq!(a.read_at(0, 10).await.unwrap(), "he");
        drop(b);
        assert_eq!(pool.used(), 2);
        a.write_at(4, Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(a.read_at(0, 10).await.unwrap(), &b"he\0\0x"[..]);
    }
}
