//! `/api/services`: ordering a service (the service and its provisioning task are written in
//! one transaction), reading and patching it, and the lifecycle commands (suspend, unsuspend,
//! terminate, change-package, change-password). Admin only. Times are RFC 3339 here.
//!
//! Lifecycle commands only queue a task (202): the provisioning worker talks to the panel and
//! changes the service's status when the panel has done it. A command the lifecycle forbids
//! (`ServiceStatus::can_transition_to`), or one for a service that already has an open task, is
//! refused with 409 before anything is written.
//!
//! `PATCH` changes only what needs no panel: `renewalDate` (RFC 3339, or null to clear). Any
//! other field is refused by name.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mpanel_common::JobId;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId};
use mpanel_common::status::{BillingCycle, CustomerStatus, ServiceStatus, TaskKind};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathId};
use super::fields::{domain, domain_warnings, rfc3339, rfc3339_ms, text};
use super::listing::{Params, finish};
use super::queueing::{DEFAULT_MAX_RETRIES, queued, refuse_if_task_open};
use crate::app::AppState;
use crate::store::{
    NewService, Page, Service, ServiceFilter, ServicePatch, StoreError, TaskFilter,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/services", get(list_services).post(create_service))
        .route("/api/services/{id}", get(get_service).patch(update_service))
        .route("/api/services/{id}/suspend", post(suspend))
        .route("/api/services/{id}/unsuspend", post(unsuspend))
        .route("/api/services/{id}/terminate", post(terminate))
        .route("/api/services/{id}/change-package", post(change_package))
        .route("/api/services/{id}/change-password", post(change_password))
}

/// A service as admins see it. Never the panel password nor its ciphertext.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDto {
    id: i64,
    customer_id: i64,
    product_id: i64,
    server_id: Option<i64>,
    domain: String,
    username: Option<String>,
    status: &'static str,
    billing_cycle: &'static str,
    provisioning_error: Option<String>,
    provisioned_at: Option<String>,
    renewal_date: Option<String>,
    suspended_at: Option<String>,
    suspension_reason: Option<String>,
    terminated_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Service> for ServiceDto {
    fn from(s: Service) -> Self {
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
            renewal_date: s.renewal_date.map(rfc3339),
            suspended_at: s.suspended_at.map(rfc3339),
            suspension_reason: s.suspension_reason,
            terminated_at: s.terminated_at.map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateService {
    customer_id: i64,
    product_id: i64,
    domain: String,
    billing_cycle: String,
}

/// 201 with the service and its `jobId`, plus `warnings` about the domain (UTS-39 look-alikes)
/// that an admin should see before the name goes live; an order repeated for a domain this
/// customer already has live is a 409 naming that service's `serviceId` and `jobId`, so a client
/// whose first answer was lost can follow the order it already placed.
async fn create_service(
    admin: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateService>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    let customer = state
        .store
        .get_customer(CustomerId::new(body.customer_id))
        .await
        .map_err(|e| ApiError::not_found_as(e, "customerId", "customer", body.customer_id))?;
    if customer.status != CustomerStatus::Active {
        return Err(ApiError::unprocessable(
            "customerId",
            "customer_closed",
            format!("customer {} is {}", body.customer_id, customer.status),
        ));
    }
    let product = state
        .store
        .get_product(ProductId::new(body.product_id))
        .await
        .map_err(|e| ApiError::not_found_as(e, "productId", "product", body.product_id))?;
    if !product.active {
        return Err(ApiError::unprocessable(
            "productId",
            "product_inactive",
            format!("product {} is no longer sold", body.product_id),
        ));
    }
    if !product
        .prices
        .iter()
        .any(|p| p.billing_cycle == billing_cycle)
    {
        return Err(ApiError::unprocessable(
            "billingCycle",
            "no_price",
            format!("product {} has no {billing_cycle} price", body.product_id),
        ));
    }
    let new = NewService {
        customer_id: customer.id,
        product_id: product.id,
        domain: domain.as_str().to_owned(),
        billing_cycle,
        max_retries: DEFAULT_MAX_RETRIES,
    };
    let (service, task) = match state
        .store
        .create_service_with_task(&new, &admin.actor())
        .await
    {
        Ok(created) => created,
        Err(StoreError::Conflict(message)) => {
            return Err(live_service_conflict(&state, &new, message).await);
        }
        Err(e) => return Err(e.into()),
    };
    state.dispatcher.wake();
    tracing::info!(
        service_id = service.id.get(),
        task_id = task.id.get(),
        "service ordered"
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "service": ServiceDto::from(service),
            "jobId": JobId::for_task(task.id),
            "warnings": warnings,
        })),
    ))
}

/// The 409 for an order whose domain is taken. When the live service is this customer's (the
/// same order placed twice, or retried after its answer was lost), it names that service and
/// its latest task, so the client can follow the order instead of guessing.
async fn live_service_conflict(state: &AppState, new: &NewService, message: String) -> ApiError {
    let conflict = ApiError::new(StatusCode::CONFLICT, "conflict", message);
    match live_service_of(state, new).await {
        Ok(Some((service, job))) => {
            let conflict = ApiError {
                field: Some("domain".to_owned()),
                message: format!(
                    "domain: {} already has a live service ({service}) of customer {}",
                    new.domain, new.customer_id
                ),
                ..conflict
            }
            .with_detail("serviceId", service.get());
            match job {
                Some(job) => conflict.with_detail("jobId", job.to_string()),
                None => conflict,
            }
        }
        Ok(None) => conflict,
        Err(e) => {
            tracing::warn!(error = %e, "could not look up the service an order collided with");
            conflict
        }
    }
}

/// The customer's live (not terminated or cancelled) service for the order's domain, and the
/// job id of its newest task.
async fn live_service_of(
    state: &AppState,
    new: &NewService,
) -> Result<Option<(ServiceId, Option<JobId>)>, StoreError> {
    let mut page = Page {
        limit: 500,
        after_id: None,
    };
    loop {
        let filter = ServiceFilter {
            customer_id: Some(new.customer_id),
            page,
            ..ServiceFilter::default()
        };
        let batch = state.store.list_services(&filter).await?;
        if let Some(service) = batch
            .iter()
            .find(|s| s.domain == new.domain && !s.status.is_final())
        {
            let tasks = state
                .store
                .list_tasks(&TaskFilter {
                    service_id: Some(service.id),
                    page: Page {
                        limit: 1,
                        after_id: None,
                    },
                    ..TaskFilter::default()
                })
                .await?;
            let job = tasks.first().map(|t| JobId::for_task(t.id));
            return Ok(Some((service.id, job)));
        }
        if batch.len() < 500 {
            return Ok(None);
        }
        page.after_id = batch.last().map(|s| s.id.get());
    }
}

async fn list_services(
    _admin: Admin,
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Value>> {
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
    let services: Vec<ServiceDto> = services.into_iter().map(ServiceDto::from).collect();
    Ok(Json(json!({ "services": services, "nextCursor": next })))
}

async fn load_service(state: &AppState, id: ServiceId) -> ApiResult<Service> {
    Ok(state.store.get_service(id).await?)
}

async fn get_service(
    _admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<Json<ServiceDto>> {
    Ok(Json(load_service(&state, id).await?.into()))
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateService {
    #[serde(default, deserialize_with = "present")]
    renewal_date: Option<Option<String>>,
}

async fn update_service(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    JsonBody(body): JsonBody<UpdateService>,
) -> ApiResult<Json<ServiceDto>> {
    let patch = ServicePatch {
        renewal_date: body
            .renewal_date
            .map(|d| {
                d.as_deref()
                    .map(|d| rfc3339_ms("renewalDate", d))
                    .transpose()
            })
            .transpose()?,
    };
    if patch.renewal_date.is_none() {
        // Nothing to change: answer with the service as it is, writing nothing.
        return Ok(Json(state.store.get_service(id).await?.into()));
    }
    let service = state
        .store
        .update_service(id, &patch, &admin.actor())
        .await?;
    Ok(Json(service.into()))
}

/// Refuses a command whose target status the lifecycle does not allow from the current one.
fn refuse_illegal_move(service: &Service, target: ServiceStatus, verb: &str) -> ApiResult<()> {
    if service.status.can_transition_to(target) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "illegal_transition",
        format!(
            "service {} is {}; it cannot be {verb} ({} -> {target} is not allowed)",
            service.id, service.status, service.status
        ),
    ))
}

/// Package and password changes need an account on the panel: an active or suspended service.
fn refuse_unless_provisioned(service: &Service, what: &str) -> ApiResult<()> {
    if matches!(
        service.status,
        ServiceStatus::Active | ServiceStatus::Suspended
    ) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "illegal_transition",
        format!(
            "service {} is {}; only an active or suspended service can {what}",
            service.id, service.status
        ),
    ))
}

async fn enqueue(
    state: &AppState,
    admin: &Admin,
    service: &Service,
    kind: TaskKind,
    params: Value,
    message: &str,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let task = state
        .store
        .enqueue_task(
            service.id,
            kind,
            params,
            DEFAULT_MAX_RETRIES,
            &admin.actor(),
        )
        .await?;
    state.dispatcher.wake();
    tracing::info!(
        service_id = service.id.get(),
        task_id = task.id.get(),
        kind = kind.as_str(),
        "lifecycle task queued"
    );
    Ok(queued(message, &task))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn suspend(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    body: Option<JsonBody<SuspendBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, id).await?;
    let body = body.map(|JsonBody(b)| b).unwrap_or_default();
    let reason = body
        .reason
        .as_deref()
        .map(|r| text("reason", r, 500))
        .transpose()?
        .unwrap_or_else(|| "suspended by an administrator".to_owned());
    refuse_illegal_move(&service, ServiceStatus::Suspended, "suspended")?;
    refuse_if_task_open(&state, &service).await?;
    enqueue(
        &state,
        &admin,
        &service,
        TaskKind::Suspend,
        json!({ "reason": reason }),
        "Suspension queued",
    )
    .await
}

async fn unsuspend(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, id).await?;
    if service.status != ServiceStatus::Suspended {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "illegal_transition",
            format!(
                "service {} is {}; only a suspended service can be unsuspended",
                service.id, service.status
            ),
        ));
    }
    refuse_if_task_open(&state, &service).await?;
    enqueue(
        &state,
        &admin,
        &service,
        TaskKind::Unsuspend,
        json!({}),
        "Unsuspension queued",
    )
    .await
}

async fn terminate(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, id).await?;
    refuse_illegal_move(&service, ServiceStatus::Terminated, "terminated")?;
    refuse_if_task_open(&state, &service).await?;
    enqueue(
        &state,
        &admin,
        &service,
        TaskKind::Terminate,
        json!({}),
        "Termination queued",
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangePackageBody {
    product_id: i64,
}

async fn change_package(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    JsonBody(body): JsonBody<ChangePackageBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, id).await?;
    let current = state.store.get_product(service.product_id).await?;
    let target = state
        .store
        .get_product(ProductId::new(body.product_id))
        .await
        .map_err(|e| ApiError::not_found_as(e, "productId", "product", body.product_id))?;
    if target.id == current.id {
        return Err(ApiError::unprocessable(
            "productId",
            "same_product",
            format!("service {} is already on product {}", service.id, target.id),
        ));
    }
    if target.server_group != current.server_group {
        return Err(ApiError::unprocessable(
            "productId",
            "product_group_mismatch",
            format!(
                "product {} is in group '{}', the service's product in '{}'; a package change stays on the same servers",
                target.id, target.server_group, current.server_group
            ),
        ));
    }
    if !target.active {
        return Err(ApiError::unprocessable(
            "productId",
            "product_inactive",
            format!("product {} is no longer sold", target.id),
        ));
    }
    refuse_unless_provisioned(&service, "change package")?;
    refuse_if_task_open(&state, &service).await?;
    enqueue(
        &state,
        &admin,
        &service,
        TaskKind::ChangePackage,
        json!({ "productId": target.id.get(), "fromProductId": current.id.get() }),
        "Package change queued",
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    password: String,
}

const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_CHARS: usize = 128;

async fn change_password(
    admin: Admin,
    State(state): State<AppState>,
    PathId(id): PathId<ServiceId>,
    body: Option<JsonBody<ChangePasswordBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, id).await?;
    let params = match body {
        // No body: the pipeline generates a password and sends it to the customer.
        None => json!({}),
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
            let sealed = state
                .cipher
                .seal_str(&password)
                .map_err(ApiError::internal)?;
            json!({ "passwordSealed": sealed })
        }
    };
    refuse_unless_provisioned(&service, "change password")?;
    refuse_if_task_open(&state, &service).await?;
    enqueue(
        &state,
        &admin,
        &service,
        TaskKind::ChangePassword,
        params,
        "Password change queued",
    )
    .await
}
