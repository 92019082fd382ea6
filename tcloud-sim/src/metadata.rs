//! The instance-metadata service of each simulated CVM: instance ID, placement, and the CAM role's
//! temporary keys (issued here, accepted by the API front door, kept across restarts).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::sim::Sim;
use crate::state::{TempKey, random_id, unix_now};

pub async fn first_instance(State(sim): State<Arc<Sim>>, Path(path): Path<String>) -> Response {
    match sim.config.instances.first() {
        Some(instance) => answer(&sim, &instance.id.clone(), &path),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn instance(
    State(sim): State<Arc<Sim>>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    answer(&sim, &id, &path)
}

fn answer(sim: &Sim, instance_id: &str, path: &str) -> Response {
    let Some(instance) = sim.config.instances.iter().find(|i| i.id == instance_id) else {
        return (StatusCode::NOT_FOUND, format!("no instance {instance_id}")).into_response();
    };
    let role_prefix = "cam/security-credentials/";
    match path {
        "instance-id" => instance.id.clone().into_response(),
        "placement/region" => sim.config.region.clone().into_response(),
        "placement/zone" => instance.zone.clone().into_response(),
        _ if path.starts_with(role_prefix) => {
            let role = &path[role_prefix.len()..];
            match (&sim.config.cam_role, role) {
                (Some(configured), "") => configured.clone().into_response(),
                (Some(configured), asked) if asked == configured => role_keys(sim, instance_id),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The instance's current temporary keys, renewed when less than half their lifetime is left.
fn role_keys(sim: &Sim, instance_id: &str) -> Response {
    let now = unix_now();
    let ttl = sim.config.role_key_ttl_secs;
    let issued = sim.store.update(|state| {
        state.temp_keys.retain(|k| k.expires_at > now);
        if let Some(key) = state
            .temp_keys
            .iter()
            .find(|k| k.instance_id == instance_id && k.expires_at - now > ttl / 2)
        {
            return key.clone();
        }
        let key = TempKey {
            secret_id: random_id("AKIDtmp", 24),
            secret_key: random_id("", 32),
            token: random_id("tok", 48),
            expires_at: now + ttl,
            instance_id: instance_id.to_owned(),
        };
        state.temp_keys.push(key.clone());
        key
    });
    match issued {
        Ok(key) => axum::Json(serde_json::json!({
            "TmpSecretId": key.secret_id,
            "TmpSecretKey": key.secret_key,
            "Token": key.token,
            "ExpiredTime": key.expires_at,
            "Code": "Success",
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response(),
    }
}
