//! The host's side: one task per connection, one lock per target, records on disk.
//!
//! This root only wires the parts together and runs the accept loop: the settings (`config`), the
//! state directory and its records (`records`), the daemons' supervisor (`supervisor`), the
//! socket and its requests (`socket`), the daemons' figures on `/metrics` (`stats`), what
//! `cos-fuse host status` shows of a mount (`describe`) and the daemons' output (`logs`). It holds
//! no logic of its own beyond the order things start and stop in.

pub(crate) mod cgroup;
mod config;
mod describe;
mod kept;
mod leftovers;
mod logs;
mod records;
mod socket;
mod stats;
mod supervisor;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use csi_common::csi::server::ServeError;

use records::Records;
use supervisor::Supervisor;

pub use config::{HostConfig, STAGING_AREA_ENV, STAGING_MAX_BYTES_ENV};
pub use stats::STATS_ENV;

/// Serves the host's socket until `shutdown` completes. Daemons keep running after the host exits:
/// they are in their own process groups, and the next host re-adopts them from the records.
pub async fn serve(
    config: HostConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let records = Records::open(&config.state_dir)?;
    if let Some(area) = &config.staging_area {
        use std::os::unix::fs::DirBuilderExt;
        // The daemons make it too; made here, it is private to root from the start.
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(area)
        {
            tracing::warn!(area = %area.display(), error = %e, "cannot create the staging area");
        }
    }
    let host = Arc::new(Supervisor::new(config, records));
    for status in host.list().await {
        tracing::info!(
            target = %status.target.display(),
            pid = status.pid,
            alive = status.alive,
            mounted = status.mounted,
            "adopted a recorded mount"
        );
    }
    host.adopt();
    let config = host.config();
    let listener = socket::listen(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), programs = ?config.programs, "FUSE host serving");
    tokio::pin!(shutdown);
    let mut collect = tokio::time::interval(stats::STATS_INTERVAL);
    let mut totals = stats::DaemonTotals::load(&config.state_dir);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = collect.tick() => stats::collect(host.records(), &config.metrics, &mut totals),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let host = host.clone();
                    tokio::spawn(async move { socket::connection(host, stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    host.stop_following();
    // The daemons outlive the host: keep their counters' latest totals for the next one.
    stats::collect(host.records(), &config.metrics, &mut totals);
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}
