//! StorageClass parameters and capacity: pure functions from a CSI request to typed arguments.
//!
//! Keys are case-insensitive and accept the old driver's aliases (named in [`keys`]); the old
//! driver's keys that need more than a value check are parsed in [`legacy`]. A key no CBS driver
//! ever knew is refused with its name, or under [`UnknownParameters::Warn`] kept aside for the
//! caller to log. Sizes are rounded *up* to the disk type's step and minimum (the old driver
//! rounded down and gave a `100G` claim a 93 GiB disk). Nothing here calls the cloud.

use std::collections::HashMap;

use csi_common::cli::UnknownParameters;
use tcloud::cbs::Tag;

mod keys;
pub mod legacy;

pub use keys::ParamError;
use keys::{Key, conflict, invalid};
pub use legacy::{DeviceMapper, MultiDisk};

pub const GIB: u64 = 1 << 30;
/// CBS sizes are multiples of this many GiB.
pub const SIZE_STEP_GIB: u64 = 10;
pub const MAX_SIZE_GIB: u64 = 32_000;
pub const DEFAULT_DISK_TYPE: &str = "CLOUD_PREMIUM";
pub const MAX_THROUGHPUT_MBPS: u64 = 650;

/// PV/PVC names the external-provisioner adds with `--extra-create-metadata`; they become tags.
pub const PVC_NAME_KEY: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE_KEY: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PV_NAME_KEY: &str = "csi.storage.k8s.io/pv/name";
pub const TAG_PVC_NAME: &str = "kubernetes.io/created-for/pvc/name";
pub const TAG_PVC_NAMESPACE: &str = "kubernetes.io/created-for/pvc/namespace";
pub const TAG_PV_NAME: &str = "kubernetes.io/created-for/pv/name";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("required_bytes {required} exceeds limit_bytes {limit}")]
    RequiredOverLimit { required: u64, limit: u64 },
    #[error(
        "the smallest {disk_type} disk that holds {required} bytes is {rounded_gib} GiB, above limit_bytes {limit}"
    )]
    LimitTooSmall {
        disk_type: String,
        required: u64,
        rounded_gib: u64,
        limit: u64,
    },
    #[error("{requested_gib} GiB exceeds the largest CBS disk ({MAX_SIZE_GIB} GiB)")]
    TooLarge { requested_gib: u64 },
}

/// Everything a StorageClass can say about a new disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CbsParams {
    /// A CBS type; `diskType: cbs` (the old "let the driver pick") becomes
    /// [`legacy::AUTO_DISK_TYPE_PICK`].
    pub disk_type: String,
    /// `diskZone`: the one zone the disk goes to.
    pub zone: Option<String>,
    /// `diskZones`: the zones the disk may go to; the controller picks one.
    pub zones: Vec<String>,
    /// `POSTPAID_BY_HOUR` (default), `PREPAID`, or `CDCPAID` (whenever `cdcid` is given).
    pub charge_type: String,
    /// Months, only for `PREPAID` (1 when the class names none).
    pub prepaid_period: Option<u32>,
    pub renew_flag: Option<String>,
    pub project_id: Option<i64>,
    pub encrypt: bool,
    pub tags: Vec<Tag>,
    pub throughput_mbps: Option<u64>,
    pub cdc_id: Option<String>,
    pub auto_snapshot_policy: Option<String>,
    /// `fstype` or `csi.storage.k8s.io/fstype`, lower-cased.
    pub fs_type: Option<String>,
    /// `devicemapper` with `devices` (and `level`): a volume of several disks.
    pub multi_disk: Option<MultiDisk>,
    /// Keys no CBS driver knows, ignored under [`UnknownParameters::Warn`] (sorted).
    pub ignored: Vec<String>,
}

/// Disk types CBS offers, with their minimum size in GiB.
pub fn min_size_gib(disk_type: &str) -> Option<u64> {
    match disk_type {
        "CLOUD_BASIC" | "CLOUD_PREMIUM" | "CLOUD_BSSD" => Some(10),
        "CLOUD_SSD" | "CLOUD_HSSD" | "CLOUD_TSSD" => Some(20),
        _ => None,
    }
}

/// `k:v,k:v` tags; keys unique and non-empty.
pub fn parse_tags(key: &'static str, value: &str) -> Result<Vec<Tag>, ParamError> {
    let mut tags: Vec<Tag> = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let fail = |reason: &str| ParamError::Invalid {
            key,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| fail("expected key:value pairs separated by commas"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(fail("a tag key is empty"));
        }
        if tags.iter().any(|t| t.key == k) {
            return Err(fail("a tag key repeats"));
        }
        tags.push(Tag {
            key: k.to_owned(),
            value: v.to_owned(),
        });
    }
    Ok(tags)
}

/// Prepaid terms when a class says `PREPAID` and no period, as the old driver did.
pub const DEFAULT_PREPAID_MONTHS: u32 = 1;

impl CbsParams {
    /// Parses CreateVolume parameters, refusing unknown keys. See [`CbsParams::parse_with`].
    pub fn parse(params: &HashMap<String, String>) -> Result<CbsParams, ParamError> {
        CbsParams::parse_with(params, UnknownParameters::Refuse)
    }

    /// Parses CreateVolume parameters. Keys under `csi.storage.k8s.io/` belong to Kubernetes: the
    /// PV/PVC names become tags, `fstype` is read, the rest are ignored. A key no CBS driver knew
    /// is refused, or with `unknown` [`UnknownParameters::Warn`] listed in `ignored`.
    pub fn parse_with(
        params: &HashMap<String, String>,
        unknown: UnknownParameters,
    ) -> Result<CbsParams, ParamError> {
        let mut seen: HashMap<Key, (String, String)> = HashMap::new();
        let mut k8s_tags = Vec::new();
        let mut k8s_fs_type = None;
        let mut ignored = Vec::new();
        // Sorted, so errors about duplicates are deterministic.
        let mut entries: Vec<_> = params.iter().collect();
        entries.sort();
        for (raw_key, value) in entries {
            if let Some(rest) = raw_key.strip_prefix("csi.storage.k8s.io/") {
                let tag = match rest {
                    "pvc/name" => TAG_PVC_NAME,
                    "pvc/namespace" => TAG_PVC_NAMESPACE,
                    "pv/name" => TAG_PV_NAME,
                    "fstype" => {
                        k8s_fs_type = Some(value.trim()).filter(|v| !v.is_empty());
                        continue;
                    }
                    _ => continue,
                };
                k8s_tags.push(Tag {
                    key: tag.to_owned(),
                    value: value.clone(),
                });
                continue;
            }
            let Some(key) = Key::parse(&raw_key.to_ascii_lowercase()) else {
                match unknown {
                    UnknownParameters::Refuse => return Err(ParamError::Unknown(raw_key.clone())),
                    UnknownParameters::Warn => {
                        ignored.push(raw_key.clone());
                        continue;
                    }
                }
            };
            if let Some((first, _)) = seen.get(&key) {
                return Err(ParamError::Duplicate {
                    key: key.name(),
                    first: first.clone(),
                    second: raw_key.clone(),
                });
            }
            seen.insert(key, (raw_key.clone(), value.trim().to_owned()));
        }
        let get = |key: Key| {
            seen.get(&key)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };

        let mut disk_type = get(Key::DiskType)
            .unwrap_or(DEFAULT_DISK_TYPE)
            .to_ascii_uppercase();
        if disk_type == legacy::AUTO_DISK_TYPE {
            disk_type = legacy::AUTO_DISK_TYPE_PICK.to_owned();
        }
        if min_size_gib(&disk_type).is_none() {
            return Err(invalid(
                Key::DiskType,
                &disk_type,
                "expected CLOUD_PREMIUM, CLOUD_SSD, CLOUD_HSSD, CLOUD_BSSD, CLOUD_TSSD, CLOUD_BASIC or cbs (the driver picks)",
            ));
        }
        let zone = get(Key::Zone).map(str::to_owned);
        let zones = match get(Key::Zones) {
            None => Vec::new(),
            Some(v) => legacy::parse_zones(v)?,
        };
        if let (Some(one), Some(list)) = (&zone, get(Key::Zones)) {
            return Err(conflict(
                (Key::Zone, one),
                (Key::Zones.name(), list),
                "give one zone or a list of zones, not both",
            ));
        }
        let cdc_id = get(Key::CdcId).map(str::to_owned);
        let charge_type = charge_type(get(Key::ChargeType), cdc_id.as_deref())?;
        let prepaid_period = match get(Key::PrepaidPeriod) {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(p) if (1..=12).contains(&p) || p == 24 || p == 36 => Some(p),
                _ => {
                    return Err(invalid(
                        Key::PrepaidPeriod,
                        v,
                        "expected months: 1-12, 24 or 36",
                    ));
                }
            },
        };
        // Prepaid terms only go with PREPAID; elsewhere the old driver ignored them too.
        let prepaid_period =
            (charge_type == "PREPAID").then(|| prepaid_period.unwrap_or(DEFAULT_PREPAID_MONTHS));
        let renew_flag = match get(Key::RenewFlag) {
            None => None,
            Some(v) => {
                let upper = v.to_ascii_uppercase();
                match upper.as_str() {
                    "NOTIFY_AND_AUTO_RENEW"
                    | "NOTIFY_AND_MANUAL_RENEW"
                    | "DISABLE_NOTIFY_AND_MANUAL_RENEW" => Some(upper),
                    _ => {
                        return Err(invalid(
                            Key::RenewFlag,
                            v,
                            "expected NOTIFY_AND_AUTO_RENEW, NOTIFY_AND_MANUAL_RENEW or DISABLE_NOTIFY_AND_MANUAL_RENEW",
                        ));
                    }
                }
            }
        };
        let project_id = match get(Key::Project) {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                invalid(
                    Key::Project,
                    v,
                    "expected a project ID (a non-negative integer)",
                )
            })?),
        };
        let encrypt = match get(Key::Encrypt) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("ENCRYPT") || v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(invalid(Key::Encrypt, v, "expected ENCRYPT")),
        };
        let mut tags = match get(Key::Tags) {
            None => Vec::new(),
            Some(v) => parse_tags(Key::Tags.name(), v)?,
        };
        for tag in k8s_tags {
            if !tags.iter().any(|t| t.key == tag.key) {
                tags.push(tag);
            }
        }
        let throughput_mbps = match get(Key::Throughput) {
            None => None,
            Some(v) => {
                let mbps = parse_throughput(v)?;
                if disk_type != "CLOUD_HSSD" && disk_type != "CLOUD_TSSD" && mbps > 0 {
                    return Err(invalid(
                        Key::Throughput,
                        v,
                        "extra throughput needs diskType CLOUD_HSSD or CLOUD_TSSD",
                    ));
                }
                Some(mbps).filter(|t| *t > 0)
            }
        };
        Ok(CbsParams {
            disk_type,
            zone,
            zones,
            charge_type,
            prepaid_period,
            renew_flag,
            project_id,
            encrypt,
            tags,
            throughput_mbps,
            cdc_id,
            auto_snapshot_policy: get(Key::AutoSnapshotPolicy).map(str::to_owned),
            fs_type: legacy::fs_type(get(Key::FsType), k8s_fs_type)?,
            multi_disk: legacy::multi_disk(
                get(Key::DeviceMapper),
                get(Key::Devices),
                get(Key::Level),
            )?,
            ignored,
        })
    }
}

/// The charge type: `cdcid` makes it `CDCPAID` (as the old driver did, over `POSTPAID_BY_HOUR`);
/// `CDCPAID` needs `cdcid`, and a prepaid disk cannot be in a CDC.
fn charge_type(given: Option<&str>, cdc_id: Option<&str>) -> Result<String, ParamError> {
    let upper = given.map(str::to_ascii_uppercase);
    match (upper.as_deref(), cdc_id) {
        (None | Some("POSTPAID_BY_HOUR" | "CDCPAID"), Some(_)) => Ok("CDCPAID".to_owned()),
        (None, None) => Ok("POSTPAID_BY_HOUR".to_owned()),
        (Some(c @ ("POSTPAID_BY_HOUR" | "PREPAID")), None) => Ok(c.to_owned()),
        (Some("PREPAID"), Some(cdc)) => Err(conflict(
            (Key::ChargeType, "PREPAID"),
            (Key::CdcId.name(), cdc),
            "a disk in a CDC is charged CDCPAID; drop one of them",
        )),
        (Some("CDCPAID"), None) => Err(invalid(
            Key::ChargeType,
            "CDCPAID",
            "needs cdcid, the CDC the disk goes to",
        )),
        (Some(other), _) => Err(invalid(
            Key::ChargeType,
            other,
            "expected POSTPAID_BY_HOUR, PREPAID or CDCPAID (with cdcid)",
        )),
    }
}

/// Extra throughput in MB/s, at most [`MAX_THROUGHPUT_MBPS`].
fn parse_throughput(value: &str) -> Result<u64, ParamError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|t| *t <= MAX_THROUGHPUT_MBPS)
        .ok_or_else(|| {
            invalid(
                Key::Throughput,
                value,
                format!("expected MB/s from 0 to {MAX_THROUGHPUT_MBPS}"),
            )
        })
}

/// The parameters of a VolumeAttributesClass (`mutable_parameters`): what ModifyVolume changes in
/// place, and what CreateVolume applies over the StorageClass's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MutableParams {
    pub disk_type: Option<String>,
    pub throughput_mbps: Option<u64>,
}

impl MutableParams {
    /// Keys are case-insensitive, as the StorageClass's are; anything else cannot change in place.
    pub fn parse(params: &HashMap<String, String>) -> Result<MutableParams, ParamError> {
        let mut mutable = MutableParams::default();
        for (key, value) in params {
            match key.to_ascii_lowercase().as_str() {
                "disktype" | "type" => {
                    let upper = value.trim().to_ascii_uppercase();
                    if min_size_gib(&upper).is_none() {
                        return Err(invalid(
                            Key::DiskType,
                            value,
                            "not a CBS disk type (mutable parameter)",
                        ));
                    }
                    mutable.disk_type = Some(upper);
                }
                "throughputperformance" => {
                    mutable.throughput_mbps = Some(parse_throughput(value.trim())?);
                }
                _ => return Err(ParamError::NotMutable(key.clone())),
            }
        }
        Ok(mutable)
    }

    /// The StorageClass's parameters with these applied on top, checked together.
    pub fn apply(&self, params: &mut CbsParams) -> Result<(), ParamError> {
        if let Some(disk_type) = &self.disk_type {
            params.disk_type = disk_type.clone();
        }
        if let Some(mbps) = self.throughput_mbps {
            params.throughput_mbps = Some(mbps).filter(|t| *t > 0);
        }
        if params.throughput_mbps.is_some()
            && params.disk_type != "CLOUD_HSSD"
            && params.disk_type != "CLOUD_TSSD"
        {
            return Err(invalid(
                Key::Throughput,
                &params.throughput_mbps.unwrap_or_default().to_string(),
                "extra throughput needs diskType CLOUD_HSSD or CLOUD_TSSD",
            ));
        }
        Ok(())
    }
}

/// The disk size in GiB for a capacity range: at least `required`, rounded up to the step and the
/// type's minimum, never above `limit` (0 means no limit) or the CBS maximum.
pub fn size_gib(disk_type: &str, required_bytes: u64, limit_bytes: u64) -> Result<u64, SizeError> {
    let minimum = min_size_gib(disk_type).unwrap_or(SIZE_STEP_GIB);
    if limit_bytes > 0 && required_bytes > limit_bytes {
        return Err(SizeError::RequiredOverLimit {
            required: required_bytes,
            limit: limit_bytes,
        });
    }
    let gib = required_bytes.div_ceil(GIB);
    let rounded = gib
        .div_ceil(SIZE_STEP_GIB)
        .saturating_mul(SIZE_STEP_GIB)
        .max(minimum);
    if rounded > MAX_SIZE_GIB {
        return Err(SizeError::TooLarge {
            requested_gib: rounded,
        });
    }
    if limit_bytes > 0 && rounded.saturating_mul(GIB) > limit_bytes {
        return Err(SizeError::LimitTooSmall {
            disk_type: disk_type.to_owned(),
            required: required_bytes,
            rounded_gib: rounded,
            limit: limit_bytes,
        });
    }
    Ok(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<CbsParams, ParamError> {
        CbsParams::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults() {
        let p = parse(&[]).unwrap();
        assert_eq!(p.disk_type, "CLOUD_PREMIUM");
        assert_eq!(p.charge_type, "POSTPAID_BY_HOUR");
        assert_eq!(p.zone, None);
        assert!(!p.encrypt && p.tags.is_empty());
    }

    #[test]
    fn documented_keys_aliases_and_case() {
        let p = parse(&[
            ("DiskType", "cloud_ssd"),
            ("ZONE", "ap-guangzhou-3"),
            ("paymode", "PREPAID"),
            ("diskChargeTypePrepaidPeriod", "24"),
            ("renewflag", "notify_and_auto_renew"),
            ("project", "1001"),
            ("encrypt", "ENCRYPT"),
            ("disktags", "team:storage, env:prod"),
            ("aspid", "asp-123"),
            ("FSType", "XFS"),
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pvc/namespace", "default"),
            ("csi.storage.k8s.io/pv/name", "pvc-1"),
            ("csi.storage.k8s.io/fstype", "xfs"),
        ])
        .unwrap();
        assert_eq!(p.disk_type, "CLOUD_SSD");
        assert_eq!(p.zone.as_deref(), Some("ap-guangzhou-3"));
        assert_eq!(
            (p.charge_type.as_str(), p.prepaid_period),
            ("PREPAID", Some(24))
        );
        assert_eq!(p.renew_flag.as_deref(), Some("NOTIFY_AND_AUTO_RENEW"));
        assert_eq!(p.project_id, Some(1001));
        assert!(p.encrypt);
        let keys: Vec<_> = p
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("team", "storage"),
                ("env", "prod"),
                (TAG_PV_NAME, "pvc-1"),
                (TAG_PVC_NAME, "data"),
                (TAG_PVC_NAMESPACE, "default"),
            ]
        );
        assert_eq!(p.cdc_id, None);
        assert_eq!(p.auto_snapshot_policy.as_deref(), Some("asp-123"));
        assert_eq!(p.fs_type.as_deref(), Some("xfs"));
        assert_eq!((p.multi_disk, p.zones.len()), (None, 0));

        let p = parse(&[("Type", "CBS"), ("diskZones", "ap-shanghai-1,200002")]).unwrap();
        assert_eq!(p.disk_type, legacy::AUTO_DISK_TYPE_PICK);
        assert_eq!(p.zones, ["ap-shanghai-1", "200002"]);
        let p = parse(&[("cdcid", "cluster-1")]).unwrap();
        assert_eq!(
            (p.charge_type.as_str(), p.cdc_id.as_deref()),
            ("CDCPAID", Some("cluster-1"))
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (
                &[("diskSize", "10")],
                "unknown StorageClass parameter \"diskSize\"",
            ),
            (
                &[("diskType", "FLOPPY")],
                "parameter diskType=\"FLOPPY\" is invalid",
            ),
            (
                &[("diskType", "CLOUD_SSD"), ("type", "CLOUD_SSD")],
                "parameter diskType is given twice",
            ),
            (
                &[("diskChargeType", "FREE")],
                "parameter diskChargeType=\"FREE\" is invalid",
            ),
            (
                &[("diskChargeType", "PREPAID"), ("cdcid", "cluster-1")],
                "parameters diskChargeType=\"PREPAID\" and cdcid=\"cluster-1\" conflict",
            ),
            (
                &[("diskChargeType", "CDCPAID")],
                "parameter diskChargeType=\"CDCPAID\" is invalid: needs cdcid",
            ),
            (
                &[
                    ("diskZone", "ap-shanghai-1"),
                    ("diskZones", "ap-shanghai-2"),
                ],
                "parameters diskZone=\"ap-shanghai-1\" and diskZones=\"ap-shanghai-2\" conflict",
            ),
            (
                &[("diskZones", ",")],
                "parameter diskZones=\",\" is invalid",
            ),
            (
                &[("fstype", "ext4"), ("csi.storage.k8s.io/fstype", "xfs")],
                "parameters fstype=\"ext4\" and csi.storage.k8s.io/fstype=\"xfs\" conflict",
            ),
            (
                &[("devicemapper", "LVM")],
                "parameter devices=\"\" is invalid",
            ),
            (&[("diskChargeTypePrepaidPeriod", "13")], "expected months"),
            (
                &[("renewflag", "SOMETIMES")],
                "parameter diskChargePrepaidRenewFlag",
            ),
            (&[("project", "-1")], "expected a project ID"),
            (&[("encrypt", "yes")], "expected ENCRYPT"),
            (&[("disktags", "novalue")], "expected key:value"),
            (&[("disktags", "a:1,a:2")], "a tag key repeats"),
            (
                &[("throughputperformance", "100")],
                "needs diskType CLOUD_HSSD",
            ),
            (
                &[("diskType", "CLOUD_HSSD"), ("throughputperformance", "651")],
                "expected MB/s",
            ),
        ];
        for (pairs, expected) in table {
            let err = parse(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
        let p = parse(&[("diskType", "CLOUD_HSSD"), ("throughputperformance", "100")]).unwrap();
        assert_eq!(p.throughput_mbps, Some(100));
    }

    #[test]
    fn unknown_keys_are_refused_or_set_aside_under_warn() {
        let params: HashMap<String, String> =
            [("diskSize", "10"), ("Zone", "ap-shanghai-1"), ("bogus", "")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into();
        let err = CbsParams::parse(&params).unwrap_err();
        assert_eq!(
            err,
            ParamError::Unknown("bogus".into()),
            "the first unknown key, sorted"
        );
        let p = CbsParams::parse_with(&params, UnknownParameters::Warn).unwrap();
        assert_eq!(p.ignored, ["bogus", "diskSize"]);
        assert_eq!(p.zone.as_deref(), Some("ap-shanghai-1"));
        // Warn never loosens a known key's value.
        let bad: HashMap<String, String> = [("diskType".to_owned(), "FLOPPY".to_owned())].into();
        assert!(CbsParams::parse_with(&bad, UnknownParameters::Warn).is_err());
    }

    #[test]
    fn sizes_round_up_to_step_and_minimum() {
        let table = [
            ("CLOUD_PREMIUM", 0, 0, Ok(10)),
            ("CLOUD_SSD", 0, 0, Ok(20)),
            ("CLOUD_PREMIUM", 1, 0, Ok(10)),
            ("CLOUD_PREMIUM", 100 * GIB, 0, Ok(100)),
            // The old driver's bug: "100G" (100e9 bytes, 93.1 GiB) must get 100 GiB, not 90.
            ("CLOUD_PREMIUM", 100_000_000_000, 0, Ok(100)),
            ("CLOUD_PREMIUM", 101 * GIB, 0, Ok(110)),
            ("CLOUD_SSD", 5 * GIB, 20 * GIB, Ok(20)),
            (
                "CLOUD_PREMIUM",
                15 * GIB,
                15 * GIB,
                Err("above limit_bytes"),
            ),
            ("CLOUD_SSD", 5 * GIB, 10 * GIB, Err("above limit_bytes")),
            (
                "CLOUD_PREMIUM",
                20 * GIB,
                10 * GIB,
                Err("exceeds limit_bytes"),
            ),
            ("CLOUD_PREMIUM", 32_001 * GIB, 0, Err("exceeds the largest")),
            ("CLOUD_PREMIUM", u64::MAX, 0, Err("exceeds the largest")),
        ];
        for (disk_type, required, limit, expected) in table {
            let got = size_gib(disk_type, required, limit).map_err(|e| e.to_string());
            match (got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, e, "{disk_type} {required} {limit}"),
                (Err(g), Err(e)) => assert!(g.contains(e), "{disk_type} {required} {limit}: {g}"),
                (got, expected) => {
                    panic!("{disk_type} {required} {limit}: got {got:?}, expected {expected:?}")
                }
            }
        }
    }

    proptest! {
        #[test]
        fn rounded_sizes_hold_the_request_and_respect_every_bound(
            required in 0u64..40_000 * GIB,
            limit in prop_oneof![Just(0u64), 0u64..40_000 * GIB],
            ssd in any::<bool>(),
        ) {
            let disk_type = if ssd { "CLOUD_SSD" } else { "CLOUD_PREMIUM" };
            if let Ok(gib) = size_gib(disk_type, required, limit) {
                prop_assert!(gib * GIB >= required);
                prop_assert_eq!(gib % SIZE_STEP_GIB, 0);
                prop_assert!(gib >= min_size_gib(disk_type).unwrap());
                prop_assert!(gib <= MAX_SIZE_GIB);
                prop_assert!(limit == 0 || gib * GIB <= limit);
                // Never more than one step above what was asked (or the minimum).
                prop_assert!(gib * GIB < required.max(min_size_gib(disk_type).unwrap() * GIB) + SIZE_STEP_GIB * GIB);
            }
        }

        #[test]
        fn parsing_never_panics(pairs in proptest::collection::hash_map("[a-zA-Z./]{0,20}", ".{0,30}", 0..6)) {
            let _ = CbsParams::parse(&pairs);
        }
    }
}
