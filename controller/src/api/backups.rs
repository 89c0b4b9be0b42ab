//! `POST /api/services/:id/backups` (an admin takes a backup now, through the service's server
//! agent; the row is recorded whatever the outcome) and `GET /api/services/:id/backups`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mpanel_common::ids::ServiceId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::drift::agent_error;
use super::error::{ApiError, ApiResult};
use super::extract::PathId;
use super::fields::rfc3339;
use super::openapi::{Conflict, ErrorBody, NotFound};
use crate::app::AppState;
use crate::backups::BackupError;
use crate::store::{BackupRow, now_ms};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(list_backups, take_backup))
}

/// A backup as admins see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Backup)]
#[serde(rename_all = "camelCase")]
struct BackupDto {
    id: i64,
    service_id: i64,
    /// The server it was taken on; null once that server is deleted.
    server_id: Option<i64>,
    /// The panel's name for the archive; empty while pending.
    location: String,
    size_bytes: i64,
    /// pending, completed, failed or deleted.
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

/// The service's backups, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct BackupList {
    backups: Vec<BackupDto>,
}

/// The `{id}` of a service's backups.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ServicePath {
    /// The service's id.
    #[param(minimum = 1)]
    id: i64,
}

/// Takes a backup of the service's account now, through its server's agent.
///
/// The backup is recorded whatever the outcome: one the agent could not take is listed as
/// `failed`.
#[utoipa::path(
    post,
    path = "/api/services/{id}/backups",
    tag = "backups",
    params(ServicePath),
    responses(
        (status = 201, description = "Taken.", body = BackupDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 502, description = "The panel could not take the backup (`panel_error`).", body = ErrorBody),
        (status = 503, description = "The server's agent is not connected (`agent_offline`); or, \
            with no body, the request took longer than the API's 60 s limit, or the database is \
            unreachable.", body = ErrorBody),
        (status = 504, description = "The agent did not answer in time (`agent_timeout`).", body = ErrorBody),
    )
)]
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

/// The service's backups, newest first.
#[utoipa::path(
    get,
    path = "/api/services/{id}/backups",
    tag = "backups",
    params(ServicePath),
    responses(
        (status = 200, description = "The backups.", body = BackupList),
        (status = 404, response = NotFound),
    )
)]
async fn list_backups(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<Json<BackupList>> {
    state.store.get_service(id).await?;
    let backups: Vec<BackupDto> = state
        .store
        .service_backups(id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(BackupList { backups }))
}
