//! No secret in any log line: a whole provisioning run (controller, agent session, simulated
//! cPanel, real SMTP server) with every mpanel crate logging at TRACE into a buffer, and the
//! panel, mailbox and database passwords searched for in what was captured. The welcome email
//! that did carry them is checked too, so the test cannot pass by sending nothing.

mod fleet_support;
mod mail_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_support::*;
use mail_support::{SmtpServer, free_port, parse};
use mpanel_common::status::{BillingCycle, TaskStatus};
use mpanel_controller::config::EncryptionKeys;
use mpanel_controller::crypto::Cipher;
use mpanel_controller::store::{self, NewCustomer, NewProduct, NewService, Price};

/// Every formatted log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    // Our crates at TRACE, everything else (sqlx, hyper, tonic, rustls, lettre…) at DEBUG.
    let filter = tracing_subscriber::EnvFilter::new(
        "debug,mpanel_controller=trace,mpanel_agent=trace,mpanel_panelsim=trace,mpanel_common=trace,mpanel_proto=trace",
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary installs the only subscriber");
    captured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provisioning_run_with_its_welcome_email_logs_no_password() {
    let logs = capture_logs();
    let smtp = SmtpServer::start(free_port());
    let port = smtp.port.to_string();
    let c = Controller::start(&[
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "smtp"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_TLS", "none"),
        ("COMPANY_NAME", "Acme Hosting"),
        ("SUPPORT_EMAIL", "help@acme.example"),
        ("RUST_LOG", "trace"),
    ])
    .await;
    let (server_id, _dir, state) = enrolled_agent(&c, "web1.example.net").await;
    // The simulated panel issues certificates itself (AutoSSL); this test needs no ACME server.
    let (status, body) = c
        .request(
            reqwest::Method::PATCH,
            &format!("/api/servers/{server_id}"),
            Some(serde_json::json!({ "sslProvider": "autossl" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sim = start_cpanel_sim(|_| {}).await;
    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;

    let store = store::connect(&c.db.url).await.unwrap();
    let customer = store
        .create_customer(
            &NewCustomer {
                email: "owner@shop.example".into(),
                name: "Owner".into(),
            },
            "test",
        )
        .await
        .unwrap();
    let product = store
        .create_product(
            &NewProduct {
                name: "Basic".into(),
                server_group: "default".into(),
                package_cpanel: "default".into(),
                package_plesk: "Unlimited".into(),
                package_directadmin: "default".into(),
                disk_mb: 1024,
                email_quota_mb: 256,
                databases: 1,
                tax_rate_bp: 0,
                backup_schedule: mpanel_common::status::BackupSchedule::None,
                prices: vec![Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: 500,
                    currency: "USD".into(),
                }],
            },
            "test",
        )
        .await
        .unwrap();
    let (_, task) = store
        .create_service_with_task(
            &NewService {
                customer_id: customer.id,
                product_id: product.id,
                domain: "shop.example".into(),
                billing_cycle: BillingCycle::Monthly,
                max_retries: 3,
                next_due_at: None,
                billing_day: None,
            },
            "test",
        )
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let t = store.get_task(task.id).await.unwrap();
        if matches!(t.status, TaskStatus::Completed | TaskStatus::Failed) {
            break t;
        }
        assert!(Instant::now() < deadline, "task never finished: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let welcome = &done.result.0.steps.last().unwrap();
    assert_eq!(welcome.step, "welcome_email");
    assert_eq!(welcome.data["queued"], true);
    assert_eq!(welcome.data["to"], "owner@shop.example");
    // The step ends once the email is committed to the outbox; the sender delivers it (the
    // SMTP server is up) on its own.
    let key = welcome.data["outbox_key"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.email_status(&key).await.unwrap().as_deref() != Some("sent") {
        assert!(
            Instant::now() < deadline,
            "the welcome email was never sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The secrets, as the controller stored them.
    let service = store.get_service(done.service_id).await.unwrap();
    let cipher = Cipher::new(&EncryptionKeys {
        current: hex::decode(KEY).unwrap().try_into().unwrap(),
        previous: vec![],
    });
    let open = |sealed: &Option<String>| cipher.open_string(sealed.as_deref().unwrap()).unwrap();
    let secrets = [
        ("panel password", open(&service.password_encrypted)),
        (
            "mailbox password",
            open(&service.mailbox_password_encrypted),
        ),
        (
            "database password",
            open(&service.database_password_encrypted),
        ),
    ];

    // The welcome email arrived once and carries them all, in both parts.
    let received = smtp.wait_for(1, Duration::from_secs(20)).await;
    let mail = parse(&received[0]);
    assert_eq!(mail.subject, "Your hosting for shop.example is ready");
    for (what, secret) in &secrets {
        assert!(
            mail.text.contains(secret.as_str()),
            "text part lacks the {what}"
        );
        assert!(
            mail.html.contains(secret.as_str()),
            "html part lacks the {what}"
        );
    }
    let username = service.username.clone().unwrap();
    assert!(mail.text.contains(&username) && mail.html.contains(&username));
    assert!(mail.text.contains("admin@shop.example"));
    assert!(mail.text.contains("Database"));

    agent.stop().await;
    sim.shutdown().await;
    let mut c = c;
    c.stop().await;
    store.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.received().len(), 1, "the welcome email arrived twice");

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let lines = text.lines().count();
    assert!(
        lines > 100,
        "the capture saw only {lines} lines; is it wired up?"
    );
    assert!(
        text.contains("email sent"),
        "the sender's own log line is missing from the capture"
    );
    for (what, secret) in &secrets {
        let leaks: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(
            leaks.is_empty(),
            "the {what} appears in {} captured log line(s), e.g.: {}",
            leaks.len(),
            leaks[0]
        );
    }
}
