//! The error every cloud API call answers with, as the real service reports it: a code such as
//! `InvalidDiskId.NotFound` and a message. The services, the signature check, the keys, the
//! faults and the state all return it; the front door (`api`) wraps it in the API's
//! `{"Response": {"Error": ...}}` envelope. It knows nothing of HTTP.

/// An API error as the real service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new("InternalError", message)
    }

    pub fn invalid_value(message: impl Into<String>) -> Self {
        ApiError::new("InvalidParameterValue", message)
    }
}
