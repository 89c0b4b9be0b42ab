//! The provisioning task queue: what is particular to tasks. Claiming a runnable task, recording
//! step results under its lease, completing it together with the change to its service, failing
//! it with the service's error, and an admin's requeue. Renewal, release and next-due are the
//! statements every queue shares (`lease_queue`); the job runner (`crate::jobs`) drives both.

use async_trait::async_trait;
use mpanel_common::ids::{ServiceId, TaskId};
use mpanel_common::status::{ServiceStatus, TaskKind};

use super::lease_queue::Claimed;
use super::{StepRecord, StoreResult, Task};

/// What a finished task does to its service, applied in the task's completing transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    /// `pending` → `active`, `provisioned_at` set, `provisioning_error` cleared.
    Activate,
    Suspend {
        reason: String,
    },
    Unsuspend,
    Terminate,
    /// A terminated account is back from a backup: `active` again.
    Restore,
    /// The service moves to another product (a package change).
    ChangeProduct {
        product_id: mpanel_common::ids::ProductId,
    },
    /// The panel password changed; the new one, sealed.
    NewPassword {
        sealed: String,
    },
}

/// A task to queue for a service, with the state the service must be in; checked, written and
/// audited in one transaction by `TaskQueue::enqueue_checked`.
#[derive(Debug, Clone)]
pub struct CheckedEnqueue<'a> {
    pub service: ServiceId,
    pub kind: TaskKind,
    pub params: serde_json::Value,
    pub max_retries: i32,
    pub actor: &'a str,
    /// The statuses the service may be in.
    pub allowed_from: &'a [ServiceStatus],
    /// When set, the service's suspension reason must be this one (a payment lifts only an
    /// `overdue` suspension).
    pub suspension_reason: Option<&'a str>,
    /// Extra details for the activity row (never a secret).
    pub details: serde_json::Value,
}

/// Why `enqueue_checked` wrote nothing.
#[derive(Debug, Clone)]
pub enum EnqueueRefusal {
    /// The service is in a state the move is not allowed from.
    Status {
        status: ServiceStatus,
        suspension_reason: Option<String>,
    },
    /// The service already has an open task.
    TaskOpen(Box<Task>),
}

#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Claims the next runnable task for `holder` until `now + lease_ms`, counting an attempt.
    async fn claim_next_task(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Task>> {
        Ok(self.claim_task(holder, lease_ms).await?.map(|c| c.row))
    }
    /// [`Self::claim_next_task`], saying whether another task was runnable too.
    async fn claim_task(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<Task>>>;
    /// Stores one step's outcome (replacing an earlier record of the same step).
    async fn record_step(&self, task: TaskId, holder: &str, record: &StepRecord)
    -> StoreResult<()>;
    /// Checks the service's state and that it has no open task, then queues the task and its
    /// activity row, all in one transaction (the service row is locked meanwhile), so two
    /// requests racing for one service cannot both pass the check.
    async fn enqueue_checked(
        &self,
        req: &CheckedEnqueue<'_>,
    ) -> StoreResult<Result<Task, EnqueueRefusal>>;
    /// `pending` → `cancelled` for a service with no open task and no account on a server, with
    /// its activity row, in one transaction; the refusal says why not.
    async fn cancel_unprovisioned(
        &self,
        service: ServiceId,
        actor: &str,
    ) -> StoreResult<Result<(), EnqueueRefusal>>;
    /// `processing` → `completed`.
    async fn complete_task(&self, task: TaskId, holder: &str) -> StoreResult<()>;
    /// `processing` → `completed` and the service changed accordingly, in one transaction; an
    /// illegal status transition refuses both (`Conflict`).
    async fn complete_service_task(
        &self,
        task: TaskId,
        holder: &str,
        change: ServiceChange,
    ) -> StoreResult<()> {
        self.complete_service_task_recording(task, holder, change, None)
            .await
    }
    /// [`Self::complete_service_task`], storing the last step's record (as
    /// [`Self::record_step`] would) in the same write as the completion.
    async fn complete_service_task_recording(
        &self,
        task: TaskId,
        holder: &str,
        change: ServiceChange,
        last_step: Option<&StepRecord>,
    ) -> StoreResult<()>;
    /// `processing` → `failed` after the last attempt; the service keeps its status and shows
    /// the error in `provisioning_error`.
    async fn fail_task(&self, task: TaskId, holder: &str, error: &str) -> StoreResult<()>;
    /// `failed` → `pending` with a fresh attempt budget (an admin's retry), with its activity
    /// row.
    async fn requeue_failed_task(&self, task: TaskId, actor: &str) -> StoreResult<Task>;
}

/// The statement completing a task still held by `$2` at `$5`, storing with it the last step's
/// record (`$4`, of step `$3`) when one is given; `$($merged)*` is the backend's expression for
/// the task's `result` with that record merged in (see [`step_record_statements`]).
macro_rules! complete_task_sql {
    ($($merged:tt)*) => {
        concat!(
            "UPDATE provisioning_tasks SET status = 'completed', completed_at = $5,
                 updated_at = $5, error = NULL, wait_reason = NULL,
                 lease_holder = NULL, lease_expires_at = NULL,
                 result = CASE WHEN CAST($3 AS TEXT) IS NULL THEN result ELSE ",
            $($merged)*,
            " END
             WHERE id = $1 AND lease_holder = $2 AND status = 'processing'
             RETURNING service_id, task_type"
        )
    };
}

pub(crate) use complete_task_sql;

/// A task's step-record statements, around the backend's expression for the task's `result`
/// with the record `$4` (of step `$3`) merged in: replacing an earlier record of that step in
/// place, or appended.
macro_rules! step_record_statements {
    ($($merged:tt)*) => {
        /// Stores one step record of a task still held by `$2`. One statement, fenced by the
        /// holder.
        pub(crate) const RECORD_STEP_SQL: &'static str = concat!(
            "UPDATE provisioning_tasks SET result = ",
            $($merged)*,
            ", updated_at = $5
             WHERE id = $1 AND lease_holder = $2 AND status = 'processing'"
        );

        /// Completes a task still held by `$2` (see [`complete_task_sql`]).
        pub(crate) const COMPLETE_TASK_SQL: &'static str =
            $crate::store::queue::complete_task_sql!($($merged)*);
    };
}

pub(crate) use step_record_statements;

/// PostgreSQL's completion ([`complete_task_sql`]) and the read of the task's service, locked
/// for the rest of the transaction, in one statement: a row of [`CompletedService`], none when
/// the task is no longer held. The task row is locked before the service row, as when they are
/// two statements.
macro_rules! complete_task_locking_service_sql {
    ($($merged:tt)*) => {
        concat!(
            "WITH done AS (",
            $crate::store::queue::complete_task_sql!($($merged)*),
            ") SELECT s.*, done.task_type AS completed_task_type
             FROM done JOIN services s ON s.id = done.service_id
             FOR UPDATE OF s"
        )
    };
}

pub(crate) use complete_task_locking_service_sql;

/// A completed task's service as it was before the completion changed it, and the task's kind.
#[derive(sqlx::FromRow)]
pub(crate) struct CompletedService {
    #[sqlx(flatten)]
    pub(crate) service: super::Service,
    pub(crate) completed_task_type: String,
}

macro_rules! impl_task_queue {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::TaskId;
            use sqlx::types::Json;
            use mpanel_common::ids::ServiceId;
            use mpanel_common::status::ServiceStatus;
            use $crate::store::queue::{CheckedEnqueue, EnqueueRefusal, ServiceChange, TaskQueue};
            use $crate::store::lease_queue::{Claimed, PROVISIONING};
            use $crate::store::{Change, StepRecord, StoreError, StoreResult, Task, TaskResult, now_ms};
            use $crate::store::activity::service_summary;

            /// A write that must find the task in `processing` under this holder.
            fn held(rows: u64, task: TaskId) -> StoreResult<()> {
                if rows == 0 { Err(lost(task)) } else { Ok(()) }
            }

            fn lost(task: TaskId) -> StoreError {
                StoreError::lease_lost(format_args!("task {task}"))
            }

            /// The service's status and suspension reason, its row locked (PostgreSQL) until the
            /// transaction ends; SQLite's `BEGIN IMMEDIATE` already holds the write lock.
            async fn lock_service(
                tx: &mut sqlx::Transaction<'static, $db>,
                service: ServiceId,
            ) -> StoreResult<Option<(ServiceStatus, Option<String>)>> {
                let row: Option<(String, Option<String>)> =
                    sqlx::query_as(<$store>::LOCK_SERVICE_SQL)
                        .bind(service.get())
                        .fetch_optional(&mut **tx)
                        .await?;
                row.map(|(status, reason)| {
                    status
                        .parse::<ServiceStatus>()
                        .map(|s| (s, reason))
                        .map_err(|e| StoreError::Corrupt(format!("service {service}: {e}")))
                })
                .transpose()
            }

            /// The whole service row, locked like `lock_service`.
            async fn service_row(
                tx: &mut sqlx::Transaction<'static, $db>,
                service: i64,
            ) -> StoreResult<$crate::store::Service> {
                sqlx::query_as::<_, $crate::store::Service>(sqlx::AssertSqlSafe(format!(
                    "SELECT * FROM services WHERE id = $1{}",
                    <$store>::FOR_UPDATE
                )))
                .bind(service)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::not_found("service", service))
            }

            /// A completion statement (`COMPLETE_TASK_SQL` or the backend's form of it that also
            /// reads the service) with its parameters bound.
            fn completion<'q, O>(
                sql: &'static str,
                task: TaskId,
                holder: &'q str,
                last_step: Option<&'q StepRecord>,
                now: i64,
            ) -> sqlx::query::QueryAs<'q, $db, O, <$db as sqlx::Database>::Arguments>
            where
                O: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row>,
            {
                sqlx::query_as(sql)
                    .bind(task.get())
                    .bind(holder)
                    .bind(last_step.map(|r| r.step.as_str()))
                    .bind(last_step.map(Json))
                    .bind(now)
            }

            /// The activity a completed task's change is logged as.
            fn completion_action(change: &ServiceChange) -> &'static str {
                match change {
                    ServiceChange::Activate => "service.activated",
                    ServiceChange::Suspend { .. } => "service.suspended",
                    ServiceChange::Unsuspend => "service.unsuspended",
                    ServiceChange::Terminate => "service.terminated",
                    ServiceChange::Restore => "service.restored",
                    ServiceChange::ChangeProduct { .. } => "service.product_changed",
                    ServiceChange::NewPassword { .. } => "service.password_changed",
                }
            }

            async fn open_task(
                tx: &mut sqlx::Transaction<'static, $db>,
                service: ServiceId,
            ) -> StoreResult<Option<Task>> {
                Ok(sqlx::query_as::<_, Task>(
                    "SELECT * FROM provisioning_tasks
                     WHERE service_id = $1 AND status IN ('pending', 'processing')",
                )
                .bind(service.get())
                .fetch_optional(&mut **tx)
                .await?)
            }

            #[async_trait]
            impl TaskQueue for $store {
                async fn claim_task(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<Task>>> {
                    let now = now_ms();
                    let row = sqlx::query(sqlx::AssertSqlSafe(PROVISIONING.claim_sql(<$store>::BACKEND)))
                        .bind(holder)
                        .bind(now)
                        .bind(now + lease_ms)
                        .fetch_optional(self.writer())
                        .await?;
                    Ok(row.as_ref().map(Claimed::from_row).transpose()?)
                }

                async fn record_step(&self, task: TaskId, holder: &str, record: &StepRecord) -> StoreResult<()> {
                    let rows = sqlx::query(<$store>::RECORD_STEP_SQL)
                        .bind(task.get())
                        .bind(holder)
                        .bind(record.step.as_str())
                        .bind(Json(record))
                        .bind(now_ms())
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    held(rows, task)
                }

                async fn enqueue_checked(
                    &self,
                    req: &CheckedEnqueue<'_>,
                ) -> StoreResult<Result<Task, EnqueueRefusal>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some((status, reason)) = lock_service(&mut tx, req.service).await? else {
                        return Err(StoreError::not_found("service", req.service));
                    };
                    if !req.allowed_from.contains(&status)
                        || req.suspension_reason.is_some_and(|r| reason.as_deref() != Some(r))
                    {
                        return Ok(Err(EnqueueRefusal::Status { status, suspension_reason: reason }));
                    }
                    if let Some(open) = open_task(&mut tx, req.service).await? {
                        return Ok(Err(EnqueueRefusal::TaskOpen(Box::new(open))));
                    }
                    let task = sqlx::query_as::<_, Task>(
                        "INSERT INTO provisioning_tasks (service_id, task_type, status, attempts,
                             max_retries, result, params, idempotency_key, next_attempt_at,
                             created_at, updated_at, request_id)
                         VALUES ($1, $2, 'pending', 0, $3, $4, $5, $6, $7, $7, $7, $8)
                         RETURNING *",
                    )
                    .bind(req.service.get())
                    .bind(req.kind.as_str())
                    .bind(req.max_retries)
                    .bind(Json(TaskResult::default()))
                    .bind(Json(&req.params))
                    .bind(format!("{}:service:{}:{}", req.kind.as_str(), req.service, uuid::Uuid::new_v4().simple()))
                    .bind(now)
                    .bind($crate::request_id::current())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, &format!("service {} already has an open task", req.service)))?;
                    let mut details = serde_json::json!({ "taskId": task.id.get() });
                    if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), &req.details) {
                        d.extend(extra.clone());
                    }
                    <$store>::record_activity(
                        &mut tx,
                        req.actor,
                        &format!("task.{}.queued", req.kind.as_str()),
                        "service",
                        req.service.get(),
                        details,
                        Change::updated(
                            serde_json::json!({ "openTask": null }),
                            serde_json::json!({ "openTask": { "id": task.id.get(), "kind": req.kind.as_str() } }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(Ok(task))
                }

                async fn cancel_unprovisioned(
                    &self,
                    service: ServiceId,
                    actor: &str,
                ) -> StoreResult<Result<(), EnqueueRefusal>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some((status, reason)) = lock_service(&mut tx, service).await? else {
                        return Err(StoreError::not_found("service", service));
                    };
                    if status != ServiceStatus::Pending {
                        return Ok(Err(EnqueueRefusal::Status { status, suspension_reason: reason }));
                    }
                    if let Some(open) = open_task(&mut tx, service).await? {
                        return Ok(Err(EnqueueRefusal::TaskOpen(Box::new(open))));
                    }
                    let rows = sqlx::query(
                        "UPDATE services SET status = 'cancelled', updated_at = $2
                         WHERE id = $1 AND status = 'pending' AND (server_id IS NULL OR username IS NULL)",
                    )
                    .bind(service.get())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if rows == 0 {
                        return Err(StoreError::Conflict(format!(
                            "service {service} may already have an account on its server; terminate it instead"
                        )));
                    }
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "service.cancelled",
                        "service",
                        service.get(),
                        serde_json::json!({}),
                        Change::updated(serde_json::json!({ "status": "pending" }), serde_json::json!({ "status": "cancelled" })),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(Ok(()))
                }

                async fn complete_service_task_recording(
                    &self,
                    task: TaskId,
                    holder: &str,
                    change: ServiceChange,
                    last_step: Option<&StepRecord>,
                ) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    // The task is completed first, fenced by the holder: a worker whose lease
                    // ran out changes nothing. Then its service is read, locked.
                    let (service_id, task_type, before) = match <$store>::COMPLETE_LOCKING_SERVICE_SQL {
                        Some(sql) => {
                            let held: Option<$crate::store::queue::CompletedService> =
                                completion(sql, task, holder, last_step, now)
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            let Some(held) = held else {
                                return Err(lost(task));
                            };
                            (held.service.id.get(), held.completed_task_type, held.service)
                        }
                        None => {
                            let held: Option<(i64, String)> =
                                completion(<$store>::COMPLETE_TASK_SQL, task, holder, last_step, now)
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            let Some((service_id, task_type)) = held else {
                                return Err(lost(task));
                            };
                            (service_id, task_type, service_row(&mut tx, service_id).await?)
                        }
                    };
                    let current = before.status;
                    let target = match &change {
                        ServiceChange::Activate => Some(ServiceStatus::Active),
                        ServiceChange::Suspend { .. } => Some(ServiceStatus::Suspended),
                        ServiceChange::Unsuspend => Some(ServiceStatus::Active),
                        ServiceChange::Terminate => Some(ServiceStatus::Terminated),
                        ServiceChange::Restore => Some(ServiceStatus::Active),
                        ServiceChange::ChangeProduct { .. } | ServiceChange::NewPassword { .. } => None,
                    };
                    match &change {
                        ServiceChange::ChangeProduct { product_id } => {
                            sqlx::query("UPDATE services SET product_id = $2 WHERE id = $1")
                                .bind(service_id)
                                .bind(product_id.get())
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| StoreError::on_constraint(e, "that product does not exist"))?;
                        }
                        ServiceChange::NewPassword { sealed } => {
                            sqlx::query("UPDATE services SET password_encrypted = $2 WHERE id = $1")
                                .bind(service_id)
                                .bind(sealed)
                                .execute(&mut *tx)
                                .await?;
                        }
                        _ => {}
                    }
                    // The row as it is now, from the write itself.
                    let after = if let Some(target) = target
                        && target != current
                    {
                        current.transition(target).map_err(|e| StoreError::Conflict(e.to_string()))?;
                        sqlx::query_as::<_, $crate::store::Service>(
                            "UPDATE services SET status = $2, updated_at = $3,
                                 provisioned_at = CASE WHEN $2 = 'active' AND provisioned_at IS NULL THEN $3 ELSE provisioned_at END,
                                 provisioning_error = NULL,
                                 suspended_at = CASE WHEN $2 = 'suspended' THEN $3 WHEN $2 = 'active' THEN NULL ELSE suspended_at END,
                                 suspension_reason = CASE WHEN $2 = 'suspended' THEN $4 WHEN $2 = 'active' THEN NULL ELSE suspension_reason END,
                                 terminated_at = CASE WHEN $2 = 'terminated' THEN $3 WHEN $2 = 'active' THEN NULL ELSE terminated_at END
                             WHERE id = $1
                             RETURNING *",
                        )
                        .bind(service_id)
                        .bind(target.as_str())
                        .bind(now)
                        .bind(match &change {
                            ServiceChange::Suspend { reason } => Some(reason.as_str()),
                            _ => None,
                        })
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| StoreError::on_constraint(e, "another live service holds its domain or its username on that server"))?
                    } else {
                        sqlx::query_as::<_, $crate::store::Service>(
                            "UPDATE services SET provisioning_error = NULL, updated_at = $2 WHERE id = $1 RETURNING *",
                        )
                        .bind(service_id)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?
                    };
                    let mut audit = Change::between(service_summary(&before), service_summary(&after));
                    if matches!(change, ServiceChange::NewPassword { .. }) {
                        // Only that it changed: the password is a secret.
                        for (side, word) in [(&mut audit.before, "previous"), (&mut audit.after, "new")] {
                            if let Some(serde_json::Value::Object(o)) = side {
                                o.insert("password".to_owned(), serde_json::Value::from(word));
                            }
                        }
                    }
                    <$store>::record_activity(
                        &mut tx,
                        "system",
                        completion_action(&change),
                        "service",
                        service_id,
                        serde_json::json!({ "taskId": task.get(), "task": task_type }),
                        audit,
                    )
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
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    held(rows, task)
                }

                async fn fail_task(&self, task: TaskId, holder: &str, error: &str) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let failed: Option<(i64, String)> = sqlx::query_as(
                        "UPDATE provisioning_tasks SET status = 'failed', error = $3, completed_at = $4,
                             updated_at = $4, lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'
                         RETURNING service_id, task_type",
                    )
                    .bind(task.get())
                    .bind(holder)
                    .bind(error)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((service_id, task_type)) = failed else {
                        return Err(lost(task));
                    };
                    let before = service_row(&mut tx, service_id).await?;
                    sqlx::query("UPDATE services SET provisioning_error = $2, updated_at = $3 WHERE id = $1")
                        .bind(service_id)
                        .bind(error)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    <$store>::record_activity(
                        &mut tx,
                        "system",
                        &format!("task.{task_type}.failed"),
                        "service",
                        service_id,
                        serde_json::json!({ "taskId": task.get() }),
                        Change::updated(
                            serde_json::json!({ "provisioningError": before.provisioning_error }),
                            serde_json::json!({ "provisioningError": error }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn requeue_failed_task(&self, task: TaskId, actor: &str) -> StoreResult<Task> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let requeued = sqlx::query_as::<_, Task>(
                        "UPDATE provisioning_tasks SET status = 'pending', attempts = 0,
                             next_attempt_at = $2, updated_at = $2, completed_at = NULL,
                             cleared_at = NULL, wait_reason = NULL
                         WHERE id = $1 AND status = 'failed'
                         RETURNING *",
                    )
                    .bind(task.get())
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "the service already has an open task"))?
                    .ok_or_else(|| StoreError::Conflict(format!("task {task} is not failed, or does not exist")))?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        &format!("task.{}.retried", requeued.task_type.as_str()),
                        "service",
                        requeued.service_id.get(),
                        serde_json::json!({ "taskId": task.get() }),
                        Change::updated(
                            serde_json::json!({ "openTask": null }),
                            serde_json::json!({ "openTask": { "id": task.get(), "kind": requeued.task_type.as_str() } }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(requeued)
                }

            }
        };
    };
}

pub(crate) use impl_task_queue;
