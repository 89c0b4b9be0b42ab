//! Customers: creating, reading and patching them, each change with its activity row.

use async_trait::async_trait;
use mpanel_common::ids::CustomerId;

use super::{Customer, CustomerPatch, NewCustomer, Page, StoreResult};

#[async_trait]
pub trait CustomerStore: Send + Sync {
    async fn create_customer(&self, new: &NewCustomer, actor: &str) -> StoreResult<Customer>;
    async fn get_customer(&self, id: CustomerId) -> StoreResult<Customer>;
    async fn list_customers(&self, page: Page) -> StoreResult<Vec<Customer>>;
    /// Changes the fields the patch names, recorded in the activity log in the same
    /// transaction; an email another customer has is a `Conflict`.
    async fn update_customer(
        &self,
        id: CustomerId,
        patch: &CustomerPatch,
        actor: &str,
    ) -> StoreResult<Customer>;
}

macro_rules! impl_customer_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::CustomerId;
            use sqlx::AssertSqlSafe;
            use $crate::store::{Change, Customer, CustomerPatch, CustomerStore, NewCustomer, Page, StoreError, StoreResult, now_ms};
            use $crate::store::activity::customer_summary;

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
                    <$store>::record_activity(&mut tx, actor, "customer.created", "customer", customer.id.get(), serde_json::json!({}),
                        Change::created(customer_summary(&customer)))
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
                    let before = sqlx::query_as::<_, Customer>(AssertSqlSafe(format!(
                        "SELECT * FROM customers WHERE id = $1{}",
                        <$store>::FOR_UPDATE
                    )))
                    .bind(id.get())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("customer", id))?;
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
                    <$store>::record_activity(&mut tx, actor, "customer.updated", "customer", id.get(), serde_json::json!({ "status": customer.status.as_str() }),
                        Change::between(customer_summary(&before), customer_summary(&customer)))
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
        };
    };
}

pub(crate) use impl_customer_store;
