//! What every task of a cached store shares ([`Shared`]: the origin, the options, the disk and
//! memory tiers, the metadata cache, the counters and the bound on GETs in flight), the object
//! version a read is of ([`Version`]), the name of a block of a version, and HEADs through the
//! metadata cache, the versions this store has proved it may read, and the disk writes in the
//! background. The read path and the store's writes both build on it; it does not load
//! blocks itself.

use std::sync::Arc;

use cos_fuse::store::{ObjectMeta, ObjectStore, StoreError};
use tokio::sync::Semaphore;

use crate::access::Proven;
use crate::block::BlockId;
use crate::disk::Disk;
use crate::memory::MemoryTier;
use crate::meta::MetaCache;
use crate::options::CacheOptions;
use crate::stats::{self, CacheStats};
use crate::write::WriteBehind;

/// One version of one object.
#[derive(Debug)]
pub(crate) struct Version {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

/// What every task of a store shares.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    pub inner: S,
    pub opts: CacheOptions,
    pub disk: Arc<Disk>,
    pub memory: MemoryTier,
    pub meta: MetaCache,
    pub stats: Arc<CacheStats>,
    /// Bounds the GETs to the origin in flight, over all requests.
    pub fetches: Semaphore,
    /// The object versions this store's own origin has let it read (`access`).
    pub proven: Proven,
    /// Blocks fetched for reads, on their way to disk.
    pub writes: WriteBehind,
}

impl<S> Shared<S> {
    pub(crate) fn block_id_of(&self, key: &str, etag: &str, index: u64) -> BlockId {
        BlockId::new(&self.opts.identity, key, etag, self.opts.block_size, index)
    }

    pub(crate) fn block_id(&self, v: &Version, index: u64) -> BlockId {
        self.block_id_of(&v.key, &v.etag, index)
    }
}

impl<S: ObjectStore> Shared<S> {
    /// HEAD through the metadata cache.
    pub(crate) async fn head_cached(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        if let Some(m) = self.meta.fresh(key) {
            stats::add(&self.stats.metadata_hits, 1);
            return Ok(m);
        }
        self.head_origin(key).await
    }

    /// HEAD at the origin, remembered.
    pub(crate) async fn head_origin(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        stats::add(&self.stats.metadata_misses, 1);
        let m = self.inner.head(key).await?;
        self.meta.insert(key, m.clone());
        Ok(m)
    }
}
