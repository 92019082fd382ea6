//! The `--endpoint` value: `unix:///absolute/path` (also `unix:/path`, and `unix://dir/file` as
//! Tencent's manifests write it) or `tcp://host:port`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid endpoint {value:?}: {reason}; expected unix:///absolute/path or tcp://host:port")]
pub struct EndpointError {
    pub value: String,
    pub reason: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let fail = |reason| EndpointError {
            value: value.to_owned(),
            reason,
        };
        if let Some(rest) = value.strip_prefix("unix:") {
            // unix:///a/b and unix:/a/b both name /a/b. Tencent's manifests say
            // unix://plugin/csi.sock, which their drivers read as authority and path joined,
            // relative to the container's working directory, its root: /plugin/csi.sock.
            let path = match rest.strip_prefix("//") {
                Some(go) if !go.starts_with('/') && go.contains('/') => format!("/{go}"),
                Some(path) => path.to_owned(),
                None => rest.to_owned(),
            };
            if !path.starts_with('/') {
                return Err(fail("the socket path must be absolute"));
            }
            if path.len() < 2 || path.ends_with('/') {
                return Err(fail("the socket path must name a file"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = value.strip_prefix("tcp://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| fail("missing :port"))?;
            if host.is_empty() {
                return Err(fail("missing host"));
            }
            port.parse::<u16>()
                .map_err(|_| fail("the port is not a number from 0 to 65535"))?;
            return Ok(Endpoint::Tcp(rest.to_owned()));
        }
        Err(fail("unknown scheme"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_endpoints() {
        let table = [
            (
                "unix:///csi/csi.sock",
                Endpoint::Unix("/csi/csi.sock".into()),
            ),
            ("unix:/csi/csi.sock", Endpoint::Unix("/csi/csi.sock".into())),
            (
                "unix://plugin/csi.sock",
                Endpoint::Unix("/plugin/csi.sock".into()),
            ),
            (
                "unix://var/lib/kubelet/plugins/com.tencent.cloud.csi.cosfs/csi.sock",
                Endpoint::Unix(
                    "/var/lib/kubelet/plugins/com.tencent.cloud.csi.cosfs/csi.sock".into(),
                ),
            ),
            (
                "tcp://127.0.0.1:10000",
                Endpoint::Tcp("127.0.0.1:10000".into()),
            ),
            ("tcp://[::1]:0", Endpoint::Tcp("[::1]:0".into())),
            ("tcp://localhost:9", Endpoint::Tcp("localhost:9".into())),
        ];
        for (input, expected) in table {
            assert_eq!(input.parse::<Endpoint>(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_bad_endpoints_with_a_reason() {
        let table = [
            ("", "unknown scheme"),
            ("/csi/csi.sock", "unknown scheme"),
            ("http://x:1", "unknown scheme"),
            ("unix://csi.sock", "the socket path must be absolute"),
            ("unix:///", "the socket path must name a file"),
            ("unix:///csi/", "the socket path must name a file"),
            ("tcp://127.0.0.1", "missing :port"),
            ("tcp://:80", "missing host"),
            ("tcp://h:99999", "the port is not a number from 0 to 65535"),
        ];
        for (input, reason) in table {
            let err = input.parse::<Endpoint>().unwrap_err();
            assert_eq!(err.reason, reason, "{input}");
            assert!(
                err.to_string().contains("expected unix:///absolute/path"),
                "{err}"
            );
        }
    }
}
