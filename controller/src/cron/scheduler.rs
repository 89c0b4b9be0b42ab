//! The scheduler: one leader among the replicas queues the runs of every slot; it runs none.
//!
//! Leadership is the `cron-leader` row of `leases`, taken and renewed with one conditional
//! upsert (see `store::cron`). Every change of holder raises the lease's epoch, and every run
//! the leader queues is written only while the lease still shows this holder with this epoch,
//! so a leader that stalls past its lease (a long GC-like pause, a frozen VM) and wakes up
//! believing it still leads cannot queue a run beside its successor: its write is refused, and
//! its next renewal tells it that it lost.
//!
//! While it leads without a break, the leader queues every slot of every enabled job as the
//! slot comes (trigger `schedule`). On taking over — the first leader, a successor, or a leader
//! whose own lease lapsed — it looks at each job's latest run: when a slot passed since then, it
//! queues only the latest such slot (trigger `catch-up`), not every one missed while no
//! controller led. A job that never ran is not caught up: it starts at its next slot.
//!
//! Time comes from a [`Clock`], so tests run weeks of slots in seconds. Between ticks the loop
//! sleeps until the next slot or renewal, or for `max_sleep` of real time at most (short in
//! tests, whose clock runs fast).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::registry::Registry;
use crate::jobs::Dispatcher;
use crate::store::cron::{Enqueued, FencedRun, LEADER_LEASE, Trigger};
use crate::store::lease_queue::CRON;
use crate::store::{DynStore, StoreResult};

/// The time in Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(crate::store::now_ms)
}

/// At most this many slots of one job are queued in one tick (a schedule every minute and a
/// tick that came late): the newest ones.
const MAX_SLOTS_PER_TICK: usize = 60;

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// How long leadership lasts without renewal, in clock milliseconds.
    pub lease_ms: i64,
    /// How often the leader renews, in clock milliseconds (a third of the lease).
    pub renew_ms: i64,
    /// The longest real-time sleep between two ticks.
    pub max_sleep: Duration,
}

impl SchedulerSettings {
    /// For the wall clock: a lease of `lease_secs`, renewed every third of it.
    pub fn for_lease_secs(lease_secs: u32) -> Self {
        Self::for_clock(lease_secs, 1)
    }

    /// For a clock that runs `speed` times as fast as real time: a lease of `lease_secs` of
    /// that clock's seconds, renewed every third of it, so the loop wakes every third of the
    /// lease in real time (`lease_secs / 3 / speed` seconds).
    pub fn for_clock(lease_secs: u32, speed: u32) -> Self {
        let lease_ms = i64::from(lease_secs.max(1)) * 1000;
        let renew_ms = lease_ms / 3;
        let real_renew_us =
            u64::try_from(renew_ms.saturating_mul(1000) / i64::from(speed.max(1))).unwrap_or(0);
        SchedulerSettings {
            lease_ms,
            renew_ms,
            max_sleep: Duration::from_micros(real_renew_us.max(1000)),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    /// The epoch this scheduler leads under after the tick, if it leads.
    pub epoch: Option<i64>,
    /// Runs queued in this tick: job, slot, trigger.
    pub queued: Vec<(String, i64, Trigger)>,
    /// A queue write was refused because the lease moved on.
    pub fenced: bool,
    /// When (clock ms) the scheduler next has something to do.
    pub next_at: i64,
}

impl Tick {
    pub fn leads(&self) -> bool {
        self.epoch.is_some()
    }
}

/// Leadership as this scheduler holds it.
#[derive(Debug)]
struct Leadership {
    epoch: i64,
    expires_at: i64,
    renewed_at: i64,
    /// Per job: every slot up to this time has been queued or deliberately left out.
    cursors: HashMap<String, i64>,
}

/// One replica's scheduler.
pub struct Scheduler {
    store: DynStore,
    registry: Arc<Registry>,
    dispatcher: Dispatcher,
    holder: String,
    clock: Clock,
    settings: SchedulerSettings,
    leadership: Option<Leadership>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("holder", &self.holder)
            .field("settings", &self.settings)
            .field("leadership", &self.leadership)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(
        store: DynStore,
        registry: Arc<Registry>,
        dispatcher: Dispatcher,
        holder: impl Into<String>,
        clock: Clock,
        settings: SchedulerSettings,
    ) -> Self {
        Scheduler {
            store,
            registry,
            dispatcher,
            holder: holder.into(),
            clock,
            settings,
            leadership: None,
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs ticks until `shutdown`, then gives the lease up so another replica takes over at
    /// once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(holder = %self.holder, "scheduler started");
        while !shutdown.is_cancelled() {
            let next_at = match self.tick().await {
                Ok(tick) => tick.next_at,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler tick failed; trying again shortly");
                    (self.clock)().saturating_add(self.settings.renew_ms)
                }
            };
            let wait = u64::try_from(next_at.saturating_sub((self.clock)())).unwrap_or(0);
            let sleep = Duration::from_millis(wait.max(1)).min(self.settings.max_sleep);
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
        if self.leadership.take().is_some() {
            match self.store.release_lease(LEADER_LEASE, &self.holder).await {
                Ok(()) => tracing::info!(holder = %self.holder, "gave up scheduler leadership"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not give up leadership; it lapses with its lease");
                }
            }
        }
    }

    /// Renews or takes leadership when due, then, leading, queues what is due by now.
    pub async fn tick(&mut self) -> StoreResult<Tick> {
        let now = (self.clock)();
        let mut tick = Tick::default();
        self.hold_lease(now, &mut tick).await?;
        if self.leadership.is_some() {
            self.queue_due_slots(now, &mut tick).await?;
        }
        if !tick.queued.is_empty() {
            self.dispatcher.wake_queue(&CRON);
        }
        tick.epoch = self.leadership.as_ref().map(|l| l.epoch);
        tick.next_at = self.next_at(now);
        Ok(tick)
    }

    /// Renews the lease when a renewal is due (or takes it when free); on a new leadership,
    /// catches up.
    async fn hold_lease(&mut self, now: i64, tick: &mut Tick) -> StoreResult<()> {
        if let Some(l) = &self.leadership
            && now < l.renewed_at.saturating_add(self.settings.renew_ms)
            && now <= l.expires_at
        {
            return Ok(());
        }
        let acquired = self
            .store
            .acquire_lease(LEADER_LEASE, &self.holder, now, self.settings.lease_ms)
            .await?;
        let expires_at = now.saturating_add(self.settings.lease_ms);
        match (acquired, self.leadership.as_mut()) {
            (None, previous) => {
                if previous.is_some() {
                    tracing::warn!(holder = %self.holder, "lost scheduler leadership");
                }
                self.leadership = None;
            }
            // The same leadership without a break: nobody else can have queued meanwhile.
            (Some(epoch), Some(l)) if l.epoch == epoch && now <= l.expires_at => {
                l.expires_at = expires_at;
                l.renewed_at = now;
            }
            (Some(epoch), _) => {
                tracing::info!(holder = %self.holder, epoch, "leading the scheduler");
                self.leadership = Some(Leadership {
                    epoch,
                    expires_at,
                    renewed_at: now,
                    cursors: HashMap::new(),
                });
                self.catch_up(now, epoch, tick).await?;
            }
        }
        Ok(())
    }

    /// On taking over: for each enabled job, the latest slot since its latest run, if any.
    async fn catch_up(&mut self, now: i64, epoch: i64, tick: &mut Tick) -> StoreResult<()> {
        let registry = self.registry.clone();
        for job in registry.jobs() {
            let Some(schedule) = &job.schedule else {
                continue;
            };
            let history = self.store.cron_history(&job.name).await?;
            if let (Some(latest), Some(slot)) =
                (history.latest_for, schedule.latest_at_or_before(now))
                && slot > latest
                && !self
                    .enqueue(&job.name, slot, Trigger::CatchUp, epoch, now, tick)
                    .await?
            {
                return Ok(());
            }
            if let Some(l) = self.leadership.as_mut() {
                l.cursors.insert(job.name.clone(), now);
            }
        }
        Ok(())
    }

    /// Queues every slot that came since the job's cursor.
    async fn queue_due_slots(&mut self, now: i64, tick: &mut Tick) -> StoreResult<()> {
        let registry = self.registry.clone();
        for job in registry.jobs() {
            let Some(schedule) = &job.schedule else {
                continue;
            };
            let Some(l) = self.leadership.as_ref() else {
                return Ok(());
            };
            let epoch = l.epoch;
            let cursor = l.cursors.get(&job.name).copied().unwrap_or(now);
            for slot in schedule.slots_between(cursor, now, MAX_SLOTS_PER_TICK) {
                if !self
                    .enqueue(&job.name, slot, Trigger::Schedule, epoch, now, tick)
                    .await?
                {
                    return Ok(());
                }
            }
            if let Some(l) = self.leadership.as_mut() {
                l.cursors.insert(job.name.clone(), now);
            }
        }
        Ok(())
    }

    /// Queues one run under the lease; `false` when the write was fenced off (leadership is
    /// then dropped).
    async fn enqueue(
        &mut self,
        job: &str,
        slot: i64,
        trigger: Trigger,
        epoch: i64,
        now: i64,
        tick: &mut Tick,
    ) -> StoreResult<bool> {
        let run = FencedRun {
            job,
            scheduled_for: slot,
            trigger,
            lease: LEADER_LEASE,
            holder: &self.holder,
            epoch,
            now,
        };
        match self.store.enqueue_fenced_cron_run(run).await? {
            Enqueued::Queued(id) => {
                tracing::info!(
                    job,
                    run_id = id,
                    scheduled_for = slot,
                    trigger = trigger.as_str(),
                    "queued a scheduled run"
                );
                tick.queued.push((job.to_owned(), slot, trigger));
                Ok(true)
            }
            Enqueued::AlreadyQueued => Ok(true),
            Enqueued::Fenced => {
                tracing::warn!(holder = %self.holder, epoch, job, "the lease moved on; this replica no longer leads");
                tick.fenced = true;
                self.leadership = None;
                Ok(false)
            }
        }
    }

    /// The next renewal, or (leading) the next slot of any job, whichever is sooner.
    fn next_at(&self, now: i64) -> i64 {
        let Some(l) = &self.leadership else {
            return now.saturating_add(self.settings.renew_ms);
        };
        let renew = l.renewed_at.saturating_add(self.settings.renew_ms);
        self.registry
            .jobs()
            .iter()
            .filter_map(|j| j.schedule.as_ref()?.next_after(now))
            .fold(renew, i64::min)
            .max(now.saturating_add(1))
    }
}
