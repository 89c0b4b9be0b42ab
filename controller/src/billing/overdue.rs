//! The `service-suspension` job's body: services with an invoice unpaid past its due date plus
//! `SUSPENSION_GRACE_DAYS` are suspended for `overdue` through the lifecycle layer, each with
//! one notice. Never before the grace ends (day granularity: an invoice due on the 1st with 3
//! days of grace is suspended from the 4th), and never while the invoice is being charged or a
//! charge of it is due: that charge may settle it.

use mpanel_common::billing::{DAY_MS, date_to_ms, ms_to_date};
use mpanel_common::status::SuspensionReason;

use super::{Billing, BillingResult};
use crate::lifecycle::{Actor, LifecycleError};
use crate::store::billing::NewBillingJob;

const BATCH: i64 = 500;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuspensionSummary {
    pub suspended: u64,
    /// Services left alone this run, with the reason (another task open, say).
    pub skipped: Vec<String>,
}

impl Billing {
    /// Suspends what is overdue at `now` (see the module's rule).
    pub async fn suspend_overdue(&self, now: i64) -> BillingResult<SuspensionSummary> {
        let actor = Actor::Cron("service-suspension");
        let grace = i64::from(self.config.suspension_grace_days) * DAY_MS;
        // Due on day D, suspended from day D + grace on: every invoice due by midnight of
        // (today - grace) is past its grace.
        let due_by = date_to_ms(ms_to_date(now)) - grace;
        let mut summary = SuspensionSummary::default();
        let mut after = 0;
        loop {
            let batch = self
                .store
                .overdue_services(due_by, now, after, BATCH)
                .await?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            after = last;
            for (service, invoice) in batch {
                let Some(inv) = self.store.get_invoice(invoice).await? else {
                    continue;
                };
                let note = format!(
                    "invoice {} unpaid since {}",
                    inv.number,
                    mpanel_common::billing::format_date(ms_to_date(inv.due_at))
                );
                match self
                    .lifecycle
                    .suspend(
                        &actor,
                        service.into(),
                        SuspensionReason::Overdue,
                        Some(&note),
                    )
                    .await
                {
                    Ok(_) => {
                        self.store
                            .enqueue_billing_job(&NewBillingJob {
                                kind: "invoice_email",
                                dedupe_key: format!("invoice-{invoice}-suspension-notice"),
                                invoice_id: Some(invoice),
                                customer_id: Some(inv.customer_id),
                                service_id: Some(service),
                                params: serde_json::json!({ "template": "service_suspended" }),
                            })
                            .await?;
                        summary.suspended += 1;
                    }
                    Err(
                        e @ (LifecycleError::TaskOpen { .. } | LifecycleError::IllegalMove { .. }),
                    ) => {
                        summary.skipped.push(format!("service {service}: {e}"));
                    }
                    Err(e) => {
                        return Err(super::BillingError::Store(match e {
                            LifecycleError::Store(s) => s,
                            other => crate::store::StoreError::Conflict(other.to_string()),
                        }));
                    }
                }
            }
        }
        if summary.suspended > 0 {
            self.wake_jobs();
        }
        tracing::info!(
            suspended = summary.suspended,
            skipped = summary.skipped.len(),
            "overdue services suspended"
        );
        Ok(summary)
    }
}
