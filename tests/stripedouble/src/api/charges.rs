//! `GET /v1/charges/:id` (the charge as refunds and disputes leave it).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::Double;
use crate::error::ApiError;

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .charge(&id)
        .map(|c| Json(c.json()))
        .ok_or_else(|| ApiError::no_such("charge", &id, "id", true))
}
