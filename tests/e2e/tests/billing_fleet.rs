//! Billing against a real fleet: a controller process, the Stripe double, an agent and a
//! simulated cPanel. A paid checkout delivered five times at once while the success page loads
//! makes one account on the panel; paying an overdue invoice lifts the suspension on the panel
//! within seconds; a suspension an admin made stays after payment.

mod support;

use std::time::{Duration, Instant};

use mpanel_common::billing::{DAY_MS, format_date, ms_to_date};
use mpanel_e2e::cluster::{ControllerProcess, SimProcess, TestDir, http_client};
use mpanel_e2e::stripe::{STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, StripeDouble};
use reqwest::Method;
use serde_json::{Value, json};
use support::{secs, servers};

struct Fleet {
    dir: TestDir,
    stripe: StripeDouble,
    controller: ControllerProcess,
    http: String,
    server: support::Server,
    _db: mpanel_e2e::databases::TestSqlite,
}

async fn fleet(name: &str) -> Fleet {
    let dir = TestDir::create(name);
    let stripe = StripeDouble::start(&dir, "stripedouble", None).await;
    let db = mpanel_e2e::databases::TestSqlite::create();
    let env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db.url),
        ("STRIPE_API_BASE", &stripe.url),
        ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
        ("EMAIL_PROVIDER", "log"),
        ("EMAIL_FROM", "billing@hostco.example"),
    ];
    let controller = ControllerProcess::start(&dir, "controller", &env).await;
    let http = controller.http_url();
    stripe
        .set_webhook(&format!("{http}/api/webhooks/stripe"))
        .await;
    let server = servers(&dir, &[&controller], &[("cpanel", &[])])
        .await
        .remove(0);
    Fleet {
        dir,
        stripe,
        controller,
        http,
        server,
        _db: db,
    }
}

impl Fleet {
    fn sim(&self) -> &SimProcess {
        &self.server.sim
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.controller.api(method, path, body).await
    }

    async fn product(&self) -> i64 {
        let (status, product) = self
            .api(
                Method::POST,
                "/api/products",
                Some(json!({
                    "name": "Basic",
                    "prices": [{"cycle": "monthly", "amount": 999, "currency": "USD"}],
                })),
            )
            .await;
        assert_eq!(status, 201, "{product}");
        product["id"].as_i64().unwrap()
    }

    async fn checkout(&self, product: i64, domain: &str) -> Value {
        http_client()
            .post(format!("{}/api/checkout/sessions", self.http))
            .json(&json!({
                "productId": product, "billingCycle": "monthly", "domain": domain,
                "email": "owner@example.com", "name": "Owner",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn service(&self, id: i64) -> Value {
        self.api(Method::GET, &format!("/api/services/{id}"), None)
            .await
            .1
    }

    async fn wait_status(&self, id: i64, status: &str, within: Duration) -> Value {
        self.dir
            .wait_for(within, &format!("service {id} {status}"), async || {
                let s = self.service(id).await;
                if s["status"] == status {
                    Ok(s)
                } else {
                    Err(s.to_string())
                }
            })
            .await
    }

    /// Whether the panel has the account suspended.
    async fn suspended_on_panel(&self, username: &str) -> bool {
        let state = self.sim().state().await;
        state["accounts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["username"] == username))
            .map(|a| a["suspended"] == true)
            .unwrap_or_else(|| panic!("no account {username} on the panel: {state}"))
    }
}

#[tokio::test]
async fn a_checkout_delivered_five_times_during_the_success_page_makes_one_account_on_the_panel() {
    let start = Instant::now();
    let f = fleet("billing-fleet-once").await;
    let product = f.product().await;
    let checkout = f.checkout(product, "once.example.com").await;
    let session = checkout["sessionId"].as_str().unwrap().to_owned();
    f.stripe.control("webhook/pause", json!({})).await;
    f.stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    let state = f.stripe.state().await;
    let completed = state["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliver = format!("events/{completed}/deliver");
    let success = format!("{}/api/checkout/success?session_id={session}", f.http);
    let client = http_client();
    let (deliveries, a, b, c) = tokio::join!(
        f.stripe
            .control(&deliver, json!({"times": 5, "concurrent": true})),
        client.get(&success).send(),
        client.get(&success).send(),
        client.get(&success).send(),
    );
    assert_eq!(deliveries["statuses"], json!([200, 200, 200, 200, 200]));
    for page in [a, b, c] {
        assert_eq!(page.unwrap().status(), 200);
    }
    f.stripe.control("webhook/resume", json!({})).await;
    let service_id = checkout_service(&f, checkout["orderId"].as_i64().unwrap()).await;
    f.wait_status(service_id, "active", Duration::from_secs(30))
        .await;
    assert_eq!(
        f.sim().usernames().await.len(),
        1,
        "one account on the panel"
    );
    let tasks = f.api(Method::GET, "/api/provisioning/tasks", None).await.1;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1, "{tasks}");
    let services = f.api(Method::GET, "/api/services", None).await.1;
    assert_eq!(services["services"].as_array().unwrap().len(), 1);
    eprintln!("done after {:.1}s", secs(start));
}

async fn checkout_service(f: &Fleet, order: i64) -> i64 {
    f.dir
        .wait_for(Duration::from_secs(15), "the order's service", async || {
            let services = f.api(Method::GET, "/api/services", None).await.1;
            services["services"]
                .as_array()
                .and_then(|s| s.first())
                .and_then(|s| s["id"].as_i64())
                .ok_or_else(|| format!("order {order}: no service yet"))
        })
        .await
}

/// An unpaid invoice for the service, due yesterday, charged to the saved card now.
async fn pay_overdue_invoice(f: &Fleet, customer: i64, service: i64) -> Value {
    let yesterday = format_date(ms_to_date(mpanel_controller::store::now_ms() - DAY_MS));
    let (status, invoice) = f
        .api(
            Method::POST,
            "/api/invoices",
            Some(json!({
                "customerId": customer, "serviceId": service, "currency": "USD",
                "dueDate": yesterday, "lines": [{"description": "Overdue hosting", "amount": 999}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{invoice}");
    let (status, paid) = f
        .api(
            Method::POST,
            &format!("/api/invoices/{}/pay", invoice["id"]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "paid", "{paid}");
    paid
}

#[tokio::test]
async fn paying_lifts_an_overdue_suspension_on_the_panel_within_seconds_but_not_an_admins() {
    let f = fleet("billing-fleet-unsuspend").await;
    let product = f.product().await;
    let checkout = f.checkout(product, "late.example.com").await;
    f.stripe
        .complete_checkout(
            checkout["sessionId"].as_str().unwrap(),
            "paid",
            "pm_card_visa",
        )
        .await;
    let service_id = checkout_service(&f, checkout["orderId"].as_i64().unwrap()).await;
    let service = f
        .wait_status(service_id, "active", Duration::from_secs(30))
        .await;
    let customer = service["customerId"].as_i64().unwrap();
    let username = service["username"].as_str().unwrap().to_owned();

    for (reason, lifted) in [("overdue", true), ("admin", false)] {
        let (status, body) = f
            .api(
                Method::POST,
                &format!("/api/services/{service_id}/suspend"),
                Some(json!({"reason": reason})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        f.wait_status(service_id, "suspended", Duration::from_secs(20))
            .await;
        assert!(f.suspended_on_panel(&username).await);

        let paid_at = Instant::now();
        pay_overdue_invoice(&f, customer, service_id).await;
        if lifted {
            f.wait_status(service_id, "active", Duration::from_secs(10))
                .await;
            assert!(!f.suspended_on_panel(&username).await);
            eprintln!(
                "overdue suspension lifted on the panel {:.1}s after the payment",
                secs(paid_at)
            );
        } else {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let s = f.service(service_id).await;
            assert_eq!(
                (s["status"].as_str(), s["suspensionReason"].as_str()),
                (Some("suspended"), Some("admin")),
                "{s}"
            );
            assert!(f.suspended_on_panel(&username).await);
        }
    }
}
