//! Site certificates after provisioning: the `ssl-renewals` job renews ACME certificates that
//! have come due through their server's agent (the same `ssl` command the provisioning step
//! sends: issue from the agent's ACME CA, then install), and `ssl-renewal-reminders` tells the
//! customer, once per certificate, about one that expires soon and will not be renewed
//! automatically. Also what a certificate record is made of, shared with the provisioning step.
//!
//! This module decides and records; the agent does the ACME work and the SQL lives in
//! `store::certificates`. A failed renewal keeps the installed certificate, records why, and is
//! retried after a backoff; it never holds up the other due certificates.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use mpanel_common::DomainName;
use mpanel_common::command::{
    ACME_CAPABILITY, AcmeOrder, Certificate, CertificateDone, CertificateProvider,
    IssuedCertificate,
};
use mpanel_common::ids::ServiceId;
use mpanel_common::status::{ServiceStatus, SslProvider};
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::crypto::Cipher;
use crate::fleet::Fleet;
use crate::jobs::Dispatcher;
use crate::store::lease_queue::EMAIL;
use crate::store::{DynStore, IssuedSslCertificate, SslCertificate, StoreError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Certificates renewed per run at most; the rest are due on the next run.
const RENEWALS_PER_RUN: i64 = 200;
/// Renewals in flight at once, so one slow agent or CA does not hold up the others.
const RENEWALS_AT_ONCE: usize = 4;
/// How long before expiry the customer is reminded.
pub const REMINDER_WINDOW_MS: i64 = 30 * DAY_MS;
const REMINDERS_PER_RUN: i64 = 500;

/// When a certificate valid from `not_before` to `not_after` comes due for renewal: two thirds
/// of the way through its life, as the CAs recommend.
pub fn renew_after(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) / 3 * 2
}

/// The record of a certificate the agent issued and installed for (service, domain).
pub fn issued_record(
    service_id: ServiceId,
    domain: &str,
    cert: &IssuedCertificate,
) -> IssuedSslCertificate {
    IssuedSslCertificate {
        service_id,
        domain: domain.to_owned(),
        provider: "acme".to_owned(),
        issuer: cert.issuer.clone(),
        serial: cert.serial.clone(),
        not_before: cert.not_before_ms,
        not_after: cert.not_after_ms,
        renew_after: renew_after(cert.not_before_ms, cert.not_after_ms),
    }
}

/// Whether a recorded certificate can stand in for a new one at `now`: an issued ACME
/// certificate that is not yet due for renewal (so a third or more of its life is left).
/// Ordering again would only spend the CA's duplicate-certificate limit.
pub fn is_reusable(cert: &SslCertificate, now: i64) -> bool {
    cert.provider == "acme"
        && cert.status == "issued"
        && cert.not_after.is_some_and(|t| t > now)
        && cert.renew_after.is_some_and(|t| t > now)
}

/// How long to wait after the `failures`-th failed renewal in a row: an hour, doubling, at most
/// a day. Hourly runs thus retry soon after a passing problem without hammering the CA
/// (which limits failed validations per name and hour).
pub fn renewal_backoff_ms(failures: i32) -> i64 {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 5)).unwrap_or(0);
    (HOUR_MS << doublings).min(DAY_MS)
}

/// What one `ssl-renewals` run did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RenewalSummary {
    /// Certificates found due.
    pub due: usize,
    pub renewed: usize,
    /// Renewals that failed this time, with why; each is retried after its backoff.
    pub failed: Vec<FailedRenewal>,
    /// Certificates no longer renewed (service gone, server off ACME).
    pub stopped: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FailedRenewal {
    pub certificate_id: i64,
    pub error: String,
    pub next_attempt_at: i64,
}

/// What one `ssl-renewal-reminders` run did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReminderSummary {
    /// Reminders committed to the outbox by this run.
    pub reminded: usize,
    /// Certificates of services that have ended: noted without a message.
    pub skipped: usize,
}

/// Why one certificate was not renewed.
enum NotRenewed {
    /// Worth another attempt later.
    Failed(String),
    /// Renewing it no longer makes sense.
    Stop(String),
}

enum Outcome {
    Renewed,
    Failed(FailedRenewal),
    Stopped,
}

/// The two certificate jobs' bodies.
#[derive(Clone)]
pub struct SslRenewals {
    store: DynStore,
    fleet: Fleet,
    cipher: Arc<Cipher>,
    config: Arc<Config>,
    /// Wakes the email sender after a reminder is queued.
    dispatcher: Dispatcher,
}

impl std::fmt::Debug for SslRenewals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SslRenewals")
    }
}

impl SslRenewals {
    pub fn new(
        store: DynStore,
        fleet: Fleet,
        cipher: Arc<Cipher>,
        config: Arc<Config>,
        dispatcher: Dispatcher,
    ) -> Self {
        SslRenewals {
            store,
            fleet,
            cipher,
            config,
            dispatcher,
        }
    }

    /// Renews the certificates due at `now`, a few at a time, recording each outcome as it
    /// comes. A store error while recording fails the run, after the others have finished.
    pub async fn renew_due(&self, now: i64) -> Result<RenewalSummary, StoreError> {
        let due = self.store.due_renewals(now, RENEWALS_PER_RUN).await?;
        let mut summary = RenewalSummary {
            due: due.len(),
            ..RenewalSummary::default()
        };
        let outcomes: Vec<Result<Outcome, StoreError>> = futures::stream::iter(due)
            .map(|cert| self.renew_one(cert, now))
            .buffer_unordered(RENEWALS_AT_ONCE)
            .collect()
            .await;
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(Outcome::Renewed) => summary.renewed += 1,
                Ok(Outcome::Failed(failed)) => summary.failed.push(failed),
                Ok(Outcome::Stopped) => summary.stopped += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        summary.failed.sort_by_key(|f| f.certificate_id);
        Ok(summary)
    }

    async fn renew_one(&self, cert: SslCertificate, now: i64) -> Result<Outcome, StoreError> {
        match self.renew(&cert).await {
            Ok(issued) => {
                let recorded = self.store.record_certificate_issued(&issued).await?;
                tracing::info!(
                    certificate_id = cert.id,
                    service_id = %cert.service_id,
                    serial = recorded.serial.as_deref().unwrap_or_default(),
                    not_after = recorded.not_after.unwrap_or_default(),
                    "certificate renewed"
                );
                Ok(Outcome::Renewed)
            }
            Err(NotRenewed::Stop(reason)) => {
                tracing::info!(certificate_id = cert.id, service_id = %cert.service_id, reason = %reason, "certificate no longer renewed");
                self.store
                    .stop_certificate_renewal(cert.id, &reason)
                    .await?;
                Ok(Outcome::Stopped)
            }
            Err(NotRenewed::Failed(error)) => {
                let next = now + renewal_backoff_ms(cert.renewal_attempts.saturating_add(1));
                tracing::warn!(
                    certificate_id = cert.id,
                    service_id = %cert.service_id,
                    attempts = cert.renewal_attempts + 1,
                    next_attempt_at = next,
                    error = %error,
                    "certificate renewal failed"
                );
                self.store
                    .record_certificate_renewal_failed(cert.id, &error, next)
                    .await?;
                Ok(Outcome::Failed(FailedRenewal {
                    certificate_id: cert.id,
                    error,
                    next_attempt_at: next,
                }))
            }
        }
    }

    /// Asks the agent of the certificate's server to issue and install a new certificate for
    /// its domain, exactly as the provisioning `ssl` step does.
    async fn renew(&self, cert: &SslCertificate) -> Result<IssuedSslCertificate, NotRenewed> {
        let failed = |e: StoreError| NotRenewed::Failed(format!("storage: {e}"));
        let service = self
            .store
            .get_service(cert.service_id)
            .await
            .map_err(failed)?;
        if matches!(
            service.status,
            ServiceStatus::Terminated | ServiceStatus::Cancelled
        ) {
            return Err(NotRenewed::Stop(format!(
                "not renewed: the service is {}",
                service.status.as_str()
            )));
        }
        let (Some(server_id), Some(username)) = (service.server_id, service.username.clone())
        else {
            return Err(NotRenewed::Stop(
                "not renewed: the service has no account on a server".to_owned(),
            ));
        };
        let server = self
            .store
            .get_server(server_id.into())
            .await
            .map_err(failed)?;
        if server.ssl_provider != SslProvider::Acme {
            return Err(NotRenewed::Stop(
                "not renewed: the server no longer issues with ACME".to_owned(),
            ));
        }
        if self.fleet.is_connected(server.id)
            && !self.fleet.has_capability(server.id, ACME_CAPABILITY)
        {
            return Err(NotRenewed::Failed(
                "the agent has no [acme] section".to_owned(),
            ));
        }
        let domain = DomainName::parse(&cert.domain)
            .map_err(|e| NotRenewed::Stop(format!("not renewed: domain: {e}")))?;
        let ip = server.ip_address.trim().parse::<IpAddr>().map_err(|_| {
            NotRenewed::Failed(format!(
                "server {}: ip_address '{}' is not an IP address",
                server.hostname, server.ip_address
            ))
        })?;
        let request = Certificate {
            username,
            domain,
            provider: CertificateProvider::Acme(AcmeOrder {
                ip,
                names: Vec::new(),
            }),
        };
        // The same key on every attempt to replace this certificate.
        let key = format!(
            "ssl-renewal:certificate:{}:{}",
            cert.id,
            cert.serial.as_deref().unwrap_or("none")
        );
        let deadline =
            Duration::from_secs(u64::from(self.config.provisioning_command_timeout_secs));
        match self.fleet.request(server.id, request, &key, deadline).await {
            Ok(CertificateDone::AcmeIssued(issued)) => {
                Ok(issued_record(cert.service_id, &cert.domain, &issued))
            }
            Ok(CertificateDone::AutoSslRequested) => Err(NotRenewed::Failed(
                "the agent answered an ACME request with AutoSSL".to_owned(),
            )),
            Err(e) => Err(NotRenewed::Failed(e.to_string())),
        }
    }

    /// Commits one `ssl_expiring` reminder per certificate that expires within
    /// [`REMINDER_WINDOW_MS`] of `now` and will not be renewed automatically (renewal off, or
    /// the latest renewal failed), then notes it on the certificate. The outbox's dedupe key
    /// names the certificate and its expiry, so a run that stopped between the two steps does
    /// not send a second message when repeated.
    pub async fn remind_expiring(&self, now: i64) -> Result<ReminderSummary, StoreError> {
        let certs = self
            .store
            .certificates_to_remind(now, now + REMINDER_WINDOW_MS, REMINDERS_PER_RUN)
            .await?;
        let mut summary = ReminderSummary::default();
        let mut queued_any = false;
        for cert in certs {
            let Some(not_after) = cert.not_after else {
                continue;
            };
            let service = self.store.get_service(cert.service_id).await?;
            if matches!(
                service.status,
                ServiceStatus::Terminated | ServiceStatus::Cancelled
            ) {
                self.store
                    .mark_certificate_reminded(cert.id, not_after, now)
                    .await?;
                summary.skipped += 1;
                continue;
            }
            let customer = self.store.get_customer(service.customer_id).await?;
            let expires_on =
                mpanel_common::billing::format_date(mpanel_common::billing::ms_to_date(not_after));
            let context = json!({
                "domain": cert.domain,
                "customer_name": customer.name,
                "expires_on": expires_on,
                "days_left": (not_after - now) / DAY_MS,
                "auto_renew": cert.auto_renew,
                "renewal_failed": cert.renewal_attempts > 0,
            });
            let sealed = self
                .cipher
                .seal_str(&context.to_string())
                .map_err(|e| StoreError::Corrupt(format!("cannot seal an email: {e}")))?;
            let key = format!("ssl-expiring:certificate:{}:{not_after}", cert.id);
            let subject = format!(
                "The SSL certificate of {} expires on {expires_on}",
                cert.domain
            );
            let queued = self
                .store
                .queue_email(&key, &customer.email, "ssl_expiring", &subject, &sealed)
                .await?;
            queued_any |= queued;
            if self
                .store
                .mark_certificate_reminded(cert.id, not_after, now)
                .await?
                && queued
            {
                summary.reminded += 1;
            }
        }
        if queued_any {
            self.dispatcher.wake_queue(&EMAIL);
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(status: &str, not_after: i64, renew_after: Option<i64>) -> SslCertificate {
        SslCertificate {
            id: 1,
            service_id: ServiceId::from(1),
            domain: "shop.example".into(),
            provider: "acme".into(),
            status: status.into(),
            issuer: Some("CN=Pebble".into()),
            serial: Some("0a".into()),
            not_before: Some(0),
            not_after: Some(not_after),
            renew_after,
            last_error: None,
            created_at: 0,
            updated_at: 0,
            auto_renew: true,
            renewal_attempts: 0,
            next_renewal_at: None,
            reminder_sent_for: None,
            reminder_sent_at: None,
        }
    }

    #[test]
    fn renewal_comes_due_two_thirds_through_the_life() {
        assert_eq!(renew_after(1_000, 91_000), 61_000);
        assert_eq!(renew_after(5, 5), 5);
    }

    #[test]
    fn only_an_issued_certificate_not_yet_due_is_reused() {
        let now = 100;
        assert!(is_reusable(&cert("issued", 300, Some(200)), now));
        assert!(!is_reusable(&cert("issued", 300, Some(100)), now), "due");
        assert!(!is_reusable(&cert("issued", 100, Some(50)), now), "expired");
        assert!(!is_reusable(&cert("issued", 300, None), now));
        assert!(!is_reusable(&cert("waiting_for_dns", 300, Some(200)), now));
        let mut autossl = cert("issued", 300, Some(200));
        autossl.provider = "autossl".into();
        assert!(!is_reusable(&autossl, now));
    }

    #[test]
    fn failed_renewals_back_off_from_an_hour_to_a_day() {
        assert_eq!(renewal_backoff_ms(1), HOUR_MS);
        assert_eq!(renewal_backoff_ms(2), 2 * HOUR_MS);
        assert_eq!(renewal_backoff_ms(4), 8 * HOUR_MS);
        assert_eq!(renewal_backoff_ms(6), DAY_MS);
        assert_eq!(renewal_backoff_ms(50), DAY_MS);
        assert_eq!(renewal_backoff_ms(0), HOUR_MS);
    }
}
