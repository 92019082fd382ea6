//! One test environment: the simulator and one driver (mode `all`) wired together with fresh keys
//! (for CFS Turbo, with a Turbo file system made in the simulator first), in a work directory that
//! is removed, with every mount and loop device in it, when it stops or is dropped. The driver's
//! arguments come from [`driver_args`], which the soak's rig uses too.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;

use crate::client::CsiClient;
pub use crate::fuse_host::FuseHost;
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
    /// CFS Turbo: `csi-cfs --flavor turbo`, on a Turbo file system the environment creates.
    #[value(name = "cfsturbo")]
    CfsTurbo,
    Cos,
    Goosefs,
}

impl Driver {
    /// The four binaries, each in its default flavor (the soak's drivers).
    pub const ALL: [Driver; 4] = [Driver::Cbs, Driver::Cfs, Driver::Cos, Driver::Goosefs];
    /// Every driver `e2e serve` runs: [`Driver::ALL`] and csi-cfs's Turbo flavor.
    pub const EVERY: [Driver; 5] = [
        Driver::Cbs,
        Driver::Cfs,
        Driver::CfsTurbo,
        Driver::Cos,
        Driver::Goosefs,
    ];

    pub fn binary(self) -> &'static str {
        match self {
            Driver::Cbs => "csi-cbs",
            Driver::Cfs | Driver::CfsTurbo => "csi-cfs",
            Driver::Cos => "csi-cos",
            Driver::Goosefs => "csi-goosefs",
        }
    }

    /// The CSI driver name each binary reports by default.
    pub fn csi_name(self) -> &'static str {
        match self {
            Driver::Cbs => "com.tencent.cloud.csi.cbs",
            Driver::Cfs => "com.tencent.cloud.csi.cfs",
            Driver::CfsTurbo => "com.tencent.cloud.csi.cfsturbo",
            Driver::Cos => "com.tencent.cloud.csi.cosfs",
            Driver::Goosefs => "com.tencent.cloud.csi.goosefs",
        }
    }

    /// The directories [`driver_args`] gives a driver of this kind under its directory `dir`.
    pub fn own_dirs(self, dir: &Path) -> Vec<PathBuf> {
        let names: &[&str] = match self {
            Driver::Cbs => &[],
            Driver::Cfs => &["cfs-mounts", "cfs-controller"],
            Driver::CfsTurbo => &["cfsturbo-mounts", "cfsturbo-controller"],
            Driver::Cos => &["fuse-mounts"],
            Driver::Goosefs => &["fuse-mounts", "goosefs-cache"],
        };
        names.iter().map(|name| dir.join(name)).collect()
    }
}

/// Where a driver process finds the simulator and keeps its files: what [`driver_args`] needs
/// besides the driver's kind. [`Env`] and the soak's rig both start drivers from one.
#[derive(Debug, Clone, Copy)]
pub struct DriverSetup<'a> {
    pub socket: &'a Path,
    /// `http://127.0.0.1:PORT` of the simulator.
    pub sim_url: &'a str,
    /// `http://127.0.0.1:PORT` of the simulator's COS endpoint.
    pub cos_url: &'a str,
    /// The simulator's `--state-dir`.
    pub sim_state_dir: &'a Path,
    pub credentials_dir: &'a Path,
    /// The driver's own directory: its mounts ([`Driver::own_dirs`]) and kubelet's paths.
    pub dir: &'a Path,
    /// The FUSE host's socket; required by csi-cos and csi-goosefs.
    pub fuse_host_socket: Option<&'a Path>,
}

/// The arguments of a `kind` driver in mode `all` against the simulator, then `extra`. Staging
/// and target paths lie under `<dir>/kubelet` (see `kubelet.rs`) unless `extra` names another
/// `--kubelet-dir` (e.g. csi-sanity's mount directories).
pub fn driver_args(
    kind: Driver,
    setup: &DriverSetup<'_>,
    extra: &[String],
) -> anyhow::Result<Vec<String>> {
    let arg = |a: &str| a.to_owned();
    let path = |p: &Path| p.display().to_string();
    let mut args = vec![
        arg("--endpoint"),
        format!("unix://{}", setup.socket.display()),
        arg("--mode"),
        arg("all"),
        arg("--node-id"),
        arg(NODE_ID),
        arg("--region"),
        arg(REGION),
        arg("--cloud-endpoint"),
        arg(setup.sim_url),
        arg("--metadata-endpoint"),
        format!("{}/instances/{NODE_ID}", setup.sim_url),
        arg("--credentials-dir"),
        path(setup.credentials_dir),
    ];
    let own = kind.own_dirs(setup.dir);
    let exports = setup.sim_state_dir.join("cfs/exports");
    match (kind, own.as_slice()) {
        (Driver::Cbs, _) => {
            // The simulator shows attached disks to each instance under its own device tree.
            let instance = setup.sim_state_dir.join("instances").join(NODE_ID);
            args.extend([
                arg("--device-dir"),
                path(&instance.join("dev/disk/by-id")),
                arg("--sysfs-root"),
                path(&instance.join("sys")),
            ]);
        }
        // No NFS (or Lustre) client in this kernel: the documented seam resolves the simulator's
        // exports.
        (Driver::Cfs, [mounts, controller]) => args.extend([
            arg("--sim-nfs-exports"),
            path(&exports),
            arg("--mounts-dir"),
            path(mounts),
            arg("--controller-dir"),
            path(controller),
            // The simulated cluster's network, so StorageClasses (and csi-sanity) may omit it.
            arg("--default-vpc-id"),
            arg("vpc-sim00001"),
            arg("--default-subnet-id"),
            arg("subnet-sim00001"),
        ]),
        (Driver::CfsTurbo, [mounts, controller]) => args.extend([
            arg("--flavor"),
            arg("turbo"),
            arg("--sim-nfs-exports"),
            path(&exports),
            arg("--mounts-dir"),
            path(mounts),
            arg("--controller-dir"),
            path(controller),
        ]),
        (Driver::Cos | Driver::Goosefs, [mounts, rest @ ..]) => {
            let host = setup
                .fuse_host_socket
                .with_context(|| format!("{} needs a FUSE host", kind.binary()))?;
            args.extend([
                arg("--fuse-host-socket"),
                path(host),
                arg("--mounts-dir"),
                path(mounts),
                // The simulated bucket, so StorageClasses (and csi-sanity) may omit it.
                arg("--default-url"),
                arg(setup.cos_url),
                arg("--default-bucket"),
                arg(SIM_BUCKET),
                // Requests without a secret (csi-sanity, the conformance suite) mount with the
                // node's own keys (--credentials-dir).
                arg("--node-credentials"),
                arg("allow"),
            ]);
            if let [cache] = rest {
                args.extend([arg("--cache-dir"), path(cache)]);
            }
        }
        (kind, dirs) => bail!("{kind:?} has no directories {dirs:?}"),
    }
    if !extra.iter().any(|a| a.starts_with("--kubelet-dir")) {
        args.extend([arg("--kubelet-dir"), path(&setup.dir.join("kubelet"))]);
    }
    args.extend(extra.iter().cloned());
    Ok(args)
}

/// A CFS Turbo file system in the simulator, as a Turbo StorageClass or PV names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurboFs {
    /// Its mount target's address (the `host` parameter).
    pub host: String,
    /// Its FSID (the `fsid` parameter).
    pub fsid: String,
    /// Its CFS ID (`cfs-...`).
    pub fs_id: String,
    /// Its directory in the simulator; the root directory `/cfs` is [`TurboFs::root`].
    pub dir: PathBuf,
}

/// How long a new Turbo file system may take to become available.
const TURBO_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl TurboFs {
    /// Creates a Turbo file system (TB, its minimum 40960 GiB, over a CCN) in the simulator at
    /// `sim_url` through the cloud client, and waits until it is available and exported.
    pub async fn create(
        sim_url: &str,
        credentials: tcloud::Credentials,
        sim_state_dir: &Path,
        name: &str,
    ) -> anyhow::Result<TurboFs> {
        use tcloud::cfs::{
            CfsApi, CreateFileSystemRequest, CreateTurboFileSystemRequest,
            DescribeFileSystemsRequest, life_cycle,
        };
        let client = tcloud::CloudClient::new(
            tcloud::CloudConfig::new(sim_url, REGION),
            tcloud::CredentialSource::Static(credentials),
        )?;
        let deadline = tokio::time::Instant::now() + TURBO_READY_TIMEOUT;
        let request = CreateTurboFileSystemRequest {
            base: CreateFileSystemRequest {
                zone: format!("{REGION}-3"),
                net_interface: "CCN".into(),
                p_group_id: "pgroupbasic".into(),
                protocol: "TURBO".into(),
                storage_type: "TB".into(),
                fs_name: Some(name.to_owned()),
                client_token: Some(random_token(16)),
                ..Default::default()
            },
            ccn_id: Some("ccn-sim00001".into()),
            cidr_block: Some("10.8.0.0/24".into()),
            capacity: Some(40_960),
        };
        let fs_id = client
            .create_turbo_file_system(&request, Some(deadline))
            .await
            .context("CreateCfsFileSystem (Turbo)")?;
        loop {
            let described = client
                .describe_file_systems(
                    &DescribeFileSystemsRequest {
                        file_system_id: Some(fs_id.clone()),
                        ..Default::default()
                    },
                    Some(deadline),
                )
                .await
                .context("DescribeCfsFileSystems")?;
            let state = described
                .file_systems
                .first()
                .map(|fs| fs.life_cycle_state.clone())
                .unwrap_or_default();
            match state.as_str() {
                life_cycle::AVAILABLE => break,
                life_cycle::CREATE_FAILED => bail!("Turbo file system {fs_id} failed to create"),
                _ if tokio::time::Instant::now() >= deadline => {
                    bail!("Turbo file system {fs_id} is {state:?} after {TURBO_READY_TIMEOUT:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let targets = client
            .describe_mount_targets(&fs_id, Some(deadline))
            .await
            .context("DescribeMountTargets")?;
        let target = targets
            .into_iter()
            .next()
            .with_context(|| format!("Turbo file system {fs_id} has no mount target"))?;
        Ok(TurboFs {
            host: target.ip_address,
            fsid: target.fsid,
            dir: sim_state_dir.join("cfs/fs").join(&fs_id),
            fs_id,
        })
    }

    /// The root directory (`/cfs`) in the simulator: where volumes' subdirectories land.
    pub fn root(&self) -> PathBuf {
        self.dir.join("cfs")
    }

    /// StorageClass parameters naming this file system, then `extra`.
    pub fn parameters(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut parameters: HashMap<String, String> = [("host", &self.host), ("fsid", &self.fsid)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        parameters.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        parameters
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
    /// The Turbo file system of [`Driver::CfsTurbo`], created before the driver started.
    pub turbo: Option<TurboFs>,
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

        let fuse_host = if matches!(driver_kind, Driver::Cos | Driver::Goosefs) {
            let host = FuseHost::start(&workdir, &logs).await?;
            track(host.state_dir.clone());
            track(
                host.socket
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            );
            Some(host)
        } else {
            None
        };
        for dir in driver_kind.own_dirs(&workdir) {
            track(dir);
        }
        let turbo = if driver_kind == Driver::CfsTurbo {
            let credentials = tcloud::Credentials::new(&secret_id, &secret_key);
            let fs = TurboFs::create(&sim_url, credentials, &state_dir, "e2e-turbo").await;
            match fs {
                Ok(fs) => Some(fs),
                Err(e) => {
                    let log = sim.log_tail();
                    let _ = sim.stop(STOP_GRACE).await;
                    remove_created(&workdir, &created);
                    return Err(e.context(format!("tcloud-sim log:\n{log}")));
                }
            }
        } else {
            None
        };
        let setup = DriverSetup {
            socket: &socket,
            sim_url: &sim_url,
            cos_url: &cos_url,
            sim_state_dir: &state_dir,
            credentials_dir: &credentials_dir,
            dir: &workdir,
            fuse_host_socket: fuse_host.as_ref().map(|h| h.socket.as_path()),
        };
        let driver_args = driver_args(driver_kind, &setup, &options.driver_args)?;
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
            turbo,
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
            let status = host.proc.stop(STOP_GRACE).await;
            host.kill_host();
            statuses.push((host.proc.name.clone(), status));
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
        remove_created(&self.workdir, &self.created);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.stopped {
            // A failed test: the children die with their handles (kill_on_drop); wait for that
            // before unmounting, so nothing is re-created behind our back. The host goes first:
            // alive, it would restart the daemons killed next.
            if let Some(host) = &mut self.fuse_host {
                host.kill_host();
                host.kill_daemons();
            }
            let procs = [Some(&self.driver), Some(&self.sim)];
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

/// Removes every mount and loop device under `workdir`, then the files a run `created`.
fn remove_created(workdir: &Path, created: &[PathBuf]) {
    crate::cleanup::clean(workdir);
    for path in created {
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
    }
}
