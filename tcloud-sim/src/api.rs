//! The TencentCloud API v3 front door: header checks, signature verification, fault injection,
//! dispatch of `X-TC-Action` to the service named in the signature's credential scope, and the
//! `{"Response": ...}` envelope. Services (CVM, CBS, CFS) plug in through
//! [`CloudService`](crate::service::CloudService); the unsigned test control plane for the
//! counters and the fault rules is [`control`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::signature::{parse_authorization, verify};
use crate::sim::Sim;
use crate::state::unix_now;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                "MissingParameter",
                format!("The request is missing a required parameter `{name}`."),
            )
        })
}

/// `POST /`: one API call.
pub async fn handle(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = crate::state::random_id("", 32);
    let action = headers
        .get("x-tc-action")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let result = process(&sim, &headers, &body).await;
    sim.stats
        .record(if action.is_empty() { "-" } else { &action }, &result);
    let response = match result {
        Ok(mut value) => {
            if let Value::Object(map) = &mut value {
                map.insert("RequestId".into(), Value::String(request_id));
            }
            json!({ "Response": value })
        }
        Err(e) => {
            tracing::debug!(action, code = %e.code, message = %e.message, "api error");
            json!({ "Response": { "Error": { "Code": e.code, "Message": e.message }, "RequestId": request_id } })
        }
    };
    axum::Json(response).into_response()
}

async fn process(sim: &Sim, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let action = header(headers, "x-tc-action")?;
    let version = header(headers, "x-tc-version")?;
    let timestamp_text = header(headers, "x-tc-timestamp")?;
    let authorization = header(headers, "authorization")?;
    header(headers, "content-type")?;
    let timestamp: i64 = timestamp_text.parse().map_err(|_| {
        ApiError::invalid_value(format!(
            "X-TC-Timestamp {timestamp_text:?} is not a Unix time"
        ))
    })?;
    let auth = parse_authorization(authorization)?;
    let skew = (unix_now() - timestamp).abs();
    if skew > sim.config.max_clock_skew_secs {
        return Err(ApiError::new(
            "AuthFailure.SignatureExpire",
            format!(
                "The signature expired: X-TC-Timestamp {timestamp} is {skew} s from the server time, more than {} s.",
                sim.config.max_clock_skew_secs
            ),
        ));
    }
    let token = headers.get("x-tc-token").and_then(|v| v.to_str().ok());
    let secret_key = sim.secret_key_for(auth.secret_id, token)?;
    verify(&auth, headers, body, timestamp, &secret_key)?;

    let region = header(headers, "x-tc-region")?;
    if region != sim.config.region {
        return Err(ApiError::new(
            "UnsupportedRegion",
            format!(
                "Region {region} is not served here; this simulator serves {}.",
                sim.config.region
            ),
        ));
    }
    let service = sim.services.get(auth.service).ok_or_else(|| {
        ApiError::new(
            "InvalidAction",
            format!("Service `{}` does not exist.", auth.service),
        )
    })?;
    if version != service.version() {
        return Err(ApiError::new(
            "NoSuchVersion",
            format!(
                "Version {version} of {} does not exist; use {}.",
                service.name(),
                service.version()
            ),
        ));
    }
    // Limits are judged on arrival; the answer, failed or not, comes after the delay.
    let admitted = sim.faults.check(action);
    let delay = sim.config.latency + sim.faults.delay(action);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    admitted?;
    let params: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new("InvalidParameter", format!("The body is not JSON: {e}")))?;
    if !params.is_object() {
        return Err(ApiError::new(
            "InvalidParameter",
            "The body must be a JSON object.",
        ));
    }
    service.call(action, params).await.map_err(|e| {
        e.unwrap_or_else(|| {
            ApiError::new(
                "InvalidAction",
                format!("The requested action `{action}` does not exist."),
            )
        })
    })
}

/// Control plane for tests and benchmarks, unsigned, on the same loopback listener.
pub mod control {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use axum::extract::State;
    use serde::Serialize;

    use crate::faults::FaultRule;
    use crate::sim::Sim;
    use crate::stats::ActionStats;

    /// `GET /_sim/stats`: the cloud API's counters by action, and the COS endpoint's by S3
    /// operation under `cos`.
    #[derive(Debug, Serialize)]
    pub struct StatsView {
        #[serde(flatten)]
        pub actions: BTreeMap<String, ActionStats>,
        pub cos: BTreeMap<String, crate::cos::OpStats>,
    }

    pub async fn get_stats(State(sim): State<Arc<Sim>>) -> axum::Json<StatsView> {
        axum::Json(StatsView {
            actions: sim.stats.snapshot(),
            cos: sim.cos.stats().snapshot(),
        })
    }

    pub async fn reset_stats(State(sim): State<Arc<Sim>>) -> http::StatusCode {
        sim.stats.reset();
        sim.cos.stats().reset();
        http::StatusCode::NO_CONTENT
    }

    pub async fn get_faults(State(sim): State<Arc<Sim>>) -> axum::Json<Vec<FaultRule>> {
        axum::Json(sim.faults.rules())
    }

    pub async fn put_faults(
        State(sim): State<Arc<Sim>>,
        axum::Json(rules): axum::Json<Vec<FaultRule>>,
    ) -> http::StatusCode {
        sim.faults.replace(rules);
        http::StatusCode::NO_CONTENT
    }
}
