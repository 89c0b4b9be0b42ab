//! The email outbox (`email_outbox`) as a job: the runner claims a due message, the sender
//! renders and hands it to SMTP (or the log). An SMTP outage is retried for as long as it takes
//! (mail is delayed, never dropped); only a message that can never be sent is failed.

use async_trait::async_trait;

use super::{Backoff, ClaimInfo, Job, JobSettings, Outcome, RunContext};
use crate::mail::sender::{LEASE, LOUD_AFTER_ATTEMPTS, MAX_BACKOFF_MS};
use crate::mail::{MailError, OutboxSender};
use crate::store::lease_queue::{Claimed, EMAIL, QueueTable};
use crate::store::outbox::OutboxEmail;
use crate::store::{DynStore, StoreResult};

#[async_trait]
impl Job for OutboxSender {
    type Row = OutboxEmail;
    type Done = ();
    const QUEUE: &'static QueueTable = &EMAIL;

    fn settings(&self) -> JobSettings {
        JobSettings {
            workers: 1,
            lease: LEASE,
            backoff: Backoff {
                base_ms: self.retry_base_ms(),
                max_ms: MAX_BACKOFF_MS,
            },
            poll: std::time::Duration::from_secs(1),
            loud_after_attempts: LOUD_AFTER_ATTEMPTS,
        }
    }

    fn store(&self) -> &DynStore {
        OutboxSender::store(self)
    }

    fn info(email: &OutboxEmail) -> ClaimInfo {
        ClaimInfo {
            id: email.id,
            attempts: email.attempts,
            max_attempts: None,
        }
    }

    async fn claim(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<Claimed<OutboxEmail>>> {
        OutboxSender::store(self)
            .claim_email(holder, lease_ms)
            .await
    }

    async fn run(&self, email: &OutboxEmail, _ctx: &RunContext) -> Outcome<()> {
        use crate::telemetry::metrics;
        match self.deliver(email).await {
            Ok(()) => {
                metrics::email_sent();
                Outcome::Done(())
            }
            Err(MailError::Permanent(e)) => {
                metrics::email_failed("permanent");
                Outcome::Fail(e)
            }
            Err(MailError::Transient(e)) => {
                metrics::email_failed("transient");
                Outcome::Retry(e)
            }
        }
    }

    async fn complete(&self, email: &OutboxEmail, holder: &str, (): ()) -> StoreResult<()> {
        OutboxSender::store(self)
            .complete_email(email.id, holder)
            .await?;
        tracing::info!(
            email_id = email.id,
            template = %email.template,
            attempt = email.attempts,
            "email sent"
        );
        Ok(())
    }
}
