//! The admin dashboard under `/admin`: sign-in and sessions (`signin`), and the pages behind them.
//! Every page but the sign-in form needs an admin session ([`AdminPage`] extracts it, or sends
//! the browser to the sign-in page).

mod signin;

use axum::Router;
use axum::routing::{get, post};

use super::Web;

pub use signin::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};

/// The admin area's templates, named `admin/…`.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    (
        "admin/layout.html",
        include_str!("../templates/admin/layout.html"),
    ),
    (
        "admin/login.html",
        include_str!("../templates/admin/login.html"),
    ),
    (
        "admin/home.html",
        include_str!("../templates/admin/home.html"),
    ),
];

pub(super) fn routes() -> Router<Web> {
    Router::new()
        .route("/admin", get(signin::home))
        .route("/admin/login", get(signin::login_page).post(signin::login))
        .route("/admin/logout", post(signin::logout))
}
