//! The cache against `MemStore`, which counts the requests and bytes the origin served. Several
//! `CachedStore`s over one directory stand for several FUSE daemons of one node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{BS, block_files, data, dir_size, fetch_locks_held, gets, open, options, requests};
use cos_cache::{CachedStore, PreloadOutcome, PreloadProgress};
use cos_fuse::ObjectStore;
use cos_fuse::mem::{MemStore, Op};
use cos_fuse::store::StoreError;

async fn read_all(s: &CachedStore<MemStore>, key: &str) -> Bytes {
    s.get_range(key, 0..u64::MAX, None).await.unwrap()
}

#[tokio::test]
async fn two_stores_over_one_dir_fetch_each_block_once() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(1, 10 * BS as usize + 123);
    mem.insert("ds/a.bin", body.clone());
    let a = open(&mem, options(dir.path())).await;
    let b = open(&mem, options(dir.path())).await;
    assert_eq!(read_all(&a, "ds/a.bin").await, body);
    assert_eq!(read_all(&b, "ds/a.bin").await, body);
    let st = mem.stats();
    // Plus the one byte with which `b` proved it may read the object before it was served
    // `a`'s blocks.
    assert_eq!(
        st.bytes_read,
        body.len() as u64 + 1,
        "origin bytes counted once"
    );
    // 11 blocks in GETs of at most 4 blocks, and `b`'s proof.
    assert_eq!(st.count(Op::Get), 3 + 1);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.miss_requests, sa.origin_bytes), (1, body.len() as u64));
    assert_eq!(
        (sb.hit_requests, sb.hit_bytes, sb.origin_bytes),
        (1, body.len() as u64, 0)
    );
    assert_eq!((sa.access_checks, sb.access_checks), (0, 1));
    assert_eq!(sb.disk_hit_blocks, 11);
    // A range in the middle, from the other store, is served from disk too (proved already).
    let mid = b.get_range("ds/a.bin", 5000..9000, None).await.unwrap();
    assert_eq!(mid, body[5000..9000]);
    assert_eq!(gets(&mem), 3 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_in_two_stores_fetch_a_block_once() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(2, 3 * BS as usize);
    mem.insert("k", body.clone());
    // A slow origin, so both readers are in flight at once.
    mem.set_latency(Op::Get, Duration::from_millis(300));
    let a = open(&mem, options(dir.path())).await;
    let b = open(&mem, options(dir.path())).await;
    let etag = mem.head("k").await.unwrap().unwrap().etag;
    let (ra, rb) = tokio::join!(
        a.get_range("k", 0..BS, Some(&etag)),
        b.get_range("k", 100..BS, Some(&etag)),
    );
    assert_eq!(ra.unwrap(), body[..BS as usize]);
    assert_eq!(rb.unwrap(), body[100..BS as usize]);
    // One fetch, and the one-byte GET by which the store that waited proved it may read the
    // object before it was served the other's block.
    assert_eq!(
        gets(&mem),
        1 + 1,
        "the second reader waited for the first one's fetch"
    );
    assert_eq!(a.stats().lock_waits + b.stats().lock_waits, 1);
    assert_eq!(a.stats().access_checks + b.stats().access_checks, 1);
    // Tasks of one store coordinate the same way.
    let (r1, r2) = tokio::join!(
        a.get_range("k", BS..2 * BS, Some(&etag)),
        a.get_range("k", BS + 1..2 * BS, Some(&etag)),
    );
    assert_eq!(r1.unwrap(), body[BS as usize..2 * BS as usize]);
    assert_eq!(r2.unwrap(), body[BS as usize + 1..2 * BS as usize]);
    assert_eq!(
        gets(&mem),
        3,
        "one more fetch; `a` has proved access already"
    );
}

#[tokio::test]
async fn a_changed_object_is_read_fresh_after_the_metadata_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let mut o = options(dir.path());
    o.metadata_ttl = Duration::from_secs(1);
    let s = open(&mem, o).await;
    let v1 = data(3, 2 * BS as usize);
    let v2 = data(4, 2 * BS as usize);
    mem.insert("k", v1.clone());
    assert_eq!(read_all(&s, "k").await, v1);
    // Changed behind the cache's back (another client).
    mem.insert("k", v2.clone());
    assert_eq!(
        read_all(&s, "k").await,
        v1,
        "within the TTL the cached version stands"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(read_all(&s, "k").await, v2, "after the TTL the new version");
    // A caller that knows the new ETag gets it at once, and the old one is refused when the
    // origin has moved on and it is not cached.
    let v3 = data(5, BS as usize);
    mem.insert("k", v3.clone());
    let e3 = mem.head("k").await.unwrap().unwrap().etag;
    assert_eq!(s.get_range("k", 0..BS, Some(&e3)).await.unwrap(), v3);
    assert!(matches!(
        s.get_range("k", 0..BS, Some("no-such-etag")).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_stale_cached_etag_is_retried_with_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let s = open(&mem, options(dir.path())).await;
    mem.insert("k", data(6, 100));
    assert_eq!(s.head("k").await.unwrap().unwrap().size, 100);
    // Overwritten at the origin within the TTL, and its blocks were never cached: the GET with
    // the cached ETag fails, so the read looks again rather than failing.
    let v2 = data(7, 200);
    mem.insert("k", v2.clone());
    assert_eq!(read_all(&s, "k").await, v2);
}

#[tokio::test]
async fn a_corrupt_block_is_dropped_refetched_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(8, 3 * BS as usize);
    mem.insert("k", body.clone());
    let s = open(&mem, options(dir.path())).await;
    assert_eq!(read_all(&s, "k").await, body);
    // Blocks reach the disk in the background.
    s.flush().await;
    let files = block_files(dir.path());
    assert_eq!(files.len(), 3);
    // Flip one byte of one block's data; truncate another.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x20;
    std::fs::write(&files[0], &bytes).unwrap();
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &bytes[..bytes.len() / 2]).unwrap();
    mem.reset_stats();
    assert_eq!(read_all(&s, "k").await, body);
    let st = s.stats();
    assert_eq!(st.corrupt_blocks, 2);
    assert_eq!(
        mem.stats().bytes_read,
        2 * BS,
        "the two bad blocks and only them"
    );
    // Repaired on disk: the next read is all hits.
    mem.reset_stats();
    assert_eq!(read_all(&s, "k").await, body);
    assert_eq!(gets(&mem), 0);
    assert_eq!(block_files(dir.path()).len(), 3);
}

#[tokio::test]
async fn the_cache_never_exceeds_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let mut o = options(dir.path());
    // Ten charged blocks (a 4 KiB block with its header is charged 8 KiB), plus the reserve.
    o.capacity_bytes = 4096 + 10 * 8192;
    let capacity = o.capacity_bytes;
    let a = open(&mem, o.clone()).await;
    let b = open(&mem, o).await;
    let mut objects = Vec::new();
    for i in 0..8u64 {
        let body = data(100 + i, (5 * BS + i * 777) as usize);
        let key = format!("big/{i}");
        mem.insert(&key, body.clone());
        objects.push((key, body));
    }
    // 8 objects of 5-6 blocks: far more than ten blocks, read twice through two stores.
    for round in 0..2 {
        for (n, (key, body)) in objects.iter().enumerate() {
            let s = if (n + round) % 2 == 0 { &a } else { &b };
            assert_eq!(read_all(s, key).await, *body);
            let size = dir_size(dir.path());
            assert!(size <= capacity, "{size} > {capacity} after {key}");
            let off = (n as u64 * 1000) % body.len() as u64;
            let part = s.get_range(key, off..off + 5000, None).await.unwrap();
            let end = (off as usize + 5000).min(body.len());
            assert_eq!(part, body[off as usize..end]);
            assert!(dir_size(dir.path()) <= capacity);
        }
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.evictions + sb.evictions > 0);
    assert!(sa.used_bytes <= capacity && sb.used_bytes <= capacity);
}

#[tokio::test]
async fn a_restarted_store_serves_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(9, 7 * BS as usize + 5);
    mem.insert("k", body.clone());
    let etag = mem.head("k").await.unwrap().unwrap().etag;
    {
        let s = open(&mem, options(dir.path())).await;
        assert_eq!(read_all(&s, "k").await, body);
    }
    mem.reset_stats();
    let s = open(&mem, options(dir.path())).await;
    // Seven full blocks charged 8 KiB with their headers, the 5-byte last one 4 KiB.
    assert_eq!(s.stats().used_bytes, 7 * 8192 + 4096);
    // The caller's ETag: the size comes from a block's header; the origin is asked only for the
    // one byte that proves this store (a new instance) may read the object.
    let got = s.get_range("k", 10..u64::MAX, Some(&etag)).await.unwrap();
    assert_eq!(got, body[10..]);
    assert_eq!((requests(&mem), mem.stats().bytes_read), (1, 1));
    // Without an ETag the current version must be learnt: one HEAD, no more GETs.
    assert_eq!(read_all(&s, "k").await, body);
    let st = mem.stats();
    assert_eq!((st.count(Op::Head), st.count(Op::Get)), (1, 1));
}

#[tokio::test]
async fn a_range_over_cached_blocks_comes_in_pieces_a_block_each_and_whole_as_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(4, 4 * BS as usize + 5);
    mem.insert("k", body.clone());
    let s = open(&mem, options(dir.path())).await;
    assert_eq!(read_all(&s, "k").await, body);
    // Warm: from memory and disk, each block its own piece, nothing stitched; the last one short.
    let from = BS / 2;
    let pieces = s.get_range_pieces("k", from..u64::MAX, None).await.unwrap();
    let lens: Vec<u64> = pieces.iter().map(|p| p.len() as u64).collect();
    assert_eq!(lens, [BS / 2, BS, BS, BS, 5]);
    assert_eq!(pieces.concat(), body[from as usize..]);
    // `get_range` answers the same bytes in one buffer.
    let whole = s.get_range("k", from..u64::MAX, None).await.unwrap();
    assert_eq!(whole, body[from as usize..]);
}

#[tokio::test]
async fn preload_warms_a_prefix_then_reads_make_no_origin_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    mem.set_max_page(3);
    let mut bodies = Vec::new();
    for i in 0..10u64 {
        let body = data(200 + i, (i * 3000) as usize);
        let key = format!("train/part-{i:02}");
        mem.insert(&key, body.clone());
        bodies.push((key, body));
    }
    mem.insert("other/x", data(300, 5000));
    let s = open(&mem, options(dir.path())).await;
    let seen = Arc::new(Mutex::new(Vec::<PreloadProgress>::new()));
    let log = Arc::clone(&seen);
    let report = s
        .preload(&["train/".to_string()], 3, move |p| {
            log.lock().unwrap().push(p)
        })
        .await
        .unwrap();
    let total: u64 = bodies.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(report.outcome, PreloadOutcome::Complete);
    assert_eq!(
        (
            report.objects_total,
            report.objects_cached,
            report.bytes_cached
        ),
        (10, 10, total)
    );
    assert_eq!(report.bytes_fetched, total);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(|p| (p.objects_done, p.bytes_total)),
        Some((0, total))
    );
    assert_eq!(
        seen.last().copied(),
        Some(PreloadProgress {
            objects_done: 10,
            objects_total: 10,
            bytes_done: total,
            bytes_total: total,
        })
    );
    assert!(seen.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done));
    mem.reset_stats();
    for (key, body) in &bodies {
        assert_eq!(read_all(&s, key).await, *body);
    }
    assert_eq!(requests(&mem), 0, "no HEAD, no GET");
    // The other prefix was not loaded; a second preload fetches nothing.
    read_all(&s, "other/x").await;
    assert_eq!(gets(&mem), 1);
    let again = s.preload(&["train/".to_string()], 3, |_| {}).await.unwrap();
    assert_eq!((again.objects_cached, again.bytes_fetched), (10, 0));
}

#[tokio::test]
async fn preload_stops_when_the_dataset_exceeds_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let mut o = options(dir.path());
    o.capacity_bytes = 4096 + 10 * 8192;
    let capacity = o.capacity_bytes;
    let s = open(&mem, o).await;
    // Something older to evict first.
    mem.insert("old", data(400, 2 * BS as usize));
    read_all(&s, "old").await;
    s.flush().await;
    for i in 0..6u64 {
        mem.insert(&format!("ds/{i}"), data(401 + i, 3 * BS as usize));
    }
    let report = s.preload(&["ds/".to_string()], 1, |_| {}).await.unwrap();
    assert_eq!(report.outcome, PreloadOutcome::CacheFull);
    // Ten blocks fit: the two old ones went, then three whole objects.
    assert_eq!(report.objects_cached, 3);
    assert!(dir_size(dir.path()) <= capacity);
    mem.reset_stats();
    for i in 0..report.objects_cached {
        read_all(&s, &format!("ds/{i}")).await;
    }
    assert_eq!(gets(&mem), 0, "the preload kept what it loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preload_dropped_midway_leaves_the_cache_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let mut bodies = Vec::new();
    for i in 0..20u64 {
        let body = data(500 + i, 6 * BS as usize + 10);
        mem.insert(&format!("ds/{i:02}"), body.clone());
        bodies.push(body);
    }
    mem.set_latency(Op::Get, Duration::from_millis(20));
    {
        let s = open(&mem, options(dir.path())).await;
        let prefixes = ["ds/".to_string()];
        let three_done = Arc::new(tokio::sync::Notify::new());
        let signal = Arc::clone(&three_done);
        let run = s.preload(&prefixes, 4, move |p| {
            if p.objects_done == 3 {
                signal.notify_one();
            }
        });
        // Dropped with GETs in flight, once three objects of twenty are done.
        tokio::select! {
            r = run => panic!("the preload finished: {r:?}"),
            _ = three_done.notified() => {}
        }
        // Let blocking writes that were under way finish.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files = block_files(dir.path());
    assert!(!files.is_empty() && files.len() < 20 * 7);
    let s = open(&mem, options(dir.path())).await;
    let charged: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len().div_ceil(4096) * 4096)
        .sum();
    assert_eq!(s.stats().used_bytes, charged);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(!fetch_locks_held(dir.path()));
    mem.set_latency(Op::Get, Duration::ZERO);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(read_all(&s, &format!("ds/{i:02}")).await, *body);
    }
    assert_eq!(s.stats().corrupt_blocks, 0);
}

#[tokio::test]
async fn writes_go_through_and_invalidate() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let s = open(&mem, options(dir.path())).await;
    let v1 = data(600, 3 * BS as usize);
    s.put("k", Bytes::from(v1.clone())).await.unwrap();
    assert_eq!(read_all(&s, "k").await, v1);
    s.flush().await;
    assert_eq!(block_files(dir.path()).len(), 3);
    // Overwrite: the next read sees it at once, and the old version's blocks are gone.
    let v2 = data(601, BS as usize);
    s.put("k", Bytes::from(v2.clone())).await.unwrap();
    assert_eq!(read_all(&s, "k").await, v2);
    s.flush().await;
    assert_eq!(block_files(dir.path()).len(), 1);
    // Copy onto a cached key, multipart onto it, then delete.
    s.put("src", Bytes::from(v1.clone())).await.unwrap();
    s.copy("src", "k").await.unwrap();
    assert_eq!(read_all(&s, "k").await, v1);
    mem.set_min_part_size(1);
    let id = s.create_multipart("k").await.unwrap();
    let e1 = s
        .upload_part("k", &id, 1, Bytes::from_static(b"new"))
        .await
        .unwrap();
    let parts = [cos_fuse::store::CompletedPart {
        number: 1,
        etag: e1,
    }];
    s.complete_multipart("k", &id, &parts).await.unwrap();
    assert_eq!(read_all(&s, "k").await, "new");
    s.delete("k").await.unwrap();
    assert!(matches!(
        s.get_range("k", 0..1, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.head("k").await.unwrap(), None);
    let aborted = s.create_multipart("k").await.unwrap();
    s.abort_multipart("k", &aborted).await.unwrap();
    assert_eq!(mem.pending_uploads(), 0);
}

#[tokio::test]
async fn head_and_list_fill_the_metadata_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let s = open(&mem, options(dir.path())).await;
    mem.insert("d/a", data(700, 10));
    mem.insert("d/b", data(701, 20));
    let page = s.list("d/", Some("/"), None, None).await.unwrap();
    assert_eq!(page.objects.len(), 2);
    mem.reset_stats();
    assert_eq!(s.head("d/a").await.unwrap().unwrap().size, 10);
    assert_eq!(s.head("nope").await.unwrap(), None);
    assert_eq!(s.head("nope").await.unwrap(), None);
    // One HEAD (the absent key, then remembered); the listed key and its read need none.
    assert_eq!(read_all(&s, "d/b").await.len(), 20);
    let st = mem.stats();
    assert_eq!((st.count(Op::Head), st.count(Op::Get)), (1, 1));
    let c = s.stats();
    assert_eq!((c.metadata_hits, c.metadata_misses), (3, 1));
}

#[tokio::test]
async fn ranges_behave_like_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let s = open(&mem, options(dir.path())).await;
    let body = data(800, 2 * BS as usize);
    mem.insert("k", body.clone());
    mem.insert("empty", Vec::new());
    let etag = mem.head("k").await.unwrap().unwrap().etag;
    for (range, want) in [
        (0..0, Some(0..0)),
        (5..5, Some(0..0)),
        (0..1, Some(0..1)),
        (BS - 1..BS + 1, Some(BS - 1..BS + 1)),
        (100..u64::MAX, Some(100..2 * BS)),
        (2 * BS..2 * BS + 1, None),
        (u64::MAX - 1..u64::MAX, None),
    ] {
        for if_match in [None, Some(etag.as_str())] {
            let got = s.get_range("k", range.clone(), if_match).await;
            let origin = mem.get_range("k", range.clone(), if_match).await;
            match want.clone() {
                Some(w) => {
                    let w = &body[w.start as usize..w.end as usize];
                    assert_eq!(got.as_deref().ok(), Some(w), "{range:?}");
                    assert_eq!(origin.as_deref().ok(), Some(w), "{range:?}");
                }
                None => {
                    assert!(
                        matches!(got, Err(StoreError::Invalid(_))),
                        "{range:?}: {got:?}"
                    );
                    assert!(matches!(origin, Err(StoreError::Invalid(_))));
                }
            }
        }
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..4;
    assert!(matches!(
        s.get_range("k", backwards, None).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.get_range("empty", 0..10, None).await.unwrap(), "");
    assert!(matches!(
        s.get_range("missing", 0..10, None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get_range("missing", 0..10, Some(&etag)).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn origin_failures_are_returned_and_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let body = data(900, 2 * BS as usize);
    mem.insert("k", body.clone());
    let s = open(&mem, options(dir.path())).await;
    mem.fail_next(Op::Get, 1);
    assert!(matches!(
        read_all_result(&s, "k").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(block_files(dir.path()).is_empty());
    assert!(!fetch_locks_held(dir.path()));
    assert_eq!(read_all(&s, "k").await, body);
}

async fn read_all_result(s: &CachedStore<MemStore>, key: &str) -> Result<Bytes, StoreError> {
    s.get_range(key, 0..u64::MAX, None).await
}

#[tokio::test]
async fn the_memory_tier_serves_hot_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let mut o = options(dir.path());
    o.memory_bytes = 1 << 20;
    let s = open(&mem, o).await;
    let body = data(1000, 6 * BS as usize);
    mem.insert("k", body.clone());
    assert_eq!(read_all(&s, "k").await, body);
    assert_eq!(read_all(&s, "k").await, body);
    let st = s.stats();
    assert_eq!((st.memory_hit_blocks, st.disk_hit_blocks), (6, 0));
    // Even with the disk copies gone.
    s.flush().await;
    for f in block_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    assert_eq!(read_all(&s, "k").await, body);
    assert_eq!(gets(&mem), 2, "6 blocks in GETs of 4, once");
}

#[tokio::test]
async fn preload_can_run_in_a_spawned_task() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    mem.insert("p/a", data(1100, 100));
    let s = open(&mem, options(dir.path())).await;
    let task = tokio::spawn(async move { s.preload(&["p/".to_string()], 2, |_| {}).await });
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.objects_cached, 1);
}
