//! Contract tests of the agent's panel commands: the JSON payloads the controller sends, run
//! through the same handler stack `mpanel-agent run` builds (`BuiltinHandler` → panel
//! commands → real driver) against an in-process simulator of each panel. Every story runs for
//! cPanel, Plesk and DirectAdmin.

#[path = "panel_support.rs"]
mod support;

use std::str::FromStr as _;
use std::sync::Arc;

use mpanel_agent::handler::{BuiltinHandler, CommandHandler, CommandOutcome, ErrorClass};
use mpanel_agent::panel::PanelKind;
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_panelsim::{SimConfig, SimHandle};
use serde_json::{Value, json};
use support::{
    TOKEN, account, count_accounts, default_package, driver_for, other_package, records_named, sim,
    sim_kind, state_list,
};

const KINDS: [PanelKind; 3] = [PanelKind::Cpanel, PanelKind::Plesk, PanelKind::DirectAdmin];

const ACCOUNT_PASSWORD: &str = "Acct-Pass-9x7!";
const MAIL_PASSWORD: &str = "Mail-Pass-123!";
const DB_PASSWORD: &str = "Db-Pass-789!";
const NEW_PASSWORD: &str = "N3w-Secret-Pass!";
const SITE_IP: &str = "203.0.113.5";
const NAMESERVERS: [&str; 2] = ["ns1.mpanel-host.example", "ns2.mpanel-host.example"];

/// The handler stack `mpanel-agent run` builds for a configured panel.
fn handler(kind: PanelKind, sim: &SimHandle) -> Arc<dyn CommandHandler> {
    let commands = PanelCommandHandler::new(driver_for(kind, sim));
    Arc::new(BuiltinHandler::with_next(Arc::new(commands)))
}

async fn ok(h: &dyn CommandHandler, command: &str, payload: &Value) -> Value {
    match h.handle(command, payload.clone(), "idem-1").await {
        CommandOutcome::Ok(data) => {
            assert_no_password(&data.to_string());
            data
        }
        CommandOutcome::Failed { class, message } => {
            panic!("{command} failed ({class:?}): {message}")
        }
    }
}

async fn failed(h: &dyn CommandHandler, command: &str, payload: Value) -> (ErrorClass, String) {
    match h.handle(command, payload, "idem-1").await {
        CommandOutcome::Failed { class, message } => {
            assert_no_password(&message);
            (class, message)
        }
        CommandOutcome::Ok(data) => panic!("{command} succeeded unexpectedly: {data}"),
    }
}

fn assert_no_password(text: &str) {
    for secret in [ACCOUNT_PASSWORD, MAIL_PASSWORD, DB_PASSWORD, NEW_PASSWORD] {
        assert!(!text.contains(secret), "a password leaked: {text}");
    }
}

/// One service's payloads.
struct Service {
    kind: PanelKind,
    service_id: i64,
    username: String,
    domain: String,
}

impl Service {
    fn new(kind: PanelKind, service_id: i64, username: &str) -> Self {
        Self {
            kind,
            service_id,
            username: username.to_owned(),
            domain: format!("{username}.example"),
        }
    }

    fn create_account(&self) -> Value {
        json!({
            "serviceId": self.service_id,
            "username": self.username,
            "domain": self.domain,
            "password": ACCOUNT_PASSWORD,
            "package": default_package(self.kind),
            "contactEmail": format!("owner{}@customer.example", self.service_id),
            "quotaMb": 1024,
            "ip": "192.0.2.10",
        })
    }

    fn ensure_dns(&self) -> Value {
        json!({
            "username": self.username,
            "domain": self.domain,
            "ip": SITE_IP,
            "nameservers": NAMESERVERS,
        })
    }

    fn ssl(&self) -> Value {
        json!({ "username": self.username, "domain": self.domain, "provider": "autossl" })
    }

    fn create_mailbox(&self) -> Value {
        json!({
            "username": self.username,
            "domain": self.domain,
            "localPart": "admin",
            "password": MAIL_PASSWORD,
            "quotaMb": 250,
        })
    }

    fn create_database(&self) -> Value {
        json!({
            "username": self.username,
            "kind": self.kind.as_str(),
            "domain": self.domain,
            "nameSuffix": "main",
            "password": DB_PASSWORD,
        })
    }

    fn user(&self) -> Value {
        json!({ "username": self.username })
    }

    /// The database (and user) name the agent should hand out.
    fn database_name(&self) -> String {
        format!("{}_main", self.username)
    }
}

fn zone(sim: &SimHandle, domain: &str) -> Value {
    sim.state_json()["zones"]
        .as_array()
        .and_then(|zones| zones.iter().find(|z| z["domain"] == domain).cloned())
        .unwrap_or_else(|| panic!("no zone for {domain}"))
}

fn assert_default_records(sim: &SimHandle, domain: &str) {
    for name in [
        domain.to_owned(),
        format!("www.{domain}"),
        format!("mail.{domain}"),
    ] {
        let a = records_named(sim, domain, &name, "A");
        assert_eq!(a.len(), 1, "A {name}: {a:?}");
        assert_eq!(a[0]["value"], SITE_IP, "A {name}");
    }
    let mail_host = format!("mail.{domain}");
    let mx = records_named(sim, domain, domain, "MX");
    let ours: Vec<&Value> = mx.iter().filter(|r| r["value"] == mail_host).collect();
    assert_eq!(ours.len(), 1, "MX: {mx:?}");
    assert_eq!(ours[0]["priority"], 10, "MX: {mx:?}");
    let spf: Vec<Value> = records_named(sim, domain, domain, "TXT")
        .into_iter()
        .filter(|r| r["value"].as_str().unwrap_or("").contains("v=spf1"))
        .collect();
    assert_eq!(spf.len(), 1, "exactly one SPF record: {spf:?}");
    assert_eq!(
        spf[0]["value"].as_str().unwrap().trim_matches('"'),
        "v=spf1 a mx ~all"
    );
    let ns = records_named(sim, domain, domain, "NS");
    for server in NAMESERVERS {
        assert_eq!(
            ns.iter().filter(|r| r["value"] == server).count(),
            1,
            "NS {server}: {ns:?}"
        );
    }
}

async fn provisioning_runs_and_every_retry_converges(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = handler(kind, &sim);
    let h = h.as_ref();
    let svc = Service::new(kind, 41, "alice41");

    // account
    let first = ok(h, "create_account", &svc.create_account()).await;
    assert_eq!(
        first,
        json!({
            "username": svc.username,
            "domain": svc.domain,
            "package": default_package(kind),
            "created": true,
        })
    );
    let again = ok(h, "create_account", &svc.create_account()).await;
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["username"], svc.username);
    assert_eq!(count_accounts(&sim, &svc.username), 1);
    assert_eq!(
        account(&sim, &svc.username).unwrap()["password"],
        ACCOUNT_PASSWORD
    );

    // DNS
    let dns = ok(h, "ensure_dns", &svc.ensure_dns()).await;
    assert_eq!(dns["zoneId"], svc.domain);
    let mail_host = format!("mail.{}", svc.domain);
    assert_eq!(
        dns["records"],
        json!([
            {"type": "A", "name": "@", "value": SITE_IP},
            {"type": "A", "name": "www", "value": SITE_IP},
            {"type": "A", "name": "mail", "value": SITE_IP},
            {"type": "MX", "name": "@", "value": mail_host},
            {"type": "TXT", "name": "@", "value": "v=spf1 a mx ~all"},
            {"type": "NS", "name": "@", "value": NAMESERVERS[0]},
            {"type": "NS", "name": "@", "value": NAMESERVERS[1]},
        ])
    );
    assert_default_records(&sim, &svc.domain);
    let before = zone(&sim, &svc.domain);
    let dns_again = ok(h, "ensure_dns", &svc.ensure_dns()).await;
    assert_eq!(dns_again, dns);
    assert_eq!(
        zone(&sim, &svc.domain),
        before,
        "a second ensure_dns changes nothing"
    );

    // SSL
    for _ in 0..2 {
        let ssl = ok(h, "ssl", &svc.ssl()).await;
        assert_eq!(ssl, json!({"provider": "autossl", "status": "requested"}));
    }
    let state = sim.state_json();
    let started = state["autosslChecks"]
        .as_array()
        .is_some_and(|c| c.iter().any(|u| u == svc.username.as_str()))
        || state["certificates"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["domain"] == svc.domain));
    assert!(started, "{state}");

    // mailbox
    for _ in 0..2 {
        let mailbox = ok(h, "create_mailbox", &svc.create_mailbox()).await;
        assert_eq!(
            mailbox,
            json!({"defaultEmail": format!("admin@{}", svc.domain), "quotaMb": 250})
        );
    }
    let boxes = state_list(&sim, "mailboxes");
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    assert_eq!(boxes[0]["address"], format!("admin@{}", svc.domain));
    assert_eq!(boxes[0]["password"], MAIL_PASSWORD);

    // database
    let expected = json!({
        "databasesCreated": [svc.database_name()],
        "databaseUser": svc.database_name(),
        "host": "localhost",
    });
    for _ in 0..2 {
        assert_eq!(
            ok(h, "create_database", &svc.create_database()).await,
            expected
        );
    }
    let databases = state_list(&sim, "databases");
    assert_eq!(databases.len(), 1, "{databases:?}");
    assert_eq!(databases[0]["name"], svc.database_name());
    let users = state_list(&sim, "dbUsers");
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["name"], svc.database_name());
    assert_eq!(users[0]["password"], DB_PASSWORD);

    // Still exactly one of everything.
    assert_eq!(count_accounts(&sim, &svc.username), 1);
    assert_eq!(state_list(&sim, "mailboxes").len(), 1);
}

async fn lifecycle_commands_converge(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = handler(kind, &sim);
    let h = h.as_ref();
    let svc = Service::new(kind, 42, "bob42");
    ok(h, "create_account", &svc.create_account()).await;

    let suspend = json!({"username": svc.username, "reason": "unpaid invoice"});
    for _ in 0..2 {
        let answer = ok(h, "suspend_account", &suspend).await;
        assert_eq!(answer, json!({"username": svc.username, "suspended": true}));
    }
    assert_eq!(account(&sim, &svc.username).unwrap()["suspended"], true);
    for _ in 0..2 {
        let answer = ok(h, "unsuspend_account", &svc.user()).await;
        assert_eq!(
            answer,
            json!({"username": svc.username, "suspended": false})
        );
    }
    assert_eq!(account(&sim, &svc.username).unwrap()["suspended"], false);

    let change = json!({"username": svc.username, "package": other_package(kind)});
    for _ in 0..2 {
        let answer = ok(h, "change_package", &change).await;
        assert_eq!(
            answer,
            json!({"username": svc.username, "package": other_package(kind)})
        );
    }
    assert_eq!(
        account(&sim, &svc.username).unwrap()["package"],
        other_package(kind)
    );

    let password = json!({"username": svc.username, "password": NEW_PASSWORD});
    for _ in 0..2 {
        let answer = ok(h, "change_password", &password).await;
        assert_eq!(
            answer,
            json!({"username": svc.username, "passwordChanged": true})
        );
    }
    assert_eq!(
        account(&sim, &svc.username).unwrap()["password"],
        NEW_PASSWORD
    );

    for _ in 0..2 {
        let answer = ok(h, "terminate_account", &svc.user()).await;
        assert_eq!(
            answer,
            json!({"username": svc.username, "terminated": true})
        );
    }
    assert_eq!(count_accounts(&sim, &svc.username), 0);

    let (class, _) = failed(
        h,
        "suspend_account",
        json!({"username": "ghost99", "reason": "x"}),
    )
    .await;
    assert_eq!(class, ErrorClass::Permanent);
}

async fn payloads_missing_a_field_fail_permanently_naming_it(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = handler(kind, &sim);
    let h = h.as_ref();
    let svc = Service::new(kind, 43, "carol43");
    let without = |mut payload: Value, field: &str| {
        payload.as_object_mut().unwrap().remove(field);
        payload
    };
    let cases = [
        (
            "create_account",
            without(svc.create_account(), "domain"),
            "domain",
        ),
        (
            "create_account",
            without(svc.create_account(), "password"),
            "password",
        ),
        (
            "create_account",
            without(svc.create_account(), "serviceId"),
            "serviceId",
        ),
        ("ensure_dns", without(svc.ensure_dns(), "ip"), "ip"),
        (
            "ensure_dns",
            without(svc.ensure_dns(), "nameservers"),
            "nameservers",
        ),
        ("ssl", without(svc.ssl(), "provider"), "provider"),
        (
            "create_mailbox",
            without(svc.create_mailbox(), "localPart"),
            "localPart",
        ),
        (
            "create_database",
            without(svc.create_database(), "kind"),
            "kind",
        ),
        (
            "create_database",
            without(svc.create_database(), "password"),
            "password",
        ),
        ("suspend_account", json!({"reason": "x"}), "username"),
        ("change_package", svc.user(), "package"),
        ("change_password", svc.user(), "password"),
    ];
    for (command, payload, field) in cases {
        let (class, message) = failed(h, command, payload).await;
        assert_eq!(class, ErrorClass::Permanent, "{command}: {message}");
        assert!(
            message.contains(&format!("payload.{field}")),
            "{command} without {field}: {message}"
        );
    }
    let (class, message) = failed(h, "create_account", json!("not an object")).await;
    assert_eq!(class, ErrorClass::Permanent, "{message}");

    // Nothing reached the panel.
    assert_eq!(count_accounts(&sim, &svc.username), 0);
}

async fn unsupported_values_fail_permanently_naming_the_field(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = handler(kind, &sim);
    let h = h.as_ref();
    let svc = Service::new(kind, 44, "dave44");
    ok(h, "create_account", &svc.create_account()).await;

    let mut acme = svc.ssl();
    acme["provider"] = json!("letsencrypt");
    let (class, message) = failed(h, "ssl", acme).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(message.contains("payload.provider"), "{message}");

    let other_kind = KINDS.into_iter().find(|k| *k != kind).unwrap();
    let mut db = svc.create_database();
    db["kind"] = json!(other_kind.as_str());
    let (class, message) = failed(h, "create_database", db).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(message.contains("payload.kind"), "{message}");
    assert!(state_list(&sim, "databases").is_empty());

    let mut dns = svc.ensure_dns();
    dns["ip"] = json!("not-an-ip");
    let (class, message) = failed(h, "ensure_dns", dns).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(message.contains("payload.ip"), "{message}");

    let (class, message) = failed(h, "no_such_command", json!({})).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(message.contains("no_such_command"), "{message}");
}

async fn account_of_another_service_is_a_conflict(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = handler(kind, &sim);
    let h = h.as_ref();
    let first = Service::new(kind, 45, "erin45");
    ok(h, "create_account", &first.create_account()).await;

    // Another service that (by a controller bug or a race) wants the same username.
    let mut second = Service::new(kind, 46, "erin45");
    second.domain = "erin-other.example".to_owned();
    let (class, message) = failed(h, "create_account", second.create_account()).await;
    assert_eq!(class, ErrorClass::Conflict, "{message}");
    assert_eq!(count_accounts(&sim, "erin45"), 1);

    // An account the hosting company made by hand is not adopted either.
    support::seed_foreign_account(
        &sim,
        "frank47",
        "frank47.example",
        "frank@elsewhere.example",
    )
    .await;
    let third = Service::new(kind, 47, "frank47");
    let (class, message) = failed(h, "create_account", third.create_account()).await;
    assert_eq!(class, ErrorClass::Conflict, "{message}");
}

/// `MPANEL_TEST_MARIADB_URL`, default `mysql://root@127.0.0.1:3306`.
// The ban keeps the agent's own configuration in config.rs; this is the test harness's setting.
#[allow(clippy::disallowed_methods)]
fn mariadb_url() -> String {
    std::env::var("MPANEL_TEST_MARIADB_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// The URL without its password, for failure messages.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A username no other test run shares, since every run uses the same MariaDB server. Eight
/// characters, so it is also unique as cPanel's 8-character database prefix.
fn unique_username(kind: PanelKind) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let letter = kind.as_str().as_bytes()[0] as char;
    format!(
        "m{letter}{:06}",
        (nanos ^ std::process::id().rotate_left(16)) % 1_000_000
    )
}

async fn database_credentials_log_in_to_mariadb(kind: PanelKind) {
    support::install_crypto();
    let url = mariadb_url();
    let mut config = SimConfig::new(sim_kind(kind), TOKEN);
    config.mariadb_url = Some(url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = match mpanel_panelsim::start(config, listener).await {
        Ok(sim) => sim,
        Err(e) => panic!(
            "MariaDB is not reachable at {} ({e:#}): start MariaDB or point \
             MPANEL_TEST_MARIADB_URL at one",
            shown_url(&url)
        ),
    };
    let h = handler(kind, &sim);
    let h = h.as_ref();
    let svc = Service::new(kind, 48, &unique_username(kind));
    ok(h, "create_account", &svc.create_account()).await;
    let answer = ok(h, "create_database", &svc.create_database()).await;
    let database = answer["databasesCreated"][0].as_str().unwrap().to_owned();
    let user = answer["databaseUser"].as_str().unwrap().to_owned();

    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .expect("MPANEL_TEST_MARIADB_URL is a mysql:// URL")
        .username(&user)
        .password(DB_PASSWORD)
        .database(&database);
    let login = async {
        use sqlx::Connection as _;
        let mut conn = sqlx::MySqlConnection::connect_with(&options).await?;
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(one)
    }
    .await;

    // Drops the database and its user again, whatever the login did.
    ok(h, "terminate_account", &svc.user()).await;
    sim.shutdown().await;
    match login {
        Ok(one) => assert_eq!(one, 1),
        Err(e) => panic!("{user} could not log in to {database} with the password sent: {e}"),
    }
}

macro_rules! for_each_panel {
    ($($story:ident),+ $(,)?) => {
        mod cpanel {
            $(#[tokio::test] async fn $story() { super::$story(super::PanelKind::Cpanel).await; })+
        }
        mod plesk {
            $(#[tokio::test] async fn $story() { super::$story(super::PanelKind::Plesk).await; })+
        }
        mod directadmin {
            $(#[tokio::test] async fn $story() { super::$story(super::PanelKind::DirectAdmin).await; })+
        }
    };
}

for_each_panel!(
    provisioning_runs_and_every_retry_converges,
    lifecycle_commands_converge,
    payloads_missing_a_field_fail_permanently_naming_it,
    unsupported_values_fail_permanently_naming_the_field,
    account_of_another_service_is_a_conflict,
    database_credentials_log_in_to_mariadb,
);
