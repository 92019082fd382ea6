//! One tower layer that logs every CSI call once, at the edge: method, duration and gRPC code;
//! failures at WARN with their message. Each call runs in a span carrying a request number and the
//! volume (or snapshot) it acts on, so inner log lines are attributed without repeating that.
//!
//! Request bodies are logged only at DEBUG, decoded into their typed message with every CSI
//! `secrets` map blanked first. Handlers never log requests themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;

use super::pb;
use crate::metrics::Metrics;

pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, Default)]
pub struct RpcLogLayer {
    next_id: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl RpcLogLayer {
    /// A layer that also records every call in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RpcLogLayer {
            next_id: Arc::default(),
            metrics,
        }
    }
}

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> RpcLog<S> {
        RpcLog {
            inner,
            next_id: Arc::clone(&self.next_id),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcLog<S> {
    inner: S,
    next_id: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ResBody> Service<http::Request<Body>> for RpcLog<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let method = path.rsplit('/').next().unwrap_or_default().to_owned();
            let (parts, body) = request.into_parts();
            // CSI calls are unary and small: buffering one lets us name its volume in the span.
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let described = describe(&path, &bytes);
            let volume_id = described
                .as_ref()
                .and_then(|d| d.volume_id.clone())
                .unwrap_or_default();
            let span = tracing::info_span!("rpc", method = %method, id, volume_id = %volume_id);
            let request = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
            async move {
                if let Some(described) = &described {
                    tracing::debug!(request = %described.debug, "request");
                }
                let start = Instant::now();
                let result = inner.call(request).await;
                let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
                if let Ok(response) = &result {
                    let code = log_outcome(&method, response.headers(), elapsed_ms);
                    let code = format!("{code:?}");
                    let labels = [("method", metric_method(&path)), ("code", code.as_str())];
                    metrics.observe(
                        "tencentcloud_csi_operation_duration_seconds",
                        "CSI call latency, by method and gRPC code.",
                        &labels,
                        elapsed_ms / 1000.0,
                    );
                    if code != "Ok" {
                        metrics.inc(
                            "tencentcloud_csi_operation_errors_total",
                            "Failed CSI calls, by method and gRPC code.",
                            &labels,
                        );
                    }
                }
                result
            }
            .instrument(span)
            .await
        })
    }
}

/// Every CSI method path the layer knows (those [`describe`] decodes). Metrics label a call with
/// its method only when it is one of these; any other path, whatever a client sends, is counted
/// as `method="unknown"`, so label sets stay bounded.
const CSI_METHODS: &[&str] = &[
    "/csi.v1.Identity/GetPluginInfo",
    "/csi.v1.Identity/GetPluginCapabilities",
    "/csi.v1.Identity/Probe",
    "/csi.v1.Controller/CreateVolume",
    "/csi.v1.Controller/DeleteVolume",
    "/csi.v1.Controller/ControllerPublishVolume",
    "/csi.v1.Controller/ControllerUnpublishVolume",
    "/csi.v1.Controller/ValidateVolumeCapabilities",
    "/csi.v1.Controller/ListVolumes",
    "/csi.v1.Controller/GetCapacity",
    "/csi.v1.Controller/ControllerGetCapabilities",
    "/csi.v1.Controller/CreateSnapshot",
    "/csi.v1.Controller/DeleteSnapshot",
    "/csi.v1.Controller/ListSnapshots",
    "/csi.v1.Controller/ControllerExpandVolume",
    "/csi.v1.Controller/ControllerGetVolume",
    "/csi.v1.Controller/ControllerModifyVolume",
    "/csi.v1.GroupController/GroupControllerGetCapabilities",
    "/csi.v1.GroupController/CreateVolumeGroupSnapshot",
    "/csi.v1.GroupController/DeleteVolumeGroupSnapshot",
    "/csi.v1.GroupController/GetVolumeGroupSnapshot",
    "/csi.v1.Node/NodeStageVolume",
    "/csi.v1.Node/NodeUnstageVolume",
    "/csi.v1.Node/NodePublishVolume",
    "/csi.v1.Node/NodeUnpublishVolume",
    "/csi.v1.Node/NodeGetVolumeStats",
    "/csi.v1.Node/NodeExpandVolume",
    "/csi.v1.Node/NodeGetCapabilities",
    "/csi.v1.Node/NodeGetInfo",
];

/// The `method` label of a call to `path`: its CSI method name, or `unknown`.
fn metric_method(path: &str) -> &'static str {
    CSI_METHODS
        .iter()
        .find(|known| **known == path)
        .and_then(|known| known.rsplit('/').next())
        .unwrap_or("unknown")
}

/// Calls that kubelet and the sidecars make every few seconds; their success is not news.
fn is_routine(method: &str) -> bool {
    matches!(
        method,
        "GetPluginInfo"
            | "GetPluginCapabilities"
            | "Probe"
            | "ControllerGetCapabilities"
            | "NodeGetCapabilities"
            | "GroupControllerGetCapabilities"
            | "NodeGetInfo"
            | "NodeGetVolumeStats"
            | "GetCapacity"
            | "ControllerGetVolume"
    )
}

fn log_outcome(method: &str, headers: &http::HeaderMap, elapsed_ms: f64) -> tonic::Code {
    // Errors travel as trailers-only responses with the status in the headers; success puts
    // grpc-status 0 in the trailers, so a missing header means OK.
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok);
    if code == tonic::Code::Ok {
        if is_routine(method) {
            tracing::debug!(code = ?code, elapsed_ms, "rpc finished");
        } else {
            tracing::info!(code = ?code, elapsed_ms, "rpc finished");
        }
        return code;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    tracing::warn!(code = ?code, elapsed_ms, message = %message, "rpc failed");
    code
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&value[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the log may say about one request.
#[derive(Debug)]
pub struct Described {
    /// The volume (or, for snapshot calls, the snapshot) the call acts on.
    pub volume_id: Option<String>,
    /// `Debug` of the decoded message with secrets blanked.
    pub debug: String,
}

fn redact(map: &mut std::collections::HashMap<String, String>) {
    for value in map.values_mut() {
        *value = REDACTED.to_owned();
    }
}

macro_rules! describe_table {
    ($path:expr, $payload:expr; $($method:literal => $ty:ty { $(secrets: $secret:ident,)? $(volume: $volume:ident,)? })*) => {
        match $path {
            $($method => {
                #[allow(unused_mut)]
                let mut message = <$ty>::decode($payload).ok()?;
                $(redact(&mut message.$secret);)?
                #[allow(unused_mut, unused_assignments)]
                let mut volume_id: Option<String> = None;
                $(volume_id = Some(message.$volume.clone()).filter(|v| !v.is_empty());)?
                Some(Described { volume_id, debug: format!("{message:?}") })
            })*
            _ => None,
        }
    };
}

/// Decodes one gRPC-framed request of a known CSI method. Unknown methods, compressed frames and
/// undecodable bodies describe as `None` (and are then not logged at all).
pub fn describe(path: &str, frame: &[u8]) -> Option<Described> {
    let (&flag, rest) = frame.split_first()?;
    if flag != 0 {
        return None;
    }
    let (len, payload) = rest.split_first_chunk::<4>()?;
    let payload = payload.get(..u32::from_be_bytes(*len) as usize)?;
    describe_table! { path, payload;
        "/csi.v1.Identity/GetPluginInfo" => pb::GetPluginInfoRequest {}
        "/csi.v1.Identity/GetPluginCapabilities" => pb::GetPluginCapabilitiesRequest {}
        "/csi.v1.Identity/Probe" => pb::ProbeRequest {}
        "/csi.v1.Controller/CreateVolume" => pb::CreateVolumeRequest { secrets: secrets, volume: name, }
        "/csi.v1.Controller/DeleteVolume" => pb::DeleteVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Controller/ControllerPublishVolume" => pb::ControllerPublishVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Controller/ControllerUnpublishVolume" => pb::ControllerUnpublishVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Controller/ValidateVolumeCapabilities" => pb::ValidateVolumeCapabilitiesRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Controller/ListVolumes" => pb::ListVolumesRequest {}
        "/csi.v1.Controller/GetCapacity" => pb::GetCapacityRequest {}
        "/csi.v1.Controller/ControllerGetCapabilities" => pb::ControllerGetCapabilitiesRequest {}
        "/csi.v1.Controller/CreateSnapshot" => pb::CreateSnapshotRequest { secrets: secrets, volume: source_volume_id, }
        "/csi.v1.Controller/DeleteSnapshot" => pb::DeleteSnapshotRequest { secrets: secrets, volume: snapshot_id, }
        "/csi.v1.Controller/ListSnapshots" => pb::ListSnapshotsRequest { secrets: secrets, }
        "/csi.v1.Controller/ControllerExpandVolume" => pb::ControllerExpandVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Controller/ControllerGetVolume" => pb::ControllerGetVolumeRequest { volume: volume_id, }
        "/csi.v1.Controller/ControllerModifyVolume" => pb::ControllerModifyVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.GroupController/GroupControllerGetCapabilities" => pb::GroupControllerGetCapabilitiesRequest {}
        "/csi.v1.GroupController/CreateVolumeGroupSnapshot" => pb::CreateVolumeGroupSnapshotRequest { secrets: secrets, }
        "/csi.v1.GroupController/DeleteVolumeGroupSnapshot" => pb::DeleteVolumeGroupSnapshotRequest { secrets: secrets, }
        "/csi.v1.GroupController/GetVolumeGroupSnapshot" => pb::GetVolumeGroupSnapshotRequest { secrets: secrets, }
        "/csi.v1.Node/NodeStageVolume" => pb::NodeStageVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Node/NodeUnstageVolume" => pb::NodeUnstageVolumeRequest { volume: volume_id, }
        "/csi.v1.Node/NodePublishVolume" => pb::NodePublishVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Node/NodeUnpublishVolume" => pb::NodeUnpublishVolumeRequest { volume: volume_id, }
        "/csi.v1.Node/NodeGetVolumeStats" => pb::NodeGetVolumeStatsRequest { volume: volume_id, }
        "/csi.v1.Node/NodeExpandVolume" => pb::NodeExpandVolumeRequest { secrets: secrets, volume: volume_id, }
        "/csi.v1.Node/NodeGetCapabilities" => pb::NodeGetCapabilitiesRequest {}
        "/csi.v1.Node/NodeGetInfo" => pb::NodeGetInfoRequest {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn secrets_are_blanked_and_volume_named() {
        let request = pb::NodeStageVolumeRequest {
            volume_id: "disk-123".into(),
            secrets: [("SecretKey".to_string(), "hunter2-value".to_string())].into(),
            ..Default::default()
        };
        let described = describe("/csi.v1.Node/NodeStageVolume", &frame(&request)).unwrap();
        assert_eq!(described.volume_id.as_deref(), Some("disk-123"));
        assert!(!described.debug.contains("hunter2"), "{}", described.debug);
        assert!(described.debug.contains("SecretKey"));
        assert!(described.debug.contains(REDACTED));
    }

    #[test]
    fn unknown_compressed_or_truncated_frames_are_not_described() {
        let request = pb::ProbeRequest {};
        assert!(describe("/csi.v1.Identity/Nope", &frame(&request)).is_none());
        let mut compressed = frame(&request);
        compressed[0] = 1;
        assert!(describe("/csi.v1.Identity/Probe", &compressed).is_none());
        let stage = pb::NodeStageVolumeRequest {
            volume_id: "v".into(),
            ..Default::default()
        };
        let mut truncated = frame(&stage);
        truncated.pop();
        assert!(describe("/csi.v1.Node/NodeStageVolume", &truncated).is_none());
        assert!(describe("/csi.v1.Node/NodeStageVolume", &[]).is_none());
    }

    #[tokio::test]
    async fn unknown_methods_share_one_metric_label() {
        let metrics = Metrics::new();
        let unimplemented = tower::service_fn(|_request: http::Request<Body>| async {
            let response = http::Response::builder()
                .header("grpc-status", "12")
                .body(Body::empty())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = RpcLogLayer::new(Arc::clone(&metrics)).layer(unimplemented);
        for path in [
            "/csi.v1.Node/Evil0001",
            "/csi.v1.Node/Evil0002",
            "/attacker.Service/Whatever",
            "/",
        ] {
            let request = http::Request::builder()
                .uri(path)
                .body(Body::empty())
                .unwrap();
            service.call(request).await.unwrap();
        }
        let labels = [("method", "unknown"), ("code", "Unimplemented")];
        assert_eq!(
            metrics.counter("tencentcloud_csi_operation_errors_total", &labels),
            4
        );
        let rendered = metrics.render();
        for leaked in ["Evil0001", "Evil0002", "Whatever"] {
            assert!(!rendered.contains(leaked), "{leaked} in {rendered}");
        }
        // A CSI method keeps its own name.
        let request = http::Request::builder()
            .uri("/csi.v1.Identity/Probe")
            .body(Body::empty())
            .unwrap();
        service.call(request).await.unwrap();
        let probe = [("method", "Probe"), ("code", "Unimplemented")];
        assert_eq!(
            metrics.counter("tencentcloud_csi_operation_errors_total", &probe),
            1
        );
    }

    #[test]
    fn every_labelled_method_is_a_described_csi_method() {
        let empty = [0u8; 5];
        for path in CSI_METHODS {
            assert!(
                describe(path, &empty).is_some(),
                "{path} is not in describe's table"
            );
            assert_eq!(metric_method(path), path.rsplit('/').next().unwrap());
        }
        assert_eq!(metric_method("/csi.v1.Node/Probe"), "unknown");
        assert_eq!(metric_method("Probe"), "unknown");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("disk%20busy%3A%20retry"), "disk busy: retry");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
