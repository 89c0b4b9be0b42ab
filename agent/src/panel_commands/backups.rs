//! Account backups: take one, list them, delete one, recreate a removed account from one.
//!
//! Every panel writes a backup in the background, so taking one is "start, then watch the list
//! until a new finished archive appears". A backup already running for the account (an earlier
//! attempt the controller gave up waiting for) is waited for instead of starting a second, so a
//! retried command converges on one archive. Deleting an archive the panel does not have is an
//! answer (`not_found`), not a failure: the controller's cleanup treats it as done.
//!
//! The archives live in the panel's server-level backup storage, so they outlive the account:
//! a terminated account is listed, pruned and restored by username. A restore, like a backup,
//! runs in the background; one already running for the account is waited for, and one that
//! finished from the same archive is the answer, so a re-sent restore converges too. An
//! account that still exists is never overwritten: it is a conflict.

use std::collections::HashSet;
use std::time::Duration;

use mpanel_common::command::{
    BackupCreated, BackupDeletion, BackupEntry, BackupList, BackupRestored, CreateBackup,
    DeleteBackup, ListBackups, Reply, RestoreBackup,
};
use tracing::debug;

use super::CommandResult;
use crate::panel::{BackupInfo, ControlPanel, PanelError, RestoreState, check_backup_name};

/// How long a create waits for the panel to finish the archive, and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct BackupWait {
    pub poll: Duration,
    /// Past this the command fails as retryable; the retry finds the backup still running and
    /// waits for it.
    pub limit: Duration,
}

impl Default for BackupWait {
    fn default() -> Self {
        // Under the controller's default command timeout (120 s), so the agent answers first.
        BackupWait {
            poll: Duration::from_secs(2),
            limit: Duration::from_secs(100),
        }
    }
}

pub(super) async fn create_backup(
    panel: &dyn ControlPanel,
    wait: BackupWait,
    c: CreateBackup,
) -> CommandResult {
    let before = panel.list_backups(&c.username).await?;
    let finished: HashSet<ArchiveKey> = before.iter().filter(|b| b.ready).map(key).collect();
    // Panels with one archive per account (cPanel's cpmove file, DirectAdmin's admin backup)
    // rewrite it in place: a run seen going on and then gone means the archive is new even
    // when its name and (unreported) date are the old ones.
    let mut saw_running = before.iter().any(|b| !b.ready);
    if saw_running {
        debug!(username = %c.username, "a backup is already running; waiting for it");
    } else {
        panel.start_backup(&c.username).await?;
    }
    let deadline = tokio::time::Instant::now() + wait.limit;
    loop {
        let now = panel.list_backups(&c.username).await?;
        let running = now.iter().any(|b| !b.ready);
        saw_running |= running;
        let done = newest_new_archive(&now, &finished).or_else(|| {
            (saw_running && !running)
                .then(|| newest_archive(&now))
                .flatten()
        });
        if let Some(done) = done {
            debug!(username = %c.username, backup = %done.name, "backup written");
            return Ok(Reply::BackupCreated(BackupCreated {
                location: done.name,
                size_bytes: done.size_bytes.unwrap_or(0),
            }));
        }
        if tokio::time::Instant::now() + wait.poll > deadline {
            return Err(PanelError::retryable(
                "create_backup",
                "the panel is still writing the backup",
            )
            .into());
        }
        tokio::time::sleep(wait.poll).await;
    }
}

/// What tells two archives apart: a panel that rewrites an archive under the same name gives
/// it a new date (where it reports one).
type ArchiveKey = (String, Option<i64>);

fn key(b: &BackupInfo) -> ArchiveKey {
    (b.name.clone(), b.created_at)
}

/// The most recent finished archive that was not there before the backup started.
fn newest_new_archive(list: &[BackupInfo], before: &HashSet<ArchiveKey>) -> Option<BackupInfo> {
    list.iter()
        .filter(|b| b.ready && !before.contains(&key(b)))
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)))
        .cloned()
}

/// The most recent finished archive.
fn newest_archive(list: &[BackupInfo]) -> Option<BackupInfo> {
    list.iter()
        .filter(|b| b.ready)
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)))
        .cloned()
}

pub(super) async fn list_backups(panel: &dyn ControlPanel, c: ListBackups) -> CommandResult {
    let backups = panel
        .list_backups(&c.username)
        .await?
        .into_iter()
        .filter(|b| b.ready)
        .map(|b| BackupEntry {
            location: b.name,
            size_bytes: b.size_bytes.unwrap_or(0),
            created_at: b.created_at,
        })
        .collect();
    Ok(Reply::Backups(BackupList { backups }))
}

pub(super) async fn delete_backup(panel: &dyn ControlPanel, c: DeleteBackup) -> CommandResult {
    check_backup_name("delete_backup", &c.location)?;
    let deleted = panel.delete_backup(&c.username, &c.location).await?;
    debug!(username = %c.username, backup = %c.location, deleted, "backup delete done");
    Ok(Reply::BackupDeleted(if deleted {
        BackupDeletion::Deleted
    } else {
        BackupDeletion::NotFound
    }))
}

const RESTORE: &str = "restore_backup";

pub(super) async fn restore_backup(
    panel: &dyn ControlPanel,
    wait: BackupWait,
    c: RestoreBackup,
) -> CommandResult {
    check_backup_name(RESTORE, &c.location)?;
    match panel.restore_state(&c.username).await? {
        RestoreState::Running { archive } if archive == c.location => {
            debug!(username = %c.username, "a restore is already running; waiting for it");
        }
        RestoreState::Running { .. } => {
            return Err(PanelError::conflict(
                RESTORE,
                format!(
                    "a restore of {} from another archive is running",
                    c.username
                ),
            )
            .into());
        }
        state => {
            if panel.get_account(&c.username).await?.is_some() {
                if matches!(&state, RestoreState::Finished { archive } if *archive == c.location) {
                    return Ok(restored(c.username));
                }
                return Err(PanelError::conflict(
                    RESTORE,
                    format!(
                        "the account {} exists; an archive is restored only over a removed account",
                        c.username
                    ),
                )
                .into());
            }
            let archives = panel.list_backups(&c.username).await?;
            if !archives.iter().any(|b| b.ready && b.name == c.location) {
                return Err(PanelError::not_found(
                    RESTORE,
                    format!("no archive {} of {}", c.location, c.username),
                )
                .into());
            }
            panel.start_restore(&c.username, &c.location).await?;
        }
    }
    let deadline = tokio::time::Instant::now() + wait.limit;
    loop {
        match panel.restore_state(&c.username).await? {
            RestoreState::Finished { archive }
                if archive == c.location && panel.get_account(&c.username).await?.is_some() =>
            {
                debug!(username = %c.username, backup = %c.location, "account restored");
                return Ok(restored(c.username));
            }
            RestoreState::Failed { archive, message } if archive == c.location => {
                return Err(PanelError::permanent(RESTORE, message).into());
            }
            _ => {}
        }
        if tokio::time::Instant::now() + wait.poll > deadline {
            return Err(
                PanelError::retryable(RESTORE, "the panel is still restoring the account").into(),
            );
        }
        tokio::time::sleep(wait.poll).await;
    }
}

fn restored(username: String) -> Reply {
    Reply::BackupRestored(BackupRestored { username })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(name: &str, at: i64, ready: bool) -> BackupInfo {
        BackupInfo {
            name: name.into(),
            size_bytes: Some(1),
            created_at: Some(at),
            ready,
        }
    }

    #[test]
    fn the_new_archive_is_the_newest_finished_one_not_seen_before() {
        let before: HashSet<ArchiveKey> = [("old.tar.gz".to_owned(), Some(300))].into();
        let list = vec![
            archive("old.tar.gz", 300, true),
            archive("running.tar.gz", 400, false),
            archive("new.tar.gz", 200, true),
        ];
        assert_eq!(
            newest_new_archive(&list, &before).map(|b| b.name),
            Some("new.tar.gz".into())
        );
        let only_running = vec![archive("running.tar.gz", 400, false)];
        assert_eq!(newest_new_archive(&only_running, &before), None);
        // Rewritten in place under the same name, with a new date: new.
        let rewritten = vec![archive("old.tar.gz", 500, true)];
        assert_eq!(
            newest_new_archive(&rewritten, &before).map(|b| b.created_at),
            Some(Some(500))
        );
        assert_eq!(
            newest_archive(&rewritten).map(|b| b.name),
            Some("old.tar.gz".into())
        );
    }
}
