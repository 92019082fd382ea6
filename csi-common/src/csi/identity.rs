//! The CSI Identity service, built from a driver's name, version and honest capabilities.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::{Request, Response, Status};

use super::pb;
use super::pb::plugin_capability::{self, service, volume_expansion};

/// What a plugin instance really offers. A node-only process does not claim the controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginCaps {
    pub controller_service: bool,
    pub volume_accessibility_constraints: bool,
    pub group_controller_service: bool,
    pub online_expansion: bool,
    pub offline_expansion: bool,
}

impl PluginCaps {
    pub fn to_proto(self) -> Vec<pb::PluginCapability> {
        let service = |t: service::Type| pb::PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t as i32 },
            )),
        };
        let expansion = |t: volume_expansion::Type| pb::PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(
                plugin_capability::VolumeExpansion { r#type: t as i32 },
            )),
        };
        let mut caps = Vec::new();
        if self.controller_service {
            caps.push(service(service::Type::ControllerService));
        }
        if self.volume_accessibility_constraints {
            caps.push(service(service::Type::VolumeAccessibilityConstraints));
        }
        if self.group_controller_service {
            caps.push(service(service::Type::GroupControllerService));
        }
        if self.online_expansion {
            caps.push(expansion(volume_expansion::Type::Online));
        }
        if self.offline_expansion {
            caps.push(expansion(volume_expansion::Type::Offline));
        }
        caps
    }
}

#[derive(Debug, Clone)]
pub struct IdentityService {
    name: String,
    version: String,
    caps: PluginCaps,
    manifest: HashMap<String, String>,
    ready: Arc<AtomicBool>,
}

impl IdentityService {
    pub fn new(name: &str, version: &str, caps: PluginCaps) -> Self {
        IdentityService {
            name: name.to_owned(),
            version: version.to_owned(),
            caps,
            manifest: HashMap::new(),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Extra `manifest` entries of GetPluginInfo (opaque to the CO).
    pub fn with_manifest(mut self, key: &str, value: &str) -> Self {
        self.manifest.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The flag `Probe` reports; a driver clears it while it cannot serve.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    pub fn into_server(self) -> pb::identity_server::IdentityServer<Self> {
        pb::identity_server::IdentityServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<pb::GetPluginInfoRequest>,
    ) -> Result<Response<pb::GetPluginInfoResponse>, Status> {
        Ok(Response::new(pb::GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: self.version.clone(),
            manifest: self.manifest.clone(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<pb::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<pb::GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(pb::GetPluginCapabilitiesResponse {
            capabilities: self.caps.to_proto(),
        }))
    }

    async fn probe(
        &self,
        _request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeResponse>, Status> {
        Ok(Response::new(pb::ProbeResponse {
            ready: Some(self.ready.load(Ordering::Relaxed)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_only_caps_do_not_claim_a_controller() {
        assert!(PluginCaps::default().to_proto().is_empty());
        let caps = PluginCaps {
            controller_service: true,
            volume_accessibility_constraints: true,
            online_expansion: true,
            ..Default::default()
        }
        .to_proto();
        assert_eq!(caps.len(), 3);
    }
}
