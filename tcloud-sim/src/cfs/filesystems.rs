//! File system and mount target actions: CreateCfsFileSystem (with ClientToken idempotency),
//! DescribeCfsFileSystems, DeleteCfsFileSystem, UpdateCfsFileSystemName, DescribeMountTargets and
//! DeleteMountTarget. Quotas live in `quotas`; the `creating` → `available` transition in
//! `transitions`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{
    FileSystem, LifeCycleState, MountTarget, NetInterface, Network, Pending, Protocol, StorageType,
    Tag, TokenEntry, private_host_ip, well_formed_id,
};
use super::turbo::{plan_capacity, plan_ccn};
use super::{
    Cfs, DEFAULT_PGROUP, check_fs_id, check_tags, decode, empty_reply, fs_not_found,
    invalid_status, page, reply,
};
use crate::error::ApiError;
use crate::state::{format_time, random_id, unix_now, unix_now_ms};

/// Longest `FsName`, bytes.
const MAX_FS_NAME: usize = 64;
/// Longest `ClientToken`, ASCII characters.
const MAX_CLIENT_TOKEN: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateRequest {
    zone: String,
    net_interface: String,
    #[serde(rename = "PGroupId")]
    pgroup_id: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    storage_type: Option<String>,
    #[serde(default)]
    vpc_id: Option<String>,
    #[serde(default)]
    subnet_id: Option<String>,
    #[serde(default, rename = "MountIP")]
    mount_ip: Option<String>,
    #[serde(default)]
    fs_name: Option<String>,
    #[serde(default)]
    resource_tags: Option<Vec<Tag>>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    ccn_id: Option<String>,
    #[serde(default)]
    cidr_block: Option<String>,
    #[serde(default)]
    capacity: Option<u64>,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    auto_snapshot_policy_id: Option<String>,
    // Accepted as the real API does (Turbo only), not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    enable_auto_scale_up: Option<bool>,
    #[serde(default)]
    cfs_version: Option<String>,
    #[serde(default)]
    meta_type: Option<String>,
}

/// A validated CreateCfsFileSystem request: what the new file system will be.
#[derive(Debug, Clone)]
struct CreatePlan {
    zone: String,
    zone_id: u64,
    protocol: Protocol,
    storage_type: StorageType,
    pgroup_id: String,
    network: Network,
    mount_ip: Option<String>,
    fs_name: Option<String>,
    tags: Vec<Tag>,
    capacity: Option<u64>,
    cfs_version: Option<String>,
}

/// An optional string argument, with `""` treated as absent.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl Cfs {
    /// Checks a CreateCfsFileSystem request against the configuration.
    fn plan_create(&self, request: &CreateRequest) -> Result<CreatePlan, ApiError> {
        let zone_id = self.zone_id(&request.zone).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.InvalidZoneOrZoneId",
                format!(
                    "Zone {:?} is not a zone of {}; zones: {}.",
                    request.zone,
                    self.sim.region,
                    self.zone_names()
                ),
            )
        })?;
        let net_interface = NetInterface::parse(&request.net_interface).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.InvalidNetInterface",
                format!(
                    "NetInterface {:?} is not VPC, BASIC or CCN.",
                    request.net_interface
                ),
            )
        })?;
        let protocol = match given(&request.protocol) {
            None => Protocol::Nfs,
            Some(name) => Protocol::parse(name).ok_or_else(|| {
                ApiError::new(
                    "InvalidParameterValue.InvalidProtocol",
                    format!("Protocol {name:?} is not NFS, CIFS or TURBO."),
                )
            })?,
        };
        let storage_type = match given(&request.storage_type) {
            None => StorageType::Sd,
            Some(name) => StorageType::parse(name).ok_or_else(|| {
                ApiError::new(
                    "InvalidParameterValue.InvalidStorageType",
                    format!("StorageType {name:?} is not SD, HP, TB or TP."),
                )
            })?,
        };
        let turbo = storage_type.is_turbo();
        if turbo != (protocol == Protocol::Turbo) {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidProtocol",
                format!(
                    "Protocol {} does not go with StorageType {}: the Turbo types (TB, TP) take TURBO, SD and HP take NFS or CIFS.",
                    protocol.as_str(),
                    storage_type.as_str()
                ),
            ));
        }
        let pgroup_id = request.pgroup_id.clone();
        if pgroup_id != DEFAULT_PGROUP && !well_formed_id(&pgroup_id, "pgroup-") {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidPgroupId",
                format!(
                    "PGroupId {pgroup_id:?} is not a permission group ID (pgroup-xxxxxxxx or pgroupbasic)."
                ),
            ));
        }
        if !self.pgroup_exists(&pgroup_id) {
            return Err(ApiError::new(
                "ResourceNotFound.PgroupNotFound",
                format!("The permission group {pgroup_id} does not exist."),
            ));
        }
        let network = self.plan_network(request, net_interface, turbo)?;
        let mount_ip = match given(&request.mount_ip) {
            None => None,
            Some(_) if net_interface != NetInterface::Vpc => {
                return Err(ApiError::new(
                    "InvalidParameterValue.InvalidMountTargetIp",
                    "MountIP can only be chosen for a VPC file system.",
                ));
            }
            Some(ip) => {
                if private_host_ip(ip).is_none() {
                    return Err(ApiError::new(
                        "InvalidParameterValue.InvalidMountTargetIp",
                        format!(
                            "MountIP {ip:?} is not a host address of a private range (10/8, 172.16/12, 192.168/16)."
                        ),
                    ));
                }
                if self.store.read(|s| s.cfs.ip_in_use(ip)) {
                    return Err(ip_in_use(ip));
                }
                Some(ip.to_owned())
            }
        };
        let fs_name = given(&request.fs_name).map(str::to_owned);
        if let Some(name) = &fs_name {
            check_fs_name(name)?;
        }
        let tags = request.resource_tags.clone().unwrap_or_default();
        check_tags(&tags)?;
        if let Some(token) = &request.client_token {
            check_client_token(token)?;
        }
        let capacity = plan_capacity(storage_type, request.capacity)?;
        if let Some(snapshot) = given(&request.snapshot_id) {
            return Err(ApiError::new(
                "ResourceNotFound.SnapshotNotFound",
                format!("The snapshot {snapshot} does not exist."),
            ));
        }
        if let Some(policy) = given(&request.auto_snapshot_policy_id) {
            return Err(ApiError::new(
                "InvalidParameter.AutoPolicyNotFound",
                format!("The auto-snapshot policy {policy} does not exist."),
            ));
        }
        let cfs_version = given(&request.cfs_version).map(str::to_owned);
        if let Some(version) = &cfs_version
            && (turbo || !matches!(version.as_str(), "v1.5" | "v3.1"))
        {
            return Err(ApiError::invalid_value(format!(
                "CfsVersion {version:?} is not v1.5 or v3.1 (general-purpose file systems only)."
            )));
        }
        if let Some(meta) = given(&request.meta_type)
            && (!turbo || !matches!(meta, "basic" | "enhanced"))
        {
            return Err(ApiError::invalid_value(format!(
                "MetaType {meta:?} is not basic or enhanced (Turbo file systems only)."
            )));
        }
        Ok(CreatePlan {
            zone: request.zone.clone(),
            zone_id,
            protocol,
            storage_type,
            pgroup_id,
            network,
            mount_ip,
            fs_name,
            tags,
            capacity,
            cfs_version,
        })
    }

    fn plan_network(
        &self,
        request: &CreateRequest,
        net_interface: NetInterface,
        turbo: bool,
    ) -> Result<Network, ApiError> {
        let wrong_network = |why: &str| {
            ApiError::new(
                "InvalidParameterValue.InvalidNetInterface",
                format!("NetInterface {}: {why}", net_interface.as_str()),
            )
        };
        let mut network = Network {
            net_interface,
            vpc_id: None,
            subnet_id: None,
            ccn_id: None,
            cidr_block: None,
        };
        match net_interface {
            NetInterface::Vpc | NetInterface::Basic if turbo => {
                return Err(wrong_network("the Turbo types need CCN."));
            }
            NetInterface::Ccn if !turbo => {
                return Err(wrong_network("CCN is for the Turbo types (TB, TP) only."));
            }
            NetInterface::Basic => {}
            NetInterface::Vpc => {
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
            NetInterface::Ccn => {
                let ccn = plan_ccn(request.ccn_id.as_deref(), request.cidr_block.as_deref())?;
                network.ccn_id = Some(ccn.ccn_id);
                network.cidr_block = Some(ccn.cidr_block);
            }
        }
        Ok(network)
    }

    /// Fails with `ResourceInsufficient.FileSystemLimitExceeded` when `existing` file systems
    /// leave no room under `--cfs-max-file-systems`.
    fn check_limit(&self, existing: usize) -> Result<(), ApiError> {
        match self.config.max_file_systems {
            Some(max) if existing as u64 >= max => Err(ApiError::new(
                "ResourceInsufficient.FileSystemLimitExceeded",
                format!("The account holds {existing} of at most {max} file systems."),
            )),
            _ => Ok(()),
        }
    }

    pub(super) async fn create_file_system(&self, body: Value) -> Result<Value, ApiError> {
        let request: CreateRequest = decode(body)?;
        let plan = self.plan_create(&request)?;
        let token = request.client_token.clone();
        let now = unix_now();
        if let Some(token) = &token
            && let Some(existing) = self.store.read(|s| s.cfs.token_target(token, now).cloned())
        {
            return self.create_reply(&existing).await;
        }
        self.check_limit(self.store.read(|s| s.cfs.file_systems.len()))?;

        // Names first (unique at this moment; checked again when the state changes), then the
        // directory, then the state: a failure in between leaves no file system behind.
        let (id, mount_target) = self.store.read(|s| {
            let mut id = random_id("cfs-", 8);
            while s.cfs.file_system(&id).is_some() {
                id = random_id("cfs-", 8);
            }
            let mut ip = plan.mount_ip.clone().unwrap_or_else(random_ip);
            while plan.mount_ip.is_none() && s.cfs.ip_in_use(&ip) {
                ip = random_ip();
            }
            let mut fsid = random_id("", 8);
            while s.cfs.fsid_in_use(&fsid) {
                fsid = random_id("", 8);
            }
            let mount_target = MountTarget {
                mount_target_id: random_id("mount-", 8),
                ip_address: ip,
                fsid,
            };
            (id, mount_target)
        });
        let layout = self.layout.clone();
        let dir_id = id.clone();
        let turbo = plan.storage_type.is_turbo();
        if let Err(e) =
            crate::state::run_blocking(move || layout.create_fs_dir(&dir_id, turbo)).await
        {
            return Err(ApiError::new(
                "InternalError.CreateFsFailed",
                format!("the simulator cannot create the file system's directory: {e}"),
            ));
        }
        let now_ms = unix_now_ms();
        let file_system = FileSystem {
            file_system_id: id.clone(),
            fs_name: plan.fs_name.clone().unwrap_or_else(|| id.clone()),
            zone: plan.zone.clone(),
            zone_id: plan.zone_id,
            protocol: plan.protocol,
            storage_type: plan.storage_type,
            pgroup_id: plan.pgroup_id.clone(),
            network: plan.network.clone(),
            capacity: plan.capacity,
            cfs_version: plan.cfs_version.clone(),
            tags: plan.tags.clone(),
            created_at: now,
            state: LifeCycleState::Creating,
            pending: Some(Pending {
                action: "CreateCfsFileSystem".to_owned(),
                started_at_unix_ms: now_ms,
                due_at_unix_ms: now_ms
                    .saturating_add(self.config.create_latency.as_millis() as i64),
                stuck: self.faults.stuck("CreateCfsFileSystem"),
            }),
            mount_target: Some(mount_target.clone()),
            quotas: Vec::new(),
        };
        let outcome = self.store.try_update(|state| {
            let cfs = &mut state.cfs;
            cfs.prune_tokens(now);
            if let Some(token) = &token
                && let Some(existing) = cfs.token_target(token, now)
            {
                return Ok((existing.clone(), false));
            }
            self.check_limit(cfs.file_systems.len())?;
            if cfs.file_system(&id).is_some() || cfs.fsid_in_use(&mount_target.fsid) {
                return Err(ApiError::internal("a generated name was taken; retry"));
            }
            if cfs.ip_in_use(&mount_target.ip_address) {
                return Err(ip_in_use(&mount_target.ip_address));
            }
            cfs.file_systems.push(file_system.clone());
            if let Some(token) = &token {
                cfs.client_tokens.insert(
                    token.clone(),
                    TokenEntry {
                        file_system_id: id.clone(),
                        created_at: now,
                    },
                );
            }
            Ok((file_system.clone(), true))
        });
        match outcome {
            Ok((created, true)) => {
                tracing::info!(file_system = %created.file_system_id, zone = %created.zone,
                    ip = %mount_target.ip_address, "CFS file system creating");
                self.create_reply(&created).await
            }
            other => {
                let layout = self.layout.clone();
                let _ = crate::state::run_blocking(move || layout.remove_fs_dir(&id)).await;
                let (existing, _) = other?;
                self.create_reply(&existing).await
            }
        }
    }

    /// The CreateCfsFileSystem response for `fs`.
    async fn create_reply(&self, fs: &FileSystem) -> Result<Value, ApiError> {
        let size = self.size_bytes(fs).await;
        reply(&json!({
            "CreationTime": format_time(fs.created_at),
            "CreationToken": fs.fs_name,
            "FileSystemId": fs.file_system_id,
            "LifeCycleState": fs.state.as_str(),
            "SizeByte": size,
            "ZoneId": fs.zone_id,
            "FsName": fs.fs_name,
            "Encrypted": false,
        }))
    }

    /// Bytes used in `fs`'s directory (0 while it is being created).
    async fn size_bytes(&self, fs: &FileSystem) -> u64 {
        if fs.state != LifeCycleState::Available {
            return 0;
        }
        let dir = self.layout.fs_dir(&fs.file_system_id);
        crate::state::run_blocking(move || Ok(super::usage(&dir).bytes))
            .await
            .unwrap_or(0)
    }

    pub(super) async fn describe_file_systems(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            file_system_id: Option<String>,
            #[serde(default)]
            vpc_id: Option<String>,
            #[serde(default)]
            subnet_id: Option<String>,
            #[serde(default)]
            offset: Option<u64>,
            #[serde(default)]
            limit: Option<u64>,
            #[serde(default)]
            creation_token: Option<String>,
        }
        let request: Request = decode(body)?;
        let id = given(&request.file_system_id);
        if let Some(id) = id {
            check_fs_id(id, "InvalidParameterValue.InvalidFileSystemId")?;
        }
        let (vpc, subnet, name) = (
            given(&request.vpc_id),
            given(&request.subnet_id),
            given(&request.creation_token),
        );
        let (total, listed) = self.store.read(|s| -> Result<_, ApiError> {
            let matching: Vec<FileSystem> = s
                .cfs
                .file_systems
                .iter()
                .filter(|f| id.is_none_or(|id| f.file_system_id == id))
                .filter(|f| vpc.is_none_or(|v| f.network.vpc_id.as_deref() == Some(v)))
                .filter(|f| subnet.is_none_or(|v| f.network.subnet_id.as_deref() == Some(v)))
                .filter(|f| name.is_none_or(|n| f.fs_name == n))
                .cloned()
                .collect();
            let total = matching.len();
            Ok((total, page(matching, request.offset, request.limit)?))
        })?;
        if let Some(id) = id
            && total == 0
            && self.config.describe_not_found_error
        {
            return Err(fs_not_found(id));
        }
        let mut views = Vec::with_capacity(listed.len());
        for fs in &listed {
            let size = self.size_bytes(fs).await;
            views.push(self.file_system_view(fs, size));
        }
        reply(&json!({ "FileSystems": views, "TotalCount": total }))
    }

    /// One `FileSystems` entry, in the real `FileSystemInfo` shape.
    fn file_system_view(&self, fs: &FileSystem, size_byte: u64) -> Value {
        json!({
            "CreationTime": format_time(fs.created_at),
            "CreationToken": fs.fs_name,
            "FileSystemId": fs.file_system_id,
            "LifeCycleState": fs.state.as_str(),
            "SizeByte": size_byte,
            "SizeLimit": fs.size_limit(),
            "ZoneId": fs.zone_id,
            "Zone": fs.zone,
            "Protocol": fs.protocol.as_str(),
            "StorageType": fs.storage_type.as_str(),
            "StorageResourcePkg": "",
            "BandwidthResourcePkg": "",
            "PGroup": { "PGroupId": fs.pgroup_id, "Name": Cfs::pgroup_name(&fs.pgroup_id) },
            "FsName": fs.fs_name,
            "Encrypted": false,
            "KmsKeyId": "",
            "AppId": self.config.app_id,
            "BandwidthLimit": fs.storage_type.bandwidth_limit(),
            "AutoSnapshotPolicyId": "",
            "SnapStatus": "",
            "Capacity": fs.size_limit(),
            "Tags": fs.tags,
            "TieringState": "NotAvailable",
            "TieringDetail": null,
        })
    }

    pub(super) async fn delete_file_system(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFsParameter")?;
        let removed = self.store.try_update(|state| {
            let cfs = &mut state.cfs;
            let fs = cfs.file_system(&id).ok_or_else(|| fs_not_found(&id))?;
            if fs.state != LifeCycleState::Available {
                return Err(invalid_status(&id, fs.state));
            }
            let fs = fs.clone();
            cfs.file_systems.retain(|f| f.file_system_id != id);
            cfs.prune_tokens(unix_now());
            Ok(fs)
        })?;
        let layout = self.layout.clone();
        let ip = removed.mount_target.as_ref().map(|m| m.ip_address.clone());
        let dir_id = id.clone();
        let cleaned = crate::state::run_blocking(move || {
            if let Some(ip) = &ip {
                layout.unpublish(ip)?;
            }
            layout.remove_fs_dir(&dir_id)
        })
        .await;
        match cleaned {
            Ok(()) => tracing::info!(file_system = %id, "CFS file system deleted"),
            Err(e) => {
                tracing::warn!(file_system = %id, error = %e,
                    "CFS file system deleted, but its directory or export remains; the next start removes it")
            }
        }
        empty_reply()
    }

    pub(super) fn update_file_system_name(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
            fs_name: String,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFsParameter")?;
        check_fs_name(&request.fs_name)?;
        let name = self.store.try_update(|state| {
            let fs = state
                .cfs
                .file_system_mut(&id)
                .ok_or_else(|| fs_not_found(&id))?;
            fs.fs_name = request.fs_name.clone();
            Ok(fs.fs_name.clone())
        })?;
        reply(&json!({ "CreationToken": name, "FileSystemId": id, "FsName": name }))
    }

    pub(super) fn describe_mount_targets(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFileSystemId")?;
        let fs = self
            .store
            .read(|s| s.cfs.file_system(&id).cloned())
            .ok_or_else(|| fs_not_found(&id))?;
        let targets: Vec<Value> = fs
            .mount_target
            .iter()
            .map(|m| mount_target_view(&fs, m))
            .collect();
        reply(&json!({ "NumberOfMountTargets": targets.len(), "MountTargets": targets }))
    }

    pub(super) async fn delete_mount_target(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
            mount_target_id: String,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFileSystemId")?;
        let removed = self.store.try_update(|state| {
            let fs = state
                .cfs
                .file_system_mut(&id)
                .ok_or_else(|| fs_not_found(&id))?;
            if fs.state != LifeCycleState::Available {
                return Err(invalid_status(&id, fs.state));
            }
            match &fs.mount_target {
                Some(m) if m.mount_target_id == request.mount_target_id => {}
                _ => {
                    return Err(ApiError::new(
                        "ResourceNotFound.MountTargetNotFound",
                        format!(
                            "The file system {id} has no mount target {}.",
                            request.mount_target_id
                        ),
                    ));
                }
            }
            Ok(fs.mount_target.take())
        })?;
        if let Some(target) = removed {
            let layout = self.layout.clone();
            let ip = target.ip_address.clone();
            if let Err(e) = crate::state::run_blocking(move || layout.unpublish(&ip)).await {
                tracing::warn!(file_system = %id, ip = %target.ip_address, error = %e,
                    "cannot remove the export of a deleted mount target; the next start removes it");
            }
        }
        empty_reply()
    }
}

/// One `MountTargets` entry, in the real `MountInfo` shape.
fn mount_target_view(fs: &FileSystem, target: &MountTarget) -> Value {
    let network = &fs.network;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    json!({
        "FileSystemId": fs.file_system_id,
        "MountTargetId": target.mount_target_id,
        "IpAddress": target.ip_address,
        "FSID": target.fsid,
        "LifeCycleState": fs.state.as_str(),
        "NetworkInterface": network.net_interface.as_str(),
        "VpcId": text(&network.vpc_id),
        "VpcName": text(&network.vpc_id),
        "SubnetId": text(&network.subnet_id),
        "SubnetName": text(&network.subnet_id),
        "CcnID": text(&network.ccn_id),
        "CidrBlock": text(&network.cidr_block),
    })
}

fn ip_in_use(ip: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue.InvalidVip",
        format!("MountIP {ip} is already used by another mount target."),
    )
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
