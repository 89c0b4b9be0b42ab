//! The controller's server-rendered pages: the admin dashboard under `/admin` (its own module)
//! and the client portal at `/` (`portal`). Templates and assets are compiled into the binary;
//! every page reads without JavaScript, and the one script (`/assets/live.js`, served from here,
//! never inline) only keeps live parts current.
//!
//! What both areas share lives here: rendering, CSRF tokens, cookies and the security headers.
//! A session is a random cookie whose SHA-256 the store keeps; a session cookie authorises pages
//! only, never `/api/*` (the API takes bearer tokens and so needs no CSRF defence). Every form
//! carries a CSRF token checked in constant time: before sign-in it is an HMAC of a random cookie
//! set with the form (a signed double-submit cookie), after it an HMAC of the session cookie. The
//! HMAC key is derived from `ENCRYPTION_KEY`, so every replica accepts the others' tokens.

pub mod admin;
mod assets;
pub mod credentials;
pub mod portal;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::hmac;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde_json::json;

use crate::app::AppState;
use crate::crypto::new_token;

/// Sent with every page: scripts and styles only from this origin (no inline script), nothing
/// framed, forms posted only here.
pub const CONTENT_SECURITY_POLICY_VALUE: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

const FORM_BYTES: usize = 16 * 1024;

/// What every page handler holds: the app, the CSRF key and the compiled templates.
#[derive(Clone)]
pub(crate) struct Web {
    pub(crate) app: AppState,
    csrf: Arc<hmac::Key>,
    pages: Arc<Environment<'static>>,
}

/// The pages' routes (admin, portal, assets), with their own body limit and security headers;
/// merged beside the API in `app::run`.
pub fn router(app: AppState) -> Router {
    let web = Web {
        csrf: Arc::new(csrf_key(&app)),
        pages: Arc::new(pages()),
        app,
    };
    Router::new()
        .merge(admin::routes())
        .merge(portal::routes())
        .merge(assets::routes())
        .layer(DefaultBodyLimit::max(FORM_BYTES))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(crate::request_id::assign))
        .with_state(web)
}

/// The CSRF HMAC key, derived from the current encryption key so it is the same on every
/// replica (and different from the key that encrypts secrets). Without encryption keys (never
/// so under `serve`) a random key works for this process alone.
fn csrf_key(app: &AppState) -> hmac::Key {
    let mut seed = [0u8; 32];
    match &app.config.encryption_keys {
        Some(keys) => seed = keys.current,
        None => {
            let _ = aws_lc_rs::rand::fill(&mut seed);
        }
    }
    let master = hmac::Key::new(hmac::HMAC_SHA256, &seed);
    let derived = hmac::sign(&master, b"mpanel admin dashboard csrf v1");
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// The templates both areas extend.
const SHARED_TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// Every page template: the shared ones, the admin's (`admin/…`) and the portal's (`portal/…`).
fn page_templates() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    SHARED_TEMPLATES
        .iter()
        .chain(admin::TEMPLATES)
        .chain(portal::TEMPLATES)
}

fn pages() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in page_templates() {
        // The templates are compiled in; one that does not parse fails the unit tests.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "page template does not parse");
        }
    }
    env
}

impl Web {
    pub(crate) fn render(
        &self,
        status: StatusCode,
        name: &str,
        ctx: serde_json::Value,
    ) -> Response {
        match self.render_string(name, ctx) {
            Ok(html) => (
                status,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(template = name, error = %e, "cannot render a page");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
            }
        }
    }

    /// A template rendered to a string: a page, or a fragment a live update sends.
    pub(crate) fn render_string(
        &self,
        name: &str,
        ctx: serde_json::Value,
    ) -> Result<String, minijinja::Error> {
        self.pages
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(ctx))))
    }

    /// The CSRF token of `value` (a session cookie, a pre-session nonce) for `purpose`.
    pub(crate) fn token(&self, purpose: &str, value: &str) -> String {
        hex::encode(hmac::sign(&self.csrf, &csrf_message(purpose, value)).as_ref())
    }

    /// Whether `given` is the token of `value` for `purpose`, compared in constant time.
    pub(crate) fn token_matches(&self, purpose: &str, value: &str, given: Option<&String>) -> bool {
        let Some(tag) = given.and_then(|g| hex::decode(g.trim()).ok()) else {
            return false;
        };
        hmac::verify(&self.csrf, &csrf_message(purpose, value), &tag).is_ok()
    }

    /// A pre-session CSRF nonce: the browser's cookie `name` when it holds a usable one, else a
    /// fresh one (`true`: the caller sets it with [`Web::cookie`]).
    pub(crate) fn nonce(
        &self,
        headers: &HeaderMap,
        name: &str,
    ) -> Result<(String, bool), Box<Response>> {
        match cookie_value(headers, name).filter(|n| plausible(n)) {
            Some(nonce) => Ok((nonce, false)),
            None => new_token("")
                .map(|n| (n, true))
                .map_err(|e| Box::new(self.failure(&e, "/"))),
        }
    }

    /// Cookies are `Secure` when the public address is https or the request says it came over
    /// TLS (directly, or through a proxy that terminated it).
    pub(crate) fn cookie(
        &self,
        headers: &HeaderMap,
        name: &str,
        value: &str,
        max_age: i64,
    ) -> HeaderValue {
        let tls = self.app.config.public_url.starts_with("https://")
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        let secure = if tls { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// A 500 page that says nothing of the cause (which goes to the log), linking to `home`.
    pub(crate) fn failure(&self, e: &dyn std::fmt::Display, home: &str) -> Response {
        tracing::error!(error = %e, "page request failed");
        self.render(
            StatusCode::INTERNAL_SERVER_ERROR,
            "message.html",
            json!({
                "title": "Something went wrong",
                "message": "The request could not be completed. Try again in a moment.",
                "link": home,
                "link_text": "Back",
            }),
        )
    }

    /// A form whose CSRF token is missing or wrong: 403, nothing done.
    pub(crate) fn forbidden(&self, link: &str, link_text: &str) -> Response {
        self.render(
            StatusCode::FORBIDDEN,
            "message.html",
            json!({
                "title": "Form refused",
                "message": "This form expired or did not come from this site, so nothing was done.",
                "link": link,
                "link_text": link_text,
            }),
        )
    }

    /// A page that does not exist, or that is not this visitor's to see: the same 404 either way.
    pub(crate) fn not_found(&self, home: &str) -> Response {
        self.render(
            StatusCode::NOT_FOUND,
            "message.html",
            json!({
                "title": "Not found",
                "message": "There is no such page.",
                "link": home,
                "link_text": "Back",
            }),
        )
    }
}

fn csrf_message(purpose: &str, value: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(purpose.len() + 1 + value.len());
    message.extend_from_slice(purpose.as_bytes());
    message.push(0);
    message.extend_from_slice(value.as_bytes());
    message
}

/// A cookie value as this module makes them: URL-safe base64 of a sensible length.
pub(crate) fn plausible(value: &str) -> bool {
    (16..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A 303 to `to` (after a form, or to the sign-in page).
pub(crate) fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

pub(crate) fn form_fields(
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> HashMap<String, String> {
    // A malformed body has no CSRF token either, so it is refused like a forged one.
    form.map(|Form(fields)| fields).unwrap_or_default()
}

/// The headers every page carries. Pages are never cached: they show who is signed in and carry
/// CSRF tokens (assets set their own cache header).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // A page may name one more place its forms lead to (the portal's order and pay forms hand
    // over to Stripe Checkout); every other part of the policy stays.
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        );
    }
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whose failed sign-ins a [`LoginLimit`] counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Accounts {
    Admins,
    Customers,
}

/// The sign-in rate limit both areas share: failures are counted per email and per client
/// address (`ADMIN_LOGIN_MAX_FAILURES` within `ADMIN_LOGIN_WINDOW_SECS`), in the database, so
/// the limit holds across replicas.
pub(crate) struct LoginLimit {
    pub(crate) email_key: String,
    pub(crate) ip_key: String,
    pub(crate) now: i64,
    window_ms: i64,
    max: i64,
}

impl LoginLimit {
    pub(crate) fn new(web: &Web, email: &str, peer: &std::net::SocketAddr) -> LoginLimit {
        let settings = &web.app.config.admin_login;
        LoginLimit {
            email_key: format!("email:{}", email.to_lowercase()),
            ip_key: format!("ip:{}", peer.ip()),
            now: crate::store::now_ms(),
            window_ms: i64::from(settings.window_secs) * 1000,
            max: i64::from(settings.max_failures),
        }
    }

    /// Whole seconds until either key may try again, or `None` when neither is locked. A key is
    /// locked while `max` of its failures fall within the window; the lock lifts when the oldest
    /// of those leaves it, and a correct password does not open it.
    pub(crate) async fn locked_for(
        &self,
        store: &crate::store::DynStore,
        accounts: Accounts,
    ) -> crate::store::StoreResult<Option<i64>> {
        let since = self.now - self.window_ms;
        let mut locked_for_ms = 0;
        for key in [&self.email_key, &self.ip_key] {
            let times = match accounts {
                Accounts::Admins => store.recent_login_failures(key, since, self.max).await?,
                Accounts::Customers => {
                    store
                        .recent_customer_login_failures(key, since, self.max)
                        .await?
                }
            };
            if times.len() as i64 >= self.max
                && let Some(oldest) = times.last()
            {
                locked_for_ms = locked_for_ms.max(oldest + self.window_ms - self.now);
            }
        }
        Ok((locked_for_ms > 0).then(|| (locked_for_ms + 999) / 1000))
    }

    /// What the sign-in form says while locked for `secs`.
    pub(crate) fn message(secs: i64) -> String {
        let minutes = (secs + 59) / 60;
        format!(
            "Too many failed sign-ins. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        )
    }

    /// A failed sign-in to count against both keys; `user_id` is whom the email named, if anyone.
    pub(crate) fn failure(
        &self,
        user_id: Option<i64>,
        email: &str,
        peer: &std::net::SocketAddr,
    ) -> crate::store::LoginFailure {
        crate::store::LoginFailure {
            keys: vec![self.email_key.clone(), self.ip_key.clone()],
            user_id,
            email: email.to_lowercase(),
            ip_address: peer.ip().to_string(),
            forget_before: self.now - self.window_ms,
        }
    }
}

/// Sets `cookie` on `response`.
pub(crate) fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_template_parses_and_escapes_what_it_shows() {
        let env = pages();
        for (name, _) in page_templates() {
            let template = env.get_template(name).unwrap();
            if name.ends_with(".html") && !name.contains("/partials/") {
                let html = template
                    .render(minijinja::Value::from(minijinja::value::Serde(json!({
                        "csrf": "c", "error": "<b>e</b>", "email": "a@example.com",
                        "expires_at": "t", "title": "t", "message": "m", "link": "/", "link_text": "l",
                    }))))
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert!(!html.contains("<b>e</b>"), "{name} escapes what it shows");
                assert!(!has_inline_script(&html), "{name} has no inline script");
            }
        }
    }

    /// A `<script>` without `src`, or an `on…=` event attribute.
    fn has_inline_script(html: &str) -> bool {
        let inline_tag = html
            .match_indices("<script")
            .any(|(at, _)| !html[at..].split('>').next().unwrap_or("").contains(" src="));
        let handler = html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        inline_tag || handler
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("x_mpanel_admin_session=no; mpanel_admin_session=yes"),
        );
        assert_eq!(
            cookie_value(&headers, admin::SESSION_COOKIE).as_deref(),
            Some("yes")
        );
        assert_eq!(cookie_value(&headers, admin::LOGIN_CSRF_COOKIE), None);
    }
}
