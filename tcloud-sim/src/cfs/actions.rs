//! The CFS action table: the [`CloudService`] face of [`Cfs`], naming the method that answers each
//! `X-TC-Action`. The methods live with what they act on (`filesystems`, `quotas`); this file
//! holds no logic of its own.

use serde_json::Value;

use super::Cfs;
use crate::error::ApiError;
use crate::service::{BoxFuture, CloudService};

impl CloudService for Cfs {
    fn name(&self) -> &'static str {
        "cfs"
    }

    fn version(&self) -> &'static str {
        "2019-07-19"
    }

    fn call<'a>(
        &'a self,
        action: &'a str,
        body: Value,
    ) -> BoxFuture<'a, Result<Value, Option<ApiError>>> {
        Box::pin(async move {
            let result = match action {
                "CreateCfsFileSystem" => self.create_file_system(body).await,
                "DescribeCfsFileSystems" => self.describe_file_systems(body).await,
                "DeleteCfsFileSystem" => self.delete_file_system(body).await,
                "UpdateCfsFileSystemName" => self.update_file_system_name(body),
                "DescribeMountTargets" => self.describe_mount_targets(body),
                "DeleteMountTarget" => self.delete_mount_target(body).await,
                "SetUserQuota" => self.set_user_quota(body),
                "DescribeUserQuota" => self.describe_user_quota(body).await,
                "DeleteUserQuota" => self.delete_user_quota(body),
                _ => return Err(None),
            };
            result.map_err(Some)
        })
    }
}
