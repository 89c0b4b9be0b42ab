//! `GET /api/servers/:id/drift`: asks the server's agent for its panel's accounts and compares
//! them with the services placed on that server.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mpanel_common::command::ListAccounts;
use mpanel_common::ids::ServerId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::PathId;
use super::fields::rfc3339;
use super::openapi::{ErrorBody, NotFound};
use crate::app::AppState;
use crate::drift::{MissingAccount, OrphanAccount, PanelAccount, StateMismatch, compute_drift};
use crate::fleet::CommandError;
use crate::store::{Page, ServiceFilter, now_ms};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(server_drift))
}

/// How long an admin waits for a panel to list its accounts.
const LIST_DEADLINE: Duration = Duration::from_secs(30);

/// What the panel holds against what the controller placed on the server.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DriftReport {
    server_id: i64,
    checked_at: String,
    /// How many accounts the panel listed.
    accounts_on_panel: usize,
    /// How many services (of any status) are placed on the server.
    services_on_server: usize,
    /// No orphans, nothing missing, no state mismatches.
    clean: bool,
    /// Accounts on the panel that no live service owns.
    orphans: Vec<OrphanAccount>,
    /// Active or suspended services whose account is not on the panel.
    missing: Vec<MissingAccount>,
    /// Services whose suspension disagrees with the panel's.
    state_mismatches: Vec<StateMismatch>,
}

/// Compares the accounts on the server's panel with the services placed on the server.
///
/// The server's agent is asked for the panel's accounts; the answer is awaited for up to 30 s.
#[utoipa::path(
    get,
    path = "/api/servers/{id}/drift",
    tag = "servers",
    params(("id" = i64, Path, description = "The server's id.", minimum = 1)),
    responses(
        (status = 200, description = "The comparison.", body = DriftReport),
        (status = 404, response = NotFound),
        (status = 502, description = "The panel could not list its accounts (`panel_error`).", body = ErrorBody),
        (status = 503, description = "The server's agent is not connected (`agent_offline`); or, \
            with no body, the request took longer than the API's 60 s limit, or the database is \
            unreachable.", body = ErrorBody),
        (status = 504, description = "The agent did not answer within 30 s (`agent_timeout`).", body = ErrorBody),
    )
)]
async fn server_drift(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(server_id): PathId<ServerId>,
) -> ApiResult<Json<DriftReport>> {
    state.store.get_server(server_id).await?;
    let now = now_ms();
    let reply = state
        .fleet
        .request(
            server_id,
            ListAccounts,
            &format!("drift:server:{server_id}:{now}"),
            LIST_DEADLINE,
        )
        .await
        .map_err(|e| agent_error(&e))?;
    let accounts: Vec<PanelAccount> = reply
        .accounts
        .into_iter()
        .map(|a| PanelAccount {
            username: a.username,
            domain: a.domain,
            suspended: a.suspended,
        })
        .collect();

    let mut services = Vec::new();
    let mut page = Page {
        limit: 500,
        after_id: None,
    };
    loop {
        let filter = ServiceFilter {
            server_id: Some(server_id),
            page,
            ..ServiceFilter::default()
        };
        let batch = state.store.list_services(&filter).await?;
        let done = batch.len() < 500;
        page.after_id = batch.last().map(|s| s.id.get());
        services.extend(batch);
        if done {
            break;
        }
    }

    let report = compute_drift(&services, &accounts);
    Ok(Json(DriftReport {
        server_id: server_id.get(),
        checked_at: rfc3339(now),
        accounts_on_panel: accounts.len(),
        services_on_server: services.len(),
        clean: report.is_clean(),
        orphans: report.orphans,
        missing: report.missing,
        state_mismatches: report.state_mismatches,
    }))
}

/// How an agent's failure reads to an admin: offline 503, no answer 504, a panel failure 502.
pub(super) fn agent_error(error: &CommandError) -> ApiError {
    match error {
        CommandError::Offline(_) | CommandError::Disconnected(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_offline",
            error.to_string(),
        ),
        CommandError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "agent_timeout",
            error.to_string(),
        ),
        CommandError::Failed { .. } | CommandError::Waiting(_) | CommandError::BadReply { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "panel_error", error.to_string())
        }
    }
}
