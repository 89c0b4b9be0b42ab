//! The provisioning routes over HTTP against the real app: the original documentation's shapes
//! (times in Unix milliseconds), one job per open task, the failed list (clear and retry),
//! stats, the waiting `manual` route, and the contract's error body for bad input with proof
//! that it wrote nothing. The main flow runs on PostgreSQL as well.

mod api_support;
mod fleet_support;

use std::time::Duration;

use api_support::{
    Auth, Body, Hand, assert_error, counts, customer, get, one_order, order, product, send, start,
    start_with,
};
use fleet_support::Controller;
use mpanel_common::status::{ProvisioningStep, StepStatus};
use mpanel_controller::store::StepRecord;
use mpanel_controller::store::queue::ServiceChange;
use reqwest::Method;
use serde_json::{Value, json};

fn provision_body(customer: i64, product: i64, service: i64, domain: &str) -> Value {
    json!({"serviceId": service, "customerId": customer, "productId": product, "domain": domain})
}

fn task_count(v: &Value) -> usize {
    v["tasks"].as_array().unwrap().len()
}

#[tokio::test]
async fn provision_for_a_service_with_an_open_task_answers_with_that_job() {
    let c = start().await;
    let (customer, product, service, job) = one_order(&c, "open.example.com").await;
    let (status, body) = c
        .request(
            Method::POST,
            "/api/provisioning/provision",
            Some(provision_body(
                customer,
                product,
                service,
                "OPEN.example.com",
            )),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"message": "Provisioning job queued", "jobId": job, "serviceId": service, "status": "queued"})
    );
    let tasks = get(&c, &format!("/api/provisioning/tasks?serviceId={service}")).await;
    assert_eq!(task_count(&tasks), 1, "{tasks}");
}

#[tokio::test]
async fn a_task_has_the_documented_shape_with_millisecond_times() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (_, _, service, job) = one_order(&c, "shape.example.com").await;
    let task = hand.seize(&job).await.unwrap();
    let step = StepRecord {
        step: ProvisioningStep::Account.into(),
        status: StepStatus::Success,
        data: json!({"username": "shapeexa"}),
        error: None,
        finished_at: Some(1),
    };
    hand.store
        .record_step(task.id, api_support::WORKER, &step)
        .await
        .unwrap();
    hand.store
        .complete_service_task(task.id, api_support::WORKER, ServiceChange::Activate)
        .await
        .unwrap();
    let t = get(&c, &format!("/api/provisioning/tasks/{job}")).await;
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "clearedAt",
            "completedAt",
            "createdAt",
            "error",
            "id",
            "jobId",
            "maxRetries",
            "nextAttemptAt",
            "requestId",
            "result",
            "serviceId",
            "status",
            "type",
            "waitReason"
        ]
    );
    assert_eq!(format!("job_{}", t["id"]), job);
    assert_eq!(t["serviceId"], service);
    assert_eq!(t["type"], "provision");
    assert_eq!(t["status"], "completed");
    assert_eq!(t["maxRetries"], 3);
    let now = mpanel_controller::store::now_ms();
    for key in ["createdAt", "completedAt"] {
        let ms = t[key].as_i64().unwrap();
        assert!((now - 60_000..=now).contains(&ms), "{key}: {ms}");
    }
    assert_eq!(
        t["result"]["steps"],
        json!([{"step": "account", "status": "success", "data": {"username": "shapeexa"}, "finishedAt": 1}])
    );
    assert_eq!(
        get(&c, &format!("/api/services/{service}")).await["status"],
        "active"
    );
}

#[tokio::test]
async fn provision_refuses_bad_input_by_field_and_writes_nothing() {
    let c = start().await;
    let (customer, product, service, _) = one_order(&c, "match.example.com").await;
    let other_customer = api_support::customer(&c, "other@example.com").await;
    let before = counts(&c).await;
    let ok = provision_body(customer, product, service, "match.example.com");
    let with = |key: &str, value: Value| {
        let mut b = ok.clone();
        if value.is_null() {
            b.as_object_mut().unwrap().remove(key);
        } else {
            b[key] = value;
        }
        b
    };
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            with("customerId", json!(other_customer)),
            422,
            "service_mismatch",
            Some("customerId"),
        ),
        (
            with("productId", json!(product + 100)),
            422,
            "service_mismatch",
            Some("productId"),
        ),
        (
            with("domain", json!("other.example.com")),
            422,
            "service_mismatch",
            Some("domain"),
        ),
        (
            with("domain", json!("exa mple.com")),
            400,
            "invalid_domain",
            Some("domain"),
        ),
        (
            with("serviceId", json!(9999)),
            404,
            "not_found",
            Some("serviceId"),
        ),
        (
            with("serviceId", Value::Null),
            400,
            "invalid_body",
            Some("serviceId"),
        ),
        (
            with("domain", Value::Null),
            400,
            "invalid_body",
            Some("domain"),
        ),
        (
            with("productId", json!("1")),
            400,
            "invalid_body",
            Some("productId"),
        ),
        (with("extra", json!(1)), 400, "invalid_body", Some("extra")),
    ];
    for path in ["/api/provisioning/provision", "/api/provisioning/manual"] {
        for (body, status, code, field) in &cases {
            let got = send(
                &c,
                Method::POST,
                path,
                Body::Json(body.clone()),
                Auth::Admin,
            )
            .await;
            assert_error(&got, *status, code, *field);
        }
        let got = send(&c, Method::POST, path, Body::Raw("{".into()), Auth::Admin).await;
        assert_error(&got, 400, "invalid_body", None);
        let got = send(
            &c,
            Method::POST,
            path,
            Body::Plain(ok.to_string()),
            Auth::Admin,
        )
        .await;
        assert_error(&got, 400, "invalid_content_type", None);
        let huge = json!({"domain": "x".repeat(70 * 1024)});
        let got = send(&c, Method::POST, path, Body::Json(huge), Auth::Admin).await;
        assert_error(&got, 413, "body_too_large", None);
    }
    let got = send(
        &c,
        Method::POST,
        "/api/provisioning/provision",
        Body::Json(with("domain", json!("exa mple.com"))),
        Auth::Admin,
    )
    .await;
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("domain: ")
    );
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn provision_after_a_failed_task_queues_a_new_one_and_an_active_service_is_refused() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (customer, product, service, job) = one_order(&c, "again.example.com").await;
    hand.fail(&job, "panel said no").await;
    let s = get(&c, &format!("/api/services/{service}")).await;
    assert_eq!(s["status"], "pending");
    assert_eq!(s["provisioningError"], "panel said no");
    let body = provision_body(customer, product, service, "again.example.com");
    let (status, queued) = c
        .request(
            Method::POST,
            "/api/provisioning/provision",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let second = queued["jobId"].as_str().unwrap().to_owned();
    assert_ne!(second, job);
    assert_eq!(
        get(&c, &format!("/api/provisioning/tasks/{second}")).await["type"],
        "provision"
    );
    hand.complete(&second, ServiceChange::Activate).await;
    let got = send(
        &c,
        Method::POST,
        "/api/provisioning/provision",
        Body::Json(body),
        Auth::Admin,
    )
    .await;
    assert_error(&got, 409, "already_provisioned", None);
    let tasks = get(&c, &format!("/api/provisioning/tasks?serviceId={service}")).await;
    assert_eq!(task_count(&tasks), 2);
}

#[tokio::test]
async fn tasks_are_listed_newest_first_with_filters_and_a_cursor() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let customer = customer(&c, "ann@example.com").await;
    let product = product(&c, "Starter", "default").await;
    let mut jobs = Vec::new();
    for n in 0..3 {
        jobs.push(order(&c, customer, product, &format!("s{n}.example.com")).await);
    }
    hand.fail(&jobs[1].1, "boom").await;
    let job_ids = |v: &Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["jobId"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = get(&c, "/api/provisioning/tasks").await;
    assert_eq!(
        job_ids(&all),
        [jobs[2].1.clone(), jobs[1].1.clone(), jobs[0].1.clone()]
    );
    assert!(all["nextCursor"].is_null());
    let page = get(&c, "/api/provisioning/tasks?limit=2").await;
    assert_eq!(job_ids(&page), [jobs[2].1.clone(), jobs[1].1.clone()]);
    let next = page["nextCursor"].as_str().unwrap();
    let rest = get(
        &c,
        &format!("/api/provisioning/tasks?limit=2&cursor={next}"),
    )
    .await;
    assert_eq!(job_ids(&rest), [jobs[0].1.clone()]);
    assert!(rest["nextCursor"].is_null());
    assert_eq!(
        job_ids(&get(&c, "/api/provisioning/tasks?status=failed").await),
        [jobs[1].1.clone()]
    );
    let by_service = get(
        &c,
        &format!("/api/provisioning/tasks?serviceId={}", jobs[0].0),
    )
    .await;
    assert_eq!(job_ids(&by_service), [jobs[0].1.clone()]);
    for (query, code, field) in [
        ("limit=0", "invalid_limit", "limit"),
        ("limit=501", "invalid_limit", "limit"),
        ("limit=ten", "invalid_limit", "limit"),
        ("status=done", "invalid_status", "status"),
        ("serviceId=abc", "invalid_id", "serviceId"),
        ("cursor=job_x", "invalid_cursor", "cursor"),
        ("sort=asc", "unknown_parameter", "sort"),
    ] {
        let got = send(
            &c,
            Method::GET,
            &format!("/api/provisioning/tasks?{query}"),
            Body::None,
            Auth::Admin,
        )
        .await;
        assert_error(&got, 400, code, Some(field));
    }
    assert_eq!(
        task_count(&get(&c, "/api/provisioning/tasks?limit=500").await),
        3
    );
}

#[tokio::test]
async fn unknown_and_malformed_job_ids_are_404_and_400() {
    let c = start().await;
    for (method, path) in [
        (Method::GET, "/api/provisioning/tasks/job_999"),
        (Method::GET, "/api/provisioning/tasks/999"),
        (Method::POST, "/api/provisioning/retry/job_999"),
    ] {
        let got = send(&c, method, path, Body::None, Auth::Admin).await;
        assert_error(&got, 404, "not_found", None);
    }
    for (method, path) in [
        (Method::GET, "/api/provisioning/tasks/job_x"),
        (Method::GET, "/api/provisioning/tasks/job_007"),
        (Method::POST, "/api/provisioning/retry/task_1"),
    ] {
        let got = send(&c, method, path, Body::None, Auth::Admin).await;
        assert_error(&got, 400, "invalid_job_id", Some("id"));
    }
}

#[tokio::test]
async fn failed_tasks_are_listed_cleared_from_the_list_and_retried() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (_, _, service, job) = one_order(&c, "fails.example.com").await;
    let (_, _, _, other_job) = one_order(&c, "open.example.com").await;

    let got = send(
        &c,
        Method::POST,
        &format!("/api/provisioning/retry/{other_job}"),
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_error(&got, 409, "task_not_failed", None);

    hand.fail(&job, "dns: zone refused").await;
    let failed = get(&c, "/api/provisioning/failed").await;
    assert_eq!(task_count(&failed), 1);
    assert_eq!(failed["tasks"][0]["jobId"], job);
    assert_eq!(failed["tasks"][0]["status"], "failed");
    assert_eq!(failed["tasks"][0]["error"], "dns: zone refused");
    assert!(failed["tasks"][0]["clearedAt"].is_null());
    assert_eq!(
        get(&c, "/api/provisioning/stats").await["queue"]["failed"],
        1
    );

    let (status, cleared) = c
        .request(Method::DELETE, "/api/provisioning/failed", None)
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared, json!({"cleared": 1}));
    assert_eq!(task_count(&get(&c, "/api/provisioning/failed").await), 0);
    assert_eq!(
        get(&c, "/api/provisioning/stats").await["queue"]["failed"],
        0
    );
    let history = get(&c, "/api/provisioning/tasks?status=failed").await;
    assert_eq!(history["tasks"][0]["jobId"], job);
    assert!(history["tasks"][0]["clearedAt"].as_i64().is_some());
    let (_, again) = c
        .request(Method::DELETE, "/api/provisioning/failed", None)
        .await;
    assert_eq!(again, json!({"cleared": 0}));

    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/provisioning/retry/{job}"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["jobId"], job);
    assert_eq!(body["serviceId"], service);
    assert_eq!(body["status"], "queued");
    let task = get(&c, &format!("/api/provisioning/tasks/{job}")).await;
    assert!(
        matches!(task["status"].as_str(), Some("pending" | "processing")),
        "{task}"
    );
    assert!(task["clearedAt"].is_null());
    let got = send(
        &c,
        Method::POST,
        &format!("/api/provisioning/retry/{job}"),
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_error(&got, 409, "task_not_failed", None);
}

#[tokio::test]
async fn stats_count_queues_and_the_last_seven_days_of_tasks() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let customer = customer(&c, "ann@example.com").await;
    let product = product(&c, "Starter", "default").await;
    let mut jobs = Vec::new();
    for n in 0..4 {
        jobs.push(
            order(&c, customer, product, &format!("st{n}.example.com"))
                .await
                .1,
        );
    }
    hand.fail(&jobs[0], "boom").await;
    hand.complete(&jobs[1], ServiceChange::Activate).await;
    // One invoice awaiting payment (due in 3000) and one overdue, both waiting on the customer.
    c.sql(
        "INSERT INTO invoices (number, customer_id, status, amount_minor, currency, due_at, created_at, updated_at)
         VALUES ('INV-1', 1, 'unpaid', 999, 'USD', 32503680000000, 0, 0), ('INV-2', 1, 'unpaid', 999, 'USD', 0, 0, 0)",
    )
    .await;
    let s = get(&c, "/api/provisioning/stats").await;
    let q = &s["queue"];
    // The controller's own worker may hold an open task at any moment: count them together.
    let open = q["provisioning"]["pending"].as_i64().unwrap()
        + q["provisioning"]["processing"].as_i64().unwrap();
    assert_eq!(open, 2, "{s}");
    // Every queue answers with the contract's pair, whatever it adds.
    assert_eq!(
        q["emails"],
        json!({"pending": 0, "processing": 0, "failed": 0}),
        "{s}"
    );
    assert_eq!(
        q["invoices"],
        json!({"pending": 2, "processing": 0, "unpaid": 2, "overdue": 1}),
        "{s}"
    );
    assert_eq!(
        q["billing"],
        json!({"pending": 0, "processing": 0, "failed": 0}),
        "{s}"
    );
    assert_eq!(q["failed"], 1);
    assert!(q["processing_total"].as_i64().unwrap() <= 2);
    let week = &s["tasks"]["last_7_days"];
    assert_eq!(week["completed"], 1, "{s}");
    assert_eq!(week["failed"], 1, "{s}");
    assert_eq!(
        week["pending"].as_i64().unwrap() + week["processing"].as_i64().unwrap(),
        2
    );
    let mut keys: Vec<&str> = q.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "billing",
            "emails",
            "failed",
            "invoices",
            "processing_total",
            "provisioning"
        ]
    );
}

#[tokio::test]
async fn manual_waits_for_the_worker_and_returns_the_finished_task() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (customer, product, service, job) = one_order(&c, "manual.example.com").await;
    let body = provision_body(customer, product, service, "manual.example.com");
    let finisher = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        hand.complete(&job, ServiceChange::Activate).await;
    };
    let ((status, task), ()) = tokio::join!(
        c.request(Method::POST, "/api/provisioning/manual", Some(body)),
        finisher
    );
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["jobId"], job);
    assert_eq!(task["status"], "completed");
    assert_eq!(task["result"]["steps"], json!([]));
    // A finished service has nothing left to run.
    let got = send(
        &c,
        Method::POST,
        "/api/provisioning/manual",
        Body::Json(provision_body(
            customer,
            product,
            service,
            "manual.example.com",
        )),
        Auth::Admin,
    )
    .await;
    assert_error(&got, 409, "already_provisioned", None);
}

#[tokio::test]
async fn every_provisioning_route_needs_an_admin_token() {
    let c = start().await;
    let (customer, product, service, job) = one_order(&c, "auth.example.com").await;
    let hand = Hand::new(&c).await;
    hand.fail(&job, "boom").await;
    let before = counts(&c).await;
    let body = provision_body(customer, product, service, "auth.example.com");
    let routes = [
        (Method::POST, "/api/provisioning/provision".to_owned()),
        (Method::POST, "/api/provisioning/manual".to_owned()),
        (Method::GET, "/api/provisioning/tasks".to_owned()),
        (Method::GET, format!("/api/provisioning/tasks/{job}")),
        (Method::POST, format!("/api/provisioning/retry/{job}")),
        (Method::GET, "/api/provisioning/stats".to_owned()),
        (Method::GET, "/api/provisioning/failed".to_owned()),
        (Method::DELETE, "/api/provisioning/failed".to_owned()),
    ];
    for (method, path) in routes {
        for auth in [Auth::Missing, Auth::Wrong] {
            let got = send(&c, method.clone(), &path, Body::Json(body.clone()), auth).await;
            assert_error(&got, 401, "unauthorized", None);
        }
    }
    assert_eq!(counts(&c).await, before);
    assert_eq!(task_count(&get(&c, "/api/provisioning/failed").await), 1);
    assert_eq!(
        get(&c, &format!("/api/provisioning/tasks/{job}")).await["status"],
        "failed"
    );
}

/// The order-to-retry flow, on whichever backend `c` runs.
async fn main_flow(c: &Controller) {
    let hand = Hand::new(c).await;
    let (customer, product, service, job) = one_order(c, "flow.example.com").await;
    assert_eq!(
        get(c, &format!("/api/provisioning/tasks/{job}")).await["serviceId"],
        service
    );
    let body = provision_body(customer, product, service, "flow.example.com");
    let (status, again) = c
        .request(
            Method::POST,
            "/api/provisioning/provision",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["jobId"], job);
    let bad = send(c, Method::POST, "/api/services", Body::Json(json!({"customerId": customer, "productId": product, "domain": "bad domain", "billingCycle": "monthly"})), Auth::Admin).await;
    assert_error(&bad, 400, "invalid_domain", Some("domain"));
    hand.fail(&job, "boom").await;
    assert_eq!(
        get(c, "/api/provisioning/stats").await["queue"]["failed"],
        1
    );
    let (_, cleared) = c
        .request(Method::DELETE, "/api/provisioning/failed", None)
        .await;
    assert_eq!(cleared, json!({"cleared": 1}));
    let (status, retried) = c
        .request(
            Method::POST,
            &format!("/api/provisioning/retry/{job}"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{retried}");
    hand.complete(&job, ServiceChange::Activate).await;
    assert_eq!(
        get(c, &format!("/api/services/{service}")).await["status"],
        "active"
    );
    let (status, suspended) = c
        .request(
            Method::POST,
            &format!("/api/services/{service}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{suspended}");
    assert_eq!(counts(c).await, [1, 1, 1, 2]);
}

#[tokio::test]
async fn the_main_flow_works_on_sqlite() {
    let c = start().await;
    main_flow(&c).await;
}

#[tokio::test]
async fn the_main_flow_works_on_postgres() {
    let db = mpanel_e2e::databases::TestDatabase::create().await;
    let mut c = start_with(Some(&db.url)).await;
    main_flow(&c).await;
    c.stop().await;
    db.drop_database().await;
}

#[tokio::test]
async fn the_welcome_step_says_sent_once_the_outbox_has_delivered_it() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (_, _, _, job) = one_order(&c, "welcome.example.com").await;
    let task = hand.seize(&job).await.unwrap();
    let key = format!("welcome:test:{job}");
    let step = StepRecord {
        step: ProvisioningStep::WelcomeEmail.into(),
        status: StepStatus::Success,
        data: json!({"sent": false, "queued": true, "outbox_key": key}),
        error: None,
        finished_at: Some(1),
    };
    hand.store
        .record_step(task.id, api_support::WORKER, &step)
        .await
        .unwrap();
    hand.store
        .complete_service_task(task.id, api_support::WORKER, ServiceChange::Activate)
        .await
        .unwrap();
    // Queued with a body no sender can open: it stays undelivered until marked below.
    hand.store
        .queue_email(
            &key,
            "owner@welcome.example.com",
            "welcome",
            "Ready",
            "not-sealed",
        )
        .await
        .unwrap();
    let welcome = |t: &Value| t["result"]["steps"][0]["data"]["sent"].clone();
    let t = get(&c, &format!("/api/provisioning/tasks/{job}")).await;
    assert_eq!(welcome(&t), json!(false), "{t}");
    hand.store.mark_email_sent(&key).await.unwrap();
    let t = get(&c, &format!("/api/provisioning/tasks/{job}")).await;
    assert_eq!(welcome(&t), json!(true), "{t}");
    let listed = get(&c, "/api/provisioning/tasks?status=completed").await;
    assert_eq!(welcome(&listed["tasks"][0]), json!(true), "{listed}");
}
