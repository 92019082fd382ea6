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
}
