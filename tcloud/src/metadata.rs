//! The CVM instance-metadata client (`http://metadata.tencentyun.com/latest/meta-data/`).
//!
//! Read-only lookups with short timeouts: instance ID, region, zone, and CAM role credentials.

use std::time::Duration;

use serde::Deserialize;

use crate::https::http_client;
use crate::keys::Credentials;

pub const DEFAULT_METADATA_ENDPOINT: &str = "http://metadata.tencentyun.com";
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("instance metadata {url}: request failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("instance metadata {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("instance metadata {url}: {detail}")]
    Invalid { url: String, detail: String },
}

/// A client of one instance's metadata service. `base` is the service root, e.g.
/// `http://metadata.tencentyun.com`; the simulator serves one root per simulated instance.
#[derive(Debug, Clone)]
pub struct MetadataClient {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentialsBody {
    tmp_secret_id: String,
    tmp_secret_key: String,
    token: String,
    expired_time: i64,
}

impl MetadataClient {
    pub fn new(base: &str) -> Result<Self, reqwest::Error> {
        Ok(MetadataClient {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(TIMEOUT)?,
        })
    }

    /// GET `latest/meta-data/<path>`, trimmed.
    pub async fn get(&self, path: &str) -> Result<String, MetadataError> {
        let url = format!("{}/latest/meta-data/{path}", self.base);
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|source| MetadataError::Transport {
                    url: url.clone(),
                    source,
                })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(MetadataError::Status { url, status });
        }
        let text = response
            .text()
            .await
            .map_err(|source| MetadataError::Transport {
                url: url.clone(),
                source,
            })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(MetadataError::Invalid {
                url,
                detail: "empty answer".into(),
            });
        }
        Ok(text.to_owned())
    }

    pub async fn instance_id(&self) -> Result<String, MetadataError> {
        self.get("instance-id").await
    }

    pub async fn region(&self) -> Result<String, MetadataError> {
        self.get("placement/region").await
    }

    pub async fn zone(&self) -> Result<String, MetadataError> {
        self.get("placement/zone").await
    }

    /// The first CAM role bound to the instance.
    pub async fn cam_role(&self) -> Result<String, MetadataError> {
        let listing = self.get("cam/security-credentials/").await?;
        listing
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(|role| role.trim_end_matches('/').to_owned())
            .ok_or_else(|| MetadataError::Invalid {
                url: format!("{}/latest/meta-data/cam/security-credentials/", self.base),
                detail: "no CAM role is bound to this instance".into(),
            })
    }

    pub async fn role_credentials(&self, role: &str) -> Result<Credentials, MetadataError> {
        let path = format!("cam/security-credentials/{role}");
        let body = self.get(&path).await?;
        let parsed: RoleCredentialsBody =
            serde_json::from_str(&body).map_err(|e| MetadataError::Invalid {
                url: format!("{}/latest/meta-data/{path}", self.base),
                // Position only: serde's message may quote a value, and values here are secrets.
                detail: format!(
                    "malformed role credentials ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })?;
        let mut credentials = Credentials::new(&parsed.tmp_secret_id, &parsed.tmp_secret_key);
        credentials.token = Some(parsed.token.trim().to_owned());
        credentials.expires_at = Some(parsed.expired_time);
        Ok(credentials)
    }
}
