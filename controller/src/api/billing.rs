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

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, request::Parts};
use mpanel_common::ids::{InvoiceId, ProductId};
use mpanel_common::status::BillingCycle;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::given;
use super::extract::{JsonBody, PathId};
use super::fields::{date, date_ms, domain, email, rfc3339, text};
use super::listing::{PageQuery, Params, finish};
use super::openapi::{Conflict, ErrorBody, NotFound, Unprocessable};
use crate::app::AppState;
use crate::billing::checkout::CheckoutRequest;
use crate::billing::signature::{self, WebhookSecrets};
use crate::billing::{BillingError, StripeError};
use crate::lifecycle::Actor;
use crate::store::billing::{
    ChargeRefusal, EventEffect, Invoice, InvoiceFilter, InvoiceLine, NewBillingJob, NewInvoice,
    NewPayment, Payment, PaymentOutcome,
};
use crate::store::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(create_checkout_session))
        .routes(routes!(checkout_success))
        .routes(routes!(stripe_webhook))
        .routes(routes!(list_invoices, create_invoice))
        .routes(routes!(get_invoice, update_invoice))
        .routes(routes!(record_offline_payment))
        .routes(routes!(void_invoice))
}

/// Routes that wait for a job (a charge) beyond the router's default timeout.
pub fn waiting_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(pay_invoice))
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
    pub(crate) fn allow(&self, ip: Option<IpAddr>) -> bool {
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

/// A customer's order, paid through Stripe Checkout.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CheckoutRequest)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckoutBody {
    #[schema(minimum = 1)]
    product_id: i64,
    /// monthly, quarterly or annually.
    #[schema(pattern = "^(monthly|quarterly|annually)$")]
    billing_cycle: String,
    #[schema(example = "example.com")]
    domain: String,
    /// The customer's address; an account with it is reused.
    #[schema(max_length = 254, example = "ada@example.com")]
    email: String,
    /// 1 to 200 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    /// A three-letter currency code the product has a price in; its first price's when
    /// absent.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z]{3}$", example = "EUR")]
    currency: Option<String>,
}

/// The Checkout Session to send the customer to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CheckoutStarted {
    /// Stripe's payment page.
    url: String,
    session_id: String,
    order_id: i64,
}

/// Opens a Stripe Checkout Session for an order: no token, at most 10 a minute per address.
///
/// 503 (`payments_unavailable`) when payments are not configured on this controller.
#[utoipa::path(
    post,
    path = "/api/checkout/sessions",
    tag = "billing",
    security(()),
    request_body = CheckoutBody,
    responses(
        (status = 201, description = "The order is open; send the customer to `url`.", body = CheckoutStarted),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 429, description = "More than 10 checkouts a minute from this address (`rate_limited`).", body = ErrorBody),
        (status = 502, description = "Stripe could not be reached or refused the request (`payment_gateway_error`).", body = ErrorBody),
    )
)]
async fn create_checkout_session(
    State(state): State<AppState>,
    parts: Parts,
    JsonBody(body): JsonBody<CheckoutBody>,
) -> ApiResult<(StatusCode, Json<CheckoutStarted>)> {
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
        Json(CheckoutStarted {
            url: started.url,
            session_id: started.session_id,
            order_id: started.order_id,
        }),
    ))
}

/// Where a checkout stands, for the success page.
#[derive(Debug, Serialize, ToSchema)]
struct CheckoutStatus {
    order: CheckoutOrder,
    /// The service the order made; null until it is fulfilled.
    service: Option<CheckoutService>,
}

/// The order behind a Checkout Session.
#[derive(Debug, Serialize, ToSchema)]
struct CheckoutOrder {
    id: i64,
    /// open, paid (held for an admin), fulfilled, expired or failed.
    status: String,
    domain: String,
    /// In minor units of `currency`.
    total: i64,
    currency: String,
    /// Why the order expired, failed or is held.
    failure: Option<String>,
}

/// The service a fulfilled order made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CheckoutService {
    id: i64,
    domain: String,
    /// pending, active, suspended, terminated or cancelled.
    #[schema(value_type = String)]
    status: &'static str,
    /// `YYYY-MM-DD`; null when the service is not billed.
    next_due_date: Option<String>,
}

/// The page Stripe sends the customer back to: fulfils a paid order and says where it stands.
///
/// Public. When the order is still open it asks Stripe about the session and, if it is paid,
/// runs the same fulfilment as the webhook; 503 (`payments_unavailable`) then when payments are
/// not configured on this controller.
#[utoipa::path(
    get,
    path = "/api/checkout/success",
    tag = "billing",
    security(()),
    params(
        ("session_id" = String, Query, description = "The Checkout Session's id, as Stripe puts it in the return address.", pattern = "^cs_[A-Za-z0-9_]{0,252}$"),
    ),
    responses(
        (status = 200, description = "The order, and its service once fulfilled: JSON, or the portal's page that follows the order live when the request's `Accept` ranks `text/html` first (a browser's does).",
            content(
                (CheckoutStatus = "application/json"),
                (String = "text/html"),
            )),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 502, description = "Stripe could not be reached (`payment_gateway_error`).", body = ErrorBody),
    )
)]
async fn checkout_success(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if crate::web::portal::prefers_html(&headers) {
        let session_id = query
            .as_ref()
            .ok()
            .and_then(|Query(q)| q.get("session_id").cloned());
        return Ok(crate::web::portal::checkout_success_page(
            &state,
            &headers,
            session_id.as_deref(),
        )
        .await);
    }
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
    Ok(Json(CheckoutStatus {
        order: CheckoutOrder {
            id: order.id,
            status: order.status,
            domain: order.domain,
            total: order.total_minor,
            currency: order.currency,
            failure: order.failure,
        },
        service: service.map(|s| CheckoutService {
            id: s.id.get(),
            domain: s.domain,
            status: s.status.as_str(),
            next_due_date: s.next_due_at.map(date),
        }),
    })
    .into_response())
}

// ---- webhook ----------------------------------------------------------------------------------

/// A Stripe event as Stripe sends it; only `id`, `type` and `data.object` are read, and
/// `data.object` is read as the type `type` names.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
struct StripeEvent {
    #[schema(example = "evt_1NG8Du2eZvKYlo2CUI79vXWy")]
    id: String,
    #[serde(rename = "type")]
    #[schema(example = "checkout.session.completed")]
    event_type: String,
    data: StripeEventData,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
struct StripeEventData {
    #[schema(value_type = Object)]
    object: Value,
}

/// The webhook's answer.
#[derive(Debug, Serialize, ToSchema)]
struct WebhookReceived {
    /// Always true.
    received: bool,
}

/// Stripe's webhook: applies one signed event, once.
///
/// Public: the `Stripe-Signature` header over the exact body is checked before anything else.
/// Duplicates and replays answer 200 and change nothing. 503 (`webhooks_unavailable`) when no
/// webhook secret is configured.
#[utoipa::path(
    post,
    path = "/api/webhooks/stripe",
    tag = "billing",
    security(()),
    params(
        ("Stripe-Signature" = String, Header, description = "Stripe's signature of the body: `t=<unix time>,v1=<hex HMAC-SHA256>`; at most five minutes old."),
    ),
    request_body(content = StripeEvent, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied, or a duplicate already applied.", body = WebhookReceived),
        (
            status = 400,
            description = "The signature is missing, malformed, does not match or is too old (`field` is `Stripe-Signature`), \
                or the event cannot be read (`invalid_event`, `field` is `body` or `data.object`). Nothing was written.",
            body = ErrorBody
        ),
        (status = 409, response = Conflict),
    )
)]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookReceived>> {
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
    Ok(Json(WebhookReceived { received: true }))
}

// ---- invoices ---------------------------------------------------------------------------------

/// An invoice. Amounts are integers in minor units of `currency`; times are RFC 3339, period
/// bounds `YYYY-MM-DD`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Invoice)]
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
    /// The tax rate in basis points (1 % = 100).
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
    lines: Vec<LineDto>,
    charge_attempts: i32,
    /// When the saved card is charged next; null when no charge is planned.
    next_charge_at: Option<String>,
    last_charge_error: Option<String>,
    /// A payment page for the customer, when a charge needs them to act.
    pay_url: Option<String>,
}

/// One line of an invoice.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InvoiceLine)]
struct LineDto {
    description: String,
    /// In minor units.
    amount: i64,
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
            lines: i
                .lines
                .0
                .into_iter()
                .map(|l| LineDto {
                    description: l.description,
                    amount: l.amount,
                })
                .collect(),
            charge_attempts: i.charge_attempts,
            next_charge_at: i.next_charge_at.map(rfc3339),
            last_charge_error: i.last_charge_error,
            pay_url: i.pay_url,
        }
    }
}

/// An invoice as the API shows it.
fn invoice_body(invoice: Invoice) -> Json<InvoiceDto> {
    Json(InvoiceDto::from(invoice))
}

/// The `{id}` of an invoice route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct InvoicePath {
    /// The invoice's id.
    #[param(minimum = 1)]
    id: i64,
}

/// A page of invoices.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct InvoicePage {
    invoices: Vec<InvoiceDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

const INVOICE_STATUSES: [&str; 4] = ["unpaid", "paid", "void", "refunded"];

/// The invoices, filtered by customer, service or status.
#[utoipa::path(
    get,
    path = "/api/invoices",
    tag = "billing",
    params(
        ("customerId" = Option<i64>, Query, description = "Only this customer's invoices.", minimum = 1),
        ("serviceId" = Option<i64>, Query, description = "Only this service's invoices.", minimum = 1),
        ("status" = Option<String>, Query, description = "unpaid, paid (partially refunded ones included), void or refunded.", pattern = "^(unpaid|paid|void|refunded)$"),
        PageQuery,
    ),
    responses((status = 200, description = "A page of invoices.", body = InvoicePage))
)]
async fn list_invoices(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<InvoicePage>> {
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
    Ok(Json(InvoicePage {
        invoices,
        next_cursor: next,
    }))
}

async fn load_invoice(state: &AppState, id: InvoiceId) -> ApiResult<Invoice> {
    state
        .store
        .get_invoice(id.get())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("invoice {id} not found")))
}

/// An invoice with its payments.
#[derive(Debug, Serialize, ToSchema)]
struct InvoiceWithPayments {
    #[serde(flatten)]
    invoice: InvoiceDto,
    payments: Vec<PaymentDto>,
}

/// A payment of an invoice, by card or offline.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Payment)]
#[serde(rename_all = "camelCase")]
struct PaymentDto {
    id: i64,
    /// In minor units.
    amount: i64,
    currency: String,
    /// card, bank_transfer, cash or other.
    method: String,
    /// stripe or offline.
    provider: String,
    /// The admin's reference of an offline payment, else the provider's.
    reference: String,
    /// How much of it was refunded, in minor units.
    refunded: i64,
    /// succeeded or refunded.
    status: String,
    created_at: String,
}

impl From<Payment> for PaymentDto {
    fn from(p: Payment) -> Self {
        PaymentDto {
            id: p.id,
            amount: p.amount_minor,
            currency: p.currency,
            method: p.method,
            provider: p.provider,
            reference: p.reference.unwrap_or(p.provider_ref),
            refunded: p.refunded_minor,
            status: p.status,
            created_at: rfc3339(p.created_at),
        }
    }
}

/// One invoice, with its payments.
#[utoipa::path(
    get,
    path = "/api/invoices/{id}",
    tag = "billing",
    params(InvoicePath),
    responses(
        (status = 200, description = "The invoice and its payments.", body = InvoiceWithPayments),
        (status = 404, response = NotFound),
    )
)]
async fn get_invoice(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
) -> ApiResult<Json<InvoiceWithPayments>> {
    let invoice = load_invoice(&state, id).await?;
    let payments = state
        .store
        .invoice_payments(id.get())
        .await?
        .into_iter()
        .map(PaymentDto::from)
        .collect();
    Ok(Json(InvoiceWithPayments {
        invoice: InvoiceDto::from(invoice),
        payments,
    }))
}

/// One line of a new invoice.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NewInvoiceLine)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LineIn {
    /// 1 to 500 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    description: String,
    /// In minor units; the lines' sum is at most 10^12.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    amount: i64,
}

/// A one-off invoice.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NewInvoice)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInvoiceBody {
    #[schema(minimum = 1)]
    customer_id: i64,
    /// A service of the same customer the invoice is for.
    #[serde(default)]
    #[schema(minimum = 1)]
    service_id: Option<i64>,
    /// A three-letter currency code.
    #[schema(pattern = "^[A-Za-z]{3}$", example = "EUR")]
    currency: String,
    #[schema(min_items = 1, max_items = 100)]
    lines: Vec<LineIn>,
    /// The tax rate in basis points (1 % = 100); 0 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000)]
    tax_rate_bp: Option<i64>,
    /// `YYYY-MM-DD`; today when absent.
    #[serde(default)]
    #[schema(format = Date, example = "2027-01-31")]
    due_date: Option<String>,
}

/// Writes a one-off invoice (a setup fee, extra work).
///
/// Numbered, emailed with its PDF, and charged to the saved card on its due date like a
/// renewal.
#[utoipa::path(
    post,
    path = "/api/invoices",
    tag = "billing",
    request_body = CreateInvoiceBody,
    responses(
        (status = 201, description = "The invoice, issued.", body = InvoiceDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
async fn create_invoice(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateInvoiceBody>,
) -> ApiResult<(StatusCode, Json<InvoiceDto>)> {
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

/// What changes on an issued invoice: only its due date.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdateInvoice)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateInvoiceBody {
    /// `YYYY-MM-DD`; left out, nothing changes.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, format = Date, example = "2027-01-31")]
    due_date: Option<String>,
}

/// Moves an unpaid invoice's due date (a one-off grace period).
///
/// Nothing else changes on an issued invoice; a body without `dueDate` answers the invoice
/// as it is.
#[utoipa::path(
    patch,
    path = "/api/invoices/{id}",
    tag = "billing",
    params(InvoicePath),
    request_body = UpdateInvoiceBody,
    responses(
        (status = 200, description = "The invoice as it is now.", body = InvoiceDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn update_invoice(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
    JsonBody(body): JsonBody<UpdateInvoiceBody>,
) -> ApiResult<Json<InvoiceDto>> {
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

/// The 202 of a charge still in progress when the pay route stops waiting: the error body's
/// shape, with the billing job's id.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
struct ChargePending {
    error: ChargePendingError,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ChargePendingError {
    /// Always `charge_pending`.
    code: String,
    message: String,
    /// Always null.
    field: Option<String>,
    /// The billing job that runs the charge (a number, unlike provisioning job ids).
    job_id: i64,
}

/// The 402 of a declined charge: the error body, with a payment page when the customer can
/// settle it there.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
struct ChargeDeclined {
    error: ChargeDeclinedError,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ChargeDeclinedError {
    /// `card_declined`, `expired_card` or `authentication_required`.
    code: String,
    message: String,
    /// Always null.
    field: Option<String>,
    /// Where the customer confirms the payment; absent when there is no such page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pay_url: Option<String>,
}

/// Charges the customer's saved card for the invoice now, waiting up to 45 s for the outcome.
///
/// 503 (`payments_unavailable`) when payments are not configured on this controller.
#[utoipa::path(
    post,
    path = "/api/invoices/{id}/pay",
    tag = "billing",
    params(InvoicePath),
    responses(
        (
            status = 200,
            description = "The charge went through, or the invoice was settled or voided meanwhile: the invoice as it is now.",
            body = InvoiceDto
        ),
        (
            status = 202,
            description = "The charge is still in progress after 45 s; the invoice shows its outcome.",
            body = ChargePending
        ),
        (status = 402, description = "The card was declined or needs the customer to authenticate.", body = ChargeDeclined),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (
            status = 502,
            description = "The charge could not be completed (`payment_gateway_error`); see the invoice's activity.",
            body = ErrorBody
        ),
    )
)]
async fn pay_invoice(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
) -> ApiResult<Json<InvoiceDto>> {
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

/// A payment received outside Stripe.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OfflinePayment)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OfflinePaymentBody {
    /// In minor units; at most what is left to pay.
    #[schema(minimum = 1)]
    amount: i64,
    /// The invoice's currency.
    #[schema(pattern = "^[A-Za-z]{3}$", example = "EUR")]
    currency: String,
    /// bank_transfer, cash or other.
    #[schema(pattern = "^(bank_transfer|cash|other)$")]
    method: String,
    /// The admin's reference (a bank transfer's id): 1 to 200 characters, no control
    /// characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    reference: Option<String>,
}

/// The payment just recorded.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OfflinePaymentRecorded)]
#[serde(rename_all = "camelCase")]
struct RecordedPayment {
    id: i64,
    /// In minor units.
    amount: i64,
    currency: String,
    method: String,
    reference: Option<String>,
    created_at: String,
}

/// A recorded offline payment and the invoice it paid.
#[derive(Debug, Serialize, ToSchema)]
struct PaymentRecorded {
    payment: RecordedPayment,
    invoice: InvoiceDto,
    /// The service suspended for non-payment that this payment frees (its unsuspension is
    /// queued), if any.
    unsuspends: Option<i64>,
}

/// Records a payment received outside Stripe (bank transfer, cash).
#[utoipa::path(
    post,
    path = "/api/invoices/{id}/payments",
    tag = "billing",
    params(InvoicePath),
    request_body = OfflinePaymentBody,
    responses(
        (status = 201, description = "Recorded.", body = PaymentRecorded),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
async fn record_offline_payment(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
    JsonBody(body): JsonBody<OfflinePaymentBody>,
) -> ApiResult<(StatusCode, Json<PaymentRecorded>)> {
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
                Json(PaymentRecorded {
                    payment: RecordedPayment {
                        id: payment.id,
                        amount: payment.amount_minor,
                        currency: payment.currency,
                        method: payment.method,
                        reference: payment.reference,
                        created_at: rfc3339(payment.created_at),
                    },
                    invoice: InvoiceDto::from(invoice),
                    unsuspends,
                }),
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

/// Voids an unpaid invoice with nothing paid and no charge in flight.
#[utoipa::path(
    post,
    path = "/api/invoices/{id}/void",
    tag = "billing",
    params(InvoicePath),
    responses(
        (status = 200, description = "The invoice, void.", body = InvoiceDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn void_invoice(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<InvoiceId>,
) -> ApiResult<Json<InvoiceDto>> {
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
