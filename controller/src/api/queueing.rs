//! What the routes that queue provisioning tasks share: the 202 answer naming its `jobId`, and
//! the 409 for a service that already has an open task.

use axum::Json;
use axum::http::StatusCode;
use mpanel_common::JobId;
use mpanel_common::ids::ServiceId;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::store::Task;

/// The 202 answer of every route that queues a task.
pub(super) fn queued(message: &str, task: &Task) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "message": message,
            "jobId": JobId::for_task(task.id),
            "serviceId": task.service_id.get(),
            "status": "queued",
        })),
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
