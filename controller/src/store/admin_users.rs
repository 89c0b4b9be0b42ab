//! Admin users of the web dashboard, their sign-in sessions and the failed sign-ins the login
//! rate limit counts. Passwords arrive here already hashed (argon2id PHC strings) and session
//! tokens as their SHA-256: this module never sees a secret. Every sign-in, failed sign-in and
//! sign-out writes its activity row in the transaction that makes the change.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::StoreResult;
use super::activity::instant;

/// An admin who signs in to the dashboard.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminUser {
    pub id: i64,
    pub email: String,
    /// argon2id, as a PHC string.
    pub password_hash: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A signed-in browser, with its admin's email.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminSession {
    pub id: i64,
    pub user_id: i64,
    pub email: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// A session to open: the SHA-256 of its cookie (the cookie itself is never stored).
#[derive(Debug, Clone)]
pub struct NewAdminSession {
    pub user_id: i64,
    pub token_hash: String,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// A failed sign-in: the rate limit's keys it counts against and what the log shows of it.
#[derive(Debug, Clone)]
pub struct LoginFailure {
    /// `email:<lower-case email>` and `ip:<address>`.
    pub keys: Vec<String>,
    /// The admin the email named, when one exists (the answer to the browser does not say).
    pub user_id: Option<i64>,
    pub email: String,
    pub ip_address: String,
    /// Failures older than this are deleted for these keys: the window has passed them.
    pub forget_before: i64,
}

/// Unix milliseconds as RFC 3339 (UTC), for pages and the CLI.
pub fn shown_time(ms: i64) -> String {
    instant(ms).as_str().unwrap_or_default().to_owned()
}

/// An admin user as the log shows it: never the password nor its hash.
pub fn admin_user_summary(u: &AdminUser) -> Value {
    json!({
        "email": u.email,
        "disabledAt": u.disabled_at.map_or(Value::Null, instant),
    })
}

/// A session as the log shows it: never its token nor its hash.
pub fn admin_session_summary(s: &AdminSession) -> Value {
    json!({
        "userId": s.user_id,
        "email": s.email,
        "expiresAt": instant(s.expires_at),
        "revokedAt": s.revoked_at.map_or(Value::Null, instant),
        "userAgent": s.user_agent,
        "ipAddress": s.ip_address,
    })
}

#[async_trait]
pub trait AdminUserStore: Send + Sync {
    /// A new admin (`Conflict` when the email exists in any case), with its activity row.
    async fn create_admin_user(
        &self,
        email: &str,
        password_hash: &str,
        actor: &str,
    ) -> StoreResult<AdminUser>;
    /// The admin with this email, compared without regard to case.
    async fn find_admin_user_by_email(&self, email: &str) -> StoreResult<Option<AdminUser>>;
    /// Every admin, oldest first.
    async fn list_admin_users(&self) -> StoreResult<Vec<AdminUser>>;
    /// Disables a live admin and revokes its sessions (`NotFound` when there is no live admin
    /// with that email).
    async fn disable_admin_user(&self, email: &str, actor: &str) -> StoreResult<AdminUser>;
    /// When the most recent failures of `key` since `since` happened, newest first, at most
    /// `limit` of them.
    async fn recent_login_failures(
        &self,
        key: &str,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>>;
    /// Counts a failed sign-in against each of its keys, with its activity row.
    async fn record_login_failure(&self, failure: &LoginFailure) -> StoreResult<()>;
    /// Opens a session after a sign-in, forgets the failures counted against `clear_key` (the
    /// admin's email) and writes the activity row.
    async fn create_admin_session(
        &self,
        new: &NewAdminSession,
        clear_key: &str,
    ) -> StoreResult<AdminSession>;
    /// The live session (not revoked, not expired, its admin not disabled) with this token
    /// hash; records that it was seen.
    async fn authenticate_admin_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<AdminSession>>;
    /// Every session, newest first.
    async fn list_admin_sessions(&self) -> StoreResult<Vec<AdminSession>>;
    async fn get_admin_session(&self, id: i64) -> StoreResult<AdminSession>;
    /// Revokes a live session with its activity row (`action`: `admin.signed_out` when its
    /// admin signs out, `admin_session.revoked` when another revokes it). `NotFound` when no
    /// live session has that id.
    async fn revoke_admin_session(
        &self,
        id: i64,
        actor: &str,
        action: &str,
    ) -> StoreResult<AdminSession>;
}

macro_rules! impl_admin_user_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::{Change, StoreError, StoreResult, now_ms};
            use $crate::store::admin_users::{
                AdminSession, AdminUser, AdminUserStore, LoginFailure, NewAdminSession,
                admin_session_summary, admin_user_summary,
            };

            macro_rules! user_columns {
                () => {
                    "id, email, password_hash, created_at, disabled_at"
                };
            }

            macro_rules! session_select {
                () => {
                    "SELECT s.id, s.user_id, u.email, s.created_at, s.last_seen_at, s.expires_at,
                            s.revoked_at, s.user_agent, s.ip_address
                     FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id"
                };
            }

            impl $store {
                async fn session_in(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    id: i64,
                ) -> StoreResult<AdminSession> {
                    sqlx::query_as::<_, AdminSession>(concat!(session_select!(), " WHERE s.id = $1"))
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?
                        .ok_or_else(|| StoreError::not_found("admin session", id))
                }
            }

            #[async_trait]
            impl AdminUserStore for $store {
                async fn create_admin_user(&self, email: &str, password_hash: &str, actor: &str) -> StoreResult<AdminUser> {
                    let mut tx = self.begin_write().await?;
                    let user = sqlx::query_as::<_, AdminUser>(concat!(
                        "INSERT INTO admin_users (email, password_hash, created_at) VALUES ($1, $2, $3)
                         RETURNING ", user_columns!()
                    ))
                    .bind(email)
                    .bind(password_hash)
                    .bind(now_ms())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "an admin with this email already exists"))?;
                    <$store>::record_activity(&mut tx, actor, "admin_user.created", "admin_user", user.id,
                        serde_json::json!({}), Change::created(admin_user_summary(&user)))
                        .await?;
                    tx.commit().await?;
                    Ok(user)
                }

                async fn find_admin_user_by_email(&self, email: &str) -> StoreResult<Option<AdminUser>> {
                    Ok(sqlx::query_as::<_, AdminUser>(concat!(
                        "SELECT ", user_columns!(), " FROM admin_users WHERE lower(email) = lower($1)"
                    ))
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn list_admin_users(&self) -> StoreResult<Vec<AdminUser>> {
                    Ok(sqlx::query_as::<_, AdminUser>(concat!(
                        "SELECT ", user_columns!(), " FROM admin_users ORDER BY id"
                    ))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn disable_admin_user(&self, email: &str, actor: &str) -> StoreResult<AdminUser> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let user = sqlx::query_as::<_, AdminUser>(concat!(
                        "UPDATE admin_users SET disabled_at = $2
                         WHERE lower(email) = lower($1) AND disabled_at IS NULL
                         RETURNING ", user_columns!()
                    ))
                    .bind(email)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("enabled admin", email))?;
                    let revoked = sqlx::query(
                        "UPDATE admin_sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(user.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    let live = AdminUser { disabled_at: None, ..user.clone() };
                    <$store>::record_activity(&mut tx, actor, "admin_user.disabled", "admin_user", user.id,
                        serde_json::json!({ "sessionsRevoked": revoked }),
                        Change::between(admin_user_summary(&live), admin_user_summary(&user)))
                        .await?;
                    tx.commit().await?;
                    Ok(user)
                }

                async fn recent_login_failures(&self, key: &str, since: i64, limit: i64) -> StoreResult<Vec<i64>> {
                    let rows: Vec<(i64,)> = sqlx::query_as(
                        "SELECT failed_at FROM admin_login_failures
                         WHERE limit_key = $1 AND failed_at > $2
                         ORDER BY failed_at DESC LIMIT $3",
                    )
                    .bind(key)
                    .bind(since)
                    .bind(limit)
                    .fetch_all(self.writer())
                    .await?;
                    Ok(rows.into_iter().map(|(t,)| t).collect())
                }

                async fn record_login_failure(&self, failure: &LoginFailure) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    for key in &failure.keys {
                        sqlx::query("DELETE FROM admin_login_failures WHERE limit_key = $1 AND failed_at <= $2")
                            .bind(key)
                            .bind(failure.forget_before)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("INSERT INTO admin_login_failures (limit_key, failed_at) VALUES ($1, $2)")
                            .bind(key)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    <$store>::record_activity(&mut tx, "web", "admin.sign_in_failed", "admin_user", failure.user_id,
                        serde_json::json!({ "email": failure.email, "ipAddress": failure.ip_address }),
                        Change::none())
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn create_admin_session(&self, new: &NewAdminSession, clear_key: &str) -> StoreResult<AdminSession> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO admin_sessions
                             (user_id, token_hash, created_at, last_seen_at, expires_at, user_agent, ip_address)
                         VALUES ($1, $2, $3, $3, $4, $5, $6) RETURNING id",
                    )
                    .bind(new.user_id)
                    .bind(&new.token_hash)
                    .bind(now)
                    .bind(new.expires_at)
                    .bind(new.user_agent.as_deref())
                    .bind(new.ip_address.as_deref())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "session already exists"))?;
                    sqlx::query("DELETE FROM admin_login_failures WHERE limit_key = $1")
                        .bind(clear_key)
                        .execute(&mut *tx)
                        .await?;
                    let session = <$store>::session_in(&mut tx, id).await?;
                    <$store>::record_activity(&mut tx, &format!("admin_user:{}", new.user_id), "admin.signed_in",
                        "admin_session", id, serde_json::json!({}), Change::created(admin_session_summary(&session)))
                        .await?;
                    tx.commit().await?;
                    Ok(session)
                }

                async fn authenticate_admin_session(&self, token_hash: &str) -> StoreResult<Option<AdminSession>> {
                    let now = now_ms();
                    let Some(session) = sqlx::query_as::<_, AdminSession>(concat!(
                        session_select!(),
                        " WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2
                           AND u.disabled_at IS NULL"
                    ))
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(self.writer())
                    .await?
                    else {
                        return Ok(None);
                    };
                    // A minute's precision is enough to tell live sessions apart, and keeps
                    // most page views from writing.
                    if now - session.last_seen_at > 60_000 {
                        sqlx::query("UPDATE admin_sessions SET last_seen_at = $2 WHERE id = $1")
                            .bind(session.id)
                            .bind(now)
                            .execute(self.writer())
                            .await?;
                    }
                    Ok(Some(session))
                }

                async fn list_admin_sessions(&self) -> StoreResult<Vec<AdminSession>> {
                    Ok(sqlx::query_as::<_, AdminSession>(concat!(session_select!(), " ORDER BY s.id DESC"))
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn get_admin_session(&self, id: i64) -> StoreResult<AdminSession> {
                    sqlx::query_as::<_, AdminSession>(concat!(session_select!(), " WHERE s.id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::not_found("admin session", id))
                }

                async fn revoke_admin_session(&self, id: i64, actor: &str, action: &str) -> StoreResult<AdminSession> {
                    let mut tx = self.begin_write().await?;
                    let updated = sqlx::query(
                        "UPDATE admin_sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        return Err(StoreError::not_found("live admin session", id));
                    }
                    let session = <$store>::session_in(&mut tx, id).await?;
                    let live = AdminSession { revoked_at: None, ..session.clone() };
                    <$store>::record_activity(&mut tx, actor, action, "admin_session", id,
                        serde_json::json!({ "email": session.email }),
                        Change::between(admin_session_summary(&live), admin_session_summary(&session)))
                        .await?;
                    tx.commit().await?;
                    Ok(session)
                }
            }
        };
    };
}

pub(crate) use impl_admin_user_store;
