//! Contract tests of the agent's panel commands: typed commands as the controller sends them,
//! encoded on the wire and run through the same path as the session (`session::run_command`:
//! read and checked by `mpanel_proto::convert`, then the handler stack `mpanel-agent run` builds,
//! `BuiltinHandler` → panel commands → real driver) against an in-process simulator of each
//! panel. Every story runs for cPanel, Plesk and DirectAdmin.

#[path = "panel_support.rs"]
mod support;

use std::str::FromStr as _;
use std::sync::Arc;

use mpanel_agent::handler::{BuiltinHandler, CommandHandler, ErrorClass};
use mpanel_agent::panel::PanelKind;
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_agent::session::run_command;
use mpanel_common::command::{
    AccountCreated, AccountSuspended, AccountTerminated, AccountUnsuspended, Certificate,
    CertificateDone, CertificateProvider, ChangePackage, ChangePassword, Command, CreateAccount,
    CreateDatabase, CreateMailbox, DatabaseCreated, DnsRecordSummary, EnsureDns, Failure,
    MailboxCreated, Outcome, PackageChanged, PasswordChanged, Reply, SuspendAccount,
    TerminateAccount, UnsuspendAccount,
};
use mpanel_common::{DomainName, Secret, ServiceId};
use mpanel_panelsim::{SimConfig, SimHandle};
use mpanel_proto::convert::outcome_from_wire;
use mpanel_proto::v1;
use mpanel_proto::v1::command::Request as WireRequest;
use serde_json::Value;
use support::{
    TOKEN, account, count_accounts, default_package, driver_for, other_package, records_named, sim,
    sim_kind, state_list,
};

const KINDS: [PanelKind; 3] = [PanelKind::Cpanel, PanelKind::Plesk, PanelKind::Directadmin];

const ACCOUNT_PASSWORD: &str = "Acct-Pass-9x7!";
const MAIL_PASSWORD: &str = "Mail-Pass-123!";
const DB_PASSWORD: &str = "Db-Pass-789!";
const NEW_PASSWORD: &str = "N3w-Secret-Pass!";
const SITE_IP: &str = "203.0.113.5";
const NAMESERVERS: [&str; 2] = ["ns1.mpanel-host.example", "ns2.mpanel-host.example"];

/// The handler stack `mpanel-agent run` builds for a configured panel.
fn handler(kind: PanelKind, sim: &SimHandle) -> Arc<dyn CommandHandler> {
    let commands = PanelCommandHandler::new(driver_for(kind, sim));
    Arc::new(BuiltinHandler::with_next(Arc::new(commands)))
}

/// One wire request through the session's path; the outcome as the controller reads it.
async fn over_the_wire(h: &Arc<dyn CommandHandler>, request: WireRequest) -> Outcome {
    let command = v1::Command {
        id: "1".into(),
        idempotency_key: "idem-1".into(),
        deadline_unix_ms: 0,
        request: Some(request),
    };
    let result = run_command(Arc::clone(h), command).await;
    assert_eq!(result.id, "1");
    let outcome = outcome_from_wire(result.outcome).expect("a readable outcome");
    assert_no_password(&format!("{outcome:?}"));
    outcome
}

async fn ok(h: &Arc<dyn CommandHandler>, command: Command) -> Reply {
    let name = command.name();
    match over_the_wire(h, command.into()).await {
        Outcome::Done(reply) => reply,
        other => panic!("{name} did not succeed: {other:?}"),
    }
}

async fn failed(h: &Arc<dyn CommandHandler>, request: WireRequest) -> (ErrorClass, String) {
    match over_the_wire(h, request).await {
        Outcome::Failed(Failure { class, message }) => (class, message),
        other => panic!("succeeded unexpectedly: {other:?}"),
    }
}

fn assert_no_password(text: &str) {
    for secret in [ACCOUNT_PASSWORD, MAIL_PASSWORD, DB_PASSWORD, NEW_PASSWORD] {
        assert!(!text.contains(secret), "a password leaked: {text}");
    }
}

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_owned())
}

/// One service's commands.
struct Service {
    kind: PanelKind,
    service_id: i64,
    username: String,
    domain: String,
}

impl Service {
    fn new(kind: PanelKind, service_id: i64, username: &str) -> Self {
        Self {
            kind,
            service_id,
            username: username.to_owned(),
            domain: format!("{username}.example"),
        }
    }

    fn domain(&self) -> DomainName {
        DomainName::parse(&self.domain).unwrap()
    }

    fn create_account(&self) -> Command {
        Command::CreateAccount(CreateAccount {
            service_id: ServiceId::new(self.service_id),
            username: self.username.clone(),
            domain: self.domain(),
            password: secret(ACCOUNT_PASSWORD),
            package: default_package(self.kind).to_owned(),
            contact_email: format!("owner{}@customer.example", self.service_id),
            quota_mb: Some(1024),
            ip: Some("192.0.2.10".parse().unwrap()),
        })
    }

    fn ensure_dns(&self) -> Command {
        Command::EnsureDns(EnsureDns {
            username: self.username.clone(),
            domain: self.domain(),
            ip: SITE_IP.parse().unwrap(),
            nameservers: NAMESERVERS
                .iter()
                .map(|n| DomainName::parse(n).unwrap())
                .collect(),
            ttl: None,
        })
    }

    fn ssl(&self) -> Command {
        Command::Certificate(Certificate {
            username: self.username.clone(),
            domain: self.domain(),
            provider: CertificateProvider::AutoSsl,
        })
    }

    fn create_mailbox(&self) -> Command {
        Command::CreateMailbox(CreateMailbox {
            username: self.username.clone(),
            domain: self.domain(),
            local_part: "admin".into(),
            password: secret(MAIL_PASSWORD),
            quota_mb: Some(250),
        })
    }

    fn create_database(&self) -> Command {
        self.create_database_for(self.kind)
    }

    fn create_database_for(&self, kind: PanelKind) -> Command {
        Command::CreateDatabase(CreateDatabase {
            username: self.username.clone(),
            kind,
            domain: self.domain(),
            name_suffix: Some("main".into()),
            password: secret(DB_PASSWORD),
        })
    }

    fn terminate(&self) -> Command {
        Command::Terminate(TerminateAccount {
            username: self.username.clone(),
        })
    }

    /// The database (and user) name the agent should hand out.
    fn database_name(&self) -> String {
        format!("{}_main", self.username)
    }
}

/// The wire form of a command, to break one field of it.
fn wire(command: Command) -> WireRequest {
    command.into()
}

fn zone(sim: &SimHandle, domain: &str) -> Value {
    sim.state_json()["zones"]
        .as_array()
        .and_then(|zones| zones.iter().find(|z| z["domain"] == domain).cloned())
        .unwrap_or_else(|| panic!("no zone for {domain}"))
}

fn assert_default_records(sim: &SimHandle, domain: &str) {
    for name in [
        domain.to_owned(),
        format!("www.{domain}"),
        format!("mail.{domain}"),
    ] {
        let a = records_named(sim, domain, &name, "A");
        assert_eq!(a.len(), 1, "A {name}: {a:?}");
        assert_eq!(a[0]["value"], SITE_IP, "A {name}");
    }
    let mail_host = format!("mail.{domain}");
    let mx = records_named(sim, domain, domain, "MX");
    let ours: Vec<&Value> = mx.iter().filter(|r| r["value"] == mail_host).collect();
    assert_eq!(ours.len(), 1, "MX: {mx:?}");
    assert_eq!(ours[0]["priority"], 10, "MX: {mx:?}");
    let spf: Vec<Value> = records_named(sim, domain, domain, "TXT")
        .into_iter()
        .filter(|r| r["value"].as_str().unwrap_or("").contains("v=spf1"))
        .collect();
    assert_eq!(spf.len(), 1, "exactly one SPF record: {spf:?}");
    assert_eq!(
        spf[0]["value"].as_str().unwrap().trim_matches('"'),
        "v=spf1 a mx ~all"
    );
    let ns = records_named(sim, domain, domain, "NS");
    for server in NAMESERVERS {
        assert_eq!(
            ns.iter().filter(|r| r["value"] == server).count(),
            1,
            "NS {server}: {ns:?}"
        );
    }
}

fn record(record_type: &str, name: &str, value: &str) -> DnsRecordSummary {
    DnsRecordSummary {
        record_type: record_type.into(),
        name: name.into(),
        value: value.into(),
    }
}

async fn provisioning_runs_and_every_retry_converges(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = &handler(kind, &sim);
    let svc = Service::new(kind, 41, "alice41");

    // account
    let first = ok(h, svc.create_account()).await;
    assert_eq!(
        first,
        Reply::AccountCreated(AccountCreated {
            username: svc.username.clone(),
            domain: svc.domain.clone(),
            package: default_package(kind).to_owned(),
            created: true,
        })
    );
    let Reply::AccountCreated(again) = ok(h, svc.create_account()).await else {
        panic!("not an account reply");
    };
    assert!(!again.created, "{again:?}");
    assert_eq!(again.username, svc.username);
    assert_eq!(count_accounts(&sim, &svc.username), 1);
    assert_eq!(
        account(&sim, &svc.username).unwrap()["password"],
        ACCOUNT_PASSWORD
    );

    // DNS
    let Reply::DnsEnsured(dns) = ok(h, svc.ensure_dns()).await else {
        panic!("not a DNS reply");
    };
    assert_eq!(dns.zone_id, svc.domain);
    let mail_host = format!("mail.{}", svc.domain);
    assert_eq!(
        dns.records,
        vec![
            record("A", "@", SITE_IP),
            record("A", "www", SITE_IP),
            record("A", "mail", SITE_IP),
            record("MX", "@", &mail_host),
            record("TXT", "@", "v=spf1 a mx ~all"),
            record("NS", "@", NAMESERVERS[0]),
            record("NS", "@", NAMESERVERS[1]),
        ]
    );
    assert_default_records(&sim, &svc.domain);
    let before = zone(&sim, &svc.domain);
    let dns_again = ok(h, svc.ensure_dns()).await;
    assert_eq!(dns_again, Reply::DnsEnsured(dns));
    assert_eq!(
        zone(&sim, &svc.domain),
        before,
        "a second ensure_dns changes nothing"
    );

    // SSL
    for _ in 0..2 {
        let ssl = ok(h, svc.ssl()).await;
        assert_eq!(ssl, Reply::Certificate(CertificateDone::AutoSslRequested));
    }
    let state = sim.state_json();
    let started = state["autosslChecks"]
        .as_array()
        .is_some_and(|c| c.iter().any(|u| u == svc.username.as_str()))
        || state["certificates"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["domain"] == svc.domain));
    assert!(started, "{state}");

    // mailbox
    for _ in 0..2 {
        let mailbox = ok(h, svc.create_mailbox()).await;
        assert_eq!(
            mailbox,
            Reply::MailboxCreated(MailboxCreated {
                address: format!("admin@{}", svc.domain),
                quota_mb: Some(250),
            })
        );
    }
    let boxes = state_list(&sim, "mailboxes");
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    assert_eq!(boxes[0]["address"], format!("admin@{}", svc.domain));
    assert_eq!(boxes[0]["password"], MAIL_PASSWORD);

    // database
    let expected = Reply::DatabaseCreated(DatabaseCreated {
        databases: vec![svc.database_name()],
        user: svc.database_name(),
        host: "localhost".into(),
    });
    for _ in 0..2 {
        assert_eq!(ok(h, svc.create_database()).await, expected);
    }
    let databases = state_list(&sim, "databases");
    assert_eq!(databases.len(), 1, "{databases:?}");
    assert_eq!(databases[0]["name"], svc.database_name());
    let users = state_list(&sim, "dbUsers");
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["name"], svc.database_name());
    assert_eq!(users[0]["password"], DB_PASSWORD);

    // Still exactly one of everything.
    assert_eq!(count_accounts(&sim, &svc.username), 1);
    assert_eq!(state_list(&sim, "mailboxes").len(), 1);
}

async fn lifecycle_commands_converge(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = &handler(kind, &sim);
    let svc = Service::new(kind, 42, "bob42");
    let username = svc.username.clone();
    ok(h, svc.create_account()).await;

    let suspend = Command::Suspend(SuspendAccount {
        username: username.clone(),
        reason: Some("unpaid invoice".into()),
    });
    for _ in 0..2 {
        let answer = ok(h, suspend.clone()).await;
        assert_eq!(
            answer,
            Reply::Suspended(AccountSuspended {
                username: username.clone()
            })
        );
    }
    assert_eq!(account(&sim, &username).unwrap()["suspended"], true);
    for _ in 0..2 {
        let unsuspend = Command::Unsuspend(UnsuspendAccount {
            username: username.clone(),
        });
        assert_eq!(
            ok(h, unsuspend).await,
            Reply::Unsuspended(AccountUnsuspended {
                username: username.clone()
            })
        );
    }
    assert_eq!(account(&sim, &username).unwrap()["suspended"], false);

    let change = Command::ChangePackage(ChangePackage {
        username: username.clone(),
        package: other_package(kind).to_owned(),
    });
    for _ in 0..2 {
        assert_eq!(
            ok(h, change.clone()).await,
            Reply::PackageChanged(PackageChanged {
                username: username.clone(),
                package: other_package(kind).to_owned(),
            })
        );
    }
    assert_eq!(
        account(&sim, &username).unwrap()["package"],
        other_package(kind)
    );

    let password = Command::ChangePassword(ChangePassword {
        username: username.clone(),
        password: secret(NEW_PASSWORD),
    });
    for _ in 0..2 {
        assert_eq!(
            ok(h, password.clone()).await,
            Reply::PasswordChanged(PasswordChanged {
                username: username.clone()
            })
        );
    }
    assert_eq!(account(&sim, &username).unwrap()["password"], NEW_PASSWORD);

    for _ in 0..2 {
        assert_eq!(
            ok(h, svc.terminate()).await,
            Reply::Terminated(AccountTerminated {
                username: username.clone()
            })
        );
    }
    assert_eq!(count_accounts(&sim, &username), 0);

    let (class, _) = failed(
        h,
        wire(Command::Suspend(SuspendAccount {
            username: "ghost99".into(),
            reason: Some("x".into()),
        })),
    )
    .await;
    assert!(
        matches!(class, ErrorClass::Permanent | ErrorClass::NotFound),
        "{class:?}"
    );
}

async fn requests_missing_a_field_fail_permanently_naming_it(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = &handler(kind, &sim);
    let svc = Service::new(kind, 43, "carol43");
    let account = |f: fn(&mut v1::CreateAccount)| {
        let WireRequest::CreateAccount(mut c) = wire(svc.create_account()) else {
            unreachable!()
        };
        f(&mut c);
        WireRequest::CreateAccount(c)
    };
    let dns = |f: fn(&mut v1::EnsureDns)| {
        let WireRequest::EnsureDns(mut c) = wire(svc.ensure_dns()) else {
            unreachable!()
        };
        f(&mut c);
        WireRequest::EnsureDns(c)
    };
    let mailbox = |f: fn(&mut v1::CreateMailbox)| {
        let WireRequest::CreateMailbox(mut c) = wire(svc.create_mailbox()) else {
            unreachable!()
        };
        f(&mut c);
        WireRequest::CreateMailbox(c)
    };
    let database = |f: fn(&mut v1::CreateDatabase)| {
        let WireRequest::CreateDatabase(mut c) = wire(svc.create_database()) else {
            unreachable!()
        };
        f(&mut c);
        WireRequest::CreateDatabase(c)
    };
    let cases = [
        (account(|c| c.domain.clear()), "create_account: domain"),
        (account(|c| c.password.clear()), "create_account: password"),
        (account(|c| c.service_id = 0), "create_account: service_id"),
        (dns(|c| c.ip.clear()), "ensure_dns: ip"),
        (
            WireRequest::Certificate(v1::Certificate {
                username: svc.username.clone(),
                domain: svc.domain.clone(),
                provider: None,
            }),
            "ssl: provider",
        ),
        (
            mailbox(|c| c.local_part.clear()),
            "create_mailbox: local_part",
        ),
        (
            database(|c| c.panel_kind.clear()),
            "create_database: panel_kind",
        ),
        (
            database(|c| c.password.clear()),
            "create_database: password",
        ),
        (
            WireRequest::SuspendAccount(v1::SuspendAccount {
                username: String::new(),
                reason: "x".into(),
            }),
            "suspend_account: username",
        ),
        (
            WireRequest::ChangePackage(v1::ChangePackage {
                username: svc.username.clone(),
                package: " ".into(),
            }),
            "change_package: package",
        ),
        (
            WireRequest::ChangePassword(v1::ChangePassword {
                username: svc.username.clone(),
                password: String::new(),
            }),
            "change_password: password",
        ),
    ];
    for (request, field) in cases {
        let (class, message) = failed(h, request).await;
        assert_eq!(class, ErrorClass::Permanent, "{field}: {message}");
        assert!(message.starts_with(field), "{field}: {message}");
    }

    // Nothing reached the panel.
    assert_eq!(count_accounts(&sim, &svc.username), 0);
}

async fn unsupported_values_fail_permanently_naming_the_field(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = &handler(kind, &sim);
    let svc = Service::new(kind, 44, "dave44");
    ok(h, svc.create_account()).await;

    // An agent without an [acme] section cannot issue.
    let acme = Command::Certificate(Certificate {
        username: svc.username.clone(),
        domain: svc.domain(),
        provider: CertificateProvider::Acme(mpanel_common::command::AcmeOrder {
            ip: SITE_IP.parse().unwrap(),
            names: vec![],
        }),
    });
    let (class, message) = failed(h, wire(acme)).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(message.starts_with("ssl: provider"), "{message}");

    let other_kind = KINDS.into_iter().find(|k| *k != kind).unwrap();
    let (class, message) = failed(h, wire(svc.create_database_for(other_kind))).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(
        message.starts_with("create_database: panel_kind"),
        "{message}"
    );
    assert!(state_list(&sim, "databases").is_empty());

    let WireRequest::EnsureDns(mut dns) = wire(svc.ensure_dns()) else {
        unreachable!()
    };
    dns.ip = "not-an-ip".into();
    let (class, message) = failed(h, WireRequest::EnsureDns(dns)).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(message.starts_with("ensure_dns: ip"), "{message}");

    let WireRequest::CreateMailbox(mut mailbox) = wire(svc.create_mailbox()) else {
        unreachable!()
    };
    mailbox.local_part = "a..b".into();
    let (class, message) = failed(h, WireRequest::CreateMailbox(mailbox)).await;
    assert_eq!(class, ErrorClass::Permanent);
    assert!(
        message.starts_with("create_mailbox: local_part"),
        "{message}"
    );
    assert!(state_list(&sim, "mailboxes").is_empty());

    // A command of a kind this agent does not know (a newer controller's) has no request.
    let unknown = v1::Command {
        id: "9".into(),
        idempotency_key: "k".into(),
        deadline_unix_ms: 0,
        request: None,
    };
    let result = run_command(Arc::clone(h), unknown).await;
    let Outcome::Failed(f) = outcome_from_wire(result.outcome).unwrap() else {
        panic!("an unknown command succeeded");
    };
    assert_eq!(f.class, ErrorClass::Permanent);
}

async fn account_of_another_service_is_a_conflict(kind: PanelKind) {
    let sim = sim(kind).await;
    let h = &handler(kind, &sim);
    let first = Service::new(kind, 45, "erin45");
    ok(h, first.create_account()).await;

    // Another service that (by a controller bug or a race) wants the same username.
    let mut second = Service::new(kind, 46, "erin45");
    second.domain = "erin-other.example".to_owned();
    let (class, message) = failed(h, wire(second.create_account())).await;
    assert_eq!(class, ErrorClass::Conflict, "{message}");
    assert_eq!(count_accounts(&sim, "erin45"), 1);

    // An account the hosting company made by hand is not adopted either.
    support::seed_foreign_account(
        &sim,
        "frank47",
        "frank47.example",
        "frank@elsewhere.example",
    )
    .await;
    let third = Service::new(kind, 47, "frank47");
    let (class, message) = failed(h, wire(third.create_account())).await;
    assert_eq!(class, ErrorClass::Conflict, "{message}");
}

/// `MPANEL_TEST_MARIADB_URL`, default `mysql://root@127.0.0.1:3306`.
// The ban keeps the agent's own configuration in config.rs; this is the test harness's setting.
#[allow(clippy::disallowed_methods)]
fn mariadb_url() -> String {
    std::env::var("MPANEL_TEST_MARIADB_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// The URL without its password, for failure messages.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A username no other test run shares, since every run uses the same MariaDB server. Eight
/// characters, so it is also unique as cPanel's 8-character database prefix.
fn unique_username(kind: PanelKind) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let letter = kind.as_str().as_bytes()[0] as char;
    format!(
        "m{letter}{:06}",
        (nanos ^ std::process::id().rotate_left(16)) % 1_000_000
    )
}

async fn database_credentials_log_in_to_mariadb(kind: PanelKind) {
    support::install_crypto();
    let url = mariadb_url();
    let mut config = SimConfig::new(sim_kind(kind), TOKEN);
    config.mariadb_url = Some(url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = match mpanel_panelsim::start(config, listener).await {
        Ok(sim) => sim,
        Err(e) => panic!(
            "MariaDB is not reachable at {} ({e:#}): start MariaDB or point \
             MPANEL_TEST_MARIADB_URL at one",
            shown_url(&url)
        ),
    };
    let h = &handler(kind, &sim);
    let svc = Service::new(kind, 48, &unique_username(kind));
    ok(h, svc.create_account()).await;
    let Reply::DatabaseCreated(answer) = ok(h, svc.create_database()).await else {
        panic!("not a database reply");
    };
    let database = answer.databases[0].clone();
    let user = answer.user;

    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .expect("MPANEL_TEST_MARIADB_URL is a mysql:// URL")
        .username(&user)
        .password(DB_PASSWORD)
        .database(&database);
    let login = async {
        use sqlx::Connection as _;
        let mut conn = sqlx::MySqlConnection::connect_with(&options).await?;
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(one)
    }
    .await;

    // Drops the database and its user again, whatever the login did.
    ok(h, svc.terminate()).await;
    sim.shutdown().await;
    match login {
        Ok(one) => assert_eq!(one, 1),
        Err(e) => panic!("{user} could not log in to {database} with the password sent: {e}"),
    }
}

macro_rules! for_each_panel {
    ($($story:ident),+ $(,)?) => {
        mod cpanel {
            $(#[tokio::test] async fn $story() { super::$story(super::PanelKind::Cpanel).await; })+
        }
        mod plesk {
            $(#[tokio::test] async fn $story() { super::$story(super::PanelKind::Plesk).await; })+
        }
        mod directadmin {
            $(#[tokio::test] async fn $story() { super::$story(super::PanelKind::Directadmin).await; })+
        }
    };
}

for_each_panel!(
    provisioning_runs_and_every_retry_converges,
    lifecycle_commands_converge,
    requests_missing_a_field_fail_permanently_naming_it,
    unsupported_values_fail_permanently_naming_the_field,
    account_of_another_service_is_a_conflict,
    database_credentials_log_in_to_mariadb,
);
