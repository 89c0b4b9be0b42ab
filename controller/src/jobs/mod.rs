//! One job runner for every queue the controller works: provisioning tasks, the email outbox,
//! billing jobs and the runs of scheduled jobs (which the scheduler, `crate::cron`, only queues).
//!
//! The runner ([`runner`]) owns what every queue needs: claiming a due row under a lease,
//! renewing the lease while the job runs, fencing (a worker whose lease was taken over writes
//! nothing more), retries with exponential backoff and jitter, waiting without spending the
//! retry budget, wake-ups (in-process or through Redis, [`wake`]) with polling as the fallback,
//! and taking back at start-up the rows this controller's previous process left in flight
//! ([`node`]). A job kind says only what is particular to it: how to claim its row, what to do
//! with it and what completing or failing it writes.
//!
//! A new kind of job is one file implementing [`Job`], and one line in [`spawn_all`].

pub mod backoff;
pub mod billing;
pub mod cron;
mod email;
pub mod node;
mod provision;
pub mod runner;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use node::Node;
pub use runner::Runner;
pub use wake::Dispatcher;

use crate::store::lease_queue::{Claimed, LeasedRow, QueueTable};
use crate::store::{DynStore, StoreResult};

/// How one attempt at a job ended.
#[derive(Debug)]
pub enum Outcome<D> {
    /// Finished; the job's `complete` writes what that means.
    Done(D),
    /// Failed in a way another attempt may fix (a timeout, a 5xx); retried with backoff until
    /// the row's attempts run out.
    Retry(String),
    /// Nothing is wrong with the row; it waits for a resource (a server with room, an agent's
    /// session). The claim is handed back without spending an attempt.
    Wait(String),
    /// Retrying cannot help.
    Fail(String),
    /// Another worker holds the row now; write nothing.
    LeaseLost,
}

/// The runner's view of a claimed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimInfo {
    pub id: i64,
    /// Attempts begun, this one included.
    pub attempts: i32,
    /// `None`: retried for as long as it takes (mail is never dropped).
    pub max_attempts: Option<i32>,
}

/// How a queue is worked.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub workers: usize,
    /// A claimed row belongs to its worker this long; renewed at a third of it.
    pub lease: Duration,
    pub backoff: Backoff,
    /// How often the queue's watcher looks for due rows even without a wake-up.
    pub poll: Duration,
    /// From this attempt on, a failed attempt is logged at `error`: someone should look.
    pub loud_after_attempts: i32,
}

/// What a running job may consult: who holds its row and whether the lease was lost.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub holder: String,
    /// Cancelled when a renewal finds the lease taken over; a job stops before its next write.
    pub lost: CancellationToken,
}

/// One kind of queued work.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// The claimed row.
    type Row: Send + Sync + 'static;
    /// What a finished attempt hands to `complete`.
    type Done: Clone + Send + Sync + 'static;

    /// The table this job's rows live in.
    const QUEUE: &'static QueueTable;

    fn settings(&self) -> JobSettings;
    fn store(&self) -> &DynStore;
    fn info(row: &Self::Row) -> ClaimInfo;
    /// The span an attempt runs in: every log line of the run carries its fields.
    fn span(row: &Self::Row) -> tracing::Span {
        tracing::info_span!("job", queue = Self::QUEUE.name, id = Self::info(row).id)
    }

    /// Claims the next due row for `holder` until `now + lease_ms`, counting an attempt, and
    /// says whether another row was due too.
    async fn claim(&self, holder: &str, lease_ms: i64) -> StoreResult<Option<Claimed<Self::Row>>>;
    async fn run(&self, row: &Self::Row, ctx: &RunContext) -> Outcome<Self::Done>;
    /// Writes the finished state, fenced by `holder`.
    async fn complete(&self, row: &Self::Row, holder: &str, done: Self::Done) -> StoreResult<()>;
    /// Marks the row failed for good, fenced by `holder`.
    async fn fail(&self, row: &Self::Row, holder: &str, error: &str) -> StoreResult<()> {
        let row = LeasedRow {
            queue: Self::QUEUE,
            id: Self::info(row).id,
            holder,
        };
        self.store().fail_leased(row, error).await
    }
}

/// Everything [`spawn_all`] needs.
#[derive(Clone)]
pub struct JobDeps {
    pub store: DynStore,
    pub dispatcher: Dispatcher,
    pub node: Arc<Node>,
}

impl std::fmt::Debug for JobDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDeps")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Starts the workers of every job kind; they stop when `shutdown` is cancelled, finishing the
/// row in hand. Before any claims, the rows this node's previous process left in flight are
/// taken back (see [`node`]).
pub async fn spawn_all(
    deps: &JobDeps,
    provisioner: crate::provisioning::Provisioner,
    mail: crate::mail::OutboxSender,
    billing: billing::BillingWorker,
    cron: cron::CronWorker,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    deps.node
        .reclaim_abandoned(&deps.store, &crate::store::lease_queue::QUEUES)
        .await;
    let mut workers = Runner::new(provisioner, deps).spawn(shutdown);
    workers.extend(Runner::new(mail, deps).spawn(shutdown));
    workers.extend(Runner::new(billing, deps).spawn(shutdown));
    workers.extend(Runner::new(cron, deps).spawn(shutdown));
    workers
}
