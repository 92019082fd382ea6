//! The transport of the object client: addressing (virtual-hosted or path style), signing every
//! attempt afresh, and retries. The S3 operations are in `operations` and `bulk`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use sha2::{Digest, Sha256};

use super::config::{Endpoint, ObjectConfig, ObjectCredentials, resolve};
use super::error::{ObjectError, ObjectErrorKind};
use super::sigv4::{self, SignRequest};
use super::xml;
use tcloud::RetryPolicy;
use tcloud::client::http_client_keeping;
use tcloud::time::unix_now;

/// The longest single backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The S3 client of one bucket. Cloning is cheap and shares the connection pool and credentials.
#[derive(Debug, Clone)]
pub struct ObjectClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: ObjectConfig,
    endpoint: Endpoint,
    credentials: RwLock<Arc<ObjectCredentials>>,
    /// What the server's answers told of the credentials.
    auth: Arc<crate::auth::AuthWatch>,
}

/// One S3 request, before addressing and signing.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub op: &'static str,
    pub method: Method,
    /// The object addressed; `None` for bucket requests.
    pub key: Option<&'a str>,
    /// What error messages name after the bucket when `key` is `None` (a prefix).
    pub subject: Option<&'a str>,
    pub query: Vec<(&'static str, String)>,
    /// Extra headers, lowercase names; all signed.
    pub headers: Vec<(&'static str, String)>,
    /// `None`: no body at all (GET, HEAD, DELETE).
    pub body: Option<Bytes>,
    /// Send `UNSIGNED-PAYLOAD` instead of the body's SHA-256.
    pub unsigned_payload: bool,
    /// Statuses besides 2xx that the operation interprets itself.
    pub accept: &'static [u16],
    /// Treat a 200 whose body is an `<Error>` document as that error.
    pub error_in_200: bool,
    /// The bytes of the object a ranged GET asks for: the answer's body holds at most these,
    /// however much the server sends (see [`collect_range`]).
    pub range: Option<std::ops::Range<u64>>,
}

impl<'a> Call<'a> {
    pub fn new(op: &'static str, method: Method, key: Option<&'a str>) -> Self {
        Call {
            op,
            method,
            key,
            subject: None,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            unsigned_payload: false,
            accept: &[],
            error_in_200: false,
            range: None,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// A successful (or accepted) answer, read whole (for a ranged GET, read to the range's end).
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Where one request goes, and the path and query it is signed with.
#[derive(Debug)]
struct Target {
    url: reqwest::Url,
    host: String,
    path: String,
    query: String,
}

impl ObjectClient {
    pub fn new(config: ObjectConfig, credentials: ObjectCredentials) -> Result<Self, ObjectError> {
        let endpoint = resolve(&config)?;
        let http = http_client_keeping(config.timeout, config.idle_connections).map_err(|e| {
            ObjectError::Config {
                detail: format!("HTTP client: {e}"),
            }
        })?;
        Ok(ObjectClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                credentials: RwLock::new(Arc::new(credentials.trimmed())),
                auth: Arc::default(),
                config,
            }),
        })
    }

    /// Replaces the credentials for the requests that start from now on (temporary keys are
    /// refreshed before they expire).
    pub fn set_credentials(&self, credentials: ObjectCredentials) {
        let mut current = self
            .inner
            .credentials
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Arc::new(credentials.trimmed());
    }

    /// What the server's answers told of the credentials: the last refusal, and whether the most
    /// recent answer was one.
    pub fn auth_watch(&self) -> Arc<crate::auth::AuthWatch> {
        Arc::clone(&self.inner.auth)
    }

    fn credentials(&self) -> Arc<ObjectCredentials> {
        self.inner
            .credentials
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn bucket(&self) -> &str {
        &self.inner.config.bucket
    }

    /// The SigV4 region in use (given or derived).
    pub fn region(&self) -> &str {
        &self.inner.endpoint.region
    }

    /// Whether requests use path-style addressing (given or forced by the endpoint or bucket).
    pub fn is_path_style(&self) -> bool {
        self.inner.endpoint.path_style
    }

    pub fn config(&self) -> &ObjectConfig {
        &self.inner.config
    }

    /// The longest one call can take, its retries included: the timeout of every attempt and the
    /// longest backoff between each two. Whatever a call sends reaches the server within this
    /// of its start (a CreateMultipartUpload may start an upload with any of its attempts).
    pub fn call_time_limit(&self) -> Duration {
        let config = &self.inner.config;
        let attempts = config.max_attempts.max(1);
        config
            .timeout
            .saturating_mul(attempts)
            .saturating_add(MAX_BACKOFF.saturating_mul(attempts - 1))
    }

    /// `bucket` or `bucket/key`, for error messages.
    pub(super) fn resource(&self, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("{}/{key}", self.inner.config.bucket),
            None => self.inner.config.bucket.clone(),
        }
    }

    fn call_resource(&self, call: &Call<'_>) -> String {
        self.resource(call.key.or(call.subject))
    }

    /// The URL, `Host` and signed path and query of a request.
    fn target(&self, call: &Call<'_>) -> Result<Target, ObjectError> {
        let inner = &self.inner;
        let bucket = &inner.config.bucket;
        let mut path = String::from("/");
        if inner.endpoint.path_style {
            path.push_str(&sigv4::uri_encode(bucket, false));
        }
        if let Some(key) = call.key {
            if key.is_empty() {
                return Err(self.invalid(call, "the key is empty".into()));
            }
            if inner.endpoint.path_style {
                path.push('/');
            }
            path.push_str(&sigv4::uri_encode(key, true));
        }
        let host = if inner.endpoint.path_style {
            inner.endpoint.host.clone()
        } else {
            format!("{bucket}.{}", inner.endpoint.host)
        };
        let params: Vec<(&str, &str)> = call
            .query
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let query = sigv4::canonical_query(&params);
        let mut text = format!("{}://{host}{path}", inner.endpoint.scheme);
        if !query.is_empty() {
            text.push('?');
            text.push_str(&query);
        }
        let url = reqwest::Url::parse(&text)
            .map_err(|e| self.invalid(call, format!("cannot make a URL: {e}")))?;
        // URL parsing resolves `.` and `..` segments (even encoded ones): the request would go
        // to another key than the one signed and meant.
        if url.path() != path || url.query().unwrap_or_default() != query {
            return Err(self.invalid(
                call,
                "the key has a '.' or '..' segment, which a URL cannot address".into(),
            ));
        }
        Ok(Target {
            url,
            host,
            path,
            query,
        })
    }

    fn invalid(&self, call: &Call<'_>, detail: String) -> ObjectError {
        ObjectError::InvalidArgument {
            op: call.op,
            resource: self.call_resource(call),
            detail,
        }
    }

    pub(super) fn decode_error(&self, call: &Call<'_>, status: u16, detail: String) -> ObjectError {
        ObjectError::Decode {
            op: call.op,
            resource: self.call_resource(call),
            status,
            detail,
        }
    }

    /// Sends `call`, retrying what is [`ObjectErrorKind::Unavailable`] up to `max_attempts` times.
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<Answer, ObjectError> {
        self.send_counted(call).await.map(|(answer, _)| answer)
    }

    /// [`ObjectClient::send`], also saying how many attempts it took: more than one, and an
    /// earlier attempt may have been carried out though its answer never came.
    pub(super) async fn send_counted(&self, call: &Call<'_>) -> Result<(Answer, u32), ObjectError> {
        let result = self.send_counted_unobserved(call).await;
        self.inner.auth.observe(call.op, &result);
        result
    }

    async fn send_counted_unobserved(&self, call: &Call<'_>) -> Result<(Answer, u32), ObjectError> {
        let target = self.target(call)?;
        let payload_hash = match (&call.body, call.unsigned_payload) {
            (_, true) => sigv4::UNSIGNED_PAYLOAD.to_owned(),
            (None, false) => sigv4::EMPTY_SHA256.to_owned(),
            (Some(body), false) => hex::encode(Sha256::digest(body)),
        };
        let config = &self.inner.config;
        let policy = RetryPolicy {
            base: config.retry_base,
            max: MAX_BACKOFF,
            max_attempts: config.max_attempts.max(1),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result =
                tokio::time::timeout(config.timeout, self.attempt(call, &target, &payload_hash))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ObjectError::Timeout {
                            op: call.op,
                            resource: self.call_resource(call),
                            timeout: config.timeout,
                        })
                    });
            let error = match result {
                Ok(answer) => return Ok((answer, attempt)),
                Err(error) => error,
            };
            if error.kind() != ObjectErrorKind::Unavailable || attempt >= policy.max_attempts {
                return Err(error);
            }
            let backoff = policy.backoff(attempt);
            tracing::debug!(op = call.op, attempt, ?backoff, error = %error, "retrying object request");
            tokio::time::sleep(backoff).await;
        }
    }

    /// One signed exchange.
    async fn attempt(
        &self,
        call: &Call<'_>,
        target: &Target,
        payload_hash: &str,
    ) -> Result<Answer, ObjectError> {
        let credentials = self.credentials();
        let amz_date = sigv4::amz_date(unix_now());
        let mut signed: Vec<(&str, &str)> = vec![
            ("host", &target.host),
            ("x-amz-content-sha256", payload_hash),
            ("x-amz-date", &amz_date),
        ];
        if let Some(token) = &credentials.token {
            signed.push(("x-amz-security-token", token));
        }
        signed.extend(
            call.headers
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
        let authorization = sigv4::authorization(&SignRequest {
            method: call.method.as_str(),
            canonical_uri: &target.path,
            canonical_query: &target.query,
            headers: &signed,
            payload_hash,
            amz_date: &amz_date,
            region: &self.inner.endpoint.region,
            access_key_id: &credentials.secret_id,
            secret_key: &credentials.secret_key,
        });
        let mut headers = HeaderMap::with_capacity(signed.len() + 1);
        for (name, value) in signed
            .iter()
            .copied()
            .chain([("authorization", authorization.as_str())])
        {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.invalid(call, format!("bad header name {name:?}")))?;
            // The message names the header only: its value may be a credential.
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                self.invalid(
                    call,
                    format!("header {name} has characters HTTP cannot carry"),
                )
            })?;
            if matches!(name, "authorization" | "x-amz-security-token") {
                value.set_sensitive(true);
            }
            headers.insert(header, value);
        }
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), target.url.clone())
            .headers(headers);
        if let Some(body) = &call.body {
            request = request
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(body.clone());
        }
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                ObjectError::Timeout {
                    op: call.op,
                    resource: self.call_resource(call),
                    timeout: self.inner.config.timeout,
                }
            } else {
                ObjectError::Transport {
                    op: call.op,
                    resource: self.call_resource(call),
                    source,
                }
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match &call.range {
            None => collect_body(response).await,
            Some(range) => collect_range(response, status, range).await,
        }
        .map_err(transport)?;
        if (200..300).contains(&status) || call.accept.contains(&status) {
            if call.error_in_200 && status == 200 && xml::parse_error(&body).is_some() {
                return Err(self.service_error(call, status, &headers, &body));
            }
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        Err(self.service_error(call, status, &headers, &body))
    }

    fn service_error(
        &self,
        call: &Call<'_>,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ObjectError {
        let parsed = xml::parse_error(body);
        let header_id = ["x-amz-request-id", "x-cos-request-id"]
            .iter()
            .find_map(|name| headers.get(*name)?.to_str().ok())
            .unwrap_or_default();
        let (code, message, request_id) = match parsed {
            Some(error) => {
                let request_id = if error.request_id.is_empty() {
                    header_id.to_owned()
                } else {
                    error.request_id
                };
                (error.code, error.message, request_id)
            }
            None if body.is_empty() => (String::new(), String::new(), header_id.to_owned()),
            None => (String::new(), xml::snippet(body), header_id.to_owned()),
        };
        ObjectError::Service {
            op: call.op,
            resource: self.call_resource(call),
            status,
            code,
            message,
            request_id,
        }
    }
}

/// Most bytes preallocated for a body from its `Content-Length` (a longer body still arrives whole).
const MAX_PREALLOCATED: u64 = 64 * 1024 * 1024;

/// The body, gathered into one buffer sized from `Content-Length` as it arrives: a ranged GET
/// holds its range once, not its chunks and then a copy of them.
async fn collect_body(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let expected = response.content_length().unwrap_or(0).min(MAX_PREALLOCATED);
    let Some(first) = response.chunk().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = response.chunk().await? else {
        return Ok(first);
    };
    let capacity = usize::try_from(expected)
        .unwrap_or(0)
        .max(first.len() + second.len());
    let mut body = BytesMut::with_capacity(capacity);
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    drop((first, second));
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The most of an error document (or any answer but 200 and 206) a ranged GET reads.
const MAX_RANGED_OTHER_BODY: u64 = 64 * 1024;

/// The body of an answer to a ranged GET for `range`, read only as far as the range reaches, so a
/// server that sends more never makes us hold more: a 206 is cut at the range's length; a 200
/// (a server that ignored `Range` and sends the whole object) gives bytes `range` of it, the
/// bytes before skipped as they arrive; anything else (an error document) at most
/// [`MAX_RANGED_OTHER_BODY`]. The rest of the body is not read: the connection is dropped.
async fn collect_range(
    mut response: reqwest::Response,
    status: u16,
    range: &std::ops::Range<u64>,
) -> Result<Bytes, reqwest::Error> {
    let len = range.end.saturating_sub(range.start);
    let (mut skip, want) = match status {
        206 => (0, len),
        200 => (range.start, len),
        _ => (0, MAX_RANGED_OTHER_BODY),
    };
    let expected = response
        .content_length()
        .unwrap_or(0)
        .saturating_sub(skip)
        .min(want)
        .min(MAX_PREALLOCATED);
    let mut body = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    while (body.len() as u64) < want {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let chunk_len = chunk.len() as u64;
        if skip >= chunk_len {
            skip -= chunk_len;
            continue;
        }
        let from = usize::try_from(skip).unwrap_or(usize::MAX);
        skip = 0;
        let room = want - body.len() as u64;
        let to = chunk
            .len()
            .min(from.saturating_add(usize::try_from(room).unwrap_or(usize::MAX)));
        body.extend_from_slice(&chunk[from..to]);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{Canned, TestServer, test_client, verify_signature};
    use super::*;

    fn client(endpoint: &str, bucket: &str, region: &str, path_style: bool) -> ObjectClient {
        let mut config = ObjectConfig::new(endpoint, bucket);
        config.region = region.to_owned();
        config.path_style = path_style;
        ObjectClient::new(config, ObjectCredentials::new("id", "key", None)).unwrap()
    }

    #[test]
    fn urls_put_the_bucket_in_the_host_or_the_path() {
        // endpoint, path style asked => URL of key "a b" in bucket "data-1250000000"
        let cases = [
            (
                "http://cos.ap-guangzhou.myqcloud.com",
                false,
                "http://data-1250000000.cos.ap-guangzhou.myqcloud.com/a%20b",
            ),
            (
                "cos.ap-guangzhou.myqcloud.com",
                false,
                "https://data-1250000000.cos.ap-guangzhou.myqcloud.com/a%20b",
            ),
            (
                "http://cos.ap-guangzhou.myqcloud.com",
                true,
                "http://cos.ap-guangzhou.myqcloud.com/data-1250000000/a%20b",
            ),
            (
                "http://127.0.0.1:9000",
                false,
                "http://127.0.0.1:9000/data-1250000000/a%20b",
            ),
            (
                "http://[::1]:9000",
                false,
                "http://[::1]:9000/data-1250000000/a%20b",
            ),
            (
                "https://s3.example.com:8443",
                false,
                "https://data-1250000000.s3.example.com:8443/a%20b",
            ),
        ];
        for (endpoint, path_style, want_url) in cases {
            let c = client(endpoint, "data-1250000000", "", path_style);
            let call = Call::new("GetObject", Method::GET, Some("a b"));
            let target = c.target(&call).unwrap();
            assert_eq!(target.url.as_str(), want_url, "{endpoint}");
            assert_eq!(
                format!("{}://{}{}", target.url.scheme(), target.host, target.path),
                want_url,
                "the signed host and path are the sent ones"
            );
        }
        let bucket_call = Call::new("HeadBucket", Method::HEAD, None);
        let virtual_hosted = client("http://cos.ap-guangzhou.myqcloud.com", "b-1", "", false);
        assert_eq!(virtual_hosted.target(&bucket_call).unwrap().path, "/");
        assert_eq!(virtual_hosted.region(), "ap-guangzhou");
        assert!(!virtual_hosted.is_path_style());
        let path_style = client("http://127.0.0.1:1", "b-1", "", false);
        assert_eq!(path_style.target(&bucket_call).unwrap().path, "/b-1");
        assert!(path_style.is_path_style());
    }

    #[test]
    fn a_call_lasts_at_most_every_attempt_and_backoff() {
        let c = client("http://127.0.0.1:1", "b", "", false);
        // The defaults: 5 attempts of 30 s, 4 backoffs of at most 5 s.
        assert_eq!(c.call_time_limit(), Duration::from_secs(170));
        let mut config = ObjectConfig::new("http://127.0.0.1:1", "b");
        config.timeout = Duration::from_secs(2);
        config.max_attempts = 1;
        let one = ObjectClient::new(config, ObjectCredentials::new("id", "key", None)).unwrap();
        assert_eq!(one.call_time_limit(), Duration::from_secs(2));
    }

    #[test]
    fn keys_a_url_cannot_address_are_refused() {
        let c = client("http://127.0.0.1:1", "b", "", false);
        for key in ["", ".", "..", "a/../b", "a/./b", "a/..", "%2e%2e/x"] {
            let call = Call::new("GetObject", Method::GET, Some(key));
            let target = c.target(&call);
            // "%2e%2e" is a key of its own (encoded to %252e%252e), so it is addressable.
            if key == "%2e%2e/x" {
                assert_eq!(target.unwrap().path, "/b/%252e%252e/x");
                continue;
            }
            let error = target.unwrap_err();
            assert_eq!(error.kind(), ObjectErrorKind::Invalid, "{key:?}");
        }
        for key in ["a/.b", "..a", "a//b", "/lead", "trail/"] {
            let call = Call::new("GetObject", Method::GET, Some(key));
            assert!(c.target(&call).is_ok(), "{key:?}");
        }
    }

    /// The server recomputes every signature from the request as it arrived: what we send is
    /// exactly what we signed, for awkward keys too.
    #[tokio::test]
    async fn requests_are_signed_as_the_server_receives_them() {
        let server = TestServer::start(|_| Canned::status(200).header("etag", "\"e\"")).await;
        let c = test_client(&server, |_| {});
        c.set_credentials(ObjectCredentials::new(
            "AKIDnew",
            "newsecret",
            Some("tok/en+=="),
        ));
        let keys = [
            "a b+c%d#e?f ü/~x.txt",
            "dir/",
            "x&y=z;w",
            "\u{1}ctl",
            "a//b",
        ];
        for key in keys {
            c.put_object(key, Bytes::from_static(b"data"))
                .await
                .unwrap();
            c.get_object_range(key, 0..4, Some("e")).await.unwrap();
        }
        c.list_objects_v2("p q/", Some("/"), Some("tok+/="), Some(10))
            .await
            .unwrap_err(); // the empty body is no listing; the request still went out
        let requests = server.requests();
        assert_eq!(requests.len(), keys.len() * 2 + 1);
        for request in &requests {
            verify_signature(request, "newsecret", "us-east-1");
            assert_eq!(request.header("x-amz-security-token"), Some("tok/en+=="));
            assert!(
                request
                    .signed_headers()
                    .contains(&"x-amz-security-token".to_owned())
            );
            assert!(request.header("x-amz-date").is_some_and(|d| d.len() == 16));
            assert!(
                request
                    .header("authorization")
                    .unwrap()
                    .contains("AKIDnew/")
            );
        }
        assert_eq!(requests[0].method, "PUT");
        assert_eq!(
            requests[0].path,
            "/test-bucket/a%20b%2Bc%25d%23e%3Ff%20%C3%BC/~x.txt"
        );
        assert_eq!(
            requests[0].header("x-amz-content-sha256"),
            Some("UNSIGNED-PAYLOAD")
        );
        assert_eq!(requests[0].body.as_ref(), b"data");
        assert_eq!(requests[1].header("range"), Some("bytes=0-3"));
        assert_eq!(requests[1].header("if-match"), Some("\"e\""));
        assert_eq!(
            requests[1].header("x-amz-content-sha256"),
            Some(sigv4::EMPTY_SHA256)
        );
        let list = requests.last().unwrap();
        assert_eq!(list.path, "/test-bucket");
        assert_eq!(
            list.query,
            "continuation-token=tok%2B%2F%3D&delimiter=%2F&encoding-type=url&list-type=2&max-keys=10&prefix=p%20q%2F"
        );
    }

    #[tokio::test]
    async fn retries_503_slowdown_and_500_then_succeeds() {
        let server = TestServer::start(|request| match request.index {
            0 => Canned::xml(503, "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
            1 => Canned::status(500),
            _ => Canned::status(200).header("etag", "\"done\""),
        })
        .await;
        let c = test_client(&server, |_| {});
        let etag = c.put_object("k", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(etag, "done");
        let requests = server.requests();
        assert_eq!(requests.len(), 3);
        for request in &requests {
            assert_eq!(request.body.as_ref(), b"x", "the body is sent again");
        }
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let server = TestServer::start(|_| {
            Canned::xml(503, "<Error><Code>SlowDown</Code><Message>slow</Message><RequestId>r1</RequestId></Error>")
        })
        .await;
        let c = test_client(&server, |config| config.max_attempts = 3);
        let error = c.head_bucket().await.unwrap_err();
        assert_eq!(server.requests().len(), 3);
        assert_eq!(error.kind(), ObjectErrorKind::Unavailable);
        assert_eq!(error.status(), Some(503));
        // HEAD answers carry no body: the code is unknown.
        assert_eq!(error.code(), None);
        let error = c.delete_objects(&["a".to_owned()]).await.unwrap_err();
        assert_eq!(error.code(), Some("SlowDown"));
        assert_eq!(error.request_id(), Some("r1"));
        assert_eq!(server.requests().len(), 6);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let server = TestServer::start(|request| match request.index {
            0 => Canned::xml(
                403,
                "<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>",
            ),
            _ => Canned::xml(
                400,
                "<Error><Code>InvalidArgument</Code><Message>bad</Message></Error>",
            ),
        })
        .await;
        let c = test_client(&server, |_| {});
        let error = c.put_object("k", Bytes::new()).await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Forbidden);
        assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
        let error = c.put_object("k", Bytes::new()).await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
        assert_eq!(server.requests().len(), 2);
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[tokio::test]
    async fn a_slow_attempt_times_out_and_is_retried() {
        let server = TestServer::start(|request| match request.index {
            0 => Canned::status(200).delay(Duration::from_secs(5)),
            _ => Canned::status(200),
        })
        .await;
        let c = test_client(&server, |config| {
            config.timeout = Duration::from_millis(300)
        });
        c.head_bucket().await.unwrap();
        assert_eq!(server.requests().len(), 2);

        let c = test_client(&server, |config| {
            config.timeout = Duration::from_millis(300);
            config.max_attempts = 1;
        });
        server.reset(|_| Canned::status(200).delay(Duration::from_secs(5)));
        let error = c.head_bucket().await.unwrap_err();
        assert!(matches!(error, ObjectError::Timeout { .. }), "{error:?}");
        assert_eq!(error.kind(), ObjectErrorKind::Unavailable);
    }

    #[tokio::test]
    async fn connection_errors_are_retried_then_reported() {
        // A port that was just free: nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut config = ObjectConfig::new(&format!("http://127.0.0.1:{port}"), "b");
        config.max_attempts = 2;
        config.retry_base = Duration::from_millis(1);
        let c = ObjectClient::new(
            config,
            ObjectCredentials::new("id", "secretkey", Some("tok")),
        )
        .unwrap();
        let error = c.head_object("k").await.unwrap_err();
        assert!(matches!(error, ObjectError::Transport { .. }), "{error:?}");
        assert_eq!(error.kind(), ObjectErrorKind::Unavailable);
        let chain = format!("{error:?} {}", std::error::Error::source(&error).unwrap());
        assert!(
            !chain.contains("secretkey") && !chain.contains("tok\""),
            "{chain}"
        );
    }
}
