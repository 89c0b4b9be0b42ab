//! `POST /v1/refunds` (by `charge` or `payment_intent`, all or part of what is left) and
//! `GET /v1/refunds/:id`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::Value;

use crate::Double;
use crate::error::ApiError;
use crate::form::Form;
use crate::store::{NewRefund, Origin};

pub(super) async fn create(
    State(double): State<Arc<Double>>,
    Extension(form): Extension<Form>,
    Extension(origin): Extension<Origin>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(&["charge", "payment_intent", "amount", "reason", "metadata"])?;
    let new = NewRefund {
        charge: params.text("charge")?,
        payment_intent: params.text("payment_intent")?,
        amount: params.int("amount")?,
        reason: params
            .choice(
                "reason",
                &["duplicate", "fraudulent", "requested_by_customer"],
            )?
            .map(str::to_owned),
        metadata: params.metadata("metadata")?.unwrap_or_default(),
    };
    Ok(Json(double.lock().create_refund(new, &origin)?))
}

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .refund(&id)
        .map(|r| Json(r.json()))
        .ok_or_else(|| ApiError::no_such("refund", &id, "id", true))
}
