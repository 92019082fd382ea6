//! Counters of one `CachedStore`, as atomics updated on the hot path and read as a snapshot
//! (for metrics and the GooseFS web status). Counters only grow, except the two gauges
//! `used_bytes` and `capacity_bytes`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The live counters. Read them with [`CacheStats::snapshot`].
        #[derive(Debug, Default)]
        pub struct CacheStats {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// The counters at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct CacheStatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl CacheStats {
            pub fn snapshot(&self) -> CacheStatsSnapshot {
                CacheStatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

stats! {
    /// `get_range` calls served without a GET to the origin.
    hit_requests,
    /// `get_range` calls that fetched at least one block from the origin.
    miss_requests,
    /// Bytes returned from cached blocks (memory or disk).
    hit_bytes,
    /// Bytes returned from blocks fetched for the call.
    miss_bytes,
    /// Blocks found in the memory tier.
    memory_hit_blocks,
    /// Blocks read (and verified) from disk.
    disk_hit_blocks,
    /// GETs sent to the origin.
    origin_requests,
    /// Bytes those GETs returned (whole blocks: may exceed the bytes asked for).
    origin_bytes,
    /// One-byte GETs that proved this store may read an object before its cached blocks were
    /// served (not counted in `origin_requests`).
    access_checks,
    /// HEADs answered from the metadata cache.
    metadata_hits,
    /// HEADs sent to the origin.
    metadata_misses,
    /// Blocks this process evicted, and their charged bytes.
    evictions,
    evicted_bytes,
    /// The bytes charged to the cache directory when this process last looked, and its capacity.
    used_bytes,
    capacity_bytes,
    /// Block files that failed verification and were deleted.
    corrupt_blocks,
    /// Fetched blocks not written to disk: no room (everything left pinned by a preload).
    blocks_not_cached,
    /// Fetched blocks not written to disk because the write queue was full (the disk was slower
    /// than the origin): the reader got them; a later read fetches them again.
    writes_dropped,
    /// Disk errors of the cache (reads, writes), which fall back to the origin.
    disk_errors,
    /// Times a block was being fetched by another process or task and this one waited.
    lock_waits,
    /// Waits that ran out (`lock_wait`), after which the block was fetched anyway.
    lock_timeouts,
}

impl CacheStatsSnapshot {
    /// The share of returned bytes that came from the cache, 0.0 ..= 1.0.
    pub fn byte_hit_ratio(&self) -> f64 {
        let total = self.hit_bytes.saturating_add(self.miss_bytes);
        if total == 0 {
            return 0.0;
        }
        self.hit_bytes as f64 / total as f64
    }
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn set(gauge: &AtomicU64, n: u64) {
    gauge.store(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_ratio() {
        let s = CacheStats::default();
        assert_eq!(s.snapshot().byte_hit_ratio(), 0.0);
        add(&s.hit_bytes, 3);
        add(&s.miss_bytes, 1);
        set(&s.used_bytes, 7);
        set(&s.used_bytes, 5);
        let snap = s.snapshot();
        assert_eq!(
            (snap.hit_bytes, snap.miss_bytes, snap.used_bytes),
            (3, 1, 5)
        );
        assert_eq!(snap.byte_hit_ratio(), 0.75);
    }
}
