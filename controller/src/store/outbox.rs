//! The email outbox: a message is committed here before anyone tries to send it, so an SMTP
//! outage delays mail but loses none, and the dedupe key makes queueing the same notice twice a
//! no-op.

use async_trait::async_trait;

use super::StoreResult;

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
}

macro_rules! impl_outbox_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::outbox::OutboxStore;
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
            }
        };
    };
}

pub(crate) use impl_outbox_store;
