//! Drift between what the controller believes a server hosts and what its panel reports:
//! accounts on the panel with no service (orphans), services whose account is gone (missing),
//! and suspension state that disagrees. Pure: the caller fetches both sides.

use mpanel_common::status::ServiceStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::Service;

/// One account as the agent's `list_accounts` command reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PanelAccount {
    pub username: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub suspended: bool,
}

/// An account on the panel that no live service owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrphanAccount {
    pub username: String,
    pub domain: Option<String>,
    /// The finished service that once owned the account, if any (terminated but left behind).
    pub former_service_id: Option<i64>,
}

/// An active or suspended service whose account is not on the panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingAccount {
    pub service_id: i64,
    pub username: String,
    pub domain: String,
    /// The service's status: active or suspended.
    #[schema(value_type = String, example = "active")]
    pub status: ServiceStatus,
}

/// A service whose account is suspended on the panel when it should not be, or the reverse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateMismatch {
    pub service_id: i64,
    pub username: String,
    /// active or suspended.
    #[schema(value_type = String, example = "active")]
    pub service_status: ServiceStatus,
    pub panel_suspended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub orphans: Vec<OrphanAccount>,
    pub missing: Vec<MissingAccount>,
    pub state_mismatches: Vec<StateMismatch>,
}

impl DriftReport {
    pub fn is_clean(&self) -> bool {
        self.orphans.is_empty() && self.missing.is_empty() && self.state_mismatches.is_empty()
    }
}

/// Compares the services placed on one server with that server's panel accounts.
///
/// A `pending` service may be half-provisioned, so its account is neither required nor an
/// orphan. Active and suspended services must have an account in the matching state. An
/// account whose only service is terminated or cancelled is an orphan (left behind).
pub fn compute_drift(services: &[Service], accounts: &[PanelAccount]) -> DriftReport {
    let mut report = DriftReport::default();
    let live = |s: &&&Service| {
        matches!(
            s.status,
            ServiceStatus::Pending | ServiceStatus::Active | ServiceStatus::Suspended
        )
    };
    for account in accounts {
        let owners: Vec<&Service> = services
            .iter()
            .filter(|s| s.username.as_deref() == Some(account.username.as_str()))
            .collect();
        match owners.iter().find(live) {
            None => report.orphans.push(OrphanAccount {
                username: account.username.clone(),
                domain: account.domain.clone(),
                former_service_id: owners.first().map(|s| s.id.get()),
            }),
            Some(service) => {
                let expected_suspended = match service.status {
                    ServiceStatus::Active => Some(false),
                    ServiceStatus::Suspended => Some(true),
                    _ => None,
                };
                if let Some(expected) = expected_suspended
                    && expected != account.suspended
                {
                    report.state_mismatches.push(StateMismatch {
                        service_id: service.id.get(),
                        username: account.username.clone(),
                        service_status: service.status,
                        panel_suspended: account.suspended,
                    });
                }
            }
        }
    }
    for service in services {
        let Some(username) = service.username.as_deref() else {
            continue;
        };
        let must_exist = matches!(
            service.status,
            ServiceStatus::Active | ServiceStatus::Suspended
        );
        if must_exist && !accounts.iter().any(|a| a.username == username) {
            report.missing.push(MissingAccount {
                service_id: service.id.get(),
                username: username.to_owned(),
                domain: service.domain.clone(),
                status: service.status,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use mpanel_common::status::BillingCycle;

    use super::*;

    fn service(id: i64, username: &str, status: ServiceStatus) -> Service {
        Service {
            id: id.into(),
            customer_id: 1.into(),
            product_id: 1.into(),
            server_id: Some(1),
            domain: format!("{username}.example"),
            username: Some(username.to_owned()),
            password_encrypted: None,
            status,
            billing_cycle: BillingCycle::Monthly,
            provisioning_error: None,
            provisioned_at: None,
            next_due_at: None,
            billing_day: None,
            dispute_ref: None,
            suspended_at: None,
            suspension_reason: None,
            terminated_at: None,
            mailbox_password_encrypted: None,
            database_password_encrypted: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn account(username: &str, suspended: bool) -> PanelAccount {
        PanelAccount {
            username: username.to_owned(),
            domain: None,
            suspended,
        }
    }

    #[test]
    fn matching_state_is_clean() {
        let services = [
            service(1, "alpha", ServiceStatus::Active),
            service(2, "beta", ServiceStatus::Suspended),
        ];
        let accounts = [account("alpha", false), account("beta", true)];
        assert!(compute_drift(&services, &accounts).is_clean());
    }

    #[test]
    fn an_account_without_a_service_is_an_orphan() {
        let report = compute_drift(&[], &[account("stray", false)]);
        assert_eq!(report.orphans.len(), 1);
        assert_eq!(report.orphans[0].username, "stray");
        assert_eq!(report.orphans[0].former_service_id, None);
    }

    #[test]
    fn an_account_left_behind_by_a_terminated_service_is_an_orphan_naming_it() {
        let report = compute_drift(
            &[service(7, "gone", ServiceStatus::Terminated)],
            &[account("gone", true)],
        );
        assert_eq!(report.orphans[0].former_service_id, Some(7));
        assert!(report.missing.is_empty() && report.state_mismatches.is_empty());
    }

    #[test]
    fn an_active_service_without_its_account_is_missing() {
        let report = compute_drift(&[service(3, "lost", ServiceStatus::Active)], &[]);
        assert_eq!(report.missing.len(), 1);
        assert_eq!(
            (report.missing[0].service_id, report.missing[0].status),
            (3, ServiceStatus::Active)
        );
    }

    #[test]
    fn a_pending_service_is_neither_missing_nor_owner_of_an_orphan() {
        let services = [
            service(4, "halfway", ServiceStatus::Pending),
            service(5, "notyet", ServiceStatus::Pending),
        ];
        let report = compute_drift(&services, &[account("halfway", false)]);
        assert!(report.is_clean(), "{report:?}");
    }

    #[test]
    fn suspension_disagreements_are_reported_both_ways() {
        let services = [
            service(1, "shouldrun", ServiceStatus::Active),
            service(2, "shouldstop", ServiceStatus::Suspended),
        ];
        let accounts = [account("shouldrun", true), account("shouldstop", false)];
        let report = compute_drift(&services, &accounts);
        let pairs: Vec<_> = report
            .state_mismatches
            .iter()
            .map(|m| (m.service_id, m.panel_suspended))
            .collect();
        assert_eq!(pairs, [(1, true), (2, false)]);
    }
}
