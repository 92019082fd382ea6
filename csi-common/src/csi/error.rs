//! The one error type of every CSI service, and its one exhaustive map to gRPC status codes.
//!
//! Drivers return [`CsiError`] from their handlers and convert their own parameter errors into
//! it (`impl From<ParamError> for CsiError` in the driver; the FUSE host's errors convert in
//! `fuse-host`); the code of every outcome is decided here, once, with no wildcard arm, so a new variant forces a decision and the four drivers cannot
//! answer the same situation with different codes.

use tonic::{Code, Status};

use super::error_chain;
use crate::mount::{CommandError, MountError};
use tcloud::{CloudError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A required field is missing or malformed, or a parameter is not understood.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The name or path is taken by something incompatible with the request.
    #[error("{0}")]
    AlreadyExists(String),
    /// The volume is in a state that forbids the call (attached elsewhere, in use).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size the storage cannot give (capacity range, limit below the minimum).
    #[error("{0}")]
    OutOfRange(String),
    /// A paging token this plugin did not issue, or one that is no longer valid.
    #[error("{0}")]
    Aborted(String),
    /// A transitional state or transient failure: the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// An error already mapped to a code, relayed to several waiters of one batched call.
    #[error("{message}")]
    Relayed { code: Code, message: String },
}

pub type CsiResult<T, E = CsiError> = std::result::Result<T, E>;

impl CsiError {
    /// The gRPC code the CSI spec asks for.
    pub fn code(&self) -> Code {
        match self {
            CsiError::Cloud(e) => cloud_code(e),
            CsiError::Mount(e) => mount_code(e),
            CsiError::InvalidArgument(_) => Code::InvalidArgument,
            CsiError::NotFound(_) => Code::NotFound,
            CsiError::AlreadyExists(_) => Code::AlreadyExists,
            CsiError::FailedPrecondition(_) => Code::FailedPrecondition,
            CsiError::OutOfRange(_) => Code::OutOfRange,
            CsiError::Aborted(_) => Code::Aborted,
            CsiError::Unavailable(_) => Code::Unavailable,
            CsiError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CsiError::ResourceExhausted(_) => Code::ResourceExhausted,
            CsiError::Unimplemented(_) => Code::Unimplemented,
            CsiError::Internal(_) => Code::Internal,
            CsiError::Relayed { code, .. } => *code,
        }
    }

    /// A copy with the same code and message, for every waiter of one shared call.
    pub fn relay(&self) -> CsiError {
        CsiError::Relayed {
            code: self.code(),
            message: error_chain(self),
        }
    }
}

impl From<CsiError> for Status {
    fn from(error: CsiError) -> Status {
        Status::new(error.code(), error_chain(&error))
    }
}

/// A missing field: INVALID_ARGUMENT naming it.
pub fn required(field: &str) -> CsiError {
    CsiError::InvalidArgument(format!("{field} is required"))
}

/// An I/O failure on `path` while doing `what`, as a mount-layer error.
pub fn io(path: &std::path::Path, what: &'static str) -> impl FnOnce(std::io::Error) -> CsiError {
    let path = path.display().to_string();
    move |source| CsiError::Mount(MountError::Io { path, what, source })
}

/// The gRPC code for a cloud error: each kind, and a call that ran out of its deadline.
pub fn cloud_code(error: &CloudError) -> Code {
    if error.is_deadline() {
        return Code::DeadlineExceeded;
    }
    match error.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::Throttled | ErrorKind::Busy | ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Auth => Code::PermissionDenied,
        ErrorKind::Quota => Code::ResourceExhausted,
        ErrorKind::Other => Code::Internal,
    }
}

/// The gRPC code for a mount-layer error.
pub fn mount_code(error: &MountError) -> Code {
    match error {
        MountError::UnsupportedFs(_) => Code::InvalidArgument,
        MountError::NotBlank { .. } => Code::FailedPrecondition,
        // Online ext4 growth without CAP_SYS_RESOURCE: growth at the next staging works.
        MountError::ResizeNotPermitted { .. } => Code::Unavailable,
        // A hung mount or tool, killed at its timeout: the call may be retried.
        MountError::Command(CommandError::TimedOut { .. }) => Code::DeadlineExceeded,
        // A network or FUSE mount that does not answer: retry once its server is back.
        MountError::NotAnswering { .. } => Code::Unavailable,
        MountError::Command(_)
        | MountError::Io { .. }
        | MountError::Mount { .. }
        | MountError::Unmount { .. }
        | MountError::TooManyMounts { .. } => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_variant_has_its_own_code() {
        let cases = [
            (
                CsiError::InvalidArgument(String::new()),
                Code::InvalidArgument,
            ),
            (CsiError::NotFound(String::new()), Code::NotFound),
            (CsiError::AlreadyExists(String::new()), Code::AlreadyExists),
            (
                CsiError::FailedPrecondition(String::new()),
                Code::FailedPrecondition,
            ),
            (CsiError::OutOfRange(String::new()), Code::OutOfRange),
            (CsiError::Aborted(String::new()), Code::Aborted),
            (CsiError::Unavailable(String::new()), Code::Unavailable),
            (
                CsiError::DeadlineExceeded(String::new()),
                Code::DeadlineExceeded,
            ),
            (
                CsiError::ResourceExhausted(String::new()),
                Code::ResourceExhausted,
            ),
            (CsiError::Unimplemented(String::new()), Code::Unimplemented),
            (CsiError::Internal(String::new()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn a_relayed_error_keeps_code_and_message() {
        let original = CsiError::Unavailable("disk-1 is ATTACHING".into());
        let relayed = original.relay();
        assert_eq!(relayed.code(), Code::Unavailable);
        assert_eq!(relayed.to_string(), "disk-1 is ATTACHING");
        assert_eq!(relayed.relay().code(), Code::Unavailable);
    }
}
