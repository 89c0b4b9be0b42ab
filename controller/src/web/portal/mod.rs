//! The client portal at `/`: ordering (`order`), sign-up, sign-in, email verification and
//! password reset (`account`), and a signed-in customer's services (`services`) and invoices
//! (`invoices`).
//!
//! A customer's session is a random cookie (`mpanel_session`) whose SHA-256 the store keeps.
//! Forms before sign-in carry a CSRF token bound to a random cookie set with the form
//! (`mpanel_portal_csrf`); after sign-in, one bound to the session cookie. Everything a
//! signed-in page shows is looked up through the customer's id: another customer's service or
//! invoice answers the same 404 as one that does not exist.

mod account;
mod invoices;
mod order;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use minijinja::Environment;
use serde_json::{Value, json};

use super::{Web, cookie_value, see_other, with_cookie};
use crate::app::AppState;
use crate::crypto::token_hash;
use crate::store::customer_accounts::CustomerSession;

pub use order::checkout_success_page;

/// The customer's session cookie.
pub const SESSION_COOKIE: &str = "mpanel_session";
/// The random value the anonymous forms' CSRF tokens are an HMAC of.
pub const CSRF_COOKIE: &str = "mpanel_portal_csrf";

/// The portal's templates, named `portal/…`.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    (
        "portal/layout.html",
        include_str!("../templates/portal/layout.html"),
    ),
    (
        "portal/partials/fields.html",
        include_str!("../templates/portal/partials/fields.html"),
    ),
    (
        "portal/partials/order.html",
        include_str!("../templates/portal/partials/order.html"),
    ),
    (
        "portal/home.html",
        include_str!("../templates/portal/home.html"),
    ),
    (
        "portal/order.html",
        include_str!("../templates/portal/order.html"),
    ),
    (
        "portal/checkout.html",
        include_str!("../templates/portal/checkout.html"),
    ),
    (
        "portal/login.html",
        include_str!("../templates/portal/login.html"),
    ),
    (
        "portal/signup.html",
        include_str!("../templates/portal/signup.html"),
    ),
    (
        "portal/reset_request.html",
        include_str!("../templates/portal/reset_request.html"),
    ),
    (
        "portal/reset_password.html",
        include_str!("../templates/portal/reset_password.html"),
    ),
    (
        "portal/services.html",
        include_str!("../templates/portal/services.html"),
    ),
    (
        "portal/service.html",
        include_str!("../templates/portal/service.html"),
    ),
    (
        "portal/invoices.html",
        include_str!("../templates/portal/invoices.html"),
    ),
    (
        "portal/invoice.html",
        include_str!("../templates/portal/invoice.html"),
    ),
];

pub(super) fn routes() -> Router<Web> {
    Router::new()
        .route("/", get(order::home))
        .route("/order", get(order::order_page).post(order::place_order))
        .route("/checkout/{session_id}/events", get(order::checkout_events))
        .route("/login", get(account::login_page).post(account::login))
        .route("/logout", post(account::logout))
        .route("/signup", get(account::signup_page).post(account::signup))
        .route(
            "/password/reset",
            get(account::reset_request_page).post(account::reset_request),
        )
        .route(
            "/password/reset/{token}",
            get(account::reset_page).post(account::reset),
        )
        .route("/verify/{token}", get(account::verify))
        .route("/services", get(services::list))
        .route("/services/{id}", get(services::show))
        .route("/services/{id}/credentials", post(services::reveal))
        .route("/services/{id}/password", post(services::change_password))
        .route("/services/{id}/cancel", post(services::cancel))
        .route("/invoices", get(invoices::list))
        .route("/invoices/{id}", get(invoices::show))
        .route("/invoices/{id}/pay", post(invoices::pay))
}

/// A signed-in customer: their session and its cookie (what the CSRF token is bound to).
pub(crate) struct Customer {
    pub session: CustomerSession,
    pub cookie: String,
}

impl Customer {
    pub fn customer_id(&self) -> i64 {
        self.session.customer_id
    }
}

/// Field errors and the values to show again, for a form re-shown after bad input.
#[derive(Debug, Default)]
pub(crate) struct FormState {
    pub errors: BTreeMap<&'static str, String>,
    pub values: BTreeMap<&'static str, String>,
}

impl FormState {
    pub fn error(&mut self, field: &'static str, message: impl Into<String>) {
        self.errors.entry(field).or_insert_with(|| message.into());
    }

    pub fn keep(&mut self, field: &'static str, value: &str) {
        self.values.insert(field, value.to_owned());
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Web {
    /// The signed-in customer posting a form with its session's CSRF token; a 403 page when
    /// there is no session or the token is missing or wrong.
    pub(crate) async fn customer_form(
        &self,
        headers: &HeaderMap,
        fields: &HashMap<String, String>,
    ) -> Result<Customer, Response> {
        let customer = self
            .customer(headers)
            .await?
            .ok_or_else(|| self.portal_forbidden())?;
        if !self.portal_csrf_ok(headers, Some(&customer), fields) {
            return Err(self.portal_forbidden());
        }
        Ok(customer)
    }

    /// The browser's live customer session, if it has one.
    pub(crate) async fn customer(&self, headers: &HeaderMap) -> Result<Option<Customer>, Response> {
        let Some(cookie) = cookie_value(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        match self
            .app
            .store
            .authenticate_customer_session(&token_hash(&cookie))
            .await
        {
            Ok(found) => Ok(found.map(|session| Customer { session, cookie })),
            Err(e) => Err(self.failure(&e, "/")),
        }
    }

    /// The signed-in customer, or a response sending the browser to the sign-in page.
    pub(crate) async fn require_customer(&self, headers: &HeaderMap) -> Result<Customer, Response> {
        match self.customer(headers).await? {
            Some(c) => Ok(c),
            None => Err(see_other("/login")),
        }
    }

    /// The CSRF token for a portal form: bound to the session when signed in, else to the
    /// browser's pre-session cookie (and that cookie, when it must be set).
    pub(crate) fn portal_csrf(
        &self,
        headers: &HeaderMap,
        customer: Option<&Customer>,
    ) -> Result<(String, Option<HeaderValue>), Box<Response>> {
        if let Some(c) = customer {
            return Ok((self.token("portal", &c.cookie), None));
        }
        let (nonce, fresh) = self.nonce(headers, CSRF_COOKIE)?;
        let cookie = fresh.then(|| self.cookie(headers, CSRF_COOKIE, &nonce, 24 * 3600));
        Ok((self.token("portal-anonymous", &nonce), cookie))
    }

    /// Whether a posted form's CSRF token is the one [`Web::portal_csrf`] gave it.
    pub(crate) fn portal_csrf_ok(
        &self,
        headers: &HeaderMap,
        customer: Option<&Customer>,
        fields: &HashMap<String, String>,
    ) -> bool {
        match customer {
            Some(c) => self.token_matches("portal", &c.cookie, fields.get("csrf")),
            None => cookie_value(headers, CSRF_COOKIE).is_some_and(|nonce| {
                self.token_matches("portal-anonymous", &nonce, fields.get("csrf"))
            }),
        }
    }

    pub(crate) fn portal_forbidden(&self) -> Response {
        self.forbidden("/", "Back to the portal")
    }

    /// A portal page: `ctx` plus who is signed in (for the header) and the form's CSRF token;
    /// sets the pre-session CSRF cookie when the page needs one.
    pub(crate) fn portal_page(
        &self,
        headers: &HeaderMap,
        customer: Option<&Customer>,
        status: StatusCode,
        template: &str,
        mut ctx: Value,
    ) -> Response {
        let (csrf, cookie) = match self.portal_csrf(headers, customer) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        if let Value::Object(map) = &mut ctx {
            map.insert("csrf".into(), Value::String(csrf));
            if let Some(c) = customer {
                map.insert(
                    "customer".into(),
                    json!({
                        "name": c.session.name,
                        "email": c.session.email,
                        "verified": c.session.email_verified_at.is_some(),
                    }),
                );
            }
        }
        let mut response = self.render(status, template, ctx);
        if matches!(template, "portal/order.html" | "portal/invoice.html")
            && let Some(csp) = self.checkout_policy()
        {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_SECURITY_POLICY, csp);
        }
        match cookie {
            Some(cookie) => with_cookie(response, cookie),
            None => response,
        }
    }

    /// The page policy with Stripe Checkout's origin allowed as a form's destination: the
    /// order and pay forms answer with a redirect there, and browsers hold redirects after a
    /// form to `form-action`. `None` (the plain policy) when the origin cannot be told.
    fn checkout_policy(&self) -> Option<HeaderValue> {
        let base = self.app.config.stripe.api_base.trim_end_matches('/');
        let origin = if base == "https://api.stripe.com" {
            "https://checkout.stripe.com".to_owned()
        } else {
            let (scheme, rest) = base.split_once("://")?;
            let host = rest.split('/').next()?;
            if !matches!(scheme, "http" | "https")
                || host.is_empty()
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            {
                return None;
            }
            format!("{scheme}://{host}")
        };
        let policy = super::CONTENT_SECURITY_POLICY_VALUE.replace(
            "form-action 'self'",
            &format!("form-action 'self' {origin}"),
        );
        HeaderValue::from_str(&policy).ok()
    }

    /// A form re-shown with its field errors (400), the values kept but never a password.
    pub(crate) fn portal_form(
        &self,
        headers: &HeaderMap,
        customer: Option<&Customer>,
        status: StatusCode,
        template: &str,
        form: &FormState,
        mut ctx: Value,
    ) -> Response {
        if let Value::Object(map) = &mut ctx {
            map.insert("errors".into(), json!(form.errors));
            let values: BTreeMap<_, _> = form
                .values
                .iter()
                .filter(|(k, _)| !k.contains("password"))
                .collect();
            map.insert("values".into(), json!(values));
        }
        self.portal_page(headers, customer, status, template, ctx)
    }
}

/// `9.99 USD` from minor units and a currency code.
pub(crate) fn money(amount_minor: i64, currency: &str) -> String {
    match mpanel_common::Currency::parse(currency) {
        Ok(c) => mpanel_common::Money {
            amount_minor,
            currency: c,
        }
        .to_string(),
        Err(_) => format!("{amount_minor} {currency}"),
    }
}

/// `YYYY-MM-DD` of Unix milliseconds.
pub(crate) fn day(ms: i64) -> String {
    mpanel_common::billing::format_date(mpanel_common::billing::ms_to_date(ms))
}

/// A positive id from a path segment; anything else is a page that does not exist.
pub(crate) fn path_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

/// The client's address, as the rate limit and the activity log record it.
pub(crate) fn client_ip(peer: &std::net::SocketAddr) -> String {
    peer.ip().to_string()
}

/// A page engine for the portal's pages rendered from outside the page router (the checkout
/// success route lives with the API, and answers a browser with a portal page). The templates
/// are compiled once per process.
pub(crate) fn web_for(app: &AppState) -> Web {
    static PAGES: OnceLock<Arc<Environment<'static>>> = OnceLock::new();
    static CSRF: OnceLock<Arc<aws_lc_rs::hmac::Key>> = OnceLock::new();
    Web {
        app: app.clone(),
        csrf: CSRF.get_or_init(|| Arc::new(super::csrf_key(app))).clone(),
        pages: PAGES.get_or_init(|| Arc::new(super::pages())).clone(),
    }
}

/// Whether the request's `Accept` header ranks `text/html` above JSON (a browser's does).
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut html = None;
    let mut json = None;
    for (position, part) in accept.split(',').enumerate() {
        let mut pieces = part.split(';');
        let kind = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q: f32 = pieces
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse().ok())
            })
            .unwrap_or(1.0);
        let rank = (q, -(position as i64));
        match kind.as_str() {
            "text/html" | "application/xhtml+xml" if html.is_none_or(|h| rank > h) => {
                html = Some(rank);
            }
            "application/json" if json.is_none_or(|j| rank > j) => json = Some(rank),
            _ => {}
        }
    }
    match (html, json) {
        (Some(h), Some(j)) => h.0 > 0.0 && h > j,
        (Some(h), None) => h.0 > 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn browsers_get_html_and_clients_json() {
        assert!(prefers_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!prefers_html(&accept("application/json")));
        assert!(!prefers_html(&accept("*/*")));
        assert!(!prefers_html(&HeaderMap::new()));
        assert!(!prefers_html(&accept("application/json, text/html;q=0.5")));
        assert!(!prefers_html(&accept("text/html;q=0")));
    }

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(money(999, "USD"), "9.99 USD");
        assert_eq!(money(1000, "JPY"), "1000 JPY");
    }
}
