//! The `ssl` provisioning step on a server whose `ssl_provider` is 'acme': the real controller
//! (workers, fleet, SQLite), a real agent session whose ACME issuer talks to pebble (Debian's
//! `pebble` package), the cPanel driver and the simulator answering HTTP-01 from the web root.

mod backends;
mod fleet_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_agent::acme::{AcmeIssuer, AcmeSettings};
use mpanel_agent::handler::BuiltinHandler;
use mpanel_agent::panel::{PanelConfig, PanelKind as DriverKind, build_driver_with};
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_common::ids::ServerId;
use mpanel_common::status::{BillingCycle, ServiceStatus, TaskStatus};
use mpanel_controller::store::{
    self, DynStore, IssuedSslCertificate, NewCustomer, NewProduct, NewService, Price, ServerPatch,
    Task,
};
use mpanel_e2e::pebble::{Pebble, PebbleOptions};
use mpanel_panelsim::{SimConfig, SimHandle, SimKind};

struct Rig {
    _c: Controller,
    store: DynStore,
    server_id: ServerId,
    sim: SimHandle,
    pebble: Pebble,
    agent: RunningAgent,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A controller with one cPanel server set to ACME at `ip`, its agent issuing from pebble.
async fn rig(ip: &str) -> Rig {
    let c = Controller::start(&[
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "log"),
    ])
    .await;
    let (server_id, dir, state) = enrolled_agent(&c, "web1.example.net").await;
    let mut sim_config = SimConfig::new(SimKind::Cpanel, "sim-token");
    sim_config.tls = true;
    sim_config.web_root_http = true;
    let sim = mpanel_panelsim::start(
        sim_config,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let pebble = Pebble::start(PebbleOptions::new(sim.addr().port()))
        .await
        .expect("start pebble");
    let acme_state = tempfile::tempdir().unwrap();
    let mut settings = AcmeSettings::new(pebble.directory_url.clone(), acme_state.path());
    settings.ca_bundle = Some(pebble.ca_bundle());
    settings.dns_resolver = Some(pebble.dns_addr);
    let issuer = Arc::new(AcmeIssuer::new(settings).unwrap());
    let driver = build_driver_with(PanelConfig::new(
        DriverKind::Cpanel,
        &sim.base_url(),
        "root",
        "sim-token".into(),
        true,
    ))
    .unwrap();
    let mut options = agent_options(&c.grpc_url(), &state);
    options
        .capabilities
        .push(mpanel_agent::acme::CAPABILITY.to_owned());
    options.handler = Arc::new(BuiltinHandler::with_next(Arc::new(
        PanelCommandHandler::new(driver).with_acme(issuer),
    )));
    let cancel = tokio_util::sync::CancellationToken::new();
    let agent = RunningAgent {
        cancel: cancel.clone(),
        handle: tokio::spawn(mpanel_agent::session::run(options, cancel)),
    };
    c.wait_for_agent(server_id, Duration::from_secs(10), "online", |a| {
        a["status"] == "online"
    })
    .await;
    let store = store::connect(&c.db.url).await.unwrap();
    let server_id = ServerId::from(server_id);
    set_server(&store, server_id, ip).await;
    Rig {
        _c: c,
        store,
        server_id,
        sim,
        pebble,
        agent,
        _dirs: (dir, acme_state),
    }
}

async fn set_server(store: &DynStore, id: ServerId, ip: &str) {
    let patch = ServerPatch {
        ip_address: Some(ip.to_owned()),
        ssl_provider: Some("acme".to_owned()),
        ..ServerPatch::default()
    };
    store.update_server(id, &patch, "test").await.unwrap();
}

async fn order(store: &DynStore, domain: &str) -> Task {
    let customer = store
        .create_customer(
            &NewCustomer {
                email: format!("owner@{domain}"),
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
                databases: 0,
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
    let new = NewService {
        customer_id: customer.id,
        product_id: product.id,
        domain: domain.to_owned(),
        billing_cycle: BillingCycle::Monthly,
        max_retries: 3,
    };
    store
        .create_service_with_task(&new, "test")
        .await
        .unwrap()
        .1
}

async fn wait_for_task(
    store: &DynStore,
    task: &Task,
    what: &str,
    done: impl Fn(&Task) -> bool,
) -> Task {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = store.get_task(task.id).await.unwrap();
        if done(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached {what}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(t: &Task) -> bool {
    matches!(t.status, TaskStatus::Completed | TaskStatus::Failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_server_gets_a_pebble_certificate_recorded_with_its_renewal_time() {
    let r = rig("127.0.0.1").await;
    let task = order(&r.store, "shop.example").await;
    let done = wait_for_task(&r.store, &task, "completion", finished).await;
    assert_eq!(
        done.status,
        TaskStatus::Completed,
        "{:?}\n{}",
        done.error,
        r.pebble.log_tail()
    );
    let service = r.store.get_service(done.service_id).await.unwrap();
    assert_eq!(service.status, ServiceStatus::Active);

    let ssl = done
        .result
        .0
        .steps
        .iter()
        .find(|s| s.step == "ssl")
        .expect("an ssl step");
    assert_eq!(ssl.status, "success");
    assert_eq!(ssl.data["provider"], "acme");
    assert!(ssl.data["issuer"].as_str().unwrap().contains("Pebble"));

    let cert = r
        .store
        .get_certificate(service.id, "shop.example")
        .await
        .unwrap()
        .expect("a certificate row");
    assert_eq!(cert.status, "issued");
    assert_eq!(cert.provider, "acme");
    assert!(cert.issuer.as_deref().unwrap().contains("Pebble"));
    assert!(!cert.serial.as_deref().unwrap().is_empty());
    let (not_before, not_after) = (cert.not_before.unwrap(), cert.not_after.unwrap());
    assert_eq!(ssl.data["expires_at"], not_after);
    assert_eq!(
        cert.renew_after,
        Some(not_before + (not_after - not_before) / 3 * 2)
    );
    // Due for renewal only once two thirds of its life have passed.
    assert!(
        r.store
            .due_renewals(not_before, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = r
        .store
        .due_renewals(cert.renew_after.unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, cert.id);

    let state = r.sim.state_json();
    assert!(
        state["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["domain"] == "shop.example" && c["hasKey"] == true),
        "{state}"
    );
    r.agent.stop().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_not_pointing_at_the_server_waits_for_dns_and_then_completes() {
    // The server says it is 192.0.2.10; every name resolves to 127.0.0.1.
    let r = rig("192.0.2.10").await;
    let task = order(&r.store, "later.example").await;
    let waiting = wait_for_task(&r.store, &task, "waiting for DNS", |t| {
        t.wait_reason
            .as_deref()
            .is_some_and(|w| w.contains("waiting for DNS:"))
    })
    .await;
    assert_eq!(waiting.status, TaskStatus::Pending, "{waiting:?}");
    let cert = r
        .store
        .get_certificate(waiting.service_id, "later.example")
        .await
        .unwrap()
        .expect("a certificate row");
    assert_eq!(cert.status, "waiting_for_dns");
    assert!(cert.last_error.unwrap().contains("192.0.2.10"));
    // Waiting for as long as it takes burns no attempts toward failure…
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = r.store.get_task(task.id).await.unwrap();
    assert_ne!(still.status, TaskStatus::Failed, "{still:?}");

    // …and once the server's address matches the DNS, the next attempt issues.
    set_server(&r.store, r.server_id, "127.0.0.1").await;
    let done = wait_for_task(&r.store, &task, "completion", finished).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let cert = r
        .store
        .get_certificate(done.service_id, "later.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cert.status, "issued");
    assert!(cert.last_error.is_none());
    r.agent.stop().await;
    r.sim.shutdown().await;
}

/// The certificate rows on both backends: waiting, then issued over it, then due.
async fn certificate_rows_move_from_waiting_to_issued_and_come_due_at_renew_after(store: DynStore) {
    let task = order(&store, "rows.example").await;
    let service = task.service_id;
    assert!(
        store
            .get_certificate(service, "rows.example")
            .await
            .unwrap()
            .is_none()
    );
    let waiting = store
        .record_certificate_waiting_for_dns(service, "rows.example", "acme", "waiting for DNS: x")
        .await
        .unwrap();
    assert_eq!(waiting.status, "waiting_for_dns");
    assert_eq!(waiting.last_error.as_deref(), Some("waiting for DNS: x"));
    let issued = store
        .record_certificate_issued(&IssuedSslCertificate {
            service_id: service,
            domain: "rows.example".into(),
            provider: "acme".into(),
            issuer: "CN=Pebble Intermediate CA".into(),
            serial: "0abc".into(),
            not_before: 1_000,
            not_after: 91_000,
            renew_after: 61_000,
        })
        .await
        .unwrap();
    assert_eq!(issued.id, waiting.id, "one row per (service, domain)");
    assert_eq!(issued.status, "issued");
    assert_eq!(issued.last_error, None);
    assert_eq!(issued.serial.as_deref(), Some("0abc"));
    assert_eq!(
        store
            .get_certificate(service, "rows.example")
            .await
            .unwrap(),
        Some(issued.clone())
    );
    assert!(store.due_renewals(60_999, 10).await.unwrap().is_empty());
    assert_eq!(store.due_renewals(61_000, 10).await.unwrap(), vec![issued]);
}

on_both_backends!(certificate_rows_move_from_waiting_to_issued_and_come_due_at_renew_after);
