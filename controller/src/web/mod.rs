//! The web dashboard's server-rendered pages: for now its sign-in (`/admin/login`), the
//! signed-in landing page (`/admin`) and sign-out (`/admin/logout`). Templates are compiled into
//! the binary and need no JavaScript.
//!
//! A session is a random cookie whose SHA-256 the store keeps; the cookie authorises these
//! pages only, never `/api/*` (the API takes bearer tokens and so needs no CSRF defence).
//! Every form carries a CSRF token checked in constant time: before sign-in it is an HMAC of a
//! random cookie set with the form (a signed double-submit cookie), after it an HMAC of the
//! session cookie. The HMAC key is derived from `ENCRYPTION_KEY`, so every replica accepts the
//! others' tokens. Failed sign-ins are counted in the database per email and per client address
//! (`ADMIN_LOGIN_MAX_FAILURES` within `ADMIN_LOGIN_WINDOW_SECS`), so the limit holds across
//! replicas. The JSON API's side of sessions (listing, revoking) is in `api::admin_sessions`.

pub mod credentials;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::hmac;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, REFERRER_POLICY,
    RETRY_AFTER, SET_COOKIE, USER_AGENT, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::json;

use crate::app::AppState;
use crate::crypto::{new_token, token_hash};
use crate::store::{AdminSession, LoginFailure, NewAdminSession, now_ms};

/// The session cookie.
pub const SESSION_COOKIE: &str = "mpanel_admin_session";
/// The random value the sign-in form's CSRF token is an HMAC of.
pub const LOGIN_CSRF_COOKIE: &str = "mpanel_login_csrf";

/// Sent with every page: no script at all, nothing framed, forms posted only here.
pub const CONTENT_SECURITY_POLICY_VALUE: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

const FORM_BYTES: usize = 16 * 1024;
const INCORRECT: &str = "The email or password is incorrect.";

#[derive(Clone)]
struct Web {
    app: AppState,
    csrf: Arc<hmac::Key>,
    pages: Arc<Environment<'static>>,
}

/// The dashboard's routes, with their own body limit and security headers; merged beside the
/// API in `app::run`.
pub fn router(app: AppState) -> Router {
    let web = Web {
        csrf: Arc::new(csrf_key(&app)),
        pages: Arc::new(pages()),
        app,
    };
    Router::new()
        .route("/admin", get(home))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
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

fn pages() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("home.html", include_str!("templates/home.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        // The templates are compiled in; one that does not parse fails the unit tests.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "dashboard template does not parse");
        }
    }
    env
}

impl Web {
    fn render(&self, status: StatusCode, name: &str, ctx: serde_json::Value) -> Response {
        match self
            .pages
            .get_template(name)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(ctx))))
        {
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
                tracing::error!(template = name, error = %e, "cannot render a dashboard page");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
            }
        }
    }

    fn token(&self, purpose: &str, value: &str) -> String {
        hex::encode(hmac::sign(&self.csrf, &csrf_message(purpose, value)).as_ref())
    }

    /// Whether `given` is the token of `value` for `purpose`, compared in constant time.
    fn token_matches(&self, purpose: &str, value: &str, given: Option<&String>) -> bool {
        let Some(tag) = given.and_then(|g| hex::decode(g.trim()).ok()) else {
            return false;
        };
        hmac::verify(&self.csrf, &csrf_message(purpose, value), &tag).is_ok()
    }

    /// Cookies are `Secure` when the public address is https or the request says it came over
    /// TLS (directly, or through a proxy that terminated it).
    fn cookie(&self, headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
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

    async fn session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(AdminSession, String)>, Response> {
        let Some(cookie) = cookie_value(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        match self
            .app
            .store
            .authenticate_admin_session(&token_hash(&cookie))
            .await
        {
            Ok(found) => Ok(found.map(|s| (s, cookie))),
            Err(e) => Err(self.failure(&e)),
        }
    }

    fn failure(&self, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, "dashboard request failed");
        self.render(
            StatusCode::INTERNAL_SERVER_ERROR,
            "message.html",
            json!({
                "title": "Something went wrong",
                "message": "The request could not be completed. Try again in a moment.",
                "link": "/admin/login",
                "link_text": "Back to sign-in",
            }),
        )
    }

    /// The sign-in form with `error`, its CSRF token bound to the browser's login cookie (set
    /// here when the browser has no usable one).
    fn login_form(&self, headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
        let (nonce, fresh) = match cookie_value(headers, LOGIN_CSRF_COOKIE).filter(|n| plausible(n))
        {
            Some(nonce) => (nonce, false),
            None => match new_token("") {
                Ok(nonce) => (nonce, true),
                Err(e) => return self.failure(&e),
            },
        };
        let mut response = self.render(
            status,
            "login.html",
            json!({ "csrf": self.token("login", &nonce), "error": error }),
        );
        if fresh {
            let cookie = self.cookie(headers, LOGIN_CSRF_COOKIE, &nonce, 24 * 3600);
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        response
    }

    fn forbidden(&self) -> Response {
        self.render(
            StatusCode::FORBIDDEN,
            "message.html",
            json!({
                "title": "Form refused",
                "message": "This form expired or did not come from this site, so nothing was done.",
                "link": "/admin/login",
                "link_text": "Reload the sign-in page",
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
fn plausible(value: &str) -> bool {
    (16..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
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

fn see_other(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

fn form_fields(
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> HashMap<String, String> {
    // A malformed body has no CSRF token either, so it is refused like a forged one.
    form.map(|Form(fields)| fields).unwrap_or_default()
}

async fn login_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match web.session(&headers).await {
        Ok(Some(_)) => see_other("/admin"),
        Ok(None) => web.login_form(&headers, StatusCode::OK, None),
        Err(response) => response,
    }
}

async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let csrf_ok = cookie_value(&headers, LOGIN_CSRF_COOKIE)
        .is_some_and(|nonce| web.token_matches("login", &nonce, fields.get("csrf")));
    if !csrf_ok {
        tracing::warn!(client = %peer.ip(), "sign-in refused: missing or wrong CSRF token");
        return web.forbidden();
    }
    let email = fields.get("email").map_or("", |e| e.trim());
    let password = fields.get("password").map_or("", String::as_str);
    if email.is_empty() || password.is_empty() || email.len() > 254 {
        return web.login_form(
            &headers,
            StatusCode::BAD_REQUEST,
            Some("Enter your email and password."),
        );
    }
    let settings = &web.app.config.admin_login;
    let window_ms = i64::from(settings.window_secs) * 1000;
    let max = i64::from(settings.max_failures);
    let email_key = format!("email:{}", email.to_lowercase());
    let ip_key = format!("ip:{}", peer.ip());
    let store = &web.app.store;

    // Locked while `max` failures of either key fall within the window; it lifts when the
    // oldest of those leaves it. A correct password does not open a lock.
    let now = now_ms();
    let mut locked_for_ms = 0;
    for key in [&email_key, &ip_key] {
        match store.recent_login_failures(key, now - window_ms, max).await {
            Ok(times) if times.len() as i64 >= max => {
                if let Some(oldest) = times.last() {
                    locked_for_ms = locked_for_ms.max(oldest + window_ms - now);
                }
            }
            Ok(_) => {}
            Err(e) => return web.failure(&e),
        }
    }
    if locked_for_ms > 0 {
        let secs = (locked_for_ms + 999) / 1000;
        tracing::warn!(client = %peer.ip(), retry_after = secs, "sign-in refused: too many failures");
        let minutes = (secs + 59) / 60;
        let message = format!(
            "Too many failed sign-ins. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        );
        let mut response = web.login_form(&headers, StatusCode::TOO_MANY_REQUESTS, Some(&message));
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }

    let found = match store.find_admin_user_by_email(email).await {
        Ok(found) => found,
        Err(e) => return web.failure(&e),
    };
    let known_id = found.as_ref().map(|u| u.id);
    let user = found.filter(|u| u.disabled_at.is_none());
    let matches = credentials::verify_password_blocking(
        password.to_owned(),
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let Some(user) = user.filter(|_| matches) else {
        let failure = LoginFailure {
            keys: vec![email_key, ip_key],
            user_id: known_id,
            email: email.to_lowercase(),
            ip_address: peer.ip().to_string(),
            forget_before: now - window_ms,
        };
        if let Err(e) = store.record_login_failure(&failure).await {
            return web.failure(&e);
        }
        tracing::warn!(client = %peer.ip(), "sign-in failed");
        return web.login_form(&headers, StatusCode::UNAUTHORIZED, Some(INCORRECT));
    };

    let token = match new_token("mps_") {
        Ok(token) => token,
        Err(e) => return web.failure(&e),
    };
    let lifetime_ms = i64::from(settings.session_hours) * 3_600_000;
    let user_agent = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(300).collect());
    let new = NewAdminSession {
        user_id: user.id,
        token_hash: token_hash(&token),
        expires_at: now_ms() + lifetime_ms,
        user_agent,
        ip_address: Some(peer.ip().to_string()),
    };
    let session = match store.create_admin_session(&new, &email_key).await {
        Ok(session) => session,
        Err(e) => return web.failure(&e),
    };
    tracing::info!(
        admin_user = user.id,
        session = session.id,
        "admin signed in"
    );
    let mut response = see_other("/admin");
    let cookie = web.cookie(&headers, SESSION_COOKIE, &token, lifetime_ms / 1000);
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

async fn home(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (session, cookie) = match web.session(&headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other("/admin/login"),
        Err(response) => return response,
    };
    let expires_at = crate::store::admin_users::shown_time(session.expires_at);
    web.render(
        StatusCode::OK,
        "home.html",
        json!({
            "email": session.email,
            "expires_at": expires_at,
            "csrf": web.token("session", &cookie),
        }),
    )
}

async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let (session, cookie) = match web.session(&headers).await {
        Ok(Some(found)) => found,
        // Nothing to sign out of; the form is refused all the same.
        Ok(None) => return web.forbidden(),
        Err(response) => return response,
    };
    if !web.token_matches("session", &cookie, fields.get("csrf")) {
        tracing::warn!(
            session = session.id,
            "sign-out refused: missing or wrong CSRF token"
        );
        return web.forbidden();
    }
    let actor = format!("admin_user:{}", session.user_id);
    match web
        .app
        .store
        .revoke_admin_session(session.id, &actor, "admin.signed_out")
        .await
    {
        Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
        Err(e) => return web.failure(&e),
    }
    tracing::info!(
        admin_user = session.user_id,
        session = session.id,
        "admin signed out"
    );
    let mut response = see_other("/admin/login");
    response
        .headers_mut()
        .append(SET_COOKIE, web.cookie(&headers, SESSION_COOKIE, "", 0));
    response
}

/// The headers every dashboard page carries. Pages are never cached: they show who is signed in
/// and carry CSRF tokens.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_template_parses() {
        let env = pages();
        for name in ["login.html", "home.html", "message.html"] {
            let html = env
                .get_template(name)
                .and_then(|t| {
                    t.render(minijinja::Value::from(minijinja::value::Serde(json!({
                        "csrf": "c", "error": "<b>e</b>", "email": "a@example.com",
                        "expires_at": "t", "title": "t", "message": "m", "link": "/", "link_text": "l",
                    }))))
                })
                .unwrap();
            assert!(!html.contains("<script"), "{name}");
            assert!(!html.contains("<b>e</b>"), "{name} escapes what it shows");
        }
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("x_mpanel_admin_session=no; mpanel_admin_session=yes"),
        );
        assert_eq!(
            cookie_value(&headers, SESSION_COOKIE).as_deref(),
            Some("yes")
        );
        assert_eq!(cookie_value(&headers, LOGIN_CSRF_COOKIE), None);
    }
}
