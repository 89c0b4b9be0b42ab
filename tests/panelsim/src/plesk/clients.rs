//! `/api/v2/clients`: customers (reference §2.3). A client is the simulator's account; its
//! plan and main domain come from its first subscription (domain).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{body, error, field, ok, parse_id, success};
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Account, Site, World, clock};

/// §2.2 documented example; the real text is UNCONFIRMED.
pub(super) const DUPLICATE_LOGIN: &str = "Account with this name already exists";
const NOT_FOUND: &str = "Client is not found";

pub(super) fn client_json(account: &Account) -> Value {
    json!({
        "id": account.id,
        "created": clock::date(account.created),
        "name": account.name,
        "company": account.company,
        "login": account.username,
        // 0 active, 16 disabled by admin (schema `status`).
        "status": if account.suspended { 16 } else { 0 },
        "email": account.email,
        "locale": account.locale,
        "guid": account.guid,
        "owner_login": account.owner,
        "external_id": account.external_id,
        "description": account.description,
        "type": account.client_type,
    })
}

pub(super) fn domain_json(site: &Site) -> Value {
    json!({
        "id": site.id,
        "name": site.name,
        "ascii_name": site.name,
        "hosting_type": site.hosting_type,
        // UNCONFIRMED for subscriptions' main domains.
        "base_domain_id": 0,
        "www_root": site.docroot,
        "guid": site.guid,
        "created": clock::date(site.created),
        "aliases": [],
    })
}

fn find(world: &World, raw_id: &str) -> Option<String> {
    parse_id(raw_id)
        .and_then(|id| world.account_by_id(id))
        .map(|a| a.username.clone())
}

/// Login rules are UNCONFIRMED (§2.6): 1–60 characters, lower-case letters, digits, `.`, `_`,
/// `-`, starting with a letter or digit.
fn valid_login(login: &str) -> bool {
    (1..=60).contains(&login.len())
        && login.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Schema: 5 to 14 characters. Only the minimum is enforced: current Plesk accepts longer
/// passwords (UNCONFIRMED).
fn valid_password(password: &str) -> bool {
    password.chars().count() >= 5
}

pub(super) fn list(sim: &Sim) -> Reply {
    let clients: Vec<Value> = sim.world().accounts.values().map(client_json).collect();
    ok(StatusCode::OK, &json!(clients))
}

/// `POST /clients` → 201 `{id, guid}`; duplicate login → 400 (§2.2).
pub(super) fn create(sim: &Sim, req: &ApiRequest) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let mut missing = Vec::new();
    let mut get = |key: &'static str| {
        let value = field(&map, key);
        if value.is_none() {
            missing.push(key);
        }
        value.unwrap_or_default()
    };
    let (name, login, password, email, client_type) = (
        get("name"),
        get("login"),
        get("password"),
        get("email"),
        get("type"),
    );
    if !missing.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Required fields are missing: {}", missing.join(", ")),
        );
    }
    if !matches!(client_type.as_str(), "customer" | "reseller") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Invalid client type '{client_type}': expected customer or reseller"),
        );
    }
    if !valid_login(&login) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The login '{login}' is invalid"),
        );
    }
    if !valid_password(&password) {
        return error(
            StatusCode::BAD_REQUEST,
            "The password must be at least 5 characters long",
        );
    }
    if !email.contains('@') {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The email '{email}' is invalid"),
        );
    }
    let mut world = sim.world();
    if world.accounts.contains_key(&login) {
        return error(StatusCode::BAD_REQUEST, DUPLICATE_LOGIN);
    }
    let id = world.next_id();
    let owner = field(&map, "owner_login").unwrap_or_else(|| "admin".to_owned());
    let mut account = Account::new(id, &login, &password, &email, &owner);
    account.name = name;
    account.client_type = client_type;
    apply_optional(&mut account, &map);
    let guid = account.guid.clone();
    world.accounts.insert(login.clone(), account);
    drop(world);
    tracing::info!(login, id, "plesk client created");
    ok(StatusCode::CREATED, &json!({"id": id, "guid": guid}))
}

fn apply_optional(account: &mut Account, map: &Map<String, Value>) {
    if let Some(company) = field(map, "company") {
        account.company = company;
    }
    if let Some(locale) = field(map, "locale") {
        account.locale = locale;
    }
    if let Some(external_id) = field(map, "external_id") {
        account.external_id = external_id;
    }
    if let Some(description) = field(map, "description") {
        account.description = description;
    }
}

pub(super) fn get(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    match find(&world, raw_id).and_then(|login| world.accounts.get(&login)) {
        Some(account) => ok(StatusCode::OK, &client_json(account)),
        None => error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// `PUT /clients/{id}` (`ClientUpdateRequest`, includes `password`) → 200 `{id, guid}`.
pub(super) fn update(sim: &Sim, req: &ApiRequest, raw_id: &str) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let mut world = sim.world();
    let Some(login) = find(&world, raw_id) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    if let Some(password) = field(&map, "password")
        && !valid_password(&password)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "The password must be at least 5 characters long",
        );
    }
    if let Some(email) = field(&map, "email")
        && !email.contains('@')
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The email '{email}' is invalid"),
        );
    }
    if let Some(new_login) = field(&map, "login")
        && new_login != login
    {
        return error(
            StatusCode::BAD_REQUEST,
            "Changing the login is not supported by the simulator",
        );
    }
    let Some(account) = world.accounts.get_mut(&login) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    if let Some(password) = field(&map, "password") {
        account.password = password;
    }
    if let Some(email) = field(&map, "email") {
        account.email = email;
    }
    if let Some(name) = field(&map, "name") {
        account.name = name;
    }
    if let Some(status) = map.get("status").and_then(Value::as_i64) {
        account.suspended = status != 0;
    }
    apply_optional(account, &map);
    let body = json!({"id": account.id, "guid": account.guid});
    drop(world);
    ok(StatusCode::OK, &body)
}

/// `DELETE /clients/{id}` → 200 `{id, guid}`; takes its domains, mail and databases along.
pub(super) async fn delete(sim: &Sim, raw_id: &str) -> Reply {
    let _db = sim.db_ops.lock().await;
    let removed = {
        let mut world = sim.world();
        find(&world, raw_id).and_then(|login| {
            let account = world.accounts.get(&login)?;
            let body = json!({"id": account.id, "guid": account.guid});
            let dropped = world.remove_account(&login, false)?;
            Some((body, dropped))
        })
    };
    let Some((body, dropped)) = removed else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    sim.db_drop(&dropped).await;
    ok(StatusCode::OK, &body)
}

/// `PUT /clients/{id}/suspend|activate` → `{"status":"success"}`.
pub(super) fn set_suspended(sim: &Sim, raw_id: &str, suspended: bool) -> Reply {
    let mut world = sim.world();
    let Some(login) = find(&world, raw_id) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    if let Some(account) = world.accounts.get_mut(&login) {
        account.suspended = suspended;
        account.suspend_reason = suspended.then(|| "disabled by admin".to_owned());
        account.suspend_time = if suspended { clock::now_unix() } else { 0 };
    }
    drop(world);
    success()
}

/// `GET /clients/{id}/statistics` (`ClientStatistics`; `disk_space` and `traffic` in bytes).
pub(super) fn statistics(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    let Some(login) = find(&world, raw_id) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let active_domains = world
        .sites
        .values()
        .filter(|s| s.owner == login && s.status == crate::state::SiteStatus::Active)
        .count();
    let mailboxes = world
        .mailboxes
        .values()
        .filter(|m| m.owner == login)
        .count();
    let databases = world
        .databases
        .values()
        .filter(|d| d.owner == login)
        .count();
    let usage = world
        .accounts
        .get(&login)
        .map(|a| a.usage)
        .unwrap_or_default();
    ok(
        StatusCode::OK,
        &json!({
            "active_domains": active_domains, "subdomains": 0,
            "disk_space": usage.disk_used_bytes,
            "email_postboxes": mailboxes, "email_redirects": 0, "email_response_messages": 0,
            "mailing_lists": 0, "databases": databases,
            "traffic": usage.bandwidth_used_bytes, "traffic_prevday": 0,
        }),
    )
}

pub(super) fn domains(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    let Some(login) = find(&world, raw_id) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let domains: Vec<Value> = world
        .sites
        .values()
        .filter(|s| s.owner == login)
        .map(domain_json)
        .collect();
    ok(StatusCode::OK, &json!(domains))
}
