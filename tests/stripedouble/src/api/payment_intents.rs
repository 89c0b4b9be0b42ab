//! `POST /v1/payment_intents` (optionally confirming at once, on or off session),
//! `GET /v1/payment_intents/:id`, `GET /v1/payment_intents` (by `customer`),
//! `POST /v1/payment_intents/:id/confirm`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::Value;

use super::{currency, email, list_page};
use crate::Double;
use crate::error::ApiError;
use crate::form::Form;
use crate::store::{NewPaymentIntent, Origin, missing_payment_method};

const PARAMS: &[&str] = &[
    "amount",
    "currency",
    "customer",
    "payment_method",
    "off_session",
    "confirm",
    "metadata",
    "description",
    "setup_future_usage",
    "payment_method_types",
    "receipt_email",
    "capture_method",
];

pub(super) async fn create(
    State(double): State<Arc<Double>>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(PARAMS)?;
    let amount = params.required_int("amount")?;
    if amount < 1 {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            "amount",
            "This value must be greater than or equal to 1.".to_owned(),
        ));
    }
    let currency = currency(&params, "currency")?;
    let confirm = params.bool("confirm")?.unwrap_or(false);
    let off_session = params.bool("off_session")?.unwrap_or(false);
    if off_session && !confirm {
        return Err(ApiError::bad(
            Some("off_session"),
            "`off_session` can only be used when `confirm` is set to true.",
        ));
    }
    let payment_method = params.text("payment_method")?;
    if confirm && payment_method.is_none() {
        return Err(missing_payment_method());
    }
    if let Some(method) = params.choice(
        "capture_method",
        &["automatic", "automatic_async", "manual"],
    )? && method == "manual"
    {
        return Err(ApiError::bad(
            Some("capture_method"),
            "This Stripe double captures automatically only.",
        ));
    }
    let new = NewPaymentIntent {
        amount,
        currency,
        customer: params.text("customer")?,
        payment_method,
        description: params.text("description")?,
        metadata: params.metadata("metadata")?.unwrap_or_default(),
        setup_future_usage: params
            .choice("setup_future_usage", &["off_session", "on_session"])?
            .map(str::to_owned),
        payment_method_types: params
            .strings("payment_method_types")?
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| vec!["card".to_owned()]),
        receipt_email: email(&params, "receipt_email")?,
        confirm,
        off_session,
    };
    Ok(Json(double.lock().create_payment_intent(new, &origin)?))
}

pub(super) async fn confirm(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(&["payment_method", "off_session"])?;
    let payment_method = params.text("payment_method")?;
    let off_session = params.bool("off_session")?.unwrap_or(false);
    Ok(Json(double.lock().confirm_payment_intent(
        &id,
        payment_method.as_deref(),
        off_session,
        &origin,
    )?))
}

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .payment_intent(&id)
        .map(|p| Json(p.json()))
        .ok_or_else(|| ApiError::no_such("payment_intent", &id, "intent", true))
}

pub(super) async fn list(
    State(double): State<Arc<Double>>,
    Extension(form): Extension<Form>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(&["customer", "limit", "starting_after", "ending_before"])?;
    let customer = params.text("customer")?;
    let store = double.lock();
    let items: Vec<_> = store
        .payment_intents
        .iter()
        .rev()
        .filter(|p| customer.is_none() || p.customer == customer)
        .map(|p| (p.id.clone(), p.json()))
        .collect();
    Ok(Json(list_page("/v1/payment_intents", &items, &params)?))
}
