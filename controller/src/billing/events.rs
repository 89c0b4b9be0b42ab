//! Stripe events, after their signature is verified: each one's effect commits with its id, so
//! duplicates, replays and any order of arrival end in the same state. Only database work runs
//! here (the webhook answers fast); calls to Stripe or the lifecycle layer are queued as billing
//! jobs in the same transaction.

use super::checkout::PaidSession;
use super::stripe::{CheckoutPaymentStatus, CheckoutSession, Dispute, Event, PaymentIntent};
use super::{Billing, BillingError, BillingResult};
use crate::store::billing::{
    EventEffect, EventRecord, FulfilOutcome, NewBillingJob, NewPayment, PaymentOutcome,
};
use crate::store::now_ms;

/// What an event did, for the log and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Applied(&'static str),
    Duplicate,
}

fn metadata_id(metadata: &std::collections::BTreeMap<String, String>, key: &str) -> Option<i64> {
    metadata.get(key).and_then(|v| v.parse().ok())
}

impl Billing {
    /// Applies one verified event (the raw body Stripe signed).
    pub async fn handle_event(&self, body: &[u8]) -> BillingResult<Handled> {
        let payload: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| BillingError::invalid("body", "invalid_event", e.to_string()))?;
        let event: Event = serde_json::from_value(payload.clone())
            .map_err(|e| BillingError::invalid("body", "invalid_event", e.to_string()))?;
        let record = EventRecord {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            payload,
        };
        let object = event.data.object;
        let parse = |what: &str, e: serde_json::Error| {
            BillingError::invalid("data.object", "invalid_event", format!("{what}: {e}"))
        };
        let applied = async {
            let handled = match event.event_type.as_str() {
                "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                    let session: CheckoutSession =
                        serde_json::from_value(object).map_err(|e| parse("checkout.session", e))?;
                    if session.payment_status == CheckoutPaymentStatus::Paid {
                        self.session_paid(&session, &record).await?
                    } else {
                        self.note(&record, "awaiting_payment").await?
                    }
                }
                "checkout.session.async_payment_failed" | "checkout.session.expired" => {
                    let session: CheckoutSession =
                        serde_json::from_value(object).map_err(|e| parse("checkout.session", e))?;
                    let (status, reason) = if event.event_type.ends_with("failed") {
                        ("failed", "the delayed payment failed")
                    } else {
                        ("expired", "the checkout session expired unpaid")
                    };
                    match self
                        .store
                        .close_order(&session.id, status, reason, Some(&record))
                        .await?
                    {
                        EventEffect::Duplicate => Handled::Duplicate,
                        EventEffect::Applied(_) => {
                            self.wake_jobs();
                            Handled::Applied(status)
                        }
                    }
                }
                "payment_intent.succeeded" => {
                    let pi: PaymentIntent =
                        serde_json::from_value(object).map_err(|e| parse("payment_intent", e))?;
                    self.payment_intent_succeeded(&pi, &record).await?
                }
                "charge.refunded" => {
                    let charge: super::stripe::Charge =
                        serde_json::from_value(object).map_err(|e| parse("charge", e))?;
                    let reference = charge
                        .payment_intent
                        .clone()
                        .unwrap_or_else(|| charge.id.clone());
                    match self
                        .store
                        .record_refund(&reference, charge.amount_refunded, Some(&record))
                        .await?
                    {
                        EventEffect::Duplicate => Handled::Duplicate,
                        EventEffect::Applied(_) => {
                            self.wake_jobs();
                            Handled::Applied("refund")
                        }
                    }
                }
                "charge.dispute.created" => {
                    let dispute: Dispute =
                        serde_json::from_value(object).map_err(|e| parse("dispute", e))?;
                    self.dispute_created(&dispute, &record).await?
                }
                // Off-session declines are handled by the charge job that made them; the event
                // is kept for the record.
                _ => self.note(&record, "recorded").await?,
            };
            Ok::<_, BillingError>(handled)
        }
        .await;
        crate::telemetry::metrics::webhook_event(
            &event.event_type,
            match &applied {
                Ok(Handled::Applied(_)) => "applied",
                Ok(Handled::Duplicate) => "duplicate",
                Err(_) => "error",
            },
        );
        applied
    }

    async fn note(&self, record: &EventRecord, outcome: &'static str) -> BillingResult<Handled> {
        Ok(if self.store.record_event(record, outcome).await? {
            Handled::Applied(outcome)
        } else {
            Handled::Duplicate
        })
    }

    async fn session_paid(
        &self,
        session: &CheckoutSession,
        record: &EventRecord,
    ) -> BillingResult<Handled> {
        let paid = PaidSession::from(session);
        if let Some(invoice_id) = metadata_id(&session.metadata, "invoice_id") {
            let reference = paid
                .payment_intent
                .clone()
                .unwrap_or_else(|| session.id.clone());
            return self
                .invoice_paid(invoice_id, paid.amount, &paid.currency, &reference, record)
                .await;
        }
        let order = match metadata_id(&session.metadata, "order_id") {
            Some(id) => self.store.get_order(id).await?,
            None => self.store.order_by_session(&session.id).await?,
        };
        let Some(order) = order else {
            return self.note(record, "unknown_order").await;
        };
        Ok(match self.fulfil(&order, &paid, Some(record)).await? {
            EventEffect::Duplicate => Handled::Duplicate,
            EventEffect::Applied(o) => Handled::Applied(fulfil_word(&o)),
        })
    }

    async fn payment_intent_succeeded(
        &self,
        pi: &PaymentIntent,
        record: &EventRecord,
    ) -> BillingResult<Handled> {
        let currency = pi.currency.as_str().to_owned();
        if let Some(invoice_id) = metadata_id(&pi.metadata, "invoice_id") {
            return self
                .invoice_paid(invoice_id, pi.amount, &currency, &pi.id, record)
                .await;
        }
        if let Some(order_id) = metadata_id(&pi.metadata, "order_id")
            && let Some(order) = self.store.get_order(order_id).await?
        {
            let paid = PaidSession {
                session_id: order.checkout_session_id.clone(),
                stripe_customer: pi.customer.clone(),
                payment_intent: Some(pi.id.clone()),
                amount: pi.amount,
                currency,
            };
            return Ok(match self.fulfil(&order, &paid, Some(record)).await? {
                EventEffect::Duplicate => Handled::Duplicate,
                EventEffect::Applied(o) => Handled::Applied(fulfil_word(&o)),
            });
        }
        self.note(record, "not_ours").await
    }

    async fn invoice_paid(
        &self,
        invoice_id: i64,
        amount: i64,
        currency: &str,
        reference: &str,
        record: &EventRecord,
    ) -> BillingResult<Handled> {
        let payment = NewPayment {
            invoice_id,
            amount_minor: amount,
            currency: currency.to_owned(),
            provider: "stripe".into(),
            provider_ref: reference.to_owned(),
            method: "card".into(),
            reference: None,
            now: now_ms(),
        };
        Ok(
            match self
                .store
                .record_payment(&payment, "billing", Some(record))
                .await?
            {
                EventEffect::Duplicate => Handled::Duplicate,
                EventEffect::Applied(PaymentOutcome::Recorded { .. }) => {
                    self.wake_jobs();
                    Handled::Applied("payment_recorded")
                }
                EventEffect::Applied(_) => Handled::Applied("payment_not_applied"),
            },
        )
    }

    async fn dispute_created(
        &self,
        dispute: &Dispute,
        record: &EventRecord,
    ) -> BillingResult<Handled> {
        let reference = dispute
            .payment_intent
            .clone()
            .or_else(|| dispute.charge.clone())
            .unwrap_or_default();
        let mut jobs = vec![NewBillingJob {
            kind: "invoice_email",
            dedupe_key: format!("dispute-{}-email", dispute.id),
            invoice_id: None,
            customer_id: None,
            service_id: None,
            params: serde_json::json!({
                "template": "dispute_opened",
                "dispute": dispute.id,
                "amount": dispute.amount,
                "currency": dispute.currency.as_str(),
                "reason": dispute.reason,
            }),
        }];
        if self.config.stripe.suspend_on_dispute {
            jobs.push(NewBillingJob {
                kind: "dispute_suspend",
                dedupe_key: format!("dispute-{}-suspend", dispute.id),
                invoice_id: None,
                customer_id: None,
                service_id: None,
                params: serde_json::json!({ "dispute": dispute.id }),
            });
        }
        Ok(
            match self
                .store
                .record_dispute(&reference, &dispute.id, &jobs, Some(record))
                .await?
            {
                EventEffect::Duplicate => Handled::Duplicate,
                EventEffect::Applied(Some(_)) => {
                    self.wake_jobs();
                    Handled::Applied("dispute_recorded")
                }
                EventEffect::Applied(None) => Handled::Applied("unknown_payment"),
            },
        )
    }
}

fn fulfil_word(o: &FulfilOutcome) -> &'static str {
    match o {
        FulfilOutcome::Fulfilled { .. } => "fulfilled",
        FulfilOutcome::AlreadyFulfilled(_) => "already_fulfilled",
        FulfilOutcome::Held(_) => "held",
        FulfilOutcome::Closed(_) => "order_closed",
        FulfilOutcome::NoSuchOrder => "unknown_order",
    }
}
