//! `/api/v2/domains` (subscriptions) and `/api/v2/dns/records` (reference §2.3).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::clients::{client_json, domain_json};
use super::{body, error, field, ok, parse_id, success};
use crate::dns::{self, absolute_name, check_type, normalise_value, valid_domain};
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Record, SiteStatus, World};
use crate::{SimKind, catalog};

/// UNCONFIRMED texts.
pub(super) const DUPLICATE_DOMAIN: &str = "Domain with this name already exists";
pub(super) const DUPLICATE_RECORD: &str = "DNS record already exists";
const NOT_FOUND: &str = "Domain is not found";
const RECORD_NOT_FOUND: &str = "DNS record is not found";
const ZONE_NOT_FOUND: &str = "Domain or Domain Alias is not found";

fn find(world: &World, raw_id: &str) -> Option<String> {
    parse_id(raw_id)
        .and_then(|id| world.site_by_id(id))
        .map(|s| s.name.clone())
}

/// An `OwnerClientReference`: any one of `id`, `login`, `guid`, `external_id` (the schema
/// marks all required, but clients pass one, §2.3 note).
fn resolve_client(world: &World, reference: &Value) -> Option<String> {
    let map = reference.as_object()?;
    world
        .accounts
        .values()
        .find(|a| {
            map.get("id")
                .and_then(Value::as_u64)
                .is_some_and(|id| id == a.id)
                || field(map, "login").is_some_and(|l| l == a.username)
                || field(map, "guid").is_some_and(|g| g == a.guid)
                || field(map, "external_id").is_some_and(|e| !e.is_empty() && e == a.external_id)
        })
        .map(|a| a.username.clone())
}

/// A `DomainReference`: `id`, `name` or `guid`.
pub(super) fn resolve_domain(world: &World, reference: &Value) -> Option<String> {
    let map = reference.as_object()?;
    world
        .sites
        .values()
        .find(|s| {
            map.get("id")
                .and_then(Value::as_u64)
                .is_some_and(|id| id == s.id)
                || field(map, "name").is_some_and(|n| n.to_ascii_lowercase() == s.name)
                || field(map, "guid").is_some_and(|g| g == s.guid)
        })
        .map(|s| s.name.clone())
}

/// `GET /domains[?name=]`
pub(super) fn list(sim: &Sim, req: &ApiRequest) -> Reply {
    let name = req.arg("name").map(str::to_ascii_lowercase);
    let world = sim.world();
    let domains: Vec<Value> = world
        .sites
        .values()
        .filter(|s| name.as_ref().is_none_or(|n| *n == s.name))
        .map(domain_json)
        .collect();
    ok(StatusCode::OK, &json!(domains))
}

/// `POST /domains` → 201 `{id, guid}`. Virtual hosting needs `hosting_settings.ftp_login` and
/// `ftp_password` (schema: "required").
pub(super) fn create(sim: &Sim, req: &ApiRequest) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let Some(name) = field(&map, "name").map(|n| n.to_ascii_lowercase()) else {
        return error(StatusCode::BAD_REQUEST, "Required fields are missing: name");
    };
    if !valid_domain(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The domain name '{name}' is invalid"),
        );
    }
    let hosting_type = field(&map, "hosting_type").unwrap_or_else(|| "virtual".to_owned());
    if !matches!(
        hosting_type.as_str(),
        "virtual" | "standard_forwarding" | "frame_forwarding" | "none"
    ) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Invalid hosting_type '{hosting_type}'"),
        );
    }
    let settings = map
        .get("hosting_settings")
        .and_then(Value::as_object)
        .cloned();
    let settings = settings.unwrap_or_default();
    let ftp_login = field(&settings, "ftp_login");
    if hosting_type == "virtual"
        && (ftp_login.is_none() || field(&settings, "ftp_password").is_none())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "hosting_settings.ftp_login and hosting_settings.ftp_password are required for virtual hosting",
        );
    }
    let plan = match map.get("plan") {
        None | Some(Value::Null) => None,
        Some(reference) => match reference.get("name").and_then(Value::as_str) {
            Some(plan) if catalog::plan(SimKind::Plesk, plan).is_some() => Some(plan.to_owned()),
            Some(plan) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("Service plan '{plan}' does not exist"),
                );
            }
            None => return error(StatusCode::BAD_REQUEST, "plan.name is required"),
        },
    };

    let mut world = sim.world();
    if world.sites.contains_key(&name) {
        return error(StatusCode::BAD_REQUEST, DUPLICATE_DOMAIN);
    }
    let owner = match map.get("owner_client") {
        None | Some(Value::Null) => "admin".to_owned(),
        Some(reference) => match resolve_client(&world, reference) {
            Some(owner) => owner,
            None => return error(StatusCode::BAD_REQUEST, "The owner client is not found"),
        },
    };
    if let Some(login) = &ftp_login
        && world
            .sites
            .values()
            .any(|s| s.ftp_login.as_ref() == Some(login))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The system user '{login}' already exists"),
        );
    }
    world.add_site(SimKind::Plesk, &name, &owner, plan);
    let Some(site) = world.sites.get_mut(&name) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "site vanished");
    };
    site.hosting_type = hosting_type;
    site.ftp_login = ftp_login;
    site.description = field(&map, "description").unwrap_or_default();
    let body = json!({"id": site.id, "guid": site.guid});
    drop(world);
    tracing::info!(domain = name, owner, "plesk domain created");
    ok(StatusCode::CREATED, &body)
}

pub(super) fn get(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    match find(&world, raw_id).and_then(|name| world.sites.get(&name)) {
        Some(site) => ok(StatusCode::OK, &domain_json(site)),
        None => error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// `DELETE /domains/{id}` → 200 `{id, guid}`.
pub(super) async fn delete(sim: &Sim, raw_id: &str) -> Reply {
    let _db = sim.db_ops.lock().await;
    let removed = {
        let mut world = sim.world();
        find(&world, raw_id).and_then(|name| {
            let site = world.sites.get(&name)?;
            let body = json!({"id": site.id, "guid": site.guid});
            Some((body, world.remove_site(&name, false)))
        })
    };
    let Some((body, dropped)) = removed else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    sim.db_drop(&dropped).await;
    ok(StatusCode::OK, &body)
}

pub(super) fn get_status(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    match find(&world, raw_id).and_then(|name| world.sites.get(&name)) {
        Some(site) => ok(StatusCode::OK, &json!({"status": site.status.as_str()})),
        None => error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// `PUT /domains/{id}/status {"status":"active|suspended|disabled"}` echoes the status.
pub(super) fn set_status(sim: &Sim, req: &ApiRequest, raw_id: &str) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let Some(status) = field(&map, "status").and_then(|s| SiteStatus::parse(&s)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "status: expected one of active, suspended, disabled",
        );
    };
    let mut world = sim.world();
    let Some(name) = find(&world, raw_id) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    if let Some(site) = world.sites.get_mut(&name) {
        site.status = status;
    }
    drop(world);
    ok(StatusCode::OK, &json!({"status": status.as_str()}))
}

pub(super) fn client(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    let Some(name) = find(&world, raw_id) else {
        return error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let owner = world
        .sites
        .get(&name)
        .map(|s| s.owner.clone())
        .unwrap_or_default();
    match world.accounts.get(&owner) {
        Some(account) => ok(StatusCode::OK, &client_json(account)),
        None => error(StatusCode::NOT_FOUND, "Client is not found"),
    }
}

/// `DnsRecord`: host names as FQDN with the trailing dot, MX preference in `opt`
/// (UNCONFIRMED rendering).
fn record_json(record: &Record) -> Value {
    let value = match record.rtype.as_str() {
        "CNAME" | "NS" | "MX" | "PTR" => format!("{}.", record.value),
        _ => record.value.clone(),
    };
    let opt = record.priority.map(|p| p.to_string()).unwrap_or_default();
    json!({"id": record.id, "type": record.rtype, "host": format!("{}.", record.name),
           "value": value, "opt": opt, "ttl": record.ttl})
}

/// Build a record from a `DnsRecordRequest`; `host` follows zone-file semantics (see `dns`).
fn record_from(zone: &str, id: u64, map: &Map<String, Value>) -> Result<Record, String> {
    let rtype = check_type(&field(map, "type").unwrap_or_default())
        .map_err(|_| "Invalid DNS record type".to_owned())?;
    let value = normalise_value(&rtype, &field(map, "value").unwrap_or_default())?;
    let priority = match rtype.as_str() {
        "MX" | "SRV" => Some(
            field(map, "opt")
                .unwrap_or_else(|| "10".to_owned())
                .parse::<u16>()
                .map_err(|_| "opt: expected the record priority".to_owned())?,
        ),
        _ => None,
    };
    let ttl = map
        .get("ttl")
        .and_then(Value::as_u64)
        .and_then(|t| u32::try_from(t).ok());
    Ok(Record {
        id,
        name: absolute_name(zone, &field(map, "host").unwrap_or_default()),
        rtype,
        value,
        ttl: ttl.unwrap_or(86400),
        priority,
    })
}

fn zone_of_record(world: &World, id: u64) -> Option<(String, usize)> {
    world.zones.iter().find_map(|(name, zone)| {
        zone.records
            .iter()
            .position(|r| r.id == id)
            .map(|index| (name.clone(), index))
    })
}

/// `GET /dns/records?domain=D`
pub(super) fn list_records(sim: &Sim, req: &ApiRequest) -> Reply {
    let domain = req.arg("domain").unwrap_or("").to_ascii_lowercase();
    let world = sim.world();
    match world.zones.get(&domain) {
        Some(zone) => ok(
            StatusCode::OK,
            &json!(zone.records.iter().map(record_json).collect::<Vec<_>>()),
        ),
        None => error(StatusCode::NOT_FOUND, ZONE_NOT_FOUND),
    }
}

/// `POST /dns/records?domain=D` → 200 `DnsRecord` (spec: 200, not 201).
pub(super) fn create_record(sim: &Sim, req: &ApiRequest) -> Reply {
    let domain = req.arg("domain").unwrap_or("").to_ascii_lowercase();
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let mut world = sim.world();
    if !world.zones.contains_key(&domain) {
        return error(StatusCode::NOT_FOUND, ZONE_NOT_FOUND);
    }
    let id = world.next_id();
    let record = match record_from(&domain, id, &map) {
        Ok(record) => record,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Some(zone) = world.zones.get_mut(&domain) else {
        return error(StatusCode::NOT_FOUND, ZONE_NOT_FOUND);
    };
    let duplicate = zone
        .records
        .iter()
        .any(|r| r.rtype == record.rtype && r.name == record.name && r.value == record.value);
    if duplicate {
        return error(StatusCode::BAD_REQUEST, DUPLICATE_RECORD);
    }
    let body = record_json(&record);
    let mut records = zone.records.clone();
    records.push(record);
    if let Err(message) = dns::cname_conflict(&records) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    zone.records = records;
    dns::bump_serial(zone);
    drop(world);
    ok(StatusCode::OK, &body)
}

pub(super) fn get_record(sim: &Sim, raw_id: &str) -> Reply {
    let world = sim.world();
    let found = parse_id(raw_id).and_then(|id| zone_of_record(&world, id));
    match found.and_then(|(zone, index)| world.zones.get(&zone).map(|z| &z.records[index])) {
        Some(record) => ok(StatusCode::OK, &record_json(record)),
        None => error(StatusCode::NOT_FOUND, RECORD_NOT_FOUND),
    }
}

/// `PUT /dns/records/{id}` → `StatusResponse`.
pub(super) fn update_record(sim: &Sim, req: &ApiRequest, raw_id: &str) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let mut world = sim.world();
    let Some(id) = parse_id(raw_id) else {
        return error(StatusCode::NOT_FOUND, RECORD_NOT_FOUND);
    };
    let Some((zone_name, index)) = zone_of_record(&world, id) else {
        return error(StatusCode::NOT_FOUND, RECORD_NOT_FOUND);
    };
    let Some(zone) = world.zones.get_mut(&zone_name) else {
        return error(StatusCode::NOT_FOUND, RECORD_NOT_FOUND);
    };
    // Missing fields keep their current values.
    let current = record_json(&zone.records[index]);
    let mut merged = current.as_object().cloned().unwrap_or_default();
    for (key, value) in map {
        merged.insert(key, value);
    }
    match record_from(&zone_name, id, &merged) {
        Ok(record) => {
            let mut records = zone.records.clone();
            records[index] = record;
            if let Err(message) = dns::cname_conflict(&records) {
                return error(StatusCode::BAD_REQUEST, message);
            }
            zone.records = records;
            dns::bump_serial(zone);
            drop(world);
            success()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// `DELETE /dns/records/{id}` → `StatusResponse`.
pub(super) fn delete_record(sim: &Sim, raw_id: &str) -> Reply {
    let mut world = sim.world();
    let found = parse_id(raw_id).and_then(|id| zone_of_record(&world, id));
    let Some((zone_name, index)) = found else {
        return error(StatusCode::NOT_FOUND, RECORD_NOT_FOUND);
    };
    if let Some(zone) = world.zones.get_mut(&zone_name) {
        zone.records.remove(index);
        dns::bump_serial(zone);
    }
    drop(world);
    success()
}
