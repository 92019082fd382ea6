//! The CFS controller: a whole file system per volume, or a subdirectory per volume on a shared
//! file system found again through its tag (no ConfigMap, no local state).
//!
//! Shared-instance subdirectories are managed by mounting the instance through the same NFS layer
//! as the node; the instance stays mounted under the work directory until the plugin stops.
//!
//! This file holds the service, its configuration, the `Controller` trait impl (CreateVolume and
//! DeleteVolume choose between the two kinds of volume), and what both kinds use: the tags, the
//! account's file systems and their mount targets, the volume context. `whole` makes a file system
//! per volume, `shared` the shared instance, its mounted root and the subdirectories with their
//! owner records, `listing` reads every volume back for ListVolumes. Children use the service and
//! the helpers here; this file uses no helper of a child (only re-exports `unmount_work_dir`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use csi_common::csi::reply::{answer_by, controller_caps, validation};
use csi_common::csi::request::{self, Capacity, Supported};
use csi_common::csi::{InFlight, pb};
use csi_common::mount::Mounter;
use tcloud::ErrorKind;
use tcloud::cfs::{
    CfsApi, CreateFileSystemRequest, DescribeFileSystemsRequest, FileSystem, MountTarget,
    ResourceTag, life_cycle,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result, required};
use crate::nfs::NfsMounter;
use crate::params::{CfsParams, VolumeId};
use crate::roots::Roots;

mod listing;
mod shared;
mod whole;

pub use crate::roots::unmount_all as unmount_work_dir;

/// Tag keys: Tencent reserves keys starting with `tencent`, `qcloud` and `project`.
pub const TAG_DRIVER: &str = "k8s-csi/driver";
pub const TAG_SHARED: &str = "k8s-csi/shared-instance";
pub const TAG_ON_DELETE: &str = "k8s-csi/on-delete";
pub use crate::subdirs::ARCHIVE_PREFIX;
/// The whole CSI name of a file system whose FsName had to be shortened.
pub const TAG_VOLUME_NAME: &str = "k8s-csi/volume-name";
/// The size a whole file system was asked with, so a repeated create can be compared.
pub const TAG_CAPACITY: &str = "k8s-csi/capacity-bytes";
/// CFS file system names hold at most this many bytes.
pub const MAX_FS_NAME: usize = 64;
const GIB: u64 = 1 << 30;
const PAGE: u64 = 100;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub driver_name: String,
    /// Where shared instances are mounted to manage their subdirectories.
    pub work_dir: PathBuf,
    pub nfs: NfsMounter,
    /// The zone of a new file system whose StorageClass names none: this controller's own.
    pub default_zone: Option<String>,
    /// The VPC and subnet of a new file system whose StorageClass names none.
    pub defaults: crate::params::Defaults,
}

#[derive(Debug)]
pub struct ControllerService<C, M> {
    cfs: Arc<C>,
    mounter: Arc<M>,
    config: ControllerConfig,
    inflight: InFlight,
    /// The shared instances' roots, mounted to manage their subdirectories.
    roots: Roots,
    metrics: Arc<csi_common::metrics::Metrics>,
}

/// NFS serves file access only: every access mode, any file system type asked, never block.
pub const SUPPORTED: Supported = Supported {
    storage: "a CFS file system",
    block: false,
    multi_node: true,
    fs_types: &[],
};

/// Every capability must be one a CFS file system supports.
pub fn check_capabilities(capabilities: &[pb::VolumeCapability]) -> Result<()> {
    request::check_capabilities(capabilities, &SUPPORTED)
}

/// The group that owns a shared-instance volume's files, for its CFS group quota.
pub fn quota_gid(volume_id: &str) -> u32 {
    let hash = volume_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    60_000 + (hash % 900_000) as u32
}

fn volume_context(target: &MountTarget, vers: u8, path: &str) -> HashMap<String, String> {
    let mut context: HashMap<String, String> = [
        ("host", target.ip_address.clone()),
        ("path", path.to_owned()),
        ("vers", vers.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if !target.fsid.is_empty() {
        context.insert("fsid".into(), target.fsid.clone());
    }
    context
}

/// A CreateCfsFileSystem request for a StorageClass's parameters.
fn create_request(
    params: &CfsParams,
    zone: String,
    fs_name: String,
    resource_tags: Vec<ResourceTag>,
    client_token: String,
) -> CreateFileSystemRequest {
    CreateFileSystemRequest {
        zone,
        net_interface: "VPC".into(),
        p_group_id: params.pgroup_id.clone(),
        protocol: "NFS".into(),
        storage_type: params.storage_type.clone(),
        vpc_id: params.vpc_id.clone(),
        subnet_id: params.subnet_id.clone(),
        fs_name: Some(fs_name),
        resource_tags,
        client_token: Some(client_token),
    }
}

impl<C: CfsApi, M: Mounter + 'static> ControllerService<C, M> {
    pub fn new(cfs: Arc<C>, mounter: Arc<M>, config: ControllerConfig) -> Self {
        ControllerService {
            cfs,
            mounter,
            roots: Roots::new(config.work_dir.clone(), config.nfs.clone()),
            config,
            inflight: InFlight::new(),
            metrics: csi_common::metrics::Metrics::new(),
        }
    }

    /// Records the time spent waiting on file-system states in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<csi_common::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn into_server(self) -> pb::controller_server::ControllerServer<Self> {
        pb::controller_server::ControllerServer::new(self)
    }

    async fn file_system(&self, fs_id: &str, deadline: Instant) -> Result<Option<FileSystem>> {
        let request = DescribeFileSystemsRequest {
            file_system_id: Some(fs_id.to_owned()),
            ..Default::default()
        };
        match self
            .cfs
            .describe_file_systems(&request, Some(deadline))
            .await
        {
            Ok(response) => Ok(response
                .file_systems
                .into_iter()
                .find(|f| f.file_system_id == fs_id)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every file system of the account, page by page.
    async fn all_file_systems(&self, deadline: Instant) -> Result<Vec<FileSystem>> {
        let mut all = Vec::new();
        loop {
            let request = DescribeFileSystemsRequest {
                offset: Some(all.len() as u64),
                limit: Some(PAGE),
                ..Default::default()
            };
            let page = self
                .cfs
                .describe_file_systems(&request, Some(deadline))
                .await?;
            let got = page.file_systems.len();
            all.extend(page.file_systems);
            if got == 0 || all.len() as u64 >= page.total_count {
                return Ok(all);
            }
        }
    }

    /// Waits (within the deadline; the retry resumes) until the file system is `available`;
    /// the time is recorded as `tencentcloud_csi_cloud_wait_duration_seconds{resource="file_system"}`.
    async fn wait_available(&self, fs_id: &str, deadline: Instant) -> Result<FileSystem> {
        let started = std::time::Instant::now();
        let result = self.poll_available(fs_id, deadline).await;
        let outcome = match &result {
            Ok(_) => "reached",
            Err(Error::DeadlineExceeded(_)) => "deadline",
            Err(_) => "error",
        };
        self.metrics.observe_cloud_wait(
            "file_system",
            "available",
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn poll_available(&self, fs_id: &str, deadline: Instant) -> Result<FileSystem> {
        let mut interval = Duration::from_millis(100);
        loop {
            let fs = self
                .file_system(fs_id, deadline)
                .await?
                .ok_or_else(|| Error::NotFound(format!("file system {fs_id} does not exist")))?;
            match fs.life_cycle_state.as_str() {
                life_cycle::AVAILABLE => return Ok(fs),
                life_cycle::CREATE_FAILED => {
                    return Err(Error::Internal(format!(
                        "CFS failed to create file system {fs_id}; delete it and retry"
                    )));
                }
                _ => {}
            }
            if Instant::now() + interval >= deadline {
                return Err(Error::DeadlineExceeded(format!(
                    "file system {fs_id} is still {}; the next call resumes the wait",
                    fs.life_cycle_state
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(Duration::from_secs(2));
        }
    }

    async fn mount_target(&self, fs_id: &str, deadline: Instant) -> Result<MountTarget> {
        self.cfs
            .describe_mount_targets(fs_id, Some(deadline))
            .await?
            .into_iter()
            .find(|t| !t.ip_address.is_empty())
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "file system {fs_id} has no mount target yet; retry"
                ))
            })
    }

    fn zone(&self, params: &CfsParams) -> Result<String> {
        params
            .zone
            .clone()
            .or_else(|| self.config.default_zone.clone())
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "parameter zone is required (this controller's zone is unknown)".into(),
                )
            })
    }
}

fn controller_capabilities() -> Vec<pb::ControllerServiceCapability> {
    use pb::controller_service_capability::rpc::Type;
    controller_caps(&[
        Type::CreateDeleteVolume,
        Type::ListVolumes,
        Type::ExpandVolume,
    ])
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl<C: CfsApi, M: Mounter + 'static> pb::controller_server::Controller
    for ControllerService<C, M>
{
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> RpcResult<pb::CreateVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        request::require(&req.name, "name")?;
        check_capabilities(&req.volume_capabilities)?;
        if req.volume_content_source.is_some() {
            return Err(Error::InvalidArgument(
                "CFS volumes cannot be created from a snapshot or another volume".into(),
            )
            .into());
        }
        let params =
            CfsParams::parse_with(&req.parameters, &self.config.defaults).map_err(Error::from)?;
        if !params.ignored.is_empty() {
            tracing::warn!(
                volume = req.name,
                ignored = params.ignored.join(", "),
                "StorageClass parameters ignored"
            );
        }
        let capacity = Capacity::parse(req.capacity_range.as_ref())?.nominal();
        let _guard = self.inflight.acquire(&req.name)?;
        let mut volume = if params.shared {
            self.create_subdir(&req.name, &params, capacity, deadline)
                .await?
        } else {
            self.create_whole(&req.name, &params, capacity, deadline)
                .await?
        };
        // Tencent's controller handed its StorageClass's `options` to every volume's node.
        if let Some(options) = &params.options {
            volume
                .volume_context
                .insert("options".to_owned(), options.clone());
        }
        Ok(Response::new(pb::CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> RpcResult<pb::DeleteVolumeResponse> {
        let deadline = answer_by(&request);
        let volume_id = request.into_inner().volume_id;
        if volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        // Not an ID this driver makes (a static PV, or garbage): nothing of ours to delete.
        let Some(id) = VolumeId::parse(&volume_id) else {
            return Ok(Response::new(pb::DeleteVolumeResponse {}));
        };
        let _guard = self.inflight.acquire(&volume_id)?;
        match id {
            VolumeId::FileSystem(fs_id) => {
                match self.cfs.delete_file_system(&fs_id, Some(deadline)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::from(e).into()),
                }
            }
            VolumeId::Subdir {
                fs_id,
                on_delete,
                subdir,
                owner,
            } => {
                self.delete_subdir(&fs_id, on_delete, &subdir, owner.as_deref(), deadline)
                    .await?
            }
        }
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerPublishVolumeResponse> {
        Err(Status::unimplemented("CFS volumes need no attach"))
    }

    async fn controller_unpublish_volume(
        &self,
        _request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerUnpublishVolumeResponse> {
        Err(Status::unimplemented("CFS volumes need no attach"))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> RpcResult<pb::ValidateVolumeCapabilitiesResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        if req.volume_capabilities.is_empty() {
            return Err(required("volume_capabilities").into());
        }
        let id = VolumeId::parse(&req.volume_id)
            .ok_or_else(|| Error::NotFound(format!("volume {} does not exist", req.volume_id)))?;
        if self.file_system(id.fs_id(), deadline).await?.is_none() {
            return Err(Error::NotFound(format!("volume {} does not exist", req.volume_id)).into());
        }
        let outcome = check_capabilities(&req.volume_capabilities).map_err(|e| e.to_string());
        let response = validation(req, outcome);
        Ok(Response::new(response))
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        self.list_volume_page(request).await
    }

    async fn get_capacity(
        &self,
        _request: Request<pb::GetCapacityRequest>,
    ) -> RpcResult<pb::GetCapacityResponse> {
        Err(Status::unimplemented("CFS capacity is elastic"))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> RpcResult<pb::ControllerGetCapabilitiesResponse> {
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse {
            capabilities: controller_capabilities(),
        }))
    }

    async fn create_snapshot(
        &self,
        _request: Request<pb::CreateSnapshotRequest>,
    ) -> RpcResult<pb::CreateSnapshotResponse> {
        Err(Status::unimplemented(
            "snapshots are not offered by this driver",
        ))
    }

    async fn delete_snapshot(
        &self,
        _request: Request<pb::DeleteSnapshotRequest>,
    ) -> RpcResult<pb::DeleteSnapshotResponse> {
        Err(Status::unimplemented(
            "snapshots are not offered by this driver",
        ))
    }

    async fn list_snapshots(
        &self,
        _request: Request<pb::ListSnapshotsRequest>,
    ) -> RpcResult<pb::ListSnapshotsResponse> {
        Err(Status::unimplemented(
            "snapshots are not offered by this driver",
        ))
    }

    /// A whole file system is elastic: its size is whatever it holds, so expansion only records
    /// the number. A shared-instance volume's size is its CFS group quota, which is raised.
    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let capacity = Capacity::parse_required(req.capacity_range.as_ref())?.nominal();
        let id = VolumeId::parse(&req.volume_id)
            .ok_or_else(|| Error::NotFound(format!("volume {} does not exist", req.volume_id)))?;
        let _guard = self.inflight.acquire(&req.volume_id)?;
        if self.file_system(id.fs_id(), deadline).await?.is_none() {
            return Err(Error::NotFound(format!("volume {} does not exist", req.volume_id)).into());
        }
        if let VolumeId::Subdir { fs_id, .. } = &id {
            self.apply_quota(fs_id, quota_gid(&req.volume_id), capacity, deadline)
                .await;
        }
        Ok(Response::new(pb::ControllerExpandVolumeResponse {
            capacity_bytes: capacity as i64,
            node_expansion_required: false,
        }))
    }

    async fn controller_get_volume(
        &self,
        _request: Request<pb::ControllerGetVolumeRequest>,
    ) -> RpcResult<pb::ControllerGetVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerGetVolume is not offered by this driver",
        ))
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> RpcResult<pb::ControllerModifyVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerModifyVolume is not offered by this driver",
        ))
    }
}
