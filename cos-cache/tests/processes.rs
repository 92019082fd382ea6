//! Two real processes over one cache directory: this test binary runs itself again as the second
//! daemon (the role is passed in the environment). Each process has its own `MemStore` with the
//! same objects inserted in the same order, hence the same ETags, and reports what its origin
//! served, so the test can add up what the origin served in all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{BS, data, dir_size, gets, open, options};
use cos_fuse::ObjectStore;
use cos_fuse::mem::{MemStore, Op};

const ROLE: &str = "COS_CACHE_TEST_ROLE";
const DIR: &str = "COS_CACHE_TEST_DIR";
const REPORT: &str = "COS_CACHE_CHILD_REPORT";

/// In the parent: a fresh directory and the second process started on it. In the child: the
/// parent's directory.
struct Setup {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<tokio::process::Child>,
}

fn setup(test: &str) -> Setup {
    if std::env::var(ROLE).is_ok_and(|r| r == "child") {
        let dir = PathBuf::from(std::env::var(DIR).unwrap());
        return Setup {
            dir,
            _tmp: None,
            child: None,
        };
    }
    let tmp = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(ROLE, "child")
        .env(DIR, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Setup {
        dir: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
        child: Some(child),
    }
}

impl Setup {
    /// In the child: prints the report and returns `None`. In the parent: the child's report.
    async fn finish(&mut self, report: String) -> Option<String> {
        let Some(child) = self.child.take() else {
            println!("{REPORT} {report}");
            return None;
        };
        let out = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.split_once(REPORT).map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no report from the child:\n{stdout}"));
        Some(line.trim().to_string())
    }
}

fn origin(objects: u64, blocks: u64) -> MemStore {
    let mem = MemStore::new();
    for i in 0..objects {
        mem.insert(&format!("ds/{i}"), data(i, (blocks * BS) as usize));
    }
    mem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_reading_one_object_fetch_each_block_once() {
    let mut s = setup("two_processes_reading_one_object_fetch_each_block_once");
    let mem = origin(1, 24);
    let body = mem.object("ds/0").unwrap();
    mem.set_latency(Op::Get, Duration::from_millis(40));
    let store = open(&mem, options(&s.dir)).await;
    // Block by block, in order: the process that starts later catches up (its blocks are on
    // disk) and then contends for every block the other is fetching.
    for i in 0..24 {
        let got = store
            .get_range("ds/0", i * BS..(i + 1) * BS, None)
            .await
            .unwrap();
        assert_eq!(got, body[(i * BS) as usize..((i + 1) * BS) as usize]);
    }
    let mine = gets(&mem);
    let Some(theirs) = s.finish(mine.to_string()).await else {
        return;
    };
    let theirs: u64 = theirs.parse().unwrap();
    // Block 0 is fetched by one process and read from disk by the other, which first proves
    // with a one-byte GET that its origin lets it read the object: once, as it is proved from
    // then on.
    assert_eq!(
        mine + theirs,
        24 + 1,
        "each block fetched once ({mine} + {theirs})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_under_a_small_capacity_read_true_bytes_within_it() {
    let mut s = setup("two_processes_under_a_small_capacity_read_true_bytes_within_it");
    let mem = origin(6, 8);
    let mut o = options(&s.dir);
    o.capacity_bytes = 4096 + 12 * 8192;
    let capacity = o.capacity_bytes;
    let store = open(&mem, o).await;
    let child = s.child.is_none();
    let mut rng = fastrand::Rng::with_seed(if child { 1 } else { 2 });
    let mut max_seen = 0;
    for _ in 0..200 {
        let key = format!("ds/{}", rng.u64(0..6));
        let body = mem.object(&key).unwrap();
        let off = rng.u64(0..body.len() as u64);
        let len = rng.u64(1..3 * BS);
        let got = store.get_range(&key, off..off + len, None).await.unwrap();
        let end = (off + len).min(body.len() as u64) as usize;
        assert_eq!(got, body[off as usize..end], "{key} {off}+{len}");
        max_seen = max_seen.max(dir_size(&s.dir));
        assert!(max_seen <= capacity, "{max_seen} > {capacity}");
    }
    let evictions = store.stats().evictions;
    let Some(theirs) = s.finish(evictions.to_string()).await else {
        return;
    };
    let theirs: u64 = theirs.parse().unwrap();
    assert!(
        evictions > 0 && theirs > 0,
        "both evicted: {evictions}, {theirs}"
    );
    // What is left is consistent: a new store over it (roomy: nothing evicted now) counts
    // exactly the files there, and every block on disk verifies and is used.
    drop(store);
    let left = common::block_files(&s.dir).len() as u64;
    assert!(left > 0);
    let again = open(&mem, options(&s.dir)).await;
    assert_eq!(again.stats().used_bytes, charged_files(&s.dir));
    assert!(again.stats().used_bytes <= capacity);
    mem.reset_stats();
    for i in 0..6 {
        let key = format!("ds/{i}");
        let body = mem.object(&key).unwrap();
        assert_eq!(
            again.get_range(&key, 0..u64::MAX, None).await.unwrap(),
            body
        );
    }
    let st = again.stats();
    assert_eq!((st.corrupt_blocks, st.disk_hit_blocks), (0, left));
    // Plus one byte for each object all of whose blocks were cached: the new store proves it
    // may read it before serving them (one that fetched a block proved it by that GET).
    assert!(st.access_checks <= 6);
    assert_eq!(mem.stats().bytes_read, (48 - left) * BS + st.access_checks);
}

fn charged_files(dir: &Path) -> u64 {
    common::block_files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len().div_ceil(4096) * 4096)
        .sum()
}

#[tokio::test]
async fn the_origin_model_is_shared_by_both_roles() {
    // The two processes rely on equal ETags for equal insertion orders.
    let a = origin(3, 1);
    let b = origin(3, 1);
    for i in 0..3 {
        let key = format!("ds/{i}");
        assert_eq!(
            a.head(&key).await.unwrap().unwrap().etag,
            b.head(&key).await.unwrap().unwrap().etag
        );
    }
}
