//! Contract tests of the Plesk driver against the Plesk simulator: REST v2 (201 for clients and
//! domains, 200 for databases and users, `{code,message}` errors), the CLI gateway (failures as
//! a non-zero `code` inside HTTP 200) and the XML API (`status=error` + `errcode`).

#[path = "panel_support.rs"]
mod support;

use std::path::PathBuf;

use mpanel_agent::panel::plesk::PleskDriver;
use mpanel_agent::panel::{
    AccountCreation, ControlPanel, ErrorClass, PanelConfig, PanelEndpoint, PanelKind, Secret,
};
use mpanel_panelsim::{FaultKind, ScriptedFault};
use support::*;

const KIND: PanelKind = PanelKind::Plesk;

#[tokio::test]
async fn ensure_account_creates_a_customer_and_its_subscription() {
    ensure_account_creates_one_owned_account(KIND).await;
}

#[tokio::test]
async fn customer_carries_the_service_marker_in_external_id() {
    let (sim, driver) = setup(KIND).await;
    let spec = spec(KIND, 77, "marker77", "marker77.example");
    let info = driver.ensure_account(&spec).await.unwrap();
    assert_eq!(info.owner_marker.as_deref(), Some("mpanel-service-77"));
    let domains = domains_of(&sim, "marker77");
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0]["owner"], "marker77");
    assert_eq!(domains[0]["plan"], "Unlimited");
}

#[tokio::test]
async fn retried_ensure_account_returns_the_same_account() {
    retried_ensure_account_returns_the_same_single_account(KIND).await;
}

#[tokio::test]
async fn concurrent_ensure_account_makes_one_customer_and_one_subscription() {
    concurrent_ensure_account_for_one_service_makes_one_account(KIND).await;
}

/// The simulator matches faults on path and query only, and `GET /clients` (the lookup) shares
/// its path with `POST /clients` (the create), so the trap is sprung on a bare create and the
/// retry that follows, which is what a crashed or timed-out provisioning step does.
#[tokio::test]
async fn client_create_failing_after_creating_is_adopted_by_the_retry() {
    let sim = sim(KIND).await;
    let mut config = PanelConfig::new(KIND, &sim.base_url(), "admin", Secret::new(TOKEN), true);
    config.timeout = std::time::Duration::from_secs(2);
    let driver = PleskDriver::new(PanelEndpoint::new(&config).unwrap(), PathBuf::from("/"));
    let spec = spec(KIND, 14, "oscar14", "oscar14.example");
    sim.script(ScriptedFault::on(
        FaultKind::PartialSuccess,
        "/api/v2/clients",
        1,
    ));
    let err = driver.create_account_once(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    assert_eq!(count_accounts(&sim, "oscar14"), 1);

    let info = driver
        .ensure_account(&spec)
        .await
        .expect("the retry adopts the customer");
    assert_eq!(info.domain.as_deref(), Some("oscar14.example"));
    assert_accounts(&sim, &["oscar14"]);
    assert_eq!(domains_of(&sim, "oscar14").len(), 1);
}

#[tokio::test]
async fn client_create_already_exists_without_a_client_is_a_conflict() {
    let sim = sim(KIND).await;
    let config = PanelConfig::new(KIND, &sim.base_url(), "admin", Secret::new(TOKEN), true);
    let driver = PleskDriver::new(PanelEndpoint::new(&config).unwrap(), PathBuf::from("/"));
    sim.script(ScriptedFault::on(
        FaultKind::AlreadyExists,
        "/api/v2/clients",
        1,
    ));
    let spec = spec(KIND, 15, "peggy15", "peggy15.example");
    let err = driver.create_account_once(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    assert_accounts(&sim, &[]);
}

#[tokio::test]
async fn customer_without_our_external_id_is_a_conflict() {
    account_of_another_service_is_a_conflict(KIND).await;
}

#[tokio::test]
async fn customer_with_our_domain_but_no_marker_is_a_conflict() {
    same_domain_but_other_contact_email_is_a_conflict(KIND).await;
}

#[tokio::test]
async fn subscription_domain_owned_by_another_customer_is_a_conflict() {
    let (sim, driver) = setup(KIND).await;
    seed_foreign_account(&sim, "other16", "taken16.example", "x@other.example").await;
    let spec = spec(KIND, 16, "quinn16", "taken16.example");
    let err = driver.ensure_account(&spec).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
    let taken: Vec<_> = state_list(&sim, "domains")
        .into_iter()
        .filter(|d| d["name"] == "taken16.example")
        .collect();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0]["owner"], "other16");
    assert!(domains_of(&sim, "quinn16").is_empty());
}

#[tokio::test]
async fn suspend_and_activate_toggle_and_repeat_safely() {
    suspend_and_unsuspend_change_the_state_and_repeat_safely(KIND).await;
}

#[tokio::test]
async fn delete_client_removes_and_repeats_safely() {
    terminate_removes_the_account_and_a_second_terminate_succeeds(KIND).await;
}

#[tokio::test]
async fn cli_switch_subscription_changes_plan_and_unknown_plan_is_permanent() {
    change_package_switches_the_plan_and_rejects_unknown_ones(KIND).await;
}

#[tokio::test]
async fn put_client_sets_the_new_password() {
    change_password_sets_the_new_password(KIND).await;
}

#[tokio::test]
async fn clients_and_service_plans_are_listed() {
    list_accounts_and_packages_report_what_the_panel_has(KIND).await;
}

#[tokio::test]
async fn clients_are_listed_with_their_subscription_domain() {
    let (_sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    let listed = driver.list_accounts().await.unwrap();
    let listed: Vec<_> = listed
        .into_iter()
        .filter(|a| a.username != mpanel_panelsim::RESIDENT_USER)
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].domain.as_deref(), Some(spec.domain.as_str()));
}

#[tokio::test]
async fn client_statistics_give_usage() {
    usage_reports_disk_for_an_account(KIND).await;
}

#[tokio::test]
async fn dns_records_rest_upserts_and_deletes() {
    dns_upserts_converge_and_deletes_are_idempotent(KIND).await;
}

#[tokio::test]
async fn dns_zone_of_an_unknown_domain_is_not_found() {
    let (_sim, driver) = setup(KIND).await;
    let err = driver
        .ensure_dns_zone("nobody", "unknown.example", None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
}

#[tokio::test]
async fn xml_certificate_install_stores_key_certificate_and_ca() {
    certificate_install_stores_key_certificate_and_chain(KIND).await;
}

#[tokio::test]
async fn xml_secret_key_rejection_is_an_auth_error() {
    let (sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    sim.script(ScriptedFault::on(FaultKind::AuthFailure, "agent.php", 1));
    let err = driver
        .install_certificate(&spec.username, &spec.domain, &bundle())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
}

#[tokio::test]
async fn xml_operation_error_is_reported_with_its_code() {
    let (_sim, driver) = setup(KIND).await;
    let err = driver
        .install_certificate("nobody", "unknown.example", &bundle())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.message().contains("1013"), "{err}");
}

#[tokio::test]
async fn letsencrypt_extension_is_started_through_the_cli_gateway() {
    auto_ssl_starts_the_panels_certificate_automation(KIND).await;
}

#[tokio::test]
async fn cli_mail_create_sets_quota_and_a_retry_converges() {
    mailbox_create_sets_quota_and_a_retry_converges(KIND).await;
}

#[tokio::test]
async fn cli_mail_create_error_after_creating_is_a_success() {
    mailbox_create_that_failed_but_happened_is_a_success(KIND, "/cli/mail/call").await;
}

#[tokio::test]
async fn cli_non_zero_exit_code_is_an_error_despite_http_200() {
    let (_sim, driver) = setup(KIND).await;
    let mailbox = mpanel_agent::panel::MailboxSpec {
        local_part: "info".into(),
        domain: "not-hosted.example".into(),
        password: Secret::new("Mail-Pass-123"),
        quota_mb: None,
    };
    let err = driver.create_mailbox("nobody", &mailbox).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(err.message().contains("exit code 1"), "{err}");
    assert!(!err.message().contains("Mail-Pass-123"), "{err}");
}

#[tokio::test]
async fn database_is_created_with_200_and_its_user_gets_full_rights() {
    let info = database_user_and_grant_are_created(KIND).await;
    // Plesk adds no prefix.
    assert_eq!(info.database, "wp");
    assert_eq!(info.user, "wpuser");
}

#[tokio::test]
async fn retried_database_create_converges_on_one_database_and_user() {
    retried_database_create_converges_on_one_database(KIND).await;
}

#[tokio::test]
async fn acme_challenge_is_written_under_www_root() {
    acme_challenge_is_written_into_the_web_root_and_served(KIND).await;
}

#[tokio::test]
async fn http_401_is_an_auth_error() {
    wrong_token_is_an_auth_error_without_the_token_in_it(KIND).await;
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
async fn bad_plan_errors_never_show_the_password() {
    errors_never_carry_the_account_password(KIND).await;
}

#[tokio::test]
async fn a_cname_and_an_address_at_one_name_replace_each_other_in_the_zone() {
    a_cname_and_an_address_at_one_name_replace_each_other(KIND).await;
}

#[tokio::test]
async fn lookups_never_take_the_panels_own_account_for_ours() {
    lookups_never_take_the_resident_account_for_ours(KIND).await;
}
