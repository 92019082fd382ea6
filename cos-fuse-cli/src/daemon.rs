//! Going to the background the way mount helpers do: the program forks before it starts any
//! thread; the parent waits on a pipe for the child's "mounted" (exit 0) or its error (printed,
//! exit 1), so `mount -a` and scripts learn whether the mount came up. The child leaves the
//! terminal (`setsid`, standard streams to /dev/null, or standard error to a log file).
//!
//! It knows nothing of COS: [`Notifier::watch`] tells the parent once the mount point answers
//! as another file system.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the parent waits for the child to mount.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

const MOUNTED: &str = "mounted";

/// The child's end of the pipe: the first message wins, the rest are dropped.
#[derive(Debug, Clone)]
pub struct Notifier {
    pipe: Arc<Mutex<Option<File>>>,
}

impl Notifier {
    fn send(&self, message: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut file) = pipe.take() {
            let _ = file.write_all(message.as_bytes());
        }
    }

    fn is_open(&self) -> bool {
        self.pipe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Tells the parent the mount failed (one line).
    pub fn failed(&self, error: &str) {
        self.send(&error.replace('\n', " "));
    }

    /// Watches `mountpoint` from a thread: once it is another file system than now (its device
    /// changed) and answers a stat, tells the parent "mounted".
    pub fn watch(&self, mountpoint: &Path) -> Result<(), String> {
        let before = std::fs::metadata(mountpoint)
            .map_err(|e| format!("cannot stat the mount point {}: {e}", mountpoint.display()))?
            .dev();
        let notifier = self.clone();
        let point: PathBuf = mountpoint.to_owned();
        std::thread::spawn(move || {
            while notifier.is_open() {
                if std::fs::metadata(&point).is_ok_and(|m| m.dev() != before) {
                    notifier.send(MOUNTED);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Ok(())
    }
}

/// What the parent learnt from the pipe.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Mounted,
    Failed(String),
}

/// Reads the child's message: "mounted", an error, or nothing (it died) within `timeout`.
pub fn read_outcome(pipe: impl Read + Send + 'static, timeout: Duration) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let started = Instant::now();
    match rx.recv_timeout(timeout) {
        Ok(text) if text == MOUNTED => Outcome::Mounted,
        Ok(text) if text.trim().is_empty() => {
            Outcome::Failed("the daemon exited before it mounted".into())
        }
        Ok(text) => Outcome::Failed(text.trim().to_owned()),
        Err(_) => Outcome::Failed(format!(
            "the daemon did not mount within {}s",
            started.elapsed().as_secs()
        )),
    }
}

/// Forks. In the parent, waits for the outcome and exits (0 when mounted, 1 otherwise, the
/// error printed); returns only in the child, detached, with its notifier. Call it before
/// any thread starts.
#[allow(unsafe_code)]
pub fn daemonize(log_file: Option<&Path>) -> Result<Notifier, String> {
    use nix::unistd::{ForkResult, fork, pipe};
    // Open it here, so an unwritable log is the parent's error.
    let log = log_file
        .map(|path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))
        })
        .transpose()?;
    let (read_end, write_end) = pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    // SAFETY: the process is single-threaded here (main calls this before any runtime or
    // thread starts), so the child may run any code after fork.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let outcome = read_outcome(File::from(read_end), MOUNT_TIMEOUT);
            match outcome {
                Outcome::Mounted => std::process::exit(0),
                Outcome::Failed(error) => {
                    if error.contains("did not mount within") {
                        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGTERM);
                    }
                    eprintln!("cos-fuse: {error}");
                    std::process::exit(1)
                }
            }
        }
        ForkResult::Child => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            let null = File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| format!("cannot open /dev/null: {e}"))?;
            let _ = nix::unistd::dup2_stdin(&null);
            let _ = nix::unistd::dup2_stdout(&null);
            let _ = nix::unistd::dup2_stderr(log.as_ref().unwrap_or(&null));
            let _ = std::env::set_current_dir("/");
            Ok(Notifier {
                pipe: Arc::new(Mutex::new(Some(File::from(write_end)))),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_reads_mounted_an_error_or_silence() {
        let read = |text: &'static str| read_outcome(text.as_bytes(), Duration::from_secs(5));
        assert_eq!(read("mounted"), Outcome::Mounted);
        assert_eq!(
            read("bucket b at http://x: access denied"),
            Outcome::Failed("bucket b at http://x: access denied".into())
        );
        assert!(matches!(read(""), Outcome::Failed(e) if e.contains("exited before")));
    }

    #[test]
    fn the_first_message_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe");
        let notifier = Notifier {
            pipe: Arc::new(Mutex::new(Some(File::create(&path).unwrap()))),
        };
        notifier.failed("first\nline");
        notifier.send(MOUNTED);
        assert!(!notifier.is_open());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first line");
    }
}
