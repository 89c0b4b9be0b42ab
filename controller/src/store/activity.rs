//! The activity log: who changed what, and how. Every change writes its row in its own
//! transaction through `record_activity`, which this module gives each backend, with a
//! [`Change`]: the fields the change touched as they were and as they are. The summaries of each
//! kind of record are made here, so every writer shows a record the same way and none shows a
//! secret (passwords, tokens, card data and ciphertext appear, at most, as the fact that they
//! changed).

use async_trait::async_trait;
use serde_json::{Value, json};

use super::billing::{Invoice, Order};
use super::{
    ActivityEntry, ActivityFilter, AdminToken, Customer, Product, Server, Service, StoreResult,
};

#[async_trait]
pub trait ActivityStore: Send + Sync {
    async fn list_activity(
        &self,
        entity_type: &str,
        entity_id: i64,
    ) -> StoreResult<Vec<ActivityEntry>>;
    /// The audit log, filtered, newest first.
    async fn search_activity(&self, filter: &ActivityFilter) -> StoreResult<Vec<ActivityEntry>>;
}

/// What one change did to its record: `before` as it was and `after` as it is, each a JSON
/// object of the fields concerned. A creation has no `before`, a deletion no `after`; a change
/// that touches no field of its own (queueing a task, say) has neither.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Change {
    /// Nothing of the record itself changed.
    pub fn none() -> Change {
        Change::default()
    }

    /// A new record, as written.
    pub fn created(after: Value) -> Change {
        Change {
            before: None,
            after: Some(after),
        }
    }

    /// A record gone, as it was.
    pub fn deleted(before: Value) -> Change {
        Change {
            before: Some(before),
            after: None,
        }
    }

    /// Exactly these two summaries.
    pub fn updated(before: Value, after: Value) -> Change {
        Change {
            before: Some(before),
            after: Some(after),
        }
    }

    /// Of two whole summaries of one record, only the fields whose values differ, so an update
    /// shows what it changed and nothing else.
    pub fn between(before: Value, after: Value) -> Change {
        match (before, after) {
            (Value::Object(mut before), Value::Object(mut after)) => {
                let same: Vec<String> = before
                    .iter()
                    .filter(|(k, v)| after.get(*k) == Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in same {
                    before.remove(&key);
                    after.remove(&key);
                }
                for key in after.keys() {
                    before.entry(key.clone()).or_insert(Value::Null);
                }
                for key in before.keys() {
                    after.entry(key.clone()).or_insert(Value::Null);
                }
                Change::updated(Value::Object(before), Value::Object(after))
            }
            (before, after) => Change::updated(before, after),
        }
    }
}

/// Unix milliseconds as RFC 3339 (UTC), as the API shows times.
pub fn instant(ms: i64) -> Value {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

fn opt_instant(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, instant)
}

fn opt_date(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |d| {
        Value::String(mpanel_common::billing::format_date(
            mpanel_common::billing::ms_to_date(d),
        ))
    })
}

/// A server as the log shows it (it holds no secret).
pub fn server_summary(s: &Server) -> Value {
    json!({
        "hostname": s.hostname,
        "ipAddress": s.ip_address,
        "controlPanel": s.control_panel.as_str(),
        "controlPanelUrl": s.control_panel_url,
        "maxAccounts": s.max_accounts,
        "status": s.status.as_str(),
        "location": s.location,
        "group": s.server_group,
        "nameserver1": s.nameserver1,
        "nameserver2": s.nameserver2,
        "dnsProvider": s.dns_provider.as_str(),
        "sslProvider": s.ssl_provider.as_str(),
    })
}

/// A service as the log shows it: never its passwords nor their ciphertext.
pub fn service_summary(s: &Service) -> Value {
    json!({
        "customerId": s.customer_id.get(),
        "productId": s.product_id.get(),
        "serverId": s.server_id,
        "domain": s.domain,
        "username": s.username,
        "status": s.status.as_str(),
        "billingCycle": s.billing_cycle.as_str(),
        "nextDueDate": opt_date(s.next_due_at),
        "suspensionReason": s.suspension_reason,
        "provisioningError": s.provisioning_error,
        "disputeRef": s.dispute_ref,
    })
}

/// A customer as the log shows it: no Stripe ids, no card.
pub fn customer_summary(c: &Customer) -> Value {
    json!({
        "email": c.email,
        "name": c.name,
        "status": c.status.as_str(),
    })
}

/// A product with its prices.
pub fn product_summary(p: &Product) -> Value {
    json!({
        "name": p.name,
        "group": p.server_group,
        "packages": {
            "cpanel": p.package_cpanel,
            "plesk": p.package_plesk,
            "directadmin": p.package_directadmin,
        },
        "quotas": {
            "diskMb": p.disk_mb,
            "emailQuotaMb": p.email_quota_mb,
            "databases": p.databases,
        },
        "active": p.active,
        "taxRateBp": p.tax_rate_bp,
        "backupSchedule": p.backup_schedule.as_str(),
        "prices": p.prices.iter().map(|price| json!({
            "cycle": price.billing_cycle.as_str(),
            "amount": price.amount_minor,
            "currency": price.currency,
        })).collect::<Vec<_>>(),
    })
}

/// An admin token: never the token nor its hash.
pub fn token_summary(t: &AdminToken) -> Value {
    json!({
        "name": t.name,
        "scopes": t.scopes,
        "expiresAt": opt_instant(t.expires_at),
        "revokedAt": opt_instant(t.revoked_at),
    })
}

/// An invoice's state and money (amounts in minor units); not its payment link.
pub fn invoice_summary(i: &Invoice) -> Value {
    json!({
        "number": i.number,
        "status": i.status,
        "currency": i.currency,
        "total": i.amount_minor,
        "amountPaid": i.amount_paid_minor,
        "amountRefunded": i.amount_refunded_minor,
        "dueAt": instant(i.due_at),
        "paidAt": opt_instant(i.paid_at),
        "voidedAt": opt_instant(i.voided_at),
        "chargeAttempts": i.charge_attempts,
        "nextChargeAt": opt_instant(i.next_charge_at),
        "lastChargeError": i.last_charge_error,
    })
}

/// An order's state and what it led to; not its checkout link nor Stripe's ids.
pub fn order_summary(o: &Order) -> Value {
    json!({
        "status": o.status,
        "failure": o.failure,
        "domain": o.domain,
        "productId": o.product_id,
        "billingCycle": o.billing_cycle,
        "total": o.total_minor,
        "currency": o.currency,
        "customerId": o.customer_id,
        "serviceId": o.service_id,
        "invoiceId": o.invoice_id,
    })
}

/// One activity row to write (see `record_activity`).
pub(crate) struct ActivityRow<'a> {
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) entity_type: &'a str,
    pub(crate) entity_id: Option<i64>,
    pub(crate) details: Value,
    pub(crate) change: Change,
}

/// The INSERT of `rows` activity rows, nine parameters each.
pub(crate) fn insert_activity_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let first = r * 9 + 1;
            let params: Vec<String> = (first..first + 9).map(|n| format!("${n}")).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO activity_log (actor, action, entity_type, entity_id, details, created_at,
             request_id, before_state, after_state)
         VALUES {}",
        values.join(", ")
    )
}

macro_rules! impl_activity_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::types::Json;
            use $crate::store::{ActivityEntry, ActivityFilter, ActivityStore, Change, StoreResult, now_ms};

            impl $store {
                /// Writes one activity row inside the caller's transaction, so a change and its
                /// row commit together or not at all.
                /// `change` is what the change did to the record (see [`Change`]); `details`
                /// what else is worth knowing (the task queued, the payment's reference).
                pub(crate) async fn record_activity(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    actor: &str,
                    action: &str,
                    entity_type: &str,
                    entity_id: impl Into<Option<i64>> + Send,
                    details: serde_json::Value,
                    change: Change,
                ) -> StoreResult<()> {
                    let row = $crate::store::activity::ActivityRow {
                        actor,
                        action,
                        entity_type,
                        entity_id: entity_id.into(),
                        details,
                        change,
                    };
                    Self::record_activities(tx, vec![row]).await
                }

                /// [`Self::record_activity`] for several rows, written in one statement.
                pub(crate) async fn record_activities(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    rows: Vec<$crate::store::activity::ActivityRow<'_>>,
                ) -> StoreResult<()> {
                    let sql = $crate::store::activity::insert_activity_sql(rows.len());
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    let now = now_ms();
                    let request_id = $crate::request_id::current();
                    for row in rows {
                        query = query
                            .bind(row.actor)
                            .bind(row.action)
                            .bind(row.entity_type)
                            .bind(row.entity_id)
                            .bind(Json(row.details))
                            .bind(now)
                            .bind(request_id.clone())
                            .bind(row.change.before.map(Json))
                            .bind(row.change.after.map(Json));
                    }
                    query.execute(&mut **tx).await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl ActivityStore for $store {
                async fn search_activity(&self, filter: &ActivityFilter) -> StoreResult<Vec<ActivityEntry>> {
                    Ok(sqlx::query_as::<_, ActivityEntry>(
                        "SELECT * FROM activity_log
                         WHERE ($1 IS NULL OR entity_type = $1)
                           AND ($2 IS NULL OR entity_id = $2)
                           AND ($3 IS NULL OR actor = $3)
                           AND ($4 IS NULL OR created_at >= $4)
                           AND ($5 IS NULL OR id < $5)
                         ORDER BY id DESC LIMIT $6",
                    )
                    .bind(filter.entity_type.as_deref())
                    .bind(filter.entity_id)
                    .bind(filter.actor.as_deref())
                    .bind(filter.since)
                    .bind(filter.page.after_id)
                    .bind(filter.page.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn list_activity(&self, entity_type: &str, entity_id: i64) -> StoreResult<Vec<ActivityEntry>> {
                    Ok(sqlx::query_as::<_, ActivityEntry>(
                        "SELECT * FROM activity_log WHERE entity_type = $1 AND entity_id = $2 ORDER BY id",
                    )
                    .bind(entity_type)
                    .bind(entity_id)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }
        };
    };
}

pub(crate) use impl_activity_store;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Change;

    #[test]
    fn an_update_keeps_only_the_fields_that_changed() {
        let change = Change::between(
            json!({ "hostname": "a.example", "status": "active", "maxAccounts": 500 }),
            json!({ "hostname": "a.example", "status": "draining", "maxAccounts": 20 }),
        );
        assert_eq!(
            change.before,
            Some(json!({ "status": "active", "maxAccounts": 500 }))
        );
        assert_eq!(
            change.after,
            Some(json!({ "status": "draining", "maxAccounts": 20 }))
        );
    }

    #[test]
    fn a_field_on_one_side_only_shows_null_on_the_other() {
        let change = Change::between(json!({ "a": 1 }), json!({ "b": 2 }));
        assert_eq!(change.before, Some(json!({ "a": 1, "b": null })));
        assert_eq!(change.after, Some(json!({ "a": null, "b": 2 })));
    }

    #[test]
    fn an_update_that_changes_nothing_has_empty_sides() {
        let change = Change::between(json!({ "a": 1 }), json!({ "a": 1 }));
        assert_eq!(change.before, Some(json!({})));
        assert_eq!(change.after, Some(json!({})));
    }

    #[test]
    fn creations_have_no_before_and_deletions_no_after() {
        assert_eq!(Change::created(json!({ "a": 1 })).before, None);
        assert_eq!(Change::deleted(json!({ "a": 1 })).after, None);
    }
}
