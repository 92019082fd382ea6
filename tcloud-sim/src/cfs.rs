//! The CFS service (`cfs`, `2019-07-19`): NFS and CFS Turbo file systems as directories under the
//! state directory, their mount targets as entries of an export table a node plugin reads, UID/GID
//! quotas, with the real request and response shapes, states and error codes. The rules only
//! Turbo file systems follow (CCN, capacity) are `turbo`.
//!
//! Owns the CFS section of the persistent state and the `cfs/` files under the state directory.
//! Every change goes through the [`Store`] first; directory work runs outside its lock. A new file
//! system is `creating` until a background ticker makes it `available` after the configured
//! latency and publishes its export (see `transitions`); a `stuck` fault on CreateCfsFileSystem
//! holds it in `creating`. Which method answers each action is `actions`. It must not touch
//! another service's state or files.

mod actions;
mod dataplane;
mod filesystems;
pub(crate) mod model;
mod quotas;
mod transitions;
mod turbo;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::SimConfig;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::service::params;
use crate::state::Store;

pub use dataplane::{Layout, Usage, usage};
pub use model::{CfsState, LifeCycleState, StorageType};

/// The permission group every account has.
pub const DEFAULT_PGROUP: &str = "pgroupbasic";

/// CFS settings from the command line.
#[derive(Debug, Clone)]
pub struct CfsConfig {
    /// Permission groups that exist besides [`DEFAULT_PGROUP`] (`--cfs-pgroup`).
    pub pgroups: Vec<String>,
    /// How long a new file system stays `creating` (`--cfs-create-ms`).
    pub create_latency: Duration,
    /// Most file systems the account may hold (`--cfs-max-file-systems`); `None`: unlimited.
    pub max_file_systems: Option<u64>,
    /// DescribeCfsFileSystems of an unknown `FileSystemId` answers
    /// `ResourceNotFound.FileSystemNotFound` instead of an empty list
    /// (`--cfs-describe-not-found-error`).
    pub describe_not_found_error: bool,
    /// `AppId` reported on file systems.
    pub app_id: u64,
}

/// The account ID the simulator reports (chosen; Tencent AppIds are 10-digit numbers).
pub const SIM_APP_ID: u64 = 1_250_000_000;

impl Default for CfsConfig {
    fn default() -> Self {
        CfsConfig {
            pgroups: Vec::new(),
            create_latency: Duration::from_millis(300),
            max_file_systems: None,
            describe_not_found_error: false,
            app_id: SIM_APP_ID,
        }
    }
}

/// Parses a `--cfs-pgroup` value: `pgroup-` and lowercase letters and digits.
pub fn parse_pgroup_id(s: &str) -> Result<String, String> {
    if model::well_formed_id(s, "pgroup-") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "permission group {s:?} is not an ID like pgroup-7nx89k7l"
        ))
    }
}

/// The CFS service.
#[derive(Debug)]
pub struct Cfs {
    sim: SimConfig,
    config: CfsConfig,
    store: Arc<Store>,
    faults: Arc<Faults>,
    layout: Layout,
}

impl Cfs {
    pub fn new(
        sim: SimConfig,
        config: CfsConfig,
        store: Arc<Store>,
        faults: Arc<Faults>,
        layout: Layout,
    ) -> Cfs {
        Cfs {
            sim,
            config,
            store,
            faults,
            layout,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The numeric ID of `zone`, if the simulator serves it.
    fn zone_id(&self, zone: &str) -> Option<u64> {
        self.sim
            .zones
            .iter()
            .find(|z| z.name == zone)
            .and_then(|z| z.id.parse().ok())
    }

    fn zone_names(&self) -> String {
        let names: Vec<&str> = self.sim.zones.iter().map(|z| z.name.as_str()).collect();
        names.join(", ")
    }

    fn pgroup_exists(&self, id: &str) -> bool {
        id == DEFAULT_PGROUP || self.config.pgroups.iter().any(|p| p == id)
    }

    /// The name a permission group is shown with.
    fn pgroup_name(id: &str) -> &str {
        if id == DEFAULT_PGROUP {
            "默认权限组"
        } else {
            id
        }
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

fn fs_not_found(id: &str) -> ApiError {
    ApiError::new(
        "ResourceNotFound.FileSystemNotFound",
        format!("The file system {id} does not exist."),
    )
}

/// A file system in a state the operation does not accept.
fn invalid_status(id: &str, state: LifeCycleState) -> ApiError {
    ApiError::new(
        "InvalidParameterValue.InvalidFsStatus",
        format!(
            "The file system {id} is {}: the operation needs it available.",
            state.as_str()
        ),
    )
}

/// Checks a `FileSystemId` argument: not empty (`empty_code` otherwise) and shaped `cfs-xxxx`
/// (`InvalidParameterValue.InvalidFileSystemId` otherwise).
fn check_fs_id(id: &str, empty_code: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::new(empty_code, "FileSystemId is empty."));
    }
    if !model::well_formed_id(id, "cfs-") {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidFileSystemId",
            format!("FileSystemId {id:?} is not a file system ID (cfs-xxxxxxxx)."),
        ));
    }
    Ok(())
}

/// `Offset`/`Limit` (default 20, 1 to 100) applied to `items`.
fn page<T>(items: Vec<T>, offset: Option<u64>, limit: Option<u64>) -> Result<Vec<T>, ApiError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_value(format!(
            "Limit {limit} is out of range: it must be within [1, 100]."
        )));
    }
    Ok(items
        .into_iter()
        .skip(usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect())
}

/// Most tags a resource may carry (the tag service's limit).
const MAX_TAGS: usize = 50;

/// `ResourceTags` as the tag service accepts them.
fn check_tags(tags: &[model::Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            "ResourceInsufficient.TagLimitExceeded",
            format!(
                "ResourceTags has {} tags; a resource carries at most {MAX_TAGS}.",
                tags.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for tag in tags {
        let key = tag.tag_key.as_str();
        if key.trim().is_empty() {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTagKey",
                "ResourceTags: a tag key is empty.",
            ));
        }
        let lower = key.to_ascii_lowercase();
        if ["qcloud", "tencent", "project"]
            .iter()
            .any(|reserved| lower.starts_with(reserved))
        {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTagKey",
                format!("ResourceTags: key {key:?} starts with a word reserved for the system."),
            ));
        }
        if key.len() > 127 {
            return Err(ApiError::new(
                "InvalidParameterValue.TagKeyLimitExceeded",
                format!("ResourceTags: key {key:?} is longer than 127 bytes."),
            ));
        }
        if tag.tag_value.is_empty() || tag.tag_value.chars().any(char::is_control) {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidTagValue",
                format!("ResourceTags: the value of {key:?} is empty or has invalid characters."),
            ));
        }
        if tag.tag_value.len() > 255 {
            return Err(ApiError::new(
                "InvalidParameterValue.TagValueLimitExceeded",
                format!("ResourceTags: the value of {key:?} is longer than 255 bytes."),
            ));
        }
        if !seen.insert(key) {
            return Err(ApiError::new(
                "InvalidParameterValue.DuplicatedTagKey",
                format!("ResourceTags: key {key:?} appears more than once."),
            ));
        }
    }
    Ok(())
}

/// A `Filters` entry.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Filter {
    name: String,
    #[serde(default)]
    values: Vec<String>,
}

#[cfg(test)]
mod tests;
