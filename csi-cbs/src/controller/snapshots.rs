//! Snapshot lookups and deletion for the controller.
//!
//! CBS refuses to delete a snapshot that is still `CREATING`. DeleteSnapshot must still succeed
//! (the CO gave up on the snapshot, and nothing may leak), so it waits within the caller's deadline
//! for the snapshot to become deletable, then deletes it; a deadline that passes first is
//! DEADLINE_EXCEEDED, and the CO's retry resumes the wait.

use tcloud::ErrorKind;
use tcloud::cbs::{self, CbsApi, DescribeSnapshotsRequest, Filter, MAX_PAGE};
use tokio::time::Instant;

use super::ControllerService;
use super::create::{TAG_SNAPSHOT_NAME, cloud_name};
use crate::error::Result;
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
