//! csi-cbs answers with the shared [`CsiError`] and its one code map; its own parameter and size
//! errors convert into it here.

pub use csi_common::csi::{CsiError as Error, io, required};

use crate::params::{ParamError, SizeError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ParamError> for Error {
    fn from(error: ParamError) -> Error {
        Error::InvalidArgument(error.to_string())
    }
}

/// A size CBS cannot make is OUT_OF_RANGE, as the spec asks of capacity ranges.
impl From<SizeError> for Error {
    fn from(error: SizeError) -> Error {
        Error::OutOfRange(error.to_string())
    }
}

impl From<ParamError> for tonic::Status {
    fn from(error: ParamError) -> tonic::Status {
        Error::from(error).into()
    }
}
