//! What the routes that queue provisioning tasks share: the 202 answer naming its `jobId`, and
//! the 409 for a service that already has an open task.

use axum::Json;
use axum::http::StatusCode;
use mpanel_common::JobId;
use mpanel_common::ids::ServiceId;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::store::Task;

/// The answer of a route that queued a task: follow it with
/// `GET /api/provisioning/tasks/{jobId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Queued {
    message: String,
    #[schema(value_type = String, example = "job_42")]
    job_id: JobId,
    service_id: i64,
    /// Always `queued`.
    #[schema(value_type = String, example = "queued")]
    status: &'static str,
}

/// The 202 answer of every route that queues a task.
pub(super) fn queued(message: &str, task: &Task) -> (StatusCode, Json<Queued>) {
    (
        StatusCode::ACCEPTED,
        Json(Queued {
            message: message.to_owned(),
            job_id: JobId::for_task(task.id),
            service_id: task.service_id.get(),
            status: "queued",
        }),
    )
}

/// 409 naming the open task, with its `jobId` beside the message so a client can follow it.
pub(super) fn task_open_conflict(service: ServiceId, task: &Task) -> ApiError {
    let job = JobId::for_task(task.id);
    ApiError::new(
        StatusCode::CONFLICT,
        "task_open",
        format!(
            "service {service} already has an open {} task ({job}); wait for it or retry it later",
            task.task_type,
        ),
    )
    .with_detail("serviceId", service.get())
    .with_detail("jobId", job.to_string())
}
