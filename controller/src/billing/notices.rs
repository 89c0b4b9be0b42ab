//! Billing emails: what the `invoice_email` billing job commits to the outbox. The context is
//! built here from the invoice and its customer (with the invoice document the sender turns into
//! the attached PDF); templates live in `controller/templates/`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::pdf::InvoiceDocument;
use crate::config::Config;
use crate::crypto::Cipher;
use crate::jobs::Dispatcher;
use crate::store::billing::{BillingJob, Invoice};
use crate::store::lease_queue::EMAIL;
use crate::store::{Customer, DynStore, StoreError};

#[derive(Clone)]
pub struct Notices {
    pub store: DynStore,
    pub cipher: Arc<Cipher>,
    pub config: Arc<Config>,
    pub dispatcher: Dispatcher,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notices")
    }
}

fn money(amount: i64, currency: &str) -> String {
    match mpanel_common::Currency::parse(currency) {
        Ok(c) => mpanel_common::Money {
            amount_minor: amount,
            currency: c,
        }
        .to_string(),
        Err(_) => format!("{amount} {currency}"),
    }
}

fn day(ms: i64) -> String {
    mpanel_common::billing::format_date(mpanel_common::billing::ms_to_date(ms))
}

impl Notices {
    fn company_name(&self) -> String {
        self.config
            .company_name
            .clone()
            .or_else(|| self.config.company_domain.clone())
            .unwrap_or_else(|| "Your hosting provider".to_owned())
    }

    /// The invoice as its PDF shows it.
    pub fn document(&self, invoice: &Invoice, customer: &Customer) -> InvoiceDocument {
        let tax_label = (invoice.tax_rate_bp > 0).then(|| {
            let bp = invoice.tax_rate_bp;
            if bp % 100 == 0 {
                format!("Tax {}%", bp / 100)
            } else {
                format!("Tax {}.{:02}%", bp / 100, bp % 100)
            }
        });
        InvoiceDocument {
            number: invoice.number.clone(),
            status: invoice.status.clone(),
            issued_on: day(invoice.issued_at),
            due_on: day(invoice.due_at),
            period_start: invoice.period_start.map(day),
            period_end: invoice.period_end.map(day),
            currency: invoice.currency.clone(),
            company_name: self.company_name(),
            company_address: None,
            company_email: self.config.support_email.clone(),
            customer_name: customer.name.clone(),
            customer_email: customer.email.clone(),
            lines: invoice.lines.0.clone(),
            subtotal: invoice.subtotal_minor,
            tax: invoice.tax_minor,
            tax_label,
            total: invoice.amount_minor,
            amount_paid: invoice.amount_paid_minor,
            amount_due: invoice.amount_due(),
        }
    }

    /// Commits the job's email to the outbox (a no-op when it is there already).
    pub async fn queue(&self, job: &BillingJob) -> Result<Value, StoreError> {
        let params = &job.params.0;
        let template = params
            .get("template")
            .and_then(Value::as_str)
            .unwrap_or("invoice")
            .to_owned();
        let (to, subject, context) = match template.as_str() {
            "dispute_opened" => {
                let Some(to) = self
                    .config
                    .support_email
                    .clone()
                    .or_else(|| self.config.email_from.clone())
                else {
                    return Ok(json!({ "skipped": "SUPPORT_EMAIL is unset" }));
                };
                let amount = params.get("amount").and_then(Value::as_i64).unwrap_or(0);
                let currency = params
                    .get("currency")
                    .and_then(Value::as_str)
                    .unwrap_or("USD");
                let invoice = match job.invoice_id {
                    Some(id) => self.store.get_invoice(id).await?,
                    None => None,
                };
                let customer = match job.customer_id {
                    Some(id) => Some(self.store.get_customer(id.into()).await?),
                    None => None,
                };
                let service = match job.service_id {
                    Some(id) => Some(self.store.get_service(id.into()).await?),
                    None => None,
                };
                (
                    to,
                    format!("Payment disputed: {}", money(amount, currency)),
                    json!({
                        "dispute_id": params.get("dispute"),
                        "invoice_number": invoice.as_ref().map_or("-".to_owned(), |i| i.number.clone()),
                        "amount": amount,
                        "currency": currency,
                        "reason": params.get("reason").and_then(Value::as_str).unwrap_or("unknown"),
                        "customer_email": customer.as_ref().map_or(String::new(), |c| c.email.clone()),
                        "customer_name": customer.as_ref().map(|c| c.name.clone()),
                        "service_name": service.as_ref().map(|s| s.domain.clone()),
                    }),
                )
            }
            "order_failed" => {
                let order_id = params.get("orderId").and_then(Value::as_i64).unwrap_or(0);
                let Some(order) = self.store.get_order(order_id).await? else {
                    return Ok(json!({ "skipped": "the order is gone" }));
                };
                (
                    order.email.clone(),
                    format!("Your order for {} could not be completed", order.domain),
                    json!({
                        "customer_name": order.name,
                        "domain": order.domain,
                        "product_name": self.store.get_product(order.product_id.into()).await.map_or_else(|_| "hosting".to_owned(), |p| p.name),
                        "amount": order.total_minor,
                        "currency": order.currency,
                    }),
                )
            }
            _ => {
                let Some(invoice) = (match job.invoice_id {
                    Some(id) => self.store.get_invoice(id).await?,
                    None => None,
                }) else {
                    return Ok(json!({ "skipped": "the invoice is gone" }));
                };
                let customer = self.store.get_customer(invoice.customer_id.into()).await?;
                let card = self.saved_card(&customer).await?;
                let subject = match template.as_str() {
                    "payment_receipt" => format!("Payment received – invoice {}", invoice.number),
                    "payment_failed" => format!("Payment failed – invoice {}", invoice.number),
                    "payment_action_required" => {
                        format!("Please confirm your payment – invoice {}", invoice.number)
                    }
                    _ => format!("Invoice {}", invoice.number),
                };
                let doc = self.document(&invoice, &customer);
                let service = match invoice.service_id {
                    Some(id) => Some(self.store.get_service(id.into()).await?),
                    None => None,
                };
                let pay_url = params
                    .get("payUrl")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or(invoice.pay_url.clone());
                let mut context = json!({
                    "customer_name": customer.name,
                    "invoice_number": invoice.number,
                    "currency": invoice.currency,
                    "lines": invoice.lines.0,
                    "tax": invoice.tax_minor,
                    "tax_label": doc.tax_label,
                    "total": invoice.amount_minor,
                    "due_on": day(invoice.due_at),
                    "period_start": invoice.period_start.map(day),
                    "period_end": invoice.period_end.map(day),
                    "card_last4": card.as_ref().map(|c| c.1.clone()),
                    "charge_on": invoice.next_charge_at.map(day),
                    "service_name": service.as_ref().map(|s| s.domain.clone()),
                    "attempt": params.get("attempt"),
                    "decline_code": params.get("reason"),
                    "next_retry_on": params.get("nextChargeAt").and_then(Value::as_i64).map(day),
                });
                let extra = match template.as_str() {
                    "payment_receipt" => json!({
                        "amount": invoice.amount_paid_minor,
                        "method": card.as_ref().map(|(brand, last4)| format!("{} ending {last4}", capitalised(brand))),
                        "paid_on": invoice.paid_at.map(day),
                        "invoice_document": doc,
                    }),
                    "payment_failed" => json!({
                        "amount": invoice.amount_due(),
                        "pay_url": pay_url,
                    }),
                    "payment_action_required" => json!({
                        "amount": invoice.amount_due(),
                        // The bank wants the customer on a page of ours: the payment link, or
                        // the portal when Stripe could not make one.
                        "pay_url": pay_url.unwrap_or_else(|| format!("{}/", self.config.public_url)),
                    }),
                    _ => json!({
                        "pay_url": pay_url,
                        "invoice_document": doc,
                    }),
                };
                if let (Value::Object(c), Value::Object(e)) = (&mut context, extra) {
                    c.extend(e);
                }
                (customer.email, subject, context)
            }
        };
        let sealed = self
            .cipher
            .seal_str(&context.to_string())
            .map_err(|e| StoreError::Corrupt(format!("cannot seal an email: {e}")))?;
        let queued = self
            .store
            .queue_email(&job.dedupe_key, &to, &template, &subject, &sealed)
            .await?;
        self.dispatcher.wake_queue(&EMAIL);
        Ok(json!({ "template": template, "queued": queued }))
    }

    async fn saved_card(
        &self,
        customer: &Customer,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .store
            .customer_card(customer.id.get())
            .await?
            .and_then(|(brand, last4)| Some((brand.unwrap_or_else(|| "card".into()), last4?))))
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
