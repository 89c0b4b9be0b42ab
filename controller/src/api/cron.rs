//! Scheduled-job routes (admin): the jobs with their schedule, latest run, next slot, leader
//! and staleness; a manual run; the runs, newest first.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{PathSegment, shown};
use super::fields::rfc3339;
use super::listing::{PageQuery, Params, finish};
use super::openapi::{Conflict, NotFound};
use crate::app::AppState;
use crate::cron::{CronError, JobStatus};
use crate::store::cron::CronRun;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_jobs))
        .routes(routes!(run_job))
        .routes(routes!(list_runs))
}

/// A run of a scheduled job (times RFC 3339).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CronRun)]
#[serde(rename_all = "camelCase")]
struct RunDto {
    id: i64,
    /// The job's name.
    job: String,
    /// The slot the run is for; a manual run's is when it was asked for.
    scheduled_for: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    /// queued, running, succeeded or failed.
    status: String,
    /// What the job reports once it succeeded; its shape is the job's own.
    summary: Option<Value>,
    error: Option<String>,
    /// schedule, manual or catch-up.
    trigger: String,
}

impl From<&CronRun> for RunDto {
    fn from(run: &CronRun) -> Self {
        RunDto {
            id: run.id,
            job: run.job_name.clone(),
            scheduled_for: rfc3339(run.scheduled_for),
            started_at: run.started_at.map(rfc3339),
            finished_at: run.finished_at.map(rfc3339),
            status: run.status.clone(),
            summary: run.output.as_ref().map(|s| s.0.clone()),
            error: run.error.clone(),
            trigger: run.trigger.clone(),
        }
    }
}

/// A scheduled job with its schedule, latest run, next slot, leader and staleness.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CronJob)]
#[serde(rename_all = "camelCase")]
struct JobDto {
    name: String,
    /// The cron expression, or `off`.
    schedule: String,
    /// The schedule is not `off`.
    enabled: bool,
    /// The time zone the schedule is read in (IANA name).
    timezone: String,
    last_run: Option<RunDto>,
    next_run_at: Option<String>,
    /// The scheduler's leader (the lease holder), if one leads.
    leader: Option<String>,
    /// No success within two intervals of the schedule.
    stale: bool,
}

impl JobDto {
    fn new(job: &JobStatus, timezone: &str) -> Self {
        JobDto {
            name: job.name.clone(),
            schedule: job.schedule.clone().unwrap_or_else(|| "off".to_owned()),
            enabled: job.schedule.is_some(),
            timezone: timezone.to_owned(),
            last_run: job.last_run.as_ref().map(RunDto::from),
            next_run_at: job.next_run_at.map(rfc3339),
            leader: job.leader.clone(),
            stale: job.stale,
        }
    }
}

/// The scheduled jobs.
#[derive(Debug, Serialize, ToSchema)]
struct JobList {
    jobs: Vec<JobDto>,
}

/// The run a manual request queued, or the open run it found.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RunRequested {
    run_id: i64,
    job: String,
    /// queued or running.
    status: String,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RunPage {
    runs: Vec<RunDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
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

/// The scheduled jobs, with their schedule, latest run, next slot, leader and staleness.
#[utoipa::path(
    get,
    path = "/api/cron/jobs",
    tag = "cron",
    operation_id = "list_cron_jobs",
    responses((status = 200, description = "The jobs.", body = JobList))
)]
async fn list_jobs(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<JobList>> {
    let jobs = state.cron.jobs(state.cron.now()).await?;
    let zone = state.cron.registry().zone().name();
    Ok(Json(JobList {
        jobs: jobs.iter().map(|j| JobDto::new(j, zone)).collect(),
    }))
}

/// Queues a run of the job now; a run already queued or running is answered instead.
#[utoipa::path(
    post,
    path = "/api/cron/jobs/{name}/run",
    tag = "cron",
    operation_id = "run_cron_job",
    params(("name" = String, Path, description = "The job's name, as `GET /api/cron/jobs` lists it.")),
    responses(
        (status = 202, description = "A new run is queued.", body = RunRequested),
        (status = 200, description = "The job already has a run queued or running: that run.", body = RunRequested),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn run_job(
    admin: Admin,
    State(state): State<AppState>,
    PathSegment(name): PathSegment,
) -> ApiResult<(StatusCode, Json<RunRequested>)> {
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
                Json(RunRequested {
                    run_id: run.id,
                    job: run.job_name,
                    status: run.status,
                }),
            ))
        }
        Err(CronError::UnknownJob(_)) => Err(unknown_job(&state, "name", &name)),
        Err(CronError::Store(e)) => Err(e.into()),
    }
}

/// The runs, newest first, of one job or all.
#[utoipa::path(
    get,
    path = "/api/cron/runs",
    tag = "cron",
    operation_id = "list_cron_runs",
    params(
        ("job" = Option<String>, Query, description = "Only this job's runs (a name `GET /api/cron/jobs` lists)."),
        PageQuery,
    ),
    responses((status = 200, description = "A page of runs.", body = RunPage))
)]
async fn list_runs(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<RunPage>> {
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
    Ok(Json(RunPage {
        runs: runs.iter().map(RunDto::from).collect(),
        next_cursor: next,
    }))
}
