//! `/api/services`: ordering a service (the service and its provisioning task are written in
//! one transaction), reading and patching it, and the lifecycle commands (suspend, unsuspend,
//! terminate, change-package, change-password). Admin only. Times are RFC 3339 here.
//!
//! The handlers authenticate, validate the input and call the lifecycle layer
//! (`crate::lifecycle`), which owns the rules: a command only queues a task (202), and one the
//! service's state forbids, or one for a service that already has an open task, is refused with
//! 409 before anything is written.
//!
//! A service carries its latest usage sample (`usage`, null before the first `usage-sync`) and
//! `overQuota`; `GET /api/services/:id/usage` pages through its samples, newest first.
//!
//! `PATCH` changes only what needs no panel: `nextDueDate` (`YYYY-MM-DD`, or null to stop billing). Any
//! other field is refused by name.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use mpanel_common::JobId;
use mpanel_common::Secret;
use mpanel_common::command::Amount;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId};
use mpanel_common::status::{BillingCycle, ServiceStatus, SuspensionReason};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId, given};
use super::fields::{Warning, date, date_ms, domain, domain_warnings, rfc3339, text};
use super::listing::{PageQuery, Params, finish};
use super::openapi::{Conflict, NotFound, Unprocessable};
use super::queueing::{Queued, queued};
use crate::app::AppState;
use crate::lifecycle::{Actor, Order};
use crate::store::{LatestUsage, Service, ServiceFilter, ServicePatch, UsageSampleRow};
use crate::usage::is_over_quota;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_services, create_service))
        .routes(routes!(get_service, update_service))
        .routes(routes!(suspend))
        .routes(routes!(unsuspend))
        .routes(routes!(terminate))
        .routes(routes!(change_package))
        .routes(routes!(change_password))
        .routes(routes!(restore))
        .routes(routes!(usage_history))
}

/// A service as admins see it. Never the panel password nor its ciphertext.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Service)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDto {
    id: i64,
    customer_id: i64,
    product_id: i64,
    server_id: Option<i64>,
    domain: String,
    username: Option<String>,
    /// pending, active, suspended, terminated or cancelled.
    status: &'static str,
    /// monthly, quarterly or annually.
    billing_cycle: &'static str,
    provisioning_error: Option<String>,
    provisioned_at: Option<String>,
    /// `YYYY-MM-DD`; null when the service is not billed.
    next_due_date: Option<String>,
    /// The Stripe dispute (chargeback) that flagged this service, if any.
    dispute_ref: Option<String>,
    suspended_at: Option<String>,
    suspension_reason: Option<String>,
    terminated_at: Option<String>,
    created_at: String,
    updated_at: String,
    /// The latest usage sample, if the `usage-sync` job has taken one.
    usage: Option<UsageDto>,
    /// Disk or bandwidth used above a finite limit in the latest sample.
    over_quota: bool,
    /// When the running over-quota episode started.
    over_quota_since: Option<String>,
}

/// One usage sample. Sizes in bytes. A limit is null when unlimited; a field the panel did not
/// report is null too and named in `unknown`, so "unlimited" and "not reported" never look
/// alike.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageSample)]
#[serde(rename_all = "camelCase")]
struct UsageDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    taken_at: String,
    disk_used_bytes: Option<u64>,
    disk_limit_bytes: Option<u64>,
    bandwidth_used_bytes: Option<u64>,
    bandwidth_limit_bytes: Option<u64>,
    inodes_used: Option<u64>,
    inodes_limit: Option<u64>,
    unknown: Vec<&'static str>,
    over_quota: bool,
}

impl UsageDto {
    fn new(row: &UsageSampleRow, with_id: bool) -> Self {
        let usage = row.usage();
        let mut unknown = Vec::new();
        let mut used = |name: &'static str, v: Option<u64>| {
            if v.is_none() {
                unknown.push(name);
            }
            v
        };
        let disk_used_bytes = used("diskUsedBytes", usage.disk_used);
        let bandwidth_used_bytes = used("bandwidthUsedBytes", usage.bandwidth_used);
        let inodes_used = used("inodesUsed", usage.inodes_used);
        let mut limit = |name: &'static str, v: Option<Amount>| match v {
            None => {
                unknown.push(name);
                None
            }
            Some(Amount::Unlimited) => None,
            Some(Amount::Value(v)) => Some(v),
        };
        let disk_limit_bytes = limit("diskLimitBytes", usage.disk_limit);
        let bandwidth_limit_bytes = limit("bandwidthLimitBytes", usage.bandwidth_limit);
        let inodes_limit = limit("inodesLimit", usage.inodes_limit);
        UsageDto {
            id: with_id.then_some(row.id),
            taken_at: rfc3339(row.taken_at),
            disk_used_bytes,
            disk_limit_bytes,
            bandwidth_used_bytes,
            bandwidth_limit_bytes,
            inodes_used,
            inodes_limit,
            unknown,
            over_quota: is_over_quota(&usage),
        }
    }
}

impl From<Service> for ServiceDto {
    /// A service with no usage sample yet.
    fn from(s: Service) -> Self {
        ServiceDto::with_usage(s, None)
    }
}

impl ServiceDto {
    fn with_usage(s: Service, latest: Option<&LatestUsage>) -> Self {
        ServiceDto {
            id: s.id.get(),
            customer_id: s.customer_id.get(),
            product_id: s.product_id.get(),
            server_id: s.server_id,
            domain: s.domain,
            username: s.username,
            status: s.status.as_str(),
            billing_cycle: s.billing_cycle.as_str(),
            provisioning_error: s.provisioning_error,
            provisioned_at: s.provisioned_at.map(rfc3339),
            next_due_date: s.next_due_at.map(date),
            dispute_ref: s.dispute_ref,
            suspended_at: s.suspended_at.map(rfc3339),
            suspension_reason: s.suspension_reason,
            terminated_at: s.terminated_at.map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            usage: latest.map(|l| UsageDto::new(&l.sample, false)),
            over_quota: latest.is_some_and(|l| l.over_quota_since.is_some()),
            over_quota_since: latest.and_then(|l| l.over_quota_since).map(rfc3339),
        }
    }
}

/// The service with its latest usage sample.
async fn service_dto(state: &AppState, service: Service) -> ApiResult<ServiceDto> {
    let latest = state.store.latest_usage(service.id).await?;
    Ok(ServiceDto::with_usage(service, latest.as_ref()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateService {
    customer_id: i64,
    product_id: i64,
    domain: String,
    /// monthly, quarterly or annually.
    billing_cycle: String,
}

/// A service just ordered, the job that provisions it, and what an admin should know about
/// its domain.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ServiceCreated {
    service: ServiceDto,
    #[schema(value_type = String, example = "job_42")]
    job_id: JobId,
    /// UTS-39 look-alike warnings about the domain.
    warnings: Vec<Warning>,
}

/// A page of services, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ServicePage {
    services: Vec<ServiceDto>,
    /// Give it as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// A page of usage samples, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UsagePage {
    usage: Vec<UsageDto>,
    next_cursor: Option<String>,
}

/// 201 with the service and its `jobId`, plus `warnings` about the domain (UTS-39 look-alikes)
/// that an admin should see before the name goes live; an order repeated for a domain this
/// customer already has live is a 409 naming that service's `serviceId` and `jobId`, so a client
/// whose first answer was lost can follow the order it already placed.
#[utoipa::path(
    post,
    path = "/api/services",
    tag = "services",
    request_body = CreateService,
    responses(
        (status = 201, description = "Ordered; the job provisions it.", body = ServiceCreated),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
async fn create_service(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateService>,
) -> ApiResult<(StatusCode, Json<ServiceCreated>)> {
    let domain = domain(&body.domain)?;
    let warnings = domain_warnings(&domain);
    let billing_cycle = body.billing_cycle.parse::<BillingCycle>().map_err(|_| {
        ApiError::invalid(
            "billingCycle",
            "invalid_billing_cycle",
            format!(
                "'{}' is not one of monthly, quarterly, annually",
                body.billing_cycle.chars().take(40).collect::<String>()
            ),
        )
    })?;
    let order = Order {
        customer_id: CustomerId::new(body.customer_id),
        product_id: ProductId::new(body.product_id),
        domain,
        billing_cycle,
    };
    let (service, task) = state
        .lifecycle()
        .order(&Actor::Admin(admin.token_id), &order)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ServiceCreated {
            service: ServiceDto::from(service),
            job_id: JobId::for_task(task.id),
            warnings,
        }),
    ))
}

/// The services, oldest first, filtered by customer or status.
#[utoipa::path(
    get,
    path = "/api/services",
    tag = "services",
    params(
        ("customerId" = Option<i64>, Query, description = "Only this customer's services.", minimum = 1),
        ("status" = Option<String>, Query, description = "pending, active, suspended, terminated or cancelled."),
        PageQuery,
    ),
    responses((status = 200, description = "A page of services.", body = ServicePage))
)]
async fn list_services(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<ServicePage>> {
    let params = Params::parse(query, &["customerId", "status", "limit", "cursor"])?;
    let status = params
        .get("status")
        .map(|s| {
            s.parse::<ServiceStatus>().map_err(|_| {
                ApiError::invalid(
                    "status",
                    "invalid_status",
                    format!(
                        "'{}' is not one of pending, active, suspended, terminated, cancelled",
                        s.chars().take(40).collect::<String>()
                    ),
                )
            })
        })
        .transpose()?;
    let page = params.page(50, 500)?;
    let filter = ServiceFilter {
        customer_id: params.id("customerId")?.map(CustomerId::new),
        status,
        server_id: None,
        page,
    };
    let mut services = state.store.list_services(&filter).await?;
    let next = finish(&mut services, page, |s| s.id.get());
    // The page's latest samples in one statement.
    let ids: Vec<ServiceId> = services.iter().map(|s| s.id).collect();
    let latest: HashMap<ServiceId, LatestUsage> = state
        .store
        .latest_usage_of(&ids)
        .await?
        .into_iter()
        .map(|l| (l.sample.service_id, l))
        .collect();
    let services: Vec<ServiceDto> = services
        .into_iter()
        .map(|s| {
            let usage = latest.get(&s.id);
            ServiceDto::with_usage(s, usage)
        })
        .collect();
    Ok(Json(ServicePage {
        services,
        next_cursor: next,
    }))
}

/// The `{id}` of a service route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ServicePath {
    /// The service's id.
    #[param(minimum = 1)]
    id: i64,
}

async fn load_service(state: &AppState, id: ServiceId) -> ApiResult<Service> {
    Ok(state.store.get_service(id).await?)
}

/// One service, with its latest usage sample.
#[utoipa::path(
    get,
    path = "/api/services/{id}",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 200, description = "The service.", body = ServiceDto),
        (status = 404, response = NotFound),
    )
)]
async fn get_service(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<Json<ServiceDto>> {
    let service = load_service(&state, id).await?;
    Ok(Json(service_dto(&state, service).await?))
}

/// The service's usage samples, newest first.
#[utoipa::path(
    get,
    path = "/api/services/{id}/usage",
    tag = "services",
    params(ServicePath, PageQuery),
    responses(
        (status = 200, description = "A page of samples.", body = UsagePage),
        (status = 404, response = NotFound),
    )
)]
async fn usage_history(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<UsagePage>> {
    let params = Params::parse(query, &["limit", "cursor"])?;
    let page = params.page(50, 500)?;
    load_service(&state, id).await?;
    let mut samples = state.store.usage_history(id, page).await?;
    let next = finish(&mut samples, page, |s| s.id);
    let samples: Vec<UsageDto> = samples.iter().map(|s| UsageDto::new(s, true)).collect();
    Ok(Json(UsagePage {
        usage: samples,
        next_cursor: next,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateService {
    /// `YYYY-MM-DD`, or null to stop billing the service.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<String>, example = "2027-01-31")]
    next_due_date: Option<Option<String>>,
}

/// Changes what needs no panel: `nextDueDate`. Any other field is refused by name.
#[utoipa::path(
    patch,
    path = "/api/services/{id}",
    tag = "services",
    params(ServicePath),
    request_body = UpdateService,
    responses(
        (status = 200, description = "The service as it is now.", body = ServiceDto),
        (status = 404, response = NotFound),
    )
)]
async fn update_service(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    JsonBody(body): JsonBody<UpdateService>,
) -> ApiResult<Json<ServiceDto>> {
    let patch = ServicePatch {
        next_due_at: body
            .next_due_date
            .map(|d| d.as_deref().map(|d| date_ms("nextDueDate", d)).transpose())
            .transpose()?,
    };
    if patch.next_due_at.is_none() {
        // Nothing to change: answer with the service as it is, writing nothing.
        let service = state.store.get_service(id).await?;
        return Ok(Json(service_dto(&state, service).await?));
    }
    let service = state
        .store
        .update_service(id, &patch, &admin.actor())
        .await?;
    Ok(Json(service_dto(&state, service).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    /// `admin` (the default), `abuse`, `dispute` or `overdue`.
    #[serde(default)]
    reason: Option<String>,
    /// Free text kept with the task, for the admins.
    #[serde(default)]
    note: Option<String>,
}

/// Queues a suspension. The body is optional (`reason` defaults to `admin`).
#[utoipa::path(
    post,
    path = "/api/services/{id}/suspend",
    tag = "services",
    params(ServicePath),
    request_body(content = Option<SuspendBody>),
    responses(
        (status = 202, description = "Queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn suspend(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    body: Option<JsonBody<SuspendBody>>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let body = body.map(|JsonBody(b)| b).unwrap_or_default();
    let reason = match body.reason.as_deref() {
        None => SuspensionReason::Admin,
        Some(r) => r.parse::<SuspensionReason>().map_err(|_| {
            ApiError::invalid(
                "reason",
                "invalid_reason",
                format!(
                    "'{}' is not one of {}",
                    r.chars().take(40).collect::<String>(),
                    SuspensionReason::NAMES.join(", ")
                ),
            )
        })?,
    };
    let note = body
        .note
        .as_deref()
        .map(|n| text("note", n, 500))
        .transpose()?;
    let task = state
        .lifecycle()
        .suspend(&Actor::Admin(admin.token_id), id, reason, note.as_deref())
        .await?;
    Ok(queued("Suspension queued", &task))
}

/// Queues an unsuspension.
#[utoipa::path(
    post,
    path = "/api/services/{id}/unsuspend",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 202, description = "Queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn unsuspend(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let task = state
        .lifecycle()
        .unsuspend(&Actor::Admin(admin.token_id), id)
        .await?;
    Ok(queued("Unsuspension queued", &task))
}

/// Queues a termination: the account is removed from its server.
#[utoipa::path(
    post,
    path = "/api/services/{id}/terminate",
    tag = "services",
    params(ServicePath),
    responses(
        (status = 202, description = "Queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn terminate(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let task = state
        .lifecycle()
        .terminate(&Actor::Admin(admin.token_id), id)
        .await?;
    Ok(queued("Termination queued", &task))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangePackageBody {
    #[schema(minimum = 1)]
    product_id: i64,
}

/// Queues a move to another product's package.
#[utoipa::path(
    post,
    path = "/api/services/{id}/change-package",
    tag = "services",
    params(ServicePath),
    request_body = ChangePackageBody,
    responses(
        (status = 202, description = "Queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
async fn change_package(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    JsonBody(body): JsonBody<ChangePackageBody>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    if body.product_id <= 0 {
        return Err(ApiError::invalid(
            "productId",
            "invalid_id",
            "must be a positive integer",
        ));
    }
    let task = state
        .lifecycle()
        .change_package(
            &Actor::Admin(admin.token_id),
            id,
            ProductId::new(body.product_id),
        )
        .await?;
    Ok(queued("Package change queued", &task))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RestoreBody {
    #[schema(minimum = 1)]
    backup_id: i64,
}

/// Brings a terminated service back from one of its backups (`GET …/backups` lists them).
#[utoipa::path(
    post,
    path = "/api/services/{id}/restore",
    tag = "services",
    params(ServicePath),
    request_body = RestoreBody,
    responses(
        (status = 202, description = "Queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    )
)]
async fn restore(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    JsonBody(body): JsonBody<RestoreBody>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    if body.backup_id <= 0 {
        return Err(ApiError::invalid(
            "backupId",
            "invalid_id",
            "must be a positive integer",
        ));
    }
    let task = state
        .lifecycle()
        .restore(&Actor::Admin(admin.token_id), id, body.backup_id)
        .await?;
    Ok(queued("Restore queued", &task))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    /// 12 to 128 characters, no control characters.
    #[schema(min_length = 12, max_length = 128)]
    password: String,
}

const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_CHARS: usize = 128;

/// Queues a new panel password. No body: the pipeline generates one and sends it to the
/// customer.
#[utoipa::path(
    post,
    path = "/api/services/{id}/change-password",
    tag = "services",
    params(ServicePath),
    request_body(content = Option<ChangePasswordBody>),
    responses(
        (status = 202, description = "Queued.", body = Queued),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
async fn change_password(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    body: Option<JsonBody<ChangePasswordBody>>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let password = match body {
        None => None,
        Some(JsonBody(ChangePasswordBody { password })) => {
            let chars = password.chars().count();
            if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars)
                || password.chars().any(char::is_control)
            {
                return Err(ApiError::invalid(
                    "password",
                    "weak_password",
                    format!(
                        "must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters without control characters"
                    ),
                ));
            }
            Some(Secret::new(password))
        }
    };
    let task = state
        .lifecycle()
        .change_password(
            &Actor::Admin(admin.token_id),
            id,
            password.as_ref(),
            &state.cipher,
        )
        .await?;
    Ok(queued("Password change queued", &task))
}
