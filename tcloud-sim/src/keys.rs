//! The keys the simulator accepts: the configured `SecretId SecretKey` pairs and the CAM role's
//! temporary keys handed out by the metadata service (kept in the state). Both front doors, the
//! TC3-signed cloud API and the SigV4-signed COS endpoint, ask this one place. It never logs a key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::error::ApiError;
use crate::state::{Store, unix_now};

/// Why a key was refused, in the cloud API's terms (each front door maps it to its own codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No configured key and no temporary key has this ID.
    Unknown,
    /// A temporary key past its expiry.
    Expired,
    /// A temporary key used without its token, or with another one.
    TokenMismatch,
}

impl KeyRefusal {
    pub fn to_api_error(self) -> ApiError {
        match self {
            KeyRefusal::Unknown => {
                ApiError::new("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
            }
            KeyRefusal::Expired => {
                ApiError::new("AuthFailure.TokenFailure", "The temporary key has expired.")
            }
            KeyRefusal::TokenMismatch => ApiError::new(
                "AuthFailure.TokenFailure",
                "X-TC-Token is missing or does not match the key.",
            ),
        }
    }
}

/// How often the keys file is looked at for a change.
const RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// Accepted keys.
#[derive(Debug)]
pub struct Keys {
    configured: Mutex<Configured>,
    store: Arc<Store>,
}

/// The configured pairs, and the file they are re-read from when it changes (a test rotates
/// keys by rewriting it).
#[derive(Debug)]
struct Configured {
    keys: HashMap<String, String>,
    file: Option<(PathBuf, Option<SystemTime>, Instant)>,
}

impl Keys {
    pub fn new(configured: HashMap<String, String>, store: Arc<Store>) -> Self {
        Keys {
            configured: Mutex::new(Configured {
                keys: configured,
                file: None,
            }),
            store,
        }
    }

    /// Reads a keys file: one `SecretId SecretKey` pair per line, `#` starts a comment. The file
    /// is read again when it changes (looked at twice a second at most); a changed file that
    /// cannot be read leaves the keys as they were.
    pub fn read_file(path: &Path, store: Arc<Store>) -> anyhow::Result<Self> {
        let keys = Keys::new(parse_file(path)?, store);
        let stamp = modified(path);
        keys.lock().file = Some((path.to_owned(), stamp, Instant::now()));
        Ok(keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Configured> {
        self.configured.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configured secret key of `secret_id`, from the keys file as it is now.
    fn configured(&self, secret_id: &str) -> Option<String> {
        let mut c = self.lock();
        if let Some((path, stamp, checked)) = &mut c.file
            && checked.elapsed() >= RELOAD_INTERVAL
        {
            *checked = Instant::now();
            let now = modified(path);
            if now != *stamp {
                *stamp = now;
                match parse_file(path) {
                    Ok(keys) => c.keys = keys,
                    Err(e) => tracing::warn!(error = %e, "the changed keys file is not used"),
                }
            }
        }
        c.keys.get(secret_id).cloned()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The pairs of a keys file.
fn parse_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --keys-file {}", path.display()))?;
    let mut keys = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(id), Some(key), None) => keys.insert(id.to_owned(), key.to_owned()),
            _ => anyhow::bail!(
                "{} line {}: expected `SecretId SecretKey`",
                path.display(),
                number + 1
            ),
        };
    }
    anyhow::ensure!(
        !keys.is_empty(),
        "--keys-file {} holds no keys",
        path.display()
    );
    Ok(keys)
}

impl Keys {
    /// The secret key of `secret_id` for checking a signature. A temporary key must also pass
    /// [`Keys::check_token`]; this only refuses unknown and expired ones.
    pub fn signing_key(&self, secret_id: &str) -> Result<String, KeyRefusal> {
        if let Some(key) = self.configured(secret_id) {
            return Ok(key);
        }
        let temp = self.store.read(|s| {
            s.temp_keys
                .iter()
                .find(|k| k.secret_id == secret_id)
                .map(|k| (k.secret_key.clone(), k.expires_at))
        });
        match temp {
            None => Err(KeyRefusal::Unknown),
            Some((_, expires_at)) if expires_at <= unix_now() => Err(KeyRefusal::Expired),
            Some((key, _)) => Ok(key),
        }
    }

    /// Whether `token` is the one `secret_id` needs: none for a configured key, its own for a
    /// temporary key.
    pub fn check_token(&self, secret_id: &str, token: Option<&str>) -> Result<(), KeyRefusal> {
        if self.configured(secret_id).is_some() {
            return Ok(());
        }
        let expected = self.store.read(|s| {
            s.temp_keys
                .iter()
                .find(|k| k.secret_id == secret_id)
                .map(|k| (k.token.clone(), k.expires_at))
        });
        match expected {
            None => Err(KeyRefusal::Unknown),
            Some((_, expires_at)) if expires_at <= unix_now() => Err(KeyRefusal::Expired),
            Some((expected, _)) if token == Some(expected.as_str()) => Ok(()),
            Some(_) => Err(KeyRefusal::TokenMismatch),
        }
    }

    /// The secret key for `secret_id` presented with `token`: a configured key, or a role's
    /// temporary key with its token.
    pub fn secret_key_for(
        &self,
        secret_id: &str,
        token: Option<&str>,
    ) -> Result<String, KeyRefusal> {
        let key = self.signing_key(secret_id)?;
        self.check_token(secret_id, token)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TempKey;

    fn keys_with_temp(expires_at: i64) -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store
            .update(|s| {
                s.temp_keys.push(TempKey {
                    secret_id: "tmp-id".into(),
                    secret_key: "tmp-key".into(),
                    token: "tok".into(),
                    expires_at,
                    instance_id: "ins-1".into(),
                })
            })
            .unwrap();
        let configured = HashMap::from([("AKID".to_owned(), "secret".to_owned())]);
        (dir, Keys::new(configured, store))
    }

    #[test]
    fn configured_and_temporary_keys() {
        let (_dir, keys) = keys_with_temp(unix_now() + 600);
        assert_eq!(keys.secret_key_for("AKID", None).unwrap(), "secret");
        assert_eq!(
            keys.secret_key_for("tmp-id", Some("tok")).unwrap(),
            "tmp-key"
        );
        assert_eq!(
            keys.secret_key_for("tmp-id", None),
            Err(KeyRefusal::TokenMismatch)
        );
        assert_eq!(
            keys.secret_key_for("tmp-id", Some("other")),
            Err(KeyRefusal::TokenMismatch)
        );
        assert_eq!(keys.signing_key("nobody"), Err(KeyRefusal::Unknown));
    }

    #[test]
    fn expired_temporary_keys_are_refused() {
        let (_dir, keys) = keys_with_temp(unix_now() - 1);
        assert_eq!(keys.signing_key("tmp-id"), Err(KeyRefusal::Expired));
        assert_eq!(
            keys.check_token("tmp-id", Some("tok")),
            Err(KeyRefusal::Expired)
        );
    }
}
