//! One FUSE mount, cos-fuse or s3fs, and its daemon, run in the foreground so it is our child:
//! [`Mount::unmount`] unmounts it and waits for the daemon to exit; dropping a [`Mount`] that is
//! still mounted unmounts it lazily and kills the daemon. How each mount is started (its
//! options, what it waits for) is up to the benchmark that starts it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::bench::{COMMAND_TIMEOUT, run_command};
use crate::process::Proc;

/// How long a daemon has to exit once its mount is gone.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The two FUSE file systems the benchmarks compare: which daemon serves a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Contender {
    CosFuse,
    S3fs,
}

impl Contender {
    pub(super) fn name(self) -> &'static str {
        match self {
            Contender::CosFuse => "cos-fuse",
            Contender::S3fs => "s3fs",
        }
    }
}

/// One mounted file system and its daemon (in the foreground, so it is our child). Unmounted
/// lazily and killed on drop if [`Mount::unmount`] did not run.
#[derive(Debug)]
pub(super) struct Mount {
    pub(super) who: Contender,
    pub(super) point: PathBuf,
    pub(super) proc: Proc,
    pub(super) mounted: bool,
}

impl Mount {
    /// `umount` (lazily if busy), then waits for the daemon to finish and exit.
    pub(super) async fn unmount(&mut self) -> anyhow::Result<()> {
        let point = self.point.display().to_string();
        let umount = Path::new("umount");
        if let Err(e) = run_command(umount, &[&point], COMMAND_TIMEOUT).await {
            eprintln!("e2e bench cos: {e:#}; unmounting lazily");
            run_command(umount, &["-l", &point], COMMAND_TIMEOUT).await?;
        }
        self.mounted = false;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.proc.try_status() {
                if !status.success() {
                    bail!(
                        "{} exited with {status} after unmounting; its log:\n{}",
                        self.who.name(),
                        self.proc.log_tail()
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.proc.stop(Duration::from_secs(5)).await;
                bail!(
                    "{} did not exit within {EXIT_TIMEOUT:?} of unmounting",
                    self.who.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.point, nix::mount::MntFlags::MNT_DETACH);
        }
        if self.proc.try_status().is_none()
            && let Some(pid) = self.proc.pid()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
