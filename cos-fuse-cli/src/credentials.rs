//! Where `cos-fuse` finds its keys: handed over (the FUSE host's JSON on standard input, or
//! `--credentials-file`), or, as cosfs and the drivers find them, through the chain:
//! `-o passwd_file=`, the environment (`COS_SECRET_ID`/`COS_SECRET_KEY`/`COS_SESSION_TOKEN`, then
//! the names of tcloud's chain), `$HOME/.passwd-cosfs`, `/etc/passwd-cosfs`, then the CVM's CAM
//! role from instance metadata (tcloud's `RoleCredentials`, refreshed before expiry).
//!
//! It reads files and the environment and returns keys; it never logs or formats a key, and its
//! errors name files and variables, never their contents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cos_client::{ObjectClient, ObjectCredentials};
use tcloud::credentials::{COMMON_KEY_NAMES, KeyNames};
use tcloud::{CredentialSource, MetadataClient};

/// cosfs's passwd file in the home directory, and the system-wide one.
pub const HOME_PASSWD_FILE: &str = ".passwd-cosfs";
pub const SYSTEM_PASSWD_FILE: &str = "/etc/passwd-cosfs";

/// The environment names `cos-fuse` looks at first; then tcloud's [`COMMON_KEY_NAMES`].
pub const COS_KEY_NAMES: KeyNames = KeyNames {
    id: "COS_SECRET_ID",
    key: "COS_SECRET_KEY",
    token: Some("COS_SESSION_TOKEN"),
};

/// How often the role's keys are looked at; tcloud fetches new ones 5 minutes before expiry.
const ROLE_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Keys as the FUSE host hands them over (JSON).
#[derive(serde::Deserialize)]
struct JsonKeys {
    #[serde(rename = "SecretId")]
    secret_id: String,
    #[serde(rename = "SecretKey")]
    secret_key: String,
    #[serde(rename = "Token", default)]
    token: Option<String>,
}

/// Where the mount's keys come from.
#[derive(Debug)]
pub enum Keys {
    /// Fixed keys.
    Fixed(ObjectCredentials),
    /// The CVM role's temporary keys, refreshed before they expire.
    Role(CredentialSource),
}

/// What the chain looks at; the environment and the files are passed in so tests choose them.
pub struct ChainParams<'a> {
    pub bucket: &'a str,
    /// `-o passwd_file=`: read first.
    pub passwd_file: Option<&'a Path>,
    /// The home directory (`$HOME`, else the user's entry), for `.passwd-cosfs`.
    pub home: Option<PathBuf>,
    /// `/etc/passwd-cosfs` (a test points it elsewhere).
    pub system_file: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub metadata_endpoint: &'a str,
}

/// The chain: `passwd_file`, the environment, the home and system passwd files, the CVM role.
/// A file found with loose permissions, or a half-set pair in the environment, is an error
/// rather than a fall through to the next source.
pub fn discover(params: &ChainParams<'_>) -> Result<Keys, String> {
    if let Some(path) = params.passwd_file {
        return read_passwd_file(path, params.bucket).map(Keys::Fixed);
    }
    let mut names = vec![COS_KEY_NAMES];
    names.extend_from_slice(COMMON_KEY_NAMES);
    let metadata = MetadataClient::new(params.metadata_endpoint).map_err(|e| {
        format!(
            "cannot make a client of the metadata service {}: {e}",
            params.metadata_endpoint
        )
    })?;
    let source = CredentialSource::discover(None, &names, params.env, metadata)
        .map_err(|e| format!("credentials in the environment: {e}"))?;
    if let CredentialSource::Static(keys) = &source {
        return Ok(Keys::Fixed(object_credentials(keys)));
    }
    let home = params.home.as_ref().map(|h| h.join(HOME_PASSWD_FILE));
    for path in home
        .iter()
        .map(PathBuf::as_path)
        .chain([params.system_file])
    {
        if path.exists() {
            return read_passwd_file(path, params.bucket).map(Keys::Fixed);
        }
    }
    Ok(Keys::Role(source))
}

/// The home directory: `$HOME`, else the user's entry (mount(8) runs helpers without `HOME`).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// The keys of a cosfs passwd file, refused when group or others may read it.
pub fn read_passwd_file(path: &Path, bucket: &str) -> Result<ObjectCredentials, String> {
    let text = read_private_file(path)?;
    parse_passwd(&text, bucket).map_err(|e| format!("{}: {e}", path.display()))
}

/// A file only its owner may read, as text.
pub fn read_private_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} may be read by group or others (mode {:o}): chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A cosfs passwd file: `bucket:SecretId:SecretKey` lines, or a `SecretId:SecretKey` line for
/// every bucket; the bucket's own line wins. `#` starts a comment line.
pub fn parse_passwd(text: &str, bucket: &str) -> Result<ObjectCredentials, String> {
    let mut general = None;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match line.split(':').collect::<Vec<_>>().as_slice() {
            [b, id, key] if *b == bucket => return keys(id, key, None),
            [_, _, _] => {}
            [id, key] => {
                general.get_or_insert((*id, *key));
            }
            _ => {
                return Err(
                    "a line is not `bucket:SecretId:SecretKey` or `SecretId:SecretKey`".into(),
                );
            }
        }
    }
    let (id, key) = general
        .ok_or_else(|| format!("no `{bucket}:SecretId:SecretKey` or `SecretId:SecretKey` line"))?;
    keys(id, key, None)
}

/// Keys handed over: the FUSE host's JSON `{"SecretId", "SecretKey", "Token"}`, or a passwd line.
pub fn parse_handed_over(text: &str, bucket: &str) -> Result<ObjectCredentials, String> {
    let text = text.trim();
    if !text.starts_with('{') {
        return parse_passwd(text, bucket);
    }
    let json = serde_json::from_str::<JsonKeys>(text)
        .map_err(|e| format!("the credentials are not the expected JSON: {e}"))?;
    keys(&json.secret_id, &json.secret_key, json.token.as_deref())
}

fn keys(id: &str, key: &str, token: Option<&str>) -> Result<ObjectCredentials, String> {
    if id.trim().is_empty() || key.trim().is_empty() {
        return Err("the credentials hold an empty SecretId or SecretKey".into());
    }
    Ok(ObjectCredentials::new(id, key, token))
}

fn object_credentials(keys: &tcloud::Credentials) -> ObjectCredentials {
    ObjectCredentials::new(&keys.secret_id, &keys.secret_key, keys.token.as_deref())
}

impl Keys {
    /// The keys to start with (the role's are fetched now).
    pub async fn current(&self) -> Result<ObjectCredentials, String> {
        match self {
            Keys::Fixed(keys) => Ok(keys.clone()),
            Keys::Role(source) => source
                .get()
                .await
                .map(|k| object_credentials(&k))
                .map_err(|e| csi_common::csi::error_chain(&e)),
        }
    }

    /// With the role's keys, hands the client fresh ones before the old ones expire, for as long
    /// as the runtime runs. Fixed keys need nothing.
    pub fn keep_fresh(self, client: ObjectClient, rt: &tokio::runtime::Runtime) {
        let Keys::Role(source) = self else {
            return;
        };
        rt.spawn(async move {
            loop {
                tokio::time::sleep(ROLE_CHECK_INTERVAL).await;
                match source.get().await {
                    Ok(keys) => client.set_credentials(object_credentials(&keys)),
                    Err(e) => tracing::warn!(
                        error = %csi_common::csi::error_chain(&e),
                        "cannot refresh the CVM role's keys; the current ones are kept"
                    ),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn passwd_lines_by_bucket_or_for_all() {
        let text = "# keys\nAKIDall:keyall\nother-1:X:Y\nb-1:AKIDb:keyb\n";
        assert_eq!(parse_passwd(text, "b-1").unwrap().secret_id, "AKIDb");
        assert_eq!(parse_passwd(text, "c-1").unwrap().secret_id, "AKIDall");
        assert_eq!(
            parse_passwd("AKID3:key3\n", "b").unwrap().secret_key,
            "key3"
        );
        assert!(parse_passwd("other:X:Y\n", "b").is_err());
        assert!(parse_passwd("a:b:c:d\n", "b").is_err());
        assert!(parse_passwd("b: :k\n", "b").is_err());
        assert!(parse_passwd("", "b").is_err());
        let json =
            parse_handed_over(r#"{"SecretId":"AKID","SecretKey":"k","Token":"t"}"#, "b").unwrap();
        assert_eq!(
            (json.secret_id.as_str(), json.token.as_deref()),
            ("AKID", Some("t"))
        );
        assert!(parse_handed_over(r#"{"SecretId":"","SecretKey":"k"}"#, "b").is_err());
        assert_eq!(
            parse_handed_over("b:AKIDp:k", "b").unwrap().secret_id,
            "AKIDp"
        );
    }

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_passwd_file_others_may_read_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let private = file(dir.path(), "ok", "id:s3cr3t\n", 0o600);
        assert_eq!(read_passwd_file(&private, "b").unwrap().secret_id, "id");
        let loose = file(dir.path(), "loose", "id:s3cr3t\n", 0o644);
        let err = read_passwd_file(&loose, "b").unwrap_err();
        assert!(
            err.contains(&loose.display().to_string()) && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "no secret in {err}");
        let group = file(dir.path(), "group", "id:s3cr3t\n", 0o640);
        assert!(read_passwd_file(&group, "b").is_err());
    }

    fn chain(
        vars: &[(&str, &str)],
        home: Option<PathBuf>,
        system: &Path,
        passwd_file: Option<&Path>,
    ) -> Result<Keys, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| map.get(name).cloned();
        discover(&ChainParams {
            bucket: "b-1",
            passwd_file,
            home,
            system_file: system,
            env: &env,
            metadata_endpoint: "http://127.0.0.1:9",
        })
    }

    fn fixed_id(keys: Result<Keys, String>) -> String {
        match keys {
            Ok(Keys::Fixed(k)) => k.secret_id,
            other => panic!("expected fixed keys, got {other:?}"),
        }
    }

    #[test]
    fn the_chain_goes_environment_home_system_role() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let system = file(dir.path(), "passwd-cosfs", "b-1:AKIDsys:k\n", 0o600);
        let missing = dir.path().join("none");
        let env = [("COS_SECRET_ID", "AKIDenv"), ("COS_SECRET_KEY", "k")];
        file(&home, HOME_PASSWD_FILE, "AKIDhome:k\n", 0o600);
        assert_eq!(
            fixed_id(chain(&env, Some(home.clone()), &system, None)),
            "AKIDenv"
        );
        let tencent = [
            ("TENCENTCLOUD_SECRET_ID", "AKIDtc"),
            ("TENCENTCLOUD_SECRET_KEY", "k"),
        ];
        assert_eq!(fixed_id(chain(&tencent, None, &missing, None)), "AKIDtc");
        assert_eq!(
            fixed_id(chain(&[], Some(home.clone()), &system, None)),
            "AKIDhome"
        );
        assert_eq!(fixed_id(chain(&[], None, &system, None)), "AKIDsys");
        let explicit = file(dir.path(), "mine", "AKIDmine:k\n", 0o600);
        assert_eq!(
            fixed_id(chain(&env, None, &system, Some(&explicit))),
            "AKIDmine"
        );
        assert!(matches!(
            chain(&[], None, &missing, None),
            Ok(Keys::Role(_))
        ));
        // A half-set pair, or a loose file, stops the chain with an error.
        assert!(chain(&[("COS_SECRET_ID", "x")], None, &system, None).is_err());
        file(&home, HOME_PASSWD_FILE, "AKIDhome:k\n", 0o644);
        let err = chain(&[], Some(home), &system, None).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
