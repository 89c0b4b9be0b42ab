//! The client portal at `/`: the customer's side of the product (ordering, their services and
//! invoices).

use axum::Router;

use super::Web;

/// The portal's templates, named `portal/…`.
pub(super) const TEMPLATES: &[(&str, &str)] = &[(
    "portal/layout.html",
    include_str!("../templates/portal/layout.html"),
)];

pub(super) fn routes() -> Router<Web> {
    Router::new()
}
