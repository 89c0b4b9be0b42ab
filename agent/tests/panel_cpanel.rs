//! Contract tests of the cPanel/WHM driver against the cPanel simulator: every operation, every
//! failure channel (HTTP 403, `metadata.result: 0`, UAPI `status: 0`, 5xx, timeout) and every
//! quirk (string results, sizes with units, the database prefix rule, the "group already
//! exists" trap).

#[path = "panel_support.rs"]
mod support;

use mpanel_agent::panel::{
    Amount, DatabaseSpec, DnsRecord, DnsRecordKey, ErrorClass, MB, PanelConfig, PanelKind,
    RecordType, Secret, build_driver_with,
};
use mpanel_panelsim::SimConfig;
use support::*;

const KIND: PanelKind = PanelKind::Cpanel;

#[tokio::test]
async fn ensure_account_creates_one_account_with_contact_email_and_plan() {
    ensure_account_creates_one_owned_account(KIND).await;
}

#[tokio::test]
async fn retried_ensure_account_returns_the_same_account() {
    retried_ensure_account_returns_the_same_single_account(KIND).await;
}

#[tokio::test]
async fn concurrent_ensure_account_makes_one_account() {
    concurrent_ensure_account_for_one_service_makes_one_account(KIND).await;
}

#[tokio::test]
async fn createacct_failing_with_group_already_exists_after_creating_returns_the_account() {
    create_error_hiding_a_success_returns_the_account(KIND, "createacct").await;
}

#[tokio::test]
async fn createacct_already_exists_without_an_account_is_a_conflict() {
    already_exists_error_without_an_account_is_a_conflict(KIND, "createacct").await;
}

#[tokio::test]
async fn existing_account_with_another_domain_is_a_conflict() {
    account_of_another_service_is_a_conflict(KIND).await;
}

#[tokio::test]
async fn existing_account_with_our_domain_but_another_contactemail_is_a_conflict() {
    same_domain_but_other_contact_email_is_a_conflict(KIND).await;
}

#[tokio::test]
async fn suspendacct_and_unsuspendacct_toggle_and_repeat_safely() {
    suspend_and_unsuspend_change_the_state_and_repeat_safely(KIND).await;
}

#[tokio::test]
async fn removeacct_removes_and_repeats_safely() {
    terminate_removes_the_account_and_a_second_terminate_succeeds(KIND).await;
}

#[tokio::test]
async fn changepackage_switches_plan_and_unknown_package_is_permanent() {
    change_package_switches_the_plan_and_rejects_unknown_ones(KIND).await;
}

#[tokio::test]
async fn passwd_sets_the_new_password() {
    change_password_sets_the_new_password(KIND).await;
}

#[tokio::test]
async fn listaccts_and_listpkgs_are_read() {
    list_accounts_and_packages_report_what_the_panel_has(KIND).await;
}

#[tokio::test]
async fn usage_reads_listaccts_and_showbw() {
    usage_reports_disk_for_an_account(KIND).await;
}

#[tokio::test]
async fn mass_edit_dns_zone_upserts_and_deletes_with_the_current_serial() {
    dns_upserts_converge_and_deletes_are_idempotent(KIND).await;
}

#[tokio::test]
async fn installssl_installs_key_certificate_and_cabundle() {
    certificate_install_stores_key_certificate_and_chain(KIND).await;
}

#[tokio::test]
async fn autossl_check_is_started_for_the_user() {
    auto_ssl_starts_the_panels_certificate_automation(KIND).await;
}

#[tokio::test]
async fn uapi_add_pop_creates_a_mailbox_with_quota_and_a_retry_converges() {
    mailbox_create_sets_quota_and_a_retry_converges(KIND).await;
}

#[tokio::test]
async fn uapi_add_pop_error_after_creating_is_a_success() {
    mailbox_create_that_failed_but_happened_is_a_success(KIND, "cpanel_jsonapi_func=add_pop").await;
}

#[tokio::test]
async fn mysql_database_and_user_get_the_eight_character_prefix_and_a_grant() {
    let info = database_user_and_grant_are_created(KIND).await;
    // The story's user is "alice41": its first eight characters are the prefix.
    assert_eq!(info.database, "alice41_wp");
    assert_eq!(info.user, "alice41_wpuser");
}

#[tokio::test]
async fn database_prefix_uses_only_the_first_eight_characters_of_a_long_username() {
    let (sim, driver) = setup(KIND).await;
    let spec = spec(KIND, 50, "longusername50", "longusername50.example");
    driver.ensure_account(&spec).await.unwrap();
    let db = DatabaseSpec {
        name: "blog".into(),
        user: "blog".into(),
        password: mpanel_agent::panel::Secret::new("Db-Pass-111"),
        domain: spec.domain.clone(),
    };
    let info = driver.create_database(&spec.username, &db).await.unwrap();
    assert_eq!(info.database, "longuser_blog");
    assert_eq!(info.user, "longuser_blog");
    assert_eq!(state_list(&sim, "databases")[0]["name"], "longuser_blog");
}

#[tokio::test]
async fn retried_mysql_create_converges_on_one_database_and_user() {
    retried_database_create_converges_on_one_database(KIND).await;
}

#[tokio::test]
async fn fileman_save_file_content_writes_the_acme_challenge() {
    acme_challenge_is_written_into_the_web_root_and_served(KIND).await;
}

#[tokio::test]
async fn http_403_access_denied_is_an_auth_error() {
    wrong_token_is_an_auth_error_without_the_token_in_it(KIND).await;
    let sim = sim(KIND).await;
    let driver = driver_with_token(KIND, &sim, "wrong-token-5e1d");
    let err = driver.list_accounts().await.unwrap_err();
    assert!(err.message().contains("Access denied"), "{err}");
}

#[tokio::test]
async fn scripted_auth_failure_is_an_auth_error_and_creates_nothing() {
    scripted_auth_failure_is_an_auth_error(KIND).await;
}

#[tokio::test]
async fn http_500_is_retryable() {
    server_error_is_retryable_and_changes_nothing(KIND).await;
}

#[tokio::test]
async fn request_timeout_is_retryable() {
    timeout_is_retryable(KIND).await;
}

#[tokio::test]
async fn random_5xx_failures_with_retries_end_in_exactly_one_account() {
    random_panel_failures_never_make_a_second_account(KIND).await;
}

#[tokio::test]
async fn result_zero_errors_never_show_the_password() {
    errors_never_carry_the_account_password(KIND).await;
}

#[tokio::test]
async fn metadata_result_as_string_or_number_both_mean_success() {
    // Seed 1 makes the simulator start with `"result":"1"` and alternate with `1`.
    for seed in [0, 1] {
        let mut config = SimConfig::new(sim_kind(KIND), TOKEN);
        config.seed = seed;
        let sim = start_sim(config).await;
        let driver = driver_for(KIND, &sim);
        let spec = with_account(KIND, &driver).await;
        for _ in 0..3 {
            assert!(driver.get_account(&spec.username).await.unwrap().is_some());
        }
        driver.suspend_account(&spec.username, "x").await.unwrap();
        // And a failure in string form is still a failure.
        assert!(driver.change_package(&spec.username, "nope").await.is_err());
        assert!(driver.change_package(&spec.username, "nope").await.is_err());
    }
}

#[tokio::test]
async fn sizes_with_units_and_unlimited_are_parsed() {
    let (_sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    let usage = driver.usage(&spec.username).await.unwrap();
    assert_eq!(usage.disk_limit, Some(Amount::Unlimited));
    assert_eq!(usage.inodes_limit, Some(Amount::Unlimited));
    driver
        .change_package(&spec.username, "starter")
        .await
        .unwrap();
    let usage = driver.usage(&spec.username).await.unwrap();
    assert_eq!(usage.disk_limit, Some(Amount::Value(1024 * MB)));
    assert_eq!(usage.bandwidth_limit, Some(Amount::Value(10240 * MB)));
    let packages = driver.list_packages().await.unwrap();
    let starter = packages.iter().find(|p| p.name == "starter").unwrap();
    assert_eq!(starter.disk_quota, Some(Amount::Value(1024 * MB)));
}

#[tokio::test]
async fn uapi_status_zero_is_an_error_with_the_panels_text() {
    let (_sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    let mailbox = mpanel_agent::panel::MailboxSpec {
        local_part: "cpanel".into(), // reserved by cPanel
        domain: spec.domain.clone(),
        password: mpanel_agent::panel::Secret::new("Mail-Pass-123"),
        quota_mb: None,
    };
    let err = driver
        .create_mailbox(&spec.username, &mailbox)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(err.message().contains("reserved"), "{err}");
}

#[tokio::test]
async fn a_cname_and_an_address_at_one_name_replace_each_other_in_the_zone() {
    a_cname_and_an_address_at_one_name_replace_each_other(KIND).await;
}

#[tokio::test]
async fn a_set_of_records_is_one_parse_and_one_mass_edit() {
    let (sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    let zone = spec.domain.as_str();
    let record = |name: &str, record_type, value: &str, priority| DnsRecord {
        name: name.into(),
        record_type,
        value: value.into(),
        ttl: 14400,
        priority,
    };
    let records = [
        record("@", RecordType::A, "203.0.113.9", None),
        record("www", RecordType::A, "203.0.113.9", None),
        record("mail", RecordType::A, "203.0.113.9", None),
        record("@", RecordType::Mx, &format!("mail.{zone}"), Some(10)),
        record("@", RecordType::Txt, "v=spf1 a mx -all", None),
        record("_dmarc", RecordType::Txt, "v=DMARC1; p=none", None),
    ];
    let before = sim.state_json()["callCounts"].clone();
    driver
        .upsert_dns_records(&spec.username, zone, &records)
        .await
        .unwrap();
    let after = sim.state_json()["callCounts"].clone();
    let calls = |counts: &serde_json::Value, key: &str| counts[key].as_u64().unwrap_or(0);
    assert_eq!(
        calls(&after, "mass_edit_dns_zone") - calls(&before, "mass_edit_dns_zone"),
        1
    );
    assert_eq!(
        calls(&after, "parse_dns_zone") - calls(&before, "parse_dns_zone"),
        1
    );
    for (name, rtype, value) in [
        (zone.to_owned(), "A", "203.0.113.9"),
        (format!("www.{zone}"), "A", "203.0.113.9"),
        (format!("mail.{zone}"), "A", "203.0.113.9"),
        (zone.to_owned(), "TXT", "v=spf1 a mx -all"),
        (format!("_dmarc.{zone}"), "TXT", "v=DMARC1; p=none"),
    ] {
        let found = records_named(&sim, zone, &name, rtype);
        assert_eq!(found.len(), 1, "{name} {rtype}: {found:?}");
        assert_eq!(found[0]["value"], value);
    }
    // Nothing left to change: no edit at all.
    driver
        .upsert_dns_records(&spec.username, zone, &records)
        .await
        .unwrap();
    let again = sim.state_json()["callCounts"].clone();
    assert_eq!(
        calls(&again, "mass_edit_dns_zone"),
        calls(&after, "mass_edit_dns_zone")
    );
}

/// A WHM stand-in whose `parse_dns_zone` shows a zone without its SOA line; it records the
/// functions called.
async fn whm_without_soa() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            seen.lock().unwrap().push(path.clone());
            use base64::Engine as _;
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let body = if path.contains("parse_dns_zone") {
                serde_json::json!({
                    "data": {"payload": [
                        {"type": "record", "line_index": 1, "record_type": "A", "ttl": 14400,
                         "dname_b64": b64("broken.example."), "data_b64": [b64("192.0.2.10")]}
                    ]},
                    "metadata": {"command": "parse_dns_zone", "reason": "OK", "result": 1, "version": 1}
                })
            } else {
                serde_json::json!({
                    "metadata": {"command": "x", "reason": "OK", "result": 1, "version": 1}
                })
            }
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, calls)
}

#[tokio::test]
async fn a_zone_without_an_soa_serial_fails_clearly_and_is_not_edited() {
    let (url, calls) = whm_without_soa().await;
    let config = PanelConfig::new(KIND, &url, "root", Secret::new(TOKEN), true);
    let driver = build_driver_with(config).unwrap();
    let record = DnsRecord {
        name: "www".into(),
        record_type: RecordType::A,
        value: "203.0.113.9".into(),
        ttl: 300,
        priority: None,
    };
    let err = driver
        .upsert_dns_record("broken", "broken.example", &record)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(err.to_string().contains("SOA"), "{err}");
    let key = DnsRecordKey {
        name: "@".into(),
        record_type: RecordType::A,
        value: None,
    };
    let err = driver
        .delete_dns_record("broken", "broken.example", &key)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SOA"), "{err}");
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.iter().any(|c| c.contains("parse_dns_zone")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("mass_edit_dns_zone")),
        "no edit may be sent without the serial: {calls:?}"
    );
}

#[tokio::test]
async fn lookups_never_take_the_panels_own_account_for_ours() {
    lookups_never_take_the_resident_account_for_ours(KIND).await;
}
