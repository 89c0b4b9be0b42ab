//! Scheduled jobs' storage: the named leader lease with its fencing epoch, and `cron_runs`, the
//! queue of runs the job runner works (`lease_queue::CRON`).
//!
//! The lease is taken and renewed by one conditional upsert: it succeeds only while the lease
//! is free (expired) or already ours, and raises the epoch whenever the holder changes. A run
//! the leader queues is written in a transaction that first re-reads the lease (locking its row
//! on PostgreSQL; SQLite's `BEGIN IMMEDIATE` holds the write lock), so the insert commits only
//! while the lease still names this holder with this epoch: a leader that stalled past its
//! lease and lost it cannot queue anything afterwards, even before it notices. The unique
//! `(job_name, scheduled_for)` makes a slot queued twice (two leaders one after the other, a
//! catch-up racing a schedule) one run.
//!
//! Times passed in as `now` come from the scheduler's clock, which tests accelerate; the
//! runner's own writes (claim, renew, finish) use the wall clock like every queue.

use async_trait::async_trait;
use serde_json::Value;

use super::lease_queue::Claimed;
use super::{Page, StoreResult};

/// The lease whose holder is the scheduler's leader.
pub const LEADER_LEASE: &str = "cron-leader";

/// Why a run was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The leader reached the slot.
    Schedule,
    /// An admin asked for it.
    Manual,
    /// The leader, on taking over, found the latest slot missed while no controller led.
    CatchUp,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch-up",
        }
    }
}

/// One run of a scheduled job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CronRun {
    pub id: i64,
    pub job_name: String,
    /// The slot (Unix ms) the run is for; a manual run's is when it was asked for.
    pub scheduled_for: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// The job's summary, once it succeeded.
    pub output: Option<sqlx::types::Json<Value>>,
    /// The lease holder that ran it last.
    pub runner: Option<String>,
    /// `schedule`, `manual` or `catch-up`.
    pub trigger: String,
    /// The leader epoch that queued it (`None` for a manual run).
    pub epoch: Option<i64>,
    pub error: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_holder: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
}

impl CronRun {
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "running")
    }
}

/// Who holds a lease, while it has not expired.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseView {
    pub holder: String,
    pub epoch: i64,
    pub expires_at: i64,
}

/// A run the leader means to queue, and the leadership it claims to have.
#[derive(Debug, Clone, Copy)]
pub struct FencedRun<'a> {
    pub job: &'a str,
    pub scheduled_for: i64,
    pub trigger: Trigger,
    pub lease: &'a str,
    pub holder: &'a str,
    pub epoch: i64,
    /// The scheduler's clock: the lease must not have expired by then.
    pub now: i64,
}

/// What a fenced enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new run, with its id.
    Queued(i64),
    /// The slot has a run already (queued by this or an earlier leader).
    AlreadyQueued,
    /// The lease no longer names this holder with this epoch: nothing was written.
    Fenced,
}

/// What the job list and the staleness check need to know about one job's runs.
#[derive(Debug, Clone, Default)]
pub struct CronHistory {
    /// The run queued last.
    pub last_run: Option<CronRun>,
    /// The slot of the latest run that succeeded.
    pub last_success_for: Option<i64>,
    /// The earliest and the latest slot of any run.
    pub first_for: Option<i64>,
    pub latest_for: Option<i64>,
}

#[async_trait]
pub trait CronStore: Send + Sync {
    /// Takes or renews `name` for `holder` until `now + lease_ms`, if it is free (expired at
    /// `now`) or already held by `holder`. Returns the epoch held, raised when the holder
    /// changed; `None` when another holder's lease is live.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        lease_ms: i64,
    ) -> StoreResult<Option<i64>>;
    /// Gives the lease up (expires it), if `holder` holds it, so another replica takes over
    /// without waiting.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
    /// The holder of `name`, if its lease is live at `now`.
    async fn current_lease(&self, name: &str, now: i64) -> StoreResult<Option<LeaseView>>;
    /// Queues a run for a slot, only while the lease names `holder` with `epoch` (see the
    /// module documentation).
    async fn enqueue_fenced_cron_run(&self, run: FencedRun<'_>) -> StoreResult<Enqueued>;
    /// Queues a manual run of `job` unless one of its runs is queued or running; returns the
    /// run and whether it is new. A new run is logged as `actor`'s, in the same transaction.
    async fn request_manual_cron_run(
        &self,
        job: &str,
        now: i64,
        actor: &str,
    ) -> StoreResult<(CronRun, bool)>;
    /// Claims the next due run for `holder` until `now + lease_ms`, marking it started.
    async fn claim_next_cron_run(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<CronRun>> {
        Ok(self.claim_cron_run(holder, lease_ms).await?.map(|c| c.row))
    }
    /// [`Self::claim_next_cron_run`], saying whether another run was due too.
    async fn claim_cron_run(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<Claimed<CronRun>>>;
    /// `running` → `succeeded` with the job's summary; `LeaseLost` if another holds it now.
    async fn complete_cron_run(&self, id: i64, holder: &str, summary: &Value) -> StoreResult<()>;
    /// `running` → `failed` with the error; `LeaseLost` if another holds it now.
    async fn fail_cron_run(&self, id: i64, holder: &str, error: &str) -> StoreResult<()>;
    async fn get_cron_run(&self, id: i64) -> StoreResult<Option<CronRun>>;
    /// Newest first, of one job or of all.
    async fn list_cron_runs(&self, job: Option<&str>, page: Page) -> StoreResult<Vec<CronRun>>;
    async fn cron_history(&self, job: &str) -> StoreResult<CronHistory>;
}

macro_rules! impl_cron_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::types::Json;
            use $crate::store::cron::*;
            use $crate::store::lease_queue::{Claimed, CRON};
            use $crate::store::{Page, StoreError, StoreResult, now_ms};

            #[async_trait]
            impl CronStore for $store {
                async fn acquire_lease(&self, name: &str, holder: &str, now: i64, lease_ms: i64) -> StoreResult<Option<i64>> {
                    // Every SET expression reads the row as it was, so the epoch compares the
                    // old holder with the new one.
                    Ok(sqlx::query_scalar(
                        "INSERT INTO leases (name, holder, expires_at, epoch) VALUES ($1, $2, $3, 1)
                         ON CONFLICT (name) DO UPDATE
                         SET epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch
                                          ELSE leases.epoch + 1 END,
                             holder = excluded.holder,
                             expires_at = excluded.expires_at
                         WHERE leases.expires_at < $4 OR leases.holder = excluded.holder
                         RETURNING epoch",
                    )
                    .bind(name)
                    .bind(holder)
                    .bind(now.saturating_add(lease_ms))
                    .bind(now)
                    .fetch_optional(self.writer())
                    .await?)
                }

                async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
                    sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
                        .bind(name)
                        .bind(holder)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }

                async fn current_lease(&self, name: &str, now: i64) -> StoreResult<Option<LeaseView>> {
                    Ok(sqlx::query_as::<_, LeaseView>(
                        "SELECT holder, epoch, expires_at FROM leases WHERE name = $1 AND expires_at >= $2",
                    )
                    .bind(name)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn enqueue_fenced_cron_run(&self, run: FencedRun<'_>) -> StoreResult<Enqueued> {
                    let mut tx = self.begin_write().await?;
                    let lock = format!(
                        "SELECT holder, epoch, expires_at FROM leases WHERE name = $1{}",
                        <$store>::FOR_UPDATE
                    );
                    let lease = sqlx::query_as::<_, LeaseView>(sqlx::AssertSqlSafe(lock))
                        .bind(run.lease)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let held = lease.is_some_and(|l| {
                        l.holder == run.holder && l.epoch == run.epoch && l.expires_at >= run.now
                    });
                    if !held {
                        tx.rollback().await?;
                        return Ok(Enqueued::Fenced);
                    }
                    let id: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO cron_runs (job_name, scheduled_for, status, trigger, epoch,
                             attempts, next_attempt_at, created_at)
                         VALUES ($1, $2, 'queued', $3, $4, 0, $5, $6)
                         ON CONFLICT (job_name, scheduled_for) DO NOTHING
                         RETURNING id",
                    )
                    .bind(run.job)
                    .bind(run.scheduled_for)
                    .bind(run.trigger.as_str())
                    .bind(run.epoch)
                    // Due at once: the runner works on the wall clock.
                    .bind(now_ms())
                    .bind(run.now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(id.map_or(Enqueued::AlreadyQueued, Enqueued::Queued))
                }

                async fn request_manual_cron_run(&self, job: &str, now: i64, actor: &str) -> StoreResult<(CronRun, bool)> {
                    const OPEN: &str = "SELECT * FROM cron_runs
                         WHERE job_name = $1 AND status IN ('queued', 'running')
                         ORDER BY id LIMIT 1";
                    let mut tx = self.begin_write().await?;
                    if let Some(open) = sqlx::query_as::<_, CronRun>(OPEN).bind(job).fetch_optional(&mut *tx).await? {
                        tx.commit().await?;
                        return Ok((open, false));
                    }
                    // A concurrent request that got there first is held off by the unique
                    // index on open manual runs: this insert then does nothing and the
                    // re-read below finds that run.
                    let new = sqlx::query_as::<_, CronRun>(
                        "INSERT INTO cron_runs (job_name, scheduled_for, status, trigger,
                             attempts, next_attempt_at, created_at)
                         VALUES ($1, $2, 'queued', 'manual', 0, $3, $2)
                         ON CONFLICT DO NOTHING
                         RETURNING *",
                    )
                    .bind(job)
                    .bind(now)
                    // Due at once: the runner works on the wall clock, `now` is the
                    // scheduler's.
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let result = match new {
                        Some(run) => {
                            <$store>::record_activity(&mut tx, actor, "cron.run_requested", "cron_run", run.id,
                                serde_json::json!({ "job": job }),
                                $crate::store::Change::created(serde_json::json!({
                                    "job": run.job_name, "trigger": "manual", "status": run.status,
                                    "scheduledFor": $crate::store::activity::instant(run.scheduled_for),
                                }))).await?;
                            (run, true)
                        }
                        None => match sqlx::query_as::<_, CronRun>(OPEN).bind(job).fetch_optional(&mut *tx).await? {
                            Some(open) => (open, false),
                            None => {
                                return Err(StoreError::Conflict(format!(
                                    "job {job} already has a run for {now}; ask again"
                                )));
                            }
                        },
                    };
                    tx.commit().await?;
                    Ok(result)
                }

                async fn claim_cron_run(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<CronRun>>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let claimed = sqlx::query(sqlx::AssertSqlSafe(CRON.claim_sql(<$store>::BACKEND)))
                        .bind(holder)
                        .bind(now)
                        .bind(now + lease_ms.max(1))
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(Claimed { row: mut run, more_due }) = claimed.as_ref().map(Claimed::<CronRun>::from_row).transpose()? else {
                        tx.commit().await?;
                        return Ok(None);
                    };
                    sqlx::query("UPDATE cron_runs SET started_at = $2, runner = $3 WHERE id = $1")
                        .bind(run.id)
                        .bind(now)
                        .bind(holder)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    run.started_at = Some(now);
                    run.runner = Some(holder.to_owned());
                    Ok(Some(Claimed { row: run, more_due }))
                }

                async fn complete_cron_run(&self, id: i64, holder: &str, summary: &serde_json::Value) -> StoreResult<()> {
                    let rows = sqlx::query(
                        "UPDATE cron_runs SET status = 'succeeded', output = $3, error = NULL, finished_at = $4,
                             lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'running'",
                    )
                    .bind(id)
                    .bind(holder)
                    .bind(Json(summary))
                    .bind(now_ms())
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    if rows == 0 {
                        return Err(StoreError::lease_lost(format_args!("cron run {id}")));
                    }
                    Ok(())
                }

                async fn fail_cron_run(&self, id: i64, holder: &str, error: &str) -> StoreResult<()> {
                    let rows = sqlx::query(
                        "UPDATE cron_runs SET status = 'failed', error = $3, finished_at = $4,
                             lease_holder = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND lease_holder = $2 AND status = 'running'",
                    )
                    .bind(id)
                    .bind(holder)
                    .bind(error)
                    .bind(now_ms())
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    if rows == 0 {
                        return Err(StoreError::lease_lost(format_args!("cron run {id}")));
                    }
                    Ok(())
                }

                async fn get_cron_run(&self, id: i64) -> StoreResult<Option<CronRun>> {
                    Ok(sqlx::query_as::<_, CronRun>("SELECT * FROM cron_runs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn list_cron_runs(&self, job: Option<&str>, page: Page) -> StoreResult<Vec<CronRun>> {
                    Ok(sqlx::query_as::<_, CronRun>(
                        "SELECT * FROM cron_runs
                         WHERE ($1 IS NULL OR job_name = $1) AND ($2 IS NULL OR id < $2)
                         ORDER BY id DESC LIMIT $3",
                    )
                    .bind(job)
                    .bind(page.after_id)
                    .bind(page.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn cron_history(&self, job: &str) -> StoreResult<CronHistory> {
                    let last_run = sqlx::query_as::<_, CronRun>(
                        "SELECT * FROM cron_runs WHERE job_name = $1 ORDER BY id DESC LIMIT 1",
                    )
                    .bind(job)
                    .fetch_optional(&self.pool)
                    .await?;
                    let (first_for, latest_for): (Option<i64>, Option<i64>) = sqlx::query_as(
                        "SELECT MIN(scheduled_for), MAX(scheduled_for) FROM cron_runs WHERE job_name = $1",
                    )
                    .bind(job)
                    .fetch_one(&self.pool)
                    .await?;
                    let last_success_for: Option<i64> = sqlx::query_scalar(
                        "SELECT MAX(scheduled_for) FROM cron_runs WHERE job_name = $1 AND status = 'succeeded'",
                    )
                    .bind(job)
                    .fetch_one(&self.pool)
                    .await?;
                    Ok(CronHistory {
                        last_run,
                        last_success_for,
                        first_for,
                        latest_for,
                    })
                }
            }
        };
    };
}

pub(crate) use impl_cron_store;
