//! Disk lifecycle actions that complete at once: CreateDisks (with ClientToken idempotency,
//! restore from a snapshot and the per-zone quota), DescribeDisks and TerminateDisks. Attach,
//! detach and resize live in `attach`; attribute changes and the quota inquiry in `settings`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dataplane::{copy_image, create_image, discard_image, grow_image, remove_image};
use super::model::{Disk, DiskState, DiskType, Prepaid, SnapshotState, Tag};
use super::{
    Cbs, Filter, check_describe_ids, check_filters, check_id_list, check_name, check_order,
    check_tags, decode, disk_busy, disk_not_found, empty_reply, format_time, page, reply,
    snapshot_not_found,
};
use crate::error::ApiError;
use crate::state::{random_id, unix_now};

/// Most disks one CreateDisks call makes.
const MAX_DISK_COUNT: u64 = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PlacementIn {
    zone: String,
    #[serde(default)]
    project_id: Option<u64>,
    #[serde(default)]
    cdc_id: Option<String>,
    // Accepted as the real API does, not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    cage_id: Option<String>,
    // Accepted as the real API does, not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    cdc_name: Option<String>,
    // Accepted as the real API does, not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    dedicated_cluster_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DiskChargePrepaid {
    period: u64,
    #[serde(default)]
    renew_flag: Option<String>,
    // Accepted as the real API does, not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    cur_instance_deadline: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateDisksRequest {
    placement: PlacementIn,
    disk_charge_type: String,
    disk_type: String,
    #[serde(default)]
    disk_name: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    snapshot_id: Option<String>,
    #[serde(default)]
    disk_count: Option<u64>,
    #[serde(default)]
    throughput_performance: Option<u64>,
    #[serde(default)]
    disk_size: Option<u64>,
    #[serde(default)]
    shareable: Option<bool>,
    #[serde(default)]
    client_token: Option<String>,
    #[serde(default)]
    encrypt: Option<String>,
    #[serde(default)]
    disk_charge_prepaid: Option<DiskChargePrepaid>,
    // Accepted as the real API does, not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    delete_snapshot: Option<i64>,
    #[serde(default)]
    auto_mount_configuration: Option<Value>,
    // Accepted as the real API does, not modelled by the simulator.
    #[allow(dead_code)]
    #[serde(default)]
    disk_backup_quota: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateDisksResponse {
    disk_id_set: Vec<String>,
}

/// A validated CreateDisks request: what each new disk will be.
#[derive(Debug, Clone)]
struct CreatePlan {
    zone: String,
    project_id: u64,
    cdc_id: Option<String>,
    disk_type: DiskType,
    size: u64,
    count: u64,
    name: String,
    charge_type: String,
    prepaid: Option<Prepaid>,
    encrypt: bool,
    throughput: u64,
    tags: Vec<Tag>,
    snapshot_id: Option<String>,
    shareable: bool,
}

const RENEW_FLAGS: [&str; 3] = [
    "NOTIFY_AND_AUTO_RENEW",
    "NOTIFY_AND_MANUAL_RENEW",
    "DISABLE_NOTIFY_AND_MANUAL_RENEW",
];

impl Cbs {
    /// Checks a CreateDisks request against the configuration and the snapshots.
    fn plan_create(&self, request: &CreateDisksRequest) -> Result<CreatePlan, ApiError> {
        let zone = request.placement.zone.as_str();
        if !self.zone_exists(zone) {
            return Err(ApiError::invalid_value(format!(
                "Placement.Zone {zone:?} is not a zone of {}; zones: {}.",
                self.sim.region,
                self.zone_names()
            )));
        }
        let disk_type = DiskType::from_request(&request.disk_type, "DiskType")?;
        let prepaid = match request.disk_charge_type.as_str() {
            "POSTPAID_BY_HOUR" => None,
            "CDCPAID" => {
                if request.placement.cdc_id.is_none() {
                    return Err(ApiError::new(
                        "MissingParameter",
                        "DiskChargeType CDCPAID needs Placement.CdcId.",
                    ));
                }
                None
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
                    .clone()
                    .unwrap_or_else(|| "NOTIFY_AND_MANUAL_RENEW".to_owned());
                if !RENEW_FLAGS.contains(&renew_flag.as_str()) {
                    return Err(ApiError::invalid_value(format!(
                        "DiskChargePrepaid.RenewFlag {renew_flag:?} is not one of {}.",
                        RENEW_FLAGS.join(", ")
                    )));
                }
                Some(Prepaid {
                    period_months: terms.period,
                    renew_flag,
                })
            }
            other => {
                return Err(ApiError::invalid_value(format!(
                    "DiskChargeType {other:?} is not PREPAID, POSTPAID_BY_HOUR or CDCPAID."
                )));
            }
        };
        let name = request
            .disk_name
            .clone()
            .unwrap_or_else(|| "未命名".to_owned());
        check_name(&name, "DiskName")?;
        let count = request.disk_count.unwrap_or(1);
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
        if request.auto_mount_configuration.is_some() {
            return Err(ApiError::new(
                "UnsupportedOperation",
                "AutoMountConfiguration is not simulated: attach the disk and format it yourself.",
            ));
        }
        if let Some(token) = &request.client_token
            && (token.is_empty() || token.len() > 64 || !token.is_ascii())
        {
            return Err(ApiError::invalid_value(
                "ClientToken must be 1 to 64 ASCII characters.",
            ));
        }
        let size = match &request.snapshot_id {
            None => request.disk_size.ok_or_else(|| {
                ApiError::new(
                    "MissingParameter",
                    "DiskSize is required unless SnapshotId is given.",
                )
            })?,
            Some(snapshot_id) => {
                let snapshot = self
                    .store
                    .read(|s| s.cbs.snapshot(snapshot_id).cloned())
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
                let size = request.disk_size.unwrap_or(snapshot.disk_size);
                if size < snapshot.disk_size {
                    return Err(ApiError::new(
                        "InvalidParameter.DiskSizeNotMatch",
                        format!(
                            "DiskSize {size} GiB is smaller than the snapshot {snapshot_id} ({} GiB).",
                            snapshot.disk_size
                        ),
                    ));
                }
                size
            }
        };
        disk_type.check_size(size, "DiskSize")?;
        Ok(CreatePlan {
            zone: zone.to_owned(),
            project_id: request.placement.project_id.unwrap_or(0),
            cdc_id: request.placement.cdc_id.clone(),
            disk_type,
            size,
            count,
            name,
            charge_type: request.disk_charge_type.clone(),
            prepaid,
            encrypt,
            throughput,
            tags: request.tags.clone(),
            snapshot_id: request.snapshot_id.clone(),
            shareable: request.shareable.unwrap_or(false),
        })
    }

    pub(super) fn check_quota(
        &self,
        zone: &str,
        existing: u64,
        adding: u64,
    ) -> Result<(), ApiError> {
        match self.config.quotas.get(zone) {
            Some(&max) if existing + adding > max => Err(ApiError::new(
                "ResourceInsufficient.OverQuota",
                format!(
                    "Zone {zone} holds {existing} of at most {max} disks; {adding} more do not fit."
                ),
            )),
            _ => Ok(()),
        }
    }

    pub(super) async fn create_disks(&self, body: Value) -> Result<Value, ApiError> {
        let request: CreateDisksRequest = decode(body)?;
        let plan = self.plan_create(&request)?;
        let token = request.client_token.clone();
        if let Some(token) = &token
            && let Some(ids) = self.store.read(|s| s.cbs.client_tokens.get(token).cloned())
        {
            return reply(&CreateDisksResponse { disk_id_set: ids });
        }
        let existing = self.store.read(|s| s.cbs.disks_in_zone(&plan.zone));
        self.check_quota(&plan.zone, existing, plan.count)?;

        let ids: Vec<String> = self.store.read(|s| {
            let mut ids: Vec<String> = Vec::new();
            while (ids.len() as u64) < plan.count {
                let id = random_id("disk-", 8);
                if s.cbs.disk(&id).is_none() && !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        });
        let images: Vec<_> = ids.iter().map(|id| self.layout.disk_image(id)).collect();
        let source = plan
            .snapshot_id
            .as_ref()
            .map(|id| self.layout.snapshot_image(id));
        let size = plan.size;
        let made = images.clone();
        let written = crate::state::run_blocking(move || {
            for (n, image) in made.iter().enumerate() {
                let result = match &source {
                    Some(source) => {
                        copy_image(source, image).and_then(|()| grow_image(image, size))
                    }
                    None => create_image(image, size),
                };
                if let Err(e) = result {
                    for image in &made[..=n] {
                        let _ = remove_image(image);
                    }
                    return Err(e);
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = written {
            if let Some(snapshot_id) = &plan.snapshot_id
                && self.store.read(|s| s.cbs.snapshot(snapshot_id).is_none())
            {
                return Err(snapshot_not_found(snapshot_id));
            }
            return Err(ApiError::internal(format!(
                "the simulator cannot create the disk images: {e}"
            )));
        }

        let now = unix_now();
        let outcome = self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            if let Some(token) = &token
                && let Some(ids) = cbs.client_tokens.get(token)
            {
                return Ok((ids.clone(), false));
            }
            self.check_quota(&plan.zone, cbs.disks_in_zone(&plan.zone), plan.count)?;
            for id in &ids {
                cbs.disks.push(Disk {
                    disk_id: id.clone(),
                    disk_name: plan.name.clone(),
                    disk_type: plan.disk_type,
                    disk_size: plan.size,
                    zone: plan.zone.clone(),
                    project_id: plan.project_id,
                    cdc_id: plan.cdc_id.clone(),
                    charge_type: plan.charge_type.clone(),
                    prepaid: plan.prepaid.clone(),
                    encrypt: plan.encrypt,
                    throughput_performance: plan.throughput,
                    tags: plan.tags.clone(),
                    created_at: now,
                    snapshot_id: plan.snapshot_id.clone(),
                    state: DiskState::Unattached,
                    instance_id: None,
                    loop_device: None,
                    delete_with_instance: false,
                    shareable: plan.shareable,
                    auto_snapshot_policy_ids: Vec::new(),
                    pending: None,
                });
            }
            if let Some(token) = &token {
                cbs.client_tokens.insert(token.clone(), ids.clone());
            }
            Ok((ids.clone(), true))
        });
        match outcome {
            Ok((disk_id_set, true)) => {
                tracing::info!(disks = ?disk_id_set, zone = %plan.zone, size_gib = plan.size, "CBS disks created");
                reply(&CreateDisksResponse { disk_id_set })
            }
            other => {
                let images = images.clone();
                let _ = crate::state::run_blocking(move || {
                    images.iter().try_for_each(|image| remove_image(image))
                })
                .await;
                let (disk_id_set, _) = other?;
                reply(&CreateDisksResponse { disk_id_set })
            }
        }
    }

    pub(super) fn describe_disks(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            disk_ids: Vec<String>,
            #[serde(default)]
            filters: Vec<Filter>,
            #[serde(default)]
            offset: Option<u64>,
            #[serde(default)]
            limit: Option<u64>,
            #[serde(default)]
            order_field: Option<String>,
            #[serde(default)]
            order: Option<String>,
            #[serde(default)]
            return_bind_auto_snapshot_policy: Option<bool>,
        }
        let request: Request = decode(body)?;
        check_describe_ids(
            &request.disk_ids,
            !request.filters.is_empty(),
            "DiskIds",
            "disk-",
            "InvalidDiskId.Malformed",
        )?;
        check_filters(&request.filters, DISK_FILTERS)?;
        let descending = check_order(
            request.order.as_deref(),
            request.order_field.as_deref(),
            &["CREATE_TIME", "DEADLINE"],
        )?;
        let with_policies = request.return_bind_auto_snapshot_policy.unwrap_or(false);
        let by_deadline = request.order_field.as_deref() == Some("DEADLINE");
        let (total, set) = self.store.read(|s| -> Result<_, ApiError> {
            let mut matching: Vec<&Disk> = s
                .cbs
                .disks
                .iter()
                .filter(|d| request.disk_ids.is_empty() || request.disk_ids.contains(&d.disk_id))
                .filter(|d| request.filters.iter().all(|f| disk_matches(d, f)))
                .collect();
            if by_deadline {
                matching.sort_by_key(|d| d.deadline().unwrap_or(i64::MAX));
            }
            if descending {
                matching.reverse();
            }
            let total = matching.len();
            let set: Vec<Value> = page(matching, request.offset, request.limit)?
                .into_iter()
                .map(|d| disk_view(d, &s.cbs, with_policies))
                .collect();
            Ok((total, set))
        })?;
        reply(&serde_json::json!({ "TotalCount": total, "DiskSet": set }))
    }

    pub(super) async fn terminate_disks(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            disk_ids: Vec<String>,
            #[serde(default)]
            delete_snapshot: Option<i64>,
        }
        let request: Request = decode(body)?;
        check_id_list(&request.disk_ids, "DiskIds", 100)?;
        let delete_snapshots = match request.delete_snapshot {
            None | Some(0) => false,
            Some(1) => true,
            Some(other) => {
                return Err(ApiError::invalid_value(format!(
                    "DeleteSnapshot {other} is not 0 or 1."
                )));
            }
        };
        let removed = self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            for id in &request.disk_ids {
                let disk = cbs.disk(id).ok_or_else(|| disk_not_found(id))?;
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
            let mut removed_disks = Vec::new();
            for id in &request.disk_ids {
                let Some(disk) = cbs.disk_mut(id) else {
                    continue;
                };
                if disk.prepaid.is_some() && disk.state == DiskState::Unattached {
                    disk.state = DiskState::Torecycle;
                } else {
                    cbs.disks.retain(|d| &d.disk_id != id);
                    removed_disks.push(id.clone());
                }
            }
            let mut removed_snapshots = Vec::new();
            if delete_snapshots {
                cbs.snapshots.retain(|snap| {
                    let drop = removed_disks.contains(&snap.disk_id)
                        && snap.deadline.is_some()
                        && snap.state == SnapshotState::Normal;
                    if drop {
                        removed_snapshots.push(snap.snapshot_id.clone());
                    }
                    !drop
                });
            }
            Ok((removed_disks, removed_snapshots))
        })?;
        let (disks, snapshots) = removed;
        tracing::info!(?disks, ?snapshots, "CBS disks terminated");
        let files: Vec<_> = disks
            .iter()
            .map(|id| self.layout.disk_image(id))
            .chain(snapshots.iter().map(|id| self.layout.snapshot_image(id)))
            .collect();
        // The images are gone from their names before the answer; freeing their blocks (a few
        // ms for a formatted disk) happens after it, as the cloud reclaims storage after
        // answering rather than making the caller wait.
        let discarded = crate::state::run_blocking(move || {
            files
                .iter()
                .map(|f| discard_image(f))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .await;
        match discarded {
            Ok(trash) => {
                tokio::task::spawn_blocking(move || {
                    for file in trash.into_iter().flatten() {
                        if let Err(e) = remove_image(&file) {
                            tracing::warn!(error = %e, file = %file.display(), "cannot remove the image of a terminated disk");
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot remove the images of terminated disks"),
        }
        empty_reply()
    }
}

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

/// Whether `disk` passes `filter` (any of its values); the name is checked already.
fn disk_matches(disk: &Disk, filter: &Filter) -> bool {
    let any = |v: &str| filter.values.iter().any(|x| x == v);
    match filter.name.as_str() {
        "disk-id" => any(&disk.disk_id),
        "disk-name" => any(&disk.disk_name),
        "zone" => any(&disk.zone),
        "disk-state" => any(disk.state.as_str()),
        "instance-id" => disk.instance_id.as_deref().is_some_and(any),
        "disk-type" => any(disk.disk_type.as_str()),
        "disk-charge-type" => any(&disk.charge_type),
        "disk-usage" => any("DATA_DISK"),
        "portable" => filter.values.iter().any(|v| v.eq_ignore_ascii_case("TRUE")),
        "project-id" => any(&disk.project_id.to_string()),
        "tag-key" => disk.tags.iter().any(|t| any(&t.key)),
        "tag-value" => disk.tags.iter().any(|t| any(&t.value)),
        name => name
            .strip_prefix("tag:")
            .is_some_and(|key| disk.tags.iter().any(|t| t.key == key && any(&t.value))),
    }
}

/// One `DiskSet` entry, in the real `Disk` shape.
fn disk_view(disk: &Disk, cbs: &super::CbsState, with_policies: bool) -> Value {
    let snapshots = cbs
        .snapshots
        .iter()
        .filter(|s| s.disk_id == disk.disk_id)
        .count() as u64;
    let mut placement = serde_json::json!({ "Zone": disk.zone, "ProjectId": disk.project_id });
    if let Some(cdc) = &disk.cdc_id {
        placement["CdcId"] = Value::String(cdc.clone());
    }
    let instance = if disk.attached() || disk.state == DiskState::Attaching {
        disk.instance_id.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let mut view = serde_json::json!({
        "DiskId": disk.disk_id,
        "DiskName": disk.disk_name,
        "DiskType": disk.disk_type.as_str(),
        "DiskState": disk.state.as_str(),
        "DiskSize": disk.disk_size,
        "DiskUsage": "DATA_DISK",
        "DiskChargeType": disk.charge_type,
        "Placement": placement,
        "InstanceId": instance,
        "InstanceIdList": [],
        "InstanceType": "CVM",
        "Attached": disk.attached(),
        "Encrypt": disk.encrypt,
        "Tags": disk.tags,
        "CreateTime": format_time(disk.created_at),
        "Portable": true,
        "SnapshotAbility": true,
        "Shareable": disk.shareable,
        "DeleteWithInstance": disk.delete_with_instance,
        "ThroughputPerformance": disk.throughput_performance,
        "Rollbacking": false,
        "RollbackPercent": 0,
        "Migrating": false,
        "MigratePercent": 0,
        "SnapshotCount": snapshots,
        "SnapshotSize": snapshots * disk.disk_size * 1024,
        "BackupDisk": false,
        "DeleteSnapshot": 0,
        "DiskBackupCount": 0,
        "AttachMode": null,
    });
    if let Some(deadline) = disk.deadline() {
        view["DeadlineTime"] = Value::String(format_time(deadline));
        view["DifferDaysOfDeadline"] = Value::from((deadline - unix_now()).div_euclid(86_400));
        view["IsReturnable"] = Value::Bool(disk.state != DiskState::Torecycle);
    }
    if let Some(prepaid) = &disk.prepaid {
        view["RenewFlag"] = Value::String(prepaid.renew_flag.clone());
    }
    if with_policies {
        view["AutoSnapshotPolicyIds"] = serde_json::json!(disk.auto_snapshot_policy_ids);
    }
    view
}
