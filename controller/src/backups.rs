//! Account backups: taking one through the service's server agent (recorded `pending`, then
//! `completed` with the panel's location and size, or `failed`), the `backups` job that takes
//! them on each product's schedule, and the retention sweep behind the `backup-cleanup` job.
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

use futures::StreamExt;
use mpanel_common::command::{BackupDeletion, CreateBackup, DeleteBackup};
use mpanel_common::ids::{ServerId, ServiceId};
use serde::Serialize;
use tracing::{info, warn};

use crate::fleet::{CommandError, Fleet};
use crate::store::{BackupPurpose, BackupRow, DynStore, ScheduleIntervals, StoreError};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Rows read per page of the sweep and of the schedule.
const PAGE: i64 = 200;
/// Scheduled backups taken at once (they run on the panels, a few per server at most).
const SCHEDULED_AT_ONCE: usize = 8;
/// A scheduled backup is due once the newest one is older than the schedule's interval less
/// this slack, so a run that starts a little earlier than the one before still takes it.
const SCHEDULE_SLACK_MS: i64 = HOUR_MS;
/// A pending backup older than this is taken to have died with its controller; it no longer
/// stands in for the scheduled one.
const PENDING_WINDOW_MS: i64 = DAY_MS;

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

/// What one run of the `backups` job did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSummary {
    pub due: u64,
    pub taken: u64,
    pub failed: u64,
    /// Why backups failed, with how many each.
    pub failures: BTreeMap<String, u64>,
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

    /// Takes a backup of the service's account now, through its server's agent (an admin's).
    pub async fn take(&self, service_id: ServiceId, now: i64) -> Result<BackupRow, BackupError> {
        take_backup(
            &self.store,
            &self.fleet,
            service_id,
            BackupPurpose::Manual,
            None,
            self.command_timeout,
            now,
        )
        .await
    }

    /// Takes the backups the products' schedules call for at `now` (the `backups` job): one
    /// per live service whose newest backup is older than its product's interval. A failed one
    /// is recorded `failed` and taken again on the next run.
    pub async fn run_scheduled(&self, now: i64) -> Result<ScheduledSummary, StoreError> {
        let intervals = ScheduleIntervals {
            daily: DAY_MS - SCHEDULE_SLACK_MS,
            weekly: 7 * DAY_MS - SCHEDULE_SLACK_MS,
            monthly: 30 * DAY_MS - SCHEDULE_SLACK_MS,
        };
        let mut summary = ScheduledSummary::default();
        let mut after = 0;
        loop {
            let due = self
                .store
                .services_due_backup(now, intervals, PENDING_WINDOW_MS, after, PAGE)
                .await?;
            let Some(last) = due.last() else { break };
            after = last.get();
            summary.due += due.len() as u64;
            let mut results = futures::stream::iter(due)
                .map(|service| async move {
                    take_backup(
                        &self.store,
                        &self.fleet,
                        service,
                        BackupPurpose::Scheduled,
                        None,
                        self.command_timeout,
                        now,
                    )
                    .await
                })
                .buffer_unordered(SCHEDULED_AT_ONCE);
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) => summary.taken += 1,
                    Err(BackupError::Store(e)) => return Err(e),
                    Err(e) => {
                        summary.failed += 1;
                        *summary.failures.entry(short_reason(&e)).or_default() += 1;
                    }
                }
            }
        }
        info!(
            due = summary.due,
            taken = summary.taken,
            failed = summary.failed,
            "scheduled backups done"
        );
        Ok(summary)
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
                CommandError::Failed { class, .. } => format!("delete failed ({class})"),
                other => agent_reason(&other),
            })
    }
}

/// Takes a backup of the service's account through its server's agent: the row is recorded
/// `pending` first, then `completed` or `failed` with the agent's answer. `key` is the agent's
/// idempotency key (a terminate task's, so its retry finds the archive its earlier attempt
/// started); by default the row's own.
pub(crate) async fn take_backup(
    store: &DynStore,
    fleet: &Fleet,
    service_id: ServiceId,
    purpose: BackupPurpose,
    key: Option<String>,
    timeout: Duration,
    now: i64,
) -> Result<BackupRow, BackupError> {
    let service = store.get_service(service_id).await?;
    let (Some(server_id), Some(username)) = (service.server_id, service.username.clone()) else {
        return Err(BackupError::NotPlaced);
    };
    let server_id = ServerId::new(server_id);
    let row = store
        .record_backup_pending(service_id, server_id, purpose, now)
        .await?;
    let key = key.unwrap_or_else(|| format!("backup-create-{}", row.id));
    match fleet
        .request(server_id, CreateBackup { username }, &key, timeout)
        .await
    {
        Ok(created) => {
            let row = store
                .complete_backup(row.id, &created.location, created.size_bytes)
                .await?;
            info!(
                service_id = service_id.get(),
                backup_id = row.id,
                purpose = purpose.as_str(),
                "backup taken"
            );
            Ok(row)
        }
        Err(error) => {
            store.fail_backup(row.id).await?;
            warn!(service_id = service_id.get(), backup_id = row.id, purpose = purpose.as_str(), %error, "backup failed");
            Err(error.into())
        }
    }
}

/// A short reason for a summary's tally.
fn short_reason(error: &BackupError) -> String {
    match error {
        BackupError::NotPlaced => "not placed".to_owned(),
        BackupError::Store(_) => "storage".to_owned(),
        BackupError::Agent(e) => agent_reason(e),
    }
}

fn agent_reason(error: &CommandError) -> String {
    match error {
        CommandError::Offline(_) => "agent offline".to_owned(),
        CommandError::Timeout(_) | CommandError::Disconnected(_) => {
            "agent did not answer".to_owned()
        }
        CommandError::Failed { class, .. } => format!("panel refused ({class})"),
        CommandError::Waiting(_) => "agent waiting".to_owned(),
        CommandError::BadReply { .. } => "agent reply unusable".to_owned(),
    }
}
