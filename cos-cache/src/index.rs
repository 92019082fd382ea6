//! This process's picture of the block files on disk, for choosing what to evict: each block's
//! charge and last use (nanoseconds since the epoch, the unit of file mtimes), in LRU order, and
//! the blocks a running preload has pinned. A hint, never the authority: the usage counter under
//! `evict.lock` is what the capacity is checked against, and files may come and go underneath
//! (other processes), which eviction checks before it deletes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::block::BlockHash;

/// Now, in the unit of `Entry::used`.
pub(crate) fn now_nanos() -> u64 {
    nanos(SystemTime::now())
}

pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub charge: u64,
    pub used: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: HashMap<BlockHash, Entry>,
    lru: BTreeSet<(u64, BlockHash)>,
    pinned: HashMap<BlockHash, u32>,
    /// When the directory was last scanned into the index.
    pub last_scan: Option<Instant>,
}

impl Index {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, hash: &BlockHash) -> Option<Entry> {
        self.entries.get(hash).copied()
    }

    /// Records a block, or moves it later in LRU order (never earlier).
    pub(crate) fn touch(&mut self, hash: BlockHash, charge: u64, used: u64) {
        let used = match self.entries.get(&hash) {
            Some(old) => {
                self.lru.remove(&(old.used, hash));
                old.used.max(used)
            }
            None => used,
        };
        self.entries.insert(hash, Entry { charge, used });
        self.lru.insert((used, hash));
    }

    pub(crate) fn remove(&mut self, hash: &BlockHash) -> Option<Entry> {
        let old = self.entries.remove(hash)?;
        self.lru.remove(&(old.used, *hash));
        Some(old)
    }

    /// The least recently used block that is neither pinned nor in `skip`.
    pub(crate) fn oldest(&self, skip: &HashSet<BlockHash>) -> Option<(BlockHash, Entry)> {
        self.lru
            .iter()
            .map(|(_, h)| h)
            .find(|h| !self.pinned.contains_key(*h) && !skip.contains(*h))
            .and_then(|h| self.entries.get(h).map(|e| (*h, *e)))
    }

    /// Replaces every entry (after a scan); pins stay.
    pub(crate) fn replace_all(&mut self, entries: impl IntoIterator<Item = (BlockHash, Entry)>) {
        self.entries.clear();
        self.lru.clear();
        for (hash, e) in entries {
            self.touch(hash, e.charge, e.used);
        }
        self.last_scan = Some(Instant::now());
    }

    pub(crate) fn pin(&mut self, hash: BlockHash) {
        *self.pinned.entry(hash).or_insert(0) += 1;
    }

    pub(crate) fn unpin(&mut self, hash: &BlockHash) {
        if let Some(n) = self.pinned.get_mut(hash) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pinned.remove(hash);
            }
        }
    }

    pub(crate) fn is_pinned(&self, hash: &BlockHash) -> bool {
        self.pinned.contains_key(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> BlockHash {
        [n; 32]
    }

    #[test]
    fn lru_order_pins_and_skips() {
        let mut ix = Index::default();
        ix.touch(h(1), 10, 100);
        ix.touch(h(2), 10, 200);
        ix.touch(h(3), 10, 300);
        let none = HashSet::new();
        assert_eq!(ix.oldest(&none).map(|(x, _)| x), Some(h(1)));
        // Use moves a block to the back; an older time never moves it forward.
        ix.touch(h(1), 10, 400);
        ix.touch(h(1), 10, 50);
        assert_eq!(ix.get(&h(1)).map(|e| e.used), Some(400));
        assert_eq!(ix.oldest(&none).map(|(x, _)| x), Some(h(2)));
        ix.pin(h(2));
        ix.pin(h(2));
        assert_eq!(ix.oldest(&none).map(|(x, _)| x), Some(h(3)));
        let skip: HashSet<_> = [h(3)].into();
        assert_eq!(ix.oldest(&skip).map(|(x, _)| x), Some(h(1)));
        ix.unpin(&h(2));
        assert!(ix.is_pinned(&h(2)));
        ix.unpin(&h(2));
        assert!(!ix.is_pinned(&h(2)));
        assert_eq!(ix.oldest(&none).map(|(x, _)| x), Some(h(2)));
        assert_eq!(ix.remove(&h(2)).map(|e| e.charge), Some(10));
        assert_eq!(ix.remove(&h(2)), None);
        assert_eq!(ix.len(), 2);
        ix.replace_all([(h(9), Entry { charge: 1, used: 1 })]);
        assert_eq!(ix.len(), 1);
        assert!(ix.last_scan.is_some());
    }
}
