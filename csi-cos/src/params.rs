//! What a COS volume is: the PV attributes of Tencent's driver (`url`, `bucket`, `path`,
//! `additional_args`, `mounter`, `dbglevel`, `core_site`, `goosefs_lite`; keys case-insensitive,
//! as that driver lower-cased them), the StorageClass parameters of prefix-per-PV provisioning,
//! and the credentials in the publish secret. `additional_args` holds cosfs `-o` options, judged
//! by the one table of them, `cos_fuse::options`: accepted ones are passed on to `cos-fuse mount`,
//! ignored ones dropped and named in [`CosSource::ignored`], every other one refused by name with
//! the table's reason. `core_site` and `goosefs_lite` (GooseFS-Lite's settings) are translated by
//! [`lite`]. Nothing here ever reaches a shell, and nothing here logs: callers warn once per
//! volume with [`CosSource::ignored`].

pub mod lite;

use std::collections::{BTreeMap, HashMap};

use cos_fuse::options::{self, Csi};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

fn bad(message: impl Into<String>) -> ParamError {
    ParamError(message.into())
}

/// The options `additional_args` accepts, `(name, what csi-cos does with it)`, in the table's
/// order: a view of `cos_fuse::options::OPTIONS`, which says what every other one is refused for.
const OPTIONS: Accepted = Accepted;

#[derive(Debug, Clone, Copy)]
struct Accepted;

impl Accepted {
    fn iter(self) -> impl Iterator<Item = (&'static str, Csi)> {
        options::OPTIONS
            .iter()
            .filter(|o| !matches!(o.csi, Csi::Refused(_)))
            .map(|o| (o.name, o.csi))
    }
}

/// The parsed `additional_args`: `cos-fuse -o` options, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions(pub BTreeMap<String, Option<String>>);

impl MountOptions {
    /// Parses cosfs-style arguments: `-oallow_other -ouid=1000,gid=1000 -o umask=022`.
    pub fn parse(args: &str) -> Result<Self, ParamError> {
        Self::parse_noting(args, &mut Vec::new())
    }

    /// Like [`MountOptions::parse`], adding the name of every option accepted but dropped (cosfs
    /// tuning cos-fuse has no use for) to `ignored`, as `additional_args: <name>`.
    pub fn parse_noting(args: &str, ignored: &mut Vec<String>) -> Result<Self, ParamError> {
        let mut options = BTreeMap::new();
        let mut tokens = args.split_whitespace();
        while let Some(token) = tokens.next() {
            let list = match token.strip_prefix("-o") {
                Some("") => tokens.next().ok_or_else(|| {
                    bad("additional_args: `-o` at the end is missing its options")
                })?,
                Some(list) => list,
                None => {
                    return Err(bad(format!(
                        "additional_args: {token:?} is not supported; only `-o name[=value]` options are (e.g. -oallow_other)"
                    )));
                }
            };
            for (name, value) in list.split(',').filter_map(options::split_item) {
                match check_option(name, value)? {
                    Some(name) => {
                        options.insert(name.to_owned(), value.map(str::to_owned));
                    }
                    None => {
                        let noted = format!("additional_args: {name}");
                        if !ignored.contains(&noted) {
                            ignored.push(noted);
                        }
                    }
                }
            }
        }
        Ok(MountOptions(options))
    }

    /// `-o name[=value]` pairs for `cos-fuse mount`.
    pub fn to_args(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(name, value)| {
                let option = match value {
                    Some(v) => format!("{name}={v}"),
                    None => name.clone(),
                };
                ["-o".to_owned(), option]
            })
            .collect()
    }

    /// Lets a pod's fsGroup use the mount: files owned by `group`, group-writable, and visible
    /// to users other than the daemon's (`allow_other`). Options the PV sets itself win.
    pub fn grant_group(&mut self, group: &str) -> Result<(), ParamError> {
        if group.parse::<u32>().is_err() {
            return Err(bad(format!(
                "volume_mount_group {group:?} is not a numeric group ID"
            )));
        }
        self.0
            .entry("gid".to_owned())
            .or_insert_with(|| Some(group.to_owned()));
        self.0
            .entry("umask".to_owned())
            .or_insert_with(|| Some("002".to_owned()));
        self.0.entry("allow_other".to_owned()).or_insert(None);
        Ok(())
    }

    pub fn read_only(&self) -> bool {
        self.0.contains_key("ro")
    }
}

/// What `additional_args` does with one option, by the table: `Some(name)` to pass it on under
/// the name the table gives it, `None` to drop it, or the refusal with the table's reason.
fn check_option(name: &str, value: Option<&str>) -> Result<Option<&'static str>, ParamError> {
    let why = match options::find(name) {
        Some(option) => match option.csi {
            Csi::Acts => {
                option
                    .check(value)
                    .map_err(|e| bad(format!("additional_args: {e}")))?;
                return Ok(Some(option.name));
            }
            Csi::Ignored(_) => return Ok(None),
            Csi::Refused(why) => why,
        },
        None => options::UNKNOWN_REASON,
    };
    let known: Vec<&str> = OPTIONS.iter().map(|(n, _)| n).collect();
    Err(bad(format!(
        "additional_args: option {name:?} is not supported ({why}); supported: {}",
        known.join(", ")
    )))
}

/// A bucket (or a part of one) to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosSource {
    /// The endpoint, e.g. `http://cos.ap-guangzhou.myqcloud.com`.
    pub url: String,
    /// `<name>-<appid>`.
    pub bucket: String,
    /// The key prefix that is the volume's root, without leading or trailing slashes ("" = the
    /// whole bucket).
    pub prefix: String,
    pub options: MountOptions,
    /// `cosfs` or `goosefs-lite`: both are served by our client.
    pub mounter: String,
    /// The log level asked for (cosfs `dbglevel`), as a `cos-fuse --log-level`.
    pub log_level: Option<String>,
    /// What the attributes hold that has no cos-fuse equivalent and is dropped, each as
    /// `attribute: key` (never a value): the caller names them in one warning.
    pub ignored: Vec<String>,
}

fn get<'a>(map: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    map.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The attributes with lower-cased keys (Tencent's driver lower-cased them). Two spellings of one
/// key with different values are refused: which one the old driver used was up to chance.
pub fn lowered(map: &HashMap<String, String>) -> Result<HashMap<String, String>, ParamError> {
    let mut out: HashMap<String, String> = HashMap::with_capacity(map.len());
    let mut spelled: HashMap<String, &str> = HashMap::new();
    for (key, value) in map {
        let lower = key.to_ascii_lowercase();
        if let Some(other) = out.get(&lower)
            && other.trim() != value.trim()
        {
            return Err(bad(format!(
                "volume attributes {:?} and {key:?} are one key (keys are case-insensitive) with two values",
                spelled.get(&lower).copied().unwrap_or_default()
            )));
        }
        spelled.insert(lower.clone(), key);
        out.insert(lower, value.clone());
    }
    Ok(out)
}

/// Mounter names: Tencent's `cosfs` and `goosefs-lite`, and `lite` (its GooseFS-Lite example's
/// spelling).
fn is_lite(mounter: &str) -> Option<bool> {
    match mounter {
        "cosfs" => Some(false),
        "goosefs-lite" | "lite" => Some(true),
        _ => None,
    }
}

/// The endpoint GooseFS-Lite used: it built it from the region of a `cos.<region>.myqcloud.com`
/// url and `fs.cosn.useHttps` (default true); another url is used as written unless `useHttps`
/// says otherwise.
fn lite_url(url: String, https: Option<bool>) -> String {
    let (scheme, host) = match url.split_once("://") {
        Some((scheme, host)) => (scheme, host),
        None => return url,
    };
    let tencent = host.starts_with("cos.") && host.ends_with(".myqcloud.com");
    match https {
        Some(true) => format!("https://{host}"),
        Some(false) => format!("http://{host}"),
        None if tencent => format!("https://{host}"),
        None => format!("{scheme}://{host}"),
    }
}

/// A key prefix made safe: no leading/trailing slash, no empty, `.` or `..` segments.
pub fn clean_prefix(path: &str, field: &str) -> Result<String, ParamError> {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad(format!(
            "{field} {path:?} must be a plain key prefix (no empty, `.` or `..` segments)"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(bad(format!("{field} {path:?} holds control characters")));
    }
    Ok(trimmed.to_owned())
}

pub fn check_url(url: &str) -> Result<String, ParamError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            bad(format!(
                "url {url:?} must start with http:// or https:// (e.g. http://cos.ap-guangzhou.myqcloud.com)"
            ))
        })?;
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@'])
        || rest.chars().any(char::is_whitespace)
    {
        return Err(bad(format!(
            "url {url:?} must be a bare endpoint like http://cos.ap-guangzhou.myqcloud.com"
        )));
    }
    Ok(url.to_owned())
}

pub fn check_bucket(bucket: &str) -> Result<String, ParamError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if ok {
        Ok(bucket.to_owned())
    } else {
        Err(bad(format!(
            "bucket {bucket:?} is not a bucket name (`<name>-<appid>`: lower-case letters, digits and dashes)"
        )))
    }
}

const LOG_LEVELS: &[(&str, &str)] = &[
    ("crit", "error"),
    ("err", "error"),
    ("error", "error"),
    ("warn", "warn"),
    ("info", "info"),
    ("debug", "debug"),
    ("dbg", "debug"),
];

/// cosfs's `dbglevel` as a `cos-fuse --log-level`.
fn log_level(level: Option<&str>) -> Result<Option<String>, ParamError> {
    let Some(level) = level else {
        return Ok(None);
    };
    LOG_LEVELS
        .iter()
        .find(|(name, _)| *name == level)
        .map(|(_, ours)| Some((*ours).to_owned()))
        .ok_or_else(|| {
            bad(format!(
                "dbglevel {level:?} is not one of crit, err, warn, info, debug"
            ))
        })
}

impl CosSource {
    /// From a PV's `volumeAttributes` (static PVs, and the context our CreateVolume returns).
    pub fn from_context(context: &HashMap<String, String>) -> Result<Self, ParamError> {
        let context = &lowered(context)?;
        let url = check_url(get(context, "url").ok_or_else(|| {
            bad("volume attribute `url` is required (e.g. http://cos.ap-guangzhou.myqcloud.com)")
        })?)?;
        let bucket = check_bucket(
            get(context, "bucket")
                .ok_or_else(|| bad("volume attribute `bucket` is required (`<name>-<appid>`)"))?,
        )?;
        let prefix = clean_prefix(get(context, "path").unwrap_or("/"), "path")?;
        let mounter = get(context, "mounter").unwrap_or("cosfs").to_owned();
        let lite = is_lite(&mounter).ok_or_else(|| {
            bad(format!(
                "mounter {mounter:?} is not supported (cosfs or goosefs-lite; both are served by cos-fuse)"
            ))
        })?;
        let mut ignored = Vec::new();
        // What Tencent's driver did not apply with this mounter is not applied here either: the
        // volume worked without it.
        let not_for = |keys: &[&str], ignored: &mut Vec<String>| {
            for key in keys {
                if get(context, key).is_some() {
                    ignored.push(format!("{key} (not used with mounter {mounter})"));
                }
            }
        };
        let (url, options, log_level) = if lite {
            not_for(&["additional_args", "dbglevel"], &mut ignored);
            let translation = lite::translate(
                get(context, lite::CORE_SITE),
                get(context, lite::GOOSEFS_LITE),
            )
            .map_err(|e| bad(e.to_string()))?;
            ignored.extend(translation.ignored);
            let options = MountOptions(
                translation
                    .options
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), Some(value)))
                    .collect(),
            );
            (lite_url(url, translation.https), options, None)
        } else {
            not_for(&[lite::CORE_SITE, lite::GOOSEFS_LITE], &mut ignored);
            let options = MountOptions::parse_noting(
                get(context, "additional_args").unwrap_or(""),
                &mut ignored,
            )?;
            (url, options, log_level(get(context, "dbglevel"))?)
        };
        Ok(CosSource {
            url,
            bucket,
            prefix,
            options,
            mounter,
            log_level,
            ignored,
        })
    }

    /// The `cos-fuse mount` arguments (the FUSE host runs `cos-fuse mount ARGS... TARGET`).
    pub fn fuse_args(&self) -> Vec<String> {
        let mut args = vec![
            "--endpoint".to_owned(),
            self.url.clone(),
            "--bucket".to_owned(),
            self.bucket.clone(),
            "--credentials-stdin".to_owned(),
        ];
        if !self.prefix.is_empty() {
            args.extend(["--prefix".to_owned(), self.prefix.clone()]);
        }
        if let Some(level) = &self.log_level {
            args.extend(["--log-level".to_owned(), level.clone()]);
        }
        args.extend(self.options.to_args());
        args
    }

    /// Identifies the mount (not its credentials: rotating a key must not make the volume's mount
    /// look like another one).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.fuse_args())
    }
}

/// Identifies a mount by the daemon's arguments (never its secrets).
pub fn fingerprint(args: &[String]) -> String {
    let mut digest = Sha256::new();
    for arg in args {
        digest.update(arg.as_bytes());
        digest.update([0]);
    }
    hex::encode(digest.finalize())
}

/// API keys from a secret: `SecretId`, `SecretKey` and, for temporary keys, `Token`.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub secret_id: String,
    pub secret_key: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Keys {
    /// Trims values: a trailing newline in a secret broke the old driver's signing.
    pub fn from_secrets(
        secrets: &HashMap<String, String>,
        which: &str,
    ) -> Result<Self, ParamError> {
        let field = |name: &str| get(secrets, name).map(str::to_owned);
        let (Some(secret_id), Some(secret_key)) = (field("SecretId"), field("SecretKey")) else {
            return Err(bad(format!(
                "the {which} secret must hold SecretId and SecretKey (keys present: {})",
                secrets.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        Ok(Keys {
            secret_id,
            secret_key,
            token: field("Token").or_else(|| field("SessionToken")),
        })
    }

    /// The secret map for keys the process found itself (its `--credentials-dir`, environment or
    /// CVM role), for requests that carry no secret.
    pub fn secrets_from(credentials: &tcloud::Credentials) -> HashMap<String, String> {
        let mut secrets = HashMap::from([
            ("SecretId".to_owned(), credentials.secret_id.clone()),
            ("SecretKey".to_owned(), credentials.secret_key.clone()),
        ]);
        if let Some(token) = &credentials.token {
            secrets.insert("Token".to_owned(), token.clone());
        }
        secrets
    }

    /// What the FUSE daemon reads on its standard input.
    pub fn to_stdin(&self) -> String {
        serde_json::json!({
            "SecretId": self.secret_id,
            "SecretKey": self.secret_key,
            "Token": self.token,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn static_pv_attributes_become_an_argument_vector() {
        let source = CosSource::from_context(&context(&[
            ("url", "http://cos.ap-guangzhou.myqcloud.com/"),
            ("bucket", "data-1250000000"),
            ("path", "/team/a/"),
            (
                "additional_args",
                "-oallow_other -ouid=1000,gid=1000 -o umask=022 -oensure_diskfree=20480 -ononempty",
            ),
            ("dbglevel", "warn"),
        ]))
        .unwrap();
        assert_eq!(source.prefix, "team/a");
        assert_eq!(
            source.fuse_args(),
            [
                "--endpoint",
                "http://cos.ap-guangzhou.myqcloud.com",
                "--bucket",
                "data-1250000000",
                "--credentials-stdin",
                "--prefix",
                "team/a",
                "--log-level",
                "warn",
                "-o",
                "allow_other",
                "-o",
                "ensure_diskfree=20480",
                "-o",
                "gid=1000",
                "-o",
                "uid=1000",
                "-o",
                "umask=022",
            ]
        );
    }

    #[test]
    fn unsupported_and_malformed_arguments_are_refused_by_name() {
        for (args, named) in [
            ("-ouse_sse=kmsid", "use_sse"),
            ("-oenable_content_md5", "enable_content_md5"),
            ("-ostaging_dir=/var/lib", "staging_dir"),
            ("-opasswd_file=/etc/passwd-cosfs", "passwd_file"),
            ("-d", "\"-d\""),
            ("-ouid=root", "uid"),
            ("-oumask=999", "umask"),
            ("-oallow_other=1", "allow_other"),
            ("-o", "-o"),
            ("; rm -rf /", "\";\""),
            ("-ofoo$(id)", "foo$(id)"),
        ] {
            let err = MountOptions::parse(args).unwrap_err();
            assert!(err.0.contains(named), "{args}: {err}");
        }
    }

    /// The attributes of every COS PV in Tencent's examples (`deploy/cosfs/examples/*/pv.yaml`)
    /// and the TKE documentation (`002:33712`, its core_site and goosefs_lite tables), and what
    /// each becomes: the `cos-fuse mount` arguments and the keys named in the warning.
    #[test]
    fn tencents_cos_pvs_become_cos_fuse_arguments() {
        const GZ: &str = "http://cos.ap-guangzhou.myqcloud.com";
        const HEAD: [&str; 5] = [
            "--endpoint",
            "http://cos.ap-guangzhou.myqcloud.com",
            "--bucket",
            "xxx",
            "--credentials-stdin",
        ];
        let lite_head = |rest: &[&str]| {
            let mut args = vec![
                "--endpoint",
                "https://cos.ap-guangzhou.myqcloud.com",
                "--bucket",
                "xxx",
                "--credentials-stdin",
            ];
            args.extend(rest);
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        let cosfs_head = |rest: &[&str]| {
            let mut args = HEAD.to_vec();
            args.extend(rest);
            args.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        /// (what, attributes, `cos-fuse mount` arguments, keys named in the warning)
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<String>, Vec<&'a str>);
        let table: Vec<Case> = vec![
            (
                "examples/cosfs/pv.yaml",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("path", "/"),
                    ("dbglevel", "err"),
                    ("additional_args", "-oensure_diskfree=20480"),
                ],
                cosfs_head(&["--log-level", "error", "-o", "ensure_diskfree=20480"]),
                vec![],
            ),
            (
                "examples/goosefs-lite/pv.yaml",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("path", "/"),
                    ("mounter", "lite"),
                    ("core_site", ""),
                    ("goosefs_lite", ""),
                ],
                lite_head(&[]),
                vec![],
            ),
            (
                "examples/goosefs-lite/pv.yaml with its comments' values",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("mounter", "goosefs-lite"),
                    (
                        "core_site",
                        "fs.cosn.maxRetries=100, fs.cosn.retry.interval.seconds=4",
                    ),
                    ("goosefs_lite", "goosefs.fuse.umount.timeout=110000"),
                ],
                lite_head(&[]),
                vec![
                    "core_site: fs.cosn.maxRetries",
                    "core_site: fs.cosn.retry.interval.seconds",
                    "goosefs_lite: goosefs.fuse.umount.timeout",
                ],
            ),
            (
                "TKE: COS PV with a subdirectory",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("path", "/costest"),
                    ("additional_args", "-oallow_other"),
                ],
                cosfs_head(&["--prefix", "costest", "-o", "allow_other"]),
                vec![],
            ),
            (
                "TKE: every documented GooseFS-Lite key",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("mounter", "goosefs-lite"),
                    (
                        "core_site",
                        "fs.cosn.useHttps=true,fs.cosn.upload.part.size=8388608,\
                         fs.cosn.upload_thread_pool=32,fs.cosn.read.ahead.block.size=1048576,\
                         fs.cosn.read.ahead.queue.size=6,fs.cosn.trsf.fs.ofs.tmp.cache.dir=/tmp/ofs,\
                         fs.cosn.trsf.fs.ofs.user.appid=1250000000,\
                         fs.cosn.trsf.fs.ofs.bucket.region=ap-guangzhou",
                    ),
                    (
                        "goosefs_lite",
                        "goosefs.fuse.list.entries.cache.enabled=true,\
                         goosefs.fuse.list.entries.cache.max.size=100000,\
                         goosefs.fuse.list.entries.cache.max.expiration.time=15000,\
                         goosefs.fuse.async.release.wait_time.max.ms=5000,\
                         goosefs.fuse.umount.timeout=120000",
                    ),
                ],
                lite_head(&[
                    "-o",
                    "max_stat_cache_size=100000",
                    "-o",
                    "multipart_size=8MiB",
                    "-o",
                    "parallel_count=32",
                    "-o",
                    "read_ahead_mb=6MiB",
                    "-o",
                    "stat_cache_expire=15",
                ]),
                vec![
                    "core_site: fs.cosn.trsf.fs.ofs.tmp.cache.dir",
                    "core_site: fs.cosn.trsf.fs.ofs.user.appid",
                    "core_site: fs.cosn.trsf.fs.ofs.bucket.region",
                    "goosefs_lite: goosefs.fuse.async.release.wait_time.max.ms",
                    "goosefs_lite: goosefs.fuse.umount.timeout",
                ],
            ),
            (
                "cosfs tuning: accepted, dropped, named",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    (
                        "additional_args",
                        "-oallow_other -oretries=5 -ouse_cache=/data/cache -odel_cache,multipart_size=16 -o kernel_cache -ononempty",
                    ),
                ],
                cosfs_head(&["-o", "allow_other", "-o", "multipart_size=16"]),
                vec![
                    "additional_args: retries",
                    "additional_args: use_cache",
                    "additional_args: del_cache",
                    "additional_args: kernel_cache",
                    "additional_args: nonempty",
                ],
            ),
            (
                "mounter cosfs: GooseFS-Lite settings were never applied",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("core_site", "fs.cosn.upload_thread_pool=4"),
                ],
                cosfs_head(&[]),
                vec!["core_site (not used with mounter cosfs)"],
            ),
            (
                "mounter goosefs-lite: cosfs settings were never applied",
                vec![
                    ("url", GZ),
                    ("bucket", "xxx"),
                    ("mounter", "goosefs-lite"),
                    ("additional_args", "-oro"),
                    ("dbglevel", "dbg"),
                    ("core_site", "fs.cosn.useHttps=false"),
                ],
                cosfs_head(&[]),
                vec![
                    "additional_args (not used with mounter goosefs-lite)",
                    "dbglevel (not used with mounter goosefs-lite)",
                ],
            ),
            (
                "keys in any case",
                vec![
                    ("URL", GZ),
                    ("Bucket", "xxx"),
                    ("Path", "/a/"),
                    ("DbgLevel", "info"),
                    ("Additional_Args", "-ouid=1000"),
                ],
                cosfs_head(&["--prefix", "a", "--log-level", "info", "-o", "uid=1000"]),
                vec![],
            ),
        ];
        for (name, attributes, args, ignored) in table {
            let source = CosSource::from_context(&context(&attributes))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(source.fuse_args(), args, "{name}");
            assert_eq!(source.ignored, ignored, "{name}");
        }
    }

    #[test]
    fn malformed_goosefs_lite_settings_name_their_attribute() {
        for (key, value) in [
            ("core_site", "fs.cosn.maxRetries"),
            (
                "goosefs_lite",
                "goosefs.fuse.list.entries.cache.max.size=lots",
            ),
        ] {
            let err = CosSource::from_context(&context(&[
                ("url", "http://cos.ap-guangzhou.myqcloud.com"),
                ("bucket", "b-1250000000"),
                ("mounter", "goosefs-lite"),
                (key, value),
            ]))
            .unwrap_err();
            assert!(err.0.contains(&format!("volume attribute {key}")), "{err}");
        }
        let err = CosSource::from_context(&context(&[
            ("url", "http://cos.ap-guangzhou.myqcloud.com"),
            ("bucket", "b-1250000000"),
            ("BUCKET", "c-1250000000"),
        ]))
        .unwrap_err();
        assert!(err.0.contains("case-insensitive"), "{err}");
    }

    #[test]
    fn bad_attributes_name_the_attribute() {
        let base = [
            ("url", "http://cos.ap-guangzhou.myqcloud.com"),
            ("bucket", "b-1250000000"),
        ];
        for (key, value, named) in [
            ("url", "cos.ap-guangzhou.myqcloud.com", "url"),
            ("url", "http://host/path", "url"),
            ("bucket", "Bad_Bucket", "bucket"),
            ("path", "a/../../b", "path"),
            ("mounter", "s3fs", "mounter"),
            ("dbglevel", "loud", "dbglevel"),
        ] {
            let mut ctx = context(&base);
            ctx.insert(key.into(), value.into());
            let err = CosSource::from_context(&ctx).unwrap_err();
            assert!(err.0.contains(named), "{key}={value}: {err}");
        }
        assert!(
            CosSource::from_context(&context(&[("bucket", "b-1")]))
                .unwrap_err()
                .0
                .contains("url")
        );
    }

    #[test]
    fn fingerprints_follow_options_not_keys() {
        let ctx = context(&[
            ("url", "http://cos.ap-guangzhou.myqcloud.com"),
            ("bucket", "b-1250000000"),
        ]);
        let a = CosSource::from_context(&ctx).unwrap();
        let mut ro = ctx.clone();
        ro.insert("additional_args".into(), "-oro".into());
        let b = CosSource::from_context(&ro).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(b.options.read_only());
        assert_eq!(
            a.fingerprint(),
            CosSource::from_context(&ctx).unwrap().fingerprint()
        );
    }

    #[test]
    fn a_pods_fs_group_is_granted_unless_the_pv_says_otherwise() {
        let mut options = MountOptions::parse("-ouid=1000").unwrap();
        options.grant_group("2000").unwrap();
        assert_eq!(
            options.to_args().join(" "),
            "-o allow_other -o gid=2000 -o uid=1000 -o umask=002"
        );
        let mut own = MountOptions::parse("-ogid=5 -oumask=077").unwrap();
        own.grant_group("2000").unwrap();
        assert!(own.to_args().contains(&"gid=5".to_owned()));
        assert!(own.to_args().contains(&"umask=077".to_owned()));
        assert!(own.grant_group("staff").is_err());
    }

    #[test]
    fn keys_are_trimmed_and_never_printed() {
        let keys = Keys::from_secrets(
            &context(&[("SecretId", "AKID\n"), ("SecretKey", " very-secret\n")]),
            "publish",
        )
        .unwrap();
        assert_eq!(keys.secret_id, "AKID");
        assert_eq!(keys.secret_key, "very-secret");
        assert!(!format!("{keys:?}").contains("very-secret"));
        let err = Keys::from_secrets(&context(&[("secretid", "x")]), "publish").unwrap_err();
        assert!(
            err.0.contains("SecretId") && err.0.contains("secretid"),
            "{err}"
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_accepted_options_are_known(args in ".{0,80}") {
            if let Ok(options) = MountOptions::parse(&args) {
                for name in options.0.keys() {
                    proptest::prop_assert!(OPTIONS.iter().any(|(n, _)| n == name));
                }
            }
        }

        #[test]
        fn clean_prefixes_never_escape(path in "[a-z./]{0,30}") {
            if let Ok(prefix) = clean_prefix(&path, "path") {
                proptest::prop_assert!(!prefix.split('/').any(|s| s == ".." || s == "."));
                proptest::prop_assert!(!prefix.starts_with('/') && !prefix.ends_with('/'));
            }
        }
    }
}
