//! The in-memory tier: hot blocks of this process, least recently used out, within a byte
//! budget. Blocks are keyed by their hash (which includes the ETag), so an entry is never stale;
//! it holds verified data only (fresh from the origin or checked on disk).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::block::BlockHash;

#[derive(Debug)]
struct Slot {
    data: Bytes,
    object_size: u64,
    tick: u64,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<BlockHash, Slot>,
    lru: BTreeMap<u64, BlockHash>,
    used: u64,
    tick: u64,
}

#[derive(Debug)]
pub(crate) struct MemoryTier {
    capacity: u64,
    inner: Mutex<Inner>,
}

impl MemoryTier {
    pub(crate) fn new(capacity: u64) -> Self {
        MemoryTier {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The block and its object's size.
    pub(crate) fn get(&self, hash: &BlockHash) -> Option<(Bytes, u64)> {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.slots.get_mut(hash)?;
        inner.lru.remove(&slot.tick);
        slot.tick = tick;
        inner.lru.insert(tick, *hash);
        Some((slot.data.clone(), slot.object_size))
    }

    /// Keeps a block. `data` is copied when `copy` says so (it is a slice of a much larger
    /// buffer, a coalesced GET), so the tier holds little more memory than it counts.
    pub(crate) fn insert(&self, hash: BlockHash, data: &Bytes, object_size: u64, copy: bool) {
        let len = data.len() as u64;
        if len > self.capacity {
            return;
        }
        let data = if copy {
            Bytes::copy_from_slice(data)
        } else {
            data.clone()
        };
        let mut g = self.lock();
        let inner = &mut *g;
        if let Some(old) = inner.slots.remove(&hash) {
            inner.lru.remove(&old.tick);
            inner.used -= old.data.len() as u64;
        }
        while inner.used + len > self.capacity {
            let Some((_, victim)) = inner.lru.pop_first() else {
                break;
            };
            if let Some(old) = inner.slots.remove(&victim) {
                inner.used -= old.data.len() as u64;
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.lru.insert(tick, hash);
        inner.used += len;
        inner.slots.insert(
            hash,
            Slot {
                data,
                object_size,
                tick,
            },
        );
    }

    pub(crate) fn remove(&self, hash: &BlockHash) {
        let mut g = self.lock();
        if let Some(old) = g.slots.remove(hash) {
            g.lru.remove(&old.tick);
            g.used -= old.data.len() as u64;
        }
    }

    #[cfg(test)]
    fn used(&self) -> u64 {
        self.lock().used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> BlockHash {
        [n; 32]
    }

    #[test]
    fn lru_within_budget() {
        let m = MemoryTier::new(10);
        m.insert(h(1), &Bytes::from_static(b"aaaa"), 4, false);
        m.insert(h(2), &Bytes::from_static(b"bbbb"), 4, true);
        assert_eq!(
            m.get(&h(1)).map(|(d, _)| d),
            Some(Bytes::from_static(b"aaaa"))
        );
        m.insert(h(3), &Bytes::from_static(b"cccc"), 4, false);
        assert!(m.get(&h(2)).is_none(), "least recently used went");
        assert!(m.get(&h(1)).is_some() && m.get(&h(3)).is_some());
        assert_eq!(m.used(), 8);
        m.insert(h(4), &Bytes::from_static(b"too big for it"), 14, false);
        assert!(m.get(&h(4)).is_none());
        m.insert(h(1), &Bytes::from_static(b"a"), 1, false);
        assert_eq!(m.used(), 5);
        m.remove(&h(1));
        m.remove(&h(1));
        assert_eq!(m.used(), 4);
        let off = MemoryTier::new(0);
        off.insert(h(1), &Bytes::from_static(b"a"), 1, false);
        assert!(off.get(&h(1)).is_none());
    }
}
