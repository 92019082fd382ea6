//! Typed CVM calls (service `cvm`, version `2017-03-12`): the zone list, for turning the numeric
//! zone IDs that nodes are labelled with into zone names, and instance lookups.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::client::{CloudClient, Service};
use super::error::CloudError;

pub const CVM: Service = Service {
    name: "cvm",
    version: "2017-03-12",
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct DescribeZonesRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ZoneInfo {
    /// Name such as `ap-guangzhou-3`.
    pub zone: String,
    #[serde(default)]
    pub zone_name: String,
    /// Numeric ID such as `100003`, as a string.
    pub zone_id: String,
    #[serde(default)]
    pub zone_state: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeZonesResponse {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub zone_set: Vec<ZoneInfo>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instance_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub instance_id: String,
    pub placement: Placement,
    #[serde(default)]
    pub instance_state: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesResponse {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub instance_set: Vec<Instance>,
}

impl CloudClient {
    pub async fn describe_zones(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Vec<ZoneInfo>, CloudError> {
        let response: DescribeZonesResponse = self
            .call(CVM, "DescribeZones", &DescribeZonesRequest {}, deadline)
            .await?;
        Ok(response.zone_set)
    }

    pub async fn describe_instances(
        &self,
        request: &DescribeInstancesRequest,
        deadline: Option<Instant>,
    ) -> Result<DescribeInstancesResponse, CloudError> {
        self.call(CVM, "DescribeInstances", request, deadline).await
    }
}
