//! A signed-in customer's services: the list, one service (status, domain, server, control
//! panel link), its passwords shown only after the customer re-enters their account password
//! (each showing logged), and a new hosting password queued as a lifecycle task through the
//! same `Lifecycle::change_password` as `POST /api/services/{id}/change-password`.
//!
//! A service is looked up and then compared with the signed-in customer: another customer's
//! service answers the same 404 as a missing one.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use mpanel_common::Secret;
use mpanel_common::ids::{ServerId, ServiceId};
use mpanel_common::status::ServiceStatus;
use serde_json::{Value, json};

use super::{Customer, FormState, client_ip, day, path_id};
use crate::lifecycle::{Actor, LifecycleError};
use crate::store::{LoginFailure, Page, Service, ServiceFilter, StoreError, now_ms};
use crate::web::{Web, credentials, form_fields, see_other};

type Fields = HashMap<String, String>;

const MIN_HOSTING_PASSWORD: usize = 12;
const MAX_HOSTING_PASSWORD: usize = 128;

/// The customer's own service with this id, or the 404 page.
async fn own_service(web: &Web, customer: &Customer, raw: &str) -> Result<Service, Response> {
    let Some(id) = path_id(raw) else {
        return Err(web.not_found("/services"));
    };
    match web.app.store.get_service(ServiceId::new(id)).await {
        Ok(s) if s.customer_id.get() == customer.customer_id() => Ok(s),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(web.not_found("/services")),
        Err(e) => Err(web.failure(&e, "/services")),
    }
}

async fn product_name(web: &Web, service: &Service) -> String {
    web.app
        .store
        .get_product(service.product_id)
        .await
        .map_or_else(|_| "Hosting".to_owned(), |p| p.name)
}

async fn service_view(web: &Web, s: &Service) -> Value {
    let server = match s.server_id {
        Some(id) => web.app.store.get_server(ServerId::new(id)).await.ok(),
        None => None,
    };
    let cancel_at = web
        .app
        .store
        .service_cancel_at(s.id.get())
        .await
        .ok()
        .flatten();
    let live = matches!(s.status, ServiceStatus::Active | ServiceStatus::Suspended);
    json!({
        "id": s.id.get(),
        "domain": s.domain,
        "status": s.status.as_str(),
        "suspension_reason": s.suspension_reason,
        "product": product_name(web, s).await,
        "cycle": s.billing_cycle.as_str(),
        "server": server.as_ref().map(|srv| srv.hostname.clone()),
        "panel_url": server.as_ref().map(|srv| srv.control_panel_url.clone()).filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        "username": s.username,
        "next_due": s.next_due_at.map(day),
        "has_password": s.password_encrypted.is_some(),
        "can_change_password": live,
        "cancel_at": cancel_at.map(day),
        "can_cancel": live && cancel_at.is_none() && s.next_due_at.is_some(),
    })
}

pub(super) async fn list(State(web): State<Web>, headers: HeaderMap) -> Response {
    let customer = match web.require_customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let filter = ServiceFilter {
        customer_id: Some(customer.customer_id().into()),
        status: None,
        server_id: None,
        page: Page {
            limit: 500,
            after_id: None,
        },
    };
    let services = match web.app.store.list_services(&filter).await {
        Ok(services) => services,
        Err(e) => return web.failure(&e, "/"),
    };
    let products: HashMap<i64, String> = match web.app.store.list_products().await {
        Ok(products) => products.into_iter().map(|p| (p.id.get(), p.name)).collect(),
        Err(e) => return web.failure(&e, "/"),
    };
    let rows: Vec<Value> = services
        .iter()
        .map(|s| {
            json!({
                "id": s.id.get(),
                "domain": s.domain,
                "status": s.status.as_str(),
                "product": products.get(&s.product_id.get()).cloned().unwrap_or_default(),
                "next_due": s.next_due_at.map(day),
            })
        })
        .collect();
    web.portal_page(
        &headers,
        Some(&customer),
        StatusCode::OK,
        "portal/services.html",
        json!({ "services": rows }),
    )
}

async fn service_page(
    web: &Web,
    headers: &HeaderMap,
    customer: &Customer,
    service: &Service,
    status: StatusCode,
    form: &FormState,
    extra: Value,
) -> Response {
    let mut ctx = json!({ "service": service_view(web, service).await });
    if let (Value::Object(map), Value::Object(extra)) = (&mut ctx, extra) {
        map.extend(extra);
    }
    web.portal_form(
        headers,
        Some(customer),
        status,
        "portal/service.html",
        form,
        ctx,
    )
}

pub(super) async fn show(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let customer = match web.require_customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let service = match own_service(&web, &customer, &id).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let notice = match query.get("done").map(String::as_str) {
        Some("password") => Some(
            "The new hosting password is on its way to the server; it takes effect within a minute or two.",
        ),
        Some("cancel") => Some(
            "Your cancellation is recorded. The service stays on until the end of the period you paid for.",
        ),
        _ => None,
    };
    service_page(
        &web,
        &headers,
        &customer,
        &service,
        StatusCode::OK,
        &FormState::default(),
        json!({ "notice": notice }),
    )
    .await
}

/// Checks the customer's account password again, counting a wrong one against the sign-in
/// limit. `Err`: the page to answer with (the form with its error, or 429).
async fn reauthenticate(
    web: &Web,
    headers: &HeaderMap,
    peer: &SocketAddr,
    customer: &Customer,
    service: &Service,
    password: &str,
) -> Result<(), Response> {
    let mut form = FormState::default();
    if password.is_empty() {
        form.error("password", "Enter your account password.");
        return Err(service_page(
            web,
            headers,
            customer,
            service,
            StatusCode::BAD_REQUEST,
            &form,
            json!({}),
        )
        .await);
    }
    let settings = &web.app.config.admin_login;
    let window_ms = i64::from(settings.window_secs) * 1000;
    let max = i64::from(settings.max_failures);
    let email_key = format!("email:{}", customer.session.email.to_lowercase());
    let now = now_ms();
    let recent = web
        .app
        .store
        .recent_customer_login_failures(&email_key, now - window_ms, max)
        .await
        .map_err(|e| web.failure(&e, "/services"))?;
    if recent.len() as i64 >= max {
        let secs = recent
            .last()
            .map_or(60, |oldest| (oldest + window_ms - now + 999) / 1000);
        form.error("password", "Too many wrong passwords. Try again later.");
        let mut response = service_page(
            web,
            headers,
            customer,
            service,
            StatusCode::TOO_MANY_REQUESTS,
            &form,
            json!({}),
        )
        .await;
        if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return Err(response);
    }
    let hash = match web.app.store.customer_account(customer.customer_id()).await {
        Ok(found) => found.map(|a| a.password_hash),
        Err(e) => return Err(web.failure(&e, "/services")),
    };
    if credentials::verify_password_blocking(password.to_owned(), hash).await {
        return Ok(());
    }
    let failure = LoginFailure {
        keys: vec![email_key],
        user_id: Some(customer.customer_id()),
        email: customer.session.email.to_lowercase(),
        ip_address: client_ip(peer),
        forget_before: now - window_ms,
    };
    if let Err(e) = web.app.store.record_customer_login_failure(&failure).await {
        return Err(web.failure(&e, "/services"));
    }
    form.error("password", "That is not your account password.");
    Err(service_page(
        web,
        headers,
        customer,
        service,
        StatusCode::UNAUTHORIZED,
        &form,
        json!({}),
    )
    .await)
}

pub(super) async fn reveal(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let customer = match web.customer_form(&headers, &fields).await {
        Ok(customer) => customer,
        Err(response) => return response,
    };
    let service = match own_service(&web, &customer, &id).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let password = fields.get("password").map_or("", String::as_str);
    if let Err(response) =
        reauthenticate(&web, &headers, &peer, &customer, &service, password).await
    {
        return response;
    }
    let Some(sealed) = service.password_encrypted.as_deref() else {
        let mut form = FormState::default();
        form.error("form", "This account has no password yet.");
        return service_page(
            &web,
            &headers,
            &customer,
            &service,
            StatusCode::CONFLICT,
            &form,
            json!({}),
        )
        .await;
    };
    let cipher = &web.app.cipher;
    let opened = (
        cipher.open_string(sealed),
        service
            .mailbox_password_encrypted
            .as_deref()
            .map(|s| cipher.open_string(s))
            .transpose(),
        service
            .database_password_encrypted
            .as_deref()
            .map(|s| cipher.open_string(s))
            .transpose(),
    );
    let (Ok(password), Ok(mailbox), Ok(database)) = opened else {
        return web.failure(
            &"a service secret does not open with the current keys",
            "/services",
        );
    };
    if let Err(e) = web
        .app
        .store
        .record_credentials_revealed(customer.customer_id(), service.id.get(), &client_ip(&peer))
        .await
    {
        return web.failure(&e, "/services");
    }
    tracing::info!(customer_id = customer.customer_id(), service_id = %service.id, "service credentials shown to their customer");
    service_page(
        &web,
        &headers,
        &customer,
        &service,
        StatusCode::OK,
        &FormState::default(),
        json!({ "secrets": { "password": password, "mailbox": mailbox, "database": database } }),
    )
    .await
}

pub(super) async fn change_password(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let customer = match web.customer_form(&headers, &fields).await {
        Ok(customer) => customer,
        Err(response) => return response,
    };
    let service = match own_service(&web, &customer, &id).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let password = fields.get("new_password").map_or("", String::as_str);
    let chars = password.chars().count();
    let mut form = FormState::default();
    if !(MIN_HOSTING_PASSWORD..=MAX_HOSTING_PASSWORD).contains(&chars)
        || password.chars().any(char::is_control)
    {
        form.error(
            "new_password",
            format!("Use {MIN_HOSTING_PASSWORD} to {MAX_HOSTING_PASSWORD} characters, without control characters."),
        );
        return service_page(
            &web,
            &headers,
            &customer,
            &service,
            StatusCode::BAD_REQUEST,
            &form,
            json!({}),
        )
        .await;
    }
    let secret = Secret::new(password.to_owned());
    match web
        .app
        .lifecycle()
        .change_password(
            &Actor::Customer(customer.customer_id().into()),
            service.id,
            Some(&secret),
            &web.app.cipher,
        )
        .await
    {
        Ok(task) => {
            tracing::info!(customer_id = customer.customer_id(), service_id = %service.id, task_id = %task.id, "hosting password change queued by its customer");
            see_other(&format!("/services/{}?done=password", service.id.get()))
        }
        Err(LifecycleError::TaskOpen { .. }) => {
            form.error(
                "new_password",
                "Another change to this service is under way. Try again in a few minutes.",
            );
            service_page(
                &web,
                &headers,
                &customer,
                &service,
                StatusCode::CONFLICT,
                &form,
                json!({}),
            )
            .await
        }
        Err(LifecycleError::IllegalMove { status, .. }) => {
            form.error(
                "new_password",
                format!("The password of a {status} service cannot be changed."),
            );
            service_page(
                &web,
                &headers,
                &customer,
                &service,
                StatusCode::CONFLICT,
                &form,
                json!({}),
            )
            .await
        }
        Err(e) => web.failure(&e, "/services"),
    }
}

/// Cancellation at the end of the paid period: the service is not renewed, and the
/// `recurring-billing` job terminates it on the date. An invoice already issued for the period
/// that will not be served is voided, so it is never charged.
pub(super) async fn cancel(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let customer = match web.customer_form(&headers, &fields).await {
        Ok(customer) => customer,
        Err(response) => return response,
    };
    let service = match own_service(&web, &customer, &id).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let mut form = FormState::default();
    if fields.get("confirm").map(String::as_str) != Some("yes") {
        form.error("confirm", "Tick the box to confirm the cancellation.");
        return service_page(
            &web,
            &headers,
            &customer,
            &service,
            StatusCode::BAD_REQUEST,
            &form,
            json!({}),
        )
        .await;
    }
    let store = &web.app.store;
    let cancel_at = match store
        .request_service_cancellation(customer.customer_id(), service.id.get())
        .await
    {
        Ok(Some(at)) => at,
        Ok(None) => {
            form.error("confirm", "This service cannot be cancelled now: it is not running, not billed, or already cancelled.");
            return service_page(
                &web,
                &headers,
                &customer,
                &service,
                StatusCode::CONFLICT,
                &form,
                json!({}),
            )
            .await;
        }
        Err(e) => return web.failure(&e, "/services"),
    };
    let filter = crate::store::billing::InvoiceFilter {
        customer_id: Some(customer.customer_id()),
        service_id: Some(service.id.get()),
        status: Some("unpaid".to_owned()),
        page: Page::default(),
    };
    let actor = Actor::Customer(customer.customer_id().into()).to_string();
    match store.list_invoices(&filter).await {
        Ok(invoices) => {
            for invoice in invoices
                .iter()
                .filter(|i| i.period_start == Some(cancel_at))
            {
                if let Err(e) = store.void_invoice(invoice.id, &actor).await {
                    return web.failure(&e, "/services");
                }
            }
        }
        Err(e) => return web.failure(&e, "/services"),
    }
    tracing::info!(customer_id = customer.customer_id(), service_id = %service.id, cancel_at, "service cancellation requested by its customer");
    see_other(&format!("/services/{}?done=cancel", service.id.get()))
}
