//! Where API keys come from: the environment, a mounted secret directory, or the CVM role.
//!
//! Values are trimmed (a trailing newline in a Kubernetes secret broke the old driver's signing).
//! Nothing here ever formats a key or token: the [`Credentials`] they yield (defined in `keys`, and
//! re-exported here) show only the first characters of the SecretId in `Debug`, and errors name
//! files and variables, never their contents.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

pub use crate::keys::Credentials;
use crate::metadata::{MetadataClient, MetadataError};
use crate::time::unix_now;

/// Refresh role credentials when they have less than this many seconds left; keys that live
/// shorter than this are refreshed at [`SHORT_LIFETIME_REFRESH_PERCENT`] of their lifetime instead.
const ROLE_REFRESH_MARGIN_SECS: i64 = 300;
/// When keys whose whole lifetime is under [`ROLE_REFRESH_MARGIN_SECS`] are refreshed: at 80 % of
/// it (60-second keys after 48 s), so they are neither used past expiry nor fetched per request.
const SHORT_LIFETIME_REFRESH_PERCENT: i64 = 80;

/// Whether keys fetched at `fetched_at` that expire at `expires_at` are due for a refresh at
/// `now` (unix seconds): within [`ROLE_REFRESH_MARGIN_SECS`] of expiry, or, for keys that live
/// shorter than that margin, past [`SHORT_LIFETIME_REFRESH_PERCENT`] of their lifetime.
pub fn role_refresh_due(fetched_at: i64, expires_at: i64, now: i64) -> bool {
    now >= role_refresh_at(fetched_at, expires_at)
}

/// The unix second at which keys fetched at `fetched_at`, expiring at `expires_at`, are refreshed.
pub fn role_refresh_at(fetched_at: i64, expires_at: i64) -> i64 {
    let lifetime = expires_at.saturating_sub(fetched_at);
    if lifetime > ROLE_REFRESH_MARGIN_SECS {
        expires_at - ROLE_REFRESH_MARGIN_SECS
    } else {
        fetched_at + lifetime.max(0) * SHORT_LIFETIME_REFRESH_PERCENT / 100
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials directory {}", path.display())]
    UnreadableDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read credentials file {}", path.display())]
    UnreadableFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials directory {} holds no key pair; expected files {expected}", path.display())]
    NoKeysInDir { path: PathBuf, expected: String },
    #[error("{present} is set but {missing} is not")]
    Incomplete { present: String, missing: String },
    #[error("{name} is empty")]
    Empty { name: String },
    #[error("no credentials in the environment or a directory, and the CVM role is unavailable")]
    Role(#[source] MetadataError),
}

/// Names under which a SecretId/SecretKey(/token) triple may be found, in order of preference.
#[derive(Debug, Clone, Copy)]
pub struct KeyNames {
    pub id: &'static str,
    pub key: &'static str,
    pub token: Option<&'static str>,
}

/// The names every driver accepts: the SDK's standard ones, the old drivers' generic ones, and the
/// COS secret's keys. Drivers put their own old names (`TENCENTCLOUD_CBS_API_SECRET_ID`, ...) first.
pub const COMMON_KEY_NAMES: &[KeyNames] = &[
    KeyNames {
        id: "TENCENTCLOUD_SECRET_ID",
        key: "TENCENTCLOUD_SECRET_KEY",
        token: Some("TENCENTCLOUD_SESSION_TOKEN"),
    },
    KeyNames {
        id: "TENCENTCLOUD_API_SECRET_ID",
        key: "TENCENTCLOUD_API_SECRET_KEY",
        token: None,
    },
    KeyNames {
        id: "SecretId",
        key: "SecretKey",
        token: Some("Token"),
    },
];

/// Where the client gets its keys. Chosen once at start-up by [`CredentialSource::discover`].
#[derive(Debug)]
pub enum CredentialSource {
    /// Fixed keys (from the environment, or given by a test).
    Static(Credentials),
    /// A mounted secret directory, re-read whenever one of its files changes.
    Dir(SecretDir),
    /// Temporary keys of the CVM's CAM role, refreshed before they expire.
    Role(RoleCredentials),
}

impl CredentialSource {
    /// The chain: a configured directory wins; then the first complete pair in the environment;
    /// then the CVM role from instance metadata. A directory that cannot be read, or a half-set pair
    /// in the environment, is an error now rather than a signing failure later.
    pub fn discover(
        dir: Option<&Path>,
        names: &[KeyNames],
        env: impl Fn(&str) -> Option<String>,
        metadata: MetadataClient,
    ) -> Result<Self, CredentialsError> {
        if let Some(dir) = dir {
            let source = SecretDir::new(dir, names.to_vec());
            source.current()?;
            return Ok(CredentialSource::Dir(source));
        }
        if let Some(credentials) = from_lookup(names, |name| Ok(env(name)))? {
            return Ok(CredentialSource::Static(credentials));
        }
        Ok(CredentialSource::Role(RoleCredentials::new(metadata, None)))
    }

    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        match self {
            CredentialSource::Static(credentials) => Ok(credentials.clone()),
            CredentialSource::Dir(dir) => dir.current(),
            CredentialSource::Role(role) => role.current().await,
        }
    }
}

/// Finds the first complete pair through `lookup`; a half-set pair is an error.
fn from_lookup(
    names: &[KeyNames],
    lookup: impl Fn(&str) -> Result<Option<String>, CredentialsError>,
) -> Result<Option<Credentials>, CredentialsError> {
    for pair in names {
        let id = lookup(pair.id)?;
        let key = lookup(pair.key)?;
        let (id, key) = match (id, key) {
            (None, None) => continue,
            (Some(id), Some(key)) => (id, key),
            (Some(_), None) => return Err(incomplete(pair.id, pair.key)),
            (None, Some(_)) => return Err(incomplete(pair.key, pair.id)),
        };
        let mut credentials = Credentials::new(&id, &key);
        for (value, name) in [
            (&credentials.secret_id, pair.id),
            (&credentials.secret_key, pair.key),
        ] {
            if value.is_empty() {
                return Err(CredentialsError::Empty {
                    name: name.to_owned(),
                });
            }
        }
        if let Some(token_name) = pair.token {
            credentials.token = lookup(token_name)?
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty());
        }
        return Ok(Some(credentials));
    }
    Ok(None)
}

fn incomplete(present: &str, missing: &str) -> CredentialsError {
    CredentialsError::Incomplete {
        present: present.to_owned(),
        missing: missing.to_owned(),
    }
}

/// A Kubernetes-style secret directory: one file per key. Kubernetes updates such a mount by
/// swapping a symlink, so the file's modification time (following links) tells us to re-read.
#[derive(Debug)]
pub struct SecretDir {
    path: PathBuf,
    names: Vec<KeyNames>,
    cache: Mutex<Option<(Vec<Option<SystemTime>>, Credentials)>>,
}

impl SecretDir {
    pub fn new(path: &Path, names: Vec<KeyNames>) -> Self {
        SecretDir {
            path: path.to_owned(),
            names,
            cache: Mutex::new(None),
        }
    }

    fn fingerprint(&self) -> Result<Vec<Option<SystemTime>>, CredentialsError> {
        std::fs::read_dir(&self.path).map_err(|source| CredentialsError::UnreadableDir {
            path: self.path.clone(),
            source,
        })?;
        let mut stamps = Vec::new();
        for pair in &self.names {
            for name in [Some(pair.id), Some(pair.key), pair.token]
                .into_iter()
                .flatten()
            {
                stamps.push(
                    std::fs::metadata(self.path.join(name))
                        .and_then(|m| m.modified())
                        .ok(),
                );
            }
        }
        Ok(stamps)
    }

    pub fn current(&self) -> Result<Credentials, CredentialsError> {
        let stamps = self.fingerprint()?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_stamps, credentials)) = cache.as_ref()
            && *cached_stamps == stamps
        {
            return Ok(credentials.clone());
        }
        let read = |name: &str| {
            let path = self.path.join(name);
            match std::fs::read_to_string(&path) {
                Ok(value) => Ok(Some(value)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(CredentialsError::UnreadableFile { path, source }),
            }
        };
        let credentials =
            from_lookup(&self.names, read)?.ok_or_else(|| CredentialsError::NoKeysInDir {
                path: self.path.clone(),
                expected: self
                    .names
                    .iter()
                    .map(|n| format!("{}+{}", n.id, n.key))
                    .collect::<Vec<_>>()
                    .join(" or "),
            })?;
        *cache = Some((stamps, credentials.clone()));
        Ok(credentials)
    }
}

/// Temporary keys of the instance's CAM role, from `cam/security-credentials/<role>`.
#[derive(Debug)]
pub struct RoleCredentials {
    metadata: MetadataClient,
    role: Option<String>,
    /// The keys and when they were fetched (unix seconds).
    cache: tokio::sync::Mutex<Option<(Credentials, i64)>>,
}

impl RoleCredentials {
    /// `role` None means: use the first role the metadata service lists.
    pub fn new(metadata: MetadataClient, role: Option<String>) -> Self {
        RoleCredentials {
            metadata,
            role,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn current(&self) -> Result<Credentials, CredentialsError> {
        let mut cache = self.cache.lock().await;
        if let Some((credentials, fetched_at)) = cache.as_ref()
            && credentials
                .expires_at
                .is_some_and(|expiry| !role_refresh_due(*fetched_at, expiry, unix_now()))
        {
            return Ok(credentials.clone());
        }
        let role = match &self.role {
            Some(role) => role.clone(),
            None => self
                .metadata
                .cam_role()
                .await
                .map_err(CredentialsError::Role)?,
        };
        let fetched_at = unix_now();
        let fresh = self
            .metadata
            .role_credentials(&role)
            .await
            .map_err(CredentialsError::Role)?;
        *cache = Some((fresh.clone(), fetched_at));
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CBS_NAMES: KeyNames = KeyNames {
        id: "TENCENTCLOUD_CBS_API_SECRET_ID",
        key: "TENCENTCLOUD_CBS_API_SECRET_KEY",
        token: None,
    };

    fn names() -> Vec<KeyNames> {
        let mut names = vec![CBS_NAMES];
        names.extend_from_slice(COMMON_KEY_NAMES);
        names
    }

    fn unreachable_metadata() -> MetadataClient {
        MetadataClient::new("http://127.0.0.1:9").expect("client")
    }

    fn discover_env(vars: &[(&str, &str)]) -> Result<CredentialSource, CredentialsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CredentialSource::discover(
            None,
            &names(),
            |n| map.get(n).cloned(),
            unreachable_metadata(),
        )
    }

    #[test]
    fn environment_old_driver_names_and_trimming() {
        let source = discover_env(&[
            ("TENCENTCLOUD_CBS_API_SECRET_ID", " AKIDcbs\n"),
            ("TENCENTCLOUD_CBS_API_SECRET_KEY", "cbskey\n"),
            ("TENCENTCLOUD_SECRET_ID", "other"),
            ("TENCENTCLOUD_SECRET_KEY", "other"),
        ])
        .unwrap();
        let CredentialSource::Static(c) = source else {
            panic!("expected static")
        };
        assert_eq!(
            (c.secret_id.as_str(), c.secret_key.as_str()),
            ("AKIDcbs", "cbskey")
        );
    }

    #[test]
    fn environment_token_and_half_pairs() {
        let CredentialSource::Static(c) = discover_env(&[
            ("TENCENTCLOUD_SECRET_ID", "id"),
            ("TENCENTCLOUD_SECRET_KEY", "key"),
            ("TENCENTCLOUD_SESSION_TOKEN", "tok\n"),
        ])
        .unwrap() else {
            panic!("expected static")
        };
        assert_eq!(c.token.as_deref(), Some("tok"));
        let err = discover_env(&[("TENCENTCLOUD_API_SECRET_ID", "id")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TENCENTCLOUD_API_SECRET_ID is set but TENCENTCLOUD_API_SECRET_KEY is not"
        );
        let err = discover_env(&[("SecretId", "id"), ("SecretKey", " \n")]).unwrap_err();
        assert_eq!(err.to_string(), "SecretKey is empty");
    }

    #[test]
    fn role_keys_are_refreshed_before_expiry_and_not_on_every_request() {
        // Hour-long keys: five minutes before expiry.
        assert_eq!(role_refresh_at(1000, 4600), 4300);
        assert!(!role_refresh_due(1000, 4600, 4299));
        assert!(role_refresh_due(1000, 4600, 4300));
        // 60-second keys (the simulator's --role-key-ttl-secs 60): after 48 s, not at once.
        assert_eq!(role_refresh_at(1000, 1060), 1048);
        assert!(!role_refresh_due(1000, 1060, 1001));
        assert!(!role_refresh_due(1000, 1060, 1047));
        assert!(role_refresh_due(1000, 1060, 1048));
        // Exactly the margin long: still the short rule, which refreshes before expiry.
        assert_eq!(role_refresh_at(0, 300), 240);
        // Expired on arrival (a skewed clock): due at once.
        assert!(role_refresh_due(1000, 990, 1000));
    }

    #[test]
    fn no_environment_falls_back_to_role() {
        assert!(matches!(
            discover_env(&[]).unwrap(),
            CredentialSource::Role(_)
        ));
    }

    #[test]
    fn directory_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("SecretId"), "id-1\n").unwrap();
        std::fs::write(dir.path().join("SecretKey"), "key-1\n").unwrap();
        let source = CredentialSource::discover(
            Some(dir.path()),
            &names(),
            |_| None,
            unreachable_metadata(),
        )
        .unwrap();
        let CredentialSource::Dir(secret_dir) = &source else {
            panic!("expected dir")
        };
        assert_eq!(secret_dir.current().unwrap().secret_key, "key-1");
        // Rotate the way kubelet does: new files, new modification times.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("SecretKey"), "key-2").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("SecretKey"))
            .unwrap();
        file.set_modified(later).unwrap();
        assert_eq!(secret_dir.current().unwrap().secret_key, "key-2");
    }

    #[test]
    fn unreadable_or_empty_directory_is_a_clear_error() {
        let err = CredentialSource::discover(
            Some(Path::new("/nonexistent/creds")),
            &names(),
            |_| None,
            unreachable_metadata(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read credentials directory /nonexistent/creds"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = CredentialSource::discover(
            Some(dir.path()),
            &names(),
            |_| None,
            unreachable_metadata(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("holds no key pair"), "{err}");
    }
}
