//! The email outbox: a message is committed here before anyone tries to send it, so an SMTP
//! outage delays mail but loses none, and the dedupe key makes queueing the same notice twice a
//! no-op.
//!
//! The job runner works the outbox like the task queue (`lease_queue::EMAIL`): a sender claims a
//! due row (`queued` and due, or `sending` with an expired lease: its sender died mid-send) under
//! its holder name, and every later write names that holder.

use async_trait::async_trait;

use super::StoreResult;
use super::lease_queue::Claimed;

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
    pub lease_holder: Option<String>,
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
    /// The statuses of the messages with these keys (absent keys are left out).
    async fn email_statuses(
        &self,
        dedupe_keys: &[String],
    ) -> StoreResult<std::collections::HashMap<String, String>>;
    /// The whole row, for tests and admin views.
    async fn get_email(&self, dedupe_key: &str) -> StoreResult<Option<OutboxEmail>>;
    /// Claims the next due message for `holder` (`sending` until `now + lease_ms`), counting an
    /// attempt. Retrying, failing and renewing are the shared lease-queue writes
    /// (`lease_queue::EMAIL`), fenced by the holder.
    async fn claim_next_email(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<OutboxEmail>> {
        Ok(self.claim_email(holder, lease_ms).await?.map(|c| c.row))
    }
    /// [`Self::claim_next_email`], saying whether another message was due too.
    async fn claim_email(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<Claimed<OutboxEmail>>>;
    /// `sending` → `sent`; `LeaseLost` when another sender holds the row now.
    async fn complete_email(&self, id: i64, holder: &str) -> StoreResult<()>;
}

macro_rules! impl_outbox_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::lease_queue::{Claimed, EMAIL};
            use $crate::store::outbox::{OutboxEmail, OutboxStore};
            use $crate::store::{StoreError, StoreResult, now_ms};

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
                    .execute(self.writer())
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
                    .execute(self.writer())
                    .await?;
                    Ok(())
                }

                async fn email_status(&self, dedupe_key: &str) -> StoreResult<Option<String>> {
                    Ok(sqlx::query_scalar("SELECT status FROM email_outbox WHERE dedupe_key = $1")
                        .bind(dedupe_key)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn email_statuses(
                    &self,
                    dedupe_keys: &[String],
                ) -> StoreResult<std::collections::HashMap<String, String>> {
                    if dedupe_keys.is_empty() {
                        return Ok(std::collections::HashMap::new());
                    }
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT dedupe_key, status FROM email_outbox WHERE dedupe_key IN (",
                    );
                    let mut keys = query.separated(", ");
                    for key in dedupe_keys {
                        keys.push_bind(key);
                    }
                    query.push(")");
                    let rows: Vec<(String, String)> =
                        query.build_query_as().fetch_all(&self.pool).await?;
                    Ok(rows.into_iter().collect())
                }

                async fn get_email(&self, dedupe_key: &str) -> StoreResult<Option<OutboxEmail>> {
                    Ok(sqlx::query_as::<_, OutboxEmail>(
                        "SELECT * FROM email_outbox WHERE dedupe_key = $1",
                    )
                    .bind(dedupe_key)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn claim_email(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<OutboxEmail>>> {
                    let now = now_ms();
                    let row = sqlx::query(sqlx::AssertSqlSafe(EMAIL.claim_sql(<$store>::BACKEND)))
                        .bind(holder)
                        .bind(now)
                        .bind(now + lease_ms.max(1))
                        .fetch_optional(self.writer())
                        .await?;
                    Ok(row.as_ref().map(Claimed::from_row).transpose()?)
                }

                async fn complete_email(&self, id: i64, holder: &str) -> StoreResult<()> {
                    let rows = sqlx::query(
                        "UPDATE email_outbox
                         SET status = 'sent', sent_at = $3, lease_holder = NULL,
                             lease_expires_at = NULL, last_error = NULL
                         WHERE id = $1 AND status = 'sending' AND lease_holder = $2",
                    )
                    .bind(id)
                    .bind(holder)
                    .bind(now_ms())
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    if rows == 1 {
                        Ok(())
                    } else {
                        Err(StoreError::lease_lost(format_args!("email {id}")))
                    }
                }
            }
        };
    };
}

pub(crate) use impl_outbox_store;
