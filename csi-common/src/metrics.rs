//! The Prometheus endpoint: `GET /metrics` over HTTP. The registry itself lives in the
//! `metrics-registry` crate, so the cloud client and the mount layer record into it without
//! knowing HTTP.

use std::sync::Arc;

pub use metrics_registry::Metrics;

/// Serves `GET /metrics` on `address` until the process ends.
pub async fn serve_metrics(
    address: &str,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::net::SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    tracing::info!(%local, "serving /metrics");
    Ok(local)
}
