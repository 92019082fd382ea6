//! The actions that change disk settings at once: BindAutoSnapshotPolicy,
//! ModifyDiskExtraPerformance (CLOUD_HSSD and CLOUD_TSSD only) and ModifyDiskAttributes with a
//! `DiskType` (types only go up: CLOUD_BASIC, CLOUD_PREMIUM, CLOUD_SSD).

use super::checks::{check_id_list, disk_busy, disk_not_found, not_supported};
use super::model::{DiskState, DiskType, State};
use crate::fake::ApiError;

impl State {
    pub(super) fn bind_auto_snapshot_policy(
        &mut self,
        policy: &str,
        disk_ids: &[String],
    ) -> Result<(), ApiError> {
        if !self.auto_snapshot_policies.iter().any(|p| p == policy) {
            return Err(ApiError::new(
                "InvalidAutoSnapshotPolicyId.NotFound",
                format!("The auto-snapshot policy {policy} does not exist."),
            ));
        }
        if disk_ids.is_empty() {
            return Ok(());
        }
        check_id_list(disk_ids, "DiskIds", 80)?;
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            if disk.auto_snapshot_policy_ids.iter().any(|p| p == policy) {
                return Err(ApiError::new(
                    "InvalidDisk.AlreadyBound",
                    format!("The disk {id} is bound to {policy} already."),
                ));
            }
        }
        for id in disk_ids {
            if let Some(disk) = self.disk_mut(id) {
                disk.auto_snapshot_policy_ids.push(policy.to_owned());
            }
        }
        Ok(())
    }

    pub(super) fn modify_disk_extra_performance(
        &mut self,
        id: &str,
        throughput: u64,
    ) -> Result<(), ApiError> {
        let disk = self.disk_mut(id).ok_or_else(|| disk_not_found(id))?;
        if !disk.disk_type.has_extra_performance() {
            return Err(not_supported(format!(
                "The disk {id} is {}: extra performance is for CLOUD_HSSD and CLOUD_TSSD only.",
                disk.disk_type.as_str()
            )));
        }
        if disk.state.is_transitional() {
            return Err(disk_busy(id, disk.state));
        }
        disk.disk_type
            .check_throughput(throughput, "ThroughputPerformance")?;
        disk.throughput_performance = throughput;
        Ok(())
    }

    /// ModifyDiskAttributes with one disk and a `DiskType`.
    pub(super) fn modify_disk_type(&mut self, id: &str, name: &str) -> Result<(), ApiError> {
        let ty = DiskType::from_request(name, "DiskType")?;
        if !matches!(ty, DiskType::Premium | DiskType::Ssd) {
            return Err(ApiError::invalid_value(format!(
                "DiskType {name} is not a target of a type change (CLOUD_PREMIUM, CLOUD_SSD)."
            )));
        }
        let disk = self.disk_mut(id).ok_or_else(|| disk_not_found(id))?;
        if disk.state == DiskState::Torecycle {
            return Err(not_supported(format!(
                "The disk {id} is in the recycle bin."
            )));
        }
        if disk.state.is_transitional() {
            return Err(disk_busy(id, disk.state));
        }
        let upgrade = match (disk.disk_type.upgrade_rank(), ty.upgrade_rank()) {
            (Some(from), Some(to)) => to > from,
            _ => false,
        };
        if !upgrade {
            return Err(not_supported(format!(
                "The disk {id} is {}: it cannot change to {} (types only go up: CLOUD_BASIC, CLOUD_PREMIUM, CLOUD_SSD).",
                disk.disk_type.as_str(),
                ty.as_str()
            )));
        }
        ty.check_size(disk.disk_size, "DiskSize")?;
        disk.disk_type = ty;
        Ok(())
    }
}
