//! Renewals: the `recurring-billing` job's body, and what one charge attempt does.
//!
//! Every service whose next period starts within `INVOICE_DAYS_BEFORE_RENEWAL` days gets one
//! invoice for that period (the store's unique index makes a second run, or a second replica,
//! a no-op), emailed with its PDF. On the due date the saved card is charged off-session; a
//! decline is retried `PAYMENT_RETRY_DAYS` after the due date (1, 3 and 5 days by default) with
//! a dunning email each time; a bank asking for authentication gets the customer a payment link
//! instead. Time comes in as an argument, so a year of renewals runs in a test.

use mpanel_common::billing::{DAY_MS, date_to_ms, ms_to_date, period_end};

use super::stripe::{OffSessionCharge, PaymentIntentStatus};
use super::{Billing, BillingResult, Quote, StripeError};
use crate::lifecycle::Actor;
use crate::store::billing::{
    BillingJob, ChargeDeclined, ChargeRefusal, EventEffect, NewBillingJob, NewInvoice, NewPayment,
    PaymentOutcome,
};
use crate::store::now_ms;

const BATCH: i64 = 200;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecurringSummary {
    pub invoices_created: u64,
    pub charges_queued: u64,
    /// Services left out, with the reason (a product without a price for the cycle, say).
    pub skipped: Vec<String>,
    /// Services their customers cancelled whose last paid period is over, queued for
    /// termination.
    pub cancellations_ended: u64,
}

/// How a charge attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Paid {
        payment_intent: String,
    },
    /// Nothing to charge any more (paid or voided meanwhile).
    Skipped(String),
    Declined {
        code: &'static str,
        next_charge_at: Option<i64>,
    },
    AuthenticationRequired {
        pay_url: Option<String>,
    },
    /// Stripe or the network failed; the same attempt (same key) runs again.
    Retry(String),
}

impl Billing {
    /// Invoices the periods coming due by `now + INVOICE_DAYS_BEFORE_RENEWAL`, then queues the
    /// charges due by `now`.
    pub async fn run_recurring(&self, now: i64) -> BillingResult<RecurringSummary> {
        let actor = Actor::Cron("recurring-billing").to_string();
        let mut summary = RecurringSummary::default();
        let today = date_to_ms(ms_to_date(now));
        let until = today + i64::from(self.config.invoice_days_before_renewal) * DAY_MS;
        let mut skipped_ids = std::collections::HashSet::new();
        self.end_cancelled_services(now, &mut summary).await?;
        loop {
            let services = self.store.services_to_invoice(until, BATCH).await?;
            let fresh: Vec<_> = services
                .into_iter()
                .filter(|s| !skipped_ids.contains(&s.id.get()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for service in fresh {
                let Some(start) = service.next_due_at else {
                    continue;
                };
                let product = self.store.get_product(service.product_id).await?;
                let Some(quote) = Quote::for_product(&product, service.billing_cycle, None) else {
                    skipped_ids.insert(service.id.get());
                    summary.skipped.push(format!(
                        "service {}: product {} has no {} price",
                        service.id, product.id, service.billing_cycle
                    ));
                    continue;
                };
                let day = service
                    .billing_day
                    .and_then(|d| u8::try_from(d).ok())
                    .unwrap_or_else(|| ms_to_date(start).day());
                let end = date_to_ms(period_end(ms_to_date(start), service.billing_cycle, day));
                let new = NewInvoice {
                    customer_id: service.customer_id.get(),
                    service_id: Some(service.id.get()),
                    period_start: Some(start),
                    period_end: Some(end),
                    subtotal_minor: quote.subtotal,
                    tax_minor: quote.tax,
                    tax_rate_bp: quote.tax_rate_bp,
                    currency: quote.currency.clone(),
                    lines: quote.lines(&product, &service.domain, start, end),
                    issued_at: now,
                    due_at: start,
                    next_charge_at: Some(start),
                };
                let email = NewBillingJob {
                    kind: "invoice_email",
                    dedupe_key: "invoice-{invoice}-invoice".into(),
                    invoice_id: None,
                    customer_id: Some(service.customer_id.get()),
                    service_id: Some(service.id.get()),
                    params: serde_json::json!({ "template": "invoice" }),
                };
                if self
                    .store
                    .create_invoice(&new, &[email], &actor)
                    .await?
                    .is_some()
                {
                    summary.invoices_created += 1;
                } else {
                    // Written meanwhile by another run: nothing more to do for it here.
                    skipped_ids.insert(service.id.get());
                }
            }
        }
        for invoice in self.store.invoices_to_charge(now, BATCH * 5).await? {
            if let Ok((_, true)) = self.store.enqueue_charge(invoice.id, &actor).await? {
                summary.charges_queued += 1;
            }
        }
        if summary.invoices_created > 0 || summary.charges_queued > 0 {
            self.wake_jobs();
        }
        Ok(summary)
    }

    /// Services cancelled by their customer whose paid period is over are terminated (they are
    /// never invoiced again: `services_to_invoice` leaves them out).
    async fn end_cancelled_services(
        &self,
        now: i64,
        summary: &mut RecurringSummary,
    ) -> BillingResult<()> {
        let actor = Actor::Cron("recurring-billing");
        for service in self.store.services_due_for_cancellation(now, BATCH).await? {
            match self.lifecycle.terminate(&actor, service.into()).await {
                Ok(_) => summary.cancellations_ended += 1,
                Err(crate::lifecycle::LifecycleError::Store(e)) => return Err(e.into()),
                Err(other) => summary
                    .skipped
                    .push(format!("service {service}: cancelled, but {other}")),
            }
        }
        Ok(())
    }

    /// Queues a charge of the invoice's balance now (the pay route), or answers with the
    /// charge in flight.
    pub async fn charge_now(
        &self,
        invoice_id: i64,
        actor: &Actor,
    ) -> BillingResult<Result<BillingJob, ChargeRefusal>> {
        self.stripe()?;
        let queued = self
            .store
            .enqueue_charge(invoice_id, &actor.to_string())
            .await?;
        if let Ok((_, true)) = &queued {
            self.wake_jobs();
        }
        Ok(queued.map(|(job, _)| job))
    }

    /// One charge attempt: the job's dedupe key is the Stripe Idempotency-Key, so running it
    /// again after a crash replays Stripe's first answer instead of charging twice.
    pub(crate) async fn run_charge(&self, job: &BillingJob) -> BillingResult<ChargeResult> {
        let result = self.charge_attempt(job).await;
        crate::telemetry::metrics::charge(match &result {
            Ok(ChargeResult::Paid { .. }) => "paid",
            Ok(ChargeResult::Declined { .. }) => "declined",
            Ok(ChargeResult::AuthenticationRequired { .. }) => "authentication_required",
            Ok(ChargeResult::Retry(_)) => "retry",
            Ok(ChargeResult::Skipped(_)) => "skipped",
            Err(_) => "error",
        });
        result
    }

    async fn charge_attempt(&self, job: &BillingJob) -> BillingResult<ChargeResult> {
        let stripe = self.stripe()?;
        let Some(invoice_id) = job.invoice_id else {
            return Ok(ChargeResult::Skipped("no invoice".into()));
        };
        let Some(invoice) = self.store.get_invoice(invoice_id).await? else {
            return Ok(ChargeResult::Skipped("the invoice is gone".into()));
        };
        if invoice.status != "unpaid" {
            return Ok(ChargeResult::Skipped(format!(
                "the invoice is {}",
                invoice.status
            )));
        }
        let p = &job.params.0;
        let text = |k: &str| {
            p.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let attempt = p
            .get("attempt")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(1);
        let amount = p
            .get("amount")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(invoice.amount_due());
        let charge = OffSessionCharge {
            amount_minor: amount,
            currency: mpanel_common::Currency::parse(&invoice.currency)
                .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?,
            customer: text("stripeCustomer"),
            payment_method: text("paymentMethod"),
            metadata: std::collections::BTreeMap::from([
                ("invoice_id".to_owned(), invoice.id.to_string()),
                ("attempt".to_owned(), attempt.to_string()),
            ]),
        };
        let actor = Actor::Billing.to_string();
        match stripe.charge_off_session(&charge, &job.dedupe_key).await {
            Ok(pi) if pi.status == PaymentIntentStatus::Succeeded => {
                let payment = NewPayment {
                    invoice_id: invoice.id,
                    amount_minor: pi.amount,
                    currency: pi.currency.as_str().to_owned(),
                    provider: "stripe".into(),
                    provider_ref: pi.id.clone(),
                    method: "card".into(),
                    reference: None,
                    now: now_ms(),
                };
                if let EventEffect::Applied(PaymentOutcome::Recorded {
                    unsuspends: Some(_),
                    ..
                }) = self.store.record_payment(&payment, &actor, None).await?
                {
                    self.wake_jobs();
                }
                Ok(ChargeResult::Paid {
                    payment_intent: pi.id,
                })
            }
            Ok(pi) if pi.status == PaymentIntentStatus::RequiresAction => {
                self.ask_for_authentication(&invoice, attempt, &job.dedupe_key)
                    .await
            }
            Ok(pi) => Ok(ChargeResult::Retry(format!(
                "PaymentIntent {} is {:?}",
                pi.id, pi.status
            ))),
            Err(StripeError::AuthenticationRequired { .. }) => {
                self.ask_for_authentication(&invoice, attempt, &job.dedupe_key)
                    .await
            }
            Err(e) if e.is_decline() => {
                let code = e.code();
                let next = self
                    .config
                    .stripe
                    .payment_retry_days
                    .get(usize::try_from(attempt - 1).unwrap_or(usize::MAX))
                    .map(|d| invoice.due_at + i64::from(*d) * DAY_MS);
                let declined = ChargeDeclined {
                    invoice_id: invoice.id,
                    attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
                    error: format!("{code}: {e}"),
                    next_charge_at: next,
                    pay_url: None,
                    notice: Some(NewBillingJob {
                        kind: "invoice_email",
                        dedupe_key: format!("invoice-{}-dunning-{attempt}", invoice.id),
                        invoice_id: Some(invoice.id),
                        customer_id: Some(invoice.customer_id),
                        service_id: invoice.service_id,
                        params: serde_json::json!({
                            "template": "payment_failed",
                            "attempt": attempt,
                            "reason": code,
                            "nextChargeAt": next,
                        }),
                    }),
                };
                self.store.record_charge_declined(&declined, &actor).await?;
                self.wake_jobs();
                Ok(ChargeResult::Declined {
                    code,
                    next_charge_at: next,
                })
            }
            Err(e) => Ok(ChargeResult::Retry(format!("{}: {e}", e.code()))),
        }
    }

    async fn ask_for_authentication(
        &self,
        invoice: &crate::store::billing::Invoice,
        attempt: i64,
        key: &str,
    ) -> BillingResult<ChargeResult> {
        let pay_url = self
            .invoice_checkout(invoice, &format!("{key}-paylink"))
            .await
            .ok();
        let declined = ChargeDeclined {
            invoice_id: invoice.id,
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            error: "authentication_required: the bank asks the customer to confirm the payment"
                .into(),
            next_charge_at: None,
            pay_url: pay_url.clone(),
            notice: Some(NewBillingJob {
                kind: "invoice_email",
                dedupe_key: format!("invoice-{}-action-{attempt}", invoice.id),
                invoice_id: Some(invoice.id),
                customer_id: Some(invoice.customer_id),
                service_id: invoice.service_id,
                params: serde_json::json!({ "template": "payment_action_required", "payUrl": pay_url }),
            }),
        };
        self.store
            .record_charge_declined(&declined, &Actor::Billing.to_string())
            .await?;
        self.wake_jobs();
        Ok(ChargeResult::AuthenticationRequired { pay_url })
    }
}
