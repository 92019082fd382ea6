//! UID/GID quotas: SetUserQuota, DescribeUserQuota, DeleteUserQuota. Quotas are stored and
//! reported with the real usage of their owner in the file system's directory; writes are not
//! refused when a quota is exceeded (the simulator's directories are plain local directories).

use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{LifeCycleState, QuotaUserType, UserQuota};
use super::{
    Cfs, Filter, check_fs_id, decode, empty_reply, fs_not_found, invalid_status, page, reply,
};
use crate::error::ApiError;

const GIB: u64 = 1 << 30;
/// Largest `CapacityHardLimit`, GiB (chosen: 1 PiB).
const MAX_CAPACITY_LIMIT: u64 = 1 << 20;
/// Largest `FileHardLimit` (chosen: what a 32-bit inode count holds).
const MAX_FILE_LIMIT: u64 = u32::MAX as u64;

fn user_type(name: &str) -> Result<QuotaUserType, ApiError> {
    QuotaUserType::parse(name).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue.QuotaUserTypeError",
            format!("UserType {name:?} is not Uid or Gid."),
        )
    })
}

/// A UID/GID: a decimal number that fits 32 bits.
fn user_id(text: &str) -> Result<u32, ApiError> {
    let ok = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() <= 10;
    ok.then(|| text.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.QuotaUserIdError",
                format!("UserId {text:?} is not a numeric UID/GID."),
            )
        })
}

impl Cfs {
    pub(super) fn set_user_quota(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
            user_type: String,
            user_id: String,
            #[serde(default)]
            capacity_hard_limit: Option<u64>,
            #[serde(default)]
            file_hard_limit: Option<u64>,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFileSystemId")?;
        let kind = user_type(&request.user_type)?;
        let numeric = user_id(&request.user_id)?;
        if request.capacity_hard_limit.is_none() && request.file_hard_limit.is_none() {
            return Err(ApiError::new(
                "MissingParameter",
                "SetUserQuota needs CapacityHardLimit or FileHardLimit.",
            ));
        }
        if let Some(limit) = request.capacity_hard_limit
            && !(1..=MAX_CAPACITY_LIMIT).contains(&limit)
        {
            return Err(ApiError::new(
                "InvalidParameterValue.QuotaCapLimitError",
                format!(
                    "CapacityHardLimit {limit} GiB is out of range: it must be within [1, {MAX_CAPACITY_LIMIT}]."
                ),
            ));
        }
        if let Some(limit) = request.file_hard_limit
            && !(1..=MAX_FILE_LIMIT).contains(&limit)
        {
            return Err(ApiError::new(
                "InvalidParameterValue.QuotaFileLimitError",
                format!(
                    "FileHardLimit {limit} is out of range: it must be within [1, {MAX_FILE_LIMIT}]."
                ),
            ));
        }
        let quota = UserQuota {
            user_type: kind,
            user_id: numeric.to_string(),
            capacity_hard_limit: request.capacity_hard_limit,
            file_hard_limit: request.file_hard_limit,
        };
        self.store.try_update(|state| {
            let fs = state
                .cfs
                .file_system_mut(&id)
                .ok_or_else(|| fs_not_found(&id))?;
            if fs.state != LifeCycleState::Available {
                return Err(invalid_status(&id, fs.state));
            }
            match fs
                .quotas
                .iter_mut()
                .find(|q| q.user_type == quota.user_type && q.user_id == quota.user_id)
            {
                Some(existing) => *existing = quota.clone(),
                None => fs.quotas.push(quota.clone()),
            }
            Ok(())
        })?;
        tracing::info!(file_system = %id, user_type = kind.as_str(), user_id = numeric,
            capacity_gib = ?quota.capacity_hard_limit, files = ?quota.file_hard_limit, "CFS quota set");
        empty_reply()
    }

    pub(super) async fn describe_user_quota(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
            #[serde(default)]
            filters: Vec<Filter>,
            #[serde(default)]
            offset: Option<u64>,
            #[serde(default)]
            limit: Option<u64>,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFileSystemId")?;
        let mut types = Vec::new();
        let mut ids = Vec::new();
        for filter in &request.filters {
            match filter.name.as_str() {
                "UserType" => {
                    for value in &filter.values {
                        types.push(user_type(value)?);
                    }
                }
                "UserId" => ids.extend(filter.values.iter().cloned()),
                other => {
                    return Err(ApiError::invalid_value(format!(
                        "Filter {other:?} is not supported; use UserType or UserId."
                    )));
                }
            }
        }
        let fs = self
            .store
            .read(|s| s.cfs.file_system(&id).cloned())
            .ok_or_else(|| fs_not_found(&id))?;
        let matching: Vec<UserQuota> = fs
            .quotas
            .iter()
            .filter(|q| types.is_empty() || types.contains(&q.user_type))
            .filter(|q| ids.is_empty() || ids.contains(&q.user_id))
            .cloned()
            .collect();
        let total = matching.len();
        let listed = page(matching, request.offset, request.limit)?;
        let usage = if listed.is_empty() {
            super::Usage::default()
        } else {
            let dir = self.layout.fs_dir(&id);
            crate::state::run_blocking(move || Ok(super::usage(&dir)))
                .await
                .unwrap_or_default()
        };
        let views: Vec<Value> = listed
            .iter()
            .map(|q| {
                let owner: u32 = q.user_id.parse().unwrap_or(u32::MAX);
                let used = match q.user_type {
                    QuotaUserType::Uid => usage.by_uid.get(&owner),
                    QuotaUserType::Gid => usage.by_gid.get(&owner),
                };
                let (bytes, files) = used.copied().unwrap_or((0, 0));
                json!({
                    "UserType": q.user_type.as_str(),
                    "UserId": q.user_id,
                    "CapacityHardLimit": q.capacity_hard_limit.unwrap_or(0),
                    "FileHardLimit": q.file_hard_limit.unwrap_or(0),
                    "FileSystemId": id,
                    "CapacityUsed": bytes.div_ceil(GIB),
                    "FileUsed": files,
                })
            })
            .collect();
        reply(&json!({ "TotalCount": total, "UserQuotaInfo": views }))
    }

    pub(super) fn delete_user_quota(&self, body: Value) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Request {
            file_system_id: String,
            user_type: String,
            user_id: String,
        }
        let request: Request = decode(body)?;
        let id = request.file_system_id;
        check_fs_id(&id, "InvalidParameterValue.MissingFileSystemId")?;
        let kind = user_type(&request.user_type)?;
        let numeric = user_id(&request.user_id)?.to_string();
        self.store.try_update(|state| {
            let fs = state
                .cfs
                .file_system_mut(&id)
                .ok_or_else(|| fs_not_found(&id))?;
            let before = fs.quotas.len();
            fs.quotas
                .retain(|q| !(q.user_type == kind && q.user_id == numeric));
            if fs.quotas.len() == before {
                return Err(ApiError::new(
                    "ResourceNotFound",
                    format!(
                        "The file system {id} has no {} quota for {numeric}.",
                        kind.as_str()
                    ),
                ));
            }
            Ok(())
        })?;
        empty_reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_32_bit_decimal_numbers() {
        assert_eq!(user_id("0").unwrap(), 0);
        assert_eq!(user_id("4294967295").unwrap(), u32::MAX);
        for bad in ["", "-1", "4294967296", "12a", " 1", "+1", "99999999999"] {
            assert_eq!(
                user_id(bad).unwrap_err().code,
                "InvalidParameterValue.QuotaUserIdError",
                "{bad:?}"
            );
        }
        assert_eq!(
            user_type("uid").unwrap_err().code,
            "InvalidParameterValue.QuotaUserTypeError"
        );
    }
}
