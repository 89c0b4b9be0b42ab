//! The life of a service: order, provision, suspend (with a reason), unsuspend, terminate,
//! change package, change password and cancel. The one place that owns the legal moves, "one
//! open task per service", queueing the work and the activity row naming who asked.
//!
//! Every move is checked and written in one transaction (`TaskQueue::enqueue_checked`), so two
//! callers racing for one service (an admin and a webhook, two replicas) cannot both pass the
//! check. A move that needs the panel only queues a task; the job runner carries it out and
//! changes the service's status when the panel has done it. Callers (HTTP handlers, billing,
//! scheduled jobs) say who they are with an [`Actor`] and get typed refusals
//! ([`LifecycleError`]) to present as they see fit: this module knows nothing of HTTP.

use mpanel_common::DomainName;
use mpanel_common::Secret;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId, TaskId};
use mpanel_common::status::{BillingCycle, ServiceStatus, SuspensionReason, TaskKind, TaskStatus};
use serde_json::{Value, json};

use crate::crypto::Cipher;
use crate::jobs::Dispatcher;
use crate::store::queue::{CheckedEnqueue, EnqueueRefusal};
use crate::store::{DynStore, NewService, Page, Service, StoreError, Task, TaskFilter};

/// Attempts a lifecycle task gets before it is `failed` and shown to an admin.
pub const DEFAULT_MAX_RETRIES: i32 = 3;

/// Who asked for a change; the activity log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An admin of the API, by the id of the token they used.
    Admin(i64),
    /// An admin signed in to the dashboard, by their admin user id.
    AdminUser(i64),
    Customer(CustomerId),
    /// The billing side (a payment, a webhook).
    Billing,
    /// A scheduled job, by name.
    Cron(&'static str),
    /// The controller itself.
    System,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Admin(id) => write!(f, "admin:{id}"),
            Actor::AdminUser(id) => write!(f, "admin_user:{id}"),
            Actor::Customer(id) => write!(f, "customer:{id}"),
            Actor::Billing => f.write_str("billing"),
            Actor::Cron(job) => write!(f, "cron:{job}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// Why a lifecycle move was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The named thing does not exist; `field` is the input that named it.
    #[error("{entity} {id} not found")]
    NotFound {
        entity: &'static str,
        id: i64,
        field: Option<&'static str>,
    },
    /// The service's state does not allow the move.
    #[error("service {service} is {status}; {explanation}")]
    IllegalMove {
        service: ServiceId,
        status: ServiceStatus,
        explanation: String,
    },
    /// The service already has an open task; follow that one.
    #[error("service {service} already has an open {} task ({}); wait for it or retry it later", task.task_type, mpanel_common::JobId::for_task(task.id))]
    TaskOpen { service: ServiceId, task: Box<Task> },
    /// A live service of this customer already holds the domain: the same order placed
    /// before, most likely. Names the service and its newest task, to follow.
    #[error("domain: {domain} already has a live service ({service}) of this customer")]
    DomainTaken {
        domain: String,
        service: ServiceId,
        latest_task: Option<TaskId>,
    },
    /// Only a failed task can be retried.
    #[error("{} is {status}; only failed tasks can be retried", mpanel_common::JobId::for_task(*task))]
    TaskNotFailed { task: TaskId, status: TaskStatus },
    /// A valid request the catalogue or the customer's state makes impossible.
    #[error("{message}")]
    Unprocessable {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type LifecycleResult<T> = Result<T, LifecycleError>;

/// An order: a new service for a customer.
#[derive(Debug, Clone)]
pub struct Order {
    pub customer_id: CustomerId,
    pub product_id: ProductId,
    pub domain: DomainName,
    pub billing_cycle: BillingCycle,
}

/// The lifecycle of services, over the store and the job runner's wake-ups. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    store: DynStore,
    dispatcher: Dispatcher,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lifecycle")
    }
}

fn not_found(
    e: StoreError,
    entity: &'static str,
    id: i64,
    field: Option<&'static str>,
) -> LifecycleError {
    match e {
        StoreError::NotFound { .. } => LifecycleError::NotFound { entity, id, field },
        other => other.into(),
    }
}

impl Lifecycle {
    pub fn new(store: DynStore, dispatcher: Dispatcher) -> Self {
        Self { store, dispatcher }
    }

    /// A `pending` service and its provisioning task, in one transaction. The customer must be
    /// active, the product sold with a price for the cycle, and no live service may hold the
    /// domain. When the customer's own live service holds it, the refusal names that service
    /// and its newest task, so a client whose first answer was lost can follow the order it
    /// already placed; another customer's service is not named.
    pub async fn order(&self, actor: &Actor, order: &Order) -> LifecycleResult<(Service, Task)> {
        let customer = self
            .store
            .get_customer(order.customer_id)
            .await
            .map_err(|e| not_found(e, "customer", order.customer_id.get(), Some("customerId")))?;
        if customer.status != mpanel_common::status::CustomerStatus::Active {
            return Err(LifecycleError::Unprocessable {
                field: "customerId",
                code: "customer_closed",
                message: format!("customer {} is {}", customer.id, customer.status),
            });
        }
        let product = self
            .store
            .get_product(order.product_id)
            .await
            .map_err(|e| not_found(e, "product", order.product_id.get(), Some("productId")))?;
        if !product.active {
            return Err(LifecycleError::Unprocessable {
                field: "productId",
                code: "product_inactive",
                message: format!("product {} is no longer sold", product.id),
            });
        }
        if !product
            .prices
            .iter()
            .any(|p| p.billing_cycle == order.billing_cycle)
        {
            return Err(LifecycleError::Unprocessable {
                field: "billingCycle",
                code: "no_price",
                message: format!(
                    "product {} has no {} price",
                    product.id, order.billing_cycle
                ),
            });
        }
        // An admin's order is not paid through checkout: its first period runs from today and
        // the renewal invoice comes before it ends.
        let (_, next_due_at, billing_day) =
            crate::billing::first_period(crate::store::now_ms(), order.billing_cycle);
        let new = NewService {
            customer_id: customer.id,
            product_id: product.id,
            domain: order.domain.as_str().to_owned(),
            billing_cycle: order.billing_cycle,
            max_retries: DEFAULT_MAX_RETRIES,
            next_due_at: Some(next_due_at),
            billing_day: Some(billing_day),
        };
        match self
            .store
            .create_service_with_task(&new, &actor.to_string())
            .await
        {
            Ok((service, task)) => {
                self.dispatcher.wake();
                tracing::info!(service_id = %service.id, task_id = %task.id, actor = %actor, "service ordered");
                Ok((service, task))
            }
            Err(StoreError::Conflict(message)) => {
                match self
                    .store
                    .live_service_of(customer.id, order.domain.as_str())
                    .await?
                {
                    Some(existing) => {
                        let latest_task = self
                            .store
                            .list_tasks(&TaskFilter {
                                service_id: Some(existing.id),
                                page: Page {
                                    limit: 1,
                                    after_id: None,
                                },
                                ..TaskFilter::default()
                            })
                            .await?
                            .first()
                            .map(|t| t.id);
                        Err(LifecycleError::DomainTaken {
                            domain: existing.domain,
                            service: existing.id,
                            latest_task,
                        })
                    }
                    None => Err(StoreError::Conflict(message).into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Queues the provisioning of a `pending` service, or answers with its open task.
    pub async fn provision(&self, actor: &Actor, service: ServiceId) -> LifecycleResult<Task> {
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::Provision,
            params: json!({}),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Pending],
            suspension_reason: None,
            details: Value::Null,
        };
        match self
            .enqueue(req, "only a pending service can be provisioned")
            .await
        {
            Err(LifecycleError::TaskOpen { task, .. }) if task.task_type == TaskKind::Provision => {
                Ok(*task)
            }
            other => other,
        }
    }

    /// Queues a suspension; the reason is kept on the service once the panel has done it.
    pub async fn suspend(
        &self,
        actor: &Actor,
        service: ServiceId,
        reason: SuspensionReason,
        note: Option<&str>,
    ) -> LifecycleResult<Task> {
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::Suspend,
            params: json!({ "reason": reason.as_str(), "note": note }),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Active],
            suspension_reason: None,
            details: json!({ "reason": reason.as_str() }),
        };
        self.enqueue(req, "only an active service can be suspended")
            .await
    }

    /// Queues lifting a suspension, whatever its reason (an admin's decision).
    pub async fn unsuspend(&self, actor: &Actor, service: ServiceId) -> LifecycleResult<Task> {
        self.unsuspend_if(actor, service, None).await
    }

    /// Queues lifting a suspension for non-payment only: what a payment does. A service
    /// suspended for abuse or a dispute stays suspended (`IllegalMove`).
    pub async fn unsuspend_after_payment(
        &self,
        actor: &Actor,
        service: ServiceId,
    ) -> LifecycleResult<Task> {
        self.unsuspend_if(actor, service, Some(SuspensionReason::Overdue))
            .await
    }

    async fn unsuspend_if(
        &self,
        actor: &Actor,
        service: ServiceId,
        reason: Option<SuspensionReason>,
    ) -> LifecycleResult<Task> {
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::Unsuspend,
            params: json!({}),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Suspended],
            suspension_reason: reason.map(SuspensionReason::as_str),
            details: Value::Null,
        };
        let explanation = match reason {
            Some(r) => format!("only a service suspended as '{r}' is unsuspended by this"),
            None => "only a suspended service can be unsuspended".to_owned(),
        };
        self.enqueue(req, &explanation).await
    }

    /// Queues removing the account from its server; the service ends `terminated`.
    pub async fn terminate(&self, actor: &Actor, service: ServiceId) -> LifecycleResult<Task> {
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::Terminate,
            params: json!({}),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[
                ServiceStatus::Pending,
                ServiceStatus::Active,
                ServiceStatus::Suspended,
            ],
            suspension_reason: None,
            details: Value::Null,
        };
        self.enqueue(req, "it has already ended").await
    }

    /// Queues terminating a service suspended for non-payment, after a final backup it can be
    /// restored from: the task takes the backup first and removes the account only once the
    /// archive exists (a failed backup fails the task and keeps the account). The customer is
    /// told, naming `invoice`, once the account is gone. Refused unless the service is still
    /// suspended as `overdue`.
    pub async fn terminate_for_non_payment(
        &self,
        actor: &Actor,
        service: ServiceId,
        invoice: i64,
    ) -> LifecycleResult<Task> {
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::Terminate,
            params: json!({ "finalBackup": true, "noticeInvoiceId": invoice }),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Suspended],
            suspension_reason: Some(SuspensionReason::Overdue.as_str()),
            details: json!({ "reason": "overdue", "finalBackup": true, "invoiceId": invoice }),
        };
        self.enqueue(
            req,
            "only a service suspended for non-payment is terminated for it",
        )
        .await
    }

    /// Queues bringing a terminated service back from one of its completed backups, on the
    /// server that holds the archive. Refused when the backup is another service's or not
    /// completed, or when a live service holds the domain meanwhile.
    pub async fn restore(
        &self,
        actor: &Actor,
        service: ServiceId,
        backup: i64,
    ) -> LifecycleResult<Task> {
        let current = self
            .store
            .get_service(service)
            .await
            .map_err(|e| not_found(e, "service", service.get(), None))?;
        let row = match self.store.get_backup(backup).await {
            Ok(row) if row.service_id == service => row,
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                return Err(LifecycleError::NotFound {
                    entity: "backup",
                    id: backup,
                    field: Some("backupId"),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if row.status != "completed" {
            return Err(LifecycleError::Unprocessable {
                field: "backupId",
                code: "backup_unavailable",
                message: format!(
                    "backupId: backup {backup} is {}; only a completed backup can be restored",
                    row.status
                ),
            });
        }
        if current.status == ServiceStatus::Terminated
            && let Some(holder) = self.store.live_service_by_domain(&current.domain).await?
        {
            return Err(LifecycleError::Unprocessable {
                field: "domain",
                code: "domain_taken",
                message: format!(
                    "{} is held by live service {holder}; the terminated service cannot come back beside it",
                    current.domain
                ),
            });
        }
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::Restore,
            params: json!({ "backupId": backup }),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Terminated],
            suspension_reason: None,
            details: json!({ "backupId": backup, "location": row.location }),
        };
        self.enqueue(req, "only a terminated service is restored from a backup")
            .await
    }

    /// Queues moving the service to another product in the same server group.
    pub async fn change_package(
        &self,
        actor: &Actor,
        service: ServiceId,
        product: ProductId,
    ) -> LifecycleResult<Task> {
        let current = self
            .store
            .get_service(service)
            .await
            .map_err(|e| not_found(e, "service", service.get(), None))?;
        let from = self.store.get_product(current.product_id).await?;
        let target = self
            .store
            .get_product(product)
            .await
            .map_err(|e| not_found(e, "product", product.get(), Some("productId")))?;
        if target.id == from.id {
            return Err(LifecycleError::Unprocessable {
                field: "productId",
                code: "same_product",
                message: format!("service {service} is already on product {}", target.id),
            });
        }
        if target.server_group != from.server_group {
            return Err(LifecycleError::Unprocessable {
                field: "productId",
                code: "product_group_mismatch",
                message: format!(
                    "product {} is in group '{}', the service's product in '{}'; a package change stays on the same servers",
                    target.id, target.server_group, from.server_group
                ),
            });
        }
        if !target.active {
            return Err(LifecycleError::Unprocessable {
                field: "productId",
                code: "product_inactive",
                message: format!("product {} is no longer sold", target.id),
            });
        }
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::ChangePackage,
            params: json!({ "productId": target.id.get(), "fromProductId": from.id.get() }),
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Active, ServiceStatus::Suspended],
            suspension_reason: None,
            details: json!({ "productId": target.id.get(), "fromProductId": from.id.get() }),
        };
        self.enqueue(
            req,
            "only an active or suspended service can change package",
        )
        .await
    }

    /// Queues a new panel password: the given one (sealed at once), or one the pipeline
    /// generates and sends to the customer.
    pub async fn change_password(
        &self,
        actor: &Actor,
        service: ServiceId,
        password: Option<&Secret<String>>,
        cipher: &Cipher,
    ) -> LifecycleResult<Task> {
        let params = match password {
            None => json!({}),
            Some(p) => {
                let sealed = cipher.seal_str(p.expose()).map_err(|e| {
                    StoreError::Corrupt(format!("cannot seal the new password: {e}"))
                })?;
                json!({ "passwordSealed": sealed })
            }
        };
        let req = CheckedEnqueue {
            service,
            kind: TaskKind::ChangePassword,
            params,
            max_retries: DEFAULT_MAX_RETRIES,
            actor: &actor.to_string(),
            allowed_from: &[ServiceStatus::Active, ServiceStatus::Suspended],
            suspension_reason: None,
            details: Value::Null,
        };
        self.enqueue(
            req,
            "only an active or suspended service can change password",
        )
        .await
    }

    /// Queues a failed task again with a fresh attempt budget, unless its service has another
    /// task open meanwhile.
    pub async fn retry(&self, actor: &Actor, task: TaskId) -> LifecycleResult<Task> {
        let failed = self
            .store
            .get_task(task)
            .await
            .map_err(|e| not_found(e, "task", task.get(), None))?;
        if failed.status != TaskStatus::Failed {
            return Err(LifecycleError::TaskNotFailed {
                task,
                status: failed.status,
            });
        }
        if let Some(open) = self.store.open_task_for_service(failed.service_id).await? {
            return Err(LifecycleError::TaskOpen {
                service: failed.service_id,
                task: Box::new(open),
            });
        }
        let requeued = self
            .store
            .requeue_failed_task(task, &actor.to_string())
            .await?;
        self.dispatcher.wake();
        tracing::info!(task_id = %task, actor = %actor, "failed task re-queued");
        Ok(requeued)
    }

    /// Ends a `pending` service that has no account yet (its provisioning failed or was never
    /// queued): `cancelled` at once, nothing to remove from a server.
    pub async fn cancel(&self, actor: &Actor, service: ServiceId) -> LifecycleResult<()> {
        match self
            .store
            .cancel_unprovisioned(service, &actor.to_string())
            .await
            .map_err(|e| not_found(e, "service", service.get(), None))?
        {
            Ok(()) => {
                tracing::info!(service_id = %service, actor = %actor, "service cancelled");
                Ok(())
            }
            Err(refusal) => Err(refused(
                service,
                refusal,
                "only a pending service without an account can be cancelled; terminate it instead",
            )),
        }
    }

    async fn enqueue(&self, req: CheckedEnqueue<'_>, explanation: &str) -> LifecycleResult<Task> {
        let (service, kind) = (req.service, req.kind);
        match self
            .store
            .enqueue_checked(&req)
            .await
            .map_err(|e| not_found(e, "service", service.get(), None))?
        {
            Ok(task) => {
                self.dispatcher.wake();
                tracing::info!(service_id = %service, task_id = %task.id, kind = kind.as_str(), actor = req.actor, "lifecycle task queued");
                Ok(task)
            }
            Err(refusal) => Err(refused(service, refusal, explanation)),
        }
    }
}

fn refused(service: ServiceId, refusal: EnqueueRefusal, explanation: &str) -> LifecycleError {
    match refusal {
        EnqueueRefusal::TaskOpen(task) => LifecycleError::TaskOpen { service, task },
        EnqueueRefusal::Status {
            status,
            suspension_reason,
        } => LifecycleError::IllegalMove {
            service,
            status,
            explanation: match suspension_reason {
                Some(r) if status == ServiceStatus::Suspended => {
                    format!("suspended as '{r}'; {explanation}")
                }
                _ => explanation.to_owned(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_named_for_the_activity_log() {
        assert_eq!(Actor::Admin(7).to_string(), "admin:7");
        assert_eq!(
            Actor::Customer(CustomerId::new(3)).to_string(),
            "customer:3"
        );
        assert_eq!(Actor::Billing.to_string(), "billing");
        assert_eq!(
            Actor::Cron("service-suspension").to_string(),
            "cron:service-suspension"
        );
        assert_eq!(Actor::System.to_string(), "system");
    }
}
