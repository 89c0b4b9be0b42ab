//! Checkout: the open order is written first, then the Stripe customer and Checkout Session;
//! fulfilment (customer, service, paid invoice, payment, provisioning task) is one transaction
//! run by whichever of the webhook and the success page comes first.

use std::collections::BTreeMap;

use mpanel_common::DomainName;
use mpanel_common::ids::ProductId;
use mpanel_common::status::{BillingCycle, CustomerStatus};

use super::stripe::{CheckoutPaymentStatus, CheckoutSession, NewCheckoutSession, NewCustomer};
use super::{Billing, BillingError, BillingResult, Quote, first_period};
use crate::lifecycle::DEFAULT_MAX_RETRIES;
use crate::store::billing::{
    EventEffect, EventRecord, FulfilOutcome, Fulfilment, Invoice, NewOrder, Order,
};
use crate::store::{Service, StoreError, now_ms};

/// A customer's order, validated.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub product_id: ProductId,
    pub billing_cycle: BillingCycle,
    pub domain: DomainName,
    pub email: String,
    pub name: String,
    pub currency: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckoutStarted {
    pub url: String,
    pub session_id: String,
    pub order_id: i64,
}

/// The session a payment came through, in the fields fulfilment needs.
#[derive(Debug, Clone)]
pub(crate) struct PaidSession {
    pub session_id: Option<String>,
    pub stripe_customer: Option<String>,
    pub payment_intent: Option<String>,
    pub amount: i64,
    pub currency: String,
}

impl From<&CheckoutSession> for PaidSession {
    fn from(s: &CheckoutSession) -> Self {
        PaidSession {
            session_id: Some(s.id.clone()),
            stripe_customer: s.customer.clone(),
            payment_intent: s.payment_intent.clone(),
            amount: s.amount_total.unwrap_or(0),
            currency: s
                .currency
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
        }
    }
}

impl Billing {
    /// Validates the order, writes it `open`, and opens a Stripe Checkout Session for it.
    pub async fn start_checkout(&self, req: &CheckoutRequest) -> BillingResult<CheckoutStarted> {
        let stripe = self.stripe()?;
        let product = match self.store.get_product(req.product_id).await {
            Ok(p) => p,
            Err(StoreError::NotFound { .. }) => {
                return Err(BillingError::Invalid {
                    status: 404,
                    field: "productId",
                    code: "not_found",
                    message: format!("productId: product {} not found", req.product_id),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !product.active {
            return Err(BillingError::unprocessable(
                "productId",
                "product_inactive",
                format!("product {} is no longer sold", product.id),
            ));
        }
        let quote = Quote::for_product(&product, req.billing_cycle, req.currency.as_deref())
            .ok_or_else(|| {
                BillingError::unprocessable(
                    "billingCycle",
                    "no_price",
                    format!(
                        "product {} has no {} price{}",
                        product.id,
                        req.billing_cycle,
                        req.currency
                            .as_deref()
                            .map(|c| format!(" in {c}"))
                            .unwrap_or_default()
                    ),
                )
            })?;
        if quote.total() == 0 {
            return Err(BillingError::unprocessable(
                "productId",
                "free_product",
                "a free product needs no checkout; an admin orders it",
            ));
        }
        if self
            .store
            .live_service_for_domain(req.domain.as_str())
            .await?
            .is_some()
        {
            return Err(BillingError::Conflict {
                code: "domain_taken",
                message: format!("domain: {} already has a hosting service", req.domain),
            });
        }
        let existing = self.store.customer_by_email(&req.email).await?;
        if existing
            .as_ref()
            .is_some_and(|c| c.status != CustomerStatus::Active)
        {
            return Err(BillingError::unprocessable(
                "email",
                "customer_closed",
                "this customer account is closed",
            ));
        }
        let order = self
            .store
            .create_order(&NewOrder {
                email: req.email.clone(),
                name: req.name.clone(),
                customer_id: existing.as_ref().map(|c| c.id.get()),
                product_id: product.id.get(),
                billing_cycle: req.billing_cycle.as_str().to_owned(),
                domain: req.domain.as_str().to_owned(),
                subtotal_minor: quote.subtotal,
                tax_minor: quote.tax,
                tax_rate_bp: quote.tax_rate_bp,
                total_minor: quote.total(),
                currency: quote.currency.clone(),
            })
            .await?;
        let stripe_customer = match existing.and_then(|c| c.stripe_customer_id) {
            Some(id) => id,
            None => {
                stripe
                    .create_customer(
                        &NewCustomer {
                            email: req.email.clone(),
                            name: Some(req.name.clone()),
                            metadata: BTreeMap::from([("order_id".into(), order.id.to_string())]),
                        },
                        &format!("order-{}-customer", order.id),
                    )
                    .await?
                    .id
            }
        };
        let metadata = BTreeMap::from([("order_id".to_owned(), order.id.to_string())]);
        let session = stripe
            .create_checkout_session(
                &NewCheckoutSession {
                    customer: Some(stripe_customer.clone()),
                    customer_email: None,
                    amount_minor: quote.total(),
                    currency: mpanel_common::Currency::parse(&quote.currency)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    product_name: format!("{} – {}", product.name, req.domain),
                    success_url: format!(
                        "{}/api/checkout/success?session_id={{CHECKOUT_SESSION_ID}}",
                        self.config.public_url
                    ),
                    cancel_url: format!("{}/", self.config.public_url),
                    metadata: metadata.clone(),
                    client_reference_id: Some(format!("order-{}", order.id)),
                    save_card_for_off_session: true,
                    payment_intent_metadata: metadata,
                },
                &format!("order-{}-session", order.id),
            )
            .await?;
        let url = session.url.clone().unwrap_or_default();
        self.store
            .attach_checkout(order.id, &stripe_customer, &session.id, &url)
            .await?;
        tracing::info!(order_id = order.id, session = %session.id, "checkout started");
        Ok(CheckoutStarted {
            url,
            session_id: session.id,
            order_id: order.id,
        })
    }

    /// The success page: asks Stripe for the session and, when it is paid, runs the same
    /// fulfilment as the webhook (the second of the two to arrive changes nothing).
    pub async fn checkout_success(
        &self,
        session_id: &str,
    ) -> BillingResult<(Order, Option<Service>)> {
        let order = self
            .store
            .order_by_session(session_id)
            .await?
            .ok_or_else(|| BillingError::NotFound {
                entity: "checkout session",
                id: session_id.to_owned(),
            })?;
        if order.status == "open" {
            let session = self.stripe()?.get_checkout_session(session_id).await?;
            if session.payment_status == CheckoutPaymentStatus::Paid {
                self.fulfil(&order, &PaidSession::from(&session), None)
                    .await?;
            }
        }
        let order =
            self.store
                .get_order(order.id)
                .await?
                .ok_or_else(|| BillingError::NotFound {
                    entity: "order",
                    id: order.id.to_string(),
                })?;
        let service = match order.service_id {
            Some(id) => Some(self.store.get_service(id.into()).await?),
            None => None,
        };
        Ok((order, service))
    }

    /// Fulfils `order` from a payment; a no-op when it is fulfilled or closed already.
    pub(crate) async fn fulfil(
        &self,
        order: &Order,
        paid: &PaidSession,
        event: Option<&EventRecord>,
    ) -> BillingResult<EventEffect<FulfilOutcome>> {
        let product = self.store.get_product(order.product_id.into()).await?;
        let cycle: BillingCycle = order
            .billing_cycle
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("order {}: {e}", order.id)))?;
        let (start, end, billing_day) = first_period(now_ms(), cycle);
        let quote = Quote {
            subtotal: order.subtotal_minor,
            tax: order.tax_minor,
            tax_rate_bp: order.tax_rate_bp,
            currency: order.currency.clone(),
        };
        let f = Fulfilment {
            order_id: order.id,
            stripe_customer_id: paid.stripe_customer.clone(),
            payment_intent_id: paid.payment_intent.clone(),
            payment_ref: paid
                .payment_intent
                .clone()
                .or_else(|| paid.session_id.clone())
                .unwrap_or_else(|| format!("order-{}", order.id)),
            amount_minor: paid.amount,
            currency: paid.currency.clone(),
            period_start: start,
            period_end: end,
            billing_day,
            lines: quote.lines(&product, &order.domain, start, end),
            max_retries: DEFAULT_MAX_RETRIES,
        };
        let effect = self.store.fulfil_order(&f, event).await?;
        match &effect {
            EventEffect::Applied(FulfilOutcome::Fulfilled {
                service_id,
                task_id,
                ..
            }) => {
                self.dispatcher.wake();
                self.wake_jobs();
                tracing::info!(order_id = order.id, service_id, task_id, "order fulfilled");
            }
            EventEffect::Applied(FulfilOutcome::Held(o)) => {
                tracing::warn!(
                    order_id = o.id,
                    reason = o.failure.as_deref().unwrap_or(""),
                    "paid order held for an admin"
                );
            }
            _ => {}
        }
        Ok(effect)
    }

    /// A Checkout Session that pays `invoice`'s balance with the customer's card, saving it
    /// for the renewals after; what the payment link in a billing email opens.
    pub async fn invoice_checkout(&self, invoice: &Invoice, key: &str) -> BillingResult<String> {
        let stripe = self.stripe()?;
        let customer = self.store.get_customer(invoice.customer_id.into()).await?;
        let Some(stripe_customer) = customer.stripe_customer_id else {
            return Err(BillingError::unprocessable(
                "customerId",
                "no_stripe_customer",
                format!("customer {} has never paid by card", customer.id),
            ));
        };
        let metadata = BTreeMap::from([("invoice_id".to_owned(), invoice.id.to_string())]);
        let session = stripe
            .create_checkout_session(
                &NewCheckoutSession {
                    customer: Some(stripe_customer),
                    customer_email: None,
                    amount_minor: invoice.amount_due(),
                    currency: mpanel_common::Currency::parse(&invoice.currency)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    product_name: format!("Invoice {}", invoice.number),
                    success_url: format!(
                        "{}/api/checkout/success?session_id={{CHECKOUT_SESSION_ID}}",
                        self.config.public_url
                    ),
                    cancel_url: format!("{}/", self.config.public_url),
                    metadata: metadata.clone(),
                    client_reference_id: Some(format!("invoice-{}", invoice.id)),
                    save_card_for_off_session: true,
                    payment_intent_metadata: metadata,
                },
                key,
            )
            .await?;
        Ok(session.url.unwrap_or_default())
    }

    /// Keeps the card a checkout paid with (brand and last four only), for renewals.
    pub(crate) async fn save_card_from_checkout(
        &self,
        job: &crate::store::billing::BillingJob,
    ) -> BillingResult<serde_json::Value> {
        let stripe = self.stripe()?;
        let (Some(customer), Some(pi)) = (
            job.customer_id,
            job.params.0.get("paymentIntent").and_then(|v| v.as_str()),
        ) else {
            return Ok(serde_json::json!({ "skipped": "no payment intent" }));
        };
        let intent = stripe.get_payment_intent(pi).await?;
        let Some(method) = intent.payment_method else {
            return Ok(serde_json::json!({ "skipped": "the payment kept no payment method" }));
        };
        let details = stripe.get_payment_method(&method).await?;
        let card = details.card.as_ref();
        self.store
            .save_card(
                customer,
                &method,
                card.map(|c| c.brand.as_str()),
                card.map(|c| c.last4.as_str()),
                &crate::lifecycle::Actor::Billing.to_string(),
            )
            .await?;
        Ok(serde_json::json!({ "paymentMethod": method }))
    }
}
