//! Pieces of CSI requests and replies that every driver builds the same way: capability lists,
//! the ValidateVolumeCapabilities answer, usage figures, deadlines and path arguments.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::pb;
use crate::mount::{FsStats, MountError, MountInfo, Mounter, bounded, libc_errno};

/// How long a call without a `grpc-timeout` may wait on the cloud.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// Answer this long before the caller's deadline, so the answer arrives in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// The instant by which a call must have answered.
pub fn answer_by<T>(request: &tonic::Request<T>) -> Instant {
    match super::deadline(request) {
        Some(deadline) => deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline),
        None => Instant::now() + DEFAULT_WAIT,
    }
}

pub fn controller_caps(
    types: &[pb::controller_service_capability::rpc::Type],
) -> Vec<pb::ControllerServiceCapability> {
    types
        .iter()
        .map(|t| pb::ControllerServiceCapability {
            r#type: Some(pb::controller_service_capability::Type::Rpc(
                pb::controller_service_capability::Rpc { r#type: *t as i32 },
            )),
        })
        .collect()
}

pub fn node_caps(
    types: &[pb::node_service_capability::rpc::Type],
) -> Vec<pb::NodeServiceCapability> {
    types
        .iter()
        .map(|t| pb::NodeServiceCapability {
            r#type: Some(pb::node_service_capability::Type::Rpc(
                pb::node_service_capability::Rpc { r#type: *t as i32 },
            )),
        })
        .collect()
}

/// The answer to ValidateVolumeCapabilities: everything confirmed, or why not.
pub fn validation(
    request: pb::ValidateVolumeCapabilitiesRequest,
    outcome: Result<(), String>,
) -> pb::ValidateVolumeCapabilitiesResponse {
    match outcome {
        Ok(()) => pb::ValidateVolumeCapabilitiesResponse {
            confirmed: Some(pb::validate_volume_capabilities_response::Confirmed {
                volume_context: request.volume_context,
                volume_capabilities: request.volume_capabilities,
                parameters: request.parameters,
                mutable_parameters: request.mutable_parameters,
            }),
            message: String::new(),
        },
        Err(message) => pb::ValidateVolumeCapabilitiesResponse {
            confirmed: None,
            message,
        },
    }
}

/// Bytes and inodes of a mounted filesystem, as NodeGetVolumeStats reports them.
pub fn usage(stats: &FsStats) -> Vec<pb::VolumeUsage> {
    vec![
        pb::VolumeUsage {
            available: stats.available_bytes as i64,
            total: stats.total_bytes as i64,
            used: stats.used_bytes as i64,
            unit: pb::volume_usage::Unit::Bytes as i32,
        },
        pb::VolumeUsage {
            available: stats.free_inodes as i64,
            total: stats.total_inodes as i64,
            used: stats.used_inodes as i64,
            unit: pb::volume_usage::Unit::Inodes as i32,
        },
    ]
}

/// A NodeGetVolumeStats answer saying the volume is unhealthy, and why.
pub fn abnormal(message: String) -> pb::NodeGetVolumeStatsResponse {
    pb::NodeGetVolumeStatsResponse {
        usage: Vec::new(),
        volume_condition: Some(pb::VolumeCondition {
            abnormal: true,
            message,
        }),
    }
}

/// What NodeGetVolumeStats finds at a volume path that should be a mount point.
#[derive(Debug)]
pub enum VolumePath {
    /// Nothing is there: the answer is NOT_FOUND.
    Missing,
    /// The mount is broken (EIO, ENOTCONN, ESTALE) or gone: the answer is this abnormal condition.
    Unhealthy(pb::NodeGetVolumeStatsResponse),
    /// Mounted; `is_dir` is false for a published block device.
    Mounted { info: MountInfo, is_dir: bool },
}

/// The checks every driver's NodeGetVolumeStats starts with: the path exists, answers a stat, and
/// is a mount point.
pub fn check_volume_path<M: Mounter + ?Sized>(
    mounter: &M,
    path: &Path,
) -> Result<VolumePath, MountError> {
    // Bounded: a stat of a mount whose server is gone would hang this call for good.
    let meta = match bounded::metadata(path, bounded::STAT_LIMIT) {
        Ok(meta) => meta,
        Err(e @ MountError::NotAnswering { .. }) => {
            return Ok(VolumePath::Unhealthy(abnormal(e.to_string())));
        }
        Err(MountError::Io { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc_errno::EIO | libc_errno::ENOTCONN | libc_errno::ESTALE)
            ) =>
        {
            return Ok(VolumePath::Unhealthy(abnormal(format!(
                "the mount at {} is broken: {source}",
                path.display()
            ))));
        }
        Err(_) => return Ok(VolumePath::Missing),
    };
    match mounter.mount_at(path)? {
        None => Ok(VolumePath::Unhealthy(abnormal(format!(
            "{} is not mounted",
            path.display()
        )))),
        Some(info) => Ok(VolumePath::Mounted {
            info,
            is_dir: meta.is_dir(),
        }),
    }
}

/// Usage of a mounted filesystem, or the abnormal answer when statvfs finds it broken.
pub fn filesystem_usage<M: Mounter + ?Sized>(
    mounter: &M,
    path: &Path,
) -> Result<Result<Vec<pb::VolumeUsage>, pb::NodeGetVolumeStatsResponse>, MountError> {
    match mounter.stats(path) {
        Ok(stats) => Ok(Ok(usage(&stats))),
        Err(e) if e.is_broken_mount() => Ok(Err(abnormal(format!(
            "the mount at {} is broken: {e}",
            path.display()
        )))),
        Err(e @ MountError::NotAnswering { .. }) => Ok(Err(abnormal(e.to_string()))),
        Err(e) => Err(e),
    }
}

/// NodeGetVolumeStats of a filesystem volume: usage with a healthy condition saying `healthy`, or
/// an abnormal condition saying why not. `Ok(None)` when nothing is at the path (NOT_FOUND).
pub fn filesystem_stats<M: Mounter + ?Sized>(
    mounter: &M,
    path: &Path,
    healthy: &str,
) -> Result<Option<pb::NodeGetVolumeStatsResponse>, MountError> {
    match check_volume_path(mounter, path)? {
        VolumePath::Missing => Ok(None),
        VolumePath::Unhealthy(answer) => Ok(Some(answer)),
        VolumePath::Mounted { .. } => Ok(Some(match filesystem_usage(mounter, path)? {
            Ok(usage) => pb::NodeGetVolumeStatsResponse {
                usage,
                volume_condition: Some(pb::VolumeCondition {
                    abnormal: false,
                    message: healthy.to_owned(),
                }),
            },
            Err(answer) => answer,
        })),
    }
}
