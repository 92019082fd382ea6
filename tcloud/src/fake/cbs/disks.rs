//! The disk actions that complete at once: CreateDisks (request checks, ClientToken idempotency,
//! restore from a snapshot, the per-zone quota), DescribeDisks (IDs, filters, paging) and
//! TerminateDisks (prepaid disks go to the recycle bin). Attach, detach and resize live in
//! `attach`; attribute changes in `settings`.

use super::checks::{
    UNNAMED, check_describe_ids, check_filters, check_id_list, check_name, check_tags, disk_busy,
    disk_not_found, page, snapshot_not_found,
};
use super::model::{DiskRecord, DiskState, DiskType, SnapshotState, State};
use crate::cbs::{CreateDisksRequest, DescribeDisksRequest, DescribeDisksResponse};
use crate::fake::{ApiError, random_id, zone_names};

/// Most disks one CreateDisks call makes.
const MAX_DISK_COUNT: u32 = 50;

const RENEW_FLAGS: [&str; 3] = [
    "NOTIFY_AND_AUTO_RENEW",
    "NOTIFY_AND_MANUAL_RENEW",
    "DISABLE_NOTIFY_AND_MANUAL_RENEW",
];

const DISK_FILTERS: &[&str] = &[
    "disk-id",
    "disk-name",
    "zone",
    "disk-state",
    "instance-id",
    "disk-type",
    "disk-charge-type",
    "disk-usage",
    "portable",
    "project-id",
    "tag-key",
    "tag-value",
    "tag:",
];

/// A validated CreateDisks request.
#[derive(Debug)]
struct CreatePlan {
    zone: String,
    project_id: i64,
    disk_type: DiskType,
    size: u64,
    count: u32,
    name: String,
    prepaid: bool,
    encrypt: bool,
    throughput: u64,
}

impl State {
    fn plan_create(&self, request: &CreateDisksRequest) -> Result<CreatePlan, ApiError> {
        let zone = request.placement.zone.as_str();
        if !self.zone_exists(zone) {
            return Err(ApiError::invalid_value(format!(
                "Placement.Zone {zone:?} is not a zone of the region; zones: {}.",
                zone_names(&self.zones)
            )));
        }
        let disk_type = DiskType::from_request(&request.disk_type, "DiskType")?;
        let prepaid = match request.disk_charge_type.as_str() {
            "POSTPAID_BY_HOUR" => false,
            "CDCPAID" => {
                if request.placement.cdc_id.is_none() {
                    return Err(ApiError::new(
                        "MissingParameter",
                        "DiskChargeType CDCPAID needs Placement.CdcId.",
                    ));
                }
                false
            }
            "PREPAID" => {
                let Some(terms) = &request.disk_charge_prepaid else {
                    return Err(ApiError::new(
                        "MissingParameter",
                        "DiskChargeType PREPAID needs DiskChargePrepaid.",
                    ));
                };
                if !matches!(terms.period, 1..=12 | 24 | 36) {
                    return Err(ApiError::invalid_value(format!(
                        "DiskChargePrepaid.Period {} is not one of 1-12, 24, 36.",
                        terms.period
                    )));
                }
                let renew_flag = terms
                    .renew_flag
                    .as_deref()
                    .unwrap_or("NOTIFY_AND_MANUAL_RENEW");
                if !RENEW_FLAGS.contains(&renew_flag) {
                    return Err(ApiError::invalid_value(format!(
                        "DiskChargePrepaid.RenewFlag {renew_flag:?} is not one of {}.",
                        RENEW_FLAGS.join(", ")
                    )));
                }
                true
            }
            other => {
                return Err(ApiError::invalid_value(format!(
                    "DiskChargeType {other:?} is not PREPAID, POSTPAID_BY_HOUR or CDCPAID."
                )));
            }
        };
        let name = request.disk_name.as_deref().unwrap_or(UNNAMED).to_owned();
        check_name(&name, "DiskName")?;
        let count = request.disk_count;
        if count == 0 {
            return Err(ApiError::invalid_value("DiskCount must be at least 1."));
        }
        if count > MAX_DISK_COUNT {
            return Err(ApiError::new(
                "InvalidParameterValue.LimitExceeded",
                format!("DiskCount {count} is more than {MAX_DISK_COUNT} disks in one call."),
            ));
        }
        let encrypt = match request.encrypt.as_deref() {
            None => false,
            Some("ENCRYPT") => true,
            Some(other) => {
                return Err(ApiError::invalid_value(format!(
                    "Encrypt {other:?} is not ENCRYPT."
                )));
            }
        };
        let throughput = request.throughput_performance.unwrap_or(0);
        disk_type
            .check_throughput(throughput, "ThroughputPerformance")
            .map_err(|e| ApiError::invalid_value(e.message))?;
        check_tags(&request.tags)?;
        if let Some(token) = &request.client_token
            && (token.is_empty() || token.len() > 64 || !token.is_ascii())
        {
            return Err(ApiError::invalid_value(
                "ClientToken must be 1 to 64 ASCII characters.",
            ));
        }
        // The client always sends DiskSize, so with a snapshot it is compared, never defaulted.
        let size = request.disk_size;
        if let Some(snapshot_id) = &request.snapshot_id {
            let snapshot = self
                .snapshot(snapshot_id)
                .ok_or_else(|| snapshot_not_found(snapshot_id))?;
            if snapshot.state != SnapshotState::Normal {
                return Err(ApiError::new(
                    "ResourceUnavailable.SnapshotCreating",
                    format!(
                        "The snapshot {snapshot_id} is {}: it can be used once NORMAL.",
                        snapshot.state.as_str()
                    ),
                ));
            }
            if size < snapshot.disk_size {
                return Err(ApiError::new(
                    "InvalidParameter.DiskSizeNotMatch",
                    format!(
                        "DiskSize {size} GiB is smaller than the snapshot {snapshot_id} ({} GiB).",
                        snapshot.disk_size
                    ),
                ));
            }
        }
        disk_type.check_size(size, "DiskSize")?;
        Ok(CreatePlan {
            zone: zone.to_owned(),
            project_id: request.placement.project_id.unwrap_or(0),
            disk_type,
            size,
            count,
            name,
            prepaid,
            encrypt,
            throughput,
        })
    }

    pub(super) fn create_disks(
        &mut self,
        request: &CreateDisksRequest,
    ) -> Result<Vec<String>, ApiError> {
        let plan = self.plan_create(request)?;
        if let Some(token) = &request.client_token
            && let Some(ids) = self.client_tokens.get(token)
        {
            return Ok(ids.clone());
        }
        let existing = self.disks.iter().filter(|d| d.zone == plan.zone).count() as u64;
        if let Some(&max) = self.quotas.get(&plan.zone)
            && existing + u64::from(plan.count) > max
        {
            return Err(ApiError::new(
                "ResourceInsufficient.OverQuota",
                format!(
                    "Zone {} holds {existing} of at most {max} disks; {} more do not fit.",
                    plan.zone, plan.count
                ),
            ));
        }
        let mut ids: Vec<String> = Vec::new();
        while ids.len() < plan.count as usize {
            let id = random_id("disk-", 8);
            if self.disk(&id).is_none() && !ids.contains(&id) {
                ids.push(id);
            }
        }
        let created_at = crate::time::unix_now();
        for id in &ids {
            self.disks.push(DiskRecord {
                disk_id: id.clone(),
                disk_name: plan.name.clone(),
                disk_type: plan.disk_type,
                disk_size: plan.size,
                zone: plan.zone.clone(),
                project_id: plan.project_id,
                cdc_id: request.placement.cdc_id.clone(),
                charge_type: request.disk_charge_type.clone(),
                prepaid: plan.prepaid,
                encrypt: plan.encrypt,
                throughput_performance: plan.throughput,
                tags: request.tags.clone(),
                created_at,
                snapshot_id: request.snapshot_id.clone(),
                state: DiskState::Unattached,
                instance_id: None,
                on_instance: false,
                auto_snapshot_policy_ids: Vec::new(),
                pending: None,
            });
        }
        if let Some(token) = &request.client_token {
            self.client_tokens.insert(token.clone(), ids.clone());
        }
        Ok(ids)
    }

    pub(super) fn describe_disks(
        &self,
        request: &DescribeDisksRequest,
    ) -> Result<DescribeDisksResponse, ApiError> {
        check_describe_ids(
            &request.disk_ids,
            !request.filters.is_empty(),
            "DiskIds",
            "disk-",
            "InvalidDiskId.Malformed",
        )?;
        check_filters(&request.filters, DISK_FILTERS)?;
        let matching: Vec<&DiskRecord> = self
            .disks
            .iter()
            .filter(|d| request.disk_ids.is_empty() || request.disk_ids.contains(&d.disk_id))
            .filter(|d| request.filters.iter().all(|f| d.matches(f)))
            .collect();
        let total_count = matching.len() as u64;
        let disk_set = page(matching, request.offset, request.limit)?
            .into_iter()
            .map(DiskRecord::view)
            .collect();
        Ok(DescribeDisksResponse {
            total_count,
            disk_set,
        })
    }

    pub(super) fn terminate_disks(&mut self, disk_ids: &[String]) -> Result<(), ApiError> {
        check_id_list(disk_ids, "DiskIds", 100)?;
        for id in disk_ids {
            let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
            match disk.state {
                DiskState::Unattached | DiskState::Torecycle => {}
                DiskState::Attached => {
                    return Err(ApiError::new(
                        "ResourceUnavailable.Attached",
                        format!(
                            "The disk {id} is attached to {}; detach it first.",
                            disk.instance_id.as_deref().unwrap_or("an instance")
                        ),
                    ));
                }
                busy => return Err(disk_busy(id, busy)),
            }
        }
        for id in disk_ids {
            let Some(disk) = self.disk_mut(id) else {
                continue;
            };
            if disk.prepaid && disk.state == DiskState::Unattached {
                disk.state = DiskState::Torecycle;
            } else {
                self.disks.retain(|d| &d.disk_id != id);
            }
        }
        Ok(())
    }
}
