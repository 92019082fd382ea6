//! Unsigned control endpoints for tests, on the simulator's loopback listener: `POST
//! /_sim/cbs/stale-link` makes the by-id link of an attached disk stale, as udev can leave it. It
//! changes links only, never the CBS state; no cloud API call comes here.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;

use crate::sim::Sim;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StaleLink {
    pub disk_id: String,
    pub instance_id: String,
    /// Where the link should point; default: another attached disk's device, or a loop device
    /// that does not exist.
    #[serde(default)]
    pub target: Option<String>,
}

/// `POST /_sim/cbs/stale-link`: points the by-id link of an attached disk at the wrong
/// device, as a stale udev link would. The serial in the instance's sysfs stays right.
pub async fn stale_link(
    State(sim): State<Arc<Sim>>,
    axum::Json(request): axum::Json<StaleLink>,
) -> Response {
    let cbs = &sim.cbs;
    let (attached, other) = cbs.store.read(|s| {
        let attached = s.cbs.disk(&request.disk_id).is_some_and(|d| {
            d.instance_id.as_deref() == Some(request.instance_id.as_str()) && d.attached()
        });
        let other = s
            .cbs
            .disks
            .iter()
            .filter(|d| d.disk_id != request.disk_id)
            .find_map(|d| d.loop_device.clone());
        (attached, other)
    });
    if !attached {
        return (
            StatusCode::CONFLICT,
            format!(
                "disk {} is not attached to {}",
                request.disk_id, request.instance_id
            ),
        )
            .into_response();
    }
    let target = request
        .target
        .or(other)
        .unwrap_or_else(|| "/dev/loop99999".to_owned());
    let layout = cbs.layout.clone();
    let link = layout.link(&request.instance_id, &request.disk_id);
    match layout.point_link(&request.instance_id, &request.disk_id, &target) {
        Ok(()) => axum::Json(serde_json::json!({
            "Link": link.display().to_string(),
            "Target": target,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
