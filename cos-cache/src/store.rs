//! [`CachedStore`]: the `ObjectStore` decorator. Reads go through the tiers (`read`), HEADs
//! through the metadata cache, writes straight to the origin, after which the touched key's
//! metadata and blocks are forgotten. Listings pass through (the fs core caches them) and feed
//! the metadata cache on the way.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use cos_fuse::store::{
    CompletedPart, ListPage, MultipartUpload, ObjectMeta, ObjectStore, StoreError, concat,
};
use tokio::sync::Semaphore;

use crate::access::Proven;
use crate::block::BlockHash;
use crate::disk::{Disk, StoreFail};
use crate::memory::MemoryTier;
use crate::meta::MetaCache;
use crate::options::{CacheError, CacheOptions};
use crate::shared::Shared;
use crate::stats::{self, CacheStats, CacheStatsSnapshot};
use crate::write::{WriteBehind, WriteJob};

/// Threads writing fetched blocks to disk in the background: one keeps up with the origin, and
/// leaves the other cores to the readers.
const WRITER_THREADS: usize = 1;

/// Objects with more blocks than this are left to LRU eviction when they change, rather than
/// deleted block by block.
const MAX_EAGER_BLOCKS: u64 = 65_536;

/// An [`ObjectStore`] that serves reads from a block cache on local disk (and a small memory
/// tier), shared with the other processes that use the same directory. See the crate docs.
pub struct CachedStore<S: ObjectStore> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S: ObjectStore> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        CachedStore {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: ObjectStore> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("dir", &self.shared.opts.dir)
            .field("identity", &self.shared.opts.identity)
            .field("capacity_bytes", &self.shared.opts.capacity_bytes)
            .finish_non_exhaustive()
    }
}

impl<S: ObjectStore> CachedStore<S> {
    /// Opens (creating if needed) the cache in `options.dir` in front of `inner`: scans the
    /// directory to rebuild the LRU index and reconcile the usage counter (which also deletes
    /// what crashed writers left), and evicts if the capacity shrank.
    pub async fn open(inner: S, options: CacheOptions) -> Result<Self, CacheError> {
        options.validate()?;
        let stats = Arc::new(CacheStats::default());
        let disk = {
            let (dir, capacity, stats) = (
                options.dir.clone(),
                options.capacity_bytes,
                Arc::clone(&stats),
            );
            tokio::task::spawn_blocking(move || Disk::open(&dir, capacity, stats))
                .await
                .map_err(|e| CacheError::Io {
                    path: options.dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })??
        };
        let disk = Arc::new(disk);
        let writes = {
            let (disk, stats) = (Arc::clone(&disk), Arc::clone(&stats));
            WriteBehind::start(WRITER_THREADS, options.write_queue_bytes, move |job| {
                write_block(&disk, &stats, job)
            })
            .map_err(|source| CacheError::Io {
                path: options.dir.clone(),
                source,
            })?
        };
        Ok(CachedStore {
            shared: Arc::new(Shared {
                inner,
                memory: MemoryTier::new(options.memory_bytes),
                meta: MetaCache::new(options.metadata_ttl, options.metadata_entries),
                fetches: Semaphore::new(options.fetch_parallelism),
                proven: Proven::default(),
                disk,
                stats,
                writes,
                opts: options,
            }),
        })
    }

    /// Waits until every block fetched so far has been written to disk (or given up). Reads
    /// never need it: it is for whoever wants the disk to show what was read, such as a daemon
    /// about to exit or a test.
    pub async fn flush(&self) {
        self.shared.writes.flush().await;
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStatsSnapshot {
        self.shared.stats.snapshot()
    }

    pub fn options(&self) -> &CacheOptions {
        &self.shared.opts
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.shared.inner
    }

    /// Forgets what is cached of `key` (after a write): its metadata at once, its blocks too
    /// when the old version is known (otherwise they are unreachable and age out).
    async fn forget(&self, key: &str, changed: bool) {
        let old = self.shared.meta.remove(key);
        let Some(old) = old.filter(|_| changed) else {
            return;
        };
        let blocks = old.size.div_ceil(self.shared.opts.block_size);
        if blocks > MAX_EAGER_BLOCKS {
            return;
        }
        let hashes: Vec<BlockHash> = (0..blocks)
            .map(|i| self.shared.block_id_of(key, &old.etag, i).hash)
            .collect();
        for h in &hashes {
            self.shared.memory.remove(h);
        }
        let disk = Arc::clone(&self.shared.disk);
        let _ = tokio::task::spawn_blocking(move || disk.remove(&hashes)).await;
    }
}

/// Writes one block in the background; a failure only costs the hit.
fn write_block(disk: &Disk, stats: &CacheStats, job: &WriteJob) {
    match disk.store(&job.id, job.object_size, &job.data) {
        Ok(_) => {}
        Err(StoreFail::Full) => stats::add(&stats.blocks_not_cached, 1),
        Err(StoreFail::Io(e)) => {
            tracing::debug!(error = %e, "block not cached");
            stats::add(&stats.disk_errors, 1);
        }
    }
}

impl<S: ObjectStore> ObjectStore for CachedStore<S> {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage, StoreError> {
        let page = self
            .shared
            .inner
            .list(prefix, delimiter, continuation, max_keys)
            .await?;
        for o in &page.objects {
            self.shared.meta.insert(&o.key, Some(o.clone()));
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.shared.head_cached(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        Ok(concat(self.shared.get_pieces(key, range, if_match).await?))
    }

    async fn get_range_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.shared.get_pieces(key, range, if_match).await
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        let r = self.shared.inner.put(key, body).await;
        self.forget(key, r.is_ok()).await;
        r
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.shared.inner.create_multipart(key).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        self.shared
            .inner
            .upload_part(key, upload_id, number, body)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<String, StoreError> {
        let r = self
            .shared
            .inner
            .complete_multipart(key, upload_id, parts)
            .await;
        self.forget(key, r.is_ok()).await;
        r
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.shared.inner.abort_multipart(key, upload_id).await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, StoreError> {
        self.shared.inner.list_multipart_uploads(prefix).await
    }

    fn call_time_limit(&self) -> std::time::Duration {
        self.shared.inner.call_time_limit()
    }

    async fn copy(&self, from: &str, to: &str) -> Result<String, StoreError> {
        let r = self.shared.inner.copy(from, to).await;
        self.forget(to, r.is_ok()).await;
        r
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let r = self.shared.inner.delete(key).await;
        self.forget(key, r.is_ok()).await;
        r
    }

    fn read_unit(&self) -> Option<u64> {
        Some(self.shared.opts.block_size)
    }
}
