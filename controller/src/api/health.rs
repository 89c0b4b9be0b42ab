//! Liveness and readiness probes. `/healthz` says the process serves HTTP; `/readyz` also
//! checks the database, so a load balancer stops sending traffic when storage is gone. A stale
//! scheduled job does not make the controller unready (serving requests is unaffected), but
//! `/readyz` names it under `warnings` for monitoring to pick up.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::fields::rfc3339;
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "database": state.store.backend().as_str(),
                "warnings": warnings(&state).await,
            })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unreachable" })),
            )
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
