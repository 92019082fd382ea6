//! The one error type of the object client, and the classification of S3 error codes into the
//! four kinds a caller acts on. No variant carries a credential, a signature or a token.

use std::time::Duration;

/// What a caller can do about an [`ObjectError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectErrorKind {
    /// No such key, bucket or upload; or an `If-Match` precondition failed (the object the caller
    /// knew is gone).
    NotFound,
    /// Bad, expired or missing credentials, or no permission.
    Forbidden,
    /// The request is wrong and will fail again as it is.
    Invalid,
    /// The server or the network failed, or the server asked us to slow down. The client has
    /// already retried these `max_attempts` times.
    Unavailable,
}

impl ObjectErrorKind {
    /// Classifies an S3 error `code` (may be empty, e.g. for HEAD) answered with HTTP `status`.
    /// Codes win over statuses: S3 answers some errors with a 200 status.
    pub fn classify(status: u16, code: &str) -> ObjectErrorKind {
        match code {
            "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NoSuchVersion"
            | "PreconditionFailed" => return ObjectErrorKind::NotFound,
            "AccessDenied"
            | "AllAccessDisabled"
            | "AccountProblem"
            | "ExpiredToken"
            | "InvalidAccessKeyId"
            | "InvalidSecurity"
            | "InvalidToken"
            | "RequestTimeTooSkewed"
            | "SignatureDoesNotMatch"
            | "TokenRefreshRequired" => return ObjectErrorKind::Forbidden,
            // RequestTimeout: the server gave up waiting for our body. OperationAborted: a
            // conflicting operation on the same resource is in progress; S3 says "try again".
            "InternalError" | "ServiceUnavailable" | "SlowDown" | "RequestTimeout"
            | "OperationAborted" => return ObjectErrorKind::Unavailable,
            _ => {}
        }
        match status {
            404 | 412 => ObjectErrorKind::NotFound,
            401 | 403 => ObjectErrorKind::Forbidden,
            408 | 429 | 500..=599 => ObjectErrorKind::Unavailable,
            _ => ObjectErrorKind::Invalid,
        }
    }
}

/// An error of one object operation. Every variant names the operation (`op`, the S3 action) and
/// the resource (`bucket` or `bucket/key`).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The server answered with an error status, or with an `<Error>` document.
    #[error("{op} {resource}: {}", describe_service(*.status, .code, .message, .request_id))]
    Service {
        op: &'static str,
        resource: String,
        status: u16,
        /// The S3 error code; empty when the answer had no body (HEAD) or was not XML.
        code: String,
        message: String,
        /// `x-amz-request-id` (or COS's `x-cos-request-id`), for the provider's support.
        request_id: String,
    },
    #[error("{op} {resource}: cannot reach the server")]
    Transport {
        op: &'static str,
        resource: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{op} {resource}: no answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        resource: String,
        timeout: Duration,
    },
    /// A success status with a body or headers this client cannot read.
    #[error("{op} {resource}: unexpected response (HTTP {status}): {detail}")]
    Decode {
        op: &'static str,
        resource: String,
        status: u16,
        detail: String,
    },
    /// Refused before anything was sent.
    #[error("{op} {resource}: {detail}")]
    InvalidArgument {
        op: &'static str,
        resource: String,
        detail: String,
    },
    #[error("invalid object storage configuration: {detail}")]
    Config { detail: String },
    /// Some keys of a bulk delete failed; `first_*` tell one of them.
    #[error(
        "{op} {resource}: {failed} keys could not be deleted (first: {first_key:?}: {first_code})"
    )]
    DeleteFailed {
        op: &'static str,
        resource: String,
        failed: usize,
        first_key: String,
        first_code: String,
    },
    /// A concurrent part of the operation was cancelled (the runtime is shutting down).
    #[error("{op} {resource}: cancelled")]
    Cancelled { op: &'static str, resource: String },
}

fn describe_service(status: u16, code: &str, message: &str, request_id: &str) -> String {
    let mut out = format!("HTTP {status}");
    if !code.is_empty() {
        out.push_str(&format!(" {code}"));
    }
    if !message.is_empty() {
        out.push_str(&format!(": {message}"));
    }
    if !request_id.is_empty() {
        out.push_str(&format!(" (request id {request_id})"));
    }
    out
}

impl ObjectError {
    pub fn kind(&self) -> ObjectErrorKind {
        match self {
            ObjectError::Service { status, code, .. } => ObjectErrorKind::classify(*status, code),
            // A garbled success is most often a truncated answer: the caller may try again.
            ObjectError::Transport { .. }
            | ObjectError::Timeout { .. }
            | ObjectError::Decode { .. }
            | ObjectError::Cancelled { .. } => ObjectErrorKind::Unavailable,
            ObjectError::InvalidArgument { .. } | ObjectError::Config { .. } => {
                ObjectErrorKind::Invalid
            }
            ObjectError::DeleteFailed { first_code, .. } => {
                match ObjectErrorKind::classify(0, first_code) {
                    // A per-key error without a known code is the server's, not ours.
                    ObjectErrorKind::Invalid if first_code.is_empty() => {
                        ObjectErrorKind::Unavailable
                    }
                    kind => kind,
                }
            }
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ObjectError::Service { status, .. } | ObjectError::Decode { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The S3 error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ObjectError::Service { code, .. } if !code.is_empty() => Some(code),
            ObjectError::DeleteFailed { first_code, .. } => Some(first_code),
            _ => None,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            ObjectError::Service { message, .. } if !message.is_empty() => Some(message),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            ObjectError::Service { request_id, .. } if !request_id.is_empty() => Some(request_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_and_statuses() {
        let table = [
            (404, "NoSuchKey", ObjectErrorKind::NotFound),
            (404, "NoSuchBucket", ObjectErrorKind::NotFound),
            (404, "NoSuchUpload", ObjectErrorKind::NotFound),
            (404, "", ObjectErrorKind::NotFound),
            (412, "PreconditionFailed", ObjectErrorKind::NotFound),
            (412, "", ObjectErrorKind::NotFound),
            (403, "AccessDenied", ObjectErrorKind::Forbidden),
            (403, "SignatureDoesNotMatch", ObjectErrorKind::Forbidden),
            (400, "ExpiredToken", ObjectErrorKind::Forbidden),
            (400, "InvalidToken", ObjectErrorKind::Forbidden),
            (403, "", ObjectErrorKind::Forbidden),
            (401, "", ObjectErrorKind::Forbidden),
            (503, "SlowDown", ObjectErrorKind::Unavailable),
            (500, "InternalError", ObjectErrorKind::Unavailable),
            (200, "InternalError", ObjectErrorKind::Unavailable),
            (400, "RequestTimeout", ObjectErrorKind::Unavailable),
            (409, "OperationAborted", ObjectErrorKind::Unavailable),
            (502, "", ObjectErrorKind::Unavailable),
            (429, "", ObjectErrorKind::Unavailable),
            (400, "InvalidPart", ObjectErrorKind::Invalid),
            (400, "EntityTooSmall", ObjectErrorKind::Invalid),
            (200, "InvalidPartOrder", ObjectErrorKind::Invalid),
            (409, "BucketNotEmpty", ObjectErrorKind::Invalid),
            (400, "", ObjectErrorKind::Invalid),
        ];
        for (status, code, kind) in table {
            assert_eq!(
                ObjectErrorKind::classify(status, code),
                kind,
                "{status} {code}"
            );
        }
    }

    #[test]
    fn service_errors_display_what_support_needs() {
        let error = ObjectError::Service {
            op: "GetObject",
            resource: "bucket-1250000000/a/b".into(),
            status: 404,
            code: "NoSuchKey".into(),
            message: "The specified key does not exist.".into(),
            request_id: "NjQ1".into(),
        };
        assert_eq!(
            error.to_string(),
            "GetObject bucket-1250000000/a/b: HTTP 404 NoSuchKey: The specified key does not \
             exist. (request id NjQ1)"
        );
        assert_eq!(error.kind(), ObjectErrorKind::NotFound);
        assert_eq!(error.code(), Some("NoSuchKey"));
        assert_eq!(error.request_id(), Some("NjQ1"));
        let head = ObjectError::Service {
            op: "HeadObject",
            resource: "b/k".into(),
            status: 403,
            code: String::new(),
            message: String::new(),
            request_id: String::new(),
        };
        assert_eq!(head.to_string(), "HeadObject b/k: HTTP 403");
        assert_eq!(head.code(), None);
        assert_eq!(head.kind(), ObjectErrorKind::Forbidden);
    }

    #[test]
    fn bulk_delete_failures_take_the_kind_of_their_first_code() {
        let failed = |code: &str| ObjectError::DeleteFailed {
            op: "DeletePrefix",
            resource: "b/p/".into(),
            failed: 2,
            first_key: "p/x".into(),
            first_code: code.into(),
        };
        assert_eq!(failed("AccessDenied").kind(), ObjectErrorKind::Forbidden);
        assert_eq!(failed("InternalError").kind(), ObjectErrorKind::Unavailable);
        assert_eq!(failed("").kind(), ObjectErrorKind::Unavailable);
        assert_eq!(failed("WeirdCode").kind(), ObjectErrorKind::Invalid);
    }
}
