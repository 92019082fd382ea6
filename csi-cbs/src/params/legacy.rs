//! The keys Tencent's CBS driver read that need more than one value check: `diskZones` (a list of
//! zones), unprefixed `fstype`, `diskType: cbs` (let the driver pick) and the multi-disk keys
//! `devicemapper`, `devices` and `level`. Pure parsing into typed values; choosing a zone and
//! building multi-disk volumes are the controller's business, not this file's.

use super::keys::{Key, ParamError, conflict, invalid};

/// The old driver's `diskType` value meaning "let the driver pick", upper-cased.
pub const AUTO_DISK_TYPE: &str = "CBS";

/// What `diskType: cbs` becomes. The old driver asked `DescribeDiskConfigQuota` for the zone and
/// took CLOUD_BASIC where offered, else CLOUD_PREMIUM. Our cloud client has no quota call, and
/// CLOUD_BASIC is sold out in most zones, so this is always CLOUD_PREMIUM: the other type the old
/// driver picked, offered in every zone, and TKE's own default class.
pub const AUTO_DISK_TYPE_PICK: &str = "CLOUD_PREMIUM";

/// File systems the node makes (the controller's `SUPPORTED` list).
pub const FS_TYPES: [&str; 3] = ["ext4", "ext3", "xfs"];

/// Most disks one multi-disk volume may span: one node attaches them all.
pub const MAX_DEVICES: u32 = 20;

/// RAID levels `mdadm --level` takes as a number, as the old driver passed them.
pub const RAID_LEVELS: [u8; 6] = [0, 1, 4, 5, 6, 10];

/// How the disks of a multi-disk volume are joined on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceMapper {
    /// One LVM volume group and logical volume over every disk.
    Lvm,
    /// An `mdadm` array of this RAID level.
    Raid { level: u8 },
}

/// `devicemapper` with `devices` (and `level` for RAID): one volume made of several disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiDisk {
    pub mapper: DeviceMapper,
    /// Disks in the volume, at least 2.
    pub devices: u32,
}

impl MultiDisk {
    /// The keys and values that asked for this, for messages.
    pub fn describe(&self) -> String {
        match self.mapper {
            DeviceMapper::Lvm => format!("devicemapper=LVM, devices={}", self.devices),
            DeviceMapper::Raid { level } => {
                format!("devicemapper=RAID, devices={}, level={level}", self.devices)
            }
        }
    }
}

/// `diskZones`: zone names or numeric IDs separated by commas, blanks and repeats dropped.
pub fn parse_zones(value: &str) -> Result<Vec<String>, ParamError> {
    let mut zones: Vec<String> = Vec::new();
    for zone in value.split(',').map(str::trim).filter(|z| !z.is_empty()) {
        if !zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                Key::Zones,
                value,
                format!("{zone:?} is not a zone name or numeric zone ID"),
            ));
        }
        if !zones.iter().any(|z| z == zone) {
            zones.push(zone.to_owned());
        }
    }
    if zones.is_empty() {
        return Err(invalid(
            Key::Zones,
            value,
            "expected zones separated by commas, e.g. ap-shanghai-1,ap-shanghai-2",
        ));
    }
    Ok(zones)
}

/// The file system from unprefixed `fstype` and Kubernetes's `csi.storage.k8s.io/fstype`, which
/// mean the same; both given must agree.
pub fn fs_type(
    unprefixed: Option<&str>,
    prefixed: Option<&str>,
) -> Result<Option<String>, ParamError> {
    let unprefixed = unprefixed.map(str::to_ascii_lowercase);
    if let Some(fs) = &unprefixed
        && !FS_TYPES.contains(&fs.as_str())
    {
        return Err(invalid(
            Key::FsType,
            fs,
            format!("expected one of {}", FS_TYPES.join(", ")),
        ));
    }
    match (unprefixed, prefixed.map(str::to_ascii_lowercase)) {
        (Some(a), Some(b)) if a != b => Err(conflict(
            (Key::FsType, &a),
            ("csi.storage.k8s.io/fstype", &b),
            "both name the volume's file system; give one, or the same value",
        )),
        (Some(fs), _) | (None, Some(fs)) => Ok(Some(fs)),
        (None, None) => Ok(None),
    }
}

/// `devicemapper` (`LVM` or `RAID`, any case), `devices` and `level`, checked together. Without
/// `devicemapper` the volume is one disk: `devices` may only say 1 and `level` is refused.
pub fn multi_disk(
    devicemapper: Option<&str>,
    devices: Option<&str>,
    level: Option<&str>,
) -> Result<Option<MultiDisk>, ParamError> {
    let count = match devices {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(Key::Devices, v, "expected a disk count"))?,
        ),
    };
    let Some(mapper) = devicemapper else {
        if let (Some(v), Some(n)) = (devices, count)
            && n != 1
        {
            return Err(invalid(
                Key::Devices,
                v,
                "more than one disk needs devicemapper LVM or RAID",
            ));
        }
        if let Some(v) = level {
            return Err(invalid(
                Key::Level,
                v,
                "applies only with devicemapper RAID",
            ));
        }
        return Ok(None);
    };
    let upper = mapper.to_ascii_uppercase();
    if upper != "LVM" && upper != "RAID" {
        return Err(invalid(Key::DeviceMapper, mapper, "expected LVM or RAID"));
    }
    let (Some(v), Some(devices)) = (devices, count) else {
        return Err(invalid(
            Key::Devices,
            "",
            format!("required with devicemapper {upper}: the number of disks, 2 to {MAX_DEVICES}"),
        ));
    };
    if !(2..=MAX_DEVICES).contains(&devices) {
        return Err(invalid(
            Key::Devices,
            v,
            format!("devicemapper {upper} needs 2 to {MAX_DEVICES} disks"),
        ));
    }
    let mapper = if upper == "LVM" {
        if let Some(v) = level {
            return Err(invalid(
                Key::Level,
                v,
                "applies only with devicemapper RAID, not LVM",
            ));
        }
        DeviceMapper::Lvm
    } else {
        let levels = RAID_LEVELS.map(|l| l.to_string()).join(", ");
        let Some(v) = level else {
            return Err(invalid(
                Key::Level,
                "",
                format!("required with devicemapper RAID: one of {levels}"),
            ));
        };
        let level = v
            .parse::<u8>()
            .ok()
            .filter(|l| RAID_LEVELS.contains(l))
            .ok_or_else(|| {
                invalid(
                    Key::Level,
                    v,
                    format!("expected a RAID level: one of {levels}"),
                )
            })?;
        if level == 6 && devices < 4 {
            return Err(conflict(
                (Key::Level, v),
                (Key::Devices.name(), &devices.to_string()),
                "RAID 6 needs at least 4 disks",
            ));
        }
        DeviceMapper::Raid { level }
    };
    Ok(Some(MultiDisk { mapper, devices }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_lists() {
        assert_eq!(
            parse_zones(" ap-shanghai-1, ap-shanghai-2,,ap-shanghai-1 ").unwrap(),
            ["ap-shanghai-1", "ap-shanghai-2"]
        );
        assert_eq!(parse_zones("200001").unwrap(), ["200001"]);
        for bad in ["", " , ", "ap shanghai 1", "ap-shanghai-1;ap-shanghai-2"] {
            let err = parse_zones(bad).unwrap_err().to_string();
            assert!(err.contains("parameter diskZones="), "{bad:?}: {err}");
        }
    }

    #[test]
    fn fs_types_agree_or_conflict() {
        assert_eq!(fs_type(Some("XFS"), None).unwrap().as_deref(), Some("xfs"));
        assert_eq!(
            fs_type(None, Some("ext4")).unwrap().as_deref(),
            Some("ext4")
        );
        assert_eq!(
            fs_type(Some("ext4"), Some("ext4")).unwrap().as_deref(),
            Some("ext4")
        );
        assert_eq!(fs_type(None, None).unwrap(), None);
        let err = fs_type(Some("ext4"), Some("xfs")).unwrap_err().to_string();
        assert!(
            err.contains("fstype=\"ext4\"") && err.contains("csi.storage.k8s.io/fstype=\"xfs\""),
            "{err}"
        );
        let err = fs_type(Some("btrfs"), None).unwrap_err().to_string();
        assert!(
            err.contains("parameter fstype=\"btrfs\" is invalid"),
            "{err}"
        );
    }

    #[test]
    fn multi_disk_keys() {
        type Case<'a> = (
            (Option<&'a str>, Option<&'a str>, Option<&'a str>),
            Result<Option<MultiDisk>, &'a str>,
        );
        let lvm = |devices| {
            Ok(Some(MultiDisk {
                mapper: DeviceMapper::Lvm,
                devices,
            }))
        };
        let raid = |level, devices| {
            Ok(Some(MultiDisk {
                mapper: DeviceMapper::Raid { level },
                devices,
            }))
        };
        let table: Vec<Case> = vec![
            ((None, None, None), Ok(None)),
            ((None, Some("1"), None), Ok(None)),
            ((Some("LVM"), Some("2"), None), lvm(2)),
            ((Some("lvm"), Some("20"), None), lvm(20)),
            ((Some("Raid"), Some("3"), Some("5")), raid(5, 3)),
            ((Some("RAID"), Some("2"), Some("0")), raid(0, 2)),
            ((Some("RAID"), Some("4"), Some("6")), raid(6, 4)),
            (
                (None, Some("2"), None),
                Err("parameter devices=\"2\" is invalid: more than one"),
            ),
            (
                (None, None, Some("1")),
                Err("parameter level=\"1\" is invalid: applies only"),
            ),
            (
                (Some("ZFS"), Some("2"), None),
                Err("parameter devicemapper=\"ZFS\" is invalid"),
            ),
            (
                (Some("LVM"), None, None),
                Err("parameter devices=\"\" is invalid: required"),
            ),
            (
                (Some("LVM"), Some("1"), None),
                Err("parameter devices=\"1\" is invalid: devicemapper LVM needs 2"),
            ),
            ((Some("LVM"), Some("21"), None), Err("needs 2 to 20 disks")),
            (
                (Some("LVM"), Some("two"), None),
                Err("parameter devices=\"two\" is invalid: expected a disk count"),
            ),
            (
                (Some("LVM"), Some("0"), None),
                Err("parameter devices=\"0\""),
            ),
            (
                (Some("LVM"), Some("2"), Some("1")),
                Err(
                    "parameter level=\"1\" is invalid: applies only with devicemapper RAID, not LVM",
                ),
            ),
            (
                (Some("RAID"), Some("2"), None),
                Err("parameter level=\"\" is invalid: required"),
            ),
            (
                (Some("RAID"), Some("2"), Some("3")),
                Err("parameter level=\"3\" is invalid: expected a RAID level"),
            ),
            (
                (Some("RAID"), Some("2"), Some("raid1")),
                Err("parameter level=\"raid1\""),
            ),
            (
                (Some("RAID"), Some("3"), Some("6")),
                Err("level=\"6\" and devices=\"3\" conflict"),
            ),
        ];
        for ((mapper, devices, level), expected) in table {
            let got = multi_disk(mapper, devices, level).map_err(|e| e.to_string());
            match (&got, &expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, e, "{mapper:?} {devices:?} {level:?}"),
                (Err(g), Err(e)) => assert!(g.contains(e), "{mapper:?} {devices:?} {level:?}: {g}"),
                _ => panic!("{mapper:?} {devices:?} {level:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
