//! Conversions between s3s's types and the store's for the S3 operations: error codes,
//! timestamps, ETags, read and write conditions, ranges, page sizes and other arguments, each
//! checked with an error that names it.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use s3s::dto::{self, ETag, ETagCondition, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use crate::cos::listing::percent_encode;
use crate::cos::model::{CosError, ObjectAttrs, ObjectMeta, WriteCondition};

/// The most keys, uploads or parts one listing returns.
pub(super) const MAX_PAGE: i32 = 1000;

impl From<CosError> for S3Error {
    fn from(e: CosError) -> S3Error {
        let code = match &e {
            CosError::NoSuchBucket { .. } => S3ErrorCode::NoSuchBucket,
            CosError::NoSuchKey { .. } => S3ErrorCode::NoSuchKey,
            CosError::NoSuchUpload { .. } => S3ErrorCode::NoSuchUpload,
            CosError::InvalidPart { .. } => S3ErrorCode::InvalidPart,
            CosError::InvalidPartOrder { .. } => S3ErrorCode::InvalidPartOrder,
            CosError::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
            CosError::NoParts { .. } => S3ErrorCode::MalformedXML,
            CosError::BadDigest { .. } => S3ErrorCode::BadDigest,
            CosError::InvalidDigest { .. } => S3ErrorCode::InvalidDigest,
            CosError::IncompleteBody { .. } => S3ErrorCode::IncompleteBody,
            CosError::PreconditionFailed { .. } => S3ErrorCode::PreconditionFailed,
            CosError::InvalidRange { .. } => S3ErrorCode::InvalidRange,
            CosError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            // A body s3s failed to verify (a chunk signature, the payload hash) keeps its code.
            CosError::Body { source, .. } => match source.downcast_ref::<S3Error>() {
                Some(inner) => inner.code().clone(),
                None => S3ErrorCode::IncompleteBody,
            },
            CosError::Io { .. } => {
                tracing::warn!(error = %e, "COS storage failure");
                S3ErrorCode::InternalError
            }
        };
        S3Error::with_message(code, e.to_string())
    }
}

pub(super) fn timestamp(unix_secs: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_secs(u64::try_from(unix_secs).unwrap_or(0)))
}

pub(super) fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

/// A page size: `None` is the maximum, negatives are refused, more than the maximum is cut.
pub(super) fn page_size(value: Option<i32>, name: &str) -> S3Result<usize> {
    match value {
        None => Ok(MAX_PAGE as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "{name} {n} is negative")),
        Some(n) => Ok(n.min(MAX_PAGE) as usize),
    }
}

/// Whether `encoding-type=url` was asked for.
pub(super) fn url_encoding(value: Option<&dto::EncodingType>) -> S3Result<bool> {
    match value {
        None => Ok(false),
        Some(e) if e.as_str() == dto::EncodingType::URL => Ok(true),
        Some(e) => Err(s3_error!(
            InvalidArgument,
            "encoding-type {:?} is not supported; only url is",
            e.as_str()
        )),
    }
}

pub(super) fn non_negative(value: Option<i64>, name: &str) -> S3Result<Option<u64>> {
    value
        .map(|n| u64::try_from(n).map_err(|_| s3_error!(InvalidArgument, "{name} {n} is negative")))
        .transpose()
}

/// Checks GET/HEAD (or, with `failed` = PreconditionFailed, copy-source) conditions, RFC 9110
/// order: If-Match, else If-Unmodified-Since; If-None-Match, else If-Modified-Since.
pub(super) fn check_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
    not_modified: S3ErrorCode,
) -> S3Result<()> {
    let modified = timestamp(meta.last_modified);
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == meta.etag,
    };
    let key = &meta.key;
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(
                PreconditionFailed,
                "{key:?}: If-Match {c:?} but the ETag is {:?}",
                meta.etag
            ));
        }
    } else if let Some(t) = if_unmodified_since
        && modified > *t
    {
        return Err(s3_error!(
            PreconditionFailed,
            "{key:?} was modified after If-Unmodified-Since"
        ));
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(S3Error::with_message(
                not_modified,
                format!(
                    "{key:?}: If-None-Match {c:?} and the ETag is {:?}",
                    meta.etag
                ),
            ));
        }
    } else if let Some(t) = if_modified_since
        && modified <= *t
    {
        return Err(S3Error::with_message(
            not_modified,
            format!("{key:?} was not modified since If-Modified-Since"),
        ));
    }
    Ok(())
}

/// The bytes a Range header selects: start and length, and the Content-Range value. A range that
/// selects no bytes (any range of an empty object) is `InvalidRange` (416).
pub(super) fn select(
    meta: &ObjectMeta,
    range: Option<&dto::Range>,
) -> S3Result<(u64, u64, Option<String>)> {
    let Some(range) = range else {
        return Ok((0, meta.size, None));
    };
    let selected = range.check(meta.size).map_err(|_| {
        s3_error!(
            InvalidRange,
            "{:?}: range {} is not within the object's {} bytes",
            meta.key,
            range.to_header_string(),
            meta.size
        )
    })?;
    // A range of an empty object selects nothing (`bytes=-N` checks as `0..0`): unsatisfiable.
    if selected.is_empty() {
        return Err(s3_error!(
            InvalidRange,
            "{:?}: range {} selects no bytes of the object's {} bytes",
            meta.key,
            range.to_header_string(),
            meta.size
        ));
    }
    let content_range = format!(
        "bytes {}-{}/{}",
        selected.start,
        selected.end - 1,
        meta.size
    );
    Ok((
        selected.start,
        selected.end - selected.start,
        Some(content_range),
    ))
}

/// `x-amz-copy-source-range: bytes=FIRST-LAST`.
pub(super) fn parse_copy_range(value: &str) -> S3Result<(u64, u64)> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range {value:?} is not bytes=FIRST-LAST"
        )
    };
    let (first, last) = value
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    Ok((
        first.parse().map_err(|_| bad())?,
        last.parse().map_err(|_| bad())?,
    ))
}

/// The source of a copy: only `bucket/key` without a version.
pub(super) fn copy_source(source: &dto::CopySource) -> S3Result<(&str, &str)> {
    match source {
        dto::CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(s3_error!(
                    InvalidArgument,
                    "versionId {version_id:?} in x-amz-copy-source: versioning is not simulated"
                ));
            }
            Ok((bucket, key))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "x-amz-copy-source must be BUCKET/KEY; access points are not simulated"
        )),
    }
}

/// The attributes of a new object from its request headers.
pub(super) fn attrs(
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    metadata: Option<dto::Metadata>,
) -> ObjectAttrs {
    ObjectAttrs {
        content_type,
        cache_control,
        content_disposition,
        content_encoding,
        content_language,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
    }
}

pub(super) fn metadata(meta: &ObjectMeta) -> Option<dto::Metadata> {
    (!meta.attrs.metadata.is_empty()).then(|| {
        meta.attrs
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>()
    })
}

pub(super) fn write_condition(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> S3Result<WriteCondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(WriteCondition::Always),
        (None, Some(ETagCondition::Any)) => Ok(WriteCondition::IfAbsent),
        (Some(ETagCondition::Any), None) => Ok(WriteCondition::IfExists),
        (Some(ETagCondition::ETag(e)), None) => Ok(WriteCondition::IfMatch(e.value().to_owned())),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on a write only takes *"
        )),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "If-Match and If-None-Match cannot both be given on a write"
        )),
    }
}

pub(super) fn encode_if(encode: bool, s: String) -> String {
    if encode { percent_encode(&s) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: &str, last_modified: i64) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            data: "d".into(),
            size: 10,
            etag: etag.into(),
            last_modified,
            attrs: ObjectAttrs::default(),
            parts_count: None,
        }
    }

    #[test]
    fn read_conditions_follow_rfc_order() {
        let m = meta("abc", 1000);
        let tag = |v: &str| ETagCondition::ETag(ETag::Strong(v.into()));
        let code = |r: S3Result<()>| r.err().map(|e| e.code().as_str().to_owned());
        let check = |im: Option<&ETagCondition>,
                     inm: Option<&ETagCondition>,
                     ims: Option<i64>,
                     ius: Option<i64>| {
            code(check_conditions(
                &m,
                im,
                inm,
                ims.map(timestamp).as_ref(),
                ius.map(timestamp).as_ref(),
                S3ErrorCode::NotModified,
            ))
        };
        assert_eq!(check(None, None, None, None), None);
        assert_eq!(check(Some(&tag("abc")), None, None, None), None);
        assert_eq!(check(Some(&ETagCondition::Any), None, None, None), None);
        assert_eq!(
            check(Some(&tag("x")), None, None, None).as_deref(),
            Some("PreconditionFailed")
        );
        assert_eq!(
            check(None, Some(&tag("abc")), None, None).as_deref(),
            Some("NotModified")
        );
        assert_eq!(check(None, Some(&tag("x")), None, None), None);
        assert_eq!(
            check(None, None, Some(1000), None).as_deref(),
            Some("NotModified")
        );
        assert_eq!(check(None, None, Some(999), None), None);
        assert_eq!(
            check(None, None, None, Some(999)).as_deref(),
            Some("PreconditionFailed")
        );
        // If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since.
        assert_eq!(check(Some(&tag("abc")), None, None, Some(999)), None);
        assert_eq!(check(None, Some(&tag("x")), Some(1000), None), None);
    }

    #[test]
    fn ranges_select_bytes() {
        let m = meta("abc", 0);
        let range = |s: &str| dto::Range::parse(s).unwrap();
        assert_eq!(select(&m, None).unwrap(), (0, 10, None));
        assert_eq!(
            select(&m, Some(&range("bytes=2-4"))).unwrap(),
            (2, 3, Some("bytes 2-4/10".into()))
        );
        assert_eq!(
            select(&m, Some(&range("bytes=-3"))).unwrap(),
            (7, 3, Some("bytes 7-9/10".into()))
        );
        assert_eq!(
            select(&m, Some(&range("bytes=-30"))).unwrap(),
            (0, 10, Some("bytes 0-9/10".into()))
        );
        assert_eq!(
            select(&m, Some(&range("bytes=8-100"))).unwrap(),
            (8, 2, Some("bytes 8-9/10".into()))
        );
        let err = select(&m, Some(&range("bytes=10-"))).unwrap_err();
        assert_eq!(err.code(), &S3ErrorCode::InvalidRange);
        assert_eq!(err.status_code().map(|s| s.as_u16()), Some(416));
    }

    #[test]
    fn a_suffix_range_of_an_empty_object_is_invalid_range() {
        let empty = ObjectMeta {
            size: 0,
            ..meta("abc", 0)
        };
        for header in ["bytes=-5", "bytes=-1", "bytes=0-", "bytes=0-0"] {
            let range = dto::Range::parse(header).unwrap();
            let err = std::panic::catch_unwind(|| select(&empty, Some(&range)))
                .unwrap_or_else(|_| panic!("{header} on an empty object panicked"))
                .unwrap_err();
            assert_eq!(err.code(), &S3ErrorCode::InvalidRange, "{header}");
            assert_eq!(err.status_code().map(|s| s.as_u16()), Some(416), "{header}");
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert_eq!(parse_copy_range("bytes=0-9").unwrap(), (0, 9));
        assert!(parse_copy_range("0-9").is_err());
        assert!(parse_copy_range("bytes=a-9").is_err());
        assert_eq!(page_size(None, "max-keys").unwrap(), 1000);
        assert_eq!(page_size(Some(5000), "max-keys").unwrap(), 1000);
        assert!(page_size(Some(-1), "max-keys").is_err());
        assert!(url_encoding(Some(&dto::EncodingType::from("url".to_owned()))).unwrap());
        assert!(url_encoding(Some(&dto::EncodingType::from("base64".to_owned()))).is_err());
        assert_eq!(
            write_condition(None, Some(ETagCondition::Any)).unwrap(),
            WriteCondition::IfAbsent
        );
        assert!(write_condition(Some(ETagCondition::Any), Some(ETagCondition::Any)).is_err());
    }

    #[test]
    fn store_errors_keep_their_s3_codes() {
        let cases = [
            (
                CosError::EntityTooSmall {
                    upload_id: "u".into(),
                    part_number: 1,
                    size: 3,
                },
                "EntityTooSmall",
                400,
            ),
            (
                CosError::NoSuchKey {
                    bucket: "b".into(),
                    key: "k".into(),
                },
                "NoSuchKey",
                404,
            ),
            (
                CosError::Io {
                    context: "disk".into(),
                    source: std::io::Error::other("full"),
                },
                "InternalError",
                500,
            ),
        ];
        for (error, code, status) in cases {
            let message = error.to_string();
            let e = S3Error::from(error);
            assert_eq!(e.code().as_str(), code);
            assert_eq!(e.status_code().map(|s| s.as_u16()), Some(status));
            assert_eq!(e.message(), Some(message.as_str()));
        }
    }
}
