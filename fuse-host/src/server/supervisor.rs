//! The supervisor of daemons: starts a configured program for a mount, hands it its credentials,
//! waits for its mount, reaps it, and tears mounts down (unmount, let the daemon finish its
//! uploads, stop its process group). One lock per target serialises the requests for a target;
//! what a recorded mount looks like now (process alive, mounted, answering) is observed afresh on
//! every request. It keeps records through [`Records`] and never reads the socket.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csi_common::mount::{LinuxMounter, Mounter};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

use super::config::HostConfig;
use super::describe;
use super::kept::{self, Kept, Start};
use super::leftovers::{self, Launch, Launches, program_command};
use super::logs::{self, Origin};
use super::records::{Record, Records};
use super::stats::{STATS_ENV, kind_label};
use crate::protocol::{ErrorCode, MountRequest, MountStatus, Response};

/// How long one stat of a mount may take before the mount counts as hung.
const STAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unmount may block before the mount is detached lazily instead.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a failed daemon's log goes into the error.
const LOG_TAIL_BYTES: u64 = 2048;

/// The host's daemons and their mounts.
#[derive(Debug)]
pub(super) struct Supervisor {
    config: HostConfig,
    mounter: LinuxMounter,
    records: Records,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// What each mount was started with (its keys included), while it lives; also on disk.
    launched: Mutex<HashMap<PathBuf, Launch>>,
    launches: Launches,
    /// Set when the host stops: the followers of the daemons' logs end (the next host follows on).
    stopping: tokio::sync::watch::Sender<bool>,
    /// The kernel connections of mounts whose daemons keep them apart.
    kept: Kept,
}

impl Supervisor {
    pub(super) fn new(config: HostConfig, records: Records) -> Supervisor {
        // Beside the socket: a hostPath under /run, a tmpfs, private to root.
        let launches = Launches::new(
            config
                .socket
                .parent()
                .unwrap_or(Path::new("/run/csi-fuse"))
                .join("launches"),
        );
        Supervisor {
            config,
            mounter: LinuxMounter::new(),
            records,
            locks: Mutex::new(HashMap::new()),
            launched: Mutex::new(HashMap::new()),
            launches,
            stopping: tokio::sync::watch::Sender::new(false),
            kept: Kept::default(),
        }
    }

    /// Takes over the recorded mounts of an earlier host: what they were started with, the logs
    /// of the daemons still running (from where their files end now), and the connections of
    /// those that keep them, whose daemons are then watched (and restarted if they die) and,
    /// when this host's program is another file than theirs, replaced by it.
    pub(super) fn adopt(self: &Arc<Self>) {
        self.launches.retain(&self.records.targets());
        for record in self.records.all() {
            if let Some(launch) = self.launches.load(&record.target) {
                self.launched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(record.target.clone(), launch);
            }
            if process_alive(record.pid, record.start_ticks) {
                let path = self.records.file_for(&record.target, "logs", "log");
                let offset = logs::end_of(&path);
                self.follow_log(&record.target, path, offset, record.pid, record.start_ticks);
                if self.config.keeping_kinds.contains(&record.kind) {
                    let host = Arc::clone(self);
                    tokio::spawn(async move { host.adopt_connection(record).await });
                }
            }
        }
    }

    /// Gets a re-adopted daemon's connection, watches it, and has this host's program take the
    /// mount over when it is another file than the daemon's.
    async fn adopt_connection(self: Arc<Self>, record: Record) {
        let target = record.target.clone();
        let lock = self.lock(&target);
        let _guard = lock.lock().await;
        let path = kept::control_path(&self.records, &target);
        match kept::fetch(path, record.pid, Duration::from_secs(5)).await {
            Ok(dev) => self.kept.insert(&target, dev),
            Err(e) => {
                tracing::warn!(target = %target.display(), pid = record.pid, error = %e, "cannot get the connection of a re-adopted daemon: if it dies, the mount breaks until the next publish");
                return;
            }
        }
        self.watch(target.clone(), record.pid, record.start_ticks);
        let Some(program) = self.config.programs.get(&record.kind) else {
            return;
        };
        let running = kept::program_identity(Path::new(&format!("/proc/{}/exe", record.pid)));
        if running.is_none() || running == kept::program_identity(program) {
            return;
        }
        let Some(mut launch) = self.launch_of(&target) else {
            tracing::warn!(target = %target.display(), "a daemon of an older program cannot be replaced: its launch is unknown");
            return;
        };
        launch.program = program.clone();
        match self.restart(&launch, Start::TakeOver).await {
            Ok(pid) => {
                tracing::info!(target = %target.display(), old = record.pid, pid, program = %program.display(), "a newer program took the mount over")
            }
            Err(e) => {
                tracing::error!(target = %target.display(), error = %e, "taking the mount over failed; the older daemon serves on")
            }
        }
    }

    fn count_started(&self, kind: &str) {
        self.config.metrics.inc(
            "tencentcloud_csi_fuse_host_daemons_started_total",
            "FUSE daemons the host started, by kind.",
            &[("kind", kind_label(kind))],
        );
    }

    fn launch_of(&self, target: &Path) -> Option<Launch> {
        self.launched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    /// Watches a daemon that is not this host's child until it exits, then acts as for a child.
    fn watch(self: &Arc<Self>, target: PathBuf, pid: u32, ticks: u64) {
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            while process_alive(pid, ticks) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if let Some(host) = host.upgrade() {
                host.after_exit(target, pid, ticks).await;
            }
        });
    }

    /// A daemon exited. When its mount is still recorded with it, still mounted, and its
    /// connection kept, another daemon is started on that connection: the mount heals in place.
    /// A start that fails is tried again after a growing pause; once the mount's budget of
    /// restarts is spent, the host lets go of the connection, which ends it: the requests
    /// waiting on it fail (ENOTCONN) instead of hanging, and the next publish repairs the mount.
    async fn after_exit(self: &Arc<Self>, target: PathBuf, pid: u32, ticks: u64) {
        let mut attempt = 0;
        while let Some(pause) = self.heal(&target, pid, ticks, attempt).await {
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One attempt of [`Self::after_exit`]; `Some(pause)`: try again after it.
    async fn heal(
        self: &Arc<Self>,
        target: &Path,
        pid: u32,
        ticks: u64,
        attempt: u32,
    ) -> Option<Duration> {
        if *self.stopping.borrow() {
            return None;
        }
        let lock = self.lock(target);
        let _guard = lock.lock().await;
        let record = self.records.get(target)?;
        if (record.pid, record.start_ticks) != (pid, ticks) {
            return None;
        }
        let dev = self.kept.get(target)?;
        if !matches!(self.mounter.mount_at(target), Ok(Some(_))) {
            return None;
        }
        let kind = kind_label(&record.kind);
        let count = |result: &'static str| {
            self.config.metrics.inc(
                "tencentcloud_csi_fuse_host_daemon_restarts_total",
                "Daemons restarted onto their mount's kept connection after they died, by result.",
                &[("kind", kind), ("result", result)],
            );
        };
        if !self.kept.may_heal(target) {
            tracing::error!(target = %target.display(), "the mount's daemon cannot be kept running: letting its connection go, so the mount fails (ENOTCONN) until the next publish repairs it");
            self.kept.remove(target);
            count("given_up");
            return None;
        }
        let result = match self.launch_of(target) {
            Some(mut launch) => {
                // This host's program for the kind: after an upgrade, the new image's.
                if let Some(program) = self.config.programs.get(&record.kind) {
                    launch.program = program.clone();
                }
                self.restart(&launch, Start::Inherit(dev)).await
            }
            None => Err("its launch is unknown".to_owned()),
        };
        match result {
            Ok(new) => {
                tracing::warn!(target = %target.display(), dead = pid, pid = new, "restarted a dead daemon on its mount's connection: the mount stayed");
                count("ok");
                None
            }
            Err(e) => {
                let pause = self.config.restart_backoff * 2u32.saturating_pow(attempt.min(6));
                tracing::error!(target = %target.display(), error = %e, ?pause, "restarting a dead daemon failed; trying again");
                count("failed");
                Some(pause)
            }
        }
    }

    /// Starts a daemon on the kept connection of a live mount (`Inherit`, `TakeOver`), waits
    /// until it serves (its control socket answers with its PID), and records it.
    async fn restart(self: &Arc<Self>, launch: &Launch, start: Start) -> Result<u32, String> {
        let request = &launch.request;
        let target = &request.target;
        let (mut child, pid, ticks, log_path) = self
            .spawn(&launch.program, request, Some(&start))
            .map_err(|r| match r.error {
                Some((_, message)) => message,
                None => "cannot start it".to_owned(),
            })?;
        let path = kept::control_path(&self.records, target);
        let fetched = tokio::select! {
            fetched = kept::fetch(path, pid, self.config.ready_timeout) => fetched.map_err(|e| e.to_string()),
            status = child.wait() => Err(format!("it exited ({status:?})")),
        };
        match fetched {
            Ok(dev) => {
                self.kept.insert(target, dev);
                if let Err(e) = self.records.save(&Record::of(request, pid, ticks)) {
                    tracing::error!(error = %e, target = %target.display(), "cannot record a restarted daemon");
                }
                self.reap(child, target.clone(), request.kind.clone(), pid, ticks);
                self.count_started(&request.kind);
                Ok(pid)
            }
            Err(e) => {
                stop_group(pid).await;
                let _ = child.wait().await;
                Err(format!(
                    "{} ({}) did not serve {}: {e}; {}",
                    launch.program.display(),
                    start.label(),
                    target.display(),
                    log_tail(&log_path)
                ))
            }
        }
    }

    /// Re-emits what the daemon `pid` appends to its log `path` from `offset` on, while it lives.
    fn follow_log(&self, target: &Path, path: PathBuf, offset: u64, pid: u32, ticks: u64) {
        let origin = Origin {
            volume: describe::volume_of(target),
            target: target.display().to_string(),
        };
        let alive = move || process_alive(pid, ticks);
        let stop = self.stopping.subscribe();
        tokio::spawn(logs::follow(path, offset, origin, alive, stop));
    }

    /// Keeps what the mount at `request.target` runs with (its keys included).
    fn remember(&self, program: &Path, request: &MountRequest) {
        let launch = Launch {
            program: program.to_owned(),
            request: request.clone(),
        };
        self.launches.save(&launch);
        self.launched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request.target.clone(), launch);
    }

    /// Ends the followers of the daemons' logs: the host is stopping.
    pub(super) fn stop_following(&self) {
        self.stopping.send_replace(true);
    }

    pub(super) fn config(&self) -> &HostConfig {
        &self.config
    }

    pub(super) fn records(&self) -> &Records {
        &self.records
    }

    fn lock(&self, target: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.to_owned())
            .or_default()
            .clone()
    }

    /// Mounts `request.target`, or confirms an identical healthy mount, or repairs a broken one.
    pub(super) async fn mount(self: &Arc<Self>, request: MountRequest) -> Response {
        if let Err(message) = check_target(&request.target, &self.config.target_dir) {
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
                    // A host restarted since the mount began knows its keys again.
                    self.remember(&program, &request);
                    return Response::ok(vec![MountStatus {
                        reused: true,
                        details: None,
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
                "tencentcloud_csi_fuse_host_repairs_total",
                "Broken FUSE mounts (dead or hung daemon) torn down to be mounted again.",
                &[("kind", kind_label(&status.kind))],
            );
        }
        // A repair keeps the dead daemon's log: the new one appends to it.
        if let Err(response) = self.tear_down(&target, true).await {
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
                self.count_started(&request.kind);
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
        let keeping = self.config.keeping_kinds.contains(&request.kind);
        let (mut child, pid, ticks, log_path) =
            self.spawn(program, request, keeping.then_some(&Start::Fresh))?;
        let deadline = Instant::now() + self.config.ready_timeout;
        self.wait_mounted(&mut child, program, request, (pid, deadline, &log_path))
            .await?;
        self.remember(program, request);
        if let Err(e) = self.records.save(&Record::of(request, pid, ticks)) {
            tracing::error!(error = %e, target = %target.display(), "cannot record a mount; it will not be re-adopted after a host restart");
        }
        if keeping {
            let path = kept::control_path(&self.records, target);
            match kept::fetch(path, pid, self.config.ready_timeout).await {
                Ok(dev) => self.kept.insert(target, dev),
                Err(e) => {
                    tracing::warn!(target = %target.display(), error = %e, "cannot keep the mount's connection: if its daemon dies, the mount breaks until the next publish");
                }
            }
        }
        self.reap(child, target.clone(), request.kind.clone(), pid, ticks);
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
            details: None,
        })
    }

    /// Starts `program` for `request` (its log, its keys on standard input, its cgroup, and for
    /// a keeping kind its connection as `start` says). Returns the child, its PID and start
    /// time, and its log.
    fn spawn(
        &self,
        program: &Path,
        request: &MountRequest,
        start: Option<&Start>,
    ) -> Result<(tokio::process::Child, u32, u64, PathBuf), Response> {
        let target = &request.target;
        let log_path = self.records.file_for(target, "logs", "log");
        let failed = |what: &str, e: std::io::Error| {
            Response::error(ErrorCode::Failed, format!("{what}: {e}"))
        };
        // Appended to (a repaired mount keeps its dead daemon's lines); its output goes there
        // directly, so it outlives this host, and is followed from here on.
        let (output, offset) =
            logs::daemon_output(&log_path).map_err(|e| failed("cannot open the daemon log", e))?;
        let errors = output
            .try_clone()
            .map_err(|e| failed("cannot open the daemon log", e))?;
        let extra = start
            .map(|s| kept::arguments(&self.records, target, s))
            .unwrap_or_default();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        // The keys go in the mount's keys file, which a republish with new keys rewrites.
        let daemon = self.launches.daemon_request(request);
        let mut command = program_command(&self.config, program, &daemon, &extra);
        command
            .env(STATS_ENV, self.records.file_for(target, "stats", "json"))
            .stdout(output)
            .stderr(errors);
        let inherited = match start {
            Some(Start::Inherit(dev)) => Some(Arc::clone(dev)),
            _ => None,
        };
        kept::before_exec(
            &mut command,
            inherited,
            kept::cgroups_for(&self.config, target),
        );
        let mut child = command
            .spawn()
            .map_err(|e| failed(&format!("cannot start {}", program.display()), e))?;
        let pid = child.id().unwrap_or(0);
        let ticks = start_ticks(pid).unwrap_or(0);
        self.follow_log(target, log_path.clone(), offset, pid, ticks);
        if let Some(mut stdin) = child.stdin.take() {
            let secret = daemon.secret.clone().unwrap_or_default();
            // Written from a task: a daemon reads it at once, and the caller must not wait.
            tokio::spawn(async move {
                if let Err(e) = stdin.write_all(secret.as_bytes()).await {
                    tracing::warn!(error = %e, "cannot hand the daemon its credentials");
                }
            });
        }
        Ok((child, pid, ticks, log_path))
    }

    /// Waits for a new daemon's mount to come up.
    async fn wait_mounted(
        self: &Arc<Self>,
        child: &mut tokio::process::Child,
        program: &Path,
        request: &MountRequest,
        (pid, deadline, log_path): (u32, Instant, &Path),
    ) -> Result<(), Response> {
        let target = &request.target;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let _ = self.tear_down_mount(target).await;
                return Err(Response::error(
                    ErrorCode::Failed,
                    format!(
                        "{} exited ({status}) before mounting {}: {}",
                        program.display(),
                        target.display(),
                        log_tail(log_path)
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
                        log_tail(log_path)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Reaps the child daemon when it exits (it never lingers as a zombie), then acts on its
    /// exit ([`Self::after_exit`]).
    fn reap(
        self: &Arc<Self>,
        mut child: tokio::process::Child,
        target: PathBuf,
        kind: String,
        pid: u32,
        ticks: u64,
    ) {
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::info!(target = %target.display(), pid, ?status, "FUSE daemon exited");
            if let Some(host) = host.upgrade() {
                host.config.metrics.inc(
                    "tencentcloud_csi_fuse_host_daemon_exits_total",
                    "FUSE daemons that exited, for any reason, by kind.",
                    &[("kind", kind_label(&kind))],
                );
                host.after_exit(target, pid, ticks).await;
            }
        });
    }

    /// Unmounts `target` and stops its daemon; nothing mounted is fine.
    pub(super) async fn unmount(self: &Arc<Self>, target: &Path) -> Response {
        if let Err(message) = check_target(target, &self.config.target_dir) {
            return Response::error(ErrorCode::Invalid, message);
        }
        let guard = self.lock(target).lock_owned().await;
        match self.tear_down(target, false).await {
            Ok(None) => Response::ok(Vec::new()),
            // In the background, holding the target's lock: a new daemon of the mount waits,
            // so the clean-up never takes one of its uploads for a dead daemon's.
            Ok(Some(launch)) => {
                let host = Arc::clone(self);
                tokio::spawn(async move {
                    leftovers::abort_left_uploads(&host.config, &launch).await;
                    drop(guard);
                });
                Response::ok(Vec::new())
            }
            Err(response) => response,
        }
    }

    /// Unmounts `target`, lets its daemon finish (then kills it), and forgets the record (and,
    /// unless `keep_log`, the daemon's log). Returns what the mount was started with when it
    /// keeps an upload journal, which only a program run with the same keys can clean up.
    async fn tear_down(&self, target: &Path, keep_log: bool) -> Result<Option<Launch>, Response> {
        let record = self.records.get(target);
        self.tear_down_mount(target).await?;
        let launch = self
            .launched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(target);
        self.launches.remove(target);
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
        self.kept.remove(target);
        kept::forget_cgroups(&self.config, target);
        if keep_log {
            self.records.forget_keeping_log(target);
        } else {
            self.records.forget(target);
        }
        // However its daemon ended (by itself, killed, dead already), the journal may name
        // uploads: a failed upload whose abort failed too stays there. The clean-up connects to
        // nothing when it is empty.
        Ok(launch.filter(|l| leftovers::journals(&self.config, l)))
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

    /// The state of the mount at `target`, if one is recorded.
    pub(super) async fn status(self: &Arc<Self>, target: &Path) -> Response {
        Response::ok(self.observe(target).await.into_iter().collect())
    }

    /// The state of every recorded mount.
    pub(super) async fn list(self: &Arc<Self>) -> Vec<MountStatus> {
        let targets: Vec<PathBuf> = self.records.targets();
        let mut statuses = Vec::new();
        for target in targets {
            statuses.extend(self.observe(&target).await);
        }
        statuses
    }

    /// The recorded mount at `target` as it is now; `None` when nothing is recorded.
    async fn observe(&self, target: &Path) -> Option<MountStatus> {
        let record = self.records.get(target)?;
        let alive = process_alive(record.pid, record.start_ticks);
        let mounted = matches!(self.mounter.mount_at(target), Ok(Some(_)));
        let healthy = mounted && stat_answers(target).await;
        let details = describe::details(&self.records, &record, alive);
        Some(MountStatus {
            target: record.target,
            kind: record.kind,
            fingerprint: record.fingerprint,
            pid: record.pid,
            alive,
            mounted,
            healthy,
            reused: false,
            details: Some(details),
        })
    }
}

/// Targets are absolute, normal paths (no `..`) strictly under the host's target directory.
fn check_target(target: &Path, target_dir: &Path) -> Result<(), String> {
    let normal = target.is_absolute()
        && target
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if normal && target.starts_with(target_dir) && target != target_dir {
        Ok(())
    } else {
        Err(format!(
            "target {} must be an absolute path without .. components under {} (--target-dir)",
            target.display(),
            target_dir.display()
        ))
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

/// Whether `pid` is still the process recorded with start time `recorded_ticks`. A record
/// without a start time (0: it could not be read when the daemon started) matches no process: a
/// PID reused since would otherwise be adopted, and later signalled, as the daemon.
fn process_alive(pid: u32, recorded_ticks: u64) -> bool {
    pid != 0 && recorded_ticks != 0 && start_ticks(pid) == Some(recorded_ticks)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_start_time_matches_no_process() {
        let pid = std::process::id();
        let ticks = start_ticks(pid).expect("our own /proc/PID/stat");
        assert!(ticks != 0);
        assert!(process_alive(pid, ticks), "the recorded process itself");
        assert!(!process_alive(pid, ticks + 1), "a later process on the PID");
        assert!(
            !process_alive(pid, 0),
            "a record with start time 0 must not adopt whatever process now has PID {pid}"
        );
        assert!(!process_alive(1, 0), "nor PID 1");
    }
}
