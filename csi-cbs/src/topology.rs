//! Zones: the topology keys we read and write, and numeric zone IDs (what TKE nodes are often
//! labelled with, e.g. `100003`) turned into names (`ap-guangzhou-3`) through CVM `DescribeZones`,
//! cached after the first success. No zone name is ever derived from a prefix.

use std::sync::Arc;

use csi_common::csi::pb;
use tcloud::cbs::CbsApi;
use tcloud::cvm::ZoneInfo;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// The key this driver writes in `accessible_topology` and reads from NodeGetInfo.
pub const TOPOLOGY_KEY: &str = "topology.com.tencent.cloud.csi.cbs/zone";
/// Keys whose value names a zone (by name or numeric ID), in order of preference.
pub const ZONE_KEYS: [&str; 3] = [
    TOPOLOGY_KEY,
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// The zones a requirement names: preferred first (in order), then requisite, without repeats.
pub fn requirement_zones(
    requirement: Option<&pb::TopologyRequirement>,
) -> (Vec<String>, Vec<String>) {
    let Some(requirement) = requirement else {
        return (Vec::new(), Vec::new());
    };
    let zone_of = |t: &pb::Topology| ZONE_KEYS.iter().find_map(|k| t.segments.get(*k)).cloned();
    let mut ordered: Vec<String> = Vec::new();
    for zone in requirement
        .preferred
        .iter()
        .chain(&requirement.requisite)
        .filter_map(zone_of)
    {
        if !ordered.contains(&zone) {
            ordered.push(zone);
        }
    }
    let requisite = requirement.requisite.iter().filter_map(zone_of).collect();
    (ordered, requisite)
}

pub fn topology_for(zone: &str) -> pb::Topology {
    pb::Topology {
        segments: [(TOPOLOGY_KEY.to_owned(), zone.to_owned())].into(),
    }
}

#[derive(Debug)]
pub struct Zones<C> {
    cbs: Arc<C>,
    cache: tokio::sync::Mutex<Option<Vec<ZoneInfo>>>,
}

impl<C: CbsApi> Zones<C> {
    pub fn new(cbs: Arc<C>) -> Self {
        Zones {
            cbs,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn list(&self, deadline: Option<Instant>) -> Result<Vec<ZoneInfo>> {
        let mut cache = self.cache.lock().await;
        if let Some(zones) = cache.as_ref() {
            return Ok(zones.clone());
        }
        let zones = self.cbs.describe_zones(deadline).await?;
        *cache = Some(zones.clone());
        Ok(zones)
    }

    /// A zone name for `zone`, which may be a name or a numeric zone ID.
    pub async fn name_of(&self, zone: &str, deadline: Option<Instant>) -> Result<String> {
        if zone.is_empty() || !zone.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(zone.to_owned());
        }
        self.list(deadline)
            .await?
            .into_iter()
            .find(|z| z.zone_id == zone)
            .map(|z| z.zone)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("zone ID {zone} is not a zone of this region"))
            })
    }

    /// A zone for a volume with no zone preference: stable for a given name, so retries agree.
    pub async fn pick(&self, volume_name: &str, deadline: Option<Instant>) -> Result<String> {
        let mut zones: Vec<String> = self
            .list(deadline)
            .await?
            .into_iter()
            .filter(|z| z.zone_state.is_empty() || z.zone_state == "AVAILABLE")
            .map(|z| z.zone)
            .collect();
        zones.sort();
        if zones.is_empty() {
            return Err(Error::ResourceExhausted(
                "DescribeZones lists no available zone".into(),
            ));
        }
        let hash = volume_name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Ok(zones[(hash % zones.len() as u64) as usize].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(key: &str, zone: &str) -> pb::Topology {
        pb::Topology {
            segments: [(key.to_owned(), zone.to_owned())].into(),
        }
    }

    #[test]
    fn preferred_first_then_requisite_any_zone_key() {
        let requirement = pb::TopologyRequirement {
            requisite: vec![
                topo(TOPOLOGY_KEY, "ap-guangzhou-3"),
                topo("topology.kubernetes.io/zone", "100004"),
            ],
            preferred: vec![
                topo("failure-domain.beta.kubernetes.io/zone", "100004"),
                topo("other", "x"),
            ],
        };
        let (ordered, requisite) = requirement_zones(Some(&requirement));
        assert_eq!(ordered, ["100004", "ap-guangzhou-3"]);
        assert_eq!(requisite, ["ap-guangzhou-3", "100004"]);
        assert_eq!(requirement_zones(None), (vec![], vec![]));
    }
}
