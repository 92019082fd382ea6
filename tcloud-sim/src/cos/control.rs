//! `GET|PUT /_sim/cos-profile` on the API listener (unsigned test control plane): reads or
//! replaces the COS listener's network profile. It touches nothing else of COS.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::net::NetworkProfile;
use crate::sim::Sim;

pub async fn get_profile(State(sim): State<Arc<Sim>>) -> axum::Json<NetworkProfile> {
    axum::Json(sim.cos.profile())
}

pub async fn put_profile(
    State(sim): State<Arc<Sim>>,
    axum::Json(profile): axum::Json<NetworkProfile>,
) -> Response {
    match sim.cos.set_profile(profile) {
        Ok(()) => http::StatusCode::NO_CONTENT.into_response(),
        Err(message) => (http::StatusCode::BAD_REQUEST, message).into_response(),
    }
}
