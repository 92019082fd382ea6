//! The kernel's read-ahead of a new mount: its backing device's `read_ahead_kb` in sysfs
//! (`/sys/class/bdi/<major>:<minor>/`). Best effort and off the request path: it must never fail
//! or delay a mount.

use std::path::Path;

/// The sysfs file that holds the read-ahead of the file system on device `dev`.
fn read_ahead_file(dev: u64) -> String {
    format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    )
}

/// Sets the new mount's kernel read-ahead (`/sys/class/bdi/<dev>/read_ahead_kb`) to `bytes`,
/// from a thread of its own, once the kernel has taken the answer to its INIT request: that
/// answer caps the read-ahead at the 128 KiB the kernel offered, undoing anything set before.
/// The thread's `stat` of the mount's root waits for exactly that. It takes root (the CSI node
/// plugin runs as root) and a writable `/sys`; without them the mount keeps the kernel's default
/// and says so once.
pub(super) fn raise_kernel_read_ahead(mountpoint: &Path, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let mountpoint = mountpoint.to_path_buf();
    let set = move || {
        use std::os::unix::fs::MetadataExt;
        let dev = match std::fs::metadata(&mountpoint) {
            Ok(m) => m.dev(),
            Err(e) => {
                tracing::debug!(error = %e, "the mount ended before its read-ahead was set");
                return;
            }
        };
        let path = read_ahead_file(dev);
        let kb = bytes / 1024;
        match std::fs::write(&path, kb.to_string()) {
            Ok(()) => tracing::debug!(path, kb, "kernel read-ahead set"),
            Err(e) => tracing::info!(
                path,
                error = %e,
                "the kernel keeps its own read-ahead on this mount: sequential reads take more \
                 round trips"
            ),
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("read-ahead".to_owned())
        .spawn(set)
    {
        tracing::info!(error = %e, "cannot start the thread that sets the kernel read-ahead");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_ahead_file_is_named_by_major_and_minor() {
        assert_eq!(
            read_ahead_file(libc::makedev(0, 52)),
            "/sys/class/bdi/0:52/read_ahead_kb"
        );
        assert_eq!(
            read_ahead_file(libc::makedev(259, 3)),
            "/sys/class/bdi/259:3/read_ahead_kb"
        );
    }
}
