//! The contenders of `e2e bench cos`: mounting cos-fuse or s3fs with its default options on a
//! prefix of the bench's bucket, and timing every workload through that mount into [`Figures`],
//! with the peak memory of its daemon. It checks that what it wrote reached the bucket, and
//! removes its prefix afterwards; it must not judge or print the figures.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::args::CosBenchArgs;
use super::ceiling::{READ_TRIES, best_of};
use super::workloads::{
    Pattern, Workload, create_files, list_dir, read_in_parallel, read_pattern, write_pattern,
};
use crate::bench::bucket::{BUCKET, Bench, Profile};
use crate::bench::cpu::{CpuSpent, run_costed};
use crate::bench::mount::{Contender, Mount};
use crate::bench::{
    MIB, READY_TIMEOUT, blocking, drop_page_cache, is_mount_point, peak_rss_kib, rss_kib,
};
use crate::process::Proc;

/// What one mount did under one profile.
#[derive(Debug, Clone, Default)]
pub(super) struct Figures {
    write: Duration,
    read: Duration,
    /// What the fastest sequential read cost in CPU (the daemon's own as the process).
    pub(super) read_cpu: Option<CpuSpent>,
    parallel_read: Duration,
    readdir: Duration,
    readdir_stat: Duration,
    creates: Duration,
    pub(super) peak_rss_kib: Option<u64>,
    /// VmRSS of the mounted, idle daemon, before any workload.
    pub(super) idle_rss_kib: Option<u64>,
    /// VmRSS [`SETTLE`] after the sequential reads ended.
    pub(super) after_read_rss_kib: Option<u64>,
    /// VmHWM after each step, to tell which one set the peak.
    pub(super) peak_after: Vec<(&'static str, Option<u64>)>,
}

impl Figures {
    pub(super) fn took(&self, workload: Workload) -> Duration {
        match workload {
            Workload::Write => self.write,
            Workload::Read => self.read,
            Workload::ParallelRead => self.parallel_read,
            Workload::Readdir => self.readdir,
            Workload::ReaddirStat => self.readdir_stat,
            Workload::Creates => self.creates,
        }
    }
}

fn blocks_of(size: u64) -> u64 {
    size.div_ceil(MIB)
}

/// Before a timed read: empties the client page cache, then reads the object once through
/// S3 (untimed) so the server has it in memory again.
async fn cold_client_warm_server(bench: &Bench, key: &str, size: u64) -> anyhow::Result<()> {
    let _ = drop_page_cache();
    bench.raw_read(key, size).await.map(drop)
}

/// How long a daemon is left alone before its resident memory is read: "returns to idle within
/// seconds".
const SETTLE: Duration = Duration::from_secs(3);

/// Mounts `prefix` with `who`, runs every workload through the mount, unmounts.
pub(super) async fn measure(
    bench: &Bench,
    args: &CosBenchArgs,
    profile: &Profile,
    who: Contender,
    pattern: &Arc<Pattern>,
) -> anyhow::Result<Figures> {
    let prefix = format!("{}-{}", profile.name, who.name());
    let size = args.size_mib * MIB;
    let timeout = bench.step_timeout;
    let step = |what: &str| format!("{} ({}): {what}", who.name(), profile.name);
    bench
        .put_many(&format!("{prefix}/many/"), args.objects)
        .await?;
    let point = bench.workdir.join(format!("mnt-{prefix}"));
    std::fs::create_dir_all(&point)?;
    let mut mount = mount_with_defaults(bench, who, &prefix, &point, &[]).await?;
    let mut figures = Figures::default();
    let pid = mount.proc.pid();
    let hwm = || pid.and_then(peak_rss_kib);
    tokio::time::sleep(SETTLE).await;
    figures.idle_rss_kib = pid.and_then(rss_kib);

    let file = point.join("seq.bin");
    let (path, p) = (file.clone(), Arc::clone(pattern));
    figures.write = blocking(&step("sequential write"), timeout, move || {
        write_pattern(&path, blocks_of(size), &p)
    })
    .await?;
    figures.peak_after.push(("write", hwm()));
    let key = format!("{prefix}/seq.bin");
    let landed = bench.client.head_object(&key).await?.map(|m| m.size);
    if landed != Some(size) {
        bail!(
            "{}: the object has size {landed:?}",
            step("after the write")
        );
    }

    // Reads: the best of `READ_TRIES`, as for the ceiling (the VM is noisy).
    let read = best_of(READ_TRIES, || async {
        cold_client_warm_server(bench, &key, size).await?;
        let (path, p) = (file.clone(), Arc::clone(pattern));
        let what = step("sequential read");
        let read = blocking(&what, timeout, move || {
            read_pattern(&path, 0..blocks_of(size), &p)
        });
        run_costed(pid, read).await
    })
    .await?;
    (figures.read, figures.read_cpu) = (read.took, read.cpu);
    figures.peak_after.push(("read", hwm()));
    tokio::time::sleep(SETTLE).await;
    figures.after_read_rss_kib = pid.and_then(rss_kib);

    figures.parallel_read = best_of(READ_TRIES, || async {
        cold_client_warm_server(bench, &key, size).await?;
        let (path, p, readers) = (file.clone(), Arc::clone(pattern), args.readers);
        blocking(&step("parallel readers"), timeout, move || {
            read_in_parallel(&path, blocks_of(size), readers, &p)
        })
        .await
    })
    .await?;
    figures.peak_after.push(("readers", hwm()));

    let (dir, objects) = (point.join("many"), args.objects);
    let (readdir, readdir_stat) =
        blocking(&step("listing"), timeout, move || list_dir(&dir, objects)).await?;
    (figures.readdir, figures.readdir_stat) = (readdir, readdir_stat);
    figures.peak_after.push(("list", hwm()));

    let (dir, files) = (point.join("small"), args.files);
    figures.creates = blocking(&step("small files"), timeout, move || {
        create_files(&dir, files)
    })
    .await?;

    figures.peak_after.push(("creates", hwm()));
    figures.peak_rss_kib = hwm();
    mount.unmount().await?;
    let (_, landed) = bench.raw_list(&format!("{prefix}/small/")).await?;
    if landed != args.files {
        bail!(
            "{}: {landed} of {} small files reached the bucket",
            step("after unmounting"),
            args.files
        );
    }
    bench.client.delete_prefix(&format!("{prefix}/")).await?;
    Ok(figures)
}

/// Mounts `prefix` of the bucket at `point` with `who` and its default options (plus `extra`
/// arguments); waits until the mount is there.
pub(super) async fn mount_with_defaults(
    bench: &Bench,
    who: Contender,
    prefix: &str,
    point: &Path,
    extra: &[String],
) -> anyhow::Result<Mount> {
    let log = bench.workdir.join(format!(
        "logs/{}-{}.log",
        who.name(),
        point
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("mount")
    ));
    let passwd = bench.passwd.display().to_string();
    let (program, args) = match who {
        // Default options: the IP endpoint gets path-style requests by itself.
        Contender::CosFuse => (
            bench.cos_fuse.clone(),
            vec![
                "mount".to_owned(),
                "--endpoint".to_owned(),
                bench.cos_url.clone(),
                "--bucket".to_owned(),
                BUCKET.to_owned(),
                "--prefix".to_owned(),
                prefix.to_owned(),
                "--credentials-file".to_owned(),
                passwd,
                "--log-level".to_owned(),
                "warn".to_owned(),
            ]
            .into_iter()
            .chain(extra.iter().cloned())
            .chain([point.display().to_string()])
            .collect(),
        ),
        // Its defaults too, plus what this server needs: path style, SigV4 (any region).
        Contender::S3fs => {
            let tmp = bench.workdir.join("s3fs-tmp");
            std::fs::create_dir_all(&tmp)?;
            (
                bench.s3fs.clone(),
                vec![
                    format!("{BUCKET}:/{prefix}"),
                    point.display().to_string(),
                    "-f".to_owned(),
                    "-o".to_owned(),
                    format!(
                        "url={},use_path_request_style,sigv4,passwd_file={passwd},tmpdir={}",
                        bench.cos_url,
                        tmp.display()
                    ),
                ],
            )
        }
    };
    let proc = Proc::spawn(who.name(), &program, &args, &log)?;
    let mut mount = Mount {
        who,
        point: point.to_owned(),
        proc,
        mounted: true,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    while !is_mount_point(point) {
        if let Some(status) = mount.proc.try_status() {
            bail!(
                "{} exited with {status} before mounting {}; its log:\n{}",
                who.name(),
                point.display(),
                mount.proc.log_tail()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not mount {} within {READY_TIMEOUT:?}; its log:\n{}",
                who.name(),
                point.display(),
                mount.proc.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(mount)
}
