//! `GET /v1/events/:id` and `GET /v1/events` (newest first; `type` with `*` wildcards,
//! `types[]`, `delivery_success`, and the usual paging).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde_json::Value;

use super::list_page;
use crate::Double;
use crate::error::ApiError;
use crate::form::Form;

pub(super) async fn retrieve(
    State(double): State<Arc<Double>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    double
        .lock()
        .event(&id)
        .map(|e| Json(e.json()))
        .ok_or_else(|| ApiError::no_such("event", &id, "id", true))
}

/// Stripe's event type filter: exact, or `*` matching any run of characters.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == kind,
        Some((head, tail)) => {
            kind.len() >= head.len()
                && kind.starts_with(head)
                && type_matches_rest(tail, &kind[head.len()..])
        }
    }
}

fn type_matches_rest(pattern: &str, rest: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    (0..=rest.len())
        .filter(|&i| rest.is_char_boundary(i))
        .any(|i| type_matches(pattern, &rest[i..]))
}

pub(super) async fn list(
    State(double): State<Arc<Double>>,
    Extension(form): Extension<Form>,
) -> Result<Json<Value>, ApiError> {
    let params = form.params();
    params.only(&[
        "type",
        "types",
        "delivery_success",
        "limit",
        "starting_after",
        "ending_before",
    ])?;
    let single = params.text("type")?;
    let many = params.strings("types")?;
    if single.is_some() && many.is_some() {
        return Err(ApiError::bad(
            Some("types"),
            "You may only specify one of these parameters: type, types.",
        ));
    }
    let patterns: Vec<String> = single.into_iter().chain(many.unwrap_or_default()).collect();
    let delivered = params.bool("delivery_success")?;
    let store = double.lock();
    let items: Vec<_> = store
        .events
        .iter()
        .rev()
        .filter(|e| patterns.is_empty() || patterns.iter().any(|p| type_matches(p, &e.kind)))
        .filter(|e| delivered.is_none_or(|d| d == (e.pending_webhooks == 0)))
        .map(|e| (e.id.clone(), e.json()))
        .collect();
    Ok(Json(list_page("/v1/events", &items, &params)?))
}

#[cfg(test)]
mod tests {
    use super::type_matches;

    #[test]
    fn wildcards_match_groups_of_events() {
        assert!(type_matches("charge.refunded", "charge.refunded"));
        assert!(type_matches("charge.*", "charge.dispute.created"));
        assert!(type_matches(
            "checkout.session.*",
            "checkout.session.completed"
        ));
        assert!(type_matches("*.succeeded", "payment_intent.succeeded"));
        assert!(!type_matches("charge.*", "payment_intent.succeeded"));
        assert!(!type_matches("charge.refunded", "charge.refund.updated"));
    }
}
