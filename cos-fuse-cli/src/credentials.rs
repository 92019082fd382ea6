//! Where `cos-fuse` finds its keys: handed over (the FUSE host's JSON on standard input, or
//! `--credentials-file`, re-read when it changes: the host rewrites it when a rotated publish
//! secret arrives), the CVM role when told so (`--credentials-role`, the node plugin's choice for
//! a PV without a publish secret), or, as cosfs and the drivers find them, through the chain:
//! `-o passwd_file=`, the environment (`COS_SECRET_ID`/`COS_SECRET_KEY`/`COS_SESSION_TOKEN`, then
//! the names of tcloud's chain), `$HOME/.passwd-cosfs`, `/etc/passwd-cosfs`, then the CVM's CAM
//! role from instance metadata (tcloud's `RoleCredentials`, refreshed before expiry).
//!
//! It reads files and the environment and returns keys; it never logs or formats a key, and its
//! errors name files and variables, never their contents.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cos_client::{AuthWatch, ObjectClient, ObjectCredentials};
use tcloud::credentials::{COMMON_KEY_NAMES, KeyNames, RoleCredentials};
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

/// The longest wait between two looks at the role's keys; tcloud fetches new ones 5 minutes
/// before expiry (short-lived ones at 80 % of their lifetime), and the looks come closer as the
/// expiry nears ([`role_wait`]).
const ROLE_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest wait between two looks at the keys (after an authentication failure too).
const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a `--credentials-file` is looked at (a stat; it is read only when it changed).
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(3);

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
    /// A file the keys are handed over in, re-read when it changes.
    File(KeyFile),
}

/// The CVM role's keys, and nothing else of the chain (`--credentials-role`): a key in the
/// environment or a passwd file on the node must not stand in for the role by accident.
pub fn role(metadata_endpoint: &str) -> Result<Keys, String> {
    let metadata = MetadataClient::new(metadata_endpoint).map_err(|e| {
        format!("cannot make a client of the metadata service {metadata_endpoint}: {e}")
    })?;
    Ok(Keys::Role(CredentialSource::Role(RoleCredentials::new(
        metadata, None,
    ))))
}

/// What tells a file changed: a rename gives a new inode, a rewrite a new time or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        inode: m.ino(),
        size: m.size(),
        modified: (m.mtime(), m.mtime_nsec()),
        changed: (m.ctime(), m.ctime_nsec()),
    })
}

/// A file of keys (the FUSE host's JSON, or a passwd line), re-read when it changes.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    bucket: String,
    /// The file as it was when last read.
    read: Mutex<Option<FileStamp>>,
}

impl KeyFile {
    /// The file at `path`, read now: a missing, loose or malformed file is an error naming it.
    pub fn open(path: &Path, bucket: &str) -> Result<(KeyFile, ObjectCredentials), String> {
        let file = KeyFile {
            path: path.to_owned(),
            bucket: bucket.to_owned(),
            read: Mutex::new(None),
        };
        let keys = file.read()?;
        Ok((file, keys))
    }

    fn read(&self) -> Result<ObjectCredentials, String> {
        let before = stamp(&self.path);
        let text = read_private_file(&self.path)?;
        let keys = parse_handed_over(&text, &self.bucket)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        *self.read.lock().unwrap_or_else(|p| p.into_inner()) = before;
        Ok(keys)
    }

    /// The keys, when the file changed since it was last read; `None` when it did not.
    pub fn changed(&self) -> Result<Option<ObjectCredentials>, String> {
        let now = stamp(&self.path);
        // Gone (the host removes it when the mount is unpublished, before the daemon exits):
        // the current keys stay.
        if now.is_none() || now == *self.read.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(None);
        }
        self.read().map(Some)
    }
}

/// How long to wait before looking at role keys that expire at `expires_at` again, at `now`
/// (unix seconds): a fifth of what is left, between [`MIN_CHECK_INTERVAL`] and
/// [`ROLE_CHECK_INTERVAL`]. The look costs nothing until tcloud finds the keys due.
pub fn role_wait(expires_at: Option<i64>, now: i64) -> Duration {
    let Some(expires_at) = expires_at else {
        return ROLE_CHECK_INTERVAL;
    };
    let left = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
    Duration::from_secs(left / 5).clamp(MIN_CHECK_INTERVAL, ROLE_CHECK_INTERVAL)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Waits `wait`, or less when a request is refused for its credentials; never less than
/// [`MIN_CHECK_INTERVAL`] since `last` (a stream of refusals must not spin).
async fn wait_or_refused(wait: Duration, auth: &AuthWatch, last: tokio::time::Instant) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = auth.failed() => {
            tokio::time::sleep_until(last + MIN_CHECK_INTERVAL).await;
        }
    }
}

/// Keeps the role's keys fresh in `set`, looking again as expiry nears or a request is refused.
async fn refresh_role(
    source: CredentialSource,
    set: impl Fn(ObjectCredentials),
    auth: Arc<AuthWatch>,
) {
    loop {
        let last = tokio::time::Instant::now();
        let wait = match source.get().await {
            Ok(keys) => {
                let wait = role_wait(keys.expires_at, unix_now());
                set(object_credentials(&keys));
                wait
            }
            Err(e) => {
                tracing::warn!(
                    error = %csi_common::csi::error_chain(&e),
                    "cannot refresh the CVM role's keys; the current ones are kept"
                );
                MIN_CHECK_INTERVAL * 5
            }
        };
        wait_or_refused(wait, &auth, last).await;
    }
}

/// Hands `set` the keys of `file` whenever it changes: looked at every `interval`, and at once
/// when a request is refused for its credentials.
pub async fn watch_file(
    file: KeyFile,
    set: impl Fn(ObjectCredentials),
    auth: Arc<AuthWatch>,
    interval: Duration,
) {
    loop {
        let last = tokio::time::Instant::now();
        wait_or_refused(interval, &auth, last).await;
        match file.changed() {
            Ok(Some(keys)) => {
                set(keys);
                tracing::info!(path = %file.path.display(), "the credentials file changed: using its keys");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the credentials file; the current keys are kept")
            }
        }
    }
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
            Keys::File(file) => file.read(),
            Keys::Role(source) => source
                .get()
                .await
                .map(|k| object_credentials(&k))
                .map_err(|e| csi_common::csi::error_chain(&e)),
        }
    }

    /// With the role's keys, hands the client fresh ones before the old ones expire; with a
    /// credentials file, its new keys when it changes; for as long as the runtime runs. Both look
    /// again at once when a request is refused for its credentials. Fixed keys need nothing.
    pub fn keep_fresh(self, client: ObjectClient, rt: &tokio::runtime::Runtime) {
        let auth = client.auth_watch();
        let set = move |keys: ObjectCredentials| client.set_credentials(keys);
        match self {
            Keys::Fixed(_) => {}
            Keys::Role(source) => {
                rt.spawn(refresh_role(source, set, auth));
            }
            Keys::File(file) => {
                rt.spawn(watch_file(file, set, auth, FILE_CHECK_INTERVAL));
            }
        }
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
    fn role_keys_are_looked_at_more_often_as_expiry_nears() {
        assert_eq!(role_wait(None, 0), ROLE_CHECK_INTERVAL);
        assert_eq!(role_wait(Some(3600), 0), ROLE_CHECK_INTERVAL);
        // 60-second keys: looked at after 12 s, then closer; tcloud refreshes them at 48 s.
        assert_eq!(role_wait(Some(60), 0), Duration::from_secs(12));
        assert_eq!(role_wait(Some(60), 48), Duration::from_secs(2));
        assert_eq!(role_wait(Some(60), 59), MIN_CHECK_INTERVAL);
        assert_eq!(role_wait(Some(60), 70), MIN_CHECK_INTERVAL);
        // The looks before the refresh point never pass it by more than a second or two.
        let mut now = 0;
        while now < 48 {
            now += role_wait(Some(60), now).as_secs() as i64;
        }
        assert!(now <= 50, "looked at {now}s: too close to the 60 s expiry");
    }

    fn json_keys(id: &str) -> String {
        format!(r#"{{"SecretId":"{id}","SecretKey":"s3cr3t-{id}"}}"#)
    }

    /// Writes `text` the way the FUSE host does: a temporary file, renamed.
    fn replace_file(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        file(
            path.parent().unwrap(),
            tmp.file_name().unwrap().to_str().unwrap(),
            text,
            0o600,
        );
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_changed_credentials_file_is_read_again_and_an_unchanged_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "keys", &json_keys("AKID1"), 0o600);
        let (keys, first) = KeyFile::open(&path, "b").unwrap();
        assert_eq!(first.secret_id, "AKID1");
        assert_eq!(keys.changed().unwrap(), None);
        replace_file(&path, &json_keys("AKID2"));
        assert_eq!(keys.changed().unwrap().unwrap().secret_id, "AKID2");
        assert_eq!(keys.changed().unwrap(), None);
        // A broken rewrite is an error naming the file, never its content; the keys stay.
        replace_file(&path, "{not json s3cr3t");
        let err = keys.changed().unwrap_err();
        assert!(err.contains("keys") && !err.contains("s3cr3t"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(keys.changed().unwrap_err().contains("chmod 600"));
    }

    #[tokio::test]
    async fn the_watcher_hands_over_new_keys_within_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "keys", &json_keys("AKID1"), 0o600);
        let (keys, _) = KeyFile::open(&path, "b").unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&seen);
        let watcher = tokio::spawn(watch_file(
            keys,
            move |k: ObjectCredentials| sink.lock().unwrap().push(k.secret_id),
            Arc::default(),
            Duration::from_millis(50),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            seen.lock().unwrap().is_empty(),
            "unchanged: nothing handed over"
        );
        replace_file(&path, &json_keys("AKID2"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        watcher.abort();
        assert_eq!(*seen.lock().unwrap(), ["AKID2"]);
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
