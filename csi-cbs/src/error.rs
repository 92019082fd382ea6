//! The driver's one error type, and its one exhaustive mapping to gRPC status codes.

use csi_common::cloud::CloudError;
use csi_common::csi::error_chain;
use csi_common::mount::MountError;
use tonic::{Code, Status};

use crate::params::{ParamError, SizeError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Size(#[from] SizeError),
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A required field is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The volume is in a state that forbids the call (attached elsewhere, in use).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A transitional state or transient failure: the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Internal(String),
    /// An error already mapped to a code, relayed to several waiters of one batched call.
    #[error("{message}")]
    Relayed { code: Code, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use csi_common::csi::{cloud_code, mount_code};

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::Cloud(e) => cloud_code(e),
            Error::Param(_) => Code::InvalidArgument,
            Error::Size(_) => Code::OutOfRange,
            Error::Mount(e) => mount_code(e),
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Internal(_) => Code::Internal,
            Error::Relayed { code, .. } => *code,
        };
        Status::new(code, error_chain(&error))
    }
}

impl Error {
    /// A copy of `error` with the same code and message.
    pub fn relay(error: &Error) -> Error {
        let message = error_chain(error);
        let code = match error {
            Error::Cloud(e) => cloud_code(e),
            Error::Relayed { code, .. } => *code,
            _ => Code::Internal,
        };
        Error::Relayed { code, message }
    }
}

/// Shorthand for a missing-field error.
pub fn required(field: &str) -> Error {
    Error::InvalidArgument(format!("{field} is required"))
}
