//! The fuser adapter: translates kernel requests to [`Fs`] calls and back. Every request runs
//! as its own task on a tokio runtime and replies from there, so a slow GET never holds up other
//! requests; this module holds no state and makes no decision of its own.
//!
//! Request buffers in flight (fuser's default of 16 background requests, at most 1 MiB each)
//! are outside the file system's memory budget.
//!
//! Mounting uses fuser's pure-Rust path (no libfuse): as root it calls mount(2) directly and
//! needs no `fusermount`. Only [`MountOptions::auto_unmount`] goes through `fusermount3`, from
//! the `fuse3` package.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, Notifier, OpenFlags as FuseOpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use tokio::runtime::Handle;

use crate::errno::Errno;
use crate::fs::{Allocate, Attr, FileKind, Fs, Invalidation, OpenFlags, SetAttr};
use crate::store::ObjectStore;

/// How the kernel mount is set up.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// The mount source shown in the mount table: `cos-fuse:<bucket>/<prefix>`.
    pub fs_name: String,
    /// Let users other than the mounting one (root) in; pods need it.
    pub allow_other: bool,
    /// Let the kernel check permissions against the mode, uid and gid the file system reports.
    pub default_permissions: bool,
    /// Mount read-only (also set when the file system is configured read-only).
    pub read_only: bool,
    /// Unmount when the process dies. Needs `fusermount3` (the `fuse3` package).
    pub auto_unmount: bool,
    /// Threads reading requests from /dev/fuse (they only dispatch; default 1).
    pub threads: usize,
    /// Where requests are counted.
    pub counters: Arc<FuseCounters>,
}

impl MountOptions {
    /// Defaults for a bucket and prefix: `allow_other` and `default_permissions` on.
    pub fn new(bucket: &str, prefix: &str) -> Self {
        MountOptions {
            fs_name: format!("cos-fuse:{bucket}/{}", prefix.trim_start_matches('/')),
            allow_other: true,
            default_permissions: true,
            read_only: false,
            auto_unmount: false,
            threads: 1,
            counters: Arc::default(),
        }
    }

    fn fuser_config(&self, read_only: bool) -> Config {
        let mut options = vec![
            MountOption::FSName(self.fs_name.clone()),
            // The kernel takes the subtype itself (the mount table then says `fuse.cos-fuse`);
            // fuser would only pass it to fusermount.
            MountOption::CUSTOM("subtype=cos-fuse".into()),
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        if self.default_permissions {
            options.push(MountOption::DefaultPermissions);
        }
        options.push(if read_only || self.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        });
        if self.auto_unmount {
            options.push(MountOption::AutoUnmount);
        }
        let mut cfg = Config::default();
        cfg.mount_options = options;
        cfg.acl = if self.allow_other {
            SessionACL::All
        } else if self.auto_unmount {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        cfg.n_threads = Some(self.threads.max(1));
        cfg
    }
}

/// A mounted file system served in the background.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts (fails with EBUSY while files are open) and waits for the session to end.
    pub fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }

    /// Waits until the file system is unmounted from outside (`umount`).
    pub fn join(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(s) => s.join(),
            None => Ok(()),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && let Err(e) = s.umount_and_join()
        {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount failed");
        }
    }
}

/// Mounts `fs` at `mountpoint` and serves it on `runtime` (a multi-thread runtime with time and
/// I/O enabled) until the handle is unmounted or dropped, or the file system is unmounted from
/// outside.
pub fn mount<S: ObjectStore>(
    fs: Fs<S>,
    runtime: Handle,
    mountpoint: &Path,
    options: &MountOptions,
) -> io::Result<MountHandle> {
    let cfg = options.fuser_config(fs.config().read_only);
    let session = fuser::spawn_mount(
        FuseFs {
            fs: fs.clone(),
            rt: runtime,
            counters: Arc::clone(&options.counters),
        },
        mountpoint,
        &cfg,
    )?;
    set_invalidator(&fs, session.notifier());
    raise_kernel_read_ahead(mountpoint, fs.config().kernel_read_ahead);
    Ok(MountHandle {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// Mounts `fs` and serves it until it is unmounted from outside; blocks the calling thread
/// (not a runtime thread: requests run on `runtime`).
pub fn mount_blocking<S: ObjectStore>(
    fs: Fs<S>,
    runtime: Handle,
    mountpoint: &Path,
    options: &MountOptions,
) -> io::Result<()> {
    let cfg = options.fuser_config(fs.config().read_only);
    let session = fuser::Session::new(
        FuseFs {
            fs: fs.clone(),
            rt: runtime,
            counters: Arc::clone(&options.counters),
        },
        mountpoint,
        &cfg,
    )?;
    set_invalidator(&fs, session.notifier());
    raise_kernel_read_ahead(mountpoint, fs.config().kernel_read_ahead);
    session.run()
}

/// Sets the new mount's kernel read-ahead (`/sys/class/bdi/<dev>/read_ahead_kb`) to `bytes`,
/// from a thread of its own, once the kernel has taken the answer to its INIT request: that
/// answer caps the read-ahead at the 128 KiB the kernel offered, undoing anything set before.
/// The thread's `stat` of the mount's root waits for exactly that. It takes root (the CSI node
/// plugin runs as root) and a writable `/sys`; without them the mount keeps the kernel's default
/// and says so once.
fn raise_kernel_read_ahead(mountpoint: &Path, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let mountpoint = mountpoint.to_path_buf();
    let set = move || {
        use std::os::unix::fs::MetadataExt;
        let dev = match std::fs::metadata(&mountpoint) {
            Ok(m) => m.dev(),
            Err(e) => {
                tracing::debug!(error = %e, "the mount ended before its read-ahead was set");
                return;
            }
        };
        let path = format!(
            "/sys/class/bdi/{}:{}/read_ahead_kb",
            libc::major(dev),
            libc::minor(dev)
        );
        let kb = bytes / 1024;
        match std::fs::write(&path, kb.to_string()) {
            Ok(()) => tracing::debug!(path, kb, "kernel read-ahead set"),
            Err(e) => tracing::info!(
                path,
                error = %e,
                "the kernel keeps its own read-ahead on this mount: sequential reads take more \
                 round trips"
            ),
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("read-ahead".to_owned())
        .spawn(set)
    {
        tracing::info!(error = %e, "cannot start the thread that sets the kernel read-ahead");
    }
}

fn set_invalidator<S: ObjectStore>(fs: &Fs<S>, notifier: Notifier) {
    fs.set_invalidator(Arc::new(move |what| {
        let r = match &what {
            Invalidation::Entry { parent, name } => {
                notifier.inval_entry(INodeNo(*parent), OsStr::new(name))
            }
            Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
        };
        // ENOENT: the kernel had already forgotten it.
        if let Err(e) = r {
            tracing::debug!(?what, error = %e, "kernel cache invalidation failed");
        }
    }));
}

struct FuseFs<S: ObjectStore> {
    fs: Fs<S>,
    rt: Handle,
    counters: Arc<FuseCounters>,
}

/// What the kernel asked of the mount: requests and failures by operation, bytes moved. The
/// operations are this adapter's fixed set, so they make bounded metric labels.
#[derive(Debug, Default)]
pub struct FuseCounters {
    /// `(requests, errors)` per entry of [`OPS`]: atomics, so counting never takes a lock on the
    /// request path.
    ops: [(AtomicU64, AtomicU64); OPS.len()],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// The operations the adapter counts (every request it dispatches).
const OPS: [&str; 20] = [
    "lookup",
    "getattr",
    "setattr",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fallocate",
    "fsync",
    "opendir",
    "readdir",
    "create",
    "symlink",
    "link",
];

/// The index of `name` in [`OPS`]. Called through [`op!`] at compile time, so dispatching an
/// operation that is not counted fails the build instead of a request.
#[allow(clippy::panic)] // Only ever evaluated by the compiler.
const fn op_index(name: &str) -> usize {
    let mut i = 0;
    while i < OPS.len() {
        let (a, b) = (OPS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut k = 0;
            while k < a.len() && a[k] == b[k] {
                k += 1;
            }
            if k == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("a FUSE operation is missing from OPS")
}

/// The [`OPS`] index of a counted operation, checked at compile time.
macro_rules! op {
    ($name:literal) => {{
        const INDEX: usize = op_index($name);
        INDEX
    }};
}

/// A copy of [`FuseCounters`]: `(requests, errors)` per operation that was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuseCountersSnapshot {
    pub ops: std::collections::BTreeMap<&'static str, (u64, u64)>,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl FuseCounters {
    /// Counts a request (or its failure) of operation `OPS[op]`.
    fn count(&self, op: usize, failed: bool) {
        if let Some((ok, errors)) = self.ops.get(op) {
            if failed { errors } else { ok }.fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> FuseCountersSnapshot {
        FuseCountersSnapshot {
            ops: OPS
                .iter()
                .zip(&self.ops)
                .map(|(op, (ok, errors))| (*op, (ok.load(Relaxed), errors.load(Relaxed))))
                .filter(|(_, (ok, errors))| ok + errors > 0)
                .collect(),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
        }
    }
}

/// One request's view of the counters: it knows its operation (an index into [`OPS`]).
struct Op {
    index: usize,
    counters: Arc<FuseCounters>,
}

impl Op {
    /// Counts the failure and converts the errno for the reply.
    fn err(&self, e: Errno) -> fuser::Errno {
        self.counters.count(self.index, true);
        err(e)
    }

    fn read(&self, bytes: usize) {
        self.counters.bytes_read.fetch_add(bytes as u64, Relaxed);
    }

    fn written(&self, bytes: u32) {
        self.counters
            .bytes_written
            .fetch_add(u64::from(bytes), Relaxed);
    }
}

fn err(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.code())
}

/// Names must be UTF-8 (object keys are).
fn utf8(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_string).ok_or(Errno::EINVAL)
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        // A large preferred I/O size: tools size their buffers by it.
        blksize: 1024 * 1024,
        flags: 0,
    }
}

impl<S: ObjectStore> FuseFs<S> {
    fn ttl(&self) -> Duration {
        self.fs.config().attr_ttl
    }

    /// Counts request `OPS[op]` (an index from [`op!`]) as failed with `e`, for the reply.
    fn refuse(&self, op: usize, e: Errno) -> fuser::Errno {
        self.counters.count(op, false);
        self.counters.count(op, true);
        err(e)
    }

    /// Counts request `OPS[op]` (an index from [`op!`]) and runs `f` on the runtime.
    fn spawn<F>(&self, op: usize, f: impl FnOnce(Fs<S>, Duration, Op) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.counters.count(op, false);
        let op = Op {
            index: op,
            counters: Arc::clone(&self.counters),
        };
        let fut = f(self.fs.clone(), self.ttl(), op);
        drop(self.rt.spawn(fut));
    }
}

/// The `fallocate(2)` modes the file system serves.
fn allocate_mode(mode: i32) -> Option<Allocate> {
    const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
    const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE | KEEP_SIZE;
    const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;
    const ZERO_RANGE_KEEP_SIZE: i32 = ZERO_RANGE | KEEP_SIZE;
    match mode {
        0 => Some(Allocate::Reserve { keep_size: false }),
        KEEP_SIZE => Some(Allocate::Reserve { keep_size: true }),
        PUNCH_HOLE => Some(Allocate::PunchHole),
        ZERO_RANGE => Some(Allocate::ZeroRange { keep_size: false }),
        ZERO_RANGE_KEEP_SIZE => Some(Allocate::ZeroRange { keep_size: true }),
        _ => None,
    }
}

impl<S: ObjectStore> Filesystem for FuseFs<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Without it the kernel serialises lookups and readdirs of a directory on its lock:
        // eight threads opening files of one directory would wait for each other's HEADs.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS) {
            tracing::info!(
                ?missing,
                "the kernel runs lookups of a directory one at a time"
            );
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_str().map(str::to_string);
        self.spawn(op!("lookup"), move |fs, ttl, c| async move {
            // A name that is not UTF-8 cannot exist.
            let Some(name) = name else {
                return reply.error(c.err(Errno::ENOENT));
            };
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(op!("getattr"), move |fs, ttl, c| async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            times: atime.is_some() || mtime.is_some(),
        };
        self.spawn(op!("setattr"), move |fs, ttl, c| async move {
            match fs.setattr(ino.0, fh.map(|f| f.0), set).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = utf8(name);
        self.spawn(op!("mknod"), move |fs, ttl, c| async move {
            // Only regular files can be objects.
            if mode & libc::S_IFMT != libc::S_IFREG {
                return reply.error(c.err(Errno::EPERM));
            }
            let r = async {
                let (a, fh) = fs
                    .create(parent.0, &name?, OpenFlags(libc::O_WRONLY))
                    .await?;
                fs.release(a.ino, fh).await?;
                Ok::<_, Errno>(a)
            };
            match r.await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = utf8(name);
        self.spawn(op!("mkdir"), move |fs, ttl, c| async move {
            let r = async { fs.mkdir(parent.0, &name?).await };
            match r.await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = utf8(name);
        self.spawn(op!("unlink"), move |fs, _, c| async move {
            match async { fs.unlink(parent.0, &name?).await }.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = utf8(name);
        self.spawn(op!("rmdir"), move |fs, _, c| async move {
            match async { fs.rmdir(parent.0, &name?).await }.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (utf8(name), utf8(newname));
        self.spawn(op!("rename"), move |fs, _, c| async move {
            let r = async {
                let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
                if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                    // RENAME_EXCHANGE and RENAME_WHITEOUT have no object-store equivalent.
                    return Err(Errno::EINVAL);
                }
                fs.rename(parent.0, &name?, newparent.0, &newname?, noreplace)
                    .await
            };
            match r.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        self.spawn(op!("open"), move |fs, _, c| async move {
            match fs.open(ino.0, OpenFlags(flags.0)).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(op!("read"), move |fs, _, c| async move {
            match fs.read(ino.0, fh.0, offset, size).await {
                Ok(data) => {
                    c.read(data.len());
                    reply.data(&data)
                }
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(op!("write"), move |fs, _, c| async move {
            match fs.write(ino.0, fh.0, offset, &data).await {
                Ok(n) => {
                    c.written(n);
                    reply.written(n)
                }
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.spawn(op!("flush"), move |fs, _, c| async move {
            match fs.flush(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(op!("release"), move |fs, _, c| async move {
            match fs.release(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.spawn(op!("fallocate"), move |fs, _, c| async move {
            // Collapsing or inserting a range would rewrite the whole object: not offered.
            let Some(how) = allocate_mode(mode) else {
                return reply.error(c.err(Errno::ENOTSUP));
            };
            match fs.fallocate(ino.0, fh.0, offset, length, how).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    // Links and extended attributes are not offered (see the README's table). The kernel
    // remembers an ENOSYS for xattrs and copy_file_range and stops asking (and copies by read
    // and write); links are refused each time, counted, without fuser's warning per call.

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(self.refuse(op!("symlink"), Errno::EPERM));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(self.refuse(op!("link"), Errno::EPERM));
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(op!("fsync"), move |fs, _, c| async move {
            match fs.fsync(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        self.spawn(op!("opendir"), move |fs, _, c| async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(op!("readdir"), move |fs, _, c| async move {
            match fs.readdir(ino.0, fh.0, offset).await {
                Ok(entries) => {
                    for e in entries {
                        if reply.add(INodeNo(e.ino), e.offset, file_type(e.kind), &e.name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(c.err(e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Without default_permissions every access is allowed, as the kernel asks only then.
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = utf8(name);
        self.spawn(op!("create"), move |fs, ttl, c| async move {
            match async { fs.create(parent.0, &name?, OpenFlags(flags)).await }.await {
                Ok((a, fh)) => reply.created(
                    &ttl,
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(c.err(e)),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallocate_modes_that_would_move_bytes_are_refused() {
        use libc::{FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE};
        use libc::{FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE};
        let cases = [
            (0, Some(Allocate::Reserve { keep_size: false })),
            (
                FALLOC_FL_KEEP_SIZE,
                Some(Allocate::Reserve { keep_size: true }),
            ),
            (
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                Some(Allocate::PunchHole),
            ),
            (FALLOC_FL_PUNCH_HOLE, None),
            (
                FALLOC_FL_ZERO_RANGE,
                Some(Allocate::ZeroRange { keep_size: false }),
            ),
            (
                FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                Some(Allocate::ZeroRange { keep_size: true }),
            ),
            (FALLOC_FL_COLLAPSE_RANGE, None),
            (FALLOC_FL_INSERT_RANGE, None),
        ];
        for (mode, want) in cases {
            assert_eq!(allocate_mode(mode), want, "mode {mode:#x}");
        }
    }

    #[test]
    fn options_become_mount_options() {
        let o = MountOptions::new("b-123", "/data/pv");
        assert_eq!(o.fs_name, "cos-fuse:b-123/data/pv");
        let cfg = o.fuser_config(true);
        assert!(cfg.mount_options.contains(&MountOption::RO));
        assert!(cfg.mount_options.contains(&MountOption::DefaultPermissions));
        assert_eq!(cfg.acl, SessionACL::All);
        let cfg = MountOptions {
            allow_other: false,
            default_permissions: false,
            ..o
        }
        .fuser_config(false);
        assert!(cfg.mount_options.contains(&MountOption::RW));
        assert!(!cfg.mount_options.contains(&MountOption::DefaultPermissions));
        assert_eq!(cfg.acl, SessionACL::Owner);
    }
}
