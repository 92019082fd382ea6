//! The operations made of several requests: server-side copy (multipart UploadPartCopy above the
//! configured threshold), batched DeleteObjects, and deleting everything under a prefix.

use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::Method;
use tokio::task::JoinSet;

use super::client::Call;
use super::error::ObjectError;
use super::operations::MAX_PARTS;
use super::sigv4::uri_encode;
use super::xml;
use super::{ObjectClient, ObjectMeta};

/// Keys per DeleteObjects request: S3's limit.
pub const DELETE_BATCH: usize = 1000;
/// Part copies in flight at once during a multipart copy.
const COPY_CONCURRENCY: usize = 4;
/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 << 30;

impl ObjectClient {
    /// Copies `from` to `to` inside the bucket, server-side; returns the new ETag. Objects larger
    /// than `multipart_copy_threshold` are copied in parts (UploadPartCopy, each part pinned to
    /// the source's ETag so a concurrent overwrite fails the copy instead of mixing versions).
    pub async fn copy_object(&self, from: &str, to: &str) -> Result<String, ObjectError> {
        let source = self
            .head_object(from)
            .await?
            .ok_or_else(|| ObjectError::Service {
                op: "CopyObject",
                resource: self.resource(Some(from)),
                status: 404,
                code: "NoSuchKey".into(),
                message: "the source object does not exist".into(),
                request_id: String::new(),
            })?;
        if source.size <= self.config().multipart_copy_threshold {
            let mut call = Call::new("CopyObject", Method::PUT, Some(to))
                .header("x-amz-copy-source", self.copy_source(from))
                .body(Bytes::new());
            call.error_in_200 = true;
            let answer = self.send(&call).await?;
            return xml::parse_etag_result(&answer.body, "CopyObjectResult")
                .map_err(|e| self.decode_error(&call, answer.status, e.to_string()));
        }
        let upload_id = self.create_multipart_upload(to).await?;
        let result = match self.copy_parts(&source, to, &upload_id).await {
            Ok(parts) => self.complete_multipart_upload(to, &upload_id, &parts).await,
            Err(error) => Err(error),
        };
        if result.is_err() {
            // Best effort: the copy's own error is what the caller needs; a leftover upload is
            // reaped by the bucket's lifecycle rules.
            if let Err(abort) = self.abort_multipart_upload(to, &upload_id).await {
                tracing::debug!(error = %abort, "cannot abort a failed multipart copy");
            }
        }
        result
    }

    /// `x-amz-copy-source`: bucket and key, the key encoded as in a path.
    fn copy_source(&self, key: &str) -> String {
        format!(
            "{}/{}",
            uri_encode(self.bucket(), false),
            uri_encode(key, true)
        )
    }

    /// Copies every part of `source` into the upload, a few at a time; returns the parts.
    async fn copy_parts(
        &self,
        source: &ObjectMeta,
        to: &str,
        upload_id: &str,
    ) -> Result<Vec<(u32, String)>, ObjectError> {
        let ranges = part_ranges(source.size, self.config().copy_part_size);
        let mut pending = ranges.into_iter();
        let mut running = JoinSet::new();
        let mut done = Vec::new();
        loop {
            while running.len() < COPY_CONCURRENCY {
                let Some((number, first, last)) = pending.next() else {
                    break;
                };
                let client = self.clone();
                let (from, to, upload_id, etag) = (
                    source.key.clone(),
                    to.to_owned(),
                    upload_id.to_owned(),
                    source.etag.clone(),
                );
                running.spawn(async move {
                    let copied = client
                        .upload_part_copy(&from, &to, &upload_id, number, first..=last, &etag)
                        .await;
                    copied.map(|etag| (number, etag))
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined {
                Ok(Ok(part)) => done.push(part),
                // Dropping `running` aborts the other copies.
                Ok(Err(error)) => return Err(error),
                Err(join_error) => {
                    if join_error.is_panic() {
                        std::panic::resume_unwind(join_error.into_panic());
                    }
                    return Err(ObjectError::Cancelled {
                        op: "UploadPartCopy",
                        resource: self.resource(Some(to)),
                    });
                }
            }
        }
        Ok(done)
    }

    async fn upload_part_copy(
        &self,
        from: &str,
        to: &str,
        upload_id: &str,
        number: u32,
        range: std::ops::RangeInclusive<u64>,
        source_etag: &str,
    ) -> Result<String, ObjectError> {
        let mut call = Call::new("UploadPartCopy", Method::PUT, Some(to))
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .header("x-amz-copy-source", self.copy_source(from))
            .header(
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start(), range.end()),
            )
            .header("x-amz-copy-source-if-match", xml::quote_etag(source_etag))
            .body(Bytes::new());
        call.error_in_200 = true;
        let answer = self.send(&call).await?;
        xml::parse_etag_result(&answer.body, "CopyPartResult")
            .map_err(|e| self.decode_error(&call, answer.status, e.to_string()))
    }

    /// Deletes `keys` in batches of 1000 (DeleteObjects, quiet mode); returns the keys the server
    /// could not delete, with their error codes. Missing keys count as deleted.
    pub async fn delete_objects(
        &self,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, ObjectError> {
        let mut failed = Vec::new();
        for batch in keys.chunks(DELETE_BATCH) {
            let body = xml::delete_body(batch);
            let md5 =
                base64::engine::general_purpose::STANDARD.encode(Md5::digest(body.as_bytes()));
            let mut call = Call::new("DeleteObjects", Method::POST, None)
                .query("delete", "")
                .header("content-md5", md5)
                .header("content-type", "application/xml")
                .body(Bytes::from(body));
            call.error_in_200 = true;
            let answer = self.send(&call).await?;
            let errors = xml::parse_delete_result(&answer.body)
                .map_err(|e| self.decode_error(&call, answer.status, e.to_string()))?;
            failed.extend(errors);
        }
        Ok(failed)
    }

    /// Lists every key under `prefix` (all pages) and deletes them; returns how many were
    /// deleted. Keys that cannot be deleted make it fail with [`ObjectError::DeleteFailed`] after
    /// the others are gone. An empty prefix is refused: it would empty the whole bucket.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, ObjectError> {
        const OP: &str = "DeletePrefix";
        if prefix.is_empty() {
            return Err(ObjectError::InvalidArgument {
                op: OP,
                resource: self.resource(None),
                detail: "an empty prefix would delete the whole bucket".into(),
            });
        }
        let mut token: Option<String> = None;
        let mut deleted = 0u64;
        let mut failures: Vec<(String, String)> = Vec::new();
        loop {
            let page = self
                .list_objects_v2(prefix, None, token.as_deref(), Some(DELETE_BATCH as u32))
                .await?;
            let keys: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
            if !keys.is_empty() {
                let failed = self.delete_objects(&keys).await?;
                deleted += (keys.len() - failed.len()) as u64;
                failures.extend(failed);
            }
            match page.next_token {
                Some(next) if token.as_ref() == Some(&next) => {
                    return Err(ObjectError::Decode {
                        op: OP,
                        resource: self.resource(Some(prefix)),
                        status: 200,
                        detail: "the listing returned the same continuation token twice".into(),
                    });
                }
                Some(next) => token = Some(next),
                None => break,
            }
        }
        if let Some((first_key, first_code)) = failures.first() {
            return Err(ObjectError::DeleteFailed {
                op: OP,
                resource: self.resource(Some(prefix)),
                failed: failures.len(),
                first_key: first_key.clone(),
                first_code: first_code.clone(),
            });
        }
        Ok(deleted)
    }
}

/// The parts of a copy of `size` bytes: (number, first byte, last byte), each `part_size` long
/// (grown so that there are at most 10000, and at most 5 GiB each), the last one shorter.
fn part_ranges(size: u64, part_size: u64) -> Vec<(u32, u64, u64)> {
    let part = part_size
        .max(size.div_ceil(u64::from(MAX_PARTS)))
        .clamp(1, MAX_PART_SIZE);
    let mut ranges = Vec::new();
    let mut first = 0u64;
    let mut number = 1u32;
    while first < size {
        let last = (first + part).min(size) - 1;
        ranges.push((number, first, last));
        first = last + 1;
        number += 1;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::ObjectErrorKind;
    use super::super::test_server::{
        Canned, TEST_SECRET, TestServer, test_client, verify_signature,
    };
    use super::*;

    #[test]
    fn part_ranges_cover_the_object_exactly() {
        assert_eq!(part_ranges(10, 4), vec![(1, 0, 3), (2, 4, 7), (3, 8, 9)]);
        assert_eq!(part_ranges(8, 4), vec![(1, 0, 3), (2, 4, 7)]);
        assert_eq!(part_ranges(0, 4), vec![]);
        let huge = part_ranges(5 << 40, 256 << 20);
        assert!(huge.len() <= MAX_PARTS as usize);
        assert_eq!(huge.last().unwrap().2, (5 << 40) - 1);
        for pair in huge.windows(2) {
            assert_eq!(pair[0].2 + 1, pair[1].1);
        }
        assert_eq!(part_ranges(3, 0), vec![(1, 0, 0), (2, 1, 1), (3, 2, 2)]);
    }

    #[tokio::test]
    async fn small_copies_are_one_copy_object() {
        let server = TestServer::start(|request| match request.method.as_str() {
            "HEAD" => Canned::status(200).header("content-length", "10").header("etag", "\"src\""),
            _ => Canned::xml(200, "<CopyObjectResult><LastModified>2024-03-09T12:34:56.000Z</LastModified><ETag>\"copied\"</ETag></CopyObjectResult>"),
        })
        .await;
        let c = test_client(&server, |_| {});
        assert_eq!(c.copy_object("a b/ü+%", "dest").await.unwrap(), "copied");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].method, "PUT");
        assert_eq!(requests[1].path, "/test-bucket/dest");
        assert_eq!(
            requests[1].header("x-amz-copy-source"),
            Some("test-bucket/a%20b/%C3%BC%2B%25")
        );
        verify_signature(&requests[1], TEST_SECRET, "us-east-1");

        server.reset(|request| match request.method.as_str() {
            "HEAD" => Canned::status(200)
                .header("content-length", "10")
                .header("etag", "\"src\""),
            _ => Canned::xml(
                200,
                "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
            ),
        });
        let error = c.copy_object("a", "b").await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Forbidden);

        server.reset(|_| Canned::status(404));
        let error = c.copy_object("missing", "b").await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::NotFound);
        assert_eq!(server.requests().len(), 1, "nothing copied");
    }

    #[tokio::test]
    async fn large_copies_go_part_by_part_pinned_to_the_source() {
        let server = TestServer::start(|request| {
            match (request.method.as_str(), request.param("uploads"), request.param("partNumber")) {
                ("HEAD", _, _) => Canned::status(200).header("content-length", "25").header("etag", "\"src-etag\""),
                ("POST", Some(_), _) => Canned::xml(200, "<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>"),
                ("PUT", _, Some(n)) => Canned::xml(200, &format!("<CopyPartResult><ETag>\"p{n}\"</ETag></CopyPartResult>")),
                ("POST", None, _) => Canned::xml(200, "<CompleteMultipartUploadResult><ETag>\"big-3\"</ETag></CompleteMultipartUploadResult>"),
                _ => Canned::status(400),
            }
        })
        .await;
        let c = test_client(&server, |config| {
            config.multipart_copy_threshold = 20;
            config.copy_part_size = 10;
        });
        assert_eq!(c.copy_object("src", "dst").await.unwrap(), "big-3");
        let requests = server.requests();
        assert_eq!(requests.len(), 1 + 1 + 3 + 1);
        let mut parts: Vec<(String, String)> = requests
            .iter()
            .filter(|r| r.param("partNumber").is_some())
            .map(|r| {
                verify_signature(r, TEST_SECRET, "us-east-1");
                assert_eq!(r.path, "/test-bucket/dst");
                assert_eq!(r.param("uploadId").as_deref(), Some("U1"));
                assert_eq!(r.header("x-amz-copy-source"), Some("test-bucket/src"));
                assert_eq!(r.header("x-amz-copy-source-if-match"), Some("\"src-etag\""));
                (
                    r.param("partNumber").unwrap(),
                    r.header("x-amz-copy-source-range").unwrap().to_owned(),
                )
            })
            .collect();
        parts.sort();
        assert_eq!(
            parts,
            [
                ("1".into(), "bytes=0-9".into()),
                ("2".into(), "bytes=10-19".into()),
                ("3".into(), "bytes=20-24".into())
            ]
        );
        let complete = requests.last().unwrap().body_text();
        assert!(
            complete.contains("<PartNumber>1</PartNumber><ETag>&quot;p1&quot;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>&quot;p2&quot;</ETag></Part><Part><PartNumber>3</PartNumber>"),
            "{complete}"
        );
    }

    #[tokio::test]
    async fn a_failed_part_copy_aborts_the_upload() {
        let server = TestServer::start(|request| {
            match (request.method.as_str(), request.param("uploads"), request.param("partNumber")) {
                ("HEAD", _, _) => Canned::status(200).header("content-length", "30").header("etag", "\"e\""),
                ("POST", Some(_), _) => Canned::xml(200, "<InitiateMultipartUploadResult><UploadId>U2</UploadId></InitiateMultipartUploadResult>"),
                ("PUT", _, Some(n)) if n == "2" => Canned::xml(412, "<Error><Code>PreconditionFailed</Code></Error>"),
                ("PUT", _, Some(_)) => Canned::xml(200, "<CopyPartResult><ETag>\"p\"</ETag></CopyPartResult>"),
                ("DELETE", _, _) => Canned::status(204),
                _ => Canned::status(400),
            }
        })
        .await;
        let c = test_client(&server, |config| {
            config.multipart_copy_threshold = 10;
            config.copy_part_size = 10;
        });
        let error = c.copy_object("src", "dst").await.unwrap_err();
        assert_eq!(
            error.kind(),
            ObjectErrorKind::NotFound,
            "the source changed"
        );
        let requests = server.requests();
        let last = requests.last().unwrap();
        assert_eq!(last.method, "DELETE");
        assert_eq!(last.param("uploadId").as_deref(), Some("U2"));
        assert!(
            !requests
                .iter()
                .any(|r| r.method == "POST" && r.param("uploads").is_none())
        );
    }

    #[tokio::test]
    async fn delete_objects_batches_by_1000_with_content_md5() {
        let server = TestServer::start(|request| {
            let text = request.body_text();
            if text.contains("<Key>k1500</Key>") {
                Canned::xml(200, "<DeleteResult><Error><Key>k1500</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>")
            } else {
                Canned::xml(200, "<DeleteResult></DeleteResult>")
            }
        })
        .await;
        let c = test_client(&server, |_| {});
        let keys: Vec<String> = (0..2500).map(|i| format!("k{i}")).collect();
        let failed = c.delete_objects(&keys).await.unwrap();
        assert_eq!(
            failed,
            vec![("k1500".to_owned(), "AccessDenied".to_owned())]
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 3);
        let mut seen = 0;
        for request in &requests {
            verify_signature(request, TEST_SECRET, "us-east-1");
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                ("POST", "/test-bucket")
            );
            assert_eq!(request.query, "delete=");
            let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&request.body));
            assert_eq!(request.header("content-md5"), Some(md5.as_str()));
            assert!(request.signed_headers().contains(&"content-md5".to_owned()));
            seen += request.body_text().matches("<Object>").count();
        }
        assert_eq!(seen, 2500);
        assert_eq!(requests[2].body_text().matches("<Object>").count(), 500);

        assert!(c.delete_objects(&[]).await.unwrap().is_empty());
        assert_eq!(
            server.requests().len(),
            3,
            "nothing to delete, nothing sent"
        );
    }

    #[tokio::test]
    async fn delete_prefix_pages_through_the_listing() {
        let deleted = Arc::new(AtomicUsize::new(0));
        let counter = deleted.clone();
        let server = TestServer::start(move |request| {
            if request.method == "POST" {
                counter.fetch_add(request.body_text().matches("<Object>").count(), Ordering::SeqCst);
                return Canned::xml(200, "<DeleteResult/>");
            }
            let page = |keys: &[&str], next: Option<&str>| {
                let contents: String = keys
                    .iter()
                    .map(|k| format!("<Contents><Key>{k}</Key><Size>1</Size><ETag>\"e\"</ETag></Contents>"))
                    .collect();
                let next = next
                    .map(|t| format!("<IsTruncated>true</IsTruncated><NextContinuationToken>{t}</NextContinuationToken>"))
                    .unwrap_or_default();
                Canned::xml(200, &format!("<ListBucketResult><EncodingType>url</EncodingType>{next}{contents}</ListBucketResult>"))
            };
            match request.param("continuation-token").as_deref() {
                None => page(&["pv/a", "pv/b%20c"], Some("t+1")),
                Some("t+1") => page(&[], Some("t2")),
                Some("t2") => page(&["pv/d/e"], None),
                Some(other) => panic!("unexpected token {other}"),
            }
        })
        .await;
        let c = test_client(&server, |_| {});
        assert_eq!(c.delete_prefix("pv/").await.unwrap(), 3);
        assert_eq!(deleted.load(Ordering::SeqCst), 3);
        let requests = server.requests();
        let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(
            methods,
            ["GET", "POST", "GET", "GET", "POST"],
            "an empty page deletes nothing"
        );
        assert!(requests[1].body_text().contains("<Key>pv/b c</Key>"));
        assert_eq!(requests[0].param("prefix").as_deref(), Some("pv/"));
        assert_eq!(requests[0].param("max-keys").as_deref(), Some("1000"));
        assert_eq!(requests[0].param("delimiter"), None);

        let error = c.delete_prefix("").await.unwrap_err();
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
    }

    #[tokio::test]
    async fn delete_prefix_reports_keys_it_could_not_delete() {
        let server = TestServer::start(|request| match request.method.as_str() {
            "GET" => Canned::xml(200, "<ListBucketResult><Contents><Key>p/a</Key></Contents><Contents><Key>p/b</Key></Contents></ListBucketResult>"),
            _ => Canned::xml(200, "<DeleteResult><Error><Key>p/b</Key><Code>AccessDenied</Code></Error></DeleteResult>"),
        })
        .await;
        let c = test_client(&server, |_| {});
        let error = c.delete_prefix("p/").await.unwrap_err();
        assert!(
            matches!(&error, ObjectError::DeleteFailed { failed: 1, first_key, .. } if first_key == "p/b"),
            "{error:?}"
        );
        assert_eq!(error.kind(), ObjectErrorKind::Forbidden);

        server.reset(|_| {
            Canned::xml(200, "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken></ListBucketResult>")
        });
        let error = c.delete_prefix("p/").await.unwrap_err();
        assert!(matches!(error, ObjectError::Decode { .. }), "{error:?}");
        assert_eq!(
            server.requests().len(),
            2,
            "a repeated token stops the loop"
        );
    }
}
