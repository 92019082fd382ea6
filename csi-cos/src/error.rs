//! csi-cos (and csi-goosefs) answer with the shared [`CsiError`] and its one code map; their
//! parameter errors convert into it here.

use tonic::Status;

pub use csi_common::csi::{CsiError as Error, io, required};

use crate::params::ParamError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ParamError> for Error {
    fn from(error: ParamError) -> Error {
        Error::InvalidArgument(error.to_string())
    }
}

impl From<ParamError> for Status {
    fn from(error: ParamError) -> Status {
        Error::from(error).into()
    }
}
