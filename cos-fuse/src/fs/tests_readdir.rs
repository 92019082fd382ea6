//! Tests of directory listings read page by page (`fs/readdir.rs`) over `MemStore`: how many
//! LIST calls a handle makes, what it holds, offsets, the directory that wins over a file of its
//! name across page boundaries, and what lookups learn from a listing.

use std::collections::{BTreeMap, BTreeSet};

use super::readdir::MAX_REPLY;
use super::*;
use crate::errno::Errno;
use crate::mem::{MemStore, Op};

struct Harness {
    fs: Fs<MemStore>,
    store: MemStore,
    _staging: tempfile::TempDir,
}

impl Harness {
    fn new(store: MemStore, tune: impl FnOnce(&mut FsConfig)) -> Self {
        let staging = tempfile::tempdir().unwrap();
        let mut cfg = FsConfig {
            staging_dir: staging.path().to_path_buf(),
            ..FsConfig::default()
        };
        tune(&mut cfg);
        Harness {
            fs: Fs::new(store.clone(), cfg).unwrap(),
            store,
            _staging: staging,
        }
    }

    fn lists(&self) -> u64 {
        self.store.stats().count(Op::List)
    }

    /// What the handle holds itself, in entries.
    fn held(&self, fh: Fh) -> usize {
        let h = self.fs.inner.handles().dirs.get(&fh).cloned().unwrap();
        h.cursor.try_lock().unwrap().held_entries()
    }

    /// Reads the handle from the start to its end as the kernel does (each call from the last offset
    /// returned), checking after each call that offsets grow and what the handle holds stays
    /// under `max_held`; returns every entry.
    async fn read_to_end(&self, ino: Ino, fh: Fh, max_held: usize) -> Vec<DirEntry> {
        self.read_on(ino, fh, 0, max_held).await
    }

    /// As [`Harness::read_to_end`], from `offset`.
    async fn read_on(&self, ino: Ino, fh: Fh, mut offset: u64, max_held: usize) -> Vec<DirEntry> {
        let mut out: Vec<DirEntry> = Vec::new();
        loop {
            let batch = self.fs.readdir(ino, fh, offset).await.unwrap();
            assert!(
                batch.len() <= MAX_REPLY,
                "a reply of {} entries",
                batch.len()
            );
            let Some(last) = batch.last() else {
                return out;
            };
            for e in &batch {
                assert!(e.offset > offset, "offset {} after {offset}", e.offset);
                offset = e.offset;
            }
            assert_eq!(last.offset, offset);
            let held = self.held(fh);
            assert!(held <= max_held, "the handle holds {held} entries");
            out.extend(batch);
        }
    }

    async fn list(&self, ino: Ino) -> Vec<DirEntry> {
        let fh = self.fs.opendir(ino).await.unwrap();
        let all = self.read_to_end(ino, fh, usize::MAX).await;
        self.fs.releasedir(fh);
        all
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Names and kinds of `entries` without `.` and `..`; fails on a name shown twice.
fn names(entries: &[DirEntry]) -> BTreeMap<String, FileKind> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.name != "." && e.name != "..") {
        assert!(
            out.insert(e.name.clone(), e.kind).is_none(),
            "{} shown twice",
            e.name
        );
    }
    out
}

fn big_dir(n: usize) -> MemStore {
    let store = MemStore::new();
    for i in 0..n {
        store.insert(&format!("d/f{i:05}"), "");
    }
    store
}

#[test]
fn reading_the_first_entries_of_a_large_directory_lists_one_page() {
    run(async {
        let h = Harness::new(big_dir(10_000), |_| {});
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let fh = h.fs.opendir(d).await.unwrap();
        let before = h.lists();
        let first = h.fs.readdir(d, fh, 0).await.unwrap();
        assert_eq!(h.lists() - before, 1, "one LIST page, not all ten");
        assert!(first.len() <= MAX_REPLY, "a reply, not the whole tail");
        assert_eq!(first[0].name, ".");
        assert_eq!(first[2].name, "f00000");
        // Reading on within the first page costs nothing more.
        let next =
            h.fs.readdir(d, fh, first.last().unwrap().offset)
                .await
                .unwrap();
        assert_eq!(h.lists() - before, 1);
        assert_eq!(next[0].offset, first.last().unwrap().offset + 1);
        // The rest of the listing: each page once.
        let rest = h
            .read_on(d, fh, next.last().unwrap().offset, usize::MAX)
            .await;
        let all: Vec<DirEntry> = first.into_iter().chain(next).chain(rest).collect();
        assert_eq!(names(&all).len(), 10_000);
        assert_eq!(h.lists() - before, 10);
        h.fs.releasedir(fh);
    });
}

#[test]
fn a_handle_holds_about_one_page_while_reading_a_whole_listing() {
    run(async {
        // A cache cap below the directory: the listing is not kept anywhere whole.
        let h = Harness::new(big_dir(10_000), |c| c.list_cache_max_entries = 2_000);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let fh = h.fs.opendir(d).await.unwrap();
        let all = h.read_to_end(d, fh, 1_002).await;
        let got = names(&all);
        assert_eq!(got.len(), 10_000);
        assert!(
            got.keys().eq((0..10_000)
                .map(|i| format!("f{i:05}"))
                .collect::<BTreeSet<_>>()
                .iter())
        );
        h.fs.releasedir(fh);
        let t = h.fs.inner.table();
        assert!(t.listings.fresh("d", std::time::Instant::now()).is_none());
        assert!(t.listings.total() <= 2_000);
    });
}

#[test]
fn a_directory_wins_over_a_file_of_its_name_across_pages() {
    run(async {
        let store = MemStore::new();
        // Two keys a page: `a` and `a/` are three pages apart (`-` sorts before `/`), `b` and
        // `b/` straddle one boundary, `c/` is on the page after `c` and `c!`.
        for k in [
            "a", "a-1", "a-2", "a-3", "a-4", "a-5", "a/x", "b", "b/y", "c", "c!", "c/z", "e",
        ] {
            store.insert(k, "1");
        }
        store.set_max_page(2);
        let h = Harness::new(store, |_| {});
        let all = h.list(ROOT_INO).await;
        let want: BTreeMap<String, FileKind> = [
            ("a", FileKind::Dir),
            ("a-1", FileKind::File),
            ("a-2", FileKind::File),
            ("a-3", FileKind::File),
            ("a-4", FileKind::File),
            ("a-5", FileKind::File),
            ("b", FileKind::Dir),
            ("c", FileKind::Dir),
            ("c!", FileKind::File),
            ("e", FileKind::File),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect();
        assert_eq!(names(&all), want);
        // What readdir said, lookups say (from the listing it cached).
        let lists = h.lists();
        for (name, kind) in &want {
            assert_eq!(
                h.fs.lookup(ROOT_INO, name).await.unwrap().kind,
                *kind,
                "{name}"
            );
        }
        assert_eq!(
            h.lists(),
            lists,
            "lookups after a complete listing need no LIST"
        );
        assert_eq!(
            h.fs.lookup(ROOT_INO, "zz").await.map_err(Errno::from).err(),
            Some(Errno::ENOENT)
        );
    });
}

#[test]
fn offsets_are_stable_and_offset_zero_or_a_seek_back_restart_the_listing() {
    run(async {
        let store = big_dir(3_000);
        let h = Harness::new(store, |_| {});
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let fh = h.fs.opendir(d).await.unwrap();
        let all = h.read_to_end(d, fh, usize::MAX).await;
        assert_eq!(all.len(), 3_002);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.offset, i as u64 + 1);
        }
        // rewinddir: from the start again.
        let again = h.fs.readdir(d, fh, 0).await.unwrap();
        assert_eq!(again[..], all[..again.len()]);
        // seekdir back to an entry of the first page, then on to the second: the same entries.
        let back = h.fs.readdir(d, fh, 900).await.unwrap();
        assert_eq!(back[0], all[900]);
        let seek = h.fs.readdir(d, fh, 2_500).await.unwrap();
        assert_eq!(seek[0], all[2_500]);
        let behind = h.fs.readdir(d, fh, 1_200).await.unwrap();
        assert_eq!(behind[0], all[1_200]);
        // Past the end: nothing.
        assert!(h.fs.readdir(d, fh, 3_002).await.unwrap().is_empty());
        assert!(h.fs.readdir(d, fh, 10_000).await.unwrap().is_empty());
        h.fs.releasedir(fh);
    });
}

#[test]
fn listed_entries_answer_lookups_and_own_changes_show() {
    run(async {
        let store = big_dir(2_500);
        store.insert("d/sub/x", "1");
        let h = Harness::new(store, |_| {});
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let all = h.list(d).await;
        let got = names(&all);
        assert_eq!(got.len(), 2_501);
        assert_eq!(got["sub"], FileKind::Dir);
        let (lists, heads) = (h.lists(), h.store.stats().count(Op::Head));
        let a = h.fs.lookup(d, "f01234").await.unwrap();
        assert_eq!(a.kind, FileKind::File);
        assert_eq!(h.fs.lookup(d, "sub").await.unwrap().kind, FileKind::Dir);
        assert_eq!(
            (h.lists(), h.store.stats().count(Op::Head)),
            (lists, heads),
            "a listing of three pages is cached whole"
        );
    });
}

#[test]
fn files_being_written_show_once_on_the_page_of_their_name() {
    run(async {
        let store = big_dir(2_500);
        // No listing cache: every listing reads the store's pages.
        let h = Harness::new(store, |c| c.list_ttl = std::time::Duration::ZERO);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let mut open = Vec::new();
        for name in ["a", "f00999z", "f01000x", "f01999y", "zz"] {
            let (w, wfh) =
                h.fs.create(d, name, OpenFlags(libc::O_WRONLY))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            open.push((w.ino, wfh));
        }
        h.fs.unlink(d, "f00001").await.unwrap();
        let got = names(&h.list(d).await);
        assert_eq!(got.len(), 2_500 + 5 - 1);
        for name in ["a", "f00999z", "f01000x", "f01999y", "zz"] {
            assert_eq!(got.get(name), Some(&FileKind::File), "{name}");
        }
        assert!(!got.contains_key("f00001"));
        for (ino, fh) in open {
            h.fs.release(ino, fh).await.unwrap();
        }
        assert_eq!(names(&h.list(d).await).len(), 2_504);
    });
}

#[test]
fn a_handle_released_midway_leaves_no_partial_listing() {
    run(async {
        let h = Harness::new(big_dir(5_000), |_| {});
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let fh = h.fs.opendir(d).await.unwrap();
        h.fs.readdir(d, fh, 0).await.unwrap();
        assert!(h.fs.inner.table().listings.total() > 0);
        h.fs.releasedir(fh);
        assert_eq!(h.fs.inner.table().listings.total(), 0);
        // A failed LIST is an error, and the same call succeeds once the store is back.
        let fh = h.fs.opendir(d).await.unwrap();
        let first = h.fs.readdir(d, fh, 0).await.unwrap();
        // The first window: `.`, `..` and the page but its last file (held back: `f00999/`
        // would come on the next page).
        let end = 1_001;
        let tail = h.fs.readdir(d, fh, end - 2).await.unwrap();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1].name, "f00998");
        h.store.fail_next(Op::List, 1);
        assert!(h.fs.readdir(d, fh, end).await.is_err());
        let next = h.fs.readdir(d, fh, end).await.unwrap();
        assert_eq!(next[0].name, "f00999");
        assert_eq!(next[0].offset, end + 1);
        assert_eq!(first[0].name, ".");
        h.fs.releasedir(fh);
    });
}

/// Waits (up to 5 s) until the lookup hint of `dir` holds `name`.
async fn hinted(h: &Harness, dir: &str, name: &str) {
    for _ in 0..500 {
        let now = std::time::Instant::now();
        if h.fs.inner.table().listings.known(dir, name, now).is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no hint of {dir} holds {name}");
}

#[test]
fn lookups_of_many_names_in_one_directory_stop_asking_the_store() {
    run(async {
        let store = big_dir(50);
        store.insert("d/sub/x", "1");
        let h = Harness::new(store, |_| {});
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        h.fs.lookup(d, "f00000").await.unwrap();
        h.fs.lookup(d, "f00001").await.unwrap();
        hinted(&h, "d", "f00049").await;
        h.store.reset_stats();
        for i in 2..50 {
            let a = h.fs.lookup(d, &format!("f{i:05}")).await.unwrap();
            assert_eq!(a.kind, FileKind::File);
        }
        assert_eq!(h.fs.lookup(d, "sub").await.unwrap().kind, FileKind::Dir);
        let stats = h.store.stats();
        assert_eq!((stats.count(Op::Head), stats.count(Op::List)), (0, 0));

        // A hint never says a name is absent: another client's new object is found.
        h.store.insert("d/new", "n");
        assert_eq!(h.fs.lookup(d, "new").await.unwrap().kind, FileKind::File);
        assert!(h.store.stats().count(Op::Head) > 0);
        // This mount's own removal shows at once.
        h.fs.unlink(d, "f00003").await.unwrap();
        let e = h.fs.lookup(d, "f00003").await.unwrap_err();
        assert_eq!(e.errno(), Errno::ENOENT);
        // readdir lists the store, not the hint.
        let got = names(&h.list(d).await);
        assert_eq!(got.len(), 50 - 1 + 1 + 1, "{got:?}");
        assert!(got.contains_key("new"));
    });
}

#[test]
fn one_lookup_in_a_directory_lists_nothing_more() {
    run(async {
        let h = Harness::new(big_dir(50), |_| {});
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        h.store.reset_stats();
        h.fs.lookup(d, "f00000").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The lookup's own HEAD and LIST of `f00000/`, and no listing of `d/`.
        let stats = h.store.stats();
        assert_eq!((stats.count(Op::Head), stats.count(Op::List)), (1, 1));
    });
}

#[test]
fn an_expired_listing_is_listed_again_by_the_next_lookup_and_answers_the_ones_after() {
    run(async {
        let ttl = std::time::Duration::from_millis(300);
        let h = Harness::new(big_dir(20), |c| c.list_ttl = ttl);
        let d = h.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(names(&h.list(d).await).len(), 20);
        tokio::time::sleep(ttl).await;
        h.store.reset_stats();
        let e = h.fs.lookup(d, "new-0").await.unwrap_err();
        assert_eq!(e.errno(), Errno::ENOENT);
        let e = h.fs.lookup(d, "new-1").await.unwrap_err();
        assert_eq!(e.errno(), Errno::ENOENT);
        assert_eq!(h.fs.lookup(d, "f00007").await.unwrap().kind, FileKind::File);
        let stats = h.store.stats();
        assert_eq!(
            (stats.count(Op::List), stats.count(Op::Head)),
            (1, 0),
            "one LIST of d/ answers all three"
        );
        // Another client's object shows once that listing expires in turn.
        h.store.insert("d/late", "l");
        tokio::time::sleep(ttl).await;
        assert_eq!(h.fs.lookup(d, "late").await.unwrap().kind, FileKind::File);
    });
}
