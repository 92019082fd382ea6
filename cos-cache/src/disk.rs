//! The cache directory: reading and verifying block files, writing them atomically within the
//! capacity, eviction, and reconciling the usage counter with what is on disk. Every function
//! here blocks: call them from `spawn_blocking`. It knows nothing of object stores.
//!
//! Writing a block: under `evict.lock`, make room (evict) and charge the block to the usage
//! counter, then create `tmp/<hash>.<pid>.<random>.<charge>.tmp` and `flock` it (the lock says
//! "alive": a scan deletes unlocked temporary files, which a crashed writer left). Outside the
//! lock, write header and data, then rename it to its final name without replacing (so two
//! writers of one block cannot both count it: the loser deletes and uncharges its copy). Deleting a block (eviction, corruption, invalidation) happens only under
//! `evict.lock`, which uncharges it.

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};

use crate::block::{self, BlockHash, BlockId, charge};
use crate::index::{Entry, Index, nanos, now_nanos};
use crate::lock::{FETCH_LOCKS, FetchLock, StateLock, fetch_lock_byte, try_lock_path};
use crate::options::{CacheError, META_RESERVE};
use crate::private::{self, FILE_MODE};
use crate::stats::{self, CacheStats};

/// A block read from disk is re-stamped (mtime) at most this often, for other processes' LRU.
const TOUCH_INTERVAL: u64 = 10_000_000_000;
/// A block whose mtime is this much newer than this process last saw was used by another
/// process: eviction passes it over once.
const DEFER_SLACK: u64 = 1_000_000_000;
/// Eviction rescans the directory (learning other processes' blocks) at most this often, unless
/// the index runs out of candidates.
const RESCAN_INTERVAL: Duration = Duration::from_secs(300);

/// What became of a block handed to [`Disk::store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Written,
    /// Another writer got there first; its copy stays.
    AlreadyThere,
}

#[derive(Debug)]
pub(crate) enum StoreFail {
    /// No room without evicting pinned blocks.
    Full,
    Io(io::Error),
}

#[derive(Debug)]
pub(crate) struct Disk {
    blocks: PathBuf,
    tmp: PathBuf,
    locks: PathBuf,
    state: PathBuf,
    /// Bytes block files may be charged: the capacity less the reserve for the cache's own files.
    budget: u64,
    index: Mutex<Index>,
    stats: Arc<CacheStats>,
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn mtime(m: &Metadata) -> u64 {
    m.modified().map(nanos).unwrap_or(0)
}

/// What a block file was charged: as recorded when this process wrote or scanned it (a file
/// damaged since may be shorter), else as its size says.
fn charged(known: Option<Entry>, m: &Metadata) -> u64 {
    known.map_or(0, |e| e.charge).max(charge(m.len()))
}

fn parse_hash(name: &str) -> Option<BlockHash> {
    if name.len() != 64 {
        return None;
    }
    hex::decode(name).ok()?.try_into().ok()
}

/// The charge a temporary file's name records: `<hash>.<pid>.<random>.<charge>.tmp`.
fn tmp_charge(name: &str) -> Option<u64> {
    name.strip_suffix(".tmp")?.rsplit('.').next()?.parse().ok()
}

/// Moves `from` to `to` unless `to` exists (`AlreadyExists`), atomically: `renameat2` with
/// `RENAME_NOREPLACE` where the platform and file system have it, else `link` then `unlink`
/// (for a moment the block has both names).
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    fs::hard_link(from, to)?;
    let _ = fs::remove_file(from);
    Ok(())
}

/// Writes a temporary block file and moves it to its final name (never replacing one).
fn write_and_commit(
    mut file: &File,
    tmp_path: &Path,
    header: &[u8],
    data: &[u8],
    target: &Path,
) -> io::Result<()> {
    file.write_all(header)?;
    file.write_all(data)?;
    match rename_no_replace(tmp_path, target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Someone removed the shard directory: recreate it once.
            if let Some(parent) = target.parent() {
                private::create_dir(parent)?;
            }
            rename_no_replace(tmp_path, target)
        }
        r => r,
    }
}

impl Disk {
    /// Creates the layout if needed (private to this user: see `private`, tightening what an
    /// older version left looser) and reconciles the usage counter with the directory.
    pub(crate) fn open(
        dir: &Path,
        capacity: u64,
        stats: Arc<CacheStats>,
    ) -> Result<Disk, CacheError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        private::create_dir(dir).map_err(io_err(dir))?;
        let blocks = dir.join("blocks");
        private::create_dir(&blocks).map_err(io_err(&blocks))?;
        for i in 0..=255u8 {
            let sub = blocks.join(format!("{i:02x}"));
            private::create_dir(&sub).map_err(io_err(&sub))?;
        }
        let tmp = dir.join("tmp");
        let locks = dir.join("locks");
        for d in [&tmp, &locks] {
            private::create_dir(d).map_err(io_err(d))?;
        }
        let disk = Disk {
            blocks,
            tmp,
            locks,
            state: dir.join("evict.lock"),
            budget: capacity.saturating_sub(META_RESERVE),
            index: Mutex::new(Index::default()),
            stats,
        };
        stats::set(&disk.stats.capacity_bytes, capacity);
        let st = StateLock::acquire(&disk.state).map_err(io_err(&disk.state))?;
        private::tighten(&disk.state, FILE_MODE).map_err(io_err(&disk.state))?;
        let fetch_locks = disk.locks.join(FETCH_LOCKS);
        FetchLock::prepare(&fetch_locks).map_err(io_err(&fetch_locks))?;
        let mut used = disk.rescan_locked(&st).map_err(io_err(dir))?;
        // The capacity may have shrunk since the last run.
        let made_room = disk.make_room(&st, &mut used, 0);
        disk.set_usage(&st, used).map_err(io_err(&disk.state))?;
        made_room.map_err(io_err(dir))?;
        Ok(disk)
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is a hint; a panic elsewhere cannot make it unsafe to use.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn block_path(&self, hash: &BlockHash) -> PathBuf {
        let hex = hex::encode(hash);
        self.blocks.join(&hex[..2]).join(hex)
    }

    pub(crate) fn try_fetch_lock(&self, id: &BlockId) -> io::Result<Option<FetchLock>> {
        FetchLock::try_acquire(&self.locks.join(FETCH_LOCKS), fetch_lock_byte(&id.hash))
    }

    pub(crate) fn pin(&self, hash: BlockHash) {
        self.index().pin(hash);
    }

    pub(crate) fn unpin(&self, hash: &BlockHash) {
        self.index().unpin(hash);
    }

    /// Marks a block used (a memory-tier hit), for this process's LRU order.
    pub(crate) fn note_use(&self, hash: &BlockHash) {
        let mut ix = self.index();
        if let Some(e) = ix.get(hash) {
            ix.touch(*hash, e.charge, now_nanos());
        }
    }

    /// The block's data and its object's size, if a verified copy is on disk. A damaged copy is
    /// deleted (and counted), never returned.
    pub(crate) fn read(&self, id: &BlockId) -> Option<(Bytes, u64)> {
        let path = self.block_path(&id.hash);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    stats::add(&self.stats.disk_errors, 1);
                }
                return None;
            }
        };
        let Ok(meta) = file.metadata() else {
            stats::add(&self.stats.disk_errors, 1);
            return None;
        };
        let verdict = if meta.len() > block::max_file_len(id) {
            Err(block::Corrupt::Length)
        } else {
            let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            match file.read_to_end(&mut buf) {
                Ok(_) => block::decode(&buf, id).map(|d| (buf, d)),
                // An unreadable file (EIO) is as good as a corrupt one.
                Err(_) => Err(block::Corrupt::Short),
            }
        };
        match verdict {
            Ok((buf, decoded)) => {
                let now = now_nanos();
                if now.saturating_sub(mtime(&meta)) > TOUCH_INTERVAL {
                    // Best effort: another user's file cannot be re-stamped, which only costs
                    // LRU precision.
                    let _ = file.set_modified(SystemTime::now());
                }
                self.index().touch(id.hash, charge(meta.len()), now);
                Some((Bytes::from(buf).slice(decoded.data), decoded.object_size))
            }
            Err(kind) => {
                tracing::warn!(path = %path.display(), ?kind, "corrupt cache block dropped");
                stats::add(&self.stats.corrupt_blocks, 1);
                self.drop_file(&id.hash, &meta);
                None
            }
        }
    }

    /// Deletes a block file if the path still names the file `seen` describes.
    fn drop_file(&self, hash: &BlockHash, seen: &Metadata) {
        let Ok((st, mut used)) = self.lock_state() else {
            stats::add(&self.stats.disk_errors, 1);
            return;
        };
        let path = self.block_path(hash);
        let known = self.index().remove(hash);
        if let Ok(now) = fs::symlink_metadata(&path)
            && same_file(seen, &now)
            && fs::remove_file(&path).is_ok()
        {
            used = used.saturating_sub(charged(known, &now));
        }
        let _ = self.set_usage(&st, used);
    }

    /// Deletes these blocks if present (their object changed).
    pub(crate) fn remove(&self, hashes: &[BlockHash]) {
        if hashes.is_empty() {
            return;
        }
        let Ok((st, mut used)) = self.lock_state() else {
            stats::add(&self.stats.disk_errors, 1);
            return;
        };
        for hash in hashes {
            let path = self.block_path(hash);
            let known = self.index().remove(hash);
            if let Ok(m) = fs::symlink_metadata(&path)
                && fs::remove_file(&path).is_ok()
            {
                used = used.saturating_sub(charged(known, &m));
            }
        }
        let _ = self.set_usage(&st, used);
    }

    /// Writes a block (atomically, within the capacity). `Full` when only pinned blocks could
    /// make room.
    pub(crate) fn store(
        &self,
        id: &BlockId,
        object_size: u64,
        data: &[u8],
    ) -> Result<Stored, StoreFail> {
        if !block::cacheable(id) {
            return Err(StoreFail::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "block key too long",
            )));
        }
        let header = block::encode_header(id, object_size, data);
        let cost = charge((header.len() + data.len()) as u64);
        if cost > self.budget {
            return Err(StoreFail::Full);
        }
        let (tmp_path, tmp) = {
            let (st, mut used) = self.lock_state().map_err(StoreFail::Io)?;
            let room = self.make_room(&st, &mut used, cost);
            let created = match room {
                Ok(true) => self.create_tmp(id, cost).map(Some),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            if let Ok(Some(_)) = &created {
                used = used.saturating_add(cost);
            }
            if let Err(e) = self.set_usage(&st, used) {
                if let Ok(Some((path, _))) = &created {
                    let _ = fs::remove_file(path);
                }
                return Err(StoreFail::Io(e));
            }
            match created {
                Ok(Some(t)) => t,
                Ok(None) => return Err(StoreFail::Full),
                Err(e) => return Err(StoreFail::Io(e)),
            }
        };
        let target = self.block_path(&id.hash);
        let written = write_and_commit(&tmp, &tmp_path, &header, data, &target);
        if written.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        drop(tmp);
        match written {
            Ok(()) => {
                self.index().touch(id.hash, cost, now_nanos());
                Ok(Stored::Written)
            }
            Err(e) => {
                self.uncharge(cost);
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(Stored::AlreadyThere)
                } else {
                    Err(StoreFail::Io(e))
                }
            }
        }
    }

    fn create_tmp(&self, id: &BlockId, cost: u64) -> io::Result<(PathBuf, Flock<File>)> {
        for _ in 0..8 {
            let name = format!(
                "{}.{}.{:016x}.{cost}.tmp",
                id.hex(),
                std::process::id(),
                fastrand::u64(..)
            );
            let path = self.tmp.join(name);
            let file = match private::file_options()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            return match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => Ok((path, l)),
                Err((_, e)) => {
                    let _ = fs::remove_file(&path);
                    Err(io::Error::from(e))
                }
            };
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary name",
        ))
    }

    fn uncharge(&self, cost: u64) {
        match self.lock_state() {
            Ok((st, used)) => {
                let _ = self.set_usage(&st, used.saturating_sub(cost));
            }
            // The counter stays high: the cache holds less than it could until the next scan.
            Err(_) => stats::add(&self.stats.disk_errors, 1),
        }
    }

    fn lock_state(&self) -> io::Result<(StateLock, u64)> {
        let st = StateLock::acquire(&self.state)?;
        let used = match st.usage()? {
            Some(u) => u,
            None => self.rescan_locked(&st)?,
        };
        Ok((st, used))
    }

    fn set_usage(&self, st: &StateLock, used: u64) -> io::Result<()> {
        st.set_usage(used)?;
        stats::set(&self.stats.used_bytes, used);
        Ok(())
    }

    /// Evicts until `cost` more bytes fit; false if they can't without touching pinned blocks.
    /// Least recently used first (by this process's index, checked against the file's mtime).
    fn make_room(&self, st: &StateLock, used: &mut u64, cost: u64) -> io::Result<bool> {
        if used.saturating_add(cost) <= self.budget {
            return Ok(true);
        }
        let mut rescanned = false;
        if self
            .index()
            .last_scan
            .is_none_or(|t| t.elapsed() > RESCAN_INTERVAL)
        {
            *used = self.rescan_locked(st)?;
            rescanned = true;
        }
        let mut deferred = HashSet::new();
        let mut defer = true;
        while used.saturating_add(cost) > self.budget {
            let victim = self.index().oldest(&deferred);
            let Some((hash, entry)) = victim else {
                if !rescanned {
                    *used = self.rescan_locked(st)?;
                    rescanned = true;
                } else if defer && !deferred.is_empty() {
                    // Everything left was used lately elsewhere: LRU among those, then.
                    defer = false;
                    deferred.clear();
                } else {
                    break;
                }
                continue;
            };
            let path = self.block_path(&hash);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => {
                    // Gone (evicted by another process, which uncharged it) or unusable.
                    self.index().remove(&hash);
                    continue;
                }
            };
            let seen = mtime(&meta);
            if defer && seen > entry.used.saturating_add(DEFER_SLACK) {
                self.index().touch(hash, charge(meta.len()), seen);
                deferred.insert(hash);
                continue;
            }
            let removed = {
                let mut ix = self.index();
                if ix.is_pinned(&hash) {
                    deferred.insert(hash);
                    continue;
                }
                ix.remove(&hash);
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    let c = charged(Some(entry), &meta);
                    *used = used.saturating_sub(c);
                    stats::add(&self.stats.evictions, 1);
                    stats::add(&self.stats.evicted_bytes, c);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot evict cache block");
                    stats::add(&self.stats.disk_errors, 1);
                }
            }
        }
        Ok(used.saturating_add(cost) <= self.budget)
    }

    /// Rebuilds the index from the directory and recomputes the usage counter: every block file,
    /// plus the charge of every temporary file a live writer holds. Deletes temporary and lock
    /// files that dead processes left. Only under `evict.lock`.
    fn rescan_locked(&self, st: &StateLock) -> io::Result<u64> {
        let mut used = 0u64;
        let mut entries = Vec::new();
        for shard in fs::read_dir(&self.blocks)? {
            let shard = shard?;
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files {
                let f = f?;
                let Ok(m) = f.metadata() else { continue };
                if m.is_file() && m.permissions().mode() & 0o077 != 0 {
                    // Written by an older version: best effort, the directories above are
                    // private anyway.
                    let _ = fs::set_permissions(f.path(), fs::Permissions::from_mode(FILE_MODE));
                }
                let c = charge(m.len());
                used = used.saturating_add(c);
                if let Some(hash) = f.file_name().to_str().and_then(parse_hash) {
                    entries.push((
                        hash,
                        Entry {
                            charge: c,
                            used: mtime(&m),
                        },
                    ));
                }
            }
        }
        for f in fs::read_dir(&self.tmp)? {
            let path = f?.path();
            match try_lock_path(&path) {
                Ok(Some(stale)) => {
                    let _ = fs::remove_file(&path);
                    drop(stale);
                }
                Ok(None) => {
                    let named = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(tmp_charge);
                    let c = match named {
                        Some(c) => c,
                        None => fs::metadata(&path).map(|m| charge(m.len())).unwrap_or(0),
                    };
                    used = used.saturating_add(c);
                }
                Err(_) => {}
            }
        }
        // Lock files of older versions (one per block) that nobody holds.
        for f in fs::read_dir(&self.locks)? {
            let path = f?.path();
            if path.file_name().is_some_and(|n| n == FETCH_LOCKS) {
                continue;
            }
            if let Ok(Some(stale)) = try_lock_path(&path) {
                let _ = fs::remove_file(&path);
                drop(stale);
            }
        }
        self.index().replace_all(entries);
        self.set_usage(st, used)?;
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, capacity: u64) -> Disk {
        Disk::open(dir, capacity, Arc::new(CacheStats::default())).unwrap()
    }

    fn id(i: u64) -> BlockId {
        BlockId::new("bkt", "obj", "etag", 4096, i)
    }

    fn files_size(dir: &Path) -> u64 {
        let mut total = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    total += m.len();
                }
            }
        }
        total
    }

    #[test]
    fn store_read_and_lru_eviction_within_capacity() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three charged blocks of 4096 + header (8 KiB each).
        let disk = open(dir.path(), META_RESERVE + 3 * 8192);
        let data = vec![7u8; 4096];
        for i in 0..3 {
            assert_eq!(
                disk.store(&id(i), 5 * 4096, &data).unwrap(),
                Stored::Written
            );
            if i == 0 {
                assert_eq!(
                    disk.store(&id(0), 5 * 4096, &data).unwrap(),
                    Stored::AlreadyThere
                );
            }
        }
        // Use block 0, so block 1 is the oldest.
        assert!(disk.read(&id(0)).is_some());
        disk.store(&id(3), 5 * 4096, &data).unwrap();
        assert!(disk.read(&id(1)).is_none(), "the LRU block went");
        for i in [0, 2, 3] {
            let (got, size) = disk.read(&id(i)).unwrap();
            assert_eq!((&got[..], size), (&data[..], 5 * 4096));
        }
        let s = disk.stats.snapshot();
        assert_eq!(s.evictions, 1);
        assert_eq!(s.used_bytes, 3 * 8192);
        assert!(files_size(dir.path()) <= META_RESERVE + 3 * 8192);
    }

    #[test]
    fn pinned_blocks_are_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = open(dir.path(), META_RESERVE + 2 * 8192);
        let data = vec![1u8; 4096];
        for i in 0..2 {
            disk.pin(id(i).hash);
            disk.store(&id(i), 5 * 4096, &data).unwrap();
        }
        assert!(matches!(
            disk.store(&id(2), 5 * 4096, &data),
            Err(StoreFail::Full)
        ));
        disk.unpin(&id(0).hash);
        disk.store(&id(2), 5 * 4096, &data).unwrap();
        assert!(disk.read(&id(0)).is_none());
        assert!(disk.read(&id(1)).is_some());
    }

    #[test]
    fn a_reopened_cache_reconciles_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let disk = open(dir.path(), 1 << 20);
        disk.store(&id(0), 4096, &[3u8; 4096]).unwrap();
        // A writer that died: an unlocked temporary file and lock file, and a lost counter.
        fs::write(dir.path().join("tmp/x.1.2.8192.tmp"), b"half").unwrap();
        fs::write(dir.path().join("locks/y.lock"), b"").unwrap();
        fs::write(dir.path().join("evict.lock"), b"").unwrap();
        let disk = open(dir.path(), 1 << 20);
        assert_eq!(disk.stats.snapshot().used_bytes, 8192);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // An older version's lock file goes; the fetch-lock file stays.
        let locks: Vec<_> = fs::read_dir(dir.path().join("locks"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(locks, [FETCH_LOCKS]);
        assert!(disk.read(&id(0)).is_some());
        // A smaller capacity evicts at open.
        let disk = open(dir.path(), META_RESERVE + 4096);
        assert!(disk.read(&id(0)).is_none());
        assert_eq!(disk.stats.snapshot().used_bytes, 0);
    }

    #[test]
    fn corrupt_and_truncated_blocks_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = open(dir.path(), 1 << 20);
        let data = vec![9u8; 4096];
        disk.store(&id(0), 4096, &data).unwrap();
        let path = disk.block_path(&id(0).hash);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        assert!(disk.read(&id(0)).is_none());
        assert!(!path.exists());
        disk.store(&id(0), 4096, &data).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..100]).unwrap();
        assert!(disk.read(&id(0)).is_none());
        assert!(!path.exists());
        let s = disk.stats.snapshot();
        assert_eq!(s.corrupt_blocks, 2);
        assert_eq!(s.used_bytes, 0);
    }

    #[test]
    fn tmp_names_carry_their_charge() {
        assert_eq!(tmp_charge("abc.12.ff.8192.tmp"), Some(8192));
        assert_eq!(tmp_charge("abc.tmp"), None);
        assert_eq!(tmp_charge("abc"), None);
        assert!(parse_hash(&"ab".repeat(32)).is_some());
        assert!(parse_hash("xyz").is_none());
    }
}
