//! Liveness and readiness probes. `/healthz` says the process serves HTTP; `/readyz` also
//! checks the database, so a load balancer stops sending traffic when storage is gone. A stale
//! scheduled job does not make the controller unready (serving requests is unaffected), but
//! `/readyz` names it under `warnings` for monitoring to pick up. Both are public.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::fields::rfc3339;
use crate::app::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// The controller's version.
    #[schema(value_type = String, example = "0.1.0")]
    version: &'static str,
}

/// The controller serves requests and its database answers.
#[derive(Debug, Serialize, ToSchema)]
struct Ready {
    /// Always `ready`.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
    /// The database backend: `postgres` or `sqlite`.
    #[schema(value_type = String, example = "postgres")]
    database: &'static str,
    /// One line per scheduled job that has gone stale; empty when all is well.
    warnings: Vec<String>,
}

/// The database does not answer.
#[derive(Debug, Serialize, ToSchema)]
struct NotReady {
    /// Always `unavailable`.
    #[schema(value_type = String, example = "unavailable")]
    status: &'static str,
    /// Always `unreachable`.
    #[schema(value_type = String, example = "unreachable")]
    database: &'static str,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "Up.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: the database answers; stale scheduled jobs are named under `warnings`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 503, description = "The database does not answer (or, with no body, the \
            check took longer than the API's 60 s limit).", body = NotReady),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(Ready {
            status: "ready",
            database: state.store.backend().as_str(),
            warnings: warnings(&state).await,
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(NotReady {
                    status: "unavailable",
                    database: "unreachable",
                }),
            )
                .into_response()
        }
    }
}

/// One line per stale scheduled job.
async fn warnings(state: &AppState) -> Vec<String> {
    let stale = match state.cron.stale_jobs(state.cron.now()).await {
        Ok(stale) => stale,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the scheduled jobs for readiness");
            return vec!["cron: the scheduled jobs could not be checked".to_owned()];
        }
    };
    stale
        .iter()
        .map(|job| {
            let since = match job.last_success_for {
                Some(at) => format!("since the run for {}", rfc3339(at)),
                None => "ever".to_owned(),
            };
            format!(
                "cron job {} is stale: no successful run {since} (schedule {})",
                job.name,
                job.schedule.as_deref().unwrap_or("off")
            )
        })
        .collect()
}
