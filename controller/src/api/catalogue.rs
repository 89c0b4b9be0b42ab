//! `/api/products` and `/api/customers`: what can be ordered, and who orders it. Admin only.
//! Times are RFC 3339 here; money is integer minor units (`"amount": 999` is 9.99).
//!
//! `PATCH` takes any of the fields `POST` takes (for a product also `active`; for a customer
//! also `status`), validated the same way; a field not listed, or `null` for one, is refused by
//! name and nothing is written. A product's `prices`, when given, replace the whole list.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use mpanel_common::Currency;
use mpanel_common::ids::{CustomerId, ProductId};
use mpanel_common::status::{BackupSchedule, BillingCycle, CustomerStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId, given};
use super::fields::{email, package_name, rfc3339, text};
use super::listing::{PageQuery, Params, finish};
use super::openapi::{Conflict, NotFound};
use crate::app::AppState;
use crate::store::{
    Customer, CustomerPatch, NewCustomer, NewProduct, Price, Product, ProductPatch,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product))
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, update_customer))
}

/// Something that can be ordered: the panel package it is set up with on each kind of panel,
/// its quotas and its prices.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product)]
#[serde(rename_all = "camelCase")]
pub struct ProductDto {
    id: i64,
    name: String,
    /// The server group its services are placed in.
    group: String,
    packages: Packages,
    quotas: Quotas,
    prices: Vec<PriceDto>,
    /// Inactive products cannot be ordered.
    active: bool,
    /// Tax on the prices in basis points (2000 = 20 %).
    tax_rate_bp: i32,
    /// How often the `backups` job backs its accounts up: none, daily, weekly or monthly.
    #[schema(value_type = String, example = "none")]
    backup_schedule: &'static str,
    created_at: String,
    updated_at: String,
}

/// The panel package (plan) a product's account is created with, per kind of panel.
#[derive(Debug, Serialize, ToSchema)]
struct Packages {
    cpanel: String,
    plesk: String,
    directadmin: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Quotas {
    disk_mb: i32,
    email_quota_mb: i32,
    databases: i32,
}

/// One price: a billing cycle in one currency.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Price)]
struct PriceDto {
    /// monthly, quarterly or annually.
    #[schema(value_type = String, example = "monthly")]
    cycle: &'static str,
    /// In minor units: 999 is 9.99.
    amount: i64,
    /// ISO 4217, upper case.
    #[schema(example = "USD")]
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

/// A new product. Text is trimmed; names hold no control characters.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateProduct {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    name: String,
    /// The server group its services are placed in; `default` when absent.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    group: Option<String>,
    #[serde(default)]
    packages: PackagesIn,
    #[serde(default)]
    quotas: QuotasIn,
    /// At most one price per billing cycle and currency.
    prices: Vec<PriceIn>,
    /// Tax on the prices in basis points (2000 = 20 %); 0 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000)]
    tax_rate_bp: Option<i64>,
    /// How often the `backups` job backs its accounts up: none (when absent), daily, weekly or
    /// monthly.
    #[serde(default)]
    #[schema(pattern = "^(none|daily|weekly|monthly)$")]
    backup_schedule: Option<String>,
}

/// The panel package (plan) per kind of panel: ASCII letters, digits, space, `_`, `-` and `.`,
/// starting with a letter or digit. On creation a package left out is `default` (`Unlimited`
/// on Plesk); on a change it stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PackagesIn {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9 _.-]*$"
    )]
    cpanel: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9 _.-]*$"
    )]
    plesk: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9 _.-]*$"
    )]
    directadmin: Option<String>,
}

/// Quotas, none negative. On creation one left out is 0 (1 for `databases`); on a change it
/// stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuotasIn {
    #[schema(minimum = 0)]
    disk_mb: Option<i32>,
    #[schema(minimum = 0)]
    email_quota_mb: Option<i32>,
    #[schema(minimum = 0)]
    databases: Option<i32>,
}

/// One price: a billing cycle in one currency.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PriceIn {
    /// monthly, quarterly or annually.
    #[schema(pattern = "^(monthly|quarterly|annually)$", example = "monthly")]
    cycle: String,
    /// In minor units: 999 is 9.99.
    #[schema(minimum = 0, example = 999)]
    amount: i64,
    /// ISO 4217 code, in either case.
    #[schema(pattern = "^[A-Za-z]{3}$", example = "USD")]
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

/// The `{id}` of a product route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ProductPath {
    /// The product's id.
    #[param(minimum = 1)]
    id: i64,
}

/// The `{id}` of a customer route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct CustomerPath {
    /// The customer's id.
    #[param(minimum = 1)]
    id: i64,
}

/// Every product, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct ProductList {
    products: Vec<ProductDto>,
}

/// A page of customers, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CustomerPage {
    customers: Vec<CustomerDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// Adds a product.
#[utoipa::path(
    post,
    path = "/api/products",
    tag = "catalogue",
    request_body = CreateProduct,
    responses(
        (status = 201, description = "Added.", body = ProductDto),
        (status = 409, response = Conflict),
    )
)]
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

/// Every product, inactive ones included.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "catalogue",
    responses((status = 200, description = "The products.", body = ProductList))
)]
async fn list_products(
    _admin: Admin,
    State(state): State<AppState>,
) -> ApiResult<Json<ProductList>> {
    let products: Vec<ProductDto> = state
        .store
        .list_products()
        .await?
        .into_iter()
        .map(ProductDto::from)
        .collect();
    Ok(Json(ProductList { products }))
}

/// One product.
#[utoipa::path(
    get,
    path = "/api/products/{id}",
    tag = "catalogue",
    params(ProductPath),
    responses(
        (status = 200, description = "The product.", body = ProductDto),
        (status = 404, response = NotFound),
    )
)]
async fn get_product(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
) -> ApiResult<Json<ProductDto>> {
    Ok(Json(state.store.get_product(id).await?.into()))
}

/// The fields to change, validated as on creation; a field left out stays as it is, and none
/// may be null.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateProduct {
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, min_length = 1, max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    name: Option<String>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    group: Option<String>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = PackagesIn)]
    packages: Option<PackagesIn>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = QuotasIn)]
    quotas: Option<QuotasIn>,
    /// Replace the whole list; at most one price per billing cycle and currency.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Vec<PriceIn>)]
    prices: Option<Vec<PriceIn>>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = bool)]
    active: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = i64, minimum = 0, maximum = 10000)]
    tax_rate_bp: Option<i64>,
    /// none, daily, weekly or monthly.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, pattern = "^(none|daily|weekly|monthly)$")]
    backup_schedule: Option<String>,
}

/// Changes a product; `prices`, when given, replace the whole list.
#[utoipa::path(
    patch,
    path = "/api/products/{id}",
    tag = "catalogue",
    params(ProductPath),
    request_body = UpdateProduct,
    responses(
        (status = 200, description = "The product as it is now.", body = ProductDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
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

/// Who orders services and pays for them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Customer)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDto {
    id: i64,
    /// Lower case.
    email: String,
    name: String,
    /// active (may order) or closed (keeps its history, orders nothing new).
    #[schema(value_type = String, example = "active")]
    status: &'static str,
    /// The customer's id at Stripe, once it has one.
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

/// A new customer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    /// An email address with a domain that has a dot; kept in lower case, and unique.
    #[schema(min_length = 5, max_length = 254, example = "ann@example.com")]
    email: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    name: String,
}

/// Adds a customer.
#[utoipa::path(
    post,
    path = "/api/customers",
    tag = "catalogue",
    request_body = CreateCustomer,
    responses(
        (status = 201, description = "Added.", body = CustomerDto),
        (status = 409, response = Conflict),
    )
)]
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

/// The customers, oldest first.
#[utoipa::path(
    get,
    path = "/api/customers",
    tag = "catalogue",
    params(PageQuery),
    responses((status = 200, description = "A page of customers.", body = CustomerPage))
)]
async fn list_customers(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<CustomerPage>> {
    let params = Params::parse(query, &["limit", "cursor"])?;
    let page = params.page(50, 500)?;
    let mut customers = state.store.list_customers(page).await?;
    let next = finish(&mut customers, page, |c| c.id.get());
    let customers: Vec<CustomerDto> = customers.into_iter().map(CustomerDto::from).collect();
    Ok(Json(CustomerPage {
        customers,
        next_cursor: next,
    }))
}

/// One customer.
#[utoipa::path(
    get,
    path = "/api/customers/{id}",
    tag = "catalogue",
    params(CustomerPath),
    responses(
        (status = 200, description = "The customer.", body = CustomerDto),
        (status = 404, response = NotFound),
    )
)]
async fn get_customer(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<CustomerId>,
) -> ApiResult<Json<CustomerDto>> {
    Ok(Json(state.store.get_customer(id).await?.into()))
}

/// The fields to change, validated as on creation; a field left out stays as it is, and none
/// may be null.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateCustomer {
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, min_length = 5, max_length = 254)]
    email: Option<String>,
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    name: Option<String>,
    /// active or closed.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = String, pattern = "^(active|closed)$")]
    status: Option<String>,
}

/// Changes a customer: `email`, `name` or `status`.
#[utoipa::path(
    patch,
    path = "/api/customers/{id}",
    tag = "catalogue",
    params(CustomerPath),
    request_body = UpdateCustomer,
    responses(
        (status = 200, description = "The customer as it is now.", body = CustomerDto),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
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
