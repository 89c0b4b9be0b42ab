//! `POST /v1/checkout/sessions` (mode `payment` with `price_data` line items),
//! `GET /v1/checkout/sessions/:id`, `POST /v1/checkout/sessions/:id/expire`,
//! `GET /v1/checkout/sessions/:id/line_items`.
//!
//! As in Stripe since 2022-08-01 no PaymentIntent exists until the customer pays, and
//! `success_url` is kept as given: Stripe fills in `{CHECKOUT_SESSION_ID}` only when it
//! redirects the customer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::Value;

use super::{currency, email, list_page};
use crate::Double;
use crate::error::ApiError;
use crate::form::{Form, Params};
use crate::ids::{new_id, now};
use crate::model::{CheckoutSession, LineItem, SessionStatus};
use crate::store::Origin;

const PARAMS: &[&str] = &[
    "mode",
    "line_items",
    "customer",
    "customer_email",
    "customer_creation",
    "success_url",
    "cancel_url",
    "metadata",
    "client_reference_id",
    "payment_intent_data",
    "expires_at",
    "payment_method_types",
];

/// Stripe's bounds on `expires_at`: 30 minutes to 24 hours after creation.
const MIN_EXPIRY_SECS: i64 = 30 * 60;
const MAX_EXPIRY_SECS: i64 = 24 * 60 * 60;

fn url(params: &Params<'_>, key: &str) -> Result<Option<String>, ApiError> {
    let Some(url) = params.text(key)? else {
        return Ok(None);
    };
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(Some(url))
    } else {
        Err(ApiError::invalid(
            "url_invalid",
            &params.name(key),
            "Not a valid URL".to_owned(),
        ))
    }
}

fn line_item(item: &Params<'_>) -> Result<LineItem, ApiError> {
    item.only(&["price_data", "price", "quantity"])?;
    if let Some(price) = item.text("price")? {
        return Err(ApiError::no_such(
            "price",
            &price,
            &item.name("price"),
            false,
        ));
    }
    let price = item
        .child("price_data")?
        .ok_or_else(|| ApiError::missing(&item.name("price_data")))?;
    price.only(&["currency", "unit_amount", "product_data"])?;
    let unit_amount = price.required_int("unit_amount")?;
    if unit_amount < 0 {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            &price.name("unit_amount"),
            "This value must be greater than or equal to 0.".to_owned(),
        ));
    }
    let product = price
        .child("product_data")?
        .ok_or_else(|| ApiError::missing(&price.name("product_data")))?;
    product.only(&["name", "description", "metadata"])?;
    let name = product.required_str("name")?.to_owned();
    product.metadata("metadata")?;
    let quantity = item.required_int("quantity")?;
    if quantity < 1 {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            &item.name("quantity"),
            "This value must be greater than or equal to 1.".to_owned(),
        ));
    }
    Ok(LineItem {
        id: new_id("li_", 24),
        price_id: new_id("price_", 24),
        product_id: new_id("prod_", 14),
        name,
        currency: currency(&price, "currency")?,
        unit_amount,
        quantity,
    })
}

pub(super) async fn create(
    State(double): State<Arc<Double>>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(PARAMS)?;
    match params.required_str("mode")? {
        "payment" => {}
        "subscription" | "setup" => {
            return Err(ApiError::bad(
                Some("mode"),
                "This Stripe double supports Checkout Sessions in mode `payment` only.",
            ));
        }
        other => {
            return Err(ApiError::invalid(
                "parameter_invalid_string",
                "mode",
                format!(
                    "Invalid mode: must be one of payment, setup, or subscription; you passed `{other}`"
                ),
            ));
        }
    }
    let items: Vec<_> = params
        .list("line_items")?
        .iter()
        .map(line_item)
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = items.first() else {
        return Err(ApiError::missing("line_items"));
    };
    let session_currency = first.currency.clone();
    if items.iter().any(|i| i.currency != session_currency) {
        return Err(ApiError::bad(
            Some("line_items"),
            "All line items must have the same currency.",
        ));
    }
    let amount_total = items
        .iter()
        .try_fold(0i64, |sum, i| {
            i.unit_amount
                .checked_mul(i.quantity)
                .and_then(|t| sum.checked_add(t))
        })
        .ok_or_else(|| ApiError::bad(Some("line_items"), "The total amount is too large."))?;
    let success_url =
        url(&params, "success_url")?.ok_or_else(|| ApiError::missing("success_url"))?;
    let cancel_url = url(&params, "cancel_url")?;
    let customer = params.text("customer")?;
    let customer_email = email(&params, "customer_email")?;
    if customer.is_some() && customer_email.is_some() {
        return Err(ApiError::bad(
            Some("customer_email"),
            "You may only specify one of these parameters: customer, customer_email.",
        ));
    }
    let customer_creation = params.choice("customer_creation", &["always", "if_required"])?;
    if customer.is_some() && customer_creation.is_some() {
        return Err(ApiError::bad(
            Some("customer_creation"),
            "You may only specify one of these parameters: customer, customer_creation.",
        ));
    }
    let client_reference_id = params.text("client_reference_id")?;
    if client_reference_id
        .as_ref()
        .is_some_and(|r| r.chars().count() > 200)
    {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            "client_reference_id",
            "client_reference_id can be at most 200 characters.".to_owned(),
        ));
    }
    let (setup_future_usage, pi_metadata, pi_description) =
        match params.child("payment_intent_data")? {
            Some(data) => {
                data.only(&["setup_future_usage", "metadata", "description"])?;
                (
                    data.choice("setup_future_usage", &["off_session", "on_session"])?
                        .map(str::to_owned),
                    data.metadata("metadata")?.unwrap_or_default(),
                    data.text("description")?,
                )
            }
            None => (None, serde_json::Map::new(), None),
        };
    let created = now();
    let expires_at = match params.int("expires_at")? {
        None => created + MAX_EXPIRY_SECS,
        Some(at) if (created + MIN_EXPIRY_SECS..=created + MAX_EXPIRY_SECS).contains(&at) => at,
        Some(_) => {
            return Err(ApiError::invalid(
                "parameter_invalid_integer",
                "expires_at",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from \
                 Checkout Session creation."
                    .to_owned(),
            ));
        }
    };
    let payment_method_types = params
        .strings("payment_method_types")?
        .unwrap_or_else(|| vec!["card".to_owned()]);
    let metadata = params.metadata("metadata")?.unwrap_or_default();

    let mut store = double.lock();
    if let Some(c) = &customer
        && store.customer(c).is_none()
    {
        return Err(ApiError::no_such("customer", c, "customer", false));
    }
    let id = new_id("cs_test_", 58);
    let page_url = format!("{}/pay/{id}", double.base_url);
    Ok(Json(store.insert_session(CheckoutSession {
        id,
        created,
        expires_at,
        status: SessionStatus::Open,
        payment_status: "unpaid",
        amount_total,
        currency: session_currency,
        customer,
        customer_email,
        customer_creation: match customer_creation {
            Some("always") => "always",
            _ => "if_required",
        },
        created_customer: None,
        customer_details: None,
        metadata,
        client_reference_id,
        payment_intent: None,
        success_url,
        cancel_url,
        line_items: items,
        payment_method_types,
        setup_future_usage,
        pi_metadata,
        pi_description,
        idempotency_key: origin.idempotency_key,
        page_url,
    })))
}

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .session(&id)
        .map(|s| Json(s.json()))
        .ok_or_else(|| ApiError::no_such("checkout.session", &id, "session", true))
}

pub(super) async fn expire(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    form.params().only(&[])?;
    Ok(Json(double.lock().expire_session(&id, &origin)?))
}

pub(super) async fn line_items(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    Extension(form): Extension<Form>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(&["limit", "starting_after", "ending_before"])?;
    let store = double.lock();
    let session = store
        .session(&id)
        .ok_or_else(|| ApiError::no_such("checkout.session", &id, "session", true))?;
    // Line items list in the order they were given.
    let items: Vec<_> = session
        .line_items
        .iter()
        .map(|i| (i.id.clone(), i.json(session.created)))
        .collect();
    Ok(Json(list_page(
        &format!("/v1/checkout/sessions/{id}/line_items"),
        &items,
        &params,
    )?))
}
