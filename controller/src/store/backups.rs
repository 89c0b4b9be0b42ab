//! Rows of `backups`: one account backup taken through a server's agent, from `pending` to
//! `completed` (with where the panel keeps it and its size) or `failed`, and to `deleted` once
//! the cleanup job has removed the archive from the panel. `impl_backup_store!` instantiates
//! the SQL for both backends like every store module: portable SQL, `$n` placeholders, times
//! as BIGINT milliseconds.

use async_trait::async_trait;
use mpanel_common::ids::{ServerId, ServiceId};

use super::StoreResult;

/// One backup as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRow {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub service_id: ServiceId,
    pub server_id: Option<i64>,
    /// The panel's name for the archive; empty while pending.
    pub location: String,
    pub size_bytes: i64,
    /// `pending`, `completed`, `failed` or `deleted`.
    pub status: String,
    /// Why it was taken: `manual`, `scheduled` or `final` (see [`BackupPurpose`]).
    pub purpose: String,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupPurpose {
    /// An admin asked for it.
    Manual,
    /// The product's backup schedule (the `backups` job).
    Scheduled,
    /// Taken before the account was terminated, so it can be restored.
    Final,
}

impl BackupPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            BackupPurpose::Manual => "manual",
            BackupPurpose::Scheduled => "scheduled",
            BackupPurpose::Final => "final",
        }
    }
}

/// How far apart a product's scheduled backups are, in milliseconds, by its `backup_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleIntervals {
    pub daily: i64,
    pub weekly: i64,
    pub monthly: i64,
}

#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Records a backup being taken on `server_id` at `created_at`.
    async fn record_backup_pending(
        &self,
        service_id: ServiceId,
        server_id: ServerId,
        purpose: BackupPurpose,
        created_at: i64,
    ) -> StoreResult<BackupRow>;
    /// A pending backup became the archive `location` of `size_bytes`. Older completed rows of
    /// the service on the same server naming the same archive are marked `deleted` in the same
    /// transaction: the panel wrote the new archive over theirs.
    async fn complete_backup(
        &self,
        id: i64,
        location: &str,
        size_bytes: u64,
    ) -> StoreResult<BackupRow>;
    /// A pending backup could not be taken.
    async fn fail_backup(&self, id: i64) -> StoreResult<BackupRow>;
    /// Completed backups created before `created_before`, oldest first, after the row
    /// `after_id` in that order's id tie-break (for paging); at most `limit`.
    async fn expired_backups(
        &self,
        created_before: i64,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<BackupRow>>;
    /// Marks a completed backup deleted at `now`; false when it was not completed (already
    /// deleted, or never finished), so a repeated cleanup changes nothing.
    async fn mark_backup_deleted(&self, id: i64, now: i64) -> StoreResult<bool>;
    /// A service's backups, newest first.
    async fn service_backups(&self, service_id: ServiceId) -> StoreResult<Vec<BackupRow>>;
    async fn get_backup(&self, id: i64) -> StoreResult<BackupRow>;
    /// The service's newest completed `final` backup taken at or after `since` (a terminate
    /// task's retry finds the one its earlier attempt took).
    async fn final_backup_since(
        &self,
        service_id: ServiceId,
        since: i64,
    ) -> StoreResult<Option<BackupRow>>;
    /// Live placed services whose product has a backup schedule and that have no backup
    /// (completed, or pending and taken within `pending_window` ms) newer than the schedule's
    /// interval back from `now`; ids after `after`, ascending, at most `limit`.
    async fn services_due_backup(
        &self,
        now: i64,
        intervals: ScheduleIntervals,
        pending_window: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<ServiceId>>;
}

macro_rules! impl_backup_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::{ServerId, ServiceId};
            use $crate::store::backups::{BackupPurpose, BackupRow, BackupStore, ScheduleIntervals};
            use $crate::store::{StoreError, StoreResult};

            macro_rules! columns {
                () => {
                    "id, service_id, server_id, location, size_bytes, status, purpose, created_at, deleted_at"
                };
            }

            #[async_trait]
            impl BackupStore for $store {
                async fn record_backup_pending(
                    &self,
                    service_id: ServiceId,
                    server_id: ServerId,
                    purpose: BackupPurpose,
                    created_at: i64,
                ) -> StoreResult<BackupRow> {
                    sqlx::query_as::<_, BackupRow>(concat!(
                        "INSERT INTO backups (service_id, server_id, location, size_bytes,
                             status, purpose, created_at)
                         VALUES ($1, $2, '', 0, 'pending', $3, $4)
                         RETURNING ",
                        columns!()
                    ))
                    .bind(service_id.get())
                    .bind(server_id.get())
                    .bind(purpose.as_str())
                    .bind(created_at)
                    .fetch_one(self.writer())
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "no such service or server"))
                }

                async fn complete_backup(
                    &self,
                    id: i64,
                    location: &str,
                    size_bytes: u64,
                ) -> StoreResult<BackupRow> {
                    let mut tx = self.begin_write().await?;
                    let row = sqlx::query_as::<_, BackupRow>(concat!(
                        "UPDATE backups SET status = 'completed', location = $2, size_bytes = $3
                         WHERE id = $1 AND status = 'pending'
                         RETURNING ",
                        columns!()
                    ))
                    .bind(id)
                    .bind(location)
                    .bind(i64::try_from(size_bytes).unwrap_or(i64::MAX))
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("pending backup", id))?;
                    // A panel that keeps one archive per account (cPanel's cpmove file) wrote
                    // this one over the older ones of the same name: those rows no longer have
                    // a file of their own, and deleting "theirs" would delete this one.
                    sqlx::query(
                        "UPDATE backups SET status = 'deleted', deleted_at = $5
                         WHERE service_id = $1 AND server_id = $2 AND location = $3
                           AND status = 'completed' AND id <> $4",
                    )
                    .bind(row.service_id.get())
                    .bind(row.server_id)
                    .bind(location)
                    .bind(id)
                    .bind($crate::store::now_ms())
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(row)
                }

                async fn fail_backup(&self, id: i64) -> StoreResult<BackupRow> {
                    sqlx::query_as::<_, BackupRow>(concat!(
                        "UPDATE backups SET status = 'failed'
                         WHERE id = $1 AND status = 'pending'
                         RETURNING ",
                        columns!()
                    ))
                    .bind(id)
                    .fetch_optional(self.writer())
                    .await?
                    .ok_or_else(|| StoreError::not_found("pending backup", id))
                }

                async fn expired_backups(
                    &self,
                    created_before: i64,
                    after: Option<(i64, i64)>,
                    limit: i64,
                ) -> StoreResult<Vec<BackupRow>> {
                    let (after_created, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
                    Ok(sqlx::query_as::<_, BackupRow>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM backups
                         WHERE status = 'completed' AND created_at < $1
                           AND (created_at > $2 OR (created_at = $2 AND id > $3))
                         ORDER BY created_at, id
                         LIMIT $4"
                    ))
                    .bind(created_before)
                    .bind(after_created)
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn mark_backup_deleted(&self, id: i64, now: i64) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE backups SET status = 'deleted', deleted_at = $2
                         WHERE id = $1 AND status = 'completed'",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn service_backups(
                    &self,
                    service_id: ServiceId,
                ) -> StoreResult<Vec<BackupRow>> {
                    Ok(sqlx::query_as::<_, BackupRow>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM backups WHERE service_id = $1 ORDER BY created_at DESC, id DESC"
                    ))
                    .bind(service_id.get())
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn get_backup(&self, id: i64) -> StoreResult<BackupRow> {
                    sqlx::query_as::<_, BackupRow>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM backups WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::not_found("backup", id))
                }

                async fn final_backup_since(
                    &self,
                    service_id: ServiceId,
                    since: i64,
                ) -> StoreResult<Option<BackupRow>> {
                    Ok(sqlx::query_as::<_, BackupRow>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM backups
                         WHERE service_id = $1 AND purpose = 'final' AND status = 'completed'
                           AND created_at >= $2
                         ORDER BY created_at DESC, id DESC LIMIT 1"
                    ))
                    .bind(service_id.get())
                    .bind(since)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn services_due_backup(
                    &self,
                    now: i64,
                    intervals: ScheduleIntervals,
                    pending_window: i64,
                    after: i64,
                    limit: i64,
                ) -> StoreResult<Vec<ServiceId>> {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "SELECT s.id FROM services s JOIN products p ON p.id = s.product_id
                         WHERE s.status IN ('active', 'suspended') AND s.server_id IS NOT NULL
                           AND s.username IS NOT NULL AND p.backup_schedule <> 'none' AND s.id > $1
                           AND NOT EXISTS (
                               SELECT 1 FROM backups b
                               WHERE b.service_id = s.id
                                 AND b.created_at > $2 - CASE p.backup_schedule
                                         WHEN 'daily' THEN $3 WHEN 'weekly' THEN $4 ELSE $5 END
                                 AND (b.status = 'completed'
                                      OR (b.status = 'pending' AND b.created_at > $2 - $6)))
                         ORDER BY s.id LIMIT $7",
                    )
                    .bind(after)
                    .bind(now)
                    .bind(intervals.daily)
                    .bind(intervals.weekly)
                    .bind(intervals.monthly)
                    .bind(pending_window)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(ids.into_iter().map(ServiceId::new).collect())
                }
            }
        };
    };
}

pub(crate) use impl_backup_store;
