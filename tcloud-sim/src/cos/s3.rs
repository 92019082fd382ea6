//! The S3 operations COS clients use, as `s3s::S3` over the [`CosStore`]: argument checks and
//! the translation between s3s's types and the store's. Operations not implemented here answer
//! `NotImplemented` (s3s's default).

mod convert;

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use s3s::dto;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::file_body::FileBody;
use super::files::blocking;
use super::listing::{ListQuery, continuation_token, marker_of_token, percent_encode};
use super::model::{CosError, ObjectMeta, PutParams};
use super::store::{Bucket, CosStore};
use convert::{
    MAX_PAGE, attrs, check_conditions, copy_source, encode_if, etag, metadata, non_negative,
    page_size, parse_copy_range, select, timestamp, url_encoding, write_condition,
};

/// What COS reports for an object stored without a Content-Type.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The S3 service of the simulator's COS endpoint.
#[derive(Debug)]
pub struct CosS3 {
    pub store: Arc<CosStore>,
    pub region: String,
    /// The account ID reported as owner of buckets and objects.
    pub owner_id: String,
}

impl CosS3 {
    fn bucket(&self, name: &str) -> S3Result<Arc<Bucket>> {
        Ok(Arc::clone(self.store.bucket(name)?))
    }

    fn owner(&self) -> dto::Owner {
        dto::Owner {
            display_name: Some(self.owner_id.clone()),
            id: Some(self.owner_id.clone()),
        }
    }

    fn list_entry(&self, meta: &ObjectMeta, with_owner: bool, encode: bool) -> dto::Object {
        dto::Object {
            key: Some(if encode {
                percent_encode(&meta.key)
            } else {
                meta.key.clone()
            }),
            e_tag: Some(etag(&meta.etag)),
            size: Some(i64::try_from(meta.size).unwrap_or(i64::MAX)),
            last_modified: Some(timestamp(meta.last_modified)),
            storage_class: Some(dto::ObjectStorageClass::from_static(
                dto::ObjectStorageClass::STANDARD,
            )),
            owner: with_owner.then(|| self.owner()),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl S3 for CosS3 {
    async fn list_buckets(
        &self,
        _req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let buckets = self
            .store
            .buckets()
            .map(|b| dto::Bucket {
                name: Some(b.name().to_owned()),
                creation_date: Some(timestamp(b.created())),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(self.owner()),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(dto::HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(dto::GetBucketLocationOutput {
            location_constraint: Some(dto::BucketLocationConstraint::from(self.region.clone())),
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let max = page_size(input.max_keys, "max-keys")?;
        let encode = url_encoding(input.encoding_type.as_ref())?;
        let after = match &input.continuation_token {
            Some(token) => Some(marker_of_token(token).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "continuation-token {token:?} was not issued by this simulator"
                )
            })?),
            None => input.start_after.clone(),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = bucket.list(&ListQuery {
            prefix: &prefix,
            delimiter: input.delimiter.as_deref(),
            after: after.as_deref(),
            max,
        });
        let with_owner = input.fetch_owner.unwrap_or(false);
        let contents: Vec<dto::Object> = page
            .objects
            .iter()
            .map(|m| self.list_entry(m, with_owner, encode))
            .collect();
        let common_prefixes: Vec<dto::CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(encode_if(encode, p)),
            })
            .collect();
        let key_count = i32::try_from(contents.len() + common_prefixes.len()).unwrap_or(MAX_PAGE);
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_if(encode, prefix)),
            delimiter: input.delimiter.map(|d| encode_if(encode, d)),
            max_keys: Some(i32::try_from(max).unwrap_or(MAX_PAGE)),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_marker.as_deref().map(continuation_token),
            is_truncated: Some(page.truncated),
            start_after: input.start_after.map(|s| encode_if(encode, s)),
            encoding_type: input.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let max = page_size(input.max_keys, "max-keys")?;
        let encode = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = bucket.list(&ListQuery {
            prefix: &prefix,
            delimiter: input.delimiter.as_deref(),
            after: input.marker.as_deref(),
            max,
        });
        let contents = page
            .objects
            .iter()
            .map(|m| self.list_entry(m, true, encode))
            .collect();
        let common_prefixes = page
            .common_prefixes
            .into_iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(encode_if(encode, p)),
            })
            .collect();
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_if(encode, prefix)),
            marker: Some(encode_if(encode, input.marker.unwrap_or_default())),
            delimiter: input.delimiter.map(|d| encode_if(encode, d)),
            max_keys: Some(i32::try_from(max).unwrap_or(MAX_PAGE)),
            is_truncated: Some(page.truncated),
            next_marker: page.next_marker.map(|m| encode_if(encode, m)),
            encoding_type: input.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        if input.part_number.is_some_and(|n| n != 1) {
            return Err(s3_error!(
                NotImplemented,
                "partNumber reads are not simulated"
            ));
        }
        let meta = bucket.get(&input.key)?;
        check_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
            S3ErrorCode::NotModified,
        )?;
        let (_, len, content_range) = select(&meta, input.range.as_ref())?;
        Ok(S3Response::new(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            content_range,
            content_type: Some(
                meta.attrs
                    .content_type
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            ),
            cache_control: meta.attrs.cache_control.clone(),
            content_disposition: meta.attrs.content_disposition.clone(),
            content_encoding: meta.attrs.content_encoding.clone(),
            content_language: meta.attrs.content_language.clone(),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(timestamp(meta.last_modified)),
            metadata: metadata(&meta),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        if input.part_number.is_some_and(|n| n != 1) {
            return Err(s3_error!(
                NotImplemented,
                "partNumber reads are not simulated"
            ));
        }
        let key = input.key.clone();
        let (meta, mut file) = blocking(move || bucket.open_object(&key)).await?;
        check_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
            S3ErrorCode::NotModified,
        )?;
        let (start, len, content_range) = select(&meta, input.range.as_ref())?;
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .map_err(CosError::io(format!("cannot seek in {:?}", meta.key)))?;
        }
        let body = FileBody::new(file, len);
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(dto::StreamingBlob::from(s3s::Body::http_body(body))),
            accept_ranges: Some("bytes".into()),
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            content_range,
            content_type: Some(
                meta.attrs
                    .content_type
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            ),
            cache_control: meta.attrs.cache_control.clone(),
            content_disposition: meta.attrs.content_disposition.clone(),
            content_encoding: meta.attrs.content_encoding.clone(),
            content_language: meta.attrs.content_language.clone(),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(timestamp(meta.last_modified)),
            metadata: metadata(&meta),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let params = PutParams {
            attrs: attrs(
                input.content_type,
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.metadata,
            ),
            content_md5: input.content_md5,
            content_length: non_negative(input.content_length, "Content-Length")?,
            condition: write_condition(input.if_match, input.if_none_match)?,
        };
        let body = input.body.map(s3s::Body::from).unwrap_or_default();
        let meta = bucket.put(&input.key, body, params).await?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(etag(&meta.etag)),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let src = self.bucket(src_bucket)?;
        let dst = self.bucket(&input.bucket)?;
        let source = src.get(src_key)?;
        check_conditions(
            &source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
            S3ErrorCode::PreconditionFailed,
        )?;
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-metadata-directive {other:?} is neither COPY nor REPLACE"
                ));
            }
        };
        if !replace && src_bucket == input.bucket && src_key == input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself \
without changing the object's metadata, storage class, website redirect location or encryption \
attributes."
            ));
        }
        let new_attrs = replace.then(|| {
            attrs(
                input.content_type,
                input.cache_control,
                input.content_disposition,
                input.content_encoding,
                input.content_language,
                input.metadata,
            )
        });
        let meta = dst.copy_from(&input.key, &src, src_key, new_attrs).await?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(etag(&meta.etag)),
                last_modified: Some(timestamp(meta.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let bucket = self.bucket(&req.input.bucket)?;
        let key = req.input.key;
        blocking(move || bucket.delete(&key)).await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let keys: Vec<String> = input.delete.objects.into_iter().map(|o| o.key).collect();
        if keys.len() > MAX_PAGE as usize {
            return Err(s3_error!(
                MalformedXML,
                "DeleteObjects names {} keys; at most {MAX_PAGE} are allowed",
                keys.len()
            ));
        }
        let results = blocking(move || {
            Ok(keys
                .into_iter()
                .map(|key| {
                    let result = bucket.delete(&key);
                    (key, result)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, result) in results {
            match result {
                Ok(_) if quiet => {}
                Ok(_) => deleted.push(dto::DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Err(e) => {
                    let e = S3Error::from(e);
                    errors.push(dto::Error {
                        code: Some(e.code().as_str().to_owned()),
                        key: Some(key),
                        message: e.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let new_attrs = attrs(
            input.content_type,
            input.cache_control,
            input.content_disposition,
            input.content_encoding,
            input.content_language,
            input.metadata,
        );
        let key = input.key.clone();
        let upload = blocking(move || bucket.create_upload(&key, new_attrs)).await?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.id.clone()),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let upload = bucket.upload(&input.upload_id, &input.key)?;
        let body = input.body.map(s3s::Body::from).unwrap_or_default();
        let part = bucket
            .upload_part(
                &upload,
                input.part_number,
                body,
                non_negative(input.content_length, "Content-Length")?,
                input.content_md5.as_deref(),
            )
            .await?;
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let upload = bucket.upload(&input.upload_id, &input.key)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let src = self.bucket(src_bucket)?;
        let source = src.get(src_key)?;
        check_conditions(
            &source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
            S3ErrorCode::PreconditionFailed,
        )?;
        let range = input
            .copy_source_range
            .as_deref()
            .map(parse_copy_range)
            .transpose()?;
        let part = bucket
            .upload_part_copy(&upload, input.part_number, &src, src_key, range)
            .await?;
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(timestamp(part.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let mut parts = Vec::new();
        for part in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let (Some(number), Some(tag)) = (part.part_number, part.e_tag) else {
                return Err(s3_error!(
                    MalformedXML,
                    "every Part of CompleteMultipartUpload needs a PartNumber and an ETag"
                ));
            };
            parts.push((number, tag.value().to_owned()));
        }
        let meta = bucket
            .complete_upload(&input.upload_id, &input.key, &parts)
            .await?;
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            location: Some(format!(
                "http://{}.cos.{}.myqcloud.com/{}",
                input.bucket,
                self.region,
                percent_encode(&input.key)
            )),
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&meta.etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let bucket = self.bucket(&req.input.bucket)?;
        let (upload_id, key) = (req.input.upload_id, req.input.key);
        blocking(move || bucket.abort_upload(&upload_id, &key)).await?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let max = page_size(input.max_uploads, "max-uploads")?;
        let encode = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let mut uploads = Vec::new();
        let mut common_prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut last: Option<(String, Option<String>)> = None;
        for upload in bucket.list_uploads() {
            if !upload.key.starts_with(&prefix) {
                continue;
            }
            let after_marker = match (&input.key_marker, &input.upload_id_marker) {
                (None, _) => true,
                (Some(key), None) => upload.key > *key,
                (Some(key), Some(id)) => {
                    upload.key > *key || (upload.key == *key && upload.id > *id)
                }
            };
            if !after_marker {
                continue;
            }
            let rolled = delimiter.and_then(|d| {
                upload.key[prefix.len()..]
                    .find(d)
                    .map(|i| upload.key[..prefix.len() + i + d.len()].to_owned())
            });
            if let Some(common) = &rolled
                && common_prefixes.last() == Some(common)
            {
                continue;
            }
            if uploads.len() + common_prefixes.len() == max {
                truncated = true;
                break;
            }
            match rolled {
                Some(common) => {
                    last = Some((common.clone(), None));
                    common_prefixes.push(common);
                }
                None => {
                    last = Some((upload.key.clone(), Some(upload.id.clone())));
                    uploads.push(dto::MultipartUpload {
                        key: Some(encode_if(encode, upload.key.clone())),
                        upload_id: Some(upload.id.clone()),
                        initiated: Some(timestamp(upload.initiated)),
                        storage_class: Some(dto::StorageClass::from_static(
                            dto::StorageClass::STANDARD,
                        )),
                        owner: Some(self.owner()),
                        initiator: Some(dto::Initiator {
                            display_name: Some(self.owner_id.clone()),
                            id: Some(self.owner_id.clone()),
                        }),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key_marker, next_upload_id_marker) = match last.filter(|_| truncated) {
            Some((key, id)) => (Some(encode_if(encode, key)), id),
            None => (None, None),
        };
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(encode_if(encode, prefix)),
            delimiter: input.delimiter.map(|d| encode_if(encode, d)),
            key_marker: input.key_marker.map(|k| encode_if(encode, k)),
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(max).unwrap_or(MAX_PAGE)),
            is_truncated: Some(truncated),
            next_key_marker,
            next_upload_id_marker,
            encoding_type: input.encoding_type,
            uploads: Some(uploads),
            common_prefixes: Some(
                common_prefixes
                    .into_iter()
                    .map(|p| dto::CommonPrefix {
                        prefix: Some(encode_if(encode, p)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let upload = bucket.upload(&input.upload_id, &input.key)?;
        let max = page_size(input.max_parts, "max-parts")?;
        let marker = input.part_number_marker.unwrap_or(0);
        let after: Vec<_> = upload
            .parts()
            .into_values()
            .filter(|p| i64::from(p.number) > i64::from(marker))
            .take(max + 1)
            .collect();
        let truncated = after.len() > max;
        let parts: Vec<dto::Part> = after
            .into_iter()
            .take(max)
            .map(|p| dto::Part {
                part_number: i32::try_from(p.number).ok(),
                e_tag: Some(etag(&p.etag)),
                size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                last_modified: Some(timestamp(p.last_modified)),
                ..Default::default()
            })
            .collect();
        let next = if truncated {
            parts.last().and_then(|p| p.part_number)
        } else {
            None
        };
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            max_parts: Some(i32::try_from(max).unwrap_or(MAX_PAGE)),
            is_truncated: Some(truncated),
            storage_class: Some(dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
            owner: Some(self.owner()),
            initiator: Some(dto::Initiator {
                display_name: Some(self.owner_id.clone()),
                id: Some(self.owner_id.clone()),
            }),
            parts: Some(parts),
            ..Default::default()
        }))
    }
}
