//! A renewal charge survives the controller being SIGKILLed between Stripe's charge and its
//! record. The controller is a real process on SQLite or PostgreSQL, Stripe the workspace's
//! double, the service a real one on a simulated panel. Stripe answers the charge only after
//! the kill, so the money is taken but the controller never heard of it; the restarted
//! controller (the same node) takes back the charge job its previous process held, sends the
//! same Idempotency-Key again, is answered with Stripe's saved result, and records that one
//! PaymentIntent once. Stripe's own `payment_intent.succeeded`, held back meanwhile, changes
//! nothing when it finally arrives.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpanel_common::billing::{date_to_ms, format_date, ms_to_date, parse_date, period_end};
use mpanel_common::status::BillingCycle;
use mpanel_controller::billing::Billing;
use mpanel_controller::config::Config;
use mpanel_controller::jobs::Dispatcher;
use mpanel_controller::store::billing::{Invoice, InvoiceFilter};
use mpanel_controller::store::{self, DynStore};
use mpanel_e2e::cluster::{ControllerProcess, TestDir, http_client};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};
use mpanel_e2e::stripe::{STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, StripeDouble};
use reqwest::Method;
use serde_json::{Value, json};
use support::{secs, servers};

/// How long the double holds its answer to the charge: long enough to kill the controller
/// while it waits, far shorter than the client's 30 s timeout.
const CHARGE_ANSWER_DELAY_MS: u64 = 4_000;

/// The test's database, and raw reads of it for what the store does not expose.
enum Database {
    Sqlite(TestSqlite),
    Postgres(TestDatabase),
}

impl Database {
    async fn create(postgres: bool) -> Database {
        if postgres {
            Database::Postgres(TestDatabase::create().await)
        } else {
            Database::Sqlite(TestSqlite::create())
        }
    }

    fn url(&self) -> &str {
        match self {
            Database::Sqlite(db) => &db.url,
            Database::Postgres(db) => &db.url,
        }
    }

    /// One optional text value (`SELECT a FROM …`), through a short-lived connection.
    async fn text(&self, sql: &str) -> Option<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Database::Sqlite(db) => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
                let v = sqlx::query_scalar::<_, Option<String>>(sql)
                    .fetch_optional(&pool)
                    .await;
                pool.close().await;
                v.expect("query").flatten()
            }
            Database::Postgres(db) => {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
                let v = sqlx::query_scalar::<_, Option<String>>(sql)
                    .fetch_optional(&pool)
                    .await;
                pool.close().await;
                v.expect("query").flatten()
            }
        }
    }

    /// The charge job's (status, attempts, lease holder) for its dedupe key.
    async fn charge_job(&self, key: &str) -> (String, i64, Option<String>) {
        let q = |col: &str| {
            format!("SELECT CAST({col} AS TEXT) FROM billing_jobs WHERE dedupe_key = '{key}'")
        };
        let status = self
            .text(&q("status"))
            .await
            .expect("the charge job exists");
        let attempts = self
            .text(&q("attempts"))
            .await
            .and_then(|a| a.parse().ok())
            .expect("attempts");
        let holder = self.text(&q("lease_holder")).await;
        (status, attempts, holder)
    }

    async fn finish(self) {
        match self {
            Database::Sqlite(db) => db.remove(),
            Database::Postgres(db) => db.drop_database().await,
        }
    }
}

/// The billing side in the test process, over its own store handle and without a Stripe
/// client: it can write invoices and queue charges, but only the controller can charge.
fn billing_without_stripe(store: &DynStore, env: &[(&str, &str)]) -> Billing {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = Config::from_sources(&env, &HashMap::new(), None).expect("config");
    Billing::new(store.clone(), Dispatcher::new(), None, Arc::new(config))
}

async fn invoice(store: &DynStore, id: i64) -> Invoice {
    store
        .get_invoice(id)
        .await
        .expect("store")
        .expect("the invoice exists")
}

async fn renewal_charge_cut_off_by_sigkill(postgres: bool) {
    let start = Instant::now();
    let dir = TestDir::create(if postgres {
        "billing-crash-pg"
    } else {
        "billing-crash"
    });
    let stripe = StripeDouble::start(&dir, "stripedouble", None).await;
    let db = Database::create(postgres).await;
    let node = format!(
        "billing-crash-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", db.url()),
        // The restarted process must be the same node to take back its own charge at once;
        // the billing lease (60 s) would otherwise outlast the test.
        ("NODE_ID", &node),
        ("STRIPE_API_BASE", &stripe.url),
        ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
        ("EMAIL_PROVIDER", "log"),
        // Everything the controller and its libraries log, to show no secret is among it.
        ("RUST_LOG", "trace"),
        ("EMAIL_FROM", "billing@hostco.example"),
        ("SUPPORT_EMAIL", "support@hostco.example"),
    ];
    let mut controller = ControllerProcess::start(&dir, "controller", &env).await;
    let http = controller.http_url();
    stripe
        .set_webhook(&format!("{http}/api/webhooks/stripe"))
        .await;
    let _fleet = servers(&dir, &[&controller], &[("cpanel", &[])]).await;
    let store = store::connect(db.url()).await.expect("store");
    eprintln!(
        "controller, double and one server up after {:.1}s",
        secs(start)
    );

    // A paying customer: checkout without a token, paid on Stripe's page with a card that
    // is saved for the renewals; the service is provisioned and active.
    let (status, product) = controller
        .api(
            Method::POST,
            "/api/products",
            Some(json!({
                "name": "Basic",
                "prices": [{"cycle": "monthly", "amount": 999, "currency": "USD"}],
                "taxRateBp": 2000,
            })),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let checkout: Value = http_client()
        .post(format!("{http}/api/checkout/sessions"))
        .json(&json!({
            "productId": product["id"], "billingCycle": "monthly", "domain": "renewal.example.com",
            "email": "renee@example.com", "name": "Renée Renewal",
        }))
        .send()
        .await
        .expect("checkout")
        .json()
        .await
        .expect("checkout JSON");
    let session = checkout["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_owned();
    let order_id = checkout["orderId"].as_i64().expect("orderId");
    stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    let (service_id, customer_id) = dir
        .wait_for(
            Duration::from_secs(15),
            "the order to be fulfilled",
            async || {
                let o = store.get_order(order_id).await.map_err(|e| e.to_string())?;
                match o {
                    Some(o) if o.status == "fulfilled" => Ok((
                        o.service_id.expect("service"),
                        o.customer_id.expect("customer"),
                    )),
                    other => Err(format!("{:?}", other.map(|o| o.status))),
                }
            },
        )
        .await;
    let service = dir
        .wait_for(
            Duration::from_secs(20),
            "the service to be active",
            async || {
                let (_, s) = controller
                    .api(Method::GET, &format!("/api/services/{service_id}"), None)
                    .await;
                if s["status"] == "active" {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    dir.wait_for(
        Duration::from_secs(15),
        "the card to be saved",
        async || match store.customer_card(customer_id).await {
            Ok(Some(card)) => Ok(card),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let first = store
        .list_invoices(&InvoiceFilter {
            service_id: Some(service_id),
            ..InvoiceFilter::default()
        })
        .await
        .expect("invoices");
    assert_eq!(first.len(), 1, "{first:?}");
    let billing_day = ms_to_date(first[0].period_start.expect("first period")).day();
    let renewal_date = parse_date(service["nextDueDate"].as_str().expect("nextDueDate"))
        .expect("a YYYY-MM-DD date");
    let next_cycle = format_date(period_end(renewal_date, BillingCycle::Monthly, billing_day));
    eprintln!(
        "paying customer with a saved card after {:.1}s",
        secs(start)
    );

    // Stripe's own events are held, so only the charge job can record this payment; Stripe
    // will answer the charge only after doing it and waiting 4 s.
    stripe.control("webhook/pause", json!({})).await;
    stripe
        .script_faults(json!({
            "path": "/v1/payment_intents", "method": "POST",
            "delayMs": CHARGE_ANSWER_DELAY_MS, "times": 1,
        }))
        .await;
    // The renewal date comes: the recurring run invoices the next period and queues its charge.
    let summary = billing_without_stripe(&store, &env)
        .run_recurring(date_to_ms(renewal_date))
        .await
        .expect("recurring run");
    assert_eq!(
        (summary.invoices_created, summary.charges_queued),
        (1, 1),
        "{summary:?}"
    );
    let renewal = store
        .list_invoices(&InvoiceFilter {
            service_id: Some(service_id),
            status: Some("unpaid".into()),
            ..InvoiceFilter::default()
        })
        .await
        .expect("invoices");
    assert_eq!(renewal.len(), 1, "{renewal:?}");
    let renewal = renewal.into_iter().next().expect("renewal");
    assert_eq!(renewal.period_start, Some(date_to_ms(renewal_date)));
    assert_eq!(renewal.amount_minor, 1199, "9.99 plus 20 % tax");
    let key = format!("invoice-{}-charge-1", renewal.id);

    // The controller's billing worker charges; once the PaymentIntent exists on Stripe's side,
    // and while Stripe holds its answer, the controller dies.
    let pi = dir
        .wait_for(
            Duration::from_secs(10),
            "the controller to create the PaymentIntent",
            async || {
                let state = stripe.state().await;
                state["paymentIntents"]
                    .as_array()
                    .and_then(|a| a.iter().find(|p| p["idempotencyKey"] == key.as_str()))
                    .map(|p| p["id"].as_str().unwrap_or_default().to_owned())
                    .ok_or_else(|| format!("no PaymentIntent under {key} yet"))
            },
        )
        .await;
    controller.kill9();
    eprintln!(
        "PaymentIntent {pi} made, controller killed after {:.1}s",
        secs(start)
    );

    // The money is taken, and the controller wrote nothing of it: the crash came in between.
    let state = stripe.state().await;
    let made = state["paymentIntents"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == pi.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(made["status"], "succeeded", "{made}");
    let cut = invoice(&store, renewal.id).await;
    assert_eq!((cut.status.as_str(), cut.amount_paid_minor), ("unpaid", 0));
    assert!(
        store
            .invoice_payments(renewal.id)
            .await
            .expect("payments")
            .is_empty()
    );
    let (job_status, attempts, holder) = db.charge_job(&key).await;
    assert_eq!((job_status.as_str(), attempts), ("processing", 1));
    assert!(
        holder
            .as_deref()
            .is_some_and(|h| h.starts_with(&format!("{node}#"))),
        "the dead process holds the charge's lease: {holder:?}"
    );

    controller.restart().await;
    let restarted = Instant::now();
    eprintln!("controller restarted after {:.1}s", secs(start));
    // Well inside the 60 s lease: the restarted node took its charge back at start-up.
    let paid = dir
        .wait_for(
            Duration::from_secs(15),
            "the renewal invoice to be paid",
            async || {
                let i = invoice(&store, renewal.id).await;
                if i.status == "paid" {
                    Ok(i)
                } else {
                    Err(format!("{} ({} paid)", i.status, i.amount_paid_minor))
                }
            },
        )
        .await;
    eprintln!(
        "renewal paid {:.1}s after the restart ({:.1}s in all)",
        restarted.elapsed().as_secs_f64(),
        secs(start)
    );
    assert!(
        dir.read_log("controller")
            .contains("took back the rows this node's previous process left in flight"),
        "the restart must say it took back the charge"
    );

    // One PaymentIntent for the invoice, asked for twice with one key, the second answered
    // with the first's saved result.
    let state = stripe.state().await;
    let for_invoice: Vec<&Value> = state["paymentIntents"]
        .as_array()
        .expect("paymentIntents")
        .iter()
        .filter(|p| p["metadata"]["invoice_id"] == renewal.id.to_string().as_str())
        .collect();
    assert_eq!(for_invoice.len(), 1, "{for_invoice:?}");
    assert_eq!(for_invoice[0]["id"], pi.as_str());
    assert_eq!(for_invoice[0]["idempotencyKey"], key.as_str());
    assert_eq!(for_invoice[0]["amount"], 1199);
    let posts = &state["idempotencyKeys"][&key];
    assert!(
        posts["posts"].as_u64().is_some_and(|n| n >= 2),
        "the restarted controller must send the same key again: {posts}"
    );
    assert_eq!(posts["status"], 200, "{posts}");

    // One payment, the invoice paid once, the service one cycle further.
    let payments = store.invoice_payments(renewal.id).await.expect("payments");
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].provider_ref, pi);
    assert_eq!(payments[0].amount_minor, 1199);
    assert_eq!(paid.amount_paid_minor, paid.amount_minor);
    let (_, shown) = controller
        .api(Method::GET, &format!("/api/invoices/{}", renewal.id), None)
        .await;
    assert_eq!(shown["status"], "paid", "{shown}");
    assert_eq!(shown["amountPaid"], shown["total"], "{shown}");
    assert_eq!(shown["amountDue"], 0, "{shown}");
    let (_, service) = controller
        .api(Method::GET, &format!("/api/services/{service_id}"), None)
        .await;
    assert_eq!(service["nextDueDate"], next_cycle.as_str(), "{service}");
    assert_eq!(
        db.charge_job(&key).await,
        ("done".to_owned(), 2, None),
        "one attempt died with the process, the second recorded the payment"
    );

    // Stripe's own event arrives at last, and finds the payment recorded.
    stripe.control("webhook/resume", json!({})).await;
    let events: Value = http_client()
        .get(format!("{}/v1/events", stripe.url))
        .bearer_auth(STRIPE_TEST_KEY)
        .query(&[("type", "payment_intent.succeeded")])
        .send()
        .await
        .expect("events")
        .json()
        .await
        .expect("events JSON");
    let event = events["data"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["data"]["object"]["id"] == pi.as_str()))
        .and_then(|e| e["id"].as_str())
        .unwrap_or_else(|| panic!("no payment_intent.succeeded for {pi}: {events}"))
        .to_owned();
    dir.wait_for(
        Duration::from_secs(10),
        "the late payment_intent.succeeded to be delivered",
        async || {
            let deliveries = stripe.deliveries().await;
            let mine: Vec<&Value> = deliveries
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter(|d| d["eventId"] == event.as_str())
                        .collect()
                })
                .unwrap_or_default();
            if mine.iter().any(|d| d["status"] == 200) {
                Ok(())
            } else {
                Err(format!("{mine:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        db.text(&format!(
            "SELECT outcome FROM webhook_events WHERE event_id = '{event}'"
        ))
        .await
        .as_deref(),
        Some("already_recorded")
    );
    let after = invoice(&store, renewal.id).await;
    assert_eq!(
        (
            after.status.as_str(),
            after.amount_paid_minor,
            after.paid_at
        ),
        ("paid", paid.amount_paid_minor, paid.paid_at)
    );
    assert_eq!(
        store
            .invoice_payments(renewal.id)
            .await
            .expect("payments")
            .len(),
        1
    );
    let (_, service) = controller
        .api(Method::GET, &format!("/api/services/{service_id}"), None)
        .await;
    assert_eq!(service["nextDueDate"], next_cycle.as_str(), "{service}");
    let log = dir.read_log("controller");
    assert!(log.contains(" TRACE "), "the controller ran at TRACE");
    for secret in [STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, "sk_test_", "whsec_"] {
        assert!(
            !log.contains(secret),
            "the controller logged a secret ({secret})"
        );
    }
    eprintln!("done after {:.1}s", secs(start));

    controller.stop();
    store.close().await;
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_between_the_charge_and_its_record_records_the_one_payment_after_restart()
 {
    renewal_charge_cut_off_by_sigkill(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_between_the_charge_and_its_record_records_the_one_payment_after_restart_on_postgres()
 {
    renewal_charge_cut_off_by_sigkill(true).await;
}
