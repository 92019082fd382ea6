//! The Prometheus endpoint: `GET /metrics` over HTTP. The registry itself lives in the
//! `metrics-registry` crate, so the cloud client and the mount layer record into it without
//! knowing HTTP. Every scrape serves the registry plus this process's `process_*` series and
//! `tencentcloud_csi_build_info`, read at that moment ([`Metrics::exposition`]).

use std::sync::Arc;

pub use metrics_registry::build_info::{
    COMMIT as BUILD_COMMIT, LONG_VERSION as BUILD_LONG_VERSION, VERSION as BUILD_VERSION,
};
/// `promtool check metrics` over an exposition, for the tests of the crates that serve one.
pub use metrics_registry::promtool::{PromtoolError, check_metrics as promtool_check};
pub use metrics_registry::{Metrics, PREFIX};

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
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    metrics.exposition(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver's `/metrics`, fetched over HTTP, passes `promtool check metrics` and carries the
    /// process and build-info series. Fails (saying to install it) when promtool is missing.
    #[tokio::test]
    async fn a_drivers_metrics_endpoint_passes_promtool() {
        let metrics = Metrics::new();
        metrics.inc(
            "tencentcloud_csi_operation_errors_total",
            "Failed CSI calls, by method and gRPC code.",
            &[("method", "CreateVolume"), ("code", "Internal")],
        );
        metrics.observe(
            "tencentcloud_csi_operation_duration_seconds",
            "CSI call latency, by method and gRPC code.",
            &[("method", "CreateVolume"), ("code", "Internal")],
            0.3,
        );
        metrics.observe_cloud_wait("disk", "the attach", "ok", 2.0);
        metrics.inc(
            "tencentcloud_csi_mount_operation_errors_total",
            "Mount-layer operations that failed, by operation.",
            &[("op", "format")],
        );
        let local = serve_metrics("127.0.0.1:0", Arc::clone(&metrics))
            .await
            .unwrap();
        // Plain HTTP/1.0 by hand: the answer ends when the server closes the connection.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(local).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let (head, text) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(
            text.contains(&format!(
                "version=\"{BUILD_VERSION}\",commit=\"{BUILD_COMMIT}\"}} 1"
            )),
            "{text}"
        );
        if let Err(e) = promtool_check(text) {
            panic!("{e}");
        }
    }
}
