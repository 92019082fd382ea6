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

    /// Keeps `launch`; a failure is logged (the mount works; only a clean-up after a host
    /// restart would lack its keys).
    pub(super) fn save(&self, launch: &Launch) {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = self.file(&launch.request.target);
        let written = (|| -> std::io::Result<()> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            let body = serde_json::to_vec(launch).map_err(std::io::Error::other)?;
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&body)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep a mount's launch; after a host restart its dead daemon's uploads wait for its next daemon");
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
        let keep: Vec<PathBuf> = targets.iter().map(|t| self.file(t)).collect();
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
        let path = self.file(target);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a mount's launch");
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
}
