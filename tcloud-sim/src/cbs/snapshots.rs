//! Snapshots: CreateSnapshot copies the disk image at once (a point-in-time copy, sparse) and
//! reports CREATING with a rising Percent until the configured latency has passed; then
//! DescribeSnapshots and DeleteSnapshots.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dataplane::{copy_image, remove_image};
use super::model::{DiskState, Pending, Snapshot, SnapshotState, Tag};
use super::{
    Cbs, Filter, check_describe_ids, check_filters, check_id_list, check_name, check_order,
    check_tags, decode, disk_busy, disk_not_found, empty_reply, format_time, not_supported, page,
    parse_iso8601, reply, snapshot_not_found,
};
use crate::error::ApiError;
use crate::state::{random_id, unix_now, unix_now_ms};

const SNAPSHOT_FILTERS: &[&str] = &[
    "snapshot-id",
    "snapshot-name",
    "snapshot-state",
    "disk-id",
    "disk-usage",
    "project-id",
    "zone",
    "encrypt",
    "snapshot-type",
];

impl Cbs {
    pub(super) async fn create_snapshot(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            disk_id: String,
            #[serde(default)]
            snapshot_name: Option<String>,
            #[serde(default)]
            deadline: Option<String>,
            #[serde(default)]
            disk_backup_id: Option<String>,
            #[serde(default)]
            tags: Vec<Tag>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Response {
            snapshot_id: String,
        }
        let request: Request = decode(body)?;
        if request.disk_backup_id.is_some() {
            return Err(ApiError::new(
                "UnsupportedOperation",
                "DiskBackupId: disk backups are not simulated.",
            ));
        }
        let name = request
            .snapshot_name
            .clone()
            .unwrap_or_else(|| "未命名".to_owned());
        check_name(&name, "SnapshotName")?;
        check_tags(&request.tags)?;
        let deadline = match &request.deadline {
            None => None,
            Some(text) => {
                let at = parse_iso8601(text).ok_or_else(|| {
                    ApiError::invalid_value(format!(
                        "Deadline {text:?} is not an ISO-8601 time like 2022-01-08T09:47:55+00:00."
                    ))
                })?;
                if at <= unix_now() {
                    return Err(ApiError::invalid_value(format!(
                        "Deadline {text} is in the past."
                    )));
                }
                Some(at)
            }
        };
        let id = request.disk_id.as_str();
        let disk = self
            .store
            .read(|s| s.cbs.disk(id).cloned())
            .ok_or_else(|| disk_not_found(id))?;
        match disk.state {
            DiskState::Unattached | DiskState::Attached => {}
            DiskState::Torecycle => {
                return Err(not_supported(format!(
                    "The disk {id} is in the recycle bin."
                )));
            }
            busy => return Err(disk_busy(id, busy)),
        }
        let snapshot_id = self.store.read(|s| {
            loop {
                let candidate = random_id("snap-", 8);
                if s.cbs.snapshot(&candidate).is_none() {
                    break candidate;
                }
            }
        });
        let source = self.layout.disk_image(id);
        let copy = self.layout.snapshot_image(&snapshot_id);
        let target = copy.clone();
        crate::state::run_blocking(move || copy_image(&source, &target))
            .await
            .map_err(|e| {
                ApiError::internal(format!("the simulator cannot copy the disk image: {e}"))
            })?;

        let now_ms = unix_now_ms();
        let latency = self.config.snapshot_latency.as_millis() as i64;
        let snapshot = Snapshot {
            snapshot_id: snapshot_id.clone(),
            snapshot_name: name,
            disk_id: id.to_owned(),
            disk_size: disk.disk_size,
            zone: disk.zone.clone(),
            project_id: disk.project_id,
            encrypt: disk.encrypt,
            tags: request.tags.clone(),
            created_at: now_ms / 1000,
            deadline,
            state: SnapshotState::Creating,
            pending: Some(Pending {
                action: "CreateSnapshot".to_owned(),
                target: SnapshotState::Normal,
                started_at_unix_ms: now_ms,
                due_at_unix_ms: now_ms + latency,
                stuck: self.faults.stuck("CreateSnapshot"),
                new_size: None,
            }),
        };
        let stored = self.store.try_update(|state| {
            if state.cbs.disk(id).is_none() {
                return Err(disk_not_found(id));
            }
            state.cbs.snapshots.push(snapshot);
            Ok(())
        });
        if let Err(e) = stored {
            let _ = crate::state::run_blocking(move || remove_image(&copy)).await;
            return Err(e);
        }
        tracing::info!(snapshot = %snapshot_id, disk = id, "CBS snapshot creating");
        reply(&Response { snapshot_id })
    }

    pub(super) fn describe_snapshots(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            snapshot_ids: Vec<String>,
            #[serde(default)]
            filters: Vec<Filter>,
            #[serde(default)]
            offset: Option<u64>,
            #[serde(default)]
            limit: Option<u64>,
            #[serde(default)]
            order: Option<String>,
            #[serde(default)]
            order_field: Option<String>,
        }
        let request: Request = decode(body)?;
        check_describe_ids(
            &request.snapshot_ids,
            !request.filters.is_empty(),
            "SnapshotIds",
            "snap-",
            "InvalidSnapshotId.Malformed",
        )?;
        check_filters(&request.filters, SNAPSHOT_FILTERS)?;
        let descending = check_order(
            request.order.as_deref(),
            request.order_field.as_deref(),
            &["CREATE_TIME"],
        )?;
        let now_ms = unix_now_ms();
        let (total, set) = self.store.read(|s| -> Result<_, ApiError> {
            let mut matching: Vec<&Snapshot> = s
                .cbs
                .snapshots
                .iter()
                .filter(|snap| {
                    request.snapshot_ids.is_empty()
                        || request.snapshot_ids.contains(&snap.snapshot_id)
                })
                .filter(|snap| request.filters.iter().all(|f| snapshot_matches(snap, f)))
                .collect();
            if descending {
                matching.reverse();
            }
            let total = matching.len();
            let set: Vec<Value> = page(matching, request.offset, request.limit)?
                .into_iter()
                .map(|snap| snapshot_view(snap, now_ms))
                .collect();
            Ok((total, set))
        })?;
        reply(&serde_json::json!({ "TotalCount": total, "SnapshotSet": set }))
    }

    pub(super) async fn delete_snapshots(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            #[serde(default)]
            snapshot_ids: Vec<String>,
            #[serde(default)]
            delete_bind_images: Option<bool>,
        }
        let request: Request = decode(body)?;
        check_id_list(&request.snapshot_ids, "SnapshotIds", 100)?;
        let _ = request.delete_bind_images;
        self.store.try_update(|state| {
            let cbs = &mut state.cbs;
            for id in &request.snapshot_ids {
                let snap = cbs.snapshot(id).ok_or_else(|| snapshot_not_found(id))?;
                if snap.state == SnapshotState::Creating {
                    return Err(ApiError::new(
                        "ResourceUnavailable.SnapshotCreating",
                        format!("The snapshot {id} is CREATING: delete it once it is NORMAL."),
                    ));
                }
            }
            cbs.snapshots
                .retain(|s| !request.snapshot_ids.contains(&s.snapshot_id));
            Ok(())
        })?;
        tracing::info!(snapshots = ?request.snapshot_ids, "CBS snapshots deleted");
        let files: Vec<_> = request
            .snapshot_ids
            .iter()
            .map(|id| self.layout.snapshot_image(id))
            .collect();
        if let Err(e) =
            crate::state::run_blocking(move || files.iter().try_for_each(|f| remove_image(f))).await
        {
            tracing::warn!(error = %e, "cannot remove the images of deleted snapshots");
        }
        empty_reply()
    }
}

fn snapshot_matches(snap: &Snapshot, filter: &Filter) -> bool {
    let any = |v: &str| filter.values.iter().any(|x| x == v);
    match filter.name.as_str() {
        "snapshot-id" => any(&snap.snapshot_id),
        "snapshot-name" => any(&snap.snapshot_name),
        "snapshot-state" => any(snap.state.as_str()),
        "disk-id" => any(&snap.disk_id),
        "disk-usage" => any("DATA_DISK"),
        "project-id" => any(&snap.project_id.to_string()),
        "zone" => any(&snap.zone),
        "encrypt" => filter
            .values
            .iter()
            .any(|v| v.eq_ignore_ascii_case(if snap.encrypt { "TRUE" } else { "FALSE" })),
        "snapshot-type" => any("PRIVATE_SNAPSHOT"),
        _ => false,
    }
}

/// One `SnapshotSet` entry, in the real `Snapshot` shape.
fn snapshot_view(snap: &Snapshot, now_ms: i64) -> Value {
    let mut view = serde_json::json!({
        "SnapshotId": snap.snapshot_id,
        "SnapshotName": snap.snapshot_name,
        "SnapshotState": snap.state.as_str(),
        "Percent": snap.percent(now_ms),
        "DiskId": snap.disk_id,
        "DiskSize": snap.disk_size,
        "DiskUsage": "DATA_DISK",
        "Placement": { "Zone": snap.zone, "ProjectId": snap.project_id },
        "CreateTime": format_time(snap.created_at),
        "Encrypt": snap.encrypt,
        "Tags": snap.tags,
        "IsPermanent": snap.deadline.is_none(),
        "SnapshotType": "PRIVATE_SNAPSHOT",
        "CopyFromRemote": false,
        "CopyingToRegions": [],
        "Images": [],
        "ImageCount": 0,
        "ShareReference": 0,
    });
    if let Some(deadline) = snap.deadline {
        view["DeadlineTime"] = Value::String(format_time(deadline));
    }
    view
}
