//! The double's Stripe API against Stripe's documented behaviour: idempotent replay, the 402
//! shapes of each test card, authentication, Checkout, refunds, and scripted faults.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Harness, start};

async fn pi_count(h: &Harness) -> u64 {
    h.state().await["counts"]["paymentIntents"]
        .as_u64()
        .expect("count")
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_answer_and_charges_once() {
    let h = start().await;
    let customer = h.customer("payer@example.com").await;
    let form = [
        ("amount", "1999"),
        ("currency", "eur"),
        ("customer", customer.as_str()),
        ("payment_method", "pm_card_visa"),
        ("off_session", "true"),
        ("confirm", "true"),
        ("metadata[invoice_id]", "123"),
    ];
    let first = h
        .post("/v1/payment_intents", &form, Some("invoice-123-charge-1"))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "succeeded");
    assert!(first.headers.get("idempotent-replayed").is_none());

    let again = h
        .post("/v1/payment_intents", &form, Some("invoice-123-charge-1"))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "the replay is the first answer");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(
        again.headers["original-request"], first.headers["request-id"],
        "a replay names the request that ran"
    );
    let state = h.state().await;
    assert_eq!(state["counts"]["paymentIntents"], 1);
    assert_eq!(state["counts"]["charges"], 1);
    assert_eq!(state["idempotencyKeys"]["invoice-123-charge-1"]["posts"], 2);
    assert_eq!(
        state["paymentIntents"][0]["idempotencyKey"],
        "invoice-123-charge-1"
    );
    assert_eq!(state["paymentIntents"][0]["metadata"]["invoice_id"], "123");

    // The same key with other parameters is refused, and runs nothing.
    let mut other = form;
    other[0] = ("amount", "2999");
    let refused = h
        .post("/v1/payment_intents", &other, Some("invoice-123-charge-1"))
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["type"], "idempotency_error");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("same parameters")
    );
    // ... and so is the same key on another endpoint.
    let elsewhere = h
        .post(
            "/v1/customers",
            &[("email", "x@example.com")],
            Some("invoice-123-charge-1"),
        )
        .await;
    assert_eq!(elsewhere.status, 400);
    assert_eq!(elsewhere.body["error"]["type"], "idempotency_error");
    assert_eq!(pi_count(&h).await, 1);
    assert_eq!(
        h.state().await["idempotencyKeys"]["invoice-123-charge-1"]["posts"],
        4
    );
}

#[tokio::test]
async fn a_request_refused_by_validation_saves_nothing_under_its_key() {
    let h = start().await;
    let missing = h
        .post(
            "/v1/payment_intents",
            &[("amount", "500")],
            Some("k-validation"),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body["error"],
        json!({
            "type": "invalid_request_error",
            "code": "parameter_missing",
            "message": "Missing required param: currency.",
            "param": "currency"
        })
    );
    let fixed = h
        .post(
            "/v1/payment_intents",
            &[("amount", "500"), ("currency", "usd")],
            Some("k-validation"),
        )
        .await;
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert!(fixed.headers.get("idempotent-replayed").is_none());
    assert_eq!(fixed.body["status"], "requires_payment_method");
    assert_eq!(pi_count(&h).await, 1);
}

#[tokio::test]
async fn each_declining_test_card_answers_402_with_stripes_card_error() {
    let h = start().await;
    let customer = h.customer("payer@example.com").await;
    let cases = [
        (
            "pm_card_chargeDeclined",
            "card_declined",
            "generic_decline",
            None,
        ),
        (
            "pm_card_visa_chargeDeclined",
            "card_declined",
            "generic_decline",
            None,
        ),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "card_declined",
            "insufficient_funds",
            None,
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            "expired_card",
            "expired_card",
            Some("exp_month"),
        ),
        (
            "pm_card_authenticationRequired",
            "authentication_required",
            "authentication_required",
            None,
        ),
    ];
    for (i, (pm, code, decline_code, param)) in cases.iter().enumerate() {
        let key = format!("decline-{i}");
        let form = [
            ("amount", "1500"),
            ("currency", "eur"),
            ("customer", customer.as_str()),
            ("payment_method", pm),
            ("off_session", "true"),
            ("confirm", "true"),
            ("metadata[invoice_id]", "77"),
        ];
        let a = h.post("/v1/payment_intents", &form, Some(&key)).await;
        assert_eq!(a.status, 402, "{pm}: {}", a.body);
        let e = &a.body["error"];
        assert_eq!(e["type"], "card_error", "{pm}");
        assert_eq!(e["code"], *code, "{pm}");
        assert_eq!(e["decline_code"], *decline_code, "{pm}");
        assert_eq!(e["param"], json!(param), "{pm}");
        // The PaymentIntent exists, failed, and is in the error as Stripe sends it.
        let pi = &e["payment_intent"];
        assert_eq!(pi["object"], "payment_intent");
        assert_eq!(pi["status"], "requires_payment_method");
        assert_eq!(pi["metadata"]["invoice_id"], "77");
        assert_eq!(pi["last_payment_error"]["code"], *code);
        assert_eq!(pi["last_payment_error"]["decline_code"], *decline_code);
        assert_eq!(pi["latest_charge"], e["charge"]);
        let fetched = h
            .get(&format!(
                "/v1/payment_intents/{}",
                pi["id"].as_str().expect("id")
            ))
            .await;
        assert_eq!(fetched.body["status"], "requires_payment_method");
        let charge = h
            .get(&format!(
                "/v1/charges/{}",
                e["charge"].as_str().expect("charge")
            ))
            .await;
        assert_eq!(charge.body["status"], "failed");
        assert_eq!(charge.body["failure_code"], *code);
        assert_eq!(charge.body["outcome"]["reason"], *decline_code);
        // A 402 means the endpoint ran: it is saved under the key and replayed.
        let replay = h.post("/v1/payment_intents", &form, Some(&key)).await;
        assert_eq!(replay.status, 402);
        assert_eq!(replay.headers["idempotent-replayed"], "true");
        assert_eq!(replay.body, a.body);
    }
    let state = h.state().await;
    assert_eq!(state["counts"]["paymentIntents"], cases.len());
    let failed_events = h
        .get("/v1/events?type=payment_intent.payment_failed&limit=100")
        .await;
    assert_eq!(
        failed_events.body["data"].as_array().expect("data").len(),
        cases.len()
    );
}

#[tokio::test]
async fn a_card_that_needs_authentication_only_fails_off_session() {
    let h = start().await;
    let on_session = h
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "900"),
                ("currency", "eur"),
                ("payment_method", "pm_card_authenticationRequired"),
                ("confirm", "true"),
            ],
            None,
        )
        .await;
    assert_eq!(on_session.status, 200, "{}", on_session.body);
    assert_eq!(on_session.body["status"], "requires_action");
    assert_eq!(on_session.body["next_action"]["type"], "use_stripe_sdk");

    // A card saved through Checkout with setup_future_usage passes off-session when it is the
    // "authentication unless set up" card, and keeps failing when it always authenticates.
    let customer = h.customer("saved@example.com").await;
    for (card, expected) in [
        ("pm_card_authenticationRequiredOnSetup", 200),
        ("pm_card_authenticationRequired", 402),
    ] {
        let session = h
            .session(
                2500,
                &[
                    ("customer", customer.as_str()),
                    ("payment_intent_data[setup_future_usage]", "off_session"),
                ],
            )
            .await;
        let id = session["id"].as_str().expect("id");
        let done = h
            .control(
                &format!("/__double/checkout/sessions/{id}/complete"),
                json!({"outcome": "paid", "paymentMethod": card}),
            )
            .await;
        assert_eq!(
            done.body["session"]["payment_status"], "paid",
            "{card}: {}",
            done.body
        );
        let pi = h
            .get(&format!(
                "/v1/payment_intents/{}",
                done.body["session"]["payment_intent"].as_str().expect("pi")
            ))
            .await;
        let saved = pi.body["payment_method"].as_str().expect("pm").to_owned();
        assert_ne!(saved, card, "a test id becomes a new PaymentMethod");
        let pm = h.get(&format!("/v1/payment_methods/{saved}")).await;
        assert_eq!(
            pm.body["customer"],
            customer.as_str(),
            "saved to the customer"
        );
        let later = h
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", "2500"),
                    ("currency", "eur"),
                    ("customer", customer.as_str()),
                    ("payment_method", saved.as_str()),
                    ("off_session", "true"),
                    ("confirm", "true"),
                ],
                None,
            )
            .await;
        assert_eq!(later.status, expected, "{card}: {}", later.body);
    }
}

#[tokio::test]
async fn requests_without_a_secret_key_get_401_with_the_key_masked() {
    let h = start().await;
    let none = h
        .http
        .get(format!("{}/v1/customers/cus_x", h.base))
        .send()
        .await
        .expect("request");
    assert_eq!(none.status(), 401);
    let wrong = h
        .http
        .post(format!("{}/v1/customers", h.base))
        .bearer_auth("pk_test_51Publishable0000abcd")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("Invalid API Key provided: pk_test_"),
        "{message}"
    );
    assert!(
        message.ends_with("abcd") && message.contains("****"),
        "{message}"
    );
    assert!(!message.contains("Publishable"), "{message}");
}

#[tokio::test]
async fn checkout_sessions_follow_stripes_shape_and_validation() {
    let h = start().await;
    let s = h
        .session(
            999,
            &[
                ("customer_email", "buyer@example.com"),
                ("metadata[order_id]", "7"),
                ("client_reference_id", "order-7"),
                ("line_items[0][quantity]", "3"),
            ],
        )
        .await;
    let id = s["id"].as_str().expect("id");
    assert!(id.starts_with("cs_test_"));
    assert_eq!(s["object"], "checkout.session");
    assert_eq!(s["mode"], "payment");
    assert_eq!(s["status"], "open");
    assert_eq!(s["payment_status"], "unpaid");
    assert_eq!(s["amount_total"], 2997);
    assert_eq!(s["currency"], "eur");
    assert_eq!(s["customer"], serde_json::Value::Null);
    assert_eq!(s["customer_details"], serde_json::Value::Null);
    assert_eq!(s["payment_intent"], serde_json::Value::Null);
    assert_eq!(s["customer_creation"], "if_required");
    assert_eq!(s["metadata"], json!({"order_id": "7"}));
    assert_eq!(s["client_reference_id"], "order-7");
    assert_eq!(s["livemode"], false);
    assert_eq!(s["url"], format!("{}/pay/{id}", h.base));
    assert_eq!(
        s["success_url"], "https://shop.example/ok?session_id={CHECKOUT_SESSION_ID}",
        "Stripe fills the template in only when it redirects"
    );
    assert!(
        s["expires_at"].as_i64().expect("expires_at") > s["created"].as_i64().expect("created")
    );
    assert_eq!(h.get(&format!("/v1/checkout/sessions/{id}")).await.body, s);

    let no_success = h
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "payment"),
                ("line_items[0][price_data][currency]", "eur"),
                ("line_items[0][price_data][unit_amount]", "100"),
                ("line_items[0][price_data][product_data][name]", "x"),
                ("line_items[0][quantity]", "1"),
            ],
            None,
        )
        .await;
    assert_eq!(no_success.status, 400);
    assert_eq!(no_success.body["error"]["param"], "success_url");
    let no_name = h
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "payment"),
                ("line_items[0][price_data][currency]", "eur"),
                ("line_items[0][price_data][unit_amount]", "100"),
                ("line_items[0][price_data][product_data][description]", "x"),
                ("line_items[0][quantity]", "1"),
                ("success_url", "https://shop.example/ok"),
            ],
            None,
        )
        .await;
    assert_eq!(no_name.status, 400);
    assert_eq!(
        no_name.body["error"]["param"],
        "line_items[0][price_data][product_data][name]"
    );
    let subscription = h
        .post("/v1/checkout/sessions", &[("mode", "subscription")], None)
        .await;
    assert_eq!(subscription.status, 400);
    assert_eq!(subscription.body["error"]["param"], "mode");
}

#[tokio::test]
async fn an_unknown_customer_is_resource_missing() {
    let h = start().await;
    let a = h
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "payment"),
                ("line_items[0][price_data][currency]", "eur"),
                ("line_items[0][price_data][unit_amount]", "100"),
                ("line_items[0][price_data][product_data][name]", "x"),
                ("line_items[0][quantity]", "1"),
                ("success_url", "https://shop.example/ok"),
                ("customer", "cus_missing"),
            ],
            None,
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["code"], "resource_missing");
    assert_eq!(a.body["error"]["param"], "customer");
    let path = h.get("/v1/customers/cus_missing").await;
    assert_eq!(path.status, 404);
    assert_eq!(
        path.body["error"]["message"],
        "No such customer: 'cus_missing'"
    );
}

#[tokio::test]
async fn refunds_go_partial_then_full_and_never_past_the_charge() {
    let h = start().await;
    let pi = h
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1000"),
                ("currency", "eur"),
                ("payment_method", "pm_card_mastercard"),
                ("confirm", "true"),
            ],
            None,
        )
        .await;
    assert_eq!(pi.body["status"], "succeeded");
    let pi_id = pi.body["id"].as_str().expect("id");
    let charge = pi.body["latest_charge"].as_str().expect("charge");

    let too_much = h
        .post(
            "/v1/refunds",
            &[("payment_intent", pi_id), ("amount", "1001")],
            None,
        )
        .await;
    assert_eq!(too_much.status, 400);
    assert_eq!(too_much.body["error"]["code"], "amount_too_large");
    assert_eq!(too_much.body["error"]["param"], "amount");

    let partial = h
        .post(
            "/v1/refunds",
            &[("payment_intent", pi_id), ("amount", "300")],
            None,
        )
        .await;
    assert_eq!(partial.status, 200, "{}", partial.body);
    assert_eq!(partial.body["object"], "refund");
    assert_eq!(partial.body["amount"], 300);
    assert_eq!(partial.body["charge"], charge);
    assert_eq!(partial.body["status"], "succeeded");
    let after_partial = h.get(&format!("/v1/charges/{charge}")).await.body;
    assert_eq!(after_partial["amount_refunded"], 300);
    assert_eq!(after_partial["refunded"], false);
    assert!(after_partial.get("refunds").is_none());

    let rest = h.post("/v1/refunds", &[("charge", charge)], None).await;
    assert_eq!(rest.status, 200, "{}", rest.body);
    assert_eq!(rest.body["amount"], 700, "the default is what is left");
    let after_full = h.get(&format!("/v1/charges/{charge}")).await.body;
    assert_eq!(after_full["amount_refunded"], 1000);
    assert_eq!(after_full["refunded"], true);

    let again = h.post("/v1/refunds", &[("charge", charge)], None).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body["error"]["code"], "charge_already_refunded");

    // charge.refunded fired for each refund, with the charge (no refunds list) and what changed.
    let events = h.get("/v1/events?type=charge.refunded").await.body;
    let data = events["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    let newest = &data[0]["data"];
    assert_eq!(newest["object"]["object"], "charge");
    assert_eq!(newest["object"]["amount_refunded"], 1000);
    assert!(newest["object"].get("refunds").is_none());
    assert_eq!(newest["previous_attributes"]["amount_refunded"], 300);
    assert_eq!(newest["previous_attributes"]["refunded"], false);
    let oldest = &data[1]["data"];
    assert_eq!(oldest["object"]["amount_refunded"], 300);
    let created = h.get("/v1/events?type=refund.created").await.body;
    assert_eq!(created["data"].as_array().expect("data").len(), 2);
    assert_eq!(h.state().await["counts"]["refunds"], 2);
}

#[tokio::test]
async fn scripted_rate_limits_and_server_errors_answer_before_anything_is_done() {
    let h = start().await;
    let added = h
        .control(
            "/__double/faults",
            json!([
                {"path": "/v1/payment_intents", "method": "POST", "status": 429, "times": 2},
                {"path": "/v1/customers", "status": 500, "times": 1}
            ]),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let form = [
        ("amount", "700"),
        ("currency", "eur"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
    ];
    for _ in 0..2 {
        let limited = h.post("/v1/payment_intents", &form, Some("rl-1")).await;
        assert_eq!(limited.status, 429);
        assert_eq!(limited.body["error"]["code"], "rate_limit");
        assert_eq!(limited.body["error"]["type"], "invalid_request_error");
    }
    assert_eq!(pi_count(&h).await, 0, "nothing done while rate limited");
    let through = h.post("/v1/payment_intents", &form, Some("rl-1")).await;
    assert_eq!(through.status, 200, "429s are not saved under the key");
    assert!(through.headers.get("idempotent-replayed").is_none());
    assert_eq!(pi_count(&h).await, 1);

    let failed = h
        .post(
            "/v1/customers",
            &[("email", "a@example.com")],
            Some("cus-500"),
        )
        .await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.body["error"]["type"], "api_error");
    assert_eq!(h.state().await["counts"]["customers"], 0);
    // Stripe saves a 500 under its key too: the retry gets it back.
    let replayed = h
        .post(
            "/v1/customers",
            &[("email", "a@example.com")],
            Some("cus-500"),
        )
        .await;
    assert_eq!(replayed.status, 500);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    let fresh = h
        .post(
            "/v1/customers",
            &[("email", "a@example.com")],
            Some("cus-500-b"),
        )
        .await;
    assert_eq!(fresh.status, 200);
    let pending = h.pending_faults().await;
    assert_eq!(pending, json!([]));
}

#[tokio::test]
async fn a_delayed_answer_leaves_the_charge_made_for_a_client_that_gave_up() {
    let h = start().await;
    h.control(
        "/__double/faults",
        json!({"path": "/v1/payment_intents", "method": "POST", "delayMs": 1500}),
    )
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let form = [
        ("amount", "4200"),
        ("currency", "eur"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
    ];
    let gave_up = impatient
        .post(format!("{}/v1/payment_intents", h.base))
        .bearer_auth(support::KEY)
        .header("Idempotency-Key", "slow-1")
        .form(&form)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    let state = h.state().await;
    assert_eq!(
        state["counts"]["paymentIntents"], 1,
        "Stripe's side charged"
    );
    assert_eq!(state["paymentIntents"][0]["status"], "succeeded");
    let retry = h.post("/v1/payment_intents", &form, Some("slow-1")).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.body["id"], state["paymentIntents"][0]["id"]);
    assert_eq!(pi_count(&h).await, 1, "the retry charged nothing more");
}
