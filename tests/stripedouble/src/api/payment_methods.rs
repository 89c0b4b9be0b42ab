//! `GET /v1/payment_methods/:id` (stored ones and Stripe's test ids) and
//! `POST /v1/payment_methods/:id/attach`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::Value;

use crate::Double;
use crate::error::ApiError;
use crate::form::Form;

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .payment_method_json(&id)
        .map(Json)
        .ok_or_else(|| ApiError::no_such("PaymentMethod", &id, "id", true))
}

pub(super) async fn attach(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
    Extension(form): Extension<Form>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(&["customer"])?;
    let customer = params.required_str("customer")?;
    Ok(Json(
        double.lock().attach_payment_method(&id, customer, true)?,
    ))
}
