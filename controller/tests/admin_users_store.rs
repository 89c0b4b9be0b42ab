//! Dashboard admins, their sessions and the failed sign-ins the rate limit counts, on both
//! backends: uniqueness whatever the case, which sessions authenticate, the failure window, and
//! the activity row each change writes with it.

mod backends;

use mpanel_controller::store::{
    ActivityEntry, DynStore, LoginFailure, NewAdminSession, StoreError, now_ms,
};

async fn rows(store: &DynStore, kind: &str, id: i64) -> Vec<ActivityEntry> {
    store.list_activity(kind, id).await.unwrap()
}

fn session_for(user_id: i64, token_hash: &str, expires_at: i64) -> NewAdminSession {
    NewAdminSession {
        user_id,
        token_hash: token_hash.to_owned(),
        expires_at,
        user_agent: Some("test-browser/1".into()),
        ip_address: Some("192.0.2.7".into()),
    }
}

async fn admin_emails_are_unique_whatever_their_case(store: DynStore) {
    let user = store
        .create_admin_user("ops@example.com", "$argon2id$fake", "cli")
        .await
        .unwrap();
    let err = store
        .create_admin_user("OPS@Example.com", "$argon2id$other", "cli")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let found = store
        .find_admin_user_by_email("Ops@EXAMPLE.com")
        .await
        .unwrap()
        .expect("found whatever the case");
    assert_eq!(found.id, user.id);
    assert_eq!(store.list_admin_users().await.unwrap().len(), 1);
    let created = rows(&store, "admin_user", user.id).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].action, "admin_user.created");
    let after = created[0].after_state.as_ref().unwrap().0.to_string();
    assert!(after.contains("ops@example.com"), "{after}");
    assert!(
        !after.contains("argon2"),
        "the hash never reaches the log: {after}"
    );
}

async fn sessions_authenticate_until_revoked_expired_or_their_admin_disabled(store: DynStore) {
    let user = store
        .create_admin_user("ops@example.com", "$argon2id$fake", "cli")
        .await
        .unwrap();
    let later = now_ms() + 3_600_000;
    let live = store
        .create_admin_session(
            &session_for(user.id, "h-live", later),
            "email:ops@example.com",
        )
        .await
        .unwrap();
    assert_eq!(live.email, "ops@example.com");
    assert_eq!(live.user_agent.as_deref(), Some("test-browser/1"));
    store
        .create_admin_session(
            &session_for(user.id, "h-expired", now_ms() - 1),
            "email:ops@example.com",
        )
        .await
        .unwrap();
    let revoked = store
        .create_admin_session(
            &session_for(user.id, "h-revoked", later),
            "email:ops@example.com",
        )
        .await
        .unwrap();
    store
        .revoke_admin_session(revoked.id, "admin:1", "admin_session.revoked")
        .await
        .unwrap();
    let again = store
        .revoke_admin_session(revoked.id, "admin:1", "admin_session.revoked")
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::NotFound { .. }), "{again:?}");

    let found = store.authenticate_admin_session("h-live").await.unwrap();
    assert_eq!(found.map(|s| s.id), Some(live.id));
    assert!(
        store
            .authenticate_admin_session("h-expired")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .authenticate_admin_session("h-revoked")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .authenticate_admin_session("h-unknown")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_admin_sessions().await.unwrap().len(), 3);

    let revocation = rows(&store, "admin_session", revoked.id).await;
    let actions: Vec<&str> = revocation.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["admin.signed_in", "admin_session.revoked"]);
    assert_eq!(revocation[1].actor, "admin:1");
    assert!(revocation[1].before_state.as_ref().unwrap().0["revokedAt"].is_null());
    assert!(revocation[1].after_state.as_ref().unwrap().0["revokedAt"].is_string());

    let disabled = store
        .disable_admin_user("OPS@example.com", "cli")
        .await
        .unwrap();
    assert!(disabled.disabled_at.is_some());
    assert!(
        store
            .authenticate_admin_session("h-live")
            .await
            .unwrap()
            .is_none()
    );
    let sessions = store.list_admin_sessions().await.unwrap();
    assert!(
        sessions.iter().all(|s| s.revoked_at.is_some()),
        "disabling revokes every session"
    );
    let err = store
        .disable_admin_user("ops@example.com", "cli")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let user_rows = rows(&store, "admin_user", user.id).await;
    assert_eq!(user_rows.last().unwrap().action, "admin_user.disabled");
}

async fn failed_sign_ins_are_counted_per_key_within_the_window(store: DynStore) {
    let failure = |keys: &[&str], forget_before: i64| LoginFailure {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        user_id: None,
        email: "who@example.com".into(),
        ip_address: "192.0.2.7".into(),
        forget_before,
    };
    let start = now_ms();
    for _ in 0..3 {
        store
            .record_login_failure(&failure(&["email:who@example.com", "ip:192.0.2.7"], 0))
            .await
            .unwrap();
    }
    store
        .record_login_failure(&failure(&["email:other@example.com", "ip:192.0.2.7"], 0))
        .await
        .unwrap();
    let email = store
        .recent_login_failures("email:who@example.com", start - 1, 10)
        .await
        .unwrap();
    assert_eq!(email.len(), 3);
    assert!(
        email.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {email:?}"
    );
    let ip = store
        .recent_login_failures("ip:192.0.2.7", start - 1, 10)
        .await
        .unwrap();
    assert_eq!(ip.len(), 4);
    assert_eq!(
        store
            .recent_login_failures("ip:192.0.2.7", start - 1, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    // Outside the window they no longer count, and the next failure forgets them.
    let future = now_ms() + 1;
    assert!(
        store
            .recent_login_failures("email:who@example.com", future, 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .record_login_failure(&failure(&["email:who@example.com"], future))
        .await
        .unwrap();
    assert_eq!(
        store
            .recent_login_failures("email:who@example.com", 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A sign-in forgets its email's failures, not the address's.
    let user = store
        .create_admin_user("who@example.com", "$argon2id$fake", "cli")
        .await
        .unwrap();
    store
        .create_admin_session(
            &session_for(user.id, "h", now_ms() + 60_000),
            "email:who@example.com",
        )
        .await
        .unwrap();
    assert!(
        store
            .recent_login_failures("email:who@example.com", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .recent_login_failures("ip:192.0.2.7", 0, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    let failed = store
        .search_activity(&mpanel_controller::store::ActivityFilter {
            actor: Some("web".into()),
            page: mpanel_controller::store::Page {
                after_id: None,
                limit: 100,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 5);
    assert!(failed.iter().all(|r| r.action == "admin.sign_in_failed"));
}

on_both_backends!(
    admin_emails_are_unique_whatever_their_case,
    sessions_authenticate_until_revoked_expired_or_their_admin_disabled,
    failed_sign_ins_are_counted_per_key_within_the_window,
);
