//! Control-panel drivers: one [`ControlPanel`] trait, one driver per panel kind (cPanel/WHM, Plesk,
//! DirectAdmin), the typed [`PanelError`] every driver maps its failures into, and the idempotent
//! account creation ([`ensure_account`]) all drivers share.
//!
//! This module owns talking to the panel on the local host. It does not own deciding *what* to
//! provision (the controller's orchestrator does), retries and backoff (the caller reads
//! [`PanelError::class`]), or the ACME protocol (the agent's ACME module only asks for a web root).
//!
//! Every fact about a panel's API that a driver relies on comes from
//! the panel API reference (`panel-apis.md`); where that document marks a fact UNCONFIRMED the driver says so
//! in a comment and takes the most defensive reading.

mod account;
pub mod cpanel;
pub mod directadmin;
mod http;
pub mod plesk;
mod types;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub use account::{AccountCreation, Ownership, ensure_account, judge_ownership};
pub use http::PanelEndpoint;
pub use types::*;

/// The one interface the agent's command handler uses, whatever panel runs on the host.
///
/// Usernames are the panel's system username (the account key everywhere). Every method is safe to
/// call again after a failure or a crash: creates look before they leap, deletes of something
/// already gone succeed, and upserts converge.
#[async_trait]
pub trait ControlPanel: Send + Sync + std::fmt::Debug {
    /// Which panel this driver talks to.
    fn kind(&self) -> PanelKind;

    // ----- accounts -----

    /// Looks the account up. `Ok(None)` means the panel says it does not exist.
    async fn get_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError>;

    /// Creates the account for `spec.service_id` unless it already exists (see [`ensure_account`]).
    /// An existing account that belongs to another service is a [`PanelError::Conflict`].
    async fn ensure_account(&self, spec: &AccountSpec) -> Result<AccountInfo, PanelError>;

    async fn suspend_account(&self, username: &str, reason: &str) -> Result<(), PanelError>;
    async fn unsuspend_account(&self, username: &str) -> Result<(), PanelError>;
    /// Removes the account. An account that is already gone is a success.
    async fn terminate_account(&self, username: &str) -> Result<(), PanelError>;
    async fn change_package(&self, username: &str, package: &str) -> Result<(), PanelError>;
    async fn change_password(&self, username: &str, password: &Secret) -> Result<(), PanelError>;
    async fn list_accounts(&self) -> Result<Vec<AccountInfo>, PanelError>;

    // ----- packages and usage -----

    async fn list_packages(&self) -> Result<Vec<PackageInfo>, PanelError>;
    async fn usage(&self, username: &str) -> Result<Usage, PanelError>;

    // ----- DNS -----

    /// Makes sure `domain` has a zone on this server (most panels create it with the account).
    async fn ensure_dns_zone(
        &self,
        username: &str,
        domain: &str,
        ip: Option<&str>,
    ) -> Result<(), PanelError>;
    /// Creates or updates one record of `username`'s domain; see [`DnsRecord::same_slot`] for
    /// which existing records it replaces. The owner is named because some panels run zone
    /// edits as the domain's owner (DirectAdmin's login-as).
    async fn upsert_dns_record(
        &self,
        username: &str,
        domain: &str,
        record: &DnsRecord,
    ) -> Result<(), PanelError>;
    /// Upserts several records. Panels with a batch edit override this to apply them in one
    /// change (one serial check, one reload) instead of one per record.
    async fn upsert_dns_records(
        &self,
        username: &str,
        domain: &str,
        records: &[DnsRecord],
    ) -> Result<(), PanelError> {
        for record in records {
            self.upsert_dns_record(username, domain, record).await?;
        }
        Ok(())
    }
    /// Deletes every record matching `key`. Nothing to delete is a success.
    async fn delete_dns_record(
        &self,
        username: &str,
        domain: &str,
        key: &DnsRecordKey,
    ) -> Result<(), PanelError>;

    // ----- SSL -----

    async fn install_certificate(
        &self,
        username: &str,
        domain: &str,
        bundle: &CertificateBundle,
    ) -> Result<(), PanelError>;
    /// Asks the panel's own certificate automation (AutoSSL, Let's Encrypt extension) to run.
    /// Asynchronous on every panel: success means "started", not "issued".
    async fn start_auto_ssl(&self, username: &str, domain: &str) -> Result<(), PanelError>;

    // ----- mail -----

    async fn create_mailbox(&self, username: &str, spec: &MailboxSpec) -> Result<(), PanelError>;

    // ----- MySQL -----

    /// Creates the database and the user and grants the user all privileges on it. The names in
    /// `spec` are without the panel prefix; the returned names are the real ones.
    async fn create_database(
        &self,
        username: &str,
        spec: &DatabaseSpec,
    ) -> Result<DatabaseInfo, PanelError>;

    // ----- backups -----

    /// Starts a full backup of the account into the panel's own backup storage. Asynchronous
    /// on every panel: the archive shows up in [`ControlPanel::list_backups`] once written.
    async fn start_backup(&self, username: &str) -> Result<(), PanelError>;
    /// The account's archives, the ones still being written included (`ready: false`).
    async fn list_backups(&self, username: &str) -> Result<Vec<BackupInfo>, PanelError>;
    /// Deletes one archive named as [`ControlPanel::list_backups`] names it. `Ok(false)`: the
    /// panel has no such archive.
    async fn delete_backup(&self, username: &str, name: &str) -> Result<bool, PanelError>;
    /// Starts recreating the removed account `username` from its archive `name` (as
    /// [`ControlPanel::list_backups`] names it). Asynchronous on every panel: the account
    /// exists again once [`ControlPanel::restore_state`] says the restore finished.
    async fn start_restore(&self, username: &str, name: &str) -> Result<(), PanelError>;
    /// The state of the most recent restore of `username`.
    async fn restore_state(&self, username: &str) -> Result<RestoreState, PanelError>;

    // ----- ACME HTTP-01 -----

    /// The directory served as `http://<domain>/`, where the agent writes
    /// `.well-known/acme-challenge/<token>`. The agent runs as root on the panel host, so writing
    /// the file directly is simpler and more reliable than any panel file-manager API.
    async fn web_root(&self, username: &str, domain: &str) -> Result<PathBuf, PanelError>;

    /// Writes `key_authorization` to `<web root of domain>/.well-known/acme-challenge/<token>`
    /// through the panel's own file API, so the file belongs to the account (a root-owned file
    /// in a customer's directory is a support ticket waiting to happen) and the call works the
    /// same on a panel the agent reaches over the network.
    async fn write_acme_challenge(
        &self,
        username: &str,
        domain: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), PanelError>;
}

/// ACME tokens are base64url (RFC 8555 §8.1); anything else could climb out of the challenge
/// directory once it becomes part of a path.
pub(crate) fn check_acme_token(token: &str) -> Result<(), PanelError> {
    if !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(PanelError::permanent(
            "write_acme_challenge",
            "the ACME token is not base64url",
        ))
    }
}

/// A backup name as the panels list them: one file name, so it cannot point outside the
/// account's backup directory once it becomes part of a path.
pub(crate) fn check_backup_name(operation: &'static str, name: &str) -> Result<(), PanelError> {
    if !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
    {
        Ok(())
    } else {
        Err(PanelError::permanent(
            operation,
            "a backup location is one file name",
        ))
    }
}

/// How to reach the local panel; built from the `[panel]` section of the agent configuration.
#[derive(Debug, Clone)]
pub struct PanelConfig {
    pub kind: PanelKind,
    /// Base URL, e.g. `https://127.0.0.1:2087`.
    pub url: String,
    /// Admin user the token belongs to (`root` on cPanel, `admin` on Plesk and DirectAdmin).
    pub user: String,
    pub token: Secret,
    /// Accept self-signed certificates: panels on localhost rarely have a trusted one.
    pub insecure_tls: bool,
    /// Whole-request limit; a request that takes longer is a retryable failure.
    pub timeout: std::time::Duration,
    /// Prefix for file-system paths the drivers compute (tests point it at a temporary
    /// directory); `/` in production.
    pub fs_root: PathBuf,
}

impl PanelConfig {
    pub fn new(kind: PanelKind, url: &str, user: &str, token: Secret, insecure_tls: bool) -> Self {
        Self {
            kind,
            url: url.to_owned(),
            user: user.to_owned(),
            token,
            insecure_tls,
            timeout: http::DEFAULT_TIMEOUT,
            fs_root: PathBuf::from("/"),
        }
    }
}

/// The driver for `kind`, ready to use. Fails only when the HTTP client cannot be built (bad URL,
/// TLS setup).
pub fn build_driver(
    kind: PanelKind,
    url: &str,
    user: &str,
    token: Secret,
    insecure_tls: bool,
) -> Result<Arc<dyn ControlPanel>, PanelError> {
    build_driver_with(PanelConfig::new(kind, url, user, token, insecure_tls))
}

/// [`build_driver`] with every knob.
pub fn build_driver_with(config: PanelConfig) -> Result<Arc<dyn ControlPanel>, PanelError> {
    let endpoint = PanelEndpoint::new(&config)?;
    Ok(match config.kind {
        PanelKind::Cpanel => Arc::new(cpanel::CpanelDriver::new(endpoint, config.fs_root)),
        PanelKind::Plesk => Arc::new(plesk::PleskDriver::new(endpoint, config.fs_root)),
        PanelKind::Directadmin => Arc::new(directadmin::DirectAdminDriver::new(
            endpoint,
            config.fs_root,
        )),
    })
}
