//! Contract tests of the backup commands (`create_backup`, `list_backups`, `delete_backup`)
//! through the session's path against each panel's simulator: a create answers once the panel
//! has finished the archive, a retried create waits for the running one instead of starting a
//! second, a delete of a missing archive is `not_found`, and a failed delete leaves the archive.

#[path = "panel_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use mpanel_agent::handler::{BuiltinHandler, CommandHandler, ErrorClass};
use mpanel_agent::panel::PanelKind;
use mpanel_agent::panel_commands::{BackupWait, PanelCommandHandler};
use mpanel_agent::session::run_command;
use mpanel_common::command::{
    BackupCreated, BackupDeletion, Command, CreateBackup, DeleteBackup, Failure, ListBackups,
    Outcome, Reply,
};
use mpanel_panelsim::{FaultKind, ScriptedFault, SimHandle};
use mpanel_proto::convert::outcome_from_wire;
use mpanel_proto::v1;
use serde_json::Value;
use support::{driver_for, setup, state_list, with_account};

const KINDS: [PanelKind; 3] = [PanelKind::Cpanel, PanelKind::Plesk, PanelKind::Directadmin];

fn handler(kind: PanelKind, sim: &SimHandle) -> Arc<dyn CommandHandler> {
    let commands = PanelCommandHandler::new(driver_for(kind, sim)).with_backup_wait(BackupWait {
        poll: Duration::from_millis(50),
        limit: Duration::from_secs(10),
    });
    Arc::new(BuiltinHandler::with_next(Arc::new(commands)))
}

async fn run(h: &Arc<dyn CommandHandler>, command: Command) -> Outcome {
    let message = v1::Command {
        id: "1".into(),
        idempotency_key: "idem-1".into(),
        deadline_unix_ms: 0,
        request: Some(command.into()),
    };
    let result = run_command(Arc::clone(h), message).await;
    outcome_from_wire(result.outcome).expect("a readable outcome")
}

async fn ok(h: &Arc<dyn CommandHandler>, command: Command) -> Reply {
    let name = command.name();
    match run(h, command).await {
        Outcome::Done(reply) => reply,
        other => panic!("{name} did not succeed: {other:?}"),
    }
}

async fn create(h: &Arc<dyn CommandHandler>, username: &str) -> BackupCreated {
    match ok(
        h,
        Command::CreateBackup(CreateBackup {
            username: username.into(),
        }),
    )
    .await
    {
        Reply::BackupCreated(created) => created,
        other => panic!("create_backup answered {other:?}"),
    }
}

async fn delete(h: &Arc<dyn CommandHandler>, username: &str, location: &str) -> Outcome {
    run(
        h,
        Command::DeleteBackup(DeleteBackup {
            username: username.into(),
            location: location.into(),
        }),
    )
    .await
}

fn sim_backups(sim: &SimHandle, owner: &str) -> Vec<Value> {
    state_list(sim, "backups")
        .into_iter()
        .filter(|b| b["owner"] == owner)
        .collect()
}

/// The file name each panel gives an account's backup.
fn looks_like_the_panels_name(kind: PanelKind, username: &str, location: &str) -> bool {
    match kind {
        PanelKind::Cpanel => {
            location.starts_with("backup-") && location.ends_with(&format!("_{username}.tar.gz"))
        }
        PanelKind::Plesk => location.starts_with("backup_") && location.ends_with(".tar"),
        PanelKind::Directadmin => location.starts_with("backup-") && location.ends_with(".tar.gz"),
    }
}

#[tokio::test]
async fn a_backup_is_answered_once_written_and_listed_with_its_size() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler(kind, &sim);

        let created = create(&h, &spec.username).await;
        assert!(
            looks_like_the_panels_name(kind, &spec.username, &created.location),
            "{kind:?}: {created:?}"
        );
        let on_panel = sim_backups(&sim, &spec.username);
        assert_eq!(on_panel.len(), 1, "{kind:?}: {on_panel:?}");
        assert_eq!(on_panel[0]["name"], created.location.as_str());
        assert_eq!(
            on_panel[0]["ready"], true,
            "{kind:?}: answered before written"
        );
        if kind != PanelKind::Directadmin {
            assert_eq!(on_panel[0]["sizeBytes"], created.size_bytes, "{kind:?}");
            assert!(created.size_bytes > 0, "{kind:?}");
        }

        let Reply::Backups(list) = ok(
            &h,
            Command::ListBackups(ListBackups {
                username: spec.username.clone(),
            }),
        )
        .await
        else {
            panic!("list_backups answered another reply");
        };
        assert_eq!(list.backups.len(), 1, "{kind:?}: {list:?}");
        assert_eq!(list.backups[0].location, created.location);
        assert_eq!(list.backups[0].size_bytes, created.size_bytes);
        if kind != PanelKind::Directadmin {
            let at = list.backups[0].created_at.expect("a creation time");
            assert!(
                (at - on_panel[0]["created"].as_i64().unwrap()).abs() < 120,
                "{kind:?}: {at}"
            );
        }
        // Another account's list does not show it.
        let Reply::Backups(resident) = ok(
            &h,
            Command::ListBackups(ListBackups {
                username: mpanel_panelsim::RESIDENT_USER.into(),
            }),
        )
        .await
        else {
            panic!("list_backups answered another reply");
        };
        assert!(resident.backups.is_empty(), "{kind:?}: {resident:?}");
    }
}

#[tokio::test]
async fn a_retried_create_waits_for_the_running_backup_instead_of_starting_another() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        // An earlier attempt started a backup and gave up waiting.
        driver.start_backup(&spec.username).await.unwrap();
        let running = sim_backups(&sim, &spec.username);
        assert_eq!(running.len(), 1);
        assert_eq!(running[0]["ready"], false, "{kind:?}: written at once");

        let created = create(&handler(kind, &sim), &spec.username).await;
        let on_panel = sim_backups(&sim, &spec.username);
        // Plesk and DirectAdmin list an archive only once written, so a running one cannot be
        // seen and a retry queues a second backup; the answer is still a finished archive.
        let expected = if kind == PanelKind::Cpanel { 1 } else { 2 };
        assert_eq!(on_panel.len(), expected, "{kind:?}: {on_panel:?}");
        assert!(
            on_panel
                .iter()
                .any(|b| b["name"] == created.location.as_str() && b["ready"] == true),
            "{kind:?}: {created:?} {on_panel:?}"
        );
    }
}

#[tokio::test]
async fn delete_removes_the_archive_and_a_second_delete_is_not_found() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler(kind, &sim);
        let created = create(&h, &spec.username).await;

        assert_eq!(
            delete(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupDeleted(BackupDeletion::Deleted)),
            "{kind:?}"
        );
        assert!(sim_backups(&sim, &spec.username).is_empty(), "{kind:?}");
        assert_eq!(
            delete(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupDeleted(BackupDeletion::NotFound)),
            "{kind:?}"
        );
        // The archives of a removed account went with it.
        let again = create(&h, &spec.username).await;
        driver.terminate_account(&spec.username).await.unwrap();
        assert_eq!(
            delete(&h, &spec.username, &again.location).await,
            Outcome::Done(Reply::BackupDeleted(BackupDeletion::NotFound)),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_delete_is_retryable_and_leaves_the_archive() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler(kind, &sim);
        let created = create(&h, &spec.username).await;
        let delete_call = match kind {
            PanelKind::Cpanel => "trash_file",
            PanelKind::Plesk => "agent.php",
            PanelKind::Directadmin => "CMD_API_FILE_MANAGER",
        };
        sim.script(ScriptedFault::on(FaultKind::ServerError, delete_call, 1));
        match delete(&h, &spec.username, &created.location).await {
            Outcome::Failed(Failure { class, .. }) => {
                assert_eq!(class, ErrorClass::Retryable, "{kind:?}");
            }
            other => panic!("{kind:?}: delete succeeded through an outage: {other:?}"),
        }
        assert_eq!(sim_backups(&sim, &spec.username).len(), 1, "{kind:?}");
    }
}

#[tokio::test]
async fn a_location_that_is_not_one_file_name_is_refused() {
    let kind = PanelKind::Cpanel;
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let h = handler(kind, &sim);
    for location in ["../../etc/passwd", "/home/alice41/backup.tar.gz", ".."] {
        match delete(&h, &spec.username, location).await {
            Outcome::Failed(Failure { class, .. }) => {
                assert_eq!(class, ErrorClass::Permanent, "{location}");
            }
            other => panic!("{location}: {other:?}"),
        }
    }
}
