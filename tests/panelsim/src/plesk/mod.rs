//! Plesk Obsidian: REST API v2 under `/api/v2`, its CLI gateway, and the XML API
//! (`/enterprise/control/agent.php`) for certificate installs.
//!
//! Facts followed (reference §2): `X-API-Key` or Basic auth (§2.1); REST bodies are plain
//! objects/arrays, errors `{code, message}` with 4xx (§2.2); `201 {id, guid}` for clients and
//! domains but **200** for databases and dbusers (§2.3, §4.3); CLI calls answer
//! `{code, stdout, stderr}` and unknown commands 404 "Command is not found" (§2.3).

mod cli;
mod clients;
mod databases;
mod domains;
mod xml;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::reply::{self, Reply};
use crate::request::ApiRequest;
use crate::routes::Caller;
use crate::sim::Sim;

const XML_PATH: &str = "/enterprise/control/agent.php";

pub(crate) fn endpoint(req: &ApiRequest) -> String {
    let path: Vec<String> = req
        .path
        .split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                "{id}".to_owned()
            } else {
                segment.to_owned()
            }
        })
        .collect();
    format!("{} {}", req.method, path.join("/"))
}

fn basic_credentials(req: &ApiRequest) -> Option<(String, String)> {
    let header = req.header("authorization")?.trim();
    let (scheme, encoded) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// REST: `X-API-Key: <token>` or Basic `admin:<token>` (§2.1). XML API: `KEY: <token>`, or
/// `HTTP_AUTH_LOGIN: admin` + `HTTP_AUTH_PASSWD: <token>` (§2.1, api-php-lib).
pub(crate) fn authenticate(sim: &Sim, req: &ApiRequest) -> Option<Caller> {
    let token = sim.config.token.as_str();
    let ok = if req.path == XML_PATH {
        match req.header("key") {
            Some(key) => key.trim() == token,
            None => {
                req.header("http_auth_login").map(str::trim) == Some("admin")
                    && req.header("http_auth_passwd").map(str::trim) == Some(token)
            }
        }
    } else {
        req.header("x-api-key").map(str::trim) == Some(token)
            || basic_credentials(req).is_some_and(|(user, pass)| user == "admin" && pass == token)
    };
    ok.then_some(Caller::Admin)
}

/// REST: 401 `ErrorResponse` (§2.2; the message text is UNCONFIRMED). XML API: HTTP 200 with a
/// packet-level `<system>` error: 11003 for a bad `KEY` (api-php-lib `testInvalidSecretKey`),
/// 1001 otherwise (`testInvalidCredentials`), §2.5.
pub(crate) fn auth_failure(_sim: &Sim, req: &ApiRequest) -> Response {
    if req.path == XML_PATH {
        return if req.header("key").is_some() {
            xml::system_error(11003, "Secret key validation failed")
        } else {
            xml::system_error(1001, "Authentication failed - wrong password.")
        };
    }
    reply::json(
        StatusCode::UNAUTHORIZED,
        &json!({"code": 401, "message": "Authentication failed"}),
    )
}

/// 5xx in the `ErrorResponse` shape (UNCONFIRMED: the spec only documents 4xx).
pub(crate) fn server_error(status: StatusCode) -> Response {
    let message = status.canonical_reason().unwrap_or("Server error");
    reply::json(
        status,
        &json!({"code": status.as_u16(), "message": message}),
    )
}

/// The duplicate error of the called endpoint, without doing anything.
pub(crate) fn already_exists(req: &ApiRequest) -> Response {
    let rest = req.path.strip_prefix("/api/v2").unwrap_or(&req.path);
    let message = match rest.trim_matches('/') {
        "clients" => clients::DUPLICATE_LOGIN,
        "domains" => domains::DUPLICATE_DOMAIN,
        "databases" => databases::DUPLICATE_DATABASE,
        "dbusers" => databases::DUPLICATE_USER,
        "dns/records" => domains::DUPLICATE_RECORD,
        cli if cli.starts_with("cli/") => {
            return cli::already_exists(req);
        }
        _ if req.path == XML_PATH => {
            return xml::operation_error(req, 1007, "Inserted data already exists.");
        }
        _ => "Object with this name already exists",
    };
    error(StatusCode::BAD_REQUEST, message).into_response()
}

pub(crate) async fn handle(sim: &Sim, req: &ApiRequest, _caller: &Caller) -> Reply {
    if req.path == XML_PATH {
        if req.method != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        }
        return xml::handle(sim, req);
    }
    let Some(rest) = req.path.strip_prefix("/api/v2") else {
        return error(StatusCode::NOT_FOUND, "Not found");
    };
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let method = req.method.clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["clients"]) => clients::list(sim),
        (Method::POST, ["clients"]) => clients::create(sim, req),
        (Method::GET, ["clients", id]) => clients::get(sim, id),
        (Method::PUT, ["clients", id]) => clients::update(sim, req, id),
        (Method::DELETE, ["clients", id]) => clients::delete(sim, id).await,
        (Method::PUT, ["clients", id, "suspend"]) => clients::set_suspended(sim, id, true),
        (Method::PUT, ["clients", id, "activate"]) => clients::set_suspended(sim, id, false),
        (Method::GET, ["clients", id, "statistics"]) => clients::statistics(sim, id),
        (Method::GET, ["clients", id, "domains"]) => clients::domains(sim, id),
        (Method::GET, ["domains"]) => domains::list(sim, req),
        (Method::POST, ["domains"]) => domains::create(sim, req),
        (Method::GET, ["domains", id]) => domains::get(sim, id),
        (Method::DELETE, ["domains", id]) => domains::delete(sim, id).await,
        (Method::GET, ["domains", id, "status"]) => domains::get_status(sim, id),
        (Method::PUT, ["domains", id, "status"]) => domains::set_status(sim, req, id),
        (Method::GET, ["domains", id, "client"]) => domains::client(sim, id),
        (Method::GET, ["dns", "records"]) => domains::list_records(sim, req),
        (Method::POST, ["dns", "records"]) => domains::create_record(sim, req),
        (Method::GET, ["dns", "records", id]) => domains::get_record(sim, id),
        (Method::PUT, ["dns", "records", id]) => domains::update_record(sim, req, id),
        (Method::DELETE, ["dns", "records", id]) => domains::delete_record(sim, id),
        (Method::GET, ["databases"]) => databases::list(sim, req),
        (Method::POST, ["databases"]) => databases::create(sim, req).await,
        (Method::DELETE, ["databases", id]) => databases::delete(sim, id).await,
        (Method::GET, ["dbusers"]) => databases::list_users(sim, req),
        (Method::POST, ["dbusers"]) => databases::create_user(sim, req).await,
        (Method::PUT, ["dbusers", id]) => databases::update_user(sim, req, id).await,
        (Method::DELETE, ["dbusers", id]) => databases::delete_user(sim, id).await,
        (Method::GET, ["dbservers"]) => databases::servers(sim),
        (Method::GET, ["cli", "commands"]) => cli::commands(),
        (Method::POST, ["cli", id, "call"]) => cli::call(sim, req, id).await,
        _ => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// `ErrorResponse` (§2.2).
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    Reply::fail(reply::json(
        status,
        &json!({"code": status.as_u16(), "message": message.into()}),
    ))
}

pub(super) fn ok(status: StatusCode, value: &Value) -> Reply {
    Reply::ok(reply::json(status, value))
}

/// `StatusResponse` (§2.2).
pub(super) fn success() -> Reply {
    ok(StatusCode::OK, &json!({"status": "success"}))
}

/// The request body as a JSON object, or a 400.
pub(super) fn body(req: &ApiRequest) -> Result<Map<String, Value>, Reply> {
    match req.json_body::<Value>() {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid request data: expected a JSON object",
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("Invalid request data: {e}"),
        )),
    }
}

/// A string field (numbers are accepted and turned into strings).
pub(super) fn field(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn parse_id(raw: &str) -> Option<u64> {
    raw.parse().ok()
}
