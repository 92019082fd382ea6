//! Typed CBS calls (service `cbs`, version `2017-03-12`) and the [`CbsApi`] seam the block driver
//! is generic over. Field names are the public API's.

use std::future::Future;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::client::{CloudClient, Service};
use super::cvm::ZoneInfo;
use super::error::CloudError;

pub const CBS: Service = Service {
    name: "cbs",
    version: "2017-03-12",
};

/// `DescribeDisks` and `DescribeSnapshots` return at most this many items per call.
pub const MAX_PAGE: u64 = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: &str, value: &str) -> Self {
        Filter {
            name: name.to_owned(),
            values: vec![value.to_owned()],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdc_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskChargePrepaid {
    pub period: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_flag: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDisksRequest {
    pub placement: Placement,
    pub disk_type: String,
    pub disk_charge_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_charge_prepaid: Option<DiskChargePrepaid>,
    /// GiB.
    pub disk_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_name: Option<String>,
    pub disk_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_performance: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateDisksResponse {
    #[serde(default)]
    disk_id_set: Vec<String>,
}

pub mod disk_state {
    pub const UNATTACHED: &str = "UNATTACHED";
    pub const ATTACHING: &str = "ATTACHING";
    pub const ATTACHED: &str = "ATTACHED";
    pub const DETACHING: &str = "DETACHING";
    pub const EXPANDING: &str = "EXPANDING";
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Disk {
    pub disk_id: String,
    #[serde(default)]
    pub disk_name: String,
    pub disk_state: String,
    /// GiB.
    pub disk_size: u64,
    #[serde(default)]
    pub disk_type: String,
    pub placement: Placement,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub attached: bool,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub create_time: String,
    #[serde(default)]
    pub snapshot_id: String,
    #[serde(default)]
    pub throughput_performance: u64,
}

impl Disk {
    /// The instance the disk is attached (or attaching) to, if any.
    pub fn instance(&self) -> Option<&str> {
        Some(self.instance_id.as_str()).filter(|i| !i.is_empty())
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDisksRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disk_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDisksResponse {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub disk_set: Vec<Disk>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AttachDisksRequest<'a> {
    disk_ids: &'a [String],
    instance_id: &'a str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DetachDisksRequest<'a> {
    disk_ids: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResizeDiskRequest<'a> {
    disk_id: &'a str,
    disk_size: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DiskIdsRequest<'a> {
    disk_ids: &'a [String],
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSnapshotRequest {
    pub disk_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSnapshotResponse {
    snapshot_id: String,
}

pub mod snapshot_state {
    pub const NORMAL: &str = "NORMAL";
    pub const CREATING: &str = "CREATING";
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    pub snapshot_id: String,
    #[serde(default)]
    pub snapshot_name: String,
    pub snapshot_state: String,
    #[serde(default)]
    pub percent: u32,
    #[serde(default)]
    pub disk_id: String,
    /// GiB of the source disk.
    #[serde(default)]
    pub disk_size: u64,
    #[serde(default)]
    pub create_time: String,
}

impl Snapshot {
    pub fn is_ready(&self) -> bool {
        self.snapshot_state == snapshot_state::NORMAL && self.percent >= 100
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotsRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshot_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeSnapshotsResponse {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub snapshot_set: Vec<Snapshot>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteSnapshotsRequest<'a> {
    snapshot_ids: &'a [String],
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct BindAutoSnapshotPolicyRequest<'a> {
    auto_snapshot_policy_id: &'a str,
    disk_ids: &'a [String],
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyDiskExtraPerformanceRequest<'a> {
    disk_id: &'a str,
    throughput_performance: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyDiskAttributesRequest<'a> {
    disk_ids: &'a [String],
    disk_type: &'a str,
}

/// How many disks an instance holds and may hold (`DescribeInstancesDiskNum`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceDiskNum {
    pub instance_id: String,
    #[serde(default)]
    pub attached_disk_count: u64,
    #[serde(default)]
    pub max_attach_count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInstancesDiskNumResponse {
    #[serde(default)]
    attach_detail: Vec<InstanceDiskNum>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceIdsRequest<'a> {
    instance_ids: &'a [String],
}

impl CloudClient {
    /// The data disks `instance_id` may hold, and holds now (a node plugin's attach limit).
    pub async fn describe_instance_disk_num(
        &self,
        instance_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<InstanceDiskNum>, CloudError> {
        let ids = [instance_id.to_owned()];
        let request = InstanceIdsRequest { instance_ids: &ids };
        let response: DescribeInstancesDiskNumResponse = self
            .call(CBS, "DescribeInstancesDiskNum", &request, deadline)
            .await?;
        Ok(response
            .attach_detail
            .into_iter()
            .find(|d| d.instance_id == instance_id))
    }
}

/// Every CBS operation the block driver makes, one method each. `deadline` bounds retries.
pub trait CbsApi: Send + Sync + 'static {
    fn create_disks(
        &self,
        request: &CreateDisksRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;
    fn describe_disks(
        &self,
        request: &DescribeDisksRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<DescribeDisksResponse, CloudError>> + Send;
    fn attach_disks(
        &self,
        disk_ids: &[String],
        instance_id: &str,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn detach_disks(
        &self,
        disk_ids: &[String],
        instance_id: Option<&str>,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn resize_disk(
        &self,
        disk_id: &str,
        size_gib: u64,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn terminate_disks(
        &self,
        disk_ids: &[String],
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<String, CloudError>> + Send;
    fn describe_snapshots(
        &self,
        request: &DescribeSnapshotsRequest,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<DescribeSnapshotsResponse, CloudError>> + Send;
    fn delete_snapshots(
        &self,
        snapshot_ids: &[String],
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn bind_auto_snapshot_policy(
        &self,
        policy_id: &str,
        disk_ids: &[String],
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn modify_disk_extra_performance(
        &self,
        disk_id: &str,
        throughput_mbps: u64,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    fn modify_disk_type(
        &self,
        disk_id: &str,
        disk_type: &str,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// CVM `DescribeZones`, for turning numeric zone IDs into names.
    fn describe_zones(
        &self,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<ZoneInfo>, CloudError>> + Send;
}

impl CbsApi for CloudClient {
    async fn create_disks(
        &self,
        request: &CreateDisksRequest,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, CloudError> {
        let response: CreateDisksResponse =
            self.call(CBS, "CreateDisks", request, deadline).await?;
        Ok(response.disk_id_set)
    }

    async fn describe_disks(
        &self,
        request: &DescribeDisksRequest,
        deadline: Option<Instant>,
    ) -> Result<DescribeDisksResponse, CloudError> {
        self.call(CBS, "DescribeDisks", request, deadline).await
    }

    async fn attach_disks(
        &self,
        disk_ids: &[String],
        instance_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let _: IgnoredAny = self
            .call(
                CBS,
                "AttachDisks",
                &AttachDisksRequest {
                    disk_ids,
                    instance_id,
                },
                deadline,
            )
            .await?;
        Ok(())
    }

    async fn detach_disks(
        &self,
        disk_ids: &[String],
        instance_id: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let _: IgnoredAny = self
            .call(
                CBS,
                "DetachDisks",
                &DetachDisksRequest {
                    disk_ids,
                    instance_id,
                },
                deadline,
            )
            .await?;
        Ok(())
    }

    async fn resize_disk(
        &self,
        disk_id: &str,
        size_gib: u64,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let request = ResizeDiskRequest {
            disk_id,
            disk_size: size_gib,
        };
        let _: IgnoredAny = self.call(CBS, "ResizeDisk", &request, deadline).await?;
        Ok(())
    }

    async fn terminate_disks(
        &self,
        disk_ids: &[String],
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let _: IgnoredAny = self
            .call(
                CBS,
                "TerminateDisks",
                &DiskIdsRequest { disk_ids },
                deadline,
            )
            .await?;
        Ok(())
    }

    async fn create_snapshot(
        &self,
        request: &CreateSnapshotRequest,
        deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        let response: CreateSnapshotResponse =
            self.call(CBS, "CreateSnapshot", request, deadline).await?;
        Ok(response.snapshot_id)
    }

    async fn describe_snapshots(
        &self,
        request: &DescribeSnapshotsRequest,
        deadline: Option<Instant>,
    ) -> Result<DescribeSnapshotsResponse, CloudError> {
        self.call(CBS, "DescribeSnapshots", request, deadline).await
    }

    async fn delete_snapshots(
        &self,
        snapshot_ids: &[String],
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let _: IgnoredAny = self
            .call(
                CBS,
                "DeleteSnapshots",
                &DeleteSnapshotsRequest { snapshot_ids },
                deadline,
            )
            .await?;
        Ok(())
    }

    async fn bind_auto_snapshot_policy(
        &self,
        policy_id: &str,
        disk_ids: &[String],
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let request = BindAutoSnapshotPolicyRequest {
            auto_snapshot_policy_id: policy_id,
            disk_ids,
        };
        let _: IgnoredAny = self
            .call(CBS, "BindAutoSnapshotPolicy", &request, deadline)
            .await?;
        Ok(())
    }

    async fn modify_disk_extra_performance(
        &self,
        disk_id: &str,
        throughput_mbps: u64,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let request = ModifyDiskExtraPerformanceRequest {
            disk_id,
            throughput_performance: throughput_mbps,
        };
        let _: IgnoredAny = self
            .call(CBS, "ModifyDiskExtraPerformance", &request, deadline)
            .await?;
        Ok(())
    }

    async fn modify_disk_type(
        &self,
        disk_id: &str,
        disk_type: &str,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        let ids = [disk_id.to_owned()];
        let request = ModifyDiskAttributesRequest {
            disk_ids: &ids,
            disk_type,
        };
        let _: IgnoredAny = self
            .call(CBS, "ModifyDiskAttributes", &request, deadline)
            .await?;
        Ok(())
    }

    async fn describe_zones(&self, deadline: Option<Instant>) -> Result<Vec<ZoneInfo>, CloudError> {
        CloudClient::describe_zones(self, deadline).await
    }
}
