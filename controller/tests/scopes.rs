//! Admin token scopes over the whole route list, and tokens and the audit log through the API.
//!
//! The route list is read from the API's OpenAPI document, which is generated from the route
//! definitions, so a route added later is in the matrix without anyone listing it. Each route
//! is tried with every method: a method the route lacks answers 405 and is skipped; a route
//! that answers 401 to a full-scope token is not an admin route (the customer portal's) and
//! neither is one that answers without a token.
//! For the rest, a token with one scope must get 403 exactly where the rules below say it lacks
//! what the request needs, and the full-scope token never gets 403.

mod fleet_support;

use std::collections::BTreeSet;

use fleet_support::{Controller, concrete};
use reqwest::Method;
use serde_json::{Value, json};

/// Every route template the API serves, from its OpenAPI document (which
/// `tests/openapi.rs` proves complete).
fn routes() -> BTreeSet<String> {
    let found: BTreeSet<String> = mpanel_controller::api::openapi()
        .paths
        .paths
        .into_keys()
        .collect();
    assert!(found.len() > 30, "too few routes found: {found:?}");
    found
}

fn under(route: &str, prefix: &str) -> bool {
    route == prefix || route.starts_with(&format!("{prefix}/"))
}

/// Whether a token holding only `scope` may make this request (the documented rules).
fn allowed(scope: &str, method: &Method, route: &str) -> bool {
    if under(route, "/api/tokens") || under(route, "/api/admin") {
        return false;
    }
    if *method == Method::GET {
        return scope == "read";
    }
    let needs = if under(route, "/api/servers") || under(route, "/api/agents") {
        "fleet"
    } else if under(route, "/api/invoices") || under(route, "/api/orders") {
        "billing"
    } else {
        "write"
    };
    scope == needs
}

async fn call(c: &Controller, method: &Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method.clone(), format!("{}{path}", c.http));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if *method != Method::GET {
        req = req.json(&json!({}));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn token(c: &Controller, name: &str, scopes: &[&str]) -> String {
    let (status, body) = c
        .request(
            Method::POST,
            "/api/tokens",
            Some(json!({ "name": name, "scopes": scopes })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scope_is_refused_exactly_where_it_does_not_reach() {
    let c = Controller::start(&[]).await;
    let mut scoped = Vec::new();
    for scope in ["read", "write", "billing", "fleet"] {
        scoped.push((scope, token(&c, &format!("only-{scope}"), &[scope]).await));
    }
    let methods = [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
    ];
    let mut checked = 0;
    let mut refused = 0;
    for template in routes() {
        let path = concrete(&template, "1");
        for method in &methods {
            let (anonymous, _) = call(&c, method, &path, None).await;
            if anonymous != 401 {
                // 405: no such method here; anything else: a public route.
                continue;
            }
            // The scoped tokens first: a refused request changes nothing.
            for (scope, token) in &scoped {
                let (status, body) = call(&c, method, &path, Some(token)).await;
                if allowed(scope, method, &template) {
                    assert_ne!(status, 403, "{scope} {method} {path}: {body}");
                } else {
                    assert_eq!(status, 403, "{scope} {method} {path}: {body}");
                    assert_eq!(body["error"]["code"], "forbidden", "{body}");
                    refused += 1;
                }
            }
            let (status, body) = call(&c, method, &path, Some(&c.token)).await;
            assert_ne!(status, 403, "full token {method} {path}: {body}");
            assert_ne!(status, 401, "full token {method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} admin operations checked");
    assert!(
        refused > 3 * checked,
        "{refused} refusals over {checked} operations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_revoked_and_expire_and_the_audit_log_names_who_did_it() {
    let c = Controller::start(&[]).await;

    // Bad input changes nothing.
    for (body, field) in [
        (json!({"name": "x", "scopes": []}), "scopes"),
        (
            json!({"name": "x", "scopes": ["read", "admin"]}),
            "scopes[1]",
        ),
        (json!({"name": "", "scopes": ["read"]}), "name"),
        (
            json!({"name": "x", "scopes": ["read"], "expiresAt": "2001-01-01T00:00:00Z"}),
            "expiresAt",
        ),
        (
            json!({"name": "x", "scopes": ["read"], "expiresAt": "tomorrow"}),
            "expiresAt",
        ),
    ] {
        let (status, got) = c.request(Method::POST, "/api/tokens", Some(body)).await;
        assert_eq!(status, 400, "{got}");
        assert_eq!(got["error"]["field"], field, "{got}");
    }
    let (_, listed) = c.request(Method::GET, "/api/tokens", None).await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");

    let (status, made) = c
        .request(
            Method::POST,
            "/api/tokens",
            Some(json!({"name": "monitoring", "scopes": ["read", "read"], "expiresAt": "2099-01-01"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["scopes"], json!(["read"]));
    assert_eq!(made["expiresAt"], "2099-01-01T00:00:00Z");
    let secret = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_i64().unwrap();
    let (_, listed) = c.request(Method::GET, "/api/tokens", None).await;
    assert!(
        !listed.to_string().contains(&secret),
        "the token is shown once"
    );
    let shown = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(shown["status"], "active", "{shown}");
    assert!(shown["lastUsedAt"].is_null());

    // It reads, records its use, and may not manage tokens.
    assert_eq!(
        call(&c, &Method::GET, "/api/services", Some(&secret))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&c, &Method::GET, "/api/tokens", Some(&secret)).await.0,
        403
    );
    let (_, listed) = c.request(Method::GET, "/api/tokens", None).await;
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id && t["lastUsedAt"].is_string()),
        "{listed}"
    );

    // Revoked: 401 from then on; revoking again is a conflict, an unknown id a 404.
    let (status, revoked) = c
        .request(Method::DELETE, &format!("/api/tokens/{id}"), None)
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(
        call(&c, &Method::GET, "/api/services", Some(&secret))
            .await
            .0,
        401
    );
    let (status, _) = c
        .request(Method::DELETE, &format!("/api/tokens/{id}"), None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = c.request(Method::DELETE, "/api/tokens/999", None).await;
    assert_eq!(status, 404);

    // An expired token is refused like a revoked one.
    let (_, short) = c
        .request(
            Method::POST,
            "/api/tokens",
            Some(json!({"name": "short", "scopes": ["read"]})),
        )
        .await;
    let short_secret = short["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&c, &Method::GET, "/api/services", Some(&short_secret))
            .await
            .0,
        200
    );
    c.sql("UPDATE admin_tokens SET expires_at = 1 WHERE name = 'short'")
        .await;
    let (status, body) = call(&c, &Method::GET, "/api/services", Some(&short_secret)).await;
    assert_eq!(status, 401, "{body}");

    // The audit log: who created and revoked the token, filtered by target, actor and time.
    let (status, log) = c
        .request(
            Method::GET,
            &format!("/api/activity?target=admin_token:{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<&str> = log["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["admin_token.revoked", "admin_token.created"],
        "{log}"
    );
    let actor = log["activity"][0]["actor"].as_str().unwrap().to_owned();
    assert!(actor.starts_with("admin:"), "{log}");
    // Each entry says what the change did: the revocation set `revokedAt`, the creation made
    // the token (and shows no secret).
    let (revocation, creation) = (&log["activity"][0], &log["activity"][1]);
    assert_eq!(revocation["before"], json!({ "revokedAt": null }), "{log}");
    assert_eq!(
        revocation["after"]["revokedAt"], revoked["revokedAt"],
        "{log}"
    );
    assert!(creation["before"].is_null(), "{log}");
    assert_eq!(creation["after"]["name"], "monitoring", "{log}");
    assert_eq!(creation["after"]["scopes"], "read", "{log}");
    assert!(!log.to_string().contains(&secret), "{log}");

    // A server changed through the API: the entry holds the changed fields, old and new.
    let (status, server) = c
        .request(
            Method::POST,
            "/api/servers",
            Some(json!({
                "hostname": "audited.example.net", "ipAddress": "192.0.2.44",
                "controlPanel": "cpanel", "controlPanelUrl": "https://audited.example.net:2087",
                "maxAccounts": 50, "location": "fra1", "group": "shared",
                "nameserver1": "ns1.example.net", "nameserver2": "ns2.example.net",
            })),
        )
        .await;
    assert_eq!(status, 201, "{server}");
    let server_id = server["id"].as_i64().unwrap();
    let (status, patched) = c
        .request(
            Method::PATCH,
            &format!("/api/servers/{server_id}"),
            Some(json!({ "status": "draining", "maxAccounts": 40 })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let (_, server_log) = c
        .request(
            Method::GET,
            &format!("/api/activity?target=server:{server_id}"),
            None,
        )
        .await;
    let updated = &server_log["activity"][0];
    assert_eq!(updated["action"], "server.updated", "{server_log}");
    assert_eq!(
        (&updated["before"], &updated["after"]),
        (
            &json!({ "status": "active", "maxAccounts": 50 }),
            &json!({ "status": "draining", "maxAccounts": 40 })
        ),
        "{server_log}"
    );
    assert_eq!(server_log["activity"][1]["action"], "server.created");
    assert!(
        server_log["activity"][1]["before"].is_null(),
        "{server_log}"
    );
    assert_eq!(
        server_log["activity"][1]["after"]["hostname"],
        "audited.example.net"
    );
    let (_, by_actor) = c
        .request(
            Method::GET,
            &format!("/api/activity?actor={actor}&limit=2"),
            None,
        )
        .await;
    assert_eq!(
        by_actor["activity"].as_array().unwrap().len(),
        2,
        "{by_actor}"
    );
    assert!(by_actor["nextCursor"].is_string(), "{by_actor}");
    let (_, later) = c
        .request(Method::GET, "/api/activity?since=2099-01-01", None)
        .await;
    assert!(later["activity"].as_array().unwrap().is_empty(), "{later}");
    for bad in ["target=service:x", "since=yesterday", "limit=0", "actorx=1"] {
        let (status, body) = c
            .request(Method::GET, &format!("/api/activity?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
