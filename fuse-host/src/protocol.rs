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
    /// Handed to the daemon on its standard input, then forgotten.
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
