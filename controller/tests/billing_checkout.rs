//! Checkout and Stripe's webhook against the project's Stripe double (a real process that signs
//! its events as Stripe does): exactly-once fulfilment whatever the deliveries, signatures,
//! events out of order, failed and expired orders, refunds, disputes, and bad input.

mod api_support;
mod billing_support;
mod fleet_support;

use billing_support::{Env, finish, start};
use mpanel_controller::billing::signature;
use mpanel_e2e::stripe::{STRIPE_WEBHOOK_SECRET, sign_stripe_payload};
use reqwest::Method;
use serde_json::{Value, json};

fn now_secs() -> i64 {
    mpanel_controller::store::now_ms() / 1000
}

/// The id of the first event of `event_type` the double made.
async fn event_id(env: &Env, event_type: &str, after: usize) -> String {
    let state = env.stripe.state().await;
    state["events"]
        .as_array()
        .unwrap()
        .iter()
        .skip(after)
        .find(|e| e["type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} event in {state}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn exactly_once(postgres: bool) {
    let env = start("billing-exactly-once", postgres, &[]).await;
    let product = env.product("Basic", 2000).await;
    let started = env
        .checkout(product, "once.example.com", "Ann@Example.com")
        .await;
    let session = started["sessionId"].as_str().unwrap().to_owned();
    assert!(
        started["url"]
            .as_str()
            .unwrap()
            .starts_with(&env.stripe.url),
        "{started}"
    );

    // Hold Stripe's own deliveries, pay, then send the completed event five times at once
    // while the success page is loaded three times, and let the held deliveries go too.
    env.stripe.control("webhook/pause", json!({})).await;
    let paid = env
        .stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    assert!(
        paid["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{paid}"
    );
    let completed = event_id(&env, "checkout.session.completed", 0).await;
    let success = format!("/api/checkout/success?session_id={session}");
    let deliver = format!("events/{completed}/deliver");
    let (deliveries, pages) = tokio::join!(
        env.stripe
            .control(&deliver, json!({"times": 5, "concurrent": true})),
        futures::future::join_all((0..3).map(|_| env.customer_get(&success))),
    );
    assert_eq!(
        deliveries["statuses"],
        json!([200, 200, 200, 200, 200]),
        "{deliveries}"
    );
    for (status, page) in &pages {
        assert_eq!(*status, 200, "{page}");
        assert_eq!(page["order"]["status"], "fulfilled", "{page}");
        assert_eq!(page["service"]["status"], "pending", "{page}");
    }
    env.stripe.control("webhook/resume", json!({})).await;
    env.wait_for("the held deliveries", || async {
        let d = env.stripe.deliveries().await;
        let done = d.as_array()?.iter().filter(|x| x["status"] == 200).count();
        (done >= 5 + paid["events"].as_array()?.len()).then_some(())
    })
    .await;
    env.drain_billing().await;

    // One customer, one service, one invoice, one payment, one provisioning task.
    assert_eq!(env.counts().await, [1, 1, 1, 1, 1]);
    let invoice = &env.request(Method::GET, "/api/invoices", None).await.1["invoices"][0];
    assert_eq!(invoice["status"], "paid", "{invoice}");
    assert_eq!(
        (
            invoice["subtotal"].as_i64(),
            invoice["tax"].as_i64(),
            invoice["total"].as_i64()
        ),
        (Some(999), Some(200), Some(1199)),
        "{invoice}"
    );
    assert_eq!(invoice["amountPaid"], 1199);
    let year = time::OffsetDateTime::now_utc().year();
    assert_eq!(invoice["number"], format!("INV-{year}-000001"));
    // The event was recorded once, with what it did.
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM webhook_events WHERE event_id = '{completed}'"
        ))
        .await,
        1
    );
    // The card the customer paid with is kept for renewals (brand and last four only).
    let customer = env
        .store()
        .customer_by_email("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        env.store().customer_card(customer.id.get()).await.unwrap(),
        Some((Some("visa".into()), Some("4242".into())))
    );
    // The receipt went to the outbox once.
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'payment_receipt'")
            .await,
        1
    );
    finish(env).await;
}

#[tokio::test]
async fn a_checkout_delivered_five_times_during_the_success_page_makes_one_of_everything() {
    exactly_once(false).await;
}

#[tokio::test]
async fn a_checkout_delivered_five_times_during_the_success_page_makes_one_of_everything_on_postgres()
 {
    exactly_once(true).await;
}

#[tokio::test]
async fn bad_signatures_are_refused_with_nothing_written_and_rotations_are_accepted() {
    let env = start(
        "billing-signatures",
        false,
        &[(
            "STRIPE_WEBHOOK_SECRET",
            "whsec_old_secret, whsec_mpanel_e2e",
        )],
    )
    .await;
    let event = json!({
        "id": "evt_sig_1", "object": "event", "type": "customer.created", "created": now_secs(),
        "data": {"object": {"id": "cus_1", "object": "customer"}}
    });
    let body = serde_json::to_vec(&event).unwrap();
    let now = now_secs();
    let good = sign_stripe_payload(&body, STRIPE_WEBHOOK_SECRET, now);
    let mut changed = body.clone();
    let last = changed.len() - 2;
    changed[last] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>, Option<String>, &str)> = vec![
        ("no header", body.clone(), None, "signature_missing"),
        (
            "malformed header",
            body.clone(),
            Some("v1=abc,nonsense".into()),
            "signature_invalid",
        ),
        (
            "wrong secret",
            body.clone(),
            Some(sign_stripe_payload(&body, "whsec_wrong", now)),
            "signature_mismatch",
        ),
        (
            "one byte changed",
            changed,
            Some(good.clone()),
            "signature_mismatch",
        ),
        (
            "301 s old",
            body.clone(),
            Some(sign_stripe_payload(&body, STRIPE_WEBHOOK_SECRET, now - 301)),
            "signature_timestamp",
        ),
        (
            // One second more than the boundary: the controller's clock may have ticked since
            // `now` was read (the exact 301 s either way is in the signature's unit tests).
            "302 s ahead",
            body.clone(),
            Some(sign_stripe_payload(&body, STRIPE_WEBHOOK_SECRET, now + 302)),
            "signature_timestamp",
        ),
    ];
    for (what, payload, header, code) in cases {
        let (status, answer) = env.post_event(&payload, header.as_deref()).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        assert_eq!(answer["error"]["field"], "Stripe-Signature", "{what}");
    }
    assert_eq!(env.scalar("SELECT COUNT(*) FROM webhook_events").await, 0);

    // Two v1 of which the second matches; and the old secret of the rotation list.
    let wrong_first = format!(
        "t={now},v1={},{}",
        "0".repeat(64),
        good.split(',').nth(1).unwrap()
    );
    let (status, answer) = env.post_event(&body, Some(&wrong_first)).await;
    assert_eq!((status, &answer), (200, &json!({"received": true})));
    let event2 = serde_json::to_vec(&json!({
        "id": "evt_sig_2", "object": "event", "type": "customer.created", "created": now,
        "data": {"object": {"id": "cus_2", "object": "customer"}}
    }))
    .unwrap();
    let old = signature::sign(&event2, "whsec_old_secret", now);
    assert_eq!(env.post_event(&event2, Some(&old)).await.0, 200);
    // Unknown types are recorded and answered 200; a replay changes nothing.
    assert_eq!(env.post_event(&event2, Some(&old)).await.0, 200);
    assert_eq!(env.scalar("SELECT COUNT(*) FROM webhook_events").await, 2);
    finish(env).await;
}

#[tokio::test]
async fn events_out_of_order_or_about_unknown_sessions_end_in_the_same_state() {
    let env = start("billing-out-of-order", false, &[]).await;
    let product = env.product("Basic", 0).await;
    let started = env
        .checkout(product, "late.example.com", "late@example.com")
        .await;
    let session = started["sessionId"].as_str().unwrap().to_owned();
    env.stripe.control("webhook/pause", json!({})).await;
    let before = env.stripe.state().await["events"].as_array().unwrap().len();
    env.stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    // The PaymentIntent's success first, then everything else newest first.
    let pi_event = event_id(&env, "payment_intent.succeeded", before).await;
    let d = env
        .stripe
        .control(&format!("events/{pi_event}/deliver"), json!({"times": 1}))
        .await;
    assert_eq!(d["statuses"], json!([200]), "{d}");
    let order = started["orderId"].as_i64().unwrap();
    assert_eq!(
        env.store().get_order(order).await.unwrap().unwrap().status,
        "fulfilled",
        "the PaymentIntent's own event fulfils the order it names"
    );
    env.stripe
        .control("webhook/resume", json!({"reverse": true}))
        .await;
    env.wait_for("the held deliveries", || async {
        let d = env.stripe.deliveries().await;
        d.as_array()?
            .iter()
            .filter(|x| x["status"].is_null())
            .count()
            .eq(&0)
            .then_some(())
    })
    .await;
    env.drain_billing().await;
    assert_eq!(env.counts().await, [1, 1, 1, 1, 1]);

    // An event about a session that is not ours: recorded, answered 200, nothing else.
    let stranger = serde_json::to_vec(&json!({
        "id": "evt_stranger", "object": "event", "type": "checkout.session.completed",
        "created": now_secs(),
        "data": {"object": {"id": "cs_test_not_ours", "object": "checkout.session",
                 "mode": "payment", "status": "complete", "payment_status": "paid",
                 "amount_total": 500, "currency": "usd", "metadata": {}}}
    }))
    .unwrap();
    let sig = sign_stripe_payload(&stranger, STRIPE_WEBHOOK_SECRET, now_secs());
    assert_eq!(env.post_event(&stranger, Some(&sig)).await.0, 200);
    assert_eq!(env.counts().await, [1, 1, 1, 1, 1]);
    finish(env).await;
}

#[tokio::test]
async fn a_failed_delayed_payment_fails_the_order_and_an_expired_session_closes_it() {
    let env = start("billing-async-failed", false, &[]).await;
    let product = env.product("Basic", 0).await;
    let started = env
        .checkout(product, "slow.example.com", "slow@example.com")
        .await;
    let session = started["sessionId"].as_str().unwrap().to_owned();
    env.stripe
        .complete_checkout(&session, "unpaid", "pm_card_visa")
        .await;
    env.stripe
        .control(
            &format!("checkout/sessions/{session}/async"),
            json!({"succeeded": false}),
        )
        .await;
    let order = started["orderId"].as_i64().unwrap();
    env.wait_for("the order to fail", || async {
        let o = env.store().get_order(order).await.unwrap()?;
        (o.status == "failed").then_some(())
    })
    .await;
    env.drain_billing().await;
    assert_eq!(env.counts().await, [0, 0, 0, 0, 0]);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'order_failed'")
            .await,
        1
    );
    let (status, page) = env
        .customer_get(&format!("/api/checkout/success?session_id={session}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["order"]["status"], "failed");
    assert!(page["service"].is_null());

    let second = env
        .checkout(product, "gone.example.com", "gone@example.com")
        .await;
    let second_session = second["sessionId"].as_str().unwrap();
    env.stripe
        .control(
            &format!("checkout/sessions/{second_session}/expire"),
            json!({}),
        )
        .await;
    let second_order = second["orderId"].as_i64().unwrap();
    env.wait_for("the order to expire", || async {
        let o = env.store().get_order(second_order).await.unwrap()?;
        (o.status == "expired").then_some(())
    })
    .await;
    assert_eq!(env.counts().await, [0, 0, 0, 0, 0]);
    finish(env).await;
}

#[tokio::test]
async fn refunds_mark_the_invoice_and_a_full_refund_cancels_an_order_without_an_account() {
    let env = start("billing-refunds", false, &[]).await;
    let product = env.product("Basic", 0).await;
    let (_, _, service, _) = env
        .paid_order(
            product,
            "refund.example.com",
            "refund@example.com",
            "pm_card_visa",
        )
        .await;
    let invoice = env
        .store()
        .list_invoices(&Default::default())
        .await
        .unwrap()[0]
        .clone();
    let pi = env.store().invoice_payments(invoice.id).await.unwrap()[0]
        .provider_ref
        .clone();
    // The provisioning task is still open (no agent serves it here): finish it as failed so
    // the service is pending without an account, as after a failed provisioning.
    let job = env.job_of_open_task(service).await.unwrap();
    env.hand.fail(&job, "no server").await;

    let partial = env
        .stripe_post(
            "/v1/refunds",
            &[("payment_intent", &pi), ("amount", "300")],
            "refund-partial",
        )
        .await;
    assert_eq!(partial["status"], "succeeded", "{partial}");
    let path = format!("/api/invoices/{}", invoice.id);
    let shown = env
        .wait_for("the partial refund", || async {
            let v = env.request(Method::GET, &path, None).await.1;
            (v["amountRefunded"] == 300).then_some(v)
        })
        .await;
    assert_eq!(shown["status"], "partially_refunded", "{shown}");

    env.stripe_post("/v1/refunds", &[("payment_intent", &pi)], "refund-rest")
        .await;
    let shown = env
        .wait_for("the full refund", || async {
            let v = env.request(Method::GET, &path, None).await.1;
            (v["status"] == "refunded").then_some(v)
        })
        .await;
    assert_eq!(shown["amountRefunded"], 999);
    env.drain_billing().await;
    let s = env
        .request(Method::GET, &format!("/api/services/{service}"), None)
        .await
        .1;
    assert_eq!(s["status"], "cancelled", "{s}");
    finish(env).await;
}

#[tokio::test]
async fn a_dispute_flags_the_service_and_emails_the_admins_and_suspends_only_when_configured() {
    for suspend in [false, true] {
        let flag = if suspend { "true" } else { "false" };
        let env = start("billing-dispute", false, &[("SUSPEND_ON_DISPUTE", flag)]).await;
        let product = env.product("Basic", 0).await;
        let (_, _, service, _) = env
            .paid_order(
                product,
                "dispute.example.com",
                "dispute@example.com",
                "pm_card_visa",
            )
            .await;
        let job = env.job_of_open_task(service).await.unwrap();
        env.hand
            .complete(
                &job,
                mpanel_controller::store::queue::ServiceChange::Activate,
            )
            .await;
        let state = env.stripe.state().await;
        let charge = state["charges"].as_array().unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        env.stripe
            .control(
                &format!("charges/{charge}/dispute"),
                json!({"reason": "fraudulent"}),
            )
            .await;
        env.wait_for("the dispute", || async {
            let s = env.store().get_service(service.into()).await.ok()?;
            s.dispute_ref.is_some().then_some(())
        })
        .await;
        env.drain_billing().await;
        let shown = env
            .request(Method::GET, &format!("/api/services/{service}"), None)
            .await
            .1;
        assert!(
            shown["disputeRef"]
                .as_str()
                .is_some_and(|d| d.starts_with("dp_")),
            "{shown}"
        );
        let to_support: i64 = env
            .scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'dispute_opened' AND to_address = 'support@hostco.example'")
            .await;
        assert_eq!(to_support, 1);
        // The suspension is queued through the lifecycle layer (its task runs, and here fails
        // for want of an account, which does not matter to billing).
        let suspensions = env
            .scalar(&format!(
                "SELECT COUNT(*) FROM provisioning_tasks WHERE service_id = {service} AND task_type = 'suspend'"
            ))
            .await;
        assert_eq!(suspensions, i64::from(suspend), "SUSPEND_ON_DISPUTE={flag}");
        finish(env).await;
    }
}

#[tokio::test]
async fn bad_input_on_the_billing_routes_is_refused_naming_the_field() {
    let env = start("billing-bad-input", false, &[]).await;
    let product = env.product("Basic", 0).await;
    let base = json!({"productId": product, "billingCycle": "monthly", "domain": "ok.example.com",
                      "email": "ok@example.com", "name": "Ok"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, status, code, field) in [
        (with("productId", json!(0)), 400, "invalid_id", "productId"),
        (with("productId", json!(999)), 404, "not_found", "productId"),
        (
            with("billingCycle", json!("weekly")),
            400,
            "invalid_billing_cycle",
            "billingCycle",
        ),
        (
            with("billingCycle", json!("annually")),
            422,
            "no_price",
            "billingCycle",
        ),
        (
            with("domain", json!("exa mple.com")),
            400,
            "invalid_domain",
            "domain",
        ),
        (
            with("email", json!("nobody")),
            400,
            "invalid_email",
            "email",
        ),
        (
            with("currency", json!("dollars")),
            400,
            "invalid_currency",
            "currency",
        ),
        (with("extra", json!(1)), 400, "invalid_body", "extra"),
    ] {
        let got = env
            .customer_post("/api/checkout/sessions", body.clone())
            .await;
        api_support::assert_error(&got, status, code, Some(field));
    }
    for (query, code) in [
        ("", "missing_parameter"),
        ("?session_id=nope", "invalid_session_id"),
    ] {
        let got = env
            .customer_get(&format!("/api/checkout/success{query}"))
            .await;
        api_support::assert_error(&got, 400, code, Some("session_id"));
    }
    let got = env
        .customer_get("/api/checkout/success?session_id=cs_test_unknown")
        .await;
    assert_eq!(got.0, 404, "{}", got.1);
    let got = env
        .request(Method::GET, "/api/invoices?status=late", None)
        .await;
    api_support::assert_error(&got, 400, "invalid_status", Some("status"));
    let got = env
        .request(
            Method::POST,
            "/api/invoices/1/payments",
            Some(json!({"amount": -5, "currency": "USD", "method": "cash"})),
        )
        .await;
    api_support::assert_error(&got, 400, "invalid_amount", Some("amount"));
    let got = env
        .request(
            Method::POST,
            "/api/invoices/1/payments",
            Some(json!({"amount": 5, "currency": "USD", "method": "barter"})),
        )
        .await;
    api_support::assert_error(&got, 400, "invalid_method", Some("method"));
    assert_eq!(
        env.request(Method::POST, "/api/invoices/77/void", None)
            .await
            .0,
        404
    );
    // Invoices are admin-only.
    assert_eq!(env.customer_get("/api/invoices").await.0, 401);
    assert_eq!(env.counts().await, [0, 0, 0, 0, 0]);
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 0);
    finish(env).await;
}

#[tokio::test]
async fn checkouts_from_one_address_are_limited_to_ten_a_minute() {
    let env = start("billing-rate-limit", false, &[]).await;
    // Refused bodies count too: the limit is on attempts, before any work.
    let body = json!({"productId": 999, "billingCycle": "monthly", "domain": "x.example.com",
                      "email": "x@example.com", "name": "X"});
    for _ in 0..10 {
        let (status, _) = env
            .customer_post("/api/checkout/sessions", body.clone())
            .await;
        assert_eq!(status, 404);
    }
    let got = env.customer_post("/api/checkout/sessions", body).await;
    api_support::assert_error(&got, 429, "rate_limited", None);
    finish(env).await;
}
