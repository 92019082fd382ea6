//! The simulator bucket `e2e bench cos` and `e2e bench goosefs` run against. [`Bench`] starts
//! `tcloud-sim` with fresh keys in a work directory of its own, sets the simulated network
//! between the clients and COS ([`Profile`]), and when stopped (or, on error or panic, dropped)
//! unmounts whatever is left under its work directory, stops the simulator and removes the
//! directory. It must not touch anything outside that directory, nor measure anything itself.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials};

use crate::bench::{COMMAND_TIMEOUT, READY_TIMEOUT, SharedBenchArgs, drop_page_cache, run_command};
use crate::env::{private_file, random_token};
use crate::process::{Proc, bin_path};

/// The simulator's default bucket.
pub(super) const BUCKET: &str = "sim-1250000000";

/// The simulated network between the clients and COS.
#[derive(Debug, Clone, Copy)]
pub(super) struct Profile {
    pub(super) name: &'static str,
    pub(super) network: Network,
    pub(super) latency_ms: u64,
    /// Per request; 0 is unlimited.
    pub(super) bandwidth_mbps: f64,
}

impl Profile {
    pub(super) fn describe(&self) -> String {
        let bandwidth = if self.bandwidth_mbps > 0.0 {
            format!("{} Mbit/s per connection", self.bandwidth_mbps)
        } else {
            "unlimited bandwidth".to_owned()
        };
        format!(
            "{}: first-byte latency {} ms per request, {bandwidth}",
            self.name, self.latency_ms
        )
    }
}

/// Which targets a profile is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Network {
    Loopback,
    Cos,
}

/// The simulator, the keys and the work directory of one benchmark; everything it started is
/// stopped and removed by [`Bench::stop`] or, on error or panic, on drop.
#[derive(Debug)]
pub(super) struct Bench {
    pub(super) workdir: PathBuf,
    sim: Proc,
    sim_url: String,
    pub(super) cos_url: String,
    /// `SecretId:SecretKey`, mode 0600: what both mounts read.
    pub(super) passwd: PathBuf,
    pub(super) client: ObjectClient,
    http: reqwest::Client,
    pub(super) cos_fuse: PathBuf,
    pub(super) s3fs: PathBuf,
    pub(super) step_timeout: Duration,
    /// How the client page cache is emptied before each timed read.
    pub(super) cache_note: String,
    stopped: bool,
}

impl Bench {
    pub(super) async fn start(args: &SharedBenchArgs) -> anyhow::Result<Bench> {
        let workdir = tempfile::Builder::new()
            .prefix("cos-bench-")
            .tempdir()?
            .keep();
        let started = Bench::start_in(args, workdir.clone()).await;
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&workdir);
        }
        started
    }

    async fn start_in(args: &SharedBenchArgs, workdir: PathBuf) -> anyhow::Result<Bench> {
        let sim_bin = bin_path("tcloud-sim")?;
        let cos_fuse = bin_path("cos-fuse")?;
        let secret_id = format!("AKIDbench{}", random_token(20));
        let secret_key = random_token(32);
        let keys = workdir.join("sim-keys");
        private_file(&keys, &format!("{secret_id} {secret_key}\n"))?;
        let passwd = workdir.join("passwd");
        private_file(&passwd, &format!("{secret_id}:{secret_key}\n"))?;
        std::fs::create_dir_all(workdir.join("logs"))?;
        let sim_args = [
            "--state-dir".to_owned(),
            workdir.join("sim-state").display().to_string(),
            "--keys-file".to_owned(),
            keys.display().to_string(),
            "--cos-bucket".to_owned(),
            BUCKET.to_owned(),
        ];
        let mut sim = Proc::spawn(
            "tcloud-sim",
            &sim_bin,
            &sim_args,
            &workdir.join("logs/tcloud-sim.log"),
        )?;
        let mut lines = Vec::new();
        for _ in 0..2 {
            lines.push(sim.read_line(READY_TIMEOUT).await?);
        }
        let url = |prefix: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("tcloud-sim printed {lines:?}, not `{prefix}URL`"))
        };
        let (sim_url, cos_url) = (url("listening ")?, url("cos ")?);
        let mut config = ObjectConfig::new(&cos_url, BUCKET);
        config.path_style = true;
        config.timeout = Duration::from_secs(120);
        let client = ObjectClient::new(
            config,
            ObjectCredentials::new(&secret_id, &secret_key, None),
        )?;
        let http = tcloud::client::http_client(Duration::from_secs(10))?;
        let cache_note = match drop_page_cache() {
            Ok(()) => "page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before each timed read, then the server's copy re-read through S3 so the server reads from memory as a real COS would".to_owned(),
            Err(e) => format!("page cache NOT dropped ({e}); the reads still reach the daemons: neither asks the kernel to keep a file's pages across opens"),
        };
        Ok(Bench {
            workdir,
            sim,
            sim_url,
            cos_url,
            passwd,
            client,
            http,
            cos_fuse,
            s3fs: args.s3fs.clone(),
            step_timeout: Duration::from_secs(args.timeout_secs.max(1)),
            cache_note,
            stopped: false,
        })
    }

    pub(super) async fn set_profile(&self, profile: &Profile) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "latency_ms": profile.latency_ms,
            "bandwidth_mbps": profile.bandwidth_mbps,
        });
        let url = format!("{}/_sim/cos-profile", self.sim_url);
        self.http
            .put(&url)
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .context("PUT /_sim/cos-profile")?;
        let now: serde_json::Value = self.http.get(&url).send().await?.json().await?;
        if now["latency_ms"].as_u64() != Some(profile.latency_ms) {
            bail!("the simulator's COS profile is {now}, not {body}");
        }
        Ok(())
    }

    /// Every request the simulator's COS endpoint has answered so far (`GET /_sim/stats`).
    pub(super) async fn cos_requests(&self) -> anyhow::Result<u64> {
        let url = format!("{}/_sim/stats", self.sim_url);
        let stats: serde_json::Value = self.http.get(&url).send().await?.json().await?;
        let ops = stats["cos"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("GET /_sim/stats has no \"cos\" counters: {stats}"))?;
        Ok(ops.values().filter_map(|op| op["calls"].as_u64()).sum())
    }

    /// The first line of `s3fs --version`; s3fs must be installed.
    pub(super) async fn s3fs_version(&self) -> anyhow::Result<String> {
        let version = run_command(&self.s3fs, &["--version"], COMMAND_TIMEOUT)
            .await
            .with_context(|| format!("{} is needed (apt-get install s3fs)", self.s3fs.display()))?;
        Ok(version.lines().next().unwrap_or("s3fs").trim().to_owned())
    }

    /// Unmounts whatever is left, stops the simulator and removes the work directory.
    pub(super) async fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let left = crate::cleanup::clean(&self.workdir);
        let sim = self.sim.stop(Duration::from_secs(15)).await;
        let remaining = crate::cleanup::mounts_under(&self.workdir);
        std::fs::remove_dir_all(&self.workdir)
            .with_context(|| format!("cannot remove {}", self.workdir.display()))?;
        if !left.is_empty() {
            eprintln!("e2e bench cos: had to clean up after the run: {left:?}");
        }
        if !remaining.is_empty() {
            bail!("mounts still present after cleanup: {remaining:?}");
        }
        sim?;
        Ok(())
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if !self.stopped {
            crate::cleanup::clean(&self.workdir);
            if let Some(pid) = self.sim.pid() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}
