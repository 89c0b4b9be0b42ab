//! Test controls under `/__double/*` (not Stripe's API; no auth, never faulted, never
//! idempotent): what the customer and the bank do (pay on the page, a delayed payment settling,
//! a session expiring, a chargeback), webhook endpoint and delivery controls, scripted faults,
//! and the state document. Bodies and answers are JSON with camelCase keys; failures are
//! `{"error": "..."}` with 400, 404 or 409.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::faults::FaultSpec;
use crate::ids::now;
use crate::store::{ControlError, Origin, PagePayment};
use crate::webhooks::{self, DeliveryRecord, WebhookTarget};
use crate::{Double, validate_target};

pub(crate) fn routes(double: Arc<Double>) -> Router {
    Router::new()
        .route("/__double/state", get(state))
        .route(
            "/__double/checkout/sessions/{id}/complete",
            post(complete_session),
        )
        .route(
            "/__double/checkout/sessions/{id}/async",
            post(settle_session),
        )
        .route(
            "/__double/checkout/sessions/{id}/expire",
            post(expire_session),
        )
        .route("/__double/charges/{id}/dispute", post(dispute))
        .route(
            "/__double/webhook",
            post(set_webhook).delete(remove_webhook),
        )
        .route("/__double/webhook/pause", post(pause))
        .route("/__double/webhook/resume", post(resume))
        .route("/__double/events/{id}/deliver", post(redeliver))
        .route("/__double/deliveries", get(deliveries))
        .route(
            "/__double/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .with_state(double)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        match self {
            ControlError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            ControlError::Conflict(m) => error(StatusCode::CONFLICT, m),
            ControlError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        }
    }
}

/// The JSON body, or `T::default()` for an empty one; a 400 answer otherwise.
fn body<T: DeserializeOwned + Default>(raw: &Bytes) -> Result<T, Box<Response>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(raw).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Completion {
    /// `paid` (card, default) or `unpaid` (a delayed method that settles later).
    outcome: Option<String>,
    payment_method: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

async fn complete_session(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Response {
    let request: Completion = match body(&raw) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let paid_now = match request.outcome.as_deref() {
        None | Some("paid") => true,
        Some("unpaid") => false,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("outcome must be \"paid\" or \"unpaid\", not {other:?}"),
            );
        }
    };
    let mut store = double.lock();
    let from = store.events.len();
    let payment = PagePayment {
        paid_now,
        payment_method: request
            .payment_method
            .unwrap_or_else(|| "pm_card_visa".to_owned()),
        email: request.email,
        name: request.name,
    };
    match store.pay_session(&id, payment) {
        Ok(mut answer) => {
            answer["events"] = Value::Array(store.events_since(from));
            answer["session"] = store.session(&id).map(|s| s.json()).unwrap_or(Value::Null);
            axum::Json(answer).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settlement {
    succeeded: bool,
}

async fn settle_session(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Response {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            "body {\"succeeded\": true|false} is required",
        );
    }
    let request: Settlement = match body(&raw) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut store = double.lock();
    let from = store.events.len();
    match store.settle_session(&id, request.succeeded) {
        Ok(()) => axum::Json(json!({
            "events": store.events_since(from),
            "session": store.session(&id).map(|s| s.json()),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn expire_session(State(double): State<Arc<Double>>, Path(id): Path<String>) -> Response {
    let mut store = double.lock();
    let from = store.events.len();
    if store.session(&id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no checkout session {id}"));
    }
    match store.expire_session(&id, &Origin::default()) {
        Ok(session) => axum::Json(json!({
            "events": store.events_since(from),
            "session": session,
        }))
        .into_response(),
        Err(e) => error(StatusCode::CONFLICT, e.message),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputeRequest {
    reason: Option<String>,
    amount: Option<i64>,
}

async fn dispute(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Response {
    let request: DisputeRequest = match body(&raw) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut store = double.lock();
    let from = store.events.len();
    let reason = request.reason.unwrap_or_else(|| "fraudulent".to_owned());
    match store.dispute_charge(&id, reason, request.amount) {
        Ok(dispute) => axum::Json(json!({
            "events": store.events_since(from),
            "dispute": dispute,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    url: String,
    secret: String,
}

async fn set_webhook(State(double): State<Arc<Double>>, raw: Bytes) -> Response {
    let request: WebhookRequest = match body(&raw) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let target = WebhookTarget {
        url: request.url,
        secret: request.secret,
    };
    if let Err(e) = validate_target(&target) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let url = target.url.clone();
    double.lock().outbox.set_target(Some(target));
    axum::Json(json!({ "url": url })).into_response()
}

async fn remove_webhook(State(double): State<Arc<Double>>) -> Response {
    double.lock().outbox.set_target(None);
    StatusCode::NO_CONTENT.into_response()
}

async fn pause(State(double): State<Arc<Double>>) -> Response {
    let mut store = double.lock();
    store.outbox.pause();
    axum::Json(json!({"paused": true, "queued": store.outbox.queued()})).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    /// Send the held events newest first.
    #[serde(default)]
    reverse: bool,
}

async fn resume(State(double): State<Arc<Double>>, raw: Bytes) -> Response {
    let request: ResumeRequest = match body(&raw) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut store = double.lock();
    let queued = store.outbox.queued();
    store.outbox.resume(request.reverse);
    axum::Json(json!({"paused": false, "released": queued})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Redelivery {
    #[serde(default = "one")]
    times: u32,
    #[serde(default)]
    concurrent: bool,
}

impl Default for Redelivery {
    fn default() -> Self {
        Redelivery {
            times: 1,
            concurrent: false,
        }
    }
}

fn one() -> u32 {
    1
}

/// Sends an event again, `times` times (all at once when `concurrent`), past any pause:
/// Stripe's duplicate deliveries. Answers with the endpoint's statuses in sending order.
async fn redeliver(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Response {
    let request: Redelivery = match body(&raw) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if !(1..=100).contains(&request.times) {
        return error(StatusCode::BAD_REQUEST, "times must be between 1 and 100");
    }
    let (target, kind, body) = {
        let store = double.lock();
        let Some(event) = store.event(&id) else {
            return error(StatusCode::NOT_FOUND, format!("no event {id}"));
        };
        let Some(target) = store.outbox.target().cloned() else {
            return error(StatusCode::CONFLICT, "no webhook endpoint is configured");
        };
        (
            target,
            event.kind.clone(),
            webhooks::event_body(&event.json()),
        )
    };
    let mut results: Vec<webhooks::Outcome> = Vec::new();
    if request.concurrent {
        let mut set = JoinSet::new();
        for i in 0..request.times {
            let (client, target, body) = (double.http.clone(), target.clone(), body.clone());
            set.spawn(async move { (i, webhooks::post_event(&client, &target, body).await) });
        }
        let mut indexed: Vec<(u32, webhooks::Outcome)> = set.join_all().await;
        indexed.sort_by_key(|(i, _)| *i);
        results.extend(indexed.into_iter().map(|(_, r)| r));
    } else {
        for _ in 0..request.times {
            results.push(webhooks::post_event(&double.http, &target, body.clone()).await);
        }
    }
    let mut store = double.lock();
    for (status, error) in &results {
        if status.is_some_and(|s| (200..300).contains(&s)) {
            store.mark_delivered(&id);
        }
        store.outbox.record(DeliveryRecord {
            event_id: id.clone(),
            event_type: kind.clone(),
            status: *status,
            error: error.clone(),
            redelivery: true,
            at: now(),
        });
    }
    axum::Json(json!({
        "eventId": id,
        "statuses": results.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "errors": results.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn deliveries(State(double): State<Arc<Double>>) -> Response {
    axum::Json(double.lock().outbox.log_json()).into_response()
}

async fn list_faults(State(double): State<Arc<Double>>) -> Response {
    axum::Json(json!({ "pending": double.faults().json() })).into_response()
}

/// One fault or an array of them.
async fn add_faults(State(double): State<Arc<Double>>, raw: Bytes) -> Response {
    let value: Value = match body(&raw) {
        Ok(v) => v,
        Err(e) => return *e,
    };
    let specs: Result<Vec<FaultSpec>, _> = match value {
        Value::Array(_) => serde_json::from_value(value),
        other => serde_json::from_value(other).map(|one| vec![one]),
    };
    let specs = match specs {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid fault: {e}")),
    };
    let mut faults = double.faults();
    if let Err(e) = faults.add(specs) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    axum::Json(json!({ "pending": faults.json() })).into_response()
}

async fn clear_faults(State(double): State<Arc<Double>>) -> Response {
    double.faults().clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn state(State(double): State<Arc<Double>>) -> Response {
    axum::Json(state_json(&double)).into_response()
}

/// Everything a test may want to assert on, without secrets.
pub(crate) fn state_json(double: &Double) -> Value {
    let keys = double.idempotency().json();
    let store = double.lock();
    json!({
        "counts": {
            "customers": store.customers.len(),
            "checkoutSessions": store.sessions.len(),
            "paymentIntents": store.payment_intents.len(),
            "charges": store.charges.len(),
            "refunds": store.refunds.len(),
            "disputes": store.disputes.len(),
            "events": store.events.len(),
        },
        "customers": store.customers.iter().map(|c| json!({
            "id": c.id, "email": c.email, "name": c.name, "metadata": c.metadata,
        })).collect::<Vec<_>>(),
        "checkoutSessions": store.sessions.iter().map(|s| json!({
            "id": s.id,
            "status": s.status.as_str(),
            "paymentStatus": s.payment_status,
            "amountTotal": s.amount_total,
            "currency": s.currency,
            "customer": s.customer,
            "clientReferenceId": s.client_reference_id,
            "metadata": s.metadata,
            "paymentIntent": s.payment_intent,
            "idempotencyKey": s.idempotency_key,
        })).collect::<Vec<_>>(),
        "paymentIntents": store.payment_intents.iter().map(|p| json!({
            "id": p.id,
            "amount": p.amount,
            "currency": p.currency,
            "status": p.status.as_str(),
            "customer": p.customer,
            "paymentMethod": p.payment_method,
            "latestCharge": p.latest_charge,
            "metadata": p.metadata,
            "idempotencyKey": p.idempotency_key,
        })).collect::<Vec<_>>(),
        "charges": store.charges.iter().map(|c| json!({
            "id": c.id,
            "amount": c.amount,
            "amountRefunded": c.amount_refunded,
            "currency": c.currency,
            "status": c.json()["status"],
            "paymentIntent": c.payment_intent,
            "refunded": c.refunded(),
            "disputed": c.disputed,
        })).collect::<Vec<_>>(),
        "refunds": store.refunds.iter().map(|r| json!({
            "id": r.id,
            "amount": r.amount,
            "charge": r.charge,
            "paymentIntent": r.payment_intent,
            "idempotencyKey": r.idempotency_key,
        })).collect::<Vec<_>>(),
        "disputes": store.disputes.iter().map(|d| json!({
            "id": d.id, "charge": d.charge, "amount": d.amount, "reason": d.reason,
        })).collect::<Vec<_>>(),
        "events": store.events.iter().map(|e| json!({
            "id": e.id, "type": e.kind, "pendingWebhooks": e.pending_webhooks,
        })).collect::<Vec<_>>(),
        "idempotencyKeys": keys,
        "webhook": {
            "url": store.outbox.target().map(|t| t.url.clone()),
            "paused": store.outbox.paused(),
            "queued": store.outbox.queued(),
        },
    })
}
