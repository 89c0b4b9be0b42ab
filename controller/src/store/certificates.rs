//! Rows of `ssl_certificates`: what each service's site certificate is, as the agent last
//! reported it, which ACME certificates are due for renewal, and which expiring ones the
//! customer must be told about. `impl_certificate_store!` instantiates the SQL for both
//! backends like every store module: portable SQL, `$n` placeholders, times as BIGINT
//! milliseconds.
//!
//! Renewal is scheduled from `renew_after` (two thirds of the lifetime, set when a certificate
//! is recorded); the `ssl-renewals` job (`crate::ssl`) polls [`CertificateStore::due_renewals`]
//! and records each outcome here. A failed renewal keeps the installed certificate and its
//! `renew_after`, and is not retried before `next_renewal_at`.

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
    /// `false`: the controller does not renew it; the customer is reminded before it expires.
    pub auto_renew: bool,
    /// Failed renewals in a row since it was last issued.
    pub renewal_attempts: i32,
    /// After a failed renewal, the earliest time of the next attempt.
    pub next_renewal_at: Option<i64>,
    /// The `not_after` the customer was reminded about (one reminder per certificate).
    pub reminder_sent_for: Option<i64>,
    pub reminder_sent_at: Option<i64>,
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
    /// Issued ACME certificates renewed automatically whose `renew_after` is at or before
    /// `now` and whose backoff after a failed renewal (if any) is over, soonest first.
    async fn due_renewals(&self, now: i64, limit: i64) -> StoreResult<Vec<SslCertificate>>;
    /// Records a failed renewal of certificate `id`: its error, one more attempt, and the
    /// earliest time of the next one. The installed certificate stays as recorded.
    async fn record_certificate_renewal_failed(
        &self,
        id: i64,
        error: &str,
        next_renewal_at: i64,
    ) -> StoreResult<SslCertificate>;
    /// Stops renewing certificate `id` (its service is gone), saying why.
    async fn stop_certificate_renewal(&self, id: i64, reason: &str) -> StoreResult<()>;
    /// Whether the controller renews (service, domain)'s certificate; `false` when there is
    /// no such row.
    async fn set_certificate_auto_renew(
        &self,
        service_id: ServiceId,
        domain: &str,
        auto_renew: bool,
    ) -> StoreResult<bool>;
    /// Issued certificates still valid at `now` that expire by `until`, are not renewed
    /// automatically or whose latest renewal failed, and whose customer has not been reminded
    /// about this certificate (this `not_after`) yet; soonest expiry first.
    async fn certificates_to_remind(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<SslCertificate>>;
    /// Notes that the customer was reminded about certificate `id` expiring at `not_after`;
    /// `false` when that was noted already (or the certificate has changed since).
    async fn mark_certificate_reminded(
        &self,
        id: i64,
        not_after: i64,
        now: i64,
    ) -> StoreResult<bool>;
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
                     not_after, renew_after, last_error, created_at, updated_at, auto_renew,
                     renewal_attempts, next_renewal_at, reminder_sent_for, reminder_sent_at"
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
                             renewal_attempts = 0, next_renewal_at = NULL,
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
                    .fetch_one(self.writer())
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
                    .fetch_one(self.writer())
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
                         WHERE provider = 'acme' AND status = 'issued' AND auto_renew = TRUE
                           AND renew_after IS NOT NULL AND renew_after <= $1
                           AND (next_renewal_at IS NULL OR next_renewal_at <= $1)
                         ORDER BY renew_after, id
                         LIMIT $2"
                    ))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn record_certificate_renewal_failed(
                    &self,
                    id: i64,
                    error: &str,
                    next_renewal_at: i64,
                ) -> StoreResult<SslCertificate> {
                    Ok(sqlx::query_as::<_, SslCertificate>(concat!(
                        "UPDATE ssl_certificates SET last_error = $2,
                             renewal_attempts = renewal_attempts + 1, next_renewal_at = $3,
                             updated_at = $4
                         WHERE id = $1
                         RETURNING ",
                        columns!(),
                        ""
                    ))
                    .bind(id)
                    .bind(error)
                    .bind(next_renewal_at)
                    .bind(now_ms())
                    .fetch_one(self.writer())
                    .await?)
                }

                async fn stop_certificate_renewal(&self, id: i64, reason: &str) -> StoreResult<()> {
                    sqlx::query(
                        "UPDATE ssl_certificates SET renew_after = NULL, next_renewal_at = NULL,
                             last_error = $2, updated_at = $3
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(reason)
                    .bind(now_ms())
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn set_certificate_auto_renew(
                    &self,
                    service_id: ServiceId,
                    domain: &str,
                    auto_renew: bool,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE ssl_certificates SET auto_renew = $3, updated_at = $4
                         WHERE service_id = $1 AND domain = $2",
                    )
                    .bind(service_id.get())
                    .bind(domain)
                    .bind(auto_renew)
                    .bind(now_ms())
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn certificates_to_remind(
                    &self,
                    now: i64,
                    until: i64,
                    limit: i64,
                ) -> StoreResult<Vec<SslCertificate>> {
                    Ok(sqlx::query_as::<_, SslCertificate>(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM ssl_certificates
                         WHERE status = 'issued' AND not_after IS NOT NULL
                           AND not_after > $1 AND not_after <= $2
                           AND (auto_renew = FALSE OR renewal_attempts > 0)
                           AND (reminder_sent_for IS NULL OR reminder_sent_for <> not_after)
                         ORDER BY not_after, id
                         LIMIT $3"
                    ))
                    .bind(now)
                    .bind(until)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn mark_certificate_reminded(
                    &self,
                    id: i64,
                    not_after: i64,
                    now: i64,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE ssl_certificates SET reminder_sent_for = $2, reminder_sent_at = $3
                         WHERE id = $1 AND not_after = $2
                           AND (reminder_sent_for IS NULL OR reminder_sent_for <> $2)",
                    )
                    .bind(id)
                    .bind(not_after)
                    .bind(now)
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() > 0)
                }
            }
        };
    };
}

pub(crate) use impl_certificate_store;
