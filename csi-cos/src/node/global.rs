//! Where a volume's node-wide mounts are: one per volume and plan fingerprint (the PV's options,
//! a pod's fsGroup among them), at `<mounts-dir>/<hash of the volume ID>-<hash of the
//! fingerprint>`, so pods with different fsGroups get a daemon each and pods with the same
//! options share one. Mounts made before this layout are at `<mounts-dir>/<hash of the volume
//! ID>` ([`legacy_path`]) and are still found, shared and released.
//!
//! Which node-wide mount a pod's target shows is read from the mount table: a bind has the
//! major:minor of the mount it was made from. Nothing is recorded. It only computes and reads.

use std::path::{Path, PathBuf};

use csi_common::mount::MountInfo;
use sha2::{Digest, Sha256};

/// The hash naming a volume's node-wide mounts: any volume ID is then a safe file name.
fn volume_stem(volume_id: &str) -> String {
    let digest = Sha256::digest(volume_id.as_bytes());
    hex::encode(&digest[..16])
}

/// The node-wide mount of a volume before mounts were keyed by fingerprint.
pub fn legacy_path(mounts_dir: &Path, volume_id: &str) -> PathBuf {
    mounts_dir.join(volume_stem(volume_id))
}

/// The node-wide mount of a volume with the plan `fingerprint`.
pub fn shared_path(mounts_dir: &Path, volume_id: &str, fingerprint: &str) -> PathBuf {
    let digest = Sha256::digest(fingerprint.as_bytes());
    mounts_dir.join(format!(
        "{}-{}",
        volume_stem(volume_id),
        hex::encode(&digest[..8])
    ))
}

/// Whether `name` names a node-wide mount of the volume with stem `stem`.
fn is_volumes(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// A node-wide mount of a volume as the mount table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMount {
    pub path: PathBuf,
    pub major_minor: String,
}

/// The node-wide mounts of `volume_id` in the mount table (the topmost mount of each).
pub fn mounted(table: &[MountInfo], mounts_dir: &Path, volume_id: &str) -> Vec<NodeMount> {
    let stem = volume_stem(volume_id);
    let mut found: Vec<NodeMount> = Vec::new();
    for m in table.iter().rev() {
        let path = Path::new(&m.mount_point);
        let ours = path.parent() == Some(mounts_dir)
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| is_volumes(n, &stem));
        if ours && !found.iter().any(|f| f.path == path) {
            found.push(NodeMount {
                path: path.to_owned(),
                major_minor: m.major_minor.clone(),
            });
        }
    }
    found
}

/// The directories of `volume_id`'s node-wide mounts, mounted or not (left by an earlier
/// failure).
pub fn directories(mounts_dir: &Path, volume_id: &str) -> Vec<PathBuf> {
    let stem = volume_stem(volume_id);
    let Ok(entries) = std::fs::read_dir(mounts_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| is_volumes(n, &stem)))
        .map(|e| e.path())
        .collect()
}

/// The node-wide mount among `mounts` that `target` shows (a bind of it), if `target` is mounted.
pub fn bound_to<'a>(
    table: &[MountInfo],
    target: &Path,
    mounts: &'a [NodeMount],
) -> Option<&'a NodeMount> {
    let point = target.to_string_lossy();
    let at = table.iter().rev().find(|m| m.mount_point == point)?;
    mounts.iter().find(|n| n.major_minor == at.major_minor)
}

/// Whether any mount besides `mount` itself shows it (a pod's bind).
pub fn in_use(table: &[MountInfo], mount: &NodeMount) -> bool {
    let point = mount.path.to_string_lossy();
    table
        .iter()
        .any(|m| m.mount_point != point && m.major_minor == mount.major_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(point: &Path, major_minor: &str) -> MountInfo {
        MountInfo {
            mount_id: 0,
            parent_id: 0,
            major_minor: major_minor.into(),
            root: "/".into(),
            mount_point: point.display().to_string(),
            options: vec!["rw".into()],
            fs_type: "fuse.cos-fuse".into(),
            source: "cos-fuse".into(),
            super_options: vec![],
        }
    }

    #[test]
    fn each_fingerprint_has_its_mount_and_the_old_one_is_still_the_volumes() {
        let dir = Path::new("/k/plugins/d/mounts");
        let a = shared_path(dir, "vol-1", "fp-a");
        let b = shared_path(dir, "vol-1", "fp-b");
        let old = legacy_path(dir, "vol-1");
        let other = shared_path(dir, "vol-2", "fp-a");
        assert_ne!(a, b);
        assert_eq!(a, shared_path(dir, "vol-1", "fp-a"));
        let pod = Path::new("/k/pods/u/volumes/kubernetes.io~csi/pv/mount");
        let table = vec![
            info(&a, "0:50"),
            info(&b, "0:51"),
            info(&old, "0:52"),
            info(&other, "0:53"),
            info(pod, "0:51"),
        ];
        let mounts = mounted(&table, dir, "vol-1");
        let paths: Vec<&Path> = mounts.iter().map(|m| m.path.as_path()).collect();
        assert_eq!(paths, [old.as_path(), b.as_path(), a.as_path()]);
        let bound = bound_to(&table, pod, &mounts).unwrap();
        assert_eq!(bound.path, b);
        assert!(in_use(&table, bound));
        assert!(!in_use(&table, &mounts[2]), "nothing shows {}", a.display());
        assert_eq!(bound_to(&table, Path::new("/k/none"), &mounts), None);
    }
}
