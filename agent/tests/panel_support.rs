//! Shared set-up for the panel driver contract tests (`panel_cpanel.rs`, `panel_plesk.rs`,
//! `panel_directadmin.rs`): start a simulator on port 0, build the real driver against it, read
//! the simulator's state. Included by each test file with `#[path]`; compiled alone it is an
//! empty test crate.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mpanel_agent::panel::{
    AccountSpec, CertificateBundle, ControlPanel, DatabaseInfo, DatabaseSpec, DnsRecord,
    DnsRecordKey, ErrorClass, MailboxSpec, PanelConfig, PanelKind, RecordType, Secret,
    build_driver_with,
};
use mpanel_panelsim::{
    FaultKind, RESIDENT_DOMAIN, RESIDENT_USER, ScriptedFault, SimConfig, SimHandle, SimKind,
};
use serde_json::Value;
use tokio::net::TcpListener;

pub const TOKEN: &str = "sim-token-7f3a9c1e5b";
pub const PASSWORD: &str = "Acct-Pass-9x7!";

/// The admin user each panel's token belongs to.
pub fn admin_user(kind: PanelKind) -> &'static str {
    match kind {
        PanelKind::Cpanel => "root",
        PanelKind::Plesk | PanelKind::Directadmin => "admin",
    }
}

pub fn sim_kind(kind: PanelKind) -> SimKind {
    match kind {
        PanelKind::Cpanel => SimKind::Cpanel,
        PanelKind::Plesk => SimKind::Plesk,
        PanelKind::Directadmin => SimKind::Directadmin,
    }
}

/// The package every panel's simulator knows under the name mpanel's products use.
pub fn default_package(kind: PanelKind) -> &'static str {
    match kind {
        PanelKind::Cpanel | PanelKind::Directadmin => "default",
        PanelKind::Plesk => "Unlimited",
    }
}

/// A second package, for change-package tests.
pub fn other_package(kind: PanelKind) -> &'static str {
    match kind {
        PanelKind::Cpanel | PanelKind::Directadmin => "starter",
        PanelKind::Plesk => "Default Domain",
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub async fn start_sim(config: SimConfig) -> SimHandle {
    install_crypto();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    mpanel_panelsim::start(config, listener)
        .await
        .expect("start the simulator")
}

pub async fn sim(kind: PanelKind) -> SimHandle {
    start_sim(SimConfig::new(sim_kind(kind), TOKEN)).await
}

/// A driver for `sim` with a short timeout, so the timeout tests do not wait 30 s.
pub fn driver_for(kind: PanelKind, sim: &SimHandle) -> Arc<dyn ControlPanel> {
    driver_with_token(kind, sim, TOKEN)
}

pub fn driver_with_token(kind: PanelKind, sim: &SimHandle, token: &str) -> Arc<dyn ControlPanel> {
    let mut config = PanelConfig::new(
        kind,
        &sim.base_url(),
        admin_user(kind),
        Secret::new(token),
        true,
    );
    config.timeout = Duration::from_secs(2);
    build_driver_with(config).expect("build the driver")
}

pub async fn setup(kind: PanelKind) -> (SimHandle, Arc<dyn ControlPanel>) {
    let sim = sim(kind).await;
    let driver = driver_for(kind, &sim);
    (sim, driver)
}

pub fn spec(kind: PanelKind, service_id: i64, username: &str, domain: &str) -> AccountSpec {
    AccountSpec {
        service_id,
        username: username.to_owned(),
        domain: domain.to_owned(),
        password: Secret::new(PASSWORD),
        package: default_package(kind).to_owned(),
        contact_email: format!("owner{service_id}@customer.example"),
        quota_mb: None,
        ip: Some("192.0.2.10".to_owned()),
    }
}

/// The simulator's accounts.
pub fn accounts(sim: &SimHandle) -> Vec<Value> {
    sim.state_json()["accounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Asserts that the simulator holds exactly `ours` besides the account it starts with, and
/// that the latter is still there.
pub fn assert_accounts(sim: &SimHandle, ours: &[&str]) {
    let mut expected: Vec<String> = ours.iter().map(|u| (*u).to_owned()).collect();
    expected.push(RESIDENT_USER.to_owned());
    expected.sort();
    let mut found: Vec<String> = accounts(sim)
        .iter()
        .filter_map(|a| a["username"].as_str().map(str::to_owned))
        .collect();
    found.sort();
    assert_eq!(found, expected);
}

/// The simulator's sites owned by `owner`.
pub fn domains_of(sim: &SimHandle, owner: &str) -> Vec<Value> {
    state_list(sim, "domains")
        .into_iter()
        .filter(|d| d["owner"] == owner)
        .collect()
}

pub fn account(sim: &SimHandle, username: &str) -> Option<Value> {
    accounts(sim)
        .into_iter()
        .find(|a| a["username"] == username)
}

pub fn count_accounts(sim: &SimHandle, username: &str) -> usize {
    accounts(sim)
        .iter()
        .filter(|a| a["username"] == username)
        .count()
}

/// The records of `domain`'s zone in the simulator.
pub fn zone_records(sim: &SimHandle, domain: &str) -> Vec<Value> {
    sim.state_json()["zones"]
        .as_array()
        .and_then(|zones| zones.iter().find(|z| z["domain"] == domain).cloned())
        .and_then(|z| z["records"].as_array().cloned())
        .unwrap_or_default()
}

pub fn state_list(sim: &SimHandle, key: &str) -> Vec<Value> {
    sim.state_json()[key]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Seeds an account the agent did not create (another service's, or the hosting company's own).
pub async fn seed_foreign_account(sim: &SimHandle, username: &str, domain: &str, email: &str) {
    let body = serde_json::json!({
        "accounts": [{"username": username, "domain": domain, "email": email}]
    });
    let response = reqwest::Client::new()
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("seed request");
    assert!(
        response.status().is_success(),
        "seeding failed: {}",
        response.status()
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

pub const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBC\n-----END PRIVATE KEY-----\n";
pub const CERT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nTUlJQzBqQ0NBYnFnQXdJQkFnSUlN\n-----END CERTIFICATE-----\n";
pub const CHAIN_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nTUlJRmF6Q0NBMU9nQXdJQkFnSVJB\n-----END CERTIFICATE-----\n";

pub fn bundle() -> CertificateBundle {
    CertificateBundle {
        private_key: Secret::new(KEY_PEM),
        certificate: CERT_PEM.to_owned(),
        chain: CHAIN_PEM.to_owned(),
    }
}

/// Creates the standard account of a story and returns its spec.
pub async fn with_account(kind: PanelKind, driver: &Arc<dyn ControlPanel>) -> AccountSpec {
    let spec = spec(kind, 41, "alice41", "alice41.example");
    driver
        .ensure_account(&spec)
        .await
        .expect("creating the story's account");
    spec
}

pub fn records_named(sim: &SimHandle, domain: &str, name: &str, rtype: &str) -> Vec<Value> {
    zone_records(sim, domain)
        .into_iter()
        .filter(|r| r["name"] == name && r["type"] == rtype)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Stories run against every panel (one per behaviour; each panel's test file names them)
// ---------------------------------------------------------------------------------------------

pub async fn ensure_account_creates_one_owned_account(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = spec(kind, 7, "bobsite7", "bobsite7.example");
    let info = driver.ensure_account(&spec).await.expect("ensure_account");
    assert_eq!(info.username, "bobsite7");
    assert_eq!(info.domain.as_deref(), Some("bobsite7.example"));
    assert_eq!(count_accounts(&sim, "bobsite7"), 1);
    let stored = account(&sim, "bobsite7").unwrap();
    assert_eq!(stored["email"], spec.contact_email);
    assert_eq!(stored["password"], PASSWORD);
    assert_eq!(stored["package"], default_package(kind));
    let got = driver
        .get_account("bobsite7")
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(
        got.contact_email.as_deref(),
        Some(spec.contact_email.as_str())
    );
    assert!(driver.get_account("nobody42").await.unwrap().is_none());
}

pub async fn retried_ensure_account_returns_the_same_single_account(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = spec(kind, 8, "carol8", "carol8.example");
    let first = driver.ensure_account(&spec).await.unwrap();
    let second = driver.ensure_account(&spec).await.unwrap();
    assert_eq!(first.username, second.username);
    assert_eq!(second.domain.as_deref(), Some("carol8.example"));
    assert_accounts(&sim, &["carol8"]);
}

pub async fn concurrent_ensure_account_for_one_service_makes_one_account(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = spec(kind, 9, "dave9", "dave9.example");
    let (a, b, c) = tokio::join!(
        driver.ensure_account(&spec),
        driver.ensure_account(&spec),
        driver.ensure_account(&spec)
    );
    for result in [a, b, c] {
        assert_eq!(
            result.expect("every caller gets the account").username,
            "dave9"
        );
    }
    assert_accounts(&sim, &["dave9"]);
}

/// The boxbilling#19 trap inside one call: create reports failure, the account exists.
pub async fn create_error_hiding_a_success_returns_the_account(kind: PanelKind, create_call: &str) {
    let (sim, driver) = setup(kind).await;
    sim.script(ScriptedFault::on(FaultKind::PartialSuccess, create_call, 1));
    let spec = spec(kind, 10, "erin10", "erin10.example");
    let info = driver
        .ensure_account(&spec)
        .await
        .expect("the account the failed create made is ours");
    assert_eq!(info.username, "erin10");
    assert_eq!(count_accounts(&sim, "erin10"), 1);
    assert_accounts(&sim, &["erin10"]);
}

pub async fn already_exists_error_without_an_account_is_a_conflict(
    kind: PanelKind,
    create_call: &str,
) {
    let (sim, driver) = setup(kind).await;
    sim.script(ScriptedFault::on(FaultKind::AlreadyExists, create_call, 1));
    let spec = spec(kind, 11, "frank11", "frank11.example");
    let err = driver.ensure_account(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    assert_accounts(&sim, &[]);
}

pub async fn account_of_another_service_is_a_conflict(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    seed_foreign_account(
        &sim,
        "grace12",
        "grace-shop.example",
        "grace@elsewhere.example",
    )
    .await;
    let spec = spec(kind, 12, "grace12", "grace12.example");
    let err = driver.ensure_account(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    assert_accounts(&sim, &["grace12"]);
    assert_eq!(
        account(&sim, "grace12").unwrap()["domain"],
        "grace-shop.example"
    );
}

pub async fn same_domain_but_other_contact_email_is_a_conflict(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    seed_foreign_account(&sim, "heidi13", "heidi13.example", "someone@else.example").await;
    let spec = spec(kind, 13, "heidi13", "heidi13.example");
    let err = driver.ensure_account(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
}

pub async fn suspend_and_unsuspend_change_the_state_and_repeat_safely(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver
        .suspend_account(&spec.username, "unpaid")
        .await
        .unwrap();
    assert_eq!(account(&sim, &spec.username).unwrap()["suspended"], true);
    driver
        .suspend_account(&spec.username, "unpaid")
        .await
        .unwrap();
    assert!(
        driver
            .get_account(&spec.username)
            .await
            .unwrap()
            .unwrap()
            .suspended
    );
    driver.unsuspend_account(&spec.username).await.unwrap();
    driver.unsuspend_account(&spec.username).await.unwrap();
    assert_eq!(account(&sim, &spec.username).unwrap()["suspended"], false);
    let err = driver.suspend_account("ghost99", "x").await.unwrap_err();
    assert!(
        matches!(err.class(), ErrorClass::NotFound | ErrorClass::Permanent),
        "{err}"
    );
}

pub async fn terminate_removes_the_account_and_a_second_terminate_succeeds(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver.terminate_account(&spec.username).await.unwrap();
    assert_accounts(&sim, &[]);
    driver.terminate_account(&spec.username).await.unwrap();
    assert!(driver.get_account(&spec.username).await.unwrap().is_none());
}

pub async fn change_package_switches_the_plan_and_rejects_unknown_ones(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver
        .change_package(&spec.username, other_package(kind))
        .await
        .unwrap();
    assert_eq!(
        account(&sim, &spec.username).unwrap()["package"],
        other_package(kind)
    );
    let err = driver
        .change_package(&spec.username, "no-such-plan")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
}

pub async fn change_password_sets_the_new_password(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver
        .change_password(&spec.username, &Secret::new("N3w-Secret-Pass"))
        .await
        .unwrap();
    assert_eq!(
        account(&sim, &spec.username).unwrap()["password"],
        "N3w-Secret-Pass"
    );
}

pub async fn list_accounts_and_packages_report_what_the_panel_has(kind: PanelKind) {
    let (_sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let listed = driver.list_accounts().await.unwrap();
    let listed: Vec<_> = listed
        .into_iter()
        .filter(|a| a.username != RESIDENT_USER)
        .collect();
    assert_eq!(listed.len(), 1, "the resident account and ours: {listed:?}");
    assert_eq!(listed[0].username, spec.username);
    assert_eq!(listed[0].domain.as_deref(), Some(spec.domain.as_str()));
    let packages = driver.list_packages().await.unwrap();
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&default_package(kind)), "{names:?}");
    assert!(names.contains(&other_package(kind)), "{names:?}");
}

pub async fn usage_reports_disk_for_an_account(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let usage = driver.usage(&spec.username).await.unwrap();
    assert_eq!(usage.disk_used, Some(0));
    assert!(driver.usage("ghost99").await.is_err());

    // What the panel reports, read back in bytes whatever unit the panel uses (cPanel disk in
    // whole MB, DirectAdmin MB with decimals, Plesk bytes).
    const MB: u64 = 1024 * 1024;
    let set = reqwest::Client::new()
        .post(format!("{}/__sim/usage", sim.base_url()))
        .json(&serde_json::json!({
            "username": spec.username,
            "diskUsedBytes": 1536 * MB,
            "bandwidthUsedBytes": 20 * 1024 * MB + MB / 2,
            "inodesUsed": 4321,
        }))
        .send()
        .await
        .expect("usage request");
    assert!(set.status().is_success(), "{}", set.status());
    let usage = driver.usage(&spec.username).await.unwrap();
    assert_eq!(usage.disk_used, Some(1536 * MB), "{kind:?}");
    assert_eq!(
        usage.bandwidth_used,
        Some(20 * 1024 * MB + MB / 2),
        "{kind:?}"
    );
    match kind {
        // Plesk's statistics carry no inode count.
        PanelKind::Plesk => assert_eq!(usage.inodes_used, None),
        PanelKind::Cpanel | PanelKind::Directadmin => {
            assert_eq!(usage.inodes_used, Some(4321), "{kind:?}");
        }
    }
}

pub async fn dns_upserts_converge_and_deletes_are_idempotent(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let zone = spec.domain.as_str();
    driver
        .ensure_dns_zone(&spec.username, zone, Some("192.0.2.10"))
        .await
        .unwrap();

    let www = DnsRecord {
        name: "www".into(),
        record_type: RecordType::A,
        value: "203.0.113.5".into(),
        ttl: 300,
        priority: None,
    };
    driver
        .upsert_dns_record(&spec.username, zone, &www)
        .await
        .unwrap();
    let a = records_named(&sim, zone, &format!("www.{zone}"), "A");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["value"], "203.0.113.5");

    let verification = DnsRecord {
        name: "@".into(),
        record_type: RecordType::Txt,
        value: "site-verification=abc123".into(),
        ttl: 300,
        priority: None,
    };
    driver
        .upsert_dns_record(&spec.username, zone, &verification)
        .await
        .unwrap();
    driver
        .upsert_dns_record(&spec.username, zone, &verification)
        .await
        .unwrap();
    let txt = records_named(&sim, zone, zone, "TXT");
    assert_eq!(
        txt.len(),
        2,
        "the SPF record stays beside the new one: {txt:?}"
    );
    assert_eq!(
        txt.iter()
            .filter(|r| r["value"] == "site-verification=abc123")
            .count(),
        1
    );

    let mx = DnsRecord {
        name: "@".into(),
        record_type: RecordType::Mx,
        value: "mx.mailhost.example".into(),
        ttl: 3600,
        priority: Some(5),
    };
    driver
        .upsert_dns_record(&spec.username, zone, &mx)
        .await
        .unwrap();
    let mxs = records_named(&sim, zone, zone, "MX");
    assert!(
        mxs.iter()
            .any(|r| r["value"] == "mx.mailhost.example" && r["priority"] == 5),
        "{mxs:?}"
    );

    let key = DnsRecordKey {
        name: "@".into(),
        record_type: RecordType::Txt,
        value: Some("site-verification=abc123".into()),
    };
    driver
        .delete_dns_record(&spec.username, zone, &key)
        .await
        .unwrap();
    driver
        .delete_dns_record(&spec.username, zone, &key)
        .await
        .unwrap();
    let txt = records_named(&sim, zone, zone, "TXT");
    assert_eq!(txt.len(), 1, "{txt:?}");
    assert!(txt[0]["value"].as_str().unwrap().starts_with("v=spf1"));

    let mx_key = DnsRecordKey {
        name: "@".into(),
        record_type: RecordType::Mx,
        value: Some("mx.mailhost.example".into()),
    };
    driver
        .delete_dns_record(&spec.username, zone, &mx_key)
        .await
        .unwrap();
    assert!(
        !records_named(&sim, zone, zone, "MX")
            .iter()
            .any(|r| r["value"] == "mx.mailhost.example")
    );
}

/// The types of the records at `name` (a FQDN) in `domain`'s zone.
pub fn types_at(sim: &SimHandle, domain: &str, name: &str) -> Vec<String> {
    zone_records(sim, domain)
        .into_iter()
        .filter(|r| r["name"] == name)
        .map(|r| r["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A CNAME owns its name (RFC 1034 §3.6.2): an address upsert at a CNAME's name replaces the
/// CNAME, and a CNAME upsert replaces whatever is at its name. The simulators refuse a zone
/// with a CNAME beside other data, so an upsert that only adds fails here.
pub async fn a_cname_and_an_address_at_one_name_replace_each_other(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let zone = spec.domain.as_str();
    let user = spec.username.as_str();
    let shop = format!("shop.{zone}");
    let record = |record_type, value: &str| DnsRecord {
        name: "shop".into(),
        record_type,
        value: value.into(),
        ttl: 300,
        priority: None,
    };
    let address = record(RecordType::A, "203.0.113.7");
    let alias = record(RecordType::Cname, "cdn.provider.example");
    let text = record(RecordType::Txt, "shop-verification=1");

    driver
        .upsert_dns_record(user, zone, &address)
        .await
        .unwrap();
    driver.upsert_dns_record(user, zone, &text).await.unwrap();
    let mut before = types_at(&sim, zone, &shop);
    before.sort();
    assert_eq!(before, ["A", "TXT"]);

    driver.upsert_dns_record(user, zone, &alias).await.unwrap();
    assert_eq!(types_at(&sim, zone, &shop), ["CNAME"]);
    driver.upsert_dns_record(user, zone, &alias).await.unwrap();
    assert_eq!(types_at(&sim, zone, &shop), ["CNAME"]);

    driver
        .upsert_dns_record(user, zone, &address)
        .await
        .unwrap();
    assert_eq!(types_at(&sim, zone, &shop), ["A"]);
    let a = records_named(&sim, zone, &shop, "A");
    assert_eq!(a[0]["value"], "203.0.113.7");
}

/// The panel's own account (`hostco`) is never taken for ours: not by a name it starts
/// with, not as "the" account, and creating ours leaves it as it was.
pub async fn lookups_never_take_the_resident_account_for_ours(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let before = account(&sim, RESIDENT_USER).expect("the simulator's resident account");
    let prefix = &RESIDENT_USER[..4];
    assert!(driver.get_account(prefix).await.unwrap().is_none());
    let resident = driver.get_account(RESIDENT_USER).await.unwrap().unwrap();
    assert_eq!(resident.domain.as_deref(), Some(RESIDENT_DOMAIN));

    let ours = spec(kind, 70, prefix, &format!("{prefix}70.example"));
    let info = driver.ensure_account(&ours).await.unwrap();
    assert_eq!(info.username, prefix);
    assert_eq!(info.domain.as_deref(), Some(ours.domain.as_str()));
    assert_accounts(&sim, &[prefix]);
    assert_eq!(account(&sim, RESIDENT_USER).unwrap(), before);

    // Our username with the resident's domain is someone else's site, not ours to adopt.
    let clash = spec(kind, 71, "clash71", RESIDENT_DOMAIN);
    assert!(driver.ensure_account(&clash).await.is_err());
    driver.terminate_account(prefix).await.unwrap();
    assert_accounts(&sim, &[]);
    assert_eq!(account(&sim, RESIDENT_USER).unwrap(), before);
}

pub async fn certificate_install_stores_key_certificate_and_chain(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver
        .install_certificate(&spec.username, &spec.domain, &bundle())
        .await
        .unwrap();
    let certs = state_list(&sim, "certificates");
    let cert = certs
        .iter()
        .find(|c| c["domain"] == spec.domain)
        .unwrap_or_else(|| panic!("no certificate for {}: {certs:?}", spec.domain));
    assert_eq!(cert["hasKey"], true);
    assert_eq!(cert["hasCabundle"], true);
    assert!(cert["cert"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    // A second install of the same certificate is fine.
    driver
        .install_certificate(&spec.username, &spec.domain, &bundle())
        .await
        .unwrap();
}

pub async fn auto_ssl_starts_the_panels_certificate_automation(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    driver
        .start_auto_ssl(&spec.username, &spec.domain)
        .await
        .unwrap();
    let state = sim.state_json();
    let started = state["autosslChecks"]
        .as_array()
        .is_some_and(|c| c.iter().any(|u| u == spec.username.as_str()))
        || state["certificates"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["domain"] == spec.domain));
    assert!(started, "{state}");
}

pub async fn mailbox_create_sets_quota_and_a_retry_converges(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let mailbox = MailboxSpec {
        local_part: "info".into(),
        domain: spec.domain.clone(),
        password: Secret::new("Mail-Pass-123"),
        quota_mb: Some(250),
    };
    driver
        .create_mailbox(&spec.username, &mailbox)
        .await
        .unwrap();
    driver
        .create_mailbox(&spec.username, &mailbox)
        .await
        .unwrap();
    let boxes = state_list(&sim, "mailboxes");
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    assert_eq!(boxes[0]["address"], format!("info@{}", spec.domain));
    assert_eq!(boxes[0]["quotaMb"], 250);
    assert_eq!(boxes[0]["password"], "Mail-Pass-123");
}

pub async fn mailbox_create_that_failed_but_happened_is_a_success(kind: PanelKind, call: &str) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    sim.script(ScriptedFault::on(FaultKind::PartialSuccess, call, 1));
    let mailbox = MailboxSpec {
        local_part: "sales".into(),
        domain: spec.domain.clone(),
        password: Secret::new("Mail-Pass-456"),
        quota_mb: None,
    };
    driver
        .create_mailbox(&spec.username, &mailbox)
        .await
        .unwrap();
    assert_eq!(state_list(&sim, "mailboxes").len(), 1);
}

/// Returns the names the driver reported, for the panel-specific prefix assertions.
pub async fn database_user_and_grant_are_created(kind: PanelKind) -> DatabaseInfo {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let db = DatabaseSpec {
        name: "wp".into(),
        user: "wpuser".into(),
        password: Secret::new("Db-Pass-789"),
        domain: spec.domain.clone(),
    };
    let info = driver.create_database(&spec.username, &db).await.unwrap();
    let databases = state_list(&sim, "databases");
    assert!(
        databases.iter().any(|d| d["name"] == info.database),
        "{databases:?}"
    );
    let users = state_list(&sim, "dbUsers");
    let user = users
        .iter()
        .find(|u| u["name"] == info.user)
        .unwrap_or_else(|| panic!("no user {}: {users:?}", info.user));
    assert_eq!(user["password"], "Db-Pass-789");
    let grants = state_list(&sim, "grants");
    assert!(
        grants
            .iter()
            .any(|g| g["user"] == info.user && g["database"] == info.database),
        "{grants:?}"
    );
    info
}

pub async fn retried_database_create_converges_on_one_database(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    let spec = with_account(kind, &driver).await;
    let db = DatabaseSpec {
        name: "shop".into(),
        user: "shopuser".into(),
        password: Secret::new("Db-Pass-000"),
        domain: spec.domain.clone(),
    };
    let first = driver.create_database(&spec.username, &db).await.unwrap();
    let second = driver.create_database(&spec.username, &db).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(state_list(&sim, "databases").len(), 1);
    assert_eq!(state_list(&sim, "dbUsers").len(), 1);
}

pub async fn acme_challenge_is_written_into_the_web_root_and_served(kind: PanelKind) {
    let mut config = SimConfig::new(sim_kind(kind), TOKEN);
    config.web_root_http = true;
    let sim = start_sim(config).await;
    let driver = driver_for(kind, &sim);
    let spec = with_account(kind, &driver).await;
    let token = "tok_EN-abc123";
    let key_auth = "tok_EN-abc123.thumbprint_xyz";
    driver
        .write_acme_challenge(&spec.username, &spec.domain, token, key_auth)
        .await
        .unwrap();

    let docroot = state_list(&sim, "domains")
        .into_iter()
        .find(|d| d["name"] == spec.domain)
        .and_then(|d| d["docroot"].as_str().map(str::to_owned))
        .expect("docroot");
    let files = state_list(&sim, "webRootFiles");
    let expected = format!("{docroot}/.well-known/acme-challenge/{token}");
    let file = files
        .iter()
        .find(|f| f["path"] == expected.as_str())
        .unwrap_or_else(|| panic!("no {expected}: {files:?}"));
    assert_eq!(file["content"], key_auth);
    assert_eq!(file["owner"], spec.username);

    // What an ACME server would fetch.
    let served = reqwest::Client::new()
        .get(format!(
            "{}/.well-known/acme-challenge/{token}",
            sim.base_url()
        ))
        .header(reqwest::header::HOST, spec.domain.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.unwrap(), key_auth);

    // The same directory, as a path the agent could write to directly.
    let root = driver.web_root(&spec.username, &spec.domain).await.unwrap();
    assert_eq!(root, std::path::PathBuf::from(&docroot));

    let err = driver
        .write_acme_challenge(&spec.username, &spec.domain, "../../etc/passwd", "x")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
}

pub async fn wrong_token_is_an_auth_error_without_the_token_in_it(kind: PanelKind) {
    let sim = sim(kind).await;
    let driver = driver_with_token(kind, &sim, "wrong-token-5e1d");
    for _ in 0..2 {
        let err = driver.get_account("anyone").await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Auth, "{err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("wrong-token-5e1d"), "{shown}");
    }
    assert!(!format!("{driver:?}").contains("wrong-token-5e1d"));
}

pub async fn scripted_auth_failure_is_an_auth_error(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    sim.script(ScriptedFault::once(FaultKind::AuthFailure));
    let err = driver.list_accounts().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    let spec = spec(kind, 20, "ivan20", "ivan20.example");
    sim.script(ScriptedFault::once(FaultKind::AuthFailure));
    let err = driver.ensure_account(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert_accounts(&sim, &[]);
}

pub async fn server_error_is_retryable_and_changes_nothing(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    sim.script(ScriptedFault::once(FaultKind::ServerError));
    let err = driver.list_accounts().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert!(err.is_retryable());
    // After the outage the same call works.
    let listed = driver.list_accounts().await.unwrap();
    assert!(
        listed.iter().all(|a| a.username == RESIDENT_USER),
        "{listed:?}"
    );
}

pub async fn timeout_is_retryable(kind: PanelKind) {
    let (sim, driver) = setup(kind).await;
    sim.script(ScriptedFault::once(FaultKind::Timeout));
    let started = std::time::Instant::now();
    let err = driver.list_accounts().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

pub async fn random_panel_failures_never_make_a_second_account(kind: PanelKind) {
    let mut config = SimConfig::new(sim_kind(kind), TOKEN);
    config.fail_rate = 0.3;
    config.seed = 7;
    let sim = start_sim(config).await;
    let driver = driver_for(kind, &sim);
    let spec = spec(kind, 30, "judy30", "judy30.example");
    let mut attempts = 0;
    let info = loop {
        attempts += 1;
        match driver.ensure_account(&spec).await {
            Ok(info) => break info,
            Err(e) if e.is_retryable() && attempts < 40 => continue,
            Err(e) => panic!("attempt {attempts}: {e}"),
        }
    };
    assert_eq!(info.username, "judy30");
    assert_accounts(&sim, &["judy30"]);
}

pub async fn errors_never_carry_the_account_password(kind: PanelKind) {
    let (_sim, driver) = setup(kind).await;
    let mut bad = spec(kind, 21, "kate21", "kate21.example");
    bad.package = "no-such-plan".into();
    let err = driver.ensure_account(&bad).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    let shown = format!("{err} {err:?} {bad:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}
