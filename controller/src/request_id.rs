//! Request ids: every HTTP request gets one (the client's `x-request-id` when it is a short
//! token, else a new one), answered in the response's `x-request-id`, carried by the request's
//! log span, and kept while the request runs so the rows it writes name it: the tasks it queues
//! (`provisioning_tasks.request_id`, whose runs log it beside their task id) and its activity
//! rows. Work done outside a request (scheduled jobs, workers) has none.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 64;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request this code runs for, if it runs for one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's id is kept when it is 1 to 64 characters of letters, digits, `-`, `_`, `.` and
/// `:`; anything else is replaced, so a log line cannot be forged through it.
fn acceptable(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_id() -> String {
    let mut bytes = [0u8; 12];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // No randomness: a time-based id still tells requests apart in the logs.
        return format!("req_{}", crate::store::now_ms());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("req_{hex}")
}

/// The middleware: assigns the id, runs the request inside its span and scope, and answers it.
pub async fn assign(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(new_id, str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_plain() {
        assert!(acceptable("abc-123_x.y:z"));
        assert!(!acceptable(""));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable("has space"));
        assert!(!acceptable(&"a".repeat(65)));
        let made = new_id();
        assert!(
            made.starts_with("req_") && acceptable(&made) && made.len() == 28,
            "{made}"
        );
        assert_ne!(new_id(), made);
    }

    #[tokio::test]
    async fn the_id_is_current_only_inside_its_scope() {
        assert_eq!(current(), None);
        let seen = REQUEST_ID
            .scope("r-1".to_owned(), async { current() })
            .await;
        assert_eq!(seen.as_deref(), Some("r-1"));
    }
}
