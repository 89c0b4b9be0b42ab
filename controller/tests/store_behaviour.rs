//! One behaviour suite for the storage layer, run against PostgreSQL and against SQLite.
//! Each test gets its own database (a fresh PostgreSQL database or a fresh SQLite file).

mod backends;

use mpanel_common::ids::{CustomerId, ProductId, ServerId, ServiceId};
use mpanel_common::status::{
    BillingCycle, CustomerStatus, ServerStatus, ServiceStatus, TaskKind, TaskStatus,
};
use mpanel_common::username::PanelKind;
use mpanel_controller::store::lease_queue::{LeasedRow, PROVISIONING, Release};
use mpanel_controller::store::{
    self, CustomerPatch, DynStore, NewCustomer, NewProduct, NewServer, NewService, Page, Price,
    ProductPatch, ServerPatch, ServiceFilter, StepRecord, StoreError, TaskFilter,
};

/// A provisioning task as the shared lease-queue statements address it.
fn leased(task: mpanel_common::ids::TaskId, holder: &str) -> LeasedRow<'_> {
    LeasedRow {
        queue: &PROVISIONING,
        id: task.get(),
        holder,
    }
}

on_both_backends!(
    migrations_can_run_again_without_changes,
    servers_round_trip_with_every_column,
    duplicate_server_hostname_is_a_conflict,
    server_patch_changes_only_the_given_fields,
    deleting_a_server_removes_it_and_unknown_ids_are_not_found,
    deleting_a_server_with_services_is_refused,
    customer_email_is_unique,
    products_keep_their_prices_per_cycle,
    products_are_read_each_with_its_own_prices_in_order,
    a_product_priced_twice_for_one_cycle_writes_nothing,
    a_product_patch_changes_only_the_given_fields_and_replaces_prices,
    a_customer_patch_changes_only_the_given_fields,
    a_service_and_its_task_are_created_together,
    a_second_live_service_for_a_domain_writes_nothing,
    a_service_for_an_unknown_customer_writes_nothing,
    concurrent_orders_for_one_domain_create_exactly_one_service,
    tasks_list_newest_first_with_filters_and_cursor,
    admin_tokens_authenticate_until_revoked,
    changes_and_their_activity_rows_are_written_together,
    each_change_records_what_it_changed_before_and_after,
    a_refused_change_writes_no_activity_row,
    concurrent_claimers_never_take_the_same_task,
    a_claim_says_whether_another_task_was_due,
    credentials_and_service_secrets_are_kept_once_in_one_write,
    placement_and_credentials_are_written_together_or_not_at_all,
    an_expired_lease_lets_another_worker_take_over,
    step_results_are_recorded_under_the_lease,
    the_completion_stores_the_last_step_record_under_the_lease,
    provisioning_reads_the_product_and_the_customer_email_in_one,
    a_released_task_waits_until_it_is_due,
    a_task_released_to_wait_keeps_its_retry_budget,
    a_failed_task_is_requeued_with_a_fresh_budget,
    a_restarted_node_takes_back_only_its_own_earlier_rows,
);

fn new_server(hostname: &str) -> NewServer {
    NewServer {
        hostname: hostname.to_owned(),
        ip_address: "192.0.2.10".to_owned(),
        control_panel: PanelKind::Cpanel,
        control_panel_url: format!("https://{hostname}:2087"),
        max_accounts: 500,
        location: "fra1".to_owned(),
        server_group: "shared".to_owned(),
        nameserver1: "ns1.example.net".to_owned(),
        nameserver2: "ns2.example.net".to_owned(),
        dns_provider: mpanel_common::status::DnsProvider::Panel,
        ssl_provider: mpanel_common::status::SslProvider::Acme,
    }
}

async fn customer(store: &DynStore, email: &str) -> CustomerId {
    store
        .create_customer(
            &NewCustomer {
                email: email.to_owned(),
                name: "Ada".to_owned(),
            },
            "test",
        )
        .await
        .expect("customer")
        .id
}

async fn product(store: &DynStore, name: &str) -> ProductId {
    store
        .create_product(
            &NewProduct {
                name: name.to_owned(),
                server_group: "shared".to_owned(),
                package_cpanel: "default".to_owned(),
                package_plesk: "Unlimited".to_owned(),
                package_directadmin: "default".to_owned(),
                disk_mb: 10_240,
                email_quota_mb: 1024,
                databases: 2,
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
        .expect("product")
        .id
}

fn order(customer_id: CustomerId, product_id: ProductId, domain: &str) -> NewService {
    NewService {
        customer_id,
        product_id,
        domain: domain.to_owned(),
        billing_cycle: BillingCycle::Monthly,
        max_retries: 3,
        next_due_at: None,
        billing_day: None,
    }
}

async fn count(store: &DynStore, status: Option<TaskStatus>) -> usize {
    store
        .list_tasks(&TaskFilter {
            status,
            ..TaskFilter::default()
        })
        .await
        .expect("list tasks")
        .len()
}

async fn migrations_can_run_again_without_changes(store: DynStore) {
    store.migrate().await.expect("second migrate is a no-op");
    store.ping().await.expect("ping");
    assert!(store.list_servers().await.unwrap().is_empty());
}

async fn servers_round_trip_with_every_column(store: DynStore) {
    let created = store
        .create_server(&new_server("web1.example.net"), "test")
        .await
        .unwrap();
    let fetched = store.get_server(created.id).await.unwrap();
    assert_eq!(fetched.hostname, "web1.example.net");
    assert_eq!(fetched.ip_address, "192.0.2.10");
    assert_eq!(fetched.control_panel, PanelKind::Cpanel);
    assert_eq!(fetched.control_panel_url, "https://web1.example.net:2087");
    assert_eq!(fetched.max_accounts, 500);
    assert_eq!(fetched.status, ServerStatus::Active);
    assert_eq!(fetched.location, "fra1");
    assert_eq!(fetched.server_group, "shared");
    assert_eq!(
        (fetched.nameserver1.as_str(), fetched.nameserver2.as_str()),
        ("ns1.example.net", "ns2.example.net")
    );
    assert!(fetched.created_at > 1_600_000_000_000);
    store
        .create_server(&new_server("web2.example.net"), "test")
        .await
        .unwrap();
    let all = store.list_servers().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.hostname.as_str()).collect::<Vec<_>>(),
        ["web1.example.net", "web2.example.net"]
    );
}

async fn duplicate_server_hostname_is_a_conflict(store: DynStore) {
    store
        .create_server(&new_server("dup.example.net"), "test")
        .await
        .unwrap();
    let err = store
        .create_server(&new_server("dup.example.net"), "test")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.list_servers().await.unwrap().len(), 1);
}

async fn server_patch_changes_only_the_given_fields(store: DynStore) {
    let s = store
        .create_server(&new_server("patch.example.net"), "test")
        .await
        .unwrap();
    let patch = ServerPatch {
        status: Some(ServerStatus::Draining),
        max_accounts: Some(42),
        ..ServerPatch::default()
    };
    let updated = store.update_server(s.id, &patch, "test").await.unwrap();
    assert_eq!(updated.status, ServerStatus::Draining);
    assert_eq!(updated.max_accounts, 42);
    assert_eq!(updated.hostname, s.hostname);
    assert_eq!(updated.location, s.location);
    assert!(updated.updated_at >= s.updated_at);
    let missing = store
        .update_server(ServerId::from(9_999), &patch, "test")
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }));
}

async fn deleting_a_server_removes_it_and_unknown_ids_are_not_found(store: DynStore) {
    let s = store
        .create_server(&new_server("gone.example.net"), "test")
        .await
        .unwrap();
    store.delete_server(s.id, "test").await.unwrap();
    assert!(matches!(
        store.get_server(s.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_server(s.id, "test").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn deleting_a_server_with_services_is_refused(store: DynStore) {
    let s = store
        .create_server(&new_server("busy.example.net"), "test")
        .await
        .unwrap();
    let c = customer(&store, "busy@example.com").await;
    let p = product(&store, "Busy").await;
    let (service, _) = store
        .create_service_with_task(&order(c, p, "busy.example.com"), "test")
        .await
        .unwrap();
    store.assign_server(service.id, s.id).await.unwrap();
    let err = store.delete_server(s.id, "test").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.get_server(s.id).await.is_ok());
}

async fn customer_email_is_unique(store: DynStore) {
    customer(&store, "ada@example.com").await;
    let err = store
        .create_customer(
            &NewCustomer {
                email: "ada@example.com".into(),
                name: "Other".into(),
            },
            "test",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    assert_eq!(
        store.list_customers(Page::default()).await.unwrap().len(),
        1
    );
}

async fn products_keep_their_prices_per_cycle(store: DynStore) {
    let new = NewProduct {
        name: "Pro".into(),
        server_group: "shared".into(),
        package_cpanel: "pro".into(),
        package_plesk: "Pro Plan".into(),
        package_directadmin: "pro".into(),
        disk_mb: 20_000,
        email_quota_mb: 2048,
        databases: 5,
        tax_rate_bp: 0,
        backup_schedule: mpanel_common::status::BackupSchedule::None,
        prices: vec![
            Price {
                billing_cycle: BillingCycle::Monthly,
                amount_minor: 1999,
                currency: "USD".into(),
            },
            Price {
                billing_cycle: BillingCycle::Annually,
                amount_minor: 19_999,
                currency: "USD".into(),
            },
        ],
    };
    let p = store.create_product(&new, "test").await.unwrap();
    let fetched = store.get_product(p.id).await.unwrap();
    assert_eq!(fetched.package_for(PanelKind::Plesk), "Pro Plan");
    assert_eq!(fetched.prices.len(), 2);
    assert!(fetched.prices.contains(&new.prices[1]));
    assert_eq!(store.list_products().await.unwrap()[0].prices.len(), 2);
}

async fn products_are_read_each_with_its_own_prices_in_order(store: DynStore) {
    let price = |billing_cycle, amount_minor, currency: &str| Price {
        billing_cycle,
        amount_minor,
        currency: currency.to_owned(),
    };
    let priced = |name: &str, prices: Vec<Price>| NewProduct {
        name: name.into(),
        server_group: "shared".into(),
        package_cpanel: "default".into(),
        package_plesk: "Unlimited".into(),
        package_directadmin: "default".into(),
        disk_mb: 1000,
        email_quota_mb: 100,
        databases: 1,
        tax_rate_bp: 0,
        backup_schedule: mpanel_common::status::BackupSchedule::None,
        prices,
    };
    let three = store
        .create_product(
            &priced(
                "Three",
                vec![
                    price(BillingCycle::Quarterly, 2500, "USD"),
                    price(BillingCycle::Monthly, 900, "USD"),
                    price(BillingCycle::Monthly, 800, "EUR"),
                ],
            ),
            "test",
        )
        .await
        .unwrap();
    let none = store
        .create_product(&priced("None", vec![]), "test")
        .await
        .unwrap();
    let one = store
        .create_product(
            &priced("One", vec![price(BillingCycle::Annually, 9900, "USD")]),
            "test",
        )
        .await
        .unwrap();
    // By billing cycle, then currency; a product's own prices only.
    let three_prices = vec![
        price(BillingCycle::Monthly, 800, "EUR"),
        price(BillingCycle::Monthly, 900, "USD"),
        price(BillingCycle::Quarterly, 2500, "USD"),
    ];
    assert_eq!(three.prices, three_prices);
    assert_eq!(
        store.get_product(three.id).await.unwrap().prices,
        three_prices
    );
    let unpriced = store.get_product(none.id).await.unwrap();
    assert_eq!((unpriced.name.as_str(), unpriced.prices.len()), ("None", 0));
    let listed: Vec<(String, Vec<Price>)> = store
        .list_products()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.prices))
        .collect();
    assert_eq!(
        listed,
        [
            ("Three".to_owned(), three_prices),
            ("None".to_owned(), vec![]),
            (
                "One".to_owned(),
                vec![price(BillingCycle::Annually, 9900, "USD")]
            ),
        ]
    );
    assert_eq!(one.prices.len(), 1);
    assert!(matches!(
        store.get_product(ProductId::from(999_999)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_product_priced_twice_for_one_cycle_writes_nothing(store: DynStore) {
    let price = Price {
        billing_cycle: BillingCycle::Monthly,
        amount_minor: 100,
        currency: "EUR".into(),
    };
    let new = NewProduct {
        name: "Twice".into(),
        server_group: "shared".into(),
        package_cpanel: "a".into(),
        package_plesk: "b".into(),
        package_directadmin: "c".into(),
        disk_mb: 1,
        email_quota_mb: 1,
        databases: 1,
        tax_rate_bp: 0,
        backup_schedule: mpanel_common::status::BackupSchedule::None,
        prices: vec![price.clone(), price],
    };
    assert!(matches!(
        store.create_product(&new, "test").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store.list_products().await.unwrap().is_empty(),
        "the product row must roll back too"
    );
}

async fn a_service_and_its_task_are_created_together(store: DynStore) {
    let c = customer(&store, "svc@example.com").await;
    let p = product(&store, "Basic").await;
    let (service, task) = store
        .create_service_with_task(&order(c, p, "example.com"), "test")
        .await
        .unwrap();
    assert_eq!(service.status, ServiceStatus::Pending);
    assert_eq!(service.server_id, None);
    assert_eq!(task.service_id, service.id);
    assert_eq!(task.task_type, TaskKind::Provision);
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!((task.attempts, task.max_retries), (0, 3));
    assert!(task.result.0.steps.is_empty());
    assert_eq!(
        task.idempotency_key,
        format!("provision:service:{}", service.id)
    );
    let open = store
        .open_task_for_service(service.id)
        .await
        .unwrap()
        .expect("open task");
    assert_eq!(open.id, task.id);
    assert_eq!(
        store.get_task(task.id).await.unwrap().service_id,
        service.id
    );
    assert!(
        store
            .open_task_for_service(ServiceId::from(9_999))
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_second_live_service_for_a_domain_writes_nothing(store: DynStore) {
    let c = customer(&store, "twice@example.com").await;
    let p = product(&store, "Basic").await;
    store
        .create_service_with_task(&order(c, p, "twice.example"), "test")
        .await
        .unwrap();
    let err = store
        .create_service_with_task(&order(c, p, "twice.example"), "test")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store
            .list_services(&ServiceFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(count(&store, None).await, 1);
}

async fn a_service_for_an_unknown_customer_writes_nothing(store: DynStore) {
    let p = product(&store, "Basic").await;
    let err = store
        .create_service_with_task(&order(CustomerId::from(4242), p, "orphan.example"), "test")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        store
            .list_services(&ServiceFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(count(&store, None).await, 0);
}

async fn concurrent_orders_for_one_domain_create_exactly_one_service(store: DynStore) {
    let c = customer(&store, "race@example.com").await;
    let p = product(&store, "Basic").await;
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_service_with_task(&order(c, p, "race.example"), "test")
                .await
        })
    });
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        store
            .list_services(&ServiceFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(count(&store, Some(TaskStatus::Pending)).await, 1);
}

async fn tasks_list_newest_first_with_filters_and_cursor(store: DynStore) {
    let c = customer(&store, "list@example.com").await;
    let p = product(&store, "Basic").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (service, task) = store
            .create_service_with_task(&order(c, p, &format!("site{i}.example")), "test")
            .await
            .unwrap();
        ids.push((service.id, task.id));
    }
    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    let listed: Vec<_> = all.iter().map(|t| t.id).collect();
    let mut expected: Vec<_> = ids.iter().map(|(_, t)| *t).collect();
    expected.reverse();
    assert_eq!(listed, expected);

    let first_page = store
        .list_tasks(&TaskFilter {
            page: Page {
                limit: 2,
                after_id: None,
            },
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let next_page = store
        .list_tasks(&TaskFilter {
            page: Page {
                limit: 2,
                after_id: Some(first_page[1].id.get()),
            },
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next_page.iter().map(|t| t.id).collect::<Vec<_>>(),
        expected[2..4]
    );

    let for_service = store
        .list_tasks(&TaskFilter {
            service_id: Some(ids[1].0),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(for_service.len(), 1);
    assert_eq!(for_service[0].id, ids[1].1);
    assert!(
        store
            .list_tasks(&TaskFilter {
                status: Some(TaskStatus::Failed),
                ..TaskFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

async fn admin_tokens_authenticate_until_revoked(store: DynStore) {
    let token = store.create_admin_token("ops", "hash-1").await.unwrap();
    let found = store
        .authenticate_admin_token("hash-1")
        .await
        .unwrap()
        .expect("live token");
    assert_eq!(found.id, token.id);
    assert!(
        store
            .authenticate_admin_token("hash-2")
            .await
            .unwrap()
            .is_none()
    );
    store.revoke_admin_token(token.id).await.unwrap();
    assert!(
        store
            .authenticate_admin_token("hash-1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.revoke_admin_token(token.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn changes_and_their_activity_rows_are_written_together(store: DynStore) {
    let s = store
        .create_server(&new_server("audit.example.net"), "admin:1")
        .await
        .unwrap();
    let patch = ServerPatch {
        status: Some(ServerStatus::Disabled),
        ..ServerPatch::default()
    };
    store.update_server(s.id, &patch, "admin:2").await.unwrap();
    let log = store.list_activity("server", s.id.get()).await.unwrap();
    let actions: Vec<_> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [("admin:1", "server.created"), ("admin:2", "server.updated")]
    );
    assert_eq!(log[1].details.0["status"], "disabled");
    // A refused change leaves no activity row behind.
    let _ = store
        .create_server(&new_server("audit.example.net"), "admin:3")
        .await
        .unwrap_err();
    assert_eq!(
        store
            .list_activity("server", s.id.get())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// The newest activity row of a record.
async fn last_row(store: &DynStore, kind: &str, id: i64) -> store::ActivityEntry {
    store
        .list_activity(kind, id)
        .await
        .unwrap()
        .pop()
        .unwrap_or_else(|| panic!("no activity for {kind}:{id}"))
}

fn sides(e: &store::ActivityEntry) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    (
        e.before_state.as_ref().map(|j| j.0.clone()),
        e.after_state.as_ref().map(|j| j.0.clone()),
    )
}

async fn each_change_records_what_it_changed_before_and_after(store: DynStore) {
    use serde_json::json;

    // A server made, then changed: the creation shows the new record, the update only the
    // fields it changed, as they were and as they are.
    let s = store
        .create_server(&new_server("before-after.example.net"), "admin:1")
        .await
        .unwrap();
    let created = last_row(&store, "server", s.id.get()).await;
    assert_eq!(created.action, "server.created");
    let (before, after) = sides(&created);
    assert_eq!(before, None);
    let after = after.expect("a creation has an after");
    assert_eq!(after["hostname"], "before-after.example.net");
    assert_eq!(after["status"], "active");
    assert_eq!(after["maxAccounts"], 500);
    let patch = ServerPatch {
        status: Some(ServerStatus::Draining),
        max_accounts: Some(20),
        location: Some("fra1".to_owned()),
        ..ServerPatch::default()
    };
    store.update_server(s.id, &patch, "admin:2").await.unwrap();
    let updated = last_row(&store, "server", s.id.get()).await;
    assert_eq!(
        (updated.actor.as_str(), updated.action.as_str()),
        ("admin:2", "server.updated")
    );
    assert_eq!(
        sides(&updated),
        (
            Some(json!({ "status": "active", "maxAccounts": 500 })),
            Some(json!({ "status": "draining", "maxAccounts": 20 })),
        ),
        "an unchanged field (location) is left out"
    );

    // A service ordered, provisioned, suspended: each completed task's row says what it did to
    // the service's status.
    let c = customer(&store, "before-after@example.com").await;
    let p = product(&store, "BeforeAfter").await;
    let (service, _) = store
        .create_service_with_task(&order(c, p, "before-after.example"), "admin:1")
        .await
        .unwrap();
    let ordered = last_row(&store, "service", service.id.get()).await;
    assert_eq!(ordered.action, "service.created");
    assert_eq!(ordered.before_state, None);
    assert_eq!(ordered.after_state.as_ref().unwrap().0["status"], "pending");
    store
        .set_service_credentials(service.id, "beforeaf", "sealed-panel-password")
        .await
        .unwrap();
    let credentials = last_row(&store, "service", service.id.get()).await;
    assert_eq!(credentials.action, "service.credentials_set");
    assert_eq!(
        credentials.after_state.as_ref().unwrap().0["username"],
        "beforeaf"
    );
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    store
        .complete_service_task(task.id, "w", store::queue::ServiceChange::Activate)
        .await
        .unwrap();
    let activated = last_row(&store, "service", service.id.get()).await;
    assert_eq!(
        (activated.actor.as_str(), activated.action.as_str()),
        ("system", "service.activated")
    );
    assert_eq!(
        sides(&activated),
        (
            Some(json!({ "status": "pending" })),
            Some(json!({ "status": "active" }))
        )
    );
    assert_eq!(activated.details.0["taskId"], task.id.get());
    assert_eq!(activated.details.0["task"], "provision");
    let queued = store
        .enqueue_checked(&store::queue::CheckedEnqueue {
            service: service.id,
            kind: TaskKind::Suspend,
            params: json!({ "reason": "abuse" }),
            max_retries: 3,
            actor: "admin:3",
            allowed_from: &[ServiceStatus::Active],
            suspension_reason: None,
            details: json!({ "reason": "abuse" }),
        })
        .await
        .unwrap()
        .expect("an active service may be suspended");
    let asked = last_row(&store, "service", service.id.get()).await;
    assert_eq!(
        (asked.actor.as_str(), asked.action.as_str()),
        ("admin:3", "task.suspend.queued")
    );
    assert_eq!(
        sides(&asked),
        (
            Some(json!({ "openTask": null })),
            Some(json!({ "openTask": { "id": queued.id.get(), "kind": "suspend" } }))
        )
    );
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    assert_eq!(task.id, queued.id);
    store
        .complete_service_task(
            task.id,
            "w",
            store::queue::ServiceChange::Suspend {
                reason: "abuse".to_owned(),
            },
        )
        .await
        .unwrap();
    let suspended = last_row(&store, "service", service.id.get()).await;
    assert_eq!(suspended.action, "service.suspended");
    assert_eq!(
        sides(&suspended),
        (
            Some(json!({ "status": "active", "suspensionReason": null })),
            Some(json!({ "status": "suspended", "suspensionReason": "abuse" }))
        )
    );

    // An invoice paid in full: its status, amount paid and paid time.
    let now = store::now_ms();
    let invoice = store
        .create_invoice(
            &store::billing::NewInvoice {
                customer_id: c.get(),
                service_id: None,
                period_start: None,
                period_end: None,
                subtotal_minor: 1500,
                tax_minor: 0,
                tax_rate_bp: 0,
                currency: "USD".to_owned(),
                lines: vec![store::billing::InvoiceLine {
                    description: "Setup".to_owned(),
                    amount: 1500,
                }],
                issued_at: now,
                due_at: now,
                next_charge_at: None,
            },
            &[],
            "cron:recurring-billing",
        )
        .await
        .unwrap()
        .expect("a new invoice");
    let issued = last_row(&store, "invoice", invoice.id).await;
    assert_eq!(issued.action, "invoice.created");
    assert_eq!(issued.before_state, None);
    let issued_after = issued.after_state.as_ref().unwrap().0.clone();
    assert_eq!(
        (&issued_after["status"], &issued_after["total"]),
        (&json!("unpaid"), &json!(1500))
    );
    store
        .record_payment(
            &store::billing::NewPayment {
                invoice_id: invoice.id,
                amount_minor: 1500,
                currency: "USD".to_owned(),
                provider: "offline".to_owned(),
                provider_ref: "transfer-77".to_owned(),
                method: "bank_transfer".to_owned(),
                reference: None,
                now,
            },
            "admin:4",
            None,
        )
        .await
        .unwrap();
    let paid = last_row(&store, "invoice", invoice.id).await;
    assert_eq!(
        (paid.actor.as_str(), paid.action.as_str()),
        ("admin:4", "invoice.payment")
    );
    let (before, after) = sides(&paid);
    let (before, after) = (before.unwrap(), after.unwrap());
    assert_eq!(before["status"], "unpaid");
    assert_eq!(before["amountPaid"], 0);
    assert_eq!(before["paidAt"], serde_json::Value::Null);
    assert_eq!(after["status"], "paid");
    assert_eq!(after["amountPaid"], 1500);
    assert!(after["paidAt"].is_string(), "{after}");
    assert!(
        before.get("number").is_none(),
        "the number did not change: {before}"
    );

    // A token revoked: its revokedAt, and never the token's hash.
    let token = store
        .create_scoped_admin_token(
            &store::NewAdminToken {
                name: "ci".to_owned(),
                token_hash: "hash-of-a-secret-token".to_owned(),
                scopes: "read".to_owned(),
                expires_at: None,
            },
            "admin:1",
        )
        .await
        .unwrap();
    store
        .revoke_admin_token_as(token.id, "admin:5")
        .await
        .unwrap();
    let revoked = last_row(&store, "admin_token", token.id).await;
    assert_eq!(revoked.action, "admin_token.revoked");
    let (before, after) = sides(&revoked);
    assert_eq!(before, Some(json!({ "revokedAt": null })));
    assert!(after.unwrap()["revokedAt"].is_string());

    // A cron run asked for by hand: a new run, queued.
    let (run, new) = store
        .request_manual_cron_run("backup-cleanup", now, "admin:6")
        .await
        .unwrap();
    assert!(new);
    let requested = last_row(&store, "cron_run", run.id).await;
    assert_eq!(requested.action, "cron.run_requested");
    assert_eq!(requested.before_state, None);
    let after = requested.after_state.as_ref().unwrap().0.clone();
    assert_eq!(
        (&after["job"], &after["status"], &after["trigger"]),
        (&json!("backup-cleanup"), &json!("queued"), &json!("manual"))
    );

    // A server deleted: the record as it was, no after.
    let spare = store
        .create_server(&new_server("spare.example.net"), "admin:1")
        .await
        .unwrap();
    store.delete_server(spare.id, "admin:7").await.unwrap();
    let deleted = last_row(&store, "server", spare.id.get()).await;
    assert_eq!(deleted.action, "server.deleted");
    let (before, after) = sides(&deleted);
    assert_eq!(before.unwrap()["hostname"], "spare.example.net");
    assert_eq!(after, None);

    // No secret anywhere in the log.
    let everything = store
        .search_activity(&store::ActivityFilter {
            page: Page {
                limit: 500,
                after_id: None,
            },
            ..store::ActivityFilter::default()
        })
        .await
        .unwrap();
    for e in &everything {
        let text = format!("{:?} {:?} {:?}", e.details.0, e.before_state, e.after_state);
        assert!(!text.contains("sealed-panel-password"), "{text}");
        assert!(!text.contains("hash-of-a-secret-token"), "{text}");
    }
}

async fn a_refused_change_writes_no_activity_row(store: DynStore) {
    let s = store
        .create_server(&new_server("refused-a.example.net"), "admin:1")
        .await
        .unwrap();
    store
        .create_server(&new_server("refused-b.example.net"), "admin:1")
        .await
        .unwrap();
    let rows = |kind: &'static str, id: i64| {
        let store = store.clone();
        async move { store.list_activity(kind, id).await.unwrap().len() }
    };
    // The update reaches the database and is refused there (the hostname is taken): neither
    // the change nor its row is kept.
    let taken = ServerPatch {
        hostname: Some("refused-b.example.net".to_owned()),
        max_accounts: Some(1),
        ..ServerPatch::default()
    };
    assert!(matches!(
        store.update_server(s.id, &taken, "admin:2").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(rows("server", s.id.get()).await, 1);
    assert_eq!(store.get_server(s.id).await.unwrap().max_accounts, 500);

    // A task whose change the service's state forbids (a pending service cannot be
    // suspended): the service keeps its status and no row is written.
    let c = customer(&store, "refused@example.com").await;
    let p = product(&store, "Refused").await;
    let (service, _) = store
        .create_service_with_task(&order(c, p, "refused.example"), "admin:1")
        .await
        .unwrap();
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    let refused = store
        .complete_service_task(
            task.id,
            "w",
            store::queue::ServiceChange::Suspend {
                reason: "abuse".to_owned(),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(rows("service", service.id.get()).await, 1);
    assert_eq!(
        store.get_service(service.id).await.unwrap().status,
        ServiceStatus::Pending
    );

    // A server that still has a service is not deleted, and no row says it was.
    store.assign_server(service.id, s.id).await.unwrap();
    let placed = rows("server", s.id.get()).await;
    assert!(matches!(
        store.delete_server(s.id, "admin:3").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(rows("server", s.id.get()).await, placed);
}

async fn orders(store: &DynStore, n: usize) -> Vec<mpanel_common::ids::TaskId> {
    orders_for(store, "queue@example.com", n).await
}

async fn orders_for(store: &DynStore, email: &str, n: usize) -> Vec<mpanel_common::ids::TaskId> {
    let prefix = email.split('@').next().unwrap_or("q");
    let c = customer(store, email).await;
    let p = product(store, &format!("Queue {prefix}")).await;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (_, task) = store
            .create_service_with_task(&order(c, p, &format!("{prefix}{i}.example")), "test")
            .await
            .unwrap();
        tasks.push(task.id);
    }
    tasks
}

fn step(name: &str, status: &str) -> StepRecord {
    StepRecord {
        step: name.parse().unwrap(),
        status: status.parse().unwrap(),
        data: serde_json::json!({ "by": status }),
        error: None,
        finished_at: Some(1),
    }
}

async fn concurrent_claimers_never_take_the_same_task(store: DynStore) {
    let tasks = orders(&store, 40).await;
    let claimers = (0..6).map(|worker| {
        let store = store.clone();
        tokio::spawn(async move {
            let holder = format!("worker-{worker}");
            let mut claimed = Vec::new();
            while let Some(task) = store.claim_next_task(&holder, 60_000).await.unwrap() {
                assert_eq!(task.lease_holder.as_deref(), Some(holder.as_str()));
                claimed.push(task.id);
            }
            claimed
        })
    });
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    all.sort();
    let mut expected = tasks.clone();
    expected.sort();
    assert_eq!(all, expected, "every task claimed exactly once");
    assert_eq!(count(&store, Some(TaskStatus::Processing)).await, 40);
}

async fn a_claim_says_whether_another_task_was_due(store: DynStore) {
    let tasks = orders(&store, 2).await;
    let first = store.claim_task("a", 60_000).await.unwrap().unwrap();
    assert!(first.more_due, "the second order was due as well");
    let second = store.claim_task("b", 60_000).await.unwrap().unwrap();
    assert!(!second.more_due, "nothing else was due");
    let mut claimed = vec![first.row.id, second.row.id];
    claimed.sort();
    assert_eq!(claimed, tasks);
    assert!(store.claim_task("c", 60_000).await.unwrap().is_none());

    // A row whose lease ran out is runnable too, and so counts as more.
    orders_for(&store, "lease@example.com", 1).await;
    let dies = store.claim_task("dies", 1).await.unwrap().unwrap();
    assert!(!dies.more_due);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    orders_for(&store, "ready@example.com", 1).await;
    let taken_over = store.claim_task("d", 60_000).await.unwrap().unwrap();
    assert_eq!(taken_over.row.id, dies.row.id, "the expired lease first");
    assert!(taken_over.more_due, "the new order is due too");
    let last = store.claim_task("e", 60_000).await.unwrap().unwrap();
    assert!(!last.more_due, "and nothing after it");
}

async fn credentials_and_service_secrets_are_kept_once_in_one_write(store: DynStore) {
    let c = customer(&store, "secrets@example.com").await;
    let p = product(&store, "Secrets").await;
    let (service, _) = store
        .create_service_with_task(&order(c, p, "secrets.example"), "test")
        .await
        .unwrap();
    let offered = |m: &str, d: Option<&str>| store::SealedSecrets {
        mailbox: Some(m.to_owned()),
        database: d.map(str::to_owned),
    };
    let kept = store
        .set_service_credentials_and_secrets(service.id, "secretsx", "pw1", &offered("m1", None))
        .await
        .unwrap();
    assert_eq!(kept, offered("m1", None));
    // A retry offers new secrets: the kept ones win, a missing one is taken.
    let kept = store
        .set_service_credentials_and_secrets(
            service.id,
            "secretsx",
            "pw2",
            &offered("m2", Some("d2")),
        )
        .await
        .unwrap();
    assert_eq!(kept, offered("m1", Some("d2")));
    let row = store.get_service(service.id).await.unwrap();
    assert_eq!(
        (
            row.username.as_deref(),
            row.mailbox_password_encrypted.as_deref(),
            row.database_password_encrypted.as_deref()
        ),
        (Some("secretsx"), Some("m1"), Some("d2"))
    );
    // The step's own keeper agrees with what the credentials' write kept.
    assert_eq!(
        store
            .keep_service_secret(service.id, store::ServiceSecret::Mailbox, "m3")
            .await
            .unwrap(),
        "m1"
    );
    // Another username is refused and changes nothing; the first write logged one row.
    assert!(matches!(
        store
            .set_service_credentials_and_secrets(
                service.id,
                "otheruser",
                "pw3",
                &offered("m4", None)
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let row = store.get_service(service.id).await.unwrap();
    assert_eq!(row.username.as_deref(), Some("secretsx"));
    let logged = store
        .list_activity("service", service.id.get())
        .await
        .unwrap();
    assert_eq!(
        logged
            .iter()
            .filter(|a| a.action == "service.credentials_set")
            .count(),
        1
    );
}

async fn placement_and_credentials_are_written_together_or_not_at_all(store: DynStore) {
    let small = store
        .create_server(
            &NewServer {
                max_accounts: 1,
                ..new_server("together-a.example.net")
            },
            "admin:1",
        )
        .await
        .unwrap();
    let other = store
        .create_server(&new_server("together-b.example.net"), "admin:1")
        .await
        .unwrap();
    let c = customer(&store, "together@example.com").await;
    let p = product(&store, "Together").await;
    let mut services = Vec::new();
    for domain in ["one.example", "two.example", "three.example"] {
        let (service, _) = store
            .create_service_with_task(&order(c, p, domain), "test")
            .await
            .unwrap();
        services.push(service.id);
    }
    let offered = store::SealedSecrets {
        mailbox: Some("sealed-mailbox".to_owned()),
        database: None,
    };
    let creds = |username| store::NewCredentials {
        username,
        password_sealed: "sealed-panel",
        secrets: &offered,
    };
    let live = |server: ServerId| {
        let store = store.clone();
        async move {
            store
                .placement_candidates("shared")
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.server.id == server)
                .map(|c| c.live_services)
        }
    };
    let kept = store
        .place_with_credentials(services[0], small.id, &creds("oneexamp"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept, offered);
    let placed = store.get_service(services[0]).await.unwrap();
    assert_eq!(placed.server_id, Some(small.id.get()));
    assert_eq!(placed.username.as_deref(), Some("oneexamp"));
    assert_eq!(placed.password_encrypted.as_deref(), Some("sealed-panel"));
    assert_eq!(
        placed.mailbox_password_encrypted.as_deref(),
        Some("sealed-mailbox")
    );
    let actions: Vec<String> = store
        .list_activity("service", services[0].get())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["service.placed", "service.credentials_set"] {
        assert!(actions.iter().any(|a| a == action), "{actions:?}");
    }
    assert_eq!(live(small.id).await, Some(1));

    // The server is full: the second service stays unplaced and without credentials.
    let before = store
        .list_activity("service", services[1].get())
        .await
        .unwrap()
        .len();
    assert_eq!(
        store
            .place_with_credentials(services[1], small.id, &creds("twoexamp"))
            .await
            .unwrap(),
        Err(store::PlacementRefusal::ServerFull)
    );
    let unplaced = store.get_service(services[1]).await.unwrap();
    assert_eq!((unplaced.server_id, unplaced.username), (None, None));
    assert_eq!(
        store
            .list_activity("service", services[1].get())
            .await
            .unwrap()
            .len(),
        before
    );
    assert_eq!(live(small.id).await, Some(1));

    // A username is one per server: taken on the other server, refused there too.
    store
        .place_with_credentials(services[1], other.id, &creds("sameuser"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .place_with_credentials(services[2], other.id, &creds("sameuser"))
            .await
            .unwrap(),
        Err(store::PlacementRefusal::UsernameTaken)
    );
    assert_eq!(
        store.get_service(services[2]).await.unwrap().server_id,
        None
    );
    assert_eq!(live(other.id).await, Some(1));

    // A service placed already is not placed again.
    assert_eq!(
        store
            .place_with_credentials(services[0], other.id, &creds("again"))
            .await
            .unwrap(),
        Err(store::PlacementRefusal::AlreadyPlaced)
    );
    assert_eq!(
        store.get_service(services[0]).await.unwrap().server_id,
        Some(small.id.get())
    );
}

async fn an_expired_lease_lets_another_worker_take_over(store: DynStore) {
    let tasks = orders(&store, 1).await;
    let first = store
        .claim_next_task("dead-worker", 1_000)
        .await
        .unwrap()
        .expect("claimable");
    assert_eq!((first.id, first.attempts), (tasks[0], 1));
    assert!(
        store
            .claim_next_task("other", 60_000)
            .await
            .unwrap()
            .is_none(),
        "held while the lease runs"
    );
    // A lease long enough that a busy machine cannot run it out before the check above.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second = store
        .claim_next_task("successor", 60_000)
        .await
        .unwrap()
        .expect("lease expired");
    assert_eq!((second.id, second.attempts), (tasks[0], 2));
    let err = store
        .record_step(first.id, "dead-worker", &step("account", "success"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err:?}");
    assert!(matches!(
        store
            .renew_leased(leased(first.id, "dead-worker"), 1000)
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.complete_task(first.id, "dead-worker").await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .renew_leased(leased(second.id, "successor"), 60_000)
        .await
        .unwrap();
    store.complete_task(second.id, "successor").await.unwrap();
    assert_eq!(
        store.get_task(second.id).await.unwrap().status,
        TaskStatus::Completed
    );
}

async fn step_results_are_recorded_under_the_lease(store: DynStore) {
    let tasks = orders(&store, 1).await;
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    store
        .record_step(task.id, "w", &step("account", "failed"))
        .await
        .unwrap();
    store
        .record_step(task.id, "w", &step("account", "success"))
        .await
        .unwrap();
    store
        .record_step(task.id, "w", &step("dns", "failed"))
        .await
        .unwrap();
    // A record replaces its own step where it stands; the others keep their place.
    store
        .record_step(task.id, "w", &step("dns", "success"))
        .await
        .unwrap();
    let stored = store.get_task(tasks[0]).await.unwrap();
    let steps: Vec<_> = stored
        .result
        .0
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(steps, [("account", "success"), ("dns", "success")]);
    assert_eq!(stored.result.0.steps[0].data["by"], "success");
    store.complete_task(task.id, "w").await.unwrap();
    let done = store.get_task(task.id).await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert!(done.completed_at.is_some() && done.lease_holder.is_none());
    assert!(
        store.claim_next_task("w", 60_000).await.unwrap().is_none(),
        "completed tasks are not runnable"
    );
}

async fn the_completion_stores_the_last_step_record_under_the_lease(store: DynStore) {
    let tasks = orders(&store, 1).await;
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    assert_eq!(task.id, tasks[0]);
    for record in [step("account", "success"), step("dns", "failed")] {
        store.record_step(task.id, "w", &record).await.unwrap();
    }
    let shown = |t: &store::Task| -> Vec<(String, String)> {
        t.result
            .0
            .steps
            .iter()
            .map(|s| (s.step.as_str().to_owned(), s.status.as_str().to_owned()))
            .collect()
    };
    // A worker that no longer holds the task writes neither the completion nor the record.
    let refused = store
        .complete_service_task_recording(
            task.id,
            "other",
            store::queue::ServiceChange::Activate,
            Some(&step("dns", "success")),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost(_))),
        "{refused:?}"
    );
    let unchanged = store.get_task(task.id).await.unwrap();
    assert_eq!(unchanged.status, TaskStatus::Processing);
    assert_eq!(
        shown(&unchanged),
        [
            ("account".into(), "success".into()),
            ("dns".into(), "failed".into())
        ]
    );
    assert_eq!(
        store.get_service(task.service_id).await.unwrap().status,
        ServiceStatus::Pending
    );
    // The holder's completion replaces the step's earlier record where it stands.
    store
        .complete_service_task_recording(
            task.id,
            "w",
            store::queue::ServiceChange::Activate,
            Some(&step("dns", "success")),
        )
        .await
        .unwrap();
    let done = store.get_task(task.id).await.unwrap();
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(
        shown(&done),
        [
            ("account".into(), "success".into()),
            ("dns".into(), "success".into())
        ]
    );
    assert_eq!(done.result.0.steps[1].data["by"], "success");
    assert_eq!(
        store.get_service(task.service_id).await.unwrap().status,
        ServiceStatus::Active
    );
    // Without a record, the completion appends nothing.
    let second = orders_for(&store, "second@example.com", 1).await;
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    assert_eq!(task.id, second[0]);
    store
        .record_step(task.id, "w", &step("account", "success"))
        .await
        .unwrap();
    store
        .complete_service_task_recording(task.id, "w", store::queue::ServiceChange::Activate, None)
        .await
        .unwrap();
    let done = store.get_task(task.id).await.unwrap();
    assert_eq!(shown(&done), [("account".into(), "success".into())]);
}

async fn provisioning_reads_the_product_and_the_customer_email_in_one(store: DynStore) {
    let c = customer(&store, "contact@example.com").await;
    let p = product(&store, "Contact").await;
    let (product, email) = store.product_and_contact(p, c).await.unwrap();
    assert_eq!((product.id, product.name.as_str()), (p, "Contact"));
    assert_eq!(
        (
            product.server_group.as_str(),
            product.disk_mb,
            product.databases
        ),
        ("shared", 10_240, 2)
    );
    assert_eq!(email, "contact@example.com");
    assert!(matches!(
        store.product_and_contact(ProductId::from(999_999), c).await,
        Err(StoreError::NotFound {
            entity: "product",
            ..
        })
    ));
    assert!(matches!(
        store
            .product_and_contact(p, CustomerId::from(999_999))
            .await,
        Err(StoreError::NotFound {
            entity: "customer",
            ..
        })
    ));
}

async fn a_released_task_waits_until_it_is_due(store: DynStore) {
    orders(&store, 1).await;
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    let due = store::now_ms() + 150;
    store
        .release_leased(
            leased(task.id, "w"),
            Release::Retry,
            "no eligible server: all full",
            due,
        )
        .await
        .unwrap();
    let waiting = store.get_task(task.id).await.unwrap();
    assert_eq!(waiting.status, TaskStatus::Pending);
    assert_eq!(
        waiting.wait_reason.as_deref(),
        Some("no eligible server: all full")
    );
    assert_eq!(store.next_due(&PROVISIONING).await.unwrap(), Some(due));
    assert!(
        store.claim_next_task("w", 60_000).await.unwrap().is_none(),
        "not before it is due"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = store
        .claim_next_task("w2", 60_000)
        .await
        .unwrap()
        .expect("due now");
    assert_eq!((again.id, again.attempts), (task.id, 2));
}

async fn a_task_released_to_wait_keeps_its_retry_budget(store: DynStore) {
    orders(&store, 1).await;
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    assert_eq!(task.attempts, 1);
    store
        .release_leased(
            leased(task.id, "w"),
            Release::Wait,
            "waiting for the agent",
            store::now_ms(),
        )
        .await
        .unwrap();
    let waiting = store.get_task(task.id).await.unwrap();
    assert_eq!(waiting.status, TaskStatus::Pending);
    assert_eq!(waiting.attempts, 0, "waiting is not an attempt");
    assert_eq!(
        waiting.wait_reason.as_deref(),
        Some("waiting for the agent")
    );
    assert!(
        matches!(
            store
                .release_leased(
                    leased(task.id, "w"),
                    Release::Wait,
                    "again",
                    store::now_ms()
                )
                .await,
            Err(StoreError::LeaseLost(_))
        ),
        "only the holder of a processing task releases it"
    );
    let again = store.claim_next_task("w2", 60_000).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (task.id, 1));
}

async fn a_failed_task_is_requeued_with_a_fresh_budget(store: DynStore) {
    orders(&store, 1).await;
    let task = store.claim_next_task("w", 60_000).await.unwrap().unwrap();
    assert!(
        matches!(
            store.requeue_failed_task(task.id, "test").await,
            Err(StoreError::Conflict(_))
        ),
        "only failed tasks"
    );
    store
        .fail_task(task.id, "w", "panel said no")
        .await
        .unwrap();
    let failed = store.get_task(task.id).await.unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (TaskStatus::Failed, Some("panel said no"))
    );
    assert!(store.claim_next_task("w", 60_000).await.unwrap().is_none());
    let requeued = store.requeue_failed_task(task.id, "test").await.unwrap();
    assert_eq!(
        (requeued.status, requeued.attempts),
        (TaskStatus::Pending, 0)
    );
    assert!(store.claim_next_task("w", 60_000).await.unwrap().is_some());
}

async fn a_restarted_node_takes_back_only_its_own_earlier_rows(store: DynStore) {
    orders(&store, 3).await;
    let lease = 10 * 60_000;
    let old_boot = store
        .claim_next_task("web1:8080#oldboot#provisioning-0", lease)
        .await
        .unwrap()
        .unwrap();
    let other_node = store
        .claim_next_task("web2:8080#boot#provisioning-0", lease)
        .await
        .unwrap()
        .unwrap();
    let own = store
        .claim_next_task("web1:8080#newboot#provisioning-0", lease)
        .await
        .unwrap()
        .unwrap();
    assert!(store.claim_next_task("x", lease).await.unwrap().is_none());

    let taken = store
        .reclaim_abandoned(&PROVISIONING, "web1:8080#", "web1:8080#newboot#")
        .await
        .unwrap();
    assert_eq!(taken, 1, "only the earlier boot's row of this node");
    let again = store
        .claim_next_task("web1:8080#newboot#provisioning-1", lease)
        .await
        .unwrap()
        .expect("the abandoned row is runnable at once, not after its ten-minute lease");
    assert_eq!((again.id, again.attempts), (old_boot.id, 2));
    assert!(
        store.claim_next_task("x", lease).await.unwrap().is_none(),
        "another node's row and this boot's own row stay held"
    );
    // Fencing is intact: the earlier boot can no longer write to the row it held.
    assert!(matches!(
        store
            .record_step(
                old_boot.id,
                "web1:8080#oldboot#provisioning-0",
                &step("account", "success")
            )
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .renew_leased(
            leased(other_node.id, "web2:8080#boot#provisioning-0"),
            lease,
        )
        .await
        .unwrap();
    store
        .renew_leased(leased(own.id, "web1:8080#newboot#provisioning-0"), lease)
        .await
        .unwrap();
}

async fn a_product_patch_changes_only_the_given_fields_and_replaces_prices(store: DynStore) {
    let id = product(&store, "Basic").await;
    product(&store, "Taken").await;
    let euro = Price {
        billing_cycle: BillingCycle::Annually,
        amount_minor: 9900,
        currency: "EUR".into(),
    };
    let patch = ProductPatch {
        package_plesk: Some("Basic Plan".into()),
        disk_mb: Some(1),
        active: Some(false),
        prices: Some(vec![euro.clone()]),
        ..ProductPatch::default()
    };
    let p = store.update_product(id, &patch, "test").await.unwrap();
    assert_eq!(
        (
            p.name.as_str(),
            p.package_plesk.as_str(),
            p.package_cpanel.as_str()
        ),
        ("Basic", "Basic Plan", "default")
    );
    assert_eq!((p.disk_mb, p.email_quota_mb, p.active), (1, 1024, false));
    assert_eq!(p.prices, vec![euro.clone()]);
    let renamed = ProductPatch {
        name: Some("Taken".into()),
        prices: Some(vec![]),
        ..ProductPatch::default()
    };
    assert!(matches!(
        store.update_product(id, &renamed, "test").await,
        Err(StoreError::Conflict(_))
    ));
    let kept = store.get_product(id).await.unwrap();
    assert_eq!(
        (kept.name.as_str(), kept.prices.clone()),
        ("Basic", vec![euro]),
        "a refused patch changes nothing"
    );
    assert!(matches!(
        store
            .update_product(ProductId::new(4242), &patch, "test")
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn a_customer_patch_changes_only_the_given_fields(store: DynStore) {
    let id = customer(&store, "ada@example.com").await;
    customer(&store, "bob@example.com").await;
    let c = store
        .update_customer(
            id,
            &CustomerPatch {
                status: Some(CustomerStatus::Closed),
                ..CustomerPatch::default()
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(
        (c.email.as_str(), c.name.as_str(), c.status),
        ("ada@example.com", "Ada", CustomerStatus::Closed)
    );
    let taken = CustomerPatch {
        email: Some("bob@example.com".into()),
        ..CustomerPatch::default()
    };
    assert!(matches!(
        store.update_customer(id, &taken, "test").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_customer(id).await.unwrap().email,
        "ada@example.com"
    );
}
