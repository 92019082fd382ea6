//! The file system mounted for real (root and /dev/fuse required; these tests fail, not skip,
//! without them) over `MemStore`, driven through the kernel with `std::fs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cos_fuse::FsConfig;
use cos_fuse::fs::Fs;
use cos_fuse::fuse::{FuseCounters, MountHandle, MountOptions, mount};
use cos_fuse::mem::{MemStore, Op};

const MIB: usize = 1024 * 1024;

/// A mount that is always undone: unmounted by the session, else `umount -l`.
struct Mounted {
    handle: Option<MountHandle>,
    store: MemStore,
    counters: Arc<FuseCounters>,
    dir: PathBuf,
    _staging: tempfile::TempDir,
    _mountpoint: tempfile::TempDir,
    // Dropped last: replies are sent from its tasks until the session ends.
    _rt: tokio::runtime::Runtime,
}

fn mounted_at(dir: &Path) -> bool {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    table.lines().any(|l| l.split(' ').nth(4) == Some(&*dir))
}

impl Mounted {
    fn new(tune: impl FnOnce(&mut FsConfig)) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mountpoint = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        let store = MemStore::new();
        let mut cfg = FsConfig {
            prefix: "pv/".into(),
            staging_dir: staging.path().to_path_buf(),
            ..FsConfig::default()
        };
        tune(&mut cfg);
        let fs = Fs::new(store.clone(), cfg).unwrap();
        let opts = MountOptions::new("bucket-1250000000", "pv");
        let counters = Arc::clone(&opts.counters);
        let dir = mountpoint.path().canonicalize().unwrap();
        let handle =
            mount(fs, rt.handle().clone(), &dir, &opts).expect("mount needs root and /dev/fuse");
        Mounted {
            handle: Some(handle),
            store,
            counters,
            dir,
            _staging: staging,
            _mountpoint: mountpoint,
            _rt: rt,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The FLUSH requests the kernel has sent so far.
    fn flushes(&self) -> u64 {
        let ops = self.counters.snapshot().ops;
        ops.get("flush").map_or(0, |(ok, errors)| ok + errors)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take()
            && let Err(e) = h.unmount()
        {
            eprintln!("unmount of {} failed: {e}", self.dir.display());
        }
        if mounted_at(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u8)
                .wrapping_mul(131)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}

/// The kernel read-ahead of the mount at `dir`, once it is `want` KiB (the mount sets it from a
/// thread of its own), or what it still is after 5 s.
fn kernel_read_ahead_kb(dir: &Path, want: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(dir).unwrap().dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kb: u64 = fs::read_to_string(&path).unwrap().trim().parse().unwrap();
        if kb == want || Instant::now() > deadline {
            return kb;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn posix_operations_through_the_kernel() {
    let m = Mounted::new(|_| {});
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&*m.dir.to_string_lossy()))
        .map(str::to_string)
        .unwrap();
    assert!(
        line.contains(" - fuse.cos-fuse cos-fuse:bucket-1250000000/pv "),
        "{line}"
    );
    // Raised from the kernel's 128 KiB, after the INIT answer that would cap it again.
    assert_eq!(kernel_read_ahead_kb(&m.dir, 1024), 1024);

    // A 20 MiB file, streamed in parts, read back through the kernel.
    let big = data(20 * MIB, 1);
    fs::write(m.path("big"), &big).unwrap();
    assert_eq!(m.store.object("pv/big").unwrap(), big);
    assert!(m.store.stats().count(Op::UploadPart) >= 3);
    assert_eq!(m.store.stats().count(Op::Put), 0);
    assert_eq!(fs::read(m.path("big")).unwrap(), big);
    assert_eq!(fs::metadata(m.path("big")).unwrap().len(), big.len() as u64);

    // mkdir, readdir.
    fs::create_dir(m.path("d")).unwrap();
    fs::create_dir(m.path("d/sub")).unwrap();
    fs::write(m.path("d/a"), b"A").unwrap();
    fs::write(m.path("d/sub/b"), b"B").unwrap();
    assert_eq!(names(&m.path("d")), ["a", "sub"]);
    assert_eq!(names(&m.dir), ["big", "d"]);
    assert!(fs::metadata(m.path("d/sub")).unwrap().is_dir());

    // Renaming a directory moves everything under it.
    fs::rename(m.path("d"), m.path("e")).unwrap();
    assert_eq!(names(&m.dir), ["big", "e"]);
    assert_eq!(fs::read(m.path("e/sub/b")).unwrap(), b"B");
    assert_eq!(
        fs::metadata(m.path("d")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let keys = m.store.keys();
    assert!(keys.iter().all(|k| !k.starts_with("pv/d/")), "{keys:?}");
    assert!(keys.contains(&"pv/e/sub/b".to_string()), "{keys:?}");

    // Append, then truncate down and up.
    let mut f = OpenOptions::new().append(true).open(m.path("e/a")).unwrap();
    f.write_all(b"ppend").unwrap();
    drop(f);
    assert_eq!(fs::read(m.path("e/a")).unwrap(), b"Append");
    let f = OpenOptions::new().write(true).open(m.path("e/a")).unwrap();
    f.set_len(3).unwrap();
    drop(f);
    assert_eq!(fs::read(m.path("e/a")).unwrap(), b"App");
    let f = OpenOptions::new().write(true).open(m.path("e/a")).unwrap();
    f.set_len(5).unwrap();
    drop(f);
    assert_eq!(fs::read(m.path("e/a")).unwrap(), b"App\0\0");
    assert_eq!(m.store.object("pv/e/a").unwrap(), &b"App\0\0"[..]);

    // Random writes in place (staged), read back through the same descriptor.
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("e/a"))
        .unwrap();
    f.seek(SeekFrom::Start(1)).unwrap();
    f.write_all(b"XY").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"AXY\0\0");
    drop(f);

    // rmdir of a non-empty directory; unlink; rmdir.
    let e = fs::remove_dir(m.path("e")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc_enotempty()));
    fs::remove_file(m.path("e/sub/b")).unwrap();
    fs::remove_dir(m.path("e/sub")).unwrap();
    fs::remove_file(m.path("e/a")).unwrap();
    fs::remove_dir(m.path("e")).unwrap();
    assert_eq!(names(&m.dir), ["big"]);

    // chmod to another mode is refused; to the mount's mode accepted.
    use std::os::unix::fs::PermissionsExt;
    let perm = |mode| fs::Permissions::from_mode(mode);
    assert!(fs::set_permissions(m.path("big"), perm(0o600)).is_err());
    fs::set_permissions(m.path("big"), perm(0o644)).unwrap();
    m.store.reset_stats();
}

fn libc_enotempty() -> i32 {
    nix::errno::Errno::ENOTEMPTY as i32
}

#[test]
fn a_failed_part_upload_is_eio_on_close_and_leaves_no_object() {
    let m = Mounted::new(|_| {});
    m.store.fail_after(Op::UploadPart, 1, 1);
    let payload = data(20 * MIB, 2);
    let mut f = fs::File::create(m.path("fails")).unwrap();
    let write = f.write_all(&payload);
    // std's File ignores errors of close(2); close it by hand to see the flush error.
    let close = nix::unistd::close(f);
    let eio = nix::errno::Errno::EIO;
    match write {
        Err(e) => assert_eq!(e.raw_os_error(), Some(eio as i32), "{e}"),
        Ok(()) => assert_eq!(close, Err(eio)),
    }
    assert_eq!(m.store.object("pv/fails"), None);
    assert_eq!(
        m.store.pending_uploads(),
        0,
        "the multipart upload was aborted"
    );
    assert!(!names(&m.dir).contains(&"fails".to_string()));
    assert!(fs::read(m.path("fails")).is_err());

    // The next upload of the same name works.
    fs::write(m.path("fails"), b"ok").unwrap();
    assert_eq!(m.store.object("pv/fails").unwrap(), "ok");
}

#[test]
fn a_slow_get_does_not_hold_up_other_requests() {
    let m = Mounted::new(|_| {});
    m.store.insert("pv/slow", data(MIB, 3));
    m.store.insert("pv/other", "x");
    m.store.set_latency(Op::Get, Duration::from_secs(3));
    let path = m.path("slow");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let _ = tx.send(());
        fs::read(path).map(|d| d.len())
    });
    rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(fs::metadata(m.path("other")).unwrap().len(), 1);
    assert_eq!(names(&m.dir), ["other", "slow"]);
    fs::write(m.path("new"), b"n").unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(reader.join().unwrap().unwrap(), MIB);
}

#[test]
fn closing_a_read_only_descriptor_sends_no_flush_and_a_written_one_does() {
    let m = Mounted::new(|_| {});
    fs::write(m.path("f"), b"data").unwrap();
    let before = m.flushes();
    assert!(before >= 1, "a written file's close flushes");
    for _ in 0..3 {
        assert_eq!(fs::read(m.path("f")).unwrap(), b"data");
    }
    // A forked child closing the inherited descriptor at execve: no FLUSH either.
    let f = fs::File::open(m.path("f")).unwrap();
    let status = Command::new("true").status().unwrap();
    assert!(status.success());
    drop(f);
    assert_eq!(m.flushes(), before, "read-only closes sent FLUSH");
    let mut f = OpenOptions::new().write(true).open(m.path("f")).unwrap();
    f.write_all(b"DA").unwrap();
    drop(f);
    assert!(m.flushes() > before);
    assert_eq!(m.store.object("pv/f").unwrap(), &b"DAta"[..]);
}
