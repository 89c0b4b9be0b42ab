//! The lifecycle layer on both backends: legal and illegal moves, one open task per service
//! (also under a race), the actor in the activity log, suspension reasons that only a payment
//! of an overdue invoice lifts, and an order placed twice.

mod backends;

use mpanel_common::DomainName;
use mpanel_common::ids::{CustomerId, ProductId, ServiceId};
use mpanel_common::status::{BillingCycle, ServiceStatus, SuspensionReason, TaskKind};
use mpanel_controller::jobs::Dispatcher;
use mpanel_controller::lifecycle::{Actor, Lifecycle, LifecycleError, Order};
use mpanel_controller::store::queue::ServiceChange;
use mpanel_controller::store::{DynStore, NewCustomer, NewProduct, Price};

on_both_backends!(
    an_order_and_its_provisioning_are_recorded_with_the_actor,
    an_order_placed_again_names_the_live_service_and_its_task,
    moves_the_state_forbids_write_nothing,
    a_service_has_one_open_task_even_when_requests_race,
    a_payment_lifts_only_an_overdue_suspension,
    a_pending_service_without_an_account_is_cancelled_at_once,
    a_package_change_stays_in_the_server_group,
    only_a_failed_task_is_retried_and_the_retry_is_recorded,
);

async fn catalogue(store: &DynStore) -> (CustomerId, ProductId) {
    let customer = store
        .create_customer(
            &NewCustomer {
                email: "ada@example.com".to_owned(),
                name: "Ada".to_owned(),
            },
            "test",
        )
        .await
        .unwrap();
    (customer.id, product(store, "Basic", "shared").await)
}

async fn product(store: &DynStore, name: &str, group: &str) -> ProductId {
    store
        .create_product(
            &NewProduct {
                name: name.to_owned(),
                server_group: group.to_owned(),
                package_cpanel: "default".to_owned(),
                package_plesk: "Unlimited".to_owned(),
                package_directadmin: "default".to_owned(),
                disk_mb: 1024,
                email_quota_mb: 256,
                databases: 1,
                tax_rate_bp: 0,
                backup_schedule: mpanel_common::status::BackupSchedule::None,
                prices: vec![Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: 999,
                    currency: "USD".to_owned(),
                }],
            },
            "test",
        )
        .await
        .unwrap()
        .id
}

fn lifecycle(store: &DynStore) -> Lifecycle {
    Lifecycle::new(store.clone(), Dispatcher::new())
}

fn order(customer: CustomerId, product: ProductId, domain: &str) -> Order {
    Order {
        customer_id: customer,
        product_id: product,
        domain: DomainName::parse(domain).unwrap(),
        billing_cycle: BillingCycle::Monthly,
    }
}

/// Runs the service's open task to completion as a worker would, applying `change`.
async fn settle(store: &DynStore, change: ServiceChange) {
    let task = store
        .claim_next_task("test-worker", 60_000)
        .await
        .unwrap()
        .expect("an open task");
    store
        .complete_service_task(task.id, "test-worker", change)
        .await
        .unwrap();
}

/// An ordered service, provisioned (`active`).
async fn active_service(store: &DynStore, domain: &str) -> ServiceId {
    let (customer, product) = catalogue(store).await;
    let (service, _) = lifecycle(store)
        .order(&Actor::Admin(1), &order(customer, product, domain))
        .await
        .unwrap();
    settle(store, ServiceChange::Activate).await;
    service.id
}

async fn an_order_and_its_provisioning_are_recorded_with_the_actor(store: DynStore) {
    let (customer, product) = catalogue(&store).await;
    let (service, task) = lifecycle(&store)
        .order(
            &Actor::Customer(customer),
            &order(customer, product, "shop.example"),
        )
        .await
        .unwrap();
    assert_eq!(service.status, ServiceStatus::Pending);
    assert_eq!(task.task_type, TaskKind::Provision);
    let again = lifecycle(&store)
        .provision(&Actor::System, service.id)
        .await
        .unwrap();
    assert_eq!(
        again.id, task.id,
        "provisioning an ordered service follows its open task"
    );
    settle(&store, ServiceChange::Activate).await;

    let suspended = lifecycle(&store)
        .suspend(
            &Actor::Cron("service-suspension"),
            service.id,
            SuspensionReason::Overdue,
            None,
        )
        .await
        .unwrap();
    assert_eq!(suspended.params.0["reason"], "overdue");
    let activity = store
        .list_activity("service", service.id.get())
        .await
        .unwrap();
    let actors: Vec<(&str, &str)> = activity
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str()))
        .collect();
    let customer_actor = format!("customer:{customer}");
    assert!(
        actors.contains(&(customer_actor.as_str(), "service.created")),
        "{actors:?}"
    );
    assert!(
        actors.contains(&("cron:service-suspension", "task.suspend.queued")),
        "{actors:?}"
    );
    let row = activity
        .iter()
        .find(|a| a.action == "task.suspend.queued")
        .unwrap();
    assert_eq!(row.details.0["taskId"], suspended.id.get());
    assert_eq!(row.details.0["reason"], "overdue");
}

async fn an_order_placed_again_names_the_live_service_and_its_task(store: DynStore) {
    let (customer, product) = catalogue(&store).await;
    let life = lifecycle(&store);
    let (first, task) = life
        .order(&Actor::Admin(1), &order(customer, product, "twice.example"))
        .await
        .unwrap();
    match life
        .order(&Actor::Admin(1), &order(customer, product, "twice.example"))
        .await
    {
        Err(LifecycleError::DomainTaken {
            service,
            latest_task,
            ..
        }) => {
            assert_eq!(service, first.id);
            assert_eq!(latest_task, Some(task.id));
        }
        other => panic!("expected DomainTaken, got {other:?}"),
    }
    let all = store
        .list_services(&mpanel_controller::store::ServiceFilter {
            customer_id: Some(customer),
            status: None,
            server_id: None,
            page: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "the second order wrote nothing");
}

async fn moves_the_state_forbids_write_nothing(store: DynStore) {
    let (customer, product) = catalogue(&store).await;
    let life = lifecycle(&store);
    let (pending, _) = life
        .order(&Actor::Admin(1), &order(customer, product, "early.example"))
        .await
        .unwrap();
    // A pending service with its provisioning still open: no suspension, no unsuspension.
    assert!(matches!(
        life.suspend(&Actor::Admin(1), pending.id, SuspensionReason::Admin, None)
            .await,
        Err(LifecycleError::IllegalMove {
            status: ServiceStatus::Pending,
            ..
        })
    ));
    assert!(matches!(
        life.unsuspend(&Actor::Admin(1), pending.id).await,
        Err(LifecycleError::IllegalMove { .. })
    ));
    settle(&store, ServiceChange::Activate).await;
    assert!(matches!(
        life.unsuspend(&Actor::Admin(1), pending.id).await,
        Err(LifecycleError::IllegalMove {
            status: ServiceStatus::Active,
            ..
        })
    ));
    life.terminate(&Actor::Admin(1), pending.id).await.unwrap();
    settle(&store, ServiceChange::Terminate).await;
    for refused in [
        life.terminate(&Actor::Admin(1), pending.id).await,
        life.suspend(&Actor::Admin(1), pending.id, SuspensionReason::Abuse, None)
            .await,
        life.change_password(
            &Actor::Admin(1),
            pending.id,
            None,
            &mpanel_controller::crypto::Cipher::new(&mpanel_controller::config::EncryptionKeys {
                current: [7; 32],
                previous: vec![],
            }),
        )
        .await,
    ] {
        assert!(
            matches!(
                refused,
                Err(LifecycleError::IllegalMove {
                    status: ServiceStatus::Terminated,
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    assert!(matches!(
        life.suspend(
            &Actor::Admin(1),
            ServiceId::new(999_999),
            SuspensionReason::Admin,
            None
        )
        .await,
        Err(LifecycleError::NotFound {
            entity: "service",
            ..
        })
    ));
    let tasks = store
        .list_tasks(&mpanel_controller::store::TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(
        tasks.len(),
        2,
        "only the provision and terminate tasks exist"
    );
}

async fn a_service_has_one_open_task_even_when_requests_race(store: DynStore) {
    let service = active_service(&store, "race.example").await;
    let life = lifecycle(&store);
    let attempts = (0..8).map(|i| {
        let life = life.clone();
        async move {
            if i % 2 == 0 {
                life.suspend(&Actor::Admin(i), service, SuspensionReason::Admin, None)
                    .await
            } else {
                life.terminate(&Actor::Billing, service).await
            }
        }
    });
    let results = futures::future::join_all(attempts).await;
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for lost in results.iter().filter(|r| r.is_err()) {
        match lost {
            Err(LifecycleError::TaskOpen { task, .. }) => assert_eq!(task.id, won[0].id),
            other => panic!("a racing request must see the winner's task: {other:?}"),
        }
    }
}

async fn a_payment_lifts_only_an_overdue_suspension(store: DynStore) {
    let service = active_service(&store, "reasons.example").await;
    let life = lifecycle(&store);
    life.suspend(
        &Actor::Admin(1),
        service,
        SuspensionReason::Abuse,
        Some("phishing kit"),
    )
    .await
    .unwrap();
    settle(
        &store,
        ServiceChange::Suspend {
            reason: SuspensionReason::Abuse.as_str().to_owned(),
        },
    )
    .await;
    match life.unsuspend_after_payment(&Actor::Billing, service).await {
        Err(LifecycleError::IllegalMove { explanation, .. }) => {
            assert!(explanation.contains("abuse"), "{explanation}");
        }
        other => panic!("a payment must not lift an abuse suspension: {other:?}"),
    }
    // An admin may; then the service goes overdue and is suspended for it.
    life.unsuspend(&Actor::Admin(1), service).await.unwrap();
    settle(&store, ServiceChange::Unsuspend).await;
    life.suspend(
        &Actor::Cron("service-suspension"),
        service,
        SuspensionReason::Overdue,
        None,
    )
    .await
    .unwrap();
    settle(
        &store,
        ServiceChange::Suspend {
            reason: SuspensionReason::Overdue.as_str().to_owned(),
        },
    )
    .await;
    assert_eq!(
        store
            .get_service(service)
            .await
            .unwrap()
            .suspension_reason
            .as_deref(),
        Some("overdue")
    );
    let task = life
        .unsuspend_after_payment(&Actor::Billing, service)
        .await
        .unwrap();
    assert_eq!(task.task_type, TaskKind::Unsuspend);
}

async fn a_pending_service_without_an_account_is_cancelled_at_once(store: DynStore) {
    let (customer, product) = catalogue(&store).await;
    let life = lifecycle(&store);
    let (service, task) = life
        .order(
            &Actor::Admin(1),
            &order(customer, product, "changed-mind.example"),
        )
        .await
        .unwrap();
    match life.cancel(&Actor::Customer(customer), service.id).await {
        Err(LifecycleError::TaskOpen { task: open, .. }) => assert_eq!(open.id, task.id),
        other => panic!("cancel must wait for the open provisioning task: {other:?}"),
    }
    let claimed = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    store
        .fail_task(claimed.id, "w", "no eligible server")
        .await
        .unwrap();
    life.cancel(&Actor::Customer(customer), service.id)
        .await
        .unwrap();
    assert_eq!(
        store.get_service(service.id).await.unwrap().status,
        ServiceStatus::Cancelled
    );
    assert!(matches!(
        life.cancel(&Actor::Customer(customer), service.id).await,
        Err(LifecycleError::IllegalMove {
            status: ServiceStatus::Cancelled,
            ..
        })
    ));
}

async fn a_package_change_stays_in_the_server_group(store: DynStore) {
    let service = active_service(&store, "grow.example").await;
    let bigger = product(&store, "Bigger", "shared").await;
    let elsewhere = product(&store, "Reseller", "reseller").await;
    let life = lifecycle(&store);
    assert!(matches!(
        life.change_package(&Actor::Admin(1), service, elsewhere)
            .await,
        Err(LifecycleError::Unprocessable {
            code: "product_group_mismatch",
            ..
        })
    ));
    assert!(matches!(
        life.change_package(&Actor::Admin(1), service, ProductId::new(424_242))
            .await,
        Err(LifecycleError::NotFound {
            field: Some("productId"),
            ..
        })
    ));
    let task = life
        .change_package(&Actor::Admin(1), service, bigger)
        .await
        .unwrap();
    assert_eq!(task.params.0["productId"], bigger.get());
}

async fn only_a_failed_task_is_retried_and_the_retry_is_recorded(store: DynStore) {
    let (customer, product) = catalogue(&store).await;
    let life = lifecycle(&store);
    let (service, task) = life
        .order(&Actor::Admin(1), &order(customer, product, "again.example"))
        .await
        .unwrap();
    assert!(matches!(
        life.retry(&Actor::Admin(2), task.id).await,
        Err(LifecycleError::TaskNotFailed { .. })
    ));
    let claimed = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    store
        .fail_task(claimed.id, "w", "panel down")
        .await
        .unwrap();
    let retried = life.retry(&Actor::Admin(2), task.id).await.unwrap();
    assert_eq!((retried.status.as_str(), retried.attempts), ("pending", 0));
    let activity = store
        .list_activity("service", service.id.get())
        .await
        .unwrap();
    assert!(
        activity
            .iter()
            .any(|a| a.actor == "admin:2" && a.action == "task.provision.retried"),
        "{activity:?}"
    );
    assert!(matches!(
        life.retry(&Actor::Admin(2), mpanel_common::ids::TaskId::new(987_654))
            .await,
        Err(LifecycleError::NotFound { entity: "task", .. })
    ));
}
