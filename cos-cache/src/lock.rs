//! The two kinds of `flock(2)` the cache takes. Both are released by the kernel when a process
//! dies, so a crash never leaves a lock behind. Blocking calls: run them off the async runtime.
//!
//! - [`FetchLock`]: "I am fetching this block", one file per block under `locks/`, taken without
//!   blocking. The holder unlinks the file before unlocking, so lock files don't pile up; a taker
//!   checks after locking that the path still names the file it locked (else it locked a file
//!   already unlinked, and tries again).
//! - [`StateLock`]: `evict.lock`, taken blocking, serialises every change of the usage counter
//!   (which it also stores) and every deletion of a block file, in this and other processes.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Opens (creating 0600) a lock file.
fn open_lock_file(path: &Path) -> io::Result<File> {
    crate::private::file_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// An exclusive lock on `path`, taken without waiting, on the file the path names right now.
/// `Ok(None)`: someone else holds it.
pub(crate) fn try_lock_path(path: &Path) -> io::Result<Option<Flock<File>>> {
    // A few rounds: each lost race means a holder just released, so this ends quickly.
    for _ in 0..16 {
        let file = open_lock_file(path)?;
        let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(io::Error::from(e)),
        };
        let mine = locked.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if same_file(&mine, &now) => return Ok(Some(locked)),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The right to fetch one block. Dropping it unlinks the lock file, then unlocks.
#[derive(Debug)]
pub(crate) struct FetchLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl FetchLock {
    pub(crate) fn try_acquire(path: PathBuf) -> io::Result<Option<FetchLock>> {
        Ok(try_lock_path(&path)?.map(|lock| FetchLock { path, _lock: lock }))
    }
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        // While still locked: whoever opens the path later gets a new file, and whoever opened
        // this one before sees the path moved on and retries.
        let _ = std::fs::remove_file(&self.path);
    }
}

const USAGE_MAGIC: [u8; 8] = *b"COSCUSE1";

/// `evict.lock`, held. Its first 16 bytes are the usage counter.
#[derive(Debug)]
pub(crate) struct StateLock {
    file: Flock<File>,
}

impl StateLock {
    /// Waits for the lock.
    pub(crate) fn acquire(path: &Path) -> io::Result<StateLock> {
        let mut file = open_lock_file(path)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(l) => return Ok(StateLock { file: l }),
                Err((f, Errno::EINTR)) => file = f,
                Err((_, e)) => return Err(io::Error::from(e)),
            }
        }
    }

    /// The bytes charged to the cache, or `None` when the record is missing or damaged.
    pub(crate) fn usage(&self) -> io::Result<Option<u64>> {
        let mut buf = [0u8; 16];
        let n = self.file.read_at(&mut buf, 0)?;
        if n != 16 || buf[..8] != USAGE_MAGIC {
            return Ok(None);
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&buf[8..]);
        Ok(Some(u64::from_le_bytes(v)))
    }

    pub(crate) fn set_usage(&self, used: u64) -> io::Result<()> {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&USAGE_MAGIC);
        buf[8..].copy_from_slice(&used.to_le_bytes());
        self.file.write_all_at(&buf, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_lock_excludes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        let first = FetchLock::try_acquire(path.clone()).unwrap().unwrap();
        // A second open file description (as another process would have) is refused.
        assert!(FetchLock::try_acquire(path.clone()).unwrap().is_none());
        drop(first);
        assert!(!path.exists(), "the holder unlinks its lock file");
        let again = FetchLock::try_acquire(path.clone()).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn a_lock_on_an_unlinked_file_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.lock");
        // Someone opened the file, then its holder unlinked it and released: locking the stale
        // file must not count as holding the path.
        let stale = open_lock_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let stale = Flock::lock(stale, FlockArg::LockExclusiveNonblock).unwrap();
        let fresh = FetchLock::try_acquire(path.clone()).unwrap();
        assert!(fresh.is_some());
        drop(stale);
    }

    #[test]
    fn lock_files_are_0600_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // Umask 0 lets every bit asked for show (other tests of this binary are unaffected:
        // the cache asks for its modes explicitly).
        nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.lock");
        let _held = FetchLock::try_acquire(path.clone()).unwrap().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let state = dir.path().join("evict.lock");
        let _s = StateLock::acquire(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn usage_record_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evict.lock");
        let s = StateLock::acquire(&path).unwrap();
        assert_eq!(s.usage().unwrap(), None);
        s.set_usage(12345).unwrap();
        assert_eq!(s.usage().unwrap(), Some(12345));
        drop(s);
        std::fs::write(&path, b"garbage garbage!").unwrap();
        let s = StateLock::acquire(&path).unwrap();
        assert_eq!(s.usage().unwrap(), None);
    }
}
