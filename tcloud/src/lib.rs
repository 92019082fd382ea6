//! `tcloud`: the TencentCloud API v3 client shared by every driver. It knows no CSI.
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
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod https;
mod keys;
pub mod metadata;
pub mod signing;
pub mod time;

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

/// A resource name the cloud accepts (at most `max` bytes) for a CSI name of any length (CSI
/// names are idempotency keys of up to 128 bytes). A name that fits is kept as it is, so resources
/// made before this rule are still found by name; a longer one becomes its first bytes, `-`, and
/// 16 hex digits of its SHA-256, the same every time. The caller keeps the whole name findable
/// (a tag) and compares it when a shortened name is found.
pub fn short_name(name: &str, max: usize) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    const HASH_HEX: usize = 16;
    if name.len() <= max {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut keep = max.saturating_sub(HASH_HEX + 1);
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let digest = Sha256::digest(name.as_bytes());
    std::borrow::Cow::Owned(format!(
        "{}-{}",
        &name[..keep],
        &hex::encode(digest)[..HASH_HEX]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_keep_what_fits_and_hash_the_rest() {
        assert_eq!(short_name("pvc-1234", 60), "pvc-1234");
        let sixty = "a".repeat(60);
        assert_eq!(short_name(&sixty, 60), sixty.as_str());
        let long = format!("{}x", "a".repeat(127));
        let short = short_name(&long, 60);
        assert_eq!(short.len(), 60);
        assert!(short.starts_with(&"a".repeat(43)), "{short}");
        assert_eq!(short, short_name(&long, 60), "the same every time");
        let other = format!("{}y", "a".repeat(127));
        assert_ne!(
            short,
            short_name(&other, 60),
            "names differing at the end differ"
        );
        // Multi-byte characters are never cut in half.
        let wide = "卷".repeat(40);
        let short = short_name(&wide, 60);
        assert!(short.len() <= 60, "{short}");
        assert!(short.starts_with("卷"));
    }

    #[test]
    fn client_token_is_stable_and_separates_parts() {
        assert_eq!(client_token(&["pvc-1"]), client_token(&["pvc-1"]));
        assert_ne!(client_token(&["pvc-1"]), client_token(&["pvc-2"]));
        assert_ne!(client_token(&["ab", "c"]), client_token(&["a", "bc"]));
        assert_eq!(client_token(&["x"]).len(), 32);
    }
}
