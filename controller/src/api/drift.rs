//! `GET /api/servers/:id/drift`: asks the server's agent for its panel's accounts and compares
//! them with the services placed on that server.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mpanel_common::command::ListAccounts;
use mpanel_common::ids::ServerId;
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::PathId;
use super::fields::rfc3339;
use crate::app::AppState;
use crate::drift::{PanelAccount, compute_drift};
use crate::fleet::CommandError;
use crate::store::{Page, ServiceFilter, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/servers/{id}/drift", get(server_drift))
}

/// How long an admin waits for a panel to list its accounts.
const LIST_DEADLINE: Duration = Duration::from_secs(30);

async fn server_drift(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(server_id): PathId<ServerId>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({
        "serverId": server_id,
        "checkedAt": rfc3339(now),
        "accountsOnPanel": accounts.len(),
        "servicesOnServer": services.len(),
        "clean": report.is_clean(),
        "orphans": report.orphans,
        "missing": report.missing,
        "stateMismatches": report.state_mismatches,
    })))
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
