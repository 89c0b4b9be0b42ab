//! UAPI called through WHM (the agent runs as root), reference §1.2, §1.6, §1.7.
//!
//! Two wrappers:
//! - `uapi_cpanel?api.version=1&cpanel.user=U&cpanel.module=M&cpanel.function=F&…`: the WHM
//!   API 1 envelope with the UAPI result object under `data.uapi`. The layout is UNCONFIRMED
//!   (§1.2: "not fetched"); the WHM `result` is 1 whenever the call reached UAPI, so clients
//!   must check `data.uapi.status` too.
//! - `cpanel?cpanel_jsonapi_user=U&cpanel_jsonapi_apiversion=3&cpanel_jsonapi_module=M&
//!   cpanel_jsonapi_func=F&…`: `{"apiversion":3,"func","module","result":{…uapi…}}` (cpanelgo
//!   `UAPIResult`, §1.2).
//!
//! The UAPI object is `{status, errors, messages, warnings, metadata, data}` with `errors` an
//! array of strings on failure and `null` on success (§1.2).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ssl, whm_fail, whm_ok};
use crate::mariadb::{self, parse_privileges};
use crate::reply::{self, Reply};
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Database, DbUser, Mailbox, clock};
use crate::webroot;

/// The UAPI module and function named by either wrapper.
pub(super) fn module_function(req: &ApiRequest, legacy: bool) -> (String, String) {
    let (module, function) = if legacy {
        ("cpanel_jsonapi_module", "cpanel_jsonapi_func")
    } else {
        ("cpanel.module", "cpanel.function")
    };
    (
        req.arg(module).unwrap_or("").to_owned(),
        req.arg(function).unwrap_or("").to_owned(),
    )
}

fn user_of(req: &ApiRequest, legacy: bool) -> Option<String> {
    let user = if legacy {
        req.arg("cpanel_jsonapi_user").or_else(|| req.arg("user"))
    } else {
        req.arg("cpanel.user")
    };
    user.map(str::to_owned)
}

/// One UAPI result.
struct Outcome {
    ok: bool,
    data: Value,
    errors: Vec<String>,
    messages: Vec<String>,
}

impl Outcome {
    fn ok(data: Value) -> Self {
        Outcome {
            ok: true,
            data,
            errors: Vec::new(),
            messages: Vec::new(),
        }
    }

    fn ok_with_message(data: Value, message: String) -> Self {
        Outcome {
            ok: true,
            data,
            errors: Vec::new(),
            messages: vec![message],
        }
    }

    fn err(message: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            data: Value::Null,
            errors: vec![message.into()],
            messages: Vec::new(),
        }
    }

    fn json(&self) -> Value {
        let list = |items: &[String]| {
            if items.is_empty() {
                Value::Null
            } else {
                json!(items)
            }
        };
        json!({
            "data": self.data,
            "errors": list(&self.errors),
            "messages": list(&self.messages),
            "metadata": {},
            "status": u8::from(self.ok),
            "warnings": null,
        })
    }
}

fn wrap(sim: &Sim, legacy: bool, module: &str, function: &str, outcome: &Outcome) -> Reply {
    let uapi = outcome.json();
    let response = if legacy {
        reply::json(
            StatusCode::OK,
            &json!({"apiversion": 3, "func": function, "module": module, "result": uapi}),
        )
    } else {
        whm_ok(
            sim,
            "uapi_cpanel",
            "OK",
            Some(json!({ "uapi": uapi })),
            None,
        )
        .into_response()
    };
    Reply::new(outcome.ok, response)
}

/// A wrapper-level failure (bad user, unsupported API version): text UNCONFIRMED.
fn wrapper_fail(sim: &Sim, legacy: bool, reason: &str) -> Reply {
    if legacy {
        Reply::fail(reply::json(
            StatusCode::OK,
            &json!({"cpanelresult": {"apiversion": 3, "error": reason,
                     "data": {"reason": reason, "result": "0"}, "type": "text"}}),
        ))
    } else {
        whm_fail(sim, "uapi_cpanel", reason, None)
    }
}

pub(super) async fn handle(sim: &Sim, req: &ApiRequest, legacy: bool) -> Reply {
    if legacy && req.arg("cpanel_jsonapi_apiversion") != Some("3") {
        return wrapper_fail(
            sim,
            legacy,
            "panelsim simulates UAPI only through this proxy: pass cpanel_jsonapi_apiversion=3.",
        );
    }
    let (module, function) = module_function(req, legacy);
    let user = user_of(req, legacy).filter(|u| sim.world().accounts.contains_key(u));
    let Some(user) = user else {
        return wrapper_fail(sim, legacy, "User parameter is invalid or was not supplied");
    };
    let outcome = call(sim, req, &user, &module, &function).await;
    wrap(sim, legacy, &module, &function, &outcome)
}

/// The duplicate error of the wrapped function (scripted `AlreadyExists`/`PartialSuccess`).
pub(super) fn already_exists(sim: &Sim, req: &ApiRequest, legacy: bool) -> Reply {
    let (module, function) = module_function(req, legacy);
    let message = match (module.as_str(), function.as_str()) {
        ("Email", "add_pop") => {
            let user = user_of(req, legacy).unwrap_or_default();
            let (local, domain) = split_email(req, &main_domain(sim, &user));
            format!("The email account “{local}@{domain}” already exists.")
        }
        ("Mysql", "create_database") => {
            format!(
                "The database “{}” already exists.",
                req.arg("name").unwrap_or("")
            )
        }
        ("Mysql", "create_user") => {
            format!(
                "The user “{}” already exists.",
                req.arg("name").unwrap_or("")
            )
        }
        _ => "The requested object already exists.".to_owned(),
    };
    let mut reply = wrap(sim, legacy, &module, &function, &Outcome::err(message));
    reply.ok = false;
    reply
}

async fn call(sim: &Sim, req: &ApiRequest, user: &str, module: &str, function: &str) -> Outcome {
    match (module, function) {
        ("Email", "add_pop") => add_pop(sim, req, user),
        ("Email", "list_pops") => list_pops(sim, user),
        ("Email", "delete_pop") => delete_pop(sim, req, user),
        ("Email", "passwd_pop") => passwd_pop(sim, req, user),
        ("Mysql", "create_database") => create_database(sim, req, user).await,
        ("Mysql", "create_user") => create_user(sim, req, user).await,
        ("Mysql", "set_privileges_on_database") => set_privileges(sim, req, user).await,
        ("Mysql", "set_password") => set_password(sim, req, user).await,
        ("Mysql", "list_databases") => list_databases(sim, user),
        ("Mysql", "list_users") => list_users(sim, user),
        ("Mysql", "delete_database") => delete_database(sim, req, user).await,
        ("Mysql", "delete_user") => delete_user(sim, req, user).await,
        ("SSL", "install_ssl") => install_ssl(sim, req, user),
        ("SSL", "start_autossl_check") => {
            ssl::autossl(&mut sim.world(), user);
            Outcome::ok(Value::Null)
        }
        ("SSL", "is_autossl_check_in_progress") => Outcome::ok(json!(0)),
        ("Fileman", "save_file_content") => save_file_content(sim, req, user),
        ("Backup", "fullbackup_to_homedir") => fullbackup_to_homedir(sim, req, user),
        ("Backup", "list_backups") => list_backups(sim, user),
        ("BackupInfo", "list") => backupinfo_list(sim, user),
        ("Fileman", "trash_file") => trash_file(sim, req, user),
        ("Trash", "remove") => trash_remove(sim, req, user),
        ("Email" | "Mysql" | "SSL" | "Fileman" | "Backup" | "BackupInfo" | "Trash", _) => {
            Outcome::err(format!(
                "Could not find the function “{function}” in module “{module}”."
            ))
        }
        _ => Outcome::err(format!("Failed to load module “{module}”.")),
    }
}

fn main_domain(sim: &Sim, user: &str) -> String {
    sim.world()
        .primary_site(user)
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// `email` may be a local part or a full address; `domain` defaults to the main domain (§1.6).
fn split_email(req: &ApiRequest, main_domain: &str) -> (String, String) {
    let email = req.arg("email").unwrap_or("").to_ascii_lowercase();
    match email.split_once('@') {
        Some((local, domain)) => (local.to_owned(), domain.to_owned()),
        None => (
            email,
            req.arg("domain")
                .map_or_else(|| main_domain.to_owned(), str::to_ascii_lowercase),
        ),
    }
}

fn owns_domain(sim: &Sim, user: &str, domain: &str) -> bool {
    sim.world()
        .sites
        .get(domain)
        .is_some_and(|s| s.owner == user)
}

/// `Email::add_pop` (§1.6). Duplicate text from the third-party doc (UNCONFIRMED); success
/// `data` believed to be `"user+example.com"` (UNCONFIRMED).
fn add_pop(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let (local, domain) = split_email(req, &main_domain(sim, user));
    if local.is_empty() {
        return Outcome::err("You must specify an email account name (“email”).");
    }
    if local == "cpanel" {
        return Outcome::err(
            "The name “cpanel” is reserved and cannot be used for an email account.",
        );
    }
    if !local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    {
        return Outcome::err(format!("“{local}” is not a valid email account name."));
    }
    if !owns_domain(sim, user, &domain) {
        return Outcome::err(format!("You do not own the domain “{domain}”."));
    }
    let password = req.param("password").filter(|p| !p.is_empty());
    let password = match (password, req.arg("password_hash")) {
        (Some(_), Some(_)) => {
            return Outcome::err("You may not specify both “password” and “password_hash”.");
        }
        (Some(p), None) | (None, Some(p)) => p.to_owned(),
        (None, None) => return Outcome::err("You must specify a password (“password”)."),
    };
    let quota_mb = match req.arg("quota") {
        None | Some("0" | "unlimited") => None,
        Some(q) => match q.parse::<u64>() {
            Ok(mb) => Some(mb),
            Err(_) => return Outcome::err(format!("“{q}” is not a valid quota.")),
        },
    };
    let address = format!("{local}@{domain}");
    let mut world = sim.world();
    if world.mailboxes.contains_key(&address) {
        return Outcome::err(format!("The email account “{address}” already exists."));
    }
    world.mailboxes.insert(
        address.clone(),
        Mailbox {
            address,
            owner: user.to_owned(),
            password,
            quota_mb,
            created: clock::now_unix(),
        },
    );
    Outcome::ok(json!(format!("{local}+{domain}")))
}

fn list_pops(sim: &Sim, user: &str) -> Outcome {
    let world = sim.world();
    let pops: Vec<Value> = world
        .mailboxes
        .values()
        .filter(|m| m.owner == user)
        .map(|m| {
            json!({"email": m.address, "login": m.address, "suspended_incoming": 0,
                   "suspended_login": 0})
        })
        .collect();
    Outcome::ok(json!(pops))
}

fn delete_pop(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let (local, domain) = split_email(req, &main_domain(sim, user));
    let address = format!("{local}@{domain}");
    let mut world = sim.world();
    match world.mailboxes.get(&address) {
        Some(m) if m.owner == user => {
            world.mailboxes.remove(&address);
            Outcome::ok(Value::Null)
        }
        _ => Outcome::err(format!("The email account “{address}” does not exist.")),
    }
}

fn passwd_pop(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let (local, domain) = split_email(req, &main_domain(sim, user));
    let address = format!("{local}@{domain}");
    let Some(password) = req.param("password").filter(|p| !p.is_empty()) else {
        return Outcome::err("You must specify a password (“password”).");
    };
    let mut world = sim.world();
    match world.mailboxes.get_mut(&address) {
        Some(m) if m.owner == user => {
            m.password = password.to_owned();
            Outcome::ok(Value::Null)
        }
        _ => Outcome::err(format!("The email account “{address}” does not exist.")),
    }
}

/// The `<first 8 characters of the cPanel user>_` prefix (§1.7).
fn db_prefix(user: &str) -> String {
    format!("{}_", user.chars().take(8).collect::<String>())
}

/// §1.7: whether UAPI adds the prefix itself is UNCONFIRMED; the simulator takes the safe
/// reading and requires the caller to send the full, prefixed name.
fn check_prefixed(kind: &str, name: &str, user: &str) -> Result<(), String> {
    let prefix = db_prefix(user);
    match name.strip_prefix(&prefix) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "The {kind} name “{name}” must begin with the prefix “{prefix}”."
        )),
    }
}

async fn create_database(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let name = req.arg("name").unwrap_or("").to_owned();
    if let Err(e) = check_prefixed("database", &name, user) {
        return Outcome::err(e);
    }
    if !mariadb::valid_database_name(&name) {
        return Outcome::err(format!(
            "The database name “{name}” is invalid: use letters, digits and underscores, at most 64 characters."
        ));
    }
    let _db = sim.db_ops.lock().await;
    if sim.world().databases.contains_key(&name) {
        return Outcome::err(format!("The database “{name}” already exists."));
    }
    if let Err(error) = sim.db_create_database(&name).await {
        return Outcome::err(format!(
            "The system failed to create the database “{name}”: {error}"
        ));
    }
    let mut world = sim.world();
    let id = world.next_id();
    world.databases.insert(
        name.clone(),
        Database {
            id,
            name,
            owner: user.to_owned(),
            site_id: None,
            default_user_id: None,
        },
    );
    Outcome::ok(Value::Null)
}

async fn create_user(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let name = req.arg("name").unwrap_or("").to_owned();
    if let Err(e) = check_prefixed("user", &name, user) {
        return Outcome::err(e);
    }
    // §1.7: MariaDB allows 47 characters.
    if name.len() > 47 || !mariadb::valid_user_name(&name) {
        return Outcome::err(format!(
            "The user name “{name}” is invalid: use letters, digits and underscores, at most 47 characters."
        ));
    }
    let Some(password) = req.param("password").filter(|p| !p.is_empty()) else {
        return Outcome::err("You must specify a password (“password”).");
    };
    let _db = sim.db_ops.lock().await;
    if sim.world().db_users.contains_key(&name) {
        return Outcome::err(format!("The user “{name}” already exists."));
    }
    if let Err(error) = sim.db_create_user(&name, password).await {
        return Outcome::err(format!(
            "The system failed to create the user “{name}”: {error}"
        ));
    }
    let mut world = sim.world();
    let id = world.next_id();
    world.db_users.insert(
        name.clone(),
        DbUser {
            id,
            name,
            owner: user.to_owned(),
            password: password.to_owned(),
            database_id: None,
        },
    );
    Outcome::ok(Value::Null)
}

/// `Mysql::set_password?user=U&password=P`: a new password for an existing database user.
async fn set_password(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let db_user = req.arg("user").unwrap_or("").to_owned();
    let Some(password) = req.param("password").filter(|p| !p.is_empty()) else {
        return Outcome::err("You must specify a password (“password”).");
    };
    let _db = sim.db_ops.lock().await;
    if sim
        .world()
        .db_users
        .get(&db_user)
        .is_none_or(|u| u.owner != user)
    {
        return Outcome::err(format!("The user “{db_user}” does not exist."));
    }
    if let Err(error) = sim.db_create_user(&db_user, password).await {
        return Outcome::err(format!("The system failed to set the password: {error}"));
    }
    if let Some(entry) = sim.world().db_users.get_mut(&db_user) {
        entry.password = password.to_owned();
    }
    Outcome::ok(Value::Null)
}

/// `Mysql::set_privileges_on_database?user=U&database=D&privileges=ALL PRIVILEGES` (§1.7).
async fn set_privileges(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let db_user = req.arg("user").unwrap_or("").to_owned();
    let database = req.arg("database").unwrap_or("").to_owned();
    let privileges = match parse_privileges(req.arg("privileges").unwrap_or("ALL PRIVILEGES")) {
        Ok(p) => p,
        Err(e) => return Outcome::err(e.to_string()),
    };
    let _db = sim.db_ops.lock().await;
    {
        let world = sim.world();
        if world
            .databases
            .get(&database)
            .is_none_or(|d| d.owner != user)
        {
            return Outcome::err(format!("The database “{database}” does not exist."));
        }
        if world.db_users.get(&db_user).is_none_or(|u| u.owner != user) {
            return Outcome::err(format!("The user “{db_user}” does not exist."));
        }
    }
    if let Err(error) = sim.db_grant(&db_user, &database, &privileges).await {
        return Outcome::err(format!("The system failed to set privileges: {error}"));
    }
    sim.world()
        .set_grant(&db_user, &database, &privileges.join(","));
    Outcome::ok(Value::Null)
}

fn list_databases(sim: &Sim, user: &str) -> Outcome {
    let world = sim.world();
    let databases: Vec<Value> = world
        .databases
        .values()
        .filter(|d| d.owner == user)
        .map(|d| {
            let users: Vec<&str> = world
                .grants
                .iter()
                .filter(|g| g.database == d.name)
                .map(|g| g.user.as_str())
                .collect();
            json!({"database": d.name, "disk_usage": 0, "users": users})
        })
        .collect();
    Outcome::ok(json!(databases))
}

fn list_users(sim: &Sim, user: &str) -> Outcome {
    let world = sim.world();
    let prefix = db_prefix(user);
    let users: Vec<Value> = world
        .db_users
        .values()
        .filter(|u| u.owner == user)
        .map(|u| {
            let databases: Vec<&str> = world
                .grants
                .iter()
                .filter(|g| g.user == u.name)
                .map(|g| g.database.as_str())
                .collect();
            json!({"user": u.name, "shortuser": u.name.strip_prefix(&prefix).unwrap_or(&u.name),
                   "databases": databases})
        })
        .collect();
    Outcome::ok(json!(users))
}

async fn delete_database(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let name = req.arg("name").unwrap_or("").to_owned();
    let _db = sim.db_ops.lock().await;
    let dropped = {
        let mut world = sim.world();
        if world.databases.get(&name).is_none_or(|d| d.owner != user) {
            return Outcome::err(format!("The database “{name}” does not exist."));
        }
        world.remove_database(&name)
    };
    sim.db_drop(&dropped).await;
    Outcome::ok(Value::Null)
}

async fn delete_user(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let name = req.arg("name").unwrap_or("").to_owned();
    let _db = sim.db_ops.lock().await;
    let dropped = {
        let mut world = sim.world();
        if world.db_users.get(&name).is_none_or(|u| u.owner != user) {
            return Outcome::err(format!("The user “{name}” does not exist."));
        }
        world.remove_db_user(&name)
    };
    sim.db_drop(&dropped).await;
    Outcome::ok(Value::Null)
}

/// `SSL::install_ssl?domain=D&cert=PEM&key=PEM&cabundle=PEM` (§1.5).
fn install_ssl(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let installed = ssl::install(
        &mut sim.world(),
        Some(user),
        req.arg("domain").unwrap_or(""),
        req.param("cert").unwrap_or(""),
        req.param("key"),
        req.param("cabundle"),
        "uapi",
    );
    match installed {
        Ok(data) => {
            let message = data["message"].as_str().unwrap_or_default().to_owned();
            Outcome::ok_with_message(data, message)
        }
        Err(e) => Outcome::err(e),
    }
}

/// `Fileman::save_file_content?dir=D&file=F&content=C`: the ACME HTTP-01 write path.
/// `dir` is absolute inside the home directory or relative to it; missing directories are
/// created (UNCONFIRMED: real cPanel may require them to exist).
fn save_file_content(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let home = format!("/home/{user}");
    let dir = req.arg("dir").unwrap_or("").trim_start_matches("~/");
    let file = req.arg("file").unwrap_or("");
    if file.is_empty() || file.contains('/') {
        return Outcome::err(format!("“{file}” is not a valid file name (“file”)."));
    }
    let path = match webroot::resolve(&home, &format!("{dir}/{file}")) {
        Some(path) if webroot::is_within(&path, &home) => path,
        _ => return Outcome::err(format!("You do not have permission to write to “{dir}”.")),
    };
    let content = req.param("content").unwrap_or("").as_bytes().to_vec();
    webroot::write(&mut sim.world(), user, path.clone(), content);
    Outcome::ok(json!({"path": path, "from_charset": "UTF-8", "to_charset": "UTF-8"}))
}

/// `Backup::fullbackup_to_homedir` (official UAPI page): starts a full backup into the home
/// directory as `backup-MM.DD.YYYY_HH-mm-ss_username.tar.gz` and answers at once with the
/// process id (`data.pid`, a string); the archive is written in the background.
fn fullbackup_to_homedir(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    if let Some(homedir) = req.arg("homedir")
        && !matches!(homedir, "include" | "skip")
    {
        return Outcome::err(format!(
            "“{homedir}” is not a valid value for “homedir”: use “include” or “skip”."
        ));
    }
    let mut world = sim.world();
    let backup = world.start_backup(user, crate::backups::Storage::Home, |created, _| {
        format!(
            "backup-{}_{user}.tar.gz",
            clock::cpanel_backup_stamp(created)
        )
    });
    // Any number does as a pid; this one is stable per archive.
    Outcome::ok(json!({ "pid": (backup.created % 30_000 + 1_000).to_string() }))
}

/// `Backup::list_backups` (official UAPI page): only the dates of the backups, as
/// `["2014-12-02T00:00:00.000Z"]`, with `metadata.cnt`; kept for clients that only need to know
/// whether there are any. The driver lists with `BackupInfo::list`, which names the files.
fn list_backups(sim: &Sim, user: &str) -> Outcome {
    let dates: Vec<String> = sim
        .world()
        .backups_of(user, crate::backups::Storage::Home)
        .iter()
        .filter(|b| b.ready())
        .map(|b| format!("{}T00:00:00.000Z", clock::date(b.created)))
        .collect();
    Outcome::ok(json!(dates))
}

/// `BackupInfo::list` (official UAPI page): one entry per archive in the home directory,
/// `{name, fullpath, mtime, sizeBytes, startedAtEpoch, status}`; `status` is `ready` once no
/// marker file says a run is active. The value while running is UNCONFIRMED (`running`
/// here), so the driver treats everything but `ready` as unfinished.
fn backupinfo_list(sim: &Sim, user: &str) -> Outcome {
    let entries: Vec<Value> = sim
        .world()
        .backups_of(user, crate::backups::Storage::Home)
        .iter()
        .map(|b| {
            let ready = b.ready();
            json!({
                "name": b.name,
                "fullpath": b.name,
                "mtime": b.created,
                "sizeBytes": if ready { b.size_bytes } else { 0 },
                "startedAtEpoch": if ready { Value::Null } else { json!(b.created) },
                "status": if ready { "ready" } else { "running" },
            })
        })
        .collect();
    Outcome::ok(json!(entries))
}

/// `Fileman::trash_file?path=P` (official UAPI page): moves a file of the home directory to
/// `~/.trash` and answers `{path, trash_leaf}`. Only backup archives are simulated. The text
/// for a missing file is UNCONFIRMED.
fn trash_file(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let home = format!("/home/{user}/");
    let path = req.arg("path").unwrap_or("");
    let name = path
        .strip_prefix(&home)
        .unwrap_or(path)
        .trim_start_matches('/');
    let mut world = sim.world();
    let Some(backup) = world
        .backups_of(user, crate::backups::Storage::Home)
        .into_iter()
        .find(|b| b.name == name)
    else {
        return Outcome::err(format!("The file “{path}” does not exist."));
    };
    world.delete_backup(user, crate::backups::Storage::Home, name);
    let leaf = backup.name.clone();
    world.trash.push((user.to_owned(), leaf.clone(), backup));
    Outcome::ok(json!({"path": format!("{home}{name}"), "trash_leaf": leaf}))
}

/// `Trash::remove?path=/.trash/<leaf>` (official UAPI page): deletes one item of `~/.trash`
/// for good; an item already absent is an idempotent success; a path outside the trash is
/// refused.
fn trash_remove(sim: &Sim, req: &ApiRequest, user: &str) -> Outcome {
    let path = req.arg("path").unwrap_or("");
    let Some(leaf) = path
        .strip_prefix("/.trash/")
        .filter(|l| !l.is_empty() && !l.contains('/') && *l != "..")
    else {
        return Outcome::err(format!(
            "The path “{path}” is not inside the “.trash” directory."
        ));
    };
    sim.world()
        .trash
        .retain(|(owner, item, _)| !(owner == user && item == leaf));
    Outcome::ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_need_the_eight_character_prefix() {
        assert!(check_prefixed("database", "bob_wp", "bob").is_ok());
        assert!(check_prefixed("database", "longuser_wp", "longusername").is_ok());
        assert!(check_prefixed("database", "longusername_wp", "longusername").is_err());
        assert!(check_prefixed("database", "wp", "bob").is_err());
        assert!(check_prefixed("database", "bob_", "bob").is_err());
    }
}
