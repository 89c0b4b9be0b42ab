//! Controller commands that read or change the local panel, answered through the panel driver:
//! the provisioning steps (create account, DNS, certificate, mailbox, database), the account
//! lifecycle (suspend … change password) and the read-only account list and usage.
//!
//! Every command is safe to repeat: it converges on the state the request describes and answers
//! with that state, because the controller retries a step whenever it cannot tell whether the
//! last attempt finished. Failures keep the driver's classification, so the controller knows
//! whether to retry; a request the panel cannot take (a username its rules refuse, a database
//! for another panel) is a permanent failure naming the field and changes nothing. The wire
//! fields themselves were checked when the command was read (`mpanel_proto::convert`).
//!
//! This module owns the panel's side of each command and the shape of its answer. It does not
//! own talking to the panel (`crate::panel`) or deciding what to provision (the controller).

mod backups;
mod lifecycle;
mod provisioning;

use std::sync::Arc;

use async_trait::async_trait;
use mpanel_common::command::{AccountList, Command, Failure, Outcome, PanelAccount, Reply};
use tracing::{debug, warn};

use crate::acme::{AcmeError, AcmeIssuer};
use crate::handler::{CommandHandler, not_handled};
use crate::panel::{ControlPanel, PanelError};

pub use backups::BackupWait;

/// Answers the panel commands ([`PanelCommandHandler::COMMANDS`]) with the configured driver.
#[derive(Debug, Clone)]
pub struct PanelCommandHandler {
    panel: Arc<dyn ControlPanel>,
    /// An ACME certificate needs it; `None` when the agent has no `[acme]` section.
    acme: Option<Arc<AcmeIssuer>>,
    backup_wait: BackupWait,
}

/// Why a command failed: the request does not suit this panel, the panel, or the ACME CA.
#[derive(Debug)]
enum CommandError {
    /// `command: field problem`; permanent.
    Invalid(String),
    Panel(PanelError),
    Acme(AcmeError),
}

impl From<AcmeError> for CommandError {
    fn from(e: AcmeError) -> Self {
        match e {
            AcmeError::Panel(p) => Self::Panel(p),
            other => Self::Acme(other),
        }
    }
}

impl From<PanelError> for CommandError {
    fn from(e: PanelError) -> Self {
        Self::Panel(e)
    }
}

/// A request this panel cannot take, naming the field.
fn invalid(command: &str, field: &str, problem: impl std::fmt::Display) -> CommandError {
    CommandError::Invalid(format!("{command}: {field} {problem}"))
}

/// How a failure reaches the controller. The panel's class goes as the driver gave it; DNS not
/// pointing here yet is a wait, not a failure; the CA's rate limit and transient trouble are
/// retryable, its refusals and a broken ACME setup permanent.
fn outcome_of(error: CommandError) -> Outcome {
    match error {
        CommandError::Invalid(message) => Outcome::Failed(Failure::permanent(message)),
        CommandError::Panel(e) => Outcome::Failed(Failure::new(e.class(), e.to_string())),
        CommandError::Acme(e) => match e.waiting() {
            Some(waiting) => Outcome::Waiting(waiting),
            None => Outcome::Failed(Failure::new(
                if e.is_retryable() {
                    mpanel_common::command::ErrorClass::Retryable
                } else {
                    mpanel_common::command::ErrorClass::Permanent
                },
                e.to_string(),
            )),
        },
    }
}

type CommandResult = Result<Reply, CommandError>;

impl PanelCommandHandler {
    /// The commands this handler answers, for the capabilities the agent advertises.
    pub const COMMANDS: &'static [&'static str] = Command::PANEL_COMMANDS;

    pub fn new(panel: Arc<dyn ControlPanel>) -> Self {
        Self {
            panel,
            acme: None,
            backup_wait: BackupWait::default(),
        }
    }

    /// How long taking a backup waits for the panel to finish the archive.
    #[must_use]
    pub fn with_backup_wait(mut self, wait: BackupWait) -> Self {
        self.backup_wait = wait;
        self
    }

    /// Lets certificates be issued from the ACME CA through `issuer`.
    #[must_use]
    pub fn with_acme(mut self, issuer: Arc<AcmeIssuer>) -> Self {
        self.acme = Some(issuer);
        self
    }

    /// `Err(command)` for the commands that are not the panel's (the diagnostics).
    async fn run(&self, command: Command) -> Result<CommandResult, Command> {
        let panel = self.panel.as_ref();
        Ok(match command {
            Command::ListAccounts => list_accounts(panel).await,
            Command::Usage(q) => panel
                .usage(&q.username)
                .await
                .map(Reply::Usage)
                .map_err(Into::into),
            Command::CreateAccount(c) => provisioning::create_account(panel, c).await,
            Command::EnsureDns(c) => provisioning::ensure_dns(panel, c).await,
            Command::Certificate(c) => {
                provisioning::certificate(panel, self.acme.as_deref(), c).await
            }
            Command::CreateMailbox(c) => provisioning::create_mailbox(panel, c).await,
            Command::CreateDatabase(c) => provisioning::create_database(panel, c).await,
            Command::Suspend(c) => lifecycle::suspend_account(panel, c).await,
            Command::Unsuspend(c) => lifecycle::unsuspend_account(panel, c).await,
            Command::Terminate(c) => lifecycle::terminate_account(panel, c).await,
            Command::ChangePackage(c) => lifecycle::change_package(panel, c).await,
            Command::ChangePassword(c) => lifecycle::change_password(panel, c).await,
            Command::CreateBackup(c) => backups::create_backup(panel, self.backup_wait, c).await,
            Command::ListBackups(c) => backups::list_backups(panel, c).await,
            Command::DeleteBackup(c) => backups::delete_backup(panel, c).await,
            Command::RestoreBackup(c) => backups::restore_backup(panel, self.backup_wait, c).await,
            other @ (Command::Ping | Command::Echo(_)) => return Err(other),
        })
    }
}

async fn list_accounts(panel: &dyn ControlPanel) -> CommandResult {
    let accounts = panel.list_accounts().await?;
    Ok(Reply::Accounts(AccountList {
        accounts: accounts
            .into_iter()
            .map(|a| PanelAccount {
                username: a.username,
                domain: a.domain,
                package: a.package,
                suspended: a.suspended,
                owner_marker: a.owner_marker,
            })
            .collect(),
    }))
}

#[async_trait]
impl CommandHandler for PanelCommandHandler {
    async fn handle(&self, command: Command, _idempotency_key: &str) -> Outcome {
        // The idempotency key is not needed: every command converges on the state its request
        // describes, so a retry is recognised by what the panel already has.
        let name = command.name();
        match self.run(command).await {
            Ok(Ok(reply)) => {
                debug!(command = name, "panel command done");
                Outcome::Done(reply)
            }
            Ok(Err(error)) => {
                let outcome = outcome_of(error);
                match &outcome {
                    Outcome::Failed(f) => {
                        // The message can name the customer's account or domain: debug only.
                        warn!(
                            command = name,
                            class = f.class.as_str(),
                            "panel command failed"
                        );
                        debug!(command = name, error = %f.message, "panel command failure detail");
                    }
                    Outcome::Waiting(w) => {
                        debug!(command = name, waiting = %w, "panel command waits");
                    }
                    Outcome::Done(_) => {}
                }
                outcome
            }
            Err(command) => not_handled(&command),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpanel_common::command::{ErrorClass, Waiting};

    #[test]
    fn failures_keep_their_class_and_dns_not_ready_is_a_wait() {
        let panel = CommandError::Panel(PanelError::not_found("get", "no such user"));
        assert!(matches!(
            outcome_of(panel),
            Outcome::Failed(Failure {
                class: ErrorClass::NotFound,
                ..
            })
        ));
        let conflict = CommandError::Panel(PanelError::conflict("create", "taken"));
        assert!(matches!(
            outcome_of(conflict),
            Outcome::Failed(Failure {
                class: ErrorClass::Conflict,
                ..
            })
        ));
        let invalid = invalid("create_account", "username", "is not usable here");
        assert_eq!(
            outcome_of(invalid),
            Outcome::Failed(Failure::permanent(
                "create_account: username is not usable here"
            ))
        );
        let dns = CommandError::Acme(AcmeError::WaitingForDns {
            name: "shop.example".into(),
            found: "192.0.2.9".into(),
            expected: "192.0.2.1".parse().unwrap(),
        });
        assert_eq!(
            outcome_of(dns),
            Outcome::Waiting(Waiting::Dns {
                reason: "shop.example resolves to 192.0.2.9, not to this server (192.0.2.1)".into()
            })
        );
        let refused = CommandError::Acme(AcmeError::Refused("caa".into()));
        assert!(matches!(
            outcome_of(refused),
            Outcome::Failed(Failure {
                class: ErrorClass::Permanent,
                ..
            })
        ));
        let limited = CommandError::Acme(AcmeError::Transient("timeout".into()));
        assert!(matches!(
            outcome_of(limited),
            Outcome::Failed(Failure {
                class: ErrorClass::Retryable,
                ..
            })
        ));
    }
}
