//! The simulated Plesk over real HTTPS.

mod common;

use common::{TOKEN, client, unique};
use mpanel_panelsim::{FaultKind, ScriptedFault, SimConfig, SimHandle, SimKind};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Plesk {
    sim: SimHandle,
    http: reqwest::Client,
}

impl Plesk {
    async fn start() -> Self {
        Self::with(common::config(SimKind::Plesk)).await
    }

    async fn with(config: SimConfig) -> Self {
        Plesk {
            sim: common::start(config).await,
            http: client(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v2{path}", self.sim.base_url()))
            .header("X-API-Key", TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create_client(&self, login: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/clients",
            Some(
                json!({"name": "Test Customer", "login": login, "password": "Cl1ent-pass",
                        "email": format!("{login}@example.com"), "type": "customer"}),
            ),
        )
        .await
    }

    async fn create_domain(&self, name: &str, login: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/domains",
            Some(json!({"name": name, "hosting_type": "virtual",
                        "hosting_settings": {"ftp_login": format!("{login}ftp"), "ftp_password": "Ftp-pass1"},
                        "owner_client": {"login": login}, "plan": {"name": "Unlimited"}})),
        )
        .await
    }

    async fn cli(&self, command: &str, params: &[&str]) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/cli/{command}/call"),
            Some(json!({"params": params})),
        )
        .await
    }

    async fn xml(&self, headers: &[(&str, &str)], body: &str) -> String {
        let mut request = self
            .http
            .post(format!(
                "{}/enterprise/control/agent.php",
                self.sim.base_url()
            ))
            .header("Content-Type", "text/xml")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }
}

#[tokio::test]
async fn bad_credentials_get_401_error_response_and_xml_system_errors() {
    let plesk = Plesk::start().await;
    let url = format!("{}/api/v2/clients", plesk.sim.base_url());
    for request in [
        plesk.http.get(&url).header("X-API-Key", "wrong"),
        plesk.http.get(&url).basic_auth("admin", Some("wrong")),
        plesk.http.get(&url),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 401);
        assert!(body["message"].is_string());
    }
    let basic = plesk
        .http
        .get(&url)
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);

    let packet = "<packet><server><get_protos/></server></packet>";
    let bad_key = plesk.xml(&[("KEY", "nope")], packet).await;
    assert!(
        bad_key.contains("<system><status>error</status><errcode>11003</errcode>"),
        "{bad_key}"
    );
    let bad_password = plesk
        .xml(
            &[("HTTP_AUTH_LOGIN", "admin"), ("HTTP_AUTH_PASSWD", "nope")],
            packet,
        )
        .await;
    assert!(
        bad_password.contains("<errcode>1001</errcode>"),
        "{bad_password}"
    );
    let unknown = plesk.xml(&[("KEY", TOKEN)], packet).await;
    assert!(unknown.contains("<errcode>1014</errcode>"), "{unknown}");
}

#[tokio::test]
async fn clients_and_domains_are_created_once_with_201() {
    let plesk = Plesk::start().await;
    let login = unique("p");
    let (status, created) = plesk.create_client(&login).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].is_u64() && created["guid"].is_string());
    let (status, duplicate) = plesk.create_client(&login).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        duplicate,
        json!({"code": 400, "message": "Account with this name already exists"})
    );

    let domain = format!("{login}.test");
    let (status, site) = plesk.create_domain(&domain, &login).await;
    assert_eq!(status, StatusCode::CREATED, "{site}");
    let (status, again) = plesk.create_domain(&domain, &login).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    let (_, found) = plesk
        .call(Method::GET, &format!("/domains?name={domain}"), None)
        .await;
    assert_eq!(
        found[0]["www_root"],
        format!("/var/www/vhosts/{domain}/httpdocs")
    );
    assert_eq!(found[0]["id"], site["id"]);

    let id = created["id"].as_u64().unwrap();
    let (_, client) = plesk
        .call(Method::GET, &format!("/clients/{id}"), None)
        .await;
    assert_eq!(client["login"], login.as_str());
    assert_eq!(client["status"], 0);
    let (status, missing) = plesk.call(Method::GET, "/clients/999999", None).await;
    assert_eq!(
        (status, missing["code"].clone()),
        (StatusCode::NOT_FOUND, json!(404))
    );

    let state = plesk.sim.state_json();
    assert_eq!(common::ours(&state)[0]["domain"], domain.as_str());
    assert_eq!(common::ours(&state)[0]["package"], "Unlimited");
}

#[tokio::test]
async fn partial_success_on_clients_leaves_exactly_one_client() {
    let plesk = Plesk::start().await;
    plesk.sim.script(ScriptedFault::on(
        FaultKind::PartialSuccess,
        "/api/v2/clients",
        1,
    ));
    let login = unique("p");
    let (status, body) = plesk.create_client(&login).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "Account with this name already exists");
    let (status, _) = plesk.create_client(&login).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, clients) = plesk.call(Method::GET, "/clients", None).await;
    let listed: Vec<&Value> = clients
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["login"] == login.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{clients}");
    assert_eq!(common::ours(&plesk.sim.state_json()).len(), 1);
    assert_eq!(common::accounts_named(&plesk.sim.state_json(), &login), 1);
}

#[tokio::test]
async fn fail_rate_failures_are_5xx_and_change_nothing() {
    let plesk = Plesk::with(SimConfig {
        fail_rate: 1.0,
        seed: 9,
        ..common::config(SimKind::Plesk)
    })
    .await;
    let (status, body) = plesk.create_client(&unique("f")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], 503);
    assert!(common::ours(&plesk.sim.state_json()).is_empty());
}

#[tokio::test]
async fn suspend_activate_status_and_delete() {
    let plesk = Plesk::start().await;
    let login = unique("s");
    let (_, created) = plesk.create_client(&login).await;
    let id = created["id"].as_u64().unwrap();
    let (_, site) = plesk.create_domain(&format!("{login}.test"), &login).await;
    let site_id = site["id"].as_u64().unwrap();

    let (status, body) = plesk
        .call(Method::PUT, &format!("/clients/{id}/suspend"), None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "success"}))
    );
    assert_eq!(common::ours(&plesk.sim.state_json())[0]["suspended"], true);
    plesk
        .call(Method::PUT, &format!("/clients/{id}/activate"), None)
        .await;
    let (_, status) = plesk
        .call(
            Method::PUT,
            &format!("/domains/{site_id}/status"),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, json!({"status": "suspended"}));
    assert_eq!(common::ours(&plesk.sim.state_json())[0]["suspended"], true);
    plesk
        .call(
            Method::PUT,
            &format!("/domains/{site_id}/status"),
            Some(json!({"status": "active"})),
        )
        .await;

    let (status, _) = plesk
        .call(
            Method::PUT,
            &format!("/clients/{id}"),
            Some(json!({"password": "An0ther-pass"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, stats) = plesk
        .call(Method::GET, &format!("/clients/{id}/statistics"), None)
        .await;
    assert_eq!(stats["active_domains"], 1);

    let (status, deleted) = plesk
        .call(Method::DELETE, &format!("/clients/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["id"], id);
    let state = plesk.sim.state_json();
    assert!(common::ours(&state).is_empty());
    let domains: Vec<&Value> = state["domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["name"] != mpanel_panelsim::RESIDENT_DOMAIN)
        .collect();
    assert!(domains.is_empty(), "{state}");
}

#[tokio::test]
async fn dns_records_crud() {
    let plesk = Plesk::start().await;
    let login = unique("d");
    let domain = format!("{login}.test");
    plesk.create_client(&login).await;
    plesk.create_domain(&domain, &login).await;

    let (status, record) = plesk
        .call(
            Method::POST,
            &format!("/dns/records?domain={domain}"),
            Some(json!({"type": "TXT", "host": "_acme-challenge", "value": "abc", "opt": "", "ttl": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["host"], format!("_acme-challenge.{domain}."));
    let id = record["id"].as_u64().unwrap();
    let (_, records) = plesk
        .call(Method::GET, &format!("/dns/records?domain={domain}"), None)
        .await;
    assert!(records.as_array().unwrap().iter().any(|r| r["id"] == id));
    let (status, _) = plesk
        .call(
            Method::PUT,
            &format!("/dns/records/{id}"),
            Some(json!({"value": "def"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, fetched) = plesk
        .call(Method::GET, &format!("/dns/records/{id}"), None)
        .await;
    assert_eq!(fetched["value"], "def");
    let (status, body) = plesk
        .call(Method::DELETE, &format!("/dns/records/{id}"), None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "success"}))
    );
    let (status, _) = plesk
        .call(Method::GET, "/dns/records?domain=missing.test", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cli_gateway_mail_subscription_and_unknown_commands() {
    let plesk = Plesk::start().await;
    let login = unique("c");
    let domain = format!("{login}.test");
    plesk.create_client(&login).await;
    plesk.create_domain(&domain, &login).await;
    let address = format!("info@{domain}");

    let (_, commands) = plesk.call(Method::GET, "/cli/commands", None).await;
    assert!(commands.as_array().unwrap().contains(&json!("mail")));
    let args = [
        "--create",
        address.as_str(),
        "-passwd",
        "Mail-pass1",
        "-mailbox",
        "true",
        "-mbox_quota",
        "100M",
    ];
    let (status, created) = plesk.cli("mail", &args).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["code"], 0, "{created}");
    assert_eq!(created["stderr"], "");
    let (_, duplicate) = plesk.cli("mail", &args).await;
    assert_ne!(duplicate["code"], 0);
    assert!(
        duplicate["stderr"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );

    let (_, switched) = plesk
        .cli(
            "subscription",
            &[
                "--switch-subscription",
                &domain,
                "-service-plan",
                "Default Domain",
            ],
        )
        .await;
    assert_eq!(switched["code"], 0, "{switched}");
    let (_, synced) = plesk
        .cli("subscription", &["--sync-subscription", &domain])
        .await;
    assert_eq!(synced["code"], 0);
    let (_, bad_plan) = plesk
        .cli(
            "subscription",
            &["--switch-subscription", &domain, "-service-plan", "Gold"],
        )
        .await;
    assert_ne!(bad_plan["code"], 0);

    let (status, unknown) = plesk.cli("nosuchutil", &["--help"]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown,
        json!({"code": 404, "message": "Command is not found"})
    );

    let state = plesk.sim.state_json();
    assert_eq!(state["mailboxes"][0]["address"], address.as_str());
    assert_eq!(state["mailboxes"][0]["quotaMb"], 100);
    assert_eq!(common::ours(&state)[0]["package"], "Default Domain");
}

#[tokio::test]
async fn xml_api_installs_a_certificate_into_a_webspace() {
    let plesk = Plesk::start().await;
    let login = unique("x");
    let domain = format!("{login}.test");
    plesk.create_client(&login).await;
    plesk.create_domain(&domain, &login).await;
    let (cert, key) = common::certificate(&domain);
    let packet = format!(
        "<?xml version='1.0' encoding='UTF-8' ?><packet version='1.6.9.1'><certificate><install>\
         <name>mpanel-{domain}</name><webspace>{domain}</webspace><content><csr/><pvt>{key}</pvt>\
         <cert>{cert}</cert><ca/></content></install></certificate></packet>"
    );
    let answer = plesk.xml(&[("KEY", TOKEN)], &packet).await;
    assert!(
        answer.contains("<result><status>ok</status></result>"),
        "{answer}"
    );
    let missing = packet.replace(
        &format!("<webspace>{domain}</webspace>"),
        "<webspace>nope.test</webspace>",
    );
    let answer = plesk.xml(&[("KEY", TOKEN)], &missing).await;
    assert!(answer.contains("<errcode>1013</errcode>"), "{answer}");
    let state = plesk.sim.state_json();
    assert_eq!(state["certificates"][0]["domain"], domain.as_str());
    assert_eq!(state["certificates"][0]["source"], "xml-api");
}

#[tokio::test]
async fn xml_api_lists_service_plans() {
    let plesk = Plesk::start().await;
    let all = plesk
        .xml(
            &[("KEY", TOKEN)],
            "<packet><service-plan><get><filter/></get></service-plan></packet>",
        )
        .await;
    assert_eq!(all.matches("<status>ok</status>").count(), 2, "{all}");
    assert!(all.contains("<name>Unlimited</name>") && all.contains("<name>Default Domain</name>"));
    let one = plesk
        .xml(
            &[("HTTP_AUTH_LOGIN", "admin"), ("HTTP_AUTH_PASSWD", TOKEN)],
            "<packet><service-plan><get><filter><name>Unlimited</name></filter></get></service-plan></packet>",
        )
        .await;
    assert_eq!(one.matches("<result>").count(), 1, "{one}");
    let none = plesk
        .xml(&[("KEY", TOKEN)], "<packet><service-plan><get><filter><name>Gold</name></filter></get></service-plan></packet>")
        .await;
    assert!(none.contains("<errcode>1013</errcode>"), "{none}");
}

#[tokio::test]
async fn real_mariadb_database_with_200_answers_and_cleanup_on_delete() {
    let url = common::require_mariadb().await;
    let plesk = Plesk::with(SimConfig {
        mariadb_url: Some(url),
        ..common::config(SimKind::Plesk)
    })
    .await;
    let login = unique("m");
    let domain = format!("{login}.test");
    let (_, client) = plesk.create_client(&login).await;
    plesk.create_domain(&domain, &login).await;
    let database = format!("{login}_db");
    let db_user = format!("{login}_u");

    let (status, db) = plesk
        .call(
            Method::POST,
            "/databases",
            Some(json!({"name": database, "type": "mysql", "parent_domain": {"name": domain}, "server_id": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{db}");
    let (status, user) = plesk
        .call(
            Method::POST,
            "/dbusers",
            Some(json!({"login": db_user, "password": "Db-pass-1", "database_id": db["id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["database_id"], db["id"]);
    let (_, users) = plesk
        .call(Method::GET, &format!("/dbusers?dbId={}", db["id"]), None)
        .await;
    assert_eq!(users[0]["login"], db_user.as_str());
    let (_, databases) = plesk
        .call(Method::GET, &format!("/databases?domain={domain}"), None)
        .await;
    assert_eq!(databases[0]["name"], database.as_str());

    assert_eq!(
        common::login_and_use(&db_user, "Db-pass-1", &database)
            .await
            .unwrap(),
        42
    );

    let (status, _) = plesk
        .call(Method::DELETE, &format!("/clients/{}", client["id"]), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!common::database_exists(&database).await);
    assert!(!common::user_exists(&db_user).await);
}

#[tokio::test]
async fn filemng_writes_acme_files_that_are_served_by_host() {
    let plesk = Plesk::with(SimConfig {
        web_root_http: true,
        ..common::config(SimKind::Plesk)
    })
    .await;
    let login = unique("w");
    let domain = format!("{login}.test");
    plesk.create_client(&login).await;
    plesk.create_domain(&domain, &login).await;
    let path = format!("/var/www/vhosts/{domain}/httpdocs/.well-known/acme-challenge/t0k");
    let (_, written) = plesk
        .cli("filemng", &[&login, "write", &path, "t0k.key"])
        .await;
    assert_eq!(written["code"], 0, "{written}");
    let (_, denied) = plesk
        .cli("filemng", &["someoneelse", "write", &path, "x"])
        .await;
    assert_ne!(denied["code"], 0);

    let response = reqwest::Client::new()
        .get(format!(
            "http://{}/.well-known/acme-challenge/t0k",
            plesk.sim.addr()
        ))
        .header("Host", &domain)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "t0k.key");
}

#[tokio::test]
async fn dns_records_refuse_a_cname_beside_other_data() {
    let plesk = Plesk::start().await;
    let login = unique("q");
    let domain = format!("{login}.test");
    plesk.create_client(&login).await;
    plesk.create_domain(&domain, &login).await;
    let records = format!("/dns/records?domain={domain}");
    let (status, cname) = plesk
        .call(
            Method::POST,
            &records,
            Some(json!({"type": "CNAME", "host": "shop", "value": "elsewhere.example.", "opt": "", "ttl": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cname}");
    let (status, refused) = plesk
        .call(
            Method::POST,
            &records,
            Some(json!({"type": "A", "host": "shop", "value": "192.0.2.7", "opt": "", "ttl": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], 400);
    assert!(
        refused["message"].as_str().unwrap().contains("CNAME"),
        "{refused}"
    );

    // Turning an existing record into a CNAME beside other data is refused the same way.
    let (status, a) = plesk
        .call(
            Method::POST,
            &records,
            Some(json!({"type": "A", "host": "blog", "value": "192.0.2.8", "opt": "", "ttl": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let (status, txt) = plesk
        .call(
            Method::POST,
            &records,
            Some(json!({"type": "TXT", "host": "blog", "value": "x", "opt": "", "ttl": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{txt}");
    let id = a["id"].as_u64().unwrap();
    let (status, refused) = plesk
        .call(
            Method::PUT,
            &format!("/dns/records/{id}"),
            Some(json!({"type": "CNAME", "value": "elsewhere.example."})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (_, listed) = plesk.call(Method::GET, &records, None).await;
    let at = |host: &str| -> Vec<String> {
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["host"] == format!("{host}.{domain}."))
            .map(|r| r["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(at("shop"), ["CNAME"]);
    let mut blog = at("blog");
    blog.sort();
    assert_eq!(blog, ["A", "TXT"]);
}
