//! The production [`ObjectStore`]: a COS (or any S3-compatible) bucket through
//! `cos_client`, which signs, retries and classifies; this adapter only converts types. A
//! [`StoreError`] keeps the whole text of the client's error (operation, bucket and key, HTTP
//! status, S3 code, the server's message, request ID, and any transport cause under it).

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use cos_client::{ObjectClient, ObjectError, ObjectErrorKind};

use crate::store::{CompletedPart, ListPage, MultipartUpload, ObjectMeta, ObjectStore, StoreError};

#[derive(Debug, Clone)]
pub struct CosStore {
    client: ObjectClient,
}

impl CosStore {
    pub fn new(client: ObjectClient) -> Self {
        CosStore { client }
    }

    pub fn client(&self) -> &ObjectClient {
        &self.client
    }
}

/// `error` and every cause under it, each after a `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn store_error(error: ObjectError) -> StoreError {
    let message = chain(&error);
    match error.kind() {
        ObjectErrorKind::NotFound => StoreError::NotFound(message),
        ObjectErrorKind::Forbidden => StoreError::Forbidden(message),
        ObjectErrorKind::Invalid => StoreError::Invalid(message),
        ObjectErrorKind::Unavailable => StoreError::Unavailable(message),
    }
}

fn meta(m: cos_client::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        key: m.key,
        size: m.size,
        etag: m.etag,
        last_modified: m.last_modified,
    }
}

impl ObjectStore for CosStore {
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ListPage, StoreError> {
        let page = self
            .client
            .list_objects_v2(prefix, delimiter, continuation, max_keys)
            .await
            .map_err(store_error)?;
        Ok(ListPage {
            objects: page.objects.into_iter().map(meta).collect(),
            common_prefixes: page.common_prefixes,
            next_token: page.next_token,
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self
            .client
            .head_object(key)
            .await
            .map_err(store_error)?
            .map(meta))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        self.client
            .get_object_range(key, range, if_match)
            .await
            .map_err(store_error)
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<String, StoreError> {
        self.client.put_object(key, body).await.map_err(store_error)
    }

    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.client
            .create_multipart_upload(key)
            .await
            .map_err(store_error)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        self.client
            .upload_part(key, upload_id, number, body)
            .await
            .map_err(store_error)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<String, StoreError> {
        let parts: Vec<(u32, String)> = parts.iter().map(|p| (p.number, p.etag.clone())).collect();
        self.client
            .complete_multipart_upload(key, upload_id, &parts)
            .await
            .map_err(store_error)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload(key, upload_id)
            .await
            .map_err(store_error)
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, StoreError> {
        let uploads = self
            .client
            .list_multipart_uploads(prefix)
            .await
            .map_err(store_error)?;
        Ok(uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: u.key,
                upload_id: u.upload_id,
                initiated: u.initiated,
            })
            .collect())
    }

    fn call_time_limit(&self) -> Duration {
        self.client.call_time_limit()
    }

    async fn copy(&self, from: &str, to: &str) -> Result<String, StoreError> {
        self.client.copy_object(from, to).await.map_err(store_error)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client.delete_object(key).await.map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_the_servers_words_and_the_kind() {
        let denied = ObjectError::Service {
            op: "GetObject",
            resource: "b-1250000000/pv/f".into(),
            status: 403,
            code: "AccessDenied".into(),
            message: "Access Denied.".into(),
            request_id: "NjQ1".into(),
        };
        assert_eq!(
            store_error(denied),
            StoreError::Forbidden(
                "GetObject b-1250000000/pv/f: HTTP 403 AccessDenied: Access Denied. (request id \
                 NjQ1)"
                    .into()
            )
        );
        let busy = ObjectError::Service {
            op: "PutObject",
            resource: "b/k".into(),
            status: 503,
            code: "SlowDown".into(),
            message: String::new(),
            request_id: String::new(),
        };
        assert_eq!(
            store_error(busy),
            StoreError::Unavailable("PutObject b/k: HTTP 503 SlowDown".into())
        );
    }

    #[test]
    fn the_default_time_limit_is_the_clients_default() {
        let config = cos_client::ObjectConfig::new("http://127.0.0.1:1", "b");
        let credentials = cos_client::ObjectCredentials::new("id", "key", None);
        let store = CosStore::new(ObjectClient::new(config, credentials).unwrap());
        assert_eq!(
            store.call_time_limit(),
            crate::store::DEFAULT_CALL_TIME_LIMIT
        );
    }

    #[test]
    fn a_chain_lists_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("GetObject b/k: cannot reach the server")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            chain(&e),
            "GetObject b/k: cannot reach the server: connection refused"
        );
    }
}
