//! The signed, retrying JSON-over-HTTPS transport of TencentCloud API v3.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::credentials::CredentialSource;
use crate::error::{CloudError, ErrorKind};
pub use crate::https::{http_client, http_client_keeping};
use crate::signing::{self, SignInput};
use crate::time::unix_now;

pub const DEFAULT_ENDPOINT: &str = "https://{service}.tencentcloudapi.com";
const CONTENT_TYPE: &str = "application/json";

/// One API product: its short name (the credential scope) and API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub version: &'static str,
}

/// How failed attempts are retried. Only [`ErrorKind::is_retried_by_client`] kinds are retried,
/// and never past the caller's deadline.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first backoff; it doubles per attempt.
    pub base: Duration,
    /// The largest single backoff.
    pub max: Duration,
    /// Attempts at most for transient failures (throttling is bounded by the deadline alone).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(3),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`: exponential, capped, with "equal jitter" (half fixed,
    /// half random) so synchronized callers spread out but never retry at once.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max);
        let half = cap / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// URL template: `{service}` and `{region}` are substituted. Without `{service}` every product
    /// is sent to the same URL (the simulator routes by the signature's credential scope).
    pub endpoint: String,
    pub region: String,
    /// Timeout of one HTTP attempt (shortened to what is left of the deadline).
    pub attempt_timeout: Duration,
    /// Deadline of a call whose caller gives none.
    pub default_deadline: Duration,
    pub retry: RetryPolicy,
    /// Calls per second per action this client sends at most (0 = unpaced). The cloud throttles
    /// each action per account (20/s by default for CBS); pacing below it turns bounced calls into
    /// short local waits.
    pub rate_limit_per_action: f64,
}

/// The default pace: 10% under CBS's documented 20 calls per second per action.
pub const DEFAULT_RATE_LIMIT: f64 = 18.0;

impl CloudConfig {
    pub fn new(endpoint: &str, region: &str) -> Self {
        CloudConfig {
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            attempt_timeout: Duration::from_secs(10),
            default_deadline: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            rate_limit_per_action: DEFAULT_RATE_LIMIT,
        }
    }
}

/// Counters of what the client did, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub calls: AtomicU64,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    /// Calls that waited for their slot in the client's own pacing.
    pub paced: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    config: Arc<CloudConfig>,
    credentials: Arc<CredentialSource>,
    stats: Arc<ClientStats>,
    pacer: Arc<Pacer>,
    metrics: Arc<metrics_registry::Metrics>,
}

/// Per-action pacing with the generic cell rate algorithm: each call reserves the next slot under
/// a lock, so waiters are served in arrival order and none starves. Bursts of one second's worth
/// pass at once, like the cloud's own limiter.
#[derive(Debug, Default)]
struct Pacer {
    /// Per action: the theoretical arrival time of the next call.
    next: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl Pacer {
    /// When the next call of `action` may go, reserving that slot.
    fn reserve(&self, action: &str, rate: f64) -> Option<Instant> {
        if rate <= 0.0 {
            return None;
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        let tolerance = interval.mul_f64((rate - 1.0).max(0.0));
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let tat = next.get(action).copied().unwrap_or(now).max(now);
        next.insert(action.to_owned(), tat + interval);
        let allowed = tat.checked_sub(tolerance).unwrap_or(now);
        (allowed > now).then_some(allowed)
    }
}

impl CloudClient {
    pub fn new(config: CloudConfig, credentials: CredentialSource) -> Result<Self, reqwest::Error> {
        Ok(CloudClient {
            http: http_client(config.attempt_timeout)?,
            config: Arc::new(config),
            credentials: Arc::new(credentials),
            stats: Arc::new(ClientStats::default()),
            pacer: Arc::new(Pacer::default()),
            metrics: Arc::default(),
        })
    }

    /// Records every call in `metrics` (by service, action and outcome; never a resource ID).
    pub fn with_metrics(mut self, metrics: Arc<metrics_registry::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn region(&self) -> &str {
        &self.config.region
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The URL and `Host` value a call to `service` goes to.
    pub fn endpoint_for(&self, service: Service) -> Result<(reqwest::Url, String), String> {
        let url = self
            .config
            .endpoint
            .replace("{service}", service.name)
            .replace("{region}", &self.config.region);
        let url = reqwest::Url::parse(&url).map_err(|e| format!("invalid endpoint {url}: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("endpoint {url} has no host"))?;
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok((url, host))
    }

    /// Calls `action` of `service`, retrying throttling and transient failures until `deadline`
    /// (or the configured default deadline when `None`).
    pub async fn call<Req, Resp>(
        &self,
        service: Service,
        action: &str,
        request: &Req,
        deadline: Option<Instant>,
    ) -> Result<Resp, CloudError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let start = Instant::now();
        let result = self.call_retrying(service, action, request, deadline).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{:?}", e.kind()),
        };
        let labels = [
            ("service", service.name),
            ("action", action),
            ("outcome", outcome.as_str()),
        ];
        self.metrics.inc(
            "tencentcloud_csi_cloud_api_calls_total",
            "Cloud API calls (after retries), by service, action and outcome.",
            &labels,
        );
        self.metrics.observe(
            "tencentcloud_csi_cloud_api_duration_seconds",
            "Cloud API call latency including retries, by service, action and outcome.",
            &labels,
            start.elapsed().as_secs_f64(),
        );
        result
    }

    async fn call_retrying<Req, Resp>(
        &self,
        service: Service,
        action: &str,
        request: &Req,
        deadline: Option<Instant>,
    ) -> Result<Resp, CloudError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let start = Instant::now();
        let deadline = deadline.unwrap_or(start + self.config.default_deadline);
        let body = serde_json::to_vec(request).map_err(|e| CloudError::Decode {
            action: action.to_owned(),
            status: 0,
            detail: format!("cannot encode the request: {e}"),
        })?;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0u32;
        let mut previous: Option<CloudError> = None;
        loop {
            attempt += 1;
            if let Some(at) = self
                .pacer
                .reserve(action, self.config.rate_limit_per_action)
            {
                if at >= deadline {
                    return Err(CloudError::DeadlineExceeded {
                        action: action.to_owned(),
                        attempts: attempt - 1,
                        elapsed: start.elapsed(),
                        last: Box::new(CloudError::Api {
                            action: action.to_owned(),
                            kind: ErrorKind::Throttled,
                            code: "ClientRateLimit".to_owned(),
                            message: format!(
                                "{action} is paced at {}/s by this client",
                                self.config.rate_limit_per_action
                            ),
                            request_id: String::new(),
                        }),
                    });
                }
                self.stats.paced.fetch_add(1, Ordering::Relaxed);
                self.metrics.inc(
                    "tencentcloud_csi_cloud_api_paced_total",
                    "Cloud API calls that waited for their slot in the client's pacing, by service and action.",
                    &[("service", service.name), ("action", action)],
                );
                tokio::time::sleep_until(at).await;
            }
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self.config.attempt_timeout.min(remaining);
            let result =
                match tokio::time::timeout(timeout, self.attempt(service, action, &body)).await {
                    Ok(result) => result,
                    Err(_) => match previous.take() {
                        // Cut short by the caller's deadline, not by our own attempt timeout: the
                        // previous failure says more about why the call did not succeed in time.
                        Some(last) if timeout < self.config.attempt_timeout => {
                            return Err(CloudError::DeadlineExceeded {
                                action: action.to_owned(),
                                attempts: attempt,
                                elapsed: start.elapsed(),
                                last: Box::new(last),
                            });
                        }
                        _ => Err(CloudError::Timeout {
                            action: action.to_owned(),
                            timeout,
                        }),
                    },
                };
            let error = match result {
                Ok(value) => {
                    return serde_json::from_value(value).map_err(|e| CloudError::Decode {
                        action: action.to_owned(),
                        status: 200,
                        detail: format!("response does not match the {action} shape: {e}"),
                    });
                }
                Err(error) => error,
            };
            if error.kind() == ErrorKind::Throttled {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                self.metrics.inc(
                    "tencentcloud_csi_cloud_api_throttled_total",
                    "Cloud API attempts refused with RequestLimitExceeded, by service and action.",
                    &[("service", service.name), ("action", action)],
                );
            }
            if !error.kind().is_retried_by_client() {
                return Err(error);
            }
            let backoff = self.config.retry.backoff(attempt);
            if Instant::now() + backoff >= deadline {
                return Err(CloudError::DeadlineExceeded {
                    action: action.to_owned(),
                    attempts: attempt,
                    elapsed: start.elapsed(),
                    last: Box::new(error),
                });
            }
            // A throttled call was never processed, so only the deadline bounds its retries; the
            // attempt cap guards against services that fail transiently forever.
            if error.kind() != ErrorKind::Throttled && attempt >= self.config.retry.max_attempts {
                return Err(error);
            }
            tracing::debug!(action, attempt, ?backoff, error = %error, "retrying cloud call");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.metrics.inc(
                "tencentcloud_csi_cloud_api_retries_total",
                "Cloud API attempts retried, by service and action.",
                &[("service", service.name), ("action", action)],
            );
            previous = Some(error);
            tokio::time::sleep(backoff).await;
        }
    }

    /// One signed HTTP exchange; returns the `Response` object on success.
    async fn attempt(
        &self,
        service: Service,
        action: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, CloudError> {
        let credentials =
            self.credentials
                .get()
                .await
                .map_err(|source| CloudError::Credentials {
                    action: action.to_owned(),
                    source,
                })?;
        let (url, host) = self
            .endpoint_for(service)
            .map_err(|detail| CloudError::Decode {
                action: action.to_owned(),
                status: 0,
                detail,
            })?;
        let timestamp = unix_now();
        let authorization = signing::authorization(&SignInput {
            service: service.name,
            host: &host,
            content_type: CONTENT_TYPE,
            payload: body,
            timestamp,
            secret_id: &credentials.secret_id,
            secret_key: &credentials.secret_key,
        });
        let mut request = self
            .http
            .post(url.clone())
            .header(http::header::HOST, &host)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(http::header::AUTHORIZATION, authorization)
            .header("X-TC-Action", action)
            .header("X-TC-Version", service.version)
            .header("X-TC-Region", &self.config.region)
            .header("X-TC-Timestamp", timestamp.to_string())
            .body(body.to_vec());
        if let Some(token) = &credentials.token {
            request = request.header("X-TC-Token", token);
        }
        let transport = |source| CloudError::Transport {
            action: action.to_owned(),
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        parse_envelope(action, status, &bytes)
    }
}

/// Reads `{"Response": {...}}`, turning `Response.Error` into [`CloudError::Api`].
fn parse_envelope(
    action: &str,
    status: u16,
    bytes: &[u8],
) -> Result<serde_json::Value, CloudError> {
    let unexpected = |detail: String| {
        let kind = if status >= 500 || status == 429 {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Other
        };
        if kind == ErrorKind::Unavailable {
            CloudError::Api {
                action: action.to_owned(),
                kind,
                code: format!("HTTP{status}"),
                message: detail,
                request_id: String::new(),
            }
        } else {
            CloudError::Decode {
                action: action.to_owned(),
                status,
                detail,
            }
        }
    };
    let mut envelope: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| {
        let snippet: String = String::from_utf8_lossy(bytes).chars().take(200).collect();
        unexpected(format!("not a JSON envelope: {snippet:?}"))
    })?;
    let Some(response) = envelope.get_mut("Response").map(serde_json::Value::take) else {
        return Err(unexpected("no Response object".into()));
    };
    let request_id = response
        .get("RequestId")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    if let Some(error) = response.get("Error") {
        let code = error
            .get("Code")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let message = error
            .get("Message")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        return Err(CloudError::Api {
            action: action.to_owned(),
            kind: ErrorKind::from_code(&code),
            code,
            message,
            request_id,
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 10,
        };
        for attempt in 1..30 {
            let cap = Duration::from_millis(100 * (1u64 << (attempt - 1).min(16)))
                .min(Duration::from_secs(1));
            for _ in 0..20 {
                let b = policy.backoff(attempt);
                assert!(
                    b >= cap / 2 && b <= cap,
                    "attempt {attempt}: {b:?} outside [{:?}, {cap:?}]",
                    cap / 2
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_admits_a_burst_then_spaces_calls_per_action() {
        let pacer = Pacer::default();
        let waits: Vec<Option<Instant>> =
            (0..8).map(|_| pacer.reserve("AttachDisks", 5.0)).collect();
        assert!(
            waits[..5].iter().all(Option::is_none),
            "one second's burst passes: {waits:?}"
        );
        let now = Instant::now();
        let later: Vec<Duration> = waits[5..].iter().map(|w| w.unwrap() - now).collect();
        assert_eq!(
            later,
            [
                Duration::from_millis(200),
                Duration::from_millis(400),
                Duration::from_millis(600)
            ]
        );
        assert!(
            pacer.reserve("DetachDisks", 5.0).is_none(),
            "actions are paced separately"
        );
        assert!(
            pacer.reserve("AttachDisks", 0.0).is_none(),
            "0 means unpaced"
        );
    }

    #[test]
    fn envelope_errors_keep_code_message_and_request_id() {
        let body = br#"{"Response":{"Error":{"Code":"InvalidDiskId.NotFound","Message":"disk-1 not found"},"RequestId":"req-9"}}"#;
        let err = parse_envelope("DescribeDisks", 200, body).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.code(), Some("InvalidDiskId.NotFound"));
        assert_eq!(
            err.to_string(),
            "DescribeDisks: InvalidDiskId.NotFound: disk-1 not found (RequestId req-9)"
        );
        let ok = parse_envelope(
            "X",
            200,
            br#"{"Response":{"TotalCount":0,"RequestId":"r"}}"#,
        )
        .unwrap();
        assert_eq!(ok["TotalCount"], 0);
        let gateway = parse_envelope("X", 502, b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(gateway.kind(), ErrorKind::Unavailable);
        let garbage = parse_envelope("X", 200, b"nonsense").unwrap_err();
        assert_eq!(garbage.kind(), ErrorKind::Other);
    }
}
