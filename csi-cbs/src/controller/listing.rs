//! Reading volumes back for the controller: ListVolumes (a page of `DescribeDisks`) and
//! ControllerGetVolume, each with the nodes a disk is attached to and its condition.
//!
//! Read-only: nothing here creates, changes or waits on a disk.

use csi_common::csi::pb;
use csi_common::csi::reply::answer_by;
use csi_common::csi::request::Page;
use tcloud::cbs::{CbsApi, DescribeDisksRequest, Disk, MAX_PAGE, disk_state};
use tonic::{Request, Response};

use super::{ControllerService, RpcResult, volume_proto};
use crate::error::{Error, required};

impl<C: CbsApi> ControllerService<C> {
    /// ListVolumes: one page of the account's disks.
    pub(super) async fn list_volume_page(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        let page = Page::parse(&req.starting_token, req.max_entries, MAX_PAGE)?;
        let describe = DescribeDisksRequest {
            offset: Some(page.offset),
            limit: Some(page.limit),
            ..Default::default()
        };
        let response = self
            .cbs
            .describe_disks(&describe, Some(deadline))
            .await
            .map_err(Error::from)?;
        let next_token =
            page.next_token(response.disk_set.len(), response.total_count, "volumes")?;
        let entries = response
            .disk_set
            .iter()
            .map(|disk| {
                let (published_node_ids, volume_condition) = status_of(disk);
                pb::list_volumes_response::Entry {
                    volume: Some(volume_proto(disk, None)),
                    status: Some(pb::list_volumes_response::VolumeStatus {
                        published_node_ids,
                        volume_condition: Some(volume_condition),
                    }),
                }
            })
            .collect();
        Ok(Response::new(pb::ListVolumesResponse {
            entries,
            next_token,
        }))
    }

    /// ControllerGetVolume: one disk, which must exist.
    pub(super) async fn volume_status(
        &self,
        request: Request<pb::ControllerGetVolumeRequest>,
    ) -> RpcResult<pb::ControllerGetVolumeResponse> {
        let volume_id = request.into_inner().volume_id;
        if volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let disk = self.existing_disk(&volume_id).await?;
        let (published_node_ids, volume_condition) = status_of(&disk);
        Ok(Response::new(pb::ControllerGetVolumeResponse {
            volume: Some(volume_proto(&disk, None)),
            status: Some(pb::controller_get_volume_response::VolumeStatus {
                published_node_ids,
                volume_condition: Some(volume_condition),
            }),
        }))
    }
}

fn status_of(disk: &Disk) -> (Vec<String>, pb::VolumeCondition) {
    let nodes = match disk.disk_state.as_str() {
        disk_state::ATTACHED | disk_state::DETACHING | disk_state::EXPANDING => {
            disk.instance().map(str::to_owned).into_iter().collect()
        }
        _ => Vec::new(),
    };
    let condition = pb::VolumeCondition {
        abnormal: false,
        message: format!("disk is {}", disk.disk_state),
    };
    (nodes, condition)
}
