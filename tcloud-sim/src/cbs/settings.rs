//! Actions that change or report disk settings at once: ModifyDiskAttributes (name, project,
//! DeleteWithInstance, type upgrades), ModifyDiskExtraPerformance, Bind/UnbindAutoSnapshotPolicy
//! and DescribeDiskConfigQuota.

use serde::Deserialize;
use serde_json::Value;

use super::model::{DiskState, DiskType, MAX_DISK_SIZE, MAX_THROUGHPUT, SIZE_STEP};
use super::{
    Cbs, check_id_list, check_name, decode, disk_busy, disk_not_found, empty_reply, not_supported,
    reply,
};
use crate::error::ApiError;

impl Cbs {
    pub(super) fn modify_disk_attributes(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            disk_ids: Vec<String>,
            #[serde(default)]
            disk_name: Option<String>,
            #[serde(default)]
            portable: Option<bool>,
            #[serde(default)]
            project_id: Option<u64>,
            #[serde(default)]
            delete_with_instance: Option<bool>,
            #[serde(default)]
            disk_type: Option<String>,
        }
        let request: Request = decode(body)?;
        check_id_list(&request.disk_ids, "DiskIds", 100)?;
        let others = request.disk_name.is_some()
            || request.portable.is_some()
            || request.project_id.is_some()
            || request.delete_with_instance.is_some();
        let new_type = match &request.disk_type {
            Some(name) => {
                if request.disk_ids.len() != 1 || others {
                    return Err(ApiError::new(
                        "InvalidParameter",
                        "DiskType changes one disk at a time and no other attribute with it.",
                    ));
                }
                let ty = DiskType::from_request(name, "DiskType")?;
                if !matches!(ty, DiskType::Premium | DiskType::Ssd) {
                    return Err(ApiError::invalid_value(format!(
                        "DiskType {name} is not a target of a type change (CLOUD_PREMIUM, CLOUD_SSD)."
                    )));
                }
                Some(ty)
            }
            None if !others => {
                return Err(ApiError::new(
                    "MissingParameter",
                    "Nothing to modify: give DiskName, ProjectId, Portable, DeleteWithInstance or DiskType.",
                ));
            }
            None => None,
        };
        if let Some(name) = &request.disk_name {
            check_name(name, "DiskName")?;
        }
        if request.portable == Some(false) {
            return Err(ApiError::invalid_value(
                "Portable can only turn a non-portable disk portable; these disks are portable.",
            ));
        }
        self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            for id in &request.disk_ids {
                let disk = cbs.disk(id).ok_or_else(|| disk_not_found(id))?;
                if disk.state == DiskState::Torecycle {
                    return Err(not_supported(format!("The disk {id} is in the recycle bin.")));
                }
                if request.delete_with_instance == Some(true) && disk.prepaid.is_some() {
                    return Err(ApiError::invalid_value(format!(
                        "DeleteWithInstance applies to postpaid disks only; {id} is PREPAID."
                    )));
                }
                if let Some(ty) = new_type {
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
                }
            }
            for id in &request.disk_ids {
                let Some(disk) = cbs.disk_mut(id) else {
                    continue;
                };
                if let Some(name) = &request.disk_name {
                    disk.disk_name = name.clone();
                }
                if let Some(project) = request.project_id {
                    disk.project_id = project;
                }
                if let Some(delete) = request.delete_with_instance {
                    disk.delete_with_instance = delete;
                }
                if let Some(ty) = new_type {
                    disk.disk_type = ty;
                }
            }
            Ok(())
        })?;
        empty_reply()
    }

    pub(super) fn modify_disk_extra_performance(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            disk_id: String,
            throughput_performance: u64,
        }
        let request: Request = decode(body)?;
        self.store.try_update(|state| {
            let disk = state
                .cbs
                .disk_mut(&request.disk_id)
                .ok_or_else(|| disk_not_found(&request.disk_id))?;
            if !disk.disk_type.has_extra_performance() {
                return Err(not_supported(format!(
                    "The disk {} is {}: extra performance is for CLOUD_HSSD and CLOUD_TSSD only.",
                    disk.disk_id,
                    disk.disk_type.as_str()
                )));
            }
            if disk.state.is_transitional() {
                return Err(disk_busy(&disk.disk_id, disk.state));
            }
            disk.disk_type
                .check_throughput(request.throughput_performance, "ThroughputPerformance")?;
            disk.throughput_performance = request.throughput_performance;
            Ok(())
        })?;
        empty_reply()
    }

    pub(super) fn describe_disk_config_quota(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            inquiry_type: String,
            #[serde(default)]
            disk_charge_type: Option<String>,
            #[serde(default)]
            instance_families: Vec<String>,
            #[serde(default)]
            disk_types: Vec<String>,
            #[serde(default)]
            zones: Vec<String>,
            #[serde(default)]
            memory: Option<u64>,
            #[serde(default)]
            disk_usage: Option<String>,
            #[serde(default, rename = "CPU")]
            cpu: Option<u64>,
        }
        let request: Request = decode(body)?;
        match request.inquiry_type.as_str() {
            "INQUIRY_CBS_CONFIG" => {}
            "INQUIRY_CVM_CONFIG" => {
                return Err(ApiError::new(
                    "UnsupportedOperation",
                    "InquiryType INQUIRY_CVM_CONFIG is not simulated; use INQUIRY_CBS_CONFIG.",
                ));
            }
            other => {
                return Err(ApiError::invalid_value(format!(
                    "InquiryType {other:?} is not INQUIRY_CBS_CONFIG or INQUIRY_CVM_CONFIG."
                )));
            }
        }
        if let Some(usage) = request.disk_usage.as_deref()
            && usage != "DATA_DISK"
        {
            return Err(ApiError::new(
                "UnsupportedOperation",
                format!("DiskUsage {usage:?}: only DATA_DISK is simulated."),
            ));
        }
        let charge_types: Vec<&str> = match request.disk_charge_type.as_deref() {
            None => vec!["PREPAID", "POSTPAID_BY_HOUR"],
            Some(c @ ("PREPAID" | "POSTPAID_BY_HOUR")) => vec![c],
            Some(other) => {
                return Err(ApiError::invalid_value(format!(
                    "DiskChargeType {other:?} is not PREPAID or POSTPAID_BY_HOUR."
                )));
            }
        };
        for zone in &request.zones {
            if !self.zone_exists(zone) {
                return Err(ApiError::invalid_value(format!(
                    "Zones: {zone:?} is not a zone of {}; zones: {}.",
                    self.sim.region,
                    self.zone_names()
                )));
            }
        }
        let types = if request.disk_types.is_empty() {
            DiskType::ALL.to_vec()
        } else {
            request
                .disk_types
                .iter()
                .map(|t| DiskType::from_request(t, "DiskTypes"))
                .collect::<Result<Vec<_>, _>>()?
        };
        let _ = (request.instance_families, request.memory, request.cpu);
        let mut set = Vec::new();
        for zone in self
            .sim
            .zones
            .iter()
            .filter(|z| request.zones.is_empty() || request.zones.contains(&z.name))
        {
            let existing = self.store.read(|s| s.cbs.disks_in_zone(&zone.name));
            let available = self.check_quota(&zone.name, existing, 1).is_ok();
            for ty in &types {
                for charge in &charge_types {
                    set.push(serde_json::json!({
                        "Available": available,
                        "DiskChargeType": charge,
                        "Zone": zone.name,
                        "InstanceFamily": null,
                        "DiskType": ty.as_str(),
                        "StepSize": SIZE_STEP,
                        "ExtraPerformanceRange": if ty.has_extra_performance() {
                            vec![0, MAX_THROUGHPUT]
                        } else {
                            vec![]
                        },
                        "DeviceClass": null,
                        "DiskUsage": "DATA_DISK",
                        "MinDiskSize": ty.min_size(),
                        "MaxDiskSize": MAX_DISK_SIZE,
                    }));
                }
            }
        }
        reply(&serde_json::json!({ "DiskConfigSet": set }))
    }

    /// BindAutoSnapshotPolicy (`bind`) and UnbindAutoSnapshotPolicy.
    pub(super) fn bind_auto_snapshot_policy(
        &self,
        body: Value,
        bind: bool,
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            auto_snapshot_policy_id: String,
            #[serde(default)]
            disk_ids: Vec<String>,
        }
        let request: Request = decode(body)?;
        let policy = request.auto_snapshot_policy_id.as_str();
        if !self
            .config
            .auto_snapshot_policies
            .iter()
            .any(|p| p == policy)
        {
            return Err(ApiError::new(
                "InvalidAutoSnapshotPolicyId.NotFound",
                format!("The auto-snapshot policy {policy} does not exist."),
            ));
        }
        if request.disk_ids.is_empty() {
            return empty_reply();
        }
        check_id_list(&request.disk_ids, "DiskIds", 80)?;
        self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            for id in &request.disk_ids {
                let disk = cbs.disk(id).ok_or_else(|| disk_not_found(id))?;
                if bind && disk.auto_snapshot_policy_ids.iter().any(|p| p == policy) {
                    return Err(ApiError::new(
                        "InvalidDisk.AlreadyBound",
                        format!("The disk {id} is bound to {policy} already."),
                    ));
                }
            }
            for id in &request.disk_ids {
                if let Some(disk) = cbs.disk_mut(id) {
                    if bind {
                        disk.auto_snapshot_policy_ids.push(policy.to_owned());
                    } else {
                        disk.auto_snapshot_policy_ids.retain(|p| p != policy);
                    }
                }
            }
            Ok(())
        })?;
        empty_reply()
    }
}
