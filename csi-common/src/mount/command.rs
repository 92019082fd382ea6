//! Running an external tool (`blkid`, `mkfs.*`, `resize2fs`, ...) with an argument vector, never a
//! shell, under a time limit. On timeout the tool's whole process group is killed (SIGKILL) and the
//! tool is reaped; or, for a tool that must never be stopped part-way ([`OnTimeout::LeaveRunning`]:
//! `e2fsck`, `resize2fs`, `xfs_growfs` changing a filesystem), the caller gets the timeout error at
//! once and a thread keeps waiting for the tool, and the error's [`StillRunning`] says when it
//! exits. Output is read by two threads so a chatty tool cannot fill a pipe and stall.
//!
//! Tools run with `LC_ALL=C` so their output parses the same on every node. This module never logs
//! and never formats the environment: errors name the program, its arguments and its stderr only.

use std::any::Any;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How much of a failed tool's stderr an error message keeps (the tail, where tools put the
/// reason).
pub const STDERR_IN_ERROR_LIMIT: usize = 2048;

/// How much of each output stream is kept in memory; the rest is read and dropped.
const OUTPUT_LIMIT: usize = 16 << 20;

/// After the tool exits, how long to wait for its pipes to close. They stay open only when the
/// tool left a background process holding them (a daemon started by a mount helper, say); that
/// process is not ours to kill, so we take what was written and stop waiting.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// What a tool printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: ExitStatus,
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; `None` when the tool was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program}: not found (is it installed and on PATH?)")]
    NotFound { program: String },
    #[error("{program}: could not run")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{}` timed out after {timeout:?} {}",
        command_line(program, args),
        match still_running {
            None => "and was killed",
            Some(_) => "and is still running: it is not killed part-way, and the volume stays busy until it exits",
        }
    )]
    TimedOut {
        program: String,
        args: Vec<String>,
        timeout: Duration,
        /// The tool, left running past its timeout ([`OnTimeout::LeaveRunning`]); `None` when it
        /// was killed.
        still_running: Option<StillRunning>,
    },
    #[error("`{}` failed ({status}): {stderr}", command_line(program, args))]
    Failed {
        program: String,
        args: Vec<String>,
        status: ExitStatus,
        /// The end of stderr, trimmed, at most [`STDERR_IN_ERROR_LIMIT`] bytes.
        stderr: String,
    },
}

impl CommandError {
    /// The exit code of a tool that ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }

    /// The tool this error left running past its timeout, if any.
    pub fn still_running(&self) -> Option<&StillRunning> {
        match self {
            CommandError::TimedOut { still_running, .. } => still_running.as_ref(),
            _ => None,
        }
    }

    /// Builds [`CommandError::Failed`] from a finished tool's output.
    pub fn failed(program: &str, args: Vec<String>, output: &CommandOutput) -> Self {
        CommandError::Failed {
            program: program.to_owned(),
            args,
            status: output.status,
            stderr: tail(output.stderr.trim(), STDERR_IN_ERROR_LIMIT),
        }
    }
}

/// What happens to a tool still running at its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// SIGKILL its process group: for tools that change nothing, or whose work is safely redone
    /// from scratch.
    Kill,
    /// Leave it running and answer [`CommandError::TimedOut`] with a [`StillRunning`]: for tools
    /// that must not be stopped part-way through changing a filesystem (`e2fsck`, `resize2fs`,
    /// `xfs_growfs`).
    LeaveRunning,
}

/// A tool left running past its timeout. Clones share it. Whatever is given to
/// [`StillRunning::keep_until_exit`] is dropped only when the tool has exited (and been reaped): an
/// in-flight guard given to it keeps the volume busy for exactly as long as the tool runs.
#[derive(Clone)]
pub struct StillRunning {
    state: Arc<(Mutex<Running>, Condvar)>,
}

#[derive(Default)]
struct Running {
    exited: bool,
    kept: Vec<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for StillRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StillRunning")
            .field("exited", &self.has_exited())
            .finish()
    }
}

impl StillRunning {
    /// A tool that has not exited yet; [`StillRunning::exited`] marks its end. Public so that fakes
    /// of the mount layer can stand for such a tool.
    pub fn new() -> Self {
        StillRunning {
            state: Arc::new((Mutex::new(Running::default()), Condvar::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the tool exited: wakes every waiter and drops what was kept for it.
    pub fn exited(&self) {
        let kept = {
            let mut running = self.lock();
            running.exited = true;
            std::mem::take(&mut running.kept)
        };
        self.state.1.notify_all();
        drop(kept);
    }

    pub fn has_exited(&self) -> bool {
        self.lock().exited
    }

    /// Keeps `value` alive until the tool exits; drops it at once if it already has.
    pub fn keep_until_exit(&self, value: impl Any + Send) {
        let mut running = self.lock();
        if running.exited {
            drop(running);
            drop(value);
        } else {
            running.kept.push(Box::new(value));
        }
    }

    /// Waits until the tool exits or `timeout` passes; true when it has exited.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let running = self.lock();
        let (running, _) = self
            .state
            .1
            .wait_timeout_while(running, timeout, |r| !r.exited)
            .unwrap_or_else(|p| p.into_inner());
        running.exited
    }
}

impl Default for StillRunning {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `program` with `args`, stdin from `/dev/null`, and returns its output when it exits 0.
/// A non-zero exit or a signal is [`CommandError::Failed`]. Killed at its timeout.
pub fn run_command<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    run_command_with(program, args, timeout, OnTimeout::Kill)
}

/// Like [`run_command`], with a choice of what happens at the timeout.
pub fn run_command_with<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
    on_timeout: OnTimeout,
) -> Result<CommandOutput, CommandError> {
    let output = run_command_any_status_with(program, args, timeout, on_timeout)?;
    if output.success() {
        Ok(output)
    } else {
        Err(CommandError::failed(program, arg_strings(args), &output))
    }
}

/// Like [`run_command`], but a tool that runs to completion is `Ok` whatever its exit status: for
/// tools whose exit code is an answer (`blkid` exits 2 when it finds nothing).
pub fn run_command_any_status<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    run_command_any_status_with(program, args, timeout, OnTimeout::Kill)
}

/// Like [`run_command_any_status`], with a choice of what happens at the timeout.
pub fn run_command_any_status_with<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    timeout: Duration,
    on_timeout: OnTimeout,
) -> Result<CommandOutput, CommandError> {
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever the tool started too.
        .process_group(0)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CommandError::NotFound {
                program: program.to_owned(),
            },
            _ => CommandError::Spawn {
                program: program.to_owned(),
                source,
            },
        })?;

    let (done_tx, done_rx) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut readers = 0;
    if let Some(pipe) = child.stdout.take() {
        spawn_reader(Pipe::Out(pipe), Arc::clone(&stdout), done_tx.clone());
        readers += 1;
    }
    if let Some(pipe) = child.stderr.take() {
        spawn_reader(Pipe::Err(pipe), Arc::clone(&stderr), done_tx);
        readers += 1;
    }

    let deadline = Instant::now() + timeout;
    let waited = wait_until(&mut child, deadline).map_err(|source| {
        kill_and_reap(&mut child);
        CommandError::Spawn {
            program: program.to_owned(),
            source,
        }
    })?;
    let Some(status) = waited else {
        let still_running = match on_timeout {
            OnTimeout::Kill => {
                kill_and_reap(&mut child);
                None
            }
            OnTimeout::LeaveRunning => Some(wait_in_background(child)),
        };
        return Err(CommandError::TimedOut {
            program: program.to_owned(),
            args: arg_strings(args),
            timeout,
            still_running,
        });
    };

    let pipes_deadline = Instant::now() + PIPE_GRACE;
    for _ in 0..readers {
        let left = pipes_deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(CommandOutput {
        status,
        stdout: take_text(&stdout),
        stderr: take_text(&stderr),
    })
}

/// `program arg1 arg2`, arguments with spaces or quotes shown in double quotes.
pub fn command_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            line.push_str(&format!("{arg:?}"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

fn arg_strings<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Pipe::Out(p) => p.read(buf),
            Pipe::Err(p) => p.read(buf),
        }
    }
}

/// Drains `pipe` into `sink` (up to [`OUTPUT_LIMIT`]) until EOF, then signals `done`.
fn spawn_reader(mut pipe: Pipe, sink: Arc<Mutex<Vec<u8>>>, done: mpsc::Sender<()>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
                    let room = OUTPUT_LIMIT.saturating_sub(sink.len());
                    sink.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // The receiver may be gone (the caller stopped waiting); nothing to do then.
        let _ = done.send(());
    });
}

/// Polls the child until it exits or `deadline` passes. Polling (not a waiting thread) keeps the
/// child unreaped until we decide, so its pid cannot be reused under a later kill.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Hands `child` to a thread that waits for it (never kills it) and then marks it exited. Its
/// output readers keep draining the pipes, so the tool cannot stall on a full pipe.
fn wait_in_background(mut child: Child) -> StillRunning {
    let running = StillRunning::new();
    let marker = running.clone();
    let spawned = thread::Builder::new()
        .name("tool-waiter".to_owned())
        .spawn(move || {
            let _ = child.wait();
            marker.exited();
        });
    if spawned.is_err() {
        // No thread to wait with: the tool is still left alone, but we cannot see it end. Say it
        // ended, rather than keeping the volume busy forever.
        running.exited();
    }
    running
}

fn kill_and_reap(child: &mut Child) {
    // The child leads its own process group (process_group(0)) and is not reaped yet, so the group
    // id is still ours.
    if let Ok(pgid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn take_text(buffer: &Mutex<Vec<u8>>) -> String {
    let bytes = std::mem::take(&mut *buffer.lock().unwrap_or_else(|p| p.into_inner()));
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The last `limit` bytes of `text` (on a char boundary), marked with `…` when cut.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", text.get(start..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn captures_stdout_and_stderr_of_a_successful_tool() {
        let out = run_command("sh", &["-c", "echo out; echo err >&2"], 10 * SECOND).unwrap();
        assert!(out.success());
        assert_eq!(out.code(), Some(0));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn arguments_are_not_interpreted_by_a_shell() {
        let out = run_command("echo", &["$HOME", "a b", ";", "|"], 10 * SECOND).unwrap();
        assert_eq!(out.stdout, "$HOME a b ; |\n");
    }

    #[test]
    fn stdin_is_null() {
        // `cat` with no arguments reads stdin: it must see EOF at once, not hang.
        let out = run_command::<&str>("cat", &[], 10 * SECOND).unwrap();
        assert_eq!(out.stdout, "");
    }

    #[test]
    fn tools_run_in_the_c_locale() {
        let out = run_command("sh", &["-c", "echo $LC_ALL"], 10 * SECOND).unwrap();
        assert_eq!(out.stdout, "C\n");
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = run_command::<&str>("no-such-tool-3f9a", &[], SECOND).unwrap_err();
        assert!(
            matches!(&err, CommandError::NotFound { program } if program == "no-such-tool-3f9a")
        );
        assert!(err.to_string().contains("no-such-tool-3f9a"));
    }

    #[test]
    fn non_executable_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-executable");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        let program = path.to_string_lossy().into_owned();
        let err = run_command::<&str>(&program, &[], SECOND).unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }), "{err:?}");
    }

    #[test]
    fn failure_names_program_args_code_and_stderr() {
        let err = run_command(
            "sh",
            &["-c", "echo first >&2; echo 'the reason' >&2; exit 3"],
            10 * SECOND,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), Some(3));
        let CommandError::Failed {
            program,
            args,
            stderr,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(program, "sh");
        assert_eq!(args.len(), 2);
        assert_eq!(stderr, "first\nthe reason");
        let message = err.to_string();
        assert!(message.contains("sh -c \"echo first"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("the reason"), "{message}");
    }

    #[test]
    fn any_status_returns_the_output_of_a_failing_tool() {
        let out = run_command_any_status("sh", &["-c", "echo found; exit 2"], 10 * SECOND).unwrap();
        assert_eq!(out.code(), Some(2));
        assert_eq!(out.stdout, "found\n");
    }

    #[test]
    fn long_stderr_keeps_its_tail() {
        let err = run_command(
            "sh",
            &[
                "-c",
                "i=0; while [ $i -lt 2000 ]; do echo line$i >&2; i=$((i+1)); done; exit 1",
            ],
            10 * SECOND,
        )
        .unwrap_err();
        let CommandError::Failed { stderr, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(stderr.len() <= STDERR_IN_ERROR_LIMIT + '…'.len_utf8());
        assert!(stderr.starts_with('…'));
        assert!(stderr.ends_with("line1999"));
    }

    #[test]
    fn large_output_on_both_pipes_does_not_deadlock() {
        // Far more than a pipe buffer (64 KiB) on each stream, written interleaved.
        let out =
            run_command("sh", &["-c", "seq 1 200000; seq 1 200000 >&2"], 60 * SECOND).unwrap();
        assert_eq!(out.stdout.lines().count(), 200_000);
        assert_eq!(out.stderr.lines().count(), 200_000);
        assert!(out.stdout.ends_with("200000\n"));
    }

    #[test]
    fn timeout_kills_the_tool_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = Instant::now();
        let err = run_command("sh", &["-c", &script], Duration::from_millis(300)).unwrap_err();
        assert!(
            started.elapsed() < 10 * SECOND,
            "took {:?}",
            started.elapsed()
        );
        assert!(
            matches!(&err, CommandError::TimedOut { program, .. } if program == "sh"),
            "{err:?}"
        );
        assert!(err.to_string().contains("timed out after 300ms"), "{err}");
        // The background child was in the tool's process group and died with it.
        thread::sleep(Duration::from_secs(3));
        assert!(
            !marker.exists(),
            "a child of the timed-out tool survived the kill"
        );
    }

    #[test]
    fn a_tool_left_running_at_its_timeout_answers_at_once_and_is_not_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("finished");
        let script = format!("sleep 1; touch {}", marker.display());
        let started = Instant::now();
        let err = run_command_with(
            "sh",
            &["-c", &script],
            Duration::from_millis(200),
            OnTimeout::LeaveRunning,
        )
        .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the caller waited for the tool: {:?}",
            started.elapsed()
        );
        assert!(
            matches!(&err, CommandError::TimedOut { program, .. } if program == "sh"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("timed out after 200ms"), "{message}");
        assert!(message.contains("still running"), "{message}");
        assert!(!marker.exists(), "the tool finished before its timeout");
        let running = err
            .still_running()
            .expect("a tool left running is handed back")
            .clone();
        assert!(!running.has_exited());

        // What is kept for the tool lives exactly as long as the tool.
        let kept = Arc::new(());
        running.keep_until_exit(Arc::clone(&kept));
        assert_eq!(Arc::strong_count(&kept), 2);
        assert!(running.wait_timeout(10 * SECOND), "the tool never exited");
        assert!(marker.exists(), "the tool was killed at its timeout");
        assert_eq!(Arc::strong_count(&kept), 1, "kept past the tool's exit");
        // Kept after the exit: dropped at once.
        running.keep_until_exit(Arc::clone(&kept));
        assert_eq!(Arc::strong_count(&kept), 1);
    }

    #[test]
    fn a_tool_that_ends_in_time_is_unaffected_by_leave_running() {
        let out = run_command_with(
            "sh",
            &["-c", "echo ok"],
            10 * SECOND,
            OnTimeout::LeaveRunning,
        )
        .unwrap();
        assert_eq!(out.stdout, "ok\n");
    }

    #[test]
    fn a_killed_tool_says_so_and_leaves_nothing_running() {
        let err = run_command("sleep", &["5"], Duration::from_millis(100)).unwrap_err();
        assert!(err.still_running().is_none(), "{err:?}");
        assert!(err.to_string().ends_with("and was killed"), "{err}");
    }

    #[test]
    fn a_background_process_holding_the_pipe_does_not_block_the_caller() {
        let started = Instant::now();
        let out = run_command("sh", &["-c", "sleep 5 & echo done"], 30 * SECOND).unwrap();
        assert_eq!(out.stdout, "done\n");
        assert!(
            started.elapsed() < 4 * SECOND,
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn killed_by_signal_is_failed_without_code() {
        let err = run_command("sh", &["-c", "kill -9 $$"], 10 * SECOND).unwrap_err();
        assert!(matches!(err, CommandError::Failed { .. }));
        assert_eq!(err.exit_code(), None);
        assert!(err.to_string().contains("signal: 9"), "{err}");
    }

    #[test]
    fn tail_cuts_on_char_boundaries() {
        assert_eq!(tail("short", 10), "short");
        assert_eq!(tail("abcdef", 3), "…def");
        // 'é' is two bytes: never split it.
        assert_eq!(tail("aéé", 3), "…é");
    }

    #[test]
    fn command_line_quotes_only_when_needed() {
        let args = vec!["-o".to_owned(), "a b".to_owned(), String::new()];
        assert_eq!(command_line("mount", &args), "mount -o \"a b\" \"\"");
    }
}
