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
if [ "$4" = --abort-stale-uploads ]; then
  printf 'clean-up of %s in %s with %s\n' "$5" "$CSI_FUSE_STAGING_AREA" "$(cat)" >> "$out.cleanups"
  exit 0
fi
target="$4"
cat > "$out"
mount -t tmpfs -o size=1m standin "$target"
echo "mounted $target"
while mountpoint -q "$target"; do sleep 0.05; done
"#;

/// A stand-in that talks: `mount --bucket B --prefix P TARGET`; writes figures and a status where
/// the host says (`$CSI_FUSE_STATS_FILE`), and a line on each of its streams.
const CHATTY: &str = r#"#!/bin/sh
set -e
target="$6"
cat > /dev/null
printf '%s' '{"samples":[{"name":"tencentcloud_csi_fuse_cache_used_bytes","labels":{},"value":4096},{"name":"tencentcloud_csi_fuse_memory_bytes","labels":{},"value":1024}],"status":{"warmup":{"objects_done":1,"objects_total":2,"bytes_done":3,"bytes_total":4},"last_error":"warm-up skipped x: not found"}}' > "$CSI_FUSE_STATS_FILE"
mount -t tmpfs -o size=1m standin "$target"
echo "chatty says hello"
echo "2026-12-06T23:31:20Z  WARN chatty: running low" >&2
while mountpoint -q "$target"; do
  if [ -e "$target.say" ]; then cat "$target.say"; rm -f "$target.say"; fi
  sleep 0.05
done
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
        captured();
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
        let chatty = dir.path().join("chatty");
        std::fs::write(&chatty, CHATTY).unwrap();
        std::fs::set_permissions(&chatty, std::fs::Permissions::from_mode(0o755)).unwrap();
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
                ("chatty".to_owned(), self.path("chatty")),
            ]),
            target_dir: self.dir.path().to_owned(),
            ready_timeout: Duration::from_secs(5),
            exit_timeout: Duration::from_secs(5),
            metrics: Metrics::new(),
            staging_area: None,
            staging_max_bytes: 0,
            keeping_kinds: Default::default(),
            daemon_cgroups: Vec::new(),
            restart_backoff: Duration::from_secs(1),
            daemon_memory_max: None,
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
async fn every_unpublished_mount_has_its_upload_journal_cleaned_up_with_its_keys() {
    let mut scratch = Scratch::new();
    let target = scratch.target("vol-j");
    let area = scratch.path("staging");
    let cleanups = scratch.path("secret-seen.cleanups");
    let launches = scratch.path("run/launches");
    let config = config_with_area(&scratch, &area);
    let metrics = std::sync::Arc::clone(&config.metrics);
    let (host, client) = Running::start(config).await;
    let line = format!(
        "clean-up of {} in {} with SecretKey=not-for-argv\n",
        target.display(),
        area.display()
    );
    let lines_reach = |n: usize| {
        let cleanups = cleanups.clone();
        async move {
            for _ in 0..250 {
                let text = std::fs::read_to_string(&cleanups).unwrap_or_default();
                if text.lines().count() >= n {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            std::fs::read_to_string(&cleanups).unwrap_or_default()
        }
    };

    // A daemon that finishes by itself may still leave a failed upload journaled: its unmount
    // runs the program once more, with the same keys.
    let clean = client
        .mount(scratch.request(&target, "fp"), T)
        .await
        .unwrap();
    // What the mount runs with is kept beside the socket, private to root.
    let kept: Vec<_> = std::fs::read_dir(&launches).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kept[0].path()), 0o600);
    assert_eq!(mode(&launches), 0o700);
    client.unmount(&target, T).await.unwrap();
    wait_gone(clean.pid).await;
    assert_eq!(lines_reach(1).await, line);
    assert_eq!(
        std::fs::read_dir(&launches).unwrap().count(),
        0,
        "gone with the mount"
    );

    // A daemon that died: the same. The clean-up holds the target: the next request waits.
    let killed = client
        .mount(scratch.request(&target, "fp"), T)
        .await
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(killed.pid).await;
    client.unmount(&target, T).await.unwrap();
    let remount = client
        .mount(scratch.request(&target, "fp"), T)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&cleanups).unwrap(),
        line.repeat(2),
        "done before the next mount of the target"
    );

    // A restarted host re-adopts the mount with what it was started with: when its daemon dies
    // and the mount is unpublished, with no publish in between, the keys are there.
    host.stop().await;
    let (host, client) = Running::start(config_with_area(&scratch, &area)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(remount.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_gone(remount.pid).await;
    client.unmount(&target, T).await.unwrap();
    assert_eq!(lines_reach(3).await, line.repeat(3));
    assert_eq!(
        metrics.counter(
            "tencentcloud_csi_fuse_host_upload_cleanups_total",
            &[("kind", "cos-fuse"), ("result", "ok")]
        ),
        2,
        "the first host's two"
    );
    host.stop().await;
}

fn config_with_area(scratch: &Scratch, area: &Path) -> HostConfig {
    let mut config = scratch.config();
    config.staging_area = Some(area.to_owned());
    config
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

/// The host's output of every test in this file: set as the global subscriber before any host
/// runs (a scoped one misses events whose callsites other tests' threads registered first).
fn captured() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(capture.clone()).unwrap();
        capture
    })
}

/// Records every event's fields (the message as `message`): the host's output, as a test sees it.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Capture {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = BTreeMap::new();
        fields.insert("level".to_owned(), event.metadata().level().to_string());
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The daemon's lines reach the host's log with its volume and target (and its level), also
/// after the host restarts; its file keeps them too; `list` answers what `cos-fuse host status`
/// shows, and no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_output_reaches_the_hosts_log_and_status_shows_the_mount() {
    let mut scratch = Scratch::new();
    let capture = captured();
    let target = scratch.target("vol-chatty");
    let (host, client) = Running::start(scratch.config()).await;
    let request = MountRequest {
        target: target.clone(),
        kind: "chatty".into(),
        args: ["--bucket", "data-1250000000", "--prefix", "train/"]
            .map(String::from)
            .to_vec(),
        secret: Some("SecretKey=not-for-status".into()),
        fingerprint: "fp".into(),
    };
    let status = client.mount(request, T).await.unwrap();
    let wanted = target.display().to_string();
    // The host's line carrying `text` from the daemon, waited for.
    let line = |text: &str| {
        let mut seen = Vec::new();
        for _ in 0..250 {
            seen = capture.0.lock().unwrap().clone();
            let found = seen.iter().find(|f| {
                f.get("target") == Some(&wanted)
                    && f.get("message").is_some_and(|m| m.contains(text))
            });
            if let Some(found) = found {
                return found.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {text:?} in {seen:?}")
    };
    let hello = line("chatty says hello");
    assert_eq!(hello.get("volume").map(String::as_str), Some("vol-chatty"));
    let warning = line("running low");
    assert_eq!(warning.get("level").map(String::as_str), Some("WARN"));

    let log_dir = scratch.path("state").join("logs");
    let logged: String = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(logged.contains("chatty says hello"), "{logged}");

    let listed = client.list(T).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let details = listed[0].details.clone().expect("details on a list answer");
    assert_eq!(details.volume, "vol-chatty");
    assert_eq!(details.bucket.as_deref(), Some("data-1250000000"));
    assert_eq!(details.prefix.as_deref(), Some("train/"));
    assert!(details.uptime_secs.is_some_and(|u| u < 60), "{details:?}");
    assert!(details.rss_bytes.is_some_and(|r| r > 0), "{details:?}");
    assert_eq!(details.cache_used_bytes, Some(4096));
    assert_eq!(details.buffer_bytes, Some(1024));
    assert_eq!(
        details.warmup,
        Some(fuse_host::WarmupStatus {
            objects_done: 1,
            objects_total: 2,
            bytes_done: 3,
            bytes_total: 4,
        })
    );
    assert_eq!(
        details.last_error.as_deref(),
        Some("warm-up skipped x: not found")
    );
    let answer = format!("{listed:?}");
    assert!(!answer.contains("not-for-status"), "{answer}");

    // The host restarts; the daemon it re-adopts still reaches its log.
    host.stop().await;
    let (host, client) = Running::start(scratch.config()).await;
    let mut say = target.as_os_str().to_owned();
    say.push(".say");
    std::fs::write(&say, "said after the host restarted\n").unwrap();
    let later = line("said after the host restarted");
    assert_eq!(later.get("volume").map(String::as_str), Some("vol-chatty"));
    assert!(alive(status.pid));

    client.unmount(&target, T).await.unwrap();
    wait_gone(status.pid).await;
    host.stop().await;
}
