//! DirectAdmin: the legacy `CMD_API_*` API (plus one new-API file upload).
//!
//! Facts followed (reference §3): HTTP Basic auth as `admin:<key>` or impersonation
//! `admin|user:<key>` (§3.1); url-encoded answers by default (`error=0&text=…&details=…`,
//! lists as `list[]=a&list[]=b`) and JSON with `json=yes` (`{"success","result"}` /
//! `{"error","result"}`), always HTTP 200 for functional errors (§3.2); bad credentials give
//! an HTML login page (§3.2).
//!
//! Auth-failure rule (the reference lists two observed variants, §3.2/§4.2): requests without
//! `json=yes` always get the HTML login page (HTTP 200, `text/html`). Requests with `json=yes`
//! alternate deterministically, starting from the seed's parity: even → the HTML login page,
//! odd → `401 {"error":"Not logged in","success":"no"}`. Clients must handle both.

mod backups;
mod hosting;
mod users;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::reply::{self, Reply};
use crate::request::{ApiRequest, encode_component};
use crate::routes::Caller;
use crate::sim::Sim;

const UPLOAD_PATH: &str = "/api/filemanager-actions/upload";

fn command_of(path: &str) -> Option<&str> {
    path.strip_prefix("/CMD_API_")
        .filter(|c| !c.is_empty() && !c.contains('/'))
}

pub(crate) fn endpoint(req: &ApiRequest) -> String {
    if req.path.starts_with("/api/") {
        format!("{} {}", req.method, req.path)
    } else {
        req.path.trim_start_matches('/').to_owned()
    }
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

/// `admin:<token>` → admin; `admin|user:<token>` → acting as `user`, who must exist (§3.1);
/// `user:<user's password>` → the user's own login (§3.1: a login key is "just a different
/// password for a user", so a user's password works the same way).
pub(crate) fn authenticate(sim: &Sim, req: &ApiRequest) -> Option<Caller> {
    let (user, password) = basic_credentials(req)?;
    if password != sim.config.token {
        let world = sim.world();
        let account = world.accounts.get(&user)?;
        return (!user.contains('|') && !password.is_empty() && account.password == password)
            .then(|| Caller::User(user.clone()));
    }
    match user.split_once('|') {
        None if user == "admin" => Some(Caller::Admin),
        Some(("admin", target)) if sim.world().accounts.contains_key(target) => {
            Some(Caller::User(target.to_owned()))
        }
        _ => None,
    }
}

pub(super) fn wants_json(req: &ApiRequest) -> bool {
    req.param("json")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
}

fn login_page() -> Response {
    reply::text(
        StatusCode::OK,
        "text/html; charset=utf-8",
        "<!DOCTYPE html>\n<html><head><title>DirectAdmin Login</title></head><body>\n\
         <form action=\"/CMD_LOGIN\" method=\"post\" name=\"form\">\n\
         <input type=\"hidden\" name=\"referer\" value=\"/\">\n\
         Username: <input type=\"text\" name=\"username\">\n\
         Password: <input type=\"password\" name=\"password\">\n\
         <input type=\"submit\" value=\"Login\">\n</form>\n</body></html>\n"
            .to_owned(),
    )
}

/// See the module docs for the rule. The new API (`/api/*`) answers 401 with its own error
/// shape (§3.2 "New API error"; the `type` value is UNCONFIRMED).
pub(crate) fn auth_failure(sim: &Sim, req: &ApiRequest) -> Response {
    if req.path.starts_with("/api/") {
        return new_api_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Not logged in");
    }
    if wants_json(req) && sim.da_json_auth_failure_is_401() {
        return reply::json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "Not logged in", "success": "no"}),
        );
    }
    login_page()
}

/// DirectAdmin's web server answers 5xx with an HTML page (UNCONFIRMED body).
pub(crate) fn server_error(status: StatusCode) -> Response {
    reply::html_error(status)
}

/// The duplicate error of the called command, without doing anything. Texts UNCONFIRMED.
pub(crate) fn already_exists(req: &ApiRequest) -> Response {
    let (text, details) = match command_of(&req.path) {
        Some("ACCOUNT_USER") => ("Unable to create user", users::DUPLICATE_USER),
        Some("POP" | "EMAIL_POP") => ("Unable to create E-Mail account", hosting::DUPLICATE_POP),
        Some("DATABASES") => ("Unable to create database", "That database already exists"),
        Some("DNS_CONTROL") => ("Cannot Add Record", hosting::DUPLICATE_RECORD),
        _ if req.path == UPLOAD_PATH => {
            return new_api_error(StatusCode::CONFLICT, "FILE_EXISTS", "file already exists");
        }
        _ => ("Error", "Object already exists"),
    };
    failure(req, text, details).into_response()
}

pub(crate) async fn handle(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    if req.path == UPLOAD_PATH {
        if req.method != Method::POST {
            return Reply::fail(new_api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed",
            ));
        }
        return hosting::upload(sim, req, caller);
    }
    let Some(command) = command_of(&req.path) else {
        return Reply::fail(reply::html_error(StatusCode::NOT_FOUND));
    };
    let admin_only = matches!(
        command,
        "ACCOUNT_USER"
            | "USER_EXISTS"
            | "SHOW_ALL_USERS"
            | "SELECT_USERS"
            | "MODIFY_USER"
            | "USER_PASSWD"
            | "PACKAGES_USER"
            | "ADMIN_BACKUP"
    );
    if admin_only && *caller != Caller::Admin {
        // UNCONFIRMED text.
        return failure(
            req,
            "You cannot execute that command",
            "This command needs the admin account, not a login-as session",
        );
    }
    match command {
        "ACCOUNT_USER" => users::account_user(sim, req),
        "USER_EXISTS" => users::user_exists(sim, req),
        "SHOW_ALL_USERS" => users::show_all_users(sim, req),
        "SHOW_USER_CONFIG" => users::show_user_config(sim, req, caller),
        "SHOW_USER_USAGE" => users::show_user_usage(sim, req, caller),
        "SELECT_USERS" => users::select_users(sim, req).await,
        "MODIFY_USER" => users::modify_user(sim, req),
        "USER_PASSWD" => users::user_passwd(sim, req),
        "PACKAGES_USER" => users::packages_user(req),
        "DNS_CONTROL" => hosting::dns_control(sim, req, caller),
        "POP" | "EMAIL_POP" => hosting::pop(sim, req, caller),
        "DATABASES" => hosting::databases(sim, req, caller).await,
        "SSL" => hosting::ssl(sim, req, caller),
        "SITE_BACKUP" => backups::site_backup(sim, req, caller),
        "FILE_MANAGER" => backups::file_manager(sim, req, caller),
        "ADMIN_BACKUP" => backups::admin_backup(sim, req),
        _ => Reply::fail(reply::html_error(StatusCode::NOT_FOUND)),
    }
}

/// `key=value&…` with values percent-encoded; keys (e.g. `list[]`) are written as DA does.
fn urlencoded(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn plain(body: String) -> Response {
    reply::text(StatusCode::OK, "text/plain; charset=utf-8", body)
}

/// Success: `error=0&text=…&details=…` or `{"success": text, "result": details}`.
pub(super) fn success(req: &ApiRequest, text: &str, details: &str) -> Reply {
    Reply::ok(if wants_json(req) {
        reply::json(StatusCode::OK, &json!({"success": text, "result": details}))
    } else {
        plain(urlencoded(&[
            ("error".to_owned(), "0".to_owned()),
            ("text".to_owned(), text.to_owned()),
            ("details".to_owned(), details.to_owned()),
        ]))
    })
}

/// Failure, still HTTP 200: `error=1&text=…&details=…` or `{"error": text, "result": details}`.
pub(super) fn failure(req: &ApiRequest, text: &str, details: &str) -> Reply {
    Reply::fail(if wants_json(req) {
        reply::json(StatusCode::OK, &json!({"error": text, "result": details}))
    } else {
        plain(urlencoded(&[
            ("error".to_owned(), "1".to_owned()),
            ("text".to_owned(), text.to_owned()),
            ("details".to_owned(), details.to_owned()),
        ]))
    })
}

/// `list[]=a&list[]=b`, or a JSON array.
pub(super) fn list(req: &ApiRequest, items: Vec<String>) -> Reply {
    Reply::ok(if wants_json(req) {
        reply::json(StatusCode::OK, &json!(items))
    } else {
        let pairs: Vec<(String, String)> = items
            .into_iter()
            .map(|item| ("list[]".to_owned(), item))
            .collect();
        plain(urlencoded(&pairs))
    })
}

/// `key=value&…`, or a JSON object of strings. DA values are strings (`unlimited`, `yes`).
pub(super) fn pairs(req: &ApiRequest, pairs: Vec<(String, String)>) -> Reply {
    Reply::ok(if wants_json(req) {
        let map: Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        reply::json(StatusCode::OK, &Value::Object(map))
    } else {
        plain(urlencoded(&pairs))
    })
}

/// New-API error `{"type","message"}` with a non-2xx status (§3.2).
pub(super) fn new_api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    reply::json(status, &json!({"type": kind, "message": message}))
}

/// `select0`, `select1`, … in numeric order.
pub(super) fn selected(req: &ApiRequest) -> Vec<String> {
    let mut numbered: Vec<(u32, String)> = req
        .params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("select")?.parse::<u32>().ok()?;
            Some((n, v.trim().to_owned()))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    numbered.sort();
    numbered.dedup();
    numbered.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_encoding() {
        assert_eq!(
            command_of("/CMD_API_SHOW_ALL_USERS"),
            Some("SHOW_ALL_USERS")
        );
        assert_eq!(command_of("/CMD_LOGIN"), None);
        assert_eq!(
            urlencoded(&[
                ("list[]".into(), "a b".into()),
                ("list[]".into(), "c&d".into())
            ]),
            "list[]=a%20b&list[]=c%26d"
        );
    }
}
