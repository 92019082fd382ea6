//! Changes to an existing disk for the controller: ControllerExpandVolume (a larger size, waited
//! on within the caller's deadline) and ControllerModifyVolume (disk type and throughput), of
//! every disk of a multi-disk volume alike.
//!
//! Each acts on a disk that exists and answers with its state; creating, deleting and attaching
//! disks is not done here.

use csi_common::csi::pb;
use csi_common::csi::reply::answer_by;
use csi_common::csi::request::{Capacity, is_mount};
use tcloud::ErrorKind;
use tcloud::cbs::{CbsApi, Disk, disk_state};
use tokio::time::Instant;
use tonic::{Request, Response};

use super::{ControllerService, RpcResult};
use crate::error::{Error, Result, required};
use crate::params::{GIB, MutableParams, size_gib};
use crate::volume_id::{VolumeId, multi_disk_ids};
use crate::watcher::Wait;

impl<C: CbsApi> ControllerService<C> {
    /// ControllerExpandVolume: resizes from a settled state and waits until the disk has the size.
    pub(super) async fn expand_disk(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let Capacity {
            required: required_bytes,
            limit: limit_bytes,
        } = Capacity::parse_required(req.capacity_range.as_ref())?;
        let node_expansion_required = is_mount(req.volume_capability.as_ref());
        let _guard = self.inflight.acquire(&req.volume_id)?;
        if let Some(disks) = multi_disk_ids(&req.volume_id) {
            return self
                .expand_multi_disk(
                    &req.volume_id,
                    &disks,
                    (required_bytes, limit_bytes),
                    node_expansion_required,
                    deadline,
                )
                .await;
        }
        let disk = self.existing_disk(&req.volume_id).await?;
        let gib = size_gib(&disk.disk_type, required_bytes, limit_bytes).map_err(Error::from)?;
        let disk = self.resize_to(&req.volume_id, disk, gib, deadline).await?;
        Ok(Response::new(pb::ControllerExpandVolumeResponse {
            capacity_bytes: disk.disk_size.saturating_mul(GIB) as i64,
            node_expansion_required,
        }))
    }

    /// Resizes disk `disk_id` (described as `disk`) to `gib` from a settled state and waits until
    /// it has the size; a disk already that large is answered as it is.
    pub(super) async fn resize_to(
        &self,
        disk_id: &str,
        disk: Disk,
        gib: u64,
        deadline: Instant,
    ) -> Result<Disk> {
        if disk.disk_size >= gib && disk.disk_state != disk_state::EXPANDING {
            return Ok(disk);
        }
        if disk.disk_size < gib {
            let disk = self
                .wait_settled(disk_id, deadline, "a settled state before resizing")
                .await?;
            if disk.disk_size < gib {
                match self.cbs.resize_disk(disk_id, gib, Some(deadline)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Busy => {}
                    Err(e) => return Err(Error::from(e)),
                }
            }
        }
        let sent = Instant::now();
        let disk = self
            .watcher
            .wait_until(
                disk_id,
                deadline,
                self.resize_time.get(),
                "the resize",
                |d| {
                    Ok(
                        if d.disk_state != disk_state::EXPANDING && d.disk_size >= gib {
                            Wait::Done
                        } else {
                            Wait::Continue
                        },
                    )
                },
            )
            .await?;
        self.resize_time.record(sent.elapsed());
        Ok(disk)
    }

    /// ControllerModifyVolume: the disk type and the throughput, each only when it differs.
    pub(super) async fn modify_disk(
        &self,
        request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> RpcResult<pb::ControllerModifyVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let MutableParams {
            disk_type,
            throughput_mbps: throughput,
        } = MutableParams::parse(&req.mutable_parameters)?;
        let _guard = self.inflight.acquire(&req.volume_id)?;
        let volume = VolumeId::parse(&req.volume_id).map_or_else(Vec::new, |v| v.disks());
        if volume.is_empty() {
            self.existing_disk(&req.volume_id).await?;
        }
        // A multi-disk volume changes every disk, each only where it differs.
        for disk_id in volume {
            self.modify_one(disk_id, disk_type.as_deref(), throughput, deadline)
                .await?;
        }
        Ok(Response::new(pb::ControllerModifyVolumeResponse {}))
    }

    async fn modify_one(
        &self,
        disk_id: &str,
        disk_type: Option<&str>,
        throughput: Option<u64>,
        deadline: Instant,
    ) -> Result<()> {
        let disk = self.existing_disk(disk_id).await?;
        if let Some(disk_type) = disk_type.filter(|t| *t != disk.disk_type) {
            self.cbs
                .modify_disk_type(disk_id, disk_type, Some(deadline))
                .await
                .map_err(Error::from)?;
        }
        if let Some(mbps) = throughput.filter(|t| *t != disk.throughput_performance) {
            self.cbs
                .modify_disk_extra_performance(disk_id, mbps, Some(deadline))
                .await
                .map_err(Error::from)?;
        }
        Ok(())
    }
}
