//! [`FakeCbs`]: a stateful in-memory [`CbsApi`] (CBS disks, snapshots and attachments, plus CVM
//! `DescribeZones`) that answers as the simulator's CBS service does (`sim/src/cbs*`): the same
//! request checks, disk and snapshot states, ClientToken idempotency, filters, paging and error
//! codes. Transitions (ATTACHING, DETACHING, EXPANDING, CREATING) complete after
//! [`FakeCbs::with_transition_time`], checked lazily at every call on `tokio::time::Instant`.
//!
//! It owns no device and no file: "attached" is a flag. Node-side effects (a device appearing)
//! are the mount fake's business.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    ApiError, DEFAULT_ZONES, Fired, Injector, Zone, format_time, random_id, well_formed_id,
    zone_names, zones_from,
};
use crate::cbs::{
    CbsApi, CreateDisksRequest, CreateSnapshotRequest, DescribeDisksRequest, DescribeDisksResponse,
    DescribeSnapshotsRequest, DescribeSnapshotsResponse, Disk, Filter, Placement, Snapshot, Tag,
};
use crate::cvm::ZoneInfo;
use crate::error::CloudError;

/// Most disks one CreateDisks call makes.
const MAX_DISK_COUNT: u32 = 50;
/// Largest disk of every type, GiB.
const MAX_DISK_SIZE: u64 = 32_000;
/// Sizes are multiples of this, GiB.
const SIZE_STEP: u64 = 10;
/// Most extra throughput a HSSD or TSSD disk can buy, MB/s.
const MAX_THROUGHPUT: u64 = 650;
/// Longest DiskName and SnapshotName, bytes.
const MAX_NAME: usize = 60;
/// The name the cloud gives a disk or snapshot created without one.
const UNNAMED: &str = "未命名";
/// Most disks attached to one instance, by default (the simulator's `--cbs-max-attach`).
const DEFAULT_MAX_ATTACH: u64 = 20;
/// The simulator's default `--instance`.
const DEFAULT_INSTANCE: (&str, &str) = ("ins-sim00001", "ap-guangzhou-3");

const RENEW_FLAGS: [&str; 3] = [
    "NOTIFY_AND_AUTO_RENEW",
    "NOTIFY_AND_MANUAL_RENEW",
    "DISABLE_NOTIFY_AND_MANUAL_RENEW",
];

const DISK_FILTERS: &[&str] = &[
    "disk-id",
    "disk-name",
    "zone",
    "disk-state",
    "instance-id",
    "disk-type",
    "disk-charge-type",
    "disk-usage",
    "portable",
    "project-id",
    "tag-key",
    "tag-value",
    "tag:",
];

const SNAPSHOT_FILTERS: &[&str] = &[
    "snapshot-id",
    "snapshot-name",
    "snapshot-state",
    "disk-id",
    "disk-usage",
    "project-id",
    "zone",
    "encrypt",
    "snapshot-type",
];

/// The operations of [`CbsApi`], for counting calls, injecting failures and holding transitions.
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
    /// The API action, as [`CloudError::Api`] names it.
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
enum DiskState {
    Unattached,
    Attaching,
    Attached,
    Detaching,
    Expanding,
    /// A terminated prepaid disk in the recycle bin.
    Torecycle,
}

impl DiskState {
    fn as_str(self) -> &'static str {
        match self {
            DiskState::Unattached => "UNATTACHED",
            DiskState::Attaching => "ATTACHING",
            DiskState::Attached => "ATTACHED",
            DiskState::Detaching => "DETACHING",
            DiskState::Expanding => "EXPANDING",
            DiskState::Torecycle => "TORECYCLE",
        }
    }

    fn is_transitional(self) -> bool {
        matches!(
            self,
            DiskState::Attaching | DiskState::Detaching | DiskState::Expanding
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotState {
    Creating,
    Normal,
}

impl SnapshotState {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Creating => "CREATING",
            SnapshotState::Normal => "NORMAL",
        }
    }
}

/// The CBS disk media types and their rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskType {
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

    fn as_str(self) -> &'static str {
        match self {
            DiskType::Basic => "CLOUD_BASIC",
            DiskType::Premium => "CLOUD_PREMIUM",
            DiskType::Bssd => "CLOUD_BSSD",
            DiskType::Ssd => "CLOUD_SSD",
            DiskType::Hssd => "CLOUD_HSSD",
            DiskType::Tssd => "CLOUD_TSSD",
        }
    }

    fn from_request(name: &str, field: &str) -> Result<DiskType, ApiError> {
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

    fn min_size(self) -> u64 {
        match self {
            DiskType::Basic | DiskType::Premium | DiskType::Tssd => 10,
            DiskType::Bssd | DiskType::Ssd | DiskType::Hssd => 20,
        }
    }

    fn has_extra_performance(self) -> bool {
        matches!(self, DiskType::Hssd | DiskType::Tssd)
    }

    fn check_size(self, size: u64, field: &str) -> Result<(), ApiError> {
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

    fn check_throughput(self, value: u64, field: &str) -> Result<(), ApiError> {
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
    fn upgrade_rank(self) -> Option<u8> {
        match self {
            DiskType::Basic => Some(0),
            DiskType::Premium => Some(1),
            DiskType::Ssd => Some(2),
            DiskType::Bssd | DiskType::Hssd | DiskType::Tssd => None,
        }
    }
}

/// A transition in progress: it completes into `target` at `due`, unless it was started while
/// its operation was held with [`FakeCbs::set_stuck`] and still is.
#[derive(Debug, Clone)]
struct Pending<S> {
    op: CbsOp,
    target: S,
    started: Instant,
    due: Instant,
    stuck: bool,
    /// ResizeDisk: the size the disk has when the transition completes.
    new_size: Option<u64>,
}

#[derive(Debug, Clone)]
struct DiskRecord {
    disk_id: String,
    disk_name: String,
    disk_type: DiskType,
    disk_size: u64,
    zone: String,
    project_id: i64,
    cdc_id: Option<String>,
    charge_type: String,
    prepaid: bool,
    encrypt: bool,
    throughput_performance: u64,
    tags: Vec<Tag>,
    created_at: i64,
    snapshot_id: Option<String>,
    state: DiskState,
    /// The instance the disk is attaching to, attached to or detaching from.
    instance_id: Option<String>,
    /// The disk is on its instance (the simulator's loop device): set when ATTACHING completes,
    /// cleared when DETACHING does.
    on_instance: bool,
    auto_snapshot_policy_ids: Vec<String>,
    pending: Option<Pending<DiskState>>,
}

impl DiskRecord {
    /// The API's `Attached`: on an instance and not still attaching.
    fn attached(&self) -> bool {
        self.on_instance && self.state != DiskState::Attaching
    }

    fn view(&self) -> Disk {
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

    fn inspect(&self) -> FakeDisk {
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

    fn matches(&self, filter: &Filter) -> bool {
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
struct SnapshotRecord {
    snapshot_id: String,
    snapshot_name: String,
    disk_id: String,
    disk_size: u64,
    zone: String,
    project_id: i64,
    encrypt: bool,
    tags: Vec<Tag>,
    created_at: i64,
    state: SnapshotState,
    pending: Option<Pending<SnapshotState>>,
}

impl SnapshotRecord {
    /// `Percent`: 100 once NORMAL; while CREATING it rises with the elapsed share of the
    /// transition time and stops at 99.
    fn percent(&self, now: Instant) -> u32 {
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

    fn view(&self, now: Instant) -> Snapshot {
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

    fn inspect(&self, now: Instant) -> FakeSnapshot {
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

    fn matches(&self, filter: &Filter) -> bool {
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

/// A validated CreateDisks request.
#[derive(Debug)]
struct CreatePlan {
    zone: String,
    project_id: i64,
    disk_type: DiskType,
    size: u64,
    count: u32,
    name: String,
    prepaid: bool,
    encrypt: bool,
    throughput: u64,
}

#[derive(Debug)]
struct State {
    zones: Vec<Zone>,
    /// Instance ID → zone.
    instances: BTreeMap<String, String>,
    /// Zone → most disks it may hold.
    quotas: BTreeMap<String, u64>,
    max_attach: u64,
    auto_snapshot_policies: Vec<String>,
    transition_time: Duration,
    /// Kept in creation order, the order Describe lists them in.
    disks: Vec<DiskRecord>,
    snapshots: Vec<SnapshotRecord>,
    /// ClientToken of a CreateDisks call → the disk IDs it created. Never forgotten, as in the
    /// simulator: a token answers with its disks even after they were terminated.
    client_tokens: BTreeMap<String, Vec<String>>,
    injector: Injector<CbsOp>,
}

/// The in-memory CBS. Clones share one state, so a test can keep a handle to the fake it gave
/// to the code under test.
#[derive(Debug, Clone)]
pub struct FakeCbs {
    state: Arc<Mutex<State>>,
}

impl Default for FakeCbs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCbs {
    /// The simulator's defaults: zones `ap-guangzhou-3` (100003) and `ap-guangzhou-4` (100004),
    /// instance `ins-sim00001` in `ap-guangzhou-3`, at most 20 disks per instance, no zone
    /// quotas, no auto-snapshot policies, and transitions that complete by the next call.
    pub fn new() -> Self {
        let mut instances = BTreeMap::new();
        instances.insert(DEFAULT_INSTANCE.0.to_owned(), DEFAULT_INSTANCE.1.to_owned());
        FakeCbs {
            state: Arc::new(Mutex::new(State {
                zones: zones_from(&DEFAULT_ZONES),
                instances,
                quotas: BTreeMap::new(),
                max_attach: DEFAULT_MAX_ATTACH,
                auto_snapshot_policies: Vec::new(),
                transition_time: Duration::ZERO,
                disks: Vec::new(),
                snapshots: Vec::new(),
                client_tokens: BTreeMap::new(),
                injector: Injector::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long ATTACHING, DETACHING, EXPANDING and CREATING last. Zero (the default): the next
    /// call sees the final state.
    pub fn with_transition_time(self, time: Duration) -> Self {
        self.set_transition_time(time);
        self
    }

    /// Changes the transition time for transitions started from now on.
    pub fn set_transition_time(&self, time: Duration) {
        self.lock().transition_time = time;
    }

    /// Replaces the zones, as `(name, numeric ID)` pairs like `("ap-guangzhou-3", "100003")`.
    /// Instances keep their zones.
    pub fn with_zones(self, zones: &[(&str, &str)]) -> Self {
        self.lock().zones = zones_from(zones);
        self
    }

    /// Adds (or moves) an instance disks can attach to.
    pub fn with_instance(self, instance_id: &str, zone: &str) -> Self {
        self.lock()
            .instances
            .insert(instance_id.to_owned(), zone.to_owned());
        self
    }

    /// Most disks attached to one instance (the simulator's `--cbs-max-attach`).
    pub fn with_max_attach(self, max: u64) -> Self {
        self.lock().max_attach = max;
        self
    }

    /// Most disks `zone` may hold (`--cbs-quota`); beyond it CreateDisks fails with
    /// `ResourceInsufficient.OverQuota`.
    pub fn with_zone_quota(self, zone: &str, max: u64) -> Self {
        self.lock().quotas.insert(zone.to_owned(), max);
        self
    }

    /// An auto-snapshot policy that exists (`--cbs-auto-snapshot-policy`).
    pub fn with_auto_snapshot_policy(self, policy_id: &str) -> Self {
        self.lock()
            .auto_snapshot_policies
            .push(policy_id.to_owned());
        self
    }

    /// Makes the `n`th call of `op` (1-based, counted from now) fail with the API error `code`,
    /// without taking effect.
    pub fn fail_nth(&self, op: CbsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, false);
    }

    /// Makes the `n`th call of `op` take effect and then fail with `code`, as when the answer of
    /// a successful call is lost on its way back.
    pub fn lose_nth_response(&self, op: CbsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, true);
    }

    /// Holds the transitions `op` starts from now on (AttachDisks, DetachDisks, ResizeDisk,
    /// CreateSnapshot) until it is released: the simulator's `stuck` fault.
    pub fn set_stuck(&self, op: CbsOp, stuck: bool) {
        self.lock().injector.set_stuck(op, stuck);
    }

    /// How many times `op` was called, failed calls included.
    pub fn calls(&self, op: CbsOp) -> u64 {
        self.lock().injector.calls(op)
    }

    /// Every disk, in creation order, terminated prepaid disks (TORECYCLE) included.
    pub fn disks(&self) -> Vec<FakeDisk> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state.disks.iter().map(DiskRecord::inspect).collect()
    }

    pub fn disk(&self, disk_id: &str) -> Option<FakeDisk> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state.disk(disk_id).map(DiskRecord::inspect)
    }

    /// Every snapshot, in creation order.
    pub fn snapshots(&self) -> Vec<FakeSnapshot> {
        let now = Instant::now();
        let mut state = self.lock();
        state.settle(now);
        state.snapshots.iter().map(|s| s.inspect(now)).collect()
    }

    pub fn snapshot(&self, snapshot_id: &str) -> Option<FakeSnapshot> {
        let now = Instant::now();
        let mut state = self.lock();
        state.settle(now);
        state.snapshot(snapshot_id).map(|s| s.inspect(now))
    }

    /// The disk IDs a CreateDisks ClientToken answers with.
    pub fn client_token(&self, token: &str) -> Option<Vec<String>> {
        self.lock().client_tokens.get(token).cloned()
    }

    /// Runs one API call: counts it, completes due transitions, applies an injected failure.
    fn call<R>(
        &self,
        op: CbsOp,
        f: impl FnOnce(&mut State, Instant) -> Result<R, ApiError>,
    ) -> Result<R, CloudError> {
        let now = Instant::now();
        let mut state = self.lock();
        let (call, fired) = state.injector.begin(op);
        let request_id = state.injector.request_id();
        state.settle(now);
        let fail = |fired: &Fired| {
            fired
                .error(op.action(), call)
                .into_cloud(op.action(), request_id.clone())
        };
        if let Some(fired) = fired.as_ref().filter(|f| !f.after_effect) {
            return Err(fail(fired));
        }
        let result = f(&mut state, now);
        if let Some(fired) = &fired {
            return Err(fail(fired));
        }
        result.map_err(|e| e.into_cloud(op.action(), request_id.clone()))
    }
}

impl State {
    fn disk(&self, id: &str) -> Option<&DiskRecord> {
        self.disks.iter().find(|d| d.disk_id == id)
    }

    fn disk_mut(&mut self, id: &str) -> Option<&mut DiskRecord> {
        self.disks.iter_mut().find(|d| d.disk_id == id)
    }

    fn snapshot(&self, id: &str) -> Option<&SnapshotRecord> {
        self.snapshots.iter().find(|s| s.snapshot_id == id)
    }

    fn zone_exists(&self, zone: &str) -> bool {
        self.zones.iter().any(|z| z.name == zone)
    }

    /// A transition started now by `op`.
    fn pending<S>(&self, op: CbsOp, target: S, now: Instant, new_size: Option<u64>) -> Pending<S> {
        Pending {
            op,
            target,
            started: now,
            due: now + self.transition_time,
            stuck: self.injector.is_stuck(op),
            new_size,
        }
    }

    fn is_due<S>(&self, pending: &Pending<S>, now: Instant) -> bool {
        pending.due <= now && !(pending.stuck && self.injector.is_stuck(pending.op))
    }

    /// Completes every transition that is due at `now`.
    fn settle(&mut self, now: Instant) {
        let due_disks: Vec<usize> = (0..self.disks.len())
            .filter(|&i| {
                self.disks[i]
                    .pending
                    .as_ref()
                    .is_some_and(|p| self.is_due(p, now))
            })
            .collect();
        for i in due_disks {
            let disk = &mut self.disks[i];
            let Some(pending) = disk.pending.take() else {
                continue;
            };
            match (disk.state, pending.target) {
                (DiskState::Attaching, DiskState::Attached) => disk.on_instance = true,
                (DiskState::Detaching, DiskState::Unattached) => {
                    disk.on_instance = false;
                    disk.instance_id = None;
                }
                _ => {}
            }
            if let Some(size) = pending.new_size {
                disk.disk_size = size;
            }
            disk.state = pending.target;
        }
        let due_snapshots: Vec<usize> = (0..self.snapshots.len())
            .filter(|&i| {
                self.snapshots[i]
                    .pending
                    .as_ref()
                    .is_some_and(|p| self.is_due(p, now))
            })
            .collect();
        for i in due_snapshots {
            let snapshot = &mut self.snapshots[i];
            snapshot.pending = None;
            snapshot.state = SnapshotState::Normal;
        }
    }

    fn plan_create(&self, request: &CreateDisksRequest) -> Result<CreatePlan, ApiError> {
        let zone = request.placement.zone.as_str();
        if !self.zone_exists(zone) {
            return Err(ApiError::invalid_value(format!(
                "Placement.Zone {zone:?} is not a zone of the region; zones: {}.",
                zone_names(&self.zones)
            )));
        }
        let disk_type = DiskType::from_request(&request.disk_type, "DiskType")?;
        let prepaid = match request.disk_charge_type.as_str() {
            "POSTPAID_BY_HOUR" => false,
            "CDCPAID" => {
                if request.placement.cdc_id.is_none() {
                    return Err(ApiError::new(
                        "MissingParameter",
                        "DiskChargeType CDCPAID needs Placement.CdcId.",
                    ));
                }
                false
            }
            "PREPAID" => {
                let Some(terms) = &request.disk_charge_prepaid else {
                    return Err(ApiError::new(
                        "MissingParameter",
                        "DiskChargeType PREPAID needs DiskChargePrepaid.",
                    ));
                };
                if !matches!(terms.period, 1..=12 | 24 | 36) {
                    return Err(ApiError::invalid_value(format!(
                        "DiskChargePrepaid.Period {} is not one of 1-12, 24, 36.",
                        terms.period
                    )));
                }
                let renew_flag = terms
                    .renew_flag
                    .as_deref()
                    .unwrap_or("NOTIFY_AND_MANUAL_RENEW");
                if !RENEW_FLAGS.contains(&renew_flag) {
                    return Err(ApiError::invalid_value(format!(
                        "DiskChargePrepaid.RenewFlag {renew_flag:?} is not one of {}.",
                        RENEW_FLAGS.join(", ")
                    )));
                }
                true
            }
            other => {
                return Err(ApiError::invalid_value(format!(
                    "DiskChargeType {other:?} is not PREPAID, POSTPAID_BY_HOUR or CDCPAID."
                )));
            }
        };
        let name = request.disk_name.as_deref().unwrap_or(UNNAMED).to_owned();
        check_name(&name, "DiskName")?;
        let count = request.disk_count;
        if count == 0 {
            return Err(ApiError::invalid_value("DiskCount must be at least 1."));
        }
        if count > MAX_DISK_COUNT {
            return Err(ApiError::new(
                "InvalidParameterValue.LimitExceeded",
                format!("DiskCount {count} is more than {MAX_DISK_COUNT} disks in one call."),
            ));
        }
        let encrypt = match request.encrypt.as_deref() {
            None => false,
            Some("ENCRYPT") => true,
            Some(other) => {
                return Err(ApiError::invalid_value(format!(
                    "Encrypt {other:?} is not ENCRYPT."
                )));
            }
        };
        let throughput = request.throughput_performance.unwrap_or(0);
        disk_type
            .check_throughput(throughput, "ThroughputPerformance")
            .map_err(|e| ApiError::invalid_value(e.message))?;
        check_tags(&request.tags)?;
        if let Some(token) = &request.client_token
            && (token.is_empty() || token.len() > 64 || !token.is_ascii())
        {
            return Err(ApiError::invalid_value(
                "ClientToken must be 1 to 64 ASCII characters.",
            ));
        }
        // The client always sends DiskSize, so with a snapshot it is compared, never defaulted.
        let size = request.disk_size;
        if let Some(snapshot_id) = &request.snapshot_id {
            let snapshot = self
                .snapshot(snapshot_id)
                .ok_or_else(|| snapshot_not_found(snapshot_id))?;
            if snapshot.state != SnapshotState::Normal {
                return Err(ApiError::new(
                    "ResourceUnavailable.SnapshotCreating",
                    format!(
                        "The snapshot {snapshot_id} is {}: it can be used once NORMAL.",
                        snapshot.state.as_str()
                    ),
                ));
            }
            if size < snapshot.disk_size {
                return Err(ApiError::new(
                    "InvalidParameter.DiskSizeNotMatch",
                    format!(
                        "DiskSize {size} GiB is smaller than the snapshot {snapshot_id} ({} GiB).",
                        snapshot.disk_size
                    ),
                ));
            }
        }
        disk_type.check_size(size, "DiskSize")?;
        Ok(CreatePlan {
            zone: zone.to_owned(),
            project_id: request.placement.project_id.unwrap_or(0),
            disk_type,
            size,
            count,
            name,
            prepaid,
            encrypt,
            throughput,
        })
    }

    fn create_disks(&mut self, request: &CreateDisksRequest) -> Result<Vec<String>, ApiError> {
        let plan = self.plan_create(request)?;
        if let Some(token) = &request.client_token
            && let Some(ids) = self.client_tokens.get(token)
        {
            return Ok(ids.clone());
        }
        let existing = self.disks.iter().filter(|d| d.zone == plan.zone).count() as u64;
        if let Some(&max) = self.quotas.get(&plan.zone)
            && existing + u64::from(plan.count) > max
        {
            return Err(ApiError::new(
                "ResourceInsufficient.OverQuota",
                format!(
                    "Zone {} holds {existing} of at most {max} disks; {} more do not fit.",
                    plan.zone, plan.count
                ),
            ));
        }
        let mut ids: Vec<String> = Vec::new();
        while ids.len() < plan.count as usize {
            let id = random_id("disk-", 8);
            if self.disk(&id).is_none() && !ids.contains(&id) {
                ids.push(id);
            }
        }
        let created_at = crate::time::unix_now();
        for id in &ids {
            self.disks.push(DiskRecord {
                disk_id: id.clone(),
                disk_name: plan.name.clone(),
                disk_type: plan.disk_type,
                disk_size: plan.size,
                zone: plan.zone.clone(),
                project_id: plan.project_id,
                cdc_id: request.placement.cdc_id.clone(),
                charge_type: request.disk_charge_type.clone(),
                prepaid: plan.prepaid,
                encrypt: plan.encrypt,
                throughput_performance: plan.throughput,
                tags: request.tags.clone(),
                created_at,
                snapshot_id: request.snapshot_id.clone(),
                state: DiskState::Unattached,
                instance_id: None,
                on_instance: false,
                auto_snapshot_policy_ids: Vec::new(),
                pending: None,
            });
        }
        if let Some(token) = &request.client_token {
            self.client_tokens.insert(token.clone(), ids.clone());
        }
        Ok(ids)
    }

    fn describe_disks(
        &self,
        request: &DescribeDisksRequest,
    ) -> Result<DescribeDisksResponse, ApiError> {
        check_describe_ids(
            &request.disk_ids,
            !request.filters.is_empty(),
            "DiskIds",
            "disk-",
            "InvalidDiskId.Malformed",
        )?;
        check_filters(&request.filters, DISK_FILTERS)?;
        let matching: Vec<&DiskRecord> = self
            .disks
            .iter()
            .filter(|d| request.disk_ids.is_empty() || request.disk_ids.contains(&d.disk_id))
            .filter(|d| request.filters.iter().all(|f| d.matches(f)))
            .collect();
        let total_count = matching.len() as u64;
        let disk_set = page(matching, request.offset, request.limit)?
            .into_iter()
            .map(DiskRecord::view)
            .collect();
        Ok(DescribeDisksResponse {
            total_count,
            disk_set,
        })
    }

    fn attach_disks(
        &mut self,
        disk_ids: &[String],
        instance: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        check_id_list(disk_ids, "DiskIds", 10)?;
        let zone = self
            .instances
            .get(instance)
            .ok_or_else(|| instance_not_found(instance))?;
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            match disk.state {
                DiskState::Unattached => {}
                DiskState::Attached => {
                    return Err(ApiError::new(
                        "ResourceUnavailable.Attached",
                        format!(
                            "The disk {id} is attached to {} already.",
                            disk.instance_id.as_deref().unwrap_or("an instance")
                        ),
                    ));
                }
                DiskState::Torecycle => {
                    return Err(not_supported(format!(
                        "The disk {id} is in the recycle bin."
                    )));
                }
                busy => return Err(disk_busy(id, busy)),
            }
            if &disk.zone != zone {
                return Err(ApiError::new(
                    "ResourceUnavailable.ZoneNotMatch",
                    format!(
                        "The disk {id} is in {} and the instance {instance} in {zone}: they must be in the same zone.",
                        disk.zone
                    ),
                ));
            }
        }
        let used = self
            .disks
            .iter()
            .filter(|d| d.instance_id.as_deref() == Some(instance))
            .count() as u64;
        let adding = disk_ids.len() as u64;
        if used + adding > self.max_attach {
            return Err(ApiError::new(
                "LimitExceeded.InstanceAttachedDisk",
                format!(
                    "The instance {instance} has {used} disks; {adding} more exceed its limit of {}.",
                    self.max_attach
                ),
            ));
        }
        let pending = self.pending(CbsOp::AttachDisks, DiskState::Attached, now, None);
        for id in disk_ids {
            if let Some(disk) = self.disk_mut(id) {
                disk.state = DiskState::Attaching;
                disk.instance_id = Some(instance.to_owned());
                disk.pending = Some(pending.clone());
            }
        }
        Ok(())
    }

    fn detach_disks(
        &mut self,
        disk_ids: &[String],
        instance: Option<&str>,
        now: Instant,
    ) -> Result<(), ApiError> {
        check_id_list(disk_ids, "DiskIds", 10)?;
        if let Some(instance) = instance
            && !self.instances.contains_key(instance)
        {
            return Err(instance_not_found(instance));
        }
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            match disk.state {
                DiskState::Attached => {}
                DiskState::Unattached | DiskState::Torecycle => {
                    return Err(not_supported(format!(
                        "The disk {id} is {}: it is not attached.",
                        disk.state.as_str()
                    )));
                }
                busy => return Err(disk_busy(id, busy)),
            }
            if let Some(instance) = instance
                && disk.instance_id.as_deref() != Some(instance)
            {
                return Err(ApiError::invalid_value(format!(
                    "The disk {id} is attached to {}, not to {instance}.",
                    disk.instance_id.as_deref().unwrap_or("no instance")
                )));
            }
        }
        let pending = self.pending(CbsOp::DetachDisks, DiskState::Unattached, now, None);
        for id in disk_ids {
            if let Some(disk) = self.disk_mut(id) {
                disk.state = DiskState::Detaching;
                disk.pending = Some(pending.clone());
            }
        }
        Ok(())
    }

    fn resize_disk(&mut self, id: &str, size: u64, now: Instant) -> Result<(), ApiError> {
        let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
        let back_to = match disk.state {
            DiskState::Unattached => DiskState::Unattached,
            DiskState::Attached => DiskState::Attached,
            DiskState::Torecycle => {
                return Err(not_supported(format!(
                    "The disk {id} is in the recycle bin."
                )));
            }
            busy => return Err(disk_busy(id, busy)),
        };
        if size <= disk.disk_size {
            return Err(ApiError::invalid_value(format!(
                "DiskSize {size} GiB must be larger than the current size of {id}, {} GiB: disks only grow.",
                disk.disk_size
            )));
        }
        if size > MAX_DISK_SIZE {
            return Err(ApiError::invalid_value(format!(
                "DiskSize {size} GiB is more than the {MAX_DISK_SIZE} GiB a {} disk can have.",
                disk.disk_type.as_str()
            )));
        }
        disk.disk_type.check_size(size, "DiskSize")?;
        let pending = self.pending(CbsOp::ResizeDisk, back_to, now, Some(size));
        if let Some(disk) = self.disk_mut(id) {
            disk.state = DiskState::Expanding;
            disk.pending = Some(pending);
        }
        Ok(())
    }

    fn terminate_disks(&mut self, disk_ids: &[String]) -> Result<(), ApiError> {
        check_id_list(disk_ids, "DiskIds", 100)?;
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            match disk.state {
                DiskState::Unattached | DiskState::Torecycle => {}
                DiskState::Attached => {
                    return Err(ApiError::new(
                        "ResourceUnavailable.Attached",
                        format!(
                            "The disk {id} is attached to {}; detach it first.",
                            disk.instance_id.as_deref().unwrap_or("an instance")
                        ),
                    ));
                }
                busy => return Err(disk_busy(id, busy)),
            }
        }
        for id in disk_ids {
            let Some(disk) = self.disk_mut(id) else {
                continue;
            };
            if disk.prepaid && disk.state == DiskState::Unattached {
                disk.state = DiskState::Torecycle;
            } else {
                self.disks.retain(|d| &d.disk_id != id);
            }
        }
        Ok(())
    }

    fn create_snapshot(
        &mut self,
        request: &CreateSnapshotRequest,
        now: Instant,
    ) -> Result<String, ApiError> {
        let name = request
            .snapshot_name
            .as_deref()
            .unwrap_or(UNNAMED)
            .to_owned();
        check_name(&name, "SnapshotName")?;
        check_tags(&request.tags)?;
        let id = request.disk_id.as_str();
        let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
        match disk.state {
            DiskState::Unattached | DiskState::Attached => {}
            DiskState::Torecycle => {
                return Err(not_supported(format!(
                    "The disk {id} is in the recycle bin."
                )));
            }
            busy => return Err(disk_busy(id, busy)),
        }
        let (disk_size, zone, project_id, encrypt) = (
            disk.disk_size,
            disk.zone.clone(),
            disk.project_id,
            disk.encrypt,
        );
        let snapshot_id = loop {
            let candidate = random_id("snap-", 8);
            if self.snapshot(&candidate).is_none() {
                break candidate;
            }
        };
        let pending = self.pending(CbsOp::CreateSnapshot, SnapshotState::Normal, now, None);
        self.snapshots.push(SnapshotRecord {
            snapshot_id: snapshot_id.clone(),
            snapshot_name: name,
            disk_id: id.to_owned(),
            disk_size,
            zone,
            project_id,
            encrypt,
            tags: request.tags.clone(),
            created_at: crate::time::unix_now(),
            state: SnapshotState::Creating,
            pending: Some(pending),
        });
        Ok(snapshot_id)
    }

    fn describe_snapshots(
        &self,
        request: &DescribeSnapshotsRequest,
        now: Instant,
    ) -> Result<DescribeSnapshotsResponse, ApiError> {
        check_describe_ids(
            &request.snapshot_ids,
            !request.filters.is_empty(),
            "SnapshotIds",
            "snap-",
            "InvalidSnapshotId.Malformed",
        )?;
        check_filters(&request.filters, SNAPSHOT_FILTERS)?;
        let matching: Vec<&SnapshotRecord> = self
            .snapshots
            .iter()
            .filter(|s| {
                request.snapshot_ids.is_empty() || request.snapshot_ids.contains(&s.snapshot_id)
            })
            .filter(|s| request.filters.iter().all(|f| s.matches(f)))
            .collect();
        let total_count = matching.len() as u64;
        let snapshot_set = page(matching, request.offset, request.limit)?
            .into_iter()
            .map(|s| s.view(now))
            .collect();
        Ok(DescribeSnapshotsResponse {
            total_count,
            snapshot_set,
        })
    }

    fn delete_snapshots(&mut self, snapshot_ids: &[String]) -> Result<(), ApiError> {
        check_id_list(snapshot_ids, "SnapshotIds", 100)?;
        for id in snapshot_ids {
            let snapshot = self.snapshot(id).ok_or_else(|| snapshot_not_found(id))?;
            if snapshot.state == SnapshotState::Creating {
                return Err(ApiError::new(
                    "ResourceUnavailable.SnapshotCreating",
                    format!("The snapshot {id} is CREATING: delete it once it is NORMAL."),
                ));
            }
        }
        self.snapshots
            .retain(|s| !snapshot_ids.contains(&s.snapshot_id));
        Ok(())
    }

    fn bind_auto_snapshot_policy(
        &mut self,
        policy: &str,
        disk_ids: &[String],
    ) -> Result<(), ApiError> {
        if !self.auto_snapshot_policies.iter().any(|p| p == policy) {
            return Err(ApiError::new(
                "InvalidAutoSnapshotPolicyId.NotFound",
                format!("The auto-snapshot policy {policy} does not exist."),
            ));
        }
        if disk_ids.is_empty() {
            return Ok(());
        }
        check_id_list(disk_ids, "DiskIds", 80)?;
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            if disk.auto_snapshot_policy_ids.iter().any(|p| p == policy) {
                return Err(ApiError::new(
                    "InvalidDisk.AlreadyBound",
                    format!("The disk {id} is bound to {policy} already."),
                ));
            }
        }
        for id in disk_ids {
            if let Some(disk) = self.disk_mut(id) {
                disk.auto_snapshot_policy_ids.push(policy.to_owned());
            }
        }
        Ok(())
    }

    fn modify_disk_extra_performance(&mut self, id: &str, throughput: u64) -> Result<(), ApiError> {
        let disk = self.disk_mut(id).ok_or_else(|| disk_not_found(id))?;
        if !disk.disk_type.has_extra_performance() {
            return Err(not_supported(format!(
                "The disk {id} is {}: extra performance is for CLOUD_HSSD and CLOUD_TSSD only.",
                disk.disk_type.as_str()
            )));
        }
        if disk.state.is_transitional() {
            return Err(disk_busy(id, disk.state));
        }
        disk.disk_type
            .check_throughput(throughput, "ThroughputPerformance")?;
        disk.throughput_performance = throughput;
        Ok(())
    }

    /// ModifyDiskAttributes with one disk and a `DiskType`.
    fn modify_disk_type(&mut self, id: &str, name: &str) -> Result<(), ApiError> {
        let ty = DiskType::from_request(name, "DiskType")?;
        if !matches!(ty, DiskType::Premium | DiskType::Ssd) {
            return Err(ApiError::invalid_value(format!(
                "DiskType {name} is not a target of a type change (CLOUD_PREMIUM, CLOUD_SSD)."
            )));
        }
        let disk = self.disk_mut(id).ok_or_else(|| disk_not_found(id))?;
        if disk.state == DiskState::Torecycle {
            return Err(not_supported(format!(
                "The disk {id} is in the recycle bin."
            )));
        }
        if disk.state.is_transitional() {
            return Err(disk_busy(id, disk.state));
        }
        let upgrade = match (disk.disk_type.upgrade_rank(), ty.upgrade_rank()) {
            (Some(from), Some(to)) => to > from,
            _ => false,
        };
        if !upgrade {
            return Err(not_supported(format!(
                "The disk {id} is {}: it cannot change to {} (types only go up: CLOUD_BASIC, CLOUD_PREMIUM, CLOUD_SSD).",
                disk.disk_type.as_str(),
                ty.as_str()
            )));
        }
        ty.check_size(disk.disk_size, "DiskSize")?;
        disk.disk_type = ty;
        Ok(())
    }

    fn describe_zones(&self) -> Vec<ZoneInfo> {
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

impl CbsApi for FakeCbs {
    async fn create_disks(
        &self,
        request: &CreateDisksRequest,
        _deadline: Option<Instant>,
    ) -> Result<Vec<String>, CloudError> {
        self.call(CbsOp::CreateDisks, |s, _| s.create_disks(request))
    }

    async fn describe_disks(
        &self,
        request: &DescribeDisksRequest,
        _deadline: Option<Instant>,
    ) -> Result<DescribeDisksResponse, CloudError> {
        self.call(CbsOp::DescribeDisks, |s, _| s.describe_disks(request))
    }

    async fn attach_disks(
        &self,
        disk_ids: &[String],
        instance_id: &str,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::AttachDisks, |s, now| {
            s.attach_disks(disk_ids, instance_id, now)
        })
    }

    async fn detach_disks(
        &self,
        disk_ids: &[String],
        instance_id: Option<&str>,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::DetachDisks, |s, now| {
            s.detach_disks(disk_ids, instance_id, now)
        })
    }

    async fn resize_disk(
        &self,
        disk_id: &str,
        size_gib: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::ResizeDisk, |s, now| {
            s.resize_disk(disk_id, size_gib, now)
        })
    }

    async fn terminate_disks(
        &self,
        disk_ids: &[String],
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::TerminateDisks, |s, _| s.terminate_disks(disk_ids))
    }

    async fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        _deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        self.call(CbsOp::CreateSnapshot, |s, now| {
            s.create_snapshot(request, now)
        })
    }

    async fn describe_snapshots(
        &self,
        request: &DescribeSnapshotsRequest,
        _deadline: Option<Instant>,
    ) -> Result<DescribeSnapshotsResponse, CloudError> {
        self.call(CbsOp::DescribeSnapshots, |s, now| {
            s.describe_snapshots(request, now)
        })
    }

    async fn delete_snapshots(
        &self,
        snapshot_ids: &[String],
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::DeleteSnapshots, |s, _| {
            s.delete_snapshots(snapshot_ids)
        })
    }

    async fn bind_auto_snapshot_policy(
        &self,
        policy_id: &str,
        disk_ids: &[String],
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::BindAutoSnapshotPolicy, |s, _| {
            s.bind_auto_snapshot_policy(policy_id, disk_ids)
        })
    }

    async fn modify_disk_extra_performance(
        &self,
        disk_id: &str,
        throughput_mbps: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::ModifyDiskExtraPerformance, |s, _| {
            s.modify_disk_extra_performance(disk_id, throughput_mbps)
        })
    }

    async fn modify_disk_type(
        &self,
        disk_id: &str,
        disk_type: &str,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CbsOp::ModifyDiskType, |s, _| {
            s.modify_disk_type(disk_id, disk_type)
        })
    }

    async fn describe_zones(
        &self,
        _deadline: Option<Instant>,
    ) -> Result<Vec<ZoneInfo>, CloudError> {
        self.call(CbsOp::DescribeZones, |s, _| Ok(s.describe_zones()))
    }
}

fn disk_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidDiskId.NotFound",
        format!("The disk {id} does not exist."),
    )
}

fn instance_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidInstanceId.NotFound",
        format!("The instance {id} does not exist."),
    )
}

fn snapshot_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidSnapshotId.NotFound",
        format!("The snapshot {id} does not exist."),
    )
}

fn disk_busy(id: &str, state: DiskState) -> ApiError {
    ApiError::new(
        "InvalidDisk.Busy",
        format!(
            "The disk {id} is {}: another operation is in progress, retry later.",
            state.as_str()
        ),
    )
}

fn not_supported(message: String) -> ApiError {
    ApiError::new("InvalidDisk.NotSupported", message)
}

/// A list of IDs: not empty, at most `max`, no repeats.
fn check_id_list(ids: &[String], field: &str, max: usize) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::new(
            "MissingParameter",
            format!("{field} must name at least one ID."),
        ));
    }
    if ids.len() > max {
        return Err(ApiError::new(
            "InvalidParameterValue.LimitExceeded",
            format!(
                "{field} names {} IDs; at most {max} are allowed.",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(repeated) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(ApiError::invalid_value(format!(
            "{field} names {repeated} more than once."
        )));
    }
    Ok(())
}

/// The rules every `Describe*` by ID list shares: IDs or filters, not both; at most 100; each
/// well formed. Unknown IDs are no error: they are just not listed.
fn check_describe_ids(
    ids: &[String],
    with_filters: bool,
    field: &str,
    prefix: &str,
    malformed_code: &str,
) -> Result<(), ApiError> {
    if !ids.is_empty() && with_filters {
        return Err(ApiError::new(
            "InvalidParameter",
            format!("{field} and Filters cannot be given together."),
        ));
    }
    if ids.len() > 100 {
        return Err(ApiError::new(
            "InvalidParameterValue.LimitExceeded",
            format!("{field} names more than 100 resources."),
        ));
    }
    if let Some(bad) = ids.iter().find(|id| !well_formed_id(id, prefix)) {
        return Err(ApiError::new(
            malformed_code,
            format!("{field}: {bad:?} is not an ID like {prefix}xxxxxxxx."),
        ));
    }
    Ok(())
}

/// Disk and snapshot names are at most 60 bytes.
fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    if name.len() > MAX_NAME {
        return Err(ApiError::invalid_value(format!(
            "{field} is {} bytes long; at most {MAX_NAME} are allowed.",
            name.len()
        )));
    }
    Ok(())
}

/// Tags as the tag service accepts them: non-empty keys and values, no reserved key prefixes,
/// no repeated keys.
fn check_tags(tags: &[Tag]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for tag in tags {
        if tag.key.trim().is_empty() {
            return Err(ApiError::new(
                "InvalidParameter",
                "Tags: a tag key is empty.",
            ));
        }
        let lower = tag.key.to_ascii_lowercase();
        if ["qcloud", "tencent", "project"]
            .iter()
            .any(|reserved| lower.starts_with(reserved))
        {
            return Err(ApiError::new(
                "InvalidParameter",
                format!(
                    "Tags: Key ({}) start with a word that is reserved for the system.",
                    tag.key
                ),
            ));
        }
        if tag.value.is_empty() {
            return Err(ApiError::new(
                "InvalidParameter",
                format!(
                    "Tags: the value of tag {} is empty: tag value contains illegal characters.",
                    tag.key
                ),
            ));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(ApiError::invalid_value(format!(
                "Tags: key {} appears more than once.",
                tag.key
            )));
        }
    }
    Ok(())
}

/// Filter names against `known` (a name ending in `:` is a prefix, like `tag:`), and every filter
/// has values.
fn check_filters(filters: &[Filter], known: &[&str]) -> Result<(), ApiError> {
    for filter in filters {
        let ok = known.iter().any(|k| match k.strip_suffix(':') {
            Some(prefix) => filter
                .name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|key| !key.is_empty()),
            None => filter.name == *k,
        });
        if !ok {
            return Err(ApiError::new(
                "InvalidFilter",
                format!(
                    "Filter {:?} is not supported; use one of {}.",
                    filter.name,
                    known.join(", ")
                ),
            ));
        }
        if filter.values.is_empty() {
            return Err(ApiError::invalid_value(format!(
                "Filter {} has no Values.",
                filter.name
            )));
        }
    }
    Ok(())
}

/// `Offset`/`Limit` (default 20, at most 100) applied to `items`.
fn page<T>(items: Vec<T>, offset: Option<u64>, limit: Option<u64>) -> Result<Vec<T>, ApiError> {
    let limit = limit.unwrap_or(20);
    if limit > 100 {
        return Err(ApiError::invalid_value(format!(
            "Limit {limit} is too large; at most 100 is allowed."
        )));
    }
    Ok(items
        .into_iter()
        .skip(usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::cbs::{DiskChargePrepaid, disk_state, snapshot_state};

    const ZONE: &str = "ap-guangzhou-3";
    const NODE: &str = "ins-sim00001";

    fn create_request(name: &str, size: u64) -> CreateDisksRequest {
        CreateDisksRequest {
            placement: Placement {
                zone: ZONE.to_owned(),
                ..Default::default()
            },
            disk_type: "CLOUD_PREMIUM".to_owned(),
            disk_charge_type: "POSTPAID_BY_HOUR".to_owned(),
            disk_size: size,
            disk_name: Some(name.to_owned()),
            disk_count: 1,
            ..Default::default()
        }
    }

    async fn create_one(cbs: &FakeCbs, name: &str) -> String {
        let ids = cbs
            .create_disks(&create_request(name, 20), None)
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
        ids[0].clone()
    }

    async fn describe_one(cbs: &FakeCbs, id: &str) -> Option<Disk> {
        let request = DescribeDisksRequest {
            disk_ids: vec![id.to_owned()],
            ..Default::default()
        };
        let response = cbs.describe_disks(&request, None).await.unwrap();
        assert!(response.disk_set.len() <= 1);
        response.disk_set.into_iter().next()
    }

    /// A change to a valid request that makes it invalid.
    type Mutation = fn(&mut CreateDisksRequest);

    fn code(error: &CloudError) -> &str {
        error.code().unwrap_or("<no code>")
    }

    #[tokio::test]
    async fn a_client_token_answers_with_its_disks_even_after_they_are_terminated() {
        let cbs = FakeCbs::new();
        let mut request = create_request("pvc-1", 20);
        request.client_token = Some(crate::client_token(&["pvc-1"]));
        let first = cbs.create_disks(&request, None).await.unwrap();
        let again = cbs.create_disks(&request, None).await.unwrap();
        assert_eq!(first, again, "a retry makes no second disk");
        assert_eq!(cbs.disks().len(), 1);

        cbs.terminate_disks(&first, None).await.unwrap();
        assert!(cbs.disks().is_empty());
        let after = cbs.create_disks(&request, None).await.unwrap();
        assert_eq!(
            after, first,
            "the token keeps its answer after the disk is gone"
        );
        assert!(cbs.disks().is_empty(), "and nothing was created");
        assert!(describe_one(&cbs, &first[0]).await.is_none());

        // A token is still checked: empty, too long or not ASCII is refused.
        for bad in [String::new(), "t".repeat(65), "令牌".to_owned()] {
            request.client_token = Some(bad);
            let e = cbs.create_disks(&request, None).await.unwrap_err();
            assert_eq!(code(&e), "InvalidParameterValue");
        }
        request.client_token = Some("t".repeat(64));
        cbs.create_disks(&request, None).await.unwrap();
    }

    #[tokio::test]
    async fn names_longer_than_60_bytes_are_refused() {
        let cbs = FakeCbs::new();
        let sixty = "n".repeat(60);
        let id = create_one(&cbs, &sixty).await;
        assert_eq!(cbs.disk(&id).unwrap().disk_name, sixty);
        // 21 three-byte characters: 63 bytes although 21 characters.
        for long in ["n".repeat(61), "卷".repeat(21)] {
            let e = cbs
                .create_disks(&create_request(&long, 20), None)
                .await
                .unwrap_err();
            assert_eq!(code(&e), "InvalidParameterValue", "{e}");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.to_string().contains("DiskName"), "{e}");
            let snapshot = CreateSnapshotRequest {
                disk_id: id.clone(),
                snapshot_name: Some(long.clone()),
                tags: vec![],
            };
            let e = cbs.create_snapshot(&snapshot, None).await.unwrap_err();
            assert_eq!(code(&e), "InvalidParameterValue", "{e}");
            assert!(e.to_string().contains("SnapshotName"), "{e}");
        }
        assert_eq!(cbs.disks().len(), 1);
        assert!(cbs.snapshots().is_empty());
        // No name: the cloud's default.
        let mut unnamed = create_request("", 20);
        unnamed.disk_name = None;
        let ids = cbs.create_disks(&unnamed, None).await.unwrap();
        assert_eq!(cbs.disk(&ids[0]).unwrap().disk_name, UNNAMED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_creating_snapshot_cannot_be_deleted_until_it_is_normal() {
        let cbs = FakeCbs::new().with_transition_time(Duration::from_secs(10));
        let disk = create_one(&cbs, "src").await;
        let request = CreateSnapshotRequest {
            disk_id: disk.clone(),
            snapshot_name: Some("snap-of-src".to_owned()),
            tags: vec![Tag {
                key: "k".into(),
                value: "v".into(),
            }],
        };
        let id = cbs.create_snapshot(&request, None).await.unwrap();
        let ids = std::slice::from_ref(&id);
        let describe = DescribeSnapshotsRequest {
            snapshot_ids: vec![id.clone()],
            ..Default::default()
        };
        let seen = cbs.describe_snapshots(&describe, None).await.unwrap();
        assert_eq!(seen.total_count, 1);
        assert_eq!(
            seen.snapshot_set[0].snapshot_state,
            snapshot_state::CREATING
        );
        assert_eq!(seen.snapshot_set[0].percent, 0);
        assert!(!seen.snapshot_set[0].is_ready());

        let e = cbs.delete_snapshots(ids, None).await.unwrap_err();
        assert_eq!(code(&e), "ResourceUnavailable.SnapshotCreating");
        assert_eq!(e.kind(), ErrorKind::Busy);
        // A disk cannot be restored from it either.
        let mut restore = create_request("restored", 20);
        restore.snapshot_id = Some(id.clone());
        let e = cbs.create_disks(&restore, None).await.unwrap_err();
        assert_eq!(code(&e), "ResourceUnavailable.SnapshotCreating");

        tokio::time::advance(Duration::from_secs(5)).await;
        let half = cbs.snapshot(&id).unwrap();
        assert_eq!(
            (half.snapshot_state, half.percent),
            (snapshot_state::CREATING, 50)
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let seen = cbs.describe_snapshots(&describe, None).await.unwrap();
        assert!(seen.snapshot_set[0].is_ready(), "{:?}", seen.snapshot_set);
        let snapshot = cbs.snapshot(&id).unwrap();
        assert_eq!(snapshot.tags, request.tags);
        assert_eq!(
            (snapshot.disk_id.as_str(), snapshot.disk_size),
            (disk.as_str(), 20)
        );

        // Restoring: at least the snapshot's size.
        restore.disk_size = 10;
        let e = cbs.create_disks(&restore, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameter.DiskSizeNotMatch");
        restore.disk_size = 30;
        let restored = cbs.create_disks(&restore, None).await.unwrap();
        assert_eq!(
            cbs.disk(&restored[0]).unwrap().snapshot_id,
            Some(id.clone())
        );

        cbs.delete_snapshots(ids, None).await.unwrap();
        assert!(cbs.snapshots().is_empty());
        let gone = cbs.describe_snapshots(&describe, None).await.unwrap();
        assert_eq!(
            gone.total_count, 0,
            "an unknown ID is no error, just absent"
        );
        let e = cbs.delete_snapshots(ids, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidSnapshotId.NotFound");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn describe_pages_with_offset_limit_and_total_count() {
        let cbs = FakeCbs::new();
        let mut request = create_request("many", 20);
        request.disk_count = 25;
        let ids = cbs.create_disks(&request, None).await.unwrap();
        assert_eq!(ids.len(), 25);
        let page_of = |offset, limit| DescribeDisksRequest {
            offset,
            limit,
            ..Default::default()
        };
        let first = cbs
            .describe_disks(&page_of(None, None), None)
            .await
            .unwrap();
        assert_eq!(
            (first.total_count, first.disk_set.len()),
            (25, 20),
            "default limit 20"
        );
        let last = cbs
            .describe_disks(&page_of(Some(20), Some(10)), None)
            .await
            .unwrap();
        assert_eq!((last.total_count, last.disk_set.len()), (25, 5));
        let listed: Vec<String> = first
            .disk_set
            .iter()
            .chain(&last.disk_set)
            .map(|d| d.disk_id.clone())
            .collect();
        assert_eq!(listed, ids, "creation order, stable across pages");
        let beyond = cbs
            .describe_disks(&page_of(Some(100), Some(100)), None)
            .await
            .unwrap();
        assert_eq!((beyond.total_count, beyond.disk_set.len()), (25, 0));
        let e = cbs
            .describe_disks(&page_of(None, Some(101)), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue");
        request.disk_count = 51;
        let e = cbs.create_disks(&request, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.LimitExceeded");
    }

    #[tokio::test]
    async fn filters_ids_and_their_errors_follow_the_simulator() {
        let cbs = FakeCbs::new();
        let mut tagged = create_request("vol-a", 20);
        tagged.tags = vec![Tag {
            key: "csi-volume".into(),
            value: "pvc-a".into(),
        }];
        let a = cbs.create_disks(&tagged, None).await.unwrap().remove(0);
        let mut elsewhere = create_request("vol-b", 20);
        elsewhere.placement.zone = "ap-guangzhou-4".into();
        let b = cbs.create_disks(&elsewhere, None).await.unwrap().remove(0);
        let filtered = |filters: Vec<Filter>| DescribeDisksRequest {
            filters,
            ..Default::default()
        };
        let cases = [
            (Filter::new("disk-name", "vol-a"), vec![a.clone()]),
            (Filter::new("disk-id", &b), vec![b.clone()]),
            (Filter::new("zone", "ap-guangzhou-4"), vec![b.clone()]),
            (Filter::new("tag-key", "csi-volume"), vec![a.clone()]),
            (Filter::new("tag:csi-volume", "pvc-a"), vec![a.clone()]),
            (Filter::new("tag:csi-volume", "pvc-b"), vec![]),
            (
                Filter::new("disk-state", "UNATTACHED"),
                vec![a.clone(), b.clone()],
            ),
        ];
        for (filter, want) in cases {
            let got = cbs
                .describe_disks(&filtered(vec![filter.clone()]), None)
                .await
                .unwrap();
            let ids: Vec<String> = got.disk_set.into_iter().map(|d| d.disk_id).collect();
            assert_eq!(ids, want, "{filter:?}");
            assert_eq!(got.total_count, want.len() as u64);
        }
        let errors = [
            (
                filtered(vec![Filter::new("colour", "red")]),
                "InvalidFilter",
            ),
            (
                filtered(vec![Filter {
                    name: "zone".into(),
                    values: vec![],
                }]),
                "InvalidParameterValue",
            ),
            (
                DescribeDisksRequest {
                    disk_ids: vec![a.clone()],
                    filters: vec![Filter::new("zone", ZONE)],
                    ..Default::default()
                },
                "InvalidParameter",
            ),
            (
                DescribeDisksRequest {
                    disk_ids: vec!["vol-1".into()],
                    ..Default::default()
                },
                "InvalidDiskId.Malformed",
            ),
        ];
        for (request, want) in errors {
            let e = cbs.describe_disks(&request, None).await.unwrap_err();
            assert_eq!(code(&e), want, "{request:?}");
        }
        assert!(describe_one(&cbs, "disk-unknown1").await.is_none());
        let e = cbs
            .terminate_disks(&["disk-unknown1".into()], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);

        let snapshot = cbs
            .create_snapshot(
                &CreateSnapshotRequest {
                    disk_id: a.clone(),
                    snapshot_name: Some("snap-name".into()),
                    tags: vec![],
                },
                None,
            )
            .await
            .unwrap();
        for filter in [
            Filter::new("snapshot-name", "snap-name"),
            Filter::new("disk-id", &a),
            Filter::new("snapshot-id", &snapshot),
        ] {
            let request = DescribeSnapshotsRequest {
                filters: vec![filter.clone()],
                ..Default::default()
            };
            let got = cbs.describe_snapshots(&request, None).await.unwrap();
            assert_eq!(got.total_count, 1, "{filter:?}");
            assert_eq!(got.snapshot_set[0].snapshot_id, snapshot);
        }
        let request = DescribeSnapshotsRequest {
            filters: vec![Filter::new("tag:k", "v")],
            ..Default::default()
        };
        let e = cbs.describe_snapshots(&request, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidFilter");
    }

    #[tokio::test]
    async fn an_injected_failure_fires_on_exactly_the_nth_call() {
        let cbs = FakeCbs::new();
        let request = DescribeDisksRequest::default();
        cbs.describe_disks(&request, None).await.unwrap();
        cbs.fail_nth(CbsOp::DescribeDisks, 3, "RequestLimitExceeded");
        cbs.describe_zones(None).await.unwrap();
        cbs.describe_disks(&request, None).await.unwrap();
        cbs.describe_disks(&request, None).await.unwrap();
        let e = cbs.describe_disks(&request, None).await.unwrap_err();
        assert_eq!(code(&e), "RequestLimitExceeded");
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert!(e.to_string().starts_with("DescribeDisks: "), "{e}");
        cbs.describe_disks(&request, None).await.unwrap();
        assert_eq!(cbs.calls(CbsOp::DescribeDisks), 5, "failed calls count too");
        assert_eq!(cbs.calls(CbsOp::DescribeZones), 1);
        assert_eq!(cbs.calls(CbsOp::CreateDisks), 0);

        // A refused create makes nothing.
        cbs.fail_nth(CbsOp::CreateDisks, 1, "InternalError");
        let e = cbs
            .create_disks(&create_request("x", 20), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(cbs.disks().is_empty());
    }

    #[tokio::test]
    async fn a_lost_answer_still_creates_and_the_token_finds_it() {
        let cbs = FakeCbs::new();
        let mut request = create_request("pvc-lost", 20);
        request.client_token = Some("token-lost".into());
        cbs.lose_nth_response(CbsOp::CreateDisks, 1, "InternalError");
        let e = cbs.create_disks(&request, None).await.unwrap_err();
        assert_eq!(code(&e), "InternalError");
        let made = cbs.disks();
        assert_eq!(made.len(), 1, "the call took effect");
        let retry = cbs.create_disks(&request, None).await.unwrap();
        assert_eq!(retry, vec![made[0].disk_id.clone()]);
        assert_eq!(cbs.client_token("token-lost"), Some(retry));
    }

    #[tokio::test(start_paused = true)]
    async fn attach_and_detach_pass_through_observable_transitions() {
        let step = Duration::from_secs(3);
        let cbs = FakeCbs::new().with_transition_time(step);
        let id = create_one(&cbs, "vol").await;
        let ids = std::slice::from_ref(&id);
        cbs.attach_disks(ids, NODE, None).await.unwrap();

        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(disk.disk_state, disk_state::ATTACHING);
        assert_eq!(disk.instance(), Some(NODE));
        assert!(!disk.attached);
        let e = cbs.attach_disks(ids, NODE, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.Busy");
        assert_eq!(e.kind(), ErrorKind::Busy);
        let e = cbs.resize_disk(&id, 30, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.Busy");
        let e = cbs.terminate_disks(ids, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.Busy");

        tokio::time::advance(step).await;
        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(disk.disk_state, disk_state::ATTACHED);
        assert!(disk.attached);
        let e = cbs.attach_disks(ids, NODE, None).await.unwrap_err();
        assert_eq!(code(&e), "ResourceUnavailable.Attached");
        let e = cbs.terminate_disks(ids, None).await.unwrap_err();
        assert!(code(&e).ends_with(".Attached"), "{e}");
        let e = cbs
            .detach_disks(ids, Some("ins-unknown"), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidInstanceId.NotFound");

        // Online resize: EXPANDING, then back to ATTACHED at the new size.
        cbs.resize_disk(&id, 50, None).await.unwrap();
        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(
            (disk.disk_state.as_str(), disk.disk_size),
            (disk_state::EXPANDING, 20)
        );
        tokio::time::advance(step).await;
        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(
            (disk.disk_state.as_str(), disk.disk_size),
            (disk_state::ATTACHED, 50)
        );
        let e = cbs.resize_disk(&id, 50, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue", "disks only grow");

        cbs.detach_disks(ids, Some(NODE), None).await.unwrap();
        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(disk.disk_state, disk_state::DETACHING);
        assert!(disk.attached, "still on the instance while detaching");
        tokio::time::advance(step).await;
        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(disk.disk_state, disk_state::UNATTACHED);
        assert_eq!((disk.instance(), disk.attached), (None, false));
        let e = cbs.detach_disks(ids, None, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.NotSupported");

        cbs.terminate_disks(ids, None).await.unwrap();
        assert!(describe_one(&cbs, &id).await.is_none());
    }

    #[tokio::test]
    async fn with_no_transition_time_the_next_call_sees_the_final_state() {
        let cbs = FakeCbs::new();
        let id = create_one(&cbs, "vol").await;
        cbs.attach_disks(std::slice::from_ref(&id), NODE, None)
            .await
            .unwrap();
        let disk = describe_one(&cbs, &id).await.unwrap();
        assert_eq!(disk.disk_state, disk_state::ATTACHED);
        assert_eq!(cbs.disk(&id).unwrap().pending_state, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_operation_holds_its_transitions_until_released() {
        let cbs = FakeCbs::new();
        let id = create_one(&cbs, "vol").await;
        cbs.set_stuck(CbsOp::AttachDisks, true);
        cbs.attach_disks(std::slice::from_ref(&id), NODE, None)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(cbs.disk(&id).unwrap().disk_state, disk_state::ATTACHING);
        assert_eq!(
            cbs.disk(&id).unwrap().pending_state,
            Some(disk_state::ATTACHED)
        );
        cbs.set_stuck(CbsOp::AttachDisks, false);
        assert_eq!(cbs.disk(&id).unwrap().disk_state, disk_state::ATTACHED);
    }

    #[tokio::test]
    async fn attach_checks_the_instance_its_zone_and_its_limit() {
        let cbs = FakeCbs::new()
            .with_instance("ins-other", "ap-guangzhou-4")
            .with_max_attach(1);
        let a = create_one(&cbs, "a").await;
        let b = create_one(&cbs, "b").await;
        let e = cbs
            .attach_disks(std::slice::from_ref(&a), "ins-missing", None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidInstanceId.NotFound");
        let e = cbs
            .attach_disks(std::slice::from_ref(&a), "ins-other", None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceUnavailable.ZoneNotMatch");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        cbs.attach_disks(std::slice::from_ref(&a), NODE, None)
            .await
            .unwrap();
        let e = cbs
            .attach_disks(std::slice::from_ref(&b), NODE, None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "LimitExceeded.InstanceAttachedDisk");
        let e = cbs.attach_disks(&[], NODE, None).await.unwrap_err();
        assert_eq!(code(&e), "MissingParameter");
        let e = cbs
            .attach_disks(&[b.clone(), b.clone()], NODE, None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue");
    }

    #[tokio::test]
    async fn create_checks_zone_type_size_charge_tags_and_quota() {
        let cbs = FakeCbs::new().with_zone_quota(ZONE, 1);
        let mutations: Vec<(Mutation, &str)> = vec![
            (
                |r| r.placement.zone = "ap-mars-1".into(),
                "InvalidParameterValue",
            ),
            (
                |r| r.disk_type = "CLOUD_FLOPPY".into(),
                "InvalidParameterValue",
            ),
            (|r| r.disk_size = 15, "InvalidParameterValue"),
            (|r| r.disk_size = 0, "InvalidParameterValue"),
            (|r| r.disk_count = 0, "InvalidParameterValue"),
            (
                |r| r.disk_charge_type = "FREE".into(),
                "InvalidParameterValue",
            ),
            (
                |r| r.disk_charge_type = "PREPAID".into(),
                "MissingParameter",
            ),
            (
                |r| r.throughput_performance = Some(100),
                "InvalidParameterValue",
            ),
            (|r| r.encrypt = Some("YES".into()), "InvalidParameterValue"),
            (
                |r| {
                    r.tags = vec![Tag {
                        key: "qcloud:x".into(),
                        value: "v".into(),
                    }]
                },
                "InvalidParameter",
            ),
            (
                |r| r.snapshot_id = Some("snap-none".into()),
                "InvalidSnapshotId.NotFound",
            ),
        ];
        for (mutate, want) in mutations {
            let mut request = create_request("x", 20);
            mutate(&mut request);
            let e = cbs.create_disks(&request, None).await.unwrap_err();
            assert_eq!(code(&e), want, "{request:?}");
        }
        create_one(&cbs, "fits").await;
        let e = cbs
            .create_disks(&create_request("over", 20), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceInsufficient.OverQuota");
        assert_eq!(e.kind(), ErrorKind::Quota);
    }

    #[tokio::test]
    async fn a_terminated_prepaid_disk_goes_to_the_recycle_bin() {
        let cbs = FakeCbs::new();
        let mut request = create_request("prepaid", 20);
        request.disk_charge_type = "PREPAID".into();
        request.disk_charge_prepaid = Some(DiskChargePrepaid {
            period: 1,
            renew_flag: None,
        });
        let ids = cbs.create_disks(&request, None).await.unwrap();
        cbs.terminate_disks(&ids, None).await.unwrap();
        assert_eq!(cbs.disk(&ids[0]).unwrap().disk_state, "TORECYCLE");
        let e = cbs.attach_disks(&ids, NODE, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.NotSupported");
        cbs.terminate_disks(&ids, None).await.unwrap();
        assert!(cbs.disks().is_empty());
    }

    #[tokio::test]
    async fn settings_zones_and_policies() {
        let cbs = FakeCbs::new().with_auto_snapshot_policy("asp-daily");
        let zones = cbs.describe_zones(None).await.unwrap();
        let named: Vec<(&str, &str)> = zones
            .iter()
            .map(|z| (z.zone.as_str(), z.zone_id.as_str()))
            .collect();
        assert_eq!(
            named,
            [("ap-guangzhou-3", "100003"), ("ap-guangzhou-4", "100004")]
        );
        let custom = FakeCbs::new().with_zones(&[("ap-shanghai-2", "200002")]);
        assert_eq!(
            custom.describe_zones(None).await.unwrap()[0].zone_id,
            "200002"
        );

        let id = create_one(&cbs, "premium").await;
        let ids = std::slice::from_ref(&id);
        let e = cbs
            .bind_auto_snapshot_policy("asp-none", ids, None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidAutoSnapshotPolicyId.NotFound");
        cbs.bind_auto_snapshot_policy("asp-daily", ids, None)
            .await
            .unwrap();
        let e = cbs
            .bind_auto_snapshot_policy("asp-daily", ids, None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.AlreadyBound");
        assert_eq!(
            cbs.disk(&id).unwrap().auto_snapshot_policy_ids,
            ["asp-daily"]
        );

        let e = cbs
            .modify_disk_extra_performance(&id, 100, None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.NotSupported");
        cbs.modify_disk_type(&id, "CLOUD_SSD", None).await.unwrap();
        assert_eq!(cbs.disk(&id).unwrap().disk_type, "CLOUD_SSD");
        let e = cbs
            .modify_disk_type(&id, "CLOUD_PREMIUM", None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidDisk.NotSupported", "types only go up");

        let mut hssd = create_request("fast", 20);
        hssd.disk_type = "CLOUD_HSSD".into();
        let fast = cbs.create_disks(&hssd, None).await.unwrap().remove(0);
        cbs.modify_disk_extra_performance(&fast, 200, None)
            .await
            .unwrap();
        assert_eq!(cbs.disk(&fast).unwrap().throughput_performance, 200);
        let e = cbs
            .modify_disk_extra_performance(&fast, 651, None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameter");
    }
}
