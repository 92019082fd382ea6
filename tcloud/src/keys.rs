//! One set of API keys, [`Credentials`]: the value every credential source yields, the metadata
//! service's CAM role answer becomes, and the client signs with.
//!
//! It owns the trimming of keys and a `Debug` that shows only the first characters of the
//! SecretId. It does no I/O and knows no source: where keys come from is `credentials`.

use std::fmt;

/// One set of API keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: String,
    /// Session token of temporary keys, sent as `X-TC-Token`.
    pub token: Option<String>,
    /// Unix time when temporary keys expire.
    pub expires_at: Option<i64>,
}

impl Credentials {
    pub fn new(secret_id: &str, secret_key: &str) -> Self {
        Credentials {
            secret_id: secret_id.trim().to_owned(),
            secret_key: secret_key.trim().to_owned(),
            token: None,
            expires_at: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.secret_id.chars().take(4).collect();
        f.debug_struct("Credentials")
            .field("secret_id", &format_args!("{shown}***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_keys() {
        let mut c = Credentials::new("AKIDsecretid", "topsecretkey");
        c.token = Some("topsecrettoken".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(!shown.contains("AKIDsecretid"), "{shown}");
    }
}
