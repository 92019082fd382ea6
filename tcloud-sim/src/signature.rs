//! Verifies TC3-HMAC-SHA256 signatures on incoming API requests.
//!
//! Written independently of the drivers' signer (`tcloud`), so a bug on one side shows up as a
//! rejected request instead of being mirrored. It works from the raw headers: it rebuilds the
//! canonical request from whatever headers the client says it signed.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub secret_id: &'a str,
    pub date: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let invalid = |why: &str| {
        ApiError::new(
            "AuthFailure.InvalidAuthorization",
            format!("Authorization header is not a valid TC3-HMAC-SHA256 authorization: {why}"),
        )
    };
    let rest = value
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or_else(|| invalid("unsupported algorithm"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| invalid("malformed field"))?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed = Some(val),
            "Signature" => signature = Some(val),
            _ => return Err(invalid("unknown field")),
        }
    }
    let credential = credential.ok_or_else(|| invalid("no Credential"))?;
    let mut scope = credential.split('/');
    let (Some(secret_id), Some(date), Some(service), Some("tc3_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(invalid(
            "Credential is not <id>/<date>/<service>/tc3_request",
        ));
    };
    let signed_headers: Vec<&str> = signed
        .ok_or_else(|| invalid("no SignedHeaders"))?
        .split(';')
        .collect();
    if !signed_headers.contains(&"content-type") || !signed_headers.contains(&"host") {
        return Err(invalid("SignedHeaders must include content-type and host"));
    }
    let signature = signature.ok_or_else(|| invalid("no Signature"))?;
    Ok(Authorization {
        secret_id,
        date,
        service,
        signed_headers,
        signature,
    })
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (Hinnant's days-from-civil).
pub fn days_from_date(date: &str) -> Option<i64> {
    let mut it = date.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Checks `auth` against the request. `secret_key` is the key registered for `auth.secret_id`.
pub fn verify(
    auth: &Authorization<'_>,
    headers: &HeaderMap,
    body: &[u8],
    timestamp: i64,
    secret_key: &str,
) -> Result<(), ApiError> {
    let failure = |why: &str| {
        ApiError::new(
            "AuthFailure.SignatureFailure",
            format!("The provided credentials could not be validated: {why}"),
        )
    };
    if days_from_date(auth.date) != Some(timestamp.div_euclid(86_400)) {
        return Err(failure(
            "the credential date is not the UTC date of X-TC-Timestamp",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| failure("a signed header is missing"))?;
        canonical_headers.push_str(&format!("{}:{}\n", name.to_ascii_lowercase(), value.trim()));
    }
    let body_hash = hex::encode(Sha256::digest(body));
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{}\n{body_hash}",
        auth.signed_headers.join(";")
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{}/{}/tc3_request\n{}",
        auth.date,
        auth.service,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = format!("TC3{secret_key}").into_bytes();
    for part in [auth.date, auth.service, "tc3_request"] {
        key = mac(&key, part.as_bytes());
    }
    let expected = hex::encode(mac(&key, to_sign.as_bytes()));
    // Constant-time comparison of the hex strings.
    let matches = expected.len() == auth.signature.len()
        && expected
            .bytes()
            .zip(auth.signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if matches {
        Ok(())
    } else {
        Err(failure("signature mismatch"))
    }
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first vector printed by Tencent's Python SDK (tests/python/tc3_vectors.py).
    #[test]
    fn accepts_the_official_sdk_signature_and_rejects_tampering() {
        let auth_value = "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=8b70f18578af95aeb213618e940824663822ba1e8a8207ff4315747162cc1d59";
        let body =
            br#"{"Limit": 1, "Filters": [{"Values": ["unnamed"], "Name": "instance-name"}]}"#;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("host", "cvm.tencentcloudapi.com".parse().unwrap());
        let auth = parse_authorization(auth_value).unwrap();
        assert_eq!(auth.service, "cvm");
        verify(&auth, &headers, body, 1_551_113_065, "ExampleSecretKey").unwrap();
        let err = verify(&auth, &headers, b"{}", 1_551_113_065, "ExampleSecretKey").unwrap_err();
        assert_eq!(err.code, "AuthFailure.SignatureFailure");
        let err = verify(&auth, &headers, body, 1_551_113_065, "WrongKey").unwrap_err();
        assert_eq!(err.code, "AuthFailure.SignatureFailure");
        let err = verify(
            &auth,
            &headers,
            body,
            1_551_113_065 + 86_400,
            "ExampleSecretKey",
        )
        .unwrap_err();
        assert!(err.message.contains("credential date"));
    }

    #[test]
    fn malformed_authorizations() {
        for bad in [
            "",
            "HMAC-SHA1 x",
            "TC3-HMAC-SHA256 Credential=a/b/c, SignedHeaders=content-type;host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/2020-01-01/cvm/tc3_request, SignedHeaders=host, Signature=x",
            "TC3-HMAC-SHA256 Credential=a/2020-01-01/cvm/tc3_request, SignedHeaders=content-type;host",
            "TC3-HMAC-SHA256 Bogus",
        ] {
            let err = parse_authorization(bad).unwrap_err();
            assert_eq!(err.code, "AuthFailure.InvalidAuthorization", "{bad}");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_date("1970-01-01"), Some(0));
        assert_eq!(days_from_date("2019-02-25"), Some(1_551_113_065 / 86_400));
        assert_eq!(days_from_date("2000-03-01"), Some(11_017));
        for bad in [
            "2019-2-25",
            "2019-13-01",
            "20190225",
            "2019-02-25-1",
            "abcd-ef-gh",
        ] {
            assert_eq!(days_from_date(bad), None, "{bad}");
        }
    }
}
