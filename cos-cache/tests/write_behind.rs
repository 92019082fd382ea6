//! Blocks fetched for a read reach the disk in the background: a reader never waits for the disk,
//! a block whose write was given up or failed is fetched again (never served torn), and readers
//! of one block in one store fetch it once even while its write is held up. The disk writer is
//! held up by holding `evict.lock`, which every block write takes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use common::{BS, block_files, data, fetch_locks_held, gets, open, options};
use cos_fuse::ObjectStore;
use cos_fuse::mem::{MemStore, Op};
use nix::fcntl::{Flock, FlockArg};

/// Holds the cache's `evict.lock` until dropped: every block write waits.
fn stall_writes(dir: &Path) -> Flock<File> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(dir.join("evict.lock"))
        .unwrap();
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap()
}

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_not_held_up_by_a_stalled_disk_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(1, 12 * BS as usize);
    mem.insert("k", body.clone());
    let mut o = options(dir.path());
    // Two blocks may wait for the disk; the rest are not cached.
    o.write_queue_bytes = 2 * BS;
    let s = open(&mem, o).await;
    let stalled = stall_writes(dir.path());
    let got = tokio::time::timeout(LIMIT, s.get_range("k", 0..u64::MAX, None)).await;
    assert_eq!(got.expect("the read waited for the disk").unwrap(), body);
    assert!(block_files(dir.path()).is_empty(), "nothing written yet");
    let st = s.stats();
    assert_eq!(st.writes_dropped, 10, "{st:?}");
    drop(stalled);
    s.flush().await;
    assert_eq!(block_files(dir.path()).len(), 2);

    // The blocks not written are fetched again, and only they.
    mem.reset_stats();
    let again = open(&mem, options(dir.path())).await;
    assert_eq!(again.get_range("k", 0..u64::MAX, None).await.unwrap(), body);
    assert_eq!(mem.stats().bytes_read, 10 * BS);
    again.flush().await;
    assert_eq!(block_files(dir.path()).len(), 12);
}

#[tokio::test]
async fn a_block_whose_write_failed_is_fetched_again_and_never_served_torn() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(2, 3 * BS as usize + 10);
    mem.insert("k", body.clone());
    let s = open(&mem, options(dir.path())).await;
    // No temporary directory: every block write fails.
    std::fs::remove_dir_all(dir.path().join("tmp")).unwrap();
    assert_eq!(s.get_range("k", 0..u64::MAX, None).await.unwrap(), body);
    s.flush().await;
    assert!(block_files(dir.path()).is_empty());
    assert_eq!(s.stats().disk_errors, 4);
    assert!(!fetch_locks_held(dir.path()), "fetch locks released");
    // Repaired: the next read fetches every block again and caches it whole.
    mem.reset_stats();
    let fresh = open(&mem, options(dir.path())).await;
    assert_eq!(fresh.get_range("k", 0..u64::MAX, None).await.unwrap(), body);
    assert_eq!(mem.stats().bytes_read, body.len() as u64);
    fresh.flush().await;
    assert_eq!(block_files(dir.path()).len(), 4);
    mem.reset_stats();
    let warm = open(&mem, options(dir.path())).await;
    let etag = mem.head("k").await.unwrap().unwrap().etag;
    let got = warm.get_range("k", 0..u64::MAX, Some(&etag)).await;
    assert_eq!(got.unwrap(), body);
    assert_eq!(gets(&mem), 1, "only the one-byte proof of access");
    assert_eq!(warm.stats().corrupt_blocks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_readers_of_one_block_fetch_it_once_while_its_write_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(3, 2 * BS as usize);
    mem.insert("k", body.clone());
    mem.set_latency(Op::Get, Duration::from_millis(200));
    let etag = mem.head("k").await.unwrap().unwrap().etag;
    let mut o = options(dir.path());
    o.memory_bytes = 16 * BS;
    let s = open(&mem, o).await;
    let stalled = stall_writes(dir.path());
    let mut readers = tokio::task::JoinSet::new();
    for n in 0..8u64 {
        let (s, etag) = (s.clone(), etag.clone());
        readers.spawn(async move { (n, s.get_range("k", n..BS, Some(&etag)).await) });
    }
    let all = tokio::time::timeout(LIMIT, readers.join_all()).await;
    for (n, got) in all.expect("a reader waited for the disk") {
        assert_eq!(got.unwrap(), body[n as usize..BS as usize]);
    }
    assert_eq!(gets(&mem), 1, "one GET for all eight readers");
    drop(stalled);
    s.flush().await;
    assert_eq!(block_files(dir.path()).len(), 1);
}
