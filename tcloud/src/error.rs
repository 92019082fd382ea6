//! The one error type of the cloud client, and the classification of TencentCloud error codes.

use std::time::Duration;

use crate::credentials::CredentialsError;

/// What a caller can do about an error. Every cloud error code maps to exactly one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The resource does not exist (`ResourceNotFound.*`, `Invalid*Id.NotFound`).
    NotFound,
    /// A resource with that identity exists already.
    AlreadyExists,
    /// The request itself is wrong (`InvalidParameter*`, `MissingParameter`, `UnsupportedOperation`).
    InvalidArgument,
    /// The API is rate limiting us (`RequestLimitExceeded*`): back off and retry.
    Throttled,
    /// The resource is in a transitional state (`ResourceBusy`, `InvalidDisk.Busy`): retry later.
    Busy,
    /// The service or the network failed (`InternalError*`, transport errors): retry.
    Unavailable,
    /// Bad or missing credentials, or no permission (`AuthFailure*`, `UnauthorizedOperation*`).
    Auth,
    /// A quota or capacity limit (`LimitExceeded*`, `ResourceInsufficient*`, `ResourcesSoldOut*`).
    Quota,
    /// Anything else; treated as a permanent failure.
    Other,
}

impl ErrorKind {
    /// Classifies a TencentCloud API error code. Prefix rules match whole dotted segments.
    pub fn from_code(code: &str) -> ErrorKind {
        let head = code.split('.').next().unwrap_or(code);
        let has = |suffix: &str| code.split('.').skip(1).any(|segment| segment == suffix);
        if head == "AuthFailure" || head == "UnauthorizedOperation" {
            return ErrorKind::Auth;
        }
        // A disk in another zone than the instance can never attach there: not a busy state.
        if has("ZoneNotMatch") || has("Malformed") {
            return ErrorKind::InvalidArgument;
        }
        if has("NotFound") || head == "ResourceNotFound" {
            return ErrorKind::NotFound;
        }
        // InvalidFsStatus: a CFS file system still creating, i.e. "retry later".
        if has("Busy")
            || has("InvalidFsStatus")
            || head == "ResourceBusy"
            || head == "ResourceInUse"
        {
            return ErrorKind::Busy;
        }
        if has("AlreadyExists") || has("Duplicate") {
            return ErrorKind::AlreadyExists;
        }
        match head {
            "RequestLimitExceeded" => ErrorKind::Throttled,
            "InternalError" | "ServiceUnavailable" => ErrorKind::Unavailable,
            "ResourceUnavailable" | "OperationDenied" => ErrorKind::Busy,
            "LimitExceeded"
            | "ResourceInsufficient"
            | "ResourcesSoldOut"
            | "InsufficientBalance" => ErrorKind::Quota,
            "InvalidParameter"
            | "InvalidParameterValue"
            | "MissingParameter"
            | "UnknownParameter"
            | "UnsupportedOperation"
            | "InvalidAction"
            | "NoSuchVersion"
            | "InvalidDisk"
            | "InvalidInstance"
            | "InvalidSnapshot" => ErrorKind::InvalidArgument,
            _ => ErrorKind::Other,
        }
    }

    /// Whether the client retries this kind by itself (within the caller's deadline).
    pub fn is_retried_by_client(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Unavailable)
    }
}

/// An error from a cloud call. Every variant names the action; API errors keep code, message and
/// RequestId. No variant ever carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{action}: {code}: {message} (RequestId {request_id})")]
    Api {
        action: String,
        kind: ErrorKind,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("{action}: cannot reach {url}")]
    Transport {
        action: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{action}: no answer within {timeout:?}")]
    Timeout { action: String, timeout: Duration },
    #[error("{action}: unexpected response (HTTP {status}): {detail}")]
    Decode {
        action: String,
        status: u16,
        detail: String,
    },
    #[error("{action}: gave up after {attempts} attempts in {elapsed:?}, at the caller's deadline")]
    DeadlineExceeded {
        action: String,
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: Box<CloudError>,
    },
    #[error("{action}: no usable credentials")]
    Credentials {
        action: String,
        #[source]
        source: CredentialsError,
    },
}

impl CloudError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CloudError::Api { kind, .. } => *kind,
            CloudError::Transport { .. } | CloudError::Timeout { .. } => ErrorKind::Unavailable,
            CloudError::Decode { .. } => ErrorKind::Other,
            CloudError::DeadlineExceeded { last, .. } => last.kind(),
            CloudError::Credentials { .. } => ErrorKind::Auth,
        }
    }

    /// The TencentCloud error code, when the API answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            CloudError::DeadlineExceeded { last, .. } => last.code(),
            _ => None,
        }
    }

    /// True when the client ran out of the caller's deadline while retrying.
    pub fn is_deadline(&self) -> bool {
        matches!(self, CloudError::DeadlineExceeded { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_real_codes() {
        let table = [
            ("AuthFailure.SignatureFailure", ErrorKind::Auth),
            ("AuthFailure.SecretIdNotFound", ErrorKind::Auth),
            ("AuthFailure.SignatureExpire", ErrorKind::Auth),
            ("UnauthorizedOperation", ErrorKind::Auth),
            ("RequestLimitExceeded", ErrorKind::Throttled),
            (
                "RequestLimitExceeded.UinLimitExceeded",
                ErrorKind::Throttled,
            ),
            ("InternalError", ErrorKind::Unavailable),
            ("InternalError.ComponentError", ErrorKind::Unavailable),
            ("ResourceNotFound.NotFound", ErrorKind::NotFound),
            ("InvalidDiskId.NotFound", ErrorKind::NotFound),
            ("InvalidSnapshotId.NotFound", ErrorKind::NotFound),
            ("InvalidInstanceId.NotFound", ErrorKind::NotFound),
            ("InvalidParameter", ErrorKind::InvalidArgument),
            (
                "InvalidParameterValue.LimitExceeded",
                ErrorKind::InvalidArgument,
            ),
            ("MissingParameter", ErrorKind::InvalidArgument),
            ("ResourceBusy", ErrorKind::Busy),
            ("InvalidDisk.Busy", ErrorKind::Busy),
            ("ResourceInUse.DiskAttached", ErrorKind::Busy),
            ("ResourceUnavailable.Attached", ErrorKind::Busy),
            ("LimitExceeded.AttachedDiskLimitExceeded", ErrorKind::Quota),
            ("ResourceInsufficient", ErrorKind::Quota),
            ("ResourceInsufficient.CloudDiskSoldOut", ErrorKind::Quota),
            ("ResourcesSoldOut.EipInsufficient", ErrorKind::Quota),
            ("InvalidDisk.NotSupported", ErrorKind::InvalidArgument),
            (
                "ResourceUnavailable.ZoneNotMatch",
                ErrorKind::InvalidArgument,
            ),
            ("ResourceUnavailable.SnapshotCreating", ErrorKind::Busy),
            ("InvalidDiskId.Malformed", ErrorKind::InvalidArgument),
            ("SomethingNew", ErrorKind::Other),
            ("", ErrorKind::Other),
        ];
        for (code, kind) in table {
            assert_eq!(ErrorKind::from_code(code), kind, "{code}");
        }
    }
}
