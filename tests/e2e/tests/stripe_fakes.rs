//! The Stripe fakes the end-to-end tests run: the workspace's double and localstripe, each
//! started by the harness on a free port, and webhook signatures from both checked against
//! `sign_stripe_payload` (localstripe signs as Stripe does, so the two agreeing shows the
//! helper makes the header Stripe would send).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use mpanel_e2e::cluster::{TestDir, http_client};
use mpanel_e2e::stripe::{
    LocalStripe, STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, StripeDouble, sign_stripe_payload,
};
use serde_json::Value;

type Inbox = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A webhook endpoint on a free port recording each `Stripe-Signature` and raw body.
async fn receiver() -> (String, Inbox) {
    async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) {
        let signature = headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        inbox.lock().expect("inbox").push((signature, body));
    }
    let inbox = Inbox::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/webhooks/stripe",
        listener.local_addr().expect("addr")
    );
    let app = Router::new()
        .route("/webhooks/stripe", post(receive))
        .with_state(Arc::clone(&inbox));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

/// Waits (up to 10 s) for an event of `kind` and returns its signature header and body.
async fn wait_for_event(dir: &TestDir, inbox: &Inbox, kind: &str) -> (String, Bytes, Value) {
    dir.wait_for(
        Duration::from_secs(10),
        &format!("a {kind} webhook"),
        async || {
            let got = inbox.lock().expect("inbox").clone();
            got.into_iter()
                .find_map(|(signature, body)| {
                    let event: Value = serde_json::from_slice(&body).ok()?;
                    (event["type"] == kind).then_some((signature, body, event))
                })
                .ok_or_else(|| "not yet".to_owned())
        },
    )
    .await
}

/// The header must be exactly what `sign_stripe_payload` makes for its own timestamp.
fn assert_signed_as_stripe(signature: &str, body: &[u8]) {
    let t: i64 = signature
        .split(',')
        .find_map(|part| part.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {signature:?}"));
    assert_eq!(
        signature,
        sign_stripe_payload(body, STRIPE_WEBHOOK_SECRET, t)
    );
    assert_ne!(signature, sign_stripe_payload(body, "whsec_other", t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stripe_double_runs_checkout_and_signs_its_events_as_stripe_does() {
    let dir = TestDir::create("stripe-double");
    let (hook, inbox) = receiver().await;
    let double = StripeDouble::start(&dir, "stripedouble", Some(&hook)).await;
    let http = http_client();
    let session: Value = http
        .post(format!("{}/v1/checkout/sessions", double.url))
        .bearer_auth(STRIPE_TEST_KEY)
        .form(&[
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][price_data][unit_amount]", "1299"),
            ("line_items[0][price_data][product_data][name]", "Hosting"),
            ("line_items[0][quantity]", "1"),
            (
                "success_url",
                "https://panel.example/paid?session_id={CHECKOUT_SESSION_ID}",
            ),
            ("customer_email", "buyer@example.com"),
            ("metadata[order_id]", "41"),
        ])
        .send()
        .await
        .expect("create session")
        .json()
        .await
        .expect("session JSON");
    let id = session["id"].as_str().expect("session id");
    let done = double.complete_checkout(id, "paid", "pm_card_visa").await;
    assert_eq!(done["session"]["payment_status"], "paid");

    let (signature, body, event) = wait_for_event(&dir, &inbox, "checkout.session.completed").await;
    assert_signed_as_stripe(&signature, &body);
    assert_eq!(event["data"]["object"]["id"], id);
    assert_eq!(event["data"]["object"]["metadata"]["order_id"], "41");
    assert_eq!(
        event["data"]["object"]["customer_details"]["email"],
        "buyer@example.com"
    );
    let state = double.state().await;
    assert_eq!(state["counts"]["paymentIntents"], 1);
    let deliveries = double.deliveries().await;
    assert!(
        deliveries
            .as_array()
            .expect("deliveries")
            .iter()
            .any(|d| d["type"] == "checkout.session.completed" && d["status"] == 200),
        "{deliveries}"
    );
    assert!(
        !dir.read_log("stripedouble").contains(STRIPE_WEBHOOK_SECRET),
        "the double logged the webhook secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstripe_starts_on_a_free_port_and_its_signatures_match_sign_stripe_payload() {
    let dir = TestDir::create("localstripe");
    let (hook, inbox) = receiver().await;
    let stripe = LocalStripe::start(&dir, "localstripe").await;
    stripe.set_webhook("e2e", &hook).await;
    let customer: Value = http_client()
        .post(format!("{}/v1/customers", stripe.url))
        .bearer_auth(STRIPE_TEST_KEY)
        .form(&[("email", "ls@example.com")])
        .send()
        .await
        .expect("create customer")
        .json()
        .await
        .expect("customer JSON");
    let id = customer["id"].as_str().expect("customer id");
    let (signature, body, event) = wait_for_event(&dir, &inbox, "customer.created").await;
    assert_signed_as_stripe(&signature, &body);
    assert_eq!(event["data"]["object"]["id"], id);

    // A second start is independent: --from-scratch never reads the first one's state back.
    let other = LocalStripe::start(&dir, "localstripe-2").await;
    let missing = http_client()
        .get(format!("{}/v1/customers/{id}", other.url))
        .bearer_auth(STRIPE_TEST_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    stripe.reset().await;
    let forgotten = http_client()
        .get(format!("{}/v1/customers/{id}", stripe.url))
        .bearer_auth(STRIPE_TEST_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(forgotten.status(), 404, "reset forgets every object");
}
