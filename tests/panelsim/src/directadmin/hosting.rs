//! DirectAdmin user-level commands: DNS, mail, databases, SSL, and the file upload that
//! feeds ACME HTTP-01 (reference §3.4–§3.7).
//!
//! DNS, mail, databases, SSL and uploads run "as the user" (§3.4, §3.6, §3.7: `admin|user`
//! login-as, or the user's own login); called as plain `admin` they fail, because the admin
//! account owns none of the domains. The simulator does not model admin's own hosting.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{failure, list, new_api_error, pairs, selected, success};
use crate::dns::{self, absolute_name, check_type, normalise_value, relative_name};
use crate::mariadb;
use crate::pem::{has_pem_block, has_private_key};
use crate::reply::{self, Reply};
use crate::request::{ApiRequest, parse_form};
use crate::routes::Caller;
use crate::sim::Sim;
use crate::state::{Certificate, Database, DbUser, Mailbox, Record, clock};
use crate::webroot;

/// UNCONFIRMED texts.
pub(super) const DUPLICATE_POP: &str = "That e-mail account already exists";
pub(super) const DUPLICATE_RECORD: &str = "Record already exists";
const NOT_OWNED: &str = "You do not own that domain";

fn acting_user(caller: &Caller) -> Option<&str> {
    match caller {
        Caller::User(user) => Some(user),
        Caller::Admin => None,
    }
}

/// The domain, if it exists and `caller` owns it. `CMD_API_DNS_CONTROL` is a user-level
/// command (§3.4): the owner runs it, directly or through the admin's login-as; the admin
/// account itself owns none of the simulated domains, so its own call is refused like any
/// other non-owner's.
fn domain_for(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Result<String, Reply> {
    let domain = req.arg("domain").unwrap_or("").to_ascii_lowercase();
    let world = sim.world();
    match (world.sites.get(&domain), caller) {
        (Some(site), Caller::User(user)) if &site.owner == user => Ok(domain),
        (Some(_), Caller::Admin) => Err(login_as_required(req, "CMD_API_DNS_CONTROL")),
        _ => Err(failure(
            req,
            "Cannot find domain",
            &format!("{NOT_OWNED}: {domain}"),
        )),
    }
}

fn login_as_required(req: &ApiRequest, command: &str) -> Reply {
    failure(
        req,
        NOT_OWNED,
        &format!("Run {command} as the domain's owner (Basic auth admin|user)"),
    )
}

/// The JSON `records[]` element: `{name, ttl, type, value}` with strings (directadmin-go
/// `rawDnsRecord`), names relative to the zone as in its zone file.
fn record_json(zone: &str, record: &Record) -> Value {
    let value = match record.rtype.as_str() {
        "CNAME" | "NS" | "PTR" => format!("{}.", record.value),
        "MX" => format!("{} {}.", record.priority.unwrap_or(10), record.value),
        _ => record.value.clone(),
    };
    json!({"name": relative_name(zone, &record.name), "ttl": record.ttl.to_string(),
           "type": record.rtype, "value": value})
}

/// Build a record from `type`, `name`, `value` (`mx_value` for MX hosts) and `ttl`.
fn record_from(zone: &str, id: u64, fields: &Map<String, Value>) -> Result<Record, String> {
    let get = |k: &str| {
        fields
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let rtype = check_type(&get("type"))?;
    let raw_value = get("value");
    let (value, priority) = if rtype == "MX" {
        let mx_value = get("mx_value");
        let (priority, host) = if !mx_value.is_empty() {
            (raw_value, mx_value)
        } else {
            match raw_value.split_once(' ') {
                Some((p, h)) => (p.to_owned(), h.trim().to_owned()),
                None => ("10".to_owned(), raw_value.clone()),
            }
        };
        let priority = priority
            .parse::<u16>()
            .map_err(|_| "Invalid MX priority".to_owned())?;
        (normalise_value("MX", &host)?, Some(priority))
    } else {
        (normalise_value(&rtype, raw_value.trim_matches('"'))?, None)
    };
    let ttl = get("ttl").parse::<u32>().unwrap_or(14400);
    Ok(Record {
        id,
        name: absolute_name(zone, &get("name")),
        rtype,
        value,
        ttl,
        priority,
    })
}

fn request_fields(req: &ApiRequest) -> Map<String, Value> {
    ["type", "name", "value", "mx_value", "ttl"]
        .iter()
        .filter_map(|k| {
            req.param(k)
                .map(|v| ((*k).to_owned(), Value::String(v.to_owned())))
        })
        .collect()
}

/// `<type>recs<N>=name=www&value=1.2.3.4` selections (§3.4) as (type, name, value).
fn record_selections(req: &ApiRequest) -> Vec<(String, String, String)> {
    req.params
        .iter()
        .filter_map(|(key, value)| {
            let (rtype, n) = key.split_once("recs")?;
            n.parse::<u32>().ok()?;
            let inner = parse_form(value.as_bytes());
            let get = |k: &str| {
                inner
                    .iter()
                    .find(|(ik, _)| ik == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            Some((rtype.to_ascii_uppercase(), get("name"), get("value")))
        })
        .collect()
}

fn selection_matches(zone: &str, record: &Record, selection: &(String, String, String)) -> bool {
    let (rtype, name, value) = selection;
    if &record.rtype != rtype || record.name != absolute_name(zone, name) {
        return false;
    }
    let shown = record_json(zone, record);
    let shown = shown["value"].as_str().unwrap_or_default();
    let value = value.trim();
    shown == value
        || record.value == value.trim_end_matches('.').trim_matches('"')
        || shown.trim_end_matches('.') == value.trim_end_matches('.')
}

/// `CMD_API_DNS_CONTROL` (§3.4): `domain=D` alone lists (BIND text, or `{"records":[…]}` with
/// `json=yes`); `action=add` → "Record Added"; `action=select&delete=yes&arecs0=…` →
/// "Records Deleted"; `action=edit&arecs0=<old>` + new fields → "Record Edited".
pub(super) fn dns_control(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let domain = match domain_for(sim, req, caller) {
        Ok(domain) => domain,
        Err(reply) => return reply,
    };
    let mut world = sim.world();
    if !world.zones.contains_key(&domain) {
        return failure(req, "Cannot find zone", &format!("No zone for {domain}"));
    }
    match req.arg("action") {
        None => {
            let zone = &world.zones[&domain];
            if super::wants_json(req) {
                let records: Vec<Value> = zone
                    .records
                    .iter()
                    .map(|r| record_json(&domain, r))
                    .collect();
                Reply::ok(reply::json(StatusCode::OK, &json!({ "records": records })))
            } else {
                Reply::ok(reply::text(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    dns::zone_file(&domain, zone),
                ))
            }
        }
        Some("add") => {
            let id = world.next_id();
            let record = match record_from(&domain, id, &request_fields(req)) {
                Ok(record) => record,
                Err(details) => return failure(req, "Cannot Add Record", &details),
            };
            let zone = world.zones.get_mut(&domain).expect("checked above");
            if zone.records.iter().any(|r| {
                r.rtype == record.rtype && r.name == record.name && r.value == record.value
            }) {
                return failure(req, "Cannot Add Record", DUPLICATE_RECORD);
            }
            let mut records = zone.records.clone();
            records.push(record);
            if let Err(details) = dns::cname_conflict(&records) {
                return failure(req, "Cannot Add Record", &details);
            }
            zone.records = records;
            dns::bump_serial(zone);
            success(req, "Record Added", "")
        }
        Some("select") => {
            if !req.flag("delete") {
                return failure(req, "Unkown Select Command", "none");
            }
            let selections = record_selections(req);
            let zone = world.zones.get_mut(&domain).expect("checked above");
            let before = zone.records.len();
            zone.records
                .retain(|r| !selections.iter().any(|s| selection_matches(&domain, r, s)));
            if zone.records.len() != before {
                dns::bump_serial(zone);
            }
            success(req, "Records Deleted", "")
        }
        Some("edit") => {
            let Some(selection) = record_selections(req).into_iter().next() else {
                return failure(
                    req,
                    "Cannot Edit Record",
                    "Select the record to edit (<type>recs0=name=…&value=…)",
                );
            };
            let id = world.next_id();
            let record = match record_from(&domain, id, &request_fields(req)) {
                Ok(record) => record,
                Err(details) => return failure(req, "Cannot Edit Record", &details),
            };
            let zone = world.zones.get_mut(&domain).expect("checked above");
            let Some(index) = zone
                .records
                .iter()
                .position(|r| selection_matches(&domain, r, &selection))
            else {
                return failure(req, "Cannot Edit Record", "Record not found");
            };
            let mut records = zone.records.clone();
            records[index] = Record {
                id: records[index].id,
                ..record
            };
            if let Err(details) = dns::cname_conflict(&records) {
                return failure(req, "Cannot Edit Record", &details);
            }
            zone.records = records;
            dns::bump_serial(zone);
            success(req, "Record Edited", "")
        }
        Some(other) => failure(
            req,
            "Unknown action",
            &format!("action={other} is not supported"),
        ),
    }
}

/// `CMD_API_POP` (also served as `CMD_API_EMAIL_POP`), as the user (§3.6):
/// `action=create&domain&user&passwd&passwd2&quota&limit` → "Account created";
/// `action=delete&domain&user` (or `select0…`) → "E-Mail Accounts Deleted";
/// `action=modify` → "E-Mail Updated" (UNCONFIRMED); `action=list` or no action → `list[]`;
/// `action=full_list` → per-account details.
pub(super) fn pop(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let Some(owner) = acting_user(caller).map(str::to_owned) else {
        return login_as_required(req, "CMD_API_POP");
    };
    let domain = match domain_for(sim, req, caller) {
        Ok(domain) => domain,
        Err(reply) => return reply,
    };
    let local = req.arg("user").unwrap_or("").to_ascii_lowercase();
    let address = format!("{local}@{domain}");
    let mut world = sim.world();
    match req.arg("action") {
        Some("create") => {
            const FAIL: &str = "Unable to create E-Mail account";
            if local.is_empty()
                || !local
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return failure(req, FAIL, "Invalid E-Mail account name");
            }
            let password = req.param("passwd").unwrap_or("");
            if password.is_empty() || req.param("passwd2") != Some(password) {
                return failure(req, FAIL, "Passwords are empty or do not match");
            }
            if world.mailboxes.contains_key(&address) {
                return failure(req, FAIL, DUPLICATE_POP);
            }
            let quota_mb = req
                .arg("quota")
                .and_then(|q| q.parse::<u64>().ok())
                .filter(|q| *q > 0);
            world.mailboxes.insert(
                address.clone(),
                Mailbox {
                    address,
                    owner,
                    password: password.to_owned(),
                    quota_mb,
                    created: clock::now_unix(),
                },
            );
            success(req, "Account created", "")
        }
        Some("delete") => {
            let mut targets: Vec<String> = selected(req)
                .into_iter()
                .map(|l| format!("{}@{domain}", l.to_ascii_lowercase()))
                .collect();
            if !local.is_empty() {
                targets.push(address);
            }
            if targets.is_empty() || targets.iter().any(|t| !world.mailboxes.contains_key(t)) {
                return failure(
                    req,
                    "Unable to delete E-Mail account",
                    "That e-mail account does not exist",
                );
            }
            for target in targets {
                world.mailboxes.remove(&target);
            }
            success(req, "E-Mail Accounts Deleted", "")
        }
        Some("modify") => {
            let Some(mailbox) = world.mailboxes.get_mut(&address) else {
                return failure(
                    req,
                    "Unable to modify E-Mail account",
                    "That e-mail account does not exist",
                );
            };
            if let Some(password) = req.param("passwd").filter(|p| !p.is_empty()) {
                if req.param("passwd2") != Some(password) {
                    return failure(
                        req,
                        "Unable to modify E-Mail account",
                        "Passwords do not match",
                    );
                }
                mailbox.password = password.to_owned();
            }
            if let Some(quota) = req.arg("quota").and_then(|q| q.parse::<u64>().ok()) {
                mailbox.quota_mb = (quota > 0).then_some(quota);
            }
            success(req, "E-Mail Updated", "")
        }
        Some("full_list") => {
            let suffix = format!("@{domain}");
            let details: Vec<(String, String)> = world
                .mailboxes
                .values()
                .filter(|m| m.address.ends_with(&suffix))
                .map(|m| {
                    let local = m.address.trim_end_matches(&suffix).to_owned();
                    let quota = m
                        .quota_mb
                        .map_or_else(|| "unlimited".to_owned(), |q| q.to_string());
                    (local, format!("quota={quota}&usage=0&suspended=no"))
                })
                .collect();
            pairs(req, details)
        }
        None | Some("list") => {
            let suffix = format!("@{domain}");
            let locals: Vec<String> = world
                .mailboxes
                .keys()
                .filter_map(|a| a.strip_suffix(&suffix).map(str::to_owned))
                .collect();
            list(req, locals)
        }
        Some(other) => failure(
            req,
            "Unknown action",
            &format!("action={other} is not supported"),
        ),
    }
}

/// `CMD_API_DATABASES` as the user (§3.7). Names are sent WITHOUT the `<user>_` prefix and
/// DirectAdmin adds it (omines: "Database name, without <user>_ prefix"), so sending
/// `bob_wp` yields `bob_bob_wp`. `action=create&name=N&user=U&passwd=P&passwd2=P` (or
/// `userlist=existing`) → "Database Created" (UNCONFIRMED); `action=delete&select0=<full>` →
/// "Databases Deleted" (UNCONFIRMED); no action → `list[]` of full names.
pub(super) async fn databases(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let Some(owner) = acting_user(caller).map(str::to_owned) else {
        return login_as_required(req, "CMD_API_DATABASES");
    };
    let prefix = format!("{owner}_");
    match req.arg("action") {
        None | Some("list") => {
            let names: Vec<String> = sim
                .world()
                .databases
                .values()
                .filter(|d| d.owner == owner)
                .map(|d| d.name.clone())
                .collect();
            list(req, names)
        }
        Some("create") => create_database(sim, req, &owner, &prefix).await,
        Some("delete") => {
            let targets = selected(req);
            let _db = sim.db_ops.lock().await;
            let dropped = {
                let mut world = sim.world();
                if targets.is_empty()
                    || targets
                        .iter()
                        .any(|t| world.databases.get(t).is_none_or(|d| d.owner != owner))
                {
                    return failure(
                        req,
                        "Unable to delete database",
                        "That database does not exist",
                    );
                }
                let mut all = crate::state::Dropped::default();
                for target in &targets {
                    all.databases
                        .extend(world.remove_database(target).databases);
                }
                all
            };
            sim.db_drop(&dropped).await;
            success(req, "Databases Deleted", "")
        }
        Some(other) => failure(
            req,
            "Unknown action",
            &format!("action={other} is not supported"),
        ),
    }
}

async fn create_database(sim: &Sim, req: &ApiRequest, owner: &str, prefix: &str) -> Reply {
    const FAIL: &str = "Unable to create database";
    let name = req.arg("name").unwrap_or("");
    if name.is_empty() {
        return failure(req, FAIL, "Database name is empty");
    }
    let database = format!("{prefix}{name}");
    if !mariadb::valid_database_name(&database) {
        return failure(req, FAIL, &format!("Invalid database name: {database}"));
    }
    // Either a new user (`user` + `passwd`/`passwd2`) or an existing one (`userlist`).
    let existing = req.arg("userlist").map(|u| {
        if u.starts_with(prefix) {
            u.to_owned()
        } else {
            format!("{prefix}{u}")
        }
    });
    let new_user = match &existing {
        Some(_) => None,
        None => {
            let user = req.arg("user").unwrap_or("");
            let password = req.param("passwd").unwrap_or("");
            if user.is_empty() || password.is_empty() {
                return failure(req, FAIL, "A database user and password are required");
            }
            if req.param("passwd2") != Some(password) {
                return failure(req, FAIL, "Passwords do not match");
            }
            let full = format!("{prefix}{user}");
            if !mariadb::valid_user_name(&full) {
                return failure(req, FAIL, &format!("Invalid database user name: {full}"));
            }
            Some((full, password.to_owned()))
        }
    };
    let _db = sim.db_ops.lock().await;
    {
        let world = sim.world();
        if world.databases.contains_key(&database) {
            return failure(req, FAIL, &format!("Database {database} already exists"));
        }
        match (&existing, &new_user) {
            (Some(user), _) if world.db_users.get(user).is_none_or(|u| u.owner != owner) => {
                return failure(req, FAIL, &format!("User {user} does not exist"));
            }
            (_, Some((user, _))) if world.db_users.contains_key(user) => {
                return failure(req, FAIL, &format!("User {user} already exists"));
            }
            _ => {}
        }
    }
    let user = existing
        .clone()
        .or_else(|| new_user.as_ref().map(|(u, _)| u.clone()))
        .unwrap_or_default();
    let all = vec!["ALL PRIVILEGES".to_owned()];
    let created = async {
        sim.db_create_database(&database).await?;
        if let Some((user, password)) = &new_user {
            sim.db_create_user(user, password).await?;
        }
        sim.db_grant(&user, &database, &all).await
    }
    .await;
    if let Err(e) = created {
        return failure(req, FAIL, &e.to_string());
    }
    let mut world = sim.world();
    let id = world.next_id();
    world.databases.insert(
        database.clone(),
        Database {
            id,
            name: database.clone(),
            owner: owner.to_owned(),
            site_id: None,
            default_user_id: None,
        },
    );
    if let Some((name, password)) = new_user {
        let id = world.next_id();
        world.db_users.insert(
            name.clone(),
            DbUser {
                id,
                name,
                owner: owner.to_owned(),
                password,
                database_id: None,
            },
        );
    }
    world.set_grant(&user, &database, "ALL PRIVILEGES");
    drop(world);
    success(
        req,
        "Database Created",
        &format!("Database {database} created for user {user}"),
    )
}

/// `CMD_API_SSL` as the user (§3.5): `action=save&type=paste&certificate=<KEY PEM + CERT PEM>`
/// → "Certificate and Key Saved."; `type=cacert&cacert=…` → "CA Certificate Saved"
/// (UNCONFIRMED); `type=create&request=letsencrypt` → "Certificate and Key Saved."
pub(super) fn ssl(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let Some(owner) = acting_user(caller).map(str::to_owned) else {
        return login_as_required(req, "CMD_API_SSL");
    };
    let domain = match domain_for(sim, req, caller) {
        Ok(domain) => domain,
        Err(reply) => return reply,
    };
    if req.arg("action") != Some("save") {
        return failure(req, "Unknown action", "Use action=save");
    }
    let mut world = sim.world();
    let install = |source: &str, cert: String| Certificate {
        domain: domain.clone(),
        owner: owner.clone(),
        source: source.to_owned(),
        name: domain.clone(),
        cert_pem: cert,
        has_key: true,
        cabundle: None,
        installed: clock::now_unix(),
    };
    match req.arg("type") {
        Some("paste") => {
            let pasted = req.param("certificate").unwrap_or("");
            if !has_private_key(pasted) || !has_pem_block(pasted, "CERTIFICATE") {
                return failure(
                    req,
                    "Certificate and Key are not valid",
                    "Paste the private key and the certificate, both in PEM format",
                );
            }
            let cert = install("paste", pasted.to_owned());
            world.certificates.insert(domain.clone(), cert);
            success(req, "Certificate and Key Saved.", "")
        }
        Some("cacert") => {
            let cacert = req.param("cacert").unwrap_or("");
            if !has_pem_block(cacert, "CERTIFICATE") {
                return failure(
                    req,
                    "CA Certificate is not valid",
                    "Paste the CA bundle in PEM format",
                );
            }
            let Some(cert) = world.certificates.get_mut(&domain) else {
                return failure(
                    req,
                    "No certificate",
                    "Save a certificate before its CA bundle",
                );
            };
            cert.cabundle = req.flag("active").then(|| cacert.to_owned());
            success(req, "CA Certificate Saved", "")
        }
        Some("create") if req.arg("request") == Some("letsencrypt") => {
            let cert = install("letsencrypt", String::new());
            world.certificates.insert(domain.clone(), cert);
            success(req, "Certificate and Key Saved.", "")
        }
        _ => failure(
            req,
            "Unknown certificate type",
            "Use type=paste, cacert or create",
        ),
    }
}

/// `POST /api/filemanager-actions/upload?dir=D&name=N[&overwrite=true]` with a multipart
/// `file` part (the new API, in the DirectAdmin swagger): `dir` is chrooted to the user's
/// home, e.g. `/domains/example.com/public_html/.well-known/acme-challenge`. The success
/// body is UNCONFIRMED (`{}` here).
pub(super) fn upload(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let Some(user) = acting_user(caller) else {
        return Reply::fail(new_api_error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "upload as the owning user (Basic auth admin|user)",
        ));
    };
    let Some(file) = req.files.iter().find(|f| f.field == "file") else {
        return Reply::fail(new_api_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "multipart field 'file' is required",
        ));
    };
    let name = req
        .arg("name")
        .map(str::to_owned)
        .or_else(|| file.filename.clone())
        .unwrap_or_default();
    if name.is_empty() || name.contains('/') {
        return Reply::fail(new_api_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "invalid file name",
        ));
    }
    let home = format!("/home/{user}");
    let dir = req.arg("dir").unwrap_or("/").trim_start_matches('/');
    let Some(path) =
        webroot::resolve(&home, &format!("{dir}/{name}")).filter(|p| webroot::is_within(p, &home))
    else {
        return Reply::fail(new_api_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "invalid directory",
        ));
    };
    let mut world = sim.world();
    if world.files.contains_key(&path) && !req.flag("overwrite") {
        return Reply::fail(new_api_error(
            StatusCode::CONFLICT,
            "FILE_EXISTS",
            "file already exists",
        ));
    }
    webroot::write(&mut world, user, path, file.content.clone());
    Reply::ok(reply::json(StatusCode::OK, &json!({})))
}
