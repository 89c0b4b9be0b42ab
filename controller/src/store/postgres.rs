//! PostgreSQL backend: the production store, shared by every controller replica.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::agents::impl_agent_store;
use super::certificates::impl_certificate_store;
use super::outbox::impl_outbox_store;
use super::queue::impl_task_queue;
use super::reporting::impl_reporting_store;
use super::shared::impl_shared_store;
use super::{Backend, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
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

    /// Claims one runnable task; `SKIP LOCKED` lets concurrent claimers pass each other's rows.
    pub(crate) const CLAIM_TASK_SQL: &'static str = "UPDATE provisioning_tasks
         SET status = 'processing', lease_holder = $1, lease_expires_at = $3,
             attempts = attempts + 1, updated_at = $2
         WHERE id = (
             SELECT id FROM provisioning_tasks
             WHERE (status = 'pending' AND next_attempt_at <= $2)
                OR (status = 'processing' AND lease_expires_at < $2)
             ORDER BY next_attempt_at, id
             LIMIT 1
             FOR UPDATE SKIP LOCKED)
         RETURNING *";

    /// Claims one due email; `SKIP LOCKED` lets concurrent senders pass each other's rows.
    pub(crate) const CLAIM_EMAIL_SQL: &'static str = "UPDATE email_outbox
         SET status = 'sending', lease_expires_at = $2, attempts = attempts + 1
         WHERE id = (
             SELECT id FROM email_outbox
             WHERE (status = 'queued' AND next_attempt_at <= $1)
                OR (status = 'sending' AND lease_expires_at < $1)
             ORDER BY next_attempt_at, id
             LIMIT 1
             FOR UPDATE SKIP LOCKED)
         RETURNING *";

    /// Holds the server's row until the placing transaction ends.
    pub(crate) const LOCK_SERVER_SQL: &'static str =
        "SELECT max_accounts FROM servers WHERE id = $1 FOR UPDATE";

    /// Row locks taken by the statements themselves are enough on PostgreSQL.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

impl_shared_store!(PostgresStore, Postgres);
impl_task_queue!(PostgresStore, Postgres);
impl_outbox_store!(PostgresStore);
impl_agent_store!(PostgresStore, Postgres);
impl_reporting_store!(PostgresStore, Postgres);
impl_certificate_store!(PostgresStore);

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
