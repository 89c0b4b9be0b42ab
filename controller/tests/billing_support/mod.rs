//! Helpers for the billing tests: a controller whose Stripe is the project's Stripe double (a
//! real process), the double's webhook pointed back at the controller, a second store handle,
//! row counts straight from the database, and the billing queue worked from the test.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpanel_controller::billing::{Billing, StripeClient};
use mpanel_controller::config::Config;
use mpanel_controller::jobs::billing::BillingWorker;
use mpanel_controller::jobs::{Job, Outcome, RunContext};
use mpanel_controller::store::DynStore;
use mpanel_e2e::cluster::TestDir;
use mpanel_e2e::stripe::{STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, StripeDouble};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_support::Hand;
use crate::fleet_support::Controller;

pub struct Env {
    pub c: Controller,
    pub hand: Hand,
    pub stripe: StripeDouble,
    pub dir: TestDir,
    /// The billing side over the test's own store handle, for runs at a chosen time.
    pub billing: Billing,
    pub worker: BillingWorker,
    pg: Option<mpanel_e2e::databases::TestDatabase>,
}

/// A controller on SQLite, or on a fresh PostgreSQL database when `postgres` is set.
pub async fn start(name: &str, postgres: bool, extra: &[(&str, &str)]) -> Env {
    let dir = TestDir::create(name);
    let stripe = StripeDouble::start(&dir, "stripe", None).await;
    let pg = if postgres {
        Some(mpanel_e2e::databases::TestDatabase::create().await)
    } else {
        None
    };
    let mut overrides: Vec<(&str, &str)> = vec![
        ("PROVISIONING_WORKERS", "1"),
        ("PROVISIONING_RETRY_BASE_MS", "600000"),
        ("STRIPE_API_BASE", &stripe.url),
        ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
        ("EMAIL_PROVIDER", "log"),
        ("EMAIL_FROM", "billing@hostco.example"),
        ("SUPPORT_EMAIL", "support@hostco.example"),
    ];
    if let Some(db) = &pg {
        overrides.push(("DATABASE_URL", &db.url));
    }
    overrides.extend_from_slice(extra);
    let c = Controller::start(&overrides).await;
    stripe
        .set_webhook(&format!("{}/api/webhooks/stripe", c.http))
        .await;
    let hand = Hand::new(&c).await;
    let config = Arc::new(
        Config::from_sources(&c.env, &std::collections::HashMap::new(), None).expect("config"),
    );
    let client = StripeClient::new(
        &stripe.url,
        mpanel_common::Secret::new(STRIPE_TEST_KEY.into()),
    )
    .unwrap()
    .with_retry_base_delay(Duration::from_millis(20));
    let dispatcher = mpanel_controller::jobs::Dispatcher::new();
    let billing = Billing::new(
        hand.store.clone(),
        dispatcher.clone(),
        Some(Arc::new(client)),
        config.clone(),
    );
    let keys = config.require_encryption_keys().unwrap().clone();
    let worker = BillingWorker {
        billing: billing.clone(),
        notices: mpanel_controller::billing::notices::Notices {
            store: hand.store.clone(),
            cipher: Arc::new(mpanel_controller::crypto::Cipher::new(&keys)),
            config,
            dispatcher,
        },
    };
    Env {
        c,
        hand,
        stripe,
        dir,
        billing,
        worker,
        pg,
    }
}

impl Env {
    pub fn store(&self) -> &DynStore {
        &self.hand.store
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.c.request(method, path, body).await
    }

    /// A product sold monthly at 9.99 USD plus `tax_rate_bp`.
    pub async fn product(&self, name: &str, tax_rate_bp: i64) -> i64 {
        let (status, body) = self
            .request(
                Method::POST,
                "/api/products",
                Some(json!({
                    "name": name,
                    "prices": [{"cycle": "monthly", "amount": 999, "currency": "USD"}],
                    "taxRateBp": tax_rate_bp,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Starts a checkout as a customer would; answers `{url, sessionId, orderId}`.
    pub async fn checkout(&self, product: i64, domain: &str, email: &str) -> Value {
        let (status, body) = self
            .customer_post(
                "/api/checkout/sessions",
                json!({"productId": product, "billingCycle": "monthly", "domain": domain,
                   "email": email, "name": "Zoë Customer"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// A request without a token, as a customer's browser sends it.
    pub async fn customer_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.c.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn customer_get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.c.http))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts `payload` to the webhook with `signature` as the `Stripe-Signature` header.
    pub async fn post_event(&self, payload: &[u8], signature: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/webhooks/stripe", self.c.http))
            .header("content-type", "application/json")
            .body(payload.to_vec());
        if let Some(sig) = signature {
            req = req.header("stripe-signature", sig);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A Stripe API call on the double, as the dashboard or another client would make it.
    pub async fn stripe_post(&self, path: &str, form: &[(&str, &str)], key: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}{path}", self.stripe.url))
            .bearer_auth(STRIPE_TEST_KEY)
            .header("Idempotency-Key", key)
            .form(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One number from the database (`SELECT COUNT(*) …`).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let url = &self.c.env["DATABASE_URL"];
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            n
        }
    }

    /// Runs one statement on the database (test set-up the API has no route for).
    pub async fn exec(&self, sql: &str) {
        let url = &self.c.env["DATABASE_URL"];
        if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }

    /// Customers, services, invoices, payments, provisioning tasks.
    pub async fn counts(&self) -> [i64; 5] {
        [
            self.scalar("SELECT COUNT(*) FROM customers").await,
            self.scalar("SELECT COUNT(*) FROM services").await,
            self.scalar("SELECT COUNT(*) FROM invoices").await,
            self.scalar("SELECT COUNT(*) FROM payments").await,
            self.scalar("SELECT COUNT(*) FROM provisioning_tasks").await,
        ]
    }

    /// Works the billing queue from the test until nothing is pending or running (the
    /// controller's own workers may take some rows; either way they end done or failed).
    pub async fn drain_billing(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(claimed) = self.worker.claim("test-billing", 60_000).await.unwrap() {
                let job = claimed.row;
                let ctx = RunContext {
                    holder: "test-billing".into(),
                    lost: tokio_util::sync::CancellationToken::new(),
                };
                match self.worker.run(&job, &ctx).await {
                    Outcome::Done(done) => {
                        self.worker
                            .complete(&job, "test-billing", done)
                            .await
                            .unwrap();
                    }
                    other => panic!(
                        "billing job {} ({}) did not finish: {other:?}",
                        job.id, job.kind
                    ),
                }
            }
            let open = self
                .scalar(
                    "SELECT COUNT(*) FROM billing_jobs WHERE status IN ('pending', 'processing')",
                )
                .await;
            if open == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "billing jobs stayed open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `f` until it returns `Some`, for up to 20 s.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checkout and payment with `card`; waits until the order is fulfilled and the card kept.
    /// Answers (order id, session id, service id, customer id).
    pub async fn paid_order(
        &self,
        product: i64,
        domain: &str,
        email: &str,
        card: &str,
    ) -> (i64, String, i64, i64) {
        let started = self.checkout(product, domain, email).await;
        let session = started["sessionId"].as_str().unwrap().to_owned();
        self.stripe.complete_checkout(&session, "paid", card).await;
        let order = started["orderId"].as_i64().unwrap();
        let (service, customer) = self
            .wait_for("the order to be fulfilled", || async {
                let o = self.store().get_order(order).await.unwrap()?;
                (o.status == "fulfilled").then(|| (o.service_id.unwrap(), o.customer_id.unwrap()))
            })
            .await;
        self.drain_billing().await;
        (order, session, service, customer)
    }

    pub async fn job_of_open_task(&self, service: i64) -> Option<String> {
        self.store()
            .open_task_for_service(service.into())
            .await
            .unwrap()
            .map(|t| mpanel_common::JobId::for_task(t.id).to_string())
    }
}

pub async fn finish(env: Env) {
    let Env { mut c, pg, .. } = env;
    c.stop().await;
    if let Some(db) = pg {
        db.drop_database().await;
    }
}
