//! Rows as the rest of the controller sees them, and the inputs that create or change them.
//! Times are Unix milliseconds; money is integer minor units.

use mpanel_common::ids::{CustomerId, ProductId, ServerId, ServiceId, TaskId};
use mpanel_common::status::{
    BillingCycle, CustomerStatus, DnsProvider, ServerStatus, ServiceStatus, SslProvider,
    StepStatus, TaskKind, TaskStatus, TaskStep,
};
use mpanel_common::username::PanelKind;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Server {
    #[sqlx(try_from = "i64")]
    pub id: ServerId,
    pub hostname: String,
    pub ip_address: String,
    #[sqlx(try_from = "String")]
    pub control_panel: PanelKind,
    pub control_panel_url: String,
    pub max_accounts: i32,
    #[sqlx(try_from = "String")]
    pub status: ServerStatus,
    pub location: String,
    pub server_group: String,
    pub nameserver1: String,
    pub nameserver2: String,
    #[sqlx(try_from = "String")]
    pub dns_provider: DnsProvider,
    #[sqlx(try_from = "String")]
    pub ssl_provider: SslProvider,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewServer {
    pub hostname: String,
    pub ip_address: String,
    pub control_panel: PanelKind,
    pub control_panel_url: String,
    pub max_accounts: i32,
    pub location: String,
    pub server_group: String,
    pub nameserver1: String,
    pub nameserver2: String,
    pub dns_provider: DnsProvider,
    pub ssl_provider: SslProvider,
}

/// A partial update: `None` leaves the column as it is.
#[derive(Debug, Clone, Default)]
pub struct ServerPatch {
    pub hostname: Option<String>,
    pub ip_address: Option<String>,
    pub control_panel_url: Option<String>,
    pub max_accounts: Option<i32>,
    pub status: Option<ServerStatus>,
    pub location: Option<String>,
    pub server_group: Option<String>,
    pub nameserver1: Option<String>,
    pub nameserver2: Option<String>,
    pub dns_provider: Option<DnsProvider>,
    pub ssl_provider: Option<SslProvider>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Customer {
    #[sqlx(try_from = "i64")]
    pub id: CustomerId,
    pub email: String,
    pub name: String,
    pub stripe_customer_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: CustomerStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub email: String,
    pub name: String,
}

/// A partial update of a customer: `None` leaves the column as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: Option<CustomerStatus>,
}

impl CustomerPatch {
    pub fn is_empty(&self) -> bool {
        *self == CustomerPatch::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Price {
    #[sqlx(try_from = "String")]
    pub billing_cycle: BillingCycle,
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Product {
    #[sqlx(try_from = "i64")]
    pub id: ProductId,
    pub name: String,
    pub server_group: String,
    pub package_cpanel: String,
    pub package_plesk: String,
    pub package_directadmin: String,
    pub disk_mb: i32,
    pub email_quota_mb: i32,
    pub databases: i32,
    pub active: bool,
    /// Tax on the prices, in basis points (2000 = 20 %).
    pub tax_rate_bp: i32,
    /// How often its accounts are backed up: `none`, `daily`, `weekly` or `monthly`.
    #[sqlx(try_from = "String")]
    pub backup_schedule: mpanel_common::status::BackupSchedule,
    pub created_at: i64,
    pub updated_at: i64,
    #[sqlx(skip)]
    pub prices: Vec<Price>,
}

impl Product {
    /// The panel package this product maps to on a server of the given kind.
    pub fn package_for(&self, kind: PanelKind) -> &str {
        match kind {
            PanelKind::Cpanel => &self.package_cpanel,
            PanelKind::Plesk => &self.package_plesk,
            PanelKind::Directadmin => &self.package_directadmin,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub server_group: String,
    pub package_cpanel: String,
    pub package_plesk: String,
    pub package_directadmin: String,
    pub disk_mb: i32,
    pub email_quota_mb: i32,
    pub databases: i32,
    pub tax_rate_bp: i32,
    pub backup_schedule: mpanel_common::status::BackupSchedule,
    pub prices: Vec<Price>,
}

/// A partial update of a product: `None` leaves the column as it is; `prices`, when given,
/// replaces the whole price list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub server_group: Option<String>,
    pub package_cpanel: Option<String>,
    pub package_plesk: Option<String>,
    pub package_directadmin: Option<String>,
    pub disk_mb: Option<i32>,
    pub email_quota_mb: Option<i32>,
    pub databases: Option<i32>,
    pub active: Option<bool>,
    pub tax_rate_bp: Option<i32>,
    pub backup_schedule: Option<mpanel_common::status::BackupSchedule>,
    pub prices: Option<Vec<Price>>,
}

impl ProductPatch {
    pub fn is_empty(&self) -> bool {
        *self == ProductPatch::default()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Service {
    #[sqlx(try_from = "i64")]
    pub id: ServiceId,
    #[sqlx(try_from = "i64")]
    pub customer_id: CustomerId,
    #[sqlx(try_from = "i64")]
    pub product_id: ProductId,
    pub server_id: Option<i64>,
    pub domain: String,
    pub username: Option<String>,
    /// Sealed with the controller's key; never serialised to a response.
    pub password_encrypted: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: ServiceStatus,
    #[sqlx(try_from = "String")]
    pub billing_cycle: BillingCycle,
    pub provisioning_error: Option<String>,
    pub provisioned_at: Option<i64>,
    /// The start of the next period to bill (UTC midnight, Unix ms).
    pub next_due_at: Option<i64>,
    /// The day of the month billing periods start on (see `mpanel_common::billing`).
    pub billing_day: Option<i32>,
    /// The Stripe dispute that flagged this service, if any.
    pub dispute_ref: Option<String>,
    pub suspended_at: Option<i64>,
    pub suspension_reason: Option<String>,
    pub terminated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Sealed; never serialised to a response.
    pub mailbox_password_encrypted: Option<String>,
    /// Sealed; never serialised to a response.
    pub database_password_encrypted: Option<String>,
}

/// The generated secrets a service keeps besides its panel password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSecret {
    Mailbox,
    Database,
}

/// A service's sealed mailbox and database passwords: offered, or as kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealedSecrets {
    pub mailbox: Option<String>,
    pub database: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewService {
    pub customer_id: CustomerId,
    pub product_id: ProductId,
    /// Already validated and canonical (`DomainName::parse`).
    pub domain: String,
    pub billing_cycle: BillingCycle,
    pub max_retries: i32,
    /// The first renewal (UTC midnight, Unix ms) and the day of the month periods start on.
    pub next_due_at: Option<i64>,
    pub billing_day: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceFilter {
    pub customer_id: Option<CustomerId>,
    pub status: Option<ServiceStatus>,
    pub server_id: Option<ServerId>,
    pub page: Page,
}

/// What an admin may change on a service without the panel. `None` leaves the field alone;
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ServicePatch {
    pub next_due_at: Option<Option<i64>>,
}

/// One step's outcome as recorded on the task (`result.steps[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub step: TaskStep,
    pub status: StepStatus,
    #[serde(default)]
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    #[serde(default)]
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Task {
    #[sqlx(try_from = "i64")]
    pub id: TaskId,
    #[sqlx(try_from = "i64")]
    pub service_id: ServiceId,
    #[sqlx(try_from = "String")]
    pub task_type: TaskKind,
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
    pub attempts: i32,
    pub max_retries: i32,
    pub result: Json<TaskResult>,
    pub params: Json<serde_json::Value>,
    pub error: Option<String>,
    pub wait_reason: Option<String>,
    pub idempotency_key: String,
    pub next_attempt_at: i64,
    pub lease_holder: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub cleared_at: Option<i64>,
    /// The HTTP request that queued it, when one did.
    #[sqlx(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub service_id: Option<ServiceId>,
    /// Leaves out tasks cleared from the failed list (`cleared_at` set).
    pub only_uncleared: bool,
    /// Newest first; `page.after_id` continues below that id.
    pub page: Page,
}

/// Keyset pagination: at most `limit` rows past `after_id`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub after_id: Option<i64>,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 100,
            after_id: None,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminToken {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Comma-separated: `read`, `write`, `billing`, `fleet`.
    pub scopes: String,
    pub expires_at: Option<i64>,
}

/// A token to create: its hash (the token itself is shown once, never stored), its scopes
/// (comma-separated) and when it stops working.
#[derive(Debug, Clone)]
pub struct NewAdminToken {
    pub name: String,
    pub token_hash: String,
    pub scopes: String,
    pub expires_at: Option<i64>,
}

/// Which activity rows to list: by target (`entity_type`, optionally one id), actor, and
/// since when; newest first, keyset-paged by id.
#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    pub entity_type: Option<String>,
    pub entity_id: Option<i64>,
    pub actor: Option<String>,
    pub since: Option<i64>,
    pub page: Page,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActivityEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<i64>,
    pub details: Json<serde_json::Value>,
    pub created_at: i64,
    #[sqlx(default)]
    pub request_id: Option<String>,
    /// The fields the change touched, as they were; none for a creation.
    #[sqlx(default)]
    pub before_state: Option<Json<serde_json::Value>>,
    /// The same fields as they are now; none for a deletion.
    #[sqlx(default)]
    pub after_state: Option<Json<serde_json::Value>>,
}

/// A server that may take a new service, with how full it is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlacementCandidate {
    #[sqlx(flatten)]
    pub server: Server,
    pub live_services: i64,
}
