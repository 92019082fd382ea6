//! The CFS actions on the state: CreateCfsFileSystem (request checks, permission groups, the
//! file-system limit, ClientToken idempotency, a new mount target address and fsid),
//! DescribeCfsFileSystems, DescribeMountTargets, DeleteCfsFileSystem (only once `available`) and
//! SetUserQuota with a GID.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::checks::{
    Network, check_client_token, check_fs_id, check_fs_name, check_tags, fs_not_found, given,
    given_opt, invalid_status, page, plan_network,
};
use super::model::{
    CfsOp, DEFAULT_PGROUP, FileSystemRecord, LifeCycle, Pending, State, TokenEntry,
};
use crate::cfs::{
    CreateFileSystemRequest, DescribeFileSystemsRequest, DescribeFileSystemsResponse, MountTarget,
};
use crate::fake::{ApiError, random_id, well_formed_id, zone_names};

/// Largest `CapacityHardLimit`, GiB.
const MAX_CAPACITY_LIMIT: u64 = 1 << 20;

/// A validated CreateCfsFileSystem request.
#[derive(Debug)]
struct CreatePlan {
    zone_id: String,
    protocol: &'static str,
    storage_type: &'static str,
    network: Network,
    fs_name: Option<String>,
}

impl State {
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

    pub(super) fn create_file_system(
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

    pub(super) fn describe_file_systems(
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

    pub(super) fn describe_mount_targets(&self, id: &str) -> Result<Vec<MountTarget>, ApiError> {
        check_fs_id(id, "InvalidParameterValue.MissingFileSystemId")?;
        let fs = self.file_system(id).ok_or_else(|| fs_not_found(id))?;
        Ok(vec![MountTarget {
            file_system_id: fs.file_system_id.clone(),
            ip_address: fs.ip_address.clone(),
            fsid: fs.fsid.clone(),
            life_cycle_state: fs.state.as_str().to_owned(),
        }])
    }

    pub(super) fn delete_file_system(&mut self, id: &str, now: Instant) -> Result<(), ApiError> {
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
    pub(super) fn set_group_quota(
        &mut self,
        id: &str,
        gid: u32,
        capacity_gib: u64,
    ) -> Result<(), ApiError> {
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

/// A random host address in 10.0.0.0/8 (last octet 1-254).
fn random_ip() -> String {
    format!(
        "10.{}.{}.{}",
        fastrand::u8(..),
        fastrand::u8(..),
        fastrand::u8(1..=254)
    )
}
