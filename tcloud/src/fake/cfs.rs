//! [`FakeCfs`]: a stateful in-memory [`CfsApi`] (CFS file systems, their mount targets and GID
//! quotas) that answers as the simulator's CFS service does (`sim/src/cfs*`): the same request
//! checks, `creating` → `available` life cycle, ClientToken idempotency (tokens live 2 hours and
//! die with their file system), paging and error codes. A new file system becomes `available`
//! after [`FakeCfs::with_transition_time`], checked lazily at every call on `tokio::time::Instant`.
//!
//! It exports nothing and owns no directory: the mount target is an address and an fsid only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    ApiError, DEFAULT_ZONES, Fired, Injector, Zone, format_time, random_id, well_formed_id,
    zone_names, zones_from,
};
use crate::cfs::{
    CfsApi, CreateFileSystemRequest, DescribeFileSystemsRequest, DescribeFileSystemsResponse,
    FileSystem, MountTarget, ResourceTag,
};
use crate::error::CloudError;

/// How long a `ClientToken` keeps a create idempotent, as the API documents it.
pub const CLIENT_TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);
/// The permission group every account has.
pub const DEFAULT_PGROUP: &str = "pgroupbasic";
/// Longest `FsName`, bytes.
const MAX_FS_NAME: usize = 64;
/// Longest `ClientToken`, ASCII characters.
const MAX_CLIENT_TOKEN: usize = 64;
/// Most tags a resource may carry.
const MAX_TAGS: usize = 50;
/// Largest `CapacityHardLimit`, GiB.
const MAX_CAPACITY_LIMIT: u64 = 1 << 20;

/// The operations of [`CfsApi`], for counting calls, injecting failures and holding transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CfsOp {
    CreateFileSystem,
    DescribeFileSystems,
    DescribeMountTargets,
    DeleteFileSystem,
    /// `set_group_quota`, the API's `SetUserQuota`.
    SetGroupQuota,
}

impl CfsOp {
    /// The API action, as [`CloudError::Api`] names it.
    pub fn action(self) -> &'static str {
        match self {
            CfsOp::CreateFileSystem => "CreateCfsFileSystem",
            CfsOp::DescribeFileSystems => "DescribeCfsFileSystems",
            CfsOp::DescribeMountTargets => "DescribeMountTargets",
            CfsOp::DeleteFileSystem => "DeleteCfsFileSystem",
            CfsOp::SetGroupQuota => "SetUserQuota",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LifeCycle {
    Creating,
    Available,
}

impl LifeCycle {
    fn as_str(self) -> &'static str {
        match self {
            LifeCycle::Creating => "creating",
            LifeCycle::Available => "available",
        }
    }
}

/// The `creating` → `available` transition.
#[derive(Debug, Clone)]
struct Pending {
    due: Instant,
    /// Started while CreateFileSystem was held with [`FakeCfs::set_stuck`].
    stuck: bool,
}

#[derive(Debug, Clone)]
struct FileSystemRecord {
    file_system_id: String,
    fs_name: String,
    zone: String,
    zone_id: String,
    protocol: &'static str,
    storage_type: &'static str,
    pgroup_id: String,
    net_interface: &'static str,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
    tags: Vec<ResourceTag>,
    created_at: i64,
    state: LifeCycle,
    pending: Option<Pending>,
    ip_address: String,
    fsid: String,
    /// GID → CapacityHardLimit, GiB.
    group_quotas: BTreeMap<u32, u64>,
    used_bytes: u64,
}

impl FileSystemRecord {
    fn view(&self) -> FileSystem {
        FileSystem {
            file_system_id: self.file_system_id.clone(),
            fs_name: self.fs_name.clone(),
            life_cycle_state: self.state.as_str().to_owned(),
            size_byte: if self.state == LifeCycle::Available {
                self.used_bytes
            } else {
                0
            },
            zone: self.zone.clone(),
            storage_type: self.storage_type.to_owned(),
            creation_time: format_time(self.created_at),
            tags: self.tags.clone(),
        }
    }

    fn inspect(&self) -> FakeFileSystem {
        FakeFileSystem {
            file_system_id: self.file_system_id.clone(),
            fs_name: self.fs_name.clone(),
            life_cycle_state: self.state.as_str(),
            zone: self.zone.clone(),
            zone_id: self.zone_id.clone(),
            protocol: self.protocol,
            storage_type: self.storage_type,
            pgroup_id: self.pgroup_id.clone(),
            net_interface: self.net_interface,
            vpc_id: self.vpc_id.clone(),
            subnet_id: self.subnet_id.clone(),
            tags: self.tags.clone(),
            ip_address: self.ip_address.clone(),
            fsid: self.fsid.clone(),
            group_quotas: self.group_quotas.clone(),
            size_byte: self.used_bytes,
        }
    }
}

/// A file system as the fake holds it, for tests to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFileSystem {
    pub file_system_id: String,
    pub fs_name: String,
    /// One of [`crate::cfs::life_cycle`].
    pub life_cycle_state: &'static str,
    pub zone: String,
    pub zone_id: String,
    pub protocol: &'static str,
    pub storage_type: &'static str,
    pub pgroup_id: String,
    pub net_interface: &'static str,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub tags: Vec<ResourceTag>,
    /// The mount target's address and NFS export name.
    pub ip_address: String,
    pub fsid: String,
    /// GID → capacity hard limit, GiB.
    pub group_quotas: BTreeMap<u32, u64>,
    /// What `SizeByte` reports once available ([`FakeCfs::set_used_bytes`]).
    pub size_byte: u64,
}

#[derive(Debug, Clone)]
struct TokenEntry {
    file_system_id: String,
    created: Instant,
}

#[derive(Debug)]
struct State {
    zones: Vec<Zone>,
    /// Permission groups besides [`DEFAULT_PGROUP`].
    pgroups: Vec<String>,
    max_file_systems: Option<u64>,
    describe_not_found_error: bool,
    transition_time: Duration,
    /// Kept in creation order, the order Describe lists them in.
    file_systems: Vec<FileSystemRecord>,
    client_tokens: BTreeMap<String, TokenEntry>,
    injector: Injector<CfsOp>,
}

/// The in-memory CFS. Clones share one state, so a test can keep a handle to the fake it gave
/// to the code under test.
#[derive(Debug, Clone)]
pub struct FakeCfs {
    state: Arc<Mutex<State>>,
}

impl Default for FakeCfs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCfs {
    /// The simulator's defaults: zones `ap-guangzhou-3` (100003) and `ap-guangzhou-4` (100004),
    /// only the permission group `pgroupbasic`, no file-system limit, DescribeCfsFileSystems of an
    /// unknown ID answering an empty list, and file systems available by the next call.
    pub fn new() -> Self {
        FakeCfs {
            state: Arc::new(Mutex::new(State {
                zones: zones_from(&DEFAULT_ZONES),
                pgroups: Vec::new(),
                max_file_systems: None,
                describe_not_found_error: false,
                transition_time: Duration::ZERO,
                file_systems: Vec::new(),
                client_tokens: BTreeMap::new(),
                injector: Injector::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a new file system stays `creating`. Zero (the default): the next call sees it
    /// `available`.
    pub fn with_transition_time(self, time: Duration) -> Self {
        self.set_transition_time(time);
        self
    }

    /// Changes the transition time for file systems created from now on.
    pub fn set_transition_time(&self, time: Duration) {
        self.lock().transition_time = time;
    }

    /// Replaces the zones, as `(name, numeric ID)` pairs like `("ap-guangzhou-3", "100003")`.
    pub fn with_zones(self, zones: &[(&str, &str)]) -> Self {
        self.lock().zones = zones_from(zones);
        self
    }

    /// A permission group that exists besides `pgroupbasic` (`--cfs-pgroup`).
    pub fn with_pgroup(self, pgroup_id: &str) -> Self {
        self.lock().pgroups.push(pgroup_id.to_owned());
        self
    }

    /// Most file systems the account may hold (`--cfs-max-file-systems`).
    pub fn with_max_file_systems(self, max: u64) -> Self {
        self.lock().max_file_systems = Some(max);
        self
    }

    /// DescribeCfsFileSystems of an unknown `FileSystemId` fails with
    /// `ResourceNotFound.FileSystemNotFound` instead of answering an empty list
    /// (`--cfs-describe-not-found-error`).
    pub fn with_describe_not_found_error(self) -> Self {
        self.lock().describe_not_found_error = true;
        self
    }

    /// Makes the `n`th call of `op` (1-based, counted from now) fail with the API error `code`,
    /// without taking effect.
    pub fn fail_nth(&self, op: CfsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, false);
    }

    /// Makes the `n`th call of `op` take effect and then fail with `code`, as when the answer of
    /// a successful call is lost on its way back.
    pub fn lose_nth_response(&self, op: CfsOp, n: u64, code: &str) {
        self.lock().injector.arm(op, n, code, true);
    }

    /// Holds file systems created from now on in `creating` while `op` (CreateFileSystem) is
    /// held: the simulator's `stuck` fault.
    pub fn set_stuck(&self, op: CfsOp, stuck: bool) {
        self.lock().injector.set_stuck(op, stuck);
    }

    /// How many times `op` was called, failed calls included.
    pub fn calls(&self, op: CfsOp) -> u64 {
        self.lock().injector.calls(op)
    }

    /// Sets the bytes `SizeByte` reports for an available file system. False when there is no
    /// such file system.
    pub fn set_used_bytes(&self, file_system_id: &str, bytes: u64) -> bool {
        self.lock()
            .file_system_mut(file_system_id)
            .map(|f| f.used_bytes = bytes)
            .is_some()
    }

    /// Every file system, in creation order.
    pub fn file_systems(&self) -> Vec<FakeFileSystem> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
            .file_systems
            .iter()
            .map(FileSystemRecord::inspect)
            .collect()
    }

    pub fn file_system(&self, file_system_id: &str) -> Option<FakeFileSystem> {
        let mut state = self.lock();
        state.settle(Instant::now());
        state
            .file_system(file_system_id)
            .map(FileSystemRecord::inspect)
    }

    /// The file system a live ClientToken answers with.
    pub fn client_token(&self, token: &str) -> Option<String> {
        let state = self.lock();
        state
            .token_target(token, Instant::now())
            .map(|f| f.file_system_id.clone())
    }

    /// Runs one API call: counts it, completes due transitions, applies an injected failure.
    fn call<R>(
        &self,
        op: CfsOp,
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

/// The network of a new file system.
#[derive(Debug)]
struct Network {
    net_interface: &'static str,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
}

/// A validated CreateCfsFileSystem request.
#[derive(Debug)]
struct CreatePlan {
    zone_id: String,
    protocol: &'static str,
    storage_type: &'static str,
    network: Network,
    fs_name: Option<String>,
}

/// An optional argument, with `""` treated as absent (the client sends empty strings).
fn given(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}

fn given_opt(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl State {
    fn file_system(&self, id: &str) -> Option<&FileSystemRecord> {
        self.file_systems.iter().find(|f| f.file_system_id == id)
    }

    fn file_system_mut(&mut self, id: &str) -> Option<&mut FileSystemRecord> {
        self.file_systems
            .iter_mut()
            .find(|f| f.file_system_id == id)
    }

    /// Makes every due `creating` file system `available`.
    fn settle(&mut self, now: Instant) {
        let held = self.injector.is_stuck(CfsOp::CreateFileSystem);
        for fs in &mut self.file_systems {
            let due = fs
                .pending
                .as_ref()
                .is_some_and(|p| p.due <= now && !(p.stuck && held));
            if due {
                fs.pending = None;
                fs.state = LifeCycle::Available;
            }
        }
    }

    /// The file system a live (unexpired) token created, if it still exists.
    fn token_target(&self, token: &str, now: Instant) -> Option<&FileSystemRecord> {
        let entry = self.client_tokens.get(token)?;
        if now.saturating_duration_since(entry.created) >= CLIENT_TOKEN_TTL {
            return None;
        }
        self.file_system(&entry.file_system_id)
    }

    /// Forgets expired tokens and tokens of deleted file systems.
    fn prune_tokens(&mut self, now: Instant) {
        let live: Vec<String> = self
            .file_systems
            .iter()
            .map(|f| f.file_system_id.clone())
            .collect();
        self.client_tokens.retain(|_, entry| {
            now.saturating_duration_since(entry.created) < CLIENT_TOKEN_TTL
                && live.contains(&entry.file_system_id)
        });
    }

    fn plan_create(&self, request: &CreateFileSystemRequest) -> Result<CreatePlan, ApiError> {
        let zone_id = self
            .zones
            .iter()
            .find(|z| z.name == request.zone)
            .map(|z| z.id.clone())
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidParameterValue.InvalidZoneOrZoneId",
                    format!(
                        "Zone {:?} is not a zone of the region; zones: {}.",
                        request.zone,
                        zone_names(&self.zones)
                    ),
                )
            })?;
        let net_interface = ["VPC", "BASIC", "CCN"]
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(&request.net_interface))
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidParameterValue.InvalidNetInterface",
                    format!(
                        "NetInterface {:?} is not VPC, BASIC or CCN.",
                        request.net_interface
                    ),
                )
            })?;
        let protocol = match given(&request.protocol) {
            None => "NFS",
            Some(name) => ["NFS", "CIFS", "TURBO"]
                .into_iter()
                .find(|p| *p == name)
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidParameterValue.InvalidProtocol",
                        format!("Protocol {name:?} is not NFS, CIFS or TURBO."),
                    )
                })?,
        };
        let storage_type = match given(&request.storage_type) {
            None => "SD",
            Some(name) => ["SD", "HP", "TB", "TP"]
                .into_iter()
                .find(|t| *t == name)
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidParameterValue.InvalidStorageType",
                        format!("StorageType {name:?} is not SD, HP, TB or TP."),
                    )
                })?,
        };
        let turbo = matches!(storage_type, "TB" | "TP");
        if turbo != (protocol == "TURBO") {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidProtocol",
                format!(
                    "Protocol {protocol} does not go with StorageType {storage_type}: the Turbo types (TB, TP) take TURBO, SD and HP take NFS or CIFS."
                ),
            ));
        }
        let pgroup_id = request.p_group_id.as_str();
        if pgroup_id != DEFAULT_PGROUP && !well_formed_id(pgroup_id, "pgroup-") {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidPgroupId",
                format!(
                    "PGroupId {pgroup_id:?} is not a permission group ID (pgroup-xxxxxxxx or pgroupbasic)."
                ),
            ));
        }
        if pgroup_id != DEFAULT_PGROUP && !self.pgroups.iter().any(|p| p == pgroup_id) {
            return Err(ApiError::new(
                "ResourceNotFound.PgroupNotFound",
                format!("The permission group {pgroup_id} does not exist."),
            ));
        }
        let network = plan_network(request, net_interface, turbo)?;
        let fs_name = given_opt(&request.fs_name).map(str::to_owned);
        if let Some(name) = &fs_name {
            check_fs_name(name)?;
        }
        check_tags(&request.resource_tags)?;
        if let Some(token) = &request.client_token {
            check_client_token(token)?;
        }
        if turbo {
            // The Turbo types need a Capacity, which the client's request cannot carry.
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTurboCapacity",
                format!("Capacity is required for {storage_type}."),
            ));
        }
        Ok(CreatePlan {
            zone_id,
            protocol,
            storage_type,
            network,
            fs_name,
        })
    }

    fn create_file_system(
        &mut self,
        request: &CreateFileSystemRequest,
        now: Instant,
    ) -> Result<String, ApiError> {
        let plan = self.plan_create(request)?;
        self.prune_tokens(now);
        if let Some(token) = &request.client_token
            && let Some(existing) = self.token_target(token, now)
        {
            return Ok(existing.file_system_id.clone());
        }
        if let Some(max) = self.max_file_systems
            && self.file_systems.len() as u64 >= max
        {
            return Err(ApiError::new(
                "ResourceInsufficient.FileSystemLimitExceeded",
                format!(
                    "The account holds {} of at most {max} file systems.",
                    self.file_systems.len()
                ),
            ));
        }
        let mut id = random_id("cfs-", 8);
        while self.file_system(&id).is_some() {
            id = random_id("cfs-", 8);
        }
        let mut ip = random_ip();
        while self.file_systems.iter().any(|f| f.ip_address == ip) {
            ip = random_ip();
        }
        let mut fsid = random_id("", 8);
        while self.file_systems.iter().any(|f| f.fsid == fsid) {
            fsid = random_id("", 8);
        }
        self.file_systems.push(FileSystemRecord {
            file_system_id: id.clone(),
            fs_name: plan.fs_name.unwrap_or_else(|| id.clone()),
            zone: request.zone.clone(),
            zone_id: plan.zone_id,
            protocol: plan.protocol,
            storage_type: plan.storage_type,
            pgroup_id: request.p_group_id.clone(),
            net_interface: plan.network.net_interface,
            vpc_id: plan.network.vpc_id,
            subnet_id: plan.network.subnet_id,
            tags: request.resource_tags.clone(),
            created_at: crate::time::unix_now(),
            state: LifeCycle::Creating,
            pending: Some(Pending {
                due: now + self.transition_time,
                stuck: self.injector.is_stuck(CfsOp::CreateFileSystem),
            }),
            ip_address: ip,
            fsid,
            group_quotas: BTreeMap::new(),
            used_bytes: 0,
        });
        if let Some(token) = &request.client_token {
            self.client_tokens.insert(
                token.clone(),
                TokenEntry {
                    file_system_id: id.clone(),
                    created: now,
                },
            );
        }
        Ok(id)
    }

    fn describe_file_systems(
        &self,
        request: &DescribeFileSystemsRequest,
    ) -> Result<DescribeFileSystemsResponse, ApiError> {
        let id = given_opt(&request.file_system_id);
        if let Some(id) = id {
            check_fs_id(id, "InvalidParameterValue.InvalidFileSystemId")?;
        }
        let matching: Vec<&FileSystemRecord> = self
            .file_systems
            .iter()
            .filter(|f| id.is_none_or(|id| f.file_system_id == id))
            .collect();
        let total_count = matching.len() as u64;
        let listed = page(matching, request.offset, request.limit)?;
        if let Some(id) = id
            && total_count == 0
            && self.describe_not_found_error
        {
            return Err(fs_not_found(id));
        }
        Ok(DescribeFileSystemsResponse {
            file_systems: listed.into_iter().map(FileSystemRecord::view).collect(),
            total_count,
        })
    }

    fn describe_mount_targets(&self, id: &str) -> Result<Vec<MountTarget>, ApiError> {
        check_fs_id(id, "InvalidParameterValue.MissingFileSystemId")?;
        let fs = self.file_system(id).ok_or_else(|| fs_not_found(id))?;
        Ok(vec![MountTarget {
            file_system_id: fs.file_system_id.clone(),
            ip_address: fs.ip_address.clone(),
            fsid: fs.fsid.clone(),
            life_cycle_state: fs.state.as_str().to_owned(),
        }])
    }

    fn delete_file_system(&mut self, id: &str, now: Instant) -> Result<(), ApiError> {
        check_fs_id(id, "InvalidParameterValue.MissingFsParameter")?;
        let fs = self.file_system(id).ok_or_else(|| fs_not_found(id))?;
        if fs.state != LifeCycle::Available {
            return Err(invalid_status(id, fs.state));
        }
        self.file_systems.retain(|f| f.file_system_id != id);
        self.prune_tokens(now);
        Ok(())
    }

    /// SetUserQuota with `UserType` `Gid`.
    fn set_group_quota(&mut self, id: &str, gid: u32, capacity_gib: u64) -> Result<(), ApiError> {
        check_fs_id(id, "InvalidParameterValue.MissingFileSystemId")?;
        if !(1..=MAX_CAPACITY_LIMIT).contains(&capacity_gib) {
            return Err(ApiError::new(
                "InvalidParameterValue.QuotaCapLimitError",
                format!(
                    "CapacityHardLimit {capacity_gib} GiB is out of range: it must be within [1, {MAX_CAPACITY_LIMIT}]."
                ),
            ));
        }
        let fs = self.file_system_mut(id).ok_or_else(|| fs_not_found(id))?;
        if fs.state != LifeCycle::Available {
            return Err(invalid_status(id, fs.state));
        }
        fs.group_quotas.insert(gid, capacity_gib);
        Ok(())
    }
}

impl CfsApi for FakeCfs {
    async fn create_file_system(
        &self,
        request: &CreateFileSystemRequest,
        _deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        self.call(CfsOp::CreateFileSystem, |s, now| {
            s.create_file_system(request, now)
        })
    }

    async fn describe_file_systems(
        &self,
        request: &DescribeFileSystemsRequest,
        _deadline: Option<Instant>,
    ) -> Result<DescribeFileSystemsResponse, CloudError> {
        self.call(CfsOp::DescribeFileSystems, |s, _| {
            s.describe_file_systems(request)
        })
    }

    async fn describe_mount_targets(
        &self,
        file_system_id: &str,
        _deadline: Option<Instant>,
    ) -> Result<Vec<MountTarget>, CloudError> {
        self.call(CfsOp::DescribeMountTargets, |s, _| {
            s.describe_mount_targets(file_system_id)
        })
    }

    async fn delete_file_system(
        &self,
        file_system_id: &str,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CfsOp::DeleteFileSystem, |s, now| {
            s.delete_file_system(file_system_id, now)
        })
    }

    async fn set_group_quota(
        &self,
        file_system_id: &str,
        gid: u32,
        capacity_gib: u64,
        _deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.call(CfsOp::SetGroupQuota, |s, _| {
            s.set_group_quota(file_system_id, gid, capacity_gib)
        })
    }
}

fn plan_network(
    request: &CreateFileSystemRequest,
    net_interface: &'static str,
    turbo: bool,
) -> Result<Network, ApiError> {
    let wrong_network = |why: &str| {
        ApiError::new(
            "InvalidParameterValue.InvalidNetInterface",
            format!("NetInterface {net_interface}: {why}"),
        )
    };
    let mut network = Network {
        net_interface,
        vpc_id: None,
        subnet_id: None,
    };
    match net_interface {
        "VPC" | "BASIC" if turbo => return Err(wrong_network("the Turbo types need CCN.")),
        "CCN" if !turbo => {
            return Err(wrong_network("CCN is for the Turbo types (TB, TP) only."));
        }
        "VPC" => {
            let (Some(vpc), Some(subnet)) = (given(&request.vpc_id), given(&request.subnet_id))
            else {
                return Err(ApiError::new(
                    "InvalidParameterValue.MissingVpcParameter",
                    "A VPC file system needs VpcId and SubnetId.",
                ));
            };
            if !well_formed_id(vpc, "vpc-") {
                return Err(ApiError::new(
                    "InvalidParameterValue.InvalidVpcId",
                    format!("VpcId {vpc:?} is not a VPC ID (vpc-xxxxxxxx)."),
                ));
            }
            if !well_formed_id(subnet, "subnet-") {
                return Err(ApiError::new(
                    "InvalidParameterValue.InvalidSubnetId",
                    format!("SubnetId {subnet:?} is not a subnet ID (subnet-xxxxxxxx)."),
                ));
            }
            network.vpc_id = Some(vpc.to_owned());
            network.subnet_id = Some(subnet.to_owned());
        }
        "CCN" => {
            // CcnId and CidrBlock are not fields of the client's request.
            return Err(ApiError::new(
                "MissingParameter",
                "A CCN file system needs CcnId and CidrBlock.",
            ));
        }
        _ => {}
    }
    Ok(network)
}

fn fs_not_found(id: &str) -> ApiError {
    ApiError::new(
        "ResourceNotFound.FileSystemNotFound",
        format!("The file system {id} does not exist."),
    )
}

fn invalid_status(id: &str, state: LifeCycle) -> ApiError {
    ApiError::new(
        "InvalidParameterValue.InvalidFsStatus",
        format!(
            "The file system {id} is {}: the operation needs it available.",
            state.as_str()
        ),
    )
}

/// A `FileSystemId` argument: not empty (`empty_code` otherwise) and shaped `cfs-xxxx`.
fn check_fs_id(id: &str, empty_code: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::new(empty_code, "FileSystemId is empty."));
    }
    if !well_formed_id(id, "cfs-") {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidFileSystemId",
            format!("FileSystemId {id:?} is not a file system ID (cfs-xxxxxxxx)."),
        ));
    }
    Ok(())
}

fn check_fs_name(name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_FS_NAME {
        return Err(ApiError::new(
            "InvalidParameterValue.FsNameLimitExceeded",
            format!(
                "FsName is {} bytes long; at most {MAX_FS_NAME} are allowed.",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidFsName",
            "FsName contains control characters.",
        ));
    }
    Ok(())
}

fn check_client_token(token: &str) -> Result<(), ApiError> {
    if token.len() > MAX_CLIENT_TOKEN {
        return Err(ApiError::new(
            "InvalidParameterValue.ClientTokenLimitExceeded",
            format!(
                "ClientToken is {} bytes long; at most {MAX_CLIENT_TOKEN} ASCII characters are allowed.",
                token.len()
            ),
        ));
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidClientToken",
            "ClientToken must be 1 to 64 printable ASCII characters.",
        ));
    }
    Ok(())
}

/// `ResourceTags` as the tag service accepts them.
fn check_tags(tags: &[ResourceTag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            "ResourceInsufficient.TagLimitExceeded",
            format!(
                "ResourceTags has {} tags; a resource carries at most {MAX_TAGS}.",
                tags.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        let key = tag.tag_key.as_str();
        if key.trim().is_empty() {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTagKey",
                "ResourceTags: a tag key is empty.",
            ));
        }
        let lower = key.to_ascii_lowercase();
        if ["qcloud", "tencent", "project"]
            .iter()
            .any(|reserved| lower.starts_with(reserved))
        {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTagKey",
                format!("ResourceTags: key {key:?} starts with a word reserved for the system."),
            ));
        }
        if key.len() > 127 {
            return Err(ApiError::new(
                "InvalidParameterValue.TagKeyLimitExceeded",
                format!("ResourceTags: key {key:?} is longer than 127 bytes."),
            ));
        }
        if tag.tag_value.is_empty() || tag.tag_value.chars().any(char::is_control) {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTagValue",
                format!("ResourceTags: the value of {key:?} is empty or has invalid characters."),
            ));
        }
        if tag.tag_value.len() > 255 {
            return Err(ApiError::new(
                "InvalidParameterValue.TagValueLimitExceeded",
                format!("ResourceTags: the value of {key:?} is longer than 255 bytes."),
            ));
        }
        if !seen.insert(key) {
            return Err(ApiError::new(
                "InvalidParameterValue.DuplicatedTagKey",
                format!("ResourceTags: key {key:?} appears more than once."),
            ));
        }
    }
    Ok(())
}

/// `Offset`/`Limit` (default 20, 1 to 100) applied to `items`.
fn page<T>(items: Vec<T>, offset: Option<u64>, limit: Option<u64>) -> Result<Vec<T>, ApiError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_value(format!(
            "Limit {limit} is out of range: it must be within [1, 100]."
        )));
    }
    Ok(items
        .into_iter()
        .skip(usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect())
}

/// A random host address in 10.0.0.0/8 (last octet 1-254).
fn random_ip() -> String {
    format!(
        "10.{}.{}.{}",
        fastrand::u8(..),
        fastrand::u8(..),
        fastrand::u8(1..=254)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::cfs::life_cycle;

    fn create_request(name: &str) -> CreateFileSystemRequest {
        CreateFileSystemRequest {
            zone: "ap-guangzhou-3".into(),
            net_interface: "VPC".into(),
            p_group_id: DEFAULT_PGROUP.into(),
            protocol: "NFS".into(),
            storage_type: "SD".into(),
            vpc_id: "vpc-abc123".into(),
            subnet_id: "subnet-abc123".into(),
            fs_name: Some(name.into()),
            resource_tags: vec![ResourceTag {
                tag_key: "csi-volume".into(),
                tag_value: name.into(),
            }],
            client_token: None,
        }
    }

    fn by_id(id: &str) -> DescribeFileSystemsRequest {
        DescribeFileSystemsRequest {
            file_system_id: Some(id.into()),
            ..Default::default()
        }
    }

    /// A change to a valid request that makes it invalid.
    type Mutation = fn(&mut CreateFileSystemRequest);

    fn code(error: &CloudError) -> &str {
        error.code().unwrap_or("<no code>")
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_system_is_creating_then_available_after_the_transition_time() {
        let step = Duration::from_secs(30);
        let cfs = FakeCfs::new().with_transition_time(step);
        let id = cfs
            .create_file_system(&create_request("pvc-1"), None)
            .await
            .unwrap();
        let seen = cfs.describe_file_systems(&by_id(&id), None).await.unwrap();
        assert_eq!(seen.total_count, 1);
        let fs = &seen.file_systems[0];
        assert_eq!(fs.life_cycle_state, life_cycle::CREATING);
        assert_eq!(
            (
                fs.fs_name.as_str(),
                fs.zone.as_str(),
                fs.storage_type.as_str()
            ),
            ("pvc-1", "ap-guangzhou-3", "SD")
        );
        assert_eq!(fs.tag("csi-volume"), Some("pvc-1"));
        let e = cfs.delete_file_system(&id, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.InvalidFsStatus");
        assert_eq!(e.kind(), ErrorKind::Busy);
        let e = cfs.set_group_quota(&id, 1000, 10, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.InvalidFsStatus");

        tokio::time::advance(step - Duration::from_millis(1)).await;
        assert_eq!(
            cfs.file_system(&id).unwrap().life_cycle_state,
            life_cycle::CREATING
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let seen = cfs.describe_file_systems(&by_id(&id), None).await.unwrap();
        assert_eq!(seen.file_systems[0].life_cycle_state, life_cycle::AVAILABLE);

        let targets = cfs.describe_mount_targets(&id, None).await.unwrap();
        assert_eq!(targets.len(), 1);
        let target = &targets[0];
        assert_eq!(target.file_system_id, id);
        assert!(target.ip_address.starts_with("10."), "{target:?}");
        assert_eq!(target.fsid.len(), 8);
        assert_eq!(target.life_cycle_state, life_cycle::AVAILABLE);

        cfs.set_group_quota(&id, 1000, 10, None).await.unwrap();
        cfs.set_group_quota(&id, 1000, 20, None).await.unwrap();
        let e = cfs.set_group_quota(&id, 1001, 0, None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.QuotaCapLimitError");
        let inspected = cfs.file_system(&id).unwrap();
        assert_eq!(inspected.group_quotas, BTreeMap::from([(1000, 20)]));
        assert_eq!(inspected.ip_address, target.ip_address);

        assert!(cfs.set_used_bytes(&id, 4096));
        let seen = cfs.describe_file_systems(&by_id(&id), None).await.unwrap();
        assert_eq!(seen.file_systems[0].size_byte, 4096);

        cfs.delete_file_system(&id, None).await.unwrap();
        assert!(cfs.file_systems().is_empty());
        let e = cfs.delete_file_system(&id, None).await.unwrap_err();
        assert_eq!(code(&e), "ResourceNotFound.FileSystemNotFound");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = cfs.describe_mount_targets(&id, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_answer_for_two_hours_and_die_with_their_file_system() {
        let cfs = FakeCfs::new();
        let mut request = create_request("pvc-t");
        request.client_token = Some("token-1".into());
        let first = cfs.create_file_system(&request, None).await.unwrap();
        let again = cfs.create_file_system(&request, None).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(cfs.file_systems().len(), 1);
        assert_eq!(cfs.client_token("token-1"), Some(first.clone()));

        tokio::time::advance(CLIENT_TOKEN_TTL).await;
        assert_eq!(cfs.client_token("token-1"), None, "expired after two hours");
        let after_ttl = cfs.create_file_system(&request, None).await.unwrap();
        assert_ne!(after_ttl, first);
        assert_eq!(cfs.file_systems().len(), 2);

        cfs.delete_file_system(&after_ttl, None).await.unwrap();
        assert_eq!(
            cfs.client_token("token-1"),
            None,
            "pruned with its file system"
        );
        let after_delete = cfs.create_file_system(&request, None).await.unwrap();
        assert_ne!(after_delete, after_ttl);
        assert_eq!(cfs.client_token("token-1"), Some(after_delete));

        for (bad, want) in [
            (
                "t".repeat(65),
                "InvalidParameterValue.ClientTokenLimitExceeded",
            ),
            (String::new(), "InvalidParameterValue.InvalidClientToken"),
            (
                "with space".to_owned(),
                "InvalidParameterValue.InvalidClientToken",
            ),
        ] {
            request.client_token = Some(bad);
            let e = cfs.create_file_system(&request, None).await.unwrap_err();
            assert_eq!(code(&e), want);
        }
    }

    #[tokio::test]
    async fn names_longer_than_64_bytes_are_refused() {
        let cfs = FakeCfs::new();
        let id = cfs
            .create_file_system(&create_request(&"n".repeat(64)), None)
            .await
            .unwrap();
        assert_eq!(cfs.file_system(&id).unwrap().fs_name.len(), 64);
        for long in ["n".repeat(65), "卷".repeat(22)] {
            let e = cfs
                .create_file_system(&create_request(&long), None)
                .await
                .unwrap_err();
            assert_eq!(code(&e), "InvalidParameterValue.FsNameLimitExceeded");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
        let mut unnamed = create_request("unnamed");
        unnamed.fs_name = None;
        let id = cfs.create_file_system(&unnamed, None).await.unwrap();
        assert_eq!(
            cfs.file_system(&id).unwrap().fs_name,
            id,
            "named after its ID"
        );
    }

    #[tokio::test]
    async fn describe_of_an_unknown_id_is_empty_unless_configured_otherwise() {
        let cfs = FakeCfs::new();
        let seen = cfs
            .describe_file_systems(&by_id("cfs-unknown1"), None)
            .await
            .unwrap();
        assert_eq!((seen.total_count, seen.file_systems.len()), (0, 0));
        let e = cfs
            .describe_file_systems(&by_id("nfs-1"), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.InvalidFileSystemId");
        let e = cfs.describe_mount_targets("", None).await.unwrap_err();
        assert_eq!(code(&e), "InvalidParameterValue.MissingFileSystemId");

        let strict = FakeCfs::new().with_describe_not_found_error();
        let e = strict
            .describe_file_systems(&by_id("cfs-unknown1"), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceNotFound.FileSystemNotFound");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn describe_pages_with_total_count() {
        let cfs = FakeCfs::new();
        let mut ids = Vec::new();
        for n in 0..23 {
            ids.push(
                cfs.create_file_system(&create_request(&format!("fs-{n}")), None)
                    .await
                    .unwrap(),
            );
        }
        let page_of = |offset, limit| DescribeFileSystemsRequest {
            offset,
            limit,
            ..Default::default()
        };
        let first = cfs
            .describe_file_systems(&page_of(None, None), None)
            .await
            .unwrap();
        assert_eq!((first.total_count, first.file_systems.len()), (23, 20));
        let rest = cfs
            .describe_file_systems(&page_of(Some(20), Some(100)), None)
            .await
            .unwrap();
        assert_eq!((rest.total_count, rest.file_systems.len()), (23, 3));
        let listed: Vec<String> = first
            .file_systems
            .iter()
            .chain(&rest.file_systems)
            .map(|f| f.file_system_id.clone())
            .collect();
        assert_eq!(listed, ids);
        for limit in [0, 101] {
            let e = cfs
                .describe_file_systems(&page_of(None, Some(limit)), None)
                .await
                .unwrap_err();
            assert_eq!(code(&e), "InvalidParameterValue", "limit {limit}");
        }
    }

    #[tokio::test]
    async fn an_injected_failure_fires_on_exactly_the_nth_call() {
        let cfs = FakeCfs::new();
        cfs.fail_nth(CfsOp::CreateFileSystem, 2, "RequestLimitExceeded");
        cfs.create_file_system(&create_request("a"), None)
            .await
            .unwrap();
        let e = cfs
            .create_file_system(&create_request("b"), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "RequestLimitExceeded");
        assert_eq!(e.kind(), ErrorKind::Throttled);
        assert!(e.to_string().starts_with("CreateCfsFileSystem: "), "{e}");
        assert_eq!(cfs.file_systems().len(), 1, "the refused call made nothing");
        cfs.create_file_system(&create_request("c"), None)
            .await
            .unwrap();
        assert_eq!(cfs.calls(CfsOp::CreateFileSystem), 3);
        assert_eq!(cfs.calls(CfsOp::DescribeFileSystems), 0);

        let id = cfs.file_systems()[0].file_system_id.clone();
        cfs.lose_nth_response(CfsOp::DeleteFileSystem, 1, "InternalError");
        let e = cfs.delete_file_system(&id, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(cfs.file_system(&id).is_none(), "the delete took effect");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_create_stays_creating_until_released() {
        let cfs = FakeCfs::new();
        cfs.set_stuck(CfsOp::CreateFileSystem, true);
        let id = cfs
            .create_file_system(&create_request("stuck"), None)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(
            cfs.file_system(&id).unwrap().life_cycle_state,
            life_cycle::CREATING
        );
        let targets = cfs.describe_mount_targets(&id, None).await.unwrap();
        assert_eq!(targets[0].life_cycle_state, life_cycle::CREATING);
        cfs.set_stuck(CfsOp::CreateFileSystem, false);
        assert_eq!(
            cfs.file_system(&id).unwrap().life_cycle_state,
            life_cycle::AVAILABLE
        );
    }

    #[tokio::test]
    async fn create_checks_follow_the_simulator() {
        let cfs = FakeCfs::new()
            .with_pgroup("pgroup-team1")
            .with_max_file_systems(1);
        let mutations: Vec<(Mutation, &str)> = vec![
            (
                |r| r.zone = "ap-mars-1".into(),
                "InvalidParameterValue.InvalidZoneOrZoneId",
            ),
            (
                |r| r.net_interface = "LAN".into(),
                "InvalidParameterValue.InvalidNetInterface",
            ),
            (
                |r| r.protocol = "SMB".into(),
                "InvalidParameterValue.InvalidProtocol",
            ),
            (
                |r| r.storage_type = "XL".into(),
                "InvalidParameterValue.InvalidStorageType",
            ),
            (
                |r| r.storage_type = "TB".into(),
                "InvalidParameterValue.InvalidProtocol",
            ),
            (
                |r| r.p_group_id = "group-1".into(),
                "InvalidParameterValue.InvalidPgroupId",
            ),
            (
                |r| r.p_group_id = "pgroup-other1".into(),
                "ResourceNotFound.PgroupNotFound",
            ),
            (
                |r| r.subnet_id = String::new(),
                "InvalidParameterValue.MissingVpcParameter",
            ),
            (
                |r| r.vpc_id = "vpc_1".into(),
                "InvalidParameterValue.InvalidVpcId",
            ),
            (
                |r| r.resource_tags[0].tag_key = "tencent:x".into(),
                "InvalidParameterValue.InvalidTagKey",
            ),
        ];
        for (mutate, want) in mutations {
            let mut request = create_request("x");
            mutate(&mut request);
            let e = cfs.create_file_system(&request, None).await.unwrap_err();
            assert_eq!(code(&e), want, "{request:?}");
        }
        // Empty protocol and storage type mean NFS on SD; `vpc` is accepted in lower case.
        let mut request = create_request("defaults");
        request.protocol = String::new();
        request.storage_type = String::new();
        request.net_interface = "vpc".into();
        request.p_group_id = "pgroup-team1".into();
        let id = cfs.create_file_system(&request, None).await.unwrap();
        let fs = cfs.file_system(&id).unwrap();
        assert_eq!(
            (
                fs.protocol,
                fs.storage_type,
                fs.net_interface,
                fs.zone_id.as_str()
            ),
            ("NFS", "SD", "VPC", "100003")
        );
        let e = cfs
            .create_file_system(&create_request("second"), None)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "ResourceInsufficient.FileSystemLimitExceeded");
        assert_eq!(e.kind(), ErrorKind::Quota);
    }
}
