//! Scheduled-job routes (admin): the jobs with their schedule, latest run, next slot, leader
//! and staleness; a manual run; the runs, newest first.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{PathSegment, shown};
use super::fields::rfc3339;
use super::listing::{Params, finish};
use crate::app::AppState;
use crate::cron::{CronError, JobStatus};
use crate::store::cron::CronRun;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/cron/jobs", get(list_jobs))
        .route("/api/cron/jobs/{name}/run", post(run_job))
        .route("/api/cron/runs", get(list_runs))
}

/// A run as the API shows it (times RFC 3339).
fn run_json(run: &CronRun) -> Value {
    json!({
        "id": run.id,
        "job": run.job_name,
        "scheduledFor": rfc3339(run.scheduled_for),
        "startedAt": run.started_at.map(rfc3339),
        "finishedAt": run.finished_at.map(rfc3339),
        "status": run.status,
        "summary": run.output.as_ref().map(|s| &s.0),
        "error": run.error,
        "trigger": run.trigger,
    })
}

fn job_json(job: &JobStatus, timezone: &str) -> Value {
    json!({
        "name": job.name,
        "schedule": job.schedule.as_deref().unwrap_or("off"),
        "enabled": job.schedule.is_some(),
        "timezone": timezone,
        "lastRun": job.last_run.as_ref().map(run_json),
        "nextRunAt": job.next_run_at.map(rfc3339),
        "leader": job.leader,
        "stale": job.stale,
    })
}

fn unknown_job(state: &AppState, field: &str, name: &str) -> ApiError {
    let known: Vec<&str> = state
        .cron
        .registry()
        .jobs()
        .iter()
        .map(|j| j.name.as_str())
        .collect();
    ApiError {
        field: Some(field.to_owned()),
        ..ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!(
                "{field}: no scheduled job is named '{}'; the jobs are {}",
                shown(name),
                known.join(", ")
            ),
        )
    }
}

async fn list_jobs(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let jobs = state.cron.jobs(state.cron.now()).await?;
    let zone = state.cron.registry().zone().name();
    Ok(Json(json!({
        "jobs": jobs.iter().map(|j| job_json(j, zone)).collect::<Vec<_>>(),
    })))
}

/// 202 with a new run's id; 200 with the open run's id when one is queued or running.
async fn run_job(
    admin: Admin,
    State(state): State<AppState>,
    PathSegment(name): PathSegment,
) -> ApiResult<(StatusCode, Json<Value>)> {
    match state
        .cron
        .request_run(&name, state.cron.now(), &admin.actor())
        .await
    {
        Ok((run, created)) => {
            let status = if created {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                Json(json!({ "runId": run.id, "job": run.job_name, "status": run.status })),
            ))
        }
        Err(CronError::UnknownJob(_)) => Err(unknown_job(&state, "name", &name)),
        Err(CronError::Store(e)) => Err(e.into()),
    }
}

async fn list_runs(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["job", "limit", "cursor"])?;
    let job = params.get("job");
    if let Some(job) = job
        && state.cron.registry().get(job).is_none()
    {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            ..unknown_job(&state, "job", job)
        });
    }
    let page = params.page(50, 500)?;
    let mut runs = state.cron.runs(job, page).await?;
    let next = finish(&mut runs, page, |r| r.id);
    Ok(Json(json!({
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}
