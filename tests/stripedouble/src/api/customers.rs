//! `POST /v1/customers`, `GET /v1/customers/:id`, `POST /v1/customers/:id`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::Value;

use super::email;
use crate::Double;
use crate::error::ApiError;
use crate::form::{Form, Params};
use crate::store::{NewCustomer, Origin};

const PARAMS: &[&str] = &[
    "email",
    "name",
    "description",
    "phone",
    "metadata",
    "payment_method",
    "invoice_settings",
];

fn read(params: &Params<'_>) -> Result<NewCustomer, ApiError> {
    params.only(PARAMS)?;
    let default_payment_method = match params.child("invoice_settings")? {
        Some(settings) => {
            settings.only(&["default_payment_method"])?;
            settings.text("default_payment_method")?
        }
        None => None,
    };
    Ok(NewCustomer {
        email: email(params, "email")?,
        name: params.text("name")?,
        description: params.text("description")?,
        phone: params.text("phone")?,
        metadata: params.metadata("metadata")?.unwrap_or_default(),
        payment_method: params.text("payment_method")?,
        default_payment_method,
    })
}

pub(super) async fn create(
    State(double): State<Arc<Double>>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    let new = read(&form.params())?;
    Ok(Json(double.lock().create_customer(new, &origin)?))
}

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .customer(&id)
        .map(|c| Json(c.json()))
        .ok_or_else(|| ApiError::no_such("customer", &id, "id", true))
}

pub(super) async fn update(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    let update = read(&form.params())?;
    Ok(Json(double.lock().update_customer(&id, update, &origin)?))
}
