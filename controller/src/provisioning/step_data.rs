//! The `data` each step records in its task, built from the agent's typed replies. The keys and
//! JSON types are the contract's (CONTRACT.md, "Step names"): account `{"username"}`, dns
//! `{"zone_id","records"}` with `records` a number, ssl `{"provider"}`, email
//! `{"default_email"}`, database `{"databases_created"}` a number; more under other names; never
//! a secret.

use mpanel_common::command::{
    AccountCreated, CertificateDone, DatabaseCreated, DnsEnsured, DnsRecordSummary, MailboxCreated,
    Reply,
};
use serde_json::{Value, json};

use crate::store::{Server, SslCertificate};

pub fn account(reply: &AccountCreated, server: &Server) -> Value {
    json!({
        "username": reply.username,
        "server": server.hostname,
        "serverId": server.id.get(),
        "created": reply.created,
    })
}

/// The DNS step on every provider: the number of records, and the records themselves.
pub fn dns(zone_id: &str, records: &[DnsRecordSummary], provider: &str) -> Value {
    json!({
        "zone_id": zone_id,
        "records": records.len(),
        "record_list": records
            .iter()
            .map(|r| json!({ "type": r.record_type, "name": r.name, "value": r.value }))
            .collect::<Vec<_>>(),
        "provider": provider,
    })
}

/// The DNS step done by the panel through the agent.
pub fn panel_dns(reply: &DnsEnsured) -> Value {
    dns(&reply.zone_id, &reply.records, "panel")
}

/// `fallback` says why the panel's AutoSSL was used where ACME was asked for.
pub fn ssl(done: &CertificateDone, fallback: Option<&str>) -> Value {
    let mut data = match done {
        CertificateDone::AutoSslRequested => json!({
            "provider": done.provider(),
            "status": done.status(),
        }),
        CertificateDone::AcmeIssued(cert) => json!({
            "provider": done.provider(),
            "status": done.status(),
            "issuer": cert.issuer,
            "serial": cert.serial,
            "expires_at": cert.not_after_ms,
            "names": cert.names,
        }),
    };
    if let Some(why) = fallback {
        data["fallback"] = json!(why);
    }
    data
}

/// A certificate an earlier attempt issued and recorded, kept instead of ordering another.
pub fn reused_ssl(cert: &SslCertificate) -> Value {
    json!({
        "provider": cert.provider,
        "status": cert.status,
        "issuer": cert.issuer,
        "serial": cert.serial,
        "expires_at": cert.not_after,
        "reused": true,
    })
}

pub fn email(reply: &MailboxCreated) -> Value {
    json!({ "default_email": reply.address, "quota_mb": reply.quota_mb })
}

/// `database_names[0]`, `database_user` and `host` are what the welcome email shows.
pub fn database(reply: &DatabaseCreated) -> Value {
    json!({
        "databases_created": reply.databases.len(),
        "database_names": reply.databases,
        "database_user": reply.user,
        "host": reply.host,
    })
}

/// A product without databases.
pub fn no_database() -> Value {
    json!({ "databases_created": 0, "database_names": [] })
}

/// The step of a lifecycle task (suspend, unsuspend, terminate, change package or password).
pub fn lifecycle(reply: &Reply) -> Value {
    match reply {
        Reply::Suspended(r) => json!({ "username": r.username, "suspended": true }),
        Reply::Unsuspended(r) => json!({ "username": r.username, "suspended": false }),
        Reply::Terminated(r) => json!({ "username": r.username, "terminated": true }),
        Reply::PackageChanged(r) => json!({ "username": r.username, "package": r.package }),
        Reply::PasswordChanged(r) => json!({ "username": r.username, "passwordChanged": true }),
        Reply::BackupRestored(r) => json!({ "username": r.username, "restored": true }),
        other => json!({ "reply": other.command_name() }),
    }
}

#[cfg(test)]
mod tests {
    use mpanel_common::command::{AccountSuspended, IssuedCertificate};

    use super::*;

    #[test]
    fn counts_are_numbers_and_lists_go_under_other_names() {
        let dns = panel_dns(&DnsEnsured {
            zone_id: "shop.example".into(),
            records: vec![
                DnsRecordSummary {
                    record_type: "A".into(),
                    name: "@".into(),
                    value: "192.0.2.1".into(),
                },
                DnsRecordSummary {
                    record_type: "MX".into(),
                    name: "@".into(),
                    value: "mail.shop.example".into(),
                },
            ],
        });
        assert_eq!(dns["zone_id"], "shop.example");
        assert_eq!(dns["records"], 2);
        assert_eq!(dns["record_list"][1]["type"], "MX");

        let db = database(&DatabaseCreated {
            databases: vec!["shop_main".into()],
            user: "shop_main".into(),
            host: "localhost".into(),
        });
        assert_eq!(db["databases_created"], 1);
        assert_eq!(db["database_names"][0], "shop_main");
        assert_eq!(no_database()["databases_created"], 0);

        let mail = email(&MailboxCreated {
            address: "admin@shop.example".into(),
            quota_mb: Some(250),
        });
        assert_eq!(mail["default_email"], "admin@shop.example");
        assert_eq!(mail["quota_mb"], 250);
    }

    #[test]
    fn ssl_names_its_provider_and_why_it_fell_back() {
        let auto = ssl(&CertificateDone::AutoSslRequested, Some("no [acme]"));
        assert_eq!(auto["provider"], "autossl");
        assert_eq!(auto["status"], "requested");
        assert_eq!(auto["fallback"], "no [acme]");
        let acme = ssl(
            &CertificateDone::AcmeIssued(IssuedCertificate {
                issuer: "CN=Pebble".into(),
                serial: "0a".into(),
                not_before_ms: 1,
                not_after_ms: 2,
                names: vec!["shop.example".into()],
            }),
            None,
        );
        assert_eq!(acme["provider"], "acme");
        assert_eq!(acme["expires_at"], 2);
        assert!(acme.get("fallback").is_none());
    }

    #[test]
    fn lifecycle_steps_say_what_changed() {
        let data = lifecycle(&Reply::Suspended(AccountSuspended {
            username: "shop".into(),
        }));
        assert_eq!(data, json!({ "username": "shop", "suspended": true }));
    }
}
