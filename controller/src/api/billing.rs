//! Billing routes: the customer's checkout and success page, Stripe's webhook, and the admins'
//! invoices (list, show, charge the saved card now, offline payments, void).
//!
//! The webhook reads the raw body (the signature covers its exact bytes), checks the signature
//! before anything else and answers 400 with nothing written when it fails; the event's work is
//! database writes only, so the answer comes fast.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, request::Parts};
use axum::routing::{get, post};
use axum::{Json, Router};
use mpanel_common::ids::{InvoiceId, ProductId};
use mpanel_common::status::BillingCycle;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::given;
use super::extract::{JsonBody, PathId};
use super::fields::{date, date_ms, domain, email, rfc3339, text};
use super::listing::{Params, finish};
use crate::app::AppState;
use crate::billing::checkout::CheckoutRequest;
use crate::billing::signature::{self, WebhookSecrets};
use crate::billing::{BillingError, StripeError};
use crate::lifecycle::Actor;
use crate::store::billing::{
    ChargeRefusal, EventEffect, Invoice, InvoiceFilter, InvoiceLine, NewBillingJob, NewInvoice,
    NewPayment, PaymentOutcome,
};
use crate::store::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/checkout/sessions", post(create_checkout_session))
        .route("/api/checkout/success", get(checkout_success))
        .route("/api/webhooks/stripe", post(stripe_webhook))
        .route("/api/invoices", get(list_invoices).post(create_invoice))
        .route("/api/invoices/{id}", get(get_invoice).patch(update_invoice))
        .route("/api/invoices/{id}/payments", post(record_offline_payment))
        .route("/api/invoices/{id}/void", post(void_invoice))
}

/// Routes that wait for a job (a charge) beyond the router's default timeout.
pub fn waiting_routes() -> Router<AppState> {
    Router::new().route("/api/invoices/{id}/pay", post(pay_invoice))
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Invalid {
                status,
                field,
                code,
                message,
            } => ApiError {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                code,
                message,
                field: Some(field.to_owned()),
                details: serde_json::Map::new(),
            },
            BillingError::NotFound { .. } => ApiError::not_found(e.to_string()),
            BillingError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            BillingError::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payments_unavailable",
                e.to_string(),
            ),
            BillingError::Stripe(s) => stripe_error(&s),
            BillingError::Store(s) => s.into(),
        }
    }
}

/// Stripe's failures as answers: declines are the customer's (402), the rest is a gateway
/// problem (502) whose details stay in the log.
fn stripe_error(e: &StripeError) -> ApiError {
    if e.is_decline() || matches!(e, StripeError::AuthenticationRequired { .. }) {
        return ApiError::new(StatusCode::PAYMENT_REQUIRED, e.code(), e.to_string());
    }
    tracing::error!(error = %e, code = e.code(), "Stripe request failed");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "payment_gateway_error",
        "the payment provider could not be reached; try again shortly",
    )
}

// ---- checkout ---------------------------------------------------------------------------------

/// Checkout attempts per client address per minute.
const CHECKOUTS_PER_MINUTE: u32 = 10;

/// A fixed-window count of checkouts per client address: enough to stop a script from opening
/// thousands of orders, cheap enough to sit in front of every checkout. One per controller.
#[derive(Debug, Default)]
pub struct CheckoutLimiter(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl CheckoutLimiter {
    fn allow(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else {
            return true;
        };
        let mut windows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= CHECKOUTS_PER_MINUTE
    }
}

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckoutBody {
    product_id: i64,
    billing_cycle: String,
    domain: String,
    email: String,
    name: String,
    #[serde(default)]
    currency: Option<String>,
}

async fn create_checkout_session(
    State(state): State<AppState>,
    parts: Parts,
    JsonBody(body): JsonBody<CheckoutBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !state.checkout_limiter.allow(client_ip(&parts)) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("at most {CHECKOUTS_PER_MINUTE} checkouts a minute from one address"),
        ));
    }
    if body.product_id <= 0 {
        return Err(ApiError::invalid(
            "productId",
            "invalid_id",
            "must be a positive id",
        ));
    }
    let billing_cycle = body.billing_cycle.parse::<BillingCycle>().map_err(|_| {
        ApiError::invalid(
            "billingCycle",
            "invalid_billing_cycle",
            "must be one of monthly, quarterly, annually",
        )
    })?;
    let currency = body
        .currency
        .as_deref()
        .map(|c| {
            mpanel_common::Currency::parse(c)
                .map(|c| c.as_str().to_owned())
                .map_err(|e| ApiError::invalid("currency", "invalid_currency", e))
        })
        .transpose()?;
    let req = CheckoutRequest {
        product_id: ProductId::new(body.product_id),
        billing_cycle,
        domain: domain(&body.domain)?,
        email: email(&body.email)?,
        name: text("name", &body.name, 200)?,
        currency,
    };
    let started = state.billing.start_checkout(&req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "url": started.url,
            "sessionId": started.session_id,
            "orderId": started.order_id,
        })),
    ))
}

async fn checkout_success(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["session_id"])?;
    let session_id = params
        .get("session_id")
        .ok_or_else(|| ApiError::invalid("session_id", "missing_parameter", "is required"))?;
    if !session_id.starts_with("cs_")
        || session_id.len() > 255
        || !session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ApiError::invalid(
            "session_id",
            "invalid_session_id",
            "is not a Checkout Session id (cs_…)",
        ));
    }
    let (order, service) = state.billing.checkout_success(session_id).await?;
    Ok(Json(json!({
        "order": {
            "id": order.id,
            "status": order.status,
            "domain": order.domain,
            "total": order.total_minor,
            "currency": order.currency,
            "failure": order.failure,
        },
        "service": service.map(|s| json!({
            "id": s.id.get(),
            "domain": s.domain,
            "status": s.status.as_str(),
            "nextDueDate": s.next_due_at.map(date),
        })),
    })))
}

// ---- webhook ----------------------------------------------------------------------------------

async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let Some(raw_secrets) = state.config.stripe.webhook_secret.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks_unavailable",
            "STRIPE_WEBHOOK_SECRET is unset on this controller",
        ));
    };
    let secrets = WebhookSecrets::parse(raw_secrets.expose())
        .map_err(|e| ApiError::internal(format!("STRIPE_WEBHOOK_SECRET: {e}")))?;
    let header = headers
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let now = now_ms() / 1000;
    if let Err(e) = signature::verify(
        header,
        &body,
        &secrets,
        now,
        signature::DEFAULT_TOLERANCE_SECS,
    ) {
        tracing::warn!(reason = e.code(), "Stripe webhook refused: bad signature");
        crate::telemetry::metrics::webhook_signature_failure(e.code());
        return Err(ApiError {
            field: Some("Stripe-Signature".into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
        });
    }
    let handled = state.billing.handle_event(&body).await?;
    tracing::debug!(?handled, "Stripe event handled");
    Ok(Json(json!({ "received": true })))
}

// ---- invoices ---------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvoiceDto {
    id: i64,
    number: String,
    customer_id: i64,
    service_id: Option<i64>,
    /// `unpaid`, `paid`, `partially_refunded`, `refunded`, `void`.
    status: String,
    currency: String,
    subtotal: i64,
    tax: i64,
    tax_rate_bp: i32,
    total: i64,
    amount_paid: i64,
    amount_refunded: i64,
    amount_due: i64,
    issued_at: String,
    due_at: String,
    paid_at: Option<String>,
    period_start: Option<String>,
    period_end: Option<String>,
    lines: Vec<crate::store::billing::InvoiceLine>,
    charge_attempts: i32,
    next_charge_at: Option<String>,
    last_charge_error: Option<String>,
    pay_url: Option<String>,
}

impl From<Invoice> for InvoiceDto {
    fn from(i: Invoice) -> Self {
        let status = if i.status == "paid" && i.amount_refunded_minor > 0 {
            "partially_refunded".to_owned()
        } else {
            i.status.clone()
        };
        InvoiceDto {
            amount_due: i.amount_due(),
            id: i.id,
            number: i.number,
            customer_id: i.customer_id,
            service_id: i.service_id,
            status,
            currency: i.currency,
            subtotal: i.subtotal_minor,
            tax: i.tax_minor,
            tax_rate_bp: i.tax_rate_bp,
            total: i.amount_minor,
            amount_paid: i.amount_paid_minor,
            amount_refunded: i.amount_refunded_minor,
            issued_at: rfc3339(i.issued_at),
            due_at: rfc3339(i.due_at),
            paid_at: i.paid_at.map(rfc3339),
            period_start: i.period_start.map(date),
            period_end: i.period_end.map(date),
            lines: i.lines.0,
            charge_attempts: i.charge_attempts,
            next_charge_at: i.next_charge_at.map(rfc3339),
            last_charge_error: i.last_charge_error,
            pay_url: i.pay_url,
        }
    }
}

/// An invoice as the API shows it.
fn invoice_body(invoice: Invoice) -> Json<Value> {
    Json(json!(InvoiceDto::from(invoice)))
}

const INVOICE_STATUSES: [&str; 4] = ["unpaid", "paid", "void", "refunded"];

async fn list_invoices(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(
        query,
        &["customerId", "serviceId", "status", "limit", "cursor"],
    )?;
    let status = params
        .get("status")
        .map(|s| {
            INVOICE_STATUSES
                .contains(&s)
                .then(|| s.to_owned())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        "invalid_status",
                        format!("must be one of {}", INVOICE_STATUSES.join(", ")),
                    )
                })
        })
        .transpose()?;
    let page = params.page(50, 500)?;
    let filter = InvoiceFilter {
        customer_id: params.id("customerId")?,
        service_id: params.id("serviceId")?,
        status,
        page,
    };
    let mut invoices = state.store.list_invoices(&filter).await?;
    let next = finish(&mut invoices, page, |i| i.id);
    let invoices: Vec<InvoiceDto> = invoices.into_iter().map(InvoiceDto::from).collect();
    Ok(Json(json!({ "invoices": invoices, "nextCursor": next })))
}

async fn load_invoice(state: &AppState, id: InvoiceId) -> ApiResult<Invoice> {
    state
        .store
        .get_invoice(id.get())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("invoice {id} not found")))
}

async fn get_invoice(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
) -> ApiResult<Json<Value>> {
    let invoice = load_invoice(&state, id).await?;
    let payments: Vec<Value> = state
        .store
        .invoice_payments(id.get())
        .await?
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id, "amount": p.amount_minor, "currency": p.currency, "method": p.method,
                "provider": p.provider, "reference": p.reference.or(Some(p.provider_ref)),
                "refunded": p.refunded_minor, "status": p.status, "createdAt": rfc3339(p.created_at),
            })
        })
        .collect();
    let Json(mut body) = invoice_body(invoice);
    body["payments"] = Value::Array(payments);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LineIn {
    description: String,
    amount: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInvoiceBody {
    customer_id: i64,
    #[serde(default)]
    service_id: Option<i64>,
    currency: String,
    lines: Vec<LineIn>,
    #[serde(default)]
    tax_rate_bp: Option<i64>,
    /// `YYYY-MM-DD`; today when absent.
    #[serde(default)]
    due_date: Option<String>,
}

/// A one-off invoice an admin writes (a setup fee, extra work): numbered, emailed with its
/// PDF, and charged to the saved card on its due date like a renewal.
async fn create_invoice(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateInvoiceBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.customer_id <= 0 {
        return Err(ApiError::invalid(
            "customerId",
            "invalid_id",
            "must be a positive id",
        ));
    }
    let currency = mpanel_common::Currency::parse(&body.currency)
        .map_err(|e| ApiError::invalid("currency", "invalid_currency", e))?;
    if body.lines.is_empty() || body.lines.len() > 100 {
        return Err(ApiError::invalid(
            "lines",
            "invalid_lines",
            "must hold 1 to 100 lines",
        ));
    }
    let mut lines = Vec::with_capacity(body.lines.len());
    for (i, line) in body.lines.iter().enumerate() {
        let description = text(&format!("lines[{i}].description"), &line.description, 500)?;
        if line.amount <= 0 {
            return Err(ApiError::invalid(
                &format!("lines[{i}].amount"),
                "invalid_amount",
                "must be a positive amount in minor units",
            ));
        }
        lines.push(InvoiceLine {
            description,
            amount: line.amount,
        });
    }
    let subtotal = lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.amount))
        .filter(|s| *s <= 1_000_000_000_000)
        .ok_or_else(|| ApiError::invalid("lines", "invalid_amount", "the total is too large"))?;
    let tax_rate_bp = match body.tax_rate_bp {
        None => 0,
        Some(bp) => i32::try_from(bp)
            .ok()
            .filter(|bp| (0..=10_000).contains(bp))
            .ok_or_else(|| {
                ApiError::invalid(
                    "taxRateBp",
                    "invalid_tax_rate",
                    "must be basis points from 0 to 10000",
                )
            })?,
    };
    let now = now_ms();
    let due_at = match body.due_date.as_deref() {
        Some(d) => date_ms("dueDate", d)?,
        None => mpanel_common::billing::date_to_ms(mpanel_common::billing::ms_to_date(now)),
    };
    let customer = state
        .store
        .get_customer(body.customer_id.into())
        .await
        .map_err(|e| ApiError::not_found_as(e, "customerId", "customer", body.customer_id))?;
    if let Some(service) = body.service_id {
        let s = state
            .store
            .get_service(service.into())
            .await
            .map_err(|e| ApiError::not_found_as(e, "serviceId", "service", service))?;
        if s.customer_id != customer.id {
            return Err(ApiError::unprocessable(
                "serviceId",
                "service_of_another_customer",
                format!("service {service} belongs to another customer"),
            ));
        }
    }
    let tax = mpanel_common::billing::tax_minor(subtotal, u32::try_from(tax_rate_bp).unwrap_or(0));
    let new = NewInvoice {
        customer_id: customer.id.get(),
        service_id: body.service_id,
        period_start: None,
        period_end: None,
        subtotal_minor: subtotal,
        tax_minor: tax,
        tax_rate_bp,
        currency: currency.as_str().to_owned(),
        lines,
        issued_at: now,
        due_at,
        next_charge_at: Some(due_at),
    };
    let email = NewBillingJob {
        kind: "invoice_email",
        dedupe_key: "invoice-{invoice}-invoice".into(),
        invoice_id: None,
        customer_id: Some(customer.id.get()),
        service_id: body.service_id,
        params: json!({ "template": "invoice" }),
    };
    let invoice = state
        .store
        .create_invoice(&new, &[email], &admin.actor())
        .await?
        .ok_or_else(|| ApiError::conflict("an invoice for this period exists"))?;
    state
        .dispatcher
        .wake_queue(&crate::store::lease_queue::BILLING);
    Ok((StatusCode::CREATED, invoice_body(invoice)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInvoiceBody {
    #[serde(default, deserialize_with = "given")]
    due_date: Option<String>,
}

/// Moves an unpaid invoice's due date (a one-off grace period); nothing else changes on an
/// issued invoice.
async fn update_invoice(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
    JsonBody(body): JsonBody<UpdateInvoiceBody>,
) -> ApiResult<Json<Value>> {
    let Some(due) = body.due_date.as_deref() else {
        let invoice = load_invoice(&state, id).await?;
        return Ok(invoice_body(invoice));
    };
    let due_at = date_ms("dueDate", due)?;
    match state
        .store
        .set_invoice_due(id.get(), due_at, &admin.actor())
        .await?
    {
        None => Err(ApiError::not_found(format!("invoice {id} not found"))),
        Some(Ok(invoice)) => Ok(invoice_body(invoice)),
        Some(Err(invoice)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invoice_not_unpaid",
            format!(
                "invoice {} is {}; only an unpaid invoice's due date moves",
                invoice.number, invoice.status
            ),
        )),
    }
}

/// How long the pay route waits for the charge it queued.
const PAY_WAIT: Duration = Duration::from_secs(45);

async fn pay_invoice(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
) -> ApiResult<Json<Value>> {
    let job = match state
        .billing
        .charge_now(id.get(), &Actor::Admin(admin.token_id))
        .await?
    {
        Ok(job) => job,
        Err(ChargeRefusal::NoSuchInvoice) => {
            return Err(ApiError::not_found(format!("invoice {id} not found")));
        }
        Err(ChargeRefusal::NotPayable(i)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invoice_not_payable",
                format!("invoice {} is {}; nothing to charge", i.number, i.status),
            ));
        }
        Err(ChargeRefusal::NoSavedCard(i)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_saved_card",
                format!("the customer of invoice {} has no saved card", i.number),
            ));
        }
    };
    let deadline = Instant::now() + PAY_WAIT;
    loop {
        let current = state
            .store
            .get_billing_job(job.id)
            .await?
            .ok_or_else(|| ApiError::internal("the charge job vanished"))?;
        match current.status.as_str() {
            "done" => {
                let result = current.result.map(|r| r.0).unwrap_or(Value::Null);
                if let Some(code) = result.get("code").and_then(Value::as_str) {
                    let code: &'static str = match code {
                        "authentication_required" => "authentication_required",
                        "expired_card" => "expired_card",
                        _ => "card_declined",
                    };
                    let mut e = ApiError::new(
                        StatusCode::PAYMENT_REQUIRED,
                        code,
                        format!("the charge was declined ({code})"),
                    );
                    if let Some(url) = result.get("payUrl").filter(|u| !u.is_null()) {
                        e = e.with_detail("payUrl", url.clone());
                    }
                    return Err(e);
                }
                let invoice = load_invoice(&state, id).await?;
                return Ok(invoice_body(invoice));
            }
            "failed" => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "payment_gateway_error",
                    "the charge could not be completed; see the invoice's activity",
                ));
            }
            _ if Instant::now() >= deadline => {
                return Err(ApiError::new(
                    StatusCode::ACCEPTED,
                    "charge_pending",
                    "the charge is still in progress; the invoice shows its outcome",
                )
                .with_detail("jobId", current.id));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

const OFFLINE_METHODS: [&str; 3] = ["bank_transfer", "cash", "other"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OfflinePaymentBody {
    amount: i64,
    currency: String,
    method: String,
    #[serde(default)]
    reference: Option<String>,
}

async fn record_offline_payment(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
    JsonBody(body): JsonBody<OfflinePaymentBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.amount <= 0 {
        return Err(ApiError::invalid(
            "amount",
            "invalid_amount",
            "must be a positive amount in minor units",
        ));
    }
    let currency = mpanel_common::Currency::parse(&body.currency)
        .map_err(|e| ApiError::invalid("currency", "invalid_currency", e))?;
    if !OFFLINE_METHODS.contains(&body.method.as_str()) {
        return Err(ApiError::invalid(
            "method",
            "invalid_method",
            format!("must be one of {}", OFFLINE_METHODS.join(", ")),
        ));
    }
    let reference = body
        .reference
        .as_deref()
        .map(|r| text("reference", r, 200))
        .transpose()?;
    let invoice = load_invoice(&state, id).await?;
    if invoice.currency != currency.as_str() {
        return Err(ApiError::unprocessable(
            "currency",
            "currency_mismatch",
            format!("invoice {} is in {}", invoice.number, invoice.currency),
        ));
    }
    if body.amount > invoice.amount_due() {
        return Err(ApiError::unprocessable(
            "amount",
            "overpayment",
            format!(
                "invoice {} has {} left to pay",
                invoice.number,
                invoice.amount_due()
            ),
        ));
    }
    let payment = NewPayment {
        invoice_id: id.get(),
        amount_minor: body.amount,
        currency: currency.as_str().to_owned(),
        provider: "offline".into(),
        provider_ref: format!("offline-{}", uuid::Uuid::new_v4().simple()),
        method: body.method.clone(),
        reference,
        now: now_ms(),
    };
    match state
        .store
        .record_payment(&payment, &admin.actor(), None)
        .await?
    {
        EventEffect::Applied(PaymentOutcome::Recorded {
            invoice,
            payment,
            unsuspends,
        }) => {
            state
                .dispatcher
                .wake_queue(&crate::store::lease_queue::BILLING);
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "payment": {
                        "id": payment.id, "amount": payment.amount_minor, "currency": payment.currency,
                        "method": payment.method, "reference": payment.reference,
                        "createdAt": rfc3339(payment.created_at),
                    },
                    "invoice": InvoiceDto::from(invoice),
                    "unsuspends": unsuspends,
                })),
            ))
        }
        EventEffect::Applied(PaymentOutcome::NotPayable { invoice, reason }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invoice_not_payable",
            format!("invoice {}: {reason}", invoice.number),
        )),
        EventEffect::Applied(PaymentOutcome::NoSuchInvoice) => {
            Err(ApiError::not_found(format!("invoice {id} not found")))
        }
        EventEffect::Applied(PaymentOutcome::AlreadyRecorded(_)) | EventEffect::Duplicate => {
            Err(ApiError::conflict("this payment is already recorded"))
        }
    }
}

async fn void_invoice(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
) -> ApiResult<Json<Value>> {
    match state.store.void_invoice(id.get(), &admin.actor()).await? {
        None => Err(ApiError::not_found(format!("invoice {id} not found"))),
        Some(Ok(invoice)) => Ok(invoice_body(invoice)),
        Some(Err(invoice)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invoice_not_voidable",
            format!(
                "invoice {} is {} with {} paid{}; only an unpaid invoice with nothing paid and no charge in flight can be voided",
                invoice.number, invoice.status, invoice.amount_paid_minor, ""
            ),
        )),
    }
}
