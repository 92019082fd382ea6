//! The one way this project builds an HTTP(S) client: reqwest on rustls with the ring provider, a
//! connect timeout, a whole-request timeout and the project's `User-Agent`. The API client, the
//! metadata client and other crates' clients (COS, the e2e harness) all start here.
//!
//! It only builds clients: it never sends a request, signs, or retries.

use std::time::Duration;

const USER_AGENT: &str = concat!("tencentcloud-csi-rs/", env!("CARGO_PKG_VERSION"));

/// A reqwest client with rustls on the ring provider.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).build()
}

/// As [`http_client`], keeping at most `idle` connections per host open between requests: the
/// others close as they come back, and their buffers are freed (a connection that carried a
/// large body keeps a read buffer of up to 400 KiB while it waits).
pub fn http_client_keeping(
    timeout: Duration,
    idle: usize,
) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).pool_max_idle_per_host(idle).build()
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    // Installing the process default provider fails harmlessly when it is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(USER_AGENT)
}
