//! A stand-in for a container, as far as the FUSE host's survival goes: a cgroup the host runs
//! in, killed as a runtime stops a container that shares the node's PID namespace (SIGKILL to
//! every process of the container's cgroup, `runc kill --all`), and the cgroup name under which
//! the host places its daemons (`--daemon-cgroup-fs /sys/fs/cgroup --daemon-cgroup-name`).
//!
//! The host's own cgroup is in the v1 memory hierarchy when there is one, else in the v2 one.
//! Dropping it kills what is left in its cgroups and removes them, in every hierarchy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// The node's cgroup file system.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";

/// A container's cgroup and the one its daemons go under.
#[derive(Debug)]
pub struct Container {
    name: String,
    /// The host's cgroup.
    host: PathBuf,
}

/// Where the host's cgroup goes: the v1 memory hierarchy, the v2 one of a hybrid layout, or the
/// unified one.
fn hierarchy() -> anyhow::Result<PathBuf> {
    ["memory", "unified", ""]
        .iter()
        .map(|h| Path::new(CGROUP_FS).join(h))
        .find(|p| p.join("cgroup.procs").exists())
        .context("no cgroup file system under /sys/fs/cgroup")
}

impl Container {
    pub fn new() -> anyhow::Result<Container> {
        let name = format!("csi-e2e-{}", crate::env::random_token(8));
        let host = hierarchy()?.join(&name).join("host");
        std::fs::create_dir_all(&host)
            .with_context(|| format!("cannot create the cgroup {}", host.display()))?;
        Ok(Container { name, host })
    }

    /// What the host is given as `--daemon-cgroup-name` (under [`CGROUP_FS`]).
    pub fn daemons_name(&self) -> String {
        format!("{}/daemons", self.name)
    }

    /// Moves `pid` into the container's cgroup (its children follow it).
    pub fn enter(&self, pid: u32) -> anyhow::Result<()> {
        let procs = self.host.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .with_context(|| format!("cannot move {pid} into {}", procs.display()))
    }

    /// The processes in the container's cgroup.
    pub fn pids(&self) -> Vec<u32> {
        pids_in(&self.host)
    }

    /// Stops the container as a runtime does: SIGKILL to each of its processes until none is
    /// left (a fork meanwhile is caught by the next round).
    pub fn kill(&self) {
        kill_all(&self.host);
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

/// Removes `dir`, retrying while the kernel still counts a killed process in it.
fn remove(dir: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
        remove(&self.host);
        let roots =
            fuse_host::cgroup_roots(Path::new(CGROUP_FS), &self.daemons_name()).unwrap_or_default();
        for daemons in roots {
            if let Ok(entries) = std::fs::read_dir(&daemons) {
                for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                    kill_all(&entry.path());
                    remove(&entry.path());
                }
            }
            remove(&daemons);
            if let Some(top) = daemons.parent() {
                remove(top);
            }
        }
        if let Some(top) = self.host.parent() {
            remove(top);
        }
    }
}
