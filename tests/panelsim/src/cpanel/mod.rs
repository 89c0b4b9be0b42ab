//! cPanel & WHM: WHM API 1 under `/json-api/<function>?api.version=1`, plus UAPI through WHM.
//!
//! Facts followed (reference `panel-apis.md` §1): `Authorization: whm root:<token>` (§1.1),
//! the `{data, metadata{command, reason, result, version, output.raw}}` envelope with HTTP 200
//! for functional failures (§1.2), 403 + `cpanelresult` "Access denied" for bad auth (§1.1).
//! Quirk: `metadata.result` alternates between `1` and `"1"` (cpanelgo "WHM randomly returns
//! this as a string", §1.2), deterministically from the seed.

mod accounts;
mod backups;
mod dns;
mod ssl;
mod uapi;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::reply::{self, Reply};
use crate::request::ApiRequest;
use crate::routes::Caller;
use crate::sim::Sim;

/// The WHM function of a `/json-api/<function>` path. Session paths
/// (`/cpsess0123456789/json-api/...`) are accepted too (§1.1: only cookie sessions need them).
fn function_of(path: &str) -> Option<&str> {
    let path = match path.strip_prefix("/cpsess") {
        Some(rest) => rest.split_once('/').map_or("", |(_, p)| p),
        None => path.trim_start_matches('/'),
    };
    let function = path.strip_prefix("json-api/")?;
    (!function.is_empty() && !function.contains('/')).then_some(function)
}

pub(crate) fn endpoint(req: &ApiRequest) -> String {
    match function_of(&req.path) {
        Some(function @ ("uapi_cpanel" | "cpanel")) => {
            let (module, func) = uapi::module_function(req, function == "cpanel");
            format!("{function}:{module}::{func}")
        }
        Some(function) => function.to_owned(),
        None => req.path.clone(),
    }
}

/// `Authorization: whm root:<token>` (scheme case-insensitive), or Basic `root:<token>`
/// (cpanelgo sends either, §1.1; the simulator treats the token as root's password).
pub(crate) fn authenticate(sim: &Sim, req: &ApiRequest) -> Option<Caller> {
    let header = req.header("authorization")?.trim();
    let (scheme, credentials) = header.split_once(char::is_whitespace)?;
    let credentials = credentials.trim();
    let pair = if scheme.eq_ignore_ascii_case("whm") {
        credentials.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        String::from_utf8(decoded).ok()?
    } else {
        return None;
    };
    let (user, token) = pair.split_once(':')?;
    (user == "root" && token == sim.config.token).then_some(Caller::Admin)
}

/// §1.1 "Failed auth": HTTP 403 with the `cpanelresult` Access denied body.
pub(crate) fn auth_failure() -> Response {
    reply::json(
        StatusCode::FORBIDDEN,
        &json!({"cpanelresult": {"apiversion": "2", "error": "Access denied",
                 "data": {"reason": "Access denied", "result": "0"}, "type": "text"}}),
    )
}

/// cpsrvd answers transport-level failures with an HTML page. UNCONFIRMED body; clients must
/// key on the status code.
pub(crate) fn server_error(status: StatusCode) -> Response {
    reply::html_error(status)
}

/// The duplicate error of the called function, without doing anything.
pub(crate) fn already_exists(sim: &Sim, req: &ApiRequest) -> Response {
    match function_of(&req.path) {
        Some("createacct") => whm_fail(
            sim,
            "createacct",
            "Sorry, a group for that username already exists.",
            None,
        )
        .into_response(),
        Some(wrapper @ ("uapi_cpanel" | "cpanel")) => {
            uapi::already_exists(sim, req, wrapper == "cpanel").into_response()
        }
        Some(function) => {
            whm_fail(sim, function, "The requested object already exists.", None).into_response()
        }
        None => not_found(),
    }
}

/// The arguments WHM's API 1 documentation marks required (§1.3–§1.5), as alternatives where
/// it names two spellings; the first one missing, if any. A call without them fails with
/// `result:0` and changes nothing.
fn missing_required(function: &str, req: &ApiRequest) -> Option<&'static str> {
    let required: &[&[&'static str]] = match function {
        "suspendacct" | "unsuspendacct" => &[&["user"]],
        // §1.3: `username` (required; `user` is also accepted).
        "removeacct" => &[&["username", "user"]],
        "changepackage" => &[&["user"], &["pkg"]],
        "passwd" => &[&["user"]],
        "getpkginfo" => &[&["pkg"]],
        "mass_edit_dns_zone" | "parse_dns_zone" => &[&["zone"]],
        "installssl" => &[&["domain"], &["crt"]],
        "start_autossl_check_for_one_user" => &[&["username"]],
        // The official pages of the archive and restore functions mark these required.
        "start_background_pkgacct" | "delete_account_archives" => &[&["user"]],
        "get_pkgacct_session_state" => &[&["session_id"]],
        "start_local_cpmove_restore" => &[&["cpmovepath"]],
        "get_transfer_session_state" => &[&["transfer_session_id"]],
        _ => &[],
    };
    required
        .iter()
        .find(|names| names.iter().all(|n| req.arg(n).is_none()))
        .map(|names| names[0])
}

pub(crate) async fn handle(sim: &Sim, req: &ApiRequest) -> Reply {
    let Some(function) = function_of(&req.path) else {
        return Reply::fail(not_found());
    };
    if function == "cpanel" {
        return uapi::handle(sim, req, true).await;
    }
    // Without api.version=1 WHM falls back to the legacy API 0 shapes (§1.2), which the
    // simulator does not model: say so in an API 1 envelope instead.
    if req.param("api.version").map(str::trim) != Some("1") {
        return whm_fail(
            sim,
            function,
            "panelsim simulates WHM API 1 only: add api.version=1 to the request.",
            None,
        );
    }
    if let Some(missing) = missing_required(function, req) {
        // Text UNCONFIRMED (the simulator's own, shaped like its other argument errors).
        return whm_fail(
            sim,
            function,
            format!("“{missing}” is a required argument."),
            None,
        );
    }
    match function {
        "createacct" => accounts::createacct(sim, req),
        "accountsummary" => accounts::accountsummary(sim, req),
        "listaccts" => accounts::listaccts(sim, req),
        "listsuspended" => accounts::listsuspended(sim),
        "suspendacct" => accounts::suspendacct(sim, req),
        "unsuspendacct" => accounts::unsuspendacct(sim, req),
        "removeacct" => accounts::removeacct(sim, req).await,
        "changepackage" => accounts::changepackage(sim, req),
        "passwd" => accounts::passwd(sim, req),
        "listpkgs" => accounts::listpkgs(sim),
        "getpkginfo" => accounts::getpkginfo(sim, req),
        "verify_new_username" => accounts::verify_new_username(sim, req),
        "showbw" => accounts::showbw(sim, req),
        "dumpzone" => dns::dumpzone(sim, req),
        "parse_dns_zone" => dns::parse_dns_zone(sim, req),
        "mass_edit_dns_zone" => dns::mass_edit_dns_zone(sim, req),
        "addzonerecord" => dns::addzonerecord(sim, req),
        "removezonerecord" => dns::removezonerecord(sim, req),
        "installssl" => ssl::installssl(sim, req),
        "start_autossl_check_for_one_user" => ssl::start_autossl_check_for_one_user(sim, req),
        "start_background_pkgacct" => backups::start_background_pkgacct(sim, req),
        "get_pkgacct_session_state" => backups::get_pkgacct_session_state(sim, req),
        "list_cparchive_files" => backups::list_cparchive_files(sim),
        "delete_account_archives" => backups::delete_account_archives(sim, req),
        "start_local_cpmove_restore" => backups::start_local_cpmove_restore(sim, req),
        "get_transfer_session_state" => backups::get_transfer_session_state(sim, req),
        "uapi_cpanel" => uapi::handle(sim, req, false).await,
        // Text shape UNCONFIRMED.
        other => whm_fail(
            sim,
            other,
            format!("Unknown app (“{other}”) requested for this version (1) of the API."),
            None,
        ),
    }
}

fn not_found() -> Response {
    reply::text(
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        "<html><body><h1>404 Not Found</h1></body></html>\n".to_owned(),
    )
}

/// The WHM API 1 envelope. `result` is a number or a string, alternating (see module docs).
fn envelope(
    sim: &Sim,
    command: &str,
    ok: bool,
    reason: &str,
    data: Option<Value>,
    raw: Option<String>,
) -> Response {
    let flag = u8::from(ok);
    let result = if sim.whm_result_as_string() {
        json!(flag.to_string())
    } else {
        json!(flag)
    };
    let mut metadata =
        json!({"command": command, "reason": reason, "result": result, "version": 1});
    if let Some(raw) = raw {
        metadata["output"] = json!({ "raw": raw });
    }
    let mut body = json!({ "metadata": metadata });
    if let Some(data) = data {
        body["data"] = data;
    }
    reply::json(StatusCode::OK, &body)
}

pub(super) fn whm_ok(
    sim: &Sim,
    command: &str,
    reason: &str,
    data: Option<Value>,
    raw: Option<String>,
) -> Reply {
    Reply::ok(envelope(sim, command, true, reason, data, raw))
}

/// Success whose `metadata.output` carries `messages`/`warnings` (as `delete_account_archives`
/// documents) rather than `raw`.
pub(super) fn whm_ok_with_output(sim: &Sim, command: &str, output: &Value) -> Reply {
    let flag = if sim.whm_result_as_string() {
        json!("1")
    } else {
        json!(1)
    };
    let body = json!({"metadata": {"command": command, "reason": "OK", "result": flag,
                                   "version": 1, "output": output}});
    Reply::ok(reply::json(StatusCode::OK, &body))
}

/// Failure: same envelope, `result` 0, the message in `reason`, no `data` (the only failure
/// sample in §1.2 has none).
pub(super) fn whm_fail(
    sim: &Sim,
    command: &str,
    reason: impl Into<String>,
    raw: Option<String>,
) -> Reply {
    Reply::fail(envelope(sim, command, false, &reason.into(), None, raw))
}

#[cfg(test)]
mod tests {
    use super::function_of;

    #[test]
    fn functions_are_read_from_json_api_paths() {
        assert_eq!(function_of("/json-api/createacct"), Some("createacct"));
        assert_eq!(
            function_of("/cpsess0123456789/json-api/listaccts"),
            Some("listaccts")
        );
        assert_eq!(function_of("/json-api/"), None);
        assert_eq!(function_of("/execute/Email/add_pop"), None);
    }
}
