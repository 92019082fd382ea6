//! The request rules several CBS actions share (ID lists, Describe IDs, names, tags, filters,
//! paging) and the API errors they raise about disks, instances and snapshots, with the codes and
//! messages of the simulator.
//!
//! Pure functions of their arguments: they never look at the fake's state.

use std::collections::HashSet;

use super::model::DiskState;
use crate::cbs::{Filter, Tag};
use crate::fake::{ApiError, well_formed_id};

/// Longest DiskName and SnapshotName, bytes.
const MAX_NAME: usize = 60;
/// The name the cloud gives a disk or snapshot created without one.
pub(super) const UNNAMED: &str = "未命名";

pub(super) fn disk_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidDiskId.NotFound",
        format!("The disk {id} does not exist."),
    )
}

pub(super) fn instance_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidInstanceId.NotFound",
        format!("The instance {id} does not exist."),
    )
}

pub(super) fn snapshot_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidSnapshotId.NotFound",
        format!("The snapshot {id} does not exist."),
    )
}

pub(super) fn disk_busy(id: &str, state: DiskState) -> ApiError {
    ApiError::new(
        "InvalidDisk.Busy",
        format!(
            "The disk {id} is {}: another operation is in progress, retry later.",
            state.as_str()
        ),
    )
}

pub(super) fn not_supported(message: String) -> ApiError {
    ApiError::new("InvalidDisk.NotSupported", message)
}

/// A list of IDs: not empty, at most `max`, no repeats.
pub(super) fn check_id_list(ids: &[String], field: &str, max: usize) -> Result<(), ApiError> {
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
/// well formed. Unknown IDs are no error: they are just not listed.
pub(super) fn check_describe_ids(
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

/// Disk and snapshot names are at most 60 bytes.
pub(super) fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    if name.len() > MAX_NAME {
        return Err(ApiError::invalid_value(format!(
            "{field} is {} bytes long; at most {MAX_NAME} are allowed.",
            name.len()
        )));
    }
    Ok(())
}

/// Tags as the tag service accepts them: non-empty keys and values, no reserved key prefixes,
/// no repeated keys.
pub(super) fn check_tags(tags: &[Tag]) -> Result<(), ApiError> {
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

/// Filter names against `known` (a name ending in `:` is a prefix, like `tag:`), and every filter
/// has values.
pub(super) fn check_filters(filters: &[Filter], known: &[&str]) -> Result<(), ApiError> {
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
pub(super) fn page<T>(
    items: Vec<T>,
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<Vec<T>, ApiError> {
    let limit = limit.unwrap_or(20);
    if limit > 100 {
        return Err(ApiError::invalid_value(format!(
            "Limit {limit} is too large; at most 100 is allowed."
        )));
    }
    Ok(items
        .into_iter()
        .skip(usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect())
}
