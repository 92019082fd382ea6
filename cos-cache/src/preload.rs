//! Warm-up: list prefixes, then load every block of every object onto disk with bounded
//! parallelism, pinning what it loads so its own later blocks never evict its earlier ones. When
//! only pinned blocks are left to evict, it stops and says so. Dropping the future midway is
//! safe: each block is written whole or not at all, locks and pins are released.

use std::sync::Arc;

use cos_fuse::store::{ObjectMeta, ObjectStore, StoreError};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::read::{LoadError, Mode, PinSet, Source, runs};
use crate::shared::Version;
use crate::store::CachedStore;

/// Where a preload is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PreloadProgress {
    pub objects_done: u64,
    pub objects_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// How a preload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PreloadOutcome {
    /// Every listed object was handled.
    Complete,
    /// The dataset does not fit: what was loaded stays, the rest was not attempted.
    CacheFull,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreloadReport {
    pub outcome: PreloadOutcome,
    pub objects_total: u64,
    pub bytes_total: u64,
    /// Objects whose every block is now cached, and their bytes.
    pub objects_cached: u64,
    pub bytes_cached: u64,
    /// Objects deleted or overwritten since they were listed (not cached).
    pub objects_changed: u64,
    /// Bytes fetched from the origin (the rest were cached already).
    pub bytes_fetched: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct ObjectState {
    chunks_left: u64,
    changed: bool,
}

/// Counts one chunk of object `n` done; the object too, when it was its last.
fn finish_chunk(
    n: usize,
    states: &mut [ObjectState],
    versions: &[Arc<Version>],
    report: &mut PreloadReport,
    p: &mut PreloadProgress,
    progress: &impl Fn(PreloadProgress),
) {
    let (Some(s), Some(v)) = (states.get_mut(n), versions.get(n)) else {
        return;
    };
    s.chunks_left = s.chunks_left.saturating_sub(1);
    if s.chunks_left > 0 {
        return;
    }
    if s.changed {
        report.objects_changed += 1;
    } else {
        report.objects_cached += 1;
        report.bytes_cached += v.size;
    }
    p.objects_done += 1;
    p.bytes_done += v.size;
    progress(*p);
}

impl<S: ObjectStore> CachedStore<S> {
    /// Loads every object under `prefixes` into the disk cache, at most `parallelism` GETs of
    /// up to `max_fetch_bytes` at once (also bounded by `fetch_parallelism`). `progress` is
    /// called with the totals once listed, then after each object. Objects gone or changed
    /// since listing are skipped; other origin errors end the preload.
    pub async fn preload(
        &self,
        prefixes: &[String],
        parallelism: usize,
        progress: impl Fn(PreloadProgress),
    ) -> Result<PreloadReport, StoreError> {
        let shared = &self.shared;
        let objects = self.list_all(prefixes).await?;
        let mut p = PreloadProgress {
            objects_total: objects.len() as u64,
            bytes_total: objects.iter().map(|o| o.size).sum(),
            ..PreloadProgress::default()
        };
        let mut report = PreloadReport {
            outcome: PreloadOutcome::Complete,
            objects_total: p.objects_total,
            bytes_total: p.bytes_total,
            objects_cached: 0,
            bytes_cached: 0,
            objects_changed: 0,
            bytes_fetched: 0,
        };
        progress(p);
        let bs = shared.opts.block_size;
        let mut units = Vec::new();
        let mut states = vec![ObjectState::default(); objects.len()];
        let mut versions = Vec::with_capacity(objects.len());
        for (n, o) in objects.into_iter().enumerate() {
            let blocks: Vec<u64> = (0..o.size.div_ceil(bs)).collect();
            for chunk in runs(blocks, |i| *i, shared.opts.blocks_per_fetch()) {
                units.push((n, chunk));
            }
            versions.push(Arc::new(Version {
                key: o.key,
                etag: o.etag,
                size: o.size,
            }));
        }
        for &(n, _) in &units {
            if let Some(s) = states.get_mut(n) {
                s.chunks_left += 1;
            }
        }
        // Empty objects have nothing to load.
        for s in &states {
            if s.chunks_left == 0 {
                report.objects_cached += 1;
                p.objects_done += 1;
                progress(p);
            }
        }
        let pins = Arc::new(PinSet::new(Arc::clone(&shared.disk)));
        let mode = Mode::Preload(pins);
        let parallelism = parallelism.max(1);
        let mut units = units.into_iter();
        let mut set = JoinSet::new();
        loop {
            while set.len() < parallelism {
                let Some((n, chunk)) = units.next() else {
                    break;
                };
                let Some(v) = versions.get(n) else { continue };
                if states.get(n).is_some_and(|s| s.changed) {
                    // Another chunk found the object changed: no use fetching the rest.
                    finish_chunk(n, &mut states, &versions, &mut report, &mut p, &progress);
                    continue;
                }
                let task = Arc::clone(shared).load_chunk(Arc::clone(v), chunk, mode.clone());
                set.spawn(async move { (n, task.await) });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (n, result) =
                joined.map_err(|e| StoreError::Unavailable(format!("preload task failed: {e}")))?;
            match result {
                Ok(loaded) => {
                    report.bytes_fetched += loaded
                        .iter()
                        .filter(|l| l.source == Source::Origin)
                        .map(|l| l.data.len() as u64)
                        .sum::<u64>();
                }
                Err(LoadError::Full) => {
                    report.outcome = PreloadOutcome::CacheFull;
                    set.abort_all();
                    break;
                }
                Err(LoadError::Store(StoreError::NotFound(_))) => {
                    if let Some(s) = states.get_mut(n) {
                        s.changed = true;
                    }
                }
                Err(LoadError::Store(e)) => return Err(e),
            }
            finish_chunk(n, &mut states, &versions, &mut report, &mut p, &progress);
        }
        Ok(report)
    }

    /// Every object under the prefixes, each once, in key order.
    async fn list_all(&self, prefixes: &[String]) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut objects = Vec::new();
        for prefix in prefixes {
            let mut token: Option<String> = None;
            loop {
                let page = self.list_page(prefix, token.as_deref()).await?;
                objects.extend(page.objects);
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.dedup_by(|a, b| a.key == b.key);
        Ok(objects)
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> Result<cos_fuse::store::ListPage, StoreError> {
        ObjectStore::list(self, prefix, None, token, None).await
    }
}
