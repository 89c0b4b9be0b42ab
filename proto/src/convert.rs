//! Wire messages ⇄ `mpanel_common` types, in one place: commands and their outcomes, error
//! classes and the heartbeat's load.
//!
//! Going out is infallible. Coming in checks every field the way the domain type needs it
//! (required, a domain name, an IP address, a positive id), so a handler never sees a half-read
//! request; a refusal names the command and the field and never quotes a secret.

use std::net::IpAddr;

use mpanel_common::command::{
    AccountCreated, AccountList, AccountSuspended, AccountTerminated, AccountUnsuspended,
    AccountUsage, AcmeOrder, Amount, BackupCreated, BackupDeletion, BackupEntry, BackupList,
    BackupRestored, Certificate, CertificateDone, CertificateProvider, ChangePackage,
    ChangePassword, Command, CreateAccount, CreateBackup, CreateDatabase, CreateMailbox,
    DatabaseCreated, DeleteBackup, DnsEnsured, DnsRecordSummary, Echo, EnsureDns, ErrorClass,
    Failure, IssuedCertificate, ListBackups, MailboxCreated, Outcome, PackageChanged, PanelAccount,
    PasswordChanged, Pong, Reply, RestoreBackup, SuspendAccount, TerminateAccount,
    UnsuspendAccount, UsageQuery, Waiting,
};
use mpanel_common::load::LoadReport;
use mpanel_common::{DomainName, PanelKind, Secret, ServiceId};

use crate::v1;
use crate::v1::command::Request as WireRequest;
use crate::v1::command_result::Outcome as WireOutcome;

/// A wire message that does not make a valid domain value. Always permanent: the same message
/// is refused the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}: {field} {problem}")]
pub struct WireError {
    /// The command (or `result`) the message belongs to.
    pub command: &'static str,
    pub field: String,
    pub problem: String,
}

impl WireError {
    fn new(command: &'static str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        WireError {
            command,
            field: field.into(),
            problem: problem.into(),
        }
    }
}

// ----- error classes -----

impl From<ErrorClass> for v1::ErrorClass {
    fn from(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Retryable => v1::ErrorClass::Retryable,
            ErrorClass::Permanent => v1::ErrorClass::Permanent,
            ErrorClass::Auth => v1::ErrorClass::Auth,
            ErrorClass::Conflict => v1::ErrorClass::Conflict,
            ErrorClass::NotFound => v1::ErrorClass::NotFound,
        }
    }
}

/// The class of a wire value. Unspecified and unknown values (a newer agent) are retryable:
/// retrying a step is safe (commands carry idempotency keys), giving up on a transient failure
/// is not.
pub fn error_class(raw: i32) -> ErrorClass {
    match v1::ErrorClass::try_from(raw) {
        Ok(v1::ErrorClass::Permanent) => ErrorClass::Permanent,
        Ok(v1::ErrorClass::Auth) => ErrorClass::Auth,
        Ok(v1::ErrorClass::Conflict) => ErrorClass::Conflict,
        Ok(v1::ErrorClass::NotFound) => ErrorClass::NotFound,
        Ok(v1::ErrorClass::Retryable | v1::ErrorClass::Unspecified) | Err(_) => {
            ErrorClass::Retryable
        }
    }
}

// ----- heartbeat -----

impl From<&v1::Heartbeat> for LoadReport {
    fn from(h: &v1::Heartbeat) -> Self {
        LoadReport {
            load1: h.load1,
            load5: h.load5,
            load15: h.load15,
            cpu_count: h.cpu_count,
            memory_total_bytes: h.memory_total_bytes,
            memory_available_bytes: h.memory_available_bytes,
            disk_total_bytes: h.disk_total_bytes,
            disk_free_bytes: h.disk_free_bytes,
            inodes_total: h.inodes_total,
            inodes_free: h.inodes_free,
            account_count: h.account_count,
            panel_reachable: h.panel_reachable,
            agent_version: h.agent_version.clone(),
            certificate_not_after_ms: h.certificate_not_after_unix_ms,
        }
    }
}

impl From<LoadReport> for v1::Heartbeat {
    fn from(l: LoadReport) -> Self {
        v1::Heartbeat {
            load1: l.load1,
            load5: l.load5,
            load15: l.load15,
            cpu_count: l.cpu_count,
            memory_total_bytes: l.memory_total_bytes,
            memory_available_bytes: l.memory_available_bytes,
            disk_total_bytes: l.disk_total_bytes,
            disk_free_bytes: l.disk_free_bytes,
            inodes_total: l.inodes_total,
            inodes_free: l.inodes_free,
            account_count: l.account_count,
            panel_reachable: l.panel_reachable,
            agent_version: l.agent_version,
            certificate_not_after_unix_ms: l.certificate_not_after_ms,
        }
    }
}

// ----- commands: out -----

impl From<Command> for WireRequest {
    fn from(command: Command) -> Self {
        match command {
            Command::Ping => WireRequest::Ping(v1::Ping {}),
            Command::Echo(e) => WireRequest::Echo(v1::Echo { payload: e.payload }),
            Command::CreateAccount(c) => WireRequest::CreateAccount(v1::CreateAccount {
                service_id: c.service_id.get(),
                username: c.username,
                domain: c.domain.as_str().to_owned(),
                password: c.password.into_inner(),
                package: c.package,
                contact_email: c.contact_email,
                quota_mb: c.quota_mb,
                ip: c.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            }),
            Command::EnsureDns(c) => WireRequest::EnsureDns(v1::EnsureDns {
                username: c.username,
                domain: c.domain.as_str().to_owned(),
                ip: c.ip.to_string(),
                nameservers: c
                    .nameservers
                    .iter()
                    .map(|n| n.as_str().to_owned())
                    .collect(),
                ttl: c.ttl.unwrap_or(0),
            }),
            Command::Certificate(c) => WireRequest::Certificate(v1::Certificate {
                username: c.username,
                domain: c.domain.as_str().to_owned(),
                provider: Some(match c.provider {
                    CertificateProvider::AutoSsl => {
                        v1::certificate::Provider::AutoSsl(v1::AutoSsl {})
                    }
                    CertificateProvider::Acme(order) => {
                        v1::certificate::Provider::Acme(v1::AcmeOrder {
                            ip: order.ip.to_string(),
                            names: order.names,
                        })
                    }
                }),
            }),
            Command::CreateMailbox(c) => WireRequest::CreateMailbox(v1::CreateMailbox {
                username: c.username,
                domain: c.domain.as_str().to_owned(),
                local_part: c.local_part,
                password: c.password.into_inner(),
                quota_mb: c.quota_mb,
            }),
            Command::CreateDatabase(c) => WireRequest::CreateDatabase(v1::CreateDatabase {
                username: c.username,
                panel_kind: c.kind.as_str().to_owned(),
                domain: c.domain.as_str().to_owned(),
                name_suffix: c.name_suffix.unwrap_or_default(),
                password: c.password.into_inner(),
            }),
            Command::Suspend(c) => WireRequest::SuspendAccount(v1::SuspendAccount {
                username: c.username,
                reason: c.reason.unwrap_or_default(),
            }),
            Command::Unsuspend(c) => WireRequest::UnsuspendAccount(v1::UnsuspendAccount {
                username: c.username,
            }),
            Command::Terminate(c) => WireRequest::TerminateAccount(v1::TerminateAccount {
                username: c.username,
            }),
            Command::ChangePackage(c) => WireRequest::ChangePackage(v1::ChangePackage {
                username: c.username,
                package: c.package,
            }),
            Command::ChangePassword(c) => WireRequest::ChangePassword(v1::ChangePassword {
                username: c.username,
                password: c.password.into_inner(),
            }),
            Command::ListAccounts => WireRequest::ListAccounts(v1::ListAccounts {}),
            Command::Usage(c) => WireRequest::Usage(v1::Usage {
                username: c.username,
            }),
            Command::CreateBackup(c) => WireRequest::CreateBackup(v1::CreateBackup {
                username: c.username,
            }),
            Command::ListBackups(c) => WireRequest::ListBackups(v1::ListBackups {
                username: c.username,
            }),
            Command::DeleteBackup(c) => WireRequest::DeleteBackup(v1::DeleteBackup {
                username: c.username,
                location: c.location,
            }),
            Command::RestoreBackup(c) => WireRequest::RestoreBackup(v1::RestoreBackup {
                username: c.username,
                location: c.location,
            }),
        }
    }
}

// ----- commands: in -----

/// Reads one command's fields; every refusal names the field.
struct Fields(&'static str);

impl Fields {
    fn err(&self, field: &str, problem: impl Into<String>) -> WireError {
        WireError::new(self.0, field, problem)
    }

    /// A required, non-blank string, trimmed.
    fn text(&self, field: &str, value: &str) -> Result<String, WireError> {
        self.opt_text(value)
            .ok_or_else(|| self.err(field, "is required"))
    }

    /// Blank counts as absent.
    fn opt_text(&self, value: &str) -> Option<String> {
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }

    /// A password exactly as sent (spaces may be part of it); never quoted in a message.
    fn secret(&self, field: &str, value: String) -> Result<Secret<String>, WireError> {
        if value.is_empty() {
            return Err(self.err(field, "is required"));
        }
        Ok(Secret::new(value))
    }

    fn domain(&self, field: &str, value: &str) -> Result<DomainName, WireError> {
        if value.trim().is_empty() {
            return Err(self.err(field, "is required"));
        }
        DomainName::parse(value.trim())
            .map_err(|e| self.err(field, format!("is not a domain name: {e}")))
    }

    fn ip(&self, field: &str, value: &str) -> Result<IpAddr, WireError> {
        if value.trim().is_empty() {
            return Err(self.err(field, "is required"));
        }
        value
            .trim()
            .parse()
            .map_err(|_| self.err(field, "is not an IP address"))
    }
}

/// The command in a wire `Command`; a missing or unknown request is refused.
pub fn command_from_wire(request: Option<WireRequest>) -> Result<Command, WireError> {
    let Some(request) = request else {
        return Err(WireError::new(
            "command",
            "request",
            "is missing or of a kind this agent does not know",
        ));
    };
    Ok(match request {
        WireRequest::Ping(_) => Command::Ping,
        WireRequest::Echo(e) => Command::Echo(Echo { payload: e.payload }),
        WireRequest::CreateAccount(c) => {
            let f = Fields("create_account");
            if c.service_id <= 0 {
                return Err(f.err("service_id", "must be a positive integer"));
            }
            let contact_email = f.text("contact_email", &c.contact_email)?;
            if !contact_email.contains('@') {
                return Err(f.err("contact_email", "is not an email address"));
            }
            Command::CreateAccount(CreateAccount {
                service_id: ServiceId::new(c.service_id),
                username: f.text("username", &c.username)?,
                domain: f.domain("domain", &c.domain)?,
                password: f.secret("password", c.password)?,
                package: f.text("package", &c.package)?,
                contact_email,
                quota_mb: c.quota_mb,
                ip: match f.opt_text(&c.ip) {
                    Some(ip) => Some(f.ip("ip", &ip)?),
                    None => None,
                },
            })
        }
        WireRequest::EnsureDns(c) => {
            let f = Fields("ensure_dns");
            let mut nameservers = Vec::new();
            for (i, ns) in c.nameservers.iter().enumerate() {
                // Blank entries are a server without a second name server, not a mistake.
                if !ns.trim().is_empty() {
                    nameservers.push(f.domain(&format!("nameservers[{i}]"), ns)?);
                }
            }
            Command::EnsureDns(EnsureDns {
                username: f.text("username", &c.username)?,
                domain: f.domain("domain", &c.domain)?,
                ip: f.ip("ip", &c.ip)?,
                nameservers,
                ttl: (c.ttl > 0).then_some(c.ttl),
            })
        }
        WireRequest::Certificate(c) => {
            let f = Fields("ssl");
            let provider = match c.provider {
                None => return Err(f.err("provider", "is required")),
                Some(v1::certificate::Provider::AutoSsl(_)) => CertificateProvider::AutoSsl,
                Some(v1::certificate::Provider::Acme(order)) => {
                    let mut names = Vec::new();
                    for (i, raw) in order.names.iter().enumerate() {
                        let raw = raw.trim();
                        let (wildcard, bare) = match raw.strip_prefix("*.") {
                            Some(bare) => ("*.", bare),
                            None => ("", raw),
                        };
                        let name = f.domain(&format!("acme.names[{i}]"), bare)?;
                        names.push(format!("{wildcard}{}", name.as_str()));
                    }
                    CertificateProvider::Acme(AcmeOrder {
                        ip: f.ip("acme.ip", &order.ip)?,
                        names,
                    })
                }
            };
            Command::Certificate(Certificate {
                username: f.text("username", &c.username)?,
                domain: f.domain("domain", &c.domain)?,
                provider,
            })
        }
        WireRequest::CreateMailbox(c) => {
            let f = Fields("create_mailbox");
            Command::CreateMailbox(CreateMailbox {
                username: f.text("username", &c.username)?,
                domain: f.domain("domain", &c.domain)?,
                local_part: f.text("local_part", &c.local_part)?,
                password: f.secret("password", c.password)?,
                quota_mb: c.quota_mb,
            })
        }
        WireRequest::CreateDatabase(c) => {
            let f = Fields("create_database");
            let kind = f.text("panel_kind", &c.panel_kind)?;
            Command::CreateDatabase(CreateDatabase {
                username: f.text("username", &c.username)?,
                kind: kind
                    .parse::<PanelKind>()
                    .map_err(|e| f.err("panel_kind", format!("is not usable: {e}")))?,
                domain: f.domain("domain", &c.domain)?,
                name_suffix: f.opt_text(&c.name_suffix),
                password: f.secret("password", c.password)?,
            })
        }
        WireRequest::SuspendAccount(c) => {
            let f = Fields("suspend_account");
            Command::Suspend(SuspendAccount {
                username: f.text("username", &c.username)?,
                reason: f.opt_text(&c.reason),
            })
        }
        WireRequest::UnsuspendAccount(c) => Command::Unsuspend(UnsuspendAccount {
            username: Fields("unsuspend_account").text("username", &c.username)?,
        }),
        WireRequest::TerminateAccount(c) => Command::Terminate(TerminateAccount {
            username: Fields("terminate_account").text("username", &c.username)?,
        }),
        WireRequest::ChangePackage(c) => {
            let f = Fields("change_package");
            Command::ChangePackage(ChangePackage {
                username: f.text("username", &c.username)?,
                package: f.text("package", &c.package)?,
            })
        }
        WireRequest::ChangePassword(c) => {
            let f = Fields("change_password");
            Command::ChangePassword(ChangePassword {
                username: f.text("username", &c.username)?,
                password: f.secret("password", c.password)?,
            })
        }
        WireRequest::ListAccounts(_) => Command::ListAccounts,
        WireRequest::Usage(c) => Command::Usage(UsageQuery {
            username: Fields("usage").text("username", &c.username)?,
        }),
        WireRequest::CreateBackup(c) => Command::CreateBackup(CreateBackup {
            username: Fields("create_backup").text("username", &c.username)?,
        }),
        WireRequest::ListBackups(c) => Command::ListBackups(ListBackups {
            username: Fields("list_backups").text("username", &c.username)?,
        }),
        WireRequest::DeleteBackup(c) => {
            let f = Fields("delete_backup");
            Command::DeleteBackup(DeleteBackup {
                username: f.text("username", &c.username)?,
                location: f.text("location", &c.location)?,
            })
        }
        WireRequest::RestoreBackup(c) => {
            let f = Fields("restore_backup");
            Command::RestoreBackup(RestoreBackup {
                username: f.text("username", &c.username)?,
                location: f.text("location", &c.location)?,
            })
        }
    })
}

// ----- outcomes: out -----

fn amount_to_wire(amount: Option<Amount>) -> Option<v1::Amount> {
    amount.map(|a| v1::Amount {
        amount: Some(match a {
            Amount::Unlimited => v1::amount::Amount::Unlimited(true),
            Amount::Value(v) => v1::amount::Amount::Value(v),
        }),
    })
}

impl From<Outcome> for WireOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Failed(f) => WireOutcome::Failure(v1::Failure {
                class: v1::ErrorClass::from(f.class).into(),
                message: f.message,
            }),
            Outcome::Waiting(Waiting::Dns { reason }) => WireOutcome::Waiting(v1::Waiting {
                cause: v1::waiting::Cause::Dns.into(),
                reason,
            }),
            Outcome::Done(reply) => reply.into(),
        }
    }
}

impl From<Reply> for WireOutcome {
    fn from(reply: Reply) -> Self {
        match reply {
            Reply::Pong(p) => WireOutcome::Pong(v1::Pong {
                agent_version: p.agent_version,
            }),
            Reply::Echo(e) => WireOutcome::Echo(v1::Echo { payload: e.payload }),
            Reply::AccountCreated(a) => WireOutcome::AccountCreated(v1::AccountCreated {
                username: a.username,
                domain: a.domain,
                package: a.package,
                created: a.created,
            }),
            Reply::DnsEnsured(d) => WireOutcome::DnsEnsured(v1::DnsEnsured {
                zone_id: d.zone_id,
                records: d
                    .records
                    .into_iter()
                    .map(|r| v1::DnsRecord {
                        r#type: r.record_type,
                        name: r.name,
                        value: r.value,
                    })
                    .collect(),
            }),
            Reply::Certificate(c) => WireOutcome::Certificate(v1::CertificateDone {
                provider: Some(match c {
                    CertificateDone::AutoSslRequested => {
                        v1::certificate_done::Provider::AutoSsl(v1::AutoSslRequested {})
                    }
                    CertificateDone::AcmeIssued(i) => {
                        v1::certificate_done::Provider::Acme(v1::IssuedCertificate {
                            issuer: i.issuer,
                            serial: i.serial,
                            not_before_unix_ms: i.not_before_ms,
                            not_after_unix_ms: i.not_after_ms,
                            names: i.names,
                        })
                    }
                }),
            }),
            Reply::MailboxCreated(m) => WireOutcome::MailboxCreated(v1::MailboxCreated {
                address: m.address,
                quota_mb: m.quota_mb,
            }),
            Reply::DatabaseCreated(d) => WireOutcome::DatabaseCreated(v1::DatabaseCreated {
                databases: d.databases,
                user: d.user,
                host: d.host,
            }),
            Reply::Suspended(a) => WireOutcome::AccountSuspended(v1::AccountSuspended {
                username: a.username,
            }),
            Reply::Unsuspended(a) => WireOutcome::AccountUnsuspended(v1::AccountUnsuspended {
                username: a.username,
            }),
            Reply::Terminated(a) => WireOutcome::AccountTerminated(v1::AccountTerminated {
                username: a.username,
            }),
            Reply::PackageChanged(p) => WireOutcome::PackageChanged(v1::PackageChanged {
                username: p.username,
                package: p.package,
            }),
            Reply::PasswordChanged(p) => WireOutcome::PasswordChanged(v1::PasswordChanged {
                username: p.username,
            }),
            Reply::Accounts(list) => WireOutcome::Accounts(v1::AccountList {
                accounts: list
                    .accounts
                    .into_iter()
                    .map(|a| v1::PanelAccount {
                        username: a.username,
                        domain: a.domain,
                        package: a.package,
                        suspended: a.suspended,
                        owner_marker: a.owner_marker,
                    })
                    .collect(),
            }),
            Reply::Usage(u) => WireOutcome::Usage(v1::AccountUsage {
                disk_used_bytes: u.disk_used,
                disk_limit_bytes: amount_to_wire(u.disk_limit),
                bandwidth_used_bytes: u.bandwidth_used,
                bandwidth_limit_bytes: amount_to_wire(u.bandwidth_limit),
                inodes_used: u.inodes_used,
                inodes_limit: amount_to_wire(u.inodes_limit),
            }),
            Reply::BackupCreated(b) => WireOutcome::BackupCreated(v1::BackupCreated {
                location: b.location,
                size_bytes: b.size_bytes,
            }),
            Reply::Backups(list) => WireOutcome::Backups(v1::BackupList {
                backups: list
                    .backups
                    .into_iter()
                    .map(|b| v1::BackupEntry {
                        location: b.location,
                        size_bytes: b.size_bytes,
                        created_at_unix: b.created_at,
                    })
                    .collect(),
            }),
            Reply::BackupDeleted(d) => WireOutcome::BackupDeleted(v1::BackupDeleted {
                deleted: d == BackupDeletion::Deleted,
            }),
            Reply::BackupRestored(r) => WireOutcome::BackupRestored(v1::BackupRestored {
                username: r.username,
            }),
        }
    }
}

// ----- outcomes: in -----

fn amount_from_wire(amount: Option<v1::Amount>) -> Option<Amount> {
    match amount?.amount? {
        v1::amount::Amount::Unlimited(_) => Some(Amount::Unlimited),
        v1::amount::Amount::Value(v) => Some(Amount::Value(v)),
    }
}

/// How a command ended, from the agent's `CommandResult`. A result with no outcome, a wait of
/// an unknown cause or a certificate reply without its provider is refused.
pub fn outcome_from_wire(outcome: Option<WireOutcome>) -> Result<Outcome, WireError> {
    let Some(outcome) = outcome else {
        return Err(WireError::new(
            "result",
            "outcome",
            "is missing or of a kind this controller does not know",
        ));
    };
    let reply = match outcome {
        WireOutcome::Failure(f) => {
            return Ok(Outcome::Failed(Failure {
                class: error_class(f.class),
                message: f.message,
            }));
        }
        WireOutcome::Waiting(w) => {
            return match v1::waiting::Cause::try_from(w.cause) {
                Ok(v1::waiting::Cause::Dns) => {
                    Ok(Outcome::Waiting(Waiting::Dns { reason: w.reason }))
                }
                _ => Err(WireError::new(
                    "result",
                    "waiting.cause",
                    format!("{} is not a known cause", w.cause),
                )),
            };
        }
        WireOutcome::Pong(p) => Reply::Pong(Pong {
            agent_version: p.agent_version,
        }),
        WireOutcome::Echo(e) => Reply::Echo(Echo { payload: e.payload }),
        WireOutcome::AccountCreated(a) => Reply::AccountCreated(AccountCreated {
            username: a.username,
            domain: a.domain,
            package: a.package,
            created: a.created,
        }),
        WireOutcome::DnsEnsured(d) => Reply::DnsEnsured(DnsEnsured {
            zone_id: d.zone_id,
            records: d
                .records
                .into_iter()
                .map(|r| DnsRecordSummary {
                    record_type: r.r#type,
                    name: r.name,
                    value: r.value,
                })
                .collect(),
        }),
        WireOutcome::Certificate(c) => Reply::Certificate(match c.provider {
            Some(v1::certificate_done::Provider::AutoSsl(_)) => CertificateDone::AutoSslRequested,
            Some(v1::certificate_done::Provider::Acme(i)) => {
                CertificateDone::AcmeIssued(IssuedCertificate {
                    issuer: i.issuer,
                    serial: i.serial,
                    not_before_ms: i.not_before_unix_ms,
                    not_after_ms: i.not_after_unix_ms,
                    names: i.names,
                })
            }
            None => {
                return Err(WireError::new(
                    "result",
                    "certificate.provider",
                    "is required",
                ));
            }
        }),
        WireOutcome::MailboxCreated(m) => Reply::MailboxCreated(MailboxCreated {
            address: m.address,
            quota_mb: m.quota_mb,
        }),
        WireOutcome::DatabaseCreated(d) => Reply::DatabaseCreated(DatabaseCreated {
            databases: d.databases,
            user: d.user,
            host: d.host,
        }),
        WireOutcome::AccountSuspended(a) => Reply::Suspended(AccountSuspended {
            username: a.username,
        }),
        WireOutcome::AccountUnsuspended(a) => Reply::Unsuspended(AccountUnsuspended {
            username: a.username,
        }),
        WireOutcome::AccountTerminated(a) => Reply::Terminated(AccountTerminated {
            username: a.username,
        }),
        WireOutcome::PackageChanged(p) => Reply::PackageChanged(PackageChanged {
            username: p.username,
            package: p.package,
        }),
        WireOutcome::PasswordChanged(p) => Reply::PasswordChanged(PasswordChanged {
            username: p.username,
        }),
        WireOutcome::Accounts(list) => Reply::Accounts(AccountList {
            accounts: list
                .accounts
                .into_iter()
                .map(|a| PanelAccount {
                    username: a.username,
                    domain: a.domain,
                    package: a.package,
                    suspended: a.suspended,
                    owner_marker: a.owner_marker,
                })
                .collect(),
        }),
        WireOutcome::Usage(u) => Reply::Usage(AccountUsage {
            disk_used: u.disk_used_bytes,
            disk_limit: amount_from_wire(u.disk_limit_bytes),
            bandwidth_used: u.bandwidth_used_bytes,
            bandwidth_limit: amount_from_wire(u.bandwidth_limit_bytes),
            inodes_used: u.inodes_used,
            inodes_limit: amount_from_wire(u.inodes_limit),
        }),
        WireOutcome::BackupCreated(b) => Reply::BackupCreated(BackupCreated {
            location: b.location,
            size_bytes: b.size_bytes,
        }),
        WireOutcome::Backups(list) => Reply::Backups(BackupList {
            backups: list
                .backups
                .into_iter()
                .map(|b| BackupEntry {
                    location: b.location,
                    size_bytes: b.size_bytes,
                    created_at: b.created_at_unix,
                })
                .collect(),
        }),
        WireOutcome::BackupDeleted(d) => Reply::BackupDeleted(if d.deleted {
            BackupDeletion::Deleted
        } else {
            BackupDeletion::NotFound
        }),
        WireOutcome::BackupRestored(r) => Reply::BackupRestored(BackupRestored {
            username: r.username,
        }),
    };
    Ok(Outcome::Done(reply))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn domain(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    fn secret(s: &str) -> Secret<String> {
        Secret::new(s.to_owned())
    }

    /// Through the encoded bytes and back, as the session carries it.
    fn over_the_wire(command: Command) -> Command {
        let message = v1::Command {
            id: "7".into(),
            idempotency_key: "k".into(),
            deadline_unix_ms: 0,
            request: Some(command.into()),
        };
        let decoded = v1::Command::decode(message.encode_to_vec().as_slice()).unwrap();
        command_from_wire(decoded.request).unwrap()
    }

    /// The password a command carries, if any: `Debug` masks it, so it is compared apart.
    fn password(command: &Command) -> Option<&str> {
        match command {
            Command::CreateAccount(c) => Some(c.password.expose()),
            Command::CreateMailbox(c) => Some(c.password.expose()),
            Command::CreateDatabase(c) => Some(c.password.expose()),
            Command::ChangePassword(c) => Some(c.password.expose()),
            _ => None,
        }
    }

    fn every_command() -> Vec<Command> {
        vec![
            Command::Ping,
            Command::Echo(Echo {
                payload: br#"{"x":1}"#.to_vec(),
            }),
            Command::CreateAccount(CreateAccount {
                service_id: ServiceId::new(42),
                username: "shopexam".into(),
                domain: domain("shop.example"),
                password: secret(" pass word "),
                package: "default".into(),
                contact_email: "owner@shop.example".into(),
                quota_mb: Some(2048),
                ip: Some("192.0.2.10".parse().unwrap()),
            }),
            Command::CreateAccount(CreateAccount {
                service_id: ServiceId::new(1),
                username: "a".into(),
                domain: domain("a.example"),
                password: secret("p"),
                package: "p".into(),
                contact_email: "a@b".into(),
                quota_mb: None,
                ip: None,
            }),
            Command::EnsureDns(EnsureDns {
                username: "shopexam".into(),
                domain: domain("shop.example"),
                ip: "2001:db8::1".parse().unwrap(),
                nameservers: vec![domain("ns1.host.example"), domain("ns2.host.example")],
                ttl: Some(300),
            }),
            Command::Certificate(Certificate {
                username: "shopexam".into(),
                domain: domain("shop.example"),
                provider: CertificateProvider::AutoSsl,
            }),
            Command::Certificate(Certificate {
                username: "shopexam".into(),
                domain: domain("shop.example"),
                provider: CertificateProvider::Acme(AcmeOrder {
                    ip: "192.0.2.10".parse().unwrap(),
                    names: vec!["shop.example".into(), "*.shop.example".into()],
                }),
            }),
            Command::CreateMailbox(CreateMailbox {
                username: "shopexam".into(),
                domain: domain("shop.example"),
                local_part: "admin".into(),
                password: secret("m41l"),
                quota_mb: Some(1024),
            }),
            Command::CreateDatabase(CreateDatabase {
                username: "shopexam".into(),
                kind: PanelKind::Directadmin,
                domain: domain("shop.example"),
                name_suffix: Some("main".into()),
                password: secret("db"),
            }),
            Command::Suspend(SuspendAccount {
                username: "shopexam".into(),
                reason: Some("overdue".into()),
            }),
            Command::Suspend(SuspendAccount {
                username: "shopexam".into(),
                reason: None,
            }),
            Command::Unsuspend(UnsuspendAccount {
                username: "shopexam".into(),
            }),
            Command::Terminate(TerminateAccount {
                username: "shopexam".into(),
            }),
            Command::ChangePackage(ChangePackage {
                username: "shopexam".into(),
                package: "gold".into(),
            }),
            Command::ChangePassword(ChangePassword {
                username: "shopexam".into(),
                password: secret("n3w"),
            }),
            Command::ListAccounts,
            Command::Usage(UsageQuery {
                username: "shopexam".into(),
            }),
            Command::CreateBackup(CreateBackup {
                username: "shopexam".into(),
            }),
            Command::ListBackups(ListBackups {
                username: "shopexam".into(),
            }),
            Command::DeleteBackup(DeleteBackup {
                username: "shopexam".into(),
                location: "backup-12.1.2026_05-00-00_shopexam.tar.gz".into(),
            }),
            Command::RestoreBackup(RestoreBackup {
                username: "shopexam".into(),
                location: "cpmove-shopexam.tar.gz".into(),
            }),
        ]
    }

    #[test]
    fn every_command_round_trips() {
        let commands = every_command();
        let names: std::collections::BTreeSet<_> = commands.iter().map(Command::name).collect();
        assert_eq!(names.len(), 2 + Command::PANEL_COMMANDS.len(), "{names:?}");
        for command in commands {
            let back = over_the_wire(command.clone());
            assert_eq!(format!("{back:?}"), format!("{command:?}"));
            assert_eq!(password(&back), password(&command), "{}", command.name());
        }
    }

    fn every_outcome() -> Vec<Outcome> {
        let done = |r| Outcome::Done(r);
        vec![
            done(Reply::Pong(Pong {
                agent_version: "0.1.0".into(),
            })),
            done(Reply::Echo(Echo {
                payload: vec![0, 1, 255],
            })),
            done(Reply::AccountCreated(AccountCreated {
                username: "shopexam".into(),
                domain: "shop.example".into(),
                package: "default".into(),
                created: true,
            })),
            done(Reply::DnsEnsured(DnsEnsured {
                zone_id: "shop.example".into(),
                records: vec![DnsRecordSummary {
                    record_type: "MX".into(),
                    name: "@".into(),
                    value: "mail.shop.example".into(),
                }],
            })),
            done(Reply::Certificate(CertificateDone::AutoSslRequested)),
            done(Reply::Certificate(CertificateDone::AcmeIssued(
                IssuedCertificate {
                    issuer: "CN=Pebble".into(),
                    serial: "0a1b".into(),
                    not_before_ms: 1_700_000_000_000,
                    not_after_ms: 1_707_776_000_000,
                    names: vec!["shop.example".into()],
                },
            ))),
            done(Reply::MailboxCreated(MailboxCreated {
                address: "admin@shop.example".into(),
                quota_mb: None,
            })),
            done(Reply::DatabaseCreated(DatabaseCreated {
                databases: vec!["shopexam_main".into()],
                user: "shopexam_main".into(),
                host: "localhost".into(),
            })),
            done(Reply::Suspended(AccountSuspended {
                username: "a".into(),
            })),
            done(Reply::Unsuspended(AccountUnsuspended {
                username: "a".into(),
            })),
            done(Reply::Terminated(AccountTerminated {
                username: "a".into(),
            })),
            done(Reply::PackageChanged(PackageChanged {
                username: "a".into(),
                package: "gold".into(),
            })),
            done(Reply::PasswordChanged(PasswordChanged {
                username: "a".into(),
            })),
            done(Reply::Accounts(AccountList {
                accounts: vec![
                    PanelAccount {
                        username: "a".into(),
                        domain: Some("a.example".into()),
                        package: Some("default".into()),
                        suspended: true,
                        owner_marker: Some(String::new()),
                    },
                    PanelAccount::default(),
                ],
            })),
            done(Reply::Usage(AccountUsage {
                disk_used: Some(10),
                disk_limit: Some(Amount::Unlimited),
                bandwidth_used: None,
                bandwidth_limit: Some(Amount::Value(0)),
                inodes_used: Some(3),
                inodes_limit: None,
            })),
            done(Reply::BackupCreated(BackupCreated {
                location: "backup-12.1.2026_05-00-00_a.tar.gz".into(),
                size_bytes: 4096,
            })),
            done(Reply::Backups(BackupList {
                backups: vec![
                    BackupEntry {
                        location: "a.tar.gz".into(),
                        size_bytes: 1,
                        created_at: Some(1_764_565_200),
                    },
                    BackupEntry {
                        location: "b.tar.gz".into(),
                        size_bytes: 0,
                        created_at: None,
                    },
                ],
            })),
            done(Reply::BackupDeleted(BackupDeletion::Deleted)),
            done(Reply::BackupDeleted(BackupDeletion::NotFound)),
            done(Reply::BackupRestored(BackupRestored {
                username: "a".into(),
            })),
            Outcome::Waiting(Waiting::Dns {
                reason: "shop.example resolves to 192.0.2.99".into(),
            }),
            Outcome::Failed(Failure::new(ErrorClass::Conflict, "taken")),
            Outcome::Failed(Failure::new(ErrorClass::NotFound, "gone")),
            Outcome::Failed(Failure::new(ErrorClass::Auth, "token")),
            Outcome::Failed(Failure::new(ErrorClass::Retryable, "5xx")),
            Outcome::Failed(Failure::new(ErrorClass::Permanent, "bad")),
        ]
    }

    #[test]
    fn every_outcome_round_trips() {
        let outcomes = every_outcome();
        let replies: std::collections::BTreeSet<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Done(r) => Some(r.command_name()),
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 2 + Command::PANEL_COMMANDS.len());
        for outcome in outcomes {
            let message = v1::CommandResult {
                id: "1".into(),
                outcome: Some(outcome.clone().into()),
            };
            let decoded = v1::CommandResult::decode(message.encode_to_vec().as_slice()).unwrap();
            assert_eq!(outcome_from_wire(decoded.outcome).unwrap(), outcome);
        }
    }

    #[test]
    fn error_classes_round_trip_and_unknown_ones_are_retryable() {
        for class in ErrorClass::ALL {
            assert_eq!(error_class(v1::ErrorClass::from(class).into()), class);
        }
        assert_eq!(error_class(0), ErrorClass::Retryable);
        assert_eq!(error_class(99), ErrorClass::Retryable);
    }

    #[test]
    fn heartbeat_load_round_trips() {
        let load = LoadReport {
            load1: 0.5,
            load5: 0.25,
            load15: 0.125,
            cpu_count: 4,
            memory_total_bytes: 8 << 30,
            memory_available_bytes: 4 << 30,
            disk_total_bytes: 100 << 30,
            disk_free_bytes: 60 << 30,
            inodes_total: 1000,
            inodes_free: 900,
            account_count: 12,
            panel_reachable: true,
            agent_version: "0.1.0".into(),
            certificate_not_after_ms: 1_800_000_000_000,
        };
        let beat = v1::Heartbeat::from(load.clone());
        assert_eq!(LoadReport::from(&beat), load);
    }

    fn refused(request: WireRequest) -> String {
        command_from_wire(Some(request)).unwrap_err().to_string()
    }

    fn account() -> v1::CreateAccount {
        v1::CreateAccount {
            service_id: 5,
            username: "shop".into(),
            domain: "shop.example".into(),
            password: "hunter2".into(),
            package: "default".into(),
            contact_email: "a@b.example".into(),
            quota_mb: None,
            ip: String::new(),
        }
    }

    #[test]
    fn bad_fields_are_refused_by_name() {
        let cases = [
            (
                v1::CreateAccount {
                    service_id: 0,
                    ..account()
                },
                "create_account: service_id must be a positive integer",
            ),
            (
                v1::CreateAccount {
                    username: "  ".into(),
                    ..account()
                },
                "create_account: username is required",
            ),
            (
                v1::CreateAccount {
                    password: String::new(),
                    ..account()
                },
                "create_account: password is required",
            ),
            (
                v1::CreateAccount {
                    contact_email: "nobody".into(),
                    ..account()
                },
                "create_account: contact_email is not an email address",
            ),
            (
                v1::CreateAccount {
                    ip: "300.1.1.1".into(),
                    ..account()
                },
                "create_account: ip is not an IP address",
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(refused(WireRequest::CreateAccount(request)), expected);
        }
        assert_eq!(
            refused(WireRequest::RestoreBackup(v1::RestoreBackup {
                username: "shop".into(),
                location: " ".into(),
            })),
            "restore_backup: location is required"
        );
        let bad_domain = refused(WireRequest::CreateAccount(v1::CreateAccount {
            domain: "http://x.example".into(),
            ..account()
        }));
        assert!(
            bad_domain.starts_with("create_account: domain is not a domain name"),
            "{bad_domain}"
        );
        let ns = refused(WireRequest::EnsureDns(v1::EnsureDns {
            username: "shop".into(),
            domain: "shop.example".into(),
            ip: "192.0.2.1".into(),
            nameservers: vec!["ns1.example".into(), "not a host".into()],
            ttl: 0,
        }));
        assert!(ns.starts_with("ensure_dns: nameservers[1] "), "{ns}");
        let kind = refused(WireRequest::CreateDatabase(v1::CreateDatabase {
            username: "shop".into(),
            panel_kind: "ispconfig".into(),
            domain: "shop.example".into(),
            name_suffix: String::new(),
            password: "x".into(),
        }));
        assert!(
            kind.starts_with("create_database: panel_kind is not usable"),
            "{kind}"
        );
        let provider = refused(WireRequest::Certificate(v1::Certificate {
            username: "shop".into(),
            domain: "shop.example".into(),
            provider: None,
        }));
        assert_eq!(provider, "ssl: provider is required");
        assert!(command_from_wire(None).is_err());
    }

    #[test]
    fn refusals_never_quote_a_secret() {
        let message = refused(WireRequest::CreateAccount(v1::CreateAccount {
            service_id: -1,
            password: "hunter2".into(),
            ..account()
        }));
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn blank_optional_fields_are_absent_and_blank_name_servers_are_skipped() {
        let Command::EnsureDns(dns) =
            command_from_wire(Some(WireRequest::EnsureDns(v1::EnsureDns {
                username: " shop ".into(),
                domain: "Shop.Example.".into(),
                ip: "192.0.2.1".into(),
                nameservers: vec![String::new(), "NS1.host.example.".into()],
                ttl: 0,
            })))
            .unwrap()
        else {
            panic!("not ensure_dns");
        };
        assert_eq!(dns.username, "shop");
        assert_eq!(dns.domain.as_str(), "shop.example");
        assert_eq!(dns.nameservers, vec![domain("ns1.host.example")]);
        assert_eq!(dns.ttl, None);
    }

    #[test]
    fn a_result_without_an_outcome_or_with_an_unknown_wait_is_refused() {
        assert!(outcome_from_wire(None).is_err());
        let unknown = WireOutcome::Waiting(v1::Waiting {
            cause: 42,
            reason: "?".into(),
        });
        assert!(outcome_from_wire(Some(unknown)).is_err());
    }
}
