//! The asynchronous disk actions: AttachDisks, DetachDisks and ResizeDisk check the request and
//! record a pending transition (ATTACHING, DETACHING, EXPANDING) that `transitions` completes,
//! with its data-plane side effects, after the configured latency. Also DescribeInstancesDiskNum.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::model::{DiskState, MAX_DISK_SIZE, Pending};
use super::{
    Cbs, check_id_list, decode, disk_busy, disk_not_found, empty_reply, instance_not_found,
    not_supported, reply,
};
use crate::error::ApiError;
use crate::state::unix_now_ms;

impl Cbs {
    /// A pending transition started now by `action`, due after `latency`.
    fn pending(
        &self,
        action: &str,
        target: DiskState,
        latency: Duration,
        new_size: Option<u64>,
    ) -> Pending<DiskState> {
        let now = unix_now_ms();
        Pending {
            action: action.to_owned(),
            target,
            started_at_unix_ms: now,
            due_at_unix_ms: now + latency.as_millis() as i64,
            stuck: self.faults.stuck(action),
            new_size,
        }
    }

    pub(super) fn attach_disks(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            instance_id: String,
            #[serde(default)]
            disk_ids: Vec<String>,
            #[serde(default)]
            delete_with_instance: Option<bool>,
            #[serde(default)]
            attach_mode: Option<String>,
        }
        let request: Request = decode(body)?;
        check_id_list(&request.disk_ids, "DiskIds", 10)?;
        if let Some(mode) = request.attach_mode.as_deref()
            && mode != "PF"
            && mode != "VF"
        {
            return Err(ApiError::invalid_value(format!(
                "AttachMode {mode:?} is not PF or VF."
            )));
        }
        let instance = request.instance_id.as_str();
        let zone = self
            .instance_zone(instance)
            .ok_or_else(|| instance_not_found(instance))?
            .to_owned();
        let pending = self.pending(
            "AttachDisks",
            DiskState::Attached,
            self.config.attach_latency,
            None,
        );
        let max = self.config.max_attach;
        self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            for id in &request.disk_ids {
                let disk = cbs.disk(id).ok_or_else(|| disk_not_found(id))?;
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
                if disk.zone != zone {
                    return Err(ApiError::new(
                        "ResourceUnavailable.ZoneNotMatch",
                        format!(
                            "The disk {id} is in {} and the instance {instance} in {zone}: they must be in the same zone.",
                            disk.zone
                        ),
                    ));
                }
            }
            let used = cbs.disks_on_instance(instance);
            let adding = request.disk_ids.len() as u64;
            if used + adding > max {
                return Err(ApiError::new(
                    "LimitExceeded.InstanceAttachedDisk",
                    format!(
                        "The instance {instance} has {used} disks; {adding} more exceed its limit of {max}."
                    ),
                ));
            }
            for id in &request.disk_ids {
                if let Some(disk) = cbs.disk_mut(id) {
                    disk.state = DiskState::Attaching;
                    disk.instance_id = Some(instance.to_owned());
                    if let Some(delete) = request.delete_with_instance {
                        disk.delete_with_instance = delete;
                    }
                    disk.pending = Some(pending.clone());
                }
            }
            Ok(())
        })?;
        tracing::info!(disks = ?request.disk_ids, instance, stuck = pending.stuck, "CBS disks attaching");
        empty_reply()
    }

    pub(super) fn detach_disks(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            disk_ids: Vec<String>,
            #[serde(default)]
            instance_id: Option<String>,
        }
        let request: Request = decode(body)?;
        check_id_list(&request.disk_ids, "DiskIds", 10)?;
        if let Some(instance) = &request.instance_id
            && self.instance_zone(instance).is_none()
        {
            return Err(instance_not_found(instance));
        }
        let pending = self.pending(
            "DetachDisks",
            DiskState::Unattached,
            self.config.detach_latency,
            None,
        );
        self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            for id in &request.disk_ids {
                let disk = cbs.disk(id).ok_or_else(|| disk_not_found(id))?;
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
                if let Some(instance) = &request.instance_id
                    && disk.instance_id.as_ref() != Some(instance)
                {
                    return Err(ApiError::invalid_value(format!(
                        "The disk {id} is attached to {}, not to {instance}.",
                        disk.instance_id.as_deref().unwrap_or("no instance")
                    )));
                }
            }
            for id in &request.disk_ids {
                if let Some(disk) = cbs.disk_mut(id) {
                    disk.state = DiskState::Detaching;
                    disk.pending = Some(pending.clone());
                }
            }
            Ok(())
        })?;
        tracing::info!(disks = ?request.disk_ids, stuck = pending.stuck, "CBS disks detaching");
        empty_reply()
    }

    pub(super) fn resize_disk(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            disk_id: String,
            disk_size: u64,
        }
        let request: Request = decode(body)?;
        let id = request.disk_id.as_str();
        let size = request.disk_size;
        self.store.try_update(|state| {
            let disk = state
                .cbs
                .disk_mut(id)
                .ok_or_else(|| disk_not_found(id))?;
            let back_to = match disk.state {
                DiskState::Unattached => DiskState::Unattached,
                DiskState::Attached => DiskState::Attached,
                DiskState::Torecycle => {
                    return Err(not_supported(format!("The disk {id} is in the recycle bin.")));
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
            disk.state = DiskState::Expanding;
            disk.pending = Some(self.pending(
                "ResizeDisk",
                back_to,
                self.config.resize_latency,
                Some(size),
            ));
            Ok(())
        })?;
        tracing::info!(disk = id, size_gib = size, "CBS disk expanding");
        empty_reply()
    }

    pub(super) fn describe_instances_disk_num(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            instance_ids: Vec<String>,
        }
        let request: Request = decode(body)?;
        check_id_list(&request.instance_ids, "InstanceIds", 100)?;
        if let Some(unknown) = request
            .instance_ids
            .iter()
            .find(|i| self.instance_zone(i).is_none())
        {
            return Err(instance_not_found(unknown));
        }
        let details: Vec<Value> = self.store.read(|s| {
            request
                .instance_ids
                .iter()
                .map(|id| {
                    serde_json::json!({
                        "InstanceId": id,
                        "AttachedDiskCount": s.cbs.disks_on_instance(id),
                        "MaxAttachCount": self.config.max_attach,
                    })
                })
                .collect()
        });
        reply(&serde_json::json!({ "AttachDetail": details }))
    }
}
