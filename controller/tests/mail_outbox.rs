//! The email outbox against a real SMTP server (aiosmtpd): what is queued arrives, once, with
//! its credentials in both alternative parts, an invoice arrives with its PDF attached, and an
//! SMTP outage only delays mail.

mod backends;
mod mail_support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_support::{SmtpServer, free_port, parse};
use mpanel_controller::billing::pdf::{InvoiceDocument, InvoiceLine};
use mpanel_controller::config::Config;
use mpanel_controller::crypto::Cipher;
use mpanel_controller::jobs::{Dispatcher, JobDeps, Node, Runner};
use mpanel_controller::mail::OutboxSender;
use mpanel_controller::store::DynStore;
use mpanel_controller::store::lease_queue::EMAIL;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn config(smtp_port: u16) -> Config {
    let env: HashMap<String, String> = [
        ("ENCRYPTION_KEY", KEY),
        ("EMAIL_PROVIDER", "smtp"),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_TLS", "none"),
        ("EMAIL_RETRY_BASE_MS", "50"),
        ("COMPANY_NAME", "Acme Hosting"),
        ("COMPANY_DOMAIN", "acme.example"),
        ("SUPPORT_EMAIL", "help@acme.example"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("SMTP_PORT".to_owned(), smtp_port.to_string())])
    .collect();
    Config::from_sources(&env, &HashMap::new(), None).unwrap()
}

struct Credentials {
    domain: String,
    username: String,
    panel_password: String,
    mailbox: String,
    mailbox_password: String,
    database: String,
    database_password: String,
}

/// A welcome context sealed the way the provisioning worker seals it.
fn welcome_body(cipher: &Cipher, n: usize) -> (String, Credentials) {
    let creds = Credentials {
        domain: format!("site{n}.example"),
        username: format!("site{n}ex"),
        panel_password: format!("pAnel-{n}-Xq7.w"),
        mailbox: format!("admin@site{n}.example"),
        mailbox_password: format!("mAilbox-{n}-Zr8_k"),
        database: format!("site{n}ex_main"),
        database_password: format!("dAtabase-{n}-Vt9.p"),
    };
    let body = json!({
        "domain": creds.domain,
        "panel_url": "https://web1.acme.example:2083",
        "username": creds.username,
        "password_sealed": cipher.seal_str(&creds.panel_password).unwrap(),
        "nameservers": ["ns1.acme.example", "ns2.acme.example"],
        "mailbox": {"address": creds.mailbox, "password_sealed": cipher.seal_str(&creds.mailbox_password).unwrap()},
        "database": {"name": creds.database, "user": creds.database, "host": "localhost",
                     "password_sealed": cipher.seal_str(&creds.database_password).unwrap()},
        "company_name": "Acme Hosting",
        "support_email": "help@acme.example",
    });
    (cipher.seal_str(&body.to_string()).unwrap(), creds)
}

/// The outbox sender alone, on the job runner; answers the dispatcher that wakes it.
fn start_sender(store: &DynStore, config: &Config, shutdown: &CancellationToken) -> Dispatcher {
    let cipher = Arc::new(Cipher::new(config.require_encryption_keys().unwrap()));
    let deps = JobDeps {
        store: store.clone(),
        dispatcher: Dispatcher::new(),
        node: Arc::new(Node::ephemeral()),
    };
    Runner::new(
        OutboxSender::from_config(store.clone(), cipher, config).unwrap(),
        &deps,
    )
    .spawn(shutdown);
    deps.dispatcher
}

async fn wait_until_sent(store: &DynStore, keys: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for key in keys {
        loop {
            let email = store.get_email(key).await.unwrap().unwrap();
            if email.status == "sent" {
                break;
            }
            assert!(Instant::now() < deadline, "{key} never sent: {email:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn a_queued_welcome_email_arrives_once_with_every_credential_in_both_parts(store: DynStore) {
    let smtp = SmtpServer::start(free_port());
    let config = config(smtp.port);
    let cipher = Cipher::new(config.require_encryption_keys().unwrap());
    let (sealed, c) = welcome_body(&cipher, 7);
    let key = "welcome:service:7".to_owned();
    assert!(
        store
            .queue_email(
                &key,
                "owner@site7.example",
                "welcome",
                "Your hosting for site7.example is ready",
                &sealed
            )
            .await
            .unwrap()
    );
    // The same notice queued again is a no-op.
    assert!(
        !store
            .queue_email(&key, "owner@site7.example", "welcome", "again", &sealed)
            .await
            .unwrap()
    );
    let shutdown = CancellationToken::new();
    start_sender(&store, &config, &shutdown).wake_queue(&EMAIL);
    wait_until_sent(&store, std::slice::from_ref(&key), Duration::from_secs(20)).await;
    smtp.wait_for(1, Duration::from_secs(5)).await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "one message, not {}", received.len());
    let mail = parse(&received[0]);
    assert_eq!(mail.subject, "Your hosting for site7.example is ready");
    assert_eq!(mail.content_type, "multipart/alternative");
    assert!(
        mail.from.contains("no-reply@acme.example") && mail.from.contains("Acme Hosting"),
        "{}",
        mail.from
    );
    assert!(mail.to.contains("owner@site7.example"), "{}", mail.to);
    assert_eq!(
        mail.reply_to.as_deref().map(str::trim),
        Some("help@acme.example")
    );
    assert!(
        mail.message_id.contains("welcome.service.7@acme.example"),
        "{}",
        mail.message_id
    );
    // minijinja escapes `/` too (`&#x2f;`), which browsers read back as `/`.
    let html = mail.html.replace("&#x2f;", "/");
    for (name, part) in [("text", &mail.text), ("html", &html)] {
        for needle in [
            c.username.as_str(),
            &c.panel_password,
            &c.mailbox,
            &c.mailbox_password,
            &c.database,
            &c.database_password,
            "https://web1.acme.example:2083",
            "ns1.acme.example",
            "Getting started",
        ] {
            assert!(part.contains(needle), "{name} part lacks {needle}:\n{part}");
        }
    }
    assert!(mail.html.contains("<h2>Mailbox</h2>"));
    let row = store.get_email(&key).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 1));
    assert!(row.sent_at.is_some() && row.lease_expires_at.is_none());
    shutdown.cancel();
}

async fn a_queued_invoice_arrives_with_both_parts_and_its_pdf_attached(store: DynStore) {
    let smtp = SmtpServer::start(free_port());
    let config = config(smtp.port);
    let cipher = Cipher::new(config.require_encryption_keys().unwrap());
    let document = InvoiceDocument {
        number: "INV-2026-000123".into(),
        status: "unpaid".into(),
        issued_on: "2026-03-01".into(),
        due_on: "2026-03-15".into(),
        period_start: Some("2026-03-01".into()),
        period_end: Some("2026-03-31".into()),
        currency: "EUR".into(),
        company_name: "Acme Hosting".into(),
        company_address: Some("Hauptstraße 5\n10115 Berlin".into()),
        company_email: Some("billing@acme.example".into()),
        customer_name: "Zoë Łukasik-Müller".into(),
        customer_email: "zoe@site7.example".into(),
        lines: vec![InvoiceLine {
            description: "Business hosting, site7.example, March 2026".into(),
            amount: 1500,
        }],
        subtotal: 1500,
        tax: 300,
        tax_label: Some("VAT 20%".into()),
        total: 1800,
        amount_paid: 0,
        amount_due: 1800,
    };
    let body = json!({
        "customer_name": document.customer_name,
        "invoice_number": document.number,
        "currency": document.currency,
        "period_start": document.period_start,
        "period_end": document.period_end,
        "lines": document.lines,
        "tax": document.tax,
        "tax_label": document.tax_label,
        "total": document.total,
        "due_on": document.due_on,
        "pay_url": "https://pay.acme.example/i/123",
        "invoice_document": document,
    });
    let sealed = cipher.seal_str(&body.to_string()).unwrap();
    let key = "invoice:INV-2026-000123".to_owned();
    store
        .queue_email(&key, "zoe@site7.example", "invoice", "Invoice", &sealed)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    start_sender(&store, &config, &shutdown).wake_queue(&EMAIL);
    wait_until_sent(&store, std::slice::from_ref(&key), Duration::from_secs(20)).await;
    let received = smtp.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    let mail = parse(&received[0]);
    assert_eq!(mail.content_type, "multipart/mixed");
    assert_eq!(
        mail.subject,
        "Invoice INV-2026-000123 from Acme Hosting: 18.00 EUR due 2026-03-15"
    );
    let html = mail.html.replace("&#x2f;", "/");
    for (name, part) in [("text", &mail.text), ("html", &html)] {
        for needle in [
            "INV-2026-000123",
            "Zoë Łukasik-Müller",
            "Business hosting, site7.example, March 2026",
            "15.00 EUR",
            "18.00 EUR",
            "2026-03-15",
            "https://pay.acme.example/i/123",
            "attached as a PDF",
        ] {
            assert!(part.contains(needle), "{name} part lacks {needle}:\n{part}");
        }
    }
    assert_eq!(mail.attachments.len(), 1, "{:?}", mail.attachments);
    let pdf = &mail.attachments[0];
    assert_eq!(pdf.filename.as_deref(), Some("INV-2026-000123.pdf"));
    assert_eq!(pdf.content_type, "application/pdf");
    assert!(pdf.body.starts_with(b"%PDF-"));
    let parsed = lopdf::Document::load_mem(&pdf.body).expect("the attachment parses as a PDF");
    let pages: Vec<u32> = parsed.get_pages().keys().copied().collect();
    let text = parsed.extract_text(&pages).unwrap();
    for needle in ["INV-2026-000123", "Zoë Łukasik-Müller", "18.00 EUR"] {
        assert!(text.contains(needle), "the PDF lacks {needle}:\n{text}");
    }
    shutdown.cancel();
}

async fn an_smtp_outage_during_a_burst_delays_every_email_and_none_arrives_twice(store: DynStore) {
    let port = free_port();
    let config = config(port);
    let cipher = Cipher::new(config.require_encryption_keys().unwrap());
    let mut keys = Vec::new();
    for n in 0..20 {
        let (sealed, c) = welcome_body(&cipher, n);
        let key = format!("welcome:service:{n}");
        store
            .queue_email(
                &key,
                &format!("owner@{}", c.domain),
                "welcome",
                "subject",
                &sealed,
            )
            .await
            .unwrap();
        keys.push(key);
    }
    // Three senders, as three controller replicas would run, racing for the same rows.
    let shutdown = CancellationToken::new();
    for _ in 0..3 {
        start_sender(&store, &config, &shutdown).wake_queue(&EMAIL);
    }
    // Every message fails at least twice while the server is down, and none is lost.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all_failed_twice = true;
        for key in &keys {
            let e = store.get_email(key).await.unwrap().unwrap();
            assert_ne!(e.status, "sent", "{key} sent with the server down");
            assert_ne!(e.status, "failed", "{key} given up: {e:?}");
            all_failed_twice &= e.attempts >= 2 && e.last_error.is_some();
        }
        if all_failed_twice {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the senders did not retry during the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let smtp = SmtpServer::start(port);
    wait_until_sent(&store, &keys, Duration::from_secs(60)).await;
    smtp.wait_for(keys.len(), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = smtp.received();
    assert_eq!(received.len(), 20, "exactly one message per queued email");
    let subjects: BTreeSet<String> = received.iter().map(|raw| parse(raw).subject).collect();
    let expected: BTreeSet<String> = (0..20)
        .map(|n| format!("Your hosting for site{n}.example is ready"))
        .collect();
    assert_eq!(subjects, expected);
    shutdown.cancel();
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_queued_invoice_arrives_with_both_parts_and_its_pdf_attached() {
        crate::backends::with_postgres(
            super::a_queued_invoice_arrives_with_both_parts_and_its_pdf_attached,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_queued_welcome_email_arrives_once_with_every_credential_in_both_parts() {
        crate::backends::with_postgres(
            super::a_queued_welcome_email_arrives_once_with_every_credential_in_both_parts,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_smtp_outage_during_a_burst_delays_every_email_and_none_arrives_twice() {
        crate::backends::with_postgres(
            super::an_smtp_outage_during_a_burst_delays_every_email_and_none_arrives_twice,
        )
        .await;
    }
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_queued_invoice_arrives_with_both_parts_and_its_pdf_attached() {
        crate::backends::with_sqlite(
            super::a_queued_invoice_arrives_with_both_parts_and_its_pdf_attached,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_queued_welcome_email_arrives_once_with_every_credential_in_both_parts() {
        crate::backends::with_sqlite(
            super::a_queued_welcome_email_arrives_once_with_every_credential_in_both_parts,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_smtp_outage_during_a_burst_delays_every_email_and_none_arrives_twice() {
        crate::backends::with_sqlite(
            super::an_smtp_outage_during_a_burst_delays_every_email_and_none_arrives_twice,
        )
        .await;
    }
}
