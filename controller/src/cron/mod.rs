//! Scheduled jobs: which exist and when they run ([`registry`], [`schedule`]), the leader that
//! queues their runs ([`scheduler`]), and what the API shows of them ([`Cron`]).
//!
//! Scheduled tasks only enqueue. One replica at a time leads (a fenced lease in the database)
//! and queues a `cron_runs` row per slot; the job runner of any replica claims and runs it
//! (`jobs::cron`), recording start, end, status, summary and error. A job's work therefore
//! gets the queue's guarantees (leases, a crashed runner's row taken over) and never runs on
//! the scheduler's own task.
//!
//! This module does not run job bodies itself and owns no SQL (`store::cron` does).

pub mod registry;
pub mod schedule;
pub mod scheduler;

use std::sync::Arc;

pub use registry::{CronJob, JOBS, JobSpec, RegisteredJob, Registry};
pub use schedule::{Schedule, Zone};
pub use scheduler::{Clock, Scheduler, SchedulerSettings, Tick, wall_clock};

use crate::jobs::Dispatcher;
use crate::store::cron::{CronHistory, CronRun, LEADER_LEASE};
use crate::store::lease_queue::CRON;
use crate::store::{DynStore, Page, StoreError, StoreResult};

/// A job as an admin sees it.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub name: String,
    /// The cron expression, `None` when the schedule is off.
    pub schedule: Option<String>,
    pub last_run: Option<CronRun>,
    pub next_run_at: Option<i64>,
    /// The scheduler's leader (the lease holder), if one leads.
    pub leader: Option<String>,
    /// No success within two intervals of the schedule (see [`is_stale`]).
    pub stale: bool,
    /// The slot of the latest success, if any.
    pub last_success_for: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CronError {
    /// No job of that name is registered.
    #[error("no scheduled job is named '{0}'")]
    UnknownJob(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the API and the readiness probe ask of the scheduled jobs.
#[derive(Clone)]
pub struct Cron {
    store: DynStore,
    registry: Arc<Registry>,
    dispatcher: Dispatcher,
    /// The scheduler's clock: the time a manual run is asked for and staleness is judged at.
    clock: Clock,
}

impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cron")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Cron {
    pub fn new(store: DynStore, registry: Arc<Registry>, dispatcher: Dispatcher) -> Self {
        Cron {
            store,
            registry,
            dispatcher,
            clock: wall_clock(),
        }
    }

    /// The same, going by `clock` (the scheduler's) instead of the wall clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The time by the scheduler's clock, Unix ms.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Every job with its latest run, next slot, the leader and whether it is stale, at `now`.
    pub async fn jobs(&self, now: i64) -> StoreResult<Vec<JobStatus>> {
        let leader = self
            .store
            .current_lease(LEADER_LEASE, now)
            .await?
            .map(|l| l.holder);
        let mut jobs = Vec::with_capacity(self.registry.jobs().len());
        for job in self.registry.jobs() {
            let history = self.store.cron_history(&job.name).await?;
            jobs.push(JobStatus {
                name: job.name.clone(),
                schedule: job.schedule.as_ref().map(|s| s.expression().to_owned()),
                next_run_at: job.schedule.as_ref().and_then(|s| s.next_after(now)),
                leader: leader.clone(),
                stale: is_stale(job.schedule.as_ref(), &history, now),
                last_success_for: history.last_success_for,
                last_run: history.last_run,
            });
        }
        Ok(jobs)
    }

    /// The stale jobs at `now`, for the readiness probe's warnings.
    pub async fn stale_jobs(&self, now: i64) -> StoreResult<Vec<JobStatus>> {
        let mut stale = Vec::new();
        for job in self.registry.jobs() {
            let history = self.store.cron_history(&job.name).await?;
            if is_stale(job.schedule.as_ref(), &history, now) {
                stale.push(JobStatus {
                    name: job.name.clone(),
                    schedule: job.schedule.as_ref().map(|s| s.expression().to_owned()),
                    next_run_at: None,
                    leader: None,
                    stale: true,
                    last_success_for: history.last_success_for,
                    last_run: history.last_run,
                });
            }
        }
        Ok(stale)
    }

    /// Queues a manual run of `name` at `now` for `actor`, unless one of its runs is queued or
    /// running: the run, and whether it is new. Any replica may do this; leadership is not
    /// needed.
    pub async fn request_run(
        &self,
        name: &str,
        now: i64,
        actor: &str,
    ) -> Result<(CronRun, bool), CronError> {
        if self.registry.get(name).is_none() {
            return Err(CronError::UnknownJob(name.to_owned()));
        }
        let (run, created) = self.store.request_manual_cron_run(name, now, actor).await?;
        if created {
            self.dispatcher.wake_queue(&CRON);
        }
        Ok((run, created))
    }

    /// Runs newest first, of one job or all.
    pub async fn runs(&self, job: Option<&str>, page: Page) -> StoreResult<Vec<CronRun>> {
        self.store.list_cron_runs(job, page).await
    }
}

/// Whether a job has gone two intervals of its schedule without a success, with half an
/// interval's grace for the run of the latest slot to finish. Judged only for an enabled job
/// that has a run at all (a fresh installation is not stale before its first slot): from its
/// latest success, or, having none, from its first run.
pub fn is_stale(schedule: Option<&Schedule>, history: &CronHistory, now: i64) -> bool {
    let Some(schedule) = schedule else {
        return false;
    };
    let Some(since) = history.last_success_for.or(history.first_for) else {
        return false;
    };
    let Some(first) = schedule.next_after(since) else {
        return false;
    };
    let Some(second) = schedule.next_after(first) else {
        return false;
    };
    now > second.saturating_add((second - first) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const JAN1: i64 = 1_798_761_600_000;

    fn history(success: Option<i64>, first: Option<i64>) -> CronHistory {
        CronHistory {
            last_run: None,
            last_success_for: success,
            first_for: first,
            latest_for: first,
        }
    }

    #[test]
    fn a_daily_job_is_stale_once_two_slots_pass_without_a_success() {
        let daily = Schedule::parse("0 2 * * *", &Zone::utc()).unwrap();
        let ok = history(Some(JAN1 + 2 * HOUR), Some(JAN1 + 2 * HOUR));
        // Next slots: Jan 2 and Jan 3 at 02:00; stale after Jan 3 14:00.
        assert!(!is_stale(Some(&daily), &ok, JAN1 + 50 * HOUR));
        assert!(!is_stale(Some(&daily), &ok, JAN1 + 62 * HOUR));
        assert!(is_stale(Some(&daily), &ok, JAN1 + 62 * HOUR + 1));
        assert!(
            !is_stale(None, &ok, JAN1 + 1000 * HOUR),
            "a job switched off is not judged"
        );
        assert!(
            !is_stale(Some(&daily), &history(None, None), JAN1 + 1000 * HOUR),
            "a job that never ran is not judged"
        );
        let failing = history(None, Some(JAN1 + 2 * HOUR));
        assert!(is_stale(Some(&daily), &failing, JAN1 + 63 * HOUR));
    }
}
