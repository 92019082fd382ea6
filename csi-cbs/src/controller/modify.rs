//! Changes to an existing disk for the controller: ControllerExpandVolume (a larger size, waited
//! on within the caller's deadline) and ControllerModifyVolume (disk type and throughput).
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
use crate::error::{Error, required};
use crate::params::{GIB, MutableParams, size_gib};
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
        let disk = self.existing_disk(&req.volume_id).await?;
        let gib = size_gib(&disk.disk_type, required_bytes, limit_bytes).map_err(Error::from)?;
        let done = |disk: &Disk| pb::ControllerExpandVolumeResponse {
            capacity_bytes: disk.disk_size.saturating_mul(GIB) as i64,
            node_expansion_required,
        };
        if disk.disk_size >= gib && disk.disk_state != disk_state::EXPANDING {
            return Ok(Response::new(done(&disk)));
        }
        if disk.disk_size < gib {
            let disk = self
                .wait_settled(&req.volume_id, deadline, "a settled state before resizing")
                .await?;
            if disk.disk_size < gib {
                match self
                    .cbs
                    .resize_disk(&req.volume_id, gib, Some(deadline))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Busy => {}
                    Err(e) => return Err(Error::from(e).into()),
                }
            }
        }
        let sent = Instant::now();
        let disk = self
            .watcher
            .wait_until(
                &req.volume_id,
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
        Ok(Response::new(done(&disk)))
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
        let disk = self.existing_disk(&req.volume_id).await?;
        if let Some(disk_type) = disk_type.filter(|t| *t != disk.disk_type) {
            self.cbs
                .modify_disk_type(&req.volume_id, &disk_type, Some(deadline))
                .await
                .map_err(Error::from)?;
        }
        if let Some(mbps) = throughput.filter(|t| *t != disk.throughput_performance) {
            self.cbs
                .modify_disk_extra_performance(&req.volume_id, mbps, Some(deadline))
                .await
                .map_err(Error::from)?;
        }
        Ok(Response::new(pb::ControllerModifyVolumeResponse {}))
    }
}
