//! The argument rules of the CFS actions (file-system IDs, names, ClientTokens, tags, the network
//! of a new file system, paging, and `""` read as absent) and the API errors about file systems
//! they and the actions raise, with the codes and messages of the simulator.
//!
//! Pure functions of their arguments: they never look at the fake's state.

use super::model::LifeCycle;
use crate::cfs::{CreateFileSystemRequest, ResourceTag};
use crate::fake::{ApiError, well_formed_id};

/// Longest `FsName`, bytes.
const MAX_FS_NAME: usize = 64;
/// Longest `ClientToken`, ASCII characters.
const MAX_CLIENT_TOKEN: usize = 64;
/// Most tags a resource may carry.
const MAX_TAGS: usize = 50;

/// The network of a new file system.
#[derive(Debug)]
pub(super) struct Network {
    pub(super) net_interface: &'static str,
    pub(super) vpc_id: Option<String>,
    pub(super) subnet_id: Option<String>,
}

/// An optional argument, with `""` treated as absent (the client sends empty strings).
pub(super) fn given(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}

pub(super) fn given_opt(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

pub(super) fn plan_network(
    request: &CreateFileSystemRequest,
    net_interface: &'static str,
    turbo: bool,
) -> Result<Network, ApiError> {
    let wrong_network = |why: &str| {
        ApiError::new(
            "InvalidParameterValue.InvalidNetInterface",
            format!("NetInterface {net_interface}: {why}"),
        )
    };
    let mut network = Network {
        net_interface,
        vpc_id: None,
        subnet_id: None,
    };
    match net_interface {
        "VPC" | "BASIC" if turbo => return Err(wrong_network("the Turbo types need CCN.")),
        "CCN" if !turbo => {
            return Err(wrong_network("CCN is for the Turbo types (TB, TP) only."));
        }
        "VPC" => {
            let (Some(vpc), Some(subnet)) = (given(&request.vpc_id), given(&request.subnet_id))
            else {
                return Err(ApiError::new(
                    "InvalidParameterValue.MissingVpcParameter",
                    "A VPC file system needs VpcId and SubnetId.",
                ));
            };
            if !well_formed_id(vpc, "vpc-") {
                return Err(ApiError::new(
                    "InvalidParameterValue.InvalidVpcId",
                    format!("VpcId {vpc:?} is not a VPC ID (vpc-xxxxxxxx)."),
                ));
            }
            if !well_formed_id(subnet, "subnet-") {
                return Err(ApiError::new(
                    "InvalidParameterValue.InvalidSubnetId",
                    format!("SubnetId {subnet:?} is not a subnet ID (subnet-xxxxxxxx)."),
                ));
            }
            network.vpc_id = Some(vpc.to_owned());
            network.subnet_id = Some(subnet.to_owned());
        }
        "CCN" => {
            // CcnId and CidrBlock are not fields of the client's request.
            return Err(ApiError::new(
                "MissingParameter",
                "A CCN file system needs CcnId and CidrBlock.",
            ));
        }
        _ => {}
    }
    Ok(network)
}

pub(super) fn fs_not_found(id: &str) -> ApiError {
    ApiError::new(
        "ResourceNotFound.FileSystemNotFound",
        format!("The file system {id} does not exist."),
    )
}

pub(super) fn invalid_status(id: &str, state: LifeCycle) -> ApiError {
    ApiError::new(
        "InvalidParameterValue.InvalidFsStatus",
        format!(
            "The file system {id} is {}: the operation needs it available.",
            state.as_str()
        ),
    )
}

/// A `FileSystemId` argument: not empty (`empty_code` otherwise) and shaped `cfs-xxxx`.
pub(super) fn check_fs_id(id: &str, empty_code: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::new(empty_code, "FileSystemId is empty."));
    }
    if !well_formed_id(id, "cfs-") {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidFileSystemId",
            format!("FileSystemId {id:?} is not a file system ID (cfs-xxxxxxxx)."),
        ));
    }
    Ok(())
}

pub(super) fn check_fs_name(name: &str) -> Result<(), ApiError> {
    if name.len() > MAX_FS_NAME {
        return Err(ApiError::new(
            "InvalidParameterValue.FsNameLimitExceeded",
            format!(
                "FsName is {} bytes long; at most {MAX_FS_NAME} are allowed.",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidFsName",
            "FsName contains control characters.",
        ));
    }
    Ok(())
}

pub(super) fn check_client_token(token: &str) -> Result<(), ApiError> {
    if token.len() > MAX_CLIENT_TOKEN {
        return Err(ApiError::new(
            "InvalidParameterValue.ClientTokenLimitExceeded",
            format!(
                "ClientToken is {} bytes long; at most {MAX_CLIENT_TOKEN} ASCII characters are allowed.",
                token.len()
            ),
        ));
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidClientToken",
            "ClientToken must be 1 to 64 printable ASCII characters.",
        ));
    }
    Ok(())
}

/// `ResourceTags` as the tag service accepts them.
pub(super) fn check_tags(tags: &[ResourceTag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            "ResourceInsufficient.TagLimitExceeded",
            format!(
                "ResourceTags has {} tags; a resource carries at most {MAX_TAGS}.",
                tags.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
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

/// `Offset`/`Limit` (default 20, 1 to 100) applied to `items`.
pub(super) fn page<T>(
    items: Vec<T>,
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<Vec<T>, ApiError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_value(format!(
            "Limit {limit} is out of range: it must be within [1, 100]."
        )));
    }
    Ok(items
        .into_iter()
        .skip(usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect())
}
