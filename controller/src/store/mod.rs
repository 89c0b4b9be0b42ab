//! Persistence. One trait per aggregate group, implemented for PostgreSQL and for SQLite side by
//! side; `DATABASE_URL` picks the backend at start-up. The SQL both backends share is written once
//! (`shared.rs`) and instantiated for each pool type; what differs (connecting, opening a write
//! transaction) lives in `postgres.rs` and `sqlite.rs`.
//!
//! This module owns rows and transactions. It does not validate requests (the API does) and it
//! does not decide what a state change means (the services do); it refuses what the schema makes
//! impossible (duplicates, dangling references) with `StoreError::Conflict`.

mod agents;
pub mod certificates;
pub mod lease_queue;
mod models;
pub mod outbox;
mod postgres;
pub mod queue;
pub mod reporting;
mod shared;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use mpanel_common::ids::{CustomerId, ProductId, ServerId, ServiceId, TaskId};

pub use agents::{
    AgentHello, AgentLiveness, AgentRow, CaRecord, EnrollmentToken, IssuedCertificate, NewCa,
};
pub use certificates::{CertificateStore, IssuedSslCertificate, SslCertificate};
pub use models::*;
pub use postgres::PostgresStore;
pub use reporting::{QueueStats, ReportingStore, TaskCounts};
pub use sqlite::SqliteStore;

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

#[async_trait]
pub trait ServerStore: Send + Sync {
    async fn create_server(&self, new: &NewServer, actor: &str) -> StoreResult<Server>;
    async fn get_server(&self, id: ServerId) -> StoreResult<Server>;
    async fn list_servers(&self) -> StoreResult<Vec<Server>>;
    async fn update_server(
        &self,
        id: ServerId,
        patch: &ServerPatch,
        actor: &str,
    ) -> StoreResult<Server>;
    /// Refused with `Conflict` while any service (live or past) references the server.
    async fn delete_server(&self, id: ServerId, actor: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait CustomerStore: Send + Sync {
    async fn create_customer(&self, new: &NewCustomer, actor: &str) -> StoreResult<Customer>;
    async fn get_customer(&self, id: CustomerId) -> StoreResult<Customer>;
    async fn list_customers(&self, page: Page) -> StoreResult<Vec<Customer>>;
    /// Changes the fields the patch names, recorded in the activity log in the same
    /// transaction; an email another customer has is a `Conflict`.
    async fn update_customer(
        &self,
        id: CustomerId,
        patch: &CustomerPatch,
        actor: &str,
    ) -> StoreResult<Customer>;
}

#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Creates the product and its prices in one transaction.
    async fn create_product(&self, new: &NewProduct, actor: &str) -> StoreResult<Product>;
    async fn get_product(&self, id: ProductId) -> StoreResult<Product>;
    async fn list_products(&self) -> StoreResult<Vec<Product>>;
    /// Changes the fields the patch names (a given price list replaces the old one) in one
    /// transaction with its activity row; a name another product has is a `Conflict`.
    async fn update_product(
        &self,
        id: ProductId,
        patch: &ProductPatch,
        actor: &str,
    ) -> StoreResult<Product>;
}

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Creates a `pending` service and its provisioning task in one transaction (the
    /// transactional outbox: the task row is the record that work is owed).
    async fn create_service_with_task(
        &self,
        new: &NewService,
        actor: &str,
    ) -> StoreResult<(Service, Task)>;
    async fn get_service(&self, id: ServiceId) -> StoreResult<Service>;
    /// Places a service on a server, holding the server's row while it counts, so concurrent
    /// placements cannot take the server past `max_accounts` (`Conflict` when it is full).
    async fn assign_server(&self, service_id: ServiceId, server_id: ServerId) -> StoreResult<()>;
    /// Records the panel username and sealed password chosen for a service. Set once: a
    /// different username for a service that has one, or a username already used by a live
    /// service on the same server, is a `Conflict`.
    async fn set_service_credentials(
        &self,
        service_id: ServiceId,
        username: &str,
        password_sealed: &str,
    ) -> StoreResult<()>;
    /// Keeps the first sealed secret ever offered for this service and returns the one kept, so
    /// every retry of a step uses the same password.
    async fn keep_service_secret(
        &self,
        service_id: ServiceId,
        which: ServiceSecret,
        sealed_candidate: &str,
    ) -> StoreResult<String>;
    /// Active servers of this group and panel kind, each with its count of live services.
    async fn placement_candidates(
        &self,
        server_group: &str,
        kind: mpanel_common::username::PanelKind,
    ) -> StoreResult<Vec<PlacementCandidate>>;
    async fn list_services(&self, filter: &ServiceFilter) -> StoreResult<Vec<Service>>;
    async fn get_task(&self, id: TaskId) -> StoreResult<Task>;
    /// The service's open (pending or processing) task, if any.
    async fn open_task_for_service(&self, service_id: ServiceId) -> StoreResult<Option<Task>>;
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>>;
    /// Changes the fields an admin may set without the panel (see `ServicePatch`).
    async fn update_service(
        &self,
        id: ServiceId,
        patch: &ServicePatch,
        actor: &str,
    ) -> StoreResult<Service>;
}

#[async_trait]
pub trait AdminTokenStore: Send + Sync {
    async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken>;
    /// Finds a live (not revoked) token by hash and records its use.
    async fn authenticate_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>>;
    async fn revoke_admin_token(&self, id: i64) -> StoreResult<()>;
}

#[async_trait]
pub trait ActivityStore: Send + Sync {
    async fn list_activity(
        &self,
        entity_type: &str,
        entity_id: i64,
    ) -> StoreResult<Vec<ActivityEntry>>;
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
    /// Records the agent's Hello and marks it online; `false` when the agent is not enrolled.
    async fn record_agent_hello(
        &self,
        server_id: ServerId,
        hello: &AgentHello,
    ) -> StoreResult<bool>;
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
    + ActivityStore
    + AgentStore
    + reporting::ReportingStore
    + certificates::CertificateStore
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
