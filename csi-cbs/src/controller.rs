//! The CBS controller service: disks and snapshots through the cloud API.
//!
//! Every RPC validates its request first, takes an in-flight guard on the volume (or snapshot
//! name), and is idempotent through the cloud itself: creates are found again by name and carry a
//! `ClientToken`; attach and detach are a state machine read from `DescribeDisks`, waited on within
//! the caller's deadline and resumed by the retry. No persistent local state: what the service
//! keeps in memory (the stuck-attach watchdog, learned wait times, the disks it terminated) is
//! rebuilt after a restart.
//!
//! This file holds the service, its configuration, the `Controller` trait impl and the volume
//! lifecycle (create, delete, publish, validate). The other RPCs are one-line delegations to
//! inherent methods in the children: `snapshots` (CreateSnapshot, DeleteSnapshot,
//! ListSnapshots), `modify` (ControllerExpandVolume, ControllerModifyVolume) and `listing`
//! (ListVolumes, ControllerGetVolume); `attach` holds the publish state machine, `create` finds
//! and creates a volume's disk, `names` gives CSI names their cloud names, `multi` holds the
//! multi-disk (`devicemapper`) variants of create, delete, publish, unpublish and expand. Children use the
//! service and the ID and proto helpers here; this file imports from no child but the leaf
//! `names`, so the files form a DAG.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi_common::cli::UnknownParameters;
use csi_common::csi::reply::{answer_by, controller_caps, validation};
use csi_common::csi::request::{self, Capacity, Supported};
use csi_common::csi::{InFlight, pb};
use tcloud::ErrorKind;
use tcloud::cbs::{CbsApi, CreateDisksRequest, Disk, DiskChargePrepaid, Placement};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::batcher::AttachBatcher;
use crate::error::{Error, Result, required};
use crate::params::{CbsParams, GIB, MutableParams, size_gib};
use crate::topology::{Zones, preferred_zones, requirement_zones, topology_for, zone_from_list};
use crate::volume_id::multi_disk_ids;
use crate::watcher::{DiskWatcher, Learned};

pub const PUBLISH_CONTEXT_DISK_ID: &str = "diskId";

mod attach;
mod create;
mod listing;
mod modify;
mod multi;
pub(crate) mod names;
mod snapshots;

use names::{TAG_VOLUME_NAME, cloud_name};

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub driver_name: String,
    /// An attach still `ATTACHING` after this long is reported as stuck instead of waited on.
    pub attach_timeout: Duration,
    /// The zone of a volume whose request names none and whose Nodes' zones are unknown: this
    /// controller's own zone, when known.
    pub default_zone: Option<String>,
    /// The zones of the cluster's Nodes, through the Kubernetes API: a volume whose request names
    /// no zone and has no topology goes to one of them.
    pub node_zones: Option<Arc<crate::cluster_zones::ClusterZones>>,
    /// What a StorageClass key no CBS driver ever knew gets (`--unknown-parameters`).
    pub unknown_parameters: UnknownParameters,
}

#[derive(Debug)]
pub struct ControllerService<C> {
    cbs: Arc<C>,
    config: ControllerConfig,
    inflight: InFlight,
    watcher: DiskWatcher,
    /// AttachDisks and DetachDisks, batched per instance.
    attacher: AttachBatcher<C>,
    zones: Zones<C>,
    /// When this controller first saw each disk `ATTACHING`: the stuck-attach watchdog.
    attaching_since: Mutex<HashMap<String, Instant>>,
    /// How long attaches, detaches and resizes usually take here, to time the first look.
    attach_time: Learned,
    detach_time: Learned,
    resize_time: Learned,
    /// Disks this controller terminated: a ClientToken answering one of them is stale.
    terminated: Remembered,
    /// The ClientTokens this controller has sent: a token's first use cannot be answered by an
    /// earlier call of this process (see `create`).
    tokens_sent: Remembered,
}

/// Strings a [`Remembered`] keeps; past this the set starts again. Forgetting is safe both ways:
/// a stale answer is then found by `create::VISIBLE_WITHIN`, and a forgotten token of a name the
/// provisioner made is found by name before any create.
const REMEMBERED_KEPT: usize = 4096;

/// A bounded set of IDs or tokens this controller has seen.
#[derive(Debug, Default)]
struct Remembered(std::sync::Mutex<HashSet<String>>);

impl Remembered {
    /// Adds `id`; whether it was new.
    fn record(&self, id: &str) -> bool {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ids.contains(id) {
            return false;
        }
        if ids.len() >= REMEMBERED_KEPT {
            ids.clear();
        }
        ids.insert(id.to_owned())
    }

    fn contains(&self, disk_id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(disk_id)
    }
}

pub use crate::volume_id::is_disk_id;

fn is_snapshot_id(id: &str) -> bool {
    id.strip_prefix("snap-").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// What a CBS disk supports: one node at a time, block or a file system we can make.
pub const SUPPORTED: Supported = Supported {
    storage: "a CBS disk",
    block: true,
    multi_node: false,
    fs_types: &["ext4", "ext3", "xfs"],
};

/// Every capability must be one a CBS disk supports.
pub fn check_capabilities(capabilities: &[pb::VolumeCapability]) -> Result<()> {
    request::check_capabilities(capabilities, &SUPPORTED)
}

fn volume_proto(disk: &Disk, content_source: Option<pb::VolumeContentSource>) -> pb::Volume {
    pb::Volume {
        capacity_bytes: (disk.disk_size.saturating_mul(GIB)) as i64,
        volume_id: disk.disk_id.clone(),
        volume_context: [("diskType".to_owned(), disk.disk_type.clone())].into(),
        content_source,
        accessible_topology: vec![topology_for(&disk.placement.zone)],
    }
}

/// The volume context key carrying the class's `fstype`, as the old driver's context did.
pub const VOLUME_CONTEXT_FS_TYPE: &str = "fstype";

/// A new volume as CreateVolume answers it: with the class's file system in its context, for the
/// node to format with when the capability names none.
fn created_volume(
    disk: &Disk,
    params: &CbsParams,
    content_source: Option<pb::VolumeContentSource>,
) -> pb::Volume {
    let mut volume = volume_proto(disk, content_source);
    if let Some(fs_type) = &params.fs_type {
        volume
            .volume_context
            .insert(VOLUME_CONTEXT_FS_TYPE.to_owned(), fs_type.clone());
    }
    volume
}

/// A file system named by the class that a capability contradicts: the capability is what the
/// node formats with (as with the old driver), so this only warns.
fn warn_on_fs_type_mismatch(name: &str, params: &CbsParams, capabilities: &[pb::VolumeCapability]) {
    let Some(wanted) = &params.fs_type else {
        return;
    };
    for capability in capabilities {
        if let Some(pb::volume_capability::AccessType::Mount(mount)) = &capability.access_type
            && !mount.fs_type.is_empty()
            && !mount.fs_type.eq_ignore_ascii_case(wanted)
        {
            tracing::warn!(volume = %name, fstype = %wanted, capability_fs_type = %mount.fs_type, "the StorageClass's fstype differs from the volume capability's fs_type; the node formats with the capability's");
        }
    }
}

impl<C: CbsApi> ControllerService<C> {
    /// Records the time spent waiting on disk states in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<csi_common::metrics::Metrics>) -> Self {
        self.watcher.metrics = metrics;
        self
    }

    pub fn new(cbs: Arc<C>, config: ControllerConfig) -> Self {
        ControllerService {
            watcher: DiskWatcher::start(Arc::clone(&cbs)),
            attacher: AttachBatcher::new(Arc::clone(&cbs)),
            zones: Zones::new(Arc::clone(&cbs)),
            cbs,
            config,
            inflight: InFlight::new(),
            attaching_since: Mutex::new(HashMap::new()),
            attach_time: Learned::default(),
            detach_time: Learned::default(),
            resize_time: Learned::default(),
            terminated: Remembered::default(),
            tokens_sent: Remembered::default(),
        }
    }

    pub fn into_server(self) -> pb::controller_server::ControllerServer<Self> {
        pb::controller_server::ControllerServer::new(self)
    }

    async fn disk(&self, volume_id: &str) -> Result<Option<Disk>> {
        if !is_disk_id(volume_id) {
            return Ok(None);
        }
        self.watcher.get(volume_id).await
    }

    async fn existing_disk(&self, volume_id: &str) -> Result<Disk> {
        if multi_disk_ids(volume_id).is_some() {
            return Err(Error::InvalidArgument(format!(
                "volume {volume_id} is a multi-disk (devicemapper) volume; this call works on \
                 single-disk volumes only"
            )));
        }
        self.disk(volume_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("volume {volume_id} does not exist")))
    }

    /// Zone names for zone names or numeric IDs.
    async fn zone_names(&self, zones: &[String], deadline: Instant) -> Result<Vec<String>> {
        let mut names = Vec::with_capacity(zones.len());
        for zone in zones {
            names.push(self.zones.name_of(zone, Some(deadline)).await?);
        }
        Ok(names)
    }

    /// One of the zones the cluster's Nodes are in that takes new disks, stable for `name`; `None`
    /// when they are unknown.
    async fn node_zone(&self, name: &str, deadline: Instant) -> Result<Option<String>> {
        let zones = self.node_zone_names(deadline).await?;
        self.zones.pick_among(name, &zones, Some(deadline)).await
    }

    /// The names of the zones the cluster's Nodes are in (none when unknown).
    async fn node_zone_names(&self, deadline: Instant) -> Result<Vec<String>> {
        let Some(node_zones) = &self.config.node_zones else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for zone in node_zones.current().await {
            match self.zones.name_of(&zone, Some(deadline)).await {
                Ok(name) => names.push(name),
                Err(Error::InvalidArgument(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(names)
    }

    /// The zone for a new disk: `diskZone`, else one of `diskZones` (see [`zone_from_list`]),
    /// else the topology's preferred then requisite zones, else this controller's zone, else a
    /// zone of the region. Checked against the requisite topology when there is one.
    async fn choose_zone(
        &self,
        name: &str,
        params: &CbsParams,
        requirement: Option<&pb::TopologyRequirement>,
        deadline: Instant,
    ) -> Result<String> {
        let (ordered, requisite) = requirement_zones(requirement);
        if params.zone.is_none() && !params.zones.is_empty() {
            let list = self.zone_names(&params.zones, deadline).await?;
            let mut preferred = self
                .zone_names(&preferred_zones(requirement), deadline)
                .await?;
            if requirement.is_none() {
                // No topology: prefer the listed zones that have Nodes, picked by name.
                let with_nodes = self.node_zone_names(deadline).await?;
                let listed: Vec<String> = list
                    .iter()
                    .filter(|z| with_nodes.contains(z))
                    .cloned()
                    .collect();
                preferred.extend(zone_from_list(name, &listed, &[], &[]).ok());
            }
            let requisite = self.zone_names(&requisite, deadline).await?;
            return zone_from_list(name, &list, &preferred, &requisite);
        }
        let zone = match (&params.zone, ordered.first()) {
            (Some(zone), _) => self.zones.name_of(zone, Some(deadline)).await?,
            (None, Some(zone)) => self.zones.name_of(zone, Some(deadline)).await?,
            (None, None) => match self.node_zone(name, deadline).await? {
                Some(zone) => zone,
                None => match &self.config.default_zone {
                    Some(zone) => self.zones.name_of(zone, Some(deadline)).await?,
                    None => self.zones.pick(name, Some(deadline)).await?,
                },
            },
        };
        if !requisite.is_empty() {
            let mut allowed = Vec::new();
            for z in &requisite {
                allowed.push(self.zones.name_of(z, Some(deadline)).await?);
            }
            if !allowed.contains(&zone) {
                return Err(Error::ResourceExhausted(format!(
                    "diskZone {zone} is not among the requisite zones {allowed:?}"
                )));
            }
        }
        Ok(zone)
    }

    /// An existing disk answers a repeated CreateVolume only when it is what was asked for.
    fn check_existing(
        disk: &Disk,
        params: &CbsParams,
        required: u64,
        limit: u64,
        snapshot: Option<&str>,
    ) -> Result<()> {
        let bytes = disk.disk_size.saturating_mul(GIB);
        let mut mismatches = Vec::new();
        if bytes < required || (limit > 0 && bytes > limit) {
            mismatches.push(format!("its size is {} GiB", disk.disk_size));
        }
        if disk.disk_type != params.disk_type {
            mismatches.push(format!("its type is {}", disk.disk_type));
        }
        if let Some(zone) = &params.zone
            && *zone != disk.placement.zone
            && !zone.bytes().all(|b| b.is_ascii_digit())
        {
            mismatches.push(format!("it is in zone {}", disk.placement.zone));
        }
        if !params.zones.is_empty()
            && !params
                .zones
                .iter()
                .any(|z| *z == disk.placement.zone || z.bytes().all(|b| b.is_ascii_digit()))
        {
            mismatches.push(format!(
                "it is in zone {}, not one of diskZones",
                disk.placement.zone
            ));
        }
        // DescribeDisks does not always say which snapshot a disk came from; compare when it does.
        if let Some(snapshot) = snapshot
            && !disk.snapshot_id.is_empty()
            && disk.snapshot_id != snapshot
        {
            mismatches.push(format!("it was not restored from {snapshot}"));
        }
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(Error::AlreadyExists(format!(
                "volume {} exists as {} but {}",
                disk.disk_name,
                disk.disk_id,
                mismatches.join(", ")
            )))
        }
    }
}

fn controller_capabilities() -> Vec<pb::ControllerServiceCapability> {
    use pb::controller_service_capability::rpc::Type;
    controller_caps(&[
        Type::CreateDeleteVolume,
        Type::PublishUnpublishVolume,
        Type::ListVolumes,
        Type::ListVolumesPublishedNodes,
        Type::GetVolume,
        Type::VolumeCondition,
        Type::CreateDeleteSnapshot,
        Type::ListSnapshots,
        Type::ExpandVolume,
        Type::SingleNodeMultiWriter,
        Type::ModifyVolume,
    ])
}

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl<C: CbsApi> pb::controller_server::Controller for ControllerService<C> {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> RpcResult<pb::CreateVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        request::require(&req.name, "name")?;
        check_capabilities(&req.volume_capabilities)?;
        let mut params = CbsParams::parse_with(&req.parameters, self.config.unknown_parameters)?;
        if !params.ignored.is_empty() {
            tracing::warn!(volume = %req.name, keys = ?params.ignored, "ignoring StorageClass parameters no CBS driver knows (--unknown-parameters=warn)");
        }
        MutableParams::parse(&req.mutable_parameters)?.apply(&mut params)?;
        warn_on_fs_type_mismatch(&req.name, &params, &req.volume_capabilities);
        if let Some(multi) = params.multi_disk {
            let volume = self
                .create_multi_disk(&req, &params, multi, deadline)
                .await?;
            return Ok(Response::new(pb::CreateVolumeResponse {
                volume: Some(volume),
            }));
        }
        let Capacity {
            required: required_bytes,
            limit: limit_bytes,
        } = Capacity::parse(req.capacity_range.as_ref())?;
        let mut gib =
            size_gib(&params.disk_type, required_bytes, limit_bytes).map_err(Error::from)?;
        let snapshot_id = match req
            .volume_content_source
            .as_ref()
            .and_then(|s| s.r#type.as_ref())
        {
            None => None,
            Some(pb::volume_content_source::Type::Snapshot(s)) if !s.snapshot_id.is_empty() => {
                Some(s.snapshot_id.clone())
            }
            Some(pb::volume_content_source::Type::Snapshot(_)) => {
                return Err(required("volume_content_source.snapshot.snapshot_id").into());
            }
            Some(pb::volume_content_source::Type::Volume(_)) => {
                return Err(Error::InvalidArgument(
                    "cloning a volume is not supported; restore from a snapshot instead".into(),
                )
                .into());
            }
        };
        let _guard = self.inflight.acquire(&req.name)?;

        if let Some(disk) = self.disk_by_name(&req.name).await? {
            Self::check_existing(
                &disk,
                &params,
                required_bytes,
                limit_bytes,
                snapshot_id.as_deref(),
            )?;
            return Ok(Response::new(pb::CreateVolumeResponse {
                volume: Some(created_volume(&disk, &params, req.volume_content_source)),
            }));
        }
        if let Some(id) = &snapshot_id {
            let snapshot = if is_snapshot_id(id) {
                self.snapshot_by(None, Some(id), deadline).await?
            } else {
                None
            };
            let snapshot =
                snapshot.ok_or_else(|| Error::NotFound(format!("snapshot {id} does not exist")))?;
            if !snapshot.is_ready() {
                return Err(Error::Unavailable(format!(
                    "snapshot {id} is {} ({}%); retry when it is ready",
                    snapshot.snapshot_state, snapshot.percent
                ))
                .into());
            }
            if gib < snapshot.disk_size {
                if required_bytes == 0
                    && (limit_bytes == 0 || snapshot.disk_size.saturating_mul(GIB) <= limit_bytes)
                {
                    gib = snapshot.disk_size;
                } else {
                    return Err(Error::from(crate::params::SizeError::LimitTooSmall {
                        disk_type: params.disk_type.clone(),
                        required: snapshot.disk_size.saturating_mul(GIB),
                        rounded_gib: gib,
                        limit: limit_bytes.max(gib.saturating_mul(GIB)),
                    })
                    .into());
                }
            }
        }
        let zone = self
            .choose_zone(
                &req.name,
                &params,
                req.accessibility_requirements.as_ref(),
                deadline,
            )
            .await?;
        let (disk_name, name_tag) = cloud_name(&req.name, TAG_VOLUME_NAME);
        let create = CreateDisksRequest {
            placement: Placement {
                zone,
                project_id: params.project_id,
                cdc_id: params.cdc_id.clone(),
            },
            disk_type: params.disk_type.clone(),
            disk_charge_type: params.charge_type.clone(),
            disk_charge_prepaid: params.prepaid_period.map(|period| DiskChargePrepaid {
                period,
                renew_flag: params.renew_flag.clone(),
            }),
            disk_size: gib,
            disk_name: Some(disk_name),
            disk_count: 1,
            snapshot_id: snapshot_id.clone(),
            encrypt: params.encrypt.then(|| "ENCRYPT".to_owned()),
            throughput_performance: params.throughput_mbps,
            tags: params.tags.iter().cloned().chain(name_tag).collect(),
            client_token: None,
        };
        let disk = self.create_disk(&req.name, create, deadline).await?;
        let disk_id = disk.disk_id.clone();
        if let Some(policy) = &params.auto_snapshot_policy
            && let Err(e) = self
                .cbs
                .bind_auto_snapshot_policy(policy, std::slice::from_ref(&disk_id), Some(deadline))
                .await
        {
            tracing::warn!(disk = %disk_id, policy = %policy, error = %e, "cannot bind the auto-snapshot policy; the volume is created without it");
        }
        Ok(Response::new(pb::CreateVolumeResponse {
            volume: Some(created_volume(&disk, &params, req.volume_content_source)),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> RpcResult<pb::DeleteVolumeResponse> {
        let deadline = answer_by(&request);
        let volume_id = request.into_inner().volume_id;
        if volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        if let Some(disks) = multi_disk_ids(&volume_id) {
            let _guard = self.inflight.acquire(&volume_id)?;
            self.delete_multi_disk(&volume_id, &disks, deadline).await?;
            return Ok(Response::new(pb::DeleteVolumeResponse {}));
        }
        if !is_disk_id(&volume_id) {
            return Ok(Response::new(pb::DeleteVolumeResponse {}));
        }
        let _guard = self.inflight.acquire(&volume_id)?;
        // One call: TerminateDisks itself refuses attached and transitional disks.
        match self
            .cbs
            .terminate_disks(std::slice::from_ref(&volume_id), Some(deadline))
            .await
        {
            Ok(()) => {
                self.terminated.record(&volume_id);
                Ok(Response::new(pb::DeleteVolumeResponse {}))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.terminated.record(&volume_id);
                Ok(Response::new(pb::DeleteVolumeResponse {}))
            }
            Err(e) if e.code().is_some_and(|c| c.ends_with(".Attached")) => {
                Err(Error::FailedPrecondition(format!(
                    "volume {volume_id} is attached; unpublish it first: {e}"
                ))
                .into())
            }
            Err(e) => Err(Error::from(e).into()),
        }
    }

    async fn controller_publish_volume(
        &self,
        request: Request<pb::ControllerPublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerPublishVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        if req.node_id.is_empty() {
            return Err(required("node_id").into());
        }
        let capability = req
            .volume_capability
            .ok_or_else(|| required("volume_capability"))?;
        check_capabilities(std::slice::from_ref(&capability))?;
        let _guard = self.inflight.acquire(&req.volume_id)?;
        let publish_context = match multi_disk_ids(&req.volume_id) {
            Some(disks) => {
                self.publish_multi_disk(&req.volume_id, &disks, &req.node_id, deadline)
                    .await?
            }
            None => self.publish(&req.volume_id, &req.node_id, deadline).await?,
        };
        Ok(Response::new(pb::ControllerPublishVolumeResponse {
            publish_context,
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> RpcResult<pb::ControllerUnpublishVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let _guard = self.inflight.acquire(&req.volume_id)?;
        match multi_disk_ids(&req.volume_id) {
            Some(disks) => {
                self.unpublish_multi_disk(&disks, &req.node_id, deadline)
                    .await?
            }
            None => {
                self.unpublish(&req.volume_id, &req.node_id, deadline)
                    .await?
            }
        }
        Ok(Response::new(pb::ControllerUnpublishVolumeResponse {}))
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
        match multi_disk_ids(&req.volume_id) {
            Some(disks) => {
                for disk_id in disks {
                    self.disk(disk_id).await?.ok_or_else(|| {
                        Error::NotFound(format!(
                            "disk {disk_id} of volume {} does not exist",
                            req.volume_id
                        ))
                    })?;
                }
            }
            None => {
                self.existing_disk(&req.volume_id).await?;
            }
        }
        let outcome = check_capabilities(&req.volume_capabilities).map_err(|e| e.to_string());
        let response = validation(req, outcome);
        Ok(Response::new(response))
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        self.list_volume_page(request).await
    }

    async fn get_capacity(
        &self,
        _request: Request<pb::GetCapacityRequest>,
    ) -> RpcResult<pb::GetCapacityResponse> {
        Err(Status::unimplemented(
            "GetCapacity: CBS capacity is not bounded per zone in a way CSI can report",
        ))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> RpcResult<pb::ControllerGetCapabilitiesResponse> {
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse {
            capabilities: controller_capabilities(),
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> RpcResult<pb::CreateSnapshotResponse> {
        self.take_snapshot(request).await
    }

    async fn delete_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> RpcResult<pb::DeleteSnapshotResponse> {
        self.remove_snapshot(request).await
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> RpcResult<pb::ListSnapshotsResponse> {
        self.list_snapshot_page(request).await
    }

    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        self.expand_disk(request).await
    }

    async fn controller_get_volume(
        &self,
        request: Request<pb::ControllerGetVolumeRequest>,
    ) -> RpcResult<pb::ControllerGetVolumeResponse> {
        self.volume_status(request).await
    }

    async fn controller_modify_volume(
        &self,
        request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> RpcResult<pb::ControllerModifyVolumeResponse> {
        self.modify_disk(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capability(
        mode: pb::volume_capability::access_mode::Mode,
        fs: Option<&str>,
    ) -> pb::VolumeCapability {
        pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
            access_type: Some(match fs {
                Some(fs) => {
                    pb::volume_capability::AccessType::Mount(pb::volume_capability::MountVolume {
                        fs_type: fs.into(),
                        ..Default::default()
                    })
                }
                None => {
                    pb::volume_capability::AccessType::Block(pb::volume_capability::BlockVolume {})
                }
            }),
        }
    }

    #[test]
    fn capabilities() {
        use pb::volume_capability::access_mode::Mode;
        assert!(check_capabilities(&[capability(Mode::SingleNodeWriter, Some("ext4"))]).is_ok());
        assert!(check_capabilities(&[capability(Mode::SingleNodeReaderOnly, None)]).is_ok());
        assert!(
            check_capabilities(&[capability(Mode::SingleNodeMultiWriter, Some("xfs"))]).is_ok()
        );
        let err =
            check_capabilities(&[capability(Mode::MultiNodeMultiWriter, Some(""))]).unwrap_err();
        assert!(err.to_string().contains("MULTI_NODE_MULTI_WRITER"), "{err}");
        let err =
            check_capabilities(&[capability(Mode::SingleNodeWriter, Some("btrfs"))]).unwrap_err();
        assert!(err.to_string().contains("btrfs"), "{err}");
        assert!(check_capabilities(&[pb::VolumeCapability::default()]).is_err());
    }

    #[test]
    fn ids_and_tokens() {
        assert!(is_disk_id("disk-abc123"));
        for bad in ["", "disk-", "vol-1", "disk-ab/c", "some-volume-id"] {
            assert!(!is_disk_id(bad), "{bad}");
        }
        assert!(is_snapshot_id("snap-1x"));
    }

    #[test]
    fn remembered_ids_are_kept_within_bounds() {
        let terminated = Remembered::default();
        assert!(terminated.record("disk-1"));
        assert!(!terminated.record("disk-1"), "a second record is not new");
        assert!(terminated.contains("disk-1"));
        assert!(!terminated.contains("disk-2"));
        for i in 0..REMEMBERED_KEPT {
            terminated.record(&format!("disk-x{i}"));
        }
        assert!(terminated.0.lock().unwrap().len() <= REMEMBERED_KEPT);
    }
}
