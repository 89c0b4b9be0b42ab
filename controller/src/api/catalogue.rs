//! `/api/products` and `/api/customers`: what can be ordered, and who orders it. Admin only.
//! Times are RFC 3339 here; money is integer minor units (`"amount": 999` is 9.99).
//!
//! `PATCH` takes any of the fields `POST` takes (for a product also `active`; for a customer
//! also `status`), validated the same way; a field not listed, or `null` for one, is refused by
//! name and nothing is written. A product's `prices`, when given, replace the whole list.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mpanel_common::Currency;
use mpanel_common::ids::{CustomerId, ProductId};
use mpanel_common::status::{BackupSchedule, BillingCycle, CustomerStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId, given};
use super::fields::{email, package_name, rfc3339, text};
use super::listing::{Params, finish};
use crate::app::AppState;
use crate::store::{
    Customer, CustomerPatch, NewCustomer, NewProduct, Price, Product, ProductPatch,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/products", get(list_products).post(create_product))
        .route("/api/products/{id}", get(get_product).patch(update_product))
        .route("/api/customers", get(list_customers).post(create_customer))
        .route(
            "/api/customers/{id}",
            get(get_customer).patch(update_customer),
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductDto {
    id: i64,
    name: String,
    group: String,
    packages: Packages,
    quotas: Quotas,
    prices: Vec<PriceDto>,
    active: bool,
    tax_rate_bp: i32,
    backup_schedule: &'static str,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct Packages {
    cpanel: String,
    plesk: String,
    directadmin: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Quotas {
    disk_mb: i32,
    email_quota_mb: i32,
    databases: i32,
}

#[derive(Debug, Serialize)]
struct PriceDto {
    cycle: &'static str,
    amount: i64,
    currency: String,
}

impl From<Product> for ProductDto {
    fn from(p: Product) -> Self {
        ProductDto {
            id: p.id.get(),
            name: p.name,
            group: p.server_group,
            packages: Packages {
                cpanel: p.package_cpanel,
                plesk: p.package_plesk,
                directadmin: p.package_directadmin,
            },
            quotas: Quotas {
                disk_mb: p.disk_mb,
                email_quota_mb: p.email_quota_mb,
                databases: p.databases,
            },
            prices: p
                .prices
                .into_iter()
                .map(|price| PriceDto {
                    cycle: price.billing_cycle.as_str(),
                    amount: price.amount_minor,
                    currency: price.currency,
                })
                .collect(),
            active: p.active,
            tax_rate_bp: p.tax_rate_bp,
            backup_schedule: p.backup_schedule.as_str(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateProduct {
    name: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    packages: PackagesIn,
    #[serde(default)]
    quotas: QuotasIn,
    prices: Vec<PriceIn>,
    /// Tax on the prices in basis points (2000 = 20 %); 0 when absent.
    #[serde(default)]
    tax_rate_bp: Option<i64>,
    /// How often the `backups` job backs its accounts up; `none` when absent.
    #[serde(default)]
    backup_schedule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackagesIn {
    cpanel: Option<String>,
    plesk: Option<String>,
    directadmin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuotasIn {
    disk_mb: Option<i32>,
    email_quota_mb: Option<i32>,
    databases: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceIn {
    cycle: String,
    amount: i64,
    currency: String,
}

fn quota(field: &str, value: Option<i32>, default: i32) -> ApiResult<i32> {
    let value = value.unwrap_or(default);
    if value < 0 {
        return Err(ApiError::invalid(
            field,
            "invalid_number",
            "must not be negative",
        ));
    }
    Ok(value)
}

/// A tax rate in basis points: 0 (none) to 10000 (100 %).
fn tax_rate(bp: i64) -> ApiResult<i32> {
    i32::try_from(bp)
        .ok()
        .filter(|bp| (0..=10_000).contains(bp))
        .ok_or_else(|| {
            ApiError::invalid(
                "taxRateBp",
                "invalid_tax_rate",
                "must be basis points from 0 to 10000 (2000 = 20 %)",
            )
        })
}

fn backup_schedule(raw: &str) -> ApiResult<BackupSchedule> {
    raw.parse::<BackupSchedule>().map_err(|_| {
        ApiError::invalid(
            "backupSchedule",
            "invalid_backup_schedule",
            format!(
                "'{}' is not one of none, daily, weekly, monthly",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })
}

fn prices(raw: &[PriceIn]) -> ApiResult<Vec<Price>> {
    let mut prices: Vec<Price> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let billing_cycle = p.cycle.parse::<BillingCycle>().map_err(|_| {
            ApiError::invalid(
                &format!("prices[{i}].cycle"),
                "invalid_billing_cycle",
                format!(
                    "'{}' is not one of monthly, quarterly, annually",
                    p.cycle.chars().take(40).collect::<String>()
                ),
            )
        })?;
        if p.amount < 0 {
            return Err(ApiError::invalid(
                &format!("prices[{i}].amount"),
                "invalid_amount",
                "must not be negative (minor units, e.g. 999 for 9.99)",
            ));
        }
        let currency = Currency::parse(&p.currency).map_err(|e| {
            ApiError::invalid(&format!("prices[{i}].currency"), "invalid_currency", e)
        })?;
        let price = Price {
            billing_cycle,
            amount_minor: p.amount,
            currency: currency.as_str().to_owned(),
        };
        if prices
            .iter()
            .any(|q| q.billing_cycle == price.billing_cycle && q.currency == price.currency)
        {
            return Err(ApiError::invalid(
                &format!("prices[{i}]"),
                "duplicate_price",
                format!("{} {} is priced twice", price.billing_cycle, price.currency),
            ));
        }
        prices.push(price);
    }
    Ok(prices)
}

async fn create_product(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateProduct>,
) -> ApiResult<(StatusCode, Json<ProductDto>)> {
    let package = |field: &str, value: &Option<String>, default: &str| {
        package_name(field, value.as_deref().unwrap_or(default))
    };
    let new = NewProduct {
        name: text("name", &body.name, 100)?,
        server_group: text("group", body.group.as_deref().unwrap_or("default"), 64)?,
        package_cpanel: package("packages.cpanel", &body.packages.cpanel, "default")?,
        package_plesk: package("packages.plesk", &body.packages.plesk, "Unlimited")?,
        package_directadmin: package(
            "packages.directadmin",
            &body.packages.directadmin,
            "default",
        )?,
        disk_mb: quota("quotas.diskMb", body.quotas.disk_mb, 0)?,
        email_quota_mb: quota("quotas.emailQuotaMb", body.quotas.email_quota_mb, 0)?,
        databases: quota("quotas.databases", body.quotas.databases, 1)?,
        tax_rate_bp: tax_rate(body.tax_rate_bp.unwrap_or(0))?,
        backup_schedule: backup_schedule(body.backup_schedule.as_deref().unwrap_or("none"))?,
        prices: prices(&body.prices)?,
    };
    let product = state.store.create_product(&new, &admin.actor()).await?;
    Ok((StatusCode::CREATED, Json(product.into())))
}

async fn list_products(_admin: Admin, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let products: Vec<ProductDto> = state
        .store
        .list_products()
        .await?
        .into_iter()
        .map(ProductDto::from)
        .collect();
    Ok(Json(json!({ "products": products })))
}

async fn get_product(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
) -> ApiResult<Json<ProductDto>> {
    Ok(Json(state.store.get_product(id).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateProduct {
    #[serde(default, deserialize_with = "given")]
    name: Option<String>,
    #[serde(default, deserialize_with = "given")]
    group: Option<String>,
    #[serde(default, deserialize_with = "given")]
    packages: Option<PackagesIn>,
    #[serde(default, deserialize_with = "given")]
    quotas: Option<QuotasIn>,
    #[serde(default, deserialize_with = "given")]
    prices: Option<Vec<PriceIn>>,
    #[serde(default, deserialize_with = "given")]
    active: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    tax_rate_bp: Option<i64>,
    #[serde(default, deserialize_with = "given")]
    backup_schedule: Option<String>,
}

async fn update_product(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
    JsonBody(body): JsonBody<UpdateProduct>,
) -> ApiResult<Json<ProductDto>> {
    let packages = body.packages.unwrap_or_default();
    let quotas = body.quotas.unwrap_or_default();
    let package =
        |field: &str, value: Option<String>| value.map(|v| package_name(field, &v)).transpose();
    let some_quota =
        |field: &str, value: Option<i32>| value.map(|v| quota(field, Some(v), 0)).transpose();
    let patch = ProductPatch {
        name: body.name.map(|n| text("name", &n, 100)).transpose()?,
        server_group: body.group.map(|g| text("group", &g, 64)).transpose()?,
        package_cpanel: package("packages.cpanel", packages.cpanel)?,
        package_plesk: package("packages.plesk", packages.plesk)?,
        package_directadmin: package("packages.directadmin", packages.directadmin)?,
        disk_mb: some_quota("quotas.diskMb", quotas.disk_mb)?,
        email_quota_mb: some_quota("quotas.emailQuotaMb", quotas.email_quota_mb)?,
        databases: some_quota("quotas.databases", quotas.databases)?,
        active: body.active,
        tax_rate_bp: body.tax_rate_bp.map(tax_rate).transpose()?,
        backup_schedule: body
            .backup_schedule
            .as_deref()
            .map(backup_schedule)
            .transpose()?,
        prices: body.prices.map(|p| prices(&p)).transpose()?,
    };
    if patch.is_empty() {
        // Nothing to change: answer with the product as it is, writing nothing.
        return Ok(Json(state.store.get_product(id).await?.into()));
    }
    let product = state
        .store
        .update_product(id, &patch, &admin.actor())
        .await?;
    Ok(Json(product.into()))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDto {
    id: i64,
    email: String,
    name: String,
    status: &'static str,
    stripe_customer_id: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Customer> for CustomerDto {
    fn from(c: Customer) -> Self {
        CustomerDto {
            id: c.id.get(),
            email: c.email,
            name: c.name,
            status: c.status.as_str(),
            stripe_customer_id: c.stripe_customer_id,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    email: String,
    name: String,
}

async fn create_customer(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateCustomer>,
) -> ApiResult<(StatusCode, Json<CustomerDto>)> {
    let new = NewCustomer {
        email: email(&body.email)?,
        name: text("name", &body.name, 200)?,
    };
    let customer = state.store.create_customer(&new, &admin.actor()).await?;
    Ok((StatusCode::CREATED, Json(customer.into())))
}

async fn list_customers(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let params = Params::parse(query, &["limit", "cursor"])?;
    let page = params.page(50, 500)?;
    let mut customers = state.store.list_customers(page).await?;
    let next = finish(&mut customers, page, |c| c.id.get());
    let customers: Vec<CustomerDto> = customers.into_iter().map(CustomerDto::from).collect();
    Ok(Json(json!({ "customers": customers, "nextCursor": next })))
}

async fn get_customer(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<CustomerId>,
) -> ApiResult<Json<CustomerDto>> {
    Ok(Json(state.store.get_customer(id).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateCustomer {
    #[serde(default, deserialize_with = "given")]
    email: Option<String>,
    #[serde(default, deserialize_with = "given")]
    name: Option<String>,
    #[serde(default, deserialize_with = "given")]
    status: Option<String>,
}

async fn update_customer(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<CustomerId>,
    JsonBody(body): JsonBody<UpdateCustomer>,
) -> ApiResult<Json<CustomerDto>> {
    let patch = CustomerPatch {
        email: body.email.as_deref().map(email).transpose()?,
        name: body.name.map(|n| text("name", &n, 200)).transpose()?,
        status: body
            .status
            .as_deref()
            .map(|s| {
                s.parse::<CustomerStatus>().map_err(|e| {
                    ApiError::invalid(
                        "status",
                        "invalid_status",
                        format!(
                            "'{}' is not one of {}",
                            s.chars().take(40).collect::<String>(),
                            e.accepted.join(", ")
                        ),
                    )
                })
            })
            .transpose()?,
    };
    if patch.is_empty() {
        return Ok(Json(state.store.get_customer(id).await?.into()));
    }
    let customer = state
        .store
        .update_customer(id, &patch, &admin.actor())
        .await?;
    Ok(Json(customer.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_checked() {
        assert_eq!(email("  Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "a b@example.com",
            "ann@exa mple.com",
            "a..b@example.com",
        ] {
            let e = email(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("email"), "{bad}");
        }
    }
}
