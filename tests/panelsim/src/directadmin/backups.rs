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
//! size or date.

use super::{failure, list, selected, success};
use crate::reply::Reply;
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
                .backups_of(owner)
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
            world.start_backup(owner, |created, _| {
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

pub(super) fn file_manager(sim: &Sim, req: &ApiRequest, caller: &Caller) -> Reply {
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
            Some(name) if world.backups_of(owner).iter().any(|b| b.name == name) => {
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
        world.delete_backup(owner, &name);
    }
    success(req, "Files deleted", "")
}
