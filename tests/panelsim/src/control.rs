//! `/__sim/*`: the test-only control API (no auth, never counted, never faulted).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::faults::ScriptedFault;
use crate::reply;
use crate::sim::Sim;
use crate::state::{SeedRequest, SetUsage};

/// `GET /__sim/state`
pub(crate) async fn state(State(sim): State<Arc<Sim>>) -> Response {
    reply::json(StatusCode::OK, &sim.state_json())
}

/// One fault or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum FaultBody {
    One(ScriptedFault),
    Many(Vec<ScriptedFault>),
}

/// `POST /__sim/faults` `{"kind":"partial_success","pathContains":"createacct","times":1}`
pub(crate) async fn add_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<FaultBody>(&body) {
        Ok(FaultBody::One(fault)) => vec![fault],
        Ok(FaultBody::Many(faults)) => faults,
        Err(error) => {
            return bad_request(&format!(
                "body: expected {{\"kind\":\"auth_failure|timeout|server_error|already_exists|partial_success\",\"pathContains\":\"…\",\"times\":1}} ({error})"
            ));
        }
    };
    for fault in faults {
        sim.script(fault);
    }
    reply::json(StatusCode::OK, &json!({ "pending": sim.pending_faults() }))
}

/// `GET /__sim/faults`
pub(crate) async fn list_faults(State(sim): State<Arc<Sim>>) -> Response {
    reply::json(StatusCode::OK, &json!({ "pending": sim.pending_faults() }))
}

/// `DELETE /__sim/faults`
pub(crate) async fn clear_faults(State(sim): State<Arc<Sim>>) -> Response {
    sim.clear_faults();
    reply::json(StatusCode::OK, &json!({ "pending": [] }))
}

/// `POST /__sim/seed` `{"accounts":[{"username","domain","package","suspended"}]}`
pub(crate) async fn seed(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let request: SeedRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&format!("body: {error}")),
    };
    let kind = sim.kind();
    match sim.world().seed(kind, request) {
        Ok(count) => reply::json(StatusCode::OK, &json!({ "seeded": { "accounts": count } })),
        Err(message) => reply::json(StatusCode::CONFLICT, &json!({ "error": message })),
    }
}

/// One usage update or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum UsageBody {
    One(SetUsage),
    Many(Vec<SetUsage>),
}

/// `POST /__sim/usage` `{"username","diskUsedBytes","bandwidthUsedBytes","inodesUsed"}` (or a
/// list): what the panel's usage endpoints report from now on.
pub(crate) async fn set_usage(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let updates = match serde_json::from_slice::<UsageBody>(&body) {
        Ok(UsageBody::One(u)) => vec![u],
        Ok(UsageBody::Many(us)) => us,
        Err(error) => {
            return bad_request(&format!(
                "body: expected {{\"username\":\"…\",\"diskUsedBytes\":0,\"bandwidthUsedBytes\":0,\"inodesUsed\":0}} ({error})"
            ));
        }
    };
    match sim.world().set_usage(updates) {
        Ok(count) => reply::json(StatusCode::OK, &json!({ "updated": count })),
        Err(message) => reply::json(StatusCode::NOT_FOUND, &json!({ "error": message })),
    }
}

fn bad_request(message: &str) -> Response {
    reply::json(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}
