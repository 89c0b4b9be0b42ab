//! Idempotent account creation, shared by every driver.
//!
//! No panel's create call is idempotent, and some report a failure for a create that actually
//! happened (WHM "Sorry, a group for that username already exists." after a timed-out first try,
//! boxbilling#19). So the error text is never trusted: the account is looked up before creating and
//! again after any failure that may hide a success, and ownership is decided from what the panel
//! stores about the account, not from what the create call said.

use async_trait::async_trait;
use tracing::{debug, info, warn};

use super::types::{AccountInfo, AccountSpec, ErrorClass, PanelError};

/// The three steps a driver provides so [`ensure_account`] can make its create idempotent.
#[async_trait]
pub trait AccountCreation: Send + Sync {
    /// Looks the account up by username; `Ok(None)` when the panel says it does not exist.
    async fn lookup_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError>;

    /// One plain, non-idempotent create call.
    async fn create_account_once(&self, spec: &AccountSpec) -> Result<(), PanelError>;

    /// Completes an account that is ours but may be half-built (a Plesk customer whose
    /// subscription was never created). The default has nothing to complete.
    async fn complete_account(
        &self,
        _spec: &AccountSpec,
        info: AccountInfo,
    ) -> Result<AccountInfo, PanelError> {
        Ok(info)
    }
}

/// Whether an existing account belongs to the service in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    Foreign { reason: String },
}

/// Decides from the stored marker, or — on panels without a free field — from the domain and the
/// contact email together. Missing evidence counts as foreign: adopting an account we cannot
/// prove is ours would hand one customer's files to another.
pub fn judge_ownership(spec: &AccountSpec, info: &AccountInfo) -> Ownership {
    let foreign = |reason: String| Ownership::Foreign { reason };
    if let Some(marker) = &info.owner_marker {
        return if *marker == spec.owner_marker() {
            Ownership::Ours
        } else if marker.is_empty() {
            foreign("the account carries no mpanel marker".to_owned())
        } else {
            foreign(format!("the account is marked {marker:?}"))
        };
    }
    match info.domain.as_deref() {
        Some(d) if d.trim_end_matches('.').eq_ignore_ascii_case(&spec.domain) => {}
        Some(d) => return foreign(format!("the account's domain is {d:?}")),
        None => return foreign("the panel reports no domain for the account".to_owned()),
    }
    match info.contact_email.as_deref() {
        Some(e) if e.trim().eq_ignore_ascii_case(spec.contact_email.trim()) => Ownership::Ours,
        Some(_) => foreign("the account has another contact email".to_owned()),
        None => foreign("the panel reports no contact email for the account".to_owned()),
    }
}

/// Lookup → create → on error lookup again → ownership check. A retried or concurrent call for the
/// same service returns the one existing account; an account of another service is a conflict.
pub async fn ensure_account<P>(panel: &P, spec: &AccountSpec) -> Result<AccountInfo, PanelError>
where
    P: AccountCreation + ?Sized,
{
    const OP: &str = "ensure_account";
    let service_id = spec.service_id;

    if let Some(existing) = panel.lookup_account(&spec.username).await? {
        debug!(service_id, "account already exists, checking ownership");
        return adopt(panel, spec, existing).await;
    }

    match panel.create_account_once(spec).await {
        Ok(()) => {}
        // Nothing was done with bad credentials, and a second look would fail the same way.
        Err(e) if e.class() == ErrorClass::Auth => return Err(e),
        Err(create_error) => {
            warn!(service_id, error = %create_error, "account create failed, looking again");
            return match panel.lookup_account(&spec.username).await {
                Ok(Some(existing)) => {
                    info!(service_id, "account exists despite the create error");
                    adopt(panel, spec, existing).await
                }
                Ok(None) => Err(create_error),
                Err(lookup_error) if lookup_error.class() == ErrorClass::Auth => Err(lookup_error),
                // We cannot tell whether the create happened: only a retry can find out, so
                // a "permanent" create error must not stop it.
                Err(lookup_error) => Err(PanelError::retryable(
                    OP,
                    format!(
                        "create failed ({create_error}) and the follow-up lookup failed ({lookup_error})"
                    ),
                )),
            };
        }
    }

    match panel.lookup_account(&spec.username).await? {
        Some(created) => {
            info!(service_id, "account created");
            adopt(panel, spec, created).await
        }
        None => Err(PanelError::retryable(
            OP,
            "the panel accepted the create but does not list the account yet",
        )),
    }
}

async fn adopt<P>(
    panel: &P,
    spec: &AccountSpec,
    info: AccountInfo,
) -> Result<AccountInfo, PanelError>
where
    P: AccountCreation + ?Sized,
{
    match judge_ownership(spec, &info) {
        Ownership::Ours => panel.complete_account(spec, info).await,
        Ownership::Foreign { reason } => Err(PanelError::conflict(
            "ensure_account",
            format!(
                "username {:?} is taken by an account that is not service {}: {reason}",
                spec.username, spec.service_id
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::Secret;

    fn spec() -> AccountSpec {
        AccountSpec {
            service_id: 7,
            username: "alice".into(),
            domain: "alice.example".into(),
            password: Secret::new("pw"),
            package: "default".into(),
            contact_email: "alice@mail.example".into(),
            quota_mb: None,
            ip: None,
        }
    }

    fn info(domain: &str, email: &str, marker: Option<&str>) -> AccountInfo {
        AccountInfo {
            username: "alice".into(),
            domain: Some(domain.into()),
            contact_email: Some(email.into()),
            owner_marker: marker.map(str::to_owned),
            ..AccountInfo::default()
        }
    }

    #[test]
    fn matching_domain_and_email_is_ours() {
        let i = info("ALICE.example", "Alice@mail.example", None);
        assert_eq!(judge_ownership(&spec(), &i), Ownership::Ours);
    }

    #[test]
    fn other_domain_or_email_is_foreign() {
        assert!(matches!(
            judge_ownership(&spec(), &info("bob.example", "alice@mail.example", None)),
            Ownership::Foreign { .. }
        ));
        assert!(matches!(
            judge_ownership(&spec(), &info("alice.example", "bob@mail.example", None)),
            Ownership::Foreign { .. }
        ));
    }

    #[test]
    fn a_stored_marker_decides_alone() {
        let ours = info("other.example", "x@y", Some("mpanel-service-7"));
        assert_eq!(judge_ownership(&spec(), &ours), Ownership::Ours);
        let theirs = info(
            "alice.example",
            "alice@mail.example",
            Some("mpanel-service-8"),
        );
        assert!(matches!(
            judge_ownership(&spec(), &theirs),
            Ownership::Foreign { .. }
        ));
        let blank = info("alice.example", "alice@mail.example", Some(""));
        assert!(matches!(
            judge_ownership(&spec(), &blank),
            Ownership::Foreign { .. }
        ));
    }

    /// A panel whose create reports `error` but (when `creates` is set) makes the account
    /// anyway: the boxbilling#19 trap without HTTP.
    struct TrapPanel {
        accounts: std::sync::Mutex<Vec<AccountInfo>>,
        error: PanelError,
        creates: bool,
    }

    #[async_trait]
    impl AccountCreation for TrapPanel {
        async fn lookup_account(&self, username: &str) -> Result<Option<AccountInfo>, PanelError> {
            let accounts = self.accounts.lock().unwrap();
            Ok(accounts.iter().find(|a| a.username == username).cloned())
        }

        async fn create_account_once(&self, spec: &AccountSpec) -> Result<(), PanelError> {
            if self.creates {
                self.accounts.lock().unwrap().push(AccountInfo {
                    username: spec.username.clone(),
                    domain: Some(spec.domain.clone()),
                    contact_email: Some(spec.contact_email.clone()),
                    ..AccountInfo::default()
                });
            }
            Err(self.error.clone())
        }
    }

    fn trap(creates: bool, error: PanelError) -> TrapPanel {
        TrapPanel {
            accounts: std::sync::Mutex::new(Vec::new()),
            error,
            creates,
        }
    }

    #[tokio::test]
    async fn create_error_hiding_a_success_returns_the_one_account() {
        let panel = trap(
            true,
            PanelError::conflict("createacct", "group already exists"),
        );
        let info = ensure_account(&panel, &spec()).await.unwrap();
        assert_eq!(info.username, "alice");
        assert_eq!(panel.accounts.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn timed_out_create_that_happened_returns_the_account() {
        let panel = trap(
            true,
            PanelError::retryable("createacct", "no answer within 30 s"),
        );
        assert!(ensure_account(&panel, &spec()).await.is_ok());
    }

    #[tokio::test]
    async fn create_error_without_an_account_is_returned_unchanged() {
        let panel = trap(false, PanelError::permanent("createacct", "bad package"));
        let err = ensure_account(&panel, &spec()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.message(), "bad package");
    }

    #[test]
    fn missing_evidence_is_foreign() {
        let mut i = info("alice.example", "alice@mail.example", None);
        i.contact_email = None;
        assert!(matches!(
            judge_ownership(&spec(), &i),
            Ownership::Foreign { .. }
        ));
    }
}
