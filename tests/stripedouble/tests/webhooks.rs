//! Events and their delivery: Checkout's events reach a local endpoint signed as Stripe signs
//! them (checked here with an independent HMAC), in order, once each unless re-sent; held
//! deliveries can be released newest first; disputes and delayed payments emit their events.

mod support;

use serde_json::{Value, json};
use support::{Harness, Receiver, WHSEC, signature_is_valid, start};

async fn with_receiver() -> (Harness, Receiver) {
    let h = start().await;
    let r = Receiver::start().await;
    let set = h
        .control("/__double/webhook", json!({"url": r.url, "secret": WHSEC}))
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    (h, r)
}

fn types(received: &[support::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["type"].as_str().expect("type").to_owned())
        .collect()
}

#[tokio::test]
async fn a_paid_checkout_delivers_signed_events_in_order() {
    let (h, r) = with_receiver().await;
    let customer = h.customer("buyer@example.com").await;
    let session = h
        .session(
            1999,
            &[
                ("customer", customer.as_str()),
                ("metadata[order_id]", "7"),
                ("client_reference_id", "order-7"),
                ("payment_intent_data[setup_future_usage]", "off_session"),
                ("payment_intent_data[metadata][order_id]", "7"),
            ],
        )
        .await;
    let id = session["id"].as_str().expect("id");
    let done = h
        .control(
            &format!("/__double/checkout/sessions/{id}/complete"),
            json!({"outcome": "paid", "paymentMethod": "pm_card_visa"}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let created: Vec<&str> = done.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        created,
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed"
        ]
    );

    // customer.created (from the API) and the four above.
    let received = r.wait_for(5).await;
    assert_eq!(
        types(&received),
        [
            "customer.created",
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed"
        ]
    );
    for delivery in &received {
        let header = delivery.signature.as_deref().expect("Stripe-Signature");
        assert!(
            header.starts_with("t=") && header.contains(",v1="),
            "{header}"
        );
        assert!(
            signature_is_valid(header, &delivery.body, WHSEC),
            "bad signature: {header}"
        );
        assert!(!signature_is_valid(header, &delivery.body, "whsec_other"));
        let mut tampered = delivery.body.to_vec();
        tampered.push(b' ');
        assert!(!signature_is_valid(header, &tampered, WHSEC));
    }

    let completed = received[4].json();
    assert_eq!(completed["object"], "event");
    assert!(completed["id"].as_str().expect("id").starts_with("evt_"));
    assert_eq!(completed["livemode"], false);
    assert_eq!(
        completed["api_version"],
        mpanel_stripedouble::DEFAULT_API_VERSION
    );
    assert_eq!(
        completed["request"],
        json!({"id": null, "idempotency_key": null})
    );
    let s = &completed["data"]["object"];
    assert_eq!(s["id"], id);
    assert_eq!(s["status"], "complete");
    assert_eq!(s["payment_status"], "paid");
    assert_eq!(s["customer"], customer.as_str());
    assert_eq!(s["customer_details"]["email"], "buyer@example.com");
    assert_eq!(s["amount_total"], 1999);
    assert_eq!(s["currency"], "eur");
    assert_eq!(s["metadata"]["order_id"], "7");
    assert_eq!(s["client_reference_id"], "order-7");
    let pi_id = s["payment_intent"].as_str().expect("payment_intent");

    let pi = received[3].json();
    assert_eq!(pi["data"]["object"]["id"], pi_id);
    assert_eq!(pi["data"]["object"]["status"], "succeeded");
    assert_eq!(pi["data"]["object"]["metadata"]["order_id"], "7");
    assert_eq!(pi["data"]["object"]["setup_future_usage"], "off_session");
    let charge = received[2].json();
    assert_eq!(charge["data"]["object"]["payment_intent"], pi_id);
    assert_eq!(charge["data"]["object"]["paid"], true);
    assert_eq!(
        charge["data"]["object"]["payment_method_details"]["card"]["last4"],
        "4242"
    );
    let pm = pi["data"]["object"]["payment_method"].as_str().expect("pm");
    let method = h.get(&format!("/v1/payment_methods/{pm}")).await.body;
    assert_eq!(
        method["customer"],
        customer.as_str(),
        "setup_future_usage saved the card"
    );
    assert_eq!(method["card"]["brand"], "visa");

    // The customer-created event came from the API: it names the request.
    let customer_event = received[0].json();
    assert!(
        customer_event["request"]["id"]
            .as_str()
            .expect("req")
            .starts_with("req_")
    );

    // Delivered once each, and the log says so.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(r.received().len(), 5);
    let log: Value = h
        .http
        .get(format!("{}/__double/deliveries", h.base))
        .send()
        .await
        .expect("deliveries")
        .json()
        .await
        .expect("json");
    let log = log.as_array().expect("log");
    assert_eq!(log.len(), 5);
    assert!(
        log.iter()
            .all(|d| d["status"] == 200 && d["redelivery"] == false)
    );
    let pending = h.get("/v1/events?delivery_success=false").await.body;
    assert_eq!(pending["data"], json!([]));
}

#[tokio::test]
async fn checkout_without_a_customer_creates_one_only_when_asked() {
    let (h, r) = with_receiver().await;
    let plain = h
        .session(500, &[("customer_email", "guest@example.com")])
        .await;
    let always = h
        .session(
            500,
            &[
                ("customer_email", "keep@example.com"),
                ("customer_creation", "always"),
            ],
        )
        .await;
    for s in [&plain, &always] {
        let id = s["id"].as_str().expect("id");
        let done = h
            .control(
                &format!("/__double/checkout/sessions/{id}/complete"),
                json!({}),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    let received = r.wait_for(9).await;
    let completed: Vec<Value> = received
        .iter()
        .map(support::Received::json)
        .filter(|e| e["type"] == "checkout.session.completed")
        .collect();
    assert_eq!(completed.len(), 2);
    assert_eq!(completed[0]["data"]["object"]["customer"], Value::Null);
    assert_eq!(
        completed[0]["data"]["object"]["customer_details"]["email"],
        "guest@example.com"
    );
    let made = completed[1]["data"]["object"]["customer"]
        .as_str()
        .expect("customer");
    let customer = h.get(&format!("/v1/customers/{made}")).await.body;
    assert_eq!(customer["email"], "keep@example.com");
    assert_eq!(h.state().await["counts"]["customers"], 1);
}

#[tokio::test]
async fn a_declined_card_on_the_page_leaves_the_session_open_for_another_try() {
    let (h, r) = with_receiver().await;
    let s = h
        .session(
            800,
            &[
                ("customer_email", "retry@example.com"),
                ("customer_creation", "always"),
            ],
        )
        .await;
    let id = s["id"].as_str().expect("id");
    let declined = h
        .control(
            &format!("/__double/checkout/sessions/{id}/complete"),
            json!({"paymentMethod": "pm_card_chargeDeclinedInsufficientFunds"}),
        )
        .await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    assert_eq!(
        declined.body["declined"]["decline_code"],
        "insufficient_funds"
    );
    assert_eq!(declined.body["session"]["status"], "open");
    let paid = h
        .control(
            &format!("/__double/checkout/sessions/{id}/complete"),
            json!({"paymentMethod": "pm_card_visa"}),
        )
        .await;
    assert_eq!(paid.body["session"]["payment_status"], "paid");
    let received = r.wait_for(8).await;
    assert_eq!(
        types(&received),
        [
            "customer.created",
            "payment_intent.created",
            "charge.failed",
            "payment_intent.payment_failed",
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed",
        ]
    );
    assert_eq!(
        h.state().await["counts"]["customers"],
        1,
        "one customer for both tries"
    );
}

#[tokio::test]
async fn a_delayed_payment_completes_unpaid_then_settles_or_fails() {
    let (h, r) = with_receiver().await;
    let good = h.session(3000, &[]).await;
    let bad = h.session(3000, &[]).await;
    for s in [&good, &bad] {
        let id = s["id"].as_str().expect("id");
        let done = h
            .control(
                &format!("/__double/checkout/sessions/{id}/complete"),
                json!({"outcome": "unpaid"}),
            )
            .await;
        assert_eq!(done.body["session"]["status"], "complete");
        assert_eq!(done.body["session"]["payment_status"], "unpaid");
    }
    let good_id = good["id"].as_str().expect("id");
    let bad_id = bad["id"].as_str().expect("id");
    let ok = h
        .control(
            &format!("/__double/checkout/sessions/{good_id}/async"),
            json!({"succeeded": true}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["session"]["payment_status"], "paid");
    let failed = h
        .control(
            &format!("/__double/checkout/sessions/{bad_id}/async"),
            json!({"succeeded": false}),
        )
        .await;
    assert_eq!(failed.body["session"]["payment_status"], "unpaid");
    let twice = h
        .control(
            &format!("/__double/checkout/sessions/{good_id}/async"),
            json!({"succeeded": true}),
        )
        .await;
    assert_eq!(twice.status, 409);

    // Per session: payment_intent.created, charge.pending, payment_intent.processing,
    // checkout.session.completed; then three on settling.
    let received = r.wait_for(14).await;
    let session_events: Vec<(String, String, String)> = received
        .iter()
        .map(support::Received::json)
        .filter(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("checkout.session."))
        })
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_owned(),
                e["data"]["object"]["id"].as_str().unwrap_or("").to_owned(),
                e["data"]["object"]["payment_status"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        session_events,
        [
            (
                "checkout.session.completed".into(),
                good_id.into(),
                "unpaid".into()
            ),
            (
                "checkout.session.completed".into(),
                bad_id.into(),
                "unpaid".into()
            ),
            (
                "checkout.session.async_payment_succeeded".into(),
                good_id.into(),
                "paid".into()
            ),
            (
                "checkout.session.async_payment_failed".into(),
                bad_id.into(),
                "unpaid".into()
            ),
        ]
    );
}

#[tokio::test]
async fn expiring_a_session_emits_checkout_session_expired() {
    let (h, r) = with_receiver().await;
    let s = h.session(100, &[]).await;
    let id = s["id"].as_str().expect("id");
    let expired = h
        .control(
            &format!("/__double/checkout/sessions/{id}/expire"),
            json!({}),
        )
        .await;
    assert_eq!(expired.status, 200, "{}", expired.body);
    assert_eq!(expired.body["session"]["status"], "expired");
    assert_eq!(expired.body["session"]["url"], Value::Null);
    let received = r.wait_for(1).await;
    assert_eq!(types(&received), ["checkout.session.expired"]);
    let pay = h
        .control(
            &format!("/__double/checkout/sessions/{id}/complete"),
            json!({}),
        )
        .await;
    assert_eq!(pay.status, 409, "an expired session cannot be paid");
    // Stripe's own expire endpoint refuses a session that is no longer open.
    let api = h
        .post(&format!("/v1/checkout/sessions/{id}/expire"), &[], None)
        .await;
    assert_eq!(api.status, 400);
}

#[tokio::test]
async fn an_event_can_be_delivered_again_many_times_at_once() {
    let (h, r) = with_receiver().await;
    h.customer("dup@example.com").await;
    let first = r.wait_for(1).await;
    let event_id = first[0].json()["id"].as_str().expect("id").to_owned();
    let again = h
        .control(
            &format!("/__double/events/{event_id}/deliver"),
            json!({"times": 5, "concurrent": true}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["statuses"], json!([200, 200, 200, 200, 200]));
    let all = r.wait_for(6).await;
    assert!(all.iter().all(|d| d.json()["id"] == event_id.as_str()));
    assert!(all.iter().all(|d| signature_is_valid(
        d.signature.as_deref().unwrap_or(""),
        &d.body,
        WHSEC
    )));

    // The endpoint's own answer comes back, and an event it refused stays undelivered.
    r.answer_with(500);
    h.customer("refused@example.com").await;
    r.wait_for(7).await;
    let refused = h.get("/v1/events?delivery_success=false").await.body;
    let data = refused["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["pending_webhooks"], 1);
    let refused_id = data[0]["id"].as_str().expect("id");
    let retry = h
        .control(&format!("/__double/events/{refused_id}/deliver"), json!({}))
        .await;
    assert_eq!(retry.body["statuses"], json!([500]));
    r.answer_with(200);
    let retry = h
        .control(&format!("/__double/events/{refused_id}/deliver"), json!({}))
        .await;
    assert_eq!(retry.body["statuses"], json!([200]));
    let refused = h.get("/v1/events?delivery_success=false").await.body;
    assert_eq!(refused["data"], json!([]));
}

#[tokio::test]
async fn held_deliveries_can_be_released_newest_first() {
    let (h, r) = with_receiver().await;
    h.control("/__double/webhook/pause", json!({})).await;
    let customer = h.customer("order@example.com").await;
    let pi = h
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1200"),
                ("currency", "eur"),
                ("customer", customer.as_str()),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
            None,
        )
        .await;
    assert_eq!(pi.body["status"], "succeeded");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert!(r.received().is_empty(), "nothing goes out while paused");
    let state = h.state().await;
    assert_eq!(state["webhook"]["queued"], 4);
    let resumed = h
        .control("/__double/webhook/resume", json!({"reverse": true}))
        .await;
    assert_eq!(resumed.body["released"], 4);
    let received = r.wait_for(4).await;
    assert_eq!(
        types(&received),
        [
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment_intent.created",
            "customer.created"
        ]
    );
}

#[tokio::test]
async fn a_dispute_emits_charge_dispute_created_and_blocks_refunds() {
    let (h, r) = with_receiver().await;
    let pi = h
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "5000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
            None,
        )
        .await;
    let charge = pi.body["latest_charge"].as_str().expect("charge");
    let disputed = h
        .control(
            &format!("/__double/charges/{charge}/dispute"),
            json!({"reason": "fraudulent"}),
        )
        .await;
    assert_eq!(disputed.status, 200, "{}", disputed.body);
    let received = r.wait_for(4).await;
    let event = received[3].json();
    assert_eq!(event["type"], "charge.dispute.created");
    let d = &event["data"]["object"];
    assert!(d["id"].as_str().expect("id").starts_with("dp_"));
    assert_eq!(d["object"], "dispute");
    assert_eq!(d["charge"], charge);
    assert_eq!(d["payment_intent"], pi.body["id"]);
    assert_eq!(d["amount"], 5000);
    assert_eq!(d["currency"], "usd");
    assert_eq!(d["reason"], "fraudulent");
    assert_eq!(d["status"], "needs_response");
    let refund = h.post("/v1/refunds", &[("charge", charge)], None).await;
    assert_eq!(refund.status, 400);
    assert_eq!(refund.body["error"]["code"], "charge_disputed");
}
