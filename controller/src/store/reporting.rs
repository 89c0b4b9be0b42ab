//! Read models for operators: the counts behind `GET /api/provisioning/stats`, and clearing the
//! failed-task list (the tasks stay in history as `failed`; only `cleared_at` is set).
//! `impl_reporting_store!` instantiates the SQL for both backends, like every store module:
//! portable SQL, `$n` placeholders, times as BIGINT milliseconds.

use async_trait::async_trait;

use super::StoreResult;

/// How many tasks of each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub pending: i64,
    pub processing: i64,
    pub completed: i64,
    pub failed: i64,
}

/// A snapshot of the work queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueStats {
    pub tasks_pending: i64,
    pub tasks_processing: i64,
    /// Failed tasks still on the failed list (not cleared).
    pub tasks_failed_uncleared: i64,
    pub emails_queued: i64,
    pub emails_sending: i64,
    pub emails_failed: i64,
    /// Invoices awaiting payment, and those of them past their due date.
    pub invoices_unpaid: i64,
    pub invoices_overdue: i64,
    /// Charges in a billing worker's hands now.
    pub charges_processing: i64,
    pub billing_pending: i64,
    pub billing_processing: i64,
    pub billing_failed: i64,
    pub recent_pending: i64,
    pub recent_processing: i64,
    pub recent_completed: i64,
    pub recent_failed: i64,
}

impl QueueStats {
    /// Tasks created since the `since_ms` given to `queue_stats`, by status.
    pub fn recent(&self) -> TaskCounts {
        TaskCounts {
            pending: self.recent_pending,
            processing: self.recent_processing,
            completed: self.recent_completed,
            failed: self.recent_failed,
        }
    }
}

/// Rows of one work queue in one state, for the queue-depth gauges.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueDepth {
    /// `provisioning`, `email`, `billing` or `cron`.
    pub queue: String,
    /// The task kind, billing job kind or scheduled job name; `email` for the outbox.
    pub kind: String,
    pub state: String,
    pub depth: i64,
    /// When the oldest of these rows was created (ms).
    pub oldest_ms: Option<i64>,
}

/// What the metrics sampler reads in one go: queue depths by kind and state (rows still to do,
/// in hand, or failed and not cleared), agents by status, heartbeats, certificates and the
/// last success of each scheduled job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSample {
    pub now_ms: i64,
    pub queues: Vec<QueueDepth>,
    pub agents: Vec<(String, i64)>,
    /// The oldest last heartbeat among agents counted online or suspect.
    pub oldest_heartbeat_ms: Option<i64>,
    /// Issued certificates only.
    pub soonest_certificate_expiry_ms: Option<i64>,
    pub certificates_expiring_14d: i64,
    /// (job name, finished at) of each job's latest successful run.
    pub cron_last_success: Vec<(String, i64)>,
}

#[async_trait]
pub trait ReportingStore: Send + Sync {
    /// The counts behind the metrics gauges, as of `now_ms`.
    async fn metrics_sample(&self, now_ms: i64) -> StoreResult<MetricsSample>;
    /// Current queue depths, plus the tasks created at or after `since_ms` by status.
    async fn queue_stats(&self, since_ms: i64) -> StoreResult<QueueStats>;
    /// Sets `cleared_at` on every failed task not yet cleared and returns how many; the
    /// tasks keep their `failed` status. Recorded in the activity log in the same transaction.
    async fn clear_failed_tasks(&self, actor: &str) -> StoreResult<u64>;
}

macro_rules! impl_reporting_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::reporting::{MetricsSample, QueueDepth, QueueStats, ReportingStore};
            use $crate::store::{StoreResult, now_ms};

            #[async_trait]
            impl ReportingStore for $store {
                async fn metrics_sample(&self, now_ms: i64) -> StoreResult<MetricsSample> {
                    // Finished rows (completed, sent, done, succeeded) are history, not depth.
                    let queues = sqlx::query_as::<_, QueueDepth>(
                        "SELECT CAST('provisioning' AS TEXT) AS queue, task_type AS kind, status AS state,
                                COUNT(*) AS depth, MIN(created_at) AS oldest_ms
                         FROM provisioning_tasks
                         WHERE status IN ('pending', 'processing')
                            OR (status = 'failed' AND cleared_at IS NULL)
                         GROUP BY task_type, status
                         UNION ALL
                         SELECT CAST('email' AS TEXT), CAST('email' AS TEXT), status, COUNT(*), MIN(created_at)
                         FROM email_outbox WHERE status IN ('queued', 'sending', 'failed')
                         GROUP BY status
                         UNION ALL
                         SELECT CAST('billing' AS TEXT), kind, status, COUNT(*), MIN(created_at)
                         FROM billing_jobs WHERE status IN ('pending', 'processing', 'failed')
                         GROUP BY kind, status
                         UNION ALL
                         SELECT CAST('cron' AS TEXT), job_name, status, COUNT(*), MIN(created_at)
                         FROM cron_runs WHERE status IN ('queued', 'running')
                         GROUP BY job_name, status",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    let agents = sqlx::query_as::<_, (String, i64)>(
                        "SELECT status, COUNT(*) FROM agents GROUP BY status",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    let (oldest_heartbeat_ms,) = sqlx::query_as::<_, (Option<i64>,)>(
                        "SELECT MIN(last_heartbeat_at) FROM agents WHERE status IN ('online', 'suspect')",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    let (soonest_certificate_expiry_ms, certificates_expiring_14d) =
                        sqlx::query_as::<_, (Option<i64>, i64)>(
                            "SELECT MIN(not_after),
                                    COUNT(CASE WHEN not_after < $1 THEN 1 END)
                             FROM ssl_certificates
                             WHERE status = 'issued' AND not_after IS NOT NULL",
                        )
                        .bind(now_ms + 14 * 24 * 3600 * 1000)
                        .fetch_one(&self.pool)
                        .await?;
                    let cron_last_success = sqlx::query_as::<_, (String, i64)>(
                        "SELECT job_name, MAX(finished_at) FROM cron_runs
                         WHERE status = 'succeeded' AND finished_at IS NOT NULL
                         GROUP BY job_name",
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(MetricsSample {
                        now_ms,
                        queues,
                        agents,
                        oldest_heartbeat_ms,
                        soonest_certificate_expiry_ms,
                        certificates_expiring_14d,
                        cron_last_success,
                    })
                }

                async fn queue_stats(&self, since_ms: i64) -> StoreResult<QueueStats> {
                    Ok(sqlx::query_as::<_, QueueStats>(
                        "SELECT
                             (SELECT COUNT(*) FROM provisioning_tasks WHERE status = 'pending') AS tasks_pending,
                             (SELECT COUNT(*) FROM provisioning_tasks WHERE status = 'processing') AS tasks_processing,
                             (SELECT COUNT(*) FROM provisioning_tasks
                              WHERE status = 'failed' AND cleared_at IS NULL) AS tasks_failed_uncleared,
                             (SELECT COUNT(*) FROM email_outbox WHERE status = 'queued') AS emails_queued,
                             (SELECT COUNT(*) FROM email_outbox WHERE status = 'sending') AS emails_sending,
                             (SELECT COUNT(*) FROM email_outbox WHERE status = 'failed') AS emails_failed,
                             (SELECT COUNT(*) FROM invoices WHERE status IN ('unpaid', 'overdue')) AS invoices_unpaid,
                             (SELECT COUNT(*) FROM invoices
                              WHERE status IN ('unpaid', 'overdue') AND due_at < $2) AS invoices_overdue,
                             (SELECT COUNT(*) FROM billing_jobs
                              WHERE kind = 'charge' AND status = 'processing') AS charges_processing,
                             (SELECT COUNT(*) FROM billing_jobs WHERE status = 'pending') AS billing_pending,
                             (SELECT COUNT(*) FROM billing_jobs WHERE status = 'processing') AS billing_processing,
                             (SELECT COUNT(*) FROM billing_jobs WHERE status = 'failed') AS billing_failed,
                             (SELECT COUNT(*) FROM provisioning_tasks
                              WHERE status = 'pending' AND created_at >= $1) AS recent_pending,
                             (SELECT COUNT(*) FROM provisioning_tasks
                              WHERE status = 'processing' AND created_at >= $1) AS recent_processing,
                             (SELECT COUNT(*) FROM provisioning_tasks
                              WHERE status = 'completed' AND created_at >= $1) AS recent_completed,
                             (SELECT COUNT(*) FROM provisioning_tasks
                              WHERE status = 'failed' AND created_at >= $1) AS recent_failed",
                    )
                    .bind(since_ms)
                    .bind(now_ms())
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn clear_failed_tasks(&self, actor: &str) -> StoreResult<u64> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let cleared = sqlx::query(
                        "UPDATE provisioning_tasks SET cleared_at = $1
                         WHERE status = 'failed' AND cleared_at IS NULL",
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if cleared > 0 {
                        <$store>::record_activity(
                            &mut tx,
                            actor,
                            "tasks.failed_cleared",
                            "provisioning_task",
                            None,
                            serde_json::json!({ "cleared": cleared }),
                            $crate::store::Change::updated(
                                serde_json::json!({ "unclearedFailed": cleared }),
                                serde_json::json!({ "unclearedFailed": 0 }),
                            ),
                        )
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(cleared)
                }
            }
        };
    };
}

pub(crate) use impl_reporting_store;
