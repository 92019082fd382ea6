//! The fuser adapter: translates kernel requests to [`Fs`] calls and back. Every request runs
//! as its own task on a tokio runtime and replies from there, so a slow GET never holds up other
//! requests. Each failed request is counted and handed, with its whole [`FsError`], to the
//! failure log (`fuse/failures.rs`), then answered with its errno. This module holds no state of
//! its own and makes no decision about a request.
//!
//! Request buffers in flight (fuser's default of 16 background requests, at most 1 MiB each)
//! are outside the file system's memory budget.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags as FuseOpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use super::counters::{FuseCounters, OPS, op};
use super::failures::FailureLog;
use crate::errno::Errno;
use crate::fs::{Allocate, Attr, FileKind, Fs, FsError, OpenFlags, SetAttr};
use crate::store::ObjectStore;

pub(super) struct FuseFs<S: ObjectStore> {
    fs: Fs<S>,
    rt: Handle,
    counters: Arc<FuseCounters>,
    failures: Arc<FailureLog>,
}

impl<S: ObjectStore> FuseFs<S> {
    /// Serves `fs` on `rt`, counting requests in `counters`.
    pub(super) fn new(fs: Fs<S>, rt: Handle, counters: Arc<FuseCounters>) -> Self {
        FuseFs {
            fs,
            rt,
            counters,
            failures: Arc::new(FailureLog::new()),
        }
    }
}

/// One request's view of the counters and the failure log: it knows its operation (an index
/// into [`OPS`]).
struct Op {
    index: usize,
    counters: Arc<FuseCounters>,
    failures: Arc<FailureLog>,
}

/// The request ends (answered or not) when its task drops its `Op`.
impl Drop for Op {
    fn drop(&mut self) {
        self.counters.end();
    }
}

impl Op {
    /// Counts and logs the failure, and converts it to the errno of the reply.
    fn err(&self, e: impl Into<FsError>) -> fuser::Errno {
        let e = in_op(self.index, e.into());
        self.counters.count(self.index, true);
        self.failures.report(self.index, &e);
        err(e.errno())
    }

    fn read(&self, bytes: usize) {
        self.counters.count_read(bytes as u64);
    }

    fn written(&self, bytes: u32) {
        self.counters.count_written(u64::from(bytes));
    }
}

/// `e`, saying it failed request `OPS[op]` if nothing said which operation it was.
fn in_op(op: usize, e: FsError) -> FsError {
    match OPS.get(op) {
        Some(name) => e.in_op(name),
        None => e,
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

    /// Counts request `OPS[op]` (an index from [`op!`]) as failed with
    /// `e`, logs it, and converts it for the reply.
    fn refuse(&self, op: usize, e: Errno) -> fuser::Errno {
        self.counters.count(op, false);
        self.counters.count(op, true);
        self.failures.report(op, &in_op(op, FsError::from(e)));
        err(e)
    }

    /// Counts request `OPS[op]` (an index from [`op!`]) and runs `f` on the
    /// runtime.
    fn spawn<F>(&self, op: usize, f: impl FnOnce(Fs<S>, Duration, Op) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.counters.count(op, false);
        self.counters.begin();
        let op = Op {
            index: op,
            counters: Arc::clone(&self.counters),
            failures: Arc::clone(&self.failures),
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
                Ok::<_, FsError>(a)
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
                    return Err(Errno::EINVAL.into());
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
        // A read-only handle has nothing to commit, so its closes need no FLUSH: a close costs
        // no round trip, and a process that forks while reading does not make its child's
        // `execve` wait on this daemon (it closes the inherited descriptor).
        let reply_flags = if flags.0 & libc::O_ACCMODE == libc::O_RDONLY {
            FopenFlags::FOPEN_NOFLUSH
        } else {
            FopenFlags::empty()
        };
        self.spawn(op!("open"), move |fs, _, c| async move {
            match fs.open(ino.0, OpenFlags(flags.0)).await {
                Ok(fh) => reply.opened(FileHandle(fh), reply_flags),
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
}
