//! Controller commands that read or change the local panel, answered through the panel driver:
//! the provisioning steps (`create_account`, `ensure_dns`, `ssl`, `create_mailbox`,
//! `create_database`), the account lifecycle (`suspend_account` … `change_password`) and the
//! read-only `list_accounts` and `usage`.
//!
//! Every command is safe to repeat with the same payload: it converges on the state the payload
//! describes and answers with that state, because the controller retries a step whenever it
//! cannot tell whether the last attempt finished. Failures keep the driver's classification, so
//! the controller knows whether to retry; a payload that cannot be read is a permanent failure
//! naming the field and changes nothing.
//!
//! This module owns reading payloads and shaping answers. It does not own talking to the panel
//! (`crate::panel`) or deciding what to provision (the controller's orchestrator).

mod lifecycle;
mod payload;
mod provisioning;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::acme::{AcmeError, AcmeIssuer};
use crate::handler::{CommandHandler, CommandOutcome, ErrorClass};
use crate::panel::{self, ControlPanel, PanelError};
use payload::{Payload, PayloadError};

/// Answers the panel commands in [`PanelCommandHandler::COMMANDS`] with the configured driver.
#[derive(Debug, Clone)]
pub struct PanelCommandHandler {
    panel: Arc<dyn ControlPanel>,
    /// `ssl` with provider `acme` needs it; `None` when the agent has no `[acme]` section.
    acme: Option<Arc<AcmeIssuer>>,
}

/// Why a command failed: its payload, the panel, or the ACME CA.
#[derive(Debug)]
enum CommandError {
    Payload(PayloadError),
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

impl From<PayloadError> for CommandError {
    fn from(e: PayloadError) -> Self {
        Self::Payload(e)
    }
}

impl From<PanelError> for CommandError {
    fn from(e: PanelError) -> Self {
        Self::Panel(e)
    }
}

impl CommandError {
    fn into_outcome(self) -> CommandOutcome {
        match self {
            Self::Payload(PayloadError(message)) => CommandOutcome::Failed {
                class: ErrorClass::Permanent,
                message,
            },
            Self::Panel(e) => failure(&e),
            // "waiting for DNS: …" and "rate limited …; retry after Ns" are retryable; the
            // controller reads the message prefix to wait rather than count a failure.
            Self::Acme(e) => CommandOutcome::Failed {
                class: if e.is_retryable() {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                },
                message: e.to_string(),
            },
        }
    }
}

type CommandResult = Result<Value, CommandError>;

impl PanelCommandHandler {
    /// The commands this handler answers, for the capabilities the agent advertises.
    pub const COMMANDS: &'static [&'static str] = &[
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
    ];

    pub fn new(panel: Arc<dyn ControlPanel>) -> Self {
        Self { panel, acme: None }
    }

    /// Lets `ssl` issue with `provider: "acme"` through `issuer`.
    #[must_use]
    pub fn with_acme(mut self, issuer: Arc<AcmeIssuer>) -> Self {
        self.acme = Some(issuer);
        self
    }

    async fn run(&self, kind: &str, payload: &Value) -> Option<CommandResult> {
        let panel = self.panel.as_ref();
        Some(match kind {
            "list_accounts" => list_accounts(panel).await,
            "usage" => usage(panel, payload).await,
            "create_account" => provisioning::create_account(panel, payload).await,
            "ensure_dns" => provisioning::ensure_dns(panel, payload).await,
            "ssl" => provisioning::ssl(panel, self.acme.as_deref(), payload).await,
            "create_mailbox" => provisioning::create_mailbox(panel, payload).await,
            "create_database" => provisioning::create_database(panel, payload).await,
            "suspend_account" => lifecycle::suspend_account(panel, payload).await,
            "unsuspend_account" => lifecycle::unsuspend_account(panel, payload).await,
            "terminate_account" => lifecycle::terminate_account(panel, payload).await,
            "change_package" => lifecycle::change_package(panel, payload).await,
            "change_password" => lifecycle::change_password(panel, payload).await,
            _ => return None,
        })
    }
}

async fn list_accounts(panel: &dyn ControlPanel) -> CommandResult {
    let accounts = panel.list_accounts().await?;
    let accounts: Vec<Value> = accounts
        .into_iter()
        .map(|a| {
            json!({
                "username": a.username,
                "domain": a.domain,
                "package": a.package,
                "suspended": a.suspended,
                "ownerMarker": a.owner_marker,
            })
        })
        .collect();
    Ok(json!({ "accounts": accounts }))
}

async fn usage(panel: &dyn ControlPanel, payload: &Value) -> CommandResult {
    let p = Payload::new("usage", payload)?;
    let usage = panel.usage(p.string("username")?).await?;
    Ok(json!({
        "diskUsedBytes": usage.disk_used,
        "diskLimitBytes": usage.disk_limit.map(limit),
        "bandwidthUsedBytes": usage.bandwidth_used,
        "bandwidthLimitBytes": usage.bandwidth_limit.map(limit),
        "inodesUsed": usage.inodes_used,
        "inodesLimit": usage.inodes_limit.map(limit),
    }))
}

/// A limit as JSON: a number, or the string "unlimited".
fn limit(amount: panel::Amount) -> Value {
    match amount {
        panel::Amount::Unlimited => json!("unlimited"),
        panel::Amount::Value(v) => json!(v),
    }
}

/// The driver's classification, as the controller reads it. Something the request names that
/// does not exist will not appear by retrying, so `NotFound` is permanent.
fn failure(error: &PanelError) -> CommandOutcome {
    let class = match error.class() {
        panel::ErrorClass::Retryable => ErrorClass::Retryable,
        panel::ErrorClass::Auth => ErrorClass::Auth,
        panel::ErrorClass::Conflict => ErrorClass::Conflict,
        panel::ErrorClass::Permanent | panel::ErrorClass::NotFound => ErrorClass::Permanent,
    };
    CommandOutcome::Failed {
        class,
        message: error.to_string(),
    }
}

#[async_trait]
impl CommandHandler for PanelCommandHandler {
    async fn handle(&self, kind: &str, payload: Value, _idempotency_key: &str) -> CommandOutcome {
        // The idempotency key is not needed: every command converges on the state its payload
        // describes, so a retry is recognised by what the panel already has.
        match self.run(kind, &payload).await {
            Some(Ok(data)) => {
                debug!(command = kind, "panel command done");
                CommandOutcome::Ok(data)
            }
            Some(Err(error)) => {
                let outcome = error.into_outcome();
                if let CommandOutcome::Failed { class, message } = &outcome {
                    // The message can name the customer's account or domain: debug only.
                    warn!(
                        command = kind,
                        class = class.as_str(),
                        "panel command failed"
                    );
                    debug!(command = kind, error = %message, "panel command failure detail");
                }
                outcome
            }
            None => CommandOutcome::Failed {
                class: ErrorClass::Permanent,
                message: format!("this agent does not know the command '{kind}'"),
            },
        }
    }
}
