//! `/api/servers`: the hosting servers of the fleet, their enrollment tokens, certificate
//! revocation and a diagnostic command route. Admin only. Times are RFC 3339 here. The list is
//! paged like every other (`?limit=&cursor=`, `nextCursor`). The drift report of a server is
//! in `drift`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use mpanel_common::DomainName;
use mpanel_common::command::{Command, Echo};
use mpanel_common::ids::ServerId;
use mpanel_common::status::{DnsProvider, ServerStatus, SslProvider};
use mpanel_common::username::PanelKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId};
use super::fields::rfc3339;
use super::listing::{Params, finish};
use super::openapi::{Conflict, ErrorBody, NotFound};
use crate::app::AppState;
use crate::fleet::{CommandError, Reply};
use crate::store::{NewServer, Server, ServerPatch};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_servers, create_server))
        .routes(routes!(get_server, update_server, delete_server))
        .routes(routes!(create_enrollment_token))
        .routes(routes!(revoke_certificate))
        .routes(routes!(send_command))
}

/// A hosting server of the fleet.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Server)]
#[serde(rename_all = "camelCase")]
pub struct ServerDto {
    id: i64,
    /// The server's DNS name, in its ASCII form.
    hostname: String,
    ip_address: String,
    /// cpanel, plesk or directadmin.
    #[schema(value_type = String, example = "cpanel")]
    control_panel: &'static str,
    control_panel_url: String,
    /// The most live services it may hold.
    max_accounts: i32,
    /// active, draining (keeps its services, receives no new ones) or disabled.
    #[schema(value_type = String, example = "active")]
    status: &'static str,
    location: String,
    /// The placement group: a product's services go to servers of its group.
    group: String,
    /// Empty when not set.
    nameserver1: String,
    /// Empty when not set.
    nameserver2: String,
    /// Who serves its DNS zones: panel or powerdns.
    #[schema(value_type = String, example = "panel")]
    dns_provider: &'static str,
    /// Where its TLS certificates come from: acme or autossl.
    #[schema(value_type = String, example = "acme")]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateServer {
    /// The server's DNS name; a Unicode name is kept in its ASCII form.
    #[schema(example = "web1.example.net")]
    hostname: String,
    /// An IPv4 or IPv6 address.
    #[schema(example = "192.0.2.10")]
    ip_address: String,
    /// cpanel, plesk or directadmin.
    #[schema(pattern = "^(cpanel|plesk|directadmin)$", example = "cpanel")]
    control_panel: String,
    /// An `http://` or `https://` URL.
    #[schema(
        pattern = "^\\s*https?://\\S",
        example = "https://web1.example.net:2087"
    )]
    control_panel_url: String,
    /// The most live services it may hold; 500 when absent.
    #[serde(default = "default_max_accounts")]
    #[schema(minimum = 0, default = 500)]
    max_accounts: i32,
    #[serde(default)]
    location: String,
    /// The placement group; `default` when absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "\\S", default = "default")]
    group: Option<String>,
    /// A DNS name, or empty for none.
    #[serde(default)]
    nameserver1: String,
    /// A DNS name, or empty for none.
    #[serde(default)]
    nameserver2: String,
    /// panel (the default) or powerdns.
    #[serde(default)]
    #[schema(pattern = "^(panel|powerdns)$")]
    dns_provider: Option<String>,
    /// acme (the default) or autossl.
    #[serde(default)]
    #[schema(pattern = "^(acme|autossl)$")]
    ssl_provider: Option<String>,
}

fn default_max_accounts() -> i32 {
    500
}

/// The fields to change, validated as `POST` validates them; a field left out or null stays
/// as it is. The control panel cannot be changed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateServer {
    /// A DNS name.
    hostname: Option<String>,
    /// An IPv4 or IPv6 address.
    ip_address: Option<String>,
    /// An `http://` or `https://` URL.
    #[schema(pattern = "^\\s*https?://\\S")]
    control_panel_url: Option<String>,
    #[schema(minimum = 0)]
    max_accounts: Option<i32>,
    /// active, draining or disabled.
    #[schema(pattern = "^(active|draining|disabled)$")]
    status: Option<String>,
    location: Option<String>,
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    group: Option<String>,
    /// A DNS name, or empty for none.
    nameserver1: Option<String>,
    /// A DNS name, or empty for none.
    nameserver2: Option<String>,
    /// panel or powerdns.
    #[schema(pattern = "^(panel|powerdns)$")]
    dns_provider: Option<String>,
    /// acme or autossl.
    #[schema(pattern = "^(acme|autossl)$")]
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
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"));
    if rest.is_some_and(|rest| !rest.is_empty()) {
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
    if raw.is_empty() || raw.chars().count() > 64 {
        return Err(ApiError::invalid(
            "group",
            "invalid_group",
            "must be 1 to 64 characters",
        ));
    }
    Ok(raw.to_owned())
}

/// A page of servers, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ServerPage {
    servers: Vec<ServerDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The `{id}` of a server route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ServerPath {
    /// The server's id.
    #[param(minimum = 1)]
    id: i64,
}

/// The servers, oldest first.
// A fleet is a few hundred servers at most, so the page is cut from the whole list.
#[utoipa::path(
    get,
    path = "/api/servers",
    tag = "servers",
    params(
        ("limit" = Option<i64>, Query, description = "How many servers to answer: 1 to 500, 100 when absent.", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the page before.", pattern = "^[1-9][0-9]{0,17}$"),
    ),
    responses((status = 200, description = "A page of servers.", body = ServerPage))
)]
async fn list_servers(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<ServerPage>> {
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
    Ok(Json(ServerPage {
        servers,
        next_cursor: next,
    }))
}

/// One server.
#[utoipa::path(
    get,
    path = "/api/servers/{id}",
    tag = "servers",
    params(ServerPath),
    responses(
        (status = 200, description = "The server.", body = ServerDto),
        (status = 404, response = NotFound),
    )
)]
async fn get_server(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<Json<ServerDto>> {
    Ok(Json(state.store.get_server(id).await?.into()))
}

/// Adds a server to the fleet (`active`); enrol its agent with an enrollment token.
#[utoipa::path(
    post,
    path = "/api/servers",
    tag = "servers",
    request_body = CreateServer,
    responses(
        (status = 201, description = "Added.", body = ServerDto),
        (status = 409, response = Conflict),
    )
)]
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

/// Changes a server's fields; `status` moves it between active, draining and disabled.
#[utoipa::path(
    patch,
    path = "/api/servers/{id}",
    tag = "servers",
    params(ServerPath),
    request_body = UpdateServer,
    responses(
        (status = 200, description = "The server as it is now.", body = ServerDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
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

/// Deletes a server that holds no services; its certificates and live session go with it.
#[utoipa::path(
    delete,
    path = "/api/servers/{id}",
    tag = "servers",
    params(ServerPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
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

/// What `mpanel-agent enroll` takes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EnrollmentToken {
    /// One use, valid for an hour; it carries the CA's fingerprint, which the agent pins.
    #[schema(example = "mpe_….<fingerprint>")]
    token: String,
    expires_at: String,
    /// The fingerprint of the controller's CA.
    ca_fingerprint: String,
}

/// A one-use enrollment token for the server's agent, valid for an hour.
#[utoipa::path(
    post,
    path = "/api/servers/{id}/enrollment-token",
    tag = "servers",
    params(ServerPath),
    responses(
        (status = 201, description = "Made.", body = EnrollmentToken),
        (status = 404, response = NotFound),
    )
)]
async fn create_enrollment_token(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<(StatusCode, Json<EnrollmentToken>)> {
    state.store.get_server(id).await?;
    let grant = state
        .fleet
        .create_enrollment_token(id, &admin.actor())
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentToken {
            token: grant.token,
            expires_at: rfc3339(grant.expires_at_ms),
            ca_fingerprint: grant.ca_fingerprint,
        }),
    ))
}

/// The certificates a revocation revoked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Revoked {
    server_id: i64,
    /// The serials of the certificates revoked now; empty when none was valid.
    revoked_serials: Vec<String>,
}

/// Revokes every certificate of the server's agent.
///
/// New handshakes are refused and a live session is closed; only a new enrolment brings the
/// agent back.
#[utoipa::path(
    post,
    path = "/api/servers/{id}/revoke-certificate",
    tag = "servers",
    params(ServerPath),
    responses(
        (status = 200, description = "Revoked.", body = Revoked),
        (status = 404, response = NotFound),
    )
)]
async fn revoke_certificate(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
) -> ApiResult<Json<Revoked>> {
    let serials = state
        .fleet
        .revoke(id, &admin.actor())
        .await
        .map_err(|e| match e {
            crate::fleet::FleetError::Store(s) => ApiError::from(s),
            other => ApiError::internal(other),
        })?;
    Ok(Json(Revoked {
        server_id: id.get(),
        revoked_serials: serials,
    }))
}

/// A diagnostic command for the server's agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommandBody {
    /// ping or echo.
    #[schema(pattern = "^(ping|echo)$", example = "ping")]
    kind: String,
    /// For `echo`: any JSON, sent back unchanged; null when absent.
    #[serde(default)]
    payload: Value,
    /// The agent runs a command once per key; a fresh one when absent.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// How long to wait for the answer, in milliseconds: 1 to 60000, 10000 when absent.
    #[serde(default)]
    #[schema(default = 10000, minimum = 1, maximum = 60000)]
    timeout_ms: Option<u64>,
}

/// What the agent answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CommandAnswer {
    /// For `ping`, `{"pong": true, "version": "<agent version>"}`; for `echo`, the payload sent.
    data: Value,
    /// From sending the command to its answer, in milliseconds.
    round_trip_ms: f64,
}

/// Sends a diagnostic command (`ping` or `echo`) to the server's agent and waits for its answer.
// Diagnostic commands only: the provisioning pipeline sends the real ones through
// `Fleet::send_command`, never through the HTTP API.
#[utoipa::path(
    post,
    path = "/api/servers/{id}/commands",
    tag = "servers",
    operation_id = "send_server_command",
    params(ServerPath),
    request_body = CommandBody,
    responses(
        (status = 200, description = "The agent's answer.", body = CommandAnswer),
        (status = 502, description = "The agent failed the command or answered something else \
            (`agent_failed`).", body = ErrorBody),
        (status = 404, response = NotFound),
        (status = 503, description = "The server's agent is not connected (`agent_offline`); \
            or, with no body, the request took longer than the API's 60 s limit, or the database \
            is unreachable.", body = ErrorBody),
        (status = 504, description = "The agent did not answer in time (`agent_timeout`).", body = ErrorBody),
    )
)]
async fn send_command(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServerId>,
    JsonBody(body): JsonBody<CommandBody>,
) -> ApiResult<Json<CommandAnswer>> {
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
    let timeout = match body.timeout_ms {
        None => Duration::from_secs(10),
        Some(ms @ 1..=60_000) => Duration::from_millis(ms),
        Some(_) => {
            return Err(ApiError::invalid(
                "timeoutMs",
                "invalid_timeout",
                "must be 1 to 60000 milliseconds",
            ));
        }
    };
    let key = body
        .idempotency_key
        .unwrap_or_else(|| format!("api:{}", uuid::Uuid::new_v4()));
    // An unknown server is a 404, not an offline agent.
    state.store.get_server(id).await?;
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
    Ok(Json(CommandAnswer {
        data,
        round_trip_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
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
