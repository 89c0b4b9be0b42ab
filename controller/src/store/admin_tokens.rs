//! Admin API tokens, stored by hash: creating, authenticating, listing and revoking them.

use async_trait::async_trait;

use super::{AdminToken, NewAdminToken, StoreResult};

#[async_trait]
pub trait AdminTokenStore: Send + Sync {
    /// A token with every scope and no expiry (`mpanel-controller token create --admin`).
    async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken>;
    /// A token as an admin asked for it through the API, with its activity row.
    async fn create_scoped_admin_token(
        &self,
        new: &NewAdminToken,
        actor: &str,
    ) -> StoreResult<AdminToken>;
    /// Finds a live (not revoked, not expired) token by hash and records its use.
    async fn authenticate_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>>;
    /// Every token, revoked and expired ones too, newest first.
    async fn list_admin_tokens(&self) -> StoreResult<Vec<AdminToken>>;
    async fn get_admin_token(&self, id: i64) -> StoreResult<AdminToken>;
    /// Revokes a live token (`NotFound` when there is none by that id, or it is revoked).
    async fn revoke_admin_token(&self, id: i64) -> StoreResult<()>;
    /// Revokes a token as an admin asked, with its activity row in the same transaction.
    async fn revoke_admin_token_as(&self, id: i64, actor: &str) -> StoreResult<AdminToken>;
}

macro_rules! impl_admin_token_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::{AdminToken, AdminTokenStore, Change, NewAdminToken, StoreError, StoreResult, now_ms};
            use $crate::store::activity::token_summary;

            /// A live token revoked: only `revokedAt` changed.
            fn revocation(revoked: &AdminToken) -> Change {
                let live = AdminToken { revoked_at: None, ..revoked.clone() };
                Change::between(token_summary(&live), token_summary(revoked))
            }

            macro_rules! token_columns {
                () => {
                    "id, name, created_at, last_used_at, revoked_at, scopes, expires_at"
                };
            }

            #[async_trait]
            impl AdminTokenStore for $store {
                async fn create_admin_token(&self, name: &str, token_hash: &str) -> StoreResult<AdminToken> {
                    let mut tx = self.begin_write().await?;
                    let token = sqlx::query_as::<_, AdminToken>(
                        concat!("INSERT INTO admin_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)
                         RETURNING ", token_columns!()),
                    )
                    .bind(name)
                    .bind(token_hash)
                    .bind(now_ms())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "token already exists"))?;
                    <$store>::record_activity(&mut tx, "cli", "admin_token.created", "admin_token", token.id, serde_json::json!({ "name": name }),
                        Change::created(token_summary(&token)))
                        .await?;
                    tx.commit().await?;
                    Ok(token)
                }

                async fn authenticate_admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>> {
                    let now = now_ms();
                    let Some(token) = sqlx::query_as::<_, AdminToken>(concat!(
                        "SELECT ", token_columns!(), " FROM admin_tokens
                         WHERE token_hash = $1 AND revoked_at IS NULL
                           AND (expires_at IS NULL OR expires_at > $2)",
                    ))
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?
                    else {
                        return Ok(None);
                    };
                    // Recording every use would make each API call a write; a minute's precision
                    // is enough to see which tokens are alive.
                    if token.last_used_at.is_none_or(|t| now - t > 60_000) {
                        sqlx::query("UPDATE admin_tokens SET last_used_at = $2 WHERE id = $1")
                            .bind(token.id)
                            .bind(now)
                            .execute(self.writer())
                            .await?;
                    }
                    Ok(Some(token))
                }

                async fn create_scoped_admin_token(&self, new: &NewAdminToken, actor: &str) -> StoreResult<AdminToken> {
                    let mut tx = self.begin_write().await?;
                    let token = sqlx::query_as::<_, AdminToken>(concat!(
                        "INSERT INTO admin_tokens (name, token_hash, created_at, scopes, expires_at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING ", token_columns!()
                    ))
                    .bind(&new.name)
                    .bind(&new.token_hash)
                    .bind(now_ms())
                    .bind(&new.scopes)
                    .bind(new.expires_at)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "token already exists"))?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "admin_token.created",
                        "admin_token",
                        token.id,
                        serde_json::json!({ "name": new.name, "scopes": new.scopes, "expiresAt": new.expires_at }),
                        Change::created(token_summary(&token)),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(token)
                }

                async fn list_admin_tokens(&self) -> StoreResult<Vec<AdminToken>> {
                    Ok(sqlx::query_as::<_, AdminToken>(concat!(
                        "SELECT ", token_columns!(), " FROM admin_tokens ORDER BY id DESC"
                    ))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn get_admin_token(&self, id: i64) -> StoreResult<AdminToken> {
                    sqlx::query_as::<_, AdminToken>(concat!(
                        "SELECT ", token_columns!(), " FROM admin_tokens WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::not_found("admin token", id))
                }

                async fn revoke_admin_token_as(&self, id: i64, actor: &str) -> StoreResult<AdminToken> {
                    let mut tx = self.begin_write().await?;
                    let token = sqlx::query_as::<_, AdminToken>(concat!(
                        "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
                         RETURNING ", token_columns!()
                    ))
                    .bind(id)
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("live admin token", id))?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "admin_token.revoked",
                        "admin_token",
                        id,
                        serde_json::json!({ "name": token.name }),
                        revocation(&token),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(token)
                }

                async fn revoke_admin_token(&self, id: i64) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let token = sqlx::query_as::<_, AdminToken>(concat!(
                        "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
                         RETURNING ", token_columns!()
                    ))
                    .bind(id)
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("admin token", id))?;
                    <$store>::record_activity(
                        &mut tx,
                        "cli",
                        "admin_token.revoked",
                        "admin_token",
                        id,
                        serde_json::json!({ "name": token.name }),
                        revocation(&token),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_admin_token_store;
