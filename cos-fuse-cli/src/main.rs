//! `cos-fuse`: mount a COS bucket (or any S3-compatible one) with FUSE, by hand like `mount-s3`,
//! or run the FUSE host the CSI node plugins ask for mounts.
//!
//! ```text
//! cos-fuse data-1250000000:/logs /mnt/data -o url=https://cos.ap-guangzhou.myqcloud.com,allow_other
//! cos-fuse mount --endpoint https://cos.ap-guangzhou.myqcloud.com --bucket data-1250000000 \
//!     --credentials-file ~/.passwd-cosfs -o allow_other -o uid=1000 /mnt/data
//! cos-fuse host --socket /run/csi-fuse/host.sock --state-dir /var/lib/csi-fuse/cos
//! ```

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use cos_cache::{CacheOptions, CachedStore};
use cos_client::{ObjectClient, ObjectConfig};
#[cfg(test)]
use cos_fuse::config::MIB;
use cos_fuse::config::{format_size, parse_size};
use cos_fuse::cos::CosStore;
use cos_fuse::fuse::MountOptions;
use cos_fuse::options::{self, OptionError};
use cos_fuse::staging_area::{mount_dir_name, prepare_mount_dir};
use cos_fuse::upload_journal::abort_stale_uploads;
use cos_fuse::{Fs, FsConfig, MountConfig};
use csi_common::cli::LogFormat;

mod cleanup;
mod credentials;
mod daemon;
mod direct;
mod host;
mod logging;
mod report;
mod status;
mod supervised;
mod trim;

use credentials::Keys;
use direct::DirectArgs;

/// `--version`: the package version and the git commit it was built from.
pub const VERSION: &str = csi_common::metrics::BUILD_LONG_VERSION;

/// The block cache's default capacity.
const DEFAULT_CACHE_CAPACITY: &str = "20GiB";

type CacheStatsFn = Box<dyn Fn() -> cos_cache::CacheStatsSnapshot + Send + Sync>;

#[derive(Debug, Parser)]
#[command(
    name = "cos-fuse",
    version = VERSION,
    about = "A FUSE file system over COS buckets. By hand: cos-fuse BUCKET[:/PREFIX] MOUNTPOINT \
             -o url=ENDPOINT [-f] (see `cos-fuse BUCKET --help`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mounts a bucket (or a prefix of it) and serves it until it is unmounted.
    Mount(MountArgs),
    /// Runs the FUSE host: starts, watches and stops FUSE daemons for the CSI node plugins
    /// (`cos-fuse host status` lists its mounts).
    Host(host::HostArgs),
}

#[derive(Debug, clap::Args)]
struct MountArgs {
    /// The COS endpoint, e.g. https://cos.ap-guangzhou.myqcloud.com (or any S3 server's URL).
    #[arg(long)]
    endpoint: String,

    /// The bucket, `<name>-<appid>` on COS.
    #[arg(long)]
    bucket: String,

    /// Mount only this key prefix of the bucket (`a/b`), as the mount's root.
    #[arg(long, default_value = "")]
    prefix: String,

    /// The SigV4 region when the endpoint does not name one.
    #[arg(long, default_value = "")]
    region: String,

    /// Read the keys from standard input: JSON `{"SecretId": .., "SecretKey": .., "Token": ..}`.
    /// This is how the FUSE host hands them over: never on a command line.
    #[arg(long, conflicts_with_all = ["credentials_file", "credentials_role"])]
    credentials_stdin: bool,

    /// Use the CVM's CAM role (instance metadata), refreshed before expiry, and nothing else of
    /// the chain: how the node plugins mount a PV without a publish secret.
    #[arg(long, conflicts_with = "credentials_file")]
    credentials_role: bool,

    /// Read the keys from a file: the same JSON, or a cosfs/s3fs passwd line
    /// (`[bucket:]SecretId:SecretKey`). It must not be readable by others.
    #[arg(long)]
    credentials_file: Option<PathBuf>,

    /// Mount options, cosfs style (repeatable, or comma-separated); --help lists them.
    #[arg(short = 'o', value_delimiter = ',', long_help = options_long_help())]
    options: Vec<String>,

    /// Serve reads through the node's persistent block cache in this directory (csi-goosefs);
    /// every mount of the same bucket on the node shares its blocks.
    #[arg(long)]
    cache_dir: Option<PathBuf>,

    /// The most the block cache holds on disk: bytes, or with a unit (`20GiB`, `512MiB`).
    #[arg(long, default_value = DEFAULT_CACHE_CAPACITY, value_parser = parse_bytes)]
    cache_capacity: u64,

    /// A key prefix under the mount's root to warm into the cache after mounting (repeatable).
    #[arg(long, requires = "cache_dir")]
    preload: Vec<String>,

    /// Write the daemon's figures (requests, bytes, memory, cache) here every few seconds, for
    /// the FUSE host's /metrics (which sets this through the environment).
    #[arg(long, env = "CSI_FUSE_STATS_FILE")]
    stats_file: Option<PathBuf>,

    /// Stage in the node's staging area, shared by every daemon of the FUSE host (which sets
    /// this through the environment), in a directory of this mount's: `staging_dir` is then not
    /// used, and the uploads a previous daemon of this mount left open are aborted at start.
    #[arg(long, env = fuse_host::STAGING_AREA_ENV)]
    staging_area: Option<PathBuf>,

    /// The cap of the staging area, all its mounts together: bytes, or with a unit (`16GiB`)
    /// (`staging_max_mb` otherwise).
    #[arg(long, env = fuse_host::STAGING_MAX_BYTES_ENV, requires = "staging_area", value_parser = parse_bytes)]
    staging_area_max_bytes: Option<u64>,

    /// error, warn, info, debug or trace (RUST_LOG overrides); the drivers' -v is debug, -vv
    /// trace.
    #[arg(long, default_value = "info", value_parser = logging::parse_log_level)]
    log_level: String,

    /// The instance metadata service, for the CVM role's keys.
    #[arg(long, default_value = tcloud::metadata::DEFAULT_METADATA_ENDPOINT, hide = true)]
    metadata_endpoint: String,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Mount nothing: abort the multipart uploads a dead daemon of this mount left open (its
    /// journal in the staging area), remove the mount's directory there, and exit. The FUSE
    /// host runs this when it unmounts a mount whose daemon died.
    #[arg(long, requires = "staging_area")]
    abort_stale_uploads: bool,

    #[command(flatten)]
    supervised: supervised::SupervisedArgs,

    /// Where to mount.
    mountpoint: PathBuf,
}

/// The `-o` flag's `--help`: the options' table, from `cos_fuse::options`.
fn options_long_help() -> String {
    format!(
        "Mount options, cosfs style (repeatable, or comma-separated):\n\n{}",
        options::help()
    )
}

/// A size in bytes: a plain number, or with a unit (`20GiB`, `512MiB`).
fn parse_bytes(value: &str) -> Result<u64, String> {
    parse_size(value, 1).ok_or_else(|| {
        format!("{value:?} is not a size: bytes, or a number with a unit (512MiB, 20GiB)")
    })
}

/// glibc gives threads arenas of their own and keeps what is freed in each: the 2-8 MiB buffers
/// of ranges and parts, filled on one thread and freed on another, left every arena holding its
/// high-water mark (a 1 GiB write under the COS profile peaked at ~230 MiB with a 128 MiB
/// budget; with one arena, ~160 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_malloc_arena() {
    // SAFETY: mallopt only tunes the allocator; it runs first in main, before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    one_malloc_arena();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let result = if is_direct_form(&argv) {
        direct(DirectArgs::parse_from(argv))
    } else {
        match Cli::parse_from(argv).command {
            Command::Mount(args) => mount(args),
            Command::Host(args) => host::run(args),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("cos-fuse: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the command line is `cos-fuse SOURCE MOUNTPOINT …` rather than a subcommand (or
/// the top-level `--help`/`--version`).
fn is_direct_form(argv: &[OsString]) -> bool {
    match argv.get(1).and_then(|a| a.to_str()) {
        None => false,
        Some("mount" | "host" | "help") => false,
        Some("-h" | "--help" | "-V" | "--version") => argv.len() > 2,
        Some(_) => true,
    }
}

/// `cos-fuse BUCKET[:/PREFIX] MOUNTPOINT -o …`: in the background unless `-f`, returning once
/// the mount answers (or with its error).
fn direct(args: DirectArgs) -> Result<(), String> {
    let target = args.resolve(|name| std::env::var(name).ok())?;
    // The daemon leaves the working directory.
    let mountpoint = std::fs::canonicalize(&args.mountpoint).map_err(|e| {
        format!(
            "the mount point {} cannot be used: {e}",
            args.mountpoint.display()
        )
    })?;
    let mount_args = MountArgs {
        endpoint: target.endpoint,
        bucket: target.bucket,
        prefix: target.prefix,
        region: args.region,
        credentials_stdin: false,
        credentials_role: false,
        credentials_file: None,
        options: args.options,
        cache_dir: None,
        cache_capacity: parse_bytes(DEFAULT_CACHE_CAPACITY)?,
        preload: Vec::new(),
        stats_file: None,
        staging_area: None,
        staging_area_max_bytes: None,
        log_level: args.log_level,
        log_format: args.log_format,
        metadata_endpoint: args.metadata_endpoint,
        abort_stale_uploads: false,
        supervised: supervised::SupervisedArgs::default(),
        mountpoint,
    };
    // The keys before forking: a bad passwd file is the caller's error, with its name.
    let keys = resolve_keys(&mount_args)?;
    if args.foreground {
        return mount_with(mount_args, keys);
    }
    let notifier = daemon::daemonize(args.log_file.as_deref())?;
    let result = notifier
        .watch(&mount_args.mountpoint)
        .and_then(|()| mount_with(mount_args, keys));
    if let Err(error) = &result {
        notifier.failed(error);
    }
    result
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Where the keys come from: handed over on standard input or in `--credentials-file`, else
/// the chain of [`credentials::discover`].
fn resolve_keys(args: &MountArgs) -> Result<Keys, String> {
    let text = if args.credentials_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the credentials from standard input: {e}"))?;
        text
    } else if let Some(path) = &args.credentials_file {
        return credentials::KeyFile::open(path, &args.bucket).map(|(file, _)| Keys::File(file));
    } else if args.credentials_role {
        return credentials::role(&args.metadata_endpoint);
    } else {
        let settings = parse_options(&args.options).map_err(|e| e.to_string())?;
        let env = |name: &str| std::env::var(name).ok();
        return credentials::discover(&credentials::ChainParams {
            bucket: &args.bucket,
            passwd_file: settings.passwd_file.as_deref(),
            home: credentials::home_dir(),
            system_file: Path::new(credentials::SYSTEM_PASSWD_FILE),
            env: &env,
            metadata_endpoint: &args.metadata_endpoint,
        });
    };
    credentials::parse_handed_over(&text, &args.bucket).map(Keys::Fixed)
}

/// What the `-o` options set (the grammar is `cos_fuse::options`).
fn parse_options(options: &[String]) -> Result<MountConfig, OptionError> {
    options::parse(options.iter().map(String::as_str))
}

/// The name of this mount's directory in the staging area: the same for every daemon of it.
fn mount_dir_of(args: &MountArgs) -> String {
    let mountpoint = args.mountpoint.to_string_lossy();
    mount_dir_name(&[&args.endpoint, &args.bucket, &args.prefix, &mountpoint])
}

/// The client of the mount's bucket, with the keys kept fresh.
fn connect(
    args: &MountArgs,
    settings: &MountConfig,
    keys: Keys,
    rt: &tokio::runtime::Runtime,
) -> Result<ObjectClient, String> {
    let mut config = ObjectConfig::new(&args.endpoint, &args.bucket);
    config.region = args.region.clone();
    config.path_style = settings.path_style;
    if let Some(timeout) = settings.request_timeout {
        config.timeout = timeout;
    }
    let credentials = rt.block_on(keys.current())?;
    let client = ObjectClient::new(config, credentials).map_err(|e| e.to_string())?;
    keys.keep_fresh(client.clone(), rt);
    Ok(client)
}

/// With `--staging-area`: stages in this mount's directory of the area (prepared: leftovers of a
/// previous daemon removed), capped by the area's cap; returns that directory.
fn join_staging_area(
    args: &MountArgs,
    settings: &mut MountConfig,
) -> Result<Option<PathBuf>, String> {
    let Some(area) = &args.staging_area else {
        return Ok(None);
    };
    let dir = prepare_mount_dir(area, &mount_dir_of(args)).map_err(|e| e.to_string())?;
    settings.fs.staging_dir = dir.clone();
    if let Some(cap) = args.staging_area_max_bytes {
        settings.fs.staging_max_bytes = cap;
    }
    Ok(Some(dir))
}

/// Keeps `ensure_diskfree` bytes free on the staging disk by capping the staging space.
fn apply_diskfree(settings: &mut MountConfig) -> Result<(), String> {
    let Some(keep) = settings.ensure_diskfree else {
        return Ok(());
    };
    let dir = &settings.fs.staging_dir;
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| {
        format!(
            "cannot inspect the staging directory {}: {e}",
            dir.display()
        )
    })?;
    let available = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    settings.fs.staging_max_bytes = settings
        .fs
        .staging_max_bytes
        .min(available.saturating_sub(keep));
    Ok(())
}

fn mount(args: MountArgs) -> Result<(), String> {
    let keys = resolve_keys(&args)?;
    mount_with(args, keys)
}

fn mount_with(args: MountArgs, keys: Keys) -> Result<(), String> {
    logging::init(&args.log_level, args.log_format);
    let mut settings = parse_options(&args.options).map_err(|e| e.to_string())?;
    settings.fs.prefix = args.prefix.clone();
    if let (true, Some(area)) = (args.abort_stale_uploads, &args.staging_area) {
        let rt = runtime()?;
        let dir = area.join(mount_dir_of(&args));
        return cleanup::abort_left_uploads(&dir, &rt, || {
            connect(&args, &settings, keys, &rt).map(CosStore::new)
        });
    }
    // Only a daemon that mounts looks at its mount point. One handed a running connection must
    // not: with its predecessor dead, the kernel waits for this very process to answer.
    if !args.supervised.inherits_connection() && !Path::new(&args.mountpoint).is_dir() {
        return Err(format!(
            "the mount point {} is not a directory",
            args.mountpoint.display()
        ));
    }
    let rt = runtime()?;
    let client = connect(&args, &settings, keys, &rt)?;
    // Fail here, with the server's words, rather than mount something that answers EIO.
    rt.block_on(client.head_bucket())
        .map_err(|e| format!("bucket {} at {}: {e}", args.bucket, args.endpoint))?;
    // A predecessor being taken over stops serving here: after what can be done beside it (its
    // readers wait from now on), before its staging directory is joined.
    let connection = args.supervised.connection()?;
    let mount_dir = join_staging_area(&args, &mut settings)?;
    apply_diskfree(&mut settings)?;
    let auth = client.auth_watch();
    let mut options = MountOptions::new(&args.bucket, &args.prefix);
    options.allow_other = settings.allow_other;
    options.no_exec = settings.no_exec;
    let store = CosStore::new(client);
    if let Some(dir) = &mount_dir {
        let stale = rt.block_on(abort_stale_uploads(&store, dir));
        if !stale.aborted.is_empty() || stale.failed > 0 {
            tracing::info!(
                aborted = stale.aborted.len(),
                failed = stale.failed,
                "multipart uploads a previous daemon of this mount left"
            );
        }
    }
    let warmup = report::SharedStatus::default();
    report::DaemonStatus::watch_auth(&warmup, auth);
    let served = match &args.cache_dir {
        None => serve(
            store,
            settings.fs,
            &rt,
            &args,
            &options,
            (None, warmup),
            connection,
        ),
        Some(dir) => {
            let identity = format!("{}/{}", args.endpoint.trim_end_matches('/'), args.bucket);
            let mut cache = CacheOptions::new(dir.clone(), identity, args.cache_capacity);
            // One freshness setting for the file system's and the cache's metadata.
            cache.metadata_ttl = settings.fs.attr_ttl;
            let cached = rt
                .block_on(CachedStore::open(store, cache))
                .map_err(|e| format!("cannot open the block cache in {}: {e}", dir.display()))?;
            let root = settings.fs.prefix.trim_matches('/').to_owned();
            let prefixes: Vec<String> = args
                .preload
                .iter()
                .map(|p| {
                    let p = p.trim_matches('/');
                    match (root.is_empty(), p.is_empty()) {
                        (true, _) => p.to_owned(),
                        (false, true) => format!("{root}/"),
                        (false, false) => format!("{root}/{p}"),
                    }
                })
                .collect();
            if !prefixes.is_empty() {
                let warming = cached.clone();
                let progress = Arc::clone(&warmup);
                rt.spawn(async move { warm(warming, prefixes, progress).await });
            }
            let for_stats = cached.clone();
            let cache_stats: CacheStatsFn = Box::new(move || for_stats.stats());
            serve(
                cached,
                settings.fs,
                &rt,
                &args,
                &options,
                (Some(cache_stats), warmup),
                connection,
            )
        }
    };
    if let Some(dir) = &mount_dir {
        cleanup::forget_mount_dir(dir);
    }
    served
}

/// How often a running warm-up logs its progress.
const WARMUP_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// The most warm-up errors logged one by one per interval; the rest are counted.
const WARMUP_ERRORS_PER_INTERVAL: u32 = 5;

/// Warms the cache in the background; stopping half-way leaves it consistent. Logs a summary
/// every [`WARMUP_LOG_INTERVAL`] and at the end, and skipped objects one by one (bounded).
async fn warm<S: cos_fuse::ObjectStore>(
    cache: CachedStore<S>,
    prefixes: Vec<String>,
    status: report::SharedStatus,
) {
    use report::DaemonStatus;
    let started = std::time::Instant::now();
    let log = Mutex::new(cos_cache::WarmupLog::new(
        started,
        WARMUP_LOG_INTERVAL,
        WARMUP_ERRORS_PER_INTERVAL,
    ));
    let summarise = |p: cos_cache::PreloadProgress| {
        let line = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .progress(p, std::time::Instant::now());
        if let Some(line) = line {
            tracing::info!("warming the cache: {line}");
        }
    };
    let progress = |p: cos_cache::PreloadProgress| {
        DaemonStatus::set_warmup(&status, p);
        summarise(p);
    };
    let skipped = |key: &str, e: &cos_fuse::store::StoreError| {
        DaemonStatus::set_error(&status, &format!("warm-up skipped {key}: {e}"));
        if log.lock().unwrap_or_else(|e| e.into_inner()).error() {
            tracing::warn!(key, error = %e, "cache warm-up skipped an object");
        }
    };
    // As many GETs at once as the cache allows: the speed of a cold read without it.
    let parallelism = cache.options().fetch_parallelism;
    let preload = cache.preload_with(&prefixes, parallelism, progress, skipped);
    tokio::pin!(preload);
    let mut tick = tokio::time::interval(WARMUP_LOG_INTERVAL);
    let result = loop {
        tokio::select! {
            result = &mut preload => break result,
            _ = tick.tick() => {
                if let Some(p) = DaemonStatus::warmup(&status) {
                    summarise(p);
                }
            }
        }
    };
    match result {
        Ok(report) => tracing::info!(
            outcome = ?report.outcome,
            objects = report.objects_cached,
            bytes = report.bytes_cached,
            fetched = report.bytes_fetched,
            skipped = report.objects_changed,
            seconds = started.elapsed().as_secs_f64(),
            "cache warm-up finished"
        ),
        Err(e) => {
            DaemonStatus::set_error(&status, &format!("cache warm-up stopped: {e}"));
            tracing::warn!(error = %e, "cache warm-up stopped");
        }
    }
}

fn serve<S: cos_fuse::ObjectStore>(
    store: S,
    config: FsConfig,
    rt: &tokio::runtime::Runtime,
    args: &MountArgs,
    options: &MountOptions,
    (cache_stats, warmup): (Option<CacheStatsFn>, report::SharedStatus),
    connection: supervised::Connection,
) -> Result<(), String> {
    let sizes = (
        format_size(config.memory_budget),
        format_size(config.staging_max_bytes),
    );
    let mut config = config;
    config.inode_journal = args.supervised.inode_journal.clone();
    let fs = match &connection {
        supervised::Connection::Running(_) => Fs::resume(store, config),
        supervised::Connection::Fresh => Fs::new(store, config),
    }
    .map_err(|e| e.to_string())?;
    let reporter = args.stats_file.clone().map(|path| {
        let for_stats = fs.clone();
        let sources = report::Sources {
            counters: Arc::clone(&options.counters),
            fs: Box::new(move || for_stats.stats()),
            cache: cache_stats,
            status: warmup,
        };
        (sources.spawn(path.clone(), rt), path)
    });
    tracing::info!(
        bucket = args.bucket,
        prefix = args.prefix,
        mountpoint = %args.mountpoint.display(),
        cache = args.cache_dir.is_some(),
        cache_capacity = %format_size(args.cache_capacity),
        memory_budget = %sizes.0,
        staging_max = %sizes.1,
        "mounting"
    );
    trim::spawn(Arc::clone(&options.counters));
    let served = match &args.supervised.control_socket {
        Some(control) => supervised::serve(fs, rt, connection, control, &args.mountpoint, options),
        None => cos_fuse::fuse::mount_blocking(fs, rt.handle().clone(), &args.mountpoint, options),
    }
    .map_err(|e| format!("cannot mount {}: {e}", args.mountpoint.display()));
    if let Some((sources, path)) = reporter {
        sources.write(&path);
    }
    served?;
    tracing::info!(mountpoint = %args.mountpoint.display(), "unmounted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_and_the_direct_form_are_told_apart() {
        let argv = |args: &[&str]| -> Vec<OsString> {
            std::iter::once("cos-fuse")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect()
        };
        for (args, direct) in [
            (
                &["mount", "--endpoint", "e", "--bucket", "b", "/m"][..],
                false,
            ),
            (&["host"][..], false),
            (&["--version"][..], false),
            (&["--help"][..], false),
            (&[][..], false),
            (&["b-1:/p", "/mnt", "-o", "url=x"][..], true),
            (&["-f", "b-1", "/mnt"][..], true),
        ] {
            assert_eq!(is_direct_form(&argv(args)), direct, "{args:?}");
        }
        let cli = Cli::try_parse_from(argv(&[
            "mount",
            "--endpoint",
            "http://e",
            "--bucket",
            "b",
            "--cache-capacity",
            "512MiB",
            "/m",
        ]))
        .unwrap();
        let Command::Mount(m) = cli.command else {
            panic!("mount")
        };
        assert_eq!(m.cache_capacity, 512 * MIB);
        assert_eq!(m.log_level, "info");
        for bad in [
            &[
                "mount",
                "--endpoint",
                "e",
                "--bucket",
                "b",
                "--log-level",
                "loud",
                "/m",
            ][..],
            &[
                "mount",
                "--endpoint",
                "e",
                "--bucket",
                "b",
                "--cache-capacity",
                "lots",
                "/m",
            ][..],
        ] {
            assert!(Cli::try_parse_from(argv(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(parse_bytes("20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_bytes("1073741824").unwrap(), 1 << 30);
        assert!(VERSION.contains("(commit "));
    }

    #[test]
    fn cosfs_options_translate_and_unknown_ones_are_refused() {
        let s = parse_options(&[
            "allow_other".into(),
            "uid=1000".into(),
            "umask=027".into(),
            "multipart_size=16".into(),
            "stat_cache_expire=5".into(),
        ])
        .unwrap();
        assert!(s.allow_other);
        assert_eq!(s.fs.uid, 1000);
        assert_eq!((s.fs.file_mode, s.fs.dir_mode), (0o640, 0o750));
        assert_eq!(s.fs.part_size, 16 * MIB);
        assert_eq!(s.fs.list_ttl, Duration::from_secs(5));
        for bad in [
            "use_cache=/tmp",
            "uid=x",
            "ro=1",
            "umask=999",
            "endpoint=ap-guangzhou",
        ] {
            assert!(parse_options(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
