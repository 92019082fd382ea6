//! The requests and answers on the host's socket: one JSON request, then one JSON answer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Largest request the host reads; anything bigger is refused unread.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// What to mount: the host runs `PROGRAM mount ARGS... TARGET`, where PROGRAM is the one
/// configured for `kind` (the subcommand is always `mount`), and writes `secret` to the daemon's
/// standard input. TARGET must lie under the host's target directory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRequest {
    /// Absolute path of the mount point, under the host's target directory.
    pub target: PathBuf,
    /// Which configured program serves it (`cos-fuse`, `goosefs-fuse`).
    pub kind: String,
    /// The arguments of the program's `mount` subcommand.
    pub args: Vec<String>,
    /// Handed to the daemon on its standard input, never on a command line; kept while the mount
    /// lives (in memory, and in a root-only file on the node's /run tmpfs) to clean up its upload
    /// journal when it is unpublished.
    #[serde(default)]
    pub secret: Option<String>,
    /// Identifies what is mounted (source and options, not secrets): a second request for the same
    /// target with the same fingerprint is the same mount; a different one is a conflict.
    pub fingerprint: String,
}

impl std::fmt::Debug for MountRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountRequest")
            .field("target", &self.target)
            .field("kind", &self.kind)
            .field("args", &self.args)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Mounts, or confirms an identical healthy mount, or repairs a broken one.
    Mount(MountRequest),
    /// Unmounts and stops the daemon; nothing mounted is fine.
    Unmount { target: PathBuf },
    /// The state of one target.
    Status { target: PathBuf },
    /// Every recorded mount.
    List,
}

/// How a mount is doing, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountStatus {
    pub target: PathBuf,
    pub kind: String,
    pub fingerprint: String,
    /// The daemon's process ID (0 when none is recorded).
    pub pid: u32,
    /// The daemon is running.
    pub alive: bool,
    /// Something is mounted at the target.
    pub mounted: bool,
    /// The mount answered a stat in time.
    pub healthy: bool,
    /// Set on a mount answer: an identical healthy mount was already there.
    #[serde(default)]
    pub reused: bool,
    /// What else the host knows or can read of the mount (`cos-fuse host status`); on status and
    /// list answers. Never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<MountDetails>,
}

/// A mount as `cos-fuse host status` shows it: from the record, the daemon's arguments and
/// `/proc`, and the figures the daemon writes to its stats file. Each part is `None` when it
/// cannot be read (the daemon is gone, or writes no such figure).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountDetails {
    /// The volume, as named in the target path (the persistent volume's name under kubelet).
    pub volume: String,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// Seconds since the daemon started.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// The daemon's resident memory (`VmRSS`).
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// The read-ahead and write buffers the daemon holds now.
    #[serde(default)]
    pub buffer_bytes: Option<u64>,
    #[serde(default)]
    pub cache_used_bytes: Option<u64>,
    #[serde(default)]
    pub cache_capacity_bytes: Option<u64>,
    #[serde(default)]
    pub warmup: Option<WarmupStatus>,
    /// The daemon's last error, at most [`MAX_ERROR_CHARS`] characters.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last request the bucket refused for the daemon's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_failure: Option<AuthFailureStatus>,
}

/// A request refused for the daemon's credentials, as the daemon reports it: the error code and
/// the operation, never a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailureStatus {
    /// `AccessDenied`, `InvalidAccessKeyId`, `ExpiredToken`, ... (at most 64 characters).
    pub code: String,
    /// The S3 action refused (`GetObject`).
    #[serde(default)]
    pub op: String,
    /// When, in seconds since the Unix epoch.
    #[serde(default)]
    pub at_unix_secs: u64,
    /// The most recent request failed so (a success since clears it).
    #[serde(default)]
    pub current: bool,
}

/// The most characters of a daemon's last error the host passes on.
pub const MAX_ERROR_CHARS: usize = 200;

/// Where a daemon's cache warm-up is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmupStatus {
    pub objects_done: u64,
    pub objects_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or names something not allowed.
    Invalid,
    /// The host has no program for the requested kind.
    NotConfigured,
    /// The target is mounted with a different fingerprint.
    Conflict,
    /// The daemon exited or the mount failed.
    Failed,
    /// The mount did not come up, or the unmount did not finish, in time.
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<(ErrorCode, String)>,
    #[serde(default)]
    pub mounts: Vec<MountStatus>,
}

impl Response {
    pub fn ok(mounts: Vec<MountStatus>) -> Self {
        Response {
            error: None,
            mounts,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response {
            error: Some((code, message.into())),
            mounts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_never_show_the_secret() {
        let request = Request::Mount(MountRequest {
            target: "/var/lib/kubelet/pods/x/mount".into(),
            kind: "cos-fuse".into(),
            args: vec!["--bucket".into(), "b-1250000000".into()],
            secret: Some("SecretKey=very-secret".into()),
            fingerprint: "f".into(),
        });
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""op":"mount""#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
        assert!(!format!("{request:?}").contains("very-secret"));
        let unknown = r#"{"op":"mount","target":"/t","kind":"k","args":[],"fingerprint":"f","shell":"rm -rf /"}"#;
        assert!(serde_json::from_str::<Request>(unknown).is_err());
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"list"}"#).unwrap(),
            Request::List
        );
    }
}
