//! A stand-in for a container, as far as the FUSE host's survival goes: a cgroup the host runs
//! in, killed as a runtime stops a container that shares the node's PID namespace (SIGKILL to
//! every process of the container's cgroup, `runc kill --all`), and a sibling directory under
//! which the host places its daemons (`--daemon-cgroup`).
//!
//! It uses the node's cgroup v1 memory hierarchy when there is one (so daemons' memory limits
//! apply), else the cgroup v2 hierarchy. Dropping it kills what is left in its cgroups and
//! removes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// A container's cgroup and the one its daemons go under.
#[derive(Debug)]
pub struct Container {
    root: PathBuf,
}

/// Where the test's cgroups go: the v1 memory hierarchy, the v2 one of a hybrid layout, or the
/// unified one.
fn hierarchy() -> anyhow::Result<PathBuf> {
    [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.join("cgroup.procs").exists())
    .context("no cgroup file system under /sys/fs/cgroup")
}

impl Container {
    pub fn new() -> anyhow::Result<Container> {
        let root = hierarchy()?.join(format!("csi-e2e-{}", crate::env::random_token(8)));
        std::fs::create_dir_all(root.join("host"))
            .with_context(|| format!("cannot create the cgroup {}", root.display()))?;
        Ok(Container { root })
    }

    /// What the host is given as `--daemon-cgroup`.
    pub fn daemons_dir(&self) -> PathBuf {
        self.root.join("daemons")
    }

    /// Moves `pid` into the container's cgroup (its children follow it).
    pub fn enter(&self, pid: u32) -> anyhow::Result<()> {
        let procs = self.root.join("host/cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .with_context(|| format!("cannot move {pid} into {}", procs.display()))
    }

    /// The processes in the container's cgroup.
    pub fn pids(&self) -> Vec<u32> {
        pids_in(&self.root.join("host"))
    }

    /// Stops the container as a runtime does: SIGKILL to each of its processes until none is
    /// left (a fork meanwhile is caught by the next round).
    pub fn kill(&self) {
        kill_all(&self.root.join("host"));
    }
}

fn pids_in(cgroup: &Path) -> Vec<u32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_all(cgroup: &Path) {
    for _ in 0..100 {
        let pids = pids_in(cgroup);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
        let daemons = self.daemons_dir();
        if let Ok(entries) = std::fs::read_dir(&daemons) {
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                kill_all(&entry.path());
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        for dir in [daemons, self.root.join("host"), self.root.clone()] {
            for _ in 0..50 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
