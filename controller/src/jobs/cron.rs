//! Runs of scheduled jobs (`cron_runs`), queued by the scheduler's leader or an admin and run
//! by whichever replica claims them.
//!
//! A run that fails is not retried: it is `failed` with its error for an admin to see, and the
//! job's next slot (or a manual run) does the work again, since every job is a sweep over what
//! is due. A runner that dies mid-run leaves the row `running` under its lease; another takes
//! it over when the lease expires.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{Backoff, ClaimInfo, Job, JobSettings, Outcome, RunContext};
use crate::cron::Registry;
use crate::store::cron::CronRun;
use crate::store::lease_queue::{CRON, Claimed, QueueTable};
use crate::store::{DynStore, StoreResult};

/// The cron queue's worker: the registry of job bodies.
#[derive(Clone)]
pub struct CronWorker {
    pub store: DynStore,
    pub registry: Arc<Registry>,
}

impl std::fmt::Debug for CronWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronWorker")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Job for CronWorker {
    type Row = CronRun;
    type Done = Value;
    const QUEUE: &'static QueueTable = &CRON;

    fn settings(&self) -> JobSettings {
        JobSettings {
            // Two jobs can run side by side; one long billing run does not hold up the rest.
            workers: 2,
            lease: Duration::from_secs(60),
            backoff: Backoff {
                base_ms: 1_000,
                max_ms: 60_000,
            },
            // Runs queued on another replica arrive by a wake-up through Redis, or by this.
            poll: Duration::from_secs(2),
            loud_after_attempts: 1,
        }
    }

    fn store(&self) -> &DynStore {
        &self.store
    }

    fn info(run: &CronRun) -> ClaimInfo {
        ClaimInfo {
            id: run.id,
            attempts: run.attempts,
            max_attempts: Some(1),
        }
    }

    async fn claim(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<CronRun>>> {
        self.store.claim_cron_run(holder, lease_ms).await
    }

    async fn run(&self, run: &CronRun, _ctx: &RunContext) -> Outcome<Value> {
        let Some(job) = self.registry.get(&run.job_name) else {
            return Outcome::Fail(format!(
                "this controller has no scheduled job named '{}'",
                run.job_name
            ));
        };
        tracing::info!(job = %run.job_name, run_id = run.id, scheduled_for = run.scheduled_for, trigger = %run.trigger, "scheduled job started");
        match job.body.run(run.scheduled_for).await {
            Ok(summary) => {
                crate::telemetry::metrics::cron_run(&job.name, "succeeded");
                Outcome::Done(summary)
            }
            Err(e) => {
                crate::telemetry::metrics::cron_run(&job.name, "failed");
                Outcome::Fail(format!("{e:#}"))
            }
        }
    }

    async fn complete(&self, run: &CronRun, holder: &str, summary: Value) -> StoreResult<()> {
        self.store
            .complete_cron_run(run.id, holder, &summary)
            .await?;
        tracing::info!(job = %run.job_name, run_id = run.id, "scheduled job succeeded");
        Ok(())
    }

    async fn fail(&self, run: &CronRun, holder: &str, error: &str) -> StoreResult<()> {
        self.store.fail_cron_run(run.id, holder, error).await
    }
}
