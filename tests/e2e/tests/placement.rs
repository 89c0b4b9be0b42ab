//! Placement under contention: orders whose domains give the same panel username, placed by
//! several workers at once across two servers, each end active on one server with a username of
//! its own there, and each panel holds exactly those accounts.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mpanel_e2e::cluster::TestDir;
use mpanel_e2e::databases::TestDatabase;
use support::*;

/// Every one of these gives the cPanel username `shopfron` on its first attempt.
const DOMAINS: [&str; 8] = [
    "shopfront.com",
    "shopfront.net",
    "shopfront.org",
    "shopfront.io",
    "shopfront.biz",
    "shopfront.info",
    "shopfront.eu",
    "shopfront.co",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_whose_usernames_collide_each_get_their_own_on_their_server() {
    let start = Instant::now();
    let dir = TestDir::create("username-collisions");
    let db = TestDatabase::create().await;
    let controller = controller_on(&dir, &db).await;
    let fleet = servers(&dir, &[&controller], &[("cpanel", &[]), ("cpanel", &[])]).await;
    let orders = Orders::open(&db).await;
    orders.place_domains(&DOMAINS).await;
    orders
        .wait_all_finished(&dir, Duration::from_secs(60))
        .await;
    eprintln!("all finished after {:.1}s", secs(start));
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, DOMAINS.len()).await;
    let services = orders.services().await;
    let placed: HashSet<(i64, String)> = services
        .iter()
        .map(|s| (s.server_id.unwrap(), s.username.clone().unwrap()))
        .collect();
    assert_eq!(
        placed.len(),
        DOMAINS.len(),
        "one username per service and server: {services:?}"
    );
    // Two servers hold the first-attempt name at most once each: the rest took a later one.
    let first = services
        .iter()
        .filter(|s| s.username.as_deref() == Some("shopfron"))
        .count();
    assert!(first <= fleet.len(), "{services:?}");
    assert!(
        services.iter().all(|s| s
            .username
            .as_deref()
            .is_some_and(|u| u.starts_with("shopf"))),
        "{services:?}"
    );
    drop(fleet);
    drop(controller);
    db.drop_database().await;
}
