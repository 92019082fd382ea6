//! How the host runs a configured program, and what it runs once a mount is gone: a cos-fuse
//! daemon that died, had to be killed, or could not abort a failed upload may have left multipart
//! uploads open, which only a program run with the mount's keys can abort. When the mount is
//! unpublished there will be no next daemon, so the host runs the program once more as
//! `PROGRAM mount ARGS --abort-stale-uploads TARGET` with the request's keys on its standard
//! input: it aborts what the mount's journal names (it connects to nothing when the journal is
//! empty), removes the mount's staging directory, and exits without mounting.
//!
//! What a mount was started with, its keys included, is kept while the mount lives: in memory,
//! and in [`Launches`], one 0600 file per mount in a 0700 directory beside the host's socket
//! (a hostPath under `/run`, a tmpfs, as the kubelet keeps pods' secrets), so a restarted host
//! that re-adopts the mount can still clean up after its daemon. The file goes with the mount.
//!
//! A cos-fuse daemon does not take its keys on standard input but from a keys file beside its
//! launch (`DIR/<hash>.keys`, 0600, written whole: a temporary file renamed), given as
//! `--credentials-file`: the host writes it when it starts the daemon and again whenever the
//! mount is asked for with new keys (kubelet's periodic NodePublishVolume of a CSIDriver with
//! `requiresRepublish`, carrying a rotated Secret), and the daemon re-reads it when it changes.
//! The clean-up run above still takes the keys on standard input.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::config::{HostConfig, STAGING_AREA_ENV, STAGING_MAX_BYTES_ENV};
use super::stats::kind_label;
use crate::protocol::MountRequest;

/// The kind whose program keeps an upload journal and understands `--abort-stale-uploads`.
pub(super) const JOURNALING_KIND: &str = "cos-fuse";
/// How long the clean-up may take: the journal's slowest case is a listing and an abort per
/// entry, each within cos-client's call limit (170 s).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of a failed clean-up's output is logged.
const OUTPUT_TAIL_BYTES: usize = 2048;
/// The daemon argument that takes the keys on standard input, and the one that takes a file.
const KEYS_STDIN_FLAG: &str = "--credentials-stdin";
const KEYS_FILE_FLAG: &str = "--credentials-file";

/// What the host started a mount with, kept while the mount lives.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Launch {
    pub program: PathBuf,
    pub request: MountRequest,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The request's own Debug leaves the secret out.
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("request", &self.request)
            .finish()
    }
}

/// The launches of the live mounts on disk: `DIR/<sha256 of the target>.json`, 0600, in a 0700
/// directory, written whole (a temporary file renamed).
#[derive(Debug, Clone)]
pub(super) struct Launches {
    dir: PathBuf,
}

impl Launches {
    /// The launches kept in `dir` (made, 0700, when first written).
    pub(super) fn new(dir: PathBuf) -> Launches {
        Launches { dir }
    }

    fn file(&self, target: &Path) -> PathBuf {
        self.dir
            .join(format!("{}.json", super::records::key_of(target)))
    }

    /// The file the daemon of `target` reads its keys from.
    pub(super) fn keys_file(&self, target: &Path) -> PathBuf {
        self.dir
            .join(format!("{}.keys", super::records::key_of(target)))
    }

    /// Writes the keys of `request` to its keys file when its daemon takes its keys from one (a
    /// cos-fuse mount handed keys); returns the file. Unchanged keys leave the file alone.
    pub(super) fn save_keys(&self, request: &MountRequest) -> std::io::Result<Option<PathBuf>> {
        use std::os::unix::fs::DirBuilderExt;
        let Some(secret) = &request.secret else {
            return Ok(None);
        };
        if request.kind != JOURNALING_KIND || !request.args.iter().any(|a| a == KEYS_STDIN_FLAG) {
            return Ok(None);
        }
        let path = self.keys_file(&request.target);
        if std::fs::read(&path).is_ok_and(|old| old == secret.as_bytes()) {
            return Ok(Some(path));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        super::records::write_private(&path, secret.as_bytes())?;
        Ok(Some(path))
    }

    /// What the daemon of `request` is started with: its keys in the mount's keys file (written
    /// now, rewritten when the mount is asked for with new keys), not on standard input. When
    /// the file cannot be written, the keys go on standard input as before (they then stay the
    /// daemon's until it is restarted).
    pub(super) fn daemon_request(&self, request: &MountRequest) -> MountRequest {
        let path = match self.save_keys(request) {
            Ok(Some(path)) => path,
            Ok(None) => return request.clone(),
            Err(e) => {
                tracing::warn!(target = %request.target.display(), error = %e, "cannot write the mount's keys file; handing the keys on standard input, where a rotated secret cannot reach the daemon");
                return request.clone();
            }
        };
        let mut daemon = request.clone();
        daemon.args = request
            .args
            .iter()
            .flat_map(|a| {
                if a == KEYS_STDIN_FLAG {
                    vec![KEYS_FILE_FLAG.to_owned(), path.display().to_string()]
                } else {
                    vec![a.clone()]
                }
            })
            .collect();
        daemon.secret = None;
        daemon
    }

    /// Keeps `launch`; a failure is logged (the mount works; only a clean-up after a host
    /// restart would lack its keys).
    pub(super) fn save(&self, launch: &Launch) {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.file(&launch.request.target);
        let written = (|| -> std::io::Result<()> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let body = serde_json::to_vec(launch).map_err(std::io::Error::other)?;
            super::records::write_private(&path, &body)
        })();
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep a mount's launch; after a host restart its dead daemon's uploads wait for its next daemon");
        }
        // The daemon re-reads its keys file: rotated keys reach it without a remount.
        if let Err(e) = self.save_keys(&launch.request) {
            tracing::warn!(target = %launch.request.target.display(), error = %e, "cannot write the mount's keys file; its daemon keeps its current keys");
        }
    }

    /// The launch kept for `target`, if any (an unreadable file counts as none).
    pub(super) fn load(&self, target: &Path) -> Option<Launch> {
        let bytes = std::fs::read(self.file(target)).ok()?;
        serde_json::from_slice::<Launch>(&bytes)
            .ok()
            .filter(|l| l.request.target == target)
    }

    /// Forgets every launch but those of `targets` (a host that died between keeping a launch and
    /// recording its mount leaves one nobody would remove).
    pub(super) fn retain(&self, targets: &[PathBuf]) {
        let keep: Vec<PathBuf> = targets
            .iter()
            .flat_map(|t| [self.file(t), self.keys_file(t)])
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if !keep.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Forgets the launch of `target`.
    pub(super) fn remove(&self, target: &Path) {
        for path in [self.file(target), self.keys_file(target)] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a mount's launch");
            }
        }
    }
}

/// `PROGRAM mount ARGS... [EXTRA] TARGET`, with a clean environment (the search path, the log
/// filter, the node's staging area) and its own process group: signals aimed at the host's group
/// (a terminal's ^C, a container runtime's stop) do not reach it, and stopping it stops its
/// helpers too. The subcommand is pinned: a request chooses arguments of `mount`, never another.
pub(super) fn program_command(
    config: &HostConfig,
    program: &Path,
    request: &MountRequest,
    extra: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .arg("mount")
        .args(&request.args)
        .args(extra)
        .arg(&request.target)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    if let Ok(filter) = std::env::var("RUST_LOG") {
        command.env("RUST_LOG", filter);
    }
    if let Some(area) = &config.staging_area {
        command
            .env(STAGING_AREA_ENV, area)
            .env(STAGING_MAX_BYTES_ENV, config.staging_max_bytes.to_string());
    }
    std::os::unix::process::CommandExt::process_group(command.as_std_mut(), 0);
    command
}

/// Whether a mount started by `launch` can have left a journal for the host to clean up.
pub(super) fn journals(config: &HostConfig, launch: &Launch) -> bool {
    config.staging_area.is_some() && launch.request.kind == JOURNALING_KIND
}

/// Runs the clean-up of a gone mount's uploads and waits for it (bounded); reports through the
/// log and `tencentcloud_csi_fuse_host_upload_cleanups_total`.
pub(super) async fn abort_left_uploads(config: &HostConfig, launch: &Launch) {
    let target = launch.request.target.display().to_string();
    let mut command = program_command(
        config,
        &launch.program,
        &launch.request,
        &["--abort-stale-uploads"],
    );
    command.kill_on_drop(true);
    let outcome = async {
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.program.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let secret = launch.request.secret.clone().unwrap_or_default();
            // A program that reads no keys closes its end early: not an error here.
            let _ = stdin.write_all(secret.as_bytes()).await;
        }
        let output = tokio::time::timeout(CLEANUP_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("still running after {CLEANUP_TIMEOUT:?}: stopped"))?
            .map_err(|e| format!("cannot wait for it: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&output.stderr);
            let tail = text.get(text.len().saturating_sub(OUTPUT_TAIL_BYTES)..);
            Err(format!(
                "{}: {}",
                output.status,
                tail.unwrap_or(&text).trim()
            ))
        }
    }
    .await;
    let result = if outcome.is_ok() { "ok" } else { "failed" };
    config.metrics.inc(
        "tencentcloud_csi_fuse_host_upload_cleanups_total",
        "Unpublished FUSE mounts whose upload journal the host cleaned up, by result.",
        &[
            ("kind", kind_label(&launch.request.kind)),
            ("result", result),
        ],
    );
    match outcome {
        Ok(()) => tracing::debug!(target, "cleaned up the mount's upload journal"),
        Err(e) => tracing::warn!(
            target,
            error = %e,
            "cannot abort the uploads this mount's daemons left; they stay journaled for its next daemon"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(target: &str) -> Launch {
        Launch {
            program: PathBuf::from("/bin/cos-fuse"),
            request: MountRequest {
                target: PathBuf::from(target),
                kind: JOURNALING_KIND.into(),
                args: vec!["--bucket".into(), "b".into()],
                secret: Some("SecretKey=kept".into()),
                fingerprint: "fp".into(),
            },
        }
    }

    #[test]
    fn launches_are_kept_privately_and_only_for_recorded_mounts() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let launches = Launches::new(dir.path().join("launches"));
        let (a, b) = (launch("/k/a"), launch("/k/b"));
        launches.save(&a);
        launches.save(&b);
        let loaded = launches.load(Path::new("/k/a")).unwrap();
        assert_eq!(loaded.request, a.request);
        assert!(launches.load(Path::new("/k/c")).is_none());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("launches")), 0o700);
        assert_eq!(mode(&launches.file(Path::new("/k/a"))), 0o600);
        assert!(
            !format!("{loaded:?}").contains("kept"),
            "no secret in Debug"
        );
        launches.retain(&[PathBuf::from("/k/b")]);
        assert!(launches.load(Path::new("/k/a")).is_none());
        assert!(launches.load(Path::new("/k/b")).is_some());
        launches.remove(Path::new("/k/b"));
        launches.remove(Path::new("/k/b"));
        assert!(launches.load(Path::new("/k/b")).is_none());
    }

    #[test]
    fn a_daemon_reads_its_keys_from_a_private_file_rewritten_on_every_new_secret() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let launches = Launches::new(dir.path().join("launches"));
        let mut first = launch("/k/a");
        first.request.args.push(KEYS_STDIN_FLAG.into());
        let daemon = launches.daemon_request(&first.request);
        let file = launches.keys_file(Path::new("/k/a"));
        assert_eq!(daemon.secret, None, "nothing on standard input");
        assert_eq!(
            daemon.args,
            ["--bucket", "b", KEYS_FILE_FLAG, &file.display().to_string()]
        );
        assert_eq!(daemon.fingerprint, first.request.fingerprint);
        assert!(
            !daemon.args.iter().any(|a| a.contains("kept")),
            "no key in the arguments"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "SecretKey=kept");
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // The same keys again (a republish): the file stays as it is.
        launches.save(&first);
        assert_eq!(std::fs::metadata(&file).unwrap().ino(), meta.ino());
        // Rotated keys: a new file in its place, whole.
        let mut rotated = first.clone();
        rotated.request.secret = Some("SecretKey=rotated".into());
        launches.save(&rotated);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "SecretKey=rotated");
        assert_ne!(std::fs::metadata(&file).unwrap().ino(), meta.ino());
        // The clean-up keeps taking the keys on standard input; unmounted, the file goes.
        assert_eq!(
            launches.load(Path::new("/k/a")).unwrap().request,
            rotated.request
        );
        launches.retain(&[PathBuf::from("/k/a")]);
        assert!(file.exists(), "a recorded mount keeps its keys file");
        launches.remove(Path::new("/k/a"));
        assert!(!file.exists());
        // Mounts without keys (the CVM role) or of other programs take no file.
        let mut role = launch("/k/r");
        role.request.secret = None;
        role.request.args.push("--credentials-role".into());
        assert_eq!(launches.daemon_request(&role.request), role.request);
        let mut other = launch("/k/g");
        other.request.kind = "goosefs-fuse".into();
        assert_eq!(launches.daemon_request(&other.request), other.request);
    }
}
