//! The scheduler's single leader with real processes: two and three controller replicas on one
//! PostgreSQL database, each the production `app::run` on a simulated clock they share
//! (`mpanel-controller-fastclock`, see `mpanel_e2e::fastclock`), through 90 simulated days.
//!
//! Every slot of every job gets exactly one run, none is missing, each ran once and finished.
//! A SIGKILLed leader's lease runs out at most one lease after the kill, and a follower leads
//! within a renewal period of that. A SIGSTOPped leader wakes up to find the lease gone: its
//! renewal is refused, or, frozen between renewing and queuing a slot, its enqueue is fenced
//! off by the epoch; nothing doubles. Manual runs asked through the API are runs of their
//! own, at the simulated time. The slots expected are computed here by plain arithmetic
//! (every job is daily), not by the scheduler.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use mpanel_e2e::cluster::{ControllerProcess, TestDir};
use mpanel_e2e::databases::TestDatabase;
use mpanel_e2e::fastclock::SimClock;
use serde_json::Value;
use sqlx::PgPool;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2027-01-01T00:00:00Z: the simulated time when a test starts.
const SIM_START: i64 = 1_798_761_600_000;
/// Simulated milliseconds per real one: a simulated day passes in 2.4 s, 90 in 216 s. Slower
/// would make the test longer; faster would let a stall of the whole machine (the suite runs
/// many tests at once on two cores) outlast a simulated day and lose a slot.
const SPEED: u32 = 36_000;
/// How long the simulated run lasts once every replica is up.
const SIM_DAYS: i64 = 90;
/// The leader's lease in simulated time (`CRON_LEASE_SECS` counts the scheduler clock's
/// seconds): 6 h, 0.6 s of real time, renewed every 2 h (0.2 s real).
const LEASE_MS: i64 = 6 * HOUR;
const RENEW_MS: i64 = LEASE_MS / 3;
/// Scheduling latency allowed on top of the renewal period between a lease running out and a
/// follower leading (12 simulated hours, 1.2 s real): a busy machine may run a follower's tick
/// a few hundred real milliseconds late. Still well under a day, the jobs' interval.
const TAKEOVER_SLACK_MS: i64 = 2 * LEASE_MS;

/// Every scheduled job with the daily slot (UTC hour, minute) its schedule gives. All but
/// `ssl-renewals` and `usage-sync` are the shipped defaults (checked against the API at the
/// start). `ssl-renewals` runs hourly and `usage-sync` every six hours by default; here they
/// are set to daily (`CRON_SSL_RENEWALS`, `CRON_USAGE_SYNC`),
/// because a failover leaves no leader for up to a lease plus a renewal period (8 simulated
/// hours here) and a new leader catches up only the latest slot missed, so hourly slots in that
/// gap are skipped by design. A lease under an hour would be under 100 ms of real time at this
/// speed, shorter than a replica on this busy machine can be relied upon to renew in. With
/// every job daily, the failover gap stays far below the smallest interval, and every slot
/// must run.
const JOBS: [(&str, &str, i64, i64); 8] = [
    ("backups", "0 1 * * *", 1, 0),
    ("recurring-billing", "0 2 * * *", 2, 0),
    ("service-suspension", "0 3 * * *", 3, 0),
    ("service-termination", "30 3 * * *", 3, 30),
    ("ssl-renewal-reminders", "0 4 * * *", 4, 0),
    ("backup-cleanup", "0 5 * * *", 5, 0),
    ("ssl-renewals", "30 6 * * *", 6, 30),
    ("usage-sync", "15 7 * * *", 7, 15),
];

const FASTCLOCK: &str = "mpanel-controller-fastclock";
const LEADING: &str = "leading the scheduler";
const LOST: &str = "lost scheduler leadership";
const FENCED: &str = "the lease moved on; this replica no longer leads";

/// The slots of a daily job at `hour:minute` UTC in `(after, until]`.
fn daily_slots(hour: i64, minute: i64, after: i64, until: i64) -> BTreeSet<i64> {
    let offset = hour * HOUR + minute * MINUTE;
    let mut day = after.div_euclid(DAY) * DAY;
    let mut slots = BTreeSet::new();
    while day + offset <= until {
        if day + offset > after {
            slots.insert(day + offset);
        }
        day += DAY;
    }
    slots
}

/// The first time at or after `after` that is `hour:minute` UTC.
fn next_time_of_day(after: i64, hour: i64, minute: i64) -> i64 {
    let at = after.div_euclid(DAY) * DAY + hour * HOUR + minute * MINUTE;
    if at >= after { at } else { at + DAY }
}

/// The local ports of the TCP sockets process `pid` holds (its database connections among
/// them), from `/proc`.
fn local_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9
                && inodes.contains(cols[9])
                && let Some(port) = cols[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

fn days(sim_ms: i64) -> f64 {
    sim_ms as f64 / DAY as f64
}

fn hours(sim_ms: i64) -> f64 {
    sim_ms as f64 / HOUR as f64
}

/// One line of a replica's JSON log.
#[derive(Debug, Clone)]
struct LogLine {
    replica: usize,
    /// Simulated time of the line's real timestamp.
    at: i64,
    real_us: i64,
    message: String,
    fields: Value,
}

/// A leadership taken over: when, by whom, from whom.
#[derive(Debug)]
struct Takeover {
    /// Simulated time of the fault (the SIGKILL or SIGSTOP).
    fault_at: i64,
    /// When the lease of the replica hit ran out.
    expired_at: i64,
    /// When the successor led (its `leading the scheduler` line for the next epoch).
    taken_at: i64,
    old: usize,
    old_epoch: i64,
    new: usize,
}

impl Takeover {
    /// Nobody took over a live lease; the lease of the replica hit ran at most one lease past
    /// the fault; a follower, which tries every renewal period, led within one (plus
    /// scheduling latency) of the lease running out. Then reports the figures.
    fn check(&self, what: &str) {
        assert!(
            self.taken_at > self.expired_at,
            "{what}: taken over before the lease ran out: {self:?}"
        );
        assert!(
            self.expired_at - self.fault_at <= LEASE_MS + 10 * MINUTE,
            "{what}: the lease ran more than a lease past the fault: {self:?}"
        );
        assert!(
            self.taken_at - self.expired_at <= RENEW_MS + TAKEOVER_SLACK_MS,
            "{what}: no follower led within a renewal period of the lease running out: {self:?}"
        );
        self.report(what);
    }

    fn report(&self, what: &str) {
        eprintln!(
            "{what}: replica {} (epoch {}) -> replica {} {:.2} simulated hours after the fault \
             (its lease ran out {:.2} h after the fault, the successor led {:.2} h after that; \
             lease {:.0} h, renewal every {:.0} h)",
            self.old,
            self.old_epoch,
            self.new,
            hours(self.taken_at - self.fault_at),
            hours(self.expired_at - self.fault_at),
            hours(self.taken_at - self.expired_at),
            hours(LEASE_MS),
            hours(RENEW_MS),
        );
    }
}

/// A run as the checks read it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Run {
    id: i64,
    job_name: String,
    scheduled_for: i64,
    status: String,
    trigger: String,
    epoch: Option<i64>,
    attempts: i32,
    runner: Option<String>,
    finished_at: Option<i64>,
    created_at: i64,
}

struct Fleet {
    dir: TestDir,
    db: Option<TestDatabase>,
    pool: PgPool,
    sim: SimClock,
    replicas: Vec<ControllerProcess>,
    env: Vec<(String, String)>,
    /// Per SIGKILL: the replica and the real time (µs) of the kill.
    kills: Vec<(usize, i64)>,
    started: Instant,
}

impl Fleet {
    /// `count` replicas on a fresh database, started one after the other.
    async fn start(name: &str, count: usize) -> Fleet {
        let started = Instant::now();
        let dir = TestDir::create(name);
        let db = TestDatabase::create().await;
        let sim = SimClock::starting_now(SIM_START, SPEED);
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("ENABLE_CRON".into(), "true".into()),
            ("CRON_LEASE_SECS".into(), (LEASE_MS / 1000).to_string()),
            ("CRON_SSL_RENEWALS".into(), "30 6 * * *".into()),
            ("CRON_USAGE_SYNC".into(), "15 7 * * *".into()),
            ("LOG_FORMAT".into(), "json".into()),
        ];
        env.extend(sim.env().map(|(k, v)| (k.to_owned(), v)));
        let mut fleet = Fleet {
            pool: PgPool::connect(&db.url)
                .await
                .unwrap_or_else(|e| panic!("cannot open the test database: {e}")),
            dir,
            db: Some(db),
            sim,
            replicas: Vec::new(),
            env,
            kills: Vec::new(),
            started,
        };
        for i in 0..count {
            let env: Vec<(&str, &str)> = fleet
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let replica = ControllerProcess::start_binary(
                &fleet.dir,
                &format!("replica{i}"),
                FASTCLOCK,
                &env,
            )
            .await;
            fleet.replicas.push(replica);
        }
        fleet.check_schedules().await;
        fleet
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[{:6.1}s real, simulated day {:5.1}] {what}",
            self.started.elapsed().as_secs_f64(),
            days(self.sim.now() - SIM_START)
        );
    }

    /// The API shows the schedules the expected slots are computed from.
    async fn check_schedules(&self) {
        let (status, body) = self.replicas[0]
            .api(reqwest::Method::GET, "/api/cron/jobs", None)
            .await;
        assert_eq!(status, 200, "{body}");
        let shown: BTreeMap<String, String> = body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| {
                (
                    j["name"].as_str().unwrap_or_default().to_owned(),
                    j["schedule"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let expected: BTreeMap<String, String> = JOBS
            .iter()
            .map(|(name, expr, _, _)| ((*name).to_owned(), (*expr).to_owned()))
            .collect();
        assert_eq!(
            shown, expected,
            "the jobs' schedules are not the ones this test computes slots for"
        );
    }

    /// The `cron-leader` row: holder, epoch, expiry (simulated ms).
    async fn lease(&self) -> Option<(String, i64, i64)> {
        sqlx::query_as("SELECT holder, epoch, expires_at FROM leases WHERE name = 'cron-leader'")
            .fetch_optional(&self.pool)
            .await
            .unwrap_or_else(|e| self.dir.fail(&format!("reading leases: {e}")))
    }

    /// The replica a lease holder (`host:port#boot#scheduler`) is.
    fn replica_of(&self, holder: &str) -> usize {
        let port = holder
            .split('#')
            .next()
            .and_then(|node| node.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        self.replicas
            .iter()
            .position(|r| Some(r.http_port) == port)
            .unwrap_or_else(|| self.dir.fail(&format!("no replica holds '{holder}'")))
    }

    /// The replica leading now and its epoch.
    async fn leader(&self) -> (usize, i64) {
        let (holder, epoch) = self
            .dir
            .wait_for(
                Duration::from_secs(20),
                "a live leader",
                async || match self.lease().await {
                    Some((holder, epoch, expires)) if expires >= self.sim.now() => {
                        Ok((holder, epoch))
                    }
                    other => Err(format!("{other:?}")),
                },
            )
            .await;
        (self.replica_of(&holder), epoch)
    }

    /// Every line of every replica's JSON log (a restarted replica continues its file).
    fn log_lines(&self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for (i, r) in self.replicas.iter().enumerate() {
            for raw in self.dir.read_log(&r.name).lines() {
                let Ok(v) = serde_json::from_str::<Value>(raw) else {
                    continue;
                };
                let Some(ts) = v["timestamp"].as_str() else {
                    continue;
                };
                let Ok(ts) = ts.parse::<jiff::Timestamp>() else {
                    continue;
                };
                let real_us = ts.as_microsecond();
                lines.push(LogLine {
                    replica: i,
                    at: self.sim.at_real_us(real_us),
                    real_us,
                    message: v["fields"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    fields: v["fields"].clone(),
                });
            }
        }
        lines
    }

    /// Per epoch: the replica that led under it and when it first did.
    fn epochs(&self) -> BTreeMap<i64, (usize, i64)> {
        let mut epochs: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
        for line in self
            .log_lines()
            .into_iter()
            .filter(|l| l.message == LEADING)
        {
            let epoch = line.fields["epoch"].as_i64().expect("epoch");
            let entry = epochs.entry(epoch).or_insert((line.replica, line.at));
            assert_eq!(
                entry.0, line.replica,
                "epoch {epoch} was led by replica {} and replica {}: an epoch has one holder",
                entry.0, line.replica
            );
            entry.1 = entry.1.min(line.at);
        }
        epochs
    }

    /// Waits for the first `leading the scheduler` line of `epoch`: replica and time.
    async fn led(&self, epoch: i64) -> (usize, i64) {
        self.dir
            .wait_for(
                Duration::from_secs(10),
                &format!("the log line of epoch {epoch}'s leader"),
                async || {
                    self.epochs()
                        .get(&epoch)
                        .copied()
                        .ok_or_else(|| "not logged yet".to_owned())
                },
            )
            .await
    }

    /// Waits until a replica other than `old` holds the lease under an epoch after
    /// `old_epoch`; answers the takeover, measured from `fault_at`.
    async fn takeover(
        &self,
        old: usize,
        old_epoch: i64,
        fault_at: i64,
        expired_at: i64,
    ) -> Takeover {
        self.dir
            .wait_for(
                Duration::from_secs(30),
                &format!("a replica other than {old} to take the lease over"),
                async || match self.lease().await {
                    Some((holder, epoch, _)) if epoch > old_epoch => Ok((holder, epoch)),
                    other => Err(format!("{other:?}")),
                },
            )
            .await;
        let (new, taken_at) = self.led(old_epoch + 1).await;
        assert_ne!(new, old, "epoch {} went to the replica hit", old_epoch + 1);
        Takeover {
            fault_at,
            expired_at,
            taken_at,
            old,
            old_epoch,
            new,
        }
    }

    /// SIGKILLs the leader; answers how the lease moved on. Should leadership flap to another
    /// replica just before the kill, the replica killed is started again and the next leader is
    /// killed.
    async fn kill_leader(&mut self) -> Takeover {
        for _ in 0..3 {
            let (victim, epoch) = self.leader().await;
            let real = SystemTime::now();
            self.replicas[victim].kill9();
            let fault_at = self.sim.at(real);
            self.kills
                .push((victim, mpanel_e2e::fastclock::real_us(real)));
            let holder = self.replicas[victim].name.clone();
            // Nobody else can take a live lease: the row still shows the one killed.
            match self.lease().await {
                Some((h, e, expires)) if self.replica_of(&h) == victim && e == epoch => {
                    self.log(&format!("SIGKILLed leader {holder} (epoch {epoch})"));
                    return self.takeover(victim, epoch, fault_at, expires).await;
                }
                other => {
                    self.log(&format!(
                        "leadership moved just before the kill ({other:?}); restarting {holder}"
                    ));
                    self.replicas[victim].restart().await;
                }
            }
        }
        self.dir.fail("could not kill a leader in three tries");
    }

    /// SIGSTOPs the leader for `days` simulated days (far past its lease), then SIGCONTs it;
    /// answers how the lease moved on meanwhile, and checks that the woken replica learns it
    /// no longer leads and that nothing was queued under its epoch after the successor led.
    async fn pause_leader(&self, pause_days: i64) -> Takeover {
        let mut tries = 0;
        let (victim, epoch, name, refusals_before, fault_at, expires) = loop {
            tries += 1;
            let (victim, epoch) = self.leader().await;
            let name = self.replicas[victim].name.clone();
            let refusals_before = self.refusals(victim);
            let real = SystemTime::now();
            self.replicas[victim].pause();
            let fault_at = self.sim.at(real);
            match self.lease().await {
                Some((h, e, expires)) if self.replica_of(&h) == victim && e == epoch => {
                    self.log(&format!("SIGSTOPped leader {name} (epoch {epoch})"));
                    break (victim, epoch, name, refusals_before, fault_at, expires);
                }
                // Leadership moved just before the pause: wake it and pause the next leader.
                other if tries < 3 => {
                    self.log(&format!(
                        "leadership moved just before the pause ({other:?})"
                    ));
                    self.replicas[victim].resume();
                }
                other => self.dir.fail(&format!(
                    "the lease kept moving before the pause: {other:?}"
                )),
            }
        };
        let takeover = self.takeover(victim, epoch, fault_at, expires).await;
        let wake = fault_at + pause_days * DAY;
        self.sleep_until(wake).await;
        self.replicas[victim].resume();
        self.log(&format!("SIGCONTed {name}"));
        let seen = self
            .dir
            .wait_for(
                Duration::from_secs(20),
                &format!("{name} to log that it lost the lease"),
                async || {
                    let now = self.refusals(victim);
                    if now.len() > refusals_before.len() {
                        Ok(now[refusals_before.len()..].to_vec())
                    } else {
                        Err(format!("{} refusals logged", now.len()))
                    }
                },
            )
            .await;
        self.log(&format!("{name} after waking up logged: {seen:?}"));
        // Its lease renewal or its enqueue was refused; had either gone through, it would
        // lead again under its old epoch or have queued a run under it.
        let (_, successor_at) = self.led(epoch + 1).await;
        let late: Vec<Run> = self
            .runs()
            .await
            .into_iter()
            .filter(|r| r.epoch == Some(epoch) && r.created_at >= successor_at)
            .collect();
        assert!(
            late.is_empty(),
            "runs queued under the paused leader's epoch {epoch} after its successor led: {late:?}"
        );
        takeover
    }

    /// Freezes the leader in the middle of a tick, between renewing its lease and queuing the
    /// slot the tick is for, so that it wakes up to queue under a lease that has moved on: the
    /// write the fencing epoch exists for. The test holds the lease row locked at 03:00 (any
    /// tick of the leader from then on has one of the 01:00 to 06:30 slots to queue after its
    /// renewal), waits until the leader's renewal waits on that lock, SIGSTOPs the leader and
    /// lets go: the database commits the renewal of the frozen process. Its lease then runs
    /// out, another replica leads, and on SIGCONT the frozen tick goes on to queue its slot,
    /// which must be refused. Should a follower take the lease first (its own renewal waited on
    /// the lock too), the leader is woken and the next day tried.
    async fn pause_leader_mid_tick(&self, after: i64) -> Takeover {
        let mut day = after;
        for _ in 0..3 {
            let at = next_time_of_day(day, 3, 0);
            day = at + HOUR;
            self.sleep_until(at).await;
            let (victim, epoch) = self.leader().await;
            let name = self.replicas[victim].name.clone();
            let pid = self.replicas[victim].pid().expect("a running leader");
            let fenced_before = self
                .log_lines()
                .iter()
                .filter(|l| l.replica == victim && l.message == FENCED)
                .count();
            // Lock the row until the leader's renewal waits on it. Should the leader wait in
            // its enqueue instead (a tick that renewed just before the lock), let go at once
            // and lock again: frozen there, it would hold the row and stop every takeover.
            // Until 06:00, a tick's slots to queue include one of 01:00 to 06:30.
            let mut locked = None;
            while locked.is_none() && self.sim.now() < at + 3 * HOUR {
                let mut tx = self.pool.begin().await.expect("begin");
                let (holder, held_epoch, expires): (String, i64, i64) = sqlx::query_as(
                    "SELECT holder, epoch, expires_at FROM leases
                     WHERE name = 'cron-leader' FOR UPDATE",
                )
                .fetch_one(&mut *tx)
                .await
                .expect("lock the lease row");
                if self.replica_of(&holder) != victim || held_epoch != epoch {
                    break;
                }
                match self.waits_on_lock(pid).await {
                    Some(true) => locked = Some((tx, expires)),
                    _ => {
                        tx.rollback().await.expect("rollback");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            let Some((tx, expires)) = locked else {
                self.log(&format!(
                    "could not catch {name} renewing; trying the next day"
                ));
                continue;
            };
            let real = SystemTime::now();
            self.replicas[victim].pause();
            let fault_at = self.sim.at(real);
            tx.commit().await.expect("release the lease row");
            // The frozen process's renewal commits at the database, unless a follower's
            // attempt got there first with the lease already run out.
            let renewed = self
                .dir
                .wait_for(
                    Duration::from_secs(5),
                    "the lease row to change",
                    async || match self.lease().await {
                        Some((h, e, x)) if x != expires || e != epoch => Ok((h, e, x)),
                        other => Err(format!("{other:?}")),
                    },
                )
                .await;
            if self.replica_of(&renewed.0) != victim || renewed.1 != epoch {
                self.log(&format!(
                    "{name} lost the lease while its renewal waited ({renewed:?}); trying the next day"
                ));
                self.replicas[victim].resume();
                continue;
            }
            self.log(&format!(
                "SIGSTOPped leader {name} (epoch {epoch}) after its renewal, before its enqueue"
            ));
            let takeover = self.takeover(victim, epoch, fault_at, renewed.2).await;
            self.sleep_until(takeover.taken_at + DAY).await;
            self.replicas[victim].resume();
            self.log(&format!("SIGCONTed {name}"));
            self.dir
                .wait_for(
                    Duration::from_secs(20),
                    &format!("{name} to log that its enqueue was fenced off"),
                    async || {
                        let n = self
                            .log_lines()
                            .iter()
                            .filter(|l| l.replica == victim && l.message == FENCED)
                            .count();
                        if n > fenced_before {
                            Ok(())
                        } else {
                            Err(format!("{n} fenced lines"))
                        }
                    },
                )
                .await;
            let late: Vec<Run> = self
                .runs()
                .await
                .into_iter()
                .filter(|r| r.epoch == Some(epoch) && r.created_at >= takeover.taken_at)
                .collect();
            assert!(
                late.is_empty(),
                "runs queued under the frozen leader's epoch {epoch} after its successor led: {late:?}"
            );
            return takeover;
        }
        self.dir
            .fail("the leader never renewed while frozen in three tries");
    }

    /// What a connection of process `pid` waits on a lock for, within half a second:
    /// `Some(true)` its lease renewal, `Some(false)` anything else (its enqueue), `None`
    /// nothing.
    async fn waits_on_lock(&self, pid: u32) -> Option<bool> {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let waiting: Vec<(Option<i32>, String)> = sqlx::query_as(
                "SELECT client_port, query FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| self.dir.fail(&format!("reading pg_stat_activity: {e}")));
            let mine = local_ports(pid);
            let query = waiting.iter().find_map(|(port, query)| {
                port.and_then(|p| u16::try_from(p).ok())
                    .filter(|p| mine.contains(p))
                    .map(|_| query)
            });
            if let Some(query) = query {
                return Some(query.trim_start().starts_with("INSERT INTO leases"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }

    /// The `lost scheduler leadership` and fenced-write lines of replica `i`.
    fn refusals(&self, i: usize) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.replica == i && (l.message == LOST || l.message == FENCED))
            .map(|l| l.message)
            .collect()
    }

    async fn sleep_until(&self, sim_at: i64) {
        let left = sim_at - self.sim.now();
        if left > 0 {
            tokio::time::sleep(self.sim.real_duration(left)).await;
        }
    }

    async fn runs(&self) -> Vec<Run> {
        sqlx::query_as(
            "SELECT id, job_name, scheduled_for, status, trigger, epoch, attempts, runner,
                    finished_at, created_at
             FROM cron_runs ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| self.dir.fail(&format!("reading cron_runs: {e}")))
    }

    /// Asks replica `i` to run `job` now; answers the manual run's id if a new one was queued.
    async fn run_by_hand(&self, i: usize, job: &str) -> Option<i64> {
        let before = self.sim.now();
        let (status, body) = self.replicas[i]
            .api(
                reqwest::Method::POST,
                &format!("/api/cron/jobs/{job}/run"),
                None,
            )
            .await;
        match status {
            202 => {
                let id = body["runId"].as_i64().expect("runId");
                let run = self
                    .runs()
                    .await
                    .into_iter()
                    .find(|r| r.id == id)
                    .expect("the manual run");
                assert_eq!(run.trigger, "manual");
                // Asked for at the scheduler's (simulated) time, not the wall clock's.
                assert!(
                    run.scheduled_for >= before && run.scheduled_for <= self.sim.now(),
                    "manual run {run:?} is not at simulated time {before}"
                );
                self.log(&format!("manual run {id} of {job} queued"));
                Some(id)
            }
            // A run of the job was queued or running: the request joined it.
            200 => None,
            _ => self.dir.fail(&format!(
                "POST /api/cron/jobs/{job}/run answered {status}: {body}"
            )),
        }
    }

    /// Runs until `until` (simulated), then checks each job's runs from its first slot to
    /// `until`: exactly one per slot and none missing, every one finished with success, each
    /// executed once (twice only for a run a SIGKILL interrupted). Stops the replicas and drops
    /// the database.
    ///
    /// A job's first slot is the one of its first run, and must come within two days of the
    /// first leader: a job that never ran is not caught up after a takeover (by design), so a
    /// leadership change before its first slot could move its start by a day. After its first
    /// run, no failover here is long enough to skip a slot.
    async fn finish(mut self, until: i64, manual: &[i64]) {
        self.sleep_until(until).await;
        self.log("end of the simulated period; waiting for its runs to finish");
        let (_, first_led) = self.led(1).await;
        let expected = |runs: &[Run]| -> BTreeMap<&'static str, BTreeSet<i64>> {
            JOBS.iter()
                .map(|(name, _, h, m)| {
                    let first = runs
                        .iter()
                        .filter(|r| r.job_name == *name && r.trigger != "manual")
                        .map(|r| r.scheduled_for)
                        .min()
                        .unwrap_or(first_led);
                    (
                        *name,
                        daily_slots(*h, *m, first.min(first_led + 2 * DAY) - 1, until),
                    )
                })
                .collect()
        };
        // Every expected slot queued and every run up to `until` (and each manual one) finished.
        let runs = self
            .dir
            .wait_for(
                Duration::from_secs(120),
                "every slot's run to be queued and finished",
                async || {
                    let runs = self.runs().await;
                    let mut missing = 0;
                    for (job, slots) in &expected(&runs) {
                        let have: BTreeSet<i64> = runs
                            .iter()
                            .filter(|r| r.job_name == *job && r.trigger != "manual")
                            .map(|r| r.scheduled_for)
                            .collect();
                        missing += slots.difference(&have).count();
                    }
                    let open = runs
                        .iter()
                        .filter(|r| {
                            (r.scheduled_for <= until || manual.contains(&r.id))
                                && !matches!(r.status.as_str(), "succeeded" | "failed")
                        })
                        .count();
                    if missing == 0 && open == 0 {
                        Ok(runs)
                    } else {
                        Err(format!(
                            "{missing} slots without a run, {open} runs not finished"
                        ))
                    }
                },
            )
            .await;
        let expected = expected(&runs);
        let epochs = self.epochs();
        let lines = self.log_lines();
        for r in &mut self.replicas {
            r.stop();
        }
        self.log("replicas stopped");

        let mut total = 0;
        for (job, slots) in &expected {
            let mut per_slot: BTreeMap<i64, Vec<&Run>> = BTreeMap::new();
            for r in runs
                .iter()
                .filter(|r| r.job_name == *job && r.trigger != "manual")
            {
                per_slot.entry(r.scheduled_for).or_default().push(r);
            }
            for (slot, rs) in &per_slot {
                assert_eq!(
                    rs.len(),
                    1,
                    "{job}: slot {slot} has {} runs: {rs:?}",
                    rs.len()
                );
                assert!(
                    rs[0].trigger == "schedule" || rs[0].trigger == "catch-up",
                    "{rs:?}"
                );
                let (_, _, h, m) = JOBS.iter().find(|j| j.0 == *job).expect("job");
                assert_eq!(
                    slot.rem_euclid(DAY),
                    h * HOUR + m * MINUTE,
                    "{job}: a run for {slot}, which is not one of its slots"
                );
            }
            let have: BTreeSet<i64> = per_slot.keys().copied().filter(|s| *s <= until).collect();
            assert_eq!(&have, slots, "{job}: the slots run are not the slots due");
            let first = slots.first().copied().unwrap_or(until);
            assert!(
                first <= first_led + 2 * DAY,
                "{job}: its first run is for {first}, days after the first leader ({first_led})"
            );
            assert!(
                slots.len() as i64 >= SIM_DAYS - 1,
                "{job}: only {} slots in the period",
                slots.len()
            );
            total += slots.len();
        }
        for r in runs
            .iter()
            .filter(|r| r.scheduled_for <= until || manual.contains(&r.id))
        {
            assert_eq!(r.status, "succeeded", "{r:?}");
            assert!(r.runner.is_some() && r.finished_at.is_some(), "{r:?}");
        }
        // Each run executed once: its body started once, by one replica; twice only when the
        // first start was on a replica SIGKILLed before the run finished.
        let mut starts: BTreeMap<i64, Vec<&LogLine>> = BTreeMap::new();
        for l in lines
            .iter()
            .filter(|l| l.message == "scheduled job started")
        {
            let id = l.fields["run_id"].as_i64().expect("run_id");
            starts.entry(id).or_default().push(l);
        }
        let mut reruns = 0;
        for r in runs
            .iter()
            .filter(|r| r.scheduled_for <= until || manual.contains(&r.id))
        {
            let s = starts.get(&r.id).map_or(&[][..], Vec::as_slice);
            assert_eq!(
                s.len(),
                usize::try_from(r.attempts).unwrap_or(0),
                "run {r:?}: its body started {} times by the logs",
                s.len()
            );
            if s.len() > 1 {
                reruns += 1;
                let interrupted = s[..s.len() - 1].iter().all(|l| {
                    self.kills
                        .iter()
                        .any(|(victim, at)| *victim == l.replica && l.real_us <= *at)
                });
                assert!(
                    interrupted,
                    "run {r:?} started {} times, not after a kill",
                    s.len()
                );
            }
        }
        assert!(
            reruns <= 2 * self.kills.len(),
            "{reruns} runs ran twice; a killed replica has two cron workers"
        );
        // Fencing over the whole run: everything queued under an epoch was queued before the
        // next epoch's leader took over.
        for r in runs.iter().filter(|r| r.trigger != "manual") {
            let epoch = r.epoch.expect("a scheduled run has its epoch");
            assert!(epochs.contains_key(&epoch), "run {r:?}: epoch never led");
            if let Some((_, next)) = epochs.get(&(epoch + 1)) {
                assert!(
                    r.created_at < *next,
                    "run {r:?} was queued under epoch {epoch} after epoch {} led",
                    epoch + 1
                );
            }
        }
        let by_trigger = |t: &str| runs.iter().filter(|r| r.trigger == t).count();
        self.log(&format!(
            "{total} slots in the period, each run once; {} runs in all (schedule {}, catch-up \
             {}, manual {}); {} epochs; {reruns} runs restarted after a kill",
            runs.len(),
            by_trigger("schedule"),
            by_trigger("catch-up"),
            by_trigger("manual"),
            epochs.len(),
        ));
        self.pool.close().await;
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_each_slot_of_90_days_once_through_a_leader_killed() {
    let mut fleet = Fleet::start("leader-two", 2).await;
    let begin = fleet.sim.now();
    let until = begin + SIM_DAYS * DAY;
    fleet.log("two replicas up");

    // Faults at 00:30: the failover gap covers the day's first slots, which the successor
    // must catch up.
    fleet
        .sleep_until(next_time_of_day(begin + 25 * DAY, 0, 30))
        .await;
    let takeover = fleet.kill_leader().await;
    takeover.check("takeover after SIGKILL");
    // The replica killed comes back as a follower (and reclaims the runs it held).
    fleet.replicas[takeover.old].restart().await;
    fleet.log("killed replica restarted");

    // A manual run asked of either replica is one more run, not a second run of a slot.
    fleet.sleep_until(begin + 50 * DAY).await;
    let mut manual = Vec::new();
    for (i, job) in [(0, "backup-cleanup"), (1, "recurring-billing")] {
        manual.extend(fleet.run_by_hand(i, job).await);
    }

    let frozen = fleet.pause_leader_mid_tick(begin + 60 * DAY).await;
    frozen.check("takeover after SIGSTOP in the middle of a tick");
    fleet.finish(until, &manual).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_each_slot_of_90_days_once_through_a_pause_and_a_kill() {
    let mut fleet = Fleet::start("leader-three", 3).await;
    let begin = fleet.sim.now();
    let until = begin + SIM_DAYS * DAY;
    fleet.log("three replicas up");

    // Faults at 00:30: the failover gap covers the day's first slots, which the successor
    // must catch up.
    fleet
        .sleep_until(next_time_of_day(begin + 20 * DAY, 0, 30))
        .await;
    let paused = fleet.pause_leader(3).await;
    paused.check("takeover after SIGSTOP");

    fleet
        .sleep_until(next_time_of_day(begin + 55 * DAY, 0, 30))
        .await;
    let killed = fleet.kill_leader().await;
    killed.check("takeover after SIGKILL");
    // Two replicas carry on; the killed one stays down.
    fleet.finish(until, &[]).await;
}
