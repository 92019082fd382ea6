//! `e2e bench cbs`: concurrent CBS lifecycles against the simulator with a realistic latency
//! profile. Prints, per RPC, p50/p99 latency beside the simulator's own floor for that RPC, cloud
//! API calls per volume at concurrency 1 and N (and at the reference concurrency, 50, when N is
//! larger), throttling seen by the client and by the CSI caller, and the driver's peak resident
//! memory, each beside its target. Not a test: nothing here fails on a number.
//!
//! The floor of an RPC is what the simulator itself imposes on the cloud work the RPC must do:
//! API latency L per necessary call plus the state transition, and for attach/detach the queueing
//! that the per-action rate limit R forces on the k-th of N simultaneous calls, (k - R) / R seconds.
//!
//! It uses the harness (`Env`, `Kubelet`) and the shared bench helpers; nothing else uses it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use tonic::Code;

use crate::bench::peak_rss_kib;
use crate::env::{Driver, Env, EnvOptions};
use crate::kubelet::{Kubelet, mount_capability};

#[derive(Debug, Clone, Args)]
pub struct CbsBenchArgs {
    /// Concurrent lifecycles in the last run (the first run has one).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Simulated API latency per call, in ms.
    #[arg(long, default_value_t = 30)]
    pub latency_ms: u64,
    /// Simulated ATTACHING time, in ms.
    #[arg(long, default_value_t = 1000)]
    pub attach_ms: u64,
    /// Simulated DETACHING time, in ms.
    #[arg(long, default_value_t = 600)]
    pub detach_ms: u64,
    /// Per-action rate limit of AttachDisks and DetachDisks, calls per second.
    #[arg(long, default_value_t = 20.0)]
    pub attach_rate_limit: f64,
    /// When `--concurrency` is larger, a run at this concurrency too: its API calls per volume
    /// are the larger run's target (batching must not cost more calls under more load).
    #[arg(long, default_value_t = 50)]
    pub reference_concurrency: usize,
}

/// The p50 of each controller RPC at most this multiple of the simulator's floor.
const P50_TARGET: f64 = 1.10;

const RPCS: [&str; 8] = [
    "CreateVolume",
    "ControllerPublishVolume",
    "NodeStageVolume",
    "NodePublishVolume",
    "NodeUnpublishVolume",
    "NodeUnstageVolume",
    "ControllerUnpublishVolume",
    "DeleteVolume",
];

#[derive(Debug, Default)]
struct Run {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// CSI calls that failed, by RPC and code (each is retried until it succeeds).
    errors: BTreeMap<(String, String), u64>,
    api_calls: u64,
    throttled_in_cloud: u64,
    peak_rss_kib: u64,
    wall: Duration,
    floors: Floors,
}

#[derive(Debug, Default, Clone, Copy)]
struct Spread {
    p50: Duration,
    p99: Duration,
}

impl Spread {
    fn at(self, quantile: f64) -> Duration {
        if quantile >= 0.99 { self.p99 } else { self.p50 }
    }
}

/// What the simulator itself needs, measured in this run by an ideal client: one API call's round
/// trip (L), and AttachDisks/DetachDisks until a back-to-back describe sees the end state.
#[derive(Debug, Default, Clone, Copy)]
struct Floors {
    api_call: Duration,
    /// CreateDisks and TerminateDisks, as many sent at once as the run has lifecycles: they also
    /// pay the simulator's durable (serialized) state write.
    create_call: Spread,
    terminate_call: Spread,
    /// AttachDisks/DetachDisks of that many disks at once, until a describe sees the end state.
    attach: Spread,
    detach: Spread,
}

/// Retries one CSI step the way the sidecars do, recording every attempt's outcome.
async fn step<T, F, Fut>(
    name: &'static str,
    run: &tokio::sync::Mutex<Run>,
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    for _ in 0..60 {
        let start = Instant::now();
        match call().await {
            Ok(value) => {
                run.lock()
                    .await
                    .latencies
                    .entry(name)
                    .or_default()
                    .push(start.elapsed());
                return Ok(value);
            }
            Err(e) => {
                let code = e
                    .downcast_ref::<tonic::Status>()
                    .map(|s| s.code())
                    .unwrap_or(Code::Unknown);
                *run.lock()
                    .await
                    .errors
                    .entry((name.to_owned(), format!("{code:?}")))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    anyhow::bail!("{name} kept failing")
}

async fn lifecycle(k: Kubelet, index: usize, run: &tokio::sync::Mutex<Run>) -> anyhow::Result<()> {
    // As the external-provisioner names a PVC's volume: `pvc-` and the PVC's UID.
    let name = format!("pvc-00000000-0000-4000-8000-{index:012x}");
    let name = &name;
    let mut volume = step("CreateVolume", run, || {
        let mut k = k.clone();
        async move { k.create(name, 10, mount_capability("ext4"), None).await }
    })
    .await?;
    volume.publish_context = step("ControllerPublishVolume", run, || {
        let (mut k, mut v) = (k.clone(), volume.clone());
        async move {
            k.attach(&mut v).await?;
            Ok(v.publish_context)
        }
    })
    .await?;
    let v = &volume;
    step("NodeStageVolume", run, || {
        let mut k = k.clone();
        async move { k.stage(v).await }
    })
    .await?;
    step("NodePublishVolume", run, || {
        let mut k = k.clone();
        async move { k.publish(v, false).await }
    })
    .await?;
    step("NodeUnpublishVolume", run, || {
        let mut k = k.clone();
        async move { k.unpublish(v).await }
    })
    .await?;
    step("NodeUnstageVolume", run, || {
        let mut k = k.clone();
        async move { k.unstage(v).await }
    })
    .await?;
    step("ControllerUnpublishVolume", run, || {
        let mut k = k.clone();
        async move { k.detach(v).await }
    })
    .await?;
    step("DeleteVolume", run, || {
        let mut k = k.clone();
        async move { k.delete(v).await }
    })
    .await
}

async fn one_run(args: &CbsBenchArgs, concurrency: usize) -> anyhow::Result<Run> {
    let sim_args = vec![
        format!("--latency-ms={}", args.latency_ms),
        format!("--cbs-attach-ms={}", args.attach_ms),
        format!("--cbs-detach-ms={}", args.detach_ms),
        format!("--fault=AttachDisks:rate_limit={}", args.attach_rate_limit),
        format!("--fault=DetachDisks:rate_limit={}", args.attach_rate_limit),
        // Room for every lifecycle's disk on the one simulated node (CBS's default is 20).
        format!("--cbs-max-attach={}", concurrency.max(20) + 1),
    ];
    let mut env = Env::start(
        Driver::Cbs,
        EnvOptions {
            sim_args,
            ..Default::default()
        },
    )
    .await?;
    let floors = measure_floors(args, &env, concurrency).await?;
    env.reset_sim_stats().await?;
    let run = tokio::sync::Mutex::new(Run::default());
    let kubelet = Kubelet::new(env.client().await?, &env.workdir);
    let start = Instant::now();
    let results = if concurrency == 1 {
        // Sequential lifecycles: one at a time, several times, so the figures are steady-state.
        let mut results = Vec::new();
        for i in 0..SEQUENTIAL_RUNS {
            results.push(lifecycle(kubelet.clone(), i, &run).await);
        }
        results
    } else {
        futures_join((0..concurrency).map(|i| lifecycle(kubelet.clone(), i, &run))).await
    };
    let wall = start.elapsed();
    let stats = env.sim_stats().await?;
    let pid = env.driver.pid().unwrap_or(0);
    let rss = peak_rss_kib(pid).unwrap_or(0);
    env.stop().await?;
    for result in results {
        result?;
    }
    let mut run = run.into_inner();
    run.wall = wall;
    run.floors = floors;
    run.peak_rss_kib = rss;
    if let Some(actions) = stats.as_object() {
        for value in actions.values() {
            run.api_calls += value["calls"].as_u64().unwrap_or(0);
            run.throttled_in_cloud += value["errors"]["RequestLimitExceeded"]
                .as_u64()
                .unwrap_or(0);
        }
    }
    Ok(run)
}

const SEQUENTIAL_RUNS: usize = 5;

/// Sends AttachDisks (to `ATTACHED`) or DetachDisks (to `UNATTACHED`) for every disk at once and
/// polls them all back to back; returns each disk's time from the start to its end state.
async fn transition(
    client: &tcloud::CloudClient,
    ids: &[String],
    target: &'static str,
) -> anyhow::Result<Vec<Duration>> {
    use tcloud::cbs::{CbsApi, DescribeDisksRequest, disk_state};
    let start = Instant::now();
    let sent = futures_join(ids.iter().map(|id| {
        let client = client.clone();
        let id = vec![id.clone()];
        async move {
            if target == disk_state::ATTACHED {
                client.attach_disks(&id, crate::env::NODE_ID, None).await
            } else {
                client.detach_disks(&id, None, None).await
            }
        }
    }))
    .await;
    for result in sent {
        result?;
    }
    let mut pending: Vec<String> = ids.to_vec();
    let mut done = Vec::new();
    while !pending.is_empty() {
        // DescribeDisks takes 100 IDs a call: the chunks go at once, as one look.
        let looks = futures_join(pending.chunks(100).map(|chunk| {
            let request = DescribeDisksRequest {
                disk_ids: chunk.to_vec(),
                limit: Some(100),
                ..Default::default()
            };
            let client = client.clone();
            async move { client.describe_disks(&request, None).await }
        }))
        .await;
        for found in looks {
            for disk in found?.disk_set.iter().filter(|d| d.disk_state == target) {
                done.push(start.elapsed());
                pending.retain(|id| *id != disk.disk_id);
            }
        }
    }
    Ok(done)
}

/// Measures the floors with our cloud client against this run's simulator, before the driver's
/// lifecycles start: the median of several tries each.
async fn measure_floors(
    args: &CbsBenchArgs,
    env: &Env,
    concurrency: usize,
) -> anyhow::Result<Floors> {
    use tcloud::cbs::{CbsApi, CreateDisksRequest, Placement, disk_state};
    use tcloud::{CloudClient, CloudConfig, CredentialSource, MetadataClient};
    let names = tcloud::credentials::COMMON_KEY_NAMES;
    let metadata = MetadataClient::new(&env.sim_url)?;
    let credentials =
        CredentialSource::discover(Some(&env.credentials_dir), names, |_| None, metadata)?;
    let client = CloudClient::new(
        CloudConfig::new(&env.sim_url, crate::env::REGION),
        credentials,
    )?;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let p50_p99 = |mut v: Vec<Duration>| {
        v.sort();
        Spread {
            p50: percentile(&v, 0.5),
            p99: percentile(&v, 0.99),
        }
    };
    let mut calls = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        client.describe_zones(None).await?;
        calls.push(start.elapsed());
    }
    let create = CreateDisksRequest {
        placement: Placement {
            zone: "ap-guangzhou-3".into(),
            ..Default::default()
        },
        disk_type: "CLOUD_PREMIUM".into(),
        disk_charge_type: "POSTPAID_BY_HOUR".into(),
        disk_size: 10,
        disk_count: 1,
        disk_name: Some("bench-floor".into()),
        ..Default::default()
    };
    // As many creates at once as the run has lifecycles, then as many terminates: what the
    // simulator needs for that load (it serializes its durable state writes). Alone, several
    // rounds, so one slow state write does not make the floor.
    let (mut creates, mut terminates) = (Vec::new(), Vec::new());
    for round in 0..if concurrency == 1 { SEQUENTIAL_RUNS } else { 1 } {
        let created = futures_join((0..concurrency).map(|i| {
            let client = client.clone();
            let request = CreateDisksRequest {
                disk_name: Some(format!("bench-floor-{round}-{i}")),
                ..create.clone()
            };
            async move {
                let start = Instant::now();
                let ids = client.create_disks(&request, None).await?;
                anyhow::Ok((start.elapsed(), ids))
            }
        }))
        .await;
        let mut created_ids = Vec::new();
        for result in created {
            let (took, ids) = result?;
            creates.push(took);
            created_ids.extend(ids);
        }
        let terminated = futures_join(created_ids.into_iter().map(|id| {
            let client = client.clone();
            async move {
                let start = Instant::now();
                client.terminate_disks(&[id], None).await?;
                anyhow::Ok(start.elapsed())
            }
        }))
        .await;
        for result in terminated {
            terminates.push(result?);
        }
    }
    // Attach and detach as many disks at once as the run has lifecycles, paced at the
    // simulator's own limit, while one back-to-back describe of them all notes when each arrives.
    let ideal = {
        let mut config = CloudConfig::new(&env.sim_url, crate::env::REGION);
        config.rate_limit_per_action = args.attach_rate_limit;
        let metadata = MetadataClient::new(&env.sim_url)?;
        let credentials =
            CredentialSource::discover(Some(&env.credentials_dir), names, |_| None, metadata)?;
        CloudClient::new(config, credentials)?
    };
    let rounds = if concurrency == 1 { 3 } else { 1 };
    let (mut attaches, mut detaches) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut ids = Vec::new();
        for i in 0..concurrency {
            let request = CreateDisksRequest {
                disk_name: Some(format!("bench-floor-attach-{round}-{i}")),
                ..create.clone()
            };
            ids.extend(ideal.create_disks(&request, None).await?);
        }
        attaches.extend(transition(&ideal, &ids, disk_state::ATTACHED).await?);
        detaches.extend(transition(&ideal, &ids, disk_state::UNATTACHED).await?);
        for chunk in ids.chunks(100) {
            ideal.terminate_disks(chunk, None).await?;
        }
    }
    Ok(Floors {
        api_call: median(calls),
        create_call: p50_p99(creates),
        terminate_call: p50_p99(terminates),
        attach: p50_p99(attaches),
        detach: p50_p99(detaches),
    })
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The simulator's floor for `rpc` at `quantile` of this run's simultaneous callers; `None` for
/// the node RPCs, which make no cloud calls.
fn floor(floors: Floors, rpc: &str, quantile: f64) -> Option<Duration> {
    let l = floors.api_call;
    match rpc {
        // A look by name (idempotency needs it), then the create.
        "CreateVolume" => Some(l + floors.create_call.at(quantile)),
        // A look at the current state (idempotency needs it), then the ideal attach or detach.
        "ControllerPublishVolume" => Some(l + floors.attach.at(quantile)),
        "ControllerUnpublishVolume" => Some(l + floors.detach.at(quantile)),
        "DeleteVolume" => Some(floors.terminate_call.at(quantile)),
        _ => None,
    }
}

/// Cloud API calls per lifecycle of a run.
fn calls_per_volume(n: usize, run: &Run) -> f64 {
    let lifecycles = if n == 1 { SEQUENTIAL_RUNS } else { n };
    run.api_calls as f64 / lifecycles as f64
}

/// A run's target for API calls per volume: at most `.0`, which is `.1`.
type CallsTarget = Option<(f64, String)>;

fn print_run(n: usize, run: &Run, calls_target: &CallsTarget) {
    let lifecycles = if n == 1 { SEQUENTIAL_RUNS } else { n };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\nconcurrency {n}: {lifecycles} lifecycles in {:.2} s; measured floors: API call {:.1} ms, create {:.1} ms, terminate {:.1} ms, ideal attach {:.1} ms, ideal detach {:.1} ms",
        run.wall.as_secs_f64(),
        ms(run.floors.api_call),
        ms(run.floors.create_call.p50),
        ms(run.floors.terminate_call.p50),
        ms(run.floors.attach.p50),
        ms(run.floors.detach.p50)
    );
    println!(
        "  {:<27} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "RPC", "p50 ms", "p99 ms", "floor50", "floor99", "p50/fl", "target"
    );
    let target = format!("<={P50_TARGET:.2}x");
    for rpc in RPCS {
        let mut samples = run.latencies.get(rpc).cloned().unwrap_or_default();
        samples.sort();
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        match (floor(run.floors, rpc, 0.5), floor(run.floors, rpc, 0.99)) {
            (Some(f50), Some(f99)) => println!(
                "  {:<27} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>7.2}x {:>8}",
                rpc,
                ms(p50),
                ms(p99),
                ms(f50),
                ms(f99),
                ms(p50) / ms(f50),
                target
            ),
            _ => println!(
                "  {:<27} {:>9.1} {:>9.1} {:>10} {:>10} {:>8} {:>8}",
                rpc,
                ms(p50),
                ms(p99),
                "-",
                "-",
                "node",
                "-"
            ),
        }
    }
    let csi_throttled: u64 = run
        .errors
        .iter()
        .filter(|((_, code), _)| code == "Unavailable")
        .map(|(_, n)| n)
        .sum();
    let errors: u64 = run.errors.values().sum();
    let calls = calls_per_volume(n, run);
    let calls_target = match calls_target {
        Some((target, what)) => format!(" (target <= {target:.1}, {what})"),
        None => " (the reference of the runs below)".to_owned(),
    };
    println!("  cloud API calls per volume: {calls:.1}{calls_target}");
    println!(
        "  RequestLimitExceeded answers: {} (absorbed by the driver's retries; what counts is the line below)",
        run.throttled_in_cloud
    );
    println!(
        "  errors reaching the CSI caller: {errors} (target 0; UNAVAILABLE: {csi_throttled}) {:?}",
        run.errors
    );
    println!(
        "  driver peak resident memory (controller+node in one process): {:.1} MiB (target < 30 MiB)",
        run.peak_rss_kib as f64 / 1024.0
    );
}

pub async fn run_cbs(args: CbsBenchArgs) -> anyhow::Result<()> {
    println!(
        "e2e bench cbs: latency {} ms per API call, ATTACHING {} ms, DETACHING {} ms, AttachDisks/DetachDisks limited to {}/s",
        args.latency_ms, args.attach_ms, args.detach_ms, args.attach_rate_limit
    );
    let single = one_run(&args, 1).await?;
    print_run(1, &single, &None);
    let at_one = calls_per_volume(1, &single);
    let mut target: CallsTarget = Some((at_one, "the concurrency-1 figure of this run".into()));
    let reference = args.reference_concurrency;
    let mut figures = vec![(1, at_one)];
    if args.concurrency > reference && reference > 1 {
        let run = one_run(&args, reference).await?;
        print_run(reference, &run, &target);
        let calls = calls_per_volume(reference, &run);
        figures.push((reference, calls));
        target = Some((
            calls,
            format!("the concurrency-{reference} figure of this run"),
        ));
    }
    if args.concurrency > 1 {
        let many = one_run(&args, args.concurrency).await?;
        print_run(args.concurrency, &many, &target);
        figures.push((args.concurrency, calls_per_volume(args.concurrency, &many)));
    }
    if figures.len() < 2 {
        return Ok(());
    }
    let listed: Vec<String> = figures
        .iter()
        .map(|(n, calls)| format!("{calls:.1} at {n}"))
        .collect();
    println!(
        "\nAPI calls per volume: {} (target: no more at {} than at {})",
        listed.join(", "),
        args.concurrency,
        figures
            .len()
            .checked_sub(2)
            .and_then(|i| figures.get(i))
            .map_or(1, |(n, _)| *n)
    );
    Ok(())
}
