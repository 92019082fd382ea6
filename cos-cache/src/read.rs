//! The read path: which version to read, then each block from the memory tier, else disk, else
//! the origin. Missing blocks are fetched in runs of adjacent blocks (one ranged GET per run, at
//! most `max_fetch_bytes`), runs in parallel, GETs bounded by `fetch_parallelism`.
//!
//! Before fetching a block a task takes its fetch lock (`lock`), then looks on disk again: if
//! another process or task finished the block meanwhile it is read from disk. A block whose lock
//! is held elsewhere is waited for (polling, 1 ms doubling to 50 ms) and then read from disk, or
//! fetched if the holder gave up; after `lock_wait` it is fetched regardless. Nothing is held
//! while waiting, so there is no deadlock, and a dropped future releases its locks.
//!
//! A block fetched for a read is returned as soon as its bytes arrive: it goes into the memory
//! tier and is queued for the disk (`write`) with its fetch lock, which is released once it is
//! written, so a task of this store waiting for it takes it from memory and another process
//! finds it on disk. A preload's blocks are written before its load returns (it must know they
//! fit).
//!
//! Cached blocks of a version are returned only once this store has proved it may read it
//! (`access`): a GET it made proves it, else one one-byte GET before the first cached return.
//!
//! Loads made for a preload ([`Mode::Preload`]) pin every block they touch in the preload's
//! [`PinSet`], so its later blocks never evict its earlier ones.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cos_fuse::store::{ObjectMeta, ObjectStore, StoreError};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::block::{BlockHash, BlockId};
use crate::disk::{Disk, StoreFail};
use crate::lock::FetchLock;
use crate::shared::{Shared, Version};
use crate::stats::{self, CacheStats};
use crate::write::WriteJob;

const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// The blocks one preload pinned; unpinned when the last task holding it ends.
#[derive(Debug)]
pub(crate) struct PinSet {
    disk: Arc<Disk>,
    hashes: Mutex<Vec<BlockHash>>,
}

impl PinSet {
    pub(crate) fn new(disk: Arc<Disk>) -> PinSet {
        PinSet {
            disk,
            hashes: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn pin(&self, hash: BlockHash) {
        self.disk.pin(hash);
        self.hashes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hash);
    }
}

impl Drop for PinSet {
    fn drop(&mut self) {
        let hashes = self
            .hashes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for h in hashes.iter() {
            self.disk.unpin(h);
        }
    }
}

/// Why blocks are loaded.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// For a caller's read: blocks that don't fit on disk are returned anyway.
    Read,
    /// For a preload: every block touched is pinned, and no room on disk stops the preload.
    Preload(Arc<PinSet>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Memory,
    Disk,
    Origin,
}

/// One block, loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub index: u64,
    pub data: Bytes,
    pub source: Source,
    /// For a block fetched from the origin: where in the object its GET started, and all that
    /// the GET returned (this block is a slice of it).
    pub get: Option<(u64, Bytes)>,
}

#[derive(Debug)]
pub(crate) enum LoadError {
    Store(StoreError),
    /// A preload found no room that isn't pinned.
    Full,
}

impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> Self {
        LoadError::Store(e)
    }
}

impl From<LoadError> for StoreError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(e) => e,
            LoadError::Full => StoreError::Unavailable("block cache full".into()),
        }
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("block cache task failed: {e}")))
}

/// Splits sorted block indexes into runs of adjacent blocks, each at most `max` long.
pub(crate) fn runs<T>(items: Vec<T>, index: impl Fn(&T) -> u64, max: u64) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    for item in items {
        let i = index(&item);
        match out.last_mut() {
            Some(run)
                if (run.len() as u64) < max
                    && run
                        .last()
                        .is_some_and(|prev| index(prev).checked_add(1) == Some(i)) =>
            {
                run.push(item)
            }
            _ => out.push(vec![item]),
        }
    }
    out
}

/// What a task may do with each block of a chunk after trying their fetch locks.
#[derive(Debug, Default)]
struct Claim {
    /// On disk after all (someone else fetched it).
    found: Vec<(u64, Bytes)>,
    /// Ours to fetch (the lock is `None` if locking failed for a reason other than a holder).
    owned: Vec<(BlockId, Option<FetchLock>)>,
    /// Being fetched by someone else.
    busy: Vec<u64>,
}

fn claim(disk: &Disk, stats: &CacheStats, ids: Vec<BlockId>) -> Claim {
    let mut c = Claim::default();
    for id in ids {
        let lock = match disk.try_fetch_lock(&id) {
            Ok(Some(l)) => Some(l),
            Ok(None) => {
                c.busy.push(id.index);
                continue;
            }
            Err(_) => {
                stats::add(&stats.disk_errors, 1);
                None
            }
        };
        match disk.read(&id) {
            Some((data, _)) => {
                drop(lock);
                stats::add(&stats.disk_hit_blocks, 1);
                c.found.push((id.index, data));
            }
            None => c.owned.push((id, lock)),
        }
    }
    c
}

impl<S: ObjectStore> Shared<S> {
    /// `ObjectStore::get_range_pieces` of the cached store: a piece per block, or one piece
    /// when the whole range came from one GET.
    pub(crate) async fn get_pieces(
        self: &Arc<Self>,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Vec<Bytes>, StoreError> {
        if range.start > range.end {
            return Err(StoreError::Invalid(format!("{key}: range {range:?}")));
        }
        if let Some(etag) = if_match {
            let v = self.version(key, etag, range.start).await?;
            return self.read_version(v.0, range, v.1).await;
        }
        let (meta, cached) = self.current(key, false).await?;
        match self.read_version(version(meta), range.clone(), None).await {
            // The cached version is gone: once more with the current one.
            Err(StoreError::NotFound(_)) if cached => {
                self.meta.remove(key);
                let (meta, _) = self.current(key, true).await?;
                self.read_version(version(meta), range, None).await
            }
            r => r,
        }
    }

    /// The current version of `key`, from the metadata cache unless `refresh`; whether it came
    /// from the cache.
    async fn current(&self, key: &str, refresh: bool) -> Result<(ObjectMeta, bool), StoreError> {
        if !refresh && let Some(m) = self.meta.fresh(key) {
            stats::add(&self.stats.metadata_hits, 1);
            return m
                .map(|m| (m, true))
                .ok_or_else(|| StoreError::NotFound(key.to_string()));
        }
        self.head_origin(key)
            .await?
            .map(|m| (m, false))
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }

    /// Version `etag` of `key`, whose size comes from the metadata cache, else from a cached
    /// block's header (the block holding `offset`, returned to spare reading it twice), else from
    /// a HEAD, which must still show that ETag.
    async fn version(
        &self,
        key: &str,
        etag: &str,
        offset: u64,
    ) -> Result<(Arc<Version>, Option<Loaded>), StoreError> {
        let make = |size| {
            Arc::new(Version {
                key: key.to_string(),
                etag: etag.to_string(),
                size,
            })
        };
        if let Some(size) = self.meta.size_of(key, etag) {
            return Ok((make(size), None));
        }
        let index = offset / self.opts.block_size;
        let id = self.block_id_of(key, etag, index);
        if let Some((data, size)) = self.memory.get(&id.hash) {
            stats::add(&self.stats.memory_hit_blocks, 1);
            return Ok((make(size), Some(loaded(index, data, Source::Memory))));
        }
        let disk = Arc::clone(&self.disk);
        if let Some((data, size)) = blocking(move || disk.read(&id)).await? {
            stats::add(&self.stats.disk_hit_blocks, 1);
            return Ok((make(size), Some(loaded(index, data, Source::Disk))));
        }
        match self.head_origin(key).await? {
            Some(m) if m.etag == etag => Ok((make(m.size), None)),
            _ => Err(StoreError::NotFound(format!("{key} (etag changed)"))),
        }
    }

    async fn read_version(
        self: &Arc<Self>,
        v: Arc<Version>,
        range: Range<u64>,
        probed: Option<Loaded>,
    ) -> Result<Vec<Bytes>, StoreError> {
        let size = v.size;
        if size == 0 {
            return Ok(Vec::new());
        }
        if range.start >= size {
            return Err(StoreError::Invalid(format!(
                "{}: range {range:?} of {size} bytes",
                v.key
            )));
        }
        let (start, end) = (range.start, range.end.min(size));
        if start == end {
            return Ok(Vec::new());
        }
        let bs = self.opts.block_size;
        let first = start / bs;
        let last = (end - 1) / bs;
        let count = usize::try_from(last - first + 1)
            .map_err(|_| StoreError::Invalid(format!("{}: range {range:?}", v.key)))?;
        let mut got: Vec<Option<(Bytes, Source)>> = vec![None; count];
        if let Some(p) = probed
            && let Some(slot) = got.get_mut(slot_of(p.index, first))
        {
            *slot = Some((p.data, p.source));
        }
        // Memory.
        let mut on_disk = Vec::new();
        for (k, slot) in got.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let id = self.block_id(&v, first + k as u64);
            match self.memory.get(&id.hash) {
                Some((data, _)) => {
                    stats::add(&self.stats.memory_hit_blocks, 1);
                    self.disk.note_use(&id.hash);
                    *slot = Some((data, Source::Memory));
                }
                None => on_disk.push(id),
            }
        }
        // Disk.
        if !on_disk.is_empty() {
            let disk = Arc::clone(&self.disk);
            let found = blocking(move || {
                on_disk
                    .into_iter()
                    .filter_map(|id| disk.read(&id).map(|(d, _)| (id, d)))
                    .collect::<Vec<_>>()
            })
            .await?;
            for (id, data) in found {
                stats::add(&self.stats.disk_hit_blocks, 1);
                self.memory.insert(id.hash, &data, size, false);
                if let Some(slot) = got.get_mut(slot_of(id.index, first)) {
                    *slot = Some((data, Source::Disk));
                }
            }
        }
        // Origin.
        let missing: Vec<u64> = got
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(k, _)| first + k as u64)
            .collect();
        // The GETs of this read, by where they started.
        let mut fetched: Vec<(u64, Bytes)> = Vec::new();
        if !missing.is_empty() {
            for l in self.load_blocks(&v, missing, &Mode::Read).await? {
                if let Some((at, data)) = &l.get
                    && !fetched.iter().any(|(a, _)| a == at)
                {
                    fetched.push((*at, data.clone()));
                }
                // Fetched blocks went into memory as they arrived (`write_behind`).
                if l.source == Source::Disk {
                    let hash = self.block_id(&v, l.index).hash;
                    self.memory.insert(hash, &l.data, size, false);
                }
                if let Some(slot) = got.get_mut(slot_of(l.index, first)) {
                    *slot = Some((l.data, l.source));
                }
            }
        }
        // Nothing cached is returned before this store's origin has let it read the version
        // (blocks it fetched for this read prove it; see `access`).
        if got
            .iter()
            .any(|s| s.as_ref().is_some_and(|(_, src)| *src != Source::Origin))
        {
            self.prove_access(&v, start).await?;
        }
        // Assemble.
        let (mut hit, mut miss) = (0u64, 0u64);
        let mut parts = Vec::with_capacity(count);
        for (k, slot) in got.into_iter().enumerate() {
            let index = first + k as u64;
            let block_start = index * bs;
            let expect = bs.min(size - block_start);
            let Some((data, source)) = slot else {
                return Err(StoreError::Unavailable(format!(
                    "{}: block {index} not loaded",
                    v.key
                )));
            };
            if data.len() as u64 != expect {
                return Err(StoreError::Unavailable(format!(
                    "{}: block {index} has {} bytes, not {expect}",
                    v.key,
                    data.len()
                )));
            }
            let from = start.max(block_start) - block_start;
            let to = end.min(block_start + expect) - block_start;
            let part = sub(&data, from, to).ok_or_else(|| {
                StoreError::Unavailable(format!("{}: block {index} is short", v.key))
            })?;
            match source {
                Source::Origin => miss += part.len() as u64,
                Source::Memory | Source::Disk => hit += part.len() as u64,
            }
            parts.push(part);
        }
        let requests = if miss == 0 {
            &self.stats.hit_requests
        } else {
            &self.stats.miss_requests
        };
        stats::add(requests, 1);
        stats::add(&self.stats.hit_bytes, hit);
        stats::add(&self.stats.miss_bytes, miss);
        // All of it from one GET: a slice of what that GET returned, not a copy.
        if let ([(at, data)], true) = (fetched.as_slice(), miss == end - start)
            && let Some(whole) = start
                .checked_sub(*at)
                .and_then(|from| sub(data, from, end - at))
        {
            return Ok(vec![whole]);
        }
        Ok(parts)
    }

    /// Loads these blocks (sorted) of `v`, not looking in memory or (first) on disk: runs of
    /// adjacent blocks in parallel.
    pub(crate) async fn load_blocks(
        self: &Arc<Self>,
        v: &Arc<Version>,
        blocks: Vec<u64>,
        mode: &Mode,
    ) -> Result<Vec<Loaded>, LoadError> {
        let mut chunks = runs(blocks, |i| *i, self.opts.blocks_per_fetch());
        if chunks.len() == 1
            && let Some(only) = chunks.pop()
        {
            return Arc::clone(self)
                .load_chunk(Arc::clone(v), only, mode.clone())
                .await;
        }
        let mut set = JoinSet::new();
        for c in chunks {
            set.spawn(Arc::clone(self).load_chunk(Arc::clone(v), c, mode.clone()));
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            let loaded = joined.map_err(|e| {
                LoadError::Store(StoreError::Unavailable(format!(
                    "block cache task failed: {e}"
                )))
            })??;
            out.extend(loaded);
        }
        Ok(out)
    }

    /// Loads one run of adjacent blocks, coordinating with other fetchers through the fetch
    /// locks.
    pub(crate) async fn load_chunk(
        self: Arc<Self>,
        v: Arc<Version>,
        blocks: Vec<u64>,
        mode: Mode,
    ) -> Result<Vec<Loaded>, LoadError> {
        let deadline = Instant::now() + self.opts.lock_wait;
        let mut backoff = Duration::from_millis(1);
        let mut pending = blocks;
        let mut out = Vec::with_capacity(pending.len());
        let mut waited = false;
        loop {
            if waited && matches!(mode, Mode::Read) {
                // Fetched by another task of this store: in memory as soon as its bytes arrived,
                // on disk only once written.
                pending.retain(|&i| match self.memory.get(&self.block_id(&v, i).hash) {
                    Some((data, _)) => {
                        stats::add(&self.stats.memory_hit_blocks, 1);
                        out.push(loaded(i, data, Source::Memory));
                        false
                    }
                    None => true,
                });
                if pending.is_empty() {
                    break;
                }
            }
            let ids: Vec<BlockId> = pending.iter().map(|&i| self.block_id(&v, i)).collect();
            if let Mode::Preload(pins) = &mode {
                for id in &ids {
                    pins.pin(id.hash);
                }
            }
            let (disk, st) = (Arc::clone(&self.disk), Arc::clone(&self.stats));
            let c = blocking(move || claim(&disk, &st, ids)).await?;
            out.extend(
                c.found
                    .into_iter()
                    .map(|(i, data)| loaded(i, data, Source::Disk)),
            );
            for run in runs(c.owned, |(id, _)| id.index, u64::MAX) {
                out.extend(self.fetch_run(&v, run, &mode).await?);
            }
            if c.busy.is_empty() {
                break;
            }
            if !waited {
                waited = true;
                stats::add(&self.stats.lock_waits, 1);
            }
            if Instant::now() >= deadline {
                stats::add(&self.stats.lock_timeouts, 1);
                let ids = c.busy.iter().map(|&i| (self.block_id(&v, i), None));
                for run in runs(ids.collect(), |(id, _)| id.index, u64::MAX) {
                    out.extend(self.fetch_run(&v, run, &mode).await?);
                }
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pending = c.busy;
        }
        Ok(out)
    }

    /// One GET for a run of adjacent blocks, then has them written to disk (releasing their
    /// locks once written, so a waiter finds them): in the background for a read, before
    /// returning for a preload.
    async fn fetch_run(
        &self,
        v: &Arc<Version>,
        run: Vec<(BlockId, Option<FetchLock>)>,
        mode: &Mode,
    ) -> Result<Vec<Loaded>, LoadError> {
        let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) else {
            return Ok(Vec::new());
        };
        let bs = self.opts.block_size;
        let start = first.index.saturating_mul(bs);
        let end = last.index.saturating_add(1).saturating_mul(bs).min(v.size);
        if start >= end {
            return Err(LoadError::Store(StoreError::Invalid(format!(
                "{}: no block {} in {} bytes",
                v.key, first.index, v.size
            ))));
        }
        let data = {
            let _permit = self.fetches.acquire().await.map_err(|_| {
                LoadError::Store(StoreError::Unavailable("block cache closed".into()))
            })?;
            stats::add(&self.stats.origin_requests, 1);
            self.inner
                .get_range(&v.key, start..end, Some(&v.etag))
                .await?
        };
        // The origin let this store read the version (`access`).
        self.proven.insert(&v.key, &v.etag);
        stats::add(&self.stats.origin_bytes, data.len() as u64);
        if data.len() as u64 != end - start {
            return Err(LoadError::Store(StoreError::Unavailable(format!(
                "{}: origin returned {} bytes for {start}..{end}",
                v.key,
                data.len()
            ))));
        }
        let mut blocks = Vec::with_capacity(run.len());
        let mut out = Vec::with_capacity(run.len());
        for (id, lock) in run {
            let from = id.index.saturating_mul(bs).saturating_sub(start);
            let to = from.saturating_add(bs).min(end - start);
            let Some(part) = sub(&data, from, to) else {
                return Err(LoadError::Store(StoreError::Unavailable(format!(
                    "{}: block {} is not in {start}..{end}",
                    v.key, id.index
                ))));
            };
            out.push(Loaded {
                index: id.index,
                data: part.clone(),
                source: Source::Origin,
                get: Some((start, data.clone())),
            });
            blocks.push((id, part, lock));
        }
        if !matches!(mode, Mode::Preload(_)) {
            self.write_behind(v, blocks);
            return Ok(out);
        }
        let (disk, st, size) = (Arc::clone(&self.disk), Arc::clone(&self.stats), v.size);
        let full = blocking(move || {
            let mut full = false;
            for (id, part, lock) in blocks {
                match disk.store(&id, size, &part) {
                    Ok(_) => {}
                    Err(StoreFail::Full) => {
                        full = true;
                        stats::add(&st.blocks_not_cached, 1);
                    }
                    Err(StoreFail::Io(e)) => {
                        tracing::debug!(error = %e, "block not cached");
                        stats::add(&st.disk_errors, 1);
                    }
                }
                drop(lock);
            }
            full
        })
        .await?;
        if full {
            return Err(LoadError::Full);
        }
        Ok(out)
    }

    /// Blocks fetched for a read: into the memory tier at once (where this store's other readers
    /// waiting for them look), and queued for the disk with their fetch locks, released once
    /// written. A block the queue has no room for is not cached.
    fn write_behind(&self, v: &Version, blocks: Vec<(BlockId, Bytes, Option<FetchLock>)>) {
        // The blocks of a GET of one or two blocks (what a sequential read asks for) go in as
        // slices of its buffer, not copies, which on a cold read would cost as much CPU as the
        // disk write: the tier may then hold up to twice what it counts, while one of the two
        // is evicted and the other not. Longer GETs' blocks are copied.
        let copy = blocks.len() > 2;
        for (id, data, lock) in blocks {
            self.memory.insert(id.hash, &data, v.size, copy);
            let job = WriteJob {
                id,
                object_size: v.size,
                data,
                _lock: lock,
            };
            if !self.writes.submit(job) {
                stats::add(&self.stats.writes_dropped, 1);
            }
        }
    }
}

/// Bytes `from..to` of `data`, if it has them.
fn sub(data: &Bytes, from: u64, to: u64) -> Option<Bytes> {
    let (from, to) = (usize::try_from(from).ok()?, usize::try_from(to).ok()?);
    (from <= to && to <= data.len()).then(|| data.slice(from..to))
}

fn version(m: ObjectMeta) -> Arc<Version> {
    Arc::new(Version {
        key: m.key,
        etag: m.etag,
        size: m.size,
    })
}

fn loaded(index: u64, data: Bytes, source: Source) -> Loaded {
    Loaded {
        index,
        data,
        source,
        get: None,
    }
}

/// The position of block `index` in a request starting at block `first` (out of range, and so
/// ignored, if before it).
fn slot_of(index: u64, first: u64) -> usize {
    index
        .checked_sub(first)
        .and_then(|k| usize::try_from(k).ok())
        .unwrap_or(usize::MAX)
}

impl<S: ObjectStore> Shared<S> {
    /// Succeeds once this store's origin has let it read version `v` (asking it, with a one-byte
    /// GET at `offset`, unless it has already). `offset` is inside the object.
    pub(crate) async fn prove_access(&self, v: &Version, offset: u64) -> Result<(), StoreError> {
        if self.proven.contains(&v.key, &v.etag) {
            return Ok(());
        }
        let one = offset..offset.saturating_add(1);
        stats::add(&self.stats.access_checks, 1);
        match self.inner.get_range(&v.key, one, Some(&v.etag)).await {
            Ok(_) => {}
            // The origin has moved on from this version (a read with the caller's ETag, served
            // from the cache): the right to read the object is what is proved, so ask for the
            // current version's first byte. An empty object refuses the range only once the
            // right to read it was checked.
            Err(StoreError::NotFound(_)) => {
                stats::add(&self.stats.access_checks, 1);
                match self.inner.get_range(&v.key, 0..1, None).await {
                    Ok(_) | Err(StoreError::Invalid(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.proven.insert(&v.key, &v.etag);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_gaps_and_length() {
        let r = runs(vec![1u64, 2, 3, 5, 6, 9], |i| *i, 2);
        assert_eq!(r, vec![vec![1, 2], vec![3], vec![5, 6], vec![9]]);
        let r = runs(vec![1u64, 2, 3, 5], |i| *i, u64::MAX);
        assert_eq!(r, vec![vec![1, 2, 3], vec![5]]);
        assert!(runs(Vec::<u64>::new(), |i| *i, 4).is_empty());
        let r = runs(vec![u64::MAX - 1, u64::MAX], |i| *i, 8);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn slots() {
        assert_eq!(slot_of(5, 3), 2);
        assert_eq!(slot_of(2, 3), usize::MAX);
    }
}
