//! The fleet's storage (CA, enrollment tokens, agent certificates, liveness) behaves the same on
//! PostgreSQL and SQLite.

mod backends;

use mpanel_common::ids::ServerId;
use mpanel_common::username::PanelKind;
use mpanel_controller::store::{
    AgentHello, AgentLiveness, DynStore, IssuedCertificate, NewCa, NewServer, StoreError, now_ms,
};

on_both_backends!(
    fleet_store_first_ca_wins_and_stays_active,
    fleet_store_enrollment_spends_the_token_once_and_supersedes_old_certificates,
    fleet_store_revocation_and_liveness_round_trip,
);

async fn server(store: &DynStore, hostname: &str) -> ServerId {
    store
        .create_server(
            &NewServer {
                hostname: hostname.to_owned(),
                ip_address: "192.0.2.10".to_owned(),
                control_panel: PanelKind::Cpanel,
                control_panel_url: "https://127.0.0.1:2087".to_owned(),
                max_accounts: 500,
                location: String::new(),
                server_group: "default".to_owned(),
                nameserver1: String::new(),
                nameserver2: String::new(),
                dns_provider: mpanel_common::status::DnsProvider::Panel,
                ssl_provider: mpanel_common::status::SslProvider::Acme,
            },
            "test",
        )
        .await
        .unwrap()
        .id
}

fn cert(server_id: ServerId, serial: &str) -> IssuedCertificate {
    IssuedCertificate {
        server_id,
        serial: serial.to_owned(),
        not_before: now_ms(),
        not_after: now_ms() + 3_600_000,
    }
}

async fn fleet_store_first_ca_wins_and_stays_active(store: DynStore) {
    assert!(
        store
            .active_certificate_authority()
            .await
            .unwrap()
            .is_none()
    );
    let new = |fp: &str| NewCa {
        cert_pem: "PEM".into(),
        key_encrypted: "sealed".into(),
        fingerprint: fp.into(),
        not_after: 1,
    };
    let first = store
        .insert_certificate_authority(&new("aa"))
        .await
        .unwrap();
    let second = store
        .insert_certificate_authority(&new("bb"))
        .await
        .unwrap();
    assert_eq!(first.fingerprint, "aa");
    assert_eq!(
        second.fingerprint, "aa",
        "the oldest CA stays the active one"
    );
    assert_eq!(
        store
            .active_certificate_authority()
            .await
            .unwrap()
            .unwrap()
            .id,
        first.id
    );
}

async fn fleet_store_enrollment_spends_the_token_once_and_supersedes_old_certificates(
    store: DynStore,
) {
    let id = server(&store, "web1.example.net").await;
    store
        .create_enrollment_token(id, "hash1", now_ms() + 60_000, "admin:1")
        .await
        .unwrap();
    let token = store.find_enrollment_token("hash1").await.unwrap().unwrap();
    assert_eq!(token.server_id, id);
    assert!(token.used_at.is_none());
    let superseded = store
        .complete_enrollment(token.id, &cert(id, "01"), "0.1.0")
        .await
        .unwrap();
    assert!(superseded.is_empty());
    let again = store
        .complete_enrollment(token.id, &cert(id, "02"), "0.1.0")
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(
        store
            .find_enrollment_token("hash1")
            .await
            .unwrap()
            .unwrap()
            .used_at
            .is_some()
    );

    // An expired token cannot be spent.
    store
        .create_enrollment_token(id, "hash2", now_ms() - 1, "admin:1")
        .await
        .unwrap();
    let expired = store.find_enrollment_token("hash2").await.unwrap().unwrap();
    assert!(matches!(
        store
            .complete_enrollment(expired.id, &cert(id, "03"), "0.1.0")
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Re-enrolling revokes the previous certificate.
    store
        .create_enrollment_token(id, "hash3", now_ms() + 60_000, "admin:1")
        .await
        .unwrap();
    let t3 = store.find_enrollment_token("hash3").await.unwrap().unwrap();
    let superseded = store
        .complete_enrollment(t3.id, &cert(id, "04"), "0.1.1")
        .await
        .unwrap();
    assert_eq!(superseded, vec!["01".to_owned()]);
    assert_eq!(
        store.revoked_certificate_serials().await.unwrap(),
        vec!["01".to_owned()]
    );
    let agents = store.list_agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].cert_serial.as_deref(), Some("04"));
    assert_eq!(agents[0].status, "pending");
}

async fn fleet_store_revocation_and_liveness_round_trip(store: DynStore) {
    let id = server(&store, "web2.example.net").await;
    store
        .create_enrollment_token(id, "h", now_ms() + 60_000, "admin:1")
        .await
        .unwrap();
    let t = store.find_enrollment_token("h").await.unwrap().unwrap();
    store
        .complete_enrollment(t.id, &cert(id, "0a"), "0.1.0")
        .await
        .unwrap();
    store
        .record_renewed_certificate(&cert(id, "0b"))
        .await
        .unwrap();
    let hello = AgentHello {
        agent_version: "0.1.0".into(),
        panel_kind: "cpanel".into(),
        capabilities: vec!["ping".into()],
    };
    // One batch: the enrolled agent is known, an unknown server is not, and the unknown row
    // does not undo the known one.
    assert_eq!(
        store
            .record_agent_hellos(&[(id, hello.clone()), (ServerId::new(9_999), hello.clone())])
            .await
            .unwrap(),
        vec![true, false]
    );
    assert_eq!(store.list_agents().await.unwrap()[0].panel_kind, "cpanel");
    store
        .save_agent_liveness(&[AgentLiveness {
            server_id: id,
            status: "online".into(),
            last_heartbeat_at: Some(42),
            last_load: Some(serde_json::json!({"load1": 0.5})),
        }])
        .await
        .unwrap();
    let a = &store.list_agents().await.unwrap()[0];
    assert_eq!(
        (a.status.as_str(), a.last_heartbeat_at),
        ("online", Some(42))
    );
    assert_eq!(a.last_load.as_ref().unwrap().0["load1"], 0.5);
    assert_eq!(a.capabilities.0, vec!["ping".to_owned()]);
    assert_eq!(a.cert_serial.as_deref(), Some("0b"));

    let mut revoked = store
        .revoke_agent_certificates(id, "admin:1")
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, vec!["0a".to_owned(), "0b".to_owned()]);
    // A revoked agent stays revoked whatever liveness or Hello say afterwards.
    store
        .save_agent_liveness(&[AgentLiveness {
            server_id: id,
            status: "online".into(),
            last_heartbeat_at: Some(43),
            last_load: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        store.record_agent_hellos(&[(id, hello)]).await.unwrap(),
        vec![false]
    );
    assert_eq!(store.list_agents().await.unwrap()[0].status, "revoked");
    assert!(matches!(
        store
            .revoke_agent_certificates(ServerId::new(9_999), "admin:1")
            .await,
        Err(StoreError::NotFound { .. })
    ));
}
