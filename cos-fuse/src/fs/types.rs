//! The values file-system operations take and return: inode numbers and handles, attributes,
//! open flags, directory entries, `statfs` and stats numbers, and what the kernel is told to
//! forget. Plain data shared by the operations and the FUSE adapter; no behaviour beyond
//! reading flags.

use std::sync::Arc;
use std::time::SystemTime;

/// An inode number; the root is [`ROOT_INO`].
pub type Ino = u64;
/// A file or directory handle.
pub type Fh = u64;
/// The root's inode number (FUSE's).
pub const ROOT_INO: Ino = 1;

/// What the kernel should forget, when the core changes something without a kernel request
/// having asked (a new file whose upload failed vanishes; a failed rewrite leaves the old size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// The cached entry `name` in directory `parent`.
    Entry { parent: Ino, name: String },
    /// The cached attributes and pages of `ino`.
    Inode(Ino),
}

/// Delivers [`Invalidation`]s to the kernel; the FUSE adapter sets it. Called on a blocking
/// thread, never on a request's path.
pub type Invalidator = Arc<dyn Fn(Invalidation) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
}

/// Attributes of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Permission bits (no file type bits).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
}

/// What a `setattr` asks to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Mode bits as the kernel passes them (type bits are ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// atime or mtime given: accepted, not stored.
    pub times: bool,
}

/// What an `fallocate(2)` asks of a byte range of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocate {
    /// Reserve the range: the file grows to cover it unless `keep_size`. An object has no
    /// space to reserve, so nothing else changes.
    Reserve { keep_size: bool },
    /// Zero the part of the range inside the file; the size stays.
    PunchHole,
    /// Zero the range; the file grows to cover it unless `keep_size`.
    ZeroRange { keep_size: bool },
}

/// One directory entry; `offset` is what the next `readdir` passes to continue after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub offset: u64,
    pub kind: FileKind,
    pub name: String,
}

/// `statfs` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub memory_budget: u64,
    pub memory_in_use: u64,
    /// The most budget bytes held at once since the mount.
    pub memory_peak: u64,
    pub staging_bytes: u64,
    pub inodes: usize,
    pub open_handles: usize,
}

/// How a file is opened: the `O_ACCMODE` part of the flags and `O_TRUNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(pub i32);

impl OpenFlags {
    pub fn readable(self) -> bool {
        matches!(self.0 & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
    }

    pub fn writable(self) -> bool {
        matches!(self.0 & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
    }

    pub fn read_write(self) -> bool {
        self.0 & libc::O_ACCMODE == libc::O_RDWR
    }

    pub fn truncate(self) -> bool {
        self.0 & libc::O_TRUNC != 0
    }
}
