//! The host's side: one task per connection, one lock per target, records on disk.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::protocol::{ErrorCode, MAX_REQUEST_BYTES, MountRequest, MountStatus, Request, Response};
use csi_common::metrics::Metrics;
use csi_common::mount::{LinuxMounter, Mounter};

/// How the host is set up (the `cos-fuse host` flags).
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub socket: PathBuf,
    /// Records and daemon logs; private to root.
    pub state_dir: PathBuf,
    /// The only programs the host runs, by kind.
    pub programs: BTreeMap<String, PathBuf>,
    /// How long a new daemon has to bring its mount up.
    pub ready_timeout: Duration,
    /// How long an unmounted daemon has to finish its uploads and exit before it is killed
    /// (GooseFS-Lite's `goosefs.fuse.umount.timeout` default is 120 s).
    pub exit_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// What the state directory keeps per mount. The start time tells a recorded process from a later
/// one that reused its PID.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    target: PathBuf,
    kind: String,
    fingerprint: String,
    pid: u32,
    start_ticks: u64,
}

#[derive(Debug)]
struct Host {
    config: HostConfig,
    mounter: LinuxMounter,
    records: Mutex<BTreeMap<PathBuf, Record>>,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// How long one stat of a mount may take before the mount counts as hung.
const STAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unmount may block before the mount is detached lazily instead.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a failed daemon's log goes into the error.
const LOG_TAIL_BYTES: u64 = 2048;
/// The variable telling a daemon where to write its figures for the host's `/metrics`.
pub const STATS_ENV: &str = "CSI_FUSE_STATS_FILE";
/// How often the host reads its daemons' figures.
const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// What a daemon writes to `$CSI_FUSE_STATS_FILE`: samples of the metrics in [`DAEMON_METRICS`].
#[derive(Debug, Deserialize)]
struct DaemonStats {
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: u64,
}

/// How the samples of several daemons of one kind combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    Sum,
    /// A figure of something they share (the node's cache): the largest report.
    Max,
}

/// The daemons' metrics the host serves, summed by kind: name, type, help, how to merge. Anything
/// else a daemon reports is ignored, so a daemon cannot grow the label sets.
const DAEMON_METRICS: &[(&str, &str, &str, Merge)] = &[
    (
        "fuse_operations_total",
        "counter",
        "FUSE requests the daemons served, by kind and operation.",
        Merge::Sum,
    ),
    (
        "fuse_operation_errors_total",
        "counter",
        "FUSE requests answered with an error, by kind and operation.",
        Merge::Sum,
    ),
    (
        "fuse_bytes_total",
        "counter",
        "Bytes read and written through FUSE mounts, by kind and direction.",
        Merge::Sum,
    ),
    (
        "fuse_memory_bytes",
        "gauge",
        "Read-ahead and write buffer memory the daemons hold now.",
        Merge::Sum,
    ),
    (
        "fuse_memory_peak_bytes",
        "gauge",
        "The most buffer memory one daemon held at once.",
        Merge::Max,
    ),
    (
        "fuse_cache_requests_total",
        "counter",
        "Block cache reads by result (hit or miss).",
        Merge::Sum,
    ),
    (
        "fuse_cache_bytes_total",
        "counter",
        "Bytes read through the block cache by result (hit or miss).",
        Merge::Sum,
    ),
    (
        "fuse_cache_origin_bytes_total",
        "counter",
        "Bytes the block cache fetched from the object store.",
        Merge::Sum,
    ),
    (
        "fuse_cache_evictions_total",
        "counter",
        "Blocks evicted from the block cache.",
        Merge::Sum,
    ),
    (
        "fuse_cache_corrupt_blocks_total",
        "counter",
        "Cached blocks that failed their checksum and were fetched again.",
        Merge::Sum,
    ),
    (
        "fuse_cache_used_bytes",
        "gauge",
        "Bytes the node's block cache holds on disk.",
        Merge::Max,
    ),
    (
        "fuse_cache_capacity_bytes",
        "gauge",
        "The node's block cache capacity.",
        Merge::Max,
    ),
    (
        "fuse_warmup_done_bytes",
        "gauge",
        "Bytes of preloaded prefixes already in the cache.",
        Merge::Sum,
    ),
    (
        "fuse_warmup_total_bytes",
        "gauge",
        "Bytes of the prefixes being preloaded.",
        Merge::Sum,
    ),
];

/// Label keys a daemon may use (with bounded values of its own: operation names, hit/miss).
const DAEMON_LABELS: &[&str] = &["op", "direction", "result"];

/// Serves the host's socket until `shutdown` completes. Daemons keep running after the host exits:
/// they are in their own process groups, and the next host re-adopts them from the records.
pub async fn serve(
    config: HostConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), csi_common::csi::server::ServeError> {
    for dir in ["mounts", "logs", "stats"].map(|d| config.state_dir.join(d)) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| csi_common::csi::server::ServeError::SocketDir {
                path: dir.clone(),
                source,
            })?;
    }
    let host = Arc::new(Host {
        records: Mutex::new(load_records(&config.state_dir)),
        config,
        mounter: LinuxMounter::new(),
        locks: Mutex::new(HashMap::new()),
    });
    for status in host.list().await {
        tracing::info!(
            target = %status.target.display(),
            pid = status.pid,
            alive = status.alive,
            mounted = status.mounted,
            "adopted a recorded mount"
        );
    }
    if let Some(parent) = host.config.socket.parent() {
        private_dir(parent).map_err(|source| csi_common::csi::server::ServeError::SocketDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    // Only root (and our own user) may ask for mounts.
    let listener = csi_common::csi::server::bind_unix(&host.config.socket, 0o600)?;
    tracing::info!(socket = %host.config.socket.display(), programs = ?host.config.programs, "FUSE host serving");
    tokio::pin!(shutdown);
    let mut collect = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = collect.tick() => host.collect_daemon_stats(),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let host = host.clone();
                    tokio::spawn(async move { host.connection(stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&host.config.socket);
    Ok(())
}

impl Host {
    async fn connection(self: Arc<Self>, mut stream: UnixStream) {
        let allowed = stream
            .peer_cred()
            .is_ok_and(|cred| cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw());
        let response = if !allowed {
            Response::error(ErrorCode::Invalid, "only root may use the FUSE host")
        } else {
            let mut body = Vec::new();
            match (&mut stream)
                .take(MAX_REQUEST_BYTES + 1)
                .read_to_end(&mut body)
                .await
            {
                Err(e) => Response::error(ErrorCode::Invalid, format!("cannot read: {e}")),
                Ok(_) if body.len() as u64 > MAX_REQUEST_BYTES => {
                    Response::error(ErrorCode::Invalid, "request too large")
                }
                Ok(_) => match serde_json::from_slice::<Request>(&body) {
                    Err(e) => Response::error(ErrorCode::Invalid, format!("bad request: {e}")),
                    Ok(request) => self.handle(request).await,
                },
            }
        };
        match serde_json::to_vec(&response) {
            Ok(bytes) => {
                if let Err(e) = stream.write_all(&bytes).await {
                    tracing::warn!(error = %e, "cannot answer a FUSE host client");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode an answer"),
        }
    }

    async fn handle(self: &Arc<Self>, request: Request) -> Response {
        let started = Instant::now();
        let (op, response) = match request {
            Request::Mount(mount) => ("mount", self.mount(mount).await),
            Request::Unmount { target } => ("unmount", self.unmount(&target).await),
            Request::Status { target } => ("status", self.status(&target).await),
            Request::List => ("list", Response::ok(self.list().await)),
        };
        let outcome = match &response.error {
            None => "ok",
            Some((ErrorCode::Invalid, _)) => "invalid",
            Some((ErrorCode::NotConfigured, _)) => "not_configured",
            Some((ErrorCode::Conflict, _)) => "conflict",
            Some((ErrorCode::Failed, _)) => "failed",
            Some((ErrorCode::Timeout, _)) => "timeout",
        };
        self.config.metrics.observe(
            "fuse_host_operation_duration_seconds",
            "FUSE host operations (mount, unmount, status, list) by outcome.",
            &[("op", op), ("outcome", outcome)],
            started.elapsed().as_secs_f64(),
        );
        response
    }

    fn lock(&self, target: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.to_owned())
            .or_default()
            .clone()
    }

    fn record(&self, target: &Path) -> Option<Record> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    async fn mount(self: &Arc<Self>, request: MountRequest) -> Response {
        if let Err(message) = check_target(&request.target) {
            return Response::error(ErrorCode::Invalid, message);
        }
        let Some(program) = self.config.programs.get(&request.kind).cloned() else {
            return Response::error(
                ErrorCode::NotConfigured,
                format!(
                    "this FUSE host has no program for {:?} (configured: {}); start it with --allow-program {}=PATH",
                    request.kind,
                    self.config
                        .programs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    request.kind
                ),
            );
        };
        if let Some(bad) = request.args.iter().find(|a| a.contains('\0')) {
            return Response::error(
                ErrorCode::Invalid,
                format!("argument {bad:?} holds a NUL byte"),
            );
        }
        let lock = self.lock(&request.target);
        let _guard = lock.lock().await;
        let target = request.target.clone();
        let current = self.observe(&target).await;
        if let Some(status) = &current {
            if status.alive && status.healthy {
                if status.fingerprint == request.fingerprint {
                    return Response::ok(vec![MountStatus {
                        reused: true,
                        ..status.clone()
                    }]);
                }
                return Response::error(
                    ErrorCode::Conflict,
                    format!("{} is already mounted with other options", target.display()),
                );
            }
            tracing::warn!(target = %target.display(), alive = status.alive, mounted = status.mounted, "repairing a broken FUSE mount");
            self.config.metrics.inc(
                "fuse_host_repairs_total",
                "Broken FUSE mounts (dead or hung daemon) torn down to be mounted again.",
                &[("kind", kind_label(&status.kind))],
            );
        }
        if let Err(response) = self.tear_down(&target).await {
            return response;
        }
        if let Err(e) = std::fs::create_dir_all(&target) {
            return Response::error(
                ErrorCode::Failed,
                format!("cannot create {}: {e}", target.display()),
            );
        }
        match self.start(&program, &request).await {
            Ok(status) => {
                self.config.metrics.inc(
                    "fuse_host_daemons_started_total",
                    "FUSE daemons the host started, by kind.",
                    &[("kind", kind_label(&request.kind))],
                );
                Response::ok(vec![status])
            }
            Err(response) => response,
        }
    }

    /// Starts the daemon and waits for its mount.
    async fn start(
        self: &Arc<Self>,
        program: &Path,
        request: &MountRequest,
    ) -> Result<MountStatus, Response> {
        let target = &request.target;
        let log_path = self.file_for(target, "logs", "log");
        let failed = |what: &str, e: std::io::Error| {
            Response::error(ErrorCode::Failed, format!("{what}: {e}"))
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| failed("cannot open the daemon log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| failed("cannot open the daemon log", e))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(&request.args)
            .arg(target)
            .env_clear()
            .env(STATS_ENV, self.file_for(target, "stats", "json"))
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(false);
        if let Ok(filter) = std::env::var("RUST_LOG") {
            command.env("RUST_LOG", filter);
        }
        // Its own process group: signals aimed at the host's group (a terminal's ^C, a container
        // runtime's stop) do not reach it, and stopping it stops its helpers too.
        command.as_std_mut().process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| failed(&format!("cannot start {}", program.display()), e))?;
        let pid = child.id().unwrap_or(0);
        if let Some(mut stdin) = child.stdin.take() {
            let secret = request.secret.clone().unwrap_or_default();
            if let Err(e) = stdin.write_all(secret.as_bytes()).await {
                tracing::warn!(error = %e, "cannot hand the daemon its credentials");
            }
            drop(stdin);
        }
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = self.tear_down_mount(target).await;
                return Err(Response::error(
                    ErrorCode::Failed,
                    format!(
                        "{} exited ({status}) before mounting {}: {}",
                        program.display(),
                        target.display(),
                        log_tail(&log_path)
                    ),
                ));
            }
            if matches!(self.mounter.mount_at(target), Ok(Some(_))) {
                break;
            }
            if Instant::now() >= deadline {
                stop_group(pid).await;
                let _ = child.wait().await;
                let _ = self.tear_down_mount(target).await;
                return Err(Response::error(
                    ErrorCode::Timeout,
                    format!(
                        "{} did not mount {} within {:?}: {}",
                        program.display(),
                        target.display(),
                        self.config.ready_timeout,
                        log_tail(&log_path)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let record = Record {
            target: target.clone(),
            kind: request.kind.clone(),
            fingerprint: request.fingerprint.clone(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        };
        if let Err(e) = self.save(&record) {
            tracing::error!(error = %e, target = %target.display(), "cannot record a mount; it will not be re-adopted after a host restart");
        }
        // Reap the daemon when it exits, so it never lingers as a zombie.
        let host = Arc::downgrade(self);
        let kind = request.kind.clone();
        let reaped_target = target.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::info!(target = %reaped_target.display(), pid, ?status, "FUSE daemon exited");
            if let Some(host) = host.upgrade() {
                host.config.metrics.inc(
                    "fuse_host_daemon_exits_total",
                    "FUSE daemons that exited, for any reason, by kind.",
                    &[("kind", kind_label(&kind))],
                );
            }
        });
        tracing::info!(target = %target.display(), pid, kind = %request.kind, "mounted");
        Ok(MountStatus {
            target: target.clone(),
            kind: request.kind.clone(),
            fingerprint: request.fingerprint.clone(),
            pid,
            alive: true,
            mounted: true,
            healthy: true,
            reused: false,
        })
    }

    async fn unmount(self: &Arc<Self>, target: &Path) -> Response {
        if let Err(message) = check_target(target) {
            return Response::error(ErrorCode::Invalid, message);
        }
        let lock = self.lock(target);
        let _guard = lock.lock().await;
        match self.tear_down(target).await {
            Ok(()) => Response::ok(Vec::new()),
            Err(response) => response,
        }
    }

    /// Unmounts `target`, lets its daemon finish (then kills it), and forgets the record.
    async fn tear_down(&self, target: &Path) -> Result<(), Response> {
        let record = self.record(target);
        self.tear_down_mount(target).await?;
        if let Some(record) = &record
            && process_alive(record.pid, record.start_ticks)
        {
            // Unmounted, the daemon is told DESTROY and exits once its uploads are done.
            let deadline = Instant::now() + self.config.exit_timeout;
            while process_alive(record.pid, record.start_ticks) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if process_alive(record.pid, record.start_ticks) {
                tracing::warn!(target = %target.display(), pid = record.pid, "FUSE daemon still running after unmount: stopping it");
                stop_group(record.pid).await;
            }
        }
        self.forget(target);
        Ok(())
    }

    /// Unmounts everything at `target`, detaching lazily when an unmount blocks.
    async fn tear_down_mount(&self, target: &Path) -> Result<(), Response> {
        let owned = target.to_owned();
        let unmount = tokio::task::spawn_blocking(move || {
            csi_common::mount::ops::unmount_all(&LinuxMounter::new(), &owned)
        });
        match tokio::time::timeout(UNMOUNT_TIMEOUT, unmount).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(Response::error(
                ErrorCode::Failed,
                format!("cannot unmount {}: {e}", target.display()),
            )),
            Ok(Err(e)) => Err(Response::error(ErrorCode::Failed, e.to_string())),
            Err(_) => {
                tracing::warn!(target = %target.display(), "unmount hung: detaching lazily");
                nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
                    Response::error(
                        ErrorCode::Timeout,
                        format!(
                            "unmounting {} hung, and detaching it failed: {e}",
                            target.display()
                        ),
                    )
                })
            }
        }
    }

    async fn status(self: &Arc<Self>, target: &Path) -> Response {
        Response::ok(self.observe(target).await.into_iter().collect())
    }

    async fn list(self: &Arc<Self>) -> Vec<MountStatus> {
        let targets: Vec<PathBuf> = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut statuses = Vec::new();
        for target in targets {
            statuses.extend(self.observe(&target).await);
        }
        statuses
    }

    /// The recorded mount at `target` as it is now; `None` when nothing is recorded.
    async fn observe(&self, target: &Path) -> Option<MountStatus> {
        let record = self.record(target)?;
        let alive = process_alive(record.pid, record.start_ticks);
        let mounted = matches!(self.mounter.mount_at(target), Ok(Some(_)));
        let healthy = mounted && stat_answers(target).await;
        Some(MountStatus {
            target: record.target,
            kind: record.kind,
            fingerprint: record.fingerprint,
            pid: record.pid,
            alive,
            mounted,
            healthy,
            reused: false,
        })
    }

    /// Reads every recorded daemon's figures and serves their sums (by kind) on `/metrics`.
    fn collect_daemon_stats(&self) {
        let records: Vec<Record> = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        type Key = (&'static str, &'static str, Vec<(&'static str, String)>);
        let mut totals: BTreeMap<Key, u64> = BTreeMap::new();
        for record in records {
            let path = self.file_for(&record.target, "stats", "json");
            let Some(stats) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<DaemonStats>(&b).ok())
            else {
                continue;
            };
            let kind = kind_label(&record.kind);
            for sample in stats.samples {
                let Some(&(name, _, _, merge)) =
                    DAEMON_METRICS.iter().find(|(n, ..)| *n == sample.name)
                else {
                    continue;
                };
                let labels: Vec<(&'static str, String)> = sample
                    .labels
                    .iter()
                    .filter(|(_, value)| value.len() <= 32)
                    .filter_map(|(key, value)| {
                        DAEMON_LABELS
                            .iter()
                            .find(|k| *k == key)
                            .map(|k| (*k, value.clone()))
                    })
                    .collect();
                let total = totals.entry((name, kind, labels)).or_default();
                *total = match merge {
                    Merge::Sum => total.saturating_add(sample.value),
                    Merge::Max => (*total).max(sample.value),
                };
            }
        }
        for ((name, kind, labels), value) in totals {
            if let Some(&(_, metric_type, help, _)) =
                DAEMON_METRICS.iter().find(|(n, ..)| *n == name)
            {
                let mut pairs: Vec<(&'static str, &str)> = vec![("kind", kind)];
                pairs.extend(labels.iter().map(|(k, v)| (*k, v.as_str())));
                self.config
                    .metrics
                    .set(name, help, metric_type, &pairs, value);
            }
        }
    }

    fn file_for(&self, target: &Path, dir: &str, extension: &str) -> PathBuf {
        let digest = Sha256::digest(target.as_os_str().as_encoded_bytes());
        self.config
            .state_dir
            .join(dir)
            .join(format!("{}.{extension}", hex::encode(&digest[..12])))
    }

    fn save(&self, record: &Record) -> std::io::Result<()> {
        let path = self.file_for(&record.target, "mounts", "json");
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::Write::write_all(&mut file, &body)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.target.clone(), record.clone());
        Ok(())
    }

    fn forget(&self, target: &Path) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(target);
        for (dir, extension) in [("mounts", "json"), ("logs", "log"), ("stats", "json")] {
            let path = self.file_for(target, dir, extension);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove");
            }
        }
    }
}

fn load_records(state_dir: &Path) -> BTreeMap<PathBuf, Record> {
    let mut records = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(state_dir.join("mounts")) else {
        return records;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
        {
            Ok(record) => {
                records.insert(record.target.clone(), record);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable mount record")
            }
        }
    }
    records
}

/// Targets are absolute, normal paths: no `..`, no `.`, not `/`.
fn check_target(target: &Path) -> Result<(), String> {
    let normal = target.is_absolute()
        && target.components().count() > 1
        && target
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if normal {
        Ok(())
    } else {
        Err(format!(
            "target {} must be an absolute path without . or .. components",
            target.display()
        ))
    }
}

/// Labels are bounded: a kind outside the known set is `other`.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "cos-fuse" => "cos-fuse",
        "goosefs-fuse" => "goosefs-fuse",
        _ => "other",
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn process_alive(pid: u32, recorded_ticks: u64) -> bool {
    pid != 0 && start_ticks(pid).is_some_and(|t| recorded_ticks == 0 || t == recorded_ticks)
}

/// SIGTERM to the daemon's group, then SIGKILL a moment later if it is still there.
async fn stop_group(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw <= 1 {
        return;
    }
    let group = Pid::from_raw(raw);
    let ticks = start_ticks(pid);
    let _ = killpg(group, Signal::SIGTERM);
    for _ in 0..50 {
        if start_ticks(pid) != ticks {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// Whether a stat of the mount point answers in time: a dead daemon answers ENOTCONN at once; a
/// hung one never answers.
async fn stat_answers(target: &Path) -> bool {
    let owned = target.to_owned();
    let stat = tokio::task::spawn_blocking(move || std::fs::metadata(&owned).is_ok());
    matches!(tokio::time::timeout(STAT_TIMEOUT, stat).await, Ok(Ok(true)))
}

fn log_tail(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(no log)".to_owned();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start));
    let _ = std::io::Read::read_to_end(&mut file, &mut bytes);
    let tail = String::from_utf8_lossy(&bytes);
    let tail = tail.trim();
    if tail.is_empty() {
        "(its log is empty)".to_owned()
    } else {
        format!("its log ends: {tail}")
    }
}

/// Makes the socket's directory private (0700) when the host creates it.
fn private_dir(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
