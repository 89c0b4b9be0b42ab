//! Stripe's `/v1` API: the routes, and the one layer every request goes through in Stripe's
//! order — API key, rate limiter (scripted 429s), body decoding, Idempotency-Key (replay,
//! mismatch, in use), scripted 5xx, the endpoint, saving the answer under the key, scripted
//! delay — adding `Request-Id` and `Stripe-Version` to every answer.

mod charges;
mod checkout;
mod customers;
mod events;
mod payment_intents;
mod payment_methods;
mod refunds;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::Double;
use crate::error::{ApiError, ErrorType};
use crate::faults::{self, Action, Stage};
use crate::form::{self, Form, Params};
use crate::idempotency::{self, Begin, Stored};
use crate::ids::new_id;
use crate::store::Origin;

/// Largest request body read (Stripe's requests are small forms).
const MAX_BODY: usize = 1 << 20;

pub(crate) fn routes(double: Arc<Double>) -> Router {
    Router::new()
        .route("/v1/customers", post(customers::create))
        .route(
            "/v1/customers/{id}",
            get(customers::retrieve).post(customers::update),
        )
        .route("/v1/checkout/sessions", post(checkout::create))
        .route("/v1/checkout/sessions/{id}", get(checkout::retrieve))
        .route("/v1/checkout/sessions/{id}/expire", post(checkout::expire))
        .route(
            "/v1/checkout/sessions/{id}/line_items",
            get(checkout::line_items),
        )
        .route(
            "/v1/payment_intents",
            post(payment_intents::create).get(payment_intents::list),
        )
        .route("/v1/payment_intents/{id}", get(payment_intents::retrieve))
        .route(
            "/v1/payment_intents/{id}/confirm",
            post(payment_intents::confirm),
        )
        .route("/v1/payment_methods/{id}", get(payment_methods::retrieve))
        .route(
            "/v1/payment_methods/{id}/attach",
            post(payment_methods::attach),
        )
        .route("/v1/charges/{id}", get(charges::retrieve))
        .route("/v1/refunds", post(refunds::create))
        .route("/v1/refunds/{id}", get(refunds::retrieve))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(events::retrieve))
        .fallback(unrecognized)
        .method_not_allowed_fallback(unrecognized)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&double),
            stripe_layer,
        ))
        .with_state(double)
}

/// Stripe's answer to a path or method it does not serve.
async fn unrecognized(request: Request) -> Response {
    let path = request.uri().path();
    if !path.starts_with("/v1/") {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::InvalidRequest,
        format!(
            "Unrecognized request URL ({}: {path}).",
            request.method().as_str()
        ),
    )
    .into_response()
}

async fn stripe_layer(State(double): State<Arc<Double>>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let request_id = new_id("req_", 14);
    let version = request
        .headers()
        .get("stripe-version")
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&double.api_version)
                .unwrap_or(HeaderValue::from_static(crate::DEFAULT_API_VERSION))
        });
    let mut response = handle(&double, request, next, &request_id).await;
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.entry("request-id").or_insert(id);
    }
    headers.insert("stripe-version", version);
    response
}

async fn handle(double: &Arc<Double>, request: Request, next: Next, request_id: &str) -> Response {
    if let Err(e) = authenticate(request.headers()) {
        return e.into_response();
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Some(Action::Fail(status)) = double.faults().take(&method, &path, Stage::RateLimiter) {
        return faults::failure(status).into_response();
    }

    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::bad(None, "The request body is too large or could not be read.")
            .into_response();
    };
    if method == Method::POST
        && let Some(kind) = parts.headers.get(header::CONTENT_TYPE)
        && !kind
            .to_str()
            .is_ok_and(|k| k.starts_with("application/x-www-form-urlencoded"))
        && !bytes.is_empty()
    {
        return ApiError::bad(
            None,
            format!(
                "Invalid request: unsupported Content-Type {}. Send \
                 application/x-www-form-urlencoded.",
                kind.to_str().unwrap_or("(not text)")
            ),
        )
        .into_response();
    }
    let raw = if method == Method::POST {
        bytes.as_ref()
    } else {
        parts.uri.query().unwrap_or("").as_bytes()
    };
    let form = match form::parse(raw) {
        Ok(map) => Form(map),
        Err(e) => {
            let param = (!e.key.is_empty()).then_some(e.key.as_str());
            return ApiError::bad(param, e.message).into_response();
        }
    };

    let key = if method == Method::POST {
        parts
            .headers
            .get("idempotency-key")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    } else {
        None
    };
    let endpoint = format!("{method} {path}");
    let mut in_flight = None;
    if let Some(key) = &key {
        if key.len() > idempotency::MAX_KEY_LEN {
            return ApiError::bad(
                None,
                format!(
                    "Idempotency-Key is too long: it can be at most {} characters.",
                    idempotency::MAX_KEY_LEN
                ),
            )
            .into_response();
        }
        let params = Value::Object(form.0.clone());
        let begun = double.idempotency().begin(key, &endpoint, &params);
        match begun {
            Begin::Replay(stored) => {
                let delay = double.faults().take(&method, &path, Stage::Replay);
                let response = replay(stored);
                if let Some(Action::Delay(ms)) = delay {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                return response;
            }
            Begin::Refused(e) => return e.into_response(),
            Begin::Proceed => {
                in_flight = Some(InFlight {
                    double: Arc::clone(double),
                    key: key.clone(),
                    endpoint,
                    params,
                    request_id: request_id.to_owned(),
                    done: false,
                });
            }
        }
    }

    let fault = double.faults().take(&method, &path, Stage::Endpoint);
    let response = match fault {
        Some(Action::Fail(status)) => faults::failure(status).into_response(),
        _ => {
            parts.extensions.insert(form);
            parts.extensions.insert(Origin {
                request_id: Some(request_id.to_owned()),
                idempotency_key: key,
            });
            next.run(Request::from_parts(parts, Body::empty())).await
        }
    };
    let (response_parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    if let Some(mut guard) = in_flight {
        guard.finish(response_parts.status, body.clone());
    }
    if let Some(Action::Delay(ms)) = fault {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Response::from_parts(response_parts, Body::from(body))
}

/// A saved answer, as Stripe replays it.
fn replay(stored: Stored) -> Response {
    let mut response = (stored.status, Body::from(stored.body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Ok(original) = HeaderValue::from_str(&stored.request_id) {
        headers.insert("original-request", original);
    }
    response
}

/// A request holding its Idempotency-Key; releases it even if the request is dropped midway.
struct InFlight {
    double: Arc<Double>,
    key: String,
    endpoint: String,
    params: Value,
    request_id: String,
    done: bool,
}

impl InFlight {
    fn finish(&mut self, status: StatusCode, body: axum::body::Bytes) {
        self.done = true;
        let stored = Stored {
            endpoint: std::mem::take(&mut self.endpoint),
            params: std::mem::take(&mut self.params),
            status,
            body,
            request_id: std::mem::take(&mut self.request_id),
        };
        self.double.idempotency().finish(&self.key, Some(stored));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.double.idempotency().finish(&self.key, None);
        }
    }
}

/// `Authorization: Bearer sk_...` (or HTTP Basic with the key as the user name, as curl's
/// `-u sk_...:` sends it).
fn authenticate(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |message: String| {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorType::InvalidRequest, message)
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY')."
                .to_owned(),
        ));
    };
    let key = if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().to_owned()
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|user_pass| user_pass.split(':').next().unwrap_or("").to_owned())
            .unwrap_or_default()
    } else {
        value.to_owned()
    };
    if key.starts_with("sk_") && key.len() > "sk_".len() {
        Ok(())
    } else {
        Err(unauthorized(format!(
            "Invalid API Key provided: {}",
            mask_key(&key)
        )))
    }
}

/// Stripe's masking of a key in error messages: the first 8 and last 4 characters, stars
/// between; a key too short for that is all stars.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

/// One page of a list, Stripe's shape: `{"object":"list","data","has_more","url"}`.
/// `items` are newest first; `limit` (1-100, default 10), `starting_after` and `ending_before`
/// page through them.
pub(crate) fn list_page(
    url: &str,
    items: &[(String, Value)],
    params: &Params<'_>,
) -> Result<Value, ApiError> {
    let limit = params.int("limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            "limit",
            "This value must be between 1 and 100.".to_owned(),
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(10);
    let position = |param: &str, id: &str| {
        items
            .iter()
            .position(|(item, _)| item == id)
            .ok_or_else(|| ApiError::no_such("object", id, param, false))
    };
    let (data, has_more): (Vec<Value>, bool) = if let Some(after) = params.text("starting_after")? {
        let from = position("starting_after", &after)? + 1;
        let rest = &items[from..];
        (
            rest.iter().take(limit).map(|(_, v)| v.clone()).collect(),
            rest.len() > limit,
        )
    } else if let Some(before) = params.text("ending_before")? {
        let to = position("ending_before", &before)?;
        let rest = &items[..to];
        let start = rest.len().saturating_sub(limit);
        (
            rest[start..].iter().map(|(_, v)| v.clone()).collect(),
            start > 0,
        )
    } else {
        (
            items.iter().take(limit).map(|(_, v)| v.clone()).collect(),
            items.len() > limit,
        )
    };
    Ok(json!({"object": "list", "data": data, "has_more": has_more, "url": url}))
}

/// A lower-case three-letter ISO currency code.
pub(crate) fn currency(params: &Params<'_>, key: &str) -> Result<String, ApiError> {
    let raw = params.required_str(key)?.to_ascii_lowercase();
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(raw)
    } else {
        Err(ApiError::invalid(
            "parameter_invalid_string",
            &params.name(key),
            format!("Invalid currency: {raw}."),
        ))
    }
}

/// Stripe's check of an email parameter.
pub(crate) fn email(params: &Params<'_>, key: &str) -> Result<Option<String>, ApiError> {
    let Some(email) = params.text(key)? else {
        return Ok(None);
    };
    let valid = email
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace);
    if valid {
        Ok(Some(email))
    } else {
        Err(ApiError::invalid(
            "email_invalid",
            &params.name(key),
            format!("Invalid email address: {email}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_like_stripe_does() {
        assert_eq!(
            mask_key("pk_test_abcdefghijklmnopWXYZ"),
            "pk_test_****************WXYZ"
        );
        assert_eq!(mask_key("short"), "*****");
    }

    #[test]
    fn only_secret_keys_are_accepted() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(authenticate(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk_test_123"),
        );
        assert!(authenticate(&headers).is_ok());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer pk_test_123456789"),
        );
        let e = authenticate(&headers).expect_err("publishable key");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(!e.message.contains("123456789"));
        // curl -u sk_test_abc:
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic c2tfdGVzdF9hYmM6"),
        );
        assert!(authenticate(&headers).is_ok());
    }
}
