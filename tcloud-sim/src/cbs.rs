//! The CBS service (`cbs`, `2017-03-12`): block disks as sparse image files, attachments as loop
//! devices shown to the simulated instance, snapshots as point-in-time copies, with the real
//! request and response shapes, states and error codes.
//!
//! Owns the CBS section of the persistent state and the CBS files under the state directory. Every
//! change goes through the [`Store`] first; slow work (copies, `losetup`) runs outside its lock,
//! either before the state change (images) or when a pending transition completes (devices).
//! Asynchronous operations record a [`model::Pending`] transition that a background ticker
//! completes after the configured latency (see `transitions`). Which method answers each action is
//! `actions`; the unsigned test endpoints are `control`.

mod actions;
mod attach;
pub mod control;
mod dataplane;
mod disks;
pub(crate) mod model;
mod settings;
mod snapshots;
mod transitions;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::SimConfig;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::service::params;
use crate::state::{Store, format_time};

pub use dataplane::{BlockDevices, Layout, LoopDevices};
pub use model::{CbsState, DiskState, DiskType, SnapshotState};

/// CBS settings from the command line.
#[derive(Debug, Clone)]
pub struct CbsConfig {
    /// Zone → most disks it may hold (`--cbs-quota`); zones not listed are unlimited.
    pub quotas: BTreeMap<String, u64>,
    /// Most disks attached to one instance (`--cbs-max-attach`).
    pub max_attach: u64,
    pub attach_latency: Duration,
    pub detach_latency: Duration,
    pub resize_latency: Duration,
    pub snapshot_latency: Duration,
    /// Auto-snapshot policy IDs that exist (`--cbs-auto-snapshot-policy`).
    pub auto_snapshot_policies: Vec<String>,
}

impl Default for CbsConfig {
    fn default() -> Self {
        CbsConfig {
            quotas: BTreeMap::new(),
            max_attach: 20,
            attach_latency: Duration::from_millis(200),
            detach_latency: Duration::from_millis(200),
            resize_latency: Duration::from_millis(200),
            snapshot_latency: Duration::from_millis(500),
            auto_snapshot_policies: Vec::new(),
        }
    }
}

/// The CBS service.
#[derive(Debug)]
pub struct Cbs {
    sim: SimConfig,
    config: CbsConfig,
    store: Arc<Store>,
    faults: Arc<Faults>,
    devices: Arc<dyn BlockDevices>,
    layout: Layout,
}

impl Cbs {
    pub fn new(
        sim: SimConfig,
        config: CbsConfig,
        store: Arc<Store>,
        faults: Arc<Faults>,
        devices: Arc<dyn BlockDevices>,
        layout: Layout,
    ) -> Cbs {
        Cbs {
            sim,
            config,
            store,
            faults,
            devices,
            layout,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn zone_exists(&self, zone: &str) -> bool {
        self.sim.zones.iter().any(|z| z.name == zone)
    }

    fn instance_zone(&self, instance: &str) -> Option<&str> {
        self.sim
            .instances
            .iter()
            .find(|i| i.id == instance)
            .map(|i| i.zone.as_str())
    }

    fn zone_names(&self) -> String {
        let names: Vec<&str> = self.sim.zones.iter().map(|z| z.name.as_str()).collect();
        names.join(", ")
    }
}

/// Decodes a request; unknown parameters are `UnknownParameter`, missing ones `MissingParameter`.
fn decode<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    params(body).map_err(|e| {
        e.unwrap_or_else(|| ApiError::new("InvalidParameter", "The parameters are not valid."))
    })
}

fn reply<T: Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn empty_reply() -> Result<Value, ApiError> {
    Ok(Value::Object(serde_json::Map::new()))
}

fn disk_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidDiskId.NotFound",
        format!("The disk {id} does not exist."),
    )
}

fn instance_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidInstanceId.NotFound",
        format!("The instance {id} does not exist."),
    )
}

fn snapshot_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidSnapshotId.NotFound",
        format!("The snapshot {id} does not exist."),
    )
}

fn disk_busy(id: &str, state: DiskState) -> ApiError {
    ApiError::new(
        "InvalidDisk.Busy",
        format!(
            "The disk {id} is {}: another operation is in progress, retry later.",
            state.as_str()
        ),
    )
}

fn not_supported(message: String) -> ApiError {
    ApiError::new("InvalidDisk.NotSupported", message)
}

/// Checks a list of IDs: not empty, at most `max`, no repeats.
fn check_id_list(ids: &[String], field: &str, max: usize) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::new(
            "MissingParameter",
            format!("{field} must name at least one ID."),
        ));
    }
    if ids.len() > max {
        return Err(ApiError::new(
            "InvalidParameterValue.LimitExceeded",
            format!(
                "{field} names {} IDs; at most {max} are allowed.",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(repeated) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(ApiError::invalid_value(format!(
            "{field} names {repeated} more than once."
        )));
    }
    Ok(())
}

/// The rules every `Describe*` by ID list shares: IDs or filters, not both; at most 100; each
/// well formed (`<code>` otherwise, e.g. `InvalidDiskId.Malformed`).
fn check_describe_ids(
    ids: &[String],
    with_filters: bool,
    field: &str,
    prefix: &str,
    malformed_code: &str,
) -> Result<(), ApiError> {
    if !ids.is_empty() && with_filters {
        return Err(ApiError::new(
            "InvalidParameter",
            format!("{field} and Filters cannot be given together."),
        ));
    }
    if ids.len() > 100 {
        return Err(ApiError::new(
            "InvalidParameterValue.LimitExceeded",
            format!("{field} names more than 100 resources."),
        ));
    }
    if let Some(bad) = ids.iter().find(|id| !well_formed_id(id, prefix)) {
        return Err(ApiError::new(
            malformed_code,
            format!("{field}: {bad:?} is not an ID like {prefix}xxxxxxxx."),
        ));
    }
    Ok(())
}

/// `prefix` followed by one or more lowercase letters and digits, like `disk-8kq2m1xz`.
fn well_formed_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Names (disks, snapshots) are at most 60 bytes.
fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    if name.len() > 60 {
        return Err(ApiError::invalid_value(format!(
            "{field} is {} bytes long; at most 60 are allowed.",
            name.len()
        )));
    }
    Ok(())
}

/// Tags as the tag service accepts them: non-empty keys and values, no reserved key prefixes,
/// no repeated keys.
fn check_tags(tags: &[model::Tag]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for tag in tags {
        if tag.key.trim().is_empty() {
            return Err(ApiError::new(
                "InvalidParameter",
                "Tags: a tag key is empty.",
            ));
        }
        let lower = tag.key.to_ascii_lowercase();
        if ["qcloud", "tencent", "project"]
            .iter()
            .any(|reserved| lower.starts_with(reserved))
        {
            return Err(ApiError::new(
                "InvalidParameter",
                format!(
                    "Tags: Key ({}) start with a word that is reserved for the system.",
                    tag.key
                ),
            ));
        }
        if tag.value.is_empty() {
            return Err(ApiError::new(
                "InvalidParameter",
                format!(
                    "Tags: the value of tag {} is empty: tag value contains illegal characters.",
                    tag.key
                ),
            ));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(ApiError::invalid_value(format!(
                "Tags: key {} appears more than once.",
                tag.key
            )));
        }
    }
    Ok(())
}

/// A `Filters` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Filter {
    name: String,
    values: Vec<String>,
}

/// Checks filter names against `known` (a name ending in `:` is a prefix, like `tag:`) and that
/// every filter has values.
fn check_filters(filters: &[Filter], known: &[&str]) -> Result<(), ApiError> {
    for filter in filters {
        let ok = known.iter().any(|k| match k.strip_suffix(':') {
            Some(prefix) => filter
                .name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|key| !key.is_empty()),
            None => filter.name == *k,
        });
        if !ok {
            return Err(ApiError::new(
                "InvalidFilter",
                format!(
                    "Filter {:?} is not supported; use one of {}.",
                    filter.name,
                    known.join(", ")
                ),
            ));
        }
        if filter.values.is_empty() {
            return Err(ApiError::invalid_value(format!(
                "Filter {} has no Values.",
                filter.name
            )));
        }
    }
    Ok(())
}

/// `Offset`/`Limit` (default 20, at most 100) applied to `items`.
fn page<T>(items: Vec<T>, offset: Option<u64>, limit: Option<u64>) -> Result<Vec<T>, ApiError> {
    let limit = limit.unwrap_or(20);
    if limit > 100 {
        return Err(ApiError::invalid_value(format!(
            "Limit {limit} is too large; at most 100 is allowed."
        )));
    }
    Ok(items
        .into_iter()
        .skip(usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect())
}

/// `Order` (`ASC` | `DESC`) and `OrderField` (one of `fields`), checked.
fn check_order(
    order: Option<&str>,
    field: Option<&str>,
    fields: &[&str],
) -> Result<bool, ApiError> {
    if let Some(field) = field
        && !fields.contains(&field)
    {
        return Err(ApiError::invalid_value(format!(
            "OrderField {field:?} is not one of {}.",
            fields.join(", ")
        )));
    }
    match order {
        None | Some("ASC") => Ok(false),
        Some("DESC") => Ok(true),
        Some(other) => Err(ApiError::invalid_value(format!(
            "Order {other:?} is not ASC or DESC."
        ))),
    }
}

/// Parses an ISO-8601 time like `2022-01-08T09:47:55+00:00` (or `...Z`) into Unix seconds.
fn parse_iso8601(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once('T')?;
    let days = crate::signature::days_from_date(date)?;
    let (clock, offset_secs) = if let Some(clock) = rest.strip_suffix('Z') {
        (clock, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (clock, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        (clock, sign * (h * 3600 + m * 60))
    };
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(days * 86_400 + h * 3600 + m * 60 + s - offset_secs)
}

#[cfg(test)]
mod tests;
