//! Commands to agents: what `Fleet::send_command` returns, and how a failure should be treated.
//! Offline, timeout and a session lost mid-command are retryable by nature; an agent-reported
//! failure carries the agent's own classification.

use mpanel_common::ids::ServerId;

/// How an agent classified a failed command (`CommandResult.error_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Permanent,
    Auth,
    Conflict,
}

impl ErrorClass {
    /// Unknown classes from a newer agent are treated as retryable: retrying a step is safe
    /// (commands carry idempotency keys), giving up on a transient failure is not.
    pub fn parse(raw: &str) -> Self {
        match raw {
            "permanent" => ErrorClass::Permanent,
            "auth" => ErrorClass::Auth,
            "conflict" => ErrorClass::Conflict,
            _ => ErrorClass::Retryable,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Auth => "auth",
            ErrorClass::Conflict => "conflict",
        }
    }
}

/// A command's successful result: the agent's JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReply {
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    #[error("the agent of server {0} is not connected")]
    Offline(ServerId),
    #[error("the agent of server {0} did not answer before the deadline")]
    Timeout(ServerId),
    #[error("the session of server {0} closed before the agent answered")]
    Disconnected(ServerId),
    #[error("the agent reported a {} failure: {message}", class.as_str())]
    Failed { class: ErrorClass, message: String },
}

impl CommandError {
    /// Whether retrying later may succeed. The provisioning pipeline retries these with
    /// backoff and the same idempotency key.
    pub fn is_retryable(&self) -> bool {
        match self {
            CommandError::Offline(_) | CommandError::Timeout(_) | CommandError::Disconnected(_) => {
                true
            }
            CommandError::Failed { class, .. } => *class == ErrorClass::Retryable,
        }
    }
}
