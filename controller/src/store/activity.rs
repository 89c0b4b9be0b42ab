//! The activity log: who changed what. Every change writes its row in its own transaction
//! through `record_activity`, which this module gives each backend.

use async_trait::async_trait;

use super::{ActivityEntry, ActivityFilter, StoreResult};

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

macro_rules! impl_activity_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::types::Json;
            use $crate::store::{ActivityEntry, ActivityFilter, ActivityStore, StoreResult, now_ms};

            impl $store {
                /// Writes one activity row inside the caller's transaction, so a change and its
                /// row commit together or not at all.
                pub(crate) async fn record_activity(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    actor: &str,
                    action: &str,
                    entity_type: &str,
                    entity_id: i64,
                    details: serde_json::Value,
                ) -> StoreResult<()> {
                    sqlx::query(
                        "INSERT INTO activity_log (actor, action, entity_type, entity_id, details, created_at, request_id)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(actor)
                    .bind(action)
                    .bind(entity_type)
                    .bind(entity_id)
                    .bind(Json(details))
                    .bind(now_ms())
                    .bind($crate::request_id::current())
                    .execute(&mut **tx)
                    .await?;
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
