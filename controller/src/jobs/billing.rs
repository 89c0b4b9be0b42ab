//! Billing jobs (`billing_jobs`): charges, saving the card a checkout paid with, billing
//! emails, and the lifecycle moves payments and disputes ask for. Each was queued in the
//! transaction that needed it; each is safe to run again (a charge replays its Stripe
//! idempotency key, an email its outbox dedupe key, a lifecycle move is refused once done).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Backoff, ClaimInfo, Job, JobSettings, Outcome, RunContext};
use crate::billing::recurring::ChargeResult;
use crate::billing::{Billing, BillingError};
use crate::lifecycle::{Actor, LifecycleError};
use crate::store::billing::BillingJob;
use crate::store::lease_queue::{BILLING, Claimed, QueueTable};
use crate::store::{DynStore, StoreResult};

/// Attempts before a billing job is `failed` and shown to an admin (a charge's attempt is one
/// Stripe request with one key; a network failure retries that same request).
const MAX_ATTEMPTS: i32 = 10;

/// The billing queue's worker: the billing side plus what billing emails need.
#[derive(Clone)]
pub struct BillingWorker {
    pub billing: Billing,
    pub notices: crate::billing::notices::Notices,
}

impl std::fmt::Debug for BillingWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BillingWorker")
    }
}

fn failed<T>(e: &BillingError) -> Outcome<T> {
    match e {
        BillingError::Stripe(s) if !s.is_retryable() => Outcome::Fail(format!("{}: {s}", s.code())),
        BillingError::NotConfigured => Outcome::Wait(e.to_string()),
        other => Outcome::Retry(other.to_string()),
    }
}

impl BillingWorker {
    async fn lifecycle_move(&self, job: &BillingJob) -> Outcome<Value> {
        let Some(service) = job.service_id else {
            return Outcome::Done(json!({ "skipped": "no service" }));
        };
        let lifecycle = &self.billing.lifecycle;
        let result = match job.kind.as_str() {
            "unsuspend" => lifecycle
                .unsuspend_after_payment(&Actor::Billing, service.into())
                .await
                .map(|t| json!({ "taskId": t.id.get() })),
            "dispute_suspend" => lifecycle
                .suspend(
                    &Actor::Billing,
                    service.into(),
                    mpanel_common::status::SuspensionReason::Dispute,
                    job.params.0.get("dispute").and_then(Value::as_str),
                )
                .await
                .map(|t| json!({ "taskId": t.id.get() })),
            _ => lifecycle
                .cancel(&Actor::Billing, service.into())
                .await
                .map(|()| json!({ "cancelled": true })),
        };
        match result {
            Ok(done) => Outcome::Done(done),
            // Another task of the service is open (the suspension itself, say): try again once
            // it has finished.
            Err(LifecycleError::TaskOpen { .. }) => {
                Outcome::Retry("the service has another task open".into())
            }
            // The move no longer applies (the service is active already, or was suspended for
            // another reason): that is the answer, not a failure.
            Err(e @ (LifecycleError::IllegalMove { .. } | LifecycleError::NotFound { .. })) => {
                Outcome::Done(json!({ "skipped": e.to_string() }))
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

#[async_trait]
impl Job for BillingWorker {
    type Row = BillingJob;
    type Done = Value;
    const QUEUE: &'static QueueTable = &BILLING;

    fn settings(&self) -> JobSettings {
        JobSettings {
            workers: 2,
            lease: Duration::from_secs(60),
            backoff: Backoff {
                base_ms: 1_000,
                max_ms: 10 * 60 * 1000,
            },
            poll: Duration::from_secs(2),
            loud_after_attempts: 3,
        }
    }

    fn store(&self) -> &DynStore {
        &self.billing.store
    }

    fn info(job: &BillingJob) -> ClaimInfo {
        ClaimInfo {
            id: job.id,
            attempts: job.attempts,
            max_attempts: Some(MAX_ATTEMPTS),
        }
    }

    async fn claim(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<BillingJob>>> {
        self.billing.store.claim_billing_job(holder, lease_ms).await
    }

    async fn run(&self, job: &BillingJob, _ctx: &RunContext) -> Outcome<Value> {
        match job.kind.as_str() {
            "charge" => match self.billing.run_charge(job).await {
                Ok(ChargeResult::Paid { payment_intent }) => {
                    Outcome::Done(json!({ "outcome": "paid", "paymentIntent": payment_intent }))
                }
                Ok(ChargeResult::Skipped(why)) => {
                    Outcome::Done(json!({ "outcome": "skipped", "reason": why }))
                }
                Ok(ChargeResult::Declined {
                    code,
                    next_charge_at,
                }) => Outcome::Done(
                    json!({ "outcome": "declined", "code": code, "nextChargeAt": next_charge_at }),
                ),
                Ok(ChargeResult::AuthenticationRequired { pay_url }) => Outcome::Done(
                    json!({ "outcome": "authentication_required", "code": "authentication_required", "payUrl": pay_url }),
                ),
                Ok(ChargeResult::Retry(why)) => Outcome::Retry(why),
                Err(e) => failed(&e),
            },
            "save_card" => match self.billing.save_card_from_checkout(job).await {
                Ok(done) => Outcome::Done(done),
                Err(e) => failed(&e),
            },
            "invoice_email" => match self.notices.queue(job).await {
                Ok(done) => Outcome::Done(done),
                Err(e) => Outcome::Retry(e.to_string()),
            },
            "unsuspend" | "dispute_suspend" | "cancel_service" => self.lifecycle_move(job).await,
            other => Outcome::Fail(format!("unknown billing job kind '{other}'")),
        }
    }

    async fn complete(&self, job: &BillingJob, holder: &str, done: Value) -> StoreResult<()> {
        self.billing
            .store
            .complete_billing_job(job.id, holder, &done)
            .await?;
        tracing::info!(job_id = job.id, kind = %job.kind, key = %job.dedupe_key, "billing job done");
        Ok(())
    }
}
