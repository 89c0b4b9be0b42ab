//! Customers' portal accounts: passwords (argon2id PHC strings, linked to the `customers` row
//! billing and the API know), sign-in sessions, one-time email links (address verification and
//! password reset) and the failed sign-ins the portal's rate limit counts. Secrets arrive here
//! already hashed (passwords by argon2id, cookies and link tokens by SHA-256); an email that
//! carries a link is committed to the outbox sealed, in the transaction that issues the link.
//! Every change writes its activity row in the same transaction.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::StoreResult;
use super::activity::instant;
use super::admin_users::LoginFailure;

/// What a one-time link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
        }
    }
}

/// A customer with a portal account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerAccount {
    pub customer_id: i64,
    pub email: String,
    pub name: String,
    /// `active` or `closed`; a closed customer cannot sign in.
    pub status: String,
    /// argon2id, as a PHC string.
    pub password_hash: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
}

/// A signed-in customer's browser.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CustomerSession {
    pub id: i64,
    pub customer_id: i64,
    pub email: String,
    pub name: String,
    pub email_verified_at: Option<i64>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A session to open: the SHA-256 of its cookie (the cookie itself is never stored).
#[derive(Debug, Clone)]
pub struct NewCustomerSession {
    pub customer_id: i64,
    pub token_hash: String,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// A one-time link to issue, and the email that carries it (its context sealed).
#[derive(Debug, Clone)]
pub struct NewLinkEmail {
    pub purpose: TokenPurpose,
    pub token_hash: String,
    pub expires_at: i64,
    /// The outbox's dedupe key: unique per link.
    pub dedupe_key: String,
    pub template: String,
    pub subject: String,
    pub body_sealed: String,
}

/// A sign-up: the new customer, their password and the verification email.
#[derive(Debug, Clone)]
pub struct NewSignUp {
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub verification: NewLinkEmail,
}

/// An account as the log shows it: never the password nor its hash.
pub(crate) fn account_summary(email: &str, verified_at: Option<i64>) -> Value {
    json!({
        "email": email,
        "emailVerifiedAt": verified_at.map_or(Value::Null, instant),
    })
}

#[async_trait]
pub trait CustomerAccountStore: Send + Sync {
    /// The account of the customer with this email (compared without regard to case).
    async fn customer_account_by_email(&self, email: &str) -> StoreResult<Option<CustomerAccount>>;
    async fn customer_account(&self, customer_id: i64) -> StoreResult<Option<CustomerAccount>>;
    /// A new customer with a portal account and its verification link and email, in one
    /// transaction (`Conflict` when a customer with the email exists).
    async fn sign_up_customer(&self, new: &NewSignUp, ip_address: &str) -> StoreResult<i64>;
    /// Issues a one-time link to an existing customer and commits its email.
    async fn issue_customer_link(&self, customer_id: i64, link: &NewLinkEmail) -> StoreResult<()>;
    /// The customer a live (unused, unexpired) link of `purpose` belongs to; spends nothing.
    async fn customer_link_owner(
        &self,
        purpose: TokenPurpose,
        token_hash: &str,
    ) -> StoreResult<Option<i64>>;
    /// Spends a live verification link and marks the address verified. `None`: no such live
    /// link.
    async fn verify_customer_email(&self, token_hash: &str) -> StoreResult<Option<i64>>;
    /// Spends a live reset link and sets the password (making the account when the customer
    /// had none: the link proves the address), marks the address verified and revokes every
    /// session of the customer. `None`: no such live link.
    async fn reset_customer_password(
        &self,
        token_hash: &str,
        password_hash: &str,
    ) -> StoreResult<Option<i64>>;
    /// When the most recent failures of `key` since `since` happened, newest first.
    async fn recent_customer_login_failures(
        &self,
        key: &str,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>>;
    /// Counts a failed portal sign-in against each of its keys, with its activity row.
    async fn record_customer_login_failure(&self, failure: &LoginFailure) -> StoreResult<()>;
    /// Opens a session, forgets the failures counted against `clear_key`, writes the activity
    /// row.
    async fn create_customer_session(
        &self,
        new: &NewCustomerSession,
        clear_key: &str,
    ) -> StoreResult<CustomerSession>;
    /// The live session (not revoked, not expired, its customer active) with this token hash.
    async fn authenticate_customer_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<CustomerSession>>;
    /// Ends a session (sign-out), with its activity row; `false` when it was not live.
    async fn revoke_customer_session(&self, id: i64, customer_id: i64) -> StoreResult<bool>;
    /// Asks for the customer's live, billed service to end when its paid period does: sets
    /// `cancel_at` to the start of the next period, with its activity row. `None`: no such
    /// service of this customer that can be cancelled (not active or suspended, not billed,
    /// or cancelled already).
    async fn request_service_cancellation(
        &self,
        customer_id: i64,
        service_id: i64,
    ) -> StoreResult<Option<i64>>;
    /// When the service ends by its customer's cancellation, if it does.
    async fn service_cancel_at(&self, service_id: i64) -> StoreResult<Option<i64>>;
    /// Live services whose cancellation date has come (`cancel_at <= now`) and that have no
    /// open task, oldest first.
    async fn services_due_for_cancellation(&self, now: i64, limit: i64) -> StoreResult<Vec<i64>>;
    /// Records that a customer was shown a service's credentials (after re-entering their
    /// password).
    async fn record_credentials_revealed(
        &self,
        customer_id: i64,
        service_id: i64,
        ip_address: &str,
    ) -> StoreResult<()>;
}

macro_rules! impl_customer_account_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::store::admin_users::LoginFailure;
            use $crate::store::customer_accounts::{
                CustomerAccount, CustomerAccountStore, CustomerSession, NewCustomerSession,
                NewLinkEmail, NewSignUp, TokenPurpose, account_summary,
            };
            use $crate::store::{Change, Customer, StoreError, StoreResult, now_ms};

            type Tx = sqlx::Transaction<'static, $db>;

            macro_rules! account_select {
                () => {
                    "SELECT a.customer_id, c.email, c.name, c.status, a.password_hash,
                            a.email_verified_at, a.created_at
                     FROM customer_accounts a JOIN customers c ON c.id = a.customer_id"
                };
            }

            async fn insert_link(tx: &mut Tx, customer_id: i64, link: &NewLinkEmail, to: &str, now: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO customer_tokens (customer_id, purpose, token_hash, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(customer_id)
                .bind(link.purpose.as_str())
                .bind(&link.token_hash)
                .bind(now)
                .bind(link.expires_at)
                .execute(&mut **tx)
                .await
                .map_err(|e| StoreError::on_constraint(e, "link already issued"))?;
                sqlx::query(
                    "INSERT INTO email_outbox (dedupe_key, to_address, template, subject,
                         body_encrypted, status, attempts, next_attempt_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6)",
                )
                .bind(&link.dedupe_key)
                .bind(to)
                .bind(&link.template)
                .bind(&link.subject)
                .bind(&link.body_sealed)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(|e| StoreError::on_constraint(e, "email already queued"))?;
                Ok(())
            }

            /// Spends the live link of `purpose` with this hash; its customer, if there was one.
            async fn spend_link(tx: &mut Tx, purpose: TokenPurpose, token_hash: &str, now: i64) -> StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "UPDATE customer_tokens SET used_at = $3
                     WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3
                     RETURNING customer_id",
                )
                .bind(token_hash)
                .bind(purpose.as_str())
                .bind(now)
                .fetch_optional(&mut **tx)
                .await?)
            }

            async fn verified_at(tx: &mut Tx, customer_id: i64) -> StoreResult<Option<Option<i64>>> {
                Ok(sqlx::query_scalar("SELECT email_verified_at FROM customer_accounts WHERE customer_id = $1")
                    .bind(customer_id)
                    .fetch_optional(&mut **tx)
                    .await?)
            }

            async fn email_of(tx: &mut Tx, customer_id: i64) -> StoreResult<String> {
                sqlx::query_scalar("SELECT email FROM customers WHERE id = $1")
                    .bind(customer_id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("customer", customer_id))
            }

            #[async_trait]
            impl CustomerAccountStore for $store {
                async fn customer_account_by_email(&self, email: &str) -> StoreResult<Option<CustomerAccount>> {
                    Ok(sqlx::query_as::<_, CustomerAccount>(concat!(account_select!(), " WHERE lower(c.email) = lower($1)"))
                        .bind(email)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn customer_account(&self, customer_id: i64) -> StoreResult<Option<CustomerAccount>> {
                    Ok(sqlx::query_as::<_, CustomerAccount>(concat!(account_select!(), " WHERE a.customer_id = $1"))
                        .bind(customer_id)
                        .fetch_optional(&self.pool)
                        .await?)
                }

                async fn sign_up_customer(&self, new: &NewSignUp, ip_address: &str) -> StoreResult<i64> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM customers WHERE lower(email) = lower($1)")
                        .bind(&new.email)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if taken.is_some() {
                        return Err(StoreError::Conflict("a customer with this email already exists".into()));
                    }
                    let customer = sqlx::query_as::<_, Customer>(
                        "INSERT INTO customers (email, name, status, created_at, updated_at)
                         VALUES ($1, $2, 'active', $3, $3) RETURNING *",
                    )
                    .bind(&new.email)
                    .bind(&new.name)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "a customer with this email already exists"))?;
                    let id = customer.id.get();
                    <$store>::record_activity(&mut tx, "web", "customer.created", "customer", id,
                        serde_json::json!({}), Change::created($crate::store::activity::customer_summary(&customer)))
                        .await?;
                    sqlx::query(
                        "INSERT INTO customer_accounts (customer_id, password_hash, created_at, updated_at)
                         VALUES ($1, $2, $3, $3)",
                    )
                    .bind(id)
                    .bind(&new.password_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    insert_link(&mut tx, id, &new.verification, &new.email, now).await?;
                    <$store>::record_activity(&mut tx, &format!("customer:{id}"), "customer.signed_up", "customer", id,
                        serde_json::json!({ "ipAddress": ip_address, "verificationSent": true }),
                        Change::created(account_summary(&new.email, None)))
                        .await?;
                    tx.commit().await?;
                    Ok(id)
                }

                async fn issue_customer_link(&self, customer_id: i64, link: &NewLinkEmail) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let email = email_of(&mut tx, customer_id).await?;
                    insert_link(&mut tx, customer_id, link, &email, now).await?;
                    let action = match link.purpose {
                        TokenPurpose::VerifyEmail => "customer.verification_sent",
                        TokenPurpose::ResetPassword => "customer.password_reset_requested",
                    };
                    <$store>::record_activity(&mut tx, "web", action, "customer", customer_id,
                        serde_json::json!({ "expiresAt": $crate::store::activity::instant(link.expires_at) }),
                        Change::none())
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn customer_link_owner(&self, purpose: TokenPurpose, token_hash: &str) -> StoreResult<Option<i64>> {
                    Ok(sqlx::query_scalar(
                        "SELECT t.customer_id FROM customer_tokens t JOIN customers c ON c.id = t.customer_id
                         WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3
                           AND c.status = 'active'",
                    )
                    .bind(token_hash)
                    .bind(purpose.as_str())
                    .bind(now_ms())
                    .fetch_optional(self.writer())
                    .await?)
                }

                async fn verify_customer_email(&self, token_hash: &str) -> StoreResult<Option<i64>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some(id) = spend_link(&mut tx, TokenPurpose::VerifyEmail, token_hash, now).await? else {
                        return Ok(None);
                    };
                    let email = email_of(&mut tx, id).await?;
                    let before = verified_at(&mut tx, id).await?.flatten();
                    if before.is_none() {
                        sqlx::query("UPDATE customer_accounts SET email_verified_at = $2, updated_at = $2 WHERE customer_id = $1")
                            .bind(id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let after = before.or(Some(now));
                    <$store>::record_activity(&mut tx, &format!("customer:{id}"), "customer.email_verified", "customer", id,
                        serde_json::json!({}),
                        Change::between(account_summary(&email, before), account_summary(&email, after)))
                        .await?;
                    tx.commit().await?;
                    Ok(Some(id))
                }

                async fn reset_customer_password(&self, token_hash: &str, password_hash: &str) -> StoreResult<Option<i64>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let Some(id) = spend_link(&mut tx, TokenPurpose::ResetPassword, token_hash, now).await? else {
                        return Ok(None);
                    };
                    let email = email_of(&mut tx, id).await?;
                    let existing = verified_at(&mut tx, id).await?;
                    match existing {
                        Some(_) => {
                            sqlx::query(
                                "UPDATE customer_accounts
                                 SET password_hash = $2, email_verified_at = COALESCE(email_verified_at, $3), updated_at = $3
                                 WHERE customer_id = $1",
                            )
                            .bind(id)
                            .bind(password_hash)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                        None => {
                            sqlx::query(
                                "INSERT INTO customer_accounts (customer_id, password_hash, email_verified_at, created_at, updated_at)
                                 VALUES ($1, $2, $3, $3, $3)",
                            )
                            .bind(id)
                            .bind(password_hash)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    let revoked = sqlx::query(
                        "UPDATE customer_sessions SET revoked_at = $2 WHERE customer_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    // Links issued before this one are spent too: the password they would reset
                    // is gone.
                    sqlx::query("UPDATE customer_tokens SET used_at = $2 WHERE customer_id = $1 AND purpose = 'reset_password' AND used_at IS NULL")
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let before = existing.flatten();
                    let change = match existing {
                        Some(_) => Change::updated(
                            serde_json::json!({ "password": "(previous)", "emailVerifiedAt": before.map_or(serde_json::Value::Null, $crate::store::activity::instant) }),
                            serde_json::json!({ "password": "(changed)", "emailVerifiedAt": $crate::store::activity::instant(before.unwrap_or(now)) }),
                        ),
                        None => Change::created(account_summary(&email, Some(now))),
                    };
                    <$store>::record_activity(&mut tx, &format!("customer:{id}"), "customer.password_reset", "customer", id,
                        serde_json::json!({ "sessionsRevoked": revoked }), change)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(id))
                }

                async fn recent_customer_login_failures(&self, key: &str, since: i64, limit: i64) -> StoreResult<Vec<i64>> {
                    let rows: Vec<(i64,)> = sqlx::query_as(
                        "SELECT failed_at FROM customer_login_failures
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

                async fn record_customer_login_failure(&self, failure: &LoginFailure) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    for key in &failure.keys {
                        sqlx::query("DELETE FROM customer_login_failures WHERE limit_key = $1 AND failed_at <= $2")
                            .bind(key)
                            .bind(failure.forget_before)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("INSERT INTO customer_login_failures (limit_key, failed_at) VALUES ($1, $2)")
                            .bind(key)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    <$store>::record_activity(&mut tx, "web", "customer.sign_in_failed", "customer", failure.user_id,
                        serde_json::json!({ "email": failure.email, "ipAddress": failure.ip_address }),
                        Change::none())
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn create_customer_session(&self, new: &NewCustomerSession, clear_key: &str) -> StoreResult<CustomerSession> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO customer_sessions
                             (customer_id, token_hash, created_at, last_seen_at, expires_at, user_agent, ip_address)
                         VALUES ($1, $2, $3, $3, $4, $5, $6) RETURNING id",
                    )
                    .bind(new.customer_id)
                    .bind(&new.token_hash)
                    .bind(now)
                    .bind(new.expires_at)
                    .bind(new.user_agent.as_deref())
                    .bind(new.ip_address.as_deref())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "session already exists"))?;
                    sqlx::query("DELETE FROM customer_login_failures WHERE limit_key = $1")
                        .bind(clear_key)
                        .execute(&mut *tx)
                        .await?;
                    let session = sqlx::query_as::<_, CustomerSession>(
                        "SELECT s.id, s.customer_id, c.email, c.name, a.email_verified_at, s.created_at,
                                s.last_seen_at, s.expires_at
                         FROM customer_sessions s JOIN customers c ON c.id = s.customer_id
                         LEFT JOIN customer_accounts a ON a.customer_id = s.customer_id
                         WHERE s.id = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    <$store>::record_activity(&mut tx, &format!("customer:{}", new.customer_id), "customer.signed_in",
                        "customer_session", id,
                        serde_json::json!({ "ipAddress": new.ip_address, "userAgent": new.user_agent }),
                        Change::created(serde_json::json!({
                            "customerId": new.customer_id,
                            "expiresAt": $crate::store::activity::instant(new.expires_at),
                        })))
                        .await?;
                    tx.commit().await?;
                    Ok(session)
                }

                async fn authenticate_customer_session(&self, token_hash: &str) -> StoreResult<Option<CustomerSession>> {
                    let now = now_ms();
                    let Some(session) = sqlx::query_as::<_, CustomerSession>(
                        "SELECT s.id, s.customer_id, c.email, c.name, a.email_verified_at, s.created_at,
                                s.last_seen_at, s.expires_at
                         FROM customer_sessions s JOIN customers c ON c.id = s.customer_id
                         JOIN customer_accounts a ON a.customer_id = s.customer_id
                         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2
                           AND c.status = 'active'",
                    )
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(self.writer())
                    .await?
                    else {
                        return Ok(None);
                    };
                    // A minute's precision keeps most page views from writing.
                    if now - session.last_seen_at > 60_000 {
                        sqlx::query("UPDATE customer_sessions SET last_seen_at = $2 WHERE id = $1")
                            .bind(session.id)
                            .bind(now)
                            .execute(self.writer())
                            .await?;
                    }
                    Ok(Some(session))
                }

                async fn revoke_customer_session(&self, id: i64, customer_id: i64) -> StoreResult<bool> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let updated = sqlx::query(
                        "UPDATE customer_sessions SET revoked_at = $3
                         WHERE id = $1 AND customer_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(customer_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        return Ok(false);
                    }
                    <$store>::record_activity(&mut tx, &format!("customer:{customer_id}"), "customer.signed_out",
                        "customer_session", id, serde_json::json!({}),
                        Change::updated(serde_json::json!({ "revokedAt": null }),
                            serde_json::json!({ "revokedAt": $crate::store::activity::instant(now) })))
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn request_service_cancellation(&self, customer_id: i64, service_id: i64) -> StoreResult<Option<i64>> {
                    let mut tx = self.begin_write().await?;
                    let cancel_at: Option<i64> = sqlx::query_scalar(
                        "UPDATE services SET cancel_at = next_due_at, updated_at = $3
                         WHERE id = $1 AND customer_id = $2 AND status IN ('active', 'suspended')
                           AND next_due_at IS NOT NULL AND cancel_at IS NULL
                         RETURNING cancel_at",
                    )
                    .bind(service_id)
                    .bind(customer_id)
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
                    let Some(at) = cancel_at else {
                        return Ok(None);
                    };
                    <$store>::record_activity(&mut tx, &format!("customer:{customer_id}"), "service.cancellation_requested",
                        "service", service_id, serde_json::json!({}),
                        Change::updated(serde_json::json!({ "cancelAt": null }),
                            serde_json::json!({ "cancelAt": $crate::store::activity::instant(at) })))
                        .await?;
                    tx.commit().await?;
                    Ok(Some(at))
                }

                async fn service_cancel_at(&self, service_id: i64) -> StoreResult<Option<i64>> {
                    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT cancel_at FROM services WHERE id = $1")
                        .bind(service_id)
                        .fetch_optional(&self.pool)
                        .await?
                        .flatten())
                }

                async fn services_due_for_cancellation(&self, now: i64, limit: i64) -> StoreResult<Vec<i64>> {
                    Ok(sqlx::query_scalar(
                        "SELECT s.id FROM services s
                         WHERE s.status IN ('active', 'suspended') AND s.cancel_at IS NOT NULL AND s.cancel_at <= $1
                           AND NOT EXISTS (SELECT 1 FROM provisioning_tasks t
                                           WHERE t.service_id = s.id AND t.status IN ('pending', 'processing'))
                         ORDER BY s.cancel_at, s.id LIMIT $2",
                    )
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn record_credentials_revealed(&self, customer_id: i64, service_id: i64, ip_address: &str) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    <$store>::record_activity(&mut tx, &format!("customer:{customer_id}"), "service.credentials_revealed",
                        "service", service_id, serde_json::json!({ "ipAddress": ip_address }), Change::none())
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_customer_account_store;
