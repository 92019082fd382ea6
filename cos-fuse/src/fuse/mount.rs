//! Mounting: the options of a kernel mount, mounting an [`Fs`] in the background or on the
//! calling thread, and the handle that unmounts it. It wires the adapter, the kernel cache
//! invalidations and the kernel read-ahead to a new session; requests are the adapter's.
//!
//! Mounting uses fuser's pure-Rust path (no libfuse): as root it calls mount(2) directly and
//! needs no `fusermount`. Only [`MountOptions::auto_unmount`] goes through `fusermount3`, from
//! the `fuse3` package.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier, SessionACL};
use tokio::runtime::Handle;

use super::adapter::FuseFs;
use super::counters::FuseCounters;
use super::read_ahead::raise_kernel_read_ahead;
use crate::fs::{Fs, Invalidation};
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
    /// Mount `noexec`.
    pub no_exec: bool,
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
            no_exec: false,
            auto_unmount: false,
            threads: 1,
            counters: Arc::default(),
        }
    }

    pub(super) fn fuser_config(&self, read_only: bool) -> Config {
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
        if self.no_exec {
            options.push(MountOption::NoExec);
        }
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

impl MountOptions {
    /// What mount(2) is given for the connection `fd` at a mount point of mode `root_mode`: the
    /// source, the flags and the data, the same as fuser's own mount of [`Self::fuser_config`].
    pub(super) fn kernel_mount(
        &self,
        fd: std::os::fd::RawFd,
        root_mode: u32,
        read_only: bool,
    ) -> (String, nix::mount::MsFlags, String) {
        use nix::mount::MsFlags;
        let mut flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
        if read_only || self.read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        if self.no_exec {
            flags |= MsFlags::MS_NOEXEC;
        }
        let mut data = format!(
            "fd={fd},rootmode={root_mode:o},user_id={},group_id={},subtype=cos-fuse",
            nix::unistd::getuid(),
            nix::unistd::getgid()
        );
        if self.default_permissions {
            data.push_str(",default_permissions");
        }
        if self.allow_other {
            data.push_str(",allow_other");
        }
        (self.fs_name.clone(), flags, data)
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
        FuseFs::new(fs.clone(), runtime, Arc::clone(&options.counters)),
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
        FuseFs::new(fs.clone(), runtime, Arc::clone(&options.counters)),
        mountpoint,
        &cfg,
    )?;
    set_invalidator(&fs, session.notifier());
    raise_kernel_read_ahead(mountpoint, fs.config().kernel_read_ahead);
    session.run()
}

pub(super) fn set_invalidator<S: ObjectStore>(fs: &Fs<S>, notifier: Notifier) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_mount_options() {
        let o = MountOptions::new("b-123", "/data/pv");
        assert_eq!(o.fs_name, "cos-fuse:b-123/data/pv");
        let cfg = o.fuser_config(true);
        assert!(cfg.mount_options.contains(&MountOption::RO));
        assert!(cfg.mount_options.contains(&MountOption::DefaultPermissions));
        assert_eq!(cfg.acl, SessionACL::All);
        for flag in [MountOption::NoSuid, MountOption::NoDev] {
            assert!(cfg.mount_options.contains(&flag), "{flag:?}");
        }
        assert!(!cfg.mount_options.contains(&MountOption::NoExec));
        let no_exec = MountOptions {
            no_exec: true,
            ..o.clone()
        };
        assert!(
            no_exec
                .fuser_config(false)
                .mount_options
                .contains(&MountOption::NoExec)
        );
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

    #[test]
    fn the_kernel_mount_matches_fusers() {
        use nix::mount::MsFlags;
        let o = MountOptions::new("b-1", "p");
        let (source, flags, data) = o.kernel_mount(9, 0o40755, true);
        assert_eq!(source, "cos-fuse:b-1/p");
        assert_eq!(
            flags,
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_RDONLY
        );
        assert!(data.starts_with("fd=9,rootmode=40755,user_id="), "{data}");
        for part in ["subtype=cos-fuse", "default_permissions", "allow_other"] {
            assert!(data.split(',').any(|p| p == part), "{part} in {data}");
        }
        let no_exec = MountOptions {
            no_exec: true,
            allow_other: false,
            ..o
        };
        let (_, flags, data) = no_exec.kernel_mount(9, 0o40755, false);
        assert!(flags.contains(MsFlags::MS_NOEXEC) && !flags.contains(MsFlags::MS_RDONLY));
        assert!(!data.contains("allow_other"));
    }
}
