//! The project's own CSI conformance suite. Every test drives a driver the way an outside client
//! does: through `e2e serve` (the stable entry point) and the CSI socket it prints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::process::{Proc, bin_path};
pub use e2e::{CsiClient, Driver};

/// A running `e2e serve`: stopped with SIGTERM by [`Served::stop`], or killed on drop.
#[derive(Debug)]
pub struct Served {
    pub proc: Proc,
    pub socket: PathBuf,
    pub workdir: PathBuf,
    /// The Turbo file system `e2e serve --driver cfsturbo` made and printed.
    pub turbo: Option<TurboTarget>,
    _dir: tempfile::TempDir,
}

/// A Turbo file system as `e2e serve` prints it (`turbo host=<ip> fsid=<fsid>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurboTarget {
    pub host: String,
    pub fsid: String,
}

impl TurboTarget {
    /// Parses the line `e2e serve` prints before `ready`.
    pub fn parse(line: &str) -> Option<TurboTarget> {
        let rest = line.strip_prefix("turbo ")?;
        let (host, fsid) = rest.split_once(' ')?;
        Some(TurboTarget {
            host: host.strip_prefix("host=")?.to_owned(),
            fsid: fsid.strip_prefix("fsid=")?.to_owned(),
        })
    }

    /// The StorageClass parameters naming it, then `extra`.
    pub fn parameters(&self, extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        let mut parameters: std::collections::HashMap<String, String> =
            [("host", &self.host), ("fsid", &self.fsid)]
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

impl Served {
    /// Starts `e2e serve --driver <driver>` with extra driver arguments, and waits for `ready`.
    pub async fn start(driver: Driver, driver_args: &[&str]) -> anyhow::Result<Served> {
        Self::start_with(driver, &[], driver_args).await
    }

    /// Like [`Served::start`], with extra simulator arguments too.
    pub async fn start_with(
        driver: Driver,
        sim_args: &[&str],
        driver_args: &[&str],
    ) -> anyhow::Result<Served> {
        let dir = tempfile::Builder::new()
            .prefix("csi-conformance-")
            .tempdir()?;
        let socket = dir.path().join("plugin/csi.sock");
        let workdir = dir.path().join("work");
        let driver_name = format!("{driver:?}").to_lowercase();
        let mut args = vec![
            "serve".to_owned(),
            "--driver".to_owned(),
            driver_name,
            "--socket".to_owned(),
            socket.display().to_string(),
            "--workdir".to_owned(),
            workdir.display().to_string(),
        ];
        for arg in sim_args {
            args.push(format!("--sim-arg={arg}"));
        }
        for arg in driver_args {
            args.push(format!("--driver-arg={arg}"));
        }
        let log = dir.path().join("e2e.log");
        let mut proc = Proc::spawn("e2e serve", &bin_path("e2e")?, &args, &log)?;
        let mut line = proc.read_line(Duration::from_secs(60)).await?;
        let turbo = TurboTarget::parse(&line);
        if driver == Driver::CfsTurbo {
            if turbo.is_none() {
                bail!(
                    "e2e serve --driver cfsturbo printed {line:?}, not `turbo host=... fsid=...`"
                );
            }
            line = proc.read_line(Duration::from_secs(60)).await?;
        }
        if line != format!("ready {}", socket.display()) {
            bail!("e2e serve printed {line:?}");
        }
        Ok(Served {
            proc,
            socket,
            workdir,
            turbo,
            _dir: dir,
        })
    }

    pub async fn client(&self) -> anyhow::Result<CsiClient> {
        CsiClient::connect(&self.socket).await
    }

    /// The driver's own log, written under the work directory.
    pub fn driver_log(&self, driver: Driver) -> anyhow::Result<String> {
        let path = self
            .workdir
            .join("logs")
            .join(format!("{}.log", driver.binary()));
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// SIGTERM, and the exit must be clean.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let status = self.proc.stop(Duration::from_secs(30)).await?;
        if !status.success() {
            bail!("e2e serve exited with {status}:\n{}", self.proc.log_tail());
        }
        Ok(())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Served {
    /// A failed test drops a running `e2e serve`: stop it with SIGTERM and give it time to stop
    /// the simulator, the driver and the FUSE host it started (a SIGKILL would orphan them).
    fn drop(&mut self) {
        let Some(pid) = self.proc.pid() else { return };
        if self.proc.try_status().is_some() {
            return;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..300 {
            if self.proc.try_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
