//! Products and their prices per billing cycle: written together in one transaction, each
//! change with its activity row.

use async_trait::async_trait;
use mpanel_common::ids::{CustomerId, ProductId};

use super::{NewProduct, Price, Product, ProductPatch, StoreResult};

/// A product row joined with one of its prices (none when it has no price): a product with `n`
/// prices is `n` such rows, in price order, so a product and its prices are one statement.
#[derive(sqlx::FromRow)]
pub(crate) struct ProductPriceRow {
    #[sqlx(flatten)]
    pub(crate) product: Product,
    pub(crate) price_cycle: Option<String>,
    pub(crate) price_amount_minor: Option<i64>,
    pub(crate) price_currency: Option<String>,
}

/// Products with their prices, from `ProductPriceRow`s ordered by product.
pub(crate) fn with_prices(rows: Vec<ProductPriceRow>) -> StoreResult<Vec<Product>> {
    let mut products: Vec<Product> = Vec::new();
    for row in rows {
        let id = row.product.id;
        if products.last().is_none_or(|p| p.id != id) {
            products.push(row.product);
        }
        let (Some(cycle), Some(amount_minor), Some(currency)) =
            (row.price_cycle, row.price_amount_minor, row.price_currency)
        else {
            continue;
        };
        let billing_cycle = cycle
            .parse()
            .map_err(|e| super::StoreError::Corrupt(format!("product {id}: {e}")))?;
        if let Some(product) = products.last_mut() {
            product.prices.push(Price {
                billing_cycle,
                amount_minor,
                currency,
            });
        }
    }
    Ok(products)
}

/// The columns and join of `ProductPriceRow`; a query adds its `WHERE` and orders by
/// [`PRICE_ORDER`].
pub(crate) const PRODUCT_PRICE_ROWS: &str = "SELECT p.*, pp.billing_cycle AS price_cycle,
         pp.amount_minor AS price_amount_minor, pp.currency AS price_currency
     FROM products p LEFT JOIN product_prices pp ON pp.product_id = p.id";

/// The order prices are listed in, within a product.
pub(crate) const PRICE_ORDER: &str = "pp.billing_cycle, pp.currency";

/// A product row with the ordering customer's email address beside it.
#[derive(sqlx::FromRow)]
pub(crate) struct ProductAndContact {
    #[sqlx(flatten)]
    pub(crate) product: Product,
    pub(crate) customer_email: Option<String>,
}

#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Creates the product and its prices in one transaction.
    async fn create_product(&self, new: &NewProduct, actor: &str) -> StoreResult<Product>;
    async fn get_product(&self, id: ProductId) -> StoreResult<Product>;
    /// What provisioning reads besides the service, in one statement: the product without its
    /// prices (placement and the steps use none) and the customer's email address.
    async fn product_and_contact(
        &self,
        product: ProductId,
        customer: CustomerId,
    ) -> StoreResult<(Product, String)>;
    async fn list_products(&self) -> StoreResult<Vec<Product>>;
    /// Changes the fields the patch names (a given price list replaces the old one) in one
    /// transaction with its activity row; a name another product has is a `Conflict`.
    async fn update_product(
        &self,
        id: ProductId,
        patch: &ProductPatch,
        actor: &str,
    ) -> StoreResult<Product>;
}

macro_rules! impl_product_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use mpanel_common::ids::{CustomerId, ProductId};
            use sqlx::AssertSqlSafe;
            use $crate::store::{Change, NewProduct, Price, Product, ProductPatch, ProductStore, StoreError, StoreResult, now_ms};
            use $crate::store::activity::product_summary;
            use $crate::store::products::{PRICE_ORDER, PRODUCT_PRICE_ROWS, ProductPriceRow, with_prices};

            /// The prices as the transaction sees them, in `PRICE_ORDER`.
            async fn prices_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                product_id: i64,
            ) -> StoreResult<Vec<Price>> {
                Ok(sqlx::query_as::<_, Price>(
                    "SELECT billing_cycle, amount_minor, currency FROM product_prices
                     WHERE product_id = $1 ORDER BY billing_cycle, currency",
                )
                .bind(product_id)
                .fetch_all(&mut **tx)
                .await?)
            }

            #[async_trait]
            impl ProductStore for $store {
                async fn create_product(&self, new: &NewProduct, actor: &str) -> StoreResult<Product> {
                    let now = now_ms();
                    let mut tx = self.begin_write().await?;
                    let mut product = sqlx::query_as::<_, Product>(
                        "INSERT INTO products (name, server_group, package_cpanel, package_plesk,
                             package_directadmin, disk_mb, email_quota_mb, databases, active,
                             tax_rate_bp, backup_schedule, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE, $10, $11, $9, $9) RETURNING *",
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
                    .bind(new.tax_rate_bp)
                    .bind(new.backup_schedule.as_str())
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
                    product.prices = prices_in(&mut tx, product.id.get()).await?;
                    <$store>::record_activity(&mut tx, actor, "product.created", "product", product.id.get(), serde_json::json!({ "name": new.name }),
                        Change::created(product_summary(&product)))
                        .await?;
                    tx.commit().await?;
                    Ok(product)
                }

                async fn get_product(&self, id: ProductId) -> StoreResult<Product> {
                    let rows = sqlx::query_as::<_, ProductPriceRow>(AssertSqlSafe(format!(
                        "{PRODUCT_PRICE_ROWS} WHERE p.id = $1 ORDER BY {PRICE_ORDER}"
                    )))
                    .bind(id.get())
                    .fetch_all(&self.pool)
                    .await?;
                    with_prices(rows)?
                        .pop()
                        .ok_or_else(|| StoreError::not_found("product", id))
                }

                async fn product_and_contact(&self, product: ProductId, customer: CustomerId) -> StoreResult<(Product, String)> {
                    let row = sqlx::query_as::<_, $crate::store::products::ProductAndContact>(
                        "SELECT p.*, c.email AS customer_email
                         FROM products p LEFT JOIN customers c ON c.id = $2
                         WHERE p.id = $1",
                    )
                    .bind(product.get())
                    .bind(customer.get())
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::not_found("product", product))?;
                    let email = row.customer_email.ok_or_else(|| StoreError::not_found("customer", customer))?;
                    Ok((row.product, email))
                }

                async fn update_product(&self, id: ProductId, patch: &ProductPatch, actor: &str) -> StoreResult<Product> {
                    let mut tx = self.begin_write().await?;
                    let mut before = sqlx::query_as::<_, Product>(AssertSqlSafe(format!(
                        "SELECT * FROM products WHERE id = $1{}",
                        <$store>::FOR_UPDATE
                    )))
                    .bind(id.get())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found("product", id))?;
                    before.prices = prices_in(&mut tx, id.get()).await?;
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
                             updated_at = $11,
                             tax_rate_bp = COALESCE($12, tax_rate_bp),
                             backup_schedule = COALESCE($13, backup_schedule)
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
                    .bind(patch.tax_rate_bp)
                    .bind(patch.backup_schedule.map(|b| b.as_str()))
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
                    product.prices = prices_in(&mut tx, id.get()).await?;
                    <$store>::record_activity(&mut tx, actor, "product.updated", "product", id.get(), serde_json::json!({ "name": product.name }),
                        Change::between(product_summary(&before), product_summary(&product)))
                        .await?;
                    tx.commit().await?;
                    Ok(product)
                }

                async fn list_products(&self) -> StoreResult<Vec<Product>> {
                    let rows = sqlx::query_as::<_, ProductPriceRow>(AssertSqlSafe(format!(
                        "{PRODUCT_PRICE_ROWS} ORDER BY p.id, {PRICE_ORDER}"
                    )))
                    .fetch_all(&self.pool)
                    .await?;
                    with_prices(rows)
                }
            }
        };
    };
}

pub(crate) use impl_product_store;
