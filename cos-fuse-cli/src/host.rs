//! `cos-fuse host`: the FUSE host's flags and its start, and `cos-fuse host status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use csi_common::cli::LogFormat;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HostArgs {
    #[command(subcommand)]
    action: Option<HostAction>,

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

    /// The node's cgroup file system, mounted into the host's container (e.g.
    /// `/host/sys/fs/cgroup`): each daemon then runs in a cgroup of its own,
    /// `<this>/<--daemon-cgroup-name>/<mount>` (in every hierarchy on cgroup v1), so that
    /// stopping the host's container leaves the daemons and their mounts running. Without it,
    /// daemons stay in the host's cgroup.
    #[arg(long)]
    daemon_cgroup_fs: Option<PathBuf>,

    /// The cgroup, under `--daemon-cgroup-fs`, the host's daemons go under.
    #[arg(long, default_value = "csi-fuse")]
    daemon_cgroup_name: String,

    /// The memory limit of each daemon's cgroup, in MiB (0: none): a daemon over it is killed
    /// alone, and restarted on its mount's connection.
    #[arg(long, default_value_t = 0)]
    daemon_memory_max_mb: u64,

    /// Do not keep a copy of each cos-fuse mount's kernel connection: a daemon that dies then
    /// breaks its mount until the next publish, and a new host's program does not take mounts
    /// over from older daemons.
    #[arg(long)]
    no_keep_connections: bool,

    /// Milliseconds to wait after a failed restart of a dead daemon, doubled at each further
    /// failure.
    #[arg(long, default_value_t = 1000, hide = true)]
    restart_backoff_ms: u64,

    /// More log detail: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum HostAction {
    /// Lists the node's mounts: volume, bucket and prefix, daemon PID and uptime, memory, cache
    /// use, warm-up progress, last error.
    Status(crate::status::StatusArgs),
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

/// `cos-fuse host`, or `cos-fuse host status`.
pub fn run(args: HostArgs) -> Result<(), String> {
    if let Some(HostAction::Status(status)) = args.action {
        return crate::status::run(status);
    }
    csi_common::cli::init_logging(args.log_format, args.verbose);
    let mut programs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    programs.insert("cos-fuse".to_owned(), me);
    programs.extend(args.programs);
    let rt = crate::runtime()?;
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
            keeping_kinds: if args.no_keep_connections {
                BTreeSet::new()
            } else {
                BTreeSet::from(["cos-fuse".to_owned()])
            },
            daemon_cgroups: match &args.daemon_cgroup_fs {
                Some(fs) => fuse_host::cgroup_roots(fs, &args.daemon_cgroup_name)
                    .map_err(|e| format!("--daemon-cgroup-fs {}: {e}", fs.display()))?,
                None => Vec::new(),
            },
            restart_backoff: Duration::from_millis(args.restart_backoff_ms),
            daemon_memory_max: Some(args.daemon_memory_max_mb.saturating_mul(1024 * 1024))
                .filter(|b| *b > 0),
        };
        fuse_host::serve(config, csi_common::csi::shutdown_signal())
            .await
            .map_err(|e| csi_common::csi::error_chain(&e))
    })
}
