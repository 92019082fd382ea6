//! The asynchronous disk actions: AttachDisks and DetachDisks (the instance, its zone and its
//! attachment limit) and ResizeDisk (disks only grow). Each checks the request and starts a
//! transition (ATTACHING, DETACHING, EXPANDING) that `transitions` completes.

use tokio::time::Instant;

use super::checks::{check_id_list, disk_busy, disk_not_found, instance_not_found, not_supported};
use super::model::{CbsOp, DiskState, MAX_DISK_SIZE, State};
use crate::fake::ApiError;

impl State {
    pub(super) fn attach_disks(
        &mut self,
        disk_ids: &[String],
        instance: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        check_id_list(disk_ids, "DiskIds", 10)?;
        let zone = self
            .instances
            .get(instance)
            .ok_or_else(|| instance_not_found(instance))?;
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            match disk.state {
                DiskState::Unattached => {}
                DiskState::Attached => {
                    return Err(ApiError::new(
                        "ResourceUnavailable.Attached",
                        format!(
                            "The disk {id} is attached to {} already.",
                            disk.instance_id.as_deref().unwrap_or("an instance")
                        ),
                    ));
                }
                DiskState::Torecycle => {
                    return Err(not_supported(format!(
                        "The disk {id} is in the recycle bin."
                    )));
                }
                busy => return Err(disk_busy(id, busy)),
            }
            if &disk.zone != zone {
                return Err(ApiError::new(
                    "ResourceUnavailable.ZoneNotMatch",
                    format!(
                        "The disk {id} is in {} and the instance {instance} in {zone}: they must be in the same zone.",
                        disk.zone
                    ),
                ));
            }
        }
        let used = self
            .disks
            .iter()
            .filter(|d| d.instance_id.as_deref() == Some(instance))
            .count() as u64;
        let adding = disk_ids.len() as u64;
        if used + adding > self.max_attach {
            return Err(ApiError::new(
                "LimitExceeded.InstanceAttachedDisk",
                format!(
                    "The instance {instance} has {used} disks; {adding} more exceed its limit of {}.",
                    self.max_attach
                ),
            ));
        }
        let pending = self.pending(CbsOp::AttachDisks, DiskState::Attached, now, None);
        for id in disk_ids {
            if let Some(disk) = self.disk_mut(id) {
                disk.state = DiskState::Attaching;
                disk.instance_id = Some(instance.to_owned());
                disk.pending = Some(pending.clone());
            }
        }
        Ok(())
    }

    pub(super) fn detach_disks(
        &mut self,
        disk_ids: &[String],
        instance: Option<&str>,
        now: Instant,
    ) -> Result<(), ApiError> {
        check_id_list(disk_ids, "DiskIds", 10)?;
        if let Some(instance) = instance
            && !self.instances.contains_key(instance)
        {
            return Err(instance_not_found(instance));
        }
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            match disk.state {
                DiskState::Attached => {}
                DiskState::Unattached | DiskState::Torecycle => {
                    return Err(not_supported(format!(
                        "The disk {id} is {}: it is not attached.",
                        disk.state.as_str()
                    )));
                }
                busy => return Err(disk_busy(id, busy)),
            }
            if let Some(instance) = instance
                && disk.instance_id.as_deref() != Some(instance)
            {
                return Err(ApiError::invalid_value(format!(
                    "The disk {id} is attached to {}, not to {instance}.",
                    disk.instance_id.as_deref().unwrap_or("no instance")
                )));
            }
        }
        let pending = self.pending(CbsOp::DetachDisks, DiskState::Unattached, now, None);
        for id in disk_ids {
            if let Some(disk) = self.disk_mut(id) {
                disk.state = DiskState::Detaching;
                disk.pending = Some(pending.clone());
            }
        }
        Ok(())
    }

    pub(super) fn resize_disk(
        &mut self,
        id: &str,
        size: u64,
        now: Instant,
    ) -> Result<(), ApiError> {
        let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
        let back_to = match disk.state {
            DiskState::Unattached => DiskState::Unattached,
            DiskState::Attached => DiskState::Attached,
            DiskState::Torecycle => {
                return Err(not_supported(format!(
                    "The disk {id} is in the recycle bin."
                )));
            }
            busy => return Err(disk_busy(id, busy)),
        };
        if size <= disk.disk_size {
            return Err(ApiError::invalid_value(format!(
                "DiskSize {size} GiB must be larger than the current size of {id}, {} GiB: disks only grow.",
                disk.disk_size
            )));
        }
        if size > MAX_DISK_SIZE {
            return Err(ApiError::invalid_value(format!(
                "DiskSize {size} GiB is more than the {MAX_DISK_SIZE} GiB a {} disk can have.",
                disk.disk_type.as_str()
            )));
        }
        disk.disk_type.check_size(size, "DiskSize")?;
        let pending = self.pending(CbsOp::ResizeDisk, back_to, now, Some(size));
        if let Some(disk) = self.disk_mut(id) {
            disk.state = DiskState::Expanding;
            disk.pending = Some(pending);
        }
        Ok(())
    }
}
