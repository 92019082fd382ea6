//! `e2e`: the end-to-end harness's command line.
//!
//! `e2e serve --driver <cbs|cfs|cfsturbo|cos|goosefs> --socket PATH [--workdir DIR]` starts the
//! simulator and that driver against it, prints `ready <socket>` once the socket answers, and on
//! SIGTERM or SIGINT stops both and removes every mount, loop device and file it made. With
//! `cfsturbo` it first creates a CFS Turbo file system in the simulator and prints
//! `turbo host=<ip> fsid=<fsid>` before `ready`, the StorageClass parameters `host` and `fsid`.
//! This interface is stable: any CSI client (csi-sanity included) can be pointed at the socket.
//!
//! `e2e soak --minutes N [--seed S] [--workers K]` runs concurrent lifecycles of all four drivers
//! against one simulator with injected errors, throttling and stuck transitions, while SIGKILLing
//! the drivers, the FUSE hosts, FUSE daemons and the simulator at seeded random moments; then it
//! audits for leaked disks, snapshots, file systems, mounts, loop devices, processes and multipart
//! uploads, prints one summary block, and fails on any leak or any fsynced byte not read back.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use e2e::{Driver, Env, EnvOptions};
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "e2e",
    version,
    about = "End-to-end harness for the Tencent Cloud CSI drivers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the bundle working against the simulator, step by step (the README's main job).
    Demo,
    /// Benchmark a driver against the simulator (prints figures beside their targets).
    Bench {
        #[command(subcommand)]
        driver: BenchDriver,
    },
    /// Lifecycles of all four drivers under cloud faults and random SIGKILLs, then a leak audit.
    Soak(e2e::soak::SoakArgs),
    /// Run the simulator and one driver (mode all) until SIGTERM/SIGINT.
    Serve {
        /// Which driver to run.
        #[arg(long, value_enum)]
        driver: Driver,
        /// Where the driver listens (a path; the driver creates its directory).
        #[arg(long)]
        socket: PathBuf,
        /// Work directory for the simulator's state, keys and logs; a temporary one by default.
        /// What the run creates in it is removed at exit.
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// An extra argument for the simulator (repeatable), e.g. --sim-arg=--latency-ms=20.
        #[arg(long = "sim-arg", allow_hyphen_values = true)]
        sim_args: Vec<String>,
        /// An extra argument for the driver (repeatable).
        #[arg(long = "driver-arg", allow_hyphen_values = true)]
        driver_args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchDriver {
    /// Concurrent CBS volume lifecycles.
    Cbs(e2e::bench::cbs::CbsBenchArgs),
    /// cos-fuse against s3fs on one simulator bucket, on loopback and under a COS profile.
    Cos(e2e::bench::cos::CosBenchArgs),
    /// The block cache (csi-goosefs) cold and warm, against no cache and s3fs's cache.
    Goosefs(e2e::bench::goosefs::GoosefsBenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("e2e: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo => e2e::demo::run().await,
        Command::Bench {
            driver: BenchDriver::Cbs(args),
        } => e2e::bench::cbs::run_cbs(args).await,
        Command::Bench {
            driver: BenchDriver::Cos(args),
        } => e2e::bench::cos::run_cos(args).await,
        Command::Bench {
            driver: BenchDriver::Goosefs(args),
        } => e2e::bench::goosefs::run_goosefs(args).await,
        Command::Soak(args) => e2e::soak::run(args).await,
        Command::Serve {
            driver,
            socket,
            workdir,
            sim_args,
            driver_args,
        } => {
            let socket = std::path::absolute(&socket)?;
            let options = EnvOptions {
                workdir,
                socket: Some(socket.clone()),
                sim_args,
                driver_args,
            };
            // Handlers first: a client may stop us the moment it reads `ready` (or before).
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let mut env = Env::start(driver, options).await?;
            eprintln!(
                "e2e: {} against tcloud-sim at {}; logs in {}",
                driver.binary(),
                env.sim_url,
                env.workdir.join("logs").display()
            );
            if let Some(turbo) = &env.turbo {
                println!("turbo host={} fsid={}", turbo.host, turbo.fsid);
            }
            println!("ready {}", socket.display());
            std::io::stdout().flush()?;
            let exited = wait_for_signal_or_exit(&mut env, &mut term, &mut int).await;
            env.stop().await?;
            if let Some(name) = exited {
                anyhow::bail!("{name} exited on its own; see its log above");
            }
            Ok(())
        }
    }
}

/// Waits for SIGTERM/SIGINT; returns the name of a child that died first, if any.
async fn wait_for_signal_or_exit(
    env: &mut Env,
    term: &mut Signal,
    int: &mut Signal,
) -> Option<String> {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = term.recv() => return None,
            _ = int.recv() => return None,
            _ = tick.tick() => {
                for proc in [&mut env.driver, &mut env.sim] {
                    if proc.try_status().is_some() {
                        eprintln!("e2e: {} exited; last log lines:\n{}", proc.name, proc.log_tail());
                        return Some(proc.name.clone());
                    }
                }
            }
        }
    }
}
