//! The daemons' output: each line a daemon writes to its standard output or error is re-emitted
//! through the host's own log (so `kubectl logs` shows it, in the host's format, with the
//! `volume`, `target` and `stream` fields) and appended to the daemon's file in the state
//! directory, which is rotated to `.1` past [`MAX_LOG_BYTES`]. It reads pipes and writes one file;
//! it never starts or stops a daemon.
//!
//! A daemon must not depend on the pipe: when the host goes, the pipe breaks and the daemon's
//! writes fail with EPIPE (cos-fuse ignores SIGPIPE and drops log lines it cannot write). A
//! daemon the next host re-adopts keeps writing to the broken pipe, so its later lines are lost;
//! see the README.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Past this size the daemon's log file is moved to `.1` (replacing the one there) and started
/// afresh: at most twice this per mount on disk.
pub(super) const MAX_LOG_BYTES: u64 = 10 << 20;
/// A longer line is passed on in pieces of this size.
const MAX_LINE_BYTES: u64 = 16 << 10;

/// A daemon's log file, appended to and rotated; shared by its two streams.
#[derive(Debug)]
pub(super) struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<std::fs::File>,
    size: u64,
}

impl LogFile {
    /// Opens (creates, 0600) `path` for appending.
    pub(super) fn open(path: &Path, max_bytes: u64) -> std::io::Result<LogFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_owned(),
            max_bytes,
            file: Some(file),
            size,
        })
    }

    /// Appends one line (a newline is added), rotating first when it would pass the limit.
    /// Failures are logged by the caller's stream at most once per rotation, never fatal.
    pub(super) fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.file = None;
            let rotated = rotated_path(&self.path);
            std::fs::rename(&self.path, &rotated)?;
            self.file = Some(open_append(&self.path)?);
            self.size = 0;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(&self.path)?),
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        self.size += len;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Where a log file goes when it is rotated: `NAME.1`.
pub(super) fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Which of a daemon's streams a line came from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Who a stream belongs to, for the fields of each re-emitted line.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub(super) volume: String,
    pub(super) target: String,
}

/// Reads `reader` to its end, line by line: each line to the host's log and to `file`.
pub(super) async fn relay(
    reader: impl AsyncRead + Unpin,
    stream: Stream,
    origin: Origin,
    file: Arc<Mutex<LogFile>>,
) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    let mut file_failed = false;
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(target = %origin.target, stream = stream.name(), error = %e, "cannot read a FUSE daemon's output");
                break;
            }
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let appended = file.lock().unwrap_or_else(|p| p.into_inner()).append(&line);
        match appended {
            Ok(()) => file_failed = false,
            Err(e) if !file_failed => {
                file_failed = true;
                tracing::warn!(target = %origin.target, error = %e, "cannot write a FUSE daemon's log file");
            }
            Err(_) => {}
        }
        emit(&origin, stream, &String::from_utf8_lossy(&line));
    }
}

/// The level a daemon's text line was logged at (tracing's and most loggers' `LEVEL` word near
/// the start); info when there is none.
pub(super) fn level_of(line: &str) -> tracing::Level {
    let head: String = line.chars().take(64).collect();
    for word in head.split(|c: char| !c.is_ascii_alphabetic()) {
        match word {
            "ERROR" => return tracing::Level::ERROR,
            "WARN" | "WARNING" => return tracing::Level::WARN,
            "INFO" => return tracing::Level::INFO,
            "DEBUG" => return tracing::Level::DEBUG,
            "TRACE" => return tracing::Level::TRACE,
            _ => {}
        }
    }
    if line.contains("\"level\":\"ERROR\"") {
        tracing::Level::ERROR
    } else if line.contains("\"level\":\"WARN\"") {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    }
}

fn emit(origin: &Origin, stream: Stream, line: &str) {
    let (volume, target, stream) = (
        origin.volume.as_str(),
        origin.target.as_str(),
        stream.name(),
    );
    match level_of(line) {
        tracing::Level::ERROR => {
            tracing::error!(volume = volume, target = target, stream = stream, "{line}")
        }
        tracing::Level::WARN => {
            tracing::warn!(volume = volume, target = target, stream = stream, "{line}")
        }
        tracing::Level::DEBUG => {
            tracing::debug!(volume = volume, target = target, stream = stream, "{line}")
        }
        tracing::Level::TRACE => {
            tracing::trace!(volume = volume, target = target, stream = stream, "{line}")
        }
        _ => tracing::info!(volume = volume, target = target, stream = stream, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_appended_to_and_rotated_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        std::fs::write(&path, "from the last daemon\n").unwrap();
        let mut log = LogFile::open(&path, 64).unwrap();
        log.append(b"first").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "from the last daemon\nfirst\n",
            "appended, not truncated"
        );
        log.append(&[b'x'; 40]).unwrap();
        let rotated = rotated_path(&path);
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "from the last daemon\nfirst\n"
        );
        assert_eq!(std::fs::read(&path).unwrap().len(), 41);
        log.append(&[b'y'; 40]).unwrap();
        assert_eq!(std::fs::read(&rotated).unwrap().len(), 41, ".1 replaced");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn levels_are_read_from_the_daemons_lines() {
        for (line, level) in [
            (
                "2026-12-06T23:31:20.1Z ERROR cos_fuse: upload failed",
                tracing::Level::ERROR,
            ),
            ("2026-12-06T23:31:20.1Z  WARN x: y", tracing::Level::WARN),
            ("2026-12-06T23:31:20.1Z  INFO x: y", tracing::Level::INFO),
            (r#"{"level":"ERROR","fields":{}}"#, tracing::Level::ERROR),
            ("bucket does not exist", tracing::Level::INFO),
        ] {
            assert_eq!(level_of(line), level, "{line}");
        }
    }

    #[tokio::test]
    async fn long_lines_come_in_pieces_and_all_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let file = Arc::new(Mutex::new(LogFile::open(&path, MAX_LOG_BYTES).unwrap()));
        let mut input = vec![b'a'; MAX_LINE_BYTES as usize + 10];
        input.extend_from_slice(b"\nshort\r\n\nlast");
        let origin = Origin {
            volume: "v".into(),
            target: "/t".into(),
        };
        relay(&input[..], Stream::Stderr, origin, Arc::clone(&file)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{}", lines.len());
        assert_eq!(lines[0].len(), MAX_LINE_BYTES as usize);
        assert_eq!(&lines[1..], ["aaaaaaaaaa", "short", "last"]);
    }
}
