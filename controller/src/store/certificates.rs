//! Rows of `ssl_certificates`: what each service's site certificate is, as the agent last
//! reported it, and which ACME certificates are due for renewal. `impl_certificate_store!`
//! instantiates the SQL for both backends like every store module: portable SQL, `$n`
//! placeholders, times as BIGINT milliseconds.
//!
//! Renewal is scheduled from `renew_after` (two thirds of the lifetime, set by the provisioning
//! step). Enqueuing renewal work needs a task kind that re-runs the `ssl` command for one
//! service; there is none yet, so [`CertificateStore::due_renewals`] is the query that job will
//! poll.

use async_trait::async_trait;
use mpanel_common::ids::ServiceId;

use super::StoreResult;

/// A service's certificate as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SslCertificate {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub service_id: ServiceId,
    pub domain: String,
    /// `acme` or `autossl`.
    pub provider: String,
    /// `pending`, `waiting_for_dns`, `issued`, `failed` or `expired`.
    pub status: String,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub renew_after: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A certificate the agent issued and installed.
#[derive(Debug, Clone)]
pub struct IssuedSslCertificate {
    pub service_id: ServiceId,
    pub domain: String,
    pub provider: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub renew_after: i64,
}

#[async_trait]
pub trait CertificateStore: Send + Sync {
    /// Records an issued certificate for (service, domain), replacing what was there.
    async fn record_certificate_issued(
        &self,
        cert: &IssuedSslCertificate,
    ) -> StoreResult<SslCertificate>;
    /// Marks (service, domain) as waiting for its DNS to point at the server, with the reason.
    async fn record_certificate_waiting_for_dns(
        &self,
        service_id: ServiceId,
        domain: &str,
        provider: &str,
        reason: &str,
    ) -> StoreResult<SslCertificate>;
    async fn get_certificate(
        &self,
        service_id: ServiceId,
        domain: &str,
    ) -> StoreResult<Option<SslCertificate>>;
    /// Issued ACME certificates whose `renew_after` is at or before `now`, soonest first.
    async fn due_renewals(&self, now: i64, limit: i64) -> StoreResult<Vec<SslCertificate>>;
}

macro_rules! impl_certificate_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::ServiceId;
            use $crate::store::certificates::{
                CertificateStore, IssuedSslCertificate, SslCertificate,
            };
            use $crate::store::{StoreResult, now_ms};

            // sqlx wants `'static` SQL, so the column list is spliced in with `concat!`.
            macro_rules! columns {
                () => {
                    "id, service_id, domain, provider, status, issuer, serial, not_before,
                     not_after, renew_after, last_error, created_at, updated_at"
                };
            }

            #[async_trait]
            impl CertificateStore for $store {
                async fn record_certificate_issued(
                    &self,
                    cert: &IssuedSslCertificate,
                ) -> StoreResult<SslCertificate> {
                    let now = now_ms();
                    Ok(sqlx::query_as::<_, SslCertificate>(concat!(
                        "INSERT INTO ssl_certificates (service_id, domain, provider, status, issuer,
                             serial, not_before, not_after, renew_after, last_error, created_at,
                             updated_at)
                         VALUES ($1, $2, $3, 'issued', $4, $5, $6, $7, $8, NULL, $9, $9)
                         ON CONFLICT (service_id, domain) DO UPDATE SET
                             provider = excluded.provider, status = 'issued',
                             issuer = excluded.issuer, serial = excluded.serial,
                             not_before = excluded.not_before, not_after = excluded.not_after,
                             renew_after = excluded.renew_after, last_error = NULL,
                             updated_at = excluded.updated_at
                         RETURNING ",
                        columns!(),
                        ""
                    ))
                    .bind(cert.service_id.get())
                    .bind(&cert.domain)
                    .bind(&cert.provider)
                    .bind(&cert.issuer)
                    .bind(&cert.serial)
                    .bind(cert.not_before)
                    .bind(cert.not_after)
                    .bind(cert.renew_after)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn record_certificate_waiting_for_dns(
                    &self,
                    service_id: ServiceId,
                    domain: &str,
                    provider: &str,
                    reason: &str,
                ) -> StoreResult<SslCertificate> {
                    let now = now_ms();
                    Ok(sqlx::query_as::<_, SslCertificate>(concat!(
                        "INSERT INTO ssl_certificates (service_id, domain, provider, status,
                             last_error, created_at, updated_at)
                         VALUES ($1, $2, $3, 'waiting_for_dns', $4, $5, $5)
                         ON CONFLICT (service_id, domain) DO UPDATE SET
                             provider = excluded.provider, status = 'waiting_for_dns',
                             last_error = excluded.last_error, updated_at = excluded.updated_at
                         RETURNING ",
                        columns!(),
                        ""
                    ))
                    .bind(service_id.get())
                    .bind(domain)
                    .bind(provider)
                    .bind(reason)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
                }

                async fn get_certificate(
                    &self,
                    service_id: ServiceId,
                    domain: &str,
                ) -> StoreResult<Option<SslCertificate>> {
                    Ok(sqlx::query_as::<_, SslCertificate>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM ssl_certificates
                         WHERE service_id = $1 AND domain = $2"
                    ))
                    .bind(service_id.get())
                    .bind(domain)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn due_renewals(
                    &self,
                    now: i64,
                    limit: i64,
                ) -> StoreResult<Vec<SslCertificate>> {
                    Ok(sqlx::query_as::<_, SslCertificate>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM ssl_certificates
                         WHERE provider = 'acme' AND status = 'issued'
                           AND renew_after IS NOT NULL AND renew_after <= $1
                         ORDER BY renew_after, id
                         LIMIT $2"
                    ))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        };
    };
}

pub(crate) use impl_certificate_store;
