//! Rows and SQL of the agent fleet: the built-in CA, enrollment tokens, issued agent certificates
//! and each agent's last known state. `impl_agent_store!` instantiates them for both backends,
//! like every store module.

use mpanel_common::ids::ServerId;
use sqlx::types::Json;

/// The controller's CA as stored: the key stays sealed until `fleet::ca` opens it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaRecord {
    pub id: i64,
    pub cert_pem: String,
    pub key_encrypted: String,
    pub fingerprint: String,
    pub not_after: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewCa {
    pub cert_pem: String,
    pub key_encrypted: String,
    pub fingerprint: String,
    pub not_after: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentToken {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub server_id: ServerId,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub created_at: i64,
}

/// A certificate the CA signed for an agent; the serial is lower-case hex.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub server_id: ServerId,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// An agent as `GET /api/agents` and the liveness tracker see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    #[sqlx(try_from = "i64")]
    pub server_id: ServerId,
    pub status: String,
    pub enrolled_at: i64,
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<i64>,
    pub revoked_at: Option<i64>,
    pub agent_version: String,
    pub panel_kind: String,
    pub capabilities: Json<Vec<String>>,
    pub last_heartbeat_at: Option<i64>,
    pub last_load: Option<Json<serde_json::Value>>,
    pub updated_at: i64,
}

/// What the agent said in its `Hello`.
#[derive(Debug, Clone)]
pub struct AgentHello {
    pub agent_version: String,
    pub panel_kind: String,
    pub capabilities: Vec<String>,
}

/// One agent's latest liveness, written in batches by the heartbeat flusher.
#[derive(Debug, Clone)]
pub struct AgentLiveness {
    pub server_id: ServerId,
    pub status: String,
    pub last_heartbeat_at: Option<i64>,
    pub last_load: Option<serde_json::Value>,
}

macro_rules! impl_agent_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::ServerId;
            use sqlx::types::Json;
            use $crate::store::{
                AgentHello, AgentLiveness, AgentRow, AgentStore, CaRecord, EnrollmentToken,
                Change, IssuedCertificate, NewCa, StoreError, StoreResult, now_ms,
            };
            use $crate::store::activity::instant;

            async fn insert_certificate(
                tx: &mut sqlx::Transaction<'static, $db>,
                cert: &IssuedCertificate,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO agent_certificates (serial, server_id, not_before, not_after, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&cert.serial)
                .bind(cert.server_id.get())
                .bind(cert.not_before)
                .bind(cert.not_after)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(|e| StoreError::on_constraint(e, "certificate serial already issued"))?;
                Ok(())
            }

            #[async_trait]
            impl AgentStore for $store {
                async fn active_certificate_authority(&self) -> StoreResult<Option<CaRecord>> {
                    Ok(sqlx::query_as::<_, CaRecord>(
                        "SELECT id, cert_pem, key_encrypted, fingerprint, not_after, created_at
                         FROM certificate_authorities WHERE active = TRUE ORDER BY id LIMIT 1",
                    )
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn insert_certificate_authority(&self, new: &NewCa) -> StoreResult<CaRecord> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(
                        "INSERT INTO certificate_authorities (cert_pem, key_encrypted, fingerprint,
                             active, not_after, created_at)
                         VALUES ($1, $2, $3, TRUE, $4, $5)",
                    )
                    .bind(&new.cert_pem)
                    .bind(&new.key_encrypted)
                    .bind(&new.fingerprint)
                    .bind(new.not_after)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                    // Two replicas starting together may both insert; the oldest row wins for
                    // everyone, so all replicas sign with the same CA.
                    let active = sqlx::query_as::<_, CaRecord>(
                        "SELECT id, cert_pem, key_encrypted, fingerprint, not_after, created_at
                         FROM certificate_authorities WHERE active = TRUE ORDER BY id LIMIT 1",
                    )
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(active)
                }

                async fn create_enrollment_token(
                    &self,
                    server_id: ServerId,
                    token_hash: &str,
                    expires_at: i64,
                    actor: &str,
                ) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let token_id: i64 = sqlx::query_scalar(
                        "INSERT INTO enrollment_tokens (server_id, token_hash, expires_at, created_at)
                         VALUES ($1, $2, $3, $4) RETURNING id",
                    )
                    .bind(server_id.get())
                    .bind(token_hash)
                    .bind(expires_at)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "server does not exist"))?;
                    // The token itself is a secret: the row names it by id only.
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "server.enrollment_token_created",
                        "server",
                        server_id.get(),
                        serde_json::json!({ "tokenId": token_id, "expiresAt": expires_at }),
                        Change::updated(
                            serde_json::json!({ "enrollmentToken": null }),
                            serde_json::json!({ "enrollmentToken": { "id": token_id, "expiresAt": instant(expires_at) } }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn find_enrollment_token(&self, token_hash: &str) -> StoreResult<Option<EnrollmentToken>> {
                    Ok(sqlx::query_as::<_, EnrollmentToken>(
                        "SELECT id, server_id, expires_at, used_at, created_at FROM enrollment_tokens
                         WHERE token_hash = $1",
                    )
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn complete_enrollment(
                    &self,
                    token_id: i64,
                    cert: &IssuedCertificate,
                    agent_version: &str,
                ) -> StoreResult<Vec<String>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    // The token is spent in the same transaction that records the certificate:
                    // two agents racing with one token cannot both end up enrolled.
                    let spent = sqlx::query(
                        "UPDATE enrollment_tokens SET used_at = $2
                         WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
                    )
                    .bind(token_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if spent == 0 {
                        return Err(StoreError::Conflict("enrollment token was already used or has expired".into()));
                    }
                    // A new enrollment supersedes every earlier certificate of the server (a
                    // rebuilt host, a leaked state directory): they are revoked here.
                    let superseded: Vec<String> = sqlx::query_scalar(
                        "SELECT serial FROM agent_certificates WHERE server_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(cert.server_id.get())
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE agent_certificates SET revoked_at = $2 WHERE server_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(cert.server_id.get())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    insert_certificate(&mut tx, cert, now).await?;
                    let previous: Option<(String, Option<String>)> =
                        sqlx::query_as("SELECT status, cert_serial FROM agents WHERE server_id = $1")
                            .bind(cert.server_id.get())
                            .fetch_optional(&mut *tx)
                            .await?;
                    sqlx::query(
                        "INSERT INTO agents (server_id, status, enrolled_at, cert_serial, cert_not_after,
                             revoked_at, agent_version, updated_at)
                         VALUES ($1, 'pending', $2, $3, $4, NULL, $5, $2)
                         ON CONFLICT (server_id) DO UPDATE SET
                             status = 'pending', enrolled_at = excluded.enrolled_at,
                             cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after,
                             revoked_at = NULL, agent_version = excluded.agent_version,
                             updated_at = excluded.updated_at",
                    )
                    .bind(cert.server_id.get())
                    .bind(now)
                    .bind(&cert.serial)
                    .bind(cert.not_after)
                    .bind(agent_version)
                    .execute(&mut *tx)
                    .await?;
                    <$store>::record_activity(
                        &mut tx,
                        "agent",
                        "agent.enrolled",
                        "server",
                        cert.server_id.get(),
                        serde_json::json!({ "serial": cert.serial, "notAfter": cert.not_after }),
                        Change::updated(
                            serde_json::json!({ "agent": previous.as_ref().map(|(status, serial)| serde_json::json!({ "status": status, "certSerial": serial })) }),
                            serde_json::json!({ "agent": { "status": "pending", "certSerial": cert.serial, "certNotAfter": instant(cert.not_after) } }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(superseded)
                }

                async fn record_renewed_certificate(&self, cert: &IssuedCertificate) -> StoreResult<()> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    insert_certificate(&mut tx, cert, now).await?;
                    sqlx::query(
                        "UPDATE agents SET cert_serial = $2, cert_not_after = $3, updated_at = $4
                         WHERE server_id = $1",
                    )
                    .bind(cert.server_id.get())
                    .bind(&cert.serial)
                    .bind(cert.not_after)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn revoke_agent_certificates(&self, server_id: ServerId, actor: &str) -> StoreResult<Vec<String>> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM servers WHERE id = $1")
                        .bind(server_id.get())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_none() {
                        return Err(StoreError::not_found("server", server_id));
                    }
                    let serials: Vec<String> = sqlx::query_scalar(
                        "SELECT serial FROM agent_certificates WHERE server_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(server_id.get())
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE agent_certificates SET revoked_at = $2 WHERE server_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(server_id.get())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let previous: Option<String> =
                        sqlx::query_scalar("SELECT status FROM agents WHERE server_id = $1")
                            .bind(server_id.get())
                            .fetch_optional(&mut *tx)
                            .await?;
                    sqlx::query(
                        "UPDATE agents SET status = 'revoked', revoked_at = $2, updated_at = $2 WHERE server_id = $1",
                    )
                    .bind(server_id.get())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "agent.certificate_revoked",
                        "server",
                        server_id.get(),
                        serde_json::json!({ "serials": serials }),
                        Change::updated(
                            serde_json::json!({ "agentStatus": previous, "liveCertificates": serials }),
                            serde_json::json!({
                                "agentStatus": previous.as_ref().map(|_| "revoked"),
                                "liveCertificates": Vec::<String>::new(),
                            }),
                        ),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(serials)
                }

                async fn revoked_certificate_serials(&self) -> StoreResult<Vec<String>> {
                    // Expired certificates are refused by the TLS verifier anyway, so only the
                    // still-valid revoked ones need to stay in memory.
                    Ok(sqlx::query_scalar(
                        "SELECT serial FROM agent_certificates WHERE revoked_at IS NOT NULL AND not_after > $1",
                    )
                    .bind(now_ms())
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn list_agents(&self) -> StoreResult<Vec<AgentRow>> {
                    Ok(sqlx::query_as::<_, AgentRow>(
                        "SELECT server_id, status, enrolled_at, cert_serial, cert_not_after,
                             revoked_at, agent_version, panel_kind, capabilities, last_heartbeat_at,
                             last_load, updated_at
                         FROM agents ORDER BY server_id",
                    )
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn record_agent_hellos(
                    &self,
                    batch: &[(ServerId, AgentHello)],
                ) -> StoreResult<Vec<bool>> {
                    if batch.is_empty() {
                        return Ok(Vec::new());
                    }
                    let now = now_ms();
                    // One transaction per batch: a fleet dialling back after a restart would
                    // otherwise queue one commit per agent behind the single writer.
                    let mut tx = self.begin_write().await?;
                    let mut known = Vec::with_capacity(batch.len());
                    for (server_id, hello) in batch {
                        let updated = sqlx::query(
                            "UPDATE agents SET agent_version = $2, panel_kind = $3, capabilities = $4,
                                 status = 'online',
                                 updated_at = $5
                             WHERE server_id = $1 AND status <> 'revoked'",
                        )
                        .bind(server_id.get())
                        .bind(&hello.agent_version)
                        .bind(&hello.panel_kind)
                        .bind(Json(&hello.capabilities))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        known.push(updated > 0);
                    }
                    tx.commit().await?;
                    Ok(known)
                }

                async fn save_agent_liveness(&self, batch: &[AgentLiveness]) -> StoreResult<()> {
                    if batch.is_empty() {
                        return Ok(());
                    }
                    let now = now_ms();
                    // One transaction per batch: 10,000 agents beating every 10 s become one
                    // commit every flush interval instead of 1,000 commits a second.
                    let mut tx = self.begin_write().await?;
                    for row in batch {
                        sqlx::query(
                            "UPDATE agents SET status = $2,
                                 last_heartbeat_at = COALESCE($3, last_heartbeat_at),
                                 last_load = COALESCE($4, last_load),
                                 updated_at = $5
                             WHERE server_id = $1 AND status <> 'revoked'",
                        )
                        .bind(row.server_id.get())
                        .bind(&row.status)
                        .bind(row.last_heartbeat_at)
                        .bind(row.last_load.as_ref().map(Json))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_agent_store;
