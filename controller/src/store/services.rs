//! Services and the reads of their tasks: an order (the service and its provisioning task in
//! one transaction), placement on a server without overfilling it, the credentials chosen once,
//! and the admin's changes that need no panel. Queue writes are `queue`'s.

use async_trait::async_trait;
use mpanel_common::ids::{CustomerId, ServerId, ServiceId, TaskId};

use super::{
    NewService, PlacementCandidate, SealedSecrets, Service, ServiceFilter, ServicePatch,
    ServiceSecret, StoreResult, Task, TaskFilter,
};

/// The panel login and the other secrets chosen for a service, sealed.
#[derive(Debug, Clone, Copy)]
pub struct NewCredentials<'a> {
    pub username: &'a str,
    pub password_sealed: &'a str,
    /// Offered; a secret the service already has is kept instead.
    pub secrets: &'a SealedSecrets,
}

/// Why [`ServiceStore::place_with_credentials`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementRefusal {
    /// The server has no room left (a concurrent placement took the last one).
    ServerFull,
    /// A live service on that server has the username.
    UsernameTaken,
    /// The service has a server or a username already, or does not exist.
    AlreadyPlaced,
}

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Creates a `pending` service and its provisioning task in one transaction (the
    /// transactional outbox: the task row is the record that work is owed).
    async fn create_service_with_task(
        &self,
        new: &NewService,
        actor: &str,
    ) -> StoreResult<(Service, Task)>;
    async fn get_service(&self, id: ServiceId) -> StoreResult<Service>;
    /// The customer's live (pending, active or suspended) service for `domain`, if any.
    async fn live_service_of(
        &self,
        customer: CustomerId,
        domain: &str,
    ) -> StoreResult<Option<Service>>;
    /// The live service holding `domain`, whoever's it is.
    async fn live_service_by_domain(&self, domain: &str) -> StoreResult<Option<ServiceId>>;
    /// Places a service on a server, holding the server's row while it counts, so concurrent
    /// placements cannot take the server past `max_accounts` (`Conflict` when it is full).
    async fn assign_server(&self, service_id: ServiceId, server_id: ServerId) -> StoreResult<()>;
    /// [`Self::assign_server`] and [`Self::set_service_credentials_and_secrets`] for a service
    /// with neither, in one transaction with both activity rows; the refusal says why nothing
    /// was written.
    async fn place_with_credentials(
        &self,
        service_id: ServiceId,
        server_id: ServerId,
        credentials: &NewCredentials<'_>,
    ) -> StoreResult<Result<SealedSecrets, PlacementRefusal>>;
    /// Records the panel username and sealed password chosen for a service. Set once: a
    /// different username for a service that has one, or a username already used by a live
    /// service on the same server, is a `Conflict`.
    async fn set_service_credentials(
        &self,
        service_id: ServiceId,
        username: &str,
        password_sealed: &str,
    ) -> StoreResult<()> {
        self.set_service_credentials_and_secrets(
            service_id,
            username,
            password_sealed,
            &SealedSecrets::default(),
        )
        .await
        .map(drop)
    }
    /// [`Self::set_service_credentials`], keeping in the same write each offered secret the
    /// service does not have yet (the first one ever offered is kept, as with
    /// [`Self::keep_service_secret`]); returns the secrets as kept.
    async fn set_service_credentials_and_secrets(
        &self,
        service_id: ServiceId,
        username: &str,
        password_sealed: &str,
        secrets: &SealedSecrets,
    ) -> StoreResult<SealedSecrets>;
    /// Keeps the first sealed secret ever offered for this service and returns the one kept, so
    /// every retry of a step uses the same password.
    async fn keep_service_secret(
        &self,
        service_id: ServiceId,
        which: ServiceSecret,
        sealed_candidate: &str,
    ) -> StoreResult<String>;
    /// Active servers of this group (every panel kind), each with its count of live services
    /// (kept by the database's triggers as services change): one read per placement.
    async fn placement_candidates(
        &self,
        server_group: &str,
    ) -> StoreResult<Vec<PlacementCandidate>>;
    async fn list_services(&self, filter: &ServiceFilter) -> StoreResult<Vec<Service>>;
    async fn get_task(&self, id: TaskId) -> StoreResult<Task>;
    /// The service's open (pending or processing) task, if any.
    async fn open_task_for_service(&self, service_id: ServiceId) -> StoreResult<Option<Task>>;
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>>;
    /// Changes the fields an admin may set without the panel (see `ServicePatch`).
    async fn update_service(
        &self,
        id: ServiceId,
        patch: &ServicePatch,
        actor: &str,
    ) -> StoreResult<Service>;
}

macro_rules! impl_service_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::{CustomerId, ServerId, ServiceId, TaskId};
            use sqlx::types::Json;
            use sqlx::AssertSqlSafe;
            use $crate::store::{Change, NewService, Service, ServiceFilter, ServiceStore, StoreError, StoreResult, Task, TaskFilter, TaskResult, now_ms};
            use $crate::store::activity::{service_summary, ActivityRow};

            /// The activity row of a service's placement.
            fn placed_row(service_id: ServiceId, server_id: ServerId) -> ActivityRow<'static> {
                ActivityRow {
                    actor: "system",
                    action: "service.placed",
                    entity_type: "service",
                    entity_id: Some(service_id.get()),
                    details: serde_json::json!({ "serverId": server_id.get() }),
                    change: Change::updated(serde_json::json!({ "serverId": null }), serde_json::json!({ "serverId": server_id.get() })),
                }
            }

            /// The activity row of a service's first credentials (the password only as set).
            fn credentials_row(service_id: ServiceId, username: &str) -> ActivityRow<'static> {
                ActivityRow {
                    actor: "system",
                    action: "service.credentials_set",
                    entity_type: "service",
                    entity_id: Some(service_id.get()),
                    details: serde_json::json!({}),
                    change: Change::updated(
                        serde_json::json!({ "username": null, "password": null }),
                        serde_json::json!({ "username": username, "password": "set" }),
                    ),
                }
            }

            #[async_trait]
            impl ServiceStore for $store {
                async fn create_service_with_task(
                    &self,
                    new: &NewService,
                    actor: &str,
                ) -> StoreResult<(Service, Task)> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let service = sqlx::query_as::<_, Service>(
                        "INSERT INTO services (customer_id, product_id, domain, status, billing_cycle,
                             next_due_at, billing_day, created_at, updated_at)
                         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $7) RETURNING *",
                    )
                    .bind(new.customer_id.get())
                    .bind(new.product_id.get())
                    .bind(&new.domain)
                    .bind(new.billing_cycle.as_str())
                    .bind(new.next_due_at)
                    .bind(new.billing_day)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| {
                        StoreError::on_constraint(
                            e,
                            &format!("{} already has a live service, or its customer or product does not exist", new.domain),
                        )
                    })?;
                    let task = sqlx::query_as::<_, Task>(
                        "INSERT INTO provisioning_tasks (service_id, task_type, status, attempts,
                             max_retries, result, params, idempotency_key, next_attempt_at,
                             created_at, updated_at, request_id)
                         VALUES ($1, 'provision', 'pending', 0, $2, $3, $4, $5, $6, $6, $6, $7)
                         RETURNING *",
                    )
                    .bind(service.id.get())
                    .bind(new.max_retries)
                    .bind(Json(TaskResult::default()))
                    .bind(Json(serde_json::json!({})))
                    .bind(format!("provision:service:{}", service.id))
                    .bind(now)
                    .bind($crate::request_id::current())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "the service already has an open task"))?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "service.created",
                        "service",
                        service.id.get(),
                        serde_json::json!({ "domain": new.domain, "taskId": task.id.get() }),
                        Change::created(service_summary(&service)),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok((service, task))
                }

                async fn assign_server(&self, service_id: ServiceId, server_id: ServerId) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    // The activity row first: the placement's UPDATE takes the server's row lock
                    // (its live count, migration 0014), held from there to the commit only.
                    <$store>::record_activities(&mut tx, vec![placed_row(service_id, server_id)]).await?;
                    let updated = sqlx::query(
                        "UPDATE services SET server_id = $2, updated_at = $3 WHERE id = $1 AND server_id IS NULL",
                    )
                    .bind(service_id.get())
                    .bind(server_id.get())
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await;
                    match updated {
                        Ok(done) if done.rows_affected() == 0 => {
                            return Err(StoreError::Conflict(format!("service {service_id} does not exist or is already placed")));
                        }
                        Ok(_) => {}
                        // The count's trigger refuses a placement past max_accounts.
                        Err(sqlx::Error::Database(e)) if e.message().contains("is full") => {
                            return Err(StoreError::Conflict(format!("server {server_id} is full")));
                        }
                        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                            return Err(StoreError::not_found("server", server_id));
                        }
                        Err(e) => return Err(e.into()),
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn place_with_credentials(
                    &self,
                    service_id: ServiceId,
                    server_id: ServerId,
                    credentials: &$crate::store::NewCredentials<'_>,
                ) -> StoreResult<Result<$crate::store::SealedSecrets, $crate::store::PlacementRefusal>> {
                    use $crate::store::PlacementRefusal;
                    let mut tx = self.begin_write().await?;
                    // The activity rows first: the UPDATE takes the server's row lock (its live
                    // count), held from there to the commit only.
                    <$store>::record_activities(&mut tx, vec![
                        placed_row(service_id, server_id),
                        credentials_row(service_id, credentials.username),
                    ])
                    .await?;
                    let kept = sqlx::query_as::<_, (Option<String>, Option<String>)>(
                        "UPDATE services SET server_id = $2, username = $3, password_encrypted = $4,
                             mailbox_password_encrypted = COALESCE(mailbox_password_encrypted, $5),
                             database_password_encrypted = COALESCE(database_password_encrypted, $6),
                             updated_at = $7
                         WHERE id = $1 AND server_id IS NULL AND username IS NULL
                         RETURNING mailbox_password_encrypted, database_password_encrypted",
                    )
                    .bind(service_id.get())
                    .bind(server_id.get())
                    .bind(credentials.username)
                    .bind(credentials.password_sealed)
                    .bind(credentials.secrets.mailbox.as_deref())
                    .bind(credentials.secrets.database.as_deref())
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await;
                    let (mailbox, database) = match kept {
                        Ok(Some(kept)) => kept,
                        Ok(None) => return Ok(Err(PlacementRefusal::AlreadyPlaced)),
                        // The count's trigger refuses a placement past max_accounts.
                        Err(sqlx::Error::Database(e)) if e.message().contains("is full") => {
                            return Ok(Err(PlacementRefusal::ServerFull));
                        }
                        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                            return Ok(Err(PlacementRefusal::UsernameTaken));
                        }
                        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                            return Err(StoreError::not_found("server", server_id));
                        }
                        Err(e) => return Err(e.into()),
                    };
                    tx.commit().await?;
                    Ok(Ok($crate::store::SealedSecrets { mailbox, database }))
                }

                async fn set_service_credentials_and_secrets(
                    &self,
                    service_id: ServiceId,
                    username: &str,
                    password_sealed: &str,
                    secrets: &$crate::store::SealedSecrets,
                ) -> StoreResult<$crate::store::SealedSecrets> {
                    let mut tx = self.begin_write().await?;
                    let now = now_ms();
                    // One write, tried as the first (the username is set and the change is
                    // logged), then as a retry with the same username (nothing worth a row).
                    let keep = |first: bool| {
                        sqlx::query_as::<_, (Option<String>, Option<String>)>(sqlx::AssertSqlSafe(format!(
                            "UPDATE services SET username = $2, password_encrypted = $3,
                                 mailbox_password_encrypted = COALESCE(mailbox_password_encrypted, $4),
                                 database_password_encrypted = COALESCE(database_password_encrypted, $5),
                                 updated_at = $6
                             WHERE id = $1 AND {}
                             RETURNING mailbox_password_encrypted, database_password_encrypted",
                            if first { "username IS NULL" } else { "username = $2" }
                        )))
                        .bind(service_id.get())
                        .bind(username)
                        .bind(password_sealed)
                        .bind(secrets.mailbox.clone())
                        .bind(secrets.database.clone())
                        .bind(now)
                    };
                    let first = keep(true)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| StoreError::on_constraint(e, &format!("username {username} is taken on this server")))?;
                    let kept = if let Some(kept) = first {
                        <$store>::record_activities(&mut tx, vec![credentials_row(service_id, username)]).await?;
                        kept
                    } else {
                        keep(false)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or_else(|| StoreError::Conflict(format!(
                                "service {service_id} does not exist or already has another username"
                            )))?
                    };
                    tx.commit().await?;
                    Ok($crate::store::SealedSecrets { mailbox: kept.0, database: kept.1 })
                }

                async fn keep_service_secret(
                    &self,
                    service_id: ServiceId,
                    which: $crate::store::ServiceSecret,
                    sealed_candidate: &str,
                ) -> StoreResult<String> {
                    let sql = match which {
                        $crate::store::ServiceSecret::Mailbox => {
                            "UPDATE services SET mailbox_password_encrypted = COALESCE(mailbox_password_encrypted, $2)
                             WHERE id = $1 RETURNING mailbox_password_encrypted"
                        }
                        $crate::store::ServiceSecret::Database => {
                            "UPDATE services SET database_password_encrypted = COALESCE(database_password_encrypted, $2)
                             WHERE id = $1 RETURNING database_password_encrypted"
                        }
                    };
                    let kept: Option<Option<String>> = sqlx::query_scalar(sql)
                        .bind(service_id.get())
                        .bind(sealed_candidate)
                        .fetch_optional(self.writer())
                        .await?;
                    kept.flatten().ok_or_else(|| StoreError::not_found("service", service_id))
                }

                async fn placement_candidates(
                    &self,
                    server_group: &str,
                ) -> StoreResult<Vec<$crate::store::PlacementCandidate>> {
                    Ok(sqlx::query_as::<_, $crate::store::PlacementCandidate>(
                        "SELECT * FROM servers
                         WHERE status = 'active' AND server_group = $1
                         ORDER BY id",
                    )
                    .bind(server_group)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn get_service(&self, id: ServiceId) -> StoreResult<Service> {
                    sqlx::query_as::<_, Service>("SELECT * FROM services WHERE id = $1")
                        .bind(id.get())
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::not_found("service", id))
                }

                async fn live_service_of(
                    &self,
                    customer: CustomerId,
                    domain: &str,
                ) -> StoreResult<Option<Service>> {
                    Ok(sqlx::query_as::<_, Service>(
                        "SELECT * FROM services
                         WHERE customer_id = $1 AND domain = $2
                           AND status IN ('pending', 'active', 'suspended')
                         LIMIT 1",
                    )
                    .bind(customer.get())
                    .bind(domain)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn live_service_by_domain(&self, domain: &str) -> StoreResult<Option<ServiceId>> {
                    let id: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM services WHERE domain = $1
                           AND status IN ('pending', 'active', 'suspended') LIMIT 1",
                    )
                    .bind(domain)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(id.map(ServiceId::new))
                }

                async fn list_services(&self, filter: &ServiceFilter) -> StoreResult<Vec<Service>> {
                    Ok(sqlx::query_as::<_, Service>(
                        "SELECT * FROM services
                         WHERE ($1 IS NULL OR customer_id = $1)
                           AND ($2 IS NULL OR status = $2)
                           AND ($3 IS NULL OR server_id = $3)
                           AND ($4 IS NULL OR id > $4)
                         ORDER BY id LIMIT $5",
                    )
                    .bind(filter.customer_id.map(|id| id.get()))
                    .bind(filter.status.map(|s| s.as_str()))
                    .bind(filter.server_id.map(|id| id.get()))
                    .bind(filter.page.after_id)
                    .bind(filter.page.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn get_task(&self, id: TaskId) -> StoreResult<Task> {
                    sqlx::query_as::<_, Task>("SELECT * FROM provisioning_tasks WHERE id = $1")
                        .bind(id.get())
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::not_found("task", id))
                }

                async fn open_task_for_service(&self, service_id: ServiceId) -> StoreResult<Option<Task>> {
                    Ok(sqlx::query_as::<_, Task>(
                        "SELECT * FROM provisioning_tasks
                         WHERE service_id = $1 AND status IN ('pending', 'processing')",
                    )
                    .bind(service_id.get())
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
                    Ok(sqlx::query_as::<_, Task>(
                        "SELECT * FROM provisioning_tasks
                         WHERE ($1 IS NULL OR status = $1)
                           AND ($2 IS NULL OR service_id = $2)
                           AND ($3 IS NULL OR id < $3)
                           AND (NOT $5 OR cleared_at IS NULL)
                         ORDER BY id DESC LIMIT $4",
                    )
                    .bind(filter.status.map(|s| s.as_str()))
                    .bind(filter.service_id.map(|id| id.get()))
                    .bind(filter.page.after_id)
                    .bind(filter.page.limit)
                    .bind(filter.only_uncleared)
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn update_service(
                    &self,
                    id: ServiceId,
                    patch: &$crate::store::ServicePatch,
                    actor: &str,
                ) -> StoreResult<Service> {
                    let mut tx = self.begin_write().await?;
                    let before = sqlx::query_as::<_, Service>(AssertSqlSafe(format!(
                        "SELECT * FROM services WHERE id = $1{}",
                        <$store>::FOR_UPDATE
                    )))
                    .bind(id.get())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("service", id))?;
                    let service = sqlx::query_as::<_, Service>(
                        "UPDATE services SET
                             next_due_at = CASE WHEN $2 THEN $3 ELSE next_due_at END,
                             billing_day = CASE WHEN $2 AND $3 IS NOT NULL THEN $5 ELSE billing_day END,
                             updated_at = $4
                         WHERE id = $1
                         RETURNING *",
                    )
                    .bind(id.get())
                    .bind(patch.next_due_at.is_some())
                    .bind(patch.next_due_at.flatten())
                    .bind(now_ms())
                    .bind(patch.next_due_at.flatten().map(|d| i32::from(mpanel_common::billing::ms_to_date(d).day())))
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("service", id))?;
                    <$store>::record_activity(
                        &mut tx,
                        actor,
                        "service.updated",
                        "service",
                        id.get(),
                        serde_json::json!({ "nextDueAt": service.next_due_at }),
                        Change::between(service_summary(&before), service_summary(&service)),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(service)
                }
            }
        };
    };
}

pub(crate) use impl_service_store;
