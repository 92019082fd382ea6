//! What the CBS fake holds: the operations it counts ([`CbsOp`]), disk and snapshot states, the
//! disk media types with their size and throughput rules, the disk and snapshot records with their
//! API views and filter matching, the views tests inspect ([`FakeDisk`], [`FakeSnapshot`]), and
//! the [`State`] behind the fake's lock with its lookups.
//!
//! Pure data: no clock reading beyond what a caller passes in, no request checks beyond the disk
//! type rules. The actions live in `disks`, `attach`, `snapshots` and `settings`; completing
//! transitions in `transitions`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::cbs::{Disk, Filter, Placement, Snapshot, Tag};
use crate::cvm::ZoneInfo;
use crate::fake::{ApiError, DEFAULT_ZONES, FakeState, Injector, Zone, format_time, zones_from};

/// Largest disk of every type, GiB.
pub(super) const MAX_DISK_SIZE: u64 = 32_000;
/// Sizes are multiples of this, GiB.
const SIZE_STEP: u64 = 10;
/// Most extra throughput a HSSD or TSSD disk can buy, MB/s.
const MAX_THROUGHPUT: u64 = 650;
/// Most disks attached to one instance, by default (the simulator's `--cbs-max-attach`).
const DEFAULT_MAX_ATTACH: u64 = 20;
/// The simulator's default `--instance`.
const DEFAULT_INSTANCE: (&str, &str) = ("ins-sim00001", "ap-guangzhou-3");

/// The operations of [`CbsApi`](crate::cbs::CbsApi), for counting calls, injecting failures and
/// holding transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CbsOp {
    CreateDisks,
    DescribeDisks,
    AttachDisks,
    DetachDisks,
    ResizeDisk,
    TerminateDisks,
    CreateSnapshot,
    DescribeSnapshots,
    DeleteSnapshots,
    BindAutoSnapshotPolicy,
    ModifyDiskExtraPerformance,
    /// `modify_disk_type`, the API's `ModifyDiskAttributes`.
    ModifyDiskType,
    /// CVM `DescribeZones`.
    DescribeZones,
}

impl CbsOp {
    /// The API action, as [`CloudError::Api`](crate::error::CloudError::Api) names it.
    pub fn action(self) -> &'static str {
        match self {
            CbsOp::CreateDisks => "CreateDisks",
            CbsOp::DescribeDisks => "DescribeDisks",
            CbsOp::AttachDisks => "AttachDisks",
            CbsOp::DetachDisks => "DetachDisks",
            CbsOp::ResizeDisk => "ResizeDisk",
            CbsOp::TerminateDisks => "TerminateDisks",
            CbsOp::CreateSnapshot => "CreateSnapshot",
            CbsOp::DescribeSnapshots => "DescribeSnapshots",
            CbsOp::DeleteSnapshots => "DeleteSnapshots",
            CbsOp::BindAutoSnapshotPolicy => "BindAutoSnapshotPolicy",
            CbsOp::ModifyDiskExtraPerformance => "ModifyDiskExtraPerformance",
            CbsOp::ModifyDiskType => "ModifyDiskAttributes",
            CbsOp::DescribeZones => "DescribeZones",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DiskState {
    Unattached,
    Attaching,
    Attached,
    Detaching,
    Expanding,
    /// A terminated prepaid disk in the recycle bin.
    Torecycle,
}

impl DiskState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DiskState::Unattached => "UNATTACHED",
            DiskState::Attaching => "ATTACHING",
            DiskState::Attached => "ATTACHED",
            DiskState::Detaching => "DETACHING",
            DiskState::Expanding => "EXPANDING",
            DiskState::Torecycle => "TORECYCLE",
        }
    }

    pub(super) fn is_transitional(self) -> bool {
        matches!(
            self,
            DiskState::Attaching | DiskState::Detaching | DiskState::Expanding
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SnapshotState {
    Creating,
    Normal,
}

impl SnapshotState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Creating => "CREATING",
            SnapshotState::Normal => "NORMAL",
        }
    }
}

/// The CBS disk media types and their rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DiskType {
    Basic,
    Premium,
    Bssd,
    Ssd,
    Hssd,
    Tssd,
}

impl DiskType {
    const ALL: [DiskType; 6] = [
        DiskType::Basic,
        DiskType::Premium,
        DiskType::Bssd,
        DiskType::Ssd,
        DiskType::Hssd,
        DiskType::Tssd,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            DiskType::Basic => "CLOUD_BASIC",
            DiskType::Premium => "CLOUD_PREMIUM",
            DiskType::Bssd => "CLOUD_BSSD",
            DiskType::Ssd => "CLOUD_SSD",
            DiskType::Hssd => "CLOUD_HSSD",
            DiskType::Tssd => "CLOUD_TSSD",
        }
    }

    pub(super) fn from_request(name: &str, field: &str) -> Result<DiskType, ApiError> {
        DiskType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = DiskType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::invalid_value(format!(
                    "{field} {name:?} is not a disk type; use one of {}.",
                    known.join(", ")
                ))
            })
    }

    pub(super) fn min_size(self) -> u64 {
        match self {
            DiskType::Basic | DiskType::Premium | DiskType::Tssd => 10,
            DiskType::Bssd | DiskType::Ssd | DiskType::Hssd => 20,
        }
    }

    pub(super) fn has_extra_performance(self) -> bool {
        matches!(self, DiskType::Hssd | DiskType::Tssd)
    }

    pub(super) fn check_size(self, size: u64, field: &str) -> Result<(), ApiError> {
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

    pub(super) fn check_throughput(self, value: u64, field: &str) -> Result<(), ApiError> {
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

    /// Rank for type changes, which only go up: BASIC → PREMIUM → SSD.
    pub(super) fn upgrade_rank(self) -> Option<u8> {
        match self {
            DiskType::Basic => Some(0),
            DiskType::Premium => Some(1),
            DiskType::Ssd => Some(2),
            DiskType::Bssd | DiskType::Hssd | DiskType::Tssd => None,
        }
    }
}

/// A transition in progress: it completes into `target` at `due`, unless it was started while
/// its operation was held with `FakeCbs::set_stuck` and still is.
#[derive(Debug, Clone)]
pub(super) struct Pending<S> {
    pub(super) op: CbsOp,
    pub(super) target: S,
    pub(super) started: Instant,
    pub(super) due: Instant,
    pub(super) stuck: bool,
    /// ResizeDisk: the size the disk has when the transition completes.
    pub(super) new_size: Option<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct DiskRecord {
    pub(super) disk_id: String,
    pub(super) disk_name: String,
    pub(super) disk_type: DiskType,
    pub(super) disk_size: u64,
    pub(super) zone: String,
    pub(super) project_id: i64,
    pub(super) cdc_id: Option<String>,
    pub(super) charge_type: String,
    pub(super) prepaid: bool,
    pub(super) encrypt: bool,
    pub(super) throughput_performance: u64,
    pub(super) tags: Vec<Tag>,
    pub(super) created_at: i64,
    pub(super) snapshot_id: Option<String>,
    pub(super) state: DiskState,
    /// The instance the disk is attaching to, attached to or detaching from.
    pub(super) instance_id: Option<String>,
    /// The disk is on its instance (the simulator's loop device): set when ATTACHING completes,
    /// cleared when DETACHING does.
    pub(super) on_instance: bool,
    pub(super) auto_snapshot_policy_ids: Vec<String>,
    pub(super) pending: Option<Pending<DiskState>>,
}

impl DiskRecord {
    /// The API's `Attached`: on an instance and not still attaching.
    pub(super) fn attached(&self) -> bool {
        self.on_instance && self.state != DiskState::Attaching
    }

    pub(super) fn view(&self) -> Disk {
        let instance_id = if self.attached() || self.state == DiskState::Attaching {
            self.instance_id.clone().unwrap_or_default()
        } else {
            String::new()
        };
        Disk {
            disk_id: self.disk_id.clone(),
            disk_name: self.disk_name.clone(),
            disk_state: self.state.as_str().to_owned(),
            disk_size: self.disk_size,
            disk_type: self.disk_type.as_str().to_owned(),
            placement: Placement {
                zone: self.zone.clone(),
                project_id: Some(self.project_id),
                cdc_id: self.cdc_id.clone(),
            },
            instance_id,
            attached: self.attached(),
            encrypt: self.encrypt,
            tags: self.tags.clone(),
            create_time: format_time(self.created_at),
            // DescribeDisks does not report the source snapshot (nor does the simulator).
            snapshot_id: String::new(),
            throughput_performance: self.throughput_performance,
        }
    }

    pub(super) fn inspect(&self) -> FakeDisk {
        FakeDisk {
            disk_id: self.disk_id.clone(),
            disk_name: self.disk_name.clone(),
            disk_state: self.state.as_str(),
            disk_size: self.disk_size,
            disk_type: self.disk_type.as_str(),
            zone: self.zone.clone(),
            charge_type: self.charge_type.clone(),
            encrypt: self.encrypt,
            throughput_performance: self.throughput_performance,
            tags: self.tags.clone(),
            instance_id: self.instance_id.clone(),
            attached: self.attached(),
            snapshot_id: self.snapshot_id.clone(),
            auto_snapshot_policy_ids: self.auto_snapshot_policy_ids.clone(),
            pending_state: self.pending.as_ref().map(|p| p.target.as_str()),
        }
    }

    pub(super) fn matches(&self, filter: &Filter) -> bool {
        let any = |v: &str| filter.values.iter().any(|x| x == v);
        match filter.name.as_str() {
            "disk-id" => any(&self.disk_id),
            "disk-name" => any(&self.disk_name),
            "zone" => any(&self.zone),
            "disk-state" => any(self.state.as_str()),
            "instance-id" => self.instance_id.as_deref().is_some_and(any),
            "disk-type" => any(self.disk_type.as_str()),
            "disk-charge-type" => any(&self.charge_type),
            "disk-usage" => any("DATA_DISK"),
            "portable" => filter.values.iter().any(|v| v.eq_ignore_ascii_case("TRUE")),
            "project-id" => any(&self.project_id.to_string()),
            "tag-key" => self.tags.iter().any(|t| any(&t.key)),
            "tag-value" => self.tags.iter().any(|t| any(&t.value)),
            name => name
                .strip_prefix("tag:")
                .is_some_and(|key| self.tags.iter().any(|t| t.key == key && any(&t.value))),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct SnapshotRecord {
    pub(super) snapshot_id: String,
    pub(super) snapshot_name: String,
    pub(super) disk_id: String,
    pub(super) disk_size: u64,
    pub(super) zone: String,
    pub(super) project_id: i64,
    pub(super) encrypt: bool,
    pub(super) tags: Vec<Tag>,
    pub(super) created_at: i64,
    pub(super) state: SnapshotState,
    pub(super) pending: Option<Pending<SnapshotState>>,
}

impl SnapshotRecord {
    /// `Percent`: 100 once NORMAL; while CREATING it rises with the elapsed share of the
    /// transition time and stops at 99.
    pub(super) fn percent(&self, now: Instant) -> u32 {
        match (&self.state, &self.pending) {
            (SnapshotState::Normal, _) => 100,
            (SnapshotState::Creating, Some(p)) => {
                let total = p.due.saturating_duration_since(p.started).as_nanos();
                if total == 0 {
                    return 99;
                }
                let done = now
                    .saturating_duration_since(p.started)
                    .as_nanos()
                    .min(total);
                u32::try_from(done * 100 / total).unwrap_or(99).min(99)
            }
            (SnapshotState::Creating, None) => 0,
        }
    }

    pub(super) fn view(&self, now: Instant) -> Snapshot {
        Snapshot {
            snapshot_id: self.snapshot_id.clone(),
            snapshot_name: self.snapshot_name.clone(),
            snapshot_state: self.state.as_str().to_owned(),
            percent: self.percent(now),
            disk_id: self.disk_id.clone(),
            disk_size: self.disk_size,
            create_time: format_time(self.created_at),
        }
    }

    pub(super) fn inspect(&self, now: Instant) -> FakeSnapshot {
        FakeSnapshot {
            snapshot_id: self.snapshot_id.clone(),
            snapshot_name: self.snapshot_name.clone(),
            snapshot_state: self.state.as_str(),
            percent: self.percent(now),
            disk_id: self.disk_id.clone(),
            disk_size: self.disk_size,
            zone: self.zone.clone(),
            tags: self.tags.clone(),
        }
    }

    pub(super) fn matches(&self, filter: &Filter) -> bool {
        let any = |v: &str| filter.values.iter().any(|x| x == v);
        match filter.name.as_str() {
            "snapshot-id" => any(&self.snapshot_id),
            "snapshot-name" => any(&self.snapshot_name),
            "snapshot-state" => any(self.state.as_str()),
            "disk-id" => any(&self.disk_id),
            "disk-usage" => any("DATA_DISK"),
            "project-id" => any(&self.project_id.to_string()),
            "zone" => any(&self.zone),
            "encrypt" => filter
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(if self.encrypt { "TRUE" } else { "FALSE" })),
            "snapshot-type" => any("PRIVATE_SNAPSHOT"),
            _ => false,
        }
    }
}

/// A disk as the fake holds it, for tests to inspect. Unlike the `DescribeDisks` view it shows
/// the instance while DETACHING ends, the source snapshot and the transition in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDisk {
    pub disk_id: String,
    pub disk_name: String,
    /// One of [`crate::cbs::disk_state`], or `TORECYCLE`.
    pub disk_state: &'static str,
    /// GiB.
    pub disk_size: u64,
    pub disk_type: &'static str,
    pub zone: String,
    pub charge_type: String,
    pub encrypt: bool,
    pub throughput_performance: u64,
    pub tags: Vec<Tag>,
    /// The instance the disk is attaching to, attached to or detaching from.
    pub instance_id: Option<String>,
    /// The API's `Attached`.
    pub attached: bool,
    /// The snapshot the disk was restored from.
    pub snapshot_id: Option<String>,
    pub auto_snapshot_policy_ids: Vec<String>,
    /// The state a transition in progress ends in.
    pub pending_state: Option<&'static str>,
}

/// A snapshot as the fake holds it, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSnapshot {
    pub snapshot_id: String,
    pub snapshot_name: String,
    /// One of [`crate::cbs::snapshot_state`].
    pub snapshot_state: &'static str,
    pub percent: u32,
    pub disk_id: String,
    /// GiB of the source disk when the snapshot was taken.
    pub disk_size: u64,
    pub zone: String,
    pub tags: Vec<Tag>,
}

/// Everything the fake holds, behind its lock.
#[derive(Debug)]
pub(super) struct State {
    pub(super) zones: Vec<Zone>,
    /// Instance ID → zone.
    pub(super) instances: BTreeMap<String, String>,
    /// Zone → most disks it may hold.
    pub(super) quotas: BTreeMap<String, u64>,
    pub(super) max_attach: u64,
    pub(super) auto_snapshot_policies: Vec<String>,
    pub(super) transition_time: Duration,
    /// How long each call takes (`FakeCbs::with_latency`).
    pub(super) latency: Duration,
    /// Kept in creation order, the order Describe lists them in.
    pub(super) disks: Vec<DiskRecord>,
    pub(super) snapshots: Vec<SnapshotRecord>,
    /// ClientToken of a CreateDisks call → the disk IDs it created. Never forgotten, as in the
    /// simulator: a token answers with its disks even after they were terminated.
    pub(super) client_tokens: BTreeMap<String, Vec<String>>,
    pub(super) injector: Injector<CbsOp>,
}

impl FakeState for State {
    type Op = CbsOp;

    fn injector(&mut self) -> &mut Injector<CbsOp> {
        &mut self.injector
    }

    fn settle(&mut self, now: Instant) {
        // The inherent method: transitions that are due complete.
        State::settle(self, now)
    }
}

impl State {
    /// The simulator's defaults, as `FakeCbs::new` documents them.
    pub(super) fn new() -> Self {
        let mut instances = BTreeMap::new();
        instances.insert(DEFAULT_INSTANCE.0.to_owned(), DEFAULT_INSTANCE.1.to_owned());
        State {
            zones: zones_from(&DEFAULT_ZONES),
            instances,
            quotas: BTreeMap::new(),
            max_attach: DEFAULT_MAX_ATTACH,
            auto_snapshot_policies: Vec::new(),
            transition_time: Duration::ZERO,
            latency: Duration::ZERO,
            disks: Vec::new(),
            snapshots: Vec::new(),
            client_tokens: BTreeMap::new(),
            injector: Injector::new(),
        }
    }

    pub(super) fn disk(&self, id: &str) -> Option<&DiskRecord> {
        self.disks.iter().find(|d| d.disk_id == id)
    }

    pub(super) fn disk_mut(&mut self, id: &str) -> Option<&mut DiskRecord> {
        self.disks.iter_mut().find(|d| d.disk_id == id)
    }

    pub(super) fn snapshot(&self, id: &str) -> Option<&SnapshotRecord> {
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    pub(super) fn zone_exists(&self, zone: &str) -> bool {
        self.zones.iter().any(|z| z.name == zone)
    }

    pub(super) fn describe_zones(&self) -> Vec<ZoneInfo> {
        self.zones
            .iter()
            .map(|z| ZoneInfo {
                zone: z.name.clone(),
                zone_name: z.name.clone(),
                zone_id: z.id.clone(),
                zone_state: "AVAILABLE".to_owned(),
            })
            .collect()
    }
}
