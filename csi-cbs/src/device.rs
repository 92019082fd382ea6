//! Finding the block device of a disk on this node. The disk ID is the device's serial: the
//! `<device-dir>/virtio-<diskId>` link is only a hint (udev links go missing or stale), so the
//! serial under `<sysfs-root>/block/<dev>/serial` decides. The node never creates links.

use std::path::{Path, PathBuf};

/// Where to look: defaults `/dev/disk/by-id`, `/sys`, `/dev`.
#[derive(Debug, Clone)]
pub struct DeviceRoots {
    pub by_id_dir: PathBuf,
    pub sysfs_root: PathBuf,
    pub dev_root: PathBuf,
}

impl Default for DeviceRoots {
    fn default() -> Self {
        DeviceRoots {
            by_id_dir: PathBuf::from("/dev/disk/by-id"),
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
        }
    }
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub device: PathBuf,
    /// The by-id link existed but pointed at a device with another serial.
    pub stale_link: bool,
}

fn serial_of(roots: &DeviceRoots, name: &str) -> Option<String> {
    std::fs::read_to_string(roots.sysfs_root.join("block").join(name).join("serial"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The device whose serial is `serial`, if this node has one.
pub fn device_for_serial(roots: &DeviceRoots, serial: &str) -> Option<Found> {
    let mut stale_link = false;
    let link = roots.by_id_dir.join(format!("virtio-{serial}"));
    if let Ok(target) = std::fs::canonicalize(&link)
        && let Some(name) = target.file_name().and_then(|n| n.to_str())
    {
        if serial_of(roots, name).as_deref() == Some(serial) {
            return Some(Found {
                device: roots.dev_root.join(name),
                stale_link: false,
            });
        }
        stale_link = true;
    }
    let entries = std::fs::read_dir(roots.sysfs_root.join("block")).ok()?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
        .into_iter()
        .find(|name| serial_of(roots, name).as_deref() == Some(serial))
        .map(|name| Found {
            device: roots.dev_root.join(name),
            stale_link,
        })
}

/// True when `device` is still a block device on this node with `serial`.
pub fn device_has_serial(roots: &DeviceRoots, device: &Path, serial: &str) -> bool {
    device
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| serial_of(roots, name).as_deref() == Some(serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path) -> DeviceRoots {
        let roots = DeviceRoots {
            by_id_dir: dir.join("by-id"),
            sysfs_root: dir.join("sys"),
            dev_root: dir.join("dev"),
        };
        std::fs::create_dir_all(&roots.by_id_dir).unwrap();
        std::fs::create_dir_all(&roots.dev_root).unwrap();
        roots
    }

    fn add_device(roots: &DeviceRoots, name: &str, serial: &str) {
        let dir = roots.sysfs_root.join("block").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("serial"), format!("{serial}\n")).unwrap();
        std::fs::write(roots.dev_root.join(name), "").unwrap();
    }

    #[test]
    fn link_hint_is_used_when_its_serial_matches() {
        let dir = tempfile::tempdir().unwrap();
        let roots = roots(dir.path());
        add_device(&roots, "vdb", "disk-aaa");
        std::os::unix::fs::symlink(
            roots.dev_root.join("vdb"),
            roots.by_id_dir.join("virtio-disk-aaa"),
        )
        .unwrap();
        let found = device_for_serial(&roots, "disk-aaa").unwrap();
        assert_eq!(
            found,
            Found {
                device: roots.dev_root.join("vdb"),
                stale_link: false
            }
        );
    }

    #[test]
    fn stale_or_missing_links_fall_back_to_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        let roots = roots(dir.path());
        add_device(&roots, "vdb", "disk-aaa");
        add_device(&roots, "vdc", "disk-bbb");
        // The link for disk-bbb points at disk-aaa's device: stale.
        std::os::unix::fs::symlink(
            roots.dev_root.join("vdb"),
            roots.by_id_dir.join("virtio-disk-bbb"),
        )
        .unwrap();
        let found = device_for_serial(&roots, "disk-bbb").unwrap();
        assert_eq!(
            found,
            Found {
                device: roots.dev_root.join("vdc"),
                stale_link: true
            }
        );
        // No link at all.
        assert_eq!(
            device_for_serial(&roots, "disk-aaa").unwrap().device,
            roots.dev_root.join("vdb")
        );
        assert!(device_for_serial(&roots, "disk-ccc").is_none());
        assert!(device_has_serial(
            &roots,
            &roots.dev_root.join("vdc"),
            "disk-bbb"
        ));
        assert!(!device_has_serial(
            &roots,
            &roots.dev_root.join("vdc"),
            "disk-aaa"
        ));
    }
}
