//! Admin sign-in, sign-out and the session every other admin page needs. Failed sign-ins are counted in the
//! database per email and per client address (`ADMIN_LOGIN_MAX_FAILURES` within
//! `ADMIN_LOGIN_WINDOW_SECS`), so the limit holds across replicas. The JSON API's side of
//! sessions (listing, revoking) is in `api::admin_sessions`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::header::{RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::crypto::{new_token, token_hash};
use crate::store::{AdminSession, NewAdminSession, now_ms};
use crate::web::{
    Accounts, LoginLimit, Web, cookie_value, credentials, form_fields, see_other, with_cookie,
};

/// The session cookie.
pub const SESSION_COOKIE: &str = "mpanel_admin_session";
/// The random value the sign-in form's CSRF token is an HMAC of.
pub const LOGIN_CSRF_COOKIE: &str = "mpanel_login_csrf";

const INCORRECT: &str = "The email or password is incorrect.";

/// A signed-in admin: their session, and the cookie their forms' CSRF tokens are bound to.
pub(crate) struct SignedIn {
    pub(crate) session: AdminSession,
    pub(crate) cookie: String,
}

impl SignedIn {
    /// The CSRF token of this admin's forms.
    pub(crate) fn csrf(&self, web: &Web) -> String {
        web.token("session", &self.cookie)
    }

    /// How this admin is named in the activity log.
    pub(crate) fn actor(&self) -> String {
        crate::lifecycle::Actor::AdminUser(self.session.user_id).to_string()
    }
}

impl Web {
    /// The browser's live admin session and its cookie, if it has one.
    pub(crate) async fn admin_session(
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
            Err(e) => Err(self.failure(&e, "/admin/login")),
        }
    }

    fn admin_forbidden(&self) -> Response {
        self.forbidden("/admin/login", "Reload the sign-in page")
    }

    /// The admin of a page request, or the answer to send instead: a 303 to the sign-in page
    /// without a live session.
    pub(crate) async fn admin_page(&self, headers: &HeaderMap) -> Result<SignedIn, Response> {
        match self.admin_session(headers).await? {
            Some((session, cookie)) => Ok(SignedIn { session, cookie }),
            None => Err(see_other("/admin/login")),
        }
    }

    /// The admin of a form post whose CSRF token matches their session, or the answer to send
    /// instead: 403 without a live session or with a missing or wrong token (nothing done).
    pub(crate) async fn admin_form(
        &self,
        headers: &HeaderMap,
        fields: &HashMap<String, String>,
    ) -> Result<SignedIn, Response> {
        let Some((session, cookie)) = self.admin_session(headers).await? else {
            return Err(self.admin_forbidden());
        };
        if !self.token_matches("session", &cookie, fields.get("csrf")) {
            tracing::warn!(
                session = session.id,
                "admin form refused: missing or wrong CSRF token"
            );
            return Err(self.forbidden("/admin", "Back to the dashboard"));
        }
        Ok(SignedIn { session, cookie })
    }

    /// The sign-in form with `error`, its CSRF token bound to the browser's login cookie (set
    /// here when the browser has no usable one).
    fn login_form(&self, headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
        let (nonce, fresh) = match self.nonce(headers, LOGIN_CSRF_COOKIE) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let mut response = self.render(
            status,
            "admin/login.html",
            json!({ "csrf": self.token("login", &nonce), "error": error }),
        );
        if fresh {
            let cookie = self.cookie(headers, LOGIN_CSRF_COOKIE, &nonce, 24 * 3600);
            response = with_cookie(response, cookie);
        }
        response
    }
}

pub(super) async fn login_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match web.admin_session(&headers).await {
        Ok(Some(_)) => see_other("/admin"),
        Ok(None) => web.login_form(&headers, StatusCode::OK, None),
        Err(response) => response,
    }
}

pub(super) async fn login(
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
        return web.admin_forbidden();
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
    let store = &web.app.store;
    let limit = LoginLimit::new(&web, email, &peer);
    let locked = limit.locked_for(store, Accounts::Admins).await;
    let locked = match locked {
        Ok(locked) => locked,
        Err(e) => return web.failure(&e, "/admin/login"),
    };
    if let Some(secs) = locked {
        tracing::warn!(client = %peer.ip(), retry_after = secs, "sign-in refused: too many failures");
        let message = LoginLimit::message(secs);
        let mut response = web.login_form(&headers, StatusCode::TOO_MANY_REQUESTS, Some(&message));
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }

    let found = match store.find_admin_user_by_email(email).await {
        Ok(found) => found,
        Err(e) => return web.failure(&e, "/admin/login"),
    };
    let known_id = found.as_ref().map(|u| u.id);
    let user = found.filter(|u| u.disabled_at.is_none());
    let matches = credentials::verify_password_blocking(
        password.to_owned(),
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let Some(user) = user.filter(|_| matches) else {
        let failure = limit.failure(known_id, email, &peer);
        if let Err(e) = store.record_login_failure(&failure).await {
            return web.failure(&e, "/admin/login");
        }
        tracing::warn!(client = %peer.ip(), "sign-in failed");
        return web.login_form(&headers, StatusCode::UNAUTHORIZED, Some(INCORRECT));
    };

    let token = match new_token("mps_") {
        Ok(token) => token,
        Err(e) => return web.failure(&e, "/admin/login"),
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
    let session = match store.create_admin_session(&new, &limit.email_key).await {
        Ok(session) => session,
        Err(e) => return web.failure(&e, "/admin/login"),
    };
    tracing::info!(
        admin_user = user.id,
        session = session.id,
        "admin signed in"
    );
    let cookie = web.cookie(&headers, SESSION_COOKIE, &token, lifetime_ms / 1000);
    with_cookie(see_other("/admin"), cookie)
}

pub(super) async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let (session, cookie) = match web.admin_session(&headers).await {
        Ok(Some(found)) => found,
        // Nothing to sign out of; the form is refused all the same.
        Ok(None) => return web.admin_forbidden(),
        Err(response) => return response,
    };
    if !web.token_matches("session", &cookie, fields.get("csrf")) {
        tracing::warn!(
            session = session.id,
            "sign-out refused: missing or wrong CSRF token"
        );
        return web.admin_forbidden();
    }
    let actor = crate::lifecycle::Actor::AdminUser(session.user_id).to_string();
    match web
        .app
        .store
        .revoke_admin_session(session.id, &actor, "admin.signed_out")
        .await
    {
        Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
        Err(e) => return web.failure(&e, "/admin/login"),
    }
    tracing::info!(
        admin_user = session.user_id,
        session = session.id,
        "admin signed out"
    );
    with_cookie(
        see_other("/admin/login"),
        web.cookie(&headers, SESSION_COOKIE, "", 0),
    )
}
