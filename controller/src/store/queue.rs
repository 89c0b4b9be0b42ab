//! The durable task queue: claiming a runnable task with a lease, recording step results under
//! that lease, and finishing, retrying or failing it.
//!
//! A task is runnable when it is `pending` and due, or `processing` with an expired lease (its
//! holder died). Claiming is one statement: PostgreSQL picks the row with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on or take the same row; SQLite
//! runs it inside `BEGIN IMMEDIATE`, which serialises writers. Every later write names the holder
//! and is refused with `StoreError::LeaseLost` once another worker has taken the task over, so a
//! worker that stalled past its lease cannot overwrite its successor's progress.

use async_trait::async_trait;
use mpanel_common::ids::TaskId;

use super::{StepRecord, StoreResult, Task};

#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Claims the next runnable task for `holder` until `now + lease_ms`, counting an attempt.
    async fn claim_next_task(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Task>>;
    /// Extends the lease; `LeaseLost` if the task is no longer ours.
    async fn renew_lease(&self, task: TaskId, holder: &str, lease_ms: i64) -> StoreResult<()>;
    /// Stores one step's outcome (replacing an earlier record of the same step).
    async fn record_step(&self, task: TaskId, holder: &str, record: &StepRecord)
    -> StoreResult<()>;
    /// `processing` → `completed`.
    async fn complete_task(&self, task: TaskId, holder: &str) -> StoreResult<()>;
    /// `processing` → `pending`, due again at `next_attempt_at`, keeping the error and the
    /// reason it waits (for example "no eligible server") visible.
    async fn release_for_retry(
        &self,
        task: TaskId,
        holder: &str,
        error: &str,
        next_attempt_at: i64,
    ) -> StoreResult<()>;
    /// `processing` → `failed` after the last attempt.
    async fn fail_task(&self, task: TaskId, holder: &str, error: &str) -> StoreResult<()>;
    /// `failed` → `pending` with a fresh attempt budget (an admin's retry).
    async fn requeue_failed_task(&self, task: TaskId) -> StoreResult<Task>;
    /// When the earliest pending task falls due, so an idle worker knows how long to sleep.
    async fn next_due_at(&self) -> StoreResult<Option<i64>>;
}

macro_rules! impl_task_queue {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::TaskId;
            use sqlx::types::Json;
            use $crate::store::queue::TaskQueue;
            use $crate::store::{StepRecord, StoreError, StoreResult, Task, TaskResult, now_ms};

            /// A write that must find the task in `processing` under this holder.
            fn held(rows: u64, task: TaskId) -> StoreResult<()> {
                if rows == 0 { Err(StoreError::LeaseLost(task)) } else { Ok(()) }
            }

            #[async_trait]
            impl TaskQueue for $store {
                async fn claim_next_task(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Task>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let task = sqlx::query_as::<_, Task>(<$store>::CLAIM_TASK_SQL)
                        .bind(holder)
                        .bind(now)
                        .bind(now + lease_ms)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(task)
                }

                async fn renew_lease(&self, task: TaskId, holder: &str, lease_ms: i64) -> StoreResult<()> {
                    let now = now_ms();
                    let rows = sqlx::query(
                        "UPDATE provisioning_tasks SET lease_expires_at = $3, updated_at = $4
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'",
                    )
                    .bind(task.get())
                    .bind(holder)
                    .bind(now + lease_ms)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    held(rows, task)
                }

                async fn record_step(&self, task: TaskId, holder: &str, record: &StepRecord) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let current: Option<Json<TaskResult>> = sqlx::query_scalar(
                        "SELECT result FROM provisioning_tasks
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'",
                    )
                    .bind(task.get())
                    .bind(holder)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(Json(mut result)) = current else {
                        return Err(StoreError::LeaseLost(task));
                    };
                    match result.steps.iter_mut().find(|s| s.step == record.step) {
                        Some(existing) => *existing = record.clone(),
                        None => result.steps.push(record.clone()),
                    }
                    sqlx::query("UPDATE provisioning_tasks SET result = $2, updated_at = $3 WHERE id = $1")
                        .bind(task.get())
                        .bind(Json(&result))
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn complete_task(&self, task: TaskId, holder: &str) -> StoreResult<()> {
                    let now = now_ms();
                    let rows = sqlx::query(
                        "UPDATE provisioning_tasks SET status = 'completed', completed_at = $3,
                             updated_at = $3, error = NULL, wait_reason = NULL,
                             lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'",
                    )
                    .bind(task.get())
                    .bind(holder)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    held(rows, task)
                }

                async fn release_for_retry(
                    &self,
                    task: TaskId,
                    holder: &str,
                    error: &str,
                    next_attempt_at: i64,
                ) -> StoreResult<()> {
                    let rows = sqlx::query(
                        "UPDATE provisioning_tasks SET status = 'pending', error = $3, wait_reason = $3,
                             next_attempt_at = $4, updated_at = $5,
                             lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'",
                    )
                    .bind(task.get())
                    .bind(holder)
                    .bind(error)
                    .bind(next_attempt_at)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    held(rows, task)
                }

                async fn fail_task(&self, task: TaskId, holder: &str, error: &str) -> StoreResult<()> {
                    let now = now_ms();
                    let rows = sqlx::query(
                        "UPDATE provisioning_tasks SET status = 'failed', error = $3, completed_at = $4,
                             updated_at = $4, lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'",
                    )
                    .bind(task.get())
                    .bind(holder)
                    .bind(error)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    held(rows, task)
                }

                async fn requeue_failed_task(&self, task: TaskId) -> StoreResult<Task> {
                    let now = now_ms();
                    sqlx::query_as::<_, Task>(
                        "UPDATE provisioning_tasks SET status = 'pending', attempts = 0,
                             next_attempt_at = $2, updated_at = $2, completed_at = NULL,
                             cleared_at = NULL, wait_reason = NULL
                         WHERE id = $1 AND status = 'failed'
                         RETURNING *",
                    )
                    .bind(task.get())
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "the service already has an open task"))?
                    .ok_or_else(|| StoreError::Conflict(format!("task {task} is not failed, or does not exist")))
                }

                async fn next_due_at(&self) -> StoreResult<Option<i64>> {
                    Ok(sqlx::query_scalar(
                        "SELECT MIN(next_attempt_at) FROM provisioning_tasks WHERE status = 'pending'",
                    )
                    .fetch_one(&self.pool)
                    .await?)
                }
            }
        };
    };
}

pub(crate) use impl_task_queue;
