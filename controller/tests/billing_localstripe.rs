//! The controller's Stripe client and webhook against localstripe (PyPI package `localstripe`),
//! a third-party Stripe fake run as its own process: customers, a saved card charged
//! off-session, a declining card, partial and full refunds, and a `payment_intent.succeeded`
//! that localstripe signs and sends to the controller's webhook, paying our invoice once.
//!
//! Where localstripe strays from Stripe the tests keep to what both do: it has no list of a
//! customer's PaymentIntents, and a refund without an amount takes back the whole charge
//! rather than what is left of it, so the rest of a partly refunded charge is named.

mod fleet_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_support::Controller;
use mpanel_common::{Currency, Secret};
use mpanel_controller::billing::stripe::{
    NewCustomer, OffSessionCharge, PaymentIntent, PaymentIntentStatus,
};
use mpanel_controller::billing::{StripeClient, StripeError};
use mpanel_controller::store::billing::{InvoiceLine, NewInvoice};
use mpanel_controller::store::{self, DynStore, now_ms};
use mpanel_e2e::cluster::{TestDir, http_client};
use mpanel_e2e::stripe::{
    LocalStripe, STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, sign_stripe_payload,
};
use reqwest::Method;
use serde_json::{Value, json};

fn client(localstripe: &LocalStripe) -> StripeClient {
    StripeClient::new(&localstripe.url, Secret::new(STRIPE_TEST_KEY.to_owned()))
        .expect("client")
        .with_retry_base_delay(Duration::from_millis(20))
}

/// A call the controller's client does not make (attaching a card happens on Stripe's payment
/// page in production; reading a charge is for the test's eyes).
async fn raw(
    localstripe: &LocalStripe,
    method: Method,
    path: &str,
    form: &[(&str, &str)],
) -> Value {
    let mut request = http_client()
        .request(method.clone(), format!("{}{path}", localstripe.url))
        .bearer_auth(STRIPE_TEST_KEY);
    if !form.is_empty() {
        request = request.form(form);
    }
    let r = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "{method} {path} answered {status}: {body}"
    );
    body
}

/// Attaches the test card `test_id` (`pm_card_visa`…) to `customer`; localstripe makes a new
/// `pm_…` of it, as Stripe does.
async fn attach(localstripe: &LocalStripe, test_id: &str, customer: &str) -> String {
    let pm = raw(
        localstripe,
        Method::POST,
        &format!("/v1/payment_methods/{test_id}/attach"),
        &[("customer", customer)],
    )
    .await;
    assert_eq!(pm["customer"], customer, "{pm}");
    let id = pm["id"].as_str().expect("payment method id").to_owned();
    assert!(id.starts_with("pm_") && id != test_id, "{id}");
    id
}

async fn customer(stripe: &StripeClient, email: &str, key: &str) -> String {
    let new = NewCustomer {
        email: email.to_owned(),
        name: Some("Zoë Customer".to_owned()),
        metadata: BTreeMap::from([("customer_ref".to_owned(), key.to_owned())]),
    };
    let c = stripe.create_customer(&new, key).await.expect("customer");
    assert!(c.id.starts_with("cus_"), "{c:?}");
    assert_eq!(c.email.as_deref(), Some(email));
    assert_eq!(c.name.as_deref(), Some("Zoë Customer"));
    assert_eq!(c.metadata["customer_ref"], key);
    c.id
}

fn charge(customer: &str, payment_method: &str, invoice: i64) -> OffSessionCharge {
    OffSessionCharge {
        amount_minor: 1199,
        currency: Currency::USD,
        customer: customer.to_owned(),
        payment_method: payment_method.to_owned(),
        metadata: BTreeMap::from([("invoice_id".to_owned(), invoice.to_string())]),
    }
}

async fn charged(stripe: &StripeClient, charge: &OffSessionCharge, key: &str) -> PaymentIntent {
    let pi = stripe
        .charge_off_session(charge, key)
        .await
        .expect("the saved card is charged");
    assert!(pi.id.starts_with("pi_"), "{pi:?}");
    assert_eq!(pi.status, PaymentIntentStatus::Succeeded, "{pi:?}");
    assert_eq!((pi.amount, pi.currency), (1199, Currency::USD));
    assert_eq!(pi.customer.as_deref(), Some(charge.customer.as_str()));
    assert_eq!(
        pi.payment_method.as_deref(),
        Some(charge.payment_method.as_str())
    );
    assert_eq!(pi.metadata, charge.metadata);
    assert!(pi.latest_charge.is_some(), "{pi:?}");
    pi
}

#[tokio::test]
async fn the_stripe_client_charges_a_saved_card_reads_a_decline_and_refunds_against_localstripe() {
    let start = Instant::now();
    let dir = TestDir::create("billing-localstripe-client");
    let localstripe = LocalStripe::start(&dir, "localstripe").await;
    let stripe = client(&localstripe);

    // A customer with a saved visa, charged without the customer present.
    let cus = customer(&stripe, "ann@example.com", "ls-customer-ann").await;
    let visa = attach(&localstripe, "pm_card_visa", &cus).await;
    let card = stripe
        .get_payment_method(&visa)
        .await
        .expect("payment method");
    assert_eq!(card.customer.as_deref(), Some(cus.as_str()));
    let card = card.card.expect("a card");
    assert_eq!((card.brand.as_str(), card.last4.as_str()), ("visa", "4242"));
    let pi = charged(&stripe, &charge(&cus, &visa, 42), "invoice-42-charge-1").await;
    let read = stripe.get_payment_intent(&pi.id).await.expect("read back");
    assert_eq!(read.status, PaymentIntentStatus::Succeeded);
    assert_eq!(read.latest_charge, pi.latest_charge);

    // A card that attaches but declines every charge (4000000000000341).
    let failing = attach(&localstripe, "pm_card_chargeCustomerFail", &cus).await;
    let err = stripe
        .charge_off_session(&charge(&cus, &failing, 43), "invoice-43-charge-1")
        .await
        .expect_err("the card declines");
    assert!(matches!(err, StripeError::CardDeclined { .. }), "{err:?}");
    assert!(err.is_decline() && !err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), "card_declined");

    // Part of the first charge back, then the rest: the charge ends fully refunded.
    let ch = pi.latest_charge.clone().expect("charge");
    let part = stripe
        .create_refund(&pi.id, Some(300), "invoice-42-refund-1")
        .await
        .expect("partial refund");
    assert!(part.id.starts_with("re_"), "{part:?}");
    assert_eq!(part.amount, 300);
    assert_eq!(part.payment_intent.as_deref(), Some(pi.id.as_str()));
    assert_eq!(part.charge.as_deref(), Some(ch.as_str()));
    assert_eq!(part.status.as_deref(), Some("succeeded"));
    let seen = raw(&localstripe, Method::GET, &format!("/v1/charges/{ch}"), &[]).await;
    assert_eq!(
        (seen["amount_refunded"].as_i64(), seen["refunded"].as_bool()),
        (Some(300), Some(false)),
        "{seen}"
    );
    let rest = stripe
        .create_refund(&pi.id, Some(899), "invoice-42-refund-2")
        .await
        .expect("refund of the rest");
    assert_eq!(rest.amount, 899);
    assert_ne!(rest.id, part.id);
    let seen = raw(&localstripe, Method::GET, &format!("/v1/charges/{ch}"), &[]).await;
    assert_eq!(
        (seen["amount_refunded"].as_i64(), seen["refunded"].as_bool()),
        (Some(1199), Some(true)),
        "{seen}"
    );

    // A refund without an amount gives back the whole of a fresh charge.
    let second = charged(&stripe, &charge(&cus, &visa, 44), "invoice-44-charge-1").await;
    let full = stripe
        .create_refund(&second.id, None, "invoice-44-refund-1")
        .await
        .expect("full refund");
    assert_eq!(full.amount, 1199);
    assert_eq!(full.payment_intent.as_deref(), Some(second.id.as_str()));
    let ch2 = second.latest_charge.expect("charge");
    let seen = raw(
        &localstripe,
        Method::GET,
        &format!("/v1/charges/{ch2}"),
        &[],
    )
    .await;
    assert_eq!(seen["refunded"], true, "{seen}");

    // A refund of a payment that does not exist is the caller's mistake, not a retry.
    let err = stripe
        .create_refund("pi_doesnotexist", None, "invoice-45-refund-1")
        .await
        .expect_err("no such payment");
    assert!(
        matches!(err, StripeError::InvalidRequest { status: 404, .. }),
        "{err:?}"
    );
    eprintln!("done in {:.1}s", start.elapsed().as_secs_f64());
}

/// An unpaid invoice of 11.99 USD for a customer made through the API.
async fn unpaid_invoice(c: &Controller, store: &DynStore) -> i64 {
    let (status, customer) = c
        .request(
            Method::POST,
            "/api/customers",
            Some(json!({"email": "bo@example.com", "name": "Bo Payer"})),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    let now = now_ms();
    let invoice = store
        .create_invoice(
            &NewInvoice {
                customer_id: customer["id"].as_i64().expect("customer id"),
                service_id: None,
                period_start: None,
                period_end: None,
                subtotal_minor: 999,
                tax_minor: 200,
                tax_rate_bp: 2000,
                currency: "USD".into(),
                lines: vec![InvoiceLine {
                    description: "Setup".into(),
                    amount: 999,
                }],
                issued_at: now,
                due_at: now,
                next_charge_at: None,
            },
            &[],
            "test",
        )
        .await
        .expect("store")
        .expect("a new invoice");
    assert_eq!(
        (invoice.status.as_str(), invoice.amount_minor),
        ("unpaid", 1199)
    );
    invoice.id
}

async fn scalar_text(url: &str, sql: &str) -> Option<String> {
    let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
    let v = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_optional(&pool)
        .await
        .expect("query")
        .flatten();
    pool.close().await;
    v
}

/// localstripe's `event_type` event about `object_id`, as `GET /v1/events` lists it.
async fn event_about(localstripe: &LocalStripe, event_type: &str, object_id: &str) -> Value {
    let events = raw(
        localstripe,
        Method::GET,
        &format!("/v1/events?type={event_type}"),
        &[],
    )
    .await;
    events["data"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["data"]["object"]["id"] == object_id))
        .cloned()
        .unwrap_or_else(|| panic!("no {event_type} about {object_id}: {events}"))
}

#[tokio::test]
async fn a_payment_intent_succeeded_signed_by_localstripe_pays_our_invoice_once() {
    let start = Instant::now();
    let dir = TestDir::create("billing-localstripe-webhook");
    let localstripe = LocalStripe::start(&dir, "localstripe").await;
    let mut c = Controller::start(&[
        ("STRIPE_API_BASE", localstripe.url.as_str()),
        ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
        ("EMAIL_PROVIDER", "log"),
        ("EMAIL_FROM", "billing@hostco.example"),
        ("SUPPORT_EMAIL", "support@hostco.example"),
    ])
    .await;
    let db = c.env["DATABASE_URL"].clone();
    let store = store::connect(&db).await.expect("store");
    localstripe
        .set_webhook("mpanel", &format!("{}/api/webhooks/stripe", c.http))
        .await;
    let invoice = unpaid_invoice(&c, &store).await;

    // The customer's card is charged twice for the invoice on localstripe: a declining card
    // first (localstripe sends `payment_intent.payment_failed`), then a good one (it sends
    // `payment_intent.succeeded`), each PaymentIntent naming the invoice in its metadata.
    let stripe = client(&localstripe);
    let cus = customer(&stripe, "bo@example.com", "ls-customer-bo").await;
    let failing = attach(&localstripe, "pm_card_chargeCustomerFail", &cus).await;
    let err = stripe
        .charge_off_session(&charge(&cus, &failing, invoice), "ls-declined")
        .await
        .expect_err("declined");
    assert!(err.is_decline(), "{err:?}");
    let visa = attach(&localstripe, "pm_card_visa", &cus).await;
    let pi = charged(&stripe, &charge(&cus, &visa, invoice), "ls-paid").await;

    // The controller verifies localstripe's signature and records the payment.
    let paid = dir
        .wait_for(
            Duration::from_secs(10),
            "the invoice to be paid by the webhook",
            async || {
                let i = store
                    .get_invoice(invoice)
                    .await
                    .map_err(|e| e.to_string())?;
                match i {
                    Some(i) if i.status == "paid" => Ok(i),
                    other => Err(format!(
                        "{:?}",
                        other.map(|i| (i.status, i.amount_paid_minor))
                    )),
                }
            },
        )
        .await;
    assert_eq!(paid.amount_paid_minor, 1199);
    let payments = store.invoice_payments(invoice).await.expect("payments");
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].provider_ref, pi.id);
    assert_eq!(
        (payments[0].amount_minor, payments[0].currency.as_str()),
        (1199, "USD")
    );
    let succeeded = event_about(&localstripe, "payment_intent.succeeded", &pi.id).await;
    let event_id = succeeded["id"].as_str().expect("event id").to_owned();
    assert_eq!(
        scalar_text(
            &db,
            &format!("SELECT outcome FROM webhook_events WHERE event_id = '{event_id}'")
        )
        .await
        .as_deref(),
        Some("payment_recorded")
    );
    // The declined attempt's event was verified and kept too, and paid nothing.
    dir.wait_for(Duration::from_secs(10), "the payment_failed event to be recorded", async || {
        let n = scalar_text(
            &db,
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_events WHERE event_type = 'payment_intent.payment_failed'",
        )
        .await;
        if n.as_deref() == Some("1") { Ok(()) } else { Err(format!("{n:?}")) }
    })
    .await;

    // Stripe delivers an event again when it is not sure it arrived: the same event, signed
    // anew, changes nothing.
    let body = serde_json::to_vec(&succeeded).expect("event JSON");
    let signature = sign_stripe_payload(&body, STRIPE_WEBHOOK_SECRET, now_ms() / 1000);
    let again = http_client()
        .post(format!("{}/api/webhooks/stripe", c.http))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .expect("redelivery");
    assert_eq!(again.status(), 200);
    let after = store
        .get_invoice(invoice)
        .await
        .expect("store")
        .expect("invoice");
    assert_eq!(
        (
            after.status.as_str(),
            after.amount_paid_minor,
            after.paid_at
        ),
        ("paid", 1199, paid.paid_at)
    );
    assert_eq!(
        store
            .invoice_payments(invoice)
            .await
            .expect("payments")
            .len(),
        1
    );
    let (_, shown) = c
        .request(Method::GET, &format!("/api/invoices/{invoice}"), None)
        .await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["amountPaid"].as_i64(),
            shown["amountDue"].as_i64()
        ),
        (Some("paid"), Some(1199), Some(0)),
        "{shown}"
    );
    eprintln!("done in {:.1}s", start.elapsed().as_secs_f64());
    store.close().await;
    c.stop().await;
}
