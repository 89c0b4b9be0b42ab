//! The SQL of every table worked as a queue under leases, written once.
//!
//! A queue table has a status column with a ready, a running and a failed word, `attempts`,
//! `next_attempt_at`, `lease_holder` and `lease_expires_at`. A row is runnable when it is ready
//! and due, or running with an expired lease (its holder died). Claiming is one statement:
//! PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on
//! or take the same row; SQLite runs it inside `BEGIN IMMEDIATE`, which serialises writers.
//! Every later write names the holder and is refused with `StoreError::LeaseLost` once another
//! worker has taken the row over, so a worker that stalled past its lease cannot overwrite its
//! successor's progress.
//!
//! Each queue's own store keeps what is particular to it (the row type it claims, what
//! completing means); the renewal, release, failure, next-due and restart-reclaim statements
//! are these, for every queue.

use async_trait::async_trait;

use super::{Backend, StoreResult};

/// A claimed row, and whether the claim saw another row runnable besides it.
#[derive(Debug, Clone)]
pub struct Claimed<R> {
    pub row: R,
    pub more_due: bool,
}

impl<R> Claimed<R> {
    /// Decodes a row of `claim_sql`: the table's row and its `more_due` column.
    pub(crate) fn from_row<'r, DB: sqlx::Row>(row: &'r DB) -> Result<Self, sqlx::Error>
    where
        R: sqlx::FromRow<'r, DB>,
        bool: sqlx::Decode<'r, DB::Database> + sqlx::Type<DB::Database>,
        &'static str: sqlx::ColumnIndex<DB>,
    {
        Ok(Self {
            row: R::from_row(row)?,
            more_due: row.try_get("more_due")?,
        })
    }
}

/// A table worked as a queue: its name and the words its status column uses.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueTable {
    /// The queue's name in logs, metrics and wake-up messages.
    pub name: &'static str,
    pub table: &'static str,
    pub ready: &'static str,
    pub running: &'static str,
    pub failed: &'static str,
    /// Where the last error is kept.
    pub error_column: &'static str,
    /// Where the reason a row waits is kept, if the table shows one.
    pub wait_column: Option<&'static str>,
    /// Touched on every write, if the table has one.
    pub updated_column: Option<&'static str>,
}

/// Provisioning and lifecycle tasks (`provisioning_tasks`).
pub const PROVISIONING: QueueTable = QueueTable {
    name: "provisioning",
    table: "provisioning_tasks",
    ready: "pending",
    running: "processing",
    failed: "failed",
    error_column: "error",
    wait_column: Some("wait_reason"),
    updated_column: Some("updated_at"),
};

/// The email outbox (`email_outbox`).
pub const EMAIL: QueueTable = QueueTable {
    name: "email",
    table: "email_outbox",
    ready: "queued",
    running: "sending",
    failed: "failed",
    error_column: "last_error",
    wait_column: None,
    updated_column: None,
};

/// Billing work: charges, saving a card, billing emails, lifecycle moves a payment or a
/// dispute asks for (`billing_jobs`).
pub const BILLING: QueueTable = QueueTable {
    name: "billing",
    table: "billing_jobs",
    ready: "pending",
    running: "processing",
    failed: "failed",
    error_column: "last_error",
    wait_column: None,
    updated_column: Some("updated_at"),
};

/// Runs of scheduled jobs (`cron_runs`), queued by the scheduler's leader or an admin.
pub const CRON: QueueTable = QueueTable {
    name: "cron",
    table: "cron_runs",
    ready: "queued",
    running: "running",
    failed: "failed",
    error_column: "error",
    wait_column: None,
    updated_column: None,
};

/// Every queue table; wake-up messages name one of these.
pub const QUEUES: [&QueueTable; 4] = [&PROVISIONING, &EMAIL, &BILLING, &CRON];

/// A claimed row: which queue, which row, and who holds it.
#[derive(Debug, Clone, Copy)]
pub struct LeasedRow<'a> {
    pub queue: &'static QueueTable,
    pub id: i64,
    pub holder: &'a str,
}

impl std::fmt::Display for LeasedRow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} row {}", self.queue.name, self.id)
    }
}

/// How a claim that did not finish goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The attempt failed; it counts against the retry budget.
    Retry,
    /// Nothing was tried (the row waits for a resource); the claim is handed back uncounted.
    Wait,
}

impl QueueTable {
    /// The claim statement for this backend (built from constants only): `$1` holder, `$2` now, `$3` lease expiry.
    pub fn claim_sql(&self, backend: Backend) -> String {
        let QueueTable {
            table,
            ready,
            running,
            ..
        } = self;
        let updated = self
            .updated_column
            .map(|c| format!(", {c} = $2"))
            .unwrap_or_default();
        let lock = match backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Two index range scans, not one OR over both states (which read every row by due
        // time, finished ones included): a row whose lease expired first (its worker died),
        // then the earliest due ready one. `COALESCE` reads the second only without the first.
        // `more_due` says whether another row was runnable besides the one claimed, so the
        // worker wakes a sibling only then (see `Claimed`).
        format!(
            "WITH expired AS (
                 SELECT id FROM {table}
                 WHERE status = '{running}' AND lease_expires_at < $2
                 ORDER BY lease_expires_at, id
                 LIMIT 1{lock}),
             ready AS (
                 SELECT id FROM {table}
                 WHERE status = '{ready}' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, id
                 LIMIT 1{lock})
             UPDATE {table}
             SET status = '{running}', lease_holder = $1, lease_expires_at = $3,
                 attempts = attempts + 1{updated}
             WHERE id = COALESCE((SELECT id FROM expired), (SELECT id FROM ready))
             RETURNING *, EXISTS (
                 SELECT 1 FROM {table} other
                 WHERE other.id <> {table}.id
                   AND ((other.status = '{ready}' AND other.next_attempt_at <= $2)
                        OR (other.status = '{running}' AND other.lease_expires_at < $2))) AS more_due"
        )
    }

    fn touch(&self, param: &str) -> String {
        self.updated_column
            .map(|c| format!(", {c} = {param}"))
            .unwrap_or_default()
    }

    pub(crate) fn renew_sql(&self) -> String {
        format!(
            "UPDATE {} SET lease_expires_at = $3{} WHERE id = $1 AND lease_holder = $2 AND status = '{}'",
            self.table,
            self.touch("$4"),
            self.running
        )
    }

    pub(crate) fn release_sql(&self, how: Release) -> String {
        let wait = self
            .wait_column
            .map(|c| format!(", {c} = $3"))
            .unwrap_or_default();
        let uncount = match how {
            Release::Retry => "",
            Release::Wait => ", attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END",
        };
        format!(
            "UPDATE {table} SET status = '{ready}', {error} = $3{wait}, next_attempt_at = $4{uncount}{touch},
                 lease_holder = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_holder = $2 AND status = '{running}'",
            table = self.table,
            ready = self.ready,
            running = self.running,
            error = self.error_column,
            touch = self.touch("$5"),
        )
    }

    pub(crate) fn fail_sql(&self) -> String {
        format!(
            "UPDATE {table} SET status = '{failed}', {error} = $3{touch},
                 lease_holder = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_holder = $2 AND status = '{running}'",
            table = self.table,
            failed = self.failed,
            running = self.running,
            error = self.error_column,
            touch = self.touch("$4"),
        )
    }

    pub(crate) fn next_due_sql(&self) -> String {
        // Two index range scans (ready by due time, running by lease expiry), not one OR.
        format!(
            "SELECT MIN(t) FROM (
                 SELECT MIN(next_attempt_at) AS t FROM {table} WHERE status = '{ready}'
                 UNION ALL
                 SELECT MIN(lease_expires_at) AS t FROM {table} WHERE status = '{running}'
             ) due",
            table = self.table,
            ready = self.ready,
            running = self.running,
        )
    }

    pub(crate) fn reclaim_sql(&self) -> String {
        // `substr` is in both SQL dialects and, unlike LIKE, has no wildcard to escape.
        format!(
            "UPDATE {table} SET lease_expires_at = 0
             WHERE status = '{running}'
               AND substr(lease_holder, 1, length($1)) = $1
               AND substr(lease_holder, 1, length($2)) <> $2",
            table = self.table,
            running = self.running,
        )
    }
}

/// The writes every queue shares, fenced by the holder.
#[async_trait]
pub trait LeaseQueueStore: Send + Sync {
    /// Extends the lease to `now + lease_ms`; `LeaseLost` if the row is no longer ours.
    async fn renew_leased(&self, row: LeasedRow<'_>, lease_ms: i64) -> StoreResult<()>;
    /// Running → ready, due again at `next_attempt_at`, keeping `message` visible.
    async fn release_leased(
        &self,
        row: LeasedRow<'_>,
        how: Release,
        message: &str,
        next_attempt_at: i64,
    ) -> StoreResult<()>;
    /// Running → failed for good, keeping the error.
    async fn fail_leased(&self, row: LeasedRow<'_>, error: &str) -> StoreResult<()>;
    /// When the next row falls due (a ready one, or an expired lease), so the queue's watcher
    /// knows when to wake a worker.
    async fn next_due(&self, queue: &'static QueueTable) -> StoreResult<Option<i64>>;
    /// Expires at once the leases held by an earlier run of this controller node: holders
    /// starting with `node_prefix` but not with `own_prefix`. Only a node that knows its
    /// previous process is dead may call it (see `jobs::node`). Returns the rows taken back.
    async fn reclaim_abandoned(
        &self,
        queue: &'static QueueTable,
        node_prefix: &str,
        own_prefix: &str,
    ) -> StoreResult<u64>;
}

macro_rules! impl_lease_queue_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            // Every statement here is built from a `QueueTable` constant: no input reaches it.
            use sqlx::AssertSqlSafe;
            use $crate::store::lease_queue::{LeaseQueueStore, LeasedRow, QueueTable, Release};
            use $crate::store::{StoreError, StoreResult, now_ms};

            fn held(rows: u64, row: LeasedRow<'_>) -> StoreResult<()> {
                if rows == 0 {
                    Err(StoreError::lease_lost(row))
                } else {
                    Ok(())
                }
            }

            #[async_trait]
            impl LeaseQueueStore for $store {
                async fn renew_leased(&self, row: LeasedRow<'_>, lease_ms: i64) -> StoreResult<()> {
                    let now = now_ms();
                    let rows = sqlx::query(AssertSqlSafe(row.queue.renew_sql()))
                        .bind(row.id)
                        .bind(row.holder)
                        .bind(now + lease_ms)
                        .bind(now)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    held(rows, row)
                }

                async fn release_leased(
                    &self,
                    row: LeasedRow<'_>,
                    how: Release,
                    message: &str,
                    next_attempt_at: i64,
                ) -> StoreResult<()> {
                    let rows = sqlx::query(AssertSqlSafe(row.queue.release_sql(how)))
                        .bind(row.id)
                        .bind(row.holder)
                        .bind(message)
                        .bind(next_attempt_at)
                        .bind(now_ms())
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    held(rows, row)
                }

                async fn fail_leased(&self, row: LeasedRow<'_>, error: &str) -> StoreResult<()> {
                    let rows = sqlx::query(AssertSqlSafe(row.queue.fail_sql()))
                        .bind(row.id)
                        .bind(row.holder)
                        .bind(error)
                        .bind(now_ms())
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    held(rows, row)
                }

                async fn next_due(&self, queue: &'static QueueTable) -> StoreResult<Option<i64>> {
                    Ok(sqlx::query_scalar(AssertSqlSafe(queue.next_due_sql()))
                        .fetch_one(&self.pool)
                        .await?)
                }

                async fn reclaim_abandoned(
                    &self,
                    queue: &'static QueueTable,
                    node_prefix: &str,
                    own_prefix: &str,
                ) -> StoreResult<u64> {
                    Ok(sqlx::query(AssertSqlSafe(queue.reclaim_sql()))
                        .bind(node_prefix)
                        .bind(own_prefix)
                        .execute(self.writer())
                        .await?
                        .rows_affected())
                }
            }
        };
    };
}

pub(crate) use impl_lease_queue_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_claims_skip_locked_rows() {
        assert!(
            PROVISIONING
                .claim_sql(Backend::Postgres)
                .contains("SKIP LOCKED")
        );
        assert!(
            !PROVISIONING
                .claim_sql(Backend::Sqlite)
                .contains("SKIP LOCKED")
        );
    }

    #[test]
    fn a_table_without_a_wait_or_updated_column_is_not_given_one() {
        let sql = EMAIL.release_sql(Release::Wait);
        assert!(
            !sql.contains("wait_reason") && !sql.contains("updated_at"),
            "{sql}"
        );
        assert!(
            sql.contains("last_error = $3") && sql.contains("attempts - 1"),
            "{sql}"
        );
        let sql = PROVISIONING.release_sql(Release::Retry);
        assert!(
            sql.contains("wait_reason = $3") && !sql.contains("attempts - 1"),
            "{sql}"
        );
    }

    #[test]
    fn queue_names_are_distinct() {
        assert_ne!(PROVISIONING.name, EMAIL.name);
        assert!(QUEUES.iter().all(|q| !q.name.contains(' ')));
    }
}
