//! The locks the cache takes. All are released by the kernel when a process dies, so a crash
//! never leaves a lock behind. Blocking calls: run them off the async runtime.
//!
//! - [`FetchLock`]: "I am fetching this block", a write lock on one byte of `locks/fetch.lock`
//!   (the byte at the block's hash), taken without blocking through an open file description of
//!   its own (`F_OFD_SETLK`): it excludes other processes and other tasks of this one alike, and
//!   goes when the description closes. One file for every block: creating and unlinking a lock
//!   file per block cost about as much CPU as the block's checksum.
//! - [`StateLock`]: `evict.lock`, `flock`ed blocking, serialises every change of the usage counter
//!   (which it also stores) and every deletion of a block file, in this and other processes.
//! - Temporary block files are `flock`ed by their writer ([`try_lock_path`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

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

/// The file whose bytes are the blocks' fetch locks, in the `locks` directory.
pub(crate) const FETCH_LOCKS: &str = "fetch.lock";

/// The right to fetch one block, held until dropped.
#[derive(Debug)]
pub(crate) struct FetchLock {
    _description: File,
}

impl FetchLock {
    /// Creates the fetch-lock file `path` if missing, and makes it 0600 if an older version or
    /// an operator left it looser. It is never deleted: a new file would not share the locks
    /// other processes hold on the old one.
    pub(crate) fn prepare(path: &Path) -> io::Result<()> {
        drop(open_lock_file(path)?);
        crate::private::tighten(path, crate::private::FILE_MODE)
    }

    /// The lock on byte `at` of the fetch-lock file `path`, or `None` when another open file
    /// description (of any process) holds it.
    pub(crate) fn try_acquire(path: &Path, at: u64) -> io::Result<Option<FetchLock>> {
        let file = open_lock_file(path)?;
        let byte = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: i64::try_from(at).unwrap_or(i64::MAX - 1),
            l_len: 1,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_SETLK(&byte)) {
            Ok(_) => Ok(Some(FetchLock { _description: file })),
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// The byte of the fetch-lock file that stands for the block with this hash: its first eight
/// bytes, less two bits so that the byte is a file offset.
pub(crate) fn fetch_lock_byte(hash: &crate::block::BlockHash) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(first) >> 2
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
    fn a_fetch_lock_excludes_its_byte_only_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FETCH_LOCKS);
        let at = fetch_lock_byte(&[0xff; 32]);
        assert_eq!(at, u64::MAX >> 2, "the highest byte is still a file offset");
        let first = FetchLock::try_acquire(&path, at).unwrap().unwrap();
        // A second open file description (as another task or process would have) is refused.
        assert!(FetchLock::try_acquire(&path, at).unwrap().is_none());
        // Other blocks' bytes are free.
        let other = FetchLock::try_acquire(&path, at - 1).unwrap();
        assert!(other.is_some());
        drop(first);
        assert!(FetchLock::try_acquire(&path, at).unwrap().is_some());
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
        let fresh = try_lock_path(&path).unwrap();
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
        let path = dir.path().join(FETCH_LOCKS);
        let _held = FetchLock::try_acquire(&path, 7).unwrap().unwrap();
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
