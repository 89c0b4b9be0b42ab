//! `GET /api/agents`: fleet health. One entry per enrolled agent: its server, whether a session
//! is live, the last heartbeat, the load it reported and its certificate's expiry.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::fields::rfc3339;
use crate::app::AppState;
use crate::fleet::{AgentView, LoadReport, TooOld};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(list_agents))
}

/// Every enrolled agent, and how many have a live session.
#[derive(Debug, Serialize, ToSchema)]
struct AgentList {
    agents: Vec<AgentDto>,
    /// How many of them have a live session.
    connected: usize,
}

/// One enrolled agent: stored state merged with its live session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Agent)]
#[serde(rename_all = "camelCase")]
struct AgentDto {
    server_id: i64,
    /// The server's hostname; null if the server is gone.
    hostname: Option<String>,
    /// pending, online, suspect, offline or revoked.
    #[schema(value_type = String, example = "online")]
    status: &'static str,
    /// A session is live now.
    connected: bool,
    connected_at: Option<String>,
    last_heartbeat_at: Option<String>,
    /// The load of the latest heartbeat this controller received; null before the first since
    /// it started.
    load: Option<AgentLoad>,
    agent_version: String,
    /// cpanel, plesk or directadmin, as the agent said.
    panel_kind: String,
    capabilities: Vec<String>,
    enrolled_at: String,
    certificate_serial: Option<String>,
    certificate_expires_at: Option<String>,
    revoked_at: Option<String>,
    /// The agent's last session was refused because it speaks an older protocol.
    upgrade_required: bool,
    /// Why that session was refused; null unless `upgradeRequired`.
    refused_as_too_old: Option<Refusal>,
}

/// What an agent reports in each heartbeat: the host's load and the state of its panel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AgentLoad {
    load1: f64,
    load5: f64,
    load15: f64,
    cpu_count: u32,
    memory_total_bytes: u64,
    memory_available_bytes: u64,
    /// The partition holding the accounts.
    disk_total_bytes: u64,
    disk_free_bytes: u64,
    inodes_total: u64,
    inodes_free: u64,
    account_count: u32,
    panel_reachable: bool,
    agent_version: String,
    /// When the agent's client certificate expires, Unix milliseconds.
    certificate_not_after_ms: i64,
}

impl From<LoadReport> for AgentLoad {
    fn from(load: LoadReport) -> Self {
        // Destructured in full, so a field added to the report cannot go unshown here.
        let LoadReport {
            load1,
            load5,
            load15,
            cpu_count,
            memory_total_bytes,
            memory_available_bytes,
            disk_total_bytes,
            disk_free_bytes,
            inodes_total,
            inodes_free,
            account_count,
            panel_reachable,
            agent_version,
            certificate_not_after_ms,
        } = load;
        AgentLoad {
            load1,
            load5,
            load15,
            cpu_count,
            memory_total_bytes,
            memory_available_bytes,
            disk_total_bytes,
            disk_free_bytes,
            inodes_total,
            inodes_free,
            account_count,
            panel_reachable,
            agent_version,
            certificate_not_after_ms,
        }
    }
}

/// An agent's session refused for speaking an older protocol than this controller needs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Refusal {
    /// What the agent and its log were told.
    reason: String,
    agent_version: String,
    protocol_version: u32,
    required_protocol_version: u32,
    refused_at: String,
}

impl From<&TooOld> for Refusal {
    fn from(t: &TooOld) -> Self {
        Refusal {
            reason: t.reason(),
            agent_version: t.agent_version.clone(),
            protocol_version: t.protocol_version,
            required_protocol_version: t.required_protocol_version,
            refused_at: rfc3339(t.refused_at_ms),
        }
    }
}

impl AgentDto {
    fn new(a: AgentView, hostname: Option<String>) -> Self {
        AgentDto {
            server_id: a.row.server_id.get(),
            hostname,
            status: a.status.as_str(),
            connected: a.connected,
            connected_at: a.connected_at_ms.map(rfc3339),
            last_heartbeat_at: a.last_heartbeat_ms.map(rfc3339),
            load: a.load.map(AgentLoad::from),
            agent_version: a.row.agent_version,
            panel_kind: a.row.panel_kind,
            capabilities: a.row.capabilities.0,
            enrolled_at: rfc3339(a.row.enrolled_at),
            certificate_serial: a.row.cert_serial,
            certificate_expires_at: a.row.cert_not_after.map(rfc3339),
            revoked_at: a.row.revoked_at.map(rfc3339),
            upgrade_required: a.too_old.is_some(),
            refused_as_too_old: a.too_old.as_ref().map(Refusal::from),
        }
    }
}

/// Fleet health: every enrolled agent with its session, heartbeat, load and certificate.
#[utoipa::path(
    get,
    path = "/api/agents",
    tag = "agents",
    responses((status = 200, description = "The agents.", body = AgentList))
)]
async fn list_agents(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<AgentList>> {
    let servers: HashMap<i64, String> = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| (s.id.get(), s.hostname))
        .collect();
    let agents = state.fleet.agents().await.map_err(ApiError::internal)?;
    let connected = agents.iter().filter(|a| a.connected).count();
    let agents = agents
        .into_iter()
        .map(|a| {
            let hostname = servers.get(&a.row.server_id.get()).cloned();
            AgentDto::new(a, hostname)
        })
        .collect();
    Ok(Json(AgentList { agents, connected }))
}
