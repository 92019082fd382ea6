//! Handing a live connection to a successor: this process stops reading requests from the
//! kernel, answers every request it has already read, and returns; the caller then tells the
//! successor, which reads on from where this one stopped. Requests the kernel holds meanwhile
//! wait in its queue: a reader sees a stall, never an error.
//!
//! The session's threads block in `read(2)` on the connection. The session's descriptor is made
//! one end of a socket pair (so no new read reaches the kernel), and each thread blocked in a
//! read is interrupted by a signal whose handler does nothing (so its retry reads the pair,
//! where nothing comes). Answers the session writes still go through the pair, and a thread of
//! this module copies them to the kernel.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use super::connection::{Served, pair, put_under};
use super::counters::FuseCounters;

/// The signal that interrupts the session's reads.
const INTERRUPT: Signal = Signal::SIGUSR2;
/// The most a FUSE answer holds: a megabyte of data and its header.
const ANSWER_MAX: usize = (1 << 20) + 4096;
/// How long requests already read must be quiet before the hand-over counts them done.
const SETTLE: Duration = Duration::from_millis(30);

extern "C" fn do_nothing(_: libc::c_int) {}

/// Installs the interrupting signal's handler (without `SA_RESTART`, so a blocked read returns
/// `EINTR`). Call it once, before any hand-over.
#[allow(unsafe_code)]
pub fn prepare_hand_over() -> io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(do_nothing),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing, so it is async-signal-safe; it replaces no handler the
    // program relies on (SIGUSR2 is not used otherwise).
    unsafe { sigaction(INTERRUPT, &action) }
        .map(drop)
        .map_err(|e| io::Error::other(format!("cannot install the {INTERRUPT} handler: {e}")))
}

/// Stops the session of `served` reading from the kernel and waits (up to `timeout`) until the
/// requests it read are answered. Returns how many were still open when it gave up (0: all
/// answered). The session must not be used for new requests afterwards: exit.
pub fn hand_over(
    served: &Served,
    counters: &Arc<FuseCounters>,
    timeout: Duration,
) -> io::Result<u64> {
    let (session_end, relay_end) = pair()?;
    put_under(&session_end, served.session_fd)?;
    drop(session_end);
    let dev = served.dev.try_clone()?;
    std::thread::Builder::new()
        .name("hand-over".into())
        .spawn(move || relay(relay_end, dev))?;
    interrupt_session_threads();
    let deadline = Instant::now() + timeout;
    let mut quiet_since: Option<Instant> = None;
    let mut rounds = 0u32;
    loop {
        rounds += 1;
        let open = counters.in_flight();
        let now = Instant::now();
        if open == 0 {
            let since = *quiet_since.get_or_insert(now);
            if now - since >= SETTLE {
                return Ok(0);
            }
        } else {
            quiet_since = None;
        }
        if now >= deadline {
            return Ok(open);
        }
        // Interrupt again now and then (every 50 ms): a thread may have been between reads
        // at the first signal.
        if rounds.is_multiple_of(10) {
            interrupt_session_threads();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Copies what the session writes to the pair (answers, notifications) to the kernel.
fn relay(from: OwnedFd, to: OwnedFd) {
    let mut buf = vec![0u8; ANSWER_MAX];
    loop {
        match nix::unistd::read(from.as_fd(), &mut buf) {
            Ok(0) => return,
            // An answer the kernel refuses (ENOENT: its request was interrupted) is dropped, as
            // the session itself would.
            Ok(n) => drop(nix::unistd::write(&to, &buf[..n])),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Signals every thread of the session (fuser names them `fuser-N`).
fn interrupt_session_threads() {
    let pid = std::process::id();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("fuser-") {
            continue;
        }
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                return;
            };
            tgkill(pid, tid);
        }
    }
}

#[allow(unsafe_code)]
fn tgkill(pid: libc::pid_t, tid: libc::pid_t) {
    // SAFETY: tgkill only sends a signal, whose handler does nothing; a thread that has exited
    // since it was listed makes it fail with ESRCH, which is ignored.
    unsafe {
        libc::syscall(libc::SYS_tgkill, pid, tid, INTERRUPT as libc::c_int);
    }
}
