//! Tests of resuming a mount (`Fs::resume`) over `MemStore`: the inode numbers and handles of a
//! previous `Fs` (standing in for the daemon process that died) understood by a new one built on
//! its inode journal, a journal cut short or damaged, compaction, a fresh mount ignoring a
//! leftover journal, and what the journal costs.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::inode_journal::{self, COMPACT_BYTES};
use super::table::{Meta, Table};
use super::*;
use crate::errno::Errno;
use crate::mem::MemStore;

/// A mount's staging directory and inode journal, which outlive the `Fs`s built on them.
struct Mount {
    store: MemStore,
    dir: tempfile::TempDir,
}

impl Mount {
    fn new() -> Self {
        Mount {
            store: MemStore::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("inodes")
    }

    fn config(&self, journal: bool) -> FsConfig {
        FsConfig {
            staging_dir: self.dir.path().to_path_buf(),
            inode_journal: journal.then(|| self.journal()),
            ..FsConfig::default()
        }
    }

    /// A fresh mount's file system.
    fn fresh(&self) -> Fs<MemStore> {
        Fs::new(self.store.clone(), self.config(true)).unwrap()
    }

    /// The file system of a daemon taking over from one that died.
    fn resumed(&self) -> Fs<MemStore> {
        Fs::resume(self.store.clone(), self.config(true)).unwrap()
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

fn errno<T: std::fmt::Debug>(r: Result<T, FsError>) -> Errno {
    Errno::from(r.unwrap_err())
}

fn rdonly() -> OpenFlags {
    OpenFlags(libc::O_RDONLY)
}

/// Creates `name` in `parent` with `data`, closed; returns its inode.
async fn put(fs: &Fs<MemStore>, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (a, fh) = fs
        .create(parent, name, OpenFlags(libc::O_WRONLY))
        .await
        .unwrap();
    fs.write(a.ino, fh, 0, data).await.unwrap();
    fs.release(a.ino, fh).await.unwrap();
    a.ino
}

#[test]
fn a_resumed_mount_resolves_the_inode_numbers_of_the_dead_one() {
    run(async {
        let m = Mount::new();
        let old = m.fresh();
        let d = old.mkdir(ROOT_INO, "d").await.unwrap().ino;
        let sub = old.mkdir(d, "sub").await.unwrap().ino;
        let f = put(&old, d, "f", b"hello").await;
        let g = put(&old, sub, "g", b"gg").await;
        let x = put(&old, ROOT_INO, "x", b"x").await;
        assert_eq!(old.lookup(ROOT_INO, "x").await.unwrap().ino, x);
        old.unlink(ROOT_INO, "x").await.unwrap();
        old.rename(ROOT_INO, "d", ROOT_INO, "e", false)
            .await
            .unwrap();
        drop(old);

        let new = m.resumed();
        let attr = new.getattr(d).await.unwrap();
        assert_eq!((attr.ino, attr.kind), (d, FileKind::Dir));
        let attr = new.getattr(f).await.unwrap();
        assert_eq!(
            (attr.kind, attr.size),
            (FileKind::File, 5),
            "refreshed from the store"
        );
        assert_eq!(new.getattr(g).await.unwrap().size, 2);
        assert_eq!(new.lookup(ROOT_INO, "e").await.unwrap().ino, d);
        assert_eq!(new.lookup(d, "f").await.unwrap().ino, f);
        assert_eq!(new.lookup(d, "sub").await.unwrap().ino, sub);
        assert_eq!(new.lookup(sub, "g").await.unwrap().ino, g);
        assert_eq!(errno(new.lookup(ROOT_INO, "d").await), Errno::ENOENT);
        assert_eq!(errno(new.getattr(x).await), Errno::ENOENT, "unlinked");
        let fh = new.open(f, rdonly()).await.unwrap();
        assert_eq!(&new.read(f, fh, 0, 100).await.unwrap()[..], b"hello");
        new.release(f, fh).await.unwrap();

        // The kernel's counts are unknown: no FORGET drops a loaded inode.
        new.forget(d, 1 << 40);
        new.forget(f, 1 << 40);
        assert_eq!(new.getattr(d).await.unwrap().kind, FileKind::Dir);
        assert_eq!(new.lookup(ROOT_INO, "e").await.unwrap().ino, d);

        let newest = [d, sub, f, g, x].into_iter().max().unwrap();
        let y = new.mkdir(ROOT_INO, "y").await.unwrap().ino;
        assert!(y > newest, "{y} after {newest}");
        // A second death: the inodes of both earlier processes resolve.
        drop(new);
        let third = m.resumed();
        assert_eq!(third.getattr(y).await.unwrap().kind, FileKind::Dir);
        assert_eq!(third.getattr(g).await.unwrap().size, 2);
    });
}

#[test]
fn handles_of_the_dead_process_read_and_refuse_writes() {
    run(async {
        let m = Mount::new();
        let old = m.fresh();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let a = put(&old, ROOT_INO, "a", &data).await;
        let reading = old.open(a, rdonly()).await.unwrap();
        assert_eq!(old.read(a, reading, 0, 10).await.unwrap().len(), 10);
        let listing = old.opendir(ROOT_INO).await.unwrap();
        let first = old.readdir(ROOT_INO, listing, 0).await.unwrap();
        let names: Vec<&str> = first.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "..", "a"]);
        let (b, writing) = old
            .create(ROOT_INO, "b", OpenFlags(libc::O_WRONLY))
            .await
            .unwrap();
        old.write(b.ino, writing, 0, b"lost").await.unwrap();
        drop(old);

        let new = m.resumed();
        let got = new.read(a, reading, 1000, 5000).await.unwrap();
        assert_eq!(&got[..], &data[1000..6000]);
        let got = new.read(a, reading, 299_990, 100).await.unwrap();
        assert_eq!(&got[..], &data[299_990..]);
        assert_eq!(new.stats().open_handles, 1, "opened on demand, once");
        assert_eq!(
            errno(new.write(b.ino, writing, 4, b"more").await),
            Errno::EIO
        );
        assert_eq!(errno(new.write(a, reading, 0, b"x").await), Errno::EIO);
        let set = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        assert_eq!(
            errno(new.setattr(b.ino, Some(writing), set).await),
            Errno::EIO
        );
        new.flush(b.ino, writing).await.unwrap();
        new.fsync(b.ino, writing).await.unwrap();
        new.release(b.ino, writing).await.unwrap();
        new.flush(a, reading).await.unwrap();
        new.release(a, reading).await.unwrap();
        assert_eq!(new.stats().open_handles, 0);

        // A directory handle continues where it was (offsets count entries from the start; the
        // file never committed is gone).
        let rest = new
            .readdir(ROOT_INO, listing, first[1].offset)
            .await
            .unwrap();
        assert_eq!(rest, first[2..]);
        let after = new
            .readdir(ROOT_INO, listing, first[2].offset)
            .await
            .unwrap();
        assert!(after.is_empty(), "{after:?}");
        assert_eq!(new.readdir(ROOT_INO, listing, 0).await.unwrap(), first);
        new.releasedir(listing);

        // This process's numbers are new, and its own closed ones stay closed.
        let own = new.open(a, rdonly()).await.unwrap();
        assert!(own > reading && own > writing && own > listing, "{own}");
        assert_eq!(own >> 40, 1, "the first resume's generation");
        new.release(a, own).await.unwrap();
        assert_eq!(errno(new.read(a, own, 0, 1).await), Errno::EBADF);
        assert_eq!(errno(new.release(a, own).await), Errno::EBADF);
        // An inherited handle of an inode this process does not know is stale.
        assert_eq!(
            errno(new.read(9999, reading + 1, 0, 1).await),
            Errno::ESTALE
        );
        // The same checks for the handles the second process gave out, after it died too.
        let held = new.open(a, rdonly()).await.unwrap();
        drop(new);
        let third = m.resumed();
        assert_eq!(&third.read(a, held, 0, 3).await.unwrap()[..], &data[..3]);
        assert!(third.open(a, rdonly()).await.unwrap() >> 40 == 2);
    });
}

#[test]
fn a_fresh_mount_handles_are_only_its_own() {
    run(async {
        let m = Mount::new();
        let fs = m.fresh();
        let a = put(&fs, ROOT_INO, "a", b"abc").await;
        assert_eq!(errno(fs.read(a, 12345, 0, 1).await), Errno::EBADF);
        assert_eq!(errno(fs.release(a, 12345).await), Errno::EBADF);
        assert_eq!(errno(fs.flush(a, 12345).await), Errno::EBADF);
        assert_eq!(errno(fs.readdir(ROOT_INO, 12345, 0).await), Errno::EBADF);
    });
}

#[test]
fn a_journal_cut_short_resumes_everything_before_the_cut() {
    run(async {
        let m = Mount::new();
        let old = m.fresh();
        let a = old.mkdir(ROOT_INO, "a").await.unwrap().ino;
        let b = old.mkdir(ROOT_INO, "b").await.unwrap().ino;
        let c = old.mkdir(ROOT_INO, "c").await.unwrap().ino;
        drop(old);
        let data = std::fs::read(m.journal()).unwrap();
        std::fs::write(m.journal(), &data[..data.len() - 3]).unwrap();

        let new = m.resumed();
        assert_eq!(new.getattr(a).await.unwrap().kind, FileKind::Dir);
        assert_eq!(new.getattr(b).await.unwrap().kind, FileKind::Dir);
        assert_eq!(errno(new.getattr(c).await), Errno::ENOENT);
        // The cut record is gone from the journal the new process writes.
        let loaded = inode_journal::load(&m.journal()).unwrap();
        assert_eq!(loaded.skipped, 0);
        assert_eq!(loaded.mapping.paths.len(), 2);
    });
}

#[test]
fn a_missing_or_damaged_journal_resumes_with_only_the_root() {
    run(async {
        let m = Mount::new();
        let fs = Fs::resume(m.store.clone(), m.config(false)).unwrap();
        assert_eq!(fs.stats().inodes, 1);
        let fs = m.resumed();
        assert_eq!(fs.stats().inodes, 1, "no journal file");
        drop(fs);
        std::fs::write(m.journal(), b"garbage, not a journal").unwrap();
        let fs = m.resumed();
        assert_eq!(fs.stats().inodes, 1);
        assert_eq!(errno(fs.getattr(2).await), Errno::ENOENT);
        assert_eq!(fs.mkdir(ROOT_INO, "d").await.unwrap().ino, 2);
        assert_eq!(errno(fs.read(2, 1, 0, 1).await), Errno::EISDIR);
        assert_eq!(errno(fs.read(3, 1, 0, 1).await), Errno::ESTALE);
        fs.release(3, 1).await.unwrap();
    });
}

#[test]
fn a_fresh_mount_replaces_a_leftover_journal() {
    run(async {
        let m = Mount::new();
        let old = m.fresh();
        let d = old.mkdir(ROOT_INO, "d").await.unwrap().ino;
        put(&old, d, "f", b"f").await;
        drop(old);

        let fresh = m.fresh();
        assert_eq!(fresh.stats().inodes, 1);
        assert_eq!(errno(fresh.getattr(d).await), Errno::ENOENT);
        let e = fresh.mkdir(ROOT_INO, "e").await.unwrap().ino;
        assert_eq!(e, 2);
        let loaded = inode_journal::load(&m.journal()).unwrap();
        let paths: Vec<&String> = loaded.mapping.paths.keys().collect();
        assert_eq!(paths, ["e"]);
        drop(fresh);
        let new = m.resumed();
        assert_eq!(new.getattr(e).await.unwrap().kind, FileKind::Dir);
        assert_eq!(new.lookup(ROOT_INO, "d").await.unwrap().kind, FileKind::Dir);
        assert!(new.lookup(ROOT_INO, "d").await.unwrap().ino > e);
    });
}

fn meta(kind: FileKind) -> Meta {
    Meta {
        kind,
        size: 0,
        mtime: SystemTime::UNIX_EPOCH,
        etag: None,
    }
}

/// Every path `t` maps, with its inode and kind, in path order.
fn mapping(t: &Table) -> Vec<(String, Ino, FileKind)> {
    let mut out: Vec<(String, Ino, FileKind)> = t
        .inodes
        .iter()
        .filter(|(ino, i)| **ino != ROOT_INO && t.is_linked(**ino) && !i.path.is_empty())
        .map(|(ino, i)| (i.path.clone(), *ino, i.meta.kind))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn compaction_keeps_the_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inodes");
    let (mut t, generation) = Table::start(meta(FileKind::Dir), 100, Some(&path), false);
    assert_eq!(generation, 0);
    let (mut size, mut compactions) = (0, 0);
    let later = Instant::now() + Duration::from_secs(600);
    let past = Instant::now();
    let mut largest = 0;
    // A small LCG: the same "random" walk every run.
    let mut seed: u64 = 1;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    for round in 0..200_000u64 {
        let d = format!("dir{}", next(20));
        let f = format!("{d}/file{}", next(50));
        match next(6) {
            0 => largest = largest.max(t.upsert(&d, meta(FileKind::Dir), later)),
            1 | 2 => largest = largest.max(t.upsert(&f, meta(FileKind::File), past)),
            3 => {
                t.unmap(&f);
            }
            4 => {
                // Sometimes onto an existing directory, whose inode is replaced.
                let to = format!("dir{}", next(25));
                if to != d {
                    t.rename_subtree(&d, &to);
                }
            }
            _ => {
                // A forgotten file whose attributes expired is dropped.
                if let Some(ino) = t.ino_of(&f) {
                    t.forget(ino, 0);
                }
            }
        }
        if round % 1000 == 999 {
            let now = std::fs::metadata(&path).unwrap().len();
            if now < size {
                compactions += 1;
            }
            size = now;
        }
        if round % 40_000 == 39_999 {
            let loaded = inode_journal::load(&path).unwrap();
            let replayed: Vec<(String, Ino, FileKind)> = loaded
                .mapping
                .paths
                .into_iter()
                .map(|(p, (ino, kind))| (p, ino, kind))
                .collect();
            assert_eq!(replayed, mapping(&t), "after {round} changes");
        }
    }
    assert!(compactions >= 2, "{compactions} compactions");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= COMPACT_BYTES + 4096, "compacted: {size} bytes");
    let want = mapping(&t);
    assert!(want.len() > 100, "{} live paths", want.len());
    drop(t);
    let (t, generation) = Table::start(meta(FileKind::Dir), 100, Some(&path), true);
    assert_eq!(generation, 1);
    assert_eq!(mapping(&t), want);
    let mut t = t;
    assert!(t.upsert("new", meta(FileKind::File), later) > largest);
}

#[test]
fn the_journal_costs_little_per_inode() {
    run(async {
        const N: usize = 10_000;
        let mut times = Vec::new();
        for journal in [false, true] {
            let m = Mount::new();
            for i in 0..N {
                m.store.insert(&format!("f{i}"), &b"x"[..]);
            }
            let fs = Fs::new(m.store.clone(), m.config(journal)).unwrap();
            let start = Instant::now();
            for i in 0..N {
                fs.lookup(ROOT_INO, &format!("f{i}")).await.unwrap();
            }
            times.push(start.elapsed());
            assert_eq!(fs.stats().inodes, N + 1);
            if journal {
                let loaded = inode_journal::load(&m.journal()).unwrap();
                assert_eq!(loaded.mapping.paths.len(), N);
            }
        }
        let (plain, journaled) = (times[0], times[1]);
        println!(
            "{N} lookups creating inodes: {plain:?} without the journal, {journaled:?} with it"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inodes");
        let (mut t, _) = Table::start(meta(FileKind::Dir), 100, Some(&path), false);
        let start = Instant::now();
        for i in 0..N {
            t.upsert(&format!("d/f{i}"), meta(FileKind::File), start);
        }
        println!(
            "{N} inodes created in the table alone, journaled: {:?}",
            start.elapsed()
        );
    });
}
