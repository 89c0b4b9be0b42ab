//! Admin API tokens, stored by hash: creating, authenticating and revoking them.

use async_trait::async_trait;

use super::{AdminToken, StoreResult};

#[async_trait]
pub trait AdminTokenStore: Send + Sync {
    async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken>;
    /// Finds a live (not revoked) token by hash and records its use.
    async fn authenticate_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>>;
    async fn revoke_admin_token(&self, id: i64) -> StoreResult<()>;
}

macro_rules! impl_admin_token_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::{AdminToken, AdminTokenStore, StoreError, StoreResult, now_ms};

            #[async_trait]
            impl AdminTokenStore for $store {
                async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken> {
                    let mut tx = self.begin_write().await?;
                    let token = sqlx::query_as::<_, AdminToken>(
                        "INSERT INTO admin_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)
                         RETURNING id, name, created_at, last_used_at, revoked_at",
                    )
                    .bind(name)
                    .bind(token_hash)
                    .bind(now_ms())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "token already exists"))?;
                    <$store>::record_activity(&mut tx, "cli", "admin_token.created", "admin_token", token.id, serde_json::json!({ "name": name }))
                        .await?;
                    tx.commit().await?;
                    Ok(token)
                }

                async fn authenticate_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>> {
                    let Some(token) = sqlx::query_as::<_, AdminToken>(
                        "SELECT id, name, created_at, last_used_at, revoked_at FROM admin_tokens
                         WHERE token_hash = $1 AND revoked_at IS NULL",
                    )
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?
                    else {
                        return Ok(None);
                    };
                    // Recording every use would make each API call a write; a minute's precision
                    // is enough to see which tokens are alive.
                    let now = now_ms();
                    if token.last_used_at.is_none_or(|t| now - t > 60_000) {
                        sqlx::query("UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1")
                            .bind(token.id)
                            .bind(now)
                            .execute(self.writer())
                            .await?;
                    }
                    Ok(Some(token))
                }

                async fn revoke_admin_token(&self, id: i64) -> StoreResult<()> {
                    let updated = sqlx::query(
                        "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(now_ms())
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        return Err(StoreError::not_found("admin token", id));
                    }
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_admin_token_store;
