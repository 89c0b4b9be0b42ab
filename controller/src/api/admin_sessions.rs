//! The web dashboard's sign-in sessions over the API: `GET /api/admin/sessions` and
//! `DELETE /api/admin/sessions/{id}`, both needing a token with every scope. Revoking a
//! session signs its browser out at its next request. The session cookie itself never
//! authorises these routes (nor any `/api/*` route): only bearer tokens do.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::PathId;
use super::fields::rfc3339;
use super::openapi::{Conflict, NotFound};
use crate::app::AppState;
use crate::store::{AdminSession, now_ms};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_admin_sessions))
        .routes(routes!(revoke_admin_session))
}

/// A dashboard sign-in session: never its cookie nor the cookie's hash.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AdminSessionDto {
    id: i64,
    /// The admin user signed in.
    user_id: i64,
    email: String,
    /// active, expired or revoked.
    status: &'static str,
    created_at: String,
    /// Within a minute.
    last_seen_at: String,
    expires_at: String,
    revoked_at: Option<String>,
    /// The browser's User-Agent at sign-in.
    user_agent: Option<String>,
    /// The client address at sign-in.
    ip_address: Option<String>,
}

impl AdminSessionDto {
    fn new(s: &AdminSession, now: i64) -> Self {
        let status = if s.revoked_at.is_some() {
            "revoked"
        } else if s.expires_at <= now {
            "expired"
        } else {
            "active"
        };
        AdminSessionDto {
            id: s.id,
            user_id: s.user_id,
            email: s.email.clone(),
            status,
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.expires_at),
            revoked_at: s.revoked_at.map(rfc3339),
            user_agent: s.user_agent.clone(),
            ip_address: s.ip_address.clone(),
        }
    }
}

/// The dashboard sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AdminSessionList {
    sessions: Vec<AdminSessionDto>,
}

/// Every dashboard sign-in session, newest first, expired and revoked ones included.
#[utoipa::path(
    get,
    path = "/api/admin/sessions",
    tag = "tokens",
    operation_id = "list_admin_sessions",
    responses((status = 200, description = "Every session.", body = AdminSessionList))
)]
async fn list_admin_sessions(
    _admin: Admin,
    State(state): State<AppState>,
) -> ApiResult<Json<AdminSessionList>> {
    let now = now_ms();
    let sessions = state.store.list_admin_sessions().await?;
    Ok(Json(AdminSessionList {
        sessions: sessions
            .iter()
            .map(|s| AdminSessionDto::new(s, now))
            .collect(),
    }))
}

/// The `{id}` of a session route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct AdminSessionPath {
    /// The session's id.
    #[param(minimum = 1)]
    id: i64,
}

/// Revokes a session at once: its cookie stops working. It stays listed, as revoked; revoking
/// one already revoked is a 409.
#[utoipa::path(
    delete,
    path = "/api/admin/sessions/{id}",
    tag = "tokens",
    operation_id = "revoke_admin_session",
    params(AdminSessionPath),
    responses(
        (status = 200, description = "The session as it is now, revoked.", body = AdminSessionDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn revoke_admin_session(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<i64>,
) -> ApiResult<Json<AdminSessionDto>> {
    let existing = state
        .store
        .get_admin_session(id)
        .await
        .map_err(|e| ApiError::not_found_as(e, "id", "admin session", id))?;
    if existing.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_revoked",
            format!("admin session {id} is already revoked"),
        ));
    }
    let revoked = state
        .store
        .revoke_admin_session(id, &admin.actor(), "admin_session.revoked")
        .await?;
    Ok(Json(AdminSessionDto::new(&revoked, now_ms())))
}
