//! The memory budget: one semaphore of bytes shared by read-ahead blocks, write buffers and the
//! parts of staged uploads. It owns the accounting, not the memory: a holder keeps its
//! [`Reservation`] as long as it keeps the bytes.
//!
//! Two kinds of users. *Optional* ones (read-ahead, write buffers that could spill to a staging
//! file) only take what leaves a reserve (a quarter of the budget) free and never wait. *Demand*
//! ones (the bytes a read asks for, a part read from a staging file) wait, and release soon, so
//! the reserve guarantees they progress even when idle optional holders keep the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(crate) struct Budget {
    sem: Arc<Semaphore>,
    total: u64,
    reserve: u64,
    in_use: AtomicU64,
    peak: AtomicU64,
}

/// Bytes held against the budget, released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
    budget: Arc<Budget>,
}

impl Budget {
    pub(crate) fn new(total: u64) -> Arc<Self> {
        let total = total.min(Semaphore::MAX_PERMITS as u64);
        Arc::new(Budget {
            sem: Arc::new(Semaphore::new(usize::try_from(total).unwrap_or(usize::MAX))),
            total,
            reserve: total / 4,
            in_use: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        })
    }

    /// The most bytes one reservation can hold.
    fn clamp(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX)
    }

    fn account(self: &Arc<Self>, permit: Option<OwnedSemaphorePermit>, n: u32) -> Reservation {
        let bytes = u64::from(n);
        let now = self.in_use.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Reservation {
            permit,
            bytes,
            budget: Arc::clone(self),
        }
    }

    /// Waits for `bytes` (at most the whole budget).
    pub(crate) async fn acquire(self: &Arc<Self>, bytes: u64) -> Reservation {
        let n = self.clamp(bytes);
        if n == 0 {
            return self.account(None, 0);
        }
        // The semaphore is never closed, so this only fails if it were.
        let permit = Arc::clone(&self.sem).acquire_many_owned(n).await.ok();
        self.account(permit, n)
    }

    /// `bytes` now if that leaves the reserve free, else `None`.
    pub(crate) fn try_acquire_optional(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let n = self.clamp(bytes);
        if n == 0 {
            return Some(self.account(None, 0));
        }
        let wanted = usize::try_from(u64::from(n).saturating_add(self.reserve)).ok()?;
        if self.sem.available_permits() < wanted {
            return None;
        }
        let permit = Arc::clone(&self.sem).try_acquire_many_owned(n).ok()?;
        Some(self.account(Some(permit), n))
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::SeqCst)
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Reservation {
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Moves `bytes` of this reservation (at most all of it) into a new one.
    pub(crate) fn split(&mut self, bytes: u64) -> Reservation {
        let bytes = bytes.min(self.bytes);
        let permit = match &mut self.permit {
            Some(p) => usize::try_from(bytes).ok().and_then(|n| p.split(n)),
            None => None,
        };
        self.bytes -= bytes;
        Reservation {
            permit,
            bytes,
            budget: Arc::clone(&self.budget),
        }
    }

    /// Takes `other`'s bytes into this reservation.
    pub(crate) fn merge(&mut self, mut other: Reservation) {
        match (&mut self.permit, other.permit.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        self.bytes += other.bytes;
        other.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn optional_users_leave_the_reserve() {
        let b = Budget::new(100);
        let a = b.try_acquire_optional(70).unwrap();
        assert!(
            b.try_acquire_optional(10).is_none(),
            "would eat the reserve"
        );
        let d = b.acquire(25).await;
        assert_eq!(b.in_use(), 95);
        drop(a);
        drop(d);
        assert_eq!(b.in_use(), 0);
        assert_eq!(b.peak(), 95);
    }

    #[tokio::test]
    async fn merge_keeps_the_sum_and_demand_is_clamped() {
        let b = Budget::new(100);
        let mut r = b.acquire(10).await;
        r.merge(b.acquire(20).await);
        assert_eq!(r.bytes(), 30);
        assert_eq!(b.in_use(), 30);
        drop(r);
        let big = b.acquire(1000).await;
        assert_eq!(big.bytes(), 100);
    }

    #[tokio::test]
    async fn a_split_reservation_releases_each_part_on_its_own() {
        let b = Budget::new(100);
        let mut r = b.acquire(60).await;
        let part = r.split(25);
        assert_eq!((part.bytes(), r.bytes()), (25, 35));
        assert_eq!(b.in_use(), 60, "splitting moves bytes, it takes none");
        // More than is left: all of it.
        let rest = r.split(1000);
        assert_eq!((rest.bytes(), r.bytes()), (35, 0));
        drop(part);
        assert_eq!(b.in_use(), 35);
        // The released bytes are free again, and only they: 65 free, 25 of them the reserve.
        assert!(
            b.try_acquire_optional(41).is_none(),
            "would eat the reserve"
        );
        let again = b.try_acquire_optional(40).unwrap();
        drop((rest, r, again));
        assert_eq!(b.in_use(), 0);
        assert_eq!(b.acquire(100).await.bytes(), 100, "every permit came back");
    }
}
