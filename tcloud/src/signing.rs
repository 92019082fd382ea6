//! TC3-HMAC-SHA256 request signing, as the TencentCloud API v3 specifies it.
//!
//! Pure functions: no clock, no I/O. The caller supplies the timestamp and the exact body bytes.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::time::utc_date;

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// Everything that goes into one signature. Its `Debug` leaves the secret key out.
#[derive(Clone, Copy)]
pub struct SignInput<'a> {
    /// Service short name, e.g. `cbs`; part of the credential scope.
    pub service: &'a str,
    /// The `Host` header value exactly as sent.
    pub host: &'a str,
    /// The `Content-Type` header value exactly as sent.
    pub content_type: &'a str,
    pub payload: &'a [u8],
    pub timestamp: i64,
    pub secret_id: &'a str,
    pub secret_key: &'a str,
}

impl std::fmt::Debug for SignInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInput")
            .field("service", &self.service)
            .field("host", &self.host)
            .field("timestamp", &self.timestamp)
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

/// The `Authorization` header value for a POST to `/` with the given input.
pub fn authorization(input: &SignInput<'_>) -> String {
    let date = utc_date(input.timestamp);
    let scope = format!("{date}/{}/tc3_request", input.service);
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        input.content_type.trim(),
        input.host.trim(),
        hex::encode(Sha256::digest(input.payload)),
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        input.timestamp,
        hex::encode(Sha256::digest(canonical_request.as_bytes())),
    );
    let secret_date = hmac(
        format!("TC3{}", input.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let secret_service = hmac(&secret_date, input.service.as_bytes());
    let secret_signing = hmac(&secret_service, b"tc3_request");
    let signature = hex::encode(hmac(&secret_signing, string_to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders=content-type;host, Signature={signature}",
        input.secret_id
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors printed by Tencent's official Python SDK (`tests/python/tc3_vectors.py`).
    #[test]
    fn matches_official_sdk_vectors() {
        let cases = [
            (
                "cvm",
                "cvm.tencentcloudapi.com",
                r#"{"Limit": 1, "Filters": [{"Values": ["unnamed"], "Name": "instance-name"}]}"#,
                1_551_113_065,
                "AKIDEXAMPLE",
                "ExampleSecretKey",
                "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=8b70f18578af95aeb213618e940824663822ba1e8a8207ff4315747162cc1d59",
            ),
            (
                "cbs",
                "cbs.tencentcloudapi.com",
                r#"{"DiskIds": ["disk-abc12345"]}"#,
                1_700_000_000,
                "AKIDtest0123456789",
                "k3y-with-Special/+=chars",
                "TC3-HMAC-SHA256 Credential=AKIDtest0123456789/2023-11-14/cbs/tc3_request, SignedHeaders=content-type;host, Signature=9e6e53e0339ef68540840af6d31646f791a4eef84bff4658e829163abd64d454",
            ),
            (
                "cfs",
                "cfs.tencentcloudapi.com",
                "{}",
                1_767_225_599,
                "AKIDnewyear",
                "newyearkey",
                "TC3-HMAC-SHA256 Credential=AKIDnewyear/2025-12-31/cfs/tc3_request, SignedHeaders=content-type;host, Signature=6c6c8d1d07c6f93da64e77089f0db9f0e417c244bd0edffbc1fe4af4aef95c5d",
            ),
        ];
        for (service, host, payload, timestamp, secret_id, secret_key, expected) in cases {
            let got = authorization(&SignInput {
                service,
                host,
                content_type: "application/json",
                payload: payload.as_bytes(),
                timestamp,
                secret_id,
                secret_key,
            });
            assert_eq!(got, expected, "service {service}");
        }
    }

    #[test]
    fn any_change_changes_the_signature() {
        let base = SignInput {
            service: "cbs",
            host: "cbs.tencentcloudapi.com",
            content_type: "application/json",
            payload: b"{}",
            timestamp: 1_700_000_000,
            secret_id: "id",
            secret_key: "key",
        };
        let reference = authorization(&base);
        let variants = [
            SignInput {
                payload: b"{ }",
                ..base
            },
            SignInput {
                timestamp: 1_700_000_001,
                ..base
            },
            SignInput {
                secret_key: "key2",
                ..base
            },
            SignInput {
                host: "cvm.tencentcloudapi.com",
                ..base
            },
            SignInput {
                service: "cvm",
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(authorization(&variant), reference, "{variant:?}");
        }
    }
}
