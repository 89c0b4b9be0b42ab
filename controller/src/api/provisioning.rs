//! `/api/provisioning/*`: the provisioning queue as the original documentation defined it
//! (shapes kept so existing clients keep working). Admin only. Times are Unix **milliseconds**
//! here, unlike the catalogue routes.
//!
//! The routes only queue, re-queue, read and clear tasks; the workers in `crate::provisioning`
//! run them. `manual` is the one route that waits: it queues (or reuses) the task, wakes the
//! workers and polls the task until it finishes, so it is served outside the router's
//! 60-second timeout (see `waiting_routes`).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mpanel_common::JobId;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId, TaskId};
use mpanel_common::status::{ProvisioningStep, TaskStatus, TaskStep};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathSegment};
use super::fields::domain;
use super::listing::{Params, finish};
use super::queueing::{Queued, queued};
use crate::app::AppState;
use crate::lifecycle::{Actor, LifecycleError};
use crate::store::{Task, TaskFilter, TaskResult, now_ms};

/// How long `manual` waits for its task, and how often it looks.
const MANUAL_WAIT: Duration = Duration::from_secs(120);
const MANUAL_POLL: Duration = Duration::from_millis(50);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/provisioning/provision", post(provision))
        .route("/api/provisioning/tasks", get(list_tasks))
        .route("/api/provisioning/tasks/{id}", get(get_task))
        .route("/api/provisioning/retry/{id}", post(retry))
        .route("/api/provisioning/stats", get(stats))
        .route(
            "/api/provisioning/failed",
            get(list_failed).delete(clear_failed),
        )
}

/// Routes that wait for work on purpose, longer than the router's request timeout.
pub fn waiting_routes() -> Router<AppState> {
    Router::new().route("/api/provisioning/manual", post(manual))
}

/// A task as the original documentation shows it. Never the task's params (they may hold a
/// sealed password).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDto {
    id: i64,
    job_id: JobId,
    service_id: i64,
    #[serde(rename = "type")]
    task_type: &'static str,
    status: &'static str,
    created_at: i64,
    completed_at: Option<i64>,
    attempts: i32,
    max_retries: i32,
    error: Option<String>,
    wait_reason: Option<String>,
    next_attempt_at: i64,
    cleared_at: Option<i64>,
    /// The HTTP request that queued it (its `x-request-id`), when one did.
    request_id: Option<String>,
    result: TaskResult,
}

impl From<Task> for TaskDto {
    fn from(t: Task) -> Self {
        TaskDto {
            id: t.id.get(),
            job_id: JobId::for_task(t.id),
            service_id: t.service_id.get(),
            task_type: t.task_type.as_str(),
            status: t.status.as_str(),
            created_at: t.created_at,
            completed_at: t.completed_at,
            attempts: t.attempts,
            max_retries: t.max_retries,
            error: t.error,
            wait_reason: t.wait_reason,
            next_attempt_at: t.next_attempt_at,
            cleared_at: t.cleared_at,
            request_id: t.request_id,
            result: t.result.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProvisionBody {
    service_id: i64,
    customer_id: i64,
    product_id: i64,
    domain: String,
}

/// Queues the provision task the body asks for, or finds the one already open. Every check
/// runs before anything is written.
async fn provision_task(state: &AppState, admin: &Admin, body: &ProvisionBody) -> ApiResult<Task> {
    let domain = domain(&body.domain)?;
    let service = state
        .store
        .get_service(ServiceId::new(body.service_id))
        .await
        .map_err(|e| ApiError::not_found_as(e, "serviceId", "service", body.service_id))?;
    let mismatch = |field: &str, given: String, stored: String| {
        ApiError::unprocessable(
            field,
            "service_mismatch",
            format!("is {given}, but service {} has {stored}", service.id),
        )
    };
    if service.customer_id != CustomerId::new(body.customer_id) {
        return Err(mismatch(
            "customerId",
            body.customer_id.to_string(),
            service.customer_id.to_string(),
        ));
    }
    if service.product_id != ProductId::new(body.product_id) {
        return Err(mismatch(
            "productId",
            body.product_id.to_string(),
            service.product_id.to_string(),
        ));
    }
    if service.domain != domain.as_str() {
        return Err(mismatch("domain", domain.into(), service.domain.clone()));
    }
    // An order already being provisioned answers with its job: no second task.
    match state
        .lifecycle()
        .provision(&Actor::Admin(admin.token_id), service.id)
        .await
    {
        Err(LifecycleError::IllegalMove { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_provisioned",
            format!(
                "service {} is {}; only a pending service can be provisioned",
                service.id, service.status
            ),
        )),
        other => Ok(other?),
    }
}

async fn provision(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ProvisionBody>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let task = provision_task(&state, &admin, &body).await?;
    state.dispatcher.wake();
    Ok(queued("Provisioning job queued", &task))
}

/// Queues (or reuses) the task and waits until a worker finishes it: 200 with the finished
/// task, or 202 with the task as it stands when it has not finished within two minutes (or
/// the controller is shutting down).
async fn manual(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ProvisionBody>,
) -> ApiResult<(StatusCode, Json<TaskDto>)> {
    let task = provision_task(&state, &admin, &body).await?;
    state.dispatcher.wake();
    let deadline = tokio::time::Instant::now() + MANUAL_WAIT;
    let mut current = task;
    loop {
        if matches!(current.status, TaskStatus::Completed | TaskStatus::Failed) {
            return Ok((StatusCode::OK, Json(current.into())));
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(MANUAL_POLL) => {}
            () = state.shutdown.cancelled() => break,
        }
        current = state.store.get_task(current.id).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(current.into())))
}

fn job_id(raw: &str) -> ApiResult<TaskId> {
    JobId::parse(raw).map_err(|e| ApiError::invalid("id", "invalid_job_id", e))
}

async fn list_tasks(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["status", "serviceId", "limit", "cursor"])?;
    let status = params
        .get("status")
        .map(|s| {
            s.parse::<TaskStatus>().map_err(|_| {
                ApiError::invalid(
                    "status",
                    "invalid_status",
                    format!(
                        "'{}' is not one of pending, processing, completed, failed",
                        s.chars().take(40).collect::<String>()
                    ),
                )
            })
        })
        .transpose()?;
    let filter = TaskFilter {
        status,
        service_id: params.id("serviceId")?.map(ServiceId::new),
        only_uncleared: false,
        page: params.page(50, 500)?,
    };
    task_page(&state, &filter).await
}

async fn task_page(state: &AppState, filter: &TaskFilter) -> ApiResult<Json<Value>> {
    let mut tasks = state.store.list_tasks(filter).await?;
    let next = finish(&mut tasks, filter.page, |t| t.id.get());
    let mut tasks: Vec<TaskDto> = tasks.into_iter().map(TaskDto::from).collect();
    with_welcome_delivery(state, &mut tasks).await?;
    Ok(Json(json!({ "tasks": tasks, "nextCursor": next })))
}

/// The welcome-email step ends once its message is committed to the outbox; whether it has
/// been delivered since is the outbox's to say. `sent` is filled in from there.
async fn with_welcome_delivery(state: &AppState, tasks: &mut [TaskDto]) -> ApiResult<()> {
    fn welcome(t: &mut TaskDto) -> Option<&mut Value> {
        t.result
            .steps
            .iter_mut()
            .find(|s| s.step == TaskStep::Provisioning(ProvisioningStep::WelcomeEmail))
            .filter(|s| s.data.get("outbox_key").is_some_and(Value::is_string))
            .map(|s| &mut s.data)
    }
    let keys: Vec<String> = tasks
        .iter_mut()
        .filter_map(|t| welcome(t)?["outbox_key"].as_str().map(str::to_owned))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let statuses = state.store.email_statuses(&keys).await?;
    for task in tasks.iter_mut() {
        if let Some(data) = welcome(task) {
            let key = data["outbox_key"].as_str().unwrap_or_default();
            let sent = statuses.get(key).is_some_and(|s| s == "sent");
            data["sent"] = Value::Bool(sent);
        }
    }
    Ok(())
}

async fn get_task(
    _admin: Admin,
    State(state): State<AppState>,
    PathSegment(id): PathSegment,
) -> ApiResult<Json<TaskDto>> {
    let id = job_id(&id)?;
    let mut task = [TaskDto::from(state.store.get_task(id).await?)];
    with_welcome_delivery(&state, &mut task).await?;
    let [task] = task;
    Ok(Json(task))
}

async fn retry(
    admin: Admin,
    State(state): State<AppState>,
    PathSegment(id): PathSegment,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let id = job_id(&id)?;
    let task = state
        .lifecycle()
        .retry(&Actor::Admin(admin.token_id), id)
        .await?;
    Ok(queued("Task re-queued", &task))
}

/// Queue depths and the last seven days of tasks. Each queue carries `pending` (waiting for a
/// worker) and `processing` (in a worker's hands now), as the contract spells out; the emails
/// queue adds `failed`, the invoices queue `unpaid` and `overdue` (awaiting payment past the due date).
/// An invoice waits on a payment, so unpaid invoices are its `pending`, and those whose charge
/// a billing worker holds now its `processing`. `billing` is the billing jobs (charges, cards,
/// billing emails, moves payments ask for). `failed` counts the failed list (failed tasks not
/// cleared); `processing_total` counts work in hand right now (tasks processing, emails
/// sending, billing jobs running).
async fn stats(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let s = state.store.queue_stats(now_ms() - 7 * DAY_MS).await?;
    let recent = s.recent();
    Ok(Json(json!({
        "queue": {
            "provisioning": { "pending": s.tasks_pending, "processing": s.tasks_processing },
            "emails": {
                "pending": s.emails_queued,
                "processing": s.emails_sending,
                "failed": s.emails_failed,
            },
            "invoices": {
                "pending": s.invoices_unpaid,
                "processing": s.charges_processing,
                "unpaid": s.invoices_unpaid,
                "overdue": s.invoices_overdue,
            },
            "billing": {
                "pending": s.billing_pending,
                "processing": s.billing_processing,
                "failed": s.billing_failed,
            },
            "failed": s.tasks_failed_uncleared,
            "processing_total": s.tasks_processing + s.emails_sending + s.billing_processing,
        },
        "tasks": {
            "last_7_days": {
                "pending": recent.pending,
                "processing": recent.processing,
                "completed": recent.completed,
                "failed": recent.failed,
            }
        }
    })))
}

async fn list_failed(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["limit", "cursor"])?;
    let filter = TaskFilter {
        status: Some(TaskStatus::Failed),
        service_id: None,
        only_uncleared: true,
        page: params.page(50, 500)?,
    };
    task_page(&state, &filter).await
}

async fn clear_failed(admin: Admin, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let cleared = state.store.clear_failed_tasks(&admin.actor()).await?;
    tracing::info!(cleared, "failed list cleared");
    Ok(Json(json!({ "cleared": cleared })))
}
