//! The daemons' output. A daemon's standard output and error are its log file in the state
//! directory itself (opened `O_APPEND`, 0600), never a pipe to the host: a daemon outlives the
//! host that started it, and a pipe would break with the host and lose every later line. The
//! host follows each live daemon's file ([`follow`]) and re-emits each new line through its own
//! log (so `kubectl logs` shows it, in the host's format, with the `volume` and `target` fields);
//! a restarted host follows the daemons it re-adopts from where their files end.
//!
//! The follower also rotates: past [`MAX_LOG_BYTES`] the file is copied to `.1` (replacing the
//! one there) and truncated, which an `O_APPEND` writer carries on after; a line the daemon
//! writes between the copy and the truncation is lost. At most twice the limit per mount on
//! disk. It never starts or stops a daemon.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Past this size the daemon's log file is copied to `.1` and truncated.
pub(super) const MAX_LOG_BYTES: u64 = 10 << 20;
/// A longer line is passed on in pieces of this size.
const MAX_LINE_BYTES: usize = 16 << 10;
/// How often a daemon's file is looked at for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
/// The most read from a file at one look.
const READ_CHUNK: u64 = 1 << 20;

/// Opens (creates; 0600 either way) the daemon's log for appending: what it gets as its standard output and
/// error. Also returns the file's length now, where following it starts.
pub(super) fn daemon_output(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // Also a file an older host (or anyone) left with a looser mode.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// The length of the file at `path` now (0 when there is none): where a follower of a daemon
/// that is already running starts.
pub(super) fn end_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Where a log file goes when it is rotated: `NAME.1`.
pub(super) fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Who a daemon is, for the fields of each re-emitted line.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub(super) volume: String,
    pub(super) target: String,
}

/// Reading one daemon's file from an offset: complete lines out, the partial last one kept.
#[derive(Debug)]
pub(super) struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    max_bytes: u64,
}

impl Tail {
    /// Follows `path` from `offset`, rotating it past `max_bytes`.
    pub(super) fn new(path: &Path, offset: u64, max_bytes: u64) -> Tail {
        Tail {
            path: path.to_owned(),
            offset,
            partial: Vec::new(),
            max_bytes,
        }
    }

    /// The lines written since the last look (a line longer than [`MAX_LINE_BYTES`] in pieces);
    /// with `last`, also what is left of an unfinished line. Rotates the file when it is past
    /// its limit and everything in it has been read.
    pub(super) fn read(&mut self, last: bool) -> std::io::Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lines),
            Err(e) => return Err(e),
        };
        loop {
            let len = file.metadata()?.len();
            if len < self.offset {
                // Truncated by someone else: start again from its beginning.
                self.offset = 0;
            }
            if len == self.offset {
                break;
            }
            file.seek(SeekFrom::Start(self.offset))?;
            let mut chunk = Vec::new();
            let read = (&mut file)
                .take((len - self.offset).min(READ_CHUNK))
                .read_to_end(&mut chunk)?;
            if read == 0 {
                break;
            }
            self.offset += read as u64;
            self.split(&chunk, &mut lines);
        }
        if last && !self.partial.is_empty() {
            lines.push(take_line(&mut self.partial, usize::MAX));
        }
        if self.offset >= self.max_bytes {
            std::fs::copy(&self.path, rotated_path(&self.path))?;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)?
                .set_len(0)?;
            self.offset = 0;
        }
        Ok(lines)
    }

    fn split(&mut self, chunk: &[u8], lines: &mut Vec<String>) {
        for byte in chunk {
            if *byte == b'\n' {
                let line = take_line(&mut self.partial, usize::MAX);
                if !line.is_empty() {
                    lines.push(line);
                }
            } else {
                self.partial.push(*byte);
                if self.partial.len() >= MAX_LINE_BYTES {
                    lines.push(take_line(&mut self.partial, MAX_LINE_BYTES));
                }
            }
        }
    }
}

/// The first `at_most` bytes of `buffer` as a line (a trailing `\r` dropped), taken out of it.
fn take_line(buffer: &mut Vec<u8>, at_most: usize) -> String {
    let rest = buffer.split_off(at_most.min(buffer.len()));
    let mut line = std::mem::replace(buffer, rest);
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Re-emits the lines a daemon appends to `path` from `offset` on, until `alive` says the daemon
/// is gone (then the rest of the file, and done) or `stop` changes (the host is stopping; the
/// next host follows on).
pub(super) async fn follow(
    path: PathBuf,
    offset: u64,
    origin: Origin,
    alive: impl Fn() -> bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tail = Tail::new(&path, offset, MAX_LOG_BYTES);
    let mut failed = false;
    loop {
        let gone = !alive();
        match tail.read(gone) {
            Ok(lines) => {
                failed = false;
                for line in lines {
                    emit(&origin, &line);
                }
            }
            Err(e) if !failed => {
                failed = true;
                tracing::warn!(target = %origin.target, error = %e, "cannot read a FUSE daemon's log file");
            }
            Err(_) => {}
        }
        if gone {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            _ = stop.changed() => return,
        }
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

fn emit(origin: &Origin, line: &str) {
    let (volume, target) = (origin.volume.as_str(), origin.target.as_str());
    match level_of(line) {
        tracing::Level::ERROR => {
            tracing::error!(volume = volume, target = target, "{line}")
        }
        tracing::Level::WARN => {
            tracing::warn!(volume = volume, target = target, "{line}")
        }
        tracing::Level::DEBUG => {
            tracing::debug!(volume = volume, target = target, "{line}")
        }
        tracing::Level::TRACE => {
            tracing::trace!(volume = volume, target = target, "{line}")
        }
        _ => tracing::info!(volume = volume, target = target, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_as_they_come_and_the_file_rotates_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        std::fs::write(&path, "from the last daemon\n").unwrap();
        let (mut out, start) = daemon_output(&path).unwrap();
        let mut tail = Tail::new(&path, start, 64);
        use std::io::Write;
        out.write_all(b"first\nhalf").unwrap();
        assert_eq!(tail.read(false).unwrap(), ["first"], "only what is new");
        out.write_all(b" done\r\n\n").unwrap();
        assert_eq!(tail.read(false).unwrap(), ["half done"]);
        out.write_all(&[b'x'; 40]).unwrap();
        out.write_all(b"\n").unwrap();
        assert_eq!(tail.read(false).unwrap(), ["x".repeat(40)]);
        assert_eq!(
            std::fs::read(rotated_path(&path)).unwrap().len(),
            80,
            "rotated once past 64 bytes"
        );
        assert_eq!(std::fs::read(&path).unwrap().len(), 0);
        // The daemon's O_APPEND output carries on at the start of the truncated file.
        out.write_all(b"after\nunfinished").unwrap();
        assert_eq!(tail.read(false).unwrap(), ["after"]);
        assert_eq!(
            tail.read(true).unwrap(),
            ["unfinished"],
            "the rest at the end"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\nunfinished");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn long_lines_come_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        let mut input = vec![b'a'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nshort\r\n\nlast");
        std::fs::write(&path, &input).unwrap();
        let lines = Tail::new(&path, 0, MAX_LOG_BYTES).read(true).unwrap();
        assert_eq!(lines.len(), 4, "{}", lines.len());
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(&lines[1..], ["aaaaaaaaaa", "short", "last"]);
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
}
