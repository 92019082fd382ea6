//! The seam between code that works on a bucket and the object client: [`BucketApi`], the
//! single-bucket operations a caller may make (one method per S3 request kind), and [`Buckets`],
//! which opens a bucket from an [`ObjectConfig`] and [`ObjectCredentials`]. [`ObjectClient`]
//! implements the first by delegating to its own methods, [`RemoteBuckets`] the second by
//! building one. The in-memory `fake::FakeBuckets` (feature `fake`) implements both for
//! tests.
//!
//! It owns no wire protocol and adds no behaviour: errors, retries and the meaning of every
//! answer are the client's, documented on its methods. Only the operations some seam user needs
//! are here; add one when a caller needs it, not before.

use std::future::Future;
use std::ops::Range;

use bytes::Bytes;

use super::{ListPage, ObjectClient, ObjectConfig, ObjectCredentials, ObjectError, ObjectMeta};

/// What one ListObjectsV2 request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListParams<'a> {
    /// Only keys starting with this (empty: every key).
    pub prefix: &'a str,
    /// Keys containing this after the prefix roll up into `common_prefixes`.
    pub delimiter: Option<&'a str>,
    /// The `next_token` of the previous page.
    pub continuation: Option<&'a str>,
    /// At most this many keys and common prefixes (the server caps it at 1000, its default).
    pub max_keys: Option<u32>,
}

impl<'a> ListParams<'a> {
    /// The first page of every key under `prefix`, at the server's default page size.
    pub fn prefix(prefix: &'a str) -> Self {
        ListParams {
            prefix,
            ..ListParams::default()
        }
    }
}

/// The operations on the objects of one bucket. Each answers as the [`ObjectClient`] method of
/// the same name does, with the same [`ObjectError`] variants and kinds.
pub trait BucketApi: Send + Sync + 'static {
    /// The object's size, ETag and time; `None` when it (or its bucket) does not exist.
    fn head_object(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectMeta>, ObjectError>> + Send;

    /// Bytes `range` of the object, shorter at its end and empty past it.
    fn get_object_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Bytes, ObjectError>> + Send;

    /// Writes a whole object; returns its ETag.
    fn put_object(
        &self,
        key: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<String, ObjectError>> + Send;

    /// One page of a listing.
    fn list_objects_v2(
        &self,
        params: ListParams<'_>,
    ) -> impl Future<Output = Result<ListPage, ObjectError>> + Send;

    /// Deletes `keys`; returns the ones the server could not delete, with their error codes.
    /// Missing keys count as deleted.
    fn delete_objects(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(String, String)>, ObjectError>> + Send;

    /// Deletes one object; a missing one is success.
    fn delete_object(&self, key: &str) -> impl Future<Output = Result<(), ObjectError>> + Send;
}

impl BucketApi for ObjectClient {
    async fn head_object(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError> {
        ObjectClient::head_object(self, key).await
    }

    async fn get_object_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, ObjectError> {
        ObjectClient::get_object_range(self, key, range, if_match).await
    }

    async fn put_object(&self, key: &str, body: Bytes) -> Result<String, ObjectError> {
        ObjectClient::put_object(self, key, body).await
    }

    async fn list_objects_v2(&self, params: ListParams<'_>) -> Result<ListPage, ObjectError> {
        ObjectClient::list_objects_v2(
            self,
            params.prefix,
            params.delimiter,
            params.continuation,
            params.max_keys,
        )
        .await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        ObjectClient::delete_objects(self, keys).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        ObjectClient::delete_object(self, key).await
    }
}

/// Where buckets come from: opens the bucket `config` names with `credentials`. Opening sends
/// nothing; a bad configuration fails here, bad credentials at the first request.
pub trait Buckets: Send + Sync + 'static {
    type Bucket: BucketApi;

    fn open(
        &self,
        config: ObjectConfig,
        credentials: ObjectCredentials,
    ) -> Result<Self::Bucket, ObjectError>;
}

/// The buckets of real servers, reached with an [`ObjectClient`] each.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteBuckets;

impl Buckets for RemoteBuckets {
    type Bucket = ObjectClient;

    fn open(
        &self,
        config: ObjectConfig,
        credentials: ObjectCredentials,
    ) -> Result<ObjectClient, ObjectError> {
        ObjectClient::new(config, credentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectErrorKind;
    use crate::test_server::{Canned, TestServer, test_client};

    #[test]
    fn remote_buckets_refuse_what_the_client_refuses() {
        let error = RemoteBuckets
            .open(
                ObjectConfig::new("ftp://example.com", "b-1"),
                ObjectCredentials::new("id", "key", None),
            )
            .unwrap_err();
        assert!(matches!(error, ObjectError::Config { .. }), "{error}");
        assert_eq!(error.kind(), ObjectErrorKind::Invalid);
    }

    /// Through the trait, every listing parameter reaches the wire, and a missing object still
    /// reads as `None`.
    #[tokio::test]
    async fn the_client_delegates_with_every_argument() {
        let server = TestServer::start(|r| {
            if r.method == "HEAD" {
                Canned::status(404)
            } else {
                Canned::xml(
                    200,
                    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
                )
            }
        })
        .await;
        let client = test_client(&server, |_| {});
        let page = BucketApi::list_objects_v2(
            &client,
            ListParams {
                prefix: "pv/",
                delimiter: Some("/"),
                continuation: Some("tok"),
                max_keys: Some(7),
            },
        )
        .await
        .unwrap();
        assert_eq!(page, ListPage::default());
        assert_eq!(BucketApi::head_object(&client, "pv/x").await.unwrap(), None);
        let list = &server.requests()[0];
        assert_eq!(list.param("prefix").as_deref(), Some("pv/"));
        assert_eq!(list.param("delimiter").as_deref(), Some("/"));
        assert_eq!(list.param("continuation-token").as_deref(), Some("tok"));
        assert_eq!(list.param("max-keys").as_deref(), Some("7"));
        assert_eq!(ListParams::prefix("a/").max_keys, None);
    }
}
