//! [`FakeMounter`]: a stateful in-memory [`Mounter`] for tests. It keeps a mount table, block
//! devices (size, content, filesystem size, usage) and broken mounts, and answers with the same
//! error variants and errnos as [`super::LinuxMounter`]. Tests arrange devices, grow them, break
//! mounts and inject failures (the Nth call of an operation) through its helper methods. A test
//! can also hold the next call of an operation until it releases it ([`FakeMounter::block_next`]),
//! or make it time out leaving its tool running ([`FakeMounter::leave_running_next`]).
//!
//! By default it checks paths against the real filesystem the way the kernel would (a mount target
//! must exist), so tests use temporary directories; [`FakeMounter::without_path_checks`] turns
//! that off. It never touches a real mount or device.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::mount::MsFlags;

use super::command::{CommandError, StillRunning};
use super::linux::{describe_content, is_ext, lexically_normal};
use super::options::split_options;
use super::{DeviceContent, FormatParams, FsStats, MountError, MountInfo, Mounter};

/// The errnos the fake uses, without a libc dependency.
mod gate;

pub use gate::FakeGate;
use gate::GateInner;

mod errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EBUSY: i32 = 16;
    pub const EINVAL: i32 = 22;
    pub const ENOTCONN: i32 = 107;
}

/// The filesystem the fake's `/` is, for paths outside any fake device mount.
const ROOT_FS_BYTES: u64 = 100 << 30;
const ROOT_FS_USED_BYTES: u64 = 10 << 30;
const BYTES_PER_INODE: u64 = 16 << 10;

/// The operations of [`Mounter`], for counting calls and injecting failures. `mount_at` is a
/// `Mounts` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FakeOp {
    Mounts,
    Mount,
    Bind,
    Unmount,
    Probe,
    Format,
    Grow,
    FsSize,
    DeviceSize,
    Stats,
}

/// What an injected failure looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// The operation's usual error variant (`Mount`, `Unmount` or `Io`) with this errno.
    Errno(i32),
    /// The operation's tool exits 1 ([`CommandError::Failed`]).
    ToolFailed,
    /// The operation's tool runs out of time ([`CommandError::TimedOut`]).
    ToolTimedOut,
}

/// A fake block device, as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDevice {
    pub size: u64,
    pub content: DeviceContent,
    /// Size of the filesystem on it (set by `format` and `grow`); `None` without one.
    pub fs_size: Option<u64>,
    pub used_bytes: u64,
    pub used_inodes: u64,
    pub major_minor: String,
}

#[derive(Debug)]
struct ArmedFailure {
    op: FakeOp,
    /// Calls of `op` left before the one that fails (0: the next one fails).
    skip: u64,
    failure: InjectedFailure,
}

#[derive(Debug)]
struct State {
    mounts: Vec<MountInfo>,
    next_mount_id: u32,
    next_minor: u32,
    devices: BTreeMap<PathBuf, FakeDevice>,
    /// Mount points whose filesystem no longer answers (ENOTCONN).
    broken: BTreeSet<String>,
    failures: Vec<ArmedFailure>,
    gates: Vec<(FakeOp, Arc<GateInner>)>,
    left_running: Vec<(FakeOp, StillRunning)>,
    calls: HashMap<FakeOp, u64>,
    check_paths: bool,
    deny_online_ext_grow: bool,
    /// How long a stat is waited for, as the real mounter ([`super::bounded`]).
    stat_limit: Duration,
}

/// The in-memory mounter. Clones share one state, so a test can keep a handle to the mounter it
/// gave to the code under test.
#[derive(Debug, Clone)]
pub struct FakeMounter {
    state: Arc<Mutex<State>>,
}

impl Default for FakeMounter {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeMounter {
    /// A node with only `/` mounted and no devices.
    pub fn new() -> Self {
        let root = MountInfo {
            mount_id: 1,
            parent_id: 1,
            major_minor: "254:0".to_owned(),
            root: "/".to_owned(),
            mount_point: "/".to_owned(),
            options: vec!["rw".to_owned(), "relatime".to_owned()],
            fs_type: "ext4".to_owned(),
            source: "/dev/vda1".to_owned(),
            super_options: vec!["rw".to_owned()],
        };
        FakeMounter {
            state: Arc::new(Mutex::new(State {
                mounts: vec![root],
                next_mount_id: 2,
                next_minor: 0,
                devices: BTreeMap::new(),
                broken: BTreeSet::new(),
                failures: Vec::new(),
                gates: Vec::new(),
                left_running: Vec::new(),
                calls: HashMap::new(),
                check_paths: true,
                deny_online_ext_grow: false,
                stat_limit: super::bounded::STAT_LIMIT,
            })),
        }
    }

    /// Waits at most `limit` for a stat (one held by a gate is then reported as not answering).
    pub fn set_stat_limit(&self, limit: Duration) {
        self.lock().stat_limit = limit;
    }

    /// Don't check targets and bind sources against the real filesystem.
    pub fn without_path_checks(self) -> Self {
        self.lock().check_paths = false;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) a block device. A `Filesystem` content gets a filesystem as big as the
    /// device.
    pub fn add_device(&self, path: impl Into<PathBuf>, size: u64, content: DeviceContent) {
        let mut state = self.lock();
        let fs_size = matches!(content, DeviceContent::Filesystem(_)).then_some(size);
        state.next_minor += 1;
        let major_minor = format!("7:{}", state.next_minor);
        state.devices.insert(
            path.into(),
            FakeDevice {
                size,
                content,
                fs_size,
                used_bytes: 0,
                used_inodes: 0,
                major_minor,
            },
        );
    }

    /// Resizes a device (the cloud grew the disk); its filesystem keeps its size until `grow`.
    /// False when there is no such device.
    pub fn set_device_size(&self, path: &Path, size: u64) -> bool {
        self.lock()
            .devices
            .get_mut(path)
            .map(|d| d.size = size)
            .is_some()
    }

    /// Sets what `stats` reports as used on the device's filesystem. False when no such device.
    pub fn set_usage(&self, path: &Path, used_bytes: u64, used_inodes: u64) -> bool {
        self.lock()
            .devices
            .get_mut(path)
            .map(|d| {
                d.used_bytes = used_bytes;
                d.used_inodes = used_inodes;
            })
            .is_some()
    }

    /// Removes a device (detached underneath its mounts): `stats` on its mounts then fails with
    /// EIO. False when no such device.
    pub fn remove_device(&self, path: &Path) -> bool {
        self.lock().devices.remove(path).is_some()
    }

    /// A snapshot of a device.
    pub fn device(&self, path: &Path) -> Option<FakeDevice> {
        self.lock().devices.get(path).cloned()
    }

    /// Breaks the mount at `mount_point` (its FUSE daemon died, say): `stats` and binds from it
    /// fail with ENOTCONN until it is unmounted. False when nothing is mounted there.
    pub fn break_mount(&self, mount_point: &Path) -> bool {
        let mut state = self.lock();
        let point = normal_string(mount_point);
        if !state.mounts.iter().any(|m| m.mount_point == point) {
            return false;
        }
        state.broken.insert(point);
        true
    }

    /// Makes `grow` of a mounted ext filesystem fail with [`MountError::ResizeNotPermitted`], as
    /// on a node without CAP_SYS_RESOURCE.
    pub fn deny_online_ext_grow(&self, deny: bool) {
        self.lock().deny_online_ext_grow = deny;
    }

    /// Makes the `n`th call (1-based, counted from now) of `op` fail with `failure`.
    pub fn fail_nth(&self, op: FakeOp, n: u64, failure: InjectedFailure) {
        self.lock().failures.push(ArmedFailure {
            op,
            skip: n.saturating_sub(1),
            failure,
        });
    }

    /// Holds the next call of `op`, before it does anything, until the returned gate is released:
    /// a tool that is still working.
    pub fn block_next(&self, op: FakeOp) -> FakeGate {
        let inner = Arc::new(GateInner::default());
        self.lock().gates.push((op, Arc::clone(&inner)));
        FakeGate { inner }
    }

    /// Makes the next call of `op` fail as a tool left running past its timeout does
    /// ([`CommandError::TimedOut`] with a [`StillRunning`]), without doing its work. The test
    /// ends the tool with [`StillRunning::exited`].
    pub fn leave_running_next(&self, op: FakeOp) -> StillRunning {
        let running = StillRunning::new();
        self.lock().left_running.push((op, running.clone()));
        running
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: FakeOp) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Counts a call of `op` and returns the state, or the injected failure due now.
    fn begin(&self, op: FakeOp, subject: &Path) -> Result<MutexGuard<'_, State>, MountError> {
        let gate = {
            let mut state = self.lock();
            let held = state.gates.iter().position(|(o, _)| *o == op);
            held.map(|i| state.gates.remove(i).1)
        };
        if let Some(gate) = gate {
            gate.pass();
        }
        let mut state = self.lock();
        *state.calls.entry(op).or_insert(0) += 1;
        if let Some(i) = state.left_running.iter().position(|(o, _)| *o == op) {
            let (_, running) = state.left_running.remove(i);
            return Err(tool_timed_out(op, subject, Some(running)));
        }
        let mut due = None;
        state.failures.retain_mut(|armed| {
            if armed.op != op {
                return true;
            }
            if armed.skip == 0 {
                // Several armed for the same call: the first fires, the rest are spent too.
                due = due.or(Some(armed.failure));
                return false;
            }
            armed.skip -= 1;
            true
        });
        match due {
            Some(failure) => Err(injected_error(op, subject, failure)),
            None => Ok(state),
        }
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn normal_string(path: &Path) -> String {
    path_string(&lexically_normal(path))
}

fn os_error(errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(errno)
}

fn io_error(path: &Path, what: &'static str, errno: i32) -> MountError {
    MountError::Io {
        path: path_string(path),
        what,
        source: os_error(errno),
    }
}

fn mount_error(source: &Path, target: &Path, fs_type: &str, errno: i32) -> MountError {
    MountError::Mount {
        source_path: path_string(source),
        target: path_string(target),
        fs_type: fs_type.to_owned(),
        source: os_error(errno),
    }
}

fn unmount_error(target: &Path, errno: i32) -> MountError {
    MountError::Unmount {
        target: path_string(target),
        source: os_error(errno),
    }
}

fn tool_failed(program: &str, args: &[&Path], stderr: &str) -> MountError {
    MountError::Command(CommandError::Failed {
        program: program.to_owned(),
        args: args.iter().map(|a| path_string(a)).collect(),
        status: ExitStatus::from_raw(1 << 8),
        stderr: stderr.to_owned(),
    })
}

/// The tool an operation runs, as errors name it.
fn program_of(op: FakeOp) -> &'static str {
    match op {
        FakeOp::Mounts | FakeOp::Stats | FakeOp::DeviceSize => "fake",
        FakeOp::Mount | FakeOp::Bind => "mount",
        FakeOp::Unmount => "umount",
        FakeOp::Probe => "blkid",
        FakeOp::Format => "mkfs",
        FakeOp::Grow => "resize2fs",
        FakeOp::FsSize => "dumpe2fs",
    }
}

fn tool_timed_out(op: FakeOp, subject: &Path, still_running: Option<StillRunning>) -> MountError {
    MountError::Command(CommandError::TimedOut {
        program: program_of(op).to_owned(),
        args: vec![path_string(subject)],
        timeout: Duration::from_secs(30),
        still_running,
    })
}

fn injected_error(op: FakeOp, subject: &Path, failure: InjectedFailure) -> MountError {
    let program = program_of(op);
    match failure {
        InjectedFailure::Errno(errno) => match op {
            FakeOp::Mount => mount_error(Path::new("(injected)"), subject, "", errno),
            FakeOp::Bind => mount_error(Path::new("(injected)"), subject, "bind", errno),
            FakeOp::Unmount => unmount_error(subject, errno),
            FakeOp::Mounts => io_error(
                Path::new("/proc/self/mountinfo"),
                "reading the mount table",
                errno,
            ),
            _ => io_error(subject, "injected failure", errno),
        },
        InjectedFailure::ToolFailed => tool_failed(program, &[subject], "injected failure"),
        InjectedFailure::ToolTimedOut => tool_timed_out(op, subject, None),
    }
}

/// Per-mount options as the kernel shows them, from mount flags.
fn per_mount_options(flags: MsFlags) -> Vec<String> {
    let mut options = vec![if flags.contains(MsFlags::MS_RDONLY) {
        "ro"
    } else {
        "rw"
    }];
    for (flag, name) in [
        (MsFlags::MS_NOSUID, "nosuid"),
        (MsFlags::MS_NODEV, "nodev"),
        (MsFlags::MS_NOEXEC, "noexec"),
    ] {
        if flags.contains(flag) {
            options.push(name);
        }
    }
    options.push(if flags.contains(MsFlags::MS_NOATIME) {
        "noatime"
    } else if flags.contains(MsFlags::MS_STRICTATIME) {
        "strictatime"
    } else {
        "relatime"
    });
    if flags.contains(MsFlags::MS_NODIRATIME) {
        options.push("nodiratime");
    }
    options.into_iter().map(str::to_owned).collect()
}

/// `path` equals `point` or lies below it.
fn is_within(path: &str, point: &str) -> bool {
    point == "/"
        || path == point
        || path
            .strip_prefix(point)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl State {
    /// The mount a path lives on: the longest mount point containing it, topmost when stacked.
    fn containing_mount(&self, path: &str) -> Option<&MountInfo> {
        self.mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| is_within(path, &m.mount_point))
            .max_by_key(|(i, m)| (m.mount_point.len(), *i))
            .map(|(_, m)| m)
    }

    fn push_mount(&mut self, mut info: MountInfo) {
        info.mount_id = self.next_mount_id;
        self.next_mount_id += 1;
        info.parent_id = self
            .containing_mount(&info.mount_point)
            .map_or(1, |m| m.mount_id);
        self.mounts.push(info);
    }

    /// Whether `path` exists for the purposes of a mount: in the mount table, as a device, or on
    /// the real filesystem (when checking).
    fn path_exists(&self, path: &Path) -> bool {
        !self.check_paths
            || self.devices.contains_key(path)
            || self
                .mounts
                .iter()
                .any(|m| m.mount_point == normal_string(path))
            || path.exists()
    }

    /// ENOTCONN when `path` lies on a broken mount.
    fn broken_errno(&self, path: &str) -> Option<i32> {
        let mount = self.containing_mount(path)?;
        self.broken
            .contains(&mount.mount_point)
            .then_some(errno::ENOTCONN)
    }

    fn device_mounted(&self, device: &Path) -> bool {
        let device = path_string(device);
        self.mounts.iter().any(|m| m.source == device)
    }
}

impl Mounter for FakeMounter {
    fn mounts(&self) -> Result<Vec<MountInfo>, MountError> {
        let state = self.begin(FakeOp::Mounts, Path::new("/proc/self/mountinfo"))?;
        Ok(state.mounts.clone())
    }

    /// Like the real one, `/mnt/x/` finds the mount at `/mnt/x`.
    fn mount_at(&self, path: &Path) -> Result<Option<MountInfo>, MountError> {
        let state = self.begin(FakeOp::Mounts, Path::new("/proc/self/mountinfo"))?;
        let point = normal_string(path);
        Ok(state
            .mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == point)
            .cloned())
    }

    fn mount(
        &self,
        source: &Path,
        target: &Path,
        fs_type: &str,
        options: &[String],
    ) -> Result<(), MountError> {
        let mut state = self.begin(FakeOp::Mount, target)?;
        let fail = |errno| Err(mount_error(source, target, fs_type, errno));
        if !state.path_exists(target) {
            return fail(errno::ENOENT);
        }
        let split = split_options(options);
        let read_only = split.flags.contains(MsFlags::MS_RDONLY);
        let major_minor = match state.devices.get(source) {
            Some(device) => {
                if device.content != DeviceContent::Filesystem(fs_type.to_owned()) {
                    // What the kernel says for "wrong fs type, bad superblock".
                    return fail(errno::EINVAL);
                }
                device.major_minor.clone()
            }
            // A block filesystem needs a device; others (nfs, tmpfs, fuse.*) take any source.
            None if is_ext(fs_type) || matches!(fs_type, "xfs" | "btrfs") => {
                return fail(errno::ENOENT);
            }
            None => "0:99".to_owned(),
        };
        let mut super_options = vec![if read_only { "ro" } else { "rw" }.to_owned()];
        super_options.extend(
            split
                .data
                .split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_owned),
        );
        state.push_mount(MountInfo {
            mount_id: 0,
            parent_id: 0,
            major_minor,
            root: "/".to_owned(),
            mount_point: normal_string(target),
            options: per_mount_options(split.flags),
            fs_type: fs_type.to_owned(),
            source: path_string(source),
            super_options,
        });
        Ok(())
    }

    fn bind(
        &self,
        source: &Path,
        target: &Path,
        read_only: bool,
        options: &[String],
    ) -> Result<(), MountError> {
        let mut state = self.begin(FakeOp::Bind, target)?;
        let fail = |errno| Err(mount_error(source, target, "bind", errno));
        if !state.path_exists(target) || !state.path_exists(source) {
            return fail(errno::ENOENT);
        }
        let source_str = normal_string(source);
        if let Some(errno) = state.broken_errno(&source_str) {
            return fail(errno);
        }
        let mut flags = split_options(options).flags;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        let info = if state.devices.contains_key(source) {
            // A block volume: the device node, bound from devtmpfs.
            MountInfo {
                mount_id: 0,
                parent_id: 0,
                major_minor: "0:6".to_owned(),
                root: source_str
                    .strip_prefix("/dev")
                    .unwrap_or(&source_str)
                    .to_owned(),
                mount_point: normal_string(target),
                options: per_mount_options(flags),
                fs_type: "devtmpfs".to_owned(),
                source: "udev".to_owned(),
                super_options: vec!["rw".to_owned()],
            }
        } else {
            let Some(from) = state.containing_mount(&source_str).cloned() else {
                return fail(errno::ENOENT);
            };
            let below = source_str
                .strip_prefix(from.mount_point.as_str())
                .unwrap_or_default()
                .trim_start_matches('/');
            let root = match (from.root.as_str(), below) {
                (root, "") => root.to_owned(),
                ("/", below) => format!("/{below}"),
                (root, below) => format!("{root}/{below}"),
            };
            MountInfo {
                root,
                mount_point: normal_string(target),
                options: per_mount_options(flags),
                ..from
            }
        };
        state.push_mount(info);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<bool, MountError> {
        let mut state = self.begin(FakeOp::Unmount, target)?;
        let point = normal_string(target);
        let Some(index) = state.mounts.iter().rposition(|m| m.mount_point == point) else {
            return Ok(false);
        };
        let has_submounts = state
            .mounts
            .iter()
            .any(|m| m.mount_point != point && is_within(&m.mount_point, &point));
        if has_submounts {
            return Err(unmount_error(target, errno::EBUSY));
        }
        state.mounts.remove(index);
        if !state.mounts.iter().any(|m| m.mount_point == point) {
            state.broken.remove(&point);
        }
        Ok(true)
    }

    fn probe(&self, device: &Path) -> Result<DeviceContent, MountError> {
        let state = self.begin(FakeOp::Probe, device)?;
        state
            .devices
            .get(device)
            .map(|d| d.content.clone())
            .ok_or_else(|| io_error(device, "opening the device to probe it", errno::ENOENT))
    }

    fn format(&self, params: &FormatParams) -> Result<(), MountError> {
        let device = params.device.as_path();
        let mut state = self.begin(FakeOp::Format, device)?;
        if !matches!(params.fs_type.as_str(), "ext4" | "ext3" | "xfs") {
            return Err(MountError::UnsupportedFs(params.fs_type.clone()));
        }
        let Some(found) = state.devices.get_mut(device) else {
            return Err(io_error(
                device,
                "opening the device to probe it",
                errno::ENOENT,
            ));
        };
        if found.content != DeviceContent::Blank {
            return Err(MountError::NotBlank {
                device: path_string(device),
                found: describe_content(&found.content),
                wanted: params.fs_type.clone(),
            });
        }
        found.content = DeviceContent::Filesystem(params.fs_type.clone());
        found.fs_size = Some(found.size);
        found.used_bytes = 0;
        found.used_inodes = 0;
        Ok(())
    }

    fn grow(&self, device: &Path, mount_path: &Path, fs_type: &str) -> Result<(), MountError> {
        let mut state = self.begin(FakeOp::Grow, device)?;
        let wanted = DeviceContent::Filesystem(fs_type.to_owned());
        if is_ext(fs_type) {
            let mounted = state.device_mounted(device);
            let deny = state.deny_online_ext_grow;
            let Some(found) = state.devices.get_mut(device) else {
                return Err(tool_failed(
                    "resize2fs",
                    &[device],
                    "resize2fs: No such file or directory while trying to open the device",
                ));
            };
            if found.content != wanted {
                return Err(tool_failed(
                    "resize2fs",
                    &[device],
                    "resize2fs: Bad magic number in super-block while trying to open the device",
                ));
            }
            if mounted && deny {
                return Err(MountError::ResizeNotPermitted {
                    device: path_string(device),
                    fs_type: fs_type.to_owned(),
                });
            }
            found.fs_size = Some(found.size);
            return Ok(());
        }
        if fs_type == "xfs" {
            let point = normal_string(mount_path);
            let mounted_device = state
                .mounts
                .iter()
                .rev()
                .find(|m| m.mount_point == point && m.fs_type == "xfs")
                .map(|m| PathBuf::from(&m.source));
            let Some(found) = mounted_device.and_then(|d| state.devices.get_mut(&d)) else {
                return Err(tool_failed(
                    "xfs_growfs",
                    &[mount_path],
                    "xfs_growfs: is not a mounted XFS filesystem",
                ));
            };
            found.fs_size = Some(found.size);
            return Ok(());
        }
        Err(MountError::UnsupportedFs(fs_type.to_owned()))
    }

    fn fs_size(&self, device: &Path, fs_type: &str) -> Result<Option<u64>, MountError> {
        let state = self.begin(FakeOp::FsSize, device)?;
        let tool = if is_ext(fs_type) {
            "dumpe2fs"
        } else if fs_type == "xfs" {
            "xfs_info"
        } else {
            return Ok(None);
        };
        match state.devices.get(device) {
            Some(found) if found.content == DeviceContent::Filesystem(fs_type.to_owned()) => {
                Ok(found.fs_size)
            }
            Some(_) => Err(tool_failed(
                tool,
                &[device],
                "bad magic number in superblock",
            )),
            None => Err(tool_failed(tool, &[device], "No such file or directory")),
        }
    }

    fn device_size(&self, device: &Path) -> Result<u64, MountError> {
        let state = self.begin(FakeOp::DeviceSize, device)?;
        state
            .devices
            .get(device)
            .map(|d| d.size)
            .ok_or_else(|| io_error(device, "opening the device", errno::ENOENT))
    }

    fn stats(&self, path: &Path) -> Result<FsStats, MountError> {
        let (this, owned) = (self.clone(), path.to_path_buf());
        let limit = self.lock().stat_limit;
        super::bounded::call(path, limit, move || this.stats_now(&owned))
    }
}

impl FakeMounter {
    fn stats_now(&self, path: &Path) -> Result<FsStats, MountError> {
        let state = self.begin(FakeOp::Stats, path)?;
        let point = normal_string(path);
        if let Some(errno) = state.broken_errno(&point) {
            return Err(io_error(path, "statvfs", errno));
        }
        if state.check_paths
            && !path.exists()
            && !state.mounts.iter().any(|m| m.mount_point == point)
        {
            return Err(io_error(path, "statvfs", errno::ENOENT));
        }
        let Some(mount) = state.containing_mount(&point) else {
            return Err(io_error(path, "statvfs", errno::ENOENT));
        };
        let read_only = mount.is_read_only();
        let device_backed = mount.source.starts_with('/') && mount.mount_point != "/";
        let (total, used, used_inodes) = if device_backed {
            let Some(device) = state.devices.get(Path::new(&mount.source)) else {
                // The disk went away under the mount.
                return Err(io_error(path, "statvfs", errno::EIO));
            };
            let total = device.fs_size.unwrap_or(device.size);
            (total, device.used_bytes.min(total), device.used_inodes)
        } else {
            (ROOT_FS_BYTES, ROOT_FS_USED_BYTES, 0)
        };
        let total_inodes = (total / BYTES_PER_INODE).max(1);
        let used_inodes = used_inodes.min(total_inodes);
        Ok(FsStats {
            total_bytes: total,
            available_bytes: total - used,
            used_bytes: used,
            total_inodes,
            free_inodes: total_inodes - used_inodes,
            used_inodes,
            read_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn fake() -> FakeMounter {
        FakeMounter::new().without_path_checks()
    }

    fn errno_of(err: &MountError) -> Option<i32> {
        match err {
            MountError::Io { source, .. }
            | MountError::Mount { source, .. }
            | MountError::Unmount { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    fn format(m: &FakeMounter, device: &str, fs_type: &str) -> Result<(), MountError> {
        m.format(&FormatParams {
            device: device.into(),
            fs_type: fs_type.into(),
            extra_options: vec![],
        })
    }

    #[test]
    fn stage_publish_unpublish_unstage() {
        let m = fake();
        let dev = Path::new("/dev/vdb");
        m.add_device(dev, 64 * MIB, DeviceContent::Blank);
        assert_eq!(m.probe(dev).unwrap(), DeviceContent::Blank);
        format(&m, "/dev/vdb", "ext4").unwrap();
        assert_eq!(
            m.probe(dev).unwrap(),
            DeviceContent::Filesystem("ext4".into())
        );

        let staging = Path::new("/staging/vol-1");
        let publish = Path::new("/pods/p1/mount");
        m.mount(dev, staging, "ext4", &["noatime".into(), "discard".into()])
            .unwrap();
        let staged = m.mount_at(staging).unwrap().unwrap();
        assert_eq!(staged.source, "/dev/vdb");
        assert_eq!(staged.options, ["rw", "noatime"]);
        assert_eq!(staged.super_options, ["rw", "discard"]);
        assert!(!staged.is_read_only());

        m.bind(staging, publish, true, &[]).unwrap();
        let published = m.mount_at(publish).unwrap().unwrap();
        assert!(published.is_read_only());
        assert_eq!(published.source, "/dev/vdb");
        assert_eq!(published.root, "/");
        assert!(m.stats(publish).unwrap().read_only);
        assert!(!m.stats(staging).unwrap().read_only);
        assert_eq!(m.stats(publish).unwrap().total_bytes, 64 * MIB);

        assert!(m.unmount(publish).unwrap());
        assert!(!m.unmount(publish).unwrap());
        assert!(m.unmount(staging).unwrap());
        assert!(!m.unmount(staging).unwrap());
        assert!(m.mount_at(staging).unwrap().is_none());
    }

    #[test]
    fn format_refuses_what_real_format_refuses() {
        let m = fake();
        m.add_device("/dev/pt", MIB, DeviceContent::PartitionTable("gpt".into()));
        m.add_device("/dev/fs", MIB, DeviceContent::Filesystem("xfs".into()));
        m.add_device("/dev/blank", MIB, DeviceContent::Blank);
        let err = format(&m, "/dev/pt", "ext4").unwrap_err();
        assert!(
            matches!(&err, MountError::NotBlank { found, .. } if found == "a gpt partition table"),
            "{err}"
        );
        assert!(matches!(
            format(&m, "/dev/fs", "ext4"),
            Err(MountError::NotBlank { .. })
        ));
        assert!(matches!(
            format(&m, "/dev/blank", "btrfs"),
            Err(MountError::UnsupportedFs(_))
        ));
        let err = format(&m, "/dev/missing", "ext4").unwrap_err();
        assert_eq!(errno_of(&err), Some(errno::ENOENT));
    }

    #[test]
    fn mount_checks_device_and_type() {
        let m = fake();
        m.add_device("/dev/vdb", MIB, DeviceContent::Blank);
        let err = m
            .mount(Path::new("/dev/vdb"), Path::new("/t"), "ext4", &[])
            .unwrap_err();
        assert_eq!(
            errno_of(&err),
            Some(errno::EINVAL),
            "blank device has no ext4"
        );
        let err = m
            .mount(Path::new("/dev/nope"), Path::new("/t"), "ext4", &[])
            .unwrap_err();
        assert_eq!(errno_of(&err), Some(errno::ENOENT));
        // Network and virtual filesystems take any source.
        m.mount(
            Path::new("10.0.0.8:/"),
            Path::new("/t"),
            "nfs4",
            &["vers=4.0".into()],
        )
        .unwrap();
        assert_eq!(
            m.mount_at(Path::new("/t/")).unwrap().unwrap().fs_type,
            "nfs4"
        );
    }

    #[test]
    fn path_checks_use_the_real_filesystem() {
        let m = FakeMounter::new();
        m.add_device("/dev/vdb", MIB, DeviceContent::Filesystem("ext4".into()));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = m
            .mount(Path::new("/dev/vdb"), &missing, "ext4", &[])
            .unwrap_err();
        assert_eq!(errno_of(&err), Some(errno::ENOENT));
        m.mount(Path::new("/dev/vdb"), dir.path(), "ext4", &[])
            .unwrap();
        let err = m.stats(&missing).unwrap_err();
        assert_eq!(errno_of(&err), Some(errno::ENOENT));
        assert_eq!(m.stats(dir.path()).unwrap().total_bytes, MIB);
    }

    #[test]
    fn bind_of_a_subdirectory_records_its_root() {
        let m = fake();
        m.add_device("/dev/vdb", MIB, DeviceContent::Filesystem("ext4".into()));
        m.mount(Path::new("/dev/vdb"), Path::new("/s"), "ext4", &[])
            .unwrap();
        m.bind(
            Path::new("/s/sub/dir"),
            Path::new("/p"),
            false,
            &["nosuid".into()],
        )
        .unwrap();
        let bound = m.mount_at(Path::new("/p")).unwrap().unwrap();
        assert_eq!(bound.root, "/sub/dir");
        assert_eq!(bound.options, ["rw", "nosuid", "relatime"]);
        // Unmounting the source while the bind lives is fine (the bind is not below it).
        assert!(m.unmount(Path::new("/s")).unwrap());
        assert_eq!(m.stats(Path::new("/p")).unwrap().total_bytes, MIB);
    }

    #[test]
    fn block_volume_bind_of_a_device() {
        let m = fake();
        m.add_device("/dev/vdc", MIB, DeviceContent::Blank);
        m.bind(
            Path::new("/dev/vdc"),
            Path::new("/pods/p/dev/vol"),
            true,
            &[],
        )
        .unwrap();
        let bound = m.mount_at(Path::new("/pods/p/dev/vol")).unwrap().unwrap();
        assert_eq!(
            (bound.fs_type.as_str(), bound.root.as_str()),
            ("devtmpfs", "/vdc")
        );
        assert!(bound.is_read_only());
    }

    #[test]
    fn unmount_with_a_submount_is_busy() {
        let m = fake();
        m.mount(Path::new("tmpfs"), Path::new("/a"), "tmpfs", &[])
            .unwrap();
        m.mount(Path::new("tmpfs"), Path::new("/a/b"), "tmpfs", &[])
            .unwrap();
        let err = m.unmount(Path::new("/a")).unwrap_err();
        assert_eq!(errno_of(&err), Some(errno::EBUSY));
        assert!(m.unmount(Path::new("/a/b")).unwrap());
        assert!(m.unmount(Path::new("/a")).unwrap());
    }

    #[test]
    fn stacked_mounts_unmount_topmost_first() {
        let m = fake();
        m.mount(Path::new("one"), Path::new("/x"), "tmpfs", &[])
            .unwrap();
        m.mount(Path::new("two"), Path::new("/x"), "tmpfs", &[])
            .unwrap();
        assert_eq!(m.mount_at(Path::new("/x")).unwrap().unwrap().source, "two");
        assert!(m.unmount(Path::new("/x")).unwrap());
        assert_eq!(m.mount_at(Path::new("/x")).unwrap().unwrap().source, "one");
    }

    #[test]
    fn broken_mount_reports_enotconn_until_unmounted() {
        let m = fake();
        m.mount(Path::new("bucket"), Path::new("/cos"), "fuse.cos-fuse", &[])
            .unwrap();
        assert!(m.break_mount(Path::new("/cos")));
        assert!(!m.break_mount(Path::new("/elsewhere")));
        let err = m.stats(Path::new("/cos")).unwrap_err();
        assert!(err.is_broken_mount(), "{err:?}");
        assert!(
            m.stats(Path::new("/cos/deep/file"))
                .unwrap_err()
                .is_broken_mount()
        );
        let err = m
            .bind(Path::new("/cos"), Path::new("/pod"), false, &[])
            .unwrap_err();
        assert!(err.is_broken_mount());
        assert!(m.unmount(Path::new("/cos")).unwrap());
        m.mount(Path::new("bucket"), Path::new("/cos"), "fuse.cos-fuse", &[])
            .unwrap();
        assert!(
            m.stats(Path::new("/cos")).is_ok(),
            "a fresh mount is healthy"
        );
    }

    #[test]
    fn removed_device_makes_its_mount_fail_with_eio() {
        let m = fake();
        m.add_device("/dev/vdb", MIB, DeviceContent::Filesystem("ext4".into()));
        m.mount(Path::new("/dev/vdb"), Path::new("/s"), "ext4", &[])
            .unwrap();
        assert!(m.remove_device(Path::new("/dev/vdb")));
        assert!(m.stats(Path::new("/s")).unwrap_err().is_broken_mount());
    }

    #[test]
    fn growth_follows_the_device() {
        let m = fake();
        let dev = Path::new("/dev/vdb");
        m.add_device(dev, 64 * MIB, DeviceContent::Blank);
        format(&m, "/dev/vdb", "ext4").unwrap();
        assert!(m.set_device_size(dev, 128 * MIB));
        assert!(!m.set_device_size(Path::new("/dev/none"), 1));
        assert_eq!(m.device_size(dev).unwrap(), 128 * MIB);
        assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(64 * MIB));
        assert_eq!(m.fs_size(dev, "btrfs").unwrap(), None);
        assert!(matches!(m.fs_size(dev, "xfs"), Err(MountError::Command(_))));

        m.mount(dev, Path::new("/s"), "ext4", &[]).unwrap();
        m.deny_online_ext_grow(true);
        let err = m.grow(dev, Path::new("/s"), "ext4").unwrap_err();
        assert!(
            matches!(err, MountError::ResizeNotPermitted { .. }),
            "{err:?}"
        );
        m.unmount(Path::new("/s")).unwrap();
        m.grow(dev, Path::new("/s"), "ext4").unwrap();
        assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(128 * MIB));
    }

    #[test]
    fn xfs_grows_only_when_mounted() {
        let m = fake();
        let dev = Path::new("/dev/vdb");
        m.add_device(dev, 512 * MIB, DeviceContent::Blank);
        format(&m, "/dev/vdb", "xfs").unwrap();
        m.set_device_size(dev, 1024 * MIB);
        let err = m.grow(dev, Path::new("/s"), "xfs").unwrap_err();
        assert!(
            matches!(&err, MountError::Command(CommandError::Failed { program, .. }) if program == "xfs_growfs")
        );
        m.mount(dev, Path::new("/s"), "xfs", &["nouuid".into()])
            .unwrap();
        m.grow(dev, Path::new("/s"), "xfs").unwrap();
        assert_eq!(m.stats(Path::new("/s")).unwrap().total_bytes, 1024 * MIB);
        assert!(matches!(
            m.grow(dev, Path::new("/s"), "zfs"),
            Err(MountError::UnsupportedFs(_))
        ));
    }

    #[test]
    fn usage_shows_in_stats() {
        let m = fake();
        let dev = Path::new("/dev/vdb");
        m.add_device(dev, 64 * MIB, DeviceContent::Filesystem("ext4".into()));
        m.mount(dev, Path::new("/s"), "ext4", &[]).unwrap();
        assert!(m.set_usage(dev, 16 * MIB, 10));
        let stats = m.stats(Path::new("/s")).unwrap();
        assert_eq!(
            (stats.used_bytes, stats.available_bytes),
            (16 * MIB, 48 * MIB)
        );
        assert_eq!(stats.used_inodes, 10);
        assert_eq!(stats.total_inodes, stats.free_inodes + 10);
    }

    #[test]
    fn nth_call_fails_once_with_the_operations_own_variant() {
        let m = fake();
        m.mount(Path::new("t"), Path::new("/a"), "tmpfs", &[])
            .unwrap();
        m.fail_nth(FakeOp::Unmount, 2, InjectedFailure::Errno(errno::EBUSY));
        m.fail_nth(FakeOp::Probe, 1, InjectedFailure::ToolTimedOut);
        m.fail_nth(FakeOp::Format, 1, InjectedFailure::ToolFailed);
        m.fail_nth(FakeOp::Stats, 1, InjectedFailure::Errno(errno::EIO));

        assert!(
            !m.unmount(Path::new("/elsewhere")).unwrap(),
            "first call passes"
        );
        let err = m.unmount(Path::new("/a")).unwrap_err();
        assert!(matches!(err, MountError::Unmount { .. }));
        assert_eq!(errno_of(&err), Some(errno::EBUSY));
        assert!(
            m.unmount(Path::new("/a")).unwrap(),
            "third call passes again"
        );

        let err = m.probe(Path::new("/dev/x")).unwrap_err();
        assert!(matches!(
            err,
            MountError::Command(CommandError::TimedOut { .. })
        ));
        let err = format(&m, "/dev/x", "ext4").unwrap_err();
        assert!(matches!(
            err,
            MountError::Command(CommandError::Failed { .. })
        ));
        assert!(m.stats(Path::new("/")).unwrap_err().is_broken_mount());
        assert!(m.stats(Path::new("/")).is_ok());

        assert_eq!(m.calls(FakeOp::Unmount), 3);
        assert_eq!(m.calls(FakeOp::Grow), 0);
    }

    #[test]
    fn clones_share_state() {
        let m = fake();
        let handle = m.clone();
        m.mount(Path::new("t"), Path::new("/a"), "tmpfs", &[])
            .unwrap();
        assert!(handle.mount_at(Path::new("/a")).unwrap().is_some());
        assert_eq!(handle.calls(FakeOp::Mount), 1);
    }

    #[test]
    fn mount_ids_and_parents_are_consistent() {
        let m = fake();
        m.mount(Path::new("t"), Path::new("/a"), "tmpfs", &[])
            .unwrap();
        m.mount(Path::new("t"), Path::new("/a/b"), "tmpfs", &[])
            .unwrap();
        let table = m.mounts().unwrap();
        let a = table.iter().find(|x| x.mount_point == "/a").unwrap();
        let b = table.iter().find(|x| x.mount_point == "/a/b").unwrap();
        assert_eq!(a.parent_id, 1);
        assert_eq!(b.parent_id, a.mount_id);
        assert_ne!(a.mount_id, b.mount_id);
    }
}
