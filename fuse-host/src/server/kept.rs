//! Kept connections: for a kind whose program keeps its kernel FUSE connection apart
//! (`HostConfig::keeping_kinds`), the host holds a copy of each mount's connection, got from the
//! daemon's control socket. With it, a daemon that dies is replaced on the same connection (the
//! mount, and every pod's bind of it, keeps answering), and a newer program takes a mount over
//! from an older daemon. This module names the files, builds the arguments, and prepares the
//! child; the supervisor decides when.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::HostConfig;
use super::records::{Records, key_of};
use crate::control::{self, CONTROL_SOCKET_ARG, FUSE_FD_ARG, INHERITED_FD, TAKE_OVER_ARG};

/// At most this many restarts of one mount's daemon per [`HEAL_WINDOW`]; past it the mount is
/// left broken (a daemon that dies at once would otherwise be restarted forever), and the next
/// publish repairs it.
const MAX_HEALS: usize = 5;
const HEAL_WINDOW: Duration = Duration::from_secs(60);

/// How a daemon gets its connection.
#[derive(Debug, Clone)]
pub(super) enum Start {
    /// It mounts a new one.
    Fresh,
    /// It is handed the running one the host keeps (its predecessor died).
    Inherit(Arc<OwnedFd>),
    /// It takes the mount over from the live daemon at the control socket.
    TakeOver,
}

impl Start {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Start::Fresh => "fresh",
            Start::Inherit(_) => "restart",
            Start::TakeOver => "take-over",
        }
    }
}

/// The connections the host holds, and the recent restarts of each mount's daemon.
#[derive(Debug, Default)]
pub(super) struct Kept {
    connections: Mutex<HashMap<PathBuf, Arc<OwnedFd>>>,
    heals: Mutex<HashMap<PathBuf, VecDeque<Instant>>>,
}

impl Kept {
    pub(super) fn insert(&self, target: &Path, dev: OwnedFd) {
        self.lock().insert(target.to_owned(), Arc::new(dev));
    }

    pub(super) fn get(&self, target: &Path) -> Option<Arc<OwnedFd>> {
        self.lock().get(target).cloned()
    }

    pub(super) fn remove(&self, target: &Path) {
        self.lock().remove(target);
        self.heals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(target);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<OwnedFd>>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the mount's daemon may be restarted once more now (and counts it).
    pub(super) fn may_heal(&self, target: &Path) -> bool {
        let now = Instant::now();
        let mut heals = self.heals.lock().unwrap_or_else(|p| p.into_inner());
        let recent = heals.entry(target.to_owned()).or_default();
        while recent.front().is_some_and(|t| now - *t > HEAL_WINDOW) {
            recent.pop_front();
        }
        if recent.len() >= MAX_HEALS {
            return false;
        }
        recent.push_back(now);
        true
    }
}

/// The control socket of the mount at `target`'s daemon.
pub(super) fn control_path(records: &Records, target: &Path) -> PathBuf {
    records.file_for(target, "control", "sock")
}

/// What a daemon of a keeping kind is told besides the request's arguments.
pub(super) fn arguments(records: &Records, target: &Path, start: &Start) -> Vec<String> {
    let mut args = vec![
        CONTROL_SOCKET_ARG.to_owned(),
        control_path(records, target).display().to_string(),
        "--inode-journal".to_owned(),
        records
            .file_for(target, "inodes", "journal")
            .display()
            .to_string(),
    ];
    match start {
        Start::Fresh => {}
        Start::Inherit(_) => args.extend([FUSE_FD_ARG.to_owned(), INHERITED_FD.to_string()]),
        Start::TakeOver => args.push(TAKE_OVER_ARG.to_owned()),
    }
    args
}

/// Asks the daemon `pid` at `path` for its connection, retrying until it answers as `pid` (a
/// daemon binds its socket once it serves; a predecessor may still answer meanwhile).
pub(super) async fn fetch(path: PathBuf, pid: u32, timeout: Duration) -> std::io::Result<OwnedFd> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                control::fetch_connection(&path, Duration::from_secs(5))
            })
            .await
            .map_err(std::io::Error::other)?
        };
        let error = match attempt {
            Ok((answered, dev)) if answered == pid => return Ok(dev),
            Ok((answered, _)) => std::io::Error::other(format!(
                "the control socket {} is still answered by {answered}, not {pid}",
                path.display()
            )),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The cgroups of the mount at `target`'s daemon (their `cgroup.procs`), made ready, when the
/// host places daemons.
pub(super) fn cgroups_for(config: &HostConfig, target: &Path) -> Vec<OwnedFd> {
    let mut procs = Vec::new();
    for root in &config.daemon_cgroups {
        match super::cgroup::prepare(root, &key_of(target), config.daemon_memory_max) {
            Ok(fd) => procs.push(fd),
            Err(e) => {
                tracing::error!(error = %e, target = %target.display(), "the daemon stays in the host's cgroup: a restart of the host's container will end it");
                return Vec::new();
            }
        }
    }
    procs
}

/// Removes the cgroups of the mount at `target`'s daemon, which is gone.
pub(super) fn forget_cgroups(config: &HostConfig, target: &Path) {
    for root in &config.daemon_cgroups {
        super::cgroup::remove(root, &key_of(target));
    }
}

/// Between fork and exec of the daemon: it moves itself into its `cgroups` (their
/// `cgroup.procs`) and finds `connection` as descriptor [`INHERITED_FD`].
#[allow(unsafe_code)]
pub(super) fn before_exec(
    command: &mut tokio::process::Command,
    connection: Option<Arc<OwnedFd>>,
    cgroups: Vec<OwnedFd>,
) {
    if connection.is_none() && cgroups.is_empty() {
        return;
    }
    let fd: Option<RawFd> = connection.as_ref().map(|c| c.as_raw_fd());
    let procs: Vec<RawFd> = cgroups.iter().map(|c| c.as_raw_fd()).collect();
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (write, dup2, fcntl) on descriptors the parent keeps open
    // until the spawn returns (`connection` and `cgroup` are moved into the closure, which the
    // command owns).
    unsafe {
        command.pre_exec(move || {
            let _keep = (&connection, &cgroups);
            for procs in &procs {
                if libc::write(*procs, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = fd {
                if fd == INHERITED_FD {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, INHERITED_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The identity (device, inode) of the program file a process runs, or of a program path: a
/// different one means the program was replaced (a new image).
pub(super) fn program_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_keeps_dying_is_restarted_five_times_a_minute() {
        let kept = Kept::default();
        let t = Path::new("/k/t");
        for _ in 0..MAX_HEALS {
            assert!(kept.may_heal(t));
        }
        assert!(!kept.may_heal(t));
        assert!(kept.may_heal(Path::new("/k/other")));
        kept.remove(t);
        assert!(kept.may_heal(t), "a new mount starts a new count");
    }

    #[test]
    fn each_start_says_where_the_connection_comes_from() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path()).unwrap();
        let t = Path::new("/k/t");
        let fresh = arguments(&records, t, &Start::Fresh);
        assert_eq!(fresh[0], CONTROL_SOCKET_ARG);
        assert!(fresh[1].ends_with(".sock") && fresh[3].ends_with(".journal"));
        assert_eq!(fresh.len(), 4);
        let dev: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let inherit = arguments(&records, t, &Start::Inherit(Arc::new(dev)));
        assert_eq!(inherit[4..], [FUSE_FD_ARG.to_owned(), "3".to_owned()]);
        assert_eq!(arguments(&records, t, &Start::TakeOver)[4], TAKE_OVER_ARG);
    }
}
