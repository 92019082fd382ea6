//! The mount layer: every mount-table read, mount, unmount, format, resize and device lookup the
//! node plugins make goes through [`Mounter`]. The Linux implementation lives in [`linux`]; a
//! stateful in-memory fake for unit tests in [`fake`] (feature `fake` or tests).
//!
//! The trait is synchronous: implementations run external commands with timeouts and make mount
//! syscalls that can block on a dead server, so async callers use `tokio::task::spawn_blocking`.
//! Nothing here knows CSI or a particular driver.

pub mod beneath;
pub mod bounded;
pub mod command;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod linux;
pub mod metered;
pub mod mountinfo;
pub mod ops;
pub mod options;
mod xfs;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use command::{CommandError, run_command};
pub use linux::LinuxMounter;
pub use metered::MeteredMounter;
pub use mountinfo::MountInfo;

/// What `blkid` finds on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceContent {
    /// No signature at all: safe to format.
    Blank,
    /// A filesystem of this type (`ext4`, `xfs`, ...).
    Filesystem(String),
    /// A partition table (`dos`, `gpt`): never formatted over.
    PartitionTable(String),
    /// Some other signature (LVM, swap, RAID member, ...): never formatted over.
    Other(String),
}

/// `statvfs` of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
    /// Mounted read-only (for example remounted so by the kernel after I/O errors).
    pub read_only: bool,
}

/// Arguments of [`Mounter::format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatParams {
    pub device: PathBuf,
    /// `ext4`, `ext3` or `xfs`.
    pub fs_type: String,
    /// Extra `mkfs` options from the user, appended after ours.
    pub extra_options: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{path}: {what}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("mount {source_path} on {target} ({fs_type}) failed")]
    Mount {
        source_path: String,
        target: String,
        fs_type: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unmount {target} failed")]
    Unmount {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported filesystem type {0:?} (supported: ext4, ext3, xfs)")]
    UnsupportedFs(String),
    #[error("{device} holds {found}; refusing to format it as {wanted}")]
    NotBlank {
        device: String,
        found: String,
        wanted: String,
    },
    #[error(
        "growing the {fs_type} filesystem on {device} while mounted is not permitted here (online ext4 growth needs CAP_SYS_RESOURCE); it grows when the volume is next staged, e.g. when its pod restarts"
    )]
    ResizeNotPermitted { device: String, fs_type: String },
    #[error("{path} still has mounts after unmounting it 16 times")]
    TooManyMounts { path: String },
    /// A stat of the mount did not answer within the limit (its NFS server or FUSE daemon is not
    /// responding); the call was abandoned, not the mount.
    #[error(
        "the mount at {path} is not answering: a stat of it did not return within {waited_ms} ms (is its server or daemon down?)"
    )]
    NotAnswering { path: String, waited_ms: u64 },
}

impl MountError {
    /// True when the error means the path's mount is broken (ENOTCONN, EIO, ESTALE) rather than
    /// absent: the caller should unmount and mount again.
    pub fn is_broken_mount(&self) -> bool {
        let errno = match self {
            MountError::Io { source, .. }
            | MountError::Mount { source, .. }
            | MountError::Unmount { source, .. } => source.raw_os_error(),
            _ => None,
        };
        matches!(
            errno,
            Some(libc_errno::ENOTCONN | libc_errno::EIO | libc_errno::ESTALE)
        )
    }
}

/// The errno values we classify, without a libc dependency.
pub mod libc_errno {
    pub const EIO: i32 = 5;
    pub const ENOTCONN: i32 = 107;
    pub const ESTALE: i32 = 116;
}

/// Default time limits for external tools.
pub const MKFS_TIMEOUT: Duration = Duration::from_secs(120);
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Growing a filesystem: generous, because killing `resize2fs` part-way through an offline resize
/// can leave the filesystem needing `e2fsck`.
pub const GROW_TIMEOUT: Duration = Duration::from_secs(600);

/// The node's view of mounts and block devices. One method per operation; every method is safe to
/// call again after a crash at any point.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// The current mount table (`/proc/self/mountinfo`).
    fn mounts(&self) -> Result<Vec<MountInfo>, MountError>;

    /// The topmost mount whose mount point is exactly `path`, if any.
    fn mount_at(&self, path: &Path) -> Result<Option<MountInfo>, MountError> {
        let path = path.to_string_lossy();
        Ok(self
            .mounts()?
            .into_iter()
            .rev()
            .find(|m| m.mount_point == path))
    }

    /// Mounts `source` (a device) on `target` with filesystem `fs_type` and `options`
    /// (`mount -o` style, including `ro`). `target` must exist.
    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        options: &[String],
    ) -> Result<(), MountError>;

    /// Bind-mounts `source` (a directory, or a device/file for block volumes) on `target`;
    /// read-only when `read_only` (a bind followed by a read-only remount), with extra `options`.
    fn bind(
        &self,
        source: &Path,
        target: &Path,
        read_only: bool,
        options: &[String],
    ) -> Result<(), MountError>;

    /// Unmounts the topmost mount at `target`. Not mounted is `Ok(false)`; unmounted is `Ok(true)`.
    fn unmount(&self, target: &Path) -> Result<bool, MountError>;

    /// What is on the device (blkid, with a timeout).
    fn probe(&self, device: &Path) -> Result<DeviceContent, MountError>;

    /// Formats a device; the caller has checked it is [`DeviceContent::Blank`]. Options are chosen so
    /// that older kernels can mount the result (xfs without reflink/bigtime/inobtcount).
    fn format(&self, params: &FormatParams) -> Result<(), MountError>;

    /// Grows the filesystem on `device` (mounted at `mount_path`) to the device's size:
    /// `resize2fs` for ext*, `xfs_growfs` (which needs the mount) for xfs.
    fn grow(&self, device: &Path, mount_path: &Path, fs_type: &str) -> Result<(), MountError>;

    /// Size of the filesystem on `device` in bytes, read from its superblock (for "is the
    /// filesystem smaller than its device?"). `None` when unknown.
    fn fs_size(&self, device: &Path, fs_type: &str) -> Result<Option<u64>, MountError>;

    /// Size of a block device in bytes.
    fn device_size(&self, device: &Path) -> Result<u64, MountError>;

    /// `statvfs` of `path`. Fails with ENOTCONN/EIO/ESTALE on a broken mount.
    fn stats(&self, path: &Path) -> Result<FsStats, MountError>;
}
