//! Settings fixed for the life of the process, read by the services and the front doors: the
//! region, its zones, the simulated instances, the CAM role, the clock skew allowed and the
//! latency added to every call. Plain data with the parsers of `--zone` and `--instance`; it
//! depends on nothing else in the crate.

use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub name: String,
    pub id: String,
}

impl FromStr for ZoneSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((name, id))
                if !name.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(ZoneSpec {
                    name: name.to_owned(),
                    id: id.to_owned(),
                })
            }
            _ => Err(format!(
                "zone {s:?} is not NAME:NUMERIC_ID, e.g. ap-guangzhou-3:100003"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub id: String,
    pub zone: String,
}

impl FromStr for InstanceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((id, zone)) if id.starts_with("ins-") && id.len() > 4 && !zone.is_empty() => {
                Ok(InstanceSpec {
                    id: id.to_owned(),
                    zone: zone.to_owned(),
                })
            }
            _ => Err(format!(
                "instance {s:?} is not INSTANCE_ID:ZONE, e.g. ins-abc12345:ap-guangzhou-3"
            )),
        }
    }
}

/// Settings fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub region: String,
    pub zones: Vec<ZoneSpec>,
    pub instances: Vec<InstanceSpec>,
    pub cam_role: Option<String>,
    pub role_key_ttl_secs: i64,
    pub max_clock_skew_secs: i64,
    pub latency: Duration,
}
