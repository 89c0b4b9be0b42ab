//! Provisioning and lifecycle tasks (`provisioning_tasks`) as a job: the runner claims a task,
//! `Provisioner::run_task` does the work, and completing applies the service change and stores
//! the last step's record in the same transaction; failing for good shows the error on the
//! service too.

use std::time::Duration;

use async_trait::async_trait;

use super::{Backoff, ClaimInfo, Job, JobSettings, Outcome, RunContext};
use crate::provisioning::{Failure, Finished, Provisioner};
use crate::store::lease_queue::{Claimed, PROVISIONING, QueueTable};
use crate::store::{DynStore, StoreResult, Task};

/// The longest retry delay of a task.
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

#[async_trait]
impl Job for Provisioner {
    type Row = Task;
    type Done = Finished;
    const QUEUE: &'static QueueTable = &PROVISIONING;

    fn settings(&self) -> JobSettings {
        let config = self.config();
        JobSettings {
            workers: usize::try_from(config.provisioning_workers).unwrap_or(1),
            lease: Duration::from_secs(u64::from(config.provisioning_lease_secs.max(3))),
            backoff: Backoff {
                base_ms: config.provisioning_retry_base_ms,
                max_ms: MAX_BACKOFF_MS,
            },
            poll: Duration::from_secs(1),
            // Tasks give up after `max_retries`; every last failure is already an error.
            loud_after_attempts: i32::MAX,
        }
    }

    fn store(&self) -> &DynStore {
        Provisioner::store(self)
    }

    fn info(task: &Task) -> ClaimInfo {
        ClaimInfo {
            id: task.id.get(),
            attempts: task.attempts,
            max_attempts: Some(task.max_retries),
        }
    }

    async fn claim(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<Task>>> {
        Provisioner::store(self).claim_task(holder, lease_ms).await
    }

    fn span(task: &Task) -> tracing::Span {
        tracing::info_span!(
            "task",
            task_id = task.id.get(),
            service_id = task.service_id.get(),
            kind = task.task_type.as_str(),
            request_id = task.request_id.as_deref().unwrap_or("-"),
        )
    }

    async fn run(&self, task: &Task, ctx: &RunContext) -> Outcome<Finished> {
        let started = std::time::Instant::now();
        let result = self.run_task(task, &ctx.holder, &ctx.lost).await;
        let failure = match &result {
            Err(Failure::Retryable(_)) => Some("retryable"),
            Err(Failure::Permanent(_)) => Some("permanent"),
            _ => None,
        };
        crate::telemetry::metrics::task_attempt(
            task.task_type.as_str(),
            failure,
            started.elapsed(),
        );
        match result {
            Ok(finished) => Outcome::Done(finished),
            Err(Failure::Retryable(e)) => Outcome::Retry(e),
            Err(Failure::Permanent(e)) => Outcome::Fail(e),
            Err(Failure::Waiting(reason)) => Outcome::Wait(reason),
            Err(Failure::LeaseLost) => Outcome::LeaseLost,
        }
    }

    async fn complete(&self, task: &Task, holder: &str, finished: Finished) -> StoreResult<()> {
        Provisioner::store(self)
            .complete_service_task_recording(
                task.id,
                holder,
                finished.change,
                finished.last_step.as_ref(),
            )
            .await?;
        tracing::info!(task_id = %task.id, service_id = %task.service_id, kind = task.task_type.as_str(), "task completed");
        Ok(())
    }

    async fn fail(&self, task: &Task, holder: &str, error: &str) -> StoreResult<()> {
        Provisioner::store(self)
            .fail_task(task.id, holder, error)
            .await
    }
}
