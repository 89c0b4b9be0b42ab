//! Billing rows: checkout orders, invoices with gapless numbers, payments, processed webhook
//! events, saved cards and the billing job queue (`lease_queue::BILLING`).
//!
//! Every money change commits with its activity row and, when a webhook caused it, with the
//! event's id (`webhook_events`, unique per provider and event): a second delivery of the
//! event finds the id taken and changes nothing. Work that must call Stripe or the lifecycle
//! layer is written as a `billing_jobs` row in the same transaction, so it survives a crash.
//! This module decides nothing about prices, dates or retries; `billing/` does.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::lease_queue::Claimed;
use super::{Customer, StoreResult};

/// A checkout order (`orders`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Order {
    pub id: i64,
    pub status: String,
    pub email: String,
    pub name: String,
    pub customer_id: Option<i64>,
    pub stripe_customer_id: Option<String>,
    pub product_id: i64,
    pub billing_cycle: String,
    pub domain: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub tax_rate_bp: i32,
    pub total_minor: i64,
    pub currency: String,
    pub checkout_session_id: Option<String>,
    pub checkout_url: Option<String>,
    pub payment_intent_id: Option<String>,
    pub service_id: Option<i64>,
    pub invoice_id: Option<i64>,
    pub failure: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewOrder {
    pub email: String,
    pub name: String,
    pub customer_id: Option<i64>,
    pub product_id: i64,
    pub billing_cycle: String,
    pub domain: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub tax_rate_bp: i32,
    pub total_minor: i64,
    pub currency: String,
}

/// One line of an invoice, in minor units of the invoice's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub description: String,
    pub amount: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Invoice {
    pub id: i64,
    pub number: String,
    pub customer_id: i64,
    pub service_id: Option<i64>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub status: String,
    /// The total.
    pub amount_minor: i64,
    pub currency: String,
    pub due_at: i64,
    pub paid_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub tax_rate_bp: i32,
    pub amount_paid_minor: i64,
    pub amount_refunded_minor: i64,
    pub lines: sqlx::types::Json<Vec<InvoiceLine>>,
    pub issued_at: i64,
    pub voided_at: Option<i64>,
    pub charge_attempts: i32,
    pub next_charge_at: Option<i64>,
    pub last_charge_error: Option<String>,
    pub pay_url: Option<String>,
}

impl Invoice {
    pub fn amount_due(&self) -> i64 {
        (self.amount_minor - self.amount_paid_minor).max(0)
    }
}

#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub customer_id: i64,
    pub service_id: Option<i64>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub tax_rate_bp: i32,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    /// The year of this date numbers the invoice.
    pub issued_at: i64,
    pub due_at: i64,
    /// When the saved card is to be charged (None: not auto-charged).
    pub next_charge_at: Option<i64>,
}

impl NewInvoice {
    pub fn total(&self) -> i64 {
        self.subtotal_minor + self.tax_minor
    }
}

#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub customer_id: Option<i64>,
    pub service_id: Option<i64>,
    pub status: Option<String>,
    pub page: super::Page,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Payment {
    pub id: i64,
    pub invoice_id: Option<i64>,
    pub customer_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub provider: String,
    pub provider_ref: String,
    pub status: String,
    pub created_at: i64,
    pub method: String,
    pub reference: Option<String>,
    pub refunded_minor: i64,
}

/// A Stripe event, recorded in the transaction of its effect.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
}

/// What an event's transaction did; kept on the event row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventEffect<T> {
    /// The event was processed before; nothing was written.
    Duplicate,
    Applied(T),
}

/// A paid checkout order to turn into a customer, a service, a paid invoice, a payment and a
/// provisioning task.
#[derive(Debug, Clone)]
pub struct Fulfilment {
    pub order_id: i64,
    pub stripe_customer_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// The payment's provider reference: the PaymentIntent, or the session when there is none.
    pub payment_ref: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The first period, as UTC-midnight milliseconds, and the service's billing day.
    pub period_start: i64,
    pub period_end: i64,
    pub billing_day: i32,
    pub lines: Vec<InvoiceLine>,
    pub max_retries: i32,
}

#[derive(Debug, Clone)]
pub enum FulfilOutcome {
    Fulfilled {
        order: Order,
        service_id: i64,
        task_id: i64,
        invoice_id: i64,
    },
    /// Fulfilled before (by the other of webhook and success page).
    AlreadyFulfilled(Order),
    /// Paid, but cannot become a service; the order is `paid` with the reason for an admin.
    Held(Order),
    /// Expired or failed: nothing to fulfil.
    Closed(Order),
    NoSuchOrder,
}

/// A payment against an invoice (a charge, a checkout payment of an invoice, an offline one).
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub invoice_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    /// `stripe` or `offline`.
    pub provider: String,
    pub provider_ref: String,
    /// `card`, `bank_transfer`, `cash`, `other`.
    pub method: String,
    pub reference: Option<String>,
    /// A payment made after the due date lifts an `overdue` suspension when nothing else is
    /// overdue: which instant counts as now for that check.
    pub now: i64,
}

#[derive(Debug, Clone)]
pub enum PaymentOutcome {
    Recorded {
        invoice: Invoice,
        payment: Payment,
        /// A service suspended for non-payment that this payment frees (a job was queued).
        unsuspends: Option<i64>,
    },
    /// This provider reference was recorded before.
    AlreadyRecorded(Invoice),
    /// Void, already paid in full, or another currency.
    NotPayable {
        invoice: Invoice,
        reason: String,
    },
    NoSuchInvoice,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillingJob {
    pub id: i64,
    pub kind: String,
    pub dedupe_key: String,
    pub invoice_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub service_id: Option<i64>,
    pub params: sqlx::types::Json<serde_json::Value>,
    pub result: Option<sqlx::types::Json<serde_json::Value>>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_holder: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

/// A billing job to queue (a no-op when its dedupe key exists).
#[derive(Debug, Clone)]
pub struct NewBillingJob {
    pub kind: &'static str,
    pub dedupe_key: String,
    pub invoice_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub service_id: Option<i64>,
    pub params: serde_json::Value,
}

/// Why a charge was not queued.
#[derive(Debug, Clone)]
pub enum ChargeRefusal {
    NoSuchInvoice,
    NotPayable(Invoice),
    NoSavedCard(Invoice),
}

/// A declined or failed charge attempt, and what happens next.
#[derive(Debug, Clone)]
pub struct ChargeDeclined {
    pub invoice_id: i64,
    pub attempt: i32,
    pub error: String,
    pub next_charge_at: Option<i64>,
    pub pay_url: Option<String>,
    /// The dunning email to queue (a billing `invoice_email` job), if any.
    pub notice: Option<NewBillingJob>,
}

#[async_trait]
pub trait BillingStore: Send + Sync {
    async fn create_order(&self, new: &NewOrder) -> StoreResult<Order>;
    async fn attach_checkout(
        &self,
        order_id: i64,
        stripe_customer_id: &str,
        session_id: &str,
        url: &str,
    ) -> StoreResult<Order>;
    async fn get_order(&self, id: i64) -> StoreResult<Option<Order>>;
    async fn order_by_session(&self, session_id: &str) -> StoreResult<Option<Order>>;
    async fn order_by_payment_intent(&self, payment_intent: &str) -> StoreResult<Option<Order>>;
    async fn customer_by_email(&self, email: &str) -> StoreResult<Option<Customer>>;
    /// The live (pending, active or suspended) service holding `domain`, whoever's it is.
    async fn live_service_for_domain(&self, domain: &str) -> StoreResult<Option<i64>>;

    /// Records an event with no effect (an unknown type, an event about nothing of ours);
    /// `false` when it was recorded before.
    async fn record_event(&self, event: &EventRecord, outcome: &str) -> StoreResult<bool>;
    /// Fulfils a paid order in one transaction, recording `event` with it.
    async fn fulfil_order(
        &self,
        f: &Fulfilment,
        event: Option<&EventRecord>,
    ) -> StoreResult<EventEffect<FulfilOutcome>>;
    /// `open` → `expired` or `failed`; an order in any other state is left alone.
    async fn close_order(
        &self,
        session_id: &str,
        status: &str,
        reason: &str,
        event: Option<&EventRecord>,
    ) -> StoreResult<EventEffect<Option<Order>>>;
    async fn record_payment(
        &self,
        p: &NewPayment,
        actor: &str,
        event: Option<&EventRecord>,
    ) -> StoreResult<EventEffect<PaymentOutcome>>;
    /// Sets what Stripe says was refunded of the payment so far (a total, so a late or
    /// repeated event cannot count twice). A fully refunded first payment of a service that
    /// has no account yet queues its cancellation.
    async fn record_refund(
        &self,
        provider_ref: &str,
        amount_refunded_total: i64,
        event: Option<&EventRecord>,
    ) -> StoreResult<EventEffect<Option<Invoice>>>;
    /// Flags the paid service and queues the admin's email (and the suspension when asked).
    async fn record_dispute(
        &self,
        provider_ref: &str,
        dispute_id: &str,
        jobs: &[NewBillingJob],
        event: Option<&EventRecord>,
    ) -> StoreResult<EventEffect<Option<(Payment, Option<i64>)>>>;

    /// Writes an invoice with the year's next number; `None` when the service already has an
    /// invoice for that period. `jobs` (its email, say) commit with it.
    async fn create_invoice(
        &self,
        new: &NewInvoice,
        jobs: &[NewBillingJob],
        actor: &str,
    ) -> StoreResult<Option<Invoice>>;
    async fn get_invoice(&self, id: i64) -> StoreResult<Option<Invoice>>;
    async fn list_invoices(&self, filter: &InvoiceFilter) -> StoreResult<Vec<Invoice>>;
    async fn invoice_payments(&self, invoice_id: i64) -> StoreResult<Vec<Payment>>;
    /// `unpaid` → `void`; `None` when there is no such invoice, `Err(invoice)` when it is not unpaid.
    async fn void_invoice(
        &self,
        id: i64,
        actor: &str,
    ) -> StoreResult<Option<Result<Invoice, Invoice>>>;
    /// Moves an unpaid invoice's due date (and a planned auto-charge with it); `None` when
    /// there is no such invoice, `Err(invoice)` when it is not unpaid.
    async fn set_invoice_due(
        &self,
        id: i64,
        due_at: i64,
        actor: &str,
    ) -> StoreResult<Option<Result<Invoice, Invoice>>>;
    /// Live services whose next period starts by `until` and has no invoice yet.
    async fn services_to_invoice(&self, until: i64, limit: i64)
    -> StoreResult<Vec<super::Service>>;
    /// Active services with an invoice unpaid since `due_by` or earlier, and the oldest such
    /// invoice of each; services whose invoice is being charged, or due a charge of a saved
    /// card by `now`, are left out (the charge may still settle it).
    /// Keyset-paged by service id (`after`); a service with a task open (its suspension
    /// queued by an earlier run, say) is left out.
    async fn overdue_services(
        &self,
        due_by: i64,
        now: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, i64)>>;
    /// Services suspended for `overdue` before `suspended_before` that still have an unpaid
    /// invoice, with the oldest such invoice of each; services with a charge of it in flight
    /// or a task open are left out. Keyset-paged by service id (`after`).
    async fn overdue_suspended_services(
        &self,
        suspended_before: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, i64)>>;
    /// Unpaid invoices whose auto-charge is due by `now`, whose customer has a saved card and
    /// which have no charge in flight.
    async fn invoices_to_charge(&self, now: i64, limit: i64) -> StoreResult<Vec<Invoice>>;
    /// Queues the invoice's next charge attempt (its Stripe idempotency key is the job's
    /// dedupe key), or answers with the charge already in flight (`false`).
    async fn enqueue_charge(
        &self,
        invoice_id: i64,
        actor: &str,
    ) -> StoreResult<Result<(BillingJob, bool), ChargeRefusal>>;
    async fn record_charge_declined(&self, d: &ChargeDeclined, actor: &str) -> StoreResult<()>;

    async fn enqueue_billing_job(&self, job: &NewBillingJob) -> StoreResult<bool>;
    async fn claim_next_billing_job(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<BillingJob>> {
        Ok(self
            .claim_billing_job(holder, lease_ms)
            .await?
            .map(|c| c.row))
    }
    /// [`Self::claim_next_billing_job`], saying whether another job was due too.
    async fn claim_billing_job(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<Claimed<BillingJob>>>;
    async fn complete_billing_job(
        &self,
        id: i64,
        holder: &str,
        result: &serde_json::Value,
    ) -> StoreResult<()>;
    async fn get_billing_job(&self, id: i64) -> StoreResult<Option<BillingJob>>;
    async fn save_card(
        &self,
        customer_id: i64,
        payment_method: &str,
        brand: Option<&str>,
        last4: Option<&str>,
        actor: &str,
    ) -> StoreResult<()>;
    /// The saved card's brand and last four digits, if the customer has a card on file.
    async fn customer_card(
        &self,
        customer_id: i64,
    ) -> StoreResult<Option<(Option<String>, Option<String>)>>;
    /// Moves a service's next due date (an admin's correction), with its activity row.
    async fn set_next_due(
        &self,
        service_id: i64,
        next_due_at: Option<i64>,
        billing_day: Option<i32>,
        actor: &str,
    ) -> StoreResult<()>;
}

macro_rules! impl_billing_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::AssertSqlSafe;
            use sqlx::types::Json;
            use $crate::store::billing::*;
            use $crate::store::lease_queue::{Claimed, BILLING};
            use $crate::store::{Change, Customer, Service, StoreError, StoreResult, Task, TaskResult, now_ms};
            use $crate::store::activity::{customer_summary, invoice_summary, order_summary, service_summary};

            type Tx = sqlx::Transaction<'static, $db>;

            /// Records the event first: a concurrent second delivery waits on the unique index
            /// and then finds the id taken. `false`: seen before.
            async fn insert_event(tx: &mut Tx, e: &EventRecord, now: i64) -> StoreResult<bool> {
                let rows = sqlx::query(
                    "INSERT INTO webhook_events (provider, event_id, event_type, payload, received_at, processed_at)
                     VALUES ('stripe', $1, $2, $3, $4, $4)
                     ON CONFLICT (provider, event_id) DO NOTHING",
                )
                .bind(&e.id)
                .bind(&e.event_type)
                .bind(Json(&e.payload))
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                Ok(rows == 1)
            }

            async fn event_outcome(tx: &mut Tx, e: Option<&EventRecord>, outcome: &str) -> StoreResult<()> {
                if let Some(e) = e {
                    sqlx::query("UPDATE webhook_events SET outcome = $2 WHERE provider = 'stripe' AND event_id = $1")
                        .bind(&e.id)
                        .bind(outcome)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn insert_job(tx: &mut Tx, j: &NewBillingJob, now: i64) -> StoreResult<bool> {
                let rows = sqlx::query(
                    "INSERT INTO billing_jobs (kind, dedupe_key, invoice_id, customer_id, service_id, params,
                         status, attempts, next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)
                     ON CONFLICT (dedupe_key) DO NOTHING",
                )
                .bind(j.kind)
                .bind(&j.dedupe_key)
                .bind(j.invoice_id)
                .bind(j.customer_id)
                .bind(j.service_id)
                .bind(Json(&j.params))
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                Ok(rows == 1)
            }

            async fn lock_invoice(tx: &mut Tx, id: i64) -> StoreResult<Option<Invoice>> {
                Ok(sqlx::query_as::<_, Invoice>(AssertSqlSafe(format!(
                    "SELECT * FROM invoices WHERE id = $1{}",
                    <$store>::FOR_UPDATE
                )))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?)
            }

            /// The year's next number, from the counter row bumped in this transaction: a
            /// rolled-back invoice gives its number back, so the sequence has no gaps.
            async fn next_invoice_number(tx: &mut Tx, issued_at: i64) -> StoreResult<String> {
                let year = mpanel_common::billing::ms_to_date(issued_at).year();
                let n: i64 = sqlx::query_scalar(
                    "INSERT INTO invoice_counters (year, last_number) VALUES ($1, 1)
                     ON CONFLICT (year) DO UPDATE SET last_number = invoice_counters.last_number + 1
                     RETURNING last_number",
                )
                .bind(year)
                .fetch_one(&mut **tx)
                .await?;
                Ok(format!("INV-{year}-{n:06}"))
            }

            /// Writes the invoice under `number`, or under a placeholder when `None`: the caller
            /// then numbers it with `assign_number` just before committing, so the year's counter
            /// row is held for the end of the transaction only.
            async fn insert_invoice(
                tx: &mut Tx,
                new: &NewInvoice,
                status: &str,
                paid: Option<(i64, i64)>,
                now: i64,
                numbered: bool,
            ) -> StoreResult<Invoice> {
                let number = if numbered {
                    next_invoice_number(tx, new.issued_at).await?
                } else {
                    format!("unnumbered-{}", uuid::Uuid::new_v4().simple())
                };
                let (amount_paid, paid_at) = paid.map_or((0, None), |(a, at)| (a, Some(at)));
                sqlx::query_as::<_, Invoice>(
                    "INSERT INTO invoices (number, customer_id, service_id, period_start, period_end, status,
                         amount_minor, currency, due_at, paid_at, created_at, updated_at, subtotal_minor,
                         tax_minor, tax_rate_bp, amount_paid_minor, lines, issued_at, next_charge_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16, $17, $18)
                     RETURNING *",
                )
                .bind(&number)
                .bind(new.customer_id)
                .bind(new.service_id)
                .bind(new.period_start)
                .bind(new.period_end)
                .bind(status)
                .bind(new.total())
                .bind(&new.currency)
                .bind(new.due_at)
                .bind(paid_at)
                .bind(now)
                .bind(new.subtotal_minor)
                .bind(new.tax_minor)
                .bind(new.tax_rate_bp)
                .bind(amount_paid)
                .bind(Json(&new.lines))
                .bind(new.issued_at)
                .bind(new.next_charge_at)
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| StoreError::on_constraint(e, "the service already has an invoice for this period"))
            }

            async fn assign_number(tx: &mut Tx, invoice: &Invoice) -> StoreResult<String> {
                let number = next_invoice_number(tx, invoice.issued_at).await?;
                sqlx::query("UPDATE invoices SET number = $2 WHERE id = $1")
                    .bind(invoice.id)
                    .bind(&number)
                    .execute(&mut **tx)
                    .await?;
                Ok(number)
            }

            /// A calendar date (`YYYY-MM-DD`) for a summary.
            fn day(ms: Option<i64>) -> serde_json::Value {
                ms.map_or(serde_json::Value::Null, |d| {
                    mpanel_common::billing::format_date(mpanel_common::billing::ms_to_date(d)).into()
                })
            }

            /// One payment row; its provider reference is unique, so a second record of the same
            /// charge is a `Conflict`.
            async fn insert_payment(
                tx: &mut Tx,
                invoice_id: i64,
                customer_id: i64,
                currency: &str,
                p: &NewPayment,
                now: i64,
            ) -> StoreResult<Payment> {
                sqlx::query_as::<_, Payment>(
                    "INSERT INTO payments (invoice_id, customer_id, amount_minor, currency, provider, provider_ref,
                         status, created_at, method, reference)
                     VALUES ($1, $2, $3, $4, $5, $6, 'succeeded', $7, $8, $9) RETURNING *",
                )
                .bind(invoice_id).bind(customer_id).bind(p.amount_minor).bind(currency)
                .bind(&p.provider).bind(&p.provider_ref).bind(now).bind(&p.method).bind(&p.reference)
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| StoreError::on_constraint(e, "this payment is already recorded"))
            }

            fn email_job(template: &str, invoice: &Invoice) -> NewBillingJob {
                NewBillingJob {
                    kind: "invoice_email",
                    dedupe_key: format!("invoice-{}-{template}", invoice.id),
                    invoice_id: Some(invoice.id),
                    customer_id: Some(invoice.customer_id),
                    service_id: invoice.service_id,
                    params: serde_json::json!({ "template": template }),
                }
            }

            async fn get_order_tx(tx: &mut Tx, id: i64) -> StoreResult<Option<Order>> {
                Ok(sqlx::query_as::<_, Order>(AssertSqlSafe(format!(
                    "SELECT * FROM orders WHERE id = $1{}",
                    <$store>::FOR_UPDATE
                )))
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?)
            }

            async fn set_order_state(
                tx: &mut Tx,
                id: i64,
                status: &str,
                failure: Option<&str>,
                payment_intent: Option<&str>,
                now: i64,
            ) -> StoreResult<Order> {
                Ok(sqlx::query_as::<_, Order>(
                    "UPDATE orders SET status = $2, failure = $3,
                         payment_intent_id = COALESCE($4, payment_intent_id),
                         updated_at = $5, completed_at = $5
                     WHERE id = $1 RETURNING *",
                )
                .bind(id)
                .bind(status)
                .bind(failure)
                .bind(payment_intent)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?)
            }

            #[async_trait]
            impl BillingStore for $store {
                async fn create_order(&self, new: &NewOrder) -> StoreResult<Order> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let order = sqlx::query_as::<_, Order>(
                        "INSERT INTO orders (status, email, name, customer_id, product_id, billing_cycle, domain,
                             subtotal_minor, tax_minor, tax_rate_bp, total_minor, currency, created_at, updated_at)
                         VALUES ('open', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING *",
                    )
                    .bind(&new.email)
                    .bind(&new.name)
                    .bind(new.customer_id)
                    .bind(new.product_id)
                    .bind(&new.billing_cycle)
                    .bind(&new.domain)
                    .bind(new.subtotal_minor)
                    .bind(new.tax_minor)
                    .bind(new.tax_rate_bp)
                    .bind(new.total_minor)
                    .bind(&new.currency)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    <$store>::record_activity(&mut tx, "customer", "order.created", "order", order.id,
                        serde_json::json!({ "domain": new.domain, "productId": new.product_id, "total": new.total_minor, "currency": new.currency }),
                        Change::created(order_summary(&order))).await?;
                    tx.commit().await?;
                    Ok(order)
                }

                async fn attach_checkout(&self, order_id: i64, stripe_customer_id: &str, session_id: &str, url: &str) -> StoreResult<Order> {
                    sqlx::query_as::<_, Order>(
                        "UPDATE orders SET stripe_customer_id = $2, checkout_session_id = $3, checkout_url = $4, updated_at = $5
                         WHERE id = $1 RETURNING *",
                    )
                    .bind(order_id)
                    .bind(stripe_customer_id)
                    .bind(session_id)
                    .bind(url)
                    .bind(now_ms())
                    .fetch_optional(self.writer())
                    .await?
                    .ok_or_else(|| StoreError::not_found("order", order_id))
                }

                async fn get_order(&self, id: i64) -> StoreResult<Option<Order>> {
                    Ok(sqlx::query_as::<_, Order>("SELECT * FROM orders WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
                }

                async fn order_by_session(&self, session_id: &str) -> StoreResult<Option<Order>> {
                    Ok(sqlx::query_as::<_, Order>("SELECT * FROM orders WHERE checkout_session_id = $1")
                        .bind(session_id).fetch_optional(&self.pool).await?)
                }

                async fn order_by_payment_intent(&self, payment_intent: &str) -> StoreResult<Option<Order>> {
                    Ok(sqlx::query_as::<_, Order>("SELECT * FROM orders WHERE payment_intent_id = $1")
                        .bind(payment_intent).fetch_optional(&self.pool).await?)
                }

                async fn customer_by_email(&self, email: &str) -> StoreResult<Option<Customer>> {
                    Ok(sqlx::query_as::<_, Customer>("SELECT * FROM customers WHERE email = $1")
                        .bind(email).fetch_optional(&self.pool).await?)
                }

                async fn live_service_for_domain(&self, domain: &str) -> StoreResult<Option<i64>> {
                    Ok(sqlx::query_scalar("SELECT id FROM services WHERE domain = $1 AND status IN ('pending', 'active', 'suspended')")
                        .bind(domain).fetch_optional(&self.pool).await?)
                }

                async fn record_event(&self, event: &EventRecord, outcome: &str) -> StoreResult<bool> {
                    let mut tx = self.begin_write().await?;
                    if !insert_event(&mut tx, event, now_ms()).await? {
                        return Ok(false);
                    }
                    event_outcome(&mut tx, Some(event), outcome).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn fulfil_order(&self, f: &Fulfilment, event: Option<&EventRecord>) -> StoreResult<EventEffect<FulfilOutcome>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    if let Some(e) = event && !insert_event(&mut tx, e, now).await? {
                        return Ok(EventEffect::Duplicate);
                    }
                    let Some(order) = get_order_tx(&mut tx, f.order_id).await? else {
                        event_outcome(&mut tx, event, "unknown_order").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(FulfilOutcome::NoSuchOrder));
                    };
                    let outcome = match order.status.as_str() {
                        "fulfilled" => Some(("already_fulfilled", FulfilOutcome::AlreadyFulfilled(order.clone()))),
                        "expired" | "failed" => Some(("order_closed", FulfilOutcome::Closed(order.clone()))),
                        _ => None,
                    };
                    if let Some((word, outcome)) = outcome {
                        event_outcome(&mut tx, event, word).await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(outcome));
                    }
                    // Paid, but not as ordered, or the domain went to someone else meanwhile:
                    // keep the money's trace and hand it to an admin.
                    let held = if f.amount_minor != order.total_minor || !f.currency.eq_ignore_ascii_case(&order.currency) {
                        Some(format!("paid {} {} for an order of {} {}", f.amount_minor, f.currency, order.total_minor, order.currency))
                    } else {
                        let taken: Option<i64> = sqlx::query_scalar(
                            "SELECT id FROM services WHERE domain = $1 AND status IN ('pending', 'active', 'suspended')",
                        )
                        .bind(&order.domain)
                        .fetch_optional(&mut *tx)
                        .await?;
                        taken.map(|s| format!("domain {} was taken by service {s} before the payment arrived", order.domain))
                    };
                    if let Some(reason) = held {
                        let held = set_order_state(&mut tx, order.id, "paid", Some(&reason), f.payment_intent_id.as_deref(), now).await?;
                        <$store>::record_activity(&mut tx, "billing", "order.held", "order", order.id, serde_json::json!({ "reason": reason }),
                            Change::between(order_summary(&order), order_summary(&held))).await?;
                        let order = held;
                        event_outcome(&mut tx, event, "held").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(FulfilOutcome::Held(order)));
                    }

                    // The customer: the one with this email, or a new one.
                    let existing = sqlx::query_as::<_, Customer>(AssertSqlSafe(format!(
                        "SELECT * FROM customers WHERE email = $1{}", <$store>::FOR_UPDATE)))
                        .bind(&order.email)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let customer = match existing {
                        Some(c) => {
                            if c.stripe_customer_id.is_none() && f.stripe_customer_id.is_some() {
                                sqlx::query("UPDATE customers SET stripe_customer_id = $2, updated_at = $3 WHERE id = $1")
                                    .bind(c.id.get()).bind(&f.stripe_customer_id).bind(now)
                                    .execute(&mut *tx).await
                                    .map_err(|e| StoreError::on_constraint(e, "the Stripe customer belongs to another customer"))?;
                            }
                            c
                        }
                        None => {
                            let c = sqlx::query_as::<_, Customer>(
                                "INSERT INTO customers (email, name, stripe_customer_id, status, created_at, updated_at)
                                 VALUES ($1, $2, $3, 'active', $4, $4) RETURNING *",
                            )
                            .bind(&order.email).bind(&order.name).bind(&f.stripe_customer_id).bind(now)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|e| StoreError::on_constraint(e, "the Stripe customer belongs to another customer"))?;
                            <$store>::record_activity(&mut tx, "billing", "customer.created", "customer", c.id.get(),
                                serde_json::json!({ "orderId": order.id }), Change::created(customer_summary(&c))).await?;
                            c
                        }
                    };
                    let service = sqlx::query_as::<_, Service>(
                        "INSERT INTO services (customer_id, product_id, domain, status, billing_cycle, next_due_at,
                             billing_day, created_at, updated_at)
                         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $7) RETURNING *",
                    )
                    .bind(customer.id.get())
                    .bind(order.product_id)
                    .bind(&order.domain)
                    .bind(&order.billing_cycle)
                    .bind(f.period_end)
                    .bind(f.billing_day)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, &format!("{} already has a live service", order.domain)))?;
                    let task = sqlx::query_as::<_, Task>(
                        "INSERT INTO provisioning_tasks (service_id, task_type, status, attempts, max_retries, result,
                             params, idempotency_key, next_attempt_at, created_at, updated_at, request_id)
                         VALUES ($1, 'provision', 'pending', 0, $2, $3, $4, $5, $6, $6, $6, $7) RETURNING *",
                    )
                    .bind(service.id.get())
                    .bind(f.max_retries)
                    .bind(Json(TaskResult::default()))
                    .bind(Json(serde_json::json!({})))
                    .bind(format!("provision:service:{}", service.id))
                    .bind(now)
                    .bind($crate::request_id::current())
                    .fetch_one(&mut *tx)
                    .await?;
                    let new_invoice = NewInvoice {
                        customer_id: customer.id.get(),
                        service_id: Some(service.id.get()),
                        period_start: Some(f.period_start),
                        period_end: Some(f.period_end),
                        subtotal_minor: order.subtotal_minor,
                        tax_minor: order.tax_minor,
                        tax_rate_bp: order.tax_rate_bp,
                        currency: order.currency.clone(),
                        lines: f.lines.clone(),
                        issued_at: now,
                        due_at: now,
                        next_charge_at: None,
                    };
                    // Numbered last (below): concurrent fulfilments wait for the year's counter only
                    // around their commit, not through the whole transaction.
                    let invoice = insert_invoice(&mut tx, &new_invoice, "paid", Some((order.total_minor, now)), now, false).await?;
                    let payment = NewPayment {
                        invoice_id: invoice.id,
                        amount_minor: order.total_minor,
                        currency: order.currency.clone(),
                        provider: "stripe".into(),
                        provider_ref: f.payment_ref.clone(),
                        method: "card".into(),
                        reference: None,
                        now,
                    };
                    insert_payment(&mut tx, invoice.id, customer.id.get(), &order.currency, &payment, now).await?;
                    let ordered = order;
                    let order = sqlx::query_as::<_, Order>(
                        "UPDATE orders SET status = 'fulfilled', customer_id = $2, service_id = $3, invoice_id = $4,
                             payment_intent_id = COALESCE($5, payment_intent_id),
                             stripe_customer_id = COALESCE($6, stripe_customer_id), updated_at = $7, completed_at = $7
                         WHERE id = $1 RETURNING *",
                    )
                    .bind(ordered.id).bind(customer.id.get()).bind(service.id.get()).bind(invoice.id)
                    .bind(&f.payment_intent_id).bind(&f.stripe_customer_id).bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    if let Some(pi) = &f.payment_intent_id {
                        insert_job(&mut tx, &NewBillingJob {
                            kind: "save_card",
                            dedupe_key: format!("save-card-{pi}"),
                            invoice_id: Some(invoice.id),
                            customer_id: Some(customer.id.get()),
                            service_id: Some(service.id.get()),
                            params: serde_json::json!({ "paymentIntent": pi }),
                        }, now).await?;
                    }
                    insert_job(&mut tx, &email_job("payment_receipt", &invoice), now).await?;
                    <$store>::record_activity(&mut tx, "billing", "service.created", "service", service.id.get(),
                        serde_json::json!({ "domain": order.domain, "taskId": task.id.get(), "orderId": order.id }),
                        Change::created(service_summary(&service))).await?;
                    <$store>::record_activity(&mut tx, "billing", "order.fulfilled", "order", order.id,
                        serde_json::json!({ "serviceId": service.id.get(), "invoiceId": invoice.id, "payment": f.payment_ref }),
                        Change::between(order_summary(&ordered), order_summary(&order))).await?;
                    event_outcome(&mut tx, event, "fulfilled").await?;
                    // The invoice's row comes last, once it has its number (see above).
                    let mut numbered = invoice.clone();
                    numbered.number = assign_number(&mut tx, &invoice).await?;
                    <$store>::record_activity(&mut tx, "billing", "invoice.created", "invoice", invoice.id,
                        serde_json::json!({ "number": numbered.number, "serviceId": service.id.get(), "orderId": order.id }),
                        Change::created(invoice_summary(&numbered))).await?;
                    tx.commit().await?;
                    Ok(EventEffect::Applied(FulfilOutcome::Fulfilled {
                        order,
                        service_id: service.id.get(),
                        task_id: task.id.get(),
                        invoice_id: invoice.id,
                    }))
                }

                async fn close_order(&self, session_id: &str, status: &str, reason: &str, event: Option<&EventRecord>) -> StoreResult<EventEffect<Option<Order>>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    if let Some(e) = event && !insert_event(&mut tx, e, now).await? {
                        return Ok(EventEffect::Duplicate);
                    }
                    let order = sqlx::query_as::<_, Order>(
                        "UPDATE orders SET status = $2, failure = $3, updated_at = $4, completed_at = $4
                         WHERE checkout_session_id = $1 AND status = 'open' RETURNING *",
                    )
                    .bind(session_id).bind(status).bind(reason).bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(o) = &order {
                        <$store>::record_activity(&mut tx, "billing", &format!("order.{status}"), "order", o.id,
                            serde_json::json!({ "reason": reason }),
                            Change::updated(
                                serde_json::json!({ "status": "open", "failure": null }),
                                serde_json::json!({ "status": o.status, "failure": o.failure }),
                            )).await?;
                        if status == "failed" {
                            insert_job(&mut tx, &NewBillingJob {
                                kind: "invoice_email",
                                dedupe_key: format!("order-{}-failed", o.id),
                                invoice_id: None,
                                customer_id: o.customer_id,
                                service_id: None,
                                params: serde_json::json!({ "template": "order_failed", "orderId": o.id }),
                            }, now).await?;
                        }
                    }
                    event_outcome(&mut tx, event, if order.is_some() { status } else { "no_open_order" }).await?;
                    tx.commit().await?;
                    Ok(EventEffect::Applied(order))
                }

                async fn record_payment(&self, p: &NewPayment, actor: &str, event: Option<&EventRecord>) -> StoreResult<EventEffect<PaymentOutcome>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    if let Some(e) = event && !insert_event(&mut tx, e, now).await? {
                        return Ok(EventEffect::Duplicate);
                    }
                    let Some(invoice) = lock_invoice(&mut tx, p.invoice_id).await? else {
                        event_outcome(&mut tx, event, "unknown_invoice").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(PaymentOutcome::NoSuchInvoice));
                    };
                    let known: Option<i64> = sqlx::query_scalar("SELECT id FROM payments WHERE provider = $1 AND provider_ref = $2")
                        .bind(&p.provider).bind(&p.provider_ref).fetch_optional(&mut *tx).await?;
                    if known.is_some() {
                        event_outcome(&mut tx, event, "already_recorded").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(PaymentOutcome::AlreadyRecorded(invoice)));
                    }
                    let refuse = if !p.currency.eq_ignore_ascii_case(&invoice.currency) {
                        Some(format!("the invoice is in {}, the payment in {}", invoice.currency, p.currency))
                    } else if invoice.status != "unpaid" && invoice.status != "overdue" {
                        Some(format!("the invoice is {}", invoice.status))
                    } else {
                        None
                    };
                    if let Some(reason) = refuse {
                        // A card payment on a closed invoice is still money received: keep it
                        // on record for an admin to refund, without touching the invoice.
                        if p.provider == "stripe" {
                            let kept = insert_payment(&mut tx, invoice.id, invoice.customer_id, &p.currency, p, now).await?;
                            <$store>::record_activity(&mut tx, actor, "payment.unapplied", "invoice", invoice.id,
                                serde_json::json!({ "reason": reason, "ref": p.provider_ref, "amount": p.amount_minor }),
                                Change::updated(
                                    serde_json::json!({ "unappliedPayment": null }),
                                    serde_json::json!({ "unappliedPayment": { "id": kept.id, "amount": kept.amount_minor, "currency": kept.currency } }),
                                )).await?;
                            event_outcome(&mut tx, event, "unapplied").await?;
                            tx.commit().await?;
                        }
                        return Ok(EventEffect::Applied(PaymentOutcome::NotPayable { invoice, reason }));
                    }
                    let payment = insert_payment(&mut tx, invoice.id, invoice.customer_id, &invoice.currency, p, now).await?;
                    let paid_total = invoice.amount_paid_minor + p.amount_minor;
                    let settled = paid_total >= invoice.amount_minor;
                    let unpaid = invoice;
                    let invoice = sqlx::query_as::<_, Invoice>(
                        "UPDATE invoices SET amount_paid_minor = $2,
                             status = CASE WHEN $3 THEN 'paid' ELSE status END,
                             paid_at = CASE WHEN $3 THEN $4 ELSE paid_at END,
                             next_charge_at = CASE WHEN $3 THEN NULL ELSE next_charge_at END,
                             updated_at = $4
                         WHERE id = $1 RETURNING *",
                    )
                    .bind(unpaid.id).bind(paid_total).bind(settled).bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    let mut unsuspends = None;
                    if settled {
                        if let (Some(service), Some(start), Some(end)) = (invoice.service_id, invoice.period_start, invoice.period_end) {
                            // Compare-and-set: the period paid for is the one due, so paying
                            // moves the due date one cycle once, however often it is replayed.
                            let moved = sqlx::query("UPDATE services SET next_due_at = $3, updated_at = $4 WHERE id = $1 AND next_due_at = $2")
                                .bind(service).bind(start).bind(end).bind(now)
                                .execute(&mut *tx).await?.rows_affected();
                            if moved > 0 {
                                <$store>::record_activity(&mut tx, actor, "service.next_due_changed", "service", service,
                                    serde_json::json!({ "invoiceId": invoice.id }),
                                    Change::updated(serde_json::json!({ "nextDueDate": day(Some(start)) }), serde_json::json!({ "nextDueDate": day(Some(end)) }))).await?;
                            }
                        }
                        if let Some(service) = invoice.service_id {
                            let row: Option<(String, Option<String>)> = sqlx::query_as(
                                "SELECT status, suspension_reason FROM services WHERE id = $1",
                            )
                            .bind(service)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let still_overdue: i64 = sqlx::query_scalar(
                                "SELECT COUNT(*) FROM invoices WHERE service_id = $1 AND status IN ('unpaid', 'overdue') AND due_at < $2",
                            )
                            .bind(service).bind(p.now)
                            .fetch_one(&mut *tx)
                            .await?;
                            if row.as_ref().is_some_and(|(s, r)| s == "suspended" && r.as_deref() == Some("overdue")) && still_overdue == 0 {
                                insert_job(&mut tx, &NewBillingJob {
                                    kind: "unsuspend",
                                    dedupe_key: format!("unsuspend-after-invoice-{}", invoice.id),
                                    invoice_id: Some(invoice.id),
                                    customer_id: Some(invoice.customer_id),
                                    service_id: Some(service),
                                    params: serde_json::json!({}),
                                }, now).await?;
                                unsuspends = Some(service);
                            }
                        }
                        insert_job(&mut tx, &email_job("payment_receipt", &invoice), now).await?;
                    }
                    <$store>::record_activity(&mut tx, actor, "invoice.payment", "invoice", invoice.id, serde_json::json!({
                        "paymentId": payment.id, "amount": p.amount_minor, "method": p.method, "ref": p.provider_ref, "status": invoice.status,
                    }), Change::between(invoice_summary(&unpaid), invoice_summary(&invoice))).await?;
                    event_outcome(&mut tx, event, "payment_recorded").await?;
                    tx.commit().await?;
                    Ok(EventEffect::Applied(PaymentOutcome::Recorded { invoice, payment, unsuspends }))
                }

                async fn record_refund(&self, provider_ref: &str, amount_refunded_total: i64, event: Option<&EventRecord>) -> StoreResult<EventEffect<Option<Invoice>>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    if let Some(e) = event && !insert_event(&mut tx, e, now).await? {
                        return Ok(EventEffect::Duplicate);
                    }
                    let payment = sqlx::query_as::<_, Payment>(AssertSqlSafe(format!(
                        "SELECT * FROM payments WHERE provider = 'stripe' AND provider_ref = $1{}", <$store>::FOR_UPDATE)))
                        .bind(provider_ref).fetch_optional(&mut *tx).await?;
                    let Some(payment) = payment else {
                        event_outcome(&mut tx, event, "unknown_payment").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(None));
                    };
                    let refunded = amount_refunded_total.clamp(payment.refunded_minor, payment.amount_minor);
                    sqlx::query("UPDATE payments SET refunded_minor = $2, status = CASE WHEN $2 >= amount_minor THEN 'refunded' ELSE status END WHERE id = $1")
                        .bind(payment.id).bind(refunded).execute(&mut *tx).await?;
                    let Some(invoice_id) = payment.invoice_id else {
                        event_outcome(&mut tx, event, "refund_recorded").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(None));
                    };
                    let Some(before) = lock_invoice(&mut tx, invoice_id).await? else {
                        return Err(StoreError::not_found("invoice", invoice_id));
                    };
                    let invoice = sqlx::query_as::<_, Invoice>(
                        "UPDATE invoices SET
                             amount_refunded_minor = (SELECT COALESCE(SUM(refunded_minor), 0) FROM payments WHERE invoice_id = $1),
                             updated_at = $2
                         WHERE id = $1 RETURNING *",
                    )
                    .bind(invoice_id).bind(now).fetch_one(&mut *tx).await?;
                    let full = invoice.amount_paid_minor > 0 && invoice.amount_refunded_minor >= invoice.amount_paid_minor;
                    let invoice = if full && invoice.status == "paid" {
                        sqlx::query_as::<_, Invoice>("UPDATE invoices SET status = 'refunded', updated_at = $2 WHERE id = $1 RETURNING *")
                            .bind(invoice_id).bind(now).fetch_one(&mut *tx).await?
                    } else {
                        invoice
                    };
                    if full && let Some(service) = invoice.service_id {
                        // A refunded first payment of a service that never got its account
                        // ends the order: queue the cancellation (it refuses, harmlessly, once
                        // the account exists; a terminated service is an admin's call).
                        let order: Option<i64> = sqlx::query_scalar("SELECT id FROM orders WHERE invoice_id = $1")
                            .bind(invoice_id).fetch_optional(&mut *tx).await?;
                        if order.is_some() {
                            insert_job(&mut tx, &NewBillingJob {
                                kind: "cancel_service",
                                dedupe_key: format!("cancel-after-refund-{invoice_id}"),
                                invoice_id: Some(invoice_id),
                                customer_id: Some(invoice.customer_id),
                                service_id: Some(service),
                                params: serde_json::json!({}),
                            }, now).await?;
                        }
                    }
                    <$store>::record_activity(&mut tx, "billing", "invoice.refund", "invoice", invoice_id, serde_json::json!({
                        "ref": provider_ref, "refundedTotal": refunded, "status": invoice.status,
                    }), Change::between(invoice_summary(&before), invoice_summary(&invoice))).await?;
                    event_outcome(&mut tx, event, if full { "refunded" } else { "partly_refunded" }).await?;
                    tx.commit().await?;
                    Ok(EventEffect::Applied(Some(invoice)))
                }

                async fn record_dispute(&self, provider_ref: &str, dispute_id: &str, jobs: &[NewBillingJob], event: Option<&EventRecord>) -> StoreResult<EventEffect<Option<(Payment, Option<i64>)>>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    if let Some(e) = event && !insert_event(&mut tx, e, now).await? {
                        return Ok(EventEffect::Duplicate);
                    }
                    let payment = sqlx::query_as::<_, Payment>("SELECT * FROM payments WHERE provider = 'stripe' AND provider_ref = $1")
                        .bind(provider_ref).fetch_optional(&mut *tx).await?;
                    let Some(payment) = payment else {
                        event_outcome(&mut tx, event, "unknown_payment").await?;
                        tx.commit().await?;
                        return Ok(EventEffect::Applied(None));
                    };
                    let service: Option<i64> = match payment.invoice_id {
                        Some(i) => sqlx::query_scalar::<_, Option<i64>>("SELECT service_id FROM invoices WHERE id = $1")
                            .bind(i).fetch_optional(&mut *tx).await?.flatten(),
                        None => None,
                    };
                    if let Some(s) = service {
                        let previous: Option<String> = sqlx::query_scalar::<_, Option<String>>("SELECT dispute_ref FROM services WHERE id = $1")
                            .bind(s).fetch_optional(&mut *tx).await?.flatten();
                        sqlx::query("UPDATE services SET dispute_ref = $2, updated_at = $3 WHERE id = $1")
                            .bind(s).bind(dispute_id).bind(now).execute(&mut *tx).await?;
                        <$store>::record_activity(&mut tx, "billing", "service.disputed", "service", s,
                            serde_json::json!({ "dispute": dispute_id, "paymentId": payment.id }),
                            Change::updated(serde_json::json!({ "disputeRef": previous }), serde_json::json!({ "disputeRef": dispute_id }))).await?;
                    }
                    for job in jobs {
                        let mut job = job.clone();
                        job.service_id = job.service_id.or(service);
                        job.invoice_id = job.invoice_id.or(payment.invoice_id);
                        job.customer_id = job.customer_id.or(Some(payment.customer_id));
                        insert_job(&mut tx, &job, now).await?;
                    }
                    event_outcome(&mut tx, event, "dispute_recorded").await?;
                    tx.commit().await?;
                    Ok(EventEffect::Applied(Some((payment, service))))
                }

                async fn create_invoice(&self, new: &NewInvoice, jobs: &[NewBillingJob], actor: &str) -> StoreResult<Option<Invoice>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    if let (Some(service), Some(start)) = (new.service_id, new.period_start) {
                        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM invoices WHERE service_id = $1 AND period_start = $2")
                            .bind(service).bind(start).fetch_optional(&mut *tx).await?;
                        if exists.is_some() {
                            return Ok(None);
                        }
                    }
                    let invoice = match insert_invoice(&mut tx, new, "unpaid", None, now, true).await {
                        Ok(i) => i,
                        // Another replica wrote this period's invoice first; this number goes back.
                        Err(StoreError::Conflict(_)) => return Ok(None),
                        Err(e) => return Err(e),
                    };
                    for job in jobs {
                        let mut job = job.clone();
                        job.invoice_id = Some(invoice.id);
                        job.dedupe_key = job.dedupe_key.replace("{invoice}", &invoice.id.to_string());
                        insert_job(&mut tx, &job, now).await?;
                    }
                    <$store>::record_activity(&mut tx, actor, "invoice.created", "invoice", invoice.id, serde_json::json!({
                        "number": invoice.number, "serviceId": invoice.service_id, "total": invoice.amount_minor, "currency": invoice.currency,
                    }), Change::created(invoice_summary(&invoice))).await?;
                    tx.commit().await?;
                    Ok(Some(invoice))
                }

                async fn get_invoice(&self, id: i64) -> StoreResult<Option<Invoice>> {
                    Ok(sqlx::query_as::<_, Invoice>("SELECT * FROM invoices WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
                }

                async fn list_invoices(&self, f: &InvoiceFilter) -> StoreResult<Vec<Invoice>> {
                    Ok(sqlx::query_as::<_, Invoice>(
                        "SELECT * FROM invoices
                         WHERE ($1 IS NULL OR customer_id = $1) AND ($2 IS NULL OR service_id = $2)
                           AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4)
                         ORDER BY id DESC LIMIT $5",
                    )
                    .bind(f.customer_id)
                    .bind(f.service_id)
                    .bind(&f.status)
                    .bind(f.page.after_id)
                    .bind(f.page.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn invoice_payments(&self, invoice_id: i64) -> StoreResult<Vec<Payment>> {
                    Ok(sqlx::query_as::<_, Payment>("SELECT * FROM payments WHERE invoice_id = $1 ORDER BY id")
                        .bind(invoice_id).fetch_all(&self.pool).await?)
                }

                async fn void_invoice(&self, id: i64, actor: &str) -> StoreResult<Option<Result<Invoice, Invoice>>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some(invoice) = lock_invoice(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    let open_charge: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM billing_jobs WHERE invoice_id = $1 AND kind = 'charge' AND status IN ('pending', 'processing')",
                    )
                    .bind(id).fetch_optional(&mut *tx).await?;
                    if invoice.status != "unpaid" || invoice.amount_paid_minor > 0 || open_charge.is_some() {
                        return Ok(Some(Err(invoice)));
                    }
                    let before = invoice;
                    let invoice = sqlx::query_as::<_, Invoice>(
                        "UPDATE invoices SET status = 'void', voided_at = $2, next_charge_at = NULL, updated_at = $2 WHERE id = $1 RETURNING *",
                    )
                    .bind(id).bind(now).fetch_one(&mut *tx).await?;
                    <$store>::record_activity(&mut tx, actor, "invoice.voided", "invoice", id, serde_json::json!({ "number": invoice.number }),
                        Change::between(invoice_summary(&before), invoice_summary(&invoice))).await?;
                    tx.commit().await?;
                    Ok(Some(Ok(invoice)))
                }

                async fn set_invoice_due(&self, id: i64, due_at: i64, actor: &str) -> StoreResult<Option<Result<Invoice, Invoice>>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some(invoice) = lock_invoice(&mut tx, id).await? else {
                        return Ok(None);
                    };
                    if invoice.status != "unpaid" {
                        return Ok(Some(Err(invoice)));
                    }
                    let moved = sqlx::query_as::<_, Invoice>(
                        "UPDATE invoices SET due_at = $2,
                             next_charge_at = CASE WHEN next_charge_at IS NULL THEN NULL ELSE $2 END,
                             updated_at = $3
                         WHERE id = $1 RETURNING *",
                    )
                    .bind(id).bind(due_at).bind(now).fetch_one(&mut *tx).await?;
                    <$store>::record_activity(&mut tx, actor, "invoice.due_changed", "invoice", id,
                        serde_json::json!({ "from": invoice.due_at, "to": due_at }),
                        Change::between(invoice_summary(&invoice), invoice_summary(&moved))).await?;
                    tx.commit().await?;
                    Ok(Some(Ok(moved)))
                }

                async fn services_to_invoice(&self, until: i64, limit: i64) -> StoreResult<Vec<Service>> {
                    Ok(sqlx::query_as::<_, Service>(
                        "SELECT s.* FROM services s
                         WHERE s.status IN ('active', 'suspended') AND s.next_due_at IS NOT NULL AND s.next_due_at <= $1
                           AND s.cancel_at IS NULL
                           AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.service_id = s.id AND i.period_start = s.next_due_at)
                         ORDER BY s.next_due_at, s.id LIMIT $2",
                    )
                    .bind(until).bind(limit).fetch_all(&self.pool).await?)
                }

                async fn overdue_services(&self, due_by: i64, now: i64, after: i64, limit: i64) -> StoreResult<Vec<(i64, i64)>> {
                    Ok(sqlx::query_as::<_, (i64, i64)>(
                        "SELECT s.id, MIN(i.id) FROM services s JOIN invoices i ON i.service_id = s.id
                             JOIN customers c ON c.id = i.customer_id
                         WHERE s.status = 'active' AND i.status IN ('unpaid', 'overdue') AND i.due_at <= $1
                           AND NOT (i.next_charge_at IS NOT NULL AND i.next_charge_at <= $2
                                    AND c.payment_method_id IS NOT NULL)
                           AND NOT EXISTS (SELECT 1 FROM billing_jobs j WHERE j.invoice_id = i.id AND j.kind = 'charge'
                                           AND j.status IN ('pending', 'processing'))
                           AND NOT EXISTS (SELECT 1 FROM provisioning_tasks t WHERE t.service_id = s.id
                                           AND t.status IN ('pending', 'processing'))
                           AND s.id > $3
                         GROUP BY s.id ORDER BY s.id LIMIT $4",
                    )
                    .bind(due_by).bind(now).bind(after).bind(limit).fetch_all(&self.pool).await?)
                }

                async fn overdue_suspended_services(&self, suspended_before: i64, after: i64, limit: i64) -> StoreResult<Vec<(i64, i64)>> {
                    Ok(sqlx::query_as::<_, (i64, i64)>(
                        "SELECT s.id, MIN(i.id) FROM services s JOIN invoices i ON i.service_id = s.id
                         WHERE s.status = 'suspended' AND s.suspension_reason = 'overdue'
                           AND s.suspended_at < $1 AND i.status IN ('unpaid', 'overdue')
                           AND NOT EXISTS (SELECT 1 FROM billing_jobs j WHERE j.invoice_id = i.id AND j.kind = 'charge'
                                           AND j.status IN ('pending', 'processing'))
                           AND NOT EXISTS (SELECT 1 FROM provisioning_tasks t WHERE t.service_id = s.id
                                           AND t.status IN ('pending', 'processing'))
                           AND s.id > $2
                         GROUP BY s.id ORDER BY s.id LIMIT $3",
                    )
                    .bind(suspended_before).bind(after).bind(limit).fetch_all(&self.pool).await?)
                }

                async fn invoices_to_charge(&self, now: i64, limit: i64) -> StoreResult<Vec<Invoice>> {
                    Ok(sqlx::query_as::<_, Invoice>(
                        "SELECT i.* FROM invoices i JOIN customers c ON c.id = i.customer_id
                         WHERE i.status = 'unpaid' AND i.next_charge_at IS NOT NULL AND i.next_charge_at <= $1
                           AND c.payment_method_id IS NOT NULL
                           AND NOT EXISTS (SELECT 1 FROM billing_jobs j WHERE j.invoice_id = i.id AND j.kind = 'charge'
                                           AND j.status IN ('pending', 'processing'))
                         ORDER BY i.next_charge_at, i.id LIMIT $2",
                    )
                    .bind(now).bind(limit).fetch_all(&self.pool).await?)
                }

                async fn enqueue_charge(&self, invoice_id: i64, actor: &str) -> StoreResult<Result<(BillingJob, bool), ChargeRefusal>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some(invoice) = lock_invoice(&mut tx, invoice_id).await? else {
                        return Ok(Err(ChargeRefusal::NoSuchInvoice));
                    };
                    let open = sqlx::query_as::<_, BillingJob>(
                        "SELECT * FROM billing_jobs WHERE invoice_id = $1 AND kind = 'charge' AND status IN ('pending', 'processing')",
                    )
                    .bind(invoice_id).fetch_optional(&mut *tx).await?;
                    if let Some(job) = open {
                        return Ok(Ok((job, false)));
                    }
                    if invoice.status != "unpaid" || invoice.amount_due() == 0 {
                        return Ok(Err(ChargeRefusal::NotPayable(invoice)));
                    }
                    let card: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                        "SELECT stripe_customer_id, payment_method_id FROM customers WHERE id = $1",
                    )
                    .bind(invoice.customer_id).fetch_optional(&mut *tx).await?;
                    let Some((Some(stripe_customer), Some(payment_method))) = card else {
                        return Ok(Err(ChargeRefusal::NoSavedCard(invoice)));
                    };
                    let attempt = invoice.charge_attempts + 1;
                    let charging = sqlx::query_as::<_, Invoice>(
                        "UPDATE invoices SET charge_attempts = $2, next_charge_at = NULL, updated_at = $3 WHERE id = $1 RETURNING *",
                    )
                    .bind(invoice_id).bind(attempt).bind(now).fetch_one(&mut *tx).await?;
                    let key = format!("invoice-{invoice_id}-charge-{attempt}");
                    insert_job(&mut tx, &NewBillingJob {
                        kind: "charge",
                        dedupe_key: key.clone(),
                        invoice_id: Some(invoice_id),
                        customer_id: Some(invoice.customer_id),
                        service_id: invoice.service_id,
                        params: serde_json::json!({
                            "attempt": attempt, "amount": invoice.amount_due(), "currency": invoice.currency,
                            "stripeCustomer": stripe_customer, "paymentMethod": payment_method,
                        }),
                    }, now).await?;
                    let job = sqlx::query_as::<_, BillingJob>("SELECT * FROM billing_jobs WHERE dedupe_key = $1")
                        .bind(&key).fetch_one(&mut *tx).await?;
                    <$store>::record_activity(&mut tx, actor, "invoice.charge_queued", "invoice", invoice_id,
                        serde_json::json!({ "attempt": attempt, "jobId": job.id }),
                        Change::between(invoice_summary(&invoice), invoice_summary(&charging))).await?;
                    tx.commit().await?;
                    Ok(Ok((job, true)))
                }

                async fn record_charge_declined(&self, d: &ChargeDeclined, actor: &str) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let before = lock_invoice(&mut tx, d.invoice_id).await?;
                    let after = sqlx::query_as::<_, Invoice>(
                        "UPDATE invoices SET last_charge_error = $2,
                             next_charge_at = CASE WHEN status = 'unpaid' THEN $3 ELSE NULL END,
                             pay_url = COALESCE($4, pay_url), updated_at = $5
                         WHERE id = $1 RETURNING *",
                    )
                    .bind(d.invoice_id).bind(&d.error).bind(d.next_charge_at).bind(&d.pay_url).bind(now)
                    .fetch_optional(&mut *tx).await?;
                    let change = match (&before, &after) {
                        (Some(b), Some(a)) => Change::between(invoice_summary(b), invoice_summary(a)),
                        _ => Change::none(),
                    };
                    if let Some(notice) = &d.notice {
                        insert_job(&mut tx, notice, now).await?;
                    }
                    <$store>::record_activity(&mut tx, actor, "invoice.charge_declined", "invoice", d.invoice_id, serde_json::json!({
                        "attempt": d.attempt, "error": d.error, "nextChargeAt": d.next_charge_at,
                    }), change).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn enqueue_billing_job(&self, job: &NewBillingJob) -> StoreResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let new = insert_job(&mut tx, job, now_ms()).await?;
                    tx.commit().await?;
                    Ok(new)
                }

                async fn claim_billing_job(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<BillingJob>>> {
                    let now = now_ms();
                    // One statement: atomic on its own, no transaction around it.
                    let row = sqlx::query(AssertSqlSafe(BILLING.claim_sql(<$store>::BACKEND)))
                        .bind(holder).bind(now).bind(now + lease_ms)
                        .fetch_optional(self.writer()).await?;
                    Ok(row.as_ref().map(Claimed::from_row).transpose()?)
                }

                async fn complete_billing_job(&self, id: i64, holder: &str, result: &serde_json::Value) -> StoreResult<()> {
                    let now = now_ms();
                    let rows = sqlx::query(
                        "UPDATE billing_jobs SET status = 'done', result = $3, last_error = NULL, completed_at = $4, updated_at = $4,
                             lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'processing'",
                    )
                    .bind(id).bind(holder).bind(Json(result)).bind(now)
                    .execute(self.writer()).await?.rows_affected();
                    if rows == 0 {
                        return Err(StoreError::lease_lost(format_args!("billing job {id}")));
                    }
                    Ok(())
                }

                async fn get_billing_job(&self, id: i64) -> StoreResult<Option<BillingJob>> {
                    Ok(sqlx::query_as::<_, BillingJob>("SELECT * FROM billing_jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
                }

                async fn save_card(&self, customer_id: i64, payment_method: &str, brand: Option<&str>, last4: Option<&str>, actor: &str) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let had_card: Option<bool> = sqlx::query_scalar(
                        "SELECT payment_method_id IS NOT NULL FROM customers WHERE id = $1",
                    )
                    .bind(customer_id).fetch_optional(&mut *tx).await?;
                    sqlx::query("UPDATE customers SET payment_method_id = $2, card_brand = $3, card_last4 = $4, updated_at = $5 WHERE id = $1")
                        .bind(customer_id).bind(payment_method).bind(brand).bind(last4).bind(now_ms())
                        .execute(&mut *tx).await?;
                    // Card data stays out of the summary: only whether one is on file.
                    <$store>::record_activity(&mut tx, actor, "customer.card_saved", "customer", customer_id,
                        serde_json::json!({ "brand": brand, "last4": last4 }),
                        Change::updated(serde_json::json!({ "cardOnFile": had_card.unwrap_or(false) }), serde_json::json!({ "cardOnFile": true }))).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn customer_card(&self, customer_id: i64) -> StoreResult<Option<(Option<String>, Option<String>)>> {
                    Ok(sqlx::query_as::<_, (Option<String>, Option<String>)>(
                        "SELECT card_brand, card_last4 FROM customers WHERE id = $1 AND payment_method_id IS NOT NULL",
                    )
                    .bind(customer_id).fetch_optional(&self.pool).await?)
                }

                async fn set_next_due(&self, service_id: i64, next_due_at: Option<i64>, billing_day: Option<i32>, actor: &str) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let before: Option<(Option<i64>, Option<i32>)> = sqlx::query_as(
                        "SELECT next_due_at, billing_day FROM services WHERE id = $1",
                    )
                    .bind(service_id).fetch_optional(&mut *tx).await?;
                    let rows = sqlx::query("UPDATE services SET next_due_at = $2, billing_day = COALESCE($3, billing_day), updated_at = $4 WHERE id = $1")
                        .bind(service_id).bind(next_due_at).bind(billing_day).bind(now_ms())
                        .execute(&mut *tx).await?.rows_affected();
                    if rows == 0 {
                        return Err(StoreError::not_found("service", service_id));
                    }
                    <$store>::record_activity(&mut tx, actor, "service.next_due_changed", "service", service_id,
                        serde_json::json!({ "nextDueAt": next_due_at }),
                        Change::between(
                            serde_json::json!({ "nextDueDate": day(before.and_then(|b| b.0)), "billingDay": before.and_then(|b| b.1) }),
                            serde_json::json!({ "nextDueDate": day(next_due_at), "billingDay": billing_day.or(before.and_then(|b| b.1)) }),
                        )).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_billing_store;
