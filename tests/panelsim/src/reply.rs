//! Response building shared by the panel modules.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A panel's answer plus whether the panel would call it a success. The pipeline needs the
/// flag for `PartialSuccess`: only a call that really succeeded is turned into a failure.
/// The response is boxed so `Result<_, Reply>` stays small.
pub(crate) struct Reply {
    pub ok: bool,
    response: Box<Response>,
}

impl Reply {
    pub(crate) fn new(ok: bool, response: Response) -> Self {
        Reply {
            ok,
            response: Box::new(response),
        }
    }

    pub(crate) fn ok(response: Response) -> Self {
        Reply::new(true, response)
    }

    pub(crate) fn fail(response: Response) -> Self {
        Reply::new(false, response)
    }

    pub(crate) fn into_response(self) -> Response {
        *self.response
    }
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, "application/json", body)
}

pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    with_type(status, content_type, body.into_bytes())
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A short HTML error page, the shape web servers in front of panels use for 5xx.
pub(crate) fn html_error(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    text(
        status,
        "text/html; charset=utf-8",
        format!(
            "<html><head><title>{code} {reason}</title></head>\
             <body><h1>{reason}</h1><p>The server encountered a temporary error.</p></body></html>\n"
        ),
    )
}
