//! Account backups: taking one now through the service's server agent (recorded `pending`,
//! then `completed` with the panel's location and size, or `failed`), and the retention sweep
//! behind the `backup-cleanup` job.
//!
//! The sweep deletes on the panel first and marks the row `deleted` only after the agent said
//! the archive is gone (or was never there: `not_found` counts as deleted). An agent that is
//! offline or a delete that fails leaves the row `completed`, so the next run tries again; a
//! row marked without its file deleted would leak the file for good. Running the sweep twice
//! changes nothing the second time.
//!
//! This module owns the order of those steps. It does not own the SQL (`store::backups`) or
//! the panel calls (the agent's `create_backup` / `delete_backup`).

use std::collections::BTreeMap;
use std::time::Duration;

use mpanel_common::command::{BackupDeletion, CreateBackup, DeleteBackup};
use mpanel_common::ids::{ServerId, ServiceId};
use serde::Serialize;
use tracing::{info, warn};

use crate::fleet::{CommandError, Fleet};
use crate::store::{BackupRow, DynStore, StoreError};

const DAY_MS: i64 = 86_400_000;
/// Rows read per page of the sweep.
const PAGE: i64 = 200;

#[derive(Clone)]
pub struct Backups {
    store: DynStore,
    fleet: Fleet,
    retention_days: u32,
    command_timeout: Duration,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

/// Why a backup could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the service is not placed on a server with an account yet")]
    NotPlaced,
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Recorded as `failed`.
    #[error("the agent could not take the backup: {0}")]
    Agent(#[from] CommandError),
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupSummary {
    /// Completed backups created before this time (Unix ms) were due.
    pub cutoff: i64,
    pub expired: u64,
    /// Removed from the panel and marked deleted.
    pub deleted: u64,
    /// The panel no longer had the archive; marked deleted.
    pub already_gone: u64,
    /// Left for the next run.
    pub left: u64,
    /// Why rows were left, with how many each.
    pub left_reasons: BTreeMap<String, u64>,
}

impl Backups {
    pub fn new(
        store: DynStore,
        fleet: Fleet,
        retention_days: u32,
        command_timeout: Duration,
    ) -> Self {
        Backups {
            store,
            fleet,
            retention_days,
            command_timeout,
        }
    }

    /// Takes a backup of the service's account now, through its server's agent.
    pub async fn take(&self, service_id: ServiceId, now: i64) -> Result<BackupRow, BackupError> {
        let service = self.store.get_service(service_id).await?;
        let (Some(server_id), Some(username)) = (service.server_id, service.username.clone())
        else {
            return Err(BackupError::NotPlaced);
        };
        let server_id = ServerId::new(server_id);
        let row = self
            .store
            .record_backup_pending(service_id, server_id, now)
            .await?;
        let answer = self
            .fleet
            .request(
                server_id,
                CreateBackup { username },
                &format!("backup-create-{}", row.id),
                self.command_timeout,
            )
            .await;
        match answer {
            Ok(created) => {
                let row = self
                    .store
                    .complete_backup(row.id, &created.location, created.size_bytes)
                    .await?;
                info!(
                    service_id = service_id.get(),
                    backup_id = row.id,
                    "backup taken"
                );
                Ok(row)
            }
            Err(error) => {
                self.store.fail_backup(row.id).await?;
                warn!(service_id = service_id.get(), backup_id = row.id, %error, "backup failed");
                Err(error.into())
            }
        }
    }

    /// Deletes every completed backup older than the retention, panel first, row second.
    pub async fn cleanup(&self, now: i64) -> Result<CleanupSummary, StoreError> {
        let cutoff = now - i64::from(self.retention_days) * DAY_MS;
        let mut summary = CleanupSummary {
            cutoff,
            ..CleanupSummary::default()
        };
        let mut after = None;
        loop {
            let page = self.store.expired_backups(cutoff, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.id));
            for row in page {
                summary.expired += 1;
                match self.delete_on_panel(&row).await {
                    Ok(gone) => {
                        if self.store.mark_backup_deleted(row.id, now).await? {
                            match gone {
                                BackupDeletion::Deleted => summary.deleted += 1,
                                BackupDeletion::NotFound => summary.already_gone += 1,
                            }
                        }
                    }
                    Err(reason) => {
                        warn!(
                            backup_id = row.id,
                            reason, "backup left for the next cleanup"
                        );
                        summary.left += 1;
                        *summary.left_reasons.entry(reason).or_default() += 1;
                    }
                }
            }
        }
        info!(
            expired = summary.expired,
            deleted = summary.deleted,
            already_gone = summary.already_gone,
            left = summary.left,
            "backup cleanup done"
        );
        Ok(summary)
    }

    /// The agent's answer for one row, or why there is none (a short reason for the summary).
    async fn delete_on_panel(&self, row: &BackupRow) -> Result<BackupDeletion, String> {
        let service = self
            .store
            .get_service(row.service_id)
            .await
            .map_err(|e| format!("service unreadable: {e}"))?;
        let Some(server_id) = row.server_id.or(service.server_id) else {
            return Err("no server recorded".to_owned());
        };
        let Some(username) = service.username else {
            return Err("no account username".to_owned());
        };
        self.fleet
            .request(
                ServerId::new(server_id),
                DeleteBackup {
                    username,
                    location: row.location.clone(),
                },
                &format!("backup-delete-{}", row.id),
                self.command_timeout,
            )
            .await
            .map_err(|e| match e {
                CommandError::Offline(_) => "agent offline".to_owned(),
                CommandError::Timeout(_) | CommandError::Disconnected(_) => {
                    "agent did not answer".to_owned()
                }
                CommandError::Failed { class, .. } => format!("delete failed ({class})"),
                CommandError::Waiting(_) => "agent waiting".to_owned(),
                CommandError::BadReply { .. } => "agent reply unusable".to_owned(),
            })
    }
}
