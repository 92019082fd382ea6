//! The benchmarks behind `e2e bench cbs|cos|goosefs`. They are built on the harness (they start
//! the simulator, the drivers and the FUSE daemons through it); nothing in the harness may use
//! them. Not tests: they print figures beside their targets, and nothing fails on a number.
//!
//! This root holds what the benchmarks share and nothing specific to one: the flags `cos` and
//! `goosefs` have in common ([`SharedBenchArgs`]), the step limits, and the helpers that run a
//! command or blocking file work with a deadline, fan work out to tasks, and read a process's
//! peak memory and the machine's load. It must not use its submodules. [`cbs`], [`cos`] and
//! [`goosefs`] are the three benchmarks; `bucket` (the simulator bucket), `raw` (our object
//! client driving it directly), `mount` (one FUSE mount and its daemon) and `cpu` (what a
//! stretch of work cost in CPU) are what `cos` and `goosefs` share.

pub mod cbs;
pub mod cos;
pub mod goosefs;

mod bucket;
mod cpu;
mod mount;
mod raw;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;

const MIB: u64 = 1024 * 1024;
/// How long a started process has to announce itself or mount.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a helper command (`umount`, `s3fs --version`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// cos-fuse's peak resident memory must stay under this, in MiB, with default options.
const PEAK_MEMORY_TARGET_MIB: f64 = 256.0;

/// What `e2e bench cos` and `e2e bench goosefs` share: the COS profile, s3fs, the step limit.
#[derive(Debug, Clone, Args)]
pub struct SharedBenchArgs {
    /// First-byte latency of every COS request in the COS profile, in ms.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Bandwidth of each COS request (each request and response body) in the COS profile,
    /// in Mbit/s.
    #[arg(long, default_value_t = 400.0)]
    pub bandwidth_mbps: f64,
    /// The s3fs program (found on PATH unless a path is given).
    #[arg(long, default_value = "s3fs")]
    pub s3fs: PathBuf,
    /// Longest one measured step may take, in seconds; the run fails past it.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
}

/// Runs `program args...`, killing it after `timeout`; returns its standard output.
async fn run_command(program: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    // On timeout the future, and with it the child, is dropped: kill_on_drop kills it.
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!(
                "{} {args:?} took longer than {timeout:?}",
                program.display()
            )
        })??;
    if !output.status.success() {
        bail!(
            "{} {args:?} failed with {}: {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs blocking file work on its own thread, failing after `timeout`. A thread stuck in a dead
/// mount is left behind; it gets an error once the mount's daemon is killed.
async fn blocking<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-io".to_owned())
        .spawn(move || {
            let _ = done.send(work());
        })
        .context("cannot start a thread")?;
    match tokio::time::timeout(timeout, result).await {
        Ok(Ok(result)) => result.with_context(|| what.to_owned()),
        Ok(Err(_)) => bail!("{what}: the worker thread panicked"),
        Err(_) => bail!("{what} took longer than {timeout:?}"),
    }
}

/// Runs `f(0..count)` on `workers` tasks; returns every result (in no particular order).
async fn for_each_index<T, F, Fut>(count: u64, workers: usize, f: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (next, f) = (Arc::clone(&next), f.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(out);
                }
                out.push(f(index).await?);
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a worker task failed")??);
    }
    Ok(all)
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// The resident memory of process `pid` now, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Empties the kernel's page cache (needs root).
fn drop_page_cache() -> std::io::Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3")
}

/// Whether `point` is itself a mount point (not merely a directory under one).
fn is_mount_point(point: &Path) -> bool {
    crate::cleanup::mounts_under(point)
        .iter()
        .any(|p| Path::new(p) == point)
}

/// Runs `work` until it ends or Ctrl-C (the caller then stops the bench either way).
async fn interruptible(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    }
}
