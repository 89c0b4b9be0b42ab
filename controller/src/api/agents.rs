//! `GET /api/agents`: fleet health. One entry per enrolled agent: its server, whether a session
//! is live, the last heartbeat, the load it reported and its certificate's expiry.

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::fields::rfc3339;
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/agents", get(list_agents))
}

async fn list_agents(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let servers: HashMap<i64, String> = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| (s.id.get(), s.hostname))
        .collect();
    let agents = state.fleet.agents().await.map_err(ApiError::internal)?;
    let connected = agents.iter().filter(|a| a.connected).count();
    let items: Vec<Value> = agents
        .into_iter()
        .map(|a| {
            json!({
                "serverId": a.row.server_id.get(),
                "hostname": servers.get(&a.row.server_id.get()),
                "status": a.status.as_str(),
                "connected": a.connected,
                "connectedAt": a.connected_at_ms.map(rfc3339),
                "lastHeartbeatAt": a.last_heartbeat_ms.map(rfc3339),
                "load": a.load,
                "agentVersion": a.row.agent_version,
                "panelKind": a.row.panel_kind,
                "capabilities": a.row.capabilities.0,
                "enrolledAt": rfc3339(a.row.enrolled_at),
                "certificateSerial": a.row.cert_serial,
                "certificateExpiresAt": a.row.cert_not_after.map(rfc3339),
                "revokedAt": a.row.revoked_at.map(rfc3339),
                "upgradeRequired": a.too_old.is_some(),
                "refusedAsTooOld": a.too_old.as_ref().map(|t| json!({
                    "reason": t.reason(),
                    "agentVersion": t.agent_version,
                    "protocolVersion": t.protocol_version,
                    "requiredProtocolVersion": t.required_protocol_version,
                    "refusedAt": rfc3339(t.refused_at_ms),
                })),
            })
        })
        .collect();
    Ok(Json(json!({ "agents": items, "connected": connected })))
}
