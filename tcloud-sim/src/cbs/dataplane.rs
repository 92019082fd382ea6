//! The CBS data plane: disk and snapshot images as sparse files, loop devices as the attached
//! disks, and what a simulated instance sees of them (a `by-id` link and a sysfs serial). Every
//! function here blocks: callers run them with `spawn_blocking`. External programs run with an
//! argument vector and a timeout, never through a shell.
//!
//! Layout under the state directory:
//! ```text
//! cbs/disks/<diskId>.img                              disk image, DiskSize GiB, sparse
//! cbs/snapshots/<snapId>.img                          point-in-time copy of a disk image
//! instances/<insId>/dev/disk/by-id/virtio-<diskId>    -> /dev/loopN, while attached there
//! instances/<insId>/sys/block/loopN/serial            the disk ID, while attached there
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
/// Longest a `losetup` may take.
const LOSETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a sparse copy of an image may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the CBS files and the simulated instances' device trees live.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the CBS directories under `state_dir` and anchors the layout at its canonical path,
    /// so loop devices record absolute backing files that the reconciler can compare.
    pub fn new(state_dir: &Path) -> io::Result<Layout> {
        std::fs::create_dir_all(state_dir)?;
        let root = state_dir.canonicalize()?;
        let layout = Layout { root };
        for dir in ["cbs/disks", "cbs/snapshots"] {
            let dir = layout.root.join(dir);
            std::fs::create_dir_all(&dir)?;
            // Images of terminated disks whose removal a stop cut short.
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.to_string_lossy().ends_with(".img.terminated") {
                    remove_if_present(&path)?;
                }
            }
        }
        Ok(layout)
    }

    pub fn disk_image(&self, disk_id: &str) -> PathBuf {
        self.root.join("cbs/disks").join(format!("{disk_id}.img"))
    }

    pub fn snapshot_image(&self, snapshot_id: &str) -> PathBuf {
        self.root
            .join("cbs/snapshots")
            .join(format!("{snapshot_id}.img"))
    }

    /// The device directory a node plugin on `instance` is pointed at (its `/dev/disk/by-id`).
    pub fn by_id_dir(&self, instance: &str) -> PathBuf {
        self.root
            .join("instances")
            .join(instance)
            .join("dev/disk/by-id")
    }

    /// The sysfs root of `instance` (its `/sys`).
    pub fn sys_dir(&self, instance: &str) -> PathBuf {
        self.root.join("instances").join(instance).join("sys")
    }

    pub fn link(&self, instance: &str, disk_id: &str) -> PathBuf {
        self.by_id_dir(instance).join(format!("virtio-{disk_id}"))
    }

    fn serial_dir(&self, instance: &str, device: &str) -> PathBuf {
        self.sys_dir(instance)
            .join("block")
            .join(device_name(device))
    }

    /// Creates the instance's `dev/disk/by-id` and `sys/block` directories.
    pub fn prepare_instance(&self, instance: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.by_id_dir(instance))?;
        std::fs::create_dir_all(self.sys_dir(instance).join("block"))
    }

    /// Shows `disk_id` on `instance` as `device`: the by-id link (replaced atomically) and the
    /// serial file.
    pub fn publish(&self, instance: &str, disk_id: &str, device: &str) -> io::Result<()> {
        self.prepare_instance(instance)?;
        self.point_link(instance, disk_id, device)?;
        let dir = self.serial_dir(instance, device);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("serial"), disk_id)
    }

    /// Points the by-id link of `disk_id` at `target`, whatever the serial says (also used to
    /// fake a stale link).
    pub fn point_link(&self, instance: &str, disk_id: &str, target: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.by_id_dir(instance))?;
        let link = self.link(instance, disk_id);
        let tmp = link.with_extension(format!("tmp{}", std::process::id()));
        remove_if_present(&tmp)?;
        std::os::unix::fs::symlink(target, &tmp)?;
        std::fs::rename(&tmp, &link)
    }

    /// Removes what [`Layout::publish`] made: the link, and the serial directory of `device`
    /// (or, when the device is unknown, any serial directory naming `disk_id`).
    pub fn unpublish(&self, instance: &str, disk_id: &str, device: Option<&str>) -> io::Result<()> {
        remove_if_present(&self.link(instance, disk_id))?;
        match device {
            Some(device) => remove_dir_if_present(&self.serial_dir(instance, device)),
            None => {
                let block = self.sys_dir(instance).join("block");
                let Ok(entries) = std::fs::read_dir(&block) else {
                    return Ok(());
                };
                for entry in entries.flatten() {
                    let serial =
                        std::fs::read_to_string(entry.path().join("serial")).unwrap_or_default();
                    if serial.trim() == disk_id {
                        remove_dir_if_present(&entry.path())?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// `loop3` of `/dev/loop3`.
pub fn device_name(device: &str) -> &str {
    device.rsplit('/').next().unwrap_or(device)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes an image; a missing one is fine.
pub fn remove_image(path: &Path) -> io::Result<()> {
    remove_if_present(path)
}

/// Moves an image out of its name (`.img.terminated` beside it), for [`remove_image`] later;
/// `None` when there is none. A rename is instant where freeing a written image's blocks is not.
pub fn discard_image(path: &Path) -> io::Result<Option<std::path::PathBuf>> {
    let trash = path.with_extension("img.terminated");
    match std::fs::rename(path, &trash) {
        Ok(()) => Ok(Some(trash)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates a sparse image of `size_gib` GiB; fails if it exists.
pub fn create_image(path: &Path, size_gib: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.set_len(size_gib * GIB)?;
    file.sync_all()
}

/// Grows an image to `size_gib` GiB (never shrinks it).
pub fn grow_image(path: &Path, size_gib: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() < size_gib * GIB {
        file.set_len(size_gib * GIB)?;
    }
    file.sync_all()
}

/// Copies `src` to `dst` keeping holes (`cp --sparse=always --reflink=auto`), through a temporary
/// file renamed into place, so `dst` is either absent or complete.
pub fn copy_image(src: &Path, dst: &Path) -> io::Result<()> {
    let tmp = dst.with_extension("img.partial");
    remove_if_present(&tmp)?;
    let copied = run(
        "cp",
        &[
            "--sparse=always".as_ref(),
            "--reflink=auto".as_ref(),
            src.as_os_str(),
            tmp.as_os_str(),
        ],
        COPY_TIMEOUT,
    );
    if let Err(e) = copied {
        let _ = remove_if_present(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dst)
}

/// Runs `program` with `args`, no shell, killed after `timeout`. Returns its stdout; a failure
/// carries its stderr.
pub fn run(program: &str, args: &[&std::ffi::OsStr], timeout: Duration) -> io::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait()? {
            Some(_) => break,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{program} did not finish within {timeout:?}"),
                ));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    // The programs run here print a line or two: the pipes never fill before exit.
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{program} {}: {}: {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Block devices backed by image files: the seam between the CBS state machine and the kernel.
pub trait BlockDevices: Send + Sync + std::fmt::Debug {
    /// A device backed by `image`: the one that exists already, or a new one. Returns `/dev/...`.
    fn attach(&self, image: &Path) -> io::Result<String>;
    /// Releases `device` if it is still backed by `image`; a device gone or reused is fine.
    fn detach(&self, device: &str, image: &Path) -> io::Result<()>;
    /// Makes `device` pick up the new size of `image` (if it is still backed by it).
    fn refresh_size(&self, device: &str, image: &Path) -> io::Result<()>;
    /// The file backing `device`, if it is a device in use.
    fn backing_file(&self, device: &str) -> Option<PathBuf>;
}

/// Linux loop devices driven by `losetup`.
#[derive(Debug, Default)]
pub struct LoopDevices;

impl LoopDevices {
    /// The loop device already backed by `image`, from `/sys/block/loop*/loop/backing_file`.
    fn find(&self, image: &Path) -> Option<String> {
        let entries = std::fs::read_dir("/sys/block").ok()?;
        entries.flatten().find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                return None;
            }
            let device = format!("/dev/{name}");
            (self.backing_file(&device).as_deref() == Some(image)).then_some(device)
        })
    }
}

impl BlockDevices for LoopDevices {
    fn attach(&self, image: &Path) -> io::Result<String> {
        if let Some(device) = self.find(image) {
            return Ok(device);
        }
        // losetup can lose a race for a free device with another process; try again.
        let mut last = None;
        for _ in 0..3 {
            match run(
                "losetup",
                &["--find".as_ref(), "--show".as_ref(), image.as_os_str()],
                LOSETUP_TIMEOUT,
            ) {
                Ok(out) => {
                    let device = out.trim().to_owned();
                    if device.starts_with("/dev/loop") {
                        return Ok(device);
                    }
                    last = Some(io::Error::other(format!(
                        "losetup --find --show printed {device:?}"
                    )));
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(last.unwrap_or_else(|| io::Error::other("losetup failed")))
    }

    fn detach(&self, device: &str, image: &Path) -> io::Result<()> {
        if self.backing_file(device).as_deref() != Some(image) {
            return Ok(());
        }
        match run(
            "losetup",
            &["-d".as_ref(), device.as_ref()],
            LOSETUP_TIMEOUT,
        ) {
            Ok(_) => Ok(()),
            Err(_) if self.backing_file(device).as_deref() != Some(image) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn refresh_size(&self, device: &str, image: &Path) -> io::Result<()> {
        if self.backing_file(device).as_deref() != Some(image) {
            return Err(io::Error::other(format!(
                "{device} is no longer backed by {}",
                image.display()
            )));
        }
        run(
            "losetup",
            &["-c".as_ref(), device.as_ref()],
            LOSETUP_TIMEOUT,
        )
        .map(drop)
    }

    fn backing_file(&self, device: &str) -> Option<PathBuf> {
        let path = Path::new("/sys/block")
            .join(device_name(device))
            .join("loop/backing_file");
        let text = std::fs::read_to_string(path).ok()?;
        let text = text.trim_end_matches('\n');
        (!text.is_empty()).then(|| PathBuf::from(text))
    }
}

/// In-memory block devices for unit tests: `/dev/fakeN` devices, with a switch to make attaching
/// fail.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeDevices {
    pub devices: std::sync::Mutex<std::collections::BTreeMap<String, PathBuf>>,
    pub fail_attach: std::sync::atomic::AtomicBool,
    pub refreshed: std::sync::Mutex<Vec<String>>,
}

#[cfg(test)]
impl BlockDevices for FakeDevices {
    fn attach(&self, image: &Path) -> io::Result<String> {
        if self.fail_attach.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::other("injected attach failure"));
        }
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((device, _)) = devices.iter().find(|(_, file)| file.as_path() == image) {
            return Ok(device.clone());
        }
        let device = (0..)
            .map(|n| format!("/dev/fake{n}"))
            .find(|d| !devices.contains_key(d))
            .unwrap_or_default();
        devices.insert(device.clone(), image.to_owned());
        Ok(device)
    }

    fn detach(&self, device: &str, image: &Path) -> io::Result<()> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if devices.get(device).map(PathBuf::as_path) == Some(image) {
            devices.remove(device);
        }
        Ok(())
    }

    fn refresh_size(&self, device: &str, _image: &Path) -> io::Result<()> {
        self.refreshed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(device.to_owned());
        Ok(())
    }

    fn backing_file(&self, device: &str) -> Option<PathBuf> {
        self.devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_sparse_grow_and_copy_with_their_data() {
        use std::io::{Read, Seek, SeekFrom, Write};
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        let image = layout.disk_image("disk-aaaaaaaa");
        create_image(&image, 10).unwrap();
        let meta = std::fs::metadata(&image).unwrap();
        assert_eq!(meta.len(), 10 * GIB);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "sparse: {} blocks",
            meta.blocks()
        );
        assert!(create_image(&image, 10).is_err(), "never overwrites");

        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        file.seek(SeekFrom::Start(5 * GIB)).unwrap();
        file.write_all(b"marker").unwrap();
        drop(file);

        let copy = layout.snapshot_image("snap-aaaaaaaa");
        copy_image(&image, &copy).unwrap();
        let meta = std::fs::metadata(&copy).unwrap();
        assert_eq!(meta.len(), 10 * GIB);
        assert!(meta.blocks() * 512 < 1 << 20, "the copy stays sparse");
        grow_image(&copy, 20).unwrap();
        grow_image(&copy, 10).unwrap();
        assert_eq!(
            std::fs::metadata(&copy).unwrap().len(),
            20 * GIB,
            "never shrinks"
        );
        let mut file = std::fs::File::open(&copy).unwrap();
        file.seek(SeekFrom::Start(5 * GIB)).unwrap();
        let mut buf = [0u8; 6];
        file.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"marker");

        let err = copy_image(&layout.disk_image("disk-missing"), &copy).unwrap_err();
        assert!(err.to_string().contains("cp"), "{err}");
        assert_eq!(
            std::fs::metadata(&copy).unwrap().len(),
            20 * GIB,
            "untouched"
        );
    }

    #[test]
    fn publish_and_unpublish_an_instance_view() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        layout.publish("ins-1", "disk-1", "/dev/loop9").unwrap();
        let link = layout.link("ins-1", "disk-1");
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/dev/loop9"));
        let serial = layout.sys_dir("ins-1").join("block/loop9/serial");
        assert_eq!(std::fs::read_to_string(&serial).unwrap(), "disk-1");
        layout.publish("ins-1", "disk-1", "/dev/loop9").unwrap();

        layout.point_link("ins-1", "disk-1", "/dev/loop3").unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/dev/loop3"));

        layout.unpublish("ins-1", "disk-1", None).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(!serial.exists());
        assert!(layout.sys_dir("ins-1").join("block").is_dir());
        layout
            .unpublish("ins-1", "disk-1", Some("/dev/loop9"))
            .unwrap();
    }

    #[test]
    fn commands_time_out_and_report_stderr() {
        let err = run("sleep", &["5".as_ref()], Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let err = run("ls", &["/no/such/dir".as_ref()], Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("/no/such/dir"), "{err}");
        assert_eq!(
            run("echo", &["hi".as_ref()], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
    }
}
