//! The StorageClass keys csi-cbs knows, their accepted spellings, and the error every bad key or
//! value becomes. A leaf: it imports nothing else of the crate.

/// Every key csi-cbs knows: its own and every key Tencent's CBS driver ever read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    DiskType,
    Zone,
    Zones,
    ChargeType,
    PrepaidPeriod,
    RenewFlag,
    Project,
    Encrypt,
    Tags,
    Throughput,
    CdcId,
    AutoSnapshotPolicy,
    FsType,
    DeviceMapper,
    Devices,
    Level,
}

impl Key {
    pub const ALL: [Key; 16] = [
        Key::DiskType,
        Key::Zone,
        Key::Zones,
        Key::ChargeType,
        Key::PrepaidPeriod,
        Key::RenewFlag,
        Key::Project,
        Key::Encrypt,
        Key::Tags,
        Key::Throughput,
        Key::CdcId,
        Key::AutoSnapshotPolicy,
        Key::FsType,
        Key::DeviceMapper,
        Key::Devices,
        Key::Level,
    ];

    /// Every documented name, for the message that refuses an unknown key.
    pub fn accepted() -> String {
        Key::ALL.map(Key::name).join(", ")
    }

    pub fn name(self) -> &'static str {
        match self {
            Key::DiskType => "diskType",
            Key::Zone => "diskZone",
            Key::Zones => "diskZones",
            Key::ChargeType => "diskChargeType",
            Key::PrepaidPeriod => "diskChargeTypePrepaidPeriod",
            Key::RenewFlag => "diskChargePrepaidRenewFlag",
            Key::Project => "project",
            Key::Encrypt => "encrypt",
            Key::Tags => "disktags",
            Key::Throughput => "throughputperformance",
            Key::CdcId => "cdcid",
            Key::AutoSnapshotPolicy => "aspid",
            Key::FsType => "fstype",
            Key::DeviceMapper => "devicemapper",
            Key::Devices => "devices",
            Key::Level => "level",
        }
    }

    /// Accepted spellings, lower-cased: the documented name and the old driver's alias.
    pub fn parse(lower: &str) -> Option<Key> {
        Some(match lower {
            "disktype" | "type" => Key::DiskType,
            "diskzone" | "zone" => Key::Zone,
            "diskzones" => Key::Zones,
            "diskchargetype" | "paymode" => Key::ChargeType,
            "diskchargetypeprepaidperiod" => Key::PrepaidPeriod,
            "diskchargeprepaidrenewflag" | "renewflag" => Key::RenewFlag,
            "project" => Key::Project,
            "encrypt" => Key::Encrypt,
            "disktags" => Key::Tags,
            "throughputperformance" => Key::Throughput,
            "cdcid" => Key::CdcId,
            "aspid" => Key::AutoSnapshotPolicy,
            "fstype" => Key::FsType,
            "devicemapper" => Key::DeviceMapper,
            "devices" => Key::Devices,
            "level" => Key::Level,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown StorageClass parameter {0:?}; accepted: {accepted}", accepted = Key::accepted())]
    Unknown(String),
    #[error(
        "mutable parameter {0:?} cannot be changed in place; accepted: diskType, throughputperformance"
    )]
    NotMutable(String),
    #[error("parameter {key} is given twice (as {first:?} and {second:?})")]
    Duplicate {
        key: &'static str,
        first: String,
        second: String,
    },
    #[error("parameter {key}={value:?} is invalid: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("parameters {first}={first_value:?} and {second}={second_value:?} conflict: {reason}")]
    Conflict {
        first: &'static str,
        first_value: String,
        second: &'static str,
        second_value: String,
        reason: &'static str,
    },
}

pub fn invalid(key: Key, value: &str, reason: impl Into<String>) -> ParamError {
    ParamError::Invalid {
        key: key.name(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

pub fn conflict(
    (first, first_value): (Key, &str),
    (second, second_value): (&'static str, &str),
    reason: &'static str,
) -> ParamError {
    ParamError::Conflict {
        first: first.name(),
        first_value: first_value.to_owned(),
        second,
        second_value: second_value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_key_parses_and_is_named_when_refusing_another() {
        for key in Key::ALL {
            assert_eq!(Key::parse(&key.name().to_ascii_lowercase()), Some(key));
        }
        let err = ParamError::Unknown("sizeGB".into()).to_string();
        assert!(err.contains("\"sizeGB\""), "{err}");
        for key in Key::ALL {
            assert!(err.contains(key.name()), "{err} lacks {}", key.name());
        }
    }
}
