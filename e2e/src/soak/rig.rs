//! The soak's node: one simulator with fault rules, all four drivers (mode `all`) against it, and
//! a FUSE host for each FUSE driver, in one work directory. Every process can be SIGKILLed and
//! started again with the same arguments and state, as its supervisor would (kubelet restarting a
//! container). Everything is removed at [`Rig::stop`], or on drop after a failure. It knows no
//! lifecycle, no chaos schedule and no report.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::CsiClient;
use crate::env::{Driver, DriverSetup, FuseHost, REGION, driver_args, private_file, random_token};
use crate::process::{Proc, bin_path};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One driver process with what it needs to be started again.
#[derive(Debug)]
pub struct DriverSlot {
    pub kind: Driver,
    /// The driver's own directory: its socket, kubelet's paths, its mounts.
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub proc: Proc,
    pub fuse_host: Option<FuseHost>,
    args: Vec<String>,
    starts: u32,
}

#[derive(Debug)]
pub struct Rig {
    pub workdir: PathBuf,
    pub state_dir: PathBuf,
    pub sim_url: String,
    pub cos_url: String,
    pub secret_id: String,
    pub secret_key: String,
    pub sim: Proc,
    pub drivers: Vec<DriverSlot>,
    sim_args: Vec<String>,
    sim_starts: u32,
    logs: PathBuf,
    stopped: bool,
}

/// A free TCP port on loopback (the simulator gets fixed ports so a restart keeps its URLs).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Rig {
    /// Starts the simulator with `sim_extra` arguments (fault rules) and the four drivers.
    pub async fn start(sim_extra: &[String]) -> anyhow::Result<Rig> {
        let workdir = tempfile::Builder::new()
            .prefix("csi-soak-")
            .tempdir()?
            .keep();
        let logs = workdir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let secret_id = format!("AKIDsoak{}", random_token(20));
        let secret_key = random_token(32);
        let keys_file = workdir.join("sim-keys");
        private_file(&keys_file, &format!("{secret_id} {secret_key}\n"))?;
        let credentials_dir = workdir.join("credentials");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&credentials_dir)?;
        private_file(&credentials_dir.join("SecretId"), &secret_id)?;
        private_file(&credentials_dir.join("SecretKey"), &secret_key)?;
        let state_dir = workdir.join("sim-state");
        let mut sim_args = vec![
            "--state-dir".to_owned(),
            state_dir.display().to_string(),
            "--keys-file".to_owned(),
            keys_file.display().to_string(),
            "--region".to_owned(),
            REGION.to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{}", free_port()?),
            "--cos-listen".to_owned(),
            format!("127.0.0.1:{}", free_port()?),
        ];
        sim_args.extend(sim_extra.iter().cloned());
        // The rig exists from here on: a failure below drops it, which removes everything.
        let mut rig = Rig {
            workdir: workdir.clone(),
            state_dir: state_dir.clone(),
            sim_url: String::new(),
            cos_url: String::new(),
            secret_id,
            secret_key,
            sim: Proc::spawn(
                "tcloud-sim",
                &bin_path("tcloud-sim")?,
                &sim_args,
                &logs.join("tcloud-sim.0.log"),
            )?,
            drivers: Vec::new(),
            sim_args,
            sim_starts: 1,
            logs,
            stopped: false,
        };
        let (sim_url, cos_url) = Self::sim_urls(&mut rig.sim).await?;
        rig.sim_url = sim_url;
        rig.cos_url = cos_url;
        for kind in Driver::ALL {
            let slot = rig.start_driver(kind, &credentials_dir).await?;
            rig.drivers.push(slot);
        }
        Ok(rig)
    }

    async fn sim_urls(sim: &mut Proc) -> anyhow::Result<(String, String)> {
        let line = sim.read_line(READY_TIMEOUT).await?;
        let Some(sim_url) = line.strip_prefix("listening ").map(str::to_owned) else {
            bail!("tcloud-sim printed {line:?} instead of `listening URL`");
        };
        let line = sim.read_line(READY_TIMEOUT).await?;
        let Some(cos_url) = line.strip_prefix("cos ").map(str::to_owned) else {
            bail!("tcloud-sim printed {line:?} instead of `cos URL`");
        };
        Ok((sim_url, cos_url))
    }

    /// Starts a driver with the arguments `Env` gives it ([`driver_args`]), in its own directory.
    async fn start_driver(
        &self,
        kind: Driver,
        credentials_dir: &Path,
    ) -> anyhow::Result<DriverSlot> {
        let dir = self.workdir.join(kind.binary());
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let socket = dir.join("csi/csi.sock");
        let fuse_host = match kind {
            Driver::Cos | Driver::Goosefs => Some(FuseHost::start(&dir, &logs).await?),
            Driver::Cbs | Driver::Cfs | Driver::CfsTurbo => None,
        };
        let setup = DriverSetup {
            socket: &socket,
            sim_url: &self.sim_url,
            cos_url: &self.cos_url,
            sim_state_dir: &self.state_dir,
            credentials_dir,
            dir: &dir,
            fuse_host_socket: fuse_host.as_ref().map(|h| h.socket.as_path()),
        };
        let args = driver_args(kind, &setup, &[])?;
        let proc = Proc::spawn(
            kind.binary(),
            &bin_path(kind.binary())?,
            &args,
            &logs.join(format!("{}.0.log", kind.binary())),
        )?;
        let slot = DriverSlot {
            kind,
            dir,
            socket,
            proc,
            fuse_host,
            args,
            starts: 1,
        };
        answering(&slot, kind).await?;
        Ok(slot)
    }

    pub fn slot(&mut self, kind: Driver) -> anyhow::Result<&mut DriverSlot> {
        self.drivers
            .iter_mut()
            .find(|s| s.kind == kind)
            .with_context(|| format!("no {} in the rig", kind.binary()))
    }

    /// SIGKILLs a driver and starts it again with the same arguments (a new log each start).
    /// Returns once the killed process is gone; `wait_driver` waits for the new one.
    pub async fn kill_driver(&mut self, kind: Driver) -> anyhow::Result<()> {
        let slot = self.slot(kind)?;
        slot.proc.kill().await?;
        let log = slot
            .dir
            .join("logs")
            .join(format!("{}.{}.log", kind.binary(), slot.starts));
        slot.proc = Proc::spawn(kind.binary(), &bin_path(kind.binary())?, &slot.args, &log)?;
        slot.starts += 1;
        Ok(())
    }

    /// Waits until a (re)started driver answers Probe.
    pub async fn wait_driver(&mut self, kind: Driver) -> anyhow::Result<()> {
        let slot = self.slot(kind)?;
        answering(slot, kind).await
    }

    /// SIGKILLs the FUSE host of `kind` and starts it again; its daemons live on.
    pub async fn kill_fuse_host(&mut self, kind: Driver) -> anyhow::Result<()> {
        let slot = self.slot(kind)?;
        let host = slot
            .fuse_host
            .as_mut()
            .with_context(|| format!("{} has no FUSE host", kind.binary()))?;
        host.restart().await
    }

    /// SIGKILLs one live FUSE daemon of `kind`, chosen by `pick` among the live ones. Returns its
    /// PID, or `None` when no daemon runs.
    pub fn kill_fuse_daemon(
        &mut self,
        kind: Driver,
        pick: impl FnOnce(usize) -> usize,
    ) -> anyhow::Result<Option<u32>> {
        let slot = self.slot(kind)?;
        let Some(host) = &slot.fuse_host else {
            return Ok(None);
        };
        let live: Vec<u32> = host
            .daemon_pids()
            .into_iter()
            .filter(|pid| pid_alive(*pid))
            .collect();
        if live.is_empty() {
            return Ok(None);
        }
        let pid = live[pick(live.len()).min(live.len() - 1)];
        let raw = i32::try_from(pid).context("daemon PID out of range")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGKILL,
        )
        .with_context(|| format!("kill -9 {pid}"))?;
        Ok(Some(pid))
    }

    /// SIGKILLs the simulator and starts it again on the same ports with the same state.
    pub async fn kill_sim(&mut self) -> anyhow::Result<()> {
        self.sim.kill().await?;
        self.sim = Proc::spawn(
            "tcloud-sim",
            &bin_path("tcloud-sim")?,
            &self.sim_args,
            &self
                .logs
                .join(format!("tcloud-sim.{}.log", self.sim_starts)),
        )?;
        self.sim_starts += 1;
        let (sim_url, cos_url) = Self::sim_urls(&mut self.sim).await?;
        if sim_url != self.sim_url || cos_url != self.cos_url {
            bail!("the simulator came back on {sim_url} and {cos_url}, not the same addresses");
        }
        Ok(())
    }

    /// The simulator's counters (`GET /_sim/stats`); they restart from zero with it.
    pub async fn sim_stats(&self) -> anyhow::Result<serde_json::Value> {
        let http = tcloud::client::http_client(Duration::from_secs(10))?;
        let response = http
            .get(format!("{}/_sim/stats", self.sim_url))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    /// Replaces the simulator's fault rules (`PUT /_sim/faults`).
    pub async fn put_faults(&self, rules: &serde_json::Value) -> anyhow::Result<()> {
        let http = tcloud::client::http_client(Duration::from_secs(10))?;
        http.put(format!("{}/_sim/faults", self.sim_url))
            .json(rules)
            .send()
            .await?
            .error_for_status()
            .context("PUT /_sim/faults")?;
        Ok(())
    }

    /// The PIDs of the processes the rig runs on purpose (not the FUSE daemons).
    pub fn own_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.sim.pid().into_iter().collect();
        for slot in &self.drivers {
            pids.extend(slot.proc.pid());
            pids.extend(slot.fuse_host.as_ref().and_then(|h| h.proc.pid()));
        }
        pids
    }

    /// The FUSE daemons the hosts recorded that are still alive.
    pub fn live_daemons(&self) -> Vec<u32> {
        self.drivers
            .iter()
            .filter_map(|s| s.fuse_host.as_ref())
            .flat_map(FuseHost::daemon_pids)
            .filter(|pid| pid_alive(*pid))
            .collect()
    }

    /// Stops every process (drivers, FUSE hosts, their daemons, the simulator), then removes
    /// every mount, loop device and file under the work directory.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut failures = Vec::new();
        for slot in &mut self.drivers {
            if let Err(e) = slot.proc.stop(STOP_GRACE).await {
                failures.push(format!("{e:#}"));
            }
            if let Some(host) = &mut slot.fuse_host {
                if let Err(e) = host.proc.stop(STOP_GRACE).await {
                    failures.push(format!("{e:#}"));
                }
                host.kill_daemons();
            }
        }
        if let Err(e) = self.sim.stop(STOP_GRACE).await {
            failures.push(format!("{e:#}"));
        }
        self.remove_everything();
        if !failures.is_empty() {
            bail!("stopping the soak's processes: {}", failures.join("; "));
        }
        Ok(())
    }

    fn remove_everything(&self) {
        crate::cleanup::clean(&self.workdir);
        let _ = std::fs::remove_dir_all(&self.workdir);
    }

    /// Keeps the logs of a failed run: copies them next to the work directory.
    pub fn save_logs(&self) -> Option<PathBuf> {
        let target = self.workdir.with_extension("logs");
        let mut copied = false;
        // Each driver's logs in a directory of its own: both FUSE hosts name theirs alike.
        let mut dirs = vec![(self.logs.clone(), target.clone())];
        dirs.extend(
            self.drivers
                .iter()
                .map(|s| (s.dir.join("logs"), target.join(s.kind.binary()))),
        );
        for (dir, into) in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if std::fs::create_dir_all(&into).is_ok()
                    && std::fs::copy(entry.path(), into.join(entry.file_name())).is_ok()
                {
                    copied = true;
                }
            }
        }
        copied.then_some(target)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // A failure or an interruption: the children die with their handles (kill_on_drop), but
        // kill them now, and the daemons, before unmounting so nothing is re-created behind us.
        for slot in &self.drivers {
            if let Some(host) = &slot.fuse_host {
                host.kill_daemons();
            }
        }
        for pid in self.own_pids() {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        self.remove_everything();
    }
}

/// Whether `pid` names a live process (not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits until the driver in `slot` answers Probe; else an error with its kernel state and log.
async fn answering(slot: &DriverSlot, kind: Driver) -> anyhow::Result<()> {
    CsiClient::wait_ready(&slot.socket, READY_TIMEOUT)
        .await
        .with_context(|| {
            format!(
                "{} ({}) log:\n{}",
                kind.binary(),
                slot.proc.kernel_state(),
                slot.proc.log_tail()
            )
        })?;
    Ok(())
}
