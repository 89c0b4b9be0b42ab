//! The HTTP API: one router assembled from each module's `routes()`, the contract's error body,
//! and admin authentication.
//!
//! Route modules (`servers`, `agents`, `drift`, `catalogue`, `services`, `provisioning`,
//! `billing`, `cron`, `health`) never import each other. What they share lives beside them: `error` (the one error
//! type), `auth` (the admin extractor), `extract` (JSON bodies and path ids), `listing` (query
//! parameters and pages), `fields` (text, domains, package names, times) and `queueing` (the
//! answers of routes that queue tasks). A new route goes in the module of its resource, added to
//! that module's `routes()`.

mod admin_sessions;
mod agents;
pub mod auth;
mod backups;
pub mod billing;
mod catalogue;
mod cron;
mod drift;
pub mod error;
mod extract;
mod fields;
mod health;
mod listing;
pub mod openapi;
mod provisioning;
mod queueing;
mod servers;
mod services;
mod tokens;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Request bodies above this are refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes under the API's 60 s timeout, with their documentation.
fn timed_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .merge(health::routes())
        .merge(servers::routes())
        .merge(agents::routes())
        .merge(drift::routes())
        .merge(catalogue::routes())
        .merge(services::routes())
        .merge(backups::routes())
        .merge(provisioning::routes())
        .merge(billing::routes())
        .merge(cron::routes())
        .merge(tokens::routes())
        .merge(admin_sessions::routes())
}

/// The routes that wait for a task for up to two minutes, outside the timeout.
fn waiting_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .merge(provisioning::waiting_routes())
        .merge(billing::waiting_routes())
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut routes = timed_routes().into_openapi();
    routes.merge(waiting_routes().into_openapi());
    openapi::document(routes)
}

pub fn router(state: AppState) -> Router {
    let (timed, mut doc) = timed_routes().split_for_parts();
    let (waiting, waiting_doc) = waiting_routes().split_for_parts();
    doc.merge(waiting_doc);
    Router::new()
        .merge(timed)
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(60),
        ))
        // Merged after the timeout on purpose: these wait for a task for up to two minutes.
        .merge(waiting)
        .merge(openapi::docs_router(openapi::document(doc)))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .route_layer(middleware::from_fn(crate::telemetry::metrics::track_http))
        // Outermost: the id and its span cover everything below, the trace lines included.
        .layer(axum::middleware::from_fn(crate::request_id::assign))
        .with_state(state)
}

/// What `GET /metrics` renders from: the process's recorder, and the sampler it refreshes the
/// store-derived gauges with before each scrape.
#[derive(Clone, Debug)]
pub struct MetricsEndpoint {
    pub handle: metrics_exporter_prometheus::PrometheusHandle,
    pub sampler: crate::telemetry::metrics::Sampler,
}

/// `GET /metrics` in the Prometheus text format, unauthenticated: on its own listener
/// (`METRICS_LISTEN`) or merged into the API router.
pub fn metrics_router(endpoint: MetricsEndpoint) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(endpoint)
}

async fn scrape(
    axum::extract::State(endpoint): axum::extract::State<MetricsEndpoint>,
) -> impl axum::response::IntoResponse {
    endpoint.sampler.sample().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        endpoint.handle.render(),
    )
}
