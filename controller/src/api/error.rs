//! The one error type every handler returns, and the one place it becomes the contract's body:
//! `{"error":{"code","message","field"}}`, plus, for some conflicts, the ids a client needs to
//! carry on (`serviceId`, `jobId`). 4xx are logged at `warn`, 5xx at `error`, and a 5xx never
//! carries internals to the client.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// More members of the `error` object, beside code, message and field.
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            details: Map::new(),
        }
    }

    /// Adds a member to the `error` object (never one of code, message, field).
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        debug_assert!(!matches!(key, "code" | "message" | "field"));
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400 for a bad field; the message is prefixed with the field name, as clients show it.
    pub fn invalid(field: &str, code: &'static str, reason: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: format!("{field}: {reason}"),
            field: Some(field.to_owned()),
            details: Map::new(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A 404 that says which request field named the missing record.
    pub fn unknown(field: &str, entity: &str, id: i64) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::not_found(format!("{entity} {id} not found"))
        }
    }

    /// Store `NotFound` becomes a 404 naming the request field; anything else passes through.
    pub fn not_found_as(e: StoreError, field: &str, entity: &str, id: i64) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::unknown(field, entity, id),
            other => other.into(),
        }
    }

    pub fn unprocessable(field: &str, code: &'static str, reason: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            ..Self::invalid(field, code, reason)
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Conflict(message) => ApiError::conflict(message),
            other => ApiError::internal(other),
        }
    }
}

/// The lifecycle's refusals, as the contract's error bodies.
impl From<crate::lifecycle::LifecycleError> for ApiError {
    fn from(e: crate::lifecycle::LifecycleError) -> Self {
        use crate::lifecycle::LifecycleError as L;
        match e {
            L::NotFound {
                entity,
                id,
                field: Some(field),
            } => ApiError::unknown(field, entity, id),
            L::NotFound { entity, id, .. } => {
                ApiError::not_found(format!("{entity} {id} not found"))
            }
            L::IllegalMove { .. } => {
                ApiError::new(StatusCode::CONFLICT, "illegal_transition", e.to_string())
            }
            L::TaskOpen { service, task } => super::queueing::task_open_conflict(service, &task),
            L::DomainTaken {
                service,
                latest_task,
                ..
            } => {
                let conflict = ApiError {
                    field: Some("domain".to_owned()),
                    ..ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                .with_detail("serviceId", service.get());
                match latest_task {
                    Some(task) => conflict
                        .with_detail("jobId", mpanel_common::JobId::for_task(task).to_string()),
                    None => conflict,
                }
            }
            L::TaskNotFailed { .. } => {
                ApiError::new(StatusCode::CONFLICT, "task_not_failed", e.to_string())
            }
            L::Unprocessable {
                field,
                code,
                message,
            } => ApiError::unprocessable(field, code, message),
            L::Store(e) => e.into(),
        }
    }
}

/// Malformed JSON bodies: name the field serde complained about when it said which.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let detail = rejection.body_text();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(status, "body_too_large", "request body is too large");
        }
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_content_type",
                "expected Content-Type: application/json",
            );
        }
        let field = field_from_serde_message(&detail);
        let reason = serde_part(&detail).to_owned();
        ApiError {
            field,
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", reason)
        }
    }
}

/// axum prefixes serde's message with its own sentence; the client needs serde's part.
fn serde_part(message: &str) -> &str {
    ["into the target type: ", "as JSON: "]
        .iter()
        .find_map(|prefix| message.split_once(prefix).map(|(_, rest)| rest))
        .unwrap_or(message)
}

/// serde's messages name a field as "missing field `x`" or as a "x.y: ..." path prefix.
fn field_from_serde_message(message: &str) -> Option<String> {
    if let Some(rest) = message.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    if let Some(rest) = message.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    let (path, _) = serde_part(message).split_once(": ")?;
    (!path.contains(' ') && !path.is_empty()).then(|| path.to_owned())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code,
                "request failed"
            );
        } else {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let mut error = self.details;
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        error.insert("field".into(), self.field.into());
        let body = json!({ "error": error });
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_yield_the_field() {
        assert_eq!(
            field_from_serde_message("Failed to deserialize the JSON body into the target type: missing field `domain` at line 1 column 2").as_deref(),
            Some("domain")
        );
        assert_eq!(
            field_from_serde_message("Failed to deserialize the JSON body into the target type: maxAccounts: invalid type: string \"x\", expected i32 at line 1 column 20").as_deref(),
            Some("maxAccounts")
        );
        assert_eq!(
            field_from_serde_message("expected value at line 1 column 1"),
            None
        );
    }
}
