//! The certificate jobs' bookkeeping on both backends: expiry reminders go out once per
//! certificate however often `ssl-renewal-reminders` runs, and a failed renewal backs off
//! without holding up the others. Renewal through a real agent and pebble is in `ssl_acme.rs`.

mod backends;
mod fleet_support;
mod real_servers;

use std::collections::HashMap;
use std::sync::Arc;

use mpanel_common::ids::ServiceId;
use mpanel_controller::config::{Config, EncryptionKeys};
use mpanel_controller::crypto::Cipher;
use mpanel_controller::fleet::Fleet;
use mpanel_controller::jobs::Dispatcher;
use mpanel_controller::ssl::{ReminderSummary, SslRenewals};
use mpanel_controller::store::{DynStore, IssuedSslCertificate, SslCertificate};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;
/// 2027-01-01T00:00:00Z.
const NOW: i64 = 1_798_761_600_000;

async fn jobs(store: &DynStore) -> SslRenewals {
    let config = Config::from_sources(&HashMap::new(), &HashMap::new(), None).unwrap();
    let cipher = Arc::new(Cipher::new(&EncryptionKeys {
        current: [7; 32],
        previous: vec![],
    }));
    let fleet = Fleet::start(store.clone(), &cipher, &config, CancellationToken::new())
        .await
        .unwrap();
    SslRenewals::new(
        store.clone(),
        fleet,
        cipher,
        Arc::new(config),
        Dispatcher::new(),
    )
}

/// An ordered service for `domain` with an issued ACME certificate valid until `not_after`.
async fn certificate(store: &DynStore, domain: &str, not_after: i64) -> SslCertificate {
    let task = real_servers::order(store, domain, 0).await;
    issue(store, task.service_id, domain, "01", not_after).await
}

async fn issue(
    store: &DynStore,
    service_id: ServiceId,
    domain: &str,
    serial: &str,
    not_after: i64,
) -> SslCertificate {
    let not_before = not_after - 90 * DAY;
    store
        .record_certificate_issued(&IssuedSslCertificate {
            service_id,
            domain: domain.into(),
            provider: "acme".into(),
            issuer: "CN=Pebble Intermediate CA".into(),
            serial: serial.into(),
            not_before,
            not_after,
            renew_after: not_before + 60 * DAY,
        })
        .await
        .unwrap()
}

/// Claims every message in the outbox: (recipient, template, dedupe key).
async fn outbox(store: &DynStore) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    while let Some(m) = store.claim_next_email("test", 60_000).await.unwrap() {
        all.push((m.to_address, m.template, m.dedupe_key));
    }
    all.sort();
    all
}

async fn an_expiring_certificate_not_renewed_automatically_is_reminded_once(store: DynStore) {
    let ssl = jobs(&store).await;
    // Renewal off, expiring in 10 days: reminded.
    let off = certificate(&store, "off.example", NOW + 10 * DAY).await;
    assert!(
        store
            .set_certificate_auto_renew(off.service_id, "off.example", false)
            .await
            .unwrap()
    );
    // Renewed automatically but the latest renewal failed, expiring in 20 days: reminded.
    let failing = certificate(&store, "failing.example", NOW + 20 * DAY).await;
    store
        .record_certificate_renewal_failed(failing.id, "waiting for DNS", NOW + 3_600_000)
        .await
        .unwrap();
    // Renewed automatically and not failing: the renewal job handles it, no email.
    certificate(&store, "fine.example", NOW + 10 * DAY).await;
    // Renewal off but 60 days left: not yet.
    let later = certificate(&store, "later.example", NOW + 60 * DAY).await;
    store
        .set_certificate_auto_renew(later.service_id, "later.example", false)
        .await
        .unwrap();
    // Renewal off and already expired: nothing to warn about ahead of time.
    let gone = certificate(&store, "gone.example", NOW - DAY).await;
    store
        .set_certificate_auto_renew(gone.service_id, "gone.example", false)
        .await
        .unwrap();

    let first = ssl.remind_expiring(NOW).await.unwrap();
    assert_eq!(
        first,
        ReminderSummary {
            reminded: 2,
            skipped: 0
        }
    );
    // However often it runs (the same slot again, manual runs, the next days), nothing more.
    for at in [NOW, NOW + 1, NOW + DAY, NOW + 5 * DAY] {
        assert_eq!(
            ssl.remind_expiring(at).await.unwrap(),
            ReminderSummary::default(),
            "run at {at}"
        );
    }
    let sent = outbox(&store).await;
    let to: Vec<(&str, &str)> = sent
        .iter()
        .map(|(to, template, _)| (to.as_str(), template.as_str()))
        .collect();
    assert_eq!(
        to,
        vec![
            ("owner@failing.example", "ssl_expiring"),
            ("owner@off.example", "ssl_expiring"),
        ]
    );
    let off_now = store
        .get_certificate(off.service_id, "off.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(off_now.reminder_sent_for, Some(NOW + 10 * DAY));
    assert_eq!(off_now.reminder_sent_at, Some(NOW));

    // The certificate is replaced (renewed by hand, say): the new one is its own certificate,
    // reminded about when its own expiry comes near, once.
    issue(&store, off.service_id, "off.example", "02", NOW + 40 * DAY).await;
    assert_eq!(
        ssl.remind_expiring(NOW + 5 * DAY).await.unwrap(),
        ReminderSummary::default(),
        "35 days left"
    );
    for _ in 0..3 {
        ssl.remind_expiring(NOW + 15 * DAY).await.unwrap();
    }
    let again = outbox(&store).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].0, "owner@off.example");
    assert_ne!(
        again[0].2, sent[1].2,
        "a new dedupe key for the new certificate"
    );
}

async fn a_failed_renewal_backs_off_and_a_new_certificate_clears_it(store: DynStore) {
    let a = certificate(&store, "a.example", NOW + 10 * DAY).await;
    let b = certificate(&store, "b.example", NOW + 11 * DAY).await;
    // Both past renew_after (two thirds of 90 days).
    let due = store.due_renewals(NOW, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );

    let failed = store
        .record_certificate_renewal_failed(a.id, "agent offline", NOW + 3_600_000)
        .await
        .unwrap();
    assert_eq!(failed.renewal_attempts, 1);
    assert_eq!(failed.last_error.as_deref(), Some("agent offline"));
    assert_eq!(failed.next_renewal_at, Some(NOW + 3_600_000));
    assert_eq!(failed.serial, a.serial, "the installed certificate stays");
    // Backing off: only b is due until the next attempt time.
    let due = store.due_renewals(NOW + 1, 10).await.unwrap();
    assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), vec![b.id]);
    let due = store.due_renewals(NOW + 3_600_000, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let twice = store
        .record_certificate_renewal_failed(a.id, "still offline", NOW + 5 * 3_600_000)
        .await
        .unwrap();
    assert_eq!(twice.renewal_attempts, 2);

    // Renewed: attempts, error and backoff are gone; due again at the new renew_after.
    let renewed = issue(&store, a.service_id, "a.example", "02", NOW + 90 * DAY).await;
    assert_eq!(renewed.id, a.id);
    assert_eq!(renewed.renewal_attempts, 0);
    assert_eq!(renewed.last_error, None);
    assert_eq!(renewed.next_renewal_at, None);
    assert_eq!(renewed.serial.as_deref(), Some("02"));

    // Renewal switched off: never due.
    store
        .set_certificate_auto_renew(b.service_id, "b.example", false)
        .await
        .unwrap();
    assert!(store.due_renewals(NOW, 10).await.unwrap().is_empty());
    // Stopped (service gone): never due either, and says why.
    store
        .set_certificate_auto_renew(b.service_id, "b.example", true)
        .await
        .unwrap();
    store
        .stop_certificate_renewal(b.id, "not renewed: the service is terminated")
        .await
        .unwrap();
    assert!(store.due_renewals(NOW, 10).await.unwrap().is_empty());
    let b = store
        .get_certificate(b.service_id, "b.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.renew_after, None);
    assert!(b.last_error.unwrap().contains("terminated"));
}

on_both_backends!(
    an_expiring_certificate_not_renewed_automatically_is_reminded_once,
    a_failed_renewal_backs_off_and_a_new_certificate_clears_it,
);
