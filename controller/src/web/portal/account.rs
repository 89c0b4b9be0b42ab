//! Customer accounts: sign-in (rate-limited per email and per client address with the
//! `ADMIN_LOGIN_*` settings, counted in the database so the limit holds across replicas),
//! sign-out, sign-up with a verification email, and password reset by a one-time emailed link.
//! A reset request answers the same whether or not the address has an account.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::header::{RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{Customer, FormState, SESSION_COOKIE, client_ip};
use crate::crypto::{new_token, token_hash};
use crate::store::customer_accounts::{
    CustomerAccount, NewCustomerSession, NewLinkEmail, NewSignUp, TokenPurpose,
};
use crate::store::{StoreError, now_ms};
use crate::web::{Accounts, LoginLimit, Web, credentials, form_fields, see_other, with_cookie};

const INCORRECT: &str = "The email or password is incorrect.";
/// How long an emailed link works.
const VERIFY_LINK_HOURS: i64 = 48;
const RESET_LINK_HOURS: i64 = 1;

type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map_or("", String::as_str)
}

/// A name as customers type it: 1 to 200 characters, no control characters.
pub(super) fn check_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Enter your name.");
    }
    if name.chars().count() > 200 {
        return Err("Use at most 200 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("Use letters, digits and punctuation only.");
    }
    Ok(name.to_owned())
}

/// A new account's fields (name, email, password), checked; errors go to `form`.
pub(super) fn check_new_account(
    fields: &Fields,
    form: &mut FormState,
) -> Option<(String, String, String)> {
    let name = field(fields, "name");
    let email = field(fields, "email");
    let password = field(fields, "password");
    form.keep("name", name);
    form.keep("email", email);
    let name = check_name(name).map_err(|e| form.error("name", e)).ok();
    let email = credentials::email_address(email)
        .map_err(|e| form.error("email", format!("Enter a valid email address: {e}.")))
        .ok();
    if let Err(e) = credentials::check_new_password(password) {
        form.error("password", format!("The password {e}."));
    }
    Some((name?, email?, password.to_owned())).filter(|_| form.is_empty())
}

impl Web {
    /// An email with a one-time link, sealed for the outbox.
    fn link_email(
        &self,
        purpose: TokenPurpose,
        token: &str,
        customer_name: &str,
    ) -> anyhow::Result<NewLinkEmail> {
        // The subject is the template's; the outbox row keeps a copy for the log.
        let (template, path, hours, subject) = match purpose {
            TokenPurpose::VerifyEmail => (
                "account_verify",
                "verify",
                VERIFY_LINK_HOURS,
                "Confirm your email address",
            ),
            TokenPurpose::ResetPassword => (
                "password_reset",
                "password/reset",
                RESET_LINK_HOURS,
                "Reset your password",
            ),
        };
        let base = self.app.config.public_url.trim_end_matches('/');
        let context = json!({
            "customer_name": customer_name,
            "link": format!("{base}/{path}/{token}"),
            "expires_in": if hours == 1 { "one hour".to_owned() } else { format!("{hours} hours") },
        });
        let body_sealed = self
            .app
            .cipher
            .seal_str(&context.to_string())
            .map_err(|e| anyhow::anyhow!("cannot seal an email: {e}"))?;
        let hash = token_hash(token);
        Ok(NewLinkEmail {
            purpose,
            dedupe_key: format!("{}:{}", purpose.as_str(), &hash[..32]),
            token_hash: hash,
            expires_at: now_ms() + hours * 3_600_000,
            template: template.to_owned(),
            subject: subject.to_owned(),
            body_sealed,
        })
    }

    /// Opens a session for `customer_id` and answers with its cookie set on a 303 to `to`.
    pub(super) async fn start_customer_session(
        &self,
        headers: &HeaderMap,
        peer: &SocketAddr,
        customer_id: i64,
        email: &str,
        to: &str,
    ) -> Result<(Customer, HeaderValue), Response> {
        let token = new_token("mpc_").map_err(|e| self.failure(&e, "/login"))?;
        let lifetime_ms = i64::from(self.app.config.admin_login.session_hours) * 3_600_000;
        let user_agent = headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(300).collect());
        let new = NewCustomerSession {
            customer_id,
            token_hash: token_hash(&token),
            expires_at: now_ms() + lifetime_ms,
            user_agent,
            ip_address: Some(client_ip(peer)),
        };
        let clear_key = format!("email:{}", email.to_lowercase());
        let session = self
            .app
            .store
            .create_customer_session(&new, &clear_key)
            .await
            .map_err(|e| self.failure(&e, "/login"))?;
        tracing::info!(customer_id, session = session.id, to, "customer signed in");
        let cookie = self.cookie(headers, SESSION_COOKIE, &token, lifetime_ms / 1000);
        Ok((
            Customer {
                session,
                cookie: token,
            },
            cookie,
        ))
    }

    /// Signs up a new customer and sends the verification email (one transaction). A taken
    /// address is a field error.
    pub(super) async fn sign_up(
        &self,
        name: &str,
        email: &str,
        password: &str,
        peer: &SocketAddr,
        form: &mut FormState,
    ) -> Result<Option<i64>, Response> {
        let hash = {
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || credentials::hash_password(&password))
                .await
                .map_err(|e| self.failure(&e, "/"))?
                .map_err(|e| self.failure(&e, "/"))?
        };
        let token = new_token("").map_err(|e| self.failure(&e, "/"))?;
        let verification = self
            .link_email(TokenPurpose::VerifyEmail, &token, name)
            .map_err(|e| self.failure(&e, "/"))?;
        let new = NewSignUp {
            email: email.to_owned(),
            name: name.to_owned(),
            password_hash: hash,
            verification,
        };
        match self
            .app
            .store
            .sign_up_customer(&new, &client_ip(peer))
            .await
        {
            Ok(id) => {
                self.app
                    .dispatcher
                    .wake_queue(&crate::store::lease_queue::EMAIL);
                tracing::info!(customer_id = id, "customer signed up");
                Ok(Some(id))
            }
            Err(StoreError::Conflict(_)) => {
                form.error(
                    "email",
                    "This address already has an account with us. Sign in, or reset your password to set one.",
                );
                Ok(None)
            }
            Err(e) => Err(self.failure(&e, "/")),
        }
    }

    fn portal_login_form(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        form: &FormState,
        notice: Option<&str>,
    ) -> Response {
        self.portal_form(
            headers,
            None,
            status,
            "portal/login.html",
            form,
            json!({ "notice": notice }),
        )
    }
}

pub(super) async fn login_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match web.customer(&headers).await {
        Ok(Some(_)) => see_other("/services"),
        Ok(None) => web.portal_login_form(&headers, StatusCode::OK, &FormState::default(), None),
        Err(response) => response,
    }
}

pub(super) async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    if !web.portal_csrf_ok(&headers, None, &fields) {
        tracing::warn!(client = %peer.ip(), "portal sign-in refused: missing or wrong CSRF token");
        return web.portal_forbidden();
    }
    let email = field(&fields, "email").trim();
    let password = field(&fields, "password");
    let mut form = FormState::default();
    form.keep("email", email);
    if email.is_empty() || email.len() > 254 {
        form.error("email", "Enter your email address.");
    }
    if password.is_empty() {
        form.error("password", "Enter your password.");
    }
    if !form.is_empty() {
        return web.portal_login_form(&headers, StatusCode::BAD_REQUEST, &form, None);
    }

    let store = &web.app.store;
    let limit = LoginLimit::new(&web, email, &peer);
    let locked = limit.locked_for(store, Accounts::Customers).await;
    let locked = match locked {
        Ok(locked) => locked,
        Err(e) => return web.failure(&e, "/login"),
    };
    if let Some(secs) = locked {
        tracing::warn!(client = %peer.ip(), retry_after = secs, "portal sign-in refused: too many failures");
        form.error("form", LoginLimit::message(secs));
        let mut response =
            web.portal_login_form(&headers, StatusCode::TOO_MANY_REQUESTS, &form, None);
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }

    let found = match store.customer_account_by_email(email).await {
        Ok(found) => found,
        Err(e) => return web.failure(&e, "/login"),
    };
    let known_id = found.as_ref().map(|a| a.customer_id);
    let account = found.filter(|a| a.status == "active");
    let matches = credentials::verify_password_blocking(
        password.to_owned(),
        account.as_ref().map(|a| a.password_hash.clone()),
    )
    .await;
    let Some(account) = account.filter(|_| matches) else {
        let failure = limit.failure(known_id, email, &peer);
        if let Err(e) = store.record_customer_login_failure(&failure).await {
            return web.failure(&e, "/login");
        }
        tracing::warn!(client = %peer.ip(), "portal sign-in failed");
        form.error("form", INCORRECT);
        return web.portal_login_form(&headers, StatusCode::UNAUTHORIZED, &form, None);
    };
    match web
        .start_customer_session(
            &headers,
            &peer,
            account.customer_id,
            &account.email,
            "/services",
        )
        .await
    {
        Ok((_, cookie)) => with_cookie(see_other("/services"), cookie),
        Err(response) => response,
    }
}

pub(super) async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    let customer = match web.customer(&headers).await {
        Ok(Some(c)) => c,
        Ok(None) => return web.portal_forbidden(),
        Err(response) => return response,
    };
    if !web.portal_csrf_ok(&headers, Some(&customer), &fields) {
        tracing::warn!(
            session = customer.session.id,
            "portal sign-out refused: missing or wrong CSRF token"
        );
        return web.portal_forbidden();
    }
    if let Err(e) = web
        .app
        .store
        .revoke_customer_session(customer.session.id, customer.customer_id())
        .await
    {
        return web.failure(&e, "/");
    }
    tracing::info!(
        customer_id = customer.customer_id(),
        session = customer.session.id,
        "customer signed out"
    );
    with_cookie(
        see_other("/login"),
        web.cookie(&headers, SESSION_COOKIE, "", 0),
    )
}

pub(super) async fn signup_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match web.customer(&headers).await {
        Ok(Some(_)) => see_other("/services"),
        Ok(None) => web.portal_form(
            &headers,
            None,
            StatusCode::OK,
            "portal/signup.html",
            &FormState::default(),
            json!({}),
        ),
        Err(response) => response,
    }
}

pub(super) async fn signup(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    if !web.portal_csrf_ok(&headers, None, &fields) {
        return web.portal_forbidden();
    }
    let mut form = FormState::default();
    let checked = check_new_account(&fields, &mut form);
    let Some((name, email, password)) = checked else {
        return web.portal_form(
            &headers,
            None,
            StatusCode::BAD_REQUEST,
            "portal/signup.html",
            &form,
            json!({}),
        );
    };
    let id = match web
        .sign_up(&name, &email, &password, &peer, &mut form)
        .await
    {
        Ok(Some(id)) => id,
        Ok(None) => {
            return web.portal_form(
                &headers,
                None,
                StatusCode::BAD_REQUEST,
                "portal/signup.html",
                &form,
                json!({}),
            );
        }
        Err(response) => return response,
    };
    match web
        .start_customer_session(&headers, &peer, id, &email, "/services")
        .await
    {
        Ok((_, cookie)) => with_cookie(see_other("/services"), cookie),
        Err(response) => response,
    }
}

pub(super) async fn reset_request_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    web.portal_form(
        &headers,
        None,
        StatusCode::OK,
        "portal/reset_request.html",
        &FormState::default(),
        json!({}),
    )
}

pub(super) async fn reset_request(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    if !web.portal_csrf_ok(&headers, None, &fields) {
        return web.portal_forbidden();
    }
    let raw = field(&fields, "email");
    let mut form = FormState::default();
    form.keep("email", raw);
    let email = match credentials::email_address(raw) {
        Ok(email) => email,
        Err(e) => {
            form.error("email", format!("Enter a valid email address: {e}."));
            return web.portal_form(
                &headers,
                None,
                StatusCode::BAD_REQUEST,
                "portal/reset_request.html",
                &form,
                json!({}),
            );
        }
    };
    // The same answer whether or not the address is known; only a known, open customer gets
    // an email (a customer without a portal account sets their first password this way).
    let customer = match web.app.store.customer_by_email(&email).await {
        Ok(found) => found.filter(|c| c.status == mpanel_common::status::CustomerStatus::Active),
        Err(e) => return web.failure(&e, "/password/reset"),
    };
    if let Some(customer) = customer {
        let sent = async {
            let token = new_token("")?;
            let link = web.link_email(TokenPurpose::ResetPassword, &token, &customer.name)?;
            web.app
                .store
                .issue_customer_link(customer.id.get(), &link)
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = sent {
            return web.failure(&e, "/password/reset");
        }
        web.app
            .dispatcher
            .wake_queue(&crate::store::lease_queue::EMAIL);
        tracing::info!(customer_id = customer.id.get(), client = %peer.ip(), "password reset link sent");
    } else {
        tracing::info!(client = %peer.ip(), "password reset asked for an unknown address");
    }
    web.portal_page(
        &headers,
        None,
        StatusCode::OK,
        "portal/reset_request.html",
        json!({ "sent": true }),
    )
}

/// A link that is not (or no longer) valid: the same page for every reason.
fn dead_link(web: &Web, what: &str) -> Response {
    web.render(
        StatusCode::NOT_FOUND,
        "message.html",
        json!({
            "title": "This link does not work",
            "message": format!("The {what} link is wrong, was used already or has expired."),
            "link": "/password/reset",
            "link_text": "Ask for a new link",
        }),
    )
}

fn plausible_token(token: &str) -> bool {
    crate::web::plausible(token)
}

pub(super) async fn reset_page(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if !plausible_token(&token) {
        return dead_link(&web, "password reset");
    }
    match web
        .app
        .store
        .customer_link_owner(TokenPurpose::ResetPassword, &token_hash(&token))
        .await
    {
        Ok(Some(_)) => web.portal_form(
            &headers,
            None,
            StatusCode::OK,
            "portal/reset_password.html",
            &FormState::default(),
            json!({ "action": format!("/password/reset/{token}") }),
        ),
        Ok(None) => dead_link(&web, "password reset"),
        Err(e) => web.failure(&e, "/password/reset"),
    }
}

pub(super) async fn reset(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    form: Result<Form<Fields>, FormRejection>,
) -> Response {
    let fields = form_fields(form);
    if !web.portal_csrf_ok(&headers, None, &fields) {
        return web.portal_forbidden();
    }
    if !plausible_token(&token) {
        return dead_link(&web, "password reset");
    }
    let password = field(&fields, "password");
    let mut form = FormState::default();
    if let Err(e) = credentials::check_new_password(password) {
        form.error("password", format!("The password {e}."));
    } else if field(&fields, "password_confirm") != password {
        form.error("password_confirm", "The two passwords differ.");
    }
    if !form.is_empty() {
        return web.portal_form(
            &headers,
            None,
            StatusCode::BAD_REQUEST,
            "portal/reset_password.html",
            &form,
            json!({ "action": format!("/password/reset/{token}") }),
        );
    }
    let hash = {
        let password = password.to_owned();
        match tokio::task::spawn_blocking(move || credentials::hash_password(&password)).await {
            Ok(Ok(hash)) => hash,
            Ok(Err(e)) => return web.failure(&e, "/password/reset"),
            Err(e) => return web.failure(&e, "/password/reset"),
        }
    };
    let id = match web
        .app
        .store
        .reset_customer_password(&token_hash(&token), &hash)
        .await
    {
        Ok(Some(id)) => id,
        Ok(None) => return dead_link(&web, "password reset"),
        Err(e) => return web.failure(&e, "/password/reset"),
    };
    let account: CustomerAccount = match web.app.store.customer_account(id).await {
        Ok(Some(a)) => a,
        Ok(None) => return web.failure(&"the account vanished after its reset", "/login"),
        Err(e) => return web.failure(&e, "/login"),
    };
    tracing::info!(customer_id = id, "customer password reset");
    match web
        .start_customer_session(&headers, &peer, id, &account.email, "/services")
        .await
    {
        Ok((_, cookie)) => with_cookie(see_other("/services"), cookie),
        Err(response) => response,
    }
}

pub(super) async fn verify(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if !plausible_token(&token) {
        return dead_link(&web, "verification");
    }
    match web
        .app
        .store
        .verify_customer_email(&token_hash(&token))
        .await
    {
        Ok(Some(id)) => {
            tracing::info!(customer_id = id, "customer email verified");
            let customer = match web.customer(&headers).await {
                Ok(found) => found,
                Err(response) => return response,
            };
            web.portal_page(
                &headers,
                customer.as_ref(),
                StatusCode::OK,
                "message.html",
                json!({
                    "title": "Email address confirmed",
                    "message": "Thank you: your email address is confirmed.",
                    "link": if customer.is_some() { "/services" } else { "/login" },
                    "link_text": "Continue",
                }),
            )
        }
        Ok(None) => dead_link(&web, "verification"),
        Err(e) => web.failure(&e, "/"),
    }
}
