//! The FUSE request counters: requests and failures per operation, bytes moved. The operations
//! are the adapter's fixed set ([`OPS`]), so they make bounded metric labels. Counting only:
//! this module must not log or decide anything about a request.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// What the kernel asked of the mount: requests and failures by operation, bytes moved. The
/// operations are this adapter's fixed set, so they make bounded metric labels.
#[derive(Debug, Default)]
pub struct FuseCounters {
    /// `(requests, errors)` per entry of [`OPS`]: atomics, so counting never takes a lock on the
    /// request path.
    ops: [(AtomicU64, AtomicU64); OPS.len()],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// Requests dispatched and not yet answered: a hand-over waits for none to be left.
    in_flight: AtomicU64,
}

/// The operations the adapter counts (every request it dispatches).
pub(super) const OPS: [&str; 20] = [
    "lookup",
    "getattr",
    "setattr",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fallocate",
    "fsync",
    "opendir",
    "readdir",
    "create",
    "symlink",
    "link",
];

/// The index of `name` in [`OPS`]. Called through [`op!`] at compile time, so dispatching an
/// operation that is not counted fails the build instead of a request.
#[allow(clippy::panic)] // Only ever evaluated by the compiler.
pub(super) const fn op_index(name: &str) -> usize {
    let mut i = 0;
    while i < OPS.len() {
        let (a, b) = (OPS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut k = 0;
            while k < a.len() && a[k] == b[k] {
                k += 1;
            }
            if k == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("a FUSE operation is missing from OPS")
}

/// The [`OPS`] index of a counted operation, checked at compile time.
macro_rules! op {
    ($name:literal) => {{
        const INDEX: usize = $crate::fuse::counters::op_index($name);
        INDEX
    }};
}
pub(super) use op;

/// A copy of [`FuseCounters`]: `(requests, errors)` per operation that was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuseCountersSnapshot {
    pub ops: BTreeMap<&'static str, (u64, u64)>,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl FuseCounters {
    /// A request was dispatched to the runtime.
    pub(super) fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A dispatched request ended (answered, or dropped unanswered).
    pub(super) fn end(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Requests dispatched and not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// Requests dispatched so far.
    pub fn dispatched(&self) -> u64 {
        self.ops
            .iter()
            .map(|(ok, errors)| ok.load(Relaxed) + errors.load(Relaxed))
            .sum()
    }

    /// Counts a request (or its failure) of operation `OPS[op]`.
    pub(super) fn count(&self, op: usize, failed: bool) {
        if let Some((ok, errors)) = self.ops.get(op) {
            if failed { errors } else { ok }.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn count_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Relaxed);
    }

    pub(super) fn count_written(&self, bytes: u64) {
        self.bytes_written.fetch_add(bytes, Relaxed);
    }

    pub fn snapshot(&self) -> FuseCountersSnapshot {
        FuseCountersSnapshot {
            ops: OPS
                .iter()
                .zip(&self.ops)
                .map(|(op, (ok, errors))| (*op, (ok.load(Relaxed), errors.load(Relaxed))))
                .filter(|(_, (ok, errors))| ok + errors > 0)
                .collect(),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_show_the_operations_asked_for() {
        let c = FuseCounters::default();
        c.count(op!("read"), false);
        c.count(op!("read"), false);
        c.count(op!("read"), true);
        c.count(op!("link"), true);
        c.count_read(10);
        c.count_written(3);
        let s = c.snapshot();
        assert_eq!(
            s.ops.into_iter().collect::<Vec<_>>(),
            [("link", (0, 1)), ("read", (2, 1))]
        );
        assert_eq!((s.bytes_read, s.bytes_written), (10, 3));
        assert_eq!(OPS[op_index("create")], "create");
    }
}
