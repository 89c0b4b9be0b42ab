//! Persistence. One trait per aggregate group, implemented for PostgreSQL and for SQLite side by
//! side; `DATABASE_URL` picks the backend at start-up. The SQL both backends share is written once
//! (one module per aggregate: `servers`, `customers`, `products`, `services`, `queue`, `outbox`,
//! `agents`, `cron`, …) and instantiated for each pool type; what differs (connecting, opening a write
//! transaction, the connection a write goes through) lives in `postgres.rs` and `sqlite.rs`.
//!
//! This module owns rows and transactions. It does not validate requests (the API does) and it
//! does not decide what a state change means (the lifecycle layer does); it refuses what the schema makes
//! impossible (duplicates, dangling references) with `StoreError::Conflict`.

mod activity;
mod admin_tokens;
pub mod admin_users;
mod agents;
pub mod backups;
pub mod billing;
pub mod certificates;
pub mod cron;
pub mod customer_accounts;
mod customers;
pub mod dashboard;
pub mod lease_queue;
mod models;
pub mod outbox;
mod postgres;
mod products;
pub mod queue;
pub mod reporting;
mod servers;
mod services;
mod sqlite;
pub mod usage;

use std::sync::Arc;

use async_trait::async_trait;
use mpanel_common::ids::ServerId;

pub use activity::{ActivityStore, Change};
pub use admin_tokens::AdminTokenStore;
pub use admin_users::{AdminSession, AdminUser, AdminUserStore, LoginFailure, NewAdminSession};
pub use agents::{
    AgentHello, AgentLiveness, AgentRow, CaRecord, EnrollmentToken, IssuedCertificate, NewCa,
};
pub use backups::{BackupPurpose, BackupRow, BackupStore, ScheduleIntervals};
pub use certificates::{CertificateStore, IssuedSslCertificate, SslCertificate};
pub use customers::CustomerStore;
pub use models::*;
pub use postgres::PostgresStore;
pub use products::ProductStore;
pub use reporting::{QueueStats, ReportingStore, TaskCounts};
pub use servers::ServerStore;
pub use services::{NewCredentials, PlacementRefusal, ServiceStore};
pub use sqlite::SqliteStore;
pub use usage::{LatestUsage, UsageSampleRow, UsageStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The row (a task, an email) is no longer held by this worker: its lease expired and
    /// another took it over.
    #[error("{0} is no longer held by this worker (its lease expired and another took it)")]
    LeaseLost(String),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn lease_lost(row: impl std::fmt::Display) -> Self {
        StoreError::LeaseLost(row.to_string())
    }

    pub(crate) fn not_found(entity: &'static str, id: impl std::fmt::Display) -> Self {
        StoreError::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// Turns a unique or foreign-key violation into a `Conflict` with the given wording, so the
    /// API can answer 409 instead of 500.
    pub(crate) fn on_constraint(e: sqlx::Error, what: &str) -> Self {
        if let sqlx::Error::Database(db) = &e
            && (db.is_unique_violation() || db.is_foreign_key_violation())
        {
            return StoreError::Conflict(what.to_owned());
        }
        StoreError::Database(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The agent fleet: the built-in CA, enrollment, issued certificates and agent liveness.
#[async_trait]
pub trait AgentStore: Send + Sync {
    async fn active_certificate_authority(&self) -> StoreResult<Option<CaRecord>>;
    /// Stores a new CA and returns the active one (the oldest, should two replicas race).
    async fn insert_certificate_authority(&self, new: &NewCa) -> StoreResult<CaRecord>;
    async fn create_enrollment_token(
        &self,
        server_id: ServerId,
        token_hash: &str,
        expires_at: i64,
        actor: &str,
    ) -> StoreResult<()>;
    async fn find_enrollment_token(&self, token_hash: &str)
    -> StoreResult<Option<EnrollmentToken>>;
    /// Spends the token and records the certificate in one transaction (`Conflict` when the
    /// token was spent meanwhile). Returns the serials this enrollment superseded (now revoked).
    async fn complete_enrollment(
        &self,
        token_id: i64,
        cert: &IssuedCertificate,
        agent_version: &str,
    ) -> StoreResult<Vec<String>>;
    async fn record_renewed_certificate(&self, cert: &IssuedCertificate) -> StoreResult<()>;
    /// Revokes every live certificate of the server and returns their serials.
    async fn revoke_agent_certificates(
        &self,
        server_id: ServerId,
        actor: &str,
    ) -> StoreResult<Vec<String>>;
    /// Serials revoked and not yet expired: what the TLS verifier must refuse.
    async fn revoked_certificate_serials(&self) -> StoreResult<Vec<String>>;
    async fn list_agents(&self) -> StoreResult<Vec<AgentRow>>;
    /// Records each agent's Hello and marks it online, all in one transaction; for each row,
    /// `false` when that agent is not enrolled.
    async fn record_agent_hellos(&self, batch: &[(ServerId, AgentHello)])
    -> StoreResult<Vec<bool>>;
    /// Writes a batch of liveness updates in one transaction.
    async fn save_agent_liveness(&self, batch: &[AgentLiveness]) -> StoreResult<()>;
}

/// Everything the controller persists, behind one object-safe handle.
#[async_trait]
pub trait Store:
    ServerStore
    + outbox::OutboxStore
    + queue::TaskQueue
    + lease_queue::LeaseQueueStore
    + CustomerStore
    + ProductStore
    + ServiceStore
    + AdminTokenStore
    + AdminUserStore
    + ActivityStore
    + AgentStore
    + reporting::ReportingStore
    + certificates::CertificateStore
    + backups::BackupStore
    + billing::BillingStore
    + cron::CronStore
    + usage::UsageStore
    + dashboard::DashboardStore
    + customer_accounts::CustomerAccountStore
{
    fn backend(&self) -> Backend;
    /// Applies pending migrations for this backend.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

/// Opens the backend named by the URL's scheme. Migrations are not applied here: `migrate` and
/// `serve` decide that.
pub async fn connect(database_url: &str) -> StoreResult<DynStore> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(database_url).await?))
    } else {
        Ok(Arc::new(PostgresStore::connect(database_url).await?))
    }
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
