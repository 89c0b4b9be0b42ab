//! Contract tests of the DirectAdmin driver against the DirectAdmin simulator: legacy
//! `CMD_API_*` with `json=yes` and the url-encoded fallback, `admin|user` impersonation, the
//! automatic `<user>_` database prefix, and both bad-login answers (HTML login page, 401 JSON).

#[path = "panel_support.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use mpanel_agent::panel::directadmin::DirectAdminDriver;
use mpanel_agent::panel::{
    Amount, ControlPanel, ErrorClass, MB, PanelConfig, PanelEndpoint, PanelKind, Secret,
};
use support::*;

const KIND: PanelKind = PanelKind::Directadmin;

#[tokio::test]
async fn ensure_account_creates_one_user_with_email_and_package() {
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
async fn account_user_error_after_creating_returns_the_account() {
    create_error_hiding_a_success_returns_the_account(KIND, "CMD_API_ACCOUNT_USER").await;
}

#[tokio::test]
async fn account_user_already_exists_without_a_user_is_a_conflict() {
    already_exists_error_without_an_account_is_a_conflict(KIND, "CMD_API_ACCOUNT_USER").await;
}

#[tokio::test]
async fn existing_user_with_another_domain_is_a_conflict() {
    account_of_another_service_is_a_conflict(KIND).await;
}

#[tokio::test]
async fn existing_user_with_our_domain_but_another_email_is_a_conflict() {
    same_domain_but_other_contact_email_is_a_conflict(KIND).await;
}

#[tokio::test]
async fn select_users_suspends_and_unsuspends_and_repeats_safely() {
    suspend_and_unsuspend_change_the_state_and_repeat_safely(KIND).await;
}

#[tokio::test]
async fn select_users_delete_removes_and_repeats_safely() {
    terminate_removes_the_account_and_a_second_terminate_succeeds(KIND).await;
}

#[tokio::test]
async fn modify_user_action_package_changes_plan_and_unknown_package_is_permanent() {
    change_package_switches_the_plan_and_rejects_unknown_ones(KIND).await;
}

#[tokio::test]
async fn user_passwd_sets_the_new_password() {
    change_password_sets_the_new_password(KIND).await;
}

#[tokio::test]
async fn show_all_users_and_packages_are_read() {
    list_accounts_and_packages_report_what_the_panel_has(KIND).await;
}

#[tokio::test]
async fn show_user_usage_and_config_give_usage() {
    usage_reports_disk_for_an_account(KIND).await;
}

#[tokio::test]
async fn string_limits_unlimited_and_megabytes_are_parsed() {
    let (_sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    let usage = driver.usage(&spec.username).await.unwrap();
    assert_eq!(usage.disk_limit, Some(Amount::Unlimited));
    driver
        .change_package(&spec.username, "starter")
        .await
        .unwrap();
    let usage = driver.usage(&spec.username).await.unwrap();
    assert_eq!(usage.disk_limit, Some(Amount::Value(1024 * MB)));
    assert_eq!(usage.inodes_used, Some(0));
}

#[tokio::test]
async fn dns_control_upserts_and_deletes() {
    dns_upserts_converge_and_deletes_are_idempotent(KIND).await;
}

#[tokio::test]
async fn ssl_paste_and_cacert_install_as_the_user() {
    certificate_install_stores_key_certificate_and_chain(KIND).await;
}

#[tokio::test]
async fn letsencrypt_request_is_started_as_the_user() {
    auto_ssl_starts_the_panels_certificate_automation(KIND).await;
}

#[tokio::test]
async fn pop_create_as_the_user_sets_quota_and_a_retry_converges() {
    mailbox_create_sets_quota_and_a_retry_converges(KIND).await;
}

#[tokio::test]
async fn pop_create_error_after_creating_is_a_success() {
    mailbox_create_that_failed_but_happened_is_a_success(KIND, "CMD_API_POP").await;
}

#[tokio::test]
async fn databases_get_the_automatic_user_prefix() {
    let info = database_user_and_grant_are_created(KIND).await;
    assert_eq!(info.database, "alice41_wp");
    assert_eq!(info.user, "alice41_wpuser");
}

#[tokio::test]
async fn retried_databases_create_finds_the_prefixed_database() {
    retried_database_create_converges_on_one_database(KIND).await;
}

#[tokio::test]
async fn file_manager_upload_writes_the_acme_challenge_as_the_user() {
    acme_challenge_is_written_into_the_web_root_and_served(KIND).await;
}

#[tokio::test]
async fn html_login_page_and_401_not_logged_in_are_both_auth_errors() {
    wrong_token_is_an_auth_error_without_the_token_in_it(KIND).await;
    // Seed 0: the first json=yes failure is the HTML page, the second the 401 JSON.
    let sim = sim(KIND).await;
    let driver = driver_with_token(KIND, &sim, "wrong-token-5e1d");
    let first = driver.list_accounts().await.unwrap_err();
    let second = driver.list_accounts().await.unwrap_err();
    assert_eq!(first.class(), ErrorClass::Auth);
    assert_eq!(second.class(), ErrorClass::Auth);
    assert!(first.message().contains("login page"), "{first}");
    assert!(second.message().contains("Not logged in"), "{second}");
}

#[tokio::test]
async fn scripted_auth_failure_is_an_auth_error_and_creates_nothing() {
    scripted_auth_failure_is_an_auth_error(KIND).await;
}

#[tokio::test]
async fn http_500_page_is_retryable_not_an_auth_error() {
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
async fn error_one_answers_never_show_the_password() {
    errors_never_carry_the_account_password(KIND).await;
}

#[tokio::test]
async fn url_encoded_answers_are_read_when_json_is_not_used() {
    let sim = sim(KIND).await;
    let mut config = PanelConfig::new(KIND, &sim.base_url(), "admin", Secret::new(TOKEN), true);
    config.timeout = Duration::from_secs(2);
    let driver = DirectAdminDriver::new(PanelEndpoint::new(&config).unwrap(), PathBuf::from("/"))
        .without_json();
    let spec = spec(KIND, 60, "legacy60", "legacy60.example");
    let info = driver.ensure_account(&spec).await.unwrap();
    assert_eq!(info.domain.as_deref(), Some("legacy60.example"));
    assert_eq!(
        info.contact_email.as_deref(),
        Some(spec.contact_email.as_str())
    );
    let mut listed: Vec<String> = driver
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.username)
        .collect();
    listed.sort();
    assert_eq!(listed, [mpanel_panelsim::RESIDENT_USER, "legacy60"]);
    let packages = driver.list_packages().await.unwrap();
    assert!(packages.iter().any(|p| p.name == "starter"));
    driver.suspend_account("legacy60", "x").await.unwrap();
    assert!(
        driver
            .get_account("legacy60")
            .await
            .unwrap()
            .unwrap()
            .suspended
    );
    // error=1&text=…&details=…
    let err = driver.change_package("legacy60", "nope").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.message().contains("Package nope does not exist"),
        "{err}"
    );
    // And the HTML login page without json=yes.
    let mut bad = config.clone();
    bad.token = Secret::new("wrong-token-5e1d");
    let driver = DirectAdminDriver::new(PanelEndpoint::new(&bad).unwrap(), PathBuf::from("/"))
        .without_json();
    let err = driver.list_accounts().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
}

#[tokio::test]
async fn a_cname_and_an_address_at_one_name_replace_each_other_in_the_zone() {
    a_cname_and_an_address_at_one_name_replace_each_other(KIND).await;
}

#[tokio::test]
async fn create_sends_the_servers_ip_or_shared_when_none_is_known() {
    let (sim, driver) = setup(KIND).await;
    let with_ip = spec(KIND, 61, "known61", "known61.example");
    driver.ensure_account(&with_ip).await.unwrap();
    assert_eq!(account(&sim, "known61").unwrap()["ip"], "192.0.2.10");

    let mut without_ip = spec(KIND, 62, "shared62", "shared62.example");
    without_ip.ip = None;
    driver.ensure_account(&without_ip).await.unwrap();
    assert_eq!(account(&sim, "shared62").unwrap()["ip"], "shared");
}

#[tokio::test]
async fn dns_runs_as_the_domains_owner_and_a_refusal_keeps_its_cause() {
    let (sim, driver) = setup(KIND).await;
    let spec = with_account(KIND, &driver).await;
    driver
        .ensure_dns_zone(&spec.username, &spec.domain, None)
        .await
        .unwrap();
    let mut other = support::spec(KIND, 63, "other63", "other63.example");
    other.contact_email = "other@customer.example".into();
    driver.ensure_account(&other).await.unwrap();

    // Another user's login-as reaches the panel, which refuses: that is not a missing zone.
    let err = driver
        .ensure_dns_zone("other63", &spec.domain, None)
        .await
        .unwrap_err();
    assert_ne!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("do not own"), "{err}");
    assert!(!err.to_string().contains("no zone"), "{err}");

    // A login-as for a user the panel does not have is refused at login.
    let err = driver
        .ensure_dns_zone("ghost64", &spec.domain, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(
        sim.state_json()["callCounts"]["CMD_API_DNS_CONTROL"]
            .as_u64()
            .unwrap()
            >= 3
    );
}

#[tokio::test]
async fn lookups_never_take_the_panels_own_account_for_ours() {
    lookups_never_take_the_resident_account_for_ours(KIND).await;
}
