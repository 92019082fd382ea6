//! What every integration test of the `tcloud-sim` binary needs: a TC3-HMAC-SHA256 signer written
//! from the algorithm's description (not the simulator's code), a minimal HTTP/1.1 client, a
//! temporary working directory with a keys file, and the simulator process, stopped with SIGTERM
//! when its guard goes away. Service-specific helpers live in each test file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const SECRET_ID: &str = "AKIDsimtest0001";
pub const SECRET_KEY: &str = "sim-test-secret-key";
pub const REGION: &str = "ap-guangzhou";

/// A cloud product of the simulator: credential-scope name and API version.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub name: &'static str,
    pub version: &'static str,
}

pub const CBS: Service = Service {
    name: "cbs",
    version: "2017-03-12",
};

pub const CVM: Service = Service {
    name: "cvm",
    version: "2017-03-12",
};

pub const CFS: Service = Service {
    name: "cfs",
    version: "2019-07-19",
};

// ---- TC3-HMAC-SHA256, written from the algorithm's description ----

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn utc_date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The `Authorization` header for a POST of `body` with content-type application/json.
pub fn authorization(
    id: &str,
    key: &str,
    service: &str,
    host: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let date = utc_date(timestamp);
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{}",
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/{service}/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("TC3{key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"
    )
}

// ---- a minimal HTTP/1.1 client ----

/// One request on a new connection; returns the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

// ---- the test's directory and the simulator process ----

/// A temporary directory holding the keys file, the state directory and the simulator's logs.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(prefix: &str) -> Workdir {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys"),
            format!("{SECRET_ID} {SECRET_KEY}\n"),
        )
        .unwrap();
        Workdir { dir }
    }

    /// The directory's canonical path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Starts the simulator on this directory's state and keys with `args`; calls go to
    /// `service`. Fails the test, with the log, if it does not print its address.
    pub fn start(&self, service: Service, args: &[String]) -> Sim {
        let log_path = self.path().join(format!(
            "sim-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut all: Vec<String> = vec![
            "--state-dir".into(),
            self.state_dir().display().to_string(),
            "--keys-file".into(),
            self.path().join("keys").display().to_string(),
        ];
        all.extend(args.iter().cloned());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcloud-sim"))
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut read_line = || {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            String::from_utf8_lossy(&line).into_owned()
        };
        let first = read_line();
        let second = read_line();
        let addrs = first
            .strip_prefix("listening http://")
            .zip(second.strip_prefix("cos http://"));
        let Some((addr, cos_addr)) = addrs else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tcloud-sim printed {first:?} and {second:?}; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        };
        Sim {
            child: Some(child),
            addr: addr.to_owned(),
            cos_addr: cos_addr.to_owned(),
            log: log_path,
            service,
        }
    }
}

/// A running simulator; stopped with SIGTERM when dropped.
pub struct Sim {
    child: Option<Child>,
    pub addr: String,
    /// The COS (S3 protocol) listener.
    pub cos_addr: String,
    pub log: PathBuf,
    service: Service,
}

impl Sim {
    /// SIGTERM, and the exit must be clean.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status,
            "tcloud-sim did not exit cleanly:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// A signed call of the simulator's service; returns the `Response` object (with `Error` on
    /// failure).
    pub fn call(&self, action: &str, params: Value) -> Value {
        let body = serde_json::to_vec(&params).unwrap();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let headers = [
            ("Content-Type", "application/json".to_owned()),
            ("X-TC-Action", action.to_owned()),
            ("X-TC-Version", self.service.version.to_owned()),
            ("X-TC-Region", REGION.to_owned()),
            ("X-TC-Timestamp", timestamp.to_string()),
            (
                "Authorization",
                authorization(
                    SECRET_ID,
                    SECRET_KEY,
                    self.service.name,
                    &self.addr,
                    timestamp,
                    &body,
                ),
            ),
        ];
        let (status, text) = http(&self.addr, "POST", "/", &headers, &body);
        assert_eq!(status, 200, "{action}: {text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        let response = value["Response"].clone();
        assert!(response["RequestId"].is_string(), "{text}");
        response
    }

    pub fn ok(&self, action: &str, params: Value) -> Value {
        let response = self.call(action, params.clone());
        assert!(
            response.get("Error").is_none(),
            "{action} {params}: {response}"
        );
        response
    }

    pub fn code(&self, action: &str, params: Value) -> String {
        let response = self.call(action, params.clone());
        let error = &response["Error"];
        assert!(error.is_object(), "{action} {params} succeeded: {response}");
        assert!(!error["Message"].as_str().unwrap_or("").is_empty());
        error["Code"].as_str().unwrap().to_owned()
    }

    /// Replaces the fault rules (`PUT /_sim/faults`).
    pub fn put_faults(&self, rules: Value) {
        let body = serde_json::to_vec(&rules).unwrap();
        let (status, text) = http(
            &self.addr,
            "PUT",
            "/_sim/faults",
            &[("Content-Type", "application/json".to_owned())],
            &body,
        );
        assert_eq!(status, 204, "{text}");
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.terminate();
    }
}
