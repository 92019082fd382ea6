//! A cgroup of its own for each daemon, outside the host's: a container runtime stopping the
//! host's container (crash, OOM, upgrade) kills what is in the container's cgroup, so daemons
//! moved out live on with their mounts; each one's memory limit makes its OOM kill its own.
//!
//! Works on both cgroup versions: v2 (`memory.max`, one hierarchy) and a v1 memory hierarchy
//! (`memory.limit_in_bytes`). The daemon moves itself in between fork and exec, by writing to the
//! cgroup's `cgroup.procs` through a descriptor the host opened, so no moment of its life as the
//! program is spent in the host's cgroup.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Creates (or reuses) the cgroup `name` under `root` with `memory_max` bytes of memory, and opens
/// its `cgroup.procs` for writing: a process writing `0` to it moves itself in. `name` is a hash
/// the host made, never a request's text.
pub(super) fn prepare(
    root: &Path,
    name: &str,
    memory_max: Option<u64>,
) -> std::io::Result<OwnedFd> {
    let named = |what: &str, path: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(root).map_err(|e| named("cannot create the cgroup", root, e))?;
    enable_memory_controller(root);
    let dir = root.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(named("cannot create the cgroup", &dir, e)),
    }
    inherit_cpuset(&dir);
    if let Some(bytes) = memory_max {
        let limit = ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        match limit {
            Some(file) => std::fs::write(&file, bytes.to_string())
                .map_err(|e| named("cannot set the memory limit in", &file, e))?,
            None => tracing::warn!(
                cgroup = %dir.display(),
                "the cgroup has no memory controller: the daemon runs without a limit of its own"
            ),
        }
    }
    let procs_path = dir.join("cgroup.procs");
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs_path)
        .map_err(|e| named("cannot open", &procs_path, e))?;
    Ok(procs.into())
}

/// A new cgroup of the v1 cpuset hierarchy has no CPUs and no memory nodes, and takes no
/// process: give it, and each new cgroup above it, its parent's.
fn inherit_cpuset(dir: &Path) {
    let empty = |d: &Path| {
        std::fs::read_to_string(d.join("cpuset.cpus")).is_ok_and(|v| v.trim().is_empty())
    };
    let mut chain: Vec<&Path> = dir.ancestors().take_while(|d| empty(d)).collect();
    chain.reverse();
    for d in chain {
        let Some(parent) = d.parent() else { continue };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(parent.join(file)) {
                let _ = std::fs::write(d.join(file), value.trim());
            }
        }
    }
}

/// The directories a daemon cgroup named `name` goes under, on the cgroup file system mounted
/// at `mount`: `mount/name` when it is one hierarchy (cgroup v2), else `mount/H/name` for each
/// hierarchy `H` mounted under it (cgroup v1, a tmpfs of one directory per controller).
/// `name` is a relative path of plain components (`csi-fuse`, `kube-free/csi-fuse`).
pub fn roots(mount: &Path, name: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    let plain = !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(std::io::Error::other(format!(
            "the cgroup name {name:?} must be a relative path without . or .."
        )));
    }
    if mount.join("cgroup.procs").exists() {
        return Ok(vec![mount.join(name)]);
    }
    let mut roots = Vec::new();
    for entry in std::fs::read_dir(mount)? {
        let path = entry?.path();
        // A v1 layout also holds symbolic links (`cpu` -> `cpu,cpuacct`): each hierarchy once.
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link && path.join("cgroup.procs").exists() {
            roots.push(path.join(name));
        }
    }
    roots.sort();
    if roots.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} is no cgroup file system",
            mount.display()
        )));
    }
    Ok(roots)
}

/// cgroup v2 puts a controller in a child only when the parent delegates it; v1 has no such
/// file. A failure leaves the daemon unlimited (the limit's absence is logged by the caller).
fn enable_memory_controller(root: &Path) {
    let control = root.join("cgroup.subtree_control");
    if control.exists()
        && let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&control)
    {
        let _ = file.write_all(b"+memory");
    }
}

/// Removes the cgroup of a daemon that is gone (a cgroup with a process in it stays: EBUSY).
pub(super) fn remove(root: &Path, name: &str) {
    let dir = root.join(name);
    match std::fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup kept"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_stands_in_for_a_cgroup_without_memory_controller() {
        // On a real cgroup file system the kernel makes the files; here the test makes them.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("csi-fuse");
        std::fs::create_dir_all(root.join("m1")).unwrap();
        std::fs::write(root.join("m1/cgroup.procs"), "").unwrap();
        std::fs::write(root.join("m1/memory.max"), "max").unwrap();
        prepare(&root, "m1", Some(64 << 20)).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("m1/memory.max")).unwrap(),
            "67108864"
        );
        let e = prepare(&root, "m2", None).unwrap_err();
        assert!(e.to_string().contains("cgroup.procs"), "{e}");
    }

    #[test]
    fn one_root_on_v2_and_one_per_hierarchy_on_v1() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("v2");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cgroup.procs"), "").unwrap();
        assert_eq!(roots(&v2, "csi").unwrap(), [v2.join("csi")]);
        let v1 = dir.path().join("v1");
        for h in ["memory", "cpu,cpuacct", "pids"] {
            std::fs::create_dir_all(v1.join(h)).unwrap();
            std::fs::write(v1.join(h).join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink(v1.join("cpu,cpuacct"), v1.join("cpu")).unwrap();
        assert_eq!(
            roots(&v1, "csi").unwrap(),
            ["cpu,cpuacct", "memory", "pids"].map(|h| v1.join(h).join("csi"))
        );
        let neither = dir.path().join("neither");
        std::fs::create_dir(&neither).unwrap();
        assert!(roots(&neither, "csi").is_err());
        for bad in ["", "/abs", "../up", "a/../b"] {
            assert!(roots(&v2, bad).is_err(), "{bad:?}");
        }
        assert_eq!(roots(&v2, "a/b").unwrap(), [v2.join("a/b")]);
    }

    #[test]
    fn a_v1_cpuset_cgroup_gets_its_parents_cpus_and_memory_nodes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(dir.path().join("cpuset.mems"), "0\n").unwrap();
        let middle = dir.path().join("m");
        let child = middle.join("c");
        std::fs::create_dir_all(&child).unwrap();
        for d in [&middle, &child] {
            std::fs::write(d.join("cpuset.cpus"), "").unwrap();
            std::fs::write(d.join("cpuset.mems"), "\n").unwrap();
        }
        inherit_cpuset(&child);
        assert_eq!(
            std::fs::read_to_string(middle.join("cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert_eq!(
            std::fs::read_to_string(child.join("cpuset.mems")).unwrap(),
            "0"
        );
    }
}
