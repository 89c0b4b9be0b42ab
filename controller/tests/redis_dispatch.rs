//! Wake-ups shared through Redis: a row queued on one replica wakes the workers of that queue on
//! another, and only them.

use std::time::Duration;

use mpanel_controller::jobs::Dispatcher;
use mpanel_controller::store::lease_queue::{EMAIL, PROVISIONING};
use tokio_util::sync::CancellationToken;

fn redis_url() -> String {
    std::env::vars()
        .find(|(k, _)| k == "MPANEL_TEST_REDIS_URL")
        .map_or_else(|| "redis://127.0.0.1:6379".to_owned(), |(_, v)| v)
}

async fn require_redis(url: &str) {
    let client = redis::Client::open(url).unwrap();
    if let Err(e) = client.get_multiplexed_async_connection().await {
        panic!(
            "Redis is required for this test and is not reachable at {url}: {e}. Run scripts/test, which starts it."
        );
    }
}

#[tokio::test]
async fn a_wake_up_on_one_replica_reaches_the_workers_of_another() {
    let url = redis_url();
    require_redis(&url).await;
    let shutdown = CancellationToken::new();
    let prefix = format!("mpanel-test-{}", uuid::Uuid::new_v4().simple());
    let a = Dispatcher::with_redis(&url, &prefix, &shutdown).unwrap();
    let b = Dispatcher::with_redis(&url, &prefix, &shutdown).unwrap();
    let other = Dispatcher::with_redis(&url, "another-installation", &shutdown).unwrap();
    // Subscriptions are made in the background; keep waking until B hears it.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            a.wake();
            if tokio::time::timeout(Duration::from_millis(200), b.woken(&PROVISIONING))
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "B never heard A's wake-up");
    // Drain the stored permit, then check that another prefix stays silent.
    let _ = tokio::time::timeout(Duration::from_millis(100), other.woken(&PROVISIONING)).await;
    a.wake();
    let leaked = tokio::time::timeout(Duration::from_millis(500), other.woken(&PROVISIONING)).await;
    assert!(
        leaked.is_err(),
        "a different REDIS_PREFIX must not be woken"
    );
    // A wake-up names its queue: the email sender on B hears an email wake-up from A, the
    // provisioning workers on B do not.
    let _ = tokio::time::timeout(Duration::from_millis(300), b.woken(&PROVISIONING)).await;
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            a.wake_queue(&EMAIL);
            if tokio::time::timeout(Duration::from_millis(200), b.woken(&EMAIL))
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "B never heard A's email wake-up");
    let crossed = tokio::time::timeout(Duration::from_millis(300), b.woken(&PROVISIONING)).await;
    assert!(
        crossed.is_err(),
        "an email wake-up must not wake the provisioning workers"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn an_unreachable_redis_still_wakes_local_workers() {
    let shutdown = CancellationToken::new();
    let d = Dispatcher::with_redis("redis://127.0.0.1:1", "mpanel-test", &shutdown).unwrap();
    d.wake();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), d.woken(&PROVISIONING))
            .await
            .is_ok()
    );
    shutdown.cancel();
}
