//! The single-request S3 operations: bucket check, listing, HEAD, ranged GET, PUT, multipart
//! upload and delete. Each turns its answer into typed values; retries are the transport's.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::Method;

use super::client::{Answer, Call};
use super::error::ObjectError;
use super::xml;
use super::{ListPage, MultipartUpload, ObjectClient, ObjectMeta};

/// How much earlier than the node's clock the server may stamp an upload's start (COS stamps to
/// the second).
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// The part numbers S3 accepts.
pub const MAX_PARTS: u32 = 10_000;

impl ObjectClient {
    /// Checks that the bucket exists and the credentials may use it.
    pub async fn head_bucket(&self) -> Result<(), ObjectError> {
        self.send(&Call::new("HeadBucket", Method::HEAD, None))
            .await
            .map(drop)
    }

    /// One page of keys starting with `prefix`; with a `delimiter`, keys containing it after the
    /// prefix are rolled up into `common_prefixes`. Keys are requested URL-encoded, so any key
    /// (control characters included) comes back intact.
    pub async fn list_objects_v2(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage, ObjectError> {
        let mut call = Call::new("ListObjectsV2", Method::GET, None)
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("prefix", prefix);
        call.subject = Some(prefix);
        if let Some(delimiter) = delimiter {
            call = call.query("delimiter", delimiter);
        }
        if let Some(token) = continuation {
            call = call.query("continuation-token", token);
        }
        if let Some(max_keys) = max_keys {
            call = call.query("max-keys", max_keys.to_string());
        }
        let answer = self.send(&call).await?;
        xml::parse_list(&answer.body)
            .map_err(|e| self.decode_error(&call, answer.status, e.to_string()))
    }

    /// The object's size, ETag and modification time; `None` when it does not exist. (A HEAD
    /// answer has no body, so a missing bucket reads as a missing object too.)
    pub async fn head_object(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        let mut call = Call::new("HeadObject", Method::HEAD, Some(key));
        call.accept = &[404];
        let answer = self.send(&call).await?;
        if answer.status == 404 {
            return Ok(None);
        }
        let size = header(&answer, "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| self.decode_error(&call, answer.status, "no Content-Length".into()))?;
        let etag = self.etag_header(&call, &answer)?;
        let last_modified = header(&answer, "last-modified")
            .and_then(xml::parse_http_date)
            .unwrap_or(UNIX_EPOCH);
        Ok(Some(ObjectMeta {
            key: key.to_owned(),
            size,
            etag,
            last_modified,
        }))
    }

    /// Bytes `range` of the object, shorter at its end and empty past it (or for an empty
    /// object). With `if_match`, a changed or deleted object fails with a
    /// [`NotFound`](super::ObjectErrorKind::NotFound) error (HTTP 412): the object the caller
    /// knew is gone.
    pub async fn get_object_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, ObjectError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let mut call = Call::new("GetObject", Method::GET, Some(key))
            .header("range", format!("bytes={}-{}", range.start, range.end - 1));
        call.accept = &[416];
        // The body is read no further than the range, whatever the server sends.
        call.range = Some(range.clone());
        if let Some(etag) = if_match {
            call = call.header("if-match", xml::quote_etag(etag));
        }
        let answer = self.send(&call).await?;
        match answer.status {
            416 => Ok(Bytes::new()),
            206 => {
                let start = header(&answer, "content-range")
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(start, _)| start.parse::<u64>().ok());
                if start.is_some_and(|start| start != range.start) {
                    return Err(self.decode_error(
                        &call,
                        206,
                        format!("asked from {} but got {start:?}", range.start),
                    ));
                }
                let wanted = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
                let mut body = answer.body;
                body.truncate(wanted);
                Ok(body)
            }
            // A server that ignores Range sends the whole object: the transport kept only
            // bytes `range` of it.
            _ => Ok(answer.body),
        }
    }

    /// Writes a whole object (up to 5 GiB); returns its ETag.
    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<String, ObjectError> {
        let mut call = Call::new("PutObject", Method::PUT, Some(key)).body(body);
        call.unsigned_payload = true;
        let answer = self.send(&call).await?;
        self.etag_header(&call, &answer)
    }

    /// Starts a multipart upload; returns its upload ID.
    ///
    /// The call is not idempotent: when it took more than one attempt, an earlier attempt may
    /// have started an upload whose answer was lost, which nobody would ever complete or abort
    /// (and which is billed). So after a retried start, the uploads of exactly `key` the server
    /// started since the first attempt (less [`CLOCK_SLACK`]) other than the one answered are
    /// aborted, best effort. The residual risk: another client starting an upload of the very
    /// same key in that second or two has it aborted; its write raced ours for the object anyway.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, ObjectError> {
        let call = Call::new("CreateMultipartUpload", Method::POST, Some(key))
            .query("uploads", "")
            .body(Bytes::new());
        let started = SystemTime::now();
        let (answer, attempts) = self.send_counted(&call).await?;
        let id = xml::parse_upload_id(&answer.body)
            .map_err(|e| self.decode_error(&call, answer.status, e.to_string()))?;
        if attempts > 1 {
            self.abort_lost_starts(key, &id, started..SystemTime::now())
                .await;
        }
        Ok(id)
    }

    /// Aborts the uploads of exactly `key` started `during` the call (widened by [`CLOCK_SLACK`]),
    /// except `kept`: the starts of a retried CreateMultipartUpload whose answers were lost.
    async fn abort_lost_starts(&self, key: &str, kept: &str, during: Range<SystemTime>) {
        let from = during.start.checked_sub(CLOCK_SLACK).unwrap_or(UNIX_EPOCH);
        let to = during.end + CLOCK_SLACK;
        let uploads = match self.list_multipart_uploads(key).await {
            Ok(uploads) => uploads,
            Err(e) => {
                tracing::warn!(key, error = %e, "a retried multipart start may have left an upload: cannot list them");
                return;
            }
        };
        for upload in uploads
            .iter()
            .filter(|u| u.key == key && u.upload_id != kept && (from..=to).contains(&u.initiated))
        {
            match self.abort_multipart_upload(key, &upload.upload_id).await {
                Ok(()) => {
                    tracing::info!(
                        key,
                        upload_id = upload.upload_id,
                        "aborted an upload a lost answer of a retried start left"
                    )
                }
                Err(e) => {
                    tracing::warn!(key, upload_id = upload.upload_id, error = %e, "cannot abort an upload a retried start left")
                }
            }
        }
    }

    /// Uploads part `number` (1 to 10000); returns its ETag. Every part but the last must be at
    /// least 5 MiB on real servers.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<String, ObjectError> {
        let mut call = Call::new("UploadPart", Method::PUT, Some(key))
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .body(body);
        call.unsigned_payload = true;
        if !(1..=MAX_PARTS).contains(&number) {
            return Err(self.invalid_part(&call, number));
        }
        let answer = self.send(&call).await?;
        self.etag_header(&call, &answer)
    }

    /// Makes the uploaded parts the object; returns its ETag. Parts may be given in any order.
    /// S3 may answer 200 and then an `<Error>`: that is an error (retried when transient). If a
    /// retry follows a completion whose answer was lost, the server says `NoSuchUpload`.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, ObjectError> {
        let mut call = Call::new("CompleteMultipartUpload", Method::POST, Some(key))
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .body(Bytes::from(xml::complete_body(parts)));
        call.error_in_200 = true;
        if parts.is_empty() {
            return Err(ObjectError::InvalidArgument {
                op: call.op,
                resource: self.resource(Some(key)),
                detail: "no parts to complete".into(),
            });
        }
        if let Some((number, _)) = parts.iter().find(|(n, _)| !(1..=MAX_PARTS).contains(n)) {
            return Err(self.invalid_part(&call, *number));
        }
        let answer = self.send(&call).await?;
        xml::parse_etag_result(&answer.body, "CompleteMultipartUploadResult")
            .map_err(|e| self.decode_error(&call, answer.status, e.to_string()))
    }

    /// Drops an upload and its parts. An upload that is already gone is success.
    pub async fn abort_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        let mut call = Call::new("AbortMultipartUpload", Method::DELETE, Some(key))
            .query("uploadId", upload_id);
        call.accept = &[404];
        self.send(&call).await.map(drop)
    }

    /// Every multipart upload in progress whose key starts with `prefix`, in the server's order
    /// (by key, then by start), all pages of the listing gathered (`key-marker` and
    /// `upload-id-marker`). Keys are requested URL-encoded, so any key comes back intact.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, ObjectError> {
        let mut uploads = Vec::new();
        let mut marker: Option<(String, Option<String>)> = None;
        loop {
            let mut call = Call::new("ListMultipartUploads", Method::GET, None)
                .query("uploads", "")
                .query("encoding-type", "url")
                .query("prefix", prefix);
            call.subject = Some(prefix);
            if let Some((key, id)) = &marker {
                call = call.query("key-marker", key.as_str());
                if let Some(id) = id {
                    call = call.query("upload-id-marker", id.as_str());
                }
            }
            let answer = self.send(&call).await?;
            let page = xml::parse_uploads(&answer.body)
                .map_err(|e| self.decode_error(&call, answer.status, e.to_string()))?;
            uploads.extend(page.uploads);
            match page.next {
                None => return Ok(uploads),
                Some(next) if marker.as_ref() == Some(&next) => {
                    return Err(self.decode_error(
                        &call,
                        answer.status,
                        format!("the listing does not advance past {next:?}"),
                    ));
                }
                Some(next) => marker = Some(next),
            }
        }
    }

    /// Deletes one object. A missing object is success, as in S3.
    pub async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        let mut call = Call::new("DeleteObject", Method::DELETE, Some(key));
        call.accept = &[404];
        self.send(&call).await.map(drop)
    }

    /// The unquoted `ETag` header of a write.
    pub(super) fn etag_header(
        &self,
        call: &Call<'_>,
        answer: &Answer,
    ) -> Result<String, ObjectError> {
        header(answer, "etag")
            .map(|etag| xml::unquote_etag(etag).to_owned())
            .filter(|etag| !etag.is_empty())
            .ok_or_else(|| self.decode_error(call, answer.status, "no ETag header".into()))
    }

    fn invalid_part(&self, call: &Call<'_>, number: u32) -> ObjectError {
        ObjectError::InvalidArgument {
            op: call.op,
            resource: self.resource(call.key),
            detail: format!("part number {number} is outside 1..={MAX_PARTS}"),
        }
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::ObjectErrorKind;
    use super::super::test_server::{
        Canned, TEST_SECRET, TestServer, test_client, verify_signature,
    };
    use super::*;

    #[tokio::test]
    async fn head_object_reads_meta_and_404_is_none() {
        let server = TestServer::start(|request| match request.path.as_str() {
            "/test-bucket/there" => Canned::status(200)
                .header("content-length", "1234")
                .header("etag", "\"abc\"")
                .header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            "/test-bucket/forbidden" => Canned::status(403),
            _ => Canned::status(404),
        })
        .await;
        let c = test_client(&server, |_| {});
        let meta = c.head_object("there").await.unwrap().unwrap();
        assert_eq!(
            meta,
            ObjectMeta {
                key: "there".into(),
                size: 1234,
                etag: "abc".into(),
                last_modified: UNIX_EPOCH + Duration::from_secs(1_445_412_480),
            }
        );
        assert_eq!(c.head_object("missing").await.unwrap(), None);
        let error = c.head_object("forbidden").await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Forbidden);
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "nothing retried");
        assert!(requests.iter().all(|r| r.method == "HEAD"));
        verify_signature(&requests[0], TEST_SECRET, "us-east-1");
    }

    #[tokio::test]
    async fn head_bucket_reports_a_missing_bucket() {
        let server = TestServer::start(|request| match request.index {
            0 => Canned::status(200),
            _ => Canned::status(404),
        })
        .await;
        let c = test_client(&server, |_| {});
        c.head_bucket().await.unwrap();
        let error = c.head_bucket().await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::NotFound);
        assert_eq!(server.requests()[0].path, "/test-bucket");
    }

    #[tokio::test]
    async fn ranged_reads_handle_416_412_and_servers_ignoring_range() {
        let server = TestServer::start(|request| match request.path.as_str() {
            "/test-bucket/partial" => Canned::status(206)
                .header("content-range", "bytes 2-4/10")
                .with_body(b"234"),
            "/test-bucket/empty" => Canned::xml(416, "<Error><Code>InvalidRange</Code></Error>"),
            "/test-bucket/changed" => {
                Canned::xml(412, "<Error><Code>PreconditionFailed</Code></Error>")
            }
            "/test-bucket/whole" => Canned::status(200).with_body(b"0123456789"),
            "/test-bucket/wrong-start" => {
                Canned::status(206).header("content-range", "bytes 0-2/10")
            }
            _ => Canned::xml(404, "<Error><Code>NoSuchKey</Code></Error>"),
        })
        .await;
        let c = test_client(&server, |_| {});
        assert_eq!(
            c.get_object_range("partial", 2..5, None).await.unwrap(),
            &b"234"[..]
        );
        let requests = server.requests();
        assert_eq!(requests[0].header("range"), Some("bytes=2-4"));
        assert_eq!(requests[0].header("if-match"), None);

        assert!(
            c.get_object_range("empty", 0..4096, Some("\"e\""))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(server.requests()[1].header("if-match"), Some("\"e\""));

        let error = c
            .get_object_range("changed", 0..1, Some("old"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::NotFound);
        assert_eq!(error.status(), Some(412));

        assert_eq!(
            c.get_object_range("whole", 3..6, None).await.unwrap(),
            &b"345"[..]
        );
        assert_eq!(
            c.get_object_range("whole", 8..20, None).await.unwrap(),
            &b"89"[..]
        );
        assert_eq!(
            c.get_object_range("whole", 30..40, None).await.unwrap(),
            Bytes::new()
        );

        let error = c
            .get_object_range("wrong-start", 5..8, None)
            .await
            .unwrap_err();
        assert!(matches!(error, ObjectError::Decode { .. }), "{error:?}");

        let error = c.get_object_range("missing", 0..1, None).await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::NotFound);
        assert_eq!(error.code(), Some("NoSuchKey"));

        let before = server.requests().len();
        assert!(
            c.get_object_range("whole", 5..5, None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            server.requests().len(),
            before,
            "an empty range sends nothing"
        );
    }

    /// A server that answers every GET with far more than the range (a 1 TiB `Content-Length`,
    /// 1 MiB of `0123456789...` sent, then silence with the connection open): a 206 for
    /// `/test-bucket/longer`, a 200 (the range ignored) for anything else.
    async fn oversending_server() -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let status = if request.starts_with("GET /test-bucket/longer") {
                        "206 Partial Content\r\ncontent-range: bytes 10-19/1099511627776"
                    } else {
                        "200 OK"
                    };
                    let head =
                        format!("HTTP/1.1 {status}\r\ncontent-length: 1099511627776\r\n\r\n");
                    let body: Vec<u8> = (0..1 << 20).map(|i| b'0' + (i % 10) as u8).collect();
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        (endpoint, task)
    }

    #[tokio::test]
    async fn ranged_reads_stop_at_the_range_however_much_the_server_sends() {
        let (endpoint, server) = oversending_server().await;
        let mut config =
            crate::ObjectConfig::new(&endpoint, super::super::test_server::TEST_BUCKET);
        config.timeout = Duration::from_secs(3);
        config.max_attempts = 1;
        let c = ObjectClient::new(
            config,
            crate::ObjectCredentials::new("AKIDtest", "secret", None),
        )
        .unwrap();
        // Read whole, either answer would be 1 TiB: the call would time out (or run out of
        // memory) instead of answering.
        assert_eq!(
            c.get_object_range("longer", 10..20, None).await.unwrap(),
            &b"0123456789"[..],
            "a 206 longer than the range is cut at its length"
        );
        assert_eq!(
            c.get_object_range("whole", 13..16, None).await.unwrap(),
            &b"345"[..],
            "a 200 gives the range's slice of the object"
        );
        assert_eq!(
            c.get_object_range("whole", 1_000_000..1_000_012, None)
                .await
                .unwrap(),
            &b"012345678901"[..],
            "the bytes before the range are skipped as they arrive"
        );
        server.abort();
    }

    #[tokio::test]
    async fn multipart_upload_round_trip() {
        let server = TestServer::start(|request| {
            match (request.method.as_str(), request.param("uploads"), request.param("uploadId")) {
                ("POST", Some(_), _) => Canned::xml(
                    200,
                    "<InitiateMultipartUploadResult><Bucket>test-bucket</Bucket><Key>big file</Key><UploadId>up+1/=</UploadId></InitiateMultipartUploadResult>",
                ),
                ("PUT", _, Some(_)) => Canned::status(200)
                    .header("etag", &format!("\"etag{}\"", request.param("partNumber").unwrap())),
                ("POST", _, Some(_)) => Canned::xml(
                    200,
                    "\n  <CompleteMultipartUploadResult><ETag>\"whole-2\"</ETag></CompleteMultipartUploadResult>",
                ),
                ("DELETE", _, Some(_)) => Canned::xml(404, "<Error><Code>NoSuchUpload</Code></Error>"),
                _ => Canned::status(400),
            }
        })
        .await;
        let c = test_client(&server, |_| {});
        let upload = c.create_multipart_upload("big file").await.unwrap();
        assert_eq!(upload, "up+1/=");
        let second = c
            .upload_part("big file", &upload, 2, Bytes::from_static(b"second"))
            .await
            .unwrap();
        let first = c
            .upload_part("big file", &upload, 1, Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("etag1", "etag2"));
        let etag = c
            .complete_multipart_upload("big file", &upload, &[(2, second), (1, first)])
            .await
            .unwrap();
        assert_eq!(etag, "whole-2");
        c.abort_multipart_upload("big file", &upload).await.unwrap();

        let requests = server.requests();
        for request in &requests {
            verify_signature(request, TEST_SECRET, "us-east-1");
            assert_eq!(request.path, "/test-bucket/big%20file");
        }
        assert_eq!(requests[0].query, "uploads=");
        assert_eq!(requests[0].header("content-length"), Some("0"));
        assert_eq!(requests[1].query, "partNumber=2&uploadId=up%2B1%2F%3D");
        assert_eq!(requests[1].body_text(), "second");
        assert_eq!(
            requests[1].header("x-amz-content-sha256"),
            Some("UNSIGNED-PAYLOAD")
        );
        let complete = requests[3].body_text();
        assert!(
            complete.contains("<Part><PartNumber>1</PartNumber><ETag>&quot;etag1&quot;</ETag></Part><Part><PartNumber>2</PartNumber>"),
            "{complete}"
        );
        assert_eq!(requests[3].header("content-type"), Some("application/xml"));
        assert_eq!(requests[4].method, "DELETE");

        let error = c.upload_part("k", "u", 0, Bytes::new()).await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
        let error = c
            .upload_part("k", "u", 10_001, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
        let error = c
            .complete_multipart_upload("k", "u", &[])
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
        assert_eq!(server.requests().len(), 5, "refused before sending");
    }

    #[tokio::test]
    async fn an_error_in_a_200_completion_is_an_error_and_transient_ones_are_retried() {
        let server = TestServer::start(|request| match request.index {
            0 => Canned::xml(200, "  <Error><Code>InternalError</Code><Message>retry</Message></Error>"),
            1 => Canned::xml(200, "<CompleteMultipartUploadResult><ETag>\"ok\"</ETag></CompleteMultipartUploadResult>"),
            _ => Canned::xml(200, "<?xml version=\"1.0\"?><Error><Code>InvalidPart</Code><Message>part 1 is missing</Message><RequestId>rq</RequestId></Error>"),
        })
        .await;
        let c = test_client(&server, |_| {});
        let parts = [(1, "a".to_owned())];
        assert_eq!(
            c.complete_multipart_upload("k", "u", &parts).await.unwrap(),
            "ok"
        );
        let error = c
            .complete_multipart_upload("k", "u", &parts)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
        assert_eq!(error.status(), Some(200));
        assert_eq!(error.code(), Some("InvalidPart"));
        assert_eq!(error.request_id(), Some("rq"));
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn deleting_a_missing_object_or_upload_succeeds() {
        let server = TestServer::start(|request| match request.index {
            0 => Canned::status(204),
            1 => Canned::xml(404, "<Error><Code>NoSuchKey</Code></Error>"),
            _ => Canned::xml(403, "<Error><Code>AccessDenied</Code></Error>"),
        })
        .await;
        let c = test_client(&server, |_| {});
        c.delete_object("a").await.unwrap();
        c.delete_object("a").await.unwrap();
        let error = c.delete_object("a").await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Forbidden);
        assert!(server.requests().iter().all(|r| r.method == "DELETE"));
    }

    #[tokio::test]
    async fn multipart_uploads_are_listed_page_after_page() {
        let server = TestServer::start(|request| match request.param("key-marker") {
            None => Canned::xml(
                200,
                "<ListMultipartUploadsResult><EncodingType>url</EncodingType>\
                 <IsTruncated>true</IsTruncated><NextKeyMarker>pv/a+b%2B</NextKeyMarker>\
                 <NextUploadIdMarker>u/1=</NextUploadIdMarker>\
                 <Upload><Key>pv/a+b%2B</Key><UploadId>u/1=</UploadId>\
                 <Initiated>2024-03-09T12:34:56.000Z</Initiated></Upload>\
                 </ListMultipartUploadsResult>",
            ),
            Some(_) => Canned::xml(
                200,
                "<ListMultipartUploadsResult><EncodingType>url</EncodingType>\
                 <IsTruncated>false</IsTruncated>\
                 <Upload><Key>pv/c</Key><UploadId>u2</UploadId>\
                 <Initiated>2024-03-09T12:35:00Z</Initiated></Upload>\
                 </ListMultipartUploadsResult>",
            ),
        })
        .await;
        let c = test_client(&server, |_| {});
        let uploads = c.list_multipart_uploads("pv/").await.unwrap();
        let at = |seconds| UNIX_EPOCH + Duration::from_secs(seconds);
        assert_eq!(
            uploads,
            vec![
                MultipartUpload {
                    key: "pv/a b+".into(),
                    upload_id: "u/1=".into(),
                    initiated: at(1_709_987_696),
                },
                MultipartUpload {
                    key: "pv/c".into(),
                    upload_id: "u2".into(),
                    initiated: at(1_709_987_700),
                },
            ]
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        for request in &requests {
            verify_signature(request, TEST_SECRET, "us-east-1");
            assert_eq!(request.method, "GET");
            assert_eq!(request.path, "/test-bucket");
        }
        assert_eq!(requests[0].query, "encoding-type=url&prefix=pv%2F&uploads=");
        assert_eq!(
            requests[1].query,
            "encoding-type=url&key-marker=pv%2Fa%20b%2B&prefix=pv%2F&upload-id-marker=u%2F1%3D&uploads="
        );

        // A server that hands out the same page again is an error, not an endless loop.
        server.reset(|_| {
            Canned::xml(
                200,
                "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>\
                 <NextKeyMarker>k</NextKeyMarker></ListMultipartUploadsResult>",
            )
        });
        let error = c.list_multipart_uploads("k").await.unwrap_err();
        assert!(matches!(error, ObjectError::Decode { .. }), "{error:?}");
        assert_eq!(server.requests().len(), 2);
    }

    /// A start whose answer is lost and is retried leaves the first upload on the server: it is
    /// aborted, and only it (not the answered one, not another key's, not an older one).
    #[tokio::test]
    async fn a_retried_start_aborts_the_upload_its_lost_answer_left() {
        let now = xml_time(SystemTime::now());
        let old = xml_time(SystemTime::now() - Duration::from_secs(3600));
        let starts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&starts);
        let server = TestServer::start(move |r| match (r.method.as_str(), r.param("uploadId")) {
            ("POST", _) => {
                // The first start is carried out, but its answer is lost (a 500 here).
                if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    Canned::status(500)
                } else {
                    Canned::xml(
                        200,
                        "<InitiateMultipartUploadResult><UploadId>answered</UploadId>\
                         </InitiateMultipartUploadResult>",
                    )
                }
            }
            ("GET", _) => Canned::xml(
                200,
                &format!(
                    "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
                     <Upload><Key>f</Key><UploadId>lost</UploadId><Initiated>{now}</Initiated></Upload>\
                     <Upload><Key>f</Key><UploadId>answered</UploadId><Initiated>{now}</Initiated></Upload>\
                     <Upload><Key>f</Key><UploadId>yesterdays</UploadId><Initiated>{old}</Initiated></Upload>\
                     <Upload><Key>f2</Key><UploadId>other-key</UploadId><Initiated>{now}</Initiated></Upload>\
                     </ListMultipartUploadsResult>"
                ),
            ),
            ("DELETE", Some(_)) => Canned::status(204),
            _ => Canned::status(400),
        })
        .await;
        let c = test_client(&server, |config| {
            config.retry_base = Duration::from_millis(1)
        });
        assert_eq!(c.create_multipart_upload("f").await.unwrap(), "answered");
        let aborted: Vec<String> = server
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .filter_map(|r| r.param("uploadId"))
            .collect();
        assert_eq!(aborted, ["lost"]);

        // A start answered at once lists nothing and aborts nothing.
        let before = server.requests().len();
        assert_eq!(c.create_multipart_upload("g").await.unwrap(), "answered");
        let after = server.requests();
        assert_eq!(after.len(), before + 1, "{:?}", &after[before..]);
    }

    /// `2026-12-07T00:33:15.000Z`, as S3 listings write times.
    fn xml_time(t: SystemTime) -> String {
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let d = crate::sigv4::amz_date(secs);
        format!(
            "{}-{}-{}T{}:{}:{}.000Z",
            &d[0..4],
            &d[4..6],
            &d[6..8],
            &d[9..11],
            &d[11..13],
            &d[13..15]
        )
    }

    #[tokio::test]
    async fn listing_asks_for_url_encoding_and_decodes_keys() {
        let server = TestServer::start(|_| {
            Canned::xml(
                200,
                "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>\
                 <NextContinuationToken>next/+=</NextContinuationToken>\
                 <Contents><Key>pv/a+b%0A</Key><Size>3</Size><ETag>\"x\"</ETag>\
                 <LastModified>2024-03-09T12:34:56.000Z</LastModified></Contents>\
                 <CommonPrefixes><Prefix>pv/d%2B/</Prefix></CommonPrefixes></ListBucketResult>",
            )
        })
        .await;
        let c = test_client(&server, |_| {});
        let page = c
            .list_objects_v2("pv/", Some("/"), None, None)
            .await
            .unwrap();
        assert_eq!(page.objects[0].key, "pv/a b\n");
        assert_eq!(page.common_prefixes, vec!["pv/d+/"]);
        assert_eq!(page.next_token.as_deref(), Some("next/+="));
        let request = &server.requests()[0];
        assert_eq!(
            request.query,
            "delimiter=%2F&encoding-type=url&list-type=2&prefix=pv%2F"
        );
        assert_eq!(request.param("prefix").as_deref(), Some("pv/"));
    }
}
