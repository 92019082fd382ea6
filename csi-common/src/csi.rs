//! The CSI side shared by all drivers: the gRPC server bootstrap, one logging layer for every RPC,
//! in-flight guards, the identity service, the one error type and its code map ([`error`]), the
//! request rules ([`request`]), and helpers to build replies ([`reply`]).
//!
//! This module owns transport concerns only; it must not know any driver's storage.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod identity;
pub mod inflight;
pub mod reply;
pub mod request;
pub mod rpclog;
pub mod server;

pub use client::connect_unix;
pub use csi_proto::v1 as pb;
pub use endpoint::{Endpoint, EndpointError};
pub use error::{CsiError, CsiResult, cloud_code, io, mount_code, required};
pub use identity::{IdentityService, PluginCaps};
pub use inflight::{InFlight, InFlightGuard};
pub use server::{ServeError, serve, shutdown_signal};

use std::error::Error as StdError;
use std::time::Duration;

/// A status whose message carries the error and its whole cause chain, `a: b: c`.
pub fn status_with_chain(code: tonic::Code, error: &(dyn StdError + 'static)) -> tonic::Status {
    tonic::Status::new(code, error_chain(error))
}

/// `error: cause: cause ...`, skipping causes whose text the previous message already contains.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The caller's deadline from the `grpc-timeout` header, as a tokio instant.
pub fn deadline<T>(request: &tonic::Request<T>) -> Option<tokio::time::Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(value).map(|timeout| tokio::time::Instant::now() + timeout)
}

/// Parses the gRPC `TimeoutValue TimeoutUnit` wire form, e.g. `10S`, `500m`, `2H`.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "10", "10X", "-1S", "1234567890S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_carries_every_cause() {
        let err = Outer(std::io::Error::other("inner cause"));
        let status = status_with_chain(tonic::Code::Internal, &err);
        assert_eq!(status.message(), "outer: inner cause");
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
