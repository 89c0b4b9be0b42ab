//! `POST /api/services/:id/backups` (an admin takes a backup now, through the service's server
//! agent; the row is recorded whatever the outcome) and `GET /api/services/:id/backups`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mpanel_common::ids::ServiceId;
use serde::Serialize;
use serde_json::{Value, json};

use super::auth::Admin;
use super::drift::agent_error;
use super::error::{ApiError, ApiResult};
use super::extract::PathId;
use super::fields::rfc3339;
use crate::app::AppState;
use crate::backups::BackupError;
use crate::store::{BackupRow, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/services/{id}/backups",
        get(list_backups).post(take_backup),
    )
}

/// A backup as admins see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackupDto {
    id: i64,
    service_id: i64,
    server_id: Option<i64>,
    location: String,
    size_bytes: i64,
    status: String,
    /// `manual`, `scheduled` (the product's schedule) or `final` (before a termination).
    purpose: String,
    created_at: String,
    deleted_at: Option<String>,
}

impl From<BackupRow> for BackupDto {
    fn from(row: BackupRow) -> Self {
        BackupDto {
            id: row.id,
            service_id: row.service_id.get(),
            server_id: row.server_id,
            location: row.location,
            size_bytes: row.size_bytes,
            status: row.status,
            purpose: row.purpose,
            created_at: rfc3339(row.created_at),
            deleted_at: row.deleted_at.map(rfc3339),
        }
    }
}

async fn take_backup(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<(StatusCode, Json<BackupDto>)> {
    match state.backups.take(id, now_ms()).await {
        Ok(row) => Ok((StatusCode::CREATED, Json(row.into()))),
        Err(BackupError::NotPlaced) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "service_not_placed",
            "the service has no account on a server yet",
        )),
        Err(BackupError::Store(e)) => Err(e.into()),
        Err(BackupError::Agent(e)) => Err(agent_error(&e)),
    }
}

async fn list_backups(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<Json<Value>> {
    state.store.get_service(id).await?;
    let backups: Vec<BackupDto> = state
        .store
        .service_backups(id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "backups": backups })))
}
