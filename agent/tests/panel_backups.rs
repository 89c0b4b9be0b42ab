//! Contract tests of the backup commands (`create_backup`, `list_backups`, `delete_backup`,
//! `restore_backup`) through the session's path against each panel's simulator: a create
//! answers once the panel has finished the archive, a retried create waits for the running one
//! instead of starting a second, a delete of a missing archive is `not_found`, a failed delete
//! leaves the archive; the archive outlives the account's removal, is listed and deleted by
//! username afterwards, and a restore brings the account back with what it held.

#[path = "panel_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use mpanel_agent::handler::{BuiltinHandler, CommandHandler, ErrorClass};
use mpanel_agent::panel::PanelKind;
use mpanel_agent::panel::{ControlPanel, DatabaseSpec, MailboxSpec, Secret};
use mpanel_agent::panel_commands::{BackupWait, PanelCommandHandler};
use mpanel_agent::session::run_command;
use mpanel_common::command::{
    BackupCreated, BackupDeletion, BackupList, BackupRestored, Command, CreateBackup, DeleteBackup,
    Failure, ListBackups, Outcome, Reply, RestoreBackup,
};
use mpanel_panelsim::{FaultKind, ScriptedFault, SimHandle};
use mpanel_proto::convert::outcome_from_wire;
use mpanel_proto::v1;
use serde_json::Value;
use support::{driver_for, setup, state_list, with_account};

const KINDS: [PanelKind; 3] = [PanelKind::Cpanel, PanelKind::Plesk, PanelKind::Directadmin];

fn handler(kind: PanelKind, sim: &SimHandle) -> Arc<dyn CommandHandler> {
    handler_on(driver_for(kind, sim))
}

/// A handler on a given driver (drivers remember the restores they started).
fn handler_on(driver: Arc<dyn ControlPanel>) -> Arc<dyn CommandHandler> {
    let commands = PanelCommandHandler::new(driver).with_backup_wait(BackupWait {
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

async fn list(h: &Arc<dyn CommandHandler>, username: &str) -> BackupList {
    match ok(
        h,
        Command::ListBackups(ListBackups {
            username: username.into(),
        }),
    )
    .await
    {
        Reply::Backups(list) => list,
        other => panic!("list_backups answered {other:?}"),
    }
}

async fn restore(h: &Arc<dyn CommandHandler>, username: &str, location: &str) -> Outcome {
    run(
        h,
        Command::RestoreBackup(RestoreBackup {
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
        PanelKind::Cpanel => location == format!("cpmove-{username}.tar.gz"),
        PanelKind::Plesk => location.starts_with("backup_") && location.ends_with(".tar"),
        PanelKind::Directadmin => location == format!("user.admin.{username}.tar.gz"),
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
        // WHM's archive list gives no size; the others do.
        if kind != PanelKind::Cpanel {
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
        if kind != PanelKind::Cpanel {
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
        // seen and a retry queues a second backup (DirectAdmin's replaces the first under the
        // same name once written); the answer is still a finished archive.
        match kind {
            PanelKind::Cpanel => assert_eq!(on_panel.len(), 1, "{on_panel:?}"),
            PanelKind::Plesk => assert_eq!(on_panel.len(), 2, "{on_panel:?}"),
            PanelKind::Directadmin => assert!((1..=2).contains(&on_panel.len()), "{on_panel:?}"),
        }
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
            PanelKind::Cpanel => "delete_account_archives",
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

/// An account with a mailbox and a database besides its site and zone.
async fn with_mail_and_database(
    kind: PanelKind,
    driver: &Arc<dyn ControlPanel>,
) -> (mpanel_agent::panel::AccountSpec, String) {
    let spec = with_account(kind, driver).await;
    driver
        .create_mailbox(
            &spec.username,
            &MailboxSpec {
                local_part: "info".into(),
                domain: spec.domain.clone(),
                password: Secret::new("Mailbox-Pass-4k!"),
                quota_mb: Some(100),
            },
        )
        .await
        .expect("a mailbox");
    let database = driver
        .create_database(
            &spec.username,
            &DatabaseSpec {
                name: "main".into(),
                user: "main".into(),
                password: Secret::new("Db-Pass-8q!x"),
                domain: spec.domain.clone(),
            },
        )
        .await
        .expect("a database");
    (spec, database.database)
}

fn names(sim: &SimHandle, key: &str, field: &str, owner: &str) -> Vec<String> {
    let mut names: Vec<String> = state_list(sim, key)
        .into_iter()
        .filter(|v| v["owner"] == owner)
        .filter_map(|v| v[field].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn zone_of(sim: &SimHandle, domain: &str) -> Option<Value> {
    state_list(sim, "zones")
        .into_iter()
        .find(|z| z["domain"] == domain)
}

#[tokio::test]
async fn a_backup_outlives_the_account_and_is_listed_and_deleted_by_username() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler(kind, &sim);
        let created = create(&h, &spec.username).await;

        driver.terminate_account(&spec.username).await.unwrap();
        assert!(
            support::account(&sim, &spec.username).is_none(),
            "{kind:?}: still there"
        );
        let listed = list(&h, &spec.username).await;
        assert_eq!(
            listed
                .backups
                .iter()
                .map(|b| b.location.as_str())
                .collect::<Vec<_>>(),
            vec![created.location.as_str()],
            "{kind:?}: the archive went with the account"
        );
        assert_eq!(
            delete(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupDeleted(BackupDeletion::Deleted)),
            "{kind:?}"
        );
        assert!(sim_backups(&sim, &spec.username).is_empty(), "{kind:?}");
        assert!(
            list(&h, &spec.username).await.backups.is_empty(),
            "{kind:?}"
        );
        assert_eq!(
            delete(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupDeleted(BackupDeletion::NotFound)),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn restore_brings_a_removed_account_back_with_its_domain_mail_database_and_zone() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let (spec, database) = with_mail_and_database(kind, &driver).await;
        let before = support::account(&sim, &spec.username).expect("the account");
        let mailboxes = names(&sim, "mailboxes", "address", &spec.username);
        let databases = names(&sim, "databases", "name", &spec.username);
        let zone = zone_of(&sim, &spec.domain).expect("a zone");
        assert_eq!(mailboxes, vec![format!("info@{}", spec.domain)], "{kind:?}");
        assert!(databases.contains(&database), "{kind:?}: {databases:?}");

        // One handler (one driver) throughout, as one agent would be.
        let h = handler_on(driver_for(kind, &sim));
        let created = create(&h, &spec.username).await;
        driver.terminate_account(&spec.username).await.unwrap();
        assert!(support::account(&sim, &spec.username).is_none(), "{kind:?}");
        assert!(zone_of(&sim, &spec.domain).is_none(), "{kind:?}: zone left");
        assert!(
            names(&sim, "mailboxes", "address", &spec.username).is_empty(),
            "{kind:?}"
        );

        assert_eq!(
            restore(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupRestored(BackupRestored {
                username: spec.username.clone()
            })),
            "{kind:?}"
        );
        let after = support::account(&sim, &spec.username).expect("restored");
        assert_eq!(after["domain"], spec.domain.as_str(), "{kind:?}");
        assert_eq!(after["package"], before["package"], "{kind:?}");
        assert_eq!(
            names(&sim, "mailboxes", "address", &spec.username),
            mailboxes,
            "{kind:?}"
        );
        assert_eq!(
            names(&sim, "databases", "name", &spec.username),
            databases,
            "{kind:?}"
        );
        assert_eq!(
            zone_of(&sim, &spec.domain).map(|z| z["records"].clone()),
            Some(zone["records"].clone()),
            "{kind:?}"
        );
        // The driver sees it again, and the archive is still there.
        assert!(
            driver.get_account(&spec.username).await.unwrap().is_some(),
            "{kind:?}"
        );
        assert_eq!(sim_backups(&sim, &spec.username).len(), 1, "{kind:?}");

        // Re-sent (the controller did not hear the answer): the same answer, nothing doubled.
        assert_eq!(
            restore(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupRestored(BackupRestored {
                username: spec.username.clone()
            })),
            "{kind:?}"
        );
        assert_eq!(state_list(&sim, "restores").len(), 1, "{kind:?}");
        assert_eq!(support::count_accounts(&sim, &spec.username), 1, "{kind:?}");
    }
}

#[tokio::test]
async fn a_restore_still_running_is_waited_for_not_started_again() {
    // cPanel and DirectAdmin restore in the background (Plesk's utility answers when done).
    for kind in [PanelKind::Cpanel, PanelKind::Directadmin] {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler_on(Arc::clone(&driver));
        let created = create(&h, &spec.username).await;
        driver.terminate_account(&spec.username).await.unwrap();

        // An earlier attempt started the restore and gave up waiting.
        driver
            .start_restore(&spec.username, &created.location)
            .await
            .unwrap();
        let running = state_list(&sim, "restores");
        assert_eq!(running.len(), 1, "{kind:?}");
        assert_eq!(running[0]["state"], "running", "{kind:?}");

        assert_eq!(
            restore(&h, &spec.username, &created.location).await,
            Outcome::Done(Reply::BackupRestored(BackupRestored {
                username: spec.username.clone()
            })),
            "{kind:?}"
        );
        let restores = state_list(&sim, "restores");
        assert_eq!(restores.len(), 1, "{kind:?}: {restores:?}");
        assert_eq!(restores[0]["state"], "completed", "{kind:?}");
        assert!(support::account(&sim, &spec.username).is_some(), "{kind:?}");
    }
}

#[tokio::test]
async fn restoring_an_unknown_archive_is_not_found() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler(kind, &sim);
        let created = create(&h, &spec.username).await;
        driver.terminate_account(&spec.username).await.unwrap();

        for location in ["no-such-archive.tar.gz", "cpmove-someoneelse.tar.gz"] {
            match restore(&h, &spec.username, location).await {
                Outcome::Failed(Failure { class, .. }) => {
                    assert_eq!(class, ErrorClass::NotFound, "{kind:?} {location}");
                }
                other => panic!("{kind:?} {location}: {other:?}"),
            }
        }
        // Another account's name for a real archive is not found either.
        match restore(&h, mpanel_panelsim::RESIDENT_USER, &created.location).await {
            Outcome::Failed(Failure { class, .. }) => {
                // The resident account exists: that is answered first.
                assert_eq!(class, ErrorClass::Conflict, "{kind:?}");
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert!(state_list(&sim, "restores").is_empty(), "{kind:?}");
        assert!(support::account(&sim, &spec.username).is_none(), "{kind:?}");
    }
}

#[tokio::test]
async fn restoring_over_a_live_account_is_a_conflict_and_changes_nothing() {
    for kind in KINDS {
        let (sim, driver) = setup(kind).await;
        let spec = with_account(kind, &driver).await;
        let h = handler(kind, &sim);
        let created = create(&h, &spec.username).await;
        let before = support::account(&sim, &spec.username).expect("the account");

        match restore(&h, &spec.username, &created.location).await {
            Outcome::Failed(Failure { class, message }) => {
                assert_eq!(class, ErrorClass::Conflict, "{kind:?}");
                assert!(message.contains("exists"), "{kind:?}: {message}");
            }
            other => panic!("{kind:?}: restored over a live account: {other:?}"),
        }
        assert!(state_list(&sim, "restores").is_empty(), "{kind:?}");
        assert_eq!(
            support::account(&sim, &spec.username),
            Some(before),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn a_location_that_is_not_one_file_name_is_refused_for_a_restore() {
    let kind = PanelKind::Directadmin;
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver.terminate_account(&spec.username).await.unwrap();
    let h = handler(kind, &sim);
    match restore(&h, &spec.username, "../../etc/passwd").await {
        Outcome::Failed(Failure { class, .. }) => assert_eq!(class, ErrorClass::Permanent),
        other => panic!("{other:?}"),
    }
}
