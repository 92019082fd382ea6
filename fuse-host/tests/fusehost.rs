//! The FUSE host against the real kernel, with a stand-in daemon (a script that mounts a tmpfs on
//! its target and lives while the mount does): credentials through stdin only, idempotent mounts,
//! conflicts, re-adoption after a host restart, repair of a dead daemon, clean unmounts.
//!
//! Needs root (mount(2)); fails, never skips, without it. Every mount is detached and every
//! stand-in killed by the [`Scratch`] guard, also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_common::metrics::Metrics;
use fuse_host::{ErrorCode, HostClient, HostConfig, HostError, MountRequest, MountStatus, serve};
use tokio::sync::oneshot;

const T: Duration = Duration::from_secs(20);

const STAND_IN: &str = r#"#!/bin/sh
# stand-in FUSE daemon: mount --secret-out FILE TARGET (the host pins the subcommand)
set -e
[ "$1" = mount ] || { echo "run as $1, not mount" >&2; exit 9; }
out="$3"
target="$4"
cat > "$out"
mount -t tmpfs -o size=1m standin "$target"
echo "mounted $target"
while mountpoint -q "$target"; do sleep 0.05; done
"#;

struct Scratch {
    dir: tempfile::TempDir,
    targets: Vec<PathBuf>,
}

impl Scratch {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the FUSE host tests mount tmpfs and need root; run `cargo test` as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("stand-in");
        std::fs::write(&program, STAND_IN).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let failing = dir.path().join("failing");
        std::fs::write(
            &failing,
            "#!/bin/sh\necho 'bucket does not exist' >&2\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch {
            dir,
            targets: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn target(&mut self, name: &str) -> PathBuf {
        let target = self.path(name);
        self.targets.push(target.clone());
        target
    }

    fn config(&self) -> HostConfig {
        HostConfig {
            socket: self.path("run/host.sock"),
            state_dir: self.path("state"),
            programs: BTreeMap::from([
                ("cos-fuse".to_owned(), self.path("stand-in")),
                ("broken".to_owned(), self.path("failing")),
            ]),
            target_dir: self.dir.path().to_owned(),
            ready_timeout: Duration::from_secs(5),
            exit_timeout: Duration::from_secs(5),
            metrics: Metrics::new(),
            staging_area: None,
            staging_max_bytes: 0,
        }
    }

    fn request(&self, target: &Path, fingerprint: &str) -> MountRequest {
        MountRequest {
            target: target.to_owned(),
            kind: "cos-fuse".into(),
            args: vec![
                "--secret-out".into(),
                self.path("secret-seen").display().to_string(),
            ],
            secret: Some("SecretKey=not-for-argv".into()),
            fingerprint: fingerprint.into(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for target in &self.targets {
            while nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        }
        // Stand-ins exit once their target is unmounted.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running host; dropping the handle's sender stops it.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(config: HostConfig) -> (Running, HostClient) {
        let socket = config.socket.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (
            Running {
                stop: Some(stop),
                task,
            },
            HostClient::new(socket),
        )
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

fn is_mounted(target: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let wanted = target.display().to_string();
    table
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

async fn wait_gone(pid: u32) {
    for _ in 0..250 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} is still running");
}

#[tokio::test]
async fn mounts_once_hands_the_secret_on_stdin_and_unmounts_cleanly() {
    let mut scratch = Scratch::new();
    let target = scratch.target("vol-a");
    let (host, client) = Running::start(scratch.config()).await;

    let status: MountStatus = client
        .mount(scratch.request(&target, "fp-1"), T)
        .await
        .unwrap();
    assert!(status.alive && status.mounted && status.healthy && !status.reused);
    assert!(is_mounted(&target));
    assert_eq!(
        std::fs::read_to_string(scratch.path("secret-seen")).unwrap(),
        "SecretKey=not-for-argv",
        "the daemon got its secret on stdin"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", status.pid)).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", status.pid)).unwrap();
    for (what, bytes) in [("command line", &cmdline), ("environment", &environ)] {
        assert!(
            !String::from_utf8_lossy(bytes).contains("not-for-argv"),
            "the secret is in the daemon's {what}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&environ).contains("CARGO"),
        "the daemon starts with a clean environment"
    );
    let state = scratch.path("state");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state.join("mounts")), 0o700);
    assert_eq!(mode(&scratch.path("run/host.sock")), 0o600);

    let again = client
        .mount(scratch.request(&target, "fp-1"), T)
        .await
        .unwrap();
    assert!(again.reused, "the same request is the same mount");
    assert_eq!(again.pid, status.pid);

    let conflict = client
        .mount(scratch.request(&target, "fp-2"), T)
        .await
        .unwrap_err();
    assert!(
        matches!(
            conflict,
            HostError::Refused {
                code: ErrorCode::Conflict,
                ..
            }
        ),
        "{conflict}"
    );

    client.unmount(&target, T).await.unwrap();
    assert!(!is_mounted(&target));
    wait_gone(status.pid).await;
    assert_eq!(client.status(&target, T).await.unwrap(), None);
    assert_eq!(
        std::fs::read_dir(state.join("mounts")).unwrap().count(),
        0,
        "the record is gone"
    );
    client.unmount(&target, T).await.unwrap();
    host.stop().await;
}

#[tokio::test]
async fn a_restarted_host_adopts_its_mounts_and_repairs_a_dead_daemon() {
    let mut scratch = Scratch::new();
    let target = scratch.target("vol-b");
    let (host, client) = Running::start(scratch.config()).await;
    let first = client
        .mount(scratch.request(&target, "fp"), T)
        .await
        .unwrap();
    host.stop().await;
    assert!(alive(first.pid), "the daemon outlives the host");
    assert!(is_mounted(&target));

    let (host, client) = Running::start(scratch.config()).await;
    let adopted = client.list(T).await.unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0].pid, first.pid);
    assert!(adopted[0].alive && adopted[0].healthy);
    let reused = client
        .mount(scratch.request(&target, "fp"), T)
        .await
        .unwrap();
    assert!(reused.reused && reused.pid == first.pid);

    // The daemon dies: the host says so, and the next mount request repairs it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(first.pid).await;
    let dead = client.status(&target, T).await.unwrap().unwrap();
    assert!(!dead.alive, "{dead:?}");
    let repaired = client
        .mount(scratch.request(&target, "fp"), T)
        .await
        .unwrap();
    assert!(!repaired.reused && repaired.pid != first.pid && repaired.alive);
    assert!(is_mounted(&target));
    client.unmount(&target, T).await.unwrap();
    wait_gone(repaired.pid).await;
    host.stop().await;
}

#[tokio::test]
async fn refusals_name_what_was_wrong() {
    let mut scratch = Scratch::new();
    let target = scratch.target("vol-c");
    let (host, client) = Running::start(scratch.config()).await;

    let mut unknown = scratch.request(&target, "fp");
    unknown.kind = "goosefs-fuse".into();
    let err = client.mount(unknown, T).await.unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::Refused { code: ErrorCode::NotConfigured, message } if message.contains("--allow-program goosefs-fuse=")
        ),
        "{err}"
    );

    let mut broken = scratch.request(&target, "fp");
    broken.kind = "broken".into();
    let err = client.mount(broken, T).await.unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::Refused { code: ErrorCode::Failed, message } if message.contains("bucket does not exist")
        ),
        "the daemon's own words reach the caller: {err}"
    );
    assert!(!is_mounted(&target));

    // Only under the target directory: not by `..`, not elsewhere on the node.
    let outside = tempfile::tempdir().unwrap();
    for bad in [
        scratch.path("vol-c/../../etc"),
        outside.path().join("vol"),
        PathBuf::from("/etc"),
    ] {
        let mut escaping = scratch.request(&target, "fp");
        escaping.target = bad.clone();
        let err = client.mount(escaping, T).await.unwrap_err();
        assert!(
            matches!(
                &err,
                HostError::Refused { code: ErrorCode::Invalid, message } if message.contains("--target-dir")
            ),
            "{}: {err}",
            bad.display()
        );
    }
    assert!(!is_mounted(&outside.path().join("vol")));

    host.stop().await;
}

#[tokio::test]
async fn an_absent_host_is_named_in_the_error() {
    let err = HostClient::new("/nonexistent/host.sock")
        .list(T)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/host.sock"), "{err}");
}
