//! The real [`Mounter`]: mount(2)/umount2(2) and statvfs(2) through `nix`, the mount table from
//! `/proc/self/mountinfo`, and `blkid`, `mkfs.*`, `resize2fs`, `xfs_growfs`, `dumpe2fs`
//! run through [`run_command`] with time limits. The tools that change a filesystem (`mkfs.*`,
//! `e2fsck`, `resize2fs`, `xfs_growfs`) are never killed part-way: at their timeout the caller gets
//! [`CommandError::TimedOut`] carrying the still-running tool ([`OnTimeout::LeaveRunning`]).
//!
//! mount(2) is called directly, not through mount(8), so filesystems that need a userspace helper
//! (NFS address resolution, FUSE daemons) are not mounted here. This module returns errors and
//! never logs.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::statvfs::{FsFlags, statvfs};

use super::bounded::{self, STAT_LIMIT};
use super::command::{
    CommandError, OnTimeout, run_command, run_command_any_status, run_command_any_status_with,
    run_command_with,
};
use super::mountinfo::parse_mountinfo;
use super::options::split_options;
use super::xfs;
use super::{
    DeviceContent, FormatParams, FsStats, GROW_TIMEOUT, MKFS_TIMEOUT, MountError, MountInfo,
    Mounter, TOOL_TIMEOUT, libc_errno,
};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The Linux mounter. It holds no state: every answer comes from the kernel or a tool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinuxMounter {
    /// How long a statvfs is waited for (see [`super::bounded`]).
    stat_limit: Duration,
}

impl Default for LinuxMounter {
    fn default() -> Self {
        LinuxMounter {
            stat_limit: STAT_LIMIT,
        }
    }
}

impl LinuxMounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same mounter, waiting at most `limit` for a statvfs.
    pub fn with_stat_limit(limit: Duration) -> Self {
        LinuxMounter { stat_limit: limit }
    }
}

/// The per-mount flags a bind remount may change; a remount must restate the ones already set,
/// or the kernel refuses to clear locked flags (EPERM) or silently clears the others.
const PER_MOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn io_error(path: &Path, what: &'static str, source: std::io::Error) -> MountError {
    MountError::Io {
        path: path_string(path),
        what,
        source,
    }
}

fn errno_error(path: &Path, what: &'static str, errno: Errno) -> MountError {
    io_error(path, what, std::io::Error::from(errno))
}

fn invalid_output(path: &Path, what: &'static str, detail: String) -> MountError {
    io_error(
        path,
        what,
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    )
}

fn is_broken_errno(errno: Option<i32>) -> bool {
    matches!(
        errno,
        Some(libc_errno::ENOTCONN | libc_errno::EIO | libc_errno::ESTALE)
    )
}

/// `path` with `.`, doubled and trailing slashes removed, as the kernel writes mount points.
pub(crate) fn lexically_normal(path: &Path) -> PathBuf {
    path.components().collect()
}

/// What `blkid -p -o export` printed, classified.
fn classify_blkid(export: &str) -> Option<DeviceContent> {
    let mut fs_type = None;
    let mut pt_type = None;
    let mut usage = None;
    for line in export.lines() {
        match line.split_once('=') {
            Some(("TYPE", v)) => fs_type = Some(v.trim()),
            Some(("PTTYPE", v)) => pt_type = Some(v.trim()),
            Some(("USAGE", v)) => usage = Some(v.trim()),
            _ => {}
        }
    }
    match (fs_type, pt_type) {
        (Some(t), _) if !t.is_empty() => {
            let is_fs = match usage {
                Some(u) => u == "filesystem",
                None => KNOWN_FILESYSTEMS.contains(&t),
            };
            Some(if is_fs {
                DeviceContent::Filesystem(t.to_owned())
            } else {
                DeviceContent::Other(t.to_owned())
            })
        }
        (_, Some(p)) if !p.is_empty() => Some(DeviceContent::PartitionTable(p.to_owned())),
        _ => None,
    }
}

/// Filesystems we recognise when `blkid` does not say what a signature is used for.
const KNOWN_FILESYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "ext4dev", "xfs", "btrfs", "vfat", "exfat", "ntfs", "f2fs", "jfs",
    "reiserfs", "squashfs", "iso9660", "udf", "erofs",
];

/// A tool's version: (major, minor, patch).
type Version = (u32, u32, u32);

/// A tool's version from text like `mkfs.xfs version 6.1.0` or
/// `mke2fs 1.47.0 (5-Feb-2023)`: the first word that is a dotted number.
fn parse_version(text: &str) -> Option<Version> {
    text.split_whitespace().find_map(|word| {
        let mut parts = word.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts
            .next()
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Some((major, minor, patch))
    })
}

/// `mkfs.xfs` options that keep newer on-disk features off so that older kernels (e.g. the 4.x and
/// 5.4 kernels still common on nodes) can mount the result. Each is passed only to a mkfs.xfs that
/// knows it; an unknown version is assumed new.
fn xfs_compat_args(version: Option<Version>) -> Vec<String> {
    let at_least = |v: Version| version.is_none_or(|have| have >= v);
    let mut meta = Vec::new();
    if at_least((4, 9, 0)) {
        meta.push("reflink=0"); // kernel 4.9+, on by default since xfsprogs 5.1
    }
    if at_least((5, 10, 0)) {
        meta.push("bigtime=0"); // kernel 5.10+, on by default since xfsprogs 5.15
        meta.push("inobtcount=0"); // kernel 5.10+, on by default since xfsprogs 5.15
    }
    let mut args = Vec::new();
    if !meta.is_empty() {
        args.push("-m".to_owned());
        args.push(meta.join(","));
    }
    if at_least((5, 19, 0)) {
        // Large extent counters: kernel 5.19+, on by default in newer xfsprogs.
        args.push("-i".to_owned());
        args.push("nrext64=0".to_owned());
    }
    args
}

/// `mke2fs` options for compatibility: e2fsprogs 1.47 turned `orphan_file` on by default in its
/// upstream config, which kernels before 5.15 and older e2fsck cannot handle.
fn ext_compat_args(version: Option<Version>) -> Vec<String> {
    match version {
        Some(v) if v >= (1, 47, 0) => vec!["-O".to_owned(), "^orphan_file".to_owned()],
        _ => Vec::new(),
    }
}

/// The version a tool reports with `-V` (on stdout or stderr), if it says.
fn tool_version(program: &str) -> Option<Version> {
    let output = run_command_any_status(program, &["-V"], TOOL_TIMEOUT).ok()?;
    parse_version(&output.stdout).or_else(|| parse_version(&output.stderr))
}

/// Block count × block size from `dumpe2fs -h`.
fn parse_dumpe2fs(text: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    field("Block count")?.checked_mul(field("Block size")?)
}

/// How [`MountError::NotBlank`] names what it found.
pub(crate) fn describe_content(content: &DeviceContent) -> String {
    match content {
        DeviceContent::Filesystem(t) => format!("a {t} filesystem"),
        DeviceContent::PartitionTable(t) => format!("a {t} partition table"),
        DeviceContent::Other(t) => format!("a {t} signature"),
        DeviceContent::Blank => "nothing".to_owned(),
    }
}

pub(crate) fn is_ext(fs_type: &str) -> bool {
    matches!(fs_type, "ext2" | "ext3" | "ext4")
}

impl LinuxMounter {
    /// The mount at `target`, also trying the path's normal and canonical forms (the kernel
    /// records canonical paths).
    fn find_mount(&self, target: &Path) -> Result<Option<MountInfo>, MountError> {
        let mounts = self.mounts()?;
        let lookup = |p: &Path| {
            let p = p.to_string_lossy();
            mounts.iter().rev().find(|m| m.mount_point == p).cloned()
        };
        if let Some(found) = lookup(target).or_else(|| lookup(&lexically_normal(target))) {
            return Ok(Some(found));
        }
        // canonicalize fails on a broken mount point; the forms above cover that case.
        Ok(std::fs::canonicalize(target)
            .ok()
            .and_then(|canonical| lookup(&canonical)))
    }

    fn umount(target: &Path, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }
}

impl Mounter for LinuxMounter {
    fn mounts(&self) -> Result<Vec<MountInfo>, MountError> {
        let text = std::fs::read_to_string(MOUNTINFO)
            .map_err(|e| io_error(Path::new(MOUNTINFO), "reading the mount table", e))?;
        Ok(parse_mountinfo(&text))
    }

    /// As the trait's default, but also finds the mount under the path's normal and canonical
    /// forms (`/mnt/x/`, a symlink): the kernel records canonical paths.
    fn mount_at(&self, path: &Path) -> Result<Option<MountInfo>, MountError> {
        self.find_mount(path)
    }

    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        options: &[String],
    ) -> Result<(), MountError> {
        let split = split_options(options);
        let data = (!split.data.is_empty()).then_some(split.data.as_str());
        nix::mount::mount(Some(source), target, Some(fs_type), split.flags, data).map_err(|errno| {
            MountError::Mount {
                source_path: path_string(source),
                target: path_string(target),
                fs_type: fs_type.to_owned(),
                source: errno.into(),
            }
        })
    }

    fn bind(
        &self,
        source: &Path,
        target: &Path,
        read_only: bool,
        options: &[String],
    ) -> Result<(), MountError> {
        let split = split_options(options);
        let mount_error = |errno: Errno| MountError::Mount {
            source_path: path_string(source),
            target: path_string(target),
            fs_type: "bind".to_owned(),
            source: errno.into(),
        };
        let recursive = split.flags & MsFlags::MS_REC;
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | recursive,
            None::<&str>,
        )
        .map_err(mount_error)?;

        let mut wanted = split.flags & PER_MOUNT_FLAGS;
        if read_only {
            wanted |= MsFlags::MS_RDONLY;
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // The bind inherits the source mount's flags; the remount restates them plus ours. They
        // are read from the mount table, not statvfs: a stat of a network mount can hang.
        let current = self
            .mount_at(target)?
            .map(|info| split_options(&info.options).flags & PER_MOUNT_FLAGS)
            .unwrap_or(MsFlags::empty());
        let atime_modes = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
        let kept = if wanted.intersects(atime_modes) {
            current - atime_modes
        } else {
            current
        };
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | kept | wanted;
        if let Err(errno) =
            nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        {
            // Never leave a writable bind where a read-only one was asked for.
            let _ = Self::umount(target, MntFlags::MNT_DETACH);
            return Err(mount_error(errno));
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<bool, MountError> {
        if self.mount_at(target)?.is_none() {
            return Ok(false);
        }
        let unmount_error = |errno: Errno| MountError::Unmount {
            target: path_string(target),
            source: errno.into(),
        };
        match Self::umount(target, MntFlags::empty()) {
            Ok(()) => Ok(true),
            // Unmounted by someone else since we looked.
            Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
            Err(errno) => {
                let broken = std::fs::metadata(target)
                    .err()
                    .is_some_and(|e| is_broken_errno(e.raw_os_error()));
                if !broken {
                    return Err(unmount_error(errno));
                }
                // A dead server or FUSE daemon: detach it so the path is usable again.
                match Self::umount(target, MntFlags::MNT_DETACH) {
                    Ok(()) => Ok(true),
                    Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
                    Err(errno) => Err(unmount_error(errno)),
                }
            }
        }
    }

    fn probe(&self, device: &Path) -> Result<DeviceContent, MountError> {
        // blkid exits 2 both for "nothing found" and "cannot open": open it ourselves first so a
        // missing device is never mistaken for a blank one.
        let opened = File::open(device)
            .map_err(|e| io_error(device, "opening the device to probe it", e))?;
        if opened
            .metadata()
            .map_err(|e| io_error(device, "opening the device to probe it", e))?
            .is_dir()
        {
            return Err(errno_error(
                device,
                "opening the device to probe it",
                Errno::EISDIR,
            ));
        }
        drop(opened);
        let args = ["-p", "-o", "export"]
            .into_iter()
            .map(Into::into)
            .chain([device.as_os_str().to_owned()])
            .collect::<Vec<std::ffi::OsString>>();
        let output = run_command_any_status("blkid", &args, TOOL_TIMEOUT)?;
        match output.code() {
            Some(0) => Ok(classify_blkid(&output.stdout)
                .unwrap_or_else(|| DeviceContent::Other("unrecognised signature".to_owned()))),
            Some(2) => Ok(classify_blkid(&output.stdout).unwrap_or(DeviceContent::Blank)),
            // Several signatures that contradict each other: certainly not blank.
            Some(8) => Ok(DeviceContent::Other("ambivalent signatures".to_owned())),
            _ => Err(CommandError::failed(
                "blkid",
                args.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                &output,
            )
            .into()),
        }
    }

    fn format(&self, params: &FormatParams) -> Result<(), MountError> {
        let fs_type = params.fs_type.as_str();
        let (program, mut args) = match fs_type {
            "ext4" | "ext3" => {
                let mut args = vec!["-F".to_owned(), "-m0".to_owned()];
                if fs_type == "ext4" {
                    // Initialise inode tables and the journal in the background after mount:
                    // formatting a large disk takes seconds instead of minutes.
                    args.push("-E".to_owned());
                    args.push("lazy_itable_init=1,lazy_journal_init=1".to_owned());
                }
                args.extend(ext_compat_args(tool_version("mke2fs")));
                (format!("mkfs.{fs_type}"), args)
            }
            "xfs" => {
                let mut args = vec!["-f".to_owned()];
                args.extend(xfs_compat_args(tool_version("mkfs.xfs")));
                ("mkfs.xfs".to_owned(), args)
            }
            other => return Err(MountError::UnsupportedFs(other.to_owned())),
        };
        // The caller checked, but a format is the one irreversible thing we do: check again.
        match self.probe(&params.device)? {
            DeviceContent::Blank => {}
            found => {
                return Err(MountError::NotBlank {
                    device: path_string(&params.device),
                    found: describe_content(&found),
                    wanted: fs_type.to_owned(),
                });
            }
        }
        args.extend(params.extra_options.iter().cloned());
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        args.push(params.device.as_os_str().to_owned());
        // Left running at its timeout, not killed: whether a half-written filesystem reads as
        // blank (and is formatted again from scratch) depends on the tool's write order, which we
        // do not rely on. The volume stays busy until mkfs exits; the next call finds its result.
        run_command_with(&program, &args, MKFS_TIMEOUT, OnTimeout::LeaveRunning)?;
        Ok(())
    }

    fn grow(&self, device: &Path, mount_path: &Path, fs_type: &str) -> Result<(), MountError> {
        if is_ext(fs_type) {
            if !self.is_mounted(device, mount_path)? {
                check_ext_before_offline_resize(device)?;
            }
            return match run_command_with(
                "resize2fs",
                &[device],
                GROW_TIMEOUT,
                OnTimeout::LeaveRunning,
            ) {
                Ok(_) => Ok(()),
                Err(CommandError::Failed { stderr, .. })
                    if (stderr.contains("Permission denied")
                        || stderr.contains("Operation not permitted"))
                        && self.is_mounted(device, mount_path)? =>
                {
                    Err(MountError::ResizeNotPermitted {
                        device: path_string(device),
                        fs_type: fs_type.to_owned(),
                    })
                }
                Err(e) => Err(e.into()),
            };
        }
        if fs_type == "xfs" {
            run_command_with(
                "xfs_growfs",
                &[mount_path],
                GROW_TIMEOUT,
                OnTimeout::LeaveRunning,
            )?;
            return Ok(());
        }
        Err(MountError::UnsupportedFs(fs_type.to_owned()))
    }

    fn fs_size(&self, device: &Path, fs_type: &str) -> Result<Option<u64>, MountError> {
        if is_ext(fs_type) {
            let output = run_command("dumpe2fs", &[Path::new("-h"), device], TOOL_TIMEOUT)?;
            return parse_dumpe2fs(&output.stdout).map(Some).ok_or_else(|| {
                invalid_output(
                    device,
                    "reading the filesystem size",
                    "dumpe2fs printed no block count and block size".to_owned(),
                )
            });
        }
        if fs_type == "xfs" {
            // The live size when mounted (the on-disk superblock is stale after an online growth
            // until the log is written back), the superblock's when not; never `xfs_info`, which
            // stats every mount on the node first (see `xfs`).
            let canonical = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_owned());
            let wanted = canonical.to_string_lossy();
            let mounted = self
                .mounts()?
                .into_iter()
                .find(|m| m.source == wanted || Path::new(&m.source) == device);
            return match mounted {
                Some(m) => xfs::mounted_size(Path::new(&m.mount_point)).map(Some),
                None => xfs::superblock_size(device).map(Some),
            };
        }
        Ok(None)
    }

    fn device_size(&self, device: &Path) -> Result<u64, MountError> {
        let mut file = File::open(device).map_err(|e| io_error(device, "opening the device", e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| io_error(device, "seeking to the end of the device", e))
    }

    /// Bounded by the mounter's stat limit: a mount whose server does not answer is
    /// [`MountError::NotAnswering`], never a hang.
    fn stats(&self, path: &Path) -> Result<FsStats, MountError> {
        let owned = path.to_path_buf();
        bounded::call(path, self.stat_limit, move || statvfs_now(&owned))
    }
}

fn statvfs_now(path: &Path) -> Result<FsStats, MountError> {
    let s = statvfs(path).map_err(|errno| errno_error(path, "statvfs", errno))?;
    // The field types are u64 on 64-bit Linux but narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let (fragment, blocks, free, available, files, files_free) = (
        u64::from(s.fragment_size()),
        u64::from(s.blocks()),
        u64::from(s.blocks_free()),
        u64::from(s.blocks_available()),
        u64::from(s.files()),
        u64::from(s.files_free()),
    );
    Ok(FsStats {
        total_bytes: blocks.saturating_mul(fragment),
        available_bytes: available.saturating_mul(fragment),
        used_bytes: blocks.saturating_sub(free).saturating_mul(fragment),
        total_inodes: files,
        free_inodes: files_free,
        used_inodes: files.saturating_sub(files_free),
        read_only: s.flags().contains(FsFlags::ST_RDONLY),
    })
}

impl LinuxMounter {
    /// Whether `device` is mounted, at `mount_path` or anywhere.
    fn is_mounted(&self, device: &Path, mount_path: &Path) -> Result<bool, MountError> {
        if self.mount_at(mount_path)?.is_some() {
            return Ok(true);
        }
        let device = device.to_string_lossy();
        Ok(self.mounts()?.iter().any(|m| m.source == device))
    }
}

/// Offline `resize2fs` refuses a filesystem that was not checked since its last mount, and one
/// whose journal needs replaying (every snapshot of a mounted volume): `e2fsck -f -p` first. Exit
/// 0 (clean) and 1 (errors corrected) are fine; anything else means it needs a human.
fn check_ext_before_offline_resize(device: &Path) -> Result<(), MountError> {
    let args = [Path::new("-f"), Path::new("-p"), device];
    let output =
        run_command_any_status_with("e2fsck", &args, GROW_TIMEOUT, OnTimeout::LeaveRunning)?;
    match output.status.code() {
        Some(0 | 1) => Ok(()),
        _ => Err(MountError::Command(CommandError::Failed {
            program: "e2fsck".to_owned(),
            args: args.iter().map(|a| a.display().to_string()).collect(),
            status: output.status,
            stderr: output
                .stderr
                .trim()
                .chars()
                .rev()
                .take(2048)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn classifies_blkid_output() {
        let cases: &[(&str, &str, Option<DeviceContent>)] = &[
            ("nothing", "", None),
            (
                "ext4",
                "DEVNAME=/dev/loop1\nUUID=979c7065\nVERSION=1.0\nBLOCK_SIZE=1024\nTYPE=ext4\nUSAGE=filesystem\n",
                Some(DeviceContent::Filesystem("ext4".into())),
            ),
            (
                "xfs",
                "DEVNAME=/dev/loop0\nUUID=8d92c573\nBLOCK_SIZE=512\nTYPE=xfs\nUSAGE=filesystem\n",
                Some(DeviceContent::Filesystem("xfs".into())),
            ),
            (
                "swap is not a filesystem",
                "DEVNAME=/dev/loop1\nUUID=daf25096\nVERSION=1\nTYPE=swap\nUSAGE=other\n",
                Some(DeviceContent::Other("swap".into())),
            ),
            (
                "LVM physical volume",
                "DEVNAME=/dev/vdb\nUUID=x\nVERSION=LVM2 001\nTYPE=LVM2_member\nUSAGE=raid\n",
                Some(DeviceContent::Other("LVM2_member".into())),
            ),
            (
                "RAID member",
                "DEVNAME=/dev/vdc\nTYPE=linux_raid_member\nUSAGE=raid\n",
                Some(DeviceContent::Other("linux_raid_member".into())),
            ),
            (
                "LUKS",
                "DEVNAME=/dev/vdd\nTYPE=crypto_LUKS\nUSAGE=crypto\n",
                Some(DeviceContent::Other("crypto_LUKS".into())),
            ),
            (
                "DOS partition table",
                "DEVNAME=/dev/loop1\nPTTYPE=dos\n",
                Some(DeviceContent::PartitionTable("dos".into())),
            ),
            (
                "GPT",
                "DEVNAME=/dev/vdb\nPTUUID=abc\nPTTYPE=gpt\n",
                Some(DeviceContent::PartitionTable("gpt".into())),
            ),
            (
                "no USAGE: known filesystem",
                "TYPE=btrfs\n",
                Some(DeviceContent::Filesystem("btrfs".into())),
            ),
            (
                "no USAGE: unknown type",
                "TYPE=zfs_member\n",
                Some(DeviceContent::Other("zfs_member".into())),
            ),
            ("only DEVNAME", "DEVNAME=/dev/vdb\n", None),
            (
                "label that looks like a key is not one",
                "LABEL=TYPE=xfs\nDEVNAME=/dev/vdb\n",
                None,
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(classify_blkid(text), *expected, "{name}");
        }
    }

    #[test]
    fn parses_tool_versions() {
        assert_eq!(parse_version("mkfs.xfs version 6.1.0\n"), Some((6, 1, 0)));
        assert_eq!(parse_version("mkfs.xfs version 5.10.0\n"), Some((5, 10, 0)));
        assert_eq!(
            parse_version("mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library version 1.47.0\n"),
            Some((1, 47, 0))
        );
        assert_eq!(parse_version("mkfs.xfs version 4.20"), Some((4, 20, 0)));
        assert_eq!(parse_version("mkfs.xfs version 6.8.0-rc1"), Some((6, 8, 0)));
        assert_eq!(parse_version("no version here"), None);
    }

    #[test]
    fn xfs_options_follow_the_installed_version() {
        let s = |v: &[&str]| opts(v);
        let cases: &[(Option<Version>, Vec<String>)] = &[
            (Some((4, 5, 0)), vec![]),
            (Some((4, 9, 0)), s(&["-m", "reflink=0"])),
            (Some((5, 4, 0)), s(&["-m", "reflink=0"])),
            (
                Some((5, 10, 0)),
                s(&["-m", "reflink=0,bigtime=0,inobtcount=0"]),
            ),
            (
                Some((6, 1, 0)),
                s(&["-m", "reflink=0,bigtime=0,inobtcount=0", "-i", "nrext64=0"]),
            ),
            (
                None,
                s(&["-m", "reflink=0,bigtime=0,inobtcount=0", "-i", "nrext64=0"]),
            ),
        ];
        for (version, expected) in cases {
            assert_eq!(&xfs_compat_args(*version), expected, "{version:?}");
        }
    }

    #[test]
    fn ext_options_follow_the_installed_version() {
        assert!(ext_compat_args(Some((1, 46, 5))).is_empty());
        assert!(ext_compat_args(None).is_empty());
        assert_eq!(
            ext_compat_args(Some((1, 47, 0))),
            opts(&["-O", "^orphan_file"])
        );
    }

    #[test]
    fn reads_sizes_from_dumpe2fs_output() {
        let dumpe2fs = "Filesystem volume name:   <none>\nBlock count:              131072\n\
                        Reserved block count:     0\nBlock size:               1024\n";
        assert_eq!(parse_dumpe2fs(dumpe2fs), Some(131_072 * 1024));
        assert_eq!(parse_dumpe2fs("Block count: 10\n"), None);
        assert_eq!(parse_dumpe2fs("Block count: x\nBlock size: 4096\n"), None);
    }

    #[test]
    fn normalises_paths_like_the_kernel() {
        assert_eq!(
            lexically_normal(Path::new("/a//b/./c/")),
            PathBuf::from("/a/b/c")
        );
    }

    #[test]
    fn stats_of_a_missing_path_is_an_io_error_with_errno() {
        let err = LinuxMounter::new()
            .stats(Path::new("/no/such/path/3f9a"))
            .unwrap_err();
        let MountError::Io { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(!err.is_broken_mount());
    }

    #[test]
    fn stats_of_this_directory_is_sane() {
        let dir = tempfile::tempdir().unwrap();
        let stats = LinuxMounter::new().stats(dir.path()).unwrap();
        assert!(stats.total_bytes > 0);
        assert!(stats.used_bytes <= stats.total_bytes);
        assert!(stats.available_bytes <= stats.total_bytes);
    }

    #[test]
    fn unmounting_a_plain_directory_is_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!LinuxMounter::new().unmount(dir.path()).unwrap());
        assert!(
            !LinuxMounter::new()
                .unmount(&dir.path().join("missing"))
                .unwrap()
        );
    }

    #[test]
    fn probing_a_missing_device_is_an_error_not_blank() {
        let err = LinuxMounter::new()
            .probe(Path::new("/dev/no-such-device-3f9a"))
            .unwrap_err();
        assert!(matches!(err, MountError::Io { .. }), "{err:?}");
    }

    #[test]
    fn probing_a_directory_is_an_error_not_blank() {
        let dir = tempfile::tempdir().unwrap();
        let err = LinuxMounter::new().probe(dir.path()).unwrap_err();
        let MountError::Io { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.raw_os_error(), Some(Errno::EISDIR as i32));
    }

    #[test]
    fn formatting_an_unsupported_type_is_refused_before_anything_runs() {
        let err = LinuxMounter::new()
            .format(&FormatParams {
                device: PathBuf::from("/dev/no-such-device-3f9a"),
                fs_type: "btrfs".into(),
                extra_options: vec![],
            })
            .unwrap_err();
        assert!(matches!(err, MountError::UnsupportedFs(t) if t == "btrfs"));
    }

    #[test]
    fn the_mount_table_has_a_root() {
        let mounts = LinuxMounter::new().mounts().unwrap();
        assert!(mounts.iter().any(|m| m.mount_point == "/"));
        assert!(
            LinuxMounter::new()
                .mount_at(Path::new("/"))
                .unwrap()
                .is_some()
        );
    }
}
