//! Rows of `service_usage_samples` (every disk, bandwidth and inode sample of a hosting
//! account, kept for the retention) and `service_usage_latest` (the latest sample of each
//! service with its over-quota episode). `impl_usage_store!` instantiates the SQL for both
//! backends like every store module: portable SQL, `$n` placeholders, times as BIGINT ms.
//!
//! In the limit columns -1 stands for "unlimited" and NULL for "not reported"; in the used
//! columns NULL is "not reported". [`limit_column`] and [`limit_of`] are the only places that
//! know the encoding. Whether a sample is over quota is the caller's decision
//! ([`NewUsageSample::over_quota`]); this module keeps the episode that decision starts, carries
//! or ends.

use async_trait::async_trait;
use mpanel_common::command::{AccountUsage, Amount};
use mpanel_common::ids::{ServerId, ServiceId};

use super::{Page, StoreResult};

/// A limit as stored: `-1` unlimited, `NULL` unknown.
pub fn limit_column(limit: Option<Amount>) -> Option<i64> {
    limit.map(|a| match a {
        Amount::Unlimited => -1,
        Amount::Value(v) => bytes_column(v),
    })
}

/// The limit a stored column holds.
pub fn limit_of(column: Option<i64>) -> Option<Amount> {
    column.map(|v| match u64::try_from(v) {
        Ok(v) => Amount::Value(v),
        Err(_) => Amount::Unlimited,
    })
}

/// A size or count as stored (panels do not report anything near 2^63 bytes; clamp rather
/// than wrap if one ever does).
pub fn bytes_column(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn used_of(column: Option<i64>) -> Option<u64> {
    column.and_then(|v| u64::try_from(v).ok())
}

/// One sample to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsageSample {
    pub service_id: ServiceId,
    pub taken_at: i64,
    pub usage: AccountUsage,
    /// Whether this sample is over quota: starts an episode, or carries the running one on.
    /// `false` ends a running episode.
    pub over_quota: bool,
}

/// What recording one sample did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedUsage {
    pub service_id: ServiceId,
    /// False when the service already had a sample at that instant (nothing written).
    pub stored: bool,
    /// The episode running after this sample, if any (when it started).
    pub over_quota_since: Option<i64>,
    /// This sample started the episode.
    pub newly_over_quota: bool,
}

/// One stored sample.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageSampleRow {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub service_id: ServiceId,
    pub taken_at: i64,
    pub disk_used_bytes: Option<i64>,
    pub disk_limit_bytes: Option<i64>,
    pub bandwidth_used_bytes: Option<i64>,
    pub bandwidth_limit_bytes: Option<i64>,
    pub inodes_used: Option<i64>,
    pub inodes_limit: Option<i64>,
}

impl UsageSampleRow {
    /// The sample in the agents' terms.
    pub fn usage(&self) -> AccountUsage {
        AccountUsage {
            disk_used: used_of(self.disk_used_bytes),
            disk_limit: limit_of(self.disk_limit_bytes),
            bandwidth_used: used_of(self.bandwidth_used_bytes),
            bandwidth_limit: limit_of(self.bandwidth_limit_bytes),
            inodes_used: used_of(self.inodes_used),
            inodes_limit: limit_of(self.inodes_limit),
        }
    }
}

/// The latest sample of a service and its over-quota episode.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LatestUsage {
    #[sqlx(flatten)]
    pub sample: UsageSampleRow,
    /// When the running over-quota episode started; `None`: not over quota.
    pub over_quota_since: Option<i64>,
    /// When the admin was told about the running episode.
    pub over_quota_notified_at: Option<i64>,
}

/// A live account on a server: what the usage job asks the agent about.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveAccount {
    #[sqlx(try_from = "i64")]
    pub id: ServiceId,
    pub username: String,
}

/// An over-quota episode the admin has not been told about, with what the notice names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UnnotifiedOverQuota {
    #[sqlx(flatten)]
    pub latest: LatestUsage,
    pub domain: String,
    pub username: Option<String>,
    pub server_hostname: Option<String>,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// The active or suspended services placed on `server_id` with an account username, by id,
    /// after `after` (keyset paging); at most `limit`.
    async fn live_accounts_on(
        &self,
        server_id: ServerId,
        after: Option<ServiceId>,
        limit: i64,
    ) -> StoreResult<Vec<LiveAccount>>;
    /// Records the samples in one transaction: each goes into the history and, unless an
    /// equally new or newer one is there, becomes its service's latest, starting, carrying on
    /// or ending its over-quota episode. An episode's start and whether the admin was told
    /// survive every sample that stays over quota; a sample under quota clears both.
    async fn record_usage(&self, samples: &[NewUsageSample]) -> StoreResult<Vec<RecordedUsage>>;
    async fn latest_usage(&self, service_id: ServiceId) -> StoreResult<Option<LatestUsage>>;
    /// The latest samples of these services (those that have one), in one statement.
    async fn latest_usage_of(&self, service_ids: &[ServiceId]) -> StoreResult<Vec<LatestUsage>>;
    /// A service's samples, newest first; `page.after_id` is the id of the last sample of the
    /// page before.
    async fn usage_history(
        &self,
        service_id: ServiceId,
        page: Page,
    ) -> StoreResult<Vec<UsageSampleRow>>;
    /// Over-quota episodes of live (active or suspended) services the admin has not been told
    /// about, by service id after `after`. An ended service's last episode is not news.
    async fn unnotified_over_quota(
        &self,
        after: Option<ServiceId>,
        limit: i64,
    ) -> StoreResult<Vec<UnnotifiedOverQuota>>;
    /// Notes that the admin was told about the episode that started at `since`; false when
    /// that episode is over (or was noted already).
    async fn mark_over_quota_notified(
        &self,
        service_id: ServiceId,
        since: i64,
        now: i64,
    ) -> StoreResult<bool>;
    /// Deletes up to `limit` samples taken before `before`, oldest first; returns how many.
    /// The latest sample of each service is kept in `service_usage_latest` regardless.
    async fn prune_usage(&self, before: i64, limit: i64) -> StoreResult<u64>;
}

macro_rules! impl_usage_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::{ServerId, ServiceId};
            use $crate::store::usage::{
                LatestUsage, LiveAccount, NewUsageSample, RecordedUsage, UnnotifiedOverQuota,
                UsageSampleRow, UsageStore, bytes_column, limit_column,
            };
            use $crate::store::{Page, StoreError, StoreResult};

            macro_rules! sample_columns {
                () => {
                    "disk_used_bytes, disk_limit_bytes, bandwidth_used_bytes, \
                     bandwidth_limit_bytes, inodes_used, inodes_limit"
                };
            }
            macro_rules! latest_columns {
                () => {
                    "sample_id AS id, service_id, taken_at, disk_used_bytes, disk_limit_bytes, \
                     bandwidth_used_bytes, bandwidth_limit_bytes, inodes_used, inodes_limit, \
                     over_quota_since, over_quota_notified_at"
                };
            }
            macro_rules! latest_columns_of_l {
                () => {
                    "l.sample_id AS id, l.service_id, l.taken_at, l.disk_used_bytes, \
                     l.disk_limit_bytes, l.bandwidth_used_bytes, l.bandwidth_limit_bytes, \
                     l.inodes_used, l.inodes_limit, l.over_quota_since, l.over_quota_notified_at"
                };
            }

            #[async_trait]
            impl UsageStore for $store {
                async fn live_accounts_on(
                    &self,
                    server_id: ServerId,
                    after: Option<ServiceId>,
                    limit: i64,
                ) -> StoreResult<Vec<LiveAccount>> {
                    Ok(sqlx::query_as::<_, LiveAccount>(
                        "SELECT id, username FROM services
                         WHERE server_id = $1 AND status IN ('active', 'suspended')
                           AND username IS NOT NULL AND id > $2
                         ORDER BY id LIMIT $3",
                    )
                    .bind(server_id.get())
                    .bind(after.map_or(0, |id| id.get()))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn record_usage(
                    &self,
                    samples: &[NewUsageSample],
                ) -> StoreResult<Vec<RecordedUsage>> {
                    let mut out = Vec::with_capacity(samples.len());
                    if samples.is_empty() {
                        return Ok(out);
                    }
                    let mut tx = self.begin_write().await?;
                    for s in samples {
                        let u = &s.usage;
                        let sample_id: Option<i64> = sqlx::query_scalar(concat!(
                            "INSERT INTO service_usage_samples (service_id, taken_at, ",
                            sample_columns!(),
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                             ON CONFLICT (service_id, taken_at) DO NOTHING
                             RETURNING id"
                        ))
                        .bind(s.service_id.get())
                        .bind(s.taken_at)
                        .bind(u.disk_used.map(bytes_column))
                        .bind(limit_column(u.disk_limit))
                        .bind(u.bandwidth_used.map(bytes_column))
                        .bind(limit_column(u.bandwidth_limit))
                        .bind(u.inodes_used.map(bytes_column))
                        .bind(limit_column(u.inodes_limit))
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| StoreError::on_constraint(e, "no such service"))?;
                        let Some(sample_id) = sample_id else {
                            out.push(RecordedUsage {
                                service_id: s.service_id,
                                stored: false,
                                over_quota_since: None,
                                newly_over_quota: false,
                            });
                            continue;
                        };
                        // An older sample (a slow run finishing after a newer one) stays in the
                        // history only: the WHERE keeps the newer latest and returns no row.
                        let since: Option<Option<i64>> = sqlx::query_scalar(concat!(
                            "INSERT INTO service_usage_latest (service_id, sample_id, taken_at, ",
                            sample_columns!(),
                            ", over_quota_since, over_quota_notified_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                                     CASE WHEN $10 THEN $3 ELSE NULL END, NULL)
                             ON CONFLICT (service_id) DO UPDATE SET
                                 sample_id = excluded.sample_id,
                                 taken_at = excluded.taken_at,
                                 disk_used_bytes = excluded.disk_used_bytes,
                                 disk_limit_bytes = excluded.disk_limit_bytes,
                                 bandwidth_used_bytes = excluded.bandwidth_used_bytes,
                                 bandwidth_limit_bytes = excluded.bandwidth_limit_bytes,
                                 inodes_used = excluded.inodes_used,
                                 inodes_limit = excluded.inodes_limit,
                                 over_quota_since = CASE WHEN $10
                                     THEN COALESCE(service_usage_latest.over_quota_since, excluded.taken_at)
                                     ELSE NULL END,
                                 over_quota_notified_at = CASE WHEN $10
                                     THEN service_usage_latest.over_quota_notified_at
                                     ELSE NULL END
                             WHERE service_usage_latest.taken_at < excluded.taken_at
                             RETURNING over_quota_since"
                        ))
                        .bind(s.service_id.get())
                        .bind(sample_id)
                        .bind(s.taken_at)
                        .bind(u.disk_used.map(bytes_column))
                        .bind(limit_column(u.disk_limit))
                        .bind(u.bandwidth_used.map(bytes_column))
                        .bind(limit_column(u.bandwidth_limit))
                        .bind(u.inodes_used.map(bytes_column))
                        .bind(limit_column(u.inodes_limit))
                        .bind(s.over_quota)
                        .fetch_optional(&mut *tx)
                        .await?;
                        let since = since.flatten();
                        out.push(RecordedUsage {
                            service_id: s.service_id,
                            stored: true,
                            over_quota_since: since,
                            newly_over_quota: s.over_quota && since == Some(s.taken_at),
                        });
                    }
                    tx.commit().await?;
                    Ok(out)
                }

                async fn latest_usage(
                    &self,
                    service_id: ServiceId,
                ) -> StoreResult<Option<LatestUsage>> {
                    Ok(sqlx::query_as::<_, LatestUsage>(concat!(
                        "SELECT ",
                        latest_columns!(),
                        " FROM service_usage_latest WHERE service_id = $1"
                    ))
                    .bind(service_id.get())
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn latest_usage_of(
                    &self,
                    service_ids: &[ServiceId],
                ) -> StoreResult<Vec<LatestUsage>> {
                    if service_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut query = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT ",
                        latest_columns!(),
                        " FROM service_usage_latest WHERE service_id IN ("
                    ));
                    let mut ids = query.separated(", ");
                    for id in service_ids {
                        ids.push_bind(id.get());
                    }
                    query.push(")");
                    Ok(query
                        .build_query_as::<LatestUsage>()
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn usage_history(
                    &self,
                    service_id: ServiceId,
                    page: Page,
                ) -> StoreResult<Vec<UsageSampleRow>> {
                    // (service_id, taken_at) is unique, so the cursor's taken_at orders the
                    // pages exactly.
                    Ok(sqlx::query_as::<_, UsageSampleRow>(concat!(
                        "SELECT id, service_id, taken_at, ",
                        sample_columns!(),
                        " FROM service_usage_samples
                         WHERE service_id = $1
                           AND ($2 IS NULL OR taken_at < (SELECT c.taken_at
                                FROM service_usage_samples c WHERE c.id = $2 AND c.service_id = $1))
                         ORDER BY taken_at DESC LIMIT $3"
                    ))
                    .bind(service_id.get())
                    .bind(page.after_id)
                    .bind(page.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn unnotified_over_quota(
                    &self,
                    after: Option<ServiceId>,
                    limit: i64,
                ) -> StoreResult<Vec<UnnotifiedOverQuota>> {
                    Ok(sqlx::query_as::<_, UnnotifiedOverQuota>(concat!(
                        "SELECT ",
                        latest_columns_of_l!(),
                        ", s.domain, s.username, v.hostname AS server_hostname
                         FROM service_usage_latest l
                         JOIN services s ON s.id = l.service_id
                         LEFT JOIN servers v ON v.id = s.server_id
                         WHERE l.over_quota_since IS NOT NULL AND l.over_quota_notified_at IS NULL
                           AND s.status IN ('active', 'suspended')
                           AND l.service_id > $1
                         ORDER BY l.service_id LIMIT $2"
                    ))
                    .bind(after.map_or(0, |id| id.get()))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn mark_over_quota_notified(
                    &self,
                    service_id: ServiceId,
                    since: i64,
                    now: i64,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE service_usage_latest SET over_quota_notified_at = $3
                         WHERE service_id = $1 AND over_quota_since = $2
                           AND over_quota_notified_at IS NULL",
                    )
                    .bind(service_id.get())
                    .bind(since)
                    .bind(now)
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn prune_usage(&self, before: i64, limit: i64) -> StoreResult<u64> {
                    let done = sqlx::query(
                        "DELETE FROM service_usage_samples WHERE id IN (
                             SELECT id FROM service_usage_samples WHERE taken_at < $1
                             ORDER BY taken_at LIMIT $2)",
                    )
                    .bind(before)
                    .bind(limit)
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}

pub(crate) use impl_usage_store;
