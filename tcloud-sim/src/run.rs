//! Running the simulator: build it, bring the data plane in line with the state, bind the API
//! listener (cloud API, instance metadata, the `/_sim/` control plane) and the COS listener,
//! print their addresses, and serve until SIGTERM or SIGINT. The routes of the API listener are
//! here; what each does is its module's.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};

use crate::args::Args;
use crate::sim::Sim;
use crate::{api, cbs, cos, metadata};

/// The API listener's routes.
fn router(sim: &Arc<Sim>) -> Router {
    Router::new()
        .route("/", post(api::handle))
        .route("/latest/meta-data/{*path}", get(metadata::first_instance))
        .route(
            "/instances/{id}/latest/meta-data/{*path}",
            get(metadata::instance),
        )
        .route(
            "/_sim/stats",
            get(api::control::get_stats).delete(api::control::reset_stats),
        )
        .route(
            "/_sim/faults",
            get(api::control::get_faults).put(api::control::put_faults),
        )
        .route(
            "/_sim/cos-profile",
            get(cos::control::get_profile).put(cos::control::put_profile),
        )
        .route("/_sim/cbs/stale-link", post(cbs::control::stale_link))
        .with_state(Arc::clone(sim))
}

/// Runs the simulator until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Handlers before the `listening` line: whoever reads it may stop us at once.
    let shutdown = shutdown_signal();
    let sim = Sim::new(&args)?;
    // The data plane first: what the state says is attached is attached before the first call.
    sim.cbs.reconcile().await;
    sim.cfs.reconcile().await;
    let ticker = sim.cbs.spawn_ticker();
    let cfs_ticker = sim.cfs.spawn_ticker();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let cos_listener = tokio::net::TcpListener::bind(args.cos_listen)
        .await
        .with_context(|| format!("cannot listen on --cos-listen {}", args.cos_listen))?;
    let cos_addr = cos_listener.local_addr()?;
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening http://{addr}")?;
        writeln!(stdout, "cos http://{cos_addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, %cos_addr, region = %sim.config.region, services = ?sim.services, buckets = ?sim.cos.store().names(), "simulator ready");
    // One signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let api = axum::serve(listener, router(&sim))
        .with_graceful_shutdown(until_stopped(stopped.clone()))
        .into_future();
    let cos = axum::serve(cos_listener, sim.cos.router())
        .with_graceful_shutdown(until_stopped(stopped))
        .into_future();
    let (api, cos) = tokio::join!(api, cos);
    let served = api
        .context("API server failed")
        .and(cos.context("COS server failed"));
    ticker.abort();
    cfs_ticker.abort();
    if args.cbs_detach_on_exit {
        sim.cbs.detach_all().await;
    }
    served
}

/// Installs the SIGTERM/SIGINT handlers now; the future completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}
