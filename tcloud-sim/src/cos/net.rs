//! The COS listener's HTTP edge, around the S3 service: the network profile (a latency before
//! every response, request and response bodies paced to a bandwidth), byte counting, and the
//! per-operation counters. It sees bytes and statuses only; what an operation does is the
//! service's business.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, Sleep};

use super::auth::OpSlot;
use super::stats::{CosStats, NO_OPERATION};

/// Largest slice of a body sent at once when paced. A slice leaves once the rate allows its
/// last byte less `BURST`, so a bigger slice does not raise the rate; it only spares the
/// simulator (which shares the machine with the client under test) a timer per 64 KiB.
const SLICE: usize = 256 * 1024;
/// How far a body may run ahead of its rate: a TCP window's worth.
const BURST: u64 = 64 * 1024;

/// Bandwidths accepted, in megabits per second (0 is unlimited).
const BANDWIDTH_RANGE: std::ops::RangeInclusive<f64> = 0.001..=1_000_000.0;

/// How the simulated network between clients and COS behaves (`--cos-latency-ms`,
/// `--cos-bandwidth-mbps`, `PUT /_sim/cos-profile`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkProfile {
    /// Delay before the first byte of every response, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Megabits per second for each request body and each response body, separately per
    /// request; 0 is unlimited.
    #[serde(default)]
    pub bandwidth_mbps: f64,
}

impl NetworkProfile {
    pub fn validate(&self) -> Result<(), String> {
        if self.bandwidth_mbps != 0.0 && !BANDWIDTH_RANGE.contains(&self.bandwidth_mbps) {
            return Err(format!(
                "bandwidth_mbps {} is neither 0 (unlimited) nor within {}..={}",
                self.bandwidth_mbps,
                BANDWIDTH_RANGE.start(),
                BANDWIDTH_RANGE.end()
            ));
        }
        Ok(())
    }

    fn bytes_per_sec(&self) -> Option<f64> {
        (self.bandwidth_mbps > 0.0).then(|| self.bandwidth_mbps * 1_000_000.0 / 8.0)
    }
}

/// Parses `--cos-bandwidth-mbps`.
pub fn parse_bandwidth(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .parse()
        .map_err(|_| format!("bandwidth {s:?} is not a number of megabits per second"))?;
    NetworkProfile {
        latency_ms: 0,
        bandwidth_mbps: value,
    }
    .validate()?;
    Ok(value)
}

/// The state of the COS listener's one handler.
pub struct Edge {
    pub service: s3s::service::S3Service,
    pub profile: Arc<Mutex<NetworkProfile>>,
    pub stats: Arc<CosStats>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Every request of the COS listener.
pub async fn handle(State(edge): State<Arc<Edge>>, request: axum::extract::Request) -> Response {
    let profile = *edge.profile.lock().unwrap_or_else(|p| p.into_inner());
    let rate = profile.bytes_per_sec();
    let received = Arc::new(AtomicU64::new(0));
    let slot = OpSlot::default();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(slot.clone());
    let expects_continue = parts
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = Metered::new(body, rate, Meter::Received(Arc::clone(&received)));
    let request = http::Request::from_parts(parts, s3s::Body::http_body_unsync(body));
    let response = match edge.service.call(request).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = ?e, "COS request failed outside any operation");
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
<Message>The simulator failed to handle the request.</Message></Error>";
            http::Response::builder()
                .status(http::StatusCode::INTERNAL_SERVER_ERROR)
                .header(http::header::CONTENT_TYPE, "application/xml")
                .body(s3s::Body::from(body.to_owned()))
                .unwrap_or_default()
        }
    };
    if profile.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(profile.latency_ms)).await;
    }
    let op = slot.get().unwrap_or_else(|| NO_OPERATION.to_owned());
    let status = response.status();
    let error = (status.is_client_error() || status.is_server_error()).then(|| {
        response
            .body()
            .bytes()
            .and_then(|xml| error_code(&xml))
            .unwrap_or_else(|| status.as_u16().to_string())
    });
    edge.stats
        .record(&op, error.as_deref(), received.load(Ordering::Relaxed));
    if let Some(code) = &error {
        tracing::debug!(op, code, status = status.as_u16(), "COS error");
    }
    let (mut parts, body) = response.into_parts();
    // hyper sends `100 Continue` only when it reads a non-empty body. A client that sent
    // `Expect: 100-continue` and got the final answer without it may be out of step on this
    // connection (botocore then misreads the next response on it): close the connection.
    if expects_continue && received.load(Ordering::Relaxed) == 0 {
        parts.headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    let body = Metered::new(
        body,
        rate,
        Meter::Sent {
            stats: Arc::clone(&edge.stats),
            op,
        },
    );
    Response::from_parts(parts, axum::body::Body::new(body)).into_response()
}

/// The `<Code>` of an S3 error document.
fn error_code(xml: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(xml).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].to_owned())
}

/// Where a body's bytes are counted.
enum Meter {
    Received(Arc<AtomicU64>),
    Sent { stats: Arc<CosStats>, op: String },
}

impl Meter {
    fn add(&self, bytes: usize) {
        match self {
            Meter::Received(counter) => {
                counter.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Meter::Sent { stats, op } => stats.add_sent(op, bytes as u64),
        }
    }
}

/// A body counted by a [`Meter`] and, when a rate is set, paced to it: no more than `BURST`
/// bytes ahead of `rate` since its first byte.
struct Metered<B> {
    inner: Pin<Box<B>>,
    meter: Meter,
    /// Bytes per second; `None`: unlimited.
    rate: Option<f64>,
    start: Option<Instant>,
    sent: u64,
    /// The rest of a data frame larger than a slice.
    pending: Bytes,
    /// A slice waiting for its time.
    held: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> Metered<B> {
    fn new(inner: B, rate: Option<f64>, meter: Meter) -> Self {
        Metered {
            inner: Box::pin(inner),
            meter,
            rate,
            start: None,
            sent: 0,
            pending: Bytes::new(),
            held: None,
            sleep: None,
        }
    }

    /// When the next `len` bytes may leave.
    fn due(&mut self, rate: f64, len: usize) -> Option<Instant> {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.sent += len as u64;
        let owed = self.sent.saturating_sub(BURST) as f64 / rate;
        Duration::try_from_secs_f64(owed)
            .ok()
            .and_then(|d| start.checked_add(d))
    }

    fn buffered(&self) -> u64 {
        (self.pending.len() + self.held.as_ref().map_or(0, Bytes::len)) as u64
    }
}

impl<B> http_body::Body for Metered<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            if let Some(slice) = this.held.take() {
                this.meter.add(slice.len());
                return Poll::Ready(Some(Ok(Frame::data(slice))));
            }
            let mut chunk = if this.pending.is_empty() {
                match ready!(this.inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                    other => return Poll::Ready(other),
                }
            } else {
                std::mem::take(&mut this.pending)
            };
            let Some(rate) = this.rate else {
                this.meter.add(chunk.len());
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            };
            if chunk.len() > SLICE {
                this.pending = chunk.split_off(SLICE);
            }
            match this.due(rate, chunk.len()) {
                Some(due) if due <= Instant::now() => {
                    this.meter.add(chunk.len());
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                // Past the end of time (a rate too small to matter): send it at once.
                None => {
                    this.meter.add(chunk.len());
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                Some(due) => {
                    this.held = Some(chunk);
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffered() == 0 && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let extra = self.buffered();
        match inner.exact() {
            Some(exact) => SizeHint::with_exact(exact + extra),
            None => {
                let mut hint = SizeHint::new();
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint.set_lower(inner.lower() + extra);
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn pacing_holds_a_body_to_its_rate() {
        let bytes = Bytes::from(vec![1u8; 256 * 1024]);
        let counter = Arc::new(AtomicU64::new(0));
        // 8 Mbit/s = 1 MB/s: 256 KiB less the first slice (64 KiB) takes about 0.2 s.
        let body = Metered::new(
            Full::new(bytes.clone()),
            NetworkProfile {
                latency_ms: 0,
                bandwidth_mbps: 8.0,
            }
            .bytes_per_sec(),
            Meter::Received(Arc::clone(&counter)),
        );
        assert_eq!(body.size_hint().exact(), Some(256 * 1024));
        let started = std::time::Instant::now();
        let collected = body.collect().await.unwrap().to_bytes();
        let took = started.elapsed();
        assert_eq!(collected, bytes);
        assert_eq!(counter.load(Ordering::Relaxed), 256 * 1024);
        assert!(took >= Duration::from_millis(180), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");

        let unlimited = Metered::new(
            Full::new(bytes.clone()),
            None,
            Meter::Received(Arc::clone(&counter)),
        );
        let started = std::time::Instant::now();
        assert_eq!(unlimited.collect().await.unwrap().to_bytes(), bytes);
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn profiles_are_validated() {
        assert!(parse_bandwidth("0").is_ok());
        assert!(parse_bandwidth("100").is_ok());
        assert!(parse_bandwidth("-1").is_err());
        assert!(parse_bandwidth("NaN").is_err());
        assert!(parse_bandwidth("fast").is_err());
        let profile: NetworkProfile = serde_json::from_str(r#"{"latency_ms": 5}"#).unwrap();
        assert_eq!(profile.bandwidth_mbps, 0.0);
        assert!(serde_json::from_str::<NetworkProfile>(r#"{"latency": 5}"#).is_err());
    }

    #[test]
    fn error_codes_are_read_from_error_documents() {
        assert_eq!(
            error_code(b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>").as_deref(),
            Some("NoSuchKey")
        );
        assert_eq!(error_code(b"<Error></Error>"), None);
    }
}
