//! What a user configures (endpoint, bucket, region, addressing, timeouts, credentials) and how it
//! resolves to the scheme, host, region and addressing style of every request. No I/O.

use std::net::IpAddr;
use std::time::Duration;

use super::error::ObjectError;

/// Above this size a copy goes through multipart UploadPartCopy (S3's CopyObject limit).
pub const DEFAULT_MULTIPART_COPY_THRESHOLD: u64 = 5 << 30;
/// The part size of a multipart copy (grown when the object would need more than 10000 parts).
pub const DEFAULT_COPY_PART_SIZE: u64 = 256 << 20;
/// Connections kept open between requests by default: enough for a few readers' small files
/// without reconnecting, few enough that an idle daemon holds little.
pub const DEFAULT_IDLE_CONNECTIONS: usize = 4;
/// The region of servers whose endpoint does not name one (MinIO and most others accept it).
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct ObjectConfig {
    /// `http://cos.ap-guangzhou.myqcloud.com`, `http://127.0.0.1:9000`, ...; `https://` is
    /// assumed when the scheme is missing. No path, no user info.
    pub endpoint: String,
    /// `<name>-<appid>` on COS; anything on other servers.
    pub bucket: String,
    /// The SigV4 region. When empty: taken from a `cos.<region>.myqcloud.com` (or
    /// `cos.<region>.tencentcos.cn`) endpoint, else [`DEFAULT_REGION`].
    pub region: String,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`) instead of virtual-hosted
    /// (`<bucket>.<endpoint>/<key>`). Path style is also used, whatever this says, for an IP
    /// address or `localhost` endpoint and for bucket names that are not valid host names.
    pub path_style: bool,
    /// The timeout of one attempt (connecting, sending and reading the whole answer).
    pub timeout: Duration,
    /// Attempts at most for 5xx, SlowDown, timeouts and connection errors (at least 1).
    pub max_attempts: u32,
    /// The first backoff; it doubles per attempt (up to 5 s), with jitter.
    pub retry_base: Duration,
    /// Objects larger than this are copied part by part.
    pub multipart_copy_threshold: u64,
    /// The part size of those copies.
    pub copy_part_size: u64,
    /// Connections kept open between requests; the others close once idle. Many are opened
    /// for one large transfer (each part or range in flight has its own), and each kept one
    /// holds its buffers: a node runs a daemon per mount.
    pub idle_connections: usize,
}

impl ObjectConfig {
    /// A configuration with the defaults: region from the endpoint, virtual-hosted addressing,
    /// 30 s per attempt, 5 attempts.
    pub fn new(endpoint: &str, bucket: &str) -> Self {
        ObjectConfig {
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            region: String::new(),
            path_style: false,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
            multipart_copy_threshold: DEFAULT_MULTIPART_COPY_THRESHOLD,
            copy_part_size: DEFAULT_COPY_PART_SIZE,
            idle_connections: DEFAULT_IDLE_CONNECTIONS,
        }
    }
}

/// A COS key pair (`SecretId`, `SecretKey`), with the session token of temporary keys. Its
/// `Debug` shows the key ID only.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectCredentials {
    pub secret_id: String,
    pub secret_key: String,
    pub token: Option<String>,
}

impl ObjectCredentials {
    /// Trims the values: a trailing newline in a Kubernetes secret is a classic signing failure.
    pub fn new(secret_id: &str, secret_key: &str, token: Option<&str>) -> Self {
        ObjectCredentials {
            secret_id: secret_id.trim().to_owned(),
            secret_key: secret_key.trim().to_owned(),
            token: token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        }
    }

    /// The same credentials, trimmed as [`ObjectCredentials::new`] does (for struct literals).
    pub(super) fn trimmed(self) -> Self {
        ObjectCredentials::new(&self.secret_id, &self.secret_key, self.token.as_deref())
    }
}

impl std::fmt::Debug for ObjectCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCredentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Where and how every request of a client goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]` of the endpoint, without the bucket, lowercase.
    pub host: String,
    pub region: String,
    pub path_style: bool,
}

/// Checks `config` and works out the endpoint. Error messages never echo user info.
pub(super) fn resolve(config: &ObjectConfig) -> Result<Endpoint, ObjectError> {
    let invalid = |detail: String| ObjectError::Config { detail };
    if config.bucket.is_empty() || config.bucket.contains('/') {
        return Err(invalid(format!(
            "bucket {:?} must be non-empty and without '/'",
            config.bucket
        )));
    }
    if config.timeout.is_zero() {
        return Err(invalid("the attempt timeout must be positive".into()));
    }
    let endpoint = if config.endpoint.contains("://") {
        config.endpoint.clone()
    } else {
        format!("https://{}", config.endpoint)
    };
    let url = reqwest::Url::parse(&endpoint);
    // Never echo an endpoint that carries user info: it may be a password.
    if endpoint.contains('@') {
        return Err(invalid("the endpoint must not carry user info".into()));
    }
    let url = url.map_err(|e| invalid(format!("endpoint {:?}: {e}", config.endpoint)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "endpoint {:?}: the scheme must be http or https",
            config.endpoint
        )));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "endpoint {:?} must have no path, query or fragment",
            config.endpoint
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid(format!(
            "endpoint {:?} has no host",
            config.endpoint
        )));
    };
    let host = host.to_ascii_lowercase();
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let path_style = config.path_style
        || bare_host.parse::<IpAddr>().is_ok()
        || bare_host == "localhost"
        || !dns_compatible(&config.bucket);
    let region = if config.region.trim().is_empty() {
        region_of_host(&host).unwrap_or(DEFAULT_REGION).to_owned()
    } else {
        config.region.trim().to_owned()
    };
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    Ok(Endpoint {
        scheme: url.scheme().to_owned(),
        host,
        region,
        path_style,
    })
}

/// Whether a bucket name can be the first labels of a host name.
fn dns_compatible(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The region of a COS endpoint: `cos.<region>.myqcloud.com` or `cos.<region>.tencentcos.cn`
/// (also `cos-internal.` and with a bucket in front).
fn region_of_host(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    let domain_ok = n >= 4
        && matches!(
            (labels[n - 2], labels[n - 1]),
            ("myqcloud", "com") | ("tencentcos", "cn")
        );
    let region = labels.get(n.checked_sub(3)?)?;
    let service = labels.get(n.checked_sub(4)?)?;
    (domain_ok && matches!(*service, "cos" | "cos-internal") && !region.is_empty())
        .then_some(*region)
}

#[cfg(test)]
mod tests {
    use super::super::{ObjectClient, ObjectErrorKind};
    use super::*;

    fn endpoint(endpoint: &str, bucket: &str, region: &str, path_style: bool) -> Endpoint {
        let mut config = ObjectConfig::new(endpoint, bucket);
        config.region = region.to_owned();
        config.path_style = path_style;
        resolve(&config).unwrap()
    }

    #[test]
    fn region_and_addressing_follow_the_endpoint_and_bucket() {
        // endpoint, bucket, region given, path style asked => scheme, host, region, path style
        let cases = [
            (
                (
                    "http://cos.ap-guangzhou.myqcloud.com",
                    "data-1250000000",
                    "",
                    false,
                ),
                (
                    "http",
                    "cos.ap-guangzhou.myqcloud.com",
                    "ap-guangzhou",
                    false,
                ),
            ),
            (
                (
                    "https://cos-internal.eu-frankfurt.tencentcos.cn",
                    "data-1250000000",
                    "",
                    false,
                ),
                (
                    "https",
                    "cos-internal.eu-frankfurt.tencentcos.cn",
                    "eu-frankfurt",
                    false,
                ),
            ),
            (
                ("cos.na-ashburn.myqcloud.com", "data-1250000000", "", false),
                ("https", "cos.na-ashburn.myqcloud.com", "na-ashburn", false),
            ),
            (
                (
                    "http://cos.ap-guangzhou.myqcloud.com",
                    "data-1250000000",
                    "",
                    true,
                ),
                (
                    "http",
                    "cos.ap-guangzhou.myqcloud.com",
                    "ap-guangzhou",
                    true,
                ),
            ),
            (
                (
                    "http://cos.ap-guangzhou.myqcloud.com",
                    "data-1250000000",
                    " ap-shanghai\n",
                    false,
                ),
                (
                    "http",
                    "cos.ap-guangzhou.myqcloud.com",
                    "ap-shanghai",
                    false,
                ),
            ),
            (
                ("http://127.0.0.1:9000", "bkt", "", false),
                ("http", "127.0.0.1:9000", "us-east-1", true),
            ),
            (
                ("http://LOCALHOST:9000", "bkt", "ap-beijing", false),
                ("http", "localhost:9000", "ap-beijing", true),
            ),
            (
                ("http://[::1]:9000", "bkt", "", false),
                ("http", "[::1]:9000", "us-east-1", true),
            ),
            (
                ("https://s3.example.com", "Not_DNS", "", false),
                ("https", "s3.example.com", "us-east-1", true),
            ),
            (
                ("https://s3.example.com:443/", "good.bucket", "", false),
                ("https", "s3.example.com", "us-east-1", false),
            ),
            (
                ("http://myqcloud.com", "bkt", "", false),
                ("http", "myqcloud.com", "us-east-1", false),
            ),
        ];
        for ((url, bucket, region, path_style), (scheme, host, want_region, want_path)) in cases {
            assert_eq!(
                endpoint(url, bucket, region, path_style),
                Endpoint {
                    scheme: scheme.into(),
                    host: host.into(),
                    region: want_region.into(),
                    path_style: want_path,
                },
                "{url}"
            );
        }
    }

    #[test]
    fn host_names_and_regions() {
        for (bucket, ok) in [
            ("data-1250000000", true),
            ("a.b-c", true),
            ("ab", false),
            ("Upper", false),
            ("under_score", false),
            ("-lead", false),
            ("a..b", false),
        ] {
            assert_eq!(dns_compatible(bucket), ok, "{bucket}");
        }
        assert_eq!(
            region_of_host("b-1.cos.ap-chengdu.myqcloud.com"),
            Some("ap-chengdu")
        );
        assert_eq!(region_of_host("cos.accelerate.example.com"), None);
        assert_eq!(region_of_host("s3.us-west-2.amazonaws.com"), None);
    }

    #[test]
    fn bad_configurations_are_refused_without_echoing_secrets() {
        let mut zero_timeout = ObjectConfig::new("http://127.0.0.1:1", "b");
        zero_timeout.timeout = Duration::ZERO;
        let cases = [
            ObjectConfig::new("http://127.0.0.1:1", ""),
            ObjectConfig::new("http://127.0.0.1:1", "a/b"),
            ObjectConfig::new("", "b"),
            ObjectConfig::new("http://", "b"),
            ObjectConfig::new("ftp://host", "b"),
            ObjectConfig::new("http://user:hunter2@host", "b"),
            ObjectConfig::new("http://host/sub", "b"),
            ObjectConfig::new("http://host/?x=1", "b"),
            zero_timeout,
        ];
        for config in cases {
            let endpoint = config.endpoint.clone();
            let error =
                ObjectClient::new(config, ObjectCredentials::new("id", "key", None)).unwrap_err();
            assert_eq!(error.kind(), ObjectErrorKind::Invalid, "{endpoint}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn credentials_never_show_the_key_or_token() {
        let credentials = ObjectCredentials::new(" AKIDx\n", "sup3rs3cret\n", Some("t0ken\n"));
        assert_eq!(credentials.secret_key, "sup3rs3cret");
        let debug = format!("{credentials:?}");
        assert!(debug.contains("AKIDx"), "{debug}");
        assert!(
            !debug.contains("sup3rs3cret") && !debug.contains("t0ken"),
            "{debug}"
        );
        let c =
            ObjectClient::new(ObjectConfig::new("http://127.0.0.1:1", "b"), credentials).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("sup3rs3cret") && !debug.contains("t0ken"),
            "{debug}"
        );
        assert_eq!(ObjectCredentials::new("a", "b", Some(" ")).token, None);
    }
}
