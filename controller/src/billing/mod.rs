//! The money side: Stripe Checkout orders, signed Stripe events, invoices with gapless numbers,
//! payments (card, checkout, offline), refunds, disputes, renewal invoices with off-session
//! charges and their retries, and lifting a non-payment suspension when an invoice is paid.
//!
//! Exactly once, whatever Stripe or the network does: every effect of an event commits with
//! the event's id; fulfilment is one transaction keyed by the order, whichever of webhook and
//! success page comes first; every charge is a queued job whose Stripe `Idempotency-Key` is
//! fixed when it is queued (`invoice-42-charge-1`), so a crash or a retry replays the same
//! charge instead of making a second one. Work that calls Stripe or the lifecycle layer runs
//! in the job runner (`jobs::billing`), queued in the transaction that needs it.
//!
//! Billing emails are templates in `crate::mail` queued through the outbox (`notices`); the
//! sender draws the invoice PDF (`pdf`) at send time from the `invoice_document` they carry.
//!
//! Billing never calls the HTTP layer; it moves services only through `lifecycle`. It does not
//! own the storage of orders, invoices or payments (`store::billing`).

pub mod checkout;
pub mod events;
pub mod notices;
pub mod overdue;
pub mod pdf;
pub mod recurring;
pub mod signature;
pub mod stripe;
pub mod termination;

use std::sync::Arc;

use mpanel_common::billing::{date_to_ms, ms_to_date, period_end, tax_minor};
use mpanel_common::status::BillingCycle;

use crate::config::Config;
use crate::jobs::Dispatcher;
use crate::lifecycle::Lifecycle;
use crate::store::billing::InvoiceLine;
use crate::store::{DynStore, Product, StoreError};

pub use stripe::{StripeClient, StripeError};

/// Why a billing request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Bad or impossible input, naming the field (`status` 400 or 422).
    #[error("{message}")]
    Invalid {
        status: u16,
        field: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Stripe is not configured (`STRIPE_SECRET_KEY` unset).
    #[error("payments are not configured on this controller (STRIPE_SECRET_KEY is unset)")]
    NotConfigured,
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BillingError {
    pub(crate) fn invalid(
        field: &'static str,
        code: &'static str,
        message: impl std::fmt::Display,
    ) -> Self {
        BillingError::Invalid {
            status: 400,
            field,
            code,
            message: format!("{field}: {message}"),
        }
    }

    pub(crate) fn unprocessable(
        field: &'static str,
        code: &'static str,
        message: impl std::fmt::Display,
    ) -> Self {
        BillingError::Invalid {
            status: 422,
            field,
            code,
            message: format!("{field}: {message}"),
        }
    }
}

pub type BillingResult<T> = Result<T, BillingError>;

/// What one cycle of a product costs, tax included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub subtotal: i64,
    pub tax: i64,
    pub tax_rate_bp: i32,
    pub currency: String,
}

impl Quote {
    pub fn total(&self) -> i64 {
        self.subtotal + self.tax
    }

    /// The product's price for `cycle`; `currency` picks among several (the first one listed
    /// when not given).
    pub fn for_product(
        product: &Product,
        cycle: BillingCycle,
        currency: Option<&str>,
    ) -> Option<Quote> {
        let price = product.prices.iter().find(|p| {
            p.billing_cycle == cycle && currency.is_none_or(|c| p.currency.eq_ignore_ascii_case(c))
        })?;
        let rate = u32::try_from(product.tax_rate_bp).unwrap_or(0);
        Some(Quote {
            subtotal: price.amount_minor,
            tax: tax_minor(price.amount_minor, rate),
            tax_rate_bp: product.tax_rate_bp,
            currency: price.currency.clone(),
        })
    }

    /// The invoice lines for one period of `product` on `domain`.
    pub fn lines(
        &self,
        product: &Product,
        domain: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<InvoiceLine> {
        let (start, end) = (ms_to_date(start_ms), ms_to_date(end_ms));
        vec![InvoiceLine {
            description: format!(
                "{} – {domain} ({} to {})",
                product.name,
                mpanel_common::billing::format_date(start),
                mpanel_common::billing::format_date(end)
            ),
            amount: self.subtotal,
        }]
    }
}

/// The first period of a service ordered on `now_ms`: from that day to the same day one
/// cycle later; the billing day is that day of the month.
pub fn first_period(now_ms: i64, cycle: BillingCycle) -> (i64, i64, i32) {
    let start = ms_to_date(now_ms);
    let end = period_end(start, cycle, start.day());
    (date_to_ms(start), date_to_ms(end), i32::from(start.day()))
}

/// The billing side, over the store, the lifecycle layer and Stripe. Cheap to clone.
#[derive(Clone)]
pub struct Billing {
    pub(crate) store: DynStore,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) stripe: Option<Arc<StripeClient>>,
    pub(crate) config: Arc<Config>,
    pub(crate) dispatcher: Dispatcher,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("stripe", &self.stripe.is_some())
            .finish_non_exhaustive()
    }
}

impl Billing {
    pub fn new(
        store: DynStore,
        dispatcher: Dispatcher,
        stripe: Option<Arc<StripeClient>>,
        config: Arc<Config>,
    ) -> Self {
        Billing {
            lifecycle: Lifecycle::new(store.clone(), dispatcher.clone()),
            store,
            stripe,
            config,
            dispatcher,
        }
    }

    pub(crate) fn stripe(&self) -> BillingResult<&StripeClient> {
        self.stripe.as_deref().ok_or(BillingError::NotConfigured)
    }

    pub(crate) fn wake_jobs(&self) {
        self.dispatcher
            .wake_queue(&crate::store::lease_queue::BILLING);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Price;
    use mpanel_common::ids::ProductId;

    fn product(tax_rate_bp: i32) -> Product {
        Product {
            id: ProductId::new(1),
            name: "Basic".into(),
            server_group: "default".into(),
            package_cpanel: "default".into(),
            package_plesk: "Unlimited".into(),
            package_directadmin: "default".into(),
            disk_mb: 0,
            email_quota_mb: 0,
            databases: 1,
            active: true,
            tax_rate_bp,
            backup_schedule: mpanel_common::status::BackupSchedule::None,
            created_at: 0,
            updated_at: 0,
            prices: vec![
                Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: 999,
                    currency: "USD".into(),
                },
                Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: 899,
                    currency: "EUR".into(),
                },
            ],
        }
    }

    #[test]
    fn a_quote_adds_the_products_tax_rounded_in_integers() {
        let q = Quote::for_product(&product(2000), BillingCycle::Monthly, None).unwrap();
        assert_eq!((q.subtotal, q.tax, q.total()), (999, 200, 1199));
        assert_eq!(q.currency, "USD");
        let eur = Quote::for_product(&product(0), BillingCycle::Monthly, Some("eur")).unwrap();
        assert_eq!(
            (eur.subtotal, eur.tax, eur.currency.as_str()),
            (899, 0, "EUR")
        );
        assert!(Quote::for_product(&product(0), BillingCycle::Annually, None).is_none());
    }

    #[test]
    fn the_first_period_starts_today_and_keeps_the_day_of_the_month() {
        let jan31 = date_to_ms(time::macros::date!(2027 - 01 - 31)) + 3_600_000;
        let (start, end, day) = first_period(jan31, BillingCycle::Monthly);
        assert_eq!(ms_to_date(start), time::macros::date!(2027 - 01 - 31));
        assert_eq!(ms_to_date(end), time::macros::date!(2027 - 02 - 28));
        assert_eq!(day, 31);
    }
}
