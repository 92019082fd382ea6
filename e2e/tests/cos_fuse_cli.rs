//! `cos-fuse` as users mount object storage by hand and from /etc/fstab, against the simulator's
//! bucket:
//! - `cos-fuse BUCKET:/prefix MOUNTPOINT -o url=…` goes to the background and returns 0 once the
//!   mount answers; a bucket that does not exist exits non-zero with the server's error;
//! - fstab entries (`/path/to/cos-fuse#bucket:/p … fuse` and `bucket:/p … fuse.cos-fuse`)
//!   mounted by `mount -a -T FSTAB` and `mount -T FSTAB POINT` through mount.fuse3, unmounted
//!   with `umount`;
//! - keys from `$HOME/.passwd-cosfs`: 0600 mounts, 0644 is refused naming the file.
//!
//! mount(8) runs its helpers without `PATH` (and without `HOME`), so mount.fuse3's shell finds a
//! `fuse.cos-fuse` entry's program only in the default directories: that test links
//! `/usr/local/bin/cos-fuse` to the built binary when nothing is there (and removes its link).
//!
//! Needs root (FUSE mounts, mount(8)) and the `fuse3` package. A guard unmounts every mount point
//! (`umount`, then `umount -l`), kills the test's own daemons (found by their command lines,
//! which name the test's directory) and the simulator, even when a test panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials};
use e2e::bin_path;
use e2e::cleanup::mounts_under;
use e2e::process::Proc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SIM_BUCKET: &str = "sim-1250000000";
const SIM_ID: &str = "AKIDclisim0001";
const SIM_KEY: &str = "cli-sim-secret-key";
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// A daemonized mount must return well within this.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(40);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// Where mount.fuse3's shell finds `cos-fuse` without a PATH.
const SYSTEM_LINK: &str = "/usr/local/bin/cos-fuse";

/// Environment names of keys a run of the tests might inherit; removed so the chain under test
/// sees only what a test gives it.
const KEY_VARS: &[&str] = &[
    "COS_SECRET_ID",
    "COS_SECRET_KEY",
    "COS_SESSION_TOKEN",
    "COS_ENDPOINT",
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "TENCENTCLOUD_API_SECRET_ID",
    "TENCENTCLOUD_API_SECRET_KEY",
    "SecretId",
    "SecretKey",
    "Token",
];

/// Runs `program args` with `env` (keys removed first), killing it after `timeout`.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in KEY_VARS {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!(
                "{} {args:?} did not return within {timeout:?} (a daemonized mount must return \
                 once it answers)",
                program.display()
            )
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}; stdout {:?}; stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn private_file(path: &Path, contents: &str, mode: u32) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_mounted(point: &Path) -> bool {
    mounts_under(point).iter().any(|m| Path::new(m) == point)
}

/// The pids of `cos-fuse` processes whose command line names `dir` (this test's daemons).
fn daemons_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let line = String::from_utf8_lossy(&c).into_owned();
                let program = line.split('\0').next().unwrap_or_default();
                program.ends_with("/cos-fuse") && line.contains(&needle)
            })
        })
        .collect()
}

/// The simulator and everything a test mounted or linked; dropping it cleans up.
struct Rig {
    dir: tempfile::TempDir,
    sim: Option<Proc>,
    endpoint: String,
    mounts: Vec<PathBuf>,
    link: Option<PathBuf>,
}

impl Rig {
    async fn start(prefix: &str) -> Rig {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let keys = dir.path().join("sim-keys");
        private_file(&keys, &format!("{SIM_ID} {SIM_KEY}\n"), 0o600);
        let state = dir.path().join("sim-state");
        std::fs::create_dir(&state).unwrap();
        let args: Vec<String> = vec![
            "--state-dir".into(),
            state.display().to_string(),
            "--keys-file".into(),
            keys.display().to_string(),
        ];
        let mut sim = Proc::spawn(
            "tcloud-sim",
            &bin_path("tcloud-sim").unwrap(),
            &args,
            &dir.path().join("sim.log"),
        )
        .unwrap();
        let first = sim.read_line(START_TIMEOUT).await.unwrap();
        let second = sim.read_line(START_TIMEOUT).await.unwrap();
        let cos = first
            .strip_prefix("listening http://")
            .and(second.strip_prefix("cos http://"))
            .unwrap_or_else(|| panic!("tcloud-sim printed {first:?} and {second:?}"))
            .to_owned();
        if let Some(mut out) = sim.stdout.take() {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
            });
        }
        Rig {
            dir,
            sim: Some(sim),
            endpoint: format!("http://{cos}"),
            mounts: Vec::new(),
            link: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new directory (a mount point), remembered for the clean-up.
    fn mount_point(&mut self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        self.mounts.push(path.clone());
        path
    }

    fn bucket(&self) -> ObjectClient {
        let mut config = ObjectConfig::new(&self.endpoint, SIM_BUCKET);
        config.path_style = true;
        ObjectClient::new(config, ObjectCredentials::new(SIM_ID, SIM_KEY, None)).unwrap()
    }

    /// `-o` options every mount of the simulator takes.
    fn options(&self, extra: &str) -> String {
        let staging = self.path("staging");
        std::fs::create_dir_all(&staging).unwrap();
        format!(
            "url={},use_path_request_style,staging_dir={}{extra}",
            self.endpoint,
            staging.display()
        )
    }

    /// `umount POINT`, then waits for its daemon to leave.
    fn umount(&self, point: &Path) {
        let out = run(
            Path::new("umount"),
            &[&point.to_string_lossy()],
            &[],
            COMMAND_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "umount {}: {}",
            point.display(),
            text(&out)
        );
        assert!(!is_mounted(point), "{} is still mounted", point.display());
    }

    /// Waits until no daemon of this test runs (they leave after their unmount).
    fn wait_daemons_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = daemons_naming(self.dir.path());
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemons {left:?} did not exit after their unmount"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for point in self.mounts.iter().rev() {
            if is_mounted(point) {
                let target = point.to_string_lossy().into_owned();
                let plain = Command::new("umount").arg(&target).status();
                if !plain.is_ok_and(|s| s.success()) {
                    let _ = Command::new("umount").args(["-l", &target]).status();
                }
            }
        }
        for pid in daemons_naming(self.dir.path()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(link) = self.link.take() {
            let _ = std::fs::remove_file(link);
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.path("cos-fuse.log")).unwrap_or_default();
            eprintln!("---- cos-fuse log ----\n{log}");
        }
        if let Some(sim) = self.sim.as_mut() {
            let pid = sim.pid();
            if let Some(pid) = pid {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

async fn object(bucket: &ObjectClient, key: &str) -> Option<Vec<u8>> {
    let meta = bucket.head_object(key).await.unwrap()?;
    Some(
        bucket
            .get_object_range(key, 0..meta.size, None)
            .await
            .unwrap()
            .to_vec(),
    )
}

/// Writes through the mount at `point` and checks the object `key` in the bucket.
async fn write_through(point: &Path, bucket: &ObjectClient, name: &str, key: &str) {
    let data = format!("written through {}", point.display());
    std::fs::write(point.join(name), &data)
        .unwrap_or_else(|e| panic!("write {}: {e}", point.join(name).display()));
    assert_eq!(
        object(bucket, key).await.as_deref(),
        Some(data.as_bytes()),
        "{key}"
    );
}

fn sim_keys_env() -> [(&'static str, &'static str); 2] {
    [("COS_SECRET_ID", SIM_ID), ("COS_SECRET_KEY", SIM_KEY)]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemonized_mount_returns_once_it_answers_and_a_bad_bucket_fails() {
    let mut rig = Rig::start("cos-fuse-cli-daemon").await;
    let cos_fuse = bin_path("cos-fuse").unwrap();
    let bucket = rig.bucket();
    bucket
        .put_object("pre/seeded.txt", Bytes::from_static(b"seeded"))
        .await
        .unwrap();

    let version = run(&cos_fuse, &["--version"], &[], COMMAND_TIMEOUT);
    let shown = String::from_utf8_lossy(&version.stdout);
    assert!(shown.contains("(commit "), "--version: {}", text(&version));

    let point = rig.mount_point("mnt");
    let log = rig.path("cos-fuse.log");
    let source = format!("{SIM_BUCKET}:/pre");
    let options = rig.options("");
    let started = Instant::now();
    let out = run(
        &cos_fuse,
        &[
            &source,
            &point.to_string_lossy(),
            "-o",
            &options,
            "--log-file",
            &log.to_string_lossy(),
        ],
        &sim_keys_env(),
        MOUNT_TIMEOUT,
    );
    assert!(out.status.success(), "cos-fuse: {}", text(&out));
    // It returned once the mount answered: mounted and serving now, with no waiting.
    assert!(is_mounted(&point), "returned after {:?}", started.elapsed());
    assert_eq!(std::fs::read(point.join("seeded.txt")).unwrap(), b"seeded");
    write_through(&point, &bucket, "new.txt", "pre/new.txt").await;
    assert!(
        !daemons_naming(rig.dir.path()).is_empty(),
        "the daemon runs on"
    );
    rig.umount(&point);
    rig.wait_daemons_gone();

    // A bucket the server does not have: non-zero, the error on stderr, nothing mounted.
    let other = rig.mount_point("mnt-bad");
    let out = run(
        &cos_fuse,
        &[
            "nosuch-1250000000",
            &other.to_string_lossy(),
            "-o",
            &options,
        ],
        &sim_keys_env(),
        MOUNT_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad bucket mounted: {}",
        text(&out)
    );
    assert!(
        stderr.contains("nosuch-1250000000"),
        "the error names the bucket: {}",
        text(&out)
    );
    assert!(!is_mounted(&other));
    // No endpoint at all: an error that says how to give one.
    let out = run(
        &cos_fuse,
        &[SIM_BUCKET, &other.to_string_lossy()],
        &sim_keys_env(),
        COMMAND_TIMEOUT,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("COS_ENDPOINT"),
        "{}",
        text(&out)
    );
    rig.wait_daemons_gone();
}

#[tokio::test(flavor = "multi_thread")]
async fn fstab_entries_mount_through_mount_fuse3_and_unmount_with_umount() {
    let mut rig = Rig::start("cos-fuse-cli-fstab").await;
    let cos_fuse = bin_path("cos-fuse").unwrap();
    assert!(
        Path::new("/sbin/mount.fuse3").exists() || Path::new("/usr/sbin/mount.fuse3").exists(),
        "mount.fuse3 is missing: apt-get install -y fuse3"
    );
    match std::fs::read_link(SYSTEM_LINK) {
        Ok(target) if target == cos_fuse => {}
        Ok(target) => panic!("{SYSTEM_LINK} already links to {}", target.display()),
        Err(_) if Path::new(SYSTEM_LINK).exists() => {
            panic!("{SYSTEM_LINK} exists and is not this build's link: remove it")
        }
        Err(_) => {
            std::os::unix::fs::symlink(&cos_fuse, SYSTEM_LINK).unwrap();
            rig.link = Some(PathBuf::from(SYSTEM_LINK));
        }
    }
    let bucket = rig.bucket();
    let passwd = rig.path("passwd-cosfs");
    private_file(
        &passwd,
        &format!("{SIM_BUCKET}:{SIM_ID}:{SIM_KEY}\n"),
        0o600,
    );
    let by_path = rig.mount_point("by-path");
    let by_type = rig.mount_point("by-type");
    let keys = format!(",passwd_file={}", passwd.display());
    let fstab = rig.path("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# cos-fuse entries, as a user writes them\n\
             {}#{SIM_BUCKET}:/a {} fuse _netdev,allow_other,nofail,auto,{} 0 0\n\
             {SIM_BUCKET}:/b {} fuse.cos-fuse _netdev,defaults,noauto,user,rw,noexec,{} 0 0\n",
            cos_fuse.display(),
            by_path.display(),
            rig.options(&keys),
            by_type.display(),
            rig.options(&keys),
        ),
    )
    .unwrap();
    let fstab_arg = fstab.to_string_lossy().into_owned();

    // `mount -a` mounts the auto entry and skips the noauto one.
    let out = run(
        Path::new("mount"),
        &["-a", "-T", &fstab_arg],
        &[],
        MOUNT_TIMEOUT,
    );
    assert!(out.status.success(), "mount -a -T: {}", text(&out));
    assert!(is_mounted(&by_path), "mount -a mounted the auto entry");
    assert!(!is_mounted(&by_type), "mount -a skips noauto");
    write_through(&by_path, &bucket, "one.txt", "a/one.txt").await;

    // The fuse.cos-fuse entry, by its mount point.
    let out = run(
        Path::new("mount"),
        &["-T", &fstab_arg, &by_type.to_string_lossy()],
        &[],
        MOUNT_TIMEOUT,
    );
    assert!(out.status.success(), "mount -T FSTAB POINT: {}", text(&out));
    assert!(is_mounted(&by_type));
    write_through(&by_type, &bucket, "two.txt", "b/two.txt").await;
    let flags = |point: &Path| -> Vec<String> {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let point = point.display().to_string();
        table
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(4) == Some(&point.as_str()))
            .and_then(|f| f.get(5).map(|o| o.split(',').map(str::to_owned).collect()))
            .unwrap_or_default()
    };
    for point in [&by_path, &by_type] {
        let flags = flags(point);
        assert!(
            flags.iter().any(|f| f == "nosuid") && flags.iter().any(|f| f == "nodev"),
            "{}: {flags:?}",
            point.display()
        );
    }
    assert!(
        flags(&by_type).iter().any(|f| f == "noexec"),
        "the entry's noexec applies"
    );
    assert!(
        !flags(&by_path).iter().any(|f| f == "noexec"),
        "no noexec asked"
    );
    assert!(
        !by_type.join("one.txt").exists() && !by_path.join("two.txt").exists(),
        "each entry mounts its own prefix"
    );

    rig.umount(&by_type);
    rig.umount(&by_path);
    rig.wait_daemons_gone();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_come_from_a_private_passwd_file_and_a_loose_one_is_refused() {
    let mut rig = Rig::start("cos-fuse-cli-passwd").await;
    let cos_fuse = bin_path("cos-fuse").unwrap();
    let bucket = rig.bucket();
    let home = rig.path("home");
    std::fs::create_dir(&home).unwrap();
    let passwd = home.join(".passwd-cosfs");
    private_file(
        &passwd,
        &format!("{SIM_BUCKET}:{SIM_ID}:{SIM_KEY}\n"),
        0o600,
    );
    let home_env = home.to_string_lossy().into_owned();
    // No keys in the environment; the CVM role would be asked last, at an address that fails.
    let env = [("HOME", home_env.as_str())];
    let point = rig.mount_point("mnt");
    let options = rig.options("");
    let args = [
        SIM_BUCKET,
        &point.to_string_lossy(),
        "-o",
        &options,
        "--metadata-endpoint",
        "http://127.0.0.1:9",
    ];
    let out = run(&cos_fuse, &args, &env, MOUNT_TIMEOUT);
    assert!(
        out.status.success(),
        "with a 0600 passwd file: {}",
        text(&out)
    );
    assert!(is_mounted(&point));
    write_through(&point, &bucket, "k.txt", "k.txt").await;
    rig.umount(&point);
    rig.wait_daemons_gone();

    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&cos_fuse, &args, &env, MOUNT_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a 0644 passwd file was used: {}",
        text(&out)
    );
    assert!(
        stderr.contains(&passwd.display().to_string()) && stderr.contains("chmod 600"),
        "the error names the file and the fix: {}",
        text(&out)
    );
    assert!(!stderr.contains(SIM_KEY), "the key leaked: {stderr}");
    assert!(!is_mounted(&point));
}
