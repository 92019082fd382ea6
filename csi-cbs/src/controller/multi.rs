//! Multi-disk volumes (`devicemapper` classes) in the controller: their disks are made, attached,
//! grown, detached and deleted together. The volume ID is the disk IDs joined by commas, as
//! Tencent's driver made it; disk `i` of volume `name` is named `<name>-<i>`, so a retry finds
//! every disk already made and creates only the missing ones (never a second set), each with its
//! own `ClientToken` through [`create`](super::create). Attach and detach send one batched call
//! for the disks that need it (through the controller's batcher, which sends up to 10 disks a
//! call), then wait on each disk's state machine.

use std::collections::HashMap;

use csi_common::csi::pb;
use csi_common::csi::request::Capacity;
use tcloud::ErrorKind;
use tcloud::cbs::{CbsApi, CreateDisksRequest, Disk, DiskChargePrepaid, Placement, disk_state};
use tokio::time::Instant;
use tonic::Response;

use super::attach::{attach_outcome, publish_context};
use super::names::{TAG_VOLUME_NAME, cloud_name};
use super::{ControllerService, RpcResult, VOLUME_CONTEXT_FS_TYPE};
use crate::batcher::cloud_error;
use crate::error::{Error, Result};
use crate::multidisk::{context_of, is_valid_volume_name};
use crate::params::{CbsParams, GIB, MultiDisk, size_gib};
use crate::topology::topology_for;
use crate::volume_id::join;

/// The cloud name of disk `index` of the multi-disk volume `name`.
pub fn disk_name(name: &str, index: u32) -> String {
    format!("{name}-{index}")
}

/// Each disk's share of a capacity range over `devices` disks: required rounded up, limit down.
fn per_disk(required: u64, limit: u64, devices: u64) -> (u64, u64) {
    (required.div_ceil(devices), limit / devices)
}

impl<C: CbsApi> ControllerService<C> {
    /// CreateVolume of a `devicemapper` class: `devices` disks in one zone, each a share of the
    /// capacity; answers the joined ID and the context the node assembles them by.
    pub(super) async fn create_multi_disk(
        &self,
        req: &pb::CreateVolumeRequest,
        params: &CbsParams,
        multi: MultiDisk,
        deadline: Instant,
    ) -> Result<pb::Volume> {
        if !is_valid_volume_name(&req.name) {
            return Err(Error::InvalidArgument(format!(
                "volume name {:?} cannot name the volume group or md array of a multi-disk volume: \
                 it takes letters, digits, '-', '_', '.' and '+', up to 100 characters",
                req.name
            )));
        }
        if req.volume_content_source.is_some() {
            return Err(Error::InvalidArgument(format!(
                "a multi-disk volume ({}) cannot be restored from a snapshot or cloned",
                multi.describe()
            )));
        }
        let Capacity { required, limit } = Capacity::parse(req.capacity_range.as_ref())?;
        let (required_each, limit_each) = per_disk(required, limit, u64::from(multi.devices));
        if limit > 0 && limit_each == 0 {
            return Err(Error::OutOfRange(format!(
                "limit_bytes {limit} cannot be shared among {} disks",
                multi.devices
            )));
        }
        let gib = size_gib(&params.disk_type, required_each, limit_each).map_err(Error::from)?;
        let _guard = self.inflight.acquire(&req.name)?;

        let mut disks: Vec<Option<Disk>> = Vec::with_capacity(multi.devices as usize);
        for index in 0..multi.devices {
            let disk = self.disk_by_name(&disk_name(&req.name, index)).await?;
            if let Some(disk) = &disk {
                Self::check_existing(disk, params, required_each, limit_each, None)?;
            }
            disks.push(disk);
        }
        let mut zones = disks.iter().flatten().map(|d| d.placement.zone.clone());
        let zone = match zones.next() {
            Some(zone) => {
                if let Some(other) = zones.find(|z| *z != zone) {
                    return Err(Error::FailedPrecondition(format!(
                        "the disks of volume {} are in zones {zone} and {other}; one node cannot attach them all",
                        req.name
                    )));
                }
                zone
            }
            None => {
                self.choose_zone(
                    &req.name,
                    params,
                    req.accessibility_requirements.as_ref(),
                    deadline,
                )
                .await?
            }
        };
        let mut made = Vec::with_capacity(disks.len());
        for (index, disk) in (0..multi.devices).zip(disks) {
            if let Some(disk) = disk {
                made.push(disk);
                continue;
            }
            let name = disk_name(&req.name, index);
            let (cloud, name_tag) = cloud_name(&name, TAG_VOLUME_NAME);
            let create = CreateDisksRequest {
                placement: Placement {
                    zone: zone.clone(),
                    project_id: params.project_id,
                    cdc_id: params.cdc_id.clone(),
                },
                disk_type: params.disk_type.clone(),
                disk_charge_type: params.charge_type.clone(),
                disk_charge_prepaid: params.prepaid_period.map(|period| DiskChargePrepaid {
                    period,
                    renew_flag: params.renew_flag.clone(),
                }),
                disk_size: gib,
                disk_name: Some(cloud),
                disk_count: 1,
                snapshot_id: None,
                encrypt: params.encrypt.then(|| "ENCRYPT".to_owned()),
                throughput_performance: params.throughput_mbps,
                tags: params.tags.iter().cloned().chain(name_tag).collect(),
                client_token: None,
            };
            let disk = self.create_disk(&name, create, deadline).await?;
            if let Some(policy) = &params.auto_snapshot_policy
                && let Err(e) = self
                    .cbs
                    .bind_auto_snapshot_policy(
                        policy,
                        std::slice::from_ref(&disk.disk_id),
                        Some(deadline),
                    )
                    .await
            {
                tracing::warn!(disk = %disk.disk_id, policy = %policy, error = %e, "cannot bind the auto-snapshot policy; the disk is created without it");
            }
            made.push(disk);
        }
        let ids: Vec<String> = made.iter().map(|d| d.disk_id.clone()).collect();
        let mut volume_context = context_of(&multi, &req.name);
        volume_context.insert("diskType".to_owned(), params.disk_type.clone());
        if let Some(fs_type) = &params.fs_type {
            volume_context.insert(VOLUME_CONTEXT_FS_TYPE.to_owned(), fs_type.clone());
        }
        let bytes: u64 = made.iter().map(|d| d.disk_size.saturating_mul(GIB)).sum();
        Ok(pb::Volume {
            capacity_bytes: bytes as i64,
            volume_id: join(&ids),
            volume_context,
            content_source: None,
            accessible_topology: vec![topology_for(&zone)],
        })
    }

    /// DeleteVolume of a multi-disk volume: every disk that still exists, in one call.
    pub(super) async fn delete_multi_disk(
        &self,
        volume_id: &str,
        disks: &[&str],
        deadline: Instant,
    ) -> Result<()> {
        let mut existing = Vec::new();
        for disk_id in disks {
            match self.disk(disk_id).await? {
                Some(disk) if disk.disk_state == disk_state::ATTACHED => {
                    return Err(Error::FailedPrecondition(format!(
                        "disk {disk_id} of volume {volume_id} is attached to {}; unpublish it first",
                        disk.instance_id
                    )));
                }
                Some(_) => existing.push((*disk_id).to_owned()),
                None => {
                    self.terminated.record(disk_id);
                }
            }
        }
        if existing.is_empty() {
            return Ok(());
        }
        let singles = match self.cbs.terminate_disks(&existing, Some(deadline)).await {
            Ok(()) => Vec::new(),
            // One of them went meanwhile: the others one at a time.
            Err(e) if e.kind() == ErrorKind::NotFound => existing.clone(),
            Err(e) => return Err(terminate_error(volume_id, e)),
        };
        for disk_id in &singles {
            match self
                .cbs
                .terminate_disks(std::slice::from_ref(disk_id), Some(deadline))
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(terminate_error(volume_id, e)),
            }
        }
        for disk_id in &existing {
            self.terminated.record(disk_id);
        }
        Ok(())
    }

    /// ControllerPublishVolume of a multi-disk volume: attaches every disk to `node_id`.
    pub(super) async fn publish_multi_disk(
        &self,
        volume_id: &str,
        disks: &[&str],
        node_id: &str,
        deadline: Instant,
    ) -> Result<HashMap<String, String>> {
        let mut unattached = Vec::new();
        let mut zone = String::new();
        for disk_id in disks {
            let disk = self.disk(disk_id).await?.ok_or_else(|| {
                Error::NotFound(format!(
                    "disk {disk_id} of volume {volume_id} does not exist"
                ))
            })?;
            if let Some(other) = disk.instance().filter(|i| *i != node_id) {
                return Err(Error::FailedPrecondition(format!(
                    "disk {disk_id} of volume {volume_id} is attached to {other}, not {node_id}; a CBS disk attaches to one node at a time"
                )));
            }
            if disk.disk_state == disk_state::UNATTACHED {
                unattached.push((*disk_id).to_owned());
                zone = disk.placement.zone.clone();
            }
        }
        let mut sent = None;
        if !unattached.is_empty() {
            let answers = self.attacher.attach(&unattached, node_id, deadline).await;
            for answer in answers {
                attach_outcome(answer, volume_id, &zone, node_id)?;
            }
            sent = Some(Instant::now());
        }
        for disk_id in disks {
            let sent = sent.filter(|_| unattached.iter().any(|d| d == disk_id));
            self.attach_polling(disk_id, node_id, deadline, sent)
                .await?;
        }
        Ok(publish_context(volume_id))
    }

    /// ControllerUnpublishVolume of a multi-disk volume: detaches every disk attached here.
    pub(super) async fn unpublish_multi_disk(
        &self,
        disks: &[&str],
        node_id: &str,
        deadline: Instant,
    ) -> Result<()> {
        let mut by_node: HashMap<String, Vec<String>> = HashMap::new();
        for disk_id in disks {
            if let Some(disk) = self.disk(disk_id).await?
                && disk.disk_state == disk_state::ATTACHED
                && let Some(instance) = disk.instance()
                && (node_id.is_empty() || instance == node_id)
            {
                by_node
                    .entry(instance.to_owned())
                    .or_default()
                    .push((*disk_id).to_owned());
            }
        }
        for (instance, ids) in &by_node {
            for answer in self
                .attacher
                .detach(ids, Some(instance.as_str()), deadline)
                .await
            {
                match answer {
                    Ok(()) => {}
                    // A disk moved meanwhile: each disk's own detach below sorts it out.
                    Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Busy) => {}
                    Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
                    Err(e) => return Err(cloud_error(e)),
                }
            }
        }
        for disk_id in disks {
            self.clear_watchdog(disk_id);
            self.unpublish(disk_id, node_id, deadline).await?;
        }
        Ok(())
    }

    /// ControllerExpandVolume of a multi-disk volume: every disk to its share of the new size.
    pub(super) async fn expand_multi_disk(
        &self,
        volume_id: &str,
        disks: &[&str],
        (required, limit): (u64, u64),
        node_expansion_required: bool,
        deadline: Instant,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        let (required_each, limit_each) = per_disk(required, limit, disks.len() as u64);
        let mut described = Vec::with_capacity(disks.len());
        for disk_id in disks {
            let disk = self.disk(disk_id).await?.ok_or_else(|| {
                Error::NotFound(format!(
                    "disk {disk_id} of volume {volume_id} does not exist"
                ))
            })?;
            described.push(disk);
        }
        let mut bytes = 0u64;
        for (disk_id, disk) in disks.iter().zip(described) {
            let gib = size_gib(&disk.disk_type, required_each, limit_each).map_err(Error::from)?;
            let disk = self.resize_to(disk_id, disk, gib, deadline).await?;
            bytes = bytes.saturating_add(disk.disk_size.saturating_mul(GIB));
        }
        Ok(Response::new(pb::ControllerExpandVolumeResponse {
            capacity_bytes: bytes as i64,
            node_expansion_required,
        }))
    }
}

fn terminate_error(volume_id: &str, e: tcloud::CloudError) -> Error {
    if e.code().is_some_and(|c| c.ends_with(".Attached")) {
        Error::FailedPrecondition(format!(
            "a disk of volume {volume_id} is attached; unpublish it first: {e}"
        ))
    } else {
        Error::from(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_names() {
        assert_eq!(per_disk(25 * GIB, 0, 2), (25 * GIB / 2, 0));
        assert_eq!(per_disk(3, 10, 2), (2, 5));
        assert_eq!(disk_name("pvc-1", 0), "pvc-1-0");
        assert_eq!(disk_name("pvc-1", 19), "pvc-1-19");
    }
}
