//! The `service-termination` job's body: services suspended for `overdue` for
//! `TERMINATION_DAYS` whose invoice is still unpaid are terminated through the lifecycle layer,
//! each after a final backup (the task takes it before removing the account, and keeps the
//! account when it fails), with one notice once the account is gone. Day granularity, like the
//! suspension: suspended on day S, terminated from day S + `TERMINATION_DAYS` on.

use mpanel_common::billing::{DAY_MS, date_to_ms, ms_to_date};

use super::{Billing, BillingResult};
use crate::lifecycle::{Actor, LifecycleError};

const BATCH: i64 = 500;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminationSummary {
    /// Terminations queued (each takes its final backup first).
    pub queued: u64,
    /// Services left alone this run, with the reason.
    pub skipped: Vec<String>,
}

impl Billing {
    /// Queues the terminations due at `now` (see the module's rule).
    pub async fn terminate_overdue(&self, now: i64) -> BillingResult<TerminationSummary> {
        let actor = Actor::Cron("service-termination");
        let days = i64::from(self.config.termination_days);
        let suspended_before = date_to_ms(ms_to_date(now)) - (days - 1) * DAY_MS;
        let mut summary = TerminationSummary::default();
        let mut after = 0;
        loop {
            let batch = self
                .store
                .overdue_suspended_services(suspended_before, after, BATCH)
                .await?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            after = last;
            for (service, invoice) in batch {
                match self
                    .lifecycle
                    .terminate_for_non_payment(&actor, service.into(), invoice)
                    .await
                {
                    Ok(_) => summary.queued += 1,
                    Err(
                        e @ (LifecycleError::TaskOpen { .. } | LifecycleError::IllegalMove { .. }),
                    ) => summary.skipped.push(format!("service {service}: {e}")),
                    Err(LifecycleError::Store(e)) => return Err(e.into()),
                    Err(other) => summary.skipped.push(format!("service {service}: {other}")),
                }
            }
        }
        tracing::info!(
            queued = summary.queued,
            skipped = summary.skipped.len(),
            "overdue services queued for termination"
        );
        Ok(summary)
    }
}
