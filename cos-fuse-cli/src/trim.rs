//! Gives freed memory back to the system once a mount goes quiet.
//!
//! glibc keeps what a process frees for reuse, and raises its thresholds for returning it after
//! large blocks come and go: after a 1 GiB read, a daemon held about 107 MiB it no longer used,
//! for good (`e2e bench cos`). A node with fifty COS volumes runs fifty daemons. So once a
//! second, when the mount answered requests since the last look and has none in flight now,
//! `malloc_trim(0)` hands the free pages back. It never runs while requests are in flight, so it
//! costs a busy mount nothing.

use std::sync::Arc;
use std::time::Duration;

use cos_fuse::fuse::FuseCounters;

const EVERY: Duration = Duration::from_secs(1);

/// Whether to trim now: requests came since the last trim (`dispatched` moved on from `last`)
/// and none is in flight.
fn due(last: u64, dispatched: u64, in_flight: u64) -> bool {
    dispatched != last && in_flight == 0
}

/// Trims in a thread of its own for the life of the process.
pub fn spawn(counters: Arc<FuseCounters>) {
    let started = std::thread::Builder::new()
        .name("trim".to_owned())
        .spawn(move || {
            let mut last = counters.dispatched();
            loop {
                std::thread::sleep(EVERY);
                let dispatched = counters.dispatched();
                if due(last, dispatched, counters.in_flight()) {
                    last = dispatched;
                    trim();
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the memory trimmer: freed memory stays with the daemon");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_requests_once_none_is_in_flight() {
        assert!(!due(5, 5, 0), "nothing happened since the last trim");
        assert!(!due(5, 9, 1), "a request is in flight");
        assert!(due(5, 9, 0));
    }
}
