//! Proof of read access. The cache directory is shared by every mount of a node, each with its
//! own credentials, so a block one mount fetched must not be served to another that may not GET
//! the object (a HEAD or LIST right is not enough). Each store remembers which object versions
//! its own origin let it read: by a GET that fetched blocks, or else by a one-byte ranged GET
//! before the first cached block of that version is returned. A refused proof fails the read
//! with the origin's error, and nothing cached is returned. The proof is per store instance and
//! object version, so warm reads after the first make no request. This module holds the record;
//! the proof itself is `Shared::prove_access`, in `read`, where the reads that need it are.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Versions remembered before the record starts over (each then needs one more proof).
const MAX_PROVEN: usize = 100_000;

/// The object versions this store's origin has let it read: key to ETag (the latest proven).
#[derive(Debug, Default)]
pub(crate) struct Proven {
    versions: Mutex<HashMap<String, String>>,
}

impl Proven {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // A plain map of facts: a panic elsewhere cannot leave it unsafe to use.
        self.versions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn contains(&self, key: &str, etag: &str) -> bool {
        self.lock().get(key).is_some_and(|e| e == etag)
    }

    /// Records that the origin served bytes of this version to this store.
    pub(crate) fn insert(&self, key: &str, etag: &str) {
        let mut m = self.lock();
        if m.get(key).is_some_and(|e| e == etag) {
            return;
        }
        if m.len() >= MAX_PROVEN && !m.contains_key(key) {
            m.clear();
        }
        m.insert(key.to_string(), etag.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_version_of_each_key() {
        let p = Proven::default();
        assert!(!p.contains("k", "e1"));
        p.insert("k", "e1");
        assert!(p.contains("k", "e1"));
        assert!(!p.contains("k", "e2"));
        assert!(!p.contains("other", "e1"));
        p.insert("k", "e2");
        assert!(p.contains("k", "e2") && !p.contains("k", "e1"));
    }
}
