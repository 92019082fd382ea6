//! The TencentCloud API v3 client shared by every driver.
//!
//! It owns the wire protocol (TC3-HMAC-SHA256 signing, JSON envelopes, error codes), retries with
//! jittered backoff bounded by the caller's deadline, and the credentials chain. It never mentions
//! tonic: it returns [`CloudError`], and each driver maps that to a gRPC status in its `error.rs`.
//! Typed calls per service live in submodules (`cvm` here; `cbs`, `cfs` are added by their drivers'
//! issues next to it).

pub mod cbs;
pub mod cfs;
pub mod client;
pub mod credentials;
pub mod cvm;
pub mod error;
pub mod metadata;
pub mod signing;

pub use client::{CloudClient, CloudConfig, RetryPolicy, Service};
pub use credentials::{CredentialSource, Credentials, CredentialsError};
pub use error::{CloudError, ErrorKind};
pub use metadata::MetadataClient;

/// A `ClientToken` for an idempotent create: the same logical request always yields the same token,
/// so a retry after a crash or a lost response never makes a second resource.
pub fn client_token(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    // The cloud caps ClientToken at 64 ASCII characters; 32 hex digits keep us well inside.
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_is_stable_and_separates_parts() {
        assert_eq!(client_token(&["pvc-1"]), client_token(&["pvc-1"]));
        assert_ne!(client_token(&["pvc-1"]), client_token(&["pvc-2"]));
        assert_ne!(client_token(&["ab", "c"]), client_token(&["a", "bc"]));
        assert_eq!(client_token(&["x"]).len(), 32);
    }
}
