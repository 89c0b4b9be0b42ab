//! The Stripe client against a scripted double of the Stripe API started on 127.0.0.1:0 in each
//! test: each accepted connection plays the next step of a script (an answer, a reset
//! connection, or a stall past the client's timeout) and records the request it got, so a test
//! can check what went over the wire: headers, form bodies in bracket notation, and how many
//! attempts one logical call made with which idempotency key.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mpanel_common::{Currency, Secret};
use mpanel_controller::billing::stripe::{
    CheckoutPaymentStatus, NewCheckoutSession, NewCustomer, OffSessionCharge, PaymentIntentStatus,
    STRIPE_API_VERSION, StripeClient, StripeError,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const KEY: &str = "sk_test_51HxTestKeyThatMustNeverLeak";

/// What the double does with one connection.
#[derive(Clone)]
enum Step {
    Answer {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
    /// Reads the request, then resets the connection without answering.
    Reset,
    /// Reads the request and answers only after this long.
    Stall(Duration),
}

fn answer(status: u16, body: &Value) -> Step {
    Step::Answer {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

fn answer_with(status: u16, headers: Vec<(&'static str, &'static str)>, body: &Value) -> Step {
    Step::Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn server_error() -> Step {
    answer(
        500,
        &json!({"error": {"type": "api_error", "message": "An unknown error occurred"}}),
    )
}

fn rate_limited() -> Step {
    answer(
        429,
        &json!({"error": {"type": "invalid_request_error", "code": "rate_limit",
               "message": "Request rate limit exceeded."}}),
    )
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: hyper::HeaderMap,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).unwrap()
    }

    fn form_keys(&self) -> Vec<String> {
        self.form().into_iter().map(|(k, _)| k).collect()
    }
}

struct StripeDouble {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StripeDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StripeDouble {
    async fn start(steps: Vec<Step>) -> Self {
        captured_logs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mut steps = VecDeque::from(steps);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let step = steps.pop_front().unwrap_or_else(|| {
                    answer(
                        418,
                        &json!({"error": {"type": "invalid_request_error",
                               "message": "the test double has no step left"}}),
                    )
                });
                tokio::spawn(serve_one(stream, step, recorded.clone()));
            }
        });
        StripeDouble {
            addr,
            requests,
            task,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn client(&self) -> StripeClient {
        StripeClient::new(&self.base_url(), Secret::new(KEY.to_owned()))
            .unwrap()
            .with_timeout(Duration::from_secs(5))
            .with_retry_base_delay(Duration::from_millis(5))
    }
}

/// Serves the one request of a connection (keep-alive is off, so the client opens a new
/// connection for its next request and each step meets exactly one request).
async fn serve_one(stream: tokio::net::TcpStream, step: Step, requests: Arc<Mutex<Vec<Recorded>>>) {
    if matches!(step, Step::Reset) {
        // Closing with SO_LINGER 0 sends a RST instead of a FIN.
        stream.set_zero_linger().unwrap();
    }
    let (abort_tx, abort_rx) = oneshot::channel::<()>();
    let abort_tx = Arc::new(Mutex::new(Some(abort_tx)));
    let service = service_fn(move |request: Request<Incoming>| {
        let step = step.clone();
        let requests = requests.clone();
        let abort_tx = abort_tx.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(Body::new(body), 1 << 20)
                .await
                .unwrap();
            requests.lock().unwrap().push(Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body: String::from_utf8(body.to_vec()).unwrap(),
            });
            match step {
                Step::Answer {
                    status,
                    headers,
                    body,
                } => {
                    let mut response = Response::builder()
                        .status(status)
                        .header("content-type", "application/json");
                    if !headers.iter().any(|(name, _)| *name == "request-id") {
                        response = response.header("request-id", "req_test123");
                    }
                    for (name, value) in headers {
                        response = response.header(name, value);
                    }
                    Ok::<_, Infallible>(response.body(Body::from(body)).unwrap())
                }
                Step::Stall(duration) => {
                    tokio::time::sleep(duration).await;
                    Ok(Response::new(Body::from("{}")))
                }
                Step::Reset => {
                    if let Some(tx) = abort_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    std::future::pending().await
                }
            }
        }
    });
    let connection = http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = abort_rx => {}
    }
}

fn customer_json() -> Value {
    json!({"id": "cus_1", "object": "customer", "email": "ann@example.com", "name": "Ann",
           "metadata": {"mpanel_customer_id": "12"}})
}

fn payment_intent_json(status: &str) -> Value {
    json!({"id": "pi_1", "object": "payment_intent", "status": status, "amount": 1999,
           "currency": "usd", "customer": "cus_1", "payment_method": "pm_1",
           "latest_charge": "ch_1", "metadata": {"invoice_id": "42"},
           "last_payment_error": null})
}

fn checkout_session_json() -> Value {
    json!({"id": "cs_test_a1", "object": "checkout.session", "mode": "payment",
           "status": "open", "payment_status": "unpaid", "customer": "cus_1",
           "customer_details": null, "amount_total": 1999, "currency": "usd",
           "metadata": {"order_id": "7"}, "client_reference_id": "order-7",
           "payment_intent": null, "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
           "expires_at": 1700086400})
}

fn new_customer() -> NewCustomer {
    NewCustomer {
        email: "ann@example.com".into(),
        name: Some("Ann Example".into()),
        metadata: BTreeMap::from([("mpanel_customer_id".into(), "12".into())]),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn off_session_charge() -> OffSessionCharge {
    OffSessionCharge {
        amount_minor: 1999,
        currency: Currency::USD,
        customer: "cus_1".into(),
        payment_method: "pm_1".into(),
        metadata: BTreeMap::from([("invoice_id".into(), "42".into())]),
    }
}

#[tokio::test]
async fn a_post_carries_the_key_the_pinned_version_the_idempotency_key_and_a_form_body() {
    let double = StripeDouble::start(vec![answer(200, &customer_json())]).await;
    let customer = double
        .client()
        .create_customer(&new_customer(), "customer-12")
        .await
        .unwrap();
    assert_eq!(customer.id, "cus_1");
    assert_eq!(customer.metadata["mpanel_customer_id"], "12");

    let [request] = double.requests().try_into().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/customers");
    assert_eq!(
        request.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(request.header("stripe-version"), Some(STRIPE_API_VERSION));
    assert_eq!(request.header("idempotency-key"), Some("customer-12"));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        request.form(),
        pairs(&[
            ("email", "ann@example.com"),
            ("name", "Ann Example"),
            ("metadata[mpanel_customer_id]", "12"),
        ])
    );
}

#[tokio::test]
async fn a_get_carries_the_key_and_version_but_no_idempotency_key() {
    let double = StripeDouble::start(vec![answer(200, &payment_intent_json("succeeded"))]).await;
    let intent = double.client().get_payment_intent("pi_1").await.unwrap();
    assert_eq!(intent.status, PaymentIntentStatus::Succeeded);
    assert_eq!(intent.latest_charge.as_deref(), Some("ch_1"));

    let [request] = double.requests().try_into().unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/v1/payment_intents/pi_1");
    assert_eq!(
        request.header("authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(request.header("stripe-version"), Some(STRIPE_API_VERSION));
    assert_eq!(request.header("idempotency-key"), None);
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn a_checkout_session_is_sent_in_bracket_notation() {
    let double = StripeDouble::start(vec![answer(200, &checkout_session_json())]).await;
    let session = NewCheckoutSession {
        customer: Some("cus_1".into()),
        customer_email: Some("ignored@example.com".into()),
        amount_minor: 1999,
        currency: Currency::EUR,
        product_name: "Hosting Pro & more, 1 year".into(),
        success_url: "https://panel.example.com/paid?session_id={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "https://panel.example.com/cart".into(),
        metadata: BTreeMap::from([("order_id".into(), "7".into())]),
        client_reference_id: Some("order-7".into()),
        save_card_for_off_session: true,
        payment_intent_metadata: BTreeMap::from([("order_id".into(), "7".into())]),
    };
    let created = double
        .client()
        .create_checkout_session(&session, "order-7-checkout-1")
        .await
        .unwrap();
    assert_eq!(created.id, "cs_test_a1");
    assert_eq!(
        created.url.as_deref(),
        Some("https://checkout.stripe.com/c/pay/cs_test_a1")
    );
    assert_eq!(created.payment_status, CheckoutPaymentStatus::Unpaid);

    let [request] = double.requests().try_into().unwrap();
    assert_eq!(request.path, "/v1/checkout/sessions");
    assert_eq!(
        request.header("idempotency-key"),
        Some("order-7-checkout-1")
    );
    // On the wire the brackets are percent-encoded, as form encoding requires.
    assert!(
        request
            .body
            .contains("line_items%5B0%5D%5Bprice_data%5D%5Bproduct_data%5D%5Bname%5D=Hosting"),
        "{}",
        request.body
    );
    assert_eq!(
        request.form(),
        pairs(&[
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][price_data][unit_amount]", "1999"),
            (
                "line_items[0][price_data][product_data][name]",
                "Hosting Pro & more, 1 year"
            ),
            ("line_items[0][quantity]", "1"),
            (
                "success_url",
                "https://panel.example.com/paid?session_id={CHECKOUT_SESSION_ID}"
            ),
            ("cancel_url", "https://panel.example.com/cart"),
            ("customer", "cus_1"),
            ("client_reference_id", "order-7"),
            ("metadata[order_id]", "7"),
            ("payment_intent_data[setup_future_usage]", "off_session"),
            ("payment_intent_data[metadata][order_id]", "7"),
        ])
    );
}

#[tokio::test]
async fn a_checkout_session_without_a_customer_prefills_the_email_and_creates_one_to_save_the_card()
{
    let double = StripeDouble::start(vec![
        answer(200, &checkout_session_json()),
        answer(200, &checkout_session_json()),
    ])
    .await;
    let mut session = NewCheckoutSession {
        customer: None,
        customer_email: Some("ann@example.com".into()),
        amount_minor: 500,
        currency: Currency::USD,
        product_name: "Domain".into(),
        success_url: "https://panel.example.com/ok".into(),
        cancel_url: "https://panel.example.com/no".into(),
        metadata: BTreeMap::new(),
        client_reference_id: None,
        save_card_for_off_session: true,
        payment_intent_metadata: BTreeMap::new(),
    };
    let client = double.client();
    client
        .create_checkout_session(&session, "order-8-checkout-1")
        .await
        .unwrap();
    session.save_card_for_off_session = false;
    client
        .create_checkout_session(&session, "order-8-checkout-2")
        .await
        .unwrap();

    let [saving, not_saving] = double.requests().try_into().unwrap();
    let form = saving.form();
    assert!(form.contains(&("customer_email".into(), "ann@example.com".into())));
    assert!(form.contains(&("customer_creation".into(), "always".into())));
    assert!(form.contains(&(
        "payment_intent_data[setup_future_usage]".into(),
        "off_session".into()
    )));
    assert!(!saving.form_keys().contains(&"customer".to_owned()));
    let keys = not_saving.form_keys();
    assert!(keys.contains(&"customer_email".to_owned()));
    assert!(!keys.contains(&"customer_creation".to_owned()));
    assert!(!keys.contains(&"payment_intent_data[setup_future_usage]".to_owned()));
}

#[tokio::test]
async fn an_off_session_charge_confirms_at_once_and_sends_nothing_localstripe_rejects() {
    let double = StripeDouble::start(vec![answer(200, &payment_intent_json("succeeded"))]).await;
    let intent = double
        .client()
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_1");
    assert_eq!(intent.amount, 1999);
    assert_eq!(intent.currency, Currency::USD);

    let [request] = double.requests().try_into().unwrap();
    assert_eq!(request.path, "/v1/payment_intents");
    assert_eq!(
        request.header("idempotency-key"),
        Some("invoice-42-charge-1")
    );
    assert_eq!(
        request.form(),
        pairs(&[
            ("amount", "1999"),
            ("currency", "usd"),
            ("customer", "cus_1"),
            ("payment_method", "pm_1"),
            ("off_session", "true"),
            ("confirm", "true"),
            ("metadata[invoice_id]", "42"),
        ])
    );
}

#[tokio::test]
async fn reads_decode_expanded_objects_queries_and_cards() {
    let mut session = checkout_session_json();
    session["customer"] = json!({"id": "cus_9", "object": "customer", "email": "x@example.com"});
    session["payment_intent"] = json!({"id": "pi_9", "object": "payment_intent"});
    let double = StripeDouble::start(vec![
        answer(200, &session),
        answer(
            200,
            &json!({"object": "list", "url": "/v1/payment_intents", "has_more": true,
                   "data": [payment_intent_json("succeeded"), payment_intent_json("requires_payment_method")]}),
        ),
        answer(
            200,
            &json!({"id": "pm_1", "object": "payment_method", "type": "card", "customer": "cus_1",
                   "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034,
                            "funding": "credit"}}),
        ),
    ])
    .await;
    let client = double.client();

    let session = client.get_checkout_session("cs_test_a1").await.unwrap();
    assert_eq!(session.customer.as_deref(), Some("cus_9"));
    assert_eq!(session.payment_intent.as_deref(), Some("pi_9"));

    let list = client.list_payment_intents("cus_1").await.unwrap();
    assert!(list.has_more);
    assert_eq!(
        list.data.iter().map(|pi| pi.status).collect::<Vec<_>>(),
        [
            PaymentIntentStatus::Succeeded,
            PaymentIntentStatus::RequiresPaymentMethod
        ]
    );

    let method = client.get_payment_method("pm_1").await.unwrap();
    let card = method.card.unwrap();
    assert_eq!(
        (
            card.brand.as_str(),
            card.last4.as_str(),
            card.exp_month,
            card.exp_year
        ),
        ("visa", "4242", 12, 2034)
    );
    assert_eq!(method.customer.as_deref(), Some("cus_1"));

    let [get_session, list, get_method] = double.requests().try_into().unwrap();
    assert_eq!(get_session.path, "/v1/checkout/sessions/cs_test_a1");
    assert_eq!(list.path, "/v1/payment_intents");
    assert_eq!(list.query.as_deref(), Some("customer=cus_1&limit=100"));
    assert_eq!(get_method.path, "/v1/payment_methods/pm_1");
}

#[tokio::test]
async fn a_refund_sends_the_amount_only_when_partial() {
    let refund = json!({"id": "re_1", "object": "refund", "amount": 500, "status": "succeeded",
                        "payment_intent": "pi_1", "charge": "ch_1", "currency": "usd"});
    let double = StripeDouble::start(vec![answer(200, &refund), answer(200, &refund)]).await;
    let client = double.client();
    let made = client
        .create_refund("pi_1", Some(500), "refund-3")
        .await
        .unwrap();
    assert_eq!(made.amount, 500);
    assert_eq!(made.charge.as_deref(), Some("ch_1"));
    client
        .create_refund("pi_1", None, "refund-4")
        .await
        .unwrap();

    let [partial, full] = double.requests().try_into().unwrap();
    assert_eq!(partial.path, "/v1/refunds");
    assert_eq!(
        partial.form(),
        pairs(&[("payment_intent", "pi_1"), ("amount", "500")])
    );
    assert_eq!(full.form(), pairs(&[("payment_intent", "pi_1")]));
    assert_eq!(full.header("idempotency-key"), Some("refund-4"));
}

/// Every attempt of one call went out with the same key and the same body.
fn assert_same_attempts(requests: &[Recorded], key: &str) {
    for request in requests {
        assert_eq!(request.header("idempotency-key"), Some(key));
        assert_eq!(request.body, requests[0].body);
        assert_eq!(request.path, requests[0].path);
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_idempotency_key_until_one_succeeds() {
    let double = StripeDouble::start(vec![
        server_error(),
        answer(
            503,
            &json!({"error": {"type": "api_error", "message": "busy"}}),
        ),
        answer(200, &payment_intent_json("succeeded")),
    ])
    .await;
    let intent = double
        .client()
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_1");
    let requests = double.requests();
    assert_eq!(requests.len(), 3);
    assert_same_attempts(&requests, "invoice-42-charge-1");
}

#[tokio::test]
async fn a_rate_limit_is_retried() {
    let double = StripeDouble::start(vec![rate_limited(), answer(200, &customer_json())]).await;
    double
        .client()
        .create_customer(&new_customer(), "customer-12")
        .await
        .unwrap();
    let requests = double.requests();
    assert_eq!(requests.len(), 2);
    assert_same_attempts(&requests, "customer-12");
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let double = StripeDouble::start(vec![
        Step::Reset,
        Step::Reset,
        answer(200, &payment_intent_json("succeeded")),
    ])
    .await;
    let intent = double
        .client()
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_1");
    let requests = double.requests();
    assert_eq!(requests.len(), 3);
    assert_same_attempts(&requests, "invoice-42-charge-1");
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    let double = StripeDouble::start(vec![
        Step::Stall(Duration::from_secs(5)),
        answer(200, &payment_intent_json("succeeded")),
    ])
    .await;
    let client = double.client().with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    client
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    let requests = double.requests();
    assert_eq!(requests.len(), 2);
    assert_same_attempts(&requests, "invoice-42-charge-1");
}

#[tokio::test]
async fn retries_stop_after_the_configured_number() {
    let double = StripeDouble::start(vec![
        server_error(),
        server_error(),
        server_error(),
        server_error(),
        answer(200, &customer_json()),
    ])
    .await;
    let err = double
        .client()
        .create_customer(&new_customer(), "customer-12")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StripeError::Api {
            status: 500,
            message: "An unknown error occurred".into()
        }
    );
    assert_eq!(double.requests().len(), 4, "one attempt and three retries");

    let double = StripeDouble::start(vec![server_error(), answer(200, &customer_json())]).await;
    let err = double
        .client()
        .with_max_network_retries(0)
        .create_customer(&new_customer(), "customer-12")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "api_error");
    assert_eq!(double.requests().len(), 1);
}

#[tokio::test]
async fn a_rate_limit_that_lasts_ends_as_rate_limited() {
    let double = StripeDouble::start(vec![rate_limited(); 4]).await;
    let err = double
        .client()
        .get_payment_intent("pi_1")
        .await
        .unwrap_err();
    assert_eq!(err, StripeError::RateLimited);
    assert_eq!(double.requests().len(), 4);
}

#[tokio::test]
async fn an_unreachable_api_is_a_network_error_after_the_retries() {
    let double = StripeDouble::start(vec![Step::Reset; 4]).await;
    let err = double
        .client()
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap_err();
    assert!(matches!(err, StripeError::Network(_)), "{err:?}");
    assert_eq!(err.code(), "network_error");
    assert_eq!(double.requests().len(), 4);

    // Nothing listening at all.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = StripeClient::new(&format!("http://{addr}"), Secret::new(KEY.to_owned()))
        .unwrap()
        .with_retry_base_delay(Duration::from_millis(1))
        .get_payment_intent("pi_1")
        .await
        .unwrap_err();
    assert!(matches!(err, StripeError::Network(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains(KEY));
}

#[tokio::test]
async fn a_decline_is_not_retried_and_names_its_payment_intent() {
    // Stripe's documented answer to a declined off-session charge.
    let double = StripeDouble::start(vec![
        answer(
            402,
            &json!({"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined.", "charge": "ch_2",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "payment_intent": {"id": "pi_2", "object": "payment_intent",
                                   "status": "requires_payment_method"},
                "payment_method": {"id": "pm_1", "object": "payment_method"}
            }}),
        ),
        answer(200, &payment_intent_json("succeeded")),
    ])
    .await;
    let err = double
        .client()
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StripeError::CardDeclined {
            decline_code: Some("generic_decline".into()),
            payment_intent: Some("pi_2".into()),
            message: "Your card was declined.".into(),
        }
    );
    assert_eq!(err.payment_intent_id(), Some("pi_2"));
    assert!(err.is_decline());
    assert_eq!(double.requests().len(), 1);
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let double = StripeDouble::start(vec![
        answer(
            400,
            &json!({"error": {"type": "invalid_request_error", "code": "parameter_missing",
                   "param": "payment_method", "message": "Missing required param: payment_method."}}),
        ),
        answer(200, &payment_intent_json("succeeded")),
    ])
    .await;
    let err = double
        .client()
        .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StripeError::InvalidRequest {
            status: 400,
            code: Some("parameter_missing".into()),
            param: Some("payment_method".into()),
            message: "Missing required param: payment_method.".into(),
        }
    );
    assert_eq!(double.requests().len(), 1);
}

#[tokio::test]
async fn stripe_should_retry_decides_over_the_status() {
    let double = StripeDouble::start(vec![
        answer_with(
            500,
            vec![("stripe-should-retry", "false")],
            &json!({"error": {"type": "api_error", "message": "do not retry this"}}),
        ),
        answer(200, &customer_json()),
    ])
    .await;
    let err = double
        .client()
        .create_customer(&new_customer(), "customer-12")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "api_error");
    assert_eq!(double.requests().len(), 1);

    let double = StripeDouble::start(vec![
        answer_with(
            400,
            vec![("stripe-should-retry", "true")],
            &json!({"error": {"type": "invalid_request_error", "code": "lock_timeout",
                   "message": "This object cannot be accessed right now."}}),
        ),
        answer(200, &customer_json()),
    ])
    .await;
    double
        .client()
        .create_customer(&new_customer(), "customer-12")
        .await
        .unwrap();
    let requests = double.requests();
    assert_eq!(requests.len(), 2);
    assert_same_attempts(&requests, "customer-12");
}

#[tokio::test]
async fn error_answers_map_to_their_codes() {
    let cases: Vec<(u16, Value, &str, Option<&str>)> = vec![
        (
            402,
            json!({"error": {"type": "card_error", "code": "authentication_required",
                   "decline_code": "authentication_required",
                   "message": "Your card was declined. This transaction requires authentication.",
                   "payment_intent": {"id": "pi_3", "object": "payment_intent"}}}),
            "authentication_required",
            Some("pi_3"),
        ),
        (
            402,
            json!({"error": {"type": "card_error", "code": "expired_card", "param": "exp_month",
                   "message": "Your card has expired.", "payment_intent": {"id": "pi_4"}}}),
            "expired_card",
            Some("pi_4"),
        ),
        // localstripe's decline of card 4000000000000341.
        (
            402,
            json!({"error": {"type": "invalid_request_error", "code": "card_declined",
                   "message": "The card was declined."}}),
            "card_declined",
            None,
        ),
        (
            404,
            json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                   "param": "id", "message": "No such payment_intent: 'pi_x'"}}),
            "invalid_request",
            None,
        ),
        (
            400,
            json!({"error": {"type": "idempotency_error",
                   "message": "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than 'invoice-42-charge-1' if you meant to execute a different request."}}),
            "idempotency_error",
            None,
        ),
        (
            401,
            json!({"error": {"type": "invalid_request_error",
                   "message": "Invalid API Key provided: sk_test_****Leak"}}),
            "stripe_auth",
            None,
        ),
        (
            403,
            json!({"error": {"type": "invalid_request_error",
                   "message": "The provided key does not have the required permissions for this endpoint."}}),
            "stripe_auth",
            None,
        ),
    ];
    for (status, body, code, payment_intent) in cases {
        let double = StripeDouble::start(vec![answer(status, &body)]).await;
        let err = double
            .client()
            .charge_off_session(&off_session_charge(), "invoice-42-charge-1")
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{status} {body}: {err:?}");
        assert_eq!(err.payment_intent_id(), payment_intent, "{body}");
        assert_eq!(double.requests().len(), 1, "{body}: not retried");
    }
}

#[tokio::test]
async fn an_answer_that_is_not_the_expected_json_is_a_decode_error() {
    let double = StripeDouble::start(vec![Step::Answer {
        status: 200,
        headers: Vec::new(),
        body: "<html>not stripe</html>".into(),
    }])
    .await;
    let err = double
        .client()
        .get_payment_intent("pi_1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "decode_error");
}

#[tokio::test]
async fn the_key_is_in_no_error_debug_or_log() {
    let double = StripeDouble::start(vec![
        server_error(),
        answer_with(
            401,
            vec![("request-id", "req_key_refused")],
            &json!({"error": {"type": "invalid_request_error",
                   "message": format!("Invalid API Key provided: {KEY}")}}),
        ),
        answer(
            400,
            &json!({"error": {"type": "invalid_request_error",
                   "message": format!("Something about {KEY}")}}),
        ),
    ])
    .await;
    let client = double.client();
    let refused = client
        .create_customer(&new_customer(), "customer-log-check")
        .await
        .unwrap_err();
    assert_eq!(refused, StripeError::Authentication);
    let rejected = client.get_payment_intent("pi_log_check").await.unwrap_err();
    assert_eq!(rejected.code(), "invalid_request");

    for text in [
        format!("{client:?}"),
        format!("{refused:?} {refused}"),
        format!("{rejected:?} {rejected}"),
    ] {
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains("51HxTestKey"), "{text}");
    }
    let logs = String::from_utf8(captured_logs().lock().unwrap().clone()).unwrap();
    // The calls were logged, with what identifies them...
    assert!(
        logs.lines()
            .any(|line| line.contains("retrying a Stripe API call")
                && line.contains("customer-log-check")
                && line.contains("/v1/customers")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|line| line.contains("Stripe API call")
            && line.contains("req_key_refused")
            && line.contains("status=401")),
        "{logs}"
    );
    assert!(logs.contains("/v1/payment_intents/pi_log_check"), "{logs}");
    // ...and never with the key, by this test or any other of this binary (they share the
    // subscriber and the key).
    assert!(!logs.contains("51HxTestKey"), "{logs}");
}

/// Every log line of this test binary, at every level. A global subscriber rather than one per
/// test: a thread-local one misses events whose callsite another test's thread registered
/// first.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer_logs = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer_logs.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
