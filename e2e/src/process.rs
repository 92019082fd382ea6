//! Child processes of the harness: found next to the harness's own executable, started with an
//! argument vector, stopped with SIGTERM then SIGKILL, never left behind (killed on drop).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The path of a workspace binary, in the same target directory as the running executable
/// (`target/debug/` for binaries, `target/debug/deps/` for tests).
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe
        .parent()
        .context("executable has no directory")?
        .to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// A running child with its log file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    /// Starts `program args...` with stderr to `log` and stdout piped.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Proc> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            stdout,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Reads the next stdout line, failing after `timeout` or if the process exits first.
    pub async fn read_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let stdout = self.stdout.as_mut().context("stdout is not piped")?;
        let mut line = String::new();
        match tokio::time::timeout(timeout, stdout.read_line(&mut line)).await {
            Ok(Ok(0)) => bail!(
                "{} exited before answering; its log:\n{}",
                self.name,
                self.log_tail()
            ),
            Ok(Ok(_)) => Ok(line.trim_end().to_owned()),
            Ok(Err(e)) => Err(e).context("reading stdout"),
            Err(_) => bail!(
                "{} said nothing within {timeout:?}; its log:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Where the process is: its scheduler state and the kernel function it sleeps in (read
    /// from `stat` and `wchan`, which never wait on the process's memory, unlike `cmdline`).
    /// A process that has said nothing is told apart from one stuck in the kernel this way.
    pub fn kernel_state(&self) -> String {
        let Some(pid) = self.pid() else {
            return "exited".to_owned();
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?");
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        format!("pid {pid}, state {state}, waiting in {wchan:?}")
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.try_status() {
            return Ok(status);
        }
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!("{} ignored SIGTERM for {grace:?} and was killed", self.name)
            }
        }
    }

    /// SIGKILL now (crash simulation).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
