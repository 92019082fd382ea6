//! `e2e soak`: for N minutes, concurrent lifecycles of all four drivers against one simulator that
//! fails one cloud call in ten and throttles the busiest actions, while a chaos task holds cloud
//! transitions stuck and SIGKILLs the drivers, the FUSE hosts, FUSE daemons and the simulator at
//! seeded random moments. Then the workers drain, and the audit looks for anything left: disks,
//! snapshots, file systems, mounts, loop devices, processes, open multipart uploads; and every
//! byte fsynced through a mount must have read back identical. One summary block is printed; any
//! leak or lost byte fails the run.
//!
//! The parts: [`rig`] (the processes), [`worker`] (lifecycles with sidecar-style retries),
//! [`chaos`] (kills and stuck windows), [`tracker`] (the counts), [`audit`] (the leaks).

mod audit;
mod chaos;
mod io;
mod rig;
mod tracker;
mod worker;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use csi_proto::v1 as pb;
use tokio::sync::Mutex;

pub use audit::Leaks;
pub use tracker::Figures;

use crate::client::CsiClient;
use crate::env::Driver;

/// How long the audit waits for leftovers to go away (a daemon exiting after its unmount).
const AUDIT_SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long workers keep starting lifecycles, in minutes (fractions allowed, e.g. 1.5).
    #[arg(long)]
    pub minutes: f64,
    /// Seed of the chaos schedule and the workers' choices; random (and printed) when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent lifecycles per driver.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Deadline of a lifecycle's way up (and, separately, of its teardown), in seconds.
    #[arg(long, default_value_t = 120)]
    pub lifecycle_timeout_secs: u64,
    /// Mean pause between two chaos events, in milliseconds (each pause is drawn from half to
    /// one and a half times it).
    #[arg(long, default_value_t = 3500)]
    pub chaos_every_ms: u64,
}

/// The cloud's misbehaviour for the whole run: one call in ten fails (cloud API and COS alike),
/// and attach, detach, the describes the drivers poll and COS reads are rate-limited tightly
/// enough that the soak's own load is throttled.
const FAULTS: &[(&str, f64, Option<f64>)] = &[
    ("*", 0.1, None),
    ("AttachDisks", 0.0, Some(1.0)),
    ("DetachDisks", 0.0, Some(1.0)),
    ("DescribeDisks", 0.0, Some(2.0)),
    ("DescribeCfsFileSystems", 0.0, Some(2.0)),
    ("HeadObject", 0.0, Some(20.0)),
    ("GetObject", 0.0, Some(20.0)),
];

fn fault_args() -> Vec<String> {
    FAULTS
        .iter()
        .flat_map(|(action, rate, limit)| {
            let mut spec = format!("{action}:error_rate={rate}");
            if let Some(limit) = limit {
                spec.push_str(&format!(",rate_limit={limit}"));
            }
            ["--fault".to_owned(), spec]
        })
        .collect()
}

fn fault_rules() -> serde_json::Value {
    FAULTS
        .iter()
        .map(|(action, rate, limit)| {
            serde_json::json!({"action": action, "error_rate": rate, "rate_limit": limit})
        })
        .collect()
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Summary {
    pub seed: u64,
    pub workers: usize,
    pub ran: Duration,
    pub drained: Duration,
    pub figures: Figures,
    pub leaks: Leaks,
}

impl Summary {
    /// No leak and no lost byte.
    pub fn clean(&self) -> bool {
        self.leaks.total() == 0 && self.figures.lost.is_empty()
    }
}

fn joined<K: fmt::Display>(map: &std::collections::BTreeMap<K, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fig = &self.figures;
        let completed: u64 = fig.completed.values().sum();
        let failed: u64 = fig.failed.values().sum();
        let faults: u64 = fig.faults.values().sum();
        let kills: u64 = fig.kills.values().sum();
        writeln!(f, "soak summary")?;
        writeln!(f, "  seed                  {}", self.seed)?;
        writeln!(
            f,
            "  ran                   {:.0} s of lifecycles, then {:.0} s draining; {} workers per driver",
            self.ran.as_secs_f64(),
            self.drained.as_secs_f64(),
            self.workers
        )?;
        writeln!(
            f,
            "  lifecycles completed  {completed} ({}); failed {failed} ({})",
            joined(&fig.completed),
            joined(&fig.failed)
        )?;
        writeln!(
            f,
            "  data read back        {} files, {:.1} MiB fsynced then read back identical",
            fig.files_verified,
            fig.bytes_verified as f64 / (1 << 20) as f64
        )?;
        writeln!(
            f,
            "  faults injected       {faults} error answers ({}) of {} cloud API calls; {} stuck windows",
            joined(&fig.faults),
            fig.cloud_calls,
            fig.stuck_windows
        )?;
        let rpc_errors: u64 = fig.rpc_errors.values().sum();
        writeln!(
            f,
            "  errors the CSI caller saw and retried  {rpc_errors} ({})",
            joined(&fig.rpc_errors)
        )?;
        writeln!(
            f,
            "  kills                 {kills} ({})",
            joined(&fig.kills)
        )?;
        match &fig.slowest_recovery {
            Some((kind, took)) => writeln!(
                f,
                "  slowest recovery      {:.2} s after a kill of {kind}; {} recoveries timed, {} kills with no affected RPC after them",
                took.as_secs_f64(),
                fig.recoveries,
                fig.unrecovered.len()
            )?,
            None => writeln!(f, "  slowest recovery      no kill recovered")?,
        }
        let counts: Vec<String> = self
            .leaks
            .by_kind()
            .iter()
            .map(|(kind, list)| format!("{kind} {}", list.len()))
            .collect();
        writeln!(
            f,
            "  leaks                 {} ({}; uploads listed by {})",
            self.leaks.total(),
            counts.join(", "),
            self.leaks.uploads_checked_by
        )?;
        write!(f, "  lost bytes            {}", fig.lost.len())?;
        for (kind, list) in self.leaks.by_kind() {
            for item in list {
                write!(f, "\n  LEAK {kind}: {item}")?;
            }
        }
        for lost in &fig.lost {
            write!(f, "\n  LOST {lost}")?;
        }
        for failure in &fig.failures {
            write!(f, "\n  FAILED {failure}")?;
        }
        Ok(())
    }
}

/// Whether `driver` advertises STAGE_UNSTAGE_VOLUME.
async fn stages(socket: &std::path::Path) -> anyhow::Result<bool> {
    use pb::node_service_capability::rpc::Type;
    let mut client = CsiClient::connect(socket).await?;
    let caps = client
        .node
        .node_get_capabilities(pb::NodeGetCapabilitiesRequest {})
        .await?
        .into_inner()
        .capabilities;
    Ok(caps.iter().any(|c| {
        matches!(
            &c.r#type,
            Some(pb::node_service_capability::Type::Rpc(rpc)) if rpc.r#type == Type::StageUnstageVolume as i32
        )
    }))
}

/// Runs a soak until done or until `interrupt` completes (then everything is removed and an error
/// returned). Prints progress on stderr; returns the figures and leaks.
pub async fn soak(args: &SoakArgs, interrupt: impl Future<Output = ()>) -> anyhow::Result<Summary> {
    if args.minutes.is_nan() || args.minutes <= 0.0 || args.workers == 0 || args.chaos_every_ms == 0
    {
        bail!("--minutes and --chaos-every-ms must be positive and --workers at least 1");
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!(
        "soak: seed {seed}, {} minutes, {} workers per driver",
        args.minutes, args.workers
    );
    let rig = rig::Rig::start(&fault_args()).await?;
    eprintln!(
        "soak: simulator at {}, work directory {}",
        rig.sim_url,
        rig.workdir.display()
    );
    let mut configs = Vec::new();
    for slot in &rig.drivers {
        let stage = stages(&slot.socket)
            .await
            .with_context(|| format!("NodeGetCapabilities of {}", slot.kind.binary()))?;
        for index in 0..args.workers {
            configs.push(worker::WorkerConfig {
                driver: slot.kind,
                index,
                dir: slot.dir.clone(),
                socket: slot.socket.clone(),
                stage,
                attach: slot.kind == Driver::Cbs,
                lifecycle_timeout: Duration::from_secs(args.lifecycle_timeout_secs),
                seed: seed ^ (configs.len() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            });
        }
    }
    let rig = Arc::new(Mutex::new(rig));
    let tracker = Arc::new(tracker::Tracker::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for config in configs {
        workers.spawn(worker::run_worker(config, tracker.clone(), stop.clone()));
    }
    let mut chaos = tokio::spawn(chaos::run_chaos(
        chaos::ChaosConfig {
            seed,
            gap_ms: args.chaos_every_ms / 2..(args.chaos_every_ms * 3 / 2).max(1),
            base_rules: fault_rules(),
        },
        rig.clone(),
        tracker.clone(),
        stop.clone(),
    ));
    let started = Instant::now();
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    tokio::pin!(interrupt);

    let chaos_result = tokio::select! {
        _ = tokio::time::sleep(run_for) => None,
        result = &mut chaos => Some(result),
        _ = &mut interrupt => {
            stop.store(true, Ordering::SeqCst);
            workers.abort_all();
            chaos.abort();
            rig.lock().await.stop().await?;
            bail!("interrupted: stopped every process and removed everything the soak made");
        }
    };
    let ran = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    eprintln!("soak: stopping; in-flight lifecycles finish or are torn down");
    let chaos_result = match chaos_result {
        Some(result) => result,
        None => chaos.await,
    };
    if let Err(e) = chaos_result
        .context("the chaos task panicked")
        .and_then(|r| r)
    {
        workers.abort_all();
        let mut rig = rig.lock().await;
        let logs = rig.save_logs();
        rig.stop().await.ok();
        return Err(e.context(format!(
            "the chaos task failed (logs kept in {})",
            logs.map(|p| p.display().to_string())
                .unwrap_or_else(|| "nowhere".into())
        )));
    }
    let drain_start = Instant::now();
    let drain = async {
        while let Some(joined) = workers.join_next().await {
            joined.context("a worker panicked")?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = drain => result?,
        _ = &mut interrupt => {
            rig.lock().await.stop().await?;
            bail!("interrupted while draining: stopped every process and removed everything the soak made");
        }
    }
    let drained = drain_start.elapsed();
    let mut rig = rig.lock().await;
    match rig.sim_stats().await {
        Ok(stats) => tracker.add_sim_stats(&stats),
        Err(e) => eprintln!("soak: cannot read the simulator's counters: {e:#}"),
    }
    let leaks = audit::audit(&rig, AUDIT_SETTLE).await;
    let summary = leaks.map(|leaks| Summary {
        seed,
        workers: args.workers,
        ran,
        drained,
        figures: tracker.figures(),
        leaks,
    });
    if !summary.as_ref().is_ok_and(Summary::clean)
        && let Some(logs) = rig.save_logs()
    {
        eprintln!("soak: logs kept in {}", logs.display());
    }
    let stopped = rig.stop().await;
    let summary = summary?;
    if let Err(e) = stopped {
        eprintln!("soak: {e:#}");
    }
    Ok(summary)
}

/// `e2e soak`: runs, prints the summary, fails on any leak or lost byte. SIGINT/SIGTERM stop it
/// and remove everything it made.
pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let interrupt = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    let summary = soak(&args, interrupt).await?;
    println!("{summary}");
    if !summary.clean() {
        bail!(
            "the soak found {} leak(s) and {} lost file(s)",
            summary.leaks.total(),
            summary.figures.lost.len()
        );
    }
    Ok(())
}
