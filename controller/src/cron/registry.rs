//! The named scheduled jobs: what each is called, its default schedule, the setting that
//! overrides it, and its body.
//!
//! A new scheduled job is one entry in [`JOBS`] and one line in [`Registry::standard`]. Its body
//! must be safe to run twice and must not need the run before it: a slot is run at most once,
//! but a manual run can follow it, and after an outage only the latest missed slot is run.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::schedule::{Schedule, Zone};
use crate::backups::Backups;
use crate::billing::Billing;
use crate::ssl::SslRenewals;
use crate::usage::UsageSync;

/// A scheduled job as the configuration knows it.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec {
    pub name: &'static str,
    /// croner syntax, five fields, in `CRON_TIMEZONE`.
    pub default_schedule: &'static str,
    /// The setting that overrides the schedule (`off` disables it).
    pub config_key: &'static str,
}

/// Every scheduled job there is.
pub const JOBS: &[JobSpec] = &[
    JobSpec {
        name: "recurring-billing",
        default_schedule: "0 2 * * *",
        config_key: "CRON_RECURRING_BILLING",
    },
    JobSpec {
        name: "service-suspension",
        default_schedule: "0 3 * * *",
        config_key: "CRON_SERVICE_SUSPENSION",
    },
    JobSpec {
        name: "service-termination",
        // After the day's suspensions, so a service is never suspended and terminated by runs
        // racing each other.
        default_schedule: "30 3 * * *",
        config_key: "CRON_SERVICE_TERMINATION",
    },
    JobSpec {
        name: "ssl-renewals",
        // Hourly, so a failed renewal is retried when its backoff (an hour at first) is over.
        default_schedule: "30 * * * *",
        config_key: "CRON_SSL_RENEWALS",
    },
    JobSpec {
        name: "ssl-renewal-reminders",
        default_schedule: "0 4 * * *",
        config_key: "CRON_SSL_RENEWAL_REMINDERS",
    },
    JobSpec {
        name: "backups",
        default_schedule: "0 1 * * *",
        config_key: "CRON_BACKUPS",
    },
    JobSpec {
        name: "backup-cleanup",
        default_schedule: "0 5 * * *",
        config_key: "CRON_BACKUP_CLEANUP",
    },
    JobSpec {
        name: "usage-sync",
        default_schedule: "15 */6 * * *",
        config_key: "CRON_USAGE_SYNC",
    },
];

/// The body of a scheduled job.
#[async_trait]
pub trait CronJob: Send + Sync + 'static {
    /// Does the job's work as of `scheduled_for` (the slot, Unix ms; for a manual run, when it
    /// was asked for) and returns its summary.
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value>;
}

/// One job in the registry.
#[derive(Clone)]
pub struct RegisteredJob {
    pub name: String,
    /// `None`: the schedule is `off`; the job still runs when an admin asks.
    pub schedule: Option<Schedule>,
    pub body: Arc<dyn CronJob>,
}

impl std::fmt::Debug for RegisteredJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredJob")
            .field("name", &self.name)
            .field(
                "schedule",
                &self.schedule.as_ref().map(Schedule::expression),
            )
            .finish_non_exhaustive()
    }
}

/// The jobs this controller schedules and runs, in one zone.
#[derive(Debug, Clone)]
pub struct Registry {
    zone: Zone,
    jobs: Vec<RegisteredJob>,
}

impl Registry {
    pub fn new(zone: Zone) -> Self {
        Registry {
            zone,
            jobs: Vec::new(),
        }
    }

    /// Adds a job; `schedule` is `None` for one that only runs when asked.
    #[must_use]
    pub fn with(
        mut self,
        name: impl Into<String>,
        schedule: Option<Schedule>,
        body: impl CronJob,
    ) -> Self {
        self.jobs.push(RegisteredJob {
            name: name.into(),
            schedule,
            body: Arc::new(body),
        });
        self
    }

    /// The jobs that exist, with the schedules the configuration gives them.
    pub fn standard(
        config: &crate::config::CronConfig,
        billing: &Billing,
        ssl: &SslRenewals,
        backups: &Backups,
        usage: &UsageSync,
    ) -> Self {
        let schedule = |name: &str| config.schedule(name).cloned();
        Registry::new(config.zone.clone())
            .with(
                "recurring-billing",
                schedule("recurring-billing"),
                RecurringBilling(billing.clone()),
            )
            .with(
                "service-suspension",
                schedule("service-suspension"),
                ServiceSuspension(billing.clone()),
            )
            .with(
                "service-termination",
                schedule("service-termination"),
                ServiceTermination(billing.clone()),
            )
            .with(
                "ssl-renewals",
                schedule("ssl-renewals"),
                RenewCertificates(ssl.clone()),
            )
            .with(
                "ssl-renewal-reminders",
                schedule("ssl-renewal-reminders"),
                RemindExpiringCertificates(ssl.clone()),
            )
            .with(
                "backups",
                schedule("backups"),
                ScheduledBackups(backups.clone()),
            )
            .with(
                "backup-cleanup",
                schedule("backup-cleanup"),
                BackupCleanup(backups.clone()),
            )
            .with(
                "usage-sync",
                schedule("usage-sync"),
                SyncUsage(usage.clone()),
            )
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    pub fn jobs(&self) -> &[RegisteredJob] {
        &self.jobs
    }

    pub fn get(&self, name: &str) -> Option<&RegisteredJob> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// `recurring-billing`: invoices the periods coming due and queues the charges due.
struct RecurringBilling(Billing);

#[async_trait]
impl CronJob for RecurringBilling {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.run_recurring(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `service-suspension`: suspends the services whose invoices are overdue past the grace days.
struct ServiceSuspension(Billing);

#[async_trait]
impl CronJob for ServiceSuspension {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.suspend_overdue(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `service-termination`: terminates, after a final backup, the services suspended for
/// non-payment longer than `TERMINATION_DAYS`.
struct ServiceTermination(Billing);

#[async_trait]
impl CronJob for ServiceTermination {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.terminate_overdue(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `ssl-renewals`: renews the ACME certificates past their `renew_after` through their
/// servers' agents; a failed one is retried after a backoff.
struct RenewCertificates(SslRenewals);

#[async_trait]
impl CronJob for RenewCertificates {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.renew_due(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `ssl-renewal-reminders`: tells customers, once per certificate, about one expiring within 30
/// days that will not be renewed automatically.
struct RemindExpiringCertificates(SslRenewals);

#[async_trait]
impl CronJob for RemindExpiringCertificates {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.remind_expiring(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `backups`: takes the backups the products' schedules call for.
struct ScheduledBackups(Backups);

#[async_trait]
impl CronJob for ScheduledBackups {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.run_scheduled(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `backup-cleanup`: deletes the backups older than `BACKUP_RETENTION_DAYS`, on the panel
/// first, then their rows.
struct BackupCleanup(Backups);

#[async_trait]
impl CronJob for BackupCleanup {
    async fn run(&self, scheduled_for: i64) -> anyhow::Result<Value> {
        let summary = self.0.cleanup(scheduled_for).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

/// `usage-sync`: samples disk and bandwidth of every live account through the agents, flags
/// and reports the services over quota, prunes the history past `USAGE_RETENTION_DAYS`.
struct SyncUsage(UsageSync);

#[async_trait]
impl CronJob for SyncUsage {
    async fn run(&self, _scheduled_for: i64) -> anyhow::Result<Value> {
        // Samples are stamped when they are taken, not with the slot: after an outage the
        // latest missed slot runs late, and its samples are of now.
        let summary = self.0.sync(crate::store::now_ms()).await?;
        Ok(serde_json::to_value(summary)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_and_settings_are_distinct_and_defaults_parse() {
        for (i, a) in JOBS.iter().enumerate() {
            assert!(Schedule::parse(a.default_schedule, &Zone::utc()).is_ok());
            let expected = format!("CRON_{}", a.name.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(a.config_key, expected);
            for b in &JOBS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }
}
