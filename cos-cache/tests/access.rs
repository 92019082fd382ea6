//! Who may see the cache: its files are the daemon user's alone (directories 0700, files 0600,
//! whatever the umask), and a store serves a cached block only once its own origin has let it
//! read the object.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{BS, data, gets, open, options};
use cos_fuse::ObjectStore;
use cos_fuse::mem::{MemStore, Op};
use cos_fuse::store::StoreError;
use nix::sys::stat::{Mode, umask};

/// Every directory and file under `dir` (and `dir`), with its permission bits.
fn modes(dir: &Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.push((d.clone(), true, m.permissions().mode() & 0o7777));
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), false, m.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

fn assert_private(dir: &Path) {
    let all = modes(dir);
    assert!(
        all.iter().any(|(_, is_dir, _)| !is_dir),
        "no files: {all:?}"
    );
    for (path, is_dir, mode) in all {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}: {mode:o}", path.display());
    }
}

#[tokio::test]
async fn the_cache_is_private_whatever_the_umask() {
    // The most permissive umask: every mode bit the cache does not ask for explicitly shows.
    umask(Mode::empty());
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let mem = MemStore::new();
    let body = data(1, 3 * BS as usize + 7);
    mem.insert("k", body.clone());
    let s = open(&mem, options(&dir)).await;
    assert_eq!(s.get_range("k", 0..u64::MAX, None).await.unwrap(), body);
    assert_private(&dir);
}

#[tokio::test]
async fn a_loose_existing_cache_is_tightened_at_open() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cache");
    let mem = MemStore::new();
    let body = data(2, 2 * BS as usize);
    mem.insert("k", body.clone());
    {
        let s = open(&mem, options(&dir)).await;
        assert_eq!(s.get_range("k", 0..u64::MAX, None).await.unwrap(), body);
    }
    // As an older version (or an operator) left it: readable by all.
    for (path, is_dir, _) in modes(&dir) {
        let mode = if is_dir { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let s = open(&mem, options(&dir)).await;
    assert_private(&dir);
    assert_eq!(s.get_range("k", 0..u64::MAX, None).await.unwrap(), body);
}

/// An origin holding the same objects as `mem` (same insertion order, so the same ETags) under
/// credentials that may HEAD and LIST but not GET.
fn head_only(objects: &[(&str, &[u8])]) -> MemStore {
    let m = MemStore::new();
    for (k, b) in objects {
        m.insert(k, b.to_vec());
    }
    m.fail_next_with(Op::Get, u64::MAX, StoreError::Forbidden("no GET".into()));
    m
}

#[tokio::test]
async fn a_store_that_may_not_get_an_object_is_not_served_its_cached_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let body = data(3, 3 * BS as usize);
    let mem = MemStore::new();
    mem.insert("secret", body.clone());
    let reader = open(&mem, options(dir.path())).await;
    assert_eq!(
        reader.get_range("secret", 0..u64::MAX, None).await.unwrap(),
        body
    );
    // On disk before the other store looks, so it is the cached blocks it is refused.
    reader.flush().await;
    let denied_origin = head_only(&[("secret", &body)]);
    let etag = mem.head("secret").await.unwrap().unwrap().etag;
    assert_eq!(
        denied_origin.head("secret").await.unwrap().unwrap().etag,
        etag
    );
    let denied = open(&denied_origin, options(dir.path())).await;
    for _ in 0..2 {
        for if_match in [None, Some(etag.as_str())] {
            for range in [0..u64::MAX, BS..BS + 10, 2 * BS + 5..3 * BS] {
                let got = denied.get_range("secret", range.clone(), if_match).await;
                assert!(
                    matches!(got, Err(StoreError::Forbidden(_))),
                    "{range:?} {if_match:?}: {:?}",
                    got.map(|b| b.len())
                );
            }
        }
    }
    // The HEAD it may do still works; the cached blocks are still there for those who may read.
    assert_eq!(denied.head("secret").await.unwrap().unwrap().size, 3 * BS);
    let st = denied.stats();
    assert_eq!((st.hit_bytes, st.hit_requests), (0, 0));
    assert_eq!(
        reader.get_range("secret", 0..u64::MAX, None).await.unwrap(),
        body
    );
}

#[tokio::test]
async fn a_second_store_proves_access_once_per_object_then_reads_warm() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let a_body = data(4, 5 * BS as usize);
    let b_body = data(5, 2 * BS as usize);
    mem.insert("a", a_body.clone());
    mem.insert("b", b_body.clone());
    let first = open(&mem, options(dir.path())).await;
    for (k, body) in [("a", &a_body), ("b", &b_body)] {
        assert_eq!(first.get_range(k, 0..u64::MAX, None).await.unwrap(), *body);
    }
    first.flush().await;
    let second = open(&mem, options(dir.path())).await;
    mem.reset_stats();
    for _ in 0..3 {
        for (k, body) in [("a", &a_body), ("b", &b_body)] {
            assert_eq!(second.get_range(k, 0..u64::MAX, None).await.unwrap(), *body);
            let part = second.get_range(k, BS + 1..BS + 9, None).await.unwrap();
            assert_eq!(part, body[BS as usize + 1..BS as usize + 9]);
        }
    }
    // One one-byte GET per object, the first time only.
    assert_eq!((gets(&mem), mem.stats().bytes_read), (2, 2));
    let st = second.stats();
    assert_eq!((st.access_checks, st.origin_requests), (2, 0));
    assert_eq!(st.miss_requests, 0);
    // The store that fetched the blocks proved access by fetching them.
    assert_eq!(first.stats().access_checks, 0);
}

#[tokio::test]
async fn a_replaced_version_still_cached_is_served_once_the_object_may_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemStore::new();
    let v1 = data(6, 2 * BS as usize);
    mem.insert("k", v1.clone());
    let e1 = mem.head("k").await.unwrap().unwrap().etag;
    let first = open(&mem, options(dir.path())).await;
    assert_eq!(first.get_range("k", 0..u64::MAX, None).await.unwrap(), v1);
    // Written behind the read: on disk only once flushed. A block still queued is not cached
    // yet, and the old version is then rightly gone (the HEAD shows another ETag).
    first.flush().await;
    // Replaced at the origin: a caller holding the old ETag is served the cached old version
    // by a new store, whose proof asks for the current version's first byte.
    mem.insert("k", data(7, BS as usize));
    let second = open(&mem, options(dir.path())).await;
    let got = second.get_range("k", 0..u64::MAX, Some(&e1)).await.unwrap();
    assert_eq!(got, v1);
    assert_eq!(second.stats().access_checks, 2);
    // Not so for a store whose origin refuses the GET.
    let denied_origin = MemStore::new();
    denied_origin.insert("k", v1.clone());
    denied_origin.fail_next_with(Op::Get, u64::MAX, StoreError::Forbidden("no GET".into()));
    let denied = open(&denied_origin, options(dir.path())).await;
    let got = denied.get_range("k", 0..u64::MAX, Some(&e1)).await;
    assert!(
        matches!(got, Err(StoreError::Forbidden(_))),
        "{:?}",
        got.map(|b| b.len())
    );
}
