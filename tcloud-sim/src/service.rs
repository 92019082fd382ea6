//! How a cloud product (`cvm`, `cbs`, `cfs`) plugs into the front door: the [`CloudService`]
//! trait, the decoding of action parameters and encoding of answers every service shares, and the
//! registry of services by credential-scope name. It knows nothing of HTTP or signatures.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One cloud product (`cvm`, `cbs`, `cfs`) behind the front door.
pub trait CloudService: Send + Sync {
    /// The credential-scope name, e.g. `cbs`.
    fn name(&self) -> &'static str;
    /// The one API version it speaks, e.g. `2017-03-12`.
    fn version(&self) -> &'static str;
    /// Handles `action`; `Err(None)` means the action does not exist.
    fn call<'a>(
        &'a self,
        action: &'a str,
        params: Value,
    ) -> BoxFuture<'a, Result<Value, Option<ApiError>>>;
}

/// Decodes action parameters, rejecting unknown ones by name as the real API does.
pub fn params<T: DeserializeOwned>(value: Value) -> Result<T, Option<ApiError>> {
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let code = if text.starts_with("unknown field") {
            "UnknownParameter"
        } else if text.starts_with("missing field") {
            "MissingParameter"
        } else {
            "InvalidParameter"
        };
        Some(ApiError::new(code, text))
    })
}

/// Encodes a response body.
pub fn reply<T: Serialize>(value: &T) -> Result<Value, Option<ApiError>> {
    serde_json::to_value(value).map_err(|e| Some(ApiError::internal(e.to_string())))
}

/// Registry of services by credential-scope name.
#[derive(Default)]
pub struct Services {
    by_name: HashMap<&'static str, Arc<dyn CloudService>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Services {
    pub fn add(&mut self, service: Arc<dyn CloudService>) {
        self.by_name.insert(service.name(), service);
    }

    /// The service whose credential-scope name is `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn CloudService>> {
        self.by_name.get(name)
    }
}
