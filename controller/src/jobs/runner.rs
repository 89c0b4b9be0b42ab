//! The worker loop every queue shares.
//!
//! Each worker loops: claim a due row with a lease, run it, record the outcome. Idle, it sleeps
//! until a wake-up for its queue or shutdown. Wake-ups come from whoever queued a row, from a
//! worker that just claimed one (there may be more), and from the queue's one watcher, which
//! reads when the earliest row falls due (a retry, a wait, an expired lease) and wakes a worker
//! then, or at the latest every poll interval: the safety net for a wake-up that never came.
//! One watcher per queue, not a timer per worker, so an idle controller asks the database once
//! per queue and interval, not once per worker. While a row runs, its lease is renewed at a
//! third of its length; if a renewal finds the lease lost (another worker took the row over
//! after a stall), the job's `RunContext::lost` is cancelled, the job stops before its next
//! write, and the runner writes nothing more: every write is fenced by the holder, so the
//! successor's progress is safe.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ClaimInfo, Dispatcher, Job, JobDeps, JobSettings, Node, Outcome, RunContext};
use crate::store::lease_queue::{Claimed, LeasedRow, Release};
use crate::store::{DynStore, StoreError, now_ms};

/// Runs the workers of one job kind.
pub struct Runner<J: Job> {
    job: Arc<J>,
    store: DynStore,
    dispatcher: Dispatcher,
    node: Arc<Node>,
    settings: JobSettings,
}

impl<J: Job> std::fmt::Debug for Runner<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("queue", &J::QUEUE.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<J: Job> Clone for Runner<J> {
    fn clone(&self) -> Self {
        Self {
            job: self.job.clone(),
            store: self.store.clone(),
            dispatcher: self.dispatcher.clone(),
            node: self.node.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<J: Job> Runner<J> {
    pub fn new(job: J, deps: &JobDeps) -> Self {
        let settings = job.settings();
        Self {
            job: Arc::new(job),
            store: deps.store.clone(),
            dispatcher: deps.dispatcher.clone(),
            node: deps.node.clone(),
            settings,
        }
    }

    /// Starts the configured number of workers; each stops when `shutdown` is cancelled,
    /// finishing the row in hand first.
    pub fn spawn(self, shutdown: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles: Vec<_> = (0..self.settings.workers.max(1))
            .map(|n| {
                let worker = self.clone();
                let holder = self.node.holder(J::QUEUE, n);
                let shutdown = shutdown.clone();
                tokio::spawn(async move { worker.work(holder, shutdown).await })
            })
            .collect();
        let shutdown = shutdown.clone();
        handles.push(tokio::spawn(async move { self.watch(shutdown).await }));
        handles
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }

    async fn work(self, holder: String, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.job.claim(&holder, self.lease_ms()).await {
                Ok(Some(Claimed { row, more_due })) => {
                    // Another row was due as well: an idle sibling takes it.
                    if more_due {
                        self.dispatcher.pass_on(J::QUEUE);
                    }
                    self.run_claimed(row, &holder).await;
                    // Claim again at once only if a wake-up came meanwhile (a row queued, or a
                    // sibling passing one on); otherwise no other row was due at the claim, or
                    // the sibling woken above took it, and this worker waits like the others.
                    if self.dispatcher.woken(J::QUEUE).now_or_never().is_none() {
                        self.idle(&shutdown).await;
                    }
                }
                Ok(None) => self.idle(&shutdown).await,
                Err(e) => {
                    tracing::warn!(queue = J::QUEUE.name, error = %e, "cannot claim; retrying shortly");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.settings.poll) => {}
                    }
                }
            }
        }
    }

    /// Sleeps until a wake-up or shutdown.
    async fn idle(&self, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.dispatcher.woken(J::QUEUE) => {}
        }
    }

    /// The queue's watcher: wakes a worker when the earliest row is due, then looks again after
    /// the poll interval (the woken worker passes the wake-up on while it finds rows); sleeps
    /// until a row falls due within the interval.
    async fn watch(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let poll = self.settings.poll;
            let sleep = match self.store.next_due(J::QUEUE).await {
                Ok(Some(due)) => {
                    let until = due - now_ms();
                    if until <= 0 {
                        self.dispatcher.pass_on(J::QUEUE);
                        poll
                    } else {
                        poll.min(Duration::from_millis(u64::try_from(until).unwrap_or(0)))
                    }
                }
                Ok(None) => poll,
                Err(e) => {
                    tracing::warn!(queue = J::QUEUE.name, error = %e, "cannot read when the next row is due; looking again shortly");
                    poll
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn run_claimed(&self, row: J::Row, holder: &str) {
        let span = J::span(&row);
        self.attempt(row, holder).instrument(span).await;
    }

    async fn attempt(&self, row: J::Row, holder: &str) {
        let info = J::info(&row);
        let ctx = RunContext {
            holder: holder.to_owned(),
            lost: CancellationToken::new(),
        };
        let renewer = {
            let store = self.store.clone();
            let lost = ctx.lost.clone();
            let holder = holder.to_owned();
            let lease = self.lease_ms();
            tokio::spawn(async move {
                let every = Duration::from_millis(u64::try_from(lease / 3).unwrap_or(1000).max(1));
                let row = LeasedRow {
                    queue: J::QUEUE,
                    id: info.id,
                    holder: &holder,
                };
                loop {
                    tokio::time::sleep(every).await;
                    match store.renew_leased(row, lease).await {
                        Ok(()) => {}
                        Err(StoreError::LeaseLost(_)) => {
                            lost.cancel();
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(queue = J::QUEUE.name, id = info.id, error = %e, "lease renewal failed; will retry");
                        }
                    }
                }
            })
        };
        let started = std::time::Instant::now();
        let outcome = self.job.run(&row, &ctx).await;
        let elapsed = started.elapsed();
        renewer.abort();
        let outcome = if ctx.lost.is_cancelled() {
            Outcome::LeaseLost
        } else {
            outcome
        };
        let exhausted = info
            .max_attempts
            .is_some_and(|max| info.attempts >= max.max(1));
        let word = match &outcome {
            Outcome::Done(_) => "completed",
            Outcome::Retry(_) if !exhausted => "retry",
            Outcome::Retry(_) | Outcome::Fail(_) => "failed",
            Outcome::Wait(_) => "wait",
            Outcome::LeaseLost => "lease_lost",
        };
        crate::telemetry::metrics::job_attempt(J::QUEUE.name, word, elapsed);
        self.settle(&row, info, holder, outcome).await;
    }

    /// Records how the attempt ended: completed, retried later, waiting, or failed for good.
    async fn settle(&self, row: &J::Row, info: ClaimInfo, holder: &str, outcome: Outcome<J::Done>) {
        let queue = J::QUEUE.name;
        let id = info.id;
        let attempt = info.attempts;
        let leased = LeasedRow {
            queue: J::QUEUE,
            id,
            holder,
        };
        let result = match outcome {
            Outcome::Done(done) => self.complete(row, holder, done).await,
            Outcome::LeaseLost => Err(StoreError::lease_lost(leased)),
            Outcome::Wait(reason) => {
                // At least the poll interval, so many waiting rows do not spin the queue.
                let poll_ms = u64::try_from(self.settings.poll.as_millis()).unwrap_or(1000);
                let wait_ms = self.settings.backoff.delay_ms(1).max(poll_ms);
                let due = now_ms().saturating_add(i64::try_from(wait_ms).unwrap_or(i64::MAX / 4));
                tracing::info!(queue, id, reason = %reason, "waits");
                self.store
                    .release_leased(leased, Release::Wait, &reason, due)
                    .await
            }
            Outcome::Retry(error) if info.max_attempts.is_none_or(|max| attempt < max.max(1)) => {
                let delay = self.settings.backoff.delay_ms(attempt);
                if attempt >= self.settings.loud_after_attempts {
                    tracing::error!(queue, id, attempt, retry_in_ms = delay, error = %error, "attempt failed again; will keep retrying");
                } else {
                    tracing::warn!(queue, id, attempt, retry_in_ms = delay, error = %error, "attempt failed; will retry");
                }
                let due = now_ms().saturating_add(i64::try_from(delay).unwrap_or(i64::MAX / 4));
                self.store
                    .release_leased(leased, Release::Retry, &error, due)
                    .await
            }
            Outcome::Retry(error) | Outcome::Fail(error) => {
                tracing::error!(queue, id, attempt, error = %error, "failed for good");
                self.job.fail(row, holder, &error).await
            }
        };
        match result {
            Ok(()) => {}
            Err(StoreError::LeaseLost(_)) => {
                tracing::warn!(
                    queue,
                    id,
                    "lease lost; another worker continues, nothing more is written here"
                );
            }
            Err(e) => {
                tracing::warn!(queue, id, error = %e, "could not record the outcome; the row runs again after its lease");
            }
        }
    }

    /// Writes the finished state, retrying a few times: a completion that is never written
    /// means the work runs again after the lease (idempotent, but wasted, and for mail a copy).
    async fn complete(&self, row: &J::Row, holder: &str, done: J::Done) -> Result<(), StoreError> {
        let mut tries = 0u64;
        loop {
            match self.job.complete(row, holder, done.clone()).await {
                Err(StoreError::Database(e)) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(queue = J::QUEUE.name, error = %e, "cannot write the completion yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                other => return other,
            }
        }
    }
}
