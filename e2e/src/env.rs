//! One test environment: the simulator and one driver (mode `all`) wired together with fresh keys,
//! in a work directory that is removed, with every mount and loop device in it, when it stops
//! or is dropped.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;

use crate::client::CsiClient;
use crate::process::{Proc, bin_path};

pub const NODE_ID: &str = "ins-sim00001";
pub const REGION: &str = "ap-guangzhou";
/// The bucket the simulator serves by default.
pub const SIM_BUCKET: &str = "sim-1250000000";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    Cbs,
    Cfs,
    Cos,
    Goosefs,
}

impl Driver {
    pub const ALL: [Driver; 4] = [Driver::Cbs, Driver::Cfs, Driver::Cos, Driver::Goosefs];

    pub fn binary(self) -> &'static str {
        match self {
            Driver::Cbs => "csi-cbs",
            Driver::Cfs => "csi-cfs",
            Driver::Cos => "csi-cos",
            Driver::Goosefs => "csi-goosefs",
        }
    }

    /// The CSI driver name each binary reports by default.
    pub fn csi_name(self) -> &'static str {
        match self {
            Driver::Cbs => "com.tencent.cloud.csi.cbs",
            Driver::Cfs => "com.tencent.cloud.csi.cfs",
            Driver::Cos => "com.tencent.cloud.csi.cosfs",
            Driver::Goosefs => "com.tencent.cloud.csi.goosefs",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    /// Where to work; a fresh temporary directory when `None`.
    pub workdir: Option<PathBuf>,
    /// The CSI socket; `<workdir>/csi/csi.sock` when `None`.
    pub socket: Option<PathBuf>,
    pub sim_args: Vec<String>,
    pub driver_args: Vec<String>,
}

#[derive(Debug)]
pub struct Env {
    pub driver_kind: Driver,
    pub workdir: PathBuf,
    pub socket: PathBuf,
    /// `http://127.0.0.1:PORT` of the simulator.
    pub sim_url: String,
    pub credentials_dir: PathBuf,
    pub sim: Proc,
    pub driver: Proc,
    /// The API keys the simulator accepts (the driver reads them from `credentials_dir`; tests
    /// put them in CSI secrets).
    pub secret_id: String,
    pub secret_key: String,
    /// `http://127.0.0.1:PORT` of the simulator's COS (S3) endpoint.
    pub cos_url: String,
    /// The FUSE host (`cos-fuse host`) of the FUSE drivers.
    pub fuse_host: Option<FuseHost>,
    driver_args: Vec<String>,
    /// Entries of the work directory this run created (all of it when it created the directory).
    created: Vec<PathBuf>,
    stopped: bool,
}

/// Writes a file only its owner can read (keys, passwd files).
pub fn private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Random letters and digits, for fresh keys.
pub fn random_token(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(len)
        .collect()
}

impl Env {
    pub async fn start(driver_kind: Driver, options: EnvOptions) -> anyhow::Result<Env> {
        let sim_bin = bin_path("tcloud-sim")?;
        let driver_bin = bin_path(driver_kind.binary())?;
        let (workdir, mut created) = match options.workdir {
            Some(dir) => {
                let existed = dir.exists();
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let dir = dir.canonicalize()?;
                (dir.clone(), if existed { Vec::new() } else { vec![dir] })
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("csi-e2e-")
                    .tempdir()?
                    .keep();
                (dir.clone(), vec![dir])
            }
        };
        let mut track = |path: PathBuf| {
            if !created.iter().any(|c| path.starts_with(c)) {
                created.push(path.clone());
            }
            path
        };
        let logs = track(workdir.join("logs"));
        std::fs::create_dir_all(&logs)?;
        let socket = match options.socket {
            Some(socket) => socket,
            None => track(workdir.join("csi")).join("csi.sock"),
        };

        // Fresh keys for this run: the simulator reads them from a file, the driver from a
        // secret-style directory, so they never appear on a command line.
        let secret_id = format!("AKIDe2e{}", random_token(20));
        let secret_key = random_token(32);
        let keys_file = track(workdir.join("sim-keys"));
        private_file(&keys_file, &format!("{secret_id} {secret_key}\n"))?;
        let credentials_dir = track(workdir.join("credentials"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&credentials_dir)?;
        private_file(&credentials_dir.join("SecretId"), &secret_id)?;
        private_file(&credentials_dir.join("SecretKey"), &secret_key)?;
        let state_dir = track(workdir.join("sim-state"));

        let mut sim_args = vec![
            "--state-dir".to_owned(),
            state_dir.display().to_string(),
            "--keys-file".to_owned(),
            keys_file.display().to_string(),
            "--region".to_owned(),
            REGION.to_owned(),
        ];
        sim_args.extend(options.sim_args);
        let mut sim = Proc::spawn(
            "tcloud-sim",
            &sim_bin,
            &sim_args,
            &logs.join("tcloud-sim.log"),
        )?;
        let line = sim.read_line(READY_TIMEOUT).await?;
        let Some(sim_url) = line.strip_prefix("listening ").map(str::to_owned) else {
            bail!("tcloud-sim printed {line:?} instead of `listening URL`");
        };
        let line = sim.read_line(READY_TIMEOUT).await?;
        let Some(cos_url) = line.strip_prefix("cos ").map(str::to_owned) else {
            bail!("tcloud-sim printed {line:?} instead of `cos URL`");
        };

        let mut driver_args = vec![
            "--endpoint".to_owned(),
            format!("unix://{}", socket.display()),
            "--mode".to_owned(),
            "all".to_owned(),
            "--node-id".to_owned(),
            NODE_ID.to_owned(),
            "--region".to_owned(),
            REGION.to_owned(),
            "--cloud-endpoint".to_owned(),
            sim_url.clone(),
            "--metadata-endpoint".to_owned(),
            format!("{sim_url}/instances/{NODE_ID}"),
            "--credentials-dir".to_owned(),
            credentials_dir.display().to_string(),
        ];
        if driver_kind == Driver::Cbs {
            // The simulator shows attached disks to each instance under its own device tree.
            let instance = state_dir.join("instances").join(NODE_ID);
            driver_args.extend([
                "--device-dir".to_owned(),
                instance.join("dev/disk/by-id").display().to_string(),
                "--sysfs-root".to_owned(),
                instance.join("sys").display().to_string(),
            ]);
        }
        if driver_kind == Driver::Cfs {
            // No NFS client in this kernel: the documented seam resolves the simulator's exports.
            driver_args.extend([
                "--sim-nfs-exports".to_owned(),
                state_dir.join("cfs/exports").display().to_string(),
                "--mounts-dir".to_owned(),
                workdir.join("cfs-mounts").display().to_string(),
                "--controller-dir".to_owned(),
                workdir.join("cfs-controller").display().to_string(),
                // The simulated cluster's network, so StorageClasses (and csi-sanity) may omit it.
                "--default-vpc-id".to_owned(),
                "vpc-sim00001".to_owned(),
                "--default-subnet-id".to_owned(),
                "subnet-sim00001".to_owned(),
            ]);
            track(workdir.join("cfs-mounts"));
            track(workdir.join("cfs-controller"));
        }
        let fuse_host = if matches!(driver_kind, Driver::Cos | Driver::Goosefs) {
            let host = FuseHost::start(&workdir, &logs).await?;
            track(host.state_dir.clone());
            track(
                host.socket
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            );
            let mounts = track(workdir.join("fuse-mounts"));
            driver_args.extend([
                "--fuse-host-socket".to_owned(),
                host.socket.display().to_string(),
                "--mounts-dir".to_owned(),
                mounts.display().to_string(),
                // The simulated bucket, so StorageClasses (and csi-sanity) may omit it.
                "--default-url".to_owned(),
                cos_url.clone(),
                "--default-bucket".to_owned(),
                SIM_BUCKET.to_owned(),
            ]);
            if driver_kind == Driver::Goosefs {
                let cache = track(workdir.join("goosefs-cache"));
                driver_args.extend(["--cache-dir".to_owned(), cache.display().to_string()]);
            }
            Some(host)
        } else {
            None
        };
        // Staging and target paths lie under kubelet's directory (see `kubelet.rs`) unless the
        // caller names another one (e.g. csi-sanity's mount directories).
        if !options
            .driver_args
            .iter()
            .any(|a| a.starts_with("--kubelet-dir"))
        {
            driver_args.extend([
                "--kubelet-dir".to_owned(),
                workdir.join("kubelet").display().to_string(),
            ]);
        }
        driver_args.extend(options.driver_args);
        let driver_log = logs.join(format!("{}.log", driver_kind.binary()));
        let driver = Proc::spawn(driver_kind.binary(), &driver_bin, &driver_args, &driver_log)?;
        let mut env = Env {
            driver_args,
            driver_kind,
            workdir,
            socket,
            sim_url,
            credentials_dir,
            sim,
            driver,
            secret_id,
            secret_key,
            cos_url,
            fuse_host,
            created,
            stopped: false,
        };
        if let Err(e) = CsiClient::wait_ready(&env.socket, READY_TIMEOUT).await {
            let log = env.driver.log_tail();
            env.stop().await.ok();
            return Err(e.context(format!("driver log:\n{log}")));
        }
        Ok(env)
    }

    /// Kills the driver with SIGKILL (a crash: no cleanup runs) and starts it again with the same
    /// arguments, appending to the same log.
    pub async fn restart_driver(&mut self) -> anyhow::Result<CsiClient> {
        self.driver.kill().await?;
        let log = self.driver.log.clone();
        let previous = std::fs::read_to_string(&log).unwrap_or_default();
        let restarted_log = log.with_extension("restarted.log");
        self.driver = Proc::spawn(
            self.driver_kind.binary(),
            &bin_path(self.driver_kind.binary())?,
            &self.driver_args,
            &restarted_log,
        )?;
        std::fs::write(log.with_extension("before-restart.log"), previous)?;
        CsiClient::wait_ready(&self.socket, READY_TIMEOUT).await
    }

    /// The simulator's per-action call and error counts (`GET /_sim/stats`).
    pub async fn sim_stats(&self) -> anyhow::Result<serde_json::Value> {
        let http = tcloud::client::http_client(Duration::from_secs(10))?;
        Ok(http
            .get(format!("{}/_sim/stats", self.sim_url))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Zeroes the simulator's counters (`DELETE /_sim/stats`).
    pub async fn reset_sim_stats(&self) -> anyhow::Result<()> {
        let http = tcloud::client::http_client(Duration::from_secs(10))?;
        http.delete(format!("{}/_sim/stats", self.sim_url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The simulator's default COS bucket, through our S3 client with this run's keys.
    pub fn bucket(&self) -> anyhow::Result<cos_client::ObjectClient> {
        Ok(cos_client::ObjectClient::new(
            cos_client::ObjectConfig::new(&self.cos_url, SIM_BUCKET),
            cos_client::ObjectCredentials::new(&self.secret_id, &self.secret_key, None),
        )?)
    }

    pub async fn client(&self) -> anyhow::Result<CsiClient> {
        CsiClient::connect(&self.socket).await
    }

    /// Stops the driver and the simulator gracefully, then removes mounts, loop devices and the
    /// files this run created. Errors are reported after everything was attempted.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let driver = self.driver.stop(STOP_GRACE).await;
        let mut statuses = vec![(self.driver.name.clone(), driver)];
        if let Some(host) = &mut self.fuse_host {
            statuses.push((host.proc.name.clone(), host.proc.stop(STOP_GRACE).await));
            host.kill_daemons();
        }
        let sim = self.sim.stop(STOP_GRACE).await;
        statuses.push((self.sim.name.clone(), sim));
        self.remove_leftovers();
        for (name, status) in statuses {
            let status = status?;
            if !status.success() {
                bail!("{name} exited with {status} on SIGTERM");
            }
        }
        Ok(())
    }

    fn remove_leftovers(&self) {
        crate::cleanup::clean(&self.workdir);
        for path in &self.created {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.stopped {
            // A failed test: the children die with their handles (kill_on_drop); wait for that
            // before unmounting, so nothing is re-created behind our back.
            if let Some(host) = &self.fuse_host {
                host.kill_daemons();
            }
            let procs = [
                Some(&self.driver),
                self.fuse_host.as_ref().map(|h| &h.proc),
                Some(&self.sim),
            ];
            for proc in procs.into_iter().flatten() {
                if let Some(pid) = proc.pid() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            self.remove_leftovers();
        }
    }
}

/// The FUSE host of an environment: `cos-fuse host` with its socket and state in the work
/// directory. Its daemons outlive it by design; the environment kills them when it stops.
#[derive(Debug)]
pub struct FuseHost {
    pub proc: Proc,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// `127.0.0.1:PORT` of its `/metrics`.
    pub metrics_address: String,
    log: PathBuf,
}

impl FuseHost {
    /// Starts `cos-fuse host` with its socket and state under `workdir`, its log in `logs`.
    pub async fn start(workdir: &Path, logs: &Path) -> anyhow::Result<FuseHost> {
        let socket = workdir.join("fuse-host").join("host.sock");
        let state_dir = workdir.join("fuse-state");
        let log = logs.join("cos-fuse-host.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics_address = format!("127.0.0.1:{port}");
        let proc = Self::spawn(&socket, &state_dir, &metrics_address, &log)?;
        let host = FuseHost {
            proc,
            socket,
            state_dir,
            metrics_address,
            log,
        };
        host.wait_ready().await?;
        Ok(host)
    }

    fn spawn(
        socket: &Path,
        state_dir: &Path,
        metrics_address: &str,
        log: &Path,
    ) -> anyhow::Result<Proc> {
        // Its targets (the drivers' --mounts-dir) and staging stay inside the work directory.
        let workdir = state_dir.parent().unwrap_or(state_dir);
        let args = [
            "host".to_owned(),
            "--socket".to_owned(),
            socket.display().to_string(),
            "--state-dir".to_owned(),
            state_dir.display().to_string(),
            "--staging-dir".to_owned(),
            state_dir.join("staging").display().to_string(),
            "--target-dir".to_owned(),
            workdir.display().to_string(),
            "--metrics-address".to_owned(),
            metrics_address.to_owned(),
        ];
        Proc::spawn("cos-fuse host", &bin_path("cos-fuse")?, &args, log)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the FUSE host did not listen on {} within {READY_TIMEOUT:?}; its log:\n{}",
                    self.socket.display(),
                    self.proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills the host with SIGKILL and starts it again; its daemons live on and are re-adopted.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.kill().await?;
        self.proc = Self::spawn(
            &self.socket,
            &self.state_dir,
            &self.metrics_address,
            &self.log.with_extension("restarted.log"),
        )?;
        self.wait_ready().await
    }

    /// The daemons the host recorded, by PID.
    pub fn daemon_pids(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("mounts")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter_map(|v| v["pid"].as_u64())
            .filter_map(|pid| u32::try_from(pid).ok())
            .collect()
    }

    /// The host's `/metrics` text.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        let http = tcloud::client::http_client(Duration::from_secs(10))?;
        Ok(http
            .get(format!("http://{}/metrics", self.metrics_address))
            .send()
            .await?
            .text()
            .await?)
    }

    /// SIGKILLs every recorded daemon (their mounts are then detached by the cleanup).
    pub fn kill_daemons(&self) {
        for pid in self.daemon_pids() {
            if let Ok(raw) = i32::try_from(pid)
                && raw > 1
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
