//! The admin dashboard under `/admin`: sign-in and sessions (`signin`), the overview of the fleet,
//! the queue, billing and scheduled jobs (`dashboard`), the forms that act on servers and tasks
//! (`actions`) and the event stream that keeps the overview current (`live`). Every page but the
//! sign-in form needs an admin session ([`Web::admin_page`] finds it, or sends the browser to the
//! sign-in page).

mod actions;
mod dashboard;
mod live;
mod signin;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};

use super::Web;

pub use signin::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};

/// The admin area's templates, named `admin/…`. The partials are the overview's live regions:
/// the page includes them and the event stream renders them alone, so the two never differ.
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
    (
        "admin/enrollment_token.html",
        include_str!("../templates/admin/enrollment_token.html"),
    ),
    (
        "admin/partials/fleet.html",
        include_str!("../templates/admin/partials/fleet.html"),
    ),
    (
        "admin/partials/fleet_actions.html",
        include_str!("../templates/admin/partials/fleet_actions.html"),
    ),
    (
        "admin/partials/queue.html",
        include_str!("../templates/admin/partials/queue.html"),
    ),
    (
        "admin/partials/billing.html",
        include_str!("../templates/admin/partials/billing.html"),
    ),
    (
        "admin/partials/cron.html",
        include_str!("../templates/admin/partials/cron.html"),
    ),
];

pub(super) fn routes() -> Router<Web> {
    Router::new()
        .route("/admin", get(dashboard::overview))
        .route("/admin/live", get(live::stream))
        .route("/admin/servers/{id}/drain", post(actions::drain_server))
        .route("/admin/servers/{id}/enable", post(actions::enable_server))
        .route(
            "/admin/servers/{id}/enrollment-token",
            post(actions::enrollment_token),
        )
        .route("/admin/servers/{id}/revoke", post(actions::revoke_server))
        .route("/admin/tasks/{id}/retry", post(actions::retry_task))
        .route("/admin/tasks/{id}/clear", post(actions::clear_task))
        .route("/admin/failed/clear", post(actions::clear_failed))
        .route("/admin/login", get(signin::login_page).post(signin::login))
        .route("/admin/logout", post(signin::logout))
        // One poller per router (so per controller), started by the first stream.
        .layer(Extension(Arc::new(live::LiveHub::default())))
}
