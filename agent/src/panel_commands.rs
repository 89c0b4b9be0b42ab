//! Controller commands that read or change the local panel, answered through the panel driver.
//! Errors keep the driver's classification, so the controller knows whether to retry.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::handler::{CommandHandler, CommandOutcome, ErrorClass};
use crate::panel::{self, ControlPanel, PanelError};

/// Answers panel commands (`list_accounts`, `usage`) with the configured driver.
#[derive(Debug, Clone)]
pub struct PanelCommandHandler {
    panel: Arc<dyn ControlPanel>,
}

impl PanelCommandHandler {
    pub fn new(panel: Arc<dyn ControlPanel>) -> Self {
        Self { panel }
    }

    async fn list_accounts(&self) -> Result<Value, PanelError> {
        let accounts = self.panel.list_accounts().await?;
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

    async fn usage(&self, payload: &Value) -> Result<Value, CommandOutcome> {
        let Some(username) = payload.get("username").and_then(Value::as_str) else {
            return Err(CommandOutcome::Failed {
                class: ErrorClass::Permanent,
                message: "usage: payload.username is required".to_owned(),
            });
        };
        let usage = self.panel.usage(username).await.map_err(|e| failure(&e))?;
        Ok(json!({
            "diskUsedBytes": usage.disk_used,
            "diskLimitBytes": usage.disk_limit.map(limit),
            "bandwidthUsedBytes": usage.bandwidth_used,
            "bandwidthLimitBytes": usage.bandwidth_limit.map(limit),
            "inodesUsed": usage.inodes_used,
            "inodesLimit": usage.inodes_limit.map(limit),
        }))
    }
}

/// A limit as JSON: a number, or the string "unlimited".
fn limit(amount: panel::Amount) -> Value {
    match amount {
        panel::Amount::Unlimited => json!("unlimited"),
        panel::Amount::Value(v) => json!(v),
    }
}

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
        match kind {
            "list_accounts" => match self.list_accounts().await {
                Ok(data) => CommandOutcome::Ok(data),
                Err(e) => failure(&e),
            },
            "usage" => match self.usage(&payload).await {
                Ok(data) => CommandOutcome::Ok(data),
                Err(outcome) => outcome,
            },
            other => CommandOutcome::Failed {
                class: ErrorClass::Permanent,
                message: format!("this agent does not know the command '{other}'"),
            },
        }
    }
}
