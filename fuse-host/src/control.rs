//! The control socket of a daemon the host runs: how the host (or a successor daemon) gets the
//! daemon's kernel FUSE connection, and how a successor asks it to hand the mount over.
//!
//! One request per connection, one line: `fd` is answered `ok PID` with a copy of the
//! connection attached (`SCM_RIGHTS`); `hand-over` is answered `drained` once the daemon has
//! stopped reading the connection and answered what it had read, after which it exits. The
//! socket is a file private to root beside the host's state; only root can connect.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The argument that tells a daemon where its control socket is.
pub const CONTROL_SOCKET_ARG: &str = "--control-socket";
/// The argument that tells a daemon its kernel connection is inherited as descriptor N.
pub const FUSE_FD_ARG: &str = "--fuse-fd";
/// The argument that tells a daemon to take the mount over from the daemon at its control socket.
pub const TAKE_OVER_ARG: &str = "--take-over";
/// The descriptor number a restarted daemon inherits its connection as.
pub const INHERITED_FD: i32 = 3;

/// How long one control request may take (a hand-over waits for answers to be written).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What a daemon does on a request.
pub trait Daemon: Send + 'static {
    /// A copy of its kernel connection.
    fn connection(&self) -> std::io::Result<OwnedFd>;
    /// Stops reading and finishes what was read; the daemon exits after the answer is sent.
    fn hand_over(&self) -> std::io::Result<()>;
    /// Called after `hand-over` was answered: the process ends.
    fn exit(&self) -> !;
}

/// Binds the control socket at `path` (replacing a dead daemon's file), private to root.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests on `listener` from a thread of its own, for the life of the process.
pub fn serve(listener: UnixListener, daemon: impl Daemon) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &daemon) {
                    tracing::warn!(error = %e, "control request failed");
                }
            }
        })
        .map(drop)
}

fn answer(stream: UnixStream, daemon: &impl Daemon) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let line = read_line(&stream)?;
    let mut stream = stream;
    match line.trim() {
        "fd" => {
            let dev = daemon.connection()?;
            let text = format!("ok {}\n", std::process::id());
            let fds = [dev.as_raw_fd()];
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[std::io::IoSlice::new(text.as_bytes())],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .map_err(std::io::Error::from)?;
            Ok(())
        }
        "hand-over" => {
            tracing::info!("handing the mount over to a successor");
            daemon.hand_over()?;
            stream.write_all(b"drained\n")?;
            stream.flush()?;
            daemon.exit()
        }
        other => {
            stream.write_all(format!("error unknown request {other:?}\n").as_bytes())?;
            Ok(())
        }
    }
}

/// Reads one short line (a request or an answer is a word: never more than 64 bytes).
fn read_line(stream: &UnixStream) -> std::io::Result<String> {
    let mut line = String::new();
    BufReader::new(std::io::Read::take(stream, 64)).read_line(&mut line)?;
    Ok(line)
}

/// Asks the daemon at `path` for its kernel connection: its PID and a copy of it.
pub fn fetch_connection(path: &Path, timeout: Duration) -> std::io::Result<(u32, OwnedFd)> {
    let mut stream = connect(path, timeout)?;
    stream.write_all(b"fd\n")?;
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        stream.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let bytes = msg.bytes;
    let mut fd = None;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                fd = Some(owned(raw));
            }
        }
    }
    let text = std::str::from_utf8(&buf[..bytes])
        .unwrap_or("")
        .trim()
        .to_owned();
    let pid = text
        .strip_prefix("ok ")
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(|| std::io::Error::other(format!("the daemon answered {text:?}")))?;
    let fd = fd.ok_or_else(|| std::io::Error::other("the daemon sent no connection"))?;
    Ok((pid, fd))
}

#[allow(unsafe_code)]
fn owned(raw: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `raw` was installed in this process by recvmsg's SCM_RIGHTS and nothing else owns
    // it.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Asks the daemon at `path` to hand its mount over, and waits until it has.
pub fn request_hand_over(path: &Path) -> std::io::Result<()> {
    let mut stream = connect(path, REQUEST_TIMEOUT)?;
    stream.write_all(b"hand-over\n")?;
    let line = read_line(&stream)?;
    if line.trim() == "drained" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the daemon at {} answered {:?} to hand-over",
            path.display(),
            line.trim()
        )))
    }
}

fn connect(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let stream = UnixStream::connect(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the daemon's control socket {}: {e}",
                path.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fake {
        file: std::fs::File,
        handed: Arc<AtomicBool>,
    }

    impl Daemon for Fake {
        fn connection(&self) -> std::io::Result<OwnedFd> {
            Ok(self.file.try_clone()?.into())
        }
        fn hand_over(&self) -> std::io::Result<()> {
            self.handed.store(true, Ordering::SeqCst);
            Ok(())
        }
        fn exit(&self) -> ! {
            // A test cannot end its process: park the control thread instead.
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn a_connection_is_fetched_and_a_hand_over_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl").join("m.sock");
        let file_path = dir.path().join("conn");
        std::fs::write(&file_path, b"the connection").unwrap();
        let handed = Arc::new(AtomicBool::new(false));
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        serve(
            listener,
            Fake {
                file: std::fs::File::open(&file_path).unwrap(),
                handed: Arc::clone(&handed),
            },
        )
        .unwrap();
        let (pid, fd) = fetch_connection(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(pid, std::process::id());
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).unwrap();
        assert_eq!(text, "the connection");
        request_hand_over(&path).unwrap();
        assert!(handed.load(Ordering::SeqCst));
    }

    #[test]
    fn no_daemon_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e =
            fetch_connection(&dir.path().join("none.sock"), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("none.sock"), "{e}");
    }
}
