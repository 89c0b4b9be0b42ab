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

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mpanel_common::DomainName;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId};
use mpanel_common::status::{BillingCycle, ServiceStatus, TaskKind};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::listing::{Params, finish, path_id};
use super::provisioning::{DEFAULT_MAX_RETRIES, queued, refuse_if_task_open};
use super::servers::rfc3339;
use crate::app::AppState;
use crate::store::{NewService, Service, ServiceFilter, ServicePatch};

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

/// The domain of an order or request, canonical; 400 `invalid_domain` naming `domain`.
pub(super) fn domain(raw: &str) -> ApiResult<String> {
    DomainName::parse(raw)
        .map(|d| d.as_str().to_owned())
        .map_err(|e| ApiError::invalid("domain", "invalid_domain", e))
}

/// A 404 that says which field named the missing record.
pub(super) fn unknown(field: &str, entity: &str, id: i64) -> ApiError {
    ApiError {
        field: Some(field.to_owned()),
        ..ApiError::not_found(format!("{entity} {id} not found"))
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

async fn create_service(
    admin: Admin,
    State(state): State<AppState>,
    body: Result<Json<CreateService>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body?;
    let domain = domain(&body.domain)?;
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
        .map_err(|e| not_found_as(e, "customerId", "customer", body.customer_id))?;
    if customer.status != "active" {
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
        .map_err(|e| not_found_as(e, "productId", "product", body.product_id))?;
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
        domain,
        billing_cycle,
        max_retries: DEFAULT_MAX_RETRIES,
    };
    let (service, task) = state
        .store
        .create_service_with_task(&new, &admin.actor())
        .await?;
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
            "jobId": mpanel_common::JobId::for_task(task.id),
        })),
    ))
}

/// Store `NotFound` becomes a 404 naming the request field; anything else passes through.
pub(super) fn not_found_as(
    e: crate::store::StoreError,
    field: &str,
    entity: &str,
    id: i64,
) -> ApiError {
    match e {
        crate::store::StoreError::NotFound { .. } => unknown(field, entity, id),
        other => other.into(),
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

async fn load_service(state: &AppState, raw_id: &str) -> ApiResult<Service> {
    let id = ServiceId::new(path_id(raw_id)?);
    Ok(state.store.get_service(id).await?)
}

async fn get_service(
    _admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ServiceDto>> {
    Ok(Json(load_service(&state, &id).await?.into()))
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

fn rfc3339_ms(field: &str, raw: &str) -> ApiResult<i64> {
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ApiError::invalid(
                field,
                "invalid_time",
                format!(
                    "'{}' is not an RFC 3339 time such as 2026-01-31T00:00:00Z",
                    raw.chars().take(40).collect::<String>()
                ),
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::invalid(field, "invalid_time", "is out of range"))
}

async fn update_service(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<UpdateService>, JsonRejection>,
) -> ApiResult<Json<ServiceDto>> {
    let id = ServiceId::new(path_id(&id)?);
    let Json(body) = body?;
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
    Path(id): Path<String>,
    body: Result<Option<Json<SuspendBody>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, &id).await?;
    let body = body?.map(|Json(b)| b).unwrap_or_default();
    let reason = body
        .reason
        .as_deref()
        .map(|r| super::catalogue::text("reason", r, 500))
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
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, &id).await?;
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
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, &id).await?;
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
    Path(id): Path<String>,
    body: Result<Json<ChangePackageBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, &id).await?;
    let Json(body) = body?;
    let current = state.store.get_product(service.product_id).await?;
    let target = state
        .store
        .get_product(ProductId::new(body.product_id))
        .await
        .map_err(|e| not_found_as(e, "productId", "product", body.product_id))?;
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
    Path(id): Path<String>,
    body: Result<Option<Json<ChangePasswordBody>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let service = load_service(&state, &id).await?;
    let params = match body? {
        // No body: the pipeline generates a password and sends it to the customer.
        None => json!({}),
        Some(Json(ChangePasswordBody { password })) => {
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
