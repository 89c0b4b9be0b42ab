//! The commands the controller sends to an agent and what the agent answers, as typed values.
//!
//! These are the domain side of the gRPC contract: `mpanel_proto::convert` turns them into the
//! wire messages and back (checking every field on the way in), the controller builds them, and
//! the agent's handlers take them. Numbers are numbers, secrets are [`Secret`]s, names that must
//! be domain names are [`DomainName`]s, so a drifting field is a compile error, not a default.
//!
//! Each request type names its answer through [`Request`], so `fleet.request(server, CreateAccount
//! { .. })` returns an [`AccountCreated`] and nothing else.

use std::fmt;
use std::net::IpAddr;

use crate::domain::DomainName;
use crate::ids::ServiceId;
use crate::secret::Secret;
use crate::string_enum::string_enum;
use crate::username::PanelKind;

string_enum! {
    /// How the controller should treat a failed command. Agents and panel drivers classify
    /// every failure with it; the controller retries only [`ErrorClass::Retryable`].
    pub enum ErrorClass: "error class" {
        /// May succeed later: timeout, 5xx, a lock held by another task. Retry with backoff.
        Retryable => "retryable",
        /// The request itself is wrong (unknown package, invalid name): retrying cannot help.
        Permanent => "permanent",
        /// The panel refused the agent's credentials or the token lacks a privilege: an
        /// operator must fix the configuration.
        Auth => "auth",
        /// The thing exists and is not ours (another service's account, a taken domain).
        Conflict => "conflict",
        /// The thing the request names does not exist; it will not appear by retrying.
        NotFound => "not_found",
    }
}

impl ErrorClass {
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Retryable)
    }
}

/// What an agent with an `[acme]` section advertises among its capabilities; the controller
/// asks only such agents for [`CertificateProvider::Acme`].
pub const ACME_CAPABILITY: &str = "acme";

/// A command to an agent.
#[derive(Debug, Clone)]
pub enum Command {
    /// Diagnostic: answers [`Pong`] with the agent's version.
    Ping,
    /// Diagnostic: answers the same bytes. They are opaque to both sides; the API's `echo`
    /// puts a JSON document in them.
    Echo(Echo),
    CreateAccount(CreateAccount),
    EnsureDns(EnsureDns),
    Certificate(Certificate),
    CreateMailbox(CreateMailbox),
    CreateDatabase(CreateDatabase),
    Suspend(SuspendAccount),
    Unsuspend(UnsuspendAccount),
    Terminate(TerminateAccount),
    ChangePackage(ChangePackage),
    ChangePassword(ChangePassword),
    ListAccounts,
    Usage(UsageQuery),
    CreateBackup(CreateBackup),
    ListBackups(ListBackups),
    DeleteBackup(DeleteBackup),
    RestoreBackup(RestoreBackup),
}

impl Command {
    /// The command's name, as agents advertise it among their capabilities and as logs show it.
    pub const fn name(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Echo(_) => "echo",
            Command::CreateAccount(_) => "create_account",
            Command::EnsureDns(_) => "ensure_dns",
            Command::Certificate(_) => "ssl",
            Command::CreateMailbox(_) => "create_mailbox",
            Command::CreateDatabase(_) => "create_database",
            Command::Suspend(_) => "suspend_account",
            Command::Unsuspend(_) => "unsuspend_account",
            Command::Terminate(_) => "terminate_account",
            Command::ChangePackage(_) => "change_package",
            Command::ChangePassword(_) => "change_password",
            Command::ListAccounts => "list_accounts",
            Command::Usage(_) => "usage",
            Command::CreateBackup(_) => "create_backup",
            Command::ListBackups(_) => "list_backups",
            Command::DeleteBackup(_) => "delete_backup",
            Command::RestoreBackup(_) => "restore_backup",
        }
    }

    /// The panel commands (every command but the diagnostics), for the capabilities an agent
    /// with a panel advertises.
    pub const PANEL_COMMANDS: &'static [&'static str] = &[
        "list_accounts",
        "usage",
        "create_account",
        "ensure_dns",
        "ssl",
        "create_mailbox",
        "create_database",
        "suspend_account",
        "unsuspend_account",
        "terminate_account",
        "change_package",
        "change_password",
        "create_backup",
        "list_backups",
        "delete_backup",
        "restore_backup",
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    pub payload: Vec<u8>,
}

/// Creates the hosting account of a service, or finds the one an earlier attempt created.
#[derive(Debug, Clone)]
pub struct CreateAccount {
    pub service_id: ServiceId,
    /// The panel's system username; the agent checks it against its panel's rules.
    pub username: String,
    pub domain: DomainName,
    pub password: Secret<String>,
    pub package: String,
    pub contact_email: String,
    /// Disk quota override; `None` keeps the package's.
    pub quota_mb: Option<u64>,
    /// The shared IP the account should use where the panel wants one.
    pub ip: Option<IpAddr>,
}

/// The default records of a domain's zone (site, mail, SPF, name servers), as upserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureDns {
    pub username: String,
    pub domain: DomainName,
    pub ip: IpAddr,
    pub nameservers: Vec<DomainName>,
    /// `None`: the panels' own default.
    pub ttl: Option<u32>,
}

/// A certificate for a domain, from the panel's automation or from the agent's ACME CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub username: String,
    pub domain: DomainName,
    pub provider: CertificateProvider,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProvider {
    /// The panel's own automation (AutoSSL and its equivalents); asynchronous.
    AutoSsl,
    /// The agent issues from its ACME CA (HTTP-01) and installs key, certificate and chain.
    Acme(AcmeOrder),
}

impl CertificateProvider {
    pub const fn as_str(&self) -> &'static str {
        match self {
            CertificateProvider::AutoSsl => "autossl",
            CertificateProvider::Acme(_) => "acme",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeOrder {
    /// The address the names must resolve to before anything is ordered.
    pub ip: IpAddr,
    /// Names to cover, each a domain name optionally prefixed with `*.`; empty means the
    /// domain and `www.` the domain.
    pub names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CreateMailbox {
    pub username: String,
    pub domain: DomainName,
    pub local_part: String,
    pub password: Secret<String>,
    pub quota_mb: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct CreateDatabase {
    pub username: String,
    /// The panel the controller believes the server runs; a mismatch is refused.
    pub kind: PanelKind,
    pub domain: DomainName,
    /// Appended to the panel's database prefix; `None` means `main`.
    pub name_suffix: Option<String>,
    pub password: Secret<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendAccount {
    pub username: String,
    /// Shown on panels that keep a suspension reason; `None` uses the agent's default.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsuspendAccount {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminateAccount {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePackage {
    pub username: String,
    pub package: String,
}

#[derive(Debug, Clone)]
pub struct ChangePassword {
    pub username: String,
    pub password: Secret<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAccounts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub username: String,
}

/// Takes a full backup of an account into the panel's own backup storage and answers once the
/// archive exists. A backup still running from an earlier attempt is waited for, not doubled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateBackup {
    pub username: String,
}

/// The finished backups of an account, as the panel lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListBackups {
    pub username: String,
}

/// Removes one backup archive of an account. An archive that is not there is
/// [`BackupDeletion::NotFound`], not a failure, so a repeated delete converges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteBackup {
    pub username: String,
    /// The archive as [`BackupCreated::location`] or [`BackupEntry::location`] named it.
    pub location: String,
}

/// Recreates a removed account from one of its archives (same username, domain, package, and
/// what the archive holds) and answers once the account exists again. A restore still running
/// from an earlier attempt is waited for, not started twice. An archive the panel does not have
/// is a [`ErrorClass::NotFound`] failure; an account that still exists is a
/// [`ErrorClass::Conflict`] failure: a restore never writes over a live account (cPanel and
/// Plesk refuse to; DirectAdmin would, and data newer than the archive would be lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreBackup {
    pub username: String,
    /// The archive as [`BackupCreated::location`] or [`BackupEntry::location`] named it.
    pub location: String,
}

/// A successful command's answer; one variant per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Pong(Pong),
    Echo(Echo),
    AccountCreated(AccountCreated),
    DnsEnsured(DnsEnsured),
    Certificate(CertificateDone),
    MailboxCreated(MailboxCreated),
    DatabaseCreated(DatabaseCreated),
    Suspended(AccountSuspended),
    Unsuspended(AccountUnsuspended),
    Terminated(AccountTerminated),
    PackageChanged(PackageChanged),
    PasswordChanged(PasswordChanged),
    Accounts(AccountList),
    Usage(AccountUsage),
    BackupCreated(BackupCreated),
    Backups(BackupList),
    BackupDeleted(BackupDeletion),
    BackupRestored(BackupRestored),
}

impl Reply {
    /// The name of the command this answers (see [`Command::name`]).
    pub const fn command_name(&self) -> &'static str {
        match self {
            Reply::Pong(_) => "ping",
            Reply::Echo(_) => "echo",
            Reply::AccountCreated(_) => "create_account",
            Reply::DnsEnsured(_) => "ensure_dns",
            Reply::Certificate(_) => "ssl",
            Reply::MailboxCreated(_) => "create_mailbox",
            Reply::DatabaseCreated(_) => "create_database",
            Reply::Suspended(_) => "suspend_account",
            Reply::Unsuspended(_) => "unsuspend_account",
            Reply::Terminated(_) => "terminate_account",
            Reply::PackageChanged(_) => "change_package",
            Reply::PasswordChanged(_) => "change_password",
            Reply::Accounts(_) => "list_accounts",
            Reply::Usage(_) => "usage",
            Reply::BackupCreated(_) => "create_backup",
            Reply::Backups(_) => "list_backups",
            Reply::BackupDeleted(_) => "delete_backup",
            Reply::BackupRestored(_) => "restore_backup",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    pub agent_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCreated {
    pub username: String,
    pub domain: String,
    pub package: String,
    /// False when the account already existed (an earlier attempt made it).
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEnsured {
    pub zone_id: String,
    pub records: Vec<DnsRecordSummary>,
}

/// One record the agent made sure of. `name` is relative to the zone (`@`, `www`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecordSummary {
    pub record_type: String,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateDone {
    /// The panel accepted the request; it issues on its own time.
    AutoSslRequested,
    /// Issued from the ACME CA and installed.
    AcmeIssued(IssuedCertificate),
}

impl CertificateDone {
    pub const fn provider(&self) -> &'static str {
        match self {
            CertificateDone::AutoSslRequested => "autossl",
            CertificateDone::AcmeIssued(_) => "acme",
        }
    }

    pub const fn status(&self) -> &'static str {
        match self {
            CertificateDone::AutoSslRequested => "requested",
            CertificateDone::AcmeIssued(_) => "issued",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub issuer: String,
    pub serial: String,
    /// Unix milliseconds.
    pub not_before_ms: i64,
    pub not_after_ms: i64,
    /// The names the certificate covers (extra names not pointing here yet are left out).
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxCreated {
    pub address: String,
    pub quota_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCreated {
    /// The real names, the panel's prefix included.
    pub databases: Vec<String>,
    pub user: String,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSuspended {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUnsuspended {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTerminated {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageChanged {
    pub username: String,
    pub package: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordChanged {
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountList {
    pub accounts: Vec<PanelAccount>,
}

/// An account as the panel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PanelAccount {
    pub username: String,
    pub domain: Option<String>,
    pub package: Option<String>,
    pub suspended: bool,
    /// The ownership marker the panel stores, on panels that have a field for it.
    pub owner_marker: Option<String>,
}

/// A size or count that may be unlimited. Sizes are in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Unlimited,
    Value(u64),
}

/// Resource usage of one account. Sizes in bytes; `None` where the panel does not report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountUsage {
    pub disk_used: Option<u64>,
    pub disk_limit: Option<Amount>,
    pub bandwidth_used: Option<u64>,
    pub bandwidth_limit: Option<Amount>,
    pub inodes_used: Option<u64>,
    pub inodes_limit: Option<Amount>,
}

/// A finished backup archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCreated {
    /// The panel's name for the archive (a file name or path); what [`DeleteBackup`] takes.
    pub location: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupList {
    pub backups: Vec<BackupEntry>,
}

/// One finished archive. `created_at` is Unix seconds; `None` where the panel does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub location: String,
    pub size_bytes: u64,
    pub created_at: Option<i64>,
}

/// How a delete ended: the archive was removed, or the panel had no such archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupDeletion {
    Deleted,
    NotFound,
}

/// The account exists again, recreated from the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRestored {
    pub username: String,
}

/// Nothing is wrong with the command, but the agent cannot finish it yet; asking again later
/// with the same request will. The controller waits without counting a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// A name does not resolve to the server yet, so no certificate was ordered.
    Dns { reason: String },
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Dns { reason } => write!(f, "waiting for DNS: {reason}"),
        }
    }
}

/// A failed command, classified by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Failure::new(ErrorClass::Permanent, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failure: {}", self.class, self.message)
    }
}

/// How a command ended on the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(Reply),
    Waiting(Waiting),
    Failed(Failure),
}

/// A request type and the reply type that answers it.
pub trait Request: Into<Command> {
    type Reply;
    /// The reply for this request, or the reply itself back when it answers another command.
    fn reply(reply: Reply) -> Result<Self::Reply, Reply>;
}

macro_rules! request {
    ($($request:ty => $command:ident($($bind:ident)?), $reply:ident($out:ty);)+) => {$(
        impl From<$request> for Command {
            fn from(#[allow(unused_variables)] r: $request) -> Command {
                Command::$command$((request!(@arg $bind r)))?
            }
        }
        impl Request for $request {
            type Reply = $out;
            fn reply(reply: Reply) -> Result<$out, Reply> {
                match reply {
                    Reply::$reply(out) => Ok(out),
                    other => Err(other),
                }
            }
        }
    )+};
    (@arg $bind:ident $r:ident) => { $r };
}

request! {
    Ping => Ping(), Pong(Pong);
    Echo => Echo(r), Echo(Echo);
    CreateAccount => CreateAccount(r), AccountCreated(AccountCreated);
    EnsureDns => EnsureDns(r), DnsEnsured(DnsEnsured);
    Certificate => Certificate(r), Certificate(CertificateDone);
    CreateMailbox => CreateMailbox(r), MailboxCreated(MailboxCreated);
    CreateDatabase => CreateDatabase(r), DatabaseCreated(DatabaseCreated);
    SuspendAccount => Suspend(r), Suspended(AccountSuspended);
    UnsuspendAccount => Unsuspend(r), Unsuspended(AccountUnsuspended);
    TerminateAccount => Terminate(r), Terminated(AccountTerminated);
    ChangePackage => ChangePackage(r), PackageChanged(PackageChanged);
    ChangePassword => ChangePassword(r), PasswordChanged(PasswordChanged);
    ListAccounts => ListAccounts(), Accounts(AccountList);
    UsageQuery => Usage(r), Usage(AccountUsage);
    CreateBackup => CreateBackup(r), BackupCreated(BackupCreated);
    ListBackups => ListBackups(r), Backups(BackupList);
    DeleteBackup => DeleteBackup(r), BackupDeleted(BackupDeletion);
    RestoreBackup => RestoreBackup(r), BackupRestored(BackupRestored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_their_command_and_accept_only_their_reply() {
        let cmd: Command = TerminateAccount {
            username: "shop".into(),
        }
        .into();
        assert_eq!(cmd.name(), "terminate_account");
        assert_eq!(Command::from(Ping).name(), "ping");
        assert_eq!(Command::from(ListAccounts).name(), "list_accounts");

        let done = Reply::Terminated(AccountTerminated {
            username: "shop".into(),
        });
        assert_eq!(
            TerminateAccount::reply(done.clone()),
            Ok(AccountTerminated {
                username: "shop".into()
            })
        );
        assert_eq!(SuspendAccount::reply(done.clone()), Err(done));
    }

    #[test]
    fn every_panel_command_name_is_a_command_name() {
        for reply_name in Command::PANEL_COMMANDS {
            assert!(
                !["ping", "echo"].contains(reply_name),
                "{reply_name} is a diagnostic"
            );
        }
        assert_eq!(
            Reply::Usage(AccountUsage::default()).command_name(),
            Command::Usage(UsageQuery {
                username: "a".into()
            })
            .name()
        );
    }

    #[test]
    fn waiting_reads_as_it_did_in_logs_and_error_classes_parse() {
        let w = Waiting::Dns {
            reason: "shop.example resolves to 192.0.2.9".into(),
        };
        assert_eq!(
            w.to_string(),
            "waiting for DNS: shop.example resolves to 192.0.2.9"
        );
        assert_eq!("not_found".parse::<ErrorClass>(), Ok(ErrorClass::NotFound));
        assert!(ErrorClass::Retryable.is_retryable());
        assert!(!ErrorClass::Conflict.is_retryable());
    }

    #[test]
    fn a_command_with_a_secret_never_prints_it() {
        let cmd = Command::ChangePassword(ChangePassword {
            username: "shop".into(),
            password: Secret::new("hunter2".into()),
        });
        assert!(!format!("{cmd:?}").contains("hunter2"));
    }
}
