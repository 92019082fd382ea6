//! Typed CFS calls (service `cfs`, version `2019-07-19`) and the [`CfsApi`] seam the NFS driver is
//! generic over. Field names are the public API's.

use std::future::Future;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::client::{CloudClient, Service};
use super::error::CloudError;

pub const CFS: Service = Service {
    name: "cfs",
    version: "2019-07-19",
};

pub mod life_cycle {
    pub const CREATING: &str = "creating";
    pub const AVAILABLE: &str = "available";
    pub const CREATE_FAILED: &str = "create_failed";
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceTag {
    pub tag_key: String,
    pub tag_value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFileSystemRequest {
    pub zone: String,
    pub net_interface: String,
    pub p_group_id: String,
    pub protocol: String,
    pub storage_type: String,
    pub vpc_id: String,
    pub subnet_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_tags: Vec<ResourceTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// CreateCfsFileSystem for a CFS Turbo file system: `base` with `NetInterface` `CCN`, `Protocol`
/// `TURBO` and a Turbo `StorageType` (`TB` or `TP`), plus the fields only Turbo takes. They are
/// here rather than in [`CreateFileSystemRequest`], whose callers build it field by field, and
/// each is sent only when set. `VpcId`/`SubnetId` of `base` may stay empty: only a VPC file
/// system needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateTurboFileSystemRequest {
    #[serde(flatten)]
    pub base: CreateFileSystemRequest,
    /// The CCN the file system joins (`ccn-xxxxxxxx`); required with `NetInterface` `CCN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ccn_id: Option<String>,
    /// The address block reserved in that CCN (`a.b.c.d/16` to `/24`); required with `CCN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr_block: Option<String>,
    /// GiB; required for the Turbo types, which have a minimum size and step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFileSystemResponse {
    file_system_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileSystem {
    pub file_system_id: String,
    #[serde(default)]
    pub fs_name: String,
    pub life_cycle_state: String,
    #[serde(default)]
    pub size_byte: u64,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub storage_type: String,
    #[serde(default)]
    pub creation_time: String,
    #[serde(default)]
    pub tags: Vec<ResourceTag>,
}

impl FileSystem {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.tag_key == key)
            .map(|t| t.tag_value.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeFileSystemsRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_system_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeFileSystemsResponse {
    #[serde(default)]
    pub file_systems: Vec<FileSystem>,
    #[serde(default)]
    pub total_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountTarget {
    #[serde(default)]
    pub file_system_id: String,
    pub ip_address: String,
    #[serde(default, rename = "FSID")]
    pub fsid: String,
    #[serde(default)]
    pub life_cycle_state: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeMountTargetsResponse {
    #[serde(default)]
    mount_targets: Vec<MountTarget>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FileSystemIdRequest<'a> {
    file_system_id: &'a str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SetUserQuotaRequest<'a> {
    file_system_id: &'a str,
    user_type: &'a str,
    user_id: String,
    capacity_hard_limit: u64,
}

/// Every CFS operation the NFS driver makes, one method each. `deadline` bounds retries.
pub trait CfsApi: Send + Sync + 'static {
    fn create_file_system(
        &self,
        request: &CreateFileSystemRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<String, CloudError>> + Send;
    fn describe_file_systems(
        &self,
        request: &DescribeFileSystemsRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<DescribeFileSystemsResponse, CloudError>> + Send;
    fn describe_mount_targets(
        &self,
        file_system_id: &str,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<MountTarget>, CloudError>> + Send;
    fn delete_file_system(
        &self,
        file_system_id: &str,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// A group quota: `capacity_gib` for files owned by group `gid`.
    fn set_group_quota(
        &self,
        file_system_id: &str,
        gid: u32,
        capacity_gib: u64,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
}

impl CloudClient {
    /// Creates a CFS Turbo file system; returns its ID. Not part of [`CfsApi`]: the drivers are
    /// handed Turbo file systems, only tests and demos make them.
    pub async fn create_turbo_file_system(
        &self,
        request: &CreateTurboFileSystemRequest,
        deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        let response: CreateFileSystemResponse = self
            .call(CFS, "CreateCfsFileSystem", request, deadline)
            .await?;
        Ok(response.file_system_id)
    }
}

impl CfsApi for CloudClient {
    async fn create_file_system(
        &self,
        request: &CreateFileSystemRequest,
        deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        let response: CreateFileSystemResponse = self
            .call(CFS, "CreateCfsFileSystem", request, deadline)
            .await?;
        Ok(response.file_system_id)
    }

    async fn describe_file_systems(
        &self,
        request: &DescribeFileSystemsRequest,
        deadline: Option<Instant>,
    ) -> Result<DescribeFileSystemsResponse, CloudError> {
        self.call(CFS, "DescribeCfsFileSystems", request, deadline)
            .await
    }

    async fn describe_mount_targets(
        &self,
        file_system_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<MountTarget>, CloudError> {
        let response: DescribeMountTargetsResponse = self
            .call(
                CFS,
                "DescribeMountTargets",
                &FileSystemIdRequest { file_system_id },
                deadline,
            )
            .await?;
        Ok(response.mount_targets)
    }

    async fn delete_file_system(
        &self,
        file_system_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let _: IgnoredAny = self
            .call(
                CFS,
                "DeleteCfsFileSystem",
                &FileSystemIdRequest { file_system_id },
                deadline,
            )
            .await?;
        Ok(())
    }

    async fn set_group_quota(
        &self,
        file_system_id: &str,
        gid: u32,
        capacity_gib: u64,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let request = SetUserQuotaRequest {
            file_system_id,
            user_type: "Gid",
            user_id: gid.to_string(),
            capacity_hard_limit: capacity_gib,
        };
        let _: IgnoredAny = self.call(CFS, "SetUserQuota", &request, deadline).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> CreateFileSystemRequest {
        CreateFileSystemRequest {
            zone: "ap-guangzhou-3".into(),
            net_interface: "VPC".into(),
            p_group_id: "pgroupbasic".into(),
            protocol: "NFS".into(),
            storage_type: "SD".into(),
            vpc_id: "vpc-ah9fbkap".into(),
            subnet_id: "subnet-9mu2t9iw".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_turbo_request_sends_its_fields_only_when_set() {
        let turbo = CreateTurboFileSystemRequest {
            base: CreateFileSystemRequest {
                net_interface: "CCN".into(),
                protocol: "TURBO".into(),
                storage_type: "TB".into(),
                vpc_id: String::new(),
                subnet_id: String::new(),
                fs_name: Some("turbo".into()),
                ..base()
            },
            ccn_id: Some("ccn-abc12345".into()),
            cidr_block: Some("10.8.0.0/24".into()),
            capacity: Some(40_960),
        };
        assert_eq!(
            serde_json::to_value(&turbo).unwrap(),
            json!({
                "Zone": "ap-guangzhou-3",
                "NetInterface": "CCN",
                "PGroupId": "pgroupbasic",
                "Protocol": "TURBO",
                "StorageType": "TB",
                "VpcId": "",
                "SubnetId": "",
                "FsName": "turbo",
                "CcnId": "ccn-abc12345",
                "CidrBlock": "10.8.0.0/24",
                "Capacity": 40960,
            })
        );
        let plain = json!({
            "Zone": "ap-guangzhou-3",
            "NetInterface": "VPC",
            "PGroupId": "pgroupbasic",
            "Protocol": "NFS",
            "StorageType": "SD",
            "VpcId": "vpc-ah9fbkap",
            "SubnetId": "subnet-9mu2t9iw",
        });
        assert_eq!(serde_json::to_value(base()).unwrap(), plain);
        let unset = CreateTurboFileSystemRequest {
            base: base(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&unset).unwrap(),
            plain,
            "no Turbo field is sent unset"
        );
    }
}
