//! The FUSE host of an environment, `cos-fuse host`, optionally run as a container runtime runs
//! it: in a cgroup of its own ([`Container`]), stopped by killing every process of that cgroup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::container::Container;
use crate::process::{Proc, bin_path};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The cgroup it runs in, as a container, and the name under which its daemons get cgroups
    /// of their own; `None`: it runs as a plain child of the test.
    pub container: Option<Container>,
    /// The `cos-fuse` program it runs for mounts; `None`: itself.
    program: Option<PathBuf>,
    /// More arguments for the next (re)start.
    pub extra_args: Vec<String>,
    restarts: u32,
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
        let proc = Self::spawn(&socket, &state_dir, &metrics_address, &log, None, None, &[])?;
        let host = FuseHost {
            proc,
            socket,
            state_dir,
            metrics_address,
            log,
            container: None,
            program: None,
            extra_args: Vec::new(),
            restarts: 0,
        };
        host.wait_ready().await?;
        Ok(host)
    }

    fn spawn(
        socket: &Path,
        state_dir: &Path,
        metrics_address: &str,
        log: &Path,
        container: Option<&Container>,
        program: Option<&Path>,
        extra: &[String],
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
        let mut args = args.to_vec();
        if let Some(container) = container {
            args.extend([
                "--daemon-cgroup-fs".to_owned(),
                crate::container::CGROUP_FS.to_owned(),
                "--daemon-cgroup-name".to_owned(),
                container.daemons_name(),
                "--daemon-memory-max-mb".to_owned(),
                "1024".to_owned(),
            ]);
        }
        if let Some(program) = program {
            args.push(format!("--allow-program=cos-fuse={}", program.display()));
        }
        args.extend_from_slice(extra);
        let proc = Proc::spawn("cos-fuse host", &bin_path("cos-fuse")?, &args, log)?;
        if let (Some(container), Some(pid)) = (container, proc.pid()) {
            container.enter(pid)?;
        }
        Ok(proc)
    }

    /// Restarts the host as a container: its processes in a cgroup of their own, its daemons
    /// placed in cgroups of theirs. The daemons it started before stay where they are.
    pub async fn containerize(&mut self) -> anyhow::Result<()> {
        self.container = Some(Container::new()?);
        self.restart().await
    }

    /// Restarts the host (SIGKILL, or the kill of its container) with `program` as what it runs
    /// for cos-fuse mounts: a host of a newer image, whose program takes its mounts over.
    pub async fn restart_with_program(&mut self, program: &Path) -> anyhow::Result<()> {
        self.program = Some(program.to_owned());
        self.restart().await
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

    /// Kills the host with SIGKILL (as a container: every process of its container) and starts
    /// it again; its daemons live on and are re-adopted.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill_host();
        let _ = self.proc.kill().await;
        self.restarts += 1;
        self.proc = Self::spawn(
            &self.socket,
            &self.state_dir,
            &self.metrics_address,
            &self
                .log
                .with_extension(format!("restart-{}.log", self.restarts)),
            self.container.as_ref(),
            self.program.as_deref(),
            &self.extra_args,
        )?;
        self.wait_ready().await
    }

    /// SIGKILLs the host now: every process of its container when it runs as one (as a
    /// runtime stopping the container does), else its process.
    pub fn kill_host(&mut self) {
        if let Some(container) = &self.container {
            container.kill();
        } else if let Some(pid) = self.proc.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
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
