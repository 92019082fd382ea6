//! Who may call the COS endpoint and how requests find their bucket: SigV4 secret keys from the
//! simulator's [`Keys`] (configured keys and CAM role temporary keys, whose token is checked
//! too), injected faults per S3 operation, and virtual-hosted-style host names. s3s verifies the
//! signatures; this module only supplies keys and decides.

use std::sync::{Arc, Mutex};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use super::listing::percent_decode;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::keys::{KeyRefusal, Keys};

/// Set by the access check to the operation a request resolved to, for the counters.
#[derive(Debug, Clone, Default)]
pub struct OpSlot(Arc<Mutex<Option<String>>>);

impl OpSlot {
    pub fn set(&self, op: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(op.to_owned());
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn refusal(secret_id: &str, refusal: KeyRefusal) -> S3Error {
    match refusal {
        KeyRefusal::Unknown => s3_error!(
            InvalidAccessKeyId,
            "The access key ID {secret_id} is not one the simulator accepts."
        ),
        KeyRefusal::Expired => {
            s3_error!(ExpiredToken, "The temporary key {secret_id} has expired.")
        }
        KeyRefusal::TokenMismatch => s3_error!(
            InvalidToken,
            "x-amz-security-token is missing or is not the token of temporary key {secret_id}."
        ),
    }
}

/// The secret keys s3s checks SigV4 signatures with.
#[derive(Debug)]
pub struct CosAuth {
    pub keys: Arc<Keys>,
}

#[async_trait::async_trait]
impl S3Auth for CosAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.keys
            .signing_key(access_key)
            .map(SecretKey::from)
            .map_err(|r| refusal(access_key, r))
    }
}

/// Runs after the signature is verified and the operation is known, before it runs.
#[derive(Debug)]
pub struct CosAccess {
    pub keys: Arc<Keys>,
    pub faults: Arc<Faults>,
}

/// The session token of a request: the header, or the query parameter of a presigned URL.
fn security_token(cx: &S3AccessContext<'_>) -> Option<String> {
    if let Some(value) = cx.headers().get("x-amz-security-token") {
        return value.to_str().ok().map(str::to_owned);
    }
    cx.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.eq_ignore_ascii_case("X-Amz-Security-Token")
            .then(|| percent_decode(value))
            .flatten()
    })
}

/// An injected fault as S3 reports it: 503 for throttling, 403 for AccessDenied, else 500.
pub fn injected(error: ApiError) -> S3Error {
    let code = match error.code.as_str() {
        "RequestLimitExceeded" => "SlowDown",
        code => code,
    };
    let status = match code {
        "SlowDown" => http::StatusCode::SERVICE_UNAVAILABLE,
        "AccessDenied" => http::StatusCode::FORBIDDEN,
        _ => http::StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    let mut e = S3Error::with_message(code, error.message);
    e.set_status_code(status);
    e
}

#[async_trait::async_trait]
impl S3Access for CosAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            slot.set(&op);
        }
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(
                AccessDenied,
                "COS needs a signed request; anonymous access is refused."
            ));
        };
        let access_key = credentials.access_key.clone();
        let token = security_token(cx);
        self.keys
            .check_token(&access_key, token.as_deref())
            .map_err(|r| refusal(&access_key, r))?;
        // Like the cloud API: judged on arrival, answered after the delay.
        let admitted = self.faults.check(&op);
        let delay = self.faults.delay(&op);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        admitted.map_err(injected)
    }
}

/// Virtual-hosted-style requests: `<bucket>.cos.<region>.myqcloud.com`, or `<bucket>.<anything>`
/// when `<bucket>` is a bucket served here. Other hosts (addresses, `localhost`) are path style.
#[derive(Debug)]
pub struct CosHost {
    pub buckets: Vec<String>,
}

impl S3Host for CosHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        if let Some((first, rest)) = name.split_once('.') {
            let cos_domain = rest.starts_with("cos.") && rest.ends_with(".myqcloud.com");
            if cos_domain || self.buckets.iter().any(|b| b == first) {
                return Ok(VirtualHost::new(host).with_bucket(first));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_their_bucket() {
        let hosts = CosHost {
            buckets: vec!["sim-1250000000".into()],
        };
        let bucket = |host: &str| {
            hosts
                .parse_host_header(host)
                .unwrap()
                .bucket()
                .map(str::to_owned)
        };
        assert_eq!(
            bucket("other-1250000000.cos.ap-guangzhou.myqcloud.com").as_deref(),
            Some("other-1250000000")
        );
        assert_eq!(
            bucket("sim-1250000000.localhost:9000").as_deref(),
            Some("sim-1250000000")
        );
        assert_eq!(bucket("localhost:9000"), None);
        assert_eq!(bucket("cos.ap-guangzhou.myqcloud.com"), None);
        assert_eq!(bucket("unknown.example.com"), None);
    }

    #[test]
    fn injected_faults_get_s3_statuses() {
        let status = |code: &str| {
            injected(ApiError::new(code, "injected"))
                .status_code()
                .map(|s| s.as_u16())
        };
        assert_eq!(status("SlowDown"), Some(503));
        assert_eq!(status("RequestLimitExceeded"), Some(503));
        assert_eq!(status("AccessDenied"), Some(403));
        assert_eq!(status("InternalError"), Some(500));
        assert_eq!(status("NoSuchKey"), Some(500));
        let e = injected(ApiError::new("MyOwnCode", "injected"));
        assert_eq!(e.code().as_str(), "MyOwnCode");
        let e = injected(ApiError::new("RequestLimitExceeded", "injected"));
        assert_eq!(e.code(), &S3ErrorCode::SlowDown);
    }
}
