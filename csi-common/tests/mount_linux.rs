//! The Linux mounter against the real kernel: loop devices over sparse files, real ext4 and xfs,
//! real bind mounts and a real (deliberately broken) FUSE mount.
//!
//! These tests need root, loop devices, /dev/fuse and e2fsprogs/xfsprogs/util-linux; they fail,
//! never skip, when something is missing. Every test cleans up its mounts and loop devices through
//! the [`Scratch`] guard, also when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod linux_root_tests {
    use std::fs::{File, OpenOptions};
    use std::io::{ErrorKind, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use csi_common::mount::{
        DeviceContent, FormatParams, LinuxMounter, MountError, Mounter, run_command,
    };
    use nix::mount::{MntFlags, MsFlags};

    const MIB: u64 = 1 << 20;
    const TIMEOUT: Duration = Duration::from_secs(60);

    /// Fails (not skips) with a clear message when the test cannot run here.
    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "linux_root_tests need root (loop devices, mount(2)); run `cargo test` as root"
        );
        for tool in [
            "losetup",
            "blkid",
            "mkfs.ext4",
            "mkfs.xfs",
            "resize2fs",
            "xfs_growfs",
        ] {
            let found = std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).exists()))
                .unwrap_or(false);
            assert!(
                found,
                "linux_root_tests need `{tool}` on PATH: apt-get install e2fsprogs xfsprogs util-linux"
            );
        }
    }

    /// A temporary directory plus every loop device and mount point a test made. Dropping it
    /// detaches all mounts (lazily, so a busy one cannot stop the cleanup) and loop devices, even
    /// when the test panicked.
    struct Scratch {
        dir: tempfile::TempDir,
        mount_points: Vec<PathBuf>,
        loops: Vec<PathBuf>,
    }

    impl Scratch {
        fn new() -> Self {
            require_root();
            Scratch {
                dir: tempfile::tempdir().unwrap(),
                mount_points: Vec::new(),
                loops: Vec::new(),
            }
        }

        /// A new directory to mount on, remembered for cleanup.
        fn mount_point(&mut self, name: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            self.mount_points.push(path.clone());
            path
        }

        /// A new regular file to bind a block device on, remembered for cleanup.
        fn file_mount_point(&mut self, name: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            File::create(&path).unwrap();
            self.mount_points.push(path.clone());
            path
        }

        /// A sparse file of `size` bytes attached to a free loop device.
        fn loop_device(&mut self, name: &str, size: u64) -> LoopDisk {
            let file = self.dir.path().join(name);
            File::create(&file).unwrap().set_len(size).unwrap();
            let out = run_command(
                "losetup",
                &["--find", "--show", file.to_str().unwrap()],
                TIMEOUT,
            )
            .unwrap();
            let device = PathBuf::from(out.stdout.trim());
            assert!(
                device.starts_with("/dev"),
                "losetup printed {:?}",
                out.stdout
            );
            self.loops.push(device.clone());
            LoopDisk { file, device }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            for point in self.mount_points.iter().rev() {
                // Stacked mounts: detach until nothing is left at this path.
                for _ in 0..8 {
                    if nix::mount::umount2(point, MntFlags::MNT_DETACH).is_err() {
                        break;
                    }
                }
            }
            for device in &self.loops {
                let _ = run_command("losetup", &["-d", device.to_str().unwrap_or("")], TIMEOUT);
            }
        }
    }

    struct LoopDisk {
        file: PathBuf,
        device: PathBuf,
    }

    impl LoopDisk {
        /// Grows the backing file and tells the loop driver (the cloud grew the disk).
        fn grow_to(&self, size: u64) {
            OpenOptions::new()
                .write(true)
                .open(&self.file)
                .unwrap()
                .set_len(size)
                .unwrap();
            run_command("losetup", &["-c", self.device.to_str().unwrap()], TIMEOUT).unwrap();
        }
    }

    fn format(mounter: &LinuxMounter, device: &Path, fs_type: &str) -> Result<(), MountError> {
        mounter.format(&FormatParams {
            device: device.to_owned(),
            fs_type: fs_type.to_owned(),
            extra_options: vec![],
        })
    }

    fn errno_of(err: &MountError) -> Option<i32> {
        match err {
            MountError::Io { source, .. }
            | MountError::Mount { source, .. }
            | MountError::Unmount { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ext4_stage_publish_read_only_unpublish_unstage_and_grow_offline() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let disk = scratch.loop_device("disk.img", 64 * MIB);
        let dev = disk.device.as_path();

        assert_eq!(m.device_size(dev).unwrap(), 64 * MIB);
        assert_eq!(m.probe(dev).unwrap(), DeviceContent::Blank);
        format(&m, dev, "ext4").unwrap();
        assert_eq!(
            m.probe(dev).unwrap(),
            DeviceContent::Filesystem("ext4".into())
        );
        // Formatting again is refused: the data would be lost.
        let err = format(&m, dev, "ext4").unwrap_err();
        assert!(matches!(err, MountError::NotBlank { .. }), "{err:?}");
        assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(64 * MIB));

        // Stage.
        let staging = scratch.mount_point("staging");
        m.mount(
            dev,
            &staging,
            "ext4",
            &strings(&["nodev,noatime", "errors=remount-ro"]),
        )
        .unwrap();
        let staged = m
            .mount_at(&staging)
            .unwrap()
            .expect("staged mount in the table");
        assert_eq!(staged.source, dev.to_str().unwrap());
        assert_eq!(staged.fs_type, "ext4");
        assert!(staged.options.contains(&"nodev".to_owned()), "{staged:?}");
        assert!(staged.options.contains(&"noatime".to_owned()), "{staged:?}");
        assert!(
            staged
                .super_options
                .contains(&"errors=remount-ro".to_owned()),
            "{staged:?}"
        );
        assert!(!staged.is_read_only());
        std::fs::write(staging.join("data"), b"hello").unwrap();

        // Publish read-only: a write through the bind fails with EROFS, the staging stays writable.
        let publish = scratch.mount_point("publish");
        m.bind(&staging, &publish, true, &[]).unwrap();
        let published = m
            .mount_at(&publish)
            .unwrap()
            .expect("bind mount in the table");
        assert!(published.is_read_only(), "{published:?}");
        assert!(
            published.options.contains(&"nodev".to_owned()),
            "bind keeps the source's flags"
        );
        assert_eq!(std::fs::read(publish.join("data")).unwrap(), b"hello");
        let err = std::fs::write(publish.join("other"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
        std::fs::write(staging.join("other"), b"x").unwrap();

        // Stats.
        let stats = m.stats(&publish).unwrap();
        assert!(stats.read_only);
        assert!(
            stats.total_bytes > 50 * MIB && stats.total_bytes <= 64 * MIB,
            "{stats:?}"
        );
        assert!(
            stats.used_bytes > 0 && stats.used_bytes < stats.total_bytes,
            "{stats:?}"
        );
        assert!(
            stats.available_bytes <= stats.total_bytes - stats.used_bytes,
            "{stats:?}"
        );
        assert!(
            stats.total_inodes > 0 && stats.used_inodes >= 12,
            "{stats:?}"
        );
        assert_eq!(stats.total_inodes, stats.used_inodes + stats.free_inodes);
        assert!(!m.stats(&staging).unwrap().read_only);

        // Unpublish and unstage, each twice: the second is "not mounted". A trailing slash names
        // the same mount.
        assert!(m.unmount(&publish).unwrap());
        assert!(!m.unmount(&publish).unwrap());
        assert!(m.mount_at(&publish).unwrap().is_none());
        let staging_slash = PathBuf::from(format!("{}/", staging.display()));
        assert!(m.unmount(&staging_slash).unwrap());
        assert!(!m.unmount(&staging).unwrap());
        assert!(
            m.mounts()
                .unwrap()
                .iter()
                .all(|x| x.source != dev.to_str().unwrap())
        );

        // Grow offline: the device grows, then the filesystem follows.
        disk.grow_to(128 * MIB);
        assert_eq!(m.device_size(dev).unwrap(), 128 * MIB);
        assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(64 * MIB));
        m.grow(dev, &staging, "ext4").unwrap();
        assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(128 * MIB));

        // The data survived, and the grown filesystem mounts with its new size.
        m.mount(dev, &staging, "ext4", &[]).unwrap();
        assert_eq!(std::fs::read(staging.join("data")).unwrap(), b"hello");
        assert!(m.stats(&staging).unwrap().total_bytes > 100 * MIB);
        assert!(m.unmount(&staging).unwrap());
    }

    #[test]
    fn ext4_online_grow_either_grows_or_says_it_is_not_permitted() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let disk = scratch.loop_device("disk.img", 64 * MIB);
        let dev = disk.device.as_path();
        format(&m, dev, "ext4").unwrap();
        let staging = scratch.mount_point("staging");
        m.mount(dev, &staging, "ext4", &[]).unwrap();
        disk.grow_to(96 * MIB);

        match m.grow(dev, &staging, "ext4") {
            // A node with CAP_SYS_RESOURCE.
            Ok(()) => assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(96 * MIB)),
            // This sandbox: resize2fs gets "Permission denied" from the kernel.
            Err(MountError::ResizeNotPermitted { device, fs_type }) => {
                assert_eq!(
                    (device.as_str(), fs_type.as_str()),
                    (dev.to_str().unwrap(), "ext4")
                );
                assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(64 * MIB));
                // The advice in the error works: unmount, grow, mount again.
                assert!(m.unmount(&staging).unwrap());
                m.grow(dev, &staging, "ext4").unwrap();
                assert_eq!(m.fs_size(dev, "ext4").unwrap(), Some(96 * MIB));
            }
            Err(other) => panic!("online ext4 grow failed unexpectedly: {other:?}"),
        }
        m.unmount(&staging).unwrap();
    }

    #[test]
    fn xfs_is_formatted_for_old_kernels_and_grows_online() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        // mkfs.xfs refuses devices under 300 MB.
        let disk = scratch.loop_device("disk.img", 512 * MIB);
        let dev = disk.device.as_path();
        assert_eq!(m.probe(dev).unwrap(), DeviceContent::Blank);
        format(&m, dev, "xfs").unwrap();
        assert_eq!(
            m.probe(dev).unwrap(),
            DeviceContent::Filesystem("xfs".into())
        );
        assert_eq!(m.fs_size(dev, "xfs").unwrap(), Some(512 * MIB));

        // The features older kernels cannot mount are off.
        let info = run_command("xfs_info", &[dev.to_str().unwrap()], TIMEOUT)
            .unwrap()
            .stdout;
        for feature in ["reflink=0", "bigtime=0", "inobtcount=0", "nrext64=0"] {
            assert!(
                info.contains(feature),
                "{feature} missing in xfs_info:\n{info}"
            );
        }

        let staging = scratch.mount_point("staging");
        m.mount(dev, &staging, "xfs", &strings(&["noatime", "nouuid"]))
            .unwrap();
        let staged = m
            .mount_at(&staging)
            .unwrap()
            .expect("xfs mount in the table");
        assert!(staged.options.contains(&"noatime".to_owned()), "{staged:?}");
        assert!(
            staged.super_options.contains(&"nouuid".to_owned()),
            "{staged:?}"
        );
        let before = m.stats(&staging).unwrap();
        assert!(
            before.total_bytes > 400 * MIB && before.total_bytes <= 512 * MIB,
            "{before:?}"
        );

        // Grow online: the disk doubles, xfs_growfs follows while mounted.
        disk.grow_to(1024 * MIB);
        assert_eq!(m.device_size(dev).unwrap(), 1024 * MIB);
        m.grow(dev, &staging, "xfs").unwrap();
        let after = m.stats(&staging).unwrap();
        assert!(
            after.total_bytes > 900 * MIB,
            "before {before:?}, after {after:?}"
        );
        // fs_size reads the live size of a mounted xfs (not the stale on-disk superblock).
        assert_eq!(m.fs_size(dev, "xfs").unwrap(), Some(1024 * MIB));

        assert!(m.unmount(&staging).unwrap());
        assert!(!m.unmount(&staging).unwrap());
        assert_eq!(m.fs_size(dev, "xfs").unwrap(), Some(1024 * MIB));
    }

    #[test]
    fn probe_sees_partition_tables_and_other_signatures_and_format_refuses_them() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let disk = scratch.loop_device("disk.img", 16 * MIB);
        let dev = disk.device.as_path();

        // A DOS partition table with one Linux partition.
        let mut mbr = [0u8; 512];
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let mut file = OpenOptions::new().write(true).open(dev).unwrap();
        file.write_all(&mbr).unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(
            m.probe(dev).unwrap(),
            DeviceContent::PartitionTable("dos".into())
        );
        let err = format(&m, dev, "ext4").unwrap_err();
        assert!(
            matches!(&err, MountError::NotBlank { found, .. } if found == "a dos partition table"),
            "{err:?}"
        );

        // Swap: a signature, but not a filesystem.
        run_command("wipefs", &["-a", dev.to_str().unwrap()], TIMEOUT).unwrap();
        assert_eq!(m.probe(dev).unwrap(), DeviceContent::Blank);
        run_command("mkswap", &[dev.to_str().unwrap()], TIMEOUT).unwrap();
        assert_eq!(m.probe(dev).unwrap(), DeviceContent::Other("swap".into()));
        assert!(matches!(
            format(&m, dev, "xfs"),
            Err(MountError::NotBlank { .. })
        ));

        // A missing device is an error, never "blank".
        let err = m
            .probe(&scratch.dir.path().join("no-such-device"))
            .unwrap_err();
        assert!(
            matches!(&err, MountError::Io { source, .. } if source.kind() == ErrorKind::NotFound)
        );
    }

    #[test]
    fn unmount_of_a_busy_mount_fails_and_leaves_it_mounted() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let disk = scratch.loop_device("disk.img", 32 * MIB);
        let dev = disk.device.as_path();
        format(&m, dev, "ext4").unwrap();
        let staging = scratch.mount_point("staging");
        m.mount(dev, &staging, "ext4", &[]).unwrap();

        let open_file = File::create(staging.join("held-open")).unwrap();
        let err = m.unmount(&staging).unwrap_err();
        assert!(matches!(err, MountError::Unmount { .. }), "{err:?}");
        assert_eq!(errno_of(&err), Some(16), "EBUSY expected: {err}");
        assert!(!err.is_broken_mount());
        assert!(
            m.mount_at(&staging).unwrap().is_some(),
            "a busy mount must not be detached"
        );

        drop(open_file);
        assert!(m.unmount(&staging).unwrap());
    }

    #[test]
    fn block_volume_binds_a_device_node_onto_a_file() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let disk = scratch.loop_device("disk.img", 8 * MIB);
        let dev = disk.device.as_path();
        let target = scratch.file_mount_point("block-volume");

        m.bind(dev, &target, true, &[]).unwrap();
        let bound = m
            .mount_at(&target)
            .unwrap()
            .expect("device bind in the table");
        assert!(bound.is_read_only(), "{bound:?}");
        assert_eq!(bound.fs_type, "devtmpfs", "{bound:?}");
        // The file now is the device.
        assert_eq!(m.device_size(&target).unwrap(), 8 * MIB);
        let mut through_bind = File::open(&target).unwrap();
        assert_eq!(through_bind.seek(SeekFrom::End(0)).unwrap(), 8 * MIB);
        drop(through_bind);

        assert!(m.unmount(&target).unwrap());
        assert!(!m.unmount(&target).unwrap());
        assert_eq!(
            std::fs::metadata(&target).unwrap().len(),
            0,
            "the plain file is back"
        );
    }

    #[test]
    fn broken_fuse_mount_is_reported_broken_and_still_unmounts() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let target = scratch.mount_point("fuse");

        // A FUSE mount whose "daemon" (the /dev/fuse descriptor) goes away at once: the
        // connection aborts and every access fails with ENOTCONN, as after a cos-fuse crash.
        let fuse = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .unwrap();
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            fuse.as_raw_fd()
        );
        nix::mount::mount(
            Some("broken-test"),
            &target,
            Some("fuse.broken-test"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .unwrap();
        drop(fuse);

        let mounted = m
            .mount_at(&target)
            .unwrap()
            .expect("fuse mount in the table");
        assert_eq!(mounted.fs_type, "fuse.broken-test");
        let err = m.stats(&target).unwrap_err();
        assert!(err.is_broken_mount(), "stats of a dead FUSE mount: {err:?}");
        assert_eq!(errno_of(&err), Some(107), "ENOTCONN expected: {err}");

        assert!(m.unmount(&target).unwrap());
        assert!(m.mount_at(&target).unwrap().is_none());
        assert!(!m.unmount(&target).unwrap());
        assert!(m.stats(&target).is_ok(), "the directory is usable again");
    }

    #[test]
    fn mount_errors_carry_the_errno() {
        let mut scratch = Scratch::new();
        let m = LinuxMounter::new();
        let disk = scratch.loop_device("disk.img", 16 * MIB);
        let dev = disk.device.as_path();
        let target = scratch.mount_point("target");

        // Nothing on the device: the kernel finds no ext4 superblock.
        let err = m.mount(dev, &target, "ext4", &[]).unwrap_err();
        assert!(matches!(err, MountError::Mount { .. }), "{err:?}");
        assert_eq!(errno_of(&err), Some(22), "EINVAL expected: {err}");
        assert!(err.to_string().contains(dev.to_str().unwrap()), "{err}");

        // A missing target.
        format(&m, dev, "ext4").unwrap();
        let err = m
            .mount(dev, &target.join("missing"), "ext4", &[])
            .unwrap_err();
        assert_eq!(errno_of(&err), Some(2), "ENOENT expected: {err}");

        // An option ext4 does not know is the filesystem's EINVAL, and nothing is left mounted.
        let err = m
            .mount(dev, &target, "ext4", &strings(&["no_such_option"]))
            .unwrap_err();
        assert_eq!(errno_of(&err), Some(22), "EINVAL expected: {err}");
        assert!(m.mount_at(&target).unwrap().is_none());

        // A read-only mount of the device is read-only all the way down.
        m.mount(dev, &target, "ext4", &strings(&["ro"])).unwrap();
        let mounted = m.mount_at(&target).unwrap().unwrap();
        assert!(mounted.is_read_only(), "{mounted:?}");
        assert!(m.stats(&target).unwrap().read_only);
        assert!(m.unmount(&target).unwrap());
    }
}
