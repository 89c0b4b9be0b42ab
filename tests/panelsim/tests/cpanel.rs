//! The simulated cPanel/WHM over real HTTPS.

mod common;

use common::{TOKEN, client, unique};
use mpanel_panelsim::{FaultKind, ScriptedFault, SimConfig, SimHandle, SimKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Whm {
    sim: SimHandle,
    http: reqwest::Client,
}

impl Whm {
    async fn start() -> Self {
        Self::with(common::config(SimKind::Cpanel)).await
    }

    async fn with(config: SimConfig) -> Self {
        Whm {
            sim: common::start(config).await,
            http: client(),
        }
    }

    async fn call(&self, function: &str, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/json-api/{function}", self.sim.base_url()))
            .query(&[("api.version", "1")])
            .query(params)
            .header("Authorization", format!("whm root:{TOKEN}"))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST with a form body, as drivers that send long certificates do.
    async fn post(&self, function: &str, params: &[(&str, &str)]) -> Value {
        self.http
            .post(format!(
                "{}/json-api/{function}?api.version=1",
                self.sim.base_url()
            ))
            .form(params)
            .header("Authorization", format!("whm root:{TOKEN}"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    async fn uapi(
        &self,
        user: &str,
        module: &str,
        function: &str,
        params: &[(&str, &str)],
    ) -> Value {
        let (_, body) = self
            .call(
                "uapi_cpanel",
                &[
                    &[
                        ("cpanel.user", user),
                        ("cpanel.module", module),
                        ("cpanel.function", function),
                    ],
                    params,
                ]
                .concat(),
            )
            .await;
        body["data"]["uapi"].clone()
    }

    async fn create(&self, user: &str, domain: &str) -> Value {
        let (status, body) = self
            .call(
                "createacct",
                &[
                    ("username", user),
                    ("domain", domain),
                    ("password", "S3cret-pass!"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }
}

/// `metadata.result` may be 1 or "1" (§1.2); accept both, as drivers must.
fn result(body: &Value) -> i64 {
    match &body["metadata"]["result"] {
        Value::Number(n) => n.as_i64().unwrap_or(-1),
        Value::String(s) => s.parse().unwrap_or(-1),
        other => panic!("metadata.result missing in {other}: {body}"),
    }
}

#[tokio::test]
async fn bad_or_missing_token_gets_403_access_denied() {
    let whm = Whm::start().await;
    let url = format!("{}/json-api/listaccts?api.version=1", whm.sim.base_url());
    for auth in [
        Some("whm root:wrong"),
        Some("whm reseller:test-token-123"),
        Some("Bearer x"),
        None,
    ] {
        let mut request = whm.http.get(&url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "auth {auth:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"cpanelresult": {"apiversion": "2", "error": "Access denied",
                   "data": {"reason": "Access denied", "result": "0"}, "type": "text"}})
        );
    }
    // The scheme is case-insensitive.
    let response = whm
        .http
        .get(&url)
        .header("Authorization", format!("WHM root:{TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn createacct_is_not_idempotent_and_checks_names_domains_and_plans() {
    let whm = Whm::start().await;
    let user = unique("c");
    let created = whm.create(&user, &format!("{user}.test")).await;
    assert_eq!(result(&created), 1, "{created}");
    assert_eq!(created["metadata"]["reason"], "Account Creation Ok");
    assert!(
        created["metadata"]["output"]["raw"]
            .as_str()
            .unwrap()
            .contains("Account Creation")
    );
    assert_eq!(created["data"]["package"], "default");

    let again = whm.create(&user, &format!("{user}.test")).await;
    assert_eq!(result(&again), 0);
    assert_eq!(
        again["metadata"]["reason"],
        "Sorry, a group for that username already exists."
    );

    let other = unique("d");
    let taken = whm.create(&other, &format!("{user}.test")).await;
    assert_eq!(result(&taken), 0);
    assert_eq!(
        taken["metadata"]["reason"],
        format!(
            "Sorry, a DNS entry for {user}.test already exists, please delete it first (from all servers in the dns cluster)"
        )
    );

    let (_, bad_plan) = whm
        .call(
            "createacct",
            &[
                ("username", &other),
                ("domain", "fresh.test"),
                ("plan", "gold"),
            ],
        )
        .await;
    assert_eq!(result(&bad_plan), 0);
    for bad in [
        "test1",
        "1abc",
        "has-dash",
        "waytoolongusername",
        "root",
        "mypassword",
    ] {
        let (_, body) = whm
            .call("createacct", &[("username", bad), ("domain", "x.test")])
            .await;
        assert_eq!(result(&body), 0, "{bad} should be refused");
    }
    let state = whm.sim.state_json();
    assert_eq!(common::ours(&state).len(), 1, "{state}");
    assert_eq!(common::ours(&state)[0]["domain"], format!("{user}.test"));
    assert_eq!(common::ours(&state)[0]["owner"], "root");
}

#[tokio::test]
async fn metadata_result_alternates_number_and_string_from_the_seed() {
    let whm = Whm::start().await;
    let (_, first) = whm.call("listpkgs", &[]).await;
    let (_, second) = whm.call("listpkgs", &[]).await;
    assert_eq!(first["metadata"]["result"], json!(1));
    assert_eq!(second["metadata"]["result"], json!("1"));

    let odd = Whm::with(SimConfig {
        seed: 1,
        ..common::config(SimKind::Cpanel)
    })
    .await;
    let (_, first) = odd.call("listpkgs", &[]).await;
    assert_eq!(first["metadata"]["result"], json!("1"));
}

#[tokio::test]
async fn partial_success_creates_exactly_one_account_and_reports_the_group_error() {
    let whm = Whm::start().await;
    let response = whm
        .http
        .post(format!("{}/__sim/faults", whm.sim.base_url()))
        .json(&json!({"kind": "partial_success", "pathContains": "createacct", "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let user = unique("p");
    let first = whm.create(&user, &format!("{user}.test")).await;
    assert_eq!(result(&first), 0);
    assert_eq!(
        first["metadata"]["reason"],
        "Sorry, a group for that username already exists."
    );
    // The retry a naive driver makes fails the same way; the account is there once.
    let retry = whm.create(&user, &format!("{user}.test")).await;
    assert_eq!(result(&retry), 0);
    let (_, summary) = whm.call("accountsummary", &[("user", &user)]).await;
    assert_eq!(result(&summary), 1);
    assert_eq!(summary["data"]["acct"][0]["user"], user.as_str());

    let state = whm.sim.state_json();
    assert_eq!(common::ours(&state).len(), 1);
    assert_eq!(common::accounts_named(&state, &user), 1);
    assert_eq!(state["callCounts"]["createacct"], 2);
    assert_eq!(state["pendingFaults"], json!([]));
}

#[tokio::test]
async fn already_exists_fault_creates_nothing() {
    let whm = Whm::start().await;
    whm.sim
        .script(ScriptedFault::on(FaultKind::AlreadyExists, "createacct", 1));
    let user = unique("a");
    let body = whm.create(&user, &format!("{user}.test")).await;
    assert_eq!(result(&body), 0);
    assert!(common::ours(&whm.sim.state_json()).is_empty());
    assert_eq!(result(&whm.create(&user, &format!("{user}.test")).await), 1);
}

#[tokio::test]
async fn fail_rate_failures_are_5xx_and_change_nothing() {
    let whm = Whm::with(SimConfig {
        fail_rate: 1.0,
        ..common::config(SimKind::Cpanel)
    })
    .await;
    let user = unique("f");
    for _ in 0..3 {
        let (status, body) = whm
            .call("createacct", &[("username", &user), ("domain", "f.test")])
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    let state = whm.sim.state_json();
    assert!(common::ours(&state).is_empty(), "{state}");
    assert!(common::our_zones(&state).is_empty());
    assert_eq!(state["callCounts"]["createacct"], 3);
}

#[tokio::test]
async fn lifecycle_suspend_package_password_remove() {
    let whm = Whm::start().await;
    let user = unique("l");
    assert_eq!(result(&whm.create(&user, &format!("{user}.test")).await), 1);

    let (_, suspended) = whm
        .call("suspendacct", &[("user", &user), ("reason", "unpaid")])
        .await;
    assert_eq!(result(&suspended), 1);
    assert!(suspended["metadata"]["output"]["raw"].is_string());
    let (_, listed) = whm
        .call("listaccts", &[("search", &user), ("searchtype", "user")])
        .await;
    assert_eq!(listed["data"]["acct"][0]["suspended"], 1);
    assert_eq!(listed["data"]["acct"][0]["suspendreason"], "unpaid");
    assert_eq!(listed["data"]["acct"][0]["disklimit"], "unlimited");
    assert!(listed["data"]["acct"][0]["maxpop"].is_string());
    assert_eq!(common::ours(&whm.sim.state_json())[0]["suspended"], true);

    let (_, unsuspended) = whm.call("unsuspendacct", &[("user", &user)]).await;
    assert_eq!(result(&unsuspended), 1);
    let (_, changed) = whm
        .call("changepackage", &[("user", &user), ("pkg", "starter")])
        .await;
    assert_eq!(result(&changed), 1);
    let (_, listed) = whm
        .call(
            "listaccts",
            &[("search", "starter"), ("searchtype", "package")],
        )
        .await;
    assert_eq!(listed["data"]["acct"][0]["disklimit"], "1024M");
    assert_eq!(listed["data"]["acct"][0]["maxpop"], "5");
    let (_, missing_pkg) = whm
        .call("changepackage", &[("user", &user), ("pkg", "nope")])
        .await;
    assert_eq!(result(&missing_pkg), 0);

    let (_, passwd) = whm
        .call("passwd", &[("user", &user), ("password", "N3w-pass")])
        .await;
    assert_eq!(
        passwd["metadata"]["reason"],
        format!("Password changed for user “{user}”.")
    );
    let state = whm.sim.state_json();
    assert_eq!(common::ours(&state)[0]["password"], "N3w-pass");
    assert_eq!(common::ours(&state)[0]["package"], "starter");
    assert_eq!(common::ours(&state)[0]["suspended"], false);

    let (_, verify) = whm.call("verify_new_username", &[("user", &user)]).await;
    assert_eq!(result(&verify), 0);
    let (_, bw) = whm.call("showbw", &[]).await;
    assert!(
        bw["data"]["acct"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["user"] == user.as_str()),
        "{bw}"
    );

    let (_, removed) = whm.call("removeacct", &[("username", &user)]).await;
    assert_eq!(result(&removed), 1);
    let (_, gone) = whm.call("suspendacct", &[("user", &user)]).await;
    assert_eq!(result(&gone), 0);
    let state = whm.sim.state_json();
    assert!(common::ours(&state).is_empty());
    assert!(common::our_zones(&state).is_empty());
}

#[tokio::test]
async fn uapi_through_uapi_cpanel_and_the_legacy_proxy() {
    let whm = Whm::start().await;
    let user = unique("m");
    let domain = format!("{user}.test");
    assert_eq!(result(&whm.create(&user, &domain).await), 1);

    let added = whm
        .uapi(
            &user,
            "Email",
            "add_pop",
            &[
                ("email", "info"),
                ("password", "Mail-pass1"),
                ("quota", "100"),
            ],
        )
        .await;
    assert_eq!(added["status"], 1, "{added}");
    assert_eq!(added["errors"], Value::Null);
    let duplicate = whm
        .uapi(
            &user,
            "Email",
            "add_pop",
            &[("email", &format!("info@{domain}")), ("password", "x")],
        )
        .await;
    assert_eq!(duplicate["status"], 0);
    assert_eq!(
        duplicate["errors"][0],
        format!("The email account “info@{domain}” already exists.")
    );

    let legacy: Value = whm
        .http
        .get(format!("{}/json-api/cpanel", whm.sim.base_url()))
        .query(&[
            ("cpanel_jsonapi_user", user.as_str()),
            ("cpanel_jsonapi_apiversion", "3"),
            ("cpanel_jsonapi_module", "Email"),
            ("cpanel_jsonapi_func", "list_pops"),
        ])
        .header("Authorization", format!("whm root:{TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["result"]["status"], 1, "{legacy}");
    assert_eq!(
        legacy["result"]["data"][0]["email"],
        format!("info@{domain}")
    );

    let unprefixed = whm
        .uapi(&user, "Mysql", "create_database", &[("name", "wordpress")])
        .await;
    assert_eq!(unprefixed["status"], 0);
    assert!(
        unprefixed["errors"][0]
            .as_str()
            .unwrap()
            .contains(&format!("“{}_”", &user[..8]))
    );

    let unknown_user = whm.uapi("nobody1", "Email", "list_pops", &[]).await;
    assert_eq!(unknown_user, Value::Null);

    let state = whm.sim.state_json();
    assert_eq!(state["mailboxes"][0]["address"], format!("info@{domain}"));
    assert_eq!(state["mailboxes"][0]["quotaMb"], 100);
    assert_eq!(state["callCounts"]["uapi_cpanel:Email::add_pop"], 2);
}

#[tokio::test]
async fn mass_edit_dns_zone_requires_the_current_serial() {
    let whm = Whm::start().await;
    let user = unique("z");
    let zone = format!("{user}.test");
    assert_eq!(result(&whm.create(&user, &zone).await), 1);

    let (_, parsed) = whm.call("parse_dns_zone", &[("zone", &zone)]).await;
    let soa = &parsed["data"]["payload"][0];
    assert_eq!(soa["record_type"], "SOA");
    use base64::Engine as _;
    let serial = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(soa["data_b64"][2].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();

    let add = r#"{"dname":"_acme-challenge","ttl":300,"record_type":"TXT","data":["token-value"]}"#;
    let (_, stale) = whm
        .call(
            "mass_edit_dns_zone",
            &[("zone", &zone), ("serial", "1"), ("add", add)],
        )
        .await;
    assert_eq!(result(&stale), 0);
    assert!(
        stale["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("serial")
    );

    let (_, edited) = whm
        .call(
            "mass_edit_dns_zone",
            &[("zone", &zone), ("serial", &serial), ("add", add)],
        )
        .await;
    assert_eq!(result(&edited), 1, "{edited}");
    let new_serial = edited["data"]["new_serial"].as_str().unwrap().to_owned();
    assert_ne!(new_serial, serial);

    let state = whm.sim.state_json();
    let ours = zone_of(&state, &zone);
    let records = ours["records"].as_array().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["name"] == format!("_acme-challenge.{zone}")
                && r["type"] == "TXT"
                && r["value"] == "token-value")
    );
    assert_eq!(ours["serial"].to_string(), new_serial);

    let (_, dumped) = whm.call("dumpzone", &[("domain", &zone)]).await;
    let rows = dumped["data"]["zone"][0]["record"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["txtdata"] == "token-value"));
}

#[tokio::test]
async fn installssl_and_autossl_are_recorded() {
    let whm = Whm::start().await;
    let user = unique("s");
    let domain = format!("{user}.test");
    assert_eq!(result(&whm.create(&user, &domain).await), 1);
    let (cert, key) = common::certificate(&domain);
    let installed = whm
        .post(
            "installssl",
            &[("domain", &domain), ("crt", &cert), ("key", &key)],
        )
        .await;
    assert_eq!(result(&installed), 1, "{installed}");
    assert_eq!(installed["data"]["domain"], domain.as_str());
    let garbage = whm
        .post(
            "installssl",
            &[("domain", &domain), ("crt", "nope"), ("key", &key)],
        )
        .await;
    assert_eq!(result(&garbage), 0);

    let (_, autossl) = whm
        .call("start_autossl_check_for_one_user", &[("username", &user)])
        .await;
    assert!(autossl["data"]["pid"].is_number());
    let state = whm.sim.state_json();
    assert_eq!(state["certificates"][0]["domain"], domain.as_str());
    assert_eq!(state["certificates"][0]["source"], "installssl");
    assert_eq!(state["autosslChecks"][0], user.as_str());
}

#[tokio::test]
async fn real_mariadb_database_and_user_work_and_go_with_the_account() {
    let url = common::require_mariadb().await;
    let whm = Whm::with(SimConfig {
        mariadb_url: Some(url),
        ..common::config(SimKind::Cpanel)
    })
    .await;
    let user = unique("q");
    assert_eq!(result(&whm.create(&user, &format!("{user}.test")).await), 1);
    // The prefix is the first 8 characters of the cPanel user (reference §1.7).
    let prefix = &user[..8];
    let database = format!("{prefix}_wp");
    let db_user = format!("{prefix}_wpu");
    let password = "Db-pass-1'x";

    let created = whm
        .uapi(&user, "Mysql", "create_database", &[("name", &database)])
        .await;
    assert_eq!(created["status"], 1, "{created}");
    let created = whm
        .uapi(
            &user,
            "Mysql",
            "create_user",
            &[("name", &db_user), ("password", password)],
        )
        .await;
    assert_eq!(created["status"], 1, "{created}");
    let granted = whm
        .uapi(
            &user,
            "Mysql",
            "set_privileges_on_database",
            &[
                ("user", &db_user),
                ("database", &database),
                ("privileges", "ALL PRIVILEGES"),
            ],
        )
        .await;
    assert_eq!(granted["status"], 1, "{granted}");
    let listed = whm.uapi(&user, "Mysql", "list_databases", &[]).await;
    assert_eq!(listed["data"][0]["users"][0], db_user.as_str());

    assert_eq!(
        common::login_and_use(&db_user, password, &database)
            .await
            .unwrap(),
        42
    );

    let (_, removed) = whm.call("removeacct", &[("username", &user)]).await;
    assert_eq!(result(&removed), 1);
    assert!(!common::database_exists(&database).await);
    assert!(!common::user_exists(&db_user).await);
    assert!(
        common::login_and_use(&db_user, password, &database)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn acme_file_written_with_fileman_is_served_over_plain_http_on_the_tls_port() {
    let whm = Whm::with(SimConfig {
        web_root_http: true,
        ..common::config(SimKind::Cpanel)
    })
    .await;
    let user = unique("h");
    let domain = format!("{user}.test");
    assert_eq!(result(&whm.create(&user, &domain).await), 1);
    let saved = whm
        .uapi(
            &user,
            "Fileman",
            "save_file_content",
            &[
                (
                    "dir",
                    &format!("/home/{user}/public_html/.well-known/acme-challenge"),
                ),
                ("file", "tok123"),
                ("content", "tok123.thumbprint"),
            ],
        )
        .await;
    assert_eq!(saved["status"], 1, "{saved}");

    let plain = reqwest::Client::new();
    let url = format!(
        "http://{}/.well-known/acme-challenge/tok123",
        whm.sim.addr()
    );
    for host in [domain.clone(), format!("www.{domain}")] {
        let response = plain.get(&url).header("Host", host).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "tok123.thumbprint");
    }
    let other = plain
        .get(&url)
        .header("Host", "other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // Plain HTTP reaches nothing else on the TLS port.
    let api = plain
        .get(format!("http://{}/json-api/listaccts", whm.sim.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::BAD_REQUEST);
    let state = whm.sim.state_json();
    assert_eq!(
        state["webRootFiles"][0]["urlPath"],
        "/.well-known/acme-challenge/tok123"
    );
}

/// The zone `domain` as the simulator holds it.
fn zone_of(state: &Value, domain: &str) -> Value {
    state["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["domain"] == domain)
        .cloned()
        .unwrap_or_else(|| panic!("no zone {domain}: {state}"))
}

#[tokio::test]
async fn mass_edit_dns_zone_refuses_a_missing_or_empty_serial_and_changes_nothing() {
    let whm = Whm::start().await;
    let user = unique("m");
    let zone = format!("{user}.test");
    assert_eq!(result(&whm.create(&user, &zone).await), 1);
    let before = zone_of(&whm.sim.state_json(), &zone);
    let add = r#"{"dname":"_acme-challenge","ttl":300,"record_type":"TXT","data":["t"]}"#;
    for params in [
        vec![("zone", zone.as_str()), ("add", add)],
        vec![("zone", zone.as_str()), ("serial", ""), ("add", add)],
    ] {
        let (_, refused) = whm.call("mass_edit_dns_zone", &params).await;
        assert_eq!(result(&refused), 0, "{params:?}: {refused}");
        assert!(
            refused["metadata"]["reason"]
                .as_str()
                .unwrap()
                .contains("serial"),
            "{refused}"
        );
    }
    assert_eq!(zone_of(&whm.sim.state_json(), &zone), before);
}

#[tokio::test]
async fn mass_edit_dns_zone_refuses_a_cname_beside_other_data() {
    let whm = Whm::start().await;
    let user = unique("n");
    let zone = format!("{user}.test");
    assert_eq!(result(&whm.create(&user, &zone).await), 1);
    let before = zone_of(&whm.sim.state_json(), &zone);
    let serial = before["serial"].to_string();
    let cname = r#"{"dname":"shop","ttl":300,"record_type":"CNAME","data":["elsewhere.example."]}"#;
    let a = r#"{"dname":"shop","ttl":300,"record_type":"A","data":["192.0.2.7"]}"#;
    let (_, refused) = whm
        .call(
            "mass_edit_dns_zone",
            &[
                ("zone", &zone),
                ("serial", &serial),
                ("add", cname),
                ("add", a),
            ],
        )
        .await;
    assert_eq!(result(&refused), 0, "{refused}");
    assert!(
        refused["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("CNAME"),
        "{refused}"
    );
    assert_eq!(zone_of(&whm.sim.state_json(), &zone), before);
    let (_, added) = whm
        .call(
            "addzonerecord",
            &[
                ("zone", &zone),
                ("name", "shop"),
                ("type", "CNAME"),
                ("cname", "elsewhere.example."),
            ],
        )
        .await;
    assert_eq!(result(&added), 1, "{added}");
    let (_, beside) = whm
        .call(
            "addzonerecord",
            &[
                ("zone", &zone),
                ("name", "shop"),
                ("type", "A"),
                ("address", "192.0.2.7"),
            ],
        )
        .await;
    assert_eq!(result(&beside), 0, "{beside}");
}

#[tokio::test]
async fn functions_refuse_a_call_without_their_required_arguments() {
    let whm = Whm::start().await;
    let user = unique("r");
    assert_eq!(result(&whm.create(&user, &format!("{user}.test")).await), 1);
    let before = whm.sim.state_json();
    for (function, params, missing) in [
        ("suspendacct", vec![("reason", "x")], "user"),
        ("unsuspendacct", vec![], "user"),
        ("removeacct", vec![("keepdns", "0")], "username"),
        ("changepackage", vec![("user", user.as_str())], "pkg"),
        ("changepackage", vec![("pkg", "starter")], "user"),
        ("passwd", vec![("password", "N3w-pass-x")], "user"),
        ("installssl", vec![("domain", "x.test")], "crt"),
        ("mass_edit_dns_zone", vec![("serial", "1")], "zone"),
    ] {
        let (_, body) = whm.call(function, &params).await;
        assert_eq!(result(&body), 0, "{function}: {body}");
        assert_eq!(
            body["metadata"]["reason"],
            format!("“{missing}” is a required argument."),
            "{function}"
        );
    }
    let after = whm.sim.state_json();
    assert_eq!(after["accounts"], before["accounts"]);
    assert_eq!(after["zones"], before["zones"]);
}

#[tokio::test]
async fn listaccts_refuses_unknown_search_kinds_and_temporary_zones_cannot_be_edited() {
    let whm = Whm::start().await;
    let (_, bad_type) = whm
        .call("listaccts", &[("search", "x"), ("searchtype", "email")])
        .await;
    assert_eq!(result(&bad_type), 0, "{bad_type}");
    let (_, bad_method) = whm
        .call("listaccts", &[("search", "x"), ("searchmethod", "fuzzy")])
        .await;
    assert_eq!(result(&bad_method), 0, "{bad_method}");
    let (_, exact) = whm
        .call(
            "listaccts",
            &[
                ("search", mpanel_panelsim::RESIDENT_USER),
                ("searchtype", "user"),
                ("searchmethod", "exact"),
            ],
        )
        .await;
    assert_eq!(result(&exact), 1, "{exact}");

    // Without `domain`, createacct makes a temporary domain, whose zone is not editable.
    let user = unique("t");
    let (_, created) = whm.call("createacct", &[("username", &user)]).await;
    assert_eq!(result(&created), 1, "{created}");
    let temporary = format!("{user}.temp.panelsim.test");
    let before = zone_of(&whm.sim.state_json(), &temporary);
    let add = r#"{"dname":"x","ttl":300,"record_type":"A","data":["192.0.2.7"]}"#;
    let (_, refused) = whm
        .call(
            "mass_edit_dns_zone",
            &[
                ("zone", &temporary),
                ("serial", &before["serial"].to_string()),
                ("add", add),
            ],
        )
        .await;
    assert_eq!(result(&refused), 0, "{refused}");
    assert!(
        refused["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("temporary"),
        "{refused}"
    );
    assert_eq!(zone_of(&whm.sim.state_json(), &temporary), before);
}
