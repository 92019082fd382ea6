//! The CBS section of the persistent state: disks, snapshots, their pending transitions and the
//! create tokens, plus the rules of the disk types (sizes, extra throughput). Pure data: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Everything CBS keeps across a restart. Disks and snapshots are kept in creation order, which is
/// the order `Describe*` lists them in, so `Offset` pagination is stable.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CbsState {
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// `ClientToken` of a CreateDisks call → the disk IDs it created.
    #[serde(default)]
    pub client_tokens: BTreeMap<String, Vec<String>>,
}

impl CbsState {
    pub fn disk(&self, id: &str) -> Option<&Disk> {
        self.disks.iter().find(|d| d.disk_id == id)
    }

    pub fn disk_mut(&mut self, id: &str) -> Option<&mut Disk> {
        self.disks.iter_mut().find(|d| d.disk_id == id)
    }

    pub fn snapshot(&self, id: &str) -> Option<&Snapshot> {
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    /// Disks in `zone`, whatever their state: what `--cbs-quota` counts.
    pub fn disks_in_zone(&self, zone: &str) -> u64 {
        self.disks.iter().filter(|d| d.zone == zone).count() as u64
    }

    /// Disks holding a slot on `instance`: attaching, attached, detaching, or expanding while
    /// attached. What `--cbs-max-attach` counts.
    pub fn disks_on_instance(&self, instance: &str) -> u64 {
        self.disks
            .iter()
            .filter(|d| d.instance_id.as_deref() == Some(instance))
            .count() as u64
    }
}

/// `DiskState` as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiskState {
    Unattached,
    Attaching,
    Attached,
    Detaching,
    Expanding,
    /// A terminated prepaid disk in the recycle bin.
    Torecycle,
}

impl DiskState {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Unattached => "UNATTACHED",
            DiskState::Attaching => "ATTACHING",
            DiskState::Attached => "ATTACHED",
            DiskState::Detaching => "DETACHING",
            DiskState::Expanding => "EXPANDING",
            DiskState::Torecycle => "TORECYCLE",
        }
    }

    /// A state an operation is in progress in: every other operation gets `InvalidDisk.Busy`.
    pub fn is_transitional(self) -> bool {
        matches!(
            self,
            DiskState::Attaching | DiskState::Detaching | DiskState::Expanding
        )
    }
}

/// `SnapshotState` as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotState {
    Creating,
    Normal,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Creating => "CREATING",
            SnapshotState::Normal => "NORMAL",
        }
    }
}

/// A transition in progress: it completes into `target` at `due_at_unix_ms`, unless it was started
/// while a `stuck` fault rule for `action` was in force and that rule still is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending<S> {
    /// The API action that started it (`AttachDisks`, ...), the key of the stuck fault.
    pub action: String,
    pub target: S,
    pub started_at_unix_ms: i64,
    pub due_at_unix_ms: i64,
    #[serde(default)]
    pub stuck: bool,
    /// ResizeDisk: the size the disk has when the transition completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_size: Option<u64>,
}

/// A tag, in requests, responses and the state file alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Prepaid terms of a `PREPAID` disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepaid {
    pub period_months: u64,
    pub renew_flag: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub disk_id: String,
    pub disk_name: String,
    pub disk_type: DiskType,
    /// GiB.
    pub disk_size: u64,
    pub zone: String,
    #[serde(default)]
    pub project_id: u64,
    #[serde(default)]
    pub cdc_id: Option<String>,
    pub charge_type: String,
    #[serde(default)]
    pub prepaid: Option<Prepaid>,
    #[serde(default)]
    pub encrypt: bool,
    /// Extra throughput bought, MB/s (HSSD and TSSD only).
    #[serde(default)]
    pub throughput_performance: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Unix seconds.
    pub created_at: i64,
    /// The snapshot the disk was restored from.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    pub state: DiskState,
    /// The instance the disk is attaching to, attached to or detaching from.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// `/dev/loopN` while the disk is attached (the data plane's record).
    #[serde(default)]
    pub loop_device: Option<String>,
    #[serde(default)]
    pub delete_with_instance: bool,
    #[serde(default)]
    pub shareable: bool,
    #[serde(default)]
    pub auto_snapshot_policy_ids: Vec<String>,
    #[serde(default)]
    pub pending: Option<Pending<DiskState>>,
}

impl Disk {
    /// The API's `Attached`: the disk is on an instance (attached, detaching, expanding online).
    pub fn attached(&self) -> bool {
        self.loop_device.is_some() && self.state != DiskState::Attaching
    }

    /// Unix seconds at which a prepaid disk expires (30-day months), `None` for postpaid disks.
    pub fn deadline(&self) -> Option<i64> {
        self.prepaid
            .as_ref()
            .map(|p| self.created_at + p.period_months as i64 * 30 * 86_400)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub snapshot_id: String,
    pub snapshot_name: String,
    pub disk_id: String,
    /// GiB: the size of the disk when the snapshot was taken.
    pub disk_size: u64,
    pub zone: String,
    #[serde(default)]
    pub project_id: u64,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the snapshot is to be deleted; `None`: permanent.
    #[serde(default)]
    pub deadline: Option<i64>,
    pub state: SnapshotState,
    #[serde(default)]
    pub pending: Option<Pending<SnapshotState>>,
}

impl Snapshot {
    /// `Percent`: 100 once NORMAL; while CREATING it rises with the elapsed share of the
    /// configured creation time and stops at 99.
    pub fn percent(&self, now_ms: i64) -> u64 {
        match (&self.state, &self.pending) {
            (SnapshotState::Normal, _) => 100,
            (SnapshotState::Creating, Some(p)) => {
                let total = (p.due_at_unix_ms - p.started_at_unix_ms).max(1);
                let done = (now_ms - p.started_at_unix_ms).clamp(0, total);
                ((done * 100 / total) as u64).min(99)
            }
            (SnapshotState::Creating, None) => 0,
        }
    }
}

/// The CBS disk media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskType {
    #[serde(rename = "CLOUD_BASIC")]
    Basic,
    #[serde(rename = "CLOUD_PREMIUM")]
    Premium,
    #[serde(rename = "CLOUD_BSSD")]
    Bssd,
    #[serde(rename = "CLOUD_SSD")]
    Ssd,
    #[serde(rename = "CLOUD_HSSD")]
    Hssd,
    #[serde(rename = "CLOUD_TSSD")]
    Tssd,
}

/// Largest disk of every type, GiB.
pub const MAX_DISK_SIZE: u64 = 32_000;
/// Sizes are multiples of this, GiB.
pub const SIZE_STEP: u64 = 10;
/// Most extra throughput a HSSD or TSSD disk can buy, MB/s.
pub const MAX_THROUGHPUT: u64 = 650;

impl DiskType {
    pub const ALL: [DiskType; 6] = [
        DiskType::Basic,
        DiskType::Premium,
        DiskType::Bssd,
        DiskType::Ssd,
        DiskType::Hssd,
        DiskType::Tssd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DiskType::Basic => "CLOUD_BASIC",
            DiskType::Premium => "CLOUD_PREMIUM",
            DiskType::Bssd => "CLOUD_BSSD",
            DiskType::Ssd => "CLOUD_SSD",
            DiskType::Hssd => "CLOUD_HSSD",
            DiskType::Tssd => "CLOUD_TSSD",
        }
    }

    pub fn parse(name: &str) -> Option<DiskType> {
        DiskType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// `DiskType` of a request, or `InvalidParameterValue` naming `field` and the known types.
    pub fn from_request(name: &str, field: &str) -> Result<DiskType, ApiError> {
        DiskType::parse(name).ok_or_else(|| {
            let known: Vec<&str> = DiskType::ALL.iter().map(|t| t.as_str()).collect();
            ApiError::invalid_value(format!(
                "{field} {name:?} is not a disk type; use one of {}.",
                known.join(", ")
            ))
        })
    }

    /// Smallest disk of this type, GiB.
    pub fn min_size(self) -> u64 {
        match self {
            DiskType::Basic | DiskType::Premium | DiskType::Tssd => 10,
            DiskType::Bssd | DiskType::Ssd | DiskType::Hssd => 20,
        }
    }

    /// Whether extra throughput (`ThroughputPerformance`) can be bought.
    pub fn has_extra_performance(self) -> bool {
        matches!(self, DiskType::Hssd | DiskType::Tssd)
    }

    /// Checks a size for this type; the error names `field`.
    pub fn check_size(self, size: u64, field: &str) -> Result<(), ApiError> {
        let (min, max) = (self.min_size(), MAX_DISK_SIZE);
        if size < min || size > max {
            return Err(ApiError::invalid_value(format!(
                "{field} {size} GiB is out of range for {}: it must be within [{min}, {max}] GiB.",
                self.as_str()
            )));
        }
        if !size.is_multiple_of(SIZE_STEP) {
            return Err(ApiError::invalid_value(format!(
                "{field} {size} GiB is not a multiple of {SIZE_STEP} GiB."
            )));
        }
        Ok(())
    }

    /// Extra throughput: only HSSD and TSSD buy it, up to [`MAX_THROUGHPUT`] MB/s. Errors are
    /// `InvalidParameter` naming `field`.
    pub fn check_throughput(self, value: u64, field: &str) -> Result<(), ApiError> {
        if value == 0 {
            return Ok(());
        }
        if !self.has_extra_performance() {
            return Err(ApiError::new(
                "InvalidParameter",
                format!(
                    "{field} is for CLOUD_HSSD and CLOUD_TSSD only, not {}.",
                    self.as_str()
                ),
            ));
        }
        if value > MAX_THROUGHPUT {
            return Err(ApiError::new(
                "InvalidParameter",
                format!("{field} {value} MB/s is more than {MAX_THROUGHPUT}."),
            ));
        }
        Ok(())
    }

    /// Rank for ModifyDiskAttributes type changes, which only go up: BASIC → PREMIUM → SSD.
    pub fn upgrade_rank(self) -> Option<u8> {
        match self {
            DiskType::Basic => Some(0),
            DiskType::Premium => Some(1),
            DiskType::Ssd => Some(2),
            DiskType::Bssd | DiskType::Hssd | DiskType::Tssd => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_rules_per_type() {
        let cases = [
            (DiskType::Premium, 10, true),
            (DiskType::Premium, 0, false),
            (DiskType::Premium, 15, false),
            (DiskType::Ssd, 10, false),
            (DiskType::Ssd, 20, true),
            (DiskType::Hssd, 20, true),
            (DiskType::Hssd, 32_000, true),
            (DiskType::Hssd, 32_010, false),
            (DiskType::Basic, 10, true),
            (DiskType::Tssd, 10, true),
            (DiskType::Bssd, 10, false),
        ];
        for (ty, size, ok) in cases {
            let result = ty.check_size(size, "DiskSize");
            assert_eq!(result.is_ok(), ok, "{ty:?} {size}: {result:?}");
            if let Err(e) = result {
                assert_eq!(e.code, "InvalidParameterValue");
                assert!(e.message.contains("DiskSize"), "{}", e.message);
            }
        }
    }

    #[test]
    fn type_names_round_trip_through_serde_and_parse() {
        for ty in DiskType::ALL {
            let json = serde_json::to_string(&ty).unwrap();
            assert_eq!(json, format!("\"{}\"", ty.as_str()));
            assert_eq!(DiskType::parse(ty.as_str()), Some(ty));
        }
        let err = DiskType::from_request("CLOUD_FLOPPY", "DiskType").unwrap_err();
        assert!(err.message.contains("CLOUD_FLOPPY") && err.message.contains("CLOUD_HSSD"));
        assert_eq!(
            serde_json::to_string(&DiskState::Torecycle).unwrap(),
            "\"TORECYCLE\""
        );
    }

    #[test]
    fn percent_rises_and_stops_short_of_100_until_normal() {
        let mut snapshot = Snapshot {
            snapshot_id: "snap-1".into(),
            snapshot_name: "s".into(),
            disk_id: "disk-1".into(),
            disk_size: 10,
            zone: "z".into(),
            project_id: 0,
            encrypt: false,
            tags: vec![],
            created_at: 0,
            deadline: None,
            state: SnapshotState::Creating,
            pending: Some(Pending {
                action: "CreateSnapshot".into(),
                target: SnapshotState::Normal,
                started_at_unix_ms: 1_000,
                due_at_unix_ms: 2_000,
                stuck: false,
                new_size: None,
            }),
        };
        assert_eq!(snapshot.percent(1_000), 0);
        assert_eq!(snapshot.percent(1_500), 50);
        assert_eq!(snapshot.percent(5_000), 99);
        snapshot.state = SnapshotState::Normal;
        assert_eq!(snapshot.percent(1_000), 100);
    }
}
