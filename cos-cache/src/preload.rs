//! Warm-up: list prefixes, then load every block of every object onto disk with bounded
//! parallelism, pinning what it loads so its own later blocks never evict its earlier ones. When
//! only pinned blocks are left to evict, it stops and says so. Dropping the future midway is
//! safe: each block is written whole or not at all, locks and pins are released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cos_fuse::config::format_size_approx;
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

/// What a warm-up logs: a summary line every `interval` (and when done), instead of one line per
/// object, and at most `max_errors` errors per interval, the rest only counted. Pure: the caller
/// passes the time and writes the lines.
#[derive(Debug)]
pub struct WarmupLog {
    interval: Duration,
    max_errors: u32,
    started: Instant,
    last_line: Instant,
    errors_shown: u32,
    errors_hidden: u64,
    finished: bool,
}

impl WarmupLog {
    pub fn new(started: Instant, interval: Duration, max_errors: u32) -> WarmupLog {
        WarmupLog {
            interval,
            max_errors,
            started,
            last_line: started,
            errors_shown: 0,
            errors_hidden: 0,
            finished: false,
        }
    }

    /// The summary to log now for `p`, if one is due: `interval` after the last one, or once
    /// every object is done. Starts a new interval (for lines and for errors).
    pub fn progress(&mut self, p: PreloadProgress, now: Instant) -> Option<String> {
        let done = p.objects_total > 0 && p.objects_done >= p.objects_total;
        let due = now.saturating_duration_since(self.last_line) >= self.interval;
        if self.finished || !(due || done) {
            return None;
        }
        self.finished = done;
        self.last_line = now;
        self.errors_shown = 0;
        let mut line = summary(p, now.saturating_duration_since(self.started));
        if self.errors_hidden > 0 {
            line.push_str(&format!(", {} more errors not shown", self.errors_hidden));
            self.errors_hidden = 0;
        }
        Some(line)
    }

    /// Whether to log this error on its own line: at most `max_errors` per interval; the others
    /// are counted into the next summary.
    pub fn error(&mut self) -> bool {
        if self.errors_shown < self.max_errors {
            self.errors_shown += 1;
            true
        } else {
            self.errors_hidden += 1;
            false
        }
    }
}

/// Bytes per second so far, and the time left at that rate (`None` before any byte is done).
pub fn rate_and_eta(p: PreloadProgress, elapsed: Duration) -> (f64, Option<Duration>) {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || p.bytes_done == 0 {
        return (0.0, None);
    }
    let rate = p.bytes_done as f64 / secs;
    let left = p.bytes_total.saturating_sub(p.bytes_done) as f64;
    (rate, Some(Duration::from_secs_f64(left / rate)))
}

/// `12/340 objects, 1.2/10.0 GiB, 85.3 MiB/s, ETA 1m48s`.
pub fn summary(p: PreloadProgress, elapsed: Duration) -> String {
    let (rate, eta) = rate_and_eta(p, elapsed);
    let eta = match eta {
        Some(eta) => format_duration(eta),
        None if p.bytes_total == p.bytes_done => "0s".to_owned(),
        None => "unknown".to_owned(),
    };
    format!(
        "{}/{} objects, {} / {}, {:.1} MiB/s, ETA {eta}",
        p.objects_done,
        p.objects_total,
        format_size_approx(p.bytes_done),
        format_size_approx(p.bytes_total),
        rate / (1u64 << 20) as f64,
    )
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The largest GET of a preload. Against a store that caps each connection's bandwidth, the
/// GETs in flight set the speed, not their size: a preload keeps `fetch_parallelism` of them
/// running (64 by default), and this keeps their memory (that many times this, 128 MiB) well
/// under the daemon's budget.
const PRELOAD_FETCH_BYTES: u64 = 2 << 20;

/// Blocks per GET of a preload: at most `max_fetch_bytes` and [`PRELOAD_FETCH_BYTES`], at least
/// one block.
fn preload_blocks_per_fetch(opts: &crate::CacheOptions) -> u64 {
    let most = opts.max_fetch_bytes.min(PRELOAD_FETCH_BYTES);
    (most / opts.block_size).max(1)
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
    /// up to `max_fetch_bytes` (and 2 MiB) at once, also bounded by `fetch_parallelism`: pass
    /// that to fetch as fast as a read without the cache. `progress` is
    /// called with the totals once listed, then after each object. Objects gone or changed
    /// since listing are skipped; other origin errors end the preload.
    pub async fn preload(
        &self,
        prefixes: &[String],
        parallelism: usize,
        progress: impl Fn(PreloadProgress),
    ) -> Result<PreloadReport, StoreError> {
        self.preload_with(prefixes, parallelism, progress, |_, _| {})
            .await
    }

    /// [`CachedStore::preload`], also calling `skipped` with the key of each object skipped
    /// (gone or changed since listing) and why.
    pub async fn preload_with(
        &self,
        prefixes: &[String],
        parallelism: usize,
        progress: impl Fn(PreloadProgress),
        skipped: impl Fn(&str, &StoreError),
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
            for chunk in runs(blocks, |i| *i, preload_blocks_per_fetch(&shared.opts)) {
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
                Err(LoadError::Store(e @ StoreError::NotFound(_))) => {
                    if let Some(s) = states.get_mut(n)
                        && !s.changed
                    {
                        s.changed = true;
                        if let Some(v) = versions.get(n) {
                            skipped(&v.key, &e);
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn at(objects_done: u64, bytes_done: u64) -> PreloadProgress {
        PreloadProgress {
            objects_done,
            objects_total: 10,
            bytes_done,
            bytes_total: 1000 * MIB,
        }
    }

    #[test]
    fn summaries_show_counts_sizes_rate_and_eta() {
        assert_eq!(
            summary(at(2, 200 * MIB), Duration::from_secs(10)),
            "2/10 objects, 200.0MiB / 1000.0MiB, 20.0 MiB/s, ETA 40s"
        );
        let (rate, eta) = rate_and_eta(at(1, 10 * MIB), Duration::from_secs(1));
        assert_eq!(rate, (10 * MIB) as f64);
        assert_eq!(eta, Some(Duration::from_secs(99)));
        assert_eq!(
            summary(at(0, 0), Duration::from_secs(3)),
            "0/10 objects, 0B / 1000.0MiB, 0.0 MiB/s, ETA unknown"
        );
        assert_eq!(format_duration(Duration::from_secs(3725)), "1h02m");
        assert_eq!(format_duration(Duration::from_millis(61_500)), "1m02s");
        assert_eq!(format_size_approx(3 << 30), "3.0GiB");
    }

    #[test]
    fn lines_come_every_interval_and_once_at_the_end() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut log = WarmupLog::new(t0, 5 * s, 2);
        assert_eq!(log.progress(at(0, 0), t0), None, "not due yet");
        assert_eq!(log.progress(at(1, MIB), t0 + 4 * s), None);
        assert!(log.progress(at(2, MIB), t0 + 5 * s).is_some());
        assert_eq!(log.progress(at(3, MIB), t0 + 9 * s), None);
        let done = log.progress(at(10, 1000 * MIB), t0 + 9 * s);
        assert!(done.is_some_and(|l| l.starts_with("10/10 objects")));
        assert_eq!(log.progress(at(10, 1000 * MIB), t0 + 20 * s), None, "once");
    }

    #[test]
    fn errors_are_bounded_per_interval_and_the_rest_counted() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut log = WarmupLog::new(t0, 5 * s, 2);
        assert_eq!(
            [log.error(), log.error(), log.error(), log.error()],
            [true, true, false, false]
        );
        let line = log.progress(at(1, MIB), t0 + 5 * s).unwrap_or_default();
        assert!(line.ends_with(", 2 more errors not shown"), "{line}");
        assert!(log.error(), "a new interval shows errors again");
        let line = log.progress(at(2, MIB), t0 + 10 * s).unwrap_or_default();
        assert!(!line.contains("not shown"), "{line}");
    }
}
