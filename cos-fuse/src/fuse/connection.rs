//! A kernel FUSE connection kept apart from the process serving it, so that a mount outlives its
//! daemon: [`open_and_mount`] opens `/dev/fuse` and mounts it (what fuser's mount does, with the
//! same options), and [`serve`] serves a connection, fresh or already running.
//!
//! A running connection (one a dead or departing daemon served) gets no second `INIT` from the
//! kernel, and fuser's session insists on one. So the session is handed a socket pair first, on
//! which it reads a made-up `INIT` and answers it (the answer is dropped: the kernel keeps what it
//! agreed with the first daemon); then the connection is put, with `dup2`, under the very
//! descriptor number the session reads and writes. From then on fuser talks to the kernel
//! directly: no request is copied through this process.
//!
//! A hand-over ([`crate::fuse::control`]) does the reverse: the session's descriptor becomes one
//! end of a socket pair, so the session takes no more requests from the kernel; the answers of
//! the requests it still has go through the pair to the kernel.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use fuser::Session;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use tokio::runtime::Handle;

use super::adapter::FuseFs;
use super::mount::{MountOptions, set_invalidator};
use super::read_ahead::raise_kernel_read_ahead;
use crate::fs::Fs;
use crate::store::ObjectStore;

/// The notification that has the kernel send unanswered requests again.
const FUSE_NOTIFY_RESEND: i32 = 7;
/// `FUSE_INIT`'s opcode.
const FUSE_INIT: u32 = 26;
/// The made-up `INIT`: the 40-byte request header, then the 64-byte `fuse_init_in`.
const INIT_LEN: usize = 40 + 64;
/// The socket buffers of a pair that carries answers of up to a megabyte in one message.
const PAIR_BUFFER: usize = 4 << 20;

/// Opens `/dev/fuse` and mounts it at `mountpoint` with `options`; the kernel then waits for
/// the connection's `INIT` to be answered ([`serve`] does).
pub fn open_and_mount(
    mountpoint: &Path,
    options: &MountOptions,
    read_only: bool,
) -> io::Result<OwnedFd> {
    let dev: OwnedFd = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/fuse: {e}")))?
        .into();
    let mode = std::fs::metadata(mountpoint)?.permissions().mode();
    let (source, flags, data) = options.kernel_mount(dev.as_raw_fd(), mode, read_only);
    nix::mount::mount(
        Some(source.as_str()),
        mountpoint,
        Some("fuse"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| io::Error::other(format!("mount of {} failed: {e}", mountpoint.display())))?;
    Ok(dev)
}

/// What [`serve`] leaves for a hand-over: the connection, and the descriptor number the session
/// uses for it.
#[derive(Debug)]
pub struct Served {
    /// This process's own copy of the connection: handed to a successor, or to the supervisor.
    pub dev: OwnedFd,
    /// The number under which the session reads and writes the connection.
    pub session_fd: RawFd,
}

/// Serves `fs` on the connection `dev` until the kernel ends it (unmount: `DESTROY`, or the
/// connection is gone). `running`: the connection was already answered `INIT` by an earlier
/// daemon (a restart, a take-over). `ready` runs once the session is set up, before the first
/// request is read, with what a hand-over needs.
pub fn serve<S: ObjectStore>(
    fs: Fs<S>,
    runtime: Handle,
    dev: OwnedFd,
    running: bool,
    mountpoint: &Path,
    options: &MountOptions,
    ready: impl FnOnce(Served),
) -> io::Result<()> {
    let cfg = options.fuser_config(fs.config().read_only);
    let acl = cfg.acl;
    let adapter = FuseFs::new(fs.clone(), runtime, Arc::clone(&options.counters));
    let session = if running {
        let (ours, theirs) = pair()?;
        nix::unistd::write(&ours, &made_up_init())
            .map_err(|e| io::Error::other(format!("cannot write INIT to the session: {e}")))?;
        let session = Session::from_fd(adapter, theirs, acl, cfg)?;
        // The session's answer to the made-up INIT: the kernel must never see it.
        let mut answer = vec![0u8; 4096];
        let _ = nix::unistd::read(&ours, &mut answer);
        put_under(&dev, session.as_fd().as_raw_fd()).map_err(|e| {
            io::Error::other(format!("cannot hand the connection to the session: {e}"))
        })?;
        ask_resend(&dev);
        session
    } else {
        Session::from_fd(adapter, dev.try_clone()?, acl, cfg)?
    };
    set_invalidator(&fs, session.notifier());
    raise_kernel_read_ahead(mountpoint, fs.config().kernel_read_ahead);
    ready(Served {
        session_fd: session.as_fd().as_raw_fd(),
        dev,
    });
    session.run()
}

/// Makes the descriptor number `number`, owned by a live session, refer to `file`'s open file.
/// Ownership does not change: the session still closes `number`, and `file` stays ours.
#[allow(unsafe_code)]
pub(super) fn put_under(file: &impl AsFd, number: RawFd) -> io::Result<()> {
    // SAFETY: `number` is open (its session lives for the caller's borrow); dup2 replaces what it
    // refers to atomically, so a thread of the session reading or writing it meanwhile uses
    // either the old or the new file, never a closed or reused number.
    let r = unsafe { libc::dup2(file.as_fd().as_raw_fd(), number) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel (Linux 6.9 and later) to send again the requests a dead predecessor had read
/// and never answered: they are served now instead of waiting forever. An older kernel refuses
/// the notification; those requests then stay unanswered (their callers hang until killed).
fn ask_resend(dev: &OwnedFd) {
    let mut m = [0u8; 16];
    m[0..4].copy_from_slice(&16u32.to_ne_bytes());
    m[4..8].copy_from_slice(&FUSE_NOTIFY_RESEND.to_ne_bytes());
    // unique 0: a notification.
    if let Err(e) = nix::unistd::write(dev, &m) {
        tracing::warn!(error = %e, "the kernel cannot send unanswered requests again (FUSE_NOTIFY_RESEND needs Linux 6.9): requests the dead daemon held stay unanswered");
    }
}

/// A socket pair that keeps FUSE messages whole, with buffers for megabyte answers.
pub(super) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| io::Error::other(format!("cannot make a socket pair: {e}")))?;
    for fd in [&a, &b] {
        use nix::sys::socket::{setsockopt, sockopt};
        // As root the buffers may exceed the system's maximum; otherwise the maximum it is.
        if setsockopt(fd, sockopt::SndBufForce, &PAIR_BUFFER).is_err() {
            let _ = setsockopt(fd, sockopt::SndBuf, &PAIR_BUFFER);
        }
        if setsockopt(fd, sockopt::RcvBufForce, &PAIR_BUFFER).is_err() {
            let _ = setsockopt(fd, sockopt::RcvBuf, &PAIR_BUFFER);
        }
    }
    Ok((a, b))
}

/// An `INIT` request as the kernel sends it: protocol 7.36, every capability offered (the
/// session's answer is dropped, so what it picks changes nothing the kernel does).
fn made_up_init() -> [u8; INIT_LEN] {
    let mut m = [0u8; INIT_LEN];
    let put32 = |m: &mut [u8; INIT_LEN], at: usize, v: u32| {
        m[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    };
    put32(&mut m, 0, INIT_LEN as u32);
    put32(&mut m, 4, FUSE_INIT);
    m[8..16].copy_from_slice(&1u64.to_ne_bytes()); // unique
    // nodeid 0, uid 0, gid 0, pid 0, padding 0.
    put32(&mut m, 40, 7); // major
    put32(&mut m, 44, 36); // minor
    put32(&mut m, 48, 128 * 1024); // max_readahead
    put32(&mut m, 52, u32::MAX); // flags
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_made_up_init_is_a_whole_init_request() {
        let m = made_up_init();
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(u32::from_ne_bytes([m[4], m[5], m[6], m[7]]), FUSE_INIT);
        assert_eq!(u32::from_ne_bytes([m[40], m[41], m[42], m[43]]), 7);
    }

    #[test]
    fn a_pair_carries_a_megabyte_message_whole() {
        let (a, b) = pair().unwrap();
        let big = vec![7u8; 1 << 20];
        let writer = std::thread::spawn(move || nix::unistd::write(&a, &big).unwrap());
        let mut got = vec![0u8; 2 << 20];
        let n = nix::unistd::read(&b, &mut got).unwrap();
        assert_eq!(n, 1 << 20);
        assert_eq!(writer.join().unwrap(), 1 << 20);
    }
}
