//! Calls on a file system that may never answer: a `hard` NFS mount whose server is gone, or a
//! FUSE mount whose daemon is stopped, blocks a `stat` or `statvfs` in the kernel for as long as
//! the server is away, and no signal short of a fatal one ends it. [`call`] runs such a call on
//! its own thread and waits for it at most a limit; past it the caller gets
//! [`MountError::NotAnswering`] and the thread is abandoned to finish whenever the server comes
//! back.
//!
//! Abandoned threads are bounded: once a call on a path has run past its limit, new calls on the
//! same path are answered [`MountError::NotAnswering`] at once instead of starting more threads
//! (until that call returns), so a dead mount costs only the threads of the calls made in the
//! first limit after it stopped answering, however often it is asked about later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::MountError;

/// How long a stat of a mount is waited for before the mount is reported as not answering.
pub const STAT_LIMIT: Duration = Duration::from_secs(10);

/// The calls still running on one path: each one's number, start, and limit.
type Running = Vec<(u64, Instant, Duration)>;

/// The calls still running, by path, process-wide.
fn running() -> MutexGuard<'static, HashMap<PathBuf, Running>> {
    static RUNNING: OnceLock<Mutex<HashMap<PathBuf, Running>>> = OnceLock::new();
    RUNNING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Records a call on `path` about to start, unless one already ran past its limit there.
fn start(path: &Path, limit: Duration) -> Option<u64> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut running = running();
    let calls = running.entry(path.to_path_buf()).or_default();
    if calls
        .iter()
        .any(|(_, started, limit)| started.elapsed() >= *limit)
    {
        return None;
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    calls.push((id, Instant::now(), limit));
    Some(id)
}

fn finish(path: &Path, id: u64) {
    let mut running = running();
    if let Some(calls) = running.get_mut(path) {
        calls.retain(|(call, _, _)| *call != id);
        if calls.is_empty() {
            running.remove(path);
        }
    }
}

fn not_answering(path: &Path, waited: Duration) -> MountError {
    MountError::NotAnswering {
        path: path.display().to_string(),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Runs `f`, a call on the file system at `path`, waiting for it at most `limit`.
pub fn call<T: Send + 'static>(
    path: &Path,
    limit: Duration,
    f: impl FnOnce() -> Result<T, MountError> + Send + 'static,
) -> Result<T, MountError> {
    let Some(id) = start(path, limit) else {
        return Err(not_answering(path, limit));
    };
    let (tx, rx) = mpsc::sync_channel(1);
    let key = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("bounded-stat".into())
        .spawn(move || {
            let result = f();
            finish(&key, id);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        finish(path, id);
        return Err(MountError::Io {
            path: path.display().to_string(),
            what: "cannot start a thread to stat the mount",
            source: e,
        });
    }
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(not_answering(path, limit)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(MountError::Io {
            path: path.display().to_string(),
            what: "the thread that stats the mount ended without an answer",
            source: std::io::Error::other("thread panicked"),
        }),
    }
}

/// `std::fs::metadata` of `path`, bounded by `limit`.
pub fn metadata(path: &Path, limit: Duration) -> Result<std::fs::Metadata, MountError> {
    let owned = path.to_path_buf();
    call(path, limit, move || {
        std::fs::metadata(&owned).map_err(|source| MountError::Io {
            path: owned.display().to_string(),
            what: "stat",
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    fn hold(flag: Arc<AtomicBool>) {
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_answer_in_time_is_returned() {
        let got = call(Path::new("/bounded/quick"), Duration::from_secs(5), || {
            Ok(7)
        });
        assert_eq!(got.unwrap(), 7);
        // The path is free again for the next call.
        assert_eq!(
            call(Path::new("/bounded/quick"), Duration::from_secs(5), || Ok(
                8
            ))
            .unwrap(),
            8
        );
    }

    #[test]
    fn a_call_that_hangs_is_abandoned_at_the_limit_and_not_started_twice() {
        let release = Arc::new(AtomicBool::new(false));
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let path = Path::new("/bounded/hung");
        let (r, s) = (Arc::clone(&release), Arc::clone(&started));
        let begun = Instant::now();
        let err = call(path, Duration::from_millis(200), move || {
            s.fetch_add(1, Ordering::SeqCst);
            hold(r);
            Ok(())
        })
        .unwrap_err();
        assert!(begun.elapsed() < Duration::from_secs(3));
        assert!(
            matches!(err, MountError::NotAnswering { waited_ms: 200, .. }),
            "{err:?}"
        );
        // Asked again while the first call still hangs past its limit: refused at once, no
        // second thread.
        let s = Arc::clone(&started);
        let begun = Instant::now();
        let again = call(path, Duration::from_secs(5), move || {
            s.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        assert!(matches!(again, Err(MountError::NotAnswering { .. })));
        assert!(begun.elapsed() < Duration::from_secs(1));
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // Once the server answers, the path can be asked about again.
        release.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match call(path, Duration::from_secs(5), || Ok(())) {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("still refused after the release: {e}"),
            }
        }
    }

    #[test]
    fn other_paths_are_not_held_up_by_a_hung_one() {
        let release = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&release);
        let hung = std::thread::spawn(move || {
            call(
                Path::new("/bounded/other-hung"),
                Duration::from_secs(5),
                move || {
                    hold(r);
                    Ok(())
                },
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        let begun = Instant::now();
        call(
            Path::new("/bounded/fine"),
            Duration::from_secs(5),
            || Ok(()),
        )
        .unwrap();
        assert!(begun.elapsed() < Duration::from_secs(1));
        release.store(true, Ordering::SeqCst);
        hung.join().unwrap().unwrap();
    }
}
