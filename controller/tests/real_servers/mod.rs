//! The pipeline against real servers, shared by the tests that need it: a controller (workers,
//! fleet, SQLite) with one cPanel server whose agent session issues certificates from pebble
//! (Debian's `pebble` package) through the simulator's HTTP-01 web root; placing an order and
//! waiting for its task; and checking a certificate chains to pebble's root.
//!
//! A test root using it declares `mod fleet_support;` beside `mod real_servers;`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpanel_agent::acme::{AcmeIssuer, AcmeSettings};
use mpanel_common::ids::ServerId;
use mpanel_common::status::{BillingCycle, TaskStatus};
use mpanel_controller::store::{
    self, DynStore, NewCustomer, NewProduct, NewService, Price, ServerPatch, Task,
};
use mpanel_e2e::pebble::{Pebble, PebbleOptions};
use mpanel_panelsim::{SimConfig, SimHandle};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::fleet_support::*;

pub struct Rig {
    pub c: Controller,
    pub store: DynStore,
    pub server_id: ServerId,
    pub sim: SimHandle,
    pub pebble: Pebble,
    pub agent: RunningAgent,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// A controller with one cPanel server set to ACME at `ip`, its agent issuing from pebble.
/// `overrides` add to (or replace) the controller's test settings; `configure_sim` adjusts
/// the simulator (e.g. its `mariadb_url`) before it starts.
pub async fn acme_rig(
    ip: &str,
    overrides: &[(&str, &str)],
    configure_sim: impl FnOnce(&mut SimConfig),
) -> Rig {
    let mut env = vec![
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "log"),
    ];
    env.extend_from_slice(overrides);
    let c = Controller::start(&env).await;
    let (server_id, dir, state) = enrolled_agent(&c, "web1.example.net").await;
    let sim = start_cpanel_sim(|config| {
        config.web_root_http = true;
        configure_sim(config);
    })
    .await;
    let pebble = Pebble::start(PebbleOptions::new(sim.addr().port()))
        .await
        .expect("start pebble");
    let acme_state = tempfile::tempdir().unwrap();
    let mut settings = AcmeSettings::new(pebble.directory_url.clone(), acme_state.path());
    settings.ca_bundle = Some(pebble.ca_bundle());
    settings.dns_resolver = Some(pebble.dns_addr);
    let issuer = Arc::new(AcmeIssuer::new(settings).unwrap());
    let mut parts = cpanel_parts(cpanel_driver(&sim));
    parts.acme = Some(issuer);
    let options = agent_options_with(&c.grpc_url(), &state, parts);
    let agent = run_agent_until_online(&c, server_id, options).await;
    let store = store::connect(&c.db.url).await.unwrap();
    let server_id = ServerId::from(server_id);
    set_server(&store, server_id, ip).await;
    Rig {
        c,
        store,
        server_id,
        sim,
        pebble,
        agent,
        _dirs: (dir, acme_state),
    }
}

/// Sets the server's address and makes it issue certificates with ACME.
pub async fn set_server(store: &DynStore, id: ServerId, ip: &str) {
    let patch = ServerPatch {
        ip_address: Some(ip.to_owned()),
        ssl_provider: Some(mpanel_common::status::SslProvider::Acme),
        ..ServerPatch::default()
    };
    store.update_server(id, &patch, "test").await.unwrap();
}

/// Orders `domain` for `owner@<domain>` on a product of its own with `databases` databases.
pub async fn order(store: &DynStore, domain: &str, databases: i32) -> Task {
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
                name: format!("Basic for {domain}"),
                server_group: "default".into(),
                package_cpanel: "default".into(),
                package_plesk: "Unlimited".into(),
                package_directadmin: "default".into(),
                disk_mb: 1024,
                email_quota_mb: 256,
                databases,
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
    let new = NewService {
        customer_id: customer.id,
        product_id: product.id,
        domain: domain.to_owned(),
        billing_cycle: BillingCycle::Monthly,
        max_retries: 3,
        next_due_at: None,
        billing_day: None,
    };
    store
        .create_service_with_task(&new, "test")
        .await
        .unwrap()
        .1
}

/// Polls the task until `done` holds, or panics after a minute naming `what`.
pub async fn wait_for_task(
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

pub fn finished(t: &Task) -> bool {
    matches!(t.status, TaskStatus::Completed | TaskStatus::Failed)
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

/// Verifies `leaf` for `name` as a TLS client would, trusting only pebble's root as its
/// management port gives it.
pub async fn assert_chains_to_pebble_root(pebble: &Pebble, leaf: &str, name: &str) {
    let root = pebble.root_pem().await.unwrap();
    let intermediate = pebble.intermediate_pem().await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&root)).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &der(leaf),
            &[der(&intermediate)],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| {
            panic!("the installed certificate for {name} does not chain to pebble's root: {e}")
        });
}
