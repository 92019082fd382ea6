//! Tests of the file-system core over `MemStore`: targeted cases, and a property test of random
//! operation sequences against a reference model (a map of paths to bytes and a set of
//! directories).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::errno::Errno;
use crate::mem::{MemStore, Op};
use crate::store::StoreError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

struct Harness {
    fs: Fs<MemStore>,
    store: MemStore,
    _staging: tempfile::TempDir,
}

/// The errno of a result: most assertions compare what the kernel would get, not the cause.
trait ErrnoOf<T> {
    fn errno(self) -> Result<T, Errno>;
}

impl<T> ErrnoOf<T> for Result<T, FsError> {
    fn errno(self) -> Result<T, Errno> {
        self.map_err(Errno::from)
    }
}

fn wronly() -> OpenFlags {
    OpenFlags(libc::O_WRONLY)
}

fn rdonly() -> OpenFlags {
    OpenFlags(libc::O_RDONLY)
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

    async fn ino(&self, path: &str) -> Result<Ino, Errno> {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            ino = self.fs.lookup(ino, c).await?.ino;
        }
        Ok(ino)
    }

    async fn parent<'a>(&self, path: &'a str) -> Result<(Ino, &'a str), Errno> {
        let (dir, name) = paths::split(path);
        let ino = self.ino(dir).await?;
        // As the kernel's path walk: a parent that is a file is ENOTDIR.
        if self.fs.getattr(ino).await?.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok((ino, name))
    }

    /// Creates (or truncates) `path` and writes `data` in `chunk`-byte writes, then closes.
    async fn put(&self, path: &str, data: &[u8], chunk: usize) -> Result<(), Errno> {
        let (parent, name) = self.parent(path).await?;
        let (ino, fh) = match self.fs.lookup(parent, name).await {
            Ok(a) => (
                a.ino,
                self.fs
                    .open(a.ino, OpenFlags(libc::O_WRONLY | libc::O_TRUNC))
                    .await?,
            ),
            Err(_) => {
                let (a, fh) = self.fs.create(parent, name, wronly()).await?;
                (a.ino, fh)
            }
        };
        let mut r = Ok(());
        for (i, c) in data.chunks(chunk.max(1)).enumerate() {
            if let Err(e) = self.fs.write(ino, fh, (i * chunk) as u64, c).await {
                r = Err(e);
                break;
            }
        }
        let f = self.fs.flush(ino, fh).await;
        let rel = self.fs.release(ino, fh).await;
        r.and(f).and(rel).errno()
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, Errno> {
        let ino = self.ino(path).await?;
        let fh = self.fs.open(ino, rdonly()).await?;
        let mut out = Vec::new();
        let r = loop {
            match self.fs.read(ino, fh, out.len() as u64, 128 * 1024).await {
                Ok(b) if b.is_empty() => break Ok(()),
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => break Err(e),
            }
        };
        self.fs.release(ino, fh).await?;
        r.map(|()| out).errno()
    }

    async fn list(&self, path: &str) -> Result<BTreeMap<String, FileKind>, Errno> {
        let ino = self.ino(path).await?;
        let fh = self.fs.opendir(ino).await?;
        let mut out = BTreeMap::new();
        let mut offset = 0;
        let r = loop {
            // Read in small batches to exercise offsets.
            let batch = match self.fs.readdir(ino, fh, offset).await {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            let Some(last) = batch.first() else {
                break Ok(());
            };
            offset = last.offset;
            if last.name != "." && last.name != ".." {
                out.insert(last.name.clone(), last.kind);
            }
        };
        self.fs.releasedir(fh);
        r.map(|()| out).errno()
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

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn small_files_are_one_put_and_large_ones_stream_in_parts() {
    run(async {
        let h = Harness::new(MemStore::new(), |c| c.part_size = 5 * MIB);
        h.put("small", b"hello", 4096).await.unwrap();
        let st = h.store.stats();
        assert_eq!((st.count(Op::Put), st.count(Op::CreateMultipart)), (1, 0));
        h.store.reset_stats();
        let big = bytes((17 * MIB + 3) as usize, 7);
        h.put("big", &big, 128 * 1024).await.unwrap();
        let st = h.store.stats();
        assert_eq!(st.count(Op::Put), 0);
        assert_eq!(st.count(Op::CreateMultipart), 1);
        assert_eq!(st.count(Op::UploadPart), 4);
        assert_eq!(h.store.object("big").unwrap(), big);
        assert_eq!(h.get("big").await.unwrap(), big);
        assert_eq!(h.get("small").await.unwrap(), b"hello");
        assert_eq!(h.store.pending_uploads(), 0);
    });
}

#[test]
fn a_failed_part_upload_is_eio_and_leaves_nothing_visible() {
    run(async {
        let h = Harness::new(MemStore::new(), |c| c.part_size = 5 * MIB);
        h.store.fail_after(Op::UploadPart, 1, 1);
        let data = bytes((12 * MIB) as usize, 1);
        assert_eq!(h.put("f", &data, 1 << 20).await, Err(Errno::EIO));
        assert_eq!(h.store.object("f"), None);
        assert_eq!(h.store.pending_uploads(), 0, "the upload is aborted");
        assert_eq!(
            h.fs.lookup(ROOT_INO, "f").await.errno().err(),
            Some(Errno::ENOENT)
        );
        assert!(h.list("").await.unwrap().is_empty());
        // An existing object stays as it was when its rewrite fails.
        h.put("g", b"old", 10).await.unwrap();
        h.store.fail_next(Op::UploadPart, 1);
        assert_eq!(h.put("g", &data, 1 << 20).await, Err(Errno::EIO));
        assert_eq!(h.store.object("g").unwrap(), "old");
        assert_eq!(h.get("g").await.unwrap(), b"old");
        // A failed PutObject at close, too.
        h.store.fail_next(Op::Put, 1);
        assert_eq!(h.put("h", b"x", 1).await, Err(Errno::EIO));
        assert_eq!(h.store.object("h"), None);
    });
}

#[test]
fn a_failed_get_keeps_its_errno_its_key_and_its_cause() {
    run(async {
        let h = Harness::new(MemStore::new(), |_| {});
        h.store.insert("f", "data");
        let ino = h.ino("f").await.unwrap();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        // A server error: EIO, with the store's words.
        h.store.fail_next(Op::Get, 1);
        let e = h.fs.read(ino, fh, 0, 4).await.unwrap_err();
        assert_eq!(e.errno(), Errno::EIO);
        assert_eq!(
            (e.op(), e.ino(), e.key()),
            (Some("read"), Some(ino), Some("f"))
        );
        let text = format!("{e:#}");
        assert!(text.starts_with("GET bytes 0..4 of ETag "), "{text}");
        assert!(
            text.ends_with(": unavailable: injected Get failure: f"),
            "{text}"
        );
        assert!(!e.is_expected());
        // A 403: EACCES, with the server's code, message and request ID.
        let denied = "GetObject b-1250000000/f: HTTP 403 AccessDenied: Access Denied. (request id \
                      NjQ1)";
        h.store
            .fail_next_with(Op::Get, 1, StoreError::Forbidden(denied.into()));
        let e = h.fs.read(ino, fh, 0, 4).await.unwrap_err();
        assert_eq!(e, Errno::EACCES);
        assert!(
            format!("{e:#}").ends_with(&format!(": access denied: {denied}")),
            "{e:#}"
        );
        assert_eq!(h.fs.read(ino, fh, 0, 4).await.unwrap(), "data");
        h.fs.release(ino, fh).await.unwrap();
        // A namespace operation: the HEAD of a lookup.
        h.store.insert("g", "x");
        h.store.fail_next(Op::Head, 1);
        let e = h.fs.lookup(ROOT_INO, "g").await.unwrap_err();
        assert_eq!(e, Errno::EIO);
        assert_eq!(
            (e.op(), e.ino(), e.key()),
            (Some("lookup"), Some(ROOT_INO), Some("g"))
        );
        assert!(
            format!("{e:#}").contains("injected Head failure: g"),
            "{e:#}"
        );
        // A plain miss is normal use, with nothing to explain.
        let e = h.fs.lookup(ROOT_INO, "missing").await.unwrap_err();
        assert_eq!(e, Errno::ENOENT);
        assert!(e.is_expected());
    });
}

#[test]
fn a_failed_upload_is_eio_with_the_store_error_as_its_cause() {
    run(async {
        let h = Harness::new(MemStore::new(), |_| {});
        let (a, fh) = h.fs.create(ROOT_INO, "f", wronly()).await.unwrap();
        h.fs.write(a.ino, fh, 0, b"abc").await.unwrap();
        h.store.fail_next_with(
            Op::Put,
            1,
            StoreError::Forbidden("PutObject b/f: HTTP 403 AccessDenied".into()),
        );
        let e = h.fs.flush(a.ino, fh).await.unwrap_err();
        assert_eq!(
            e,
            Errno::EIO,
            "an upload's failure is EIO whatever its cause"
        );
        assert_eq!((e.op(), e.key()), (Some("flush"), Some("f")));
        assert_eq!(
            format!("{e:#}"),
            "upload: access denied: PutObject b/f: HTTP 403 AccessDenied"
        );
        // Later operations of the failed file say why they fail too.
        let e = h.fs.release(a.ino, fh).await.unwrap_err();
        assert_eq!(e, Errno::EIO);
        assert_eq!(format!("{e:#}"), "an earlier upload of this file failed");
    });
}

#[test]
fn appends_and_random_writes_are_staged_and_uploaded_at_close() {
    run(async {
        let h = Harness::new(MemStore::new(), |c| c.part_size = 5 * MIB);
        h.put("f", b"0123456789", 10).await.unwrap();
        let ino = h.ino("f").await.unwrap();
        let fh =
            h.fs.open(ino, OpenFlags(libc::O_WRONLY | libc::O_APPEND))
                .await
                .unwrap();
        h.fs.write(ino, fh, 10, b"abc").await.unwrap();
        h.fs.write(ino, fh, 2, b"XY").await.unwrap();
        assert_eq!(
            h.fs.getattr(ino).await.unwrap().size,
            13,
            "size visible while open"
        );
        assert_eq!(
            h.store.object("f").unwrap(),
            "0123456789",
            "not before close"
        );
        h.fs.release(ino, fh).await.unwrap();
        assert_eq!(h.store.object("f").unwrap(), "01XY456789abc");
        assert_eq!(h.fs.stats().staging_bytes, 0);
        // Truncate to a larger size pads with zeros; to a smaller one cuts.
        h.fs.setattr(
            ino,
            None,
            SetAttr {
                size: Some(15),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(h.store.object("f").unwrap(), &b"01XY456789abc\0\0"[..]);
        h.fs.setattr(
            ino,
            None,
            SetAttr {
                size: Some(3),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(h.get("f").await.unwrap(), b"01X");
        h.fs.setattr(
            ino,
            None,
            SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(h.store.object("f").unwrap(), "");
    });
}

#[test]
fn staging_is_capped() {
    run(async {
        let h = Harness::new(MemStore::new(), |c| c.staging_max_bytes = 100);
        h.put("f", b"x", 1).await.unwrap();
        let ino = h.ino("f").await.unwrap();
        let fh = h.fs.open(ino, OpenFlags(libc::O_RDWR)).await.unwrap();
        assert_eq!(h.fs.write(ino, fh, 50, &[1; 50]).await.errno(), Ok(50));
        assert_eq!(
            h.fs.write(ino, fh, 100, &[1; 1]).await.errno(),
            Err(Errno::EFBIG)
        );
        h.fs.release(ino, fh).await.unwrap();
        assert_eq!(h.store.object("f").unwrap().len(), 100);
    });
}

#[test]
fn read_ahead_asks_a_store_with_a_read_unit_for_whole_aligned_units() {
    const UNIT: u64 = 512 * KIB;
    run(async {
        // Not a multiple of the unit, so the last GET is the short tail; long enough for the
        // window to fill.
        let data = bytes((70 * MIB + 300 * KIB) as usize, 5);
        let store = MemStore::new();
        store.insert("big", data.clone());
        store.set_read_unit(Some(UNIT));
        let h = Harness::new(store, |c| c.memory_budget = 64 * MIB);
        assert_eq!(h.get("big").await.unwrap(), data);
        let ranges = h.store.stats().get_ranges;
        let size = data.len() as u64;
        for r in &ranges {
            assert!(
                r.start % UNIT == 0 && (r.end % UNIT == 0 || r.end == size),
                "GET {r:?} is not whole aligned units (of {ranges:?})"
            );
        }
        // Once the window is full, as large as without a unit (1 MiB), not one unit each.
        assert!(
            ranges.iter().any(|r| r.end - r.start == 2 * UNIT),
            "no GET of two units: {ranges:?}"
        );
        assert_eq!(h.store.stats().bytes_read, size, "every byte fetched once");

        // Without a unit, blocks are aligned to their own length (0.5-2 MiB), not to the unit.
        h.store.set_read_unit(None);
        h.store.reset_stats();
        assert_eq!(h.get("big").await.unwrap(), data);
        let ranges = h.store.stats().get_ranges;
        assert!(
            ranges.iter().any(|r| r.start % UNIT != 0),
            "all GETs on unit boundaries anyway: {ranges:?}"
        );
    });
}

#[test]
fn a_read_within_one_block_of_a_store_with_a_read_unit_is_a_slice_of_it_not_a_copy() {
    run(async {
        let data = Bytes::from(bytes((16 * MIB) as usize, 9));
        let store = MemStore::new();
        store.insert("big", data.clone());
        store.set_read_unit(Some(MIB));
        // A full window of 128 MiB from the start: blocks of 2 MiB, two units, answered in two
        // pieces.
        let h = Harness::new(store, |c| {
            c.memory_budget = 64 * MIB;
            c.read_ahead_initial = 128 * MIB;
            c.read_ahead_max = 128 * MIB;
        });
        let ino = h.ino("big").await.unwrap();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        // The kernel's reads of a scan: 1 MiB each, aligned.
        let mut copies = Vec::new();
        for i in 0..12u64 {
            let got = h.fs.read(ino, fh, i * MIB, MIB as u32).await.unwrap();
            let at = usize::try_from(i * MIB).unwrap();
            assert_eq!(got, data.slice(at..at + MIB as usize), "read {i}");
            if got.as_ptr() != data[at..].as_ptr() {
                copies.push(i);
            }
        }
        assert!(copies.is_empty(), "reads answered from a copy: {copies:?}");
        // A read across two pieces is stitched, and right.
        let from = 5 * MIB - 50 * KIB;
        let got = h.fs.read(ino, fh, from, 100 * 1024).await.unwrap();
        let at = usize::try_from(from).unwrap();
        assert_eq!(got, data.slice(at..at + 100 * 1024));
        h.fs.release(ino, fh).await.unwrap();
    });
}

#[test]
fn sequential_reads_prefetch_in_parallel_and_random_reads_fetch_only_what_is_asked() {
    run(async {
        let data = bytes((40 * MIB) as usize, 3);
        let store = MemStore::new();
        store.insert("big", data.clone());
        store.set_latency(Op::Get, Duration::from_millis(5));
        let h = Harness::new(store, |c| c.memory_budget = 64 * MIB);
        assert_eq!(h.get("big").await.unwrap(), data);
        let st = h.store.stats();
        let reads = 40 * MIB / (128 * KIB);
        assert!(
            st.count(Op::Get) < reads / 4,
            "{} GETs for {reads} reads",
            st.count(Op::Get)
        );
        assert!(st.max_concurrent_gets > 1, "prefetch runs in parallel");
        assert!(
            st.bytes_read <= data.len() as u64 + 8 * MIB,
            "little waste: {}",
            st.bytes_read
        );
        assert!(h.fs.stats().memory_peak <= 64 * MIB);
        assert_eq!(h.fs.stats().memory_in_use, 0);

        h.store.reset_stats();
        let ino = h.ino("big").await.unwrap();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        let mut asked = 0;
        // (A first read at offset 0 counts as the start of a sequential scan.)
        for i in 1..21u64 {
            let off = (i * 7_919_993) % (39 * MIB);
            let got = h.fs.read(ino, fh, off, 4096).await.unwrap();
            assert_eq!(&got[..], &data[off as usize..off as usize + 4096]);
            asked += 4096;
        }
        h.fs.release(ino, fh).await.unwrap();
        assert_eq!(
            h.store.stats().bytes_read,
            asked,
            "random reads fetch nothing more"
        );
    });
}

#[test]
fn memory_stays_under_the_budget_with_slow_uploads_and_many_writers() {
    run(async {
        let store = MemStore::new();
        store.set_latency(Op::UploadPart, Duration::from_millis(20));
        store.set_min_part_size(0);
        let h = Harness::new(store, |c| {
            c.memory_budget = 4 * MIB;
            c.part_size = MIB;
        });
        let mut tasks = Vec::new();
        for i in 0..6u8 {
            let fs = h.fs.clone();
            tasks.push(tokio::spawn(async move {
                let (a, fh) = fs
                    .create(ROOT_INO, &format!("f{i}"), wronly())
                    .await
                    .unwrap();
                let data = bytes((5 * MIB) as usize, i);
                for (n, c) in data.chunks(128 * 1024).enumerate() {
                    fs.write(a.ino, fh, (n * 128 * 1024) as u64, c)
                        .await
                        .unwrap();
                }
                fs.release(a.ino, fh).await.unwrap();
                data
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let data = t.await.unwrap();
            assert_eq!(h.store.object(&format!("f{i}")).unwrap(), data);
        }
        let st = h.fs.stats();
        assert!(st.memory_peak <= 4 * MIB, "peak {}", st.memory_peak);
        assert_eq!(st.memory_in_use, 0);
    });
}

#[test]
fn a_replaced_object_is_not_mixed_into_an_open_handle() {
    run(async {
        let h = Harness::new(MemStore::new(), |_| {});
        h.store.insert("f", bytes(3 * MIB as usize, 1));
        let ino = h.ino("f").await.unwrap();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        h.fs.read(ino, fh, 0, 4096).await.unwrap();
        h.store.insert("f", bytes(3 * MIB as usize, 2));
        // Whatever was prefetched before may be served; the rest is ESTALE, never new bytes.
        let mut off = 4096;
        let err = loop {
            match h.fs.read(ino, fh, off, 128 * 1024).await {
                Ok(b) => {
                    assert!(!b.is_empty());
                    assert_eq!(
                        &b[..],
                        &bytes(3 * MIB as usize, 1)[off as usize..off as usize + b.len()]
                    );
                    off += b.len() as u64;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err, Errno::ESTALE);
        h.fs.release(ino, fh).await.unwrap();
    });
}

#[test]
fn listings_paginate_and_a_directory_wins_over_a_file_of_its_name() {
    run(async {
        let store = MemStore::new();
        store.set_max_page(2);
        for k in [
            "p/a", "p/a/x", "p/b", "p/c/d/e", "p/d/", "p/e", "p/.", "p/x//y", "other",
        ] {
            store.insert(k, "1");
        }
        let h = Harness::new(store, |c| c.prefix = "/p".into());
        let got = h.list("").await.unwrap();
        let want: BTreeMap<String, FileKind> = [
            ("a", FileKind::Dir),
            ("b", FileKind::File),
            ("c", FileKind::Dir),
            ("d", FileKind::Dir),
            ("e", FileKind::File),
            ("x", FileKind::Dir),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k))
        .collect();
        assert_eq!(got, want);
        assert_eq!(h.list("c/d").await.unwrap().len(), 1);
        assert!(
            h.list("x").await.unwrap().is_empty(),
            "an empty name is not listed"
        );
        assert_eq!(
            h.fs.lookup(ROOT_INO, "a").await.unwrap().kind,
            FileKind::Dir
        );
        assert_eq!(h.get("b").await.unwrap(), b"1");
    });
}

#[test]
fn a_forgotten_inode_answers_lookups_until_its_attributes_expire() {
    run(async {
        let store = MemStore::new();
        store.insert("d/f", &b"abc"[..]);
        let h = Harness::new(store, |c| c.attr_ttl = Duration::from_millis(400));
        let dir = h.ino("d").await.unwrap();
        let ino = h.ino("d/f").await.unwrap();
        let round_trips = |h: &Harness| {
            let st = h.store.stats();
            st.count(Op::Head) + st.count(Op::List)
        };
        // The kernel dropped its dentry (memory pressure, drop_caches) and looks up again.
        h.fs.forget(ino, 1);
        let before = round_trips(&h);
        let again = h.fs.lookup(dir, "f").await.unwrap();
        assert_eq!((again.ino, again.size), (ino, 3));
        assert_eq!(round_trips(&h), before, "no round trip while valid");
        // Once they expire, the store is asked and a change there shows.
        h.fs.forget(ino, 1);
        h.store.insert("d/f", &b"abcd"[..]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(h.fs.lookup(dir, "f").await.unwrap().size, 4);
        assert!(round_trips(&h) > before);
        // An unlinked file's idle inode does not come back.
        let ino = h.ino("d/f").await.unwrap();
        h.fs.forget(ino, 1);
        h.fs.unlink(dir, "f").await.unwrap();
        assert_eq!(
            h.fs.lookup(dir, "f").await.errno().err(),
            Some(Errno::ENOENT)
        );
    });
}

#[test]
fn own_changes_show_at_once_despite_caches() {
    run(async {
        let h = Harness::new(MemStore::new(), |_| {});
        assert!(h.list("").await.unwrap().is_empty());
        h.put("f", b"1", 1).await.unwrap();
        h.fs.mkdir(ROOT_INO, "d").await.unwrap();
        assert_eq!(h.list("").await.unwrap().len(), 2);
        let lists = h.store.stats().count(Op::List);
        assert!(h.list("d").await.unwrap().is_empty());
        assert_eq!(
            h.store.stats().count(Op::List),
            lists,
            "a new directory is known empty"
        );
        h.fs.unlink(ROOT_INO, "f").await.unwrap();
        assert_eq!(
            h.fs.lookup(ROOT_INO, "f").await.errno().err(),
            Some(Errno::ENOENT)
        );
        assert_eq!(h.list("").await.unwrap().len(), 1);
        // A file being written is visible with its size.
        let (a, fh) = h.fs.create(ROOT_INO, "w", wronly()).await.unwrap();
        h.fs.write(a.ino, fh, 0, b"abc").await.unwrap();
        assert_eq!(h.fs.lookup(ROOT_INO, "w").await.unwrap().size, 3);
        assert!(h.list("").await.unwrap().contains_key("w"));
        h.fs.release(a.ino, fh).await.unwrap();
    });
}

#[test]
fn an_emptied_implicit_directory_stays() {
    run(async {
        let store = MemStore::new();
        store.insert("a/b/c", "1");
        let h = Harness::new(store, |_| {});
        let b = h.ino("a/b").await.unwrap();
        h.fs.unlink(b, "c").await.unwrap();
        assert_eq!(h.list("a/b").await.unwrap().len(), 0);
        assert!(h.store.keys().contains(&"a/b/".to_string()));
        let a = h.ino("a").await.unwrap();
        assert_eq!(
            h.fs.rmdir(ROOT_INO, "a").await.errno(),
            Err(Errno::ENOTEMPTY)
        );
        h.fs.rmdir(a, "b").await.unwrap();
        h.fs.rmdir(ROOT_INO, "a").await.unwrap();
        assert!(h.store.keys().is_empty());
    });
}

#[test]
fn modes_owners_and_read_only() {
    run(async {
        let h = Harness::new(MemStore::new(), |c| {
            c.uid = 1000;
            c.gid = 2000;
            c.file_mode = 0o640;
        });
        h.put("f", b"1", 1).await.unwrap();
        let ino = h.ino("f").await.unwrap();
        let a = h.fs.getattr(ino).await.unwrap();
        assert_eq!((a.uid, a.gid, a.perm), (1000, 2000, 0o640));
        let same = SetAttr {
            mode: Some(0o100640),
            uid: Some(1000),
            gid: Some(2000),
            times: true,
            ..SetAttr::default()
        };
        assert!(h.fs.setattr(ino, None, same).await.is_ok());
        for bad in [
            SetAttr {
                mode: Some(0o644),
                ..SetAttr::default()
            },
            SetAttr {
                uid: Some(0),
                ..SetAttr::default()
            },
            SetAttr {
                gid: Some(0),
                ..SetAttr::default()
            },
        ] {
            assert_eq!(
                h.fs.setattr(ino, None, bad).await.errno(),
                Err(Errno::EPERM)
            );
        }
        let ro = Harness::new(h.store.clone(), |c| c.read_only = true);
        let ino = ro.ino("f").await.unwrap();
        assert_eq!(ro.fs.open(ino, wronly()).await.errno(), Err(Errno::EROFS));
        assert_eq!(
            ro.fs.create(ROOT_INO, "g", wronly()).await.errno().err(),
            Some(Errno::EROFS)
        );
        assert_eq!(
            ro.fs.mkdir(ROOT_INO, "d").await.errno().err(),
            Some(Errno::EROFS)
        );
        assert_eq!(ro.fs.unlink(ROOT_INO, "f").await.errno(), Err(Errno::EROFS));
        assert_eq!(ro.get("f").await.unwrap(), b"1");
    });
}

#[test]
fn renaming_a_directory_moves_every_key_and_keeps_open_handles_working() {
    run(async {
        let store = MemStore::new();
        for k in ["d/", "d/1", "d/s/2", "d/s/t/3", "dd/keep"] {
            store.insert(k, k.to_string());
        }
        let h = Harness::new(store, |_| {});
        let f = h.ino("d/s/2").await.unwrap();
        let fh = h.fs.open(f, rdonly()).await.unwrap();
        h.fs.mkdir(ROOT_INO, "e").await.unwrap();
        h.fs.rename(ROOT_INO, "d", h.ino("e").await.unwrap(), "d", false)
            .await
            .unwrap();
        assert_eq!(
            h.store.keys(),
            ["dd/keep", "e/", "e/d/", "e/d/1", "e/d/s/2", "e/d/s/t/3"]
        );
        assert_eq!(h.fs.read(f, fh, 0, 100).await.unwrap(), "d/s/2");
        h.fs.release(f, fh).await.unwrap();
        assert_eq!(h.get("e/d/s/t/3").await.unwrap(), b"d/s/t/3");
        assert_eq!(
            h.fs.lookup(ROOT_INO, "d").await.errno().err(),
            Some(Errno::ENOENT)
        );
        // A failed copy leaves the source whole and no copies behind.
        h.store.fail_after(Op::Copy, 2, 1);
        let e = h.ino("e").await.unwrap();
        assert_eq!(
            h.fs.rename(e, "d", ROOT_INO, "x", false).await.errno(),
            Err(Errno::EIO)
        );
        assert_eq!(
            h.store.keys(),
            ["dd/keep", "e/", "e/d/", "e/d/1", "e/d/s/2", "e/d/s/t/3"]
        );
        // Renaming over a file replaces it; NOREPLACE refuses.
        h.put("a", b"A", 1).await.unwrap();
        h.put("b", b"B", 1).await.unwrap();
        assert_eq!(
            h.fs.rename(ROOT_INO, "a", ROOT_INO, "b", true)
                .await
                .errno(),
            Err(Errno::EEXIST)
        );
        h.fs.rename(ROOT_INO, "a", ROOT_INO, "b", false)
            .await
            .unwrap();
        assert_eq!(h.get("b").await.unwrap(), b"A");
        assert_eq!(
            h.fs.rename(ROOT_INO, "e", e, "x", false).await.errno(),
            Err(Errno::EINVAL)
        );
    });
}

#[test]
fn rewriting_bytes_already_streamed_is_einval_but_the_tail_can_change() {
    run(async {
        let store = MemStore::new();
        store.set_min_part_size(0);
        let h = Harness::new(store, |c| {
            c.part_size = 4;
            c.memory_budget = MIB;
        });
        let (a, fh) = h.fs.create(ROOT_INO, "f", wronly()).await.unwrap();
        h.fs.write(a.ino, fh, 0, b"0123456789").await.unwrap();
        assert_eq!(
            h.fs.write(a.ino, fh, 7, b"X").await.errno(),
            Err(Errno::EINVAL)
        );
        h.fs.write(a.ino, fh, 9, b"YZ").await.unwrap();
        h.fs.write(a.ino, fh, 14, b"!").await.unwrap();
        h.fs.release(a.ino, fh).await.unwrap();
        assert_eq!(h.store.object("f").unwrap(), &b"012345678YZ\0\0\0!"[..]);
    });
}

/// The ranges of the store's GETs once one reaches `end` (or after 2 s): read-ahead GETs run in
/// tasks of their own, so they are given a moment to start.
async fn gets_reaching(store: &MemStore, end: u64) -> Vec<std::ops::Range<u64>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let ranges = store.stats().get_ranges;
        if ranges.iter().any(|r| r.end >= end) || Instant::now() >= deadline {
            return ranges;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn the_read_ahead_window_grows_as_soon_as_the_scan_passes_a_block() {
    run(async {
        let data = bytes((64 * MIB) as usize, 4);
        let h = Harness::new(MemStore::new(), |c| c.memory_budget = 128 * MIB);
        h.store.insert("f", data.clone());
        let ino = h.ino("f").await.unwrap();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        for off in (0..2 * MIB).step_by((128 * KIB) as usize) {
            let got = h.fs.read(ino, fh, off, (128 * KIB) as u32).await.unwrap();
            assert_eq!(&got[..], &data[off as usize..(off + 128 * KIB) as usize]);
        }
        // Not only once the blocks are released, 4 MiB behind the scan: by then a scan that
        // started with a 1 MiB window would have read 5 MiB at the pace of two GETs.
        let ranges = gets_reaching(&h.store, 32 * MIB).await;
        let furthest = ranges.iter().map(|r| r.end).max();
        assert!(
            furthest >= Some(32 * MIB),
            "2 MiB into the scan, read-ahead reaches {furthest:?}"
        );
        h.fs.release(ino, fh).await.unwrap();
    });
}

#[test]
fn a_scans_first_read_fetches_in_small_parallel_gets_and_reads_ahead_by_its_length() {
    run(async {
        let data = bytes((16 * MIB) as usize, 6);
        let h = Harness::new(MemStore::new(), |c| c.memory_budget = 128 * MIB);
        h.store.insert("f", data.clone());
        let ino = h.ino("f").await.unwrap();

        // A 1 MiB first read (a reader with a large buffer): its bytes in two GETs of 512 KiB,
        // not one of 1 MiB, and GETs already reaching 4 MiB past it, not the initial 1 MiB.
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        let got = h.fs.read(ino, fh, 0, MIB as u32).await.unwrap();
        assert_eq!(&got[..], &data[..MIB as usize]);
        let ranges = gets_reaching(&h.store, 5 * MIB).await;
        // (In the order their tasks ran, which is any.)
        for half in [0..512 * KIB, 512 * KIB..MIB] {
            assert!(ranges.contains(&half), "no GET of {half:?}: {ranges:?}");
        }
        let furthest = ranges.iter().map(|r| r.end).max();
        assert_eq!(furthest, Some(5 * MIB), "{ranges:?}");
        h.fs.release(ino, fh).await.unwrap();

        // A 16 KiB first read (a `file` or `head`): one GET of its bytes and the initial
        // window of 1 MiB, no more.
        h.store.reset_stats();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        let got = h.fs.read(ino, fh, 0, (16 * KIB) as u32).await.unwrap();
        assert_eq!(&got[..], &data[..(16 * KIB) as usize]);
        let ranges = gets_reaching(&h.store, MIB).await;
        assert!(ranges.contains(&(0..16 * KIB)), "{ranges:?}");
        let furthest = ranges.iter().map(|r| r.end).max();
        assert_eq!(furthest, Some(MIB), "{ranges:?}");
        h.fs.release(ino, fh).await.unwrap();

        // A file of 900 KiB read whole in one read: one GET, not one per 512 KiB.
        h.store
            .insert("small", data[..(900 * KIB) as usize].to_vec());
        h.store.reset_stats();
        let ino = h.ino("small").await.unwrap();
        let fh = h.fs.open(ino, rdonly()).await.unwrap();
        let got = h.fs.read(ino, fh, 0, MIB as u32).await.unwrap();
        assert_eq!(&got[..], &data[..(900 * KIB) as usize]);
        let ranges = h.store.stats().get_ranges;
        assert!(
            ranges.len() == 1 && ranges[0] == (0..900 * KIB),
            "{ranges:?}"
        );
        h.fs.release(ino, fh).await.unwrap();
    });
}

#[test]
fn concurrent_out_of_order_reads_of_one_handle_keep_the_read_ahead() {
    // The kernel's default read-ahead, and the 1 MiB one the mount sets: 1 MiB reads four at a
    // time sent the late ones to the store, one GET each, with 1 MiB of slack.
    for chunk in [128 * KIB, MIB] {
        run(scan_out_of_order(chunk));
    }
}

/// Reads a 24 MiB object through one handle in batches of four concurrent `chunk` reads, the
/// last one first, as the kernel's async read-ahead may deliver them.
async fn scan_out_of_order(chunk: u64) {
    let data = bytes((24 * MIB) as usize, 9);
    // A window of at most 32 MiB: blocks of 512 KiB, so a GET of exactly one 1 MiB read's bytes
    // is a read sent to the store on its own, not a block of the scan.
    let h = Harness::new(MemStore::new(), |c| c.read_ahead_max = 32 * MIB);
    h.store.insert("f", data.clone());
    let ino = h.ino("f").await.unwrap();
    let fh = h.fs.open(ino, rdonly()).await.unwrap();
    let mut off = 0;
    while off < data.len() as u64 {
        let mut batch = Vec::new();
        for i in (0..4u64).rev() {
            let fs = h.fs.clone();
            let at = off + i * chunk;
            batch.push(tokio::spawn(async move {
                (at, fs.read(ino, fh, at, chunk as u32).await.unwrap())
            }));
        }
        for t in batch {
            let (at, got) = t.await.unwrap();
            let end = (at as usize + chunk as usize).min(data.len());
            assert_eq!(&got[..], &data[(at as usize).min(end)..end]);
        }
        off += 4 * chunk;
    }
    h.fs.release(ino, fh).await.unwrap();
    let st = h.store.stats();
    // Reset to random reads, every read is a GET of exactly its own bytes.
    let reads = data.len() as u64 / chunk;
    let own = st
        .get_ranges
        .iter()
        .filter(|r| r.start % chunk == 0 && r.end - r.start == chunk)
        .count() as u64;
    assert!(
        own < reads / 4,
        "{own} of {reads} reads of {chunk} fetched on their own: {:?}",
        st.get_ranges
    );
    assert!(
        st.bytes_read <= data.len() as u64 + 8 * MIB,
        "{} bytes fetched for {} with reads of {chunk}",
        st.bytes_read,
        data.len()
    );
}

#[test]
fn a_read_write_handle_reads_its_own_writes() {
    run(async {
        let h = Harness::new(MemStore::new(), |_| {});
        let (a, fh) =
            h.fs.create(ROOT_INO, "f", OpenFlags(libc::O_RDWR))
                .await
                .unwrap();
        h.fs.write(a.ino, fh, 0, b"hello world").await.unwrap();
        h.fs.write(a.ino, fh, 0, b"J").await.unwrap();
        assert_eq!(h.fs.read(a.ino, fh, 0, 100).await.unwrap(), "Jello world");
        // A reader opened meanwhile sees the pending content too.
        let r = h.fs.open(a.ino, rdonly()).await.unwrap();
        assert_eq!(h.fs.read(a.ino, r, 6, 100).await.unwrap(), "world");
        h.fs.flush(a.ino, fh).await.unwrap();
        h.fs.write(a.ino, fh, 11, b"!").await.unwrap();
        h.fs.release(a.ino, fh).await.unwrap();
        // After the writer's close the reader reads the committed object.
        assert_eq!(h.fs.read(a.ino, r, 0, 100).await.unwrap(), "Jello world!");
        h.fs.release(a.ino, r).await.unwrap();
        assert_eq!(h.store.object("f").unwrap(), "Jello world!");
    });
}

#[test]
fn fallocate_reserves_zeroes_and_grows_as_asked() {
    run(async {
        let h = Harness::new(MemStore::new(), |_| {});
        let mut want = bytes(100, 1);
        h.put("f", &want, 100).await.unwrap();
        let ino = h.ino("f").await.unwrap();
        let r = h.fs.open(ino, rdonly()).await.unwrap();
        assert_eq!(
            h.fs.fallocate(ino, r, 0, 10, Allocate::PunchHole)
                .await
                .errno(),
            Err(Errno::EBADF),
            "a read-only handle"
        );
        h.fs.release(ino, r).await.unwrap();
        let fh = h.fs.open(ino, wronly()).await.unwrap();
        let steps = [
            (
                0,
                0,
                Allocate::Reserve { keep_size: false },
                Err(Errno::EINVAL),
            ),
            (50, 500, Allocate::Reserve { keep_size: true }, Ok(100)),
            (10, 10, Allocate::PunchHole, Ok(100)),
            (90, 110, Allocate::ZeroRange { keep_size: true }, Ok(100)),
            (95, 55, Allocate::ZeroRange { keep_size: false }, Ok(150)),
            (200, 100, Allocate::Reserve { keep_size: false }, Ok(300)),
            (0, 20, Allocate::Reserve { keep_size: false }, Ok(300)),
        ];
        for (off, len, how, expect) in steps {
            let got = h.fs.fallocate(ino, fh, off, len, how).await.errno();
            let (start, end) = (off as usize, (off + len) as usize);
            match how {
                Allocate::Reserve { .. } => {}
                Allocate::PunchHole | Allocate::ZeroRange { .. } => {
                    let end = end.min(want.len());
                    want[start.min(end)..end].fill(0);
                }
            }
            assert_eq!(got, expect.map(drop), "{how:?} of {len} at {off}");
            if let Ok(n) = expect {
                want.resize(n as usize, 0);
            }
            let size = h.fs.getattr(ino).await.unwrap().size;
            assert_eq!(size, want.len() as u64, "{how:?} of {len} at {off}");
        }
        h.fs.release(ino, fh).await.unwrap();
        assert_eq!(h.store.object("f").unwrap(), want);
    });
}

// ---------------------------------------------------------------------------------------------
// Property test against a reference model.

const NAMES: [&str; 3] = ["a", "b", "c"];
const PART: u64 = 8;

/// Paths 0..3 are `a`, `b`, `c`; 3..12 are `a/a` .. `c/c`; 12 is the root.
fn path_of(i: usize) -> String {
    match i {
        0..3 => NAMES[i].to_string(),
        3..12 => format!("{}/{}", NAMES[(i - 3) / 3], NAMES[(i - 3) % 3]),
        _ => String::new(),
    }
}

#[derive(Debug, Clone)]
enum Step {
    Mkdir(usize),
    Rmdir(usize),
    Create(usize),
    Unlink(usize),
    Write {
        path: usize,
        trunc: bool,
        rdwr: bool,
        chunks: Vec<(u64, Vec<u8>)>,
    },
    Truncate(usize, u64),
    Rename(usize, usize),
    Read(usize, u64, u32),
    List(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let path = 0usize..12;
    let chunk = (0u64..40, proptest::collection::vec(any::<u8>(), 0..20));
    prop_oneof![
        1 => path.clone().prop_map(Step::Mkdir),
        1 => path.clone().prop_map(Step::Rmdir),
        1 => path.clone().prop_map(Step::Create),
        1 => path.clone().prop_map(Step::Unlink),
        3 => (path.clone(), any::<bool>(), any::<bool>(), proptest::collection::vec(chunk.clone(), 1..5))
            .prop_map(|(path, trunc, rdwr, chunks)| Step::Write { path, trunc, rdwr, chunks }),
        // A stream from 0 (past a part or two), then writes anywhere: back into what was
        // uploaded (EINVAL), into the tail, past the end.
        3 => (
            path.clone(),
            any::<bool>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 4..12), 1..4),
            proptest::collection::vec(chunk, 1..4),
        )
            .prop_map(|(path, rdwr, bufs, tail)| {
                let mut off = 0;
                let mut chunks: Vec<(u64, Vec<u8>)> = bufs.into_iter().map(|b| { let c = (off, b.clone()); off += b.len() as u64; c }).collect();
                chunks.extend(tail);
                Step::Write { path, trunc: true, rdwr, chunks }
            }),
        // Mostly sequential writes, so streaming happens often.
        3 => (path.clone(), proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..12), 1..5))
            .prop_map(|(path, bufs)| {
                let mut off = 0;
                let chunks = bufs.into_iter().map(|b| { let c = (off, b.clone()); off += b.len() as u64; c }).collect();
                Step::Write { path, trunc: true, rdwr: false, chunks }
            }),
        1 => (path.clone(), 0u64..40).prop_map(|(p, n)| Step::Truncate(p, n)),
        2 => (path.clone(), path.clone()).prop_map(|(a, b)| Step::Rename(a, b)),
        1 => (path.clone(), 0u64..40, 0u32..40).prop_map(|(p, o, l)| Step::Read(p, o, l)),
        1 => (0usize..13).prop_map(Step::List),
    ]
}

#[derive(Debug, Clone, Default)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Model {
    fn kind(&self, p: &str) -> Option<FileKind> {
        if p.is_empty() || self.dirs.contains(p) {
            Some(FileKind::Dir)
        } else if self.files.contains_key(p) {
            Some(FileKind::File)
        } else {
            None
        }
    }

    /// The error looking up the parent directory of `p` gives (paths are at most two deep).
    fn check_parent(&self, p: &str) -> Result<(), Errno> {
        let (dir, _) = paths::split(p);
        match self.kind(dir) {
            Some(FileKind::Dir) => Ok(()),
            Some(FileKind::File) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn children(&self, dir: &str) -> BTreeMap<String, FileKind> {
        let under = paths::under(dir);
        let mut out = BTreeMap::new();
        for d in &self.dirs {
            if let Some(n) = d.strip_prefix(&under)
                && !n.contains('/')
            {
                out.insert(n.to_string(), FileKind::Dir);
            }
        }
        for f in self.files.keys() {
            if let Some(n) = f.strip_prefix(&under)
                && !n.contains('/')
            {
                out.insert(n.to_string(), FileKind::File);
            }
        }
        out
    }

    /// Moves `from` and everything under it to `to`.
    fn move_tree(&mut self, from: &str, to: &str) {
        let re = |p: &str| format!("{to}{}", &p[from.len()..]);
        let below = format!("{from}/");
        let dirs: Vec<String> = self
            .dirs
            .iter()
            .filter(|d| *d == from || d.starts_with(&below))
            .cloned()
            .collect();
        for d in dirs {
            self.dirs.remove(&d);
            self.dirs.insert(re(&d));
        }
        let files: Vec<String> = self
            .files
            .keys()
            .filter(|f| *f == from || f.starts_with(&below))
            .cloned()
            .collect();
        for f in files {
            if let Some(v) = self.files.remove(&f) {
                self.files.insert(re(&f), v);
            }
        }
    }
}

/// What the writes of one handle do, by the documented rules: a stream from 0 uploads each full
/// part and cannot rewrite it; anything else is staged. Returns the result of each write.
/// Returns the result of each write and the size after it.
fn model_writes(
    content: &mut Vec<u8>,
    trunc: bool,
    rdwr: bool,
    chunks: &[(u64, Vec<u8>)],
) -> Vec<(Result<(), Errno>, u64)> {
    if trunc {
        content.clear();
    }
    let stream = content.is_empty();
    let mut handed = 0u64;
    let mut staged_base: Option<u64> = None;
    let mut out = Vec::new();
    for (off, data) in chunks {
        let size = content.len() as u64;
        let r = if data.is_empty() {
            Ok(())
        } else if let Some(base) = staged_base {
            if *off < base {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            }
        } else if stream {
            if *off < handed {
                Err(Errno::EINVAL)
            } else if *off == size && !(rdwr && handed == 0) {
                Ok(())
            } else {
                staged_base = Some(handed);
                Ok(())
            }
        } else {
            staged_base = Some(0);
            Ok(())
        };
        if r.is_ok() && !data.is_empty() {
            let end = *off as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*off as usize..end].copy_from_slice(data);
            if stream && staged_base.is_none() {
                handed = content.len() as u64 / PART * PART;
            }
        }
        out.push((r, content.len() as u64));
    }
    out
}

async fn apply(h: &Harness, m: &mut Model, s: &Step) -> Result<(), TestCaseError> {
    match s {
        Step::Mkdir(p) => {
            let p = path_of(*p);
            let want = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                Some(_) => Err(Errno::EEXIST),
                None => Ok(()),
            });
            let got = async {
                let (d, n) = h.parent(&p).await?;
                h.fs.mkdir(d, n).await.map(drop).errno()
            }
            .await;
            prop_assert_eq!(got, want, "mkdir {}", p);
            if want.is_ok() {
                m.dirs.insert(p);
            }
        }
        Step::Rmdir(p) => {
            let p = path_of(*p);
            let want = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                None => Err(Errno::ENOENT),
                Some(FileKind::File) => Err(Errno::ENOTDIR),
                Some(FileKind::Dir) if !m.children(&p).is_empty() => Err(Errno::ENOTEMPTY),
                Some(FileKind::Dir) => Ok(()),
            });
            let got = async {
                let (d, n) = h.parent(&p).await?;
                h.fs.rmdir(d, n).await.errno()
            }
            .await;
            prop_assert_eq!(got, want, "rmdir {}", p);
            if want.is_ok() {
                m.dirs.remove(&p);
            }
        }
        Step::Create(p) => {
            let p = path_of(*p);
            let want = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                Some(_) => Err(Errno::EEXIST),
                None => Ok(()),
            });
            let got = async {
                let (d, n) = h.parent(&p).await?;
                let (a, fh) = h.fs.create(d, n, wronly()).await?;
                h.fs.release(a.ino, fh).await.errno()
            }
            .await;
            prop_assert_eq!(got, want, "create {}", p);
            if want.is_ok() {
                m.files.insert(p, Vec::new());
            }
        }
        Step::Unlink(p) => {
            let p = path_of(*p);
            let want = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                None => Err(Errno::ENOENT),
                Some(FileKind::Dir) => Err(Errno::EISDIR),
                Some(FileKind::File) => Ok(()),
            });
            let got = async {
                let (d, n) = h.parent(&p).await?;
                h.fs.unlink(d, n).await.errno()
            }
            .await;
            prop_assert_eq!(got, want, "unlink {}", p);
            if want.is_ok() {
                m.files.remove(&p);
            }
        }
        Step::Write {
            path,
            trunc,
            rdwr,
            chunks,
        } => {
            let p = path_of(*path);
            let want_open = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                None => Err(Errno::ENOENT),
                Some(FileKind::Dir) => Err(Errno::EISDIR),
                Some(FileKind::File) => Ok(()),
            });
            let ino = h.ino(&p).await;
            let opened = match ino {
                Ok(ino) => {
                    let mut flags = if *rdwr { libc::O_RDWR } else { libc::O_WRONLY };
                    if *trunc {
                        flags |= libc::O_TRUNC;
                    }
                    h.fs.open(ino, OpenFlags(flags))
                        .await
                        .map(|fh| (ino, fh))
                        .errno()
                }
                Err(e) => Err(e),
            };
            prop_assert_eq!(opened.map(drop), want_open, "open {}", p);
            let Ok((ino, fh)) = opened else { return Ok(()) };
            let content = m
                .files
                .get_mut(&p)
                .ok_or_else(|| TestCaseError::fail("model file"))?;
            let wants = model_writes(content, *trunc, *rdwr, chunks);
            for ((off, data), (want, size)) in chunks.iter().zip(wants) {
                let got = h.fs.write(ino, fh, *off, data).await.map(drop).errno();
                prop_assert_eq!(got, want, "write {} at {} ({} bytes)", p, off, data.len());
                prop_assert_eq!(
                    h.fs.getattr(ino).await.map(|a| a.size).errno(),
                    Ok(size),
                    "size of {}",
                    p
                );
            }
            prop_assert_eq!(h.fs.flush(ino, fh).await.errno(), Ok(()));
            prop_assert_eq!(h.fs.release(ino, fh).await.errno(), Ok(()));
        }
        Step::Truncate(p, n) => {
            let p = path_of(*p);
            let want = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                None => Err(Errno::ENOENT),
                Some(FileKind::Dir) => Err(Errno::EISDIR),
                Some(FileKind::File) => Ok(()),
            });
            let got = async {
                let ino = h.ino(&p).await?;
                h.fs.setattr(
                    ino,
                    None,
                    SetAttr {
                        size: Some(*n),
                        ..SetAttr::default()
                    },
                )
                .await
                .map(drop)
                .errno()
            }
            .await;
            prop_assert_eq!(got, want, "truncate {} to {}", p, n);
            if let Some(c) = m.files.get_mut(&p) {
                c.resize(*n as usize, 0);
            }
        }
        Step::Rename(a, b) => {
            let (a, b) = (path_of(*a), path_of(*b));
            let want = (|| {
                m.check_parent(&a)?;
                m.check_parent(&b)?;
                let src = m.kind(&a).ok_or(Errno::ENOENT)?;
                if a == b {
                    return Ok(());
                }
                match (src, m.kind(&b)) {
                    (FileKind::File, Some(FileKind::Dir)) => Err(Errno::EISDIR),
                    (FileKind::Dir, Some(FileKind::File)) => Err(Errno::ENOTDIR),
                    (FileKind::Dir, _) if b.starts_with(&format!("{a}/")) => Err(Errno::EINVAL),
                    (FileKind::Dir, Some(FileKind::Dir)) if !m.children(&b).is_empty() => {
                        Err(Errno::ENOTEMPTY)
                    }
                    _ => Ok(()),
                }
            })();
            let got = async {
                let (d1, n1) = h.parent(&a).await?;
                let (d2, n2) = h.parent(&b).await?;
                h.fs.rename(d1, n1, d2, n2, false).await.errno()
            }
            .await;
            prop_assert_eq!(got, want, "rename {} {}", a, b);
            if want.is_ok() && a != b {
                m.dirs.remove(&b);
                m.files.remove(&b);
                m.move_tree(&a, &b);
            }
        }
        Step::Read(p, off, len) => {
            let p = path_of(*p);
            let want = m.check_parent(&p).and_then(|()| match m.kind(&p) {
                None => Err(Errno::ENOENT),
                Some(FileKind::Dir) => Err(Errno::EISDIR),
                Some(FileKind::File) => {
                    let c = &m.files[&p];
                    let from = (*off as usize).min(c.len());
                    let to = (*off as usize + *len as usize).min(c.len());
                    Ok(c[from..to].to_vec())
                }
            });
            let got = async {
                let ino = h.ino(&p).await?;
                let fh = h.fs.open(ino, rdonly()).await?;
                let r = h.fs.read(ino, fh, *off, *len).await;
                h.fs.release(ino, fh).await?;
                r.map(|b| b.to_vec()).errno()
            }
            .await;
            prop_assert_eq!(got, want, "read {}", p);
        }
        Step::List(p) => {
            let p = path_of(*p);
            let want = if p.is_empty() {
                Ok(m.children(""))
            } else {
                m.check_parent(&p).and_then(|()| match m.kind(&p) {
                    None => Err(Errno::ENOENT),
                    Some(FileKind::File) => Err(Errno::ENOTDIR),
                    Some(FileKind::Dir) => Ok(m.children(&p)),
                })
            };
            prop_assert_eq!(h.list(&p).await, want, "list {}", p);
        }
    }
    Ok(())
}

/// The whole tree as the file system shows it equals the model.
async fn verify(h: &Harness, m: &Model) -> Result<(), TestCaseError> {
    let mut dirs: Vec<String> = m.dirs.iter().cloned().collect();
    dirs.push(String::new());
    for d in dirs {
        prop_assert_eq!(h.list(&d).await, Ok(m.children(&d)), "listing {}", d);
    }
    for (p, c) in &m.files {
        let attr = async {
            let ino = h.ino(p).await?;
            h.fs.getattr(ino).await.errno()
        }
        .await;
        prop_assert_eq!(
            attr.map(|a| (a.kind, a.size)),
            Ok((FileKind::File, c.len() as u64)),
            "stat {}",
            p
        );
        prop_assert_eq!(h.get(p).await, Ok(c.clone()), "content of {}", p);
    }
    Ok(())
}

/// The store holds exactly the model: each file as an object, each directory as a marker or
/// implied by keys under it, nothing else, no upload left open.
fn verify_store(store: &MemStore, prefix: &str, m: &Model) -> Result<(), TestCaseError> {
    for key in store.keys() {
        let rel = key
            .strip_prefix(prefix)
            .ok_or_else(|| TestCaseError::fail(format!("key {key} outside the prefix")))?;
        match rel.strip_suffix('/') {
            Some(dir) => prop_assert!(m.dirs.contains(dir), "marker {} of no directory", key),
            None => prop_assert!(m.files.contains_key(rel), "object {} of no file", key),
        }
    }
    for (p, c) in &m.files {
        prop_assert_eq!(
            store.object(&format!("{prefix}{p}")).map(|b| b.to_vec()),
            Some(c.clone()),
            "object {}",
            p
        );
    }
    prop_assert_eq!(store.pending_uploads(), 0);
    Ok(())
}

/// With a memory budget too small to buffer parts, streams spill to staging at points the model
/// does not follow; only writes that cannot hit the EINVAL rule stay `O_WRONLY`.
fn spill_safe(steps: Vec<Step>) -> Vec<Step> {
    steps
        .into_iter()
        .map(|s| match s {
            Step::Write {
                path,
                trunc,
                rdwr,
                chunks,
            } => {
                let mut size = 0;
                let sequential = trunc
                    && chunks.iter().all(|(off, d)| {
                        let ok = *off == size;
                        size += d.len() as u64;
                        ok
                    });
                Step::Write {
                    path,
                    trunc,
                    rdwr: rdwr || !sequential,
                    chunks,
                }
            }
            other => other,
        })
        .collect()
}

fn check_sequence(
    steps: Vec<Step>,
    prefix: &str,
    seed_implicit: bool,
    budget: u64,
) -> Result<(), TestCaseError> {
    run(async {
        let store = MemStore::new();
        store.set_min_part_size(0);
        store.set_max_page(3);
        let mut m = Model::default();
        if seed_implicit {
            store.insert(&format!("{prefix}b/c"), "seed");
            m.dirs.insert("b".into());
            m.files.insert("b/c".into(), b"seed".to_vec());
        }
        let tune = |c: &mut FsConfig| {
            c.prefix = prefix.to_string();
            c.part_size = PART;
            c.memory_budget = budget;
        };
        let h = Harness::new(store.clone(), tune);
        for s in &steps {
            apply(&h, &mut m, s).await?;
            verify(&h, &m).await?;
        }
        verify_store(&store, prefix, &m)?;
        // A fresh mount with no caches sees the same tree.
        let fresh = Harness::new(store, |c| {
            tune(c);
            c.attr_ttl = Duration::ZERO;
            c.list_ttl = Duration::ZERO;
            c.negative_ttl = Duration::ZERO;
        });
        verify(&fresh, &m).await?;
        let st = h.fs.stats();
        prop_assert_eq!(st.memory_in_use, 0);
        prop_assert!(
            st.memory_peak <= budget,
            "peak {} over {}",
            st.memory_peak,
            budget
        );
        prop_assert_eq!(st.staging_bytes, 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(
        steps in proptest::collection::vec(step(), 1..25),
        prefixed in any::<bool>(),
        seed in any::<bool>(),
    ) {
        check_sequence(steps, if prefixed { "mnt/pv/" } else { "" }, seed, MIB)?;
    }

    #[test]
    fn random_operations_match_the_model_with_a_tiny_memory_budget(
        steps in proptest::collection::vec(step(), 1..25),
        seed in any::<bool>(),
    ) {
        check_sequence(spill_safe(steps), "", seed, 2 * PART)?;
    }
}
