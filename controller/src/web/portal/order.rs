//! Ordering: the plans with their prices, the order form (with sign-up for a new customer),
//! the hand-over to Stripe Checkout through the same `Billing::start_checkout` as
//! `POST /api/checkout/sessions`, and the success page that follows the order live (Server-Sent
//! Events authorised by the Checkout Session id in the address, like the page itself) until
//! its service is active.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use mpanel_common::DomainName;
use mpanel_common::ids::ProductId;
use mpanel_common::status::{BillingCycle, ServiceStatus};
use serde_json::{Value, json};

use super::account::check_new_account;
use super::{Customer, FormState, money, path_id};
use crate::app::AppState;
use crate::billing::BillingError;
use crate::billing::checkout::CheckoutRequest;
use crate::store::billing::Order;
use crate::store::{Product, Service, StoreError};
use crate::web::{Web, form_fields, see_other, with_cookie};

type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map_or("", String::as_str)
}

/// How long one event stream stays open; the browser reconnects after.
const STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);

fn product_view(p: &Product) -> Value {
    let prices: Vec<Value> = p
        .prices
        .iter()
        .map(|price| {
            json!({
                "cycle": price.billing_cycle.as_str(),
                "amount": money(price.amount_minor, &price.currency),
            })
        })
        .collect();
    let tax = (p.tax_rate_bp > 0).then(|| {
        let bp = p.tax_rate_bp;
        if bp % 100 == 0 {
            format!("{}%", bp / 100)
        } else {
            format!("{}.{:02}%", bp / 100, bp % 100)
        }
    });
    json!({
        "id": p.id.get(),
        "name": p.name,
        "disk": if p.disk_mb > 0 { format!("{} MB", p.disk_mb) } else { "Unlimited".to_owned() },
        "databases": p.databases,
        "prices": prices,
        "tax": tax,
    })
}

/// A product on sale (active, with at least one price), or `None`.
async fn sellable(web: &Web, id: i64) -> Result<Option<Product>, Response> {
    match web.app.store.get_product(ProductId::new(id)).await {
        Ok(p) if p.active && !p.prices.is_empty() => Ok(Some(p)),
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(web.failure(&e, "/")),
    }
}

pub(super) async fn home(State(web): State<Web>, headers: HeaderMap) -> Response {
    let customer = match web.customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let products = match web.app.store.list_products().await {
        Ok(products) => products,
        Err(e) => return web.failure(&e, "/"),
    };
    let products: Vec<Value> = products
        .iter()
        .filter(|p| p.active && !p.prices.is_empty())
        .map(product_view)
        .collect();
    web.portal_page(
        &headers,
        customer.as_ref(),
        StatusCode::OK,
        "portal/home.html",
        json!({ "products": products }),
    )
}

pub(super) async fn order_page(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let customer = match web.customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let Some(id) = query.get("product").and_then(|p| path_id(p)) else {
        return web.not_found("/");
    };
    let product = match sellable(&web, id).await {
        Ok(Some(p)) => p,
        Ok(None) => return web.not_found("/"),
        Err(response) => return response,
    };
    web.portal_form(
        &headers,
        customer.as_ref(),
        StatusCode::OK,
        "portal/order.html",
        &FormState::default(),
        json!({ "product": product_view(&product) }),
    )
}

/// Where a refusal of `start_checkout` shows on the form.
fn checkout_refusal(e: &BillingError, form: &mut FormState) -> bool {
    match e {
        BillingError::Invalid { field, message, .. } => {
            let at = match *field {
                "billingCycle" => "cycle",
                "domain" => "domain",
                "email" => "email",
                "name" => "name",
                _ => "form",
            };
            let message = message
                .strip_prefix("domain: ")
                .or_else(|| message.strip_prefix("productId: "))
                .unwrap_or(message);
            form.error(
                at,
                format!("{}.", capitalised(message.trim_end_matches('.'))),
            );
            true
        }
        BillingError::Conflict { code, message } => {
            let at = if *code == "domain_taken" {
                "domain"
            } else {
                "form"
            };
            let message = message.strip_prefix("domain: ").unwrap_or(message);
            form.error(at, format!("{}.", capitalised(message)));
            true
        }
        BillingError::NotConfigured => {
            form.error(
                "form",
                "Card payments are not available right now. Please try again later.",
            );
            true
        }
        BillingError::Stripe(_) => {
            tracing::error!(error = %e, "checkout from the portal failed at Stripe");
            form.error(
                "form",
                "The payment provider could not be reached. Please try again in a moment.",
            );
            true
        }
        BillingError::NotFound { .. } => {
            form.error("form", "This plan is no longer sold.");
            true
        }
        BillingError::Store(_) => false,
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub(super) async fn place_order(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let mut customer = match web.customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    if !web.portal_csrf_ok(&headers, customer.as_ref(), &fields) {
        tracing::warn!(client = %peer.ip(), "order refused: missing or wrong CSRF token");
        return web.portal_forbidden();
    }
    let Some(product_id) = fields.get("product").and_then(|p| path_id(p)) else {
        return web.not_found("/");
    };
    let product = match sellable(&web, product_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return web.not_found("/"),
        Err(response) => return response,
    };
    let mut form = FormState::default();
    form.keep("cycle", field(&fields, "cycle"));
    form.keep("domain", field(&fields, "domain"));
    let cycle = match field(&fields, "cycle").parse::<BillingCycle>() {
        Ok(c) if product.prices.iter().any(|p| p.billing_cycle == c) => Some(c),
        _ => {
            form.error("cycle", "Choose one of the billing cycles listed.");
            None
        }
    };
    let domain = match DomainName::parse(field(&fields, "domain")) {
        Ok(d) => Some(d),
        Err(e) => {
            form.error(
                "domain",
                format!("Enter a domain name such as example.com: {e}."),
            );
            None
        }
    };
    let new_account = if customer.is_none() {
        check_new_account(&fields, &mut form)
    } else {
        None
    };
    let reshow = |web: &Web, customer: Option<&Customer>, form: &FormState| {
        web.portal_form(
            &headers,
            customer,
            StatusCode::BAD_REQUEST,
            "portal/order.html",
            form,
            json!({ "product": product_view(&product) }),
        )
    };
    if let Some(d) = &domain {
        match web.app.store.live_service_for_domain(d.as_str()).await {
            Ok(Some(_)) => form.error("domain", format!("{d} is already hosted here.")),
            Ok(None) => {}
            Err(e) => return web.failure(&e, "/"),
        }
    }
    let (Some(cycle), Some(domain)) = (cycle, domain) else {
        return reshow(&web, customer.as_ref(), &form);
    };
    if !form.is_empty() {
        return reshow(&web, customer.as_ref(), &form);
    }
    if !web.app.checkout_limiter.allow(Some(peer.ip())) {
        form.error(
            "form",
            "Too many orders from your address. Please wait a minute and try again.",
        );
        let mut response = reshow(&web, customer.as_ref(), &form);
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return response;
    }

    // Sign-up at checkout: the account exists (and the customer is signed in) before the
    // payment, so the order is theirs whatever happens at Stripe.
    let mut session_cookie = None;
    if customer.is_none() {
        let Some((name, email, password)) = new_account else {
            return reshow(&web, None, &form);
        };
        let id = match web
            .sign_up(&name, &email, &password, &peer, &mut form)
            .await
        {
            Ok(Some(id)) => id,
            Ok(None) => return reshow(&web, None, &form),
            Err(response) => return response,
        };
        match web
            .start_customer_session(&headers, &peer, id, &email, "/order")
            .await
        {
            Ok((signed_in, cookie)) => {
                customer = Some(signed_in);
                session_cookie = Some(cookie);
            }
            Err(response) => return response,
        }
    }
    let Some(signed_in) = customer.as_ref() else {
        return web.failure(&"no customer after sign-up", "/");
    };
    let req = CheckoutRequest {
        product_id: product.id,
        billing_cycle: cycle,
        domain,
        email: signed_in.session.email.clone(),
        name: signed_in.session.name.clone(),
        currency: None,
    };
    let response = match web.app.billing.start_checkout(&req).await {
        Ok(started) => {
            tracing::info!(
                customer_id = signed_in.customer_id(),
                order_id = started.order_id,
                "order placed from the portal"
            );
            see_other(&started.url)
        }
        Err(e) => {
            if !checkout_refusal(&e, &mut form) {
                return web.failure(&e, "/");
            }
            reshow(&web, Some(signed_in), &form)
        }
    };
    match session_cookie {
        Some(cookie) => with_cookie(response, cookie),
        None => response,
    }
}

fn valid_session_id(id: &str) -> bool {
    id.starts_with("cs_")
        && id.len() <= 255
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The order region's context: the order and its service, in words a customer reads.
fn order_view(order: &Order, service: Option<&Service>) -> Value {
    let status_text = match order.status.as_str() {
        "open" => "waiting for your payment",
        "paid" => "paid; our staff will complete it shortly",
        "fulfilled" => "paid and confirmed",
        "expired" => "expired without payment",
        "failed" => "the payment did not go through",
        other => other,
    };
    json!({
        "order": {
            "id": order.id,
            "domain": order.domain,
            "total": money(order.total_minor, &order.currency),
            "status": order.status,
            "status_text": status_text,
            "failure": match order.status.as_str() {
                "failed" => Some("Nothing was charged. You can place the order again."),
                "expired" => Some("The payment page expired. You can place the order again."),
                _ => None,
            },
        },
        "service": service.map(|s| json!({
            "id": s.id.get(),
            "domain": s.domain,
            "status": s.status.as_str(),
        })),
    })
}

/// Whether the page has nothing more to wait for.
fn settled(order: &Order, service: Option<&Service>) -> bool {
    matches!(order.status.as_str(), "expired" | "failed")
        || service.is_some_and(|s| s.status != ServiceStatus::Pending)
}

/// `GET /api/checkout/success` for a browser: the order, followed live until its service is
/// active. The Checkout Session id in the address is what authorises it.
pub async fn checkout_success_page(
    app: &AppState,
    headers: &HeaderMap,
    session_id: Option<&str>,
) -> Response {
    let mut response = success_page(app, headers, session_id).await;
    page_headers(response.headers_mut());
    response
}

async fn success_page(app: &AppState, headers: &HeaderMap, session_id: Option<&str>) -> Response {
    let web = super::web_for(app);
    let customer = match web.customer(headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let Some(session_id) = session_id.filter(|s| valid_session_id(s)) else {
        return web.not_found("/");
    };
    let (order, service) = match app.billing.checkout_success(session_id).await {
        Ok(found) => found,
        Err(BillingError::NotFound { .. }) => {
            if let Some(response) = invoice_payment_page(&web, session_id).await {
                return response;
            }
            return web.render(
                StatusCode::NOT_FOUND,
                "message.html",
                json!({
                    "title": "No order found",
                    "message": "No order goes with this payment. A paid invoice shows as paid under My invoices once the payment is confirmed.",
                    "link": "/invoices",
                    "link_text": "My invoices",
                }),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "checkout success page failed");
            return web.render(
                StatusCode::BAD_GATEWAY,
                "message.html",
                json!({
                    "title": "We could not check your payment",
                    "message": "Your payment could not be checked just now. Reload this page in a moment; you are not charged twice.",
                    "link": format!("/api/checkout/success?session_id={session_id}"),
                    "link_text": "Reload",
                }),
            );
        }
    };
    let mut ctx = order_view(&order, service.as_ref());
    if !settled(&order, service.as_ref())
        && let Value::Object(map) = &mut ctx
    {
        map.insert(
            "live".into(),
            Value::String(format!("/checkout/{session_id}/events")),
        );
    }
    web.portal_page(
        headers,
        customer.as_ref(),
        StatusCode::OK,
        "portal/checkout.html",
        ctx,
    )
}

/// What the page router's middleware adds to every page, for this page served beside the API.
fn page_headers(headers: &mut HeaderMap) {
    use axum::http::HeaderValue;
    use axum::http::header::{
        CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
        X_FRAME_OPTIONS,
    };
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::web::CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Stripe returns a customer who paid an invoice (pay now, a payment link) to the same address:
/// the session names the invoice, whose page says where the payment stands. `None` when the
/// session is not an invoice's.
async fn invoice_payment_page(web: &Web, session_id: &str) -> Option<Response> {
    let session = web
        .app
        .billing
        .stripe()
        .ok()?
        .get_checkout_session(session_id)
        .await
        .ok()?;
    let invoice_id: i64 = session.metadata.get("invoice_id")?.parse().ok()?;
    let invoice = web.app.store.get_invoice(invoice_id).await.ok()??;
    let paid = session.payment_status == crate::billing::stripe::CheckoutPaymentStatus::Paid;
    let message = match (paid, invoice.status.as_str()) {
        (_, "paid") => format!("Invoice {} is paid. Thank you.", invoice.number),
        (true, _) => format!(
            "Your payment for invoice {} went through; the invoice shows as paid in a moment.",
            invoice.number
        ),
        (false, _) => format!("Invoice {} is not paid yet.", invoice.number),
    };
    Some(web.render(
        StatusCode::OK,
        "message.html",
        json!({
            "title": if paid { "Thank you for your payment" } else { "Payment not completed" },
            "message": message,
            "link": format!("/invoices/{}", invoice.id),
            "link_text": "See the invoice",
        }),
    ))
}

/// The order region of the success page as it stands, or `None` when it cannot be read.
async fn order_region(web: &Web, order_id: i64) -> Option<String> {
    let order = web.app.store.get_order(order_id).await.ok()??;
    let service = match order.service_id {
        Some(id) => Some(web.app.store.get_service(id.into()).await.ok()?),
        None => None,
    };
    web.render_string(
        "portal/partials/order.html",
        order_view(&order, service.as_ref()),
    )
    .ok()
}

/// The success page's live updates: the order region whenever it changes, checked about once
/// a second from the store (Stripe's webhook moves the order, the job runner the service).
pub(super) async fn checkout_events(
    State(web): State<Web>,
    Path(session_id): Path<String>,
) -> Response {
    if !valid_session_id(&session_id) {
        return web.not_found("/");
    }
    let order = match web.app.store.order_by_session(&session_id).await {
        Ok(Some(order)) => order,
        Ok(None) => return web.not_found("/"),
        Err(e) => return web.failure(&e, "/"),
    };
    Sse::new(order_stream(web, order.id))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn order_stream(web: Web, order_id: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    let shutdown = web.app.shutdown.clone();
    let started = Instant::now();
    let state = (web, None::<String>, true);
    futures::stream::unfold(state, move |(web, last, first)| {
        let shutdown = shutdown.clone();
        async move {
            if !first {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            loop {
                if shutdown.is_cancelled() || started.elapsed() > STREAM_LIFETIME {
                    return None;
                }
                let region = order_region(&web, order_id).await;
                match region {
                    Some(html) if last.as_deref() != Some(html.as_str()) => {
                        let mut event = Event::default().data(format!("order\n{html}"));
                        if first {
                            event = event.retry(Duration::from_millis(1000));
                        }
                        return Some((Ok(event), (web, Some(html), false)));
                    }
                    _ => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    })
}
