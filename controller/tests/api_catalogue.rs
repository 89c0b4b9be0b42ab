//! The catalogue and service routes over HTTP against the real app on SQLite: exact JSON
//! shapes, the contract's error body for bad input (and proof that it wrote nothing), admin
//! authentication on every route, the body limit, and the service lifecycle's refusals.

mod api_support;
mod fleet_support;

use api_support::{
    Auth, Body, Hand, assert_error, counts, customer, get, one_order, order, product, product_body,
    send, start,
};
use mpanel_controller::store::queue::ServiceChange;
use reqwest::Method;
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

#[tokio::test]
async fn a_product_round_trips_with_its_packages_quotas_and_prices() {
    let c = start().await;
    let (status, created) = c
        .request(
            Method::POST,
            "/api/products",
            Some(product_body("Starter", "eu")),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        keys(&created),
        [
            "active",
            "backupSchedule",
            "createdAt",
            "group",
            "id",
            "name",
            "packages",
            "prices",
            "quotas",
            "taxRateBp",
            "updatedAt"
        ]
    );
    assert!(created["id"].as_i64().unwrap() > 0);
    assert_eq!(created["name"], "Starter");
    assert_eq!(created["group"], "eu");
    assert_eq!(
        created["packages"],
        json!({"cpanel": "starter", "plesk": "Unlimited", "directadmin": "default"})
    );
    assert_eq!(
        created["quotas"],
        json!({"diskMb": 1024, "emailQuotaMb": 256, "databases": 2})
    );
    let mut prices = created["prices"].as_array().unwrap().clone();
    prices.sort_by_key(|p| p["cycle"].as_str().unwrap().to_owned());
    assert_eq!(
        prices,
        [
            json!({"cycle": "annually", "amount": 9990, "currency": "USD"}),
            json!({"cycle": "monthly", "amount": 999, "currency": "USD"})
        ]
    );
    assert_eq!(created["active"], true);
    assert_eq!(created["taxRateBp"], 0);
    assert!(is_rfc3339(&created["createdAt"]), "{created}");

    let id = created["id"].as_i64().unwrap();
    assert_eq!(get(&c, &format!("/api/products/{id}")).await, created);
    assert_eq!(
        get(&c, "/api/products").await,
        json!({"products": [created]})
    );
}

#[tokio::test]
async fn a_product_without_packages_or_quotas_gets_the_defaults() {
    let c = start().await;
    let (status, p) = c
        .request(
            Method::POST,
            "/api/products",
            Some(json!({"name": "Bare", "prices": []})),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["group"], "default");
    assert_eq!(
        p["packages"],
        json!({"cpanel": "default", "plesk": "Unlimited", "directadmin": "default"})
    );
    assert_eq!(
        p["quotas"],
        json!({"diskMb": 0, "emailQuotaMb": 0, "databases": 1})
    );
    assert_eq!(p["prices"], json!([]));
}

#[tokio::test]
async fn bad_product_input_names_the_field_and_writes_nothing() {
    let c = start().await;
    product(&c, "Taken", "default").await;
    let before = counts(&c).await;
    let with = |edit: fn(&mut Value)| {
        let mut body = product_body("New plan", "default");
        edit(&mut body);
        Body::Json(body)
    };
    let cases: Vec<(Body, u16, &str, Option<&str>)> = vec![
        (
            with(|b| {
                b.as_object_mut().unwrap().remove("name");
            }),
            400,
            "invalid_body",
            Some("name"),
        ),
        (
            with(|b| b["name"] = json!("  ")),
            400,
            "invalid_text",
            Some("name"),
        ),
        (
            with(|b| b["name"] = json!(7)),
            400,
            "invalid_body",
            Some("name"),
        ),
        (
            with(|b| b["group"] = json!("")),
            400,
            "invalid_text",
            Some("group"),
        ),
        (
            with(|b| b["packages"]["cpanel"] = json!("")),
            400,
            "invalid_package",
            Some("packages.cpanel"),
        ),
        // Would reach the panel as `plan=default&plan=x`.
        (
            with(|b| b["packages"]["cpanel"] = json!("default&plan=x")),
            400,
            "invalid_package",
            Some("packages.cpanel"),
        ),
        (
            with(|b| b["packages"]["directadmin"] = json!("gold/../x")),
            400,
            "invalid_package",
            Some("packages.directadmin"),
        ),
        (
            with(|b| b["packages"]["plesk"] = json!("Unlimited\"")),
            400,
            "invalid_package",
            Some("packages.plesk"),
        ),
        (
            with(|b| b["quotas"]["diskMb"] = json!("lots")),
            400,
            "invalid_body",
            Some("quotas.diskMb"),
        ),
        (
            with(|b| b["quotas"]["databases"] = json!(-1)),
            400,
            "invalid_number",
            Some("quotas.databases"),
        ),
        (
            with(|b| b["prices"][0]["amount"] = json!(-5)),
            400,
            "invalid_amount",
            Some("prices[0].amount"),
        ),
        (
            with(|b| b["prices"][1]["cycle"] = json!("weekly")),
            400,
            "invalid_billing_cycle",
            Some("prices[1].cycle"),
        ),
        (
            with(|b| b["prices"][0]["currency"] = json!("US")),
            400,
            "invalid_currency",
            Some("prices[0].currency"),
        ),
        (
            with(|b| b["prices"][1]["cycle"] = json!("monthly")),
            400,
            "duplicate_price",
            Some("prices[1]"),
        ),
        (
            with(|b| {
                b.as_object_mut().unwrap().remove("prices");
            }),
            400,
            "invalid_body",
            Some("prices"),
        ),
        (
            with(|b| b["colour"] = json!("red")),
            400,
            "invalid_body",
            Some("colour"),
        ),
        (with(|b| b["name"] = json!("Taken")), 409, "conflict", None),
        (
            Body::Raw("{\"name\": ".into()),
            400,
            "invalid_body",
            Some("name"),
        ),
        (Body::Raw("[]".into()), 400, "invalid_body", None),
        (
            Body::Plain(product_body("x", "y").to_string()),
            400,
            "invalid_content_type",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let got = send(&c, Method::POST, "/api/products", body.clone(), Auth::Admin).await;
        assert_error(&got, status, code, field);
    }
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn a_customer_round_trips_trimmed_and_lower_cased() {
    let c = start().await;
    let (status, created) = c
        .request(
            Method::POST,
            "/api/customers",
            Some(json!({"email": "  Ann@Example.COM ", "name": " Ann Example "})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        keys(&created),
        [
            "createdAt",
            "email",
            "id",
            "name",
            "status",
            "stripeCustomerId",
            "updatedAt"
        ]
    );
    assert_eq!(created["email"], "ann@example.com");
    assert_eq!(created["name"], "Ann Example");
    assert_eq!(created["status"], "active");
    assert!(created["stripeCustomerId"].is_null());
    assert!(is_rfc3339(&created["updatedAt"]));
    let id = created["id"].as_i64().unwrap();
    assert_eq!(get(&c, &format!("/api/customers/{id}")).await, created);
}

#[tokio::test]
async fn bad_customer_input_names_the_field_and_writes_nothing() {
    let c = start().await;
    customer(&c, "ann@example.com").await;
    let before = counts(&c).await;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (json!({"name": "Bob"}), 400, "invalid_body", Some("email")),
        (
            json!({"email": "bob@example.com"}),
            400,
            "invalid_body",
            Some("name"),
        ),
        (
            json!({"email": "bob", "name": "Bob"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": "bob@exa mple.com", "name": "Bob"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": "bob@localhost", "name": "Bob"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"email": 5, "name": "Bob"}),
            400,
            "invalid_body",
            Some("email"),
        ),
        (
            json!({"email": "bob@example.com", "name": ""}),
            400,
            "invalid_text",
            Some("name"),
        ),
        (
            json!({"email": "ANN@example.com", "name": "Ann again"}),
            409,
            "conflict",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let got = send(
            &c,
            Method::POST,
            "/api/customers",
            Body::Json(body.clone()),
            Auth::Admin,
        )
        .await;
        assert_error(&got, status, code, field);
    }
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn customers_are_listed_in_pages_by_cursor() {
    let c = start().await;
    let ids = [
        customer(&c, "a@example.com").await,
        customer(&c, "b@example.com").await,
        customer(&c, "c@example.com").await,
    ];
    let first = get(&c, "/api/customers?limit=2").await;
    let listed: Vec<i64> = first["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, ids[..2]);
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = get(&c, &format!("/api/customers?limit=2&cursor={cursor}")).await;
    let listed: Vec<i64> = second["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, ids[2..]);
    assert!(second["nextCursor"].is_null());
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("cursor=abc", "cursor"),
        ("page=2", "page"),
    ] {
        let got = send(
            &c,
            Method::GET,
            &format!("/api/customers?{query}"),
            Body::None,
            Auth::Admin,
        )
        .await;
        assert_eq!(got.1["error"]["field"], field, "{query}: {}", got.1);
        assert_eq!(got.0, 400);
    }
}

#[tokio::test]
async fn ordering_a_service_writes_the_service_and_its_task_together() {
    let c = start().await;
    let customer = customer(&c, "ann@example.com").await;
    let product = product(&c, "Starter", "default").await;
    let (status, body) = c
        .request(
            Method::POST,
            "/api/services",
            Some(json!({
                "customerId": customer,
                "productId": product,
                "domain": "Shop.Example.COM",
                "billingCycle": "monthly"
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(keys(&body), ["jobId", "service", "warnings"]);
    assert_eq!(body["warnings"], json!([]), "{body}");
    let service = &body["service"];
    assert_eq!(
        keys(service),
        [
            "billingCycle",
            "createdAt",
            "customerId",
            "disputeRef",
            "domain",
            "id",
            "nextDueDate",
            "overQuota",
            "overQuotaSince",
            "productId",
            "provisionedAt",
            "provisioningError",
            "serverId",
            "status",
            "suspendedAt",
            "suspensionReason",
            "terminatedAt",
            "updatedAt",
            "usage",
            "username"
        ]
    );
    assert_eq!(service["status"], "pending");
    assert_eq!(service["domain"], "shop.example.com");
    assert_eq!(service["customerId"], customer);
    assert_eq!(service["productId"], product);
    assert_eq!(service["billingCycle"], "monthly");
    assert!(is_rfc3339(&service["createdAt"]));
    let text = body.to_string();
    assert!(!text.contains("password"), "{text}");

    let id = service["id"].as_i64().unwrap();
    let job = body["jobId"].as_str().unwrap();
    let task = get(&c, &format!("/api/provisioning/tasks/{job}")).await;
    assert_eq!(task["jobId"], job);
    assert_eq!(task["serviceId"], id);
    assert_eq!(task["type"], "provision");
    assert!(
        matches!(task["status"].as_str(), Some("pending" | "processing")),
        "{task}"
    );
    let bare = job.strip_prefix("job_").unwrap();
    assert_eq!(
        get(&c, &format!("/api/provisioning/tasks/{bare}")).await["jobId"],
        job
    );

    let got = get(&c, &format!("/api/services/{id}")).await;
    assert_eq!(got["id"], id);
    assert_eq!(got["domain"], "shop.example.com");
    assert_eq!(counts(&c).await, [1, 1, 1, 1]);
}

#[tokio::test]
async fn bad_orders_name_the_field_and_write_nothing() {
    let c = start().await;
    let customer = customer(&c, "ann@example.com").await;
    let product = product(&c, "Starter", "default").await;
    order(&c, customer, product, "taken.example.com").await;
    let before = counts(&c).await;
    let base = json!({"customerId": customer, "productId": product, "domain": "new.example.com", "billingCycle": "monthly"});
    let with = |key: &str, value: Value| {
        let mut b = base.clone();
        if value.is_null() {
            b.as_object_mut().unwrap().remove(key);
        } else {
            b[key] = value;
        }
        b
    };
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            with("domain", json!("exa mple.com")),
            400,
            "invalid_domain",
            Some("domain"),
        ),
        (
            with("domain", json!("-bad-.com")),
            400,
            "invalid_domain",
            Some("domain"),
        ),
        (
            with("domain", Value::Null),
            400,
            "invalid_body",
            Some("domain"),
        ),
        (
            with("customerId", json!("one")),
            400,
            "invalid_body",
            Some("customerId"),
        ),
        (
            with("productId", Value::Null),
            400,
            "invalid_body",
            Some("productId"),
        ),
        (
            with("billingCycle", json!("weekly")),
            400,
            "invalid_billing_cycle",
            Some("billingCycle"),
        ),
        (
            with("customerId", json!(9999)),
            404,
            "not_found",
            Some("customerId"),
        ),
        (
            with("productId", json!(9999)),
            404,
            "not_found",
            Some("productId"),
        ),
        (
            with("billingCycle", json!("quarterly")),
            422,
            "no_price",
            Some("billingCycle"),
        ),
        (
            with("domain", json!("taken.example.com")),
            409,
            "conflict",
            Some("domain"),
        ),
        (
            with("domain", json!("☃.example")),
            400,
            "invalid_domain",
            Some("domain"),
        ),
    ];
    for (body, status, code, field) in cases {
        let got = send(
            &c,
            Method::POST,
            "/api/services",
            Body::Json(body.clone()),
            Auth::Admin,
        )
        .await;
        assert_error(&got, status, code, field);
    }
    let got = send(
        &c,
        Method::POST,
        "/api/services",
        Body::Json(with("domain", json!("exa mple.com"))),
        Auth::Admin,
    )
    .await;
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("domain: "),
        "{}",
        got.1
    );
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn services_are_filtered_by_customer_and_status_and_paged() {
    let c = start().await;
    let ann = customer(&c, "ann@example.com").await;
    let bob = customer(&c, "bob@example.com").await;
    let product = product(&c, "Starter", "default").await;
    let (a1, _) = order(&c, ann, product, "a1.example.com").await;
    let (a2, _) = order(&c, ann, product, "a2.example.com").await;
    order(&c, bob, product, "b1.example.com").await;
    let ids = |v: &Value| -> Vec<i64> {
        v["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&get(&c, &format!("/api/services?customerId={ann}")).await),
        [a1, a2]
    );
    let page = get(&c, &format!("/api/services?customerId={ann}&limit=1")).await;
    assert_eq!(ids(&page), [a1]);
    let next = page["nextCursor"].as_str().unwrap();
    assert_eq!(
        ids(&get(
            &c,
            &format!("/api/services?customerId={ann}&limit=1&cursor={next}")
        )
        .await),
        [a2]
    );
    assert_eq!(ids(&get(&c, "/api/services?status=pending").await).len(), 3);
    assert!(ids(&get(&c, "/api/services?status=active").await).is_empty());
    let got = send(
        &c,
        Method::GET,
        "/api/services?status=live",
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_error(&got, 400, "invalid_status", Some("status"));
    let got = send(
        &c,
        Method::GET,
        "/api/services?customerId=x",
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_error(&got, 400, "invalid_id", Some("customerId"));
}

#[tokio::test]
async fn patch_sets_and_clears_the_next_due_date_and_refuses_other_fields() {
    let c = start().await;
    let (_, _, id, _) = one_order(&c, "patch.example.com").await;
    let path = format!("/api/services/{id}");
    let (status, s) = c
        .request(
            Method::PATCH,
            &path,
            Some(json!({"nextDueDate": "2030-01-31"})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["nextDueDate"], "2030-01-31");
    for (body, code, field) in [
        (
            json!({"domain": "other.example.com"}),
            "invalid_body",
            "domain",
        ),
        (json!({"status": "active"}), "invalid_body", "status"),
        (
            json!({"nextDueDate": "next tuesday"}),
            "invalid_date",
            "nextDueDate",
        ),
        (json!({"nextDueDate": 5}), "invalid_body", "nextDueDate"),
    ] {
        let got = send(&c, Method::PATCH, &path, Body::Json(body), Auth::Admin).await;
        assert_error(&got, 400, code, Some(field));
    }
    assert_eq!(get(&c, &path).await["nextDueDate"], "2030-01-31");
    let (status, s) = c
        .request(Method::PATCH, &path, Some(json!({"nextDueDate": null})))
        .await;
    assert_eq!(status, 200, "{s}");
    assert!(s["nextDueDate"].is_null());
    assert_eq!(s["domain"], "patch.example.com");
    let got = send(
        &c,
        Method::PATCH,
        "/api/services/999",
        Body::Json(json!({"nextDueDate": null})),
        Auth::Admin,
    )
    .await;
    assert_error(&got, 404, "not_found", None);
}

#[tokio::test]
async fn lifecycle_commands_the_lifecycle_forbids_are_refused_with_409() {
    let c = start().await;
    let (_, _, id, job) = one_order(&c, "pending.example.com").await;
    let other = product(&c, "Other", "default").await;
    let before = counts(&c).await;
    for (action, body) in [
        ("suspend", None),
        ("suspend", Some(json!({"reason": "abuse"}))),
        ("unsuspend", None),
        ("change-password", None),
        (
            "change-password",
            Some(json!({"password": "long enough password"})),
        ),
        ("change-package", Some(json!({"productId": other}))),
    ] {
        let got = send(
            &c,
            Method::POST,
            &format!("/api/services/{id}/{action}"),
            body.map_or(Body::None, Body::Json),
            Auth::Admin,
        )
        .await;
        assert_error(&got, 409, "illegal_transition", None);
    }
    // Terminating a pending service is legal, but its provision task is still open.
    let got = send(
        &c,
        Method::POST,
        &format!("/api/services/{id}/terminate"),
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_error(&got, 409, "task_open", None);
    assert!(
        got.1["error"]["message"].as_str().unwrap().contains(&job),
        "{}",
        got.1
    );
    for action in ["suspend", "unsuspend", "terminate", "change-password"] {
        let got = send(
            &c,
            Method::POST,
            &format!("/api/services/999/{action}"),
            Body::None,
            Auth::Admin,
        )
        .await;
        assert_error(&got, 404, "not_found", None);
        let got = send(
            &c,
            Method::POST,
            &format!("/api/services/x/{action}"),
            Body::None,
            Auth::Admin,
        )
        .await;
        assert_error(&got, 400, "invalid_id", Some("id"));
    }
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn lifecycle_commands_on_an_active_service_queue_tasks() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (customer, product, id, job) = one_order(&c, "live.example.com").await;
    hand.complete(&job, ServiceChange::Activate).await;
    assert_eq!(
        get(&c, &format!("/api/services/{id}")).await["status"],
        "active"
    );
    let _ = customer;
    let elsewhere = api_support::product(&c, "Other group", "us").await;
    let bigger = api_support::product(&c, "Bigger", "default").await;
    let path = |action: &str| format!("/api/services/{id}/{action}");

    // Bad input first: refused by field, nothing queued.
    let before = counts(&c).await;
    let cases = [
        (
            "change-password",
            json!({"password": "short"}),
            400,
            "weak_password",
            Some("password"),
        ),
        (
            "change-password",
            json!({"pass": "long enough password"}),
            400,
            "invalid_body",
            Some("pass"),
        ),
        (
            "change-package",
            json!({}),
            400,
            "invalid_body",
            Some("productId"),
        ),
        (
            "change-package",
            json!({"productId": 9999}),
            404,
            "not_found",
            Some("productId"),
        ),
        (
            "change-package",
            json!({"productId": elsewhere}),
            422,
            "product_group_mismatch",
            Some("productId"),
        ),
        (
            "change-package",
            json!({"productId": product}),
            422,
            "same_product",
            Some("productId"),
        ),
        (
            "suspend",
            json!({"reason": 5}),
            400,
            "invalid_body",
            Some("reason"),
        ),
        (
            "suspend",
            json!({"reason": "unpaid"}),
            400,
            "invalid_reason",
            Some("reason"),
        ),
        (
            "suspend",
            json!({"reason": "abuse", "note": "x\u{0}y"}),
            400,
            "invalid_text",
            Some("note"),
        ),
    ];
    for (action, body, status, code, field) in cases {
        let got = send(
            &c,
            Method::POST,
            &path(action),
            Body::Json(body),
            Auth::Admin,
        )
        .await;
        assert_error(&got, status, code, field);
    }
    assert_eq!(counts(&c).await, before);

    let secret = "correct horse battery staple";
    let (status, body) = c
        .request(
            Method::POST,
            &path("change-password"),
            Some(json!({"password": secret})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(keys(&body), ["jobId", "message", "serviceId", "status"]);
    assert_eq!(body["serviceId"], id);
    assert_eq!(body["status"], "queued");
    let pw_job = body["jobId"].as_str().unwrap().to_owned();
    let task = hand.task(&pw_job).await;
    assert_eq!(task.task_type.as_str(), "change_password");
    let sealed = task.params.0["passwordSealed"].as_str().unwrap().to_owned();
    assert!(!sealed.contains(secret));
    let shown = get(&c, &format!("/api/provisioning/tasks/{pw_job}"))
        .await
        .to_string();
    assert!(
        !shown.contains(secret) && !shown.contains(&sealed),
        "{shown}"
    );
    // One open task per service, and the refusal names it.
    let got = send(&c, Method::POST, &path("suspend"), Body::None, Auth::Admin).await;
    if hand.task(&pw_job).await.status.is_open() {
        assert_error(&got, 409, "task_open", None);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&pw_job)
        );
    }
    hand.settle(&pw_job).await;
    if got.0 == 202 {
        hand.settle(got.1["jobId"].as_str().unwrap()).await;
    }

    let (status, body) = c
        .request(
            Method::POST,
            &path("change-package"),
            Some(json!({"productId": bigger})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let pkg_job = body["jobId"].as_str().unwrap().to_owned();
    let task = hand.task(&pkg_job).await;
    assert_eq!(task.task_type.as_str(), "change_package");
    assert_eq!(task.params.0["productId"], bigger);
    hand.settle(&pkg_job).await;

    let (status, body) = c
        .request(Method::POST, &path("change-password"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    let gen_job = body["jobId"].as_str().unwrap().to_owned();
    assert_eq!(hand.task(&gen_job).await.params.0, json!({}));
    hand.settle(&gen_job).await;

    let (status, body) = c
        .request(
            Method::POST,
            &path("suspend"),
            Some(json!({"reason": "abuse", "note": "phishing report"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["message"], "Suspension queued");
    let job = body["jobId"].as_str().unwrap().to_owned();
    assert_eq!(hand.task(&job).await.params.0["reason"], "abuse");
    assert_eq!(hand.task(&job).await.params.0["note"], "phishing report");
    if hand
        .complete_if_open(
            &job,
            ServiceChange::Suspend {
                reason: "abuse".into(),
            },
        )
        .await
    {
        let s = get(&c, &format!("/api/services/{id}")).await;
        assert_eq!(s["status"], "suspended");
        assert_eq!(s["suspensionReason"], "abuse");
        let (status, body) = c.request(Method::POST, &path("unsuspend"), None).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            hand.task(body["jobId"].as_str().unwrap())
                .await
                .task_type
                .as_str(),
            "unsuspend"
        );
    }
}

#[tokio::test]
async fn every_catalogue_route_needs_an_admin_token() {
    let c = start().await;
    let (_, _, id, _) = one_order(&c, "auth.example.com").await;
    let before = counts(&c).await;
    let routes = [
        (Method::GET, "/api/products".to_owned()),
        (Method::POST, "/api/products".to_owned()),
        (Method::GET, "/api/products/1".to_owned()),
        (Method::GET, "/api/customers".to_owned()),
        (Method::POST, "/api/customers".to_owned()),
        (Method::GET, "/api/customers/1".to_owned()),
        (Method::GET, "/api/services".to_owned()),
        (Method::POST, "/api/services".to_owned()),
        (Method::GET, format!("/api/services/{id}")),
        (Method::PATCH, format!("/api/services/{id}")),
        (Method::POST, format!("/api/services/{id}/suspend")),
        (Method::POST, format!("/api/services/{id}/unsuspend")),
        (Method::POST, format!("/api/services/{id}/terminate")),
        (Method::POST, format!("/api/services/{id}/change-package")),
        (Method::POST, format!("/api/services/{id}/change-password")),
    ];
    for (method, path) in routes {
        for auth in [Auth::Missing, Auth::Wrong] {
            let body = Body::Json(
                json!({"name": "x", "email": "x@example.com", "prices": [], "nextDueDate": null, "productId": 1}),
            );
            let got = send(&c, method.clone(), &path, body, auth).await;
            assert_error(&got, 401, "unauthorized", None);
        }
    }
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn oversize_bodies_are_refused_with_413_in_the_error_shape() {
    let c = start().await;
    let (_, _, id, _) = one_order(&c, "big.example.com").await;
    let before = counts(&c).await;
    let huge = json!({"name": "x".repeat(70 * 1024), "email": "a@example.com", "prices": []});
    for (method, path) in [
        (Method::POST, "/api/products".to_owned()),
        (Method::POST, "/api/customers".to_owned()),
        (Method::POST, "/api/services".to_owned()),
        (Method::PATCH, format!("/api/services/{id}")),
        (Method::POST, format!("/api/services/{id}/suspend")),
        (Method::POST, format!("/api/services/{id}/change-package")),
        (Method::POST, format!("/api/services/{id}/change-password")),
    ] {
        let got = send(&c, method, &path, Body::Json(huge.clone()), Auth::Admin).await;
        assert_error(&got, 413, "body_too_large", None);
    }
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404_and_400() {
    let c = start().await;
    for path in ["/api/products/42", "/api/customers/42", "/api/services/42"] {
        let got = send(&c, Method::GET, path, Body::None, Auth::Admin).await;
        assert_error(&got, 404, "not_found", None);
    }
    for path in ["/api/products/abc", "/api/customers/0", "/api/services/-3"] {
        let got = send(&c, Method::GET, path, Body::None, Auth::Admin).await;
        assert_error(&got, 400, "invalid_id", Some("id"));
    }
}

/// A server as `POST /api/servers` takes it; answers its id.
async fn server(c: &fleet_support::Controller, hostname: &str) -> i64 {
    let (status, body) = c
        .request(
            Method::POST,
            "/api/servers",
            Some(json!({
                "hostname": hostname,
                "ipAddress": "192.0.2.10",
                "controlPanel": "cpanel",
                "controlPanelUrl": "https://127.0.0.1:2087",
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_json_array_is_never_read_as_an_object() {
    let c = start().await;
    let (customer, product, _, _) = one_order(&c, "first.example.com").await;
    let before = counts(&c).await;
    // serde would read these field by field, in declaration order, and create the rows.
    let cases = [
        (
            "/api/services",
            json!([customer, product, "array.example.com", "monthly"]),
        ),
        ("/api/customers", json!(["array@example.com", "Array"])),
        ("/api/products", json!(["Array", "default", {}, {}, []])),
        (
            "/api/provisioning/provision",
            json!([1, customer, product, "first.example.com"]),
        ),
    ];
    for (path, body) in cases {
        let got = send(&c, Method::POST, path, Body::Json(body), Auth::Admin).await;
        assert_error(&got, 400, "invalid_body", None);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("JSON object"),
            "{path}: {}",
            got.1
        );
    }
    for body in ["7", "\"x\"", "null"] {
        let got = send(
            &c,
            Method::POST,
            "/api/customers",
            Body::Raw(body.into()),
            Auth::Admin,
        )
        .await;
        assert_error(&got, 400, "invalid_body", None);
    }
    assert_eq!(counts(&c).await, before);
}

#[tokio::test]
async fn bad_path_ids_answer_the_contract_body_on_every_route() {
    let c = start().await;
    let id = server(&c, "web1.example.net").await;
    let cases = [
        (Method::GET, "/api/servers/abc".to_owned()),
        (Method::GET, "/api/servers/-1".to_owned()),
        (Method::GET, "/api/servers/0".to_owned()),
        (Method::PATCH, "/api/servers/-1".to_owned()),
        (Method::DELETE, "/api/servers/abc".to_owned()),
        (Method::POST, "/api/servers/abc/enrollment-token".to_owned()),
        (
            Method::POST,
            "/api/servers/-7/revoke-certificate".to_owned(),
        ),
        (Method::POST, "/api/servers/x/commands".to_owned()),
        (Method::GET, "/api/servers/-2/drift".to_owned()),
        (Method::GET, "/api/products/-5".to_owned()),
        (Method::PATCH, "/api/customers/-5".to_owned()),
        (Method::POST, "/api/services/-5/terminate".to_owned()),
        (Method::GET, "/api/servers/99999999999999999999".to_owned()),
    ];
    for (method, path) in cases {
        let got = send(&c, method.clone(), &path, Body::None, Auth::Admin).await;
        assert!(got.1.is_object(), "{method} {path}: {:?}", got.1);
        assert_error(&got, 400, "invalid_id", Some("id"));
    }
    let got = send(
        &c,
        Method::GET,
        "/api/servers/424242",
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_error(&got, 404, "not_found", None);
    assert_eq!(get(&c, &format!("/api/servers/{id}")).await["id"], id);
}

#[tokio::test]
async fn patching_a_server_refuses_unknown_fields_and_changes_nothing() {
    let c = start().await;
    let id = server(&c, "web1.example.net").await;
    let path = format!("/api/servers/{id}");
    let before = get(&c, &path).await;
    for (body, field) in [
        (json!({"location": "ams", "colour": "red"}), "colour"),
        (json!({"maxAcounts": 10}), "maxAcounts"),
        (
            json!({"location": "ams", "dnsProvider": "bind"}),
            "dnsProvider",
        ),
    ] {
        let got = send(&c, Method::PATCH, &path, Body::Json(body), Auth::Admin).await;
        assert_eq!(got.0, 400, "{}", got.1);
        assert_eq!(got.1["error"]["field"], field, "{}", got.1);
    }
    assert_eq!(get(&c, &path).await, before);
    let (status, s) = c
        .request(
            Method::PATCH,
            &path,
            Some(json!({"location": "ams", "dnsProvider": "powerdns", "sslProvider": "autossl"})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        (&s["location"], &s["dnsProvider"], &s["sslProvider"]),
        (&json!("ams"), &json!("powerdns"), &json!("autossl"))
    );
}

#[tokio::test]
async fn servers_are_listed_in_pages_by_cursor() {
    let c = start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(server(&c, &format!("web{n}.example.net")).await);
    }
    let first = get(&c, "/api/servers?limit=2").await;
    let page: Vec<i64> = first["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page, ids[..2], "{first}");
    let mut seen = page;
    let mut cursor = first["nextCursor"].as_str().unwrap().to_owned();
    loop {
        let next = get(&c, &format!("/api/servers?limit=2&cursor={cursor}")).await;
        seen.extend(
            next["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_i64().unwrap()),
        );
        match next["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let all = get(&c, "/api/servers").await;
    assert_eq!(all["servers"].as_array().unwrap().len(), 5);
    assert!(all["nextCursor"].is_null());
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=abc", "cursor"),
        ("lmit=2", "lmit"),
    ] {
        let got = send(
            &c,
            Method::GET,
            &format!("/api/servers?{query}"),
            Body::None,
            Auth::Admin,
        )
        .await;
        assert_eq!(got.0, 400, "{query}: {}", got.1);
        assert_eq!(got.1["error"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_whatever_its_case() {
    let c = start().await;
    let client = reqwest::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = client
            .get(format!("{}/api/products", c.http))
            .header("Authorization", format!("{scheme} {}", c.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    let resp = client
        .get(format!("{}/api/products", c.http))
        .header("Authorization", format!("Basic {}", c.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_product_is_patched_field_by_field_and_bad_input_changes_nothing() {
    let c = start().await;
    let id = product(&c, "Starter", "default").await;
    product(&c, "Taken", "default").await;
    let path = format!("/api/products/{id}");
    let before = get(&c, &path).await;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"colour": "red"}),
            400,
            "invalid_body",
            Some("colour"),
        ),
        (
            json!({"packages": {"cpanel": "default&plan=x"}}),
            400,
            "invalid_package",
            Some("packages.cpanel"),
        ),
        (
            json!({"packages": {"whm": "x"}}),
            400,
            "invalid_body",
            Some("packages.whm"),
        ),
        (
            json!({"name": "Renamed", "quotas": {"diskMb": -1}}),
            400,
            "invalid_number",
            Some("quotas.diskMb"),
        ),
        (json!({"name": null}), 400, "invalid_body", Some("name")),
        (json!({"name": "  "}), 400, "invalid_text", Some("name")),
        (json!({"active": "no"}), 400, "invalid_body", Some("active")),
        (
            json!({"prices": [{"cycle": "weekly", "amount": 1, "currency": "USD"}]}),
            400,
            "invalid_billing_cycle",
            Some("prices[0].cycle"),
        ),
        (json!({"name": "Taken"}), 409, "conflict", None),
        (json!(["Renamed"]), 400, "invalid_body", None),
    ];
    for (body, status, code, field) in cases {
        let got = send(
            &c,
            Method::PATCH,
            &path,
            Body::Json(body.clone()),
            Auth::Admin,
        )
        .await;
        assert_error(&got, status, code, field);
    }
    assert_eq!(get(&c, &path).await, before);

    let (status, p) = c
        .request(
            Method::PATCH,
            &path,
            Some(json!({
                "name": "Starter Plus",
                "packages": {"cpanel": "starter_plus"},
                "quotas": {"diskMb": 4096},
                "prices": [{"cycle": "monthly", "amount": 1499, "currency": "EUR"}],
                "active": false
            })),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["name"], "Starter Plus");
    assert_eq!(
        p["packages"],
        json!({"cpanel": "starter_plus", "plesk": "Unlimited", "directadmin": "default"})
    );
    assert_eq!(p["quotas"]["diskMb"], 4096);
    assert_eq!(
        p["quotas"]["emailQuotaMb"],
        before["quotas"]["emailQuotaMb"]
    );
    assert_eq!(
        p["prices"],
        json!([{"cycle": "monthly", "amount": 1499, "currency": "EUR"}])
    );
    assert_eq!(p["active"], false);
    assert_eq!(get(&c, &path).await, p);
    let (status, same) = c.request(Method::PATCH, &path, Some(json!({}))).await;
    assert_eq!((status, &same), (200, &p));
    let got = send(
        &c,
        Method::PATCH,
        "/api/products/4242",
        Body::Json(json!({"active": true})),
        Auth::Admin,
    )
    .await;
    assert_error(&got, 404, "not_found", None);
}

#[tokio::test]
async fn a_customer_is_patched_and_a_closed_one_cannot_order() {
    let c = start().await;
    let id = customer(&c, "ann@example.com").await;
    customer(&c, "bob@example.com").await;
    let product = product(&c, "Starter", "default").await;
    let path = format!("/api/customers/{id}");
    let before = get(&c, &path).await;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"stripeCustomerId": "cus_1"}),
            400,
            "invalid_body",
            Some("stripeCustomerId"),
        ),
        (
            json!({"email": "not-an-address"}),
            400,
            "invalid_email",
            Some("email"),
        ),
        (
            json!({"name": "Ann", "status": "gone"}),
            400,
            "invalid_status",
            Some("status"),
        ),
        (json!({"email": null}), 400, "invalid_body", Some("email")),
        (json!({"email": "Bob@Example.com"}), 409, "conflict", None),
    ];
    for (body, status, code, field) in cases {
        let got = send(
            &c,
            Method::PATCH,
            &path,
            Body::Json(body.clone()),
            Auth::Admin,
        )
        .await;
        assert_error(&got, status, code, field);
    }
    assert_eq!(get(&c, &path).await, before);

    let (status, u) = c
        .request(
            Method::PATCH,
            &path,
            Some(
                json!({"email": " Ann.New@Example.com ", "name": " Ann New ", "status": "closed"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(
        (&u["email"], &u["name"], &u["status"]),
        (
            &json!("ann.new@example.com"),
            &json!("Ann New"),
            &json!("closed")
        )
    );
    let got = send(
        &c,
        Method::POST,
        "/api/services",
        Body::Json(json!({"customerId": id, "productId": product, "domain": "closed.example.com", "billingCycle": "monthly"})),
        Auth::Admin,
    )
    .await;
    assert_error(&got, 422, "customer_closed", Some("customerId"));
}

#[tokio::test]
async fn a_repeated_order_is_told_which_service_and_job_it_already_has() {
    let c = start().await;
    let (customer, product, service, job) = one_order(&c, "again.example.com").await;
    let before = counts(&c).await;
    // The client's first answer was lost; it sends the same order again.
    let got = send(
        &c,
        Method::POST,
        "/api/services",
        Body::Json(json!({"customerId": customer, "productId": product, "domain": "Again.Example.com", "billingCycle": "monthly"})),
        Auth::Admin,
    )
    .await;
    assert_error(&got, 409, "conflict", Some("domain"));
    let error = &got.1["error"];
    assert_eq!(error["serviceId"], service, "{error}");
    assert_eq!(error["jobId"], job.as_str(), "{error}");
    assert_eq!(counts(&c).await, before);
    let task = get(
        &c,
        &format!(
            "/api/provisioning/tasks/{}",
            error["jobId"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(task["serviceId"], service);
}

#[tokio::test]
async fn an_order_for_a_mixed_script_domain_is_taken_with_a_warning() {
    let c = start().await;
    let customer = customer(&c, "ann@example.com").await;
    let product = product(&c, "Starter", "default").await;
    let (status, body) = c
        .request(
            Method::POST,
            "/api/services",
            // Cyrillic U+0430 in place of the second Latin 'a'.
            Some(json!({"customerId": customer, "productId": product, "domain": "p\u{0430}ypal.com", "billingCycle": "monthly"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{body}");
    assert_eq!(warnings[0]["code"], "mixed_script");
    assert_eq!(warnings[0]["field"], "domain");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(message.contains("Latin, Cyrillic"), "{message}");
    assert!(
        body["service"]["domain"]
            .as_str()
            .unwrap()
            .starts_with("xn--")
    );
}
