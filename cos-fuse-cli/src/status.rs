//! `cos-fuse host status`: asks the node's FUSE host for its mounts (a `list` on its socket) and
//! prints them as a table, or as JSON with `--json`. It only reads the host's answer, which holds
//! no secret; it never mounts or stops anything.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use cos_fuse::config::format_size_approx as size;
use fuse_host::{HostClient, MountStatus};

/// How long the host has to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The FUSE host's socket.
    #[arg(long, default_value = "/run/csi-fuse/host.sock")]
    socket: PathBuf,

    /// Print the host's answer as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let client = HostClient::new(&args.socket);
    let mounts = rt
        .block_on(client.list(TIMEOUT))
        .map_err(|e| csi_common::csi::error_chain(&e))?;
    let text = if args.json {
        serde_json::to_string_pretty(&mounts).map_err(|e| e.to_string())?
    } else {
        render_table(&mounts)
    };
    println!("{text}");
    Ok(())
}

const HEADERS: [&str; 11] = [
    "VOLUME",
    "STATE",
    "BUCKET",
    "PREFIX",
    "PID",
    "UPTIME",
    "RSS",
    "BUFFERS",
    "CACHE",
    "WARM-UP",
    "LAST ERROR",
];

/// The mounts as a table, one row each, columns padded to their widest cell.
pub fn render_table(mounts: &[MountStatus]) -> String {
    if mounts.is_empty() {
        return "no mounts".to_owned();
    }
    let rows: Vec<[String; 11]> = mounts.iter().map(row).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(String::from));
    for row in &rows {
        line(row);
    }
    out.trim_end().to_owned()
}

fn row(mount: &MountStatus) -> [String; 11] {
    let d = mount.details.clone().unwrap_or_default();
    let or_dash = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
    let state = if !mount.alive {
        "dead"
    } else if !mount.mounted {
        "unmounted"
    } else if !mount.healthy {
        "hung"
    } else {
        "ok"
    };
    let volume = if d.volume.is_empty() {
        mount.target.display().to_string()
    } else {
        d.volume.clone()
    };
    let cache = match (d.cache_used_bytes, d.cache_capacity_bytes) {
        (Some(used), Some(cap)) => Some(format!("{}/{}", size(used), size(cap))),
        (Some(used), None) => Some(size(used)),
        _ => None,
    };
    let warmup = d.warmup.map(|w| {
        let percent = if w.bytes_total == 0 {
            100.0
        } else {
            w.bytes_done as f64 * 100.0 / w.bytes_total as f64
        };
        format!(
            "{}/{} obj {}/{} ({percent:.0}%)",
            w.objects_done,
            w.objects_total,
            size(w.bytes_done),
            size(w.bytes_total)
        )
    });
    [
        volume,
        state.to_owned(),
        or_dash(d.bucket),
        or_dash(d.prefix),
        if mount.pid == 0 {
            "-".into()
        } else {
            mount.pid.to_string()
        },
        or_dash(d.uptime_secs.map(uptime)),
        or_dash(d.rss_bytes.map(size)),
        or_dash(d.buffer_bytes.map(size)),
        or_dash(cache),
        or_dash(warmup),
        or_dash(d.last_error),
    ]
}

fn uptime(secs: u64) -> String {
    match (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    ) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m{s:02}s"),
        (0, h, m, _) => format!("{h}h{m:02}m"),
        (d, h, _, _) => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_host::{MountDetails, WarmupStatus};

    fn mount(target: &str, details: Option<MountDetails>) -> MountStatus {
        MountStatus {
            target: target.into(),
            kind: "cos-fuse".into(),
            fingerprint: "f".into(),
            pid: 4242,
            alive: true,
            mounted: true,
            healthy: true,
            reused: false,
            details,
        }
    }

    #[test]
    fn the_table_shows_each_mount_on_an_aligned_row() {
        let full = MountDetails {
            volume: "pvc-7".into(),
            bucket: Some("data-1250000000".into()),
            prefix: Some("train/".into()),
            uptime_secs: Some(3725),
            rss_bytes: Some(150 << 20),
            buffer_bytes: Some(8 << 20),
            cache_used_bytes: Some(3 << 30),
            cache_capacity_bytes: Some(20 << 30),
            warmup: Some(WarmupStatus {
                objects_done: 12,
                objects_total: 340,
                bytes_done: 1 << 30,
                bytes_total: 4 << 30,
            }),
            last_error: Some("warm-up skipped train/x: not found".into()),
            auth_failure: None,
        };
        let mut dead = mount("/var/lib/kubelet/x/pv/pvc-8/globalmount", None);
        dead.alive = false;
        let table = render_table(&[mount("/t", Some(full)), dead]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("VOLUME"), "{table}");
        for expected in [
            "pvc-7",
            "ok",
            "data-1250000000",
            "train/",
            "4242",
            "1h02m",
            "150.0MiB",
            "8.0MiB",
            "3.0GiB/20.0GiB",
            "12/340 obj 1.0GiB/4.0GiB (25%)",
            "warm-up skipped train/x: not found",
        ] {
            assert!(lines[1].contains(expected), "{expected} in {table}");
        }
        assert!(lines[2].starts_with("/var/lib/kubelet/x/pv/pvc-8/globalmount"));
        assert!(lines[2].contains("dead"), "{table}");
        // Columns line up: each header starts where its cells start.
        let column = lines[0].find("BUCKET").unwrap();
        assert_eq!(lines[1].find("data-1250000000"), Some(column), "{table}");
        assert_eq!(render_table(&[]), "no mounts");
    }

    #[test]
    fn sizes_and_uptimes_are_short() {
        assert_eq!(size(512), "512B");
        assert_eq!(size(1536), "1.5KiB");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(61), "1m01s");
        assert_eq!(uptime(2 * 86400 + 3 * 3600), "2d03h");
    }
}
