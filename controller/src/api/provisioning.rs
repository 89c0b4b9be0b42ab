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

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use mpanel_common::JobId;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId, TaskId};
use mpanel_common::status::{ProvisioningStep, StepStatus, TaskStatus, TaskStep};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathSegment};
use super::fields::domain;
use super::listing::{PageQuery, Params, finish};
use super::openapi::{Conflict, NotFound, Unprocessable};
use super::queueing::{Queued, queued};
use crate::app::AppState;
use crate::lifecycle::{Actor, LifecycleError};
use crate::store::{StepRecord, Task, TaskFilter, now_ms};

/// How long `manual` waits for its task, and how often it looks.
const MANUAL_WAIT: Duration = Duration::from_secs(120);
const MANUAL_POLL: Duration = Duration::from_millis(50);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(provision))
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(retry))
        .routes(routes!(stats))
        .routes(routes!(list_failed, clear_failed))
}

/// Routes that wait for work on purpose, longer than the router's request timeout.
pub fn waiting_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(manual))
}

/// A task as the original documentation shows it. Never the task's params (they may hold a
/// sealed password). Times are Unix milliseconds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Task)]
#[serde(rename_all = "camelCase")]
pub struct TaskDto {
    id: i64,
    #[schema(value_type = String, example = "job_42")]
    job_id: JobId,
    service_id: i64,
    /// provision, suspend, unsuspend, terminate, change_package, change_password or restore.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    task_type: &'static str,
    /// pending, processing, completed or failed.
    #[schema(value_type = String)]
    status: &'static str,
    created_at: i64,
    completed_at: Option<i64>,
    attempts: i32,
    max_retries: i32,
    error: Option<String>,
    /// Why a pending task is waiting for something outside (DNS pointing at the server).
    wait_reason: Option<String>,
    next_attempt_at: i64,
    /// When the task was cleared from the failed list.
    cleared_at: Option<i64>,
    /// The HTTP request that queued it (its `x-request-id`), when one did.
    request_id: Option<String>,
    result: TaskResultDto,
}

/// What the task's steps did so far.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskResult)]
struct TaskResultDto {
    steps: Vec<StepDto>,
}

/// One step's outcome.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskStepResult)]
#[serde(rename_all = "camelCase")]
struct StepDto {
    /// A provisioning step (account, dns, ssl, email, database, welcome_email), or for a
    /// lifecycle task its kind.
    #[schema(value_type = String)]
    step: TaskStep,
    /// success, failed or waiting.
    #[schema(value_type = String)]
    status: StepStatus,
    /// What the step recorded; null when a failed step recorded nothing. In the answers of the
    /// task and list routes the welcome email's also carries `sent`, whether the outbox has
    /// delivered it.
    #[schema(value_type = Option<Object>)]
    data: Value,
    /// Absent when the step did not fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    error: Option<String>,
    /// Unix milliseconds; absent while the step has not finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64)]
    finished_at: Option<i64>,
}

impl From<StepRecord> for StepDto {
    fn from(s: StepRecord) -> Self {
        StepDto {
            step: s.step,
            status: s.status,
            data: s.data,
            error: s.error,
            finished_at: s.finished_at,
        }
    }
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
            result: TaskResultDto {
                steps: t.result.0.steps.into_iter().map(StepDto::from).collect(),
            },
        }
    }
}

/// The service to provision, named in full: each member must match what the service holds.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ProvisionRequest)]
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

/// Queues the provisioning of a pending service.
///
/// A provision task already open for the service is answered with its job instead of a
/// second one.
#[utoipa::path(
    post,
    path = "/api/provisioning/provision",
    tag = "provisioning",
    operation_id = "queue_provisioning",
    request_body = ProvisionBody,
    responses(
        (status = 202, description = "Queued, or the open provision task's job.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
async fn provision(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ProvisionBody>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let task = provision_task(&state, &admin, &body).await?;
    state.dispatcher.wake();
    Ok(queued("Provisioning job queued", &task))
}

/// Queues (or reuses) the provision task and waits up to two minutes for it to finish.
///
/// 200 with the finished task, or 202 with the task as it stands when it has not finished
/// within two minutes (or the controller is shutting down).
#[utoipa::path(
    post,
    path = "/api/provisioning/manual",
    tag = "provisioning",
    operation_id = "provision_and_wait",
    request_body = ProvisionBody,
    responses(
        (status = 200, description = "The task finished: `status` is completed or failed.", body = TaskDto),
        (
            status = 202,
            description = "Not finished within two minutes, or the controller is shutting down: \
                the task as it stands; follow it with `GET /api/provisioning/tasks/{jobId}`.",
            body = TaskDto
        ),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
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

/// The `{id}` of a task route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct JobPath {
    /// The task's job id, `job_<n>` or `<n>`.
    #[param(pattern = "^(job_)?[1-9][0-9]{0,17}$", example = "job_42")]
    id: String,
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TaskPage {
    tasks: Vec<TaskDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The tasks, newest first, filtered by status or service.
#[utoipa::path(
    get,
    path = "/api/provisioning/tasks",
    tag = "provisioning",
    operation_id = "list_provisioning_tasks",
    params(
        ("status" = Option<String>, Query, description = "pending, processing, completed or failed.", pattern = "^(pending|processing|completed|failed)$"),
        ("serviceId" = Option<i64>, Query, description = "Only this service's tasks.", minimum = 1),
        PageQuery,
    ),
    responses((status = 200, description = "A page of tasks.", body = TaskPage))
)]
async fn list_tasks(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<TaskPage>> {
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

async fn task_page(state: &AppState, filter: &TaskFilter) -> ApiResult<Json<TaskPage>> {
    let mut tasks = state.store.list_tasks(filter).await?;
    let next = finish(&mut tasks, filter.page, |t| t.id.get());
    let mut tasks: Vec<TaskDto> = tasks.into_iter().map(TaskDto::from).collect();
    with_welcome_delivery(state, &mut tasks).await?;
    Ok(Json(TaskPage {
        tasks,
        next_cursor: next,
    }))
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

/// One task, by its job id.
#[utoipa::path(
    get,
    path = "/api/provisioning/tasks/{id}",
    tag = "provisioning",
    operation_id = "get_provisioning_task",
    params(JobPath),
    responses(
        (status = 200, description = "The task.", body = TaskDto),
        (status = 404, response = NotFound),
    )
)]
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

/// Re-queues a failed task, when its service has no other task open.
#[utoipa::path(
    post,
    path = "/api/provisioning/retry/{id}",
    tag = "provisioning",
    operation_id = "retry_provisioning_task",
    params(JobPath),
    responses(
        (status = 202, description = "Re-queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
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

/// Queue depths and the last seven days of tasks.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = QueueStats)]
struct StatsDto {
    queue: QueueDepths,
    tasks: RecentTasks,
}

/// What waits in each queue now.
#[derive(Debug, Serialize, ToSchema)]
struct QueueDepths {
    /// Provisioning and lifecycle tasks.
    provisioning: Depth,
    /// The email outbox; `failed` counts emails given up on.
    emails: DepthWithFailed,
    invoices: InvoiceDepth,
    /// Billing jobs: charges, cards, billing emails, the moves payments ask for.
    billing: DepthWithFailed,
    /// The failed list: failed tasks not cleared.
    failed: i64,
    /// Work in hand right now: tasks processing, emails sending, billing jobs running.
    processing_total: i64,
}

/// A queue's depth.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = QueueDepth)]
struct Depth {
    /// Waiting for a worker.
    pending: i64,
    /// In a worker's hands now.
    processing: i64,
}

/// A queue's depth, with what it gave up on.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = QueueDepthWithFailed)]
struct DepthWithFailed {
    pending: i64,
    processing: i64,
    failed: i64,
}

/// Invoices awaiting payment: unpaid invoices are the queue's `pending`, those whose charge a
/// billing worker holds now its `processing`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InvoiceQueueDepth)]
struct InvoiceDepth {
    pending: i64,
    processing: i64,
    unpaid: i64,
    /// Unpaid past the due date.
    overdue: i64,
}

/// Tasks created in the last seven days, by status now.
#[derive(Debug, Serialize, ToSchema)]
struct RecentTasks {
    last_7_days: TaskCountsDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskCounts)]
struct TaskCountsDto {
    pending: i64,
    processing: i64,
    completed: i64,
    failed: i64,
}

/// Queue depths and the last seven days of tasks.
///
/// Each queue carries `pending` (waiting for a worker) and `processing` (in a worker's hands
/// now), as the contract spells out; the emails queue adds `failed`, the invoices queue
/// `unpaid` and `overdue` (awaiting payment past the due date). An invoice waits on a payment,
/// so unpaid invoices are its `pending`, and those whose charge a billing worker holds now its
/// `processing`. `billing` is the billing jobs (charges, cards, billing emails, moves payments
/// ask for). `failed` counts the failed list (failed tasks not cleared); `processing_total`
/// counts work in hand right now (tasks processing, emails sending, billing jobs running).
#[utoipa::path(
    get,
    path = "/api/provisioning/stats",
    tag = "provisioning",
    operation_id = "provisioning_stats",
    responses((status = 200, description = "The queues now and the last seven days.", body = StatsDto))
)]
async fn stats(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<StatsDto>> {
    let s = state.store.queue_stats(now_ms() - 7 * DAY_MS).await?;
    let recent = s.recent();
    Ok(Json(StatsDto {
        queue: QueueDepths {
            provisioning: Depth {
                pending: s.tasks_pending,
                processing: s.tasks_processing,
            },
            emails: DepthWithFailed {
                pending: s.emails_queued,
                processing: s.emails_sending,
                failed: s.emails_failed,
            },
            invoices: InvoiceDepth {
                pending: s.invoices_unpaid,
                processing: s.charges_processing,
                unpaid: s.invoices_unpaid,
                overdue: s.invoices_overdue,
            },
            billing: DepthWithFailed {
                pending: s.billing_pending,
                processing: s.billing_processing,
                failed: s.billing_failed,
            },
            failed: s.tasks_failed_uncleared,
            processing_total: s.tasks_processing + s.emails_sending + s.billing_processing,
        },
        tasks: RecentTasks {
            last_7_days: TaskCountsDto {
                pending: recent.pending,
                processing: recent.processing,
                completed: recent.completed,
                failed: recent.failed,
            },
        },
    }))
}

/// The failed list: failed tasks not cleared, newest first.
#[utoipa::path(
    get,
    path = "/api/provisioning/failed",
    tag = "provisioning",
    operation_id = "list_failed_tasks",
    params(PageQuery),
    responses((status = 200, description = "A page of failed tasks.", body = TaskPage))
)]
async fn list_failed(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<TaskPage>> {
    let params = Params::parse(query, &["limit", "cursor"])?;
    let filter = TaskFilter {
        status: Some(TaskStatus::Failed),
        service_id: None,
        only_uncleared: true,
        page: params.page(50, 500)?,
    };
    task_page(&state, &filter).await
}

/// How many failed tasks were cleared from the list.
#[derive(Debug, Serialize, ToSchema)]
struct FailedCleared {
    cleared: u64,
}

/// Clears the failed list; the tasks stay readable by id.
#[utoipa::path(
    delete,
    path = "/api/provisioning/failed",
    tag = "provisioning",
    operation_id = "clear_failed_tasks",
    responses((status = 200, description = "Cleared.", body = FailedCleared))
)]
async fn clear_failed(
    admin: Admin,
    State(state): State<AppState>,
) -> ApiResult<Json<FailedCleared>> {
    let cleared = state.store.clear_failed_tasks(&admin.actor()).await?;
    tracing::info!(cleared, "failed list cleared");
    Ok(Json(FailedCleared { cleared }))
}
