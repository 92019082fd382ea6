//! The metadata cache: what HEAD (or a listing) said of a key, trusted as the current version for
//! `ttl`, absence included. Older entries still tell the size of an exact ETag (a version's size
//! never changes) and which blocks to delete when the key is overwritten. Bounded: the oldest
//! entries go first, which with one TTL for all is also expiry order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cos_fuse::store::ObjectMeta;

#[derive(Debug)]
struct Entry {
    meta: Option<ObjectMeta>,
    at: Instant,
    serial: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Keys in insertion order; stale when the key was inserted again since.
    order: VecDeque<(String, u64)>,
    serial: u64,
}

#[derive(Debug)]
pub(crate) struct MetaCache {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

impl MetaCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        MetaCache {
            ttl,
            max,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current version within the TTL: `Some(None)` means known absent.
    pub(crate) fn fresh(&self, key: &str) -> Option<Option<ObjectMeta>> {
        let g = self.lock();
        let e = g.map.get(key)?;
        (e.at.elapsed() < self.ttl).then(|| e.meta.clone())
    }

    /// The size of version `etag` of `key`, however old the entry.
    pub(crate) fn size_of(&self, key: &str, etag: &str) -> Option<u64> {
        let g = self.lock();
        let m = g.map.get(key)?.meta.as_ref()?;
        (m.etag == etag).then_some(m.size)
    }

    pub(crate) fn insert(&self, key: &str, meta: Option<ObjectMeta>) {
        if self.max == 0 {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        inner.serial += 1;
        let serial = inner.serial;
        inner.map.insert(
            key.to_string(),
            Entry {
                meta,
                at: Instant::now(),
                serial,
            },
        );
        inner.order.push_back((key.to_string(), serial));
        while inner.map.len() > self.max {
            let Some((old, s)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&old).is_some_and(|e| e.serial == s) {
                inner.map.remove(&old);
            }
        }
        // Re-inserted keys leave stale queue entries behind: compact now and then.
        if inner.order.len() > 2 * self.max + 64 {
            let map = &inner.map;
            inner
                .order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.serial == *s));
        }
    }

    /// Forgets `key`; returns what was known of it.
    pub(crate) fn remove(&self, key: &str) -> Option<ObjectMeta> {
        self.lock().map.remove(key).and_then(|e| e.meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn meta(key: &str, etag: &str, size: u64) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            key: key.into(),
            size,
            etag: etag.into(),
            last_modified: SystemTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn ttl_absence_and_sizes_of_versions() {
        let c = MetaCache::new(Duration::from_millis(50), 10);
        assert_eq!(c.fresh("a"), None);
        c.insert("a", meta("a", "e1", 5));
        c.insert("gone", None);
        assert_eq!(c.fresh("a"), Some(meta("a", "e1", 5)));
        assert_eq!(c.fresh("gone"), Some(None));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.fresh("a"), None, "expired");
        assert_eq!(
            c.size_of("a", "e1"),
            Some(5),
            "a version's size outlives the TTL"
        );
        assert_eq!(c.size_of("a", "e2"), None);
        assert_eq!(c.remove("a"), meta("a", "e1", 5));
        assert_eq!(c.size_of("a", "e1"), None);
    }

    #[test]
    fn bounded_oldest_first_and_compacted() {
        let c = MetaCache::new(Duration::from_secs(60), 3);
        for k in ["a", "b", "c", "d"] {
            c.insert(k, meta(k, "e", 1));
        }
        assert_eq!(c.fresh("a"), None);
        assert!(c.fresh("d").is_some());
        for _ in 0..1000 {
            c.insert("d", meta("d", "e", 1));
        }
        let g = c.lock();
        assert!(g.order.len() <= 2 * 3 + 64 + 1);
        assert_eq!(g.map.len(), 3);
        drop(g);
        let off = MetaCache::new(Duration::from_secs(60), 0);
        off.insert("a", meta("a", "e", 1));
        assert_eq!(off.fresh("a"), None);
    }
}
