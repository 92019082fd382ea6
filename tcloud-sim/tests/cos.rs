//! COS against the real `tcloud-sim` binary, over its S3 listener: requests signed here with
//! AWS SigV4 written from the algorithm's description (not s3s's code), path and virtual-hosted
//! style, the keys the cloud API accepts (and a CAM role's temporary keys with their token),
//! faults, counters, the network profile, restarts; then boto3, an independent S3 client, runs
//! `tests/python/boto3_against_cos.py` against it. Needs no root. The boto3 test needs `python3`
//! with boto3 (`pip install boto3`) and fails without it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{CVM, REGION, SECRET_ID, SECRET_KEY, Sim, Workdir, http};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BUCKET: &str = "sim-1250000000";

// ---- AWS SigV4, written from the algorithm's description ----

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of now (UTC).
fn amz_dates() -> (String, String) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let date = common::utc_date(unix).replace('-', "");
    let secs = unix.rem_euclid(86_400);
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    (date, time)
}

/// RFC 3986 encoding as SigV4 wants it; `/` kept when encoding a path.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Credentials to sign with.
#[derive(Clone)]
struct Keys {
    id: String,
    secret: String,
    token: Option<String>,
}

fn sim_keys() -> Keys {
    Keys {
        id: SECRET_ID.into(),
        secret: SECRET_KEY.into(),
        token: None,
    }
}

/// An HTTP response.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `<Code>` of an error document.
    fn code(&self) -> String {
        let text = self.text();
        let start = text.find("<Code>").map(|i| i + 6).unwrap_or(0);
        let end = text[start..]
            .find("</Code>")
            .map(|i| start + i)
            .unwrap_or(start);
        text[start..end].to_owned()
    }

    /// Every `<tag>` value, in order.
    fn all(&self, tag: &str) -> Vec<String> {
        let text = self.text();
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        text.split(&open)
            .skip(1)
            .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_owned()))
            .collect()
    }
}

/// Decodes a chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// One signed S3 request on a new connection. `path` is `/bucket/key`, unencoded; `host`
/// overrides the Host header (virtual-hosted style).
#[allow(clippy::too_many_arguments)]
fn s3(
    addr: &str,
    keys: Option<&Keys>,
    host: Option<&str>,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, String)],
    body: &[u8],
) -> Response {
    let host = host.unwrap_or(addr);
    let encoded_path = uri_encode(path, true);
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let payload_hash = hex::encode(Sha256::digest(body));
    let (date, time) = amz_dates();
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    all.push(("host".into(), host.to_owned()));
    all.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    all.push(("x-amz-date".into(), time.clone()));
    if let Some(token) = keys.and_then(|k| k.token.clone()) {
        all.push(("x-amz-security-token".into(), token));
    }
    all.sort();
    if let Some(keys) = keys {
        let signed: Vec<&(String, String)> = all
            .iter()
            .filter(|(n, _)| n == "host" || n.starts_with("x-amz-") || n == "content-md5")
            .collect();
        let canonical_headers: String = signed.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let signed_names = signed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{method}\n{encoded_path}\n{canonical_query}\n{canonical_headers}\n{signed_names}\n{payload_hash}"
        );
        let scope = format!("{date}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{time}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k_date = hmac(format!("AWS4{}", keys.secret).as_bytes(), date.as_bytes());
        let k_region = hmac(&k_date, REGION.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
        all.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
                keys.id
            ),
        ));
    }
    let target = if canonical_query.is_empty() {
        encoded_path
    } else {
        format!("{encoded_path}?{canonical_query}")
    };
    let mut request = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in &all {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    // Like real clients, a body waits for `100 Continue`: an early answer (an injected fault)
    // arrives instead, and the body is not sent.
    if !body.is_empty() {
        request.push_str("expect: 100-continue\r\n");
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    if !body.is_empty() {
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            raw.push(byte[0]);
        }
        if raw.starts_with(b"HTTP/1.1 100") {
            raw.clear();
            stream.write_all(body).unwrap();
        }
    }
    stream.read_to_end(&mut raw).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

/// A COS client of one simulator.
struct Cos<'a> {
    sim: &'a Sim,
    keys: Keys,
}

impl Cos<'_> {
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Response {
        s3(
            &self.sim.cos_addr,
            Some(&self.keys),
            None,
            method,
            path,
            query,
            headers,
            body,
        )
    }

    fn put(&self, key: &str, body: &[u8]) -> Response {
        let response = self.send("PUT", &format!("/{BUCKET}/{key}"), &[], &[], body);
        assert_eq!(response.status, 200, "PUT {key}: {}", response.text());
        response
    }

    fn get(&self, key: &str, headers: &[(&str, String)]) -> Response {
        self.send("GET", &format!("/{BUCKET}/{key}"), &[], headers, b"")
    }
}

fn start(work: &Workdir, args: &[&str]) -> Sim {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    work.start(CVM, &args)
}

fn stats(sim: &Sim) -> Value {
    let (status, text) = http(&sim.addr, "GET", "/_sim/stats", &[], b"");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn put_json(sim: &Sim, path: &str, value: Value) -> (u16, String) {
    http(
        &sim.addr,
        "PUT",
        path,
        &[("Content-Type", "application/json".to_owned())],
        &serde_json::to_vec(&value).unwrap(),
    )
}

#[test]
fn objects_ranges_listings_and_keys_over_path_and_virtual_hosted_style() {
    let work = Workdir::new("sim-cos-basic-");
    let sim = start(&work, &[]);
    let cos = Cos {
        sim: &sim,
        keys: sim_keys(),
    };
    let put = cos.put("dir/file.txt", b"0123456789");
    // The ETag is the MD5 of the bytes (known answer for "0123456789").
    assert_eq!(
        put.header("etag"),
        Some("\"781e5e245d69b566979b86e28d23f2c7\"")
    );
    cos.put("dir/", b"");
    cos.put("a//b", b"double slash");
    cos.put("ü 你好.txt", b"unicode");

    let whole = cos.get("dir/file.txt", &[]);
    assert_eq!(
        (whole.status, whole.body.as_slice()),
        (200, &b"0123456789"[..])
    );
    assert_eq!(whole.header("content-length"), Some("10"));
    let range = cos.get("dir/file.txt", &[("Range", "bytes=2-4".into())]);
    assert_eq!((range.status, range.text().as_str()), (206, "234"));
    assert_eq!(range.header("content-range"), Some("bytes 2-4/10"));
    let suffix = cos.get("dir/file.txt", &[("Range", "bytes=-3".into())]);
    assert_eq!((suffix.status, suffix.text().as_str()), (206, "789"));
    let past = cos.get("dir/file.txt", &[("Range", "bytes=10-".into())]);
    assert_eq!((past.status, past.code().as_str()), (416, "InvalidRange"));
    assert_eq!(cos.get("a//b", &[]).text(), "double slash");
    assert_eq!(cos.get("ü 你好.txt", &[]).text(), "unicode");
    let marker = cos.get("dir/", &[]);
    assert_eq!((marker.status, marker.body.len()), (200, 0));

    // Virtual-hosted style, by the COS domain and by the bare bucket name.
    for host in [
        format!("{BUCKET}.cos.{REGION}.myqcloud.com"),
        format!("{BUCKET}.localhost"),
    ] {
        let response = s3(
            &sim.cos_addr,
            Some(&sim_keys()),
            Some(&host),
            "GET",
            "/dir/file.txt",
            &[],
            &[],
            b"",
        );
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "0123456789"),
            "{host}"
        );
    }

    // Listing: every object with ETag, Size, LastModified and StorageClass; dir/ rolled up.
    let list = cos.send(
        "GET",
        &format!("/{BUCKET}"),
        &[("list-type", "2"), ("delimiter", "/")],
        &[],
        b"",
    );
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.all("Key"), ["ü 你好.txt"]);
    let prefixes = list.all("Prefix");
    assert_eq!(
        prefixes[prefixes.len() - 2..],
        ["a/", "dir/"],
        "{}",
        list.text()
    );
    let list = cos.send(
        "GET",
        &format!("/{BUCKET}"),
        &[("list-type", "2")],
        &[],
        b"",
    );
    assert_eq!(
        list.all("Key"),
        ["a//b", "dir/", "dir/file.txt", "ü 你好.txt"]
    );
    for tag in ["ETag", "Size", "LastModified", "StorageClass"] {
        assert_eq!(list.all(tag).len(), 4, "{tag}: {}", list.text());
    }
    let list = cos.send(
        "GET",
        &format!("/{BUCKET}"),
        &[("list-type", "2"), ("prefix", "dir/"), ("max-keys", "1")],
        &[],
        b"",
    );
    assert_eq!(list.all("Key"), ["dir/"]);
    assert_eq!(list.all("IsTruncated"), ["true"]);
    let token = list.all("NextContinuationToken").remove(0);
    let rest = cos.send(
        "GET",
        &format!("/{BUCKET}"),
        &[
            ("list-type", "2"),
            ("prefix", "dir/"),
            ("continuation-token", &token),
        ],
        &[],
        b"",
    );
    assert_eq!(rest.all("Key"), ["dir/file.txt"]);
    assert_eq!(rest.all("IsTruncated"), ["false"]);
    let encoded = cos.send(
        "GET",
        &format!("/{BUCKET}"),
        &[
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("prefix", "ü"),
        ],
        &[],
        b"",
    );
    assert_eq!(encoded.all("Key"), ["%C3%BC%20%E4%BD%A0%E5%A5%BD.txt"]);
    // ListObjects (v1), as s3fs uses it.
    let v1 = cos.send(
        "GET",
        &format!("/{BUCKET}/"),
        &[("prefix", "dir/"), ("delimiter", "/")],
        &[],
        b"",
    );
    assert_eq!(v1.all("Key"), ["dir/", "dir/file.txt"]);

    let buckets = cos.send("GET", "/", &[], &[], b"");
    assert_eq!(buckets.all("Name"), [BUCKET]);
    assert_eq!(
        cos.send("HEAD", &format!("/{BUCKET}"), &[], &[], b"")
            .status,
        200
    );
    assert_eq!(
        cos.send("HEAD", "/nope-1250000000", &[], &[], b"").status,
        404
    );
    let missing = cos.get("missing", &[]);
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "NoSuchKey")
    );
    let unknown = cos.send("GET", &format!("/{BUCKET}"), &[("tagging", "")], &[], b"");
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (501, "NotImplemented")
    );
    let bad_md5 = cos.send(
        "PUT",
        &format!("/{BUCKET}/md5"),
        &[],
        &[("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==".into())],
        b"x",
    );
    assert_eq!(
        (bad_md5.status, bad_md5.code().as_str()),
        (400, "BadDigest")
    );

    // Keys: a wrong secret, an unknown ID, no signature.
    let wrong = Keys {
        secret: "wrong".into(),
        ..sim_keys()
    };
    let refused = s3(&sim.cos_addr, Some(&wrong), None, "GET", "/", &[], &[], b"");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    let nobody = Keys {
        id: "AKIDnobody".into(),
        ..sim_keys()
    };
    let refused = s3(
        &sim.cos_addr,
        Some(&nobody),
        None,
        "GET",
        "/",
        &[],
        &[],
        b"",
    );
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (403, "InvalidAccessKeyId")
    );
    let anonymous = s3(
        &sim.cos_addr,
        None,
        None,
        "GET",
        &format!("/{BUCKET}/dir/"),
        &[],
        &[],
        b"",
    );
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (403, "AccessDenied")
    );
    sim.stop();
}

#[test]
fn role_temporary_keys_need_their_token() {
    let work = Workdir::new("sim-cos-role-");
    let sim = start(&work, &["--cam-role", "csi-role"]);
    let (status, text) = http(
        &sim.addr,
        "GET",
        "/latest/meta-data/cam/security-credentials/csi-role",
        &[],
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let credentials: Value = serde_json::from_str(&text).unwrap();
    let temp = Keys {
        id: credentials["TmpSecretId"].as_str().unwrap().into(),
        secret: credentials["TmpSecretKey"].as_str().unwrap().into(),
        token: Some(credentials["Token"].as_str().unwrap().into()),
    };
    let cos = Cos {
        sim: &sim,
        keys: temp.clone(),
    };
    cos.put("by-role", b"role");
    assert_eq!(cos.get("by-role", &[]).text(), "role");
    let without_token = Keys {
        token: None,
        ..temp.clone()
    };
    let refused = s3(
        &sim.cos_addr,
        Some(&without_token),
        None,
        "GET",
        "/",
        &[],
        &[],
        b"",
    );
    assert_eq!(refused.code(), "InvalidToken", "{}", refused.text());
    let other_token = Keys {
        token: Some("not-the-token".into()),
        ..temp
    };
    let refused = s3(
        &sim.cos_addr,
        Some(&other_token),
        None,
        "GET",
        "/",
        &[],
        &[],
        b"",
    );
    assert_eq!(refused.code(), "InvalidToken", "{}", refused.text());
    sim.stop();
}

const PART: usize = 5 * 1024 * 1024;

#[test]
fn a_failed_upload_leaves_no_object_and_the_counters_see_everything() {
    let work = Workdir::new("sim-cos-faults-");
    let sim = start(&work, &[]);
    let cos = Cos {
        sim: &sim,
        keys: sim_keys(),
    };
    let path = format!("/{BUCKET}/upload.bin");
    let created = cos.send("POST", &path, &[("uploads", "")], &[], b"");
    assert_eq!(created.status, 200, "{}", created.text());
    let upload_id = created.all("UploadId").remove(0);
    let part = vec![b'p'; PART];
    let first = cos.send(
        "PUT",
        &path,
        &[("partNumber", "1"), ("uploadId", &upload_id)],
        &[],
        &part,
    );
    assert_eq!(first.status, 200, "{}", first.text());

    // The network breaks mid-upload.
    put_json(
        &sim,
        "/_sim/faults",
        json!([{"action": "UploadPart", "error_rate": 1.0}]),
    );
    let failed = cos.send(
        "PUT",
        &path,
        &[("partNumber", "2"), ("uploadId", &upload_id)],
        &[],
        &part,
    );
    assert_eq!(
        (failed.status, failed.code().as_str()),
        (500, "InternalError")
    );
    put_json(
        &sim,
        "/_sim/faults",
        json!([{"action": "UploadPart", "error_rate": 1.0, "error_code": "SlowDown"}]),
    );
    let throttled = cos.send(
        "PUT",
        &path,
        &[("partNumber", "2"), ("uploadId", &upload_id)],
        &[],
        &part,
    );
    assert_eq!(
        (throttled.status, throttled.code().as_str()),
        (503, "SlowDown")
    );
    put_json(&sim, "/_sim/faults", json!([]));

    let head = cos.send("HEAD", &path, &[], &[], b"");
    assert_eq!(
        head.status, 404,
        "nothing visible while the upload is unfinished"
    );
    let list = cos.send(
        "GET",
        &format!("/{BUCKET}"),
        &[("list-type", "2")],
        &[],
        b"",
    );
    assert!(list.all("Key").is_empty(), "{}", list.text());
    let aborted = cos.send("DELETE", &path, &[("uploadId", &upload_id)], &[], b"");
    assert_eq!(aborted.status, 204, "{}", aborted.text());
    assert_eq!(cos.send("HEAD", &path, &[], &[], b"").status, 404);

    // Bytes from origin: what GetObject sent.
    let object = vec![b'g'; 300_000];
    cos.put("read-me", &object);
    assert_eq!(cos.get("read-me", &[]).body.len(), object.len());
    assert_eq!(
        cos.get("read-me", &[("Range", "bytes=0-99".into())])
            .body
            .len(),
        100
    );
    let counters = stats(&sim);
    let cos_stats = &counters["cos"];
    let upload_part = &cos_stats["UploadPart"];
    assert_eq!(upload_part["calls"], 3, "{counters}");
    assert_eq!(upload_part["ok"], 1);
    assert_eq!(upload_part["errors"]["InternalError"], 1);
    assert_eq!(upload_part["errors"]["SlowDown"], 1);
    assert!(upload_part["bytes_received"].as_u64().unwrap() >= PART as u64);
    assert_eq!(cos_stats["GetObject"]["bytes_sent"], 300_100);
    assert_eq!(cos_stats["PutObject"]["bytes_received"], 300_000);
    assert_eq!(
        cos_stats["HeadObject"]["errors"]["NoSuchKey"], 2,
        "{counters}"
    );
    assert_eq!(cos_stats["AbortMultipartUpload"]["ok"], 1);
    let (status, _) = http(&sim.addr, "DELETE", "/_sim/stats", &[], b"");
    assert_eq!(status, 204);
    assert_eq!(stats(&sim)["cos"], json!({}));
    sim.stop();
}

#[test]
fn objects_and_unfinished_uploads_survive_a_restart() {
    let work = Workdir::new("sim-cos-restart-");
    let sim = start(
        &work,
        &["--cos-bucket", BUCKET, "--cos-bucket", "second-1250000000"],
    );
    let cos = Cos {
        sim: &sim,
        keys: sim_keys(),
    };
    cos.put("kept/one", b"first");
    let second = cos.send(
        "PUT",
        "/second-1250000000/x",
        &[],
        &[],
        b"in the second bucket",
    );
    assert_eq!(second.status, 200);
    let created = cos.send(
        "POST",
        &format!("/{BUCKET}/later"),
        &[("uploads", "")],
        &[],
        b"",
    );
    let upload_id = created.all("UploadId").remove(0);
    let part = cos.send(
        "PUT",
        &format!("/{BUCKET}/later"),
        &[("partNumber", "1"), ("uploadId", &upload_id)],
        &[],
        b"only part",
    );
    let etag = part.header("etag").unwrap().to_owned();
    sim.stop();
    assert!(
        work.state_dir()
            .join("cos")
            .join(BUCKET)
            .join("objects")
            .is_dir()
    );

    let sim = start(
        &work,
        &["--cos-bucket", BUCKET, "--cos-bucket", "second-1250000000"],
    );
    let cos = Cos {
        sim: &sim,
        keys: sim_keys(),
    };
    assert_eq!(cos.get("kept/one", &[]).text(), "first");
    let second = cos.send("GET", "/second-1250000000/x", &[], &[], b"");
    assert_eq!(second.text(), "in the second bucket");
    let uploads = cos.send("GET", &format!("/{BUCKET}"), &[("uploads", "")], &[], b"");
    assert_eq!(uploads.all("UploadId"), std::slice::from_ref(&upload_id));
    let done = cos.send(
        "POST",
        &format!("/{BUCKET}/later"),
        &[("uploadId", &upload_id)],
        &[],
        format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        )
        .as_bytes(),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(
        done.all("ETag")[0].trim_matches('"').ends_with("-1"),
        "{}",
        done.text()
    );
    assert_eq!(cos.get("later", &[]).text(), "only part");
    sim.stop();
}

#[test]
fn the_network_profile_delays_and_paces() {
    let work = Workdir::new("sim-cos-profile-");
    let sim = start(&work, &["--cos-latency-ms", "300"]);
    let cos = Cos {
        sim: &sim,
        keys: sim_keys(),
    };
    let started = Instant::now();
    cos.put("blob", &vec![b'b'; 512 * 1024]);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // 4 Mbit/s is 500 kB/s: 512 KiB takes about a second.
    let (status, text) = put_json(
        &sim,
        "/_sim/cos-profile",
        json!({"latency_ms": 0, "bandwidth_mbps": 4}),
    );
    assert_eq!(status, 204, "{text}");
    let (_, text) = http(&sim.addr, "GET", "/_sim/cos-profile", &[], b"");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"latency_ms": 0, "bandwidth_mbps": 4.0})
    );
    let started = Instant::now();
    assert_eq!(cos.get("blob", &[]).body.len(), 512 * 1024);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");

    let (status, text) = put_json(&sim, "/_sim/cos-profile", json!({"bandwidth_mbps": -1}));
    assert_eq!(status, 400, "{text}");
    put_json(&sim, "/_sim/cos-profile", json!({}));
    let started = Instant::now();
    assert_eq!(cos.get("blob", &[]).body.len(), 512 * 1024);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "unlimited again"
    );
    sim.stop();
}

#[test]
fn bad_cos_flags_are_refused_by_name() {
    let work = Workdir::new("sim-cos-flags-");
    for (flag, value, expected) in [
        ("--cos-bucket", "Bad_Name", "not a valid name"),
        ("--cos-bandwidth-mbps", "-3", "bandwidth_mbps -3"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tcloud-sim"))
            .args(["--state-dir", &work.state_dir().display().to_string()])
            .args([
                "--keys-file",
                &work.path().join("keys").display().to_string(),
            ])
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
}

#[test]
fn boto3_speaks_s3_with_the_simulator() {
    let work = Workdir::new("sim-cos-boto3-");
    let sim = start(&work, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/boto3_against_cos.py"
    );
    let output = std::process::Command::new("python3")
        .args([
            script,
            &format!("http://{}", sim.cos_addr),
            SECRET_ID,
            SECRET_KEY,
            REGION,
            BUCKET,
        ])
        .output()
        .expect("python3 is needed to run boto3 against the simulator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the boto3 script failed (is boto3 installed? pip install boto3):\n{stderr}\nsimulator log:\n{}",
        sim.log_text()
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let expect = |name: &str, value: Value| assert_eq!(out[name], value, "{name}: {out}");
    expect("buckets", json!([BUCKET]));
    expect("root_keys", json!(["odd key+ü.txt", "top.txt"]));
    expect("root_prefixes", json!(["dir/", "other/"]));
    expect("dir_keys", json!(["dir/", "dir/a.txt", "dir/b.txt"]));
    expect("dir_prefixes", json!(["dir/sub/"]));
    expect("listing_fields_complete", json!(true));
    let all = json!([
        "dir/",
        "dir/a.txt",
        "dir/b.txt",
        "dir/sub/c.txt",
        "odd key+ü.txt",
        "other/d.txt",
        "top.txt"
    ]);
    expect("paged_keys", all.clone());
    expect("paged_keys_v1", all);
    expect("upload_listed", json!(true));
    expect("parts_listed", json!([1, 2, 3]));
    expect("invisible_before_complete", json!("404"));
    expect("multipart_etag_ok", json!(true));
    expect("multipart_size_ok", json!(true));
    expect("multipart_content_type", json!("application/x-test"));
    expect("small_parts_code", json!("EntityTooSmall"));
    expect("aborted_upload_code", json!("NoSuchUpload"));
    expect("part_copy_bytes", json!("aabb"));
    expect("range_middle", json!("a.t"));
    expect("range_suffix", json!("txt"));
    expect("range_past_end_code", json!("InvalidRange"));
    expect("if_none_match_code", json!("304"));
    expect("if_match_wrong_code", json!("PreconditionFailed"));
    expect("copy_metadata", json!([{"mode": "644"}, "text/plain"]));
    expect("replaced_metadata", json!({"mode": "600"}));
    expect("copy_to_itself_code", json!("InvalidRequest"));
    expect("bad_md5_code", json!("BadDigest"));
    expect(
        "deleted",
        json!(["dir/a.txt", "dir/b.txt", "never-existed"]),
    );
    expect(
        "after_delete",
        json!([
            "big.bin",
            "copied-part.bin",
            "dir/",
            "dir/sub/c.txt",
            "meta-copy.txt",
            "meta.txt",
            "odd key+ü.txt",
            "other/d.txt"
        ]),
    );
    expect("missing_key_code", json!("NoSuchKey"));
    expect("missing_bucket_code", json!("NoSuchBucket"));
    expect("wrong_secret_code", json!("SignatureDoesNotMatch"));
    expect("unknown_id_code", json!("InvalidAccessKeyId"));
    let counters = stats(&sim);
    assert!(
        counters["cos"]["CompleteMultipartUpload"]["ok"]
            .as_u64()
            .unwrap()
            >= 2,
        "{counters}"
    );
    sim.stop();
}
