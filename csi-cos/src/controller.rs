//! Prefix-per-PV provisioning: a StorageClass names a bucket, and each PV gets its own key prefix
//! in it (`<path>/<pv-name>/`). CreateVolume writes the prefix's marker object, which also records
//! what DeleteVolume must do: keep the data (`onDelete: retain`, the default) or delete exactly
//! the keys under that prefix (`onDelete: delete`). The volume ID carries endpoint, bucket and
//! prefix, so DeleteVolume needs nothing else: `<url>/<bucket>/<prefix>`.
//!
//! Buckets are opened per request through the [`Buckets`] seam (the real object client in
//! production, `cos_client::fake::FakeBuckets` in tests); this module sends nothing itself.

use std::collections::HashMap;

use bytes::Bytes;
use cos_client::{
    BucketApi, Buckets, ListParams, ObjectConfig, ObjectCredentials, ObjectError, RemoteBuckets,
};
use csi_common::cli::UnknownParameters;
use csi_common::csi::reply::{controller_caps, validation};
use csi_common::csi::request::{self, Capacity};
use csi_common::csi::{InFlight, pb};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result, required};
use crate::node::SUPPORTED;
use crate::params::{CosSource, Keys, ParamError, check_bucket, check_url, clean_prefix};

/// StorageClass parameters of the prefix itself. With the driver's node parameters, these are
/// all a StorageClass may hold (keys case-insensitive, as Tencent's drivers lower-cased them):
/// `csi.storage.k8s.io/*` ones (the sidecar's) are ignored, anything else is refused by name, or
/// with `--unknown-parameters warn` named in a warning and ignored.
const PREFIX_PARAMETERS: &[&str] = &["url", "bucket", "path", "onDelete"];

/// csi-cos's parameters passed through to the node as volume attributes: every attribute of
/// Tencent's COS PVs but the bucket's own.
pub const COS_NODE_PARAMETERS: &[&str] = &[
    "additional_args",
    "mounter",
    "dbglevel",
    "core_site",
    "goosefs_lite",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    Retain,
    Delete,
}

/// The marker object's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marker {
    volume: String,
    on_delete: OnDelete,
    /// The size the volume was asked with; markers written before sizes were kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capacity_bytes: Option<u64>,
}

impl Marker {
    /// Whether an existing marker answers a create of `wanted`: the same volume and policy, and
    /// the same size when the marker recorded one.
    fn answers(&self, wanted: &Marker) -> bool {
        self.volume == wanted.volume
            && self.on_delete == wanted.on_delete
            && (self.capacity_bytes.is_none() || self.capacity_bytes == wanted.capacity_bytes)
    }
}

/// Endpoint, bucket and prefix of a provisioned volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId {
    pub url: String,
    pub bucket: String,
    pub prefix: String,
}

impl VolumeId {
    pub fn parse(id: &str) -> Option<VolumeId> {
        let (scheme, rest) = id.split_once("://")?;
        let mut parts = rest.splitn(3, '/');
        let host = parts.next()?;
        let bucket = parts.next()?;
        let prefix = parts.next()?;
        Some(VolumeId {
            url: check_url(&format!("{scheme}://{host}")).ok()?,
            bucket: check_bucket(bucket).ok()?,
            prefix: clean_prefix(prefix, "prefix")
                .ok()
                .filter(|p| !p.is_empty())?,
        })
    }

    pub fn marker_key(&self) -> String {
        format!("{}/", self.prefix)
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.url, self.bucket, self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The SigV4 region for endpoints that do not name one.
    pub region: String,
    /// StorageClass parameters handed to the node as volume attributes (the node checks them).
    pub node_parameters: &'static [&'static str],
    /// The endpoint and bucket of StorageClasses that name none.
    pub default_url: Option<String>,
    pub default_bucket: Option<String>,
    /// Keys for requests without a provisioner secret: the controller's own credentials chain.
    pub fallback_keys: Option<std::sync::Arc<tcloud::CredentialSource>>,
    /// What a StorageClass key no driver knows gets (`--unknown-parameters`).
    pub unknown_parameters: UnknownParameters,
}

/// The prefix-per-PV controller, opening buckets through `B`.
#[derive(Debug)]
pub struct ControllerService<B = RemoteBuckets> {
    config: ControllerConfig,
    inflight: InFlight,
    buckets: B,
}

fn object_error(error: ObjectError) -> Error {
    use cos_client::ObjectErrorKind as K;
    let message = error.to_string();
    match error.kind() {
        K::NotFound => Error::NotFound(message),
        K::Forbidden => Error::FailedPrecondition(format!(
            "{message} (check the provisioner secret's SecretId/SecretKey and the bucket's permissions)"
        )),
        K::Invalid => Error::InvalidArgument(message),
        K::Unavailable => Error::Unavailable(message),
    }
}

/// A StorageClass's parameters by their own spelling (keys are case-insensitive; empty values
/// count as absent), and the keys no driver knows that `policy` lets through, for a warning.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parameters {
    values: HashMap<&'static str, String>,
    unknown: Vec<String>,
}

impl Parameters {
    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

fn parameter_check(
    parameters: &HashMap<String, String>,
    node: &[&'static str],
    policy: UnknownParameters,
) -> Result<Parameters> {
    let mut out = Parameters::default();
    let mut keys: Vec<&String> = parameters.keys().collect();
    keys.sort();
    for key in keys {
        if key.starts_with("csi.storage.k8s.io/") {
            continue;
        }
        let known = PREFIX_PARAMETERS
            .iter()
            .chain(node)
            .find(|k| k.eq_ignore_ascii_case(key));
        let Some(known) = known else {
            match policy {
                UnknownParameters::Refuse => {
                    return Err(ParamError(format!(
                        "StorageClass parameter {key:?} is not known (known: {}, {}); \
                         --unknown-parameters warn ignores such keys",
                        PREFIX_PARAMETERS.join(", "),
                        node.join(", ")
                    ))
                    .into());
                }
                UnknownParameters::Warn => {
                    out.unknown.push(key.clone());
                    continue;
                }
            }
        };
        let value = parameters[key].trim();
        if value.is_empty() {
            continue;
        }
        if let Some(other) = out.values.get(known)
            && other != value
        {
            return Err(ParamError(format!(
                "StorageClass parameter {known:?} is given twice (keys are case-insensitive) with two values"
            ))
            .into());
        }
        out.values.insert(known, value.to_owned());
    }
    Ok(out)
}

impl ControllerService {
    /// The production controller: real buckets over the network.
    pub fn new(config: ControllerConfig) -> Self {
        ControllerService::with_buckets(RemoteBuckets, config)
    }
}

impl<B: Buckets> ControllerService<B> {
    pub fn with_buckets(buckets: B, config: ControllerConfig) -> Self {
        ControllerService {
            config,
            inflight: InFlight::new(),
            buckets,
        }
    }

    pub fn into_server(self) -> pb::controller_server::ControllerServer<Self> {
        pb::controller_server::ControllerServer::new(self)
    }

    async fn client(
        &self,
        url: &str,
        bucket: &str,
        secrets: &HashMap<String, String>,
    ) -> Result<B::Bucket> {
        let own;
        let secrets = match (&self.config.fallback_keys, secrets.is_empty()) {
            (Some(source), true) => {
                own = Keys::secrets_from(&source.get().await.map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "no provisioner secret, and the controller's own credentials are unusable: {e}"
                    ))
                })?);
                &own
            }
            _ => secrets,
        };
        let keys = Keys::from_secrets(
            secrets,
            "provisioner (csi.storage.k8s.io/provisioner-secret-name)",
        )?;
        let mut config = ObjectConfig::new(url, bucket);
        if !url.contains(".myqcloud.com") && !url.contains(".tencentcos.cn") {
            config.region = self.config.region.clone();
        }
        self.buckets
            .open(
                config,
                ObjectCredentials::new(&keys.secret_id, &keys.secret_key, keys.token.as_deref()),
            )
            .map_err(object_error)
    }

    async fn marker(&self, client: &B::Bucket, id: &VolumeId) -> Result<Option<Marker>> {
        let key = id.marker_key();
        if client
            .head_object(&key)
            .await
            .map_err(object_error)?
            .is_none()
        {
            return Ok(None);
        }
        let body = client
            .get_object_range(&key, 0..4096, None)
            .await
            .map_err(object_error)?;
        // A marker someone else wrote (an empty `dir/` object) is a prefix we did not provision:
        // it is kept whatever happens.
        Ok(Some(serde_json::from_slice(&body).unwrap_or(Marker {
            volume: String::new(),
            on_delete: OnDelete::Retain,
            capacity_bytes: None,
        })))
    }
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

fn unimplemented<T>(what: &str) -> RpcResult<T> {
    Err(Status::unimplemented(format!(
        "{what} is not supported by csi-cos"
    )))
}

#[tonic::async_trait]
impl<B: Buckets> pb::controller_server::Controller for ControllerService<B> {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> RpcResult<pb::CreateVolumeResponse> {
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(required("name").into());
        }
        request::check_capabilities(&req.volume_capabilities, &SUPPORTED)?;
        if req.volume_content_source.is_some() {
            return Err(Status::invalid_argument(
                "csi-cos cannot create a volume from a snapshot or another volume",
            ));
        }
        let params = parameter_check(
            &req.parameters,
            self.config.node_parameters,
            self.config.unknown_parameters,
        )?;
        if !params.unknown.is_empty() {
            tracing::warn!(
                volume = req.name,
                keys = params.unknown.join(", "),
                "StorageClass parameters no COS driver knows are ignored (--unknown-parameters warn)"
            );
        }
        let get = |key: &str| params.get(key);
        let url = check_url(get("url").or(self.config.default_url.as_deref()).ok_or_else(|| {
            ParamError("StorageClass parameter `url` is required (e.g. https://cos.ap-guangzhou.myqcloud.com)".into())
        })?)?;
        let bucket = check_bucket(
            get("bucket")
                .or(self.config.default_bucket.as_deref())
                .ok_or_else(|| ParamError("StorageClass parameter `bucket` is required".into()))?,
        )?;
        let parent = clean_prefix(get("path").unwrap_or(""), "path")?;
        let leaf = clean_prefix(&req.name, "volume name")?;
        if leaf.contains('/') {
            return Err(Status::invalid_argument(format!(
                "volume name {:?} must not contain `/`",
                req.name
            )));
        }
        let on_delete = match get("onDelete").unwrap_or("retain") {
            "retain" => OnDelete::Retain,
            "delete" => OnDelete::Delete,
            other => {
                return Err(ParamError(format!(
                    "StorageClass parameter onDelete {other:?} must be retain or delete"
                ))
                .into());
            }
        };
        let prefix = if parent.is_empty() {
            leaf
        } else {
            format!("{parent}/{leaf}")
        };
        let id = VolumeId {
            url,
            bucket,
            prefix,
        };
        let mut context: HashMap<String, String> = HashMap::from([
            ("url".to_owned(), id.url.clone()),
            ("bucket".to_owned(), id.bucket.clone()),
            ("path".to_owned(), format!("/{}", id.prefix)),
        ]);
        for key in self.config.node_parameters {
            if let Some(value) = get(key) {
                context.insert((*key).to_owned(), value.to_owned());
            }
        }
        // The node must be able to mount what we hand out: check it now, not at the first pod.
        let source = CosSource::from_context(&context)?;
        if !source.ignored.is_empty() {
            tracing::warn!(
                volume = req.name,
                ignored = source.ignored.join(", "),
                "StorageClass parameters with no cos-fuse equivalent are ignored by the node"
            );
        }
        // A prefix has no size: report what was asked, so the PV shows the claim's size.
        let capacity = Capacity::parse(req.capacity_range.as_ref())?.nominal();
        let _guard = self.inflight.acquire(&req.name)?;
        // A delete of the same volume (its ID) does not run alongside.
        let _volume_guard = self.inflight.acquire(&id.to_string())?;
        let client = self.client(&id.url, &id.bucket, &req.secrets).await?;
        let wanted = Marker {
            volume: req.name.clone(),
            on_delete,
            capacity_bytes: Some(capacity),
        };
        match self.marker(&client, &id).await? {
            Some(existing) if existing.answers(&wanted) => {}
            Some(existing) => {
                return Err(Status::already_exists(format!(
                    "prefix {} of bucket {} already belongs to {:?} (onDelete {:?}, {} bytes)",
                    id.prefix,
                    id.bucket,
                    existing.volume,
                    existing.on_delete,
                    existing
                        .capacity_bytes
                        .map_or("no size".to_owned(), |c| c.to_string())
                )));
            }
            None => {
                let body = serde_json::to_vec(&wanted)
                    .map_err(|e| Error::Internal(format!("cannot encode the marker: {e}")))?;
                client
                    .put_object(&id.marker_key(), Bytes::from(body))
                    .await
                    .map_err(object_error)?;
                tracing::info!(volume = %id, ?on_delete, "prefix provisioned");
            }
        }
        Ok(Response::new(pb::CreateVolumeResponse {
            volume: Some(pb::Volume {
                capacity_bytes: capacity as i64,
                volume_id: id.to_string(),
                volume_context: context,
                content_source: None,
                accessible_topology: Vec::new(),
            }),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> RpcResult<pb::DeleteVolumeResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        // An ID we never made names no volume of ours: nothing to delete.
        let Some(id) = VolumeId::parse(&req.volume_id) else {
            tracing::info!(
                volume_id = req.volume_id,
                "not a csi-cos volume ID: nothing to delete"
            );
            return Ok(Response::new(pb::DeleteVolumeResponse {}));
        };
        let _guard = self.inflight.acquire(&req.volume_id)?;
        let client = self.client(&id.url, &id.bucket, &req.secrets).await?;
        match self.marker(&client, &id).await? {
            None => {}
            Some(Marker {
                on_delete: OnDelete::Retain,
                ..
            }) => {
                tracing::info!(volume = %id, "onDelete: retain: the prefix and its data are kept");
            }
            Some(Marker {
                on_delete: OnDelete::Delete,
                ..
            }) => {
                // Everything under the prefix but the marker first, so a retry after a crash still
                // finds the marker and finishes the job.
                let marker = id.marker_key();
                let mut deleted = 0u64;
                let mut last_round: Vec<String> = Vec::new();
                loop {
                    let page = client
                        .list_objects_v2(ListParams {
                            max_keys: Some(1000),
                            ..ListParams::prefix(&marker)
                        })
                        .await
                        .map_err(object_error)?;
                    let keys: Vec<String> = page
                        .objects
                        .into_iter()
                        .map(|o| o.key)
                        .filter(|k| *k != marker)
                        .collect();
                    if keys.is_empty() {
                        break;
                    }
                    // A bucket that still lists what it said it deleted would keep this loop
                    // (and the volume's guard) forever: give up, and let the retry resume.
                    if keys == last_round {
                        return Err(Error::Unavailable(format!(
                            "the bucket still lists {} keys under {} after deleting them (first: {}); retry later",
                            keys.len(),
                            id.prefix,
                            keys[0]
                        ))
                        .into());
                    }
                    let failed = client.delete_objects(&keys).await.map_err(object_error)?;
                    if let Some((key, code)) = failed.first() {
                        return Err(Error::Unavailable(format!(
                            "could not delete {} of {} keys under {} (first: {key}: {code})",
                            failed.len(),
                            keys.len(),
                            id.prefix
                        ))
                        .into());
                    }
                    deleted += keys.len() as u64;
                    last_round = keys;
                }
                client.delete_object(&marker).await.map_err(object_error)?;
                tracing::info!(volume = %id, deleted, "onDelete: delete: the prefix is gone");
            }
        }
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> RpcResult<pb::ValidateVolumeCapabilitiesResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        if req.volume_capabilities.is_empty() {
            return Err(required("volume_capabilities").into());
        }
        let id = VolumeId::parse(&req.volume_id).ok_or_else(|| {
            Status::not_found(format!("{} is not a csi-cos volume", req.volume_id))
        })?;
        if !req.secrets.is_empty() {
            let client = self.client(&id.url, &id.bucket, &req.secrets).await?;
            if self.marker(&client, &id).await?.is_none() {
                return Err(Status::not_found(format!("volume {id} does not exist")));
            }
        }
        let outcome = request::check_capabilities(&req.volume_capabilities, &SUPPORTED)
            .map_err(|e| e.to_string());
        Ok(Response::new(validation(req, outcome)))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> RpcResult<pb::ControllerGetCapabilitiesResponse> {
        use pb::controller_service_capability::rpc::Type;
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse {
            capabilities: controller_caps(&[Type::CreateDeleteVolume]),
        }))
    }

    async fn controller_publish_volume(
        &self,
        _request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerPublishVolumeResponse> {
        unimplemented("ControllerPublishVolume")
    }

    async fn controller_unpublish_volume(
        &self,
        _request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerUnpublishVolumeResponse> {
        unimplemented("ControllerUnpublishVolume")
    }

    async fn list_volumes(
        &self,
        _request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        unimplemented("ListVolumes")
    }

    async fn get_capacity(
        &self,
        _request: Request<pb::GetCapacityRequest>,
    ) -> RpcResult<pb::GetCapacityResponse> {
        unimplemented("GetCapacity")
    }

    async fn create_snapshot(
        &self,
        _request: Request<pb::CreateSnapshotRequest>,
    ) -> RpcResult<pb::CreateSnapshotResponse> {
        unimplemented("CreateSnapshot")
    }

    async fn delete_snapshot(
        &self,
        _request: Request<pb::DeleteSnapshotRequest>,
    ) -> RpcResult<pb::DeleteSnapshotResponse> {
        unimplemented("DeleteSnapshot")
    }

    async fn list_snapshots(
        &self,
        _request: Request<pb::ListSnapshotsRequest>,
    ) -> RpcResult<pb::ListSnapshotsResponse> {
        unimplemented("ListSnapshots")
    }

    async fn controller_expand_volume(
        &self,
        _request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        unimplemented("ControllerExpandVolume")
    }

    async fn controller_get_volume(
        &self,
        _request: Request<pb::ControllerGetVolumeRequest>,
    ) -> RpcResult<pb::ControllerGetVolumeResponse> {
        unimplemented("ControllerGetVolume")
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> RpcResult<pb::ControllerModifyVolumeResponse> {
        unimplemented("ControllerModifyVolume")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_round_trip_and_strangers_are_refused() {
        let id = VolumeId {
            url: "https://cos.ap-guangzhou.myqcloud.com".into(),
            bucket: "data-1250000000".into(),
            prefix: "k8s/pvc-123".into(),
        };
        assert_eq!(
            id.to_string(),
            "https://cos.ap-guangzhou.myqcloud.com/data-1250000000/k8s/pvc-123"
        );
        assert_eq!(VolumeId::parse(&id.to_string()), Some(id.clone()));
        assert_eq!(id.marker_key(), "k8s/pvc-123/");
        for stranger in [
            "",
            "vol-1",
            "https://cos.x.myqcloud.com/bucket-1",
            "https://cos.x.myqcloud.com/bucket-1/",
            "https://cos.x.myqcloud.com/bucket-1/a/../../b",
            "ftp://host/bucket-1/p",
            "https://cos.x.myqcloud.com/Bad_Bucket/p",
        ] {
            assert_eq!(VolumeId::parse(stranger), None, "{stranger}");
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_parameters_are_named_or_warned_by_policy() {
        let params = map(&[
            ("bucket", "b-1"),
            ("csi.storage.k8s.io/pvc/name", "x"),
            ("reclaim", "yes"),
        ]);
        let err =
            parameter_check(&params, COS_NODE_PARAMETERS, UnknownParameters::Refuse).unwrap_err();
        assert!(err.to_string().contains("\"reclaim\""), "{err}");
        let warned =
            parameter_check(&params, COS_NODE_PARAMETERS, UnknownParameters::Warn).unwrap();
        assert_eq!(warned.unknown, ["reclaim"]);
        assert_eq!(warned.get("bucket"), Some("b-1"));
        assert_eq!(warned.get("reclaim"), None);
    }

    #[test]
    fn every_attribute_of_tencents_cos_pvs_is_a_storage_class_key_in_any_case() {
        // The attributes of deploy/cosfs/examples/{cosfs,goosefs-lite}/pv.yaml and TKE's COS PV.
        let params = map(&[
            ("URL", "http://cos.ap-guangzhou.myqcloud.com"),
            ("Bucket", "xxx-1250000000"),
            ("path", "/"),
            ("onDelete", "retain"),
            ("mounter", "lite"),
            ("dbglevel", "err"),
            ("additional_args", "-oensure_diskfree=20480"),
            (
                "core_site",
                "fs.cosn.maxRetries=100, fs.cosn.retry.interval.seconds=4",
            ),
            ("GOOSEFS_LITE", "goosefs.fuse.umount.timeout=110000"),
        ]);
        let got = parameter_check(&params, COS_NODE_PARAMETERS, UnknownParameters::Refuse).unwrap();
        assert!(got.unknown.is_empty());
        for key in ["url", "bucket", "path", "onDelete"]
            .iter()
            .chain(COS_NODE_PARAMETERS)
        {
            assert!(got.get(key).is_some(), "{key}");
        }
        let twice = map(&[("bucket", "a-1"), ("BUCKET", "b-1")]);
        let err =
            parameter_check(&twice, COS_NODE_PARAMETERS, UnknownParameters::Warn).unwrap_err();
        assert!(err.to_string().contains("\"bucket\""), "{err}");
    }
}
