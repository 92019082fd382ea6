//! The CVM service (`cvm`, `2017-03-12`): zones and instances from the simulator's configuration.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::SimConfig;
use crate::error::ApiError;
use crate::service::{BoxFuture, CloudService, params, reply};

#[derive(Debug)]
pub struct Cvm {
    config: SimConfig,
}

impl Cvm {
    pub fn new(config: SimConfig) -> Self {
        Cvm { config }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DescribeInstances {
    #[serde(default)]
    instance_ids: Vec<String>,
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Zone<'a> {
    zone: &'a str,
    zone_name: &'a str,
    zone_id: &'a str,
    zone_state: &'a str,
}

impl CloudService for Cvm {
    fn name(&self) -> &'static str {
        "cvm"
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
            match action {
                "DescribeZones" => {
                    let zones: Vec<Zone<'_>> = self
                        .config
                        .zones
                        .iter()
                        .map(|z| Zone {
                            zone: &z.name,
                            zone_name: &z.name,
                            zone_id: &z.id,
                            zone_state: "AVAILABLE",
                        })
                        .collect();
                    reply(&serde_json::json!({ "TotalCount": zones.len(), "ZoneSet": zones }))
                }
                "DescribeInstances" => {
                    let request: DescribeInstances = params(body)?;
                    if request.limit > 100 || request.instance_ids.len() > 100 {
                        return Err(Some(ApiError::invalid_value(
                            "Limit and InstanceIds allow at most 100.",
                        )));
                    }
                    for id in &request.instance_ids {
                        if !self.config.instances.iter().any(|i| &i.id == id) {
                            return Err(Some(ApiError::new(
                                "InvalidInstanceId.NotFound",
                                format!("The instance {id} does not exist."),
                            )));
                        }
                    }
                    let matching: Vec<_> = self
                        .config
                        .instances
                        .iter()
                        .filter(|i| {
                            request.instance_ids.is_empty() || request.instance_ids.contains(&i.id)
                        })
                        .collect();
                    let page: Vec<Value> = matching
                        .iter()
                        .skip(request.offset)
                        .take(request.limit)
                        .map(|i| {
                            serde_json::json!({
                                "InstanceId": i.id,
                                "Placement": { "Zone": i.zone, "ProjectId": 0 },
                                "InstanceState": "RUNNING",
                            })
                        })
                        .collect();
                    reply(&serde_json::json!({ "TotalCount": matching.len(), "InstanceSet": page }))
                }
                _ => Err(None),
            }
        })
    }
}
