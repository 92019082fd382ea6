//! The driver's one error type, and its one exhaustive mapping to gRPC status codes.

use csi_common::csi::{error_chain, mount_code};
use csi_common::fusehost::{ErrorCode, HostError};
use csi_common::mount::MountError;
use tonic::{Code, Status};

use crate::params::ParamError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::Param(_) | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Mount(e) => mount_code(e),
            Error::Host(HostError::Unreachable { .. }) => Code::Unavailable,
            Error::Host(HostError::Timeout { .. }) => Code::DeadlineExceeded,
            Error::Host(HostError::BadAnswer(_)) => Code::Internal,
            Error::Host(HostError::Refused { code, .. }) => match code {
                ErrorCode::Invalid => Code::InvalidArgument,
                ErrorCode::NotConfigured | ErrorCode::Conflict => Code::FailedPrecondition,
                ErrorCode::Failed => Code::Internal,
                ErrorCode::Timeout => Code::DeadlineExceeded,
            },
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, error_chain(&error))
    }
}

pub fn required(field: &str) -> Error {
    Error::InvalidArgument(format!("{field} is required"))
}

impl From<ParamError> for Status {
    fn from(error: ParamError) -> Status {
        Error::from(error).into()
    }
}
