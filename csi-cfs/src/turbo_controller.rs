//! The CFS Turbo controller: a subdirectory per volume on a Turbo file system the StorageClass
//! names (`host`, `fsid`, `proto`, `rootdir`), with the guarantees of CFS shared instances: names
//! that cannot escape or collide, an owner record per directory, `retain` / `archive` / `delete`
//! of exactly the leaf, idempotent, no local state (everything is in the volume ID and on the
//! file system). It makes no cloud call: Turbo file systems are made by their owner, not by the
//! driver. The root directory is mounted under the work directory ([`crate::roots`]) with the
//! client the StorageClass names.

use std::sync::Arc;

use csi_common::csi::reply::{controller_caps, validation};
use csi_common::csi::request::{self, Capacity};
use csi_common::csi::{InFlight, pb};
use csi_common::mount::Mounter;
use tonic::{Request, Response, Status};

use crate::controller::check_capabilities;
use crate::error::{Error, Result, required};
use crate::owners::{Owner, RECORDS_DIR};
use crate::params::{OnDelete, expand_pattern};
use crate::roots::Roots;
use crate::subdirs;
use crate::turbo::{TurboId, TurboParams, volume_context};

#[derive(Debug)]
pub struct TurboController<M> {
    mounter: Arc<M>,
    roots: Roots,
    inflight: InFlight,
    unknown_parameters: crate::params::UnknownParameters,
}

impl<M: Mounter + 'static> TurboController<M> {
    pub fn new(mounter: Arc<M>, roots: Roots) -> Self {
        TurboController {
            mounter,
            roots,
            inflight: InFlight::new(),
            unknown_parameters: crate::params::UnknownParameters::Refuse,
        }
    }

    /// What a StorageClass key no driver ever knew gets (`--unknown-parameters`).
    pub fn with_unknown_parameters(mut self, policy: crate::params::UnknownParameters) -> Self {
        self.unknown_parameters = policy;
        self
    }

    pub fn into_server(self) -> pb::controller_server::ControllerServer<Self> {
        pb::controller_server::ControllerServer::new(self)
    }

    /// The mounted root directory of `id`'s file system and the volume's leaf under it.
    async fn root_of(&self, id: &TurboId) -> Result<(std::path::PathBuf, String)> {
        let (source, leaf) = id.root_and_leaf();
        let key = source.mount_key(&[]);
        let root = self.roots.mounted(&self.mounter, &key, source).await?;
        Ok((root, leaf))
    }

    async fn create(&self, name: &str, params: &TurboParams, capacity: u64) -> Result<pb::Volume> {
        let pv_name = params.pv_name.as_deref().unwrap_or(name);
        let subdir = expand_pattern(
            &params.pattern,
            pv_name,
            params.pvc_name.as_deref(),
            params.pvc_namespace.as_deref(),
        )
        .map_err(|reason| {
            Error::InvalidArgument(format!("subdir-pattern {:?}: {reason}", params.pattern))
        })?;
        if subdir == RECORDS_DIR {
            return Err(Error::InvalidArgument(format!(
                "subdir-pattern {:?} gives {subdir}, which holds the owner records",
                params.pattern
            )));
        }
        let id = TurboId::for_volume(params, &subdir, name);
        let (root, leaf) = self.root_of(&id).await?;
        // Two claims whose patterns give one directory are decided one at a time.
        let _subdir_guard = self
            .inflight
            .acquire(&format!("{}/{leaf}", root.display()))?;
        let owner = Owner {
            volume: name.to_owned(),
            capacity_bytes: capacity,
            released: false,
        };
        tokio::task::spawn_blocking(move || subdirs::claim(&root, &leaf, &owner, None))
            .await
            .map_err(|e| Error::Internal(format!("subdirectory task failed: {e}")))??;
        Ok(pb::Volume {
            capacity_bytes: capacity as i64,
            volume_id: id.to_string(),
            volume_context: volume_context(params, &subdir),
            content_source: None,
            accessible_topology: Vec::new(),
        })
    }

    async fn delete(&self, id: &TurboId) -> Result<()> {
        let (root, leaf) = self.root_of(id).await?;
        let (owner, on_delete) = match id {
            TurboId::Subdir {
                owner, on_delete, ..
            } => (Some(owner.clone()), *on_delete),
            // Tencent's driver removed its directories with their volumes.
            TurboId::Old { .. } => (None, OnDelete::Delete),
        };
        let suffix = tcloud::time::unix_now();
        tokio::task::spawn_blocking(move || {
            subdirs::release(&root, &leaf, owner.as_deref(), on_delete, suffix)
        })
        .await
        .map_err(|e| Error::Internal(format!("subdirectory task failed: {e}")))?
    }

    /// Fails with NOT_FOUND unless `id`'s volume exists; returns its recorded size (0 for the old
    /// driver's volumes, which record none) or, with `grow_to`, records a larger one first.
    async fn existing(&self, raw: &str, id: &TurboId, grow_to: Option<u64>) -> Result<u64> {
        let (root, leaf) = self.root_of(id).await?;
        let (raw, old) = (raw.to_owned(), matches!(id, TurboId::Old { .. }));
        tokio::task::spawn_blocking(move || {
            if old {
                return match std::fs::symlink_metadata(root.join(&leaf)) {
                    Ok(meta) if meta.is_dir() => Ok(grow_to.unwrap_or(0)),
                    _ => Err(Error::NotFound(format!("volume {raw} does not exist"))),
                };
            }
            match grow_to {
                Some(capacity) => subdirs::record_size(&root, &leaf, &raw, capacity),
                None => subdirs::live(&root, &leaf, &raw).map(|o| o.capacity_bytes),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("volume task failed: {e}")))?
    }
}

fn parse_id(raw: &str) -> Result<TurboId> {
    TurboId::parse(raw).ok_or_else(|| Error::NotFound(format!("volume {raw} does not exist")))
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

const NO_ATTACH: &str = "CFS Turbo volumes need no attach";

#[tonic::async_trait]
impl<M: Mounter + 'static> pb::controller_server::Controller for TurboController<M> {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> RpcResult<pb::CreateVolumeResponse> {
        let req = request.into_inner();
        request::require(&req.name, "name")?;
        check_capabilities(&req.volume_capabilities)?;
        if req.volume_content_source.is_some() {
            return Err(Error::InvalidArgument(
                "CFS Turbo volumes cannot be created from a snapshot or another volume".into(),
            )
            .into());
        }
        let params = TurboParams::parse_with(&req.parameters, self.unknown_parameters)
            .map_err(Error::from)?;
        if !params.ignored.is_empty() {
            tracing::warn!(
                volume = req.name,
                ignored = params.ignored.join(", "),
                "StorageClass parameters ignored"
            );
        }
        let capacity = Capacity::parse(req.capacity_range.as_ref())?.nominal();
        let _guard = self.inflight.acquire(&req.name)?;
        let volume = self.create(&req.name, &params, capacity).await?;
        Ok(Response::new(pb::CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> RpcResult<pb::DeleteVolumeResponse> {
        let volume_id = request.into_inner().volume_id;
        if volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        // Not an ID this driver or Tencent's makes (a static PV, or garbage): nothing to delete.
        let Some(id) = TurboId::parse(&volume_id) else {
            return Ok(Response::new(pb::DeleteVolumeResponse {}));
        };
        let _guard = self.inflight.acquire(&volume_id)?;
        self.delete(&id).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerPublishVolumeResponse> {
        Err(Status::unimplemented(NO_ATTACH))
    }

    async fn controller_unpublish_volume(
        &self,
        _request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerUnpublishVolumeResponse> {
        Err(Status::unimplemented(NO_ATTACH))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> RpcResult<pb::ValidateVolumeCapabilitiesResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        if req.volume_capabilities.is_empty() {
            return Err(required("volume_capabilities").into());
        }
        let id = parse_id(&req.volume_id)?;
        self.existing(&req.volume_id, &id, None).await?;
        let outcome = check_capabilities(&req.volume_capabilities).map_err(|e| e.to_string());
        Ok(Response::new(validation(req, outcome)))
    }

    async fn list_volumes(
        &self,
        _request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        Err(Status::unimplemented(
            "ListVolumes is not offered for CFS Turbo",
        ))
    }

    async fn get_capacity(
        &self,
        _request: Request<pb::GetCapacityRequest>,
    ) -> RpcResult<pb::GetCapacityResponse> {
        Err(Status::unimplemented(
            "CFS Turbo capacity is the file system's",
        ))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> RpcResult<pb::ControllerGetCapabilitiesResponse> {
        use pb::controller_service_capability::rpc::Type;
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse {
            capabilities: controller_caps(&[Type::CreateDeleteVolume, Type::ExpandVolume]),
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

    /// Turbo has no per-directory quota: expansion records the size in the owner record.
    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let capacity = Capacity::parse_required(req.capacity_range.as_ref())?.nominal();
        let id = parse_id(&req.volume_id)?;
        let _guard = self.inflight.acquire(&req.volume_id)?;
        let recorded = self.existing(&req.volume_id, &id, Some(capacity)).await?;
        Ok(Response::new(pb::ControllerExpandVolumeResponse {
            capacity_bytes: recorded.max(capacity) as i64,
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
