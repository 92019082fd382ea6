//! Tests of what small files cost in store requests, over `MemStore`'s counters: a lookup that
//! lists its directory once and answers the next lookups (negative ones too) from that listing,
//! a create-write-close that is one PutObject, a failed PutObject that fails the close and
//! leaves nothing, and a cold open and read that is one GetObject.

use super::*;
use crate::errno::Errno;
use crate::mem::{MemStats, MemStore, Op};

struct Harness {
    fs: Fs<MemStore>,
    store: MemStore,
    _staging: tempfile::TempDir,
}

impl Harness {
    fn new(store: MemStore) -> Self {
        let staging = tempfile::tempdir().unwrap();
        let cfg = FsConfig {
            staging_dir: staging.path().to_path_buf(),
            ..FsConfig::default()
        };
        Harness {
            fs: Fs::new(store.clone(), cfg).unwrap(),
            store,
            _staging: staging,
        }
    }

    /// Every request since the last call, by operation; the counters start again.
    fn requests(&self) -> MemStats {
        let stats = self.store.stats();
        self.store.reset_stats();
        stats
    }
}

fn total(stats: &MemStats) -> u64 {
    stats.requests.values().sum()
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn wronly() -> OpenFlags {
    OpenFlags(libc::O_WRONLY | libc::O_CREAT)
}

#[test]
fn a_lookup_lists_its_directory_once_and_answers_the_next_from_it() {
    run(async {
        let store = MemStore::new();
        for i in 0..10 {
            store.insert(&format!("d/f{i}"), "x");
        }
        let h = Harness::new(store);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(h.requests().count(Op::List), 1, "the root listed once");
        let f = h.fs.lookup(d, "f3").await.unwrap();
        assert_eq!(f.size, 1);
        let first = h.requests();
        assert_eq!(
            (first.count(Op::List), total(&first)),
            (1, 1),
            "one LIST, no HEAD: {first:?}"
        );
        for i in 0..10 {
            h.fs.lookup(d, &format!("f{i}")).await.unwrap();
        }
        let err = h.fs.lookup(d, "missing").await.unwrap_err();
        assert_eq!(err.errno(), Errno::ENOENT);
        let err = h.fs.lookup(ROOT_INO, "nothing").await.unwrap_err();
        assert_eq!(err.errno(), Errno::ENOENT);
        let rest = h.requests();
        assert_eq!(total(&rest), 0, "answered from the listings: {rest:?}");
    });
}

#[test]
fn a_negative_lookup_in_a_freshly_listed_directory_makes_no_request() {
    run(async {
        let store = MemStore::new();
        store.insert("d/a", "1");
        let h = Harness::new(store);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let fh = h.fs.opendir(d).await.unwrap();
        // One page, so the first reply's LIST completes the cached listing.
        assert_eq!(h.fs.readdir(d, fh, 0).await.unwrap().len(), 3);
        h.fs.releasedir(fh);
        h.requests();
        let err = h.fs.lookup(d, "b").await.unwrap_err();
        assert_eq!(err.errno(), Errno::ENOENT);
        assert_eq!(total(&h.requests()), 0);
    });
}

#[test]
fn a_directory_larger_than_a_page_is_listed_for_lookups_once_per_ttl() {
    run(async {
        let store = MemStore::new();
        for i in 0..5 {
            store.insert(&format!("d/f{i}"), "x");
        }
        store.set_max_page(2);
        let h = Harness::new(store);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        h.requests();
        h.fs.lookup(d, "f4").await.unwrap();
        let first = h.requests();
        assert_eq!(
            first.count(Op::Head),
            1,
            "the page did not answer: {first:?}"
        );
        assert_eq!(
            first.count(Op::List),
            2,
            "the page and the name's: {first:?}"
        );
        let err = h.fs.lookup(d, "g").await.unwrap_err();
        assert_eq!(err.errno(), Errno::ENOENT);
        let second = h.requests();
        assert_eq!(
            (second.count(Op::Head), second.count(Op::List)),
            (1, 1),
            "no second page listing: {second:?}"
        );
    });
}

#[test]
fn creating_writing_and_closing_a_small_file_is_one_put() {
    run(async {
        let h = Harness::new(MemStore::new());
        let d = h.fs.mkdir(ROOT_INO, "d").await.unwrap().ino;
        let absent = h.fs.lookup(ROOT_INO, "e").await.unwrap_err();
        assert_eq!(absent.errno(), Errno::ENOENT);
        let e = h.fs.mkdir(ROOT_INO, "e2").await.unwrap().ino;
        h.requests();
        for (dir, name) in [(d, "new"), (e, "other")] {
            // As the kernel does: a lookup of the new name, then create, write, flush, release.
            let err = h.fs.lookup(dir, name).await.unwrap_err();
            assert_eq!(err.errno(), Errno::ENOENT);
            let (attr, fh) = h.fs.create(dir, name, wronly()).await.unwrap();
            h.fs.write(attr.ino, fh, 0, &[7u8; 4096]).await.unwrap();
            h.fs.flush(attr.ino, fh).await.unwrap();
            h.fs.release(attr.ino, fh).await.unwrap();
            let stats = h.requests();
            assert_eq!(
                (stats.count(Op::Put), total(&stats)),
                (1, 1),
                "one PutObject, nothing else: {stats:?}"
            );
            // What the PutObject answered is what a stat and a read see, at no cost.
            let got = h.fs.lookup(dir, name).await.unwrap();
            assert_eq!(got.size, 4096);
            let fh = h.fs.open(got.ino, OpenFlags(libc::O_RDONLY)).await.unwrap();
            h.fs.release(got.ino, fh).await.unwrap();
            assert_eq!(total(&h.requests()), 0);
        }
        assert_eq!(h.store.object("d/new").unwrap().len(), 4096);
    });
}

#[test]
fn a_new_file_in_an_unlisted_directory_costs_a_list_and_a_put() {
    run(async {
        let store = MemStore::new();
        store.insert("d/old", "1");
        let h = Harness::new(store);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        h.requests();
        let err = h.fs.lookup(d, "new").await.unwrap_err();
        assert_eq!(err.errno(), Errno::ENOENT);
        let (attr, fh) = h.fs.create(d, "new", wronly()).await.unwrap();
        h.fs.write(attr.ino, fh, 0, b"hello").await.unwrap();
        h.fs.release(attr.ino, fh).await.unwrap();
        let stats = h.requests();
        assert_eq!(
            (stats.count(Op::List), stats.count(Op::Put), total(&stats)),
            (1, 1, 2),
            "{stats:?}"
        );
    });
}

#[test]
fn a_failed_put_fails_the_close_and_leaves_nothing() {
    run(async {
        let h = Harness::new(MemStore::new());
        let d = h.fs.mkdir(ROOT_INO, "d").await.unwrap().ino;
        let (attr, fh) = h.fs.create(d, "f", wronly()).await.unwrap();
        h.fs.write(attr.ino, fh, 0, &[1u8; 4096]).await.unwrap();
        h.store.fail_next(Op::Put, 1);
        h.requests();
        let err = h.fs.flush(attr.ino, fh).await.unwrap_err();
        assert_eq!(err.errno(), Errno::EIO);
        assert_eq!(h.requests().count(Op::Put), 1);
        let err = h.fs.release(attr.ino, fh).await.unwrap_err();
        assert_eq!(err.errno(), Errno::EIO);
        assert!(h.store.keys().iter().all(|k| k != "d/f"), "nothing visible");
        let err = h.fs.lookup(d, "f").await.unwrap_err();
        assert_eq!(err.errno(), Errno::ENOENT);
        let fh = h.fs.opendir(d).await.unwrap();
        let names: Vec<String> =
            h.fs.readdir(d, fh, 0)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
        h.fs.releasedir(fh);
        assert_eq!(names, [".", ".."]);
    });
}

#[test]
fn a_cold_open_and_read_of_a_small_file_looked_up_just_before_is_one_get() {
    run(async {
        let store = MemStore::new();
        for i in 0..4 {
            store.insert(&format!("d/f{i}"), vec![i as u8; 300 * 1024]);
        }
        let h = Harness::new(store);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        for i in 0..4 {
            let f = h.fs.lookup(d, &format!("f{i}")).await.unwrap();
            h.requests();
            let fh = h.fs.open(f.ino, OpenFlags(libc::O_RDONLY)).await.unwrap();
            // As the kernel reads: 128 KiB at a time, to the end.
            let mut got = Vec::new();
            loop {
                let data =
                    h.fs.read(f.ino, fh, got.len() as u64, 128 * 1024)
                        .await
                        .unwrap();
                if data.is_empty() {
                    break;
                }
                got.extend_from_slice(&data);
            }
            h.fs.release(f.ino, fh).await.unwrap();
            assert_eq!(got, vec![i as u8; 300 * 1024]);
            let stats = h.requests();
            assert_eq!(
                (stats.count(Op::Get), total(&stats)),
                (1, 1),
                "one GetObject of the whole file: {stats:?}"
            );
        }
    });
}

#[test]
fn a_small_file_replaced_elsewhere_after_its_lookup_reads_as_stale() {
    run(async {
        let store = MemStore::new();
        store.insert("d/f", "old");
        let h = Harness::new(store);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let f = h.fs.lookup(d, "f").await.unwrap();
        let fh = h.fs.open(f.ino, OpenFlags(libc::O_RDONLY)).await.unwrap();
        h.store.insert("d/f", "new!");
        let err = h.fs.read(f.ino, fh, 0, 4096).await.unwrap_err();
        assert_eq!(err.errno(), Errno::ESTALE);
        h.fs.release(f.ino, fh).await.unwrap();
    });
}
