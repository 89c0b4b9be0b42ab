//! PostgreSQL backend: the production store, shared by every controller replica.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

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
use super::queue::{complete_task_locking_service_sql, impl_task_queue, step_record_statements};
use super::reporting::impl_reporting_store;
use super::servers::impl_server_store;
use super::services::impl_service_store;
use super::usage::impl_usage_store;
use super::{Backend, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
}

/// The task's `result` with the step record `$4` (of step `$3`) in place of an earlier record of
/// that step, or appended.
macro_rules! merged_steps {
    () => {
        "jsonb_set(result, '{steps}',
             CASE WHEN result->'steps' @> jsonb_build_array(jsonb_build_object('step', $3::text))
                  THEN (SELECT jsonb_agg(CASE WHEN s->>'step' = $3::text THEN $4::jsonb ELSE s END ORDER BY n)
                        FROM jsonb_array_elements(result->'steps') WITH ORDINALITY AS e(s, n))
                  ELSE result->'steps' || jsonb_build_array($4::jsonb)
             END)"
    };
}

impl PostgresStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Reads a service's state for a checked change (see `TaskQueue::enqueue_checked`).
    pub(crate) const LOCK_SERVICE_SQL: &'static str =
        "SELECT status, suspension_reason FROM services WHERE id = $1 FOR UPDATE";

    /// Appended to a read that the transaction goes on to change (row lock on PostgreSQL;
    /// SQLite's `BEGIN IMMEDIATE` already holds the write lock).
    pub(crate) const FOR_UPDATE: &'static str = " FOR UPDATE";

    pub(crate) const BACKEND: Backend = Backend::Postgres;

    step_record_statements!(merged_steps!());

    /// The completion and the read of the service it changes, as one statement.
    pub(crate) const COMPLETE_LOCKING_SERVICE_SQL: Option<&'static str> =
        Some(complete_task_locking_service_sql!(merged_steps!()));

    /// Row locks taken by the statements themselves are enough on PostgreSQL.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Where a write outside a transaction goes: any connection (row locks order writers).
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }
}

impl_activity_store!(PostgresStore, Postgres);
impl_server_store!(PostgresStore, Postgres);
impl_customer_store!(PostgresStore, Postgres);
impl_product_store!(PostgresStore, Postgres);
impl_service_store!(PostgresStore, Postgres);
impl_admin_token_store!(PostgresStore, Postgres);
impl_admin_user_store!(PostgresStore, Postgres);
impl_task_queue!(PostgresStore, Postgres);
impl_outbox_store!(PostgresStore, Postgres);
impl_lease_queue_store!(PostgresStore);
impl_agent_store!(PostgresStore, Postgres);
impl_reporting_store!(PostgresStore, Postgres);
impl_certificate_store!(PostgresStore);
impl_backup_store!(PostgresStore);
impl_billing_store!(PostgresStore, Postgres);
impl_cron_store!(PostgresStore, Postgres);
impl_usage_store!(PostgresStore, Postgres);
impl_customer_account_store!(PostgresStore, Postgres);

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
