//! A scriptable HTTP server on 127.0.0.1 for the object client's tests: it records every request
//! as it arrived on the wire and answers what the test's responder returns. Tests only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;

use super::sigv4::{self, SignRequest};
use super::{ObjectClient, ObjectConfig, ObjectCredentials};

pub const TEST_BUCKET: &str = "test-bucket";
pub const TEST_SECRET: &str = "test-secret-key";

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// 0 for the first request since the start (or the last reset).
    pub index: usize,
    pub method: String,
    /// The path exactly as sent (still percent-encoded).
    pub path: String,
    /// The query exactly as sent.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (n == name).then(|| super::xml::url_decode(v).unwrap())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    /// The `SignedHeaders` of the `Authorization` header.
    pub fn signed_headers(&self) -> Vec<String> {
        let auth = self.header("authorization").unwrap_or_default();
        let list = auth
            .split(", ")
            .find_map(|part| part.strip_prefix("SignedHeaders="))
            .unwrap_or_default();
        list.split(';').map(str::to_owned).collect()
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
}

impl Canned {
    pub fn status(status: u16) -> Self {
        Canned {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn xml(status: u16, body: &str) -> Self {
        Canned {
            body: Bytes::from(body.to_owned()),
            ..Canned::status(status)
        }
        .header("content-type", "application/xml")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.body = Bytes::copy_from_slice(body);
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Canned + Send + Sync>;

struct Shared {
    responder: Mutex<Responder>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct TestServer {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(responder: impl Fn(&Recorded) -> Canned + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            responder: Mutex::new(Arc::new(responder)),
            requests: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            endpoint,
            shared,
            task,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forgets the requests and answers with `responder` from now on.
    pub fn reset(&self, responder: impl Fn(&Recorded) -> Canned + Send + Sync + 'static) {
        *self.shared.responder.lock().unwrap() = Arc::new(responder);
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let (recorded, responder) = {
        let mut requests = shared.requests.lock().unwrap();
        let recorded = Recorded {
            index: requests.len(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers,
            body,
        };
        requests.push(recorded.clone());
        (recorded, shared.responder.lock().unwrap().clone())
    };
    let canned = responder(&recorded);
    tokio::time::sleep(canned.delay).await;
    let mut response = Response::builder().status(canned.status);
    for (name, value) in &canned.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(canned.body)).unwrap()
}

/// A client of [`TEST_BUCKET`] on `server` (path style, as for any IP address), with fast retries.
pub fn test_client(server: &TestServer, adjust: impl FnOnce(&mut ObjectConfig)) -> ObjectClient {
    let mut config = ObjectConfig::new(&server.endpoint, TEST_BUCKET);
    config.retry_base = Duration::from_millis(1);
    config.timeout = Duration::from_secs(10);
    adjust(&mut config);
    ObjectClient::new(
        config,
        ObjectCredentials::new("AKIDtest", TEST_SECRET, None),
    )
    .unwrap()
}

/// Recomputes the request's signature from what arrived and checks it is the one sent.
pub fn verify_signature(request: &Recorded, secret: &str, region: &str) {
    let authorization = request.header("authorization").unwrap();
    let credential = authorization
        .split(", ")
        .next()
        .and_then(|part| part.strip_prefix("AWS4-HMAC-SHA256 Credential="))
        .unwrap();
    let access_key_id = credential.split('/').next().unwrap();
    let names = request.signed_headers();
    let values: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), request.header(name).unwrap()))
        .collect();
    let amz_date = request.header("x-amz-date").unwrap();
    let expected = sigv4::authorization(&SignRequest {
        method: &request.method,
        canonical_uri: &request.path,
        canonical_query: &request.query,
        headers: &values,
        payload_hash: request.header("x-amz-content-sha256").unwrap(),
        amz_date,
        region,
        access_key_id,
        secret_key: secret,
    });
    assert_eq!(
        authorization, expected,
        "{} {}?{}",
        request.method, request.path, request.query
    );
    for required in ["host", "x-amz-content-sha256", "x-amz-date"] {
        assert!(names.iter().any(|n| n == required), "{required} unsigned");
    }
    let hash = request.header("x-amz-content-sha256").unwrap();
    if hash != sigv4::UNSIGNED_PAYLOAD {
        use sha2::Digest;
        assert_eq!(hash, hex::encode(sha2::Sha256::digest(&request.body)));
    }
}
