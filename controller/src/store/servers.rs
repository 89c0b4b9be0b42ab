//! Hosting servers: the fleet's inventory (capacity, group, panel, DNS and SSL providers) and
//! its admin changes, each with its activity row.

use async_trait::async_trait;
use mpanel_common::ids::ServerId;

use super::{NewServer, Server, ServerPatch, StoreResult};

#[async_trait]
pub trait ServerStore: Send + Sync {
    async fn create_server(&self, new: &NewServer, actor: &str) -> StoreResult<Server>;
    async fn get_server(&self, id: ServerId) -> StoreResult<Server>;
    async fn list_servers(&self) -> StoreResult<Vec<Server>>;
    async fn update_server(
        &self,
        id: ServerId,
        patch: &ServerPatch,
        actor: &str,
    ) -> StoreResult<Server>;
    /// Refused with `Conflict` while any service (live or past) references the server.
    async fn delete_server(&self, id: ServerId, actor: &str) -> StoreResult<()>;
}

macro_rules! impl_server_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::ServerId;
            use sqlx::AssertSqlSafe;
            use $crate::store::{Change, NewServer, Server, ServerPatch, ServerStore, StoreError, StoreResult, now_ms};
            use $crate::store::activity::server_summary;

            #[async_trait]
            impl ServerStore for $store {
                async fn create_server(&self, new: &NewServer, actor: &str) -> StoreResult<Server> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let server = sqlx::query_as::<_, Server>(
                        "INSERT INTO servers (hostname, ip_address, control_panel, control_panel_url,
                             max_accounts, status, location, server_group, nameserver1, nameserver2,
                             dns_provider, ssl_provider, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $12, $12)
                         RETURNING *",
                    )
                    .bind(&new.hostname)
                    .bind(&new.ip_address)
                    .bind(new.control_panel.as_str())
                    .bind(&new.control_panel_url)
                    .bind(new.max_accounts)
                    .bind(&new.location)
                    .bind(&new.server_group)
                    .bind(&new.nameserver1)
                    .bind(&new.nameserver2)
                    .bind(new.dns_provider.as_str())
                    .bind(new.ssl_provider.as_str())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| {
                        StoreError::on_constraint(e, &format!("a server named {} already exists", new.hostname))
                    })?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "server.created",
                        "server",
                        server.id.get(),
                        serde_json::json!({ "hostname": server.hostname }),
                        Change::created(server_summary(&server)),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(server)
                }

                async fn get_server(&self, id: ServerId) -> StoreResult<Server> {
                    sqlx::query_as::<_, Server>("SELECT * FROM servers WHERE id = $1")
                        .bind(id.get())
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::not_found("server", id))
                }

                async fn list_servers(&self) -> StoreResult<Vec<Server>> {
                    Ok(sqlx::query_as::<_, Server>("SELECT * FROM servers ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?)
                }

                async fn update_server(
                    &self,
                    id: ServerId,
                    patch: &ServerPatch,
                    actor: &str,
                ) -> StoreResult<Server> {
                    let mut tx = self.begin_write().await?;
                    let before = sqlx::query_as::<_, Server>(AssertSqlSafe(format!(
                        "SELECT * FROM servers WHERE id = $1{}",
                        <$store>::FOR_UPDATE
                    )))
                    .bind(id.get())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("server", id))?;
                    let server = sqlx::query_as::<_, Server>(
                        "UPDATE servers SET
                             hostname = COALESCE($2, hostname),
                             ip_address = COALESCE($3, ip_address),
                             control_panel_url = COALESCE($4, control_panel_url),
                             max_accounts = COALESCE($5, max_accounts),
                             status = COALESCE($6, status),
                             location = COALESCE($7, location),
                             server_group = COALESCE($8, server_group),
                             nameserver1 = COALESCE($9, nameserver1),
                             nameserver2 = COALESCE($10, nameserver2),
                             dns_provider = COALESCE($11, dns_provider),
                             ssl_provider = COALESCE($12, ssl_provider),
                             updated_at = $13
                         WHERE id = $1
                         RETURNING *",
                    )
                    .bind(id.get())
                    .bind(patch.hostname.as_deref())
                    .bind(patch.ip_address.as_deref())
                    .bind(patch.control_panel_url.as_deref())
                    .bind(patch.max_accounts)
                    .bind(patch.status.map(|s| s.as_str()))
                    .bind(patch.location.as_deref())
                    .bind(patch.server_group.as_deref())
                    .bind(patch.nameserver1.as_deref())
                    .bind(patch.nameserver2.as_deref())
                    .bind(patch.dns_provider.map(|p| p.as_str()))
                    .bind(patch.ssl_provider.map(|p| p.as_str()))
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "another server already has that hostname"))?
                    .ok_or_else(|| StoreError::not_found("server", id))?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "server.updated",
                        "server",
                        id.get(),
                        serde_json::json!({ "status": server.status.as_str() }),
                        Change::between(server_summary(&before), server_summary(&server)),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(server)
                }

                async fn delete_server(&self, id: ServerId, actor: &str) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let services: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM services WHERE server_id = $1")
                            .bind(id.get())
                            .fetch_one(&mut *tx)
                            .await?;
                    if services > 0 {
                        return Err(StoreError::Conflict(format!(
                            "server {id} still has {services} service(s); move or terminate them first"
                        )));
                    }
                    let deleted = sqlx::query_as::<_, Server>("DELETE FROM servers WHERE id = $1 RETURNING *")
                        .bind(id.get())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::not_found("server", id))?;
                    <$store>::record_activity(&mut tx, actor, "server.deleted", "server", id.get(),
                        serde_json::json!({ "hostname": deleted.hostname }), Change::deleted(server_summary(&deleted)))
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_server_store;
