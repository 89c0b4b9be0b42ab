//! Stripe's error body, `{"error":{"type","code","message","param",...}}`, and the one
//! `IntoResponse` every API handler answers errors through. `type`, `code`, `message` and
//! `param` are always present (`null` when they do not apply, as the Error object documents
//! them: nullable); `decline_code`, `charge`, `payment_intent` and `payment_method` only on
//! card errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Api,
    Card,
    Idempotency,
    InvalidRequest,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Api => "api_error",
            ErrorType::Card => "card_error",
            ErrorType::Idempotency => "idempotency_error",
            ErrorType::InvalidRequest => "invalid_request_error",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    /// Only on card errors (boxed: most errors have none).
    pub card: Option<Box<CardErrorDetails>>,
    /// A PaymentIntent in an error that is not a decline (e.g. an unexpected state).
    pub payment_intent: Option<Box<Value>>,
}

/// What a declined payment adds to the error.
#[derive(Debug, Clone)]
pub(crate) struct CardErrorDetails {
    pub decline_code: String,
    pub charge: String,
    pub payment_intent: Value,
    pub payment_method: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            card: None,
            payment_intent: None,
        }
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// 400 `invalid_request_error` with a code and the parameter at fault.
    pub fn invalid(code: &str, param: &str, message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
            .with_code(code)
            .with_param(param)
    }

    /// 400 `parameter_missing`: "Missing required param: amount."
    pub fn missing(param: &str) -> Self {
        ApiError::invalid(
            "parameter_missing",
            param,
            format!("Missing required param: {param}."),
        )
    }

    /// `resource_missing`: 404 for the object in the path, 400 for an id passed as a parameter.
    pub fn no_such(what: &str, id: &str, param: &str, in_path: bool) -> Self {
        let status = if in_path {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            ErrorType::InvalidRequest,
            format!("No such {what}: '{id}'"),
        )
        .with_code("resource_missing")
        .with_param(param)
    }

    /// 400 `invalid_request_error` without a code (state conflicts Stripe reports in prose).
    pub fn bad(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message);
        e.param = param.map(str::to_owned);
        e
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind.as_str()));
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        error.insert("param".into(), json!(self.param));
        if let Some(card) = &self.card {
            error.insert("decline_code".into(), json!(card.decline_code));
            error.insert("charge".into(), json!(card.charge));
            error.insert("payment_intent".into(), card.payment_intent.clone());
            error.insert("payment_method".into(), card.payment_method.clone());
        } else if let Some(pi) = &self.payment_intent {
            error.insert("payment_intent".into(), (**pi).clone());
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                kind = self.kind.as_str(),
                "answered with an error"
            );
        } else {
            tracing::warn!(status = self.status.as_u16(), kind = self.kind.as_str(), code = ?self.code, "answered with an error");
        }
        (self.status, axum::Json(self.body())).into_response()
    }
}
