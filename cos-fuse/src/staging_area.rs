//! The node's staging area: one directory that every cos-fuse daemon on a node stages under, and
//! one cap on the bytes all of them stage together. It owns the layout of the area and the
//! cross-process accounting; it knows nothing of files being written (`fs/staging.rs` counts
//! those and asks here for room) or of uploads (`upload_journal.rs` keeps its journal in a
//! mount's directory).
//!
//! # Layout
//!
//! ```text
//! AREA/                       0700, made by the FUSE host (`--staging-dir`) or the first daemon
//!   area.lock                 the marker of an area; flock'd around every change of a lease
//!   m-<16 hex>/               one mount's directory (0700), named by `mount_dir_name`, the same
//!                             for every incarnation of the mount's daemon
//!     lease.<random>          one daemon's lease: the bytes it holds of the cap, as decimal
//!                             text; flock'd by its daemon for as long as it lives
//!     uploads/                the mount's journal of multipart uploads in flight
//!     .tmp<random>            staging files (unlinked as soon as created)
//! ```
//!
//! # Accounting
//!
//! A daemon counts its staging bytes in memory and holds a *lease* on the cap, rounded up to
//! [`LEASE_CHUNK`], so it takes the area's lock only every few MiB a file grows. Under
//! `area.lock` it sums the other leases and grows its own only while the sum stays within the
//! cap: a write past it is ENOSPC. It gives bytes back when it holds two chunks more than it uses,
//! and all of them when it stages nothing, so an idle daemon holds nothing.
//!
//! A lease is alive while its daemon holds an exclusive `flock` on it. The kernel drops that lock
//! when the process dies, however it dies (SIGKILL included), so whoever next takes `area.lock`
//! and finds a lease it can lock reclaims it: its bytes stop counting and the file goes. The
//! dead daemon's staging files are unlinked files, which the kernel freed with its last
//! descriptor; a restarted daemon also removes any named leftover in its directory
//! ([`prepare_mount_dir`]).
//!
//! A directory is a member of an area when its parent holds `area.lock`; a daemon staging
//! anywhere else (by hand, without the FUSE host) keeps a private pool and no lease.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The marker file of an area, and its lock.
pub const AREA_LOCK: &str = "area.lock";
/// Leases are `lease.<random>`.
const LEASE_PREFIX: &str = "lease.";
/// The granularity of a lease: a daemon takes the area's lock once per this many bytes staged.
pub const LEASE_CHUNK: u64 = 8 * 1024 * 1024;

/// A failure of the staging area itself (not of a write in it).
#[derive(Debug, thiserror::Error)]
pub enum AreaError {
    #[error("staging area {path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The cap is taken by the leases of live daemons.
    #[error(
        "the node's staging area {path} is full: {others} bytes held by other mounts, {wanted} \
         wanted here, {cap} in all"
    )]
    Full {
        path: PathBuf,
        others: u64,
        wanted: u64,
        cap: u64,
    },
}

fn io_error<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> AreaError + 'a {
    move |source| AreaError::Io {
        path: path.to_owned(),
        what,
        source,
    }
}

/// The name of a mount's directory in an area: a stable hash (FNV-1a, 64 bits) of what
/// identifies the mount, so every incarnation of its daemon finds the same directory and no
/// other mount does.
pub fn mount_dir_name(identity: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in identity {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("m-{hash:016x}")
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Makes `area` an area (the directory, 0700, and its `area.lock`); done by the FUSE host at
/// start and by each daemon, so either may come first.
pub fn prepare_area(area: &Path) -> Result<(), AreaError> {
    private_dir(area).map_err(io_error(area, "cannot create the directory"))?;
    let lock = area.join(AREA_LOCK);
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&lock)
        .map_err(io_error(&lock, "cannot create the lock"))?;
    Ok(())
}

/// Prepares the directory of the mount `name` in `area` for a starting daemon and returns it:
/// makes the area and the directory, and removes what a previous incarnation left (named
/// staging files; leases of dead daemons go with the next accounting). The journal in it is
/// `upload_journal`'s, replayed by the daemon next.
pub fn prepare_mount_dir(area: &Path, name: &str) -> Result<PathBuf, AreaError> {
    prepare_area(area)?;
    let dir = area.join(name);
    private_dir(&dir).map_err(io_error(&dir, "cannot create the mount's directory"))?;
    let entries = std::fs::read_dir(&dir).map_err(io_error(&dir, "cannot list"))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let leftover = file_name.to_string_lossy().starts_with(".tmp");
        if leftover && entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a leftover staging file"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover staging file")
                }
            }
        }
    }
    Ok(dir)
}

/// Removes the mount's directory `dir` of an area when no daemon holds a lease in it and
/// `keep` does not ask to keep it (the journal still names uploads): a mount that is gone for
/// good leaves nothing behind. Decided under the area's lock, so no daemon takes a lease in it
/// meanwhile. True when it went (or was already gone).
pub fn remove_idle_mount_dir(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<bool, AreaError> {
    let Some(area) = dir.parent().filter(|_| is_mount_dir(dir)) else {
        return Ok(false);
    };
    if !dir.exists() {
        return Ok(true);
    }
    let _guard = lock_area(area)?;
    let entries = std::fs::read_dir(dir).map_err(io_error(dir, "cannot list"))?;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(LEASE_PREFIX)
        {
            continue;
        }
        let live = OpenOptions::new()
            .read(true)
            .open(entry.path())
            .and_then(|file| try_lock(&file).map(|locked| !locked))
            .unwrap_or(true);
        if live {
            return Ok(false);
        }
    }
    if keep(dir) {
        return Ok(false);
    }
    std::fs::remove_dir_all(dir).map_err(io_error(dir, "cannot remove the mount's directory"))?;
    Ok(true)
}

/// Whether `dir` is a mount's directory in an area: its parent holds `area.lock`.
pub fn is_mount_dir(dir: &Path) -> bool {
    dir.parent()
        .is_some_and(|area| area.join(AREA_LOCK).is_file())
}

/// One daemon's lease on an area's cap. Dropping it gives its bytes back.
#[derive(Debug)]
pub struct Lease {
    area: PathBuf,
    path: PathBuf,
    /// Locked exclusively for the lease's life: what tells others this daemon lives.
    file: File,
    cap: u64,
    held: u64,
}

/// Holds the area's lock until dropped (the kernel releases it if the process dies).
struct AreaGuard(File);

impl Drop for AreaGuard {
    fn drop(&mut self) {
        let _ = flock(&self.0, libc::LOCK_UN);
    }
}

/// `flock(2)` of `file` with `op`, again when a signal interrupts it.
#[allow(unsafe_code)]
fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock only takes the descriptor's number, which `file` keeps open meanwhile.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Locks `file` exclusively without waiting: false when another open file holds a lock on it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    match flock(file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

fn lock_area(area: &Path) -> Result<AreaGuard, AreaError> {
    let path = area.join(AREA_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .open(&path)
        .map_err(io_error(&path, "cannot open the lock"))?;
    flock(&file, libc::LOCK_EX).map_err(io_error(&path, "cannot lock"))?;
    Ok(AreaGuard(file))
}

impl Lease {
    /// Takes a lease (holding nothing yet) for the daemon staging in `dir`, a mount's directory
    /// of an area, on a cap of `cap` bytes for the whole area. Reclaims dead daemons' leases.
    pub fn open(dir: &Path, cap: u64) -> Result<Lease, AreaError> {
        let area = dir
            .parent()
            .ok_or_else(|| AreaError::Io {
                path: dir.to_owned(),
                what: "not in an area",
                source: std::io::ErrorKind::NotFound.into(),
            })?
            .to_owned();
        let _guard = lock_area(&area)?;
        // Created under the area's lock, so nobody sees it before it is locked.
        let (file, path) = tempfile::Builder::new()
            .prefix(LEASE_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)
            .and_then(|t| t.keep().map_err(|e| e.error))
            .map_err(io_error(dir, "cannot create a lease"))?;
        try_lock(&file)
            .and_then(|locked| {
                locked
                    .then_some(())
                    .ok_or_else(|| std::io::ErrorKind::WouldBlock.into())
            })
            .map_err(io_error(&path, "cannot lock a new lease"))?;
        let lease = Lease {
            area,
            path,
            file,
            cap,
            held: 0,
        };
        lease.others()?;
        Ok(lease)
    }

    /// Bytes this lease holds of the cap.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Bytes the area's live leases hold together, this one included.
    pub fn area_held(&self) -> Result<u64, AreaError> {
        let _guard = lock_area(&self.area)?;
        Ok(self.others()? + self.held)
    }

    /// Makes the lease hold at least `needed` bytes (rounded up to a chunk when there is room):
    /// [`AreaError::Full`] when the other daemons' leases leave less.
    pub fn cover(&mut self, needed: u64) -> Result<(), AreaError> {
        if needed <= self.held {
            return Ok(());
        }
        let _guard = lock_area(&self.area)?;
        let others = self.others()?;
        let room = self.cap.saturating_sub(others);
        if needed > room {
            return Err(AreaError::Full {
                path: self.area.clone(),
                others,
                wanted: needed,
                cap: self.cap,
            });
        }
        self.write(round_up(needed).min(room))
    }

    /// Gives back what the lease holds beyond `used` bytes, once that is two chunks or more (or
    /// everything, when `used` is 0).
    pub fn trim(&mut self, used: u64) -> Result<(), AreaError> {
        let keep = if used == 0 { 0 } else { round_up(used) };
        if self.held <= keep || (used != 0 && self.held - used < 2 * LEASE_CHUNK) {
            return Ok(());
        }
        let _guard = lock_area(&self.area)?;
        self.write(keep)
    }

    /// Records `bytes` in the lease file; the caller holds the area's lock.
    fn write(&mut self, bytes: u64) -> Result<(), AreaError> {
        use std::os::unix::fs::FileExt;
        let text = format!("{bytes:020}\n");
        self.file
            .write_all_at(text.as_bytes(), 0)
            .map_err(io_error(&self.path, "cannot write the lease"))?;
        self.held = bytes;
        Ok(())
    }

    /// The bytes of every other live lease in the area, removing the leases of dead daemons.
    /// The caller holds the area's lock.
    fn others(&self) -> Result<u64, AreaError> {
        let mut total: u64 = 0;
        let mounts = std::fs::read_dir(&self.area).map_err(io_error(&self.area, "cannot list"))?;
        for mount in mounts.flatten() {
            if !mount.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(mount.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let is_lease = entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(LEASE_PREFIX);
                if !is_lease || path == self.path {
                    continue;
                }
                total = total.saturating_add(read_or_reclaim(&path));
            }
        }
        Ok(total)
    }
}

/// The bytes of the lease at `path` if its daemon lives; else removes it and counts 0.
fn read_or_reclaim(path: &Path) -> u64 {
    let Ok(mut file) = File::open(path) else {
        return 0;
    };
    match try_lock(&file) {
        Ok(true) => {
            tracing::info!(lease = %path.display(), "reclaimed the staging lease of a daemon that is gone");
            let _ = std::fs::remove_file(path);
            0
        }
        Ok(false) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            text.trim().parse().unwrap_or(0)
        }
        Err(e) => {
            tracing::warn!(lease = %path.display(), error = %e, "cannot check a staging lease; not counted");
            0
        }
    }
}

fn round_up(bytes: u64) -> u64 {
    bytes.div_ceil(LEASE_CHUNK).saturating_mul(LEASE_CHUNK)
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(_guard) = lock_area(&self.area) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn area() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let area = root.path().join("area");
        let a = prepare_mount_dir(&area, &mount_dir_name(&["a"])).unwrap();
        let b = prepare_mount_dir(&area, &mount_dir_name(&["b"])).unwrap();
        (root, a, b)
    }

    #[test]
    fn two_leases_share_one_cap_and_give_back() {
        let (_root, a, b) = area();
        assert!(is_mount_dir(&a) && !is_mount_dir(a.parent().unwrap()));
        let mut la = Lease::open(&a, 40 * MIB).unwrap();
        let mut lb = Lease::open(&b, 40 * MIB).unwrap();
        la.cover(30 * MIB).unwrap();
        assert_eq!(la.held(), 32 * MIB, "rounded up to a chunk");
        assert!(matches!(lb.cover(9 * MIB), Err(AreaError::Full { .. })));
        lb.cover(8 * MIB).unwrap();
        assert_eq!(la.area_held().unwrap(), 40 * MIB);
        la.trim(20 * MIB).unwrap();
        assert_eq!(la.held(), 32 * MIB, "less than two chunks spare: kept");
        la.trim(0).unwrap();
        assert_eq!(la.held(), 0, "nothing staged: nothing held");
        lb.cover(40 * MIB).unwrap();
        drop(lb);
        la.cover(40 * MIB).unwrap();
    }

    #[test]
    fn a_dead_lease_is_reclaimed() {
        let (_root, a, b) = area();
        let mut la = Lease::open(&a, 16 * MIB).unwrap();
        la.cover(16 * MIB).unwrap();
        let mut lb = Lease::open(&b, 16 * MIB).unwrap();
        assert!(lb.cover(MIB).is_err(), "a live lease counts");
        // A daemon gone without a word: its lock went with its descriptors, its file stayed.
        flock(&la.file, libc::LOCK_UN).unwrap();
        let path = la.path.clone();
        std::mem::forget(la);
        lb.cover(16 * MIB).unwrap();
        assert!(!path.exists(), "the dead lease is removed");
    }

    #[test]
    fn mount_dir_names_are_stable_and_distinct() {
        assert_eq!(mount_dir_name(&["e", "b", "", "/t"]), "m-16f9412ddd8221e7");
        assert_ne!(
            mount_dir_name(&["ab", "c"]),
            mount_dir_name(&["a", "bc"]),
            "parts are separated"
        );
    }

    #[test]
    fn leftovers_go_and_journals_stay() {
        let (_root, a, _b) = area();
        std::fs::write(a.join(".tmpXYZ"), b"old").unwrap();
        std::fs::create_dir(a.join("uploads")).unwrap();
        let again = prepare_mount_dir(
            a.parent().unwrap(),
            a.file_name().unwrap().to_str().unwrap(),
        )
        .unwrap();
        assert_eq!(again, a);
        assert!(!a.join(".tmpXYZ").exists());
        assert!(a.join("uploads").is_dir());
    }

    #[test]
    fn an_idle_mount_dir_goes_unless_a_lease_lives_or_it_is_kept() {
        let (_root, a, _b) = area();
        std::fs::create_dir(a.join("uploads")).unwrap();
        let lease = Lease::open(&a, 64 * MIB).unwrap();
        assert!(
            !remove_idle_mount_dir(&a, |_| false).unwrap(),
            "a live lease"
        );
        drop(lease);
        assert!(!remove_idle_mount_dir(&a, |_| true).unwrap(), "kept");
        assert!(a.is_dir());
        assert!(remove_idle_mount_dir(&a, |_| false).unwrap());
        assert!(!a.exists());
        assert!(
            remove_idle_mount_dir(&a, |_| false).unwrap(),
            "already gone"
        );
        // Not a mount's directory of an area: never touched.
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(!remove_idle_mount_dir(elsewhere.path(), |_| false).unwrap());
        assert!(elsewhere.path().is_dir());
    }
}
