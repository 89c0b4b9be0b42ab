//! The simulated DirectAdmin over real HTTPS.

mod common;

use common::{TOKEN, client, unique};
use mpanel_panelsim::{SimConfig, SimHandle, SimKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Da {
    sim: SimHandle,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The url-encoded pairs of a legacy answer.
    fn pairs(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not url-encoded ({e}): {}", self.body))
    }

    fn get(&self, key: &str) -> String {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }
}

impl Da {
    async fn start() -> Self {
        Self::with(common::config(SimKind::Directadmin)).await
    }

    async fn with(config: SimConfig) -> Self {
        Da {
            sim: common::start(config).await,
            http: client(),
        }
    }

    async fn post(&self, login: &str, command: &str, form: &[(&str, &str)]) -> Answer {
        let response = self
            .http
            .post(format!("{}/CMD_API_{command}", self.sim.base_url()))
            .basic_auth(login, Some(TOKEN))
            .form(form)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Answer {
            status,
            content_type,
            body: response.text().await.expect("body"),
        }
    }

    async fn create_user(&self, username: &str, json: bool) -> Answer {
        let domain = format!("{username}.test");
        let mut form = vec![
            ("action", "create"),
            ("add", "Submit"),
            ("username", username),
            ("email", "owner@example.com"),
            ("passwd", "Us3r-pass"),
            ("passwd2", "Us3r-pass"),
            ("domain", domain.as_str()),
            ("package", "default"),
            ("ip", "shared"),
            ("notify", "no"),
        ];
        if json {
            form.push(("json", "yes"));
        }
        self.post("admin", "ACCOUNT_USER", &form).await
    }
}

#[tokio::test]
async fn bad_credentials_get_the_html_login_page_and_json_alternates_with_401() {
    let da = Da::start().await;
    let url = format!("{}/CMD_API_SHOW_ALL_USERS", da.sim.base_url());
    for login in ["admin", "admin|nobody", "root"] {
        let password = if login == "admin" { "wrong" } else { TOKEN };
        let response = da
            .http
            .get(&url)
            .basic_auth(login, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(response.text().await.unwrap().contains("CMD_LOGIN"));
    }
    // json=yes, seed 0: HTML first, then 401 JSON, alternating.
    let json_url = format!("{url}?json=yes");
    let first = da
        .http
        .get(&json_url)
        .basic_auth("admin", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.text().await.unwrap().contains("<html"));
    let second = da
        .http
        .get(&json_url)
        .basic_auth("admin", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        second.json::<Value>().await.unwrap(),
        json!({"error": "Not logged in", "success": "no"})
    );
}

#[tokio::test]
async fn create_user_url_encoded_and_json_with_duplicate_errors() {
    let da = Da::start().await;
    let user = unique("u");
    let created = da.create_user(&user, false).await;
    assert_eq!(created.status, StatusCode::OK);
    assert!(created.content_type.starts_with("text/plain"));
    assert_eq!(created.get("error"), "0");
    assert_eq!(created.get("text"), format!("User {user} created"));

    let duplicate = da.create_user(&user, false).await;
    assert_eq!(duplicate.status, StatusCode::OK);
    assert_eq!(duplicate.get("error"), "1");
    assert_eq!(duplicate.get("text"), "Unable to create user");
    assert_eq!(
        duplicate.get("details"),
        "That username already exists on the system"
    );
    let duplicate_json = da.create_user(&user, true).await;
    assert_eq!(
        duplicate_json.json(),
        json!({"error": "Unable to create user", "result": "That username already exists on the system"})
    );

    let other = unique("v");
    let created_json = da.create_user(&other, true).await;
    assert_eq!(
        created_json.json()["success"],
        format!("User {other} created")
    );

    let listed = da.post("admin", "SHOW_ALL_USERS", &[]).await;
    // Both new users beside the resident one.
    assert_eq!(listed.body.matches("list[]=").count(), 3, "{}", listed.body);
    let listed_json = da.post("admin", "SHOW_ALL_USERS", &[("json", "yes")]).await;
    let mut users: Vec<String> = serde_json::from_value(listed_json.json()).unwrap();
    users.sort();
    let mut expected = vec![
        user.clone(),
        other.clone(),
        mpanel_panelsim::RESIDENT_USER.to_owned(),
    ];
    expected.sort();
    assert_eq!(users, expected);

    let config = da
        .post("admin", "SHOW_USER_CONFIG", &[("user", &user)])
        .await;
    assert_eq!(config.get("suspended"), "no");
    assert_eq!(config.get("domain"), format!("{user}.test"));
    assert_eq!(config.get("quota"), "unlimited");
    let exists = da
        .post("admin", "USER_EXISTS", &[("user", &user), ("json", "yes")])
        .await;
    assert_eq!(exists.json()["exists"], "1");
}

#[tokio::test]
async fn partial_success_leaves_exactly_one_user() {
    let da = Da::start().await;
    let response = da
        .http
        .post(format!("{}/__sim/faults", da.sim.base_url()))
        .json(&json!([{"kind": "partial_success", "pathContains": "CMD_API_ACCOUNT_USER"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let user = unique("p");
    let first = da.create_user(&user, false).await;
    assert_eq!(first.get("error"), "1");
    let retry = da.create_user(&user, false).await;
    assert_eq!(retry.get("error"), "1");
    assert_eq!(common::accounts_named(&da.sim.state_json(), &user), 1);
    assert_eq!(common::ours(&da.sim.state_json()).len(), 1);
}

#[tokio::test]
async fn fail_rate_failures_are_5xx_and_change_nothing() {
    let da = Da::with(SimConfig {
        fail_rate: 1.0,
        ..common::config(SimKind::Directadmin)
    })
    .await;
    let answer = da.create_user(&unique("f"), false).await;
    assert!(answer.status.is_server_error(), "{}", answer.status);
    assert!(common::ours(&da.sim.state_json()).is_empty());
}

#[tokio::test]
async fn select_users_buttons_modify_user_and_passwords() {
    let da = Da::start().await;
    let user = unique("s");
    da.create_user(&user, false).await;

    let no_button = da
        .post("admin", "SELECT_USERS", &[("select0", &user)])
        .await;
    assert_eq!(
        no_button.body,
        "error=1&text=Unkown%20Select%20Command&details=none"
    );

    let suspended = da
        .post(
            "admin",
            "SELECT_USERS",
            &[
                ("location", "CMD_SELECT_USERS"),
                ("dosuspend", "yes"),
                ("select0", &user),
            ],
        )
        .await;
    assert_eq!(suspended.get("error"), "0");
    assert_eq!(
        da.post("admin", "SHOW_USER_CONFIG", &[("user", &user)])
            .await
            .get("suspended"),
        "yes"
    );
    let legacy = da
        .post(
            "admin",
            "SELECT_USERS",
            &[("suspend", "Unsuspend"), ("select0", &user)],
        )
        .await;
    assert_eq!(legacy.get("error"), "0");
    assert_eq!(common::ours(&da.sim.state_json())[0]["suspended"], false);

    // Without action nothing happens (and DA does not say so).
    let silent = da
        .post(
            "admin",
            "MODIFY_USER",
            &[("user", &user), ("package", "starter")],
        )
        .await;
    assert_eq!(silent.get("error"), "0");
    assert_eq!(common::ours(&da.sim.state_json())[0]["package"], "default");
    let changed = da
        .post(
            "admin",
            "MODIFY_USER",
            &[
                ("action", "package"),
                ("user", &user),
                ("package", "starter"),
            ],
        )
        .await;
    assert_eq!(changed.get("error"), "0");
    assert_eq!(common::ours(&da.sim.state_json())[0]["package"], "starter");

    let mismatch = da
        .post(
            "admin",
            "USER_PASSWD",
            &[("username", &user), ("passwd", "a1"), ("passwd2", "b2")],
        )
        .await;
    assert_eq!(mismatch.get("error"), "1");
    let changed = da
        .post(
            "admin",
            "USER_PASSWD",
            &[
                ("username", &user),
                ("passwd", "N3w-pass"),
                ("passwd2", "N3w-pass"),
            ],
        )
        .await;
    assert_eq!(changed.get("error"), "0");
    let packages = da.post("admin", "PACKAGES_USER", &[]).await;
    assert!(packages.body.contains("list[]=starter"));

    let deleted = da
        .post(
            "admin",
            "SELECT_USERS",
            &[
                ("confirmed", "Confirm"),
                ("delete", "yes"),
                ("select0", &user),
            ],
        )
        .await;
    assert_eq!(deleted.get("text"), "User deleted");
    assert!(common::ours(&da.sim.state_json()).is_empty());
}

#[tokio::test]
async fn dns_pop_and_ssl_as_the_user() {
    let da = Da::start().await;
    let user = unique("h");
    let domain = format!("{user}.test");
    da.create_user(&user, false).await;
    let me = format!("admin|{user}");

    let added = da
        .post(
            &me,
            "DNS_CONTROL",
            &[
                ("domain", &domain),
                ("action", "add"),
                ("type", "TXT"),
                ("name", "_acme-challenge"),
                ("value", "tok"),
                ("ttl", "300"),
            ],
        )
        .await;
    assert_eq!(added.get("text"), "Record Added", "{}", added.body);
    let zone = da
        .post(&me, "DNS_CONTROL", &[("domain", &domain), ("json", "yes")])
        .await;
    let records = zone.json()["records"].as_array().unwrap().clone();
    assert!(
        records
            .iter()
            .any(|r| r["name"] == "_acme-challenge" && r["value"] == "tok")
    );
    let text_zone = da.post(&me, "DNS_CONTROL", &[("domain", &domain)]).await;
    assert!(
        text_zone.body.contains("_acme-challenge\t300\tIN\tTXT"),
        "{}",
        text_zone.body
    );
    let deleted = da
        .post(
            &me,
            "DNS_CONTROL",
            &[
                ("domain", &domain),
                ("action", "select"),
                ("delete", "yes"),
                ("txtrecs0", "name=_acme-challenge&value=tok"),
            ],
        )
        .await;
    assert_eq!(deleted.get("text"), "Records Deleted");
    assert!(
        !common::our_zones(&da.sim.state_json())[0]["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "TXT" && r["value"] == "tok")
    );

    let pop = [
        ("action", "create"),
        ("domain", domain.as_str()),
        ("user", "info"),
        ("passwd", "Mail-pass1"),
        ("passwd2", "Mail-pass1"),
        ("quota", "100"),
        ("json", "yes"),
    ];
    assert_eq!(
        da.post(&me, "POP", &pop).await.json()["success"],
        "Account created"
    );
    let again = da.post(&me, "POP", &pop).await.json();
    assert_eq!(again["error"], "Unable to create E-Mail account");
    assert_eq!(
        da.post("admin", "POP", &pop).await.json()["error"],
        "You do not own that domain"
    );
    let listed = da
        .post(&me, "POP", &[("action", "list"), ("domain", &domain)])
        .await;
    assert_eq!(listed.body, "list[]=info");

    let (cert, key) = common::certificate(&domain);
    let pasted = format!("{key}\n{cert}");
    let saved = da
        .post(
            &me,
            "SSL",
            &[
                ("domain", &domain),
                ("action", "save"),
                ("type", "paste"),
                ("certificate", &pasted),
                ("json", "yes"),
            ],
        )
        .await;
    assert_eq!(saved.json()["success"], "Certificate and Key Saved.");
    let state = da.sim.state_json();
    assert_eq!(state["mailboxes"][0]["address"], format!("info@{domain}"));
    assert_eq!(state["certificates"][0]["source"], "paste");
}

#[tokio::test]
async fn real_mariadb_database_gets_the_user_prefix_and_goes_with_the_user() {
    let url = common::require_mariadb().await;
    let da = Da::with(SimConfig {
        mariadb_url: Some(url),
        ..common::config(SimKind::Directadmin)
    })
    .await;
    let user = unique("m");
    da.create_user(&user, false).await;
    let me = format!("admin|{user}");

    let as_admin = da
        .post(
            "admin",
            "DATABASES",
            &[
                ("action", "create"),
                ("name", "wp"),
                ("user", "wp"),
                ("passwd", "x"),
                ("passwd2", "x"),
            ],
        )
        .await;
    assert_eq!(as_admin.get("error"), "1");
    let created = da
        .post(
            &me,
            "DATABASES",
            &[
                ("action", "create"),
                ("name", "wp"),
                ("user", "wpu"),
                ("passwd", "Db-pass-1"),
                ("passwd2", "Db-pass-1"),
            ],
        )
        .await;
    assert_eq!(created.get("error"), "0", "{}", created.body);
    let database = format!("{user}_wp");
    let db_user = format!("{user}_wpu");
    assert_eq!(
        da.post(&me, "DATABASES", &[]).await.body,
        format!("list[]={database}")
    );
    assert_eq!(
        common::login_and_use(&db_user, "Db-pass-1", &database)
            .await
            .unwrap(),
        42
    );

    let deleted = da
        .post(
            "admin",
            "SELECT_USERS",
            &[
                ("confirmed", "Confirm"),
                ("delete", "yes"),
                ("select0", &user),
            ],
        )
        .await;
    assert_eq!(deleted.get("error"), "0");
    assert!(!common::database_exists(&database).await);
    assert!(!common::user_exists(&db_user).await);
}

#[tokio::test]
async fn file_upload_feeds_the_acme_responder() {
    let da = Da::with(SimConfig {
        web_root_http: true,
        ..common::config(SimKind::Directadmin)
    })
    .await;
    let user = unique("w");
    let domain = format!("{user}.test");
    da.create_user(&user, false).await;
    let boundary = "panelsimBoundary42";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tk1\"\r\n\
         Content-Type: application/octet-stream\r\n\r\ntk1.key\r\n--{boundary}--\r\n"
    );
    let upload = |login: String| {
        da.http
            .post(format!(
                "{}/api/filemanager-actions/upload",
                da.sim.base_url()
            ))
            .query(&[
                (
                    "dir",
                    format!("/domains/{domain}/public_html/.well-known/acme-challenge").as_str(),
                ),
                ("name", "tk1"),
            ])
            .basic_auth(login, Some(TOKEN))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body.clone())
            .send()
    };
    let response = upload(format!("admin|{user}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let again = upload(format!("admin|{user}")).await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let bad = upload("admin|nobody".to_owned()).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    let served = reqwest::Client::new()
        .get(format!(
            "http://{}/.well-known/acme-challenge/tk1",
            da.sim.addr()
        ))
        .header("Host", &domain)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.text().await.unwrap(), "tk1.key");
}

#[tokio::test]
async fn account_user_without_ip_is_refused_with_no_available_ips() {
    let da = Da::start().await;
    let user = unique("i");
    let domain = format!("{user}.test");
    let mut form = vec![
        ("action", "create"),
        ("add", "Submit"),
        ("username", user.as_str()),
        ("email", "owner@example.com"),
        ("passwd", "Us3r-pass"),
        ("passwd2", "Us3r-pass"),
        ("domain", domain.as_str()),
        ("package", "default"),
        ("notify", "no"),
    ];
    let refused = da.post("admin", "ACCOUNT_USER", &form).await;
    assert_eq!(refused.get("error"), "1", "{}", refused.body);
    assert_eq!(refused.get("details"), "You have no available IPs");
    assert_eq!(common::accounts_named(&da.sim.state_json(), &user), 0);

    form.push(("ip", "not-an-ip"));
    let invalid = da.post("admin", "ACCOUNT_USER", &form).await;
    assert_eq!(invalid.get("error"), "1", "{}", invalid.body);
    assert_eq!(common::accounts_named(&da.sim.state_json(), &user), 0);

    form.pop();
    form.push(("ip", "192.0.2.10"));
    let created = da.post("admin", "ACCOUNT_USER", &form).await;
    assert_eq!(created.get("error"), "0", "{}", created.body);
    let state = da.sim.state_json();
    let account = common::accounts(&state)
        .into_iter()
        .find(|a| a["username"] == user.as_str())
        .unwrap();
    assert_eq!(account["ip"], "192.0.2.10");
}

#[tokio::test]
async fn dns_control_is_refused_unless_the_caller_owns_the_domain() {
    let da = Da::start().await;
    let owner = unique("o");
    let other = unique("p");
    let domain = format!("{owner}.test");
    da.create_user(&owner, false).await;
    da.create_user(&other, false).await;
    let read = [("domain", domain.as_str())];

    // The admin itself, and another user through login-as, are not the owner.
    for login in ["admin".to_owned(), format!("admin|{other}")] {
        let refused = da.post(&login, "DNS_CONTROL", &read).await;
        assert_eq!(refused.get("error"), "1", "{login}: {}", refused.body);
        assert!(
            format!("{} {}", refused.get("text"), refused.get("details"))
                .contains("You do not own that domain"),
            "{login}: {}",
            refused.body
        );
        let add = da
            .post(
                &login,
                "DNS_CONTROL",
                &[
                    ("domain", domain.as_str()),
                    ("action", "add"),
                    ("type", "A"),
                    ("name", "x"),
                    ("value", "192.0.2.99"),
                ],
            )
            .await;
        assert_eq!(add.get("error"), "1", "{login}: {}", add.body);
    }
    assert!(
        !da.sim.state_json()["zones"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|z| z["records"].as_array().unwrap().clone())
            .any(|r| r["value"] == "192.0.2.99"),
        "a refused add changes nothing"
    );

    // The owner, through login-as or with their own password.
    let as_owner = da
        .post(&format!("admin|{owner}"), "DNS_CONTROL", &read)
        .await;
    assert!(as_owner.body.contains("IN\tSOA"), "{}", as_owner.body);
    let response = da
        .http
        .post(format!("{}/CMD_API_DNS_CONTROL", da.sim.base_url()))
        .basic_auth(&owner, Some("Us3r-pass"))
        .form(&read)
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().contains("IN\tSOA"));
}

#[tokio::test]
async fn dns_control_refuses_a_cname_beside_other_data() {
    let da = Da::start().await;
    let user = unique("c");
    let domain = format!("{user}.test");
    da.create_user(&user, false).await;
    let me = format!("admin|{user}");
    // The default zone has `www` as an A record: a CNAME beside it is refused.
    let refused = da
        .post(
            &me,
            "DNS_CONTROL",
            &[
                ("domain", domain.as_str()),
                ("action", "add"),
                ("type", "CNAME"),
                ("name", "www"),
                ("value", "elsewhere.example."),
            ],
        )
        .await;
    assert_eq!(refused.get("error"), "1", "{}", refused.body);
    assert!(refused.get("details").contains("CNAME"), "{}", refused.body);
    let added = da
        .post(
            &me,
            "DNS_CONTROL",
            &[
                ("domain", domain.as_str()),
                ("action", "add"),
                ("type", "CNAME"),
                ("name", "shop"),
                ("value", "elsewhere.example."),
            ],
        )
        .await;
    assert_eq!(added.get("error"), "0", "{}", added.body);
    let beside = da
        .post(
            &me,
            "DNS_CONTROL",
            &[
                ("domain", domain.as_str()),
                ("action", "add"),
                ("type", "TXT"),
                ("name", "shop"),
                ("value", "x"),
            ],
        )
        .await;
    assert_eq!(beside.get("error"), "1", "{}", beside.body);
}
