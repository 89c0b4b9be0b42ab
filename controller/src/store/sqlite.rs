//! SQLite backend: the embedded default, for one controller with no database server installed.
//!
//! SQLite has one writer at a time, so all of this process's writes go through one connection
//! (`writer`) and wait their turn for it in order. Spread over several connections they waited
//! in SQLite's busy handler instead, which sleeps between tries (1, 2, 5, 10 … 100 ms): under a
//! burst the lock sat free while the writers slept, and a few of them waited seconds. Write
//! transactions start with `BEGIN IMMEDIATE`, so one that reads and then writes takes the lock
//! at its start instead of failing with `SQLITE_BUSY` halfway (another process, a `migrate` say,
//! may still hold it: then the busy handler waits). WAL lets the readers, on the other
//! connections, run beside the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::activity::impl_activity_store;
use super::admin_tokens::impl_admin_token_store;
use super::admin_users::impl_admin_user_store;
use super::agents::impl_agent_store;
use super::backups::impl_backup_store;
use super::billing::impl_billing_store;
use super::certificates::impl_certificate_store;
use super::cron::impl_cron_store;
use super::customer_accounts::impl_customer_account_store;
use super::customers::impl_customer_store;
use super::lease_queue::impl_lease_queue_store;
use super::outbox::impl_outbox_store;
use super::products::impl_product_store;
use super::queue::{impl_task_queue, step_record_statements};
use super::reporting::impl_reporting_store;
use super::servers::impl_server_store;
use super::services::impl_service_store;
use super::usage::impl_usage_store;
use super::{Backend, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pub(crate) pool: SqlitePool,
    /// Writes: one connection.
    writer: SqlitePool,
}

/// The task's `result` with the step record `$4` (of step `$3`) in place of an earlier record of
/// that step, or appended.
macro_rules! merged_steps {
    () => {
        "CASE
             WHEN EXISTS (SELECT 1 FROM json_each(result, '$.steps')
                          WHERE json_extract(value, '$.step') = $3)
             THEN json_set(result, '$.steps',
                      (SELECT json_group_array(CASE WHEN json_extract(value, '$.step') = $3
                                                    THEN json($4) ELSE json(value) END)
                       FROM json_each(result, '$.steps')))
             ELSE json_insert(result, '$.steps[#]', json($4))
         END"
    };
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives a process crash; only an OS crash can lose the last
            // commits, which is the embedded default's documented trade-off.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        // A writer waits at most as long for its turn as it would for the lock.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool, writer })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Reads a service's state for a checked change (see `TaskQueue::enqueue_checked`).
    pub(crate) const LOCK_SERVICE_SQL: &'static str =
        "SELECT status, suspension_reason FROM services WHERE id = $1";

    /// Appended to a read that the transaction goes on to change (row lock on PostgreSQL;
    /// SQLite's `BEGIN IMMEDIATE` already holds the write lock).
    pub(crate) const FOR_UPDATE: &'static str = "";

    pub(crate) const BACKEND: Backend = Backend::Sqlite;

    step_record_statements!(merged_steps!());

    /// SQLite has no write in a `WITH`: the completion and the read of the service are two
    /// statements.
    pub(crate) const COMPLETE_LOCKING_SERVICE_SQL: Option<&'static str> = None;

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Where a write outside a transaction goes: the one writer connection.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

impl_activity_store!(SqliteStore, Sqlite);
impl_server_store!(SqliteStore, Sqlite);
impl_customer_store!(SqliteStore, Sqlite);
impl_product_store!(SqliteStore, Sqlite);
impl_service_store!(SqliteStore, Sqlite);
impl_admin_token_store!(SqliteStore, Sqlite);
impl_admin_user_store!(SqliteStore, Sqlite);
impl_task_queue!(SqliteStore, Sqlite);
impl_outbox_store!(SqliteStore, Sqlite);
impl_lease_queue_store!(SqliteStore);
impl_agent_store!(SqliteStore, Sqlite);
impl_reporting_store!(SqliteStore, Sqlite);
impl_certificate_store!(SqliteStore);
impl_backup_store!(SqliteStore);
impl_billing_store!(SqliteStore, Sqlite);
impl_cron_store!(SqliteStore, Sqlite);
impl_usage_store!(SqliteStore, Sqlite);
impl_customer_account_store!(SqliteStore, Sqlite);

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
