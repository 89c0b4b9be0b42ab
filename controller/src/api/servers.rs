//! `/api/servers`: the hosting servers of the fleet, their enrollment tokens, certificate
//! revocation and a diagnostic command route. Admin only. Times are RFC 3339 here. The list is
//! paged like every other (`?limit=&cursor=`, `nextCursor`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use mpanel_common::DomainName;
use mpanel_common::command::{Command, Echo};
use mpanel_common::ids::ServerId;
use mpanel_common::status::{DnsProvider, ServerStatus, SslProvider};
use mpanel_common::username::PanelKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId};
use super::fields::rfc3339;
use super::listing::{Params, finish};
use crate::app::AppState;
use crate::fleet::{CommandError, Reply};
use crate::store::{NewServer, Server, ServerPatch};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/servers", get(list_servers).post(create_server))
        .route(
            "/api/servers/{id}",
            patch(update_server).delete(delete_server).get(get_server),
        )
        .route(
            "/api/servers/{id}/enrollment-token",
            post(create_enrollment_token),
        )
        .route(
            "/api/servers/{id}/revoke-certificate",
            post(revoke_certificate),
        )
        .route("/api/servers/{id}/commands", post(send_command))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerDto {
    id: i64,
    hostname: String,
    ip_address: String,
    control_panel: &'static str,
    control_panel_url: String,
    max_accounts: i32,
    status: &'static str,
    location: String,
    group: String,
    nameserver1: String,
    nameserver2: String,
    dns_provider: &'static str,
    ssl_provider: &'static str,
    created_at: String,
    updated_at: String,
}

impl From<Server> for ServerDto {
    fn from(s: Server) -> Self {
        ServerDto {
            id: s.id.get(),
            hostname: s.hostname,
            ip_address: s.ip_address,
            control_panel: s.control_panel.as_str(),
            control_panel_url: s.control_panel_url,
            max_accounts: s.max_accounts,
            status: s.status.as_str(),
            location: s.location,
            group: s.server_group,
            nameserver1: s.nameserver1,
            nameserver2: s.nameserver2,
            dns_provider: s.dns_provider.as_str(),
            ssl_provider: s.ssl_provider.as_str(),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateServer {
    hostname: String,
    ip_address: String,
    control_panel: String,
    control_panel_url: String,
    #[serde(default = "default_max_accounts")]
    max_accounts: i32,
    #[serde(default)]
    location: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    nameserver1: String,
    #[serde(default)]
    nameserver2: String,
    #[serde(default)]
    dns_provider: Option<String>,
    #[serde(default)]
    ssl_provider: Option<String>,
}

fn default_max_accounts() -> i32 {
    500
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateServer {
    hostname: Option<String>,
    ip_address: Option<String>,
    control_panel_url: Option<String>,
    max_accounts: Option<i32>,
    status: Option<String>,
    location: Option<String>,
    group: Option<String>,
    nameserver1: Option<String>,
    nameserver2: Option<String>,
    dns_provider: Option<String>,
    ssl_provider: Option<String>,
}

fn hostname(field: &str, raw: &str) -> ApiResult<String> {
    DomainName::parse(raw)
        .map(|d| d.as_str().to_owned())
        .map_err(|e| ApiError::invalid(field, "invalid_hostname", e))
}

fn nameserver(field: &str, raw: &str) -> ApiResult<String> {
    if raw.trim().is_empty() {
        Ok(String::new())
    } else {
        hostname(field, raw.trim())
    }
}

fn ip_address(raw: &str) -> ApiResult<String> {
    raw.trim()
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| {
            ApiError::invalid(
                "ipAddress",
                "invalid_ip_address",
                format!("'{raw}' is not an IP address"),
            )
        })
}

fn panel_url(raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    if (raw.starts_with("https://") || raw.starts_with("http://")) && raw.len() > "https://".len() {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid(
            "controlPanelUrl",
            "invalid_url",
            "must be an http:// or https:// URL",
        ))
    }
}

fn max_accounts(n: i32) -> ApiResult<i32> {
    if n < 0 {
        return Err(ApiError::invalid(
            "maxAccounts",
            "invalid_number",
            "must not be negative",
        ));
    }
    Ok(n)
}

/// One of a closed set of names (`dnsProvider`, `sslProvider`), or a 400 listing them.
fn one_of<T: FromStr<Err = mpanel_common::ParseEnumError>>(field: &str, raw: &str) -> ApiResult<T> {
    raw.parse::<T>().map_err(|e| {
        ApiError::invalid(
            field,
            "invalid_value",
            format!(
                "'{}' is not one of {}",
                raw.chars().take(40).collect::<String>(),
                e.accepted.join(", ")
            ),
        )
    })
}

fn group(raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 {
        return Err(ApiError::invalid(
            "group",
            "invalid_group",
            "must be 1 to 64 characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A fleet is a few hundred servers at most, so the page is cut from the whole list.
async fn list_servers(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["limit", "cursor"])?;
    let page = params.page(100, 500)?;
    let mut servers = state.store.list_servers().await?;
    servers.sort_by_key(|s| s.id);
    let mut servers: Vec<_> = servers
        .into_iter()
        .filter(|s| page.after_id.is_none_or(|after| s.id.get() > after))
        .take(usize::try_from(page.limit).unwrap_or(usize::MAX))
        .collect();
    let next = finish(&mut servers, page, |s| s.id.get());
    let servers: Vec<ServerDto> = servers.into_iter().map(ServerDto::from).collect();
    Ok(Json(json!({ "servers": servers, "nextCursor": next })))
}

async fn get_server(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<Json<ServerDto>> {
    Ok(Json(state.store.get_server(id).await?.into()))
}

async fn create_server(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateServer>,
) -> ApiResult<(StatusCode, Json<ServerDto>)> {
    let new = NewServer {
        hostname: hostname("hostname", &body.hostname)?,
        ip_address: ip_address(&body.ip_address)?,
        control_panel: body.control_panel.parse::<PanelKind>().map_err(|_| {
            ApiError::invalid(
                "controlPanel",
                "invalid_control_panel",
                format!(
                    "'{}' is not one of cpanel, plesk, directadmin",
                    body.control_panel
                ),
            )
        })?,
        control_panel_url: panel_url(&body.control_panel_url)?,
        max_accounts: max_accounts(body.max_accounts)?,
        location: body.location.trim().to_owned(),
        server_group: group(body.group.as_deref().unwrap_or("default"))?,
        nameserver1: nameserver("nameserver1", &body.nameserver1)?,
        nameserver2: nameserver("nameserver2", &body.nameserver2)?,
        dns_provider: body
            .dns_provider
            .as_deref()
            .map(|p| one_of("dnsProvider", p))
            .transpose()?
            .unwrap_or(DnsProvider::Panel),
        ssl_provider: body
            .ssl_provider
            .as_deref()
            .map(|p| one_of("sslProvider", p))
            .transpose()?
            .unwrap_or(SslProvider::Acme),
    };
    let server = state.store.create_server(&new, &admin.actor()).await?;
    Ok((StatusCode::CREATED, Json(server.into())))
}

async fn update_server(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
    JsonBody(body): JsonBody<UpdateServer>,
) -> ApiResult<Json<ServerDto>> {
    let patch = ServerPatch {
        hostname: body
            .hostname
            .as_deref()
            .map(|h| hostname("hostname", h))
            .transpose()?,
        ip_address: body.ip_address.as_deref().map(ip_address).transpose()?,
        control_panel_url: body
            .control_panel_url
            .as_deref()
            .map(panel_url)
            .transpose()?,
        max_accounts: body.max_accounts.map(max_accounts).transpose()?,
        status: body
            .status
            .as_deref()
            .map(|s| {
                s.parse::<ServerStatus>().map_err(|_| {
                    ApiError::invalid(
                        "status",
                        "invalid_status",
                        format!("'{s}' is not one of active, draining, disabled"),
                    )
                })
            })
            .transpose()?,
        location: body.location.map(|l| l.trim().to_owned()),
        server_group: body.group.as_deref().map(group).transpose()?,
        nameserver1: body
            .nameserver1
            .as_deref()
            .map(|n| nameserver("nameserver1", n))
            .transpose()?,
        nameserver2: body
            .nameserver2
            .as_deref()
            .map(|n| nameserver("nameserver2", n))
            .transpose()?,
        dns_provider: body
            .dns_provider
            .as_deref()
            .map(|d| one_of("dnsProvider", d))
            .transpose()?,
        ssl_provider: body
            .ssl_provider
            .as_deref()
            .map(|d| one_of("sslProvider", d))
            .transpose()?,
    };
    let server = state
        .store
        .update_server(id, &patch, &admin.actor())
        .await?;
    Ok(Json(server.into()))
}

async fn delete_server(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<StatusCode> {
    state.store.delete_server(id, &admin.actor()).await?;
    // Its certificates went with it (cascade); a live session must not outlive the server.
    state.fleet.forget_server(id);
    Ok(StatusCode::NO_CONTENT)
}

async fn create_enrollment_token(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    state.store.get_server(id).await?;
    let grant = state
        .fleet
        .create_enrollment_token(id, &admin.actor())
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": grant.token,
            "expiresAt": rfc3339(grant.expires_at_ms),
            "caFingerprint": grant.ca_fingerprint,
        })),
    ))
}

async fn revoke_certificate(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<Json<Value>> {
    let serials = state
        .fleet
        .revoke(id, &admin.actor())
        .await
        .map_err(|e| match e {
            crate::fleet::FleetError::Store(s) => ApiError::from(s),
            other => ApiError::internal(other),
        })?;
    Ok(Json(json!({ "serverId": id, "revokedSerials": serials })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommandBody {
    kind: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Diagnostic commands only (`ping`, `echo`): the provisioning pipeline sends the real ones
/// through `Fleet::send_command`, never through the HTTP API.
async fn send_command(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
    JsonBody(body): JsonBody<CommandBody>,
) -> ApiResult<Json<Value>> {
    let command = match body.kind.as_str() {
        "ping" => Command::Ping,
        // The payload travels as opaque bytes and comes back unchanged.
        "echo" => Command::Echo(Echo {
            payload: body.payload.to_string().into_bytes(),
        }),
        _ => {
            return Err(ApiError::invalid(
                "kind",
                "invalid_command",
                "only ping and echo may be sent through the API",
            ));
        }
    };
    let timeout = Duration::from_millis(body.timeout_ms.unwrap_or(10_000).clamp(1, 60_000));
    let key = body
        .idempotency_key
        .unwrap_or_else(|| format!("api:{}", uuid::Uuid::new_v4()));
    let started = std::time::Instant::now();
    let reply = state
        .fleet
        .send_command(id, command, &key, timeout)
        .await
        .map_err(|e| command_error(&e))?;
    let data = match reply {
        Reply::Pong(p) => json!({ "pong": true, "version": p.agent_version }),
        Reply::Echo(e) => serde_json::from_slice(&e.payload).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "agent_failed",
                format!("the agent echoed something that is not the JSON sent: {e}"),
            )
        })?,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "agent_failed",
                format!("the agent answered '{}'", other.command_name()),
            ));
        }
    };
    Ok(Json(json!({
        "data": data,
        "roundTripMs": started.elapsed().as_secs_f64() * 1000.0,
    })))
}

fn command_error(e: &CommandError) -> ApiError {
    let (status, code) = match e {
        CommandError::Offline(_) | CommandError::Disconnected(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "agent_offline")
        }
        CommandError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "agent_timeout"),
        CommandError::Failed { .. } | CommandError::Waiting(_) | CommandError::BadReply { .. } => {
            (StatusCode::BAD_GATEWAY, "agent_failed")
        }
    };
    ApiError::new(status, code, e.to_string())
}
