//! The cache's options and the errors of opening it. Validation only: nothing here touches disk.

use std::path::PathBuf;
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Bytes of the capacity kept for the cache's own small files (`evict.lock` holds the usage
/// counter; lock files are empty), so the directory as a whole stays within the capacity.
pub(crate) const META_RESERVE: u64 = 4 * KIB;

/// The smallest and largest block sizes accepted.
pub const MIN_BLOCK_SIZE: u64 = KIB;
pub const MAX_BLOCK_SIZE: u64 = 64 * MIB;

/// How a [`CachedStore`](crate::CachedStore) caches. Build it with [`CacheOptions::new`], then
/// change the fields that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// The cache directory (created if missing). Every process sharing a node's cache uses the
    /// same directory with the same `capacity_bytes`.
    pub dir: PathBuf,
    /// Which bucket the objects come from, e.g. `https://cos.ap-guangzhou.myqcloud.com/bkt-125`:
    /// part of every block's key, so buckets can share a directory without mixing.
    pub identity: String,
    /// The most bytes the directory holds: block files with their headers, files being written,
    /// and the cache's own small files. Block files are charged in 4 KiB units.
    pub capacity_bytes: u64,
    /// The size of a cached block (the last block of an object is shorter, and an object smaller
    /// than a block is one block of its own size). Default 1 MiB.
    pub block_size: u64,
    /// The in-memory tier for hot blocks (0 turns it off). Default 64 MiB.
    pub memory_bytes: u64,
    /// How long a HEAD result (or a listing's entry) stands for the object's current version.
    /// Default 15 s, as GooseFS-Lite's metadata cache. Zero: every unversioned read HEADs.
    pub metadata_ttl: Duration,
    /// How many objects the metadata cache remembers (0 turns it off). Default 100 000.
    pub metadata_entries: usize,
    /// The largest GET that adjacent missing blocks are coalesced into. Default 8 MiB.
    pub max_fetch_bytes: u64,
    /// The most GETs to the origin at once, over all requests of this store. Default 64
    /// (`cos_fuse::fs::READ_AHEAD_GETS`), as many as the fs core keeps in flight for one
    /// sequential reader without a cache.
    pub fetch_parallelism: usize,
    /// The most bytes of fetched blocks waiting to be written to disk. Blocks are written in the
    /// background, so a reader never waits for the disk; a block that does not fit is not cached
    /// (the disk is slower than the origin). Default 64 MiB.
    pub write_queue_bytes: u64,
    /// How long to wait for another process (or task) that is fetching a block before fetching it
    /// too. Default 30 s.
    pub lock_wait: Duration,
}

impl CacheOptions {
    /// Options with the defaults, for a cache of `capacity_bytes` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, identity: impl Into<String>, capacity_bytes: u64) -> Self {
        CacheOptions {
            dir: dir.into(),
            identity: identity.into(),
            capacity_bytes,
            block_size: MIB,
            memory_bytes: 64 * MIB,
            metadata_ttl: Duration::from_secs(15),
            metadata_entries: 100_000,
            max_fetch_bytes: 8 * MIB,
            fetch_parallelism: cos_fuse::fs::READ_AHEAD_GETS as usize,
            write_queue_bytes: 64 * MIB,
            lock_wait: Duration::from_secs(30),
        }
    }

    /// Checks the options against each other.
    pub fn validate(&self) -> Result<(), CacheError> {
        let invalid = |why: String| Err(CacheError::InvalidOptions(why));
        if self.identity.is_empty() {
            return invalid("identity is empty".into());
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size) {
            return invalid(format!(
                "block_size = {}: need {MIN_BLOCK_SIZE} ..= {MAX_BLOCK_SIZE}",
                self.block_size
            ));
        }
        let smallest = META_RESERVE + crate::block::charge(self.block_size + 8 * KIB);
        if self.capacity_bytes < smallest {
            return invalid(format!(
                "capacity_bytes = {}: need at least {smallest} for block_size = {}",
                self.capacity_bytes, self.block_size
            ));
        }
        if self.max_fetch_bytes < self.block_size {
            return invalid(format!(
                "max_fetch_bytes = {} is under block_size = {}",
                self.max_fetch_bytes, self.block_size
            ));
        }
        if self.fetch_parallelism == 0 {
            return invalid("fetch_parallelism = 0".into());
        }
        if self.write_queue_bytes < self.block_size {
            return invalid(format!(
                "write_queue_bytes = {} is under block_size = {}",
                self.write_queue_bytes, self.block_size
            ));
        }
        Ok(())
    }

    /// Blocks per coalesced GET.
    pub(crate) fn blocks_per_fetch(&self) -> u64 {
        (self.max_fetch_bytes / self.block_size).max(1)
    }
}

/// Why a cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid cache options: {0}")]
    InvalidOptions(String),
    #[error("cache directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let ok = CacheOptions::new("/tmp/x", "bkt", 1 << 30);
        assert_eq!(ok.validate().ok(), Some(()));
        type Change = fn(&mut CacheOptions);
        let cases: [(&str, Change); 7] = [
            ("identity", |o| o.identity.clear()),
            ("block_size", |o| o.block_size = 100),
            ("block_size", |o| o.block_size = 1 << 30),
            ("capacity_bytes", |o| o.capacity_bytes = 1 << 20),
            ("max_fetch_bytes", |o| o.max_fetch_bytes = 1),
            ("fetch_parallelism", |o| o.fetch_parallelism = 0),
            ("write_queue_bytes", |o| o.write_queue_bytes = 1),
        ];
        for (name, change) in cases {
            let mut o = ok.clone();
            change(&mut o);
            let err = o.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn blocks_per_fetch_rounds_down_and_is_never_zero() {
        let mut o = CacheOptions::new("/tmp/x", "bkt", 1 << 30);
        assert_eq!(o.blocks_per_fetch(), 8);
        o.max_fetch_bytes = o.block_size * 3 + 1;
        assert_eq!(o.blocks_per_fetch(), 3);
        o.max_fetch_bytes = 0;
        assert_eq!(o.blocks_per_fetch(), 1);
    }
}
