//! Admin tokens over the API (`GET/POST /api/tokens`, `DELETE /api/tokens/:id`; all need a
//! token with every scope) and the audit log (`GET /api/activity`), whose entries say who
//! changed what and how: `before` and `after` hold the fields the change touched.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Scope, parse_scopes};
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId};
use super::fields::{instant_ms, rfc3339, text};
use super::listing::{PageQuery, Params, finish};
use super::openapi::{Conflict, NotFound};
use crate::app::AppState;
use crate::store::{ActivityEntry, ActivityFilter, AdminToken, NewAdminToken, now_ms};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_activity))
}

/// An admin token as admins see it: never the token nor its hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AdminToken)]
#[serde(rename_all = "camelCase")]
struct TokenDto {
    id: i64,
    name: String,
    /// Some of read, write, billing, fleet.
    scopes: Vec<&'static str>,
    /// active, expired or revoked.
    status: &'static str,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

impl TokenDto {
    fn new(t: &AdminToken, now: i64) -> Self {
        let status = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        TokenDto {
            id: t.id,
            name: t.name.clone(),
            scopes: parse_scopes(&t.scopes).iter().map(|s| s.as_str()).collect(),
            status,
            created_at: rfc3339(t.created_at),
            last_used_at: t.last_used_at.map(rfc3339),
            expires_at: t.expires_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

/// A token just made, with the token itself: shown this once, only its hash is kept.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenCreated {
    #[serde(flatten)]
    stored: TokenDto,
    /// The bearer token (`mpa_…`).
    token: String,
}

/// The admin tokens, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenList {
    tokens: Vec<TokenDto>,
}

/// The admin tokens, newest first, revoked and expired ones included.
#[utoipa::path(
    get,
    path = "/api/tokens",
    tag = "tokens",
    operation_id = "list_admin_tokens",
    responses((status = 200, description = "Every token.", body = TokenList))
)]
async fn list_tokens(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<TokenList>> {
    let now = now_ms();
    let tokens = state.store.list_admin_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(|t| TokenDto::new(t, now)).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateToken {
    /// Up to 100 characters, for people.
    name: String,
    /// At least one of read, write, billing, fleet.
    scopes: Vec<String>,
    /// An RFC 3339 time or a date in the future; absent for a token that does not expire.
    #[serde(default)]
    expires_at: Option<String>,
}

/// Makes a token. Answers the token itself once, in `token`; only its hash is kept.
#[utoipa::path(
    post,
    path = "/api/tokens",
    tag = "tokens",
    operation_id = "create_admin_token",
    request_body = CreateToken,
    responses((status = 201, description = "Made; `token` is shown this once.", body = TokenCreated))
)]
async fn create_token(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateToken>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
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
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            stored: TokenDto::new(&stored, now),
            token,
        }),
    ))
}

/// The `{id}` of a token route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TokenPath {
    /// The token's id.
    #[param(minimum = 1)]
    id: i64,
}

/// Revokes a token at once; it stays listed, as revoked. Revoking one already revoked is a
/// 409.
#[utoipa::path(
    delete,
    path = "/api/tokens/{id}",
    tag = "tokens",
    operation_id = "revoke_admin_token",
    params(TokenPath),
    responses(
        (status = 200, description = "The token as it is now, revoked.", body = TokenDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn revoke_token(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<i64>,
) -> ApiResult<Json<TokenDto>> {
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
    Ok(Json(TokenDto::new(&revoked, now_ms())))
}

/// One change: who made it, what it did to which record, and the request that asked for it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ActivityEntry)]
#[serde(rename_all = "camelCase")]
struct ActivityDto {
    id: i64,
    /// `admin:<token id>`, `system`, `billing`, `cron:<job>`, `customer`, `agent`, `cli`, …
    actor: String,
    /// What was done, e.g. `server.updated`, `service.suspended`, `invoice.payment`.
    action: String,
    /// The record changed: `type:id` (`service:42`), or `type` for a change to many.
    target: String,
    /// What else is worth knowing about the change (the task queued, a payment's reference).
    #[schema(value_type = Object)]
    details: Value,
    /// The fields the change touched, as they were; null for a creation (and for rows written
    /// before changes were recorded).
    #[schema(value_type = Option<Object>)]
    before: Option<Value>,
    /// The same fields as they are after it; null for a deletion.
    #[schema(value_type = Option<Object>)]
    after: Option<Value>,
    /// The id of the HTTP request that made the change, when one did.
    request_id: Option<String>,
    created_at: String,
}

impl From<&ActivityEntry> for ActivityDto {
    fn from(e: &ActivityEntry) -> Self {
        ActivityDto {
            id: e.id,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: match e.entity_id {
                Some(id) => format!("{}:{id}", e.entity_type),
                None => e.entity_type.clone(),
            },
            details: e.details.0.clone(),
            before: e.before_state.as_ref().map(|j| j.0.clone()),
            after: e.after_state.as_ref().map(|j| j.0.clone()),
            request_id: e.request_id.clone(),
            created_at: rfc3339(e.created_at),
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ActivityPage {
    activity: Vec<ActivityDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The audit log, newest first. `target` is `type` or `type:id` (`service:42`), `actor` as the
/// log names it (`admin:3`, `cron:service-suspension`, `billing`), `since` an RFC 3339 time or a
/// date.
#[utoipa::path(
    get,
    path = "/api/activity",
    tag = "tokens",
    operation_id = "list_activity",
    params(
        ("target" = Option<String>, Query, description = "`type` or `type:id`, e.g. `service` or `service:42`."),
        ("actor" = Option<String>, Query, description = "Only this actor's changes, e.g. `admin:3` or `billing`."),
        ("since" = Option<String>, Query, description = "Only changes at or after this RFC 3339 time or date."),
        PageQuery,
    ),
    responses((status = 200, description = "A page of the log.", body = ActivityPage))
)]
async fn list_activity(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<ActivityPage>> {
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
    Ok(Json(ActivityPage {
        activity: rows.iter().map(ActivityDto::from).collect(),
        next_cursor: next,
    }))
}
