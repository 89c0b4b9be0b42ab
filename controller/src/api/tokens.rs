//! Admin tokens over the API (`GET/POST /api/tokens`, `DELETE /api/tokens/:id`; all need a
//! token with every scope) and the audit log (`GET /api/activity`).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, Scope, parse_scopes};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId};
use super::fields::{instant_ms, rfc3339, text};
use super::listing::{Params, finish};
use crate::app::AppState;
use crate::store::{ActivityEntry, ActivityFilter, AdminToken, NewAdminToken, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{id}", delete(revoke_token))
        .route("/api/activity", get(list_activity))
}

fn token_json(t: &AdminToken, now: i64) -> Value {
    let status = if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": t.id,
        "name": t.name,
        "scopes": parse_scopes(&t.scopes).iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "status": status,
        "createdAt": rfc3339(t.created_at),
        "lastUsedAt": t.last_used_at.map(rfc3339),
        "expiresAt": t.expires_at.map(rfc3339),
        "revokedAt": t.revoked_at.map(rfc3339),
    })
}

async fn list_tokens(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let now = now_ms();
    let tokens = state.store.list_admin_tokens().await?;
    Ok(Json(json!({
        "tokens": tokens.iter().map(|t| token_json(t, now)).collect::<Vec<_>>()
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateToken {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// Answers the token itself once, in `token`; only its hash is kept.
async fn create_token(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = text("name", &body.name, 100)?;
    if body.scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes",
            "invalid_scopes",
            "name at least one of read, write, billing, fleet",
        ));
    }
    let mut scopes = Vec::with_capacity(body.scopes.len());
    for (i, raw) in body.scopes.iter().enumerate() {
        let scope = Scope::parse(raw).ok_or_else(|| {
            ApiError::invalid(
                &format!("scopes[{i}]"),
                "invalid_scope",
                format!(
                    "'{}' is not one of read, write, billing, fleet",
                    raw.chars().take(40).collect::<String>()
                ),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.sort();
    let now = now_ms();
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|raw| instant_ms("expiresAt", raw))
        .transpose()?;
    if expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::invalid(
            "expiresAt",
            "invalid_time",
            "must be in the future",
        ));
    }
    let token = crate::crypto::new_token("mpa_").map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot make a token: {e}"),
        )
    })?;
    let stored = state
        .store
        .create_scoped_admin_token(
            &NewAdminToken {
                name,
                token_hash: crate::crypto::token_hash(&token),
                scopes: scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                expires_at,
            },
            &admin.actor(),
        )
        .await?;
    let mut shown = token_json(&stored, now);
    shown["token"] = Value::String(token);
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn revoke_token(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<i64>,
) -> ApiResult<Json<Value>> {
    let existing = state.store.get_admin_token(id).await?;
    if existing.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_revoked",
            format!("token {id} is already revoked"),
        ));
    }
    let revoked = state
        .store
        .revoke_admin_token_as(id, &admin.actor())
        .await?;
    Ok(Json(token_json(&revoked, now_ms())))
}

fn activity_json(e: &ActivityEntry) -> Value {
    json!({
        "id": e.id,
        "actor": e.actor,
        "action": e.action,
        "target": match e.entity_id {
            Some(id) => format!("{}:{id}", e.entity_type),
            None => e.entity_type.clone(),
        },
        "details": e.details.0,
        "requestId": e.request_id,
        "createdAt": rfc3339(e.created_at),
    })
}

/// `target` is `type` or `type:id` (`service:42`), `actor` as the log names it (`admin:3`,
/// `cron:service-suspension`, `billing`), `since` an RFC 3339 time or a date.
async fn list_activity(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["target", "actor", "since", "limit", "cursor"])?;
    let (entity_type, entity_id) = match params.get("target") {
        None => (None, None),
        Some(raw) => match raw.split_once(':') {
            None => (Some(text("target", raw, 64)?), None),
            Some((kind, id)) => {
                let id = id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::invalid(
                        "target",
                        "invalid_target",
                        "must be a type or type:id, e.g. service:42",
                    )
                })?;
                (Some(text("target", kind, 64)?), Some(id))
            }
        },
    };
    let actor = params
        .get("actor")
        .map(|a| text("actor", a, 100))
        .transpose()?;
    let since = params
        .get("since")
        .map(|raw| instant_ms("since", raw))
        .transpose()?;
    let page = params.page(50, 500)?;
    let mut rows = state
        .store
        .search_activity(&ActivityFilter {
            entity_type,
            entity_id,
            actor,
            since,
            page,
        })
        .await?;
    let next = finish(&mut rows, page, |r| r.id);
    Ok(Json(json!({
        "activity": rows.iter().map(activity_json).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}
