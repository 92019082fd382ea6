//! Multi-disk CBS volumes as Tencent's driver made them (`devicemapper: LVM` or `RAID`): the volume
//! context that tells the node how the disks are joined, and the names on the node (volume group,
//! logical volume, md array), which are those of the old `devicemapper.go` so existing volumes are
//! found again:
//!
//! - LVM: the PV name with `-` turned into `_`, plus `_vg` and `_lv`; the device is
//!   `/dev/mapper/<vg>-<lv>`; made by `pvcreate`, `vgcreate`, `lvcreate -l 100%FREE -i <devices>`.
//! - RAID: `/dev/md/<pv name>`, made by `mdadm --create --level=<level> --raid-devices=<devices>`.
//!
//! The PV name comes from the volume context (`volumeName`, which this driver's CreateVolume sets,
//! or `csi.storage.k8s.io/pv/name`) or, as the old driver took it, from the `pvc-` component of
//! the staging path. Pure functions here; running the tools is [`assemble`]'s business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::params::{DeviceMapper, MultiDisk};

pub mod assemble;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod tools;

/// Volume context keys, as the old driver's context (the StorageClass parameters) had them.
pub const CONTEXT_DEVICE_MAPPER: &str = "devicemapper";
pub const CONTEXT_DEVICES: &str = "devices";
pub const CONTEXT_LEVEL: &str = "level";
/// The PV name the node names the volume group or md array after (set by this driver).
pub const CONTEXT_VOLUME_NAME: &str = "volumeName";
/// The PV name as the external-provisioner's `--extra-create-metadata` passes it.
pub const CONTEXT_PV_NAME: &str = "csi.storage.k8s.io/pv/name";

/// How the disks are joined: what the node creates when the disks are blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Lvm,
    Raid { level: u8 },
}

/// The volume context of a new multi-disk volume named `name`.
pub fn context_of(multi: &MultiDisk, name: &str) -> HashMap<String, String> {
    let mut context = HashMap::from([
        (CONTEXT_DEVICES.to_owned(), multi.devices.to_string()),
        (CONTEXT_VOLUME_NAME.to_owned(), name.to_owned()),
    ]);
    match multi.mapper {
        DeviceMapper::Lvm => {
            context.insert(CONTEXT_DEVICE_MAPPER.to_owned(), "LVM".to_owned());
        }
        DeviceMapper::Raid { level } => {
            context.insert(CONTEXT_DEVICE_MAPPER.to_owned(), "RAID".to_owned());
            context.insert(CONTEXT_LEVEL.to_owned(), level.to_string());
        }
    }
    context
}

fn context_value<'a>(context: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The layout a multi-disk volume of `disks` disks asks for in its context. Without
/// `devicemapper` it is LVM: the only kind the old controller made, and what its node assumed.
pub fn layout_from(context: &HashMap<String, String>, disks: usize) -> Result<Layout> {
    if let Some(devices) = context_value(context, CONTEXT_DEVICES)
        && devices.parse::<usize>().ok() != Some(disks)
    {
        return Err(Error::InvalidArgument(format!(
            "volume_context devices={devices:?} does not match the {disks} disks of the volume ID"
        )));
    }
    match context_value(context, CONTEXT_DEVICE_MAPPER).map(str::to_ascii_uppercase) {
        None => Ok(Layout::Lvm),
        Some(m) if m == "LVM" => Ok(Layout::Lvm),
        Some(m) if m == "RAID" => {
            let level = context_value(context, CONTEXT_LEVEL).ok_or_else(|| {
                Error::InvalidArgument(
                    "volume_context level is required with devicemapper RAID".into(),
                )
            })?;
            let level = level
                .parse::<u8>()
                .ok()
                .filter(|l| crate::params::legacy::RAID_LEVELS.contains(l))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "volume_context level={level:?} is not a RAID level mdadm takes (0, 1, 4, 5, 6, 10)"
                    ))
                })?;
            Ok(Layout::Raid { level })
        }
        Some(other) => Err(Error::InvalidArgument(format!(
            "volume_context devicemapper={other:?} is not LVM or RAID"
        ))),
    }
}

/// True when `name` can name a volume group (after `-` becomes `_`) and an md array.
pub fn is_valid_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

/// The PV name the old driver named things after: the context's, else the first `pvc-`
/// component of the staging path. `None` when neither has one, or it cannot name a volume group.
pub fn volume_name(context: &HashMap<String, String>, staging: &Path) -> Option<String> {
    let from_context = [CONTEXT_VOLUME_NAME, CONTEXT_PV_NAME]
        .iter()
        .find_map(|key| context_value(context, key));
    let name = match from_context {
        Some(name) => name.to_owned(),
        None => staging
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .find(|c| c.starts_with("pvc-"))?
            .to_owned(),
    };
    is_valid_volume_name(&name).then_some(name)
}

/// The volume group and logical volume of the volume named `name`, as the old driver named them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmNames {
    pub vg: String,
    pub lv: String,
}

impl LvmNames {
    pub fn for_volume(name: &str) -> LvmNames {
        let base = name.replace('-', "_");
        LvmNames {
            vg: format!("{base}_vg"),
            lv: format!("{base}_lv"),
        }
    }

    /// The names of an existing volume group the old driver made (`<base>_vg` holds `<base>_lv`).
    pub fn for_group(vg: &str) -> Option<LvmNames> {
        let base = vg.strip_suffix("_vg").filter(|b| !b.is_empty())?;
        Some(LvmNames {
            vg: vg.to_owned(),
            lv: format!("{base}_lv"),
        })
    }

    /// `<dev>/mapper/<vg>-<lv>`, with device-mapper's doubling of `-` inside each name.
    pub fn device(&self, dev_root: &Path) -> PathBuf {
        dev_root.join("mapper").join(format!(
            "{}-{}",
            self.vg.replace('-', "--"),
            self.lv.replace('-', "--")
        ))
    }
}

/// `<dev>/md/<name>`: the old driver's md array of the volume named `name`.
pub fn md_device(dev_root: &Path, name: &str) -> PathBuf {
    dev_root.join("md").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names_are_the_old_drivers() {
        let names = LvmNames::for_volume("pvc-0b4f9c3e-8d5a");
        assert_eq!(names.vg, "pvc_0b4f9c3e_8d5a_vg");
        assert_eq!(names.lv, "pvc_0b4f9c3e_8d5a_lv");
        assert_eq!(
            names.device(Path::new("/dev")),
            Path::new("/dev/mapper/pvc_0b4f9c3e_8d5a_vg-pvc_0b4f9c3e_8d5a_lv")
        );
        assert_eq!(
            LvmNames::for_group("pvc_1_vg"),
            Some(LvmNames::for_volume("pvc-1"))
        );
        assert_eq!(LvmNames::for_group("other"), None);
        assert_eq!(LvmNames::for_group("_vg"), None);
        assert_eq!(
            LvmNames {
                vg: "a-b".into(),
                lv: "c".into()
            }
            .device(Path::new("/dev")),
            Path::new("/dev/mapper/a--b-c")
        );
        assert_eq!(
            md_device(Path::new("/dev"), "pvc-1"),
            Path::new("/dev/md/pvc-1")
        );
    }

    #[test]
    fn the_volume_name_comes_from_the_context_then_the_staging_path() {
        let staging =
            Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/pv/pvc-abc/globalmount");
        assert_eq!(volume_name(&ctx(&[]), staging).as_deref(), Some("pvc-abc"));
        assert_eq!(
            volume_name(&ctx(&[(CONTEXT_PV_NAME, "pvc-x")]), staging).as_deref(),
            Some("pvc-x")
        );
        assert_eq!(
            volume_name(
                &ctx(&[(CONTEXT_VOLUME_NAME, "pvc-y"), (CONTEXT_PV_NAME, "pvc-x")]),
                staging
            )
            .as_deref(),
            Some("pvc-y")
        );
        let hashed = Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/cbs/0a1b/globalmount");
        assert_eq!(volume_name(&ctx(&[]), hashed), None);
        assert_eq!(
            volume_name(&ctx(&[(CONTEXT_VOLUME_NAME, "a/b")]), hashed),
            None
        );
        assert_eq!(
            volume_name(&ctx(&[(CONTEXT_VOLUME_NAME, "-x")]), hashed),
            None
        );
    }

    #[test]
    fn layouts_from_the_context() {
        assert_eq!(layout_from(&ctx(&[]), 2).unwrap(), Layout::Lvm);
        assert_eq!(
            layout_from(&ctx(&[("devicemapper", "lvm"), ("devices", "3")]), 3).unwrap(),
            Layout::Lvm
        );
        assert_eq!(
            layout_from(
                &ctx(&[("devicemapper", "RAID"), ("level", "10"), ("devices", "4")]),
                4
            )
            .unwrap(),
            Layout::Raid { level: 10 }
        );
        for (pairs, disks, message) in [
            (
                &[("devices", "3")][..],
                2,
                "devices=\"3\" does not match the 2 disks",
            ),
            (&[("devicemapper", "RAID")][..], 2, "level is required"),
            (
                &[("devicemapper", "RAID"), ("level", "7")][..],
                2,
                "level=\"7\"",
            ),
            (
                &[("devicemapper", "CRYPT")][..],
                2,
                "devicemapper=\"CRYPT\"",
            ),
        ] {
            let err = layout_from(&ctx(pairs), disks).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
    }

    #[test]
    fn the_context_of_a_new_volume_says_how_to_assemble_it() {
        let lvm = MultiDisk {
            mapper: DeviceMapper::Lvm,
            devices: 2,
        };
        let c = context_of(&lvm, "pvc-1");
        assert_eq!(layout_from(&c, 2).unwrap(), Layout::Lvm);
        assert_eq!(volume_name(&c, Path::new("/x")).as_deref(), Some("pvc-1"));
        let raid = MultiDisk {
            mapper: DeviceMapper::Raid { level: 1 },
            devices: 2,
        };
        assert_eq!(
            layout_from(&context_of(&raid, "pvc-1"), 2).unwrap(),
            Layout::Raid { level: 1 }
        );
    }
}
