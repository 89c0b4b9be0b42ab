//! Scheduled jobs on both backends: several schedulers on one database with a fast clock queue
//! each slot exactly once through crashes and hand-overs, a leader that stalls past its lease is
//! fenced off, a takeover after an outage catches up one slot rather than every missed one, runs
//! record their summary or error, and the API and `/readyz` show all of it.

mod api_support;
mod backends;
mod fleet_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::{Auth, Body, assert_error, send};
use async_trait::async_trait;
use fleet_support::Controller;
use mpanel_controller::cron::{
    Clock, Cron, CronError, CronJob, Registry, Schedule, Scheduler, SchedulerSettings, Zone,
};
use mpanel_controller::jobs::cron::CronWorker;
use mpanel_controller::jobs::{Dispatcher, JobDeps, Node, Runner};
use mpanel_controller::store::cron::{CronRun, Enqueued, FencedRun, LEADER_LEASE, Trigger};
use mpanel_controller::store::{self, DynStore, Page};
use mpanel_e2e::databases::TestDatabase;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2027-01-01T00:00:00Z.
const JAN1: i64 = 1_798_761_600_000;

// ---- what the tests schedule --------------------------------------------------------------

/// Records every slot it runs for.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<i64>>>);

impl Recorder {
    fn slots(&self) -> Vec<i64> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

#[async_trait]
impl CronJob for Recorder {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        self.0.lock().unwrap().push(scheduled_for);
        Ok(json!({ "ranFor": scheduled_for }))
    }
}

/// Always fails, as a job whose provider refuses it would.
struct Refused;

#[async_trait]
impl CronJob for Refused {
    async fn run(&self, _scheduled_for: i64) -> anyhow::Result<Value> {
        Err(anyhow::anyhow!(
            "export target refused the upload: quota exceeded"
        ))
    }
}

fn schedule(expression: &str) -> Schedule {
    Schedule::parse(expression, &Zone::utc()).unwrap()
}

/// Two nightly jobs as the controller has them and one every six hours.
fn nightly_registry() -> (Arc<Registry>, BTreeMap<&'static str, (Schedule, Recorder)>) {
    let mut jobs = BTreeMap::new();
    let mut registry = Registry::new(Zone::utc());
    for (name, expression) in [
        ("billing-like", "0 2 * * *"),
        ("suspension-like", "0 3 * * *"),
        ("six-hourly", "0 */6 * * *"),
    ] {
        let recorder = Recorder::default();
        registry = registry.with(name, Some(schedule(expression)), recorder.clone());
        jobs.insert(name, (schedule(expression), recorder));
    }
    (Arc::new(registry), jobs)
}

/// A clock the test sets; each scheduler's reads are counted, so the test knows when every
/// live scheduler has ticked at the current time.
#[derive(Clone)]
struct TestTime(Arc<AtomicI64>);

impl TestTime {
    fn new(at: i64) -> Self {
        TestTime(Arc::new(AtomicI64::new(at)))
    }
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn set(&self, at: i64) {
        self.0.store(at, Ordering::SeqCst);
    }
    fn clock(&self, reads: Arc<AtomicU64>) -> Clock {
        let time = self.0.clone();
        Arc::new(move || {
            reads.fetch_add(1, Ordering::SeqCst);
            time.load(Ordering::SeqCst)
        })
    }
    fn fixed(&self) -> Clock {
        self.clock(Arc::new(AtomicU64::new(0)))
    }
}

fn settings(lease_ms: i64) -> SchedulerSettings {
    SchedulerSettings {
        lease_ms,
        renew_ms: lease_ms / 3,
        max_sleep: Duration::from_millis(1),
    }
}

fn runner(
    store: &DynStore,
    registry: &Arc<Registry>,
    dispatcher: &Dispatcher,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let deps = JobDeps {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        node: Arc::new(Node::ephemeral()),
    };
    let worker = CronWorker {
        store: store.clone(),
        registry: registry.clone(),
    };
    Runner::new(worker, &deps).spawn(&stop);
    stop
}

async fn all_runs(store: &DynStore) -> Vec<CronRun> {
    store
        .list_cron_runs(
            None,
            Page {
                limit: 10_000,
                after_id: None,
            },
        )
        .await
        .unwrap()
}

/// Waits until no run is queued or running.
async fn drain(store: &DynStore) -> Vec<CronRun> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runs = all_runs(store).await;
        if runs.iter().all(|r| !r.is_open()) {
            return runs;
        }
        assert!(Instant::now() < deadline, "runs stayed open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- several schedulers, a fast clock ------------------------------------------------------

struct Member {
    name: String,
    reads: Arc<AtomicU64>,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

struct Fleet {
    store: DynStore,
    time: TestTime,
    dispatcher: Dispatcher,
    live: Vec<Member>,
}

/// The lease of the fleet tests: three simulated hours, renewed hourly; the clock moves an
/// hour at a time, and only once every live scheduler has ticked at the current hour.
const FLEET_LEASE: i64 = 3 * HOUR;

impl Fleet {
    fn start(store: &DynStore, registry: &Arc<Registry>, members: usize) -> Fleet {
        let mut fleet = Fleet {
            store: store.clone(),
            time: TestTime::new(JAN1),
            dispatcher: Dispatcher::new(),
            live: Vec::new(),
        };
        for n in 0..members {
            let reads = Arc::new(AtomicU64::new(0));
            let name = format!("replica-{n}");
            let scheduler = Scheduler::new(
                store.clone(),
                registry.clone(),
                fleet.dispatcher.clone(),
                name.clone(),
                fleet.time.clock(reads.clone()),
                settings(FLEET_LEASE),
            );
            let stop = CancellationToken::new();
            let handle = tokio::spawn(scheduler.run(stop.clone()));
            fleet.live.push(Member {
                name,
                reads,
                stop,
                handle,
            });
        }
        fleet
    }

    /// Waits until every live scheduler has run a whole tick since now.
    async fn settle(&self) {
        let seen: Vec<u64> = self
            .live
            .iter()
            .map(|m| m.reads.load(Ordering::SeqCst))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Two reads per loop: a tick that started before this call may account for one.
        while self
            .live
            .iter()
            .zip(&seen)
            .any(|(m, s)| m.reads.load(Ordering::SeqCst) < s + 3)
        {
            assert!(Instant::now() < deadline, "a scheduler stopped ticking");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn run_until(&self, until: i64) {
        while self.time.now() < until {
            self.time.set(self.time.now() + HOUR);
            self.settle().await;
        }
    }

    async fn leader(&self) -> (String, i64) {
        let lease = self
            .store
            .current_lease(LEADER_LEASE, self.time.now())
            .await
            .unwrap()
            .expect("a leader");
        (lease.holder, lease.epoch)
    }

    fn take_leader(&mut self, holder: &str) -> Member {
        let at = self.live.iter().position(|m| m.name == holder).unwrap();
        self.live.remove(at)
    }

    /// The leader dies without a word: its lease lapses.
    async fn crash_leader(&mut self) {
        let (holder, _) = self.leader().await;
        let member = self.take_leader(&holder);
        member.handle.abort();
        let _ = member.handle.await;
        self.settle().await;
    }

    /// The leader shuts down and gives its lease up.
    async fn stop_leader(&mut self) {
        let (holder, _) = self.leader().await;
        let member = self.take_leader(&holder);
        member.stop.cancel();
        member.handle.await.unwrap();
        self.settle().await;
    }

    async fn stop(self) {
        for m in self.live {
            m.stop.cancel();
            m.handle.await.unwrap();
        }
    }
}

/// Every job's runs are exactly its slots in `(JAN1, until]`, each run once by the runner.
async fn assert_one_run_per_slot(
    store: &DynStore,
    jobs: &BTreeMap<&'static str, (Schedule, Recorder)>,
    until: i64,
) -> Vec<CronRun> {
    let runs = drain(store).await;
    for (name, (schedule, recorder)) in jobs {
        let expected = schedule.slots_between(JAN1, until, usize::MAX);
        assert!(expected.len() >= 30, "{name}: {} slots", expected.len());
        let mut queued: Vec<i64> = runs
            .iter()
            .filter(|r| r.job_name == *name)
            .map(|r| r.scheduled_for)
            .collect();
        queued.sort_unstable();
        assert_eq!(queued, expected, "{name}: one run per slot, no slot missed");
        assert_eq!(
            recorder.slots(),
            expected,
            "{name}: each slot's run executed exactly once"
        );
    }
    for run in &runs {
        assert_eq!(run.status, "succeeded", "{run:?}");
        assert!(run.epoch.is_some_and(|e| e > 0), "{run:?}");
        assert!(run.started_at.is_some() && run.finished_at.is_some());
        assert_eq!(run.attempts, 1, "{run:?}");
    }
    runs
}

fn triggers(runs: &[CronRun], trigger: &str) -> BTreeSet<(String, i64)> {
    runs.iter()
        .filter(|r| r.trigger == trigger)
        .map(|r| (r.job_name.clone(), r.scheduled_for))
        .collect()
}

async fn two_schedulers_queue_each_slot_once_over_thirty_days_and_a_hand_over(store: DynStore) {
    let (registry, jobs) = nightly_registry();
    let mut fleet = Fleet::start(&store, &registry, 2);
    let stop_runner = runner(&store, &registry, &fleet.dispatcher);
    fleet.settle().await;
    let (_, first_epoch) = fleet.leader().await;

    fleet.run_until(JAN1 + 15 * DAY + HOUR).await;
    fleet.stop_leader().await;
    let (_, second_epoch) = fleet.leader().await;
    assert!(second_epoch > first_epoch, "a new holder, a new epoch");
    fleet.run_until(JAN1 + 30 * DAY).await;
    fleet.stop().await;

    let runs = assert_one_run_per_slot(&store, &jobs, JAN1 + 30 * DAY).await;
    assert!(
        triggers(&runs, "catch-up").is_empty(),
        "a clean hand-over misses nothing"
    );
    stop_runner.cancel();
}

async fn three_schedulers_queue_each_slot_once_through_a_crash_and_a_shutdown(store: DynStore) {
    let (registry, jobs) = nightly_registry();
    let mut fleet = Fleet::start(&store, &registry, 3);
    let stop_runner = runner(&store, &registry, &fleet.dispatcher);
    fleet.settle().await;

    // The leader dies just after 01:00 on day 10; its lease runs to 04:00, so 02:00 and 03:00
    // pass with no one leading, and the successor (from 05:00) catches each up once.
    fleet.run_until(JAN1 + 10 * DAY + HOUR).await;
    fleet.crash_leader().await;
    fleet.run_until(JAN1 + 20 * DAY + HOUR).await;
    fleet.stop_leader().await;
    fleet.run_until(JAN1 + 30 * DAY).await;
    fleet.stop().await;

    let runs = assert_one_run_per_slot(&store, &jobs, JAN1 + 30 * DAY).await;
    assert_eq!(
        triggers(&runs, "catch-up"),
        BTreeSet::from([
            ("billing-like".to_owned(), JAN1 + 10 * DAY + 2 * HOUR),
            ("suspension-like".to_owned(), JAN1 + 10 * DAY + 3 * HOUR),
        ]),
        "only the slots missed after the crash are catch-ups"
    );
    let epochs: BTreeSet<i64> = runs.iter().filter_map(|r| r.epoch).collect();
    assert_eq!(
        epochs.len(),
        3,
        "three leaders, one after the other: {epochs:?}"
    );
    stop_runner.cancel();
}

// ---- fencing -------------------------------------------------------------------------------

async fn a_leader_paused_past_its_lease_loses_and_its_fenced_enqueue_is_refused(store: DynStore) {
    const LEASE: i64 = 30_000;
    let registry = Arc::new(Registry::new(Zone::utc()).with(
        "nightly",
        Some(schedule("0 2 * * *")),
        Recorder::default(),
    ));
    let dispatcher = Dispatcher::new();
    // Two replicas whose clocks disagree: a's runs 31 s behind b's.
    let a_time = TestTime::new(JAN1 + 2 * HOUR - 2_000);
    let b_time = TestTime::new(JAN1 + 2 * HOUR - 2_000);
    let mut a = Scheduler::new(
        store.clone(),
        registry.clone(),
        dispatcher.clone(),
        "replica-a",
        a_time.fixed(),
        settings(LEASE),
    );
    let mut b = Scheduler::new(
        store.clone(),
        registry.clone(),
        dispatcher.clone(),
        "replica-b",
        b_time.fixed(),
        settings(LEASE),
    );
    let tick = a.tick().await.unwrap();
    let a_epoch = tick.epoch.expect("a leads");
    assert!(!b.tick().await.unwrap().leads(), "one leader at a time");

    // a stalls; b's clock passes a's lease and b takes over with a new epoch.
    b_time.set(JAN1 + 2 * HOUR + LEASE);
    let tick = b.tick().await.unwrap();
    let b_epoch = tick.epoch.expect("b leads once a's lease has lapsed");
    assert!(b_epoch > a_epoch);

    // a wakes believing its lease still runs (by its own clock) and reaches the 02:00 slot:
    // its write is refused and it steps down.
    a_time.set(JAN1 + 2 * HOUR + 1_000);
    let tick = a.tick().await.unwrap();
    assert!(tick.fenced, "the stale leader's enqueue was fenced off");
    assert!(!tick.leads());
    assert!(tick.queued.is_empty());
    assert!(
        all_runs(&store).await.is_empty(),
        "nothing was queued under the old epoch"
    );

    // The fence, write by write.
    let fenced = |holder: &'static str, epoch: i64, now: i64, slot: i64| FencedRun {
        job: "nightly",
        scheduled_for: slot,
        trigger: Trigger::Schedule,
        lease: LEADER_LEASE,
        holder,
        epoch,
        now,
    };
    let now = JAN1 + 2 * HOUR + LEASE + 1_000;
    let slot = JAN1 + 2 * HOUR;
    for (holder, epoch, at, why) in [
        ("replica-a", a_epoch, now, "the old holder"),
        ("replica-b", a_epoch, now, "the old epoch"),
        ("replica-b", b_epoch, now + 2 * LEASE, "an expired lease"),
    ] {
        assert_eq!(
            store
                .enqueue_fenced_cron_run(fenced(holder, epoch, at, slot))
                .await
                .unwrap(),
            Enqueued::Fenced,
            "{why}"
        );
    }
    let Enqueued::Queued(id) = store
        .enqueue_fenced_cron_run(fenced("replica-b", b_epoch, now, slot))
        .await
        .unwrap()
    else {
        panic!("the leader's own write is queued");
    };
    assert_eq!(
        store
            .enqueue_fenced_cron_run(fenced("replica-b", b_epoch, now, slot))
            .await
            .unwrap(),
        Enqueued::AlreadyQueued,
        "a slot is queued once"
    );
    let run = store.get_cron_run(id).await.unwrap().unwrap();
    assert_eq!(
        (run.status.as_str(), run.trigger.as_str(), run.epoch),
        ("queued", "schedule", Some(b_epoch))
    );

    // Renewing keeps the epoch; each change of holder raises it, even back to an earlier one.
    let renewed = store
        .acquire_lease(LEADER_LEASE, "replica-b", now, LEASE)
        .await
        .unwrap();
    assert_eq!(renewed, Some(b_epoch));
    let back = store
        .acquire_lease(LEADER_LEASE, "replica-a", now + 2 * LEASE, LEASE)
        .await
        .unwrap();
    assert_eq!(back, Some(b_epoch + 1));
    assert_eq!(
        store
            .acquire_lease(LEADER_LEASE, "replica-b", now + 2 * LEASE + 1, LEASE)
            .await
            .unwrap(),
        None,
        "a live lease is not taken"
    );
}

// ---- catch-up ------------------------------------------------------------------------------

async fn a_takeover_after_an_outage_catches_up_one_slot_not_every_missed_one(store: DynStore) {
    let recorder = Recorder::default();
    let registry = Arc::new(
        Registry::new(Zone::utc())
            .with("nightly", Some(schedule("0 2 * * *")), recorder.clone())
            // Never ran before the outage: nothing to catch up.
            .with(
                "mid-month",
                Some(schedule("0 4 15 * *")),
                Recorder::default(),
            )
            // Off: never queued by the scheduler.
            .with("by-hand", None, Recorder::default()),
    );
    let dispatcher = Dispatcher::new();
    let time = TestTime::new(JAN1);
    let mut first = Scheduler::new(
        store.clone(),
        registry.clone(),
        dispatcher.clone(),
        "before-outage",
        time.fixed(),
        settings(HOUR),
    );
    let mut queued = Vec::new();
    while time.now() < JAN1 + 3 * DAY {
        queued.extend(first.tick().await.unwrap().queued);
        time.set(time.now() + 10 * MINUTE);
    }
    assert_eq!(
        queued,
        (0..3)
            .map(|d| (
                "nightly".to_owned(),
                JAN1 + d * DAY + 2 * HOUR,
                Trigger::Schedule
            ))
            .collect::<Vec<_>>()
    );

    // Ten days with no controller; then a new one takes over at 05:00 on day 13.
    time.set(JAN1 + 13 * DAY + 5 * HOUR);
    let mut second = Scheduler::new(
        store.clone(),
        registry.clone(),
        dispatcher.clone(),
        "after-outage",
        time.fixed(),
        settings(HOUR),
    );
    let tick = second.tick().await.unwrap();
    assert!(tick.leads());
    assert_eq!(
        tick.queued,
        vec![(
            "nightly".to_owned(),
            JAN1 + 13 * DAY + 2 * HOUR,
            Trigger::CatchUp
        )],
        "one catch-up run, for the latest missed slot"
    );
    time.set(time.now() + MINUTE);
    assert!(
        second.tick().await.unwrap().queued.is_empty(),
        "and only once"
    );

    // The schedule goes on from there.
    let mut later = Vec::new();
    while time.now() < JAN1 + 15 * DAY + 5 * HOUR {
        time.set(time.now() + 10 * MINUTE);
        later.extend(second.tick().await.unwrap().queued);
    }
    assert_eq!(
        later,
        vec![
            (
                "nightly".to_owned(),
                JAN1 + 14 * DAY + 2 * HOUR,
                Trigger::Schedule
            ),
            (
                "mid-month".to_owned(),
                JAN1 + 14 * DAY + 4 * HOUR,
                Trigger::Schedule
            ),
            (
                "nightly".to_owned(),
                JAN1 + 15 * DAY + 2 * HOUR,
                Trigger::Schedule
            ),
        ]
    );
    let runs = all_runs(&store).await;
    assert_eq!(runs.len(), 7, "three before, one catch-up, three after");
    assert!(runs.iter().all(|r| r.job_name != "by-hand"));
}

// ---- running ------------------------------------------------------------------------------

async fn a_failing_job_records_its_error_and_a_manual_run_in_progress_is_answered(store: DynStore) {
    let recorder = Recorder::default();
    let registry = Arc::new(
        Registry::new(Zone::utc())
            .with("export", Some(schedule("0 5 * * *")), Refused)
            .with("report", None, recorder.clone()),
    );
    let dispatcher = Dispatcher::new();
    let cron = Cron::new(store.clone(), registry.clone(), dispatcher.clone());
    let now = store::now_ms();

    // No runner yet: the first request queues, the second answers the same run.
    let (run, created) = cron.request_run("export", now, "admin:1").await.unwrap();
    assert!(created);
    assert_eq!(
        (run.status.as_str(), run.trigger.as_str()),
        ("queued", "manual")
    );
    let (again, created) = cron
        .request_run("export", now + 5, "admin:1")
        .await
        .unwrap();
    assert!(!created, "a queued run is answered, not doubled");
    assert_eq!(again.id, run.id);
    assert!(matches!(
        cron.request_run("no-such-job", now, "admin:1").await,
        Err(CronError::UnknownJob(name)) if name == "no-such-job"
    ));
    let (report, created) = cron.request_run("report", now, "admin:1").await.unwrap();
    assert!(created, "another job's run is its own");

    let stop = runner(&store, &registry, &dispatcher);
    let runs = drain(&store).await;
    stop.cancel();
    let failed = runs.iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(failed.status, "failed");
    assert_eq!(
        failed.error.as_deref(),
        Some("export target refused the upload: quota exceeded")
    );
    assert!(failed.output.is_none());
    assert!(failed.started_at.is_some() && failed.finished_at >= failed.started_at);
    assert_eq!(failed.attempts, 1, "a failed run is not retried");
    let done = runs.iter().find(|r| r.id == report.id).unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.output.as_ref().unwrap().0, json!({ "ranFor": now }));
    assert_eq!(recorder.slots(), vec![now]);

    // Once finished, a new request is a new run.
    let (next, created) = cron
        .request_run("export", now + 10, "admin:1")
        .await
        .unwrap();
    assert!(created);
    assert_ne!(next.id, run.id);
}

/// A manual run goes by the scheduler's clock (here a year ahead of the wall clock): it is for
/// that clock's time, yet due at once for the runner, which goes by the wall clock.
async fn a_manual_run_is_for_the_schedulers_time_and_due_at_once(store: DynStore) {
    let recorder = Recorder::default();
    let registry = Arc::new(Registry::new(Zone::utc()).with("report", None, recorder.clone()));
    let dispatcher = Dispatcher::new();
    let ahead = store::now_ms() + 365 * 24 * 3_600_000;
    let clock: Clock = Arc::new(move || ahead);
    let cron = Cron::new(store.clone(), registry.clone(), dispatcher.clone()).with_clock(clock);
    assert_eq!(cron.now(), ahead);
    let (run, created) = cron
        .request_run("report", cron.now(), "admin:1")
        .await
        .unwrap();
    assert!(created);
    assert_eq!(run.scheduled_for, ahead);
    let stop = runner(&store, &registry, &dispatcher);
    let runs = drain(&store).await;
    stop.cancel();
    let done = runs.iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(recorder.slots(), vec![ahead]);
}

on_both_backends!(
    a_manual_run_is_for_the_schedulers_time_and_due_at_once,
    two_schedulers_queue_each_slot_once_over_thirty_days_and_a_hand_over,
    three_schedulers_queue_each_slot_once_through_a_crash_and_a_shutdown,
    a_leader_paused_past_its_lease_loses_and_its_fenced_enqueue_is_refused,
    a_takeover_after_an_outage_catches_up_one_slot_not_every_missed_one,
    a_failing_job_records_its_error_and_a_manual_run_in_progress_is_answered,
);

// ---- the controller: routes and readiness ---------------------------------------------------

/// Raw SQL on the controller's database, for what no route does (holding a run, breaking a
/// table).
enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Sql {
    async fn connect(url: &str) -> Sql {
        if url.starts_with("sqlite:") {
            Sql::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Sql::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn execute(&self, sql: &'static str) {
        match self {
            Sql::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Sql::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }

    /// A `recurring-billing` run held as running by a worker that is not the controller's.
    async fn hold_running_run(&self, now: i64) -> i64 {
        const SQL: &str =
            "INSERT INTO cron_runs (job_name, scheduled_for, status, trigger, attempts,
                 next_attempt_at, lease_holder, lease_expires_at, started_at, created_at)
             VALUES ('recurring-billing', $1, 'running', 'manual', 1, $1, 'test-worker', $2, $1, $1)
             RETURNING id";
        match self {
            Sql::Sqlite(p) => {
                sqlx::query_scalar(SQL)
                    .bind(now)
                    .bind(now + HOUR)
                    .fetch_one(p)
                    .await
            }
            Sql::Postgres(p) => {
                sqlx::query_scalar(SQL)
                    .bind(now)
                    .bind(now + HOUR)
                    .fetch_one(p)
                    .await
            }
        }
        .unwrap()
    }
}

async fn with_controller<F, Fut>(backend: &str, overrides: &[(&str, &str)], test: F)
where
    F: FnOnce(Controller) -> Fut,
    Fut: std::future::Future<Output = Controller>,
{
    let pg = if backend == "postgres" {
        Some(TestDatabase::create().await)
    } else {
        None
    };
    let mut env: Vec<(&str, &str)> = overrides.to_vec();
    if let Some(db) = &pg {
        env.push(("DATABASE_URL", db.url.as_str()));
    }
    let c = Controller::start(&env).await;
    let mut c = test(c).await;
    c.stop().await;
    if let Some(db) = pg {
        db.drop_database().await;
    }
}

/// Polls the runs of `job` until the newest is finished.
async fn finished_run(c: &Controller, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = api_support::get(c, &format!("/api/cron/runs?job={job}&limit=1")).await;
        let run = &body["runs"][0];
        if matches!(run["status"].as_str(), Some("succeeded" | "failed")) {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "{job} never finished: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

async fn routes_show_jobs_run_them_by_hand_and_page_their_runs(backend: &str) {
    let overrides = [("CRON_SERVICE_SUSPENSION", "off"), ("CRON_LEASE_SECS", "2")];
    with_controller(backend, &overrides, |c| async move {
        let sql = Sql::connect(&c.env["DATABASE_URL"]).await;

        // The controller leads (ENABLE_CRON defaults to true).
        let deadline = Instant::now() + Duration::from_secs(10);
        let jobs = loop {
            let body = api_support::get(&c, "/api/cron/jobs").await;
            if body["jobs"][0]["leader"].is_string() {
                break body;
            }
            assert!(Instant::now() < deadline, "no leader: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let jobs = jobs["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), mpanel_controller::cron::JOBS.len());
        let cleanup = jobs.iter().find(|j| j["name"] == "backup-cleanup").unwrap();
        assert_eq!(cleanup["schedule"], "0 5 * * *");
        let usage = jobs.iter().find(|j| j["name"] == "usage-sync").unwrap();
        assert_eq!(usage["schedule"], "15 */6 * * *");
        let billing = &jobs[0];
        assert_eq!(billing["name"], "recurring-billing");
        assert_eq!(billing["schedule"], "0 2 * * *");
        assert_eq!(billing["enabled"], true);
        assert!(billing["lastRun"].is_null());
        assert!(is_rfc3339(&billing["nextRunAt"]), "{billing}");
        assert!(billing["leader"].as_str().unwrap().ends_with("#scheduler"));
        assert_eq!(billing["stale"], false);
        let suspension = &jobs[1];
        assert_eq!(suspension["name"], "service-suspension");
        assert_eq!(
            (&suspension["enabled"], &suspension["schedule"]),
            (&json!(false), &json!("off"))
        );
        assert!(suspension["nextRunAt"].is_null());

        // A run in progress is answered with 200 and its id; none is added.
        let held = sql.hold_running_run(store::now_ms()).await;
        let (status, body) = c
            .request(Method::POST, "/api/cron/jobs/recurring-billing/run", None)
            .await;
        assert_eq!((status, &body["runId"]), (200, &json!(held)), "{body}");

        // A new run: 202, run by the controller's runner, with its summary.
        let (status, body) = c
            .request(Method::POST, "/api/cron/jobs/service-suspension/run", None)
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["runId"].as_i64().unwrap();
        let run = finished_run(&c, "service-suspension").await;
        assert_eq!(run["id"], id);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["summary"], json!({ "suspended": 0, "skipped": [] }));
        assert_eq!(run["trigger"], "manual");
        assert!(run["error"].is_null());
        for at in ["scheduledFor", "startedAt", "finishedAt"] {
            assert!(is_rfc3339(&run[at]), "{at}: {run}");
        }

        // Unknown names, missing tokens.
        let got = send(&c, Method::POST, "/api/cron/jobs/backup-everything/run", Body::None, Auth::Admin).await;
        assert_error(&got, 404, "unknown_job", Some("name"));
        let got = send(&c, Method::GET, "/api/cron/runs?job=backup-everything", Body::None, Auth::Admin).await;
        assert_error(&got, 400, "unknown_job", Some("job"));
        let got = send(&c, Method::GET, "/api/cron/runs?jobs=x", Body::None, Auth::Admin).await;
        assert_error(&got, 400, "unknown_parameter", Some("jobs"));
        for path in ["/api/cron/jobs", "/api/cron/runs"] {
            let got = send(&c, Method::GET, path, Body::None, Auth::Missing).await;
            assert_error(&got, 401, "unauthorized", None);
        }
        let got = send(&c, Method::POST, "/api/cron/jobs/recurring-billing/run", Body::None, Auth::Wrong).await;
        assert_error(&got, 401, "unauthorized", None);

        // A job that fails shows its error: the billing run cannot read the services table.
        sql.execute("UPDATE cron_runs SET status = 'succeeded', lease_holder = NULL WHERE lease_holder = 'test-worker'").await;
        sql.execute("ALTER TABLE services RENAME TO services_elsewhere").await;
        let (status, body) = c
            .request(Method::POST, "/api/cron/jobs/recurring-billing/run", None)
            .await;
        assert_eq!(status, 202, "{body}");
        let run = finished_run(&c, "recurring-billing").await;
        assert_eq!(run["id"], body["runId"]);
        assert_eq!(run["status"], "failed", "{run}");
        assert!(run["summary"].is_null());
        assert!(run["error"].as_str().unwrap().contains("services"), "{run}");
        let jobs = api_support::get(&c, "/api/cron/jobs").await;
        assert_eq!(jobs["jobs"][0]["lastRun"]["id"], body["runId"]);

        // Pages, newest first.
        let page = api_support::get(&c, "/api/cron/runs?limit=2").await;
        let ids: Vec<i64> = page["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids[0] > ids[1]);
        let cursor = page["nextCursor"].as_str().expect("a next page");
        let rest = api_support::get(&c, &format!("/api/cron/runs?limit=2&cursor={cursor}")).await;
        assert_eq!(rest["runs"].as_array().unwrap().len(), 1);
        assert!(rest["nextCursor"].is_null());
        c
    })
    .await;
}

async fn a_stale_job_is_named_in_readyz_warnings(backend: &str) {
    // This replica never leads; the test leads, and the controller's runner still runs the run.
    with_controller(backend, &[("ENABLE_CRON", "false")], |c| async move {
        let ready = api_support::get(&c, "/readyz").await;
        assert_eq!(ready["warnings"], json!([]), "{ready}");

        let store = store::connect(&c.env["DATABASE_URL"]).await.unwrap();
        let now = store::now_ms();
        let epoch = store
            .acquire_lease(LEADER_LEASE, "test-leader", now, 60_000)
            .await
            .unwrap()
            .unwrap();
        let ten_days_ago = schedule("0 2 * * *")
            .latest_at_or_before(now - 10 * DAY)
            .unwrap();
        let queued = store
            .enqueue_fenced_cron_run(FencedRun {
                job: "recurring-billing",
                scheduled_for: ten_days_ago,
                trigger: Trigger::Schedule,
                lease: LEADER_LEASE,
                holder: "test-leader",
                epoch,
                now,
            })
            .await
            .unwrap();
        assert!(matches!(queued, Enqueued::Queued(_)));
        let run = finished_run(&c, "recurring-billing").await;
        assert_eq!(run["status"], "succeeded", "{run}");

        let ready = api_support::get(&c, "/readyz").await;
        assert_eq!(ready["status"], "ready");
        let warnings = ready["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{ready}");
        let warning = warnings[0].as_str().unwrap();
        assert!(
            warning.contains("recurring-billing") && warning.contains("stale"),
            "{warning}"
        );

        let jobs = api_support::get(&c, "/api/cron/jobs").await;
        assert_eq!(jobs["jobs"][0]["stale"], true);
        assert_eq!(jobs["jobs"][0]["leader"], "test-leader");
        assert_eq!(jobs["jobs"][0]["lastRun"]["trigger"], "schedule");
        assert_eq!(
            jobs["jobs"][1]["stale"], false,
            "a job that never ran is not judged"
        );
        store.close().await;
        c
    })
    .await;
}

mod controller {
    macro_rules! on_both {
        ($($name:ident),+) => {
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name("postgres").await;
                    }
                )+
            }
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name("sqlite").await;
                    }
                )+
            }
        };
    }
    on_both!(
        routes_show_jobs_run_them_by_hand_and_page_their_runs,
        a_stale_job_is_named_in_readyz_warnings
    );
}
