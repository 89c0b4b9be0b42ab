//! DirectAdmin user backups, run as the account (login-as `admin|user`):
//! - `CMD_API_SITE_BACKUP` (GET): the archive names in `~/backups` as a list (client libraries
//!   read `list[]`); `action=backup` with `select0…` naming what to include queues a backup
//!   (DirectAdmin writes it from its task queue, so it appears later), answered
//!   `error=0` at once.
//! - `CMD_API_FILE_MANAGER` (POST) `action=multiple&button=delete&path=/backups&select0=
//!   /backups/<file>`: deletes files of the home directory. The command is the file manager's
//!   own; its exact fields and texts are UNCONFIRMED.
//!
//! Archive names follow `backup-<Mon>-<d>-<yyyy>-<n>.tar.gz` (UNCONFIRMED); the list gives no
//! size or date. These archives live in the home, so removing the account takes them.
//!
//! DirectAdmin admin backups, run as the admin (no login-as), kept in the admin's
//! `/home/admin/admin_backups` and so outliving the account:
//! - `CMD_API_ADMIN_BACKUP` `action=create&when=now&where=local&local_path=…&who=selected&
//!   select0=<user>&what=all`: the fields DirectAdmin's backup hooks receive from the task
//!   queue (official "Backup and Restore Hooks": `when`, `where`, `local_path`, `who`,
//!   `select[X]`, `what`); queued, answered `error=0` at once; the archive
//!   `user.<creator>.<user>.tar.gz` appears once written (name pattern from admin restore
//!   scripts, UNCONFIRMED; newer versions may write `.tar.zst`), replacing an older one.
//! - `CMD_API_ADMIN_BACKUP` `action=restore&where=local&local_path=…&ip_choice=file&
//!   select0=<file>`: the restore fields the same hooks page lists (`ip_choice`, `where`,
//!   `local_path`); queued, the account appears once restored. An existing account is restored
//!   over (UNCONFIRMED: DirectAdmin's restore rewrites an existing user); texts UNCONFIRMED.
//! - `CMD_API_FILE_MANAGER` as the admin on `/admin_backups` (the admin's home is
//!   `/home/admin`): GET lists `{path: {name, size, date, type}}` (layout UNCONFIRMED), the
//!   delete is the same `action=multiple&button=delete` as above.

use serde_json::json;

use super::{failure, list, selected, success};
use crate::backups::{RESTORE_TIME, RestoreRefusal, Storage};
use crate::reply::Reply;
use crate::reply::{self as http_reply};
use crate::request::ApiRequest;
use crate::routes::Caller;
use crate::sim::Sim;
use crate::state::clock;

/// What `select0…` of a user backup may name (the fields client libraries send).
const BACKUP_PARTS: [&str; 11] = [
    "domain",
    "subdomain",
    "email",
    "forwarder",
    "autoresponder",
    "vacation",
    "list",
    "emailsettings",
    "ftp",
    "ftpsettings",
    "database",
];

fn owner(caller: &Caller) -> Option<&str> {
    match caller {
        Caller::User(user) => Some(user),
        Caller::Admin => None,
    }
}

pub(super) fn site_backup(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    let Some(owner) = owner(caller) else {
        return failure(
            req,
            "You cannot execute that command",
            "Run CMD_API_SITE_BACKUP as the account (Basic auth admin|user)",
        );
    };
    match req.arg("action") {
        None | Some("") => {
            let names = sim
                .world()
                .backups_of(owner, Storage::Home)
                .into_iter()
                .filter(|b| b.ready())
                .map(|b| b.name)
                .collect();
            list(req, names)
        }
        Some("backup") => {
            let parts = selected(req);
            if parts.is_empty() {
                return failure(req, "Cannot create backup", "Nothing was selected");
            }
            if let Some(unknown) = parts.iter().find(|p| !BACKUP_PARTS.contains(&p.as_str())) {
                return failure(
                    req,
                    "Cannot create backup",
                    &format!("Unknown item {unknown}"),
                );
            }
            let mut world = sim.world();
            let sequence = world.next_id();
            world.start_backup(owner, Storage::Home, |created, _| {
                format!(
                    "backup-{}-{sequence}.tar.gz",
                    clock::directadmin_backup_stamp(created)
                )
            });
            success(
                req,
                "Backup creation added to queue",
                "You will be notified when the backup is ready",
            )
        }
        Some(other) => failure(req, "Unknown action", other),
    }
}

/// Where admin backups are written, as `local_path` names it.
const ADMIN_BACKUP_DIR: &str = "/home/admin/admin_backups";
/// The same directory as the admin's file manager sees it.
const ADMIN_BACKUP_PATH: &str = "/admin_backups";

/// `user.<creator>.<user>.tar.gz` → `<user>`.
fn user_of_admin_archive(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("user.")?.strip_suffix(".tar.gz")?;
    let (_, user) = rest.split_once('.')?;
    (!user.is_empty() && !user.contains('.')).then_some(user)
}

pub(super) fn admin_backup(sim: &Sim, req: &ApiRequest) -> Reply {
    if req.arg("where") != Some("local") || req.arg("local_path") != Some(ADMIN_BACKUP_DIR) {
        return failure(
            req,
            "Cannot run the backup",
            &format!("Only where=local with local_path={ADMIN_BACKUP_DIR} is simulated"),
        );
    }
    match req.arg("action") {
        Some("create") => {
            if req.arg("who") != Some("selected") {
                return failure(
                    req,
                    "Cannot create backup",
                    "Only who=selected is simulated",
                );
            }
            let users = selected(req);
            if users.is_empty() {
                return failure(req, "Cannot create backup", "No users were selected");
            }
            let mut world = sim.world();
            if let Some(unknown) = users.iter().find(|u| !world.accounts.contains_key(*u)) {
                return failure(
                    req,
                    "Cannot create backup",
                    &format!("User {unknown} does not exist"),
                );
            }
            for user in &users {
                let creator = world.accounts[user].owner.clone();
                world.start_backup(user, Storage::Server, |_, _| {
                    format!("user.{creator}.{user}.tar.gz")
                });
            }
            success(
                req,
                "Backup creation added to queue",
                "You will be notified when the backup is ready",
            )
        }
        Some("restore") => {
            let files = selected(req);
            if files.is_empty() {
                return failure(req, "Cannot restore", "No files were selected");
            }
            let mut world = sim.world();
            for file in &files {
                let user = user_of_admin_archive(file).unwrap_or_default().to_owned();
                let id = world.next_id().to_string();
                match world.start_restore(&user, Storage::Server, file, true, id, RESTORE_TIME) {
                    Ok(_) => {}
                    Err(RestoreRefusal::NoArchive | RestoreRefusal::AccountExists) => {
                        return failure(
                            req,
                            "Cannot restore",
                            &format!("{ADMIN_BACKUP_DIR}/{file} does not exist"),
                        );
                    }
                }
            }
            success(
                req,
                "Restore added to queue",
                "You will be notified when the restore is complete",
            )
        }
        other => failure(req, "Unknown action", other.unwrap_or("")),
    }
}

/// The admin's file manager on `/admin_backups`: the listing, or the delete.
fn admin_file_manager(sim: &Sim, req: &ApiRequest) -> Reply {
    if req.arg("action").is_none() {
        if req.arg("path") != Some(ADMIN_BACKUP_PATH) {
            return failure(
                req,
                "Cannot list files",
                &format!("Only {ADMIN_BACKUP_PATH} is simulated"),
            );
        }
        let world = sim.world();
        let finished: Vec<_> = world
            .backups
            .iter()
            .filter(|b| b.storage == Storage::Server && b.ready())
            .collect();
        if !super::wants_json(req) {
            // Each entry's attributes url-encoded again as its value.
            let entries = finished
                .iter()
                .map(|b| {
                    (
                        format!("{ADMIN_BACKUP_PATH}/{}", b.name),
                        format!(
                            "name={}&size={}&date={}&type=file",
                            b.name, b.size_bytes, b.created
                        ),
                    )
                })
                .collect();
            return super::pairs(req, entries);
        }
        let mut entries = serde_json::Map::new();
        for b in finished {
            entries.insert(
                format!("{ADMIN_BACKUP_PATH}/{}", b.name),
                json!({"name": b.name, "size": b.size_bytes.to_string(),
                       "date": b.created.to_string(), "type": "file"}),
            );
        }
        return Reply::ok(http_reply::json(
            axum::http::StatusCode::OK,
            &serde_json::Value::Object(entries),
        ));
    }
    if req.arg("action") != Some("multiple") || req.arg("button") != Some("delete") {
        return failure(
            req,
            "Unknown action",
            "Only action=multiple&button=delete is simulated",
        );
    }
    let files = selected(req);
    if files.is_empty() {
        return failure(req, "Cannot delete files", "No files were selected");
    }
    let mut world = sim.world();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for file in &files {
        let hit = file
            .strip_prefix(&format!("{ADMIN_BACKUP_PATH}/"))
            .and_then(|name| {
                world
                    .backups
                    .iter()
                    .find(|b| b.storage == Storage::Server && b.name == name && b.ready())
                    .map(|b| (b.owner.clone(), b.name.clone()))
            });
        match hit {
            Some(pair) => found.push(pair),
            None => missing.push(file.clone()),
        }
    }
    if !missing.is_empty() {
        return failure(
            req,
            "Cannot delete files",
            &format!("{} does not exist", missing.join(", ")),
        );
    }
    for (owner, name) in found {
        world.delete_backup(&owner, Storage::Server, &name);
    }
    success(req, "Files deleted", "")
}

pub(super) fn file_manager(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
    if *caller == Caller::Admin {
        return admin_file_manager(sim, req);
    }
    let Some(owner) = owner(caller) else {
        return failure(
            req,
            "You cannot execute that command",
            "Run CMD_API_FILE_MANAGER as the account (Basic auth admin|user)",
        );
    };
    if req.arg("action") != Some("multiple") || req.arg("button") != Some("delete") {
        return failure(
            req,
            "Unknown action",
            "Only action=multiple&button=delete is simulated",
        );
    }
    let files = selected(req);
    if files.is_empty() {
        return failure(req, "Cannot delete files", "No files were selected");
    }
    let mut world = sim.world();
    let mut missing = Vec::new();
    let mut names = Vec::new();
    for file in &files {
        match file.strip_prefix("/backups/") {
            Some(name)
                if world
                    .backups_of(owner, Storage::Home)
                    .iter()
                    .any(|b| b.name == name) =>
            {
                names.push(name.to_owned());
            }
            _ => missing.push(file.clone()),
        }
    }
    if !missing.is_empty() {
        return failure(
            req,
            "Cannot delete files",
            &format!("{} does not exist", missing.join(", ")),
        );
    }
    for name in names {
        world.delete_backup(owner, Storage::Home, &name);
    }
    success(req, "Files deleted", "")
}
