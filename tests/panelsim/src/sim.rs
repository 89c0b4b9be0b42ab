//! One simulator instance: configuration, state, faults and the optional MariaDB backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::faults::{FaultKind, FaultPlan, ScriptedFault};
use crate::mariadb::{DbError, MariaDb};
use crate::state::{Dropped, World};
use crate::{SimConfig, SimKind};

pub(crate) struct Sim {
    pub config: SimConfig,
    world: Mutex<World>,
    faults: Mutex<FaultPlan>,
    mariadb: Option<MariaDb>,
    /// Held across the awaits of calls that change MariaDB, so "check, create in MariaDB,
    /// record" cannot interleave with another such call. The world lock is never held across
    /// an await.
    pub db_ops: tokio::sync::Mutex<()>,
    /// Set to `true` once to stop the server. Owned here (not by the handle) so dropping the
    /// handle does not stop a simulator that is still serving.
    stop: watch::Sender<bool>,
    whm_envelopes: AtomicU64,
    da_auth_failures: AtomicU64,
}

impl Sim {
    pub(crate) fn new(config: SimConfig, mariadb: Option<MariaDb>) -> Self {
        let faults = FaultPlan::new(config.seed, config.fail_rate);
        let (stop, _) = watch::channel(false);
        let world = World::with_resident(config.kind);
        Sim {
            config,
            world: Mutex::new(world),
            faults: Mutex::new(faults),
            mariadb,
            db_ops: tokio::sync::Mutex::new(()),
            stop,
            whm_envelopes: AtomicU64::new(0),
            da_auth_failures: AtomicU64::new(0),
        }
    }

    /// A receiver that turns `true` when the simulator is told to stop.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub(crate) fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    pub(crate) fn kind(&self) -> SimKind {
        self.config.kind
    }

    /// Lock the state. A panic elsewhere must not take the simulator down with it.
    /// The panels' background work (archives being written, restores running) is brought up
    /// to date on every look, so each call sees the state its moment would show.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        let mut world = self.world.lock().unwrap_or_else(PoisonError::into_inner);
        world.settle();
        world
    }

    fn fault_plan(&self) -> MutexGuard<'_, FaultPlan> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn state_json(&self) -> Value {
        let mut state = self.world().to_json(self.kind());
        let pending: Vec<ScriptedFault> = self.fault_plan().pending().to_vec();
        state["pendingFaults"] = serde_json::to_value(pending).unwrap_or_default();
        state
    }

    pub(crate) fn script(&self, fault: ScriptedFault) {
        tracing::debug!(kind = fault.kind.as_str(), path = ?fault.path_contains, times = fault.times, "fault scripted");
        self.fault_plan().push(fault);
    }

    pub(crate) fn pending_faults(&self) -> Vec<ScriptedFault> {
        self.fault_plan().pending().to_vec()
    }

    pub(crate) fn clear_faults(&self) {
        self.fault_plan().clear();
    }

    pub(crate) fn take_fault(&self, target: &str) -> Option<FaultKind> {
        self.fault_plan().take_scripted(target)
    }

    pub(crate) fn roll_transient(&self) -> bool {
        self.fault_plan().roll_transient()
    }

    /// WHM quirk: `metadata.result` alternates between a number and a string, starting from
    /// the seed's parity (seed 0: number, string, number, …).
    pub(crate) fn whm_result_as_string(&self) -> bool {
        let n = self.whm_envelopes.fetch_add(1, Ordering::Relaxed);
        self.config.seed.wrapping_add(n) % 2 == 1
    }

    /// DirectAdmin quirk for `json=yes` auth failures: alternate HTML login page / 401 JSON,
    /// starting from the seed's parity (seed 0: HTML first).
    pub(crate) fn da_json_auth_failure_is_401(&self) -> bool {
        let n = self.da_auth_failures.fetch_add(1, Ordering::Relaxed);
        self.config.seed.wrapping_add(n) % 2 == 1
    }

    /// Sleep, but wake early when the simulator shuts down.
    pub(crate) async fn sleep_or_shutdown(&self, duration: Duration) {
        let mut stopped = self.stop.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = crate::server::stopped(&mut stopped) => {}
        }
    }

    pub(crate) async fn db_create_database(&self, name: &str) -> Result<(), DbError> {
        match &self.mariadb {
            Some(db) => db.create_database(name).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn db_create_user(&self, name: &str, password: &str) -> Result<(), DbError> {
        match &self.mariadb {
            Some(db) => db.create_user(name, password).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn db_grant(
        &self,
        user: &str,
        database: &str,
        privileges: &[String],
    ) -> Result<(), DbError> {
        match &self.mariadb {
            Some(db) => db.grant(user, database, privileges).await,
            None => Ok(()),
        }
    }

    /// Drop what a removal took with it. Failures are logged, not returned: the panel has
    /// already forgotten the objects, as a real panel would after a partial clean-up.
    pub(crate) async fn db_drop(&self, dropped: &Dropped) {
        let Some(db) = &self.mariadb else { return };
        for database in &dropped.databases {
            if let Err(error) = db.drop_database(database).await {
                tracing::warn!(database, %error, "dropping MariaDB database failed");
            }
        }
        for user in &dropped.users {
            if let Err(error) = db.drop_user(user).await {
                tracing::warn!(user, %error, "dropping MariaDB user failed");
            }
        }
    }
}
