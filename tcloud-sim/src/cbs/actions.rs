//! The CBS action table: the [`CloudService`] face of [`Cbs`], naming the method that answers each
//! `X-TC-Action`. The methods live with what they act on (`disks`, `attach`, `settings`,
//! `snapshots`); this file holds no logic of its own.

use serde_json::Value;

use super::Cbs;
use crate::error::ApiError;
use crate::service::{BoxFuture, CloudService};

impl CloudService for Cbs {
    fn name(&self) -> &'static str {
        "cbs"
    }

    fn version(&self) -> &'static str {
        "2017-03-12"
    }

    fn call<'a>(
        &'a self,
        action: &'a str,
        body: Value,
    ) -> BoxFuture<'a, Result<Value, Option<ApiError>>> {
        Box::pin(async move {
            let result = match action {
                "CreateDisks" => self.create_disks(body).await,
                "DescribeDisks" => self.describe_disks(body),
                "AttachDisks" => self.attach_disks(body),
                "DetachDisks" => self.detach_disks(body),
                "ResizeDisk" => self.resize_disk(body),
                "TerminateDisks" => self.terminate_disks(body).await,
                "ModifyDiskAttributes" => self.modify_disk_attributes(body),
                "ModifyDiskExtraPerformance" => self.modify_disk_extra_performance(body),
                "DescribeDiskConfigQuota" => self.describe_disk_config_quota(body),
                "DescribeInstancesDiskNum" => self.describe_instances_disk_num(body),
                "BindAutoSnapshotPolicy" => self.bind_auto_snapshot_policy(body, true),
                "UnbindAutoSnapshotPolicy" => self.bind_auto_snapshot_policy(body, false),
                "CreateSnapshot" => self.create_snapshot(body).await,
                "DescribeSnapshots" => self.describe_snapshots(body),
                "DeleteSnapshots" => self.delete_snapshots(body).await,
                _ => return Err(None),
            };
            result.map_err(Some)
        })
    }
}
