//! WHM's server-level account archives (pkgacct "cpmove" files) and their restore:
//! - `start_background_pkgacct` (`user`, `compressionsetting`): packages the account in the
//!   background into `/home/cpmove-<user>.tar.gz` and answers `data.session_id` at once
//!   (official "Back up an account using the pkgacct script"); `get_pkgacct_session_state`
//!   (`session_id`) answers `data.state` `RUNNING`, `COMPLETED` or `FAILED`.
//! - `list_cparchive_files`: `data.quickrestore_files[]` `{file, path, user}` for the archives
//!   in `/home` (official "Return cparchive files list", which names `cpmove-USER`,
//!   `cpmove-USER.tar.gz` …). While pkgacct runs, its work directory `cpmove-<user>` is what
//!   the list shows (UNCONFIRMED: pkgacct's work directory sits beside the archive).
//! - `delete_account_archives` (`user`, `mountpoint`, default `/home`): removes the account's
//!   archives there, answering `metadata.output.messages[]` "Found archive: …" (official
//!   "Remove cPanel account's archives").
//! - `start_local_cpmove_restore` (`cpmovepath`): restores one account from a cpmove archive in
//!   the background (official "Restore one cPanel account from a backup"); the answer's
//!   `data.transfer_session_id` (field name UNCONFIRMED) is followed with
//!   `get_transfer_session_state` (`data.state_name`, official enum: … `RESTORE_INPROGRESS`,
//!   `COMPLETED`, `FAILED`). An account that already exists is not restored over: the restore
//!   creates the account ("Account" restore module) and WHM's `restoreaccount` documents that
//!   creating fails for an existing account; the text is UNCONFIRMED.
//!
//! The archives live outside the account's home, so removing the account leaves them.

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::json;

use super::{whm_fail, whm_ok};
use crate::backups::{RESTORE_TIME, RestoreRefusal, Storage};
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::clock;

/// Where pkgacct writes its archives.
const ARCHIVE_DIR: &str = "/home";

fn archive_name(user: &str) -> String {
    format!("cpmove-{user}.tar.gz")
}

fn random_suffix() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect()
}

pub(super) fn start_background_pkgacct(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "start_background_pkgacct";
    let user = req.arg("user").unwrap_or("");
    let mut world = sim.world();
    if !world.accounts.contains_key(user) {
        // Text UNCONFIRMED.
        return whm_fail(sim, CMD, format!("The user “{user}” does not exist."), None);
    }
    let backup = world.start_backup(user, Storage::Server, |_, _| archive_name(user));
    // The documented session ids look like `username20200323154328kDJ2Kx4xua2KtG`.
    let session_id = format!(
        "{user}{}{}",
        clock::compact_stamp(backup.created),
        random_suffix()
    );
    world
        .pkgacct_sessions
        .insert(session_id.clone(), (user.to_owned(), backup.created));
    whm_ok(
        sim,
        CMD,
        "OK",
        Some(json!({ "session_id": session_id })),
        None,
    )
}

pub(super) fn get_pkgacct_session_state(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "get_pkgacct_session_state";
    let id = req.arg("session_id").unwrap_or("");
    let world = sim.world();
    let Some((owner, created)) = world.pkgacct_sessions.get(id).cloned() else {
        // Text UNCONFIRMED.
        return whm_fail(
            sim,
            CMD,
            format!("The session “{id}” does not exist."),
            None,
        );
    };
    let running = world
        .backups_of(&owner, Storage::Server)
        .iter()
        .any(|b| b.created == created && !b.ready());
    let state = if running { "RUNNING" } else { "COMPLETED" };
    whm_ok(sim, CMD, "OK", Some(json!({ "state": state })), None)
}

pub(super) fn list_cparchive_files(sim: &Sim) -> Reply {
    let world = sim.world();
    let mut files = Vec::new();
    for backup in world
        .backups
        .iter()
        .filter(|b| b.storage == Storage::Server)
    {
        let file = if backup.ready() {
            backup.name.clone()
        } else {
            format!("cpmove-{}", backup.owner)
        };
        files.push(json!({"file": file, "path": ARCHIVE_DIR, "user": backup.owner}));
    }
    whm_ok(
        sim,
        "list_cparchive_files",
        "OK",
        Some(json!({ "quickrestore_files": files })),
        None,
    )
}

pub(super) fn delete_account_archives(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "delete_account_archives";
    let user = req.arg("user").unwrap_or("");
    let mountpoint = req
        .arg("mountpoint")
        .unwrap_or(ARCHIVE_DIR)
        .trim_end_matches('/');
    let mut world = sim.world();
    let mut messages = Vec::new();
    if mountpoint == ARCHIVE_DIR {
        let finished: Vec<String> = world
            .backups_of(user, Storage::Server)
            .into_iter()
            .filter(|b| b.ready())
            .map(|b| b.name)
            .collect();
        for name in finished {
            if world.delete_backup(user, Storage::Server, &name) {
                messages.push(format!("Found archive: {ARCHIVE_DIR}/{name}"));
            }
        }
    }
    super::whm_ok_with_output(sim, CMD, &json!({ "messages": messages, "warnings": [] }))
}

pub(super) fn start_local_cpmove_restore(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "start_local_cpmove_restore";
    let path = req.arg("cpmovepath").unwrap_or("");
    let owner = path
        .strip_prefix(&format!("{ARCHIVE_DIR}/"))
        .and_then(|file| file.strip_prefix("cpmove-"))
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
        .unwrap_or("");
    let file = path.rsplit('/').next().unwrap_or("");
    let mut world = sim.world();
    let id = format!(
        "{owner}restore{}{}",
        clock::compact_stamp(clock::now_unix()),
        random_suffix()
    );
    match world.start_restore(owner, Storage::Server, file, false, id, RESTORE_TIME) {
        Ok(restore) => whm_ok(
            sim,
            CMD,
            "OK",
            Some(json!({ "transfer_session_id": restore.id })),
            None,
        ),
        // Texts UNCONFIRMED.
        Err(RestoreRefusal::NoArchive) => {
            whm_fail(sim, CMD, format!("The file “{path}” does not exist."), None)
        }
        Err(RestoreRefusal::AccountExists) => whm_fail(
            sim,
            CMD,
            format!("The account “{owner}” already exists."),
            None,
        ),
    }
}

pub(super) fn get_transfer_session_state(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "get_transfer_session_state";
    let id = req.arg("transfer_session_id").unwrap_or("");
    let Some(restore) = sim.world().restore_by_id(id) else {
        // Text UNCONFIRMED.
        return whm_fail(
            sim,
            CMD,
            format!("The transfer session “{id}” does not exist."),
            None,
        );
    };
    let state = match restore.outcome {
        None => "RESTORE_INPROGRESS",
        Some(Ok(())) => "COMPLETED",
        Some(Err(_)) => "FAILED",
    };
    whm_ok(sim, CMD, "OK", Some(json!({ "state_name": state })), None)
}
