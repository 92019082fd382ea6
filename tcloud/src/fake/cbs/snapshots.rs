//! Snapshots: CreateSnapshot (CREATING, with a rising Percent, until `transitions` makes it
//! NORMAL), DescribeSnapshots (IDs, filters, paging) and DeleteSnapshots (not while CREATING).

use tokio::time::Instant;

use super::checks::{
    UNNAMED, check_describe_ids, check_filters, check_id_list, check_name, check_tags, disk_busy,
    disk_not_found, not_supported, page, snapshot_not_found,
};
use super::model::{CbsOp, DiskState, SnapshotRecord, SnapshotState, State};
use crate::cbs::{CreateSnapshotRequest, DescribeSnapshotsRequest, DescribeSnapshotsResponse};
use crate::fake::{ApiError, random_id};

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

impl State {
    pub(super) fn create_snapshot(
        &mut self,
        request: &CreateSnapshotRequest,
        now: Instant,
    ) -> Result<String, ApiError> {
        let name = request
            .snapshot_name
            .as_deref()
            .unwrap_or(UNNAMED)
            .to_owned();
        check_name(&name, "SnapshotName")?;
        check_tags(&request.tags)?;
        let id = request.disk_id.as_str();
        let disk = self.disk(id).ok_or_else(|| disk_not_found(id))?;
        match disk.state {
            DiskState::Unattached | DiskState::Attached => {}
            DiskState::Torecycle => {
                return Err(not_supported(format!(
                    "The disk {id} is in the recycle bin."
                )));
            }
            busy => return Err(disk_busy(id, busy)),
        }
        let (disk_size, zone, project_id, encrypt) = (
            disk.disk_size,
            disk.zone.clone(),
            disk.project_id,
            disk.encrypt,
        );
        let snapshot_id = loop {
            let candidate = random_id("snap-", 8);
            if self.snapshot(&candidate).is_none() {
                break candidate;
            }
        };
        let pending = self.pending(CbsOp::CreateSnapshot, SnapshotState::Normal, now, None);
        self.snapshots.push(SnapshotRecord {
            snapshot_id: snapshot_id.clone(),
            snapshot_name: name,
            disk_id: id.to_owned(),
            disk_size,
            zone,
            project_id,
            encrypt,
            tags: request.tags.clone(),
            created_at: crate::time::unix_now(),
            state: SnapshotState::Creating,
            pending: Some(pending),
        });
        Ok(snapshot_id)
    }

    pub(super) fn describe_snapshots(
        &self,
        request: &DescribeSnapshotsRequest,
        now: Instant,
    ) -> Result<DescribeSnapshotsResponse, ApiError> {
        check_describe_ids(
            &request.snapshot_ids,
            !request.filters.is_empty(),
            "SnapshotIds",
            "snap-",
            "InvalidSnapshotId.Malformed",
        )?;
        check_filters(&request.filters, SNAPSHOT_FILTERS)?;
        let matching: Vec<&SnapshotRecord> = self
            .snapshots
            .iter()
            .filter(|s| {
                request.snapshot_ids.is_empty() || request.snapshot_ids.contains(&s.snapshot_id)
            })
            .filter(|s| request.filters.iter().all(|f| s.matches(f)))
            .collect();
        let total_count = matching.len() as u64;
        let snapshot_set = page(matching, request.offset, request.limit)?
            .into_iter()
            .map(|s| s.view(now))
            .collect();
        Ok(DescribeSnapshotsResponse {
            total_count,
            snapshot_set,
        })
    }

    pub(super) fn delete_snapshots(&mut self, snapshot_ids: &[String]) -> Result<(), ApiError> {
        check_id_list(snapshot_ids, "SnapshotIds", 100)?;
        for id in snapshot_ids {
            let snapshot = self.snapshot(id).ok_or_else(|| snapshot_not_found(id))?;
            if snapshot.state == SnapshotState::Creating {
                return Err(ApiError::new(
                    "ResourceUnavailable.SnapshotCreating",
                    format!("The snapshot {id} is CREATING: delete it once it is NORMAL."),
                ));
            }
        }
        self.snapshots
            .retain(|s| !snapshot_ids.contains(&s.snapshot_id));
        Ok(())
    }
}
