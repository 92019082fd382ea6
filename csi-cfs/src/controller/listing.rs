//! Reading every volume back for ListVolumes: the whole file systems this driver made and the
//! subdirectories of its shared instances (archived and released ones excluded), in a stable
//! order, paged by the CSI token.
//!
//! Read-only: nothing here creates or deletes a volume or writes an owner record.

use csi_common::csi::pb;
use csi_common::csi::reply::answer_by;
use csi_common::csi::request::Page;
use csi_common::mount::Mounter;
use tcloud::cfs::{CfsApi, life_cycle};
use tokio::time::Instant;
use tonic::{Request, Response};

use super::{
    ARCHIVE_PREFIX, ControllerService, RpcResult, TAG_DRIVER, TAG_ON_DELETE, TAG_SHARED,
    volume_context,
};
use crate::error::{Error, Result, io};
use crate::owners::{Owner, RECORDS_DIR, Records};
use crate::params::{OnDelete, VolumeId, owner_digest};

impl<C: CfsApi, M: Mounter + 'static> ControllerService<C, M> {
    /// Every volume this driver made: its whole file systems and the subdirectories of its shared
    /// instances (archived ones excluded), in a stable order.
    async fn all_volumes(&self, deadline: Instant) -> Result<Vec<pb::Volume>> {
        let mut volumes = Vec::new();
        for fs in self.all_file_systems(deadline).await? {
            if fs.tag(TAG_DRIVER) != Some(self.config.driver_name.as_str())
                || fs.life_cycle_state != life_cycle::AVAILABLE
            {
                continue;
            }
            let target = self.mount_target(&fs.file_system_id, deadline).await?;
            if fs.tag(TAG_SHARED).is_none() {
                volumes.push(pb::Volume {
                    volume_id: fs.file_system_id.clone(),
                    volume_context: volume_context(&target, 4, "/"),
                    ..Default::default()
                });
                continue;
            }
            let on_delete = fs
                .tag(TAG_ON_DELETE)
                .and_then(OnDelete::parse)
                .unwrap_or(OnDelete::Retain);
            let root = self.instance_root(&fs.file_system_id, &target).await?;
            // An NFS directory read can block on a sick server: off the async runtime.
            let names =
                tokio::task::spawn_blocking(move || -> Result<Vec<(String, Option<String>)>> {
                    let records: std::collections::BTreeMap<String, Owner> =
                        Records::new(&root).all()?.into_iter().collect();
                    // Directories older than owner records have none and are listed as before;
                    // released ones (deleted, data retained) are not volumes any more.
                    let mut names: Vec<(String, Option<String>)> = std::fs::read_dir(&root)
                        .map_err(io(&root, "cannot list the shared instance"))?
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                        .filter(|n| !n.starts_with(ARCHIVE_PREFIX) && n != RECORDS_DIR)
                        .filter_map(|n| match records.get(&n) {
                            Some(owner) if owner.released => None,
                            Some(owner) => Some((n, Some(owner_digest(&owner.volume)))),
                            None => Some((n, None)),
                        })
                        .collect();
                    names.sort();
                    Ok(names)
                })
                .await
                .map_err(|e| Error::Internal(format!("listing task failed: {e}")))??;
            for (subdir, owner) in names {
                let id = VolumeId::Subdir {
                    fs_id: fs.file_system_id.clone(),
                    on_delete,
                    subdir: subdir.clone(),
                    owner,
                };
                volumes.push(pb::Volume {
                    volume_id: id.to_string(),
                    volume_context: volume_context(&target, 4, &format!("/{subdir}")),
                    ..Default::default()
                });
            }
        }
        Ok(volumes)
    }

    /// ListVolumes: one page of `all_volumes`.
    pub(super) async fn list_volume_page(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        let page = Page::parse(&req.starting_token, req.max_entries, u64::MAX)?;
        let volumes = self.all_volumes(deadline).await?;
        let (volumes, next_token) = page.of(&volumes, "volumes")?;
        let entries = volumes
            .iter()
            .map(|v| pb::list_volumes_response::Entry {
                volume: Some(v.clone()),
                status: None,
            })
            .collect();
        Ok(Response::new(pb::ListVolumesResponse {
            entries,
            next_token,
        }))
    }
}
