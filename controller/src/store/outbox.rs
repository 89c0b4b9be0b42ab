//! The email outbox: a message is committed here before anyone tries to send it, so an SMTP
//! outage delays mail but loses none, and the dedupe key makes queueing the same notice twice a
//! no-op.
//!
//! Senders claim due rows like workers claim tasks: `queued` and due, or `sending` with an
//! expired lease (its sender died mid-send). The table has no holder column, so the lease
//! expiry a claim wrote is the fencing token: every later write names it and touches nothing
//! once another sender has re-claimed the row (a re-claim only happens after the expiry, so
//! its expiry is strictly later and never equal).

use async_trait::async_trait;

use super::StoreResult;

/// One outbox row. `body_encrypted` is sealed with `ENCRYPTION_KEY`: it carries credentials.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxEmail {
    pub id: i64,
    pub dedupe_key: String,
    pub to_address: String,
    pub template: String,
    pub subject: String,
    pub body_encrypted: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// Sending attempts begun (counted when a sender claims the row).
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_expires_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queues a message; `false` when one with this dedupe key already exists.
    async fn queue_email(
        &self,
        dedupe_key: &str,
        to_address: &str,
        template: &str,
        subject: &str,
        body_sealed: &str,
    ) -> StoreResult<bool>;
    /// Marks a queued message as delivered.
    async fn mark_email_sent(&self, dedupe_key: &str) -> StoreResult<()>;
    /// `queued`, `sending`, `sent` or `failed`, if the message exists.
    async fn email_status(&self, dedupe_key: &str) -> StoreResult<Option<String>>;
    /// The whole row, for tests and admin views.
    async fn get_email(&self, dedupe_key: &str) -> StoreResult<Option<OutboxEmail>>;
    /// Claims the next due message (`sending` until `now + lease_ms`), counting an attempt.
    /// The returned row's `lease_expires_at` is the token the next write must name.
    async fn claim_next_email(&self, lease_ms: i64) -> StoreResult<Option<OutboxEmail>>;
    /// `sending` → `sent`; `false` when the lease was lost to another sender meanwhile.
    async fn complete_email(&self, id: i64, lease: i64) -> StoreResult<bool>;
    /// `sending` → `queued`, due again at `next_attempt_at`, keeping the error visible.
    async fn retry_email(
        &self,
        id: i64,
        lease: i64,
        error: &str,
        next_attempt_at: i64,
    ) -> StoreResult<bool>;
    /// `sending` → `failed`, for good (the sender gave up; the row stays for an admin).
    async fn fail_email(&self, id: i64, lease: i64, error: &str) -> StoreResult<bool>;
    /// When the next message falls due (a queued one, or an expired lease), so an idle sender
    /// knows how long to sleep.
    async fn next_email_due_at(&self) -> StoreResult<Option<i64>>;
}

macro_rules! impl_outbox_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::outbox::{OutboxEmail, OutboxStore};
            use $crate::store::{StoreResult, now_ms};

            #[async_trait]
            impl OutboxStore for $store {
                async fn queue_email(
                    &self,
                    dedupe_key: &str,
                    to_address: &str,
                    template: &str,
                    subject: &str,
                    body_sealed: &str,
                ) -> StoreResult<bool> {
                    let now = now_ms();
                    let inserted = sqlx::query(
                        "INSERT INTO email_outbox (dedupe_key, to_address, template, subject,
                             body_encrypted, status, attempts, next_attempt_at, created_at)
                         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6)
                         ON CONFLICT (dedupe_key) DO NOTHING",
                    )
                    .bind(dedupe_key)
                    .bind(to_address)
                    .bind(template)
                    .bind(subject)
                    .bind(body_sealed)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    Ok(inserted == 1)
                }

                async fn mark_email_sent(&self, dedupe_key: &str) -> StoreResult<()> {
                    sqlx::query(
                        "UPDATE email_outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1
                         WHERE dedupe_key = $1 AND status <> 'sent'",
                    )
                    .bind(dedupe_key)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn email_status(&self, dedupe_key: &str) -> StoreResult<Option<String>> {
                    Ok(sqlx::query_scalar("SELECT status FROM email_outbox WHERE dedupe_key = $1")
                        .bind(dedupe_key)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn get_email(&self, dedupe_key: &str) -> StoreResult<Option<OutboxEmail>> {
                    Ok(sqlx::query_as::<_, OutboxEmail>(
                        "SELECT * FROM email_outbox WHERE dedupe_key = $1",
                    )
                    .bind(dedupe_key)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn claim_next_email(&self, lease_ms: i64) -> StoreResult<Option<OutboxEmail>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let email = sqlx::query_as::<_, OutboxEmail>(<$store>::CLAIM_EMAIL_SQL)
                        .bind(now)
                        .bind(now + lease_ms.max(1))
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(email)
                }

                async fn complete_email(&self, id: i64, lease: i64) -> StoreResult<bool> {
                    let rows = sqlx::query(
                        "UPDATE email_outbox
                         SET status = 'sent', sent_at = $3, lease_expires_at = NULL, last_error = NULL
                         WHERE id = $1 AND status = 'sending' AND lease_expires_at = $2",
                    )
                    .bind(id)
                    .bind(lease)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    Ok(rows == 1)
                }

                async fn retry_email(
                    &self,
                    id: i64,
                    lease: i64,
                    error: &str,
                    next_attempt_at: i64,
                ) -> StoreResult<bool> {
                    let rows = sqlx::query(
                        "UPDATE email_outbox
                         SET status = 'queued', lease_expires_at = NULL, last_error = $3,
                             next_attempt_at = $4
                         WHERE id = $1 AND status = 'sending' AND lease_expires_at = $2",
                    )
                    .bind(id)
                    .bind(lease)
                    .bind(error)
                    .bind(next_attempt_at)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    Ok(rows == 1)
                }

                async fn fail_email(&self, id: i64, lease: i64, error: &str) -> StoreResult<bool> {
                    let rows = sqlx::query(
                        "UPDATE email_outbox
                         SET status = 'failed', lease_expires_at = NULL, last_error = $3
                         WHERE id = $1 AND status = 'sending' AND lease_expires_at = $2",
                    )
                    .bind(id)
                    .bind(lease)
                    .bind(error)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    Ok(rows == 1)
                }

                async fn next_email_due_at(&self) -> StoreResult<Option<i64>> {
                    let queued: Option<i64> = sqlx::query_scalar(
                        "SELECT MIN(next_attempt_at) FROM email_outbox WHERE status = 'queued'",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    let leased: Option<i64> = sqlx::query_scalar(
                        "SELECT MIN(lease_expires_at) FROM email_outbox WHERE status = 'sending'",
                    )
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(match (queued, leased) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    })
                }
            }
        };
    };
}

pub(crate) use impl_outbox_store;
