//! The S3 XML documents the client reads and writes, and the few text formats inside them
//! (URL-encoded keys, timestamps, quoted ETags). Pure functions over bytes: no I/O.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quick_xml::escape::escape;
use quick_xml::events::Event;
use serde::Deserialize;

use super::{ListPage, MultipartUpload, ObjectMeta};
use tcloud::time::parse_api_time;

/// A document that is not the XML it should be.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

fn utf8(body: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|e| DecodeError(format!("the body is not UTF-8: {e}")))
}

/// Reads a document whose root element must be `what` (serde alone would take any root).
fn deserialize<'de, T: Deserialize<'de>>(body: &'de [u8], what: &str) -> Result<T, DecodeError> {
    let root = root_element(body);
    if root.as_deref() != Some(what) {
        return Err(DecodeError(format!(
            "expected a {what} document, got {}: {}",
            root.map_or_else(|| "no XML".to_owned(), |r| format!("<{r}>")),
            snippet(body)
        )));
    }
    let text = utf8(body)?;
    quick_xml::de::from_str(text.trim_start())
        .map_err(|e| DecodeError(format!("not a {what} document: {e}: {}", snippet(body))))
}

/// The start of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    format!("{text:?}")
}

/// The name of the document's root element, if the body is XML.
pub fn root_element(body: &[u8]) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// An S3 `<Error>` document.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// Reads an `<Error>` document; `None` when the body is something else.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    if root_element(body)? != "Error" {
        return None;
    }
    deserialize(body, "Error").ok()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
    encoding_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(default)]
    last_modified: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

/// Reads a ListObjectsV2 `<ListBucketResult>`. Keys and prefixes are decoded when the server says
/// it encoded them (`<EncodingType>url</EncodingType>`). An unreadable `LastModified` reads as
/// the epoch rather than failing the whole page.
pub fn parse_list(body: &[u8]) -> Result<ListPage, DecodeError> {
    let result: ListBucketResult = deserialize(body, "ListBucketResult")?;
    let encoded = result
        .encoding_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("url"));
    let decode = |text: String| {
        if encoded { url_decode(&text) } else { Ok(text) }
    };
    let objects = result
        .contents
        .into_iter()
        .map(|c| {
            Ok(ObjectMeta {
                key: decode(c.key)?,
                size: c.size,
                etag: unquote_etag(&c.etag).to_owned(),
                last_modified: parse_timestamp(&c.last_modified).unwrap_or(UNIX_EPOCH),
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let common_prefixes = result
        .common_prefixes
        .into_iter()
        .map(|p| decode(p.prefix))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let next_token = result
        .next_continuation_token
        .filter(|token| result.is_truncated && !token.is_empty());
    Ok(ListPage {
        objects,
        common_prefixes,
        next_token,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    upload: Vec<UploadEntry>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    encoding_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: String,
}

/// One page of a ListMultipartUploads listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsPage {
    pub uploads: Vec<MultipartUpload>,
    /// When the listing goes on: the `key-marker` and `upload-id-marker` of the next page.
    pub next: Option<(String, Option<String>)>,
}

/// Reads a `<ListMultipartUploadsResult>`. Keys and the next key marker are decoded when the
/// server says it encoded them; an unreadable `Initiated` reads as the epoch. A truncated page
/// without a `NextKeyMarker` is an error: there would be no way to the next one.
pub fn parse_uploads(body: &[u8]) -> Result<UploadsPage, DecodeError> {
    let result: ListMultipartUploadsResult = deserialize(body, "ListMultipartUploadsResult")?;
    let encoded = result
        .encoding_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("url"));
    let decode = |text: String| {
        if encoded { url_decode(&text) } else { Ok(text) }
    };
    let uploads = result
        .upload
        .into_iter()
        .map(|u| {
            Ok(MultipartUpload {
                key: decode(u.key)?,
                upload_id: u.upload_id,
                initiated: parse_timestamp(&u.initiated).unwrap_or(UNIX_EPOCH),
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let next = if result.is_truncated {
        let key = result
            .next_key_marker
            .filter(|k| !k.is_empty())
            .ok_or_else(|| DecodeError("a truncated listing without NextKeyMarker".into()))?;
        let id = result.next_upload_id_marker.filter(|id| !id.is_empty());
        Some((decode(key)?, id))
    } else {
        None
    };
    Ok(UploadsPage { uploads, next })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateMultipartUploadResult {
    upload_id: String,
}

/// The upload ID of an `<InitiateMultipartUploadResult>`.
pub fn parse_upload_id(body: &[u8]) -> Result<String, DecodeError> {
    let result: InitiateMultipartUploadResult = deserialize(body, "InitiateMultipartUploadResult")?;
    if result.upload_id.is_empty() {
        return Err(DecodeError("empty UploadId".into()));
    }
    Ok(result.upload_id)
}

#[derive(Debug, Deserialize)]
struct EtagResult {
    #[serde(rename = "ETag")]
    etag: String,
}

/// The unquoted ETag of a `<CompleteMultipartUploadResult>`, `<CopyObjectResult>` or
/// `<CopyPartResult>`.
pub fn parse_etag_result(body: &[u8], what: &str) -> Result<String, DecodeError> {
    let result: EtagResult = deserialize(body, what)?;
    Ok(unquote_etag(&result.etag).to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteResult {
    #[serde(default)]
    error: Vec<DeleteError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteError {
    key: String,
    #[serde(default)]
    code: String,
}

/// The keys a `<DeleteResult>` reports as failed, with their error codes.
pub fn parse_delete_result(body: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let result: DeleteResult = deserialize(body, "DeleteResult")?;
    Ok(result.error.into_iter().map(|e| (e.key, e.code)).collect())
}

/// The `<Delete>` request of DeleteObjects, in quiet mode (only failures are reported).
pub fn delete_body(keys: &[String]) -> String {
    let mut out =
        String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>"#);
    for key in keys {
        out.push_str("<Object><Key>");
        out.push_str(&escape(key.as_str()));
        out.push_str("</Key></Object>");
    }
    out.push_str("</Delete>");
    out
}

/// The `<CompleteMultipartUpload>` request, parts in ascending order with quoted ETags.
pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut sorted: Vec<&(u32, String)> = parts.iter().collect();
    sorted.sort_by_key(|(number, _)| *number);
    let mut out =
        String::from(r#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload>"#);
    for (number, etag) in sorted {
        out.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
            escape(quote_etag(etag).as_str())
        ));
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

/// An ETag without its surrounding quotes (S3 sends them quoted, in headers and in XML).
pub fn unquote_etag(etag: &str) -> &str {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(etag)
}

/// An ETag in quotes, as `If-Match` and CompleteMultipartUpload want it.
pub fn quote_etag(etag: &str) -> String {
    format!("\"{}\"", unquote_etag(etag))
}

/// Decodes a key S3 encoded for `encoding-type=url`: `%XX` escapes, and `+` for a space (a real
/// `+` comes as `%2B`), as botocore decodes it.
pub fn url_decode(text: &str) -> Result<String, DecodeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| DecodeError(format!("bad escape in {text:?}")))?;
                out.push(hex);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| DecodeError(format!("{text:?} decodes to non-UTF-8")))
}

/// Parses an ISO 8601 UTC time as S3 listings write it: `2009-10-12T17:50:30.000Z` (the
/// fraction is optional and ignored).
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let whole = match text.split_once('.') {
        Some((seconds, fraction)) => {
            let digits = fraction.strip_suffix('Z')?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            format!("{seconds}Z")
        }
        None => text.to_owned(),
    };
    if !whole.contains('T') {
        return None;
    }
    let seconds = u64::try_from(parse_api_time(&whole)?).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Parses an HTTP date (`Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT`, RFC 7231 IMF-fixdate).
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, rest) = text.trim().split_once(", ")?;
    let mut parts = rest.split(' ');
    let (day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" || parts.next().is_some() {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let day: u32 = day.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    let seconds = parse_api_time(&format!("{year:04}-{month:02}-{day:02}T{time}Z"))?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn parses_a_truncated_listing_with_prefixes_and_url_encoded_keys() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket-1250000000</Name>
  <Prefix>pv%2F</Prefix>
  <KeyCount>3</KeyCount>
  <MaxKeys>3</MaxKeys>
  <Delimiter>%2F</Delimiter>
  <EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated>
  <ContinuationToken>abc</ContinuationToken>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>pv/a+b%2Bc%25.txt</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
    <Owner><ID>1250000000</ID><DisplayName>1250000000</DisplayName></Owner>
  </Contents>
  <CommonPrefixes><Prefix>pv/dir%20one/</Prefix></CommonPrefixes>
  <Contents>
    <Key>pv/%C3%BC%01ctl</Key>
    <LastModified>2024-03-09T12:34:56Z</LastModified>
    <ETag>"0123-2"</ETag>
    <Size>0</Size>
  </Contents>
  <CommonPrefixes><Prefix>pv/%E4%B8%AD/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let page = parse_list(body).unwrap();
        assert_eq!(
            page.objects,
            vec![
                ObjectMeta {
                    key: "pv/a b+c%.txt".into(),
                    size: 434_234,
                    etag: "fba9dede5f27731c9771645a39863328".into(),
                    last_modified: at(1_255_369_830),
                },
                ObjectMeta {
                    key: "pv/ü\u{1}ctl".into(),
                    size: 0,
                    etag: "0123-2".into(),
                    last_modified: at(1_709_987_696),
                },
            ]
        );
        assert_eq!(page.common_prefixes, vec!["pv/dir one/", "pv/中/"]);
        assert_eq!(
            page.next_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
    }

    #[test]
    fn a_listing_without_encoding_keeps_keys_verbatim() {
        let body = br#"<ListBucketResult><IsTruncated>false</IsTruncated>
            <Contents><Key>a+b%20c</Key><Size>1</Size><ETag>"e"</ETag>
            <LastModified>garbage</LastModified></Contents>
            <NextContinuationToken>ignored-when-not-truncated</NextContinuationToken>
            </ListBucketResult>"#;
        let page = parse_list(body).unwrap();
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0].key, "a+b%20c");
        assert_eq!(page.objects[0].last_modified, UNIX_EPOCH);
        assert_eq!(page.next_token, None);
        assert!(page.common_prefixes.is_empty());

        let empty = parse_list(
            b"<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(empty, ListPage::default());
        assert!(parse_list(b"<Error><Code>x</Code></Error>garbage<").is_err());
        let bad_escape = b"<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>%zz</Key></Contents></ListBucketResult>";
        assert!(parse_list(bad_escape).is_err());
    }

    #[test]
    fn parses_error_documents() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The specified key does not exist.</Message>
  <Resource>/bucket/a b</Resource>
  <RequestId>NjQ1ZjFhZTZfOTFjMDI</RequestId>
  <TraceId>OGVmYzZiMmQ3</TraceId>
</Error>"#;
        assert_eq!(
            parse_error(body),
            Some(ErrorBody {
                code: "NoSuchKey".into(),
                message: "The specified key does not exist.".into(),
                request_id: "NjQ1ZjFhZTZfOTFjMDI".into(),
            })
        );
        assert_eq!(parse_error(b"<html>bad gateway</html>"), None);
        assert_eq!(parse_error(b""), None);
        assert_eq!(parse_error(b"not xml at all"), None);
    }

    /// CompleteMultipartUpload and the copies may answer 200, keep the connection alive with
    /// spaces, and only then say whether they failed.
    #[test]
    fn an_error_inside_a_200_answer_is_recognised() {
        let failed = b"   \n  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId></Error>";
        assert_eq!(root_element(failed).as_deref(), Some("Error"));
        let error = parse_error(failed).unwrap();
        assert_eq!(error.code, "InternalError");
        let done = b"  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>http://b.s3.amazonaws.com/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag></CompleteMultipartUploadResult>";
        assert_eq!(
            root_element(done).as_deref(),
            Some("CompleteMultipartUploadResult")
        );
        assert_eq!(parse_error(done), None);
        assert_eq!(
            parse_etag_result(done, "CompleteMultipartUploadResult").unwrap(),
            "3858f62230ac3c915f300c664312c11f-9"
        );
        let copy = b"<CopyPartResult><LastModified>2011-04-11T20:34:56.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyPartResult>";
        assert_eq!(
            parse_etag_result(copy, "CopyPartResult").unwrap(),
            "9b2cf535f27731c974343645a3985328"
        );
    }

    #[test]
    fn multipart_and_delete_documents() {
        let init = b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE+/=</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(parse_upload_id(init).unwrap(), "VXBsb2FkIElE+/=");
        assert!(parse_upload_id(b"<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>").is_err());

        let result = b"<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b&amp;c</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error><Deleted><Key>d</Key></Deleted><Error><Key>e</Key><Code>InternalError</Code></Error></DeleteResult>";
        assert_eq!(
            parse_delete_result(result).unwrap(),
            vec![
                ("b&c".to_owned(), "AccessDenied".to_owned()),
                ("e".to_owned(), "InternalError".to_owned())
            ]
        );
        assert!(parse_delete_result(b"<DeleteResult/>").unwrap().is_empty());

        assert_eq!(
            delete_body(&["a<b>&\"c\"".to_owned(), "d e".to_owned()]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>\
             <Object><Key>a&lt;b&gt;&amp;&quot;c&quot;</Key></Object>\
             <Object><Key>d e</Key></Object></Delete>"
        );
        assert_eq!(
            complete_body(&[(2, "\"bb\"".to_owned()), (1, "aa".to_owned())]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>\
             <Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;bb&quot;</ETag></Part>\
             </CompleteMultipartUpload>"
        );
    }

    #[test]
    fn multipart_upload_listings() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult>
  <Bucket>b-1250000000</Bucket>
  <EncodingType>url</EncodingType>
  <KeyMarker></KeyMarker>
  <UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>pv/a+b%0A</NextKeyMarker>
  <NextUploadIdMarker>id/2=</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>pv/a+b%0A</Key>
    <UploadId>id/1=</UploadId>
    <Initiator><ID>qcs::cam::uin/1:uin/1</ID><DisplayName>1</DisplayName></Initiator>
    <Owner><ID>qcs::cam::uin/1:uin/1</ID></Owner>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2024-03-09T12:34:56.000Z</Initiated>
  </Upload>
  <Upload>
    <Key>pv/a+b%0A</Key>
    <UploadId>id/2=</UploadId>
    <Initiated>soon</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_uploads(body).unwrap();
        assert_eq!(
            page.uploads,
            vec![
                MultipartUpload {
                    key: "pv/a b\n".into(),
                    upload_id: "id/1=".into(),
                    initiated: at(1_709_987_696),
                },
                MultipartUpload {
                    key: "pv/a b\n".into(),
                    upload_id: "id/2=".into(),
                    initiated: UNIX_EPOCH,
                },
            ]
        );
        assert_eq!(
            page.next,
            Some(("pv/a b\n".to_owned(), Some("id/2=".to_owned())))
        );
        let last = b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
        assert_eq!(
            parse_uploads(last).unwrap(),
            UploadsPage {
                uploads: vec![],
                next: None
            }
        );
        let stuck = b"<ListMultipartUploadsResult><IsTruncated>true</IsTruncated></ListMultipartUploadsResult>";
        assert!(parse_uploads(stuck).is_err());
        assert!(parse_uploads(b"<ListBucketResult/>").is_err());
    }

    #[test]
    fn url_decoding_table() {
        let table = [
            ("plain", Some("plain")),
            ("a+b", Some("a b")),
            ("a%2Bb", Some("a+b")),
            ("%25", Some("%")),
            ("%C3%BC%c3%bc", Some("üü")),
            ("%0A%01", Some("\n\u{1}")),
            ("%", None),
            ("%4", None),
            ("%zz", None),
            ("%FF", None),
        ];
        for (input, expected) in table {
            assert_eq!(url_decode(input).ok().as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn etags_and_times() {
        assert_eq!(unquote_etag("\"abc\""), "abc");
        assert_eq!(unquote_etag("abc"), "abc");
        assert_eq!(unquote_etag("W/\"abc\""), "abc");
        assert_eq!(quote_etag("abc"), "\"abc\"");
        assert_eq!(quote_etag("\"abc\""), "\"abc\"");

        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_timestamp("2009-10-12T17:50:30.123Z"),
            Some(at(1_255_369_830))
        );
        for bad in [
            "",
            "2009-10-12 17:50:30",
            "2009-10-12T17:50:30.x1Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(at(1_445_412_480))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(at(0))
        );
        for bad in [
            "",
            "Wed, 21 Foo 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 CET",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
