//! csi-cfs answers with the shared [`CsiError`] and its one code map; its parameter errors convert
//! into it here.

pub use csi_common::csi::{CsiError as Error, io, required};

use crate::params::ParamError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ParamError> for Error {
    fn from(error: ParamError) -> Error {
        Error::InvalidArgument(error.to_string())
    }
}

impl From<ParamError> for tonic::Status {
    fn from(error: ParamError) -> tonic::Status {
        Error::from(error).into()
    }
}
