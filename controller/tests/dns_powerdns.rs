//! Zones on PowerDNS: the controller's client against a real `pdns_server` (gsqlite3, started
//! per test by `mpanel_e2e::powerdns`), checked over DNS the way resolvers see them; and the
//! provisioning pipeline's DNS step on a server whose `dns_provider` is `powerdns`.

mod fleet_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_common::status::{BillingCycle, ServerStatus, TaskStatus};
use mpanel_common::{DomainName, PanelKind};
use mpanel_controller::config::Config;
use mpanel_controller::dns::{DnsError, PowerDns, ensure_powerdns_zone};
use mpanel_controller::store::{
    self, DynStore, NewCustomer, NewProduct, NewService, Price, Server,
};
use mpanel_e2e::powerdns::PowerDnsServer;
use serde_json::json;

fn config(pdns: Option<(&str, &str)>) -> Config {
    let mut env: HashMap<String, String> = HashMap::new();
    if let Some((url, key)) = pdns {
        env.insert("POWERDNS_API_URL".into(), url.into());
        env.insert("POWERDNS_API_KEY".into(), key.into());
    }
    Config::from_sources(&env, &HashMap::new(), None).unwrap()
}

fn config_for(pdns: &PowerDnsServer) -> Config {
    config(Some((&pdns.api_url, &pdns.api_key)))
}

fn server() -> Server {
    Server {
        id: 1.into(),
        hostname: "web1.example.net".into(),
        ip_address: "192.0.2.10".into(),
        control_panel: PanelKind::Cpanel,
        control_panel_url: "https://127.0.0.1:2087".into(),
        max_accounts: 500,
        status: ServerStatus::Active,
        location: "test".into(),
        server_group: "default".into(),
        nameserver1: "ns1.example.net".into(),
        nameserver2: "NS2.example.net.".into(),
        dns_provider: mpanel_common::status::DnsProvider::Powerdns,
        ssl_provider: mpanel_common::status::SslProvider::Autossl,
        created_at: 0,
        updated_at: 0,
    }
}

fn client(config: &Config) -> PowerDns {
    PowerDns::new(config.powerdns.as_ref().unwrap()).unwrap()
}

/// Asserts the default records of `domain` as PowerDNS serves them over DNS.
async fn assert_served(pdns: &PowerDnsServer, domain: &str, ip: &str) {
    for name in [
        domain.to_owned(),
        format!("www.{domain}"),
        format!("mail.{domain}"),
    ] {
        assert_eq!(pdns.lookup(&name, "A").await, [ip], "A {name}");
    }
    assert_eq!(
        pdns.lookup(domain, "MX").await,
        [format!("10 mail.{domain}.")]
    );
    assert_eq!(pdns.lookup(domain, "TXT").await, ["v=spf1 a mx ~all"]);
    assert_eq!(
        pdns.lookup(domain, "NS").await,
        ["ns1.example.net.", "ns2.example.net."]
    );
}

#[tokio::test]
async fn a_new_zone_is_served_over_dns_with_every_default_record() {
    let pdns = PowerDnsServer::start().await;
    let config = config_for(&pdns);
    let data = ensure_powerdns_zone(&config, &server(), "Shop.Example")
        .await
        .unwrap();
    assert_eq!(data["zone_id"], "shop.example.");
    assert_eq!(data["provider"], "powerdns");
    assert_eq!(data["records"], 7, "{data}");
    let records = data["record_list"].as_array().unwrap();
    assert_eq!(records.len(), 7, "{data}");
    assert_eq!(
        records[3],
        json!({"type": "MX", "name": "@", "value": "mail.shop.example"})
    );
    assert_served(&pdns, "shop.example", "192.0.2.10").await;

    let zone = client(&config)
        .zone(&DomainName::parse("shop.example").unwrap())
        .await
        .unwrap()
        .expect("the zone exists");
    let a = zone.rrsets.iter().find(|r| r.rtype == "A").unwrap();
    assert_eq!(a.ttl, 3600, "DNS_DEFAULT_TTL's default");
}

#[tokio::test]
async fn running_it_again_changes_nothing_not_even_the_soa_serial() {
    let pdns = PowerDnsServer::start().await;
    let config = config_for(&pdns);
    let domain = DomainName::parse("again.example").unwrap();
    let first = ensure_powerdns_zone(&config, &server(), domain.as_str())
        .await
        .unwrap();
    let before = client(&config).zone(&domain).await.unwrap().unwrap();
    let soa_before = pdns.lookup("again.example", "SOA").await;

    let second = ensure_powerdns_zone(&config, &server(), domain.as_str())
        .await
        .unwrap();
    let after = client(&config).zone(&domain).await.unwrap().unwrap();
    assert_eq!(first, second);
    assert_eq!(before.serial, after.serial);
    let mut rrsets_before = before.rrsets.clone();
    let mut rrsets_after = after.rrsets.clone();
    rrsets_before.sort_by(|a, b| (&a.name, &a.rtype).cmp(&(&b.name, &b.rtype)));
    rrsets_after.sort_by(|a, b| (&a.name, &a.rtype).cmp(&(&b.name, &b.rtype)));
    assert_eq!(rrsets_before, rrsets_after);
    assert_eq!(pdns.lookup("again.example", "SOA").await, soa_before);
}

#[tokio::test]
async fn records_added_beside_ours_survive_a_rerun_and_changed_ones_are_put_back() {
    let pdns = PowerDnsServer::start().await;
    let config = config_for(&pdns);
    ensure_powerdns_zone(&config, &server(), "kept.example")
        .await
        .unwrap();
    // The customer adds a verification TXT and a backup MX; someone breaks the www address.
    let patch = json!({"rrsets": [
        {"name": "kept.example.", "type": "TXT", "ttl": 3600, "changetype": "REPLACE",
         "records": [{"content": "\"v=spf1 a mx ~all\"", "disabled": false},
                     {"content": "\"site-verification=abc\"", "disabled": false}]},
        {"name": "kept.example.", "type": "MX", "ttl": 3600, "changetype": "REPLACE",
         "records": [{"content": "10 mail.kept.example.", "disabled": false},
                     {"content": "20 backup.mx.example.", "disabled": false}]},
        {"name": "www.kept.example.", "type": "A", "ttl": 3600, "changetype": "REPLACE",
         "records": [{"content": "198.51.100.1", "disabled": false}]},
    ]});
    let response = reqwest::Client::new()
        .patch(format!(
            "{}/api/v1/servers/localhost/zones/kept.example.",
            pdns.api_url
        ))
        .header("X-API-Key", &pdns.api_key)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");

    ensure_powerdns_zone(&config, &server(), "kept.example")
        .await
        .unwrap();
    assert_eq!(
        pdns.lookup("kept.example", "TXT").await,
        ["site-verification=abc", "v=spf1 a mx ~all"]
    );
    assert_eq!(
        pdns.lookup("kept.example", "MX").await,
        ["10 mail.kept.example.", "20 backup.mx.example."]
    );
    assert_eq!(pdns.lookup("www.kept.example", "A").await, ["192.0.2.10"]);
}

#[tokio::test]
async fn a_bad_api_key_is_a_permanent_authentication_error() {
    let pdns = PowerDnsServer::start().await;
    let config = config(Some((&pdns.api_url, "not-the-key")));
    let err = ensure_powerdns_zone(&config, &server(), "denied.example")
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let DnsError::PowerDns(inner) = &err else {
        panic!("expected a PowerDNS error, got {err}");
    };
    assert!(inner.is_auth(), "{err}");
    assert!(err.to_string().contains("POWERDNS_API_KEY"), "{err}");
    assert!(!err.to_string().contains("not-the-key"), "{err}");
}

#[tokio::test]
async fn powerdns_down_is_a_retryable_error() {
    let mut pdns = PowerDnsServer::start().await;
    let config = config_for(&pdns);
    pdns.kill();
    let err = ensure_powerdns_zone(&config, &server(), "down.example")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[tokio::test]
async fn a_powerdns_server_without_powerdns_configured_fails_permanently_saying_what_to_set() {
    let err = ensure_powerdns_zone(&config(None), &server(), "nowhere.example")
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NotConfigured { .. }), "{err}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains("web1.example.net") && message.contains("POWERDNS_API_URL"),
        "{message}"
    );
}

// --- the pipeline ------------------------------------------------------------------------

async fn order(store: &DynStore, domain: &str) -> store::Task {
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

/// The task once its DNS step has run (the steps after it are other tests' business).
async fn wait_for_dns_step(store: &DynStore, task: &store::Task) -> store::StepRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = store.get_task(task.id).await.unwrap();
        if let Some(step) = t.result.0.steps.iter().find(|s| s.step == "dns") {
            return step.clone();
        }
        assert!(
            t.status != TaskStatus::Failed && Instant::now() < deadline,
            "the DNS step never ran: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The in-process pipeline: controller, one enrolled agent on a simulated cPanel, with the
/// server's `dns_provider` set to `powerdns`.
struct Rig {
    /// Kept for its lifetime: dropping it stops the controller.
    _controller: Controller,
    store: DynStore,
    sim: mpanel_panelsim::SimHandle,
    agent: RunningAgent,
    _state_dir: tempfile::TempDir,
}

async fn rig(overrides: &[(&str, &str)]) -> Rig {
    let mut env = vec![
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "log"),
    ];
    env.extend_from_slice(overrides);
    let c = Controller::start(&env).await;
    let (server_id, dir, state) = enrolled_agent(&c, "web1.example.net").await;
    c.sql("UPDATE servers SET dns_provider = 'powerdns'").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;
    let store = store::connect(&c.db.url).await.unwrap();
    Rig {
        _controller: c,
        store,
        sim,
        agent,
        _state_dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_on_a_powerdns_server_gets_its_zone_served_by_powerdns() {
    let pdns = PowerDnsServer::start().await;
    let r = rig(&[
        ("POWERDNS_API_URL", &pdns.api_url),
        ("POWERDNS_API_KEY", &pdns.api_key),
        ("DNS_DEFAULT_TTL", "300"),
    ])
    .await;
    let task = order(&r.store, "pdns-shop.example").await;
    let dns = wait_for_dns_step(&r.store, &task).await;
    assert_eq!(dns.status, "success", "{:?}", dns.error);
    assert_eq!(dns.data["provider"], "powerdns");
    assert_eq!(dns.data["zone_id"], "pdns-shop.example.");
    assert_eq!(dns.data["records"], 7);
    assert_served(&pdns, "pdns-shop.example", "192.0.2.10").await;
    let zone = client(&config_for(&pdns))
        .zone(&DomainName::parse("pdns-shop.example").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        zone.rrsets
            .iter()
            .filter(|r| r.rtype != "SOA")
            .all(|r| r.ttl == 300),
        "{zone:?}"
    );
    r.agent.stop().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_powerdns_server_on_a_controller_without_powerdns_fails_the_dns_step_at_once() {
    let r = rig(&[]).await;
    let task = order(&r.store, "nodns.example").await;
    let dns = wait_for_dns_step(&r.store, &task).await;
    assert_eq!(dns.status, "failed");
    let error = dns.error.unwrap_or_default();
    assert!(error.contains("POWERDNS_API_URL"), "{error}");
    // Permanent: no retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let t = r.store.get_task(task.id).await.unwrap();
        if t.status == TaskStatus::Failed {
            break t;
        }
        assert!(Instant::now() < deadline, "the task never failed: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.attempts, 1);
    r.agent.stop().await;
    r.sim.shutdown().await;
}
