//! The HTTP plumbing every driver shares: one client with sane timeouts, transport failures mapped
//! to [`PanelError`], and scrubbing of secrets out of anything that becomes an error message.
//!
//! Interpreting a response (status codes, envelopes) stays in each driver, because the panels
//! disagree on what a status means: DirectAdmin answers a bad login with `200` and an HTML page,
//! WHM with `403`, Plesk with `401`.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use tracing::debug;

use super::PanelConfig;
use super::types::{ErrorClass, PanelError, Secret};

/// Whole-request limit. Long-running WHM functions (createacct, removeacct) take a few seconds on
/// a busy server; past 30 s the caller is better served by a retry that starts with a lookup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Panel messages can embed whole HTML pages or raw script output; keep errors readable.
const MAX_MESSAGE: usize = 400;

/// The base URL, credentials and HTTP client of one panel.
#[derive(Clone)]
pub struct PanelEndpoint {
    base: String,
    client: reqwest::Client,
    pub(crate) user: String,
    pub(crate) token: Secret,
    timeout: Duration,
}

impl fmt::Debug for PanelEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanelEndpoint")
            .field("base", &self.base)
            .field("user", &self.user)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A panel's answer, body read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn is_html(&self) -> bool {
        self.content_type.contains("text/html")
            || self.body.trim_start().starts_with("<!DOCTYPE")
            || self.body.trim_start().starts_with("<html")
    }
}

impl PanelEndpoint {
    pub fn new(config: &PanelConfig) -> Result<Self, PanelError> {
        const OP: &str = "build_driver";
        let parsed = reqwest::Url::parse(&config.url)
            .map_err(|e| PanelError::permanent(OP, format!("invalid panel url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PanelError::permanent(OP, "panel url must be http or https"));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            // Only when the operator said so: the panel's self-signed certificate on localhost.
            .danger_accept_invalid_certs(config.insecure_tls)
            // A panel never redirects an API call; a redirect means a login page, which must
            // surface as an auth error instead of being followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mpanel-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PanelError::permanent(OP, format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            base: config.url.trim_end_matches('/').to_owned(),
            client,
            user: config.user.clone(),
            token: config.token.clone(),
            timeout: config.timeout,
        })
    }

    /// A request to `path` (which starts with `/`) on the panel, without credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends the request and reads the body. Only transport failures are errors here; every HTTP
    /// status comes back as a [`Reply`].
    pub async fn send(
        &self,
        operation: &'static str,
        request: RequestBuilder,
    ) -> Result<Reply, PanelError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(operation, &e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = response
            .text()
            .await
            .map_err(|e| self.transport_error(operation, &e))?;
        // The path only: query strings and bodies can hold customer data.
        debug!(operation, status = status.as_u16(), "panel call");
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    fn transport_error(&self, operation: &'static str, e: &reqwest::Error) -> PanelError {
        // reqwest names the URL in its message; drop it, query strings can carry customer data.
        let detail = e.to_string();
        let detail = detail.split(" for url").next().unwrap_or("");
        let message = if e.is_timeout() {
            format!("no answer within {} s", self.timeout.as_secs())
        } else if e.is_connect() {
            format!("cannot connect to the panel: {}", source_chain(e))
        } else {
            format!("HTTP failure: {detail}: {}", source_chain(e))
        };
        // Every transport failure may be transient (panel restarting, upgrade in progress).
        PanelError::retryable(operation, self.scrub(&message, &[]))
    }

    /// `text` made safe for an error message: the panel token and every secret of the request
    /// replaced, trimmed to a readable length. Panels echo request parameters back in their
    /// messages (raw script output, validation errors), passwords included.
    pub fn scrub(&self, text: &str, secrets: &[&Secret]) -> String {
        scrub(
            text,
            std::iter::once(&self.token).chain(secrets.iter().copied()),
        )
    }
}

/// A header value carrying a credential, marked sensitive so HTTP/2 never puts it in its
/// compression table and debug output of the request masks it.
pub fn secret_header(value: &str) -> Result<reqwest::header::HeaderValue, PanelError> {
    let mut header = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        PanelError::new(
            ErrorClass::Auth,
            "build_request",
            "the panel token contains characters not allowed in an HTTP header",
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut out = text.trim().to_owned();
    for secret in secrets {
        let s = secret.expose();
        // Replacing very short strings would mangle the message and hides nothing useful.
        if s.len() >= 3 {
            out = out.replace(s, "***");
            let encoded: String = url_encoded(s);
            if encoded != s {
                out = out.replace(&encoded, "***");
            }
        }
    }
    if out.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn url_encoded(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// The class an HTTP status implies, or `None` for 2xx/3xx.
pub fn status_class(status: StatusCode) -> Option<ErrorClass> {
    match status.as_u16() {
        200..=299 => None,
        // Redirects are never followed; on a panel API they lead to a login page.
        300..=399 | 401 | 403 => Some(ErrorClass::Auth),
        404 => Some(ErrorClass::NotFound),
        408 | 423 | 425 | 429 => Some(ErrorClass::Retryable),
        409 => Some(ErrorClass::Conflict),
        400..=499 => Some(ErrorClass::Permanent),
        _ => Some(ErrorClass::Retryable),
    }
}

/// The class a panel's failure *text* implies when the transport said "OK" (WHM `result:0`, UAPI
/// `status:0`, DirectAdmin `error=1`). Only used where the driver has no better signal; "already
/// exists" is a conflict, and the callers that create things look again before believing it.
pub fn text_class(text: &str) -> ErrorClass {
    let t = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if has(&[
        "lock",
        "try again",
        "temporar",
        "timed out",
        "timeout",
        "busy",
        "in progress",
        "unavailable",
        "too many",
    ]) {
        ErrorClass::Retryable
    } else if has(&[
        "access denied",
        "not logged in",
        "permission denied",
        "unauthori",
    ]) {
        ErrorClass::Auth
    } else if has(&[
        "already exist",
        "already in use",
        "already owned",
        "is taken",
    ]) {
        ErrorClass::Conflict
    } else {
        ErrorClass::Permanent
    }
}

/// The method for a call that changes something; GETs carry parameters in the query string, which
/// panels write to their access logs, so everything that can carry a secret is POSTed.
pub const CHANGE: Method = Method::POST;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_plain_and_url_encoded_secrets() {
        let pw = Secret::new("p@ss w0rd");
        let text = "failed for password=p%40ss+w0rd and p@ss w0rd";
        let out = scrub(text, [&pw]);
        assert!(!out.contains("w0rd"), "{out}");
    }

    #[test]
    fn failure_texts_are_classified() {
        assert_eq!(
            text_class("Sorry, a group for that username already exists."),
            ErrorClass::Conflict
        );
        assert_eq!(
            text_class("Unable to obtain a lock on /etc/passwd"),
            ErrorClass::Retryable
        );
        assert_eq!(text_class("Access denied"), ErrorClass::Auth);
        assert_eq!(text_class("Invalid package"), ErrorClass::Permanent);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(status_class(StatusCode::OK), None);
        assert_eq!(status_class(StatusCode::FORBIDDEN), Some(ErrorClass::Auth));
        assert_eq!(
            status_class(StatusCode::BAD_GATEWAY),
            Some(ErrorClass::Retryable)
        );
        assert_eq!(
            status_class(StatusCode::BAD_REQUEST),
            Some(ErrorClass::Permanent)
        );
    }
}
