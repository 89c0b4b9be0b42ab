//! The SQL both backends run unchanged. Times are integers and placeholders are `$n` (SQLite
//! accepts them too), so one text serves both; `impl_shared_store!` instantiates these methods for
//! each pool type. Each backend supplies `begin_write()`, which opens a transaction that takes the
//! write lock up front (SQLite's `BEGIN IMMEDIATE`), so read-then-write sequences cannot deadlock.

macro_rules! impl_shared_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::{CustomerId, ProductId, ServerId, ServiceId, TaskId};
            use sqlx::types::Json;
            use $crate::store::{
                ActivityEntry, ActivityStore, AdminToken, AdminTokenStore, Customer, CustomerPatch,
                CustomerStore, NewCustomer, NewProduct, NewServer, NewService, Page, Price,
                Product, ProductPatch, ProductStore, Server, ServerPatch, ServerStore, Service, ServiceFilter,
                ServiceStore, StoreError, StoreResult, Task, TaskFilter, TaskResult, now_ms,
            };

            async fn record_activity(
                tx: &mut sqlx::Transaction<'static, $db>,
                actor: &str,
                action: &str,
                entity_type: &str,
                entity_id: i64,
                details: serde_json::Value,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO activity_log (actor, action, entity_type, entity_id, details, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(actor)
                .bind(action)
                .bind(entity_type)
                .bind(entity_id)
                .bind(Json(details))
                .bind(now_ms())
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            async fn load_prices(
                pool: &sqlx::Pool<$db>,
                product_id: i64,
            ) -> StoreResult<Vec<Price>> {
                Ok(sqlx::query_as::<_, Price>(
                    "SELECT billing_cycle, amount_minor, currency FROM product_prices
                     WHERE product_id = $1 ORDER BY billing_cycle, currency",
                )
                .bind(product_id)
                .fetch_all(pool)
                .await?)
            }

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
                    record_activity(
                        &mut tx,
                        actor,
                        "server.created",
                        "server",
                        server.id.get(),
                        serde_json::json!({ "hostname": server.hostname }),
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
                    record_activity(
                        &mut tx,
                        actor,
                        "server.updated",
                        "server",
                        id.get(),
                        serde_json::json!({ "status": server.status.as_str() }),
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
                    let deleted = sqlx::query("DELETE FROM servers WHERE id = $1")
                        .bind(id.get())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if deleted == 0 {
                        return Err(StoreError::not_found("server", id));
                    }
                    record_activity(&mut tx, actor, "server.deleted", "server", id.get(), serde_json::json!({}))
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }
            }

            #[async_trait]
            impl CustomerStore for $store {
                async fn create_customer(&self, new: &NewCustomer, actor: &str) -> StoreResult<Customer> {
                    let mut tx = self.begin_write().await?;
                    let customer = sqlx::query_as::<_, Customer>(
                        "INSERT INTO customers (email, name, status, created_at, updated_at)
                         VALUES ($1, $2, 'active', $3, $3) RETURNING *",
                    )
                    .bind(&new.email)
                    .bind(&new.name)
                    .bind(now_ms())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "a customer with that email already exists"))?;
                    record_activity(&mut tx, actor, "customer.created", "customer", customer.id.get(), serde_json::json!({}))
                        .await?;
                    tx.commit().await?;
                    Ok(customer)
                }

                async fn get_customer(&self, id: CustomerId) -> StoreResult<Customer> {
                    sqlx::query_as::<_, Customer>("SELECT * FROM customers WHERE id = $1")
                        .bind(id.get())
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::not_found("customer", id))
                }

                async fn update_customer(&self, id: CustomerId, patch: &CustomerPatch, actor: &str) -> StoreResult<Customer> {
                    let mut tx = self.begin_write().await?;
                    let customer = sqlx::query_as::<_, Customer>(
                        "UPDATE customers SET
                             email = COALESCE($2, email),
                             name = COALESCE($3, name),
                             status = COALESCE($4, status),
                             updated_at = $5
                         WHERE id = $1
                         RETURNING *",
                    )
                    .bind(id.get())
                    .bind(patch.email.as_deref())
                    .bind(patch.name.as_deref())
                    .bind(patch.status.map(|s| s.as_str()))
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "a customer with that email already exists"))?
                    .ok_or_else(|| StoreError::not_found("customer", id))?;
                    record_activity(&mut tx, actor, "customer.updated", "customer", id.get(), serde_json::json!({ "status": customer.status.as_str() }))
                        .await?;
                    tx.commit().await?;
                    Ok(customer)
                }

                async fn list_customers(&self, page: Page) -> StoreResult<Vec<Customer>> {
                    Ok(sqlx::query_as::<_, Customer>(
                        "SELECT * FROM customers WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
                    )
                    .bind(page.after_id)
                    .bind(page.limit)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }

            #[async_trait]
            impl ProductStore for $store {
                async fn create_product(&self, new: &NewProduct, actor: &str) -> StoreResult<Product> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let mut product = sqlx::query_as::<_, Product>(
                        "INSERT INTO products (name, server_group, package_cpanel, package_plesk,
                             package_directadmin, disk_mb, email_quota_mb, databases, active,
                             created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE, $9, $9) RETURNING *",
                    )
                    .bind(&new.name)
                    .bind(&new.server_group)
                    .bind(&new.package_cpanel)
                    .bind(&new.package_plesk)
                    .bind(&new.package_directadmin)
                    .bind(new.disk_mb)
                    .bind(new.email_quota_mb)
                    .bind(new.databases)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, &format!("a product named {} already exists", new.name)))?;
                    for price in &new.prices {
                        sqlx::query(
                            "INSERT INTO product_prices (product_id, billing_cycle, amount_minor, currency)
                             VALUES ($1, $2, $3, $4)",
                        )
                        .bind(product.id.get())
                        .bind(price.billing_cycle.as_str())
                        .bind(price.amount_minor)
                        .bind(&price.currency)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| StoreError::on_constraint(e, "the same billing cycle and currency is priced twice"))?;
                    }
                    record_activity(&mut tx, actor, "product.created", "product", product.id.get(), serde_json::json!({ "name": new.name }))
                        .await?;
                    tx.commit().await?;
                    product.prices = load_prices(&self.pool, product.id.get()).await?;
                    Ok(product)
                }

                async fn get_product(&self, id: ProductId) -> StoreResult<Product> {
                    let mut product = sqlx::query_as::<_, Product>("SELECT * FROM products WHERE id = $1")
                        .bind(id.get())
                        .fetch_optional(&self.pool)
                        .await?
                        .ok_or_else(|| StoreError::not_found("product", id))?;
                    product.prices = load_prices(&self.pool, id.get()).await?;
                    Ok(product)
                }

                async fn update_product(&self, id: ProductId, patch: &ProductPatch, actor: &str) -> StoreResult<Product> {
                    let mut tx = self.begin_write().await?;
                    let name = patch.name.clone();
                    let mut product = sqlx::query_as::<_, Product>(
                        "UPDATE products SET
                             name = COALESCE($2, name),
                             server_group = COALESCE($3, server_group),
                             package_cpanel = COALESCE($4, package_cpanel),
                             package_plesk = COALESCE($5, package_plesk),
                             package_directadmin = COALESCE($6, package_directadmin),
                             disk_mb = COALESCE($7, disk_mb),
                             email_quota_mb = COALESCE($8, email_quota_mb),
                             databases = COALESCE($9, databases),
                             active = COALESCE($10, active),
                             updated_at = $11
                         WHERE id = $1
                         RETURNING *",
                    )
                    .bind(id.get())
                    .bind(patch.name.as_deref())
                    .bind(patch.server_group.as_deref())
                    .bind(patch.package_cpanel.as_deref())
                    .bind(patch.package_plesk.as_deref())
                    .bind(patch.package_directadmin.as_deref())
                    .bind(patch.disk_mb)
                    .bind(patch.email_quota_mb)
                    .bind(patch.databases)
                    .bind(patch.active)
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, &format!("a product named {} already exists", name.unwrap_or_default())))?
                    .ok_or_else(|| StoreError::not_found("product", id))?;
                    if let Some(prices) = &patch.prices {
                        sqlx::query("DELETE FROM product_prices WHERE product_id = $1")
                            .bind(id.get())
                            .execute(&mut *tx)
                            .await?;
                        for price in prices {
                            sqlx::query(
                                "INSERT INTO product_prices (product_id, billing_cycle, amount_minor, currency)
                                 VALUES ($1, $2, $3, $4)",
                            )
                            .bind(id.get())
                            .bind(price.billing_cycle.as_str())
                            .bind(price.amount_minor)
                            .bind(&price.currency)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| StoreError::on_constraint(e, "the same billing cycle and currency is priced twice"))?;
                        }
                    }
                    record_activity(&mut tx, actor, "product.updated", "product", id.get(), serde_json::json!({ "name": product.name }))
                        .await?;
                    tx.commit().await?;
                    product.prices = load_prices(&self.pool, id.get()).await?;
                    Ok(product)
                }

                async fn list_products(&self) -> StoreResult<Vec<Product>> {
                    let mut products = sqlx::query_as::<_, Product>("SELECT * FROM products ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?;
                    for product in &mut products {
                        product.prices = load_prices(&self.pool, product.id.get()).await?;
                    }
                    Ok(products)
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
                             created_at, updated_at)
                         VALUES ($1, $2, $3, 'pending', $4, $5, $5) RETURNING *",
                    )
                    .bind(new.customer_id.get())
                    .bind(new.product_id.get())
                    .bind(&new.domain)
                    .bind(new.billing_cycle.as_str())
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
                             created_at, updated_at)
                         VALUES ($1, 'provision', 'pending', 0, $2, $3, $4, $5, $6, $6, $6)
                         RETURNING *",
                    )
                    .bind(service.id.get())
                    .bind(new.max_retries)
                    .bind(Json(TaskResult::default()))
                    .bind(Json(serde_json::json!({})))
                    .bind(format!("provision:service:{}", service.id))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, "the service already has an open task"))?;
                    record_activity(
                        &mut tx,
                        actor,
                        "service.created",
                        "service",
                        service.id.get(),
                        serde_json::json!({ "domain": new.domain, "taskId": task.id.get() }),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok((service, task))
                }

                async fn assign_server(&self, service_id: ServiceId, server_id: ServerId) -> StoreResult<()> {
                    let mut tx = self.begin_write().await?;
                    let max_accounts: i32 = sqlx::query_scalar(<$store>::LOCK_SERVER_SQL)
                        .bind(server_id.get())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::not_found("server", server_id))?;
                    let live: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM services
                         WHERE server_id = $1 AND status IN ('pending', 'active', 'suspended')",
                    )
                    .bind(server_id.get())
                    .fetch_one(&mut *tx)
                    .await?;
                    if live >= i64::from(max_accounts) {
                        return Err(StoreError::Conflict(format!("server {server_id} is full ({live}/{max_accounts})")));
                    }
                    let updated = sqlx::query(
                        "UPDATE services SET server_id = $2, updated_at = $3 WHERE id = $1 AND server_id IS NULL",
                    )
                    .bind(service_id.get())
                    .bind(server_id.get())
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        return Err(StoreError::Conflict(format!("service {service_id} does not exist or is already placed")));
                    }
                    record_activity(&mut tx, "system", "service.placed", "service", service_id.get(), serde_json::json!({ "serverId": server_id.get() }))
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_service_credentials(
                    &self,
                    service_id: ServiceId,
                    username: &str,
                    password_sealed: &str,
                ) -> StoreResult<()> {
                    let updated = sqlx::query(
                        "UPDATE services SET username = $2, password_encrypted = $3, updated_at = $4
                         WHERE id = $1 AND (username IS NULL OR username = $2)",
                    )
                    .bind(service_id.get())
                    .bind(username)
                    .bind(password_sealed)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| StoreError::on_constraint(e, &format!("username {username} is taken on this server")))?
                    .rows_affected();
                    if updated == 0 {
                        return Err(StoreError::Conflict(format!(
                            "service {service_id} does not exist or already has another username"
                        )));
                    }
                    Ok(())
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
                        .fetch_optional(&self.pool)
                        .await?;
                    kept.flatten().ok_or_else(|| StoreError::not_found("service", service_id))
                }

                async fn placement_candidates(
                    &self,
                    server_group: &str,
                    kind: mpanel_common::username::PanelKind,
                ) -> StoreResult<Vec<$crate::store::PlacementCandidate>> {
                    Ok(sqlx::query_as::<_, $crate::store::PlacementCandidate>(
                        "SELECT s.*, (SELECT COUNT(*) FROM services v
                                      WHERE v.server_id = s.id
                                        AND v.status IN ('pending', 'active', 'suspended')) AS live_services
                         FROM servers s
                         WHERE s.status = 'active' AND s.server_group = $1 AND s.control_panel = $2
                         ORDER BY s.id",
                    )
                    .bind(server_group)
                    .bind(kind.as_str())
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
                    let service = sqlx::query_as::<_, Service>(
                        "UPDATE services SET
                             renewal_date = CASE WHEN $2 THEN $3 ELSE renewal_date END,
                             updated_at = $4
                         WHERE id = $1
                         RETURNING *",
                    )
                    .bind(id.get())
                    .bind(patch.renewal_date.is_some())
                    .bind(patch.renewal_date.flatten())
                    .bind(now_ms())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("service", id))?;
                    record_activity(
                        &mut tx,
                        actor,
                        "service.updated",
                        "service",
                        id.get(),
                        serde_json::json!({ "renewalDate": service.renewal_date }),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(service)
                }
            }

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
                    record_activity(&mut tx, "cli", "admin_token.created", "admin_token", token.id, serde_json::json!({ "name": name }))
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
                            .execute(&self.pool)
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
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        return Err(StoreError::not_found("admin token", id));
                    }
                    Ok(())
                }
            }

            #[async_trait]
            impl ActivityStore for $store {
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

pub(crate) use impl_shared_store;
