//! The CBS controller service: disks and snapshots through the cloud API.
//!
//! Every RPC validates its request first, takes an in-flight guard on the volume (or snapshot
//! name), and is idempotent through the cloud itself: creates are found again by name and carry a
//! `ClientToken`; attach and detach are a state machine read from `DescribeDisks`, waited on within
//! the caller's deadline and resumed by the retry. No local state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi_common::csi::reply::{answer_by, controller_caps, validation};
use csi_common::csi::request::{self, Capacity, Page, Supported, is_mount};
use csi_common::csi::{InFlight, pb};
use tcloud::ErrorKind;
use tcloud::cbs::{
    self, CbsApi, CreateDisksRequest, CreateSnapshotRequest, DescribeDisksRequest,
    DescribeSnapshotsRequest, Disk, DiskChargePrepaid, Filter, MAX_PAGE, Placement, disk_state,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result, required};
use crate::params::{CbsParams, GIB, MutableParams, size_gib};
use crate::topology::{Zones, requirement_zones, topology_for};
use crate::watcher::{DiskWatcher, Learned, Wait};

/// An attach request that left the disk UNATTACHED this long is sent again.
const REISSUE_AFTER: Duration = Duration::from_secs(5);
pub const PUBLISH_CONTEXT_DISK_ID: &str = "diskId";

mod attach;
mod create;
mod snapshots;

use create::{TAG_SNAPSHOT_NAME, TAG_VOLUME_NAME, Terminated, cloud_name};

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub driver_name: String,
    /// An attach still `ATTACHING` after this long is reported as stuck instead of waited on.
    pub attach_timeout: Duration,
    /// The zone of a volume whose request names none: this controller's own zone, when known.
    pub default_zone: Option<String>,
}

#[derive(Debug)]
pub struct ControllerService<C> {
    cbs: Arc<C>,
    config: ControllerConfig,
    inflight: InFlight,
    watcher: DiskWatcher,
    zones: Zones<C>,
    /// When this controller first saw each disk `ATTACHING`: the stuck-attach watchdog.
    attaching_since: Mutex<HashMap<String, Instant>>,
    /// How long attaches, detaches and resizes usually take here, to time the first look.
    attach_time: Learned,
    detach_time: Learned,
    resize_time: Learned,
    /// Disks this controller terminated: a ClientToken answering one of them is stale.
    terminated: Terminated,
}

/// CBS disk IDs look like `disk-xxxxxxxx`; anything else cannot exist, so no cloud call is made.
pub fn is_disk_id(id: &str) -> bool {
    id.strip_prefix("disk-").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

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

fn timestamp(create_time: &str) -> prost_types::Timestamp {
    let seconds = tcloud::time::parse_api_time(create_time).unwrap_or_else(tcloud::time::unix_now);
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn snapshot_proto(snapshot: &cbs::Snapshot) -> pb::Snapshot {
    pb::Snapshot {
        size_bytes: (snapshot.disk_size.saturating_mul(GIB)) as i64,
        snapshot_id: snapshot.snapshot_id.clone(),
        source_volume_id: snapshot.disk_id.clone(),
        creation_time: Some(timestamp(&snapshot.create_time)),
        ready_to_use: snapshot.is_ready(),
        group_snapshot_id: String::new(),
    }
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

impl<C: CbsApi> ControllerService<C> {
    /// Records the time spent waiting on disk states in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<csi_common::metrics::Metrics>) -> Self {
        self.watcher.metrics = metrics;
        self
    }

    pub fn new(cbs: Arc<C>, config: ControllerConfig) -> Self {
        ControllerService {
            watcher: DiskWatcher::start(Arc::clone(&cbs)),
            zones: Zones::new(Arc::clone(&cbs)),
            cbs,
            config,
            inflight: InFlight::new(),
            attaching_since: Mutex::new(HashMap::new()),
            attach_time: Learned::default(),
            detach_time: Learned::default(),
            resize_time: Learned::default(),
            terminated: Terminated::default(),
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
        self.disk(volume_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("volume {volume_id} does not exist")))
    }

    /// The zone for a new disk: `diskZone`, else the topology's preferred then requisite zones,
    /// else this controller's zone, else a zone of the region. Checked against the requisite topology when there is one.
    async fn choose_zone(
        &self,
        name: &str,
        params: &CbsParams,
        requirement: Option<&pb::TopologyRequirement>,
        deadline: Instant,
    ) -> Result<String> {
        let (ordered, requisite) = requirement_zones(requirement);
        let zone = match (&params.zone, ordered.first()) {
            (Some(zone), _) => self.zones.name_of(zone, Some(deadline)).await?,
            (None, Some(zone)) => self.zones.name_of(zone, Some(deadline)).await?,
            (None, None) => match &self.config.default_zone {
                Some(zone) => self.zones.name_of(zone, Some(deadline)).await?,
                None => self.zones.pick(name, Some(deadline)).await?,
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

fn status_of(disk: &Disk) -> (Vec<String>, pb::VolumeCondition) {
    let nodes = match disk.disk_state.as_str() {
        disk_state::ATTACHED | disk_state::DETACHING | disk_state::EXPANDING => {
            disk.instance().map(str::to_owned).into_iter().collect()
        }
        _ => Vec::new(),
    };
    let condition = pb::VolumeCondition {
        abnormal: false,
        message: format!("disk is {}", disk.disk_state),
    };
    (nodes, condition)
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
        let mut params = CbsParams::parse(&req.parameters)?;
        MutableParams::parse(&req.mutable_parameters)?.apply(&mut params)?;
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
                volume: Some(volume_proto(&disk, req.volume_content_source)),
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
            volume: Some(volume_proto(&disk, req.volume_content_source)),
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
        let publish_context = self.publish(&req.volume_id, &req.node_id, deadline).await?;
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
        self.unpublish(&req.volume_id, &req.node_id, deadline)
            .await?;
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
        self.existing_disk(&req.volume_id).await?;
        let outcome = check_capabilities(&req.volume_capabilities).map_err(|e| e.to_string());
        let response = validation(req, outcome);
        Ok(Response::new(response))
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> RpcResult<pb::ListVolumesResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        let page = Page::parse(&req.starting_token, req.max_entries, MAX_PAGE)?;
        let describe = DescribeDisksRequest {
            offset: Some(page.offset),
            limit: Some(page.limit),
            ..Default::default()
        };
        let response = self
            .cbs
            .describe_disks(&describe, Some(deadline))
            .await
            .map_err(Error::from)?;
        let next_token =
            page.next_token(response.disk_set.len(), response.total_count, "volumes")?;
        let entries = response
            .disk_set
            .iter()
            .map(|disk| {
                let (published_node_ids, volume_condition) = status_of(disk);
                pb::list_volumes_response::Entry {
                    volume: Some(volume_proto(disk, None)),
                    status: Some(pb::list_volumes_response::VolumeStatus {
                        published_node_ids,
                        volume_condition: Some(volume_condition),
                    }),
                }
            })
            .collect();
        Ok(Response::new(pb::ListVolumesResponse {
            entries,
            next_token,
        }))
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
        let deadline = answer_by(&request);
        let req = request.into_inner();
        request::require(&req.name, "name")?;
        request::require(&req.source_volume_id, "source_volume_id")?;
        let _guard = self.inflight.acquire(&format!("snapshot/{}", req.name))?;
        if let Some(existing) = self.snapshot_by_name(&req.name, deadline).await? {
            if existing.disk_id != req.source_volume_id {
                return Err(Error::AlreadyExists(format!(
                    "snapshot {} exists as {} of volume {}, not {}",
                    req.name, existing.snapshot_id, existing.disk_id, req.source_volume_id
                ))
                .into());
            }
            return Ok(Response::new(pb::CreateSnapshotResponse {
                snapshot: Some(snapshot_proto(&existing)),
            }));
        }
        let disk = self.existing_disk(&req.source_volume_id).await?;
        let (snapshot_name, name_tag) = cloud_name(&req.name, TAG_SNAPSHOT_NAME);
        let create = CreateSnapshotRequest {
            disk_id: disk.disk_id.clone(),
            snapshot_name: Some(snapshot_name.clone()),
            tags: name_tag.into_iter().collect(),
        };
        let snapshot_id = self
            .cbs
            .create_snapshot(&create, Some(deadline))
            .await
            .map_err(Error::from)?;
        let snapshot = self
            .snapshot_by(None, Some(&snapshot_id), deadline)
            .await?
            .unwrap_or(cbs::Snapshot {
                snapshot_id,
                snapshot_name,
                snapshot_state: cbs::snapshot_state::CREATING.into(),
                percent: 0,
                disk_id: disk.disk_id,
                disk_size: disk.disk_size,
                create_time: String::new(),
            });
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot: Some(snapshot_proto(&snapshot)),
        }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> RpcResult<pb::DeleteSnapshotResponse> {
        let deadline = answer_by(&request);
        let snapshot_id = request.into_inner().snapshot_id;
        if snapshot_id.is_empty() {
            return Err(required("snapshot_id").into());
        }
        if !is_snapshot_id(&snapshot_id) {
            return Ok(Response::new(pb::DeleteSnapshotResponse {}));
        }
        let _guard = self.inflight.acquire(&snapshot_id)?;
        self.delete_snapshot_when_deletable(&snapshot_id, deadline)
            .await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> RpcResult<pb::ListSnapshotsResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        let to_entry = |s: &cbs::Snapshot| pb::list_snapshots_response::Entry {
            snapshot: Some(snapshot_proto(s)),
        };
        if !req.snapshot_id.is_empty() {
            let found = if is_snapshot_id(&req.snapshot_id) {
                self.snapshot_by(None, Some(&req.snapshot_id), deadline)
                    .await?
            } else {
                None
            };
            let entries = found
                .filter(|s| req.source_volume_id.is_empty() || s.disk_id == req.source_volume_id)
                .iter()
                .map(to_entry)
                .collect();
            return Ok(Response::new(pb::ListSnapshotsResponse {
                entries,
                next_token: String::new(),
            }));
        }
        let page = Page::parse(&req.starting_token, req.max_entries, MAX_PAGE)?;
        let mut describe = DescribeSnapshotsRequest {
            offset: Some(page.offset),
            limit: Some(page.limit),
            ..Default::default()
        };
        if !req.source_volume_id.is_empty() {
            if !is_disk_id(&req.source_volume_id) {
                return Ok(Response::new(pb::ListSnapshotsResponse::default()));
            }
            describe
                .filters
                .push(Filter::new("disk-id", &req.source_volume_id));
        }
        let response = self
            .cbs
            .describe_snapshots(&describe, Some(deadline))
            .await
            .map_err(Error::from)?;
        let next_token = page.next_token(
            response.snapshot_set.len(),
            response.total_count,
            "snapshots",
        )?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            entries: response.snapshot_set.iter().map(to_entry).collect(),
            next_token,
        }))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<pb::ControllerExpandVolumeRequest>,
    ) -> RpcResult<pb::ControllerExpandVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let range = req
            .capacity_range
            .ok_or_else(|| required("capacity_range"))?;
        let Capacity {
            required: required_bytes,
            limit: limit_bytes,
        } = Capacity::parse(Some(&range))?;
        let node_expansion_required = is_mount(req.volume_capability.as_ref());
        let _guard = self.inflight.acquire(&req.volume_id)?;
        let disk = self.existing_disk(&req.volume_id).await?;
        let gib = size_gib(&disk.disk_type, required_bytes, limit_bytes).map_err(Error::from)?;
        let done = |disk: &Disk| pb::ControllerExpandVolumeResponse {
            capacity_bytes: disk.disk_size.saturating_mul(GIB) as i64,
            node_expansion_required,
        };
        if disk.disk_size >= gib && disk.disk_state != disk_state::EXPANDING {
            return Ok(Response::new(done(&disk)));
        }
        if disk.disk_size < gib {
            let disk = self
                .wait_settled(&req.volume_id, deadline, "a settled state before resizing")
                .await?;
            if disk.disk_size < gib {
                match self
                    .cbs
                    .resize_disk(&req.volume_id, gib, Some(deadline))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::Busy => {}
                    Err(e) => return Err(Error::from(e).into()),
                }
            }
        }
        let sent = Instant::now();
        let disk = self
            .watcher
            .wait_until(
                &req.volume_id,
                deadline,
                self.resize_time.get(),
                "the resize",
                |d| {
                    Ok(
                        if d.disk_state != disk_state::EXPANDING && d.disk_size >= gib {
                            Wait::Done
                        } else {
                            Wait::Continue
                        },
                    )
                },
            )
            .await?;
        self.resize_time.record(sent.elapsed());
        Ok(Response::new(done(&disk)))
    }

    async fn controller_get_volume(
        &self,
        request: Request<pb::ControllerGetVolumeRequest>,
    ) -> RpcResult<pb::ControllerGetVolumeResponse> {
        let volume_id = request.into_inner().volume_id;
        if volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let disk = self.existing_disk(&volume_id).await?;
        let (published_node_ids, volume_condition) = status_of(&disk);
        Ok(Response::new(pb::ControllerGetVolumeResponse {
            volume: Some(volume_proto(&disk, None)),
            status: Some(pb::controller_get_volume_response::VolumeStatus {
                published_node_ids,
                volume_condition: Some(volume_condition),
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        request: Request<pb::ControllerModifyVolumeRequest>,
    ) -> RpcResult<pb::ControllerModifyVolumeResponse> {
        let deadline = answer_by(&request);
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(required("volume_id").into());
        }
        let MutableParams {
            disk_type,
            throughput_mbps: throughput,
        } = MutableParams::parse(&req.mutable_parameters)?;
        let _guard = self.inflight.acquire(&req.volume_id)?;
        let disk = self.existing_disk(&req.volume_id).await?;
        if let Some(disk_type) = disk_type.filter(|t| *t != disk.disk_type) {
            self.cbs
                .modify_disk_type(&req.volume_id, &disk_type, Some(deadline))
                .await
                .map_err(Error::from)?;
        }
        if let Some(mbps) = throughput.filter(|t| *t != disk.throughput_performance) {
            self.cbs
                .modify_disk_extra_performance(&req.volume_id, mbps, Some(deadline))
                .await
                .map_err(Error::from)?;
        }
        Ok(Response::new(pb::ControllerModifyVolumeResponse {}))
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
}
