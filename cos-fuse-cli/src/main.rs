//! `cos-fuse`: mount a COS bucket (or any S3-compatible one) with FUSE, by hand like `mount-s3`,
//! or run the FUSE host the CSI node plugins ask for mounts.
//!
//! ```text
//! cos-fuse mount --endpoint https://cos.ap-guangzhou.myqcloud.com --bucket data-1250000000 \
//!     --credentials-file ~/.passwd-cosfs -o allow_other -o uid=1000 /mnt/data
//! cos-fuse host --socket /run/csi-fuse/host.sock --state-dir /var/lib/csi-fuse/cos
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use cos_cache::{CacheOptions, CachedStore};
use cos_client::{ObjectClient, ObjectConfig, ObjectCredentials};
#[cfg(test)]
use cos_fuse::config::MIB;
use cos_fuse::cos::CosStore;
use cos_fuse::fuse::MountOptions;
use cos_fuse::options::{self, OptionError};
use cos_fuse::staging_area::{mount_dir_name, prepare_mount_dir};
use cos_fuse::upload_journal::abort_stale_uploads;
use cos_fuse::{Fs, FsConfig, MountConfig};
use csi_common::cli::LogFormat;

mod report;

type CacheStatsFn = Box<dyn Fn() -> cos_cache::CacheStatsSnapshot + Send + Sync>;

#[derive(Debug, Parser)]
#[command(
    name = "cos-fuse",
    version,
    about = "A FUSE file system over COS buckets."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mounts a bucket (or a prefix of it) and serves it until it is unmounted.
    Mount(MountArgs),
    /// Runs the FUSE host: starts, watches and stops FUSE daemons for the CSI node plugins.
    Host(HostArgs),
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
    #[arg(long, conflicts_with = "credentials_file")]
    credentials_stdin: bool,

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

    /// The most the block cache holds on disk, in bytes.
    #[arg(long, default_value_t = 20 << 30)]
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

    /// The cap of the staging area, all its mounts together, in bytes (`staging_max_mb`
    /// otherwise).
    #[arg(long, env = fuse_host::STAGING_MAX_BYTES_ENV, requires = "staging_area")]
    staging_area_max_bytes: Option<u64>,

    /// error, warn, info or debug (RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    log_level: String,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Where to mount.
    mountpoint: PathBuf,
}

#[derive(Debug, clap::Args)]
struct HostArgs {
    /// The socket node plugins call (0600, in a 0700 directory it creates).
    #[arg(long, default_value = "/run/csi-fuse/host.sock")]
    socket: PathBuf,

    /// Records of the mounts (re-adopted after a restart) and the daemons' logs.
    #[arg(long, default_value = "/var/lib/csi-fuse")]
    state_dir: PathBuf,

    /// A program the host may run, as KIND=PATH (repeatable). `cos-fuse` is this binary unless
    /// given here; a GooseFS client is `goosefs-fuse=/path/to/program`.
    #[arg(long = "allow-program", value_parser = parse_program)]
    programs: Vec<(String, PathBuf)>,

    /// The node's staging area: every daemon stages in a directory of its own under it.
    /// Empty: each stages where its options say (the temporary directory by default).
    #[arg(long, default_value = "/var/lib/csi-fuse/staging")]
    staging_dir: PathBuf,

    /// The space of all staging files of all mounts together, in MiB: past it a write fails
    /// with ENOSPC. Keep the staging volume larger.
    #[arg(long, default_value_t = 16 * 1024)]
    staging_max_mb: u64,

    /// The only directory the host mounts under (kubelet's, where the node plugins keep their
    /// mounts directories); a target elsewhere is refused.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    target_dir: PathBuf,

    /// Seconds a new daemon has to bring its mount up.
    #[arg(long, default_value_t = 30)]
    ready_timeout_secs: u64,

    /// Seconds an unmounted daemon has to finish its uploads and exit before it is killed
    /// (GooseFS-Lite's goosefs.fuse.umount.timeout).
    #[arg(long, default_value_t = 120)]
    exit_timeout_secs: u64,

    /// Serve Prometheus metrics at http://ADDRESS/metrics; off when empty.
    #[arg(long, env = "METRICS_ADDRESS")]
    metrics_address: Option<String>,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// More log detail: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The `-o` flag's `--help`: the options' table, from `cos_fuse::options`.
fn options_long_help() -> String {
    format!(
        "Mount options, cosfs style (repeatable, or comma-separated):\n\n{}",
        options::help()
    )
}

fn parse_program(value: &str) -> Result<(String, PathBuf), String> {
    let (kind, path) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not KIND=PATH"))?;
    let path = PathBuf::from(path);
    if kind.is_empty() || !path.is_absolute() {
        return Err(format!(
            "{value:?}: KIND must not be empty and PATH must be absolute"
        ));
    }
    Ok((kind.to_owned(), path))
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount(args) => mount(args),
        Command::Host(args) => host(args),
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn host(args: HostArgs) -> Result<(), String> {
    csi_common::cli::init_logging(args.log_format, args.verbose);
    let mut programs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    programs.insert("cos-fuse".to_owned(), me);
    programs.extend(args.programs);
    let rt = runtime()?;
    rt.block_on(async {
        let metrics = csi_common::metrics::Metrics::new();
        if let Some(address) = args.metrics_address.as_deref().filter(|a| !a.is_empty()) {
            csi_common::metrics::serve_metrics(address, std::sync::Arc::clone(&metrics))
                .await
                .map_err(|e| format!("cannot serve metrics on {address}: {e}"))?;
        }
        let config = fuse_host::HostConfig {
            socket: args.socket,
            state_dir: args.state_dir,
            programs,
            target_dir: args.target_dir,
            ready_timeout: Duration::from_secs(args.ready_timeout_secs),
            exit_timeout: Duration::from_secs(args.exit_timeout_secs),
            metrics,
            staging_area: Some(args.staging_dir).filter(|d| !d.as_os_str().is_empty()),
            staging_max_bytes: args.staging_max_mb.saturating_mul(1024 * 1024),
        };
        fuse_host::serve(config, csi_common::csi::shutdown_signal())
            .await
            .map_err(|e| csi_common::csi::error_chain(&e))
    })
}

/// Keys as the FUSE host hands them over (JSON) or as cosfs's passwd file holds them.
#[derive(serde::Deserialize)]
struct Keys {
    #[serde(rename = "SecretId")]
    secret_id: String,
    #[serde(rename = "SecretKey")]
    secret_key: String,
    #[serde(rename = "Token", default)]
    token: Option<String>,
}

fn parse_keys(text: &str, bucket: &str) -> Result<ObjectCredentials, String> {
    let text = text.trim();
    let keys = if text.starts_with('{') {
        serde_json::from_str::<Keys>(text)
            .map_err(|e| format!("the credentials are not the expected JSON: {e}"))?
    } else {
        // passwd-cosfs: one `bucket:id:key` line per bucket, or a single `id:key` line.
        let line = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .find_map(|l| {
                let fields: Vec<&str> = l.split(':').collect();
                match fields.as_slice() {
                    [b, id, key] if *b == bucket => Some((*id, *key)),
                    [id, key] => Some((*id, *key)),
                    _ => None,
                }
            })
            .ok_or_else(|| {
                format!("no `{bucket}:SecretId:SecretKey` or `SecretId:SecretKey` line in the credentials")
            })?;
        Keys {
            secret_id: line.0.to_owned(),
            secret_key: line.1.to_owned(),
            token: None,
        }
    };
    if keys.secret_id.trim().is_empty() || keys.secret_key.trim().is_empty() {
        return Err("the credentials hold an empty SecretId or SecretKey".into());
    }
    Ok(ObjectCredentials::new(
        &keys.secret_id,
        &keys.secret_key,
        keys.token.as_deref(),
    ))
}

fn read_credentials(args: &MountArgs) -> Result<ObjectCredentials, String> {
    let text = if args.credentials_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the credentials from standard input: {e}"))?;
        text
    } else if let Some(path) = &args.credentials_file {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} is readable by others: chmod 600 it",
                path.display()
            ));
        }
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    } else {
        return Err("give the keys with --credentials-file or --credentials-stdin".into());
    };
    parse_keys(&text, &args.bucket)
}

/// What the `-o` options set (the grammar is `cos_fuse::options`).
fn parse_options(options: &[String]) -> Result<MountConfig, OptionError> {
    options::parse(options.iter().map(String::as_str))
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
    let mountpoint = args.mountpoint.to_string_lossy();
    let name = mount_dir_name(&[&args.endpoint, &args.bucket, &args.prefix, &mountpoint]);
    let dir = prepare_mount_dir(area, &name).map_err(|e| e.to_string())?;
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

fn init_mount_logging(args: &MountArgs) {
    let level = match args.log_level.as_str() {
        "error" | "crit" | "err" => "error",
        "warn" => "warn",
        "debug" | "dbg" => "debug",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn mount(args: MountArgs) -> Result<(), String> {
    init_mount_logging(&args);
    let credentials = read_credentials(&args)?;
    let mut settings = parse_options(&args.options).map_err(|e| e.to_string())?;
    settings.fs.prefix = args.prefix.clone();
    let mount_dir = join_staging_area(&args, &mut settings)?;
    apply_diskfree(&mut settings)?;
    if !Path::new(&args.mountpoint).is_dir() {
        return Err(format!(
            "the mount point {} is not a directory",
            args.mountpoint.display()
        ));
    }
    let mut config = ObjectConfig::new(&args.endpoint, &args.bucket);
    config.region = args.region.clone();
    config.path_style = settings.path_style;
    if let Some(timeout) = settings.request_timeout {
        config.timeout = timeout;
    }
    let client = ObjectClient::new(config, credentials).map_err(|e| e.to_string())?;
    let rt = runtime()?;
    // Fail here, with the server's words, rather than mount something that answers EIO.
    rt.block_on(client.head_bucket())
        .map_err(|e| format!("bucket {} at {}: {e}", args.bucket, args.endpoint))?;
    let mut options = MountOptions::new(&args.bucket, &args.prefix);
    options.allow_other = settings.allow_other;
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
    let warmup = Arc::new(Mutex::new(None));
    match &args.cache_dir {
        None => serve(store, settings.fs, &rt, &args, &options, None, warmup),
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
                Some(cache_stats),
                warmup,
            )
        }
    }
}

/// Warms the cache in the background; stopping half-way leaves it consistent.
async fn warm<S: cos_fuse::ObjectStore>(
    cache: CachedStore<S>,
    prefixes: Vec<String>,
    shown: Arc<Mutex<Option<(u64, u64)>>>,
) {
    let started = std::time::Instant::now();
    let progress = |p: cos_cache::PreloadProgress| {
        *shown.lock().unwrap_or_else(|e| e.into_inner()) = Some((p.bytes_done, p.bytes_total));
        tracing::info!(
            objects_done = p.objects_done,
            objects_total = p.objects_total,
            bytes_done = p.bytes_done,
            bytes_total = p.bytes_total,
            "warming the cache"
        );
    };
    match cache.preload(&prefixes, 8, progress).await {
        Ok(report) => tracing::info!(
            outcome = ?report.outcome,
            objects = report.objects_cached,
            bytes = report.bytes_cached,
            fetched = report.bytes_fetched,
            seconds = started.elapsed().as_secs_f64(),
            "cache warm-up finished"
        ),
        Err(e) => tracing::warn!(error = %e, "cache warm-up stopped"),
    }
}

fn serve<S: cos_fuse::ObjectStore>(
    store: S,
    config: FsConfig,
    rt: &tokio::runtime::Runtime,
    args: &MountArgs,
    options: &MountOptions,
    cache_stats: Option<CacheStatsFn>,
    warmup: Arc<Mutex<Option<(u64, u64)>>>,
) -> Result<(), String> {
    let fs = Fs::new(store, config).map_err(|e| e.to_string())?;
    let reporter = args.stats_file.clone().map(|path| {
        let for_stats = fs.clone();
        let sources = report::Sources {
            counters: Arc::clone(&options.counters),
            fs: Box::new(move || for_stats.stats()),
            cache: cache_stats,
            warmup,
        };
        (sources.spawn(path.clone(), rt), path)
    });
    tracing::info!(
        bucket = args.bucket,
        prefix = args.prefix,
        mountpoint = %args.mountpoint.display(),
        cache = args.cache_dir.is_some(),
        "mounting"
    );
    let served = cos_fuse::fuse::mount_blocking(fs, rt.handle().clone(), &args.mountpoint, options)
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
    fn keys_come_as_json_or_as_a_passwd_line() {
        let json = parse_keys(r#"{"SecretId":"AKID","SecretKey":"k","Token":"t"}"#, "b").unwrap();
        assert_eq!(
            (json.secret_id.as_str(), json.token.as_deref()),
            ("AKID", Some("t"))
        );
        let passwd = parse_keys("other:X:Y\nb-1:AKID2:key2\n", "b-1").unwrap();
        assert_eq!(passwd.secret_id, "AKID2");
        assert_eq!(parse_keys("AKID3:key3", "b").unwrap().secret_key, "key3");
        assert!(parse_keys("nothing useful", "b").is_err());
        assert!(parse_keys(r#"{"SecretId":"","SecretKey":"k"}"#, "b").is_err());
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
        for bad in ["use_cache=/tmp", "uid=x", "ro=1", "umask=999"] {
            assert!(parse_options(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
