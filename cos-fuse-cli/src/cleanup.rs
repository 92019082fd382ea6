//! What is left of a mount once its last daemon is gone: the uploads its journal still names,
//! and its directory in the node's staging area. A daemon that exits cleanly resolved its
//! uploads itself; one that was killed left them to the next daemon of the mount, and when the
//! mount is unpublished instead there is none, so the FUSE host runs `--abort-stale-uploads`.

use std::path::Path;

use cos_fuse::ObjectStore;
use cos_fuse::staging_area::remove_idle_mount_dir;
use cos_fuse::upload_journal::{abort_stale_uploads, pending};

/// Aborts the uploads the journal in `dir` names (connecting only when there are some), then
/// removes the directory. An error when some could not be aborted: they stay journaled.
pub fn abort_left_uploads<S: ObjectStore>(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    connect: impl FnOnce() -> Result<S, String>,
) -> Result<(), String> {
    let left = pending(dir);
    if left > 0 {
        let store = connect()?;
        let report = rt.block_on(abort_stale_uploads(&store, dir));
        tracing::info!(
            aborted = report.aborted.len(),
            failed = report.failed,
            "multipart uploads a dead daemon of this mount left"
        );
        if report.failed > 0 {
            return Err(format!(
                "{} of the multipart uploads journaled in {} could not be aborted; they stay journaled for the next daemon of this mount",
                report.failed,
                dir.display()
            ));
        }
    }
    forget_mount_dir(dir);
    Ok(())
}

/// Removes the mount's directory in the staging area when nothing in it is still needed.
pub fn forget_mount_dir(dir: &Path) {
    match remove_idle_mount_dir(dir, |d| pending(d) > 0) {
        Ok(true) => tracing::debug!(dir = %dir.display(), "removed the mount's staging directory"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove the mount's staging directory"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use cos_fuse::FsConfig;
    use cos_fuse::fs::{Fs, OpenFlags, ROOT_INO};
    use cos_fuse::mem::MemStore;
    use cos_fuse::staging_area::{mount_dir_name, prepare_mount_dir};

    const MIB: usize = 1024 * 1024;

    /// A daemon of the mount in `dir` that dies with a streamed upload under way.
    fn die_mid_upload(rt: &tokio::runtime::Runtime, store: &MemStore, dir: &Path) {
        let config = FsConfig {
            staging_dir: dir.to_owned(),
            part_size: 5 * MIB as u64,
            ..FsConfig::default()
        };
        let fs = Fs::new(store.clone(), config).unwrap();
        rt.block_on(async {
            let (attr, fh) = fs
                .create(ROOT_INO, "big", OpenFlags(libc::O_WRONLY))
                .await
                .unwrap();
            let part = vec![1u8; 6 * MIB];
            fs.write(attr.ino, fh, 0, &part).await.unwrap();
            fs.write(attr.ino, fh, part.len() as u64, &part)
                .await
                .unwrap();
        });
    }

    #[test]
    fn a_dead_daemons_uploads_are_aborted_and_its_directory_goes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = prepare_mount_dir(&root.path().join("area"), &mount_dir_name(&["m"])).unwrap();
        let store = MemStore::new();
        die_mid_upload(&rt, &store, &dir);
        assert_eq!(store.pending_uploads(), 1);
        assert_eq!(pending(&dir), 1);

        // The store refuses at first: the entry stays for the next try.
        let refused = abort_left_uploads(&dir, &rt, || -> Result<MemStore, String> {
            Err("no keys".into())
        });
        assert_eq!(refused, Err("no keys".into()));
        assert_eq!(pending(&dir), 1);
        assert!(dir.is_dir());

        abort_left_uploads(&dir, &rt, || Ok(store.clone())).unwrap();
        assert_eq!(store.pending_uploads(), 0);
        assert!(!dir.exists(), "nothing of the mount is left");
    }

    #[test]
    fn with_nothing_journaled_it_connects_to_nothing() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = prepare_mount_dir(&root.path().join("area"), &mount_dir_name(&["m"])).unwrap();
        abort_left_uploads(&dir, &rt, || -> Result<MemStore, String> {
            panic!("connected with nothing to abort")
        })
        .unwrap();
        assert!(!dir.exists());
    }
}
