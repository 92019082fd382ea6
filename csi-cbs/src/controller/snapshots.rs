//! Snapshots for the controller: CreateSnapshot, DeleteSnapshot and ListSnapshots, and the
//! lookups behind them (also used by CreateVolume to restore from a snapshot).
//!
//! A snapshot is found again by its cloud name, so a repeated CreateSnapshot answers the same one.
//! CBS refuses to delete a snapshot that is still `CREATING`. DeleteSnapshot must still succeed
//! (the CO gave up on the snapshot, and nothing may leak), so it waits within the caller's deadline
//! for the snapshot to become deletable, then deletes it; a deadline that passes first is
//! DEADLINE_EXCEEDED, and the CO's retry resumes the wait. No disk is created or attached here.

use csi_common::csi::pb;
use csi_common::csi::reply::answer_by;
use csi_common::csi::request::{self, Page};
use tcloud::ErrorKind;
use tcloud::cbs::{
    self, CbsApi, CreateSnapshotRequest, DescribeSnapshotsRequest, Filter, MAX_PAGE,
};
use tokio::time::Instant;
use tonic::{Request, Response};

use super::names::{TAG_SNAPSHOT_NAME, cloud_name};
use super::{ControllerService, RpcResult, is_disk_id, is_snapshot_id};
use crate::error::{Error, Result, required};
use crate::params::GIB;
use crate::watcher::Poll;

/// The error CBS answers DeleteSnapshots with while a snapshot is still being made.
const SNAPSHOT_CREATING: &str = "ResourceUnavailable.SnapshotCreating";

impl<C: CbsApi> ControllerService<C> {
    /// One snapshot by ID or by a filter, or `None` when there is none.
    pub(super) async fn snapshot_by(
        &self,
        filter: Option<Filter>,
        id: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<cbs::Snapshot>> {
        let request = DescribeSnapshotsRequest {
            snapshot_ids: id.map(|i| vec![i.to_owned()]).unwrap_or_default(),
            filters: filter.into_iter().collect(),
            limit: Some(MAX_PAGE),
            ..Default::default()
        };
        match self.cbs.describe_snapshots(&request, Some(deadline)).await {
            Ok(response) => Ok(response.snapshot_set.into_iter().next()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The snapshot made for CSI name `name`, found by its cloud name.
    pub(super) async fn snapshot_by_name(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<cbs::Snapshot>> {
        let (cloud, _) = cloud_name(name, TAG_SNAPSHOT_NAME);
        Ok(self
            .snapshot_by(Some(Filter::new("snapshot-name", &cloud)), None, deadline)
            .await?
            .filter(|s| s.snapshot_name == cloud))
    }

    /// Deletes a snapshot, waiting within the deadline while it is still `CREATING`. A snapshot
    /// that is gone is deleted.
    pub(super) async fn delete_snapshot_when_deletable(
        &self,
        snapshot_id: &str,
        deadline: Instant,
    ) -> Result<()> {
        let mut poll = Poll::new(deadline);
        loop {
            match self
                .cbs
                .delete_snapshots(&[snapshot_id.to_owned()], Some(deadline))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) if e.code() == Some(SNAPSHOT_CREATING) => {}
                Err(e) => return Err(e.into()),
            }
            // Still being made: wait until it is ready (or gone), then delete again.
            loop {
                let Some(snapshot) = self.snapshot_by(None, Some(snapshot_id), deadline).await?
                else {
                    return Ok(());
                };
                if snapshot.snapshot_state != cbs::snapshot_state::CREATING {
                    break;
                }
                poll.wait(
                    snapshot_id,
                    &format!("CREATING ({}%)", snapshot.percent),
                    "the snapshot to become deletable",
                )
                .await?;
            }
        }
    }
}

impl<C: CbsApi> ControllerService<C> {
    /// CreateSnapshot: the snapshot of that name if it is of the same volume, else a new one.
    pub(super) async fn take_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> RpcResult<pb::CreateSnapshotResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        request::require(&req.name, "name")?;
        request::require(&req.source_volume_id, "source_volume_id")?;
        let _guard = self.inflight.acquire(&format!("snapshot/{}", req.name))?;
        if let Some(existing) = self.snapshot_by_name(&req.name, deadline).await? {
            if existing.disk_id != req.source_volume_id {
                return Err(Error::AlreadyExists(format!(
                    "snapshot {} exists as {} of volume {}, not {}",
                    req.name, existing.snapshot_id, existing.disk_id, req.source_volume_id
                ))
                .into());
            }
            return Ok(Response::new(pb::CreateSnapshotResponse {
                snapshot: Some(snapshot_proto(&existing)),
            }));
        }
        let disk = self.existing_disk(&req.source_volume_id).await?;
        let (snapshot_name, name_tag) = cloud_name(&req.name, TAG_SNAPSHOT_NAME);
        let create = CreateSnapshotRequest {
            disk_id: disk.disk_id.clone(),
            snapshot_name: Some(snapshot_name.clone()),
            tags: name_tag.into_iter().collect(),
        };
        let snapshot_id = self
            .cbs
            .create_snapshot(&create, Some(deadline))
            .await
            .map_err(Error::from)?;
        let snapshot = self
            .snapshot_by(None, Some(&snapshot_id), deadline)
            .await?
            .unwrap_or(cbs::Snapshot {
                snapshot_id,
                snapshot_name,
                snapshot_state: cbs::snapshot_state::CREATING.into(),
                percent: 0,
                disk_id: disk.disk_id,
                disk_size: disk.disk_size,
                create_time: String::new(),
            });
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot: Some(snapshot_proto(&snapshot)),
        }))
    }

    /// DeleteSnapshot: an ID that cannot exist, or a snapshot that is gone, is deleted already.
    pub(super) async fn remove_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> RpcResult<pb::DeleteSnapshotResponse> {
        let deadline = answer_by(&request);
        let snapshot_id = request.into_inner().snapshot_id;
        if snapshot_id.is_empty() {
            return Err(required("snapshot_id").into());
        }
        if !is_snapshot_id(&snapshot_id) {
            return Ok(Response::new(pb::DeleteSnapshotResponse {}));
        }
        let _guard = self.inflight.acquire(&snapshot_id)?;
        self.delete_snapshot_when_deletable(&snapshot_id, deadline)
            .await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    /// ListSnapshots: one snapshot by ID, or a page of all of them (or of one volume's).
    pub(super) async fn list_snapshot_page(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> RpcResult<pb::ListSnapshotsResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        let to_entry = |s: &cbs::Snapshot| pb::list_snapshots_response::Entry {
            snapshot: Some(snapshot_proto(s)),
        };
        if !req.snapshot_id.is_empty() {
            let found = if is_snapshot_id(&req.snapshot_id) {
                self.snapshot_by(None, Some(&req.snapshot_id), deadline)
                    .await?
            } else {
                None
            };
            let entries = found
                .filter(|s| req.source_volume_id.is_empty() || s.disk_id == req.source_volume_id)
                .iter()
                .map(to_entry)
                .collect();
            return Ok(Response::new(pb::ListSnapshotsResponse {
                entries,
                next_token: String::new(),
            }));
        }
        let page = Page::parse(&req.starting_token, req.max_entries, MAX_PAGE)?;
        let mut describe = DescribeSnapshotsRequest {
            offset: Some(page.offset),
            limit: Some(page.limit),
            ..Default::default()
        };
        if !req.source_volume_id.is_empty() {
            if !is_disk_id(&req.source_volume_id) {
                return Ok(Response::new(pb::ListSnapshotsResponse::default()));
            }
            describe
                .filters
                .push(Filter::new("disk-id", &req.source_volume_id));
        }
        let response = self
            .cbs
            .describe_snapshots(&describe, Some(deadline))
            .await
            .map_err(Error::from)?;
        let next_token = page.next_token(
            response.snapshot_set.len(),
            response.total_count,
            "snapshots",
        )?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            entries: response.snapshot_set.iter().map(to_entry).collect(),
            next_token,
        }))
    }
}

fn timestamp(create_time: &str) -> prost_types::Timestamp {
    let seconds = tcloud::time::parse_api_time(create_time).unwrap_or_else(tcloud::time::unix_now);
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn snapshot_proto(snapshot: &cbs::Snapshot) -> pb::Snapshot {
    pb::Snapshot {
        size_bytes: (snapshot.disk_size.saturating_mul(GIB)) as i64,
        snapshot_id: snapshot.snapshot_id.clone(),
        source_volume_id: snapshot.disk_id.clone(),
        creation_time: Some(timestamp(&snapshot.create_time)),
        ready_to_use: snapshot.is_ready(),
        group_snapshot_id: String::new(),
    }
}
