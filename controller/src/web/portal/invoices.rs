//! A signed-in customer's invoices: the list with the saved card (brand and last four, as
//! billing keeps it), one invoice as a page or as its PDF (drawn by `billing::pdf` from the
//! same document the invoice emails attach), and paying one now through a Stripe Checkout
//! Session (`Billing::invoice_checkout`, which also keeps the card paid with for renewals).
//!
//! Another customer's invoice answers the same 404 as a missing one.

use std::collections::HashMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Customer, FormState, day, money, path_id};
use crate::billing::BillingError;
use crate::billing::notices::Notices;
use crate::billing::pdf::render_invoice_pdf;
use crate::crypto::new_token;
use crate::store::billing::{Invoice, InvoiceFilter};
use crate::store::{Page, StoreError};
use crate::web::{Web, form_fields, see_other};

type Fields = HashMap<String, String>;

/// The customer's own invoice with this id, or the 404 page.
async fn own_invoice(web: &Web, customer: &Customer, id: Option<i64>) -> Result<Invoice, Response> {
    let Some(id) = id else {
        return Err(web.not_found("/invoices"));
    };
    match web.app.store.get_invoice(id).await {
        Ok(Some(i)) if i.customer_id == customer.customer_id() => Ok(i),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(web.not_found("/invoices")),
        Err(e) => Err(web.failure(&e, "/invoices")),
    }
}

fn payable(invoice: &Invoice) -> bool {
    invoice.status == "unpaid" && invoice.amount_due() > 0
}

fn invoice_view(i: &Invoice) -> Value {
    let tax_label = (i.tax_rate_bp > 0).then(|| {
        let bp = i.tax_rate_bp;
        if bp % 100 == 0 {
            format!("Tax {}%", bp / 100)
        } else {
            format!("Tax {}.{:02}%", bp / 100, bp % 100)
        }
    });
    let lines: Vec<Value> = i
        .lines
        .0
        .iter()
        .map(|l| json!({ "description": l.description, "amount": money(l.amount, &i.currency) }))
        .collect();
    json!({
        "id": i.id,
        "number": i.number,
        "status": i.status,
        "issued": day(i.issued_at),
        "due": day(i.due_at),
        "paid": i.paid_at.map(day),
        "period": match (i.period_start, i.period_end) {
            (Some(start), Some(end)) => Some(format!("{} to {}", day(start), day(end))),
            _ => None,
        },
        "lines": lines,
        "subtotal": money(i.subtotal_minor, &i.currency),
        "tax": money(i.tax_minor, &i.currency),
        "tax_label": tax_label,
        "total": money(i.amount_minor, &i.currency),
        "amount_paid": money(i.amount_paid_minor, &i.currency),
        "amount_due": money(i.amount_due(), &i.currency),
        "payable": payable(i),
    })
}

pub(super) async fn list(State(web): State<Web>, headers: HeaderMap) -> Response {
    let customer = match web.require_customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let filter = InvoiceFilter {
        customer_id: Some(customer.customer_id()),
        service_id: None,
        status: None,
        page: Page {
            limit: 500,
            after_id: None,
        },
    };
    let invoices = match web.app.store.list_invoices(&filter).await {
        Ok(invoices) => invoices,
        Err(e) => return web.failure(&e, "/"),
    };
    let card = match web.app.store.customer_card(customer.customer_id()).await {
        Ok(card) => card.and_then(|(brand, last4)| {
            Some(json!({
                "brand": capitalised(brand.as_deref().unwrap_or("card")),
                "last4": last4?,
            }))
        }),
        Err(e) => return web.failure(&e, "/"),
    };
    let rows: Vec<Value> = invoices
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "number": i.number,
                "status": i.status,
                "issued": day(i.issued_at),
                "due": day(i.due_at),
                "total": money(i.amount_minor, &i.currency),
            })
        })
        .collect();
    web.portal_page(
        &headers,
        Some(&customer),
        StatusCode::OK,
        "portal/invoices.html",
        json!({ "invoices": rows, "card": card }),
    )
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `/invoices/{id}` (the page) and `/invoices/{id}.pdf` (the PDF).
pub(super) async fn show(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let customer = match web.require_customer(&headers).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let (id, pdf) = match raw.strip_suffix(".pdf") {
        Some(id) => (path_id(id), true),
        None => (path_id(&raw), false),
    };
    let invoice = match own_invoice(&web, &customer, id).await {
        Ok(i) => i,
        Err(response) => return response,
    };
    if pdf {
        return invoice_pdf(&web, &customer, &invoice).await;
    }
    invoice_page(&web, &headers, &customer, &invoice, StatusCode::OK, None)
}

fn invoice_page(
    web: &Web,
    headers: &HeaderMap,
    customer: &Customer,
    invoice: &Invoice,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    web.portal_form(
        headers,
        Some(customer),
        status,
        "portal/invoice.html",
        &FormState::default(),
        json!({ "invoice": invoice_view(invoice), "notice": notice }),
    )
}

async fn invoice_pdf(web: &Web, customer: &Customer, invoice: &Invoice) -> Response {
    let owner = match web
        .app
        .store
        .get_customer(customer.customer_id().into())
        .await
    {
        Ok(c) => c,
        Err(e) => return web.failure(&e, "/invoices"),
    };
    let notices = Notices {
        store: web.app.store.clone(),
        cipher: web.app.cipher.clone(),
        config: web.app.config.clone(),
        dispatcher: web.app.dispatcher.clone(),
    };
    let document = notices.document(invoice, &owner);
    let bytes = match render_invoice_pdf(&document) {
        Ok(bytes) => bytes,
        Err(e) => return web.failure(&e, "/invoices"),
    };
    let disposition =
        HeaderValue::from_str(&format!("inline; filename=\"{}\"", document.file_name()))
            .unwrap_or_else(|_| HeaderValue::from_static("inline"));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/pdf")),
            (CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

pub(super) async fn pay(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let customer = match web.customer_form(&headers, &fields).await {
        Ok(customer) => customer,
        Err(response) => return response,
    };
    let invoice = match own_invoice(&web, &customer, path_id(&raw)).await {
        Ok(i) => i,
        Err(response) => return response,
    };
    if !payable(&invoice) {
        return invoice_page(
            &web,
            &headers,
            &customer,
            &invoice,
            StatusCode::CONFLICT,
            Some("This invoice has nothing left to pay."),
        );
    }
    let key = match new_token("") {
        Ok(nonce) => format!("portal-invoice-{}-{}", invoice.id, &nonce[..16]),
        Err(e) => return web.failure(&e, "/invoices"),
    };
    match web.app.billing.invoice_checkout(&invoice, &key).await {
        Ok(url) if !url.is_empty() => {
            tracing::info!(
                customer_id = customer.customer_id(),
                invoice_id = invoice.id,
                "invoice payment started from the portal"
            );
            see_other(&url)
        }
        Ok(_) => web.failure(
            &"Stripe answered a Checkout Session without a URL",
            "/invoices",
        ),
        Err(BillingError::Invalid {
            code: "no_stripe_customer",
            ..
        }) => invoice_page(
            &web,
            &headers,
            &customer,
            &invoice,
            StatusCode::CONFLICT,
            Some(
                "Paying by card online is not set up for your account yet; please contact us to pay this invoice.",
            ),
        ),
        Err(BillingError::NotConfigured | BillingError::Stripe(_)) => invoice_page(
            &web,
            &headers,
            &customer,
            &invoice,
            StatusCode::BAD_GATEWAY,
            Some("Card payments are not available right now. Please try again in a moment."),
        ),
        Err(e) => web.failure(&e, "/invoices"),
    }
}
