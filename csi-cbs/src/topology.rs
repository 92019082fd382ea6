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

/// The zones of a requirement's preferred topologies, in order, without repeats.
pub fn preferred_zones(requirement: Option<&pb::TopologyRequirement>) -> Vec<String> {
    let mut zones: Vec<String> = Vec::new();
    for zone in requirement
        .into_iter()
        .flat_map(|r| &r.preferred)
        .filter_map(|t| ZONE_KEYS.iter().find_map(|k| t.segments.get(*k)))
    {
        if !zones.contains(zone) {
            zones.push(zone.clone());
        }
    }
    zones
}

/// One of `zones`, the same for the same `volume_name` (so a retry agrees), whatever their order.
fn by_name(volume_name: &str, zones: &[String]) -> Option<String> {
    let mut sorted: Vec<&String> = zones.iter().collect();
    sorted.sort();
    sorted.dedup();
    let hash = volume_name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let len = u64::try_from(sorted.len()).ok().filter(|n| *n > 0)?;
    let index = usize::try_from(hash % len).ok()?;
    sorted.get(index).map(|z| (*z).clone())
}

/// The zone of a `diskZones` volume, all zones given as names: never one the requisite topology
/// excludes; the first preferred zone among them (the CO puts the chosen node's zone first); else
/// one picked by the volume's name, so a retried CreateVolume picks the same.
pub fn zone_from_list(
    volume_name: &str,
    disk_zones: &[String],
    preferred: &[String],
    requisite: &[String],
) -> Result<String> {
    let allowed: Vec<String> = disk_zones
        .iter()
        .filter(|z| requisite.is_empty() || requisite.contains(z))
        .cloned()
        .collect();
    if let Some(zone) = preferred.iter().find(|z| allowed.contains(z)) {
        return Ok(zone.clone());
    }
    by_name(volume_name, &allowed).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no zone of diskZones {disk_zones:?} is among the requisite zones {requisite:?} of the request's accessibility requirements"
        ))
    })
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

    /// The names of the region's zones that take new disks.
    async fn available(&self, deadline: Option<Instant>) -> Result<Vec<String>> {
        Ok(self
            .list(deadline)
            .await?
            .into_iter()
            .filter(|z| z.zone_state.is_empty() || z.zone_state == "AVAILABLE")
            .map(|z| z.zone)
            .collect())
    }

    /// A zone for a volume with no zone preference: stable for a given name, so retries agree.
    pub async fn pick(&self, volume_name: &str, deadline: Option<Instant>) -> Result<String> {
        by_name(volume_name, &self.available(deadline).await?)
            .ok_or_else(|| Error::ResourceExhausted("DescribeZones lists no available zone".into()))
    }

    /// One of `candidates` (names or numeric IDs) that takes new disks, stable for a given name;
    /// `None` when none does (or a candidate is not a zone of this region).
    pub async fn pick_among(
        &self,
        volume_name: &str,
        candidates: &[String],
        deadline: Option<Instant>,
    ) -> Result<Option<String>> {
        let available = self.available(deadline).await?;
        let mut names = Vec::new();
        for zone in candidates {
            match self.name_of(zone, deadline).await {
                Ok(name) if available.contains(&name) => names.push(name),
                Ok(_) | Err(Error::InvalidArgument(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(by_name(volume_name, &names))
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
        assert_eq!(preferred_zones(Some(&requirement)), ["100004"]);
        assert!(preferred_zones(None).is_empty());
    }

    fn names(zones: &[&str]) -> Vec<String> {
        zones.iter().map(|z| z.to_string()).collect()
    }

    #[test]
    fn disk_zones_prefer_the_first_preferred_zone_among_them() {
        let list = names(&["ap-shanghai-1", "ap-shanghai-2", "ap-shanghai-3"]);
        // The CO puts the chosen node's zone first; zones outside diskZones are skipped.
        let preferred = names(&["ap-shanghai-5", "ap-shanghai-2", "ap-shanghai-1"]);
        let requisite = names(&["ap-shanghai-1", "ap-shanghai-2", "ap-shanghai-5"]);
        for name in ["pvc-a", "pvc-b", "pvc-c"] {
            assert_eq!(
                zone_from_list(name, &list, &preferred, &requisite).unwrap(),
                "ap-shanghai-2"
            );
        }
        // A preferred zone the requisite topology excludes is never picked.
        let requisite = names(&["ap-shanghai-1"]);
        assert_eq!(
            zone_from_list("pvc-a", &list, &preferred, &requisite).unwrap(),
            "ap-shanghai-1"
        );
    }

    #[test]
    fn disk_zones_outside_the_requisite_topology_are_never_picked() {
        let list = names(&["ap-shanghai-1", "ap-shanghai-2", "ap-shanghai-3"]);
        let requisite = names(&["ap-shanghai-3", "ap-shanghai-9"]);
        for i in 0..50 {
            let zone = zone_from_list(&format!("pvc-{i}"), &list, &[], &requisite).unwrap();
            assert_eq!(zone, "ap-shanghai-3");
        }
        let err = zone_from_list("pvc-a", &list, &[], &names(&["ap-shanghai-9"])).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(r#"diskZones ["ap-shanghai-1", "ap-shanghai-2", "ap-shanghai-3"]"#)
                && message.contains(r#"requisite zones ["ap-shanghai-9"]"#),
            "{message}"
        );
    }

    #[test]
    fn disk_zones_pick_by_volume_name_deterministically_and_spread() {
        let list = names(&["ap-shanghai-1", "ap-shanghai-2", "ap-shanghai-3"]);
        let mut reversed = list.clone();
        reversed.reverse();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..60 {
            let name = format!("pvc-{i}");
            let zone = zone_from_list(&name, &list, &[], &[]).unwrap();
            // Same name, same zone: on a retry and whatever the list's order.
            assert_eq!(zone_from_list(&name, &list, &[], &[]).unwrap(), zone);
            assert_eq!(zone_from_list(&name, &reversed, &[], &list).unwrap(), zone);
            assert!(list.contains(&zone));
            seen.insert(zone);
        }
        assert_eq!(seen.len(), 3, "names spread over every zone: {seen:?}");
    }
}
