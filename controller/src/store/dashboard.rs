//! Read models for the admin dashboard (fleet capacity, the queue by kind, billing at a glance,
//! live sessions) and the one change the dashboard makes that no API route makes: clearing a
//! single task from the failed list. Everything else the dashboard changes goes through the
//! same store, fleet and lifecycle calls as the API routes.
//!
//! The implementations for both backends are instantiated here, beside the trait, so the
//! module stays self-contained: portable SQL, `$n` placeholders, times as BIGINT milliseconds.

use std::collections::HashMap;

use async_trait::async_trait;
use mpanel_common::ids::TaskId;

use super::{StoreResult, Task};

/// Tasks of one kind in one state (pending, processing, or failed and not cleared).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskKindCount {
    pub kind: String,
    pub status: String,
    pub count: i64,
}

/// An unpaid invoice past its due date, with its customer's email.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OverdueInvoice {
    pub id: i64,
    pub number: String,
    pub customer_id: i64,
    pub customer_email: String,
    pub amount_minor: i64,
    pub amount_paid_minor: i64,
    pub currency: String,
    pub due_at: i64,
}

/// Payments of one currency and status since a moment.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PaymentTotal {
    pub currency: String,
    pub status: String,
    pub count: i64,
    pub amount_minor: i64,
}

/// A declined automatic charge, as its activity row recorded it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ChargeDecline {
    pub invoice_id: Option<i64>,
    pub number: Option<String>,
    pub details: sqlx::types::Json<serde_json::Value>,
    pub created_at: i64,
}

/// A service flagged by a chargeback.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DisputedService {
    pub id: i64,
    pub domain: String,
    pub status: String,
    pub dispute_ref: String,
    pub customer_email: String,
}

/// Billing at a glance, as of one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BillingGlance {
    pub overdue_count: i64,
    /// The longest overdue first.
    pub overdue: Vec<OverdueInvoice>,
    /// Payments since the start of the day, by currency and status.
    pub payments_today: Vec<PaymentTotal>,
    pub declines_today_count: i64,
    /// Newest first.
    pub declines_today: Vec<ChargeDecline>,
    pub disputed_count: i64,
    pub disputed: Vec<DisputedService>,
}

#[async_trait]
pub trait DashboardStore: Send + Sync {
    /// Live services (pending, active, suspended) per server id.
    async fn accounts_per_server(&self) -> StoreResult<HashMap<i64, i64>>;
    /// Tasks pending, processing, and failed not cleared, by kind.
    async fn task_counts_by_kind(&self) -> StoreResult<Vec<TaskKindCount>>;
    /// The domains of the services whose tasks the queue shows: open tasks, failed tasks not
    /// cleared, and tasks completed at or after `completed_since`.
    async fn queue_domains(&self, completed_since: i64) -> StoreResult<HashMap<i64, String>>;
    /// Completed tasks finished at or after `since`, newest first.
    async fn recently_completed_tasks(&self, since: i64, limit: i64) -> StoreResult<Vec<Task>>;
    /// Overdue invoices, today's payments and declines (since `day_start`), disputed services;
    /// lists cut at `limit`.
    async fn billing_glance(
        &self,
        now: i64,
        day_start: i64,
        limit: i64,
    ) -> StoreResult<BillingGlance>;
    /// The ids of admin sessions that are live now (not revoked, not expired, admin enabled).
    async fn live_admin_session_ids(&self, now: i64) -> StoreResult<Vec<i64>>;
    /// Takes one failed task off the failed list (it stays in history as failed), with its
    /// activity row. `Ok(Err(task))`, nothing written, when the task is not failed or already
    /// cleared; `NotFound` when there is no such task.
    async fn clear_failed_task(&self, task: TaskId, actor: &str)
    -> StoreResult<Result<Task, Task>>;
}

macro_rules! impl_dashboard_store {
    ($store:ty) => {
        const _: () = {
            use std::collections::HashMap;

            use async_trait::async_trait;
            use mpanel_common::ids::TaskId;
            use sqlx::AssertSqlSafe;
            use $crate::store::activity::instant;
            use $crate::store::dashboard::{
                BillingGlance, ChargeDecline, DashboardStore, DisputedService, OverdueInvoice,
                PaymentTotal, TaskKindCount,
            };
            use $crate::store::{Change, StoreError, StoreResult, Task, now_ms};

            #[async_trait]
            impl DashboardStore for $store {
                async fn accounts_per_server(&self) -> StoreResult<HashMap<i64, i64>> {
                    let rows = sqlx::query_as::<_, (i64, i64)>(
                        "SELECT server_id, COUNT(*) FROM services
                         WHERE server_id IS NOT NULL AND status IN ('pending', 'active', 'suspended')
                         GROUP BY server_id",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().collect())
                }

                async fn task_counts_by_kind(&self) -> StoreResult<Vec<TaskKindCount>> {
                    Ok(sqlx::query_as::<_, TaskKindCount>(
                        "SELECT task_type AS kind, status, COUNT(*) AS count
                         FROM provisioning_tasks
                         WHERE status IN ('pending', 'processing')
                            OR (status = 'failed' AND cleared_at IS NULL)
                         GROUP BY task_type, status
                         ORDER BY task_type, status",
                    )
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn queue_domains(&self, completed_since: i64) -> StoreResult<HashMap<i64, String>> {
                    let rows = sqlx::query_as::<_, (i64, String)>(
                        "SELECT id, domain FROM services WHERE id IN (
                             SELECT service_id FROM provisioning_tasks
                             WHERE status IN ('pending', 'processing')
                                OR (status = 'failed' AND cleared_at IS NULL)
                                OR (status = 'completed' AND completed_at >= $1))",
                    )
                    .bind(completed_since)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows.into_iter().collect())
                }

                async fn recently_completed_tasks(&self, since: i64, limit: i64) -> StoreResult<Vec<Task>> {
                    Ok(sqlx::query_as::<_, Task>(
                        "SELECT * FROM provisioning_tasks
                         WHERE status = 'completed' AND completed_at >= $1
                         ORDER BY completed_at DESC, id DESC LIMIT $2",
                    )
                    .bind(since)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn billing_glance(&self, now: i64, day_start: i64, limit: i64) -> StoreResult<BillingGlance> {
                    let overdue_count: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM invoices
                         WHERE status IN ('unpaid', 'overdue') AND due_at < $1",
                    )
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                    let overdue = sqlx::query_as::<_, OverdueInvoice>(
                        "SELECT i.id, i.number, i.customer_id, c.email AS customer_email,
                                i.amount_minor, i.amount_paid_minor, i.currency, i.due_at
                         FROM invoices i JOIN customers c ON c.id = i.customer_id
                         WHERE i.status IN ('unpaid', 'overdue') AND i.due_at < $1
                         ORDER BY i.due_at, i.id LIMIT $2",
                    )
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    let payments_today = sqlx::query_as::<_, PaymentTotal>(
                        "SELECT currency, status, COUNT(*) AS count,
                                CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS amount_minor
                         FROM payments WHERE created_at >= $1
                         GROUP BY currency, status ORDER BY currency, status",
                    )
                    .bind(day_start)
                    .fetch_all(&self.pool)
                    .await?;
                    let declines_today_count: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM activity_log
                         WHERE action = 'invoice.charge_declined' AND created_at >= $1",
                    )
                    .bind(day_start)
                    .fetch_one(&self.pool)
                    .await?;
                    let declines_today = sqlx::query_as::<_, ChargeDecline>(
                        "SELECT a.entity_id AS invoice_id, i.number, a.details, a.created_at
                         FROM activity_log a LEFT JOIN invoices i ON i.id = a.entity_id
                         WHERE a.action = 'invoice.charge_declined' AND a.created_at >= $1
                         ORDER BY a.id DESC LIMIT $2",
                    )
                    .bind(day_start)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    let disputed_count: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM services WHERE dispute_ref IS NOT NULL",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    let disputed = sqlx::query_as::<_, DisputedService>(
                        "SELECT s.id, s.domain, s.status, s.dispute_ref, c.email AS customer_email
                         FROM services s JOIN customers c ON c.id = s.customer_id
                         WHERE s.dispute_ref IS NOT NULL
                         ORDER BY s.updated_at DESC, s.id DESC LIMIT $1",
                    )
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(BillingGlance {
                        overdue_count,
                        overdue,
                        payments_today,
                        declines_today_count,
                        declines_today,
                        disputed_count,
                        disputed,
                    })
                }

                async fn live_admin_session_ids(&self, now: i64) -> StoreResult<Vec<i64>> {
                    Ok(sqlx::query_scalar::<_, i64>(
                        "SELECT s.id FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id
                         WHERE s.revoked_at IS NULL AND s.expires_at > $1 AND u.disabled_at IS NULL",
                    )
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn clear_failed_task(&self, task: TaskId, actor: &str) -> StoreResult<Result<Task, Task>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let found = sqlx::query_as::<_, Task>(AssertSqlSafe(format!(
                        "SELECT * FROM provisioning_tasks WHERE id = $1{}",
                        <$store>::FOR_UPDATE
                    )))
                    .bind(task.get())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("task", task))?;
                    if found.status != mpanel_common::status::TaskStatus::Failed || found.cleared_at.is_some() {
                        tx.rollback().await?;
                        return Ok(Err(found));
                    }
                    let cleared = sqlx::query_as::<_, Task>(
                        "UPDATE provisioning_tasks SET cleared_at = $2
                         WHERE id = $1 AND status = 'failed' AND cleared_at IS NULL
                         RETURNING *",
                    )
                    .bind(task.get())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "task.failed_cleared",
                        "provisioning_task",
                        task.get(),
                        serde_json::json!({
                            "serviceId": cleared.service_id.get(),
                            "kind": cleared.task_type.as_str(),
                        }),
                        Change::updated(
                            serde_json::json!({ "clearedAt": null }),
                            serde_json::json!({ "clearedAt": instant(now) }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(Ok(cleared))
                }
            }
        };
    };
}

impl_dashboard_store!(super::PostgresStore);
impl_dashboard_store!(super::SqliteStore);
