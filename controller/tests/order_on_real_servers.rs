//! One order provisioned end to end against real servers: the zone served by PowerDNS (asked
//! over DNS), the certificate issued by pebble and chaining to its root (fetched from pebble's
//! management port), the database a real MariaDB one that accepts the credentials the welcome
//! email gave, and that email received once by a real SMTP server (aiosmtpd) with every
//! credential in its text and HTML parts. Any of those servers missing fails the test saying
//! how to get it.

mod fleet_support;
mod mail_support;
mod real_servers;

use std::str::FromStr as _;
use std::time::Duration;

use fleet_support::KEY;
use mail_support::{SmtpServer, free_port, parse};
use mpanel_common::status::{ServiceStatus, TaskStatus};
use mpanel_controller::config::EncryptionKeys;
use mpanel_controller::crypto::Cipher;
use mpanel_e2e::powerdns::PowerDnsServer;
use real_servers::{acme_rig, assert_chains_to_pebble_root, finished, order, wait_for_task};
use sqlx::Connection as _;

const DOMAIN: &str = "shop.example";
const OWNER: &str = "owner@shop.example";
/// The server's address: pebble's DNS resolves every name to it, so HTTP-01 reaches the
/// simulator, and the zone on PowerDNS points at it.
const SERVER_IP: &str = "127.0.0.1";
const STEPS: [&str; 6] = [
    "account",
    "dns",
    "ssl",
    "email",
    "database",
    "welcome_email",
];

/// `MPANEL_TEST_MARIADB_URL`, default `mysql://root@127.0.0.1:3306` (as in the agent's tests).
#[allow(clippy::disallowed_methods)]
fn mariadb_url() -> String {
    std::env::var("MPANEL_TEST_MARIADB_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// The value after `label` in the indented section `heading` of the welcome text, e.g.
/// `field(text, "Database", "Password:")`.
fn field(text: &str, heading: &str, label: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim_end() != heading).skip(1);
    lines
        .by_ref()
        .take_while(|l| l.starts_with("  "))
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no `{label}` under `{heading}` in the welcome text:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_served_by_powerdns_secured_by_pebble_and_its_emailed_credentials_log_in() {
    let pdns = PowerDnsServer::start().await;
    let smtp = SmtpServer::start(free_port());
    let smtp_port = smtp.port.to_string();
    let url = mariadb_url();
    let sim_url = url.clone();
    let r = acme_rig(
        SERVER_IP,
        &[
            ("POWERDNS_API_URL", &pdns.api_url),
            ("POWERDNS_API_KEY", &pdns.api_key),
            ("EMAIL_PROVIDER", "smtp"),
            ("EMAIL_RETRY_BASE_MS", "50"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &smtp_port),
            ("SMTP_TLS", "none"),
            ("COMPANY_NAME", "Acme Hosting"),
            ("SUPPORT_EMAIL", "help@acme.example"),
        ],
        move |sim| sim.mariadb_url = Some(sim_url),
    )
    .await;
    r.c.sql("UPDATE servers SET dns_provider = 'powerdns'")
        .await;

    let task = order(&r.store, DOMAIN, 1).await;
    let done = wait_for_task(&r.store, &task, "completion", finished).await;
    assert_eq!(
        done.status,
        TaskStatus::Completed,
        "{:?}\n{:#?}\n{}",
        done.error,
        done.result.0.steps,
        r.pebble.log_tail()
    );
    let steps: Vec<(&str, &str)> = done
        .result
        .0
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        steps,
        STEPS.map(|s| (s, "success")),
        "{:#?}",
        done.result.0.steps
    );
    let service = r.store.get_service(done.service_id).await.unwrap();
    assert_eq!(service.status, ServiceStatus::Active);
    let step = |name: &str| {
        done.result
            .0
            .steps
            .iter()
            .find(|s| s.step == name)
            .unwrap()
            .data
            .clone()
    };
    assert_eq!(step("dns")["provider"], "powerdns");
    assert_eq!(step("ssl")["provider"], "acme");

    // (1) The zone, as PowerDNS answers it over DNS.
    for name in [DOMAIN.to_owned(), format!("www.{DOMAIN}")] {
        assert_eq!(pdns.lookup(&name, "A").await, [SERVER_IP], "A {name}");
    }
    assert_eq!(
        pdns.lookup(DOMAIN, "MX").await,
        [format!("10 mail.{DOMAIN}.")]
    );
    assert_eq!(pdns.lookup(DOMAIN, "TXT").await, ["v=spf1 a mx ~all"]);
    assert_eq!(
        pdns.lookup(DOMAIN, "NS").await,
        ["ns1.example.net.", "ns2.example.net."]
    );

    // (2) The certificate the panel holds was issued by pebble and chains to its root.
    let state = r.sim.state_json();
    let installed = state["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["domain"] == DOMAIN)
        .unwrap_or_else(|| panic!("no certificate installed for {DOMAIN}: {state}"))
        .clone();
    assert_eq!(installed["hasKey"], true, "{installed}");
    let leaf = installed["cert"].as_str().unwrap();
    assert_chains_to_pebble_root(&r.pebble, leaf, DOMAIN).await;
    assert_chains_to_pebble_root(&r.pebble, leaf, &format!("www.{DOMAIN}")).await;
    let cert = r
        .store
        .get_certificate(service.id, DOMAIN)
        .await
        .unwrap()
        .expect("a certificate row");
    assert_eq!(cert.status, "issued");
    assert_eq!(cert.provider, "acme");
    assert!(
        cert.issuer.as_deref().unwrap().contains("Pebble"),
        "{cert:?}"
    );

    // (3) One welcome email, its credentials in both parts; the database ones log in.
    smtp.wait_for(1, Duration::from_secs(20)).await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "one message, not {}", received.len());
    let mail = parse(&received[0]);
    assert!(mail.to.contains(OWNER), "{}", mail.to);
    assert_eq!(mail.subject, format!("Your hosting for {DOMAIN} is ready"));

    let cipher = Cipher::new(&EncryptionKeys {
        current: hex::decode(KEY).unwrap().try_into().unwrap(),
        previous: vec![],
    });
    let open = |sealed: &Option<String>| cipher.open_string(sealed.as_deref().unwrap()).unwrap();
    let panel_username = service.username.clone().unwrap();
    let panel_password = open(&service.password_encrypted);
    let mailbox_password = open(&service.mailbox_password_encrypted);
    let database_password = open(&service.database_password_encrypted);

    let text = &mail.text;
    assert_eq!(field(text, "Control panel", "Username:"), panel_username);
    assert_eq!(field(text, "Control panel", "Password:"), panel_password);
    assert_eq!(field(text, "Mailbox", "Password:"), mailbox_password);
    let db_name = field(text, "Database", "Name:");
    let db_user = field(text, "Database", "User:");
    let db_password = field(text, "Database", "Password:");
    assert_eq!(db_password, database_password);
    assert_eq!(
        step("database")["database_names"][0],
        db_name.as_str(),
        "the emailed database is the one created"
    );
    for (what, secret) in [
        ("panel username", &panel_username),
        ("panel password", &panel_password),
        ("mailbox password", &mailbox_password),
        ("database password", &database_password),
    ] {
        assert!(
            mail.html.contains(secret.as_str()),
            "the HTML part lacks the {what}:\n{}",
            mail.html
        );
    }

    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .expect("MPANEL_TEST_MARIADB_URL is a mysql:// URL")
        .username(&db_user)
        .password(&db_password)
        .database(&db_name);
    let login = async {
        let mut conn = sqlx::MySqlConnection::connect_with(&options).await?;
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS t (x int)")
            .execute(&mut conn)
            .await?;
        sqlx::query("INSERT INTO t (x) VALUES (7)")
            .execute(&mut conn)
            .await?;
        let seven: i64 = sqlx::query_scalar("SELECT CAST(MAX(x) AS SIGNED) FROM t")
            .fetch_one(&mut conn)
            .await?;
        sqlx::query("DROP TABLE t").execute(&mut conn).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>((one, seven))
    }
    .await;
    match login {
        Ok(got) => assert_eq!(got, (1, 7)),
        Err(e) => panic!("{db_user} could not use {db_name} with the emailed password: {e}"),
    }

    r.agent.stop().await;
    r.sim.shutdown().await;
}
