//! Disk and bandwidth per hosting account: the `usage-sync` job asks every server's agent for
//! the usage of each live (active or suspended) account placed on it, records each answer as a
//! sample of the service's history and its latest usage, flags the services above a finite
//! disk or bandwidth limit, tells the admin once per over-quota episode, and prunes the history
//! past `USAGE_RETENTION_DAYS`.
//!
//! Servers are asked in parallel, each with a few queries in flight, so one slow panel does not
//! hold up the others. An agent that is offline or stops answering leaves its services as they
//! were (their latest sample stays) and is counted in the summary with why; the run carries on.
//! Only a store error fails the run.
//!
//! An episode starts with the first sample over quota and ends with the first one under it
//! (or one whose limits are no longer finite). The admin's notice goes through the outbox under
//! a key naming the service and the episode's start, and the episode is marked told once it is
//! queued: a repeated run, or one that stopped between the two writes, sends nothing twice,
//! while a later episode of the same service sends again.
//!
//! This module decides and orders; the SQL is `store::usage`'s, the panel calls the agents'.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mpanel_common::command::{AccountUsage, Amount, UsageQuery};
use mpanel_common::ids::ServerId;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::config::Config;
use crate::crypto::Cipher;
use crate::fleet::{CommandError, Fleet};
use crate::jobs::Dispatcher;
use crate::store::lease_queue::EMAIL;
use crate::store::usage::{LiveAccount, NewUsageSample, UnnotifiedOverQuota};
use crate::store::{DynStore, StoreError, now_ms};

const DAY_MS: i64 = 86_400_000;
/// Accounts read (and then recorded in one transaction) per page of a server.
const PAGE: i64 = 200;
/// Queries in flight per server: enough to hide the panel's latency, few enough not to load it.
pub const QUERIES_PER_SERVER: usize = 8;
/// Servers worked at once.
const SERVERS_AT_ONCE: usize = 32;
/// How long one query waits for the agent.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Samples deleted per statement of the retention sweep.
const PRUNE_BATCH: i64 = 5_000;
const NOTICES_PAGE: i64 = 200;

/// Whether `usage` is over quota: disk or bandwidth used above a finite limit. An unknown use
/// or limit, or an unlimited one, is never over.
pub fn is_over_quota(usage: &AccountUsage) -> bool {
    fn over(used: Option<u64>, limit: Option<Amount>) -> bool {
        matches!((used, limit), (Some(used), Some(Amount::Value(limit))) if used > limit)
    }
    over(usage.disk_used, usage.disk_limit) || over(usage.bandwidth_used, usage.bandwidth_limit)
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    /// Servers looked at.
    pub servers: u64,
    /// Accounts the agents were asked about (answered, failed or timed out; not those of an
    /// agent found offline).
    pub accounts_queried: u64,
    /// Samples recorded.
    pub stored: u64,
    /// Live accounts without a new sample (not asked, or no usable answer).
    pub skipped: u64,
    /// Why, with how many each (`agent offline`, `agent did not answer`, …).
    pub skipped_reasons: BTreeMap<String, u64>,
    /// Services over quota after this run's samples.
    pub over_quota: u64,
    /// Of those, the ones whose episode this run started.
    pub newly_over_quota: u64,
    /// Notices to the admin queued by this run.
    pub notified: u64,
    /// Episodes left untold because no admin address is configured.
    pub notices_without_address: u64,
    /// History samples deleted as past the retention.
    pub pruned: u64,
    pub duration_ms: u64,
}

impl SyncSummary {
    fn skip(&mut self, reason: &str, n: u64) {
        if n > 0 {
            self.skipped += n;
            *self.skipped_reasons.entry(reason.to_owned()).or_default() += n;
        }
    }

    fn add(&mut self, other: SyncSummary) {
        self.accounts_queried += other.accounts_queried;
        self.stored += other.stored;
        self.skipped += other.skipped;
        for (reason, n) in other.skipped_reasons {
            *self.skipped_reasons.entry(reason).or_default() += n;
        }
        self.over_quota += other.over_quota;
        self.newly_over_quota += other.newly_over_quota;
    }
}

/// What became of one account in a run.
enum Answer {
    Sample(NewUsageSample),
    /// Asked, with no usable answer (the summary's reason).
    Failed(String),
    /// Not asked: the agent is out of reach.
    NotAsked(String),
}

/// The body of `usage-sync`.
#[derive(Clone)]
pub struct UsageSync {
    store: DynStore,
    fleet: Fleet,
    cipher: Arc<Cipher>,
    config: Arc<Config>,
    /// Wakes the email sender after a notice is queued.
    dispatcher: Dispatcher,
    query_timeout: Duration,
}

impl std::fmt::Debug for UsageSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageSync")
    }
}

/// Why an account got no sample: the summary's reason, and whether the agent as a whole is
/// out of reach (its remaining accounts are then not asked).
fn skip_reason(error: &CommandError) -> (String, bool) {
    match error {
        CommandError::Offline(_) => ("agent offline".to_owned(), true),
        CommandError::Timeout(_) | CommandError::Disconnected(_) => {
            ("agent did not answer".to_owned(), true)
        }
        CommandError::Failed { class, .. } => (format!("usage query failed ({class})"), false),
        CommandError::Waiting(_) => ("agent waiting".to_owned(), false),
        CommandError::BadReply { .. } => ("agent reply unusable".to_owned(), false),
    }
}

impl UsageSync {
    pub fn new(
        store: DynStore,
        fleet: Fleet,
        cipher: Arc<Cipher>,
        config: Arc<Config>,
        dispatcher: Dispatcher,
    ) -> Self {
        let query_timeout = QUERY_TIMEOUT.min(Duration::from_secs(u64::from(
            config.provisioning_command_timeout_secs,
        )));
        UsageSync {
            store,
            fleet,
            cipher,
            config,
            dispatcher,
            query_timeout,
        }
    }

    /// One run at `now`: samples every live account, tells the admin about new over-quota
    /// episodes, prunes the history.
    pub async fn sync(&self, now: i64) -> Result<SyncSummary, StoreError> {
        let started = Instant::now();
        let servers = self.store.list_servers().await?;
        let mut summary = SyncSummary {
            servers: servers.len() as u64,
            ..SyncSummary::default()
        };
        let per_server: Vec<Result<SyncSummary, StoreError>> = futures::stream::iter(servers)
            .map(|server| self.sync_server(server.id))
            .buffer_unordered(SERVERS_AT_ONCE)
            .collect()
            .await;
        for result in per_server {
            summary.add(result?);
        }
        self.notify_over_quota(now, &mut summary).await?;
        let cutoff = now - i64::from(self.config.usage_retention_days) * DAY_MS;
        loop {
            let deleted = self.store.prune_usage(cutoff, PRUNE_BATCH).await?;
            summary.pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                break;
            }
        }
        summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        info!(
            servers = summary.servers,
            queried = summary.accounts_queried,
            stored = summary.stored,
            skipped = summary.skipped,
            over_quota = summary.over_quota,
            newly_over_quota = summary.newly_over_quota,
            pruned = summary.pruned,
            duration_ms = summary.duration_ms,
            "usage sync done"
        );
        Ok(summary)
    }

    /// Samples the live accounts of one server, a page at a time.
    async fn sync_server(&self, server_id: ServerId) -> Result<SyncSummary, StoreError> {
        let mut summary = SyncSummary::default();
        // Set once the agent is out of reach: the rest of its accounts are not asked.
        let unreachable: Mutex<Option<String>> = Mutex::new(None);
        let mut after = None;
        loop {
            let page = self.store.live_accounts_on(server_id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let answers: Vec<Answer> = futures::stream::iter(page)
                .map(|account| self.sample(server_id, account, &unreachable))
                .buffer_unordered(QUERIES_PER_SERVER)
                .collect()
                .await;
            let mut samples = Vec::with_capacity(answers.len());
            for answer in answers {
                match answer {
                    Answer::Sample(sample) => {
                        summary.accounts_queried += 1;
                        samples.push(sample);
                    }
                    Answer::Failed(reason) => {
                        summary.accounts_queried += 1;
                        summary.skip(&reason, 1);
                    }
                    Answer::NotAsked(reason) => summary.skip(&reason, 1),
                }
            }
            for recorded in self.store.record_usage(&samples).await? {
                if !recorded.stored {
                    summary.skip("sampled at that instant already", 1);
                    continue;
                }
                summary.stored += 1;
                if recorded.over_quota_since.is_some() {
                    summary.over_quota += 1;
                }
                if recorded.newly_over_quota {
                    summary.newly_over_quota += 1;
                    info!(
                        service_id = recorded.service_id.get(),
                        server_id = server_id.get(),
                        "service over quota"
                    );
                }
            }
        }
        let unreachable = unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(reason) = unreachable {
            warn!(
                server_id = server_id.get(),
                reason, "usage left unsampled on this server"
            );
        }
        Ok(summary)
    }

    /// Asks the agent about one account.
    async fn sample(
        &self,
        server_id: ServerId,
        account: LiveAccount,
        unreachable: &Mutex<Option<String>>,
    ) -> Answer {
        let given_up = unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(reason) = given_up {
            return Answer::NotAsked(reason);
        }
        let answer = self
            .fleet
            .request(
                server_id,
                UsageQuery {
                    username: account.username,
                },
                &format!("usage:service:{}", account.id),
                self.query_timeout,
            )
            .await;
        match answer {
            Ok(usage) => Answer::Sample(NewUsageSample {
                service_id: account.id,
                taken_at: now_ms(),
                over_quota: is_over_quota(&usage),
                usage,
            }),
            Err(error) => {
                let (reason, whole_agent) = skip_reason(&error);
                if whole_agent {
                    unreachable
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert_with(|| reason.clone());
                } else {
                    warn!(service_id = account.id.get(), %error, "usage query failed");
                }
                if matches!(error, CommandError::Offline(_)) {
                    Answer::NotAsked(reason)
                } else {
                    Answer::Failed(reason)
                }
            }
        }
    }

    /// Queues one notice per over-quota episode nobody was told about, then marks it told.
    async fn notify_over_quota(
        &self,
        now: i64,
        summary: &mut SyncSummary,
    ) -> Result<(), StoreError> {
        let to = self
            .config
            .support_email
            .clone()
            .or_else(|| self.config.email_from.clone());
        let mut after = None;
        let mut queued_any = false;
        loop {
            let page = self
                .store
                .unnotified_over_quota(after, NOTICES_PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.latest.sample.service_id);
            let Some(to) = to.as_deref() else {
                summary.notices_without_address += page.len() as u64;
                continue;
            };
            for episode in page {
                let Some(since) = episode.latest.over_quota_since else {
                    continue;
                };
                let service_id = episode.latest.sample.service_id;
                let (subject, context) = over_quota_notice(&episode, since);
                let sealed = self
                    .cipher
                    .seal_str(&context.to_string())
                    .map_err(|e| StoreError::Corrupt(format!("cannot seal an email: {e}")))?;
                let key = format!("over-quota:service:{service_id}:{since}");
                let queued = self
                    .store
                    .queue_email(&key, to, "over_quota", &subject, &sealed)
                    .await?;
                queued_any |= queued;
                if self
                    .store
                    .mark_over_quota_notified(service_id, since, now)
                    .await?
                    && queued
                {
                    summary.notified += 1;
                }
            }
        }
        if summary.notices_without_address > 0 {
            warn!(
                episodes = summary.notices_without_address,
                "over-quota services not notified: SUPPORT_EMAIL is unset"
            );
        }
        if queued_any {
            self.dispatcher.wake_queue(&EMAIL);
        }
        Ok(())
    }
}

/// `2026-12-01 15:47 UTC`: when an episode started, as the notice prints it.
fn utc_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The subject and template context of the `over_quota` notice.
fn over_quota_notice(episode: &UnnotifiedOverQuota, since: i64) -> (String, serde_json::Value) {
    let usage = episode.latest.sample.usage();
    let finite = |limit: Option<Amount>| match limit {
        Some(Amount::Value(v)) => Some(v),
        _ => None,
    };
    let over = |used: Option<u64>, limit: Option<Amount>| matches!((used, finite(limit)), (Some(u), Some(l)) if u > l);
    let context = json!({
        "service_id": episode.latest.sample.service_id.get(),
        "domain": episode.domain,
        "username": episode.username,
        "server": episode.server_hostname,
        "since": utc_text(since),
        "disk_used": usage.disk_used,
        "disk_limit": finite(usage.disk_limit),
        "disk_over": over(usage.disk_used, usage.disk_limit),
        "bandwidth_used": usage.bandwidth_used,
        "bandwidth_limit": finite(usage.bandwidth_limit),
        "bandwidth_over": over(usage.bandwidth_used, usage.bandwidth_limit),
    });
    (format!("Over quota: {}", episode.domain), context)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    fn usage(
        disk: Option<u64>,
        disk_limit: Option<Amount>,
        bw: Option<u64>,
        bw_limit: Option<Amount>,
    ) -> AccountUsage {
        AccountUsage {
            disk_used: disk,
            disk_limit,
            bandwidth_used: bw,
            bandwidth_limit: bw_limit,
            ..AccountUsage::default()
        }
    }

    #[test]
    fn over_quota_is_use_above_a_finite_disk_or_bandwidth_limit() {
        let limit = Some(Amount::Value(100 * MB));
        assert!(is_over_quota(&usage(Some(101 * MB), limit, None, None)));
        assert!(is_over_quota(&usage(Some(1), limit, Some(101 * MB), limit)));
        assert!(
            !is_over_quota(&usage(Some(100 * MB), limit, Some(100 * MB), limit)),
            "at the limit"
        );
        assert!(!is_over_quota(&usage(
            Some(u64::MAX),
            Some(Amount::Unlimited),
            None,
            None
        )));
        assert!(
            !is_over_quota(&usage(Some(u64::MAX), None, None, None)),
            "unknown limit"
        );
        assert!(
            !is_over_quota(&usage(None, limit, None, limit)),
            "unknown use"
        );
        let inodes_only = AccountUsage {
            inodes_used: Some(10),
            inodes_limit: Some(Amount::Value(5)),
            ..AccountUsage::default()
        };
        assert!(!is_over_quota(&inodes_only), "inodes alone do not count");
    }

    #[test]
    fn an_unreachable_agent_stops_the_server_and_a_failed_query_does_not() {
        let server = ServerId::new(1);
        assert_eq!(
            skip_reason(&CommandError::Offline(server)),
            ("agent offline".to_owned(), true)
        );
        assert!(skip_reason(&CommandError::Timeout(server)).1);
        assert!(skip_reason(&CommandError::Disconnected(server)).1);
        let failed = CommandError::Failed {
            class: mpanel_common::command::ErrorClass::NotFound,
            message: "account gone".into(),
        };
        assert!(!skip_reason(&failed).1);
    }
}
