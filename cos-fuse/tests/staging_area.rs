//! The node's staging area seen from the daemons: mounts staging in one area share its cap, a
//! daemon killed with SIGKILL gives its share back, and a restarted daemon aborts the multipart
//! uploads its previous incarnation left, and only those. Over `MemStore`; no root needed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use cos_fuse::fs::{Fs, OpenFlags, ROOT_INO};
use cos_fuse::mem::{MemStore, Op};
use cos_fuse::staging_area::{mount_dir_name, prepare_mount_dir};
use cos_fuse::upload_journal::{JOURNAL_DIR, abort_stale_uploads};
use cos_fuse::{Errno, FsConfig, ObjectStore};

const MIB: u64 = 1024 * 1024;
/// The area's cap in these tests.
const CAP: u64 = 24 * MIB;
/// Set in the child process: the mount directory it stages in.
const CHILD_DIR_ENV: &str = "COS_FUSE_TEST_STAGING_CHILD_DIR";

fn fs_in(store: MemStore, dir: &Path) -> Fs<MemStore> {
    let config = FsConfig {
        staging_dir: dir.to_owned(),
        staging_max_bytes: CAP,
        part_size: 5 * MIB,
        memory_budget: 32 * MIB,
        ..FsConfig::default()
    };
    Fs::new(store, config).unwrap()
}

/// Opens `name` read-write (so it is staged from the start) and writes `bytes` into it.
async fn stage(fs: &Fs<MemStore>, name: &str, bytes: u64) -> Result<(), Errno> {
    let (attr, fh) = fs
        .create(ROOT_INO, name, OpenFlags(libc::O_RDWR))
        .await
        .map_err(|e| e.errno())?;
    let chunk = vec![7u8; MIB as usize];
    let mut off = 0;
    while off < bytes {
        fs.write(attr.ino, fh, off, &chunk)
            .await
            .map_err(|e| e.errno())?;
        off += MIB;
    }
    Ok(())
}

#[tokio::test]
async fn two_mounts_together_stay_within_the_node_cap() {
    let root = tempfile::tempdir().unwrap();
    let area = root.path().join("staging");
    let a = fs_in(
        MemStore::new(),
        &prepare_mount_dir(&area, &mount_dir_name(&["a"])).unwrap(),
    );
    let b = fs_in(
        MemStore::new(),
        &prepare_mount_dir(&area, &mount_dir_name(&["b"])).unwrap(),
    );
    stage(&a, "f", 16 * MIB).await.unwrap();
    assert_eq!(
        stage(&b, "g", 16 * MIB).await,
        Err(Errno::ENOSPC),
        "16 MiB each of a 24 MiB cap"
    );
    let (attr, fh) = b
        .create(ROOT_INO, "h", OpenFlags(libc::O_RDWR))
        .await
        .unwrap();
    assert_eq!(
        b.write(attr.ino, fh, CAP, b"x")
            .await
            .map_err(|e| e.errno()),
        Err(Errno::EFBIG),
        "one file larger than the whole cap"
    );
    drop(a);
    stage(&b, "i", 16 * MIB).await.unwrap();
}

/// Kills the child when dropped, whatever happened.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited ({status}) before staging");
        }
        assert!(Instant::now() < deadline, "the child never staged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_daemon_killed_with_sigkill_gives_its_share_back() {
    let root = tempfile::tempdir().unwrap();
    let area = root.path().join("staging");
    let theirs = prepare_mount_dir(&area, &mount_dir_name(&["child"])).unwrap();
    let ours = prepare_mount_dir(&area, &mount_dir_name(&["parent"])).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_daemon_stages_16_mib", "--nocapture"])
        .env(CHILD_DIR_ENV, &theirs)
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    wait_for(&theirs.join("staged"), &mut child.0);

    let fs = fs_in(MemStore::new(), &ours);
    assert_eq!(
        stage(&fs, "f", 16 * MIB).await,
        Err(Errno::ENOSPC),
        "the child holds 16 MiB of the 24"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    stage(&fs, "g", 16 * MIB).await.unwrap();
}

/// The child of the test above (does nothing when run as a test of its own).
#[tokio::test]
async fn child_daemon_stages_16_mib() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let fs = fs_in(MemStore::new(), &dir);
    stage(&fs, "f", 16 * MIB).await.unwrap();
    std::fs::write(dir.join("staged"), b"").unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Entries in the journal directory `dir` (none when it does not exist).
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_restarted_daemon_aborts_its_own_stale_uploads_only() {
    let root = tempfile::tempdir().unwrap();
    let area = root.path().join("staging");
    let dir = prepare_mount_dir(&area, &mount_dir_name(&["mount"])).unwrap();
    let store = MemStore::new();
    let other = store.create_multipart("someone-else").await.unwrap();

    // A finished upload leaves no entry.
    let fs = fs_in(store.clone(), &dir);
    let (attr, fh) = fs
        .create(ROOT_INO, "done", OpenFlags(libc::O_WRONLY))
        .await
        .unwrap();
    let part = vec![1u8; 6 * MIB as usize];
    fs.write(attr.ino, fh, 0, &part).await.unwrap();
    fs.release(attr.ino, fh).await.unwrap();
    assert!(store.object("done").is_some());
    let journal = dir.join(JOURNAL_DIR);
    assert_eq!(entries(&journal), 0);

    // The daemon "crashes" with a streamed upload under way.
    let (attr, fh) = fs
        .create(ROOT_INO, "big", OpenFlags(libc::O_WRONLY))
        .await
        .unwrap();
    fs.write(attr.ino, fh, 0, &part).await.unwrap();
    fs.write(attr.ino, fh, 6 * MIB, &part).await.unwrap();
    drop(fs);
    assert_eq!(store.pending_uploads(), 2, "ours and the other client's");
    assert_eq!(entries(&journal), 1);

    // The next daemon of the mount.
    let dir = prepare_mount_dir(&area, &mount_dir_name(&["mount"])).unwrap();
    let report = abort_stale_uploads(&store, &dir).await;
    assert_eq!(report.aborted.len(), 1, "{report:?}");
    assert_eq!(report.aborted[0].0, "big");
    assert_eq!(report.failed, 0);
    assert_eq!(store.pending_uploads(), 1, "the other client's stays");
    store.abort_multipart("someone-else", &other).await.unwrap();
    assert_eq!(entries(&journal), 0);
    assert!(store.object("big").is_none());
}

/// The upload IDs of `key` (exactly) in progress in `store`.
async fn uploads_of(store: &MemStore, key: &str) -> Vec<String> {
    let listed = store.list_multipart_uploads(key).await.unwrap();
    listed
        .into_iter()
        .filter(|u| u.key == key)
        .map(|u| u.upload_id)
        .collect()
}

#[tokio::test]
async fn a_daemon_killed_before_it_learns_its_upload_id_has_that_upload_aborted_at_restart() {
    let root = tempfile::tempdir().unwrap();
    let area = root.path().join("staging");
    let dir = prepare_mount_dir(&area, &mount_dir_name(&["mount"])).unwrap();
    let store = MemStore::new();
    // Other clients' uploads: of the same key long before, of another key and of a longer key
    // (which a listing by the key as prefix finds) just now.
    store.set_clock(Some(SystemTime::now() - Duration::from_secs(3600)));
    let long_before = store.create_multipart("big").await.unwrap();
    store.set_clock(None);
    let other = store.create_multipart("other").await.unwrap();
    let longer = store.create_multipart("big.bak").await.unwrap();

    // The server starts our upload, and the daemon is killed before the answer arrives.
    store.stall_answers(Op::CreateMultipart);
    let fs = fs_in(store.clone(), &dir);
    let (attr, fh) = fs
        .create(ROOT_INO, "big", OpenFlags(libc::O_WRONLY))
        .await
        .unwrap();
    let writer = tokio::spawn({
        let fs = fs.clone();
        async move {
            fs.write(attr.ino, fh, 0, &vec![1u8; 6 * MIB as usize])
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pending_uploads() < 4 {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.abort();
    assert!(writer.await.unwrap_err().is_cancelled());
    drop(fs);
    store.clear_faults();
    let ours: Vec<String> = uploads_of(&store, "big")
        .await
        .into_iter()
        .filter(|id| *id != long_before)
        .collect();
    assert_eq!(ours.len(), 1);

    // The next daemon of the mount.
    let dir = prepare_mount_dir(&area, &mount_dir_name(&["mount"])).unwrap();
    let report = abort_stale_uploads(&store, &dir).await;
    assert_eq!(report.aborted, vec![("big".to_owned(), ours[0].clone())]);
    assert_eq!(report.failed, 0);
    assert_eq!(uploads_of(&store, "big").await, vec![long_before]);
    assert_eq!(uploads_of(&store, "other").await, vec![other]);
    assert_eq!(uploads_of(&store, "big.bak").await, vec![longer]);
    assert_eq!(entries(&dir.join(JOURNAL_DIR)), 0, "the intent is resolved");
}

#[tokio::test]
async fn an_upload_the_journal_cannot_know_is_not_started() {
    let root = tempfile::tempdir().unwrap();
    let area = root.path().join("staging");
    let dir = prepare_mount_dir(&area, &mount_dir_name(&["mount"])).unwrap();
    // No journal can be written: a file is where its directory would be.
    std::fs::write(dir.join(JOURNAL_DIR), b"").unwrap();
    let store = MemStore::new();
    let fs = fs_in(store.clone(), &dir);
    let part = vec![1u8; 6 * MIB as usize];

    // A staged file is uploaded when it is flushed.
    let (attr, fh) = fs
        .create(ROOT_INO, "staged", OpenFlags(libc::O_RDWR))
        .await
        .unwrap();
    fs.write(attr.ino, fh, 0, &part).await.unwrap();
    assert_eq!(
        fs.flush(attr.ino, fh).await.map_err(|e| e.errno()),
        Err(Errno::EIO)
    );
    // A streamed one when its first part is full.
    let (attr, fh) = fs
        .create(ROOT_INO, "streamed", OpenFlags(libc::O_WRONLY))
        .await
        .unwrap();
    assert_eq!(
        fs.write(attr.ino, fh, 0, &part)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::EIO)
    );
    assert_eq!(store.stats().count(Op::CreateMultipart), 0);
    assert_eq!(store.pending_uploads(), 0);
    assert!(store.object("staged").is_none() && store.object("streamed").is_none());
}
