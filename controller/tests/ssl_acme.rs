//! The `ssl` provisioning step on a server whose `ssl_provider` is 'acme': the real controller
//! (workers, fleet, SQLite), a real agent session whose ACME issuer talks to pebble (Debian's
//! `pebble` package), the cPanel driver and the simulator answering HTTP-01 from the web root.

mod backends;
mod fleet_support;
mod real_servers;

use std::time::{Duration, Instant};

use mpanel_common::status::{ServiceStatus, TaskStatus};
use mpanel_controller::store::{DynStore, IssuedSslCertificate, SslCertificate, now_ms};
use real_servers::{Rig, acme_rig, finished, set_server, wait_for_task};
use reqwest::Method;
use serde_json::Value;

/// A controller with one cPanel server set to ACME at `ip`, its agent issuing from pebble.
async fn rig(ip: &str) -> Rig {
    acme_rig(ip, &[], |_| {}).await
}

/// An order of `domain` on a product without databases.
async fn order(store: &DynStore, domain: &str) -> mpanel_controller::store::Task {
    real_servers::order(store, domain, 0).await
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

/// Orders `domain` and waits until it is provisioned with an ACME certificate: its row.
async fn provisioned(r: &Rig, domain: &str) -> SslCertificate {
    let task = order(&r.store, domain).await;
    let done = wait_for_task(&r.store, &task, "completion", finished).await;
    assert_eq!(
        done.status,
        TaskStatus::Completed,
        "{:?}\n{}",
        done.error,
        r.pebble.log_tail()
    );
    r.store
        .get_certificate(done.service_id, domain)
        .await
        .unwrap()
        .expect("a certificate row")
}

/// Records `cert` again with its `renew_after` moved into the past: due now.
async fn make_due(store: &DynStore, cert: &SslCertificate) {
    store
        .record_certificate_issued(&IssuedSslCertificate {
            service_id: cert.service_id,
            domain: cert.domain.clone(),
            provider: cert.provider.clone(),
            issuer: cert.issuer.clone().unwrap(),
            serial: cert.serial.clone().unwrap(),
            not_before: cert.not_before.unwrap(),
            not_after: cert.not_after.unwrap(),
            renew_after: now_ms() - 1_000,
        })
        .await
        .unwrap();
}

/// Runs the scheduled job `job` by hand and waits for the run to finish: its row.
async fn run_job(r: &Rig, job: &str) -> Value {
    let (status, body) =
        r.c.request(Method::POST, &format!("/api/cron/jobs/{job}/run"), None)
            .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    let id = body["runId"].clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) =
            r.c.request(
                Method::GET,
                &format!("/api/cron/runs?job={job}&limit=5"),
                None,
            )
            .await;
        let run = body["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|run| run["id"] == id).cloned());
        if let Some(run) = run
            && matches!(run["status"].as_str(), Some("succeeded" | "failed"))
        {
            return run;
        }
        assert!(Instant::now() < deadline, "{job} never finished: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_certificates_are_renewed_by_their_agent_and_a_failing_one_backs_off_alone() {
    let r = rig("127.0.0.1").await;
    let renew = provisioned(&r, "renew.example").await;
    let broken = provisioned(&r, "broken.example").await;
    make_due(&r.store, &renew).await;
    make_due(&r.store, &broken).await;
    // broken.example no longer points at the server: its renewal cannot validate.
    r.pebble
        .add_a("broken.example", &["192.0.2.99"])
        .await
        .unwrap();

    let started = now_ms();
    let run = run_job(&r, "ssl-renewals").await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", r.pebble.log_tail());
    let summary = &run["summary"];
    assert_eq!(summary["due"], 2, "{summary}");
    assert_eq!(summary["renewed"], 1, "{summary}");
    assert_eq!(
        summary["failed"][0]["certificate_id"], broken.id,
        "{summary}"
    );

    // The renewed certificate is a new one from pebble, recorded with its new dates.
    let renewed = r
        .store
        .get_certificate(renew.service_id, "renew.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.id, renew.id);
    assert_eq!(renewed.status, "issued");
    assert_ne!(renewed.serial, renew.serial, "a new serial is recorded");
    assert!(renewed.issuer.as_deref().unwrap().contains("Pebble"));
    assert!(renewed.not_before.unwrap() >= renew.not_before.unwrap());
    assert!(renewed.not_after.unwrap() >= renew.not_after.unwrap());
    let (nb, na) = (renewed.not_before.unwrap(), renewed.not_after.unwrap());
    assert_eq!(renewed.renew_after, Some(nb + (na - nb) / 3 * 2));
    assert!(renewed.renew_after.unwrap() > now_ms());
    assert_eq!(
        (renewed.renewal_attempts, renewed.last_error.as_deref()),
        (0, None)
    );

    // The failing one keeps its certificate, says why, and waits an hour before trying again.
    let failed = r
        .store
        .get_certificate(broken.service_id, "broken.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.serial, broken.serial);
    assert_eq!(failed.renewal_attempts, 1);
    assert!(
        failed.last_error.as_deref().unwrap().contains("192.0.2.99")
            || failed.last_error.as_deref().unwrap().contains("DNS"),
        "{:?}",
        failed.last_error
    );
    let next = failed.next_renewal_at.unwrap();
    assert!(next >= started + 3_600_000 - 1_000, "{next}");
    assert!(next <= now_ms() + 3_600_000, "{next}");

    // A second run finds nothing due: one renewed, the other backing off.
    let again = run_job(&r, "ssl-renewals").await;
    assert_eq!(again["summary"]["due"], 0, "{again}");
    r.agent.stop().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_ssl_step_keeps_a_valid_certificate_instead_of_ordering_one() {
    // The server says it is 192.0.2.10 while every name resolves to 127.0.0.1: the ssl step
    // waits for DNS and is retried.
    let r = rig("192.0.2.10").await;
    let task = order(&r.store, "kept.example").await;
    let waiting = wait_for_task(&r.store, &task, "waiting for DNS", |t| {
        t.wait_reason
            .as_deref()
            .is_some_and(|w| w.contains("waiting for DNS:"))
    })
    .await;
    // Meanwhile a valid certificate for the service and domain is on record (an earlier
    // attempt that issued and installed, say).
    let now = now_ms();
    let day = 86_400_000;
    r.store
        .record_certificate_issued(&IssuedSslCertificate {
            service_id: waiting.service_id,
            domain: "kept.example".into(),
            provider: "acme".into(),
            issuer: "CN=Pebble Intermediate CA earlier".into(),
            serial: "0badc0de".into(),
            not_before: now - day,
            not_after: now + 89 * day,
            renew_after: now + 59 * day,
        })
        .await
        .unwrap();
    set_server(&r.store, r.server_id, "127.0.0.1").await;
    let done = wait_for_task(&r.store, &task, "completion", finished).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let ssl = done
        .result
        .0
        .steps
        .iter()
        .find(|s| s.step == "ssl")
        .expect("an ssl step");
    assert_eq!(ssl.status, "success");
    assert_eq!(ssl.data["reused"], true, "{}", ssl.data);
    assert_eq!(ssl.data["serial"], "0badc0de");
    let cert = r
        .store
        .get_certificate(done.service_id, "kept.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cert.serial.as_deref(),
        Some("0badc0de"),
        "nothing new ordered"
    );
    // Nothing was installed on the panel by this attempt either.
    let state = r.sim.state_json();
    assert!(
        !state["certificates"]
            .as_array()
            .is_some_and(|certs| certs.iter().any(|c| c["domain"] == "kept.example")),
        "{state}"
    );
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
